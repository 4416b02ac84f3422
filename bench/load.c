/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Coordinator load benchmark: one real trustcloud-coordinator (child process,
 * SQLite store, mutual TLS) attesting N emulated nodes (load_emu.h: software
 * AKs, real TPMS_ATTEST quotes, real IMA deltas) at a fixed interval.
 *
 * The coordinator runs with load_test_allow_software_aks = true, the explicit
 * switch without which POST /v1/nodes/import is refused: software AKs are
 * never accepted outside such a test configuration.
 *
 * Per N it measures, over a fixed window after a warm-up:
 *  - sustained attestations/s: rounds the coordinator recorded as trusted with
 *    a timestamp in the window (read from its store after it stopped), next to
 *    the quotes the emulator answered in the same window;
 *  - latency p50/p99: from the moment the emulator holds the complete
 *    challenge until the coordinator's timestamp of that round (taken when the
 *    engine takes the answer up, before its appraisal and the batched commit,
 *    which follows within 5 ms: those are NOT included);
 *  - coordinator CPU per attestation (/proc/PID/stat) and the cores used by
 *    the coordinator and by the emulator (which shares the machine);
 *  - the ratio to the evidence core's in-process rate (tc_appraise of an
 *    equivalent answer on one core, measured in the same run).
 * Usage: load [--coordinator PATH] [--nodes N,N,...] [--interval MS] [--seconds S]
 *             [--warmup S] [--per-round K] [--baseline-seconds S]
 */
#define LOGMODULE "load"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "bench.h"
#include "coordinator/store.h"
#include "load_emu.h"
#include "trustcloud/appraisal.h"
#include "trustcloud/error.h"
#include "trustcloud/httpc.h"
#include "trustcloud/log.h"
#include "trustcloud/pki.h"

#define MAX_POINTS 16
#define STOP_TIMEOUT_S 15
#define INITIAL_ENTRIES 20
#define SELECTION "sha256:0,1,2,3,4,5,6,7,8,9,10"

struct options {
    const char *coordinator;
    size_t nodes[MAX_POINTS];
    size_t npoints;
    long interval_ms;
    double seconds, warmup, baseline_secs;
    unsigned per_round;
};

struct files {
    char dir[512];
    char ca_dir[600], ca[700], op_cert[600], op_key[600], emu_cert[600], emu_key[600];
    char pin[65]; /* the emulator's TLS key, as the coordinator pins each agent */
};

static void die(const char *what, int rc)
{
    fprintf(stderr, "load: %s: %s\n", what, rc ? tc_strerror(rc) : "failed");
    exit(1);
}

static int64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- PKI: a CA, the coordinator's identity, an operator and the emulator ------------------ */

static void issue(const struct tc_pki_ca *ca, const char *cn, unsigned usage, const char *cert,
                  const char *keyf, char pin[65])
{
    EVP_PKEY *key = NULL;
    char *pem = NULL;
    const char *sans[] = {"IP:127.0.0.1", NULL};
    X509 *x = NULL;
    /* The role EKU `trustcloud ca init|issue` gives these CNs (the CLI and agents check it). */
    unsigned role = strcmp(cn, "coordinator") == 0 ? TC_PKI_ROLE_COORDINATOR
                    : strncmp(cn, "node:", 5) == 0 ? TC_PKI_ROLE_NODE
                                                   : TC_PKI_ROLE_NONE;
    struct tc_pki_issue_req req = {.cn = cn, .sans = sans, .usage = usage, .role = role, .days = 2};
    int rc;
    if ((rc = tc_pki_key_generate(&key)) != 0)
        die("key", rc);
    req.pubkey = key;
    if ((rc = tc_pki_issue(ca, &req, &pem)) != 0 ||
        (rc = tc_pki_cert_parse((const uint8_t *)pem, strlen(pem), &x)) != 0 ||
        (rc = tc_pki_cert_save(cert, x)) != 0 || (rc = tc_pki_key_save(keyf, key)) != 0)
        die("issuing a certificate", rc);
    if (pin) {
        unsigned char *der = NULL;
        int len = i2d_PUBKEY(key, &der);
        uint8_t h[32];
        if (len <= 0 || tc_hash(tc_hash_by_name("sha256"), der, (size_t)len, h) != 0)
            die("pin", TC_ERR_CRYPTO);
        tc_hex_encode(h, 32, pin);
        OPENSSL_free(der);
    }
    X509_free(x);
    free(pem);
    EVP_PKEY_free(key);
}

