/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Endorsement keys (TCG EK Credential Profile default templates), attestation keys created
 * under them, the AK context file, and TPM object names.
 */
#define LOGMODULE "tpm"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <tss2/tss2_mu.h>

#include "tpm_internal.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/quote.h"

/* PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256: the authPolicy of the low-range EK templates
 * (TCG EK Credential Profile 2.0, B.3.3). */
static const uint8_t ek_policy[32] = {
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xB3, 0xF8, 0x1A, 0x90, 0xCC, 0x8D, 0x46, 0xA5, 0xD7, 0x24,
    0xFD, 0x52, 0xD7, 0x6E, 0x06, 0x52, 0x0B, 0x64, 0xF2, 0xA1, 0xDA, 0x1B, 0x33, 0x14, 0x69, 0xAA,
};

#define EK_CERT_MAX (16u * 1024)

/* AK context file: "TCAK" | u16 version | u16 alg | u16 scheme | u16 parent name length |
 * u16 public length | u16 private length | parent name | TPM2B_PUBLIC | TPM2B_PRIVATE, all
 * big-endian. The private blob is already encrypted and integrity-protected by the TPM under
 * the EK's seed; the parent name lets a load under the wrong EK fail with a clear error. */
static const uint8_t akctx_magic[4] = {'T', 'C', 'A', 'K'};
#define AKCTX_VERSION 1
#define AKCTX_MAX 8192

static const TPMA_OBJECT ak_attrs =
    TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
    TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_NODA;

static void key_clear(struct tc_tpm_key *k)
{
    memset(k, 0, sizeof(*k));
}

/* nameAlg (2 bytes BE) || H_nameAlg(TPMT_PUBLIC) of a marshaled TPM2B_PUBLIC. (src/evidence has
 * a public equivalent for verifiers; this one keeps the TPM layer self-contained.) */
static int public_name(const uint8_t *pub, size_t pub_len, uint8_t *name, size_t *name_len)
{
    TPM2B_PUBLIC p;
    uint8_t area[sizeof(TPMT_PUBLIC)];
    size_t alen = 0;
    int rc;

    *name_len = 0;
    if ((rc = tc_tpm_unmarshal_public(pub, pub_len, &p)) != 0)
        return rc;
    const struct tc_hash_alg *alg = tc_hash_by_tpm(p.publicArea.nameAlg);
    if (alg == NULL || 2 + alg->size > TC_TPM_MAX_NAME)
        return TC_ERR_UNSUPPORTED;
    if (Tss2_MU_TPMT_PUBLIC_Marshal(&p.publicArea, area, sizeof(area), &alen) != TSS2_RC_SUCCESS)
        return TC_ERR_FORMAT;
    name[0] = (uint8_t)(alg->tpm_alg >> 8);
    name[1] = (uint8_t)alg->tpm_alg;
    rc = tc_hash(alg, area, alen, name + 2);
    if (rc == 0)
        *name_len = 2 + alg->size;
    return rc;
}

/* Fills key->pub and key->name from a TPM2B_PUBLIC and checks the name against the TPM's. */
int tc_tpm_key_set_public(struct tc_tpm_key *key, const TPM2B_PUBLIC *pub,
                          const TPM2B_NAME *tpm_name)
{
    size_t off = 0;
    int rc;
    if (Tss2_MU_TPM2B_PUBLIC_Marshal(pub, key->pub, sizeof(key->pub), &off) != TSS2_RC_SUCCESS)
        return TC_ERR_TOO_LARGE;
    key->pub_len = off;
    if ((rc = public_name(key->pub, key->pub_len, key->name, &key->name_len)) != 0)
        return rc;
    if (tpm_name != NULL &&
        (tpm_name->size != key->name_len || memcmp(tpm_name->name, key->name, key->name_len))) {
        LOG_ERROR("the TPM's name for the key differs from the one computed from its public area");
        return TC_ERR_MISMATCH;
    }
    return 0;
}

static void ek_template(enum tc_key_alg alg, TPM2B_PUBLIC *t)
{
    memset(t, 0, sizeof(*t));
    TPMT_PUBLIC *p = &t->publicArea;
    p->nameAlg = TPM2_ALG_SHA256;
    p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                          TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_ADMINWITHPOLICY |
                          TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    p->authPolicy.size = sizeof(ek_policy);
    memcpy(p->authPolicy.buffer, ek_policy, sizeof(ek_policy));
    if (alg == TC_KEY_RSA_2048) {
        p->type = TPM2_ALG_RSA;
        p->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
        p->parameters.rsaDetail.symmetric.keyBits.aes = 128;
        p->parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
        p->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
        p->parameters.rsaDetail.keyBits = 2048;
        p->parameters.rsaDetail.exponent = 0;
        p->unique.rsa.size = 256; /* all zeroes */
    } else {
        p->type = TPM2_ALG_ECC;
        p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
        p->parameters.eccDetail.symmetric.keyBits.aes = 128;
        p->parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
        p->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
        p->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
        p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
        p->unique.ecc.x.size = 32;
        p->unique.ecc.y.size = 32;
    }
}

