/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vTPM EK certificates issued by a TPM-resident CA key (a real swtpm plays the host TPM, a
 * second one a vTPM whose real EKs get certified), checked with tc_vtpm_ca_verify_ek_cert and
 * with the openssl command line, and forged or broken certificates rejected.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "swtpm_fixture.h"
#include "trustcloud/certify.h"
#include "trustcloud/error.h"
#include "trustcloud/pki.h"
#include "trustcloud/quote.h"
#include "trustcloud/tpm.h"
#include "trustcloud/tpm_certify.h"
#include "trustcloud/vtpm_ca.h"

static struct swtpm host_sw, vm_sw;
static struct tc_tpm *host;
static struct tc_tpm_key host_ek, ca_key;
static EVP_PKEY *ca_pub;
static X509 *ca_cert;
static struct tc_vtpm_ca_signer tpm_signer;
static int have_openssl;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The production signer: TPM2_Sign with the host's vTPM CA key. */
static int tpm_sign(void *arg, const uint8_t digest[32], uint8_t **der, size_t *der_len)
{
    return tc_tpm_sign_digest(host, arg, digest, der, der_len);
}

static int group_setup(void **state)
{
    char ctx[300];
    (void)state;
    srand((unsigned)(getpid() ^ time(NULL)));
    if (system("command -v swtpm >/dev/null") != 0 || swtpm_new(&host_sw, "tc-vtpmca-test") != 0 ||
        swtpm_new(&vm_sw, "tc-vtpmca-test") != 0) {
        fprintf(stderr, "swtpm not available\n");
        return -1;
    }
    have_openssl = system("command -v openssl >/dev/null") == 0;
    snprintf(ctx, sizeof(ctx), "%s/vtpmca.ctx", host_sw.dir);
    if (tc_tpm_open(host_sw.tcti, &host) != 0 ||
        tc_tpm_ek_create(host, TC_KEY_ECC_P256, &host_ek) != 0 ||
        tc_tpm_vtpm_ca_create(host, &host_ek, ctx, &ca_key) != 0 ||
        tc_certify_public_key(ca_key.pub, ca_key.pub_len, &ca_pub) != 0)
        return -1;
    tpm_signer.sign = tpm_sign;
    tpm_signer.arg = &ca_key;
    tpm_signer.pubkey = ca_pub;
    if (tc_vtpm_ca_self_cert(&tpm_signer, "trustcloud vTPM CA host-1", 0, &ca_cert) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    X509_free(ca_cert);
    EVP_PKEY_free(ca_pub);
    tc_tpm_key_release(host, &ca_key);
    tc_tpm_key_release(host, &host_ek);
    tc_tpm_close(host);
    swtpm_free(&host_sw);
    swtpm_free(&vm_sw);
    return 0;
}

static void write_pem(const char *path, X509 *cert)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, cert), 1);
    fclose(f);
}

static X509 *parse(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    assert_non_null(x);
    assert_ptr_equal(p, der + len);
    return x;
}

/* `openssl verify -CAfile ca ek` as an independent check; returns its exit status. */
static int openssl_verify(X509 *ca, const uint8_t *der, size_t len)
{
    char ca_path[320], ek_path[320], cmd[800];
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", host_sw.dir);
    snprintf(ek_path, sizeof(ek_path), "%s/ek.pem", host_sw.dir);
    write_pem(ca_path, ca);
    X509 *x = parse(der, len);
    write_pem(ek_path, x);
    X509_free(x);
    snprintf(cmd, sizeof(cmd), "openssl verify -CAfile '%s' '%s' >/dev/null 2>&1", ca_path,
             ek_path);
    return system(cmd);
}