static void make_pki(struct files *f)
{
    struct tc_pki_ca *ca = NULL;
    int rc;
    snprintf(f->ca_dir, sizeof(f->ca_dir), "%s/ca", f->dir);
    snprintf(f->ca, sizeof(f->ca), "%s/ca.pem", f->ca_dir);
    snprintf(f->op_cert, sizeof(f->op_cert), "%s/operator.pem", f->dir);
    snprintf(f->op_key, sizeof(f->op_key), "%s/operator.key", f->dir);
    snprintf(f->emu_cert, sizeof(f->emu_cert), "%s/emulator.pem", f->dir);
    snprintf(f->emu_key, sizeof(f->emu_key), "%s/emulator.key", f->dir);
    if ((rc = tc_pki_ca_init(f->ca_dir, "trustcloud load-bench CA", 2, &ca)) != 0)
        die("CA", rc);
    char cert[700], key[700];
    snprintf(cert, sizeof(cert), "%s/coordinator.pem", f->ca_dir);
    snprintf(key, sizeof(key), "%s/coordinator.key", f->ca_dir);
    issue(ca, "coordinator", TC_PKI_USAGE_BOTH, cert, key, NULL);
    issue(ca, "operator:load-bench", TC_PKI_USAGE_CLIENT, f->op_cert, f->op_key, NULL);
    /* One server identity for all emulated agents (they share one address). */
    issue(ca, "node:load-emulator", TC_PKI_USAGE_BOTH, f->emu_cert, f->emu_key, f->pin);
    tc_pki_ca_free(ca);
}

/* ---- baselines measured in this process ---------------------------------------------------- */

struct base_case {
    struct load_emu *emu;
    struct load_emu_node *node;
    char request[512];
    size_t request_len;
    char *answer;
    size_t answer_len;
    struct tc_ak *ak;
    struct tc_pcr_selection sel;
    uint8_t nonce[32];
    struct tc_ima_replay_state state; /* the verifier's point: the node's initial entries */
    /* Pre-decoded answer for the pure appraisal. */
    uint8_t *attest, *sig;
    size_t attest_len, sig_len;
    struct tc_pcr_set pcrs;
    struct tc_ima_log *delta;
};

static int b64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len)
{
    uint8_t *buf = malloc(len / 4 * 3 + 3);
    if (!buf || len % 4)
        return free(buf), TC_ERR_FORMAT;
    int n = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
    if (n < 0)
        return free(buf), TC_ERR_FORMAT;
    if (len >= 1 && s[len - 1] == '=')
        n--;
    if (len >= 2 && s[len - 2] == '=')
        n--;
    *out = buf;
    *out_len = (size_t)n;
    return 0;
}

/* What the coordinator does with one answer besides the network and the store: JSON, base64,
 * the binary IMA delta, the quote header (reboot check) and tc_appraise. full = false: only
 * tc_appraise over pre-decoded inputs (verify_bench's "full" measurement). */
