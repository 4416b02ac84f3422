/* SPDX-License-Identifier: Apache-2.0 */
/*
 * IMA measurement lists: fixtures from real tools, both formats, template
 * hashes, replay per bank, incremental replay and quote matching.
 * Expected PCR values were computed independently (Python hashlib) from the
 * fixture text, following the kernel's rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/hashalg.h"
#include "trustcloud/ima.h"
#include "trustcloud/reason.h"

static const struct tc_hash_alg *H(const char *name)
{
    return tc_hash_by_name(name);
}

static char *fixture(const char *name)
{
    static char path[4096];
    const char *dir = getenv("TC_FIXTURES");
    if (dir == NULL)
        return NULL;
    snprintf(path, sizeof(path), "%s/ima/%s", dir, name);
    return path;
}

/* noinline: gcc 12 otherwise warns about a dangling pointer that is not one. */
__attribute__((noinline)) static uint8_t *slurp(const char *path, size_t *len)
{
    uint8_t *d = NULL;
    if (path == NULL || tc_file_read(path, 1u << 26, &d, len) != 0)
        fail_msg("cannot read %s", path ? path : "(TC_FIXTURES unset)");
    return d;
}

static void pcr_hex(const struct tc_ima_replay_state *st, const char *alg, unsigned pcr, char *hex)
{
    const struct tc_pcr_bank *b = tc_pcrs_bank_const(&st->pcrs, H(alg));
    assert_non_null(b);
    assert_true(b->mask & (1u << pcr));
    tc_hex_encode(b->value[pcr], b->alg->size, hex);
}

/* ---- fixtures ---------------------------------------------------------------------------- */

static const struct {
    const char *alg;
    const char *thalg;
    const char *sha1;
    const char *sha256;
    const char *sm3;
} fixtures[] = {
    {"sha1", "sha1", "62e5bdf4783228f7deec959f0a89a4739af79ac5",
     "37c153b0a390c91993992d79eb0b9b05b5cb9085c6179528e1b71694ed19896c",
     "87377437d8f0ab2356da0fd8aa363eba8e3ad7c5b0e41980912fbbf34655860c"},
    {"sha256", "sha1", "8adcb4304b78ee782bbba3733b191591e75dc83d",
     "8dcd5e7eb63e363377ec19b0d358601ccc19f25a30486f35784c5288dbb91d9d",
     "1266fa45f581acb1f74684a560304595475f0c45dd9e66de32fe343f65c729d4"},
    {"sm3_256", "sm3_256", "6956cf4a0031dae91883dd046db1731a8cdfc6b2",
     "4b2794784f13841ecdd6626211bd572eb4862e633ea198cdf8fecf7c1929043d",
     "9e6066a7981769154d79a1ce330020099eba2683e55729413b536a27bf517d81"},
    {"sha384", "sha1", NULL, NULL, NULL},
    {"sha512", "sha1", NULL, NULL, NULL},
};

static void fixtures_parse_and_replay(void **state)
{
    for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "ima-log-%s", fixtures[i].alg);
        struct tc_ima_log *log = NULL;
        struct tc_reason why;
        tc_reason_clear(&why);
        assert_int_equal(tc_ima_log_parse_file(fixture(name), NULL, &log, &why), 0);
        assert_int_equal(log->count, 2);
        assert_ptr_equal(log->template_hash_alg, H(fixtures[i].thalg));
        /* boot_aggregate carries a zero template hash (a violation) in all but the sha256 list,
         * whose template hashes are all real. */
        assert_int_equal(log->entries[0].violation, strcmp(fixtures[i].alg, "sha256") != 0);
        assert_false(log->entries[1].violation);
        assert_string_equal(log->entries[1].path, "/data");
        assert_ptr_equal(log->entries[1].digest_alg, H(fixtures[i].alg));
        assert_int_equal(tc_ima_log_verify_template_hashes(log, &why), 0);

        const struct tc_hash_alg *banks[] = {H("sha1"), H("sha256"), H("sm3_256")};
        struct tc_ima_replay_state st;
        assert_int_equal(tc_ima_replay_init(&st, banks, 3, 0), 0);
        assert_int_equal(tc_ima_replay_advance(&st, log, &why), 0);
        assert_int_equal(st.count, 2);
        if (fixtures[i].sha1) {
            char hex[129];
            pcr_hex(&st, "sha1", 10, hex);
            assert_string_equal(hex, fixtures[i].sha1);
            pcr_hex(&st, "sha256", 10, hex);
            assert_string_equal(hex, fixtures[i].sha256);
            pcr_hex(&st, "sm3_256", 10, hex);
            assert_string_equal(hex, fixtures[i].sm3);
        }
        tc_ima_log_free(log);
    }
}

