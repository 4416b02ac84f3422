/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One guest channel exchange with a real guest (agent_guest.h): connect, hello, quote request,
 * answer, under one deadline.
 */
#define LOGMODULE "agent"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "agent.h"
#include "agent_guest.h"
#include "trustcloud/error.h"
#include "trustcloud/httpd.h"
#include "trustcloud/log.h"

static long long mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int guest_connect(const char *path, int *fd_out, struct tc_reason *why)
{
    *fd_out = -1;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path))
        return tc_fail(why, TC_ERR_INVALID_ARG, "guest.connect", -1, "socket path too long");
    memcpy(sa.sun_path, path, strlen(path));
    /* QEMU (another user) owns the directory the socket is in: whatever is there must be a
     * socket itself, not a link to one of this host's other sockets. */
    struct stat st;
    if (lstat(path, &st) != 0)
        return tc_fail(why, TC_ERR_IO, "guest.connect", -1, "no channel socket: %s",
                       strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return tc_fail(why, TC_ERR_POLICY, "guest.channel", -1,
                       "the channel path is not a socket (mode 0%o)", (unsigned)st.st_mode);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return tc_fail(why, TC_ERR_IO, "guest.connect", -1, "socket: %s", strerror(errno));
    /* A unix socket connects at once or not at all (a full backlog is EAGAIN): no waiting. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        return tc_fail(why, TC_ERR_IO, "guest.connect", -1,
                       "cannot connect to the guest's channel: %s", strerror(e));
    }
    *fd_out = fd;
    return 0;
}

static int remaining_ms(long long deadline)
{
    long long left = deadline - mono_us();
    return left <= 0 ? 0 : (int)((left + 999) / 1000);
}

static int send_all(int fd, const uint8_t *p, size_t n, long long deadline, struct tc_reason *why)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return tc_fail(why, TC_ERR_IO, "guest.closed", -1, "cannot send to the guest: %s",
                           strerror(errno));
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int ms = remaining_ms(deadline);
        if (ms == 0 || poll(&pfd, 1, ms) == 0)
            return tc_fail(why, TC_ERR_IO, "guest.deadline", -1,
                           "the guest's channel took nothing within the deadline");
    }
    return 0;
}

/* Reads until the decoder holds a whole frame (or the deadline, or an error). */
static int read_frame(int fd, struct tc_gc_decoder *dec, long long deadline, const char *waiting,
                      struct tc_reason *why)
{
    uint8_t chunk[65536];
    for (;;) {
        unsigned type;
        const uint8_t *p;
        size_t len;
        if (tc_gc_decoder_frame(dec, &type, &p, &len) == 0)
            return 0;
        ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            int ms = remaining_ms(deadline);
            int pr = ms == 0 ? 0 : poll(&pfd, 1, ms);
            if (pr < 0 && errno == EINTR)
                continue;
            if (pr <= 0 && dec->header_have > 0)
                /* A guest that began to answer and stopped is not merely slow to wake. */
                return tc_fail(why, TC_ERR_TRUNCATED, "guest.truncated", -1,
                               "only %zu bytes of a %s frame within the deadline",
                               dec->header_have + dec->payload.len, waiting);
            if (pr <= 0)
                return tc_fail(why, TC_ERR_IO, "guest.deadline", -1,
                               "no %s from the guest within the deadline", waiting);
            continue;
        }
        if (n < 0)
            return tc_fail(why, TC_ERR_IO, "guest.closed", -1, "reading from the guest: %s",
                           strerror(errno));
        if (n == 0) {
            int rc = tc_gc_decoder_finish(dec, why);
            if (rc == 0)
                rc = tc_fail(why, TC_ERR_IO, "guest.closed", -1,
                             "the guest's channel closed while waiting for a %s", waiting);
            return rc;
        }
        size_t off = 0;
        while (off < (size_t)n) {
            size_t used;
            int fr = tc_gc_decoder_feed(dec, chunk + off, (size_t)n - off, &used, why);
            if (fr < 0)
                return fr;
            off += used;
            if (fr == 1 && off < (size_t)n)
                /* The guest speaks only when asked: bytes after the frame are not ours. */
                return tc_fail(why, TC_ERR_POLICY, "guest.unexpected", -1, "%zu bytes after the %s",
                               (size_t)n - off, waiting);
            if (fr == 1)
                break;
        }
    }
}

