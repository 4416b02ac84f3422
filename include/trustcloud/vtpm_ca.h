/* SPDX-License-Identifier: Apache-2.0 */
/*
 * X.509 certificates signed by the host's TPM-resident vTPM CA key (trustcloud/tpm_certify.h):
 * a self-signed "vTPM CA" certificate for that key, and the EK certificates of the host's
 * vTPMs. The signature comes from a callback, so this module needs no TPM: OpenSSL builds the
 * certificate, the callback signs SHA-256(TBSCertificate), and the result is an ordinary DER
 * certificate (checked with X509_verify against the CA public key before it is returned), so
 * `openssl verify -CAfile vtpmca.pem ek.pem` accepts it.
 *
 * Outputs are cleared on entry and set only on success; the caller owns them (free() for DER
 * buffers, X509_free). Errors: TC_ERR_INVALID_ARG, TC_ERR_CRYPTO, TC_ERR_ALLOC, whatever the
 * callback returns, TC_ERR_SIGNATURE when the callback's signature does not verify with the CA
 * public key.
 */
#ifndef TRUSTCLOUD_VTPM_CA_H
#define TRUSTCLOUD_VTPM_CA_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "trustcloud/reason.h"

/* TCG EK certificate extended key usage (tcg-kp-EKCertificate). */
#define TC_VTPM_CA_EKU_OID "2.23.133.8.1"
/* Largest certificate the verifier accepts. */
#define TC_VTPM_CA_MAX_CERT 16384

/* Signs a SHA-256 digest with the CA key: *der receives a malloc'd DER ECDSA-Sig-Value
 * (the caller of the callback frees it). Returns 0 or a negative TC_ERR_*. */
typedef int (*tc_vtpm_ca_sign_fn)(void *arg, const uint8_t digest[32], uint8_t **der,
                                  size_t *der_len);

struct tc_vtpm_ca_signer {
    tc_vtpm_ca_sign_fn sign;
    void *arg;
    EVP_PKEY *pubkey; /* the CA's ECC P-256 public key (borrowed) */
};

/*
 * A tc_vtpm_ca_sign_fn for a software key (arg: the EVP_PKEY holding the private key, borrowed),
 * for tests, fuzzing and tools. A CA whose key is not TPM-resident proves nothing: the
 * coordinator refuses it (tc_vtpm_ca_check_cert_key against the certified key). On failure *der
 * is NULL. Returns 0, TC_ERR_INVALID_ARG or TC_ERR_CRYPTO.
 */
int tc_vtpm_ca_soft_sign(void *arg, const uint8_t digest[32], uint8_t **der, size_t *der_len);

/*
 * The self-signed vTPM CA certificate: subject = issuer = CN=cn (O=trustcloud), random 128-bit
 * serial, notBefore one hour back, `days` days (0 = 3650), basicConstraints critical CA:TRUE
 * pathlen:0, keyUsage critical keyCertSign|cRLSign, subject and authority key identifiers.
 */
int tc_vtpm_ca_self_cert(const struct tc_vtpm_ca_signer *signer, const char *cn, unsigned days,
                         X509 **out);

struct tc_vtpm_ek_req {
    EVP_PKEY *ek_pub;               /* the vTPM EK's public key (RSA or EC), or ... */
    const uint8_t *ek_tpm2b_public; /* ... its marshaled TPM2B_PUBLIC */
    size_t ek_tpm2b_public_len;
    const char *vm_id; /* subject CN (required, at most 64 characters) */
    unsigned days;     /* validity; 0 = 3650 */
    /* Optional TCG TPM attributes (EK Credential Profile 2.0, 3.2.9): when manufacturer is set,
     * a subjectAltName directoryName (one RDN) with tcg-at-tpmManufacturer ("id:" + 1..8 hex
     * digits, e.g. "id:54434C44"), tcg-at-tpmModel (1..64 printable characters) and
     * tcg-at-tpmVersion ("id:" + 1..8 hex digits) is added; all three or none. */
    const char *tpm_manufacturer;
    const char *tpm_model;
    const char *tpm_version;
};

/*
 * Issues the vTPM EK certificate: issuer = ca_cert's subject, subject CN=vm_id, random 128-bit
 * serial, basicConstraints critical CA:FALSE, keyUsage critical keyEncipherment (RSA EK) or
 * keyAgreement (EC EK) as the TCG EK Credential Profile prescribes, EKU 2.23.133.8.1,
 * authorityKeyIdentifier of ca_cert, and the TPM attributes if given (TC_ERR_INVALID_ARG when
 * one is malformed or only some are given). signer->pubkey must be ca_cert's key (TC_ERR_KEY).
 * *der (malloc'd) receives the DER certificate.
 */
int tc_vtpm_ca_issue_ek_cert(const struct tc_vtpm_ca_signer *signer, X509 *ca_cert,
                             const struct tc_vtpm_ek_req *req, uint8_t **der, size_t *der_len);

/*
 * Verifies an EK certificate (DER, untrusted, at most TC_VTPM_CA_MAX_CERT bytes, consumed
 * exactly) against the vTPM CA certificate ca_cert as the only trust anchor (time: now), and
 * that it carries the EK EKU. Returns 0 or: TC_ERR_FORMAT ("vtpm_ca.format"),
 * TC_ERR_SIGNATURE ("vtpm_ca.chain", naming OpenSSL's reason), TC_ERR_POLICY ("vtpm_ca.eku"),
 * TC_ERR_INVALID_ARG ("vtpm_ca.args").
 */
/*
 * Binds the vTPM CA certificate to the TPM-resident key a TPM2_Certify attestation covered:
 * 0 when ca_cert's public key is the key of the marshaled TPM2B_PUBLIC certified_pub (the one
 * passed to tc_certify_verify), else TC_ERR_MISMATCH ("vtpm_ca.key"); TC_ERR_FORMAT for an
 * unusable public area.
 */
int tc_vtpm_ca_check_cert_key(X509 *ca_cert, const uint8_t *certified_pub, size_t len,
                              struct tc_reason *why);

int tc_vtpm_ca_verify_ek_cert(const uint8_t *der, size_t len, X509 *ca_cert, struct tc_reason *why);

#endif
