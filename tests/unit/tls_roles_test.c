/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Roles in certificates of one CA: the coordinator and node EKUs tc_pki_issue adds (and refuses
 * with a CN of another role), tc_pki_cert_roles, and the client's peer-role check over real TLS
 * on loopback: a server with a node's certificate (or a CN-only "coordinator") is refused by a
 * client expecting the coordinator before the request is sent, synchronous and multiplexed, also
 * on a resumed TLS session; webhook delivery (TC_TLS_EXPECT_NOT_NODE) refuses a node's server.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/httpc.h"
#include "trustcloud/httpd.h"
#include "trustcloud/pki.h"
#include "trustcloud/tls.h"

static char tmpdir[] = "/tmp/tc-roles-test.XXXXXX";
static char path_ca[512];
static struct tc_pki_ca *ca;

enum { SRV_COORD, SRV_NODE, SRV_CN_ONLY, SRV_HOOK, SRV_COUNT };
static const char *const srv_names[SRV_COUNT] = {"coord", "node", "cnonly", "hook"};
static struct tc_httpd *srv[SRV_COUNT];
static unsigned hits[SRV_COUNT];
static pthread_mutex_t hits_lock = PTHREAD_MUTEX_INITIALIZER;

static void p(char *buf, const char *name)
{
    snprintf(buf, 512, "%s/%s", tmpdir, name);
}

static X509 *issue_x509(const char *cn, unsigned usage, unsigned role, const char *certpath,
                        const char *keypath)
{
    EVP_PKEY *key = NULL;
    char *pem = NULL;
    X509 *x = NULL;
    const char *sans[] = {"IP:127.0.0.1", NULL};
    assert_int_equal(tc_pki_key_generate(&key), 0);
    struct tc_pki_issue_req req = {
        .cn = cn, .sans = sans, .usage = usage, .role = role, .pubkey = key};
    assert_int_equal(tc_pki_issue(ca, &req, &pem), 0);
    assert_int_equal(tc_pki_cert_parse((const uint8_t *)pem, strlen(pem), &x), 0);
    if (certpath) {
        assert_int_equal(tc_file_write(certpath, pem, strlen(pem), 0644), 0);
        assert_int_equal(tc_pki_key_save(keypath, key), 0);
    }
    free(pem);
    EVP_PKEY_free(key);
    return x;
}

static void handler(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    (void)req;
    pthread_mutex_lock(&hits_lock);
    hits[(size_t)(uintptr_t)arg]++;
    pthread_mutex_unlock(&hits_lock);
    tc_http_response_bytes(resp, 200, "application/json", "{}", 2);
}

static unsigned hits_of(int i)
{
    pthread_mutex_lock(&hits_lock);
    unsigned n = hits[i];
    pthread_mutex_unlock(&hits_lock);
    return n;
}

