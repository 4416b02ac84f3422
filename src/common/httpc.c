/* SPDX-License-Identifier: Apache-2.0 */
#define LOGMODULE "httpc"
#include "trustcloud/httpc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/ssl.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

#define DEFAULT_MAX_BODY (1024 * 1024)

struct cfg_copy {
    char *cert_file, *key_file, *ca_file;
    long timeout_ms, connect_timeout_ms;
    size_t max_body;
    long max_host, max_total;
    bool allow_tls12, allow_plain_http;
    enum tc_tls_expect expect_peer;
};

struct host;

struct xfer {
    CURL *easy;
    char *hostkey;     /* "scheme://authority" */
    struct host *host; /* set when sorted (driver thread) */
    struct curl_slist *headers;
    struct tc_buf body;
    bool too_large;
    bool https;
    enum tc_tls_expect expect_peer; /* checked in on_prereq */
    bool peer_refused;              /* on_prereq refused the server */
    bool caller_reports;            /* tc_httpc_request: error_detail tells, no log line */
    char peer_why[256];
    tc_httpc_done cb;
    void *arg;
    char errbuf[CURL_ERROR_SIZE];
    struct xfer *prev, *next;
};

/*
 * Requests wait here, per host ("scheme://authority" of the URL), until the host has a free
 * connection; only then do they enter the multi handle. libcurl would queue them itself, but its
 * timeout includes that wait, so a burst larger than the connection limit timed out requests that
 * never reached the server. Driver thread only.
 */
struct host {
    struct host *hnext;         /* hash chain */
    struct host *wnext;         /* ready list: waiting requests and a free connection */
    bool ready;                 /* on the ready list */
    size_t active;              /* in the multi handle */
    struct xfer *qhead, *qtail; /* waiting, oldest first */
    char key[];
};

#define HOST_BUCKETS 4096

struct tc_httpc {
    struct cfg_copy cfg;
    CURLM *multi;
    CURLSH *share; /* TLS sessions and DNS shared by all transfers */
    pthread_mutex_t share_lock;
    pthread_mutex_t lock;            /* submitted queue and counters */
    struct xfer *queue, *queue_tail; /* submitted, not yet sorted by host (oldest first) */
    struct xfer *active;             /* in the multi handle (driver thread only) */
    struct host **hosts;             /* HOST_BUCKETS chains (driver thread only) */
    struct host *ready, *ready_tail;
    size_t nactive; /* in the multi handle */
    size_t pending;
    pthread_t thread;
    bool thread_running;
    bool stop;
};

static void cfg_release(struct cfg_copy *c)
{
    free(c->cert_file);
    free(c->key_file);
    free(c->ca_file);
    memset(c, 0, sizeof(*c));
}

static int cfg_copy(const struct tc_httpc_config *in, struct cfg_copy *c)
{
    memset(c, 0, sizeof(*c));
    if ((!in->cert_file) != (!in->key_file))
        return TC_ERR_INVALID_ARG;
    if ((in->cert_file && !(c->cert_file = strdup(in->cert_file))) ||
        (in->key_file && !(c->key_file = strdup(in->key_file))) ||
        (in->ca_file && !(c->ca_file = strdup(in->ca_file)))) {
        cfg_release(c);
        return TC_ERR_ALLOC;
    }
    c->timeout_ms = in->timeout_ms > 0 ? in->timeout_ms : 10000;
    c->connect_timeout_ms = in->connect_timeout_ms > 0 ? in->connect_timeout_ms : 5000;
    c->max_body = in->max_body ? in->max_body : DEFAULT_MAX_BODY;
    c->max_host = in->max_host_connections > 0 ? in->max_host_connections : 64;
    c->max_total = in->max_total_connections > 0 ? in->max_total_connections : 1024;
    c->allow_tls12 = in->allow_tls12;
    c->allow_plain_http = in->allow_plain_http;
    c->expect_peer = in->expect_peer;
    return 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;
    size_t n = size * nmemb;
    if (tc_buf_put(&x->body, ptr, n) != 0) {
        x->too_large = true;
        return 0; /* aborts the transfer */
    }
    return n;
}

