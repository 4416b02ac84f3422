/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The coordinator's VM appraisal in-process: a fake agent plays three hosts with three VMs each,
 * answering every challenge the way a real agent does (a software-signed vTPM quote per listed
 * VM with the coordinator's nonce, a Merkle tree over them, ONE host quote over
 * SHA-256(label || nonce || root)), and then misbehaves on request. Shown: all VMs trusted with
 * one host quote per host per round; a VM with a bad quote is untrusted alone; a host whose
 * quote fails takes its VMs with it (host.untrusted); a host that slips another host's VM into
 * its batch is refused (batch.unexpected_vm) while that VM stays trusted on its real host; a
 * broken inclusion proof or a host quote over the wrong root is refused; a VM that is not running
 * is unreachable; a VM the host leaves out is untrusted (batch.missing); recovery is automatic.
 * VMs are written to the store directly (vTPM enrollment is coord_vm_test's and the e2e tests'
 * business); their AKs are soft AKs, as in coord_engine_test.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "coord_fixture.h"
#include "coordinator/coord.h"
#include "trustcloud/batch.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/softquote.h"

#define NHOSTS 3
#define NVMS 3

static struct coord_fixture fx;

enum host_mode { H_GOOD = 0, H_BAD_SIG, H_CLAIM, H_BAD_PROOF, H_WRONG_ROOT };
enum vm_mode { V_GOOD = 0, V_BAD_SIG, V_NOT_RUNNING, V_MISSING };

struct fake_vm {
    char id[16];
    struct tc_softak *ak;
    enum vm_mode mode;
    uint64_t clock;
    unsigned quotes;
};

struct fake_host {
    struct tc_softak *ak;
    enum host_mode mode;
    uint64_t clock;
    unsigned challenges, host_quotes, max_vms_per_challenge;
    struct fake_vm vms[NVMS];
};

