/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Enrollment client (docs/protocol.md, "Enrollment: a node earns its identity"):
 *   1. POST /v1/enroll with the EK (and its certificate), the AK and a CSR for a fresh TLS key,
 *      without a client certificate, trusting only ca_file for the coordinator's certificate;
 *   2. TPM2_ActivateCredential on the returned blobs, then a quote of PCR sha256:0 over
 *      SHA-256(nonce || SHA-256(DER SPKI of the TLS key)), which ties the TLS key to the AK;
 *   3. POST /v1/enroll/{id}/activate; store the issued certificate.
 * The coordinator being unreachable is retried with exponential backoff; a refusal is final.
 */
#define LOGMODULE "agent"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "agent.h"
#include "trustcloud/buf.h"
#include "trustcloud/credential.h"
#include "trustcloud/error.h"
#include "trustcloud/httpc.h"
#include "trustcloud/log.h"
#include "trustcloud/pki.h"

#define ENROLL_MAX_ANSWER (256u * 1024)
#define ENROLL_MAX_ID 128

/* The result of one attempt. */
enum attempt { ATTEMPT_DONE, ATTEMPT_RETRY, ATTEMPT_FAILED };

int agent_binding_digest(const uint8_t *nonce, size_t nonce_len, const void *key, uint8_t out[32])
{
    unsigned char *der = NULL;
    uint8_t spki_hash[32];
    int rc = TC_ERR_CRYPTO;
    EVP_MD_CTX *md = NULL;

    int der_len = i2d_PUBKEY((EVP_PKEY *)key, &der);
    if (der_len <= 0)
        return TC_ERR_CRYPTO;
    if (EVP_Digest(der, (size_t)der_len, spki_hash, NULL, EVP_sha256(), NULL) != 1)
        goto out;
    if ((md = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, nonce, nonce_len) != 1 ||
        EVP_DigestUpdate(md, spki_hash, sizeof(spki_hash)) != 1 ||
        EVP_DigestFinal_ex(md, out, NULL) != 1)
        goto out;
    rc = 0;
out:
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    return rc;
}

/* Sleeps ms milliseconds in small steps, returning early when *stop is set. */
static void nap(long long ms, volatile int *stop)
{
    while (ms > 0 && !(stop && *stop)) {
        long long step = ms < 100 ? ms : 100;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

/* Printable copy of untrusted text for the log. */
static void printable(const char *in, char *out, size_t cap)
{
    size_t k = 0;
    for (; in && in[k] && k + 1 < cap; k++)
        out[k] = (in[k] >= 0x20 && in[k] < 0x7f) ? in[k] : '?';
    out[k] = 0;
}

/* Logs (and records in why) the coordinator's refusal: its "error" and "check". */
static int refused(const char *step, long code, const uint8_t *body, size_t len,
                   struct tc_reason *why)
{
    char err[200] = "", check[48] = "";
    json_t *j = json_loadb((const char *)body, len, 0, NULL);
    if (json_is_object(j)) {
        printable(json_string_value(json_object_get(j, "error")), err, sizeof(err));
        printable(json_string_value(json_object_get(j, "check")), check, sizeof(check));
    }
    json_decref(j);
    LOG_ERROR("the coordinator refused %s: HTTP %ld: %s%s%s%s", step, code,
              err[0] ? err : "(no reason given)", check[0] ? " (check " : "", check,
              check[0] ? ")" : "");
    return tc_fail(why, TC_ERR_POLICY, check[0] ? check : "enroll.refused", -1,
                   "coordinator refused %s: HTTP %ld: %s", step, code, err[0] ? err : "-");
}

/* POSTs a JSON body. Returns ATTEMPT_DONE with *answer (a JSON object) on 2xx, ATTEMPT_RETRY
 * when the coordinator could not be reached or answered 5xx, ATTEMPT_FAILED otherwise (*rc
 * set). */
static enum attempt post_json(const struct agent_config *cfg, const char *url, json_t *body,
                              const char *step, json_t **answer, int *rc, struct tc_reason *why)
{
    char detail[320] = "";
    /* The CA also signs every node's certificate: only the coordinator role will do. */
    struct tc_httpc_config hc = {.ca_file = cfg->ca_file,
                                 .max_body = ENROLL_MAX_ANSWER,
                                 .expect_peer = TC_TLS_EXPECT_COORDINATOR,
                                 .error_detail = detail,
                                 .error_detail_len = sizeof(detail)};
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    long code = 0;
    enum attempt res = ATTEMPT_FAILED;

    *answer = NULL;
    char *text = json_dumps(body, JSON_COMPACT);
    if (text == NULL) {
        *rc = TC_ERR_ALLOC;
        return ATTEMPT_FAILED;
    }
    int r = tc_httpc_request(&hc, "POST", url, "application/json", text, strlen(text), &code, &resp,
                             &resp_len);
    free(text);
    if (r == TC_ERR_SIGNATURE) {
        /* Retrying cannot help: the coordinator's certificate does not chain to ca_file. */
        LOG_ERROR("%s: not the coordinator (certificate not trusted by %s, names another host "
                  "or lacks the coordinator role): %s",
                  url, cfg->ca_file, detail[0] ? detail : "-");
        *rc = tc_fail(why, TC_ERR_SIGNATURE, "enroll.tls", -1, "not the coordinator: %s",
                      detail[0] ? detail : "certificate not trusted");
        goto out;
    }
    if (r != 0) {
        LOG_WARN("%s: coordinator unreachable (%s)", url, tc_strerror(r));
        *rc = tc_fail(why, TC_ERR_IO, "enroll.unreachable", -1, "coordinator unreachable");
        res = ATTEMPT_RETRY;
        goto out;
    }
    if (code >= 500) {
        LOG_WARN("%s: coordinator answered HTTP %ld, will retry", url, code);
        *rc = tc_fail(why, TC_ERR_IO, "enroll.unreachable", -1, "coordinator answered %ld", code);
        res = ATTEMPT_RETRY;
        goto out;
    }
    if (code < 200 || code > 299) {
        *rc = refused(step, code, resp, resp_len, why);
        goto out;
    }
    json_t *j = json_loadb((const char *)resp, resp_len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        *rc = tc_fail(why, TC_ERR_FORMAT, "enroll.answer", -1, "%s: answer is not a JSON object",
                      step);
        goto out;
    }
    *answer = j;
    *rc = 0;
    res = ATTEMPT_DONE;
out:
    free(resp);
    return res;
}

static int set_b64(json_t *o, const char *key, const uint8_t *data, size_t len)
{
    char *s = NULL;
    int rc = agent_b64_encode(data, len, &s);
    if (rc == 0 && json_object_set_new(o, key, json_string(s)) != 0)
        rc = TC_ERR_ALLOC;
    free(s);
    return rc;
}

/* A string field of the coordinator's answer, bounded. */
static const char *answer_string(json_t *j, const char *key, size_t max)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v))
        return NULL;
    return json_string_value(v);
}

