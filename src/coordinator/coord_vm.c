/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Virtual machines at the coordinator (docs/protocol.md, "Virtual machines").
 *
 * A VM is a node of the store with a host and a tenant; its vTPM lives on the host and is
 * run by the host's agent. Creating one is a short conversation with that agent, driven from
 * libcurl callbacks on the engine thread while the operator's request waits (deferred):
 *
 *   1. POST {agent}/v1/vms {vm_id, nonce, mode}: the agent creates the vTPM, its EK
 *      certificate (issued by the vTPM CA key inside the host TPM), its AK, and certifies the
 *      CA key with the host AK over our nonce.
 *   2. We verify the chain host AK -> vTPM CA key (TPM2_Certify) -> CA certificate -> vTPM EK
 *      certificate -> vTPM EK, and that the host is still trusted, then wrap a credential to
 *      the vTPM EK for the vTPM AK's name (MakeCredential).
 *   3. POST {agent}/v1/vms/{id}/activate: only the vTPM holding both keys can unwrap it; the
 *      returned secret (compared in constant time with its hash) enrolls the VM.
 *
 * Any failure after step 1 asks the agent to delete the vTPM it made, so nothing is left
 * behind that the coordinator does not know about.
 *
 * A libvirt guest owns its vTPM, so its AK is enrolled once the guest runs, the same way but
 * through the guest agent (coord_vm_guest_enroll, started by the engine for a VM without an AK):
 *   G1. POST {agent}/v1/vms/{id}/guest: the guest's hello names its AK; we check it is a
 *       restricted signing key bound to its TPM and wrap a credential to the VM's enrolled EK
 *       (from step 2) for that AK's name.
 *   G2. POST {agent}/v1/vms/{id}/activate: the agent relays it; only the guest TPM holding both
 *       keys unwraps it. The secret matching its hash records the AK, and the VM is attested
 *       from its host's next round on. Until then the VM is unreachable (the guest does not
 *       answer yet) or untrusted (it answered badly), with the guest's check. start/stop/delete are
 * forwarded the same way. Locking: handlers run under coord.lock; callbacks take it themselves.
 */
#define LOGMODULE "vm"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "coordinator/coord.h"
#include "trustcloud/buf.h"
#include "trustcloud/certify.h"
#include "trustcloud/credential.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/pki.h"
#include "trustcloud/vm_guest.h"
#include "trustcloud/vtpm_ca.h"

#define VM_AGENT_TIMEOUT_MS 60000 /* vTPM creation on a loaded host */
#define VM_ANSWER_MAX (256u * 1024)

enum vm_stage { VM_CREATE, VM_ACTIVATE, VM_FORWARD, VM_CLEANUP, VM_GUEST_HELLO, VM_GUEST_ACTIVATE };

struct vm_op {
    struct coord *c;
    struct tc_http_deferred *d; /* NULL for fire-and-forget cleanups */
    enum vm_stage stage;
    char action[8]; /* forward: "start", "stop", "delete" */
    char vm_id[TC_STORE_ID_MAX + 1];
    char host[TC_STORE_ID_MAX + 1];
    char tenant[TC_STORE_ID_MAX + 1];
    char mode[8];
    char agent_url[TC_STORE_URL_MAX + 1];
    char pin[80];
    uint8_t nonce[32];
    uint8_t secret_hash[TC_STORE_HASH_LEN];
    uint8_t *ek_pub, *ek_cert, *ak_pub, *ak_name;
    size_t ek_pub_len, ek_cert_len, ak_pub_len, ak_name_len;
    char ctrl_path[512];
    /* A libvirt guest (POST /v1/vms "guest", validated and forwarded): what the agent answered. */
    json_t *guest;
    char domain[160];
    char channel_path[512];
};

static void op_free(struct vm_op *op)
{
    if (!op)
        return;
    free(op->ek_pub);
    free(op->ek_cert);
    free(op->ak_pub);
    free(op->ak_name);
    json_decref(op->guest);
    OPENSSL_cleanse(op->secret_hash, sizeof(op->secret_hash));
    free(op);
}

static void finish_json(struct vm_op *op, unsigned status, json_t *j)
{
    struct tc_http_response r;
    memset(&r, 0, sizeof(r));
    if (!j || tc_http_response_json(&r, status, j) != 0)
        coord_reply_error(&r, 500, "internal", "out of memory");
    json_decref(j);
    if (op->d)
        tc_http_deferred_finish(op->d, &r);
    else
        free(r.body);
    op->d = NULL;
}

