/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vTPM benchmark: time to create a vTPM with its EK and EK certificate (tc_vtpm_create with a
 * throw-away CA as the issuer) against `swtpm_setup --tpm2 --createek --create-ek-cert` in the
 * same run, memory per running vTPM (/proc/PID/smaps_rollup), and how many vTPMs run at once.
 *
 * Usage: vtpm [--runs N] [--concurrent N[,N...]] [--reserve-mb M] [--no-swtpm-setup]
 *   --runs: creations timed (default 20); --concurrent: instance counts to try (default 20; e.g.
 *   100,1000 for the large run), each stopping at the first failure or when MemAvailable falls
 *   below --reserve-mb (default 1024).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/x509.h>

#include "bench.h"
#include "trustcloud/error.h"
#include "trustcloud/pki.h"
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

int main(int argc, char **argv)
{
    int runs = 20;
    const char *conc = "20";
    long reserve_mb = 1024;
    bool setup = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--concurrent") == 0 && i + 1 < argc)
            conc = argv[++i];
        else if (strcmp(argv[i], "--reserve-mb") == 0 && i + 1 < argc)
            reserve_mb = atol(argv[++i]);
        else if (strcmp(argv[i], "--no-swtpm-setup") == 0)
            setup = false;
        else {
            fprintf(stderr,
                    "usage: %s [--runs N] [--concurrent N[,N...]] [--reserve-mb M] "
                    "[--no-swtpm-setup]\n",
                    argv[0]);
            return 2;
        }
    }
    if (runs < 1 || runs > 10000) {
        fprintf(stderr, "--runs must be 1..10000\n");
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
