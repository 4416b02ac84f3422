/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The vTPM CA key (an unrestricted ECDSA signing key under the EK), its context file,
 * TPM2_Certify of a key by the AK, and TPM2_Sign of a digest.
 */
#define LOGMODULE "tpm"
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <tss2/tss2_mu.h>

#include "tpm_internal.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/quote.h"
#include "trustcloud/tpm_certify.h"

static const uint8_t vcctx_magic[4] = {'T', 'C', 'V', 'C'};
#define VCCTX_VERSION 1
#define CERTIFY_MAX_NONCE 64

/* Not restricted: the key signs certificate TBS hashes, which a restricted key refuses (it only
 * signs digests the TPM computed itself, with a ticket). fixedTPM|fixedParent: it can never be
 * duplicated out of this TPM, which is what TPM2_Certify lets a verifier check. */
static const TPMA_OBJECT vtpm_ca_attrs = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                         TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                         TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_SIGN_ENCRYPT;

static void vtpm_ca_template(TPM2B_PUBLIC *t)
{
    memset(t, 0, sizeof(*t));
    TPMT_PUBLIC *p = &t->publicArea;
    p->type = TPM2_ALG_ECC;
    p->nameAlg = TPM2_ALG_SHA256;
    p->objectAttributes = vtpm_ca_attrs;
    p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    p->parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
    p->parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    p->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
}

/* The public area must be exactly what vtpm_ca_template makes (apart from the point). */
static int vtpm_ca_public_check(const TPM2B_PUBLIC *pub)
{
    TPM2B_PUBLIC t;
    vtpm_ca_template(&t);
    const TPMT_PUBLIC *a = &pub->publicArea, *e = &t.publicArea;
    if (a->type != e->type || a->nameAlg != e->nameAlg ||
        a->objectAttributes != e->objectAttributes || a->authPolicy.size != 0 ||
        a->parameters.eccDetail.curveID != e->parameters.eccDetail.curveID ||
        a->parameters.eccDetail.scheme.scheme != e->parameters.eccDetail.scheme.scheme ||
        a->parameters.eccDetail.scheme.details.ecdsa.hashAlg !=
            e->parameters.eccDetail.scheme.details.ecdsa.hashAlg ||
        a->parameters.eccDetail.symmetric.algorithm != TPM2_ALG_NULL)
        return TC_ERR_KEY;
    return 0;
}

/* Loads pub/priv under the EK; the key is always ECDSA P-256 (vtpm_ca_public_check). */
static int load_blobs(struct tc_tpm *tpm, const struct tc_tpm_key *ek, const TPM2B_PUBLIC *pub,
                      const TPM2B_PRIVATE *priv, struct tc_tpm_key *key)
{
    int rc = tc_tpm_load_under_ek(tpm, ek, pub, priv, "vTPM CA key", key);
    if (rc == 0) {
        key->alg = TC_KEY_ECC_P256;
        key->scheme = TC_SIG_ECDSA;
    }
    return rc;
}

int tc_tpm_vtpm_ca_create(struct tc_tpm *tpm, const struct tc_tpm_key *ek, const char *ctx_path,
                          struct tc_tpm_key *key)
{
    TPM2B_PUBLIC tmpl;
    TPM2B_PRIVATE *priv = NULL;
    TPM2B_PUBLIC *pub = NULL;
    int rc;

    memset(key, 0, sizeof(*key));
    if (tpm == NULL || ek == NULL || ek->esys_handle == 0 || ctx_path == NULL)
        return TC_ERR_INVALID_ARG;
    vtpm_ca_template(&tmpl);
    if ((rc = tc_tpm_create_under_ek(tpm, ek, &tmpl, "vTPM CA key", &priv, &pub)) != 0)
        goto out;
    if ((rc = load_blobs(tpm, ek, pub, priv, key)) != 0)
        goto out;
    const uint8_t head[] = {vcctx_magic[0], vcctx_magic[1], vcctx_magic[2], vcctx_magic[3], 0,
                            VCCTX_VERSION};
    rc = tc_tpm_ctx_save(ctx_path, TC_TPM_VTPM_CA_CTX_MAX, head, sizeof(head), ek, key, priv);
out:
    if (priv != NULL)
        OPENSSL_cleanse(priv, sizeof(*priv));
    Esys_Free(priv);
    Esys_Free(pub);
    if (rc != 0)
        tc_tpm_key_release(tpm, key);
    return rc;
}