static void finish_error(struct vm_op *op, unsigned status, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void finish_error(struct vm_op *op, unsigned status, const char *check, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    LOG_WARN("vm %s: %s (%s)", op->vm_id, text, check);
    finish_json(op, status, json_pack("{s:s, s:s}", "error", text, "check", check));
}

static void finish_reason(struct vm_op *op, unsigned status, const struct tc_reason *why)
{
    finish_error(op, status, why->check[0] ? why->check : "vm", "%s", why->detail);
}

/* ---- talking to the host's agent ------------------------------------------------------------ */

static void agent_done(void *arg, int status, long http_code, const uint8_t *body, size_t len);
static void guest_done(struct vm_op *op, int status, long http_code, const uint8_t *body,
                       size_t len);

static int agent_call(struct vm_op *op, const char *method, const char *path, json_t *body)
{
    char url[TC_STORE_URL_MAX + 128];
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (body && !text)
        return TC_ERR_ALLOC;
    snprintf(url, sizeof(url), "%s%s", op->agent_url, path);
    struct tc_httpc_req r = {.method = method,
                             .url = url,
                             .content_type = text ? "application/json" : NULL,
                             .body = text,
                             .len = text ? strlen(text) : 0,
                             .timeout_ms = VM_AGENT_TIMEOUT_MS,
                             .pinned_pubkey = op->pin[0] ? op->pin : NULL,
                             .cb = agent_done,
                             .arg = op};
    int rc = tc_httpc_submit_req(op->c->httpc, &r);
    free(text);
    return rc;
}

/* The agent made a vTPM we will not keep: ask it to remove it (best effort, no answer awaited
 * by anyone). Takes op over when the deferred request was already finished. */
static void cleanup_vm(struct vm_op *op)
{
    char path[TC_STORE_ID_MAX + 64];
    if (op->c->stop) { /* shutting down: the client is being freed */
        op_free(op);
        return;
    }
    op->stage = VM_CLEANUP;
    snprintf(path, sizeof(path), "/v1/vms/%s", op->vm_id);
    if (agent_call(op, "DELETE", path, NULL) != 0) {
        LOG_WARN("vm %s: cannot ask %s to remove the vTPM", op->vm_id, op->host);
        op_free(op);
    }
}

/* Copies the host's address, pin and (ak non-NULL) AK from the store into op; with
 * need_trusted the host must be trusted (creating or starting a VM releases keys to it). */
static int load_host(struct coord *c, const char *host, struct vm_op *op, struct tc_ak **ak,
                     bool need_trusted, unsigned *status, struct tc_reason *why)
{
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    int rc = tc_store_node_get(c->store, host, &n);
    if (rc == TC_ERR_NOT_FOUND || (rc == 0 && n.is_vm)) {
        *status = 404;
        rc = tc_fail(why, TC_ERR_NOT_FOUND, "vm.host_unknown", -1, "no node %s", host);
        goto out;
    }
    if (rc) {
        *status = 500;
        tc_fail(why, rc, "store", -1, "cannot read node %s", host);
        goto out;
    }
    enum tc_node_state state = n.state, appraised;
    uint32_t unrecorded;
    coord_engine_view(c, host, &state, &n.reason, &appraised, &unrecorded);
    if (need_trusted && state != TC_NODE_TRUSTED) {
        *status = 409;
        rc = tc_fail(why, TC_ERR_POLICY, "vm.host_untrusted", -1,
                     "node %s is %s: VMs run only on trusted nodes", host,
                     tc_node_state_name(state));
        goto out;
    }
    snprintf(op->host, sizeof(op->host), "%s", host);
    snprintf(op->agent_url, sizeof(op->agent_url), "%s", n.agent_url);
    size_t ul = strlen(op->agent_url);
    while (ul > 0 && op->agent_url[ul - 1] == '/')
        op->agent_url[--ul] = '\0';
    op->pin[0] = '\0';
    if (n.tls_cert_fp[0] && (rc = coord_pin_curl(n.tls_cert_fp, op->pin, sizeof(op->pin))) != 0) {
        *status = 500;
        tc_fail(why, rc, "vm.host", -1, "node %s has an unusable TLS pin", host);
        goto out;
    }
    if (ak && (rc = tc_ak_from_tpm2b_public(n.ak_pub.data, n.ak_pub.len, ak, why)) != 0)
        *status = 500;
out:
    tc_store_node_release(&n);
    return rc;
}

static int b64_get(const json_t *o, const char *key, size_t max, uint8_t **out, size_t *len)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return TC_ERR_NOT_FOUND;
    return coord_b64_decode(json_string_value(v), json_string_length(v), max, out, len);
}

int coord_vm_verify_answer(const json_t *j, const struct tc_ak *host_ak, const uint8_t *nonce,
                           size_t nonce_len, bool tcp, struct coord_vm_identity *id,
                           struct tc_reason *why)
{
    uint8_t *ca_der = NULL, *ca_pub = NULL, *attest = NULL, *sig = NULL;
    size_t ca_der_len = 0, ca_pub_len = 0, attest_len = 0, sig_len = 0;
    X509 *ca = NULL, *ekc = NULL;
    struct tc_ak *vm_ak = NULL;
    int rc;
    memset(id, 0, sizeof(*id));
    tc_reason_clear(why);
    json_t *jca = json_object_get(j, "vtpm_ca");
    if (b64_get(j, "ek_pub", TC_STORE_KEY_MAX, &id->ek_pub, &id->ek_pub_len) ||
        b64_get(j, "ek_cert", TC_VTPM_CA_MAX_CERT, &id->ek_cert, &id->ek_cert_len) ||
        (tcp && b64_get(j, "ak_pub", TC_STORE_KEY_MAX, &id->ak_pub, &id->ak_pub_len)) ||
        !json_is_object(jca) || b64_get(jca, "cert", TC_VTPM_CA_MAX_CERT, &ca_der, &ca_der_len) ||
        b64_get(jca, "public", TC_STORE_KEY_MAX, &ca_pub, &ca_pub_len) ||
        b64_get(jca, "attest", TC_CERTIFY_MAX_ATTEST, &attest, &attest_len) ||
        b64_get(jca, "signature", TC_QUOTE_MAX_SIG, &sig, &sig_len)) {
        rc = tc_fail(why, TC_ERR_FORMAT, "vm.agent_response", -1,
                     "the agent's answer lacks ek_pub, ek_cert, %svtpm_ca{cert,public,attest,"
                     "signature}",
                     tcp ? "ak_pub, " : "");
        goto out;
    }
    /* host AK -> vTPM CA key: TPM2_Certify over our nonce (the key is in that TPM, now). */
    if ((rc = tc_certify_verify(host_ak, attest, attest_len, sig, sig_len, ca_pub, ca_pub_len,
                                nonce, nonce_len, NULL, why)) != 0)
        goto out;
    /* vTPM CA key -> its certificate -> the vTPM EK certificate -> the vTPM EK. */
    if (tc_pki_cert_parse(ca_der, ca_der_len, &ca) != 0) {
        rc = tc_fail(why, TC_ERR_FORMAT, "vtpm_ca.format", -1, "vtpm_ca.cert is not a certificate");
        goto out;
    }
    if ((rc = tc_vtpm_ca_check_cert_key(ca, ca_pub, ca_pub_len, why)) != 0 ||
        (rc = tc_vtpm_ca_verify_ek_cert(id->ek_cert, id->ek_cert_len, ca, why)) != 0)
        goto out;
    if (tc_pki_cert_parse(id->ek_cert, id->ek_cert_len, &ekc) != 0) {
        rc = tc_fail(why, TC_ERR_FORMAT, "vm.ek_cert", -1, "ek_cert is not a certificate");
        goto out;
    }
    TPM2B_PUBLIC ekp;
    if ((rc = coord_ek_check(id->ek_pub, id->ek_pub_len, ekc, "vm", &ekp, why)) != 0)
        goto out;
    if (!tcp) /* A QEMU guest owns its TPM: its AK is the guest's business. */
        goto out;
    if ((rc = coord_keys_check(&ekp, id->ak_pub, id->ak_pub_len, "vm", &vm_ak, why)) != 0)
        goto out;
    const uint8_t *name;
    size_t name_len;
    if ((rc = tc_ak_name(vm_ak, &name, &name_len)) != 0 || !(id->ak_name = malloc(name_len))) {
        rc = tc_fail(why, TC_ERR_ALLOC, "vm.ak", -1, "cannot keep the AK name");
        goto out;
    }
    memcpy(id->ak_name, name, name_len);
    id->ak_name_len = name_len;
out:
    free(ca_der);
    free(ca_pub);
    free(attest);
    free(sig);
    X509_free(ca);
    X509_free(ekc);
    tc_ak_free(vm_ak);
    if (rc)
        coord_vm_identity_release(id);
    return rc;
}

