/* SPDX-License-Identifier: Apache-2.0 */
/*
 * IMA measurement list parsing and serialisation. Both formats end up in the
 * same place: the exact template data bytes the kernel hashed, which are then
 * decoded into fields by one function, so ASCII and binary lists of the same
 * measurements produce identical entries.
 */
#define LOGMODULE "ima"
#include "trustcloud/ima.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "trustcloud/error.h"
#include "trustcloud/log.h"

/* Kinds of template fields, as far as we need to tell them apart. */
enum field_kind {
    FK_D,       /* "ima": raw 20-byte digest */
    FK_N,       /* "ima": name */
    FK_DNG,     /* "alg:\0digest" */
    FK_DNGV2,   /* "type:alg:\0digest" */
    FK_DMODSIG, /* like d-ng, may be empty */
    FK_NNG,     /* "name\0" */
    FK_SIG,     /* hex in ASCII */
    FK_BUF,     /* hex in ASCII */
    FK_HEX,     /* other hex-shown fields (modsig, evmsig) */
    FK_NOASCII, /* fields whose ASCII form we do not reconstruct */
};

struct template_def {
    const char *name;
    enum tc_ima_template id;
    size_t nfields;
    enum field_kind kind[TC_IMA_MAX_FIELDS];
};

static const struct template_def templates[] = {
    {"ima", TC_IMA_TPL_IMA, 2, {FK_D, FK_N}},
    {"ima-ng", TC_IMA_TPL_NG, 2, {FK_DNG, FK_NNG}},
    {"ima-ngv2", TC_IMA_TPL_NGV2, 2, {FK_DNGV2, FK_NNG}},
    {"ima-sig", TC_IMA_TPL_SIG, 3, {FK_DNG, FK_NNG, FK_SIG}},
    {"ima-sigv2", TC_IMA_TPL_SIGV2, 3, {FK_DNGV2, FK_NNG, FK_SIG}},
    {"ima-buf", TC_IMA_TPL_BUF, 3, {FK_DNG, FK_NNG, FK_BUF}},
    {"ima-modsig", TC_IMA_TPL_MODSIG, 5, {FK_DNG, FK_NNG, FK_SIG, FK_DMODSIG, FK_HEX}},
    {"evm-sig",
     TC_IMA_TPL_EVMSIG,
     9,
     {FK_DNG, FK_NNG, FK_HEX, FK_NOASCII, FK_NOASCII, FK_NOASCII, FK_NOASCII, FK_NOASCII,
      FK_NOASCII}},
};
#define NTEMPLATES (sizeof(templates) / sizeof(templates[0]))

static const struct template_def *template_by_name(const char *name)
{
    for (size_t i = 0; i < NTEMPLATES; i++)
        if (strcmp(templates[i].name, name) == 0)
            return &templates[i];
    return NULL;
}

const char *tc_ima_template_name(enum tc_ima_template t)
{
    for (size_t i = 0; i < NTEMPLATES; i++)
        if (templates[i].id == t)
            return templates[i].name;
    return NULL;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* ---- log container ---------------------------------------------------------------------- */

int tc_ima_log_new(const struct tc_hash_alg *template_hash_alg, struct tc_ima_log **out)
{
    *out = NULL;
    struct tc_ima_log *log = calloc(1, sizeof(*log));
    if (log == NULL)
        return TC_ERR_ALLOC;
    log->template_hash_alg = template_hash_alg ? template_hash_alg : tc_hash_by_name("sha1");
    *out = log;
    return 0;
}

void tc_ima_log_free(struct tc_ima_log *log)
{
    if (log == NULL)
        return;
    for (size_t i = 0; i < log->count; i++)
        free(log->entries[i].template_data);
    free(log->entries);
    free(log);
}

/* Returns a zeroed slot at the end (not yet counted). */
static int log_slot(struct tc_ima_log *log, size_t max, struct tc_ima_entry **slot)
{
    if (log->count >= max)
        return TC_ERR_TOO_LARGE;
    if (log->count == log->cap) {
        size_t ncap = log->cap ? log->cap * 2 : 64;
        if (ncap > max)
            ncap = max;
        struct tc_ima_entry *n = realloc(log->entries, ncap * sizeof(*n));
        if (n == NULL)
            return TC_ERR_ALLOC;
        log->entries = n;
        log->cap = ncap;
    }
    *slot = &log->entries[log->count];
    memset(*slot, 0, sizeof(**slot));
    return 0;
}

/* ---- field decoding (shared by both formats) -------------------------------------------- */

/* "prefix:\0digest": sets alg (NULL if the name is unknown: then an error), digest view. */
static int decode_digest_field(const struct tc_ima_field *f, enum field_kind kind, long idx,
                               const struct tc_hash_alg **alg, const uint8_t **digest, size_t *dlen,
                               struct tc_reason *why)
{
    const uint8_t *nul = memchr(f->data, 0, f->len);
    if (nul == NULL || nul == f->data || nul[-1] != ':')
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx,
                       "digest field is not 'algorithm:' NUL digest");
    const char *name = (const char *)f->data;
    size_t nlen = (size_t)(nul - f->data) - 1; /* without the ':' */
    if (kind == FK_DNGV2) {
        /* "ima:sha256:" or "verity:sha256:": the algorithm follows the type. */
        const char *c = memchr(name, ':', nlen);
        if (c == NULL)
            return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx,
                           "d-ngv2 digest field lacks a digest type");
        nlen -= (size_t)(c + 1 - name);
        name = c + 1;
    }
    const struct tc_hash_alg *a = tc_hash_by_name_n(name, nlen);
    if (a == NULL)
        return tc_fail(why, TC_ERR_UNSUPPORTED, "ima.parse", idx,
                       "unknown file digest algorithm '%.*s'", (int)(nlen > 32 ? 32 : nlen), name);
    size_t n = f->len - (size_t)(nul + 1 - f->data);
    if (n != a->size)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx,
                       "%s digest has %zu bytes, expected %zu", a->name, n, a->size);
    *alg = a;
    *digest = nul + 1;
    *dlen = n;
    return 0;
}

