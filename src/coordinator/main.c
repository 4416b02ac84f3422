/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud-coordinator: the trusted third party (RATS Verifier).
 *   trustcloud-coordinator -c FILE [--pid-file FILE]
 *   trustcloud-coordinator --print-defaults
 * Logs "listening on ADDR:PORT" once it serves, stops cleanly on SIGTERM/SIGINT.
 */
#define LOGMODULE "coordinator"
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "coordinator/coord.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: trustcloud-coordinator -c FILE [--pid-file FILE]\n"
               "       trustcloud-coordinator --print-defaults\n"
               "exit codes: 0 clean stop, 2 bad configuration or startup failure,\n"
               "            3 the database is damaged (see the README: recovering a damaged store)\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"pid-file", required_argument, NULL, 'p'},
                                         {"print-defaults", no_argument, NULL, 'D'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL, *pid_file = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "c:p:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            config = optarg;
            break;
        case 'p':
            pid_file = optarg;
            break;
        case 'D':
            tc_config_print_defaults(coord_settings_table, stdout);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!config || optind != argc) {
        usage(stderr);
        return 2;
    }
    setenv("TSS2_LOG", "all+none", 0);

    int ret = 2, rc;
    struct coord_settings cfg;
    struct coord *c = NULL;
    char err[512] = "";
    memset(&cfg, 0, sizeof(cfg));
    if ((rc = coord_settings_load(config, &cfg, err, sizeof(err))) != 0) {
        fprintf(stderr, "trustcloud-coordinator: %s\n", err[0] ? err : tc_strerror(rc));
        goto out;
    }
    if (!getenv("TC_LOG_LEVEL"))
        tc_log_set_level((enum tc_log_level)cfg.log_level);

    /* Signals are taken synchronously by this thread; every other thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    if (cfg.load_test_allow_software_aks)
        LOG_WARN("*** LOAD TEST MODE: load_test_allow_software_aks=true: operators can import "
                 "nodes whose AKs NOTHING vouches for. Never use this configuration in "
                 "production. ***");
    if (cfg.allow_ek_without_cert)
        LOG_WARN("allow_ek_without_cert=true: TPMs without a manufacturer EK certificate are "
                 "accepted");
    if ((rc = coord_new(&cfg, &c)) != 0) {
        if (rc == TC_ERR_CORRUPT) {
            /* Serving verdicts from a damaged database would be guessing. */
            fprintf(stderr,
                    "trustcloud-coordinator: the database %s is damaged (integrity check failed); "
                    "refusing to serve from it. Restore it from a backup, or move it aside and "
                    "start with a new one (nodes then enroll again); see the README, "
                    "\"Recovering a damaged store\".\n",
                    cfg.db);
            ret = 3;
        }
        goto out;
    }
    if ((rc = coord_start(c)) != 0) {
        LOG_ERROR("cannot start: %s", tc_strerror(rc));
        goto out;
    }
    if (pid_file) {
        char pid[32];
        int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
        if (tc_file_write(pid_file, pid, (size_t)n, 0644) != 0) {
            LOG_ERROR("cannot write the pid file %s", pid_file);
            goto out;
        }
    }
    LOG_INFO("listening on %s:%u (%zu nodes, interval %lld ms, approval %s)", cfg.listen,
             (unsigned)tc_httpd_port(c->httpd), c->nnodes, cfg.interval_ms,
             cfg.approval == COORD_APPROVAL_MANUAL ? "manual" : "auto");
    /* The line scripts wait for, whatever the log level. */
    fprintf(stderr, "trustcloud-coordinator: listening on %s:%u\n", cfg.listen,
            (unsigned)tc_httpd_port(c->httpd));
    fflush(stderr);

    int sig = 0;
    do {
        if (sigwait(&sigs, &sig) != 0)
            break;
    } while (sig == SIGHUP);
    LOG_INFO("signal %d: stopping", sig);
    ret = 0;
out:
    coord_free(c);
    if (pid_file && ret == 0)
        unlink(pid_file);
    coord_settings_release(&cfg);
    curl_global_cleanup();
    return ret;
}
