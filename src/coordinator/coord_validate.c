/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Validation of everything a client sends before any of it reaches the store
 * or a parser: ids, URLs, JSON (size and depth first, then jansson), base64.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "coordinator/coord.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/reason.h"

static bool id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

bool coord_valid_node_id(const char *s, size_t len)
{
    if (!s || len == 0 || len > COORD_NODE_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!id_char(s[i]))
            return false;
    return true;
}

static bool dns_host(const char *h, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-'))
            return false;
    }
    return h[0] != '-' && h[0] != '.';
}

bool coord_valid_url(const char *url, bool allow_http, char *host, size_t hostcap)
{
    if (host && hostcap)
        host[0] = '\0';
    if (!url)
        return false;
    size_t total = strlen(url);
    if (total > 512)
        return false;
    const char *p;
    if (strncmp(url, "https://", 8) == 0)
        p = url + 8;
    else if (allow_http && strncmp(url, "http://", 7) == 0)
        p = url + 7;
    else
        return false;
    const char *h = p, *hend;
    if (*p == '[') {
        h = p + 1;
        hend = strchr(h, ']');
        if (!hend || hend == h || hend - h > 45)
            return false;
        for (const char *q = h; q < hend; q++)
            if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') ||
                  (*q >= 'A' && *q <= 'F') || *q == ':' || *q == '.'))
                return false;
        p = hend + 1;
    } else {
        hend = p;
        while (*hend && *hend != ':' && *hend != '/')
            hend++;
        if (!dns_host(h, (size_t)(hend - h)))
            return false;
        p = hend;
    }
    if (*p == ':') {
        p++;
        unsigned long port = 0;
        size_t digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 6) {
            port = port * 10 + (unsigned long)(*p - '0');
            p++;
            digits++;
        }
        if (digits == 0 || port == 0 || port > 65535)
            return false;
    }
    /* A path is allowed for webhooks; agent URLs are used as a base ("/v1/..." appended). */
    if (*p && *p != '/')
        return false;
    for (const char *q = p; *q; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f || *q == '#' || *q == '\\')
            return false;
    if (host) {
        size_t n = (size_t)(hend - h);
        if (n + 1 > hostcap)
            return false;
        memcpy(host, h, n);
        host[n] = '\0';
    }
    return true;
}

size_t coord_json_depth(const uint8_t *body, size_t len, size_t limit)
{
    size_t depth = 0, max = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < len; i++) {
        uint8_t ch = body[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                in_str = false;
            continue;
        }
        if (ch == '"') {
            in_str = true;
        } else if (ch == '{' || ch == '[') {
            if (++depth > max)
                max = depth;
            if (max > limit)
                return max;
        } else if ((ch == '}' || ch == ']') && depth > 0) {
            depth--;
        }
    }
    return max;
}

json_t *coord_json_parse(const uint8_t *body, size_t len, size_t max, struct tc_reason *err)
{
    tc_reason_clear(err);
    if (len > max) {
        tc_fail(err, TC_ERR_TOO_LARGE, "json.size", -1, "body of %zu bytes exceeds %zu", len, max);
        return NULL;
    }
    if (coord_json_depth(body, len, COORD_JSON_MAX_DEPTH) > COORD_JSON_MAX_DEPTH) {
        tc_fail(err, TC_ERR_FORMAT, "json.depth", -1, "JSON nested deeper than %d",
                COORD_JSON_MAX_DEPTH);
        return NULL;
    }
    json_error_t jerr;
    json_t *j = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        tc_fail(err, TC_ERR_FORMAT, "json.parse", -1, "line %d column %d: %.200s", jerr.line,
                jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        tc_fail(err, TC_ERR_FORMAT, "json.type", -1, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

const char *coord_json_str(const json_t *obj, const char *key, size_t max, size_t *len)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return NULL;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n > max || strlen(s) != n)
        return NULL;
    if (len)
        *len = n;
    return s;
}

int coord_b64_decode(const char *s, size_t len, size_t max, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    /* An empty member is an empty byte string here; tc_b64_decode refuses it. */
    if (len == 0)
        return (*out = malloc(1)) != NULL ? 0 : TC_ERR_ALLOC;
    if (len % 4 == 0 && len / 4 * 3 > max + 2) /* too large whatever it holds */
        return TC_ERR_TOO_LARGE;
    return tc_b64_decode(s, len, max, out, out_len);
}

char *coord_b64_encode(const uint8_t *data, size_t len)
{
    char *out = NULL;
    return tc_b64_encode(data, len, &out) == 0 ? out : NULL;
}

int coord_spki_pin_hex(EVP_PKEY *key, char out[65])
{
    out[0] = '\0';
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(key, &der);
    if (n <= 0)
        return TC_ERR_CRYPTO;
    uint8_t h[32];
    SHA256(der, (size_t)n, h);
    OPENSSL_free(der);
    tc_hex_encode(h, 32, out);
    return 0;
}

int coord_pin_curl(const char *hex, char *out, size_t cap)
{
    uint8_t h[32];
    size_t n;
    if (!hex || strlen(hex) != 64 || tc_hex_decode(hex, 64, h, sizeof(h), &n) != 0 || n != 32)
        return TC_ERR_FORMAT;
    char *b = coord_b64_encode(h, 32);
    if (!b)
        return TC_ERR_ALLOC;
    int w = snprintf(out, cap, "sha256//%s", b);
    free(b);
    return w > 0 && (size_t)w < cap ? 0 : TC_ERR_TOO_LARGE;
}
