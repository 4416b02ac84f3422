/* SPDX-License-Identifier: Apache-2.0 */
/* Coordinator building blocks: settings table, request validation (hostile ids, URLs, JSON size
 * and depth, base64), IMA replay state serialization. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/coord.h"
#include "trustcloud/error.h"
#include "trustcloud/hashalg.h"

static int load_text(const char *text, struct coord_settings *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    int rc = tc_config_load_string(text, strlen(text), "c.conf", "/etc/tc", coord_settings_table, s,
                                   err, errlen);
    return rc;
}

static void settings_defaults_and_bounds(void **state)
{
    struct coord_settings s;
    char err[256];
    assert_int_equal(load_text("[coordinator]\nca_dir = ca\n", &s, err, sizeof(err)), 0);
    assert_int_equal(s.interval_ms, 2000);
    assert_int_equal(s.unreachable_after, 3);
    assert_false(s.allow_ek_without_cert);
    assert_false(s.load_test_allow_software_aks);
    assert_int_equal(s.approval, COORD_APPROVAL_AUTO);
    assert_string_equal(s.ca_dir, "/etc/tc/ca"); /* relative to the file */
    assert_string_equal(s.pcr_selection, "sha256:0,1,2,3,4,5,6,7,8,9,10");
    /* Connection limits and how they reach the HTTPS server. */
    assert_int_equal(s.max_connections, 1024);
    assert_int_equal(s.max_unauthenticated, 0);
    assert_int_equal(s.max_unauthenticated_per_address, 16);
    assert_int_equal(s.handshake_timeout_ms, 5000);
    assert_int_equal(s.header_timeout_ms, 10000);
    assert_int_equal(s.idle_timeout_ms, 60000);
    struct tc_httpd_config hc = {0};
    coord_settings_httpd_limits(&s, &hc);
    assert_int_equal(hc.max_connections, 1024);
    assert_int_equal(hc.max_unauth, 0);
    assert_int_equal(hc.max_unauth_per_addr, 16);
    assert_int_equal(hc.handshake_timeout_s, 5);
    assert_int_equal(hc.header_timeout_s, 10);
    assert_int_equal(hc.idle_timeout_s, 60);
    coord_settings_release(&s);
    assert_int_equal(load_text("[coordinator]\nmax_unauthenticated_per_address = 0\n"
                               "header_timeout = 1500ms\nmax_connections = 4096\n",
                               &s, err, sizeof(err)),
                     0);
    coord_settings_httpd_limits(&s, &hc);
    assert_int_equal(hc.max_unauth_per_addr, 0); /* off */
    assert_int_equal(hc.header_timeout_s, 2);    /* rounded up */
    assert_int_equal(hc.max_connections, 4096);
    coord_settings_release(&s);
    assert_int_equal(load_text("[coordinator]\nmax_connections = 8\n", &s, err, sizeof(err)),
                     TC_ERR_FORMAT);
    coord_settings_release(&s);
    assert_int_equal(load_text("[coordinator]\nhandshake_timeout = 100ms\n", &s, err, sizeof(err)),
                     TC_ERR_FORMAT);
    coord_settings_release(&s);
    assert_int_equal(
        load_text("[coordinator]\nmax_unauthenticated_per_address = -1\n", &s, err, sizeof(err)),
        TC_ERR_FORMAT);
    coord_settings_release(&s);

    assert_int_equal(load_text("[coordinator]\nnope = 1\n", &s, err, sizeof(err)), TC_ERR_FORMAT);
    assert_non_null(strstr(err, "c.conf:2"));
    coord_settings_release(&s);
    assert_int_equal(load_text("[coordinator]\ninterval = 10ms\n", &s, err, sizeof(err)),
                     TC_ERR_FORMAT);
    coord_settings_release(&s);
    assert_int_equal(load_text("[coordinator]\napproval = sometimes\n", &s, err, sizeof(err)),
                     TC_ERR_FORMAT);
    coord_settings_release(&s);
    assert_int_equal(load_text("[coordinator]\nunreachable_after = 0\n", &s, err, sizeof(err)),
                     TC_ERR_FORMAT);
    coord_settings_release(&s);
    assert_int_equal(load_text("[coordinator]\nport = 70000\n", &s, err, sizeof(err)),
                     TC_ERR_FORMAT);
    coord_settings_release(&s);
    assert_int_equal(
        load_text("[coordinator]\napproval = manual\ninterval = 500ms\n", &s, err, sizeof(err)), 0);
    assert_int_equal(s.approval, COORD_APPROVAL_MANUAL);
    assert_int_equal(s.interval_ms, 500);
    coord_settings_release(&s);
}

