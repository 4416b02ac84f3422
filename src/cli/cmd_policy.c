/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud policy create|check runtime|measured-boot. Runtime (IMA) policies
 * are handled here; measured-boot policies by cmd_policy_mb.c.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
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

static const struct cli_cmd policy_cmds[] = {
    {"create", policy_create, "runtime|measured-boot ...  build a policy from known-good evidence"},
    {"check", policy_check, "runtime|measured-boot ...  check evidence against a policy"},
};

int cmd_policy(int argc, char **argv)
{
    return cli_dispatch("policy", policy_cmds, sizeof(policy_cmds) / sizeof(policy_cmds[0]), argc,
                        argv);
}
