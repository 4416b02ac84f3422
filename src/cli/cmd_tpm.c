/* SPDX-License-Identifier: Apache-2.0 */
/* trustcloud tpm info|pcrread|extend|ek|ak|quote: talk to a TPM by TCTI. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/quote.h"
#include "trustcloud/tpm.h"

#define EK_CERT_MAX (16u * 1024)

static int cmd_info(int argc, char **argv);
static int cmd_pcrread(int argc, char **argv);
static int cmd_extend(int argc, char **argv);
static int cmd_ek(int argc, char **argv);
static int cmd_ak(int argc, char **argv);

static const struct cli_cmd commands[] = {
    {"info", cmd_info, "[--tcti T] [--json]  manufacturer, firmware, spec level, active PCR banks"},
    {"pcrread", cmd_pcrread,
     "[--tcti T] [--json] [SELECTION]  read PCRs (e.g. sha256:0,1,2+sha1:all; default: all "
     "active banks)"},
    {"extend", cmd_extend,
     "[--tcti T] --pcr N --bank ALG[,ALG...] (--digest HEX | --data STRING)  extend a PCR"},
    {"ek", cmd_ek,
     "[--tcti T] [--alg ecc|rsa] [--out-pub F] [--out-cert F] [--json]  create the EK (TCG "
     "default template); write its TPM2B_PUBLIC and DER certificate"},
    {"ak", cmd_ak, "create|show ...  attestation keys under the EK"},
    {"quote", tpm_quote_main, "--help  quote PCRs with an AK"},
};

static const char *default_tcti(void)
{
    const char *t = getenv("TC_TCTI");
    if (t == NULL || *t == 0)
        t = getenv("TPM2TOOLS_TCTI");
    return t != NULL && *t != 0 ? t : "device:/dev/tpmrm0";
}

/* Opens the TPM, keeping tpm2-tss's own logging quiet (our errors say what failed) unless the
 * user asked for it with TSS2_LOG. */
static int open_tpm(const char *cmd, const char *tcti, struct tc_tpm **tpm)
{
    setenv("TSS2_LOG", "all+none", 0);
    int rc = tc_tpm_open(tcti, tpm);
    if (rc != 0)
        fprintf(stderr, "trustcloud tpm %s: cannot open the TPM at '%s': %s\n", cmd, tcti,
                tc_strerror(rc));
    return rc;
}

static int fail(const char *cmd, const char *what, int rc)
{
    fprintf(stderr, "trustcloud tpm %s: %s: %s\n", cmd, what, tc_strerror(rc));
    return TC_EXIT_USAGE;
}

static int print_json(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    if (s == NULL) {
        fprintf(stderr, "trustcloud tpm: out of memory\n");
        return TC_EXIT_USAGE;
    }
    puts(s);
    free(s);
    return TC_EXIT_OK;
}

static int help(const char *group, const struct cli_cmd *cmd)
{
    printf("usage: trustcloud %s %s %s\n", group, cmd->name, cmd->help);
    return TC_EXIT_OK;
}

static int parse_key_alg(const char *s, enum tc_key_alg *alg, int allow_sm2)
{
    if (strcmp(s, "ecc") == 0)
        *alg = TC_KEY_ECC_P256;
    else if (strcmp(s, "rsa") == 0)
        *alg = TC_KEY_RSA_2048;
    else if (allow_sm2 && strcmp(s, "sm2") == 0)
        *alg = TC_KEY_SM2_P256;
    else
        return -1;
    return 0;
}

static const char *key_alg_name(enum tc_key_alg a)
{
    return a == TC_KEY_RSA_2048 ? "rsa" : a == TC_KEY_SM2_P256 ? "sm2" : "ecc";
}

