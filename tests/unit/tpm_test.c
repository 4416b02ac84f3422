/* SPDX-License-Identifier: Apache-2.0 */
/*
 * src/tpm against real swtpm instances: each group starts its own swtpm on a free loopback port
 * pair with a temporary state directory and kills it in teardown. tpm2-tools, where installed,
 * serve as the independent reference (EK public keys, PCR values).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
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
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <tss2/tss2_mu.h>

#include "swtpm_fixture.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/hashalg.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/quote.h"
#include "trustcloud/tpm.h"

static struct swtpm plain;       /* no swtpm_setup: all four banks, no EK certificates */
static struct swtpm provisioned; /* swtpm_setup: EKs + certificates, sha256 bank only */

static int group_setup(void **state)
{
    if (system("command -v swtpm >/dev/null") != 0) {
        fprintf(stderr, "swtpm not installed\n");
        return -1;
    }
    return swtpm_new(&plain, "tc-tpm-test");
}

static int group_teardown(void **state)
{
    swtpm_free(&plain);
    swtpm_free(&provisioned);
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

static double now_ms(void)
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
    memset(&a, 0, sizeof(a));
    assert_int_equal(Tss2_MU_TPMS_ATTEST_Unmarshal(q->attest, q->attest_len, &off, &a), 0);
    assert_int_equal(off, q->attest_len);
    assert_int_equal(a.magic, TPM2_GENERATED_VALUE);
    assert_int_equal(a.type, TPM2_ST_ATTEST_QUOTE);
    assert_int_equal(a.extraData.size, nonce_len);
    if (nonce_len > 0)
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

static void assert_pss_salt_is_digest_length(const struct tc_tpm_key *ak,
                                             const struct tc_tpm_quote *q)
{
    struct tc_ak *key = NULL;
    struct tc_reason why;
    TPMT_SIGNATURE sig;
    size_t off = 0;
    memset(&sig, 0, sizeof(sig));
    assert_int_equal(tc_ak_from_tpm2b_public(ak->pub, ak->pub_len, &key, &why), 0);
    assert_int_equal(Tss2_MU_TPMT_SIGNATURE_Unmarshal(q->sig, q->sig_len, &off, &sig), 0);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    assert_int_equal(
        EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, (EVP_PKEY *)tc_ak_evp_pkey(key)), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 1);
    assert_int_equal(EVP_DigestVerify(md, sig.signature.rsapss.sig.buffer,
                                      sig.signature.rsapss.sig.size, q->attest, q->attest_len),
                     1);
    EVP_MD_CTX_free(md);
    tc_ak_free(key);
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
    /* tpm2_checkquote (the reference verifier) accepts our bytes as tpm2_quote's -m/-s. SM2 is
     * beyond it, and for RSAPSS it insists on the maximum salt length while libtpms signs with
     * salt length = digest length (both allowed by the TPM spec): check that one with OpenSSL. */
    if (scheme == TC_SIG_RSAPSS)
        assert_pss_salt_is_digest_length(&ak, &q);
    else if (alg != TC_KEY_SM2_P256 && system("command -v tpm2_checkquote >/dev/null") == 0) {
        char pub[300], msg[300], sigf[300], cmd[1400], hex[2 * sizeof(nonce) + 1];
        tmp_path(pub, sizeof(pub), "q.pub");
        tmp_path(msg, sizeof(msg), "q.msg");
        tmp_path(sigf, sizeof(sigf), "q.sig");
        assert_int_equal(tc_file_write(pub, ak.pub, ak.pub_len, 0644), 0);
        assert_int_equal(tc_file_write(msg, q.attest, q.attest_len, 0644), 0);
        assert_int_equal(tc_file_write(sigf, q.sig, q.sig_len, 0644), 0);
        tc_hex_encode(nonce, sizeof(nonce), hex);
        snprintf(cmd, sizeof(cmd),
                 "tpm2_checkquote -u '%s' -m '%s' -s '%s' -q %s -g sha256 >/dev/null 2>&1", pub,
                 msg, sigf, hex);
        assert_int_equal(system(cmd), 0);
        /* ... and refuses them with another nonce. */
        hex[0] = hex[0] == '0' ? '1' : '0';
        snprintf(cmd, sizeof(cmd),
                 "tpm2_checkquote -u '%s' -m '%s' -s '%s' -q %s -g sha256 >/dev/null 2>&1", pub,
                 msg, sigf, hex);
        assert_int_not_equal(system(cmd), 0);
        unlink(pub);
        unlink(msg);
        unlink(sigf);
    }
    tc_tpm_quote_release(&q);

    /* An empty nonce is fine too. */
    assert_int_equal(tc_tpm_quote(tpm, &ak, &sel, NULL, 0, &q), 0);
    check_attest(&q, NULL, 0, &sel);
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

/* ---- connection ---- */

static void open_twice(void **state)
{
    struct tc_tpm *tpm = NULL;
    /* The swtpm is started already: Startup answers TPM2_RC_INITIALIZE, which is success. */
    assert_int_equal(tc_tpm_open(plain.tcti, &tpm), 0);
    assert_non_null(tpm);
    tc_tpm_close(tpm);
    assert_int_equal(tc_tpm_open(plain.tcti, &tpm), 0);
    assert_nothing_loaded(tpm);
    tc_tpm_close(tpm);
    tc_tpm_close(NULL);
}

static void bad_tcti(void **state)
{
    struct tc_tpm *tpm = (struct tc_tpm *)&tpm;
    char tcti[128];
    int port = 0;
    for (int p = 61000; p < 61100 && port == 0; p++)
        if (swtpm_port_free(p))
            port = p;
    assert_int_not_equal(port, 0);
    snprintf(tcti, sizeof(tcti), "swtpm:host=127.0.0.1,port=%d", port);
    assert_int_equal(tc_tpm_open(tcti, &tpm), TC_ERR_TPM);
    assert_null(tpm);
    tpm = (struct tc_tpm *)&tpm;
    assert_int_equal(tc_tpm_open("no-such-tcti:whatever", &tpm), TC_ERR_TPM);
    assert_null(tpm);
    assert_int_equal(tc_tpm_open("device:/nonexistent/tpm0", &tpm), TC_ERR_TPM);
    assert_null(tpm);
}

static void info(void **state)
{
    struct tc_tpm *tpm;
    json_t *j = NULL;
    assert_int_equal(tc_tpm_open(plain.tcti, &tpm), 0);
    assert_int_equal(tc_tpm_info(tpm, &j), 0);
    assert_string_equal(json_string_value(json_object_get(j, "manufacturer")), "IBM");
    const char *spec = json_string_value(json_object_get(j, "spec"));
    assert_non_null(spec);
    assert_memory_equal(spec, "2.0 rev 1.", 10);
    json_t *banks = json_object_get(j, "banks");
    assert_int_equal(json_array_size(banks), 4);
    assert_string_equal(json_string_value(json_array_get(banks, 1)), "sha256");
    char *text = json_dumps(j, JSON_COMPACT);
    printf("tpm info: %s\n", text);
    free(text);
    json_decref(j);

    struct tc_pcr_set sel;
    assert_int_equal(tc_tpm_active_banks(tpm, &sel), 0);
    assert_int_equal(sel.nbanks, 4);
    for (size_t i = 0; i < sel.nbanks; i++)
        assert_int_equal(sel.bank[i].mask, 0xffffff);
    tc_tpm_close(tpm);
}

/* ---- PCRs ---- */

/* Parses `tpm2_pcrread` YAML ("  sha1:" / "    0 : 0x...") into a set. */
static int tools_pcrread(const char *tcti, const char *spec, struct tc_pcr_set *out)
{
    char cmd[512], line[512];
    snprintf(cmd, sizeof(cmd), "tpm2_pcrread -T '%s' '%s' 2>/dev/null", tcti, spec);
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return -1;
    const struct tc_hash_alg *alg = NULL;
    tc_pcrs_init(out);
    while (fgets(line, sizeof(line), f)) {
        char name[16], hex[160];
        unsigned idx;
        if (sscanf(line, " %15[a-z0-9_]:%*[\n]", name) == 1 && strchr(line, ':')[1] == '\n') {
            alg = tc_hash_by_name(name);
        } else if (alg && sscanf(line, " %u : 0x%159s", &idx, hex) == 2) {
            uint8_t v[TC_MAX_DIGEST];
            size_t n;
            if (tc_hex_decode(hex, strlen(hex), v, sizeof(v), &n) != 0 || n != alg->size ||
                tc_pcrs_set(out, alg, idx, v) != 0) {
                pclose(f);
                return -1;
            }
        }
    }
    return pclose(f) == 0 ? 0 : -1;
}

static void pcrread_matches_tools(void **state)
{
    struct tc_tpm *tpm;
    struct tc_pcr_set sel, ours, theirs;

    if (system("command -v tpm2_pcrread >/dev/null") != 0)
        skip();
    assert_int_equal(tc_tpm_open(plain.tcti, &tpm), 0);
    /* Distinct values in every bank, so a misplaced digest cannot go unnoticed. */
    size_t nalg;
    const struct tc_hash_alg *algs = tc_hash_all(&nalg);
    /* PCRs 17..22 cannot be extended from locality 0. */
    static const unsigned pcrs[] = {0, 3, 7, 10, 15, 16, 23};
    for (size_t k = 0; k < sizeof(pcrs) / sizeof(pcrs[0]); k++)
        for (size_t a = 0; a < 4; a++) {
            unsigned pcr = pcrs[k];
            uint8_t d[TC_MAX_DIGEST];
            char seed[32];
            snprintf(seed, sizeof(seed), "pcr%u-%zu", pcr, a);
            tc_hash(&algs[a], seed, strlen(seed), d);
            assert_int_equal(tc_tpm_pcr_extend(tpm, pcr, &algs[a], d), 0);
        }
    assert_int_equal(tc_tpm_active_banks(tpm, &sel), 0);
    assert_int_equal(tc_tpm_pcr_read(tpm, &sel, &ours), 0);
    tc_tpm_close(tpm);

    assert_int_equal(
        tools_pcrread(plain.tcti, "sha1:all+sha256:all+sha384:all+sha512:all", &theirs), 0);
    assert_int_equal(ours.nbanks, 4);
    assert_int_equal(theirs.nbanks, 4);
    for (size_t i = 0; i < 4; i++) {
        const struct tc_pcr_bank *b = tc_pcrs_bank_const(&theirs, ours.bank[i].alg);
        assert_non_null(b);
        assert_int_equal(ours.bank[i].mask, 0xffffff);
        assert_int_equal(b->mask, 0xffffff);
        for (unsigned p = 0; p < 24; p++)
            assert_memory_equal(ours.bank[i].value[p], b->value[p], b->alg->size);
    }
}

static void pcr_selection_order(void **state)
{
    struct tc_tpm *tpm;
    struct tc_pcr_set sel, out;
    assert_int_equal(tc_tpm_open(plain.tcti, &tpm), 0);
    assert_int_equal(tc_pcrs_parse_selection("sha512:23,1+sha1:2", &sel), 0);
    assert_int_equal(tc_tpm_pcr_read(tpm, &sel, &out), 0);
    assert_int_equal(out.nbanks, 2);
    assert_ptr_equal(out.bank[0].alg, tc_hash_by_name("sha512"));
    assert_int_equal(out.bank[0].mask, (1u << 23) | 2u);
    assert_ptr_equal(out.bank[1].alg, tc_hash_by_name("sha1"));
    assert_int_equal(out.bank[1].mask, 4u);
    /* PCR 23 is resettable and starts at zero in every bank on this fresh TPM; 17..22 start
     * at all ones, so the positions cannot be confused. */
    tc_tpm_close(tpm);
}

static void extend_chain(void **state)
{
    struct tc_tpm *tpm;
    struct tc_pcr_set sel, before, after;
    const unsigned pcr = 12;

    assert_int_equal(tc_tpm_open(plain.tcti, &tpm), 0);
    assert_int_equal(tc_tpm_active_banks(tpm, &sel), 0);
    for (size_t i = 0; i < sel.nbanks; i++)
        sel.bank[i].mask = 1u << pcr;
    assert_int_equal(tc_tpm_pcr_read(tpm, &sel, &before), 0);

    const struct tc_hash_alg *sha256 = tc_hash_by_name("sha256");
    uint8_t d256[32];
    tc_hash(sha256, "one", 3, d256);
    assert_int_equal(tc_tpm_pcr_extend(tpm, pcr, sha256, d256), 0);
    assert_int_equal(tc_pcr_bank_extend(tc_pcrs_bank(&before, sha256, false), pcr, d256), 0);

    /* One command extending all four banks. */
    const struct tc_hash_alg *algs[4];
    uint8_t dig[4][TC_MAX_DIGEST];
    const uint8_t *digs[4];
    for (size_t i = 0; i < 4; i++) {
        algs[i] = before.bank[i].alg;
        tc_hash(algs[i], "two", 3, dig[i]);
        digs[i] = dig[i];
        assert_int_equal(tc_pcr_bank_extend(&before.bank[i], pcr, dig[i]), 0);
    }
    assert_int_equal(tc_tpm_pcr_extend_multi(tpm, pcr, 4, algs, digs), 0);
    assert_int_equal(tc_tpm_pcr_read(tpm, &sel, &after), 0);
    for (size_t i = 0; i < 4; i++)
        assert_memory_equal(after.bank[i].value[pcr], before.bank[i].value[pcr],
                            after.bank[i].alg->size);
    /* Bad arguments never reach the TPM. */
    assert_int_equal(tc_tpm_pcr_extend(tpm, 24, sha256, d256), TC_ERR_INVALID_ARG);
    assert_int_equal(tc_tpm_pcr_extend_multi(tpm, 1, 0, algs, digs), TC_ERR_INVALID_ARG);
    tc_tpm_close(tpm);
}

/* ---- EK ---- */

static void read_file(const char *path, uint8_t **data, size_t *len)
{
    assert_int_equal(tc_file_read(path, 1 << 16, data, len), 0);
}

static void ek_matches_createek(void **state)
{
    static const char *algs[] = {"rsa", "ecc"};
    if (system("command -v tpm2_createek >/dev/null") != 0)
        skip();
    for (int i = 0; i < 2; i++) {
        struct tc_tpm *tpm;
        struct tc_tpm_key ek;
        char cmd[1024], pub[300], ctx[300];
        uint8_t *theirs;
        size_t theirs_len;

        assert_int_equal(tc_tpm_open(plain.tcti, &tpm), 0);
        assert_int_equal(tc_tpm_ek_create(tpm, i == 0 ? TC_KEY_RSA_2048 : TC_KEY_ECC_P256, &ek), 0);
        assert_int_not_equal(ek.esys_handle, 0);
        assert_int_equal(ek.name_len, 34);
        tc_tpm_key_release(tpm, &ek);
        assert_int_equal(ek.pub_len, 0);
        tc_tpm_close(tpm);
        /* Again, to compare against: tc_tpm_key_release cleared the first one. */
        assert_int_equal(tc_tpm_open(plain.tcti, &tpm), 0);
        assert_int_equal(tc_tpm_ek_create(tpm, i == 0 ? TC_KEY_RSA_2048 : TC_KEY_ECC_P256, &ek), 0);
        tc_tpm_close(tpm); /* close flushes the EK it still tracks */

        tmp_path(pub, sizeof(pub), "ek.pub");
        tmp_path(ctx, sizeof(ctx), "ek.ctx");
        snprintf(cmd, sizeof(cmd), "tpm2_createek -T '%s' -G %s -c '%s' -u '%s' >/dev/null",
                 plain.tcti, algs[i], ctx, pub);
        assert_int_equal(system(cmd), 0);
        /* tpm2_createek leaves its EK loaded (no resource manager here). */
        snprintf(cmd, sizeof(cmd), "tpm2_flushcontext -T '%s' -t", plain.tcti);
        assert_int_equal(system(cmd), 0);
        read_file(pub, &theirs, &theirs_len);
        /* Same template, same seed: the whole TPM2B_PUBLIC is identical. */
        assert_int_equal(theirs_len, ek.pub_len);
        assert_memory_equal(theirs, ek.pub, ek.pub_len);
        free(theirs);
        unlink(pub);
        unlink(ctx);

        assert_int_equal(tc_tpm_open(plain.tcti, &tpm), 0);
        assert_nothing_loaded(tpm);
        tc_tpm_close(tpm);
    }
}

static int start_provisioned(void)
{
    if (provisioned.pid > 0)
        return 0;
    char script[512], cmd[1200];
    const char *data = getenv("TC_TEST_DATA");
    if (data != NULL) {
        snprintf(script, sizeof(script), "%s/../lib/swtpm_setup.sh", data);
    } else {
        /* Run by hand from the build tree: the helper sits next to this file's folder. */
        snprintf(script, sizeof(script), "%s", __FILE__);
        char *slash = strrchr(script, '/');
        if (slash == NULL)
            return -1;
        snprintf(slash, sizeof(script) - (size_t)(slash - script), "/../lib/swtpm_setup.sh");
    }
    memset(&provisioned, 0, sizeof(provisioned));
    snprintf(provisioned.dir, sizeof(provisioned.dir), "%s/tc-tpm-test.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(provisioned.dir) == NULL)
        return -1;
    snprintf(cmd, sizeof(cmd), "bash -c '. \"$0\"; tc_swtpm_setup \"$1/state\"' '%s' '%s'", script,
             provisioned.dir);
    if (system(cmd) != 0)
        return -1;
    /* swtpm_start uses dir as the state directory. */
    strncat(provisioned.dir, "/state", sizeof(provisioned.dir) - strlen(provisioned.dir) - 1);
    int rc = swtpm_start(&provisioned);
    /* Remove the whole temporary tree (state and CA) on teardown. */
    provisioned.dir[strlen(provisioned.dir) - strlen("/state")] = 0;
    return rc;
}

/* The RSA modulus or EC point of a certificate equals the TPM2B_PUBLIC's unique field. */
static void assert_cert_key(const uint8_t *der, size_t len, const uint8_t *pub, size_t pub_len)
{
    TPM2B_PUBLIC p;
    size_t off = 0;
    const unsigned char *q = der;
    memset(&p, 0, sizeof(p));
    X509 *x = d2i_X509(NULL, &q, (long)len);
    assert_non_null(x);
    assert_ptr_equal(q, der + len);
    EVP_PKEY *pk = X509_get0_pubkey(x);
    assert_non_null(pk);
    assert_int_equal(Tss2_MU_TPM2B_PUBLIC_Unmarshal(pub, pub_len, &off, &p), 0);
    if (p.publicArea.type == TPM2_ALG_RSA) {
        BIGNUM *n = NULL;
        uint8_t mod[512];
        assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n), 1);
        size_t mlen = p.publicArea.unique.rsa.size;
        assert_int_equal(BN_bn2binpad(n, mod, (int)mlen), (int)mlen);
        assert_memory_equal(mod, p.publicArea.unique.rsa.buffer, mlen);
        BN_free(n);
    } else {
        uint8_t pt[1 + 2 * 66];
        size_t ptlen = 0, c = p.publicArea.unique.ecc.x.size;
        assert_int_equal(
            EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &ptlen),
            1);
        assert_int_equal(ptlen, 1 + 2 * c);
        assert_memory_equal(pt + 1, p.publicArea.unique.ecc.x.buffer, c);
        assert_memory_equal(pt + 1 + c, p.publicArea.unique.ecc.y.buffer, c);
    }
    X509_free(x);
}

