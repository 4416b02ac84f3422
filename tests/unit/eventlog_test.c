/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/eventlog.h"
#include "trustcloud/hashalg.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/reason.h"

static char *fixture(const char *rel)
{
    const char *dir = getenv("TC_FIXTURES");
    static char path[4096];
    if (dir == NULL)
        return NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    return path;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    uint8_t *d = NULL;
    assert_int_equal(tc_file_read(path, 64u << 20, &d, len), 0);
    return d;
}

/* Parses tpm2_eventlog's "pcrs:" YAML (bank lines "  sha1:", value lines "    4  : 0x..."). */
static void load_pcrs_yaml(const char *path, struct tc_pcr_set *s)
{
    FILE *f = fopen(path, "r");
    char line[512];
    const struct tc_hash_alg *alg = NULL;
    assert_non_null(f);
    tc_pcrs_init(s);
    while (fgets(line, sizeof(line), f)) {
        char name[32], hex[200];
        unsigned idx;
        /* Bank lines: exactly two spaces of indent, then a name and a colon. */
        if (line[0] == ' ' && line[1] == ' ' && line[2] >= 'a' && line[2] <= 'z' &&
            sscanf(line + 2, "%31[a-z0-9_]:", name) == 1) {
            alg = tc_hash_by_name(name);
            assert_non_null(alg);
            continue;
        }
        if (sscanf(line, " %u : 0x%199s", &idx, hex) == 2) {
            uint8_t v[TC_MAX_DIGEST];
            size_t n;
            assert_non_null(alg);
            assert_int_equal(tc_hex_decode(hex, strlen(hex), v, sizeof(v), &n), 0);
            assert_int_equal(n, alg->size);
            assert_int_equal(tc_pcrs_set(s, alg, idx, v), 0);
        }
    }
    fclose(f);
}

static void assert_pcrs_equal(const struct tc_pcr_set *want, const struct tc_pcr_set *got)
{
    assert_int_equal(want->nbanks, got->nbanks);
    for (size_t b = 0; b < want->nbanks; b++) {
        const struct tc_pcr_bank *w = &want->bank[b];
        const struct tc_pcr_bank *g = tc_pcrs_bank_const(got, w->alg);
        assert_non_null(g);
        assert_int_equal(w->mask, g->mask);
        for (unsigned i = 0; i < TC_PCR_COUNT; i++)
            if (w->mask & (1u << i))
                assert_memory_equal(w->value[i], g->value[i], w->alg->size);
    }
}

/* Every $TC_FIXTURES/eventlog/NAME.bin replays to exactly NAME.pcrs.yaml. */
static void fixtures_replay_exact(void **state)
{
    char *dirpath = fixture("eventlog");
    if (dirpath == NULL)
        skip();
    char dirbuf[2048];
    snprintf(dirbuf, sizeof(dirbuf), "%.2000s", dirpath);
    DIR *d = opendir(dirbuf);
    assert_non_null(d);
    struct dirent *e;
    int checked = 0;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 11 || strcmp(e->d_name + n - 10, ".pcrs.yaml") != 0)
            continue;
        char bin[4096], yaml[4096];
        snprintf(yaml, sizeof(yaml), "%s/%s", dirbuf, e->d_name);
        snprintf(bin, sizeof(bin), "%s/%.*s.bin", dirbuf, (int)(n - 10), e->d_name);
        struct tc_evlog *log = NULL;
        struct tc_reason why;
        struct tc_pcr_set want, got;
        tc_reason_clear(&why);
        assert_int_equal(tc_evlog_parse_file(bin, &log, &why), 0);
        assert_int_equal(log->format, TC_EVLOG_CRYPTO_AGILE);
        assert_int_equal(tc_evlog_replay(log, &got, &why), 0);
        load_pcrs_yaml(yaml, &want);
        assert_true(want.nbanks > 0);
        assert_pcrs_equal(&want, &got);
        /* Every event renders to JSON. */
        for (size_t i = 0; i < log->nevents; i++) {
            json_t *j = tc_evlog_event_to_json(log, &log->events[i]);
            assert_non_null(j);
            json_decref(j);
        }
        tc_evlog_free(log);
        checked++;
    }
    closedir(d);
    assert_true(checked >= 7);
}

