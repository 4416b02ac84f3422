/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzzes the ASCII IMA list parser, then replay, serialisation and policy checks of whatever
 * parses. */
#include "ima_exercise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tc_ima_log *log = NULL;
    struct tc_ima_parse_opts o = {.format = TC_IMA_FMT_ASCII, .max_entries = 5000};
    if (tc_ima_log_parse(data, size, &o, &log, NULL) == 0) {
        exercise(log);
        tc_ima_log_free(log);
    }
    return 0;
}
