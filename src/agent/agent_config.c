/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's settings: one typed table ([agent] section), defaults, cross-field checks. */
#define LOGMODULE "agent"
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

static const char *const alg_choices[] = {"ecc", "rsa", NULL};
static const char *const ek_alg_choices[] = {"ecc", "rsa", "auto", NULL};
static const char *const level_choices[] = {"error", "warn", "info", "debug", NULL};

#define OFF(f) offsetof(struct agent_config, f)

const struct tc_config_setting agent_config_table[] = {
    {"agent", "node_id", TC_CFG_STRING, NULL, OFF(node_id), 0, 0, NULL,
     "this node's id, [A-Za-z0-9._-]{1,64} (required)"},
    {"agent", "tcti", TC_CFG_STRING, "device:/dev/tpmrm0", OFF(tcti), 0, 0, NULL,
     "TPM access (tpm2-tss TCTI string); opened per operation, never held"},
    {"agent", "state_dir", TC_CFG_PATH, "/var/lib/trustcloud-agent", OFF(state_dir), 0, 0, NULL,
     "AK context, TLS key (0600) and certificate"},
    {"agent", "listen_address", TC_CFG_STRING, "127.0.0.1", OFF(listen_address), 0, 0, NULL,
     "numeric IPv4/IPv6 address to serve the coordinator on"},
    {"agent", "listen_port", TC_CFG_INT, "8443", OFF(listen_port), 0, 65535, NULL,
     "TCP port (0: any free port)"},
    {"agent", "agent_url", TC_CFG_STRING, NULL, OFF(agent_url), 0, 0, NULL,
     "URL the coordinator reaches this agent at (default https://listen_address:listen_port)"},
    {"agent", "coordinator_url", TC_CFG_STRING, NULL, OFF(coordinator_url), 0, 0, NULL,
     "https://host:port of the coordinator (required)"},
    {"agent", "ca_file", TC_CFG_PATH, NULL, OFF(ca_file), 0, 0, NULL,
     "the coordinator's CA certificate (PEM), distributed out of band (required)"},
    {"agent", "eventlog_path", TC_CFG_PATH, "/sys/kernel/security/tpm0/binary_bios_measurements",
     OFF(eventlog_path), 0, 0, NULL, "UEFI (TCG) event log"},
    {"agent", "ima_path", TC_CFG_PATH, "/sys/kernel/security/ima/binary_runtime_measurements",
     OFF(ima_path), 0, 0, NULL, "IMA measurement list (binary or ASCII)"},
    {"agent", "ek_alg", TC_CFG_ENUM, "auto", OFF(ek_alg), 0, 0, ek_alg_choices,
     "endorsement key: ecc (NIST P-256), rsa (2048), or auto (the one the TPM holds a "
     "certificate for, ECC first; remembered in state_dir)"},
    {"agent", "ak_alg", TC_CFG_ENUM, "ecc", OFF(ak_alg), 0, 0, alg_choices,
     "attestation key: ecc (P-256 ECDSA) or rsa (2048 RSASSA)"},
    {"agent", "group", TC_CFG_STRING, "default", OFF(group), 0, 0, NULL,
     "group asked for at enrollment (policies can be assigned per group)"},
    {"agent", "log_level", TC_CFG_ENUM, "info", OFF(log_level), 0, 0, level_choices,
     "error, warn, info or debug"},
    {"agent", "enroll_backoff_max", TC_CFG_DURATION, "30s", OFF(enroll_backoff_max), 100, 3600000,
     NULL, "longest wait between enrollment attempts while the coordinator is down"},
    {"agent", "enroll_attempts", TC_CFG_INT, "0", OFF(enroll_attempts), 0, 1000000, NULL,
     "give up after this many unreachable attempts (0: never)"},
    {"agent", "max_pending_quotes", TC_CFG_INT, "16", OFF(max_pending_quotes), 1, 1024, NULL,
     "quote requests waiting for the TPM before answering 503"},
    {"agent", "vm_dir", TC_CFG_PATH, NULL, OFF(vm_dir), 0, 0, NULL,
     "one directory per VM's vTPM (default: state_dir/vms)"},
    {"agent", "vm_seal_pcrs", TC_CFG_STRING, "sha256:0,1,2,3,4,5,6,7", OFF(vm_seal_pcrs), 0, 0,
     NULL, "host PCRs (one bank) the vTPM state keys are sealed to"},
    {"agent", "max_vms", TC_CFG_INT, "1024", OFF(max_vms), 1, 65536, NULL,
     "VMs (vTPMs) this agent hosts at most"},
    {"agent", "swtpm", TC_CFG_PATH, NULL, OFF(swtpm), 0, 0, NULL,
     "swtpm binary that runs the vTPMs (default: swtpm from PATH)"},
    {"agent", "libvirt_uri", TC_CFG_STRING, "qemu:///system", OFF(libvirt_uri), 0, 0, NULL,
     "libvirt connection the VMs with a guest definition are defined and run on"},
    {"agent", "libvirt_qemu_user", TC_CFG_STRING, "libvirt-qemu", OFF(libvirt_qemu_user), 0, 0,
     NULL,
     "user QEMU runs as under libvirt: it is given the vTPM socket and the guest channel "
     "directory of its VM (empty: no ownership change, as for qemu:///session)"},
    {"agent", "libvirt_stop_timeout", TC_CFG_DURATION, "30s", OFF(libvirt_stop_timeout), 0, 45000,
     NULL,
     "vm stop: wait this long for the guest's ACPI shutdown, then destroy it (at most 45s: the "
     "coordinator waits 60s for the agent's answer)"},
    {"agent", "guest_timeout", TC_CFG_DURATION, "2s", OFF(guest_timeout), 100, 30000, NULL,
     "one exchange with a VM's guest agent: silent longer, it is unreachable in that round "
     "(keep it below the coordinator's request_timeout)"},
    {"agent", "max_connections", TC_CFG_INT, "64", OFF(max_connections), 4, 65536, NULL,
     "concurrent HTTPS connections (the open-file limit is raised to fit, else this is lowered)"},
    {"agent", "max_unauthenticated", TC_CFG_INT, "0", OFF(max_unauthenticated), 0, 65536, NULL,
     "of them still in the TLS handshake (a client certificate is required); when full, "
     "the oldest of the address holding the most is closed (0: half of max_connections)"},
    {"agent", "max_unauthenticated_per_address", TC_CFG_INT, "16",
     OFF(max_unauthenticated_per_address), 0, 65536, NULL,
     "the same per client address (IPv6: per /64); more are closed at once (0: no cap)"},
    {"agent", "handshake_timeout", TC_CFG_DURATION, "3s", OFF(handshake_timeout), 1000, 600000,
     NULL, "TLS handshake deadline from accept"},
    {"agent", "header_timeout", TC_CFG_DURATION, "10s", OFF(header_timeout), 1000, 600000, NULL,
     "the first request (head and body) must be complete this long after accept"},
    {"agent", "idle_timeout", TC_CFG_DURATION, "60s", OFF(idle_timeout), 1000, 3600000, NULL,
     "keep-alive: the next request must be complete this long after an answer"},
    {NULL, NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

bool agent_node_id_valid(const char *id)
{
    size_t n = 0;
    if (id == NULL)
        return false;
    for (; id[n]; n++) {
        char c = id[n];
        if (n >= 64 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return n > 0;
}

enum tc_key_alg agent_key_alg(int agent_alg)
{
    return agent_alg == AGENT_ALG_RSA ? TC_KEY_RSA_2048 : TC_KEY_ECC_P256;
}

int agent_path(const char *dir, const char *name, char *buf, size_t cap)
{
    size_t dl = strlen(dir), nl = strlen(name);
    if (cap == 0 || dl + 1 + nl >= cap)
        return TC_ERR_TOO_LARGE;
    memcpy(buf, dir, dl);
    buf[dl] = '/';
    memcpy(buf + dl + 1, name, nl + 1);
    return 0;
}

/* An https URL with a host and nothing that could smuggle a second request line. */
static bool https_url_valid(const char *u)
{
    if (u == NULL || strncmp(u, "https://", 8) != 0 || u[8] == 0 || u[8] == '/')
        return false;
    for (const char *p = u; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return false;
    return strlen(u) <= 512;
}

int agent_config_check(struct agent_config *cfg, char *err, size_t errlen)
{
    unsigned char addr[16];
    bool v6 = false;

    if (!agent_node_id_valid(cfg->node_id)) {
        snprintf(err, errlen, "node_id: %s",
                 cfg->node_id ? "must match [A-Za-z0-9._-]{1,64}" : "required");
        return TC_ERR_INVALID_ARG;
    }
    if (cfg->coordinator_url == NULL || !https_url_valid(cfg->coordinator_url)) {
        snprintf(err, errlen, "coordinator_url: %s",
                 cfg->coordinator_url ? "must be an https:// URL" : "required");
        return TC_ERR_INVALID_ARG;
    }
    if (cfg->ca_file == NULL) {
        snprintf(err, errlen, "ca_file: required (the coordinator's CA certificate)");
        return TC_ERR_INVALID_ARG;
    }
    if (inet_pton(AF_INET, cfg->listen_address, addr) != 1) {
        if (inet_pton(AF_INET6, cfg->listen_address, addr) != 1) {
            snprintf(err, errlen, "listen_address: not a numeric IP address");
            return TC_ERR_INVALID_ARG;
        }
        v6 = true;
    }
    if (cfg->agent_url == NULL) {
        /* A wildcard address is not reachable by name: the operator must say where we are. */
        if (strcmp(cfg->listen_address, "0.0.0.0") == 0 || strcmp(cfg->listen_address, "::") == 0 ||
            cfg->listen_port == 0) {
            snprintf(err, errlen, "agent_url: required with a wildcard address or port 0");
            return TC_ERR_INVALID_ARG;
        }
        char url[128];
        snprintf(url, sizeof(url), v6 ? "https://[%s]:%lld" : "https://%s:%lld",
                 cfg->listen_address, cfg->listen_port);
        if ((cfg->agent_url = strdup(url)) == NULL)
            return TC_ERR_ALLOC;
    }
    if (!https_url_valid(cfg->agent_url)) {
        snprintf(err, errlen, "agent_url: must be an https:// URL");
        return TC_ERR_INVALID_ARG;
    }
    if (strlen(cfg->group) > 64 || !agent_node_id_valid(cfg->group)) {
        snprintf(err, errlen, "group: must match [A-Za-z0-9._-]{1,64}");
        return TC_ERR_INVALID_ARG;
    }
    if (cfg->vm_dir == NULL) {
        char dir[4096];
        if (agent_path(cfg->state_dir, "vms", dir, sizeof(dir)) != 0) {
            snprintf(err, errlen, "state_dir: too long");
            return TC_ERR_INVALID_ARG;
        }
        if ((cfg->vm_dir = strdup(dir)) == NULL)
            return TC_ERR_ALLOC;
    }
    if (cfg->max_unauthenticated > cfg->max_connections) {
        snprintf(err, errlen, "max_unauthenticated: exceeds max_connections (%lld)",
                 cfg->max_connections);
        return TC_ERR_INVALID_ARG;
    }
    struct tc_pcr_set seal;
    if (tc_pcrs_parse_selection(cfg->vm_seal_pcrs, &seal) != 0 || seal.nbanks != 1) {
        snprintf(err, errlen, "vm_seal_pcrs: must be one bank, e.g. sha256:0,1,2,3,4,5,6,7");
        return TC_ERR_INVALID_ARG;
    }
    return 0;
}

int agent_config_load(const char *path, struct agent_config *cfg, char *err, size_t errlen)
{
    int rc = tc_config_load(path, agent_config_table, cfg, err, errlen);
    if (rc == 0)
        rc = agent_config_check(cfg, err, errlen);
    return rc;
}

int agent_config_load_string(const char *text, size_t len, struct agent_config *cfg, char *err,
                             size_t errlen)
{
    int rc =
        tc_config_load_string(text, len, "agent.conf", NULL, agent_config_table, cfg, err, errlen);
    if (rc == 0)
        rc = agent_config_check(cfg, err, errlen);
    return rc;
}

void agent_config_release(struct agent_config *cfg)
{
    if (cfg == NULL)
        return;
    tc_config_release(agent_config_table, cfg);
}
