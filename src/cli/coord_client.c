/* SPDX-License-Identifier: Apache-2.0 */
/* The operator commands' connection to the coordinator (see coord_client.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli.h"
#include "coord_client.h"
#include "trustcloud/error.h"
#include "trustcloud/httpc.h"

/* Answers may carry a whole policy (the coordinator accepts up to 64 MiB bodies). */
#define COORD_CLIENT_MAX_ANSWER (80u << 20)

void coord_client_init(struct coord_client *c, const char *cmd)
{
    memset(c, 0, sizeof(*c));
    c->cmd = cmd;
}

bool coord_client_option(struct coord_client *c, int opt, const char *arg)
{
    switch (opt) {
    case COORD_OPT_URL:
        c->url = arg;
        return true;
    case COORD_OPT_CERT:
        c->cert = arg;
        return true;
    case COORD_OPT_KEY:
        c->key = arg;
        return true;
    case COORD_OPT_CA:
        c->ca = arg;
        return true;
    case COORD_OPT_JSON:
        c->json = true;
        return true;
    default:
        return false;
    }
}

static const char *env_or(const char *v, const char *name)
{
    if (v && *v)
        return v;
    v = getenv(name);
    return v && *v ? v : NULL;
}

int coord_client_finish(struct coord_client *c)
{
    c->url = env_or(c->url, "TC_COORDINATOR");
    c->cert = env_or(c->cert, "TC_CERT");
    c->key = env_or(c->key, "TC_KEY");
    c->ca = env_or(c->ca, "TC_CA");
    const char *missing = !c->url    ? "--coordinator URL (or TC_COORDINATOR)"
                          : !c->ca   ? "--ca FILE (or TC_CA)"
                          : !c->cert ? "--cert FILE (or TC_CERT)"
                          : !c->key  ? "--key FILE (or TC_KEY)"
                                     : NULL;
    if (missing) {
        fprintf(stderr, "trustcloud %s: missing %s\n", c->cmd, missing);
        return TC_EXIT_USAGE;
    }
    if (strncmp(c->url, "https://", 8) != 0) {
        fprintf(stderr, "trustcloud %s: the coordinator URL must start with https://\n", c->cmd);
        return TC_EXIT_USAGE;
    }
    size_t n = strlen(c->url);
    while (n > 8 && c->url[n - 1] == '/')
        n--;
    if (n >= sizeof(c->base)) {
        fprintf(stderr, "trustcloud %s: coordinator URL too long\n", c->cmd);
        return TC_EXIT_USAGE;
    }
    memcpy(c->base, c->url, n);
    c->base[n] = '\0';
    c->url = c->base;
    return TC_EXIT_OK;
}

int coord_client_path(char *buf, size_t cap, const char *prefix, const char *id, const char *suffix,
                      const char *cmd, const char *what)
{
    snprintf(buf, cap, "%s", prefix);
    if (strlen(prefix) >= cap || coord_client_path_escape(buf, cap, id) != 0 ||
        strlen(buf) + strlen(suffix) >= cap) {
        fprintf(stderr, "trustcloud %s: %s too long\n", cmd, what);
        return TC_EXIT_USAGE;
    }
    strcat(buf, suffix);
    return 0;
}

int coord_client_path_escape(char *buf, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(buf);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-' || ch == '~';
        size_t need = plain ? 1 : 3;
        if (n + need >= cap)
            return TC_ERR_TOO_LARGE;
        if (plain) {
            buf[n++] = (char)ch;
        } else {
            buf[n++] = '%';
            buf[n++] = hex[ch >> 4];
            buf[n++] = hex[ch & 15];
        }
    }
    buf[n] = '\0';
    return 0;
}

void coord_client_print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (s)
        puts(s);
    free(s);
}

const char *coord_client_str(const json_t *obj, const char *key, const char *dflt)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : dflt;
}

const char *coord_client_time(long long ms, char *buf, size_t cap)
{
    struct tm tm;
    time_t t = (time_t)(ms / 1000);
    if (ms <= 0 || !gmtime_r(&t, &tm) || strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(buf, cap, "-");
    return buf;
}

const char *coord_client_reason(const json_t *reason, char *buf, size_t cap)
{
    if (json_is_string(reason)) {
        snprintf(buf, cap, "%s", json_string_value(reason));
        return buf;
    }
    if (!json_is_object(reason)) {
        snprintf(buf, cap, "-");
        return buf;
    }
    const char *check = coord_client_str(reason, "check", "?");
    const char *detail = coord_client_str(reason, "detail", "");
    const json_t *entry = json_object_get(reason, "entry");
    if (json_is_integer(entry) && json_integer_value(entry) >= 0)
        snprintf(buf, cap, "%s [entry %lld]%s%s", check, (long long)json_integer_value(entry),
                 *detail ? ": " : "", detail);
    else
        snprintf(buf, cap, "%s%s%s", check, *detail ? ": " : "", detail);
    return buf;
}

long long coord_client_int(const json_t *v)
{
    return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

bool coord_client_state_in(const char *state, const char *list)
{
    size_t n = strlen(state);
    for (const char *p = list; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, state, n) == 0)
            return true;
        p = comma ? comma + 1 : NULL;
    }
    return false;
}

void coord_client_print_refusal(const struct coord_client *c, long code, const json_t *body)
{
    if (c->json) {
        json_t *e = body ? json_incref((json_t *)body) : json_object();
        if (json_is_object(e))
            json_object_set_new(e, "http_status", json_integer(code));
        coord_client_print_json(e);
        json_decref(e);
    }
    const char *err = coord_client_str(body, "error", NULL);
    const char *check = coord_client_str(body, "check", NULL);
    fprintf(stderr, "trustcloud %s: the coordinator answered %ld", c->cmd, code);
    if (err)
        fprintf(stderr, ": %s", err);
    if (check)
        fprintf(stderr, " (%s)", check);
    fputc('\n', stderr);
}

