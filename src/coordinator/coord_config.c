/* SPDX-License-Identifier: Apache-2.0 */
/* trustcloud-coordinator settings: one typed table, defaults, bounds, cross-field checks. */
#define LOGMODULE "coordinator"
#include <stdio.h>
#include <string.h>

#include "coordinator/coord.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/pcrs.h"

static const char *const approvals[] = {"auto", "manual", NULL};
static const char *const levels[] = {"error", "warn", "info", "debug", NULL};

/* A PostgreSQL URI carrying a password ("user:secret@" or "password=" among its parameters).
 * The URI is logged when the store cannot be opened, and sits in a config file that need not
 * be secret: the password belongs in ~/.pgpass (PGPASSFILE), where libpq finds it. */
static bool uri_has_password(const char *uri)
{
    const char *auth = strstr(uri, "://");
    if (auth == NULL)
        return false;
    auth += 3;
    size_t alen = strcspn(auth, "/?");
    const char *at = memchr(auth, '@', alen);
    if (at != NULL && memchr(auth, ':', (size_t)(at - auth)) != NULL)
        return true;
    const char *query = strchr(auth, '?');
    for (const char *k = query; k != NULL; k = strchr(k + 1, '&'))
        if (strncmp(k + 1, "password=", 9) == 0)
            return true;
    return false;
}

