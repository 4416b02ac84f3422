/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud-guest: the guest agent inside a VM (docs/protocol.md, "Guest channel"). It has no
 * network listener: it opens the VM's virtio-serial port and answers the host agent's requests
 * with its vTPM (the guest owns that TPM): a quote by its AK, its IMA list from the requested
 * position and, when asked, its UEFI boot log.
 *
 * The AK: the key persistent at TC_GC_AK_HANDLE when there is one (the platform provisioned
 * it), else a restricted ECC P-256 signing key created here under the EK and made persistent
 * there (its context file is kept in --state-dir as well).
 */
#define LOGMODULE "guest"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/guest_channel.h"
#include "trustcloud/ima.h"
#include "trustcloud/log.h"
#include "trustcloud/tpm.h"
#include "trustcloud/tpm_credential.h"
#include "trustcloud/tpm_nv.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define GUEST_VERSION "trustcloud-guest 0.1.0"
#define GUEST_IMA_MAX_FILE (64u << 20)
/* What the logs of one answer may take together, so that with base64 (4/3) and the quote the
 * frame stays under TC_GC_MAX_ANSWER. An IMA delta above what is left is cut at an entry
 * boundary; ima.next says where the host must continue. */
#define GUEST_LOG_BUDGET (TC_GC_MAX_ANSWER / 4 * 3 - (64u << 10))

struct guest_opts {
    const char *port;
    const char *tcti;
    const char *ima_path;
    const char *eventlog_path;
    const char *state_dir;
    bool once;
};

/* Test hooks (TC_TEST_HOOKS=1 and TC_GUEST_MISBEHAVE=FILE in the environment, never
 * otherwise): before each answer the first word of FILE picks how this agent misbehaves, so that
 * tests can show what the host and the coordinator make of a hostile guest. */
enum misbehave {
    MB_NONE,
    MB_OVERSIZE,    /* a header announcing an answer above the cap */
    MB_TRUNCATED,   /* half of the answer frame, then nothing */
    MB_GARBAGE,     /* bytes that are no frame */
    MB_WRONG_NONCE, /* a quote over a nonce of its own */
    MB_REPLAY,      /* the previous round's quote under this request's id */
    MB_FOREIGN,     /* a quote by another key (what another VM's quote is to the verifier) */
    MB_SILENT,      /* no answer at all */
};

