/* SPDX-License-Identifier: Apache-2.0 */
/* trustcloud quote verify: checks a TPM quote in tpm2-tools or trustcloud formats. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/quote.h"

#define VERIFY_HELP                                                                                \
    "--ak AK --message MSG --signature SIG --pcrs PCRS --nonce HEX [--pcr-list SEL]\n"             \
    "       [--previous PREV_MSG] [--ek EK_PUB | --ak-qualified-name FILE]\n"                      \
    "       [--counters-obfuscated] [--signature-format tss|plain\n"                               \
    "       [--hash-algorithm ALG] [--scheme ecdsa|rsassa|rsapss|sm2]]\n"                          \
    "       [--json]\n"                                                                            \
    "  AK: PEM/DER public key or TPM2B_PUBLIC; MSG/SIG: tpm2_quote -m/-s (tss format);\n"          \
    "  PCRS: tpm2_quote -o file or JSON {\"sha256\":{\"0\":\"hex\"}}; --ek: the EK's\n"            \
    "  TPM2B_PUBLIC, to check the quote's signer is this AK under this EK"

static int read_input(const char *path, size_t max, uint8_t **data, size_t *len,
                      struct tc_reason *why)
{
    int rc = tc_file_read(path, max, data, len);
    if (rc)
        return tc_fail(why, rc == TC_ERR_TOO_LARGE ? TC_ERR_TOO_LARGE : TC_ERR_IO, "quote.input",
                       -1, "cannot read %s (%s)", path, tc_strerror(rc));
    return 0;
}

/* The selected PCRs of pcrs only, for the report. */
static json_t *selected_pcrs_json(const struct tc_pcr_set *pcrs, const struct tc_pcr_selection *sel)
{
    struct tc_pcr_set out;
    tc_pcrs_init(&out);
    for (size_t i = 0; i < sel->nbanks; i++) {
        const struct tc_pcr_bank *b = tc_pcrs_bank_const(pcrs, sel->bank[i].alg);
        for (unsigned p = 0; b && p < TC_PCR_COUNT; p++)
            if (sel->bank[i].mask & b->mask & (1u << p))
                tc_pcrs_set(&out, b->alg, p, b->value[p]);
    }
    return tc_pcrs_to_json(&out);
}

