/* SPDX-License-Identifier: Apache-2.0 */
#define LOGMODULE "load-emu"
#include "load_emu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "trustcloud/error.h"
#include "trustcloud/log.h"

#define REQUEST_MAX 4096

static int64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void load_emu_base_pcrs(struct tc_pcr_set *pcrs)
{
    const struct tc_hash_alg *sha256 = tc_hash_by_name("sha256");
    tc_pcrs_init(pcrs);
    for (unsigned i = 0; i < TC_PCR_COUNT; i++) {
        uint8_t v[32];
        char label[32];
        /* Firmware and boot loader PCRs hold hashes; the rest are still zero. */
        memset(v, 0, sizeof(v));
        if (i < 10 && i != TC_IMA_PCR) {
            snprintf(label, sizeof(label), "load-bench firmware PCR %u", i);
            tc_hash(sha256, label, strlen(label), v);
        }
        tc_pcrs_set(pcrs, sha256, i, v);
    }
}

int load_ima_init(struct load_ima *ima, const struct tc_pcr_set *base, size_t max_entries)
{
    const struct tc_hash_alg *sha256 = tc_hash_by_name("sha256");
    struct tc_reason why;
    struct tc_buf one;
    uint8_t *td = NULL;
    int rc;
    memset(ima, 0, sizeof(*ima));
    tc_buf_init(&ima->bin, 1u << 30);
    tc_buf_init(&one, 1u << 20);
    if (max_entries < 2)
        max_entries = 2;
    ima->off = calloc(max_entries + 1, sizeof(*ima->off));
    ima->pcr10 = calloc(max_entries + 1, sizeof(*ima->pcr10));
    if (!ima->off || !ima->pcr10) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    /* Template hashes in sha1, the kernel's binary list default. */
    if ((rc = tc_ima_log_new(tc_hash_by_name("sha1"), &ima->log)) != 0)
        goto out;
    struct tc_pcr_bank bank;
    memset(&bank, 0, sizeof(bank));
    bank.alg = sha256;
    for (size_t i = 0; i < max_entries; i++) {
        char path[96];
        uint8_t digest[32];
        size_t tlen;
        if (i == 0) {
            snprintf(path, sizeof(path), "boot_aggregate");
            if ((rc = tc_ima_boot_aggregate(base, sha256, digest)) != 0)
                goto out;
        } else {
            /* Distinct files, as a workload keeps executing new binaries and scripts. */
            snprintf(path, sizeof(path), "/opt/load/bin/tool-%07zu", i);
            tc_hash(sha256, path, strlen(path), digest);
        }
        free(td);
        td = NULL;
        if ((rc = tc_ima_template_data_ng(sha256, digest, path, NULL, 0, false, &td, &tlen)) != 0 ||
            (rc = tc_ima_log_append(ima->log, TC_IMA_PCR, "ima-ng", td, tlen, false, &why)) != 0)
            goto out;
        /* One entry at a time, so any prefix can be sent as a delta. */
        one.len = 0;
        if ((rc = tc_ima_log_to_binary(ima->log, i, i + 1, &one)) != 0)
            goto out;
        ima->off[i] = ima->bin.len;
        if ((rc = tc_buf_put(&ima->bin, one.data, one.len)) != 0)
            goto out;
        uint8_t d[32];
        memcpy(ima->pcr10[i], bank.value[TC_IMA_PCR], 32);
        if ((rc = tc_ima_entry_bank_digest(ima->log, &ima->log->entries[i], sha256, 0, d)) != 0 ||
            (rc = tc_pcr_bank_extend(&bank, TC_IMA_PCR, d)) != 0)
            goto out;
    }
    ima->n = max_entries;
    ima->off[max_entries] = ima->bin.len;
    memcpy(ima->pcr10[max_entries], bank.value[TC_IMA_PCR], 32);
    rc = tc_runtime_policy_from_ima_log(ima->log, &ima->policy, &why);
out:
    free(td);
    tc_buf_release(&one);
    if (rc)
        load_ima_release(ima);
    return rc;
}

void load_ima_release(struct load_ima *ima)
{
    tc_ima_log_free(ima->log);
    tc_buf_release(&ima->bin);
    free(ima->off);
    free(ima->pcr10);
    tc_runtime_policy_free(ima->policy);
    memset(ima, 0, sizeof(*ima));
}

