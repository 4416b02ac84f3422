/* SPDX-License-Identifier: Apache-2.0 */
#define LOGMODULE "lab"
#include "trustcloud/lab.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

int tc_lab_boot(struct tc_tpm *tpm, const struct tc_evlog *log, size_t *count,
                struct tc_reason *why)
{
    if (count)
        *count = 0;
    struct tc_pcr_set active;
    int rc = tc_tpm_active_banks(tpm, &active);
    if (rc)
        return tc_fail(why, rc, "lab.boot", -1, "cannot read the TPM's active banks");
    size_t n = 0;
    for (size_t i = 0; i < log->nevents; i++) {
        const struct tc_evlog_event *ev = &log->events[i];
        if (ev->type == TC_EV_NO_ACTION)
            continue;
        const struct tc_hash_alg *algs[TC_MAX_BANKS];
        const uint8_t *digests[TC_MAX_BANKS];
        size_t nd = 0;
        for (size_t b = 0; b < active.nbanks; b++) {
            const uint8_t *d = tc_evlog_event_digest(ev, active.bank[b].alg);
            if (d == NULL)
                continue;
            algs[nd] = active.bank[b].alg;
            digests[nd++] = d;
        }
        if (nd == 0)
            continue;
        if ((rc = tc_tpm_pcr_extend_multi(tpm, ev->pcr, nd, algs, digests)) != 0)
            return tc_fail(why, rc, "lab.boot", (long)i, "extending PCR %u failed", ev->pcr);
        n++;
    }
    if (count)
        *count = n;
    return 0;
}

/* Appends one entry (list first, then PCRs, as the kernel does). */
static int ima_add(struct tc_tpm *tpm, const char *path, bool truncate, const char *file_path,
                   const uint8_t *digest, const struct tc_hash_alg *file_alg, struct tc_reason *why)
{
    int rc;
    uint8_t *old = NULL, *tdata = NULL;
    size_t old_len = 0, tlen = 0;
    struct tc_ima_log *log = NULL;
    struct tc_buf text;
    struct tc_pcr_set active;
    tc_buf_init(&text, TC_IMA_MAX_FILE);

    if ((rc = tc_ima_log_new(tc_hash_by_name("sha1"), &log)) != 0)
        goto out;
    if ((rc = tc_ima_template_data_ng(file_alg, digest, file_path, NULL, 0, false, &tdata,
                                      &tlen)) != 0 ||
        (rc = tc_ima_log_append(log, TC_IMA_PCR, "ima-ng", tdata, tlen, false, why)) != 0)
        goto out;
    if ((rc = tc_ima_log_to_ascii(log, 0, 1, &text)) != 0)
        goto out;
    if (!truncate) {
        rc = tc_file_read(path, TC_IMA_MAX_FILE, &old, &old_len);
        if (rc && rc != TC_ERR_IO)
            goto out;
        rc = 0;
    }
    {
        struct tc_buf all;
        tc_buf_init(&all, TC_IMA_MAX_FILE);
        if ((old_len && (rc = tc_buf_put(&all, old, old_len)) != 0) ||
            (rc = tc_buf_put(&all, text.data, text.len)) != 0 ||
            (rc = tc_file_write(path, all.data, all.len, 0644)) != 0) {
            tc_buf_release(&all);
            tc_fail(why, rc, "lab.ima", -1, "cannot write the measurement list");
            goto out;
        }
        tc_buf_release(&all);
    }
    if ((rc = tc_tpm_active_banks(tpm, &active)) != 0)
        goto out;
    for (size_t b = 0; b < active.nbanks; b++) {
        uint8_t d[TC_MAX_DIGEST];
        if ((rc = tc_ima_entry_bank_digest(log, &log->entries[0], active.bank[b].alg, 0, d)) != 0 ||
            (rc = tc_tpm_pcr_extend(tpm, TC_IMA_PCR, active.bank[b].alg, d)) != 0) {
            tc_fail(why, rc, "lab.ima", -1, "extending PCR 10 (%s) failed",
                    active.bank[b].alg->name);
            goto out;
        }
    }
out:
    tc_buf_release(&text);
    tc_ima_log_free(log);
    free(tdata);
    free(old);
    return rc;
}

