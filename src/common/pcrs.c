/* SPDX-License-Identifier: Apache-2.0 */
#include "trustcloud/pcrs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"

void tc_pcrs_init(struct tc_pcr_set *s)
{
    memset(s, 0, sizeof(*s));
}

struct tc_pcr_bank *tc_pcrs_bank(struct tc_pcr_set *s, const struct tc_hash_alg *alg, bool create)
{
    for (size_t i = 0; i < s->nbanks; i++)
        if (s->bank[i].alg == alg)
            return &s->bank[i];
    if (!create || s->nbanks == TC_MAX_BANKS)
        return NULL;
    struct tc_pcr_bank *b = &s->bank[s->nbanks++];
    memset(b, 0, sizeof(*b));
    b->alg = alg;
    return b;
}

const struct tc_pcr_bank *tc_pcrs_bank_const(const struct tc_pcr_set *s,
                                             const struct tc_hash_alg *alg)
{
    for (size_t i = 0; i < s->nbanks; i++)
        if (s->bank[i].alg == alg)
            return &s->bank[i];
    return NULL;
}

int tc_pcrs_set(struct tc_pcr_set *s, const struct tc_hash_alg *alg, unsigned idx,
                const uint8_t *value)
{
    if (idx >= TC_PCR_COUNT || alg == NULL)
        return TC_ERR_INVALID_ARG;
    struct tc_pcr_bank *b = tc_pcrs_bank(s, alg, true);
    if (b == NULL)
        return TC_ERR_TOO_LARGE;
    memcpy(b->value[idx], value, alg->size);
    b->mask |= 1u << idx;
    return 0;
}

int tc_pcr_bank_extend(struct tc_pcr_bank *b, unsigned idx, const uint8_t *digest)
{
    if (idx >= TC_PCR_COUNT)
        return TC_ERR_INVALID_ARG;
    if (!(b->mask & (1u << idx)))
        memset(b->value[idx], 0, b->alg->size);
    int rc = tc_hash2(b->alg, b->value[idx], b->alg->size, digest, b->alg->size, b->value[idx]);
    if (rc == 0)
        b->mask |= 1u << idx;
    return rc;
}

json_t *tc_pcrs_to_json(const struct tc_pcr_set *s)
{
    json_t *root = json_object();
    if (root == NULL)
        return NULL;
    for (size_t i = 0; i < s->nbanks; i++) {
        const struct tc_pcr_bank *b = &s->bank[i];
        json_t *jb = json_object();
        if (jb == NULL || json_object_set_new(root, b->alg->name, jb) != 0)
            goto fail;
        for (unsigned p = 0; p < TC_PCR_COUNT; p++) {
            if (!(b->mask & (1u << p)))
                continue;
            char key[4], hex[2 * TC_MAX_DIGEST + 1];
            snprintf(key, sizeof(key), "%u", p);
            tc_hex_encode(b->value[p], b->alg->size, hex);
            if (json_object_set_new(jb, key, json_string(hex)) != 0)
                goto fail;
        }
    }
    return root;
fail:
    json_decref(root);
    return NULL;
}

int tc_pcrs_from_json(const json_t *j, struct tc_pcr_set *s)
{
    tc_pcrs_init(s);
    if (!json_is_object(j))
        return TC_ERR_FORMAT;
    const char *bank_name;
    json_t *jb;
    json_object_foreach((json_t *)j, bank_name, jb)
    {
        const struct tc_hash_alg *alg = tc_hash_by_name(bank_name);
        if (alg == NULL)
            return TC_ERR_UNSUPPORTED;
        if (!json_is_object(jb))
            return TC_ERR_FORMAT;
        if (tc_pcrs_bank(s, alg, true) == NULL)
            return TC_ERR_TOO_LARGE;
        const char *idx_s;
        json_t *jv;
        json_object_foreach(jb, idx_s, jv)
        {
            char *end;
            unsigned long idx = strtoul(idx_s, &end, 10);
            if (*idx_s == 0 || *end != 0 || idx >= TC_PCR_COUNT || !json_is_string(jv))
                return TC_ERR_FORMAT;
            const char *hex = json_string_value(jv);
            if (strncmp(hex, "0x", 2) == 0)
                hex += 2;
            uint8_t v[TC_MAX_DIGEST];
            size_t n;
            int rc = tc_hex_decode(hex, strlen(hex), v, sizeof(v), &n);
            if (rc)
                return rc;
            if (n != alg->size)
                return TC_ERR_FORMAT;
            if ((rc = tc_pcrs_set(s, alg, (unsigned)idx, v)) != 0)
                return rc;
        }
    }
    return 0;
}

int tc_pcrs_parse_selection(const char *spec, struct tc_pcr_set *sel)
{
    tc_pcrs_init(sel);
    if (spec == NULL || *spec == 0)
        return TC_ERR_FORMAT;
    const char *p = spec;
    while (*p) {
        const char *colon = strchr(p, ':');
        const char *plus = strchr(p, '+');
        if (colon == NULL || (plus && plus < colon))
            return TC_ERR_FORMAT;
        const struct tc_hash_alg *alg = tc_hash_by_name_n(p, (size_t)(colon - p));
        if (alg == NULL)
            return TC_ERR_UNSUPPORTED;
        struct tc_pcr_bank *b = tc_pcrs_bank(sel, alg, true);
        if (b == NULL)
            return TC_ERR_TOO_LARGE;
        p = colon + 1;
        if (strncmp(p, "all", 3) == 0 && (p[3] == 0 || p[3] == '+')) {
            b->mask = (1u << TC_PCR_COUNT) - 1;
            p += 3;
        } else {
            for (;;) {
                char *end;
                unsigned long idx = strtoul(p, &end, 10);
                if (end == p || idx >= TC_PCR_COUNT)
                    return TC_ERR_FORMAT;
                b->mask |= 1u << idx;
                p = end;
                if (*p != ',')
                    break;
                p++;
            }
        }
        if (*p == '+')
            p++;
        else if (*p != 0)
            return TC_ERR_FORMAT;
    }
    return 0;
}
