/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest channel's frames and payloads (trustcloud/guest_channel.h). The host parses what a
 * guest sends with these functions, so everything here treats its input as hostile: the
 * header is checked before a byte of payload is buffered, the payload buffer never grows past
 * the frame's own length, and payload members are checked one by one against a fixed list.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "trustcloud/error.h"
#include "trustcloud/guest_channel.h"

#define CHECK_PAYLOAD "guest.payload"

size_t tc_gc_type_cap(unsigned type)
{
    switch (type) {
    case TC_GC_HELLO:
    case TC_GC_QUOTE_REQUEST:
    case TC_GC_ERROR:
    case TC_GC_ACTIVATE_REQUEST:
    case TC_GC_ACTIVATE_ANSWER:
        return TC_GC_MAX_SMALL;
    case TC_GC_QUOTE_ANSWER:
        return TC_GC_MAX_ANSWER;
    default:
        return 0;
    }
}

const char *tc_gc_type_name(unsigned type)
{
    switch (type) {
    case TC_GC_HELLO:
        return "hello";
    case TC_GC_QUOTE_REQUEST:
        return "quote_request";
    case TC_GC_QUOTE_ANSWER:
        return "quote_answer";
    case TC_GC_ERROR:
        return "error";
    case TC_GC_ACTIVATE_REQUEST:
        return "activate_request";
    case TC_GC_ACTIVATE_ANSWER:
        return "activate_answer";
    default:
        return "unknown";
    }
}

int tc_gc_frame_encode(unsigned type, const void *payload, size_t len, struct tc_buf *out)
{
    size_t cap = tc_gc_type_cap(type);
    if (cap == 0 || (len > 0 && payload == NULL))
        return TC_ERR_INVALID_ARG;
    if (len > cap)
        return TC_ERR_TOO_LARGE;
    uint8_t h[TC_GC_HEADER_LEN] = {(uint8_t)(TC_GC_MAGIC >> 24),
                                   (uint8_t)(TC_GC_MAGIC >> 16),
                                   (uint8_t)(TC_GC_MAGIC >> 8),
                                   (uint8_t)TC_GC_MAGIC,
                                   TC_GC_VERSION,
                                   (uint8_t)type,
                                   0,
                                   0,
                                   (uint8_t)(len >> 24),
                                   (uint8_t)(len >> 16),
                                   (uint8_t)(len >> 8),
                                   (uint8_t)len};
    int rc = tc_buf_put(out, h, sizeof(h));
    if (rc == 0 && len > 0)
        rc = tc_buf_put(out, payload, len);
    return rc;
}

/* ---- Decoder ----------------------------------------------------------------------------- */

void tc_gc_decoder_init(struct tc_gc_decoder *d, size_t max_payload)
{
    memset(d, 0, sizeof(*d));
    d->max_payload = max_payload;
    tc_buf_init(&d->payload, 0);
}

void tc_gc_decoder_release(struct tc_gc_decoder *d)
{
    if (d == NULL)
        return;
    tc_buf_release(&d->payload);
    memset(d, 0, sizeof(*d));
}

/* Checks a whole header; sets type and length. */
static int check_header(struct tc_gc_decoder *d, struct tc_reason *why)
{
    struct tc_reader r;
    uint32_t magic, length;
    uint8_t version, type;
    uint16_t reserved;
    tc_reader_init(&r, d->header, sizeof(d->header));
    if (tc_reader_u32be(&r, &magic) || tc_reader_u8(&r, &version) || tc_reader_u8(&r, &type) ||
        tc_reader_u16be(&r, &reserved) || tc_reader_u32be(&r, &length))
        return tc_fail(why, TC_ERR_INTERNAL, "guest.frame", -1, "short header");
    if (magic != TC_GC_MAGIC)
        return tc_fail(why, TC_ERR_FORMAT, "guest.frame", -1,
                       "bad magic 0x%08x (expected \"TCGC\")", magic);
    if (version != TC_GC_VERSION)
        return tc_fail(why, TC_ERR_UNSUPPORTED, "guest.version", -1,
                       "protocol version %u (this side speaks %u)", version, TC_GC_VERSION);
    size_t cap = tc_gc_type_cap(type);
    if (cap == 0)
        return tc_fail(why, TC_ERR_UNSUPPORTED, "guest.type", -1, "unknown message type %u", type);
    if (reserved != 0)
        return tc_fail(why, TC_ERR_FORMAT, "guest.frame", -1, "reserved header bits 0x%04x set",
                       reserved);
    if (d->max_payload != 0 && d->max_payload < cap)
        cap = d->max_payload;
    if (length > cap)
        return tc_fail(why, TC_ERR_TOO_LARGE, "guest.too_large", -1, "%s of %u bytes (at most %zu)",
                       tc_gc_type_name(type), length, cap);
    d->type = type;
    d->length = length;
    tc_buf_release(&d->payload);
    tc_buf_init(&d->payload, length);
    return 0;
}