static void fixture_unknown_algorithm(void **state)
{
    struct tc_ima_log *log = (void *)1;
    struct tc_reason why;
    tc_reason_clear(&why);
    assert_int_equal(tc_ima_log_parse_file(fixture("ima-log-unknown"), NULL, &log, &why),
                     TC_ERR_UNSUPPORTED);
    assert_null(log);
    assert_string_equal(why.check, "ima.parse");
    assert_int_equal(why.entry, 0);
    assert_non_null(strstr(why.detail, "'unknown'"));
}

/* Binary and back: the same entries, and the ASCII text reproduced byte for byte. */
static void ascii_binary_roundtrip(void **state)
{
    const char *names[] = {"ima-log-sha1", "ima-log-sha256", "ima-log-sha384", "ima-log-sha512"};
    for (size_t i = 0; i < 4; i++) {
        size_t len;
        uint8_t *text = slurp(fixture(names[i]), &len);
        struct tc_ima_log *a = NULL, *b = NULL;
        struct tc_buf bin, asc;
        tc_buf_init(&bin, 1u << 20);
        tc_buf_init(&asc, 1u << 20);
        assert_int_equal(tc_ima_log_parse(text, len, NULL, &a, NULL), 0);
        assert_int_equal(tc_ima_log_to_binary(a, 0, a->count, &bin), 0);
        assert_int_equal(tc_ima_detect_format(bin.data, bin.len), TC_IMA_FMT_BINARY);
        assert_int_equal(tc_ima_log_parse(bin.data, bin.len, NULL, &b, NULL), 0);
        assert_int_equal(b->count, a->count);
        for (size_t k = 0; k < a->count; k++) {
            assert_int_equal(a->entries[k].template_data_len, b->entries[k].template_data_len);
            assert_memory_equal(a->entries[k].template_data, b->entries[k].template_data,
                                a->entries[k].template_data_len);
            assert_memory_equal(a->entries[k].template_hash, b->entries[k].template_hash, 20);
        }
        assert_int_equal(tc_ima_log_to_ascii(b, 0, b->count, &asc), 0);
        assert_int_equal(asc.len, len);
        assert_memory_equal(asc.data, text, len);
        tc_buf_release(&bin);
        tc_buf_release(&asc);
        tc_ima_log_free(a);
        tc_ima_log_free(b);
        free(text);
    }
}

/* ---- a generated list with every template ----------------------------------------------- */

/* n entries: boot_aggregate, then ima-ng files with an ima-sig, ima-buf, "ima" template entry
 * and a violation now and then. */
static struct tc_ima_log *build_log(size_t n)
{
    struct tc_ima_log *log = NULL;
    assert_int_equal(tc_ima_log_new(NULL, &log), 0);
    for (size_t i = 0; i < n; i++) {
        char path[64], content[64];
        uint8_t d[64], *td = NULL;
        size_t tdl = 0;
        snprintf(content, sizeof(content), "content %zu", i);
        if (i == 0)
            snprintf(path, sizeof(path), "boot_aggregate");
        else
            snprintf(path, sizeof(path), "/usr/bin/file %zu", i); /* a space on purpose */
        bool violation = i % 50 == 49;
        if (i % 11 == 5 && !violation) {
            assert_int_equal(tc_hash(H("sha256"), content, strlen(content), d), 0);
            assert_int_equal(tc_ima_template_data_ng(H("sha256"), d, ".ima",
                                                     (const uint8_t *)content, strlen(content),
                                                     true, &td, &tdl),
                             0);
            assert_int_equal(tc_ima_log_append(log, 10, "ima-buf", td, tdl, false, NULL), 0);
        } else if (i % 13 == 7 && !violation) {
            uint8_t data[20 + 256] = {0};
            assert_int_equal(tc_hash(H("sha1"), content, strlen(content), data), 0);
            memcpy(data + 20, path, strlen(path));
            assert_int_equal(tc_ima_log_append(log, 10, "ima", data, sizeof(data), false, NULL), 0);
        } else {
            bool sig = i % 7 == 3;
            uint8_t fake_sig[12] = {3, 2, 4, 1, 2, 3, 4, 0, 3, 9, 9, 9};
            assert_int_equal(tc_hash(H("sha256"), content, strlen(content), d), 0);
            if (violation)
                memset(d, 0, 32);
            assert_int_equal(tc_ima_template_data_ng(H("sha256"), d, path, fake_sig,
                                                     i % 14 == 3 ? 0 : sizeof(fake_sig), sig, &td,
                                                     &tdl),
                             0);
            assert_int_equal(
                tc_ima_log_append(log, 10, sig ? "ima-sig" : "ima-ng", td, tdl, violation, NULL),
                0);
        }
        free(td);
    }
    return log;
}

