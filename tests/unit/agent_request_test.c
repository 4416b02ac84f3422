/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the coordinator sends the agent, parsed as hostile input: wrong types, huge strings,
 * bad hex, impossible PCR selections, negative counters, deep nesting, random mutations. And
 * the answer the agent builds, decoded back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The agent is an executable, not a library: its modules are compiled into the test. */
#include "agent/agent_config.c"
#include "agent/agent_request.c"

static int parse(const char *text, struct agent_quote_request *req, struct tc_reason *why)
{
    tc_reason_clear(why);
    return agent_quote_request_parse((const uint8_t *)text, strlen(text), req, why);
}

static void valid_request(void **state)
{
    struct agent_quote_request req;
    struct tc_reason why;
    const char *text = "{\"nonce\": "
                       "\"00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\", "
                       "\"pcr_selection\": \"sha256:0,1,2,3,4,5,6,7,8,9,10\", \"ima_from\": 1234, "
                       "\"want_eventlog\": true, \"future_field\": [1]}";
    assert_int_equal(parse(text, &req, &why), 0);
    assert_int_equal(req.nonce_len, 32);
    assert_int_equal(req.nonce[0], 0x00);
    assert_int_equal(req.nonce[31], 0xff);
    assert_int_equal(req.selection.nbanks, 1);
    assert_ptr_equal(req.selection.bank[0].alg, tc_hash_by_name("sha256"));
    assert_int_equal(req.selection.bank[0].mask, 0x7ff);
    assert_int_equal(req.ima_from, 1234);
    assert_true(req.want_eventlog);

    /* ima_from and want_eventlog are optional; two banks; all 24 PCRs. */
    assert_int_equal(
        parse("{\"nonce\": \"ab\", \"pcr_selection\": \"sha1:all+sha256:0,23\"}", &req, &why), 0);
    assert_int_equal(req.ima_from, 0);
    assert_false(req.want_eventlog);
    assert_int_equal(req.selection.nbanks, 2);
    assert_int_equal(req.selection.bank[0].mask, 0xffffff);
    assert_int_equal(req.selection.bank[1].mask, (1u << 23) | 1u);
    assert_int_equal(parse("{\"nonce\": \"ab\", \"pcr_selection\": \"sha256:0\", \"ima_from\": "
                           "null, \"want_eventlog\": null}",
                           &req, &why),
                     0);
    /* The largest nonce a TPM takes here: 64 bytes. */
    char big[300];
    snprintf(big, sizeof(big), "{\"nonce\": \"%0128d\", \"pcr_selection\": \"sha256:0\"}", 0);
    assert_int_equal(parse(big, &req, &why), 0);
    assert_int_equal(req.nonce_len, 64);
}

static void hostile_requests(void **state)
{
    static const struct {
        const char *text, *check;
    } cases[] = {
        {"", "request.json"},
        {"not json", "request.json"},
        {"[1, 2]", "request.json"},
        {"\"nonce\"", "request.json"},
        {"{\"nonce\": \"ab\", \"nonce\": \"cd\", \"pcr_selection\": \"sha256:0\"}", "request.json"},
        {"{\"pcr_selection\": \"sha256:0\"}", "request.nonce"},
        {"{\"nonce\": 12, \"pcr_selection\": \"sha256:0\"}", "request.nonce"},
        {"{\"nonce\": null, \"pcr_selection\": \"sha256:0\"}", "request.nonce"},
        {"{\"nonce\": [\"ab\"], \"pcr_selection\": \"sha256:0\"}", "request.nonce"},
        {"{\"nonce\": \"\", \"pcr_selection\": \"sha256:0\"}", "request.nonce"},
        {"{\"nonce\": \"abc\", \"pcr_selection\": \"sha256:0\"}", "request.nonce"},
        {"{\"nonce\": \"zz\", \"pcr_selection\": \"sha256:0\"}", "request.nonce"},
        {"{\"nonce\": \"0x00\", \"pcr_selection\": \"sha256:0\"}", "request.nonce"},
        {"{\"nonce\": \"ab\\u0000cd\", \"pcr_selection\": \"sha256:0\"}", "request.json"}, /* NUL */
        {"{\"nonce\": \"ab\"}", "request.pcr_selection"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": 0}", "request.pcr_selection"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": {\"sha256\": [0]}}", "request.pcr_selection"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"\"}", "request.pcr_selection"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"sha256:\"}", "request.pcr_selection"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"sha256:24\"}", "request.pcr_selection"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": "
         "\"sha256:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24\"}",
         "request.pcr_selection"}, /* 25 PCRs */
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"sha256:4294967296\"}", "request.pcr_selection"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"sha256:-1\"}", "request.pcr_selection"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"sha256: 1\"}", "request.pcr_selection"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"md5:0\"}", "request.pcr_selection"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"SHA256:0\"}", "request.pcr_selection"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"sha256:0\\u0000\"}", "request.json"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"sha1:0+sha256:0+sha384:0+sha512:0+sm3_256:0+"
         "sha3_256:0\"}",
         "request.pcr_selection"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"sha256:0\", \"ima_from\": -1}",
         "request.ima_from"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"sha256:0\", \"ima_from\": 1.5}",
         "request.ima_from"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"sha256:0\", \"ima_from\": \"5\"}",
         "request.ima_from"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"sha256:0\", \"ima_from\": 9223372036854775807}",
         "request.ima_from"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"sha256:0\", \"ima_from\": "
         "99999999999999999999999}",
         "request.json"}, /* beyond jansson's integers */
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"sha256:0\", \"want_eventlog\": \"true\"}",
         "request.want_eventlog"},
        {"{\"nonce\": \"ab\", \"pcr_selection\": \"sha256:0\", \"want_eventlog\": 1}",
         "request.want_eventlog"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct agent_quote_request req;
        struct tc_reason why;
        int rc = parse(cases[i].text, &req, &why);
        if (rc == 0 || strcmp(why.check, cases[i].check) != 0)
            fail_msg("case %zu (%s): rc %d check '%s', expected %s", i, cases[i].text, rc,
                     why.check, cases[i].check);
        /* A refused request leaves nothing usable behind. */
        assert_int_equal(req.nonce_len, 0);
        assert_int_equal(req.selection.nbanks, 0);
        json_t *e = agent_error_json(&why);
        assert_non_null(e);
        assert_string_equal(json_string_value(json_object_get(e, "check")), cases[i].check);
        json_decref(e);
    }
}