static bool is_hex(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F')))
            return false;
    return true;
}

/* The TLS key: reused from state_dir, or generated and saved (0600) the first time. */
static int tls_key(const struct agent_config *cfg, EVP_PKEY **key)
{
    char path[4096];
    struct stat st;
    int rc;
    *key = NULL;
    if ((rc = agent_path(cfg->state_dir, AGENT_FILE_KEY, path, sizeof(path))) != 0)
        return rc;
    if (stat(path, &st) == 0) {
        if ((rc = tc_pki_key_load(path, key)) != 0)
            LOG_ERROR("%s: cannot load the TLS key (%s)", path, tc_strerror(rc));
        return rc;
    }
    if ((rc = tc_pki_key_generate(key)) != 0)
        return rc;
    if ((rc = tc_pki_key_save(path, *key)) != 0) {
        LOG_ERROR("%s: cannot save the TLS key (%s)", path, tc_strerror(rc));
        EVP_PKEY_free(*key);
        *key = NULL;
    }
    return rc;
}

/* True when state_dir holds a certificate for key (then the node is enrolled already). */
static bool have_certificate(const struct agent_config *cfg, EVP_PKEY *key)
{
    char path[4096];
    X509 *cert = NULL;
    EVP_PKEY *pub = NULL;
    bool ok = false;
    if (agent_path(cfg->state_dir, AGENT_FILE_CERT, path, sizeof(path)) != 0 ||
        access(path, F_OK) != 0)
        return false;
    if (tc_pki_cert_load(path, &cert) == 0 && tc_pki_cert_pubkey(cert, &pub) == 0 &&
        tc_pki_key_equal(pub, key) == 0)
        ok = true;
    else
        LOG_WARN("%s does not hold a certificate for the agent's TLS key: enrolling again", path);
    EVP_PKEY_free(pub);
    X509_free(cert);
    return ok;
}

/* Checks the issued certificate (our key, our CN) and stores it with the CA. */
static int store_certificate(const struct agent_config *cfg, EVP_PKEY *key, json_t *answer,
                             struct tc_reason *why)
{
    char path[4096], cn[256], want_cn[80];
    X509 *cert = NULL;
    EVP_PKEY *pub = NULL;
    int rc;
    const char *pem = answer_string(answer, "certificate", 64 * 1024);
    const char *ca = answer_string(answer, "ca", 64 * 1024);

