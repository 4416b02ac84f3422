/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud policy create measured-boot --from-eventlog FILE [-o OUT]
 * trustcloud policy check measured-boot --policy P --eventlog FILE [--json]
 * (cmd_policy.c dispatches here; argv[0] is "measured-boot").
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/eventlog.h"
#include "trustcloud/mb_policy.h"

static const struct cli_cmd create_cmd = {
    "measured-boot", policy_mb_create_main,
    "--from-eventlog FILE [-o OUT]  reference policy from a known-good UEFI event log"};
static const struct cli_cmd check_cmd = {
    "measured-boot", policy_mb_check_main,
    "--policy P --eventlog FILE [--json]  check a UEFI event log against a policy"};

int policy_mb_create_main(int argc, char **argv)
{
    static const struct option opts[] = {{"from-eventlog", required_argument, NULL, 'e'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *in = NULL, *outfile = NULL;
    struct tc_reason why;
    struct tc_evlog *log = NULL;
    struct tc_mb_policy *p = NULL;
    struct tc_pcr_set pcrs;
    json_t *j = NULL;
    char *text = NULL;
    int c, rc;

    tc_reason_clear(&why);
    while ((c = getopt_long(argc, argv, "e:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            in = optarg;
            break;
        case 'o':
            outfile = optarg;
            break;
        case 'h':
            printf("usage: trustcloud policy create %s %s\n", create_cmd.name, create_cmd.help);
            return TC_EXIT_OK;
        default:
            return cli_usage("policy create", &create_cmd);
        }
    }
    if (in == NULL || optind != argc)
        return cli_usage("policy create", &create_cmd);
    if (tc_evlog_parse_file(in, &log, &why) != 0 || tc_evlog_replay(log, &pcrs, &why) != 0 ||
        tc_mb_policy_from_eventlog(log, &pcrs, &p, &why) != 0) {
        rc = cli_report_failure(&why, 0);
        goto out;
    }
    if ((j = tc_mb_policy_to_json(p)) == NULL ||
        (text = json_dumps(j, JSON_INDENT(2) | JSON_ENSURE_ASCII)) == NULL) {
        fprintf(stderr, "trustcloud policy create: out of memory\n");
        rc = TC_EXIT_USAGE;
        goto out;
    }
    if (outfile == NULL) {
        puts(text);
    } else {
        size_t n = strlen(text);
        text[n] = '\n'; /* json_dumps leaves room: replace the NUL, length passed explicitly */
        if (tc_file_write(outfile, text, n + 1, 0644) != 0) {
            fprintf(stderr, "trustcloud policy create: cannot write %s\n", outfile);
            rc = TC_EXIT_USAGE;
            goto out;
        }
    }
    rc = TC_EXIT_OK;
out:
    free(text);
    json_decref(j);
    tc_mb_policy_free(p);
    tc_evlog_free(log);
    return rc;
}

int policy_mb_check_main(int argc, char **argv)
{
    static const struct option opts[] = {{"policy", required_argument, NULL, 'p'},
                                         {"eventlog", required_argument, NULL, 'e'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *pfile = NULL, *efile = NULL;
    struct tc_reason why;
    struct tc_evlog *log = NULL;
    struct tc_mb_policy *p = NULL;
    struct tc_pcr_set pcrs;
    uint8_t *ptext = NULL;
    size_t plen = 0;
    int c, rc, json = 0;

    tc_reason_clear(&why);
    while ((c = getopt_long(argc, argv, "p:e:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            pfile = optarg;
            break;
        case 'e':
            efile = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            printf("usage: trustcloud policy check %s %s\n", check_cmd.name, check_cmd.help);
            return TC_EXIT_OK;
        default:
            return cli_usage("policy check", &check_cmd);
        }
    }
    if (pfile == NULL || efile == NULL || optind != argc)
        return cli_usage("policy check", &check_cmd);
    if ((rc = tc_file_read(pfile, TC_MB_POLICY_MAX_SIZE, &ptext, &plen)) != 0) {
        tc_fail(&why, rc == TC_ERR_TOO_LARGE ? rc : TC_ERR_IO, "mb.policy", -1,
                "cannot read policy %s", pfile);
        /* An unreadable policy is an operator error, not a rejected log. */
        why.code = TC_ERR_IO;
        rc = cli_report_failure(&why, json);
        goto out;
    }
    if (tc_mb_policy_from_json((const char *)ptext, plen, &p, &why) != 0) {
        why.code = TC_ERR_INVALID_ARG; /* a broken policy is a usage error (exit 2) */
        rc = cli_report_failure(&why, json);
        goto out;
    }
    if (tc_evlog_parse_file(efile, &log, &why) != 0 || tc_evlog_replay(log, &pcrs, &why) != 0 ||
        tc_mb_policy_check(p, log, &pcrs, &why) != 0) {
        rc = cli_report_failure(&why, json);
        goto out;
    }
    if (json)
        puts("{\"valid\": true}");
    else
        printf("OK: event log satisfies the measured-boot policy (%zu events)\n", log->nevents);
    rc = TC_EXIT_OK;
out:
    free(ptext);
    tc_mb_policy_free(p);
    tc_evlog_free(log);
    return rc;
}
