/* SPDX-License-Identifier: Apache-2.0 */
#define LOGMODULE "config"
#include "trustcloud/config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

struct load_ctx {
    const struct tc_config_setting *table;
    void *cfg;
    const char *origin;
    const char *base_dir;
    const char *text; /* input, walked line by line by the reader */
    size_t len, off;
    unsigned line;
    unsigned err_line;   /* line of the first error the handler or reader reported */
    unsigned char *seen; /* one flag per table entry: a key may be set once */
    int rc;
    char *err;
    size_t errlen;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void *field(void *cfg, const struct tc_config_setting *s)
{
    return (char *)cfg + s->offset;
}

int tc_config_parse_duration(const char *s, long long *ms)
{
    *ms = 0;
    if (!s || *s < '0' || *s > '9')
        return TC_ERR_FORMAT;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || v > (unsigned long long)LLONG_MAX)
        return TC_ERR_FORMAT;
    long long mult;
    if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        mult = 3600 * 1000;
    else if (*end == '\0' && v == 0)
        mult = 1; /* a bare 0 is unambiguous */
    else
        return TC_ERR_FORMAT;
    if ((long long)v > LLONG_MAX / mult)
        return TC_ERR_FORMAT;
    *ms = (long long)v * mult;
    return 0;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return TC_ERR_FORMAT;
}

static int check_bounds(const struct tc_config_setting *s, long long v, char *why, size_t whylen)
{
    if ((s->min != 0 || s->max != 0) && (v < s->min || v > s->max)) {
        set_err(why, whylen, "value %lld out of range [%lld, %lld]", v, s->min, s->max);
        return TC_ERR_FORMAT;
    }
    return 0;
}

/* Parses value for setting s and stores it; on failure why says what is wrong. */
static int apply(const struct tc_config_setting *s, void *cfg, const char *value,
                 const char *base_dir, char *why, size_t whylen)
{
    switch (s->type) {
    case TC_CFG_STRING:
    case TC_CFG_PATH: {
        char **dst = field(cfg, s);
        char *copy;
        if (!value) {
            copy = NULL;
        } else if (*value == '\0') {
            set_err(why, whylen, "empty value");
            return TC_ERR_FORMAT;
        } else if (s->type == TC_CFG_PATH && value[0] != '/' && base_dir && *base_dir) {
            size_t n = strlen(base_dir) + 1 + strlen(value) + 1;
            if (n > 4096) {
                set_err(why, whylen, "path too long");
                return TC_ERR_FORMAT;
            }
            if (!(copy = malloc(n)))
                return TC_ERR_ALLOC;
            size_t bl = strlen(base_dir);
            memcpy(copy, base_dir, bl);
            copy[bl] = '/';
            memcpy(copy + bl + 1, value, strlen(value) + 1);
        } else if (!(copy = strdup(value))) {
            return TC_ERR_ALLOC;
        }
        free(*dst);
        *dst = copy;
        return 0;
    }
    case TC_CFG_INT: {
        long long v = 0;
        if (value) {
            errno = 0;
            char *end;
            v = strtoll(value, &end, 0);
            if (errno || end == value || *end != '\0') {
                set_err(why, whylen, "\"%s\" is not an integer", value);
                return TC_ERR_FORMAT;
            }
            if (check_bounds(s, v, why, whylen))
                return TC_ERR_FORMAT;
        }
        *(long long *)field(cfg, s) = v;
        return 0;
    }
    case TC_CFG_BOOL: {
        bool v = false;
        if (value && parse_bool(value, &v) != 0) {
            set_err(why, whylen, "\"%s\" is not a boolean (true/false, yes/no, on/off, 1/0)",
                    value);
            return TC_ERR_FORMAT;
        }
        *(bool *)field(cfg, s) = v;
        return 0;
    }
    case TC_CFG_DURATION: {
        long long v = 0;
        if (value) {
            if (tc_config_parse_duration(value, &v) != 0) {
                set_err(why, whylen, "\"%s\" is not a duration (e.g. 500ms, 2s, 5m, 1h)", value);
                return TC_ERR_FORMAT;
            }
            if (check_bounds(s, v, why, whylen))
                return TC_ERR_FORMAT;
        }
        *(long long *)field(cfg, s) = v;
        return 0;
    }
    case TC_CFG_ENUM: {
        if (!s->choices || !s->choices[0]) {
            set_err(why, whylen, "enum without choices");
            return TC_ERR_INVALID_ARG;
        }
        int idx = 0;
        if (value) {
            idx = -1;
            for (int i = 0; s->choices[i]; i++)
                if (strcmp(s->choices[i], value) == 0)
                    idx = i;
            if (idx < 0) {
                char list[256] = "";
                for (int i = 0; s->choices[i]; i++) {
                    size_t l = strlen(list);
                    snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "", s->choices[i]);
                }
                set_err(why, whylen, "\"%s\" is not one of: %s", value, list);
                return TC_ERR_FORMAT;
            }
        }
        *(int *)field(cfg, s) = idx;
        return 0;
    }
    }
    set_err(why, whylen, "unknown setting type");
    return TC_ERR_INVALID_ARG;
}