static struct {
    pthread_mutex_t lock;
    struct fake_host hosts[NHOSTS];
    struct tc_pcr_set pcrs;
    struct tc_httpd *srv;
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct fake_vm *vm_by_id(const char *id)
{
    for (size_t h = 0; h < NHOSTS; h++)
        for (size_t v = 0; v < NVMS; v++)
            if (strcmp(fake.hosts[h].vms[v].id, id) == 0)
                return &fake.hosts[h].vms[v];
    return NULL;
}

/* One VM entry: a quote by the VM's AK over the nonce, or NULL on failure. */
static json_t *vm_entry(struct fake_vm *v, const struct tc_pcr_set *sel, const uint8_t *nonce,
                        uint8_t leaf[32])
{
    uint8_t *attest = NULL, *sig = NULL;
    size_t alen, slen;
    v->clock += 1000;
    if (tc_softquote(v->ak, sel, &fake.pcrs, nonce, 32, v->clock, 1, 0, &attest, &alen, &sig,
                     &slen) != 0)
        return NULL;
    if (v->mode == V_BAD_SIG)
        sig[slen - 1] ^= 1;
    json_t *e = json_pack("{s:s, s:o, s:o, s:o}", "id", v->id, "attest",
                          coord_fixture_b64_json(attest, alen), "signature",
                          coord_fixture_b64_json(sig, slen), "pcrs", tc_pcrs_to_json(&fake.pcrs));
    tc_batch_leaf(v->id, attest, alen, sig, slen, leaf);
    free(attest);
    free(sig);
    v->quotes++;
    return e;
}

static void answer(struct fake_host *fh, const struct tc_http_request *req,
                   struct tc_http_response *resp)
{
    json_t *j = json_loadb((const char *)req->body, req->body_len, 0, NULL);
    const char *nonce_hex = json_string_value(json_object_get(j, "nonce"));
    const char *selspec = json_string_value(json_object_get(j, "pcr_selection"));
    uint8_t nonce[32], qd[32], root[32];
    uint8_t(*leaves)[32] = calloc(NHOSTS * NVMS + 1, 32);
    size_t nlen, nleaves = 0;
    struct tc_pcr_set sel;
    json_t *vms_req = json_object_get(j, "vms"), *vms = json_array(), *out = NULL;
    struct tc_batch_tree *tree = NULL;
    uint8_t *attest = NULL, *sig = NULL;
    size_t alen, slen;
    fh->challenges++;
    if (!nonce_hex || !selspec || tc_hex_decode(nonce_hex, strlen(nonce_hex), nonce, 32, &nlen) ||
        nlen != 32 || tc_pcrs_parse_selection(selspec, &sel) != 0) {
        tc_http_response_error(resp, 400, "bad challenge");
        goto out;
    }
    size_t i, listed = json_array_size(vms_req);
    if (listed > fh->max_vms_per_challenge)
        fh->max_vms_per_challenge = (unsigned)listed;
    json_t *vr;
    json_array_foreach(vms_req, i, vr)
    {
        struct fake_vm *v = vm_by_id(json_string_value(json_object_get(vr, "id")));
        if (!v || v->mode == V_MISSING)
            continue;
        if (v->mode == V_NOT_RUNNING) {
            json_array_append_new(vms, json_pack("{s:s, s:s, s:s}", "id", v->id, "error",
                                                 "vTPM not running", "check", "vm.not_running"));
            continue;
        }
        json_t *e = vm_entry(v, &sel, nonce, leaves[nleaves]);
        json_object_set_new(e, "index", json_integer((json_int_t)nleaves++));
        json_array_append_new(vms, e);
    }
    if (fh->mode == H_CLAIM) { /* another host's VM, genuinely quoted, slipped in */
        json_t *e = vm_entry(&fake.hosts[0].vms[0], &sel, nonce, leaves[nleaves]);
        json_object_set_new(e, "index", json_integer((json_int_t)nleaves++));
        json_array_append_new(vms, e);
    }
    const uint8_t *host_nonce = nonce;
    if (nleaves > 0) {
        assert_int_equal(tc_batch_tree_build((const uint8_t(*)[32])leaves, nleaves, &tree), 0);
        assert_int_equal(tc_batch_tree_root(tree, root), 0);
        size_t k = 0;
        json_array_foreach(vms, i, vr)
        {
            if (!json_object_get(vr, "index"))
                continue;
            json_t *proof = NULL;
            assert_int_equal(tc_batch_tree_proof_json(tree, k++, &proof), 0);
            json_object_set_new(vr, "proof", proof);
        }
        if (fh->mode == H_BAD_PROOF && nleaves > 1) {
            json_t *p0 = json_object_get(json_array_get(vms, 0), "proof");
            json_array_set_new(p0, 0,
                               json_string("00000000000000000000000000000000"
                                           "00000000000000000000000000000000"));
        }
        tc_batch_qualifying_data(nonce, 32, root, qd);
        if (fh->mode == H_WRONG_ROOT)
            qd[0] ^= 1;
        host_nonce = qd;
    }
    fh->clock += 1000;
    if (tc_softquote(fh->ak, &sel, &fake.pcrs, host_nonce, 32, fh->clock, 3, 0, &attest, &alen,
                     &sig, &slen) != 0) {
        tc_http_response_error(resp, 500, "softquote");
        goto out;
    }
    fh->host_quotes++;
    if (fh->mode == H_BAD_SIG)
        sig[slen - 1] ^= 1;
    out = json_pack("{s:o, s:o, s:o}", "attest", coord_fixture_b64_json(attest, alen), "signature",
                    coord_fixture_b64_json(sig, slen), "pcrs", tc_pcrs_to_json(&fake.pcrs));
    if (json_array_size(vms) > 0)
        json_object_set(out, "vms", vms);
    if (tree) {
        json_t *b = NULL;
        assert_int_equal(tc_batch_tree_to_json(tree, &b), 0);
        json_object_set_new(out, "batch", b);
    }
    tc_http_response_json(resp, 200, out);
out:
    json_decref(out);
    json_decref(vms);
    json_decref(j);
    tc_batch_tree_free(tree);
    free(leaves);
    free(attest);
    free(sig);
}

static void agent_handler(void *arg, const struct tc_http_request *req,
                          struct tc_http_response *resp)
{
    (void)arg;
    unsigned idx;
    char what[32];
    pthread_mutex_lock(&fake.lock);
    if (sscanf(req->path, "/h%u/v1/%31s", &idx, what) != 2 || idx >= NHOSTS)
        tc_http_response_error(resp, 404, "no such host");
    else if (strcmp(what, "notice") == 0)
        tc_http_response_bytes(resp, 204, "text/plain", "", 0);
    else
        answer(&fake.hosts[idx], req, resp);
    pthread_mutex_unlock(&fake.lock);
}

static long op(struct coord *c, const char *method, const char *path, const char *body,
               json_t **out)
{
    return coord_fixture_op(&fx, c, method, path, body, out);
}

/* Waits until the node or VM (path /v1/nodes/ID or /v1/vms/ID) is in state want with the given
 * reason check (NULL: any). */
static void expect(struct coord *c, const char *kind, const char *id, const char *want,
                   const char *want_check)
{
    char path[128], check[64] = "";
    const char *st = "";
    snprintf(path, sizeof(path), "/v1/%s/%s", kind, id);
    double t0 = coord_fixture_now_s();
    while (coord_fixture_now_s() - t0 < 15) {
        st = coord_fixture_state(&fx, c, path, check, sizeof(check));
        if (strcmp(st, want) == 0 && (!want_check || strcmp(check, want_check) == 0))
            return;
        usleep(100000);
    }
    fail_msg("%s %s is %s (%s), expected %s (%s)", kind, id, st, check, want,
             want_check ? want_check : "any");
}

static void batch_rounds(void **state)
{
    (void)state;
    struct coord *c = coord_fixture_start(&fx);

    /* Hosts through the load-test import, their VMs straight into the store. */
    for (size_t h = 0; h < NHOSTS; h++) {
        size_t len;
        const uint8_t *pub = tc_softak_public(fake.hosts[h].ak, &len);
        char *b64 = coord_b64_encode(pub, len), body[2048];
        snprintf(body, sizeof(body),
                 "{\"node_id\":\"h%zu\",\"ak_pub\":\"%s\",\"agent_url\":"
                 "\"https://127.0.0.1:%u/h%zu\"}",
                 h, b64, (unsigned)tc_httpd_port(fake.srv), h);
        free(b64);
        assert_int_equal(op(c, "POST", "/v1/nodes/import", body, NULL), 200);
        for (size_t v = 0; v < NVMS; v++) {
            struct tc_store_node n;
            memset(&n, 0, sizeof(n));
            snprintf(n.id, sizeof(n.id), "%s", fake.hosts[h].vms[v].id);
            snprintf(n.host, sizeof(n.host), "h%zu", h);
            snprintf(n.tenant, sizeof(n.tenant), "t%zu", v);
            snprintf(n.group_name, sizeof(n.group_name), "tenant:t%zu", v);
            n.is_vm = true;
            n.state = TC_NODE_ENROLLED;
            pub = tc_softak_public(fake.hosts[h].vms[v].ak, &len);
            n.ak_pub = (struct tc_store_blob){(uint8_t *)pub, len};
            pthread_mutex_lock(&c->lock);
            assert_int_equal(tc_store_node_create(c->store, &n), 0);
            assert_int_equal(coord_engine_node_upsert(c, n.id), 0);
            pthread_mutex_unlock(&c->lock);
        }
    }
    for (size_t h = 0; h < NHOSTS; h++)
        for (size_t v = 0; v < NVMS; v++)
            expect(c, "vms", fake.hosts[h].vms[v].id, "trusted", NULL);
    /* One host quote per challenge, every VM listed in each. */
    sleep(2);
    pthread_mutex_lock(&fake.lock);
    for (size_t h = 0; h < NHOSTS; h++) {
        struct fake_host *fh = &fake.hosts[h];
        print_message("h%zu: %u challenges, %u host quotes, %u vTPM quotes of its first VM\n", h,
                      fh->challenges, fh->host_quotes, fh->vms[0].quotes);
        assert_int_equal(fh->host_quotes, fh->challenges);
        assert_int_equal(fh->max_vms_per_challenge, NVMS);
    }
    pthread_mutex_unlock(&fake.lock);
    /* Hosts are listed as nodes, VMs are not. */
    json_t *j = NULL;
    assert_int_equal(op(c, "GET", "/v1/nodes", NULL, &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "nodes")), NHOSTS);
    json_decref(j);
    assert_int_equal(op(c, "GET", "/v1/vms?node=h1", NULL, &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "vms")), NVMS);
    json_decref(j);