static void generated_roundtrips(void **state)
{
    struct tc_ima_log *log = build_log(300), *b = NULL, *c = NULL;
    struct tc_buf bin, asc;
    struct tc_reason why;
    tc_buf_init(&bin, 1u << 24);
    tc_buf_init(&asc, 1u << 24);
    assert_int_equal(tc_ima_log_verify_template_hashes(log, &why), 0);
    assert_int_equal(log->entries[5].tpl, TC_IMA_TPL_BUF);
    assert_string_equal(log->entries[5].path, ".ima");
    assert_int_equal(log->entries[7].tpl, TC_IMA_TPL_IMA);
    assert_string_equal(log->entries[7].path, "/usr/bin/file 7");
    assert_int_equal(log->entries[3].tpl, TC_IMA_TPL_SIG);
    assert_int_equal(log->entries[3].sig_len, 0); /* empty signature field */
    assert_int_equal(log->entries[10].sig_len, 12);
    assert_true(log->entries[49].violation);

    assert_int_equal(tc_ima_log_to_ascii(log, 0, log->count, &asc), 0);
    assert_int_equal(tc_ima_log_parse(asc.data, asc.len, NULL, &b, &why), 0);
    assert_int_equal(tc_ima_log_to_binary(b, 0, b->count, &bin), 0);
    assert_int_equal(tc_ima_log_parse(bin.data, bin.len, NULL, &c, &why), 0);
    assert_int_equal(c->count, 300);
    for (size_t k = 0; k < 300; k++) {
        assert_int_equal(log->entries[k].template_data_len, c->entries[k].template_data_len);
        assert_memory_equal(log->entries[k].template_data, c->entries[k].template_data,
                            c->entries[k].template_data_len);
        assert_memory_equal(log->entries[k].template_hash, c->entries[k].template_hash, 20);
        assert_string_equal(log->entries[k].template_name, c->entries[k].template_name);
    }
    assert_int_equal(tc_ima_log_verify_template_hashes(c, &why), 0);

    /* Optionally keep the generated lists as test data / fuzz seeds. */
    const char *dir = getenv("TC_IMA_WRITE_DATA");
    if (dir) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/generated-300.ascii", dir);
        assert_int_equal(tc_file_write(p, asc.data, asc.len, 0644), 0);
        snprintf(p, sizeof(p), "%s/generated-300.bin", dir);
        assert_int_equal(tc_file_write(p, bin.data, bin.len, 0644), 0);
    }
    tc_buf_release(&bin);
    tc_buf_release(&asc);
    tc_ima_log_free(log);
    tc_ima_log_free(b);
    tc_ima_log_free(c);
}

/* Converts a little-endian binary list to the big-endian native format of e.g. s390x. */
static void to_big_endian(uint8_t *p, size_t len, size_t hl)
{
    size_t off = 0;
#define SWAP32(q)                                                                                  \
    do {                                                                                           \
        uint8_t t0 = (q)[0], t1 = (q)[1];                                                          \
        (q)[0] = (q)[3];                                                                           \
        (q)[1] = (q)[2];                                                                           \
        (q)[2] = t1;                                                                               \
        (q)[3] = t0;                                                                               \
    } while (0)
    while (off < len) {
        SWAP32(p + off);
        off += 4 + hl;
        uint32_t nl = p[off] | p[off + 1] << 8 | p[off + 2] << 16 | (uint32_t)p[off + 3] << 24;
        SWAP32(p + off);
        bool ima = nl == 3 && memcmp(p + off + 4, "ima", 3) == 0;
        off += 4 + nl;
        if (ima) {
            off += 20;
            uint32_t l = p[off] | p[off + 1] << 8 | p[off + 2] << 16 | (uint32_t)p[off + 3] << 24;
            SWAP32(p + off);
            off += 4 + l;
            continue;
        }
        uint32_t tl = p[off] | p[off + 1] << 8 | p[off + 2] << 16 | (uint32_t)p[off + 3] << 24;
        SWAP32(p + off);
        off += 4;
        size_t end = off + tl;
        while (off < end) {
            uint32_t fl = p[off] | p[off + 1] << 8 | p[off + 2] << 16 | (uint32_t)p[off + 3] << 24;
            SWAP32(p + off);
            off += 4 + fl;
        }
    }
#undef SWAP32
}

