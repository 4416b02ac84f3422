/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vTPM benchmark: time to create a vTPM with its EK and EK certificate (tc_vtpm_create with a
 * throw-away CA as the issuer) against `swtpm_setup --tpm2 --createek --create-ek-cert` in the
 * same run, memory per running vTPM (/proc/PID/smaps_rollup), and how many vTPMs run at once.
 *
 * Usage: vtpm [--runs N] [--concurrent N[,N...]] [--reserve-mb M] [--no-swtpm-setup]
 *        vtpm --batch N[,N...] [--threads T] [--rounds R] [--reserve-mb M]
 *   --runs: creations timed (default 20); --concurrent: instance counts to try (default 20; e.g.
 *   100,1000 for the large run), each stopping at the first failure or when MemAvailable falls
 *   below --reserve-mb (default 1024).
 *   --batch: batch attestation ("deep quote") instead: one host swtpm with EK + ECC AK and
 *   max(N) vTPMs, each with an ECC AK under its EK; for each N, R rounds (default 3) of
 *   (a) N vTPM quotes (T threads, default 4), Merkle tree, ONE host quote over the batch
 *   qualifying data, the JSON answer, and the coordinator's parse + verification of everything,
 *   against (b) the same vTPM quotes plus one host quote per VM (nonce = H(nonce || vm id)) and
 *   their verification.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "bench.h"
#include "trustcloud/batch.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/pki.h"
#include "trustcloud/quote.h"
#include "trustcloud/tpm.h"
#include "trustcloud/vtpm.h"

static struct tc_pki_ca *ca;
static char base[256];

static int issue(void *arg, const char *vm_id, const uint8_t *ek_public, size_t ek_public_len,
                 uint8_t **der, size_t *der_len)
{
    EVP_PKEY *pk = NULL;
    char *pem = NULL;
    X509 *cert = NULL;
    unsigned char *buf = NULL;
    int rc, n;
    (void)arg;
    *der = NULL;
    *der_len = 0;
    if ((rc = tc_vtpm_ek_pubkey(ek_public, ek_public_len, &pk)) != 0)
        return rc;
    struct tc_pki_issue_req req = {.cn = vm_id, .usage = TC_PKI_USAGE_CLIENT, .pubkey = pk};
    if ((rc = tc_pki_issue(ca, &req, &pem)) != 0 ||
        (rc = tc_pki_cert_parse((const uint8_t *)pem, strlen(pem), &cert)) != 0)
        goto out;
    if ((n = i2d_X509(cert, &buf)) <= 0 || (*der = malloc((size_t)n)) == NULL) {
        rc = TC_ERR_CRYPTO;
        goto out;
    }
    memcpy(*der, buf, (size_t)n);
    *der_len = (size_t)n;
out:
    OPENSSL_free(buf);
    X509_free(cert);
    free(pem);
    EVP_PKEY_free(pk);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *ms, int n)
{
    if (n == 0)
        return;
    qsort(ms, (size_t)n, sizeof(*ms), cmp_double);
    int p95 = (int)((n - 1) * 0.95 + 0.5);
    printf("%-46s n=%-4d median %7.1f ms  p95 %7.1f ms  min %7.1f ms  max %7.1f ms\n", what, n,
           ms[n / 2], ms[p95], ms[0], ms[n - 1]);
}

static struct tc_vtpm_config config(const char *id, const uint8_t *key, bool provision)
{
    struct tc_vtpm_config c = {
        .base_dir = base, .vm_id = id, .mode = TC_VTPM_TCP, .state_key = key};
    if (provision)
        c.issue_ek_cert = issue;
    return c;
}

static long mem_available_mb(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long kb = -1;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "MemAvailable: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb < 0 ? -1 : kb / 1024;
}