static int decode_name_field(const struct tc_ima_field *f, long idx, const char **path,
                             size_t *plen, struct tc_reason *why)
{
    if (f->len == 0 || f->data[f->len - 1] != 0)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "name field is not NUL-terminated");
    if (memchr(f->data, 0, f->len - 1) != NULL)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "name field has an embedded NUL");
    if (f->len - 1 > TC_IMA_MAX_PATH)
        return tc_fail(why, TC_ERR_TOO_LARGE, "ima.parse", idx, "name longer than %u bytes",
                       TC_IMA_MAX_PATH);
    *path = (const char *)f->data;
    *plen = f->len - 1;
    return 0;
}

/* Splits template data into u32-length-prefixed fields. */
static int split_fields(struct tc_ima_entry *e, bool big_endian, long idx, struct tc_reason *why)
{
    struct tc_reader r;
    tc_reader_init(&r, e->template_data, e->template_data_len);
    e->nfields = 0;
    while (tc_reader_left(&r) > 0) {
        uint32_t n;
        const uint8_t *p;
        int rc = big_endian ? tc_reader_u32be(&r, &n) : tc_reader_u32le(&r, &n);
        if (rc == 0)
            rc = tc_reader_view(&r, n, &p);
        if (rc)
            return tc_fail(why, TC_ERR_TRUNCATED, "ima.parse", idx,
                           "template field %zu overruns the template data", e->nfields);
        if (e->nfields == TC_IMA_MAX_FIELDS)
            return tc_fail(why, TC_ERR_TOO_LARGE, "ima.parse", idx, "more than %d fields",
                           TC_IMA_MAX_FIELDS);
        e->field[e->nfields].data = p;
        e->field[e->nfields].len = n;
        e->nfields++;
    }
    return 0;
}

