/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud vm create|start|stop|delete|list|show|history|wait: virtual machines with vTPMs
 * rooted in their host's TPM (docs/protocol.md, "Virtual machines"). Operators manage every
 * VM; a tenant certificate (`trustcloud ca issue --tenant NAME`) sees, starts and stops only
 * that tenant's VMs. Text for people, --json for scripts; exit codes as in coord_client.h
 * (`vm wait` exits 1 on timeout).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "coord_client.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/vm_evidence.h"
#include "trustcloud/vm_guest.h"

static int vm_create(int argc, char **argv);
static int vm_start(int argc, char **argv);
static int vm_stop(int argc, char **argv);
static int vm_delete(int argc, char **argv);
static int vm_list(int argc, char **argv);
static int vm_show(int argc, char **argv);
static int vm_history(int argc, char **argv);
static int vm_wait(int argc, char **argv);
static int vm_evidence(int argc, char **argv);
static int vm_check(int argc, char **argv);

static const struct cli_cmd vm_cmds[] = {
    {"create", vm_create,
     "ID --node NODE --tenant TENANT [--mode tcp|qemu] [--kernel K [--initrd I] [--cmdline C] "
     "| --disk IMAGE] [--firmware seabios|ovmf] [--memory MB] [--vcpus N] " COORD_CLIENT_HELP
     "  a VM with a vTPM on a trusted node (its EK chains to that node's TPM); with a guest "
     "definition (paths on the node), the node's agent also defines a libvirt domain for it"},
    {"start", vm_start,
     "ID " COORD_CLIENT_HELP
     "  start its vTPM (sealed state, rollback-checked), then its libvirt domain if it has one"},
    {"stop", vm_stop,
     "ID " COORD_CLIENT_HELP
     "  shut its domain down (ACPI, destroyed after the node's timeout), stop its vTPM (state "
     "recorded against rollback)"},
    {"delete", vm_delete,
     "ID " COORD_CLIENT_HELP "  stop it, undefine its domain, destroy its vTPM and state"},
    {"list", vm_list,
     "[--node NODE] [--tenant T] [--state S] " COORD_CLIENT_HELP "  VMs and states"},
    {"show", vm_show, "ID " COORD_CLIENT_HELP "  one VM: state, reason, host and its state"},
    {"history", vm_history,
     "ID [--limit N] " COORD_CLIENT_HELP "  attestation results of a VM, newest first"},
    {"wait", vm_wait,
     "ID --state S[,S...] [--timeout SECONDS] " COORD_CLIENT_HELP
     "  wait until the VM is in one of the states (exit 1 on timeout)"},
    {"evidence", vm_evidence,
     "ID [-o FILE] " COORD_CLIENT_HELP
     "  the VM's last quoted round: VM quote, inclusion proof, host quote (JSON)"},
    {"check", vm_check,
     "FILE [--vm-ak-name HEX] [--host-ak-name HEX] [--json]"
     "  verify evidence offline: exit 0 when valid, 1 when not"},
};
#define NCMDS (sizeof(vm_cmds) / sizeof(vm_cmds[0]))

int cmd_vm(int argc, char **argv)
{
    return cli_dispatch("vm", vm_cmds, NCMDS, argc, argv);
}

enum {
    OPT_NODE = 0x2000,
    OPT_TENANT,
    OPT_MODE,
    OPT_STATE,
    OPT_LIMIT,
    OPT_TIMEOUT,
    OPT_FORCE,
    OPT_KERNEL,
    OPT_INITRD,
    OPT_CMDLINE,
    OPT_DISK,
    OPT_FIRMWARE,
    OPT_MEMORY,
    OPT_VCPUS,
};

struct vm_args {
    struct coord_client c;
    const char *id, *node, *tenant, *mode, *state;
    long long limit;
    double timeout;
    bool force;
    json_t *guest; /* create: the guest definition options, NULL without any */
    char cmdname[32];
};

