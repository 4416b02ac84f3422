/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The vTPM AK kept persistent at AGENT_VM_AK_HANDLE (agent_vm.c): made so at creation, found in
 * one TPM command by the quote path, and for a VM whose AK is not there (created before it was
 * kept so) loaded from ak.ctx and made persistent by the first quote, in a batch too, whose
 * threads hand what they learned back to the VM table. Another key at the handle is never used
 * nor evicted. A quote first takes the vTPM as started (no Startup) and tries again with one
 * when it is not. Every quote verifies under the AK the VM was created with, and nothing stays
 * loaded in the vTPM. A private swtpm plays the host TPM; the vTPMs are real swtpm processes.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tpm/tpm_internal.h"
#include "trustcloud/quote.h"

/* The agent is an executable, not a library: its modules are compiled into the test. */
#include "agent/agent_batch.c"
#include "agent/agent_config.c"
#include "agent/agent_libvirt.c"
#include "agent/agent_request.c"
#include "agent/agent_tpm.c"
#include "agent/agent_vm.c"

#include "agent_vm_fixture.h"

static const char nonce_hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
static uint8_t nonce[32];

static int group_setup(void **state)
{
    (void)state;
    size_t n = 0;
    if (tc_hex_decode(nonce_hex, 64, nonce, sizeof(nonce), &n) != 0)
        return -1;
    return agent_vm_fixture_setup("tc-vmak-test", 4);
}

static int group_teardown(void **state)
{
    (void)state;
    agent_vm_fixture_teardown();
    return 0;
}

/* Calls a VM route as the coordinator; returns the status and the answer. */
static unsigned call(tc_http_handler h, const char *method, const char *path, const char *body,
                     json_t **ans)
{
    return agent_vm_call(h, "coordinator", method, path, body, ans);
}

/* Creates a tcp-mode VM; its AK as the creation answer gives it (the coordinator's copy). */
static struct tc_ak *create_vm(const char *id)
{
    char body[256];
    uint8_t pub[TC_TPM_MAX_PUBLIC];
    size_t pub_len = 0;
    struct tc_ak *ak = NULL;
    struct tc_reason why;
    json_t *a = NULL;
    snprintf(body, sizeof(body), "{\"vm_id\": \"%s\", \"nonce\": \"%s\", \"mode\": \"tcp\"}", id,
             nonce_hex);
    assert_int_equal(call(h_vms, "POST", "/v1/vms", body, &a), 201);
    const char *s = json_string_value(json_object_get(a, "ak_pub"));
    assert_non_null(s);
    assert_int_equal(agent_b64_decode(s, strlen(s), pub, sizeof(pub), &pub_len), 0);
    tc_reason_clear(&why);
    assert_int_equal(tc_ak_from_tpm2b_public(pub, pub_len, &ak, &why), 0);
    json_decref(a);
    return ak;
}

static void delete_vm(const char *id)
{
    char path[128];
    json_t *a = NULL;
    snprintf(path, sizeof(path), "/v1/vms/%s", id);
    assert_int_equal(call(h_vm, "DELETE", path, NULL, &a), 200);
    json_decref(a);
}

static struct vm_entry *entry(const char *id)
{
    struct vm_entry *e = vm_find(vms, id);
    assert_non_null(e);
    return e;
}

static struct tc_tpm *open_vtpm(const char *id)
{
    char tcti[64], akp[PATH_MAX];
    struct tc_tpm *vt = NULL;
    assert_int_equal(agent_vm_tcti(vms, id, tcti, sizeof(tcti), akp, sizeof(akp)), 0);
    assert_int_equal(tc_tpm_open(tcti, &vt), 0);
    return vt;
}

/* The name of the key at AGENT_VM_AK_HANDLE, or 0 bytes when there is none. */
static size_t name_at_handle(const char *id, uint8_t *name)
{
    struct tc_tpm *vt = open_vtpm(id);
    struct tc_tpm_key k;
    size_t len = 0;
    int rc = tc_tpm_key_from_persistent(vt, AGENT_VM_AK_HANDLE, &k);
    assert_true(rc == 0 || rc == TC_ERR_NOT_FOUND);
    if (rc == 0) {
        memcpy(name, k.name, k.name_len);
        len = k.name_len;
    }
    tc_tpm_key_release(vt, &k);
    tc_tpm_close(vt);
    return len;
}

