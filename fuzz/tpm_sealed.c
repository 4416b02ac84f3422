/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzzes the sealed-blob parser (vTPM state keys sealed to the host's PCRs sit on disk, where an
 * attacker with disk access may replace them; the blob is parsed before the TPM sees it). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "trustcloud/tpm_seal.h"

#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet_tss();
    struct tc_tpm_sealed s;
    if (tc_tpm_sealed_parse(data, size, &s) == 0) {
        /* What the parser promises about an accepted blob. */
        if (s.policy_len != 32 || s.parent_name_len < 2 ||
            s.parent_name_len > sizeof(s.parent_name) || s.pub_len < 2 ||
            s.pub_len > sizeof(s.pub) || s.priv_len > sizeof(s.priv) || s.sel.nbanks == 0 ||
            ((size_t)s.pub[0] << 8 | s.pub[1]) != s.pub_len - 2)
            abort();
        for (size_t i = 0; i < s.sel.nbanks; i++)
            if (s.sel.bank[i].alg == NULL || s.sel.bank[i].mask == 0)
                abort();
    }
    return 0;
}
