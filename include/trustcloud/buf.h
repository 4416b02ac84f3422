/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bounds-checked reading of untrusted bytes, and a capped growable buffer.
 *
 * A tc_reader is a read-only view: it never owns or copies the bytes. Every
 * getter checks the remaining length by subtraction, moves the cursor only on
 * success and returns TC_ERR_TRUNCATED otherwise (outputs are then untouched).
 */
#ifndef TRUSTCLOUD_BUF_H
#define TRUSTCLOUD_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct tc_reader {
    const uint8_t *data;
    size_t len;
    size_t off;
};

void tc_reader_init(struct tc_reader *r, const void *data, size_t len);
size_t tc_reader_left(const struct tc_reader *r);
const uint8_t *tc_reader_ptr(const struct tc_reader *r);
int tc_reader_u8(struct tc_reader *r, uint8_t *v);
int tc_reader_u16le(struct tc_reader *r, uint16_t *v);
int tc_reader_u32le(struct tc_reader *r, uint32_t *v);
int tc_reader_u64le(struct tc_reader *r, uint64_t *v);
int tc_reader_u16be(struct tc_reader *r, uint16_t *v);
int tc_reader_u32be(struct tc_reader *r, uint32_t *v);
/* Copies n bytes into out. */
int tc_reader_bytes(struct tc_reader *r, void *out, size_t n);
/* Returns a view of the next n bytes (valid as long as the underlying data) and skips them. */
int tc_reader_view(struct tc_reader *r, size_t n, const uint8_t **view);
int tc_reader_skip(struct tc_reader *r, size_t n);
/* A sub-reader over the next n bytes; the parent skips them. */
int tc_reader_sub(struct tc_reader *r, size_t n, struct tc_reader *sub);

/* Growable byte buffer with a hard cap (TC_ERR_TOO_LARGE past it). Always NUL-terminated. */
struct tc_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max;
};

void tc_buf_init(struct tc_buf *b, size_t max);
/* Frees the storage (wiping it first) and re-initialises; NULL is a no-op. */
void tc_buf_release(struct tc_buf *b);
int tc_buf_put(struct tc_buf *b, const void *data, size_t n);
int tc_buf_putf(struct tc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the storage to the caller (who frees it) and re-initialises b. */
uint8_t *tc_buf_steal(struct tc_buf *b, size_t *len);

/* Reads a whole file of at most max bytes. *out is malloc'd and NUL-terminated (not counted). */
int tc_file_read(const char *path, size_t max, uint8_t **out, size_t *len);
/* Writes a file atomically (temporary file + fsync + rename) with the given mode. */
int tc_file_write(const char *path, const void *data, size_t len, unsigned mode);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void tc_hex_encode(const uint8_t *in, size_t n, char *out);
/* Decodes exactly slen hex characters (even, either case) into out[cap]; *outlen set on success. */
int tc_hex_decode(const char *s, size_t slen, uint8_t *out, size_t cap, size_t *outlen);

/* Standard base64 (RFC 4648, with padding) of len bytes: *out malloc'd, NUL-terminated.
 * TC_ERR_ALLOC. */
int tc_b64_encode(const uint8_t *in, size_t len, char **out);
/* Decodes slen characters of standard, padded, canonical base64 (the bits below the last whole
 * byte are zero, so one byte string has exactly one text) into 1..max bytes, *out malloc'd.
 * TC_ERR_FORMAT (empty, bad length, character, padding or stray bits), TC_ERR_TOO_LARGE (past
 * max), TC_ERR_ALLOC. Outputs are set on success only. */
int tc_b64_decode(const char *s, size_t slen, size_t max, uint8_t **out, size_t *out_len);

#endif
