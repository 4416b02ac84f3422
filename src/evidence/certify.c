/* SPDX-License-Identifier: Apache-2.0 */
/* TPM2_Certify attestations: parsing, verification, and TPM public areas as OpenSSL keys. */
#define LOGMODULE "certify"
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include "quote_internal.h"
#include "trustcloud/certify.h"
#include "trustcloud/error.h"
#include "trustcloud/hashalg.h"
#include "trustcloud/log.h"

/* What the certified key must be: generated in the TPM and unable to leave it, a signer. */
static const TPMA_OBJECT required_attrs = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                          TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                          TPMA_OBJECT_SIGN_ENCRYPT;
/* A decrypting key could be used to decrypt, a restricted one is an AK, not a CA key. */
static const TPMA_OBJECT forbidden_attrs = TPMA_OBJECT_DECRYPT | TPMA_OBJECT_RESTRICTED;

int tc_certify_parse(const uint8_t *attest, size_t attest_len, struct tc_certify_info *info,
                     struct tc_reason *why)
{
    TPMS_ATTEST a;
    size_t off = 0;

    memset(info, 0, sizeof(*info));
    if (attest == NULL || attest_len == 0)
        return tc_fail(why, TC_ERR_FORMAT, "certify.format", -1, "empty attestation");
    if (attest_len > TC_CERTIFY_MAX_ATTEST)
        return tc_fail(why, TC_ERR_TOO_LARGE, "certify.format", -1,
                       "attestation of %zu bytes exceeds %d", attest_len, TC_CERTIFY_MAX_ATTEST);
    memset(&a, 0, sizeof(a));
    if (Tss2_MU_TPMS_ATTEST_Unmarshal(attest, attest_len, &off, &a) != TSS2_RC_SUCCESS)
        return tc_fail(why, TC_ERR_FORMAT, "certify.format", -1, "not a TPMS_ATTEST");
    if (off != attest_len)
        return tc_fail(why, TC_ERR_TRAILING, "certify.format", -1,
                       "%zu bytes after the TPMS_ATTEST", attest_len - off);
    if (a.magic != TPM2_GENERATED_VALUE)
        return tc_fail(why, TC_ERR_FORMAT, "certify.magic", -1,
                       "magic 0x%08x is not TPM_GENERATED_VALUE", a.magic);
    if (a.type != TPM2_ST_ATTEST_CERTIFY)
        return tc_fail(why, TC_ERR_FORMAT, "certify.type", -1,
                       "attestation type 0x%04x is not a certify (0x%04x)", a.type,
                       TPM2_ST_ATTEST_CERTIFY);
    /* The unmarshalers bound every TPM2B by its buffer: these sizes fit our arrays. */
    const TPMS_CERTIFY_INFO *c = &a.attested.certify;
    if (a.qualifiedSigner.size > sizeof(info->signer) || a.extraData.size > sizeof(info->nonce) ||
        c->name.size > sizeof(info->name) || c->qualifiedName.size > sizeof(info->qualified_name))
        return tc_fail(why, TC_ERR_FORMAT, "certify.format", -1, "oversized field");
    info->clock = a.clockInfo.clock;
    info->reset_count = a.clockInfo.resetCount;
    info->restart_count = a.clockInfo.restartCount;
    info->safe = a.clockInfo.safe == TPM2_YES;
    info->firmware_version = a.firmwareVersion;
    memcpy(info->signer, a.qualifiedSigner.name, a.qualifiedSigner.size);
    info->signer_len = a.qualifiedSigner.size;
    memcpy(info->nonce, a.extraData.buffer, a.extraData.size);
    info->nonce_len = a.extraData.size;
    memcpy(info->name, c->name.name, c->name.size);
    info->name_len = c->name.size;
    memcpy(info->qualified_name, c->qualifiedName.name, c->qualifiedName.size);
    info->qualified_name_len = c->qualifiedName.size;
    return 0;
}

