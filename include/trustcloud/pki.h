/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small X.509 PKI on OpenSSL 3: the trustcloud CA that issues the TLS
 * certificates of coordinators and agents, PEM load/save helpers, and chain
 * verification (also used to check TPM EK certificates against a
 * manufacturer CA bundle).
 *
 * Keys are ECDSA P-256. Functions return 0 or a negative TC_ERR_*; outputs are
 * cleared on entry and set only on success; the caller owns what it receives
 * (X509_free, EVP_PKEY_free, free() for strings).
 */
#ifndef TRUSTCLOUD_PKI_H
#define TRUSTCLOUD_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "trustcloud/reason.h"

/* Largest PEM/DER file the loaders accept. */
#define TC_PKI_MAX_FILE (1024 * 1024)
/* Most certificates taken from one trust bundle (file or directory). */
#define TC_PKI_MAX_TRUST_CERTS 1024

/* A loaded CA: its private key and self-signed certificate. */
struct tc_pki_ca {
    EVP_PKEY *key;
    X509 *cert;
};

/*
 * Creates dir (mode 0700) if needed, a new P-256 CA key in dir/ca.key (PEM,
 * mode 0600) and a self-signed CA certificate dir/ca.pem (CN=subject_cn,
 * basicConstraints critical CA:TRUE pathlen:0, keyUsage keyCertSign+cRLSign,
 * valid `days` days, 0 = 3650). Refuses to overwrite an existing ca.key
 * (TC_ERR_INVALID_ARG). On success *out (if non-NULL) receives the loaded CA.
 */
int tc_pki_ca_init(const char *dir, const char *subject_cn, unsigned days, struct tc_pki_ca **out);

/* Loads dir/ca.key and dir/ca.pem; TC_ERR_KEY if the key does not belong to the certificate. */
int tc_pki_ca_load(const char *dir, struct tc_pki_ca **out);
void tc_pki_ca_free(struct tc_pki_ca *ca);

enum tc_pki_usage {
    TC_PKI_USAGE_SERVER = 1, /* EKU serverAuth */
    TC_PKI_USAGE_CLIENT = 2, /* EKU clientAuth */
    TC_PKI_USAGE_BOTH = 3,
};

/*
 * trustcloud's own object identifiers, under the UUID arc (ITU-T X.667) of UUID
 * d113941c-68b1-49ba-a20e-c4d4b55e7569: 2.25.<that UUID as one decimal integer>.
 * Sub-arcs .1 and .2 are extended key usages naming a certificate's trustcloud role; no other
 * party issues them, so a certificate of another role cannot claim them.
 */
#define TC_PKI_OID_ARC "2.25.277910308806770239075478762848318813545"
#define TC_PKI_OID_COORDINATOR TC_PKI_OID_ARC ".1" /* EKU: the coordinator (CN "coordinator") */
#define TC_PKI_OID_NODE TC_PKI_OID_ARC ".2"        /* EKU: an enrolled node (CN "node:ID") */

/* The trustcloud role a certificate is issued for (tc_pki_issue_req.role), or has (bits). */
enum tc_pki_role {
    TC_PKI_ROLE_NONE = 0,
    TC_PKI_ROLE_COORDINATOR = 1, /* coordinator EKU and CN exactly "coordinator" */
    TC_PKI_ROLE_NODE = 2,        /* node EKU or a CN starting "node:" (either one is enough) */
};

struct tc_pki_issue_req {
    const char *cn;          /* subject CN (required; the CA decides it, not the CSR) */
    const char *const *sans; /* NULL-terminated: "IP:10.0.0.1", "DNS:node1", or a bare IP/name */
    unsigned usage;          /* enum tc_pki_usage bits (required) */
    unsigned days;           /* validity; 0 = 365 */
    unsigned role;           /* TC_PKI_ROLE_*: adds that role's EKU; NONE adds none */
    EVP_PKEY *pubkey;        /* the subject's key, or ... */
    const char *csr_pem;     /* ... a PEM CSR whose self-signature must verify */
    size_t csr_len;
};

