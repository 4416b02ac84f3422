/* SPDX-License-Identifier: Apache-2.0 */
#include <getopt.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "trustcloud/error.h"

static const struct cli_cmd groups[] = {
    {"tpm", cmd_tpm, "info|pcrread|quote|ek|ak|extend ...  talk to a TPM by TCTI"},
    {"quote", cmd_quote, "verify ...  verify a TPM quote (tpm2-tools or trustcloud formats)"},
    {"appraise", cmd_appraise, "--ak ... [--eventlog ...] [--ima-log ...]  the whole verdict"},
    {"eventlog", cmd_eventlog, "replay|show [--json] FILE  UEFI (TCG PC Client) event logs"},
    {"ima", cmd_ima, "replay|show [--json] FILE  Linux IMA measurement lists"},
    {"policy", cmd_policy,
     "create|check|add|list|show|assign|update ...  build, check and manage policies"},
    {"credential", cmd_credential, "make ...  wrap a secret to a TPM's EK and AK name"},
    {"ca", cmd_ca, "init|issue ...  the coordinator's CA, its certificate, operator certificates"},
    {"node", cmd_node, "list|show|approve|delete|history ...  nodes known to the coordinator"},
    {"vm", cmd_vm, "create|start|stop|delete|list|show|history|wait ...  VMs with host-rooted vTPMs"},
    {"events", cmd_events, "[--since SEQ] [--follow] [--json]  the coordinator's event stream"},
    {"subscriber", cmd_subscriber, "add|list|delete ...  webhooks told about state changes"},
    {"lab", cmd_lab, "boot|ima-start|measure ...  give a software TPM a real node's evidence"},
};

int cli_usage(const char *group, const struct cli_cmd *cmd)
{
    fprintf(stderr, "usage: trustcloud %s %s %s\n", group, cmd->name, cmd->help);
    return TC_EXIT_USAGE;
}

int cli_dispatch(const char *group, const struct cli_cmd *table, size_t n, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--help") != 0 && strcmp(argv[1], "-h") != 0) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(argv[1], table[i].name) == 0) {
                optind = 1;
                return table[i].fn(argc - 1, argv + 1);
            }
        fprintf(stderr, "trustcloud%s%s: unknown command '%s'\n", *group ? " " : "", group,
                argv[1]);
    }
    FILE *out = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
                    ? stdout
                    : stderr;
    fprintf(out, "usage: trustcloud%s%s COMMAND ...\n\ncommands:\n", *group ? " " : "", group);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "  %-10s %s\n", table[i].name, table[i].help);
    fprintf(out, "\nexit codes: 0 valid, 1 evidence rejected, 2 usage or I/O error\n");
    return out == stdout ? TC_EXIT_OK : TC_EXIT_USAGE;
}

int cli_report_failure(const struct tc_reason *why, int json)
{
    int usage = why->code == TC_ERR_IO || why->code == TC_ERR_INVALID_ARG;
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "valid", json_false());
        json_object_set_new(j, "error", tc_reason_to_json(why));
        char *s = json_dumps(j, JSON_INDENT(2));
        if (s)
            puts(s);
        free(s);
        json_decref(j);
    } else {
        fputs("REJECTED: ", stderr);
        tc_reason_print(stderr, why);
    }
    return usage ? TC_EXIT_USAGE : TC_EXIT_REJECTED;
}

int main(int argc, char **argv)
{
    /* tpm2-tss logs every unmarshalling or TCTI hiccup to stderr; trustcloud reports failures
     * itself (with the original TSS2_RC), so keep the library quiet unless asked. */
    setenv("TSS2_LOG", getenv("TC_LOG_LEVEL") && !strcmp(getenv("TC_LOG_LEVEL"), "debug")
                           ? "all+warning"
                           : "all+none",
           0);
    return cli_dispatch("", groups, sizeof(groups) / sizeof(groups[0]), argc, argv);
}
