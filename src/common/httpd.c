/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#define LOGMODULE "httpd"
#include "trustcloud/httpd.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h> /* TAILQ_INIT for a query's evkeyvalq */
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "trustcloud/error.h"
#include "trustcloud/log.h"

#define DEFAULT_MAX_BODY (1024 * 1024)
/* Request line and headers together (libevent answers 400 above it). */
#define MAX_HEADERS (32 * 1024)
/* Answers up to this size are sent as one TLS record (the most one record holds). */
#define ONE_RECORD 16384
/* Descriptors per connection (its TCP socket) and kept for the rest of the process when sizing
 * max_connections to RLIMIT_NOFILE. */
#define FDS_PER_CONN 1
#define FDS_RESERVE 256
/* How far from the oldest an eviction looks for a connection that is not inside a request. */
#define EVICT_SCAN 64
/* Deadlines are checked this often (so they hold to within this). */
#define SWEEP_MS 250
/* After tc_httpd_stop answered the deferred requests: how long their answers may take to leave. */
#define STOP_FLUSH_MS 50

/*
 * One TLS connection as the limits see it. libevent owns the connection (evhttp_connection, its
 * bufferevent and the SSL); this record hangs on the SSL (ex_data) and is freed with it, so it
 * lives exactly as long as the connection's descriptor. Loop thread only.
 */
struct conn {
    struct tc_httpd *srv;
    struct bufferevent *bev;
    bool pending;     /* on the admission queue (accepted, limits not applied yet) */
    bool linked;      /* on srv->conns and counted; false once closed by the limits */
    bool established; /* TLS handshake done */
    bool has_peer;    /* ... with a verified client certificate */
    struct tc_peer peer;
    bool busy;             /* a request was read and its answer has not left completely */
    long long accepted;    /* monotonic ms */
    long long idle_since;  /* monotonic ms of the last completed answer; 0 = none yet */
    bool unauth;           /* on the server's unauthenticated list */
    struct addr_count *ac; /* its address's count while unauthenticated (per-address cap on) */
    struct conn *uprev, *unext;
    struct conn *prev, *next; /* srv->conns, or the admission queue while pending */
};

/* Unauthenticated connections of one client address (key: see addr_key). */
struct addr_count {
    uint8_t key[16];
    unsigned n;
    struct addr_count *next;
};

struct route {
    char *method; /* NULL = any */
    char *prefix;
    size_t plen;
    bool subtree;
    tc_http_handler handler;
    void *arg;
    unsigned flags;
};

/* Fields under deferred_lock, except req (loop thread). */
struct tc_http_deferred {
    struct tc_httpd *srv;       /* NULL once the server let go of it (answered or stopped) */
    struct evhttp_request *req; /* libevent's request; answered exactly once */
    struct tc_http_response resp;
    bool finished;                        /* tc_http_deferred_finish was called */
    int refs;                             /* the handle's owner + the server */
    struct tc_http_deferred *prev, *next; /* srv->deferred: all not yet answered */
    struct tc_http_deferred *done_next;   /* srv->done: finished, to answer on the loop */
};

struct tc_httpd {
    struct tc_httpd_config cfg;
    char bind_addr[64];
    SSL_CTX *ssl_ctx;
    int lfd; /* until libevent's listener owns it */
    int wakefd;
    uint16_t port;
    struct event_base *base;
    struct evhttp *http;
    struct evconnlistener *listener;
    struct event *wake_ev, *sweep_ev, *admit_ev;
    pthread_t thread;
    bool running; /* tc_httpd_start..tc_httpd_stop (caller's side) */
    /* Loop thread only. */
    bool closing; /* stopping: no more handlers run */
    struct conn *conns;
    unsigned nconns;
    struct conn *admit_head, *admit_tail; /* accepted, waiting for the limits */
    /* Unauthenticated connections, oldest first; per-address counts (hash table). */
    struct conn *unauth_head, *unauth_tail;
    unsigned nunauth;
    struct addr_count **addrs;
    size_t naddr_buckets;
    uint32_t addr_seed; /* of the address hash (random: clients choose their addresses) */
    bool listen_paused; /* out of descriptors: accept again at the next sweep */
    long long last_log;
    /* Since the last log line (at most one per second). */
    unsigned n_refused_addr, n_refused_full, n_evicted, n_deadline, n_nofile;
    struct route *routes;
    size_t nroutes;
    /* Under deferred_lock. */
    bool stopping;
    struct tc_http_deferred *deferred;
    struct tc_http_deferred *done_head, *done_tail;
};

/* Per-request state behind tc_http_request.internal; lives on the handler's caller's stack. */
struct req_state {
    struct tc_httpd *srv;
    struct evhttp_request *req;
    struct evkeyvalq query;
    bool query_parsed;
    struct tc_http_deferred *deferred;
};

/* Deferred handles may outlive their server: one process-wide lock for their state. */
static pthread_mutex_t deferred_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int conn_ex_index = -1; /* SSL ex_data slot holding a struct conn */

/* Monotonic milliseconds (never 0). */
static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1;
}

/* ---------- responses ---------- */