static void binary_big_endian(void **state)
{
    struct tc_ima_log *log = build_log(40), *b = NULL;
    struct tc_buf bin;
    struct tc_reason why;
    tc_buf_init(&bin, 1u << 24);
    assert_int_equal(tc_ima_log_to_binary(log, 0, log->count, &bin), 0);
    to_big_endian(bin.data, bin.len, 20);
    assert_int_equal(tc_ima_log_parse(bin.data, bin.len, NULL, &b, &why), 0);
    assert_int_equal(b->count, 40);
    assert_string_equal(b->entries[1].path, "/usr/bin/file 1");
    assert_string_equal(b->entries[7].path, "/usr/bin/file 7");
    /* Field lengths are big-endian inside the template data too, so the template hashes (over
     * little-endian data) no longer match, except for the length-free "ima" template. */
    assert_int_equal(tc_ima_log_verify_template_hashes(b, &why), TC_ERR_MISMATCH);
    assert_int_equal(why.entry, 0);
    tc_buf_release(&bin);
    tc_ima_log_free(log);
    tc_ima_log_free(b);
}

static void template_hash_mismatch_named(void **state)
{
    size_t len;
    uint8_t *text = slurp(fixture("ima-log-sha256"), &len);
    char *second = strchr((char *)text, '\n') + 1;
    second[3] ^= 1; /* a template hash digit of entry 1 */
    struct tc_ima_log *log = NULL;
    struct tc_reason why;
    assert_int_equal(tc_ima_log_parse(text, len, NULL, &log, &why), 0);
    assert_int_equal(tc_ima_log_verify_template_hashes(log, &why), TC_ERR_MISMATCH);
    assert_string_equal(why.check, "ima.template_hash");
    assert_int_equal(why.entry, 1);
    struct tc_ima_replay_state st;
    assert_int_equal(tc_ima_replay_init(&st, NULL, 0, 0), 0);
    assert_int_equal(tc_ima_replay_advance(&st, log, &why), TC_ERR_MISMATCH);
    assert_int_equal(st.count, 0); /* untouched */
    tc_ima_log_free(log);
    free(text);
}

static void malformed_inputs(void **state)
{
    static const char *bad[] = {
        "10 abc ima-ng sha1:00 x\n",                                       /* hash length */
        "99 0000000000000000000000000000000000000000 ima-ng sha1:00 x\n",  /* PCR */
        "10 0000000000000000000000000000000000000000 ima-ng sha1:00 x\n",  /* digest size */
        "10 0000000000000000000000000000000000000000 ima-ng sha1 x\n",     /* no colon */
        "10 0000000000000000000000000000000000000000 foo-tpl sha1:00 x\n", /* template */
        ("10 0000000000000000000000000000000000000000 ima-sig sha1:"
         "0000000000000000000000000000000000000000 /x zz\n"), /* sig hex */
        "10 0000000000000000000000000000000000000000 ima-ng\n",
        "10 0000000000000000000000000000000000000000\n",
        "x\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tc_ima_log *log = NULL;
        struct tc_reason why;
        char two[512];
        /* As the second line, so that the entry index is 1. */
        snprintf(two, sizeof(two),
                 "10 0000000000000000000000000000000000000000 ima-ng sha1:"
                 "0000000000000000000000000000000000000000 /ok\n%s",
                 bad[i]);
        int rc = tc_ima_log_parse((const uint8_t *)two, strlen(two), NULL, &log, &why);
        if (rc == 0)
            fail_msg("accepted bad line %zu", i);
        assert_null(log);
        assert_int_equal(why.entry, 1);
    }
    /* Binary: truncated at every length, never a crash, always the entry index. */
    struct tc_ima_log *log = build_log(5), *b = NULL;
    struct tc_buf bin;
    tc_buf_init(&bin, 1u << 20);
    assert_int_equal(tc_ima_log_to_binary(log, 0, log->count, &bin), 0);
    for (size_t cut = 1; cut < bin.len; cut++) {
        struct tc_reason why;
        tc_reason_clear(&why);
        int rc = tc_ima_log_parse(
            bin.data, cut, &(struct tc_ima_parse_opts){.format = TC_IMA_FMT_BINARY}, &b, &why);
        if (rc == 0) {
            /* Only cuts at entry boundaries parse. */
            assert_true(b->count < 5);
            tc_ima_log_free(b);
            b = NULL;
            continue;
        }
        assert_true(why.entry >= 0 && why.entry < 5);
    }
    /* Caps. */
    struct tc_reason why;
    assert_int_equal(tc_ima_log_parse(bin.data, bin.len,
                                      &(struct tc_ima_parse_opts){.max_entries = 3}, &b, &why),
                     TC_ERR_TOO_LARGE);
    assert_int_equal(why.entry, 3);
    tc_buf_release(&bin);
    tc_ima_log_free(log);
}