int tc_config_defaults(const struct tc_config_setting *table, void *cfg, char *err, size_t errlen)
{
    set_err(err, errlen, "%s", "");
    for (const struct tc_config_setting *s = table; s->name; s++) {
        char why[320];
        int rc = apply(s, cfg, s->def, NULL, why, sizeof(why));
        if (rc) {
            set_err(err, errlen, "default of [%s] %s: %s", s->section, s->name, why);
            return rc == TC_ERR_ALLOC ? rc : TC_ERR_INVALID_ARG;
        }
    }
    return 0;
}

void tc_config_release(const struct tc_config_setting *table, void *cfg)
{
    if (!table || !cfg)
        return;
    for (const struct tc_config_setting *s = table; s->name; s++) {
        if (s->type == TC_CFG_STRING || s->type == TC_CFG_PATH) {
            char **p = field(cfg, s);
            free(*p);
            *p = NULL;
        }
    }
}

/* inih reader: hands out one line at a time so that ctx->line is the line being parsed. */
static char *reader(char *str, int num, void *stream)
{
    struct load_ctx *ctx = stream;
    if (ctx->rc || ctx->off >= ctx->len)
        return NULL;
    const char *p = ctx->text + ctx->off;
    size_t left = ctx->len - ctx->off;
    const char *nl = memchr(p, '\n', left);
    size_t linelen = nl ? (size_t)(nl - p) + 1 : left;
    ctx->line++;
    if (memchr(p, '\0', linelen)) {
        set_err(ctx->err, ctx->errlen, "%s:%u: NUL byte in line", ctx->origin, ctx->line);
        ctx->rc = TC_ERR_FORMAT;
        ctx->err_line = ctx->line;
        return NULL;
    }
    /* inih would silently split a longer line in two: refuse it instead. */
    if (num < 2 || linelen > (size_t)num - 1) {
        set_err(ctx->err, ctx->errlen, "%s:%u: line longer than %d characters", ctx->origin,
                ctx->line, num - 2);
        ctx->rc = TC_ERR_FORMAT;
        ctx->err_line = ctx->line;
        return NULL;
    }
    memcpy(str, p, linelen);
    str[linelen] = '\0';
    ctx->off += linelen;
    return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *ctx = user;
    if (ctx->rc)
        return 0;
    size_t i = 0;
    const struct tc_config_setting *s;
    for (s = ctx->table; s->name; s++, i++)
        if (strcmp(s->section, section) == 0 && strcmp(s->name, name) == 0)
            break;
    if (!s->name) {
        set_err(ctx->err, ctx->errlen, "%s:%u: unknown setting [%s] %s", ctx->origin, ctx->line,
                section, name);
        ctx->rc = TC_ERR_FORMAT;
        ctx->err_line = ctx->line;
        return 0;
    }
    if (ctx->seen[i]) {
        set_err(ctx->err, ctx->errlen, "%s:%u: [%s] %s is set more than once", ctx->origin,
                ctx->line, section, name);
        ctx->rc = TC_ERR_FORMAT;
        ctx->err_line = ctx->line;
        return 0;
    }
    ctx->seen[i] = 1;
    char why[320];
    int rc = apply(s, ctx->cfg, value, ctx->base_dir, why, sizeof(why));
    if (rc) {
        set_err(ctx->err, ctx->errlen, "%s:%u: [%s] %s: %s", ctx->origin, ctx->line, section, name,
                why);
        ctx->rc = rc == TC_ERR_ALLOC ? rc : TC_ERR_FORMAT;
        ctx->err_line = ctx->line;
        return 0;
    }
    return 1;
}