static void bogus_and_empty_rejected(void **state)
{
    const char *names[] = {"measured-boot/binary_bios_measurements-bogus",
                           "measured-boot/binary_bios_measurements-empty"};
    if (getenv("TC_FIXTURES") == NULL)
        skip();
    for (size_t i = 0; i < 2; i++) {
        struct tc_evlog *log = (struct tc_evlog *)1;
        struct tc_reason why;
        tc_reason_clear(&why);
        assert_int_equal(tc_evlog_parse_file(fixture(names[i]), &log, &why), TC_ERR_FORMAT);
        assert_null(log);
        assert_string_equal(why.check, "eventlog.parse");
        assert_true(strlen(why.detail) > 0);
    }
}

/* The Keylime log has StartupLocality 3: PCR 0 starts at 00..03 in every bank. */
static void startup_locality(void **state)
{
    if (getenv("TC_FIXTURES") == NULL)
        skip();
    struct tc_evlog *log;
    struct tc_reason why;
    struct tc_pcr_set got;
    assert_int_equal(
        tc_evlog_parse_file(fixture("measured-boot/binary_bios_measurements"), &log, &why), 0);
    assert_true(log->has_startup_locality);
    assert_int_equal(log->startup_locality, 3);
    assert_int_equal(tc_evlog_replay(log, &got, &why), 0);
    /* Recompute PCR 0 by hand from the events. */
    const struct tc_hash_alg *sha256 = tc_hash_by_name("sha256");
    uint8_t v[32] = {0};
    v[31] = 3;
    for (size_t i = 1; i < log->nevents; i++) {
        const struct tc_evlog_event *ev = &log->events[i];
        if (ev->pcr != 0 || ev->type == TC_EV_NO_ACTION)
            continue;
        assert_int_equal(tc_hash2(sha256, v, 32, tc_evlog_event_digest(ev, sha256), 32, v), 0);
    }
    const struct tc_pcr_bank *b = tc_pcrs_bank_const(&got, sha256);
    assert_non_null(b);
    assert_memory_equal(b->value[0], v, 32);
    char hex[65];
    tc_hex_encode(b->value[0], 32, hex);
    assert_string_equal(hex, "0ee9a7feba8f4172f1a7451594aa5731665a4d353ac61814042ce107a00742f2");
    /* Decoded as a StartupLocality event. */
    struct tc_evlog_decoded d;
    assert_int_equal(tc_evlog_decode(log, &log->events[1], &d), 0);
    assert_int_equal(d.kind, TC_EVD_STARTUP_LOCALITY);
    assert_int_equal(d.locality, 3);
    tc_evlog_decoded_release(&d);
    tc_evlog_free(log);
}

/* Truncating a real log at every byte never crashes and fails cleanly (or parses a prefix that
 * ends exactly on an event boundary). */
static void truncation_everywhere(void **state)
{
    if (getenv("TC_FIXTURES") == NULL)
        skip();
    size_t len;
    uint8_t *data = read_all(fixture("eventlog/event-arch-linux.bin"), &len);
    struct tc_evlog *full;
    struct tc_reason why;
    assert_int_equal(tc_evlog_parse(data, len, &full, &why), 0);
    size_t boundaries = 0;
    for (size_t cut = 0; cut < len; cut++) {
        struct tc_evlog *log = NULL;
        tc_reason_clear(&why);
        int rc = tc_evlog_parse(data, cut, &log, &why);
        bool boundary = false;
        for (size_t i = 1; i < full->nevents; i++)
            boundary |= full->events[i].offset == cut;
        if (boundary) {
            assert_int_equal(rc, 0);
            boundaries++;
            struct tc_pcr_set s;
            assert_int_equal(tc_evlog_replay(log, &s, &why), 0);
            tc_evlog_free(log);
            continue;
        }
        assert_true(rc == TC_ERR_TRUNCATED || rc == TC_ERR_FORMAT);
        assert_null(log);
        assert_string_equal(why.check, "eventlog.parse");
        assert_non_null(strstr(why.detail, "offset"));
    }
    assert_int_equal(boundaries, full->nevents - 1);
    tc_evlog_free(full);
    free(data);
}

/* ---- hand-built logs ---- */

struct lb {
    uint8_t d[4096];
    size_t n;
};

static void put(struct lb *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof(b->d));
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void u32(struct lb *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}
static void u16(struct lb *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(b, x, 2);
}
static void u64(struct lb *b, uint64_t v)
{
    u32(b, (uint32_t)v);
    u32(b, (uint32_t)(v >> 32));
}

