/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzzes the saved-AK context file parser (a file an attacker with disk access may replace). */
#include <stddef.h>
#include <stdint.h>

#include "trustcloud/tpm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tc_tpm_akctx ctx;
    if (tc_tpm_akctx_parse(data, size, &ctx) == 0)
        tc_tpm_akctx_release(&ctx);
    return 0;
}
