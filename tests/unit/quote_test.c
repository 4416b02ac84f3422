/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Quote verification against real quotes (tests/data/quote, made by tpm2-tools on swtpm) and
 * against quotes re-signed in the test with an OpenSSL key, so that single fields can change
 * while the signature stays valid.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <tss2/tss2_mu.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/quote.h"

static const char *const KINDS[] = {"ecc", "ecc384", "rsa", "rsapss", "sm2"};
#define NKINDS (sizeof(KINDS) / sizeof(KINDS[0]))

struct blob {
    uint8_t *data;
    size_t len;
};

static struct blob load(const char *name)
{
    const char *dir = getenv("TC_TEST_DATA");
    char path[1024];
    struct blob b = {0};
    snprintf(path, sizeof(path), "%s/quote/%s", dir ? dir : "tests/data", name);
    if (tc_file_read(path, 1 << 20, &b.data, &b.len) != 0)
        fail_msg("cannot read %s", path);
    return b;
}

static struct blob loadf(const char *kind, const char *suffix)
{
    char name[128];
    snprintf(name, sizeof(name), "%s.%s", kind, suffix);
    return load(name);
}

/* One real quote with everything needed to verify it. */
struct quote_case {
    struct blob msg, sig, pcrfile;
    struct tc_ak *ak_pub, *ak_pem;
    struct tc_pcr_set pcrs;
    struct tc_pcr_selection sel;
    uint8_t nonce[64];
    size_t nonce_len;
    struct tc_quote_expect ex;
};

static void case_load(struct quote_case *c, const char *kind)
{
    memset(c, 0, sizeof(*c));
    struct tc_reason why;
    /* "ecc.later" is another quote of the "ecc" AK. */
    char ak_kind[32];
    snprintf(ak_kind, sizeof(ak_kind), "%.*s", (int)strcspn(kind, "."), kind);
    struct blob akp = loadf(ak_kind, "ak.pub"), akm = loadf(ak_kind, "ak.pem");
    struct blob nonce = loadf(kind, "nonce");
    assert_int_equal(tc_ak_parse(akp.data, akp.len, &c->ak_pub, &why), 0);
    assert_int_equal(tc_ak_parse(akm.data, akm.len, &c->ak_pem, &why), 0);
    c->msg = loadf(kind, "msg");
    c->sig = loadf(kind, "sig");
    c->pcrfile = loadf(kind, "pcrs");
    assert_int_equal(tc_pcrfile_read_tpm2_tools(c->pcrfile.data, c->pcrfile.len, &c->pcrs, &c->sel),
                     0);
    size_t hl = nonce.len;
    while (hl && (nonce.data[hl - 1] == '\n' || nonce.data[hl - 1] == '\r'))
        hl--;
    assert_int_equal(
        tc_hex_decode((char *)nonce.data, hl, c->nonce, sizeof(c->nonce), &c->nonce_len), 0);
    c->ex.nonce = c->nonce;
    c->ex.nonce_len = c->nonce_len;
    c->ex.selection = &c->sel;
    free(akp.data);
    free(akm.data);
    free(nonce.data);
}

static void case_free(struct quote_case *c)
{
    tc_ak_free(c->ak_pub);
    tc_ak_free(c->ak_pem);
    free(c->msg.data);
    free(c->sig.data);
    free(c->pcrfile.data);
}

static int verify_case(const struct quote_case *c, const struct tc_ak *ak,
                       struct tc_quote_info *info, struct tc_reason *why)
{
    tc_reason_clear(why);
    return tc_quote_verify(ak, c->msg.data, c->msg.len, c->sig.data, c->sig.len, &c->pcrs, &c->ex,
                           info, why);
}

