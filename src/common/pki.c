/* SPDX-License-Identifier: Apache-2.0 */
#define LOGMODULE "pki"
#include "trustcloud/pki.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

/* Logs and clears the OpenSSL error queue; returns TC_ERR_CRYPTO. */
static int ossl_fail(const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    LOG_DEBUG("%s failed: %s", what, e ? buf : "(no OpenSSL error)");
    ERR_clear_error();
    return TC_ERR_CRYPTO;
}

/* Copies a memory BIO's contents into a malloc'd NUL-terminated string. */
static int bio_to_string(BIO *bio, char **out)
{
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    if (n < 0)
        return TC_ERR_INTERNAL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return TC_ERR_ALLOC;
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    *out = s;
    return 0;
}

static bool looks_like_pem(const uint8_t *data, size_t len)
{
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
        i++;
    return len - i >= 10 && memcmp(data + i, "-----BEGIN", 10) == 0;
}

int tc_pki_key_generate(EVP_PKEY **out)
{
    *out = NULL;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (!k)
        return ossl_fail("EVP_EC_gen");
    *out = k;
    return 0;
}

int tc_pki_cert_parse(const uint8_t *data, size_t len, X509 **out)
{
    *out = NULL;
    if (!data || len == 0 || len > TC_PKI_MAX_FILE)
        return len > TC_PKI_MAX_FILE ? TC_ERR_TOO_LARGE : TC_ERR_INVALID_ARG;
    X509 *x = NULL;
    if (looks_like_pem(data, len)) {
        BIO *bio = BIO_new_mem_buf(data, (int)len);
        if (!bio)
            return TC_ERR_ALLOC;
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        BIO_free(bio);
    } else {
        const uint8_t *p = data;
        x = d2i_X509(NULL, &p, (long)len);
        if (x && p != data + len) {
            X509_free(x);
            ERR_clear_error();
            return TC_ERR_TRAILING;
        }
    }
    if (!x) {
        ossl_fail("certificate parse");
        return TC_ERR_FORMAT;
    }
    *out = x;
    return 0;
}

int tc_pki_cert_load(const char *path, X509 **out)
{
    uint8_t *data = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = tc_file_read(path, TC_PKI_MAX_FILE, &data, &len);
    if (rc == 0)
        rc = tc_pki_cert_parse(data, len, out);
    free(data);
    return rc;
}

int tc_pki_cert_to_pem(X509 *cert, char **pem)
{
    *pem = NULL;
    int rc = 0;
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        return TC_ERR_ALLOC;
    if (!PEM_write_bio_X509(bio, cert)) {
        rc = ossl_fail("PEM_write_bio_X509");
        goto out;
    }
    rc = bio_to_string(bio, pem);
out:
    BIO_free(bio);
    return rc;
}

int tc_pki_cert_save(const char *path, X509 *cert)
{
    char *pem = NULL;
    int rc = tc_pki_cert_to_pem(cert, &pem);
    if (rc == 0)
        rc = tc_file_write(path, pem, strlen(pem), 0644);
    free(pem);
    return rc;
}

int tc_pki_key_load(const char *path, EVP_PKEY **out)
{
    uint8_t *data = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = tc_file_read(path, TC_PKI_MAX_FILE, &data, &len);
    if (rc)
        return rc;
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    if (!bio) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    /* An empty passphrase callback result: encrypted keys fail instead of prompting. */
    EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
    if (!k) {
        ossl_fail("PEM_read_bio_PrivateKey");
        rc = TC_ERR_FORMAT;
        goto out;
    }
    *out = k;
out:
    BIO_free(bio);
    if (data)
        OPENSSL_cleanse(data, len);
    free(data);
    return rc;
}

int tc_pki_key_save(const char *path, EVP_PKEY *key)
{
    int rc = 0;
    char *pem = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        return TC_ERR_ALLOC;
    if (!PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) {
        rc = ossl_fail("PEM_write_bio_PrivateKey");
        goto out;
    }
    if ((rc = bio_to_string(bio, &pem)) != 0)
        goto out;
    rc = tc_file_write(path, pem, strlen(pem), 0600);
out:
    if (pem) {
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
    }
    BIO_free(bio);
    return rc;
}

int tc_pki_pubkey_to_pem(EVP_PKEY *key, char **pem)
{
    *pem = NULL;
    int rc = 0;
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        return TC_ERR_ALLOC;
    if (!PEM_write_bio_PUBKEY(bio, key)) {
        rc = ossl_fail("PEM_write_bio_PUBKEY");
        goto out;
    }
    rc = bio_to_string(bio, pem);
out:
    BIO_free(bio);
    return rc;
}

