/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud tpm quote: quotes PCRs with an AK kept in a context file and
 * writes the same files tpm2_quote does (-m, -s, -o), so tpm2_checkquote and
 * trustcloud quote verify both accept them.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/quote.h"
#include "trustcloud/tpm.h"

#define TPM_QUOTE_HELP                                                                             \
    "--tcti T --ak-ctx FILE --ek-alg ecc|rsa --nonce HEX --pcr-list SEL --message OUT\n"           \
    "       --signature OUT --pcrs OUT [--pcrs-json OUT] [--create-ak ecc|rsa|rsapss|sm2]\n"       \
    "       [--ak-pub OUT] [--ak-pem OUT] [--ek-pub OUT]\n"                                        \
    "  --create-ak: make the AK (under the EK) when FILE does not exist yet;\n"                    \
    "  --ak-pub/--ak-pem/--ek-pub: write the AK as TPM2B_PUBLIC / PEM and the EK's TPM2B_PUBLIC"

static int parse_ak_kind(const char *s, enum tc_key_alg *alg, enum tc_sig_scheme *scheme)
{
    if (strcmp(s, "ecc") == 0)
        *alg = TC_KEY_ECC_P256, *scheme = TC_SIG_ECDSA;
    else if (strcmp(s, "rsa") == 0)
        *alg = TC_KEY_RSA_2048, *scheme = TC_SIG_RSASSA;
    else if (strcmp(s, "rsapss") == 0)
        *alg = TC_KEY_RSA_2048, *scheme = TC_SIG_RSAPSS;
    else if (strcmp(s, "sm2") == 0)
        *alg = TC_KEY_SM2_P256, *scheme = TC_SIG_SM2;
    else
        return TC_ERR_INVALID_ARG;
    return 0;
}

static int write_out(const char *path, const void *data, size_t len)
{
    int rc = tc_file_write(path, data, len, 0644);
    if (rc)
        fprintf(stderr, "trustcloud tpm quote: cannot write %s: %s\n", path, tc_strerror(rc));
    return rc;
}