static void resp_reset(struct tc_http_response *resp)
{
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

int tc_http_response_bytes(struct tc_http_response *resp, unsigned status, const char *content_type,
                           const void *data, size_t len)
{
    uint8_t *copy = NULL;
    if (len) {
        if (!(copy = malloc(len)))
            return TC_ERR_ALLOC;
        memcpy(copy, data, len);
    }
    resp_reset(resp);
    resp->status = status;
    snprintf(resp->content_type, sizeof(resp->content_type), "%s",
             content_type ? content_type : "application/octet-stream");
    resp->body = copy;
    resp->body_len = len;
    return 0;
}

int tc_http_response_json(struct tc_http_response *resp, unsigned status, const json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT);
    if (!s)
        return TC_ERR_ALLOC;
    resp_reset(resp);
    resp->status = status;
    snprintf(resp->content_type, sizeof(resp->content_type), "application/json");
    resp->body = (uint8_t *)s;
    resp->body_len = strlen(s);
    return 0;
}

int tc_http_response_error(struct tc_http_response *resp, unsigned status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *j = json_pack("{s:s}", "error", msg);
    if (!j)
        return TC_ERR_ALLOC;
    int rc = tc_http_response_json(resp, status, j);
    json_decref(j);
    return rc;
}

static void free_body(const void *data, size_t len, void *extra)
{
    free((void *)data);
}

/* Answers req with resp (whose body it takes over). req is libevent's from then on: it frees it
 * once the answer is written, or at once when the client is already gone. Loop thread. */
static void send_response(struct evhttp_request *req, struct tc_http_response *resp)
{
    unsigned status = resp->status;
    if (status < 100 || status > 599) {
        resp_reset(resp);
        tc_http_response_error(resp, 500, "handler produced no response");
        status = 500;
    }
    if (resp->content_type[0])
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          resp->content_type);
    /* An answer to HEAD has the head only (libevent would send a body it is given). */
    if (resp->body_len && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        struct evbuffer *out = evhttp_request_get_output_buffer(req);
        if (evbuffer_add_reference(out, resp->body, resp->body_len, free_body, NULL) == 0)
            resp->body = NULL; /* the buffer frees it */
        else
            status = 500; /* out of memory: no body rather than a truncated one */
    }
    resp_reset(resp);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    evhttp_send_reply(req, (int)status, NULL, NULL);
    /* The answer is queued (written later, from the loop). Each buffer chain (head, body) would
     * leave as a TLS record of its own: a small answer goes as one, in one packet. */
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    struct evbuffer *out = bev ? bufferevent_get_output(bev) : NULL;
    if (out && evbuffer_get_length(out) <= ONE_RECORD)
        evbuffer_pullup(out, -1);
}

static void send_error(struct evhttp_request *req, unsigned status, const char *msg, bool close)
{
    struct tc_http_response resp = {0};
    tc_http_response_error(&resp, status, "%s", msg);
    if (close)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    send_response(req, &resp);
}

const char *tc_http_query(const struct tc_http_request *req, const char *key)
{
    struct req_state *rs = req->internal;
    if (!rs->query_parsed) {
        const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(rs->req));
        TAILQ_INIT(&rs->query);
        /* A malformed query (an argument without '=') leaves no arguments at all. */
        if (q)
            evhttp_parse_query_str(q, &rs->query);
        rs->query_parsed = true;
    }
    return evhttp_find_header(&rs->query, key);
}

const char *tc_http_header(const struct tc_http_request *req, const char *name)
{
    const struct req_state *rs = req->internal;
    return evhttp_find_header(evhttp_request_get_input_headers(rs->req), name);
}

static void deferred_unref_locked(struct tc_http_deferred *d)
{
    if (--d->refs > 0)
        return;
    resp_reset(&d->resp);
    free(d);
}

/* Removes d from its server's list of unanswered requests (lock held). */
static void deferred_detach_locked(struct tc_http_deferred *d)
{
    struct tc_httpd *srv = d->srv;
    if (!srv)
        return;
    if (d->prev)
        d->prev->next = d->next;
    else
        srv->deferred = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->prev = d->next = NULL;
    d->srv = NULL;
}

struct tc_http_deferred *tc_http_defer(const struct tc_http_request *req)
{
    struct req_state *rs = req ? req->internal : NULL;
    if (!rs || rs->deferred)
        return NULL;
    struct tc_httpd *srv = rs->srv;
    struct tc_http_deferred *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    pthread_mutex_lock(&deferred_lock);
    if (srv->stopping || srv->closing) {
        pthread_mutex_unlock(&deferred_lock);
        free(d);
        return NULL;
    }
    d->srv = srv;
    d->req = rs->req;
    d->refs = 2;
    d->next = srv->deferred;
    if (d->next)
        d->next->prev = d;
    srv->deferred = d;
    rs->deferred = d;
    pthread_mutex_unlock(&deferred_lock);
    return d;
}

/* Wakes the loop thread (deferred answers to send, or the stop). */
static void wake_loop(struct tc_httpd *srv)
{
    uint64_t one = 1;
    if (write(srv->wakefd, &one, sizeof(one)) != sizeof(one) && errno != EAGAIN)
        LOG_ERROR("cannot wake the server loop: %s", strerror(errno));
}

