/* SPDX-License-Identifier: Apache-2.0 */
/* Typed INI settings: defaults, every type, bounds, unknown keys, errors naming the line. */
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

#include "trustcloud/config.h"
#include "trustcloud/error.h"

struct settings {
    char *bind;
    long long port;
    bool mtls;
    char *ca;
    long long timeout_ms;
    int log_level;
    char *name;
};

static const char *const levels[] = {"error", "warn", "info", "debug", NULL};

#define OFF(f) offsetof(struct settings, f)
static const struct tc_config_setting table[] = {
    {"server", "bind", TC_CFG_STRING, "127.0.0.1", OFF(bind), 0, 0, NULL, "address to listen on"},
    {"server", "port", TC_CFG_INT, "8443", OFF(port), 1, 65535, NULL, "TCP port"},
    {"server", "mtls", TC_CFG_BOOL, "true", OFF(mtls), 0, 0, NULL, "require client certificates"},
    {"server", "ca", TC_CFG_PATH, NULL, OFF(ca), 0, 0, NULL, "CA certificate"},
    {"server", "timeout", TC_CFG_DURATION, "2s", OFF(timeout_ms), 100, 60000, NULL,
     "request timeout"},
    {"log", "level", TC_CFG_ENUM, "warn", OFF(log_level), 0, 0, levels, "log level"},
    {"", "name", TC_CFG_STRING, NULL, OFF(name), 0, 0, NULL, "instance name"},
    {NULL, NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

static int load(const char *text, struct settings *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    return tc_config_load_string(text, strlen(text), "test.conf", "/etc/tc", table, s, err, errlen);
}

static void defaults(void **state)
{
    struct settings s = {0};
    char err[256];
    assert_int_equal(load("", &s, err, sizeof(err)), 0);
    assert_string_equal(s.bind, "127.0.0.1");
    assert_int_equal(s.port, 8443);
    assert_true(s.mtls);
    assert_null(s.ca);
    assert_int_equal(s.timeout_ms, 2000);
    assert_int_equal(s.log_level, 1);
    assert_null(s.name);
    tc_config_release(table, &s);
    assert_null(s.bind);
}

static void all_types(void **state)
{
    struct settings s;
    char err[256];
    const char *text = "name = node-1 ; comment\n"
                       "[server]\n"
                       "bind = 0.0.0.0\n"
                       "port = 9000\n"
                       "mtls = off\n"
                       "ca = certs/ca.pem\n"
                       "timeout = 500ms\n"
                       "# comment\n"
                       "[log]\n"
                       "level = debug\n";
    assert_int_equal(load(text, &s, err, sizeof(err)), 0);
    assert_string_equal(s.name, "node-1");
    assert_string_equal(s.bind, "0.0.0.0");
    assert_int_equal(s.port, 9000);
    assert_false(s.mtls);
    assert_string_equal(s.ca, "/etc/tc/certs/ca.pem"); /* relative to the config file */
    assert_int_equal(s.timeout_ms, 500);
    assert_int_equal(s.log_level, 3);
    tc_config_release(table, &s);
    assert_int_equal(load("[server]\nca = /abs/ca.pem\ntimeout = 1m\n", &s, err, sizeof(err)), 0);
    assert_string_equal(s.ca, "/abs/ca.pem");
    assert_int_equal(s.timeout_ms, 60000);
    tc_config_release(table, &s);
}

static void expect_error(const char *text, const char *needle)
{
    struct settings s;
    char err[256] = "";
    assert_int_equal(load(text, &s, err, sizeof(err)), TC_ERR_FORMAT);
    if (!strstr(err, needle)) {
        fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, needle);
        fail();
    }
    tc_config_release(table, &s);
}

static void errors_name_the_line(void **state)
{
    expect_error("[server]\nport = 8000\nbogus = 1\n",
                 "test.conf:3: unknown setting [server] bogus");
    expect_error("[nosuch]\nport = 1\n", "test.conf:2: unknown setting [nosuch] port");
    expect_error("port = 1\n", "test.conf:1: unknown setting [] port");
    expect_error("[server]\n\nport = 0\n", "test.conf:3: [server] port: value 0 out of range");
    expect_error("[server]\nport = 65536\n", "out of range [1, 65535]");
    expect_error("[server]\nport = 12ab\n",
                 "test.conf:2: [server] port: \"12ab\" is not an integer");
    expect_error("[server]\nport = 99999999999999999999\n", "is not an integer");
    expect_error("[server]\nmtls = maybe\n", "is not a boolean");
    expect_error("[server]\ntimeout = 5\n", "is not a duration");
    expect_error("[server]\ntimeout = 50ms\n", "value 50 out of range [100, 60000]");
    expect_error("[server]\ntimeout = 2d\n", "is not a duration");
    expect_error("[server]\ntimeout = 99999999999999999h\n", "is not a duration");
    expect_error("[log]\nlevel = loud\n", "\"loud\" is not one of: error, warn, info, debug");
    expect_error("[server]\nport = 1\nport = 2\n",
                 "test.conf:3: [server] port is set more than once");
    expect_error("[server]\nbind =\n", "test.conf:2: [server] bind: empty value");
    expect_error("[server\nport = 1\n", "test.conf:1: syntax error");
    expect_error("[server]\njust words\n", "test.conf:2: syntax error");
    char longline[400];
    memset(longline, 'a', sizeof(longline));
    memcpy(longline, "name = ", 7);
    longline[sizeof(longline) - 1] = '\0';
    expect_error(longline, "test.conf:1: line longer than");
    /* Embedded NUL. */
    struct settings s;
    char err[256];
    memset(&s, 0, sizeof(s));
    assert_int_equal(
        tc_config_load_string("name = a\0b\n", 11, "nul.conf", NULL, table, &s, err, sizeof(err)),
        TC_ERR_FORMAT);
    assert_non_null(strstr(err, "nul.conf:1: NUL byte"));
    tc_config_release(table, &s);
}

static void files(void **state)
{
    char dir[] = "/tmp/tc-config-test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/agent.conf", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("[server]\nca = ca.pem\nport = 70000\n", f);
    fclose(f);
    struct settings s = {0};
    char err[256];
    assert_int_equal(tc_config_load(path, table, &s, err, sizeof(err)), TC_ERR_FORMAT);
    char want[200];
    snprintf(want, sizeof(want), "%s:3: [server] port", path);
    assert_non_null(strstr(err, want));
    tc_config_release(table, &s);
    f = fopen(path, "w");
    fputs("[server]\nca = ca.pem\n", f);
    fclose(f);
    assert_int_equal(tc_config_load(path, table, &s, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "%s/ca.pem", dir);
    assert_string_equal(s.ca, want);
    tc_config_release(table, &s);
    unlink(path);
    assert_int_equal(tc_config_load(path, table, &s, err, sizeof(err)), TC_ERR_IO);
    assert_non_null(strstr(err, "cannot read"));
    assert_int_equal(s.port, 8443); /* defaults still applied */
    tc_config_release(table, &s);
    rmdir(dir);
}

static void print_defaults(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    tc_config_print_defaults(table, f);
    fclose(f);
    assert_non_null(strstr(buf, "[server]\n"));
    assert_non_null(strstr(buf, "# TCP port (integer, 1..65535)\nport = 8443\n"));
    assert_non_null(strstr(buf, "# log level (one of error|warn|info|debug)\nlevel = warn\n"));
    assert_non_null(strstr(buf, "# ca =\n"));
    /* What it prints loads back (commented lines are ignored). */
    struct settings s;
    char err[256];
    memset(&s, 0, sizeof(s));
    assert_int_equal(tc_config_load_string(buf, len, "printed", NULL, table, &s, err, sizeof(err)),
                     0);
    assert_int_equal(s.port, 8443);
    tc_config_release(table, &s);
    free(buf);
}

static void bad_table(void **state)
{
    static const struct tc_config_setting broken[] = {
        {"a", "n", TC_CFG_INT, "x", 0, 0, 0, NULL, NULL},
        {NULL, NULL, 0, NULL, 0, 0, 0, NULL, NULL},
    };
    long long v;
    char err[128];
    assert_int_equal(tc_config_defaults(broken, &v, err, sizeof(err)), TC_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "default of [a] n"));
    long long ms;
    assert_int_equal(tc_config_parse_duration("0", &ms), 0);
    assert_int_equal(tc_config_parse_duration("1h", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(tc_config_parse_duration("-1s", &ms), TC_ERR_FORMAT);
    assert_int_equal(tc_config_parse_duration("s", &ms), TC_ERR_FORMAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(all_types),
        cmocka_unit_test(errors_name_the_line),
        cmocka_unit_test(files),
        cmocka_unit_test(print_defaults),
        cmocka_unit_test(bad_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