int tc_pki_pubkey_from_pem(const char *pem, size_t len, EVP_PKEY **out)
{
    *out = NULL;
    if (!pem || len == 0 || len > TC_PKI_MAX_FILE)
        return TC_ERR_INVALID_ARG;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return TC_ERR_ALLOC;
    EVP_PKEY *k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!k) {
        ossl_fail("PEM_read_bio_PUBKEY");
        return TC_ERR_FORMAT;
    }
    *out = k;
    return 0;
}

int tc_pki_cert_pubkey(X509 *cert, EVP_PKEY **out)
{
    *out = NULL;
    EVP_PKEY *k = X509_get_pubkey(cert);
    if (!k) {
        ossl_fail("X509_get_pubkey");
        return TC_ERR_KEY;
    }
    *out = k;
    return 0;
}

int tc_pki_key_equal(const EVP_PKEY *a, const EVP_PKEY *b)
{
    if (!a || !b)
        return TC_ERR_INVALID_ARG;
    int r = EVP_PKEY_eq(a, b);
    ERR_clear_error();
    return r == 1 ? 0 : TC_ERR_MISMATCH;
}

int tc_pki_cert_cn(X509 *cert, char *buf, size_t buflen)
{
    if (buflen)
        buf[0] = '\0';
    X509_NAME *name = X509_get_subject_name(cert);
    int idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    if (idx < 0)
        return TC_ERR_NOT_FOUND;
    ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, data);
    if (n < 0)
        return ossl_fail("ASN1_STRING_to_UTF8");
    int rc = 0;
    if ((size_t)n >= buflen || memchr(utf8, '\0', (size_t)n)) {
        rc = (size_t)n >= buflen ? TC_ERR_TOO_LARGE : TC_ERR_FORMAT;
    } else {
        memcpy(buf, utf8, (size_t)n);
        buf[n] = '\0';
    }
    OPENSSL_free(utf8);
    return rc;
}

int tc_pki_cert_fingerprint(X509 *cert, uint8_t out[32])
{
    unsigned int n = 0;
    if (!X509_digest(cert, EVP_sha256(), out, &n) || n != 32)
        return ossl_fail("X509_digest");
    return 0;
}

int tc_pki_cert_spki_hash(X509 *cert, uint8_t out[32])
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
    if (n <= 0)
        return ossl_fail("i2d_X509_PUBKEY");
    int ok = EVP_Digest(der, (size_t)n, out, NULL, EVP_sha256(), NULL);
    OPENSSL_free(der);
    return ok == 1 ? 0 : ossl_fail("EVP_Digest");
}

/* Whether cert's extendedKeyUsage lists the OID (dotted text). */
static bool has_eku(X509 *cert, const char *oid)
{
    bool found = false;
    ASN1_OBJECT *want = OBJ_txt2obj(oid, 1);
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(cert, NID_ext_key_usage, NULL, NULL);
    for (int i = 0; want && eku && !found && i < sk_ASN1_OBJECT_num(eku); i++)
        found = OBJ_cmp(sk_ASN1_OBJECT_value(eku, i), want) == 0;
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    ASN1_OBJECT_free(want);
    ERR_clear_error();
    return found;
}

unsigned tc_pki_cert_roles(X509 *cert)
{
    char cn[256];
    unsigned roles = 0;
    if (!cert)
        return 0;
    bool have_cn = tc_pki_cert_cn(cert, cn, sizeof(cn)) == 0;
    if (have_cn && strcmp(cn, "coordinator") == 0 && has_eku(cert, TC_PKI_OID_COORDINATOR))
        roles |= TC_PKI_ROLE_COORDINATOR;
    if ((have_cn && strncmp(cn, "node:", 5) == 0) || has_eku(cert, TC_PKI_OID_NODE))
        roles |= TC_PKI_ROLE_NODE;
    return roles;
}

static int add_ext(X509 *issuer, X509 *subject, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, subject, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return ossl_fail("X509V3_EXT_conf_nid");
    int ok = X509_add_ext(subject, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : ossl_fail("X509_add_ext");
}

/* A fresh certificate with serial, validity, subject CN and public key; not yet signed. */
static int cert_skeleton(const char *cn, unsigned days, EVP_PKEY *pub, X509 **out)
{
    int rc = 0;
    BIGNUM *bn = BN_new();
    X509 *x = X509_new();
    *out = NULL;
    if (!bn || !x) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    if (!X509_set_version(x, X509_VERSION_3) ||
        !BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) || !X509_set_pubkey(x, pub) ||
        !X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0)) {
        rc = ossl_fail("certificate fields");
        goto out;
    }
    *out = x;
    x = NULL;
