/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sealing to PCRs under the EK and NV counters, against two real swtpm instances (two "hosts"):
 * round trip, PCR change, another TPM, every truncation and every single-byte change of a blob,
 * and counters that only go up.
 * With TC_SEAL_CORPUS_DIR set, also writes the blobs it seals there (the seed corpus of
 * fuzz/tpm_sealed.c).
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

#include <cmocka.h>
#include <tss2/tss2_esys.h>

#include "swtpm_fixture.h"
#include "tpm/tpm_internal.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/hashalg.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/tpm.h"
#include "trustcloud/tpm_seal.h"

static struct swtpm sw_a, sw_b;
static struct tc_tpm *tpm_a, *tpm_b;
static struct tc_tpm_key ek_a, ek_b;
static const uint8_t secret[32] = "0123456789abcdef-state-key-32-b";

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int group_setup(void **state)
{
    (void)state;
    if (system("command -v swtpm >/dev/null") != 0 || swtpm_new(&sw_a, "tc-seal-a") != 0 ||
        swtpm_new(&sw_b, "tc-seal-b") != 0) {
        fprintf(stderr, "swtpm not available\n");
        return -1;
    }
    if (tc_tpm_open(sw_a.tcti, &tpm_a) != 0 || tc_tpm_open(sw_b.tcti, &tpm_b) != 0 ||
        tc_tpm_ek_create(tpm_a, TC_KEY_ECC_P256, &ek_a) != 0 ||
        tc_tpm_ek_create(tpm_b, TC_KEY_ECC_P256, &ek_b) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tc_tpm_key_release(tpm_a, &ek_a);
    tc_tpm_key_release(tpm_b, &ek_b);
    tc_tpm_close(tpm_a);
    tc_tpm_close(tpm_b);
    swtpm_free(&sw_a);
    swtpm_free(&sw_b);
    return 0;
}

static void selection(const char *spec, struct tc_pcr_set *sel)
{
    assert_int_equal(tc_pcrs_parse_selection(spec, sel), 0);
}

/* Nothing but the EK stays loaded, no session survives. */
static void assert_clean(struct tc_tpm *tpm)
{
    size_t objects = 9, sessions = 9;
    assert_int_equal(tc_tpm_loaded_count(tpm, &objects, &sessions), 0);
    assert_int_equal(objects, 1);
    assert_int_equal(sessions, 0);
}

static void seal(struct tc_tpm *tpm, const struct tc_tpm_key *ek, const char *spec, uint8_t **blob,
                 size_t *len)
{
    static unsigned corpus_n;
    struct tc_pcr_set sel;
    selection(spec, &sel);
    assert_int_equal(tc_tpm_seal(tpm, ek, &sel, secret, sizeof(secret), blob, len), 0);
    assert_non_null(*blob);
    assert_true(*len > 100 && *len <= TC_TPM_SEAL_BLOB_MAX);
    const char *dir = getenv("TC_SEAL_CORPUS_DIR");
    if (dir != NULL) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/sealed-%s-%u", dir, tpm == tpm_a ? "a" : "b", corpus_n++);
        assert_int_equal(tc_file_write(path, *blob, *len, 0644), 0);
    }
}

static int unseal(struct tc_tpm *tpm, const struct tc_tpm_key *ek, const uint8_t *blob, size_t len)
{
    uint8_t out[TC_TPM_SEAL_MAX_DATA];
    size_t n = 99;
    int rc = tc_tpm_unseal(tpm, ek, blob, len, out, sizeof(out), &n);
    if (rc == 0) {
        assert_int_equal(n, sizeof(secret));
        assert_memory_equal(out, secret, n);
    } else {
        assert_int_equal(n, 0);
    }
    return rc;
}

