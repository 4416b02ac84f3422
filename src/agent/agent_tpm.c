/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TPM access for the agent. The connection is opened for one operation and closed again:
 * without a resource manager (swtpm, or /dev/tpm0) a TPM serves one client at a time, and the
 * node's own software (the kernel's IMA, a workload) must be able to extend PCRs between two
 * quotes. The EK is a primary key, recreated from the TPM's seed each time (deterministic);
 * the AK is loaded from its context file in state_dir.
 */
#define LOGMODULE "agent"
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/tpm_credential.h"

#define EK_CERT_MAX (16u * 1024)

void agent_test_hooks_from_env(struct agent_config *cfg)
{
    const char *hooks = getenv("TC_TEST_HOOKS");
    cfg->test_pause_at[0] = 0;
    if (hooks == NULL || strcmp(hooks, "1") != 0)
        return;
    const char *at = getenv("TC_TEST_PAUSE_AT");
    if (at == NULL || at[0] == 0 || strlen(at) >= sizeof(cfg->test_pause_at))
        return;
    memcpy(cfg->test_pause_at, at, strlen(at) + 1);
    LOG_WARN("TEST HOOKS ENABLED: the agent stops itself at step '%s'", cfg->test_pause_at);
}

void agent_test_point(const struct agent_config *cfg, const char *step)
{
    if (cfg->test_pause_at[0] == 0 || strcmp(cfg->test_pause_at, step) != 0)
        return;
    LOG_WARN("test hook: paused at %s (pid %d)", step, (int)getpid());
    raise(SIGSTOP);
}

int agent_tpm_clean(const char *tcti)
{
    struct tc_tpm *tpm = NULL;
    size_t n = 0;
    int rc;

    if (!tc_tpm_tcti_without_rm(tcti))
        return 0; /* a resource manager cleans up after its clients */
    if ((rc = tc_tpm_open(tcti, &tpm)) != 0) {
        LOG_ERROR("cannot open the TPM at '%s' to flush leftovers", tcti);
        return rc;
    }
    if ((rc = tc_tpm_flush_leftovers(tpm, &n)) != 0)
        LOG_ERROR("cannot flush every leftover in the TPM at '%s' (%s)", tcti, tc_strerror(rc));
    else if (n == 0)
        LOG_DEBUG("nothing left behind in the TPM at '%s'", tcti);
    tc_tpm_close(tpm);
    return rc;
}

void agent_tpm_close(struct tc_tpm *tpm, int rc)
{
    if (tpm != NULL && rc == TC_ERR_TPM) {
        size_t n = 0;
        int frc = tc_tpm_flush_leftovers(tpm, &n);
        if (frc != 0)
            LOG_ERROR("after a failed TPM operation: cannot flush leftovers (%s)",
                      tc_strerror(frc));
        else if (n > 0)
            LOG_WARN("after a failed TPM operation: %zu leftover handle(s) flushed; the next "
                     "attempt may succeed",
                     n);
    }
    tc_tpm_close(tpm);
}

void agent_identity_release(struct agent_identity *id)
{
    if (id == NULL)
        return;
    free(id->ek_cert);
    memset(id, 0, sizeof(*id));
}

/* The EK algorithm to use: configured, or (auto) remembered in state_dir, or chosen now from
 * the certificates the TPM holds (ECC P-256, then RSA-2048; ECC when it holds neither). */
static int ek_alg_resolve(const struct agent_config *cfg, struct tc_tpm *tpm, enum tc_key_alg *alg)
{
    if (cfg->ek_alg != AGENT_ALG_AUTO) {
        *alg = agent_key_alg(cfg->ek_alg);
        return 0;
    }
    char path[4096];
    uint8_t *saved = NULL;
    size_t len = 0;
    int rc = agent_path(cfg->state_dir, AGENT_FILE_EK_ALG, path, sizeof(path));
    if (rc)
        return rc;
    if (tc_file_read(path, 16, &saved, &len) == 0) {
        rc = 0;
        if (len >= 3 && memcmp(saved, "rsa", 3) == 0)
            *alg = TC_KEY_RSA_2048;
        else if (len >= 3 && memcmp(saved, "ecc", 3) == 0)
            *alg = TC_KEY_ECC_P256;
        else
            rc = TC_ERR_FORMAT;
        free(saved);
        if (rc)
            LOG_ERROR("%s is not 'ecc' or 'rsa'", path);
        return rc;
    }
    const enum tc_key_alg order[] = {TC_KEY_ECC_P256, TC_KEY_RSA_2048};
    *alg = TC_KEY_ECC_P256;
    for (size_t i = 0; i < 2; i++) {
        uint8_t *der = NULL;
        size_t der_len = 0;
        rc = tc_tpm_ek_cert_read(tpm, order[i], &der, &der_len);
        free(der);
        if (rc == 0) {
            *alg = order[i];
            break;
        }
        if (rc != TC_ERR_NOT_FOUND)
            return rc;
    }
    const char *name = *alg == TC_KEY_RSA_2048 ? "rsa\n" : "ecc\n";
    if ((rc = tc_file_write(path, name, 4, 0600)) != 0) {
        LOG_ERROR("cannot write %s", path);
        return rc;
    }
    LOG_INFO("ek_alg = auto: using the %s EK", *alg == TC_KEY_RSA_2048 ? "RSA-2048" : "ECC P-256");
    return 0;
}

/* Opens the TPM and loads EK and AK. create_ak: make (and save) the AK when there is no
 * context file yet. */
static int open_keys(const struct agent_config *cfg, bool create_ak, struct tc_tpm **tpm,
                     struct tc_tpm_key *ek, struct tc_tpm_key *ak)
{
    enum tc_key_alg ek_alg;
    char path[4096];
    struct stat st;
    int rc;

