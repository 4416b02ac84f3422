/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTPS client (libcurl, OpenSSL backend) for many concurrent requests with
 * mutual TLS: the coordinator polling thousands of agents, agents calling the
 * coordinator, CLIs.
 *
 * One struct tc_httpc multiplexes any number of requests on a libcurl multi
 * handle: no thread per request, connections are kept alive and reused per
 * host (at most max_host_connections at once; further requests to that host
 * wait for a free connection). Completion callbacks run on the thread that
 * drives the client: the caller's loop (tc_httpc_run) or the helper thread
 * (tc_httpc_start_thread), never both.
 *
 * TLS: TLS 1.3 (1.2 on request), the server certificate must chain to ca_file
 * (the system store is never used) and match the URL's host name or IP
 * address (or, for a request with a pinned key, have exactly that key: the pin
 * then names the peer instead of the host); the client certificate is presented
 * when configured. A client (or one request) may also name the role the server
 * must have (expect_peer): that check runs after every handshake and before
 * any byte of the request is sent.
 *
 * Programs should call curl_global_init(CURL_GLOBAL_DEFAULT) once at start
 * and curl_global_cleanup() at exit (the constructors also call
 * curl_global_init, which is reference-counted).
 */
#ifndef TRUSTCLOUD_HTTPC_H
#define TRUSTCLOUD_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trustcloud/tls.h"

struct tc_httpc_config {
    const char *cert_file;      /* client certificate (PEM), optional */
    const char *key_file;       /* its key (PEM), required with cert_file */
    const char *ca_file;        /* trust anchors (PEM); required for https */
    long timeout_ms;            /* whole request; 0 = 10000 */
    long connect_timeout_ms;    /* TCP + TLS setup; 0 = 5000 */
    size_t max_body;            /* response body cap; 0 = 1 MiB */
    long max_host_connections;  /* parallel connections per host; 0 = 64 */
    long max_total_connections; /* parallel connections overall; 0 = 1024 */
    bool allow_tls12;
    bool allow_plain_http; /* accept http:// URLs (tests only) */
    /* Whom every https request of this client must reach (tls.h): checked on the server's
     * verified certificate after the handshake, before the request is sent; a server of
     * another role fails the request with TC_ERR_SIGNATURE and nothing is sent. */
    enum tc_tls_expect expect_peer;
    /* Optional, tc_httpc_request only: receives a one-line reason when the server was refused
     * for its role (or its certificate was not trusted), "" otherwise. */
    char *error_detail;
    size_t error_detail_len;
};

/*
 * Completion: status is 0 when an HTTP response arrived (whatever http_code),
 * else TC_ERR_TOO_LARGE (body above max_body), TC_ERR_SIGNATURE (server
 * certificate not trusted or wrong name), TC_ERR_IO (connect, TLS, timeout,
 * or cancelled by tc_httpc_free; http_code is then 0). body is valid only
 * during the call (NUL-terminated, not counted; never NULL).
 */
typedef void (*tc_httpc_done)(void *arg, int status, long http_code, const uint8_t *body,
                              size_t len);

struct tc_httpc;

/* Copies what it needs from cfg. */
int tc_httpc_new(const struct tc_httpc_config *cfg, struct tc_httpc **out);

/*
 * Frees the client. The helper thread (if any) is stopped first; requests not
 * completed yet get their callback with TC_ERR_IO on the calling thread. NULL
 * is a no-op.
 */
void tc_httpc_free(struct tc_httpc *c);

/*
 * Queues a request; thread-safe (also from inside a callback). method is
 * "GET", "POST", "PUT", "DELETE"...; body (copied) may be NULL. cb is called
 * exactly once, unless this returns an error.
 */
int tc_httpc_submit(struct tc_httpc *c, const char *method, const char *url,
                    const char *content_type, const void *body, size_t len, tc_httpc_done cb,
                    void *arg);

/* The same with every option, including a timeout for this request only. */
struct tc_httpc_req {
    const char *method;
    const char *url;
    const char *content_type; /* NULL: no Content-Type header */
    const void *body;         /* copied; NULL with len 0 for none */
    size_t len;
    long timeout_ms; /* 0 = the client's timeout_ms */
    /* Optional: the server's public key must also hash to this ("sha256//BASE64 of the DER
     * SubjectPublicKeyInfo", libcurl's CURLOPT_PINNEDPUBLICKEY syntax); a mismatch fails the
     * request with TC_ERR_SIGNATURE. Lets a caller pin one peer among many signed by the CA;
     * the pin then replaces the host name check (node certificates name the node, not the
     * address it chose). */
    const char *pinned_pubkey;
    /* Whom this request must reach; TC_TLS_EXPECT_ANY = the client's expect_peer. */
    enum tc_tls_expect expect_peer;
    /* Optional NULL-terminated extra request headers ("Name: value"), copied. */
    const char *const *headers;
    tc_httpc_done cb;
    void *arg;
};
int tc_httpc_submit_req(struct tc_httpc *c, const struct tc_httpc_req *req);

/*
 * Drives transfers for up to timeout_ms (returns early once something
 * completed or a request was submitted) and runs completion callbacks.
 * Returns the number of requests not completed yet (>= 0), or a TC_ERR_*.
 */
int tc_httpc_run(struct tc_httpc *c, int timeout_ms);

/* Requests submitted and not completed yet. Thread-safe. */
size_t tc_httpc_pending(struct tc_httpc *c);

/* Drives the client on a helper thread instead (callbacks run there). */
int tc_httpc_start_thread(struct tc_httpc *c);

/*
 * Synchronous request for CLIs: one transfer, same semantics as the callback
 * (0 when a response arrived; *http_code set). *resp (malloc'd,
 * NUL-terminated) and *resp_len are optional.
 */
int tc_httpc_request(const struct tc_httpc_config *cfg, const char *method, const char *url,
                     const char *content_type, const void *body, size_t len, long *http_code,
                     uint8_t **resp, size_t *resp_len);

#endif