/* An ERROR frame's payload as the failure of the exchange. */
static int guest_error(const uint8_t *p, size_t len, struct tc_reason *why)
{
    struct tc_gc_error e;
    int rc = tc_gc_error_parse(p, len, &e, why);
    if (rc)
        return rc;
    return tc_fail(why, TC_ERR_POLICY, "guest.error", -1, "the guest answered %s: %s", e.check,
                   e.error);
}

/* Connects and exchanges hellos: the session every exchange starts with. */
static int session_open(const char *path, long long deadline, int *fd, struct tc_gc_decoder *dec,
                        struct tc_buf *out, struct tc_gc_hello *hello, struct tc_reason *why)
{
    unsigned type;
    const uint8_t *p;
    size_t len;
    int rc;
    if ((rc = guest_connect(path, fd, why)) != 0)
        return rc;
    out->len = 0;
    if ((rc = tc_gc_hello_encode(NULL, 0, NULL, 0, out)) != 0 ||
        (rc = send_all(*fd, out->data, out->len, deadline, why)) != 0 ||
        (rc = read_frame(*fd, dec, deadline, "hello", why)) != 0)
        return rc;
    tc_gc_decoder_frame(dec, &type, &p, &len);
    if (type == TC_GC_ERROR)
        return guest_error(p, len, why);
    if (type != TC_GC_HELLO)
        return tc_fail(why, TC_ERR_POLICY, "guest.unexpected", -1, "a %s instead of a hello",
                       tc_gc_type_name(type));
    if ((rc = tc_gc_hello_parse(p, len, hello, why)) != 0)
        return rc;
    tc_gc_decoder_next(dec);
    return 0;
}

/* Sends the request in out and reads its answer (a frame of type want, or an error, for request
 * id). What a previous session of this guest may have left behind is skipped: another hello,
 * answers and errors to earlier requests (ids below this one). Anything else is refused. */
static int exchange(int fd, struct tc_gc_decoder *dec, const struct tc_buf *out, unsigned want,
                    uint64_t id, long long deadline, struct tc_reason *why)
{
    unsigned type;
    const uint8_t *p;
    size_t len;
    int rc;
    if ((rc = send_all(fd, out->data, out->len, deadline, why)) != 0)
        return rc;
    for (unsigned skipped = 0;; skipped++) {
        if ((rc = read_frame(fd, dec, deadline, tc_gc_type_name(want), why)) != 0)
            return rc;
        tc_gc_decoder_frame(dec, &type, &p, &len);
        uint64_t got = 0;
        bool stale = false;
        if (type == TC_GC_HELLO) {
            stale = true;
        } else if (type == want || type == TC_GC_ERROR) {
            /* The id is read with the strict parsers: one meaning on both sides. */
            if (type == TC_GC_ERROR) {
                struct tc_gc_error e;
                if ((rc = tc_gc_error_parse(p, len, &e, why)) != 0)
                    return rc;
                got = e.id;
                if (got == id || got == 0)
                    return guest_error(p, len, why);
            } else if (type == TC_GC_QUOTE_ANSWER || type == TC_GC_ACTIVATE_ANSWER) {
                /* The caller parses the whole payload; here only its id matters. */
                json_error_t jerr;
                json_t *o = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
                json_t *jid = json_is_object(o) ? json_object_get(o, "id") : NULL;
                got = json_is_integer(jid) && json_integer_value(jid) > 0
                          ? (uint64_t)json_integer_value(jid)
                          : 0;
                json_decref(o);
                if (got == id || got == 0)
                    return 0; /* the caller's parser has the last word */
            }
            stale = got != 0 && got < id;
        }
        if (!stale || skipped >= 4)
            return tc_fail(why, TC_ERR_POLICY, "guest.unexpected", -1,
                           "a %s (id %llu) instead of the %s to request %llu",
                           tc_gc_type_name(type), (unsigned long long)got, tc_gc_type_name(want),
                           (unsigned long long)id);
        LOG_DEBUG("skipping a stale %s (id %llu) from the guest", tc_gc_type_name(type),
                  (unsigned long long)got);
        tc_gc_decoder_next(dec);
    }
}