/* Rss, Pss and private (clean + dirty) kB of a process. */
static int smaps(pid_t pid, long *rss, long *pss, long *priv)
{
    char path[64], line[256];
    long v, pc = 0, pd = 0;
    *rss = *pss = *priv = 0;
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "Rss: %ld kB", &v) == 1)
            *rss = v;
        else if (sscanf(line, "Pss: %ld kB", &v) == 1)
            *pss = v;
        else if (sscanf(line, "Private_Clean: %ld kB", &v) == 1)
            pc = v;
        else if (sscanf(line, "Private_Dirty: %ld kB", &v) == 1)
            pd = v;
    }
    fclose(f);
    *priv = pc + pd;
    return 0;
}

static void bench_create(int runs, const uint8_t *key)
{
    double *full = calloc((size_t)runs, sizeof(double));
    double *bare = calloc((size_t)runs, sizeof(double));
    int nf = 0, nb = 0;
    char id[32];
    for (int i = 0; i < runs; i++) {
        struct tc_vtpm *v = NULL;
        snprintf(id, sizeof(id), "bench-%d", i);
        struct tc_vtpm_config c = config(id, key, true);
        double t0 = bench_now();
        int rc = tc_vtpm_create(&c, &v);
        double t1 = bench_now();
        if (rc != 0) {
            fprintf(stderr, "create failed: %s\n", tc_strerror(rc));
            exit(1);
        }
        full[nf++] = (t1 - t0) * 1e3;
        tc_vtpm_delete(v);

        c = config(id, key, false);
        t0 = bench_now();
        rc = tc_vtpm_create(&c, &v);
        t1 = bench_now();
        if (rc != 0) {
            fprintf(stderr, "create failed: %s\n", tc_strerror(rc));
            exit(1);
        }
        bare[nb++] = (t1 - t0) * 1e3;
        tc_vtpm_delete(v);
    }
    report("tc_vtpm_create + ECC EK + cert (encrypted)", full, nf);
    report("tc_vtpm_create, no provisioning", bare, nb);
    free(full);
    free(bare);
}

static void bench_swtpm_setup(int runs)
{
    char cfg[512], path[600], cmd[2048];
    if (system("command -v swtpm_setup >/dev/null && command -v swtpm_localca >/dev/null") != 0) {
        printf("swtpm_setup: not installed, skipped\n");
        return;
    }
    /* A private local CA (never the system-wide /var/lib/swtpm-localca). */
    snprintf(cfg, sizeof(cfg), "%s/setup-ca", base);
    snprintf(path, sizeof(path), "%s/localca", cfg);
    if (mkdir(cfg, 0700) != 0 || mkdir(path, 0700) != 0)
        return;
    snprintf(path, sizeof(path), "%s/swtpm_setup.conf", cfg);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "create_certs_tool = swtpm_localca\ncreate_certs_tool_config = %s/swtpm-localca.conf\n"
            "create_certs_tool_options = %s/swtpm-localca.options\n",
            cfg, cfg);
    fclose(f);
    snprintf(path, sizeof(path), "%s/swtpm-localca.conf", cfg);
    f = fopen(path, "w");
    fprintf(f,
            "statedir = %s/localca\nsigningkey = %s/localca/signkey.pem\n"
            "issuercert = %s/localca/issuercert.pem\ncertserial = %s/localca/certserial\n",
            cfg, cfg, cfg, cfg);
    fclose(f);
    snprintf(path, sizeof(path), "%s/swtpm-localca.options", cfg);
    f = fopen(path, "w");
    fprintf(f,
            "--platform-manufacturer trustcloud\n--platform-version 1.0\n--platform-model bench\n");
    fclose(f);
    double *ms = calloc((size_t)runs, sizeof(double));
    int n = 0;
    for (int i = 0; i < runs; i++) {
        snprintf(cmd, sizeof(cmd),
                 "mkdir -p '%s/setup-%d' && swtpm_setup --tpm2 --tpmstate '%s/setup-%d' --config "
                 "'%s/swtpm_setup.conf' --createek --create-ek-cert --overwrite >/dev/null 2>&1",
                 base, i, base, i, cfg);
        double t0 = bench_now();
        int rc = system(cmd);
        double t1 = bench_now();
        if (rc != 0) {
            printf("swtpm_setup failed (exit %d), skipped\n", rc);
            break;
        }
        ms[n++] = (t1 - t0) * 1e3;
    }
    report("swtpm_setup --createek --create-ek-cert (RSA)", ms, n);
    free(ms);
}