/* --memory/--vcpus: a positive integer (bounds are the guest definition's). */
static bool guest_int(json_t *g, const char *key, const char *arg)
{
    char *end;
    long long v = strtoll(arg, &end, 10);
    return *arg != '\0' && *end == '\0' && v > 0 && v <= 1000000 &&
           json_object_set_new(g, key, json_integer(v)) == 0;
}

static int parse_args(int argc, char **argv, const struct cli_cmd *cmd, bool want_id,
                      struct vm_args *a)
{
    static const struct option opts[] = {
        COORD_CLIENT_OPTIONS,
        {"node", required_argument, NULL, OPT_NODE},
        {"tenant", required_argument, NULL, OPT_TENANT},
        {"mode", required_argument, NULL, OPT_MODE},
        {"state", required_argument, NULL, OPT_STATE},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"force", no_argument, NULL, OPT_FORCE},
        {"kernel", required_argument, NULL, OPT_KERNEL},
        {"initrd", required_argument, NULL, OPT_INITRD},
        {"cmdline", required_argument, NULL, OPT_CMDLINE},
        {"disk", required_argument, NULL, OPT_DISK},
        {"firmware", required_argument, NULL, OPT_FIRMWARE},
        {"memory", required_argument, NULL, OPT_MEMORY},
        {"vcpus", required_argument, NULL, OPT_VCPUS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof(*a));
    snprintf(a->cmdname, sizeof(a->cmdname), "vm %s", cmd->name);
    coord_client_init(&a->c, a->cmdname);
    a->limit = 20;
    a->timeout = 60;
    optind = 1;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (coord_client_option(&a->c, c, optarg))
            continue;
        switch (c) {
        case OPT_NODE:
            a->node = optarg;
            break;
        case OPT_TENANT:
            a->tenant = optarg;
            break;
        case OPT_MODE:
            if (strcmp(optarg, "tcp") != 0 && strcmp(optarg, "qemu") != 0)
                return cli_usage("vm", cmd);
            a->mode = optarg;
            break;
        case OPT_STATE:
            a->state = optarg;
            break;
        case OPT_LIMIT:
            a->limit = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end || a->limit < 1 || a->limit > 10000)
                return cli_usage("vm", cmd);
            break;
        case OPT_TIMEOUT:
            a->timeout = strtod(optarg, &end);
            if (*optarg == '\0' || *end || !(a->timeout >= 0 && a->timeout <= 86400))
                return cli_usage("vm", cmd);
            break;
        case OPT_FORCE:
            a->force = true;
            break;
        case OPT_KERNEL:
        case OPT_INITRD:
        case OPT_CMDLINE:
        case OPT_DISK:
        case OPT_FIRMWARE:
        case OPT_MEMORY:
        case OPT_VCPUS: {
            static const char *const keys[] = {"kernel",   "initrd",    "cmdline", "disk",
                                               "firmware", "memory_mb", "vcpus"};
            const char *key = keys[c - OPT_KERNEL];
            if (strcmp(cmd->name, "create") != 0 ||
                (a->guest == NULL && (a->guest = json_object()) == NULL))
                return cli_usage("vm", cmd);
            bool ok = c == OPT_MEMORY || c == OPT_VCPUS
                          ? guest_int(a->guest, key, optarg)
                          : json_object_set_new(a->guest, key, json_string(optarg)) == 0;
            if (!ok)
                return cli_usage("vm", cmd);
            break;
        }
        case 'h':
            printf("usage: trustcloud vm %s %s\n", cmd->name, cmd->help);
            return -1;
        default:
            return cli_usage("vm", cmd);
        }
    }
    if (want_id) {
        if (optind + 1 != argc || argv[optind][0] == '\0')
            return cli_usage("vm", cmd);
        a->id = argv[optind];
    } else if (optind != argc) {
        return cli_usage("vm", cmd);
    }
    return coord_client_finish(&a->c);
}

static int vm_path(char *buf, size_t cap, const char *id, const char *suffix)
{
    return coord_client_path(buf, cap, "/v1/vms/", id, suffix, "vm", "VM id");
}

