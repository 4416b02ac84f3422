/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the coordinator sends an agent: POST /v1/quote and /v1/notice bodies, and the base64
 * fields of the enrollment answers. The first input byte picks the parser.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* The agent is an executable, not a library: its modules are compiled into the harness. */
#include "agent/agent_config.c"
#include "agent/agent_request.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tc_reason why;
    if (size == 0)
        return 0;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    switch (data[0] % 3) {
    case 0: {
        struct agent_quote_request req;
        if (agent_quote_request_parse(body, len, &req, &why) == 0) {
            /* What the TPM layer relies on. */
            if (req.nonce_len == 0 || req.nonce_len > AGENT_MAX_NONCE ||
                req.ima_from > AGENT_MAX_IMA_FROM || req.selection.nbanks == 0 ||
                req.vm_selection.nbanks == 0 || req.nvms > AGENT_MAX_BATCH_VMS)
                abort();
            for (size_t i = 0; i < req.nvms; i++)
                if (!agent_node_id_valid(req.vms[i].id) || req.vms[i].ima_from > AGENT_MAX_IMA_FROM)
                    abort();
            agent_quote_request_release(&req);
        }
        break;
    }
    case 1: {
        struct agent_notice n;
        if (agent_notice_parse(body, len, &n, &why) == 0 && !agent_node_id_valid(n.node_id))
            abort();
        break;
    }
    default: {
        uint8_t out[600];
        size_t n = 0;
        if (agent_b64_decode((const char *)body, len, out, sizeof(out), &n) == 0) {
            char *back = NULL;
            /* Canonical input round-trips exactly (any accepted string decodes to n bytes). */
            if (agent_b64_encode(out, n, &back) != 0 || strlen(back) != len)
                abort();
            free(back);
        }
        break;
    }
    }
    return 0;
}
