/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the quote verifier end to end. The input is split into five sections, each prefixed
 * by a 2-byte big-endian length (the last one takes whatever is left): AK public key
 * (TPM2B_PUBLIC/TPMT_PUBLIC/PEM/DER), TPMS_ATTEST, TPMT_SIGNATURE, PCR file (tpm2-tools or
 * JSON), nonce. Each is parsed on its own, then the whole quote is verified.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trustcloud/quote.h"

#include "fuzz_input.h"

enum { S_AK, S_ATTEST, S_SIG, S_PCRS, S_NONCE, NSECT };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet_tss();
    const uint8_t *sect[NSECT];
    size_t len[NSECT];
    fuzz_split(data, size, NSECT, sect, len);

    struct tc_reason why;
    struct tc_ak *ak = NULL;
    struct tc_quote_info info, prev;
    struct tc_pcr_set pcrs, again;
    struct tc_pcr_selection sel;
    int have_info = tc_quote_parse(sect[S_ATTEST], len[S_ATTEST], &info, &why) == 0;
    int have_pcrs = tc_pcrfile_parse(sect[S_PCRS], len[S_PCRS], &pcrs) == 0;
    tc_pcrfile_read_tpm2_tools(sect[S_PCRS], len[S_PCRS], &again, &sel);
    if (have_info) {
        tc_pcrfile_read_values(sect[S_PCRS], len[S_PCRS], &info.selection, &again);
        json_decref(tc_quote_info_to_json(&info));
    }
    if (have_pcrs && pcrs.nbanks > 0) {
        /* The writer's output must read back as the same values. */
        uint8_t *out;
        size_t out_len;
        if (tc_pcrfile_write_tpm2_tools(&pcrs, &out, &out_len) == 0) {
            if (tc_pcrfile_read_tpm2_tools(out, out_len, &again, NULL) != 0 ||
                memcmp(&again, &pcrs, sizeof(pcrs)) != 0)
                abort();
            free(out);
        }
    }
    if (tc_ak_parse(sect[S_AK], len[S_AK], &ak, &why) == 0) {
        char *pem;
        size_t pem_len;
        if (tc_ak_to_pem(ak, &pem, &pem_len) == 0)
            free(pem);
        if (!have_pcrs)
            tc_pcrs_init(&pcrs);
        struct tc_quote_expect ex = {.nonce = sect[S_NONCE], .nonce_len = len[S_NONCE]};
        if (have_info) {
            /* Against itself as the previous quote, and with its own selection. */
            prev = info;
            ex.previous = &prev;
            ex.selection = &prev.selection;
            ex.counters_obfuscated = len[S_NONCE] & 1;
        }
        tc_quote_verify(ak, sect[S_ATTEST], len[S_ATTEST], sect[S_SIG], len[S_SIG], &pcrs, &ex,
                        &info, &why);
        tc_ak_free(ak);
    }
    return 0;
}
