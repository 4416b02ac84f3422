/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the coordinator sends the agent, parsed as hostile input: wrong types, huge strings,
 * bad hex, impossible PCR selections, negative counters, deep nesting, random mutations; the
 * VM list of a batch challenge. And the answer the agent builds, decoded back (a batch answer by
 * the coordinator's own parser, tc_batch_parse).
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

#include "trustcloud/batch.h"

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
    const char *seeds[] = {
        "{\"nonce\": \"00112233445566778899aabbccddeeff\", \"pcr_selection\": "
        "\"sha256:0,1,2,3,4,5,6,7,8,9,10\", \"ima_from\": 1234, \"want_eventlog\": false}",
        "{\"nonce\": \"0011\", \"pcr_selection\": \"sha256:0,10\", \"vms\": [{\"id\": \"vm1\", "
        "\"ima_from\": 3, \"want_eventlog\": true}, {\"id\": \"vm.2\"}, {\"id\": \"v3\", "
        "\"ima_from\": 0}], \"vm_pcr_selection\": \"sha256:0,1,10\"}",
    };
    uint8_t buf[512];
    unsigned x = 12345;
    size_t accepted = 0;
    for (int round = 0; round < 20000; round++) {
        const char *seed = seeds[round % 2];
        size_t len = strlen(seed);
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
            assert_true(req.nvms <= AGENT_MAX_BATCH_VMS && (req.nvms == 0 || req.has_vms));
            for (size_t i = 0; i < req.nvms; i++)
                assert_true(tc_batch_id_valid(req.vms[i].id) &&
                            req.vms[i].ima_from <= AGENT_MAX_IMA_FROM);
            assert_true(req.vm_selection.nbanks > 0);
            agent_quote_request_release(&req);
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

#define NONCE_SEL "\"nonce\": \"ab\", \"pcr_selection\": \"sha256:0,1,10\""

static void vm_requests(void **state)
{
    struct agent_quote_request req;
    struct tc_reason why;

    /* No "vms" (or null): the old request, no batch. */
    assert_int_equal(parse("{" NONCE_SEL "}", &req, &why), 0);
    assert_false(req.has_vms);
    assert_int_equal(req.nvms, 0);
    assert_null(req.vms);
    assert_int_equal(req.vm_selection.bank[0].mask, req.selection.bank[0].mask);
    agent_quote_request_release(&req);
    assert_int_equal(parse("{" NONCE_SEL ", \"vms\": null}", &req, &why), 0);
    assert_false(req.has_vms);
    agent_quote_request_release(&req);
    /* An empty list is a batch challenge with no VM. */
    assert_int_equal(parse("{" NONCE_SEL ", \"vms\": []}", &req, &why), 0);
    assert_true(req.has_vms);
    assert_int_equal(req.nvms, 0);
    agent_quote_request_release(&req);

    const char *text = "{" NONCE_SEL ", \"vms\": [{\"id\": \"vm1\", \"ima_from\": 17, "
                       "\"want_eventlog\": true, \"later\": {}}, {\"id\": \"Vm_2.x-y\"}, "
                       "{\"id\": \"vm3\", \"ima_from\": null, \"want_eventlog\": false}], "
                       "\"vm_pcr_selection\": \"sha256:0,1,2,3,4,5,6,7,8,9,10+sha1:10\"}";
    assert_int_equal(parse(text, &req, &why), 0);
    assert_true(req.has_vms);
    assert_int_equal(req.nvms, 3);
    assert_string_equal(req.vms[0].id, "vm1");
    assert_int_equal(req.vms[0].ima_from, 17);
    assert_true(req.vms[0].want_eventlog);
    assert_string_equal(req.vms[1].id, "Vm_2.x-y");
    assert_int_equal(req.vms[1].ima_from, 0);
    assert_false(req.vms[1].want_eventlog);
    assert_string_equal(req.vms[2].id, "vm3");
    assert_int_equal(req.selection.bank[0].mask, 0x403);
    assert_int_equal(req.vm_selection.nbanks, 2);
    assert_int_equal(req.vm_selection.bank[0].mask, 0x7ff);
    assert_ptr_equal(req.vm_selection.bank[1].alg, tc_hash_by_name("sha1"));
    agent_quote_request_release(&req);
    agent_quote_request_release(NULL);

    /* The largest challenge: 4096 VMs with 64-character ids and every member fits the body cap. */
    size_t cap = AGENT_MAX_REQUEST, off = 0;
    char *big = malloc(cap);
    assert_non_null(big);
    off += (size_t)snprintf(big + off, cap - off, "{" NONCE_SEL ", \"vms\": [");
    for (int i = 0; i < AGENT_MAX_BATCH_VMS; i++)
        off += (size_t)snprintf(big + off, cap - off,
                                "%s{\"id\": \"%060d%04d\", \"ima_from\": 100000000, "
                                "\"want_eventlog\": false}",
                                i ? ", " : "", 0, i);
    off += (size_t)snprintf(big + off, cap - off, "]}");
    assert_true(off < cap - 1);
    assert_int_equal(parse(big, &req, &why), 0);
    assert_int_equal(req.nvms, AGENT_MAX_BATCH_VMS);
    assert_int_equal(strlen(req.vms[4095].id), 64);
    assert_int_equal(req.vms[4095].ima_from, AGENT_MAX_IMA_FROM);
    agent_quote_request_release(&req);
    /* One more is refused. */
    off -= 2;
    off += (size_t)snprintf(big + off, cap - off, ", {\"id\": \"x\"}]}");
    assert_int_equal(parse(big, &req, &why), TC_ERR_TOO_LARGE);
    assert_string_equal(why.check, "request.vms");
    assert_null(req.vms);
    free(big);
}

static void hostile_vm_requests(void **state)
{
    static const struct {
        const char *text, *check;
        long entry;
    } cases[] = {
        {"{" NONCE_SEL ", \"vms\": {}}", "request.vms", -1},
        {"{" NONCE_SEL ", \"vms\": \"vm1\"}", "request.vms", -1},
        {"{" NONCE_SEL ", \"vms\": [\"vm1\"]}", "request.vms", 0},
        {"{" NONCE_SEL ", \"vms\": [{\"id\": \"a\"}, null]}", "request.vms", 1},
        {"{" NONCE_SEL ", \"vms\": [{}]}", "request.vms.id", 0},
        {"{" NONCE_SEL ", \"vms\": [{\"id\": 1}]}", "request.vms.id", 0},
        {"{" NONCE_SEL ", \"vms\": [{\"id\": \"\"}]}", "request.vms.id", 0},
        {"{" NONCE_SEL ", \"vms\": [{\"id\": \"a\"}, {\"id\": \"../etc\"}]}", "request.vms.id", 1},
        {"{" NONCE_SEL ", \"vms\": [{\"id\": \".\"}]}", "request.vms.id", 0},
        {"{" NONCE_SEL ", \"vms\": [{\"id\": \"..\"}]}", "request.vms.id", 0},
        {"{" NONCE_SEL ", \"vms\": [{\"id\": \"a b\"}]}", "request.vms.id", 0},
        {"{" NONCE_SEL ", \"vms\": [{\"id\": \"a\\u0000b\"}]}", "request.json",
         -1}, /* jansson refuses NUL */
        {"{" NONCE_SEL ", \"vms\": [{\"id\": \"vm\\u00e9\"}]}", "request.vms.id", 0},
        {"{" NONCE_SEL ", \"vms\": [{\"id\": "
         "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}]}",
         "request.vms.id", 0}, /* 65 characters */
        {"{" NONCE_SEL ", \"vms\": [{\"id\": \"a\"}, {\"id\": \"b\"}, {\"id\": \"a\"}]}",
         "request.vms.id", 2},
        {"{" NONCE_SEL ", \"vms\": [{\"id\": \"a\", \"ima_from\": -1}]}", "request.vms.ima_from",
         0},
        {"{" NONCE_SEL ", \"vms\": [{\"id\": \"a\", \"ima_from\": 100000001}]}",
         "request.vms.ima_from", 0},
        {"{" NONCE_SEL ", \"vms\": [{\"id\": \"a\", \"ima_from\": \"3\"}]}", "request.vms.ima_from",
         0},
        {"{" NONCE_SEL ", \"vms\": [{\"id\": \"a\", \"ima_from\": 1.5}]}", "request.vms.ima_from",
         0},
        {"{" NONCE_SEL ", \"vms\": [{\"id\": \"a\", \"want_eventlog\": 1}]}",
         "request.vms.want_eventlog", 0},
        {"{" NONCE_SEL ", \"vms\": [], \"vm_pcr_selection\": 5}", "request.vm_pcr_selection", -1},
        {"{" NONCE_SEL ", \"vms\": [], \"vm_pcr_selection\": \"\"}", "request.vm_pcr_selection",
         -1},
        {"{" NONCE_SEL ", \"vm_pcr_selection\": \"sha256:24\"}", "request.vm_pcr_selection", -1},
        {"{" NONCE_SEL ", \"vm_pcr_selection\": \"md5:1\"}", "request.vm_pcr_selection", -1},
        {"{" NONCE_SEL ", \"vm_pcr_selection\": \"sha256:\"}", "request.vm_pcr_selection", -1},
        {"{" NONCE_SEL ", \"vm_pcr_selection\": \"sha256:0;rm\"}", "request.vm_pcr_selection", -1},
        /* The host fields are still checked first. */
        {"{\"nonce\": \"ab\", \"pcr_selection\": 1, \"vms\": [{\"id\": \"a\"}]}",
         "request.pcr_selection", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct agent_quote_request req;
        struct tc_reason why;
        int rc = parse(cases[i].text, &req, &why);
        if (rc == 0 || strcmp(why.check, cases[i].check) != 0 || why.entry != cases[i].entry)
            fail_msg("case %zu (%s): rc %d check '%s' entry %ld, expected %s entry %ld", i,
                     cases[i].text, rc, why.check, why.entry, cases[i].check, cases[i].entry);
        assert_null(req.vms);
        assert_int_equal(req.nvms, 0);
        assert_false(req.has_vms);
        assert_int_equal(req.nonce_len, 0);
    }
}

/* A fake quote for VM i: distinct attest and signature bytes. */
static void fake_vm(struct agent_vm_evidence *ev, size_t i, bool quoted)
{
    char id[32];
    snprintf(id, sizeof(id), "vm-%zu", i);
    agent_vm_evidence_init(ev, id);
    if (!quoted) {
        ev->rc = TC_ERR_NOT_FOUND;
        snprintf(ev->check, sizeof(ev->check), "vm.not_running");
        snprintf(ev->error, sizeof(ev->error), "not running");
        return;
    }
    ev->quote.attest_len = 40 + i % 7;
    ev->quote.sig_len = 70 + i % 3;
    ev->quote.attest = malloc(ev->quote.attest_len);
    ev->quote.sig = malloc(ev->quote.sig_len);
    assert_non_null(ev->quote.attest);
    assert_non_null(ev->quote.sig);
    memset(ev->quote.attest, (int)(i & 0xff), ev->quote.attest_len);
    memset(ev->quote.sig, (int)((i >> 8) & 0xff), ev->quote.sig_len);
    uint8_t v[32];
    memset(v, (int)i, sizeof(v));
    assert_int_equal(tc_pcrs_set(&ev->quote.pcrs, tc_hash_by_name("sha256"), 10, v), 0);
    ev->ima_first = i;
    assert_int_equal(tc_buf_put(&ev->ima, "\x0a\x00\x00\x00", 4), 0);
    if (i % 2) {
        ev->eventlog = malloc(3);
        assert_non_null(ev->eventlog);
        memcpy(ev->eventlog, "EVL", 3);
        ev->eventlog_len = 3;
    }
}

/* The answer the agent builds is what the coordinator's parser accepts: every proof verifies
 * against the root, indices follow the quoted entries, error entries keep their check. */
static void batch_answers(void **state)
{
    static const size_t sizes[] = {1, 2, 3, 5, 8, 13, 100, 1000};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        struct agent_vm_evidence *ev = calloc(n, sizeof(*ev));
        assert_non_null(ev);
        size_t quoted = 0;
        for (size_t i = 0; i < n; i++) {
            bool q = n == 1 || i % 3 != 1; /* every third VM is not running */
            fake_vm(&ev[i], i, q);
            quoted += q;
        }
        struct tc_batch_tree *tree = NULL;
        assert_int_equal(agent_batch_tree(ev, n, &tree), 0);
        assert_non_null(tree);
        assert_int_equal(tc_batch_tree_count(tree), quoted);
        json_t *answer = json_object();
        assert_int_equal(agent_batch_answer(answer, ev, n, tree), 0);

        /* Through the wire format, then the coordinator's parser. */
        char *text = json_dumps(answer, JSON_COMPACT);
        json_t *back = json_loads(text, 0, NULL);
        assert_non_null(back);
        struct tc_batch *b = NULL;
        struct tc_reason why;
        tc_reason_clear(&why);
        if (tc_batch_parse(json_object_get(back, "batch"), json_object_get(back, "vms"), &b,
                           &why) != 0)
            fail_msg("n=%zu: %s: %s (entry %ld)", n, why.check, why.detail, why.entry);
        assert_true(b->present);
        assert_int_equal(b->count, quoted);
        assert_int_equal(b->nvms, n);
        uint8_t root[32];
        assert_int_equal(tc_batch_tree_root(tree, root), 0);
        assert_memory_equal(b->root, root, 32);
        size_t index = 0;
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(b->vms[i].id, ev[i].id);
            assert_int_equal(b->vms[i].quoted, ev[i].rc == 0);
            if (ev[i].rc != 0) {
                assert_string_equal(b->vms[i].check, "vm.not_running");
                assert_string_equal(b->vms[i].error, "not running");
                continue;
            }
            assert_int_equal(b->vms[i].index, index++);
            assert_int_equal(b->vms[i].attest_len, ev[i].quote.attest_len);
            assert_memory_equal(b->vms[i].attest, ev[i].quote.attest, ev[i].quote.attest_len);
            assert_int_equal(b->vms[i].nproof, tc_batch_proof_len(b->vms[i].index, quoted));
            assert_int_equal(json_integer_value(json_object_get(b->vms[i].ima, "first")), i);
            assert_int_equal(b->vms[i].eventlog != NULL, i % 2 == 1);
            struct tc_pcr_set pcrs;
            assert_int_equal(tc_pcrs_from_json(b->vms[i].pcrs, &pcrs), 0);
        }
        tc_batch_free(b);

        /* A proof that was tampered with no longer verifies. */
        json_t *vms = json_object_get(back, "vms");
        json_t *proof = json_object_get(json_array_get(vms, 0), "proof");
        if (json_array_size(proof) > 0) {
            json_array_set_new(proof, 0,
                               json_string("00000000000000000000000000000000"
                                           "00000000000000000000000000000000"));
            assert_int_not_equal(tc_batch_parse(json_object_get(back, "batch"), vms, &b, &why), 0);
            assert_string_equal(why.check, "batch.proof");
        }
        json_decref(back);
        free(text);
        json_decref(answer);
        tc_batch_tree_free(tree);
        for (size_t i = 0; i < n; i++)
            agent_vm_evidence_release(&ev[i]);
        free(ev);
    }

    /* No VM quoted: no tree, no "batch", only error entries (the host quote uses the nonce). */
    struct agent_vm_evidence ev[2];
    fake_vm(&ev[0], 0, false);
    fake_vm(&ev[1], 1, false);
    ev[1].check[0] = 0;
    ev[1].error[0] = 0;
    struct tc_batch_tree *tree = (struct tc_batch_tree *)1;
    assert_int_equal(agent_batch_tree(ev, 2, &tree), 0);
    assert_null(tree);
    json_t *answer = json_object();
    assert_int_equal(agent_batch_answer(answer, ev, 2, NULL), 0);
    assert_null(json_object_get(answer, "batch"));
    json_t *vms = json_object_get(answer, "vms");
    assert_int_equal(json_array_size(vms), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(vms, 1), "check")),
                        "vm.error");
    struct tc_batch *b = NULL;
    struct tc_reason why;
    assert_int_equal(tc_batch_parse(NULL, vms, &b, &why), 0);
    assert_false(b->present);
    tc_batch_free(b);
    json_decref(answer);
    /* A quoted entry without its tree is a caller's error, not a malformed answer. */
    agent_vm_evidence_release(&ev[0]);
    fake_vm(&ev[0], 0, true);
    answer = json_object();
    assert_int_equal(agent_batch_answer(answer, ev, 2, NULL), TC_ERR_INVALID_ARG);
    json_decref(answer);
    agent_vm_evidence_release(&ev[0]);
    agent_vm_evidence_release(&ev[1]);
    agent_vm_evidence_release(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_request),
        cmocka_unit_test(hostile_requests),
        cmocka_unit_test(huge_inputs),
        cmocka_unit_test(mutations),
        cmocka_unit_test(notices),
        cmocka_unit_test(base64),
        cmocka_unit_test(answer_roundtrip),
        cmocka_unit_test(vm_requests),
        cmocka_unit_test(hostile_vm_requests),
        cmocka_unit_test(batch_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