static void real_quotes_verify(void **state)
{
    struct blob ek = load("ek.pub");
    for (size_t k = 0; k < NKINDS; k++) {
        struct quote_case c;
        struct tc_quote_info info;
        struct tc_reason why;
        case_load(&c, KINDS[k]);
        /* TPM2B_PUBLIC AK: attributes and name are checked. */
        int rc = verify_case(&c, c.ak_pub, &info, &why);
        if (rc)
            fail_msg("%s: %s: %s", KINDS[k], why.check, why.detail);
        assert_true(info.ak_checked);
        assert_false(info.signer_checked);
        /* PEM AK: allowed, but reported as unchecked. */
        assert_int_equal(verify_case(&c, c.ak_pem, &info, &why), 0);
        assert_false(info.ak_checked);

        /* The qualified name computed from the EK equals tpm2_createak -q and the signer. */
        uint8_t qn[TC_QUOTE_MAX_NAME];
        size_t qn_len;
        struct blob want = loadf(KINDS[k], "ak.qname"), name = loadf(KINDS[k], "ak.name");
        assert_int_equal(
            tc_ak_qualified_name(c.ak_pub, TC_TPM_RH_ENDORSEMENT, ek.data, ek.len, qn, &qn_len), 0);
        assert_int_equal(qn_len, want.len);
        assert_memory_equal(qn, want.data, qn_len);
        const uint8_t *n;
        size_t n_len;
        assert_int_equal(tc_ak_name(c.ak_pub, &n, &n_len), 0);
        assert_int_equal(n_len, name.len);
        assert_memory_equal(n, name.data, n_len);
        assert_int_equal(tc_ak_name(c.ak_pem, &n, &n_len), TC_ERR_NOT_FOUND);
        c.ex.signer_qn = qn;
        c.ex.signer_qn_len = qn_len;
        assert_int_equal(verify_case(&c, c.ak_pub, &info, &why), 0);
        assert_true(info.signer_checked);
        /* A wrong qualified name (the plain name) fails the signer check. */
        c.ex.signer_qn = name.data;
        c.ex.signer_qn_len = name.len;
        assert_int_equal(verify_case(&c, c.ak_pub, &info, &why), TC_ERR_MISMATCH);
        assert_string_equal(why.check, "quote.signer");
        assert_int_equal(info.clock, 0); /* info cleared on failure */

        /* PEM export round trip still verifies. */
        char *pem;
        size_t pem_len;
        struct tc_ak *again;
        assert_int_equal(tc_ak_to_pem(c.ak_pub, &pem, &pem_len), 0);
        assert_int_equal(tc_ak_parse((uint8_t *)pem, pem_len, &again, &why), 0);
        c.ex.signer_qn = NULL;
        c.ex.signer_qn_len = 0;
        assert_int_equal(verify_case(&c, again, &info, &why), 0);
        tc_ak_free(again);
        free(pem);
        free(want.data);
        free(name.data);
        case_free(&c);
    }
    free(ek.data);
}

/* Every single-byte change of the attest or the signature is rejected (and nothing crashes). */
static void flip_every_byte(void **state)
{
    for (size_t k = 0; k < NKINDS; k++) {
        struct quote_case c;
        struct tc_reason why;
        case_load(&c, KINDS[k]);
        const struct tc_ak *aks[2] = {c.ak_pub, c.ak_pem};
        for (int a = 0; a < 2; a++) {
            for (size_t i = 0; i < c.msg.len; i++)
                for (int bit = 0; bit < 8; bit += 7) {
                    c.msg.data[i] ^= (uint8_t)(1u << bit);
                    int rc = verify_case(&c, aks[a], NULL, &why);
                    c.msg.data[i] ^= (uint8_t)(1u << bit);
                    if (rc == 0)
                        fail_msg("%s: attest byte %zu bit %d accepted", KINDS[k], i, bit);
                    assert_true(why.check[0] != 0);
                }
            for (size_t i = 0; i < c.sig.len; i++) {
                c.sig.data[i] ^= 0x01;
                int rc = verify_case(&c, aks[a], NULL, &why);
                c.sig.data[i] ^= 0x01;
                if (rc == 0)
                    fail_msg("%s: signature byte %zu accepted", KINDS[k], i);
            }
        }
        /* Every quoted PCR value byte matters. */
        for (size_t b = 0; b < c.pcrs.nbanks; b++)
            for (unsigned p = 0; p < TC_PCR_COUNT; p++) {
                if (!(c.pcrs.bank[b].mask & (1u << p)))
                    continue;
                for (size_t i = 0; i < c.pcrs.bank[b].alg->size; i++) {
                    c.pcrs.bank[b].value[p][i] ^= 0x80;
                    assert_int_equal(verify_case(&c, c.ak_pub, NULL, &why), TC_ERR_MISMATCH);
                    assert_string_equal(why.check, "quote.pcr_digest");
                    c.pcrs.bank[b].value[p][i] ^= 0x80;
                }
            }
        /* Every truncation fails cleanly. */
        for (size_t n = 0; n < c.msg.len; n++) {
            tc_reason_clear(&why);
            assert_int_not_equal(tc_quote_verify(c.ak_pub, c.msg.data, n, c.sig.data, c.sig.len,
                                                 &c.pcrs, &c.ex, NULL, &why),
                                 0);
        }
        case_free(&c);
    }
}

