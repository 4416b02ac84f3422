/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud node list|show|approve|delete|history|wait: the nodes the coordinator knows
 * (docs/protocol.md, "Operator API"). Text for people, --json for scripts (the coordinator's
 * answer as it came); exit codes as in coord_client.h, plus `node wait` exiting 1 on timeout.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "coord_client.h"
#include "trustcloud/error.h"

static int node_list(int argc, char **argv);
static int node_show(int argc, char **argv);
static int node_approve(int argc, char **argv);
static int node_delete(int argc, char **argv);
static int node_history(int argc, char **argv);
static int node_wait(int argc, char **argv);

static const struct cli_cmd node_cmds[] = {
    {"list", node_list, "[--state S] [--group G] " COORD_CLIENT_HELP "  every node and its state"},
    {"show", node_show, "ID " COORD_CLIENT_HELP "  one node: state, reason, address, group"},
    {"approve", node_approve, "ID " COORD_CLIENT_HELP "  approve a node pending approval"},
    {"delete", node_delete, "ID " COORD_CLIENT_HELP "  forget a node (it must enroll again)"},
    {"history", node_history,
     "ID [--limit N] [--before ROW] " COORD_CLIENT_HELP "  attestation results, newest first"},
    {"wait", node_wait,
     "ID --state S[,S...] [--timeout SECONDS] " COORD_CLIENT_HELP
     "  wait until the node is in one of the states (exit 1 on timeout)"},
};

int cmd_node(int argc, char **argv)
{
    return cli_dispatch("node", node_cmds, sizeof(node_cmds) / sizeof(node_cmds[0]), argc, argv);
}

/* Extra per-command options. */
enum {
    OPT_STATE = 0x2000,
    OPT_GROUP,
    OPT_LIMIT,
    OPT_BEFORE,
    OPT_TIMEOUT,
};

struct node_args {
    struct coord_client c;
    const char *id;
    const char *state, *group;
    long long limit, before;
    double timeout;
};

static bool parse_ll(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Parses the common options plus the ones this command takes; want_id: one positional ID. */
static int parse_args(int argc, char **argv, const struct cli_cmd *cmd, bool want_id,
                      struct node_args *a)
{
    static const struct option opts[] = {
        COORD_CLIENT_OPTIONS,
        {"state", required_argument, NULL, OPT_STATE},
        {"group", required_argument, NULL, OPT_GROUP},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"before", required_argument, NULL, OPT_BEFORE},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof(*a));
    coord_client_init(&a->c, cmd->name);
    a->c.cmd = cmd == &node_cmds[0]   ? "node list"
               : cmd == &node_cmds[1] ? "node show"
               : cmd == &node_cmds[2] ? "node approve"
               : cmd == &node_cmds[3] ? "node delete"
               : cmd == &node_cmds[4] ? "node history"
                                      : "node wait";
    a->limit = 20;
    a->timeout = 30;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (coord_client_option(&a->c, c, optarg))
            continue;
        switch (c) {
        case OPT_STATE:
            a->state = optarg;
            break;
        case OPT_GROUP:
            a->group = optarg;
            break;
        case OPT_LIMIT:
            if (!parse_ll(optarg, 1, 10000, &a->limit))
                return cli_usage("node", cmd);
            break;
        case OPT_BEFORE:
            if (!parse_ll(optarg, 1, (long long)1 << 62, &a->before))
                return cli_usage("node", cmd);
            break;
        case OPT_TIMEOUT: {
            char *end;
            a->timeout = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || !(a->timeout >= 0 && a->timeout <= 86400))
                return cli_usage("node", cmd);
            break;
        }
        case 'h':
            printf("usage: trustcloud node %s %s\n", cmd->name, cmd->help);
            return -1;
        default:
            return cli_usage("node", cmd);
        }
    }
    if (want_id) {
        if (optind + 1 != argc || argv[optind][0] == '\0')
            return cli_usage("node", cmd);
        a->id = argv[optind];
    } else if (optind != argc) {
        return cli_usage("node", cmd);
    }
    return coord_client_finish(&a->c);
}

/* "/v1/nodes/ESCAPED_ID" + suffix. */
static int node_path(char *buf, size_t cap, const char *id, const char *suffix)
{
    return coord_client_path(buf, cap, "/v1/nodes/", id, suffix, "node", "node id");
}

