/* SPDX-License-Identifier: Apache-2.0 */
/* What both IMA list harnesses do with a list that parsed: replay, serialisation and policy
 * checks. Included by fuzz/ima_ascii.c and fuzz/ima_binary.c (one harness per binary). */
#ifndef TC_FUZZ_IMA_EXERCISE_H
#define TC_FUZZ_IMA_EXERCISE_H

#include <stdint.h>
#include <stdlib.h>

#include "trustcloud/buf.h"
#include "trustcloud/ima.h"
#include "trustcloud/runtime_policy.h"

static void exercise(const struct tc_ima_log *log)
{
    struct tc_reason why;
    struct tc_ima_replay_state st;
    struct tc_runtime_policy *p = NULL;
    struct tc_buf b;
    const struct tc_hash_alg *banks[] = {tc_hash_by_name("sha1"), tc_hash_by_name("sha256"),
                                         tc_hash_by_name("sm3_256")};
    tc_ima_log_verify_template_hashes(log, &why);
    if (tc_ima_replay_init(&st, banks, 3, 0) == 0) {
        uint8_t zero[32] = {0};
        struct tc_ima_replay_state q = st;
        tc_ima_replay_advance(&st, log, &why);
        tc_ima_replay_match_quote(&q, log, banks[1], 10, zero, NULL, &why);
    }
    tc_buf_init(&b, 1u << 26);
    tc_ima_log_to_ascii(log, 0, log->count, &b);
    tc_buf_release(&b);
    tc_ima_log_to_binary(log, 0, log->count, &b);
    tc_buf_release(&b);
    for (size_t i = 0; i < log->count && i < 4; i++)
        json_decref(tc_ima_entry_to_json(log, i));
    if (tc_runtime_policy_from_ima_log(log, &p, &why) == 0) {
        tc_runtime_policy_add_exclude(p, "/tmp/.*");
        tc_runtime_policy_check_log(p, log, 0, log->count, &why);
        tc_runtime_policy_free(p);
    }
}

#endif