int tc_gc_decoder_feed(struct tc_gc_decoder *d, const uint8_t *data, size_t len, size_t *used,
                       struct tc_reason *why)
{
    *used = 0;
    if (d->error)
        return tc_fail(why, d->error, "guest.frame", -1, "the stream was refused before");
    if (d->ready)
        return 1;
    size_t off = 0;
    if (d->header_have < TC_GC_HEADER_LEN) {
        size_t want = TC_GC_HEADER_LEN - d->header_have;
        size_t n = len < want ? len : want;
        if (n > 0)
            memcpy(d->header + d->header_have, data, n);
        d->header_have += n;
        off += n;
        if (d->header_have < TC_GC_HEADER_LEN) {
            *used = off;
            return 0;
        }
        int rc = check_header(d, why);
        if (rc) {
            d->error = rc;
            *used = off;
            return rc;
        }
    }
    size_t want = d->length - d->payload.len;
    size_t n = len - off < want ? len - off : want;
    if (n > 0) {
        int rc = tc_buf_put(&d->payload, data + off, n);
        if (rc) {
            d->error = rc;
            *used = off;
            return tc_fail(why, rc, "guest.frame", -1, "cannot buffer the payload");
        }
        off += n;
    }
    *used = off;
    if (d->payload.len == d->length) {
        d->ready = true;
        return 1;
    }
    return 0;
}

int tc_gc_decoder_frame(const struct tc_gc_decoder *d, unsigned *type, const uint8_t **payload,
                        size_t *len)
{
    if (!d->ready)
        return TC_ERR_NOT_FOUND;
    *type = d->type;
    *payload = d->payload.data != NULL ? d->payload.data : (const uint8_t *)"";
    *len = d->payload.len;
    return 0;
}

void tc_gc_decoder_next(struct tc_gc_decoder *d)
{
    if (d->error)
        return;
    tc_buf_release(&d->payload);
    tc_buf_init(&d->payload, 0);
    d->header_have = 0;
    d->type = 0;
    d->length = 0;
    d->ready = false;
}

int tc_gc_decoder_finish(const struct tc_gc_decoder *d, struct tc_reason *why)
{
    if (d->ready || d->header_have == 0)
        return 0;
    if (d->header_have < TC_GC_HEADER_LEN)
        return tc_fail(why, TC_ERR_TRUNCATED, "guest.truncated", -1,
                       "the stream ended after %zu of %d header bytes", d->header_have,
                       TC_GC_HEADER_LEN);
    return tc_fail(why, TC_ERR_TRUNCATED, "guest.truncated", -1,
                   "the stream ended after %zu of %zu payload bytes of a %s", d->payload.len,
                   d->length, tc_gc_type_name(d->type));
}

/* ---- Payload members --------------------------------------------------------------------- */

