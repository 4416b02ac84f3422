/* SPDX-License-Identifier: Apache-2.0 */
/*
 * src/tpm against real swtpm instances: each group starts its own swtpm on a free loopback port
 * pair with a temporary state directory and kills it in teardown. tpm2-tools, where installed,
 * serve as the independent reference (EK public keys, PCR values).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <tss2/tss2_mu.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/hashalg.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/tpm.h"

struct swtpm {
    pid_t pid;
    int port;
    char dir[256];
    char tcti[128];
};

static struct swtpm plain; /* no swtpm_setup: all four banks, no EK certificates */

static int port_free(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(s, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(s);
    return ok;
}

static int port_ready(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(s);
    return ok;
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    if (dir[0] == 0)
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* Starts swtpm in the foreground (a child we can kill and reap) on state dir t->dir. */
static int swtpm_start(struct swtpm *t)
{
    srand((unsigned)(getpid() ^ time(NULL)));
    for (int attempt = 0; attempt < 20; attempt++) {
        int port = 20000 + rand() % 40000;
        if (!port_free(port) || !port_free(port + 1))
            continue;
        char server[96], ctrl[96], state[300];
        snprintf(server, sizeof(server), "type=tcp,port=%d,bindaddr=127.0.0.1", port);
        snprintf(ctrl, sizeof(ctrl), "type=tcp,port=%d,bindaddr=127.0.0.1", port + 1);
        snprintf(state, sizeof(state), "dir=%s", t->dir);
        pid_t pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0) {
            int devnull = open("/dev/null", O_RDWR);
            if (devnull >= 0) {
                dup2(devnull, 1);
                dup2(devnull, 2);
            }
            execlp("swtpm", "swtpm", "socket", "--tpm2", "--server", server, "--ctrl", ctrl,
                   "--tpmstate", state, "--flags", "not-need-init,startup-clear", (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 200; i++) {
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid)
                break; /* lost a port race: try another */
            if (port_ready(port)) {
                t->pid = pid;
                t->port = port;
                snprintf(t->tcti, sizeof(t->tcti), "swtpm:host=127.0.0.1,port=%d", port);
                return 0;
            }
            usleep(10000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return -1;
}

static void swtpm_stop(struct swtpm *t)
{
    if (t->pid > 0) {
        kill(t->pid, SIGTERM);
        waitpid(t->pid, NULL, 0);
        t->pid = 0;
    }
}

static int swtpm_new(struct swtpm *t)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->dir, sizeof(t->dir), "%s/tc-tpm-test.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(t->dir) == NULL)
        return -1;
    return swtpm_start(t);
}

static void swtpm_free(struct swtpm *t)
{
    swtpm_stop(t);
    rm_rf(t->dir);
    memset(t, 0, sizeof(*t));
}

static int group_setup(void **state)
{
    if (system("command -v swtpm >/dev/null") != 0) {
        fprintf(stderr, "swtpm not installed\n");
        return -1;
    }
    return swtpm_new(&plain);
}

static int group_teardown(void **state)
{
    swtpm_free(&plain);
    return 0;
}

static void assert_nothing_loaded(struct tc_tpm *tpm)
{
    size_t objects = 99, sessions = 99;
    assert_int_equal(tc_tpm_loaded_count(tpm, &objects, &sessions), 0);
    assert_int_equal(objects, 0);
    assert_int_equal(sessions, 0);
}

static void assert_loaded(struct tc_tpm *tpm, size_t want_objects)
{
    size_t objects = 99, sessions = 99;
    assert_int_equal(tc_tpm_loaded_count(tpm, &objects, &sessions), 0);
    assert_int_equal(objects, want_objects);
    assert_int_equal(sessions, 0);
}

static inline double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void tmp_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", plain.dir, name);
}

/* ---- quote ---- */

/* The TPMS_ATTEST must unmarshal exactly, be a quote, carry the nonce and the selection. */
static void check_attest(const struct tc_tpm_quote *q, const uint8_t *nonce, size_t nonce_len,
                         const struct tc_pcr_set *sel)
{
    TPMS_ATTEST a;
    size_t off = 0;
    assert_int_equal(Tss2_MU_TPMS_ATTEST_Unmarshal(q->attest, q->attest_len, &off, &a), 0);
    assert_int_equal(off, q->attest_len);
    assert_int_equal(a.magic, TPM2_GENERATED_VALUE);
    assert_int_equal(a.type, TPM2_ST_ATTEST_QUOTE);
    assert_int_equal(a.extraData.size, nonce_len);
    assert_memory_equal(a.extraData.buffer, nonce, nonce_len);
    const TPML_PCR_SELECTION *s = &a.attested.quote.pcrSelect;
    assert_int_equal(s->count, sel->nbanks);
    for (size_t i = 0; i < sel->nbanks; i++) {
        assert_int_equal(s->pcrSelections[i].hash, sel->bank[i].alg->tpm_alg);
        uint32_t m = s->pcrSelections[i].pcrSelect[0] | s->pcrSelections[i].pcrSelect[1] << 8 |
                     s->pcrSelections[i].pcrSelect[2] << 16;
        assert_int_equal(m, sel->bank[i].mask);
    }
    /* pcrDigest = H(concatenated selected PCR values), banks in order, as read right after. */
    const struct tc_hash_alg *sha256 = tc_hash_by_name("sha256");
    struct tc_hash_ctx *h;
    uint8_t d[32];
    assert_int_equal(tc_hash_ctx_new(sha256, &h), 0);
    for (size_t i = 0; i < q->pcrs.nbanks; i++)
        for (unsigned p = 0; p < TC_PCR_COUNT; p++)
            if (q->pcrs.bank[i].mask & (1u << p))
                tc_hash_ctx_update(h, q->pcrs.bank[i].value[p], q->pcrs.bank[i].alg->size);
    tc_hash_ctx_final(h, d);
    tc_hash_ctx_free(h);
    assert_int_equal(a.attested.quote.pcrDigest.size, 32);
    assert_memory_equal(a.attested.quote.pcrDigest.buffer, d, 32);

    TPMT_SIGNATURE sig;
    off = 0;
    assert_int_equal(Tss2_MU_TPMT_SIGNATURE_Unmarshal(q->sig, q->sig_len, &off, &sig), 0);
    assert_int_equal(off, q->sig_len);
}

static void quote_with(enum tc_key_alg alg, enum tc_sig_scheme scheme, TPMI_ALG_SIG_SCHEME want)
{
    struct tc_tpm *tpm;
    struct tc_tpm_key ek, ak;
    struct tc_tpm_quote q;
    struct tc_pcr_set sel;
    char ctx[300];
    uint8_t nonce[64];

    tmp_path(ctx, sizeof(ctx), "ak.ctx");
    for (size_t i = 0; i < sizeof(nonce); i++)
        nonce[i] = (uint8_t)(i * 7 + alg);
    assert_int_equal(tc_pcrs_parse_selection("sha256:0,1,2,3,4,5,6,7,8,9,10+sha1:0,7", &sel), 0);

    /* Create, save, close. */
    assert_int_equal(tc_tpm_open(plain.tcti, &tpm), 0);
    assert_nothing_loaded(tpm);
    assert_int_equal(tc_tpm_ek_create(tpm, TC_KEY_ECC_P256, &ek), 0);
    assert_loaded(tpm, 1);
    assert_int_equal(tc_tpm_ak_create(tpm, &ek, alg, scheme, ctx, &ak), 0);
    assert_loaded(tpm, 2);
    assert_int_equal(ak.alg, alg);
    assert_int_not_equal(ak.scheme, TC_SIG_DEFAULT);
    uint8_t name1[TC_TPM_MAX_NAME];
    size_t name1_len = ak.name_len;
    memcpy(name1, ak.name, ak.name_len);
    struct stat st;
    assert_int_equal(stat(ctx, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    tc_tpm_key_release(tpm, &ak);
    tc_tpm_key_release(tpm, &ek);
    assert_nothing_loaded(tpm);
    tc_tpm_close(tpm);

    /* A new connection reloads the same AK and quotes with it. */
    assert_int_equal(tc_tpm_open(plain.tcti, &tpm), 0);
    assert_int_equal(tc_tpm_ek_create(tpm, TC_KEY_ECC_P256, &ek), 0);
    assert_int_equal(tc_tpm_ak_load(tpm, &ek, ctx, &ak), 0);
    assert_loaded(tpm, 2);
    assert_int_equal(ak.name_len, name1_len);
    assert_memory_equal(ak.name, name1, name1_len);
    assert_int_equal(tc_tpm_quote(tpm, &ak, &sel, nonce, sizeof(nonce), &q), 0);
    assert_loaded(tpm, 2);
    check_attest(&q, nonce, sizeof(nonce), &sel);
    TPMT_SIGNATURE sig;
    size_t off = 0;
    assert_int_equal(Tss2_MU_TPMT_SIGNATURE_Unmarshal(q.sig, q.sig_len, &off, &sig), 0);
    assert_int_equal(sig.sigAlg, want);
    tc_tpm_quote_release(&q);

    /* Too long a nonce is refused before reaching the TPM. */
    uint8_t big[65] = {0};
    assert_int_equal(tc_tpm_quote(tpm, &ak, &sel, big, sizeof(big), &q), TC_ERR_INVALID_ARG);
    tc_tpm_key_release(tpm, &ak);
    tc_tpm_key_release(tpm, &ek);
    assert_nothing_loaded(tpm);
    tc_tpm_close(tpm);
    unlink(ctx);
}

static void quote_ecc(void **state)
{
    quote_with(TC_KEY_ECC_P256, TC_SIG_DEFAULT, TPM2_ALG_ECDSA);
}
static void quote_rsassa(void **state)
{
    quote_with(TC_KEY_RSA_2048, TC_SIG_RSASSA, TPM2_ALG_RSASSA);
}
static void quote_rsapss(void **state)
{
    quote_with(TC_KEY_RSA_2048, TC_SIG_RSAPSS, TPM2_ALG_RSAPSS);
}
static void quote_sm2(void **state)
{
    quote_with(TC_KEY_SM2_P256, TC_SIG_DEFAULT, TPM2_ALG_SM2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quote_ecc),
        cmocka_unit_test(quote_rsassa),
        cmocka_unit_test(quote_rsapss),
        cmocka_unit_test(quote_sm2),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
