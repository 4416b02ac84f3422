/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between akpub.c, quote.c and certify.c: the AK as the verifier uses it, its signature
 * check over a TPMS_ATTEST and TPM public keys as OpenSSL keys. */
#ifndef TC_EVIDENCE_QUOTE_INTERNAL_H
#define TC_EVIDENCE_QUOTE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <tss2/tss2_tpm2_types.h>

#include "trustcloud/hashalg.h"
#include "trustcloud/quote.h"

enum tc_ak_type { TC_AK_RSA = 1, TC_AK_ECC, TC_AK_SM2 };

struct tc_ak {
    EVP_PKEY *pkey;
    enum tc_ak_type key_type;
    bool has_public;      /* from a TPM public area: attributes checked, name known */
    uint16_t scheme;      /* TPM2_ALG_NULL when the key has none (or PEM) */
    uint16_t scheme_hash; /* hash of the key's scheme */
    const struct tc_hash_alg *name_alg;
    uint8_t name[TC_QUOTE_MAX_NAME];
    size_t name_len;
};

/* Verifies a marshaled TPMT_SIGNATURE (at most TC_QUOTE_MAX_SIG bytes, all consumed) over the
 * attestation bytes with the AK: the scheme must fit the AK's key type and its own scheme, if any.
 * Failures are reported as "<module>.signature" / "<module>.scheme" (TC_ERR_FORMAT,
 * TC_ERR_TRAILING, TC_ERR_KEY, TC_ERR_UNSUPPORTED, TC_ERR_SIGNATURE, TC_ERR_CRYPTO). On success
 * the signature's hash and algorithm go to hash_out / sig_alg_out when they are not NULL. */
int tc_attest_sig_verify(const struct tc_ak *ak, const char *module, const uint8_t *attest,
                         size_t attest_len, const uint8_t *sig, size_t sig_len,
                         const struct tc_hash_alg **hash_out, uint16_t *sig_alg_out,
                         struct tc_reason *why);

/* Public keys from TPM public-area fields, no attribute checks. RSA: big-endian modulus, TPM
 * exponent (0 means 65537); TC_ERR_CRYPTO if OpenSSL refuses. EC: affine coordinates (at most
 * field bytes each, right-aligned) on a named group of keytype "EC" or "SM2"; TC_ERR_FORMAT for
 * bad sizes, TC_ERR_KEY for a point not on the curve, TC_ERR_CRYPTO if OpenSSL refuses the
 * encoding. *out is the caller's on success. */
int tc_ak_rsa_from_tpm(const uint8_t *n, size_t n_len, uint32_t exponent, EVP_PKEY **out);
int tc_ak_ec_from_tpm(const char *keytype, const char *group, size_t field, const uint8_t *x,
                      size_t x_len, const uint8_t *y, size_t y_len, EVP_PKEY **out);

#endif