/* The payload as one JSON object, refused unless every member is in allowed (NULL-ended). */
static int load_object(const uint8_t *p, size_t len, const char *what, const char *const *allowed,
                       json_t **out, struct tc_reason *why)
{
    *out = NULL;
    json_error_t err;
    json_t *o = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &err);
    if (o == NULL)
        return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "%s: not JSON: %s", what, err.text);
    if (!json_is_object(o)) {
        json_decref(o);
        return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "%s: not a JSON object", what);
    }
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        size_t i;
        for (i = 0; allowed[i] != NULL; i++)
            if (strcmp(allowed[i], key) == 0)
                break;
        if (allowed[i] == NULL) {
            /* key lives in o: the reason first. */
            int rc = tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1,
                             "%s: unknown member \"%.40s\"", what, key);
            json_decref(o);
            return rc;
        }
    }
    *out = o;
    return 0;
}

/* An integer member in [lo, hi]. */
static int get_uint(const json_t *o, const char *what, const char *name, bool required, uint64_t lo,
                    uint64_t hi, uint64_t *out, struct tc_reason *why)
{
    *out = 0;
    const json_t *v = json_object_get(o, name);
    if (v == NULL) {
        if (!required)
            return 0;
        return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "%s.%s: missing", what, name);
    }
    if (!json_is_integer(v))
        return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "%s.%s: not an integer", what, name);
    json_int_t n = json_integer_value(v);
    if (n < 0 || (uint64_t)n < lo || (uint64_t)n > hi)
        return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "%s.%s: %lld out of range", what,
                       name, (long long)n);
    *out = (uint64_t)n;
    return 0;
}

/* A string member of at most max bytes, without NUL bytes; *s NULL when absent and optional. */
static int get_string(const json_t *o, const char *what, const char *name, bool required,
                      size_t max, const char **s, size_t *slen, struct tc_reason *why)
{
    *s = NULL;
    *slen = 0;
    const json_t *v = json_object_get(o, name);
    if (v == NULL) {
        if (!required)
            return 0;
        return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "%s.%s: missing", what, name);
    }
    if (!json_is_string(v))
        return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "%s.%s: not a string", what, name);
    size_t n = json_string_length(v);
    if (n > max)
        return tc_fail(why, TC_ERR_TOO_LARGE, CHECK_PAYLOAD, -1,
                       "%s.%s: %zu characters (at most %zu)", what, name, n, max);
    if (memchr(json_string_value(v), '\0', n) != NULL)
        return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "%s.%s: contains a NUL", what, name);
    *s = json_string_value(v);
    *slen = n;
    return 0;
}

/* A text member copied into out[cap] (NUL-terminated). */
static int get_text(const json_t *o, const char *what, const char *name, bool required, char *out,
                    size_t cap, struct tc_reason *why)
{
    const char *s;
    size_t n;
    out[0] = '\0';
    int rc = get_string(o, what, name, required, cap - 1, &s, &n, why);
    if (rc == 0 && s != NULL) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return rc;
}

/* A base64 member decoded into at most max bytes (malloc'd). */
static int get_b64(const json_t *o, const char *what, const char *name, bool required, size_t max,
                   uint8_t **out, size_t *out_len, struct tc_reason *why)
{
    *out = NULL;
    *out_len = 0;
    const char *s;
    size_t n;
    /* 4 characters per 3 bytes, padded. */
    int rc = get_string(o, what, name, required, (max + 2) / 3 * 4, &s, &n, why);
    if (rc || s == NULL)
        return rc;
    rc = tc_b64_decode(s, n, max, out, out_len);
    if (rc == TC_ERR_TOO_LARGE)
        return tc_fail(why, rc, CHECK_PAYLOAD, -1, "%s.%s: more than %zu bytes", what, name, max);
    if (rc)
        return tc_fail(why, rc, CHECK_PAYLOAD, -1, "%s.%s: not canonical base64", what, name);
    return 0;
}

static int get_bool(const json_t *o, const char *what, const char *name, bool *out,
                    struct tc_reason *why)
{
    *out = false;
    const json_t *v = json_object_get(o, name);
    if (v == NULL)
        return 0;
    if (!json_is_boolean(v))
        return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "%s.%s: not a boolean", what, name);
    *out = json_is_true(v);
    return 0;
}

/* {"sha256": {"0": "hex", ...}, ...}: known banks, PCRs 0..23 in decimal without leading
 * zeroes, values of exactly the bank's digest size, at most TC_MAX_BANKS banks. */