out:
    X509_free(x);
    BN_free(bn);
    return rc;
}

static int path_join(char *buf, size_t len, const char *dir, const char *name)
{
    return snprintf(buf, len, "%s/%s", dir, name) >= (int)len ? TC_ERR_INVALID_ARG : 0;
}

int tc_pki_ca_init(const char *dir, const char *subject_cn, unsigned days, struct tc_pki_ca **out)
{
    int rc;
    char keypath[4096], certpath[4096];
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    struct stat st;
    if (out)
        *out = NULL;
    if (!dir || !subject_cn || !*subject_cn)
        return TC_ERR_INVALID_ARG;
    if ((rc = path_join(keypath, sizeof(keypath), dir, "ca.key")) != 0 ||
        (rc = path_join(certpath, sizeof(certpath), dir, "ca.pem")) != 0)
        return rc;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return TC_ERR_IO;
    if (stat(keypath, &st) == 0) {
        LOG_ERROR("%s exists: refusing to replace a CA key", keypath);
        return TC_ERR_INVALID_ARG;
    }
    if ((rc = tc_pki_key_generate(&key)) != 0)
        goto out;
    if ((rc = cert_skeleton(subject_cn, days ? days : 3650, key, &x)) != 0)
        goto out;
    if (!X509_set_issuer_name(x, X509_get_subject_name(x))) {
        rc = ossl_fail("X509_set_issuer_name");
        goto out;
    }
    if ((rc = add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0")) != 0 ||
        (rc = add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign")) != 0 ||
        (rc = add_ext(x, x, NID_subject_key_identifier, "hash")) != 0)
        goto out;
    if (!X509_sign(x, key, EVP_sha256())) {
        rc = ossl_fail("X509_sign");
        goto out;
    }
    if ((rc = tc_pki_key_save(keypath, key)) != 0 || (rc = tc_pki_cert_save(certpath, x)) != 0)
        goto out;
    if (out) {
        struct tc_pki_ca *ca = calloc(1, sizeof(*ca));
        if (!ca) {
            rc = TC_ERR_ALLOC;
            goto out;
        }
        ca->key = key;
        ca->cert = x;
        key = NULL;
        x = NULL;
        *out = ca;
    }
out:
    EVP_PKEY_free(key);
    X509_free(x);
    return rc;
}

int tc_pki_ca_load(const char *dir, struct tc_pki_ca **out)
{
    int rc;
    char keypath[4096], certpath[4096];
    struct tc_pki_ca *ca = NULL;
    EVP_PKEY *pub = NULL;
    *out = NULL;
    if ((rc = path_join(keypath, sizeof(keypath), dir, "ca.key")) != 0 ||
        (rc = path_join(certpath, sizeof(certpath), dir, "ca.pem")) != 0)
        return rc;
    if (!(ca = calloc(1, sizeof(*ca))))
        return TC_ERR_ALLOC;
    if ((rc = tc_pki_key_load(keypath, &ca->key)) != 0 ||
        (rc = tc_pki_cert_load(certpath, &ca->cert)) != 0 ||
        (rc = tc_pki_cert_pubkey(ca->cert, &pub)) != 0)
        goto out;
    if (tc_pki_key_equal(pub, ca->key) != 0) {
        LOG_ERROR("%s does not belong to %s", keypath, certpath);
        rc = TC_ERR_KEY;
        goto out;
    }
    *out = ca;
    ca = NULL;
out:
    EVP_PKEY_free(pub);
    tc_pki_ca_free(ca);
    return rc;
}

void tc_pki_ca_free(struct tc_pki_ca *ca)
{
    if (!ca)
        return;
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    free(ca);
}

/* Adds one SAN ("IP:a.b.c.d", "IP:::1", "DNS:name" or bare) to names. */
static int add_san(GENERAL_NAMES *names, const char *san)
{
    const char *v = san;
    int type = -1;
    if (strncmp(san, "IP:", 3) == 0) {
        type = GEN_IPADD;
        v = san + 3;
    } else if (strncmp(san, "DNS:", 4) == 0) {
        type = GEN_DNS;
        v = san + 4;
    }
    unsigned char bin[16];
    if (type == -1)
        type = (inet_pton(AF_INET, v, bin) == 1 || inet_pton(AF_INET6, v, bin) == 1) ? GEN_IPADD
                                                                                     : GEN_DNS;
    GENERAL_NAME *gn = GENERAL_NAME_new();
    if (!gn)
        return TC_ERR_ALLOC;
    if (type == GEN_IPADD) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(v);
        if (!ip) {
            ERR_clear_error();
            GENERAL_NAME_free(gn);
            LOG_ERROR("SAN \"%s\" is not an IP address", san);
            return TC_ERR_INVALID_ARG;
        }
        GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
    } else {
        size_t n = strlen(v);
        bool ok = n > 0 && n <= 253;
        for (size_t i = 0; ok && i < n; i++)
            ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
                 (v[i] >= '0' && v[i] <= '9') || v[i] == '-' || v[i] == '.' ||
                 (v[i] == '*' && i == 0);
        ASN1_IA5STRING *s = ok ? ASN1_IA5STRING_new() : NULL;
        if (!s || !ASN1_STRING_set(s, v, (int)n)) {
            ASN1_IA5STRING_free(s);
            GENERAL_NAME_free(gn);
            LOG_ERROR("SAN \"%s\" is not a DNS name", san);
            return ok ? TC_ERR_ALLOC : TC_ERR_INVALID_ARG;
        }
        GENERAL_NAME_set0_value(gn, GEN_DNS, s);
    }
    if (!sk_GENERAL_NAME_push(names, gn)) {
        GENERAL_NAME_free(gn);
        return TC_ERR_ALLOC;
    }
    return 0;
}

/* Takes the public key out of a PEM CSR after checking the CSR's self-signature. */
static int csr_pubkey(const char *pem, size_t len, EVP_PKEY **out)
{
    int rc = 0;
    *out = NULL;
    if (len == 0 || len > TC_PKI_MAX_FILE)
        return TC_ERR_INVALID_ARG;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return TC_ERR_ALLOC;
    X509_REQ *req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    EVP_PKEY *k = NULL;
    if (!req) {
        ossl_fail("PEM_read_bio_X509_REQ");
        rc = TC_ERR_FORMAT;
        goto out;
    }
    if (!(k = X509_REQ_get_pubkey(req))) {
        ossl_fail("X509_REQ_get_pubkey");
        rc = TC_ERR_KEY;
        goto out;
    }
    if (X509_REQ_verify(req, k) != 1) {
        ossl_fail("X509_REQ_verify");
        rc = TC_ERR_SIGNATURE;
        goto out;
    }
    *out = k;
    k = NULL;
out:
    EVP_PKEY_free(k);
    X509_REQ_free(req);
    BIO_free(bio);
    return rc;
}

int tc_pki_issue(const struct tc_pki_ca *ca, const struct tc_pki_issue_req *req, char **cert_pem)
{
    int rc = 0;
    EVP_PKEY *csrkey = NULL;
    X509 *x = NULL;
    GENERAL_NAMES *names = NULL;
    *cert_pem = NULL;
    if (!ca || !req || !req->cn || !*req->cn || !(req->usage & TC_PKI_USAGE_BOTH) ||
        (!req->pubkey == !req->csr_pem))
        return TC_ERR_INVALID_ARG;
    /* A role EKU goes only with the CN that role is recognized by. */
    if ((req->role == TC_PKI_ROLE_COORDINATOR && strcmp(req->cn, "coordinator") != 0) ||
        (req->role == TC_PKI_ROLE_NODE && (strncmp(req->cn, "node:", 5) != 0 || !req->cn[5])) ||
        (req->role != TC_PKI_ROLE_NONE && req->role != TC_PKI_ROLE_COORDINATOR &&
         req->role != TC_PKI_ROLE_NODE))
        return TC_ERR_INVALID_ARG;
    EVP_PKEY *pub = req->pubkey;
    if (req->csr_pem) {
        if ((rc = csr_pubkey(req->csr_pem, req->csr_len, &csrkey)) != 0)
            goto out;
        pub = csrkey;
    }
    if ((rc = cert_skeleton(req->cn, req->days ? req->days : 365, pub, &x)) != 0)
        goto out;
    if (!X509_set_issuer_name(x, X509_get_subject_name(ca->cert))) {
        rc = ossl_fail("X509_set_issuer_name");
        goto out;
    }
    char eku[160];
    snprintf(eku, sizeof(eku), "%s%s%s",
             req->usage == TC_PKI_USAGE_BOTH     ? "serverAuth,clientAuth"
             : req->usage == TC_PKI_USAGE_SERVER ? "serverAuth"
                                                 : "clientAuth",
             req->role ? "," : "",
             req->role == TC_PKI_ROLE_COORDINATOR ? TC_PKI_OID_COORDINATOR
             : req->role == TC_PKI_ROLE_NODE      ? TC_PKI_OID_NODE
                                                  : "");
    if ((rc = add_ext(ca->cert, x, NID_basic_constraints, "critical,CA:FALSE")) != 0 ||
        (rc = add_ext(ca->cert, x, NID_key_usage, "critical,digitalSignature")) != 0 ||
        (rc = add_ext(ca->cert, x, NID_ext_key_usage, eku)) != 0 ||
        (rc = add_ext(ca->cert, x, NID_subject_key_identifier, "hash")) != 0 ||
        (rc = add_ext(ca->cert, x, NID_authority_key_identifier, "keyid:always")) != 0)
        goto out;
    if (req->sans && req->sans[0]) {
        if (!(names = sk_GENERAL_NAME_new_null())) {
            rc = TC_ERR_ALLOC;
            goto out;
        }
        for (size_t i = 0; req->sans[i]; i++)
            if ((rc = add_san(names, req->sans[i])) != 0)
                goto out;
        if (!X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT)) {
            rc = ossl_fail("subjectAltName");
            goto out;
        }
    }
    if (!X509_sign(x, ca->key, EVP_sha256())) {
        rc = ossl_fail("X509_sign");
        goto out;
    }
    rc = tc_pki_cert_to_pem(x, cert_pem);
out:
    GENERAL_NAMES_free(names);
    X509_free(x);
    EVP_PKEY_free(csrkey);
    return rc;
}

