/* SPDX-License-Identifier: Apache-2.0 */
#define LOGMODULE "softquote"
#include "trustcloud/softquote.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include "trustcloud/error.h"
#include "trustcloud/log.h"

struct tc_softak {
    enum tc_key_alg alg;
    EVP_PKEY *key;
    uint8_t pub[sizeof(TPM2B_PUBLIC)];
    size_t pub_len;
    uint8_t name[2 + 32];
};

void tc_softak_free(struct tc_softak *ak)
{
    if (ak == NULL)
        return;
    EVP_PKEY_free(ak->key);
    free(ak);
}

const uint8_t *tc_softak_public(const struct tc_softak *ak, size_t *len)
{
    *len = ak->pub_len;
    return ak->pub;
}

static int bn_param(EVP_PKEY *k, const char *name, uint8_t *out, size_t size)
{
    BIGNUM *bn = NULL;
    int ok = EVP_PKEY_get_bn_param(k, name, &bn) == 1 && BN_bn2binpad(bn, out, (int)size) >= 0;
    BN_free(bn);
    return ok ? 0 : TC_ERR_CRYPTO;
}

int tc_softak_new(enum tc_key_alg alg, struct tc_softak **out)
{
    *out = NULL;
    int rc = TC_ERR_CRYPTO;
    struct tc_softak *ak = calloc(1, sizeof(*ak));
    if (ak == NULL)
        return TC_ERR_ALLOC;
    ak->alg = alg;
    TPM2B_PUBLIC pub = {0};
    TPMT_PUBLIC *p = &pub.publicArea;
    p->nameAlg = TPM2_ALG_SHA256;
    p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                          TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                          TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
    if (alg == TC_KEY_ECC_P256) {
        if ((ak->key = EVP_EC_gen("P-256")) == NULL)
            goto out;
        p->type = TPM2_ALG_ECC;
        p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
        p->parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
        p->parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
        p->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
        p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
        p->unique.ecc.x.size = p->unique.ecc.y.size = 32;
        if (bn_param(ak->key, OSSL_PKEY_PARAM_EC_PUB_X, p->unique.ecc.x.buffer, 32) ||
            bn_param(ak->key, OSSL_PKEY_PARAM_EC_PUB_Y, p->unique.ecc.y.buffer, 32))
            goto out;
    } else if (alg == TC_KEY_RSA_2048) {
        if ((ak->key = EVP_RSA_gen(2048)) == NULL)
            goto out;
        p->type = TPM2_ALG_RSA;
        p->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
        p->parameters.rsaDetail.scheme.scheme = TPM2_ALG_RSASSA;
        p->parameters.rsaDetail.scheme.details.rsassa.hashAlg = TPM2_ALG_SHA256;
        p->parameters.rsaDetail.keyBits = 2048;
        p->unique.rsa.size = 256;
        if (bn_param(ak->key, OSSL_PKEY_PARAM_RSA_N, p->unique.rsa.buffer, 256))
            goto out;
    } else {
        rc = TC_ERR_UNSUPPORTED;
        goto out;
    }
    size_t off = 0;
    if (Tss2_MU_TPM2B_PUBLIC_Marshal(&pub, ak->pub, sizeof(ak->pub), &off) != TSS2_RC_SUCCESS) {
        rc = TC_ERR_INTERNAL;
        goto out;
    }
    ak->pub_len = off;
    uint8_t area[sizeof(TPMT_PUBLIC)];
    off = 0;
    if (Tss2_MU_TPMT_PUBLIC_Marshal(p, area, sizeof(area), &off) != TSS2_RC_SUCCESS) {
        rc = TC_ERR_INTERNAL;
        goto out;
    }
    ak->name[0] = 0x00;
    ak->name[1] = 0x0b;
    if (EVP_Digest(area, off, ak->name + 2, NULL, EVP_sha256(), NULL) != 1)
        goto out;
    *out = ak;
    ak = NULL;
    rc = 0;
out:
    tc_softak_free(ak);
    return rc;
}

