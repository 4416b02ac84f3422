/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTPS server for the coordinator and agents: libevent's evhttp parses HTTP
 * over an OpenSSL bufferevent per connection, made from our SSL_CTX (mutual
 * TLS by default, see tls.h).
 *
 * One loop thread (an event_base) accepts connections, runs the TLS
 * handshakes, reads requests and calls the handlers.
 *
 * Threading: handlers all run on the loop thread, one at a time, so they must
 * be quick (no blocking I/O, no TPM calls). A handler that has to wait (long
 * poll, event stream) calls tc_http_defer() and answers later, from any
 * thread, with tc_http_deferred_finish() (the answer is handed to the loop
 * thread, which sends it).
 *
 * Errors the server produces itself have a JSON body {"error": "..."}: 404
 * (no route), 405 (route exists, other method), 401 (route needs a client
 * certificate and none was presented), 400 (path that is not an absolute
 * path or decodes to a NUL byte), 500 (handler set no status). Requests that
 * libevent refuses before a handler could see them get its own short HTML
 * body and the connection is closed: 400 (not HTTP, a malformed or over 32 KiB
 * head), 413 (a body above max_body: read and dropped first, so that a client
 * still sending reads the answer), 501 (unknown method). The server keeps
 * serving everyone else.
 *
 * Limits (TLS mode; plain_http has only idle_timeout_s).
 * A connection is "unauthenticated" while its handshake runs and, after it,
 * when the client presented no certificate (allow_anonymous). Unauthenticated
 * connections are counted per client address (IPv4 address; IPv6 /64 prefix;
 * IPv4-mapped IPv6 as IPv4) and in all:
 *  - a new connection from an address that already holds max_unauth_per_addr
 *    of them is closed at once (reset; nothing is read from it, no slot is held);
 *  - when max_unauth of them are open, or max_connections connections of any
 *    kind, one unauthenticated connection is closed to make room: among the
 *    64 oldest that are not in the middle of a request, the oldest of those
 *    whose address holds the most (else the oldest of all); only when every
 *    open connection is authenticated is the new one refused. Connections with
 *    a verified client certificate are thus never evicted and not subject to
 *    the per-address cap, only to max_connections;
 *  - deadlines, for every connection: the handshake within handshake_timeout_s
 *    of accept, a complete first request (head and body) within
 *    header_timeout_s of accept, each further request within idle_timeout_s of
 *    the previous answer (a client trickling bytes does not extend them), and
 *    no byte read or written for idle_timeout_s. A request being handled or
 *    deferred has no deadline here.
 * Refusals and evictions are logged once per second with their counts.
 * tc_httpd_new raises the process's RLIMIT_NOFILE soft limit to the hard limit
 * when max_connections needs more descriptors (1 per connection) and lowers
 * max_connections, with a warning, when even the hard limit is too small.
 */
#ifndef TRUSTCLOUD_HTTPD_H
#define TRUSTCLOUD_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "trustcloud/tls.h"

struct tc_httpd;

struct tc_httpd_config {
    const char *bind_addr; /* numeric IPv4/IPv6 address; NULL = "127.0.0.1" */
    uint16_t port;         /* 0 = any free port (see tc_httpd_port) */
    /* TLS: an SSL_CTX made by tc_tls_server_ctx (the server takes a reference), or the
     * settings to make one. */
    SSL_CTX *ssl_ctx;
    struct tc_tls_config tls;
    bool plain_http;              /* no TLS at all. For tests only: requests have no peer. */
    size_t max_body;              /* request body cap; 0 = 1 MiB */
    unsigned max_connections;     /* concurrent connections; 0 = 1024 (see "Limits") */
    unsigned idle_timeout_s;      /* keep-alive: next request head due this long after the
                                   * last answer (and no byte for this long); 0 = 60 */
    unsigned handshake_timeout_s; /* TLS handshake done within this of accept; 0 = 10 */
    unsigned header_timeout_s;    /* first request head complete within this of accept; 0 = 10 */
    unsigned max_unauth;          /* unauthenticated connections in all; 0 = max_connections/2 */
    unsigned max_unauth_per_addr; /* unauthenticated connections per client address; 0 = no cap */
};