static void round_trip(void **state)
{
    (void)state;
    uint8_t *blob = NULL;
    size_t len = 0;
    double t0 = now_ms();
    seal(tpm_a, &ek_a, "sha256:0,1,2,3,4,5,6,7", &blob, &len);
    double t1 = now_ms();
    assert_int_equal(unseal(tpm_a, &ek_a, blob, len), 0);
    double t2 = now_ms();
    printf("timing: seal %.1f ms, unseal %.1f ms, blob %zu bytes\n", t1 - t0, t2 - t1, len);
    /* Twice: unsealing consumes nothing. */
    assert_int_equal(unseal(tpm_a, &ek_a, blob, len), 0);
    assert_clean(tpm_a);

    /* The parsed parts say what was sealed to what. */
    struct tc_tpm_sealed s;
    assert_int_equal(tc_tpm_sealed_parse(blob, len, &s), 0);
    assert_int_equal(s.sel.nbanks, 1);
    assert_string_equal(s.sel.bank[0].alg->name, "sha256");
    assert_int_equal(s.sel.bank[0].mask, 0xff);
    assert_int_equal(s.policy_len, 32);
    assert_int_equal(s.parent_name_len, ek_a.name_len);
    assert_memory_equal(s.parent_name, ek_a.name, ek_a.name_len);
    /* The secret is nowhere in the blob in clear. */
    assert_null(memmem(blob, len, secret, 8));

    /* Several banks, and a buffer too small for the data. */
    uint8_t *multi = NULL;
    size_t mlen = 0;
    seal(tpm_a, &ek_a, "sha1:0,7+sha256:0,1,2,3,4,5,6,7+sha384:23", &multi, &mlen);
    assert_int_equal(unseal(tpm_a, &ek_a, multi, mlen), 0);
    uint8_t small[16];
    size_t n = 5;
    assert_int_equal(tc_tpm_unseal(tpm_a, &ek_a, multi, mlen, small, sizeof(small), &n),
                     TC_ERR_TOO_LARGE);
    assert_int_equal(n, 0);
    assert_clean(tpm_a);
    free(multi);
    free(blob);
}

static void bad_arguments(void **state)
{
    (void)state;
    struct tc_pcr_set sel, empty;
    uint8_t *blob = (uint8_t *)1, big[TC_TPM_SEAL_MAX_DATA + 1] = {0};
    size_t len = 7;
    selection("sha256:7", &sel);
    tc_pcrs_init(&empty);
    assert_int_equal(tc_tpm_seal(tpm_a, &ek_a, &sel, big, sizeof(big), &blob, &len),
                     TC_ERR_INVALID_ARG);
    assert_null(blob);
    assert_int_equal(len, 0);
    assert_int_equal(tc_tpm_seal(tpm_a, &ek_a, &sel, big, 0, &blob, &len), TC_ERR_INVALID_ARG);
    assert_int_equal(tc_tpm_seal(tpm_a, &ek_a, &empty, secret, 8, &blob, &len), TC_ERR_INVALID_ARG);
    struct tc_tpm_key unloaded;
    memset(&unloaded, 0, sizeof(unloaded));
    assert_int_equal(tc_tpm_seal(tpm_a, &unloaded, &sel, secret, 8, &blob, &len),
                     TC_ERR_INVALID_ARG);
}

static void pcr_change_refused(void **state)
{
    (void)state;
    uint8_t *blob = NULL;
    size_t len = 0;
    /* PCR 16 (debug) so that the other tests' PCRs 0-7 stay as they are. */
    seal(tpm_a, &ek_a, "sha256:0,1,2,3,4,5,6,7,16", &blob, &len);
    assert_int_equal(unseal(tpm_a, &ek_a, blob, len), 0);
    uint8_t digest[32];
    memset(digest, 0x5a, sizeof(digest));
    assert_int_equal(tc_tpm_pcr_extend(tpm_a, 16, tc_hash_by_name("sha256"), digest), 0);
    assert_int_equal(unseal(tpm_a, &ek_a, blob, len), TC_ERR_POLICY);
    /* An extend in a bank that is not selected changes nothing. */
    uint8_t *blob2 = NULL;
    size_t len2 = 0;
    seal(tpm_a, &ek_a, "sha256:16", &blob2, &len2);
    assert_int_equal(tc_tpm_pcr_extend(tpm_a, 16, tc_hash_by_name("sha1"), digest), 0);
    assert_int_equal(unseal(tpm_a, &ek_a, blob2, len2), 0);
    assert_clean(tpm_a);
    free(blob);
    free(blob2);
}

