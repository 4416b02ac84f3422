/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TPM2_ActivateCredential against a real swtpm, with credentials made in software by
 * tc_make_credential: recovered for the right EK and AK (ECC and RSA EKs), refused for another
 * AK name or another EK, malformed blobs refused before the TPM; no session or object left
 * loaded. Then the agent's enrollment TPM steps: identity (AK created once, reloaded after),
 * activation plus the quote binding the TLS key, verified like the coordinator does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "swtpm_fixture.h"
#include "trustcloud/credential.h"
#include "trustcloud/pki.h"
#include "trustcloud/quote.h"
#include "trustcloud/tpm_credential.h"

/* The agent is an executable, not a library: its modules are compiled into the test. */
#include "agent/agent_config.c"
#include "agent/agent_enroll.c"
#include "agent/agent_request.c"
#include "agent/agent_tpm.c"

static struct swtpm sw;

static int group_setup(void **state)
{
    (void)state;
    if (system("command -v swtpm >/dev/null") != 0)
        return -1;
    return swtpm_new(&sw, "tc-agent-cred");
}

static int group_teardown(void **state)
{
    (void)state;
    swtpm_free(&sw);
    return 0;
}

static void assert_nothing_loaded(struct tc_tpm *tpm)
{
    size_t objects = 99, sessions = 99;
    assert_int_equal(tc_tpm_loaded_count(tpm, &objects, &sessions), 0);
    assert_int_equal(sessions, 0);
}

static void activate_for(enum tc_key_alg ek_alg)
{
    struct tc_tpm *tpm = NULL;
    struct tc_tpm_key ek, ak, other_ek;
    struct tc_credential_blob blob;
    uint8_t secret[32], out[64], name[TC_TPM_MAX_NAME];
    size_t out_len = 0;
    char ctx[300];

    snprintf(ctx, sizeof(ctx), "%s/ak-%d.ctx", sw.dir, (int)ek_alg);
    assert_int_equal(tc_tpm_open(sw.tcti, &tpm), 0);
    assert_int_equal(tc_tpm_ek_create(tpm, ek_alg, &ek), 0);
    assert_int_equal(tc_tpm_ak_create(tpm, &ek, TC_KEY_ECC_P256, TC_SIG_DEFAULT, ctx, &ak), 0);
    assert_int_equal(RAND_bytes(secret, sizeof(secret)), 1);

    /* The right EK and AK: the secret comes back. */
    assert_int_equal(
        tc_make_credential(ek.pub, ek.pub_len, ak.name, ak.name_len, secret, sizeof(secret), &blob),
        0);
    assert_int_equal(tc_tpm_activate_credential(tpm, &ak, &ek, blob.id_object, blob.id_object_len,
                                                blob.secret, blob.secret_len, out, sizeof(out),
                                                &out_len),
                     0);
    assert_int_equal(out_len, sizeof(secret));
    assert_memory_equal(out, secret, sizeof(secret));
    assert_nothing_loaded(tpm);
    /* Too small an output buffer. */
    assert_int_equal(tc_tpm_activate_credential(tpm, &ak, &ek, blob.id_object, blob.id_object_len,
                                                blob.secret, blob.secret_len, out, 16, &out_len),
                     TC_ERR_TOO_LARGE);
    assert_int_equal(out_len, 0);

    /* Made for another AK name: the TPM refuses. */
    memcpy(name, ak.name, ak.name_len);
    name[ak.name_len - 1] ^= 1;
    assert_int_equal(
        tc_make_credential(ek.pub, ek.pub_len, name, ak.name_len, secret, sizeof(secret), &blob),
        0);
    assert_int_equal(tc_tpm_activate_credential(tpm, &ak, &ek, blob.id_object, blob.id_object_len,
                                                blob.secret, blob.secret_len, out, sizeof(out),
                                                &out_len),
                     TC_ERR_TPM);
    assert_int_equal(out_len, 0);
    assert_nothing_loaded(tpm);

    /* Made for another EK (the other algorithm's): refused too. */
    enum tc_key_alg other = ek_alg == TC_KEY_ECC_P256 ? TC_KEY_RSA_2048 : TC_KEY_ECC_P256;
    assert_int_equal(tc_tpm_ek_create(tpm, other, &other_ek), 0);
    assert_int_equal(tc_make_credential(other_ek.pub, other_ek.pub_len, ak.name, ak.name_len,
                                        secret, sizeof(secret), &blob),
                     0);
    tc_tpm_key_release(tpm, &other_ek);
    assert_int_equal(tc_tpm_activate_credential(tpm, &ak, &ek, blob.id_object, blob.id_object_len,
                                                blob.secret, blob.secret_len, out, sizeof(out),
                                                &out_len),
                     TC_ERR_TPM);
    assert_nothing_loaded(tpm);

    /* Malformed blobs never reach the TPM. */
    assert_int_equal(
        tc_make_credential(ek.pub, ek.pub_len, ak.name, ak.name_len, secret, sizeof(secret), &blob),
        0);
    uint8_t longer[TC_CRED_MAX_SECRET + 1];
    memcpy(longer, blob.id_object, blob.id_object_len);
    longer[blob.id_object_len] = 0;
    assert_int_equal(tc_tpm_activate_credential(tpm, &ak, &ek, longer, blob.id_object_len + 1,
                                                blob.secret, blob.secret_len, out, sizeof(out),
                                                &out_len),
                     TC_ERR_TRAILING);
    assert_int_equal(tc_tpm_activate_credential(tpm, &ak, &ek, blob.id_object,
                                                blob.id_object_len - 1, blob.secret,
                                                blob.secret_len, out, sizeof(out), &out_len),
                     TC_ERR_FORMAT);
    memcpy(longer, blob.secret, blob.secret_len);
    longer[blob.secret_len] = 0;
    assert_int_equal(tc_tpm_activate_credential(tpm, &ak, &ek, blob.id_object, blob.id_object_len,
                                                longer, blob.secret_len + 1, out, sizeof(out),
                                                &out_len),
                     TC_ERR_TRAILING);
    assert_int_equal(tc_tpm_activate_credential(tpm, &ak, &ek, blob.id_object, blob.id_object_len,
                                                blob.secret, 1, out, sizeof(out), &out_len),
                     TC_ERR_FORMAT);
    assert_int_equal(tc_tpm_activate_credential(tpm, &ak, &ek, NULL, 0, blob.secret,
                                                blob.secret_len, out, sizeof(out), &out_len),
                     TC_ERR_INVALID_ARG);
    /* After all the refusals the good credential still activates. */
    assert_int_equal(tc_tpm_activate_credential(tpm, &ak, &ek, blob.id_object, blob.id_object_len,
                                                blob.secret, blob.secret_len, out, sizeof(out),
                                                &out_len),
                     0);
    assert_memory_equal(out, secret, sizeof(secret));

    tc_tpm_key_release(tpm, &ak);
    tc_tpm_key_release(tpm, &ek);
    size_t objects = 99, sessions = 99;
    assert_int_equal(tc_tpm_loaded_count(tpm, &objects, &sessions), 0);
    assert_int_equal(objects, 0);
    assert_int_equal(sessions, 0);
    tc_tpm_close(tpm);
}