/* Spec ID event with the given (alg, size) table. */
static void specid(struct lb *b, size_t n, const uint16_t *ids, const uint16_t *sizes)
{
    uint8_t zero[20] = {0};
    u32(b, 0);
    u32(b, TC_EV_NO_ACTION);
    put(b, zero, 20);
    u32(b, (uint32_t)(16 + 4 + 4 + 4 + 4 * n + 1));
    put(b, "Spec ID Event03", 16);
    u32(b, 0);
    uint8_t ver[4] = {0, 2, 0, 2};
    put(b, ver, 4);
    u32(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        u16(b, ids[i]);
        u16(b, sizes[i]);
    }
    uint8_t vs = 0;
    put(b, &vs, 1);
}

static void legacy_sha1_log(void **state)
{
    /* Two TCG_PCR_EVENTs: PCR 0 and PCR 4, plus an EV_NO_ACTION that must not be replayed. */
    const struct tc_hash_alg *sha1 = tc_hash_by_name("sha1");
    struct lb b = {0};
    uint8_t d1[20], d2[20], d3[20];
    memset(d1, 0x11, 20), memset(d2, 0x22, 20), memset(d3, 0x33, 20);
    u32(&b, 0), u32(&b, TC_EV_S_CRTM_VERSION), put(&b, d1, 20), u32(&b, 4), put(&b, "v1.0", 4);
    u32(&b, 4), u32(&b, TC_EV_EFI_ACTION), put(&b, d2, 20), u32(&b, 5), put(&b, "hello", 5);
    u32(&b, 4), u32(&b, TC_EV_NO_ACTION), put(&b, d3, 20), u32(&b, 0);
    struct tc_evlog *log;
    struct tc_reason why;
    struct tc_pcr_set s;
    assert_int_equal(tc_evlog_parse(b.d, b.n, &log, &why), 0);
    assert_int_equal(log->format, TC_EVLOG_LEGACY_SHA1);
    assert_int_equal(log->nevents, 3);
    assert_int_equal(tc_evlog_replay(log, &s, &why), 0);
    assert_int_equal(s.nbanks, 1);
    assert_ptr_equal(s.bank[0].alg, sha1);
    assert_int_equal(s.bank[0].mask, (1u << 0) | (1u << 4));
    uint8_t want[20] = {0};
    assert_int_equal(tc_hash2(sha1, want, 20, d1, 20, want), 0);
    assert_memory_equal(s.bank[0].value[0], want, 20);
    memset(want, 0, 20);
    assert_int_equal(tc_hash2(sha1, want, 20, d2, 20, want), 0);
    assert_memory_equal(s.bank[0].value[4], want, 20);
    struct tc_evlog_decoded d;
    assert_int_equal(tc_evlog_decode(log, &log->events[1], &d), 0);
    assert_int_equal(d.kind, TC_EVD_STRING);
    assert_string_equal(d.text, "hello");
    tc_evlog_decoded_release(&d);
    tc_evlog_free(log);
}

/* An algorithm unknown to this build is skipped by its Spec ID size, and not replayed. */
static void unknown_algorithm_skipped(void **state)
{
    const uint16_t ids[] = {0x000B, 0x7777}, sizes[] = {32, 40};
    struct lb b = {0};
    uint8_t dg[40];
    specid(&b, 2, ids, sizes);
    u32(&b, 4), u32(&b, TC_EV_EFI_ACTION), u32(&b, 2);
    memset(dg, 0xaa, 40);
    u16(&b, 0x7777), put(&b, dg, 40);
    memset(dg, 0xbb, 32);
    u16(&b, 0x000B), put(&b, dg, 32);
    u32(&b, 3), put(&b, "abc", 3);
    struct tc_evlog *log;
    struct tc_reason why;
    struct tc_pcr_set s;
    assert_int_equal(tc_evlog_parse(b.d, b.n, &log, &why), 0);
    assert_int_equal(log->nevents, 2);
    assert_int_equal(log->events[1].ndigests, 2);
    assert_null(log->events[1].digests[0].hash);
    assert_int_equal(log->events[1].digests[0].size, 40);
    assert_int_equal(log->events[1].data_len, 3);
    assert_int_equal(tc_evlog_replay(log, &s, &why), 0);
    assert_int_equal(s.nbanks, 1);
    json_t *j = tc_evlog_event_to_json(log, &log->events[1]);
    assert_non_null(json_object_get(json_object_get(j, "digests"), "alg_0x7777"));
    json_decref(j);
    tc_evlog_free(log);
}

static int parse_rc(const struct lb *b, struct tc_reason *why)
{
    struct tc_evlog *log = NULL;
    tc_reason_clear(why);
    int rc = tc_evlog_parse(b->d, b->n, &log, why);
    tc_evlog_free(log);
    return rc;
}