/*
 * Called once the connection is up (new or reused), before the request goes out: the server's
 * verified certificate must have the role this transfer expects. The TLS session libcurl
 * resumes carries the certificate, so resumed and reused connections are checked too.
 */
static int on_prereq(void *clientp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    struct xfer *x = clientp;
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    if (!x->https || x->expect_peer == TC_TLS_EXPECT_ANY)
        return CURL_PREREQFUNC_OK;
    struct curl_tlssessioninfo *info = NULL;
    X509 *cert = NULL;
    if (curl_easy_getinfo(x->easy, CURLINFO_TLS_SSL_PTR, &info) == CURLE_OK && info &&
        info->backend == CURLSSLBACKEND_OPENSSL && info->internals)
        cert = SSL_get0_peer_certificate(info->internals);
    if (tc_tls_check_expected(cert, x->expect_peer, x->peer_why, sizeof(x->peer_why)) == 0)
        return CURL_PREREQFUNC_OK;
    char *url = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
    if (x->caller_reports)
        LOG_DEBUG("%s: refused before sending: %s", url ? url : "?", x->peer_why);
    else
        LOG_WARN("%s: refused before sending: %s", url ? url : "?", x->peer_why);
    x->peer_refused = true;
    return CURL_PREREQFUNC_ABORT;
}

static void xfer_free(struct xfer *x)
{
    if (!x)
        return;
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x->hostkey);
    tc_buf_release(&x->body);
    free(x);
}

static int xfer_new(const struct cfg_copy *cfg, const char *method, const char *url,
                    const char *content_type, const void *body, size_t len, struct xfer **out)
{
    int rc = TC_ERR_INTERNAL;
    *out = NULL;
    if (!method || !url || (!body && len))
        return TC_ERR_INVALID_ARG;
    bool https = strncmp(url, "https://", 8) == 0;
    if (!https && !(cfg->allow_plain_http && strncmp(url, "http://", 7) == 0))
        return TC_ERR_INVALID_ARG;
    if (https && !cfg->ca_file)
        return TC_ERR_INVALID_ARG;
    struct xfer *x = calloc(1, sizeof(*x));
    if (!x)
        return TC_ERR_ALLOC;
    tc_buf_init(&x->body, cfg->max_body);
    x->https = https;
    x->expect_peer = cfg->expect_peer;
    if (!(x->easy = curl_easy_init())) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    CURL *e = x->easy;
    char ct[128];
    if (content_type) {
        snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
        struct curl_slist *h = curl_slist_append(x->headers, ct);
        if (!h) {
            rc = TC_ERR_ALLOC;
            goto out;
        }
        x->headers = h;
    }
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (curl_easy_setopt(e, opt, val) != CURLE_OK) {                                           \
            LOG_ERROR("curl_easy_setopt(%s) failed", #opt);                                        \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, cfg->allow_plain_http ? "http,https" : "https");
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TIMEOUT_MS, cfg->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, cfg->connect_timeout_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cfg->max_body);
    SET(CURLOPT_WRITEFUNCTION, on_data);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_PRIVATE, x);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_PIPEWAIT, 0L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, x);
    if (https) {
        SET(CURLOPT_SSLVERSION,
            cfg->allow_tls12 ? (long)CURL_SSLVERSION_TLSv1_2 : (long)CURL_SSLVERSION_TLSv1_3);
        SET(CURLOPT_CAINFO, cfg->ca_file);
        /* Only our CA: never the distribution's CA directory. */
        SET(CURLOPT_CAPATH, (char *)NULL);
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
        if (cfg->cert_file) {
            SET(CURLOPT_SSLCERT, cfg->cert_file);
            SET(CURLOPT_SSLCERTTYPE, "PEM");
            SET(CURLOPT_SSLKEY, cfg->key_file);
            SET(CURLOPT_SSLKEYTYPE, "PEM");
        }
    }
    if (strcmp(method, "GET") == 0 && !body) {
        SET(CURLOPT_HTTPGET, 1L);
    } else {
        if (strcmp(method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, method);
        if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
            SET(CURLOPT_COPYPOSTFIELDS, body ? (const char *)body : "");
        }
    }
    if (x->headers)
        SET(CURLOPT_HTTPHEADER, x->headers);
