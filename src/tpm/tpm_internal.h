/* SPDX-License-Identifier: Apache-2.0 */
/* Private to src/tpm: the handle behind struct tc_tpm and the TSS2_RC boundary. */
#ifndef TC_TPM_INTERNAL_H
#define TC_TPM_INTERNAL_H

#include <stdbool.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tcti.h>

#include "trustcloud/buf.h"
#include "trustcloud/tpm.h"

/* Keys handed out in struct tc_tpm_key that tc_tpm_close() still has to flush. */
#define TC_TPM_MAX_TRACKED 16

struct tc_tpm {
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
    ESYS_TR tracked[TC_TPM_MAX_TRACKED];
    bool without_rm; /* the TCTI reaches the TPM itself (tc_tpm_tcti_without_rm) */
};

/* Logs what failed with the decoded TSS2_RC and returns TC_ERR_TPM (never 0). */
int tc_tpm_rc(TSS2_RC rc, const char *what);

/* Remember / forget a transient object so tc_tpm_close() can flush it. */
void tc_tpm_track(struct tc_tpm *tpm, ESYS_TR handle);
void tc_tpm_untrack(struct tc_tpm *tpm, ESYS_TR handle);

/* A policy session satisfying the TCG default EK's authPolicy, PolicySecret(TPM_RH_ENDORSEMENT),
 * started with continueSession so that cleanup is always exactly one tc_tpm_session_flush()
 * (which is a no-op on ESYS_TR_NONE and resets the handle). */
int tc_tpm_ek_session(struct tc_tpm *tpm, ESYS_TR *session);
void tc_tpm_session_flush(struct tc_tpm *tpm, ESYS_TR *session);

/* Converts a tc_pcr_set's banks and masks (in set order) into a TPM selection. */
int tc_tpm_pcr_selection(const struct tc_pcr_set *sel, TPML_PCR_SELECTION *out);

/* Fills key->pub and key->name from pub and, when tpm_name is not NULL, checks the computed name
 * against the TPM's (TC_ERR_MISMATCH). */
int tc_tpm_key_set_public(struct tc_tpm_key *key, const TPM2B_PUBLIC *pub,
                          const TPM2B_NAME *tpm_name);

/* TPM2_Create of tmpl under the EK (through an EK policy session). On success *priv and *pub are
 * the TPM's blobs, to be Esys_Free'd by the caller (cleanse *priv first); NULL on failure. what
 * names the key in error logs. */
int tc_tpm_create_under_ek(struct tc_tpm *tpm, const struct tc_tpm_key *ek,
                           const TPM2B_PUBLIC *tmpl, const char *what, TPM2B_PRIVATE **priv,
                           TPM2B_PUBLIC **pub);

/* TPM2_Load of pub/priv under the EK; checks the TPM's name for the object against pub's, then
 * fills key->pub/name/esys_handle and tracks the handle. key->alg/scheme are left to the caller.
 * On failure nothing stays loaded. */
int tc_tpm_load_under_ek(struct tc_tpm *tpm, const struct tc_tpm_key *ek, const TPM2B_PUBLIC *pub,
                         const TPM2B_PRIVATE *priv, const char *what, struct tc_tpm_key *key);

/* Key context files (AK, vTPM CA key) share one tail after a caller-specific head (magic,
 * version, ...): u16 parent name length | u16 public length | u16 private length | parent name |
 * TPM2B_PUBLIC | TPM2B_PRIVATE, all big-endian. tc_tpm_ctx_save writes head then that tail
 * (at most max bytes, mode 0600); the private blob buffer is cleansed. */
int tc_tpm_ctx_save(const char *path, size_t max, const uint8_t *head, size_t head_len,
                    const struct tc_tpm_key *parent, const struct tc_tpm_key *key,
                    const TPM2B_PRIVATE *priv);
/* Starts reading a context file of at most max bytes (TC_ERR_TOO_LARGE): checks the magic
 * (TC_ERR_FORMAT) and the u16 version (TC_ERR_UNSUPPORTED) and leaves r after them. */
int tc_tpm_ctx_open(struct tc_reader *r, const uint8_t *data, size_t len, size_t max,
                    const uint8_t magic[4], uint16_t version);
/* Reads that tail from r, which must end exactly there (TC_ERR_TRAILING). parent_name must hold
 * TC_TPM_MAX_NAME bytes; the public/private views point into r's data. */
int tc_tpm_ctx_read_tail(struct tc_reader *r, size_t priv_max, uint8_t *parent_name,
                         size_t *parent_len, const uint8_t **pubv, size_t *pub_len,
                         const uint8_t **privv, size_t *priv_len);
/* Exact unmarshaling of a TPM2B_PUBLIC / TPM2B_PRIVATE: TC_ERR_FORMAT, TC_ERR_TRAILING. A
 * TPM2B_PUBLIC whose own size field differs from the bytes its publicArea took is TC_ERR_FORMAT
 * (tpm2-tss does not check it). */
int tc_tpm_unmarshal_public(const uint8_t *data, size_t len, TPM2B_PUBLIC *pub);
int tc_tpm_unmarshal_private(const uint8_t *data, size_t len, TPM2B_PRIVATE *priv);

/* Whether a persistent object or NV index exists, asked through GetCapability so that the common
 * "absent" case provokes no TPM error (which tpm2-tss would log). */
int tc_tpm_handle_exists(struct tc_tpm *tpm, uint32_t handle, bool *exists);
/* The TPM's NV_Read/NV_Write chunk size (TPM2_PT_NV_BUFFER_MAX), 512 if it does not say. */
int tc_tpm_nv_chunk(struct tc_tpm *tpm, uint16_t *max);

/* The TPM response code without its parameter/handle/session number, for comparing with
 * TPM2_RC_* constants (TPM2_RC_POLICY_FAIL, TPM2_RC_INTEGRITY, ...); 0 when rc is not from the TPM
 * itself (another tpm2-tss layer) or is a success. */
static inline TSS2_RC tc_tpm_rc_base(TSS2_RC rc)
{
    if (rc == TSS2_RC_SUCCESS || (rc & 0xfffff000u) != 0)
        return 0;
    return (rc & TPM2_RC_FMT1) ? (rc & (TPM2_RC_FMT1 | 0x3fu)) : (rc & 0xfffu);
}

#endif