/* Digest counts and sizes that lie are rejected with the entry named. */
static void digest_lies(void **state)
{
    const uint16_t ids[] = {0x0004, 0x000B}, sizes[] = {20, 32};
    uint8_t dg[64] = {0};
    struct tc_reason why;

    /* More digests than the table has. */
    struct lb b = {0};
    specid(&b, 2, ids, sizes);
    u32(&b, 4), u32(&b, TC_EV_EFI_ACTION), u32(&b, 3);
    u16(&b, 4), put(&b, dg, 20), u16(&b, 11), put(&b, dg, 32), u16(&b, 4), put(&b, dg, 20);
    u32(&b, 0);
    assert_int_equal(parse_rc(&b, &why), TC_ERR_FORMAT);
    assert_int_equal(why.entry, 1);
    assert_non_null(strstr(why.detail, "3 digests"));

    /* Same algorithm twice. */
    memset(&b, 0, sizeof(b));
    specid(&b, 2, ids, sizes);
    u32(&b, 4), u32(&b, TC_EV_EFI_ACTION), u32(&b, 2);
    u16(&b, 4), put(&b, dg, 20), u16(&b, 4), put(&b, dg, 20);
    u32(&b, 0);
    assert_int_equal(parse_rc(&b, &why), TC_ERR_FORMAT);
    assert_non_null(strstr(why.detail, "repeated"));

    /* Algorithm not in the table. */
    memset(&b, 0, sizeof(b));
    specid(&b, 2, ids, sizes);
    u32(&b, 4), u32(&b, TC_EV_EFI_ACTION), u32(&b, 1);
    u16(&b, 0x000C), put(&b, dg, 48);
    u32(&b, 0);
    assert_int_equal(parse_rc(&b, &why), TC_ERR_FORMAT);
    assert_non_null(strstr(why.detail, "not in the Spec ID table"));

    /* Table claims a wrong size for a known algorithm. */
    const uint16_t badsizes[] = {20, 20};
    memset(&b, 0, sizeof(b));
    specid(&b, 2, ids, badsizes);
    assert_int_equal(parse_rc(&b, &why), TC_ERR_FORMAT);
    assert_int_equal(why.entry, 0);

    /* Event data size past the end of the log. */
    memset(&b, 0, sizeof(b));
    specid(&b, 2, ids, sizes);
    u32(&b, 4), u32(&b, TC_EV_EFI_ACTION), u32(&b, 1), u16(&b, 11), put(&b, dg, 32);
    u32(&b, 1000), put(&b, "x", 1);
    assert_int_equal(parse_rc(&b, &why), TC_ERR_TRUNCATED);
    assert_int_equal(why.entry, 1);

    /* Event data size over the cap. */
    memset(&b, 0, sizeof(b));
    specid(&b, 2, ids, sizes);
    u32(&b, 4), u32(&b, TC_EV_EFI_ACTION), u32(&b, 1), u16(&b, 11), put(&b, dg, 32);
    u32(&b, 0xffffffffu);
    assert_int_equal(parse_rc(&b, &why), TC_ERR_TOO_LARGE);

    /* PCR index out of range. */
    memset(&b, 0, sizeof(b));
    specid(&b, 2, ids, sizes);
    u32(&b, 24), u32(&b, TC_EV_EFI_ACTION), u32(&b, 0), u32(&b, 0);
    assert_int_equal(parse_rc(&b, &why), TC_ERR_FORMAT);
    assert_non_null(strstr(why.detail, "PCR index 24"));
}

/* A StartupLocality event after a PCR 0 measurement is refused. */
static void late_startup_locality(void **state)
{
    const uint16_t ids[] = {0x000B}, sizes[] = {32};
    uint8_t dg[32] = {1};
    struct lb b = {0};
    struct tc_reason why;
    specid(&b, 1, ids, sizes);
    u32(&b, 0), u32(&b, TC_EV_S_CRTM_VERSION), u32(&b, 1), u16(&b, 11), put(&b, dg, 32);
    u32(&b, 2), put(&b, "v1", 2);
    u32(&b, 0), u32(&b, TC_EV_NO_ACTION), u32(&b, 1), u16(&b, 11), put(&b, (uint8_t[32]){0}, 32);
    u32(&b, 17), put(&b, "StartupLocality", 16), put(&b, "\x03", 1);
    assert_int_equal(parse_rc(&b, &why), TC_ERR_FORMAT);
    assert_int_equal(why.entry, 2);
}

