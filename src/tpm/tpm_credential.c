/* SPDX-License-Identifier: Apache-2.0 */
/* TPM2_ActivateCredential with the EK's policy session (see tpm_credential.h). */
#define LOGMODULE "tpm"
#include <string.h>

#include <openssl/crypto.h>
#include <tss2/tss2_mu.h>

#include "tpm_internal.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/tpm_credential.h"

int tc_tpm_activate_credential(struct tc_tpm *tpm, const struct tc_tpm_key *ak,
                               const struct tc_tpm_key *ek, const uint8_t *id_object,
                               size_t id_object_len, const uint8_t *enc_secret,
                               size_t enc_secret_len, uint8_t *cred, size_t cap, size_t *cred_len)
{
    TPM2B_ID_OBJECT blob;
    TPM2B_ENCRYPTED_SECRET secret;
    TPM2B_DIGEST *out = NULL;
    ESYS_TR session = ESYS_TR_NONE;
    size_t off;
    int rc = 0;

    if (cred_len != NULL)
        *cred_len = 0;
    if (tpm == NULL || ak == NULL || ek == NULL || id_object == NULL || enc_secret == NULL ||
        cred == NULL || cred_len == NULL || ak->esys_handle == 0 || ek->esys_handle == 0)
        return TC_ERR_INVALID_ARG;
    memset(&blob, 0, sizeof(blob));
    memset(&secret, 0, sizeof(secret));
    off = 0;
    if (Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(id_object, id_object_len, &off, &blob) !=
        TSS2_RC_SUCCESS) {
        LOG_ERROR("credential blob: not a TPM2B_ID_OBJECT");
        return TC_ERR_FORMAT;
    }
    if (off != id_object_len) {
        LOG_ERROR("credential blob: %zu trailing bytes", id_object_len - off);
        return TC_ERR_TRAILING;
    }
    off = 0;
    if (Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(enc_secret, enc_secret_len, &off, &secret) !=
        TSS2_RC_SUCCESS) {
        LOG_ERROR("encrypted secret: not a TPM2B_ENCRYPTED_SECRET");
        return TC_ERR_FORMAT;
    }
    if (off != enc_secret_len) {
        LOG_ERROR("encrypted secret: %zu trailing bytes", enc_secret_len - off);
        return TC_ERR_TRAILING;
    }
    if ((rc = tc_tpm_ek_session(tpm, &session)) != 0)
        goto out;
    /* activateHandle (the AK) needs USER role: password; keyHandle (the EK) needs ADMIN role,
     * which adminWithPolicy turns into its authPolicy. */
    TSS2_RC r =
        Esys_ActivateCredential(tpm->esys, ak->esys_handle, ek->esys_handle, ESYS_TR_PASSWORD,
                                session, ESYS_TR_NONE, &blob, &secret, &out);
    if (r != TSS2_RC_SUCCESS) {
        rc = tc_tpm_rc(r, "Esys_ActivateCredential");
        goto out;
    }
    if (out->size > cap) {
        rc = TC_ERR_TOO_LARGE;
        goto out;
    }
    memcpy(cred, out->buffer, out->size);
    *cred_len = out->size;
out:
    tc_tpm_session_flush(tpm, &session);
    if (out != NULL)
        OPENSSL_cleanse(out, sizeof(*out));
    Esys_Free(out);
    return rc;
}