int tpm_quote_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"tcti", required_argument, NULL, 't'},
        {"ak-ctx", required_argument, NULL, 'c'},
        {"ek-alg", required_argument, NULL, 'G'},
        {"nonce", required_argument, NULL, 'q'},
        {"pcr-list", required_argument, NULL, 'l'},
        {"message", required_argument, NULL, 'm'},
        {"signature", required_argument, NULL, 's'},
        {"pcrs", required_argument, NULL, 'o'},
        {"pcrs-json", required_argument, NULL, 'J'},
        {"create-ak", required_argument, NULL, 'A'},
        {"ak-pub", required_argument, NULL, 'u'},
        {"ak-pem", required_argument, NULL, 'P'},
        {"ek-pub", required_argument, NULL, 'E'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const struct cli_cmd self = {"quote", NULL, TPM_QUOTE_HELP};
    const char *tcti = NULL, *ctx_path = NULL, *ek_alg_s = "ecc", *nonce_hex = NULL;
    const char *sel_spec = NULL, *msg_path = NULL, *sig_path = NULL, *pcrs_path = NULL;
    const char *json_path = NULL, *create = NULL, *akpub_path = NULL, *akpem_path = NULL;
    const char *ekpub_path = NULL;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            tcti = optarg;
            break;
        case 'c':
            ctx_path = optarg;
            break;
        case 'G':
            ek_alg_s = optarg;
            break;
        case 'q':
            nonce_hex = optarg;
            break;
        case 'l':
            sel_spec = optarg;
            break;
        case 'm':
            msg_path = optarg;
            break;
        case 's':
            sig_path = optarg;
            break;
        case 'o':
            pcrs_path = optarg;
            break;
        case 'J':
            json_path = optarg;
            break;
        case 'A':
            create = optarg;
            break;
        case 'u':
            akpub_path = optarg;
            break;
        case 'P':
            akpem_path = optarg;
            break;
        case 'E':
            ekpub_path = optarg;
            break;
        case 'h':
            printf("usage: trustcloud tpm quote %s\n", TPM_QUOTE_HELP);
            return TC_EXIT_OK;
        default:
            return cli_usage("tpm", &self);
        }
    }
    if (optind != argc || !ctx_path || !nonce_hex || !sel_spec || !msg_path || !sig_path ||
        !pcrs_path)
        return cli_usage("tpm", &self);

    enum tc_key_alg ek_alg, ak_alg = TC_KEY_ECC_P256;
    enum tc_sig_scheme scheme = TC_SIG_DEFAULT;
    uint8_t nonce[64];
    size_t nonce_len;
    struct tc_pcr_set sel;
    if (strcmp(ek_alg_s, "ecc") == 0)
        ek_alg = TC_KEY_ECC_P256;
    else if (strcmp(ek_alg_s, "rsa") == 0)
        ek_alg = TC_KEY_RSA_2048;
    else
        return cli_usage("tpm", &self);
    if ((create && parse_ak_kind(create, &ak_alg, &scheme) != 0) ||
        tc_hex_decode(nonce_hex, strlen(nonce_hex), nonce, sizeof(nonce), &nonce_len) != 0 ||
        tc_pcrs_parse_selection(sel_spec, &sel) != 0) {
        fprintf(stderr, "trustcloud tpm quote: bad --create-ak, --nonce (hex, at most 64 bytes) "
                        "or --pcr-list\n");
        return TC_EXIT_USAGE;
    }

    struct tc_tpm *tpm = NULL;
    struct tc_tpm_key ek, ak;
    struct tc_tpm_quote q;
    struct tc_ak *akpub = NULL;
    struct tc_reason why;
    uint8_t *pcrfile = NULL;
    size_t pcrfile_len = 0;
    char *pem = NULL, *js = NULL;
    size_t pem_len = 0, ek_pub_len = 0;
    uint8_t ek_pub[TC_TPM_MAX_PUBLIC];
    int rc, ret = TC_EXIT_USAGE;
    memset(&ek, 0, sizeof(ek));
    memset(&ak, 0, sizeof(ak));
    memset(&q, 0, sizeof(q));
    tc_reason_clear(&why);

    if ((rc = tc_tpm_open(tcti, &tpm)) != 0) {
        fprintf(stderr, "trustcloud tpm quote: cannot open the TPM: %s\n", tc_strerror(rc));
        goto out;
    }
    if ((rc = tc_tpm_ek_create(tpm, ek_alg, &ek)) != 0) {
        fprintf(stderr, "trustcloud tpm quote: EK: %s\n", tc_strerror(rc));
        goto out;
    }
    if (create && access(ctx_path, F_OK) != 0)
        rc = tc_tpm_ak_create(tpm, &ek, ak_alg, scheme, ctx_path, &ak);
    else
        rc = tc_tpm_ak_load(tpm, &ek, ctx_path, &ak);
    if (rc) {
        fprintf(stderr, "trustcloud tpm quote: AK from %s: %s\n", ctx_path, tc_strerror(rc));
        goto out;
    }
    /* The EK is not needed for quoting: free its slot (no resource manager). */
    memcpy(ek_pub, ek.pub, ek.pub_len);
    ek_pub_len = ek.pub_len;
    tc_tpm_key_release(tpm, &ek);
    if ((rc = tc_tpm_quote(tpm, &ak, &sel, nonce, nonce_len, &q)) != 0) {
        fprintf(stderr, "trustcloud tpm quote: quote failed: %s\n", tc_strerror(rc));
        goto out;
    }
    if ((rc = tc_pcrfile_write_tpm2_tools(&q.pcrs, &pcrfile, &pcrfile_len)) != 0) {
        fprintf(stderr, "trustcloud tpm quote: PCR file: %s\n", tc_strerror(rc));
        goto out;
    }
    if ((rc = write_out(msg_path, q.attest, q.attest_len)) != 0 ||
        (rc = write_out(sig_path, q.sig, q.sig_len)) != 0 ||
        (rc = write_out(pcrs_path, pcrfile, pcrfile_len)) != 0)
        goto out;
    if (json_path) {
        json_t *j = tc_pcrs_to_json(&q.pcrs);
        js = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
        json_decref(j);
        if (js == NULL || (rc = write_out(json_path, js, strlen(js))) != 0)
            goto out;
    }
    if (akpub_path && (rc = write_out(akpub_path, ak.pub, ak.pub_len)) != 0)
        goto out;
    if (akpem_path) {
        if ((rc = tc_ak_from_tpm2b_public(ak.pub, ak.pub_len, &akpub, &why)) != 0 ||
            (rc = tc_ak_to_pem(akpub, &pem, &pem_len)) != 0) {
            fprintf(stderr, "trustcloud tpm quote: AK PEM: %s\n", tc_strerror(rc));
            goto out;
        }
        if ((rc = write_out(akpem_path, pem, pem_len)) != 0)
            goto out;
    }
    if (ekpub_path && (rc = write_out(ekpub_path, ek_pub, ek_pub_len)) != 0)
        goto out;
    ret = TC_EXIT_OK;
out:
    tc_tpm_quote_release(&q);
    tc_tpm_key_release(tpm, &ak);
    tc_tpm_key_release(tpm, &ek);
    tc_tpm_close(tpm);
    tc_ak_free(akpub);
    free(pcrfile);
    free(pem);
    free(js);
    return ret;
}
