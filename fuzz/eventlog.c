/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz harness: UEFI event log parse, replay, decode of every event, JSON rendering, and a
 * measured-boot policy generated from the log and checked against it. */
#include <stdint.h>
#include <stdlib.h>

#include "trustcloud/eventlog.h"
#include "trustcloud/mb_policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tc_evlog *log = NULL;
    struct tc_mb_policy *p = NULL;
    struct tc_reason why;
    struct tc_pcr_set pcrs;

    if (tc_evlog_parse(data, size, &log, &why) != 0)
        return 0;
    for (size_t i = 0; i < log->nevents; i++) {
        struct tc_evlog_decoded d;
        tc_evlog_decode(log, &log->events[i], &d);
        tc_evlog_decoded_release(&d);
        json_t *j = tc_evlog_event_to_json(log, &log->events[i]);
        if (j == NULL)
            abort(); /* rendering must not fail on any parsed event */
        char *s = json_dumps(j, JSON_COMPACT);
        free(s);
        json_decref(j);
    }
    if (tc_evlog_replay(log, &pcrs, &why) == 0 &&
        tc_mb_policy_from_eventlog(log, &pcrs, &p, &why) == 0) {
        /* A policy generated from a log must accept that log. */
        if (tc_mb_policy_check(p, log, &pcrs, &why) != 0)
            abort();
        json_t *j = tc_mb_policy_to_json(p);
        json_decref(j);
    }
    tc_mb_policy_free(p);
    tc_evlog_free(log);
    return 0;
}