int tc_pki_csr_create(EVP_PKEY *key, const char *cn, char **csr_pem)
{
    int rc = 0;
    BIO *bio = NULL;
    X509_REQ *req = X509_REQ_new();
    *csr_pem = NULL;
    if (!req)
        return TC_ERR_ALLOC;
    if (!X509_REQ_set_version(req, 0) || !X509_REQ_set_pubkey(req, key) ||
        !X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0) ||
        !X509_REQ_sign(req, key, EVP_sha256())) {
        rc = ossl_fail("CSR");
        goto out;
    }
    if (!(bio = BIO_new(BIO_s_mem())) || !PEM_write_bio_X509_REQ(bio, req)) {
        rc = ossl_fail("PEM_write_bio_X509_REQ");
        goto out;
    }
    rc = bio_to_string(bio, csr_pem);
out:
    BIO_free(bio);
    X509_REQ_free(req);
    return rc;
}

/* Appends every certificate in data (PEM bundle or one DER cert) to sk. */
static int certs_from_bytes(const uint8_t *data, size_t len, STACK_OF(X509) * sk)
{
    if (!looks_like_pem(data, len)) {
        X509 *x = NULL;
        int rc = tc_pki_cert_parse(data, len, &x);
        if (rc)
            return rc;
        if (sk_X509_num(sk) >= TC_PKI_MAX_TRUST_CERTS || !sk_X509_push(sk, x)) {
            X509_free(x);
            return TC_ERR_TOO_LARGE;
        }
        return 0;
    }
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    if (!bio)
        return TC_ERR_ALLOC;
    int rc = 0, found = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_num(sk) >= TC_PKI_MAX_TRUST_CERTS || !sk_X509_push(sk, x)) {
            X509_free(x);
            rc = TC_ERR_TOO_LARGE;
            break;
        }
        found++;
    }
    ERR_clear_error(); /* the loop ends on "no start line" */
    BIO_free(bio);
    return rc ? rc : found ? 0 : TC_ERR_FORMAT;
}

