/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The trustcloud CLI: one table of subcommand groups (main.c), each group a
 * table of commands. Exit codes scripts can rely on:
 *   0  valid / success, 1  evidence rejected, 2  usage or I/O error.
 */
#ifndef TC_CLI_H
#define TC_CLI_H

#include <stddef.h>

#include "trustcloud/reason.h"

enum { TC_EXIT_OK = 0, TC_EXIT_REJECTED = 1, TC_EXIT_USAGE = 2 };

struct cli_cmd {
    const char *name;
    int (*fn)(int argc, char **argv); /* argv[0] is the command name */
    const char *help;                 /* one line: "[--json] FILE  what it does" */
};

/* Runs the command named argv[1] from table, or prints the table's help. */
int cli_dispatch(const char *group, const struct cli_cmd *table, size_t n, int argc, char **argv);
/* Prints "usage: trustcloud GROUP NAME HELP" to stderr and returns TC_EXIT_USAGE. */
int cli_usage(const char *group, const struct cli_cmd *cmd);

/* Prints a rejection (text to stderr, or {"valid":false,"error":{...}} to stdout with json) and
 * returns TC_EXIT_REJECTED, or TC_EXIT_USAGE when the code is an I/O or argument error. */
int cli_report_failure(const struct tc_reason *why, int json);

/* Group entry points (one file each: cmd_<group>.c). */
int cmd_tpm(int argc, char **argv);
int cmd_quote(int argc, char **argv);
int cmd_eventlog(int argc, char **argv);
int cmd_ima(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_credential(int argc, char **argv);
int cmd_lab(int argc, char **argv);
int cmd_appraise(int argc, char **argv);
int cmd_ca(int argc, char **argv);
int cmd_node(int argc, char **argv);       /* cmd_node.c: coordinator operator API */
int cmd_vm(int argc, char **argv);         /* cmd_vm.c: VMs (operators and tenants) */
int cmd_events(int argc, char **argv);     /* cmd_events.c */
int cmd_subscriber(int argc, char **argv); /* cmd_subscriber.c */

/* Entries other files provide to the group tables above. */
int policy_mb_create_main(int argc, char **argv); /* cmd_policy_mb.c */
int policy_mb_check_main(int argc, char **argv);  /* cmd_policy_mb.c */
int tpm_quote_main(int argc, char **argv);        /* cmd_tpm_quote.c */
int lab_guest_quote_main(int argc, char **argv);  /* cmd_lab_guest.c */

#endif
