/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the agent's in-process VM tests share (header-only: each test is its own program; include
 * it after the agent's .c modules, which it uses): a private swtpm as the host TPM with an EK and
 * an AK in a temporary state directory, the agent's configuration and VM table, a synchronous
 * stand-in for the TPM worker that counts and times the steps of each job, and a call of a route
 * handler as httpd would make it.
 */
#ifndef TC_TEST_AGENT_VM_FIXTURE_H
#define TC_TEST_AGENT_VM_FIXTURE_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "swtpm_fixture.h"

static struct swtpm host_sw;
static char state_dir[256];
static struct agent_config cfg;
static struct agent_vms *vms;
static uint8_t host_ak_name[TC_TPM_MAX_NAME];
static size_t host_ak_name_len;

/* The worker stand-in: jobs run to completion on the caller's thread. */
static unsigned submitted, steps;
static long longest_step_us;
static struct tc_http_response *answer_to;

int agent_server_submit(struct agent_server *s, const struct tc_http_request *req,
                        agent_job_run_fn run, void (*done)(void *arg), void *arg)
{
    (void)s;
    struct tc_http_response scratch = {0};
    struct tc_http_response *resp = req != NULL && answer_to != NULL ? answer_to : &scratch;
    submitted++;
    for (;;) {
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int r = run(arg, resp);
        long us = elapsed_us(&t0);
        steps++;
        if (us > longest_step_us)
            longest_step_us = us;
        if (r != AGENT_JOB_AGAIN)
            break;
    }
    done(arg);
    if (resp == &scratch)
        free(scratch.body);
    return 0;
}

/* Host swtpm, EK, AK (its name in host_ak_name), config with max_vms, VM table. 0 or -1. */
static int agent_vm_fixture_setup(const char *prefix, int max_vms)
{
    char conf[2048], err[256], ak[300];
    struct tc_tpm *tpm = NULL;
    struct tc_tpm_key ek, akey;
    if (system("command -v swtpm >/dev/null") != 0 || swtpm_new(&host_sw, prefix) != 0)
        return -1;
    snprintf(state_dir, sizeof(state_dir), "%s/%s-state.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", prefix);
    if (mkdtemp(state_dir) == NULL)
        return -1;
    snprintf(ak, sizeof(ak), "%s/ak.ctx", state_dir);
    if (tc_tpm_open(host_sw.tcti, &tpm) != 0 || tc_tpm_ek_create(tpm, TC_KEY_ECC_P256, &ek) != 0 ||
        tc_tpm_ak_create(tpm, &ek, TC_KEY_ECC_P256, TC_SIG_ECDSA, ak, &akey) != 0)
        return -1;
    memcpy(host_ak_name, akey.name, akey.name_len);
    host_ak_name_len = akey.name_len;
    tc_tpm_key_release(tpm, &akey);
    tc_tpm_key_release(tpm, &ek);
    tc_tpm_close(tpm);
    snprintf(conf, sizeof(conf),
             "[agent]\nnode_id = n1\ncoordinator_url = https://127.0.0.1:1\nca_file = /x.pem\n"
             "tcti = %s\nstate_dir = %s\nek_alg = ecc\nmax_vms = %d\n",
             host_sw.tcti, state_dir, max_vms);
    memset(&cfg, 0, sizeof(cfg));
    if (agent_config_load_string(conf, strlen(conf), &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return agent_vms_new(&cfg, NULL, &vms) == 0 ? 0 : -1;
}

static void agent_vm_fixture_teardown(void)
{
    agent_vms_free(vms);
    agent_config_release(&cfg);
    swtpm_free(&host_sw);
    if (state_dir[0])
        swtpm_rm_rf(state_dir);
}

/* Calls a handler as httpd would, from a client certificate with CN cn (NULL: no certificate);
 * returns the status and the answer's JSON in *ans (or NULL; ans may be NULL). */
static unsigned agent_vm_call(tc_http_handler h, const char *cn, const char *method,
                              const char *path, const char *body, json_t **ans)
{
    struct tc_peer peer;
    memset(&peer, 0, sizeof(peer));
    snprintf(peer.cn, sizeof(peer.cn), "%s", cn ? cn : "");
    /* What tc_tls_peer would find in a certificate issued for that role. */
    if (cn && strcmp(cn, "coordinator") == 0)
        peer.roles = TC_PKI_ROLE_COORDINATOR;
    else if (cn && strncmp(cn, "node:", 5) == 0)
        peer.roles = TC_PKI_ROLE_NODE;
    struct tc_http_request req = {.method = method,
                                  .path = path,
                                  .body = (const uint8_t *)(body ? body : ""),
                                  .body_len = body ? strlen(body) : 0,
                                  .peer = cn ? &peer : NULL,
                                  .remote_addr = "test"};
    struct tc_http_response resp = {0};
    answer_to = &resp;
    h(vms, &req, &resp);
    answer_to = NULL;
    if (ans != NULL)
        *ans = resp.body ? json_loadb((const char *)resp.body, resp.body_len, 0, NULL) : NULL;
    free(resp.body);
    return resp.status;
}

#endif