static void structure_checks(void **state)
{
    struct quote_case c;
    struct tc_reason why;
    case_load(&c, "ecc");
    /* Magic (first 4 bytes) and type (next 2) are reported as such, before the signature. */
    c.msg.data[0] ^= 0x10;
    assert_int_equal(verify_case(&c, c.ak_pub, NULL, &why), TC_ERR_FORMAT);
    assert_string_equal(why.check, "quote.magic");
    c.msg.data[0] ^= 0x10;
    c.msg.data[5] = 0x14; /* TPM2_ST_ATTEST_CERTIFY */
    assert_int_not_equal(verify_case(&c, c.ak_pub, NULL, &why), 0);
    assert_true(strcmp(why.check, "quote.type") == 0 || strcmp(why.check, "quote.format") == 0);
    c.msg.data[5] = 0x18;
    assert_int_equal(verify_case(&c, c.ak_pub, NULL, &why), 0);

    /* Trailing bytes after the attest and after the signature. */
    uint8_t big[TC_QUOTE_MAX_ATTEST + 8];
    memcpy(big, c.msg.data, c.msg.len);
    big[c.msg.len] = 0;
    tc_reason_clear(&why);
    assert_int_equal(tc_quote_verify(c.ak_pub, big, c.msg.len + 1, c.sig.data, c.sig.len, &c.pcrs,
                                     &c.ex, NULL, &why),
                     TC_ERR_TRAILING);
    assert_string_equal(why.check, "quote.format");
    memcpy(big, c.sig.data, c.sig.len);
    big[c.sig.len] = 0;
    assert_int_equal(tc_quote_verify(c.ak_pub, c.msg.data, c.msg.len, big, c.sig.len + 1, &c.pcrs,
                                     &c.ex, NULL, &why),
                     TC_ERR_TRAILING);
    assert_string_equal(why.check, "quote.signature");

    /* Selection: another one asked for, and PCR values that do not cover the quote. */
    struct tc_pcr_set s;
    struct tc_pcr_selection want;
    assert_int_equal(tc_pcrs_parse_selection("sha256:0,1,2,3,16,23", &s), 0);
    tc_pcr_selection_from_set(&s, &want);
    c.ex.selection = &want;
    assert_int_equal(verify_case(&c, c.ak_pub, NULL, &why), TC_ERR_MISMATCH);
    assert_string_equal(why.check, "quote.pcr_selection");
    /* Same PCRs, banks in the other order: a different quote. */
    assert_int_equal(tc_pcrs_parse_selection("sha1:16+sha256:0,1,2,3,16,23", &s), 0);
    tc_pcr_selection_from_set(&s, &want);
    assert_int_equal(verify_case(&c, c.ak_pub, NULL, &why), TC_ERR_MISMATCH);
    c.ex.selection = NULL;
    c.pcrs.bank[0].mask &= ~(1u << 23);
    assert_int_equal(verify_case(&c, c.ak_pub, NULL, &why), TC_ERR_MISMATCH);
    assert_string_equal(why.check, "quote.pcr_values");
    case_free(&c);
}

static void nonce_and_replay(void **state)
{
    struct quote_case c;
    struct tc_reason why;
    struct tc_quote_info info;
    case_load(&c, "ecc");
    /* Replay: the later round's nonce does not accept the earlier quote. */
    struct blob later = load("ecc.later.nonce");
    uint8_t n2[64];
    size_t n2_len;
    assert_int_equal(tc_hex_decode((char *)later.data, 40, n2, sizeof(n2), &n2_len), 0);
    c.ex.nonce = n2;
    c.ex.nonce_len = n2_len;
    assert_int_equal(verify_case(&c, c.ak_pub, &info, &why), TC_ERR_NONCE);
    assert_string_equal(why.check, "quote.nonce");
    /* A prefix of the right nonce, and an empty one, are not the nonce. */
    c.ex.nonce = c.nonce;
    c.ex.nonce_len = c.nonce_len - 1;
    assert_int_equal(verify_case(&c, c.ak_pub, &info, &why), TC_ERR_NONCE);
    c.ex.nonce_len = 0;
    assert_int_equal(verify_case(&c, c.ak_pub, &info, &why), TC_ERR_NONCE);
    free(later.data);
    case_free(&c);
}