    *tpm = NULL;
    memset(ek, 0, sizeof(*ek));
    memset(ak, 0, sizeof(*ak));
    if ((rc = agent_path(cfg->state_dir, AGENT_FILE_AK, path, sizeof(path))) != 0)
        return rc;
    if ((rc = tc_tpm_open(cfg->tcti, tpm)) != 0) {
        LOG_ERROR("cannot open the TPM at '%s'", cfg->tcti);
        return rc;
    }
    if ((rc = ek_alg_resolve(cfg, *tpm, &ek_alg)) != 0)
        goto out;
    if ((rc = tc_tpm_ek_create(*tpm, ek_alg, ek)) != 0) {
        LOG_ERROR("cannot create the EK");
        goto out;
    }
    if (stat(path, &st) == 0 || !create_ak || errno != ENOENT) {
        if ((rc = tc_tpm_ak_load(*tpm, ek, path, ak)) != 0)
            LOG_ERROR("cannot load the AK from %s (%s)", path, tc_strerror(rc));
    } else {
        rc = tc_tpm_ak_create(*tpm, ek, agent_key_alg(cfg->ak_alg), TC_SIG_DEFAULT, path, ak);
        if (rc == 0)
            LOG_INFO("created a new AK in %s", path);
        else
            LOG_ERROR("cannot create the AK (%s)", tc_strerror(rc));
    }
out:
    if (rc != 0) {
        agent_tpm_close(*tpm, rc); /* flushes whatever was loaded */
        *tpm = NULL;
        memset(ek, 0, sizeof(*ek));
        memset(ak, 0, sizeof(*ak));
    }
    return rc;
}

/* rc: the operation's result (after a TPM failure, leftovers are flushed too). */
static void close_keys(struct tc_tpm *tpm, struct tc_tpm_key *ek, struct tc_tpm_key *ak, int rc)
{
    tc_tpm_key_release(tpm, ak);
    tc_tpm_key_release(tpm, ek);
    agent_tpm_close(tpm, rc);
}

int agent_tpm_identity(const struct agent_config *cfg, struct agent_identity *id)
{
    struct tc_tpm *tpm = NULL;
    struct tc_tpm_key ek, ak;
    int rc;

    memset(id, 0, sizeof(*id));
    if ((rc = open_keys(cfg, true, &tpm, &ek, &ak)) != 0)
        return rc;
    memcpy(id->ek_pub, ek.pub, ek.pub_len);
    id->ek_pub_len = ek.pub_len;
    memcpy(id->ak_pub, ak.pub, ak.pub_len);
    id->ak_pub_len = ak.pub_len;
    memcpy(id->ak_name, ak.name, ak.name_len);
    id->ak_name_len = ak.name_len;
    enum tc_key_alg ek_alg = ek.alg;
    rc = tc_tpm_ek_cert_read(tpm, ek_alg, &id->ek_cert, &id->ek_cert_len);
    if (rc == TC_ERR_NOT_FOUND) {
        /* The coordinator decides whether that is acceptable (allow_ek_without_cert). */
        LOG_WARN("the TPM holds no certificate for its %s EK",
                 ek_alg == TC_KEY_RSA_2048 ? "RSA" : "ECC P-256");
        rc = 0;
    } else if (rc == 0 && id->ek_cert_len > EK_CERT_MAX) {
        rc = TC_ERR_TOO_LARGE;
    }
    close_keys(tpm, &ek, &ak, rc);
    if (rc != 0)
        agent_identity_release(id);
    return rc;
}

int agent_tpm_activate_and_quote(const struct agent_config *cfg, const uint8_t *id_object,
                                 size_t id_object_len, const uint8_t *enc_secret,
                                 size_t enc_secret_len, uint8_t *secret, size_t secret_cap,
                                 size_t *secret_len, const struct tc_pcr_set *sel,
                                 const uint8_t *nonce, size_t nonce_len, struct tc_tpm_quote *quote)
{
    struct tc_tpm *tpm = NULL;
    struct tc_tpm_key ek, ak;
    int rc;

    *secret_len = 0;
    memset(quote, 0, sizeof(*quote));
    if ((rc = open_keys(cfg, false, &tpm, &ek, &ak)) != 0)
        return rc;
    if ((rc = tc_tpm_activate_credential(tpm, &ak, &ek, id_object, id_object_len, enc_secret,
                                         enc_secret_len, secret, secret_cap, secret_len)) != 0) {
        LOG_ERROR("credential activation failed (%s): the credential was not made for this "
                  "TPM's EK and AK",
                  tc_strerror(rc));
        goto out;
    }
    if ((rc = tc_tpm_quote(tpm, &ak, sel, nonce, nonce_len, quote)) != 0)
        LOG_ERROR("enrollment quote failed (%s)", tc_strerror(rc));
out:
    close_keys(tpm, &ek, &ak, rc);
    return rc;
}

int agent_tpm_quote(const struct agent_config *cfg, const struct tc_pcr_set *sel,
                    const uint8_t *nonce, size_t nonce_len, struct tc_tpm_quote *quote)
{
    struct tc_tpm *tpm = NULL;
    struct tc_tpm_key ek, ak;
    int rc;

    memset(quote, 0, sizeof(*quote));
    if ((rc = open_keys(cfg, false, &tpm, &ek, &ak)) != 0)
        return rc;
    if ((rc = tc_tpm_quote(tpm, &ak, sel, nonce, nonce_len, quote)) != 0)
        LOG_ERROR("quote failed (%s)", tc_strerror(rc));
    close_keys(tpm, &ek, &ak, rc);
    return rc;
}