static void ek_cert(void **state)
{
    struct tc_tpm *tpm;
    struct tc_tpm_key ek, persisted;
    uint8_t *der = NULL;
    size_t len = 0;

    /* No certificate on a TPM nobody provisioned. */
    assert_int_equal(tc_tpm_open(plain.tcti, &tpm), 0);
    assert_int_equal(tc_tpm_ek_cert_read(tpm, TC_KEY_RSA_2048, &der, &len), TC_ERR_NOT_FOUND);
    assert_null(der);
    assert_int_equal(tc_tpm_ek_cert_read(tpm, TC_KEY_ECC_P256, &der, &len), TC_ERR_NOT_FOUND);
    assert_int_equal(tc_tpm_key_from_persistent(tpm, TC_TPM_EK_HANDLE_RSA, &persisted),
                     TC_ERR_NOT_FOUND);
    tc_tpm_close(tpm);

    if (system("command -v swtpm_setup >/dev/null") != 0)
        skip();
    assert_int_equal(start_provisioned(), 0);
    assert_int_equal(tc_tpm_open(provisioned.tcti, &tpm), 0);
    assert_int_equal(tc_tpm_ek_cert_read(tpm, TC_KEY_RSA_2048, &der, &len), 0);
    assert_true(len > 500);
    assert_int_equal(der[0], 0x30); /* DER SEQUENCE */
    /* The certificate certifies the EK we derive from the template. */
    assert_int_equal(tc_tpm_ek_create(tpm, TC_KEY_RSA_2048, &ek), 0);
    assert_cert_key(der, len, ek.pub, ek.pub_len);
    /* ... which is also the one swtpm_setup made persistent. */
    assert_int_equal(tc_tpm_key_from_persistent(tpm, TC_TPM_EK_HANDLE_RSA, &persisted), 0);
    assert_int_equal(persisted.pub_len, ek.pub_len);
    assert_memory_equal(persisted.pub, ek.pub, ek.pub_len);
    assert_memory_equal(persisted.name, ek.name, ek.name_len);
    tc_tpm_key_release(tpm, &persisted);
    tc_tpm_key_release(tpm, &ek);
    free(der);
    der = NULL;

    /* swtpm_setup 0.7 provisions an ECC P-384 EK (high range), not a P-256 one. */
    assert_int_equal(tc_tpm_ek_cert_read(tpm, TC_KEY_ECC_P256, &der, &len), TC_ERR_NOT_FOUND);
    assert_int_equal(tc_tpm_nv_read(tpm, TC_TPM_NV_EK_CERT_ECC_P384, 16384, &der, &len), 0);
    assert_int_equal(tc_tpm_key_from_persistent(tpm, TC_TPM_EK_HANDLE_ECC_P384, &persisted), 0);
    assert_cert_key(der, len, persisted.pub, persisted.pub_len);
    tc_tpm_key_release(tpm, &persisted);
    free(der);
    der = NULL;
    assert_int_equal(tc_tpm_nv_read(tpm, TC_TPM_NV_EK_CERT_ECC_P384, 16, &der, &len),
                     TC_ERR_TOO_LARGE);
    assert_int_equal(tc_tpm_nv_read(tpm, 0x81000000, 16, &der, &len), TC_ERR_INVALID_ARG);

    /* Only sha256 is active after swtpm_setup: asking for sha1 finds nothing. */
    struct tc_pcr_set sel, out;
    assert_int_equal(tc_tpm_active_banks(tpm, &sel), 0);
    assert_int_equal(sel.nbanks, 1);
    assert_ptr_equal(sel.bank[0].alg, tc_hash_by_name("sha256"));
    assert_int_equal(tc_pcrs_parse_selection("sha256:0+sha1:0", &sel), 0);
    assert_int_equal(tc_tpm_pcr_read(tpm, &sel, &out), TC_ERR_NOT_FOUND);
    assert_int_equal(out.nbanks, 0);
    assert_nothing_loaded(tpm);
    tc_tpm_close(tpm);
}