static int appraise_answer(struct base_case *b, bool full)
{
    uint8_t *attest = b->attest, *sig = b->sig, *imaraw = NULL;
    size_t attest_len = b->attest_len, sig_len = b->sig_len, imalen = 0;
    struct tc_pcr_set pcrs_local;
    const struct tc_pcr_set *pcrs = &b->pcrs;
    struct tc_ima_log *delta = b->delta;
    json_t *j = NULL;
    int rc = 0;
    if (full) {
        attest = sig = NULL;
        delta = NULL;
        rc = TC_ERR_FORMAT;
        j = json_loadb(b->answer, b->answer_len, JSON_REJECT_DUPLICATES, NULL);
        json_t *ja = json_object_get(j, "attest"), *js = json_object_get(j, "signature");
        json_t *jl = json_object_get(json_object_get(j, "ima"), "list");
        json_t *jf = json_object_get(json_object_get(j, "ima"), "first");
        struct tc_quote_info qi;
        if (!json_is_string(ja) || !json_is_string(js) || !json_is_string(jl) ||
            !json_is_integer(jf) ||
            b64_decode(json_string_value(ja), json_string_length(ja), &attest, &attest_len) ||
            b64_decode(json_string_value(js), json_string_length(js), &sig, &sig_len) ||
            b64_decode(json_string_value(jl), json_string_length(jl), &imaraw, &imalen) ||
            tc_pcrs_from_json(json_object_get(j, "pcrs"), &pcrs_local) != 0 ||
            tc_quote_parse(attest, attest_len, &qi, NULL) != 0)
            goto out;
        struct tc_ima_parse_opts po = {.format = TC_IMA_FMT_BINARY,
                                       .first_index = (size_t)json_integer_value(jf)};
        if ((rc = tc_ima_log_parse(imaraw, imalen, &po, &delta, NULL)) != 0)
            goto out;
        pcrs = &pcrs_local;
    }
    struct tc_ima_replay_state st = b->state;
    struct tc_appraisal_input in = {
        .ak = b->ak,
        .attest = attest,
        .attest_len = attest_len,
        .sig = sig,
        .sig_len = sig_len,
        .pcrs = pcrs,
        .expect = {.nonce = b->nonce, .nonce_len = sizeof(b->nonce), .selection = &b->sel},
        .ima = delta,
        .ima_state = &st,
        .runtime_policy = b->emu->ima.policy,
    };
    struct tc_appraisal a;
    rc = tc_appraise(&in, &a);
    if (rc == 0 && a.ima_new != b->emu->per_round)
        rc = TC_ERR_INTERNAL;
    if (rc)
        tc_reason_print(stderr, &a.why);
out:
    if (full) {
        free(attest);
        free(sig);
        tc_ima_log_free(delta);
    }
    free(imaraw);
    json_decref(j);
    return rc;
}

static int appraise_core(void *arg)
{
    return appraise_answer(arg, false);
}

static int appraise_full(void *arg)
{
    return appraise_answer(arg, true);
}

/* The emulator's cost of one answer (signature, JSON, base64), on one core. */
static int emulate_one(void *arg)
{
    struct base_case *b = arg;
    char *out = NULL;
    size_t len;
    b->node->count = INITIAL_ENTRIES;
    int rc =
        load_emu_answer(b->emu, b->node, (const uint8_t *)b->request, b->request_len, &out, &len);
    free(out);
    return rc;
}

static void base_case_init(struct base_case *b, struct load_emu *emu)
{
    struct tc_reason why;
    int rc;
    memset(b, 0, sizeof(*b));
    b->emu = emu;
    b->node = &emu->nodes[0];
    b->node->count = INITIAL_ENTRIES;
    memset(b->nonce, 0x5c, sizeof(b->nonce));
    char hex[65];
    tc_hex_encode(b->nonce, sizeof(b->nonce), hex);
    b->request_len = (size_t)snprintf(
        b->request, sizeof(b->request),
        "{\"nonce\":\"%s\",\"pcr_selection\":\"%s\",\"ima_from\":%u,\"want_eventlog\":false}", hex,
        SELECTION, INITIAL_ENTRIES);
    struct tc_pcr_set selset;
    tc_pcrs_parse_selection(SELECTION, &selset);
    tc_pcr_selection_from_set(&selset, &b->sel);
    size_t plen;
    const uint8_t *pub = tc_softak_public(b->node->ak, &plen);
    if ((rc = tc_ak_from_tpm2b_public(pub, plen, &b->ak, &why)) != 0)
        die("AK", rc);
    /* The verifier's saved point, as the coordinator keeps it (sha1 and sha256 banks). */
    struct tc_ima_log *head = NULL;
    struct tc_ima_parse_opts po = {.format = TC_IMA_FMT_BINARY};
    tc_ima_replay_init(&b->state, NULL, 0, 0);
    if ((rc = tc_ima_log_parse(emu->ima.bin.data, emu->ima.off[INITIAL_ENTRIES], &po, &head,
                               &why)) != 0 ||
        (rc = tc_ima_replay_advance(&b->state, head, &why)) != 0)
        die("verifier state", rc);
    tc_ima_log_free(head);
    if ((rc = load_emu_answer(emu, b->node, (const uint8_t *)b->request, b->request_len, &b->answer,
                              &b->answer_len)) != 0)
        die("answer", rc);
    json_t *j = json_loadb(b->answer, b->answer_len, 0, NULL);
    json_t *jl = json_object_get(json_object_get(j, "ima"), "list");
    uint8_t *imaraw = NULL;
    size_t imalen = 0;
    json_t *ja = json_object_get(j, "attest"), *js = json_object_get(j, "signature");
    if (!j ||
        b64_decode(json_string_value(ja), json_string_length(ja), &b->attest, &b->attest_len) ||
        b64_decode(json_string_value(js), json_string_length(js), &b->sig, &b->sig_len) ||
        b64_decode(json_string_value(jl), json_string_length(jl), &imaraw, &imalen) ||
        tc_pcrs_from_json(json_object_get(j, "pcrs"), &b->pcrs) != 0)
        die("decoding the answer", TC_ERR_FORMAT);
    po.first_index = INITIAL_ENTRIES;
    if ((rc = tc_ima_log_parse(imaraw, imalen, &po, &b->delta, &why)) != 0)
        die("delta", rc);
    free(imaraw);
    json_decref(j);
}