static void check_ek_cert(const uint8_t *der, size_t len, EVP_PKEY *ek, const char *vm_id)
{
    struct tc_reason why;
    tc_reason_clear(&why);
    if (tc_vtpm_ca_verify_ek_cert(der, len, ca_cert, &why) != 0)
        fail_msg("%s: %s", why.check, why.detail);
    X509 *x = parse(der, len);
    assert_int_equal(X509_verify(x, ca_pub), 1);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), ek), 1);
    char cn[80];
    assert_int_equal(tc_pki_cert_cn(x, cn, sizeof(cn)), 0);
    assert_string_equal(cn, vm_id);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ca_cert)), 0);
    assert_int_equal(X509_check_ca(x), 0);
    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    /* keyUsage as the TCG EK profile has it. */
    uint32_t ku = X509_get_key_usage(x);
    assert_int_equal(ku, EVP_PKEY_is_a(ek, "RSA") ? KU_KEY_ENCIPHERMENT : KU_KEY_AGREEMENT);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca_cert);
    assert_non_null(aki);
    assert_non_null(ski);
    assert_int_equal(ASN1_OCTET_STRING_cmp(aki, ski), 0);
    X509_free(x);
    if (have_openssl)
        assert_int_equal(openssl_verify(ca_cert, der, len), 0);
}

static void ca_certificate(void **state)
{
    (void)state;
    assert_int_equal(X509_check_ca(ca_cert), 1);
    assert_int_equal(X509_verify(ca_cert, ca_pub), 1);
    assert_int_equal(X509_check_issued(ca_cert, ca_cert), X509_V_OK);
    EVP_PKEY *pk = NULL;
    assert_int_equal(tc_pki_cert_pubkey(ca_cert, &pk), 0);
    assert_int_equal(tc_pki_key_equal(pk, ca_pub), 0);
    EVP_PKEY_free(pk);
    assert_int_equal(X509_get_key_usage(ca_cert), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
}

static void issue_software_ek(void **state)
{
    (void)state;
    uint8_t *der = NULL;
    size_t len = 0;
    EVP_PKEY *ek = EVP_EC_gen("P-256");
    assert_non_null(ek);
    struct tc_vtpm_ek_req req = {.ek_pub = ek, .vm_id = "vm-0001", .days = 30};
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(&tpm_signer, ca_cert, &req, &der, &len), 0);
    check_ek_cert(der, len, ek, "vm-0001");

    /* Two certificates never share a serial. */
    uint8_t *der2 = NULL;
    size_t len2 = 0;
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(&tpm_signer, ca_cert, &req, &der2, &len2), 0);
    X509 *a = parse(der, len), *b = parse(der2, len2);
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(a), X509_get0_serialNumber(b)), 0);
    X509_free(a);
    X509_free(b);
    free(der2);
    free(der);
    EVP_PKEY_free(ek);
}

static void issue_real_vtpm_eks(void **state)
{
    (void)state;
    struct tc_tpm *vm = NULL;
    /* One connection at a time per swtpm: the host stays open, the vTPM is another TPM. */
    assert_int_equal(tc_tpm_open(vm_sw.tcti, &vm), 0);
    const enum tc_key_alg algs[] = {TC_KEY_ECC_P256, TC_KEY_RSA_2048};
    for (size_t i = 0; i < 2; i++) {
        struct tc_tpm_key ek;
        uint8_t *der = NULL;
        size_t len = 0;
        EVP_PKEY *pk = NULL;
        assert_int_equal(tc_tpm_ek_create(vm, algs[i], &ek), 0);
        assert_int_equal(tc_certify_public_key(ek.pub, ek.pub_len, &pk), 0);
        struct tc_vtpm_ek_req req = {.ek_tpm2b_public = ek.pub,
                                     .ek_tpm2b_public_len = ek.pub_len,
                                     .vm_id = i ? "vm-rsa" : "vm-ecc"};
        assert_int_equal(tc_vtpm_ca_issue_ek_cert(&tpm_signer, ca_cert, &req, &der, &len), 0);
        check_ek_cert(der, len, pk, req.vm_id);
        free(der);
        EVP_PKEY_free(pk);
        tc_tpm_key_release(vm, &ek);
    }
    tc_tpm_close(vm);
}