int tc_tpm_ek_create(struct tc_tpm *tpm, enum tc_key_alg alg, struct tc_tpm_key *ek)
{
    TPM2B_PUBLIC tmpl;
    TPM2B_SENSITIVE_CREATE sens;
    TPM2B_DATA outside;
    TPML_PCR_SELECTION creation_pcr;
    TPM2B_PUBLIC *pub = NULL;
    TPM2B_NAME *name = NULL, *qname = NULL;
    ESYS_TR h = ESYS_TR_NONE;
    int rc = 0;

    key_clear(ek);
    if (alg != TC_KEY_RSA_2048 && alg != TC_KEY_ECC_P256)
        return TC_ERR_UNSUPPORTED;
    ek_template(alg, &tmpl);
    memset(&sens, 0, sizeof(sens));
    memset(&outside, 0, sizeof(outside));
    memset(&creation_pcr, 0, sizeof(creation_pcr));
    TSS2_RC r = Esys_CreatePrimary(tpm->esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD,
                                   ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl, &outside,
                                   &creation_pcr, &h, NULL, NULL, NULL, NULL);
    if (r != TSS2_RC_SUCCESS) {
        rc = tc_tpm_rc(r, "Esys_CreatePrimary(EK)");
        goto out;
    }
    /* ReadPublic returns the TPM's own name for the object, to check ours against. */
    r = Esys_ReadPublic(tpm->esys, h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name,
                        &qname);
    if (r != TSS2_RC_SUCCESS) {
        rc = tc_tpm_rc(r, "Esys_ReadPublic(EK)");
        goto out;
    }
    if ((rc = tc_tpm_key_set_public(ek, pub, name)) != 0)
        goto out;
    ek->alg = alg;
    ek->scheme = TC_SIG_DEFAULT;
    ek->esys_handle = h;
    tc_tpm_track(tpm, h);
    h = ESYS_TR_NONE;
out:
    if (h != ESYS_TR_NONE)
        Esys_FlushContext(tpm->esys, h);
    if (rc != 0)
        key_clear(ek);
    Esys_Free(pub);
    Esys_Free(name);
    Esys_Free(qname);
    return rc;
}

int tc_tpm_nv_chunk(struct tc_tpm *tpm, uint16_t *max)
{
    TPMI_YES_NO more = TPM2_NO;
    TPMS_CAPABILITY_DATA *cap = NULL;
    *max = 512; /* the minimum any TPM must support for NV_Read */
    TSS2_RC r = Esys_GetCapability(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   TPM2_CAP_TPM_PROPERTIES, TPM2_PT_NV_BUFFER_MAX, 1, &more, &cap);
    if (r != TSS2_RC_SUCCESS)
        return tc_tpm_rc(r, "Esys_GetCapability(NV_BUFFER_MAX)");
    if (cap->data.tpmProperties.count >= 1 &&
        cap->data.tpmProperties.tpmProperty[0].property == TPM2_PT_NV_BUFFER_MAX) {
        uint32_t v = cap->data.tpmProperties.tpmProperty[0].value;
        if (v > 0 && v <= TPM2_MAX_NV_BUFFER_SIZE)
            *max = (uint16_t)v;
    }
    Esys_Free(cap);
    return 0;
}

/* Whether a persistent object or NV index exists, asked without provoking an error (which
 * tpm2-tss would log) for the common "not provisioned" case. */
int tc_tpm_handle_exists(struct tc_tpm *tpm, uint32_t handle, bool *exists)
{
    TPMI_YES_NO more = TPM2_NO;
    TPMS_CAPABILITY_DATA *cap = NULL;
    *exists = false;
    TSS2_RC r = Esys_GetCapability(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   TPM2_CAP_HANDLES, handle, 1, &more, &cap);
    if (r != TSS2_RC_SUCCESS)
        return tc_tpm_rc(r, "Esys_GetCapability(handles)");
    *exists = cap->data.handles.count >= 1 && cap->data.handles.handle[0] == handle;
    Esys_Free(cap);
    return 0;
}

