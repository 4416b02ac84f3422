/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTPS server + client over loopback with mutual TLS: identities, refusals
 * (no certificate, foreign CA), body caps, malformed HTTP, pipelining behind a
 * deferred answer, deferred answers,
 * 2,000 keep-alive requests with 200 in flight, and the connection limits
 * (per-address cap of unauthenticated connections, eviction, handshake,
 * first-request and keep-alive deadlines) with clients bound to 127.0.0.x.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/err.h>

#include "trustcloud/error.h"
#include "trustcloud/httpc.h"
#include "trustcloud/httpd.h"
#include "trustcloud/pki.h"
#include "trustcloud/tls.h"

static char tmpdir[] = "/tmp/tc-httpd-test.XXXXXX";
static char path_ca[512], path_srv_cert[512], path_srv_key[512], path_cli_cert[512],
    path_cli_key[512], path_evil_ca[512], path_evil_cert[512], path_evil_key[512];

static struct tc_httpd *srv_open;   /* anonymous clients allowed at the TLS level */
static struct tc_httpd *srv_strict; /* client certificate required in the handshake */

static void p(char *buf, const char *name)
{
    snprintf(buf, 512, "%s/%s", tmpdir, name);
}

/* Issues a certificate from ca and writes cert + key files. */
static void issue(struct tc_pki_ca *ca, const char *cn, unsigned usage, const char *certpath,
                  const char *keypath)
{
    EVP_PKEY *key = NULL;
    char *pem = NULL;
    const char *sans[] = {"IP:127.0.0.1", "DNS:localhost", NULL};
    assert_int_equal(tc_pki_key_generate(&key), 0);
    struct tc_pki_issue_req req = {.cn = cn, .sans = sans, .usage = usage, .pubkey = key};
    assert_int_equal(tc_pki_issue(ca, &req, &pem), 0);
    FILE *f = fopen(certpath, "w");
    assert_non_null(f);
    fputs(pem, f);
    fclose(f);
    assert_int_equal(tc_pki_key_save(keypath, key), 0);
    free(pem);
    EVP_PKEY_free(key);
}

/* ---- handlers ---- */

static void h_whoami(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    json_t *j = json_pack("{s:s?,s:s?,s:s,s:s?}", "cn", req->peer ? req->peer->cn : NULL, "fp",
                          req->peer ? req->peer->fingerprint_hex : NULL, "remote", req->remote_addr,
                          "q", tc_http_query(req, "q"));
    tc_http_response_json(resp, 200, j);
    json_decref(j);
}

static void h_enroll(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    json_t *j =
        json_pack("{s:b,s:I}", "anonymous", req->peer == NULL, "len", (json_int_t)req->body_len);
    tc_http_response_json(resp, 201, j);
    json_decref(j);
}

/* Echoes the body; remembers the remote ports seen, to count connections. */
static pthread_mutex_t ports_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char ports_seen[65536];
static unsigned nports;

static void h_echo(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    const char *colon = strrchr(req->remote_addr, ':');
    if (colon) {
        int port = atoi(colon + 1);
        pthread_mutex_lock(&ports_lock);
        if (port > 0 && port < 65536 && !ports_seen[port]) {
            ports_seen[port] = 1;
            nports++;
        }
        pthread_mutex_unlock(&ports_lock);
    }
    if (req->body_len == 0) {
        tc_http_response_error(resp, 400, "empty body");
        return;
    }
    tc_http_response_bytes(resp, 200, "application/octet-stream", req->body, req->body_len);
}

static void h_nothing(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    /* leaves status 0: the server must answer 500 */
}

static void *finish_later(void *arg)
{
    struct tc_http_deferred *d = arg;
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    struct tc_http_response resp = {0};
    tc_http_response_bytes(&resp, 202, "text/plain", "later", 5);
    tc_http_deferred_finish(d, &resp);
    return NULL;
}

static void h_wait(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    struct tc_http_deferred *d = tc_http_defer(req);
    if (!d) {
        tc_http_response_error(resp, 500, "cannot defer");
        return;
    }
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, finish_later, d), 0);
    pthread_detach(t);
}

static struct tc_httpd *start_server(bool anonymous)
{
    struct tc_httpd_config cfg = {
        .bind_addr = "127.0.0.1",
        .tls = {.cert_file = path_srv_cert,
                .key_file = path_srv_key,
                .ca_file = path_ca,
                .allow_anonymous = anonymous},
        .max_body = 64 * 1024,
        .idle_timeout_s = 30,
    };
    struct tc_httpd *s = NULL;
    assert_int_equal(tc_httpd_new(&cfg, &s), 0);
    assert_int_not_equal(tc_httpd_port(s), 0);
    assert_int_equal(tc_httpd_route(s, "GET", "/v1/whoami", h_whoami, NULL, 0), 0);
    assert_int_equal(
        tc_httpd_route(s, "POST", "/v1/enroll", h_enroll, NULL, TC_HTTPD_ROUTE_ANONYMOUS), 0);
    assert_int_equal(tc_httpd_route(s, "POST", "/v1/echo", h_echo, NULL, 0), 0);
    assert_int_equal(tc_httpd_route(s, NULL, "/v1/nothing/", h_nothing, NULL, 0), 0);
    assert_int_equal(tc_httpd_route(s, "GET", "/v1/wait", h_wait, NULL, 0), 0);
    assert_int_equal(tc_httpd_route(s, "GET", "relative", h_wait, NULL, 0), TC_ERR_INVALID_ARG);
    assert_int_equal(tc_httpd_start(s), 0);
    return s;
}

