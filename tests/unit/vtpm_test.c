/* SPDX-License-Identifier: Apache-2.0 */
/*
 * src/vtpm against real swtpm processes: creation with EK and certificate (issued by a
 * throw-away CA), concurrency, stop/start, state encryption, deletion, listing, QEMU mode, and
 * that no process is ever left behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "trustcloud/error.h"
#include "trustcloud/pki.h"
#include "trustcloud/tpm.h"
#include "trustcloud/tpm_nv.h"
#include "trustcloud/vtpm.h"

static char base[256];
static char cadir[300];
static struct tc_pki_ca *ca;
static uint8_t key_a[TC_VTPM_KEY_LEN];

/* The throw-away CA issues the EK certificate for the EK public key it is handed. */
static int issue(void *arg, const char *vm_id, const uint8_t *ek_public, size_t ek_public_len,
                 uint8_t **der, size_t *der_len)
{
    EVP_PKEY *pk = NULL;
    char *pem = NULL;
    X509 *cert = NULL;
    unsigned char *buf = NULL;
    int rc;
    (void)arg;
    *der = NULL;
    *der_len = 0;
    if ((rc = tc_vtpm_ek_pubkey(ek_public, ek_public_len, &pk)) != 0)
        return rc;
    struct tc_pki_issue_req req = {.cn = vm_id, .usage = TC_PKI_USAGE_CLIENT, .pubkey = pk};
    if ((rc = tc_pki_issue(ca, &req, &pem)) == 0 &&
        (rc = tc_pki_cert_parse((const uint8_t *)pem, strlen(pem), &cert)) == 0) {
        int n = i2d_X509(cert, &buf);
        if (n <= 0) {
            rc = TC_ERR_CRYPTO;
        } else {
            *der = malloc((size_t)n);
            memcpy(*der, buf, (size_t)n);
            *der_len = (size_t)n;
        }
    }
    OPENSSL_free(buf);
    X509_free(cert);
    free(pem);
    EVP_PKEY_free(pk);
    return rc;
}

static struct tc_vtpm_config config(const char *id, enum tc_vtpm_mode mode, const uint8_t *key,
                                    bool provision)
{
    struct tc_vtpm_config c = {.base_dir = base, .vm_id = id, .mode = mode, .state_key = key};
    if (provision)
        c.issue_ek_cert = issue;
    return c;
}

static bool pid_alive(pid_t pid)
{
    if (pid <= 0 || kill(pid, 0) != 0)
        return false;
    /* A zombie is as good as gone. */
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' && p[2] != 'Z';
}

/* Reads the EK certificate and the persistent EK back through a fresh TPM connection and
 * checks that the certificate's key is that EK. */
static void check_provisioned(struct tc_vtpm *v, uint8_t **der_out, size_t *len_out,
                              uint8_t *pub_out, size_t *pub_len_out)
{
    struct tc_tpm *tpm = NULL;
    struct tc_tpm_key ek;
    uint8_t *der = NULL;
    size_t len = 0;
    EVP_PKEY *ekpk = NULL;
    memset(&ek, 0, sizeof(ek));
    assert_int_equal(tc_tpm_open(tc_vtpm_tcti(v), &tpm), 0);
    assert_int_equal(tc_tpm_ek_cert_read(tpm, TC_KEY_ECC_P256, &der, &len), 0);
    assert_int_equal(tc_tpm_key_from_persistent(tpm, TC_TPM_EK_HANDLE_ECC, &ek), 0);
    assert_int_equal(tc_vtpm_ek_pubkey(ek.pub, ek.pub_len, &ekpk), 0);
    const uint8_t *p = der;
    X509 *cert = d2i_X509(NULL, &p, (long)len);
    assert_non_null(cert);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(cert), ekpk), 1);
    /* The EK template is deterministic: a fresh EK equals the persistent one. */
    struct tc_tpm_key ek2;
    memset(&ek2, 0, sizeof(ek2));
    assert_int_equal(tc_tpm_ek_create(tpm, TC_KEY_ECC_P256, &ek2), 0);
    assert_int_equal(ek2.pub_len, ek.pub_len);
    assert_memory_equal(ek2.pub, ek.pub, ek.pub_len);
    if (pub_out != NULL) {
        memcpy(pub_out, ek.pub, ek.pub_len);
        *pub_len_out = ek.pub_len;
    }
    tc_tpm_key_release(tpm, &ek2);
    tc_tpm_key_release(tpm, &ek);
    tc_tpm_close(tpm);
    X509_free(cert);
    EVP_PKEY_free(ekpk);
    if (der_out != NULL) {
        *der_out = der;
        *len_out = len;
    } else {
        free(der);
    }
}

