/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lab: what a simulated node does to its (software) TPM so that its
 * evidence is real. A UEFI event log captured on a real machine is replayed
 * into the TPM's PCRs as firmware would have measured it, and an IMA
 * measurement list grows the way the kernel grows it (entry appended to the
 * list first, then extended into PCR 10 of every active bank).
 * Only for tests, demos and benchmarks; never part of a production path.
 */
#ifndef TRUSTCLOUD_LAB_H
#define TRUSTCLOUD_LAB_H

#include <stddef.h>
#include <stdint.h>

#include "trustcloud/eventlog.h"
#include "trustcloud/hashalg.h"
#include "trustcloud/ima.h"
#include "trustcloud/reason.h"
#include "trustcloud/tpm.h"

/* Extends every measured event of log into the TPM, in every bank the TPM has active and the
 * event carries a digest for. Returns the number of events extended in *count (may be NULL). */
int tc_lab_boot(struct tc_tpm *tpm, const struct tc_evlog *log, size_t *count,
                struct tc_reason *why);

/* Starts an IMA log at path (ASCII format, overwritten) with the boot_aggregate entry computed
 * from the TPM's current PCRs, and extends it into PCR 10. file_alg: the ima-ng digest algorithm
 * (sha256 when NULL). */
int tc_lab_ima_start(struct tc_tpm *tpm, const char *path, const struct tc_hash_alg *file_alg,
                     struct tc_reason *why);

/* Measures a file the way IMA does (ima-ng entry: file_alg digest of content, file_path) and
 * appends it to the ASCII log at path, then extends PCR 10 of every active bank. */
int tc_lab_ima_measure(struct tc_tpm *tpm, const char *path, const char *file_path,
                       const uint8_t *content, size_t content_len,
                       const struct tc_hash_alg *file_alg, struct tc_reason *why);

/*
 * Simulated guests. A VM's "guest" runs on its vTPM the way a node runs on its TPM, and leaves
 * in its VM directory (<vm_dir>/<vm_id>/) what a guest agent would ship to the host: the guest
 * IMA list (ASCII) and, when its firmware produced one, the guest UEFI event log. The agent reads
 * both from there (docs/protocol.md, "Batch attestation").
 */
#define TC_LAB_GUEST_IMA "guest_ima"
#define TC_LAB_GUEST_EVENTLOG "guest_eventlog"

/* Boots the guest: when eventlog is not NULL its events are extended into the vTPM (as
 * tc_lab_boot) and its bytes (eventlog_raw, the file it was parsed from) are written to
 * vm_dir/guest_eventlog, else a stale guest_eventlog is removed; then the guest IMA list
 * vm_dir/guest_ima starts over with boot_aggregate (sha256 ima-ng), extended into PCR 10.
 * *count (may be NULL) receives the number of boot events extended. vm_dir must exist. */
int tc_lab_guest_boot(struct tc_tpm *vtpm, const char *vm_dir, const struct tc_evlog *eventlog,
                      const uint8_t *eventlog_raw, size_t eventlog_len, size_t *count,
                      struct tc_reason *why);

/* One more guest measurement (sha256 ima-ng of content, file_path) appended to
 * vm_dir/guest_ima and extended into the vTPM's PCR 10 (every active bank). The list must have
 * been started by tc_lab_guest_boot (TC_ERR_NOT_FOUND otherwise, so that a forgotten boot does not
 * produce a list without boot_aggregate). */
int tc_lab_guest_measure(struct tc_tpm *vtpm, const char *vm_dir, const char *file_path,
                         const uint8_t *content, size_t content_len, struct tc_reason *why);

#endif