#define OFF(f) offsetof(struct coord_settings, f)
#define S "coordinator"
const struct tc_config_setting coord_settings_table[] = {
    {S, "listen", TC_CFG_STRING, "127.0.0.1", OFF(listen), 0, 0, NULL,
     "numeric IPv4/IPv6 address to listen on"},
    {S, "port", TC_CFG_INT, "8441", OFF(port), 0, 65535, NULL, "TCP port (0: any free port)"},
    {S, "db", TC_CFG_STRING, "sqlite:coordinator.db", OFF(db), 0, 0, NULL,
     "store URI: sqlite:PATH (relative to the working directory) or a PostgreSQL connection URI "
     "postgresql://[user@]host[:port]/dbname[?...] (password in ~/.pgpass, not here)"},
    {S, "ca_dir", TC_CFG_PATH, NULL, OFF(ca_dir), 0, 0, NULL,
     "directory made by `trustcloud ca init` (required)"},
    {S, "ek_ca_bundle", TC_CFG_PATH, NULL, OFF(ek_ca_bundle), 0, 0, NULL,
     "TPM manufacturer CA certificates (file or directory) for EK certificates"},
    {S, "approval", TC_CFG_ENUM, "auto", OFF(approval), 0, 0, approvals,
     "auto: enrolled nodes are attested at once; manual: `trustcloud node approve` first"},
    {S, "interval", TC_CFG_DURATION, "2s", OFF(interval_ms), 100, 3600000, NULL,
     "challenge period per node"},
    {S, "unreachable_after", TC_CFG_INT, "3", OFF(unreachable_after), 1, 1000, NULL,
     "consecutive missed challenges before a node is unreachable"},
    {S, "request_timeout", TC_CFG_DURATION, "5s", OFF(request_timeout_ms), 100, 600000, NULL,
     "deadline of one challenge (a timeout counts as a miss)"},
    {S, "allow_ek_without_cert", TC_CFG_BOOL, "false", OFF(allow_ek_without_cert), 0, 0, NULL,
     "accept TPMs whose EK has no manufacturer certificate"},
    {S, "load_test_allow_software_aks", TC_CFG_BOOL, "false", OFF(load_test_allow_software_aks), 0,
     0, NULL, "LOAD TESTS ONLY: operators may import nodes without credential activation"},
    {S, "webhook_max_backoff", TC_CFG_DURATION, "1h", OFF(webhook_max_backoff_ms), 1000, 86400000,
     NULL, "longest delay between two webhook delivery attempts"},
    {S, "webhook_timeout", TC_CFG_DURATION, "10s", OFF(webhook_timeout_ms), 100, 600000, NULL,
     "deadline of one webhook delivery attempt"},
    {S, "webhook_allow_http", TC_CFG_BOOL, "false", OFF(webhook_allow_http), 0, 0, NULL,
     "accept plain http:// webhook URLs"},
    {S, "enrollment_ttl", TC_CFG_DURATION, "120s", OFF(enrollment_ttl_ms), 1000, 3600000, NULL,
     "how long a pending enrollment can be activated"},
    {S, "max_body", TC_CFG_INT, "1048576", OFF(max_body), 4096, 16777216, NULL,
     "request body cap in bytes (all routes but policies)"},
    {S, "max_policy_body", TC_CFG_INT, "16777216", OFF(max_policy_body), 4096, 67108864, NULL,
     "POST /v1/policies body cap in bytes"},
    {S, "pcr_selection", TC_CFG_STRING, "sha256:0,1,2,3,4,5,6,7,8,9,10", OFF(pcr_selection), 0, 0,
     NULL, "PCRs every challenge asks to quote (tpm2-tools syntax)"},
    {S, "sync_full", TC_CFG_BOOL, "false", OFF(sync_full), 0, 0, NULL,
     "fsync every store commit (survives power loss; rounds are batched per tick)"},
    {S, "log_level", TC_CFG_ENUM, "info", OFF(log_level), 0, 0, levels, "log level"},
    {S, "enroll_per_address", TC_CFG_INT, "8", OFF(enroll_per_address), 1, 4096, NULL,
     "pending enrollments one client address (IPv6: its /64) may hold at once"},
    {S, "enroll_ek_hold", TC_CFG_DURATION, "10s", OFF(enroll_ek_hold_ms), 1000, 3600000, NULL,
     "how long a pending enrollment is kept from being replaced by another for the same EK"},
    {S, "max_connections", TC_CFG_INT, "1024", OFF(max_connections), 16, 65536, NULL,
     "concurrent HTTPS connections (the open-file limit is raised to fit, else this is lowered)"},
    {S, "max_unauthenticated", TC_CFG_INT, "0", OFF(max_unauthenticated), 0, 65536, NULL,
     "of them without a verified client certificate (handshaking, enrollment); when full, "
     "the oldest of the address holding the most is closed (0: half of max_connections)"},
    {S, "max_unauthenticated_per_address", TC_CFG_INT, "16", OFF(max_unauthenticated_per_address),
     0, 65536, NULL,
     "the same per client address (IPv6: per /64); more are closed at once (0: no cap)"},
    {S, "handshake_timeout", TC_CFG_DURATION, "5s", OFF(handshake_timeout_ms), 1000, 600000, NULL,
     "TLS handshake deadline from accept"},
    {S, "header_timeout", TC_CFG_DURATION, "10s", OFF(header_timeout_ms), 1000, 600000, NULL,
     "the first request (head and body) must be complete this long after accept"},
    {S, "idle_timeout", TC_CFG_DURATION, "60s", OFF(idle_timeout_ms), 1000, 3600000, NULL,
     "keep-alive: the next request must be complete this long after an answer"},
    {NULL, NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};
#undef S

int coord_settings_load(const char *path, struct coord_settings *s, char *err, size_t errlen)
{
    int rc;
    if (path)
        rc = tc_config_load(path, coord_settings_table, s, err, errlen);
    else
        rc = tc_config_defaults(coord_settings_table, s, err, errlen);
    if (rc)
        return rc;
    const char *origin = path ? path : "(defaults)";
    if (!s->ca_dir) {
        snprintf(err, errlen, "%s: [coordinator] ca_dir is required", origin);
        return TC_ERR_FORMAT;
    }
    bool pg = strncmp(s->db, "postgresql://", 13) == 0 || strncmp(s->db, "postgres://", 11) == 0;
    if (!pg && (strncmp(s->db, "sqlite:", 7) != 0 || s->db[7] == '\0')) {
        snprintf(err, errlen, "%s: [coordinator] db must be sqlite:PATH or postgresql://...",
                 origin);
        return TC_ERR_FORMAT;
    }
    if (pg && uri_has_password(s->db)) {
        snprintf(err, errlen,
                 "%s: [coordinator] db must not hold a password: put it in ~/.pgpass "
                 "(or the file PGPASSFILE names)",
                 origin);
        return TC_ERR_FORMAT;
    }
    if (s->max_unauthenticated > s->max_connections) {
        snprintf(err, errlen,
                 "%s: [coordinator] max_unauthenticated (%lld) exceeds max_connections (%lld)",
                 origin, s->max_unauthenticated, s->max_connections);
        return TC_ERR_FORMAT;
    }
    struct tc_pcr_set sel;
    if (tc_pcrs_parse_selection(s->pcr_selection, &sel) != 0) {
        snprintf(err, errlen, "%s: [coordinator] pcr_selection '%s' is not a PCR selection", origin,
                 s->pcr_selection);
        return TC_ERR_FORMAT;
    }
    return 0;
}

/* Durations in whole seconds, rounded up (the server's deadlines are in seconds). */
static unsigned ms_to_s(long long ms)
{
    return (unsigned)((ms + 999) / 1000);
}

void coord_settings_httpd_limits(const struct coord_settings *s, struct tc_httpd_config *hc)
{
    hc->max_connections = (unsigned)s->max_connections;
    hc->max_unauth = (unsigned)s->max_unauthenticated;
    hc->max_unauth_per_addr = (unsigned)s->max_unauthenticated_per_address;
    hc->handshake_timeout_s = ms_to_s(s->handshake_timeout_ms);
    hc->header_timeout_s = ms_to_s(s->header_timeout_ms);
    hc->idle_timeout_s = ms_to_s(s->idle_timeout_ms);
}

void coord_settings_release(struct coord_settings *s)
{
    tc_config_release(coord_settings_table, s);
}