/* DER ECDSA-Sig-Value of a TPM ECDSA/SM2 signature. *der is OpenSSL-allocated. */
static int ecc_sig_der(const TPMS_SIGNATURE_ECC *e, unsigned char **der, int *der_len)
{
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(e->signatureR.buffer, e->signatureR.size, NULL);
    BIGNUM *sv = BN_bin2bn(e->signatureS.buffer, e->signatureS.size, NULL);
    int rc = TC_ERR_CRYPTO;
    *der = NULL;
    if (s == NULL || r == NULL || sv == NULL || ECDSA_SIG_set0(s, r, sv) != 1)
        goto out;
    r = sv = NULL;
    if ((*der_len = i2d_ECDSA_SIG(s, der)) <= 0)
        goto out;
    rc = 0;
out:
    BN_free(r);
    BN_free(sv);
    ECDSA_SIG_free(s);
    return rc;
}

/* Checks the scheme against the AK and the signature over attest. */
static int verify_signature(const struct tc_ak *ak, const uint8_t *attest, size_t attest_len,
                            const uint8_t *sig, size_t sig_len, struct tc_reason *why)
{
    TPMT_SIGNATURE s;
    size_t off = 0;
    unsigned char *der = NULL;
    int der_len = 0, pad = 0, rc;
    const uint8_t *sv;
    size_t sv_len;
    EVP_PKEY_CTX *ctx = NULL;

    memset(&s, 0, sizeof(s));
    if (sig == NULL || sig_len > TC_QUOTE_MAX_SIG ||
        Tss2_MU_TPMT_SIGNATURE_Unmarshal(sig, sig_len, &off, &s) != TSS2_RC_SUCCESS)
        return tc_fail(why, TC_ERR_FORMAT, "certify.signature", -1, "not a TPMT_SIGNATURE");
    if (off != sig_len)
        return tc_fail(why, TC_ERR_TRAILING, "certify.signature", -1,
                       "%zu bytes after the TPMT_SIGNATURE", sig_len - off);
    uint16_t hash_alg = s.signature.any.hashAlg;
    bool fits =
        (s.sigAlg == TPM2_ALG_ECDSA && ak->key_type == TC_AK_ECC) ||
        (s.sigAlg == TPM2_ALG_SM2 && ak->key_type == TC_AK_SM2) ||
        ((s.sigAlg == TPM2_ALG_RSASSA || s.sigAlg == TPM2_ALG_RSAPSS) && ak->key_type == TC_AK_RSA);
    if (!fits)
        return tc_fail(why, TC_ERR_KEY, "certify.scheme", -1,
                       "signature algorithm 0x%04x does not fit the AK's key type", s.sigAlg);
    if (ak->scheme != TPM2_ALG_NULL && (s.sigAlg != ak->scheme || hash_alg != ak->scheme_hash))
        return tc_fail(why, TC_ERR_KEY, "certify.scheme", -1,
                       "signature scheme 0x%04x/0x%04x is not the AK's 0x%04x/0x%04x", s.sigAlg,
                       hash_alg, ak->scheme, ak->scheme_hash);
    const struct tc_hash_alg *hash = tc_hash_by_tpm(hash_alg);
    if (hash == NULL || tc_hash_evp(hash) == NULL)
        return tc_fail(why, TC_ERR_UNSUPPORTED, "certify.scheme", -1,
                       "unsupported signature hash 0x%04x", hash_alg);
    uint8_t dgst[TC_MAX_DIGEST];
    if ((rc = tc_hash(hash, attest, attest_len, dgst)) != 0)
        return tc_fail(why, rc, "certify.signature", -1, "hashing the attestation failed");

    if (s.sigAlg == TPM2_ALG_ECDSA || s.sigAlg == TPM2_ALG_SM2) {
        if ((rc = ecc_sig_der(&s.signature.ecdsa, &der, &der_len)) != 0) {
            rc = tc_fail(why, TC_ERR_SIGNATURE, "certify.signature", -1, "unusable r or s");
            goto out;
        }
        sv = der;
        sv_len = (size_t)der_len;
    } else {
        pad = s.sigAlg == TPM2_ALG_RSASSA ? RSA_PKCS1_PADDING : RSA_PKCS1_PSS_PADDING;
        sv = s.signature.rsassa.sig.buffer; /* rsassa and rsapss share the layout */
        sv_len = s.signature.rsassa.sig.size;
    }
    rc = TC_ERR_CRYPTO;
    ctx = EVP_PKEY_CTX_new(ak->pkey, NULL);
    if (ctx == NULL || EVP_PKEY_verify_init(ctx) != 1)
        goto out;
    if (pad && (EVP_PKEY_CTX_set_rsa_padding(ctx, pad) != 1 ||
                EVP_PKEY_CTX_set_signature_md(ctx, tc_hash_evp(hash)) != 1 ||
                (pad == RSA_PKCS1_PSS_PADDING &&
                 EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_AUTO) != 1)))
        goto out;
    if (EVP_PKEY_verify(ctx, sv, sv_len, dgst, hash->size) != 1) {
        ERR_clear_error();
        rc = tc_fail(why, TC_ERR_SIGNATURE, "certify.signature", -1,
                     "the signature does not verify with the AK");
        goto out;
    }
    rc = 0;
