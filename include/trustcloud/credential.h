/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TPM2_MakeCredential done in software (TPM 2.0 Part 1, "Protected Storage":
 * credential protection; Part 1 Annex B/C for the RSA and ECC secret sharing).
 *
 * A verifier wraps a random credential for one TPM: only a TPM that holds the
 * private part of ek_public AND has the object named obj_name loaded can
 * recover it with TPM2_ActivateCredential. This proves the AK (the named
 * object) lives in the same TPM as the EK.
 */
#ifndef TRUSTCLOUD_CREDENTIAL_H
#define TRUSTCLOUD_CREDENTIAL_H

#include <stddef.h>
#include <stdint.h>

#define TC_CRED_MAX_CREDENTIAL 64 /* TPM2B_DIGEST limit for sha512 name algorithms */
#define TC_CRED_MAX_BLOB 256      /* marshaled TPM2B_ID_OBJECT */
#define TC_CRED_MAX_SECRET 520    /* marshaled TPM2B_ENCRYPTED_SECRET */

struct tc_credential_blob {
    uint8_t id_object[TC_CRED_MAX_BLOB]; /* marshaled TPM2B_ID_OBJECT (credentialBlob) */
    size_t id_object_len;
    uint8_t secret[TC_CRED_MAX_SECRET];  /* marshaled TPM2B_ENCRYPTED_SECRET */
    size_t secret_len;
};

/*
 * ek_public: marshaled TPM2B_PUBLIC of an RSA or ECC storage key (an EK: restricted decrypt,
 * AES-CFB symmetric). obj_name: the TPM name of the object to bind (the AK). Errors:
 * TC_ERR_FORMAT (unparsable public area), TC_ERR_KEY (not a restricted decryption key, or
 * unsupported symmetric/curve), TC_ERR_INVALID_ARG (sizes), TC_ERR_CRYPTO.
 * The seed and derived keys are wiped before returning.
 */
int tc_make_credential(const uint8_t *ek_public, size_t ek_public_len, const uint8_t *obj_name,
                       size_t obj_name_len, const uint8_t *credential, size_t credential_len,
                       struct tc_credential_blob *out);

#endif