static char *b64(const uint8_t *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

int load_emu_answer(struct load_emu *e, struct load_emu_node *node, const uint8_t *body, size_t len,
                    char **out, size_t *out_len)
{
    const struct tc_hash_alg *sha256 = tc_hash_by_name("sha256");
    /* Challenges come from the coordinator, but are still parsed with caps. */
    json_t *j = len <= REQUEST_MAX ? json_loadb((const char *)body, len, 0, NULL) : NULL;
    uint8_t nonce[64], *attest = NULL, *sig = NULL;
    size_t nonce_len = 0, attest_len = 0, sig_len = 0;
    char *a64 = NULL, *s64 = NULL, *l64 = NULL;
    struct tc_pcr_set sel, pcrs;
    struct tc_buf resp;
    int rc = TC_ERR_FORMAT;
    tc_buf_init(&resp, 64u << 20);
    *out = NULL;
    *out_len = 0;
    json_t *jn = json_object_get(j, "nonce"), *js = json_object_get(j, "pcr_selection");
    json_t *jf = json_object_get(j, "ima_from");
    if (!json_is_string(jn) || !json_is_string(js) || !json_is_integer(jf) ||
        json_integer_value(jf) < 0 ||
        tc_hex_decode(json_string_value(jn), json_string_length(jn), nonce, sizeof(nonce),
                      &nonce_len) != 0 ||
        tc_pcrs_parse_selection(json_string_value(js), &sel) != 0)
        goto out;
    /* Only the sha256 bank exists on these machines. */
    if (sel.nbanks != 1 || sel.bank[0].alg != sha256) {
        rc = TC_ERR_UNSUPPORTED;
        goto out;
    }
    /* Measurements made since the last quote, then the quote over the new PCR 10. */
    uint32_t count = node->count + e->per_round;
    if (count > e->ima.n)
        count = (uint32_t)e->ima.n;
    node->count = count;
    pcrs = e->base;
    if ((rc = tc_pcrs_set(&pcrs, sha256, TC_IMA_PCR, e->ima.pcr10[count])) != 0)
        goto out;
    uint64_t clock = (uint64_t)(mono_ns() / 1000000 - e->clock0_ms) + 1000;
    if ((rc = tc_softquote(node->ak, &sel, &pcrs, nonce, nonce_len, clock, 1, 0, &attest,
                           &attest_len, &sig, &sig_len)) != 0)
        goto out;
    uint64_t from = (uint64_t)json_integer_value(jf);
    if (from > count)
        from = 0; /* the verifier is ahead of this list: send it whole (as after a reboot) */
    rc = TC_ERR_ALLOC;
    if (!(a64 = b64(attest, attest_len)) || !(s64 = b64(sig, sig_len)) ||
        !(l64 = b64(e->ima.bin.data + e->ima.off[from], e->ima.off[count] - e->ima.off[from])))
        goto out;
    if ((rc = tc_buf_putf(&resp, "{\"attest\":\"%s\",\"signature\":\"%s\",\"pcrs\":{\"sha256\":{",
                          a64, s64)) != 0)
        goto out;
    const struct tc_pcr_bank *b = tc_pcrs_bank_const(&pcrs, sha256);
    const char *sep = "";
    for (unsigned i = 0; i < TC_PCR_COUNT; i++) {
        if (!(sel.bank[0].mask & (1u << i)))
            continue;
        char hex[65];
        tc_hex_encode(b->value[i], 32, hex);
        if ((rc = tc_buf_putf(&resp, "%s\"%u\":\"%s\"", sep, i, hex)) != 0)
            goto out;
        sep = ",";
    }
    if ((rc = tc_buf_putf(&resp, "}},\"ima\":{\"first\":%llu,\"list\":\"%s\"}}",
                          (unsigned long long)from, l64)) != 0)
        goto out;
    *out = (char *)tc_buf_steal(&resp, out_len);
out:
    json_decref(j);
    free(attest);
    free(sig);
    free(a64);
    free(s64);
    free(l64);
    tc_buf_release(&resp);
    return rc;
}

static void emu_handle(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    struct load_emu *e = arg;
    int64_t t0 = mono_ns(), arrived = realtime_us();
    const char *p = req->path + strlen("/n/");
    char *end = NULL;
    unsigned long idx = strtoul(p, &end, 10);
    if (end == p || idx >= atomic_load(&e->active)) {
        tc_http_response_error(resp, 404, "no such node");
        return;
    }
    struct load_emu_node *node = &e->nodes[idx];
    if (strcmp(end, "/v1/notice") == 0 && strcmp(req->method, "POST") == 0) {
        atomic_fetch_add(&e->notices, 1);
        tc_http_response_bytes(resp, 200, "application/json", "{}", 2);
        return;
    }
    if (strcmp(end, "/v1/quote") != 0 || strcmp(req->method, "POST") != 0) {
        tc_http_response_error(resp, 404, "no such route");
        return;
    }
    char *body = NULL;
    size_t len = 0;
    int rc = load_emu_answer(e, node, req->body, req->body_len, &body, &len);
    if (rc) {
        atomic_fetch_add(&e->refused, 1);
        tc_http_response_error(resp, 400, "cannot answer: %s", tc_strerror(rc));
        return;
    }
    node->arrival_us[node->narrival++ % LOAD_EMU_ARRIVALS] = arrived;
    resp->status = 200;
    snprintf(resp->content_type, sizeof(resp->content_type), "application/json");
    resp->body = (uint8_t *)body;
    resp->body_len = len;
    atomic_fetch_add(&e->answered, 1);
    atomic_fetch_add(&e->service_ns, (uint64_t)(mono_ns() - t0));
}

int load_emu_new(const struct tc_tls_config *tls, size_t nodes_cap, unsigned per_round,
                 uint32_t initial, size_t max_entries, struct load_emu **out)
{
    int rc;
    struct load_emu *e = calloc(1, sizeof(*e));
    *out = NULL;
    if (!e || !(e->nodes = calloc(nodes_cap, sizeof(*e->nodes)))) {
        free(e);
        return TC_ERR_ALLOC;
    }
    e->cap = nodes_cap;
    e->per_round = per_round;
    e->initial = initial;
    e->clock0_ms = mono_ns() / 1000000;
    load_emu_base_pcrs(&e->base);
    if ((rc = load_ima_init(&e->ima, &e->base, max_entries)) != 0)
        goto out;
    for (size_t i = 0; i < nodes_cap; i++)
        if ((rc = tc_softak_new(TC_KEY_ECC_P256, &e->nodes[i].ak)) != 0)
            goto out;
    /* Connections are what the coordinator keeps open: allow plenty, and never time them out
     * between two rounds. */
    struct tc_httpd_config hc = {
        .tls = *tls, .max_body = REQUEST_MAX, .max_connections = 8192, .max_unauth = 8192,
        .idle_timeout_s = 600};
    if ((rc = tc_httpd_new(&hc, &e->srv)) != 0 ||
        (rc = tc_httpd_route(e->srv, NULL, "/n/", emu_handle, e, 0)) != 0 ||
        (rc = tc_httpd_start(e->srv)) != 0)
        goto out;
    *out = e;
    e = NULL;
out:
    load_emu_free(e);
    return rc;
}

void load_emu_free(struct load_emu *e)
{
    if (!e)
        return;
    tc_httpd_free(e->srv);
    for (size_t i = 0; i < e->cap; i++)
        tc_softak_free(e->nodes[i].ak);
    free(e->nodes);
    load_ima_release(&e->ima);
    free(e);
}

uint16_t load_emu_port(const struct load_emu *e)
{
    return tc_httpd_port(e->srv);
}

void load_emu_reset(struct load_emu *e, size_t n)
{
    if (n > e->cap)
        n = e->cap;
    for (size_t i = 0; i < n; i++) {
        e->nodes[i].count = e->initial < e->ima.n ? e->initial : (uint32_t)e->ima.n;
        e->nodes[i].narrival = 0;
    }
    atomic_store(&e->active, n);
    atomic_store(&e->answered, 0);
    atomic_store(&e->refused, 0);
    atomic_store(&e->notices, 0);
    atomic_store(&e->service_ns, 0);
}
