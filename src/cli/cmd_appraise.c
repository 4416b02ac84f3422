/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud appraise: the whole verdict on one node's evidence — quote, UEFI event log
 * against the quoted PCRs and a measured-boot policy, expected PCR values, IMA list against
 * the quoted PCR 10 and a runtime policy — with one property per check.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trustcloud/appraisal.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"

#define APPRAISE_HELP                                                                              \
    "--ak AK --message MSG --signature SIG --pcrs PCRS --nonce HEX [--pcr-list SEL]\n"             \
    "       [--eventlog FILE [--mb-policy FILE]] [--pcr-policy JSON]\n"                            \
    "       [--ima-log FILE [--runtime-policy FILE]] [--json]\n"                                   \
    "  exit 0: every supplied piece of evidence verified and complies; 1: rejected (the\n"         \
    "  failing check and entry are printed); 2: usage or I/O error"

struct appraise_files {
    const char *ak, *msg, *sig, *pcrs, *nonce, *sel, *eventlog, *mb, *pcrpol, *ima, *rt;
};

static int load_all(const struct appraise_files *f, struct tc_appraisal_input *in,
                    struct tc_ak **ak, uint8_t **msg, uint8_t **sig, struct tc_pcr_set *pcrs,
                    uint8_t *nonce, struct tc_pcr_selection *sel, struct tc_evlog **evlog,
                    struct tc_mb_policy **mb, struct tc_pcr_set *pcrpol, struct tc_ima_log **ima,
                    struct tc_runtime_policy **rt, struct tc_reason *why)
{
    int rc;
    uint8_t *text = NULL;
    size_t len;
    if ((rc = tc_ak_load_file(f->ak, ak, why)) != 0)
        return rc;
    in->ak = *ak;
    if ((rc = tc_file_read(f->msg, TC_QUOTE_MAX_ATTEST, msg, &in->attest_len)) != 0)
        return tc_fail(why, TC_ERR_IO, "appraise.input", -1, "cannot read %s", f->msg);
    in->attest = *msg;
    if ((rc = tc_file_read(f->sig, TC_QUOTE_MAX_SIG, sig, &in->sig_len)) != 0)
        return tc_fail(why, TC_ERR_IO, "appraise.input", -1, "cannot read %s", f->sig);
    in->sig = *sig;
    if ((rc = tc_pcrfile_load(f->pcrs, pcrs)) != 0)
        return tc_fail(why, rc == TC_ERR_IO ? TC_ERR_IO : rc, "appraise.input", -1,
                       "cannot load PCR values from %s (%s)", f->pcrs, tc_strerror(rc));
    in->pcrs = pcrs;
    if (tc_hex_decode(f->nonce, strlen(f->nonce), nonce, TC_QUOTE_MAX_NONCE,
                      &in->expect.nonce_len) != 0)
        return tc_fail(why, TC_ERR_INVALID_ARG, "appraise.input", -1, "--nonce must be hex");
    in->expect.nonce = nonce;
    if (f->sel) {
        struct tc_pcr_set s;
        if (tc_pcrs_parse_selection(f->sel, &s) != 0)
            return tc_fail(why, TC_ERR_INVALID_ARG, "appraise.input", -1, "bad --pcr-list");
        tc_pcr_selection_from_set(&s, sel);
        in->expect.selection = sel;
    }
    if (f->eventlog) {
        if ((rc = tc_evlog_parse_file(f->eventlog, evlog, why)) != 0)
            return rc;
        in->eventlog = *evlog;
    }
    if (f->mb) {
        if ((rc = tc_file_read(f->mb, TC_MB_POLICY_MAX_SIZE, &text, &len)) != 0)
            return tc_fail(why, TC_ERR_IO, "appraise.input", -1, "cannot read %s", f->mb);
        rc = tc_mb_policy_from_json((const char *)text, len, mb, why);
        free(text);
        if (rc)
            return rc;
        in->mb_policy = *mb;
    }
    if (f->pcrpol) {
        if ((rc = tc_pcrfile_load(f->pcrpol, pcrpol)) != 0)
            return tc_fail(why, rc, "appraise.input", -1, "cannot load PCR policy %s", f->pcrpol);
        in->pcr_policy = pcrpol;
    }
    if (f->ima) {
        if ((rc = tc_ima_log_parse_file(f->ima, NULL, ima, why)) != 0)
            return rc;
        in->ima = *ima;
    }
    if (f->rt) {
        if ((rc = tc_runtime_policy_load_file(f->rt, rt, why)) != 0)
            return rc;
        in->runtime_policy = *rt;
    }
    return 0;
}