    if (pem == NULL) {
        rc = tc_fail(why, TC_ERR_FORMAT, "enroll.answer", -1, "no certificate in the answer");
        goto out;
    }
    snprintf(want_cn, sizeof(want_cn), "node:%s", cfg->node_id);
    if (tc_pki_cert_parse((const uint8_t *)pem, strlen(pem), &cert) != 0 ||
        tc_pki_cert_pubkey(cert, &pub) != 0 || tc_pki_key_equal(pub, key) != 0 ||
        tc_pki_cert_cn(cert, cn, sizeof(cn)) != 0 || strcmp(cn, want_cn) != 0) {
        rc = tc_fail(why, TC_ERR_MISMATCH, "enroll.certificate", -1,
                     "the issued certificate is not for this node's TLS key and %s", want_cn);
        goto out;
    }
    if (ca != NULL) {
        X509 *cacert = NULL;
        if (tc_pki_cert_parse((const uint8_t *)ca, strlen(ca), &cacert) == 0 &&
            agent_path(cfg->state_dir, AGENT_FILE_CA, path, sizeof(path)) == 0)
            tc_file_write(path, ca, strlen(ca), 0644);
        X509_free(cacert);
    }
    if ((rc = agent_path(cfg->state_dir, AGENT_FILE_CERT, path, sizeof(path))) != 0 ||
        (rc = tc_file_write(path, pem, strlen(pem), 0644)) != 0) {
        rc = tc_fail(why, rc, "enroll.store", -1, "cannot write %s", path);
        goto out;
    }
    rc = 0;
out:
    EVP_PKEY_free(pub);
    X509_free(cert);
    return rc;
}

static enum attempt enroll_once(const struct agent_config *cfg, const char *base, EVP_PKEY *key,
                                const struct agent_identity *id, const char *csr,
                                struct agent_enroll_result *res, int *rc, struct tc_reason *why)
{
    json_t *req = NULL, *ans = NULL, *act = NULL, *ans2 = NULL, *q = NULL;
    struct tc_tpm_quote quote;
    struct tc_credential_blob blob;
    uint8_t nonce[AGENT_MAX_NONCE], secret[TC_CRED_MAX_CREDENTIAL], binding[32];
    size_t nonce_len, secret_len = 0;
    struct tc_pcr_set sel;
    char url[1024];
    enum attempt a = ATTEMPT_FAILED;

    memset(&quote, 0, sizeof(quote));
    memset(&blob, 0, sizeof(blob));
    *rc = TC_ERR_ALLOC;
    if ((req = json_object()) == NULL ||
        json_object_set_new(req, "node_id", json_string(cfg->node_id)) != 0 ||
        json_object_set_new(req, "csr", json_string(csr)) != 0 ||
        json_object_set_new(req, "agent_url", json_string(cfg->agent_url)) != 0 ||
        json_object_set_new(req, "group", json_string(cfg->group)) != 0)
        goto out;
    if ((*rc = set_b64(req, "ek_pub", id->ek_pub, id->ek_pub_len)) != 0 ||
        (*rc = set_b64(req, "ak_pub", id->ak_pub, id->ak_pub_len)) != 0)
        goto out;
    if (id->ek_cert != NULL)
        *rc = set_b64(req, "ek_cert", id->ek_cert, id->ek_cert_len);
    else
        *rc = json_object_set_new(req, "ek_cert", json_null()) == 0 ? 0 : TC_ERR_ALLOC;
    if (*rc != 0)
        goto out;

    snprintf(url, sizeof(url), "%s/v1/enroll", base);
    if ((a = post_json(cfg, url, req, "enrollment", &ans, rc, why)) != ATTEMPT_DONE)
        goto out;
    a = ATTEMPT_FAILED;

    const char *eid = answer_string(ans, "enrollment_id", ENROLL_MAX_ID);
    const char *ido = answer_string(ans, "id_object", 4 * TC_CRED_MAX_BLOB);
    const char *sec = answer_string(ans, "encrypted_secret", 4 * TC_CRED_MAX_SECRET);
    const char *nhex = answer_string(ans, "nonce", 2 * AGENT_MAX_NONCE);
    if (eid == NULL || !is_hex(eid) || ido == NULL || sec == NULL || nhex == NULL ||
        agent_b64_decode(ido, strlen(ido), blob.id_object, sizeof(blob.id_object),
                         &blob.id_object_len) != 0 ||
        agent_b64_decode(sec, strlen(sec), blob.secret, sizeof(blob.secret), &blob.secret_len) !=
            0 ||
        tc_hex_decode(nhex, strlen(nhex), nonce, sizeof(nonce), &nonce_len) != 0) {
        *rc = tc_fail(why, TC_ERR_FORMAT, "enroll.answer", -1,
                      "enrollment answer lacks or mangles enrollment_id, id_object, "
                      "encrypted_secret or nonce");
        goto out;
    }

