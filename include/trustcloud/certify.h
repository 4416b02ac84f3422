/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Verification of a TPM2_Certify attestation: pure functions over bytes, no TPM needed.
 *
 * TPM2_Certify (TPM 2.0 Part 3, 18.2) makes the AK sign a TPMS_ATTEST of type
 * TPM2_ST_ATTEST_CERTIFY naming another object loaded in the same TPM. With the certified key's
 * public area, a verifier learns that a key with exactly these attributes lives in the TPM of
 * this AK. trustcloud uses it for the host's vTPM CA key: fixedTPM|fixedParent (cannot leave
 * the TPM), sensitiveDataOrigin (generated inside it), sign, not decrypt, not restricted.
 *
 * Rejections name the check: "certify.args", "certify.format" (unparsable or trailing bytes),
 * "certify.magic", "certify.type", "certify.nonce", "certify.signature", "certify.scheme",
 * "certify.signer", "certify.key" (certified public area unusable: not parsable, not ECC
 * P-256 ECDSA-SHA256), "certify.name", "certify.attributes".
 */
#ifndef TRUSTCLOUD_CERTIFY_H
#define TRUSTCLOUD_CERTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "trustcloud/quote.h"
#include "trustcloud/reason.h"

#define TC_CERTIFY_MAX_ATTEST 1024 /* >= sizeof(TPMS_ATTEST) marshaled */

/* What a certify attestation says. */
struct tc_certify_info {
    uint64_t clock;
    uint32_t reset_count;
    uint32_t restart_count;
    bool safe;
    uint64_t firmware_version;
    uint8_t signer[TC_QUOTE_MAX_NAME]; /* qualifiedSigner (the AK's qualified name) */
    size_t signer_len;
    uint8_t nonce[TC_QUOTE_MAX_NONCE]; /* extraData */
    size_t nonce_len;
    uint8_t name[TC_QUOTE_MAX_NAME]; /* attested.certify.name: the certified object */
    size_t name_len;
    uint8_t qualified_name[TC_QUOTE_MAX_NAME]; /* attested.certify.qualifiedName */
    size_t qualified_name_len;
};

/*
 * Parses a marshaled TPMS_ATTEST (untrusted; at most TC_CERTIFY_MAX_ATTEST bytes, consumed
 * exactly) of type certify into info (cleared first). Checks structure, magic and type only.
 * Errors: TC_ERR_FORMAT / TC_ERR_TRAILING / TC_ERR_TOO_LARGE ("certify.format"),
 * TC_ERR_FORMAT ("certify.magic", "certify.type").
 */
int tc_certify_parse(const uint8_t *attest, size_t attest_len, struct tc_certify_info *info,
                     struct tc_reason *why);

/*
 * Verifies that ak certified the key whose marshaled TPM2B_PUBLIC is certified_pub, for nonce.
 * attest: marshaled TPMS_ATTEST; sig: marshaled TPMT_SIGNATURE (ECDSA, SM2, RSASSA or RSAPSS,
 * fitting the AK and its scheme). Checks, in order: structure, magic, type, nonce (constant
 * time), signature scheme and signature over attest, the signer's name algorithm (public-area
 * AKs), the certified public area (parsed exactly, ECC P-256 with an ECDSA-SHA256 scheme),
 * its name == attested name, its attributes (fixedTPM, fixedParent, sensitiveDataOrigin, sign;
 * neither decrypt nor restricted). Returns 0, or TC_ERR_NONCE, TC_ERR_SIGNATURE,
 * TC_ERR_MISMATCH (name, signer), TC_ERR_KEY (attributes, key type, scheme), TC_ERR_FORMAT ...
 * with why naming the check. info_out (optional) is filled on success, cleared otherwise.
 */
int tc_certify_verify(const struct tc_ak *ak, const uint8_t *attest, size_t attest_len,
                      const uint8_t *sig, size_t sig_len, const uint8_t *certified_pub,
                      size_t certified_pub_len, const uint8_t *nonce, size_t nonce_len,
                      struct tc_certify_info *info_out, struct tc_reason *why);

/*
 * The OpenSSL public key of a marshaled TPM2B_PUBLIC (untrusted, consumed exactly): RSA (any
 * size OpenSSL accepts, exponent 0 = 65537) or ECC NIST P-256 / P-384 (point checked on the
 * curve). Used for the vTPM CA key and for EKs. *out (caller frees) is set on success only.
 * Errors: TC_ERR_FORMAT, TC_ERR_TRAILING, TC_ERR_UNSUPPORTED, TC_ERR_KEY (bad point),
 * TC_ERR_CRYPTO.
 */
int tc_certify_public_key(const uint8_t *tpm2b_public, size_t len, EVP_PKEY **out);

#endif