/*
 * Issues a leaf certificate (CA:FALSE, keyUsage digitalSignature, random
 * 128-bit serial, notBefore one hour back for clock skew) signed by ca.
 * *cert_pem receives a malloc'd NUL-terminated PEM string. TC_ERR_SIGNATURE if
 * the CSR's signature fails, TC_ERR_INVALID_ARG for a bad SAN or request, also for a role
 * whose CN does not fit it (COORDINATOR needs CN "coordinator", NODE a CN "node:ID") and for
 * more than one role at once.
 */
int tc_pki_issue(const struct tc_pki_ca *ca, const struct tc_pki_issue_req *req, char **cert_pem);

/* A new ECDSA P-256 key. */
int tc_pki_key_generate(EVP_PKEY **out);
/* A PEM CSR for key with subject CN=cn (SHA-256 signature). */
int tc_pki_csr_create(EVP_PKEY *key, const char *cn, char **csr_pem);

/* Certificates: PEM or DER, detected from the content. */
int tc_pki_cert_load(const char *path, X509 **out);
int tc_pki_cert_parse(const uint8_t *data, size_t len, X509 **out);
int tc_pki_cert_to_pem(X509 *cert, char **pem);
int tc_pki_cert_save(const char *path, X509 *cert); /* PEM, mode 0644, atomic */

/* Private keys: unencrypted PEM (PKCS#8 or traditional). Saved with mode 0600, atomically. */
int tc_pki_key_load(const char *path, EVP_PKEY **out);
int tc_pki_key_save(const char *path, EVP_PKEY *key);
/* Public keys as PEM SubjectPublicKeyInfo. */
int tc_pki_pubkey_to_pem(EVP_PKEY *key, char **pem);
int tc_pki_pubkey_from_pem(const char *pem, size_t len, EVP_PKEY **out);

/* The certificate's public key (a new reference). */
int tc_pki_cert_pubkey(X509 *cert, EVP_PKEY **out);
/* 0 if a and b are the same public key, TC_ERR_MISMATCH if not (or of different types). */
int tc_pki_key_equal(const EVP_PKEY *a, const EVP_PKEY *b);
/* The subject CN as UTF-8 (TC_ERR_NOT_FOUND if none, TC_ERR_TOO_LARGE if it does not fit). */
int tc_pki_cert_cn(X509 *cert, char *buf, size_t buflen);
/* SHA-256 over the DER certificate. */
int tc_pki_cert_fingerprint(X509 *cert, uint8_t out[32]);
/* SHA-256 over the certificate key's DER SubjectPublicKeyInfo (what key pins hash). */
int tc_pki_cert_spki_hash(X509 *cert, uint8_t out[32]);
/*
 * The trustcloud roles (TC_PKI_ROLE_* bits) cert carries: COORDINATOR only with the coordinator
 * EKU and CN "coordinator" both; NODE with the node EKU or a "node:" CN. Says nothing about the
 * chain: callers ask only about verified certificates. 0 for a certificate of neither role.
 */
unsigned tc_pki_cert_roles(X509 *cert);

/* Verification flags. */
enum {
    /*
     * The certificate is a TPM endorsement key certificate: accept critical
     * extensions OpenSSL does not process (TCG EK certificates mark e.g. their
     * Subject Directory Attributes critical). Without this flag any unhandled
     * critical extension fails the chain.
     */
    TC_PKI_VERIFY_EK = 1u << 0,
};

struct tc_pki_verify_opts {
    const uint8_t *intermediates; /* optional untrusted certs: PEM bundle or one DER cert */
    size_t intermediates_len;
    const char *trust; /* required: PEM/DER file, or a directory of such files */
    unsigned flags;    /* TC_PKI_VERIFY_* */
    time_t at;         /* verification time; 0 = now */
};

/*
 * Verifies that cert (PEM or DER) chains to a certificate of opts->trust,
 * through opts->intermediates if needed. Purpose-agnostic: EKU is not checked
 * (EK certificates carry the TCG EKU 2.23.133.8.1). Returns 0, or TC_ERR_FORMAT
 * for unparsable input, TC_ERR_IO for an unreadable trust bundle, and
 * TC_ERR_SIGNATURE with why (check "pki.chain") naming the OpenSSL error and
 * the depth/subject of the failing certificate.
 */
int tc_pki_verify_chain(const uint8_t *cert, size_t len, const struct tc_pki_verify_opts *opts,
                        struct tc_reason *why);

#endif