/* Starts up to target provisioned vTPMs; stops at the first failure or the memory reserve. */
static void bench_concurrent(int target, long reserve_mb, const uint8_t *key, bool memory_report)
{
    struct tc_vtpm **v = calloc((size_t)target, sizeof(*v));
    char id[32], why[128] = "all started";
    int n = 0;
    long mem0 = mem_available_mb();
    double t0 = bench_now();
    for (; n < target; n++) {
        long avail = mem_available_mb();
        if (avail >= 0 && avail < reserve_mb) {
            snprintf(why, sizeof(why), "MemAvailable %ld MB < reserve %ld MB", avail, reserve_mb);
            break;
        }
        snprintf(id, sizeof(id), "conc-%d", n);
        struct tc_vtpm_config c = config(id, key, true);
        int rc = tc_vtpm_create(&c, &v[n]);
        if (rc != 0) {
            snprintf(why, sizeof(why), "creation %d failed: %s", n + 1, tc_strerror(rc));
            break;
        }
    }
    double t1 = bench_now();
    long mem1 = mem_available_mb();
    /* Every instance still answers: read the EK certificate back from the last one. */
    int alive = 0;
    for (int i = 0; i < n; i++)
        alive += tc_vtpm_running(v[i]);
    if (n > 0) {
        struct tc_tpm *tpm = NULL;
        uint8_t *der = NULL;
        size_t len = 0;
        if (tc_tpm_open(tc_vtpm_tcti(v[n - 1]), &tpm) != 0 ||
            tc_tpm_ek_cert_read(tpm, TC_KEY_ECC_P256, &der, &len) != 0)
            snprintf(why, sizeof(why), "the last instance does not answer");
        free(der);
        tc_tpm_close(tpm);
    }
    printf("concurrent target %-5d: %d running (%d alive at the end), %.1f s to start them (%.1f "
           "ms each); MemAvailable %ld -> %ld MB (%.2f MB per vTPM); %s\n",
           target, n, alive, t1 - t0, n ? (t1 - t0) * 1e3 / n : 0.0, mem0, mem1,
           n ? (double)(mem0 - mem1) / n : 0.0, why);
    if (memory_report && n > 0) {
        long rss, pss, priv, srss = 0, spss = 0, spriv = 0;
        int m = 0;
        for (int i = 0; i < n; i++)
            if (smaps(tc_vtpm_pid(v[i]), &rss, &pss, &priv) == 0) {
                srss += rss;
                spss += pss;
                spriv += priv;
                m++;
            }
        if (m > 0)
            printf("memory per running vTPM (mean of %d): RSS %ld kB, PSS %ld kB, private %ld kB\n",
                   m, srss / m, spss / m, spriv / m);
    }
    double t2 = bench_now();
    for (int i = 0; i < n; i++)
        tc_vtpm_delete(v[i]);
    printf("deleted %d vTPMs in %.2f s; left running: ", n, bench_now() - t2);
    struct tc_vtpm_entry *list = NULL;
    size_t left = 0;
    tc_vtpm_list(base, &list, &left);
    printf("%zu\n", left);
    free(list);
    free(v);
}

/* ---- batch attestation ("deep quote") ------------------------------------------------------ */

#define BATCH_SEL "sha256:0,1,2,3,4,5,6,7,8,9,10"
#define BATCH_NONCE 32

/* A TPM the benchmark quotes with (the host or one vTPM) and what the coordinator knows of it. */
struct att_tpm {
    char id[32];
    struct tc_vtpm *v;
    struct tc_tpm *tpm; /* held open: one connection per swtpm */
    struct tc_tpm_key ek, ak;
    struct tc_ak *akpub; /* the verifier's copy of the AK */
    uint8_t qn[TC_QUOTE_MAX_NAME];
    size_t qn_len;
    struct tc_tpm_quote q; /* last quote */
};

static struct tc_pcr_set batch_sel;
static struct tc_pcr_selection batch_selection;