/* ---- AK context file ---- */

static void akctx_rejects_bad_files(void **state)
{
    struct tc_tpm *tpm;
    struct tc_tpm_key ek, ek_rsa, ak;
    struct tc_tpm_akctx *ctx = calloc(1, sizeof(*ctx));
    char path[300], bad[300];
    uint8_t *data;
    size_t len;

    assert_non_null(ctx);
    tmp_path(path, sizeof(path), "ak-neg.ctx");
    tmp_path(bad, sizeof(bad), "ak-bad.ctx");
    assert_int_equal(tc_tpm_open(plain.tcti, &tpm), 0);
    assert_int_equal(tc_tpm_ek_create(tpm, TC_KEY_ECC_P256, &ek), 0);
    assert_int_equal(tc_tpm_ak_create(tpm, &ek, TC_KEY_ECC_P256, TC_SIG_RSASSA, path, &ak),
                     TC_ERR_UNSUPPORTED);
    assert_int_equal(tc_tpm_ak_create(tpm, &ek, TC_KEY_SM2_P256, TC_SIG_ECDSA, path, &ak),
                     TC_ERR_UNSUPPORTED);
    assert_int_equal(tc_tpm_ak_create(tpm, &ek, TC_KEY_ECC_P256, TC_SIG_DEFAULT, path, &ak), 0);
    tc_tpm_key_release(tpm, &ak);
    read_file(path, &data, &len);

    assert_int_equal(tc_tpm_akctx_parse(data, len, ctx), 0);
    assert_int_equal(ctx->alg, TC_KEY_ECC_P256);
    assert_int_equal(ctx->scheme, TC_SIG_ECDSA);
    assert_int_equal(ctx->parent_name_len, ek.name_len);
    assert_memory_equal(ctx->parent_name, ek.name, ek.name_len);

    for (size_t n = 0; n < len; n++)
        assert_int_not_equal(tc_tpm_akctx_parse(data, n, ctx), 0);
    uint8_t *copy = malloc(len + 1);
    memcpy(copy, data, len);
    copy[len] = 0;
    assert_int_equal(tc_tpm_akctx_parse(copy, len + 1, ctx), TC_ERR_TRAILING);
    copy[0] ^= 1;
    assert_int_equal(tc_tpm_akctx_parse(copy, len, ctx), TC_ERR_FORMAT);
    copy[0] ^= 1;
    copy[5] = 2; /* version */
    assert_int_equal(tc_tpm_akctx_parse(copy, len, ctx), TC_ERR_UNSUPPORTED);
    copy[5] = 1;
    copy[7] = TC_KEY_RSA_2048; /* the header's alg no longer describes the public area */
    assert_int_equal(tc_tpm_akctx_parse(copy, len, ctx), TC_ERR_UNSUPPORTED);
    copy[7] = TC_KEY_ECC_P256;
    copy[9] = TC_SIG_RSASSA;
    assert_int_equal(tc_tpm_akctx_parse(copy, len, ctx), TC_ERR_UNSUPPORTED);
    copy[9] = TC_SIG_ECDSA;
    /* A flipped attribute bit in the public area (objectAttributes low byte). */
    size_t attr_off = 16 + ek.name_len + 2 + 2 + 2 + 3;
    copy[attr_off] ^= 0x40; /* userWithAuth */
    assert_int_equal(tc_tpm_akctx_parse(copy, len, ctx), TC_ERR_KEY);
    copy[attr_off] ^= 0x40;
    assert_int_equal(tc_tpm_akctx_parse(copy, len, ctx), 0);
    assert_int_equal(tc_tpm_akctx_read(bad, ctx), TC_ERR_IO);
    /* Random byte mutations (fixed seed): the parser never crashes and accepts only files whose
     * public area still is an AK of the recorded kind. */
    unsigned seed = 12345;
    for (int i = 0; i < 20000; i++) {
        uint8_t *m = malloc(len);
        memcpy(m, data, len);
        for (int k = 0; k < 1 + i % 4; k++)
            m[rand_r(&seed) % len] = (uint8_t)rand_r(&seed);
        size_t mlen = (i % 5 == 0) ? (size_t)rand_r(&seed) % (len + 1) : len;
        if (tc_tpm_akctx_parse(m, mlen, ctx) == 0) {
            assert_true(ctx->pub_len <= sizeof(ctx->pub) && ctx->priv_len <= sizeof(ctx->priv));
            assert_int_equal(ctx->name_len, 34);
        }
        free(m);
    }
    tc_tpm_akctx_release(ctx);
    tc_tpm_akctx_release(NULL);

    /* A tampered private blob is refused by the TPM, not by us. */
    copy[len - 5] ^= 0x55;
    assert_int_equal(tc_file_write(bad, copy, len, 0600), 0);
    assert_int_equal(tc_tpm_ak_load(tpm, &ek, bad, &ak), TC_ERR_TPM);
    assert_loaded(tpm, 1);

    /* Loading under another EK is caught before the TPM sees it. */
    assert_int_equal(tc_tpm_ek_create(tpm, TC_KEY_RSA_2048, &ek_rsa), 0);
    assert_int_equal(tc_tpm_ak_load(tpm, &ek_rsa, path, &ak), TC_ERR_MISMATCH);
    assert_int_equal(ak.esys_handle, 0);
    tc_tpm_key_release(tpm, &ek_rsa);
    tc_tpm_key_release(tpm, &ek);
    assert_nothing_loaded(tpm);
    tc_tpm_close(tpm);
    free(copy);
    free(data);
    free(ctx);
    unlink(path);
    unlink(bad);
}