void coord_vm_identity_release(struct coord_vm_identity *id)
{
    if (!id)
        return;
    free(id->ek_pub);
    free(id->ek_cert);
    free(id->ak_pub);
    free(id->ak_name);
    memset(id, 0, sizeof(*id));
}

/* Wraps a fresh secret to the VM's EK for op->ak_name (MakeCredential), keeps its hash and sends
 * the blob to {agent}/v1/vms/{id}/activate as stage: only the TPM holding both keys unwraps it.
 * Shared by the vTPM's activation (step 3) and the guest's (G2). */
static int send_credential(struct vm_op *op, enum vm_stage stage, struct tc_reason *why)
{
    struct tc_credential_blob blob;
    uint8_t secret[32];
    int rc;
    memset(&blob, 0, sizeof(blob));
    if (RAND_bytes(secret, sizeof(secret)) != 1) {
        rc = tc_fail(why, TC_ERR_CRYPTO, "vm.random", -1, "RAND_bytes failed");
        goto out;
    }
    if ((rc = tc_make_credential(op->ek_pub, op->ek_pub_len, op->ak_name, op->ak_name_len, secret,
                                 sizeof(secret), &blob)) != 0 ||
        (rc = tc_store_secret_hash(secret, sizeof(secret), op->secret_hash)) != 0) {
        tc_fail(why, rc, "vm.make_credential", -1, "cannot wrap a credential to the vTPM EK");
        goto out;
    }
    char *idb = coord_b64_encode(blob.id_object, blob.id_object_len);
    char *esb = coord_b64_encode(blob.secret, blob.secret_len);
    char path[TC_STORE_ID_MAX + 64];
    snprintf(path, sizeof(path), "/v1/vms/%s/activate", op->vm_id);
    op->stage = stage;
    rc = idb && esb ? agent_call(op, "POST", path,
                                 json_pack("{s:s, s:s}", "id_object", idb, "encrypted_secret", esb))
                    : TC_ERR_ALLOC;
    free(idb);
    free(esb);
    if (rc)
        tc_fail(why, rc, "vm.agent", -1, "cannot send the activation request");
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(&blob, sizeof(blob));
    return rc;
}

/* Step 2: the agent's answer to POST /v1/vms. Returns the HTTP status to fail with (0: the
 * activation request went out, or nothing is left to do in qemu mode). */
static unsigned vm_created(struct vm_op *op, json_t *j, struct tc_reason *why)
{
    struct coord *c = op->c;
    struct tc_ak *host_ak = NULL;
    struct coord_vm_identity id;
    unsigned status = 502;
    int rc;
    bool tcp = strcmp(op->mode, "tcp") == 0;
    memset(&id, 0, sizeof(id));
    const char *cp = coord_json_str(j, "ctrl_path", sizeof(op->ctrl_path) - 1, NULL);
    snprintf(op->ctrl_path, sizeof(op->ctrl_path), "%s", cp ? cp : "");
    const char *dn = coord_json_str(j, "domain", sizeof(op->domain) - 1, NULL);
    snprintf(op->domain, sizeof(op->domain), "%s", dn ? dn : "");
    const char *ch = coord_json_str(j, "channel_path", sizeof(op->channel_path) - 1, NULL);
    snprintf(op->channel_path, sizeof(op->channel_path), "%s", ch ? ch : "");
    /* The host must still be trusted, and its AK is what vouches for the CA key. */
    struct vm_op tmp;
    memset(&tmp, 0, sizeof(tmp));
    if ((rc = load_host(c, op->host, &tmp, &host_ak, true, &status, why)) != 0)
        goto out;
    if ((rc = coord_vm_verify_answer(j, host_ak, op->nonce, sizeof(op->nonce), tcp, &id, why)) !=
        0) {
        status = rc == TC_ERR_FORMAT && strcmp(why->check, "vm.agent_response") == 0 ? 502 : 403;
        goto out;
    }
    op->ek_pub = id.ek_pub;
    op->ek_pub_len = id.ek_pub_len;
    op->ek_cert = id.ek_cert;
    op->ek_cert_len = id.ek_cert_len;
    op->ak_pub = id.ak_pub;
    op->ak_pub_len = id.ak_pub_len;
    op->ak_name = id.ak_name;
    op->ak_name_len = id.ak_name_len;
    memset(&id, 0, sizeof(id)); /* now op's */
    if (!tcp) {
        status = 0;
        goto out;
    }
    status = 500;
    if ((rc = send_credential(op, VM_ACTIVATE, why)) != 0) {
        op->stage = VM_CREATE;
        goto out;
    }
    status = 0;
out:
    coord_vm_identity_release(&id);
    tc_ak_free(host_ak);
    return status;
}