/* Fills the decoded views of an entry whose template_data and template_name are set. */
static int decode_entry(struct tc_ima_entry *e, bool big_endian, long idx, struct tc_reason *why)
{
    int rc;
    const struct template_def *t = template_by_name(e->template_name);
    e->tpl = t ? t->id : TC_IMA_TPL_OTHER;
    e->violation = all_zero(e->template_hash, e->template_hash_len);

    if (e->tpl == TC_IMA_TPL_IMA) {
        /* digest(20) || name padded to 256; the padding keeps the name NUL-terminated. */
        if (e->template_data_len != 20 + TC_IMA_NAME_LEN_MAX + 1)
            return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "bad 'ima' template data size");
        const char *name = (const char *)e->template_data + 20;
        e->nfields = 2;
        e->field[0].data = e->template_data;
        e->field[0].len = 20;
        e->field[1].data = e->template_data + 20;
        e->field[1].len = (uint32_t)strnlen(name, TC_IMA_NAME_LEN_MAX + 1);
        if (e->field[1].len > TC_IMA_NAME_LEN_MAX)
            return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "'ima' name not terminated");
        e->digest_alg = tc_hash_by_name("sha1");
        e->digest = e->template_data;
        e->digest_len = 20;
        e->path = name;
        e->path_len = e->field[1].len;
        return 0;
    }
    if ((rc = split_fields(e, big_endian, idx, why)) != 0)
        return rc;
    if (t == NULL) {
        /* Custom template: decode d-ng|n-ng if it starts like that, silently otherwise. */
        if (e->nfields >= 2 &&
            decode_digest_field(&e->field[0], FK_DNG, idx, &e->digest_alg, &e->digest,
                                &e->digest_len, NULL) == 0 &&
            decode_name_field(&e->field[1], idx, &e->path, &e->path_len, NULL) == 0)
            return 0;
        e->digest_alg = NULL;
        e->digest = NULL;
        e->digest_len = 0;
        e->path = NULL;
        e->path_len = 0;
        return 0;
    }
    if (e->nfields != t->nfields)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx,
                       "template %s has %zu fields, expected %zu", t->name, e->nfields, t->nfields);
    for (size_t i = 0; i < t->nfields; i++) {
        const struct tc_ima_field *f = &e->field[i];
        switch (t->kind[i]) {
        case FK_DNG:
        case FK_DNGV2:
            if ((rc = decode_digest_field(f, t->kind[i], idx, &e->digest_alg, &e->digest,
                                          &e->digest_len, why)) != 0)
                return rc;
            break;
        case FK_DMODSIG:
            if (f->len > 0) {
                const struct tc_hash_alg *a;
                const uint8_t *d;
                size_t dl;
                if ((rc = decode_digest_field(f, FK_DNG, idx, &a, &d, &dl, why)) != 0)
                    return rc;
            }
            break;
        case FK_NNG:
            if ((rc = decode_name_field(f, idx, &e->path, &e->path_len, why)) != 0)
                return rc;
            break;
        case FK_SIG:
            e->sig = f->data;
            e->sig_len = f->len;
            break;
        case FK_BUF:
            e->buf = f->data;
            e->buf_len = f->len;
            break;
        default:
            break;
        }
    }
    return 0;
}

/* ---- binary lists ----------------------------------------------------------------------- */

enum tc_ima_format tc_ima_detect_format(const uint8_t *data, size_t len)
{
    if (len < 4)
        return TC_IMA_FMT_ASCII;
    uint32_t le = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                  (uint32_t)data[3] << 24;
    uint32_t be = (uint32_t)data[3] | (uint32_t)data[2] << 8 | (uint32_t)data[1] << 16 |
                  (uint32_t)data[0] << 24;
    return le < TC_PCR_COUNT || be < TC_PCR_COUNT ? TC_IMA_FMT_BINARY : TC_IMA_FMT_ASCII;
}

static int rd_u32(struct tc_reader *r, bool be, uint32_t *v)
{
    return be ? tc_reader_u32be(r, v) : tc_reader_u32le(r, v);
}

static int parse_binary_entry(struct tc_ima_log *log, struct tc_reader *r, bool be, long idx,
                              struct tc_ima_entry *e, struct tc_reason *why)
{
    size_t hl = log->template_hash_alg->size;
    uint32_t pcr, nlen, tdlen;
    const uint8_t *name, *hash;
    if (rd_u32(r, be, &pcr) || tc_reader_view(r, hl, &hash) || rd_u32(r, be, &nlen))
        return tc_fail(why, TC_ERR_TRUNCATED, "ima.parse", idx, "truncated entry header");
    if (pcr >= TC_PCR_COUNT)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "PCR index %u out of range", pcr);
    if (nlen == 0 || nlen > TC_IMA_MAX_TEMPLATE_NAME)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "template name length %u", nlen);
    if (tc_reader_view(r, nlen, &name))
        return tc_fail(why, TC_ERR_TRUNCATED, "ima.parse", idx, "truncated template name");
    if (memchr(name, 0, nlen) != NULL)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "NUL in template name");
    e->pcr = pcr;
    memcpy(e->template_hash, hash, hl);
    e->template_hash_len = hl;
    memcpy(e->template_name, name, nlen);
    e->template_name[nlen] = 0;

    if (strcmp(e->template_name, "ima") == 0) {
        /* No template data length; digest raw; name with a u32 length and no NUL. */
        const uint8_t *d, *n;
        uint32_t len;
        if (tc_reader_view(r, 20, &d) || rd_u32(r, be, &len))
            return tc_fail(why, TC_ERR_TRUNCATED, "ima.parse", idx, "truncated 'ima' entry");
        if (len > TC_IMA_NAME_LEN_MAX)
            return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "'ima' name length %u", len);
        if (tc_reader_view(r, len, &n))
            return tc_fail(why, TC_ERR_TRUNCATED, "ima.parse", idx, "truncated 'ima' name");
        if (memchr(n, 0, len) != NULL)
            return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "NUL in 'ima' name");
        e->template_data_len = 20 + TC_IMA_NAME_LEN_MAX + 1;
        if ((e->template_data = calloc(1, e->template_data_len)) == NULL)
            return TC_ERR_ALLOC;
        memcpy(e->template_data, d, 20);
        memcpy(e->template_data + 20, n, len);
    } else {
        const uint8_t *td;
        if (rd_u32(r, be, &tdlen))
            return tc_fail(why, TC_ERR_TRUNCATED, "ima.parse", idx, "truncated entry header");
        if (tdlen > TC_IMA_MAX_TEMPLATE_DATA)
            return tc_fail(why, TC_ERR_TOO_LARGE, "ima.parse", idx,
                           "template data of %u bytes exceeds the cap", tdlen);
        if (tc_reader_view(r, tdlen, &td))
            return tc_fail(why, TC_ERR_TRUNCATED, "ima.parse", idx, "truncated template data");
        if ((e->template_data = malloc(tdlen ? tdlen : 1)) == NULL)
            return TC_ERR_ALLOC;
        memcpy(e->template_data, td, tdlen);
        e->template_data_len = tdlen;
    }
    return decode_entry(e, be, idx, why);
}