void tc_http_deferred_finish(struct tc_http_deferred *d, struct tc_http_response *resp)
{
    if (!d)
        return;
    pthread_mutex_lock(&deferred_lock);
    struct tc_httpd *srv = d->srv;
    if (srv && !d->finished) {
        /* Queued for the loop thread, the only one that may touch libevent's request. */
        d->resp = *resp;
        resp->body = NULL;
        resp->body_len = 0;
        d->finished = true;
        d->done_next = NULL;
        if (srv->done_tail)
            srv->done_tail->done_next = d;
        else
            srv->done_head = d;
        srv->done_tail = d;
        wake_loop(srv); /* under the lock: srv cannot be freed meanwhile */
    } else {
        resp_reset(resp);
    }
    deferred_unref_locked(d);
    pthread_mutex_unlock(&deferred_lock);
}

/* Sends the answers finished since the last call. Loop thread. */
static void send_finished(struct tc_httpd *srv)
{
    pthread_mutex_lock(&deferred_lock);
    struct tc_http_deferred *d = srv->done_head;
    srv->done_head = srv->done_tail = NULL;
    for (struct tc_http_deferred *x = d; x; x = x->done_next)
        deferred_detach_locked(x);
    pthread_mutex_unlock(&deferred_lock);
    while (d) {
        struct tc_http_deferred *next = d->done_next;
        /* d->resp and d->req are the loop thread's once detached. */
        send_response(d->req, &d->resp);
        d->req = NULL;
        pthread_mutex_lock(&deferred_lock);
        deferred_unref_locked(d);
        pthread_mutex_unlock(&deferred_lock);
        d = next;
    }
}

/* Stopping: every request still deferred is answered (503, or its answer if it just came), so
 * that none is left to libevent unanswered. Returns how many. Loop thread. */
static unsigned answer_all_deferred(struct tc_httpd *srv)
{
    unsigned n = 0;
    send_finished(srv);
    pthread_mutex_lock(&deferred_lock);
    struct tc_http_deferred *d = srv->deferred;
    srv->deferred = NULL;
    for (struct tc_http_deferred *x = d; x; x = x->next)
        x->srv = NULL;
    pthread_mutex_unlock(&deferred_lock);
    while (d) {
        struct tc_http_deferred *next = d->next;
        struct tc_http_response resp = {0};
        tc_http_response_error(&resp, 503, "server is stopping");
        send_response(d->req, &resp);
        d->req = NULL;
        d->prev = d->next = NULL;
        pthread_mutex_lock(&deferred_lock);
        deferred_unref_locked(d);
        pthread_mutex_unlock(&deferred_lock);
        d = next;
        n++;
    }
    return n;
}

static const struct route *find_route(const struct tc_httpd *srv, const char *path)
{
    const struct route *best = NULL;
    size_t plen = strlen(path);
    for (size_t i = 0; i < srv->nroutes; i++) {
        const struct route *r = &srv->routes[i];
        if (r->subtree ? (plen >= r->plen && memcmp(path, r->prefix, r->plen) == 0)
                       : strcmp(path, r->prefix) == 0) {
            if (!best || r->plen > best->plen)
                best = r;
        }
    }
    return best;
}

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return NULL;
}

/* The limits' record of a TLS connection (NULL for a connection without TLS session). */
static struct conn *conn_of(struct evhttp_connection *evcon)
{
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    return ssl ? SSL_get_ex_data(ssl, conn_ex_index) : NULL;
}

/* The answer to the connection's request left completely: the next request is due within
 * idle_timeout_s from now. */
static void on_answered(struct evhttp_request *req, void *arg)
{
    struct conn *c = arg;
    c->busy = false;
    c->idle_since = mono_ms();
}

/* Picks the route and calls its handler; the answer goes out now or, deferred, later. */
static void dispatch(struct tc_httpd *srv, struct evhttp_request *ereq, const char *path,
                     const struct tc_peer *peer)
{
    const char *method = method_name(evhttp_request_get_command(ereq));
    const struct route *r = find_route(srv, path);
    if (!r) {
        send_error(ereq, 404, "no such resource", false);
        return;
    }
    /* Among routes with the same prefix, pick the one for this method. */
    const struct route *m = NULL;
    for (size_t i = 0; method && i < srv->nroutes; i++) {
        const struct route *x = &srv->routes[i];
        if (strcmp(x->prefix, r->prefix) == 0 && (!x->method || strcmp(x->method, method) == 0)) {
            m = x;
            break;
        }
    }
    if (!m) {
        send_error(ereq, 405, "method not allowed", false);
        return;
    }
    if (!srv->cfg.plain_http && !peer && !(m->flags & TC_HTTPD_ROUTE_ANONYMOUS)) {
        send_error(ereq, 401, "client certificate required", false);
        return;
    }
    struct evhttp_connection *evcon = evhttp_request_get_connection(ereq);
    char remote[80] = "?";
    char *host = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evcon, &host, &port);
    if (host)
        snprintf(remote, sizeof(remote), "%s:%u", host, (unsigned)port);
    /* The body, NUL-terminated (not counted) and contiguous. */
    struct evbuffer *in = evhttp_request_get_input_buffer(ereq);
    size_t len = evbuffer_get_length(in);
    const uint8_t *body = NULL;
    if (evbuffer_add(in, "", 1) != 0 || !(body = evbuffer_pullup(in, -1))) {
        send_error(ereq, 500, "out of memory", true);
        return;
    }
    struct req_state rs = {.srv = srv, .req = ereq};
    struct tc_http_request req = {
        .method = method,
        .path = path,
        .body = body,
        .body_len = len,
        .peer = peer,
        .remote_addr = remote,
        .internal = &rs,
    };
    struct tc_http_response resp = {0};
    m->handler(m->arg, &req, &resp);
    if (rs.query_parsed)
        evhttp_clear_headers(&rs.query);
    if (rs.deferred) {
        resp_reset(&resp); /* answered later through the handle */
        return;
    }
    send_response(ereq, &resp);
}

