/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's configuration: defaults, required settings, derived agent_url, refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The agent is an executable, not a library: its modules are compiled into the test. */
#include "agent/agent_config.c"

#define BASE                                                                                       \
    "[agent]\nnode_id = n1\ncoordinator_url = https://10.0.0.1:8440\nca_file = /etc/tc/ca.pem\n"

static int load(const char *text, struct agent_config *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    err[0] = 0;
    return agent_config_load_string(text, strlen(text), cfg, err, errlen);
}

static void defaults(void **state)
{
    struct agent_config cfg;
    char err[256];
    assert_int_equal(load(BASE, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.node_id, "n1");
    assert_string_equal(cfg.tcti, "device:/dev/tpmrm0");
    assert_string_equal(cfg.listen_address, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 8443);
    assert_string_equal(cfg.agent_url, "https://127.0.0.1:8443");
    assert_string_equal(cfg.eventlog_path, "/sys/kernel/security/tpm0/binary_bios_measurements");
    assert_string_equal(cfg.ima_path, "/sys/kernel/security/ima/binary_runtime_measurements");
    assert_int_equal(cfg.ek_alg, AGENT_ALG_AUTO);
    assert_int_equal(cfg.ak_alg, AGENT_ALG_ECC);
    assert_int_equal(agent_key_alg(cfg.ak_alg), TC_KEY_ECC_P256);
    assert_string_equal(cfg.group, "default");
    assert_int_equal(cfg.log_level, 2); /* info */
    assert_int_equal(cfg.enroll_backoff_max, 30000);
    assert_int_equal(cfg.enroll_attempts, 0);
    assert_int_equal(cfg.max_pending_quotes, 16);
    assert_int_equal(cfg.max_connections, 64);
    assert_int_equal(cfg.max_unauthenticated, 0);
    assert_int_equal(cfg.max_unauthenticated_per_address, 16);
    assert_int_equal(cfg.handshake_timeout, 3000);
    assert_int_equal(cfg.header_timeout, 10000);
    assert_int_equal(cfg.idle_timeout, 60000);
    agent_config_release(&cfg);
    assert_null(cfg.node_id);
    agent_config_release(NULL);
}

static void every_setting(void **state)
{
    struct agent_config cfg;
    char err[256];
    const char *text = BASE "tcti = swtpm:host=127.0.0.1,port=2321\nstate_dir = /tmp/st\n"
                            "listen_address = ::1\nlisten_port = 9000\nek_alg = rsa\nak_alg = rsa\n"
                            "group = web.tier-1\nlog_level = debug\nenroll_backoff_max = 2s\n"
                            "enroll_attempts = 3\nmax_pending_quotes = 4\n"
                            "eventlog_path = /e\nima_path = /i\nmax_connections = 128\n"
                            "max_unauthenticated = 100\nmax_unauthenticated_per_address = 0\n"
                            "handshake_timeout = 1s\nheader_timeout = 4s\nidle_timeout = 2m\n";
    assert_int_equal(load(text, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.agent_url, "https://[::1]:9000"); /* IPv6 in brackets */
    assert_int_equal(agent_key_alg(cfg.ek_alg), TC_KEY_RSA_2048);
    assert_int_equal(agent_key_alg(cfg.ak_alg), TC_KEY_RSA_2048);
    assert_string_equal(cfg.group, "web.tier-1");
    assert_int_equal(cfg.enroll_backoff_max, 2000);
    assert_int_equal(cfg.enroll_attempts, 3);
    assert_string_equal(cfg.ima_path, "/i");
    assert_int_equal(cfg.max_connections, 128);
    assert_int_equal(cfg.max_unauthenticated, 100);
    assert_int_equal(cfg.max_unauthenticated_per_address, 0);
    assert_int_equal(cfg.handshake_timeout, 1000);
    assert_int_equal(cfg.header_timeout, 4000);
    assert_int_equal(cfg.idle_timeout, 120000);
    agent_config_release(&cfg);

    /* A wildcard address needs an explicit agent_url. */
    assert_int_equal(load(BASE "listen_address = 0.0.0.0\n", &cfg, err, sizeof(err)),
                     TC_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "agent_url"));
    agent_config_release(&cfg);
    assert_int_equal(load(BASE "listen_address = 0.0.0.0\nagent_url = https://node1:8443\n", &cfg,
                          err, sizeof(err)),
                     0);
    assert_string_equal(cfg.agent_url, "https://node1:8443");
    agent_config_release(&cfg);
}

static void refusals(void **state)
{
    static const struct {
        const char *text, *in_err;
    } cases[] = {
        {"[agent]\ncoordinator_url = https://c:1\nca_file = /ca\n", "node_id"},
        {"[agent]\nnode_id = n1\nca_file = /ca\n", "coordinator_url"},
        {"[agent]\nnode_id = n1\ncoordinator_url = https://c:1\n", "ca_file"},
        {BASE "colour = blue\n", "colour"}, /* unknown key */
        {BASE "[other]\nx = 1\n", "other"}, /* unknown section */
        {BASE "node_id = n2\n", "node_id"}, /* set twice */
        {"[agent]\nnode_id = a/b\ncoordinator_url = https://c:1\nca_file = /ca\n", "node_id"},
        {"[agent]\nnode_id = "
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
         "coordinator_url = https://c:1\nca_file = /ca\n",
         "node_id"}, /* 65 characters */
        {"[agent]\nnode_id = n1\ncoordinator_url = http://c:1\nca_file = /ca\n", "coordinator_url"},
        {"[agent]\nnode_id = n1\ncoordinator_url = https://\nca_file = /ca\n", "coordinator_url"},
        {BASE "ek_alg = dsa\n", "ek_alg"},
        {BASE "listen_port = 70000\n", "listen_port"},
        {BASE "listen_port = -1\n", "listen_port"},
        {BASE "listen_address = localhost\n", "listen_address"},
        {BASE "agent_url = ftp://x\n", "agent_url"},
        {BASE "agent_url = https://a b\n", "agent_url"},
        {BASE "group = a b\n", "group"},
        {BASE "enroll_backoff_max = 1ms\n", "enroll_backoff_max"},
        {BASE "max_pending_quotes = 0\n", "max_pending_quotes"},
        {BASE "log_level = loud\n", "log_level"},
        {BASE "max_connections = 2\n", "max_connections"},
        {BASE "max_unauthenticated = 65\n", "max_unauthenticated"}, /* above max_connections */
        {BASE "max_unauthenticated_per_address = -1\n", "max_unauthenticated_per_address"},
        {BASE "handshake_timeout = 10ms\n", "handshake_timeout"},
        {BASE "header_timeout = 0\n", "header_timeout"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct agent_config cfg;
        char err[256];
        int rc = load(cases[i].text, &cfg, err, sizeof(err));
        if (rc == 0 || strstr(err, cases[i].in_err) == NULL)
            fail_msg("case %zu: rc %d, err '%s' (expected a refusal naming %s)", i, rc, err,
                     cases[i].in_err);
        agent_config_release(&cfg);
    }
}

static void node_ids(void **state)
{
    assert_true(agent_node_id_valid("n1"));
    assert_true(agent_node_id_valid("Node_1.a-b"));
    char id[66];
    memset(id, 'x', 64);
    id[64] = 0;
    assert_true(agent_node_id_valid(id));
    id[64] = 'x';
    id[65] = 0;
    assert_false(agent_node_id_valid(id));
    assert_false(agent_node_id_valid(""));
    assert_false(agent_node_id_valid(NULL));
    assert_false(agent_node_id_valid("a b"));
    assert_false(agent_node_id_valid("a/b"));
    assert_false(agent_node_id_valid("\xc3\xa9"));
}

/* Relative paths in a file are resolved against the file's directory. */
static void file_relative_paths(void **state)
{
    char dir[] = "/tmp/tc-agent-cfg.XXXXXX", path[128], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/agent.conf", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("[agent]\nnode_id = n1\ncoordinator_url = https://c:1\nca_file = ca.pem\n"
          "state_dir = state\n",
          f);
    fclose(f);
    struct agent_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(agent_config_load(path, &cfg, err, sizeof(err)), 0);
    char want[160];
    snprintf(want, sizeof(want), "%s/state", dir);
    assert_string_equal(cfg.state_dir, want);
    snprintf(want, sizeof(want), "%s/ca.pem", dir);
    assert_string_equal(cfg.ca_file, want);
    agent_config_release(&cfg);
    char p2[160];
    assert_int_equal(agent_path(dir, AGENT_FILE_KEY, p2, sizeof(p2)), 0);
    assert_int_equal(agent_path(dir, AGENT_FILE_KEY, p2, 8), TC_ERR_TOO_LARGE);
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(agent_config_load("/nonexistent/agent.conf", &cfg, err, sizeof(err)),
                     TC_ERR_IO);
    agent_config_release(&cfg);
    unlink(path);
    rmdir(dir);
}

/* --print-defaults output parses back; only the required settings are missing. */
static void printed_defaults_parse(void **state)
{
    char *buf = NULL, err[256];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    tc_config_print_defaults(agent_config_table, f);
    fclose(f);
    assert_non_null(strstr(buf, "node_id"));
    struct agent_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(tc_config_load_string(buf, len, "defaults", NULL, agent_config_table, &cfg,
                                           err, sizeof(err)),
                     0);
    assert_int_equal(agent_config_check(&cfg, err, sizeof(err)), TC_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "node_id"));
    agent_config_release(&cfg);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(every_setting),
        cmocka_unit_test(refusals),
        cmocka_unit_test(node_ids),
        cmocka_unit_test(file_relative_paths),
        cmocka_unit_test(printed_defaults_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