static int parse_binary(struct tc_ima_log *log, const uint8_t *data, size_t len,
                        const struct tc_ima_parse_opts *o, size_t max, struct tc_reason *why)
{
    bool be = o->endian == TC_IMA_ENDIAN_BE;
    if (o->endian == TC_IMA_ENDIAN_AUTO && len >= 4) {
        uint32_t le = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                      (uint32_t)data[3] << 24;
        be = le >= TC_PCR_COUNT;
    }
    struct tc_reader r;
    tc_reader_init(&r, data, len);
    while (tc_reader_left(&r) > 0) {
        long idx = (long)(o->first_index + log->count);
        struct tc_ima_entry *e;
        int rc = log_slot(log, max, &e);
        if (rc)
            return tc_fail(why, rc, "ima.parse", idx,
                           rc == TC_ERR_TOO_LARGE ? "more than %zu entries" : "out of memory", max);
        rc = parse_binary_entry(log, &r, be, idx, e, why);
        log->count++; /* counted even on failure so that tc_ima_log_free frees its data */
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- ASCII lists ------------------------------------------------------------------------ */

static int put_u32le(struct tc_buf *b, uint32_t v)
{
    uint8_t l[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return tc_buf_put(b, l, 4);
}

/* Appends a u32le length and the bytes. */
static int put_field(struct tc_buf *b, const void *p, size_t n)
{
    int rc = put_u32le(b, (uint32_t)n);
    return rc ? rc : tc_buf_put(b, p, n);
}

/* Hex text of slen chars into a field (with its length prefix). */
static int put_hex_field(struct tc_buf *b, const char *s, size_t slen, long idx,
                         struct tc_reason *why)
{
    if (slen % 2 || slen / 2 > TC_IMA_MAX_TEMPLATE_DATA)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "bad hex field length %zu", slen);
    uint8_t *tmp = malloc(slen / 2 + 1);
    if (tmp == NULL)
        return TC_ERR_ALLOC;
    size_t n = 0;
    int rc = tc_hex_decode(s, slen, tmp, slen / 2, &n);
    if (rc)
        rc = tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "bad hex in a template field");
    else
        rc = put_field(b, tmp, n);
    free(tmp);
    return rc;
}

/* "alg:hex" (or "type:alg:hex") into "alg:\0digest". */
static int put_digest_field(struct tc_buf *b, const char *s, size_t slen, long idx,
                            struct tc_reason *why)
{
    const char *colon = NULL;
    for (size_t i = slen; i > 0; i--)
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    if (colon == NULL)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "digest without 'algorithm:'");
    size_t plen = (size_t)(colon + 1 - s), hlen = slen - plen;
    if (hlen % 2 || hlen / 2 > TC_MAX_DIGEST * 2)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "bad digest length in '%.*s'",
                       (int)(plen > 40 ? 40 : plen), s);
    uint8_t tmp[TC_IMA_MAX_TEMPLATE_NAME + 2 * TC_MAX_DIGEST + 64];
    if (plen > 64)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "digest prefix too long");
    memcpy(tmp, s, plen);
    tmp[plen] = 0;
    size_t n = 0;
    if (tc_hex_decode(colon + 1, hlen, tmp + plen + 1, sizeof(tmp) - plen - 1, &n))
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "bad hex in digest");
    return put_field(b, tmp, plen + 1 + n);
}

/* Next space-separated token of the view [*p, end). */
static bool next_token(const char **p, const char *end, const char **tok, size_t *tlen)
{
    const char *s = *p;
    const char *sp = memchr(s, ' ', (size_t)(end - s));
    if (sp == NULL)
        return false;
    *tok = s;
    *tlen = (size_t)(sp - s);
    *p = sp + 1;
    return *tlen > 0;
}

