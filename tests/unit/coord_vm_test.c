/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The coordinator's check of a vTPM's identity (coord_vm_verify_answer): real swtpms play two
 * hosts and a vTPM; the answer is built exactly as an agent builds it, then broken the ways an
 * attacker would: a CA certificate for a software key (forged CA), a CA key certified by
 * another host's AK, an old nonce, an EK certificate for another EK, a VM AK that is not a
 * restricted signing key, missing members.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "coord_fixture.h"
#include "coordinator/coord.h"
#include "swtpm_fixture.h"
#include "trustcloud/certify.h"
#include "trustcloud/error.h"
#include "trustcloud/quote.h"
#include "trustcloud/tpm.h"
#include "trustcloud/tpm_certify.h"
#include "trustcloud/vtpm_ca.h"

/* One simulated host: its TPM, EK, AK, vTPM CA key and the CA's certificate. */
struct host {
    struct swtpm sw;
    struct tc_tpm *tpm;
    struct tc_tpm_key ek, ak, ca;
    EVP_PKEY *ca_pub;
    X509 *ca_cert;
    struct tc_vtpm_ca_signer signer;
    struct tc_ak *ak_verifier;
};

static struct host h1, h2;
static struct swtpm vm_sw;
static struct tc_tpm *vm;
static struct tc_tpm_key vm_ek, vm_ek2, vm_ak;
static const uint8_t nonce[32] = "coordinator-nonce-for-vm-create";

static int tpm_sign(void *arg, const uint8_t digest[32], uint8_t **der, size_t *der_len)
{
    struct host *h = arg;
    return tc_tpm_sign_digest(h->tpm, &h->ca, digest, der, der_len);
}

