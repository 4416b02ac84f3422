/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud subscriber add|list|delete: webhooks the coordinator calls when a node leaves
 * `trusted` (docs/protocol.md, "Revocation"). Each delivery is signed with the subscriber's
 * secret (X-Trustcloud-Signature: sha256=HMAC). `add` without --secret draws one and prints it
 * once: the coordinator never shows it again.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cli.h"
#include "coord_client.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"

static int sub_add(int argc, char **argv);
static int sub_list(int argc, char **argv);
static int sub_delete(int argc, char **argv);

static const struct cli_cmd sub_cmds[] = {
    {"add", sub_add,
     "--url URL [--secret S | --secret-file F] " COORD_CLIENT_HELP
     "  register a webhook (a secret is drawn and printed when none is given)"},
    {"list", sub_list, COORD_CLIENT_HELP "  registered webhooks (never their secrets)"},
    {"delete", sub_delete, "ID " COORD_CLIENT_HELP "  remove a webhook and its pending deliveries"},
};

int cmd_subscriber(int argc, char **argv)
{
    return cli_dispatch("subscriber", sub_cmds, sizeof(sub_cmds) / sizeof(sub_cmds[0]), argc, argv);
}

enum { OPT_URL = 0x2000, OPT_SECRET, OPT_SECRET_FILE };

#define SUB_SECRET_MAX 64 /* the coordinator's cap */

struct sub_args {
    struct coord_client c;
    const char *url, *secret, *secret_file;
    const char *id;
};

/* Returns 0, -1 (help printed) or an exit code. */
static int parse_args(int argc, char **argv, const struct cli_cmd *cmd, bool want_id,
                      struct sub_args *a)
{
    static const struct option opts[] = {
        COORD_CLIENT_OPTIONS,
        {"url", required_argument, NULL, OPT_URL},
        {"secret", required_argument, NULL, OPT_SECRET},
        {"secret-file", required_argument, NULL, OPT_SECRET_FILE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof(*a));
    coord_client_init(&a->c, cmd == &sub_cmds[0]   ? "subscriber add"
                             : cmd == &sub_cmds[1] ? "subscriber list"
                                                   : "subscriber delete");
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (coord_client_option(&a->c, c, optarg))
            continue;
        switch (c) {
        case OPT_URL:
            a->url = optarg;
            break;
        case OPT_SECRET:
            a->secret = optarg;
            break;
        case OPT_SECRET_FILE:
            a->secret_file = optarg;
            break;
        case 'h':
            printf("usage: trustcloud subscriber %s %s\n", cmd->name, cmd->help);
            return -1;
        default:
            return cli_usage("subscriber", cmd);
        }
    }
    if (want_id) {
        if (optind + 1 != argc)
            return cli_usage("subscriber", cmd);
        a->id = argv[optind];
        char *end;
        long long v = strtoll(a->id, &end, 10);
        if (*a->id == '\0' || *end != '\0' || v <= 0) {
            fprintf(stderr, "trustcloud subscriber: '%s' is not a subscriber id\n", a->id);
            return TC_EXIT_USAGE;
        }
    } else if (optind != argc) {
        return cli_usage("subscriber", cmd);
    }
    return coord_client_finish(&a->c);
}