static void settings_cross_checks(void **state)
{
    struct coord_settings s;
    char err[256];
    FILE *f = fopen("coord_unit_test.conf", "w");
    assert_non_null(f);
    fputs("[coordinator]\nport = 0\n", f);
    fclose(f);
    memset(&s, 0, sizeof(s));
    assert_int_equal(coord_settings_load("coord_unit_test.conf", &s, err, sizeof(err)),
                     TC_ERR_FORMAT);
    assert_non_null(strstr(err, "ca_dir"));
    coord_settings_release(&s);
    /* The store URI: SQLite or PostgreSQL, never a password in it (the URI gets logged). */
    static const struct {
        const char *db;
        int rc;
    } dbs[] = {
        {"postgres://x", 0},
        {"postgresql:///tc?host=/run/postgresql&user=coord", 0},
        {"postgresql://coord@db.example:5433/tc?sslmode=verify-full", 0},
        {"postgresql://coord:s3cret@db.example/tc", TC_ERR_FORMAT},
        {"postgresql:///tc?host=/run/postgresql&password=s3cret", TC_ERR_FORMAT},
        {"postgres://db/tc?password=s3cret", TC_ERR_FORMAT},
        {"mysql://db/tc", TC_ERR_FORMAT},
        {"sqlite:", TC_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
        f = fopen("coord_unit_test.conf", "w");
        fprintf(f, "[coordinator]\nca_dir = x\ndb = %s\n", dbs[i].db);
        fclose(f);
        memset(&s, 0, sizeof(s));
        assert_int_equal(coord_settings_load("coord_unit_test.conf", &s, err, sizeof(err)),
                         dbs[i].rc);
        if (dbs[i].rc != 0)
            assert_null(strstr(err, "s3cret"));
        coord_settings_release(&s);
    }
    f = fopen("coord_unit_test.conf", "w");
    fputs("[coordinator]\nca_dir = x\npcr_selection = sha999:0\n", f);
    fclose(f);
    memset(&s, 0, sizeof(s));
    assert_int_equal(coord_settings_load("coord_unit_test.conf", &s, err, sizeof(err)),
                     TC_ERR_FORMAT);
    coord_settings_release(&s);
    f = fopen("coord_unit_test.conf", "w");
    fputs("[coordinator]\nca_dir = x\nmax_connections = 100\nmax_unauthenticated = 101\n", f);
    fclose(f);
    memset(&s, 0, sizeof(s));
    assert_int_equal(coord_settings_load("coord_unit_test.conf", &s, err, sizeof(err)),
                     TC_ERR_FORMAT);
    assert_non_null(strstr(err, "max_unauthenticated"));
    coord_settings_release(&s);
    remove("coord_unit_test.conf");
}

static void node_ids(void **state)
{
    assert_true(coord_valid_node_id("n1", 2));
    assert_true(coord_valid_node_id("a.b_c-D9", 8));
    char max[65];
    memset(max, 'x', 64);
    max[64] = 0;
    assert_true(coord_valid_node_id(max, 64));
    assert_false(coord_valid_node_id(max, 65));
    assert_false(coord_valid_node_id("", 0));
    assert_false(coord_valid_node_id(NULL, 0));
    static const char *const hostile[] = {
        "a'; DROP TABLE nodes;--",
        "a\"b",
        "a/b",
        "../etc/passwd",
        "a\\b",
        "a b",
        "a%2Fb",
        "a\nb",
        "é",
        "a;b",
        "a*",
        "a?b",
        "a:b",
        "<script>",
    };
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++)
        assert_false(coord_valid_node_id(hostile[i], strlen(hostile[i])));
    assert_false(coord_valid_node_id("a\0b", 3)); /* embedded NUL */
    size_t big = 1u << 20;
    char *mb = malloc(big + 1);
    assert_non_null(mb);
    memset(mb, 'a', big);
    mb[big] = 0;
    assert_false(coord_valid_node_id(mb, big));
    free(mb);
}