static int setup(void **state)
{
    (void)state;
    char dir[512], cert[512], key[512];
    if (!mkdtemp(tmpdir))
        return -1;
    p(dir, "ca");
    p(path_ca, "ca/ca.pem");
    if (tc_pki_ca_init(dir, "test CA", 0, &ca) != 0)
        return -1;
    static const struct {
        const char *cn;
        unsigned role;
    } ids[SRV_COUNT] = {{"coordinator", TC_PKI_ROLE_COORDINATOR},
                        {"node:n1", TC_PKI_ROLE_NODE},
                        {"coordinator", TC_PKI_ROLE_NONE},
                        {"hooks", TC_PKI_ROLE_NONE}};
    for (int i = 0; i < SRV_COUNT; i++) {
        char n[64];
        snprintf(n, sizeof(n), "%s.pem", srv_names[i]);
        p(cert, n);
        snprintf(n, sizeof(n), "%s.key", srv_names[i]);
        p(key, n);
        X509_free(issue_x509(ids[i].cn, TC_PKI_USAGE_BOTH, ids[i].role, cert, key));
        struct tc_httpd_config hc = {
            .bind_addr = "127.0.0.1",
            .tls = {.cert_file = cert,
                    .key_file = key,
                    .ca_file = path_ca,
                    .allow_anonymous = true},
        };
        if (tc_httpd_new(&hc, &srv[i]) != 0 ||
            tc_httpd_route(srv[i], NULL, "/", handler, (void *)(uintptr_t)i,
                           TC_HTTPD_ROUTE_ANONYMOUS) != 0 ||
            tc_httpd_start(srv[i]) != 0)
            return -1;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < SRV_COUNT; i++)
        tc_httpd_free(srv[i]);
    tc_pki_ca_free(ca);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static void issue_roles(void **state)
{
    (void)state;
    X509 *c = issue_x509("coordinator", TC_PKI_USAGE_BOTH, TC_PKI_ROLE_COORDINATOR, NULL, NULL);
    X509 *n = issue_x509("node:n1", TC_PKI_USAGE_BOTH, TC_PKI_ROLE_NODE, NULL, NULL);
    X509 *cn_only = issue_x509("coordinator", TC_PKI_USAGE_BOTH, TC_PKI_ROLE_NONE, NULL, NULL);
    X509 *node_cn = issue_x509("node:n2", TC_PKI_USAGE_BOTH, TC_PKI_ROLE_NONE, NULL, NULL);
    X509 *op = issue_x509("operator:a", TC_PKI_USAGE_CLIENT, TC_PKI_ROLE_NONE, NULL, NULL);
    assert_int_equal(tc_pki_cert_roles(c), TC_PKI_ROLE_COORDINATOR);
    assert_int_equal(tc_pki_cert_roles(n), TC_PKI_ROLE_NODE);
    assert_int_equal(tc_pki_cert_roles(cn_only), 0);                /* a CN is not the role */
    assert_int_equal(tc_pki_cert_roles(node_cn), TC_PKI_ROLE_NODE); /* refusing: CN is enough */
    assert_int_equal(tc_pki_cert_roles(op), 0);
    assert_int_equal(tc_pki_cert_roles(NULL), 0);
    char why[256];
    assert_int_equal(tc_tls_check_expected(c, TC_TLS_EXPECT_COORDINATOR, why, sizeof(why)), 0);
    assert_int_equal(tc_tls_check_expected(n, TC_TLS_EXPECT_COORDINATOR, why, sizeof(why)),
                     TC_ERR_SIGNATURE);
    assert_non_null(strstr(why, "not the coordinator"));
    assert_non_null(strstr(why, "node"));
    assert_int_equal(tc_tls_check_expected(cn_only, TC_TLS_EXPECT_COORDINATOR, why, sizeof(why)),
                     TC_ERR_SIGNATURE);
    assert_int_equal(tc_tls_check_expected(n, TC_TLS_EXPECT_NOT_NODE, why, sizeof(why)),
                     TC_ERR_SIGNATURE);
    assert_int_equal(tc_tls_check_expected(node_cn, TC_TLS_EXPECT_NOT_NODE, NULL, 0),
                     TC_ERR_SIGNATURE);
    assert_int_equal(tc_tls_check_expected(c, TC_TLS_EXPECT_NOT_NODE, NULL, 0), 0);
    assert_int_equal(tc_tls_check_expected(NULL, TC_TLS_EXPECT_NOT_NODE, NULL, 0),
                     TC_ERR_SIGNATURE);
    struct tc_peer peer;
    assert_int_equal(tc_tls_peer_from_cert(n, &peer), 0);
    assert_int_equal(peer.roles, TC_PKI_ROLE_NODE);
    uint8_t spki[32];
    char hex[65];
    assert_int_equal(tc_pki_cert_spki_hash(n, spki), 0);
    tc_hex_encode(spki, 32, hex);
    assert_string_equal(peer.spki_hex, hex);
    X509_free(c);
    X509_free(n);
    X509_free(cn_only);
    X509_free(node_cn);
    X509_free(op);

    /* A role EKU goes only with its CN, and one role at a time. */
    EVP_PKEY *key = NULL;
    char *pem = NULL;
    assert_int_equal(tc_pki_key_generate(&key), 0);
    struct tc_pki_issue_req req = {.cn = "node:n1",
                                   .usage = TC_PKI_USAGE_BOTH,
                                   .role = TC_PKI_ROLE_COORDINATOR,
                                   .pubkey = key};
    assert_int_equal(tc_pki_issue(ca, &req, &pem), TC_ERR_INVALID_ARG);
    req.cn = "coordinator";
    req.role = TC_PKI_ROLE_NODE;
    assert_int_equal(tc_pki_issue(ca, &req, &pem), TC_ERR_INVALID_ARG);
    req.cn = "node:";
    assert_int_equal(tc_pki_issue(ca, &req, &pem), TC_ERR_INVALID_ARG);
    req.cn = "coordinator";
    req.role = TC_PKI_ROLE_COORDINATOR | TC_PKI_ROLE_NODE;
    assert_int_equal(tc_pki_issue(ca, &req, &pem), TC_ERR_INVALID_ARG);
    assert_null(pem);
    EVP_PKEY_free(key);
}

static long get(int i, enum tc_tls_expect expect, int *rc, char *detail, size_t cap)
{
    char u[128];
    long code = 0;
    snprintf(u, sizeof(u), "https://127.0.0.1:%u/v1/nodes", tc_httpd_port(srv[i]));
    struct tc_httpc_config cfg = {
        .ca_file = path_ca, .expect_peer = expect, .error_detail = detail, .error_detail_len = cap};
    *rc = tc_httpc_request(&cfg, "POST", u, "application/json", "{\"secret\":1}", 12, &code, NULL,
                           NULL);
    return code;
}

static void sync_client_expects_coordinator(void **state)
{
    (void)state;
    int rc;
    char why[320];
    assert_int_equal(get(SRV_COORD, TC_TLS_EXPECT_COORDINATOR, &rc, why, sizeof(why)), 200);
    assert_int_equal(rc, 0);
    assert_string_equal(why, "");
    assert_int_equal(hits_of(SRV_COORD), 1);
    /* The node's server passes chain and host name (SAN 127.0.0.1): only the role refuses it. */
    assert_int_equal(get(SRV_NODE, TC_TLS_EXPECT_ANY, &rc, NULL, 0), 200);
    assert_int_equal(hits_of(SRV_NODE), 1);
    assert_int_equal(get(SRV_NODE, TC_TLS_EXPECT_COORDINATOR, &rc, why, sizeof(why)), 0);
    assert_int_equal(rc, TC_ERR_SIGNATURE);
    assert_non_null(strstr(why, "not the coordinator"));
    assert_non_null(strstr(why, "node:n1"));
    assert_int_equal(get(SRV_CN_ONLY, TC_TLS_EXPECT_COORDINATOR, &rc, why, sizeof(why)), 0);
    assert_int_equal(rc, TC_ERR_SIGNATURE);
    assert_int_equal(hits_of(SRV_NODE), 1); /* nothing was sent */
    assert_int_equal(hits_of(SRV_CN_ONLY), 0);
}

struct outcome {
    int status;
    long code;
    bool done;
};

static void on_done(void *arg, int status, long code, const uint8_t *body, size_t len)
{
    (void)body;
    (void)len;
    struct outcome *o = arg;
    o->status = status;
    o->code = code;
    o->done = true;
}

static void run_all(struct tc_httpc *c)
{
    for (int i = 0; i < 200 && tc_httpc_pending(c) > 0; i++)
        assert_true(tc_httpc_run(c, 100) >= 0);
    assert_int_equal(tc_httpc_pending(c), 0);
}

static void multi_client_per_request(void **state)
{
    (void)state;
    struct tc_httpc *c = NULL;
    struct tc_httpc_config cfg = {.ca_file = path_ca};
    assert_int_equal(tc_httpc_new(&cfg, &c), 0);
    unsigned node_before = hits_of(SRV_NODE), hook_before = hits_of(SRV_HOOK);
    char u[SRV_COUNT][128];
    for (int i = 0; i < SRV_COUNT; i++)
        snprintf(u[i], sizeof(u[i]), "https://127.0.0.1:%u/hook", tc_httpd_port(srv[i]));
    /* First without a role check, so that connections are open (and TLS sessions cached) when
     * the next requests come: the role is checked on reused connections too, not only after a
     * full handshake. */
    struct outcome warm[SRV_COUNT] = {0};
    for (int i = 0; i < SRV_COUNT; i++) {
        struct tc_httpc_req r = {
            .method = "POST", .url = u[i], .body = "x", .len = 1, .cb = on_done, .arg = &warm[i]};
        assert_int_equal(tc_httpc_submit_req(c, &r), 0);
    }
    run_all(c);
    for (int i = 0; i < SRV_COUNT; i++)
        assert_int_equal(warm[i].code, 200);
    node_before = hits_of(SRV_NODE);
    hook_before = hits_of(SRV_HOOK);
    struct outcome hook_node = {0}, hook_ok = {0}, coord_node = {0};
    struct tc_httpc_req r1 = {.method = "POST",
                              .url = u[SRV_NODE],
                              .body = "x",
                              .len = 1,
                              .expect_peer = TC_TLS_EXPECT_NOT_NODE,
                              .cb = on_done,
                              .arg = &hook_node};
    struct tc_httpc_req r2 = {.method = "POST",
                              .url = u[SRV_HOOK],
                              .body = "x",
                              .len = 1,
                              .expect_peer = TC_TLS_EXPECT_NOT_NODE,
                              .cb = on_done,
                              .arg = &hook_ok};
    struct tc_httpc_req r3 = {.method = "POST",
                              .url = u[SRV_NODE],
                              .body = "x",
                              .len = 1,
                              .expect_peer = TC_TLS_EXPECT_COORDINATOR,
                              .cb = on_done,
                              .arg = &coord_node};
    assert_int_equal(tc_httpc_submit_req(c, &r1), 0);
    assert_int_equal(tc_httpc_submit_req(c, &r2), 0);
    assert_int_equal(tc_httpc_submit_req(c, &r3), 0);
    run_all(c);
    assert_true(hook_node.done && hook_ok.done && coord_node.done);
    assert_int_equal(hook_node.status, TC_ERR_SIGNATURE);
    assert_int_equal(coord_node.status, TC_ERR_SIGNATURE);
    assert_int_equal(hook_ok.status, 0);
    assert_int_equal(hook_ok.code, 200);
    assert_int_equal(hits_of(SRV_NODE), node_before);
    assert_int_equal(hits_of(SRV_HOOK), hook_before + 1);
    tc_httpc_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(issue_roles),
        cmocka_unit_test(sync_client_expects_coordinator),
        cmocka_unit_test(multi_client_per_request),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