static int certs_from_file(const char *path, STACK_OF(X509) * sk, bool quiet)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = tc_file_read(path, TC_PKI_MAX_FILE, &data, &len);
    if (rc == 0)
        rc = certs_from_bytes(data, len, sk);
    if (rc && !quiet)
        LOG_WARN("%s: no usable certificate (%s)", path, tc_strerror(rc));
    else if (rc)
        LOG_DEBUG("%s: skipped, no usable certificate (%s)", path, tc_strerror(rc));
    free(data);
    return rc;
}

/* Loads a trust bundle: one file, or every regular non-hidden file of a directory. */
static int load_trust(const char *path, STACK_OF(X509) * sk)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return TC_ERR_IO;
    if (!S_ISDIR(st.st_mode))
        return certs_from_file(path, sk, false);
    DIR *d = opendir(path);
    if (!d)
        return TC_ERR_IO;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char p[4096];
        if (de->d_name[0] == '.' || path_join(p, sizeof(p), path, de->d_name) != 0)
            continue;
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        /* A stray non-certificate file in the directory does not void the others. */
        int r = certs_from_file(p, sk, true);
        if (r == TC_ERR_TOO_LARGE || r == TC_ERR_ALLOC) {
            rc = r;
            break;
        }
    }
    closedir(d);
    if (rc == 0 && sk_X509_num(sk) == 0)
        rc = TC_ERR_NOT_FOUND;
    return rc;
}