static int att_setup(struct att_tpm *t, const uint8_t *unused)
{
    char path[400];
    int rc;
    (void)unused;
    snprintf(path, sizeof(path), "%s/ak.ctx", tc_vtpm_dir(t->v));
    if ((rc = tc_tpm_open(tc_vtpm_tcti(t->v), &t->tpm)) != 0 ||
        (rc = tc_tpm_ek_create(t->tpm, TC_KEY_ECC_P256, &t->ek)) != 0 ||
        (rc = tc_tpm_ak_create(t->tpm, &t->ek, TC_KEY_ECC_P256, TC_SIG_ECDSA, path, &t->ak)) != 0 ||
        (rc = tc_ak_from_tpm2b_public(t->ak.pub, t->ak.pub_len, &t->akpub, NULL)) != 0)
        return rc;
    return tc_ak_qualified_name(t->akpub, TC_TPM_RH_ENDORSEMENT, t->ek.pub, t->ek.pub_len, t->qn,
                                &t->qn_len);
}

static void att_teardown(struct att_tpm *t)
{
    tc_tpm_quote_release(&t->q);
    if (t->tpm) {
        tc_tpm_key_release(t->tpm, &t->ak);
        tc_tpm_key_release(t->tpm, &t->ek);
    }
    tc_tpm_close(t->tpm);
    tc_ak_free(t->akpub);
    if (t->v)
        tc_vtpm_delete(t->v);
    memset(t, 0, sizeof(*t));
}

static int att_quote(struct att_tpm *t, const uint8_t *nonce)
{
    tc_tpm_quote_release(&t->q);
    return tc_tpm_quote(t->tpm, &t->ak, &batch_sel, nonce, BATCH_NONCE, &t->q);
}

/* Runs fn over tpms[0..n) from `threads` threads; each vTPM is its own swtpm process with its own
 * connection, so quotes to distinct vTPMs proceed in parallel. Returns the first failure. */
struct att_work {
    struct att_tpm *tpms;
    size_t n;
    size_t next;
    const uint8_t *nonce;
    int (*fn)(struct att_tpm *, const uint8_t *);
    int rc;
    size_t failed_at;
};

static void *att_worker(void *arg)
{
    struct att_work *w = arg;
    for (;;) {
        size_t i = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED);
        if (i >= w->n)
            break;
        int rc = w->fn(&w->tpms[i], w->nonce);
        if (rc != 0) {
            int zero = 0;
            if (__atomic_compare_exchange_n(&w->rc, &zero, rc, false, __ATOMIC_SEQ_CST,
                                            __ATOMIC_SEQ_CST))
                w->failed_at = i;
        }
    }
    return NULL;
}

static int att_run(struct att_tpm *tpms, size_t n, int threads,
                   int (*fn)(struct att_tpm *, const uint8_t *), const uint8_t *nonce)
{
    struct att_work w = {.tpms = tpms, .n = n, .nonce = nonce, .fn = fn};
    pthread_t th[64];
    int started = 0;
    for (; started < threads - 1 && started < 64; started++)
        if (pthread_create(&th[started], NULL, att_worker, &w) != 0)
            break;
    att_worker(&w);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (w.rc != 0)
        fprintf(stderr, "%s: %s\n", tpms[w.failed_at].id, tc_strerror(w.rc));
    return w.rc;
}

static json_t *b64_json(const uint8_t *d, size_t n)
{
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    json_t *j;
    if (s == NULL)
        return NULL;
    EVP_EncodeBlock((unsigned char *)s, d, (int)n);
    j = json_string(s);
    free(s);
    return j;
}

/* The host quote fields of the answer, decoded (the batch parser handles the VM entries). */
static int b64_get(const json_t *o, const char *key, uint8_t *out, size_t cap, size_t *len)
{
    const json_t *v = json_object_get(o, key);
    size_t sl = json_string_length(v), pad = 0;
    uint8_t tmp[4096];
    *len = 0;
    if (!json_is_string(v) || sl == 0 || sl % 4 || sl / 4 * 3 > sizeof(tmp))
        return TC_ERR_FORMAT;
    const char *s = json_string_value(v);
    pad = (s[sl - 1] == '=') + (s[sl - 2] == '=');
    if (sl / 4 * 3 - pad > cap ||
        EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)sl) != (int)(sl / 4 * 3))
        return TC_ERR_FORMAT;
    *len = sl / 4 * 3 - pad;
    memcpy(out, tmp, *len);
    return 0;
}