int tc_tpm_nv_read(struct tc_tpm *tpm, uint32_t index, size_t max, uint8_t **data, size_t *len)
{
    ESYS_TR nv = ESYS_TR_NONE;
    TPM2B_NV_PUBLIC *nvpub = NULL;
    TPM2B_NAME *nvname = NULL;
    uint8_t *buf = NULL;
    uint16_t chunk;
    int rc = 0;

    *data = NULL;
    *len = 0;
    bool exists;
    if ((index >> 24) != TPM2_HT_NV_INDEX)
        return TC_ERR_INVALID_ARG;
    if ((rc = tc_tpm_handle_exists(tpm, index, &exists)) != 0)
        return rc;
    if (!exists) {
        LOG_INFO("NV index 0x%08x is not defined", index);
        return TC_ERR_NOT_FOUND;
    }
    TSS2_RC r =
        Esys_TR_FromTPMPublic(tpm->esys, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv);
    if (r != TSS2_RC_SUCCESS) {
        nv = ESYS_TR_NONE;
        /* An undefined index is reported as a bad handle (TPM2_RC_HANDLE, possibly with a
         * parameter/handle number in the format-1 bits). */
        if ((r & 0xfffff000) == 0 && (r & TPM2_RC_FMT1) && (r & 0x3f) == (TPM2_RC_HANDLE & 0x3f)) {
            LOG_INFO("NV index 0x%08x is not defined", index);
            return TC_ERR_NOT_FOUND;
        }
        return tc_tpm_rc(r, "Esys_TR_FromTPMPublic(NV)");
    }
    r = Esys_NV_ReadPublic(tpm->esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nvpub,
                           &nvname);
    if (r != TSS2_RC_SUCCESS) {
        rc = tc_tpm_rc(r, "Esys_NV_ReadPublic");
        goto out;
    }
    TPMA_NV attrs = nvpub->nvPublic.attributes;
    uint16_t size = nvpub->nvPublic.dataSize;
    if (!(attrs & TPMA_NV_WRITTEN) || size == 0) {
        rc = TC_ERR_NOT_FOUND;
        goto out;
    }
    if (size > max) {
        rc = TC_ERR_TOO_LARGE;
        goto out;
    }
    /* Certificate indices are readable by the owner (empty auth by default) or with their own
     * (empty) auth; prefer the owner, as tpm2_getekcertificate does. */
    ESYS_TR auth = (attrs & TPMA_NV_OWNERREAD) ? ESYS_TR_RH_OWNER : nv;
    if ((rc = tc_tpm_nv_chunk(tpm, &chunk)) != 0)
        goto out;
    if ((buf = malloc(size)) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    /* NV_Read returns at most the TPM's NV buffer size per call. */
    for (uint16_t off = 0; off < size;) {
        uint16_t n = (uint16_t)(size - off) < chunk ? (uint16_t)(size - off) : chunk;
        TPM2B_MAX_NV_BUFFER *part = NULL;
        r = Esys_NV_Read(tpm->esys, auth, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, n, off,
                         &part);
        if (r != TSS2_RC_SUCCESS) {
            rc = tc_tpm_rc(r, "Esys_NV_Read");
            goto out;
        }
        if (part->size != n) {
            Esys_Free(part);
            rc = TC_ERR_TPM;
            goto out;
        }
        memcpy(buf + off, part->buffer, n);
        off = (uint16_t)(off + n);
        Esys_Free(part);
    }
    *data = buf;
    *len = size;
    buf = NULL;
out:
    free(buf);
    Esys_Free(nvpub);
    Esys_Free(nvname);
    if (nv != ESYS_TR_NONE)
        Esys_TR_Close(tpm->esys, &nv);
    return rc;
}

int tc_tpm_ek_cert_read(struct tc_tpm *tpm, enum tc_key_alg alg, uint8_t **der, size_t *len)
{
    *der = NULL;
    *len = 0;
    if (alg != TC_KEY_RSA_2048 && alg != TC_KEY_ECC_P256)
        return TC_ERR_UNSUPPORTED;
    return tc_tpm_nv_read(tpm,
                          alg == TC_KEY_RSA_2048 ? TC_TPM_NV_EK_CERT_RSA : TC_TPM_NV_EK_CERT_ECC,
                          EK_CERT_MAX, der, len);
}

int tc_tpm_key_from_persistent(struct tc_tpm *tpm, uint32_t handle, struct tc_tpm_key *key)
{
    ESYS_TR h = ESYS_TR_NONE;
    TPM2B_PUBLIC *pub = NULL;
    TPM2B_NAME *name = NULL, *qname = NULL;
    int rc = 0;

    key_clear(key);
    bool exists;
    if ((handle >> 24) != TPM2_HT_PERSISTENT)
        return TC_ERR_INVALID_ARG;
    if ((rc = tc_tpm_handle_exists(tpm, handle, &exists)) != 0)
        return rc;
    if (!exists)
        return TC_ERR_NOT_FOUND;
    TSS2_RC r =
        Esys_TR_FromTPMPublic(tpm->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &h);
    if (r != TSS2_RC_SUCCESS) {
        h = ESYS_TR_NONE;
        if ((r & 0xfffff000) == 0 && (r & TPM2_RC_FMT1) && (r & 0x3f) == (TPM2_RC_HANDLE & 0x3f))
            return TC_ERR_NOT_FOUND;
        return tc_tpm_rc(r, "Esys_TR_FromTPMPublic(persistent)");
    }
    r = Esys_ReadPublic(tpm->esys, h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name,
                        &qname);
    if (r != TSS2_RC_SUCCESS) {
        rc = tc_tpm_rc(r, "Esys_ReadPublic(persistent)");
        goto out;
    }
    if ((rc = tc_tpm_key_set_public(key, pub, name)) != 0)
        goto out;
    const TPMT_PUBLIC *p = &pub->publicArea;
    if (p->type == TPM2_ALG_RSA && p->parameters.rsaDetail.keyBits == 2048)
        key->alg = TC_KEY_RSA_2048;
    else if (p->type == TPM2_ALG_ECC && p->parameters.eccDetail.curveID == TPM2_ECC_NIST_P256)
        key->alg = TC_KEY_ECC_P256;
    else if (p->type == TPM2_ALG_ECC && p->parameters.eccDetail.curveID == TPM2_ECC_SM2_P256)
        key->alg = TC_KEY_SM2_P256;
    else
        key->alg = TC_KEY_ECC_P256; /* others (P-384, RSA 3072) are described by pub only */
    key->persistent = handle;
    key->esys_handle = h;
    h = ESYS_TR_NONE;
out:
    if (h != ESYS_TR_NONE)
        Esys_TR_Close(tpm->esys, &h);
    if (rc != 0)
        key_clear(key);
    Esys_Free(pub);
    Esys_Free(name);
    Esys_Free(qname);
    return rc;
}

int tc_tpm_key_from_persistent_name(struct tc_tpm *tpm, uint32_t handle, const uint8_t *name,
                                    size_t name_len, struct tc_tpm_key *key)
{
    ESYS_TR h = ESYS_TR_NONE;
    uint8_t *ser = NULL;
    size_t ser_len = 0, off = 0;
    TPM2_HANDLE got_handle = 0;
    TPM2B_NAME got;
    int rc = 0;

    key_clear(key);
    memset(&got, 0, sizeof(got));
    if (tpm == NULL || (handle >> 24) != TPM2_HT_PERSISTENT || name == NULL || name_len == 0 ||
        name_len > TC_TPM_MAX_NAME)
        return TC_ERR_INVALID_ARG;
    /* One ReadPublic: no GetCapability first, the caller knows the key should be there. */
    TSS2_RC r =
        Esys_TR_FromTPMPublic(tpm->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &h);
    if (r != TSS2_RC_SUCCESS) {
        h = ESYS_TR_NONE;
        if ((r & 0xfffff000) == 0 && (r & TPM2_RC_FMT1) && (r & 0x3f) == (TPM2_RC_HANDLE & 0x3f))
            return TC_ERR_NOT_FOUND;
        return tc_tpm_rc(r, "Esys_TR_FromTPMPublic(persistent)");
    }
    /* The name the TPM reported, as ESAPI keeps it. Not Esys_TR_GetName: it recomputes the name
     * with a digest fetched from OpenSSL each time, which costs more than the TPM command. An
     * ESYS_TR serialises as TPM2_HANDLE || TPM2B_NAME || ... (the format tools store on disk). */
    if ((r = Esys_TR_Serialize(tpm->esys, h, &ser, &ser_len)) != TSS2_RC_SUCCESS) {
        rc = tc_tpm_rc(r, "Esys_TR_Serialize(persistent)");
        goto out;
    }
    if (Tss2_MU_TPM2_HANDLE_Unmarshal(ser, ser_len, &off, &got_handle) != TSS2_RC_SUCCESS ||
        got_handle != handle ||
        Tss2_MU_TPM2B_NAME_Unmarshal(ser, ser_len, &off, &got) != TSS2_RC_SUCCESS) {
        rc = TC_ERR_INTERNAL;
        goto out;
    }
    if (got.size != name_len || memcmp(got.name, name, name_len) != 0) {
        LOG_DEBUG("persistent handle 0x%08x holds another key than the one expected", handle);
        rc = TC_ERR_MISMATCH;
        goto out;
    }
    memcpy(key->name, name, name_len);
    key->name_len = name_len;
    key->persistent = handle;
    key->esys_handle = h;
    h = ESYS_TR_NONE;
out:
    if (h != ESYS_TR_NONE)
        Esys_TR_Close(tpm->esys, &h);
    Esys_Free(ser);
    return rc;
}

/* A policy session satisfying the EK's authPolicy, PolicySecret(TPM_RH_ENDORSEMENT). It is
 * consumed by one authorization; the caller flushes it afterwards in every case. */
int tc_tpm_ek_session(struct tc_tpm *tpm, ESYS_TR *session)
{
    TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_NULL};
    TPM2B_TIMEOUT *timeout = NULL;
    TPMT_TK_AUTH *ticket = NULL;
    TSS2_RC r;

    *session = ESYS_TR_NONE;
    r = Esys_StartAuthSession(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                              ESYS_TR_NONE, NULL, TPM2_SE_POLICY, &sym, TPM2_ALG_SHA256, session);
    if (r != TSS2_RC_SUCCESS) {
        *session = ESYS_TR_NONE;
        return tc_tpm_rc(r, "Esys_StartAuthSession");
    }
    /* continueSession keeps the handle alive after use, so cleanup is always one flush. */
    r = Esys_TRSess_SetAttributes(tpm->esys, *session, TPMA_SESSION_CONTINUESESSION, 0xff);
    if (r == TSS2_RC_SUCCESS)
        r = Esys_PolicySecret(tpm->esys, ESYS_TR_RH_ENDORSEMENT, *session, ESYS_TR_PASSWORD,
                              ESYS_TR_NONE, ESYS_TR_NONE, NULL, NULL, NULL, 0, &timeout, &ticket);
    Esys_Free(timeout);
    Esys_Free(ticket);
    if (r != TSS2_RC_SUCCESS) {
        Esys_FlushContext(tpm->esys, *session);
        *session = ESYS_TR_NONE;
        return tc_tpm_rc(r, "Esys_PolicySecret(endorsement)");
    }
    return 0;
}

