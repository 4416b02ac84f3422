/* SPDX-License-Identifier: Apache-2.0 */
#include "trustcloud/error.h"

#include <stddef.h>

static const struct {
    int code;
    const char *name;
    const char *text;
} errors[] = {
    {TC_OK, "ok", "success"},
    {TC_ERR_INTERNAL, "internal", "internal error"},
    {TC_ERR_ALLOC, "alloc", "out of memory"},
    {TC_ERR_INVALID_ARG, "invalid_arg", "invalid argument"},
    {TC_ERR_TRUNCATED, "truncated", "input truncated"},
    {TC_ERR_FORMAT, "format", "malformed input"},
    {TC_ERR_TOO_LARGE, "too_large", "input exceeds size limit"},
    {TC_ERR_UNSUPPORTED, "unsupported", "unsupported algorithm or format"},
    {TC_ERR_IO, "io", "I/O error"},
    {TC_ERR_TPM, "tpm", "TPM error"},
    {TC_ERR_CRYPTO, "crypto", "cryptographic library error"},
    {TC_ERR_SIGNATURE, "signature", "signature verification failed"},
    {TC_ERR_MISMATCH, "mismatch", "value mismatch"},
    {TC_ERR_NONCE, "nonce", "nonce mismatch"},
    {TC_ERR_POLICY, "policy", "policy violation"},
    {TC_ERR_NOT_FOUND, "not_found", "not found"},
    {TC_ERR_TRAILING, "trailing", "trailing bytes after structure"},
    {TC_ERR_ROLLBACK, "rollback", "counter or log rolled back"},
    {TC_ERR_KEY, "key", "unsuitable key"},
    {TC_ERR_CORRUPT, "corrupt", "stored state is damaged"},
};

const char *tc_strerror(int err)
{
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
        if (errors[i].code == err)
            return errors[i].text;
    return "unknown error";
}

const char *tc_errname(int err)
{
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
        if (errors[i].code == err)
            return errors[i].name;
    return "unknown";
}