    if ((*rc = agent_binding_digest(nonce, nonce_len, key, binding)) != 0 ||
        (*rc = tc_pcrs_parse_selection("sha256:0", &sel)) != 0)
        goto out;
    if ((*rc = agent_tpm_activate_and_quote(cfg, blob.id_object, blob.id_object_len, blob.secret,
                                            blob.secret_len, secret, sizeof(secret), &secret_len,
                                            &sel, binding, sizeof(binding), &quote)) != 0) {
        *rc = tc_fail(why, *rc, "enroll.activate", -1,
                      "TPM credential activation or quote failed (%s)", tc_strerror(*rc));
        goto out;
    }

    *rc = TC_ERR_ALLOC;
    if ((act = json_object()) == NULL || (q = json_object()) == NULL ||
        json_object_set_new(q, "pcrs", tc_pcrs_to_json(&quote.pcrs)) != 0)
        goto out;
    if ((*rc = set_b64(act, "secret", secret, secret_len)) != 0 ||
        (*rc = set_b64(q, "attest", quote.attest, quote.attest_len)) != 0 ||
        (*rc = set_b64(q, "signature", quote.sig, quote.sig_len)) != 0)
        goto out;
    *rc = TC_ERR_ALLOC;
    if (json_object_set(act, "quote", q) != 0)
        goto out;
    snprintf(url, sizeof(url), "%s/v1/enroll/%s/activate", base, eid);
    if ((a = post_json(cfg, url, act, "activation", &ans2, rc, why)) != ATTEMPT_DONE)
        goto out;
    a = ATTEMPT_FAILED;

    if ((*rc = store_certificate(cfg, key, ans2, why)) != 0)
        goto out;
    const char *state = answer_string(ans2, "state", 31);
    printable(state ? state : "enrolled", res->state, sizeof(res->state));
    LOG_INFO("enrolled as node %s (state %s)", cfg->node_id, res->state);
    a = ATTEMPT_DONE;
    *rc = 0;
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    /* The JSON copy of the secret is freed below; jansson does not wipe, but it is single-use
     * and already spent at this point. */
    json_decref(req);
    json_decref(ans);
    json_decref(act);
    json_decref(ans2);
    json_decref(q);
    tc_tpm_quote_release(&quote);
    return a;
}

int agent_enroll(const struct agent_config *cfg, volatile int *stop,
                 struct agent_enroll_result *res, struct tc_reason *why)
{
    EVP_PKEY *key = NULL;
    struct agent_identity id;
    char *csr = NULL, cn[80], base[600];
    int rc;

    memset(res, 0, sizeof(*res));
    memset(&id, 0, sizeof(id));
    tc_reason_clear(why);
    if (mkdir(cfg->state_dir, 0700) != 0 && errno != EEXIST) {
        LOG_ERROR("cannot create %s", cfg->state_dir);
        return tc_fail(why, TC_ERR_IO, "enroll.state_dir", -1, "cannot create the state dir");
    }
    if ((rc = tls_key(cfg, &key)) != 0) {
        tc_fail(why, rc, "enroll.tls_key", -1, "no TLS key");
        goto out;
    }
    if (have_certificate(cfg, key)) {
        res->already = true;
        LOG_INFO("already enrolled (certificate in %s)", cfg->state_dir);
        rc = 0;
        goto out;
    }
    if ((rc = agent_tpm_identity(cfg, &id)) != 0) {
        tc_fail(why, rc, "enroll.tpm", -1, "cannot read the TPM's EK and AK (%s)", tc_strerror(rc));
        goto out;
    }
    snprintf(cn, sizeof(cn), "node:%s", cfg->node_id);
    if ((rc = tc_pki_csr_create(key, cn, &csr)) != 0)
        goto out;
    snprintf(base, sizeof(base), "%s", cfg->coordinator_url);
    for (size_t n = strlen(base); n > 0 && base[n - 1] == '/'; n--)
        base[n - 1] = 0;

    long long wait = 500;
    for (long long attempt = 1;; attempt++) {
        enum attempt a = enroll_once(cfg, base, key, &id, csr, res, &rc, why);
        if (a != ATTEMPT_RETRY)
            break;
        if (cfg->enroll_attempts > 0 && attempt >= cfg->enroll_attempts) {
            LOG_ERROR("coordinator still unreachable after %lld attempts", attempt);
            break;
        }
        if (stop != NULL && *stop)
            break;
        LOG_INFO("retrying enrollment in %lld ms", wait);
        nap(wait, stop);
        if (stop != NULL && *stop)
            break;
        wait = wait * 2 > cfg->enroll_backoff_max ? cfg->enroll_backoff_max : wait * 2;
    }
out:
    free(csr);
    agent_identity_release(&id);
    EVP_PKEY_free(key);
    return rc;
}
