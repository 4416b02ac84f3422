/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "trustcloud/error.h"
#include "trustcloud/eventlog.h"
#include "trustcloud/mb_policy.h"

struct ctx {
    struct tc_evlog *sb, *plain;
    struct tc_pcr_set sb_pcrs, plain_pcrs;
};

static int setup(void **state)
{
    const char *dir = getenv("TC_FIXTURES");
    char path[4096];
    struct tc_reason why;
    struct ctx *c = calloc(1, sizeof(*c));
    if (dir == NULL || c == NULL) {
        free(c);
        *state = NULL;
        return 0;
    }
    snprintf(path, sizeof(path), "%s/measured-boot/binary_bios_measurements-secureboot", dir);
    if (tc_evlog_parse_file(path, &c->sb, &why) || tc_evlog_replay(c->sb, &c->sb_pcrs, &why))
        return -1;
    snprintf(path, sizeof(path), "%s/measured-boot/binary_bios_measurements", dir);
    if (tc_evlog_parse_file(path, &c->plain, &why) ||
        tc_evlog_replay(c->plain, &c->plain_pcrs, &why))
        return -1;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    if (c) {
        tc_evlog_free(c->sb);
        tc_evlog_free(c->plain);
        free(c);
    }
    return 0;
}

/* Generate, serialise, parse back: the round trip must keep the policy's meaning. */
static struct tc_mb_policy *roundtrip(struct tc_mb_policy *p)
{
    json_t *j = tc_mb_policy_to_json(p);
    assert_non_null(j);
    char *s = json_dumps(j, 0);
    assert_non_null(s);
    struct tc_mb_policy *q;
    struct tc_reason why;
    assert_int_equal(tc_mb_policy_from_json(s, strlen(s), &q, &why), 0);
    json_t *j2 = tc_mb_policy_to_json(q);
    assert_true(json_equal(j, j2));
    json_decref(j2);
    json_decref(j);
    free(s);
    tc_mb_policy_free(p);
    return q;
}

