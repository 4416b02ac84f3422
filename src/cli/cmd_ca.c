/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud ca init|issue: the coordinator's PKI on disk.
 *
 * `ca init --dir D` creates D/ca.key + D/ca.pem (the trust anchor of every trustcloud TLS
 * connection) and the coordinator's own identity D/coordinator.pem + D/coordinator.key
 * (CN "coordinator", server and client usage plus the coordinator EKU TC_PKI_OID_COORDINATOR,
 * SAN 127.0.0.1 and ::1 plus any --san), which is what trustcloud-coordinator's ca_dir setting
 * expects. `ca issue` makes operator CLI client certificates (CN "operator:NAME"), tenant client
 * certificates (CN "tenant:NAME": they see and attest only that tenant's VMs), another
 * coordinator certificate (--coordinator, e.g. a renewal), or, with --cn, any other leaf (load
 * generators, tests, webhook receivers with --server). The role EKUs follow the CN: --cn
 * coordinator gets the coordinator EKU, --cn node:ID the node EKU, so no leaf carries a role's
 * name without its EKU.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/pki.h"

#define CA_MAX_SANS 16

static int ca_init(int argc, char **argv);
static int ca_issue(int argc, char **argv);

static const struct cli_cmd ca_cmds[] = {
    {"init", ca_init,
     "--dir DIR [--san ADDR]... [--days N]  new CA and the coordinator's certificate in DIR"},
    {"issue", ca_issue,
     "--dir DIR (--operator NAME | --tenant NAME | --coordinator | --cn CN [--server]) "
     "[--san ADDR]... --out-cert F --out-key F  issue a client (operator, tenant), coordinator "
     "or other leaf certificate"},
};

int cmd_ca(int argc, char **argv)
{
    return cli_dispatch("ca", ca_cmds, sizeof(ca_cmds) / sizeof(ca_cmds[0]), argc, argv);
}

/* Operator names end up in a certificate CN the coordinator authorizes on: keep them plain. */
static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* New key, certificate issued by ca, both written (key 0600). */
static int issue_pair(const struct tc_pki_ca *ca, const char *cn, const char *const *sans,
                      unsigned usage, unsigned role, unsigned days, const char *cert_path,
                      const char *key_path)
{
    int rc;
    EVP_PKEY *key = NULL;
    char *pem = NULL;
    struct tc_pki_issue_req req = {
        .cn = cn, .sans = sans, .usage = usage, .role = role, .days = days};
    if ((rc = tc_pki_key_generate(&key)) != 0)
        goto out;
    req.pubkey = key;
    if ((rc = tc_pki_issue(ca, &req, &pem)) != 0)
        goto out;
    if ((rc = tc_pki_key_save(key_path, key)) != 0 ||
        (rc = tc_file_write(cert_path, pem, strlen(pem), 0644)) != 0)
        goto out;
out:
    EVP_PKEY_free(key);
    free(pem);
    return rc;
}

static int ca_init(int argc, char **argv)
{
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"san", required_argument, NULL, 's'},
                                         {"days", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = NULL;
    const char *sans[CA_MAX_SANS + 3] = {"IP:127.0.0.1", "IP:::1"};
    size_t nsans = 2;
    unsigned days = 0;
    int c;
    while ((c = getopt_long(argc, argv, "d:s:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 's':
            if (nsans >= CA_MAX_SANS + 2) {
                fprintf(stderr, "trustcloud ca init: at most %d --san\n", CA_MAX_SANS);
                return TC_EXIT_USAGE;
            }
            sans[nsans++] = optarg;
            break;
        case 'n': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v == 0 || v > 36500)
                return cli_usage("ca", &ca_cmds[0]);
            days = (unsigned)v;
            break;
        }
        case 'h':
            printf("usage: trustcloud ca %s %s\n", ca_cmds[0].name, ca_cmds[0].help);
            return TC_EXIT_OK;
        default:
            return cli_usage("ca", &ca_cmds[0]);
        }
    }
    if (!dir || optind != argc)
        return cli_usage("ca", &ca_cmds[0]);
    sans[nsans] = NULL;

    int rc;
    struct tc_pki_ca *ca = NULL;
    char cert_path[4096], key_path[4096];
    if ((size_t)snprintf(cert_path, sizeof(cert_path), "%s/coordinator.pem", dir) >=
            sizeof(cert_path) ||
        (size_t)snprintf(key_path, sizeof(key_path), "%s/coordinator.key", dir) >=
            sizeof(key_path)) {
        fprintf(stderr, "trustcloud ca init: directory name too long\n");
        return TC_EXIT_USAGE;
    }
    if ((rc = tc_pki_ca_init(dir, "trustcloud CA", days ? days : 3650, &ca)) != 0) {
        fprintf(stderr, "trustcloud ca init: cannot create the CA in %s: %s%s\n", dir,
                tc_strerror(rc), rc == TC_ERR_INVALID_ARG ? " (a CA already exists there?)" : "");
        return TC_EXIT_USAGE;
    }
    rc = issue_pair(ca, "coordinator", sans, TC_PKI_USAGE_BOTH, TC_PKI_ROLE_COORDINATOR,
                    days ? days : 825, cert_path, key_path);
    tc_pki_ca_free(ca);
    if (rc) {
        fprintf(stderr, "trustcloud ca init: cannot issue the coordinator certificate: %s\n",
                tc_strerror(rc));
        return TC_EXIT_USAGE;
    }
    printf("CA: %s/ca.pem\ncoordinator: %s\n", dir, cert_path);
    return TC_EXIT_OK;
}

