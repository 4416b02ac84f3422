/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Evidence-core throughput on one core, as ratios to OpenSSL baselines measured in the same run:
 *  - full appraisal of a quote over 17 sha256 PCRs (signature, nonce, selection, PCR digest)
 *    plus a 100-entry IMA delta as a node sends it (binary list parsed, replayed in the sha256
 *    bank, matched against the quoted PCR 10) and a runtime-policy lookup of every new entry;
 *    ECC P-256 and RSA-2048 AKs;
 *  - UEFI event-log parse + replay of every bank, against raw SHA-256 doing the same extends.
 * Usage: verify_bench [SECONDS_PER_MEASUREMENT] [FIXTURES_DIR]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "bench.h"
#include "trustcloud/appraisal.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/softquote.h"

#define IMA_BASE 900
#define IMA_DELTA 100
#define POLICY_PATHS 20000

struct verify_case {
    struct tc_ak *ak;
    uint8_t *attest, *sig;
    size_t attest_len, sig_len;
    struct tc_pcr_set pcrs;
    uint8_t nonce[32];
    struct tc_pcr_selection sel;
    struct tc_ima_log *delta;
    uint8_t *delta_bin; /* the delta as a node sends it (binary_runtime_measurements) */
    size_t delta_bin_len;
    struct tc_ima_replay_state base;
    struct tc_runtime_policy *policy;
};

static void die(const char *what, int rc)
{
    fprintf(stderr, "verify_bench: %s: %s\n", what, tc_strerror(rc));
    exit(1);
}

static int appraise_once(void *arg)
{
    struct verify_case *c = arg;
    struct tc_ima_replay_state st = c->base;
    /* Parsing the delta a node sent is part of verifying it. */
    struct tc_ima_parse_opts opts = {.format = TC_IMA_FMT_BINARY, .first_index = IMA_BASE};
    struct tc_ima_log *delta = NULL;
    int prc = tc_ima_log_parse(c->delta_bin, c->delta_bin_len, &opts, &delta, NULL);
    if (prc)
        return prc;
    struct tc_appraisal_input in = {
        .ak = c->ak,
        .attest = c->attest,
        .attest_len = c->attest_len,
        .sig = c->sig,
        .sig_len = c->sig_len,
        .pcrs = &c->pcrs,
        .expect = {.nonce = c->nonce, .nonce_len = sizeof(c->nonce), .selection = &c->sel},
        .ima = delta,
        .ima_state = &st,
        .runtime_policy = c->policy,
    };
    struct tc_appraisal out;
    int rc = tc_appraise(&in, &out);
    if (rc == 0 && out.ima_new != IMA_DELTA)
        rc = TC_ERR_INTERNAL;
    if (rc)
        tc_reason_print(stderr, &out.why);
    tc_ima_log_free(delta);
    return rc;
}

static int quote_only(void *arg)
{
    struct verify_case *c = arg;
    struct tc_quote_expect ex = {
        .nonce = c->nonce, .nonce_len = sizeof(c->nonce), .selection = &c->sel};
    return tc_quote_verify(c->ak, c->attest, c->attest_len, c->sig, c->sig_len, &c->pcrs, &ex, NULL,
                           NULL);
}