/* Appends a u32le-length-prefixed field. */
static size_t put(uint8_t *buf, size_t off, const void *p, size_t n)
{
    buf[off] = (uint8_t)n;
    buf[off + 1] = (uint8_t)(n >> 8);
    buf[off + 2] = buf[off + 3] = 0;
    memcpy(buf + off + 4, p, n);
    return off + 4 + n;
}

/* ima-ngv2, ima-modsig, evm-sig and custom templates. */
static void other_templates(void **state)
{
    struct tc_ima_log *log = NULL, *b = NULL;
    struct tc_reason why;
    struct tc_buf asc, bin;
    uint8_t td[512], d[32] = {7, 7, 7};
    uint8_t dng[12 + 32], dmod[8 + 32];
    size_t off;
    tc_buf_init(&asc, 1u << 20);
    tc_buf_init(&bin, 1u << 20);
    assert_int_equal(tc_ima_log_new(NULL, &log), 0);

    memcpy(dng, "ima:sha256:", 12); /* d-ngv2: type and algorithm */
    memcpy(dng + 12, d, 32);
    off = put(td, 0, dng, sizeof(dng));
    off = put(td, off, "/v2\0", 4);
    assert_int_equal(tc_ima_log_append(log, 10, "ima-ngv2", td, off, false, &why), 0);

    memcpy(dmod, "sha256:", 8);
    memcpy(dmod + 8, d, 32);
    off = put(td, 0, dmod, sizeof(dmod));
    off = put(td, off, "/lib/modules/x.ko\0", 18);
    off = put(td, off, "", 0);              /* sig */
    off = put(td, off, dmod, sizeof(dmod)); /* d-modsig */
    off = put(td, off, "\x01\x02\x03", 3);  /* modsig */
    assert_int_equal(tc_ima_log_append(log, 10, "ima-modsig", td, off, false, &why), 0);
    off = put(td, 0, dmod, sizeof(dmod));
    off = put(td, off, "/lib/modules/y.ko\0", 18);
    off = put(td, off, "", 0);
    off = put(td, off, "", 0);
    off = put(td, off, "", 0);
    assert_int_equal(tc_ima_log_append(log, 10, "ima-modsig", td, off, false, &why), 0);
    assert_int_equal(log->entries[1].nfields, 5);

    /* Everything so far survives ASCII and binary. */
    assert_int_equal(tc_ima_log_to_ascii(log, 0, log->count, &asc), 0);
    assert_non_null(strstr((char *)asc.data, " ima-ngv2 ima:sha256:0707070000"));
    assert_non_null(strstr((char *)asc.data, "/lib/modules/y.ko   \n")); /* empty fields */
    assert_int_equal(tc_ima_log_parse(asc.data, asc.len, NULL, &b, &why), 0);
    assert_int_equal(tc_ima_log_verify_template_hashes(b, &why), 0);
    assert_ptr_equal(b->entries[0].digest_alg, tc_hash_by_name("sha256"));
    assert_string_equal(b->entries[0].path, "/v2");
    for (size_t k = 0; k < log->count; k++)
        assert_memory_equal(b->entries[k].template_hash, log->entries[k].template_hash, 20);
    tc_ima_log_free(b);

    /* evm-sig: binary only. */
    off = put(td, 0, dmod, sizeof(dmod));
    off = put(td, off, "/etc/passwd\0", 12);
    for (int i = 0; i < 7; i++)
        off = put(td, off, "\x00\x01", 2);
    assert_int_equal(tc_ima_log_append(log, 10, "evm-sig", td, off, false, &why), 0);
    /* A custom template starting with d-ng|n-ng, and one that does not. */
    off = put(td, 0, dmod, sizeof(dmod));
    off = put(td, off, "/custom\0", 8);
    off = put(td, off, "x", 1);
    assert_int_equal(tc_ima_log_append(log, 11, "my-tpl", td, off, false, &why), 0);
    off = put(td, 0, "garbage", 7);
    assert_int_equal(tc_ima_log_append(log, 11, "other-tpl", td, off, false, &why), 0);
    asc.len = 0;
    assert_int_equal(tc_ima_log_to_ascii(log, 0, log->count, &asc), TC_ERR_UNSUPPORTED);
    assert_int_equal(tc_ima_log_to_binary(log, 0, log->count, &bin), 0);
    assert_int_equal(tc_ima_log_parse(bin.data, bin.len, NULL, &b, &why), 0);
    assert_int_equal(tc_ima_log_verify_template_hashes(b, &why), 0);
    assert_int_equal(b->entries[3].tpl, TC_IMA_TPL_EVMSIG);
    assert_string_equal(b->entries[3].path, "/etc/passwd");
    assert_int_equal(b->entries[4].tpl, TC_IMA_TPL_OTHER);
    assert_string_equal(b->entries[4].path, "/custom");
    assert_null(b->entries[5].path);
    assert_int_equal(b->entries[5].pcr, 11);

    /* Replay touches PCR 11 too. */
    struct tc_ima_replay_state st;
    assert_int_equal(tc_ima_replay_init(&st, NULL, 0, 0), 0);
    assert_int_equal(tc_ima_replay_advance(&st, b, &why), 0);
    assert_true(tc_pcrs_bank_const(&st.pcrs, tc_hash_by_name("sha1"))->mask & (1u << 11));

    /* ASCII evm-sig lines are refused by name. */
    const char *line = "10 0000000000000000000000000000000000000000 evm-sig sha1:00 /x\n";
    tc_ima_log_free(b);
    assert_int_equal(tc_ima_log_parse((const uint8_t *)line, strlen(line), NULL, &b, &why),
                     TC_ERR_UNSUPPORTED);
    assert_non_null(strstr(why.detail, "evm-sig"));
    tc_buf_release(&asc);
    tc_buf_release(&bin);
    tc_ima_log_free(log);
}