static int ca_issue(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},      {"operator", required_argument, NULL, 'o'},
        {"cn", required_argument, NULL, 'c'},       {"server", no_argument, NULL, 'S'},
        {"san", required_argument, NULL, 's'},      {"days", required_argument, NULL, 'n'},
        {"out-cert", required_argument, NULL, 'C'}, {"out-key", required_argument, NULL, 'K'},
        {"tenant", required_argument, NULL, 't'},   {"coordinator", no_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    const char *dir = NULL, *op = NULL, *tenant = NULL, *cn_arg = NULL, *cert_path = NULL,
               *key_path = NULL;
    const char *sans[CA_MAX_SANS + 1] = {NULL};
    size_t nsans = 0;
    bool server = false, coordinator = false;
    unsigned days = 0;
    int c;
    while ((c = getopt_long(argc, argv, "d:o:t:c:Ss:n:C:K:Rh", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'o':
            op = optarg;
            break;
        case 't':
            tenant = optarg;
            break;
        case 'c':
            cn_arg = optarg;
            break;
        case 'S':
            server = true;
            break;
        case 'R':
            coordinator = true;
            break;
        case 's':
            if (nsans >= CA_MAX_SANS) {
                fprintf(stderr, "trustcloud ca issue: at most %d --san\n", CA_MAX_SANS);
                return TC_EXIT_USAGE;
            }
            sans[nsans++] = optarg;
            break;
        case 'n': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v == 0 || v > 36500)
                return cli_usage("ca", &ca_cmds[1]);
            days = (unsigned)v;
            break;
        }
        case 'C':
            cert_path = optarg;
            break;
        case 'K':
            key_path = optarg;
            break;
        case 'h':
            printf("usage: trustcloud ca %s %s\n", ca_cmds[1].name, ca_cmds[1].help);
            return TC_EXIT_OK;
        default:
            return cli_usage("ca", &ca_cmds[1]);
        }
    }
    if (!dir || !cert_path || !key_path || optind != argc ||
        ((op != NULL) + (tenant != NULL) + (cn_arg != NULL) + coordinator != 1))
        return cli_usage("ca", &ca_cmds[1]);
    char cn[128];
    if (op) {
        if (!valid_name(op)) {
            fprintf(stderr, "trustcloud ca issue: operator name must match [A-Za-z0-9._-]{1,64}\n");
            return TC_EXIT_USAGE;
        }
        snprintf(cn, sizeof(cn), "operator:%s", op);
    } else if (tenant) {
        if (!valid_name(tenant)) {
            fprintf(stderr, "trustcloud ca issue: tenant name must match [A-Za-z0-9._-]{1,64}\n");
            return TC_EXIT_USAGE;
        }
        snprintf(cn, sizeof(cn), "tenant:%s", tenant);
    } else if (coordinator) {
        snprintf(cn, sizeof(cn), "coordinator");
        server = true;
        if (nsans == 0) {
            sans[nsans++] = "IP:127.0.0.1";
            sans[nsans++] = "IP:::1";
        }
    } else {
        if (strlen(cn_arg) == 0 || strlen(cn_arg) >= 100) {
            fprintf(stderr, "trustcloud ca issue: --cn must be 1..99 characters\n");
            return TC_EXIT_USAGE;
        }
        snprintf(cn, sizeof(cn), "%s", cn_arg);
    }
    sans[nsans] = NULL;
    unsigned usage = server ? TC_PKI_USAGE_BOTH : TC_PKI_USAGE_CLIENT;
    unsigned role = strcmp(cn, "coordinator") == 0 ? TC_PKI_ROLE_COORDINATOR
                    : strncmp(cn, "node:", 5) == 0 ? TC_PKI_ROLE_NODE
                                                   : TC_PKI_ROLE_NONE;
    if (role == TC_PKI_ROLE_NODE && !cn[5]) {
        fprintf(stderr, "trustcloud ca issue: --cn node: needs a node id\n");
        return TC_EXIT_USAGE;
    }
    if (server && nsans == 0) {
        fprintf(stderr, "trustcloud ca issue: --server needs at least one --san\n");
        return TC_EXIT_USAGE;
    }

    int rc;
    struct tc_pki_ca *ca = NULL;
    if ((rc = tc_pki_ca_load(dir, &ca)) != 0) {
        fprintf(stderr, "trustcloud ca issue: cannot load the CA from %s: %s\n", dir,
                tc_strerror(rc));
        return TC_EXIT_USAGE;
    }
    rc = issue_pair(ca, cn, nsans ? sans : NULL, usage, role, days, cert_path, key_path);
    tc_pki_ca_free(ca);
    if (rc) {
        fprintf(stderr, "trustcloud ca issue: %s\n", tc_strerror(rc));
        return TC_EXIT_USAGE;
    }
    printf("issued %s: %s\n", cn, cert_path);
    return TC_EXIT_OK;
}
