/* SPDX-License-Identifier: Apache-2.0 */
/* X.509 certificates signed through a callback by the TPM-resident vTPM CA key. */
#define LOGMODULE "vtpm_ca"
#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "trustcloud/certify.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/vtpm_ca.h"

#define DEFAULT_DAYS 3650
#define MAX_VM_ID 64

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok ? 0 : TC_ERR_CRYPTO;
}

/* Version 3, a random positive 128-bit serial, validity from one hour back (clock skew). */
static int set_common(X509 *x, unsigned days)
{
    uint8_t serial[16];
    int rc = TC_ERR_CRYPTO;
    BIGNUM *bn = NULL;
    ASN1_INTEGER *ai = NULL;

    if (RAND_bytes(serial, sizeof(serial)) != 1)
        return TC_ERR_CRYPTO;
    serial[0] = (serial[0] & 0x7f) | 0x40; /* positive and exactly 16 bytes */
    if ((bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL ||
        (ai = BN_to_ASN1_INTEGER(bn, NULL)) == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
        X509_set_serialNumber(x, ai) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), (int)(days ? days : DEFAULT_DAYS), 0, NULL) == NULL)
        goto out;
    rc = 0;
out:
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    return rc;
}

/*
 * Signs x through the callback. OpenSSL 3.0 has no public setter for a certificate's signature
 * algorithm fields or value, so: X509_sign with a throwaway P-256 key lets OpenSSL itself fill
 * both AlgorithmIdentifiers (ecdsa-with-SHA256), then the DER Certificate is assembled as
 * SEQUENCE { TBSCertificate, AlgorithmIdentifier, BIT STRING (callback's signature) } and parsed
 * back; X509_verify with the CA public key proves the result is right before it leaves.
 */
static int sign_cert(X509 *x, const struct tc_vtpm_ca_signer *signer, uint8_t **der,
                     size_t *der_len)
{
    EVP_PKEY *tmp = NULL;
    unsigned char *tbs = NULL, *alg = NULL;
    uint8_t *sig = NULL, *cert = NULL, digest[32];
    size_t sig_len = 0;
    int tbs_len, alg_len, rc = TC_ERR_CRYPTO;
    X509 *check = NULL;
    const ASN1_BIT_STRING *old_sig;
    const X509_ALGOR *sig_alg;

    if ((tmp = EVP_EC_gen("P-256")) == NULL || X509_sign(x, tmp, EVP_sha256()) <= 0)
        goto out;
    if ((tbs_len = i2d_re_X509_tbs(x, &tbs)) <= 0)
        goto out;
    X509_get0_signature(&old_sig, &sig_alg, x);
    if ((alg_len = i2d_X509_ALGOR(sig_alg, &alg)) <= 0)
        goto out;
    if (EVP_Digest(tbs, (size_t)tbs_len, digest, NULL, EVP_sha256(), NULL) != 1)
        goto out;
    if ((rc = signer->sign(signer->arg, digest, &sig, &sig_len)) != 0)
        goto out;
    rc = TC_ERR_CRYPTO;
    if (sig == NULL || sig_len == 0 || sig_len > 1024)
        goto out;

    int bits_len = ASN1_object_size(0, (int)sig_len + 1, V_ASN1_BIT_STRING);
    int body = tbs_len + alg_len + bits_len;
    int total = ASN1_object_size(1, body, V_ASN1_SEQUENCE);
    if (bits_len <= 0 || total <= 0)
        goto out;
    if ((cert = malloc((size_t)total)) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    unsigned char *p = cert;
    ASN1_put_object(&p, 1, body, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    memcpy(p, tbs, (size_t)tbs_len);
    p += tbs_len;
    memcpy(p, alg, (size_t)alg_len);
    p += alg_len;
    ASN1_put_object(&p, 0, (int)sig_len + 1, V_ASN1_BIT_STRING, V_ASN1_UNIVERSAL);
    *p++ = 0; /* no unused bits */
    memcpy(p, sig, sig_len);
    p += sig_len;
    if (p - cert != total)
        goto out;

    const unsigned char *q = cert;
    if ((check = d2i_X509(NULL, &q, total)) == NULL || q - cert != total)
        goto out;
    if (X509_verify(check, signer->pubkey) != 1) {
        LOG_ERROR("the CA signer's signature does not verify with the CA public key");
        rc = TC_ERR_SIGNATURE;
        goto out;
    }
    *der = cert;
    *der_len = (size_t)total;
    cert = NULL;
    rc = 0;
out:
    if (rc == TC_ERR_CRYPTO || rc == TC_ERR_SIGNATURE)
        ERR_clear_error();
    X509_free(check);
    free(cert);
    free(sig);
    OPENSSL_free(tbs);
    OPENSSL_free(alg);
    EVP_PKEY_free(tmp);
    return rc;
}

static bool tcg_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 4 || n > 11 || strncmp(s, "id:", 3) != 0)
        return false;
    for (size_t i = 3; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

static bool model_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isprint((unsigned char)s[i]))
            return false;
    return true;
}

