/* SPDX-License-Identifier: Apache-2.0 */
/* trustcloud ima replay|show: Linux IMA measurement lists. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trustcloud/error.h"
#include "trustcloud/ima.h"

struct ima_args {
    int json;
    enum tc_ima_format format;
    const struct tc_hash_alg *banks[TC_MAX_BANKS];
    size_t nbanks;
    const struct tc_hash_alg *template_alg;
    unsigned flags;
    const char *file;
};

static const struct option ima_opts[] = {
    {"json", no_argument, NULL, 'j'},
    {"bank", required_argument, NULL, 'b'},
    {"format", required_argument, NULL, 'f'},
    {"template-hash-alg", required_argument, NULL, 't'},
    {"sha1-padded", no_argument, NULL, 'p'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* 0 on success, -1 when help was printed, else an exit code. */
static int parse_args(const struct cli_cmd *cmd, int argc, char **argv, struct ima_args *a)
{
    int c;
    memset(a, 0, sizeof(*a));
    while ((c = getopt_long(argc, argv, "jb:f:t:ph", ima_opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            a->json = 1;
            break;
        case 'b': {
            const struct tc_hash_alg *alg = tc_hash_by_name(optarg);
            if (alg == NULL || a->nbanks == TC_MAX_BANKS) {
                fprintf(stderr, "trustcloud ima: unknown or too many banks: %s\n", optarg);
                return TC_EXIT_USAGE;
            }
            for (size_t i = 0; i < a->nbanks; i++)
                if (a->banks[i] == alg)
                    alg = NULL;
            if (alg)
                a->banks[a->nbanks++] = alg;
            break;
        }
        case 'f':
            if (strcmp(optarg, "ascii") == 0)
                a->format = TC_IMA_FMT_ASCII;
            else if (strcmp(optarg, "binary") == 0)
                a->format = TC_IMA_FMT_BINARY;
            else if (strcmp(optarg, "auto") != 0)
                return cli_usage("ima", cmd);
            break;
        case 't':
            if ((a->template_alg = tc_hash_by_name(optarg)) == NULL)
                return cli_usage("ima", cmd);
            break;
        case 'p':
            a->flags |= TC_IMA_REPLAY_SHA1_PADDED;
            break;
        case 'h':
            printf("usage: trustcloud ima %s %s\n\n"
                   "  --json                   machine-readable output\n"
                   "  --bank ALG               replay this bank (repeatable; default sha1, "
                   "sha256)\n"
                   "  --format ascii|binary    list format (default: detected)\n"
                   "  --template-hash-alg ALG  template hash algorithm of the list\n"
                   "  --sha1-padded            old kernels: extend the SHA-1 template hash, "
                   "zero-padded, into every bank\n",
                   cmd->name, cmd->help);
            return -1;
        default:
            return cli_usage("ima", cmd);
        }
    }
    if (optind != argc - 1)
        return cli_usage("ima", cmd);
    a->file = argv[optind];
    return 0;
}

static int load(const struct ima_args *a, struct tc_ima_log **log, struct tc_reason *why)
{
    struct tc_ima_parse_opts o = {.format = a->format, .template_hash_alg = a->template_alg};
    return tc_ima_log_parse_file(a->file, &o, log, why);
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2));
    if (s)
        puts(s);
    free(s);
}

static const struct cli_cmd ima_cmds[3];

static int ima_replay(int argc, char **argv)
{
    struct ima_args a;
    struct tc_reason why;
    struct tc_ima_log *log = NULL;
    struct tc_ima_replay_state st;
    int rc = parse_args(&ima_cmds[0], argc, argv, &a);
    if (rc)
        return rc < 0 ? TC_EXIT_OK : rc;
    tc_reason_clear(&why);
    if ((rc = load(&a, &log, &why)) == 0 &&
        (rc = tc_ima_replay_init(&st, a.banks, a.nbanks, a.flags)) != 0)
        tc_fail(&why, rc, "ima.replay", -1, "bad bank selection");
    if (rc == 0)
        rc = tc_ima_replay_advance(&st, log, &why);
    if (rc) {
        tc_ima_log_free(log);
        return cli_report_failure(&why, a.json);
    }
    if (a.json) {
        json_t *j = tc_pcrs_to_json(&st.pcrs);
        print_json(j);
        json_decref(j);
    } else {
        printf("entries: %llu (template hash %s)\n", (unsigned long long)st.count,
               log->template_hash_alg->name);
        for (size_t b = 0; b < st.pcrs.nbanks; b++) {
            const struct tc_pcr_bank *bank = &st.pcrs.bank[b];
            printf("%s:\n", bank->alg->name);
            for (unsigned p = 0; p < TC_PCR_COUNT; p++) {
                char hex[2 * TC_MAX_DIGEST + 1];
                if (!(bank->mask & (1u << p)))
                    continue;
                tc_hex_encode(bank->value[p], bank->alg->size, hex);
                printf("  %2u : 0x%s\n", p, hex);
            }
        }
    }
    tc_ima_log_free(log);
    return TC_EXIT_OK;
}