/* ---- incremental replay ------------------------------------------------------------------ */

static struct tc_ima_log *slice(const struct tc_ima_log *full, size_t from, size_t to)
{
    struct tc_buf bin;
    struct tc_ima_log *out = NULL;
    tc_buf_init(&bin, 1u << 24);
    assert_int_equal(tc_ima_log_to_binary(full, from, to, &bin), 0);
    struct tc_ima_parse_opts o = {.format = TC_IMA_FMT_BINARY, .first_index = from};
    assert_int_equal(tc_ima_log_parse(bin.data, bin.len, &o, &out, NULL), 0);
    tc_buf_release(&bin);
    return out;
}

static void incremental_replay(void **state)
{
    struct tc_ima_log *full = build_log(300);
    struct tc_reason why;
    struct tc_ima_replay_state whole, inc;
    assert_int_equal(tc_ima_replay_init(&whole, NULL, 0, 0), 0);
    assert_int_equal(tc_ima_replay_advance(&whole, full, &why), 0);
    assert_int_equal(whole.count, 300);

    assert_int_equal(tc_ima_replay_init(&inc, NULL, 0, 0), 0);
    for (size_t from = 0; from < 300; from += 100) {
        struct tc_ima_log *d = slice(full, from, from + 100);
        assert_int_equal(tc_ima_replay_advance(&inc, d, &why), 0);
        tc_ima_log_free(d);
    }
    assert_int_equal(inc.count, 300);
    assert_memory_equal(&inc.pcrs, &whole.pcrs, sizeof(whole.pcrs));

    /* A gap, a delta that starts too early, and an empty delta. */
    struct tc_ima_replay_state st;
    assert_int_equal(tc_ima_replay_init(&st, NULL, 0, 0), 0);
    struct tc_ima_log *d100 = slice(full, 0, 100), *d150 = slice(full, 150, 250),
                      *d50 = slice(full, 50, 150), *d0 = slice(full, 100, 100);
    assert_int_equal(tc_ima_replay_advance(&st, d100, &why), 0);
    assert_int_equal(tc_ima_replay_advance(&st, d150, &why), TC_ERR_FORMAT);
    assert_string_equal(why.check, "ima.gap");
    assert_int_equal(tc_ima_replay_advance(&st, d50, &why), TC_ERR_ROLLBACK);
    assert_string_equal(why.check, "ima.rollback");
    assert_int_equal(tc_ima_replay_advance(&st, d0, &why), 0);
    assert_int_equal(st.count, 100);

    /* The full list again: its prefix is checked, the rest extended. */
    struct tc_ima_replay_state st2 = st;
    assert_int_equal(tc_ima_replay_advance(&st2, full, &why), 0);
    assert_memory_equal(&st2.pcrs, &whole.pcrs, sizeof(whole.pcrs));

    /* A full list shorter than what was verified: rolled back (e.g. a reboot not noticed). */
    struct tc_ima_log *short50 = slice(full, 0, 50);
    assert_int_equal(tc_ima_replay_advance(&st, short50, &why), TC_ERR_ROLLBACK);

    /* A full list whose verified prefix was reordered: two entries swapped. */
    struct tc_ima_log *swapped = slice(full, 0, 300);
    struct tc_ima_entry tmp = swapped->entries[10];
    swapped->entries[10] = swapped->entries[11];
    swapped->entries[11] = tmp;
    assert_int_equal(tc_ima_replay_advance(&st, swapped, &why), TC_ERR_ROLLBACK);
    assert_string_equal(why.check, "ima.rollback");
    assert_int_equal(st.count, 100);

    /* Swapped inside the new part: the template hashes still verify, but the PCR no longer
     * matches a quote of the real sequence. */
    struct tc_ima_replay_state q = st;
    struct tc_ima_log *sw2 = slice(full, 100, 300);
    tmp = sw2->entries[10];
    sw2->entries[10] = sw2->entries[11];
    sw2->entries[11] = tmp;
    const struct tc_pcr_bank *wb = tc_pcrs_bank_const(&whole.pcrs, H("sha256"));
    assert_int_equal(tc_ima_replay_match_quote(&q, sw2, H("sha256"), 10, wb->value[10], NULL, &why),
                     TC_ERR_MISMATCH);
    assert_string_equal(why.check, "ima.pcr_mismatch");

    tc_ima_log_free(d100);
    tc_ima_log_free(d150);
    tc_ima_log_free(d50);
    tc_ima_log_free(d0);
    tc_ima_log_free(short50);
    tc_ima_log_free(swapped);
    tc_ima_log_free(sw2);
    tc_ima_log_free(full);
}