static void test_ids(void **state)
{
    (void)state;
    static const char *bad[] = {"",         ".",     "..", "../x", "a/b",  "a b", "a\nb",
                                "x;rm -rf", "$(id)", "é",  "a\\b", "-\t-", "a:b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(tc_vtpm_id_valid(bad[i]));
        struct tc_vtpm_config c = config(bad[i], TC_VTPM_TCP, NULL, false);
        struct tc_vtpm *v = (struct tc_vtpm *)1;
        assert_int_equal(tc_vtpm_create(&c, &v), TC_ERR_INVALID_ARG);
        assert_null(v);
    }
    char longid[66];
    memset(longid, 'a', 65);
    longid[65] = '\0';
    assert_false(tc_vtpm_id_valid(longid));
    longid[64] = '\0';
    assert_true(tc_vtpm_id_valid(longid));
    assert_true(tc_vtpm_id_valid("vm-01.prod_A"));
    assert_false(tc_vtpm_id_valid(NULL));
    struct tc_vtpm_config c = config("ok", 7, NULL, false);
    struct tc_vtpm *v = NULL;
    assert_int_equal(tc_vtpm_create(&c, &v), TC_ERR_INVALID_ARG);
    /* Nothing was created by the refused calls. */
    struct tc_vtpm_entry *list = NULL;
    size_t n = 9;
    assert_int_equal(tc_vtpm_list(base, &list, &n), 0);
    assert_int_equal(n, 0);
    tc_vtpm_free(NULL);
}

struct job {
    char id[16];
    struct tc_vtpm *v;
    int rc;
};

static void *create_job(void *arg)
{
    struct job *j = arg;
    struct tc_vtpm_config c = config(j->id, TC_VTPM_TCP, key_a, true);
    j->rc = tc_vtpm_create(&c, &j->v);
    return NULL;
}