static void real_counters(void **state)
{
    struct quote_case first, later, reboot;
    struct tc_quote_info i1, i2, i3;
    struct tc_reason why;
    case_load(&first, "ecc");
    case_load(&later, "ecc.later");
    assert_int_equal(verify_case(&first, first.ak_pub, &i1, &why), 0);
    later.ex.previous = &i1;
    assert_int_equal(verify_case(&later, later.ak_pub, &i2, &why), 0);
    assert_false(i2.rebooted);
    assert_true(i2.clock >= i1.clock);
    /* The earlier quote presented after the later one: the clock went back. */
    first.ex.previous = &i2;
    assert_int_equal(verify_case(&first, first.ak_pub, NULL, &why), TC_ERR_ROLLBACK);
    assert_string_equal(why.check, "quote.clock");
    case_load(&reboot, "ecc.reboot");
    reboot.ex.previous = &i2;
    assert_int_equal(verify_case(&reboot, reboot.ak_pub, &i3, &why), 0);
    assert_true(i3.rebooted);
    assert_int_equal(i3.reset_count, i2.reset_count + 1);
    /* And the pre-reboot quote after the reboot: resetCount went back. */
    later.ex.previous = &i3;
    assert_int_equal(verify_case(&later, later.ak_pub, NULL, &why), TC_ERR_ROLLBACK);
    assert_string_equal(why.check, "quote.reset_count");
    case_free(&first);
    case_free(&later);
    case_free(&reboot);
}

/* ---- Quotes re-signed with an OpenSSL key wrapped as a TPM AK ------------------------------ */

struct signer {
    EVP_PKEY *key;
    uint8_t pub[1024]; /* TPM2B_PUBLIC */
    size_t pub_len;
    struct tc_ak *ak;
};

static void signer_init(struct signer *s, TPMA_OBJECT attrs)
{
    memset(s, 0, sizeof(*s));
    s->key = EVP_EC_gen("P-256");
    assert_non_null(s->key);
    uint8_t point[65];
    size_t plen;
    assert_int_equal(EVP_PKEY_get_octet_string_param(s->key, OSSL_PKEY_PARAM_PUB_KEY, point,
                                                     sizeof(point), &plen),
                     1);
    assert_int_equal(plen, 65);
    TPM2B_PUBLIC p;
    memset(&p, 0, sizeof(p));
    p.publicArea.type = TPM2_ALG_ECC;
    p.publicArea.nameAlg = TPM2_ALG_SHA256;
    p.publicArea.objectAttributes = attrs;
    p.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    p.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
    p.publicArea.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    p.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    p.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    p.publicArea.unique.ecc.x.size = 32;
    memcpy(p.publicArea.unique.ecc.x.buffer, point + 1, 32);
    p.publicArea.unique.ecc.y.size = 32;
    memcpy(p.publicArea.unique.ecc.y.buffer, point + 33, 32);
    size_t off = 0;
    assert_int_equal(Tss2_MU_TPM2B_PUBLIC_Marshal(&p, s->pub, sizeof(s->pub), &off), 0);
    s->pub_len = off;
}

static void signer_free(struct signer *s)
{
    EVP_PKEY_free(s->key);
    tc_ak_free(s->ak);
}

/* Marshals a, signs it with s (ECDSA/SHA-256) into a TPMT_SIGNATURE. */
static void sign_attest(const struct signer *s, const TPMS_ATTEST *a, uint8_t *msg, size_t *msg_len,
                        uint8_t *sig, size_t *sig_len)
{
    size_t off = 0;
    assert_int_equal(Tss2_MU_TPMS_ATTEST_Marshal(a, msg, TC_QUOTE_MAX_ATTEST, &off), 0);
    *msg_len = off;
    uint8_t der[128];
    size_t der_len = sizeof(der);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, s->key), 1);
    assert_int_equal(EVP_DigestSign(md, der, &der_len, msg, *msg_len), 1);
    EVP_MD_CTX_free(md);
    const uint8_t *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    assert_non_null(es);
    TPMT_SIGNATURE t;
    memset(&t, 0, sizeof(t));
    t.sigAlg = TPM2_ALG_ECDSA;
    t.signature.ecdsa.hash = TPM2_ALG_SHA256;
    t.signature.ecdsa.signatureR.size =
        (UINT16)BN_bn2binpad(ECDSA_SIG_get0_r(es), t.signature.ecdsa.signatureR.buffer, 32);
    t.signature.ecdsa.signatureS.size =
        (UINT16)BN_bn2binpad(ECDSA_SIG_get0_s(es), t.signature.ecdsa.signatureS.buffer, 32);
    ECDSA_SIG_free(es);
    off = 0;
    assert_int_equal(Tss2_MU_TPMT_SIGNATURE_Marshal(&t, sig, TC_QUOTE_MAX_SIG, &off), 0);
    *sig_len = off;
}

#define AK_ATTRS                                                                                   \
    (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |            \
     TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT)

