/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What several harnesses do with their input, in one place (header-only: every harness is its
 * own program).
 */
#ifndef TC_FUZZ_INPUT_H
#define TC_FUZZ_INPUT_H
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* tpm2-tss logs every malformed structure: quiet, or logging dominates the run time. */
static inline void fuzz_quiet_tss(void)
{
    static int quiet;
    if (!quiet) {
        setenv("TSS2_LOG", "all+NONE", 0);
        quiet = 1;
    }
}

/* Splits the input into n sections: each but the last is prefixed by a big-endian u16 length
 * (clipped to what is left); the last takes the rest. Sections may be empty. */
static inline void fuzz_split(const uint8_t *data, size_t size, int n, const uint8_t **sect,
                              size_t *len)
{
    for (int i = 0; i < n; i++) {
        size_t k = size;
        if (i < n - 1) {
            if (size < 2) {
                k = 0;
            } else {
                k = (size_t)data[0] << 8 | data[1];
                data += 2, size -= 2;
                if (k > size)
                    k = size;
            }
        }
        sect[i] = data;
        len[i] = k;
        data += k, size -= k;
    }
}

#endif
