/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the coordinator does with untrusted request bytes before anything else: the JSON size and
 * depth checks and parse, the field checks of an enrollment (node id, agent URL, base64 keys),
 * and the stored IMA replay state decoder (every byte of input also tried as such a blob).
 * The coordinator library is not linked into fuzz targets, so its two pure units are compiled in.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/coord_imastate.c"
#include "coordinator/coord_validate.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void field_b64(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return;
    uint8_t *out = NULL;
    size_t len = 0;
    if (coord_b64_decode(json_string_value(v), json_string_length(v), 4096, &out, &len) == 0) {
        char *back = coord_b64_encode(out, len);
        if (back && strcmp(back, json_string_value(v)) != 0)
            abort(); /* strict base64 must round-trip exactly */
        free(back);
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tc_reason why;
    json_t *j = coord_json_parse(data, size, 1u << 20, &why);
    if (j) {
        size_t len = 0;
        const char *id = coord_json_str(j, "node_id", 256, &len);
        if (id && coord_valid_node_id(id, len) && (len == 0 || len > COORD_NODE_ID_MAX))
            abort();
        char host[256];
        const char *url = coord_json_str(j, "agent_url", 1024, NULL);
        if (url && coord_valid_url(url, true, host, sizeof(host)) && host[0] == '\0')
            abort();
        field_b64(j, "ek_pub");
        field_b64(j, "ak_pub");
        json_decref(j);
    }
    struct tc_ima_replay_state st;
    if (coord_ima_state_decode(data, size, &st) == 0) {
        /* A decoded state re-encodes to exactly the same bytes. */
        uint8_t *enc = NULL;
        size_t n = 0;
        if (coord_ima_state_encode(&st, &enc, &n) != 0 || n != size || memcmp(enc, data, n) != 0)
            abort();
        free(enc);
    }
    return 0;
}