/* Request as seen by a handler. Everything it points to lives until the handler returns. */
struct tc_http_request {
    const char *method;  /* "GET", "POST", ... */
    const char *path;    /* URL path, percent-decoded, without the query */
    const uint8_t *body; /* request body (NUL-terminated, not counted), never NULL */
    size_t body_len;
    const struct tc_peer *peer; /* verified client certificate, or NULL (anonymous/plain) */
    const char *remote_addr;    /* "ip:port" of the TCP peer */
    void *internal;             /* for tc_http_query/tc_http_header/tc_http_defer */
};

/* A query argument's (decoded) value, or NULL. */
const char *tc_http_query(const struct tc_http_request *req, const char *key);
/* A request header (case-insensitive name), or NULL. */
const char *tc_http_header(const struct tc_http_request *req, const char *name);

/* Response filled by a handler. The server frees body (malloc'd) after sending it. */
struct tc_http_response {
    unsigned status; /* 0 = handler forgot: the server answers 500 */
    char content_type[64];
    uint8_t *body;
    size_t body_len;
};

/* Sets status and a JSON body (serialised compactly; body is not stolen). */
int tc_http_response_json(struct tc_http_response *resp, unsigned status, const json_t *body);
/* Sets status and {"error": "<formatted text>"}. */
int tc_http_response_error(struct tc_http_response *resp, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sets status and a copy of len bytes with the given content type. */
int tc_http_response_bytes(struct tc_http_response *resp, unsigned status, const char *content_type,
                           const void *data, size_t len);

typedef void (*tc_http_handler)(void *arg, const struct tc_http_request *req,
                                struct tc_http_response *resp);

enum {
    /* The route also serves clients without a certificate (e.g. enrollment). Needs
     * tls.allow_anonymous in the server config; the handler sees req->peer == NULL. */
    TC_HTTPD_ROUTE_ANONYMOUS = 1u << 0,
};

/* Creates a server (bound and listening when this returns; not yet serving). */
int tc_httpd_new(const struct tc_httpd_config *cfg, struct tc_httpd **out);

/*
 * Adds a route before tc_httpd_start. method NULL matches any method. A prefix
 * ending in '/' matches every path below it; otherwise the path must equal the
 * prefix. The longest matching prefix wins. Not thread-safe with a running server.
 */
int tc_httpd_route(struct tc_httpd *srv, const char *method, const char *prefix,
                   tc_http_handler handler, void *arg, unsigned flags);

/* Starts the loop thread. */
int tc_httpd_start(struct tc_httpd *srv);
/* Stops serving and closes every connection (pending deferred requests get 503). Idempotent. */
void tc_httpd_stop(struct tc_httpd *srv);
/* Stops if needed and frees everything; NULL is a no-op. */
void tc_httpd_free(struct tc_httpd *srv);
/* The bound TCP port (useful with port 0). */
uint16_t tc_httpd_port(const struct tc_httpd *srv);

/*
 * Long-running requests. Inside a handler, tc_http_defer() suspends the
 * request and returns a handle (NULL on failure: answer normally then); the
 * handler returns without filling resp. Later, from any thread,
 * tc_http_deferred_finish() answers it (the response's body is taken over) and
 * frees the handle. Every handle must be finished exactly once, also when the
 * server is stopping (finishing after tc_httpd_stop is allowed and just frees).
 * Until finished the connection is held open and not subject to idle_timeout.
 */
struct tc_http_deferred;
struct tc_http_deferred *tc_http_defer(const struct tc_http_request *req);
void tc_http_deferred_finish(struct tc_http_deferred *d, struct tc_http_response *resp);

#endif