static int sub_add(int argc, char **argv)
{
    struct sub_args a;
    json_t *body = NULL, *resp = NULL;
    char secret[2 * 32 + 1];
    uint8_t *file = NULL;
    size_t file_len = 0;
    bool drawn = false;
    int ret = parse_args(argc, argv, &sub_cmds[0], false, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if (!a.url || (a.secret && a.secret_file))
        return cli_usage("subscriber", &sub_cmds[0]);
    const char *s = a.secret;
    if (a.secret_file) {
        if (tc_file_read(a.secret_file, SUB_SECRET_MAX + 2, &file, &file_len) != 0) {
            fprintf(stderr, "trustcloud subscriber add: cannot read %s\n", a.secret_file);
            ret = TC_EXIT_USAGE;
            goto out;
        }
        while (file_len > 0 && (file[file_len - 1] == '\n' || file[file_len - 1] == '\r'))
            file[--file_len] = '\0';
        if (memchr(file, '\0', file_len)) {
            fprintf(stderr, "trustcloud subscriber add: %s holds a NUL byte\n", a.secret_file);
            ret = TC_EXIT_USAGE;
            goto out;
        }
        s = (const char *)file;
    } else if (!s) {
        uint8_t raw[32];
        if (RAND_bytes(raw, sizeof(raw)) != 1) {
            fprintf(stderr, "trustcloud subscriber add: no randomness\n");
            ret = TC_EXIT_USAGE;
            goto out;
        }
        for (size_t i = 0; i < sizeof(raw); i++)
            snprintf(secret + 2 * i, 3, "%02x", raw[i]);
        OPENSSL_cleanse(raw, sizeof(raw));
        s = secret;
        drawn = true;
    }
    if (strlen(s) == 0 || strlen(s) > SUB_SECRET_MAX) {
        fprintf(stderr, "trustcloud subscriber add: the secret must be 1 to %d bytes\n",
                SUB_SECRET_MAX);
        ret = TC_EXIT_USAGE;
        goto out;
    }
    body = json_pack("{s:s, s:s}", "url", a.url, "secret", s);
    if (!body) {
        fprintf(stderr, "trustcloud subscriber add: the URL or secret is not UTF-8 text\n");
        ret = TC_EXIT_USAGE;
        goto out;
    }
    if ((ret = coord_client_call(&a.c, "POST", "/v1/subscribers", body, 0, &resp, NULL)) != 0)
        goto out;
    const json_t *id = json_object_get(resp, "id");
    if (a.c.json) {
        json_t *o = resp ? json_incref(resp) : json_object();
        if (drawn)
            json_object_set_new(o, "secret", json_string(s));
        coord_client_print_json(o);
        json_decref(o);
    } else {
        printf("subscriber %lld: %s\n",
               json_is_integer(id) ? (long long)json_integer_value(id) : -1LL, a.url);
        if (drawn)
            printf("secret: %s (shown once: the receiver verifies X-Trustcloud-Signature with "
                   "it)\n",
                   s);
    }
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    if (file)
        OPENSSL_cleanse(file, file_len);
    free(file);
    if (body) {
        /* the body holds the secret too */
        json_t *sv = json_object_get(body, "secret");
        if (sv && json_string_length(sv) > 0)
            OPENSSL_cleanse((char *)json_string_value(sv), json_string_length(sv));
    }
    json_decref(body);
    json_decref(resp);
    return ret;
}

static int sub_list(int argc, char **argv)
{
    struct sub_args a;
    json_t *resp = NULL;
    int ret = parse_args(argc, argv, &sub_cmds[1], false, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if ((ret = coord_client_call(&a.c, "GET", "/v1/subscribers", NULL, 0, &resp, NULL)) != 0)
        goto out;
    if (a.c.json) {
        coord_client_print_json(resp);
        goto out;
    }
    const json_t *subs = json_object_get(resp, "subscribers");
    if (!json_is_array(subs)) {
        fprintf(stderr, "trustcloud subscriber list: the answer has no subscriber list\n");
        ret = TC_EXIT_USAGE;
        goto out;
    }
    printf("%-6s %-19s %s\n", "ID", "CREATED (UTC)", "URL");
    size_t i;
    const json_t *s;
    json_array_foreach(subs, i, s)
    {
        char t[32];
        const json_t *id = json_object_get(s, "id"), *cr = json_object_get(s, "created");
        printf("%-6lld %-19s %s\n", json_is_integer(id) ? (long long)json_integer_value(id) : -1LL,
               coord_client_time(json_is_integer(cr) ? (long long)json_integer_value(cr) : 0, t,
                                 sizeof(t)),
               coord_client_str(s, "url", "?"));
    }
    if (json_array_size(subs) == 0)
        printf("(no subscribers)\n");
out:
    json_decref(resp);
    return ret;
}

static int sub_delete(int argc, char **argv)
{
    struct sub_args a;
    json_t *resp = NULL;
    char path[128];
    int ret = parse_args(argc, argv, &sub_cmds[2], true, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    snprintf(path, sizeof(path), "/v1/subscribers/%s", a.id);
    if ((ret = coord_client_call(&a.c, "DELETE", path, NULL, 0, &resp, NULL)) != 0)
        goto out;
    if (a.c.json) {
        json_t *o = resp ? json_incref(resp) : json_pack("{s:s, s:b}", "id", a.id, "deleted", 1);
        coord_client_print_json(o);
        json_decref(o);
    } else {
        printf("subscriber %s: deleted\n", a.id);
    }
out:
    json_decref(resp);
    return ret;
}