static void assert_nothing_loaded(const char *id)
{
    struct tc_tpm *vt = open_vtpm(id);
    size_t objects = 9, sessions = 9;
    assert_int_equal(tc_tpm_loaded_count(vt, &objects, &sessions), 0);
    assert_int_equal(objects, 0);
    assert_int_equal(sessions, 0);
    tc_tpm_close(vt);
}

/* agent_vm_quote, verified under ak (nonce, signature, PCR digest over the values returned). */
static void quote_verifies(const char *id, const struct tc_ak *ak)
{
    struct tc_pcr_set sel;
    struct tc_tpm_quote q;
    struct tc_reason why;
    struct tc_quote_expect expect = {.nonce = nonce, .nonce_len = sizeof(nonce)};
    assert_int_equal(tc_pcrs_parse_selection("sha256:0,1,2,3,4,5,6,7,8,9,10", &sel), 0);
    assert_int_equal(agent_vm_quote(vms, id, &sel, nonce, sizeof(nonce), &q), 0);
    tc_reason_clear(&why);
    int rc =
        tc_quote_verify(ak, q.attest, q.attest_len, q.sig, q.sig_len, &q.pcrs, &expect, NULL, &why);
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", why.check, why.detail);
    assert_int_equal(rc, 0);
    tc_tpm_quote_release(&q);
    assert_nothing_loaded(id);
}

/* What an agent restarted on the same vm_dir knows: nothing about the AKs yet. */
static void restart_agent(void)
{
    agent_vms_free(vms);
    vms = NULL;
    assert_int_equal(agent_vms_new(&cfg, NULL, &vms), 0);
}

/* Evicts the key at AGENT_VM_AK_HANDLE, as a vTPM made before the AK was kept persistent. */
static void evict_ak(const char *id)
{
    struct tc_tpm *vt = open_vtpm(id);
    ESYS_TR h = ESYS_TR_NONE, none = ESYS_TR_NONE;
    assert_int_equal(Esys_TR_FromTPMPublic(vt->esys, AGENT_VM_AK_HANDLE, ESYS_TR_NONE, ESYS_TR_NONE,
                                           ESYS_TR_NONE, &h),
                     TSS2_RC_SUCCESS);
    assert_int_equal(Esys_EvictControl(vt->esys, ESYS_TR_RH_OWNER, h, ESYS_TR_PASSWORD,
                                       ESYS_TR_NONE, ESYS_TR_NONE, AGENT_VM_AK_HANDLE, &none),
                     TSS2_RC_SUCCESS);
    tc_tpm_close(vt);
}

/* Puts another AK of the same vTPM at AGENT_VM_AK_HANDLE (evicting what is there). */
static void squat_handle(const char *id, uint8_t *name, size_t *name_len)
{
    struct tc_tpm *vt = open_vtpm(id);
    struct tc_tpm_key ek, other;
    char path[300];
    snprintf(path, sizeof(path), "%s/other-ak.ctx", state_dir);
    assert_int_equal(tc_tpm_key_from_persistent(vt, TC_TPM_EK_HANDLE_ECC, &ek), 0);
    assert_int_equal(tc_tpm_ak_create(vt, &ek, TC_KEY_ECC_P256, TC_SIG_ECDSA, path, &other), 0);
    assert_int_equal(tc_tpm_key_persist(vt, &other, AGENT_VM_AK_HANDLE), 0);
    memcpy(name, other.name, other.name_len);
    *name_len = other.name_len;
    tc_tpm_key_release(vt, &other);
    tc_tpm_key_release(vt, &ek);
    tc_tpm_close(vt);
    unlink(path);
}