#undef SET
    *out = x;
    x = NULL;
    rc = 0;
out:
    xfer_free(x);
    return rc;
}

static int map_result(struct xfer *x, CURLcode res, long *code)
{
    *code = 0;
    if (res == CURLE_OK) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, code);
        return 0;
    }
    LOG_DEBUG("request failed: %s (%s)", curl_easy_strerror(res), x->errbuf);
    if (x->too_large || res == CURLE_FILESIZE_EXCEEDED)
        return TC_ERR_TOO_LARGE;
    if (x->peer_refused)
        return TC_ERR_SIGNATURE;
    if (res == CURLE_PEER_FAILED_VERIFICATION || res == CURLE_SSL_PINNEDPUBKEYNOTMATCH)
        return TC_ERR_SIGNATURE;
    return TC_ERR_IO;
}

static void complete(struct xfer *x, int status, long code)
{
    if (!x->body.data)
        tc_buf_put(&x->body, "", 0);
    static const uint8_t empty[1] = {0};
    x->cb(x->arg, status, code, x->body.data ? x->body.data : empty, x->body.len);
}

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *arg)
{
    (void)h;
    (void)d;
    (void)a;
    pthread_mutex_lock(&((struct tc_httpc *)arg)->share_lock);
}

static void share_unlock(CURL *h, curl_lock_data d, void *arg)
{
    (void)h;
    (void)d;
    pthread_mutex_unlock(&((struct tc_httpc *)arg)->share_lock);
}

int tc_httpc_new(const struct tc_httpc_config *cfg, struct tc_httpc **out)
{
    int rc;
    *out = NULL;
    if (!cfg)
        return TC_ERR_INVALID_ARG;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return TC_ERR_INTERNAL;
    struct tc_httpc *c = calloc(1, sizeof(*c));
    if (!c) {
        curl_global_cleanup();
        return TC_ERR_ALLOC;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->share_lock, NULL);
    if ((rc = cfg_copy(cfg, &c->cfg)) != 0)
        goto out;
    if (!(c->hosts = calloc(HOST_BUCKETS, sizeof(*c->hosts)))) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    /* A new connection to a host seen before resumes its TLS session (no certificate chain to
     * verify again, no client signature): that keeps reconnects cheap after an idle close. */
    if (!(c->share = curl_share_init()) ||
        curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_USERDATA, c) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK) {
        rc = TC_ERR_INTERNAL;
        goto out;
    }
    if (!(c->multi = curl_multi_init())) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, c->cfg.max_host);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, c->cfg.max_total);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, c->cfg.max_total);
    *out = c;
    c = NULL;
out:
    tc_httpc_free(c);
    return rc;
}

static char *host_key(const char *url)
{
    const char *a = strstr(url, "://");
    size_t len = a ? (size_t)(a + 3 - url) + strcspn(a + 3, "/?#") : strlen(url);
    return strndup(url, len);
}

