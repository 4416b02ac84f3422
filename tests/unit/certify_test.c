/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The vTPM CA key and TPM2_Certify against a real swtpm (own port pair and temporary state,
 * killed in teardown), and tc_certify_verify accepting exactly what it should.
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
#include <openssl/evp.h>
#include <tss2/tss2_mu.h>

#include "swtpm_fixture.h"
#include "tpm/tpm_internal.h"
#include "trustcloud/buf.h"
#include "trustcloud/certify.h"
#include "trustcloud/error.h"
#include "trustcloud/quote.h"
#include "trustcloud/tpm.h"
#include "trustcloud/tpm_certify.h"

static struct swtpm sw;
static struct tc_tpm *tpm;
static struct tc_tpm_key ek, ak, ca;
static uint8_t ak2_pub[TC_TPM_MAX_PUBLIC];
static size_t ak2_pub_len;
static char ca_ctx[300], ak_ctx[300];
static const uint8_t nonce[32] = "certify-test-nonce-0123456789abc";

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int group_setup(void **state)
{
    struct tc_tpm_key ak2;
    (void)state;
    if (system("command -v swtpm >/dev/null") != 0 || swtpm_new(&sw, "tc-certify-test") != 0) {
        fprintf(stderr, "swtpm not available\n");
        return -1;
    }
    snprintf(ca_ctx, sizeof(ca_ctx), "%s/vtpmca.ctx", sw.dir);
    snprintf(ak_ctx, sizeof(ak_ctx), "%s/ak.ctx", sw.dir);
    char ak2_ctx[300];
    snprintf(ak2_ctx, sizeof(ak2_ctx), "%s/ak2.ctx", sw.dir);
    if (tc_tpm_open(sw.tcti, &tpm) != 0 || tc_tpm_ek_create(tpm, TC_KEY_ECC_P256, &ek) != 0)
        return -1;
    /* A second AK of the same TPM: only its public key is needed. */
    if (tc_tpm_ak_create(tpm, &ek, TC_KEY_ECC_P256, TC_SIG_DEFAULT, ak2_ctx, &ak2) != 0)
        return -1;
    memcpy(ak2_pub, ak2.pub, ak2.pub_len);
    ak2_pub_len = ak2.pub_len;
    tc_tpm_key_release(tpm, &ak2);
    if (tc_tpm_ak_create(tpm, &ek, TC_KEY_ECC_P256, TC_SIG_DEFAULT, ak_ctx, &ak) != 0)
        return -1;
    double t0 = now_ms();
    if (tc_tpm_vtpm_ca_create(tpm, &ek, ca_ctx, &ca) != 0)
        return -1;
    printf("timing: vTPM CA key creation %.1f ms\n", now_ms() - t0);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tc_tpm_key_release(tpm, &ca);
    tc_tpm_key_release(tpm, &ak);
    tc_tpm_key_release(tpm, &ek);
    tc_tpm_close(tpm);
    swtpm_free(&sw);
    return 0;
}

static struct tc_ak *ak_of(const uint8_t *pub, size_t len)
{
    struct tc_ak *k = NULL;
    struct tc_reason why;
    assert_int_equal(tc_ak_from_tpm2b_public(pub, len, &k, &why), 0);
    return k;
}

/* Verifies and returns the error; a failure must name `check`. */
static int verify(const struct tc_ak *k, const struct tc_tpm_certify *c, const uint8_t *pub,
                  size_t pub_len, const uint8_t *n, size_t n_len, const char *check)
{
    struct tc_reason why;
    struct tc_certify_info info;
    tc_reason_clear(&why);
    int rc = tc_certify_verify(k, c->attest, c->attest_len, c->sig, c->sig_len, pub, pub_len, n,
                               n_len, &info, &why);
    if (check != NULL) {
        if (rc == 0 || strcmp(why.check, check) != 0)
            fail_msg("expected a %s failure, got %d (%s: %s)", check, rc, why.check, why.detail);
        assert_int_equal(why.code, rc);
    } else if (rc != 0) {
        fail_msg("verification failed: %s: %s", why.check, why.detail);
    }
    return rc;
}

