/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzzes runtime policy parsing (Keylime JSON and allowlists), lookups against a fixed list of
 * entries of every template, and writing the policy back out. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trustcloud/buf.h"
#include "trustcloud/ima.h"
#include "trustcloud/runtime_policy.h"

static struct tc_ima_log *entries;

static void build_entries(void)
{
    static const char text[] =
        "10 0000000000000000000000000000000000000000 ima-ng sha1:"
        "0000000000000000000000000000000000000000 boot_aggregate\n"
        "10 edcfbc3299860219161af60b266f8e2fa1fbd0c0 ima-ng sha1:"
        "009b0d8ee8fb8d890fa70f9c8e02b3f1eded1509 /data\n"
        "10 6bdad7efa602f84ca31ffe3f11ff7c476e25dcdd ima-ng sha256:"
        "7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61 boot_aggregate\n"
        "10 04e5299e3ecf297da05d4b65934a62da74938c4a ima-sig sha256:"
        "ceffe727ab2fa2c7c3322ee4a1aa0c2d2a4664836c2133df93dd15055bb617be /etc/unsigned.conf \n";
    if (tc_ima_log_parse((const uint8_t *)text, strlen(text), NULL, &entries, NULL) != 0)
        abort();
    /* An ima-sig entry with a signature header and an ima-buf keyring entry. */
    uint8_t d[32] = {1}, *td;
    size_t tdl;
    const uint8_t sig[] = {3, 2, 4, 0xca, 0x3e, 0xd2, 0xb8, 0, 2, 0x30, 0};
    if (tc_ima_template_data_ng(tc_hash_by_name("sha256"), d, "/usr/bin/hello", sig, sizeof(sig),
                                true, &td, &tdl) == 0) {
        tc_ima_log_append(entries, 10, "ima-sig", td, tdl, false, NULL);
        free(td);
    }
    tc_hash(tc_hash_by_name("sha256"), "key", 3, d);
    if (tc_ima_template_data_ng(tc_hash_by_name("sha256"), d, ".ima", (const uint8_t *)"key", 3,
                                true, &td, &tdl) == 0) {
        tc_ima_log_append(entries, 10, "ima-buf", td, tdl, false, NULL);
        free(td);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct tc_runtime_policy *p = NULL, *q = NULL;
    struct tc_reason why;
    pthread_once(&once, build_entries);
    if (tc_runtime_policy_parse(data, size, &p, &why) != 0)
        return 0;
    for (size_t i = 0; i < entries->count; i++)
        tc_runtime_policy_check_entry(p, &entries->entries[i], (long)i, &why);
    json_t *j = NULL;
    if (tc_runtime_policy_to_json(p, &j) == 0) {
        char *s = json_dumps(j, JSON_COMPACT);
        if (s && tc_runtime_policy_parse((const uint8_t *)s, strlen(s), &q, &why) == 0) {
            for (size_t i = 0; i < entries->count; i++)
                tc_runtime_policy_check_entry(q, &entries->entries[i], (long)i, &why);
            tc_runtime_policy_free(q);
        }
        free(s);
        json_decref(j);
    }
    tc_runtime_policy_free(p);
    return 0;
}