int tc_httpc_submit_req(struct tc_httpc *c, const struct tc_httpc_req *req)
{
    struct xfer *x = NULL;
    if (!c || !req || !req->cb || req->timeout_ms < 0)
        return TC_ERR_INVALID_ARG;
    int rc = xfer_new(&c->cfg, req->method, req->url, req->content_type, req->body, req->len, &x);
    if (rc)
        return rc;
    if (req->timeout_ms > 0 &&
        curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, req->timeout_ms) != CURLE_OK) {
        xfer_free(x);
        return TC_ERR_INTERNAL;
    }
    /* The pin names the peer: the host name the node chose is not in its certificate. */
    if (req->pinned_pubkey &&
        (curl_easy_setopt(x->easy, CURLOPT_PINNEDPUBLICKEY, req->pinned_pubkey) != CURLE_OK ||
         curl_easy_setopt(x->easy, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK)) {
        xfer_free(x);
        return TC_ERR_INTERNAL;
    }
    if (req->expect_peer != TC_TLS_EXPECT_ANY)
        x->expect_peer = req->expect_peer;
    if (req->headers) {
        for (const char *const *h = req->headers; *h; h++) {
            struct curl_slist *l = curl_slist_append(x->headers, *h);
            if (!l) {
                xfer_free(x);
                return TC_ERR_ALLOC;
            }
            x->headers = l;
        }
        if (curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers) != CURLE_OK) {
            xfer_free(x);
            return TC_ERR_INTERNAL;
        }
    }
    if (c->share && curl_easy_setopt(x->easy, CURLOPT_SHARE, c->share) != CURLE_OK) {
        xfer_free(x);
        return TC_ERR_INTERNAL;
    }
    if (!(x->hostkey = host_key(req->url))) {
        xfer_free(x);
        return TC_ERR_ALLOC;
    }
    x->cb = req->cb;
    x->arg = req->arg;
    x->next = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->queue_tail)
        c->queue_tail->next = x;
    else
        c->queue = x;
    c->queue_tail = x;
    c->pending++;
    pthread_mutex_unlock(&c->lock);
    curl_multi_wakeup(c->multi);
    return 0;
}

int tc_httpc_submit(struct tc_httpc *c, const char *method, const char *url,
                    const char *content_type, const void *body, size_t len, tc_httpc_done cb,
                    void *arg)
{
    struct tc_httpc_req req = {.method = method,
                               .url = url,
                               .content_type = content_type,
                               .body = body,
                               .len = len,
                               .cb = cb,
                               .arg = arg};
    return tc_httpc_submit_req(c, &req);
}

size_t tc_httpc_pending(struct tc_httpc *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->pending;
    pthread_mutex_unlock(&c->lock);
    return n;
}

static void ready_push(struct tc_httpc *c, struct host *h)
{
    if (h->ready || !h->qhead || h->active >= (size_t)c->cfg.max_host)
        return;
    h->ready = true;
    h->wnext = NULL;
    if (c->ready_tail)
        c->ready_tail->wnext = h;
    else
        c->ready = h;
    c->ready_tail = h;
}

/* The host of a URL: "scheme://authority" (what libcurl's per-host limit counts). */
static struct host *host_get(struct tc_httpc *c, const char *url)
{
    size_t len = strlen(url);
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < len; i++)
        hash = (hash ^ (uint8_t)url[i]) * 16777619u;
    struct host **slot = &c->hosts[hash % HOST_BUCKETS];
    for (struct host *h = *slot; h; h = h->hnext)
        if (strncmp(h->key, url, len) == 0 && h->key[len] == '\0')
            return h;
    struct host *h = calloc(1, sizeof(*h) + len + 1);
    if (!h)
        return NULL;
    memcpy(h->key, url, len);
    h->key[len] = '\0';
    h->hnext = *slot;
    *slot = h;
    return h;
}

static void active_link(struct tc_httpc *c, struct xfer *x)
{
    x->prev = NULL;
    x->next = c->active;
    if (c->active)
        c->active->prev = x;
    c->active = x;
}

/* Hands waiting requests to libcurl while their host has a free connection and the total limit
 * allows; their timeout starts now. */