static void certify_ok(void **state)
{
    struct tc_tpm_certify c;
    struct tc_certify_info info;
    struct tc_reason why;
    (void)state;
    struct tc_ak *k = ak_of(ak.pub, ak.pub_len);
    assert_int_equal(tc_tpm_certify(tpm, &ca, &ak, nonce, sizeof(nonce), &c), 0);
    assert_int_equal(verify(k, &c, ca.pub, ca.pub_len, nonce, sizeof(nonce), NULL), 0);
    assert_int_equal(tc_certify_verify(k, c.attest, c.attest_len, c.sig, c.sig_len, ca.pub,
                                       ca.pub_len, nonce, sizeof(nonce), &info, &why),
                     0);
    assert_int_equal(info.name_len, ca.name_len);
    assert_memory_equal(info.name, ca.name, ca.name_len);
    assert_int_equal(info.nonce_len, sizeof(nonce));
    /* The signer is the AK's qualified name under the EK in the endorsement hierarchy. */
    uint8_t qn[TC_QUOTE_MAX_NAME];
    size_t qn_len = 0;
    assert_int_equal(
        tc_ak_qualified_name(k, TC_TPM_RH_ENDORSEMENT, ek.pub, ek.pub_len, qn, &qn_len), 0);
    assert_int_equal(info.signer_len, qn_len);
    assert_memory_equal(info.signer, qn, qn_len);
    /* An empty nonce works too. */
    tc_tpm_certify_release(&c);
    assert_int_equal(tc_tpm_certify(tpm, &ca, &ak, NULL, 0, &c), 0);
    assert_int_equal(verify(k, &c, ca.pub, ca.pub_len, NULL, 0, NULL), 0);
    assert_int_not_equal(verify(k, &c, ca.pub, ca.pub_len, nonce, 1, "certify.nonce"), 0);
    tc_tpm_certify_release(&c);
    tc_tpm_certify_release(NULL);
    tc_ak_free(k);
}

static void certify_rejects(void **state)
{
    struct tc_tpm_certify c;
    uint8_t other_nonce[sizeof(nonce)];
    (void)state;
    struct tc_ak *k = ak_of(ak.pub, ak.pub_len), *k2 = ak_of(ak2_pub, ak2_pub_len);
    assert_int_equal(tc_tpm_certify(tpm, &ca, &ak, nonce, sizeof(nonce), &c), 0);

    /* Another AK of the same TPM did not sign this. */
    assert_int_equal(verify(k2, &c, ca.pub, ca.pub_len, nonce, sizeof(nonce), "certify.signature"),
                     TC_ERR_SIGNATURE);
    /* The attestation is about the CA key, not about the AK. */
    assert_int_equal(verify(k, &c, ak.pub, ak.pub_len, nonce, sizeof(nonce), "certify.name"),
                     TC_ERR_MISMATCH);
    /* Another nonce, and one of another length. */
    memcpy(other_nonce, nonce, sizeof(nonce));
    other_nonce[31] ^= 1;
    assert_int_equal(
        verify(k, &c, ca.pub, ca.pub_len, other_nonce, sizeof(other_nonce), "certify.nonce"),
        TC_ERR_NONCE);
    assert_int_equal(verify(k, &c, ca.pub, ca.pub_len, nonce, 31, "certify.nonce"), TC_ERR_NONCE);

    /* Every flipped byte of the attestation, the signature or the public area is caught. */
    struct tc_reason why;
    for (size_t i = 0; i < c.attest_len; i++) {
        c.attest[i] ^= 0x01;
        assert_int_not_equal(tc_certify_verify(k, c.attest, c.attest_len, c.sig, c.sig_len, ca.pub,
                                               ca.pub_len, nonce, sizeof(nonce), NULL, &why),
                             0);
        c.attest[i] ^= 0x01;
    }
    for (size_t i = 0; i < c.sig_len; i++) {
        c.sig[i] ^= 0x01;
        assert_int_not_equal(tc_certify_verify(k, c.attest, c.attest_len, c.sig, c.sig_len, ca.pub,
                                               ca.pub_len, nonce, sizeof(nonce), NULL, &why),
                             0);
        c.sig[i] ^= 0x01;
    }
    uint8_t pub[TC_TPM_MAX_PUBLIC];
    memcpy(pub, ca.pub, ca.pub_len);
    for (size_t i = 0; i < ca.pub_len; i++) {
        pub[i] ^= 0x01;
        assert_int_not_equal(tc_certify_verify(k, c.attest, c.attest_len, c.sig, c.sig_len, pub,
                                               ca.pub_len, nonce, sizeof(nonce), NULL, &why),
                             0);
        pub[i] ^= 0x01;
    }
    /* Trailing bytes and truncation. */
    uint8_t longer[TC_CERTIFY_MAX_ATTEST + 1];
    memcpy(longer, c.attest, c.attest_len);
    longer[c.attest_len] = 0;
    assert_int_equal(tc_certify_verify(k, longer, c.attest_len + 1, c.sig, c.sig_len, ca.pub,
                                       ca.pub_len, nonce, sizeof(nonce), NULL, &why),
                     TC_ERR_TRAILING);
    assert_string_equal(why.check, "certify.format");
    assert_int_equal(tc_certify_verify(k, c.attest, c.attest_len - 1, c.sig, c.sig_len, ca.pub,
                                       ca.pub_len, nonce, sizeof(nonce), NULL, &why),
                     TC_ERR_FORMAT);
    assert_int_equal(tc_certify_verify(NULL, c.attest, c.attest_len, c.sig, c.sig_len, ca.pub,
                                       ca.pub_len, nonce, sizeof(nonce), NULL, &why),
                     TC_ERR_INVALID_ARG);
    assert_string_equal(why.check, "certify.args");
    tc_tpm_certify_release(&c);

    /* A quote is not a certify attestation. */
    struct tc_pcr_set sel;
    struct tc_tpm_quote q;
    assert_int_equal(tc_pcrs_parse_selection("sha256:0", &sel), 0);
    assert_int_equal(tc_tpm_quote(tpm, &ak, &sel, nonce, sizeof(nonce), &q), 0);
    struct tc_tpm_certify qc = {q.attest, q.attest_len, q.sig, q.sig_len};
    assert_int_equal(verify(k, &qc, ca.pub, ca.pub_len, nonce, sizeof(nonce), "certify.type"),
                     TC_ERR_FORMAT);
    tc_tpm_quote_release(&q);
    tc_ak_free(k);
    tc_ak_free(k2);
}