void tc_tpm_session_flush(struct tc_tpm *tpm, ESYS_TR *session)
{
    if (*session == ESYS_TR_NONE)
        return;
    TSS2_RC r = Esys_FlushContext(tpm->esys, *session);
    if (r != TSS2_RC_SUCCESS)
        tc_tpm_rc(r, "Esys_FlushContext(session)");
    *session = ESYS_TR_NONE;
}

static int ak_template(enum tc_key_alg alg, enum tc_sig_scheme *scheme, TPM2B_PUBLIC *t)
{
    memset(t, 0, sizeof(*t));
    TPMT_PUBLIC *p = &t->publicArea;
    p->nameAlg = TPM2_ALG_SHA256;
    p->objectAttributes = ak_attrs;
    switch (alg) {
    case TC_KEY_ECC_P256:
    case TC_KEY_SM2_P256: {
        enum tc_sig_scheme want = alg == TC_KEY_ECC_P256 ? TC_SIG_ECDSA : TC_SIG_SM2;
        if (*scheme == TC_SIG_DEFAULT)
            *scheme = want;
        if (*scheme != want)
            return TC_ERR_UNSUPPORTED;
        p->type = TPM2_ALG_ECC;
        p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
        p->parameters.eccDetail.scheme.scheme =
            want == TC_SIG_ECDSA ? TPM2_ALG_ECDSA : TPM2_ALG_SM2;
        /* The scheme union members all start with hashAlg. */
        p->parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
        p->parameters.eccDetail.curveID =
            alg == TC_KEY_ECC_P256 ? TPM2_ECC_NIST_P256 : TPM2_ECC_SM2_P256;
        p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
        return 0;
    }
    case TC_KEY_RSA_2048:
        if (*scheme == TC_SIG_DEFAULT)
            *scheme = TC_SIG_RSASSA;
        if (*scheme != TC_SIG_RSASSA && *scheme != TC_SIG_RSAPSS)
            return TC_ERR_UNSUPPORTED;
        p->type = TPM2_ALG_RSA;
        p->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
        p->parameters.rsaDetail.scheme.scheme =
            *scheme == TC_SIG_RSASSA ? TPM2_ALG_RSASSA : TPM2_ALG_RSAPSS;
        p->parameters.rsaDetail.scheme.details.rsassa.hashAlg = TPM2_ALG_SHA256;
        p->parameters.rsaDetail.keyBits = 2048;
        p->parameters.rsaDetail.exponent = 0;
        return 0;
    }
    return TC_ERR_UNSUPPORTED;
}