out:
    if (rc == TC_ERR_CRYPTO)
        rc = tc_fail(why, rc, "certify.signature", -1, "OpenSSL could not set up verification");
    EVP_PKEY_CTX_free(ctx);
    OPENSSL_free(der);
    return rc;
}

static int unmarshal_public(const uint8_t *data, size_t len, TPM2B_PUBLIC *pub)
{
    size_t off = 0;
    memset(pub, 0, sizeof(*pub));
    if (data == NULL || len == 0 || len > TC_AK_MAX_FILE ||
        Tss2_MU_TPM2B_PUBLIC_Unmarshal(data, len, &off, pub) != TSS2_RC_SUCCESS)
        return TC_ERR_FORMAT;
    return off == len ? 0 : TC_ERR_TRAILING;
}

int tc_certify_verify(const struct tc_ak *ak, const uint8_t *attest, size_t attest_len,
                      const uint8_t *sig, size_t sig_len, const uint8_t *certified_pub,
                      size_t certified_pub_len, const uint8_t *nonce, size_t nonce_len,
                      struct tc_certify_info *info_out, struct tc_reason *why)
{
    struct tc_certify_info info;
    TPM2B_PUBLIC pub;
    uint8_t name[TC_QUOTE_MAX_NAME];
    size_t name_len = 0;
    int rc;

    if (info_out != NULL)
        memset(info_out, 0, sizeof(*info_out));
    if (ak == NULL || sig == NULL || certified_pub == NULL || (nonce == NULL && nonce_len))
        return tc_fail(why, TC_ERR_INVALID_ARG, "certify.args", -1,
                       "AK, signature, certified public key and nonce are required");
    if ((rc = tc_certify_parse(attest, attest_len, &info, why)) != 0)
        return rc;
    if (info.nonce_len != nonce_len || CRYPTO_memcmp(info.nonce, nonce, nonce_len) != 0)
        return tc_fail(why, TC_ERR_NONCE, "certify.nonce", -1,
                       "the attestation carries a %zu-byte nonce that is not the one asked for",
                       info.nonce_len);
    if ((rc = verify_signature(ak, attest, attest_len, sig, sig_len, why)) != 0)
        return rc;
    if (ak->has_public && (info.signer_len != ak->name_len || memcmp(info.signer, ak->name, 2)))
        return tc_fail(why, TC_ERR_MISMATCH, "certify.signer", -1,
                       "qualifiedSigner does not use the AK's name algorithm");