/* Records the VM (its identity passed every check). */
static unsigned vm_record(struct vm_op *op, struct tc_reason *why)
{
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    snprintf(n.id, sizeof(n.id), "%s", op->vm_id);
    n.state = TC_NODE_ENROLLED;
    n.is_vm = true;
    snprintf(n.host, sizeof(n.host), "%s", op->host);
    snprintf(n.tenant, sizeof(n.tenant), "%s", op->tenant);
    snprintf(n.group_name, sizeof(n.group_name), "tenant:%.64s", op->tenant);
    n.ek_pub = (struct tc_store_blob){op->ek_pub, op->ek_pub_len};
    n.ek_cert = (struct tc_store_blob){op->ek_cert, op->ek_cert_len};
    n.ak_pub = (struct tc_store_blob){op->ak_pub, op->ak_pub_len};
    n.ak_name = (struct tc_store_blob){op->ak_name, op->ak_name_len};
    int rc = tc_store_node_create(op->c->store, &n);
    if (rc == TC_ERR_MISMATCH) {
        tc_fail(why, rc, "vm.exists", -1, "%s exists already", op->vm_id);
        return 409;
    }
    if (rc) {
        tc_fail(why, rc, "store", -1, "cannot record the VM (%s)", tc_strerror(rc));
        return 500;
    }
    coord_engine_node_upsert(op->c, op->vm_id);
    LOG_INFO("vm %s enrolled on %s for tenant %s (%s mode)", op->vm_id, op->host, op->tenant,
             op->mode);
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "vm_id", op->vm_id, "node", op->host, "tenant",
                  op->tenant, "mode", op->mode, "state", tc_node_state_name(n.state));
    if (j && op->ctrl_path[0])
        json_object_set_new(j, "ctrl_path", json_string(op->ctrl_path));
    if (j && op->domain[0])
        json_object_set_new(j, "domain", json_string(op->domain));
    if (j && op->channel_path[0])
        json_object_set_new(j, "channel_path", json_string(op->channel_path));
    finish_json(op, 201, j);
    return 0;
}

static unsigned vm_activated(struct vm_op *op, json_t *j, struct tc_reason *why)
{
    uint8_t *secret = NULL;
    size_t len = 0;
    unsigned status;
    if (b64_get(j, "secret", 64, &secret, &len) != 0) {
        tc_fail(why, TC_ERR_FORMAT, "vm.agent_response", -1, "the answer lacks a secret");
        return 502;
    }
    bool ok = tc_store_secret_matches(op->secret_hash, secret, len);
    OPENSSL_cleanse(secret, len);
    free(secret);
    if (!ok) {
        tc_fail(why, TC_ERR_MISMATCH, "vm.activation", -1,
                "the vTPM could not unwrap the credential: its AK and EK are not one TPM's");
        return 403;
    }
    status = vm_record(op, why);
    return status;
}

/* A forwarded start/stop/delete succeeded: reflect it in the store. */
static void vm_forwarded(struct vm_op *op)
{
    struct coord *c = op->c;
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    int rc = 0;
    if (strcmp(op->action, "delete") == 0) {
        if ((rc = tc_store_node_delete(c->store, op->vm_id)) == 0 || rc == TC_ERR_NOT_FOUND) {
            coord_engine_node_remove(c, op->vm_id);
            LOG_INFO("vm %s deleted", op->vm_id);
            finish_json(op, 200, json_pack("{s:s, s:b}", "vm_id", op->vm_id, "deleted", 1));
            return;
        }
    } else {
        for (int attempt = 0; attempt < 3; attempt++) {
            tc_store_node_release(&n);
            if ((rc = tc_store_node_get(c->store, op->vm_id, &n)) != 0)
                break;
            if (strcmp(op->action, "stop") == 0) {
                n.state = TC_NODE_UNREACHABLE;
                tc_fail(&n.reason, TC_ERR_IO, "vm.stopped", -1, "the VM was stopped");
            } else {
                n.state = TC_NODE_ENROLLED; /* trusted again after its next good round */
                tc_reason_clear(&n.reason);
            }
            n.missed = 0;
            if ((rc = tc_store_node_update(c->store, &n)) != TC_ERR_MISMATCH)
                break;
        }
        if (rc == 0) {
            coord_engine_node_upsert(c, op->vm_id);
            LOG_INFO("vm %s: %s", op->vm_id, op->action);
            finish_json(op, 200, coord_node_json(c, &n, false));
            tc_store_node_release(&n);
            return;
        }
    }
    tc_store_node_release(&n);
    finish_error(op, 500, "store", "the agent did %s the VM but the store failed: %s", op->action,
                 tc_strerror(rc));
}

static void agent_done(void *arg, int status, long http_code, const uint8_t *body, size_t len)
{
    struct vm_op *op = arg;
    struct coord *c = op->c;
    struct tc_reason why;
    tc_reason_clear(&why);
    pthread_mutex_lock(&c->lock);
    if (op->stage == VM_GUEST_HELLO || op->stage == VM_GUEST_ACTIVATE) {
        guest_done(op, status, http_code, body, len);
        pthread_mutex_unlock(&c->lock);
        return;
    }
    if (op->stage == VM_CLEANUP) {
        if (status != 0 || http_code / 100 != 2)
            LOG_WARN("vm %s: the host did not remove the refused vTPM (%s, HTTP %ld)", op->vm_id,
                     status ? tc_strerror(status) : "answered", http_code);
        pthread_mutex_unlock(&c->lock);
        op_free(op);
        return;
    }
    json_t *j = NULL;
    if (status == 0 && len > 0)
        j = coord_json_parse(body, len, VM_ANSWER_MAX, &why);
    if (status != 0 || http_code / 100 != 2 || !json_is_object(j)) {
        /* The agent's own refusal keeps its status and check (vtpm.rollback, vm.exists...). */
        const char *chk = j ? coord_json_str(j, "check", 47, NULL) : NULL;
        const char *err = j ? coord_json_str(j, "error", 400, NULL) : NULL;
        unsigned st = status != 0                           ? 502
                      : http_code >= 400 && http_code < 500 ? (unsigned)http_code
                                                            : 502;
        finish_error(op, st, chk ? chk : "vm.agent", "host %s: %s", op->host,
                     err      ? err
                     : status ? tc_strerror(status)
                              : "unexpected answer");
        json_decref(j);
        /* A refused activation, or a creation whose answer never came (it may still complete
         * on the host): the host may hold a vTPM nobody will use, so ask it to remove it. */
        bool orphan = op->stage == VM_ACTIVATE || (op->stage == VM_CREATE && status != 0);
        pthread_mutex_unlock(&c->lock);
        if (orphan)
            cleanup_vm(op);
        else
            op_free(op); /* nothing was created, or the agent refused for its own reason */
        return;
    }
    unsigned fail = 0;
    bool created = false;
    switch (op->stage) {
    case VM_CREATE:
        created = true;
        fail = vm_created(op, j, &why);
        if (fail == 0 && op->stage == VM_CREATE) /* qemu mode: no activation */
            fail = vm_record(op, &why);
        break;
    case VM_ACTIVATE:
        created = true;
        fail = vm_activated(op, j, &why);
        break;
    case VM_FORWARD:
        vm_forwarded(op);
        break;
    case VM_CLEANUP:
    case VM_GUEST_HELLO:
    case VM_GUEST_ACTIVATE:
        break;
    }
    json_decref(j);
    if (fail) {
        finish_reason(op, fail, &why);
        if (created) {
            cleanup_vm(op); /* takes op */
            op = NULL;
        }
    } else if (op->stage == VM_ACTIVATE && op->d) {
        op = NULL; /* the activation request is in flight and owns op */
    }
    pthread_mutex_unlock(&c->lock);
    op_free(op);
}