/* Parses the (untrusted) context file bytes: both blobs unmarshaled exactly. */
static int ctx_parse(const uint8_t *data, size_t len, uint8_t *parent_name, size_t *parent_len,
                     TPM2B_PUBLIC *pub, TPM2B_PRIVATE *priv)
{
    struct tc_reader r;
    const uint8_t *pubv, *privv;
    size_t plen, qlen;
    int rc;

    if ((rc = tc_tpm_ctx_open(&r, data, len, TC_TPM_VTPM_CA_CTX_MAX, vcctx_magic, VCCTX_VERSION)) !=
        0)
        return rc;
    if ((rc = tc_tpm_ctx_read_tail(&r, sizeof(TPM2B_PRIVATE), parent_name, parent_len, &pubv, &plen,
                                   &privv, &qlen)) != 0 ||
        (rc = tc_tpm_unmarshal_public(pubv, plen, pub)) != 0 ||
        (rc = tc_tpm_unmarshal_private(privv, qlen, priv)) != 0)
        return rc;
    return vtpm_ca_public_check(pub);
}

int tc_tpm_vtpm_ca_load(struct tc_tpm *tpm, const struct tc_tpm_key *ek, const char *ctx_path,
                        struct tc_tpm_key *key)
{
    uint8_t *data = NULL;
    size_t len = 0, parent_len = 0;
    uint8_t parent[TC_TPM_MAX_NAME];
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    int rc;

    memset(key, 0, sizeof(*key));
    memset(&pub, 0, sizeof(pub));
    memset(&priv, 0, sizeof(priv));
    if (tpm == NULL || ek == NULL || ek->esys_handle == 0 || ctx_path == NULL)
        return TC_ERR_INVALID_ARG;
    if ((rc = tc_file_read(ctx_path, TC_TPM_VTPM_CA_CTX_MAX, &data, &len)) != 0)
        goto out;
    if ((rc = ctx_parse(data, len, parent, &parent_len, &pub, &priv)) != 0) {
        LOG_ERROR("%s: not a usable vTPM CA context file (%s)", ctx_path, tc_strerror(rc));
        goto out;
    }
    if (parent_len != ek->name_len || memcmp(parent, ek->name, parent_len) != 0) {
        LOG_ERROR("%s: the vTPM CA key was created under another EK", ctx_path);
        rc = TC_ERR_MISMATCH;
        goto out;
    }
    rc = load_blobs(tpm, ek, &pub, &priv, key);
out:
    if (data != NULL)
        OPENSSL_cleanse(data, len);
    free(data);
    OPENSSL_cleanse(&priv, sizeof(priv));
    if (rc != 0)
        memset(key, 0, sizeof(*key));
    return rc;
}