static int admit(struct tc_httpc *c)
{
    int rc = 0;
    while (c->ready && c->nactive < (size_t)c->cfg.max_total) {
        struct host *h = c->ready;
        while (h->qhead && h->active < (size_t)c->cfg.max_host &&
               c->nactive < (size_t)c->cfg.max_total) {
            struct xfer *x = h->qhead;
            if (!(h->qhead = x->next))
                h->qtail = NULL;
            active_link(c, x);
            h->active++;
            c->nactive++;
            if (curl_multi_add_handle(c->multi, x->easy) != CURLM_OK) {
                LOG_ERROR("curl_multi_add_handle failed");
                rc = TC_ERR_INTERNAL;
            }
        }
        if (h->qhead && h->active < (size_t)c->cfg.max_host)
            break; /* total limit: this host stays first */
        if (!(c->ready = h->wnext))
            c->ready_tail = NULL;
        h->ready = false;
        h->wnext = NULL;
    }
    return rc;
}

/* Sorts submitted requests into their hosts' queues, then admits what fits (driver thread). */
static int add_queued(struct tc_httpc *c)
{
    pthread_mutex_lock(&c->lock);
    struct xfer *q = c->queue;
    c->queue = c->queue_tail = NULL;
    pthread_mutex_unlock(&c->lock);
    while (q) {
        struct xfer *x = q;
        q = q->next;
        x->next = x->prev = NULL;
        struct host *h = x->host = host_get(c, x->hostkey);
        if (!h) {
            /* Out of memory for the host entry: let libcurl queue this one. */
            active_link(c, x);
            c->nactive++;
            if (curl_multi_add_handle(c->multi, x->easy) != CURLM_OK)
                LOG_ERROR("curl_multi_add_handle failed");
            continue;
        }
        if (h->qtail)
            h->qtail->next = x;
        else
            h->qhead = x;
        h->qtail = x;
        ready_push(c, h);
    }
    return admit(c);
}

static void unlink_active(struct tc_httpc *c, struct xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        c->active = x->next;
    if (x->next)
        x->next->prev = x->prev;
}

/* Runs callbacks of finished transfers; returns how many finished. */
static int reap(struct tc_httpc *c)
{
    CURLMsg *msg;
    int left, done = 0;
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct xfer *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode res = msg->data.result;
        curl_multi_remove_handle(c->multi, msg->easy_handle);
        unlink_active(c, x);
        c->nactive--;
        if (x->host) {
            x->host->active--;
            ready_push(c, x->host);
        }
        long code;
        int status = map_result(x, res, &code);
        pthread_mutex_lock(&c->lock);
        c->pending--;
        pthread_mutex_unlock(&c->lock);
        complete(x, status, code);
        xfer_free(x);
        done++;
    }
    if (done)
        admit(c);
    return done;
}

int tc_httpc_run(struct tc_httpc *c, int timeout_ms)
{
    int running = 0;
    if (!c)
        return TC_ERR_INVALID_ARG;
    int rc = add_queued(c);
    if (rc)
        return rc;
    if (curl_multi_perform(c->multi, &running) != CURLM_OK)
        return TC_ERR_INTERNAL;
    if (reap(c) == 0) {
        if (curl_multi_poll(c->multi, NULL, 0, timeout_ms < 0 ? 0 : timeout_ms, NULL) != CURLM_OK)
            return TC_ERR_INTERNAL;
        if ((rc = add_queued(c)) != 0)
            return rc;
        if (curl_multi_perform(c->multi, &running) != CURLM_OK)
            return TC_ERR_INTERNAL;
        reap(c);
    }
    size_t n = tc_httpc_pending(c);
    return n > 0x7fffffff ? 0x7fffffff : (int)n;
}

static void *thread_main(void *arg)
{
    struct tc_httpc *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        bool stop = c->stop;
        pthread_mutex_unlock(&c->lock);
        if (stop)
            break;
        if (tc_httpc_run(c, 1000) < 0)
            LOG_ERROR("client loop error");
    }
    return NULL;
}

int tc_httpc_start_thread(struct tc_httpc *c)
{
    if (!c || c->thread_running)
        return TC_ERR_INVALID_ARG;
    if (pthread_create(&c->thread, NULL, thread_main, c) != 0)
        return TC_ERR_INTERNAL;
    c->thread_running = true;
    return 0;
}

