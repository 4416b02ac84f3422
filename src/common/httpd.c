/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE /* accept4 */
#define LOGMODULE "httpd"
#include "trustcloud/httpd.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

/* Per-direction shuttle buffer: bounds what one connection holds between TLS and HTTP. */
#define SHUTTLE_BUF 16384
#define DEFAULT_MAX_BODY (1024 * 1024)
/* Descriptors per TLS connection (TCP socket, both socketpair ends) and kept for the rest of
 * the process when sizing max_connections to RLIMIT_NOFILE. */
#define FDS_PER_CONN 3
#define FDS_RESERVE 256
/* How far from the oldest an eviction looks for a connection that is not inside a request. */
#define EVICT_SCAN 64
/* Deadlines are checked this often (so they hold to within this). */
#define SWEEP_MS 250

enum ep_kind { EP_LISTEN, EP_WAKE, EP_TCP, EP_PAIR };

struct conn;

/* What an epoll event points at. */
struct endpoint {
    enum ep_kind kind;
    struct conn *c;
};

/* Identity of a TLS connection, handed to the HTTP side through the socketpair fd. Shared by
 * the TLS loop's struct conn and libmicrohttpd's socket context (reference counted): the HTTP
 * side tells the loop whether a request is under way, for the header and keep-alive deadlines. */
struct conn_ident {
    bool has_peer;
    struct tc_peer peer;
    atomic_int refs;
    atomic_bool busy;        /* a request head arrived and its answer is not complete */
    atomic_llong idle_since; /* monotonic ms of the last completed answer; 0 = none yet */
};

/* Unauthenticated connections of one client address (key: see addr_key). */
struct addr_count {
    uint8_t key[16];
    unsigned n;
    struct addr_count *next;
};

/* Identity waiting for libmicrohttpd to start its side of a connection (keyed by its fd). */
struct pending_ident {
    int fd;
    struct conn_ident *id;
    struct pending_ident *next;
};

struct conn {
    struct tc_httpd *srv;
    int fd;  /* TCP socket */
    int pfd; /* our end of the socketpair; -1 during the handshake */
    SSL *ssl;
    bool established;
    bool closed;
    bool tls_eof;          /* client finished sending */
    bool pair_eof;         /* HTTP side finished sending (closed) */
    bool pair_wr_shut;     /* we told the HTTP side the client finished */
    bool pair_wr_dead;     /* HTTP side stopped reading: drop further client bytes */
    bool lingering;        /* response sent and close_notify out: draining the client */
    size_t drained;        /* bytes discarded while lingering */
    long long deadline;    /* monotonic ms: handshake deadline, or linger deadline once closing */
    long long accepted;    /* monotonic ms */
    struct conn_ident *id; /* once established (one reference) */
    bool unauth;           /* on the server's unauthenticated list */
    struct addr_count *ac; /* its address's count while unauthenticated (per-address cap on) */
    struct conn *uprev, *unext;
    uint32_t ev_tcp, ev_pair;
    struct endpoint ep_tcp, ep_pair;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint8_t in[SHUTTLE_BUF]; /* client -> HTTP */
    size_t in_off, in_len;
    uint8_t out[SHUTTLE_BUF]; /* HTTP -> client */
    size_t out_off, out_len;
    struct conn *prev, *next;
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

struct tc_http_deferred {
    struct tc_httpd *srv;         /* NULL once the request is gone */
    struct MHD_Connection *mconn; /* valid while srv != NULL */
    struct tc_http_response resp;
    bool answered;
    int refs; /* the handler's caller + the request */
    struct tc_http_deferred *prev, *next;
};

struct tc_httpd {
    struct tc_httpd_config cfg;
    char bind_addr[64];
    SSL_CTX *ssl_ctx;
    int lfd, epfd, wakefd;
    uint16_t port;
    struct endpoint ep_listen, ep_wake;
    struct MHD_Daemon *mhd;
    pthread_t thread;
    bool running, stopping;
    struct conn *conns;
    struct conn *dead; /* closed during the current epoll batch */
    unsigned nconns;
    /* Unauthenticated connections, oldest first; per-address counts (hash table). */
    struct conn *unauth_head, *unauth_tail;
    unsigned nunauth;
    struct addr_count **addrs;
    size_t naddr_buckets;
    bool listen_paused; /* out of descriptors: accept again at the next sweep */
    uint32_t addr_seed; /* of the address hash (random: clients choose their addresses) */
    /* Since the last log line (at most one per second). */
    unsigned n_refused_addr, n_refused_full, n_evicted, n_deadline, n_nofile;
    struct route *routes;
    size_t nroutes;
    pthread_mutex_t lock; /* pending identities and deferred requests */
    struct pending_ident *pending;
    struct tc_http_deferred *deferred;
};

/* Per-request state, MHD's con_cls. */
struct req_state {
    struct tc_httpd *srv;
    struct MHD_Connection *mconn;
    struct tc_buf body;
    bool too_large;
    struct tc_http_deferred *deferred;
};

/* Monotonic milliseconds (never 0). */
static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1;
}