static int ima_show(int argc, char **argv)
{
    struct ima_args a;
    struct tc_reason why;
    struct tc_ima_log *log = NULL;
    int rc = parse_args(&ima_cmds[1], argc, argv, &a);
    if (rc)
        return rc < 0 ? TC_EXIT_OK : rc;
    tc_reason_clear(&why);
    if ((rc = load(&a, &log, &why)) != 0)
        return cli_report_failure(&why, a.json);
    if (a.json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < log->count; i++)
            json_array_append_new(arr, tc_ima_entry_to_json(log, i));
        json_t *j = json_pack("{s:s, s:o}", "template_hash_alg", log->template_hash_alg->name,
                              "entries", arr);
        print_json(j);
        json_decref(j);
    } else {
        for (size_t i = 0; i < log->count; i++) {
            const struct tc_ima_entry *e = &log->entries[i];
            char hex[2 * TC_MAX_DIGEST + 1] = "-";
            if (e->digest)
                tc_hex_encode(e->digest, e->digest_len, hex);
            printf("%zu pcr=%u %s%s %s:%s %s\n", log->first_index + i, e->pcr, e->template_name,
                   e->violation ? " VIOLATION" : "", e->digest_alg ? e->digest_alg->name : "?", hex,
                   e->path ? e->path : "-");
        }
    }
    tc_ima_log_free(log);
    return TC_EXIT_OK;
}

/* Rewrites a list in the other format (what an agent sends, test data). */
static int ima_convert(int argc, char **argv)
{
    struct ima_args a;
    struct tc_reason why;
    struct tc_ima_log *log = NULL;
    struct tc_buf out;
    const char *to = NULL, *outfile = NULL;
    int rc, ret = TC_EXIT_OK;
    /* --to and -o are taken out before the shared option parser sees the rest. */
    char *rest[64];
    int n = 0;
    for (int i = 0; i < argc && n < 63; i++) {
        if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
            to = argv[++i];
        else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            outfile = argv[++i];
        else
            rest[n++] = argv[i];
    }
    rest[n] = NULL;
    if ((rc = parse_args(&ima_cmds[2], n, rest, &a)) != 0)
        return rc < 0 ? TC_EXIT_OK : rc;
    if (to == NULL || outfile == NULL || (strcmp(to, "ascii") != 0 && strcmp(to, "binary") != 0))
        return cli_usage("ima", &ima_cmds[2]);
    tc_reason_clear(&why);
    tc_buf_init(&out, TC_IMA_MAX_FILE);
    if ((rc = load(&a, &log, &why)) != 0)
        return cli_report_failure(&why, 0);
    rc = strcmp(to, "ascii") == 0 ? tc_ima_log_to_ascii(log, 0, log->count, &out)
                                  : tc_ima_log_to_binary(log, 0, log->count, &out);
    if (rc == 0)
        rc = tc_file_write(outfile, out.data ? out.data : (const uint8_t *)"", out.len, 0644);
    if (rc) {
        fprintf(stderr, "trustcloud ima convert: %s\n", tc_strerror(rc));
        ret = TC_EXIT_USAGE;
    }
    tc_buf_release(&out);
    tc_ima_log_free(log);
    return ret;
}

static const struct cli_cmd ima_cmds[3] = {
    {"replay", ima_replay,
     "[--json] [--bank ALG]... [--format ascii|binary] [--template-hash-alg ALG] "
     "[--sha1-padded] FILE  check template hashes and print the PCRs the list replays to"},
    {"show", ima_show,
     "[--json] [--format ascii|binary] [--template-hash-alg ALG] FILE  "
     "print the entries"},
    {"convert", ima_convert,
     "--to ascii|binary -o OUT [--format ascii|binary] [--template-hash-alg ALG] FILE  rewrite "
     "a list in the other format (binary: canonical little-endian)"},
};

int cmd_ima(int argc, char **argv)
{
    return cli_dispatch("ima", ima_cmds, sizeof(ima_cmds) / sizeof(ima_cmds[0]), argc, argv);
}