static int verify_quote(const struct att_tpm *t, const uint8_t *attest, size_t alen,
                        const uint8_t *sig, size_t slen, const struct tc_pcr_set *pcrs,
                        const uint8_t *nonce)
{
    struct tc_reason why;
    struct tc_quote_expect ex = {.nonce = nonce,
                                 .nonce_len = BATCH_NONCE,
                                 .selection = &batch_selection,
                                 .signer_qn = t->qn,
                                 .signer_qn_len = t->qn_len,
                                 .counters_obfuscated = true};
    int rc = tc_quote_verify(t->akpub, attest, alen, sig, slen, pcrs, &ex, NULL, &why);
    if (rc != 0) {
        fprintf(stderr, "%s: ", t->id);
        tc_reason_print(stderr, &why);
    }
    return rc;
}

/* Phases: 0 vTPM quotes, 1 agent (tree, host quote, answer), 2 coordinator, 3 total. */
static int batch_round(struct att_tpm *host, struct att_tpm *vms, size_t n, int threads,
                       double ph[4], size_t *answer_len)
{
    uint8_t nonce[BATCH_NONCE], root[32], qd[32];
    uint8_t(*leaves)[32] = calloc(n, 32);
    struct tc_batch_tree *tree = NULL;
    struct tc_batch *b = NULL;
    json_t *ans = NULL, *arr = NULL, *jb = NULL, *got = NULL;
    char *text = NULL;
    int rc = TC_ERR_ALLOC;

    if (leaves == NULL || RAND_bytes(nonce, sizeof(nonce)) != 1)
        goto out;
    double t0 = bench_now();
    if ((rc = att_run(vms, n, threads, att_quote, nonce)) != 0)
        goto out;
    double t1 = bench_now();
    /* Agent: leaves in answer order, the tree, one host quote, the JSON answer. */
    for (size_t i = 0; i < n; i++)
        if ((rc = tc_batch_leaf(vms[i].id, vms[i].q.attest, vms[i].q.attest_len, vms[i].q.sig,
                                vms[i].q.sig_len, leaves[i])) != 0)
            goto out;
    if ((rc = tc_batch_tree_build((const uint8_t(*)[32])leaves, n, &tree)) != 0 ||
        (rc = tc_batch_tree_root(tree, root)) != 0 ||
        (rc = tc_batch_qualifying_data(nonce, sizeof(nonce), root, qd)) != 0)
        goto out;
    tc_tpm_quote_release(&host->q);
    if ((rc = tc_tpm_quote(host->tpm, &host->ak, &batch_sel, qd, sizeof(qd), &host->q)) != 0)
        goto out;
    rc = TC_ERR_ALLOC;
    if ((arr = json_array()) == NULL || tc_batch_tree_to_json(tree, &jb) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        json_t *proof = NULL;
        if (tc_batch_tree_proof_json(tree, i, &proof) != 0)
            goto out;
        json_t *e =
            json_pack("{s:s, s:I, s:o, s:o, s:o, s:o}", "id", vms[i].id, "index", (json_int_t)i,
                      "attest", b64_json(vms[i].q.attest, vms[i].q.attest_len), "signature",
                      b64_json(vms[i].q.sig, vms[i].q.sig_len), "pcrs",
                      tc_pcrs_to_json(&vms[i].q.pcrs), "proof", proof);
        if (e == NULL || json_array_append_new(arr, e) != 0)
            goto out;
    }
    ans = json_pack("{s:o, s:o, s:o, s:o, s:o}", "attest",
                    b64_json(host->q.attest, host->q.attest_len), "signature",
                    b64_json(host->q.sig, host->q.sig_len), "pcrs", tc_pcrs_to_json(&host->q.pcrs),
                    "batch", jb, "vms", arr);
    jb = arr = NULL;
    if (ans == NULL || (text = json_dumps(ans, JSON_COMPACT)) == NULL)
        goto out;
    *answer_len = strlen(text);
    double t2 = bench_now();

    /* Coordinator: parse, host quote against the root, proofs, every VM quote. */
    struct tc_reason why;
    struct tc_pcr_set pcrs;
    uint8_t attest[TC_QUOTE_MAX_ATTEST], sig[TC_QUOTE_MAX_SIG];
    size_t alen, slen;
    if ((got = json_loads(text, 0, NULL)) == NULL) {
        rc = TC_ERR_FORMAT;
        goto out;
    }
    if ((rc = tc_batch_parse(json_object_get(got, "batch"), json_object_get(got, "vms"), &b,
                             &why)) != 0) {
        tc_reason_print(stderr, &why);
        goto out;
    }
    if ((rc = tc_batch_qualifying_data(nonce, sizeof(nonce), b->root, qd)) != 0 ||
        (rc = b64_get(got, "attest", attest, sizeof(attest), &alen)) != 0 ||
        (rc = b64_get(got, "signature", sig, sizeof(sig), &slen)) != 0 ||
        (rc = tc_pcrs_from_json(json_object_get(got, "pcrs"), &pcrs)) != 0 ||
        (rc = verify_quote(host, attest, alen, sig, slen, &pcrs, qd)) != 0)
        goto out;
    for (size_t k = 0; k < b->nvms; k++) {
        const struct tc_batch_vm *vm = &b->vms[k];
        unsigned idx;
        /* The coordinator's VM table; here ids are "vm-<position>". */
        if (!vm->quoted || sscanf(vm->id, "vm-%u", &idx) != 1 || idx >= n) {
            rc = TC_ERR_NOT_FOUND;
            goto out;
        }
        if ((rc = tc_pcrs_from_json(vm->pcrs, &pcrs)) != 0 ||
            (rc = verify_quote(&vms[idx], vm->attest, vm->attest_len, vm->signature, vm->sig_len,
                               &pcrs, nonce)) != 0)
            goto out;
    }
    double t3 = bench_now();
    ph[0] = (t1 - t0) * 1e3;
    ph[1] = (t2 - t1) * 1e3;
    ph[2] = (t3 - t2) * 1e3;
    ph[3] = (t3 - t0) * 1e3;
    rc = 0;
out:
    tc_batch_free(b);
    json_decref(got);
    json_decref(ans);
    json_decref(arr);
    json_decref(jb);
    free(text);
    tc_batch_tree_free(tree);
    free(leaves);
    return rc;
}

