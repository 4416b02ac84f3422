/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TPM2_ActivateCredential: the TPM half of credential activation (the verifier's half is
 * tc_make_credential in credential.h). A TPM recovers the credential only when it holds the
 * private part of the EK the blob was made for AND has loaded the object whose name the blob
 * is bound to (the AK): this is how a node proves its AK lives next to a certified EK.
 */
#ifndef TRUSTCLOUD_TPM_CREDENTIAL_H
#define TRUSTCLOUD_TPM_CREDENTIAL_H

#include <stddef.h>
#include <stdint.h>

#include "trustcloud/tpm.h"

/*
 * Activates a credential. ak and ek must be loaded (tc_tpm_ak_create/_load, tc_tpm_ek_create).
 * id_object: a marshaled TPM2B_ID_OBJECT; enc_secret: a marshaled TPM2B_ENCRYPTED_SECRET (as
 * tc_make_credential writes them); each is unmarshaled with its exact size and must be
 * consumed completely (TC_ERR_FORMAT / TC_ERR_TRAILING otherwise, without touching the TPM).
 * The AK is authorized by password (empty auth), the EK by a policy session satisfying its
 * authPolicy, PolicySecret(TPM_RH_ENDORSEMENT), which is flushed before returning.
 * On success the credential (at most cap bytes, else TC_ERR_TOO_LARGE) is copied to cred and
 * *cred_len set. TC_ERR_TPM when the TPM refuses: the blob was made for another EK, another AK
 * name, or was tampered with (the TSS2_RC is logged). The TPM's copy of the credential is wiped.
 */
int tc_tpm_activate_credential(struct tc_tpm *tpm, const struct tc_tpm_key *ak,
                               const struct tc_tpm_key *ek, const uint8_t *id_object,
                               size_t id_object_len, const uint8_t *enc_secret,
                               size_t enc_secret_len, uint8_t *cred, size_t cap, size_t *cred_len);

#endif