static void quote_prefix_match(void **state)
{
    struct tc_ima_log *full = build_log(300);
    struct tc_reason why;
    struct tc_ima_replay_state at150, st;
    /* What the TPM held when it quoted: 150 entries. */
    struct tc_ima_log *first150 = slice(full, 0, 150);
    assert_int_equal(tc_ima_replay_init(&at150, NULL, 0, 0), 0);
    assert_int_equal(tc_ima_replay_advance(&at150, first150, &why), 0);
    uint8_t quoted[32];
    memcpy(quoted, tc_pcrs_bank_const(&at150.pcrs, H("sha256"))->value[10], 32);

    /* The agent read the list later: 200 entries, the quote covers the first 150. */
    struct tc_ima_log *d = slice(full, 100, 200);
    struct tc_ima_log *first100 = slice(full, 0, 100);
    assert_int_equal(tc_ima_replay_init(&st, NULL, 0, 0), 0);
    assert_int_equal(tc_ima_replay_advance(&st, first100, &why), 0);
    uint64_t matched = 0;
    assert_int_equal(tc_ima_replay_match_quote(&st, d, H("sha256"), 10, quoted, &matched, &why), 0);
    assert_int_equal(matched, 150);
    assert_int_equal(st.count, 150);
    assert_memory_equal(&st.pcrs, &at150.pcrs, sizeof(st.pcrs));

    /* Next round: the delta from 150 on matches a quote of all 300. */
    struct tc_ima_replay_state all;
    assert_int_equal(tc_ima_replay_init(&all, NULL, 0, 0), 0);
    assert_int_equal(tc_ima_replay_advance(&all, full, &why), 0);
    struct tc_ima_log *rest = slice(full, 150, 300);
    assert_int_equal(tc_ima_replay_match_quote(&st, rest, H("sha1"), 10,
                                               tc_pcrs_bank_const(&all.pcrs, H("sha1"))->value[10],
                                               &matched, &why),
                     0);
    assert_int_equal(matched, 300);
    /* A quote no prefix reaches. */
    uint8_t junk[32] = {1};
    assert_int_equal(tc_ima_replay_match_quote(&st, rest, H("sha256"), 10, junk, &matched, &why),
                     TC_ERR_ROLLBACK); /* rest starts at 150, state is at 300 now */
    struct tc_ima_log *none = slice(full, 300, 300);
    assert_int_equal(tc_ima_replay_match_quote(&st, none, H("sha256"), 10, junk, &matched, &why),
                     TC_ERR_MISMATCH);
    assert_int_equal(st.count, 300);
    tc_ima_log_free(none);
    tc_ima_log_free(rest);
    tc_ima_log_free(first150);
    tc_ima_log_free(first100);
    tc_ima_log_free(d);
    tc_ima_log_free(full);
}