struct resigned {
    struct quote_case c; /* the real ecc quote, for its PCRs, nonce and structure */
    struct signer s;
    TPMS_ATTEST base;
    uint8_t msg[TC_QUOTE_MAX_ATTEST], sig[TC_QUOTE_MAX_SIG];
    size_t msg_len, sig_len;
};

static void resigned_init(struct resigned *r)
{
    struct tc_reason why;
    case_load(&r->c, "ecc");
    signer_init(&r->s, AK_ATTRS);
    assert_int_equal(tc_ak_parse(r->s.pub, r->s.pub_len, &r->s.ak, &why), 0);
    size_t off = 0;
    assert_int_equal(Tss2_MU_TPMS_ATTEST_Unmarshal(r->c.msg.data, r->c.msg.len, &off, &r->base), 0);
}

static int resigned_verify(struct resigned *r, const TPMS_ATTEST *a,
                           const struct tc_quote_info *prev, bool obfuscated,
                           struct tc_quote_info *info, struct tc_reason *why)
{
    sign_attest(&r->s, a, r->msg, &r->msg_len, r->sig, &r->sig_len);
    struct tc_quote_expect ex = r->c.ex;
    ex.previous = prev;
    ex.counters_obfuscated = obfuscated;
    tc_reason_clear(why);
    return tc_quote_verify(r->s.ak, r->msg, r->msg_len, r->sig, r->sig_len, &r->c.pcrs, &ex, info,
                           why);
}

static void monotonic_counters(void **state)
{
    struct resigned r;
    struct tc_quote_info prev, info;
    struct tc_reason why;
    resigned_init(&r);
    TPMS_ATTEST a = r.base;
    a.clockInfo.clock = 100000;
    a.clockInfo.resetCount = 7;
    a.clockInfo.restartCount = 3;
    assert_int_equal(resigned_verify(&r, &a, NULL, false, &prev, &why), 0);
    assert_int_equal(prev.clock, 100000);

    /* Later in the same boot. */
    TPMS_ATTEST b = a;
    b.clockInfo.clock = 100500;
    assert_int_equal(resigned_verify(&r, &b, &prev, false, &info, &why), 0);
    assert_false(info.rebooted);
    assert_false(info.restarted);
    /* Same clock (two quotes in one ms) is fine. */
    b.clockInfo.clock = 100000;
    assert_int_equal(resigned_verify(&r, &b, &prev, false, &info, &why), 0);
    /* Clock back in the same boot. */
    b.clockInfo.clock = 99999;
    assert_int_equal(resigned_verify(&r, &b, &prev, false, &info, &why), TC_ERR_ROLLBACK);
    assert_string_equal(why.check, "quote.clock");
    /* Clock back after a reset: a reboot, reported, not a failure. */
    b.clockInfo.resetCount = 8;
    b.clockInfo.restartCount = 0;
    assert_int_equal(resigned_verify(&r, &b, &prev, false, &info, &why), 0);
    assert_true(info.rebooted);
    /* resetCount back. */
    b.clockInfo.resetCount = 6;
    b.clockInfo.clock = 200000;
    assert_int_equal(resigned_verify(&r, &b, &prev, false, &info, &why), TC_ERR_ROLLBACK);
    assert_string_equal(why.check, "quote.reset_count");
    /* restartCount back without a reset; up is a resume. */
    b = a;
    b.clockInfo.clock = 200000;
    b.clockInfo.restartCount = 2;
    assert_int_equal(resigned_verify(&r, &b, &prev, false, &info, &why), TC_ERR_ROLLBACK);
    assert_string_equal(why.check, "quote.restart_count");
    b.clockInfo.restartCount = 4;
    assert_int_equal(resigned_verify(&r, &b, &prev, false, &info, &why), 0);
    assert_true(info.restarted);
    /* Firmware update noticed. */
    b.firmwareVersion ^= 1;
    assert_int_equal(resigned_verify(&r, &b, &prev, false, &info, &why), 0);
    assert_true(info.firmware_changed);

    /* Obfuscated counters wrap: 0xfffffff0 -> 5 is a reset with serial arithmetic. */
    a.clockInfo.resetCount = 0xfffffff0u;
    assert_int_equal(resigned_verify(&r, &a, NULL, true, &prev, &why), 0);
    b = a;
    b.clockInfo.resetCount = 5;
    b.clockInfo.clock = 1;
    assert_int_equal(resigned_verify(&r, &b, &prev, true, &info, &why), 0);
    assert_true(info.rebooted);
    assert_int_equal(resigned_verify(&r, &b, &prev, false, &info, &why), TC_ERR_ROLLBACK);
    b.clockInfo.resetCount = 0xffffff00u; /* behind, also in serial arithmetic */
    assert_int_equal(resigned_verify(&r, &b, &prev, true, &info, &why), TC_ERR_ROLLBACK);

    /* The signer must use the AK's name algorithm. */
    b = a;
    b.qualifiedSigner.name[1] = 0x04; /* sha1 id with a sha256-sized name */
    assert_int_equal(resigned_verify(&r, &b, NULL, false, &info, &why), TC_ERR_MISMATCH);
    assert_string_equal(why.check, "quote.signer");
    /* A wrong type with a valid signature. */
    b = r.base;
    b.type = TPM2_ST_ATTEST_TIME;
    memset(&b.attested, 0, sizeof(b.attested));
    assert_int_equal(resigned_verify(&r, &b, NULL, false, &info, &why), TC_ERR_FORMAT);
    assert_string_equal(why.check, "quote.type");
    b = r.base;
    b.magic = 0x12345678;
    assert_int_equal(resigned_verify(&r, &b, NULL, false, &info, &why), TC_ERR_FORMAT);
    assert_string_equal(why.check, "quote.magic");
    /* PCR index beyond 23 with a valid signature. */
    b = r.base;
    b.attested.quote.pcrSelect.pcrSelections[0].sizeofSelect = 4;
    b.attested.quote.pcrSelect.pcrSelections[0].pcrSelect[3] = 1;
    assert_int_equal(resigned_verify(&r, &b, NULL, false, &info, &why), TC_ERR_FORMAT);
    assert_string_equal(why.check, "quote.pcr_selection");
    signer_free(&r.s);
    case_free(&r.c);
}