int agent_guest_quote(const char *path, const struct tc_gc_request *req, int deadline_ms,
                      struct tc_gc_hello *hello, struct tc_gc_answer *answer,
                      struct agent_guest_timing *timing, struct tc_reason *why)
{
    memset(hello, 0, sizeof(*hello));
    memset(answer, 0, sizeof(*answer));
    if (timing)
        memset(timing, 0, sizeof(*timing));
    long long t0 = mono_us(), deadline = t0 + (long long)deadline_ms * 1000, t1;
    struct tc_gc_decoder dec;
    struct tc_buf out;
    tc_gc_decoder_init(&dec, 0);
    tc_buf_init(&out, TC_GC_MAX_SMALL + TC_GC_HEADER_LEN);
    unsigned type;
    const uint8_t *p;
    size_t len;
    int fd = -1, rc;

    if ((rc = session_open(path, deadline, &fd, &dec, &out, hello, why)) != 0)
        goto out;
    if (!(hello->caps & TC_GC_CAP_QUOTE)) {
        rc = tc_fail(why, TC_ERR_POLICY, "guest.unexpected", -1,
                     "the guest (%s) does not offer quotes", hello->agent);
        goto out;
    }
    t1 = mono_us();
    out.len = 0;
    if ((rc = tc_gc_request_encode(req, &out)) != 0 ||
        (rc = exchange(fd, &dec, &out, TC_GC_QUOTE_ANSWER, req->id, deadline, why)) != 0)
        goto out;
    tc_gc_decoder_frame(&dec, &type, &p, &len);
    if ((rc = tc_gc_answer_parse(p, len, answer, why)) != 0)
        goto out;
    if (answer->id != req->id) {
        rc = tc_fail(why, TC_ERR_POLICY, "guest.unexpected", -1,
                     "an answer to request %llu, not %llu", (unsigned long long)answer->id,
                     (unsigned long long)req->id);
        goto out;
    }
    if (timing) {
        timing->connect_us = t1 - t0;
        timing->answer_us = mono_us() - t1;
        timing->answer_bytes = len;
    }
out:
    if (fd >= 0)
        close(fd);
    tc_gc_decoder_release(&dec);
    tc_buf_release(&out);
    if (rc) {
        memset(hello, 0, sizeof(*hello));
        tc_gc_answer_release(answer);
        if (why)
            LOG_DEBUG("guest channel %s: %s: %s", path, why->check, why->detail);
    }
    return rc;
}

int agent_guest_hello(const char *path, int deadline_ms, struct tc_gc_hello *hello,
                      struct tc_reason *why)
{
    memset(hello, 0, sizeof(*hello));
    long long deadline = mono_us() + (long long)deadline_ms * 1000;
    struct tc_gc_decoder dec;
    struct tc_buf out;
    tc_gc_decoder_init(&dec, TC_GC_MAX_SMALL);
    tc_buf_init(&out, TC_GC_MAX_SMALL + TC_GC_HEADER_LEN);
    int fd = -1;
    int rc = session_open(path, deadline, &fd, &dec, &out, hello, why);
    if (fd >= 0)
        close(fd);
    tc_gc_decoder_release(&dec);
    tc_buf_release(&out);
    if (rc)
        memset(hello, 0, sizeof(*hello));
    return rc;
}

int agent_guest_activate(const char *path, const struct tc_gc_activate *act, int deadline_ms,
                         struct tc_gc_hello *hello, struct tc_gc_activated *done,
                         struct tc_reason *why)
{
    memset(hello, 0, sizeof(*hello));
    memset(done, 0, sizeof(*done));
    long long deadline = mono_us() + (long long)deadline_ms * 1000;
    struct tc_gc_decoder dec;
    struct tc_buf out;
    tc_gc_decoder_init(&dec, TC_GC_MAX_SMALL);
    tc_buf_init(&out, TC_GC_MAX_SMALL + TC_GC_HEADER_LEN);
    unsigned type;
    const uint8_t *p;
    size_t len;
    int fd = -1, rc;