static void print_vm_line(const json_t *v)
{
    char t[32], r[512];
    printf("%-20s %-13s %-16s %-12s %-19s %s\n", coord_client_str(v, "id", "?"),
           coord_client_str(v, "state", "?"), coord_client_str(v, "host", "-"),
           coord_client_str(v, "tenant", "-"),
           coord_client_time(coord_client_int(json_object_get(v, "updated")), t, sizeof(t)),
           coord_client_reason(json_object_get(v, "reason"), r, sizeof(r)));
}

static int vm_create(int argc, char **argv)
{
    struct vm_args a;
    json_t *resp = NULL, *body = NULL;
    int ret = parse_args(argc, argv, &vm_cmds[0], true, &a);
    if (ret) {
        json_decref(a.guest);
        return ret < 0 ? TC_EXIT_OK : ret;
    }
    if (!a.node || !a.tenant) {
        json_decref(a.guest);
        return cli_usage("vm", &vm_cmds[0]);
    }
    if (a.guest != NULL) {
        /* The coordinator and the agent check it again; this gives the error before a call. */
        struct tc_vm_guest g;
        struct tc_reason why;
        tc_reason_clear(&why);
        if (a.mode != NULL && strcmp(a.mode, "qemu") != 0) {
            fprintf(stderr, "trustcloud vm create: a guest definition needs --mode qemu\n");
            ret = TC_EXIT_USAGE;
            goto out;
        }
        if (tc_vm_guest_from_json(a.guest, &g, &why) != 0) {
            fprintf(stderr, "trustcloud vm create: %s\n", why.detail);
            ret = TC_EXIT_USAGE;
            goto out;
        }
    }
    body =
        json_pack("{s:s, s:s, s:s, s:s}", "vm_id", a.id, "node", a.node, "tenant", a.tenant, "mode",
                  a.mode    ? a.mode
                  : a.guest ? "qemu"
                            : "tcp");
    if (body != NULL && a.guest != NULL && json_object_set(body, "guest", a.guest) != 0) {
        ret = TC_EXIT_USAGE;
        goto out;
    }
    ret = coord_client_call(&a.c, "POST", "/v1/vms", body, 120000, &resp, NULL);
    if (ret)
        goto out;
    if (a.c.json) {
        coord_client_print_json(resp);
    } else {
        printf("%s: %s on %s for tenant %s\n", a.id, coord_client_str(resp, "state", "created"),
               coord_client_str(resp, "node", a.node), coord_client_str(resp, "tenant", a.tenant));
        const char *ctrl = coord_client_str(resp, "ctrl_path", NULL);
        const char *dom = coord_client_str(resp, "domain", NULL);
        if (dom)
            printf("libvirt domain %s, guest channel %s\n", dom,
                   coord_client_str(resp, "channel_path", "?"));
        else if (ctrl)
            printf("vTPM control socket (QEMU -chardev socket,path=...): %s\n", ctrl);
    }
out:
    json_decref(a.guest);
    json_decref(body);
    json_decref(resp);
    return ret;
}