/* libevent read a whole request (head and body within the caps). */
static void on_request(struct evhttp_request *ereq, void *arg)
{
    struct tc_httpd *srv = arg;
    const struct tc_peer *peer = NULL;
    if (!srv->cfg.plain_http) {
        struct conn *c = conn_of(evhttp_request_get_connection(ereq));
        if (!c) {
            /* Only when no TLS session could be made for it (out of memory): never served. */
            send_error(ereq, 500, "no TLS session", true);
            return;
        }
        /* No deadline of ours until the answer has left. */
        c->busy = true;
        evhttp_request_set_on_complete_cb(ereq, on_answered, c);
        peer = c->has_peer ? &c->peer : NULL;
    }
    if (srv->closing) {
        send_error(ereq, 503, "server is stopping", true);
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ereq);
    const char *raw = uri ? evhttp_uri_get_path(uri) : NULL;
    size_t plen = 0;
    char *path = raw ? evhttp_uridecode(raw, 0, &plen) : NULL;
    if (!path || path[0] != '/' || strlen(path) != plen) {
        /* Not an origin-form path, or one that decodes to a NUL byte. */
        send_error(ereq, 400, "malformed request path", false);
    } else {
        dispatch(srv, ereq, path, peer);
    }
    free(path);
}

/* ---------- TLS connections and their limits ---------- */

/* A client address as counted: IPv4 (also IPv4-mapped IPv6) as ::ffff:a.b.c.d, IPv6 by its /64
 * prefix (what one host or site usually holds). */
static void addr_key(const struct sockaddr_storage *ss, uint8_t key[16])
{
    memset(key, 0, 16);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &a->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        memcpy(key, &a->sin6_addr, IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) ? 16 : 8);
    }
}