static void tpm_attributes(void **state)
{
    (void)state;
    uint8_t *der = NULL;
    size_t len = 0;
    EVP_PKEY *ek = EVP_EC_gen("P-256");
    struct tc_vtpm_ek_req req = {.ek_pub = ek,
                                 .vm_id = "vm-attrs",
                                 .tpm_manufacturer = "id:54434C44",
                                 .tpm_model = "trustcloud vTPM",
                                 .tpm_version = "id:00020000"};
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(&tpm_signer, ca_cert, &req, &der, &len), 0);
    check_ek_cert(der, len, ek, "vm-attrs");
    X509 *x = parse(der, len);
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
    GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, 0);
    assert_int_equal(g->type, GEN_DIRNAME);
    X509_NAME *dir = g->d.directoryName;
    assert_int_equal(X509_NAME_entry_count(dir), 3);
    const char *want[3][2] = {{"2.23.133.2.1", "id:54434C44"},
                              {"2.23.133.2.2", "trustcloud vTPM"},
                              {"2.23.133.2.3", "id:00020000"}};
    /* DER sorts the members of a SET: look each attribute up by type. */
    for (int i = 0; i < 3; i++) {
        ASN1_OBJECT *obj = OBJ_txt2obj(want[i][0], 1);
        int at = X509_NAME_get_index_by_OBJ(dir, obj, -1);
        ASN1_OBJECT_free(obj);
        assert_true(at >= 0);
        X509_NAME_ENTRY *e = X509_NAME_get_entry(dir, at);
        ASN1_STRING *v = X509_NAME_ENTRY_get_data(e);
        assert_int_equal(ASN1_STRING_length(v), strlen(want[i][1]));
        assert_memory_equal(ASN1_STRING_get0_data(v), want[i][1], strlen(want[i][1]));
        assert_int_equal(X509_NAME_ENTRY_set(e), 0); /* all in one RDN */
    }
    GENERAL_NAMES_free(gens);
    X509_free(x);
    free(der);
    der = NULL;
    /* All three or none; manufacturer and version are "id:" + hex. */
    req.tpm_version = NULL;
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(&tpm_signer, ca_cert, &req, &der, &len),
                     TC_ERR_INVALID_ARG);
    req.tpm_version = "id:0002000g";
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(&tpm_signer, ca_cert, &req, &der, &len),
                     TC_ERR_INVALID_ARG);
    req.tpm_version = "id:000200001";
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(&tpm_signer, ca_cert, &req, &der, &len),
                     TC_ERR_INVALID_ARG);
    assert_null(der);
    EVP_PKEY_free(ek);
}

/* The CA certificate belongs to the key TPM2_Certify covered, and to no other. */
static void cert_key_binding(void **state)
{
    (void)state;
    struct tc_reason why;
    assert_int_equal(tc_vtpm_ca_check_cert_key(ca_cert, ca_key.pub, ca_key.pub_len, &why), 0);
    assert_int_equal(tc_vtpm_ca_check_cert_key(ca_cert, host_ek.pub, host_ek.pub_len, &why),
                     TC_ERR_MISMATCH);
    assert_string_equal(why.check, "vtpm_ca.key");
    assert_int_equal(tc_vtpm_ca_check_cert_key(ca_cert, ca_key.pub, ca_key.pub_len - 1, &why),
                     TC_ERR_FORMAT);
    assert_int_equal(tc_vtpm_ca_check_cert_key(NULL, ca_key.pub, ca_key.pub_len, &why),
                     TC_ERR_INVALID_ARG);
}