/* ---- guest AK enrollment (libvirt guests) ------------------------------------------------------
 */

/* Records a failed attempt on the VM (unless it says the same already) and tells the engine. */
static void guest_failed(struct vm_op *op, enum tc_node_state state, const char *check,
                         const char *detail, bool no_channel)
{
    struct coord *c = op->c;
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    if (!no_channel) {
        for (int attempt = 0; attempt < 3; attempt++) {
            tc_store_node_release(&n);
            if (tc_store_node_get(c->store, op->vm_id, &n) != 0 || n.ak_pub.data != NULL ||
                (n.state == TC_NODE_UNREACHABLE && strcmp(n.reason.check, "vm.stopped") == 0))
                break; /* gone, enrolled meanwhile, or stopped: nothing to say */
            if (n.state == state && strcmp(n.reason.check, check) == 0)
                break;
            LOG_WARN("vm %s: guest not enrolled: %s: %s", op->vm_id, check, detail);
            n.state = state;
            tc_fail(&n.reason, state == TC_NODE_UNREACHABLE ? TC_ERR_IO : TC_ERR_POLICY, check, -1,
                    "guest agent: %s", detail);
            int rc = tc_store_node_update(c->store, &n);
            if (rc == 0)
                coord_engine_node_upsert(c, op->vm_id);
            if (rc != TC_ERR_MISMATCH)
                break;
        }
        tc_store_node_release(&n);
    }
    coord_engine_guest_enrolled(c, op->vm_id, false, no_channel);
}

/* The agent's refusal of a guest step: its check decides the VM's state. */
static void guest_refused(struct vm_op *op, int status, long http_code, json_t *j)
{
    const char *chk = j ? coord_json_str(j, "check", 47, NULL) : NULL;
    const char *err = j ? coord_json_str(j, "error", 300, NULL) : NULL;
    char check[48];
    snprintf(check, sizeof(check), "%s", chk ? chk : "vm.agent");
    bool absent = status != 0 || http_code == 503 || strcmp(check, "guest.connect") == 0 ||
                  strcmp(check, "guest.deadline") == 0 || strcmp(check, "guest.closed") == 0;
    if (http_code == 404 && strcmp(check, "vm.no_guest_channel") == 0) {
        LOG_INFO("vm %s: no guest channel on %s: its guest enrolls no AK", op->vm_id, op->host);
        guest_failed(op, TC_NODE_ENROLLED, check, "", true);
        return;
    }
    guest_failed(op, absent ? TC_NODE_UNREACHABLE : TC_NODE_UNTRUSTED, check,
                 err      ? err
                 : status ? tc_strerror(status)
                          : "unexpected answer",
                 false);
}

/* G1 answered: check the AK, wrap the credential, send it. 0 when G2 is in flight. */
static int guest_hello(struct vm_op *op, json_t *j, struct tc_reason *why)
{
    struct tc_ak *ak = NULL;
    TPM2B_PUBLIC ekp;
    int rc;
    if (b64_get(j, "ak_pub", TC_STORE_KEY_MAX, &op->ak_pub, &op->ak_pub_len) != 0) {
        rc = tc_fail(why, TC_ERR_FORMAT, "guest.payload", -1, "the guest named no AK");
        goto out;
    }
    if ((rc = coord_ek_check(op->ek_pub, op->ek_pub_len, NULL, "vm", &ekp, why)) != 0 ||
        (rc = coord_keys_check(&ekp, op->ak_pub, op->ak_pub_len, "vm", &ak, why)) != 0)
        goto out;
    const uint8_t *name;
    size_t name_len;
    if ((rc = tc_ak_name(ak, &name, &name_len)) != 0 || !(op->ak_name = malloc(name_len))) {
        rc = tc_fail(why, TC_ERR_ALLOC, "vm.ak", -1, "cannot keep the AK name");
        goto out;
    }
    memcpy(op->ak_name, name, name_len);
    op->ak_name_len = name_len;
    rc = send_credential(op, VM_GUEST_ACTIVATE, why);
out:
    tc_ak_free(ak);
    return rc;
}

/* G2 answered: the secret proves the AK; record it. */
static int guest_activated(struct vm_op *op, json_t *j, struct tc_reason *why)
{
    struct coord *c = op->c;
    uint8_t *secret = NULL;
    size_t len = 0;
    if (b64_get(j, "secret", 64, &secret, &len) != 0)
        return tc_fail(why, TC_ERR_FORMAT, "vm.agent_response", -1, "the answer lacks a secret");
    bool ok = tc_store_secret_matches(op->secret_hash, secret, len);
    OPENSSL_cleanse(secret, len);
    free(secret);
    if (!ok)
        return tc_fail(why, TC_ERR_MISMATCH, "vm.activation", -1,
                       "the guest could not unwrap the credential: its AK and the VM's EK are "
                       "not one TPM's");
    struct tc_store_blob pub = {op->ak_pub, op->ak_pub_len}, name = {op->ak_name, op->ak_name_len};
    int rc = tc_store_node_set_ak(c->store, op->vm_id, &pub, &name);
    if (rc == TC_ERR_MISMATCH)
        rc = 0; /* enrolled meanwhile */
    /* The VM's state said why it was not attested yet: from now on its rounds say. */
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    for (int attempt = 0; rc == 0 && attempt < 3; attempt++) {
        tc_store_node_release(&n);
        if (tc_store_node_get(c->store, op->vm_id, &n) != 0 ||
            (n.state == TC_NODE_UNREACHABLE && strcmp(n.reason.check, "vm.stopped") == 0) ||
            n.state == TC_NODE_ENROLLED)
            break;
        n.state = TC_NODE_ENROLLED; /* trusted after its first good round */
        tc_reason_clear(&n.reason);
        if (tc_store_node_update(c->store, &n) != TC_ERR_MISMATCH)
            break;
    }
    tc_store_node_release(&n);
    if (rc)
        return tc_fail(why, rc, "store", -1, "cannot record the guest's AK (%s)", tc_strerror(rc));
    LOG_INFO("vm %s: guest AK enrolled (credential activated by the guest's vTPM)", op->vm_id);
    coord_engine_node_upsert(c, op->vm_id);
    coord_engine_guest_enrolled(c, op->vm_id, true, false);
    return 0;
}