int tc_softquote(const struct tc_softak *ak, const struct tc_pcr_set *sel,
                 const struct tc_pcr_set *pcrs, const uint8_t *nonce, size_t nonce_len,
                 uint64_t clock, uint32_t reset_count, uint32_t restart_count, uint8_t **attest,
                 size_t *attest_len, uint8_t **sig, size_t *sig_len)
{
    *attest = *sig = NULL;
    *attest_len = *sig_len = 0;
    int rc = TC_ERR_CRYPTO;
    TPMS_ATTEST a = {0};
    a.magic = TPM2_GENERATED_VALUE;
    a.type = TPM2_ST_ATTEST_QUOTE;
    a.qualifiedSigner.size = sizeof(ak->name);
    memcpy(a.qualifiedSigner.name, ak->name, sizeof(ak->name));
    if (nonce_len > sizeof(a.extraData.buffer))
        return TC_ERR_INVALID_ARG;
    a.extraData.size = (UINT16)nonce_len;
    memcpy(a.extraData.buffer, nonce, nonce_len);
    a.clockInfo.clock = clock;
    a.clockInfo.resetCount = reset_count;
    a.clockInfo.restartCount = restart_count;
    a.clockInfo.safe = 1;
    a.firmwareVersion = 0x2019102300163636ull;
    TPML_PCR_SELECTION *ps = &a.attested.quote.pcrSelect;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    uint8_t *abuf = NULL, *sbuf = NULL;
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        goto out;
    for (size_t b = 0; b < sel->nbanks; b++) {
        const struct tc_pcr_bank *sb = &sel->bank[b];
        const struct tc_pcr_bank *vb = tc_pcrs_bank_const(pcrs, sb->alg);
        if (vb == NULL || (vb->mask & sb->mask) != sb->mask) {
            rc = TC_ERR_NOT_FOUND;
            goto out;
        }
        TPMS_PCR_SELECTION *s = &ps->pcrSelections[ps->count++];
        s->hash = sb->alg->tpm_alg;
        s->sizeofSelect = 3;
        for (unsigned i = 0; i < TC_PCR_COUNT; i++) {
            if (!(sb->mask & (1u << i)))
                continue;
            s->pcrSelect[i / 8] |= (uint8_t)(1u << (i % 8));
            if (EVP_DigestUpdate(md, vb->value[i], sb->alg->size) != 1)
                goto out;
        }
    }
    unsigned int dlen = 0;
    if (EVP_DigestFinal_ex(md, a.attested.quote.pcrDigest.buffer, &dlen) != 1)
        goto out;
    a.attested.quote.pcrDigest.size = (UINT16)dlen;

    size_t alen = 0;
    abuf = malloc(sizeof(TPMS_ATTEST));
    if (abuf == NULL ||
        Tss2_MU_TPMS_ATTEST_Marshal(&a, abuf, sizeof(TPMS_ATTEST), &alen) != TSS2_RC_SUCCESS) {
        rc = abuf ? TC_ERR_INTERNAL : TC_ERR_ALLOC;
        goto out;
    }
    uint8_t digest[32], der[600];
    size_t derlen = sizeof(der);
    if (EVP_Digest(abuf, alen, digest, NULL, EVP_sha256(), NULL) != 1 ||
        (pctx = EVP_PKEY_CTX_new(ak->key, NULL)) == NULL || EVP_PKEY_sign_init(pctx) != 1 ||
        EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) != 1 ||
        (ak->alg == TC_KEY_RSA_2048 &&
         EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) ||
        EVP_PKEY_sign(pctx, der, &derlen, digest, sizeof(digest)) != 1)
        goto out;
    TPMT_SIGNATURE ts = {0};
    if (ak->alg == TC_KEY_ECC_P256) {
        const uint8_t *p = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
        if (es == NULL)
            goto out;
        ts.sigAlg = TPM2_ALG_ECDSA;
        ts.signature.ecdsa.hash = TPM2_ALG_SHA256;
        ts.signature.ecdsa.signatureR.size = ts.signature.ecdsa.signatureS.size = 32;
        int ok =
            BN_bn2binpad(ECDSA_SIG_get0_r(es), ts.signature.ecdsa.signatureR.buffer, 32) == 32 &&
            BN_bn2binpad(ECDSA_SIG_get0_s(es), ts.signature.ecdsa.signatureS.buffer, 32) == 32;
        ECDSA_SIG_free(es);
        if (!ok)
            goto out;
    } else {
        ts.sigAlg = TPM2_ALG_RSASSA;
        ts.signature.rsassa.hash = TPM2_ALG_SHA256;
        ts.signature.rsassa.sig.size = (UINT16)derlen;
        memcpy(ts.signature.rsassa.sig.buffer, der, derlen);
    }
    size_t slen = 0;
    sbuf = malloc(sizeof(TPMT_SIGNATURE));
    if (sbuf == NULL || Tss2_MU_TPMT_SIGNATURE_Marshal(&ts, sbuf, sizeof(TPMT_SIGNATURE), &slen) !=
                            TSS2_RC_SUCCESS) {
        rc = sbuf ? TC_ERR_INTERNAL : TC_ERR_ALLOC;
        goto out;
    }
    *attest = abuf;
    *attest_len = alen;
    *sig = sbuf;
    *sig_len = slen;
    abuf = sbuf = NULL;
    rc = 0;
out:
    free(abuf);
    free(sbuf);
    EVP_PKEY_CTX_free(pctx);
    EVP_MD_CTX_free(md);
    return rc;
}