static int parse_ascii_line(struct tc_ima_log *log, const char *line, size_t len, long idx,
                            bool hash_alg_fixed, struct tc_ima_entry *e, struct tc_reason *why)
{
    const char *p = line, *end = line + len;
    const char *tok;
    size_t tlen;
    int rc = 0;

    /* PCR */
    if (!next_token(&p, end, &tok, &tlen) || tlen > 2)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "bad PCR column");
    unsigned pcr = 0;
    for (size_t i = 0; i < tlen; i++) {
        if (tok[i] < '0' || tok[i] > '9')
            return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "bad PCR column");
        pcr = pcr * 10 + (unsigned)(tok[i] - '0');
    }
    if (pcr >= TC_PCR_COUNT)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "PCR index %u out of range", pcr);
    e->pcr = pcr;

    /* template hash */
    if (!next_token(&p, end, &tok, &tlen))
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "missing template hash");
    if (!hash_alg_fixed && idx == (long)log->first_index) {
        const char *guess = tlen == 40    ? "sha1"
                            : tlen == 64  ? "sha256"
                            : tlen == 96  ? "sha384"
                            : tlen == 128 ? "sha512"
                                          : NULL;
        if (guess == NULL)
            return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "template hash of %zu hex digits",
                           tlen);
        log->template_hash_alg = tc_hash_by_name(guess);
    }
    if (tlen != 2 * log->template_hash_alg->size ||
        tc_hex_decode(tok, tlen, e->template_hash, sizeof(e->template_hash),
                      &e->template_hash_len) != 0)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "bad %s template hash",
                       log->template_hash_alg->name);

    /* template name */
    if (!next_token(&p, end, &tok, &tlen) || tlen > TC_IMA_MAX_TEMPLATE_NAME)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "bad template name");
    memcpy(e->template_name, tok, tlen);
    e->template_name[tlen] = 0;
    const struct template_def *t = template_by_name(e->template_name);
    if (t == NULL)
        return tc_fail(why, TC_ERR_UNSUPPORTED, "ima.parse", idx,
                       "template '%s' cannot be read from an ASCII list", e->template_name);
    for (size_t i = 0; i < t->nfields; i++)
        if (t->kind[i] == FK_NOASCII)
            return tc_fail(why, TC_ERR_UNSUPPORTED, "ima.parse", idx,
                           "template '%s' cannot be read from an ASCII list", t->name);

    /* First field up to a space; the name is everything up to the (nfields - 2) last spaces,
     * which are unambiguous because the fields after the name are hex or empty. */
    const char *f0;
    size_t f0len;
    if (!next_token(&p, end, &f0, &f0len))
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "missing digest field");
    const char *right[TC_IMA_MAX_FIELDS];
    size_t rlen[TC_IMA_MAX_FIELDS];
    const char *name_end = end;
    for (size_t k = t->nfields - 1; k >= 2; k--) {
        const char *q = name_end;
        while (q > p && q[-1] != ' ')
            q--;
        if (q == p)
            return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "missing template fields");
        right[k] = q;
        rlen[k] = (size_t)(name_end - q);
        name_end = q - 1;
    }
    size_t nlen = (size_t)(name_end - p);
    if (memchr(p, 0, nlen) != NULL)
        return tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "NUL in name");

    struct tc_buf b;
    tc_buf_init(&b, TC_IMA_MAX_TEMPLATE_DATA);
    if (t->id == TC_IMA_TPL_IMA) {
        uint8_t d[20];
        size_t dl;
        if (nlen > TC_IMA_NAME_LEN_MAX) {
            rc = tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "'ima' name too long");
            goto out;
        }
        if (f0len != 40 || tc_hex_decode(f0, f0len, d, sizeof(d), &dl) != 0) {
            rc = tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "bad 'ima' digest");
            goto out;
        }
        uint8_t pad[TC_IMA_NAME_LEN_MAX + 1] = {0};
        memcpy(pad, p, nlen);
        if ((rc = tc_buf_put(&b, d, 20)) != 0 || (rc = tc_buf_put(&b, pad, sizeof(pad))) != 0)
            goto out;
    } else {
        if (nlen == 0 || nlen > TC_IMA_MAX_PATH) {
            rc = tc_fail(why, TC_ERR_FORMAT, "ima.parse", idx, "bad name length %zu", nlen);
            goto out;
        }
        if ((rc = put_digest_field(&b, f0, f0len, idx, why)) != 0)
            goto out;
        if ((rc = put_u32le(&b, (uint32_t)(nlen + 1))) != 0 ||
            (rc = tc_buf_put(&b, p, nlen)) != 0 || (rc = tc_buf_put(&b, "", 1)) != 0)
            goto out;
        for (size_t k = 2; k < t->nfields; k++) {
            if (t->kind[k] == FK_DMODSIG && rlen[k] > 0)
                rc = put_digest_field(&b, right[k], rlen[k], idx, why);
            else if (t->kind[k] == FK_DMODSIG)
                rc = put_field(&b, "", 0);
            else
                rc = put_hex_field(&b, right[k], rlen[k], idx, why);
            if (rc)
                goto out;
        }
    }
    e->template_data = tc_buf_steal(&b, &e->template_data_len);
    rc = decode_entry(e, false, idx, why);