/* From agent_done (c->lock held): the two guest stages. Takes op unless G2 went out. */
static void guest_done(struct vm_op *op, int status, long http_code, const uint8_t *body,
                       size_t len)
{
    struct tc_reason why;
    tc_reason_clear(&why);
    json_t *j = NULL;
    if (status == 0 && len > 0)
        j = coord_json_parse(body, len, VM_ANSWER_MAX, &why);
    if (status != 0 || http_code / 100 != 2 || !json_is_object(j)) {
        guest_refused(op, status, http_code, j);
        json_decref(j);
        op_free(op);
        return;
    }
    int rc;
    if (op->stage == VM_GUEST_HELLO) {
        if ((rc = guest_hello(op, j, &why)) == 0) {
            json_decref(j);
            return; /* G2 owns op */
        }
    } else {
        rc = guest_activated(op, j, &why);
    }
    if (rc)
        guest_failed(op, TC_NODE_UNTRUSTED, why.check, why.detail, false);
    json_decref(j);
    op_free(op);
}

int coord_vm_guest_enroll(struct coord *c, const char *vm_id)
{
    struct tc_store_node n;
    struct tc_reason why;
    unsigned status = 0;
    memset(&n, 0, sizeof(n));
    tc_reason_clear(&why);
    struct vm_op *op = calloc(1, sizeof(*op));
    int rc = op ? tc_store_node_get(c->store, vm_id, &n) : TC_ERR_ALLOC;
    if (rc)
        goto out;
    if (!n.is_vm || n.ak_pub.data != NULL || n.ek_pub.data == NULL) {
        rc = TC_ERR_INVALID_ARG;
        goto out;
    }
    op->c = c;
    op->stage = VM_GUEST_HELLO;
    snprintf(op->vm_id, sizeof(op->vm_id), "%s", n.id);
    snprintf(op->tenant, sizeof(op->tenant), "%s", n.tenant);
    snprintf(op->mode, sizeof(op->mode), "qemu");
    if (!(op->ek_pub = malloc(n.ek_pub.len))) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    memcpy(op->ek_pub, n.ek_pub.data, n.ek_pub.len);
    op->ek_pub_len = n.ek_pub.len;
    /* The host must be trusted now: its agent relays the credential. */
    if ((rc = load_host(c, n.host, op, NULL, true, &status, &why)) != 0)
        goto out;
    char path[TC_STORE_ID_MAX + 64];
    snprintf(path, sizeof(path), "/v1/vms/%s/guest", op->vm_id);
    if ((rc = agent_call(op, "POST", path, json_object())) != 0)
        goto out;
    LOG_DEBUG("vm %s: asking its guest for its AK", op->vm_id);
    op = NULL; /* the request in flight owns it */
out:
    tc_store_node_release(&n);
    op_free(op);
    return rc;
}

/* ---- routes ---------------------------------------------------------------------------------- */

static void reply(struct tc_http_response *resp, unsigned status, json_t *j)
{
    if (!j || tc_http_response_json(resp, status, j) != 0)
        coord_reply_error(resp, 500, "internal", "out of memory");
    json_decref(j);
}

static void vm_create(struct coord *c, const struct tc_http_request *req,
                      struct tc_http_response *resp)
{
    struct tc_reason why;
    json_t *body = coord_json_parse(req->body, req->body_len, (size_t)c->cfg->max_body, &why);
    struct vm_op *op = NULL;
    if (!body) {
        coord_reply_error(resp, 400, why.check, "%s", why.detail);
        return;
    }
    size_t il = 0, nl = 0, tl = 0, ml = 0;
    const char *id = coord_json_str(body, "vm_id", 256, &il);
    const char *node = coord_json_str(body, "node", 256, &nl);
    const char *tenant = coord_json_str(body, "tenant", 256, &tl);
    const char *mode = coord_json_str(body, "mode", 16, &ml);
    if (!id || !coord_valid_node_id(id, il) || !node || !coord_valid_node_id(node, nl) || !tenant ||
        !coord_valid_node_id(tenant, tl)) {
        coord_reply_error(resp, 400, "request.vm",
                          "vm_id, node and tenant are required, each [A-Za-z0-9._-]{1,64}");
        goto out;
    }
    if (json_object_get(body, "mode") &&
        (!mode || (strcmp(mode, "tcp") != 0 && strcmp(mode, "qemu") != 0))) {
        coord_reply_error(resp, 400, "request.mode", "mode is \"tcp\" or \"qemu\"");
        goto out;
    }
    /* A guest definition (the agent boots it through libvirt): a qemu-mode vTPM. */
    struct tc_vm_guest guest;
    json_t *jg = json_object_get(body, "guest");
    if (jg != NULL && tc_vm_guest_from_json(jg, &guest, &why) != 0) {
        coord_reply_error(resp, 400, why.check, "%s", why.detail);
        goto out;
    }
    if (jg != NULL && mode != NULL && strcmp(mode, "qemu") != 0) {
        coord_reply_error(resp, 400, "request.mode",
                          "a VM with a guest definition is in qemu mode");
        goto out;
    }
    struct tc_store_node existing;
    memset(&existing, 0, sizeof(existing));
    int rc = tc_store_node_get(c->store, id, &existing);
    tc_store_node_release(&existing);
    if (rc == 0) {
        coord_reply_error(resp, 409, "vm.exists", "%s is already a node or VM", id);
        goto out;
    }
    if (!(op = calloc(1, sizeof(*op)))) {
        coord_reply_error(resp, 500, "internal", "out of memory");
        goto out;
    }
    op->c = c;
    op->stage = VM_CREATE;
    snprintf(op->vm_id, sizeof(op->vm_id), "%s", id);
    snprintf(op->tenant, sizeof(op->tenant), "%s", tenant);
    snprintf(op->mode, sizeof(op->mode), "%s", mode ? mode : jg ? "qemu" : "tcp");
    if (jg != NULL && (op->guest = tc_vm_guest_to_json(&guest)) == NULL) {
        coord_reply_error(resp, 500, "internal", "out of memory");
        goto out;
    }
    unsigned status = 500;
    if ((rc = load_host(c, node, op, NULL, true, &status, &why)) != 0) {
        coord_reply_error(resp, status, why.check, "%s", why.detail);
        goto out;
    }
    char nonce_hex[65];
    if (RAND_bytes(op->nonce, sizeof(op->nonce)) != 1) {
        coord_reply_error(resp, 500, "vm.random", "RAND_bytes failed");
        goto out;
    }
    tc_hex_encode(op->nonce, sizeof(op->nonce), nonce_hex);
    if (!(op->d = tc_http_defer(req))) {
        coord_reply_error(resp, 503, "busy", "cannot hold the request");
        goto out;
    }
    json_t *call =
        json_pack("{s:s, s:s, s:s}", "vm_id", op->vm_id, "nonce", nonce_hex, "mode", op->mode);
    if (call && op->guest && json_object_set(call, "guest", op->guest) != 0) {
        json_decref(call);
        call = NULL;
    }
    rc = call ? agent_call(op, "POST", "/v1/vms", call) : TC_ERR_ALLOC;
    if (rc == TC_ERR_ALLOC) {
        finish_error(op, 500, "internal", "out of memory");
        goto out;
    }
    if (rc) {
        finish_error(op, 502, "vm.agent", "cannot reach node %s: %s", node, tc_strerror(rc));
        goto out;
    }
    op = NULL; /* owned by the request in flight */
out:
    op_free(op);
    json_decref(body);
}