static const char *scheme_name(enum tc_sig_scheme s)
{
    static const char *names[] = {"default", "ecdsa", "rsassa", "rsapss", "sm2"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static int parse_scheme(const char *s, enum tc_sig_scheme *scheme)
{
    for (int i = TC_SIG_ECDSA; i <= TC_SIG_SM2; i++)
        if (strcmp(s, scheme_name((enum tc_sig_scheme)i)) == 0) {
            *scheme = (enum tc_sig_scheme)i;
            return 0;
        }
    return -1;
}

static void hex_print(FILE *f, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", b[i]);
}

static json_t *json_hex(const uint8_t *b, size_t n)
{
    char *s = malloc(2 * n + 1);
    if (s == NULL)
        return NULL;
    tc_hex_encode(b, n, s);
    json_t *j = json_string(s);
    free(s);
    return j;
}

/* Options shared by the commands that only need a TPM and --json. */
static int parse_tcti_json(int argc, char **argv, const struct cli_cmd *cmd, const char **tcti,
                           int *json)
{
    static const struct option opts[] = {{"tcti", required_argument, NULL, 'T'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    *tcti = default_tcti();
    *json = 0;
    while ((c = getopt_long(argc, argv, "T:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'T':
            *tcti = optarg;
            break;
        case 'j':
            *json = 1;
            break;
        case 'h':
            help("tpm", cmd);
            return -1;
        default:
            return cli_usage("tpm", cmd);
        }
    }
    return 0;
}

static int cmd_info(int argc, char **argv)
{
    const char *tcti;
    int json, rc, ret = TC_EXIT_USAGE;
    struct tc_tpm *tpm = NULL;
    json_t *j = NULL;

    if ((rc = parse_tcti_json(argc, argv, &commands[0], &tcti, &json)) != 0)
        return rc < 0 ? TC_EXIT_OK : rc;
    if (optind != argc)
        return cli_usage("tpm", &commands[0]);
    if (open_tpm("info", tcti, &tpm) != 0)
        goto out;
    if ((rc = tc_tpm_info(tpm, &j)) != 0) {
        ret = fail("info", "GetCapability", rc);
        goto out;
    }
    if (json) {
        ret = print_json(j);
        goto out;
    }
    printf("manufacturer: %s\nvendor: %s\nfirmware: %s\nspec: %s\nbanks:",
           json_string_value(json_object_get(j, "manufacturer")),
           json_string_value(json_object_get(j, "vendor")),
           json_string_value(json_object_get(j, "firmware")),
           json_string_value(json_object_get(j, "spec")));
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(j, "banks"), i, b) printf(" %s", json_string_value(b));
    printf("\n");
    ret = TC_EXIT_OK;
out:
    json_decref(j);
    tc_tpm_close(tpm);
    return ret;
}

static int cmd_pcrread(int argc, char **argv)
{
    const char *tcti;
    int json, rc, ret = TC_EXIT_USAGE;
    struct tc_tpm *tpm = NULL;
    struct tc_pcr_set sel, out;

    if ((rc = parse_tcti_json(argc, argv, &commands[1], &tcti, &json)) != 0)
        return rc < 0 ? TC_EXIT_OK : rc;
    if (argc - optind > 1)
        return cli_usage("tpm", &commands[1]);
    if (optind < argc && tc_pcrs_parse_selection(argv[optind], &sel) != 0) {
        fprintf(stderr, "trustcloud tpm pcrread: bad selection '%s' (e.g. sha256:0,1,2+sha1:all)\n",
                argv[optind]);
        return TC_EXIT_USAGE;
    }
    if (open_tpm("pcrread", tcti, &tpm) != 0)
        goto out;
    if (optind == argc && (rc = tc_tpm_active_banks(tpm, &sel)) != 0) {
        ret = fail("pcrread", "listing PCR banks", rc);
        goto out;
    }
    if ((rc = tc_tpm_pcr_read(tpm, &sel, &out)) != 0) {
        ret =
            fail("pcrread",
                 rc == TC_ERR_NOT_FOUND ? "the TPM lacks a selected bank or PCR" : "PCR_Read", rc);
        goto out;
    }
    if (json) {
        json_t *j = tc_pcrs_to_json(&out);
        ret = print_json(j);
        json_decref(j);
        goto out;
    }
    /* The layout tpm2_pcrread prints. */
    for (size_t b = 0; b < out.nbanks; b++) {
        printf("  %s:\n", out.bank[b].alg->name);
        for (unsigned p = 0; p < TC_PCR_COUNT; p++) {
            if (!(out.bank[b].mask & (1u << p)))
                continue;
            printf("    %-2u: 0x", p);
            for (size_t k = 0; k < out.bank[b].alg->size; k++)
                printf("%02X", out.bank[b].value[p][k]);
            printf("\n");
        }
    }
    ret = TC_EXIT_OK;
out:
    tc_tpm_close(tpm);
    return ret;
}

static int cmd_extend(int argc, char **argv)
{
    static const struct option opts[] = {{"tcti", required_argument, NULL, 'T'},
                                         {"pcr", required_argument, NULL, 'p'},
                                         {"bank", required_argument, NULL, 'b'},
                                         {"digest", required_argument, NULL, 'd'},
                                         {"data", required_argument, NULL, 'D'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const struct cli_cmd *self = &commands[2];
    const char *tcti = default_tcti(), *pcr_s = NULL, *banks_s = NULL, *hex = NULL, *data = NULL;
    int c, rc;

    while ((c = getopt_long(argc, argv, "T:p:b:d:D:h", opts, NULL)) != -1) {
        switch (c) {
        case 'T':
            tcti = optarg;
            break;
        case 'p':
            pcr_s = optarg;
            break;
        case 'b':
            banks_s = optarg;
            break;
        case 'd':
            hex = optarg;
            break;
        case 'D':
            data = optarg;
            break;
        case 'h':
            return help("tpm", self);
        default:
            return cli_usage("tpm", self);
        }
    }
    if (optind != argc || pcr_s == NULL || banks_s == NULL || (hex == NULL) == (data == NULL))
        return cli_usage("tpm", self);
    char *end;
    unsigned long pcr = strtoul(pcr_s, &end, 10);
    if (*pcr_s == 0 || *end != 0 || pcr >= TC_PCR_COUNT) {
        fprintf(stderr, "trustcloud tpm extend: --pcr must be 0..23\n");
        return TC_EXIT_USAGE;
    }

    const struct tc_hash_alg *algs[TC_MAX_BANKS];
    uint8_t digests[TC_MAX_BANKS][TC_MAX_DIGEST];
    const uint8_t *dptr[TC_MAX_BANKS];
    size_t n = 0;
    for (const char *p = banks_s; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const struct tc_hash_alg *alg = tc_hash_by_name_n(p, len);
        if (alg == NULL || n == TC_MAX_BANKS) {
            fprintf(stderr, "trustcloud tpm extend: unknown or too many banks in '%s'\n", banks_s);
            return TC_EXIT_USAGE;
        }
        algs[n] = alg;
        if (data != NULL) {
            if ((rc = tc_hash(alg, data, strlen(data), digests[n])) != 0)
                return fail("extend", "hashing --data", rc);
        } else {
            size_t dlen = 0;
            if (tc_hex_decode(hex, strlen(hex), digests[n], sizeof(digests[n]), &dlen) != 0 ||
                dlen != alg->size) {
                fprintf(stderr, "trustcloud tpm extend: --digest must be %zu bytes of hex for %s\n",
                        alg->size, alg->name);
                return TC_EXIT_USAGE;
            }
        }
        dptr[n] = digests[n];
        n++;
        p += len;
        if (*p == ',')
            p++;
    }
    if (n == 0)
        return cli_usage("tpm", self);
    if (hex != NULL && n != 1) {
        fprintf(stderr, "trustcloud tpm extend: --digest goes with exactly one --bank\n");
        return TC_EXIT_USAGE;
    }

    struct tc_tpm *tpm = NULL;
    if (open_tpm("extend", tcti, &tpm) != 0)
        return TC_EXIT_USAGE;
    rc = tc_tpm_pcr_extend_multi(tpm, (unsigned)pcr, n, algs, dptr);
    tc_tpm_close(tpm);
    return rc == 0 ? TC_EXIT_OK : fail("extend", "PCR_Extend", rc);
}

static int write_out(const char *cmd, const char *path, const void *data, size_t len, unsigned mode)
{
    int rc = tc_file_write(path, data, len, mode);
    if (rc != 0)
        fprintf(stderr, "trustcloud tpm %s: cannot write %s: %s\n", cmd, path, tc_strerror(rc));
    return rc;
}

static int cmd_ek(int argc, char **argv)
{
    static const struct option opts[] = {{"tcti", required_argument, NULL, 'T'},
                                         {"alg", required_argument, NULL, 'G'},
                                         {"out-pub", required_argument, NULL, 'u'},
                                         {"out-cert", required_argument, NULL, 'c'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const struct cli_cmd *self = &commands[3];
    const char *tcti = default_tcti(), *pub_path = NULL, *cert_path = NULL;
    enum tc_key_alg alg = TC_KEY_ECC_P256;
    int c, rc, json = 0, ret = TC_EXIT_USAGE;

    while ((c = getopt_long(argc, argv, "T:G:u:c:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'T':
            tcti = optarg;
            break;
        case 'G':
            if (parse_key_alg(optarg, &alg, 0) != 0)
                return cli_usage("tpm", self);
            break;
        case 'u':
            pub_path = optarg;
            break;
        case 'c':
            cert_path = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            return help("tpm", self);
        default:
            return cli_usage("tpm", self);
        }
    }
    if (optind != argc)
        return cli_usage("tpm", self);

    struct tc_tpm *tpm = NULL;
    struct tc_tpm_key ek;
    uint8_t *cert = NULL;
    size_t cert_len = 0;
    json_t *j = NULL;
    memset(&ek, 0, sizeof(ek));
    if (open_tpm("ek", tcti, &tpm) != 0)
        goto out;
    if ((rc = tc_tpm_ek_create(tpm, alg, &ek)) != 0) {
        ret = fail("ek", "creating the EK", rc);
        goto out;
    }
    rc = tc_tpm_ek_cert_read(tpm, alg, &cert, &cert_len);
    if (rc != 0 && rc != TC_ERR_NOT_FOUND) {
        ret = fail("ek", "reading the EK certificate", rc);
        goto out;
    }
    if (cert == NULL && cert_path != NULL) {
        fprintf(stderr, "trustcloud tpm ek: the TPM holds no %s EK certificate\n",
                key_alg_name(alg));
        goto out;
    }
    if (pub_path != NULL && write_out("ek", pub_path, ek.pub, ek.pub_len, 0644) != 0)
        goto out;
    if (cert_path != NULL && write_out("ek", cert_path, cert, cert_len, 0644) != 0)
        goto out;
    if (json) {
        j = json_object();
        json_object_set_new(j, "alg", json_string(key_alg_name(alg)));
        json_object_set_new(j, "name", json_hex(ek.name, ek.name_len));
        json_object_set_new(j, "public", json_hex(ek.pub, ek.pub_len));
        json_object_set_new(j, "certificate", cert ? json_hex(cert, cert_len) : json_null());
        ret = print_json(j);
        goto out;
    }
    printf("alg: %s\nname: ", key_alg_name(alg));
    hex_print(stdout, ek.name, ek.name_len);
    printf("\ncertificate: %s\n", cert ? "present" : "none");
    ret = TC_EXIT_OK;
out:
    json_decref(j);
    free(cert);
    tc_tpm_key_release(tpm, &ek);
    tc_tpm_close(tpm);
    return ret;
}

/* Writes the AK's public key in the forms asked for and prints (or returns as JSON) its
 * description. */
static int ak_outputs(const char *cmd, enum tc_key_alg alg, enum tc_sig_scheme scheme,
                      const uint8_t *pub, size_t pub_len, const uint8_t *name, size_t name_len,
                      const char *pem_path, const char *tpm2b_path, const char *name_path, int json)
{
    struct tc_ak *ak = NULL;
    struct tc_reason why;
    char *pem = NULL;
    size_t pem_len = 0;
    int rc, ret = TC_EXIT_USAGE;

    tc_reason_clear(&why);
    if (pem_path != NULL || json) {
        if ((rc = tc_ak_from_tpm2b_public(pub, pub_len, &ak, &why)) != 0 ||
            (rc = tc_ak_to_pem(ak, &pem, &pem_len)) != 0) {
            ret = fail(cmd, "converting the AK public key to PEM", rc);
            goto out;
        }
    }
    if (pem_path != NULL && write_out(cmd, pem_path, pem, pem_len, 0644) != 0)
        goto out;
    if (tpm2b_path != NULL && write_out(cmd, tpm2b_path, pub, pub_len, 0644) != 0)
        goto out;
    if (name_path != NULL && write_out(cmd, name_path, name, name_len, 0644) != 0)
        goto out;
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "alg", json_string(key_alg_name(alg)));
        json_object_set_new(j, "scheme", json_string(scheme_name(scheme)));
        json_object_set_new(j, "name", json_hex(name, name_len));
        json_object_set_new(j, "public", json_hex(pub, pub_len));
        json_object_set_new(j, "pem", json_string(pem));
        ret = print_json(j);
        json_decref(j);
        goto out;
    }
    printf("alg: %s\nscheme: %s\nname: ", key_alg_name(alg), scheme_name(scheme));
    hex_print(stdout, name, name_len);
    printf("\n");
    ret = TC_EXIT_OK;
out:
    free(pem);
    tc_ak_free(ak);
    return ret;
}

static int ak_create(int argc, char **argv);
static int ak_show(int argc, char **argv);

static const struct cli_cmd ak_commands[] = {
    {"create", ak_create,
     "[--tcti T] --ctx FILE [--alg ecc|rsa|sm2] [--scheme ecdsa|rsassa|rsapss|sm2] "
     "[--ek-alg ecc|rsa] [--out-pub PEM] [--out-tpm2b F] [--out-name F] [--json]  create an AK "
     "under the EK and save it (mode 0600) for reuse"},
    {"show", ak_show,
     "--ctx FILE [--out-pub PEM] [--out-tpm2b F] [--out-name F] [--json]  describe a saved AK "
     "(no TPM needed)"},
};

static int cmd_ak(int argc, char **argv)
{
    return cli_dispatch("tpm ak", ak_commands, sizeof(ak_commands) / sizeof(ak_commands[0]), argc,
                        argv);
}

static const struct option ak_opts[] = {{"tcti", required_argument, NULL, 'T'},
                                        {"ctx", required_argument, NULL, 'c'},
                                        {"alg", required_argument, NULL, 'G'},
                                        {"scheme", required_argument, NULL, 's'},
                                        {"ek-alg", required_argument, NULL, 'E'},
                                        {"out-pub", required_argument, NULL, 'u'},
                                        {"out-tpm2b", required_argument, NULL, 't'},
                                        {"out-name", required_argument, NULL, 'n'},
                                        {"json", no_argument, NULL, 'j'},
                                        {"help", no_argument, NULL, 'h'},
                                        {NULL, 0, NULL, 0}};

struct ak_args {
    const char *tcti, *ctx, *pem, *tpm2b, *name;
    enum tc_key_alg alg, ek_alg;
    enum tc_sig_scheme scheme;
    int json, tpm_opts; /* tpm_opts: an option that only makes sense with a TPM was given */
};

/* Returns 0, -1 after --help, or a usage exit code. */
static int parse_ak(int argc, char **argv, const struct cli_cmd *self, struct ak_args *a)
{
    int c;
    memset(a, 0, sizeof(*a));
    a->tcti = default_tcti();
    a->alg = TC_KEY_ECC_P256;
    a->ek_alg = TC_KEY_ECC_P256;
    a->scheme = TC_SIG_DEFAULT;
    while ((c = getopt_long(argc, argv, "T:c:G:s:E:u:t:n:jh", ak_opts, NULL)) != -1) {
        switch (c) {
        case 'T':
            a->tcti = optarg;
            a->tpm_opts = 1;
            break;
        case 'c':
            a->ctx = optarg;
            break;
        case 'G':
            if (parse_key_alg(optarg, &a->alg, 1) != 0)
                return cli_usage("tpm ak", self);
            a->tpm_opts = 1;
            break;
        case 's':
            if (parse_scheme(optarg, &a->scheme) != 0)
                return cli_usage("tpm ak", self);
            a->tpm_opts = 1;
            break;
        case 'E':
            if (parse_key_alg(optarg, &a->ek_alg, 0) != 0)
                return cli_usage("tpm ak", self);
            a->tpm_opts = 1;
            break;
        case 'u':
            a->pem = optarg;
            break;
        case 't':
            a->tpm2b = optarg;
            break;
        case 'n':
            a->name = optarg;
            break;
        case 'j':
            a->json = 1;
            break;
        case 'h':
            help("tpm ak", self);
            return -1;
        default:
            return cli_usage("tpm ak", self);
        }
    }
    if (optind != argc || a->ctx == NULL)
        return cli_usage("tpm ak", self);
    return 0;
}

static int ak_create(int argc, char **argv)
{
    struct ak_args a;
    struct tc_tpm *tpm = NULL;
    struct tc_tpm_key ek, ak;
    int rc, ret = TC_EXIT_USAGE;

    if ((rc = parse_ak(argc, argv, &ak_commands[0], &a)) != 0)
        return rc < 0 ? TC_EXIT_OK : rc;
    memset(&ek, 0, sizeof(ek));
    memset(&ak, 0, sizeof(ak));
    if (open_tpm("ak create", a.tcti, &tpm) != 0)
        goto out;
    if ((rc = tc_tpm_ek_create(tpm, a.ek_alg, &ek)) != 0) {
        ret = fail("ak create", "creating the EK", rc);
        goto out;
    }
    if ((rc = tc_tpm_ak_create(tpm, &ek, a.alg, a.scheme, a.ctx, &ak)) != 0) {
        ret = fail("ak create",
                   rc == TC_ERR_UNSUPPORTED ? "this --alg/--scheme pair" : "creating the AK", rc);
        goto out;
    }
    ret = ak_outputs("ak create", ak.alg, ak.scheme, ak.pub, ak.pub_len, ak.name, ak.name_len,
                     a.pem, a.tpm2b, a.name, a.json);
out:
    tc_tpm_key_release(tpm, &ak);
    tc_tpm_key_release(tpm, &ek);
    tc_tpm_close(tpm);
    return ret;
}

static int ak_show(int argc, char **argv)
{
    struct ak_args a;
    struct tc_tpm_akctx *ctx = NULL;
    int rc, ret = TC_EXIT_USAGE;

    if ((rc = parse_ak(argc, argv, &ak_commands[1], &a)) != 0)
        return rc < 0 ? TC_EXIT_OK : rc;
    if (a.tpm_opts)
        return cli_usage("tpm ak", &ak_commands[1]);
    if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
        return TC_EXIT_USAGE;
    if ((rc = tc_tpm_akctx_read(a.ctx, ctx)) != 0) {
        ret = fail("ak show", a.ctx, rc);
        goto out;
    }
    ret = ak_outputs("ak show", ctx->alg, ctx->scheme, ctx->pub, ctx->pub_len, ctx->name,
                     ctx->name_len, a.pem, a.tpm2b, a.name, a.json);
out:
    tc_tpm_akctx_release(ctx);
    free(ctx);
    return ret;
}

int cmd_tpm(int argc, char **argv)
{
    return cli_dispatch("tpm", commands, sizeof(commands) / sizeof(commands[0]), argc, argv);
}