int tc_config_load_string(const char *text, size_t len, const char *origin, const char *base_dir,
                          const struct tc_config_setting *table, void *cfg, char *err,
                          size_t errlen)
{
    int rc;
    struct load_ctx ctx = {0};
    if (!table || !cfg || (!text && len))
        return TC_ERR_INVALID_ARG;
    if ((rc = tc_config_defaults(table, cfg, err, errlen)) != 0)
        return rc;
    if (len > TC_CONFIG_MAX_FILE) {
        set_err(err, errlen, "%s: larger than %d bytes", origin, TC_CONFIG_MAX_FILE);
        return TC_ERR_TOO_LARGE;
    }
    size_t n = 0;
    while (table[n].name)
        n++;
    ctx.table = table;
    ctx.cfg = cfg;
    ctx.origin = origin ? origin : "config";
    ctx.base_dir = base_dir;
    ctx.text = text ? text : "";
    ctx.len = len;
    ctx.err = err;
    ctx.errlen = errlen;
    if (!(ctx.seen = calloc(n + 1, 1)))
        return TC_ERR_ALLOC;
    int line = ini_parse_stream(reader, &ctx, handler, &ctx);
    if (ctx.rc && (line <= 0 || (unsigned)line >= ctx.err_line)) {
        rc = ctx.rc;
    } else if (line != 0) {
        /* A syntax error inih found on its own (no handler call): name the line. */
        set_err(err, errlen, "%s:%d: syntax error (expected [section] or name = value)", ctx.origin,
                line);
        rc = TC_ERR_FORMAT;
    }
    free(ctx.seen);
    return rc;
}

int tc_config_load(const char *path, const struct tc_config_setting *table, void *cfg, char *err,
                   size_t errlen)
{
    uint8_t *data = NULL;
    size_t len = 0;
    char *dir = NULL;
    int rc;
    if (!path)
        return TC_ERR_INVALID_ARG;
    if ((rc = tc_file_read(path, TC_CONFIG_MAX_FILE, &data, &len)) != 0) {
        /* Defaults still applied, so the caller's struct is in a defined state. */
        tc_config_defaults(table, cfg, NULL, 0);
        set_err(err, errlen, "%s: %s", path,
                rc == TC_ERR_TOO_LARGE ? "file too large" : "cannot read file");
        goto out;
    }
    const char *slash = strrchr(path, '/');
    if (slash) {
        if (!(dir = strndup(path, slash == path ? 1 : (size_t)(slash - path)))) {
            rc = TC_ERR_ALLOC;
            goto out;
        }
    }
    rc = tc_config_load_string((const char *)data, len, path, dir, table, cfg, err, errlen);
out:
    free(dir);
    free(data);
    return rc;
}

static const char *type_name(enum tc_config_type t)
{
    switch (t) {
    case TC_CFG_STRING:
        return "string";
    case TC_CFG_INT:
        return "integer";
    case TC_CFG_BOOL:
        return "boolean";
    case TC_CFG_PATH:
        return "path";
    case TC_CFG_DURATION:
        return "duration";
    case TC_CFG_ENUM:
        return "one of";
    }
    return "?";
}

void tc_config_print_defaults(const struct tc_config_setting *table, FILE *out)
{
    const char *cur = NULL;
    for (const struct tc_config_setting *s = table; s->name; s++) {
        if (!cur || strcmp(cur, s->section) != 0) {
            if (*s->section)
                fprintf(out, "%s[%s]\n", cur ? "\n" : "", s->section);
            cur = s->section;
        }
        fprintf(out, "# %s (%s", s->help ? s->help : s->name, type_name(s->type));
        if (s->type == TC_CFG_ENUM && s->choices)
            for (int i = 0; s->choices[i]; i++)
                fprintf(out, "%s%s", i ? "|" : " ", s->choices[i]);
        if ((s->type == TC_CFG_INT || s->type == TC_CFG_DURATION) && (s->min || s->max))
            fprintf(out, ", %lld..%lld%s", s->min, s->max, s->type == TC_CFG_DURATION ? " ms" : "");
        fprintf(out, ")\n");
        if (s->def)
            fprintf(out, "%s = %s\n", s->name, s->def);
        else
            fprintf(out, "# %s =\n", s->name);
    }
}
