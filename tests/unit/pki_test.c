/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PKI: CA creation, issuance from keys and CSRs, PEM round trips, chain
 * verification (our own chains; a real swtpm EK certificate with its local CA
 * root and intermediate; unknown critical extensions only in EK mode).
 *
 * The EK files come from TC_NET_EK_DIR when set (a freshly provisioned swtpm,
 * see tests/integration/net_ek_chain.sh), else from $TC_TEST_DATA/net.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/pki.h"
#include "trustcloud/reason.h"

static char tmpdir[] = "/tmp/tc-pki-test.XXXXXX";
static char cadir[256], otherdir[256], ca_pem[512], other_pem[512];
static struct tc_pki_ca *ca, *other;

static int setup(void **state)
{
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(cadir, sizeof(cadir), "%s/ca", tmpdir);
    snprintf(otherdir, sizeof(otherdir), "%s/other", tmpdir);
    snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", cadir);
    snprintf(other_pem, sizeof(other_pem), "%s/ca.pem", otherdir);
    if (tc_pki_ca_init(cadir, "trustcloud test CA", 30, &ca) != 0 ||
        tc_pki_ca_init(otherdir, "trustcloud test CA", 30, &other) != 0)
        return -1;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int teardown(void **state)
{
    tc_pki_ca_free(ca);
    tc_pki_ca_free(other);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static int verify(const char *pem, const char *trust, unsigned flags, struct tc_reason *why)
{
    struct tc_pki_verify_opts o = {.trust = trust, .flags = flags};
    return tc_pki_verify_chain((const uint8_t *)pem, strlen(pem), &o, why);
}

static void ca_files(void **state)
{
    char keypath[600];
    struct stat st;
    snprintf(keypath, sizeof(keypath), "%s/ca.key", cadir);
    assert_int_equal(stat(keypath, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Never replaces an existing CA key. */
    assert_int_equal(tc_pki_ca_init(cadir, "again", 0, NULL), TC_ERR_INVALID_ARG);
    struct tc_pki_ca *loaded = NULL;
    assert_int_equal(tc_pki_ca_load(cadir, &loaded), 0);
    assert_int_equal(X509_cmp(loaded->cert, ca->cert), 0);
    char cn[64];
    assert_int_equal(tc_pki_cert_cn(loaded->cert, cn, sizeof(cn)), 0);
    assert_string_equal(cn, "trustcloud test CA");
    assert_int_equal(tc_pki_cert_cn(loaded->cert, cn, 4), TC_ERR_TOO_LARGE);
    tc_pki_ca_free(loaded);
    tc_pki_ca_free(NULL);
    /* A key that does not belong to the certificate is refused. */
    char mixed[600], path[700];
    snprintf(mixed, sizeof(mixed), "%s/mixed", tmpdir);
    assert_int_equal(mkdir(mixed, 0700), 0);
    snprintf(path, sizeof(path), "%s/ca.pem", mixed);
    assert_int_equal(tc_pki_cert_save(path, ca->cert), 0);
    snprintf(path, sizeof(path), "%s/ca.key", mixed);
    assert_int_equal(tc_pki_key_save(path, other->key), 0);
    assert_int_equal(tc_pki_ca_load(mixed, &loaded), TC_ERR_KEY);
    assert_null(loaded);
}

static void issue_and_verify(void **state)
{
    EVP_PKEY *key = NULL, *certkey = NULL, *otherkey = NULL;
    char *pem = NULL;
    X509 *x = NULL;
    struct tc_reason why;
    const char *sans[] = {"IP:10.1.2.3", "DNS:node-1.example", "::1", "node-2", NULL};
    assert_int_equal(tc_pki_key_generate(&key), 0);
    struct tc_pki_issue_req req = {
        .cn = "node-1", .sans = sans, .usage = TC_PKI_USAGE_BOTH, .days = 10, .pubkey = key};
    assert_int_equal(tc_pki_issue(ca, &req, &pem), 0);
    assert_int_equal(verify(pem, ca_pem, 0, &why), 0);
    assert_int_equal(verify(pem, cadir, 0, &why), 0); /* directory bundle (ca.key is skipped) */
    /* Another CA with the same name does not vouch for it. */
    assert_int_equal(verify(pem, other_pem, 0, &why), TC_ERR_SIGNATURE);
    assert_string_equal(why.check, "pki.chain");
    assert_non_null(strstr(why.detail, "unable to get local issuer certificate"));
    /* Ten days from now it has expired. */
    struct tc_pki_verify_opts o = {.trust = ca_pem, .at = time(NULL) + 11 * 86400};
    assert_int_equal(tc_pki_verify_chain((const uint8_t *)pem, strlen(pem), &o, &why),
                     TC_ERR_SIGNATURE);
    assert_non_null(strstr(why.detail, "expired"));
    /* Parsed back: CN, SANs, key. */
    assert_int_equal(tc_pki_cert_parse((const uint8_t *)pem, strlen(pem), &x), 0);
    char cn[64];
    assert_int_equal(tc_pki_cert_cn(x, cn, sizeof(cn)), 0);
    assert_string_equal(cn, "node-1");
    assert_int_equal(X509_check_ip_asc(x, "10.1.2.3", 0), 1);
    assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
    assert_int_equal(X509_check_host(x, "node-2", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "node-3", 0, 0, NULL), 0);
    assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0), 1);
    assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_CLIENT, 0), 1);
    assert_int_equal(tc_pki_cert_pubkey(x, &certkey), 0);
    assert_int_equal(tc_pki_key_equal(certkey, key), 0);
    assert_int_equal(tc_pki_key_generate(&otherkey), 0);
    assert_int_equal(tc_pki_key_equal(certkey, otherkey), TC_ERR_MISMATCH);
    /* DER input verifies too, trailing bytes do not parse. */
    uint8_t *der = NULL;
    int dlen = i2d_X509(x, &der);
    assert_true(dlen > 0);
    o.at = 0;
    assert_int_equal(tc_pki_verify_chain(der, (size_t)dlen, &o, &why), 0);
    uint8_t *padded = malloc((size_t)dlen + 1);
    memcpy(padded, der, (size_t)dlen);
    padded[dlen] = 0;
    X509 *y = NULL;
    assert_int_equal(tc_pki_cert_parse(padded, (size_t)dlen + 1, &y), TC_ERR_TRAILING);
    assert_int_equal(tc_pki_verify_chain(padded, (size_t)dlen + 1, &o, &why), TC_ERR_TRAILING);
    free(padded);
    OPENSSL_free(der);
    /* Server-only certificates carry only serverAuth. */
    free(pem);
    req.usage = TC_PKI_USAGE_SERVER;
    assert_int_equal(tc_pki_issue(ca, &req, &pem), 0);
    X509_free(x);
    assert_int_equal(tc_pki_cert_parse((const uint8_t *)pem, strlen(pem), &x), 0);
    assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_CLIENT, 0), 0);
    /* Bad requests. */
    const char *bad_sans[] = {"IP:10.1.2", NULL};
    const char *bad_dns[] = {"DNS:a b", NULL};
    char *none = NULL;
    req.sans = bad_sans;
    assert_int_equal(tc_pki_issue(ca, &req, &none), TC_ERR_INVALID_ARG);
    req.sans = bad_dns;
    assert_int_equal(tc_pki_issue(ca, &req, &none), TC_ERR_INVALID_ARG);
    req.sans = NULL;
    req.usage = 0;
    assert_int_equal(tc_pki_issue(ca, &req, &none), TC_ERR_INVALID_ARG);
    assert_null(none);
    free(pem);
    X509_free(x);
    EVP_PKEY_free(key);
    EVP_PKEY_free(certkey);
    EVP_PKEY_free(otherkey);
}

