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
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent_guest.h"
#include "trustcloud/error.h"
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
            if (pr <= 0)
                return tc_fail(why, TC_ERR_IO, "guest.deadline", -1,
                               "no whole %s from the guest within the deadline (%zu bytes of "
                               "the frame came)",
                               waiting, dec->header_have + dec->payload.len);
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

    if ((rc = guest_connect(path, &fd, why)) != 0)
        goto out;
    if ((rc = tc_gc_hello_encode(NULL, 0, NULL, 0, &out)) != 0 ||
        (rc = send_all(fd, out.data, out.len, deadline, why)) != 0 ||
        (rc = read_frame(fd, &dec, deadline, "hello", why)) != 0)
        goto out;
    tc_gc_decoder_frame(&dec, &type, &p, &len);
    if (type == TC_GC_ERROR) {
        rc = guest_error(p, len, why);
        goto out;
    }
    if (type != TC_GC_HELLO) {
        rc = tc_fail(why, TC_ERR_POLICY, "guest.unexpected", -1, "a %s instead of a hello",
                     tc_gc_type_name(type));
        goto out;
    }
    if ((rc = tc_gc_hello_parse(p, len, hello, why)) != 0)
        goto out;
    if (!(hello->caps & TC_GC_CAP_QUOTE)) {
        rc = tc_fail(why, TC_ERR_POLICY, "guest.unexpected", -1,
                     "the guest (%s) does not offer quotes", hello->agent);
        goto out;
    }
    tc_gc_decoder_next(&dec);
    t1 = mono_us();
    out.len = 0;
    if ((rc = tc_gc_request_encode(req, &out)) != 0 ||
        (rc = send_all(fd, out.data, out.len, deadline, why)) != 0 ||
        (rc = read_frame(fd, &dec, deadline, "quote answer", why)) != 0)
        goto out;
    tc_gc_decoder_frame(&dec, &type, &p, &len);
    if (type == TC_GC_ERROR) {
        rc = guest_error(p, len, why);
        goto out;
    }
    if (type != TC_GC_QUOTE_ANSWER) {
        rc = tc_fail(why, TC_ERR_POLICY, "guest.unexpected", -1, "a %s instead of a quote answer",
                     tc_gc_type_name(type));
        goto out;
    }
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