/* The VM, if the caller may see it: operators see all, a tenant only its own (others are 404,
 * so a tenant cannot even learn which ids exist). */
static int vm_get_visible(struct coord *c, const struct tc_http_request *req, const char *id,
                          struct tc_store_node *n, struct tc_http_response *resp)
{
    const char *tenant = coord_peer_tenant(req);
    int rc = tc_store_node_get(c->store, id, n);
    if (rc == 0 && (!n->is_vm || (tenant && strcmp(n->tenant, tenant) != 0)))
        rc = TC_ERR_NOT_FOUND;
    if (rc == TC_ERR_NOT_FOUND)
        coord_reply_error(resp, 404, "vm.unknown", "no VM %s", id);
    else if (rc)
        coord_reply_error(resp, 500, "store", "cannot read VM %s", id);
    return rc;
}

struct list_ctx {
    struct coord *c;
    json_t *arr;
    const char *tenant, *node;
};

static int list_cb(void *arg, const struct tc_store_node *n)
{
    struct list_ctx *x = arg;
    if (!n->is_vm || (x->tenant && strcmp(n->tenant, x->tenant) != 0) ||
        (x->node && strcmp(n->host, x->node) != 0))
        return 0;
    return json_array_append_new(x->arr, coord_node_json(x->c, n, false)) == 0 ? 0 : TC_ERR_ALLOC;
}

static void vm_list(struct coord *c, const struct tc_http_request *req,
                    struct tc_http_response *resp)
{
    const char *mine = coord_peer_tenant(req);
    const char *want = tc_http_query(req, "tenant");
    if (mine && want && strcmp(mine, want) != 0) {
        reply(resp, 200, json_pack("{s:[]}", "vms")); /* nothing of another tenant is visible */
        return;
    }
    struct list_ctx x = {c, json_array(), mine ? mine : want, tc_http_query(req, "node")};
    int rc = x.arr ? tc_store_node_list(c->store, list_cb, &x) : TC_ERR_ALLOC;
    if (rc) {
        json_decref(x.arr);
        coord_reply_error(resp, 500, "store", "cannot list VMs");
        return;
    }
    /* Only while verdicts are not durable; tenants learn that, not the platform's counters. */
    json_t *st = c->health.error || c->health.unrecorded ? coord_store_health_json(c) : NULL;
    static const char *const counters[] = {"unrecorded_rounds", "late_rounds", "dropped_rounds",
                                           "outages", "webhook_outcomes_unrecorded"};
    for (size_t i = 0; st && mine && i < sizeof(counters) / sizeof(counters[0]); i++)
        json_object_del(st, counters[i]);
    json_t *j = json_pack("{s:o}", "vms", x.arr);
    if (j && st)
        json_object_set_new(j, "store", st);
    else
        json_decref(st);
    reply(resp, 200, j);
}

static void vm_forward(struct coord *c, const struct tc_http_request *req, const char *id,
                       const char *action, struct tc_http_response *resp)
{
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    struct vm_op *op = NULL;
    struct tc_reason why;
    if (vm_get_visible(c, req, id, &n, resp) != 0)
        goto out;
    if (!(op = calloc(1, sizeof(*op)))) {
        coord_reply_error(resp, 500, "internal", "out of memory");
        goto out;
    }
    op->c = c;
    op->stage = VM_FORWARD;
    snprintf(op->action, sizeof(op->action), "%s", action);
    snprintf(op->vm_id, sizeof(op->vm_id), "%s", id);
    /* Starting needs a trusted host (keys are released only there); stopping and deleting
     * only need the host's address. */
    unsigned status = 500;
    int rc;
    if ((rc = load_host(c, n.host, op, NULL, strcmp(action, "start") == 0, &status, &why)) != 0) {
        coord_reply_error(resp, status, why.check, "%s", why.detail);
        goto out;
    }
    char path[TC_STORE_ID_MAX + 64];
    if (strcmp(action, "delete") == 0)
        snprintf(path, sizeof(path), "/v1/vms/%s", id);
    else
        snprintf(path, sizeof(path), "/v1/vms/%s/%s", id, action);
    if (!(op->d = tc_http_defer(req))) {
        coord_reply_error(resp, 503, "busy", "cannot hold the request");
        goto out;
    }
    /* start {"force": true} (operators only): accept a vTPM state the host never saw stopped
     * cleanly (host crash). Never overrides a rollback or a failed unseal. */
    json_t *fwd = NULL;
    if (strcmp(action, "start") == 0) {
        struct tc_reason jwhy;
        json_t *in = req->body_len ? coord_json_parse(req->body, req->body_len, 4096, &jwhy) : NULL;
        bool force = in && json_is_true(json_object_get(in, "force"));
        json_decref(in);
        if (force && !coord_peer_operator(req)) {
            finish_error(op, 403, "auth.operator", "only operators force a start");
            goto out;
        }
        fwd = force ? json_pack("{s:b}", "force", 1) : json_object();
    } else if (strcmp(action, "stop") == 0) {
        fwd = json_object();
    }
    rc = agent_call(op, strcmp(action, "delete") == 0 ? "DELETE" : "POST", path, fwd);
    if (rc) {
        finish_error(op, 502, "vm.agent", "cannot reach node %s: %s", n.host, tc_strerror(rc));
        goto out;
    }
    op = NULL;
out:
    op_free(op);
    tc_store_node_release(&n);
}