/* Creates and loads an ECC P-256 key with the given attributes under the EK. */
static void make_key(TPMA_OBJECT attrs, TPMI_ALG_ECC_SCHEME scheme, struct tc_tpm_key *key)
{
    TPM2B_PUBLIC tmpl;
    TPM2B_SENSITIVE_CREATE sens;
    TPM2B_DATA outside;
    TPML_PCR_SELECTION pcrs;
    TPM2B_PRIVATE *priv = NULL;
    TPM2B_PUBLIC *pub = NULL;
    ESYS_TR session = ESYS_TR_NONE, h = ESYS_TR_NONE;
    size_t off = 0;

    memset(key, 0, sizeof(*key));
    memset(&tmpl, 0, sizeof(tmpl));
    memset(&sens, 0, sizeof(sens));
    memset(&outside, 0, sizeof(outside));
    memset(&pcrs, 0, sizeof(pcrs));
    tmpl.publicArea.type = TPM2_ALG_ECC;
    tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
    tmpl.publicArea.objectAttributes = attrs;
    TPMS_ECC_PARMS *e = &tmpl.publicArea.parameters.eccDetail;
    e->symmetric.algorithm = TPM2_ALG_NULL;
    if ((attrs & TPMA_OBJECT_RESTRICTED) && (attrs & TPMA_OBJECT_DECRYPT)) {
        e->symmetric.algorithm = TPM2_ALG_AES;
        e->symmetric.keyBits.aes = 128;
        e->symmetric.mode.aes = TPM2_ALG_CFB;
    }
    e->scheme.scheme = scheme;
    e->scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    e->curveID = TPM2_ECC_NIST_P256;
    e->kdf.scheme = TPM2_ALG_NULL;
    assert_int_equal(tc_tpm_ek_session(tpm, &session), 0);
    assert_int_equal(Esys_Create(tpm->esys, ek.esys_handle, session, ESYS_TR_NONE, ESYS_TR_NONE,
                                 &sens, &tmpl, &outside, &pcrs, &priv, &pub, NULL, NULL, NULL),
                     0);
    tc_tpm_session_flush(tpm, &session);
    assert_int_equal(tc_tpm_ek_session(tpm, &session), 0);
    assert_int_equal(
        Esys_Load(tpm->esys, ek.esys_handle, session, ESYS_TR_NONE, ESYS_TR_NONE, priv, pub, &h),
        0);
    tc_tpm_session_flush(tpm, &session);
    assert_int_equal(Tss2_MU_TPM2B_PUBLIC_Marshal(pub, key->pub, sizeof(key->pub), &off), 0);
    key->pub_len = off;
    key->esys_handle = h;
    tc_tpm_track(tpm, h);
    Esys_Free(priv);
    Esys_Free(pub);
}

