/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vTPM instances: one swtpm (TPM 2.0, libtpms) process per VM, with its state under
 * <base_dir>/<vm_id>/ and, optionally, encrypted with a per-VM AES-256 key that is handed to
 * swtpm through an inherited pipe (never written to disk).
 *
 * Two modes:
 *  - TC_VTPM_TCP: TPM and control channels on free 127.0.0.1 ports (control = TPM port + 1, as
 *    the tpm2-tss "swtpm" TCTI expects); the TPM is started up (Startup(CLEAR)) so a client can
 *    use it at once (tc_vtpm_tcti). Used by the lab and the agent, and for provisioning.
 *  - TC_VTPM_QEMU: only a control channel on the UnixIO socket <base_dir>/<vm_id>/ctrl.sock for
 *    QEMU's `-chardev socket,path=... -tpmdev emulator`; QEMU initialises the TPM.
 *
 * Provisioning (over the TPM port; a QEMU-mode vTPM is provisioned by a short TCP-mode run on
 * its state before it starts in QEMU mode): creates the ECC NIST P-256 EK (TCG low-range template),
 * makes it persistent at TC_TPM_EK_HANDLE_ECC (0x81010002) and writes a DER EK certificate to
 * TC_TPM_NV_EK_CERT_ECC (0x01c0000a) with platform-created attributes, as a TPM manufacturer
 * does; the certificate comes from the caller (cfg->issue_ek_cert or tc_vtpm_provision).
 *
 * Processes: the manager starts swtpm in the foreground as its child (so it can reap it); a
 * vTPM outlives its struct tc_vtpm (tc_vtpm_free does not stop it) and can be stopped from
 * another process through the pid file <base_dir>/<vm_id>/swtpm.pid (tc_vtpm_open).
 * A struct tc_vtpm is not thread-safe; distinct ones may be used from distinct threads.
 *
 * Errors: TC_ERR_INVALID_ARG (bad vm id, mode, missing dir, already exists / running),
 * TC_ERR_IO (directories, sockets, fork, swtpm exited or never answered: for example a wrong
 * state key), TC_ERR_NOT_FOUND (no such vTPM), TC_ERR_TPM (provisioning), TC_ERR_MISMATCH (the
 * issued certificate is not for the EK), whatever the issue callback returns, TC_ERR_ALLOC.
 */
#ifndef TRUSTCLOUD_VTPM_H
#define TRUSTCLOUD_VTPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>

#include "trustcloud/tpm.h"

#define TC_VTPM_ID_MAX 64      /* vm ids: 1..64 of [A-Za-z0-9._-], not "." or ".." */
#define TC_VTPM_KEY_LEN 32     /* AES-256 state key */
#define TC_VTPM_MAX_LIST 65536 /* most entries tc_vtpm_list returns */

enum tc_vtpm_mode { TC_VTPM_TCP = 0, TC_VTPM_QEMU = 1 };

struct tc_vtpm;

/* Issues the EK certificate for the vTPM of vm_id: ek_public is the EK's marshaled TPM2B_PUBLIC
 * (tc_vtpm_ek_pubkey converts it). Sets *der to a malloc'd DER certificate (the manager frees
 * it) and returns 0, or returns a negative TC_ERR_*, which fails tc_vtpm_create. */
typedef int (*tc_vtpm_issue_fn)(void *arg, const char *vm_id, const uint8_t *ek_public,
                                size_t ek_public_len, uint8_t **der, size_t *der_len);

struct tc_vtpm_config {
    const char *base_dir; /* existing directory holding one subdirectory per VM */
    const char *vm_id;
    enum tc_vtpm_mode mode;
    const uint8_t *state_key; /* TC_VTPM_KEY_LEN bytes (copied), or NULL: state in clear */
    const char *swtpm;        /* swtpm binary; NULL = "swtpm" from PATH */
    unsigned ready_ms;        /* how long to wait for swtpm to answer; 0 = 5000 */
    /* TCP mode, optional: tc_vtpm_create provisions the EK and the certificate this returns. */
    tc_vtpm_issue_fn issue_ek_cert;
    void *issue_arg;
};

/* True when id is a valid vm id (see TC_VTPM_ID_MAX). */
bool tc_vtpm_id_valid(const char *id);

/* Creates <base_dir>/<vm_id>/ (mode 0700; TC_ERR_INVALID_ARG if it exists), starts swtpm on a
 * fresh state, waits until it answers on its control channel, and provisions it when
 * cfg->issue_ek_cert is set (in QEMU mode: provisions in TCP mode, stops, starts in QEMU mode). On
 * any failure the process is stopped and the directory removed. *out (free with tc_vtpm_free) is
 * set on success only. */