static struct addr_count **addr_slot(struct tc_httpd *srv, const uint8_t key[16])
{
    uint32_t h = 2166136261u ^ srv->addr_seed; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    struct addr_count **pp = &srv->addrs[h & (srv->naddr_buckets - 1)];
    while (*pp && memcmp((*pp)->key, key, 16) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* c (just accepted) joins the unauthenticated list and its address's count. */
static int unauth_add(struct conn *c, const uint8_t key[16])
{
    struct tc_httpd *srv = c->srv;
    if (srv->addrs) {
        struct addr_count **pp = addr_slot(srv, key);
        if (!*pp) {
            if (!(*pp = calloc(1, sizeof(**pp))))
                return TC_ERR_ALLOC;
            memcpy((*pp)->key, key, 16);
        }
        (*pp)->n++;
        c->ac = *pp;
    }
    c->unauth = true;
    c->unext = NULL;
    c->uprev = srv->unauth_tail;
    if (srv->unauth_tail)
        srv->unauth_tail->unext = c;
    else
        srv->unauth_head = c;
    srv->unauth_tail = c;
    srv->nunauth++;
    return 0;
}

/* c is authenticated or closed: it no longer counts as unauthenticated. */
static void unauth_remove(struct conn *c)
{
    struct tc_httpd *srv = c->srv;
    if (!c->unauth)
        return;
    if (c->uprev)
        c->uprev->unext = c->unext;
    else
        srv->unauth_head = c->unext;
    if (c->unext)
        c->unext->uprev = c->uprev;
    else
        srv->unauth_tail = c->uprev;
    c->uprev = c->unext = NULL;
    c->unauth = false;
    srv->nunauth--;
    if (c->ac && --c->ac->n == 0) {
        struct addr_count **pp = addr_slot(srv, c->ac->key);
        *pp = c->ac->next;
        free(c->ac);
    }
    c->ac = NULL;
}

/* c no longer counts: off the admission queue or the open list, and no longer unauthenticated. */
static void conn_unlink(struct conn *c)
{
    struct tc_httpd *srv = c->srv;
    unauth_remove(c);
    if (c->pending || c->linked) {
        if (c->prev)
            c->prev->next = c->next;
        else if (c->pending)
            srv->admit_head = c->next;
        else
            srv->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        else if (c->pending)
            srv->admit_tail = c->prev;
        if (c->linked)
            srv->nconns--;
    }
    c->prev = c->next = NULL;
    c->pending = c->linked = false;
}

/* OpenSSL frees a connection's SSL (libevent freed the connection): its record goes too. */
static void conn_ssl_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    struct conn *c = ptr;
    if (!c)
        return;
    conn_unlink(c);
    OPENSSL_cleanse(&c->peer, sizeof(c->peer));
    free(c);
}

/* Closes c now: it stops counting at once, the client sees the close at once (also while a
 * deferred request holds libevent's connection open), and libevent frees the connection as for
 * a client that went away. reset: abortive close (nothing of it was read; no TIME_WAIT stays). */
static void conn_kill(struct conn *c, bool reset)
{
    conn_unlink(c);
    int fd = bufferevent_getfd(c->bev);
    if (fd >= 0) {
        if (reset) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        shutdown(fd, SHUT_RDWR);
    }
    bufferevent_trigger_event(c->bev, BEV_EVENT_READING | BEV_EVENT_EOF, 0);
}

/* Makes room: among the EVICT_SCAN oldest unauthenticated connections not inside a request, closes
 * the oldest of those whose address holds the most (a flood's addresses dominate the list: one
 * client's lone handshake is not what goes first); the oldest of all if all of them are inside a
 * request. False if there is none. */
static bool evict_one(struct tc_httpd *srv)
{
    if (!srv->unauth_head)
        return false;
    struct conn *victim = NULL;
    unsigned most = 0;
    int i = 0;
    for (struct conn *c = srv->unauth_head; c && i < EVICT_SCAN; c = c->unext, i++) {
        if (c->busy)
            continue;
        unsigned n = c->ac ? c->ac->n : 1;
        if (!victim || n > most) {
            victim = c;
            most = n;
        }
    }
    if (!victim)
        victim = srv->unauth_head;
    srv->n_evicted++;
    conn_kill(victim, false);
    return true;
}

/* The handshake is done: a verified client certificate makes the connection authenticated. */
static void on_ssl_info(const SSL *ssl, int where, int ret)
{
    if (!(where & SSL_CB_HANDSHAKE_DONE))
        return;
    struct conn *c = SSL_get_ex_data(ssl, conn_ex_index);
    if (!c || c->established)
        return;
    c->established = true;
    if (tc_tls_peer((SSL *)ssl, &c->peer) == 0) {
        c->has_peer = true;
        unauth_remove(c);
    }
    ERR_clear_error();
}

/* libevent accepted a connection: its TLS bufferevent (the descriptor follows right after). The
 * limits are applied on the admission event, in the same loop iteration. */
static struct bufferevent *on_new_connection(struct event_base *base, void *arg)
{
    struct tc_httpd *srv = arg;
    struct conn *c = calloc(1, sizeof(*c));
    SSL *ssl = SSL_new(srv->ssl_ctx);
    struct bufferevent *bev = NULL;
    if (!c || !ssl || SSL_set_ex_data(ssl, conn_ex_index, c) != 1) {
        free(c);
        SSL_free(ssl);
        LOG_WARN("out of memory for a new connection");
        return NULL; /* libevent makes a plain one: on_request answers it 500 and closes */
    }
    c->srv = srv;
    c->accepted = mono_ms();
    /* Writes are retried from libevent's buffers, which may move (also with a caller's ctx). */
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_info_callback(ssl, on_ssl_info);
    /* From here on the SSL (and with it c) belongs to the bufferevent. */
    if (!(bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                               BEV_OPT_CLOSE_ON_FREE))) {
        SSL_free(ssl);
        LOG_WARN("out of memory for a new connection");
        return NULL;
    }
    /* A client closing without close_notify is a client that left, not an error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    c->bev = bev;
    c->pending = true; /* at the tail: admitted in the order they came */
    c->prev = srv->admit_tail;
    if (c->prev)
        c->prev->next = c;
    else
        srv->admit_head = c;
    srv->admit_tail = c;
    event_active(srv->admit_ev, EV_TIMEOUT, 0);
    return bev;
}

/* Applies the limits to the connections accepted since the last call: the per-address cap, then
 * room in the unauthenticated share and in max_connections (evicting, or refusing when every
 * connection holds a verified certificate). */
static void on_admit(evutil_socket_t fd_unused, short what, void *arg)
{
    struct tc_httpd *srv = arg;
    struct conn *c;
    while ((c = srv->admit_head) != NULL) {
        conn_unlink(c); /* off the queue */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = bufferevent_getfd(c->bev);
        if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) {
            conn_kill(c, true); /* already gone */
            continue;
        }
        uint8_t key[16];
        addr_key(&ss, key);
        if (srv->addrs) {
            const struct addr_count *ac = *addr_slot(srv, key);
            if (ac && ac->n >= srv->cfg.max_unauth_per_addr) {
                srv->n_refused_addr++;
                conn_kill(c, true);
                continue;
            }
        }
        if ((srv->nunauth >= srv->cfg.max_unauth || srv->nconns >= srv->cfg.max_connections) &&
            !evict_one(srv)) {
            srv->n_refused_full++; /* every connection has a verified certificate */
            conn_kill(c, true);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->linked = true;
        c->next = srv->conns;
        if (c->next)
            c->next->prev = c;
        srv->conns = c;
        srv->nconns++;
        if (!c->has_peer && unauth_add(c, key) != 0)
            conn_kill(c, true);
    }
}