static void base_case_release(struct base_case *b)
{
    free(b->answer);
    free(b->attest);
    free(b->sig);
    tc_ak_free(b->ak);
    tc_ima_log_free(b->delta);
}

/* ---- the coordinator child ------------------------------------------------------------------ */

static pid_t spawn_coordinator(const char *bin, const char *conf, const char *log)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork", TC_ERR_IO);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        execl(bin, bin, "-c", conf, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static unsigned wait_listening(pid_t pid, const char *log)
{
    for (int i = 0; i < 400; i++) {
        FILE *f = fopen(log, "r");
        char line[512];
        unsigned port = 0;
        while (f && fgets(line, sizeof(line), f))
            if (sscanf(line, "trustcloud-coordinator: listening on 127.0.0.1:%u", &port) == 1)
                break;
        if (f)
            fclose(f);
        if (port)
            return port;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            break;
        sleep_s(0.025);
    }
    fprintf(stderr, "load: the coordinator did not start; its log (%s):\n", log);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "tail -n 20 '%s' >&2", log);
    if (system(cmd) != 0)
        fprintf(stderr, "(cannot show the log)\n");
    exit(1);
}

/* utime + stime of a process, in seconds. */
static double proc_cpu(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    /* After "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime (fields 3..15). */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- operator API ------------------------------------------------------------------------- */

struct op_tally {
    size_t ok, failed;
    char first_error[256];
};

static void op_done(void *arg, int status, long code, const uint8_t *body, size_t len)
{
    struct op_tally *t = arg;
    if (status == 0 && code / 100 == 2) {
        t->ok++;
        return;
    }
    if (t->failed++ == 0)
        snprintf(t->first_error, sizeof(t->first_error), "%s, HTTP %ld: %.*s",
                 status ? tc_strerror(status) : "answered", code, (int)(len > 160 ? 160 : len),
                 (const char *)body);
}

static void op_drain(struct tc_httpc *c)
{
    while (tc_httpc_run(c, 100) > 0)
        ;
}

static void op_post(struct tc_httpc *c, const char *url, const char *body, struct op_tally *t)
{
    int rc = tc_httpc_submit(c, "POST", url, "application/json", body, strlen(body), op_done, t);
    if (rc)
        die("operator request", rc);
}

/* Policy (if any), its assignment to the group, then every node. */
static void setup_nodes(const struct files *f, struct load_emu *emu, unsigned port, size_t n,
                        long interval_ms)
{
    struct tc_httpc_config cc = {.cert_file = f->op_cert,
                                 .key_file = f->op_key,
                                 .ca_file = f->ca,
                                 .timeout_ms = 60000,
                                 .max_host_connections = 4};
    struct tc_httpc *c = NULL;
    struct op_tally t = {0};
    char base[64], url[128];
    int rc;
    if ((rc = tc_httpc_new(&cc, &c)) != 0)
        die("operator client", rc);
    snprintf(base, sizeof(base), "https://127.0.0.1:%u", port);

    json_t *pj = NULL;
    if ((rc = tc_runtime_policy_to_json(emu->ima.policy, &pj)) != 0)
        die("policy JSON", rc);
    json_t *req =
        json_pack("{s:s, s:s, s:o}", "name", "load-runtime", "kind", "runtime", "body", pj);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!text)
        die("policy JSON", TC_ERR_ALLOC);
    snprintf(url, sizeof(url), "%s/v1/policies", base);
    op_post(c, url, text, &t);
    free(text);
    op_drain(c);
    snprintf(url, sizeof(url), "%s/v1/policies/load-runtime/assign", base);
    op_post(c, url, "{\"group\":\"load\"}", &t);
    op_drain(c);
    if (t.failed) {
        fprintf(stderr, "load: runtime policy refused (%s)\n", t.first_error);
        exit(1);
    }

    /* Imports are spread over one interval: a node's first challenge follows its import at once
     * and later ones keep that phase, so this spreads the rounds the way machines that enrolled
     * at different times would be (all at once would measure one burst per interval). */
    snprintf(url, sizeof(url), "%s/v1/nodes/import", base);
    double start = bench_now();
    for (size_t i = 0; i < n; i++) {
        double due = start + (double)interval_ms / 1000.0 * (double)i / (double)n;
        for (double now = bench_now(); now < due; now = bench_now())
            tc_httpc_run(c, (int)((due - now) * 1000.0) + 1);
        size_t plen;
        const uint8_t *pub = tc_softak_public(emu->nodes[i].ak, &plen);
        char *ak64 = malloc(4 * ((plen + 2) / 3) + 1), body[2048];
        if (!ak64)
            die("import", TC_ERR_ALLOC);
        EVP_EncodeBlock((unsigned char *)ak64, pub, (int)plen);
        snprintf(body, sizeof(body),
                 "{\"node_id\":\"n%zu\",\"ak_pub\":\"%s\",\"agent_url\":\"https://"
                 "127.0.0.1:%u/n/%zu\",\"group\":\"load\",\"tls_pin_sha256\":\"%s\"}",
                 i, ak64, load_emu_port(emu), i, f->pin);
        free(ak64);
        op_post(c, url, body, &t);
        if (tc_httpc_pending(c) >= 64)
            tc_httpc_run(c, 100);
    }
    op_drain(c);
    tc_httpc_free(c);
    if (t.failed) {
        fprintf(stderr, "load: %zu of %zu imports refused (first: %s)\n", t.failed, n,
                t.first_error);
        exit(1);
    }
}