    if ((rc = session_open(path, deadline, &fd, &dec, &out, hello, why)) != 0)
        goto out;
    if (!(hello->caps & TC_GC_CAP_ACTIVATE)) {
        rc = tc_fail(why, TC_ERR_POLICY, "guest.unexpected", -1,
                     "the guest (%s) does not offer credential activation", hello->agent);
        goto out;
    }
    out.len = 0;
    if ((rc = tc_gc_activate_encode(act, &out)) != 0 ||
        (rc = exchange(fd, &dec, &out, TC_GC_ACTIVATE_ANSWER, act->id, deadline, why)) != 0)
        goto out;
    tc_gc_decoder_frame(&dec, &type, &p, &len);
    if ((rc = tc_gc_activated_parse(p, len, done, why)) != 0)
        goto out;
    if (done->id != act->id)
        rc = tc_fail(why, TC_ERR_POLICY, "guest.unexpected", -1,
                     "an activation answer to request %llu, not %llu", (unsigned long long)done->id,
                     (unsigned long long)act->id);
out:
    if (fd >= 0)
        close(fd);
    tc_gc_decoder_release(&dec); /* wipes the payload: the secret */
    OPENSSL_cleanse(out.data, out.len);
    tc_buf_release(&out);
    if (rc) {
        memset(hello, 0, sizeof(*hello));
        OPENSSL_cleanse(done, sizeof(*done));
        LOG_DEBUG("guest channel %s: %s: %s", path, why->check, why->detail);
    }
    return rc;
}

/* ---- Exchanges the coordinator asks for ---------------------------------------------------- */

struct guest_job {
    struct agent_guest_runner *runner;
    struct tc_http_deferred *d;
    char vm_id[65];
    char channel[4096];
    int deadline_ms;
    bool activate;
    struct tc_gc_activate act;
};

void agent_guest_runner_init(struct agent_guest_runner *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->idle, NULL);
}

void agent_guest_runner_stop(struct agent_guest_runner *r)
{
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    while (r->running > 0)
        pthread_cond_wait(&r->idle, &r->lock);
    pthread_mutex_unlock(&r->lock);
}

void agent_guest_runner_release(struct agent_guest_runner *r)
{
    agent_guest_runner_stop(r);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->idle);
}

static void answer(struct tc_http_response *resp, unsigned status, json_t *j)
{
    if (j == NULL || tc_http_response_json(resp, status, j) != 0) {
        resp->status = 500;
    }
    json_decref(j);
}

/* A failed exchange: 503 when the guest is not there (or not in time), 502 for what it sent. */
static void answer_failed(struct tc_http_response *resp, const struct tc_reason *why)
{
    bool absent = strcmp(why->check, "guest.connect") == 0 ||
                  strcmp(why->check, "guest.deadline") == 0 ||
                  strcmp(why->check, "guest.closed") == 0;
    unsigned status = absent ? 503 : 502;
    if (strcmp(why->check, "guest.error") == 0 && strstr(why->detail, "guest.activate") != NULL)
        status = 403;
    answer(resp, status, json_pack("{s:s, s:s}", "error", why->detail, "check", why->check));
}

