/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An in-process coordinator for a unit test: a temporary directory with a test CA, the
 * coordinator's, an operator's and a fake agent's certificates, and a configuration that lets
 * software AKs in through the load-test import; operator requests over real TLS; polling for a
 * node's or VM's state; the fake agent's HTTPS server. Header-only (static inline) because every
 * test is its own program. Define _XOPEN_SOURCE 700 (or _GNU_SOURCE) before any include (nftw).
 */
#ifndef TC_TEST_COORD_FIXTURE_H
#define TC_TEST_COORD_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "coordinator/coord.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/hashalg.h"
#include "trustcloud/pcrs.h"

struct coord_fixture {
    char dir[64]; /* the temporary directory, holding everything below */
    char ca_dir[512], cacert[512], op_cert[512], op_key[512], ag_cert[512], ag_key[512], conf[512];
    char wh_cert[512], wh_key[512]; /* a webhook receiver: a server leaf of no trustcloud role */
    struct coord_settings settings; /* of the running coordinator (coord_fixture_start) */
};

/* dir/name into buf (512 bytes). */
static inline void coord_fixture_path(const struct coord_fixture *f, char *buf, const char *name)
{
    snprintf(buf, 512, "%s/%s", f->dir, name);
}

/* A new key and a certificate for it from ca (SAN IP:127.0.0.1, the role EKU its CN implies),
 * written to certpath/keypath. */
static inline void coord_fixture_issue(struct tc_pki_ca *ca, const char *cn, unsigned usage,
                                       const char *certpath, const char *keypath)
{
    EVP_PKEY *key = NULL;
    char *pem = NULL;
    const char *sans[] = {"IP:127.0.0.1", NULL};
    assert_int_equal(tc_pki_key_generate(&key), 0);
    /* The role EKU as `trustcloud ca init|issue` gives it to these CNs. */
    unsigned role = strcmp(cn, "coordinator") == 0 ? TC_PKI_ROLE_COORDINATOR
                    : strncmp(cn, "node:", 5) == 0 ? TC_PKI_ROLE_NODE
                                                   : TC_PKI_ROLE_NONE;
    struct tc_pki_issue_req req = {
        .cn = cn, .sans = sans, .usage = usage, .role = role, .pubkey = key};
    assert_int_equal(tc_pki_issue(ca, &req, &pem), 0);
    assert_int_equal(tc_file_write(certpath, pem, strlen(pem), 0644), 0);
    assert_int_equal(tc_pki_key_save(keypath, key), 0);
    free(pem);
    EVP_PKEY_free(key);
}

/*
 * Makes the temporary directory (/tmp/NAME.XXXXXX), the CA (ca/) with the coordinator's
 * certificate, an operator ("operator:test"), a fake agent ("node:fake") and a webhook receiver
 * ("webhook-receiver") certificate, and
 * coord.conf: loopback on a free port, SQLite in the directory, software AKs allowed, warnings
 * only, plus `settings` (lines "key = value\n": interval, timeouts...). Returns 0 or -1.
 */
static inline int coord_fixture_setup(struct coord_fixture *f, const char *name,
                                      const char *settings)
{
    char cc[512], ck[512], conf[2048];
    struct tc_pki_ca *ca = NULL;
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/%s.XXXXXX", name);
    if (!mkdtemp(f->dir))
        return -1;
    coord_fixture_path(f, f->ca_dir, "ca");
    coord_fixture_path(f, f->cacert, "ca/ca.pem");
    coord_fixture_path(f, f->op_cert, "op.pem");
    coord_fixture_path(f, f->op_key, "op.key");
    coord_fixture_path(f, f->ag_cert, "agent.pem");
    coord_fixture_path(f, f->ag_key, "agent.key");
    coord_fixture_path(f, f->wh_cert, "webhook.pem");
    coord_fixture_path(f, f->wh_key, "webhook.key");
    coord_fixture_path(f, f->conf, "coord.conf");
    coord_fixture_path(f, cc, "ca/coordinator.pem");
    coord_fixture_path(f, ck, "ca/coordinator.key");
    assert_int_equal(tc_pki_ca_init(f->ca_dir, "test CA", 0, &ca), 0);
    coord_fixture_issue(ca, "coordinator", TC_PKI_USAGE_BOTH, cc, ck);
    coord_fixture_issue(ca, "operator:test", TC_PKI_USAGE_CLIENT, f->op_cert, f->op_key);
    coord_fixture_issue(ca, "node:fake", TC_PKI_USAGE_BOTH, f->ag_cert, f->ag_key);
    coord_fixture_issue(ca, "webhook-receiver", TC_PKI_USAGE_BOTH, f->wh_cert, f->wh_key);
    tc_pki_ca_free(ca);
    snprintf(conf, sizeof(conf),
             "[coordinator]\nport = 0\ndb = sqlite:%s/c.db\nca_dir = ca\n"
             "load_test_allow_software_aks = true\nlog_level = warn\n%s",
             f->dir, settings);
    assert_int_equal(tc_file_write(f->conf, conf, strlen(conf), 0600), 0);
    return 0;
}