/* Replays tests/data/tpm/akctx: AK context files made by `trustcloud tpm ak create` (*.ctx,
 * which must parse) and a minimized libFuzzer corpus (fuzz-*, which must not crash). */
static void akctx_corpus(void **state)
{
    const char *data = getenv("TC_TEST_DATA");
    char dir[512], path[800];
    if (data == NULL)
        skip();
    snprintf(dir, sizeof(dir), "%s/tpm/akctx", data);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct tc_tpm_akctx *ctx = calloc(1, sizeof(*ctx));
    int files = 0, good = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        uint8_t *buf;
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        read_file(path, &buf, &len);
        int rc = tc_tpm_akctx_parse(buf, len, ctx);
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".ctx") == 0) {
            assert_int_equal(rc, 0);
            good++;
        }
        files++;
        free(buf);
    }
    closedir(d);
    free(ctx);
    assert_true(good >= 4);
    printf("akctx corpus: %d files, %d well-formed AK contexts\n", files, good);
}

/* A TPM2B_PUBLIC whose own size field disagrees with the bytes its publicArea takes: tpm2-tss
 * (3.2) unmarshals the whole area when the size field says 0 or 1, so such a file was accepted
 * with a public blob the TPM would read differently. A format error for every wrong size. */
static void akctx_public_size_mismatch(void **state)
{
    const char *data = getenv("TC_TEST_DATA");
    char path[800];
    if (data == NULL)
        skip();
    snprintf(path, sizeof(path), "%s/tpm/akctx/ecc-ecdsa.ctx", data);
    uint8_t *buf;
    size_t len;
    read_file(path, &buf, &len);
    struct tc_tpm_akctx *ctx = calloc(1, sizeof(*ctx));
    assert_non_null(ctx);
    assert_int_equal(tc_tpm_akctx_parse(buf, len, ctx), 0);

    /* "TCAK" | version | alg | scheme | name length | public length | private length | name |
     * TPM2B_PUBLIC: the public area's size field follows the parent name. */
    assert_true(len > 16);
    size_t nlen = ((size_t)buf[10] << 8) | buf[11];
    size_t plen = ((size_t)buf[12] << 8) | buf[13];
    size_t at = 16 + nlen;
    assert_true(at + plen <= len && plen > 2);
    assert_int_equal(((size_t)buf[at] << 8) | buf[at + 1], plen - 2);
    assert_int_equal(ctx->pub_len, plen);

    const size_t wrong[] = {0, 1, plen - 3, plen - 1, plen, 0xffff};
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        buf[at] = (uint8_t)(wrong[i] >> 8);
        buf[at + 1] = (uint8_t)wrong[i];
        int rc = tc_tpm_akctx_parse(buf, len, ctx);
        if (rc != TC_ERR_FORMAT)
            fail_msg("public size field %zu (area %zu bytes): %d", wrong[i], plen - 2, rc);
        assert_int_equal(ctx->pub_len, 0);
    }
    buf[at] = (uint8_t)((plen - 2) >> 8);
    buf[at + 1] = (uint8_t)(plen - 2);
    assert_int_equal(tc_tpm_akctx_parse(buf, len, ctx), 0);
    tc_tpm_akctx_release(ctx);
    free(ctx);
    free(buf);
}

