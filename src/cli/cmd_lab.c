/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud lab: make a software TPM carry a real node's evidence (tests and demos only).
 *   lab boot --tcti T --eventlog FILE           replay a captured UEFI log into the PCRs
 *   lab ima-start --tcti T --log FILE           new IMA list with boot_aggregate, extended
 *   lab measure --tcti T --log FILE --path P (--content STR | --file F)
 *   lab guest-boot --tcti T [--eventlog FILE] --dir VMDIR     a simulated guest on a vTPM
 *   lab guest-measure --tcti T --dir VMDIR PATH [CONTENT]     one more guest measurement
 *   lab guest-quote --socket SOCK ...    a real guest's quote over its channel (cmd_lab_guest.c)
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/lab.h"

static int lab_boot(int argc, char **argv);
static int lab_ima_start(int argc, char **argv);
static int lab_measure(int argc, char **argv);
static int lab_guest_boot(int argc, char **argv);
static int lab_guest_measure(int argc, char **argv);

static const struct cli_cmd lab_cmds[] = {
    {"boot", lab_boot,
     "[--tcti T] --eventlog FILE  extend a captured UEFI event log into the PCRs"},
    {"ima-start", lab_ima_start,
     "[--tcti T] --log FILE [--alg sha256]  start an IMA list (boot_aggregate) and extend it"},
    {"measure", lab_measure,
     "[--tcti T] --log FILE --path PATH (--content STR | --file F) [--alg sha256]  measure a "
     "file as IMA does: append to the list, extend PCR 10"},
    {"guest-boot", lab_guest_boot,
     "[--tcti T] [--eventlog FILE] --dir VMDIR  boot a simulated guest on its vTPM: replay the "
     "UEFI log (copied to VMDIR/guest_eventlog), start VMDIR/guest_ima with boot_aggregate"},
    {"guest-measure", lab_guest_measure,
     "[--tcti T] --dir VMDIR PATH [CONTENT]  one more guest measurement (content defaults to "
     "\"contents of PATH\"), appended to VMDIR/guest_ima and extended into the vTPM's PCR 10"},
    {"guest-quote", lab_guest_quote_main,
     "--socket SOCK [--socket ...] [--nonce HEX] [--pcrs SEL] [--eventlog] [--rounds N] "
     "[--timeout-ms MS] [--out DIR]  quote a real guest over its guest channel (trustcloud-guest "
     "on a virtio-serial port) and appraise the answer; one JSON line per round"},
};

struct lab_args {
    const char *tcti, *eventlog, *log, *path, *content, *file, *alg, *dir;
    int npos; /* positional arguments, at argv[first_pos] */
    char **pos;
};