static void huge_inputs(void **state)
{
    struct agent_quote_request req;
    struct tc_reason why;
    /* A body above the cap is refused before JSON parsing. */
    size_t n = AGENT_MAX_REQUEST + 100;
    char *text = malloc(n + 1);
    assert_non_null(text);
    memset(text, 'a', n);
    memcpy(text, "{\"nonce\": \"", 11);
    memcpy(text + n - 2, "\"}", 2);
    text[n] = 0;
    assert_int_equal(parse(text, &req, &why), TC_ERR_TOO_LARGE);
    assert_string_equal(why.check, "request.body");
    /* Huge strings below the cap: nonce and selection bounded on their own. */
    n = AGENT_MAX_REQUEST - 100;
    memset(text, 'a', n);
    memcpy(text, "{\"nonce\": \"", 11);
    memcpy(text + n - 2, "\"}", 2);
    text[n] = 0;
    assert_int_not_equal(parse(text, &req, &why), 0);
    assert_string_equal(why.check, "request.nonce");
    snprintf(text, 64, "{\"nonce\": \"00\", \"pcr_selection\": \"sha256:");
    size_t off = strlen(text);
    for (int i = 0; i < 2000; i++)
        off += (size_t)sprintf(text + off, "%d,", i % 24);
    sprintf(text + off, "0\"}");
    assert_int_not_equal(parse(text, &req, &why), 0);
    assert_string_equal(why.check, "request.pcr_selection");
    /* Deep nesting: refused by the JSON parser, no crash. */
    off = 0;
    for (int i = 0; i < 20000; i++)
        text[off++] = '[';
    text[off] = 0;
    assert_int_not_equal(parse(text, &req, &why), 0);
    free(text);
}

/* Random byte mutations of a valid request never crash the parser (run it under ASan). */
static void mutations(void **state)
{
    const char *seed = "{\"nonce\": \"00112233445566778899aabbccddeeff\", \"pcr_selection\": "
                       "\"sha256:0,1,2,3,4,5,6,7,8,9,10\", \"ima_from\": 1234, "
                       "\"want_eventlog\": false}";
    size_t len = strlen(seed);
    uint8_t buf[512];
    unsigned x = 12345;
    size_t accepted = 0;
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, seed, len);
        int flips = 1 + round % 4;
        for (int k = 0; k < flips; k++) {
            x = x * 1103515245u + 12345u;
            buf[(x >> 8) % len] = (uint8_t)(x >> 20);
        }
        struct agent_quote_request req;
        struct tc_reason why;
        tc_reason_clear(&why);
        if (agent_quote_request_parse(buf, len, &req, &why) == 0) {
            accepted++;
            assert_true(req.nonce_len >= 1 && req.nonce_len <= AGENT_MAX_NONCE);
            assert_true(req.ima_from <= AGENT_MAX_IMA_FROM);
        } else {
            assert_true(why.check[0] != 0);
        }
    }
    assert_true(accepted > 0);
}