static void certify_odd_key(TPMA_OBJECT attrs, TPMI_ALG_ECC_SCHEME scheme, const char *check)
{
    struct tc_tpm_key odd;
    struct tc_tpm_certify c;
    struct tc_ak *k = ak_of(ak.pub, ak.pub_len);
    make_key(attrs, scheme, &odd);
    assert_int_equal(tc_tpm_certify(tpm, &odd, &ak, nonce, sizeof(nonce), &c), 0);
    assert_int_equal(verify(k, &c, odd.pub, odd.pub_len, nonce, sizeof(nonce), check), TC_ERR_KEY);
    tc_tpm_certify_release(&c);
    tc_tpm_key_release(tpm, &odd);
    tc_ak_free(k);
}

static void certify_rejects_wrong_keys(void **state)
{
    (void)state;
    /* Room for one more loaded object: the CA key goes out and comes back from its file. */
    tc_tpm_key_release(tpm, &ca);
    const TPMA_OBJECT base = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                             TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH;
    /* Duplicable: neither fixedTPM nor fixedParent. */
    certify_odd_key(TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                        TPMA_OBJECT_SIGN_ENCRYPT,
                    TPM2_ALG_ECDSA, "certify.attributes");
    /* Signs and decrypts. */
    certify_odd_key(base | TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT, TPM2_ALG_NULL,
                    "certify.attributes");
    /* Decrypts only (a storage key). */
    certify_odd_key(base | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT, TPM2_ALG_NULL,
                    "certify.attributes");
    /* The right attributes but no ECDSA-SHA256 scheme. */
    certify_odd_key(base | TPMA_OBJECT_SIGN_ENCRYPT, TPM2_ALG_NULL, "certify.key");

    /* Restricted: the AK certifying itself. */
    struct tc_tpm_certify c;
    struct tc_ak *k = ak_of(ak.pub, ak.pub_len);
    assert_int_equal(tc_tpm_certify(tpm, &ak, &ak, nonce, sizeof(nonce), &c), 0);
    assert_int_equal(verify(k, &c, ak.pub, ak.pub_len, nonce, sizeof(nonce), "certify.attributes"),
                     TC_ERR_KEY);
    tc_tpm_certify_release(&c);
    tc_ak_free(k);

    assert_int_equal(tc_tpm_vtpm_ca_load(tpm, &ek, ca_ctx, &ca), 0);
    size_t objects = 0, sessions = 0;
    assert_int_equal(tc_tpm_loaded_count(tpm, &objects, &sessions), 0);
    assert_int_equal(objects, 3);
    assert_int_equal(sessions, 0);
}

