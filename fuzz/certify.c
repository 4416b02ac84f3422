/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the TPM2_Certify verifier and the vTPM EK certificate verifier. The input is split
 * into six sections, each prefixed by a 2-byte big-endian length (the last one takes whatever
 * is left): AK public key (TPM2B_PUBLIC/TPMT_PUBLIC/PEM/DER), TPMS_ATTEST, TPMT_SIGNATURE,
 * certified key TPM2B_PUBLIC, nonce, DER certificate. Each is parsed on its own, then the
 * attestation is verified, and the certificate is checked against a vTPM CA made at start-up.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "trustcloud/certify.h"
#include "trustcloud/error.h"
#include "trustcloud/quote.h"
#include "trustcloud/vtpm_ca.h"

#include "fuzz_input.h"

enum { S_AK, S_ATTEST, S_SIG, S_PUB, S_NONCE, S_CERT, NSECT };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A vTPM CA certificate to verify against, made once (kept for the whole run). */
static X509 *ca_cert(void)
{
    static X509 *ca;
    static EVP_PKEY *key;
    if (ca == NULL && key == NULL) {
        key = EVP_EC_gen("P-256");
        struct tc_vtpm_ca_signer s = {.sign = tc_vtpm_ca_soft_sign, .arg = key, .pubkey = key};
        if (key == NULL || tc_vtpm_ca_self_cert(&s, "fuzz vTPM CA", 0, &ca) != 0)
            abort();
    }
    return ca;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet_tss();
    const uint8_t *sect[NSECT];
    size_t len[NSECT];
    fuzz_split(data, size, NSECT, sect, len);

    struct tc_reason why;
    struct tc_certify_info info;
    struct tc_ak *ak = NULL;
    EVP_PKEY *pk = NULL;

    tc_certify_parse(sect[S_ATTEST], len[S_ATTEST], &info, &why);
    if (tc_certify_public_key(sect[S_PUB], len[S_PUB], &pk) == 0)
        EVP_PKEY_free(pk);
    if (tc_ak_parse(sect[S_AK], len[S_AK], &ak, &why) == 0) {
        int rc =
            tc_certify_verify(ak, sect[S_ATTEST], len[S_ATTEST], sect[S_SIG], len[S_SIG],
                              sect[S_PUB], len[S_PUB], sect[S_NONCE], len[S_NONCE], &info, &why);
        /* Accepted means the certified key's name is the attested one. */
        if (rc == 0) {
            uint8_t name[TC_QUOTE_MAX_NAME];
            size_t name_len = 0;
            if (tc_tpm_public_name(sect[S_PUB], len[S_PUB], name, &name_len) != 0 ||
                name_len != info.name_len || memcmp(name, info.name, name_len) != 0)
                abort();
        }
        tc_ak_free(ak);
    }
    tc_vtpm_ca_verify_ek_cert(sect[S_CERT], len[S_CERT], ca_cert(), &why);
    return 0;
}