static void ak_attributes(void **state)
{
    struct tc_reason why;
    struct tc_ak *ak = NULL;
    struct blob b = load("unrestricted.ak.pub");
    assert_int_equal(tc_ak_parse(b.data, b.len, &ak, &why), TC_ERR_KEY);
    assert_string_equal(why.check, "quote.ak_attributes");
    assert_null(ak);
    free(b.data);

    const TPMA_OBJECT bad[] = {
        AK_ATTRS | TPMA_OBJECT_DECRYPT,     /* decrypt-capable */
        AK_ATTRS & ~TPMA_OBJECT_RESTRICTED, /* not restricted */
        AK_ATTRS & ~TPMA_OBJECT_SIGN_ENCRYPT,
        AK_ATTRS & ~TPMA_OBJECT_FIXEDTPM, /* may live outside a TPM */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct signer s;
        signer_init(&s, bad[i]);
        assert_int_equal(tc_ak_parse(s.pub, s.pub_len, &ak, &why), TC_ERR_KEY);
        assert_string_equal(why.check, "quote.ak_attributes");
        signer_free(&s);
    }
    /* A good one parses as TPM2B_PUBLIC and as TPMT_PUBLIC, with the same name. */
    struct signer s;
    struct tc_ak *t = NULL;
    signer_init(&s, AK_ATTRS);
    assert_int_equal(tc_ak_from_tpm2b_public(s.pub, s.pub_len, &ak, &why), 0);
    assert_int_equal(tc_ak_parse(s.pub + 2, s.pub_len - 2, &t, &why), 0);
    const uint8_t *n1, *n2;
    size_t l1, l2;
    assert_int_equal(tc_ak_name(ak, &n1, &l1), 0);
    assert_int_equal(tc_ak_name(t, &n2, &l2), 0);
    assert_int_equal(l1, 34);
    assert_memory_equal(n1, n2, l1);
    tc_ak_free(t);
    /* Trailing bytes and a wrong size prefix are rejected. */
    uint8_t more[1100];
    memcpy(more, s.pub, s.pub_len);
    more[s.pub_len] = 0;
    assert_int_not_equal(tc_ak_from_tpm2b_public(more, s.pub_len + 1, &t, &why), 0);
    assert_null(t);
    /* An off-curve point is rejected. */
    s.pub[s.pub_len - 1] ^= 1;
    assert_int_not_equal(tc_ak_parse(s.pub, s.pub_len, &t, &why), 0);
    tc_ak_free(ak);
    signer_free(&s);
    tc_ak_free(NULL);
}

