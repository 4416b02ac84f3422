/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud policy create|check runtime|measured-boot. Runtime (IMA) policies
 * are handled here; measured-boot policies by cmd_policy_mb.c.
 * trustcloud policy add|list|show|assign|update: the same policies stored on the coordinator
 * (docs/protocol.md, "Operator API"), versioned by name.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "coord_client.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/ima.h"
#include "trustcloud/runtime_policy.h"

static const struct cli_cmd runtime_create_cmd = {
    "create runtime", NULL,
    "--from-ima-log FILE [--format ascii|binary] [-o OUT]  build a runtime policy (Keylime JSON) "
    "from a known-good IMA list"};
static const struct cli_cmd runtime_check_cmd = {
    "check runtime", NULL,
    "--policy P --ima-log FILE [--json] [--format ascii|binary] [--allow-violations]  check every "
    "entry of an IMA list (template hashes, then the policy)"};

static int parse_format(const char *s, enum tc_ima_format *f)
{
    if (strcmp(s, "ascii") == 0)
        *f = TC_IMA_FMT_ASCII;
    else if (strcmp(s, "binary") == 0)
        *f = TC_IMA_FMT_BINARY;
    else if (strcmp(s, "auto") == 0)
        *f = TC_IMA_FMT_AUTO;
    else
        return -1;
    return 0;
}