static void *guest_job_run(void *arg)
{
    struct guest_job *job = arg;
    struct tc_http_response resp = {0};
    struct tc_gc_hello hello;
    struct tc_reason why;
    char *b64 = NULL;
    tc_reason_clear(&why);
    if (!job->activate) {
        if (agent_guest_hello(job->channel, job->deadline_ms, &hello, &why) != 0) {
            LOG_WARN("VM %s: guest hello: %s: %s", job->vm_id, why.check, why.detail);
            answer_failed(&resp, &why);
        } else if (!(hello.caps & TC_GC_CAP_QUOTE) || hello.ak_pub_len == 0 ||
                   tc_b64_encode(hello.ak_pub, hello.ak_pub_len, &b64) != 0) {
            tc_fail(&why, TC_ERR_POLICY, "guest.unexpected", -1,
                    "the guest (%s) offers no quotes by an AK", hello.agent);
            answer_failed(&resp, &why);
        } else {
            json_t *caps = json_array();
            static const struct {
                unsigned bit;
                const char *name;
            } names[] = {{TC_GC_CAP_QUOTE, "quote"},
                         {TC_GC_CAP_IMA, "ima"},
                         {TC_GC_CAP_EVENTLOG, "eventlog"},
                         {TC_GC_CAP_ACTIVATE, "activate"}};
            for (size_t i = 0; caps && i < sizeof(names) / sizeof(names[0]); i++)
                if (hello.caps & names[i].bit)
                    json_array_append_new(caps, json_string(names[i].name));
            answer(&resp, 200,
                   json_pack("{s:s, s:s, s:o, s:s}", "vm_id", job->vm_id, "agent", hello.agent,
                             "capabilities", caps ? caps : json_array(), "ak_pub", b64));
        }
    } else {
        struct tc_gc_activated done;
        if (agent_guest_activate(job->channel, &job->act, job->deadline_ms, &hello, &done, &why) !=
            0) {
            LOG_WARN("VM %s: guest activation: %s: %s", job->vm_id, why.check, why.detail);
            answer_failed(&resp, &why);
        } else if (tc_b64_encode(done.secret, done.secret_len, &b64) != 0) {
            resp.status = 500;
        } else {
            answer(&resp, 200, json_pack("{s:s}", "secret", b64));
            OPENSSL_cleanse(b64, strlen(b64));
        }
        OPENSSL_cleanse(&done, sizeof(done));
    }
    free(b64);
    tc_http_deferred_finish(job->d, &resp);
    struct agent_guest_runner *r = job->runner;
    OPENSSL_cleanse(job, sizeof(*job));
    free(job);
    pthread_mutex_lock(&r->lock);
    if (--r->running == 0)
        pthread_cond_broadcast(&r->idle);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int agent_guest_runner_submit(struct agent_guest_runner *r, const struct tc_http_request *req,
                              struct tc_http_response *resp, const char *vm_id, const char *channel,
                              int deadline_ms, const struct tc_gc_activate *act)
{
    struct guest_job *job = calloc(1, sizeof(*job));
    if (job == NULL || strlen(channel) >= sizeof(job->channel)) {
        free(job);
        answer(resp, 503, json_pack("{s:s, s:s}", "error", "out of memory", "check", "agent.busy"));
        return TC_ERR_ALLOC;
    }
    job->runner = r;
    snprintf(job->vm_id, sizeof(job->vm_id), "%s", vm_id);
    memcpy(job->channel, channel, strlen(channel) + 1);
    job->deadline_ms = deadline_ms;
    if (act != NULL) {
        job->activate = true;
        job->act = *act;
    }
    pthread_mutex_lock(&r->lock);
    bool full = r->stopping || r->running >= AGENT_GUEST_MAX_THREADS;
    if (!full && (job->d = tc_http_defer(req)) == NULL)
        full = true;
    pthread_t t;
    pthread_attr_t attr;
    if (!full) {
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        r->running++; /* before the thread can end */
        if (pthread_create(&t, &attr, guest_job_run, job) != 0) {
            r->running--;
            pthread_attr_destroy(&attr);
            /* The deferred handle must be finished: with the refusal. */
            struct tc_http_response busy = {0};
            answer(
                &busy, 503,
                json_pack("{s:s, s:s}", "error", "cannot start a thread", "check", "agent.busy"));
            tc_http_deferred_finish(job->d, &busy);
            pthread_mutex_unlock(&r->lock);
            OPENSSL_cleanse(job, sizeof(*job));
            free(job);
            return TC_ERR_IO;
        }
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_unlock(&r->lock);
    if (full) {
        answer(resp, 503,
               json_pack("{s:s, s:s}", "error", "too many guest exchanges at once", "check",
                         "agent.busy"));
        OPENSSL_cleanse(job, sizeof(*job));
        free(job);
        return TC_ERR_IO;
    }
    return 0;
}