/* Baseline: the same vTPM quotes, then one host quote per VM with nonce H(nonce || vm id). */
static int baseline_round(struct att_tpm *host, struct att_tpm *vms, size_t n, int threads,
                          double ph[4])
{
    uint8_t nonce[BATCH_NONCE];
    uint8_t(*vn)[BATCH_NONCE] = calloc(n, BATCH_NONCE);
    struct tc_tpm_quote *hq = calloc(n, sizeof(*hq));
    int rc = TC_ERR_ALLOC;

    if (vn == NULL || hq == NULL || RAND_bytes(nonce, sizeof(nonce)) != 1)
        goto out;
    double t0 = bench_now();
    if ((rc = att_run(vms, n, threads, att_quote, nonce)) != 0)
        goto out;
    double t1 = bench_now();
    for (size_t i = 0; i < n; i++) {
        uint8_t in[BATCH_NONCE + sizeof(vms[i].id)];
        size_t idl = strlen(vms[i].id);
        memcpy(in, nonce, BATCH_NONCE);
        memcpy(in + BATCH_NONCE, vms[i].id, idl);
        SHA256(in, BATCH_NONCE + idl, vn[i]);
        if ((rc = tc_tpm_quote(host->tpm, &host->ak, &batch_sel, vn[i], BATCH_NONCE, &hq[i])) != 0)
            goto out;
    }
    double t2 = bench_now();
    for (size_t i = 0; i < n; i++)
        if ((rc = verify_quote(host, hq[i].attest, hq[i].attest_len, hq[i].sig, hq[i].sig_len,
                               &hq[i].pcrs, vn[i])) != 0 ||
            (rc = verify_quote(&vms[i], vms[i].q.attest, vms[i].q.attest_len, vms[i].q.sig,
                               vms[i].q.sig_len, &vms[i].q.pcrs, nonce)) != 0)
            goto out;
    double t3 = bench_now();
    ph[0] = (t1 - t0) * 1e3;
    ph[1] = (t2 - t1) * 1e3;
    ph[2] = (t3 - t2) * 1e3;
    ph[3] = (t3 - t0) * 1e3;
    rc = 0;
out:
    for (size_t i = 0; hq && i < n; i++)
        tc_tpm_quote_release(&hq[i]);
    free(hq);
    free(vn);
    return rc;
}

