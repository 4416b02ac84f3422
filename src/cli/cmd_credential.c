/* SPDX-License-Identifier: Apache-2.0 */
/* trustcloud credential make: software MakeCredential, output compatible with
 * tpm2_activatecredential (tpm2-tools credential file: magic, version, ID object, secret). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cli.h"
#include "trustcloud/buf.h"
#include "trustcloud/credential.h"
#include "trustcloud/error.h"

#define TPM2_TOOLS_CRED_MAGIC 0xBADCC0DEu
#define TPM2_TOOLS_CRED_VERSION 1u

static int credential_make(int argc, char **argv);

static const struct cli_cmd credential_cmds[] = {
    {"make", credential_make,
     "--ek-pub TPM2B_PUBLIC --name NAME_FILE --secret HEX --out FILE  wrap a secret for one TPM"},
};

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int credential_make(int argc, char **argv)
{
    static const struct option opts[] = {{"ek-pub", required_argument, NULL, 'e'},
                                         {"name", required_argument, NULL, 'n'},
                                         {"secret", required_argument, NULL, 's'},
                                         {"out", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *ek_path = NULL, *name_path = NULL, *secret_hex = NULL, *out_path = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "e:n:s:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            ek_path = optarg;
            break;
        case 'n':
            name_path = optarg;
            break;
        case 's':
            secret_hex = optarg;
            break;
        case 'o':
            out_path = optarg;
            break;
        case 'h':
            printf("usage: trustcloud credential %s %s\n", credential_cmds[0].name,
                   credential_cmds[0].help);
            return TC_EXIT_OK;
        default:
            return cli_usage("credential", &credential_cmds[0]);
        }
    }
    if (!ek_path || !name_path || !secret_hex || !out_path || optind != argc)
        return cli_usage("credential", &credential_cmds[0]);

    int ret = TC_EXIT_USAGE, rc;
    uint8_t *ek = NULL, *name = NULL;
    size_t ek_len, name_len, secret_len;
    uint8_t secret[TC_CRED_MAX_CREDENTIAL];
    struct tc_credential_blob blob;
    struct tc_buf file;
    tc_buf_init(&file, 4096);
    if ((rc = tc_file_read(ek_path, 4096, &ek, &ek_len)) != 0 ||
        (rc = tc_file_read(name_path, 4096, &name, &name_len)) != 0) {
        fprintf(stderr, "trustcloud credential make: cannot read input: %s\n", tc_strerror(rc));
        goto out;
    }
    if ((rc = tc_hex_decode(secret_hex, strlen(secret_hex), secret, sizeof(secret),
                            &secret_len)) != 0) {
        fprintf(stderr, "trustcloud credential make: bad --secret: %s\n", tc_strerror(rc));
        goto out;
    }
    if ((rc = tc_make_credential(ek, ek_len, name, name_len, secret, secret_len, &blob)) != 0) {
        fprintf(stderr, "trustcloud credential make: %s\n", tc_strerror(rc));
        goto out;
    }
    uint8_t hdr[8];
    put_be32(hdr, TPM2_TOOLS_CRED_MAGIC);
    put_be32(hdr + 4, TPM2_TOOLS_CRED_VERSION);
    if ((rc = tc_buf_put(&file, hdr, sizeof(hdr))) != 0 ||
        (rc = tc_buf_put(&file, blob.id_object, blob.id_object_len)) != 0 ||
        (rc = tc_buf_put(&file, blob.secret, blob.secret_len)) != 0 ||
        (rc = tc_file_write(out_path, file.data, file.len, 0600)) != 0) {
        fprintf(stderr, "trustcloud credential make: cannot write %s: %s\n", out_path,
                tc_strerror(rc));
        goto out;
    }
    ret = TC_EXIT_OK;
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    tc_buf_release(&file);
    free(ek);
    free(name);
    return ret;
}

int cmd_credential(int argc, char **argv)
{
    return cli_dispatch("credential", credential_cmds,
                        sizeof(credential_cmds) / sizeof(credential_cmds[0]), argc, argv);
}