int tc_lab_ima_start(struct tc_tpm *tpm, const char *path, const struct tc_hash_alg *file_alg,
                     struct tc_reason *why)
{
    if (file_alg == NULL)
        file_alg = tc_hash_by_name("sha256");
    struct tc_pcr_set sel, pcrs;
    tc_pcrs_init(&sel);
    struct tc_pcr_bank *b = tc_pcrs_bank(&sel, file_alg, true);
    if (b == NULL)
        return TC_ERR_INTERNAL;
    b->mask = 0x3ff; /* PCRs 0-9 */
    int rc = tc_tpm_pcr_read(tpm, &sel, &pcrs);
    if (rc)
        return tc_fail(why, rc, "lab.ima", -1, "cannot read PCRs 0-9 (%s)", file_alg->name);
    uint8_t agg[TC_MAX_DIGEST];
    if ((rc = tc_ima_boot_aggregate(&pcrs, file_alg, agg)) != 0)
        return tc_fail(why, rc, "lab.ima", -1, "boot_aggregate failed");
    return ima_add(tpm, path, true, "boot_aggregate", agg, file_alg, why);
}

int tc_lab_ima_measure(struct tc_tpm *tpm, const char *path, const char *file_path,
                       const uint8_t *content, size_t content_len,
                       const struct tc_hash_alg *file_alg, struct tc_reason *why)
{
    if (file_alg == NULL)
        file_alg = tc_hash_by_name("sha256");
    uint8_t d[TC_MAX_DIGEST];
    int rc = tc_hash(file_alg, content, content_len, d);
    if (rc)
        return rc;
    return ima_add(tpm, path, false, file_path, d, file_alg, why);
}

/* ---- simulated guests ------------------------------------------------------------------- */

static int guest_path(const char *vm_dir, const char *name, char *buf, size_t cap,
                      struct tc_reason *why)
{
    int n = snprintf(buf, cap, "%s/%s", vm_dir, name);
    if (n < 0 || (size_t)n >= cap)
        return tc_fail(why, TC_ERR_TOO_LARGE, "lab.guest", -1, "VM directory path too long");
    return 0;
}

int tc_lab_guest_boot(struct tc_tpm *vtpm, const char *vm_dir, const struct tc_evlog *eventlog,
                      const uint8_t *eventlog_raw, size_t eventlog_len, size_t *count,
                      struct tc_reason *why)
{
    char evpath[4096], imapath[4096];
    int rc;

    if (count)
        *count = 0;
    if (vtpm == NULL || vm_dir == NULL || (eventlog != NULL && eventlog_raw == NULL))
        return tc_fail(why, TC_ERR_INVALID_ARG, "lab.guest", -1, "missing argument");
    if ((rc = guest_path(vm_dir, TC_LAB_GUEST_EVENTLOG, evpath, sizeof(evpath), why)) != 0 ||
        (rc = guest_path(vm_dir, TC_LAB_GUEST_IMA, imapath, sizeof(imapath), why)) != 0)
        return rc;
    if (eventlog != NULL) {
        if ((rc = tc_lab_boot(vtpm, eventlog, count, why)) != 0)
            return rc;
        /* Written after the PCRs: the log never claims more than the vTPM holds. */
        if ((rc = tc_file_write(evpath, eventlog_raw, eventlog_len, 0644)) != 0)
            return tc_fail(why, rc, "lab.guest", -1, "cannot write %s", evpath);
    } else if (unlink(evpath) != 0 && errno != ENOENT) {
        /* A log from an earlier boot would not match this one's PCRs. */
        return tc_fail(why, TC_ERR_IO, "lab.guest", -1, "cannot remove %s", evpath);
    }
    return tc_lab_ima_start(vtpm, imapath, NULL, why);
}

int tc_lab_guest_measure(struct tc_tpm *vtpm, const char *vm_dir, const char *file_path,
                         const uint8_t *content, size_t content_len, struct tc_reason *why)
{
    char imapath[4096];
    int rc;

    if (vtpm == NULL || vm_dir == NULL || file_path == NULL || (content == NULL && content_len))
        return tc_fail(why, TC_ERR_INVALID_ARG, "lab.guest", -1, "missing argument");
    if ((rc = guest_path(vm_dir, TC_LAB_GUEST_IMA, imapath, sizeof(imapath), why)) != 0)
        return rc;
    if (access(imapath, F_OK) != 0)
        return tc_fail(why, TC_ERR_NOT_FOUND, "lab.guest", -1,
                       "%s does not exist: boot the guest first (lab guest-boot)", imapath);
    return tc_lab_ima_measure(vtpm, imapath, file_path, content ? content : (const uint8_t *)"",
                              content_len, NULL, why);
}