static double median_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

static int bench_batch(const char *sizes, int threads, int rounds, long reserve_mb,
                       const uint8_t *key)
{
    int max = 0, rc = 1;
    char *list = strdup(sizes), *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (atoi(t) > max)
            max = atoi(t);
    free(list);
    if (max < 1 || max > TC_BATCH_MAX_VMS) {
        fprintf(stderr, "--batch sizes must be 1..%d\n", TC_BATCH_MAX_VMS);
        return 2;
    }
    struct att_tpm host = {.id = "host"};
    struct att_tpm *vms = calloc((size_t)max, sizeof(*vms));
    int made = 0;
    char why[128] = "all started";
    if (vms == NULL || tc_pcrs_parse_selection(BATCH_SEL, &batch_sel) != 0)
        goto out;
    tc_pcr_selection_from_set(&batch_sel, &batch_selection);

    /* The host TPM: one more swtpm, started the way the vTPMs are. */
    struct tc_vtpm_config hc = config("host", key, false);
    if (tc_vtpm_create(&hc, &host.v) != 0 || att_setup(&host, NULL) != 0) {
        fprintf(stderr, "host TPM setup failed\n");
        goto out;
    }
    double t0 = bench_now();
    for (; made < max; made++) {
        long avail = mem_available_mb();
        if (avail >= 0 && avail < reserve_mb) {
            snprintf(why, sizeof(why), "MemAvailable %ld MB < reserve %ld MB", avail, reserve_mb);
            break;
        }
        snprintf(vms[made].id, sizeof(vms[made].id), "vm-%d", made);
        struct tc_vtpm_config c = config(vms[made].id, key, false);
        if (tc_vtpm_create(&c, &vms[made].v) != 0) {
            snprintf(why, sizeof(why), "creation %d failed", made + 1);
            break;
        }
    }
    double t1 = bench_now();
    if (made == 0 || att_run(vms, (size_t)made, threads, att_setup, NULL) != 0) {
        fprintf(stderr, "vTPM setup failed\n");
        goto out;
    }
    double t2 = bench_now();
    printf("batch setup: host swtpm + %d vTPMs (%s) in %.1f s, EK + ECC AK in each in %.1f s "
           "(%d threads)\n",
           made, why, t1 - t0, t2 - t1, threads);

    list = strdup(sizes);
    save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int n = atoi(t);
        if (n < 1)
            continue;
        if (n > made) {
            printf("batch N=%d: only %d vTPMs running, skipped\n", n, made);
            continue;
        }
        double a[4][32], bl[4][32], ph[4] = {0};
        size_t alen = 0;
        int r;
        for (r = 0; r < rounds && r < 32; r++) {
            if (batch_round(&host, vms, (size_t)n, threads, ph, &alen) != 0) {
                fprintf(stderr, "batch round failed at N=%d\n", n);
                free(list);
                goto out;
            }
            for (int p = 0; p < 4; p++)
                a[p][r] = ph[p];
            if (baseline_round(&host, vms, (size_t)n, threads, ph) != 0) {
                fprintf(stderr, "baseline round failed at N=%d\n", n);
                free(list);
                goto out;
            }
            for (int p = 0; p < 4; p++)
                bl[p][r] = ph[p];
        }
        double ma[4], mb[4];
        for (int p = 0; p < 4; p++) {
            ma[p] = median_of(a[p], r);
            mb[p] = median_of(bl[p], r);
        }
        printf("batch    N=%-5d host TPM quotes %-5d vTPM quotes %8.1f ms | tree + host quote + "
               "answer (%zu kB) %7.1f ms | coordinator parse + verify %7.1f ms | total %8.1f ms "
               "(best %.1f)\n",
               n, 1, ma[0], alen / 1024, ma[1], ma[2], ma[3], a[3][0]);
        printf("per-VM   N=%-5d host TPM quotes %-5d vTPM quotes %8.1f ms | host quotes %8.1f ms "
               "| verify %8.1f ms | total %8.1f ms (best %.1f)\n",
               n, n, mb[0], mb[1], mb[2], mb[3], bl[3][0]);
        printf("ratio    N=%-5d per-VM / batch end-to-end %.2fx, host TPM quotes %d -> 1 "
               "(median of %d rounds, %d threads)\n",
               n, mb[3] / ma[3], n, r, threads);
        fflush(stdout);
    }
    free(list);
    rc = 0;