static int setup(void **state)
{
    if (!mkdtemp(tmpdir))
        return -1;
    char cadir[512], evildir[512];
    p(cadir, "ca");
    p(evildir, "evil");
    p(path_ca, "ca/ca.pem");
    p(path_evil_ca, "evil/ca.pem");
    p(path_srv_cert, "server.pem");
    p(path_srv_key, "server.key");
    p(path_cli_cert, "client.pem");
    p(path_cli_key, "client.key");
    p(path_evil_cert, "evil.pem");
    p(path_evil_key, "evil.key");
    struct tc_pki_ca *ca = NULL, *evil = NULL;
    if (tc_pki_ca_init(cadir, "test CA", 0, &ca) != 0 ||
        tc_pki_ca_init(evildir, "test CA", 0, &evil) != 0)
        return -1;
    issue(ca, "coordinator", TC_PKI_USAGE_SERVER, path_srv_cert, path_srv_key);
    issue(ca, "agent-1", TC_PKI_USAGE_CLIENT, path_cli_cert, path_cli_key);
    /* Same CN, same CA name, different CA key: must not get in. */
    issue(evil, "agent-1", TC_PKI_USAGE_CLIENT, path_evil_cert, path_evil_key);
    tc_pki_ca_free(ca);
    tc_pki_ca_free(evil);
    srv_open = start_server(true);
    srv_strict = start_server(false);
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int teardown(void **state)
{
    tc_httpd_free(srv_open);
    tc_httpd_free(srv_strict);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static struct tc_httpc_config client_cfg(bool with_cert, bool evil)
{
    struct tc_httpc_config c = {.ca_file = path_ca, .timeout_ms = 10000};
    if (with_cert) {
        c.cert_file = evil ? path_evil_cert : path_cli_cert;
        c.key_file = evil ? path_evil_key : path_cli_key;
    }
    return c;
}

static void url(char *buf, size_t n, struct tc_httpd *s, const char *path)
{
    snprintf(buf, n, "https://127.0.0.1:%u%s", tc_httpd_port(s), path);
}

/* GET/POST through the synchronous client; returns the status and the parsed JSON body. */
static int call(struct tc_httpd *s, struct tc_httpc_config cfg, const char *method,
                const char *path, const void *body, size_t len, long *code, json_t **json)
{
    char u[256];
    uint8_t *resp = NULL;
    size_t rlen = 0;
    url(u, sizeof(u), s, path);
    int rc = tc_httpc_request(&cfg, method, u, body ? "application/json" : NULL, body, len, code,
                              &resp, &rlen);
    if (json) {
        *json = rc == 0 ? json_loadb((const char *)resp, rlen, 0, NULL) : NULL;
    }
    free(resp);
    return rc;
}

static void peer_identity(void **state)
{
    long code;
    json_t *j;
    assert_int_equal(
        call(srv_strict, client_cfg(true, false), "GET", "/v1/whoami?q=a%20b", NULL, 0, &code, &j),
        0);
    assert_int_equal(code, 200);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "cn")), "agent-1");
    assert_string_equal(json_string_value(json_object_get(j, "q")), "a b");
    /* The fingerprint is the SHA-256 of the client certificate we hold. */
    X509 *x = NULL;
    struct tc_peer peer;
    assert_int_equal(tc_pki_cert_load(path_cli_cert, &x), 0);
    assert_int_equal(tc_tls_peer_from_cert(x, &peer), 0);
    X509_free(x);
    assert_string_equal(json_string_value(json_object_get(j, "fp")), peer.fingerprint_hex);
    assert_memory_equal(json_string_value(json_object_get(j, "remote")), "127.0.0.1:", 10);
    json_decref(j);
}