/* ---- timing (printed, not asserted) ---- */

static void timings(void **state)
{
    struct tc_tpm *tpm;
    struct tc_tpm_key ek, ak;
    struct tc_tpm_quote q;
    struct tc_pcr_set sel, all, out;
    char ctx[300];
    uint8_t nonce[32] = {1};
    const int n = 50;

    tmp_path(ctx, sizeof(ctx), "ak-time.ctx");
    assert_int_equal(tc_tpm_open(plain.tcti, &tpm), 0);
    assert_int_equal(tc_tpm_ek_create(tpm, TC_KEY_ECC_P256, &ek), 0);
    assert_int_equal(tc_tpm_ak_create(tpm, &ek, TC_KEY_ECC_P256, TC_SIG_DEFAULT, ctx, &ak), 0);
    assert_int_equal(tc_pcrs_parse_selection("sha256:0,1,2,3,4,5,6,7", &sel), 0);
    assert_int_equal(tc_tpm_active_banks(tpm, &all), 0);

    double t0 = now_ms();
    for (int i = 0; i < n; i++) {
        assert_int_equal(tc_tpm_quote(tpm, &ak, &sel, nonce, sizeof(nonce), &q), 0);
        tc_tpm_quote_release(&q);
    }
    double t1 = now_ms();
    for (int i = 0; i < n; i++)
        assert_int_equal(tc_tpm_pcr_read(tpm, &sel, &out), 0);
    double t2 = now_ms();
    for (int i = 0; i < n; i++)
        assert_int_equal(tc_tpm_pcr_read(tpm, &all, &out), 0);
    double t3 = now_ms();
    printf("timing: ECC P-256 quote of 8 sha256 PCRs incl. PCR read-back %.3f ms; "
           "PCR read 8 sha256 PCRs %.3f ms; PCR read 4 banks x 24 PCRs %.3f ms (mean of %d)\n",
           (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n, n);
    tc_tpm_key_release(tpm, &ak);
    tc_tpm_key_release(tpm, &ek);
    assert_nothing_loaded(tpm);
    tc_tpm_close(tpm);
    unlink(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(open_twice),
        cmocka_unit_test(bad_tcti),
        cmocka_unit_test(info),
        cmocka_unit_test(pcr_selection_order),
        cmocka_unit_test(pcrread_matches_tools),
        cmocka_unit_test(extend_chain),
        cmocka_unit_test(ek_matches_createek),
        cmocka_unit_test(ek_cert),
        cmocka_unit_test(quote_ecc),
        cmocka_unit_test(quote_rsassa),
        cmocka_unit_test(quote_rsapss),
        cmocka_unit_test(quote_sm2),
        cmocka_unit_test(akctx_rejects_bad_files),
        cmocka_unit_test(akctx_corpus),
        cmocka_unit_test(akctx_public_size_mismatch),
        cmocka_unit_test(timings),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
