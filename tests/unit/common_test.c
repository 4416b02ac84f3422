/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/hashalg.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/reason.h"

static void reader_bounds(void **state)
{
    const uint8_t data[] = {1, 2, 3, 4, 5, 6, 7};
    struct tc_reader r;
    tc_reader_init(&r, data, sizeof(data));
    uint32_t v = 0xdeadbeef;
    assert_int_equal(tc_reader_u32le(&r, &v), 0);
    assert_int_equal(v, 0x04030201);
    assert_int_equal(tc_reader_u32be(&r, &v), TC_ERR_TRUNCATED);
    assert_int_equal(v, 0x04030201); /* untouched on failure */
    assert_int_equal(tc_reader_left(&r), 3);
    uint16_t w;
    assert_int_equal(tc_reader_u16be(&r, &w), 0);
    assert_int_equal(w, 0x0506);
    assert_int_equal(tc_reader_skip(&r, SIZE_MAX), TC_ERR_TRUNCATED);
    assert_int_equal(tc_reader_left(&r), 1);
    struct tc_reader sub;
    assert_int_equal(tc_reader_sub(&r, 2, &sub), TC_ERR_TRUNCATED);
    assert_int_equal(tc_reader_sub(&r, 1, &sub), 0);
    assert_int_equal(tc_reader_left(&sub), 1);
}

static void buf_cap(void **state)
{
    struct tc_buf b;
    tc_buf_init(&b, 8);
    assert_int_equal(tc_buf_put(&b, "abcd", 4), 0);
    assert_int_equal(tc_buf_putf(&b, "%d", 1234), 0);
    assert_string_equal((char *)b.data, "abcd1234");
    assert_int_equal(tc_buf_put(&b, "x", 1), TC_ERR_TOO_LARGE);
    tc_buf_release(&b);
    tc_buf_release(NULL);
}

static void hex_roundtrip(void **state)
{
    uint8_t out[4];
    size_t n;
    char s[9];
    assert_int_equal(tc_hex_decode("00fFa5", 6, out, sizeof(out), &n), 0);
    assert_int_equal(n, 3);
    tc_hex_encode(out, n, s);
    assert_string_equal(s, "00ffa5");
    assert_int_equal(tc_hex_decode("0g", 2, out, sizeof(out), &n), TC_ERR_FORMAT);
    assert_int_equal(tc_hex_decode("123", 3, out, sizeof(out), &n), TC_ERR_FORMAT);
    assert_int_equal(tc_hex_decode("0011223344", 10, out, sizeof(out), &n), TC_ERR_TOO_LARGE);
}

static void pcr_extend_known_value(void **state)
{
    /* sha256 extend of 32 zero bytes into a zero PCR. */
    struct tc_pcr_set s;
    tc_pcrs_init(&s);
    struct tc_pcr_bank *b = tc_pcrs_bank(&s, tc_hash_by_name("sha256"), true);
    uint8_t zero[32] = {0};
    assert_int_equal(tc_pcr_bank_extend(b, 10, zero), 0);
    char hex[65];
    tc_hex_encode(b->value[10], 32, hex);
    assert_string_equal(hex, "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b");
    assert_int_equal(tc_pcr_bank_extend(b, 24, zero), TC_ERR_INVALID_ARG);
}

static void pcr_selection(void **state)
{
    struct tc_pcr_set sel;
    assert_int_equal(tc_pcrs_parse_selection("sha256:0,1,7+sha1:all", &sel), 0);
    assert_int_equal(sel.nbanks, 2);
    assert_int_equal(sel.bank[0].mask, 0x83);
    assert_int_equal(sel.bank[1].mask, 0xffffff);
    assert_int_equal(tc_pcrs_parse_selection("sha256:24", &sel), TC_ERR_FORMAT);
    assert_int_equal(tc_pcrs_parse_selection("md5:1", &sel), TC_ERR_UNSUPPORTED);
    assert_int_equal(tc_pcrs_parse_selection("sha256:1,", &sel), TC_ERR_FORMAT);
}

static void pcr_json_roundtrip(void **state)
{
    struct tc_pcr_set s, t;
    tc_pcrs_init(&s);
    uint8_t v[20];
    memset(v, 0xab, sizeof(v));
    assert_int_equal(tc_pcrs_set(&s, tc_hash_by_name("sha1"), 3, v), 0);
    json_t *j = tc_pcrs_to_json(&s);
    assert_non_null(j);
    assert_int_equal(tc_pcrs_from_json(j, &t), 0);
    assert_int_equal(t.bank[0].mask, 1u << 3);
    assert_memory_equal(t.bank[0].value[3], v, 20);
    json_decref(j);
}

static void reason_sanitises(void **state)
{
    struct tc_reason why;
    tc_reason_clear(&why);
    assert_int_equal(tc_fail(&why, TC_ERR_FORMAT, "x.y", 3, "bad \x01\xff byte"), TC_ERR_FORMAT);
    assert_string_equal(why.detail, "bad ?? byte");
    json_t *j = tc_reason_to_json(&why);
    assert_int_equal(json_integer_value(json_object_get(j, "entry")), 3);
    assert_string_equal(json_string_value(json_object_get(j, "code")), "format");
    json_decref(j);
}

/* Base64: round trips of every length 1..40, and only canonical padded text accepted. */
static void b64_canonical(void **state)
{
    (void)state;
    uint8_t data[40], *dec = NULL;
    size_t n = 0;
    char *txt = NULL;
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 37 + 1);
    for (size_t len = 1; len <= sizeof(data); len++) {
        assert_int_equal(tc_b64_encode(data, len, &txt), 0);
        assert_int_equal(tc_b64_decode(txt, strlen(txt), len, &dec, &n), 0);
        assert_int_equal(n, len);
        assert_memory_equal(dec, data, len);
        free(dec);
        assert_int_equal(tc_b64_decode(txt, strlen(txt), len - 1, &dec, &n), TC_ERR_TOO_LARGE);
        free(txt);
    }
    static const char *const bad[] = {"",     "A",      "AB=",  "AB==C===", "QR==",     "QUJ=",
                                      "QU=J", "QUJD\n", "Q UJ", "====",     "QUJD====", "-_-_"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_not_equal(tc_b64_decode(bad[i], strlen(bad[i]), 64, &dec, &n), 0);
        assert_null(dec);
    }
    assert_int_equal(tc_b64_decode("QUI=", 4, 64, &dec, &n), 0); /* "AB" */
    assert_int_equal(n, 2);
    assert_memory_equal(dec, "AB", 2);
    free(dec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reader_bounds),      cmocka_unit_test(buf_cap),
        cmocka_unit_test(hex_roundtrip),      cmocka_unit_test(pcr_extend_known_value),
        cmocka_unit_test(b64_canonical),      cmocka_unit_test(pcr_selection),
        cmocka_unit_test(pcr_json_roundtrip), cmocka_unit_test(reason_sanitises),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