static int host_up(struct host *h, const char *cn)
{
    char path[320];
    struct tc_reason why;
    if (swtpm_new(&h->sw, "tc-coordvm-test") != 0 || tc_tpm_open(h->sw.tcti, &h->tpm) != 0 ||
        tc_tpm_ek_create(h->tpm, TC_KEY_ECC_P256, &h->ek) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/ak.ctx", h->sw.dir);
    if (tc_tpm_ak_create(h->tpm, &h->ek, TC_KEY_ECC_P256, TC_SIG_DEFAULT, path, &h->ak) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/vtpmca.ctx", h->sw.dir);
    if (tc_tpm_vtpm_ca_create(h->tpm, &h->ek, path, &h->ca) != 0 ||
        tc_certify_public_key(h->ca.pub, h->ca.pub_len, &h->ca_pub) != 0)
        return -1;
    h->signer = (struct tc_vtpm_ca_signer){.sign = tpm_sign, .arg = h, .pubkey = h->ca_pub};
    if (tc_vtpm_ca_self_cert(&h->signer, cn, 0, &h->ca_cert) != 0 ||
        tc_ak_from_tpm2b_public(h->ak.pub, h->ak.pub_len, &h->ak_verifier, &why) != 0)
        return -1;
    return 0;
}

static void host_down(struct host *h)
{
    tc_ak_free(h->ak_verifier);
    X509_free(h->ca_cert);
    EVP_PKEY_free(h->ca_pub);
    if (h->tpm) {
        tc_tpm_key_release(h->tpm, &h->ca);
        tc_tpm_key_release(h->tpm, &h->ak);
        tc_tpm_key_release(h->tpm, &h->ek);
        tc_tpm_close(h->tpm);
    }
    swtpm_free(&h->sw);
}

static int group_setup(void **state)
{
    char path[320];
    (void)state;
    srand((unsigned)(getpid() ^ time(NULL)));
    if (system("command -v swtpm >/dev/null") != 0) {
        fprintf(stderr, "swtpm not available\n");
        return -1;
    }
    if (host_up(&h1, "trustcloud vTPM CA host-1") != 0 ||
        host_up(&h2, "trustcloud vTPM CA host-2") != 0 || swtpm_new(&vm_sw, "tc-coordvm-test") ||
        tc_tpm_open(vm_sw.tcti, &vm) != 0 || tc_tpm_ek_create(vm, TC_KEY_ECC_P256, &vm_ek) != 0 ||
        tc_tpm_ek_create(vm, TC_KEY_RSA_2048, &vm_ek2) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/ak.ctx", vm_sw.dir);
    return tc_tpm_ak_create(vm, &vm_ek, TC_KEY_ECC_P256, TC_SIG_DEFAULT, path, &vm_ak) == 0 ? 0
                                                                                            : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    if (vm) {
        tc_tpm_key_release(vm, &vm_ak);
        tc_tpm_key_release(vm, &vm_ek2);
        tc_tpm_key_release(vm, &vm_ek);
        tc_tpm_close(vm);
    }
    swtpm_free(&vm_sw);
    host_down(&h2);
    host_down(&h1);
    return 0;
}

/* What an agent answers to POST /v1/vms: the CA key certified by `certifier` over `n`, the CA
 * certificate `ca` (its public area `ca_pub_area`), and an EK certificate issued by `issuer`. */
static json_t *answer(struct host *certifier, const struct tc_tpm_key *ca_key, X509 *ca,
                      const struct tc_vtpm_ca_signer *issuer, const struct tc_tpm_key *ek_in_cert,
                      const struct tc_tpm_key *ek_sent, const uint8_t *n)
{
    struct tc_tpm_certify c;
    uint8_t *ek_der = NULL, *ca_der = NULL;
    size_t ek_der_len = 0;
    struct tc_vtpm_ek_req req = {.ek_tpm2b_public = ek_in_cert->pub,
                                 .ek_tpm2b_public_len = ek_in_cert->pub_len,
                                 .vm_id = "vm-1"};
    assert_int_equal(tc_tpm_certify(certifier->tpm, ca_key, &certifier->ak, n, 32, &c), 0);
    assert_int_equal(tc_vtpm_ca_issue_ek_cert(issuer, ca, &req, &ek_der, &ek_der_len), 0);
    int ca_der_len = i2d_X509(ca, &ca_der);
    assert_true(ca_der_len > 0);
    json_t *j =
        json_pack("{s:s, s:s, s:o, s:o, s:o, s:{s:o, s:o, s:o, s:o}}", "vm_id", "vm-1", "mode",
                  "tcp", "ek_pub", coord_fixture_b64_json(ek_sent->pub, ek_sent->pub_len),
                  "ek_cert", coord_fixture_b64_json(ek_der, ek_der_len), "ak_pub",
                  coord_fixture_b64_json(vm_ak.pub, vm_ak.pub_len), "vtpm_ca", "cert",
                  coord_fixture_b64_json(ca_der, (size_t)ca_der_len), "public",
                  coord_fixture_b64_json(ca_key->pub, ca_key->pub_len), "attest",
                  coord_fixture_b64_json(c.attest, c.attest_len), "signature",
                  coord_fixture_b64_json(c.sig, c.sig_len));
    assert_non_null(j);
    free(ek_der);
    OPENSSL_free(ca_der);
    tc_tpm_certify_release(&c);
    return j;
}

static void expect_refused(json_t *j, const char *check)
{
    struct coord_vm_identity id;
    struct tc_reason why;
    assert_int_not_equal(
        coord_vm_verify_answer(j, h1.ak_verifier, nonce, sizeof(nonce), true, &id, &why), 0);
    if (strcmp(why.check, check) != 0)
        fail_msg("expected %s, got %s: %s", check, why.check, why.detail);
    assert_null(id.ek_pub);
    json_decref(j);
}

static void genuine_chain(void **state)
{
    (void)state;
    struct coord_vm_identity id;
    struct tc_reason why;
    json_t *j = answer(&h1, &h1.ca, h1.ca_cert, &h1.signer, &vm_ek, &vm_ek, nonce);
    int rc = coord_vm_verify_answer(j, h1.ak_verifier, nonce, sizeof(nonce), true, &id, &why);
    if (rc)
        fail_msg("%s: %s", why.check, why.detail);
    assert_memory_equal(id.ak_name, vm_ak.name, vm_ak.name_len);
    assert_int_equal(id.ak_name_len, vm_ak.name_len);
    assert_memory_equal(id.ek_pub, vm_ek.pub, vm_ek.pub_len);
    coord_vm_identity_release(&id);
    /* qemu mode: no AK is sent or needed. */
    json_object_del(j, "ak_pub");
    assert_int_equal(
        coord_vm_verify_answer(j, h1.ak_verifier, nonce, sizeof(nonce), false, &id, &why), 0);
    assert_null(id.ak_name);
    coord_vm_identity_release(&id);
    json_decref(j);
}

/* A CA certificate for a software key, issuing a valid-looking EK certificate, while the
 * certify still covers the real TPM-resident key. */
static void forged_ca_key(void **state)
{
    (void)state;
    EVP_PKEY *soft = EVP_EC_gen("P-256");
    X509 *forged = NULL;
    struct tc_vtpm_ca_signer fake = {.sign = tc_vtpm_ca_soft_sign, .arg = soft, .pubkey = soft};
    assert_int_equal(tc_vtpm_ca_self_cert(&fake, "trustcloud vTPM CA host-1", 0, &forged), 0);
    expect_refused(answer(&h1, &h1.ca, forged, &fake, &vm_ek, &vm_ek, nonce), "vtpm_ca.key");
    /* The real CA certificate with an EK certificate signed by the software key. */
    json_t *good = answer(&h1, &h1.ca, h1.ca_cert, &h1.signer, &vm_ek, &vm_ek, nonce);
    json_t *bad = answer(&h1, &h1.ca, forged, &fake, &vm_ek, &vm_ek, nonce);
    json_object_set(good, "ek_cert", json_object_get(bad, "ek_cert"));
    json_decref(bad);
    expect_refused(good, "vtpm_ca.chain");
    X509_free(forged);
    EVP_PKEY_free(soft);
}

/* Another host's CA key, certified by that host's AK: not this host's TPM. */
static void ca_key_of_another_host(void **state)
{
    (void)state;
    expect_refused(answer(&h2, &h2.ca, h2.ca_cert, &h2.signer, &vm_ek, &vm_ek, nonce),
                   "certify.signature");
    /* This host's AK certifying... the other host's key cannot happen (not loaded here); but
     * this host's certify presented with the other host's public area is a name mismatch. */
    json_t *j = answer(&h1, &h1.ca, h1.ca_cert, &h1.signer, &vm_ek, &vm_ek, nonce);
    json_object_set_new(json_object_get(j, "vtpm_ca"), "public",
                        coord_fixture_b64_json(h2.ca.pub, h2.ca.pub_len));
    expect_refused(j, "certify.name");
}

static void replayed_nonce(void **state)
{
    (void)state;
    const uint8_t old[32] = "an-older-nonce-from-another-vm!";
    expect_refused(answer(&h1, &h1.ca, h1.ca_cert, &h1.signer, &vm_ek, &vm_ek, old),
                   "certify.nonce");
}

static void ek_cert_for_another_ek(void **state)
{
    (void)state;
    expect_refused(answer(&h1, &h1.ca, h1.ca_cert, &h1.signer, &vm_ek2, &vm_ek, nonce),
                   "vm.ek_cert");
}

static void bad_ak_and_members(void **state)
{
    (void)state;
    /* The vTPM's EK in place of its AK: not a signing key. */
    json_t *j = answer(&h1, &h1.ca, h1.ca_cert, &h1.signer, &vm_ek, &vm_ek, nonce);
    json_object_set_new(j, "ak_pub", coord_fixture_b64_json(vm_ek.pub, vm_ek.pub_len));
    expect_refused(j, "vm.ak_attributes");
    j = answer(&h1, &h1.ca, h1.ca_cert, &h1.signer, &vm_ek, &vm_ek, nonce);
    json_object_set_new(j, "ak_pub", json_string("AAAA"));
    expect_refused(j, "vm.ak");
    static const char *const members[] = {"ek_pub", "ek_cert", "ak_pub", "vtpm_ca"};
    for (size_t i = 0; i < 4; i++) {
        j = answer(&h1, &h1.ca, h1.ca_cert, &h1.signer, &vm_ek, &vm_ek, nonce);
        json_object_del(j, members[i]);
        expect_refused(j, "vm.agent_response");
    }
    j = answer(&h1, &h1.ca, h1.ca_cert, &h1.signer, &vm_ek, &vm_ek, nonce);
    json_object_set_new(json_object_get(j, "vtpm_ca"), "attest", json_string("not base64!"));
    expect_refused(j, "vm.agent_response");
    j = answer(&h1, &h1.ca, h1.ca_cert, &h1.signer, &vm_ek, &vm_ek, nonce);
    json_object_set_new(json_object_get(j, "vtpm_ca"), "cert", json_string("AAAA"));
    expect_refused(j, "vtpm_ca.format");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(genuine_chain),          cmocka_unit_test(forged_ca_key),
        cmocka_unit_test(ca_key_of_another_host), cmocka_unit_test(replayed_nonce),
        cmocka_unit_test(ek_cert_for_another_ek), cmocka_unit_test(bad_ak_and_members),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