int tc_tpm_create_under_ek(struct tc_tpm *tpm, const struct tc_tpm_key *ek,
                           const TPM2B_PUBLIC *tmpl, const char *what, TPM2B_PRIVATE **priv,
                           TPM2B_PUBLIC **pub)
{
    TPM2B_SENSITIVE_CREATE sens;
    TPM2B_DATA outside;
    TPML_PCR_SELECTION creation_pcr;
    ESYS_TR session = ESYS_TR_NONE;
    char msg[64];
    int rc;

    *priv = NULL;
    *pub = NULL;
    memset(&sens, 0, sizeof(sens));
    memset(&outside, 0, sizeof(outside));
    memset(&creation_pcr, 0, sizeof(creation_pcr));
    if ((rc = tc_tpm_ek_session(tpm, &session)) != 0)
        return rc;
    TSS2_RC r = Esys_Create(tpm->esys, ek->esys_handle, session, ESYS_TR_NONE, ESYS_TR_NONE, &sens,
                            tmpl, &outside, &creation_pcr, priv, pub, NULL, NULL, NULL);
    tc_tpm_session_flush(tpm, &session);
    if (r != TSS2_RC_SUCCESS) {
        *priv = NULL;
        *pub = NULL;
        snprintf(msg, sizeof(msg), "Esys_Create(%s)", what);
        return tc_tpm_rc(r, msg);
    }
    return 0;
}