int tc_vtpm_create(const struct tc_vtpm_config *cfg, struct tc_vtpm **out);
/* A handle on an existing vTPM (TC_ERR_NOT_FOUND if its directory has no state), running or
 * not (its pid file tells); cfg->issue_ek_cert is ignored. Starts nothing. */
int tc_vtpm_open(const struct tc_vtpm_config *cfg, struct tc_vtpm **out);
/* Starts swtpm on the existing state (TC_ERR_INVALID_ARG if it runs already); a wrong state key
 * fails with TC_ERR_IO and leaves no process. In TCP mode new ports are chosen. */
int tc_vtpm_start(struct tc_vtpm *v);
/* Stops swtpm: SIGTERM (swtpm flushes its state and exits), up to 2 s, then SIGKILL; reaps it
 * and removes the pid file. A vTPM that is not running is fine. */
int tc_vtpm_stop(struct tc_vtpm *v);
/* Stops it and removes its whole directory (state, logs, sockets), then frees v. */
int tc_vtpm_delete(struct tc_vtpm *v);
/* What a tc_vtpm_create cut short (its process killed) may have left of cfg->vm_id under
 * cfg->base_dir, removed: stops the swtpm its pid file names (when that process is still a
 * swtpm: SIGTERM, then SIGKILL after 2 s), then removes the whole directory, with or without a
 * state in it. Also for any vTPM nobody holds a handle on. An absent directory is fine.
 * TC_ERR_IO when the directory cannot be removed. */
int tc_vtpm_purge(const struct tc_vtpm_config *cfg);
/* Frees the handle only; the process keeps running. NULL is a no-op. */
void tc_vtpm_free(struct tc_vtpm *v);

/* Writes the DER EK certificate into the running TCP-mode vTPM (TC_ERR_INVALID_ARG otherwise):
 * creates the ECC EK, makes it persistent at 0x81010002 (replacing what is there), checks that the
 * certificate's public key is the EK's (TC_ERR_MISMATCH, TC_ERR_FORMAT for bytes that are not a
 * certificate) and writes it to 0x01c0000a (replacing what is there). len at most
 * TC_TPM_EK_CERT_MAX. */
int tc_vtpm_provision(struct tc_vtpm *v, const uint8_t *ek_cert_der, size_t len);

bool tc_vtpm_running(const struct tc_vtpm *v);
pid_t tc_vtpm_pid(const struct tc_vtpm *v); /* 0 when not running */
const char *tc_vtpm_id(const struct tc_vtpm *v);
const char *tc_vtpm_dir(const struct tc_vtpm *v); /* <base_dir>/<vm_id> */
/* TCP mode while running: "swtpm:host=127.0.0.1,port=P" (control on P + 1); else NULL. */
const char *tc_vtpm_tcti(const struct tc_vtpm *v);
uint16_t tc_vtpm_port(const struct tc_vtpm *v); /* TCP mode while running, else 0 */
/* QEMU mode: the control socket path for `-chardev socket,path=`; else NULL. */
const char *tc_vtpm_ctrl_path(const struct tc_vtpm *v);
/* The EK's marshaled TPM2B_PUBLIC once provisioned by this handle (TC_ERR_NOT_FOUND before). */
int tc_vtpm_ek_public(const struct tc_vtpm *v, const uint8_t **pub, size_t *len);

/* The OpenSSL public key of an ECC P-256 or RSA EK's marshaled TPM2B_PUBLIC (consumed exactly).
 * *out (caller frees) is set on success only. TC_ERR_FORMAT, TC_ERR_TRAILING,
 * TC_ERR_UNSUPPORTED, TC_ERR_CRYPTO. */
int tc_vtpm_ek_pubkey(const uint8_t *tpm2b_public, size_t len, EVP_PKEY **out);

struct tc_vtpm_entry {
    char id[TC_VTPM_ID_MAX + 1];
    pid_t pid; /* 0 when not running */
};
/* The vTPMs under base_dir (subdirectories with a valid id and a state directory), sorted by
 * id. *out is malloc'd (caller frees; NULL when *n is 0). TC_ERR_IO if base_dir is unreadable,
 * TC_ERR_TOO_LARGE past TC_VTPM_MAX_LIST. */
int tc_vtpm_list(const char *base_dir, struct tc_vtpm_entry **out, size_t *n);

#endif
