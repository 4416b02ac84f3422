/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Secrets sealed to a TPM and its boot state, and monotonic NV counters.
 *
 * A sealed secret is a keyedhash "sealed data" object created under the EK (authorized with
 * PolicySecret(endorsement), as for the other keys under the EK) with fixedTPM|fixedParent|noDA,
 * userWithAuth CLEAR and authPolicy = PolicyPCR over a selection with the values those PCRs had
 * when it was sealed. Its private blob is encrypted and integrity-protected by the TPM under the
 * EK's seed, so it can only be loaded in this TPM, and only unsealed while the PCRs still have the
 * sealed values. The object is flushed again after sealing and after unsealing: nothing stays
 * loaded.
 *
 * Sealed blob (a file image, all lengths big-endian):
 *   "TCSL" | u16 version (1) | u16 PCR selection length | TPML_PCR_SELECTION |
 *   u16 policy digest length | policy digest (SHA-256) |
 *   u16 parent name length | u16 public length | u16 private length |
 *   parent (EK) name | TPM2B_PUBLIC | TPM2B_PRIVATE
 * (the tail after the policy digest is the one the AK and vTPM CA context files use).
 *
 * Errors as in trustcloud/tpm.h: TC_ERR_TPM when the TPM refuses (TSS2_RC logged),
 * TC_ERR_INVALID_ARG for arguments rejected without asking the TPM.
 */
#ifndef TRUSTCLOUD_TPM_SEAL_H
#define TRUSTCLOUD_TPM_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "trustcloud/pcrs.h"
#include "trustcloud/tpm.h"

#define TC_TPM_SEAL_MAX_DATA 128  /* most bytes one sealed object holds (TPM2B_SENSITIVE_DATA) */
#define TC_TPM_SEAL_BLOB_MAX 4096 /* largest sealed blob accepted */

/*
 * Seals data (1..TC_TPM_SEAL_MAX_DATA bytes) under parent (a loaded EK, tc_tpm_ek_create or
 * tc_tpm_key_from_persistent) to the TPM's CURRENT values of the PCRs selected in sel (only the
 * banks and masks of sel are used; at least one PCR; the policy is computed by the TPM itself in a
 * trial session, so it matches exactly what PolicyPCR will check). *blob (malloc'd, caller frees)
 * is the file image described above; it holds no secret in clear. Outputs are set on success
 * only.
 */
int tc_tpm_seal(struct tc_tpm *tpm, const struct tc_tpm_key *parent, const struct tc_pcr_set *sel,
                const uint8_t *data, size_t len, uint8_t **blob, size_t *blob_len);

/*
 * Loads blob under parent and unseals it through a policy session (PolicyPCR over the recorded
 * selection). out receives the data (at most cap bytes, else TC_ERR_TOO_LARGE; wipe it after
 * use); *out_len is set on success only.
 * Errors: TC_ERR_MISMATCH when the blob was made under another parent / in another TPM (the
 * recorded parent name differs, or the TPM refuses the private blob: integrity);
 * TC_ERR_POLICY when the PCRs no longer have the sealed values; TC_ERR_FORMAT, TC_ERR_TRUNCATED,
 * TC_ERR_TRAILING, TC_ERR_TOO_LARGE, TC_ERR_UNSUPPORTED (version, hash) for a damaged blob (also a
 * public area that is not a sealed object of this module, or whose policy is not the recorded
 * one); TC_ERR_TPM otherwise.
 */
int tc_tpm_unseal(struct tc_tpm *tpm, const struct tc_tpm_key *parent, const uint8_t *blob,
                  size_t blob_len, uint8_t *out, size_t cap, size_t *out_len);

/* A sealed blob's parts, as tc_tpm_sealed_parse finds them (no secret: the private blob is
 * TPM-encrypted). */
struct tc_tpm_sealed {
    struct tc_pcr_set sel; /* the sealing selection (masks only, no values) */
    uint8_t policy[TC_MAX_DIGEST];
    size_t policy_len;
    uint8_t parent_name[TC_TPM_MAX_NAME];
    size_t parent_name_len;
    uint8_t pub[TC_TPM_MAX_PUBLIC]; /* marshaled TPM2B_PUBLIC, consumed exactly */
    size_t pub_len;
    uint8_t priv[1024]; /* marshaled TPM2B_PRIVATE, consumed exactly */
    size_t priv_len;
};

/* Parses (untrusted) blob bytes without a TPM: every part capped and unmarshaled exactly, the
 * public area checked to be a sealed object with the recorded policy. Errors as for unsealing a
 * damaged blob. */
int tc_tpm_sealed_parse(const uint8_t *blob, size_t len, struct tc_tpm_sealed *out);

/*
 * Monotonic NV counters (TPM2_NT_COUNTER, SHA-256 name, empty auth, no policy): defined by the
 * owner hierarchy with its (empty) auth; read and incremented with owner auth or the index's own
 * empty auth (OWNERREAD|OWNERWRITE|AUTHREAD|AUTHWRITE|NO_DA). A counter can only go up: even
 * deleting and redefining it cannot bring a lower value back, because the TPM starts a new counter
 * at the highest value any counter ever had (TPM 2.0 Part 1, "NV Counters").
 *
 * tc_tpm_nv_counter_define defines index (idempotent when a counter with exactly these attributes
 * is there; TC_ERR_MISMATCH when something else is) and increments it once when it was never
 * written, so that it can be read at once (an unwritten counter has no value).
 * tc_tpm_nv_counter_read: TC_ERR_NOT_FOUND when the index is undefined or unwritten,
 * TC_ERR_MISMATCH when it is not such a counter (someone defined another kind of index there).
 */
int tc_tpm_nv_counter_define(struct tc_tpm *tpm, uint32_t index);
int tc_tpm_nv_counter_increment(struct tc_tpm *tpm, uint32_t index);
int tc_tpm_nv_counter_read(struct tc_tpm *tpm, uint32_t index, uint64_t *value);

/*
 * The host counter versioning the vTPM registry (trustcloud/vtpm_guard.h). The TCG Registry of
 * Reserved TPM 2.0 Handles and Localities (section 2.2) leaves 0x01800000-0x01BFFFFF to the
 * platform owner (0x010xxxxx-0x013xxxxx belong to the TPM manufacturer, 0x014xxxxx-0x017xxxxx to
 * the platform manufacturer, 0x01Cxxxxx and up are TCG-assigned: EK and platform certificates,
 * working groups). The agent acts for the owner, so its counter lives in the owner range, away
 * from its start and from 0x01800400-0x018005FF, which systemd used.
 */
#define TC_TPM_NV_VTPM_COUNTER 0x01810c01u

#endif