static void sha1_padded_and_violation(void **state)
{
    struct tc_ima_log *log = build_log(60);
    const struct tc_hash_alg *b256[] = {H("sha256")};
    struct tc_ima_replay_state st;
    assert_int_equal(tc_ima_replay_init(&st, b256, 1, TC_IMA_REPLAY_SHA1_PADDED), 0);
    assert_int_equal(tc_ima_replay_advance(&st, log, NULL), 0);
    /* Recompute by hand: sha1 template hash padded to 32 bytes, 0xff for the violation. */
    uint8_t pcr[32] = {0}, d[32];
    for (size_t i = 0; i < log->count; i++) {
        memset(d, 0, 32);
        if (log->entries[i].violation)
            memset(d, 0xff, 32);
        else
            memcpy(d, log->entries[i].template_hash, 20);
        assert_int_equal(tc_hash2(H("sha256"), pcr, 32, d, 32, pcr), 0);
    }
    assert_memory_equal(pcr, tc_pcrs_bank_const(&st.pcrs, H("sha256"))->value[10], 32);
    tc_ima_log_free(log);
}

static void boot_aggregate(void **state)
{
    struct tc_pcr_set s;
    uint8_t zero[160] = {0}, want[32], got[32];
    tc_pcrs_init(&s);
    for (unsigned p = 0; p < 10; p++) {
        tc_pcrs_set(&s, H("sha1"), p, zero);
        tc_pcrs_set(&s, H("sha256"), p, zero);
    }
    assert_int_equal(tc_ima_boot_aggregate(&s, H("sha1"), got), 0);
    tc_hash(H("sha1"), zero, 160, want);
    assert_memory_equal(got, want, 20);
    assert_int_equal(tc_ima_boot_aggregate(&s, H("sha256"), got), 0);
    uint8_t z320[320] = {0};
    tc_hash(H("sha256"), z320, 320, want);
    assert_memory_equal(got, want, 32);
    assert_int_equal(tc_ima_boot_aggregate(&s, H("sha384"), got), TC_ERR_NOT_FOUND);
}

static void replay_speed(void **state)
{
    struct tc_ima_log *full = build_log(1000);
    struct tc_ima_log *d[10];
    for (size_t i = 0; i < 10; i++)
        d[i] = slice(full, i * 100, i * 100 + 100);
    struct tc_ima_replay_state st;
    struct timespec t0, t1;
    int rounds = 200;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < rounds; r++) {
        assert_int_equal(tc_ima_replay_init(&st, NULL, 0, 0), 0);
        for (size_t i = 0; i < 10; i++)
            assert_int_equal(tc_ima_replay_advance(&st, d[i], NULL), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("# replay (template-hash check + sha1 + sha256 banks): %.0f 100-entry deltas/s "
           "(%.2f us/entry)\n",
           rounds * 10 / s, s * 1e6 / (rounds * 1000.0));
    struct tc_buf bin;
    tc_buf_init(&bin, 1u << 24);
    assert_int_equal(tc_ima_log_to_binary(full, 0, 100, &bin), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < rounds * 10; r++) {
        struct tc_ima_log *l = NULL;
        assert_int_equal(tc_ima_log_parse(bin.data, bin.len, NULL, &l, NULL), 0);
        tc_ima_log_free(l);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("# binary parse: %.0f 100-entry deltas/s\n", rounds * 10 / s);
    tc_buf_release(&bin);
    for (size_t i = 0; i < 10; i++)
        tc_ima_log_free(d[i]);
    tc_ima_log_free(full);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fixtures_parse_and_replay),
        cmocka_unit_test(fixture_unknown_algorithm),
        cmocka_unit_test(ascii_binary_roundtrip),
        cmocka_unit_test(generated_roundtrips),
        cmocka_unit_test(binary_big_endian),
        cmocka_unit_test(other_templates),
        cmocka_unit_test(template_hash_mismatch_named),
        cmocka_unit_test(malformed_inputs),
        cmocka_unit_test(incremental_replay),
        cmocka_unit_test(quote_prefix_match),
        cmocka_unit_test(sha1_padded_and_violation),
        cmocka_unit_test(boot_aggregate),
        cmocka_unit_test(replay_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
