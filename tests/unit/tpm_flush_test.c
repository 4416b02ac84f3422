/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tc_tpm_flush_leftovers against a real swtpm (no resource manager): what a process that died
 * while using the TPM left loaded (objects, HMAC and policy sessions) is made here with ESAPI
 * directly, by a context that is finalized without flushing anything, as a killed process would
 * leave it. Then the flush must remove exactly that, and keep what the flushing handle holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include "swtpm_fixture.h"
#include "trustcloud/error.h"
#include "trustcloud/tpm.h"

static struct swtpm tpmsim;

static int group_setup(void **state)
{
    (void)state;
    if (system("command -v swtpm >/dev/null") != 0) {
        fprintf(stderr, "swtpm not installed\n");
        return -1;
    }
    return swtpm_new(&tpmsim, "tc-tpm-flush-test");
}

static int group_teardown(void **state)
{
    (void)state;
    swtpm_free(&tpmsim);
    return 0;
}

static void loaded(struct tc_tpm *tpm, size_t *objects, size_t *sessions)
{
    assert_int_equal(tc_tpm_loaded_count(tpm, objects, sessions), 0);
}

/* A process that loads n_objects ECC primaries in the owner hierarchy, starts n_hmac HMAC and
 * n_policy policy sessions, and goes away without flushing any of them. */
static void leave_behind(int n_objects, int n_hmac, int n_policy)
{
    TSS2_TCTI_CONTEXT *tcti = NULL;
    ESYS_CONTEXT *esys = NULL;
    assert_int_equal(Tss2_TctiLdr_Initialize(tpmsim.tcti, &tcti), TSS2_RC_SUCCESS);
    assert_int_equal(Esys_Initialize(&esys, tcti, NULL), TSS2_RC_SUCCESS);
    for (int i = 0; i < n_objects; i++) {
        TPM2B_SENSITIVE_CREATE sens = {.size = 0};
        TPM2B_PUBLIC tmpl = {
            .publicArea = {
                .type = TPM2_ALG_ECC,
                .nameAlg = TPM2_ALG_SHA256,
                .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                    TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                                    TPMA_OBJECT_SIGN_ENCRYPT,
                .parameters.eccDetail = {.symmetric = {.algorithm = TPM2_ALG_NULL},
                                         .scheme = {.scheme = TPM2_ALG_NULL},
                                         .curveID = TPM2_ECC_NIST_P256,
                                         .kdf = {.scheme = TPM2_ALG_NULL}},
            }};
        /* A distinct unique field per object: otherwise the TPM derives the same key. */
        tmpl.publicArea.unique.ecc.x.size = 1;
        tmpl.publicArea.unique.ecc.x.buffer[0] = (uint8_t)i;
        TPM2B_DATA outside = {.size = 0};
        TPML_PCR_SELECTION pcrs = {.count = 0};
        ESYS_TR h = ESYS_TR_NONE;
        assert_int_equal(Esys_CreatePrimary(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                            ESYS_TR_NONE, &sens, &tmpl, &outside, &pcrs, &h, NULL,
                                            NULL, NULL, NULL),
                         TSS2_RC_SUCCESS);
    }
    for (int i = 0; i < n_hmac + n_policy; i++) {
        TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_NULL};
        ESYS_TR s = ESYS_TR_NONE;
        assert_int_equal(Esys_StartAuthSession(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                               ESYS_TR_NONE, ESYS_TR_NONE, NULL,
                                               i < n_hmac ? TPM2_SE_HMAC : TPM2_SE_POLICY, &sym,
                                               TPM2_ALG_SHA256, &s),
                         TSS2_RC_SUCCESS);
    }
    /* Esys_Finalize forgets its metadata only: the TPM keeps everything loaded. */
    Esys_Finalize(&esys);
    Tss2_TctiLdr_Finalize(&tcti);
}