void tc_httpc_free(struct tc_httpc *c)
{
    if (!c)
        return;
    if (c->thread_running) {
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        pthread_mutex_unlock(&c->lock);
        curl_multi_wakeup(c->multi);
        pthread_join(c->thread, NULL);
        c->thread_running = false;
    }
    /* Requests still waiting never reached libcurl: cancel them without touching the multi
     * handle (removing thousands of handles from it one by one took minutes). */
    pthread_mutex_lock(&c->lock);
    struct xfer *q = c->queue;
    c->queue = c->queue_tail = NULL;
    pthread_mutex_unlock(&c->lock);
    for (size_t b = 0; c->hosts && b < HOST_BUCKETS; b++)
        for (struct host *h = c->hosts[b]; h; h = h->hnext) {
            if (h->qtail) {
                h->qtail->next = q;
                q = h->qhead;
            }
            h->qhead = h->qtail = NULL;
        }
    while (q) {
        struct xfer *x = q;
        q = x->next;
        x->body.len = 0;
        complete(x, TC_ERR_IO, 0);
        xfer_free(x);
    }
    while (c->active) {
        struct xfer *x = c->active;
        c->active = x->next;
        curl_multi_remove_handle(c->multi, x->easy);
        x->body.len = 0;
        complete(x, TC_ERR_IO, 0);
        xfer_free(x);
    }
    if (c->multi)
        curl_multi_cleanup(c->multi);
    if (c->share)
        curl_share_cleanup(c->share);
    for (size_t b = 0; c->hosts && b < HOST_BUCKETS; b++)
        while (c->hosts[b]) {
            struct host *h = c->hosts[b];
            c->hosts[b] = h->hnext;
            free(h);
        }
    free(c->hosts);
    cfg_release(&c->cfg);
    pthread_mutex_destroy(&c->share_lock);
    pthread_mutex_destroy(&c->lock);
    free(c);
    curl_global_cleanup();
}

int tc_httpc_request(const struct tc_httpc_config *cfg, const char *method, const char *url,
                     const char *content_type, const void *body, size_t len, long *http_code,
                     uint8_t **resp, size_t *resp_len)
{
    struct cfg_copy cc;
    struct xfer *x = NULL;
    int rc;
    if (http_code)
        *http_code = 0;
    if (resp)
        *resp = NULL;
    if (resp_len)
        *resp_len = 0;
    if (!cfg)
        return TC_ERR_INVALID_ARG;
    if (cfg->error_detail && cfg->error_detail_len)
        cfg->error_detail[0] = '\0';
    if ((rc = cfg_copy(cfg, &cc)) != 0)
        return rc;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cfg_release(&cc);
        return TC_ERR_INTERNAL;
    }
    if ((rc = xfer_new(&cc, method, url, content_type, body, len, &x)) != 0)
        goto out;
    x->caller_reports = cfg->error_detail && cfg->error_detail_len;
    long code = 0;
    rc = map_result(x, curl_easy_perform(x->easy), &code);
    if (rc == TC_ERR_SIGNATURE && cfg->error_detail && cfg->error_detail_len)
        snprintf(cfg->error_detail, cfg->error_detail_len, "%s",
                 x->peer_refused ? x->peer_why
                 : x->errbuf[0]  ? x->errbuf
                                 : "server certificate not trusted");
    if (rc)
        goto out;
    if (http_code)
        *http_code = code;
    if (!x->body.data && (rc = tc_buf_put(&x->body, "", 0)) != 0)
        goto out;
    size_t n;
    uint8_t *data = tc_buf_steal(&x->body, &n);
    if (resp_len)
        *resp_len = n;
    if (resp)
        *resp = data;
    else
        free(data);
out:
    xfer_free(x);
    cfg_release(&cc);
    curl_global_cleanup();
    return rc;
}