static int runtime_create(int argc, char **argv)
{
    static const struct option opts[] = {
        {"from-ima-log", required_argument, NULL, 'l'},
        {"format", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *logfile = NULL, *outfile = NULL;
    struct tc_ima_parse_opts po = {0};
    struct tc_reason why;
    struct tc_ima_log *log = NULL;
    struct tc_runtime_policy *pol = NULL;
    json_t *j = NULL;
    char *s = NULL;
    int c, rc, ret = TC_EXIT_OK;
    optind = 1;
    while ((c = getopt_long(argc, argv, "l:f:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            logfile = optarg;
            break;
        case 'f':
            if (parse_format(optarg, &po.format) != 0)
                return cli_usage("policy", &runtime_create_cmd);
            break;
        case 'o':
            outfile = optarg;
            break;
        case 'h':
            printf("usage: trustcloud policy %s %s\n", runtime_create_cmd.name,
                   runtime_create_cmd.help);
            return TC_EXIT_OK;
        default:
            return cli_usage("policy", &runtime_create_cmd);
        }
    }
    if (logfile == NULL || optind != argc)
        return cli_usage("policy", &runtime_create_cmd);
    tc_reason_clear(&why);
    if ((rc = tc_ima_log_parse_file(logfile, &po, &log, &why)) != 0 ||
        (rc = tc_ima_log_verify_template_hashes(log, &why)) != 0 ||
        (rc = tc_runtime_policy_from_ima_log(log, &pol, &why)) != 0) {
        ret = cli_report_failure(&why, 0);
        goto out;
    }
    if (tc_runtime_policy_to_json(pol, &j) != 0 ||
        (s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS)) == NULL) {
        fprintf(stderr, "trustcloud policy: cannot write the policy\n");
        ret = TC_EXIT_USAGE;
        goto out;
    }
    if (outfile) {
        size_t n = strlen(s);
        s[n] = '\n'; /* json_dumps' NUL becomes the final newline */
        if (tc_file_write(outfile, s, n + 1, 0644) != 0) {
            fprintf(stderr, "trustcloud policy: cannot write %s\n", outfile);
            ret = TC_EXIT_USAGE;
        }
    } else {
        puts(s);
    }
out:
    free(s);
    json_decref(j);
    tc_runtime_policy_free(pol);
    tc_ima_log_free(log);
    return ret;
}

static int runtime_check(int argc, char **argv)
{
    static const struct option opts[] = {
        {"policy", required_argument, NULL, 'p'},
        {"ima-log", required_argument, NULL, 'l'},
        {"format", required_argument, NULL, 'f'},
        {"json", no_argument, NULL, 'j'},
        {"allow-violations", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *polfile = NULL, *logfile = NULL;
    struct tc_ima_parse_opts po = {0};
    struct tc_reason why;
    struct tc_ima_log *log = NULL;
    struct tc_runtime_policy *pol = NULL;
    int c, rc, json = 0, allow = 0, ret = TC_EXIT_OK;
    optind = 1;
    while ((c = getopt_long(argc, argv, "p:l:f:jvh", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            polfile = optarg;
            break;
        case 'l':
            logfile = optarg;
            break;
        case 'f':
            if (parse_format(optarg, &po.format) != 0)
                return cli_usage("policy", &runtime_check_cmd);
            break;
        case 'j':
            json = 1;
            break;
        case 'v':
            allow = 1;
            break;
        case 'h':
            printf("usage: trustcloud policy %s %s\n", runtime_check_cmd.name,
                   runtime_check_cmd.help);
            return TC_EXIT_OK;
        default:
            return cli_usage("policy", &runtime_check_cmd);
        }
    }
    if (polfile == NULL || logfile == NULL || optind != argc)
        return cli_usage("policy", &runtime_check_cmd);
    tc_reason_clear(&why);
    if ((rc = tc_runtime_policy_load_file(polfile, &pol, &why)) != 0) {
        ret = cli_report_failure(&why, json);
        goto out;
    }
    tc_runtime_policy_set_allow_violations(pol, allow);
    /* The policy's log_hash_alg says which template hashes a binary list carries. */
    if (po.format != TC_IMA_FMT_ASCII)
        po.template_hash_alg = tc_runtime_policy_log_hash_alg(pol);
    if ((rc = tc_ima_log_parse_file(logfile, &po, &log, &why)) == TC_ERR_FORMAT &&
        po.format == TC_IMA_FMT_AUTO) {
        /* An ASCII list's template hashes tell their own size. */
        po.template_hash_alg = NULL;
        tc_reason_clear(&why);
        rc = tc_ima_log_parse_file(logfile, &po, &log, &why);
    }
    if (rc == 0)
        rc = tc_ima_log_verify_template_hashes(log, &why);
    if (rc == 0)
        rc = tc_runtime_policy_check_log(pol, log, 0, log->count, &why);
    if (rc) {
        ret = cli_report_failure(&why, json);
        goto out;
    }
    if (json) {
        json_t *j = json_pack("{s:b, s:I}", "valid", 1, "entries", (json_int_t)log->count);
        char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
        if (s)
            puts(s);
        free(s);
        json_decref(j);
    } else {
        printf("OK: %zu entries comply with the runtime policy\n", log->count);
    }
out:
    tc_runtime_policy_free(pol);
    tc_ima_log_free(log);
    return ret;
}

/* argv[0] is "create" or "check"; argv[1] the policy kind. */
static int dispatch_kind(int argc, char **argv, int (*runtime)(int, char **),
                         int (*mb)(int, char **))
{
    if (argc >= 2 && strcmp(argv[1], "runtime") == 0)
        return runtime(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "measured-boot") == 0) {
        optind = 1;
        return mb(argc - 1, argv + 1);
    }
    int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    FILE *f = help ? stdout : stderr;
    fprintf(f, "usage: trustcloud policy %s runtime|measured-boot ... (--help for details)\n",
            argv[0]);
    return help ? TC_EXIT_OK : TC_EXIT_USAGE;
}

static int policy_create(int argc, char **argv)
{
    return dispatch_kind(argc, argv, runtime_create, policy_mb_create_main);
}

static int policy_check(int argc, char **argv)
{
    return dispatch_kind(argc, argv, runtime_check, policy_mb_check_main);
}

/* ---- policies on the coordinator: add|list|show|assign|update ----------------------------- */

static int policy_add(int argc, char **argv);
static int policy_list(int argc, char **argv);
static int policy_show(int argc, char **argv);
static int policy_assign(int argc, char **argv);
static int policy_update(int argc, char **argv);

static const struct cli_cmd policy_remote_cmds[] = {
    {"add", policy_add,
     "--name NAME --kind runtime|measured-boot|pcr --file F " COORD_CLIENT_HELP
     "  store a policy on the coordinator (a new version when NAME exists)"},
    {"list", policy_list, COORD_CLIENT_HELP "  policies on the coordinator, current versions"},
    {"show", policy_show, "NAME [--version N] " COORD_CLIENT_HELP "  one policy and its body"},
    {"assign", policy_assign,
     "NAME (--node ID | --group G | --vm ID | --tenant T) " COORD_CLIENT_HELP
     "  apply a policy to a node, a group, a VM or a tenant's VMs (from the next round)"},
    {"update", policy_update,
     "NAME --file F " COORD_CLIENT_HELP "  new version of an existing policy (same kind)"},
};

enum {
    OPT_NAME = 0x2000,
    OPT_KIND,
    OPT_FILE,
    OPT_VERSION,
    OPT_NODE,
    OPT_GROUP,
    OPT_VM,
    OPT_TENANT
};

/* Policy bodies the CLI sends: the coordinator's own cap is max_policy_body (16 MiB default). */
#define POLICY_FILE_MAX (64u << 20)

struct remote_args {
    struct coord_client c;
    const char *name, *kind, *file, *node, *group;
    const char *tkind, *target; /* assign: "node", "group", "vm" or "tenant", and its value */
    int ntargets;
    long long version;
};

/* Returns 0, -1 (help printed) or an exit code. want_name: NAME is the one positional. */
static int remote_parse(int argc, char **argv, const struct cli_cmd *cmd, bool want_name,
                        struct remote_args *a)
{
    static const struct option opts[] = {
        COORD_CLIENT_OPTIONS,
        {"name", required_argument, NULL, OPT_NAME},
        {"kind", required_argument, NULL, OPT_KIND},
        {"file", required_argument, NULL, OPT_FILE},
        {"version", required_argument, NULL, OPT_VERSION},
        {"node", required_argument, NULL, OPT_NODE},
        {"group", required_argument, NULL, OPT_GROUP},
        {"vm", required_argument, NULL, OPT_VM},
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static char label[32];
    memset(a, 0, sizeof(*a));
    snprintf(label, sizeof(label), "policy %s", cmd->name);
    coord_client_init(&a->c, label);
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (coord_client_option(&a->c, c, optarg))
            continue;
        switch (c) {
        case OPT_NAME:
            a->name = optarg;
            break;
        case OPT_KIND:
            a->kind = optarg;
            break;
        case OPT_FILE:
            a->file = optarg;
            break;
        case OPT_NODE:
        case OPT_GROUP:
        case OPT_VM:
        case OPT_TENANT:
            if (c == OPT_NODE)
                a->node = optarg;
            if (c == OPT_GROUP)
                a->group = optarg;
            a->tkind = c == OPT_NODE    ? "node"
                       : c == OPT_GROUP ? "group"
                       : c == OPT_VM    ? "vm"
                                        : "tenant";
            a->target = optarg;
            a->ntargets++;
            break;
        case OPT_VERSION: {
            char *end;
            a->version = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || a->version < 1)
                return cli_usage("policy", cmd);
            break;
        }
        case 'h':
            printf("usage: trustcloud policy %s %s\n", cmd->name, cmd->help);
            return -1;
        default:
            return cli_usage("policy", cmd);
        }
    }
    if (want_name) {
        if (optind + 1 != argc || a->name)
            return cli_usage("policy", cmd);
        a->name = argv[optind];
    } else if (optind != argc) {
        return cli_usage("policy", cmd);
    }
    if (a->name && a->name[0] == '\0')
        return cli_usage("policy", cmd);
    return coord_client_finish(&a->c);
}

/* "/v1/policies/ESCAPED" + suffix. */
static int policy_path(char *buf, size_t cap, const char *name, const char *suffix)
{
    return coord_client_path(buf, cap, "/v1/policies/", name, suffix, "policy", "policy name");
}

/* The CLI says measured-boot (like `policy create`); the API says measured_boot. */
static const char *api_kind(const char *k)
{
    if (!strcmp(k, "runtime") || !strcmp(k, "pcr"))
        return k;
    if (!strcmp(k, "measured-boot") || !strcmp(k, "measured_boot"))
        return "measured_boot";
    return NULL;
}

/* Loads a policy file as JSON (any size up to POLICY_FILE_MAX). */
static json_t *load_policy_file(const char *path)
{
    json_error_t err;
    uint8_t *data = NULL;
    size_t len = 0;
    if (tc_file_read(path, POLICY_FILE_MAX, &data, &len) != 0) {
        fprintf(stderr, "trustcloud policy: cannot read %s (missing, or above %u MiB)\n", path,
                POLICY_FILE_MAX >> 20);
        return NULL;
    }
    json_t *j = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &err);
    free(data);
    if (!j)
        fprintf(stderr, "trustcloud policy: %s:%d: not JSON: %s\n", path, err.line, err.text);
    else if (!json_is_object(j)) {
        fprintf(stderr, "trustcloud policy: %s: a policy is a JSON object\n", path);
        json_decref(j);
        j = NULL;
    }
    return j;
}

static int post_policy(struct remote_args *a, const char *kind)
{
    json_t *body = NULL, *resp = NULL, *pol = NULL;
    int ret = TC_EXIT_USAGE;
    if ((pol = load_policy_file(a->file)) == NULL)
        goto out;
    body = json_pack("{s:s, s:s, s:O}", "name", a->name, "kind", kind, "body", pol);
    if (!body) {
        fprintf(stderr, "trustcloud policy: the name is not UTF-8 text\n");
        goto out;
    }
    if ((ret = coord_client_call(&a->c, "POST", "/v1/policies", body, 120000, &resp, NULL)) != 0)
        goto out;
    if (a->c.json) {
        coord_client_print_json(resp);
    } else {
        const json_t *v = json_object_get(resp, "version");
        printf("policy %s (%s): version %lld\n", a->name, kind,
               json_is_integer(v) ? (long long)json_integer_value(v) : -1LL);
    }
out:
    json_decref(pol);
    json_decref(body);
    json_decref(resp);
    return ret;
}

static int policy_add(int argc, char **argv)
{
    struct remote_args a;
    int ret = remote_parse(argc, argv, &policy_remote_cmds[0], false, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if (!a.name || !a.kind || !a.file)
        return cli_usage("policy", &policy_remote_cmds[0]);
    const char *kind = api_kind(a.kind);
    if (!kind) {
        fprintf(stderr, "trustcloud policy add: kind is runtime, measured-boot or pcr\n");
        return TC_EXIT_USAGE;
    }
    return post_policy(&a, kind);
}

/* The policy object of a show answer ({"policy": {...}} or the object itself). */
static const json_t *policy_object(const json_t *resp)
{
    const json_t *p = json_object_get(resp, "policy");
    return json_is_object(p) ? p : resp;
}

static int policy_update(int argc, char **argv)
{
    struct remote_args a;
    json_t *resp = NULL;
    char path[512];
    int ret = remote_parse(argc, argv, &policy_remote_cmds[4], true, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if (!a.file || a.kind)
        return cli_usage("policy", &policy_remote_cmds[4]);
    /* An update keeps the kind: ask the coordinator which it is (and that NAME exists). */
    if ((ret = policy_path(path, sizeof(path), a.name, "")) != 0 ||
        (ret = coord_client_call(&a.c, "GET", path, NULL, 0, &resp, NULL)) != 0)
        goto out;
    const char *kind = coord_client_str(policy_object(resp), "kind", NULL);
    if (!kind || !api_kind(kind)) {
        fprintf(stderr, "trustcloud policy update: the coordinator did not say the kind of %s\n",
                a.name);
        ret = TC_EXIT_USAGE;
        goto out;
    }
    ret = post_policy(&a, api_kind(kind));
out:
    json_decref(resp);
    return ret;
}

static int policy_list(int argc, char **argv)
{
    struct remote_args a;
    json_t *resp = NULL;
    int ret = remote_parse(argc, argv, &policy_remote_cmds[1], false, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if ((ret = coord_client_call(&a.c, "GET", "/v1/policies", NULL, 0, &resp, NULL)) != 0)
        goto out;
    if (a.c.json) {
        coord_client_print_json(resp);
        goto out;
    }
    const json_t *list = json_object_get(resp, "policies");
    if (!json_is_array(list)) {
        fprintf(stderr, "trustcloud policy list: the answer has no policy list\n");
        ret = TC_EXIT_USAGE;
        goto out;
    }
    printf("%-24s %-14s %s\n", "POLICY", "KIND", "VERSION");
    size_t i;
    const json_t *p;
    json_array_foreach(list, i, p)
    {
        const json_t *v = json_object_get(p, "version");
        printf("%-24s %-14s %lld\n", coord_client_str(p, "name", "?"),
               coord_client_str(p, "kind", "?"),
               json_is_integer(v) ? (long long)json_integer_value(v) : -1LL);
    }
    if (json_array_size(list) == 0)
        printf("(no policies)\n");
out:
    json_decref(resp);
    return ret;
}

static int policy_show(int argc, char **argv)
{
    struct remote_args a;
    json_t *resp = NULL;
    char path[512];
    int ret = remote_parse(argc, argv, &policy_remote_cmds[2], true, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if ((ret = policy_path(path, sizeof(path) - 32, a.name, "")) != 0)
        goto out;
    if (a.version)
        snprintf(path + strlen(path), 32, "?version=%lld", a.version);
    if ((ret = coord_client_call(&a.c, "GET", path, NULL, 0, &resp, NULL)) != 0)
        goto out;
    if (a.c.json) {
        coord_client_print_json(resp);
        goto out;
    }
    const json_t *p = policy_object(resp);
    const json_t *v = json_object_get(p, "version");
    printf("policy:  %s\nkind:    %s\nversion: %lld\n", coord_client_str(p, "name", a.name),
           coord_client_str(p, "kind", "?"),
           json_is_integer(v) ? (long long)json_integer_value(v) : -1LL);
    const json_t *body = json_object_get(p, "body");
    if (body) {
        printf("body:\n");
        coord_client_print_json(body);
    }
out:
    json_decref(resp);
    return ret;
}

static int policy_assign(int argc, char **argv)
{
    struct remote_args a;
    json_t *body = NULL, *resp = NULL;
    char path[512];
    int ret = remote_parse(argc, argv, &policy_remote_cmds[3], true, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if (a.ntargets != 1)
        return cli_usage("policy", &policy_remote_cmds[3]);
    body = json_pack("{s:s}", a.tkind, a.target);
    if (!body) {
        fprintf(stderr, "trustcloud policy assign: the target is not UTF-8 text\n");
        return TC_EXIT_USAGE;
    }
    if ((ret = policy_path(path, sizeof(path), a.name, "/assign")) != 0 ||
        (ret = coord_client_call(&a.c, "POST", path, body, 0, &resp, NULL)) != 0)
        goto out;
    if (a.c.json) {
        json_t *o =
            resp ? json_incref(resp) : json_pack("{s:s, s:s}", "policy", a.name, a.tkind, a.target);
        coord_client_print_json(o);
        json_decref(o);
    } else {
        printf("policy %s assigned to %s %s\n", a.name, a.tkind, a.target);
    }
out:
    json_decref(body);
    json_decref(resp);
    return ret;
}

static const struct cli_cmd policy_cmds[] = {
    {"create", policy_create, "runtime|measured-boot ...  build a policy from known-good evidence"},
    {"check", policy_check, "runtime|measured-boot ...  check evidence against a policy"},
    {"add", policy_add, "--name N --kind K --file F  store a policy on the coordinator"},
    {"list", policy_list, "  the coordinator's policies"},
    {"show", policy_show, "NAME [--version N]  one policy on the coordinator"},
    {"assign", policy_assign,
     "NAME (--node ID | --group G | --vm ID | --tenant T)  apply a policy"},
    {"update", policy_update, "NAME --file F  new version of a policy"},
};

int cmd_policy(int argc, char **argv)
{
    return cli_dispatch("policy", policy_cmds, sizeof(policy_cmds) / sizeof(policy_cmds[0]), argc,
                        argv);
}
