/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud-agent -c FILE [--enroll-only]
 * trustcloud-agent --print-defaults
 *
 * Flushes what a killed predecessor left loaded in the TPM (agent_tpm_clean), enrolls the node
 * with the coordinator unless state_dir already holds its certificate, then serves quotes to the
 * coordinator until SIGTERM/SIGINT.
 * Exit status: 0 done, 1 failure (TPM, files, coordinator unreachable), 2 usage or
 * configuration error, 3 the coordinator refused the enrollment.
 */
#define LOGMODULE "agent"
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "agent.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

static volatile int stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: trustcloud-agent -c FILE [--enroll-only]\n"
               "       trustcloud-agent --print-defaults\n"
               "  -c, --config FILE   agent configuration (INI, section [agent])\n"
               "  --enroll-only       enroll (if not enrolled yet) and exit\n"
               "  --print-defaults    print every setting with its default and help\n"
               "exit status: 0 ok, 1 failure, 2 usage/configuration, 3 enrollment refused\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"enroll-only", no_argument, NULL, 'e'},
                                         {"print-defaults", no_argument, NULL, 'p'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL;
    bool enroll_only = false, print_defaults = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'e':
            enroll_only = true;
            break;
        case 'p':
            print_defaults = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || (!path && !print_defaults)) {
        usage(stderr);
        return 2;
    }
    if (print_defaults) {
        tc_config_print_defaults(agent_config_table, stdout);
        return 0;
    }

    struct agent_config cfg;
    char err[512] = "";
    int ret = 1, rc;
    struct agent_server *srv = NULL;
    memset(&cfg, 0, sizeof(cfg));
    if ((rc = agent_config_load(path, &cfg, err, sizeof(err))) != 0) {
        fprintf(stderr, "trustcloud-agent: %s\n", err[0] ? err : tc_strerror(rc));
        agent_config_release(&cfg);
        return 2;
    }
    tc_log_set_level((enum tc_log_level)cfg.log_level);
    agent_test_hooks_from_env(&cfg);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    /* A previous run killed in the middle of TPM work (or another process that died) may have
     * left objects and sessions loaded: without a resource manager they would fill the TPM. */
    agent_tpm_clean(cfg.tcti);

    struct agent_enroll_result res;
    struct tc_reason why;
    if ((rc = agent_enroll(&cfg, &stop_requested, &res, &why)) != 0) {
        if (rc == TC_ERR_POLICY) {
            fprintf(stderr, "trustcloud-agent: enrollment refused: %s\n", why.detail);
            ret = AGENT_EXIT_REFUSED;
        } else {
            fprintf(stderr, "trustcloud-agent: enrollment failed: %s\n",
                    why.detail[0] ? why.detail : tc_strerror(rc));
        }
        goto out;
    }
    if (stop_requested) {
        ret = 0;
        goto out;
    }
    if (enroll_only) {
        printf("%s\n", res.already ? "already enrolled" : res.state);
        ret = 0;
        goto out;
    }
    if ((rc = agent_server_new(&cfg, &srv)) != 0) {
        fprintf(stderr, "trustcloud-agent: cannot serve: %s\n", tc_strerror(rc));
        goto out;
    }
    /* Tests with listen_port = 0 learn the port from here. */
    LOG_WARN("node %s listening on port %u", cfg.node_id, agent_server_port(srv));
    agent_server_run(srv, &stop_requested);
    LOG_INFO("stopping");
    ret = 0;
out:
    agent_server_free(srv);
    curl_global_cleanup();
    agent_config_release(&cfg);
    return ret;
}