/* A 1,000-entry IMA list: the verifier has seen 900, the node sends 100 new ones. */
static void build_ima(struct verify_case *c)
{
    struct tc_ima_log *full = NULL;
    struct tc_reason why;
    const struct tc_hash_alg *sha256 = tc_hash_by_name("sha256");
    int rc = tc_ima_log_new(tc_hash_by_name("sha1"), &full);
    for (int i = 0; rc == 0 && i < IMA_BASE + IMA_DELTA; i++) {
        char path[64];
        uint8_t digest[32], *td = NULL;
        size_t tlen;
        snprintf(path, sizeof(path), "/usr/lib/x86_64-linux-gnu/lib%05d.so", i);
        tc_hash(sha256, path, strlen(path), digest);
        if ((rc = tc_ima_template_data_ng(sha256, digest, path, NULL, 0, false, &td, &tlen)) == 0)
            rc = tc_ima_log_append(full, 10, "ima-ng", td, tlen, false, &why);
        free(td);
    }
    if (rc)
        die("building the IMA list", rc);
    /* Policy: every path of the list plus unrelated ones, so lookups hit a realistic table. */
    if ((rc = tc_runtime_policy_from_ima_log(full, &c->policy, &why)) != 0)
        die("policy", rc);
    for (int i = 0; i < POLICY_PATHS; i++) {
        char path[64], hex[65];
        uint8_t d[32];
        snprintf(path, sizeof(path), "/usr/share/unrelated/file%06d", i);
        tc_hash(sha256, path, strlen(path), d);
        tc_hex_encode(d, 32, hex);
        if ((rc = tc_runtime_policy_add_digest_text(c->policy, path, hex, 64)) != 0)
            die("policy add", rc);
    }
    /* Replay the first 900 as the saved point, and all 1,000 for the quoted PCR 10. */
    /* A verifier replays only the bank it matches against the quote. */
    struct tc_ima_replay_state all;
    const struct tc_hash_alg *banks[] = {sha256};
    tc_ima_replay_init(&c->base, banks, 1, 0);
    tc_ima_replay_init(&all, banks, 1, 0);
    struct tc_buf text;
    tc_buf_init(&text, 64u << 20);
    struct tc_ima_log *head = NULL;
    struct tc_ima_parse_opts opts = {.format = TC_IMA_FMT_ASCII};
    if ((rc = tc_ima_log_to_ascii(full, 0, IMA_BASE, &text)) != 0 ||
        (rc = tc_ima_log_parse(text.data, text.len, &opts, &head, &why)) != 0 ||
        (rc = tc_ima_replay_advance(&c->base, head, &why)) != 0 ||
        (rc = tc_ima_replay_advance(&all, full, &why)) != 0)
        die("replay", rc);
    tc_buf_release(&text);
    tc_buf_init(&text, 64u << 20);
    opts.first_index = IMA_BASE;
    if ((rc = tc_ima_log_to_ascii(full, IMA_BASE, IMA_BASE + IMA_DELTA, &text)) != 0 ||
        (rc = tc_ima_log_parse(text.data, text.len, &opts, &c->delta, &why)) != 0)
        die("delta", rc);
    tc_buf_release(&text);
    tc_buf_init(&text, 64u << 20);
    if ((rc = tc_ima_log_to_binary(full, IMA_BASE, IMA_BASE + IMA_DELTA, &text)) != 0)
        die("binary delta", rc);
    c->delta_bin = tc_buf_steal(&text, &c->delta_bin_len);
    const struct tc_pcr_bank *b = tc_pcrs_bank_const(&all.pcrs, sha256);
    tc_pcrs_set(&c->pcrs, sha256, 10, b->value[10]);
    tc_ima_log_free(head);
    tc_ima_log_free(full);
}

static void build_case(struct verify_case *c, enum tc_key_alg alg)
{
    memset(c, 0, sizeof(*c));
    tc_pcrs_init(&c->pcrs);
    const struct tc_hash_alg *sha256 = tc_hash_by_name("sha256");
    for (unsigned i = 0; i < 24; i++) {
        uint8_t v[32];
        memset(v, (int)i * 7 + 1, sizeof(v));
        tc_pcrs_set(&c->pcrs, sha256, i, v);
    }
    build_ima(c);
    struct tc_pcr_set sel;
    /* 17 PCRs: 0-16. */
    if (tc_pcrs_parse_selection("sha256:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", &sel) != 0)
        die("selection", TC_ERR_INTERNAL);
    tc_pcr_selection_from_set(&sel, &c->sel);
    memset(c->nonce, 0xa5, sizeof(c->nonce));
    struct tc_softak *sak = NULL;
    size_t plen;
    struct tc_reason why;
    int rc;
    if ((rc = tc_softak_new(alg, &sak)) != 0)
        die("soft AK", rc);
    const uint8_t *pub = tc_softak_public(sak, &plen);
    if ((rc = tc_ak_from_tpm2b_public(pub, plen, &c->ak, &why)) != 0)
        die("AK", rc);
    if ((rc = tc_softquote(sak, &sel, &c->pcrs, c->nonce, sizeof(c->nonce), 1000, 1, 0, &c->attest,
                           &c->attest_len, &c->sig, &c->sig_len)) != 0)
        die("soft quote", rc);
    tc_softak_free(sak);
}

static void release_case(struct verify_case *c)
{
    tc_ak_free(c->ak);
    free(c->attest);
    free(c->sig);
    tc_ima_log_free(c->delta);
    free(c->delta_bin);
    tc_runtime_policy_free(c->policy);
}

struct replay_case {
    const uint8_t *data;
    size_t len;
};

