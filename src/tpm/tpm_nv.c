/* SPDX-License-Identifier: Apache-2.0 */
/* Provisioning writes: EK certificate NV indices and persistent EKs (see trustcloud/tpm_nv.h). */
#define LOGMODULE "tpm"
#include <string.h>

#include "tpm_internal.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/tpm_nv.h"

int tc_tpm_nv_define_write(struct tc_tpm *tpm, uint32_t index, uint32_t attrs, const uint8_t *data,
                           size_t len)
{
    ESYS_TR nv = ESYS_TR_NONE;
    bool exists;
    uint16_t chunk;
    TSS2_RC r;
    int rc = 0;

    if (tpm == NULL || data == NULL || len == 0 || len > TC_TPM_EK_CERT_MAX ||
        (index >> 24) != TPM2_HT_NV_INDEX)
        return TC_ERR_INVALID_ARG;
    /* Writing with platform auth needs PPWRITE; defining under the platform sets
     * PLATFORMCREATE (the TPM refuses a mismatch, but say so before asking it). */
    if (!(attrs & TPMA_NV_PLATFORMCREATE) || !(attrs & TPMA_NV_PPWRITE) ||
        (attrs & TPMA_NV_WRITTEN))
        return TC_ERR_INVALID_ARG;
    if ((rc = tc_tpm_handle_exists(tpm, index, &exists)) != 0)
        return rc;
    if (exists) {
        r = Esys_TR_FromTPMPublic(tpm->esys, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv);
        if (r != TSS2_RC_SUCCESS) {
            nv = ESYS_TR_NONE;
            return tc_tpm_rc(r, "Esys_TR_FromTPMPublic(NV)");
        }
        /* UndefineSpace consumes the ESYS_TR on success. */
        r = Esys_NV_UndefineSpace(tpm->esys, ESYS_TR_RH_PLATFORM, nv, ESYS_TR_PASSWORD,
                                  ESYS_TR_NONE, ESYS_TR_NONE);
        if (r != TSS2_RC_SUCCESS) {
            rc = tc_tpm_rc(r, "Esys_NV_UndefineSpace");
            goto out;
        }
        nv = ESYS_TR_NONE;
    }

    TPM2B_AUTH auth = {.size = 0};
    TPM2B_NV_PUBLIC pub = {
        .nvPublic =
            {
                .nvIndex = index,
                .nameAlg = TPM2_ALG_SHA256,
                .attributes = attrs,
                .authPolicy = {.size = 0},
                .dataSize = (uint16_t)len,
            },
    };
    r = Esys_NV_DefineSpace(tpm->esys, ESYS_TR_RH_PLATFORM, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                            ESYS_TR_NONE, &auth, &pub, &nv);
    if (r != TSS2_RC_SUCCESS) {
        nv = ESYS_TR_NONE;
        rc = tc_tpm_rc(r, "Esys_NV_DefineSpace");
        goto out;
    }
    if ((rc = tc_tpm_nv_chunk(tpm, &chunk)) != 0)
        goto out;
    for (size_t off = 0; off < len;) {
        size_t n = len - off < chunk ? len - off : chunk;
        TPM2B_MAX_NV_BUFFER part = {.size = (uint16_t)n};
        memcpy(part.buffer, data + off, n);
        r = Esys_NV_Write(tpm->esys, ESYS_TR_RH_PLATFORM, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                          ESYS_TR_NONE, &part, (uint16_t)off);
        if (r != TSS2_RC_SUCCESS) {
            rc = tc_tpm_rc(r, "Esys_NV_Write");
            goto out;
        }
        off += n;
    }
out:
    if (nv != ESYS_TR_NONE)
        Esys_TR_Close(tpm->esys, &nv);
    return rc;
}

int tc_tpm_ek_cert_write(struct tc_tpm *tpm, enum tc_key_alg alg, const uint8_t *der, size_t len)
{
    uint32_t index;
    switch (alg) {
    case TC_KEY_RSA_2048:
        index = TC_TPM_NV_EK_CERT_RSA;
        break;
    case TC_KEY_ECC_P256:
        index = TC_TPM_NV_EK_CERT_ECC;
        break;
    default:
        return TC_ERR_UNSUPPORTED;
    }
    return tc_tpm_nv_define_write(tpm, index, TC_TPM_NV_EK_CERT_ATTRS, der, len);
}

int tc_tpm_key_persist(struct tc_tpm *tpm, struct tc_tpm_key *key, uint32_t handle)
{
    ESYS_TR old = ESYS_TR_NONE, made = ESYS_TR_NONE;
    bool exists;
    TSS2_RC r;
    int rc;

    if (tpm == NULL || key == NULL || key->esys_handle == 0 || key->esys_handle == ESYS_TR_NONE ||
        key->persistent != 0 || handle < 0x81000000u || handle > 0x817fffffu)
        return TC_ERR_INVALID_ARG;
    if ((rc = tc_tpm_handle_exists(tpm, handle, &exists)) != 0)
        return rc;
    if (exists) {
        r = Esys_TR_FromTPMPublic(tpm->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                  &old);
        if (r != TSS2_RC_SUCCESS)
            return tc_tpm_rc(r, "Esys_TR_FromTPMPublic(persistent)");
        /* Evicting a persistent object returns no new handle and invalidates old. */
        r = Esys_EvictControl(tpm->esys, ESYS_TR_RH_OWNER, old, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                              ESYS_TR_NONE, handle, &made);
        if (r != TSS2_RC_SUCCESS) {
            Esys_TR_Close(tpm->esys, &old);
            return tc_tpm_rc(r, "Esys_EvictControl(evict)");
        }
        made = ESYS_TR_NONE;
    }
    r = Esys_EvictControl(tpm->esys, ESYS_TR_RH_OWNER, key->esys_handle, ESYS_TR_PASSWORD,
                          ESYS_TR_NONE, ESYS_TR_NONE, handle, &made);
    if (r != TSS2_RC_SUCCESS)
        return tc_tpm_rc(r, "Esys_EvictControl(persist)");
    Esys_TR_Close(tpm->esys, &made);
    /* The persistent copy is what counts now; the transient one would only take object memory. */
    ESYS_TR t = key->esys_handle;
    tc_tpm_untrack(tpm, t);
    r = Esys_FlushContext(tpm->esys, t);
    if (r != TSS2_RC_SUCCESS)
        tc_tpm_rc(r, "Esys_FlushContext(transient EK)");
    key->esys_handle = 0;
    key->persistent = handle;
    return 0;
}