out:
    if (rc == TC_ERR_TOO_LARGE && why && why->check[0] == 0)
        tc_fail(why, rc, "ima.parse", idx, "template data too large");
    tc_buf_release(&b);
    return rc;
}

static int parse_ascii(struct tc_ima_log *log, const uint8_t *data, size_t len,
                       const struct tc_ima_parse_opts *o, size_t max, struct tc_reason *why)
{
    struct tc_reader r;
    tc_reader_init(&r, data, len);
    bool fixed = o->template_hash_alg != NULL;
    while (tc_reader_left(&r) > 0) {
        long idx = (long)(o->first_index + log->count);
        size_t left = tc_reader_left(&r);
        const uint8_t *nl = memchr(tc_reader_ptr(&r), '\n', left);
        size_t ll = nl ? (size_t)(nl - tc_reader_ptr(&r)) : left;
        const uint8_t *line;
        tc_reader_view(&r, ll, &line);
        if (nl)
            tc_reader_skip(&r, 1);
        if (ll == 0)
            continue;
        if (ll > TC_IMA_MAX_LINE)
            return tc_fail(why, TC_ERR_TOO_LARGE, "ima.parse", idx, "line longer than %u bytes",
                           TC_IMA_MAX_LINE);
        struct tc_ima_entry *e;
        int rc = log_slot(log, max, &e);
        if (rc)
            return tc_fail(why, rc, "ima.parse", idx,
                           rc == TC_ERR_TOO_LARGE ? "more than %zu entries" : "out of memory", max);
        rc = parse_ascii_line(log, (const char *)line, ll, idx, fixed, e, why);
        log->count++;
        if (rc)
            return rc;
        fixed = true;
    }
    return 0;
}

/* A 32-byte template hash is sha256 or sm3_256: the first entry whose hash is not a violation
 * tells which. */
static int settle_ascii_hash_alg(struct tc_ima_log *log)
{
    if (log->template_hash_alg->size != 32)
        return 0;
    for (size_t i = 0; i < log->count; i++) {
        const struct tc_ima_entry *e = &log->entries[i];
        if (e->violation)
            continue;
        uint8_t h[TC_MAX_DIGEST];
        int rc = tc_hash(log->template_hash_alg, e->template_data, e->template_data_len, h);
        if (rc)
            return rc;
        if (CRYPTO_memcmp(h, e->template_hash, 32) == 0)
            return 0;
        const struct tc_hash_alg *sm3 = tc_hash_by_name("sm3_256");
        if (tc_hash(sm3, e->template_data, e->template_data_len, h) == 0 &&
            CRYPTO_memcmp(h, e->template_hash, 32) == 0)
            log->template_hash_alg = sm3;
        return 0;
    }
    return 0;
}

int tc_ima_log_parse(const uint8_t *data, size_t len, const struct tc_ima_parse_opts *opts,
                     struct tc_ima_log **out, struct tc_reason *why)
{
    struct tc_ima_parse_opts o = {0};
    struct tc_ima_log *log = NULL;
    int rc;
    *out = NULL;
    if (opts)
        o = *opts;
    if (len > TC_IMA_MAX_FILE)
        return tc_fail(why, TC_ERR_TOO_LARGE, "ima.parse", -1, "list larger than %u bytes",
                       TC_IMA_MAX_FILE);
    size_t max = o.max_entries ? o.max_entries : TC_IMA_MAX_ENTRIES_DEFAULT;
    enum tc_ima_format fmt = o.format ? o.format : tc_ima_detect_format(data, len);
    if ((rc = tc_ima_log_new(o.template_hash_alg, &log)) != 0)
        return tc_fail(why, rc, "ima.parse", -1, "out of memory");
    log->first_index = o.first_index;
    if (fmt == TC_IMA_FMT_BINARY)
        rc = parse_binary(log, data, len, &o, max, why);
    else
        rc = parse_ascii(log, data, len, &o, max, why);
    if (rc == 0 && fmt != TC_IMA_FMT_BINARY && o.template_hash_alg == NULL)
        rc = settle_ascii_hash_alg(log);
    if (rc)
        goto out;
    *out = log;
    log = NULL;
out:
    if (rc == TC_ERR_ALLOC && why && why->check[0] == 0)
        tc_fail(why, rc, "ima.parse", -1, "out of memory");
    tc_ima_log_free(log);
    return rc;
}