static int get_pcrs(const json_t *o, const char *what, struct tc_pcr_set *out,
                    struct tc_reason *why)
{
    tc_pcrs_init(out);
    const json_t *v = json_object_get(o, "pcrs");
    if (v == NULL)
        return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "%s.pcrs: missing", what);
    if (!json_is_object(v))
        return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "%s.pcrs: not an object", what);
    if (json_object_size(v) > TC_MAX_BANKS)
        return tc_fail(why, TC_ERR_TOO_LARGE, CHECK_PAYLOAD, -1, "%s.pcrs: more than %d banks",
                       what, TC_MAX_BANKS);
    const char *bank;
    json_t *b;
    json_object_foreach((json_t *)v, bank, b)
    {
        const struct tc_hash_alg *alg = tc_hash_by_name(bank);
        if (alg == NULL || strcmp(alg->name, bank) != 0)
            return tc_fail(why, TC_ERR_UNSUPPORTED, CHECK_PAYLOAD, -1,
                           "%s.pcrs: unknown bank \"%.32s\"", what, bank);
        if (!json_is_object(b) || json_object_size(b) > TC_PCR_COUNT)
            return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1,
                           "%s.pcrs.%s: not an object of at most %d PCRs", what, bank,
                           TC_PCR_COUNT);
        if (tc_pcrs_bank(out, alg, true) == NULL)
            return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "%s.pcrs: bank %s twice", what,
                           bank);
        const char *idx;
        json_t *val;
        json_object_foreach(b, idx, val)
        {
            size_t il = strlen(idx);
            unsigned pcr = 0;
            bool ok = il >= 1 && il <= 2 && !(il == 2 && idx[0] == '0');
            for (size_t i = 0; ok && i < il; i++) {
                ok = idx[i] >= '0' && idx[i] <= '9';
                pcr = pcr * 10 + (unsigned)(idx[i] - '0');
            }
            if (!ok || pcr >= TC_PCR_COUNT)
                return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1,
                               "%s.pcrs.%s: bad PCR index \"%.8s\"", what, bank, idx);
            uint8_t d[TC_MAX_DIGEST];
            size_t dl;
            if (!json_is_string(val) ||
                tc_hex_decode(json_string_value(val), json_string_length(val), d, sizeof(d), &dl) !=
                    0 ||
                dl != alg->size)
                return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1,
                               "%s.pcrs.%s.%u: not %zu bytes of hex", what, bank, pcr, alg->size);
            if (tc_pcrs_set(out, alg, pcr, d) != 0)
                return tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "%s.pcrs.%s.%u", what, bank,
                               pcr);
        }
    }
    return 0;
}

/* ---- Parsers ----------------------------------------------------------------------------- */

int tc_gc_hello_parse(const uint8_t *p, size_t len, struct tc_gc_hello *out, struct tc_reason *why)
{
    static const char *const allowed[] = {"version", "agent", "capabilities", "ak_pub", NULL};
    memset(out, 0, sizeof(*out));
    json_t *o;
    int rc = load_object(p, len, "hello", allowed, &o, why);
    if (rc)
        return rc;
    uint64_t version;
    uint8_t *ak = NULL;
    size_t ak_len = 0;
    if ((rc = get_uint(o, "hello", "version", true, 1, 255, &version, why)) != 0)
        goto out;
    if (version != TC_GC_VERSION) {
        rc = tc_fail(why, TC_ERR_UNSUPPORTED, "guest.version", -1,
                     "hello: protocol version %llu (this side speaks %d)",
                     (unsigned long long)version, TC_GC_VERSION);
        goto out;
    }
    out->version = (unsigned)version;
    if ((rc = get_text(o, "hello", "agent", false, out->agent, sizeof(out->agent), why)) != 0)
        goto out;
    const json_t *caps = json_object_get(o, "capabilities");
    if (caps != NULL) {
        if (!json_is_array(caps) || json_array_size(caps) > TC_GC_MAX_CAPS) {
            rc = tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1,
                         "hello.capabilities: not an array of at most %d strings", TC_GC_MAX_CAPS);
            goto out;
        }
        size_t i;
        const json_t *c;
        json_array_foreach(caps, i, c)
        {
            if (!json_is_string(c) || json_string_length(c) > 32) {
                rc = tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1,
                             "hello.capabilities[%zu]: not a short string", i);
                goto out;
            }
            const char *s = json_string_value(c);
            if (strcmp(s, "quote") == 0)
                out->caps |= TC_GC_CAP_QUOTE;
            else if (strcmp(s, "ima") == 0)
                out->caps |= TC_GC_CAP_IMA;
            else if (strcmp(s, "eventlog") == 0)
                out->caps |= TC_GC_CAP_EVENTLOG;
            else if (strcmp(s, "activate") == 0)
                out->caps |= TC_GC_CAP_ACTIVATE;
            /* Others are a newer guest's: ignored. */
        }
    }
    if ((rc = get_b64(o, "hello", "ak_pub", false, TC_GC_MAX_AK_PUB, &ak, &ak_len, why)) != 0)
        goto out;
    if ((out->caps & TC_GC_CAP_QUOTE) && ak == NULL) {
        rc = tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1,
                     "hello.ak_pub: missing although the guest offers quotes");
        goto out;
    }
    if (ak != NULL) {
        memcpy(out->ak_pub, ak, ak_len);
        out->ak_pub_len = ak_len;
    }