int tc_tpm_certify(struct tc_tpm *tpm, const struct tc_tpm_key *key, const struct tc_tpm_key *ak,
                   const uint8_t *nonce, size_t nonce_len, struct tc_tpm_certify *out)
{
    TPM2B_DATA qualifying;
    TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_NULL};
    TPM2B_ATTEST *attest = NULL;
    TPMT_SIGNATURE *sig = NULL;
    uint8_t sigbuf[sizeof(TPMT_SIGNATURE)];
    size_t siglen = 0;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (tpm == NULL || key == NULL || key->esys_handle == 0 || ak == NULL || ak->esys_handle == 0 ||
        nonce_len > CERTIFY_MAX_NONCE || (nonce == NULL && nonce_len))
        return TC_ERR_INVALID_ARG;
    memset(&qualifying, 0, sizeof(qualifying));
    qualifying.size = (uint16_t)nonce_len;
    if (nonce_len)
        memcpy(qualifying.buffer, nonce, nonce_len);
    /* Both authorizations are empty passwords: the certified object's (ADMIN role, allowed
     * since it has no adminWithPolicy) and the AK's. TPM2_ALG_NULL: the AK's own scheme. */
    TSS2_RC r = Esys_Certify(tpm->esys, key->esys_handle, ak->esys_handle, ESYS_TR_PASSWORD,
                             ESYS_TR_PASSWORD, ESYS_TR_NONE, &qualifying, &scheme, &attest, &sig);
    if (r != TSS2_RC_SUCCESS) {
        rc = tc_tpm_rc(r, "Esys_Certify");
        goto out;
    }
    if (attest->size == 0 || attest->size > sizeof(attest->attestationData) ||
        Tss2_MU_TPMT_SIGNATURE_Marshal(sig, sigbuf, sizeof(sigbuf), &siglen) != TSS2_RC_SUCCESS) {
        rc = TC_ERR_TPM;
        goto out;
    }
    if ((out->attest = malloc(attest->size)) == NULL || (out->sig = malloc(siglen)) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    memcpy(out->attest, attest->attestationData, attest->size);
    out->attest_len = attest->size;
    memcpy(out->sig, sigbuf, siglen);
    out->sig_len = siglen;
out:
    Esys_Free(attest);
    Esys_Free(sig);
    if (rc != 0)
        tc_tpm_certify_release(out);
    return rc;
}

void tc_tpm_certify_release(struct tc_tpm_certify *c)
{
    if (c == NULL)
        return;
    free(c->attest);
    free(c->sig);
    memset(c, 0, sizeof(*c));
}

/* DER ECDSA-Sig-Value from the TPM's r and s. */
static int ecdsa_to_der(const TPMS_SIGNATURE_ECC *e, uint8_t **der, size_t *der_len)
{
    int rc = TC_ERR_CRYPTO;
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *br = BN_bin2bn(e->signatureR.buffer, e->signatureR.size, NULL);
    BIGNUM *bs = BN_bin2bn(e->signatureS.buffer, e->signatureS.size, NULL);
    unsigned char *p = NULL;

    if (s == NULL || br == NULL || bs == NULL || ECDSA_SIG_set0(s, br, bs) != 1)
        goto out;
    br = bs = NULL; /* owned by s now */
    int n = i2d_ECDSA_SIG(s, &p);
    if (n <= 0)
        goto out;
    if ((*der = malloc((size_t)n)) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    memcpy(*der, p, (size_t)n);
    *der_len = (size_t)n;
    rc = 0;
out:
    OPENSSL_free(p);
    BN_free(br);
    BN_free(bs);
    ECDSA_SIG_free(s);
    return rc;
}

int tc_tpm_sign_digest(struct tc_tpm *tpm, const struct tc_tpm_key *key, const uint8_t digest[32],
                       uint8_t **der, size_t *der_len)
{
    TPM2B_DIGEST d = {.size = 32};
    TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_ECDSA};
    /* The null ticket: "this digest was not computed by the TPM"; accepted for unrestricted
     * keys only, which is why the vTPM CA key is not restricted. */
    TPMT_TK_HASHCHECK ticket = {.tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL};
    TPMT_SIGNATURE *sig = NULL;
    int rc;

    *der = NULL;
    *der_len = 0;
    if (tpm == NULL || key == NULL || key->esys_handle == 0 || digest == NULL)
        return TC_ERR_INVALID_ARG;
    memcpy(d.buffer, digest, 32);
    scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    TSS2_RC r = Esys_Sign(tpm->esys, key->esys_handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                          &d, &scheme, &ticket, &sig);
    if (r != TSS2_RC_SUCCESS)
        return tc_tpm_rc(r, "Esys_Sign");
    if (sig->sigAlg != TPM2_ALG_ECDSA || sig->signature.ecdsa.hash != TPM2_ALG_SHA256)
        rc = TC_ERR_TPM;
    else
        rc = ecdsa_to_der(&sig->signature.ecdsa, der, der_len);
    Esys_Free(sig);
    return rc;
}