/* subjectAltName directoryName: one RDN holding the three TCG TPM attributes (2.23.133.2.1-3). */
static int add_tpm_attributes(X509 *x, const struct tc_vtpm_ek_req *req)
{
    static const char *const oids[3] = {"2.23.133.2.1", "2.23.133.2.2", "2.23.133.2.3"};
    const char *values[3] = {req->tpm_manufacturer, req->tpm_model, req->tpm_version};
    X509_NAME *dir = X509_NAME_new();
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gen = GENERAL_NAME_new();
    int rc = TC_ERR_CRYPTO;

    if (dir == NULL || gens == NULL || gen == NULL)
        goto out;
    for (int i = 0; i < 3; i++) {
        ASN1_OBJECT *obj = OBJ_txt2obj(oids[i], 1);
        /* The first attribute opens the RDN, the others join it (set = -1: previous RDN). */
        int ok = obj != NULL && X509_NAME_add_entry_by_OBJ(dir, obj, MBSTRING_UTF8,
                                                           (const unsigned char *)values[i], -1, -1,
                                                           i == 0 ? 0 : -1) == 1;
        ASN1_OBJECT_free(obj);
        if (!ok)
            goto out;
    }
    GENERAL_NAME_set0_value(gen, GEN_DIRNAME, dir);
    dir = NULL;
    if (sk_GENERAL_NAME_push(gens, gen) <= 0)
        goto out;
    gen = NULL;
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
        goto out;
    rc = 0;
out:
    GENERAL_NAME_free(gen);
    GENERAL_NAMES_free(gens);
    X509_NAME_free(dir);
    return rc;
}