struct guest {
    struct guest_opts opts;
    struct tc_tpm *tpm;
    struct tc_tpm_key ak;
    unsigned caps;
    const char *misbehave_file; /* test hooks only */
    struct tc_tpm_key foreign;  /* MB_FOREIGN's key, made at first need */
    struct tc_gc_answer last;   /* MB_REPLAY: the last quote answered (attest, sig, pcrs) */
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* VmRSS of this process in kB, or -1. */
static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* The AK at TC_GC_AK_HANDLE, created (under the EK) and made persistent there when absent. */
static int guest_ak(struct guest *g)
{
    int rc = tc_tpm_key_from_persistent(g->tpm, TC_GC_AK_HANDLE, &g->ak);
    if (rc == 0) {
        LOG_INFO("AK: the key persistent at 0x%08x", TC_GC_AK_HANDLE);
        return 0;
    }
    if (rc != TC_ERR_NOT_FOUND)
        return rc;
    struct tc_tpm_key ek;
    memset(&ek, 0, sizeof(ek));
    rc = tc_tpm_key_from_persistent(g->tpm, TC_TPM_EK_HANDLE_ECC, &ek);
    if (rc == TC_ERR_NOT_FOUND)
        rc = tc_tpm_ek_create(g->tpm, TC_KEY_ECC_P256, &ek);
    if (rc) {
        LOG_ERROR("no EK: %s", tc_strerror(rc));
        return rc;
    }
    char path[4096];
    if (mkdir(g->opts.state_dir, 0700) != 0 && errno != EEXIST) {
        LOG_ERROR("cannot create %s: %s", g->opts.state_dir, strerror(errno));
        tc_tpm_key_release(g->tpm, &ek);
        return TC_ERR_IO;
    }
    if (snprintf(path, sizeof(path), "%s/ak.ctx", g->opts.state_dir) >= (int)sizeof(path)) {
        tc_tpm_key_release(g->tpm, &ek);
        return TC_ERR_TOO_LARGE;
    }
    rc = tc_tpm_ak_create(g->tpm, &ek, TC_KEY_ECC_P256, TC_SIG_DEFAULT, path, &g->ak);
    tc_tpm_key_release(g->tpm, &ek);
    if (rc) {
        LOG_ERROR("AK creation failed: %s", tc_strerror(rc));
        return rc;
    }
    if ((rc = tc_tpm_key_persist(g->tpm, &g->ak, TC_GC_AK_HANDLE)) != 0) {
        LOG_ERROR("cannot make the AK persistent at 0x%08x: %s", TC_GC_AK_HANDLE, tc_strerror(rc));
        return rc;
    }
    /* The persistent object is the AK from now on: describe it as a later start will. */
    tc_tpm_key_release(g->tpm, &g->ak);
    if ((rc = tc_tpm_key_from_persistent(g->tpm, TC_GC_AK_HANDLE, &g->ak)) != 0)
        return rc;
    LOG_INFO("AK: created under the EK, persistent at 0x%08x", TC_GC_AK_HANDLE);
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return TC_ERR_IO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The IMA entries from..(the end, or the budget) of the guest's list in binary; *first is 0
 * when the list is shorter than from (it restarted: a reboot). An absent list is empty. */
static int ima_delta(const char *path, uint64_t from, size_t budget, uint64_t *first,
                     uint64_t *next, struct tc_buf *out, struct tc_reason *why)
{
    *first = *next = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = tc_file_read(path, GUEST_IMA_MAX_FILE, &data, &len);
    if (rc == TC_ERR_IO && access(path, F_OK) != 0)
        return 0;
    if (rc)
        return tc_fail(why, rc, "guest.ima", -1, "cannot read %s", path);
    if (len == 0) {
        free(data);
        return 0;
    }
    /* The kernel's list is binary; an ASCII one (a test's) is detected and sent as binary. */
    struct tc_ima_parse_opts po = {.format = tc_ima_detect_format(data, len)};
    struct tc_ima_log *log = NULL;
    rc = tc_ima_log_parse(data, len, &po, &log, why);
    free(data);
    if (rc)
        return rc;
    size_t start = from <= log->count ? (size_t)from : 0, i;
    struct tc_buf one;
    tc_buf_init(&one, budget);
    for (i = start; i < log->count; i++) {
        one.len = 0;
        if ((rc = tc_ima_log_to_binary(log, i, i + 1, &one)) != 0 || out->len + one.len > budget)
            break;
        if ((rc = tc_buf_put(out, one.data, one.len)) != 0)
            break;
    }
    tc_buf_release(&one);
    if (rc == TC_ERR_TOO_LARGE)
        rc = 0; /* one entry above the budget: cut there */
    *first = start;
    *next = i;
    if (i < log->count)
        LOG_WARN("IMA delta cut at entry %zu of %zu (answer budget)", i, log->count);
    tc_ima_log_free(log);
    return rc;
}

static enum misbehave misbehave_mode(const struct guest *g)
{
    static const struct {
        const char *name;
        enum misbehave m;
    } modes[] = {{"oversize", MB_OVERSIZE}, {"truncated", MB_TRUNCATED},
                 {"garbage", MB_GARBAGE},   {"wrong_nonce", MB_WRONG_NONCE},
                 {"replay", MB_REPLAY},     {"foreign", MB_FOREIGN},
                 {"silent", MB_SILENT}};
    if (g->misbehave_file == NULL)
        return MB_NONE;
    char word[32] = "";
    FILE *f = fopen(g->misbehave_file, "r");
    if (f == NULL)
        return MB_NONE;
    if (fscanf(f, "%31s", word) != 1)
        word[0] = 0;
    fclose(f);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (strcmp(word, modes[i].name) == 0) {
            LOG_WARN("test hook: misbehaving (%s)", word);
            return modes[i].m;
        }
    return MB_NONE;
}

/* MB_FOREIGN's key: a second AK under the EK, loaded for the process's life. */
static int foreign_key(struct guest *g)
{
    if (g->foreign.esys_handle != 0)
        return 0;
    struct tc_tpm_key ek;
    memset(&ek, 0, sizeof(ek));
    char path[4096];
    snprintf(path, sizeof(path), "%s/foreign.ctx", g->opts.state_dir);
    int rc = tc_tpm_key_from_persistent(g->tpm, TC_TPM_EK_HANDLE_ECC, &ek);
    if (rc == 0)
        rc = tc_tpm_ak_create(g->tpm, &ek, TC_KEY_ECC_P256, TC_SIG_DEFAULT, path, &g->foreign);
    tc_tpm_key_release(g->tpm, &ek);
    return rc;
}

/* Answers one quote request into out (an answer frame, or an error frame). */
static int answer_request(struct guest *g, const struct tc_gc_request *req, struct tc_buf *out)
{
    struct tc_gc_answer a;
    struct tc_tpm_quote q;
    struct tc_buf ima;
    struct tc_reason why;
    memset(&a, 0, sizeof(a));
    memset(&q, 0, sizeof(q));
    tc_reason_clear(&why);
    tc_buf_init(&ima, GUEST_LOG_BUDGET);
    uint8_t *evlog = NULL;
    size_t evlog_len = 0;
    enum misbehave mb = misbehave_mode(g);
    const struct tc_tpm_key *key = &g->ak;
    uint8_t nonce[TC_GC_MAX_NONCE];
    memcpy(nonce, req->nonce, req->nonce_len);
    if (mb == MB_WRONG_NONCE && RAND_bytes(nonce, (int)req->nonce_len) != 1)
        memset(nonce, 0x5a, req->nonce_len);
    if (mb == MB_FOREIGN && foreign_key(g) == 0)
        key = &g->foreign;
    int rc = tc_tpm_quote(g->tpm, key, &req->selection, nonce, req->nonce_len, &q);
    if (rc) {
        tc_fail(&why, rc, "guest.tpm", -1, "the vTPM did not quote %s: %s", req->selection_text,
                tc_strerror(rc));
        goto out;
    }
    if (req->want_eventlog && g->opts.eventlog_path != NULL &&
        access(g->opts.eventlog_path, F_OK) == 0) {
        rc = tc_file_read(g->opts.eventlog_path, GUEST_LOG_BUDGET, &evlog, &evlog_len);
        if (rc) {
            tc_fail(&why, rc, "guest.eventlog", -1, "cannot read %s: %s", g->opts.eventlog_path,
                    tc_strerror(rc));
            goto out;
        }
    }
    if ((rc = ima_delta(g->opts.ima_path, req->ima_from, GUEST_LOG_BUDGET - evlog_len, &a.ima_first,
                        &a.ima_next, &ima, &why)) != 0)
        goto out;
    a.id = req->id;
    a.attest = q.attest;
    a.attest_len = q.attest_len;
    a.sig = q.sig;
    a.sig_len = q.sig_len;
    a.pcrs = q.pcrs;
    a.ima = ima.len > 0 ? ima.data : NULL;
    a.ima_len = ima.len;
    a.eventlog = evlog_len > 0 ? evlog : NULL;
    a.eventlog_len = evlog_len;
    if (mb == MB_REPLAY && g->last.attest != NULL) {
        a.attest = g->last.attest;
        a.attest_len = g->last.attest_len;
        a.sig = g->last.sig;
        a.sig_len = g->last.sig_len;
        a.pcrs = g->last.pcrs;
    }
    rc = tc_gc_answer_encode(&a, out);
    if (rc == 0 && mb == MB_NONE) {
        /* Kept for a test's replay: the quote is public. */
        tc_gc_answer_release(&g->last);
        g->last.attest = q.attest;
        g->last.attest_len = q.attest_len;
        g->last.sig = q.sig;
        g->last.sig_len = q.sig_len;
        g->last.pcrs = q.pcrs;
        q.attest = q.sig = NULL;
    }
    if (rc == 0 && mb == MB_SILENT)
        out->len = 0;
    if (rc == 0 && mb == MB_TRUNCATED)
        out->len /= 2;
    if (rc == 0 && mb == MB_OVERSIZE) {
        out->len = 0;
        static const uint8_t big[TC_GC_HEADER_LEN] = {
            'T', 'C', 'G', 'C', TC_GC_VERSION, TC_GC_QUOTE_ANSWER, 0, 0, 0xff, 0xff, 0xff, 0xff};
        rc = tc_buf_put(out, big, sizeof(big));
    }
    if (rc == 0 && mb == MB_GARBAGE) {
        out->len = 0;
        rc = tc_buf_put(out, "GET / HTTP/1.1\r\n\r\n", 18);
    }
    if (rc)
        tc_fail(&why, rc, "guest.internal", -1, "cannot encode the answer: %s", tc_strerror(rc));
out:
    if (rc) {
        LOG_ERROR("request %llu: %s: %s", (unsigned long long)req->id, why.check, why.detail);
        out->len = 0;
        rc = tc_gc_error_encode(req->id, why.check, why.detail, out);
    }
    tc_tpm_quote_release(&q);
    tc_buf_release(&ima);
    free(evlog);
    return rc;
}

/* Unwraps the coordinator's credential with the AK and the EK (the host relays it): the proof
 * that the AK this agent announced lives in the TPM whose EK the VM was enrolled with. */
static void answer_activate(struct guest *g, const struct tc_gc_activate *a, struct tc_buf *out)
{
    struct tc_tpm_key ek;
    uint8_t secret[TC_GC_MAX_SECRET];
    size_t secret_len = 0;
    memset(&ek, 0, sizeof(ek));
    int rc = tc_tpm_key_from_persistent(g->tpm, TC_TPM_EK_HANDLE_ECC, &ek);
    if (rc) {
        LOG_ERROR("activation %llu: no EK at 0x%08x: %s", (unsigned long long)a->id,
                  TC_TPM_EK_HANDLE_ECC, tc_strerror(rc));
        tc_gc_error_encode(a->id, "guest.tpm", "no EK", out);
        return;
    }
    rc = tc_tpm_activate_credential(g->tpm, &g->ak, &ek, a->id_object, a->id_object_len,
                                    a->enc_secret, a->enc_secret_len, secret, sizeof(secret),
                                    &secret_len);
    tc_tpm_key_release(g->tpm, &ek);
    if (rc) {
        LOG_WARN("activation %llu: the TPM refused the credential: %s", (unsigned long long)a->id,
                 tc_strerror(rc));
        tc_gc_error_encode(a->id, "guest.activate",
                           "the TPM refused the credential (not made for its EK and AK)", out);
    } else {
        tc_gc_activated_encode(a->id, secret, secret_len, out);
        LOG_INFO("activation %llu: credential unwrapped", (unsigned long long)a->id);
    }
    OPENSSL_cleanse(secret, sizeof(secret));
}

/* One frame from the host: the reply (if any) in out. Returns 1 when the agent should stop
 * (--once after an answer). */
static int handle_frame(struct guest *g, unsigned type, const uint8_t *p, size_t len,
                        struct tc_buf *out)
{
    struct tc_reason why;
    tc_reason_clear(&why);
    switch (type) {
    case TC_GC_HELLO: {
        struct tc_gc_hello h;
        if (tc_gc_hello_parse(p, len, &h, &why) != 0)
            break;
        tc_gc_hello_encode(GUEST_VERSION, g->caps, g->ak.pub, g->ak.pub_len, out);
        return 0;
    }
    case TC_GC_QUOTE_REQUEST: {
        struct tc_gc_request req;
        if (tc_gc_request_parse(p, len, &req, &why) != 0)
            break;
        long long t0 = now_us();
        answer_request(g, &req, out);
        LOG_INFO("request %llu answered in %lld ms (%zu bytes; VmRSS %ld kB)",
                 (unsigned long long)req.id, (now_us() - t0) / 1000, out->len, rss_kb());
        return g->opts.once ? 1 : 0;
    }
    case TC_GC_ACTIVATE_REQUEST: {
        struct tc_gc_activate a;
        if (tc_gc_activate_parse(p, len, &a, &why) != 0)
            break;
        answer_activate(g, &a, out);
        OPENSSL_cleanse(&a, sizeof(a));
        return 0;
    }
    case TC_GC_ERROR: {
        struct tc_gc_error e;
        if (tc_gc_error_parse(p, len, &e, &why) == 0)
            LOG_WARN("the host reports %s: %s", e.check, e.error);
        return 0;
    }
    default:
        tc_fail(&why, TC_ERR_UNSUPPORTED, "guest.unexpected", -1, "a guest does not take a %s",
                tc_gc_type_name(type));
        break;
    }
    LOG_WARN("refused a %s: %s: %s", tc_gc_type_name(type), why.check, why.detail);
    tc_gc_error_encode(0, why.check, why.detail, out);
    return 0;
}

/* Serves the port until a signal (or --once's answer). A host that breaks the framing gets an
 * error frame; then everything it sends is dropped until it disconnects. */
static int serve(struct guest *g)
{
    int fd = -1;
    struct tc_gc_decoder dec;
    struct tc_buf out;
    tc_gc_decoder_init(&dec, TC_GC_MAX_SMALL);
    tc_buf_init(&out, TC_GC_MAX_ANSWER + TC_GC_HEADER_LEN);
    int rc = 0;
    bool broken = false;
    uint8_t chunk[4096];
    while (!stop_flag) {
        if (fd < 0) {
            fd = open(g->opts.port, O_RDWR | O_CLOEXEC | O_NOCTTY);
            if (fd < 0) {
                LOG_ERROR("cannot open %s: %s", g->opts.port, strerror(errno));
                rc = TC_ERR_IO;
                break;
            }
            LOG_INFO("serving %s", g->opts.port);
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, 1000);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        ssize_t n = 0;
        if (pfd.revents & POLLIN)
            n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            /* No host connected: a virtio-serial port then polls POLLIN|POLLHUP and reads 0 at
             * once. Start afresh for the next host, without spinning while there is none. */
            if (dec.header_have > 0 || broken)
                LOG_INFO("host disconnected");
            tc_gc_decoder_release(&dec);
            tc_gc_decoder_init(&dec, TC_GC_MAX_SMALL);
            broken = false;
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
            if (n < 0) {
                close(fd);
                fd = -1;
            }
            continue;
        }
        size_t off = 0;
        while (!broken && off < (size_t)n) {
            size_t used;
            struct tc_reason why;
            int fr = tc_gc_decoder_feed(&dec, chunk + off, (size_t)n - off, &used, &why);
            off += used;
            out.len = 0;
            if (fr < 0) {
                LOG_WARN("host stream refused: %s: %s", why.check, why.detail);
                tc_gc_error_encode(0, why.check, why.detail, &out);
                broken = true;
            } else if (fr == 1) {
                unsigned type;
                const uint8_t *p;
                size_t len;
                tc_gc_decoder_frame(&dec, &type, &p, &len);
                if (handle_frame(g, type, p, len, &out) == 1)
                    stop_flag = 1;
                tc_gc_decoder_next(&dec);
            }
            if (out.len > 0 && write_all(fd, out.data, out.len) != 0)
                LOG_WARN("cannot write to %s: %s", g->opts.port, strerror(errno));
            OPENSSL_cleanse(out.data, out.len); /* an activation answer holds a secret */
        }
    }
    if (fd >= 0)
        close(fd);
    tc_gc_decoder_release(&dec);
    tc_buf_release(&out);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: trustcloud-guest [options]\n"
            "  --port PATH       virtio-serial port (default /dev/virtio-ports/%s)\n"
            "  --tcti T          the guest's TPM (default device:/dev/tpmrm0, else "
            "device:/dev/tpm0)\n"
            "  --ima PATH        IMA list (default "
            "/sys/kernel/security/ima/binary_runtime_measurements)\n"
            "  --eventlog PATH   UEFI log (default "
            "/sys/kernel/security/tpm0/binary_bios_measurements)\n"
            "  --state-dir DIR   where a self-made AK's context is kept (default "
            "/var/lib/trustcloud-guest)\n"
            "  --once            exit after the first quote answer\n"
            "  --verbose         debug logging\n"
            "  --help, --version\n",
            TC_GC_PORT_NAME);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},      {"tcti", required_argument, NULL, 't'},
        {"ima", required_argument, NULL, 'i'},       {"eventlog", required_argument, NULL, 'e'},
        {"state-dir", required_argument, NULL, 's'}, {"once", no_argument, NULL, 'o'},
        {"verbose", no_argument, NULL, 'v'},         {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},         {NULL, 0, NULL, 0}};
    struct guest g;
    memset(&g, 0, sizeof(g));
    g.opts.port = "/dev/virtio-ports/" TC_GC_PORT_NAME;
    g.opts.ima_path = "/sys/kernel/security/ima/binary_runtime_measurements";
    g.opts.eventlog_path = "/sys/kernel/security/tpm0/binary_bios_measurements";
    g.opts.state_dir = "/var/lib/trustcloud-guest";
    /* What it does is worth a line on the guest's console (TC_LOG_LEVEL still decides). */
    if (getenv("TC_LOG_LEVEL") == NULL)
        tc_log_set_level(TC_LOG_INFO);
    int c;
    while ((c = getopt_long(argc, argv, "p:t:i:e:s:ovhV", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            g.opts.port = optarg;
            break;
        case 't':
            g.opts.tcti = optarg;
            break;
        case 'i':
            g.opts.ima_path = optarg;
            break;
        case 'e':
            g.opts.eventlog_path = optarg;
            break;
        case 's':
            g.opts.state_dir = optarg;
            break;
        case 'o':
            g.opts.once = true;
            break;
        case 'v':
            tc_log_set_level(TC_LOG_DEBUG);
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("%s (guest channel protocol %d)\n", GUEST_VERSION, TC_GC_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (g.opts.tcti == NULL)
        g.opts.tcti = access("/dev/tpmrm0", F_OK) == 0 ? "device:/dev/tpmrm0" : "device:/dev/tpm0";
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The kernel started a device TPM already; anything else (a swtpm in a test) gets Startup. */
    int rc = strncmp(g.opts.tcti, "device", 6) == 0 ? tc_tpm_open_started(g.opts.tcti, &g.tpm)
                                                    : tc_tpm_open(g.opts.tcti, &g.tpm);
    if (rc) {
        LOG_ERROR("cannot open the TPM at %s: %s", g.opts.tcti, tc_strerror(rc));
        return 1;
    }
    if ((rc = guest_ak(&g)) != 0) {
        tc_tpm_close(g.tpm);
        return 1;
    }
    g.caps = TC_GC_CAP_QUOTE | TC_GC_CAP_IMA | TC_GC_CAP_EVENTLOG | TC_GC_CAP_ACTIVATE;
    const char *hooks = getenv("TC_TEST_HOOKS");
    if (hooks != NULL && strcmp(hooks, "1") == 0 && getenv("TC_GUEST_MISBEHAVE") != NULL) {
        g.misbehave_file = getenv("TC_GUEST_MISBEHAVE");
        LOG_WARN("TEST HOOKS ENABLED: misbehaving as %s says", g.misbehave_file);
    }
    LOG_INFO("%s ready (TPM %s; VmRSS %ld kB)", GUEST_VERSION, g.opts.tcti, rss_kb());
    rc = serve(&g);
    tc_gc_answer_release(&g.last);
    tc_tpm_key_release(g.tpm, &g.foreign);
    tc_tpm_key_release(g.tpm, &g.ak);
    tc_tpm_close(g.tpm);
    return rc ? 1 : 0;
}