static void urls(void **state)
{
    char host[256];
    assert_true(coord_valid_url("https://127.0.0.1:8443", false, host, sizeof(host)));
    assert_string_equal(host, "127.0.0.1");
    assert_true(coord_valid_url("https://[::1]:8443/", false, host, sizeof(host)));
    assert_string_equal(host, "::1");
    assert_true(coord_valid_url("https://node-1.example.org", false, host, sizeof(host)));
    assert_string_equal(host, "node-1.example.org");
    assert_true(coord_valid_url("https://10.0.0.1:1/hook/x", false, NULL, 0));
    assert_false(coord_valid_url("http://127.0.0.1:8443", false, host, sizeof(host)));
    assert_true(coord_valid_url("http://127.0.0.1:8443", true, host, sizeof(host)));
    static const char *const bad[] = {
        "https://",     "https://:80", "https://a:0",        "https://a:65536",   "https://a:8x",
        "https://a b",  "https://a@b", "file:///etc/passwd", "https://[::1",      "https://a/\n",
        "https://a/#x", "ftp://a",     "https://-a",         "https://a:1234567",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(coord_valid_url(bad[i], true, host, sizeof(host)));
    char longurl[700];
    memset(longurl, 'a', sizeof(longurl) - 1);
    memcpy(longurl, "https://", 8);
    longurl[sizeof(longurl) - 1] = 0;
    assert_false(coord_valid_url(longurl, false, NULL, 0));
}

static void json_caps(void **state)
{
    struct tc_reason why;
    const char *ok = "{\"a\": [1, {\"b\": \"}}}}]]]\"}]}";
    json_t *j = coord_json_parse((const uint8_t *)ok, strlen(ok), 1024, &why);
    assert_non_null(j);
    json_decref(j);
    assert_null(coord_json_parse((const uint8_t *)ok, strlen(ok), 10, &why));
    assert_string_equal(why.check, "json.size");
    assert_null(coord_json_parse((const uint8_t *)"[1]", 3, 1024, &why));
    assert_string_equal(why.check, "json.type");
    assert_null(coord_json_parse((const uint8_t *)"{\"a\":1,\"a\":2}", 13, 1024, &why));
    assert_string_equal(why.check, "json.parse");
    assert_null(coord_json_parse((const uint8_t *)"{\"a\":", 5, 1024, &why));
    assert_string_equal(why.check, "json.parse");
    assert_null(coord_json_parse((const uint8_t *)"", 0, 1024, &why));
    assert_null(coord_json_parse((const uint8_t *)"{\"a\":1}\0x", 9, 1024, &why));
    /* Depth is refused before jansson recurses. */
    size_t n = 100000;
    uint8_t *deep = malloc(2 * n + 8);
    assert_non_null(deep);
    deep[0] = '{';
    memcpy(deep + 1, "\"a\":", 4);
    memset(deep + 5, '[', n);
    memset(deep + 5 + n, ']', n);
    deep[5 + 2 * n] = '}';
    assert_null(coord_json_parse(deep, 6 + 2 * n, 1u << 20, &why));
    assert_string_equal(why.check, "json.depth");
    free(deep);
    /* Brackets inside strings do not count, escaped quotes do not end strings. */
    const char *s = "{\"a\":\"\\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}";
    assert_int_equal(coord_json_depth((const uint8_t *)s, strlen(s), 100), 1);
    const char *str = "{\"k\":\"v\",\"n\":5}";
    j = coord_json_parse((const uint8_t *)str, strlen(str), 100, &why);
    size_t len;
    assert_string_equal(coord_json_str(j, "k", 10, &len), "v");
    assert_null(coord_json_str(j, "n", 10, &len));
    assert_null(coord_json_str(j, "k", 0, &len));
    json_decref(j);
    const char *nul = "{\"k\":\"a\\u0000b\"}";
    /* \u0000 is refused by the parser itself (no JSON_ALLOW_NUL). */
    assert_null(coord_json_parse((const uint8_t *)nul, strlen(nul), 100, &why));
}

static void base64(void **state)
{
    uint8_t *out;
    size_t len;
    assert_int_equal(coord_b64_decode("aGVsbG8=", 8, 100, &out, &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "hello", 5);
    free(out);
    assert_int_equal(coord_b64_decode("aGVsbG8", 7, 100, &out, &len), TC_ERR_FORMAT);
    assert_int_equal(coord_b64_decode("AB==", 4, 100, &out, &len),
                     TC_ERR_FORMAT); /* found by fuzzing */
    assert_int_equal(coord_b64_decode("AAB=", 4, 100, &out, &len), TC_ERR_FORMAT);
    assert_int_equal(coord_b64_decode("aGV=bG8=", 8, 100, &out, &len), TC_ERR_FORMAT);
    assert_int_equal(coord_b64_decode("aGVs bG8", 8, 100, &out, &len), TC_ERR_FORMAT);
    assert_int_equal(coord_b64_decode("aGVsbG8=", 8, 4, &out, &len), TC_ERR_TOO_LARGE);
    assert_int_equal(coord_b64_decode("", 0, 4, &out, &len), 0);
    free(out);
    for (size_t n = 0; n < 40; n++) {
        uint8_t in[40];
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)(i * 37 + n);
        char *e = coord_b64_encode(in, n);
        assert_non_null(e);
        assert_int_equal(coord_b64_decode(e, strlen(e), 40, &out, &len), 0);
        assert_int_equal(len, n);
        if (n)
            assert_memory_equal(out, in, n);
        free(out);
        free(e);
    }
    char pin[80];
    assert_int_equal(coord_pin_curl("00", pin, sizeof(pin)), TC_ERR_FORMAT);
    char hex[65];
    memset(hex, 'a', 64);
    hex[64] = 0;
    assert_int_equal(coord_pin_curl(hex, pin, sizeof(pin)), 0);
    assert_int_equal(strncmp(pin, "sha256//", 8), 0);
    assert_int_equal(strlen(pin), 8 + 44);
}

static void ima_state_roundtrip(void **state)
{
    struct tc_ima_replay_state st, back;
    assert_int_equal(tc_ima_replay_init(&st, NULL, 0, TC_IMA_REPLAY_SHA1_PADDED), 0);
    st.count = 0x123456789aULL;
    struct tc_pcr_bank *b = tc_pcrs_bank(&st.pcrs, tc_hash_by_name("sha256"), false);
    assert_non_null(b);
    memset(b->value[10], 0x5a, 32);
    uint8_t *enc;
    size_t len;
    assert_int_equal(coord_ima_state_encode(&st, &enc, &len), 0);
    assert_int_equal(enc[0], COORD_IMA_STATE_VERSION);
    assert_int_equal(coord_ima_state_decode(enc, len, &back), 0);
    assert_int_equal(back.count, st.count);
    assert_int_equal(back.flags, st.flags);
    assert_int_equal(back.pcrs.nbanks, st.pcrs.nbanks);
    for (size_t i = 0; i < st.pcrs.nbanks; i++) {
        assert_ptr_equal(back.pcrs.bank[i].alg, st.pcrs.bank[i].alg);
        assert_int_equal(back.pcrs.bank[i].mask, st.pcrs.bank[i].mask);
        assert_memory_equal(back.pcrs.bank[i].value[10], st.pcrs.bank[i].value[10],
                            st.pcrs.bank[i].alg->size);
    }
    /* Every truncation fails, trailing bytes fail, an unknown version fails. */
    for (size_t n = 0; n < len; n++)
        assert_int_not_equal(coord_ima_state_decode(enc, n, &back), 0);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, enc, len);
    longer[len] = 0;
    assert_int_equal(coord_ima_state_decode(longer, len + 1, &back), TC_ERR_TRAILING);
    longer[0] = 2;
    assert_int_equal(coord_ima_state_decode(longer, len, &back), TC_ERR_UNSUPPORTED);
    free(longer);
    /* Flipping any byte never crashes, and a decoded state is self-consistent. */
    for (size_t i = 0; i < len; i++) {
        uint8_t saved = enc[i];
        enc[i] ^= 0xff;
        if (coord_ima_state_decode(enc, len, &back) == 0)
            assert_true(back.pcrs.nbanks <= TC_MAX_BANKS);
        enc[i] = saved;
    }
    free(enc);
    assert_int_equal(coord_ima_state_decode(NULL, 0, &back), TC_ERR_FORMAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(settings_defaults_and_bounds),
        cmocka_unit_test(settings_cross_checks),
        cmocka_unit_test(node_ids),
        cmocka_unit_test(urls),
        cmocka_unit_test(json_caps),
        cmocka_unit_test(base64),
        cmocka_unit_test(ima_state_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