out:
    free(ak);
    json_decref(o);
    if (rc)
        memset(out, 0, sizeof(*out));
    return rc;
}

int tc_gc_request_parse(const uint8_t *p, size_t len, struct tc_gc_request *out,
                        struct tc_reason *why)
{
    static const char *const allowed[] = {"id",       "nonce",         "pcr_selection",
                                          "ima_from", "want_eventlog", NULL};
    memset(out, 0, sizeof(*out));
    json_t *o;
    int rc = load_object(p, len, "request", allowed, &o, why);
    if (rc)
        return rc;
    const char *s;
    size_t n;
    if ((rc = get_uint(o, "request", "id", true, 1, TC_GC_MAX_ID, &out->id, why)) != 0)
        goto out;
    if ((rc = get_string(o, "request", "nonce", true, 2 * TC_GC_MAX_NONCE, &s, &n, why)) != 0)
        goto out;
    if (n == 0 || tc_hex_decode(s, n, out->nonce, sizeof(out->nonce), &out->nonce_len) != 0) {
        rc = tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "request.nonce: not 1..%d bytes of hex",
                     TC_GC_MAX_NONCE);
        goto out;
    }
    if ((rc = get_text(o, "request", "pcr_selection", true, out->selection_text,
                       sizeof(out->selection_text), why)) != 0)
        goto out;
    if (tc_pcrs_parse_selection(out->selection_text, &out->selection) != 0 ||
        out->selection.nbanks == 0) {
        rc =
            tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1,
                    "request.pcr_selection: \"%.64s\" is not a PCR selection", out->selection_text);
        goto out;
    }
    for (size_t i = 0; i < out->selection.nbanks; i++)
        if (out->selection.bank[i].mask == 0) {
            rc = tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1,
                         "request.pcr_selection: bank %s selects no PCR",
                         out->selection.bank[i].alg->name);
            goto out;
        }
    if ((rc = get_uint(o, "request", "ima_from", false, 0, TC_GC_MAX_IMA_POS, &out->ima_from,
                       why)) != 0)
        goto out;
    rc = get_bool(o, "request", "want_eventlog", &out->want_eventlog, why);
out:
    json_decref(o);
    if (rc)
        memset(out, 0, sizeof(*out));
    return rc;
}

void tc_gc_answer_release(struct tc_gc_answer *a)
{
    if (a == NULL)
        return;
    free(a->attest);
    free(a->sig);
    free(a->ima);
    free(a->eventlog);
    memset(a, 0, sizeof(*a));
}