#define SET(expr)                                                                                  \
    do {                                                                                           \
        pthread_mutex_lock(&fake.lock);                                                            \
        expr;                                                                                      \
        pthread_mutex_unlock(&fake.lock);                                                          \
    } while (0)

    /* A VM with a bad quote: alone. */
    SET(fake.hosts[0].vms[1].mode = V_BAD_SIG);
    expect(c, "vms", "v0-1", "untrusted", "quote.signature");
    expect(c, "nodes", "h0", "trusted", NULL);
    expect(c, "vms", "v0-0", "trusted", NULL);
    SET(fake.hosts[0].vms[1].mode = V_GOOD);
    expect(c, "vms", "v0-1", "trusted", NULL);

    /* A host whose own quote fails: all its VMs with it. */
    SET(fake.hosts[1].mode = H_BAD_SIG);
    expect(c, "nodes", "h1", "untrusted", "quote.signature");
    for (size_t v = 0; v < NVMS; v++)
        expect(c, "vms", fake.hosts[1].vms[v].id, "untrusted", "host.untrusted");
    expect(c, "vms", "v2-0", "trusted", NULL);
    SET(fake.hosts[1].mode = H_GOOD);
    expect(c, "nodes", "h1", "trusted", NULL);
    expect(c, "vms", "v1-2", "trusted", NULL);

    /* A host claiming a VM it does not run (h0's v0-0). */
    SET(fake.hosts[2].mode = H_CLAIM);
    expect(c, "nodes", "h2", "untrusted", "batch.unexpected_vm");
    expect(c, "vms", "v2-1", "untrusted", "host.untrusted");
    expect(c, "vms", "v0-0", "trusted", NULL);
    SET(fake.hosts[2].mode = H_GOOD);
    expect(c, "nodes", "h2", "trusted", NULL);

    /* A broken inclusion proof, a host quote over another root. */
    SET(fake.hosts[0].mode = H_BAD_PROOF);
    expect(c, "nodes", "h0", "untrusted", "batch.proof");
    expect(c, "vms", "v0-2", "untrusted", "host.untrusted");
    SET(fake.hosts[0].mode = H_WRONG_ROOT);
    expect(c, "nodes", "h0", "untrusted", "quote.nonce");
    SET(fake.hosts[0].mode = H_GOOD);
    expect(c, "nodes", "h0", "trusted", NULL);
    expect(c, "vms", "v0-2", "trusted", NULL);

    /* A VM whose vTPM is not running; a VM the host leaves out. */
    SET(fake.hosts[1].vms[0].mode = V_NOT_RUNNING);
    expect(c, "vms", "v1-0", "unreachable", "vm.not_running");
    SET(fake.hosts[1].vms[1].mode = V_MISSING);
    expect(c, "vms", "v1-1", "untrusted", "batch.missing");
    expect(c, "nodes", "h1", "trusted", NULL);
    SET(fake.hosts[1].vms[0].mode = V_GOOD; fake.hosts[1].vms[1].mode = V_GOOD);
    expect(c, "vms", "v1-0", "trusted", NULL);
    expect(c, "vms", "v1-1", "trusted", NULL);

    /* VM history is kept like a node's. */
    assert_int_equal(op(c, "GET", "/v1/vms/v1-1/history?limit=500", NULL, &j), 200);
    assert_true(json_array_size(json_object_get(j, "results")) >= 3);
    json_decref(j);
    coord_fixture_stop(&fx, c);
}

static int setup(void **state)
{
    (void)state;
    if (coord_fixture_setup(&fx, "tc-coordbatch-test",
                            "interval = 300ms\nrequest_timeout = 2s\nunreachable_after = 3\n") != 0)
        return -1;
    for (size_t h = 0; h < NHOSTS; h++) {
        assert_int_equal(tc_softak_new(TC_KEY_ECC_P256, &fake.hosts[h].ak), 0);
        for (size_t v = 0; v < NVMS; v++) {
            snprintf(fake.hosts[h].vms[v].id, sizeof(fake.hosts[h].vms[v].id), "v%zu-%zu", h, v);
            assert_int_equal(tc_softak_new(TC_KEY_ECC_P256, &fake.hosts[h].vms[v].ak), 0);
        }
    }
    coord_fixture_zero_pcrs(&fake.pcrs);
    fake.srv = coord_fixture_agent_start(&fx, agent_handler, 256);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tc_httpd_free(fake.srv);
    for (size_t h = 0; h < NHOSTS; h++) {
        tc_softak_free(fake.hosts[h].ak);
        for (size_t v = 0; v < NVMS; v++)
            tc_softak_free(fake.hosts[h].vms[v].ak);
    }
    coord_fixture_cleanup(&fx);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batch_rounds),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