static void other_tpm_refused(void **state)
{
    (void)state;
    uint8_t *blob = NULL;
    size_t len = 0;
    seal(tpm_a, &ek_a, "sha256:0,1,2,3,4,5,6,7", &blob, &len);
    /* Both swtpms have the same (all-zero) PCRs 0-7: only the TPM differs. */
    assert_int_equal(unseal(tpm_b, &ek_b, blob, len), TC_ERR_MISMATCH);
    /* Claiming B's EK as the parent does not help: B cannot check the blob's integrity. */
    struct tc_tpm_sealed s;
    assert_int_equal(tc_tpm_sealed_parse(blob, len, &s), 0);
    assert_int_equal(ek_a.name_len, ek_b.name_len);
    uint8_t *forged = malloc(len);
    memcpy(forged, blob, len);
    uint8_t *at = memmem(forged, len, ek_a.name, ek_a.name_len);
    assert_non_null(at);
    memcpy(at, ek_b.name, ek_b.name_len);
    assert_int_equal(unseal(tpm_b, &ek_b, forged, len), TC_ERR_MISMATCH);
    assert_clean(tpm_b);
    /* A blob sealed on B does not open on A either. */
    uint8_t *blob_b = NULL;
    size_t len_b = 0;
    seal(tpm_b, &ek_b, "sha256:0,1,2,3,4,5,6,7", &blob_b, &len_b);
    assert_int_equal(unseal(tpm_b, &ek_b, blob_b, len_b), 0);
    assert_int_equal(unseal(tpm_a, &ek_a, blob_b, len_b), TC_ERR_MISMATCH);
    free(blob_b);
    free(forged);
    free(blob);
}

static bool is_format_error(int rc)
{
    return rc == TC_ERR_FORMAT || rc == TC_ERR_TRUNCATED || rc == TC_ERR_TRAILING ||
           rc == TC_ERR_TOO_LARGE || rc == TC_ERR_UNSUPPORTED;
}

static void damaged_blobs(void **state)
{
    (void)state;
    uint8_t *blob = NULL;
    size_t len = 0;
    struct tc_tpm_sealed s;
    seal(tpm_a, &ek_a, "sha256:0,1,2,3,4,5,6,7", &blob, &len);
    uint8_t *copy = malloc(len + 1);

    /* Every truncation is a format error, found without the TPM. */
    for (size_t n = 0; n < len; n++) {
        int rc = tc_tpm_sealed_parse(blob, n, &s);
        if (!is_format_error(rc))
            fail_msg("truncation to %zu bytes: %d", n, rc);
    }
    assert_int_equal(unseal(tpm_a, &ek_a, blob, len / 2), TC_ERR_TRUNCATED);
    memcpy(copy, blob, len);
    copy[len] = 0;
    assert_int_equal(tc_tpm_sealed_parse(copy, len + 1, &s), TC_ERR_TRAILING);
    copy[5] = 2; /* version */
    assert_int_equal(tc_tpm_sealed_parse(copy, len, &s), TC_ERR_UNSUPPORTED);
    copy[5] = 1;
    copy[0] = 'X';
    assert_int_equal(tc_tpm_sealed_parse(copy, len, &s), TC_ERR_FORMAT);
    uint8_t *huge = calloc(1, TC_TPM_SEAL_BLOB_MAX + 1);
    memcpy(huge, blob, len);
    assert_int_equal(tc_tpm_sealed_parse(huge, TC_TPM_SEAL_BLOB_MAX + 1, &s), TC_ERR_TOO_LARGE);
    free(huge);

    /* Every single-byte change is refused, by the parser or by the TPM, and never unseals. */
    double t0 = now_ms();
    size_t by_parser = 0, by_tpm = 0;
    for (size_t i = 0; i < len; i++) {
        memcpy(copy, blob, len);
        copy[i] ^= 0x41;
        int prc = tc_tpm_sealed_parse(copy, len, &s);
        int rc = unseal(tpm_a, &ek_a, copy, len);
        if (rc == 0)
            fail_msg("byte %zu changed and the blob still unseals", i);
        if (prc != 0) {
            assert_int_equal(rc, prc);
            by_parser++;
        } else {
            /* Parent name, PCR selection or the TPM's own integrity check. */
            if (rc != TC_ERR_MISMATCH && rc != TC_ERR_POLICY && rc != TC_ERR_TPM)
                fail_msg("byte %zu: unexpected %d", i, rc);
            by_tpm++;
        }
    }
    printf("damaged: %zu byte changes, %zu refused by the parser, %zu by the checks and the TPM "
           "(%.0f ms)\n",
           len, by_parser, by_tpm, now_ms() - t0);
    assert_true(by_parser > 0 && by_tpm > 0);
    assert_clean(tpm_a);
    free(copy);
    free(blob);
}