static int quote_verify_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ak", required_argument, NULL, 'a'},
        {"message", required_argument, NULL, 'm'},
        {"signature", required_argument, NULL, 's'},
        {"pcrs", required_argument, NULL, 'f'},
        {"nonce", required_argument, NULL, 'q'},
        {"pcr-list", required_argument, NULL, 'l'},
        {"previous", required_argument, NULL, 'p'},
        {"ek", required_argument, NULL, 'e'},
        {"ak-qualified-name", required_argument, NULL, 'n'},
        {"counters-obfuscated", no_argument, NULL, 'o'},
        {"signature-format", required_argument, NULL, 'F'},
        {"hash-algorithm", required_argument, NULL, 'g'},
        {"scheme", required_argument, NULL, 'S'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const struct cli_cmd self = {"verify", NULL, VERIFY_HELP};
    const char *ak_path = NULL, *msg_path = NULL, *sig_path = NULL, *pcrs_path = NULL;
    const char *nonce_hex = NULL, *sel_spec = NULL, *prev_path = NULL, *ek_path = NULL;
    const char *qn_path = NULL, *sig_format = "tss", *hash_name = "sha256";
    int json = 0, obfuscated = 0, c;
    uint16_t scheme = 0; /* TPM2_ALG_* of a plain signature; 0: the AK's */

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            ak_path = optarg;
            break;
        case 'm':
            msg_path = optarg;
            break;
        case 's':
            sig_path = optarg;
            break;
        case 'f':
            pcrs_path = optarg;
            break;
        case 'q':
            nonce_hex = optarg;
            break;
        case 'l':
            sel_spec = optarg;
            break;
        case 'p':
            prev_path = optarg;
            break;
        case 'e':
            ek_path = optarg;
            break;
        case 'n':
            qn_path = optarg;
            break;
        case 'o':
            obfuscated = 1;
            break;
        case 'F':
            sig_format = optarg;
            break;
        case 'g':
            hash_name = optarg;
            break;
        case 'S':
            scheme = strcmp(optarg, "ecdsa") == 0    ? 0x0018
                     : strcmp(optarg, "rsassa") == 0 ? 0x0014
                     : strcmp(optarg, "rsapss") == 0 ? 0x0016
                     : strcmp(optarg, "sm2") == 0    ? 0x001B
                                                     : 0xFFFF;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            printf("usage: trustcloud quote verify %s\n", VERIFY_HELP);
            return TC_EXIT_OK;
        default:
            return cli_usage("quote", &self);
        }
    }
    if (optind != argc || !ak_path || !msg_path || !sig_path || !pcrs_path || !nonce_hex ||
        (ek_path && qn_path) ||
        (strcmp(sig_format, "tss") != 0 && strcmp(sig_format, "plain") != 0) ||
        tc_hash_by_name(hash_name) == NULL || scheme == 0xFFFF)
        return cli_usage("quote", &self);

    struct tc_reason why;
    tc_reason_clear(&why);
    struct tc_ak *ak = NULL;
    uint8_t *msg = NULL, *sig = NULL, *prev = NULL, *ek = NULL, *qn = NULL;
    size_t msg_len = 0, sig_len = 0, prev_len = 0, ek_len = 0, qn_len = 0;
    struct tc_pcr_set pcrs, sel_set;
    struct tc_pcr_selection sel;
    struct tc_quote_info prev_info, info;
    struct tc_quote_expect ex;
    uint8_t nonce[TC_QUOTE_MAX_NONCE], signer_qn[TC_QUOTE_MAX_NAME], sig_tss[TC_QUOTE_MAX_SIG];
    const uint8_t *sig_use = NULL;
    size_t sig_use_len = 0;
    size_t signer_qn_len = 0;
    int rc, ret = TC_EXIT_USAGE;

    memset(&ex, 0, sizeof(ex));
    if (tc_hex_decode(nonce_hex, strlen(nonce_hex), nonce, sizeof(nonce), &ex.nonce_len) != 0) {
        rc = tc_fail(&why, TC_ERR_INVALID_ARG, "quote.args", -1,
                     "--nonce must be hex of at most %d bytes", TC_QUOTE_MAX_NONCE);
        goto out;
    }
    ex.nonce = nonce;
    if (sel_spec) {
        if (tc_pcrs_parse_selection(sel_spec, &sel_set) != 0) {
            rc = tc_fail(&why, TC_ERR_INVALID_ARG, "quote.args", -1, "bad --pcr-list '%s'",
                         sel_spec);
            goto out;
        }
        tc_pcr_selection_from_set(&sel_set, &sel);
        ex.selection = &sel;
    }
    if ((rc = tc_ak_load_file(ak_path, &ak, &why)) != 0)
        goto out;
    if ((rc = read_input(msg_path, TC_QUOTE_MAX_ATTEST, &msg, &msg_len, &why)) != 0 ||
        (rc = read_input(sig_path, TC_QUOTE_MAX_SIG, &sig, &sig_len, &why)) != 0)
        goto out;
    if (strcmp(sig_format, "plain") == 0) {
        /* tpm2_quote -f plain: DER ECDSA or raw RSA, scheme from the AK, hash from -g. */
        if ((rc = tc_sig_from_plain(ak, scheme, tc_hash_by_name(hash_name), sig, sig_len, sig_tss,
                                    &sig_use_len)) != 0) {
            rc = tc_fail(&why, rc, "quote.signature", -1, "not a plain signature for this AK");
            goto out;
        }
        sig_use = sig_tss;
    } else {
        sig_use = sig;
        sig_use_len = sig_len;
    }
    if ((rc = tc_pcrfile_load(pcrs_path, &pcrs)) != 0) {
        rc = tc_fail(&why, rc == TC_ERR_IO ? TC_ERR_IO : rc, "quote.pcr_values", -1,
                     "cannot use PCR file %s (%s)", pcrs_path, tc_strerror(rc));
        goto out;
    }
    if (prev_path) {
        if ((rc = read_input(prev_path, TC_QUOTE_MAX_ATTEST, &prev, &prev_len, &why)) != 0)
            goto out;
        if ((rc = tc_quote_parse(prev, prev_len, &prev_info, &why)) != 0) {
            why.code = TC_ERR_INVALID_ARG; /* the caller's stored quote, not the evidence */
            goto out;
        }
        ex.previous = &prev_info;
    }
    if (ek_path) {
        if ((rc = read_input(ek_path, TC_AK_MAX_FILE, &ek, &ek_len, &why)) != 0)
            goto out;
        rc = tc_ak_qualified_name(ak, TC_TPM_RH_ENDORSEMENT, ek, ek_len, signer_qn, &signer_qn_len);
        if (rc) {
            rc =
                tc_fail(&why, TC_ERR_INVALID_ARG, "quote.args", -1,
                        "--ek needs a TPM2B_PUBLIC EK and a TPM2B_PUBLIC AK (%s)", tc_strerror(rc));
            goto out;
        }
        ex.signer_qn = signer_qn;
        ex.signer_qn_len = signer_qn_len;
    } else if (qn_path) {
        if ((rc = read_input(qn_path, TC_QUOTE_MAX_NAME, &qn, &qn_len, &why)) != 0)
            goto out;
        ex.signer_qn = qn;
        ex.signer_qn_len = qn_len;
    }
    ex.counters_obfuscated = obfuscated;

    if ((rc = tc_quote_verify(ak, msg, msg_len, sig_use, sig_use_len, &pcrs, &ex, &info, &why)) !=
        0)
        goto out;

    if (json) {
        json_t *j = tc_quote_info_to_json(&info);
        json_t *jp = selected_pcrs_json(&pcrs, &info.selection);
        if (j == NULL || jp == NULL) {
            json_decref(j);
            json_decref(jp);
            rc = tc_fail(&why, TC_ERR_ALLOC, "quote.output", -1, "out of memory");
            goto out;
        }
        json_object_set_new(j, "pcrs", jp);
        json_t *root = json_object();
        json_object_set_new(root, "valid", json_true());
        json_object_update(root, j);
        json_decref(j);
        char *s = json_dumps(root, JSON_INDENT(2));
        if (s)
            puts(s);
        free(s);
        json_decref(root);
    } else {
        char selbuf[160];
        tc_pcr_selection_format(&info.selection, selbuf, sizeof(selbuf));
        printf("VALID: quote of %s, clock %llu ms, resetCount %u, restartCount %u%s%s\n", selbuf,
               (unsigned long long)info.clock, info.reset_count, info.restart_count,
               info.rebooted ? " (rebooted since the previous quote)" : "",
               info.ak_checked ? "" : " (PEM AK: key attributes and name not checked)");
    }
    ret = TC_EXIT_OK;
out:
    if (rc)
        ret = cli_report_failure(&why, json);
    tc_ak_free(ak);
    free(msg);
    free(sig);
    free(prev);
    free(ek);
    free(qn);
    return ret;
}

static const struct cli_cmd quote_cmds[] = {
    {"verify", quote_verify_main,
     "--ak AK --message MSG --signature SIG --pcrs PCRS --nonce HEX "
     "[--pcr-list SEL] [--previous MSG] [--ek EK] [--json]"},
};

int cmd_quote(int argc, char **argv)
{
    return cli_dispatch("quote", quote_cmds, sizeof(quote_cmds) / sizeof(quote_cmds[0]), argc,
                        argv);
}