static void notices(void **state)
{
    struct agent_notice n;
    struct tc_reason why;
    const char *ok = "{\"seq\": 42, \"ts\": \"2024-01-01T00:00:00Z\", \"node_id\": \"n2\", "
                     "\"old_state\": \"trusted\", \"new_state\": \"untrusted\", \"reason\": "
                     "{\"check\": \"ima.policy.not_in_policy\", \"entry\": 21, \"detail\": \"x\"}}";
    assert_int_equal(agent_notice_parse((const uint8_t *)ok, strlen(ok), &n, &why), 0);
    assert_string_equal(n.node_id, "n2");
    assert_string_equal(n.new_state, "untrusted");
    assert_string_equal(n.old_state, "trusted");
    assert_int_equal(n.seq, 42);
    assert_string_equal(n.check, "ima.policy.not_in_policy");

    static const char *const bad[] = {
        "{}",
        "{\"node_id\": \"n2\"}",
        "{\"node_id\": \"../etc\", \"new_state\": \"untrusted\"}",
        "{\"node_id\": \"\", \"new_state\": \"untrusted\"}",
        "{\"node_id\": 5, \"new_state\": \"untrusted\"}",
        ("{\"node_id\": \"n2\", \"new_state\": "
         "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}"),
        "{\"node_id\": \"n2\", \"new_state\": \"untrusted\", \"seq\": -3}",
        "{\"node_id\": \"n2\", \"new_state\": \"untrusted\", \"seq\": \"3\"}",
        "[\"n2\"]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tc_reason_clear(&why);
        if (agent_notice_parse((const uint8_t *)bad[i], strlen(bad[i]), &n, &why) == 0)
            fail_msg("notice %zu accepted: %s", i, bad[i]);
        assert_int_equal(n.node_id[0], 0);
    }
    /* An unprintable check is sanitised for the log. */
    const char *odd = "{\"node_id\": \"n3\", \"new_state\": \"unreachable\", \"reason\": "
                      "{\"check\": \"a\\nb\"}}";
    assert_int_equal(agent_notice_parse((const uint8_t *)odd, strlen(odd), &n, &why), 0);
    assert_string_equal(n.check, "a?b");
    assert_int_equal(n.seq, -1);
}

static void base64(void **state)
{
    uint8_t in[100], out[100];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 37 + 5);
    for (size_t len = 0; len <= sizeof(in); len++) {
        char *s = NULL;
        size_t n = 0;
        assert_int_equal(agent_b64_encode(in, len, &s), 0);
        assert_int_equal(strlen(s), 4 * ((len + 2) / 3));
        assert_int_equal(agent_b64_decode(s, strlen(s), out, sizeof(out), &n), 0);
        assert_int_equal(n, len);
        assert_memory_equal(in, out, len);
        if (len > 0)
            assert_int_equal(agent_b64_decode(s, strlen(s), out, len - 1, &n), TC_ERR_TOO_LARGE);
        free(s);
    }
    size_t n;
    static const char *const bad[] = {
        "abc", "ab=c", "a===", "ab c", "ab\ncd==", "====", "ab-_", "AAAA====", "=AAA"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (agent_b64_decode(bad[i], strlen(bad[i]), out, sizeof(out), &n) == 0)
            fail_msg("base64 '%s' accepted", bad[i]);
}

static void answer_roundtrip(void **state)
{
    struct tc_pcr_set pcrs;
    uint8_t v[32];
    memset(v, 0xab, sizeof(v));
    tc_pcrs_init(&pcrs);
    assert_int_equal(tc_pcrs_set(&pcrs, tc_hash_by_name("sha256"), 10, v), 0);
    const uint8_t attest[] = {1, 2, 3}, sig[] = {4, 5}, ima[] = {10, 0, 0, 0}, ev[] = {9};
    json_t *a = NULL;
    assert_int_equal(agent_quote_answer(attest, sizeof(attest), sig, sizeof(sig), &pcrs, NULL, 0, 7,
                                        ima, sizeof(ima), &a),
                     0);
    assert_string_equal(json_string_value(json_object_get(a, "attest")), "AQID");
    assert_string_equal(json_string_value(json_object_get(a, "signature")), "BAU=");
    assert_null(json_object_get(a, "eventlog"));
    json_t *im = json_object_get(a, "ima");
    assert_int_equal(json_integer_value(json_object_get(im, "first")), 7);
    assert_string_equal(json_string_value(json_object_get(im, "list")), "CgAAAA==");
    struct tc_pcr_set back;
    assert_int_equal(tc_pcrs_from_json(json_object_get(a, "pcrs"), &back), 0);
    assert_memory_equal(tc_pcrs_bank_const(&back, tc_hash_by_name("sha256"))->value[10], v, 32);
    json_decref(a);
    /* With a boot log and an empty IMA list. */
    assert_int_equal(agent_quote_answer(attest, sizeof(attest), sig, sizeof(sig), &pcrs, ev,
                                        sizeof(ev), 0, NULL, 0, &a),
                     0);
    assert_string_equal(json_string_value(json_object_get(a, "eventlog")), "CQ==");
    assert_string_equal(json_string_value(json_object_get(json_object_get(a, "ima"), "list")), "");
    json_decref(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_request),    cmocka_unit_test(hostile_requests),
        cmocka_unit_test(huge_inputs),      cmocka_unit_test(mutations),
        cmocka_unit_test(notices),          cmocka_unit_test(base64),
        cmocka_unit_test(answer_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
