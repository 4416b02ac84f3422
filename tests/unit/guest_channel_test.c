/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest channel (trustcloud/guest_channel.h): frames written byte by byte against the
 * protocol text, decoded whole, in pieces of every size and back to back; every header refusal
 * (magic, version, type, reserved bits, a length above the type's cap refused before any
 * payload), truncation at every offset; each payload type round-tripped through its encoder,
 * and every malformed member refused with check "guest.payload" naming the member.
 *
 * With TC_GC_CORPUS_DIR set, also writes the frames it builds there, each after the piece-size
 * byte the harness reads first (the seed corpus of fuzz/guest_channel.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/guest_channel.h"

/* A frame from the protocol text: "TCGC", version, type, reserved, BE length, payload. */
static size_t raw_frame(uint8_t *out, uint8_t version, uint8_t type, uint16_t reserved,
                        uint32_t length, const char *payload)
{
    memcpy(out, "TCGC", 4);
    out[4] = version;
    out[5] = type;
    out[6] = (uint8_t)(reserved >> 8);
    out[7] = (uint8_t)reserved;
    out[8] = (uint8_t)(length >> 24);
    out[9] = (uint8_t)(length >> 16);
    out[10] = (uint8_t)(length >> 8);
    out[11] = (uint8_t)length;
    size_t n = payload ? strlen(payload) : 0;
    if (n)
        memcpy(out + 12, payload, n);
    return 12 + n;
}

static int corpus_n;
static void corpus_write(const uint8_t *data, size_t len)
{
    const char *dir = getenv("TC_GC_CORPUS_DIR");
    if (dir == NULL)
        return;
    char path[4096];
    snprintf(path, sizeof(path), "%s/unit-%03d", dir, corpus_n);
    /* The harness takes its piece size from the first byte. */
    uint8_t *in = malloc(len + 1);
    assert_non_null(in);
    in[0] = (uint8_t)(corpus_n++ * 37);
    memcpy(in + 1, data, len);
    assert_int_equal(tc_file_write(path, in, len + 1, 0644), 0);
    free(in);
}

/* Feeds data in pieces of `step` bytes; returns the feed result of the last call and the frame
 * count; *why gets the refusal. */
static int feed_all(struct tc_gc_decoder *d, const uint8_t *data, size_t len, size_t step,
                    int *frames, struct tc_reason *why)
{
    size_t off = 0;
    *frames = 0;
    while (off < len) {
        size_t n = len - off < step ? len - off : step, used;
        int rc = tc_gc_decoder_feed(d, data + off, n, &used, why);
        if (rc < 0)
            return rc;
        assert_true(used <= n);
        off += used;
        if (rc == 1) {
            (*frames)++;
            tc_gc_decoder_next(d);
        } else {
            assert_int_equal(used, n);
        }
    }
    return 0;
}

static void test_encode_matches_text(void **state)
{
    (void)state;
    struct tc_buf b;
    tc_buf_init(&b, 1 << 20);
    assert_int_equal(tc_gc_frame_encode(TC_GC_HELLO, "{\"version\":1}", 13, &b), 0);
    uint8_t want[64];
    size_t n = raw_frame(want, 1, 1, 0, 13, "{\"version\":1}");
    assert_int_equal(b.len, n);
    assert_memory_equal(b.data, want, n);
    corpus_write(b.data, b.len);
    /* Caps and types. */
    assert_int_equal(tc_gc_frame_encode(9, "x", 1, &b), TC_ERR_INVALID_ARG);
    assert_int_equal(tc_gc_frame_encode(TC_GC_HELLO, b.data, TC_GC_MAX_SMALL + 1, &b),
                     TC_ERR_TOO_LARGE);
    assert_int_equal(tc_gc_type_cap(TC_GC_QUOTE_ANSWER), 16u << 20);
    assert_int_equal(tc_gc_type_cap(0), 0);
    tc_buf_release(&b);
}

static void test_decode_pieces(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t n1 = raw_frame(buf, 1, TC_GC_HELLO, 0, 13, "{\"version\":1}");
    size_t n2 = raw_frame(buf + n1, 1, TC_GC_ERROR, 0, 0, NULL); /* empty payload */
    size_t n3 = raw_frame(buf + n1 + n2, 1, TC_GC_QUOTE_REQUEST, 0, 2, "{}");
    size_t total = n1 + n2 + n3;
    for (size_t step = 1; step <= total; step++) {
        struct tc_gc_decoder d;
        struct tc_reason why;
        int frames;
        tc_gc_decoder_init(&d, 0);
        assert_int_equal(feed_all(&d, buf, total, step, &frames, &why), 0);
        assert_int_equal(frames, 3);
        assert_int_equal(tc_gc_decoder_finish(&d, &why), 0);
        tc_gc_decoder_release(&d);
    }
    /* The frame's contents. */
    struct tc_gc_decoder d;
    struct tc_reason why;
    size_t used;
    tc_gc_decoder_init(&d, 0);
    assert_int_equal(tc_gc_decoder_feed(&d, buf, total, &used, &why), 1);
    assert_int_equal(used, n1);
    unsigned type;
    const uint8_t *p;
    size_t len;
    assert_int_equal(tc_gc_decoder_frame(&d, &type, &p, &len), 0);
    assert_int_equal(type, TC_GC_HELLO);
    assert_int_equal(len, 13);
    assert_memory_equal(p, "{\"version\":1}", 13);
    /* A ready frame is not overwritten by more bytes. */
    assert_int_equal(tc_gc_decoder_feed(&d, buf + n1, n2, &used, &why), 1);
    assert_int_equal(used, 0);
    tc_gc_decoder_next(&d);
    assert_int_equal(tc_gc_decoder_frame(&d, &type, &p, &len), TC_ERR_NOT_FOUND);
    tc_gc_decoder_release(&d);
    corpus_write(buf, total);
}

static void expect_header_refusal(const uint8_t *frame, size_t len, size_t reader_cap, int code,
                                  const char *check)
{
    struct tc_gc_decoder d;
    struct tc_reason why;
    size_t used;
    tc_reason_clear(&why);
    tc_gc_decoder_init(&d, reader_cap);
    assert_int_equal(tc_gc_decoder_feed(&d, frame, len, &used, &why), code);
    assert_string_equal(why.check, check);
    assert_int_equal(used, TC_GC_HEADER_LEN); /* refused from the header alone */
    assert_null(d.payload.data);
    /* Sticky. */
    assert_true(tc_gc_decoder_feed(&d, frame, len, &used, &why) < 0);
    assert_int_equal(used, 0);
    tc_gc_decoder_release(&d);
    corpus_write(frame, len);
}

static void test_header_refusals(void **state)
{
    (void)state;
    uint8_t f[64];
    size_t n = raw_frame(f, 1, TC_GC_HELLO, 0, 2, "{}");
    f[0] = 'X';
    expect_header_refusal(f, n, 0, TC_ERR_FORMAT, "guest.frame");
    n = raw_frame(f, 2, TC_GC_HELLO, 0, 2, "{}");
    expect_header_refusal(f, n, 0, TC_ERR_UNSUPPORTED, "guest.version");
    n = raw_frame(f, 0, TC_GC_HELLO, 0, 2, "{}");
    expect_header_refusal(f, n, 0, TC_ERR_UNSUPPORTED, "guest.version");
    n = raw_frame(f, 1, 0, 0, 2, "{}");
    expect_header_refusal(f, n, 0, TC_ERR_UNSUPPORTED, "guest.type");
    n = raw_frame(f, 1, 7, 0, 2, "{}");
    expect_header_refusal(f, n, 0, TC_ERR_UNSUPPORTED, "guest.type");
    n = raw_frame(f, 1, TC_GC_HELLO, 0x0100, 2, "{}");
    expect_header_refusal(f, n, 0, TC_ERR_FORMAT, "guest.frame");
    /* Caps by type: a small type one byte over, an answer one byte over, 4 GiB - 1. */
    n = raw_frame(f, 1, TC_GC_HELLO, 0, TC_GC_MAX_SMALL + 1, NULL);
    expect_header_refusal(f, n, 0, TC_ERR_TOO_LARGE, "guest.too_large");
    n = raw_frame(f, 1, TC_GC_QUOTE_REQUEST, 0, TC_GC_MAX_SMALL + 1, NULL);
    expect_header_refusal(f, n, 0, TC_ERR_TOO_LARGE, "guest.too_large");
    n = raw_frame(f, 1, TC_GC_QUOTE_ANSWER, 0, TC_GC_MAX_ANSWER + 1, NULL);
    expect_header_refusal(f, n, 0, TC_ERR_TOO_LARGE, "guest.too_large");
    n = raw_frame(f, 1, TC_GC_QUOTE_ANSWER, 0, 0xffffffffu, NULL);
    expect_header_refusal(f, n, 0, TC_ERR_TOO_LARGE, "guest.too_large");
    /* The reader's own cap (the guest reads only small frames). */
    n = raw_frame(f, 1, TC_GC_QUOTE_ANSWER, 0, TC_GC_MAX_SMALL + 1, NULL);
    expect_header_refusal(f, n, TC_GC_MAX_SMALL, TC_ERR_TOO_LARGE, "guest.too_large");
    /* Exactly at the cap is fine (header accepted, payload awaited). */
    struct tc_gc_decoder d;
    struct tc_reason why;
    size_t used;
    n = raw_frame(f, 1, TC_GC_HELLO, 0, TC_GC_MAX_SMALL, NULL);
    tc_gc_decoder_init(&d, 0);
    assert_int_equal(tc_gc_decoder_feed(&d, f, n, &used, &why), 0);
    assert_int_equal(tc_gc_decoder_finish(&d, &why), TC_ERR_TRUNCATED);
    tc_gc_decoder_release(&d);
}

static void test_truncation_everywhere(void **state)
{
    (void)state;
    uint8_t f[64];
    size_t n = raw_frame(f, 1, TC_GC_HELLO, 0, 13, "{\"version\":1}");
    for (size_t cut = 1; cut < n; cut++) {
        struct tc_gc_decoder d;
        struct tc_reason why;
        size_t used;
        tc_gc_decoder_init(&d, 0);
        assert_int_equal(tc_gc_decoder_feed(&d, f, cut, &used, &why), 0);
        assert_int_equal(used, cut);
        tc_reason_clear(&why);
        assert_int_equal(tc_gc_decoder_finish(&d, &why), TC_ERR_TRUNCATED);
        assert_string_equal(why.check, "guest.truncated");
        tc_gc_decoder_release(&d);
    }
}

/* Parses a payload of the given type, expecting rc and (for failures) check and a detail
 * containing needle. */
static void expect_payload(unsigned type, const char *json, int rc, const char *needle)
{
    struct tc_reason why;
    tc_reason_clear(&why);
    const uint8_t *p = (const uint8_t *)json;
    size_t n = strlen(json);
    int got;
    struct tc_gc_hello h;
    struct tc_gc_request r;
    struct tc_gc_answer a;
    struct tc_gc_error e;
    struct tc_gc_activate act;
    struct tc_gc_activated done;
    switch (type) {
    case TC_GC_ACTIVATE_REQUEST:
        got = tc_gc_activate_parse(p, n, &act, &why);
        break;
    case TC_GC_ACTIVATE_ANSWER:
        got = tc_gc_activated_parse(p, n, &done, &why);
        if (got != 0)
            assert_int_equal(done.secret_len, 0);
        break;
    case TC_GC_HELLO:
        got = tc_gc_hello_parse(p, n, &h, &why);
        break;
    case TC_GC_QUOTE_REQUEST:
        got = tc_gc_request_parse(p, n, &r, &why);
        break;
    case TC_GC_QUOTE_ANSWER:
        got = tc_gc_answer_parse(p, n, &a, &why);
        if (got == 0)
            tc_gc_answer_release(&a);
        else
            assert_null(a.attest);
        break;
    default:
        got = tc_gc_error_parse(p, n, &e, &why);
        break;
    }
    if (got != rc)
        fail_msg("%s: got %d (%s: %s), expected %d", json, got, why.check, why.detail, rc);
    if (rc != 0) {
        assert_true(strcmp(why.check, "guest.payload") == 0 ||
                    strcmp(why.check, "guest.version") == 0);
        if (needle != NULL && strstr(why.detail, needle) == NULL)
            fail_msg("%s: detail \"%s\" does not name %s", json, why.detail, needle);
    }
    /* The same payload framed, for the fuzzer's seed corpus. */
    struct tc_buf b;
    tc_buf_init(&b, 1 << 20);
    if (tc_gc_frame_encode(type, json, n, &b) == 0)
        corpus_write(b.data, b.len);
    tc_buf_release(&b);
}

static void test_hello(void **state)
{
    (void)state;
    struct tc_buf b;
    tc_buf_init(&b, 1 << 20);
    uint8_t ak[70];
    memset(ak, 0xab, sizeof(ak));
    assert_int_equal(tc_gc_hello_encode("trustcloud-guest 0.1.0",
                                        TC_GC_CAP_QUOTE | TC_GC_CAP_IMA | TC_GC_CAP_EVENTLOG, ak,
                                        sizeof(ak), &b),
                     0);
    corpus_write(b.data, b.len);
    struct tc_gc_hello h;
    struct tc_reason why;
    assert_int_equal(tc_gc_hello_parse(b.data + 12, b.len - 12, &h, &why), 0);
    assert_string_equal(h.agent, "trustcloud-guest 0.1.0");
    assert_int_equal(h.caps, TC_GC_CAP_QUOTE | TC_GC_CAP_IMA | TC_GC_CAP_EVENTLOG);
    assert_int_equal(h.ak_pub_len, sizeof(ak));
    assert_memory_equal(h.ak_pub, ak, sizeof(ak));
    b.len = 0;
    assert_int_equal(tc_gc_hello_encode(NULL, 0, NULL, 0, &b), 0);
    assert_int_equal(tc_gc_hello_parse(b.data + 12, b.len - 12, &h, &why), 0);
    assert_int_equal(h.caps, 0);
    tc_buf_release(&b);

    expect_payload(TC_GC_HELLO,
                   "{\"version\":1,\"capabilities\":[\"quote\",\"teleport\"],"
                   "\"ak_pub\":\"AAEC\"}",
                   0, NULL); /* unknown capability ignored */
    expect_payload(TC_GC_HELLO, "{\"version\":2}", TC_ERR_UNSUPPORTED, "version");
    expect_payload(TC_GC_HELLO, "{}", TC_ERR_FORMAT, "version");
    expect_payload(TC_GC_HELLO, "{\"version\":\"1\"}", TC_ERR_FORMAT, "version");
    expect_payload(TC_GC_HELLO, "{\"version\":1.0}", TC_ERR_FORMAT, "version");
    expect_payload(TC_GC_HELLO, "{\"version\":1,\"extra\":0}", TC_ERR_FORMAT, "extra");
    expect_payload(TC_GC_HELLO, "{\"version\":1,\"version\":1}", TC_ERR_FORMAT, NULL);
    expect_payload(TC_GC_HELLO, "[1]", TC_ERR_FORMAT, "object");
    expect_payload(TC_GC_HELLO, "{\"version\":1} trailing", TC_ERR_FORMAT, NULL);
    expect_payload(TC_GC_HELLO, "{\"version\":1,\"capabilities\":[\"quote\"]}", TC_ERR_FORMAT,
                   "ak_pub");
    expect_payload(TC_GC_HELLO, "{\"version\":1,\"capabilities\":\"quote\"}", TC_ERR_FORMAT,
                   "capabilities");
    expect_payload(TC_GC_HELLO, "{\"version\":1,\"capabilities\":[1]}", TC_ERR_FORMAT,
                   "capabilities");
    expect_payload(TC_GC_HELLO, "{\"version\":1,\"ak_pub\":\"AAE\"}", TC_ERR_FORMAT, "ak_pub");
    expect_payload(TC_GC_HELLO, "{\"version\":1,\"ak_pub\":\"\"}", TC_ERR_FORMAT, "ak_pub");
    expect_payload(TC_GC_HELLO, "{\"version\":1,\"agent\":\"a\\u0000b\"}", TC_ERR_FORMAT, "NUL");
    char big[1400];
    snprintf(big, sizeof(big), "{\"version\":1,\"agent\":\"%0300d\"}", 0);
    expect_payload(TC_GC_HELLO, big, TC_ERR_TOO_LARGE, "agent");
}

static void test_request(void **state)
{
    (void)state;
    struct tc_gc_request r, back;
    memset(&r, 0, sizeof(r));
    r.id = 7;
    r.nonce_len = 32;
    memset(r.nonce, 0x5a, 32);
    strcpy(r.selection_text, "sha256:0,1,2,3,4,5,6,7,8,9,10+sha1:10");
    r.ima_from = 1234;
    r.want_eventlog = true;
    struct tc_buf b;
    tc_buf_init(&b, 1 << 20);
    assert_int_equal(tc_gc_request_encode(&r, &b), 0);
    corpus_write(b.data, b.len);
    struct tc_reason why;
    assert_int_equal(tc_gc_request_parse(b.data + 12, b.len - 12, &back, &why), 0);
    assert_int_equal(back.id, 7);
    assert_int_equal(back.nonce_len, 32);
    assert_memory_equal(back.nonce, r.nonce, 32);
    assert_int_equal(back.ima_from, 1234);
    assert_true(back.want_eventlog);
    assert_int_equal(back.selection.nbanks, 2);
    assert_int_equal(back.selection.bank[0].mask, 0x7ff);
    assert_int_equal(back.selection.bank[1].mask, 1u << 10);
    r.id = 0;
    assert_int_equal(tc_gc_request_encode(&r, &b), TC_ERR_INVALID_ARG);
    tc_buf_release(&b);

    const char *ok = "{\"id\":1,\"nonce\":\"00\",\"pcr_selection\":\"sha256:10\"}";
    expect_payload(TC_GC_QUOTE_REQUEST, ok, 0, NULL);
    expect_payload(TC_GC_QUOTE_REQUEST, "{\"nonce\":\"00\",\"pcr_selection\":\"sha256:10\"}",
                   TC_ERR_FORMAT, "id");
    expect_payload(TC_GC_QUOTE_REQUEST,
                   "{\"id\":0,\"nonce\":\"00\",\"pcr_selection\":\"sha256:10\"}", TC_ERR_FORMAT,
                   "id");
    expect_payload(TC_GC_QUOTE_REQUEST,
                   "{\"id\":-1,\"nonce\":\"00\",\"pcr_selection\":\"sha256:10\"}", TC_ERR_FORMAT,
                   "id");
    expect_payload(TC_GC_QUOTE_REQUEST,
                   "{\"id\":9007199254740992,\"nonce\":\"00\",\"pcr_selection\":\"sha256:10\"}",
                   TC_ERR_FORMAT, "id");
    expect_payload(TC_GC_QUOTE_REQUEST, "{\"id\":1,\"nonce\":\"\",\"pcr_selection\":\"sha256:10\"}",
                   TC_ERR_FORMAT, "nonce");
    expect_payload(TC_GC_QUOTE_REQUEST,
                   "{\"id\":1,\"nonce\":\"0\",\"pcr_selection\":\"sha256:10\"}", TC_ERR_FORMAT,
                   "nonce");
    expect_payload(TC_GC_QUOTE_REQUEST,
                   "{\"id\":1,\"nonce\":\"zz\",\"pcr_selection\":\"sha256:10\"}", TC_ERR_FORMAT,
                   "nonce");
    char nonce65[256];
    snprintf(nonce65, sizeof(nonce65),
             "{\"id\":1,\"nonce\":\"%0130d\",\"pcr_selection\":\"sha256:10\"}", 0);
    expect_payload(TC_GC_QUOTE_REQUEST, nonce65, TC_ERR_TOO_LARGE, "nonce");
    expect_payload(TC_GC_QUOTE_REQUEST, "{\"id\":1,\"nonce\":\"00\"}", TC_ERR_FORMAT,
                   "pcr_selection");
    expect_payload(TC_GC_QUOTE_REQUEST, "{\"id\":1,\"nonce\":\"00\",\"pcr_selection\":\"md5:10\"}",
                   TC_ERR_FORMAT, "pcr_selection");
    expect_payload(TC_GC_QUOTE_REQUEST,
                   "{\"id\":1,\"nonce\":\"00\",\"pcr_selection\":\"sha256:10\",\"ima_from\":-5}",
                   TC_ERR_FORMAT, "ima_from");
    expect_payload(
        TC_GC_QUOTE_REQUEST,
        "{\"id\":1,\"nonce\":\"00\",\"pcr_selection\":\"sha256:10\",\"ima_from\":100000001}",
        TC_ERR_FORMAT, "ima_from");
    expect_payload(
        TC_GC_QUOTE_REQUEST,
        "{\"id\":1,\"nonce\":\"00\",\"pcr_selection\":\"sha256:10\",\"want_eventlog\":1}",
        TC_ERR_FORMAT, "want_eventlog");
    expect_payload(TC_GC_QUOTE_REQUEST,
                   "{\"id\":1,\"nonce\":\"00\",\"pcr_selection\":\"sha256:10\",\"vms\":[]}",
                   TC_ERR_FORMAT, "vms");
}

static void test_answer(void **state)
{
    (void)state;
    uint8_t attest[100], sig[72], ima[300], evlog[500];
    memset(attest, 1, sizeof(attest));
    memset(sig, 2, sizeof(sig));
    memset(ima, 3, sizeof(ima));
    memset(evlog, 4, sizeof(evlog));
    struct tc_gc_answer a, back;
    memset(&a, 0, sizeof(a));
    a.id = 3;
    a.attest = attest;
    a.attest_len = sizeof(attest);
    a.sig = sig;
    a.sig_len = sizeof(sig);
    uint8_t d[32];
    memset(d, 0x11, sizeof(d));
    tc_pcrs_init(&a.pcrs);
    assert_int_equal(tc_pcrs_set(&a.pcrs, tc_hash_by_name("sha256"), 10, d), 0);
    assert_int_equal(tc_pcrs_set(&a.pcrs, tc_hash_by_name("sha256"), 0, d), 0);
    a.ima_first = 5;
    a.ima_next = 9;
    a.ima = ima;
    a.ima_len = sizeof(ima);
    a.eventlog = evlog;
    a.eventlog_len = sizeof(evlog);
    struct tc_buf b;
    tc_buf_init(&b, 1 << 20);
    assert_int_equal(tc_gc_answer_encode(&a, &b), 0);
    corpus_write(b.data, b.len);
    struct tc_reason why;
    assert_int_equal(tc_gc_answer_parse(b.data + 12, b.len - 12, &back, &why), 0);
    assert_int_equal(back.id, 3);
    assert_int_equal(back.attest_len, sizeof(attest));
    assert_memory_equal(back.attest, attest, sizeof(attest));
    assert_memory_equal(back.sig, sig, sizeof(sig));
    assert_int_equal(back.ima_first, 5);
    assert_int_equal(back.ima_next, 9);
    assert_int_equal(back.ima_len, sizeof(ima));
    assert_memory_equal(back.ima, ima, sizeof(ima));
    assert_int_equal(back.eventlog_len, sizeof(evlog));
    assert_int_equal(back.pcrs.nbanks, 1);
    assert_int_equal(back.pcrs.bank[0].mask, (1u << 10) | 1u);
    assert_memory_equal(back.pcrs.bank[0].value[10], d, 32);
    tc_gc_answer_release(&back);
    tc_gc_answer_release(NULL);
    /* No IMA entries and no event log. */
    a.ima = NULL;
    a.ima_len = 0;
    a.ima_next = a.ima_first;
    a.eventlog = NULL;
    a.eventlog_len = 0;
    b.len = 0;
    assert_int_equal(tc_gc_answer_encode(&a, &b), 0);
    assert_int_equal(tc_gc_answer_parse(b.data + 12, b.len - 12, &back, &why), 0);
    assert_null(back.ima);
    assert_null(back.eventlog);
    tc_gc_answer_release(&back);
    tc_buf_release(&b);

    const char *h = "{\"id\":1,\"attest\":\"AQID\",\"signature\":\"AQID\",";
    char j[1024];
#define ANSWER(rest) (snprintf(j, sizeof(j), "%s%s", h, rest), j)
    expect_payload(TC_GC_QUOTE_ANSWER, ANSWER("\"pcrs\":{},\"ima\":{\"first\":0,\"next\":0}}"), 0,
                   NULL);
    expect_payload(TC_GC_QUOTE_ANSWER, ANSWER("\"ima\":{\"first\":0,\"next\":0}}"), TC_ERR_FORMAT,
                   "pcrs");
    expect_payload(TC_GC_QUOTE_ANSWER, ANSWER("\"pcrs\":{}}"), TC_ERR_FORMAT, "ima");
    expect_payload(TC_GC_QUOTE_ANSWER,
                   ANSWER("\"pcrs\":{\"md5\":{}},\"ima\":{\"first\":0,\"next\":0}}"),
                   TC_ERR_UNSUPPORTED, "md5");
    expect_payload(TC_GC_QUOTE_ANSWER,
                   ANSWER("\"pcrs\":{\"SHA256\":{}},\"ima\":{\"first\":0,\"next\":0}}"),
                   TC_ERR_UNSUPPORTED, "SHA256");
    expect_payload(
        TC_GC_QUOTE_ANSWER,
        ANSWER("\"pcrs\":{\"sha256\":{\"24\":\"00\"}},\"ima\":{\"first\":0,\"next\":0}}"),
        TC_ERR_FORMAT, "index");
    expect_payload(
        TC_GC_QUOTE_ANSWER,
        ANSWER("\"pcrs\":{\"sha256\":{\"01\":\"00\"}},\"ima\":{\"first\":0,\"next\":0}}"),
        TC_ERR_FORMAT, "index");
    expect_payload(TC_GC_QUOTE_ANSWER,
                   ANSWER("\"pcrs\":{\"sha256\":{\"1\":\"00\"}},\"ima\":{\"first\":0,\"next\":0}}"),
                   TC_ERR_FORMAT, "32 bytes");
    expect_payload(TC_GC_QUOTE_ANSWER,
                   ANSWER("\"pcrs\":{\"sha256\":[]},\"ima\":{\"first\":0,\"next\":0}}"),
                   TC_ERR_FORMAT, "sha256");
    expect_payload(TC_GC_QUOTE_ANSWER, ANSWER("\"pcrs\":{},\"ima\":{\"first\":5,\"next\":4}}"),
                   TC_ERR_FORMAT, "next");
    expect_payload(TC_GC_QUOTE_ANSWER, ANSWER("\"pcrs\":{},\"ima\":{\"first\":0,\"next\":2}}"),
                   TC_ERR_FORMAT, "list");
    expect_payload(TC_GC_QUOTE_ANSWER,
                   ANSWER("\"pcrs\":{},\"ima\":{\"first\":0,\"next\":0,\"list\":\"AQID\"}}"),
                   TC_ERR_FORMAT, "list");
    expect_payload(TC_GC_QUOTE_ANSWER,
                   ANSWER("\"pcrs\":{},\"ima\":{\"first\":0,\"next\":0,\"count\":1}}"),
                   TC_ERR_FORMAT, "count");
    expect_payload(TC_GC_QUOTE_ANSWER,
                   ANSWER("\"pcrs\":{},\"ima\":{\"first\":0,\"next\":0},\"eventlog\":7}"),
                   TC_ERR_FORMAT, "eventlog");
    expect_payload(TC_GC_QUOTE_ANSWER,
                   ANSWER("\"pcrs\":{},\"ima\":{\"first\":0,\"next\":0},\"eventlog\":\"AQJ=\"}"),
                   TC_ERR_FORMAT, "eventlog"); /* non-canonical: stray bits */
    expect_payload(TC_GC_QUOTE_ANSWER,
                   ANSWER("\"pcrs\":{},\"ima\":{\"first\":0,\"next\":0},\"host\":{}}"),
                   TC_ERR_FORMAT, "host");
    expect_payload(TC_GC_QUOTE_ANSWER,
                   "{\"id\":1,\"signature\":\"AQID\",\"pcrs\":{},\"ima\":{\"first\":0,\"next\":0}}",
                   TC_ERR_FORMAT, "attest");
    /* An attest above 1024 bytes. */
    static char huge[4096];
    char *q = huge + snprintf(huge, sizeof(huge), "{\"id\":1,\"attest\":\"");
    for (int i = 0; i < 1400; i++)
        *q++ = 'A';
    snprintf(q, sizeof(huge) - (size_t)(q - huge),
             "\",\"signature\":\"AQID\",\"pcrs\":{},\"ima\":{\"first\":0,\"next\":0}}");
    expect_payload(TC_GC_QUOTE_ANSWER, huge, TC_ERR_TOO_LARGE, "attest");
#undef ANSWER
}

static void test_error(void **state)
{
    (void)state;
    struct tc_buf b;
    tc_buf_init(&b, 1 << 20);
    assert_int_equal(tc_gc_error_encode(4, "guest.tpm", "the vTPM did not quote", &b), 0);
    corpus_write(b.data, b.len);
    struct tc_gc_error e;
    struct tc_reason why;
    assert_int_equal(tc_gc_error_parse(b.data + 12, b.len - 12, &e, &why), 0);
    assert_int_equal(e.id, 4);
    assert_string_equal(e.check, "guest.tpm");
    assert_string_equal(e.error, "the vTPM did not quote");
    tc_buf_release(&b);
    expect_payload(TC_GC_ERROR, "{\"id\":0,\"check\":\"x\"}", TC_ERR_FORMAT, "error");
    char longcheck[256];
    snprintf(longcheck, sizeof(longcheck), "{\"id\":0,\"check\":\"%060d\",\"error\":\"e\"}", 0);
    expect_payload(TC_GC_ERROR, longcheck, TC_ERR_TOO_LARGE, "check");
}

static void test_activate(void **state)
{
    (void)state;
    struct tc_buf b;
    struct tc_reason why;
    tc_buf_init(&b, 1 << 20);
    struct tc_gc_activate a, back;
    memset(&a, 0, sizeof(a));
    a.id = 9;
    a.id_object_len = 68;
    memset(a.id_object, 0xa5, a.id_object_len);
    a.enc_secret_len = 258;
    memset(a.enc_secret, 0x5a, a.enc_secret_len);
    assert_int_equal(tc_gc_activate_encode(&a, &b), 0);
    corpus_write(b.data, b.len);
    assert_int_equal(b.data[5], TC_GC_ACTIVATE_REQUEST);
    assert_int_equal(tc_gc_activate_parse(b.data + 12, b.len - 12, &back, &why), 0);
    assert_int_equal(back.id, 9);
    assert_int_equal(back.id_object_len, 68);
    assert_int_equal(back.enc_secret_len, 258);
    assert_memory_equal(back.enc_secret, a.enc_secret, 258);
    /* Nothing to send is refused on both sides. */
    a.id_object_len = 0;
    assert_int_equal(tc_gc_activate_encode(&a, &b), TC_ERR_INVALID_ARG);
    expect_payload(TC_GC_ACTIVATE_REQUEST,
                   "{\"id\":1,\"id_object\":\"\",\"encrypted_secret\":\"AA==\"}", TC_ERR_FORMAT,
                   "id_object");
    expect_payload(TC_GC_ACTIVATE_REQUEST, "{\"id\":1,\"id_object\":\"AA==\"}", TC_ERR_FORMAT,
                   "encrypted_secret: missing");
    expect_payload(TC_GC_ACTIVATE_REQUEST,
                   "{\"id\":0,\"id_object\":\"AA==\",\"encrypted_secret\":\"AA==\"}", TC_ERR_FORMAT,
                   "id");
    expect_payload(TC_GC_ACTIVATE_REQUEST,
                   "{\"id\":1,\"id_object\":\"AA==\",\"encrypted_secret\":\"AA==\",\"x\":1}",
                   TC_ERR_FORMAT, "unknown member");
    /* A blob above its cap, refused from its length. */
    char big[2048];
    int n = snprintf(big, sizeof(big), "{\"id\":1,\"encrypted_secret\":\"AA==\",\"id_object\":\"");
    for (int i = 0; i < 1400; i++)
        big[n++] = 'A';
    snprintf(big + n, sizeof(big) - (size_t)n, "\"}");
    expect_payload(TC_GC_ACTIVATE_REQUEST, big, TC_ERR_TOO_LARGE, "id_object");

    b.len = 0;
    uint8_t secret[32];
    memset(secret, 0x42, sizeof(secret));
    assert_int_equal(tc_gc_activated_encode(9, secret, sizeof(secret), &b), 0);
    corpus_write(b.data, b.len);
    struct tc_gc_activated d;
    assert_int_equal(tc_gc_activated_parse(b.data + 12, b.len - 12, &d, &why), 0);
    assert_int_equal(d.id, 9);
    assert_int_equal(d.secret_len, 32);
    assert_memory_equal(d.secret, secret, 32);
    assert_int_equal(tc_gc_activated_encode(9, secret, 0, &b), TC_ERR_INVALID_ARG);
    assert_int_equal(tc_gc_activated_encode(9, secret, TC_GC_MAX_SECRET + 1, &b),
                     TC_ERR_INVALID_ARG);
    expect_payload(TC_GC_ACTIVATE_ANSWER, "{\"id\":3}", TC_ERR_FORMAT, "secret: missing");
    char longsecret[256];
    snprintf(longsecret, sizeof(longsecret), "{\"id\":3,\"secret\":\"%0120d\"}", 0);
    expect_payload(TC_GC_ACTIVATE_ANSWER, longsecret, TC_ERR_TOO_LARGE, "secret");
    /* The hello names the capability. */
    b.len = 0;
    uint8_t ak[4] = {0, 2, 1, 2};
    struct tc_gc_hello h;
    assert_int_equal(tc_gc_hello_encode("g 1", TC_GC_CAP_QUOTE | TC_GC_CAP_ACTIVATE, ak, 4, &b), 0);
    assert_int_equal(tc_gc_hello_parse(b.data + 12, b.len - 12, &h, &why), 0);
    assert_int_equal(h.caps, TC_GC_CAP_QUOTE | TC_GC_CAP_ACTIVATE);
    tc_buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_matches_text),
        cmocka_unit_test(test_decode_pieces),
        cmocka_unit_test(test_header_refusals),
        cmocka_unit_test(test_truncation_everywhere),
        cmocka_unit_test(test_hello),
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_answer),
        cmocka_unit_test(test_error),
        cmocka_unit_test(test_activate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
