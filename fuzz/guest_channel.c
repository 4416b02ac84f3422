/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest channel as the host reads it from a hostile guest: the input is a byte stream fed
 * to the streaming decoder in pieces (sizes taken from the first byte), and every whole frame
 * goes through the parser of its type (hello, quote request and answer, activation request and
 * answer, error). Invariants, any violation aborts: the decoder never
 * claims more bytes than it was given, never yields a frame above its type's cap, refusals name
 * a check; an accepted payload encodes again and parses back to the same values.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trustcloud/guest_channel.h"

static void check_payload(unsigned type, const uint8_t *p, size_t len)
{
    struct tc_reason why;
    struct tc_buf b;
    tc_reason_clear(&why);
    tc_buf_init(&b, TC_GC_MAX_ANSWER * 2);
    int rc;
    switch (type) {
    case TC_GC_HELLO: {
        struct tc_gc_hello h, back;
        rc = tc_gc_hello_parse(p, len, &h, &why);
        if (rc == 0) {
            if (tc_gc_hello_encode(h.agent, h.caps, h.ak_pub, h.ak_pub_len, &b) != 0 ||
                tc_gc_hello_parse(b.data + TC_GC_HEADER_LEN, b.len - TC_GC_HEADER_LEN, &back,
                                  &why) != 0 ||
                back.caps != h.caps || back.ak_pub_len != h.ak_pub_len ||
                strcmp(back.agent, h.agent) != 0)
                abort();
        }
        break;
    }
    case TC_GC_QUOTE_REQUEST: {
        struct tc_gc_request r, back;
        rc = tc_gc_request_parse(p, len, &r, &why);
        if (rc == 0) {
            if (r.id == 0 || r.nonce_len == 0 || r.selection.nbanks == 0 ||
                tc_gc_request_encode(&r, &b) != 0 ||
                tc_gc_request_parse(b.data + TC_GC_HEADER_LEN, b.len - TC_GC_HEADER_LEN, &back,
                                    &why) != 0 ||
                back.id != r.id || back.ima_from != r.ima_from ||
                memcmp(back.nonce, r.nonce, r.nonce_len) != 0)
                abort();
        }
        break;
    }
    case TC_GC_QUOTE_ANSWER: {
        struct tc_gc_answer a, back;
        rc = tc_gc_answer_parse(p, len, &a, &why);
        if (rc == 0) {
            if (a.attest == NULL || a.sig == NULL || a.ima_next < a.ima_first ||
                (a.ima == NULL) != (a.ima_next == a.ima_first))
                abort();
            if (tc_gc_answer_encode(&a, &b) != 0 ||
                tc_gc_answer_parse(b.data + TC_GC_HEADER_LEN, b.len - TC_GC_HEADER_LEN, &back,
                                   &why) != 0 ||
                back.attest_len != a.attest_len || back.ima_len != a.ima_len ||
                back.eventlog_len != a.eventlog_len || back.pcrs.nbanks != a.pcrs.nbanks)
                abort();
            tc_gc_answer_release(&back);
        } else if (a.attest != NULL || a.ima != NULL) {
            abort();
        }
        tc_gc_answer_release(&a);
        break;
    }
    case TC_GC_ACTIVATE_REQUEST: {
        struct tc_gc_activate a, back;
        rc = tc_gc_activate_parse(p, len, &a, &why);
        if (rc == 0 &&
            (a.id_object_len == 0 || a.enc_secret_len == 0 || tc_gc_activate_encode(&a, &b) != 0 ||
             tc_gc_activate_parse(b.data + TC_GC_HEADER_LEN, b.len - TC_GC_HEADER_LEN, &back,
                                  &why) != 0 ||
             back.id != a.id || back.id_object_len != a.id_object_len ||
             memcmp(back.enc_secret, a.enc_secret, a.enc_secret_len) != 0))
            abort();
        break;
    }
    case TC_GC_ACTIVATE_ANSWER: {
        struct tc_gc_activated a, back;
        rc = tc_gc_activated_parse(p, len, &a, &why);
        if (rc == 0 &&
            (a.secret_len == 0 || a.secret_len > TC_GC_MAX_SECRET ||
             tc_gc_activated_encode(a.id, a.secret, a.secret_len, &b) != 0 ||
             tc_gc_activated_parse(b.data + TC_GC_HEADER_LEN, b.len - TC_GC_HEADER_LEN, &back,
                                   &why) != 0 ||
             back.secret_len != a.secret_len || memcmp(back.secret, a.secret, a.secret_len) != 0))
            abort();
        break;
    }
    default: {
        struct tc_gc_error e;
        rc = tc_gc_error_parse(p, len, &e, &why);
        break;
    }
    }
    if (rc != 0 && why.check[0] == '\0')
        abort();
    tc_buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] + 1;
    data++, size--;
    struct tc_gc_decoder d;
    tc_gc_decoder_init(&d, 0);
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < step ? size - off : step, used;
        struct tc_reason why;
        tc_reason_clear(&why);
        int rc = tc_gc_decoder_feed(&d, data + off, n, &used, &why);
        if (used > n)
            abort();
        off += used;
        if (rc < 0) {
            if (why.check[0] == '\0')
                abort();
            break;
        }
        if (rc == 1) {
            unsigned type;
            const uint8_t *p;
            size_t len;
            if (tc_gc_decoder_frame(&d, &type, &p, &len) != 0 || len > tc_gc_type_cap(type))
                abort();
            check_payload(type, p, len);
            tc_gc_decoder_next(&d);
        } else if (used != n) {
            abort();
        }
    }
    tc_gc_decoder_release(&d);
    return 0;
}