static void csr_and_pem(void **state)
{
    EVP_PKEY *key = NULL, *back = NULL, *certkey = NULL;
    char *csr = NULL, *pem = NULL, *pub = NULL;
    X509 *x = NULL;
    assert_int_equal(tc_pki_key_generate(&key), 0);
    assert_int_equal(tc_pki_csr_create(key, "agent-7", &csr), 0);
    /* The CA decides the CN, whatever the CSR says. */
    struct tc_pki_issue_req req = {
        .cn = "agent-8", .usage = TC_PKI_USAGE_CLIENT, .csr_pem = csr, .csr_len = strlen(csr)};
    assert_int_equal(tc_pki_issue(ca, &req, &pem), 0);
    assert_int_equal(tc_pki_cert_parse((const uint8_t *)pem, strlen(pem), &x), 0);
    char cn[64];
    assert_int_equal(tc_pki_cert_cn(x, cn, sizeof(cn)), 0);
    assert_string_equal(cn, "agent-8");
    assert_int_equal(tc_pki_cert_pubkey(x, &certkey), 0);
    assert_int_equal(tc_pki_key_equal(certkey, key), 0);
    /* Public key PEM round trip. */
    assert_int_equal(tc_pki_pubkey_to_pem(key, &pub), 0);
    assert_int_equal(tc_pki_pubkey_from_pem(pub, strlen(pub), &back), 0);
    assert_int_equal(tc_pki_key_equal(back, key), 0);
    /* Cert and key files round trip. */
    char path[600];
    snprintf(path, sizeof(path), "%s/agent.pem", tmpdir);
    assert_int_equal(tc_pki_cert_save(path, x), 0);
    X509 *y = NULL;
    assert_int_equal(tc_pki_cert_load(path, &y), 0);
    assert_int_equal(X509_cmp(x, y), 0);
    X509_free(y);
    snprintf(path, sizeof(path), "%s/agent.key", tmpdir);
    assert_int_equal(tc_pki_key_save(path, key), 0);
    EVP_PKEY *k2 = NULL;
    assert_int_equal(tc_pki_key_load(path, &k2), 0);
    assert_int_equal(tc_pki_key_equal(k2, key), 0);
    EVP_PKEY_free(k2);
    assert_int_equal(tc_pki_key_load("/nonexistent/key", &k2), TC_ERR_IO);
    /* A CSR whose signature no longer matches its content. */
    char *p = strstr(csr, "\n") + 40;
    *p = (*p == 'A') ? 'B' : 'A';
    char *none = NULL;
    req.csr_len = strlen(csr);
    int rc = tc_pki_issue(ca, &req, &none);
    assert_true(rc == TC_ERR_SIGNATURE || rc == TC_ERR_FORMAT);
    assert_null(none);
    free(csr);
    free(pem);
    free(pub);
    X509_free(x);
    EVP_PKEY_free(key);
    EVP_PKEY_free(back);
    EVP_PKEY_free(certkey);
}

