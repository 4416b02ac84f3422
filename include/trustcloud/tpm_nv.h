/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Manufacturing-style provisioning of a TPM: writing an EK certificate into its standard NV index
 * and making the EK persistent at its standard handle, as a TPM vendor (or swtpm_setup) does.
 * Meant for TPMs trustcloud itself manufactures (vTPMs): it needs the platform hierarchy with
 * its auth still empty, as on a fresh swtpm.
 *
 * Errors as in trustcloud/tpm.h: TC_ERR_TPM when the TPM refuses (the TSS2_RC is logged),
 * TC_ERR_INVALID_ARG for arguments rejected without asking the TPM.
 */
#ifndef TRUSTCLOUD_TPM_NV_H
#define TRUSTCLOUD_TPM_NV_H

#include <stddef.h>
#include <stdint.h>

#include "trustcloud/tpm.h"

/* Persistent handle of the low-range ECC NIST P-256 EK (TCG TPM v2.0 Provisioning Guidance). */
#define TC_TPM_EK_HANDLE_ECC 0x81010002u

/* NV attributes of an EK certificate index as swtpm_setup 0.7 defines them (platform-created, so
 * the owner cannot delete or rewrite it; readable by the owner or with the index's empty auth):
 * PPWRITE | WRITEDEFINE | PPREAD | OWNERREAD | AUTHREAD | NO_DA | PLATFORMCREATE. */
#define TC_TPM_NV_EK_CERT_ATTRS 0x42072001u

/* Largest certificate tc_tpm_ek_cert_write accepts (an NV index holds at most this much on
 * libtpms; real EK certificates are 0.5-1.5 KB). */
#define TC_TPM_EK_CERT_MAX 2048

/* Defines index (0x01xxxxxx) under the platform hierarchy (empty platform auth) with attrs, a
 * SHA-256 name, empty auth and no policy, sized len (1..TC_TPM_EK_CERT_MAX), and writes data in
 * chunks of the TPM's NV buffer size. An index already defined there is undefined first (with
 * platform auth), so calling it again replaces the contents. attrs must contain
 * PLATFORMCREATE and PPWRITE (TC_ERR_INVALID_ARG otherwise). */
int tc_tpm_nv_define_write(struct tc_tpm *tpm, uint32_t index, uint32_t attrs, const uint8_t *data,
                           size_t len);

/* Writes a DER EK certificate to the standard index of alg (TC_TPM_NV_EK_CERT_RSA or
 * TC_TPM_NV_EK_CERT_ECC) with TC_TPM_NV_EK_CERT_ATTRS, where tc_tpm_ek_cert_read,
 * tpm2_getekcertificate and tpm2_nvread look. Other algs: TC_ERR_UNSUPPORTED. */
int tc_tpm_ek_cert_write(struct tc_tpm *tpm, enum tc_key_alg alg, const uint8_t *der, size_t len);

/* Makes the loaded transient key persistent at handle (0x81000000..0x817fffff, owner
 * hierarchy, empty owner auth) with EvictControl. A persistent object already at handle is
 * evicted first. On success the transient copy is flushed and key describes the persistent
 * object (key->persistent = handle, key->esys_handle = 0; pub and name unchanged); on error key
 * is unchanged. TC_ERR_INVALID_ARG if key is not loaded, already persistent, or handle is
 * outside the owner's persistent range. */
int tc_tpm_key_persist(struct tc_tpm *tpm, struct tc_tpm_key *key, uint32_t handle);

#endif