/* ---- one point of the sweep ------------------------------------------------------------------ */

struct point {
    size_t nodes;
    double offered, answered_s, recorded_s, trusted_s;
    size_t bad, missed; /* rounds of the window that were not attestations; of them, misses */
    char bad_reason[512];
    double p50, p99, pmax;
    double coord_cores, coord_ms_per_att, emu_cores, emu_service_us;
    double stop_s; /* SIGTERM to exit */
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* Rounds of the window from the store, and their latency from the emulator's arrival times. */
static void analyze(const char *db, struct load_emu *emu, size_t n, int64_t t0, int64_t t1,
                    struct point *pt)
{
    struct tc_store *s = NULL;
    struct tc_store_options so = {0};
    int rc = tc_store_open(db, &so, &s);
    if (rc)
        die("opening the coordinator's store", rc);
    size_t cap = 1024, nl = 0, recorded = 0, trusted = 0;
    double *lat = malloc(cap * sizeof(*lat));
    for (size_t i = 0; i < n && lat; i++) {
        char id[32];
        struct tc_store_result *r = NULL;
        size_t nr = 0;
        snprintf(id, sizeof(id), "n%zu", i);
        if ((rc = tc_store_results_list(s, id, 0, TC_STORE_LIST_MAX, &r, &nr)) != 0)
            die("history", rc);
        const struct load_emu_node *nd = &emu->nodes[i];
        uint64_t first = nd->narrival > LOAD_EMU_ARRIVALS ? nd->narrival - LOAD_EMU_ARRIVALS : 0;
        for (size_t k = 0; k < nr; k++) {
            if (r[k].ts < t0 || r[k].ts >= t1)
                continue;
            recorded++;
            /* A miss keeps the node's state (trusted until unreachable_after): only rounds
             * without a reason are attestations. */
            if (r[k].state != TC_NODE_TRUSTED || r[k].reason.code != 0) {
                if (strcmp(r[k].reason.check, "agent.unreachable") == 0)
                    pt->missed++;
                if (pt->bad++ == 0)
                    snprintf(pt->bad_reason, sizeof(pt->bad_reason), "%s: %s: %s", id,
                             r[k].reason.check, r[k].reason.detail);
                continue;
            }
            trusted++;
            /* The latest challenge that had arrived by the end of the round's millisecond. */
            int64_t limit = r[k].ts * 1000 + 999, best = -1;
            for (uint64_t a = first; a < nd->narrival; a++) {
                int64_t t = nd->arrival_us[a % LOAD_EMU_ARRIVALS];
                if (t <= limit && t > best)
                    best = t;
            }
            if (best < 0)
                continue;
            if (nl == cap) {
                double *g = realloc(lat, 2 * cap * sizeof(*lat));
                if (!g)
                    break;
                lat = g;
                cap *= 2;
            }
            lat[nl++] = (double)(r[k].ts * 1000 + 500 - best) / 1000.0;
            if (getenv("TC_LOAD_DEBUG") && i < 3)
                fprintf(stderr, "debug: %s round %llu ts %lld arrival %lld.%03lld\n", id,
                        (unsigned long long)r[k].round, (long long)r[k].ts,
                        (long long)(best / 1000), (long long)(best % 1000));
        }
        free(r);
    }
    tc_store_close(s);
    double secs = (double)(t1 - t0) / 1000.0;
    pt->recorded_s = (double)recorded / secs;
    pt->trusted_s = (double)trusted / secs;
    if (lat && nl) {
        qsort(lat, nl, sizeof(*lat), cmp_double);
        pt->p50 = pct(lat, nl, 0.50);
        pt->p99 = pct(lat, nl, 0.99);
        pt->pmax = lat[nl - 1];
    }
    free(lat);
}

static void run_point(const struct options *o, const struct files *f, struct load_emu *emu,
                      size_t n, struct point *pt)
{
    char dir[700], conf[800], log[800], db[800];
    memset(pt, 0, sizeof(*pt));
    pt->nodes = n;
    pt->offered = (double)n * 1000.0 / (double)o->interval_ms;
    snprintf(dir, sizeof(dir), "%s/run-%zu", f->dir, n);
    if (mkdir(dir, 0700) != 0)
        die("mkdir", TC_ERR_IO);
    snprintf(conf, sizeof(conf), "%s/coordinator.conf", dir);
    snprintf(log, sizeof(log), "%s/coordinator.log", dir);
    snprintf(db, sizeof(db), "sqlite:%s/coordinator.db", dir);
    FILE *cf = fopen(conf, "w");
    if (!cf)
        die("config", TC_ERR_IO);
    fprintf(cf,
            "[coordinator]\nlisten = 127.0.0.1\nport = 0\ndb = %s\nca_dir = %s\n"
            "interval = %ldms\npcr_selection = %s\nlog_level = warn\n"
            "# LOAD TEST ONLY: lets the operator import nodes with software AKs.\n"
            "load_test_allow_software_aks = true\n",
            db, f->ca_dir, o->interval_ms, SELECTION);
    fclose(cf);

    load_emu_reset(emu, n);
    pid_t pid = spawn_coordinator(o->coordinator, conf, log);
    unsigned port = wait_listening(pid, log);
    double t_import = bench_now();
    setup_nodes(f, emu, port, n, o->interval_ms);
    t_import = bench_now() - t_import;

    sleep_s(o->warmup);
    int64_t t0 = realtime_ms();
    uint64_t ans0 = atomic_load(&emu->answered), svc0 = atomic_load(&emu->service_ns);
    double cpu0 = proc_cpu(pid), self0 = self_cpu(), w0 = bench_now();
    sleep_s(o->seconds);
    int64_t t1 = realtime_ms();
    uint64_t ans1 = atomic_load(&emu->answered), svc1 = atomic_load(&emu->service_ns);
    double cpu1 = proc_cpu(pid), self1 = self_cpu(), w1 = bench_now();

    /* A clean stop, but bounded: what the store committed is all this reads. */
    kill(pid, SIGTERM);
    int status = 0;
    double t_stop = bench_now();
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (bench_now() - t_stop > STOP_TIMEOUT_S) {
            fprintf(stderr, "load: the coordinator did not stop within %d s of SIGTERM; killed\n",
                    STOP_TIMEOUT_S);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        sleep_s(0.05);
    }
    pt->stop_s = bench_now() - t_stop;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "load: the coordinator exited abnormally (status %d), log: %s\n", status,
                log);
    load_emu_reset(emu, 0); /* later stray requests are refused; arrivals are kept until reset */
    emu->active = 0;