/* What the coordinator checks, end to end: host AK -> vTPM CA key -> CA certificate -> EK. */
static void full_chain(void **state)
{
    (void)state;
    struct tc_tpm_key ak;
    struct tc_tpm_certify c;
    struct tc_ak *verifier_ak = NULL;
    struct tc_reason why;
    char ak_ctx[320];
    const uint8_t nonce[16] = "chain-nonce-0001";
    uint8_t *der = NULL;
    size_t len = 0;

    snprintf(ak_ctx, sizeof(ak_ctx), "%s/ak.ctx", host_sw.dir);
    assert_int_equal(tc_tpm_ak_create(host, &host_ek, TC_KEY_ECC_P256, TC_SIG_DEFAULT, ak_ctx, &ak),
                     0);
    assert_int_equal(tc_tpm_certify(host, &ca_key, &ak, nonce, sizeof(nonce), &c), 0);
    assert_int_equal(tc_ak_from_tpm2b_public(ak.pub, ak.pub_len, &verifier_ak, &why), 0);
    assert_int_equal(tc_certify_verify(verifier_ak, c.attest, c.attest_len, c.sig, c.sig_len,
                                       ca_key.pub, ca_key.pub_len, nonce, sizeof(nonce), NULL,
                                       &why),
                     0);
    assert_int_equal(tc_vtpm_ca_check_cert_key(ca_cert, ca_key.pub, ca_key.pub_len, &why), 0);
    EVP_PKEY *ek = EVP_EC_gen("P-256");
    struct tc_vtpm_ek_req req = {.ek_pub = ek, .vm_id = "vm-chain"};
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(&tpm_signer, ca_cert, &req, &der, &len), 0);
    assert_int_equal(tc_vtpm_ca_verify_ek_cert(der, len, ca_cert, &why), 0);
    free(der);
    EVP_PKEY_free(ek);
    tc_ak_free(verifier_ak);
    tc_tpm_certify_release(&c);
    tc_tpm_key_release(host, &ak);
}

static void forged_ca_rejected(void **state)
{
    (void)state;
    struct tc_reason why;
    X509 *forged = NULL;
    uint8_t *der = NULL;
    size_t len = 0;
    EVP_PKEY *soft = EVP_EC_gen("P-256"), *ek = EVP_EC_gen("P-256");
    assert_non_null(soft);
    assert_non_null(ek);
    struct tc_vtpm_ca_signer fake = {.sign = tc_vtpm_ca_soft_sign, .arg = soft, .pubkey = soft};
    /* Same subject as the real CA, software key. */
    assert_int_equal(tc_vtpm_ca_self_cert(&fake, "trustcloud vTPM CA host-1", 0, &forged), 0);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(forged), X509_get_subject_name(ca_cert)),
                     0);
    struct tc_vtpm_ek_req req = {.ek_pub = ek, .vm_id = "vm-0001"};
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(&fake, forged, &req, &der, &len), 0);
    /* Valid under the forged CA, not under the real one. */
    assert_int_equal(tc_vtpm_ca_verify_ek_cert(der, len, forged, &why), 0);
    assert_int_equal(tc_vtpm_ca_verify_ek_cert(der, len, ca_cert, &why), TC_ERR_SIGNATURE);
    assert_string_equal(why.check, "vtpm_ca.chain");
    if (have_openssl)
        assert_int_not_equal(openssl_verify(ca_cert, der, len), 0);
    free(der);

    /* A certificate without the EK usage, from a CA the verifier trusts. */
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8,
                                                (const unsigned char *)"vm-x", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 7), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -60));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_int_equal(X509_set_subject_name(x, n), 1);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(forged)), 1);
    assert_int_equal(X509_set_pubkey(x, ek), 1);
    assert_true(X509_sign(x, soft, EVP_sha256()) > 0);
    unsigned char *plain = NULL;
    int plain_len = i2d_X509(x, &plain);
    assert_true(plain_len > 0);
    assert_int_equal(tc_vtpm_ca_verify_ek_cert(plain, (size_t)plain_len, forged, &why),
                     TC_ERR_POLICY);
    assert_string_equal(why.check, "vtpm_ca.eku");
    OPENSSL_free(plain);
    X509_NAME_free(n);
    X509_free(x);

    /* A signer whose signature does not match its claimed public key is caught at issuance. */
    struct tc_vtpm_ca_signer liar = {.sign = tc_vtpm_ca_soft_sign, .arg = soft, .pubkey = ca_pub};
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(&liar, ca_cert, &req, &der, &len), TC_ERR_SIGNATURE);
    assert_null(der);
    X509 *self = NULL;
    assert_int_equal(tc_vtpm_ca_self_cert(&liar, "x", 0, &self), TC_ERR_SIGNATURE);
    assert_null(self);
    /* The signer's key must be the CA certificate's. */
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(&fake, ca_cert, &req, &der, &len), TC_ERR_KEY);
    X509_free(forged);
    EVP_PKEY_free(soft);
    EVP_PKEY_free(ek);
}