/* accept() failed for another reason than a client that left: out of descriptors, the listening
 * socket (level-triggered) would wake the loop at once again. Paused until the next sweep. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    struct tc_httpd *srv = arg;
    int e = errno;
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        srv->n_nofile++;
        if (evconnlistener_disable(lev) == 0)
            srv->listen_paused = true;
    } else {
        LOG_WARN("accept: %s", strerror(e));
    }
}

/* RLIMIT_NOFILE: raises the soft limit to the hard one if want connections need more; returns
 * how many connections fit. */
static unsigned fit_nofile(unsigned want, unsigned per_conn)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)want * per_conn + FDS_RESERVE;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return want;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0) {
        LOG_INFO("open-file limit raised from %llu to %llu", (unsigned long long)old,
                 (unsigned long long)rl.rlim_cur);
    } else {
        rl.rlim_cur = old;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return want;
    rlim_t fit = rl.rlim_cur > FDS_RESERVE + per_conn ? (rl.rlim_cur - FDS_RESERVE) / per_conn : 1;
    LOG_WARN("max_connections lowered from %u to %llu: the open-file limit is %llu", want,
             (unsigned long long)fit, (unsigned long long)rl.rlim_cur);
    return (unsigned)fit;
}

__attribute__((format(printf, 4, 5))) static void msg_part(char *msg, size_t cap, size_t *n,
                                                           const char *fmt, ...)
{
    if (*n >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(msg + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (r > 0)
        *n += (size_t)r;
}

/* Closes connections past a deadline: handshake, first request, keep-alive (the next request).
 * Logs what the limits refused since the last report, at most once a second. */
static void on_sweep(evutil_socket_t fd_unused, short what, void *arg)
{
    struct tc_httpd *srv = arg;
    long long now = mono_ms();
    struct conn *c = srv->conns;
    while (c) {
        struct conn *next = c->next;
        if (!c->established) {
            unsigned s = srv->cfg.handshake_timeout_s < srv->cfg.header_timeout_s
                             ? srv->cfg.handshake_timeout_s
                             : srv->cfg.header_timeout_s;
            if (now > c->accepted + 1000LL * s) {
                LOG_DEBUG("closing a connection past its handshake deadline");
                srv->n_deadline++;
                conn_kill(c, false);
            }
        } else if (!c->busy) {
            long long due = c->idle_since ? c->idle_since + srv->cfg.idle_timeout_s * 1000LL
                                          : c->accepted + srv->cfg.header_timeout_s * 1000LL;
            if (now > due) {
                LOG_DEBUG("closing a connection: no request %s",
                          c->idle_since ? "within the keep-alive timeout"
                                        : "within the header timeout");
                if (!c->idle_since)
                    srv->n_deadline++;
                conn_kill(c, false);
            }
        }
        c = next;
    }
    if (srv->listen_paused && srv->listener && !srv->closing &&
        evconnlistener_enable(srv->listener) == 0)
        srv->listen_paused = false;
    if (now - srv->last_log < 1000)
        return;
    srv->last_log = now;
    if (!(srv->n_refused_addr || srv->n_refused_full || srv->n_evicted || srv->n_deadline ||
          srv->n_nofile))
        return;
    char msg[512] = "";
    size_t n = 0;
    if (srv->n_refused_addr)
        msg_part(msg, sizeof(msg), &n, ", %u refused (address at %u unauthenticated)",
                 srv->n_refused_addr, srv->cfg.max_unauth_per_addr);
    if (srv->n_refused_full)
        msg_part(msg, sizeof(msg), &n, ", %u refused (all %u held by certificate holders)",
                 srv->n_refused_full, srv->cfg.max_connections);
    if (srv->n_evicted)
        msg_part(msg, sizeof(msg), &n, ", %u unauthenticated evicted", srv->n_evicted);
    if (srv->n_deadline)
        msg_part(msg, sizeof(msg), &n, ", %u closed at the handshake or first-request deadline",
                 srv->n_deadline);
    if (srv->n_nofile)
        msg_part(msg, sizeof(msg), &n, ", accept out of descriptors %u times", srv->n_nofile);
    LOG_WARN("connection limits since the last report%s; %u open, %u unauthenticated", msg,
             srv->nconns, srv->nunauth);
    srv->n_refused_addr = srv->n_refused_full = srv->n_evicted = srv->n_deadline = 0;
    srv->n_nofile = 0;
}

/* Deferred answers to send, or tc_httpd_stop: answers every deferred request, accepts no more
 * connections and ends the loop once those answers had a moment to leave. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct tc_httpd *srv = arg;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        LOG_DEBUG("wake: %s", strerror(errno));
    send_finished(srv);
    pthread_mutex_lock(&deferred_lock);
    bool stop = srv->stopping;
    pthread_mutex_unlock(&deferred_lock);
    if (!stop || srv->closing)
        return;
    srv->closing = true;
    if (srv->listener)
        evconnlistener_disable(srv->listener);
    if (answer_all_deferred(srv) > 0) {
        struct timeval tv = {0, STOP_FLUSH_MS * 1000};
        event_base_loopexit(srv->base, &tv);
    } else {
        event_base_loopbreak(srv->base);
    }
}

static void *loop_main(void *arg)
{
    struct tc_httpd *srv = arg;
    /* Writes to a socket the client closed must fail with EPIPE, not kill the process. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (event_base_dispatch(srv->base) < 0)
        LOG_ERROR("the server loop failed");
    return NULL;
}

/* libevent's own messages: client-triggered ones (bad requests) are not worth more than debug. */
static void on_event_log(int severity, const char *msg)
{
    if (severity >= EVENT_LOG_ERR)
        LOG_ERROR("libevent: %s", msg);
    else
        LOG_DEBUG("libevent: %s", msg);
}

static void global_init(void)
{
    conn_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_ssl_free);
    event_set_log_callback(on_event_log);
}

/* ---------- lifecycle ---------- */

static int listen_socket(const char *addr, uint16_t port, int *fd_out, uint16_t *port_out)
{
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char portstr[8];
    int fd = -1, rc = 0;
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
    if (getaddrinfo(addr, portstr, &hints, &ai) != 0 || !ai) {
        LOG_ERROR("bind address \"%s\" is not a numeric IP address", addr);
        return TC_ERR_INVALID_ARG;
    }
    int one = 1;
    if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        LOG_ERROR("cannot listen on %s:%u: %s", addr, (unsigned)port, strerror(errno));
        rc = TC_ERR_IO;
        goto out;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        rc = TC_ERR_IO;
        goto out;
    }
    *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return rc;
}