/* A tenant's copy of a VM's evidence: without the host's PCR values (docs/protocol.md, "VM
 * evidence" says what the host quote itself still shows). Takes ev; NULL when out of memory. */
static json_t *evidence_for_tenant(json_t *ev)
{
    json_t *t = json_copy(ev), *h = json_copy(json_object_get(ev, "host"));
    json_decref(ev);
    if (!t || !h) {
        json_decref(t);
        json_decref(h);
        return NULL;
    }
    /* Absent: nothing to withhold. */
    json_object_del(h, "pcrs");
    if (json_object_set_new(t, "host", h) != 0) { /* steals h either way */
        json_decref(t);
        return NULL;
    }
    return t;
}

static void h_vms(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    struct coord *c = arg;
    bool op = coord_peer_operator(req);
    const char *tenant = coord_peer_tenant(req);
    if (!op && !tenant) {
        coord_reply_error(resp, 403, "auth.vms", "operators and tenants only");
        return;
    }
    if (req->body_len > (size_t)c->cfg->max_body) {
        coord_reply_error(resp, 413, "json.size", "body above %lld bytes", c->cfg->max_body);
        return;
    }
    pthread_mutex_lock(&c->lock);
    if (strcmp(req->path, "/v1/vms") == 0) {
        if (strcmp(req->method, "GET") == 0)
            vm_list(c, req, resp);
        else if (strcmp(req->method, "POST") == 0 && op)
            vm_create(c, req, resp);
        else if (strcmp(req->method, "POST") == 0)
            coord_reply_error(resp, 403, "auth.operator", "only operators create VMs");
        else
            coord_reply_error(resp, 405, "request.method", "GET or POST");
        goto out;
    }
    const char *rest = req->path + strlen("/v1/vms/");
    const char *slash = strchr(rest, '/');
    size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *sub = slash ? slash + 1 : "";
    if (!coord_valid_node_id(rest, idlen)) {
        coord_reply_error(resp, 400, "request.vm_id", "VM ids match [A-Za-z0-9._-]{1,64}");
        goto out;
    }
    char id[COORD_NODE_ID_MAX + 1];
    memcpy(id, rest, idlen);
    id[idlen] = '\0';
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    if (!*sub && strcmp(req->method, "GET") == 0) {
        if (vm_get_visible(c, req, id, &n, resp) == 0) {
            json_t *j = coord_node_json(c, &n, true);
            struct tc_store_node h;
            memset(&h, 0, sizeof(h));
            if (j && tc_store_node_get(c->store, n.host, &h) == 0) {
                enum tc_node_state hs = h.state, appraised;
                uint32_t unrec;
                coord_engine_view(c, h.id, &hs, &h.reason, &appraised, &unrec);
                json_object_set_new(j, "host_state", json_string(tc_node_state_name(hs)));
            }
            tc_store_node_release(&h);
            /* The vTPM's EK certificate as the coordinator verified it (DER, base64), so a
             * tenant can compare it with what its guest reads from NV 0x01c0000a. */
            char *ekc = n.ek_cert.data ? coord_b64_encode(n.ek_cert.data, n.ek_cert.len) : NULL;
            if (j && ekc)
                json_object_set_new(j, "ek_cert", json_string(ekc));
            free(ekc);
            reply(resp, 200, j);
        }
    } else if (strcmp(sub, "evidence") == 0 && strcmp(req->method, "GET") == 0) {
        if (vm_get_visible(c, req, id, &n, resp) == 0) {
            json_t *ev = coord_vm_evidence(c, id);
            if (ev && !op)
                ev = evidence_for_tenant(ev);
            if (ev)
                reply(resp, 200, ev);
            else
                coord_reply_error(resp, 404, "vm.no_evidence",
                                  "no quoted round of %s yet (stopped, or not attested yet)", id);
        }
    } else if (strcmp(sub, "history") == 0 && strcmp(req->method, "GET") == 0) {
        if (vm_get_visible(c, req, id, &n, resp) == 0)
            coord_history_reply(c, id, req, resp);
    } else if (!*sub && strcmp(req->method, "DELETE") == 0) {
        if (op)
            vm_forward(c, req, id, "delete", resp);
        else
            coord_reply_error(resp, 403, "auth.operator", "only operators delete VMs");
    } else if ((strcmp(sub, "start") == 0 || strcmp(sub, "stop") == 0) &&
               strcmp(req->method, "POST") == 0) {
        vm_forward(c, req, id, sub, resp);
    } else {
        coord_reply_error(resp, 404, "request.route", "no such VM route");
    }
    tc_store_node_release(&n);
out:
    pthread_mutex_unlock(&c->lock);
}

int coord_vm_register(struct coord *c)
{
    int rc;
    if ((rc = tc_httpd_route(c->httpd, NULL, "/v1/vms", h_vms, c, 0)) != 0 ||
        (rc = tc_httpd_route(c->httpd, NULL, "/v1/vms/", h_vms, c, 0)) != 0)
        return rc;
    return 0;
}