static int replay_once(void *arg)
{
    struct replay_case *c = arg;
    struct tc_evlog *log = NULL;
    struct tc_pcr_set out;
    int rc = tc_evlog_parse(c->data, c->len, &log, NULL);
    if (rc == 0)
        rc = tc_evlog_replay(log, &out, NULL);
    tc_evlog_free(log);
    return rc;
}

/* The same hashing a replay must do, with nothing else: one H(pcr || digest) per event per
 * bank. */
struct raw_extend_case {
    size_t ops[8];
    const struct tc_hash_alg *alg[8];
    size_t nalgs;
};

static int raw_extends(void *arg)
{
    struct raw_extend_case *c = arg;
    uint8_t buf[128] = {0}, out[64];
    for (size_t a = 0; a < c->nalgs; a++) {
        const EVP_MD *md = tc_hash_evp(c->alg[a]);
        for (size_t i = 0; i < c->ops[a]; i++)
            if (EVP_Digest(buf, 2 * c->alg[a]->size, out, NULL, md, NULL) != 1)
                return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    const char *fixtures = argc > 2 ? argv[2] : getenv("TC_FIXTURES");
    if (secs <= 0)
        secs = 2.0;
    printf("trustcloud verify bench (one core, %.1f s per measurement)\n\n", secs);

    double ecdsa = bench_baseline_ecdsa_p256_verify(secs);
    double rsa = bench_baseline_rsa2048_verify(secs);
    printf("%-58s %10.0f /s\n", "baseline: OpenSSL ECDSA P-256 verify", ecdsa);
    printf("%-58s %10.0f /s\n", "baseline: OpenSSL RSA-2048 verify", rsa);

    struct verify_case c;
    const char *names[] = {"ECC P-256", "RSA-2048"};
    enum tc_key_alg algs[] = {TC_KEY_ECC_P256, TC_KEY_RSA_2048};
    double bases[] = {ecdsa, rsa};
    for (int k = 0; k < 2; k++) {
        build_case(&c, algs[k]);
        char label[96];
        double q = bench_rate("quote", secs, quote_only, &c);
        snprintf(label, sizeof(label), "%s quote verify (17 PCRs)", names[k]);
        printf("%-58s %10.0f /s  ratio %.2f\n", label, q, q / bases[k]);
        double full = bench_rate("appraise", secs, appraise_once, &c);
        snprintf(label, sizeof(label), "%s full: quote + parse/replay 100 IMA + policy", names[k]);
        printf("%-58s %10.0f /s  ratio %.2f\n", label, full, full / bases[k]);
        release_case(&c);
    }

    if (fixtures) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/eventlog/event-gce-ubuntu-2104-log.bin", fixtures);
        uint8_t *data = NULL;
        size_t len = 0;
        struct tc_evlog *log = NULL;
        if (tc_file_read(path, 16u << 20, &data, &len) == 0 &&
            tc_evlog_parse(data, len, &log, NULL) == 0) {
            struct raw_extend_case raw = {0};
            for (size_t a = 0; a < log->nalgs && raw.nalgs < 8; a++) {
                if (log->algs[a].hash == NULL)
                    continue;
                raw.alg[raw.nalgs] = log->algs[a].hash;
                for (size_t e = 0; e < log->nevents; e++)
                    if (log->events[e].type != 3 &&
                        tc_evlog_event_digest(&log->events[e], log->algs[a].hash))
                        raw.ops[raw.nalgs]++;
                raw.nalgs++;
            }
            struct replay_case rc = {data, len};
            double r = bench_rate("replay", secs, replay_once, &rc);
            double b = bench_rate("raw", secs, raw_extends, &raw);
            printf("%-58s %10.0f /s  (%zu events, %zu banks, %.1f MB/s)  ratio %.2f\n",
                   "UEFI log parse + replay (GCE Ubuntu, real capture)", r, log->nevents, raw.nalgs,
                   r * (double)len / 1e6, r / b);
            double sha = bench_baseline_sha256(secs, 64);
            printf("%-58s %10.1f MB/s\n", "baseline: OpenSSL SHA-256 on 64-byte blocks", sha / 1e6);
            tc_evlog_free(log);
        }
        free(data);
    }
    printf("\nratios: rate / OpenSSL baseline of the same signature type (goal: full >= 0.60);\n"
           "replay ratio: rate / raw SHA-256 doing the same extends.\n");
    return 0;
}
