/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#include "trustcloud/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "trustcloud/error.h"

void tc_reader_init(struct tc_reader *r, const void *data, size_t len)
{
    r->data = data;
    r->len = data ? len : 0;
    r->off = 0;
}

size_t tc_reader_left(const struct tc_reader *r)
{
    return r->len - r->off;
}

const uint8_t *tc_reader_ptr(const struct tc_reader *r)
{
    return r->data + r->off;
}

int tc_reader_view(struct tc_reader *r, size_t n, const uint8_t **view)
{
    if (n > r->len - r->off)
        return TC_ERR_TRUNCATED;
    if (view)
        *view = r->data + r->off;
    r->off += n;
    return 0;
}

int tc_reader_skip(struct tc_reader *r, size_t n)
{
    return tc_reader_view(r, n, NULL);
}

int tc_reader_bytes(struct tc_reader *r, void *out, size_t n)
{
    const uint8_t *p;
    int rc = tc_reader_view(r, n, &p);
    if (rc == 0 && n)
        memcpy(out, p, n);
    return rc;
}

int tc_reader_sub(struct tc_reader *r, size_t n, struct tc_reader *sub)
{
    const uint8_t *p;
    int rc = tc_reader_view(r, n, &p);
    if (rc == 0)
        tc_reader_init(sub, p, n);
    return rc;
}

int tc_reader_u8(struct tc_reader *r, uint8_t *v)
{
    return tc_reader_bytes(r, v, 1);
}

static int get_le(struct tc_reader *r, size_t n, uint64_t *v)
{
    const uint8_t *p;
    int rc = tc_reader_view(r, n, &p);
    if (rc)
        return rc;
    uint64_t x = 0;
    for (size_t i = n; i > 0; i--)
        x = (x << 8) | p[i - 1];
    *v = x;
    return 0;
}

static int get_be(struct tc_reader *r, size_t n, uint64_t *v)
{
    const uint8_t *p;
    int rc = tc_reader_view(r, n, &p);
    if (rc)
        return rc;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++)
        x = (x << 8) | p[i];
    *v = x;
    return 0;
}

int tc_reader_u16le(struct tc_reader *r, uint16_t *v)
{
    uint64_t x;
    int rc = get_le(r, 2, &x);
    if (rc == 0)
        *v = (uint16_t)x;
    return rc;
}

int tc_reader_u32le(struct tc_reader *r, uint32_t *v)
{
    uint64_t x;
    int rc = get_le(r, 4, &x);
    if (rc == 0)
        *v = (uint32_t)x;
    return rc;
}

int tc_reader_u64le(struct tc_reader *r, uint64_t *v)
{
    return get_le(r, 8, v);
}

int tc_reader_u16be(struct tc_reader *r, uint16_t *v)
{
    uint64_t x;
    int rc = get_be(r, 2, &x);
    if (rc == 0)
        *v = (uint16_t)x;
    return rc;
}

int tc_reader_u32be(struct tc_reader *r, uint32_t *v)
{
    uint64_t x;
    int rc = get_be(r, 4, &x);
    if (rc == 0)
        *v = (uint32_t)x;
    return rc;
}