static inline int coord_fixture_rm(const char *path, const struct stat *sb, int flag,
                                   struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes the temporary directory and everything in it. */
static inline void coord_fixture_cleanup(struct coord_fixture *f)
{
    if (f->dir[0] && strstr(f->dir, "XXXXXX") == NULL)
        nftw(f->dir, coord_fixture_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* A coordinator on coord.conf, started (its settings in f->settings until coord_fixture_stop). */
static inline struct coord *coord_fixture_start(struct coord_fixture *f)
{
    char err[256];
    struct coord *c = NULL;
    memset(&f->settings, 0, sizeof(f->settings));
    assert_int_equal(coord_settings_load(f->conf, &f->settings, err, sizeof(err)), 0);
    assert_int_equal(coord_new(&f->settings, &c), 0);
    assert_int_equal(coord_start(c), 0);
    return c;
}

static inline void coord_fixture_stop(struct coord_fixture *f, struct coord *c)
{
    coord_free(c);
    coord_settings_release(&f->settings);
}

/* An operator request to the coordinator: returns the HTTP status (-1: no answer), *out (when
 * not NULL) the answer parsed as JSON (NULL when none or not JSON). */
static inline long coord_fixture_op(const struct coord_fixture *f, struct coord *c,
                                    const char *method, const char *path, const char *body,
                                    json_t **out)
{
    char url[256];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u%s", (unsigned)tc_httpd_port(c->httpd), path);
    struct tc_httpc_config cfg = {
        .cert_file = f->op_cert, .key_file = f->op_key, .ca_file = f->cacert, .timeout_ms = 30000};
    long code = 0;
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = tc_httpc_request(&cfg, method, url, body ? "application/json" : NULL, body,
                              body ? strlen(body) : 0, &code, &resp, &rlen);
    if (out)
        *out = rc == 0 ? json_loadb((const char *)resp, rlen, 0, NULL) : NULL;
    free(resp);
    return rc == 0 ? code : -1;
}

/* The "state" of GET path (a node or VM: /v1/nodes/ID, /v1/vms/ID), "" when not answered, in a
 * static buffer; its reason's check into check (cap bytes, "" when none) if check is not NULL. */
static inline const char *coord_fixture_state(const struct coord_fixture *f, struct coord *c,
                                              const char *path, char *check, size_t cap)
{
    static char st[32];
    json_t *j = NULL;
    st[0] = 0;
    if (check)
        check[0] = 0;
    if (coord_fixture_op(f, c, "GET", path, NULL, &j) == 200) {
        snprintf(st, sizeof(st), "%s", json_string_value(json_object_get(j, "state")));
        const char *ck = json_string_value(json_object_get(json_object_get(j, "reason"), "check"));
        if (check && ck)
            snprintf(check, cap, "%s", ck);
    }
    json_decref(j);
    return st;
}

static inline double coord_fixture_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* PCRs 0-10 of SHA-256 all zero: what the fake agents' software quotes cover. */
static inline void coord_fixture_zero_pcrs(struct tc_pcr_set *pcrs)
{
    uint8_t zero[32] = {0};
    tc_pcrs_init(pcrs);
    for (unsigned i = 0; i <= 10; i++)
        tc_pcrs_set(pcrs, tc_hash_by_name("sha256"), i, zero);
}

/* The fake agent's HTTPS server (the agent certificate, clients of the test CA), one handler
 * for every path, started. */
static inline struct tc_httpd *coord_fixture_server_start(const struct coord_fixture *f,
                                                          const char *cert, const char *key,
                                                          tc_http_handler handler,
                                                          unsigned max_connections)
{
    struct tc_httpd *srv = NULL;
    /* One server stands for many nodes, all reached by one client address: every connection
     * may be in its handshake at once (a sanitizer build makes handshakes slow). */
    struct tc_httpd_config hc = {.tls = {.cert_file = cert, .key_file = key, .ca_file = f->cacert},
                                 .max_connections = max_connections,
                                 .max_unauth = max_connections};
    assert_int_equal(tc_httpd_new(&hc, &srv), 0);
    assert_int_equal(tc_httpd_route(srv, NULL, "/", handler, NULL, 0), 0);
    assert_int_equal(tc_httpd_start(srv), 0);
    return srv;
}

static inline struct tc_httpd *coord_fixture_agent_start(const struct coord_fixture *f,
                                                         tc_http_handler handler,
                                                         unsigned max_connections)
{
    struct tc_httpd *srv = NULL;
    struct tc_httpd_config hc = {
        .tls = {.cert_file = f->ag_cert, .key_file = f->ag_key, .ca_file = f->cacert},
        .max_connections = max_connections,
        .max_unauth = max_connections}; /* as above: many nodes behind one server */
    assert_int_equal(tc_httpd_new(&hc, &srv), 0);
    assert_int_equal(tc_httpd_route(srv, NULL, "/", handler, NULL, 0), 0);
    assert_int_equal(tc_httpd_start(srv), 0);
    return srv;
}

/* A JSON string of d in base64 (the coordinator's own encoder). */
static inline json_t *coord_fixture_b64_json(const uint8_t *d, size_t n)
{
    char *s = coord_b64_encode(d, n);
    assert_non_null(s);
    json_t *j = json_string(s);
    free(s);
    return j;
}

#endif