static void scheme_mismatch(void **state)
{
    struct quote_case rsa, pss, ecc;
    struct tc_reason why;
    case_load(&rsa, "rsa");
    case_load(&pss, "rsapss");
    case_load(&ecc, "ecc");
    /* An RSASSA quote checked with the RSAPSS AK (its own scheme is RSAPSS). */
    assert_int_equal(verify_case(&rsa, pss.ak_pub, NULL, &why), TC_ERR_KEY);
    assert_string_equal(why.check, "quote.scheme");
    /* Same with the PEM: no scheme to compare, so the signature itself fails. */
    assert_int_equal(verify_case(&rsa, pss.ak_pem, NULL, &why), TC_ERR_SIGNATURE);
    assert_string_equal(why.check, "quote.signature");
    /* ECDSA signature, RSA key. */
    assert_int_equal(verify_case(&ecc, rsa.ak_pem, NULL, &why), TC_ERR_KEY);
    assert_string_equal(why.check, "quote.scheme");
    case_free(&rsa);
    case_free(&pss);
    case_free(&ecc);
}

static void pcr_files(void **state)
{
    for (size_t k = 0; k < NKINDS; k++) {
        struct quote_case c;
        case_load(&c, KINDS[k]);
        /* The writer reproduces tpm2_quote -o byte for byte. */
        uint8_t *out;
        size_t len;
        assert_int_equal(tc_pcrfile_write_tpm2_tools(&c.pcrs, &out, &len), 0);
        assert_int_equal(len, c.pcrfile.len);
        assert_memory_equal(out, c.pcrfile.data, len);
        free(out);
        /* JSON round trip through the auto-detecting parser. */
        json_t *j = tc_pcrs_to_json(&c.pcrs);
        char *s = json_dumps(j, 0);
        struct tc_pcr_set back;
        assert_int_equal(tc_pcrfile_parse((uint8_t *)s, strlen(s), &back), 0);
        assert_int_equal(memcmp(&back, &c.pcrs, sizeof(back)), 0);
        free(s);
        json_decref(j);
        /* -F values: the digests in selection order. */
        uint8_t vals[TC_MAX_BANKS * TC_PCR_COUNT * TC_MAX_DIGEST];
        size_t n = 0;
        for (size_t b = 0; b < c.sel.nbanks; b++)
            for (unsigned p = 0; p < TC_PCR_COUNT; p++)
                if (c.sel.bank[b].mask & (1u << p)) {
                    memcpy(vals + n, c.pcrs.bank[b].value[p], c.sel.bank[b].alg->size);
                    n += c.sel.bank[b].alg->size;
                }
        assert_int_equal(tc_pcrfile_read_values(vals, n, &c.sel, &back), 0);
        assert_int_equal(memcmp(&back, &c.pcrs, sizeof(back)), 0);
        assert_int_equal(tc_pcrfile_read_values(vals, n - 1, &c.sel, &back), TC_ERR_FORMAT);
        /* Structural damage: every truncation, an extra list, a wrong digest size. */
        for (size_t i = 0; i < c.pcrfile.len; i++)
            assert_int_not_equal(tc_pcrfile_read_tpm2_tools(c.pcrfile.data, i, &back, NULL), 0);
        c.pcrfile.data[136 + 4] ^= 0x01; /* size of the first digest */
        assert_int_equal(tc_pcrfile_read_tpm2_tools(c.pcrfile.data, c.pcrfile.len, &back, NULL),
                         TC_ERR_FORMAT);
        c.pcrfile.data[136 + 4] ^= 0x01;
        c.pcrfile.data[136] ^= 0x01; /* digest count of the first list */
        assert_int_equal(tc_pcrfile_read_tpm2_tools(c.pcrfile.data, c.pcrfile.len, &back, NULL),
                         TC_ERR_FORMAT);
        case_free(&c);
    }
}

