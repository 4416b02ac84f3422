/* SPDX-License-Identifier: Apache-2.0 */
/* trustcloud eventlog replay|show: UEFI (TCG PC Client) event logs. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/eventlog.h"

static int cmd_replay(int argc, char **argv);
static int cmd_show(int argc, char **argv);

static const struct cli_cmd commands[] = {
    {"replay", cmd_replay, "[--json] FILE  replay the log: final PCR values of every bank"},
    {"show", cmd_show, "[--json] FILE  print every event with its digests and decoded data"},
};

/* Parses "[--json] FILE"; returns -1 after printing help (exit 0), or a usage exit code. */
static int parse_args(int argc, char **argv, const struct cli_cmd *cmd, int *json,
                      const char **file)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;
    *json = 0;
    while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            *json = 1;
            break;
        case 'h':
            printf("usage: trustcloud eventlog %s %s\n", cmd->name, cmd->help);
            return -1;
        default:
            return cli_usage("eventlog", cmd);
        }
    }
    if (optind != argc - 1)
        return cli_usage("eventlog", cmd);
    *file = argv[optind];
    return 0;
}

static int print_json(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    if (s == NULL) {
        fprintf(stderr, "trustcloud eventlog: out of memory\n");
        return TC_EXIT_USAGE;
    }
    puts(s);
    free(s);
    return TC_EXIT_OK;
}

static int cmd_replay(int argc, char **argv)
{
    struct tc_reason why;
    struct tc_evlog *log = NULL;
    struct tc_pcr_set pcrs;
    const char *file;
    int json, rc;

    tc_reason_clear(&why);
    if ((rc = parse_args(argc, argv, &commands[0], &json, &file)) != 0)
        return rc < 0 ? TC_EXIT_OK : rc;
    if (tc_evlog_parse_file(file, &log, &why) != 0 || tc_evlog_replay(log, &pcrs, &why) != 0) {
        rc = cli_report_failure(&why, json);
        goto out;
    }
    if (json) {
        json_t *j = tc_pcrs_to_json(&pcrs);
        rc = print_json(j);
        json_decref(j);
        goto out;
    }
    for (size_t b = 0; b < pcrs.nbanks; b++) {
        const struct tc_pcr_bank *bank = &pcrs.bank[b];
        for (unsigned p = 0; p < TC_PCR_COUNT; p++) {
            char hex[2 * TC_MAX_DIGEST + 1];
            if (!(bank->mask & (1u << p)))
                continue;
            tc_hex_encode(bank->value[p], bank->alg->size, hex);
            printf("%s:%u = %s\n", bank->alg->name, p, hex);
        }
    }
    rc = TC_EXIT_OK;
out:
    tc_evlog_free(log);
    return rc;
}

static void print_event_text(const struct tc_evlog *log, const struct tc_evlog_event *ev)
{
    const char *tn = tc_evlog_type_name(ev->type);
    json_t *j = tc_evlog_event_to_json(log, ev);
    printf("event %zu (offset %zu): PCR %u %s", ev->index, ev->offset, ev->pcr,
           tn ? tn : "unknown");
    if (tn == NULL)
        printf(" (0x%08x)", ev->type);
    printf(", %zu bytes of data\n", ev->data_len);
    for (size_t i = 0; i < ev->ndigests; i++) {
        char hex[2 * TC_EVLOG_MAX_DIGEST_SIZE + 1];
        tc_hex_encode(ev->digests[i].value, ev->digests[i].size, hex);
        if (ev->digests[i].hash)
            printf("  %s: %s\n", ev->digests[i].hash->name, hex);
        else
            printf("  alg_0x%04x: %s\n", ev->digests[i].alg_id, hex);
    }
    json_t *det = j ? json_object_get(j, "details") : NULL;
    if (det != NULL) {
        char *s = json_dumps(det, JSON_COMPACT);
        if (s)
            printf("  details: %s\n", s);
        free(s);
    }
    json_t *err = j ? json_object_get(j, "decode_error") : NULL;
    if (err)
        printf("  decode error: %s\n", json_string_value(err));
    json_decref(j);
}

static int cmd_show(int argc, char **argv)
{
    struct tc_reason why;
    struct tc_evlog *log = NULL;
    const char *file;
    int json, rc;

    tc_reason_clear(&why);
    if ((rc = parse_args(argc, argv, &commands[1], &json, &file)) != 0)
        return rc < 0 ? TC_EXIT_OK : rc;
    if (tc_evlog_parse_file(file, &log, &why) != 0) {
        rc = cli_report_failure(&why, json);
        goto out;
    }
    if (!json) {
        printf("format: %s, %zu events\n",
               log->format == TC_EVLOG_CRYPTO_AGILE ? "crypto-agile" : "legacy SHA-1",
               log->nevents);
        for (size_t i = 0; i < log->nevents; i++)
            print_event_text(log, &log->events[i]);
        rc = TC_EXIT_OK;
        goto out;
    }
    json_t *root = json_object(), *events = json_array();
    if (root == NULL || events == NULL || json_object_set_new(root, "events", events)) {
        json_decref(events);
        json_decref(root);
        rc = print_json(NULL);
        goto out;
    }
    json_object_set_new(
        root, "format",
        json_string(log->format == TC_EVLOG_CRYPTO_AGILE ? "crypto-agile" : "legacy-sha1"));
    for (size_t i = 0; i < log->nevents; i++) {
        json_t *e = tc_evlog_event_to_json(log, &log->events[i]);
        if (e == NULL || json_array_append_new(events, e)) {
            json_decref(root);
            rc = print_json(NULL);
            goto out;
        }
    }
    rc = print_json(root);
    json_decref(root);
out:
    tc_evlog_free(log);
    return rc;
}

int cmd_eventlog(int argc, char **argv)
{
    return cli_dispatch("eventlog", commands, sizeof(commands) / sizeof(commands[0]), argc, argv);
}