/* A leaf with an extension OpenSSL does not process, marked critical (as some EK certs do). */
static void unknown_critical_extension(void **state)
{
    EVP_PKEY *key = NULL;
    char *pem = NULL, *out = NULL;
    X509 *x = NULL;
    struct tc_reason why;
    assert_int_equal(tc_pki_key_generate(&key), 0);
    struct tc_pki_issue_req req = {.cn = "ek", .usage = TC_PKI_USAGE_CLIENT, .pubkey = key};
    assert_int_equal(tc_pki_issue(ca, &req, &pem), 0);
    assert_int_equal(tc_pki_cert_parse((const uint8_t *)pem, strlen(pem), &x), 0);
    /* subjectDirectoryAttributes (2.5.29.9), critical, with an opaque value. */
    ASN1_OBJECT *obj = OBJ_txt2obj("2.5.29.9", 1);
    ASN1_OCTET_STRING *val = ASN1_OCTET_STRING_new();
    static const unsigned char seq[] = {0x30, 0x00};
    assert_true(ASN1_OCTET_STRING_set(val, seq, sizeof(seq)));
    X509_EXTENSION *ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 1, val);
    assert_non_null(ext);
    assert_true(X509_add_ext(x, ext, -1));
    X509_EXTENSION_free(ext);
    ASN1_OBJECT_free(obj);
    ASN1_OCTET_STRING_free(val);
    assert_true(X509_sign(x, ca->key, EVP_sha256()) > 0);
    assert_int_equal(tc_pki_cert_to_pem(x, &out), 0);
    assert_int_equal(verify(out, ca_pem, 0, &why), TC_ERR_SIGNATURE);
    assert_non_null(strstr(why.detail, "unhandled critical extension"));
    assert_int_equal(verify(out, ca_pem, TC_PKI_VERIFY_EK, &why), 0);
    /* EK mode does not excuse anything else. */
    assert_int_equal(verify(out, other_pem, TC_PKI_VERIFY_EK, &why), TC_ERR_SIGNATURE);
    free(out);
    free(pem);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* ---- real EK certificate from swtpm_setup's local CA (root + intermediate) ---- */

static char ekdir[400];
static const char *ek_der_name, *ek_issuer_name, *ek_root_name;

static void ek_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", ekdir, name);
}