int tc_vtpm_ca_soft_sign(void *arg, const uint8_t digest[32], uint8_t **der, size_t *der_len)
{
    EVP_PKEY_CTX *ctx = NULL;
    uint8_t *sig = NULL;
    size_t n = 0;
    int rc = TC_ERR_CRYPTO;

    *der = NULL;
    *der_len = 0;
    if (arg == NULL || digest == NULL)
        return TC_ERR_INVALID_ARG;
    if ((ctx = EVP_PKEY_CTX_new(arg, NULL)) == NULL || EVP_PKEY_sign_init(ctx) != 1 ||
        EVP_PKEY_sign(ctx, NULL, &n, digest, 32) != 1 || (sig = malloc(n)) == NULL ||
        EVP_PKEY_sign(ctx, sig, &n, digest, 32) != 1)
        goto out;
    *der = sig;
    *der_len = n;
    sig = NULL;
    rc = 0;
out:
    free(sig);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

static int signer_ok(const struct tc_vtpm_ca_signer *s)
{
    return s != NULL && s->sign != NULL && s->pubkey != NULL && EVP_PKEY_is_a(s->pubkey, "EC");
}

int tc_vtpm_ca_self_cert(const struct tc_vtpm_ca_signer *signer, const char *cn, unsigned days,
                         X509 **out)
{
    X509 *x = NULL;
    X509_NAME *name = NULL;
    uint8_t *der = NULL;
    size_t der_len = 0;
    int rc = TC_ERR_CRYPTO;

    *out = NULL;
    if (!signer_ok(signer) || cn == NULL || cn[0] == 0 || strlen(cn) > MAX_VM_ID)
        return TC_ERR_INVALID_ARG;
    if ((x = X509_new()) == NULL || (name = X509_NAME_new()) == NULL)
        goto out;
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"trustcloud",
                                   -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0) != 1 ||
        X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, name) != 1 ||
        X509_set_pubkey(x, signer->pubkey) != 1)
        goto out;
    if ((rc = set_common(x, days)) != 0 ||
        (rc = add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0")) != 0 ||
        (rc = add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign")) != 0 ||
        (rc = add_ext(x, x, NID_subject_key_identifier, "hash")) != 0 ||
        (rc = add_ext(x, x, NID_authority_key_identifier, "keyid:always")) != 0)
        goto out;
    if ((rc = sign_cert(x, signer, &der, &der_len)) != 0)
        goto out;
    const unsigned char *p = der;
    if ((*out = d2i_X509(NULL, &p, (long)der_len)) == NULL) {
        rc = TC_ERR_CRYPTO;
        goto out;
    }
    rc = 0;
out:
    free(der);
    X509_NAME_free(name);
    X509_free(x);
    return rc;
}

int tc_vtpm_ca_issue_ek_cert(const struct tc_vtpm_ca_signer *signer, X509 *ca_cert,
                             const struct tc_vtpm_ek_req *req, uint8_t **der, size_t *der_len)
{
    X509 *x = NULL;
    X509_NAME *subject = NULL;
    EVP_PKEY *ek = NULL;
    int rc = TC_ERR_CRYPTO;

    *der = NULL;
    *der_len = 0;
    if (!signer_ok(signer) || ca_cert == NULL || req == NULL || req->vm_id == NULL ||
        req->vm_id[0] == 0 || strlen(req->vm_id) > MAX_VM_ID ||
        (req->ek_pub == NULL) == (req->ek_tpm2b_public == NULL))
        return TC_ERR_INVALID_ARG;
    bool tpm_attrs = req->tpm_manufacturer || req->tpm_model || req->tpm_version;
    if (tpm_attrs && (!tcg_id_ok(req->tpm_manufacturer) || !model_ok(req->tpm_model) ||
                      !tcg_id_ok(req->tpm_version)))
        return TC_ERR_INVALID_ARG;
    if (X509_get0_pubkey(ca_cert) == NULL ||
        EVP_PKEY_eq(X509_get0_pubkey(ca_cert), signer->pubkey) != 1) {
        LOG_ERROR("the signer's key is not the CA certificate's key");
        return TC_ERR_KEY;
    }
    if (req->ek_pub != NULL) {
        if (EVP_PKEY_up_ref(req->ek_pub) != 1)
            return TC_ERR_CRYPTO;
        ek = req->ek_pub;
    } else if ((rc = tc_certify_public_key(req->ek_tpm2b_public, req->ek_tpm2b_public_len, &ek)) !=
               0) {
        return rc;
    }
    rc = TC_ERR_CRYPTO;
    bool rsa = EVP_PKEY_is_a(ek, "RSA");
    if ((x = X509_new()) == NULL || (subject = X509_NAME_new()) == NULL)
        goto out;
    if (X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, (const unsigned char *)req->vm_id,
                                   -1, -1, 0) != 1 ||
        X509_set_subject_name(x, subject) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(ca_cert)) != 1 || X509_set_pubkey(x, ek) != 1)
        goto out;
    /* TCG EK Credential Profile: an RSA EK encrypts (keyEncipherment), an ECC EK does ECDH
     * (keyAgreement); neither signs. */
    if ((rc = set_common(x, req->days)) != 0 ||
        (rc = add_ext(x, ca_cert, NID_basic_constraints, "critical,CA:FALSE")) != 0 ||
        (rc = add_ext(x, ca_cert, NID_key_usage,
                      rsa ? "critical,keyEncipherment" : "critical,keyAgreement")) != 0 ||
        (rc = add_ext(x, ca_cert, NID_ext_key_usage, TC_VTPM_CA_EKU_OID)) != 0 ||
        (rc = add_ext(x, ca_cert, NID_authority_key_identifier, "keyid:always")) != 0 ||
        (tpm_attrs && (rc = add_tpm_attributes(x, req)) != 0))
        goto out;
    rc = sign_cert(x, signer, der, der_len);