    double secs = w1 - w0;
    pt->answered_s = (double)(ans1 - ans0) / secs;
    pt->coord_cores = (cpu1 - cpu0) / secs;
    pt->emu_cores = (self1 - self0) / secs;
    pt->emu_service_us = ans1 > ans0 ? (double)(svc1 - svc0) / 1e3 / (double)(ans1 - ans0) : 0;
    analyze(db, emu, n, t0, t1, pt);
    pt->coord_ms_per_att = pt->trusted_s > 0 ? pt->coord_cores * 1e3 / pt->trusted_s : 0;
    fprintf(stderr, "load: %zu nodes imported in %.1f s, coordinator stopped in %.1f s; log %s\n",
            n, t_import, pt->stop_s, log);
}

/* ---- main -------------------------------------------------------------------------------------
 */

static void parse_nodes(struct options *o, const char *s)
{
    char *copy = strdup(s), *save = NULL;
    o->npoints = 0;
    for (char *t = strtok_r(copy, ",", &save); t && o->npoints < MAX_POINTS;
         t = strtok_r(NULL, ",", &save)) {
        long v = strtol(t, NULL, 10);
        if (v < 1 || v > 100000) {
            fprintf(stderr, "load: --nodes takes counts from 1 to 100000\n");
            exit(2);
        }
        o->nodes[o->npoints++] = (size_t)v;
    }
    free(copy);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: load [--coordinator PATH] [--nodes N,N,...] [--interval MS] "
               "[--seconds S] [--warmup S] [--per-round K] [--baseline-seconds S]\n");
}