static void no_client_cert(void **state)
{
    long code = -1;
    json_t *j = NULL;
    /* Handshake refused by the strict server. */
    assert_int_equal(
        call(srv_strict, client_cfg(false, false), "GET", "/v1/whoami", NULL, 0, &code, NULL),
        TC_ERR_IO);
    /* The open server accepts the handshake but only anonymous routes answer. */
    assert_int_equal(
        call(srv_open, client_cfg(false, false), "GET", "/v1/whoami", NULL, 0, &code, &j), 0);
    assert_int_equal(code, 401);
    assert_non_null(json_object_get(j, "error"));
    json_decref(j);
    assert_int_equal(
        call(srv_open, client_cfg(false, false), "POST", "/v1/enroll", "{}", 2, &code, &j), 0);
    assert_int_equal(code, 201);
    assert_true(json_is_true(json_object_get(j, "anonymous")));
    json_decref(j);
    /* With a certificate, the anonymous route sees the peer. */
    assert_int_equal(
        call(srv_open, client_cfg(true, false), "POST", "/v1/enroll", "{}", 2, &code, &j), 0);
    assert_int_equal(code, 201);
    assert_true(json_is_false(json_object_get(j, "anonymous")));
    json_decref(j);
}

static void foreign_ca(void **state)
{
    long code = -1;
    assert_int_equal(
        call(srv_strict, client_cfg(true, true), "GET", "/v1/whoami", NULL, 0, &code, NULL),
        TC_ERR_IO);
    /* Presenting a bad certificate is refused even where anonymous clients are welcome. */
    assert_int_equal(
        call(srv_open, client_cfg(true, true), "POST", "/v1/enroll", "{}", 2, &code, NULL),
        TC_ERR_IO);
    /* A client trusting another CA refuses our server. */
    struct tc_httpc_config c = client_cfg(true, false);
    c.ca_file = path_evil_ca;
    assert_int_equal(call(srv_strict, c, "GET", "/v1/whoami", NULL, 0, &code, NULL),
                     TC_ERR_SIGNATURE);
    /* Host check: the server certificate has no SAN for 127.0.0.2... but we connect by name. */
    char u[128];
    snprintf(u, sizeof(u), "https://localhost:%u/v1/whoami", tc_httpd_port(srv_strict));
    c = client_cfg(true, false);
    assert_int_equal(tc_httpc_request(&c, "GET", u, NULL, NULL, 0, &code, NULL, NULL), 0);
    assert_int_equal(code, 200);
}

static void errors_and_caps(void **state)
{
    long code = -1;
    json_t *j = NULL;
    struct tc_httpc_config c = client_cfg(true, false);
    size_t big = 200 * 1024;
    char *body = malloc(big);
    assert_non_null(body);
    memset(body, 'x', big);
    /* Refused by libevent (its own short HTML body) once the body was read and dropped; also
     * just above the cap, where less than a cap's worth is left to drop when it decides. */
    assert_int_equal(call(srv_strict, c, "POST", "/v1/echo", body, big, &code, NULL), 0);
    assert_int_equal(code, 413);
    assert_int_equal(call(srv_strict, c, "POST", "/v1/echo", body, 64 * 1024 + 1, &code, NULL), 0);
    assert_int_equal(code, 413);
    assert_int_equal(call(srv_strict, c, "POST", "/v1/echo", body, 100 * 1024, &code, NULL), 0);
    assert_int_equal(code, 413);
    /* Just under the cap passes, and is echoed intact. */
    size_t ok = 64 * 1024;
    char u[256];
    uint8_t *resp = NULL;
    size_t rlen = 0;
    url(u, sizeof(u), srv_strict, "/v1/echo");
    assert_int_equal(tc_httpc_request(&c, "POST", u, "text/plain", body, ok, &code, &resp, &rlen),
                     0);
    assert_int_equal(code, 200);
    assert_int_equal(rlen, ok);
    assert_memory_equal(resp, body, ok);
    free(resp);
    /* The client's response cap. */
    c.max_body = 1000;
    assert_int_equal(call(srv_strict, c, "POST", "/v1/echo", body, 5000, &code, NULL),
                     TC_ERR_TOO_LARGE);
    c.max_body = 0;
    free(body);
    assert_int_equal(call(srv_strict, c, "GET", "/nope", NULL, 0, &code, &j), 0);
    assert_int_equal(code, 404);
    json_decref(j);
    assert_int_equal(call(srv_strict, c, "DELETE", "/v1/whoami", NULL, 0, &code, &j), 0);
    assert_int_equal(code, 405);
    json_decref(j);
    assert_int_equal(call(srv_strict, c, "GET", "/v1/nothing/x", NULL, 0, &code, &j), 0);
    assert_int_equal(code, 500);
    json_decref(j);
    /* Deferred answer from another thread. */
    url(u, sizeof(u), srv_strict, "/v1/wait");
    resp = NULL;
    assert_int_equal(tc_httpc_request(&c, "GET", u, NULL, NULL, 0, &code, &resp, &rlen), 0);
    assert_int_equal(code, 202);
    assert_memory_equal(resp, "later", 5);
    free(resp);
    /* Still serving. */
    assert_int_equal(call(srv_strict, c, "GET", "/v1/whoami", NULL, 0, &code, NULL), 0);
    assert_int_equal(code, 200);
}