static void test_concurrent_lifecycle(void **state)
{
    (void)state;
    struct job jobs[3];
    pthread_t th[3];
    pid_t pids[3];
    uint8_t pubs[3][TC_TPM_MAX_PUBLIC];
    size_t publen[3];
    for (int i = 0; i < 3; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        snprintf(jobs[i].id, sizeof(jobs[i].id), "vm%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, create_job, &jobs[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(jobs[i].rc, 0);
        assert_true(tc_vtpm_running(jobs[i].v));
        pids[i] = tc_vtpm_pid(jobs[i].v);
        assert_true(pid_alive(pids[i]));
        struct stat st;
        assert_int_equal(stat(tc_vtpm_dir(jobs[i].v), &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
        check_provisioned(jobs[i].v, NULL, NULL, pubs[i], &publen[i]);
        const uint8_t *p;
        size_t l;
        assert_int_equal(tc_vtpm_ek_public(jobs[i].v, &p, &l), 0);
        assert_int_equal(l, publen[i]);
        assert_memory_equal(p, pubs[i], l);
    }
    /* Distinct seeds, distinct EKs. */
    for (int i = 0; i < 3; i++)
        for (int k = i + 1; k < 3; k++)
            assert_false(publen[i] == publen[k] && memcmp(pubs[i], pubs[k], publen[i]) == 0);

    struct tc_vtpm_entry *list = NULL;
    size_t n = 0;
    assert_int_equal(tc_vtpm_list(base, &list, &n), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(list[i].id, jobs[i].id);
        assert_int_equal(list[i].pid, pids[i]);
    }
    free(list);

    /* A second handle (as another process would have) sees it running. */
    struct tc_vtpm_config c1 = config("vm1", TC_VTPM_TCP, key_a, false);
    struct tc_vtpm *other = NULL;
    assert_int_equal(tc_vtpm_open(&c1, &other), 0);
    assert_int_equal(tc_vtpm_pid(other), pids[1]);
    assert_string_equal(tc_vtpm_tcti(other), tc_vtpm_tcti(jobs[1].v));
    assert_int_equal(tc_vtpm_start(other), TC_ERR_INVALID_ARG); /* already running */
    tc_vtpm_free(other);

    /* The encrypted state does not hold the certificate in clear. */
    uint8_t *der = NULL;
    size_t derlen = 0;
    check_provisioned(jobs[0].v, &der, &derlen, NULL, NULL);
    char path[512];
    snprintf(path, sizeof(path), "%s/state/tpm2-00.permall", tc_vtpm_dir(jobs[0].v));
    assert_int_equal(tc_vtpm_stop(jobs[0].v), 0);
    assert_false(pid_alive(pids[0]));
    assert_false(tc_vtpm_running(jobs[0].v));
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t blob[1 << 20];
    size_t blen = fread(blob, 1, sizeof(blob), f);
    fclose(f);
    assert_true(blen > 1000);
    assert_null(memmem(blob, blen, der + derlen - 64, 64)); /* the signature part */
    assert_null(memmem(blob, blen, "vm0", 3));              /* the subject CN */

    /* Restart: same EK, same certificate. */
    assert_int_equal(tc_vtpm_start(jobs[0].v), 0);
    uint8_t *der2 = NULL;
    size_t derlen2 = 0;
    uint8_t pub2[TC_TPM_MAX_PUBLIC];
    size_t publen2 = 0;
    check_provisioned(jobs[0].v, &der2, &derlen2, pub2, &publen2);
    assert_int_equal(derlen2, derlen);
    assert_memory_equal(der2, der, derlen);
    assert_int_equal(publen2, publen[0]);
    assert_memory_equal(pub2, pubs[0], publen2);
    free(der2);

    /* A wrong key fails cleanly: an error, no process, the state untouched. */
    pid_t restarted = tc_vtpm_pid(jobs[0].v);
    assert_int_equal(tc_vtpm_stop(jobs[0].v), 0);
    assert_false(pid_alive(restarted));
    uint8_t wrong[TC_VTPM_KEY_LEN];
    memcpy(wrong, key_a, sizeof(wrong));
    wrong[0] ^= 1;
    struct tc_vtpm_config cw = config("vm0", TC_VTPM_TCP, wrong, false);
    struct tc_vtpm *w = NULL;
    assert_int_equal(tc_vtpm_open(&cw, &w), 0);
    assert_false(tc_vtpm_running(w));
    assert_int_equal(tc_vtpm_start(w), TC_ERR_IO);
    assert_false(tc_vtpm_running(w));
    tc_vtpm_free(w);
    struct tc_vtpm_config cn = config("vm0", TC_VTPM_TCP, NULL, false);
    assert_int_equal(tc_vtpm_open(&cn, &w), 0);
    assert_int_equal(tc_vtpm_start(w), TC_ERR_IO); /* no key at all */
    tc_vtpm_free(w);
    assert_int_equal(tc_vtpm_list(base, &list, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(list[0].pid, 0);
    free(list);
    /* ... and the right key still works afterwards. */
    assert_int_equal(tc_vtpm_start(jobs[0].v), 0);
    check_provisioned(jobs[0].v, &der2, &derlen2, NULL, NULL);
    assert_memory_equal(der2, der, derlen);
    free(der2);

    /* A certificate for another key is refused. */
    assert_int_equal(tc_vtpm_provision(jobs[1].v, der, derlen), TC_ERR_MISMATCH);
    assert_int_equal(tc_vtpm_provision(jobs[1].v, (const uint8_t *)"junk", 4), TC_ERR_FORMAT);
    free(der);

    /* Delete: process and state gone. */
    for (int i = 0; i < 3; i++) {
        char dir[512];
        pid_t p = tc_vtpm_pid(jobs[i].v);
        snprintf(dir, sizeof(dir), "%s", tc_vtpm_dir(jobs[i].v));
        assert_int_equal(tc_vtpm_delete(jobs[i].v), 0);
        assert_false(pid_alive(p));
        assert_false(pid_alive(pids[i]));
        assert_int_equal(access(dir, F_OK), -1);
    }
    assert_int_equal(tc_vtpm_list(base, &list, &n), 0);
    assert_int_equal(n, 0);
}

static void test_create_refuses_existing(void **state)
{
    (void)state;
    struct tc_vtpm_config c = config("dup", TC_VTPM_TCP, NULL, false);
    struct tc_vtpm *v = NULL, *v2 = NULL;
    assert_int_equal(tc_vtpm_create(&c, &v), 0);
    assert_int_equal(tc_vtpm_create(&c, &v2), TC_ERR_INVALID_ARG);
    assert_null(v2);
    assert_true(tc_vtpm_running(v)); /* the refused create did not touch it */
    /* Unprovisioned: no EK public known, and a failing issuer undoes the whole creation. */
    const uint8_t *p;
    size_t l;
    assert_int_equal(tc_vtpm_ek_public(v, &p, &l), TC_ERR_NOT_FOUND);
    pid_t pid = tc_vtpm_pid(v);
    assert_int_equal(tc_vtpm_delete(v), 0);
    assert_false(pid_alive(pid));
    struct tc_vtpm_config open_gone = config("dup", TC_VTPM_TCP, NULL, false);
    assert_int_equal(tc_vtpm_open(&open_gone, &v), TC_ERR_NOT_FOUND);
}

static int issue_fails(void *arg, const char *vm_id, const uint8_t *ek_public, size_t len,
                       uint8_t **der, size_t *der_len)
{
    (void)arg, (void)vm_id, (void)ek_public, (void)len, (void)der, (void)der_len;
    return TC_ERR_SIGNATURE;
}

static void test_failed_provisioning_cleans_up(void **state)
{
    (void)state;
    struct tc_vtpm_config c = config("failing", TC_VTPM_TCP, NULL, false);
    c.issue_ek_cert = issue_fails;
    struct tc_vtpm *v = NULL;
    assert_int_equal(tc_vtpm_create(&c, &v), TC_ERR_SIGNATURE);
    assert_null(v);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/failing", base);
    assert_int_equal(access(dir, F_OK), -1);
}

/* What a creation cut short leaves: a running swtpm nobody holds a handle on, or a directory
 * without a state, or a pid file naming a process that is not a swtpm (which must live on). */
static void test_purge(void **state)
{
    (void)state;
    struct tc_vtpm_config c = config("cut-short", TC_VTPM_TCP, key_a, true);
    struct tc_vtpm *v = NULL;
    char dir[512], path[600];
    assert_int_equal(tc_vtpm_create(&c, &v), 0);
    pid_t pid = tc_vtpm_pid(v);
    assert_true(pid_alive(pid));
    tc_vtpm_free(v); /* the process keeps running, as after a kill -9 of its manager */
    assert_int_equal(tc_vtpm_purge(&c), 0);
    assert_false(pid_alive(pid));
    waitpid(pid, NULL, 0);
    snprintf(dir, sizeof(dir), "%s/cut-short", base);
    assert_int_equal(access(dir, F_OK), -1);
    assert_int_equal(tc_vtpm_purge(&c), 0); /* nothing there: fine */

    /* No state directory yet, and a pid file with this test's own pid. */
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof(path), "%s/swtpm.pid", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    assert_int_equal(tc_vtpm_purge(&c), 0);
    assert_int_equal(access(dir, F_OK), -1);
    assert_true(pid_alive(getpid()));

    struct tc_vtpm_config bad = config("../x", TC_VTPM_TCP, NULL, false);
    assert_int_equal(tc_vtpm_purge(&bad), TC_ERR_INVALID_ARG);
}

static void test_qemu_mode(void **state)
{
    (void)state;
    struct tc_vtpm_config c = config("qemu-vm", TC_VTPM_QEMU, key_a, false);
    struct tc_vtpm *v = NULL;
    assert_int_equal(tc_vtpm_create(&c, &v), 0);
    assert_null(tc_vtpm_tcti(v));
    struct stat st;
    assert_int_equal(stat(tc_vtpm_ctrl_path(v), &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    pid_t pid = tc_vtpm_pid(v);
    assert_true(pid_alive(pid));
    /* tc_vtpm_provision needs the TPM port. */
    assert_int_equal(tc_vtpm_provision(v, (const uint8_t *)"x", 1), TC_ERR_INVALID_ARG);
    assert_int_equal(tc_vtpm_stop(v), 0);
    assert_false(pid_alive(pid));
    assert_int_equal(stat(tc_vtpm_ctrl_path(v), &st), -1);
    assert_int_equal(tc_vtpm_start(v), 0);
    pid = tc_vtpm_pid(v);
    assert_int_equal(tc_vtpm_delete(v), 0);
    assert_false(pid_alive(pid));

    /* Provisioned at creation, then waiting for QEMU; the same state in TCP mode shows the EK
     * and its certificate. */
    struct tc_vtpm_config cp = config("qemu-prov", TC_VTPM_QEMU, key_a, true);
    assert_int_equal(tc_vtpm_create(&cp, &v), 0);
    assert_non_null(tc_vtpm_ctrl_path(v));
    assert_int_equal(stat(tc_vtpm_ctrl_path(v), &st), 0);
    const uint8_t *pub;
    size_t publen;
    assert_int_equal(tc_vtpm_ek_public(v, &pub, &publen), 0);
    uint8_t ekpub[TC_TPM_MAX_PUBLIC];
    memcpy(ekpub, pub, publen);
    pid = tc_vtpm_pid(v);
    assert_true(pid_alive(pid));
    assert_int_equal(tc_vtpm_stop(v), 0);
    assert_false(pid_alive(pid));
    tc_vtpm_free(v);
    struct tc_vtpm_config ct = config("qemu-prov", TC_VTPM_TCP, key_a, false);
    assert_int_equal(tc_vtpm_open(&ct, &v), 0);
    assert_int_equal(tc_vtpm_start(v), 0);
    uint8_t again[TC_TPM_MAX_PUBLIC];
    size_t againlen = 0;
    check_provisioned(v, NULL, NULL, again, &againlen);
    assert_int_equal(againlen, publen);
    assert_memory_equal(again, ekpub, publen);
    pid = tc_vtpm_pid(v);
    assert_int_equal(tc_vtpm_delete(v), 0);
    assert_false(pid_alive(pid));
}

static int run_tool(const char *tcti, const char *cmd)
{
    char line[1024];
    snprintf(line, sizeof(line), "TPM2TOOLS_TCTI='%s' %s", tcti, cmd);
    return system(line);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *buf = malloc(65536);
    *len = fread(buf, 1, 65536, f);
    fclose(f);
    return buf;
}

/* tpm2-tools find the certificate and the EK where TCG says they are. */
static void test_tpm2_tools_see_provisioning(void **state)
{
    (void)state;
    if (system("command -v tpm2_nvread >/dev/null && command -v tpm2_readpublic >/dev/null") != 0)
        skip();
    struct tc_vtpm_config c = config("tools", TC_VTPM_TCP, NULL, true);
    struct tc_vtpm *v = NULL;
    char out[600], cmd[900];
    assert_int_equal(tc_vtpm_create(&c, &v), 0);
    const char *tcti = tc_vtpm_tcti(v);

    /* Attributes as swtpm_setup sets them, plus WRITTEN. */
    snprintf(out, sizeof(out), "%s/nvpub.txt", tc_vtpm_dir(v));
    snprintf(cmd, sizeof(cmd), "tpm2_nvreadpublic 0x01c0000a > '%s'", out);
    assert_int_equal(run_tool(tcti, cmd), 0);
    size_t len;
    uint8_t *txt = slurp(out, &len);
    assert_non_null(memmem(txt, len, "0x62072001", 10));
    free(txt);

    uint8_t *der = NULL;
    size_t derlen = 0;
    check_provisioned(v, &der, &derlen, NULL, NULL);
    snprintf(out, sizeof(out), "%s/cert.der", tc_vtpm_dir(v));
    snprintf(cmd, sizeof(cmd), "tpm2_nvread 0x01c0000a -C o -o '%s' >/dev/null", out);
    assert_int_equal(run_tool(tcti, cmd), 0);
    uint8_t *tool_der = slurp(out, &len);
    assert_int_equal(len, derlen);
    assert_memory_equal(tool_der, der, derlen);
    free(tool_der);
    free(der);

    snprintf(out, sizeof(out), "%s/ek.pub", tc_vtpm_dir(v));
    snprintf(cmd, sizeof(cmd), "tpm2_readpublic -c 0x81010002 -o '%s' >/dev/null", out);
    assert_int_equal(run_tool(tcti, cmd), 0);
    uint8_t *tool_pub = slurp(out, &len);
    const uint8_t *pub;
    size_t publen;
    assert_int_equal(tc_vtpm_ek_public(v, &pub, &publen), 0);
    assert_int_equal(len, publen);
    assert_memory_equal(tool_pub, pub, publen);
    free(tool_pub);
    pid_t pid = tc_vtpm_pid(v);
    assert_int_equal(tc_vtpm_delete(v), 0);
    assert_false(pid_alive(pid));
}

static int setup(void **state)
{
    (void)state;
    if (system("command -v swtpm >/dev/null") != 0) {
        fprintf(stderr, "swtpm not installed\n");
        return -1;
    }
    snprintf(base, sizeof(base), "%s/vtpm-test.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(base) == NULL)
        return -1;
    snprintf(cadir, sizeof(cadir), "%s.ca", base);
    if (tc_pki_ca_init(cadir, "throw-away vTPM EK CA", 1, &ca) != 0)
        return -1;
    return RAND_bytes(key_a, sizeof(key_a)) == 1 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tc_pki_ca_free(ca);
    /* A failed test may leave instances running: stop whatever is left. */
    struct tc_vtpm_entry *list = NULL;
    size_t n = 0;
    if (tc_vtpm_list(base, &list, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            struct tc_vtpm_config c = config(list[i].id, TC_VTPM_TCP, NULL, false);
            struct tc_vtpm *v = NULL;
            if (tc_vtpm_open(&c, &v) == 0)
                tc_vtpm_stop(v);
            tc_vtpm_free(v);
        }
        free(list);
    }
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", base, cadir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_concurrent_lifecycle),
        cmocka_unit_test(test_create_refuses_existing),
        cmocka_unit_test(test_failed_provisioning_cleans_up),
        cmocka_unit_test(test_purge),
        cmocka_unit_test(test_qemu_mode),
        cmocka_unit_test(test_tpm2_tools_see_provisioning),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