/* tpm2_quote -f plain signatures convert back to the TPMT_SIGNATURE that verifies. */
static void plain_signatures(void **state)
{
    for (size_t k = 0; k < NKINDS; k++) {
        struct quote_case c;
        struct tc_reason why;
        case_load(&c, KINDS[k]);
        TPMT_SIGNATURE t;
        size_t off = 0;
        assert_int_equal(Tss2_MU_TPMT_SIGNATURE_Unmarshal(c.sig.data, c.sig.len, &off, &t), 0);
        uint8_t plain[600] = {0}, *pp = plain;
        size_t plain_len;
        if (t.sigAlg == TPM2_ALG_ECDSA || t.sigAlg == TPM2_ALG_SM2) {
            ECDSA_SIG *es = ECDSA_SIG_new();
            ECDSA_SIG_set0(es,
                           BN_bin2bn(t.signature.ecdsa.signatureR.buffer,
                                     t.signature.ecdsa.signatureR.size, NULL),
                           BN_bin2bn(t.signature.ecdsa.signatureS.buffer,
                                     t.signature.ecdsa.signatureS.size, NULL));
            plain_len = (size_t)i2d_ECDSA_SIG(es, &pp);
            ECDSA_SIG_free(es);
        } else {
            plain_len = t.signature.rsassa.sig.size;
            memcpy(plain, t.signature.rsassa.sig.buffer, plain_len);
        }
        const struct tc_hash_alg *h = tc_hash_by_tpm(t.signature.any.hashAlg);
        uint8_t tss[TC_QUOTE_MAX_SIG];
        size_t tss_len;
        assert_int_equal(tc_sig_from_plain(c.ak_pem, t.sigAlg, h, plain, plain_len, tss, &tss_len),
                         0);
        free(c.sig.data);
        c.sig.data = malloc(tss_len);
        memcpy(c.sig.data, tss, tss_len);
        c.sig.len = tss_len;
        assert_int_equal(verify_case(&c, c.ak_pem, NULL, &why), 0);
        /* The AK's own scheme is the default for a TPM2B_PUBLIC AK. */
        assert_int_equal(tc_sig_from_plain(c.ak_pub, 0, h, plain, plain_len, tss, &tss_len), 0);
        assert_int_equal(tss_len, c.sig.len);
        assert_memory_equal(tss, c.sig.data, tss_len);
        /* Trailing bytes or a short RSA signature are not a signature. */
        assert_int_not_equal(tc_sig_from_plain(c.ak_pub, 0, h, plain, plain_len + 1, tss, &tss_len),
                             0);
        assert_int_not_equal(tc_sig_from_plain(c.ak_pub, 0, h, plain, plain_len - 1, tss, &tss_len),
                             0);
        case_free(&c);
    }
}

/* The shared TPM2B_PUBLIC parser: exactly one byte string per public area. */
static void tpm2b_public_framing(void **state)
{
    (void)state;
    struct blob b = load("ecc.ak.pub");
    TPM2B_PUBLIC pub;
    struct tc_ak *ak = NULL;
    struct tc_reason why;
    assert_int_equal(tc_tpm2b_public_unmarshal(b.data, b.len, &pub), 0);
    assert_int_equal(pub.size, b.len - 2);
    uint8_t *copy = malloc(b.len + 1);
    memcpy(copy, b.data, b.len);
    copy[b.len] = 0;
    assert_int_equal(tc_tpm2b_public_unmarshal(copy, b.len + 1, &pub), TC_ERR_TRAILING);
    assert_int_equal(tc_tpm2b_public_unmarshal(copy, b.len - 1, &pub), TC_ERR_FORMAT);
    const uint16_t sizes[] = {0, 1, (uint16_t)(b.len - 3), (uint16_t)(b.len - 1), 0xffff};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        copy[0] = (uint8_t)(sizes[i] >> 8);
        copy[1] = (uint8_t)sizes[i];
        assert_int_equal(tc_tpm2b_public_unmarshal(copy, b.len, &pub), TC_ERR_FORMAT);
        assert_int_equal(pub.size, 0); /* cleared on failure */
        assert_int_not_equal(tc_ak_from_tpm2b_public(copy, b.len, &ak, &why), 0);
        assert_null(ak);
    }
    assert_int_equal(tc_tpm2b_public_unmarshal(NULL, 0, &pub), TC_ERR_FORMAT);
    free(copy);
    free(b.data);
}

static void parse_garbage(void **state)
{
    struct tc_quote_info info;
    struct tc_reason why;
    struct tc_ak *ak;
    uint8_t buf[512];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 37 + 11);
    for (size_t n = 0; n < sizeof(buf); n += 7) {
        assert_int_not_equal(tc_quote_parse(buf, n, &info, &why), 0);
        assert_int_not_equal(tc_ak_parse(buf, n, &ak, &why), 0);
        struct tc_pcr_set s;
        assert_int_not_equal(tc_pcrfile_parse(buf, n, &s), 0);
    }
    assert_int_not_equal(
        tc_ak_parse((const uint8_t *)"-----BEGIN PUBLIC KEY-----\n", 27, &ak, &why), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(real_quotes_verify), cmocka_unit_test(flip_every_byte),
        cmocka_unit_test(structure_checks),   cmocka_unit_test(nonce_and_replay),
        cmocka_unit_test(real_counters),      cmocka_unit_test(monotonic_counters),
        cmocka_unit_test(ak_attributes),      cmocka_unit_test(scheme_mismatch),
        cmocka_unit_test(pcr_files),          cmocka_unit_test(plain_signatures),
        cmocka_unit_test(parse_garbage),      cmocka_unit_test(tpm2b_public_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