    if ((rc = unmarshal_public(certified_pub, certified_pub_len, &pub)) != 0)
        return tc_fail(why, rc, "certify.key", -1, "the certified key is not a TPM2B_PUBLIC");
    if ((rc = tc_tpm_public_name(certified_pub, certified_pub_len, name, &name_len)) != 0)
        return tc_fail(why, rc, "certify.key", -1, "cannot compute the certified key's name");
    if (info.name_len != name_len || memcmp(info.name, name, name_len) != 0)
        return tc_fail(why, TC_ERR_MISMATCH, "certify.name", -1,
                       "the attestation certifies another object than the given public key");
    /* Only now is the public area known to be the one in the TPM: judge its attributes. */
    TPMA_OBJECT attrs = pub.publicArea.objectAttributes;
    if ((attrs & required_attrs) != required_attrs || (attrs & forbidden_attrs) != 0)
        return tc_fail(why, TC_ERR_KEY, "certify.attributes", -1,
                       "attributes 0x%08x: need fixedTPM, fixedParent, sensitiveDataOrigin and "
                       "sign, without decrypt or restricted",
                       attrs);
    const TPMT_PUBLIC *p = &pub.publicArea;
    if (p->type != TPM2_ALG_ECC || p->parameters.eccDetail.curveID != TPM2_ECC_NIST_P256 ||
        p->parameters.eccDetail.scheme.scheme != TPM2_ALG_ECDSA ||
        p->parameters.eccDetail.scheme.details.ecdsa.hashAlg != TPM2_ALG_SHA256)
        return tc_fail(why, TC_ERR_KEY, "certify.key", -1,
                       "the certified key is not an ECC P-256 ECDSA-SHA256 key");
    if (info_out != NULL)
        *info_out = info;
    return 0;
}

/* RSA key from a big-endian modulus and a TPM exponent (0 means 65537). */
static int rsa_key(const uint8_t *n, size_t n_len, uint32_t exponent, EVP_PKEY **out)
{
    int rc = TC_ERR_CRYPTO;
    BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL), *bn_e = BN_new();
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;

    if (bn_n == NULL || bn_e == NULL || bld == NULL)
        goto out;
    if (BN_set_word(bn_e, exponent ? exponent : 65537) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
        goto out;
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    rc = 0;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    return rc;
}

/* EC key from affine coordinates on a named curve, checked to be on the curve. */
static int ec_key(const char *group, size_t field, const TPMS_ECC_POINT *pt, EVP_PKEY **out)
{
    uint8_t point[1 + 2 * 48];
    EVP_PKEY_CTX *ctx = NULL, *chk = NULL;
    int rc = TC_ERR_CRYPTO;

    if (pt->x.size == 0 || pt->y.size == 0 || pt->x.size > field || pt->y.size > field)
        return TC_ERR_FORMAT;
    memset(point, 0, sizeof(point));
    point[0] = 0x04;
    memcpy(point + 1 + field - pt->x.size, pt->x.buffer, pt->x.size);
    memcpy(point + 1 + 2 * field - pt->y.size, pt->y.buffer, pt->y.size);
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * field);
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        ERR_clear_error();
        rc = TC_ERR_KEY;
        goto out;
    }
    chk = EVP_PKEY_CTX_new_from_pkey(NULL, *out, NULL);
    if (chk == NULL || EVP_PKEY_public_check(chk) != 1) {
        ERR_clear_error();
        EVP_PKEY_free(*out);
        *out = NULL;
        rc = TC_ERR_KEY;
        goto out;
    }
    rc = 0;
out:
    EVP_PKEY_CTX_free(chk);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

int tc_certify_public_key(const uint8_t *tpm2b_public, size_t len, EVP_PKEY **out)
{
    TPM2B_PUBLIC pub;
    int rc;

    *out = NULL;
    if ((rc = unmarshal_public(tpm2b_public, len, &pub)) != 0)
        return rc;
    const TPMT_PUBLIC *p = &pub.publicArea;
    if (p->type == TPM2_ALG_RSA) {
        if (p->unique.rsa.size == 0)
            return TC_ERR_FORMAT;
        return rsa_key(p->unique.rsa.buffer, p->unique.rsa.size, p->parameters.rsaDetail.exponent,
                       out);
    }
    if (p->type == TPM2_ALG_ECC) {
        if (p->parameters.eccDetail.curveID == TPM2_ECC_NIST_P256)
            return ec_key("P-256", 32, &p->unique.ecc, out);
        if (p->parameters.eccDetail.curveID == TPM2_ECC_NIST_P384)
            return ec_key("P-384", 48, &p->unique.ecc, out);
    }
    return TC_ERR_UNSUPPORTED;
}