static void activate_ecc_ek(void **state)
{
    activate_for(TC_KEY_ECC_P256);
}

static void activate_rsa_ek(void **state)
{
    activate_for(TC_KEY_RSA_2048);
}

/* What enrollment does on the node, checked as the coordinator checks it. */
static void enrollment_tpm_steps(void **state)
{
    struct agent_config cfg;
    struct agent_identity id, again;
    struct tc_credential_blob blob;
    uint8_t secret[32], got[64], nonce[32], binding[32], expect[32];
    size_t got_len = 0;
    char dir[300];

    memset(&cfg, 0, sizeof(cfg));
    snprintf(dir, sizeof(dir), "%s/state", sw.dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    cfg.tcti = sw.tcti;
    cfg.state_dir = dir;
    cfg.ek_alg = AGENT_ALG_RSA;
    cfg.ak_alg = AGENT_ALG_ECC;

    /* Loading without an AK yet fails cleanly; identity creates it once, then reloads it. */
    struct tc_pcr_set sel;
    struct tc_tpm_quote q;
    assert_int_equal(tc_pcrs_parse_selection("sha256:0", &sel), 0);
    assert_int_not_equal(agent_tpm_quote(&cfg, &sel, (const uint8_t *)"n", 1, &q), 0);
    assert_int_equal(agent_tpm_identity(&cfg, &id), 0);
    assert_null(id.ek_cert); /* a plain swtpm has no EK certificate */
    assert_int_equal(agent_tpm_identity(&cfg, &again), 0);
    assert_int_equal(again.ak_name_len, id.ak_name_len);
    assert_memory_equal(again.ak_name, id.ak_name, id.ak_name_len);
    assert_memory_equal(again.ek_pub, id.ek_pub, id.ek_pub_len);
    agent_identity_release(&again);

    /* The coordinator's side: a credential for (EK, AK name) and a nonce. */
    assert_int_equal(RAND_bytes(secret, sizeof(secret)), 1);
    assert_int_equal(RAND_bytes(nonce, sizeof(nonce)), 1);
    assert_int_equal(tc_make_credential(id.ek_pub, id.ek_pub_len, id.ak_name, id.ak_name_len,
                                        secret, sizeof(secret), &blob),
                     0);
    EVP_PKEY *key = NULL;
    assert_int_equal(tc_pki_key_generate(&key), 0);
    assert_int_equal(agent_binding_digest(nonce, sizeof(nonce), key, binding), 0);
    /* The binding computed independently: SHA-256(nonce || SHA-256(DER SPKI)). */
    unsigned char *der = NULL;
    int der_len = i2d_PUBKEY(key, &der);
    assert_true(der_len > 0);
    uint8_t spki_hash[32], cat[64];
    assert_int_equal(EVP_Digest(der, (size_t)der_len, spki_hash, NULL, EVP_sha256(), NULL), 1);
    memcpy(cat, nonce, 32);
    memcpy(cat + 32, spki_hash, 32);
    assert_int_equal(EVP_Digest(cat, 64, expect, NULL, EVP_sha256(), NULL), 1);
    assert_memory_equal(binding, expect, 32);
    OPENSSL_free(der);

    assert_int_equal(agent_tpm_activate_and_quote(&cfg, blob.id_object, blob.id_object_len,
                                                  blob.secret, blob.secret_len, got, sizeof(got),
                                                  &got_len, &sel, binding, sizeof(binding), &q),
                     0);
    assert_int_equal(got_len, sizeof(secret));
    assert_memory_equal(got, secret, sizeof(secret));

    struct tc_ak *ak = NULL;
    struct tc_reason why;
    assert_int_equal(tc_ak_from_tpm2b_public(id.ak_pub, id.ak_pub_len, &ak, &why), 0);
    uint8_t qn[TC_QUOTE_MAX_NAME];
    size_t qn_len = 0;
    assert_int_equal(
        tc_ak_qualified_name(ak, TC_TPM_RH_ENDORSEMENT, id.ek_pub, id.ek_pub_len, qn, &qn_len), 0);
    struct tc_pcr_selection want;
    tc_pcr_selection_from_set(&sel, &want);
    struct tc_quote_expect ex = {.nonce = binding,
                                 .nonce_len = sizeof(binding),
                                 .selection = &want,
                                 .signer_qn = qn,
                                 .signer_qn_len = qn_len};
    assert_int_equal(
        tc_quote_verify(ak, q.attest, q.attest_len, q.sig, q.sig_len, &q.pcrs, &ex, NULL, &why), 0);
    /* Another TLS key gives another binding: the quote does not vouch for it. */
    EVP_PKEY *other = NULL;
    assert_int_equal(tc_pki_key_generate(&other), 0);
    assert_int_equal(agent_binding_digest(nonce, sizeof(nonce), other, expect), 0);
    ex.nonce = expect;
    assert_int_equal(
        tc_quote_verify(ak, q.attest, q.attest_len, q.sig, q.sig_len, &q.pcrs, &ex, NULL, &why),
        TC_ERR_NONCE);
    tc_tpm_quote_release(&q);

    /* A credential for another AK name: activation refused, nothing quoted. */
    id.ak_name[id.ak_name_len - 1] ^= 0x80;
    assert_int_equal(tc_make_credential(id.ek_pub, id.ek_pub_len, id.ak_name, id.ak_name_len,
                                        secret, sizeof(secret), &blob),
                     0);
    assert_int_equal(agent_tpm_activate_and_quote(&cfg, blob.id_object, blob.id_object_len,
                                                  blob.secret, blob.secret_len, got, sizeof(got),
                                                  &got_len, &sel, binding, sizeof(binding), &q),
                     TC_ERR_TPM);
    assert_null(q.attest);

    /* Every operation closed its connection and flushed: a fresh one sees nothing loaded. */
    struct tc_tpm *tpm = NULL;
    assert_int_equal(tc_tpm_open(sw.tcti, &tpm), 0);
    size_t objects = 99, sessions = 99;
    assert_int_equal(tc_tpm_loaded_count(tpm, &objects, &sessions), 0);
    assert_int_equal(objects, 0);
    assert_int_equal(sessions, 0);
    tc_tpm_close(tpm);

    tc_ak_free(ak);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    agent_identity_release(&id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(activate_ecc_ek),
        cmocka_unit_test(activate_rsa_ek),
        cmocka_unit_test(enrollment_tpm_steps),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