int main(int argc, char **argv)
{
    static char default_coord[4096];
    struct options o = {
        .interval_ms = 2000, .seconds = 20, .warmup = -1, .baseline_secs = 2, .per_round = 3};
    parse_nodes(&o, "100,1000");
    char *self = strdup(argv[0]);
    snprintf(default_coord, sizeof(default_coord), "%s/../trustcloud-coordinator", dirname(self));
    free(self);
    o.coordinator = default_coord;
    static const struct option lopts[] = {{"coordinator", required_argument, NULL, 'c'},
                                          {"nodes", required_argument, NULL, 'n'},
                                          {"interval", required_argument, NULL, 'i'},
                                          {"seconds", required_argument, NULL, 's'},
                                          {"warmup", required_argument, NULL, 'w'},
                                          {"per-round", required_argument, NULL, 'k'},
                                          {"baseline-seconds", required_argument, NULL, 'b'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "c:n:i:s:w:k:b:h", lopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            o.coordinator = optarg;
            break;
        case 'n':
            parse_nodes(&o, optarg);
            break;
        case 'i':
            o.interval_ms = strtol(optarg, NULL, 10);
            break;
        case 's':
            o.seconds = atof(optarg);
            break;
        case 'w':
            o.warmup = atof(optarg);
            break;
        case 'k':
            o.per_round = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'b':
            o.baseline_secs = atof(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (o.interval_ms < 100 || o.seconds <= 0 || o.per_round < 1 || o.per_round > 1000 ||
        o.baseline_secs <= 0) {
        usage(stderr);
        return 2;
    }
    if (o.warmup < 0) /* every node attested a few times: first rounds, policy, connections */
        o.warmup = 3.0 * (double)o.interval_ms / 1000.0 + 2.0;
    if (access(o.coordinator, X_OK) != 0) {
        fprintf(stderr, "load: %s is not executable (build trustcloud-coordinator)\n",
                o.coordinator);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    struct files f;
    memset(&f, 0, sizeof(f));
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(f.dir, sizeof(f.dir), "%s/tc-load-XXXXXX", tmp);
    if (!mkdtemp(f.dir))
        die("mkdtemp", TC_ERR_IO);
    make_pki(&f);

    size_t maxn = 1;
    for (size_t i = 0; i < o.npoints; i++)
        if (o.nodes[i] > maxn)
            maxn = o.nodes[i];
    /* Entries for every round the longest run can ask for, with margin (imports take time). */
    double rounds = (o.warmup + o.seconds + 120.0) * 1000.0 / (double)o.interval_ms + 16;
    size_t max_entries = INITIAL_ENTRIES + (size_t)(rounds * o.per_round);
    struct tc_tls_config tls = {.cert_file = f.emu_cert, .key_file = f.emu_key, .ca_file = f.ca};
    struct load_emu *emu = NULL;
    double t = bench_now();
    int rc = load_emu_new(&tls, maxn, o.per_round, INITIAL_ENTRIES, max_entries, &emu);
    if (rc)
        die("emulator", rc);
    printf("trustcloud coordinator load bench: interval %ld ms, %u IMA entries per round, "
           "window %.0f s after %.0f s warm-up, %ld cores\n",
           o.interval_ms, o.per_round, o.seconds, o.warmup, sysconf(_SC_NPROCESSORS_ONLN));
    printf("emulator: %zu soft AKs (ECC P-256, LOAD TESTS ONLY) and %zu shared IMA entries in "
           "%.1f s\n\n",
           maxn, max_entries, bench_now() - t);

    struct base_case b;
    base_case_init(&b, emu);
    double core = bench_rate("tc_appraise", o.baseline_secs, appraise_core, &b);
    double full = bench_rate("answer appraisal", o.baseline_secs, appraise_full, &b);
    double emu1 = bench_rate("emulated answer", o.baseline_secs, emulate_one, &b);
    base_case_release(&b);
    printf("%-62s %9.0f /s\n", "in-process, one core: tc_appraise (quote + IMA delta + policy)",
           core);
    printf("%-62s %9.0f /s\n", "in-process, one core: + JSON, base64, IMA parse (engine's work)",
           full);
    printf("%-62s %9.0f /s\n", "in-process, one core: emulator answer (ECDSA sign + JSON)", emu1);
    printf("\n%7s %9s %9s %9s %9s %7s %7s %7s %8s %6s %6s %7s\n", "nodes", "offered", "answered",
           "trusted", "ratio", "p50", "p99", "max", "coordCPU", "coord", "emu", "failed");
    printf("%7s %9s %9s %9s %9s %7s %7s %7s %8s %6s %6s %7s\n", "", "/s", "/s", "/s", "core", "ms",
           "ms", "ms", "ms/att", "cores", "cores", "rounds");
    fflush(stdout);

    struct point pts[MAX_POINTS];
    for (size_t i = 0; i < o.npoints; i++) {
        run_point(&o, &f, emu, o.nodes[i], &pts[i]);
        struct point *p = &pts[i];
        printf("%7zu %9.0f %9.0f %9.0f %9.2f %7.1f %7.1f %7.1f %8.3f %6.2f %6.2f %7zu\n", p->nodes,
               p->offered, p->answered_s, p->trusted_s, p->trusted_s / core, p->p50, p->p99,
               p->pmax, p->coord_ms_per_att, p->coord_cores, p->emu_cores, p->bad);
        if (p->bad)
            printf("        %zu failed rounds (%zu missed challenges); first: %s\n", p->bad,
                   p->missed, p->bad_reason);
        fflush(stdout);
    }
    printf("\noffered: nodes / interval. answered: quotes the emulator signed and sent. trusted: "
           "rounds the\ncoordinator recorded as trusted in the window (its store). ratio: trusted "
           "/ in-process tc_appraise\nrate on one core. p50/p99/max: emulator holds the "
           "challenge -> coordinator's round timestamp\n(taken when the engine takes the answer "
           "up: appraisal and the batched commit are not included).\ncoordCPU: coordinator CPU time "
           "per trusted round; coord/emu cores: CPU used by each process\n(emulator = this "
           "process, ~%.0f us of ECDSA signing and JSON per answer).\n",
           1e6 / emu1);
    load_emu_free(emu);
    curl_global_cleanup();
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f.dir);
    if (getenv("TC_LOAD_KEEP"))
        fprintf(stderr, "load: kept %s\n", f.dir);
    else if (system(cmd) != 0)
        fprintf(stderr, "load: cannot remove %s\n", f.dir);
    return 0;
}