int coord_client_call(struct coord_client *c, const char *method, const char *path,
                      const json_t *body, long timeout_ms, json_t **resp, long *http_code)
{
    char url[4096], detail[320] = "";
    char *text = NULL;
    uint8_t *answer = NULL;
    size_t answer_len = 0;
    long code = 0;
    json_t *j = NULL;
    int rc, ret = TC_EXIT_USAGE;
    *resp = NULL;
    if (http_code)
        *http_code = 0;
    if ((size_t)snprintf(url, sizeof(url), "%s%s", c->url, path) >= sizeof(url)) {
        fprintf(stderr, "trustcloud %s: request URL too long\n", c->cmd);
        return TC_EXIT_USAGE;
    }
    if (body && (text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL) {
        fprintf(stderr, "trustcloud %s: out of memory\n", c->cmd);
        return TC_EXIT_USAGE;
    }
    struct tc_httpc_config cfg = {
        .cert_file = c->cert,
        .key_file = c->key,
        .ca_file = c->ca,
        .timeout_ms = timeout_ms > 0 ? timeout_ms : 30000,
        .connect_timeout_ms = 5000,
        .max_body = COORD_CLIENT_MAX_ANSWER,
        /* Only the coordinator: a node's certificate from the same CA must not pass. */
        .expect_peer = TC_TLS_EXPECT_COORDINATOR,
        .error_detail = detail,
        .error_detail_len = sizeof(detail),
    };
    rc = tc_httpc_request(&cfg, method, url, text ? "application/json" : NULL, text,
                          text ? strlen(text) : 0, &code, &answer, &answer_len);
    if (rc == TC_ERR_SIGNATURE) {
        /* Said even when quiet: waiting or retrying will not change whom the URL reaches. */
        c->refused = true;
        fprintf(stderr, "trustcloud %s: refused %s, nothing was sent: %s\n", c->cmd, c->url,
                detail[0] ? detail : "server certificate not trusted by --ca");
        goto out;
    }
    if (rc != 0) {
        if (!c->quiet)
            fprintf(stderr, "trustcloud %s: no answer from %s: %s\n", c->cmd, c->url,
                    tc_strerror(rc));
        goto out;
    }
    if (http_code)
        *http_code = code;
    if (answer_len > 0) {
        json_error_t jerr;
        j = json_loadb((const char *)answer, answer_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!j) {
            if (!c->quiet)
                fprintf(stderr,
                        "trustcloud %s: the coordinator answered %ld with a body that is not "
                        "JSON: %s\n",
                        c->cmd, code, jerr.text);
            goto out;
        }
    }
    if (code >= 200 && code < 300) {
        ret = TC_EXIT_OK;
    } else {
        if (!c->quiet) /* else the caller decides */
            coord_client_print_refusal(c, code, j);
        ret = TC_EXIT_REJECTED;
    }
    *resp = j;
    j = NULL;
out:
    json_decref(j);
    free(answer);
    if (text)
        OPENSSL_cleanse(text, strlen(text)); /* a subscriber secret may be in it */
    free(text);
    return ret;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int coord_client_wait(struct coord_client *c, const char *path, const char *id, const char *member,
                      const char *states, double timeout_s, json_t **resp, long *http_code)
{
    char last[64] = "";
    double deadline = now_s() + timeout_s;
    bool json = c->json, quiet = c->quiet;
    int ret;
    *resp = NULL;
    *http_code = 0;
    /* The polls print nothing: a 404 or no answer is expected while the object comes up. */
    c->json = false;
    c->quiet = true;
    for (;;) {
        long code = 0;
        json_decref(*resp);
        *resp = NULL;
        ret = coord_client_call(c, "GET", path, NULL, 5000, resp, &code);
        if (ret == TC_EXIT_OK) {
            const json_t *obj = member ? json_object_get(*resp, member) : NULL;
            const char *st = coord_client_str(json_is_object(obj) ? obj : *resp, "state", "");
            snprintf(last, sizeof(last), "%s", st);
            if (coord_client_state_in(st, states))
                break;
        } else if (c->refused) {
            break; /* not the coordinator: said once, polling again would not change it */
        } else if (ret == TC_EXIT_REJECTED && code != 404) {
            /* Refused for another reason: waiting will not help. */
            *http_code = code;
            break;
        }
        if (now_s() >= deadline) {
            fprintf(stderr, "trustcloud %s: %s is %s after %.1f s, not %s\n", c->cmd, id,
                    *last ? last : "not known", timeout_s, states);
            json_decref(*resp);
            *resp = NULL;
            ret = TC_EXIT_REJECTED;
            break;
        }
        usleep(100 * 1000);
    }
    c->json = json;
    c->quiet = quiet;
    return ret;
}

void coord_client_warn_store(const struct coord_client *c, const json_t *resp)
{
    const json_t *st = json_object_get(resp, "store");
    if (!json_is_object(st) || json_is_true(json_object_get(st, "healthy")))
        return;
    char since[32];
    fprintf(stderr,
            "%s: WARNING: the coordinator cannot record verdicts (%s since %s UTC, %lld rounds "
            "waiting): nodes and VMs with unrecorded verdicts are shown not trusted\n",
            c->cmd, coord_client_str(st, "error", "store error"),
            coord_client_time(coord_client_int(json_object_get(st, "failing_since")), since,
                              sizeof(since)),
            coord_client_int(json_object_get(st, "unrecorded_rounds")));
}