/* max_pos: how many positional arguments the command takes. */
static int parse(int argc, char **argv, const struct cli_cmd *cmd, int max_pos, struct lab_args *a)
{
    static const struct option opts[] = {
        {"tcti", required_argument, NULL, 't'},    {"eventlog", required_argument, NULL, 'e'},
        {"log", required_argument, NULL, 'l'},     {"path", required_argument, NULL, 'p'},
        {"content", required_argument, NULL, 'c'}, {"file", required_argument, NULL, 'f'},
        {"alg", required_argument, NULL, 'a'},     {"dir", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    memset(a, 0, sizeof(*a));
    a->tcti = getenv("TC_TCTI");
    int c;
    while ((c = getopt_long(argc, argv, "t:e:l:p:c:f:a:d:h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            a->tcti = optarg;
            break;
        case 'e':
            a->eventlog = optarg;
            break;
        case 'l':
            a->log = optarg;
            break;
        case 'p':
            a->path = optarg;
            break;
        case 'c':
            a->content = optarg;
            break;
        case 'f':
            a->file = optarg;
            break;
        case 'a':
            a->alg = optarg;
            break;
        case 'd':
            a->dir = optarg;
            break;
        case 'h':
            printf("usage: trustcloud lab %s %s\n", cmd->name, cmd->help);
            return 1;
        default:
            cli_usage("lab", cmd);
            return -1;
        }
    }
    if (argc - optind > max_pos) {
        cli_usage("lab", cmd);
        return -1;
    }
    a->npos = argc - optind;
    a->pos = argv + optind;
    return 0;
}

static int open_or_fail(const char *tcti, struct tc_tpm **tpm)
{
    int rc = tc_tpm_open(tcti, tpm);
    if (rc)
        fprintf(stderr, "trustcloud lab: cannot open the TPM at '%s': %s\n",
                tcti ? tcti : "(default)", tc_strerror(rc));
    return rc;
}

static int finish(int rc, const struct tc_reason *why)
{
    if (rc == 0)
        return TC_EXIT_OK;
    fprintf(stderr, "trustcloud lab: ");
    tc_reason_print(stderr, why);
    return TC_EXIT_USAGE;
}

static int lab_boot(int argc, char **argv)
{
    struct lab_args a;
    int p = parse(argc, argv, &lab_cmds[0], 0, &a);
    if (p)
        return p > 0 ? TC_EXIT_OK : TC_EXIT_USAGE;
    if (!a.eventlog)
        return cli_usage("lab", &lab_cmds[0]);
    struct tc_reason why;
    tc_reason_clear(&why);
    struct tc_evlog *log = NULL;
    struct tc_tpm *tpm = NULL;
    size_t n = 0;
    int rc = tc_evlog_parse_file(a.eventlog, &log, &why);
    if (rc == 0 && (rc = open_or_fail(a.tcti, &tpm)) == 0)
        rc = tc_lab_boot(tpm, log, &n, &why);
    else if (rc)
        tc_reason_print(stderr, &why);
    tc_tpm_close(tpm);
    tc_evlog_free(log);
    if (rc == 0)
        printf("extended %zu events\n", n);
    return finish(rc, &why);
}

static const struct tc_hash_alg *alg_or_default(const char *name)
{
    return tc_hash_by_name(name ? name : "sha256");
}

static int lab_ima_start(int argc, char **argv)
{
    struct lab_args a;
    int p = parse(argc, argv, &lab_cmds[1], 0, &a);
    if (p)
        return p > 0 ? TC_EXIT_OK : TC_EXIT_USAGE;
    const struct tc_hash_alg *alg = alg_or_default(a.alg);
    if (!a.log || !alg)
        return cli_usage("lab", &lab_cmds[1]);
    struct tc_reason why;
    tc_reason_clear(&why);
    struct tc_tpm *tpm = NULL;
    int rc = open_or_fail(a.tcti, &tpm);
    if (rc == 0)
        rc = tc_lab_ima_start(tpm, a.log, alg, &why);
    tc_tpm_close(tpm);
    return finish(rc, &why);
}

static int lab_measure(int argc, char **argv)
{
    struct lab_args a;
    int p = parse(argc, argv, &lab_cmds[2], 0, &a);
    if (p)
        return p > 0 ? TC_EXIT_OK : TC_EXIT_USAGE;
    const struct tc_hash_alg *alg = alg_or_default(a.alg);
    if (!a.log || !a.path || !alg || (!a.content == !a.file))
        return cli_usage("lab", &lab_cmds[2]);
    struct tc_reason why;
    tc_reason_clear(&why);
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = 0;
    if (a.file && (rc = tc_file_read(a.file, 256u << 20, &data, &len)) != 0) {
        fprintf(stderr, "trustcloud lab: cannot read %s\n", a.file);
        return TC_EXIT_USAGE;
    }
    struct tc_tpm *tpm = NULL;
    if ((rc = open_or_fail(a.tcti, &tpm)) == 0)
        rc = tc_lab_ima_measure(tpm, a.log, a.path, a.file ? data : (const uint8_t *)a.content,
                                a.file ? len : strlen(a.content), alg, &why);
    tc_tpm_close(tpm);
    free(data);
    return finish(rc, &why);
}

static int lab_guest_boot(int argc, char **argv)
{
    struct lab_args a;
    int p = parse(argc, argv, &lab_cmds[3], 0, &a);
    if (p)
        return p > 0 ? TC_EXIT_OK : TC_EXIT_USAGE;
    if (!a.dir)
        return cli_usage("lab", &lab_cmds[3]);
    struct tc_reason why;
    tc_reason_clear(&why);
    struct tc_evlog *log = NULL;
    struct tc_tpm *tpm = NULL;
    uint8_t *raw = NULL;
    size_t raw_len = 0, n = 0;
    int rc = 0;
    if (a.eventlog) {
        if ((rc = tc_file_read(a.eventlog, TC_EVLOG_MAX_SIZE, &raw, &raw_len)) != 0) {
            fprintf(stderr, "trustcloud lab: cannot read %s: %s\n", a.eventlog, tc_strerror(rc));
            return TC_EXIT_USAGE;
        }
        if ((rc = tc_evlog_parse(raw, raw_len, &log, &why)) != 0)
            goto out;
    }
    if ((rc = open_or_fail(a.tcti, &tpm)) == 0)
        rc = tc_lab_guest_boot(tpm, a.dir, log, raw, raw_len, &n, &why);
out:
    tc_tpm_close(tpm);
    tc_evlog_free(log);
    free(raw);
    if (rc == 0 && a.eventlog)
        printf("extended %zu events\n", n);
    return finish(rc, &why);
}

static int lab_guest_measure(int argc, char **argv)
{
    struct lab_args a;
    int p = parse(argc, argv, &lab_cmds[4], 2, &a);
    if (p)
        return p > 0 ? TC_EXIT_OK : TC_EXIT_USAGE;
    if (!a.dir || a.npos < 1 || a.pos[0][0] == 0)
        return cli_usage("lab", &lab_cmds[4]);
    const char *path = a.pos[0];
    /* The lab's workload convention (tests/lib/lab.sh): a file's content names the file. */
    const char *given = a.npos == 2 ? a.pos[1] : NULL;
    size_t cap = given ? strlen(given) + 1 : strlen(path) + sizeof("contents of ");
    char *content = malloc(cap);
    if (content != NULL)
        snprintf(content, cap, "%s%s", given ? "" : "contents of ", given ? given : path);
    if (content == NULL) {
        fprintf(stderr, "trustcloud lab: out of memory\n");
        return TC_EXIT_USAGE;
    }
    struct tc_reason why;
    tc_reason_clear(&why);
    struct tc_tpm *tpm = NULL;
    int rc = open_or_fail(a.tcti, &tpm);
    if (rc == 0)
        rc =
            tc_lab_guest_measure(tpm, a.dir, path, (const uint8_t *)content, strlen(content), &why);
    tc_tpm_close(tpm);
    free(content);
    return finish(rc, &why);
}

int cmd_lab(int argc, char **argv)
{
    return cli_dispatch("lab", lab_cmds, sizeof(lab_cmds) / sizeof(lab_cmds[0]), argc, argv);
}