void tc_buf_init(struct tc_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void tc_buf_release(struct tc_buf *b)
{
    if (b == NULL)
        return;
    if (b->data) {
        OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
    }
    tc_buf_init(b, b->max);
}

static int buf_reserve(struct tc_buf *b, size_t n)
{
    if (n > b->max - b->len)
        return TC_ERR_TOO_LARGE;
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    uint8_t *nd = malloc(ncap);
    if (nd == NULL)
        return TC_ERR_ALLOC;
    if (b->data) {
        memcpy(nd, b->data, b->len);
        OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
    }
    b->data = nd;
    b->cap = ncap;
    return 0;
}

int tc_buf_put(struct tc_buf *b, const void *data, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int tc_buf_putf(struct tc_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return TC_ERR_INTERNAL;
    int rc = buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

uint8_t *tc_buf_steal(struct tc_buf *b, size_t *len)
{
    uint8_t *d = b->data;
    if (len)
        *len = b->len;
    tc_buf_init(b, b->max);
    return d;
}

int tc_file_read(const char *path, size_t max, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return TC_ERR_IO;
    struct tc_buf b;
    tc_buf_init(&b, max);
    int rc = 0;
    uint8_t chunk[16384];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = TC_ERR_IO;
            break;
        }
        if (n == 0)
            break;
        if ((rc = tc_buf_put(&b, chunk, (size_t)n)) != 0)
            break;
    }
    close(fd);
    if (rc == 0 && b.data == NULL)
        rc = tc_buf_put(&b, "", 0); /* empty file: still hand out a NUL-terminated buffer */
    if (rc) {
        tc_buf_release(&b);
        return rc;
    }
    *out = tc_buf_steal(&b, len);
    return 0;
}

int tc_file_write(const char *path, const void *data, size_t len, unsigned mode)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= (int)sizeof(tmp))
        return TC_ERR_INVALID_ARG;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return TC_ERR_IO;
    int rc = 0;
    const uint8_t *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = TC_ERR_IO;
            break;
        }
        p += n;
        left -= (size_t)n;
    }
    if (rc == 0 && (fchmod(fd, (mode_t)mode) != 0 || fsync(fd) != 0))
        rc = TC_ERR_IO;
    if (close(fd) != 0 && rc == 0)
        rc = TC_ERR_IO;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = TC_ERR_IO;
    if (rc)
        unlink(tmp);
    return rc;
}

void tc_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int tc_hex_decode(const char *s, size_t slen, uint8_t *out, size_t cap, size_t *outlen)
{
    if (slen % 2)
        return TC_ERR_FORMAT;
    if (slen / 2 > cap)
        return TC_ERR_TOO_LARGE;
    for (size_t i = 0; i < slen; i += 2) {
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return TC_ERR_FORMAT;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    if (outlen)
        *outlen = slen / 2;
    return 0;
}

int tc_b64_encode(const uint8_t *in, size_t len, char **out)
{
    *out = NULL;
    if (len > (size_t)INT32_MAX / 4 * 3 - 3)
        return TC_ERR_TOO_LARGE;
    size_t n = (len + 2) / 3 * 4;
    char *s = malloc(n + 1);
    if (!s)
        return TC_ERR_ALLOC;
    EVP_EncodeBlock((unsigned char *)s, in, (int)len); /* writes n characters and a NUL */
    *out = s;
    return 0;
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int tc_b64_decode(const char *s, size_t slen, size_t max, uint8_t **out, size_t *out_len)
{
    size_t pad = 0, n;
    *out = NULL;
    *out_len = 0;
    if (s == NULL || slen == 0 || slen % 4 != 0)
        return TC_ERR_FORMAT;
    if (slen > (size_t)INT32_MAX)
        return TC_ERR_TOO_LARGE;
    if (s[slen - 1] == '=')
        pad++;
    if (s[slen - 2] == '=')
        pad++;
    for (size_t i = 0; i < slen - pad; i++)
        if (b64_val(s[i]) < 0)
            return TC_ERR_FORMAT;
    if (pad == 2 && (b64_val(s[slen - 3]) & 0x0f) != 0)
        return TC_ERR_FORMAT;
    if (pad == 1 && (b64_val(s[slen - 2]) & 0x03) != 0)
        return TC_ERR_FORMAT;
    n = slen / 4 * 3 - pad;
    if (n == 0)
        return TC_ERR_FORMAT;
    if (n > max)
        return TC_ERR_TOO_LARGE;
    /* EVP_DecodeBlock writes whole groups of 3 bytes, padding included. */
    uint8_t *buf = malloc(slen / 4 * 3);
    if (!buf)
        return TC_ERR_ALLOC;
    int r = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)slen);
    if (r < 0 || (size_t)r != slen / 4 * 3) {
        free(buf);
        return TC_ERR_FORMAT;
    }
    *out = buf;
    *out_len = n;
    return 0;
}