static void ident_unref(struct conn_ident *id)
{
    if (id && atomic_fetch_sub(&id->refs, 1) == 1)
        free(id);
}

/* The identity libmicrohttpd holds for a connection (NULL in plain mode). */
static struct conn_ident *mhd_ident(struct MHD_Connection *mc)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
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

/* Queues resp on an MHD connection; takes over resp->body. */
static enum MHD_Result queue(struct MHD_Connection *mc, struct tc_http_response *resp)
{
    unsigned status = resp->status;
    if (status < 100 || status > 599) {
        resp_reset(resp);
        tc_http_response_error(resp, 500, "handler produced no response");
        status = 500;
    }
    struct MHD_Response *r;
    if (resp->body_len)
        r = MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE);
    else
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!r) {
        resp_reset(resp);
        return MHD_NO;
    }
    if (resp->body_len)
        resp->body = NULL; /* MHD owns it now */
    resp->body_len = 0;
    if (resp->content_type[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    enum MHD_Result ret = MHD_queue_response(mc, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result queue_error(struct MHD_Connection *mc, unsigned status, const char *msg)
{
    struct tc_http_response resp = {0};
    if (tc_http_response_error(&resp, status, "%s", msg) != 0)
        return MHD_NO;
    return queue(mc, &resp);
}

/* ---------- requests ---------- */

const char *tc_http_query(const struct tc_http_request *req, const char *key)
{
    const struct req_state *rs = req->internal;
    return MHD_lookup_connection_value(rs->mconn, MHD_GET_ARGUMENT_KIND, key);
}

const char *tc_http_header(const struct tc_http_request *req, const char *name)
{
    const struct req_state *rs = req->internal;
    return MHD_lookup_connection_value(rs->mconn, MHD_HEADER_KIND, name);
}

static void deferred_unref_locked(struct tc_http_deferred *d)
{
    if (--d->refs > 0)
        return;
    resp_reset(&d->resp);
    free(d);
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
    pthread_mutex_lock(&srv->lock);
    if (srv->stopping || !srv->mhd) {
        pthread_mutex_unlock(&srv->lock);
        free(d);
        return NULL;
    }
    d->srv = srv;
    d->mconn = rs->mconn;
    d->refs = 2;
    d->next = srv->deferred;
    if (d->next)
        d->next->prev = d;
    srv->deferred = d;
    rs->deferred = d;
    MHD_suspend_connection(rs->mconn);
    pthread_mutex_unlock(&srv->lock);
    return d;
}

/* Removes d from its server's list (lock held). */
static void deferred_detach_locked(struct tc_http_deferred *d)
{
    if (!d->srv)
        return;
    if (d->prev)
        d->prev->next = d->next;
    else
        d->srv->deferred = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->prev = d->next = NULL;
    d->srv = NULL;
    d->mconn = NULL;
}

/* A process-wide lock: a deferred handle may outlive its server. */
static pthread_mutex_t deferred_lock = PTHREAD_MUTEX_INITIALIZER;

void tc_http_deferred_finish(struct tc_http_deferred *d, struct tc_http_response *resp)
{
    if (!d)
        return;
    pthread_mutex_lock(&deferred_lock);
    struct tc_httpd *srv = d->srv;
    if (srv)
        pthread_mutex_lock(&srv->lock);
    if (d->srv && !d->answered) {
        d->resp = *resp;
        resp->body = NULL;
        resp->body_len = 0;
        d->answered = true;
        MHD_resume_connection(d->mconn);
    } else {
        resp_reset(resp);
    }
    deferred_unref_locked(d);
    if (srv)
        pthread_mutex_unlock(&srv->lock);
    pthread_mutex_unlock(&deferred_lock);
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

static enum MHD_Result dispatch(struct tc_httpd *srv, struct req_state *rs, const char *url,
                                const char *method)
{
    struct MHD_Connection *mc = rs->mconn;
    const struct route *r = find_route(srv, url);
    if (!r)
        return queue_error(mc, 404, "no such resource");
    /* Among routes with the same prefix, pick the one for this method. */
    const struct route *m = NULL;
    for (size_t i = 0; i < srv->nroutes; i++) {
        const struct route *x = &srv->routes[i];
        if (strcmp(x->prefix, r->prefix) == 0 && (!x->method || strcmp(x->method, method) == 0)) {
            m = x;
            break;
        }
    }
    if (!m)
        return queue_error(mc, 405, "method not allowed");
    const struct conn_ident *id = mhd_ident(mc);
    const struct tc_peer *peer = id && id->has_peer ? &id->peer : NULL;
    if (!srv->cfg.plain_http && !peer && !(m->flags & TC_HTTPD_ROUTE_ANONYMOUS))
        return queue_error(mc, 401, "client certificate required");
    char remote[80] = "?";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        char host[64], serv[16];
        const struct sockaddr *sa = ci->client_addr;
        socklen_t sl =
            sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
        if (getnameinfo(sa, sl, host, sizeof(host), serv, sizeof(serv),
                        NI_NUMERICHOST | NI_NUMERICSERV) == 0)
            snprintf(remote, sizeof(remote), "%s:%s", host, serv);
    }
    if (!rs->body.data && tc_buf_put(&rs->body, "", 0) != 0)
        return MHD_NO;
    struct tc_http_request req = {
        .method = method,
        .path = url,
        .body = rs->body.data,
        .body_len = rs->body.len,
        .peer = peer,
        .remote_addr = remote,
        .internal = rs,
    };
    struct tc_http_response resp = {0};
    m->handler(m->arg, &req, &resp);
    if (rs->deferred) {
        resp_reset(&resp); /* answered later through the handle */
        return MHD_YES;
    }
    return queue(mc, &resp);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct tc_httpd *srv = cls;
    struct req_state *rs = *con_cls;
    if (!rs) {
        /* A complete request head: no header or keep-alive deadline until it is answered. */
        struct conn_ident *id = mhd_ident(mc);
        if (id)
            atomic_store(&id->busy, true);
        if (!(rs = calloc(1, sizeof(*rs))))
            return MHD_NO;
        rs->srv = srv;
        rs->mconn = mc;
        tc_buf_init(&rs->body, srv->cfg.max_body);
        *con_cls = rs;
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno || end == cl || *end || n > srv->cfg.max_body) {
                /* Refused before the body is read: MHD closes the connection after this. */
                rs->too_large = true;
                return queue_error(mc, 413, "request body too large");
            }
        }
        return MHD_YES;
    }
    if (rs->deferred) {
        /* Resumed: the deferred answer is ready (or the server is stopping). */
        enum MHD_Result ret = MHD_YES;
        pthread_mutex_lock(&srv->lock);
        if (rs->deferred->answered)
            ret = queue(mc, &rs->deferred->resp);
        pthread_mutex_unlock(&srv->lock);
        return ret;
    }
    if (*upload_data_size) {
        if (!rs->too_large && tc_buf_put(&rs->body, upload_data, *upload_data_size) != 0) {
            rs->too_large = true;
            tc_buf_release(&rs->body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rs->too_large)
        return queue_error(mc, 413, "request body too large");
    return dispatch(srv, rs, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct tc_httpd *srv = cls;
    struct req_state *rs = *con_cls;
    struct conn_ident *id = mhd_ident(mc);
    if (id) {
        /* The next request head is due within idle_timeout_s from now. */
        atomic_store(&id->idle_since, mono_ms());
        atomic_store(&id->busy, false);
    }
    if (!rs)
        return;
    if (rs->deferred) {
        pthread_mutex_lock(&deferred_lock);
        pthread_mutex_lock(&srv->lock);
        deferred_detach_locked(rs->deferred);
        deferred_unref_locked(rs->deferred);
        pthread_mutex_unlock(&srv->lock);
        pthread_mutex_unlock(&deferred_lock);
    }
    tc_buf_release(&rs->body);
    free(rs);
    *con_cls = NULL;
}

/* Moves the identity of a new HTTP-side socket into MHD's per-socket context. */
static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct tc_httpd *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        ident_unref(*socket_context);
        *socket_context = NULL;
        return;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return;
    pthread_mutex_lock(&srv->lock);
    for (struct pending_ident **pp = &srv->pending; *pp; pp = &(*pp)->next) {
        if ((*pp)->fd == ci->connect_fd) {
            struct pending_ident *p = *pp;
            *pp = p->next;
            *socket_context = p->id;
            free(p);
            break;
        }
    }
    pthread_mutex_unlock(&srv->lock);
}

/* Records fd -> identity (taking a reference); an older entry for the same fd number is
 * stale (fd was reused). */
static int pending_add(struct tc_httpd *srv, int fd, struct conn_ident *id)
{
    struct pending_ident *p = calloc(1, sizeof(*p));
    if (!p)
        return TC_ERR_ALLOC;
    p->fd = fd;
    p->id = id;
    atomic_fetch_add(&id->refs, 1);
    pthread_mutex_lock(&srv->lock);
    for (struct pending_ident **pp = &srv->pending; *pp; pp = &(*pp)->next) {
        if ((*pp)->fd == fd) {
            struct pending_ident *old = *pp;
            *pp = old->next;
            ident_unref(old->id);
            free(old);
            break;
        }
    }
    p->next = srv->pending;
    srv->pending = p;
    pthread_mutex_unlock(&srv->lock);
    return 0;
}

static void pending_remove(struct tc_httpd *srv, int fd)
{
    pthread_mutex_lock(&srv->lock);
    for (struct pending_ident **pp = &srv->pending; *pp; pp = &(*pp)->next) {
        if ((*pp)->fd == fd) {
            struct pending_ident *p = *pp;
            *pp = p->next;
            ident_unref(p->id);
            free(p);
            break;
        }
    }
    pthread_mutex_unlock(&srv->lock);
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    LOG_DEBUG("libmicrohttpd: %s", msg);
}

/* ---------- TLS shuttle ---------- */

static int ep_set(struct tc_httpd *srv, int fd, struct endpoint *ep, uint32_t *cur, uint32_t want)
{
    if (*cur == want)
        return 0;
    struct epoll_event ev = {.events = want, .data.ptr = ep};
    if (epoll_ctl(srv->epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
        return TC_ERR_IO;
    *cur = want;
    return 0;
}

/* ---------- connection limits ---------- */

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

static void conn_close(struct conn *c);

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
        if (c->id && atomic_load(&c->id->busy))
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
    conn_close(victim);
    return true;
}

/* Closes a connection we refuse with a reset: nothing was read, no TIME_WAIT stays behind. */
static void refuse_fd(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* Out of descriptors, the level-triggered listen socket would wake the loop at once again:
 * stop watching it until the next sweep. */
static void listen_pause(struct tc_httpd *srv, bool pause)
{
    struct epoll_event ev = {.events = pause ? 0u : (uint32_t)EPOLLIN, .data.ptr = &srv->ep_listen};
    if (epoll_ctl(srv->epfd, EPOLL_CTL_MOD, srv->lfd, &ev) == 0)
        srv->listen_paused = pause;
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

static void conn_close(struct conn *c)
{
    struct tc_httpd *srv = c->srv;
    unauth_remove(c);
    ident_unref(c->id);
    c->id = NULL;
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    if (c->pfd >= 0)
        close(c->pfd);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    ERR_clear_error();
    /* Other events of the current epoll batch may still point at c: free it after the batch. */
    c->closed = true;
    c->fd = c->pfd = -1;
    c->ssl = NULL;
    c->next = srv->dead;
    srv->dead = c;
}

static void free_dead(struct tc_httpd *srv)
{
    while (srv->dead) {
        struct conn *c = srv->dead;
        srv->dead = c->next;
        free(c);
    }
}

static void log_ssl_error(struct conn *c, const char *what, int err)
{
    if (!tc_log_enabled(TC_LOG_DEBUG)) {
        ERR_clear_error();
        return;
    }
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    long vr = SSL_get_verify_result(c->ssl);
    LOG_DEBUG("%s failed (ssl error %d, errno %d): %s%s%s", what, err, errno, buf,
              vr != X509_V_OK ? " / peer certificate: " : "",
              vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "");
    ERR_clear_error();
}

/* The HTTP side is done and everything it said was sent. Closing now would make the kernel
 * answer bytes the client is still sending (say, the rest of a body refused with 413) with a
 * reset, which can destroy the response before the client reads it. So: close_notify, half-close,
 * then discard what still arrives until the client closes, a cap, or the deadline. */
#define LINGER_MAX_BYTES (4u << 20)
#define LINGER_SECONDS 2

static bool conn_linger(struct conn *c)
{
    if (!c->lingering) {
        SSL_shutdown(c->ssl);
        shutdown(c->fd, SHUT_WR);
        c->lingering = true;
        c->deadline = mono_ms() + LINGER_SECONDS * 1000LL;
    }
    uint8_t sink[16384];
    for (;;) {
        ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
        if (n > 0) {
            c->drained += (size_t)n;
            if (c->drained > LINGER_MAX_BYTES)
                break;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (ep_set(c->srv, c->fd, &c->ep_tcp, &c->ev_tcp, EPOLLIN) != 0 ||
                ep_set(c->srv, c->pfd, &c->ep_pair, &c->ev_pair, 0) != 0)
                break;
            return true;
        }
        break; /* EOF or error: the client is gone */
    }
    conn_close(c);
    return false;
}

/* Moves bytes both ways until nothing moves; returns false if c was closed. */
static bool conn_pump(struct conn *c)
{
    if (c->lingering)
        return conn_linger(c);
    bool want_tcp_rd = false, want_tcp_wr = false, want_pair_rd = false, want_pair_wr = false;
    bool progress = true;
    int rounds = 0;
    while (progress && rounds++ < 64) {
        progress = false;
        want_tcp_rd = want_tcp_wr = want_pair_rd = want_pair_wr = false;
        /* 1. client -> buffer */
        if (!c->tls_eof && c->in_len < sizeof(c->in)) {
            size_t n = 0;
            int r = SSL_read_ex(c->ssl, c->in + c->in_len, sizeof(c->in) - c->in_len, &n);
            if (r == 1) {
                if (c->pair_wr_dead)
                    n = 0; /* the HTTP side no longer listens */
                c->in_len += n;
                progress = true;
            } else {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ) {
                    want_tcp_rd = true;
                } else if (e == SSL_ERROR_WANT_WRITE) {
                    want_tcp_wr = true;
                } else if (e == SSL_ERROR_ZERO_RETURN ||
                           (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
                    /* close_notify, or a client that just closed its socket */
                    c->tls_eof = true;
                    progress = true;
                    ERR_clear_error();
                } else {
                    log_ssl_error(c, "SSL_read", e);
                    conn_close(c);
                    return false;
                }
            }
        }
        /* 2. buffer -> HTTP side */
        if (c->in_off < c->in_len) {
            ssize_t n = send(c->pfd, c->in + c->in_off, c->in_len - c->in_off, MSG_NOSIGNAL);
            if (n > 0) {
                c->in_off += (size_t)n;
                progress = true;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                want_pair_wr = true;
            } else if (n < 0 && errno == EINTR) {
                progress = true;
            } else {
                /* MHD closed its side (e.g. after a 413): drop input, keep flushing output. */
                c->pair_wr_dead = true;
                c->in_off = c->in_len = 0;
                progress = true;
            }
            if (c->in_off == c->in_len)
                c->in_off = c->in_len = 0;
        } else if (c->tls_eof && !c->pair_wr_shut) {
            shutdown(c->pfd, SHUT_WR);
            c->pair_wr_shut = true;
        }
        /* 3. HTTP side -> buffer */
        if (!c->pair_eof && c->out_len < sizeof(c->out)) {
            ssize_t n = recv(c->pfd, c->out + c->out_len, sizeof(c->out) - c->out_len, 0);
            if (n > 0) {
                c->out_len += (size_t)n;
                progress = true;
            } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                c->pair_eof = true;
                progress = true;
            } else if (errno == EINTR) {
                progress = true;
            } else {
                want_pair_rd = true;
            }
        }
        /* 4. buffer -> client */
        if (c->out_off < c->out_len) {
            size_t n = 0;
            int r = SSL_write_ex(c->ssl, c->out + c->out_off, c->out_len - c->out_off, &n);
            if (r == 1) {
                c->out_off += n;
                if (c->out_off == c->out_len)
                    c->out_off = c->out_len = 0;
                progress = true;
            } else {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE) {
                    want_tcp_wr = true;
                } else if (e == SSL_ERROR_WANT_READ) {
                    want_tcp_rd = true;
                } else {
                    log_ssl_error(c, "SSL_write", e);
                    conn_close(c);
                    return false;
                }
            }
        }
        if (c->pair_eof && c->out_off == c->out_len)
            return conn_linger(c);
    }
    if (progress) {
        /* Still moving after many rounds: come back on the next loop iteration. */
        want_tcp_rd = want_tcp_wr = want_pair_rd = want_pair_wr = true;
    }
    if ((c->tls_eof || c->pair_eof) && c->deadline == 0)
        c->deadline = mono_ms() + c->srv->cfg.handshake_timeout_s * 1000LL;
    uint32_t et = (want_tcp_rd ? EPOLLIN : 0u) | (want_tcp_wr ? EPOLLOUT : 0u);
    uint32_t ep = (want_pair_rd ? EPOLLIN : 0u) | (want_pair_wr ? EPOLLOUT : 0u);
    if (ep_set(c->srv, c->fd, &c->ep_tcp, &c->ev_tcp, et) != 0 ||
        ep_set(c->srv, c->pfd, &c->ep_pair, &c->ev_pair, ep) != 0) {
        conn_close(c);
        return false;
    }
    return true;
}

/* Handshake done: hand a socketpair end to libmicrohttpd with the peer identity. */
static int conn_establish(struct conn *c)
{
    struct tc_httpd *srv = c->srv;
    int sv[2];
    struct conn_ident *id = calloc(1, sizeof(*id));
    if (!id)
        return TC_ERR_ALLOC;
    atomic_init(&id->refs, 1); /* c's; conn_close drops it */
    atomic_init(&id->busy, false);
    atomic_init(&id->idle_since, 0);
    if (tc_tls_peer(c->ssl, &id->peer) == 0)
        id->has_peer = true;
    c->id = id;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return TC_ERR_IO;
    c->pfd = sv[0];
    struct epoll_event ev = {.events = 0, .data.ptr = &c->ep_pair};
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, c->pfd, &ev) != 0) {
        close(sv[1]);
        return TC_ERR_IO;
    }
    if (pending_add(srv, sv[1], id) != 0) {
        close(sv[1]);
        return TC_ERR_ALLOC;
    }
    /* MHD owns sv[1] from here on, also when this fails. */
    if (MHD_add_connection(srv->mhd, sv[1], (const struct sockaddr *)&c->addr, c->addrlen) !=
        MHD_YES) {
        pending_remove(srv, sv[1]);
        LOG_WARN("libmicrohttpd refused a connection");
        return TC_ERR_IO;
    }
    c->established = true;
    c->deadline = 0; /* from now on the request-head deadline (sweep) */
    if (id->has_peer)
        unauth_remove(c); /* a verified client certificate */
    return 0;
}

static void conn_handshake(struct conn *c)
{
    ERR_clear_error();
    int r = SSL_accept(c->ssl);
    if (r == 1) {
        if (conn_establish(c) != 0) {
            conn_close(c);
            return;
        }
        conn_pump(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    uint32_t want;
    if (e == SSL_ERROR_WANT_READ) {
        want = EPOLLIN;
    } else if (e == SSL_ERROR_WANT_WRITE) {
        want = EPOLLOUT;
    } else {
        log_ssl_error(c, "TLS handshake", e);
        conn_close(c);
        return;
    }
    if (ep_set(c->srv, c->fd, &c->ep_tcp, &c->ev_tcp, want) != 0)
        conn_close(c);
}

static void do_accept(struct tc_httpd *srv)
{
    for (;;) {
        struct sockaddr_storage addr;
        socklen_t alen = sizeof(addr);
        int fd = accept4(srv->lfd, (struct sockaddr *)&addr, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                srv->n_nofile++;
                listen_pause(srv, true);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                LOG_WARN("accept: %s", strerror(errno));
            }
            return;
        }
        uint8_t key[16];
        addr_key(&addr, key);
        if (srv->addrs) {
            const struct addr_count *ac = *addr_slot(srv, key);
            if (ac && ac->n >= srv->cfg.max_unauth_per_addr) {
                srv->n_refused_addr++;
                refuse_fd(fd);
                continue;
            }
        }
        if ((srv->nunauth >= srv->cfg.max_unauth || srv->nconns >= srv->cfg.max_connections) &&
            !evict_one(srv)) {
            srv->n_refused_full++; /* every connection has a verified certificate */
            refuse_fd(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->srv = srv;
        c->fd = fd;
        c->pfd = -1;
        c->addr = addr;
        c->addrlen = alen;
        c->ep_tcp = (struct endpoint){EP_TCP, c};
        c->ep_pair = (struct endpoint){EP_PAIR, c};
        c->accepted = mono_ms();
        c->deadline =
            c->accepted + 1000LL * (srv->cfg.handshake_timeout_s < srv->cfg.header_timeout_s
                                        ? srv->cfg.handshake_timeout_s
                                        : srv->cfg.header_timeout_s);
        c->next = srv->conns;
        if (c->next)
            c->next->prev = c;
        srv->conns = c;
        srv->nconns++;
        if (unauth_add(c, key) != 0) {
            conn_close(c);
            continue;
        }
        c->ev_tcp = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->ep_tcp};
        if (!(c->ssl = SSL_new(srv->ssl_ctx)) || !SSL_set_fd(c->ssl, fd) ||
            epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            conn_close(c);
            continue;
        }
        /* Also with a caller's SSL_CTX: the shuttle retries writes from a buffer that grows. */
        SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_set_accept_state(c->ssl);
    }
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

/* Closes connections past a deadline: handshake, first request head, keep-alive (the next
 * request head), closing phase. Logs what the limits refused since the last sweep. */
static void sweep(struct tc_httpd *srv, bool log)
{
    long long now = mono_ms();
    struct conn *c = srv->conns;
    while (c) {
        struct conn *next = c->next;
        if (c->deadline) {
            if (now > c->deadline) {
                LOG_DEBUG("closing a connection past its %s deadline",
                          c->established ? "linger" : "handshake");
                if (!c->established)
                    srv->n_deadline++;
                conn_close(c);
            }
        } else if (c->established && c->id && !atomic_load(&c->id->busy)) {
            long long idle = atomic_load(&c->id->idle_since);
            long long due = idle ? idle + srv->cfg.idle_timeout_s * 1000LL
                                 : c->accepted + srv->cfg.header_timeout_s * 1000LL;
            if (now > due) {
                LOG_DEBUG("closing a connection: no request head %s",
                          idle ? "within the keep-alive timeout" : "within the header timeout");
                if (!idle)
                    srv->n_deadline++;
                conn_close(c);
            }
        }
        c = next;
    }
    if (srv->listen_paused)
        listen_pause(srv, false);
    if (!log)
        return;
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
        msg_part(msg, sizeof(msg), &n, ", %u closed at the handshake or request-head deadline",
                 srv->n_deadline);
    if (srv->n_nofile)
        msg_part(msg, sizeof(msg), &n, ", accept out of descriptors %u times", srv->n_nofile);
    LOG_WARN("connection limits since the last report%s; %u open, %u unauthenticated", msg,
             srv->nconns, srv->nunauth);
    srv->n_refused_addr = srv->n_refused_full = srv->n_evicted = srv->n_deadline = 0;
    srv->n_nofile = 0;
}

static void *loop_main(void *arg)
{
    struct tc_httpd *srv = arg;
    /* SSL writes to a closed socket must fail with EPIPE, not kill the process. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct epoll_event evs[64];
    long long last_sweep = mono_ms(), last_log = last_sweep;
    for (;;) {
        int n = epoll_wait(srv->epfd, evs, 64, SWEEP_MS);
        if (n < 0 && errno != EINTR) {
            LOG_ERROR("epoll_wait: %s", strerror(errno));
            break;
        }
        bool stop = false;
        for (int i = 0; i < n; i++) {
            struct endpoint *ep = evs[i].data.ptr;
            switch (ep->kind) {
            case EP_WAKE:
                stop = true;
                break;
            case EP_LISTEN:
                do_accept(srv);
                break;
            case EP_TCP:
            case EP_PAIR:
                /* A connection closed earlier in this batch is freed only after it. */
                if (ep->c->closed)
                    break;
                if (!ep->c->established)
                    conn_handshake(ep->c);
                else
                    conn_pump(ep->c);
                break;
            }
        }
        free_dead(srv);
        if (stop)
            break;
        long long now = mono_ms();
        if (now - last_sweep >= SWEEP_MS) {
            bool log = now - last_log >= 1000;
            last_sweep = now;
            if (log)
                last_log = now;
            sweep(srv, log);
            free_dead(srv);
        }
    }
    return NULL;
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
    struct tc_httpd *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return TC_ERR_ALLOC;
    srv->lfd = srv->epfd = srv->wakefd = -1;
    pthread_mutex_init(&srv->lock, NULL);
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
    srv->cfg.max_connections =
        fit_nofile(srv->cfg.max_connections, cfg->plain_http ? 1 : FDS_PER_CONN);
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

int tc_httpd_start(struct tc_httpd *srv)
{
    if (!srv || srv->running || srv->stopping || srv->lfd < 0)
        return TC_ERR_INVALID_ARG;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (srv->cfg.plain_http) {
        srv->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_LISTEN_SOCKET,
                                    srv->lfd, MHD_OPTION_CONNECTION_LIMIT, srv->cfg.max_connections,
                                    MHD_OPTION_CONNECTION_TIMEOUT, srv->cfg.idle_timeout_s,
                                    MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                                    MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
                                    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
        if (!srv->mhd)
            return TC_ERR_IO;
        srv->lfd = -1; /* MHD closes it */
        srv->running = true;
        return 0;
    }
    srv->mhd = MHD_start_daemon(flags | MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL, on_request, srv,
                                MHD_OPTION_CONNECTION_LIMIT, srv->cfg.max_connections,
                                MHD_OPTION_CONNECTION_TIMEOUT, srv->cfg.idle_timeout_s,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                                MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
                                MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    if (!srv->mhd)
        return TC_ERR_IO;
    int rc = TC_ERR_IO;
    if ((srv->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        (srv->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        goto fail;
    srv->ep_listen = (struct endpoint){EP_LISTEN, NULL};
    srv->ep_wake = (struct endpoint){EP_WAKE, NULL};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &srv->ep_listen};
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->lfd, &ev) != 0)
        goto fail;
    ev.data.ptr = &srv->ep_wake;
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->wakefd, &ev) != 0)
        goto fail;
    if (pthread_create(&srv->thread, NULL, loop_main, srv) != 0) {
        rc = TC_ERR_INTERNAL;
        goto fail;
    }
    srv->running = true;
    return 0;
fail:
    MHD_stop_daemon(srv->mhd);
    srv->mhd = NULL;
    return rc;
}

void tc_httpd_stop(struct tc_httpd *srv)
{
    if (!srv || !srv->running)
        return;
    /* Answer every deferred request, so that no connection is left suspended. */
    pthread_mutex_lock(&deferred_lock);
    pthread_mutex_lock(&srv->lock);
    srv->stopping = true;
    for (struct tc_http_deferred *d = srv->deferred; d; d = d->next) {
        if (!d->answered) {
            tc_http_response_error(&d->resp, 503, "server is stopping");
            d->answered = true;
            MHD_resume_connection(d->mconn);
        }
    }
    pthread_mutex_unlock(&srv->lock);
    pthread_mutex_unlock(&deferred_lock);
    if (!srv->cfg.plain_http) {
        uint64_t one = 1;
        if (write(srv->wakefd, &one, sizeof(one)) != sizeof(one))
            LOG_ERROR("cannot wake the TLS loop");
        pthread_join(srv->thread, NULL);
        while (srv->conns)
            conn_close(srv->conns);
        free_dead(srv);
    }
    MHD_stop_daemon(srv->mhd);
    srv->mhd = NULL;
    /* Requests still holding deferred handles were completed by MHD_stop_daemon. */
    srv->running = false;
}

void tc_httpd_free(struct tc_httpd *srv)
{
    if (!srv)
        return;
    tc_httpd_stop(srv);
    if (srv->lfd >= 0)
        close(srv->lfd);
    if (srv->epfd >= 0)
        close(srv->epfd);
    if (srv->wakefd >= 0)
        close(srv->wakefd);
    while (srv->pending) {
        struct pending_ident *p = srv->pending;
        srv->pending = p->next;
        ident_unref(p->id);
        free(p);
    }
    for (size_t i = 0; i < srv->nroutes; i++) {
        free(srv->routes[i].method);
        free(srv->routes[i].prefix);
    }
    free(srv->routes);
    /* Every connection is closed by now: the per-address counts are gone with them. */
    free(srv->addrs);
    SSL_CTX_free(srv->ssl_ctx);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

uint16_t tc_httpd_port(const struct tc_httpd *srv)
{
    return srv ? srv->port : 0;
}
