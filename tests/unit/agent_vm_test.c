/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's VM routes in-process: the handlers are called with hand-made requests and the
 * TPM worker is replaced by a synchronous runner that counts the steps of each job and times
 * them, so the test sees what the worker does (a creation in several short steps) and every
 * answer. A private swtpm plays the host TPM; the vTPMs are real swtpm processes.
 */
#define _GNU_SOURCE /* asprintf, memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "trustcloud/credential.h"

/* The agent is an executable, not a library: its modules are compiled into the test. */
#include "agent/agent_config.c"
#include "agent/agent_libvirt.c"
#include "agent/agent_request.c"
#include "agent/agent_tpm.c"
#include "agent/agent_vm.c"

#include "agent_vm_fixture.h"

static int group_setup(void **state)
{
    (void)state;
    return agent_vm_fixture_setup("tc-agentvm-test", 2);
}

static int group_teardown(void **state)
{
    (void)state;
    agent_vm_fixture_teardown();
    return 0;
}

static unsigned call(tc_http_handler h, const char *cn, const char *method, const char *path,
                     const char *body, json_t **ans)
{
    return agent_vm_call(h, cn, method, path, body, ans);
}

static const char *check_of(json_t *j)
{
    const char *c = json_string_value(json_object_get(j, "check"));
    return c ? c : "";
}

static void config_defaults(void **state)
{
    (void)state;
    char want[300], err[256];
    snprintf(want, sizeof(want), "%s/vms", state_dir);
    assert_string_equal(cfg.vm_dir, want);
    assert_string_equal(cfg.vm_seal_pcrs, "sha256:0,1,2,3,4,5,6,7");
    assert_null(cfg.swtpm);
    struct agent_config c;
    const char *bad[] = {"vm_seal_pcrs = sha256:0+sha1:0\n", "vm_seal_pcrs = md5:0\n",
                         "max_vms = 0\n", "max_vms = 100000\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char conf[512];
        snprintf(conf, sizeof(conf),
                 "[agent]\nnode_id = n1\ncoordinator_url = https://127.0.0.1:1\nca_file = /x\n%s",
                 bad[i]);
        memset(&c, 0, sizeof(c));
        assert_int_not_equal(agent_config_load_string(conf, strlen(conf), &c, err, sizeof(err)), 0);
        agent_config_release(&c);
    }
}

/* Refusals that never reach the worker. */
static void refused_before_the_worker(void **state)
{
    (void)state;
    json_t *a = NULL;
    unsigned before = submitted;
    const char *nonce =
        "\"nonce\": \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"";
    char body[512];
    snprintf(body, sizeof(body), "{\"vm_id\": \"vm1\", %s}", nonce);
    assert_int_equal(call(h_vms, "node:n2", "POST", "/v1/vms", body, &a), 403);
    assert_string_equal(check_of(a), "agent.forbidden");
    json_decref(a);
    assert_int_equal(call(h_vms, NULL, "GET", "/v1/vms", NULL, &a), 403);
    json_decref(a);
    assert_int_equal(call(h_vm, "tenant:t", "DELETE", "/v1/vms/vm1", NULL, &a), 403);
    json_decref(a);
    const char *ids[] = {
        "../x",   "a/b",
        "..",     ".",
        "",       "vm 1",
        "v\\\"m", "01234567890123456789012345678901234567890123456789012345678901234"};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        snprintf(body, sizeof(body), "{\"vm_id\": \"%s\", %s}", ids[i], nonce);
        assert_int_equal(call(h_vms, "coordinator", "POST", "/v1/vms", body, &a), 400);
        assert_string_equal(check_of(a), "request.vm_id");
        json_decref(a);
    }
    const char *bodies[] = {"",
                            "[]",
                            "{\"vm_id\": \"vm1\"}",
                            "{\"vm_id\": \"vm1\", \"nonce\": 5}",
                            "{\"vm_id\": \"vm1\", \"nonce\": \"00\"}",
                            "{\"vm_id\": 7}"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        assert_int_equal(call(h_vms, "coordinator", "POST", "/v1/vms", bodies[i], &a), 400);
        json_decref(a);
    }
    snprintf(body, sizeof(body), "{\"vm_id\": \"vm1\", %s, \"mode\": \"kvm\"}", nonce);
    assert_int_equal(call(h_vms, "coordinator", "POST", "/v1/vms", body, &a), 400);
    assert_string_equal(check_of(a), "request.mode");
    json_decref(a);
    /* httpd hands over the percent-decoded path: "a%2Fb" arrives as "a/b", whose id is "a"
     * and whose action "b/start" does not exist. */
    assert_int_equal(call(h_vm, "coordinator", "POST", "/v1/vms/a/b/start", "{}", &a), 404);
    json_decref(a);
    const char *paths[] = {"/v1/vms/../start", "/v1/vms/..", "/v1/vms//start", "/v1/vms/./start",
                           "/v1/vms/"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        assert_int_equal(call(h_vm, "coordinator", "POST", paths[i], "{}", &a), 400);
        json_decref(a);
    }
    assert_int_equal(call(h_vm, "coordinator", "GET", "/v1/vms/vm1/start", NULL, &a), 405);
    json_decref(a);
    assert_int_equal(call(h_vm, "coordinator", "POST", "/v1/vms/vm1/reboot", "{}", &a), 404);
    json_decref(a);
    assert_int_equal(call(h_vm, "coordinator", "POST", "/v1/vms/vm1/start", "{\"force\": 1}", &a),
                     400);
    json_decref(a);
    assert_int_equal(call(h_vm, "coordinator", "POST", "/v1/vms/vm1/activate",
                          "{\"id_object\": \"@@@@\", \"encrypted_secret\": \"AAAA\"}", &a),
                     400);
    json_decref(a);
    assert_int_equal(submitted, before);
}