out:
    X509_NAME_free(subject);
    X509_free(x);
    EVP_PKEY_free(ek);
    return rc;
}

static bool has_ek_eku(X509 *cert)
{
    bool found = false;
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(cert, NID_ext_key_usage, NULL, NULL);
    ASN1_OBJECT *want = OBJ_txt2obj(TC_VTPM_CA_EKU_OID, 1);
    for (int i = 0; eku != NULL && want != NULL && i < sk_ASN1_OBJECT_num(eku); i++)
        if (OBJ_cmp(sk_ASN1_OBJECT_value(eku, i), want) == 0)
            found = true;
    ASN1_OBJECT_free(want);
    EXTENDED_KEY_USAGE_free(eku);
    return found;
}

int tc_vtpm_ca_check_cert_key(X509 *ca_cert, const uint8_t *certified_pub, size_t len,
                              struct tc_reason *why)
{
    EVP_PKEY *pk = NULL;
    int rc;
    if (ca_cert == NULL || certified_pub == NULL)
        return tc_fail(why, TC_ERR_INVALID_ARG, "vtpm_ca.args", -1,
                       "CA certificate and certified public key are required");
    if ((rc = tc_certify_public_key(certified_pub, len, &pk)) != 0)
        return tc_fail(why, rc, "vtpm_ca.key", -1, "unusable certified public area");
    EVP_PKEY *cert_key = X509_get0_pubkey(ca_cert);
    rc = cert_key != NULL && EVP_PKEY_eq(cert_key, pk) == 1
             ? 0
             : tc_fail(why, TC_ERR_MISMATCH, "vtpm_ca.key", -1,
                       "the vTPM CA certificate is not for the TPM-certified key");
    ERR_clear_error();
    EVP_PKEY_free(pk);
    return rc;
}

int tc_vtpm_ca_verify_ek_cert(const uint8_t *der, size_t len, X509 *ca_cert, struct tc_reason *why)
{
    X509 *cert = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    int rc;

    if (der == NULL || ca_cert == NULL)
        return tc_fail(why, TC_ERR_INVALID_ARG, "vtpm_ca.args", -1,
                       "certificate and CA certificate are required");
    if (len == 0 || len > TC_VTPM_CA_MAX_CERT)
        return tc_fail(why, TC_ERR_FORMAT, "vtpm_ca.format", -1, "certificate of %zu bytes", len);
    const unsigned char *p = der;
    cert = d2i_X509(NULL, &p, (long)len);
    if (cert == NULL || (size_t)(p - der) != len) {
        ERR_clear_error();
        rc = tc_fail(why, TC_ERR_FORMAT, "vtpm_ca.format", -1,
                     "not exactly one DER X.509 certificate");
        goto out;
    }
    rc = TC_ERR_CRYPTO;
    if ((store = X509_STORE_new()) == NULL || X509_STORE_add_cert(store, ca_cert) != 1 ||
        (ctx = X509_STORE_CTX_new()) == NULL || X509_STORE_CTX_init(ctx, store, cert, NULL) != 1) {
        rc = tc_fail(why, rc, "vtpm_ca.chain", -1, "OpenSSL could not set up verification");
        goto out;
    }
    if (X509_verify_cert(ctx) != 1) {
        int err = X509_STORE_CTX_get_error(ctx);
        ERR_clear_error();
        rc = tc_fail(why, TC_ERR_SIGNATURE, "vtpm_ca.chain", -1,
                     "the EK certificate does not chain to the vTPM CA: %s (depth %d)",
                     X509_verify_cert_error_string(err), X509_STORE_CTX_get_error_depth(ctx));
        goto out;
    }
    if (!has_ek_eku(cert)) {
        rc = tc_fail(why, TC_ERR_POLICY, "vtpm_ca.eku", -1,
                     "the certificate lacks the EK certificate usage " TC_VTPM_CA_EKU_OID);
        goto out;
    }
    rc = 0;
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(cert);
    return rc;
}