static void secureboot_policy(void **state)
{
    struct ctx *c = *state;
    if (c == NULL)
        skip();
    struct tc_mb_policy *p;
    struct tc_reason why;
    assert_int_equal(tc_mb_policy_from_eventlog(c->sb, &c->sb_pcrs, &p, &why), 0);
    assert_true(p->require_secureboot);
    assert_int_equal(p->pk.n, 1);
    assert_true(p->kek.n >= 1 && p->db.n >= 1 && p->dbx_contains.n > 100);
    assert_int_equal(p->nboot_app_banks, 1);
    assert_int_equal(p->boot_apps[0].n, 3);
    assert_int_equal(p->ncmdlines, 1);
    p = roundtrip(p);
    /* Against itself: pass. */
    tc_reason_clear(&why);
    assert_int_equal(tc_mb_policy_check(p, c->sb, &c->sb_pcrs, &why), 0);
    /* Against the Secure Boot disabled machine: the SecureBoot variable event. */
    assert_int_equal(tc_mb_policy_check(p, c->plain, &c->plain_pcrs, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "mb.secureboot");
    assert_int_equal(why.entry, 12);
    tc_mb_policy_free(p);
}

static void plain_policy(void **state)
{
    struct ctx *c = *state;
    if (c == NULL)
        skip();
    struct tc_mb_policy *p;
    struct tc_reason why;
    assert_int_equal(tc_mb_policy_from_eventlog(c->plain, &c->plain_pcrs, &p, &why), 0);
    assert_false(p->require_secureboot);
    assert_false(p->pk.set);
    assert_int_equal(p->nboot_app_banks, 2); /* sha1 and sha256 */
    p = roundtrip(p);
    assert_int_equal(tc_mb_policy_check(p, c->plain, &c->plain_pcrs, &why), 0);
    /* The other machine's log has no SHA-1 digests for its boot applications. */
    assert_int_equal(tc_mb_policy_check(p, c->sb, &c->sb_pcrs, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "mb.boot_app");
    assert_int_equal(why.entry, 29);
    tc_mb_policy_free(p);
}

static struct tc_mb_policy *parse(const char *s, int want, const char *check)
{
    struct tc_mb_policy *p = (struct tc_mb_policy *)1;
    struct tc_reason why;
    tc_reason_clear(&why);
    assert_int_equal(tc_mb_policy_from_json(s, strlen(s), &p, &why), want);
    if (want != 0) {
        assert_null(p);
        if (check)
            assert_string_equal(why.check, check);
    }
    return p;
}

/* Only one kind of check at a time, to see each one fail on its own. */
static void single_checks(void **state)
{
    struct ctx *c = *state;
    if (c == NULL)
        skip();
    struct tc_reason why;
    struct tc_mb_policy *p;

    /* PCR values: one wrong PCR. */
    p = parse("{\"version\":1,\"pcrs\":{\"sha256\":{\"7\":"
              "\"0000000000000000000000000000000000000000000000000000000000000000\"}}}",
              0, NULL);
    assert_int_equal(tc_mb_policy_check(p, c->sb, &c->sb_pcrs, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "mb.pcr");
    assert_non_null(strstr(why.detail, "sha256:7"));
    tc_mb_policy_free(p);

    /* A PCR the log never measures. */
    p = parse("{\"version\":1,\"pcrs\":{\"sha256\":{\"16\":"
              "\"0000000000000000000000000000000000000000000000000000000000000000\"}}}",
              0, NULL);
    assert_int_equal(tc_mb_policy_check(p, c->sb, &c->sb_pcrs, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "mb.pcr");
    tc_mb_policy_free(p);

    /* Boot applications: none allowed. */
    p = parse("{\"version\":1,\"boot_apps\":{\"sha256\":[]}}", 0, NULL);
    assert_int_equal(tc_mb_policy_check(p, c->sb, &c->sb_pcrs, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "mb.boot_app");
    assert_int_equal(why.entry, 29);
    tc_mb_policy_free(p);

    /* Kernel command line not allowed. */
    p = parse("{\"version\":1,\"kernel_cmdlines\":[\"quiet\"]}", 0, NULL);
    assert_int_equal(tc_mb_policy_check(p, c->sb, &c->sb_pcrs, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "mb.kernel_cmdline");
    assert_int_equal(why.entry, 94);
    tc_mb_policy_free(p);

    /* PK not allowed; dbx lacking a required hash. */
    p = parse("{\"version\":1,\"secureboot\":{\"enabled\":true,\"pk\":[]}}", 0, NULL);
    assert_int_equal(tc_mb_policy_check(p, c->sb, &c->sb_pcrs, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "mb.secureboot.pk");
    assert_int_equal(why.entry, 5);
    tc_mb_policy_free(p);
    p = parse("{\"version\":1,\"secureboot\":{\"enabled\":false,\"dbx_contains\":"
              "[\"1111111111111111111111111111111111111111111111111111111111111111\"]}}",
              0, NULL);
    assert_int_equal(tc_mb_policy_check(p, c->sb, &c->sb_pcrs, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "mb.secureboot.dbx");
    assert_int_equal(why.entry, 8);
    tc_mb_policy_free(p);

    /* An empty policy passes anything well-formed. */
    p = parse("{\"version\":1}", 0, NULL);
    assert_int_equal(tc_mb_policy_check(p, c->plain, &c->plain_pcrs, &why), 0);
    tc_mb_policy_free(p);
}

/* Editing the SecureBoot variable's data while keeping its digests is caught. */
static void edited_event_data(void **state)
{
    struct ctx *c = *state;
    if (c == NULL)
        skip();
    struct tc_reason why;
    struct tc_mb_policy *p = parse("{\"version\":1,\"secureboot\":{\"enabled\":true}}", 0, NULL);
    struct tc_evlog *log;
    /* Flip the plain log's SecureBoot byte from 0 to 1 in a copy. */
    uint8_t *copy = malloc(c->plain->len);
    memcpy(copy, c->plain->buf, c->plain->len);
    const struct tc_evlog_event *ev = &c->plain->events[12];
    size_t at = (size_t)(ev->data - c->plain->buf) + ev->data_len - 1;
    assert_int_equal(copy[at], 0);
    copy[at] = 1;
    assert_int_equal(tc_evlog_parse(copy, c->plain->len, &log, &why), 0);
    assert_int_equal(tc_mb_policy_check(p, log, &c->plain_pcrs, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "mb.event_digest");
    assert_int_equal(why.entry, 12);
    tc_evlog_free(log);
    free(copy);
    tc_mb_policy_free(p);
}

static void bad_json(void **state)
{
    parse("", TC_ERR_FORMAT, "mb.policy");
    parse("[]", TC_ERR_FORMAT, "mb.policy");
    parse("{\"version\":2}", TC_ERR_UNSUPPORTED, "mb.policy");
    parse("{\"version\":1,\"extra\":1}", TC_ERR_FORMAT, "mb.policy");
    parse("{\"version\":1,\"secureboot\":{\"enabled\":1}}", TC_ERR_FORMAT, "mb.policy");
    parse("{\"version\":1,\"secureboot\":{\"pk\":[\"00\"]}}", TC_ERR_FORMAT, "mb.policy");
    parse("{\"version\":1,\"boot_apps\":{\"md5\":[]}}", TC_ERR_UNSUPPORTED, "mb.policy");
    parse("{\"version\":1,\"boot_apps\":{\"sha1\":[\"00\"]}}", TC_ERR_FORMAT, "mb.policy");
    parse("{\"version\":1,\"version\":1}", TC_ERR_FORMAT, "mb.policy");
    char deep[64];
    snprintf(deep, sizeof(deep), "{\"version\":1,\"x\":[[[[[[[[[[1]]]]]]]]]]}");
    parse(deep, TC_ERR_TOO_LARGE, "mb.policy");
    /* Brackets inside strings do not count towards depth. */
    tc_mb_policy_free(NULL);
}

static void fix_parse_ok(void **state)
{
    struct tc_mb_policy *p =
        parse("{\"version\":1,\"kernel_cmdlines\":[\"[[[[[[[[[[[[\"]}", 0, NULL);
    assert_int_equal(p->ncmdlines, 1);
    tc_mb_policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(secureboot_policy), cmocka_unit_test(plain_policy),
        cmocka_unit_test(single_checks),     cmocka_unit_test(edited_event_data),
        cmocka_unit_test(fix_parse_ok),
    };
    const struct CMUnitTest json_tests[] = {cmocka_unit_test(bad_json)};
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    return rc | cmocka_run_group_tests(json_tests, NULL, NULL);
}