int tc_gc_answer_parse(const uint8_t *p, size_t len, struct tc_gc_answer *out,
                       struct tc_reason *why)
{
    static const char *const allowed[] = {"id",  "attest",   "signature", "pcrs",
                                          "ima", "eventlog", NULL};
    static const char *const ima_allowed[] = {"first", "next", "list", NULL};
    memset(out, 0, sizeof(*out));
    json_t *o;
    int rc = load_object(p, len, "answer", allowed, &o, why);
    if (rc)
        return rc;
    if ((rc = get_uint(o, "answer", "id", true, 1, TC_GC_MAX_ID, &out->id, why)) != 0)
        goto out;
    if ((rc = get_b64(o, "answer", "attest", true, 1024, &out->attest, &out->attest_len, why)) != 0)
        goto out;
    if ((rc = get_b64(o, "answer", "signature", true, 1024, &out->sig, &out->sig_len, why)) != 0)
        goto out;
    if ((rc = get_pcrs(o, "answer", &out->pcrs, why)) != 0)
        goto out;
    const json_t *ima = json_object_get(o, "ima");
    if (ima == NULL || !json_is_object(ima)) {
        rc = tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "answer.ima: missing or not an object");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)ima, key, v)
    {
        size_t i;
        for (i = 0; ima_allowed[i] != NULL; i++)
            if (strcmp(ima_allowed[i], key) == 0)
                break;
        if (ima_allowed[i] == NULL) {
            rc = tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1,
                         "answer.ima: unknown member \"%.40s\"", key);
            goto out;
        }
    }
    if ((rc = get_uint(ima, "answer.ima", "first", true, 0, TC_GC_MAX_IMA_POS, &out->ima_first,
                       why)) != 0 ||
        (rc = get_uint(ima, "answer.ima", "next", true, 0, TC_GC_MAX_IMA_POS, &out->ima_next,
                       why)) != 0)
        goto out;
    if (out->ima_next < out->ima_first) {
        rc = tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1,
                     "answer.ima: next %llu before first %llu", (unsigned long long)out->ima_next,
                     (unsigned long long)out->ima_first);
        goto out;
    }
    if ((rc = get_b64(ima, "answer.ima", "list", false, TC_GC_MAX_ANSWER, &out->ima, &out->ima_len,
                      why)) != 0)
        goto out;
    if ((out->ima == NULL) != (out->ima_next == out->ima_first)) {
        rc = tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1,
                     "answer.ima: a list must be there exactly when next > first");
        goto out;
    }
    rc = get_b64(o, "answer", "eventlog", false, TC_GC_MAX_ANSWER, &out->eventlog,
                 &out->eventlog_len, why);
out:
    json_decref(o);
    if (rc)
        tc_gc_answer_release(out);
    return rc;
}

