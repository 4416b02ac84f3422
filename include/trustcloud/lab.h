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

#endif
