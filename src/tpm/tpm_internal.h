/* SPDX-License-Identifier: Apache-2.0 */
/* Private to src/tpm: the handle behind struct tc_tpm and the TSS2_RC boundary. */
#ifndef TC_TPM_INTERNAL_H
#define TC_TPM_INTERNAL_H

#include <stdbool.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tcti.h>

#include "trustcloud/tpm.h"

/* Keys handed out in struct tc_tpm_key that tc_tpm_close() still has to flush. */
#define TC_TPM_MAX_TRACKED 16

struct tc_tpm {
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
    ESYS_TR tracked[TC_TPM_MAX_TRACKED];
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

#endif