int tc_gc_error_parse(const uint8_t *p, size_t len, struct tc_gc_error *out, struct tc_reason *why)
{
    static const char *const allowed[] = {"id", "check", "error", NULL};
    memset(out, 0, sizeof(*out));
    json_t *o;
    int rc = load_object(p, len, "error", allowed, &o, why);
    if (rc)
        return rc;
    if ((rc = get_uint(o, "error", "id", true, 0, TC_GC_MAX_ID, &out->id, why)) == 0 &&
        (rc = get_text(o, "error", "check", true, out->check, sizeof(out->check), why)) == 0)
        rc = get_text(o, "error", "error", true, out->error, sizeof(out->error), why);
    json_decref(o);
    if (rc)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* A base64 member of 1..cap bytes copied into out[cap]. */
static int get_blob(const json_t *o, const char *what, const char *name, uint8_t *out, size_t cap,
                    size_t *out_len, struct tc_reason *why)
{
    uint8_t *b = NULL;
    size_t n = 0;
    *out_len = 0;
    int rc = get_b64(o, what, name, true, cap, &b, &n, why);
    if (rc == 0 && n == 0)
        rc = tc_fail(why, TC_ERR_FORMAT, CHECK_PAYLOAD, -1, "%s.%s: empty", what, name);
    if (rc == 0) {
        memcpy(out, b, n);
        *out_len = n;
    }
    if (b != NULL) {
        OPENSSL_cleanse(b, n);
        free(b);
    }
    return rc;
}

int tc_gc_activate_parse(const uint8_t *p, size_t len, struct tc_gc_activate *out,
                         struct tc_reason *why)
{
    static const char *const allowed[] = {"id", "id_object", "encrypted_secret", NULL};
    memset(out, 0, sizeof(*out));
    json_t *o;
    int rc = load_object(p, len, "activate", allowed, &o, why);
    if (rc)
        return rc;
    if ((rc = get_uint(o, "activate", "id", true, 1, TC_GC_MAX_ID, &out->id, why)) == 0 &&
        (rc = get_blob(o, "activate", "id_object", out->id_object, sizeof(out->id_object),
                       &out->id_object_len, why)) == 0)
        rc = get_blob(o, "activate", "encrypted_secret", out->enc_secret, sizeof(out->enc_secret),
                      &out->enc_secret_len, why);
    json_decref(o);
    if (rc)
        memset(out, 0, sizeof(*out));
    return rc;
}

int tc_gc_activated_parse(const uint8_t *p, size_t len, struct tc_gc_activated *out,
                          struct tc_reason *why)
{
    static const char *const allowed[] = {"id", "secret", NULL};
    memset(out, 0, sizeof(*out));
    json_t *o;
    int rc = load_object(p, len, "activated", allowed, &o, why);
    if (rc)
        return rc;
    if ((rc = get_uint(o, "activated", "id", true, 1, TC_GC_MAX_ID, &out->id, why)) == 0)
        rc = get_blob(o, "activated", "secret", out->secret, sizeof(out->secret), &out->secret_len,
                      why);
    json_decref(o);
    if (rc)
        OPENSSL_cleanse(out, sizeof(*out));
    return rc;
}

/* ---- Encoders ---------------------------------------------------------------------------- */

static int put_frame(unsigned type, json_t *o, struct tc_buf *out)
{
    if (o == NULL)
        return TC_ERR_ALLOC;
    char *text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    if (text == NULL)
        return TC_ERR_ALLOC;
    int rc = tc_gc_frame_encode(type, text, strlen(text), out);
    free(text);
    return rc;
}

static int set_b64(json_t *o, const char *name, const uint8_t *data, size_t len)
{
    char *s;
    int rc = tc_b64_encode(data, len, &s);
    if (rc)
        return rc;
    rc = json_object_set_new(o, name, json_string(s)) == 0 ? 0 : TC_ERR_ALLOC;
    free(s);
    return rc;
}

int tc_gc_hello_encode(const char *agent, unsigned caps, const uint8_t *ak_pub, size_t ak_pub_len,
                       struct tc_buf *out)
{
    json_t *o = json_pack("{s:i}", "version", TC_GC_VERSION);
    if (o == NULL)
        return TC_ERR_ALLOC;
    int rc = 0;
    if (agent != NULL && agent[0] != '\0' &&
        json_object_set_new(o, "agent", json_string(agent)) != 0)
        rc = TC_ERR_ALLOC;
    if (rc == 0 && caps != 0) {
        json_t *c = json_array();
        if (c == NULL ||
            ((caps & TC_GC_CAP_QUOTE) && json_array_append_new(c, json_string("quote")) != 0) ||
            ((caps & TC_GC_CAP_IMA) && json_array_append_new(c, json_string("ima")) != 0) ||
            ((caps & TC_GC_CAP_EVENTLOG) &&
             json_array_append_new(c, json_string("eventlog")) != 0) ||
            ((caps & TC_GC_CAP_ACTIVATE) &&
             json_array_append_new(c, json_string("activate")) != 0) ||
            json_object_set_new(o, "capabilities", c) != 0)
            rc = TC_ERR_ALLOC;
    }
    if (rc == 0 && ak_pub != NULL && ak_pub_len > 0)
        rc = set_b64(o, "ak_pub", ak_pub, ak_pub_len);
    if (rc) {
        json_decref(o);
        return rc;
    }
    return put_frame(TC_GC_HELLO, o, out);
}

int tc_gc_request_encode(const struct tc_gc_request *req, struct tc_buf *out)
{
    char nonce[2 * TC_GC_MAX_NONCE + 1];
    if (req->nonce_len == 0 || req->nonce_len > TC_GC_MAX_NONCE || req->id == 0 ||
        req->id > TC_GC_MAX_ID)
        return TC_ERR_INVALID_ARG;
    tc_hex_encode(req->nonce, req->nonce_len, nonce);
    return put_frame(TC_GC_QUOTE_REQUEST,
                     json_pack("{s:I,s:s,s:s,s:I,s:b}", "id", (json_int_t)req->id, "nonce", nonce,
                               "pcr_selection", req->selection_text, "ima_from",
                               (json_int_t)req->ima_from, "want_eventlog", req->want_eventlog),
                     out);
}

int tc_gc_answer_encode(const struct tc_gc_answer *a, struct tc_buf *out)
{
    json_t *pcrs = tc_pcrs_to_json(&a->pcrs);
    json_t *ima =
        json_pack("{s:I,s:I}", "first", (json_int_t)a->ima_first, "next", (json_int_t)a->ima_next);
    json_t *o = json_pack("{s:I,s:o,s:o}", "id", (json_int_t)a->id, "pcrs", pcrs, "ima", ima);
    if (o == NULL)
        return TC_ERR_ALLOC;
    int rc = set_b64(o, "attest", a->attest, a->attest_len);
    if (rc == 0)
        rc = set_b64(o, "signature", a->sig, a->sig_len);
    if (rc == 0 && a->ima != NULL && a->ima_len > 0)
        rc = set_b64(ima, "list", a->ima, a->ima_len);
    if (rc == 0 && a->eventlog != NULL && a->eventlog_len > 0)
        rc = set_b64(o, "eventlog", a->eventlog, a->eventlog_len);
    if (rc) {
        json_decref(o);
        return rc;
    }
    return put_frame(TC_GC_QUOTE_ANSWER, o, out);
}

int tc_gc_error_encode(uint64_t id, const char *check, const char *error, struct tc_buf *out)
{
    char c[48], e[TC_GC_MAX_TEXT + 1];
    snprintf(c, sizeof(c), "%s", check);
    snprintf(e, sizeof(e), "%s", error);
    return put_frame(TC_GC_ERROR,
                     json_pack("{s:I,s:s,s:s}", "id", (json_int_t)id, "check", c, "error", e), out);
}

int tc_gc_activate_encode(const struct tc_gc_activate *a, struct tc_buf *out)
{
    if (a->id == 0 || a->id > TC_GC_MAX_ID || a->id_object_len == 0 ||
        a->id_object_len > sizeof(a->id_object) || a->enc_secret_len == 0 ||
        a->enc_secret_len > sizeof(a->enc_secret))
        return TC_ERR_INVALID_ARG;
    json_t *o = json_pack("{s:I}", "id", (json_int_t)a->id);
    if (o == NULL)
        return TC_ERR_ALLOC;
    int rc = set_b64(o, "id_object", a->id_object, a->id_object_len);
    if (rc == 0)
        rc = set_b64(o, "encrypted_secret", a->enc_secret, a->enc_secret_len);
    if (rc) {
        json_decref(o);
        return rc;
    }
    return put_frame(TC_GC_ACTIVATE_REQUEST, o, out);
}

int tc_gc_activated_encode(uint64_t id, const uint8_t *secret, size_t secret_len,
                           struct tc_buf *out)
{
    if (id == 0 || id > TC_GC_MAX_ID || secret_len == 0 || secret_len > TC_GC_MAX_SECRET)
        return TC_ERR_INVALID_ARG;
    char *s = NULL;
    int rc = tc_b64_encode(secret, secret_len, &s);
    if (rc)
        return rc;
    /* The secret passes through jansson's copy and the frame: both are wiped by their owners
     * (the frame buffer by the caller; jansson frees its string without wiping, a short-lived
     * copy of a one-time credential). */
    json_t *o = json_pack("{s:I,s:s}", "id", (json_int_t)id, "secret", s);
    OPENSSL_cleanse(s, strlen(s));
    free(s);
    return put_frame(TC_GC_ACTIVATE_ANSWER, o, out);
}
