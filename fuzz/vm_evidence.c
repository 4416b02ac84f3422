/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A VM's evidence as a tenant receives it (a file for `trustcloud vm check`): JSON text, capped
 * like the CLI's read, through tc_vm_evidence_verify. Accepted evidence must name a valid VM and
 * carry AK names; a refusal must name its check. Any violation aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "trustcloud/batch.h"
#include "trustcloud/vm_evidence.h"

#define EVIDENCE_MAX_INPUT (1u << 20) /* `trustcloud vm check` reads at most this */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > EVIDENCE_MAX_INPUT)
        return 0;
    json_t *ev = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!ev)
        return 0;
    struct tc_vm_evidence_info info;
    struct tc_reason why;
    int rc = tc_vm_evidence_verify(ev, NULL, 0, NULL, 0, &info, &why);
    if (rc == 0) {
        if (!tc_batch_id_valid(info.vm_id) || info.vm_ak_name_len < 3 ||
            info.host_ak_name_len < 3 || info.host_id[0] == '\0')
            abort();
    } else if (rc > 0 || why.check[0] == '\0' || info.vm_id[0] != '\0') {
        abort();
    }
    json_decref(ev);
    return 0;
}