int tc_tpm_load_under_ek(struct tc_tpm *tpm, const struct tc_tpm_key *ek, const TPM2B_PUBLIC *pub,
                         const TPM2B_PRIVATE *priv, const char *what, struct tc_tpm_key *key)
{
    ESYS_TR session = ESYS_TR_NONE, h = ESYS_TR_NONE;
    TPM2B_PUBLIC *rpub = NULL;
    TPM2B_NAME *name = NULL, *qname = NULL;
    char msg[64];
    int rc;

    if ((rc = tc_tpm_ek_session(tpm, &session)) != 0)
        goto out;
    TSS2_RC r =
        Esys_Load(tpm->esys, ek->esys_handle, session, ESYS_TR_NONE, ESYS_TR_NONE, priv, pub, &h);
    tc_tpm_session_flush(tpm, &session);
    if (r != TSS2_RC_SUCCESS) {
        h = ESYS_TR_NONE;
        snprintf(msg, sizeof(msg), "Esys_Load(%s)", what);
        rc = tc_tpm_rc(r, msg);
        goto out;
    }
    r = Esys_ReadPublic(tpm->esys, h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &rpub, &name,
                        &qname);
    if (r != TSS2_RC_SUCCESS) {
        snprintf(msg, sizeof(msg), "Esys_ReadPublic(%s)", what);
        rc = tc_tpm_rc(r, msg);
        goto out;
    }
    if ((rc = tc_tpm_key_set_public(key, pub, name)) != 0)
        goto out;
    key->esys_handle = h;
    tc_tpm_track(tpm, h);
    h = ESYS_TR_NONE;
out:
    tc_tpm_session_flush(tpm, &session);
    if (h != ESYS_TR_NONE)
        Esys_FlushContext(tpm->esys, h);
    Esys_Free(rpub);
    Esys_Free(name);
    Esys_Free(qname);
    return rc;
}

int tc_tpm_ctx_save(const char *path, size_t max, const uint8_t *head, size_t head_len,
                    const struct tc_tpm_key *parent, const struct tc_tpm_key *key,
                    const TPM2B_PRIVATE *priv)
{
    uint8_t privbuf[sizeof(TPM2B_PRIVATE)];
    size_t privlen = 0;
    struct tc_buf b;
    int rc;

    if (Tss2_MU_TPM2B_PRIVATE_Marshal(priv, privbuf, sizeof(privbuf), &privlen) != TSS2_RC_SUCCESS)
        return TC_ERR_INTERNAL;
    const uint8_t lens[6] = {
        (uint8_t)(parent->name_len >> 8), (uint8_t)parent->name_len,
        (uint8_t)(key->pub_len >> 8),     (uint8_t)key->pub_len,
        (uint8_t)(privlen >> 8),          (uint8_t)privlen,
    };
    tc_buf_init(&b, max);
    rc = tc_buf_put(&b, head, head_len);
    if (rc == 0)
        rc = tc_buf_put(&b, lens, sizeof(lens));
    if (rc == 0)
        rc = tc_buf_put(&b, parent->name, parent->name_len);
    if (rc == 0)
        rc = tc_buf_put(&b, key->pub, key->pub_len);
    if (rc == 0)
        rc = tc_buf_put(&b, privbuf, privlen);
    if (rc == 0)
        rc = tc_file_write(path, b.data, b.len, 0600);
    tc_buf_release(&b);
    OPENSSL_cleanse(privbuf, sizeof(privbuf));
    return rc;
}

int tc_tpm_ctx_open(struct tc_reader *r, const uint8_t *data, size_t len, size_t max,
                    const uint8_t magic[4], uint16_t version)
{
    uint8_t m[4];
    uint16_t v;
    int rc;

    if (len > max)
        return TC_ERR_TOO_LARGE;
    tc_reader_init(r, data, len);
    if ((rc = tc_reader_bytes(r, m, sizeof(m))) != 0 || (rc = tc_reader_u16be(r, &v)) != 0)
        return rc;
    if (memcmp(m, magic, sizeof(m)) != 0)
        return TC_ERR_FORMAT;
    return v == version ? 0 : TC_ERR_UNSUPPORTED;
}