/* UEFI_VARIABLE_DATA for SecureBoot = 1 (EFI global variable GUID). */
static void secureboot_variable(void **state)
{
    const uint16_t ids[] = {0x000B}, sizes[] = {32};
    static const uint8_t guid[16] = {0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11,
                                     0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c};
    struct lb var = {0}, b = {0};
    put(&var, guid, 16);
    u64(&var, 10), u64(&var, 1);
    const char *name = "SecureBoot";
    for (size_t i = 0; i < 10; i++)
        u16(&var, (uint16_t)name[i]);
    put(&var, "\x01", 1);
    uint8_t dg[32];
    assert_int_equal(tc_hash(tc_hash_by_name("sha256"), var.d, var.n, dg), 0);
    specid(&b, 1, ids, sizes);
    u32(&b, 7), u32(&b, TC_EV_EFI_VARIABLE_DRIVER_CONFIG), u32(&b, 1), u16(&b, 11), put(&b, dg, 32);
    u32(&b, (uint32_t)var.n), put(&b, var.d, var.n);
    struct tc_evlog *log;
    struct tc_reason why;
    assert_int_equal(tc_evlog_parse(b.d, b.n, &log, &why), 0);
    struct tc_evlog_decoded d;
    assert_int_equal(tc_evlog_decode(log, &log->events[1], &d), 0);
    assert_int_equal(d.kind, TC_EVD_VARIABLE);
    assert_int_equal(d.var, TC_VAR_SECUREBOOT);
    assert_string_equal(d.var_name, "SecureBoot");
    assert_int_equal(d.var_data_len, 1);
    assert_int_equal(d.var_data[0], 1);
    char g[37];
    tc_evlog_guid_str(d.var_guid, g);
    assert_string_equal(g, "8be4df61-93ca-11d2-aa0d-00e098032b8c");
    tc_evlog_decoded_release(&d);
    json_t *j = tc_evlog_event_to_json(log, &log->events[1]);
    assert_true(json_is_true(json_object_get(json_object_get(j, "details"), "enabled")));
    json_decref(j);
    /* A name length that runs past the data is a decode error, not a crash. */
    b.d[b.n - var.n + 16] = 0xff;
    tc_evlog_free(log);
    assert_int_equal(tc_evlog_parse(b.d, b.n, &log, &why), 0);
    assert_int_not_equal(tc_evlog_decode(log, &log->events[1], &d), 0);
    assert_int_equal(d.kind, TC_EVD_RAW);
    tc_evlog_decoded_release(&d);
    tc_evlog_free(log);
}

/* Real logs decode their Secure Boot variables. */
static void fixture_secureboot_state(void **state)
{
    if (getenv("TC_FIXTURES") == NULL)
        skip();
    const char *files[] = {"measured-boot/binary_bios_measurements-secureboot",
                           "measured-boot/binary_bios_measurements"};
    for (int f = 0; f < 2; f++) {
        struct tc_evlog *log;
        struct tc_reason why;
        int found = 0;
        assert_int_equal(tc_evlog_parse_file(fixture(files[f]), &log, &why), 0);
        for (size_t i = 0; i < log->nevents; i++) {
            struct tc_evlog_decoded d;
            assert_int_not_equal(tc_evlog_decode(log, &log->events[i], &d), TC_ERR_ALLOC);
            if (d.kind == TC_EVD_VARIABLE && d.var == TC_VAR_SECUREBOOT) {
                found++;
                assert_int_equal(d.var_data_len, 1);
                assert_int_equal(d.var_data[0], f == 0 ? 1 : 0);
            }
            tc_evlog_decoded_release(&d);
        }
        assert_int_equal(found, 1);
        tc_evlog_free(log);
    }
}

static void free_null(void **state)
{
    tc_evlog_free(NULL);
    tc_evlog_decoded_release(NULL);
    assert_string_equal(tc_evlog_type_name(TC_EV_EFI_ACTION), "EV_EFI_ACTION");
    assert_null(tc_evlog_type_name(0x12345678));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fixtures_replay_exact),
        cmocka_unit_test(bogus_and_empty_rejected),
        cmocka_unit_test(startup_locality),
        cmocka_unit_test(truncation_everywhere),
        cmocka_unit_test(legacy_sha1_log),
        cmocka_unit_test(unknown_algorithm_skipped),
        cmocka_unit_test(digest_lies),
        cmocka_unit_test(late_startup_locality),
        cmocka_unit_test(secureboot_variable),
        cmocka_unit_test(fixture_secureboot_state),
        cmocka_unit_test(free_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