struct verify_state {
    unsigned flags;
};

static int verify_cb(int ok, X509_STORE_CTX *ctx)
{
    if (ok)
        return ok;
    struct verify_state *vs = X509_STORE_CTX_get_app_data(ctx);
    int err = X509_STORE_CTX_get_error(ctx);
    /*
     * TCG EK certificates may mark extensions critical that OpenSSL does not
     * process (e.g. Subject Directory Attributes with the TPM specification).
     * Accept that for the EK certificate itself, and only when asked to.
     */
    if (err == X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION && vs && (vs->flags & TC_PKI_VERIFY_EK) &&
        X509_STORE_CTX_get_error_depth(ctx) == 0) {
        LOG_DEBUG("EK certificate: accepting unhandled critical extension");
        return 1;
    }
    return ok;
}

int tc_pki_verify_chain(const uint8_t *cert, size_t len, const struct tc_pki_verify_opts *opts,
                        struct tc_reason *why)
{
    int rc = 0;
    X509 *leaf = NULL;
    STACK_OF(X509) *trust = NULL, *untrusted = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    struct verify_state vs = {0};
    if (!cert || !opts || !opts->trust)
        return tc_fail(why, TC_ERR_INVALID_ARG, "pki.chain", -1, "missing certificate or trust");
    vs.flags = opts->flags;
    if ((rc = tc_pki_cert_parse(cert, len, &leaf)) != 0) {
        rc = tc_fail(why, rc, "pki.cert", -1, "certificate does not parse (%s)", tc_strerror(rc));
        goto out;
    }
    if (!(trust = sk_X509_new_null()) || !(untrusted = sk_X509_new_null()) ||
        !(store = X509_STORE_new()) || !(ctx = X509_STORE_CTX_new())) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    if ((rc = load_trust(opts->trust, trust)) != 0) {
        rc = tc_fail(why, rc == TC_ERR_NOT_FOUND ? TC_ERR_IO : rc, "pki.trust", -1,
                     "trust bundle %s unusable (%s)", opts->trust, tc_strerror(rc));
        goto out;
    }
    for (int i = 0; i < sk_X509_num(trust); i++)
        if (!X509_STORE_add_cert(store, sk_X509_value(trust, i)))
            ERR_clear_error(); /* duplicates are fine */
    if (opts->intermediates && opts->intermediates_len &&
        (rc = certs_from_bytes(opts->intermediates, opts->intermediates_len, untrusted)) != 0) {
        rc = tc_fail(why, rc, "pki.intermediates", -1, "intermediate certificates do not parse");
        goto out;
    }
    if (!X509_STORE_CTX_init(ctx, store, leaf, untrusted)) {
        rc = ossl_fail("X509_STORE_CTX_init");
        goto out;
    }
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    /* Every certificate of the bundle is an anchor, also intermediates (e.g. per-model EK CAs). */
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
    if (opts->at)
        X509_VERIFY_PARAM_set_time(param, opts->at);
    X509_STORE_CTX_set_app_data(ctx, &vs);
    X509_STORE_CTX_set_verify_cb(ctx, verify_cb);
    if (X509_verify_cert(ctx) != 1) {
        int err = X509_STORE_CTX_get_error(ctx);
        int depth = X509_STORE_CTX_get_error_depth(ctx);
        X509 *bad = X509_STORE_CTX_get_current_cert(ctx);
        char subj[160] = "?";
        if (bad)
            X509_NAME_oneline(X509_get_subject_name(bad), subj, sizeof(subj));
        rc = tc_fail(why, TC_ERR_SIGNATURE, "pki.chain", -1, "%s (depth %d, subject %s)",
                     X509_verify_cert_error_string(err), depth, subj);
        ERR_clear_error();
        goto out;
    }
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_pop_free(trust, X509_free);
    sk_X509_pop_free(untrusted, X509_free);
    X509_free(leaf);
    return rc;
}