int tc_tpm_ctx_read_tail(struct tc_reader *r, size_t priv_max, uint8_t *parent_name,
                         size_t *parent_len, const uint8_t **pubv, size_t *pub_len,
                         const uint8_t **privv, size_t *priv_len)
{
    uint16_t nlen, plen, qlen;
    int rc;

    if ((rc = tc_reader_u16be(r, &nlen)) != 0 || (rc = tc_reader_u16be(r, &plen)) != 0 ||
        (rc = tc_reader_u16be(r, &qlen)) != 0)
        return rc;
    if (nlen > TC_TPM_MAX_NAME || plen > TC_TPM_MAX_PUBLIC || qlen > priv_max)
        return TC_ERR_FORMAT;
    if ((rc = tc_reader_bytes(r, parent_name, nlen)) != 0 ||
        (rc = tc_reader_view(r, plen, pubv)) != 0 || (rc = tc_reader_view(r, qlen, privv)) != 0)
        return rc;
    if (tc_reader_left(r) != 0)
        return TC_ERR_TRAILING;
    *parent_len = nlen;
    *pub_len = plen;
    *priv_len = qlen;
    return 0;
}

int tc_tpm_unmarshal_public(const uint8_t *data, size_t len, TPM2B_PUBLIC *pub)
{
    return tc_tpm2b_public_unmarshal(data, len, pub);
}

int tc_tpm_unmarshal_private(const uint8_t *data, size_t len, TPM2B_PRIVATE *priv)
{
    size_t off = 0;
    memset(priv, 0, sizeof(*priv));
    if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(data, len, &off, priv) != TSS2_RC_SUCCESS)
        return TC_ERR_FORMAT;
    return off == len ? 0 : TC_ERR_TRAILING;
}

/* Checks that a public area is exactly what ak_template makes for alg/scheme. */
static int ak_public_check(const TPM2B_PUBLIC *pub, enum tc_key_alg alg, enum tc_sig_scheme scheme)
{
    TPM2B_PUBLIC t;
    enum tc_sig_scheme s = scheme;
    if (ak_template(alg, &s, &t) != 0 || s != scheme)
        return TC_ERR_UNSUPPORTED;
    const TPMT_PUBLIC *a = &pub->publicArea, *e = &t.publicArea;
    if (a->type != e->type || a->nameAlg != e->nameAlg ||
        a->objectAttributes != e->objectAttributes)
        return TC_ERR_KEY;
    if (a->type == TPM2_ALG_ECC &&
        (a->parameters.eccDetail.curveID != e->parameters.eccDetail.curveID ||
         a->parameters.eccDetail.scheme.scheme != e->parameters.eccDetail.scheme.scheme))
        return TC_ERR_KEY;
    if (a->type == TPM2_ALG_RSA &&
        (a->parameters.rsaDetail.keyBits != e->parameters.rsaDetail.keyBits ||
         a->parameters.rsaDetail.scheme.scheme != e->parameters.rsaDetail.scheme.scheme))
        return TC_ERR_KEY;
    return 0;
}

int tc_tpm_akctx_parse(const uint8_t *data, size_t len, struct tc_tpm_akctx *ctx)
{
    struct tc_reader r;
    uint16_t alg, scheme;
    const uint8_t *pubv, *privv;
    size_t plen, qlen;
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    int rc;

    memset(ctx, 0, sizeof(*ctx));
    if ((rc = tc_tpm_ctx_open(&r, data, len, AKCTX_MAX, akctx_magic, AKCTX_VERSION)) != 0)
        return rc;
    if ((rc = tc_reader_u16be(&r, &alg)) != 0 || (rc = tc_reader_u16be(&r, &scheme)) != 0)
        return rc;
    if ((rc = tc_tpm_ctx_read_tail(&r, sizeof(ctx->priv), ctx->parent_name, &ctx->parent_name_len,
                                   &pubv, &plen, &privv, &qlen)) != 0)
        return rc;
    if ((rc = tc_tpm_unmarshal_public(pubv, plen, &pub)) != 0)
        return rc;
    rc = tc_tpm_unmarshal_private(privv, qlen, &priv);
    OPENSSL_cleanse(&priv, sizeof(priv));
    if (rc != 0)
        return rc;
    if (alg > TC_KEY_SM2_P256 || scheme > TC_SIG_SM2 || scheme == TC_SIG_DEFAULT)
        return TC_ERR_UNSUPPORTED;
    if ((rc = ak_public_check(&pub, (enum tc_key_alg)alg, (enum tc_sig_scheme)scheme)) != 0)
        return rc;
    ctx->alg = (enum tc_key_alg)alg;
    ctx->scheme = (enum tc_sig_scheme)scheme;
    memcpy(ctx->pub, pubv, plen);
    ctx->pub_len = plen;
    memcpy(ctx->priv, privv, qlen);
    ctx->priv_len = qlen;
    return public_name(ctx->pub, ctx->pub_len, ctx->name, &ctx->name_len);
}

