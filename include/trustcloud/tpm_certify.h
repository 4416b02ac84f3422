/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host's vTPM CA key: an ECC P-256 ECDSA-SHA256 signing key that lives in the host TPM
 * (fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|sign, NOT restricted so that it can
 * sign arbitrary digests such as certificate TBS hashes), created under the EK. TPM2_Certify by
 * the host AK proves to a verifier that this key is in the same TPM as the AK (see
 * trustcloud/certify.h for the verification); the key then issues the EK certificates of the
 * host's vTPMs (trustcloud/vtpm_ca.h).
 *
 * Chain: manufacturer CA -> host EK -> host AK -> vTPM CA key -> vTPM EK.
 *
 * Errors as in trustcloud/tpm.h: TC_ERR_TPM when the TPM refuses (TSS2_RC logged),
 * TC_ERR_INVALID_ARG for unusable arguments.
 */
#ifndef TRUSTCLOUD_TPM_CERTIFY_H
#define TRUSTCLOUD_TPM_CERTIFY_H

#include <stddef.h>
#include <stdint.h>

#include "trustcloud/tpm.h"

/* Largest vTPM CA context file accepted. */
#define TC_TPM_VTPM_CA_CTX_MAX 4096

/*
 * Creates the vTPM CA key under ek (loaded, tc_tpm_ek_create; authorized with
 * PolicySecret(endorsement)) and saves it to ctx_path (mode 0600, atomic; format: "TCVC" |
 * u16 version | u16 parent name length | u16 public length | u16 private length | parent name |
 * TPM2B_PUBLIC | TPM2B_PRIVATE, big-endian; the private blob is sealed by the TPM under the EK
 * seed). The key comes back loaded with pub and name filled (name checked against the TPM's);
 * alg = TC_KEY_ECC_P256, scheme = TC_SIG_ECDSA. Release it with tc_tpm_key_release.
 */
int tc_tpm_vtpm_ca_create(struct tc_tpm *tpm, const struct tc_tpm_key *ek, const char *ctx_path,
                          struct tc_tpm_key *key);
/*
 * Loads the key saved by tc_tpm_vtpm_ca_create. TC_ERR_MISMATCH when the file's key was created
 * under another EK; TC_ERR_KEY when its public area is not exactly a vTPM CA key;
 * TC_ERR_FORMAT / TC_ERR_TRUNCATED / TC_ERR_TRAILING / TC_ERR_UNSUPPORTED (version) /
 * TC_ERR_TOO_LARGE for a damaged file; TC_ERR_IO when it cannot be read.
 */
int tc_tpm_vtpm_ca_load(struct tc_tpm *tpm, const struct tc_tpm_key *ek, const char *ctx_path,
                        struct tc_tpm_key *key);

/* TPM2_Certify output, in the same byte formats as a quote. */
struct tc_tpm_certify {
    uint8_t *attest; /* marshaled TPMS_ATTEST (type TPM2_ST_ATTEST_CERTIFY) */
    size_t attest_len;
    uint8_t *sig; /* marshaled TPMT_SIGNATURE by the AK */
    size_t sig_len;
};

/*
 * TPM2_Certify of key (any loaded object with empty auth and no adminWithPolicy) by ak (loaded,
 * with its own scheme), qualifyingData = nonce (at most 64 bytes). out is cleared first; release
 * it with tc_tpm_certify_release (also after an error).
 */
int tc_tpm_certify(struct tc_tpm *tpm, const struct tc_tpm_key *key, const struct tc_tpm_key *ak,
                   const uint8_t *nonce, size_t nonce_len, struct tc_tpm_certify *out);
void tc_tpm_certify_release(struct tc_tpm_certify *c);

/*
 * TPM2_Sign of a SHA-256 digest with an unrestricted ECDSA-SHA256 key (the null hash-check
 * ticket, which the TPM only accepts for unrestricted keys). *der receives a malloc'd DER
 * ECDSA-Sig-Value (caller frees), as X.509 and EVP_DigestVerify expect.
 */
int tc_tpm_sign_digest(struct tc_tpm *tpm, const struct tc_tpm_key *key, const uint8_t digest[32],
                       uint8_t **der, size_t *der_len);

#endif