static void ca_key_file(void **state)
{
    (void)state;
    struct stat st;
    assert_int_equal(stat(ca_ctx, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Reloading gives the same key. */
    uint8_t name[TC_TPM_MAX_NAME];
    size_t name_len = ca.name_len;
    memcpy(name, ca.name, name_len);
    tc_tpm_key_release(tpm, &ca);
    assert_int_equal(tc_tpm_vtpm_ca_load(tpm, &ek, ca_ctx, &ca), 0);
    assert_int_equal(ca.name_len, name_len);
    assert_memory_equal(ca.name, name, name_len);
    assert_int_equal(ca.alg, TC_KEY_ECC_P256);
    assert_int_equal(ca.scheme, TC_SIG_ECDSA);

    /* Damaged files, an AK file, and a file from under another EK are refused. */
    uint8_t *data = NULL;
    size_t len = 0;
    struct tc_tpm_key k;
    char bad[320];
    snprintf(bad, sizeof(bad), "%s/bad.ctx", sw.dir);
    assert_int_equal(tc_file_read(ca_ctx, TC_TPM_VTPM_CA_CTX_MAX, &data, &len), 0);
    assert_int_equal(tc_file_write(bad, data, len - 1, 0600), 0);
    assert_int_not_equal(tc_tpm_vtpm_ca_load(tpm, &ek, bad, &k), 0);
    assert_int_equal(tc_file_write(bad, data, 7, 0600), 0);
    assert_int_equal(tc_tpm_vtpm_ca_load(tpm, &ek, bad, &k), TC_ERR_TRUNCATED);
    data[4] = 9; /* version */
    assert_int_equal(tc_file_write(bad, data, len, 0600), 0);
    assert_int_equal(tc_tpm_vtpm_ca_load(tpm, &ek, bad, &k), TC_ERR_UNSUPPORTED);
    data[4] = 0;
    data[12] ^= 0xff; /* the parent name */
    assert_int_equal(tc_file_write(bad, data, len, 0600), 0);
    assert_int_equal(tc_tpm_vtpm_ca_load(tpm, &ek, bad, &k), TC_ERR_MISMATCH);
    assert_int_equal(tc_tpm_vtpm_ca_load(tpm, &ek, ak_ctx, &k), TC_ERR_FORMAT);
    assert_int_not_equal(tc_tpm_vtpm_ca_load(tpm, &ek, "/nonexistent/ctx", &k), 0);
    free(data);
    assert_int_equal(tc_tpm_vtpm_ca_create(tpm, NULL, ca_ctx, &k), TC_ERR_INVALID_ARG);
}

static void sign_digest(void **state)
{
    (void)state;
    uint8_t digest[32], *der = NULL;
    size_t der_len = 0;
    EVP_PKEY *pk = NULL;
    assert_int_equal(tc_certify_public_key(ca.pub, ca.pub_len, &pk), 0);
    for (int i = 0; i < 32; i++)
        digest[i] = (uint8_t)(i * 13);
    assert_int_equal(tc_tpm_sign_digest(tpm, &ca, digest, &der, &der_len), 0);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
    assert_int_equal(EVP_PKEY_verify(ctx, der, der_len, digest, 32), 1);
    digest[0] ^= 1;
    assert_int_not_equal(EVP_PKEY_verify(ctx, der, der_len, digest, 32), 1);
    EVP_PKEY_CTX_free(ctx);
    free(der);

    /* A restricted key refuses the null ticket: that is why the CA key is not restricted. */
    assert_int_equal(tc_tpm_sign_digest(tpm, &ak, digest, &der, &der_len), TC_ERR_TPM);
    assert_null(der);

    const int n = 50;
    double t0 = now_ms();
    for (int i = 0; i < n; i++) {
        assert_int_equal(tc_tpm_sign_digest(tpm, &ca, digest, &der, &der_len), 0);
        free(der);
    }
    double t1 = now_ms();
    struct tc_tpm_certify c;
    for (int i = 0; i < n; i++) {
        assert_int_equal(tc_tpm_certify(tpm, &ca, &ak, nonce, sizeof(nonce), &c), 0);
        tc_tpm_certify_release(&c);
    }
    double t2 = now_ms();
    printf("timing: TPM2_Sign (ECDSA P-256) %.3f ms, TPM2_Certify %.3f ms (mean of %d)\n",
           (t1 - t0) / n, (t2 - t1) / n, n);
    EVP_PKEY_free(pk);
}

static void public_key_conversion(void **state)
{
    (void)state;
    EVP_PKEY *pk = NULL;
    assert_int_equal(tc_certify_public_key(ek.pub, ek.pub_len, &pk), 0);
    assert_true(EVP_PKEY_is_a(pk, "EC"));
    EVP_PKEY_free(pk);
    assert_int_equal(tc_certify_public_key(ek.pub, ek.pub_len - 1, &pk), TC_ERR_FORMAT);
    assert_null(pk);
    uint8_t longer[TC_TPM_MAX_PUBLIC + 1];
    memcpy(longer, ek.pub, ek.pub_len);
    assert_int_equal(tc_certify_public_key(longer, ek.pub_len + 1, &pk), TC_ERR_TRAILING);
    /* A point off the curve. */
    memcpy(longer, ek.pub, ek.pub_len);
    longer[ek.pub_len - 1] ^= 1;
    assert_int_equal(tc_certify_public_key(longer, ek.pub_len, &pk), TC_ERR_KEY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(certify_ok),
        cmocka_unit_test(certify_rejects),
        cmocka_unit_test(certify_rejects_wrong_keys),
        cmocka_unit_test(ca_key_file),
        cmocka_unit_test(sign_digest),
        cmocka_unit_test(public_key_conversion),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