int tc_ima_log_parse_file(const char *path, const struct tc_ima_parse_opts *opts,
                          struct tc_ima_log **out, struct tc_reason *why)
{
    uint8_t *data = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = tc_file_read(path, TC_IMA_MAX_FILE, &data, &len);
    if (rc)
        return tc_fail(why, rc, "ima.read", -1, "cannot read %s", path);
    rc = tc_ima_log_parse(data, len, opts, out, why);
    free(data);
    return rc;
}

/* ---- building lists --------------------------------------------------------------------- */

int tc_ima_template_data_ng(const struct tc_hash_alg *alg, const uint8_t *digest, const char *path,
                            const uint8_t *extra, size_t extra_len, bool with_extra, uint8_t **out,
                            size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    struct tc_buf b;
    int rc;
    char prefix[32];
    tc_buf_init(&b, TC_IMA_MAX_TEMPLATE_DATA);
    int n = snprintf(prefix, sizeof(prefix), "%s:", alg->name);
    if (n < 0 || (size_t)n >= sizeof(prefix))
        return TC_ERR_INVALID_ARG;
    size_t plen = strlen(path);
    uint8_t dfield[sizeof(prefix) + TC_MAX_DIGEST];
    memcpy(dfield, prefix, (size_t)n + 1);
    memcpy(dfield + n + 1, digest, alg->size);
    if ((rc = put_field(&b, dfield, (size_t)n + 1 + alg->size)) != 0 ||
        (rc = put_field(&b, path, plen + 1)) != 0)
        goto out;
    if (with_extra && (rc = put_field(&b, extra, extra_len)) != 0)
        goto out;
    *out = tc_buf_steal(&b, out_len);
out:
    tc_buf_release(&b);
    return rc;
}

int tc_ima_log_append(struct tc_ima_log *log, uint32_t pcr, const char *template_name,
                      const uint8_t *template_data, size_t len, bool violation,
                      struct tc_reason *why)
{
    long idx = (long)(log->first_index + log->count);
    struct tc_ima_entry *e;
    if (pcr >= TC_PCR_COUNT || strlen(template_name) > TC_IMA_MAX_TEMPLATE_NAME ||
        len > TC_IMA_MAX_TEMPLATE_DATA)
        return tc_fail(why, TC_ERR_INVALID_ARG, "ima.append", idx, "bad entry");
    int rc = log_slot(log, TC_IMA_MAX_ENTRIES_DEFAULT, &e);
    if (rc)
        return tc_fail(why, rc, "ima.append", idx, "cannot grow the list");
    e->pcr = pcr;
    snprintf(e->template_name, sizeof(e->template_name), "%s", template_name);
    e->template_hash_len = log->template_hash_alg->size;
    if ((e->template_data = malloc(len ? len : 1)) == NULL)
        return tc_fail(why, TC_ERR_ALLOC, "ima.append", idx, "out of memory");
    memcpy(e->template_data, template_data, len);
    e->template_data_len = len;
    if (!violation &&
        (rc = tc_hash(log->template_hash_alg, template_data, len, e->template_hash)) != 0) {
        free(e->template_data);
        return tc_fail(why, rc, "ima.append", idx, "hash failed");
    }
    if ((rc = decode_entry(e, false, idx, why)) != 0) {
        free(e->template_data);
        return rc;
    }
    log->count++;
    return 0;
}

/* ---- serialisation ---------------------------------------------------------------------- */

static int put_hex(struct tc_buf *b, const uint8_t *p, size_t n)
{
    char h[2 * 64 + 1];
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0; off += 64) {
        size_t k = n - off > 64 ? 64 : n - off;
        tc_hex_encode(p + off, k, h);
        rc = tc_buf_put(b, h, 2 * k);
    }
    return rc;
}