int cmd_appraise(int argc, char **argv)
{
    static const struct option opts[] = {{"ak", required_argument, NULL, 'a'},
                                         {"message", required_argument, NULL, 'm'},
                                         {"signature", required_argument, NULL, 's'},
                                         {"pcrs", required_argument, NULL, 'f'},
                                         {"nonce", required_argument, NULL, 'q'},
                                         {"pcr-list", required_argument, NULL, 'l'},
                                         {"eventlog", required_argument, NULL, 'e'},
                                         {"mb-policy", required_argument, NULL, 'b'},
                                         {"pcr-policy", required_argument, NULL, 'p'},
                                         {"ima-log", required_argument, NULL, 'i'},
                                         {"runtime-policy", required_argument, NULL, 'r'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct appraise_files f = {0};
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "a:m:s:f:q:l:e:b:p:i:r:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            f.ak = optarg;
            break;
        case 'm':
            f.msg = optarg;
            break;
        case 's':
            f.sig = optarg;
            break;
        case 'f':
            f.pcrs = optarg;
            break;
        case 'q':
            f.nonce = optarg;
            break;
        case 'l':
            f.sel = optarg;
            break;
        case 'e':
            f.eventlog = optarg;
            break;
        case 'b':
            f.mb = optarg;
            break;
        case 'p':
            f.pcrpol = optarg;
            break;
        case 'i':
            f.ima = optarg;
            break;
        case 'r':
            f.rt = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            printf("usage: trustcloud appraise " APPRAISE_HELP "\n");
            return TC_EXIT_OK;
        default:
            fprintf(stderr, "usage: trustcloud appraise " APPRAISE_HELP "\n");
            return TC_EXIT_USAGE;
        }
    }
    if (optind != argc || !f.ak || !f.msg || !f.sig || !f.pcrs || !f.nonce ||
        (f.mb && !f.eventlog) || (f.rt && !f.ima)) {
        fprintf(stderr, "usage: trustcloud appraise " APPRAISE_HELP "\n");
        return TC_EXIT_USAGE;
    }

    struct tc_appraisal_input in = {0};
    struct tc_appraisal out;
    struct tc_reason why;
    tc_reason_clear(&why);
    struct tc_ak *ak = NULL;
    uint8_t *msg = NULL, *sig = NULL, nonce[TC_QUOTE_MAX_NONCE];
    struct tc_pcr_set pcrs, pcrpol;
    struct tc_pcr_selection sel;
    struct tc_evlog *evlog = NULL;
    struct tc_mb_policy *mb = NULL;
    struct tc_ima_log *ima = NULL;
    struct tc_runtime_policy *rt = NULL;
    struct tc_ima_replay_state st;
    int ret;

    int rc = load_all(&f, &in, &ak, &msg, &sig, &pcrs, nonce, &sel, &evlog, &mb, &pcrpol, &ima, &rt,
                      &why);
    if (rc) {
        ret = cli_report_failure(&why, json);
        goto out;
    }
    if (ima && (rc = tc_ima_replay_init(&st, NULL, 0, 0)) == 0)
        in.ima_state = &st;
    rc = tc_appraise(&in, &out);
    if (json) {
        json_t *j = tc_appraisal_to_json(&out);
        char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        if (s)
            puts(s);
        free(s);
        json_decref(j);
    } else if (rc == 0) {
        printf("VALID: quote pass, boot %s, pcrs %s, runtime %s",
               out.boot_checked ? "pass" : "not checked", out.pcrs_checked ? "pass" : "not checked",
               out.runtime_checked ? "pass" : "not checked");
        if (out.runtime_checked)
            printf(" (%llu IMA entries)", (unsigned long long)out.ima_entries);
        printf("\n");
    } else {
        fputs("REJECTED: ", stderr);
        tc_reason_print(stderr, &out.why);
    }
    ret = rc == 0
              ? TC_EXIT_OK
              : (rc == TC_ERR_IO || rc == TC_ERR_INVALID_ARG ? TC_EXIT_USAGE : TC_EXIT_REJECTED);
out:
    tc_ak_free(ak);
    free(msg);
    free(sig);
    tc_evlog_free(evlog);
    tc_mb_policy_free(mb);
    tc_ima_log_free(ima);
    tc_runtime_policy_free(rt);
    return ret;
}