/* The node object of a GET /v1/nodes/{id} answer ({"node": {...}} or the object itself). */
static const json_t *node_object(const json_t *resp)
{
    const json_t *n = json_object_get(resp, "node");
    return json_is_object(n) ? n : resp;
}

/* updated may be milliseconds (integer) or already a text time. */
static const char *updated_text(const json_t *node, char *buf, size_t cap)
{
    const json_t *u = json_object_get(node, "updated");
    if (json_is_string(u)) {
        snprintf(buf, cap, "%s", json_string_value(u));
        return buf;
    }
    return coord_client_time(coord_client_int(u), buf, cap);
}

static int node_list(int argc, char **argv)
{
    struct node_args a;
    json_t *resp = NULL;
    int ret = parse_args(argc, argv, &node_cmds[0], false, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if ((ret = coord_client_call(&a.c, "GET", "/v1/nodes", NULL, 0, &resp, NULL)) != 0)
        goto out;
    const json_t *nodes = json_object_get(resp, "nodes");
    if (!json_is_array(nodes)) {
        fprintf(stderr, "trustcloud node list: the answer has no node list\n");
        ret = TC_EXIT_USAGE;
        goto out;
    }
    coord_client_warn_store(&a.c, resp);
    json_t *kept = json_array();
    size_t i;
    const json_t *n;
    json_array_foreach(nodes, i, n)
    {
        if (a.state && !coord_client_state_in(coord_client_str(n, "state", ""), a.state))
            continue;
        if (a.group && strcmp(coord_client_str(n, "group", ""), a.group) != 0)
            continue;
        json_array_append(kept, (json_t *)n);
    }
    if (a.c.json) {
        json_t *o = json_pack("{s:o}", "nodes", kept);
        coord_client_print_json(o);
        json_decref(o);
        goto out;
    }
    printf("%-20s %-17s %-10s %-19s %s\n", "NODE", "STATE", "GROUP", "UPDATED (UTC)", "REASON");
    json_array_foreach(kept, i, n)
    {
        char t[32], r[512];
        printf("%-20s %-17s %-10s %-19s %s\n", coord_client_str(n, "id", "?"),
               coord_client_str(n, "state", "?"), coord_client_str(n, "group", "-"),
               updated_text(n, t, sizeof(t)),
               coord_client_reason(json_object_get(n, "reason"), r, sizeof(r)));
    }
    if (json_array_size(kept) == 0)
        printf("(no nodes)\n");
    json_decref(kept);
out:
    json_decref(resp);
    return ret;
}

static int node_show(int argc, char **argv)
{
    struct node_args a;
    json_t *resp = NULL;
    char path[1024];
    int ret = parse_args(argc, argv, &node_cmds[1], true, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if ((ret = node_path(path, sizeof(path), a.id, "")) != 0 ||
        (ret = coord_client_call(&a.c, "GET", path, NULL, 0, &resp, NULL)) != 0)
        goto out;
    if (a.c.json) {
        coord_client_print_json(resp);
        goto out;
    }
    const json_t *n = node_object(resp);
    char t[32], r[1024];
    const char *key;
    const json_t *v;
    printf("node:      %s\n", coord_client_str(n, "id", a.id));
    printf("state:     %s\n", coord_client_str(n, "state", "?"));
    printf("reason:    %s\n", coord_client_reason(json_object_get(n, "reason"), r, sizeof(r)));
    printf("group:     %s\n", coord_client_str(n, "group", "-"));
    printf("agent:     %s\n", coord_client_str(n, "agent_url", "-"));
    printf("updated:   %s UTC\n", updated_text(n, t, sizeof(t)));
    /* Whatever else the coordinator reports (counters, policies...), in its own words. */
    json_object_foreach((json_t *)n, key, v)
    {
        if (!strcmp(key, "id") || !strcmp(key, "state") || !strcmp(key, "reason") ||
            !strcmp(key, "group") || !strcmp(key, "agent_url") || !strcmp(key, "updated"))
            continue;
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%-10s %s\n", key, s ? s : "?");
        free(s);
    }
out:
    json_decref(resp);
    return ret;
}

static int node_post_or_delete(int argc, char **argv, const struct cli_cmd *cmd)
{
    struct node_args a;
    json_t *resp = NULL;
    char path[1024];
    bool approve = cmd == &node_cmds[2];
    int ret = parse_args(argc, argv, cmd, true, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if ((ret = node_path(path, sizeof(path), a.id, approve ? "/approve" : "")) != 0)
        goto out;
    json_t *empty = approve ? json_object() : NULL;
    ret = coord_client_call(&a.c, approve ? "POST" : "DELETE", path, empty, 0, &resp, NULL);
    json_decref(empty);
    if (ret)
        goto out;
    if (a.c.json) {
        json_t *o = resp ? json_incref(resp)
                         : json_pack("{s:s, s:b}", "id", a.id, approve ? "approved" : "deleted", 1);
        coord_client_print_json(o);
        json_decref(o);
    } else {
        printf("%s: %s\n", a.id, approve ? "approved" : "deleted");
    }
out:
    json_decref(resp);
    return ret;
}

static int node_approve(int argc, char **argv)
{
    return node_post_or_delete(argc, argv, &node_cmds[2]);
}

static int node_delete(int argc, char **argv)
{
    return node_post_or_delete(argc, argv, &node_cmds[3]);
}

/* The rows of a history answer, whatever the list is called. */
static const json_t *history_rows(const json_t *resp)
{
    static const char *const keys[] = {"history", "results", "rounds"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const json_t *v = json_object_get(resp, keys[i]);
        if (json_is_array(v))
            return v;
    }
    return json_is_array(resp) ? resp : NULL;
}

static int node_history(int argc, char **argv)
{
    struct node_args a;
    json_t *resp = NULL;
    char path[1200], q[64];
    int ret = parse_args(argc, argv, &node_cmds[4], true, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if (a.before)
        snprintf(q, sizeof(q), "?limit=%lld&before=%lld", a.limit, a.before);
    else
        snprintf(q, sizeof(q), "?limit=%lld", a.limit);
    if ((ret = node_path(path, sizeof(path) - sizeof(q), a.id, "/history")) != 0)
        goto out;
    strcat(path, q);
    if ((ret = coord_client_call(&a.c, "GET", path, NULL, 0, &resp, NULL)) != 0)
        goto out;
    if (a.c.json) {
        coord_client_print_json(resp);
        goto out;
    }
    const json_t *rows = history_rows(resp);
    if (!rows) {
        fprintf(stderr, "trustcloud node history: the answer has no history list\n");
        ret = TC_EXIT_USAGE;
        goto out;
    }
    printf("%-8s %-8s %-19s %-12s %s\n", "ROW", "ROUND", "TIME (UTC)", "STATE", "REASON");
    size_t i;
    const json_t *row;
    json_array_foreach(rows, i, row)
    {
        char t[32], r[1024];
        const json_t *changed = json_object_get(row, "changed");
        printf("%-8lld %-8lld %-19s %-12s %s%s\n", coord_client_int(json_object_get(row, "id")),
               coord_client_int(json_object_get(row, "round")),
               coord_client_time(coord_client_int(json_object_get(row, "ts")), t, sizeof(t)),
               coord_client_str(row, "state", "?"), json_is_true(changed) ? "(changed) " : "",
               coord_client_reason(json_object_get(row, "reason"), r, sizeof(r)));
    }
    if (json_array_size(rows) == 0)
        printf("(no results)\n");
out:
    json_decref(resp);
    return ret;
}

static int node_wait(int argc, char **argv)
{
    struct node_args a;
    json_t *resp = NULL;
    char path[1024];
    long code;
    int ret = parse_args(argc, argv, &node_cmds[5], true, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if (!a.state)
        return cli_usage("node", &node_cmds[5]);
    if ((ret = node_path(path, sizeof(path), a.id, "")) != 0)
        return ret;
    ret = coord_client_wait(&a.c, path, a.id, "node", a.state, a.timeout, &resp, &code);
    if (ret == TC_EXIT_OK) {
        if (a.c.json)
            coord_client_print_json(resp);
        else
            printf("%s: %s\n", a.id, coord_client_str(node_object(resp), "state", ""));
    } else if (code != 0) {
        coord_client_print_refusal(&a.c, code, resp); /* say why waiting will not help */
    }
    json_decref(resp);
    return ret;
}