out:
    for (int i = 0; vms && i < max; i++)
        if (vms[i].v)
            att_teardown(&vms[i]);
    if (host.v)
        att_teardown(&host);
    free(vms);
    struct tc_vtpm_entry *left = NULL;
    size_t nleft = 0;
    tc_vtpm_list(base, &left, &nleft);
    printf("batch: deleted %d vTPMs and the host TPM; left running: %zu\n", made, nleft);
    free(left);
    return rc;
}

int main(int argc, char **argv)
{
    int runs = 20;
    const char *conc = "20";
    long reserve_mb = 1024;
    bool setup = true;
    const char *batch = NULL;
    int threads = 4, rounds = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--concurrent") == 0 && i + 1 < argc)
            conc = argv[++i];
        else if (strcmp(argv[i], "--reserve-mb") == 0 && i + 1 < argc)
            reserve_mb = atol(argv[++i]);
        else if (strcmp(argv[i], "--no-swtpm-setup") == 0)
            setup = false;
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            batch = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: %s [--runs N] [--concurrent N[,N...]] [--reserve-mb M] "
                    "[--no-swtpm-setup]\n"
                    "       %s --batch N[,N...] [--threads T] [--rounds R] [--reserve-mb M]\n",
                    argv[0], argv[0]);
            return 2;
        }
    }
    if (runs < 1 || runs > 10000) {
        fprintf(stderr, "--runs must be 1..10000\n");
        return 2;
    }
    if (threads < 1 || threads > 64 || rounds < 1 || rounds > 32) {
        fprintf(stderr, "--threads must be 1..64, --rounds 1..32\n");
        return 2;
    }
    if (system("command -v swtpm >/dev/null") != 0) {
        printf("vtpm: swtpm not installed, skipped\n");
        return 0;
    }
    char cadir[300];
    uint8_t key[TC_VTPM_KEY_LEN];
    snprintf(base, sizeof(base), "%s/vtpm-bench.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(base) == NULL || RAND_bytes(key, sizeof(key)) != 1)
        return 1;
    snprintf(cadir, sizeof(cadir), "%s/ca", base);
    if (tc_pki_ca_init(cadir, "vtpm bench CA", 1, &ca) != 0)
        return 1;

    if (batch != NULL) {
        int brc = bench_batch(batch, threads, rounds, reserve_mb, key);
        tc_pki_ca_free(ca);
        char rm[400];
        snprintf(rm, sizeof(rm), "rm -rf '%s'", base);
        return system(rm) == 0 ? brc : 1;
    }
    bench_create(runs, key);
    if (setup)
        bench_swtpm_setup(runs < 10 ? runs : 10);
    char *list = strdup(conc), *save = NULL;
    bool first = true;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int target = atoi(t);
        if (target > 0 && target <= 100000) {
            bench_concurrent(target, reserve_mb, key, first);
            first = false;
        }
    }
    free(list);
    tc_pki_ca_free(ca);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : 1;
}