int tc_ima_log_to_ascii(const struct tc_ima_log *log, size_t from, size_t to, struct tc_buf *out)
{
    int rc = 0;
    if (to > log->count || from > to)
        return TC_ERR_INVALID_ARG;
    for (size_t i = from; i < to && rc == 0; i++) {
        const struct tc_ima_entry *e = &log->entries[i];
        const struct template_def *t = template_by_name(e->template_name);
        if (t == NULL)
            return TC_ERR_UNSUPPORTED;
        if ((rc = tc_buf_putf(out, "%u ", e->pcr)) != 0 ||
            (rc = put_hex(out, e->template_hash, e->template_hash_len)) != 0 ||
            (rc = tc_buf_putf(out, " %s", e->template_name)) != 0)
            return rc;
        for (size_t k = 0; k < t->nfields && rc == 0; k++) {
            const struct tc_ima_field *f = &e->field[k];
            if ((rc = tc_buf_put(out, " ", 1)) != 0)
                break;
            if (f->len == 0)
                continue;
            switch (t->kind[k]) {
            case FK_D:
            case FK_SIG:
            case FK_BUF:
            case FK_HEX:
                rc = put_hex(out, f->data, f->len);
                break;
            case FK_N:
                rc = tc_buf_put(out, f->data, f->len);
                break;
            case FK_NNG:
                rc = tc_buf_put(out, f->data, f->len - 1);
                break;
            case FK_DNG:
            case FK_DNGV2:
            case FK_DMODSIG: {
                const uint8_t *nul = memchr(f->data, 0, f->len);
                if (nul == NULL)
                    return TC_ERR_FORMAT;
                size_t pl = (size_t)(nul - f->data);
                if ((rc = tc_buf_put(out, f->data, pl)) == 0)
                    rc = put_hex(out, nul + 1, f->len - pl - 1);
                break;
            }
            default:
                return TC_ERR_UNSUPPORTED;
            }
        }
        if (rc == 0)
            rc = tc_buf_put(out, "\n", 1);
    }
    return rc;
}

int tc_ima_log_to_binary(const struct tc_ima_log *log, size_t from, size_t to, struct tc_buf *out)
{
    int rc = 0;
    if (to > log->count || from > to)
        return TC_ERR_INVALID_ARG;
    for (size_t i = from; i < to && rc == 0; i++) {
        const struct tc_ima_entry *e = &log->entries[i];
        size_t nl = strlen(e->template_name);
        if ((rc = put_u32le(out, e->pcr)) != 0 ||
            (rc = tc_buf_put(out, e->template_hash, e->template_hash_len)) != 0 ||
            (rc = put_u32le(out, (uint32_t)nl)) != 0 ||
            (rc = tc_buf_put(out, e->template_name, nl)) != 0)
            return rc;
        if (e->tpl == TC_IMA_TPL_IMA) {
            if ((rc = tc_buf_put(out, e->field[0].data, 20)) != 0 ||
                (rc = put_field(out, e->field[1].data, e->field[1].len)) != 0)
                return rc;
            continue;
        }
        /* Re-encode the fields little-endian: the canonical format. */
        size_t total = 0;
        for (size_t k = 0; k < e->nfields; k++)
            total += 4 + e->field[k].len;
        if ((rc = put_u32le(out, (uint32_t)total)) != 0)
            return rc;
        for (size_t k = 0; k < e->nfields && rc == 0; k++)
            rc = put_field(out, e->field[k].data, e->field[k].len);
    }
    return rc;
}

json_t *tc_ima_entry_to_json(const struct tc_ima_log *log, size_t i)
{
    const struct tc_ima_entry *e = &log->entries[i];
    json_t *j = json_object();
    char *hex = malloc(2 * (e->sig_len > e->buf_len ? e->sig_len : e->buf_len) + 2 * 64 + 1);
    if (j == NULL || hex == NULL) {
        json_decref(j);
        free(hex);
        return NULL;
    }
    json_object_set_new(j, "index", json_integer((json_int_t)(log->first_index + i)));
    json_object_set_new(j, "pcr", json_integer(e->pcr));
    tc_hex_encode(e->template_hash, e->template_hash_len, hex);
    json_object_set_new(j, "template_hash", json_string(hex));
    json_object_set_new(j, "template", json_string(e->template_name));
    json_object_set_new(j, "violation", json_boolean(e->violation));
    if (e->digest) {
        tc_hex_encode(e->digest, e->digest_len, hex);
        json_object_set_new(j, "digest_alg", json_string(e->digest_alg->name));
        json_object_set_new(j, "digest", json_string(hex));
    }
    if (e->path) {
        /* Paths are arbitrary bytes; jansson needs UTF-8. */
        json_t *s = json_stringn(e->path, e->path_len);
        json_object_set_new(j, "path", s ? s : json_string("<non-UTF-8 name>"));
    }
    if (e->sig_len) {
        tc_hex_encode(e->sig, e->sig_len, hex);
        json_object_set_new(j, "sig", json_string(hex));
    }
    if (e->buf_len) {
        tc_hex_encode(e->buf, e->buf_len, hex);
        json_object_set_new(j, "buf", json_string(hex));
    }
    free(hex);
    return j;
}