#define IDX TC_TPM_NV_VTPM_COUNTER

static void counters(void **state)
{
    (void)state;
    uint64_t v = 7, v1, v2;
    assert_int_equal(tc_tpm_nv_counter_read(tpm_a, IDX, &v), TC_ERR_NOT_FOUND);
    assert_int_equal(v, 0);
    assert_int_equal(tc_tpm_nv_counter_increment(tpm_a, IDX), TC_ERR_NOT_FOUND);
    assert_int_equal(tc_tpm_nv_counter_define(tpm_a, IDX), 0);
    assert_int_equal(tc_tpm_nv_counter_read(tpm_a, IDX, &v1), 0);
    assert_int_equal(tc_tpm_nv_counter_increment(tpm_a, IDX), 0);
    assert_int_equal(tc_tpm_nv_counter_read(tpm_a, IDX, &v2), 0);
    assert_int_equal(v2, v1 + 1);
    /* Defining again keeps the counter and its value. */
    assert_int_equal(tc_tpm_nv_counter_define(tpm_a, IDX), 0);
    assert_int_equal(tc_tpm_nv_counter_read(tpm_a, IDX, &v), 0);
    assert_int_equal(v, v2);
    double t0 = now_ms();
    for (int i = 0; i < 50; i++)
        assert_int_equal(tc_tpm_nv_counter_increment(tpm_a, IDX), 0);
    printf("timing: NV counter increment %.2f ms\n", (now_ms() - t0) / 50);
    assert_int_equal(tc_tpm_nv_counter_read(tpm_a, IDX, &v), 0);
    assert_int_equal(v, v2 + 50);

    /* Deleting and redefining it cannot bring an older value back. */
    ESYS_TR nv = ESYS_TR_NONE;
    assert_int_equal(
        Esys_TR_FromTPMPublic(tpm_a->esys, IDX, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv),
        TSS2_RC_SUCCESS);
    assert_int_equal(Esys_NV_UndefineSpace(tpm_a->esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD,
                                           ESYS_TR_NONE, ESYS_TR_NONE),
                     TSS2_RC_SUCCESS);
    assert_int_equal(tc_tpm_nv_counter_read(tpm_a, IDX, &v1), TC_ERR_NOT_FOUND);
    assert_int_equal(tc_tpm_nv_counter_define(tpm_a, IDX), 0);
    assert_int_equal(tc_tpm_nv_counter_read(tpm_a, IDX, &v1), 0);
    printf("counter before deletion %llu, after redefinition %llu\n", (unsigned long long)v,
           (unsigned long long)v1);
    assert_true(v1 > v);

    /* Something else at a counter's index is refused, not used. */
    const uint32_t other = IDX + 1;
    TPM2B_AUTH auth = {.size = 0};
    TPM2B_NV_PUBLIC pub = {
        .nvPublic = {.nvIndex = other,
                     .nameAlg = TPM2_ALG_SHA256,
                     .attributes = TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD |
                                   TPMA_NV_AUTHWRITE | TPMA_NV_NO_DA,
                     .dataSize = 8},
    };
    assert_int_equal(Esys_NV_DefineSpace(tpm_a->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD,
                                         ESYS_TR_NONE, ESYS_TR_NONE, &auth, &pub, &nv),
                     TSS2_RC_SUCCESS);
    Esys_TR_Close(tpm_a->esys, &nv);
    assert_int_equal(tc_tpm_nv_counter_define(tpm_a, other), TC_ERR_MISMATCH);
    assert_int_equal(tc_tpm_nv_counter_read(tpm_a, other, &v), TC_ERR_MISMATCH);
    assert_int_equal(tc_tpm_nv_counter_increment(tpm_a, other), TC_ERR_MISMATCH);
    assert_int_equal(tc_tpm_nv_counter_define(tpm_a, 0x81000001u), TC_ERR_INVALID_ARG);
    assert_clean(tpm_a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),         cmocka_unit_test(bad_arguments),
        cmocka_unit_test(pcr_change_refused), cmocka_unit_test(other_tpm_refused),
        cmocka_unit_test(damaged_blobs),      cmocka_unit_test(counters),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