static void tcti_kinds(void **state)
{
    (void)state;
    const char *without[] = {"swtpm",
                             "swtpm:host=127.0.0.1,port=2321",
                             "mssim:host=localhost,port=2321",
                             "device",
                             "device:/dev/tpm0",
                             "device:/dev/tpm12",
                             "libtss2-tcti-swtpm.so.0:port=2321",
                             "libtss2-tcti-device.so:/dev/tpm0"};
    const char *with[] = {NULL,
                          "",
                          "device:/dev/tpmrm0",
                          "device:/dev/tpmrm1",
                          "device:/dev/tpm",
                          "device:/dev/tpm0x",
                          "device:/tmp/tpm0",
                          "tabrmd",
                          "tabrmd:bus_type=session",
                          "libtss2-tcti-tabrmd.so.0",
                          "cmd:swtpm_ioctl",
                          "swtpmx:port=1",
                          "libtss2-tcti-swtpm.sox",
                          ":device"};
    for (size_t i = 0; i < sizeof(without) / sizeof(without[0]); i++)
        if (!tc_tpm_tcti_without_rm(without[i]))
            fail_msg("'%s' reaches the TPM without a resource manager", without[i]);
    for (size_t i = 0; i < sizeof(with) / sizeof(with[0]); i++)
        if (tc_tpm_tcti_without_rm(with[i]))
            fail_msg("'%s' must not be taken for a TPM without resource manager",
                     with[i] ? with[i] : "(NULL)");
}

/* Objects and both kinds of session left by a dead process are flushed, and counted. */
static void flushes_leftovers(void **state)
{
    (void)state;
    struct tc_tpm *tpm = NULL;
    size_t objects = 0, sessions = 0, n = 99;

    leave_behind(2, 1, 1);
    assert_int_equal(tc_tpm_open(tpmsim.tcti, &tpm), 0);
    loaded(tpm, &objects, &sessions);
    assert_int_equal(objects, 2);
    assert_int_equal(sessions, 2);
    assert_int_equal(tc_tpm_flush_leftovers(tpm, &n), 0);
    assert_int_equal(n, 4);
    loaded(tpm, &objects, &sessions);
    assert_int_equal(objects, 0);
    assert_int_equal(sessions, 0);
    /* Nothing left: a second flush finds nothing and sends no FlushContext. */
    assert_int_equal(tc_tpm_flush_leftovers(tpm, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(tc_tpm_flush_leftovers(tpm, NULL), 0);
    tc_tpm_close(tpm);
}

/* The reproduced failure: leftovers fill the object slots, the next key cannot be loaded; after
 * the flush it can. The key this handle holds survives a flush. */
static void unblocks_and_keeps_own_keys(void **state)
{
    (void)state;
    struct tc_tpm *tpm = NULL;
    struct tc_tpm_key ek, ek2;
    size_t objects = 0, sessions = 0, n = 0;

    memset(&ek, 0, sizeof(ek));
    memset(&ek2, 0, sizeof(ek2));
    leave_behind(3, 0, 0);
    assert_int_equal(tc_tpm_open(tpmsim.tcti, &tpm), 0);
    assert_int_equal(tc_tpm_ek_create(tpm, TC_KEY_ECC_P256, &ek), TC_ERR_TPM);
    assert_int_equal(tc_tpm_flush_leftovers(tpm, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(tc_tpm_ek_create(tpm, TC_KEY_ECC_P256, &ek), 0);

    /* Another leftover next to our EK: only the leftover goes. */
    leave_behind(1, 1, 0);
    loaded(tpm, &objects, &sessions);
    assert_int_equal(objects, 2);
    assert_int_equal(sessions, 1);
    assert_int_equal(tc_tpm_flush_leftovers(tpm, &n), 0);
    assert_int_equal(n, 2);
    loaded(tpm, &objects, &sessions);
    assert_int_equal(objects, 1);
    assert_int_equal(sessions, 0);
    /* The EK is still usable (a second EK from the same seed loads next to it) and is flushed by
     * its release without an error. */
    assert_int_equal(tc_tpm_ek_create(tpm, TC_KEY_ECC_P256, &ek2), 0);
    assert_memory_equal(ek.name, ek2.name, ek.name_len);
    tc_tpm_key_release(tpm, &ek2);
    tc_tpm_key_release(tpm, &ek);
    loaded(tpm, &objects, &sessions);
    assert_int_equal(objects, 0);
    assert_int_equal(sessions, 0);
    tc_tpm_close(tpm);
}

static void null_handle(void **state)
{
    (void)state;
    size_t n = 5;
    assert_int_equal(tc_tpm_flush_leftovers(NULL, &n), TC_ERR_INVALID_ARG);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tcti_kinds),
        cmocka_unit_test(flushes_leftovers),
        cmocka_unit_test(unblocks_and_keeps_own_keys),
        cmocka_unit_test(null_handle),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
