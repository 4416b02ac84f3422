/* SPDX-License-Identifier: Apache-2.0 */
/* TPM2_Certify attestations: parsing, verification, and TPM public areas as OpenSSL keys. */
#define LOGMODULE "certify"
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
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

static int unmarshal_public(const uint8_t *data, size_t len, TPM2B_PUBLIC *pub)
{
    if (len > TC_AK_MAX_FILE) {
        memset(pub, 0, sizeof(*pub));
        return TC_ERR_FORMAT;
    }
    return tc_tpm2b_public_unmarshal(data, len, pub);
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
    if ((rc = tc_attest_sig_verify(ak, "certify", attest, attest_len, sig, sig_len, NULL, NULL,
                                   why)) != 0)
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
        return tc_ak_rsa_from_tpm(p->unique.rsa.buffer, p->unique.rsa.size,
                                  p->parameters.rsaDetail.exponent, out);
    }
    if (p->type != TPM2_ALG_ECC)
        return TC_ERR_UNSUPPORTED;
    const TPMS_ECC_POINT *pt = &p->unique.ecc;
    if (p->parameters.eccDetail.curveID == TPM2_ECC_NIST_P256)
        rc = tc_ak_ec_from_tpm("EC", "P-256", 32, pt->x.buffer, pt->x.size, pt->y.buffer,
                               pt->y.size, out);
    else if (p->parameters.eccDetail.curveID == TPM2_ECC_NIST_P384)
        rc = tc_ak_ec_from_tpm("EC", "P-384", 48, pt->x.buffer, pt->x.size, pt->y.buffer,
                               pt->y.size, out);
    else
        return TC_ERR_UNSUPPORTED;
    /* Whatever OpenSSL refuses in an EC point is a bad key here, and leaves no error queue. */
    if (rc != 0)
        ERR_clear_error();
    return rc == TC_ERR_CRYPTO ? TC_ERR_KEY : rc;
}
