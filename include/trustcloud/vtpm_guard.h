/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host's guard over its vTPMs' state: sealed state keys and rollback refusal.
 *
 * State keys. Every vTPM's swtpm state is encrypted with its own random AES-256 key
 * (tc_vtpm_config.state_key). On disk the key exists only as <vm_dir>/state.seal, sealed in the
 * host TPM (trustcloud/tpm_seal.h) under the host EK to the host's boot PCRs (default
 * sha256:0,1,2,3,4,5,6,7). A VM directory copied to another host, or a host booted into another
 * state, cannot unseal it ("vtpm.unseal").
 *
 * Rollback. swtpm's state is a file the host can copy and put back; restoring an older copy would
 * give the VM's TPM an older NV, older counters, keys it has since deleted. The guard keeps a
 * registry, <guard_dir>/vtpm-registry: per vm id, a "running" flag and the SHA-256 of the state
 * files as they were at the VM's last clean stop. A start whose state is not that one is refused
 * ("vtpm.rollback"). The registry itself could be rolled back, so:
 *  - it carries an HMAC-SHA256 over its content, with a 32-byte MAC key sealed like the state keys
 *    (<guard_dir>/registry.seal): edits are refused ("vtpm.registry_mac");
 *  - it carries a version equal to the value of a monotonic NV counter in the host TPM
 *    (TC_TPM_NV_VTPM_COUNTER) after its last write. Every write first increments the counter, then
 *    writes the registry (atomically, mode 0600) with the new value. On open, a registry whose
 *    version is not the counter's value (an older copy put back) is refused
 *    ("vtpm.registry_rollback").
 *   Trade-off: a crash between the increment and the rename leaves a registry one version behind,
 *   which is indistinguishable from a rolled-back one and is refused too; recovering means
 *   removing both guard files, which forgets every VM (they then need to be recreated or
 *   re-registered by an operator). Writing first and incrementing after would make that crash
 *   recoverable, but would let an attacker who kills the agent at the right moment keep the
 *   previous registry valid.
 *
 * Unclean stops. A VM whose registry entry still says "running" when it is started was not
 * stopped through the guard (the agent or the host crashed while it ran): there is no recorded
 * hash to compare its state with. tc_vtpm_guard_start refuses it ("vtpm.unclean") unless
 * TC_VTPM_GUARD_FORCE is given, in which case the state is accepted as it is. Refusing by default
 * costs availability after a crash (an operator must decide), but an attacker who can kill the
 * agent and swtpm and put an older state copy in place would otherwise get the rollback the
 * registry exists to prevent.
 *
 * The guard assumes empty owner and endorsement hierarchy auth (as the rest of src/tpm does).
 * The host TPM and EK handed to tc_vtpm_guard_open stay the caller's and must stay open/loaded
 * while the guard is used. A guard is used by one thread (the agent's worker); it is not
 * thread-safe, and two guards (processes) must not share one guard_dir.
 *
 * Errors: TC_ERR_INVALID_ARG (bad vm id or arguments; created for a known vm), TC_ERR_NOT_FOUND
 * (unknown vm, missing file), TC_ERR_IO, TC_ERR_TPM, TC_ERR_ALLOC, TC_ERR_TOO_LARGE (caps), the
 * parse errors of damaged files, and, with a struct tc_reason filled where one is passed:
 * TC_ERR_ROLLBACK, TC_ERR_SIGNATURE (MAC), TC_ERR_POLICY, TC_ERR_MISMATCH.
 */
#ifndef TRUSTCLOUD_VTPM_GUARD_H
#define TRUSTCLOUD_VTPM_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trustcloud/pcrs.h"
#include "trustcloud/reason.h"
#include "trustcloud/tpm.h"
#include "trustcloud/vtpm.h"

#define TC_VTPM_GUARD_MAX_VMS 4096 /* registry entries (the deep quote's limit per node) */
#define TC_VTPM_GUARD_FORCE 0x1u   /* tc_vtpm_guard_start: accept the state after an unclean stop */

struct tc_vtpm_guard;

/*
 * Opens the guard of guard_dir (an existing directory, the agent's state dir). tpm: the host
 * TPM; ek: the loaded host EK; sel: the sealing PCRs (NULL: sha256:0-7), used for keys sealed
 * from now on (existing blobs carry their own selection).
 * First use (neither guard file exists): defines the NV counter, creates and seals the MAC key
 * and writes an empty registry. Otherwise unseals the MAC key and verifies the registry:
 * "vtpm.registry_unseal" (the key's code from tc_tpm_unseal: host PCRs changed, another host),
 * "vtpm.registry_mac" (TC_ERR_SIGNATURE), "vtpm.registry_rollback" (TC_ERR_ROLLBACK: version
 * differs from the counter), "vtpm.registry" (a missing or damaged file). *out (free with
 * tc_vtpm_guard_free) is set on success only.
 */
int tc_vtpm_guard_open(struct tc_tpm *tpm, const struct tc_tpm_key *ek, const char *guard_dir,
                       const struct tc_pcr_set *sel, struct tc_vtpm_guard **out,
                       struct tc_reason *why);
/* Wipes the MAC key and frees g. NULL is a no-op. */
void tc_vtpm_guard_free(struct tc_vtpm_guard *g);

/* Draws a fresh state key (RAND_bytes) for a new VM: pass it as tc_vtpm_config.state_key to
 * tc_vtpm_create, then to tc_vtpm_guard_created. The caller wipes it (OPENSSL_cleanse). */
int tc_vtpm_guard_new_key(struct tc_vtpm_guard *g, uint8_t key[TC_VTPM_KEY_LEN]);

/*
 * A vTPM was just created (tc_vtpm_create made vm_dir and runs swtpm with key): seals key into
 * <vm_dir>/state.seal (mode 0600, atomic) and records vm_id as running with no hash yet.
 * (Sealing cannot come before tc_vtpm_create, which insists on creating vm_dir itself.)
 * TC_ERR_INVALID_ARG when vm_id is already registered (forget it first), TC_ERR_TOO_LARGE past
 * TC_VTPM_GUARD_MAX_VMS. On failure the caller deletes the vTPM.
 */
int tc_vtpm_guard_created(struct tc_vtpm_guard *g, const char *vm_id, const char *vm_dir,
                          const uint8_t key[TC_VTPM_KEY_LEN]);

/*
 * Before starting the stopped vTPM vm_id whose directory is vm_dir: the entry must exist
 * ("vtpm.unknown", TC_ERR_NOT_FOUND), must not be marked running ("vtpm.unclean", TC_ERR_POLICY,
 * unless flags has TC_VTPM_GUARD_FORCE), the SHA-256 of <vm_dir>/state/ (regular files only,
 * "vtpm.state" otherwise) must equal the recorded one ("vtpm.rollback", TC_ERR_ROLLBACK); then
 * <vm_dir>/state.seal is unsealed into key ("vtpm.unseal" with tc_tpm_unseal's code: copied
 * from another host, host PCRs changed, damaged) and the VM is marked running. key is written
 * on success only; the caller wipes it after tc_vtpm_start.
 */
int tc_vtpm_guard_start(struct tc_vtpm_guard *g, const char *vm_id, const char *vm_dir,
                        unsigned flags, uint8_t key[TC_VTPM_KEY_LEN], struct tc_reason *why);

/* After a clean stop (tc_vtpm_stop returned, swtpm has exited): records the SHA-256 of
 * <vm_dir>/state/ and clears "running". TC_ERR_NOT_FOUND for an unknown vm. */
int tc_vtpm_guard_stopped(struct tc_vtpm_guard *g, const char *vm_id, const char *vm_dir);

/* Removes vm_id's entry (after tc_vtpm_delete). An unknown vm is fine. */
int tc_vtpm_guard_forget(struct tc_vtpm_guard *g, const char *vm_id);

/* What the registry says about vm_id: TC_ERR_NOT_FOUND when unknown. has_hash is false until the
 * first clean stop. Either output may be NULL. */
int tc_vtpm_guard_status(const struct tc_vtpm_guard *g, const char *vm_id, bool *running,
                         bool *has_hash);

/* The registry's version (= the NV counter's value after the last write). */
uint64_t tc_vtpm_guard_version(const struct tc_vtpm_guard *g);

#endif