int tc_httpd_new(const struct tc_httpd_config *cfg, struct tc_httpd **out)
{
    int rc;
    *out = NULL;
    if (!cfg)
        return TC_ERR_INVALID_ARG;
    pthread_once(&global_once, global_init);
    if (conn_ex_index < 0)
        return TC_ERR_INTERNAL;
    struct tc_httpd *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return TC_ERR_ALLOC;
    srv->lfd = srv->wakefd = -1;
    srv->cfg = *cfg;
    snprintf(srv->bind_addr, sizeof(srv->bind_addr), "%s",
             cfg->bind_addr ? cfg->bind_addr : "127.0.0.1");
    srv->cfg.bind_addr = srv->bind_addr;
    srv->cfg.ssl_ctx = NULL;
    memset(&srv->cfg.tls, 0, sizeof(srv->cfg.tls)); /* not kept: pointers are the caller's */
    if (!srv->cfg.max_body)
        srv->cfg.max_body = DEFAULT_MAX_BODY;
    if (!srv->cfg.max_connections)
        srv->cfg.max_connections = 1024;
    if (!srv->cfg.idle_timeout_s)
        srv->cfg.idle_timeout_s = 60;
    if (!srv->cfg.handshake_timeout_s)
        srv->cfg.handshake_timeout_s = 10;
    if (!srv->cfg.header_timeout_s)
        srv->cfg.header_timeout_s = 10;
    srv->cfg.max_connections = fit_nofile(srv->cfg.max_connections, FDS_PER_CONN);
    if (!srv->cfg.max_unauth)
        srv->cfg.max_unauth = srv->cfg.max_connections / 2;
    if (srv->cfg.max_unauth > srv->cfg.max_connections)
        srv->cfg.max_unauth = srv->cfg.max_connections;
    if (!srv->cfg.max_unauth)
        srv->cfg.max_unauth = 1;
    if (srv->cfg.max_unauth_per_addr && !cfg->plain_http) {
        size_t nb = 64;
        while (nb < srv->cfg.max_unauth)
            nb <<= 1;
        if (!(srv->addrs = calloc(nb, sizeof(*srv->addrs)))) {
            rc = TC_ERR_ALLOC;
            goto out;
        }
        srv->naddr_buckets = nb;
        if (RAND_bytes((unsigned char *)&srv->addr_seed, sizeof(srv->addr_seed)) != 1)
            srv->addr_seed = (uint32_t)mono_ms();
    }
    if (!cfg->plain_http) {
        if (cfg->ssl_ctx) {
            if (!SSL_CTX_up_ref(cfg->ssl_ctx)) {
                rc = TC_ERR_INTERNAL;
                goto out;
            }
            srv->ssl_ctx = cfg->ssl_ctx;
        } else if ((rc = tc_tls_server_ctx(&cfg->tls, &srv->ssl_ctx)) != 0) {
            goto out;
        }
    }
    if ((rc = listen_socket(srv->bind_addr, cfg->port, &srv->lfd, &srv->port)) != 0)
        goto out;
    if ((srv->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        rc = TC_ERR_IO;
        goto out;
    }
    *out = srv;
    srv = NULL;
out:
    tc_httpd_free(srv);
    return rc;
}

int tc_httpd_route(struct tc_httpd *srv, const char *method, const char *prefix,
                   tc_http_handler handler, void *arg, unsigned flags)
{
    if (!srv || !prefix || prefix[0] != '/' || !handler || srv->running)
        return TC_ERR_INVALID_ARG;
    struct route *r = realloc(srv->routes, (srv->nroutes + 1) * sizeof(*r));
    if (!r)
        return TC_ERR_ALLOC;
    srv->routes = r;
    r = &srv->routes[srv->nroutes];
    memset(r, 0, sizeof(*r));
    r->prefix = strdup(prefix);
    r->method = method ? strdup(method) : NULL;
    if (!r->prefix || (method && !r->method)) {
        free(r->prefix);
        free(r->method);
        return TC_ERR_ALLOC;
    }
    r->plen = strlen(prefix);
    r->subtree = prefix[r->plen - 1] == '/';
    r->handler = handler;
    r->arg = arg;
    r->flags = flags;
    srv->nroutes++;
    return 0;
}

/* Frees libevent's side: the listener and every connection (their records go with their SSL
 * objects), pending finalizations included. */
static void release_loop(struct tc_httpd *srv)
{
    if (srv->http)
        evhttp_free(srv->http);
    srv->http = NULL;
    srv->listener = NULL;
    if (srv->wake_ev)
        event_free(srv->wake_ev);
    if (srv->sweep_ev)
        event_free(srv->sweep_ev);
    if (srv->admit_ev)
        event_free(srv->admit_ev);
    srv->wake_ev = srv->sweep_ev = srv->admit_ev = NULL;
    if (srv->base)
        event_base_free(srv->base); /* runs the bufferevents' deferred frees */
    srv->base = NULL;
}

int tc_httpd_start(struct tc_httpd *srv)
{
    if (!srv || srv->running || srv->lfd < 0)
        return TC_ERR_INVALID_ARG;
    int rc = TC_ERR_ALLOC;
    if (!(srv->base = event_base_new()) || !(srv->http = evhttp_new(srv->base)))
        goto fail;
    evhttp_set_gencb(srv->http, on_request, srv);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(srv->http, (ev_ssize_t)srv->cfg.max_body);
    evhttp_set_max_headers_size(srv->http, MAX_HEADERS);
    /* libevent's own timer: no byte read or written for this long (a request head or body, or an
     * answer the client does not take); the deadlines of the limits come on top (sweep). */
    evhttp_set_timeout(srv->http, (int)srv->cfg.idle_timeout_s);
    evhttp_set_default_content_type(srv->http, NULL);
    /* A body above max_body is read and dropped before the 413, so that the client, still
     * sending, reads the answer instead of a reset. */
    evhttp_set_flags(srv->http, EVHTTP_SERVER_LINGERING_CLOSE);
    if (!srv->cfg.plain_http)
        evhttp_set_bevcb(srv->http, on_new_connection, srv);
    if (!(srv->wake_ev = event_new(srv->base, srv->wakefd, EV_READ | EV_PERSIST, on_wake, srv)) ||
        !(srv->sweep_ev = event_new(srv->base, -1, EV_PERSIST, on_sweep, srv)) ||
        !(srv->admit_ev = event_new(srv->base, -1, 0, on_admit, srv)))
        goto fail;
    struct timeval sweep = {0, SWEEP_MS * 1000};
    rc = TC_ERR_IO;
    if (event_add(srv->wake_ev, NULL) != 0 || event_add(srv->sweep_ev, &sweep) != 0)
        goto fail;
    struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(srv->http, srv->lfd);
    srv->lfd = -1; /* the listener's (it closes it), also when that failed half-way */
    if (!bound)
        goto fail;
    srv->listener = evhttp_bound_socket_get_listener(bound);
    evconnlistener_set_error_cb(srv->listener, on_accept_error);
    if (pthread_create(&srv->thread, NULL, loop_main, srv) != 0) {
        rc = TC_ERR_INTERNAL;
        goto fail;
    }
    srv->running = true;
    return 0;
fail:
    release_loop(srv);
    return rc;
}

void tc_httpd_stop(struct tc_httpd *srv)
{
    if (!srv || !srv->running)
        return;
    /* The loop answers every deferred request (so no connection is left waiting) and ends. */
    pthread_mutex_lock(&deferred_lock);
    srv->stopping = true;
    wake_loop(srv);
    pthread_mutex_unlock(&deferred_lock);
    pthread_join(srv->thread, NULL);
    release_loop(srv);
    srv->running = false;
}

void tc_httpd_free(struct tc_httpd *srv)
{
    if (!srv)
        return;
    tc_httpd_stop(srv);
    release_loop(srv); /* started and failed, or never started */
    if (srv->lfd >= 0)
        close(srv->lfd);
    if (srv->wakefd >= 0)
        close(srv->wakefd);
    for (size_t i = 0; i < srv->nroutes; i++) {
        free(srv->routes[i].method);
        free(srv->routes[i].prefix);
    }
    free(srv->routes);
    /* Every connection is freed by now: the per-address counts are gone with them. */
    free(srv->addrs);
    SSL_CTX_free(srv->ssl_ctx);
    free(srv);
}

uint16_t tc_httpd_port(const struct tc_httpd *srv)
{
    return srv ? srv->port : 0;
}