static void bad_inputs(void **state)
{
    (void)state;
    struct tc_reason why;
    uint8_t *der = NULL;
    size_t len = 0;
    EVP_PKEY *ek = EVP_EC_gen("P-256");
    struct tc_vtpm_ek_req req = {.ek_pub = ek, .vm_id = "vm-1"};
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(&tpm_signer, ca_cert, &req, &der, &len), 0);

    uint8_t *longer = malloc(len + 1);
    memcpy(longer, der, len);
    longer[len] = 0;
    assert_int_equal(tc_vtpm_ca_verify_ek_cert(longer, len + 1, ca_cert, &why), TC_ERR_FORMAT);
    assert_string_equal(why.check, "vtpm_ca.format");
    assert_int_equal(tc_vtpm_ca_verify_ek_cert(der, len - 1, ca_cert, &why), TC_ERR_FORMAT);
    assert_int_equal(tc_vtpm_ca_verify_ek_cert(der, 0, ca_cert, &why), TC_ERR_FORMAT);
    assert_int_equal(tc_vtpm_ca_verify_ek_cert(der, len, NULL, &why), TC_ERR_INVALID_ARG);
    /* A flipped byte in the signature value (the last bytes of the certificate). */
    memcpy(longer, der, len);
    longer[len - 2] ^= 1;
    assert_int_not_equal(tc_vtpm_ca_verify_ek_cert(longer, len, ca_cert, &why), 0);
    free(longer);
    free(der);
    der = NULL;

    req.vm_id = "";
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(&tpm_signer, ca_cert, &req, &der, &len),
                     TC_ERR_INVALID_ARG);
    req.vm_id = "vm-1";
    req.ek_tpm2b_public = (const uint8_t *)"x";
    req.ek_tpm2b_public_len = 1;
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(&tpm_signer, ca_cert, &req, &der, &len),
                     TC_ERR_INVALID_ARG); /* both key forms given */
    req.ek_pub = NULL;
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(&tpm_signer, ca_cert, &req, &der, &len),
                     TC_ERR_FORMAT);
    assert_null(der);
    EVP_PKEY_free(ek);
}

static void timings(void **state)
{
    (void)state;
    uint8_t digest[32] = {1}, *der = NULL;
    size_t len = 0;
    EVP_PKEY *ek = EVP_EC_gen("P-256");
    struct tc_vtpm_ek_req req = {.ek_pub = ek, .vm_id = "vm-timing"};
    struct tc_reason why;
    const int n = 50;
    double t0 = now_ms();
    for (int i = 0; i < n; i++) {
        assert_int_equal(tc_tpm_sign_digest(host, &ca_key, digest, &der, &len), 0);
        free(der);
    }
    double t1 = now_ms();
    for (int i = 0; i < n; i++) {
        assert_int_equal(tc_vtpm_ca_issue_ek_cert(&tpm_signer, ca_cert, &req, &der, &len), 0);
        if (i + 1 < n)
            free(der);
    }
    double t2 = now_ms();
    for (int i = 0; i < n; i++)
        assert_int_equal(tc_vtpm_ca_verify_ek_cert(der, len, ca_cert, &why), 0);
    double t3 = now_ms();
    printf("timing: TPM2_Sign %.3f ms; EK certificate issuance (build + TPM2_Sign + self-check) "
           "%.3f ms; verification %.3f ms; certificate %zu bytes (mean of %d)\n",
           (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n, len, n);
    free(der);
    EVP_PKEY_free(ek);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ca_certificate),
        cmocka_unit_test(issue_software_ek),
        cmocka_unit_test(issue_real_vtpm_eks),
        cmocka_unit_test(forged_ca_rejected),
        cmocka_unit_test(bad_inputs),
        cmocka_unit_test(tpm_attributes),
        cmocka_unit_test(cert_key_binding),
        cmocka_unit_test(full_chain),
        cmocka_unit_test(timings),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