static void lifecycle(void **state)
{
    (void)state;
    json_t *a = NULL;
    char body[512];
    const char *nonce = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    assert_int_equal(call(h_vm, "coordinator", "POST", "/v1/vms/vm1/start", "{}", &a), 404);
    assert_string_equal(check_of(a), "vm.unknown");
    json_decref(a);

    unsigned s0 = steps;
    longest_step_us = 0;
    snprintf(body, sizeof(body), "{\"vm_id\": \"vm1\", \"nonce\": \"%s\", \"mode\": \"tcp\"}",
             nonce);
    assert_int_equal(call(h_vms, "coordinator", "POST", "/v1/vms", body, &a), 201);
    /* Four steps: table, host TPM (CA, key, vTPM), vTPM (AK), host TPM (certify). */
    assert_int_equal(steps - s0, 4);
    fprintf(stderr, "create (tcp mode, CA made): longest step %ld us\n", longest_step_us);
    const char *fields[] = {"vm_id", "mode", "ek_pub", "ek_cert", "ak_pub"};
    for (size_t i = 0; i < 5; i++)
        assert_non_null(json_string_value(json_object_get(a, fields[i])));
    json_t *ca = json_object_get(a, "vtpm_ca");
    const char *cafields[] = {"cert", "public", "attest", "signature"};
    for (size_t i = 0; i < 4; i++)
        assert_non_null(json_string_value(json_object_get(ca, cafields[i])));

    /* The EK certificate verifies under the CA certificate; the certify names the nonce. */
    uint8_t der[4096], cader[4096], attest[1024], ekpub[TC_TPM_MAX_PUBLIC],
        akpub[TC_TPM_MAX_PUBLIC];
    size_t der_len, cader_len, attest_len, ekpub_len, akpub_len;
    const char *s = json_string_value(json_object_get(a, "ek_cert"));
    assert_int_equal(agent_b64_decode(s, strlen(s), der, sizeof(der), &der_len), 0);
    s = json_string_value(json_object_get(ca, "cert"));
    assert_int_equal(agent_b64_decode(s, strlen(s), cader, sizeof(cader), &cader_len), 0);
    s = json_string_value(json_object_get(ca, "attest"));
    assert_int_equal(agent_b64_decode(s, strlen(s), attest, sizeof(attest), &attest_len), 0);
    s = json_string_value(json_object_get(a, "ek_pub"));
    assert_int_equal(agent_b64_decode(s, strlen(s), ekpub, sizeof(ekpub), &ekpub_len), 0);
    s = json_string_value(json_object_get(a, "ak_pub"));
    assert_int_equal(agent_b64_decode(s, strlen(s), akpub, sizeof(akpub), &akpub_len), 0);
    const uint8_t *p = cader;
    X509 *cacert = d2i_X509(NULL, &p, (long)cader_len);
    assert_non_null(cacert);
    struct tc_reason why;
    tc_reason_clear(&why);
    assert_int_equal(tc_vtpm_ca_verify_ek_cert(der, der_len, cacert, &why), 0);
    X509_free(cacert);
    uint8_t n[32];
    size_t nl;
    assert_int_equal(tc_hex_decode(nonce, 64, n, sizeof(n), &nl), 0);
    assert_non_null(memmem(attest, attest_len, n, sizeof(n)));
    json_decref(a);

    /* Again: 409; a second VM; the third is beyond max_vms = 2. */
    assert_int_equal(call(h_vms, "coordinator", "POST", "/v1/vms", body, &a), 409);
    assert_string_equal(check_of(a), "vm.exists");
    json_decref(a);
    snprintf(body, sizeof(body), "{\"vm_id\": \"vm2\", \"nonce\": \"%s\", \"mode\": \"qemu\"}",
             nonce);
    s0 = steps;
    longest_step_us = 0;
    assert_int_equal(call(h_vms, "coordinator", "POST", "/v1/vms", body, &a), 201);
    assert_int_equal(steps - s0, 3); /* no AK step in qemu mode */
    fprintf(stderr, "create (qemu mode, CA known): longest step %ld us\n", longest_step_us);
    assert_null(json_object_get(a, "ak_pub"));
    assert_non_null(json_string_value(json_object_get(a, "ctrl_path")));
    json_decref(a);
    snprintf(body, sizeof(body), "{\"vm_id\": \"vm3\", \"nonce\": \"%s\"}", nonce);
    assert_int_equal(call(h_vms, "coordinator", "POST", "/v1/vms", body, &a), 503);
    assert_string_equal(check_of(a), "vm.limit");
    json_decref(a);

    /* Activation in the vTPM. */
    uint8_t name[TC_TPM_MAX_NAME];
    size_t name_len = 0;
    struct tc_tpm_akctx akc;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/vm1/ak.ctx", cfg.vm_dir);
    assert_int_equal(tc_tpm_akctx_read(path, &akc), 0);
    memcpy(name, akc.name, akc.name_len);
    name_len = akc.name_len;
    tc_tpm_akctx_release(&akc);
    const uint8_t secret[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    struct tc_credential_blob blob;
    for (int wrong = 0; wrong < 2; wrong++) {
        assert_int_equal(tc_make_credential(ekpub, ekpub_len, wrong ? host_ak_name : name,
                                            wrong ? host_ak_name_len : name_len, secret,
                                            sizeof(secret), &blob),
                         0);
        char *idb = NULL, *seb = NULL;
        assert_int_equal(agent_b64_encode(blob.id_object, blob.id_object_len, &idb), 0);
        assert_int_equal(agent_b64_encode(blob.secret, blob.secret_len, &seb), 0);
        char *cb = NULL;
        assert_true(
            asprintf(&cb, "{\"id_object\": \"%s\", \"encrypted_secret\": \"%s\"}", idb, seb) > 0);
        unsigned st = call(h_vm, "coordinator", "POST", "/v1/vms/vm1/activate", cb, &a);
        if (wrong) {
            assert_int_equal(st, 403);
        } else {
            assert_int_equal(st, 200);
            uint8_t got[64];
            size_t got_len;
            s = json_string_value(json_object_get(a, "secret"));
            assert_int_equal(agent_b64_decode(s, strlen(s), got, sizeof(got), &got_len), 0);
            assert_memory_equal(got, secret, sizeof(secret));
            assert_int_equal(got_len, sizeof(secret));
        }
        json_decref(a);
        free(cb);
        free(idb);
        free(seb);
        assert_int_equal(call(h_vm, "coordinator", "POST", "/v1/vms/vm2/activate",
                              "{\"id_object\": \"AAAA\", \"encrypted_secret\": \"AAAA\"}", &a),
                         409);
        json_decref(a);
    }

    /* The batch engineer's entry points: tcti + AK path, and a vTPM quote. */
    char tcti[64], akp[PATH_MAX];
    assert_int_equal(agent_vm_tcti(vms, "vm1", tcti, sizeof(tcti), akp, sizeof(akp)), 0);
    assert_string_equal(akp, path);
    assert_int_equal(strncmp(tcti, "swtpm:host=127.0.0.1,port=", 26), 0);
    assert_int_equal(agent_vm_tcti(vms, "vm2", tcti, sizeof(tcti), akp, sizeof(akp)),
                     TC_ERR_INVALID_ARG);
    assert_int_equal(agent_vm_tcti(vms, "nosuch", tcti, sizeof(tcti), akp, sizeof(akp)),
                     TC_ERR_NOT_FOUND);
    struct tc_pcr_set sel;
    struct tc_tpm_quote q;
    assert_int_equal(tc_pcrs_parse_selection("sha256:0,1,2,3,4,5,6,7,8,9,10", &sel), 0);
    assert_int_equal(agent_vm_quote(vms, "vm1", &sel, n, sizeof(n), &q), 0);
    assert_true(q.attest_len > 0 && q.sig_len > 0);
    tc_tpm_quote_release(&q);

    /* Stop, start, list. */
    assert_int_equal(call(h_vm, "coordinator", "POST", "/v1/vms/vm1/stop", "{}", &a), 200);
    assert_false(json_is_true(json_object_get(a, "running")));
    json_decref(a);
    assert_int_equal(agent_vm_tcti(vms, "vm1", tcti, sizeof(tcti), akp, sizeof(akp)),
                     TC_ERR_INVALID_ARG);
    assert_int_equal(call(h_vm, "coordinator", "POST", "/v1/vms/vm1/start", NULL, &a), 200);
    assert_true(json_is_true(json_object_get(a, "running")));
    json_decref(a);
    assert_int_equal(call(h_vms, "coordinator", "GET", "/v1/vms", NULL, &a), 200);
    json_t *list = json_object_get(a, "vms");
    assert_int_equal(json_array_size(list), 2);
    json_decref(a);

    /* Delete both: nothing left. */
    assert_int_equal(call(h_vm, "coordinator", "DELETE", "/v1/vms/vm1", NULL, &a), 200);
    assert_true(json_is_true(json_object_get(a, "deleted")));
    json_decref(a);
    assert_int_equal(call(h_vm, "coordinator", "DELETE", "/v1/vms/vm2", NULL, &a), 200);
    json_decref(a);
    assert_int_equal(vms->n, 0);
    snprintf(path, sizeof(path), "%s/vm1", cfg.vm_dir);
    assert_int_not_equal(access(path, F_OK), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_defaults),
        cmocka_unit_test(refused_before_the_worker),
        cmocka_unit_test(lifecycle),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