void tc_tpm_akctx_release(struct tc_tpm_akctx *ctx)
{
    if (ctx != NULL)
        OPENSSL_cleanse(ctx, sizeof(*ctx));
}

int tc_tpm_akctx_read(const char *path, struct tc_tpm_akctx *ctx)
{
    uint8_t *data = NULL;
    size_t len = 0;
    memset(ctx, 0, sizeof(*ctx));
    int rc = tc_file_read(path, AKCTX_MAX, &data, &len);
    if (rc == 0)
        rc = tc_tpm_akctx_parse(data, len, ctx);
    if (data != NULL)
        OPENSSL_cleanse(data, len);
    free(data);
    if (rc != 0)
        LOG_ERROR("%s: not a usable AK context file (%s)", path, tc_strerror(rc));
    return rc;
}

int tc_tpm_ak_create(struct tc_tpm *tpm, const struct tc_tpm_key *ek, enum tc_key_alg alg,
                     enum tc_sig_scheme scheme, const char *ctx_path, struct tc_tpm_key *ak)
{
    TPM2B_PUBLIC tmpl;
    TPM2B_PRIVATE *priv = NULL;
    TPM2B_PUBLIC *pub = NULL;
    int rc;

    key_clear(ak);
    if (ek == NULL || ek->esys_handle == 0 || ctx_path == NULL)
        return TC_ERR_INVALID_ARG;
    if ((rc = ak_template(alg, &scheme, &tmpl)) != 0)
        return rc;
    if ((rc = tc_tpm_create_under_ek(tpm, ek, &tmpl, "AK", &priv, &pub)) != 0)
        goto out;
    ak->alg = alg;
    ak->scheme = scheme;
    if ((rc = tc_tpm_load_under_ek(tpm, ek, pub, priv, "AK", ak)) != 0)
        goto out;
    /* magic | u16 version | u16 alg | u16 scheme (both enums fit in the low byte) */
    uint8_t head[10] = {0};
    memcpy(head, akctx_magic, sizeof(akctx_magic));
    head[5] = AKCTX_VERSION;
    head[7] = (uint8_t)ak->alg;
    head[9] = (uint8_t)ak->scheme;
    rc = tc_tpm_ctx_save(ctx_path, AKCTX_MAX, head, sizeof(head), ek, ak, priv);
out:
    if (priv != NULL)
        OPENSSL_cleanse(priv, sizeof(*priv));
    Esys_Free(priv);
    Esys_Free(pub);
    if (rc != 0)
        tc_tpm_key_release(tpm, ak);
    return rc;
}

int tc_tpm_ak_load(struct tc_tpm *tpm, const struct tc_tpm_key *ek, const char *ctx_path,
                   struct tc_tpm_key *ak)
{
    struct tc_tpm_akctx *ctx = NULL;
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    int rc;

    key_clear(ak);
    memset(&priv, 0, sizeof(priv));
    if (ek == NULL || ek->esys_handle == 0 || ctx_path == NULL)
        return TC_ERR_INVALID_ARG;
    if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
        return TC_ERR_ALLOC;
    if ((rc = tc_tpm_akctx_read(ctx_path, ctx)) != 0)
        goto out;
    if (ctx->parent_name_len != ek->name_len ||
        memcmp(ctx->parent_name, ek->name, ek->name_len) != 0) {
        LOG_ERROR("%s: the AK was created under another EK", ctx_path);
        rc = TC_ERR_MISMATCH;
        goto out;
    }
    /* Both were unmarshaled once already by the parser: these cannot fail. */
    if (tc_tpm_unmarshal_public(ctx->pub, ctx->pub_len, &pub) != 0 ||
        tc_tpm_unmarshal_private(ctx->priv, ctx->priv_len, &priv) != 0) {
        rc = TC_ERR_INTERNAL;
        goto out;
    }
    ak->alg = ctx->alg;
    ak->scheme = ctx->scheme;
    rc = tc_tpm_load_under_ek(tpm, ek, &pub, &priv, "AK", ak);
out:
    OPENSSL_cleanse(&priv, sizeof(priv));
    tc_tpm_akctx_release(ctx);
    free(ctx);
    if (rc != 0)
        key_clear(ak);
    return rc;
}

void tc_tpm_key_release(struct tc_tpm *tpm, struct tc_tpm_key *key)
{
    if (key == NULL)
        return;
    if (tpm != NULL && key->esys_handle != 0 && key->esys_handle != ESYS_TR_NONE) {
        ESYS_TR h = key->esys_handle;
        tc_tpm_untrack(tpm, h);
        TSS2_RC r =
            key->persistent ? Esys_TR_Close(tpm->esys, &h) : Esys_FlushContext(tpm->esys, h);
        if (r != TSS2_RC_SUCCESS)
            tc_tpm_rc(r, "releasing a key");
    }
    key_clear(key);
}