static int vm_action(int argc, char **argv, const struct cli_cmd *cmd, const char *method,
                     const char *suffix, const char *done)
{
    struct vm_args a;
    json_t *resp = NULL, *body = NULL;
    char path[512];
    int ret = parse_args(argc, argv, cmd, true, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if ((ret = vm_path(path, sizeof(path), a.id, suffix)) != 0)
        return ret;
    if (strcmp(method, "POST") == 0)
        body = a.force ? json_pack("{s:b}", "force", 1) : json_object();
    ret = coord_client_call(&a.c, method, path, body, 120000, &resp, NULL);
    if (ret == 0) {
        if (a.c.json)
            coord_client_print_json(resp);
        else
            printf("%s: %s\n", a.id, done);
    }
    json_decref(body);
    json_decref(resp);
    return ret;
}

static int vm_start(int argc, char **argv)
{
    return vm_action(argc, argv, &vm_cmds[1], "POST", "/start", "started");
}

static int vm_stop(int argc, char **argv)
{
    return vm_action(argc, argv, &vm_cmds[2], "POST", "/stop", "stopped");
}

static int vm_delete(int argc, char **argv)
{
    return vm_action(argc, argv, &vm_cmds[3], "DELETE", "", "deleted");
}

static int vm_list(int argc, char **argv)
{
    struct vm_args a;
    json_t *resp = NULL;
    char path[512] = "/v1/vms", *p = path + strlen(path);
    int ret = parse_args(argc, argv, &vm_cmds[4], false, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if (a.node || a.tenant) {
        strcat(path, "?");
        if (a.node) {
            strcat(path, "node=");
            if (coord_client_path_escape(path, sizeof(path) - 80, a.node) != 0)
                return TC_EXIT_USAGE;
        }
        if (a.tenant) {
            strcat(path, a.node ? "&tenant=" : "tenant=");
            if (coord_client_path_escape(path, sizeof(path), a.tenant) != 0)
                return TC_EXIT_USAGE;
        }
    }
    (void)p;
    if ((ret = coord_client_call(&a.c, "GET", path, NULL, 0, &resp, NULL)) != 0)
        goto out;
    const json_t *vms = json_object_get(resp, "vms");
    if (!json_is_array(vms)) {
        fprintf(stderr, "trustcloud vm list: the answer has no VM list\n");
        ret = TC_EXIT_USAGE;
        goto out;
    }
    coord_client_warn_store(&a.c, resp);
    json_t *kept = json_array();
    size_t i;
    const json_t *v;
    json_array_foreach(vms, i, v)
    {
        if (!a.state || coord_client_state_in(coord_client_str(v, "state", ""), a.state))
            json_array_append(kept, (json_t *)v);
    }
    if (a.c.json) {
        json_t *o = json_pack("{s:o}", "vms", kept);
        coord_client_print_json(o);
        json_decref(o);
        goto out;
    }
    printf("%-20s %-13s %-16s %-12s %-19s %s\n", "VM", "STATE", "HOST", "TENANT", "UPDATED (UTC)",
           "REASON");
    json_array_foreach(kept, i, v) print_vm_line(v);
    if (json_array_size(kept) == 0)
        printf("(no VMs)\n");
    json_decref(kept);
out:
    json_decref(resp);
    return ret;
}

static int vm_show(int argc, char **argv)
{
    struct vm_args a;
    json_t *resp = NULL;
    char path[512];
    int ret = parse_args(argc, argv, &vm_cmds[5], true, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if ((ret = vm_path(path, sizeof(path), a.id, "")) != 0 ||
        (ret = coord_client_call(&a.c, "GET", path, NULL, 0, &resp, NULL)) != 0)
        goto out;
    if (a.c.json) {
        coord_client_print_json(resp);
        goto out;
    }
    char r[1024];
    printf("vm:        %s\n", coord_client_str(resp, "id", a.id));
    printf("state:     %s\n", coord_client_str(resp, "state", "?"));
    printf("reason:    %s\n", coord_client_reason(json_object_get(resp, "reason"), r, sizeof(r)));
    printf("host:      %s (%s)\n", coord_client_str(resp, "host", "?"),
           coord_client_str(resp, "host_state", "?"));
    printf("tenant:    %s\n", coord_client_str(resp, "tenant", "?"));
    printf("round:     %lld\n", coord_client_int(json_object_get(resp, "last_round")));
    printf("ima:       %lld entries\n", coord_client_int(json_object_get(resp, "ima_entries")));
out:
    json_decref(resp);
    return ret;
}

static int vm_history(int argc, char **argv)
{
    struct vm_args a;
    json_t *resp = NULL;
    char path[512], q[32];
    int ret = parse_args(argc, argv, &vm_cmds[6], true, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    snprintf(q, sizeof(q), "?limit=%lld", a.limit);
    if ((ret = vm_path(path, sizeof(path) - sizeof(q), a.id, "/history")) != 0)
        return ret;
    strcat(path, q);
    if ((ret = coord_client_call(&a.c, "GET", path, NULL, 0, &resp, NULL)) != 0)
        goto out;
    if (a.c.json) {
        coord_client_print_json(resp);
        goto out;
    }
    const json_t *rows = json_object_get(resp, "results");
    printf("%-8s %-19s %-12s %s\n", "ROUND", "TIME (UTC)", "STATE", "REASON");
    size_t i;
    const json_t *row;
    json_array_foreach(rows, i, row)
    {
        char t[32], r[1024];
        printf("%-8lld %-19s %-12s %s\n", coord_client_int(json_object_get(row, "round")),
               coord_client_time(coord_client_int(json_object_get(row, "ts")), t, sizeof(t)),
               coord_client_str(row, "state", "?"),
               coord_client_reason(json_object_get(row, "reason"), r, sizeof(r)));
    }
    if (json_array_size(rows) == 0)
        printf("(no results)\n");
out:
    json_decref(resp);
    return ret;
}

static int vm_wait(int argc, char **argv)
{
    struct vm_args a;
    json_t *resp = NULL;
    char path[512], why[512];
    long code;
    int ret = parse_args(argc, argv, &vm_cmds[7], true, &a);
    if (ret)
        return ret < 0 ? TC_EXIT_OK : ret;
    if (!a.state)
        return cli_usage("vm", &vm_cmds[7]);
    if ((ret = vm_path(path, sizeof(path), a.id, "")) != 0)
        return ret;
    ret = coord_client_wait(&a.c, path, a.id, NULL, a.state, a.timeout, &resp, &code);
    if (ret == TC_EXIT_OK) {
        const json_t *reason = json_object_get(resp, "reason");
        if (a.c.json)
            coord_client_print_json(resp);
        else
            printf("%s: %s%s%s\n", a.id, coord_client_str(resp, "state", ""),
                   json_is_object(reason) ? " " : "",
                   json_is_object(reason) ? coord_client_reason(reason, why, sizeof(why)) : "");
    }
    json_decref(resp);
    return ret;
}

static int vm_evidence(int argc, char **argv)
{
    /* -o FILE is ours; everything else goes to the common parser. */
    const char *out_path = NULL;
    char **rest = calloc((size_t)argc + 1, sizeof(*rest));
    int n = 0, ret;
    if (!rest)
        return TC_EXIT_USAGE;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            out_path = argv[++i];
        else
            rest[n++] = argv[i];
    }
    struct vm_args a;
    json_t *resp = NULL;
    char path[512];
    ret = parse_args(n, rest, &vm_cmds[8], true, &a);
    if (ret) {
        free(rest);
        return ret < 0 ? TC_EXIT_OK : ret;
    }
    if ((ret = vm_path(path, sizeof(path), a.id, "/evidence")) != 0 ||
        (ret = coord_client_call(&a.c, "GET", path, NULL, 0, &resp, NULL)) != 0)
        goto out;
    if (out_path) {
        if (json_dump_file(resp, out_path, JSON_INDENT(2)) != 0) {
            fprintf(stderr, "trustcloud vm evidence: cannot write %s\n", out_path);
            ret = TC_EXIT_USAGE;
        }
    } else {
        coord_client_print_json(resp);
    }
out:
    json_decref(resp);
    free(rest);
    return ret;
}

static int pin_arg(const char *hex, uint8_t *out, size_t *len)
{
    return tc_hex_decode(hex, strlen(hex), out, TC_QUOTE_MAX_NAME, len) == 0 && *len > 2 ? 0 : -1;
}

/* A TPM firmware version as hex, in a static buffer. */
static const char *fw_hex(uint64_t v)
{
    static char buf[24];
    snprintf(buf, sizeof(buf), "0x%016llx", (unsigned long long)v);
    return buf;
}

static int vm_check(int argc, char **argv)
{
    enum { OPT_VMAK = 0x3000, OPT_HOSTAK, OPT_JSON };
    static const struct option opts[] = {
        {"vm-ak-name", required_argument, NULL, OPT_VMAK},
        {"host-ak-name", required_argument, NULL, OPT_HOSTAK},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint8_t vpin[TC_QUOTE_MAX_NAME], hpin[TC_QUOTE_MAX_NAME];
    size_t vlen = 0, hlen = 0;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_VMAK:
            if (pin_arg(optarg, vpin, &vlen) != 0)
                return cli_usage("vm", &vm_cmds[9]);
            break;
        case OPT_HOSTAK:
            if (pin_arg(optarg, hpin, &hlen) != 0)
                return cli_usage("vm", &vm_cmds[9]);
            break;
        case OPT_JSON:
            json = true;
            break;
        case 'h':
            printf("usage: trustcloud vm check %s\n", vm_cmds[9].help);
            return TC_EXIT_OK;
        default:
            return cli_usage("vm", &vm_cmds[9]);
        }
    }
    if (optind + 1 != argc)
        return cli_usage("vm", &vm_cmds[9]);
    const char *file = argv[optind];
    json_error_t err;
    /* Evidence is small (two quotes, a proof): a cap keeps a hostile file from costing much. */
    uint8_t *text = NULL;
    size_t len = 0;
    int rc = tc_file_read(file, 1u << 20, &text, &len);
    if (rc) {
        fprintf(stderr, "trustcloud vm check: cannot read %s: %s\n", file, tc_strerror(rc));
        return TC_EXIT_USAGE;
    }
    json_t *ev = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!ev) {
        fprintf(stderr, "trustcloud vm check: %s is not JSON: %s\n", file, err.text);
        return TC_EXIT_USAGE;
    }
    struct tc_vm_evidence_info info;
    struct tc_reason why;
    rc = tc_vm_evidence_verify(ev, vlen ? vpin : NULL, vlen, hlen ? hpin : NULL, hlen, &info, &why);
    /* Operators' evidence carries the host's PCR values (checked against the host quote's
     * digest); a tenant's does not, and the host quote then shows only their digest. */
    const char *host_pcrs =
        json_object_get(json_object_get(ev, "host"), "pcrs") ? "checked" : "withheld";
    /* What the host's signed TPMS_ATTEST shows whoever holds the evidence, shown as such. */
    const struct tc_quote_info *hq = &info.host_quote;
    char digest[2 * TC_MAX_DIGEST + 1];
    tc_hex_encode(hq->pcr_digest, hq->pcr_digest_len, digest);
    if (json) {
        json_t *o =
            rc == 0 ? json_pack("{s:b, s:s, s:s, s:I, s:s, s:s, s:{s:I, s:I, s:I, s:b, s:s, "
                                "s:s}}",
                                "valid", 1, "vm", info.vm_id, "host", info.host_id, "round",
                                (json_int_t)info.round, "vm_state",
                                coord_client_str(ev, "vm_state", "?"), "host_pcrs", host_pcrs,
                                "host_quote", "clock", (json_int_t)hq->clock, "reset_count",
                                (json_int_t)hq->reset_count, "restart_count",
                                (json_int_t)hq->restart_count, "safe", hq->safe, "firmware_version",
                                fw_hex(hq->firmware_version), "pcr_digest", digest)
                    : json_pack("{s:b, s:o}", "valid", 0, "reason", tc_reason_to_json(&why));
        coord_client_print_json(o);
        json_decref(o);
    } else if (rc == 0) {
        char vn[2 * TC_QUOTE_MAX_NAME + 1], hn[2 * TC_QUOTE_MAX_NAME + 1];
        tc_hex_encode(info.vm_ak_name, info.vm_ak_name_len, vn);
        tc_hex_encode(info.host_ak_name, info.host_ak_name_len, hn);
        printf("valid: VM %s (AK %s) quoted in round %lld, in the batch host %s (AK %s) quoted "
               "for the same nonce (host PCR values %s); the coordinator judged it %s\n",
               info.vm_id, vn, info.round, info.host_id, hn, host_pcrs,
               coord_client_str(ev, "vm_state", "?"));
        printf("the host quote also shows: TPM clock %llu ms, reset count %u, restart count %u, "
               "firmware %s, PCR digest %s\n",
               (unsigned long long)hq->clock, hq->reset_count, hq->restart_count,
               fw_hex(hq->firmware_version), digest);
    } else {
        printf("invalid: %s: %s\n", why.check, why.detail);
    }
    json_decref(ev);
    return rc == 0 ? TC_EXIT_OK : TC_EXIT_REJECTED;
}