static void persistent_from_creation(void **state)
{
    (void)state;
    uint8_t name[TC_TPM_MAX_NAME];
    struct tc_tpm_akctx ctx;
    struct tc_tpm_key k;
    char path[PATH_MAX];
    struct tc_ak *ak = create_vm("vm1");

    /* The table knows it, the vTPM holds it, and it is the AK of ak.ctx. */
    struct vm_entry *e = entry("vm1");
    assert_true(e->ak_persistent);
    snprintf(path, sizeof(path), "%s/vm1/ak.ctx", cfg.vm_dir);
    assert_int_equal(tc_tpm_akctx_read(path, &ctx), 0);
    assert_int_equal(e->ak_name_len, ctx.name_len);
    assert_memory_equal(e->ak_name, ctx.name, ctx.name_len);
    assert_int_equal(name_at_handle("vm1", name), ctx.name_len);
    assert_memory_equal(name, ctx.name, ctx.name_len);

    /* The one-command lookup: the right name, another name, an empty handle. */
    struct tc_tpm *vt = open_vtpm("vm1");
    assert_int_equal(
        tc_tpm_key_from_persistent_name(vt, AGENT_VM_AK_HANDLE, ctx.name, ctx.name_len, &k), 0);
    assert_int_equal(k.persistent, AGENT_VM_AK_HANDLE);
    assert_int_equal(k.pub_len, 0);
    tc_tpm_key_release(vt, &k);
    uint8_t wrong[TC_TPM_MAX_NAME];
    memcpy(wrong, ctx.name, ctx.name_len);
    wrong[ctx.name_len - 1] ^= 1;
    assert_int_equal(
        tc_tpm_key_from_persistent_name(vt, AGENT_VM_AK_HANDLE, wrong, ctx.name_len, &k),
        TC_ERR_MISMATCH);
    assert_int_equal(k.esys_handle, 0);
    assert_int_equal(
        tc_tpm_key_from_persistent_name(vt, AGENT_VM_AK_HANDLE + 1, ctx.name, ctx.name_len, &k),
        TC_ERR_NOT_FOUND);
    assert_int_equal(tc_tpm_key_from_persistent_name(vt, 0x80000000u, ctx.name, ctx.name_len, &k),
                     TC_ERR_INVALID_ARG);
    tc_tpm_close(vt);
    tc_tpm_akctx_release(&ctx);

    quote_verifies("vm1", ak);
    quote_verifies("vm1", ak);
    assert_true(entry("vm1")->ak_persistent);
    tc_ak_free(ak);
    delete_vm("vm1");
}

/* A VM whose AK is only in ak.ctx: the first quote after an agent restart makes it persistent. */
static void migrated_by_first_quote(void **state)
{
    (void)state;
    uint8_t name[TC_TPM_MAX_NAME];
    struct tc_ak *ak = create_vm("vm2");
    uint8_t want[TC_TPM_MAX_NAME];
    size_t want_len = entry("vm2")->ak_name_len;
    memcpy(want, entry("vm2")->ak_name, want_len);

    evict_ak("vm2");
    assert_int_equal(name_at_handle("vm2", name), 0);
    restart_agent();
    assert_false(entry("vm2")->ak_persistent);
    assert_int_equal(entry("vm2")->ak_name_len, 0);

    quote_verifies("vm2", ak);
    assert_true(entry("vm2")->ak_persistent);
    assert_int_equal(entry("vm2")->ak_name_len, want_len);
    assert_memory_equal(entry("vm2")->ak_name, want, want_len);
    assert_int_equal(name_at_handle("vm2", name), want_len);
    assert_memory_equal(name, want, want_len);
    quote_verifies("vm2", ak); /* now through the handle */

    /* Restarted again with the AK persistent already: found by name, nothing to migrate. */
    restart_agent();
    quote_verifies("vm2", ak);
    assert_true(entry("vm2")->ak_persistent);
    tc_ak_free(ak);
    delete_vm("vm2");
}

/* Another key at the handle: the quotes use ak.ctx and leave that key where it is. */
static void other_key_at_handle(void **state)
{
    (void)state;
    uint8_t other[TC_TPM_MAX_NAME], name[TC_TPM_MAX_NAME];
    size_t other_len = 0;
    struct tc_ak *ak = create_vm("vm3");

    /* Known persistent, then replaced behind the agent's back. */
    squat_handle("vm3", other, &other_len);
    quote_verifies("vm3", ak);
    assert_false(entry("vm3")->ak_persistent);
    quote_verifies("vm3", ak);
    assert_false(entry("vm3")->ak_persistent);
    assert_int_equal(name_at_handle("vm3", name), other_len);
    assert_memory_equal(name, other, other_len);

    /* The same after a restart (name read from ak.ctx, not the handle's). */
    restart_agent();
    quote_verifies("vm3", ak);
    assert_false(entry("vm3")->ak_persistent);
    assert_int_equal(name_at_handle("vm3", name), other_len);
    assert_memory_equal(name, other, other_len);
    tc_ak_free(ak);
    delete_vm("vm3");
}