static void swtpm_ek_chain(void **state)
{
    const char *live = getenv("TC_NET_EK_DIR");
    const char *data = getenv("TC_TEST_DATA");
    if (live) {
        snprintf(ekdir, sizeof(ekdir), "%s", live);
        ek_der_name = "ek-rsa.der";
        ek_issuer_name = "issuercert.pem";
        ek_root_name = "swtpm-localca-rootca-cert.pem";
    } else if (data) {
        snprintf(ekdir, sizeof(ekdir), "%s/net", data);
        ek_der_name = "swtpm-ek-rsa.der";
        ek_issuer_name = "swtpm-localca-issuer.pem";
        ek_root_name = "swtpm-localca-root.pem";
    } else {
        skip();
    }
    char ek[600], issuer[600], root[600];
    ek_path(ek, sizeof(ek), ek_der_name);
    ek_path(issuer, sizeof(issuer), ek_issuer_name);
    ek_path(root, sizeof(root), ek_root_name);
    uint8_t *der = NULL, *inter = NULL;
    size_t len = 0, ilen = 0;
    assert_int_equal(tc_file_read(ek, TC_PKI_MAX_FILE, &der, &len), 0);
    assert_int_equal(tc_file_read(issuer, TC_PKI_MAX_FILE, &inter, &ilen), 0);
    struct tc_reason why;
    struct tc_pki_verify_opts o = {.trust = issuer, .flags = TC_PKI_VERIFY_EK};
    /* The issuing CA as the anchor. */
    assert_int_equal(tc_pki_verify_chain(der, len, &o, &why), 0);
    /* The root as the anchor: needs the intermediate. */
    o.trust = root;
    assert_int_equal(tc_pki_verify_chain(der, len, &o, &why), TC_ERR_SIGNATURE);
    assert_non_null(strstr(why.detail, "local issuer"));
    o.intermediates = inter;
    o.intermediates_len = ilen;
    assert_int_equal(tc_pki_verify_chain(der, len, &o, &why), 0);
    /* A directory bundle holding both. */
    o.trust = ekdir;
    o.intermediates = NULL;
    o.intermediates_len = 0;
    assert_int_equal(tc_pki_verify_chain(der, len, &o, &why), 0);
    /* Another CA: refused, with a reason. */
    o.trust = ca_pem;
    assert_int_equal(tc_pki_verify_chain(der, len, &o, &why), TC_ERR_SIGNATURE);
    assert_string_equal(why.check, "pki.chain");
    o.intermediates = inter;
    o.intermediates_len = ilen;
    assert_int_equal(tc_pki_verify_chain(der, len, &o, &why), TC_ERR_SIGNATURE);
    /* One flipped bit in the signature. */
    der[len - 5] ^= 1;
    o.trust = issuer;
    assert_int_equal(tc_pki_verify_chain(der, len, &o, &why), TC_ERR_SIGNATURE);
    assert_non_null(strstr(why.detail, "signature"));
    der[len - 5] ^= 1;
    /* The EK's public key (RSA) out of the certificate; compares with itself, not with ours. */
    X509 *x = NULL;
    EVP_PKEY *pk = NULL, *pk2 = NULL, *mine = NULL;
    assert_int_equal(tc_pki_cert_parse(der, len, &x), 0);
    assert_int_equal(tc_pki_cert_pubkey(x, &pk), 0);
    assert_int_equal(EVP_PKEY_get_base_id(pk), EVP_PKEY_RSA);
    assert_int_equal(tc_pki_cert_pubkey(x, &pk2), 0);
    assert_int_equal(tc_pki_key_equal(pk, pk2), 0);
    assert_int_equal(tc_pki_cert_pubkey(ca->cert, &mine), 0);
    assert_int_equal(tc_pki_key_equal(pk, mine), TC_ERR_MISMATCH);
    /* Unusable trust bundles. */
    o.trust = "/nonexistent";
    assert_int_equal(tc_pki_verify_chain(der, len, &o, &why), TC_ERR_IO);
    o.trust = ek; /* a leaf certificate as the only anchor: not its issuer */
    assert_int_equal(tc_pki_verify_chain(inter, ilen, &o, &why), TC_ERR_SIGNATURE);
    X509_free(x);
    EVP_PKEY_free(pk);
    EVP_PKEY_free(pk2);
    EVP_PKEY_free(mine);
    free(der);
    free(inter);
}

static void garbage_input(void **state)
{
    struct tc_reason why;
    X509 *x = NULL;
    static const uint8_t junk[] = {0x30, 0x82, 0x01, 0x00, 0x01};
    assert_int_equal(tc_pki_cert_parse(junk, sizeof(junk), &x), TC_ERR_FORMAT);
    assert_null(x);
    const char *pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert_int_equal(tc_pki_cert_parse((const uint8_t *)pem, strlen(pem), &x), TC_ERR_FORMAT);
    struct tc_pki_verify_opts o = {.trust = ca_pem};
    assert_int_equal(tc_pki_verify_chain(junk, sizeof(junk), &o, &why), TC_ERR_FORMAT);
    assert_string_equal(why.check, "pki.cert");
    EVP_PKEY *k = NULL;
    assert_int_equal(tc_pki_pubkey_from_pem("nope", 4, &k), TC_ERR_FORMAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ca_files),       cmocka_unit_test(issue_and_verify),
        cmocka_unit_test(csr_and_pem),    cmocka_unit_test(unknown_critical_extension),
        cmocka_unit_test(swtpm_ek_chain), cmocka_unit_test(garbage_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