/* Sends raw bytes over a mutual-TLS connection and returns all it read until the server closed
 * (at most cap - 1 bytes, NUL-terminated). */
static void raw_session(const char *request, char *buf, size_t cap)
{
    struct tc_tls_config tc = {
        .cert_file = path_cli_cert, .key_file = path_cli_key, .ca_file = path_ca};
    SSL_CTX *ctx = NULL;
    assert_int_equal(tc_tls_client_ctx(&tc, &ctx), 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(tc_httpd_port(srv_strict))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    assert_int_equal(tc_tls_set_peer_name(ssl, "127.0.0.1"), 0);
    assert_int_equal(SSL_connect(ssl), 1);
    assert_int_equal(SSL_write(ssl, request, (int)strlen(request)), (int)strlen(request));
    size_t got = 0;
    int n;
    while (got < cap - 1 && (n = SSL_read(ssl, buf + got, (int)(cap - 1 - got))) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    ERR_clear_error();
}

/* The same, returning the first response line. */
static void raw_exchange(const char *request, char *line, size_t linelen)
{
    char buf[4096];
    raw_session(request, buf, sizeof(buf));
    char *eol = strstr(buf, "\r\n");
    if (eol)
        *eol = '\0';
    size_t l = strlen(buf) < linelen - 1 ? strlen(buf) : linelen - 1;
    memcpy(line, buf, l);
    line[l] = '\0';
}

/* Where the n-th (from 1) answer's status line starts in buf, or NULL. */
static const char *nth_answer(const char *buf, int n)
{
    const char *p = buf;
    while ((p = strstr(p, "HTTP/1.1 ")) != NULL && --n > 0)
        p++;
    return p;
}

static void malformed_http(void **state)
{
    char line[256];
    raw_exchange("THIS IS NOT HTTP\r\n\r\n", line, sizeof(line));
    assert_memory_equal(line, "HTTP/1.1 400", 12);
    raw_exchange("GET /v1/whoami HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n", line,
                 sizeof(line));
    assert_memory_equal(line, "HTTP/1.1 400", 12);
    raw_exchange("GET /v1/whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", line,
                 sizeof(line));
    assert_string_equal(line, "HTTP/1.1 200 OK");
    raw_exchange("GET /v1/%00x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", line,
                 sizeof(line));
    assert_memory_equal(line, "HTTP/1.1 400", 12);
    /* Pipelined requests in one write, the first one deferred: answered in order. */
    char buf[8192];
    raw_session("GET /v1/wait HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /v1/whoami HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /v1/whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                buf, sizeof(buf));
    assert_non_null(nth_answer(buf, 3));
    assert_memory_equal(nth_answer(buf, 1), "HTTP/1.1 202", 12);
    assert_memory_equal(nth_answer(buf, 2), "HTTP/1.1 200", 12);
    assert_memory_equal(nth_answer(buf, 3), "HTTP/1.1 200", 12);
    assert_null(nth_answer(buf, 4));
}

/* ---- load: 2,000 requests, 200 in flight, over keep-alive ---- */

struct load {
    struct tc_httpc *c;
    char url[128];
    int submitted, done, ok, total;
};

static void load_done(void *arg, int status, long code, const uint8_t *body, size_t len);

static void load_submit(struct load *l)
{
    char body[32];
    int n = snprintf(body, sizeof(body), "req-%d", l->submitted);
    assert_int_equal(
        tc_httpc_submit(l->c, "POST", l->url, "text/plain", body, (size_t)n, load_done, l), 0);
    l->submitted++;
}

static void load_done(void *arg, int status, long code, const uint8_t *body, size_t len)
{
    struct load *l = arg;
    l->done++;
    if (status == 0 && code == 200 && len > 4 && memcmp(body, "req-", 4) == 0)
        l->ok++;
    if (l->submitted < l->total)
        load_submit(l);
}

/* Runs l->total requests with 200 in flight; returns the seconds taken. */
static double load_run(struct load *l)
{
    struct timespec t0, t1;
    l->submitted = l->done = l->ok = 0;
    pthread_mutex_lock(&ports_lock);
    memset(ports_seen, 0, sizeof(ports_seen));
    nports = 0;
    pthread_mutex_unlock(&ports_lock);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 200; i++)
        load_submit(l);
    while (l->done < l->total) {
        int r = tc_httpc_run(l->c, 1000);
        assert_true(r >= 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_true(t1.tv_sec - t0.tv_sec < 120);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(l->ok, l->total);
    assert_int_equal(tc_httpc_pending(l->c), 0);
    return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
}

static void keepalive_load(void **state)
{
    struct tc_httpc_config cfg = client_cfg(true, false);
    cfg.max_host_connections = 200;
    struct load l = {.total = 2000};
    assert_int_equal(tc_httpc_new(&cfg, &l.c), 0);
    url(l.url, sizeof(l.url), srv_strict, "/v1/echo");
    for (int round = 0; round < 2; round++) {
        double secs = load_run(&l);
        pthread_mutex_lock(&ports_lock);
        unsigned conns = nports;
        pthread_mutex_unlock(&ports_lock);
        printf("keep-alive load (%s): %d requests, 200 in flight, %u TCP connections, %.3f s, "
               "%.0f req/s\n",
               round ? "warm connections" : "including handshakes", l.total, conns, secs,
               l.total / secs);
        /* Connections were reused: far fewer than one per request. */
        assert_true(conns <= 200);
    }
    tc_httpc_free(l.c);
}

/* The helper-thread driver and cancellation on free. */
static int thread_done;
static pthread_mutex_t thread_lock = PTHREAD_MUTEX_INITIALIZER;

static void thread_cb(void *arg, int status, long code, const uint8_t *body, size_t len)
{
    pthread_mutex_lock(&thread_lock);
    if (status == 0 && code == 200)
        thread_done++;
    pthread_mutex_unlock(&thread_lock);
}

static void client_thread(void **state)
{
    struct tc_httpc_config cfg = client_cfg(true, false);
    struct tc_httpc *c = NULL;
    char u[128];
    url(u, sizeof(u), srv_strict, "/v1/whoami");
    assert_int_equal(tc_httpc_new(&cfg, &c), 0);
    assert_int_equal(tc_httpc_start_thread(c), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(tc_httpc_submit(c, "GET", u, NULL, NULL, 0, thread_cb, NULL), 0);
    for (int i = 0; i < 500 && tc_httpc_pending(c) > 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(tc_httpc_pending(c), 0);
    pthread_mutex_lock(&thread_lock);
    assert_int_equal(thread_done, 20);
    pthread_mutex_unlock(&thread_lock);
    assert_int_equal(tc_httpc_submit(c, "GET", "ftp://x/", NULL, NULL, 0, thread_cb, NULL),
                     TC_ERR_INVALID_ARG);
    tc_httpc_free(c);
}

/* Many deferred requests at once, then a server stopped while one is still deferred. */
static struct tc_http_deferred *held;
static volatile int held_calls;

static void h_hold(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    held = tc_http_defer(req);
    held_calls++;
    if (!held)
        tc_http_response_error(resp, 500, "cannot defer");
}

static int deferred_ok;

static void deferred_cb(void *arg, int status, long code, const uint8_t *body, size_t len)
{
    if (status == 0 && code == 202 && len == 5 && memcmp(body, "later", 5) == 0)
        deferred_ok++;
    int *last = arg;
    if (last)
        *last = status == 0 ? (int)code : status;
}

static void deferred_many_and_stop(void **state)
{
    struct tc_httpc_config cfg = client_cfg(true, false);
    struct tc_httpc *c = NULL;
    char u[128];
    assert_int_equal(tc_httpc_new(&cfg, &c), 0);
    url(u, sizeof(u), srv_strict, "/v1/wait");
    deferred_ok = 0;
    for (int i = 0; i < 50; i++)
        assert_int_equal(tc_httpc_submit(c, "GET", u, NULL, NULL, 0, deferred_cb, NULL), 0);
    while (tc_httpc_run(c, 1000) > 0)
        ;
    assert_int_equal(deferred_ok, 50);

    struct tc_httpd_config scfg = {.plain_http = true};
    struct tc_httpd *s = NULL;
    assert_int_equal(tc_httpd_new(&scfg, &s), 0);
    assert_int_equal(tc_httpd_route(s, "GET", "/hold", h_hold, NULL, 0), 0);
    assert_int_equal(tc_httpd_start(s), 0);
    snprintf(u, sizeof(u), "http://127.0.0.1:%u/hold", tc_httpd_port(s));
    tc_httpc_free(c);
    cfg.allow_plain_http = true;
    assert_int_equal(tc_httpc_new(&cfg, &c), 0);
    int last = 0;
    held_calls = 0;
    assert_int_equal(tc_httpc_submit(c, "GET", u, NULL, NULL, 0, deferred_cb, &last), 0);
    for (int i = 0; i < 100 && held_calls == 0; i++)
        tc_httpc_run(c, 50);
    assert_int_equal(held_calls, 1);
    assert_non_null(held);
    /* A second held request with its own short timeout gives up on its own. */
    struct tc_http_deferred *first = held;
    int timed = 0;
    struct tc_httpc_req r = {
        .method = "GET", .url = u, .timeout_ms = 300, .cb = deferred_cb, .arg = &timed};
    assert_int_equal(tc_httpc_submit_req(c, &r), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (timed == 0)
        tc_httpc_run(c, 100);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(timed, TC_ERR_IO);
    assert_true(t1.tv_sec - t0.tv_sec < 5);
    assert_int_equal(held_calls, 2);
    struct tc_http_response r2 = {0};
    tc_http_deferred_finish(held, &r2); /* its client is gone: the answer goes nowhere */
    held = first;
    tc_httpd_stop(s); /* answers the held request (503) or drops its connection */
    while (tc_httpc_run(c, 1000) > 0)
        ;
    assert_true(last == 503 || last == TC_ERR_IO);
    /* Finishing after the stop only frees the handle. */
    struct tc_http_response resp = {0};
    tc_http_response_bytes(&resp, 200, "text/plain", "late", 4);
    tc_http_deferred_finish(held, &resp);
    assert_null(resp.body);
    tc_httpd_free(s);
    tc_httpc_free(c);
}

static void plain_mode(void **state)
{
    struct tc_httpd_config cfg = {.plain_http = true};
    struct tc_httpd *s = NULL;
    assert_int_equal(tc_httpd_new(&cfg, &s), 0);
    assert_int_equal(tc_httpd_route(s, "GET", "/v1/whoami", h_whoami, NULL, 0), 0);
    assert_int_equal(tc_httpd_start(s), 0);
    char u[128];
    snprintf(u, sizeof(u), "http://127.0.0.1:%u/v1/whoami", tc_httpd_port(s));
    struct tc_httpc_config c = {.allow_plain_http = true};
    long code;
    uint8_t *resp = NULL;
    size_t len;
    assert_int_equal(tc_httpc_request(&c, "GET", u, NULL, NULL, 0, &code, &resp, &len), 0);
    assert_int_equal(code, 200);
    json_t *j = json_loadb((const char *)resp, len, 0, NULL);
    assert_true(json_is_null(json_object_get(j, "cn")) || !json_object_get(j, "cn"));
    json_decref(j);
    free(resp);
    /* https-only clients refuse http URLs. */
    c.allow_plain_http = false;
    assert_int_equal(tc_httpc_request(&c, "GET", u, NULL, NULL, 0, &code, NULL, NULL),
                     TC_ERR_INVALID_ARG);
    tc_httpd_free(s);
}

/* ---- connection limits ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A TCP connection to s from the loopback address src (say "127.0.0.2"). */
static int tcp_from(struct tc_httpd *s, const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, src, &a.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct sockaddr_in d = {.sin_family = AF_INET, .sin_port = htons(tc_httpd_port(s))};
    d.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&d, sizeof(d)), 0);
    return fd;
}

/* Waits up to ms for the server to close fd (bytes it sends meanwhile are discarded); returns
 * true if it did. Only for connections whose TLS session is no longer read through OpenSSL. */
static bool closed_within(int fd, int ms)
{
    double end = now_s() + ms / 1000.0;
    for (;;) {
        int left = (int)((end - now_s()) * 1000);
        if (left < 0)
            return false;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int r = poll(&pf, 1, left);
        if (r <= 0)
            continue;
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            return true;
    }
}

/* A completed TLS handshake from src, with or without the client certificate. */
static SSL *tls_from(struct tc_httpd *s, const char *src, bool cert, SSL_CTX **ctx)
{
    struct tc_tls_config tc = {.ca_file = path_ca};
    if (cert) {
        tc.cert_file = path_cli_cert;
        tc.key_file = path_cli_key;
    }
    assert_int_equal(tc_tls_client_ctx(&tc, ctx), 0);
    SSL *ssl = SSL_new(*ctx);
    assert_non_null(ssl);
    SSL_set_fd(ssl, tcp_from(s, src));
    assert_int_equal(tc_tls_set_peer_name(ssl, "127.0.0.1"), 0);
    assert_int_equal(SSL_connect(ssl), 1);
    return ssl;
}

/* One whole request on a kept-alive connection: the answer's status line starts "HTTP/1.1 200". */
static void tls_whoami(SSL *ssl)
{
    const char *req = "GET /v1/whoami HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(SSL_write(ssl, req, (int)strlen(req)), (int)strlen(req));
    char buf[1024] = "";
    assert_true(SSL_read(ssl, buf, sizeof(buf) - 1) > 0);
    assert_memory_equal(buf, "HTTP/1.1 200", 12);
}

static void tls_free(SSL *ssl, SSL_CTX *ctx)
{
    int fd = SSL_get_fd(ssl);
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    ERR_clear_error();
}

/* Writes one byte every 300 ms (a trickling client) until the server closes the connection;
 * returns the seconds that took (or 99 after 8 s). */
static double trickle_until_closed(SSL *ssl, double since)
{
    const char *head = "GET /v1/whoami HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    int fd = SSL_get_fd(ssl);
    while (now_s() - since < 8) {
        if (SSL_write(ssl, head, 1) <= 0 || closed_within(fd, 300))
            return now_s() - since;
    }
    return 99;
}

static struct tc_httpd *start_limited(unsigned max_conns, unsigned max_unauth, unsigned per_addr)
{
    struct tc_httpd_config cfg = {
        .bind_addr = "127.0.0.1",
        .tls = {.cert_file = path_srv_cert,
                .key_file = path_srv_key,
                .ca_file = path_ca,
                .allow_anonymous = true},
        .max_connections = max_conns,
        .max_unauth = max_unauth,
        .max_unauth_per_addr = per_addr,
        .handshake_timeout_s = 1,
        .header_timeout_s = 2,
        .idle_timeout_s = 2,
    };
    struct tc_httpd *s = NULL;
    assert_int_equal(tc_httpd_new(&cfg, &s), 0);
    assert_int_equal(tc_httpd_route(s, "GET", "/v1/whoami", h_whoami, NULL, 0), 0);
    assert_int_equal(
        tc_httpd_route(s, "POST", "/v1/enroll", h_enroll, NULL, TC_HTTPD_ROUTE_ANONYMOUS), 0);
    assert_int_equal(tc_httpd_start(s), 0);
    return s;
}

static void whoami_ok(struct tc_httpd *s)
{
    long code = 0;
    assert_int_equal(call(s, client_cfg(true, false), "GET", "/v1/whoami", NULL, 0, &code, NULL),
                     0);
    assert_int_equal(code, 200);
}

/* Idle connections (no ClientHello) from one address: the cap's worth are held until the
 * handshake deadline, more are closed at once; other addresses and certificate holders are
 * served meanwhile. */
static void limit_per_address(void **state)
{
    struct tc_httpd *s = start_limited(64, 32, 4);
    int fds[4], extra[3];
    double t0 = now_s();
    for (int i = 0; i < 4; i++)
        fds[i] = tcp_from(s, "127.0.0.2");
    for (int i = 0; i < 3; i++)
        extra[i] = tcp_from(s, "127.0.0.2");
    for (int i = 0; i < 3; i++) {
        assert_true(closed_within(extra[i], 500));
        close(extra[i]);
    }
    /* The first four are held (until the handshake deadline). */
    for (int i = 0; i < 4; i++)
        assert_false(closed_within(fds[i], 0));
    int other = tcp_from(s, "127.0.0.3");
    assert_false(closed_within(other, 300));
    whoami_ok(s); /* from 127.0.0.1, with a certificate */
    /* An anonymous client from 127.0.0.2 once the idle ones are gone: served again. */
    for (int i = 0; i < 4; i++) {
        assert_true(closed_within(fds[i], 3000));
        close(fds[i]);
    }
    double idle_s = now_s() - t0;
    printf("per-address cap 4: 3 extra connections refused at once; idle ones closed by the 1 s "
           "handshake deadline after %.2f s\n",
           idle_s);
    assert_true(idle_s >= 0.9 && idle_s < 2.5);
    assert_true(closed_within(other, 2000));
    close(other);
    SSL_CTX *ctx = NULL;
    SSL *ssl = tls_from(s, "127.0.0.2", false, &ctx);
    const char *req = "POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                      "Connection: close\r\n\r\n{}";
    assert_int_equal(SSL_write(ssl, req, (int)strlen(req)), (int)strlen(req));
    char buf[256] = "";
    assert_true(SSL_read(ssl, buf, sizeof(buf) - 1) > 0);
    assert_memory_equal(buf, "HTTP/1.1 201", 12);
    tls_free(ssl, ctx);
    /* Certificate holders are not counted once their handshake is done: six held open at once
     * from one address, above its cap of four. */
    SSL *kept[6];
    SSL_CTX *hctx[6];
    for (int i = 0; i < 6; i++) {
        kept[i] = tls_from(s, "127.0.0.2", true, &hctx[i]);
        tls_whoami(kept[i]);
    }
    for (int i = 0; i < 6; i++) {
        tls_whoami(kept[i]); /* all still open */
        tls_free(kept[i], hctx[i]);
    }
    tc_httpd_free(s);
}

/* Handshaken connections that trickle their request head are closed at the header deadline
 * (2 s), certificate or not; a keep-alive connection that trickles its next request head is
 * closed 2 s after the previous answer (an idle timer alone, reset by every byte, would wait for
 * ever). */
static void limit_header_deadlines(void **state)
{
    struct tc_httpd *s = start_limited(64, 32, 0);
    SSL_CTX *ctx1 = NULL, *ctx2 = NULL, *ctx3 = NULL;
    double t0 = now_s();
    SSL *anon = tls_from(s, "127.0.0.4", false, &ctx1);
    double a = trickle_until_closed(anon, t0);
    t0 = now_s();
    SSL *auth = tls_from(s, "127.0.0.4", true, &ctx2);
    double b = trickle_until_closed(auth, t0);
    printf("request head trickled one byte per 0.3 s: closed after %.2f s (anonymous), %.2f s "
           "(client certificate); header deadline 2 s\n",
           a, b);
    assert_true(a >= 1.9 && a < 3.5);
    assert_true(b >= 1.9 && b < 3.5);
    tls_free(anon, ctx1);
    tls_free(auth, ctx2);
    /* Keep-alive: one whole request, then a trickled second one. */
    SSL *ka = tls_from(s, "127.0.0.4", true, &ctx3);
    tls_whoami(ka);
    sleep(1); /* the first request came in time; the idle limit counts from the answer */
    t0 = now_s();
    double c = trickle_until_closed(ka, t0) + 1;
    printf("keep-alive: next request head trickled: closed %.2f s after the answer (idle 2 s)\n",
           c);
    assert_true(c >= 1.9 && c < 3.5);
    tls_free(ka, ctx3);
    whoami_ok(s);
    tc_httpd_free(s);
}

/* The unauthenticated share full: the oldest unauthenticated connection of the address holding
 * the most makes room (a lone client's is kept); when every slot holds a verified certificate, a
 * new connection is refused. */
static void limit_eviction(void **state)
{
    struct tc_httpd *s = start_limited(64, 8, 4);
    int fds[8];
    for (int i = 0; i < 8; i++)
        fds[i] = tcp_from(s, i < 4 ? "127.0.0.5" : "127.0.0.6");
    assert_false(closed_within(fds[0], 200)); /* all eight held */
    int newer = tcp_from(s, "127.0.0.7");
    assert_true(closed_within(fds[0], 500)); /* the oldest (its address held 4) made room */
    assert_false(closed_within(fds[1], 200));
    assert_false(closed_within(newer, 0));
    /* 127.0.0.5 holds 3 now, 127.0.0.6 still 4: this handshake evicts the oldest of .6. */
    whoami_ok(s);
    assert_true(closed_within(fds[4], 500));
    assert_false(closed_within(fds[1], 0));
    /* Two more from 127.0.0.8: .5 and .6 hold 3 each, the older .5 one goes; the lone
     * connection from 127.0.0.7 stays. */
    int more[2] = {tcp_from(s, "127.0.0.8"), tcp_from(s, "127.0.0.8")};
    assert_true(closed_within(fds[1], 500));
    assert_false(closed_within(newer, 200));
    assert_false(closed_within(more[0], 0));
    close(more[0]);
    close(more[1]);
    for (int i = 0; i < 8; i++)
        close(fds[i]);
    close(newer);
    tc_httpd_free(s);

    /* Two slots, both held by certificate holders: the third is refused at once, also with a
     * certificate; one of them leaves and a new client is served. */
    s = start_limited(2, 0, 4);
    SSL_CTX *c1 = NULL, *c2 = NULL;
    SSL *a = tls_from(s, "127.0.0.1", true, &c1);
    tls_whoami(a); /* established (authenticated) on the server's side too */
    SSL *b = tls_from(s, "127.0.0.1", true, &c2);
    tls_whoami(b);
    int third = tcp_from(s, "127.0.0.8");
    assert_true(closed_within(third, 500));
    close(third);
    tls_free(a, c1);
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    whoami_ok(s);
    tls_free(b, c2);
    tc_httpd_free(s);
}

/* In a child process (limits are process-wide): a soft RLIMIT_NOFILE too small for
 * max_connections is raised to the hard limit; with a hard limit too small as well the server
 * still starts (max_connections lowered) and serves. */
static void limit_nofile(void **state)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 4000)
        skip(); /* cannot show the raise here */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit low = {.rlim_cur = 512, .rlim_max = rl.rlim_max};
        struct rlimit now;
        if (setrlimit(RLIMIT_NOFILE, &low) != 0)
            _exit(10);
        struct tc_httpd *s = start_limited(1000, 0, 16); /* needs 1,256 descriptors */
        if (getrlimit(RLIMIT_NOFILE, &now) != 0 || now.rlim_cur != rl.rlim_max)
            _exit(11);
        tc_httpd_free(s);
        struct rlimit tight = {.rlim_cur = 600, .rlim_max = 600};
        if (setrlimit(RLIMIT_NOFILE, &tight) != 0)
            _exit(12);
        s = start_limited(1000, 0, 16); /* lowered to 600 - 256 */
        long code = 0;
        int rc = call(s, client_cfg(true, false), "GET", "/v1/whoami", NULL, 0, &code, NULL);
        tc_httpd_free(s);
        _exit(rc == 0 && code == 200 ? 0 : 13);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(peer_identity),
        cmocka_unit_test(no_client_cert),
        cmocka_unit_test(foreign_ca),
        cmocka_unit_test(errors_and_caps),
        cmocka_unit_test(malformed_http),
        cmocka_unit_test(keepalive_load),
        cmocka_unit_test(client_thread),
        cmocka_unit_test(plain_mode),
        cmocka_unit_test(deferred_many_and_stop),
        cmocka_unit_test(limit_per_address),
        cmocka_unit_test(limit_header_deadlines),
        cmocka_unit_test(limit_eviction),
        cmocka_unit_test(limit_nofile),
    };
    int r = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return r;
}