/* The batch: its threads migrate, the VM table learns it after the round. */
static void batch_learns(void **state)
{
    (void)state;
    struct tc_ak *ak[2] = {create_vm("b1"), create_vm("b2")};
    struct agent_quote_request req;
    struct agent_batch *b = NULL;
    struct tc_reason why;
    char body[512];

    evict_ak("b1");
    evict_ak("b2");
    restart_agent();
    snprintf(
        body, sizeof(body),
        "{\"nonce\": \"%s\", \"pcr_selection\": \"sha256:0,1,2,3,4,5,6,7,8,9,10\", "
        "\"ima_from\": 0, \"vms\": [{\"id\": \"b1\"}, {\"id\": \"b2\"}, {\"id\": \"nosuch\"}]}",
        nonce_hex);
    tc_reason_clear(&why);
    assert_int_equal(agent_quote_request_parse((const uint8_t *)body, strlen(body), &req, &why), 0);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(agent_batch_collect(&cfg, vms, &req, &b), 0);
        assert_int_equal(b->n, 3);
        for (size_t i = 0; i < 2; i++) {
            struct tc_quote_expect expect = {.nonce = nonce, .nonce_len = sizeof(nonce)};
            const struct tc_tpm_quote *q = &b->ev[i].quote;
            assert_int_equal(b->ev[i].rc, 0);
            assert_int_equal(tc_quote_verify(ak[i], q->attest, q->attest_len, q->sig, q->sig_len,
                                             &q->pcrs, &expect, NULL, &why),
                             0);
        }
        assert_string_equal(b->ev[2].check, "vm.unknown");
        agent_batch_free(b);
        b = NULL;
        assert_true(entry("b1")->ak_persistent);
        assert_true(entry("b2")->ak_persistent);
    }
    agent_quote_request_release(&req);
    assert_nothing_loaded("b1");
    assert_nothing_loaded("b2");
    tc_ak_free(ak[0]);
    tc_ak_free(ak[1]);
    delete_vm("b1");
    delete_vm("b2");
}

/* A vTPM reset behind the agent's back (TPM_Init through the control channel, no Startup since):
 * the quote that assumed it started is made again after a Startup. */
static void not_started(void **state)
{
    (void)state;
    char tcti[64], akp[PATH_MAX], cmd[256];
    struct tc_ak *ak = create_vm("vm4");
    assert_int_equal(agent_vm_tcti(vms, "vm4", tcti, sizeof(tcti), akp, sizeof(akp)), 0);
    const char *port = strstr(tcti, "port=");
    assert_non_null(port);
    snprintf(cmd, sizeof(cmd), "swtpm_ioctl --tcp 127.0.0.1:%d -i", atoi(port + 5) + 1);
    if (system("command -v swtpm_ioctl >/dev/null") != 0) {
        tc_ak_free(ak);
        delete_vm("vm4");
        skip();
    }
    assert_int_equal(system(cmd), 0);
    quote_verifies("vm4", ak);
    assert_true(entry("vm4")->ak_persistent);
    quote_verifies("vm4", ak);
    tc_ak_free(ak);
    delete_vm("vm4");
}

/* The id index a batch looks every VM up in: any order of creation and deletion. */
static void table_index(void **state)
{
    (void)state;
    struct agent_vms t;
    struct vm_entry *e;
    char id[16];
    memset(&t, 0, sizeof(t));
    for (unsigned i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "x%u", (i * 7919u) % 200u); /* a permutation of 0..199 */
        assert_int_equal(vm_add(&t, id, TC_VTPM_TCP, &e), 0);
    }
    for (unsigned i = 0; i < 200; i += 3) {
        snprintf(id, sizeof(id), "x%u", i);
        vm_remove(&t, vm_find(&t, id));
    }
    for (unsigned i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "x%u", i);
        e = vm_find(&t, id);
        if (i % 3 == 0) {
            assert_null(e);
        } else {
            assert_non_null(e);
            assert_string_equal(e->id, id);
        }
    }
    assert_null(vm_find(&t, "x"));
    assert_null(vm_find(&t, "x1999"));
    for (size_t i = 1; i < t.n; i++)
        assert_true(strcmp(t.by_id[i - 1]->id, t.by_id[i]->id) < 0);
    while (t.n > 0)
        vm_remove(&t, t.vms[t.n - 1]);
    free(t.vms);
    free(t.by_id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_index),
        cmocka_unit_test(persistent_from_creation),
        cmocka_unit_test(migrated_by_first_quote),
        cmocka_unit_test(other_key_at_handle),
        cmocka_unit_test(batch_learns),
        cmocka_unit_test(not_started),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
