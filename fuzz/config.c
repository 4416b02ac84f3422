/* SPDX-License-Identifier: Apache-2.0 */
/* Config files through the typed INI loader: every type, bounds, paths, enums. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "trustcloud/config.h"

struct fuzz_settings {
    char *bind;
    long long port;
    bool mtls;
    char *ca;
    long long timeout_ms;
    int level;
    char *name;
    long long workers;
};

static const char *const levels[] = {"error", "warn", "info", "debug", NULL};

#define OFF(f) offsetof(struct fuzz_settings, f)
static const struct tc_config_setting table[] = {
    {"server", "bind", TC_CFG_STRING, "127.0.0.1", OFF(bind), 0, 0, NULL, "bind address"},
    {"server", "port", TC_CFG_INT, "8443", OFF(port), 1, 65535, NULL, "port"},
    {"server", "mtls", TC_CFG_BOOL, "true", OFF(mtls), 0, 0, NULL, "mutual TLS"},
    {"server", "ca", TC_CFG_PATH, NULL, OFF(ca), 0, 0, NULL, "CA file"},
    {"server", "timeout", TC_CFG_DURATION, "2s", OFF(timeout_ms), 0, 3600000, NULL, "timeout"},
    {"log", "level", TC_CFG_ENUM, "warn", OFF(level), 0, 0, levels, "log level"},
    {"", "name", TC_CFG_STRING, NULL, OFF(name), 0, 0, NULL, "name"},
    {"agent", "workers", TC_CFG_INT, "4", OFF(workers), 0, 0, NULL, "unbounded int"},
    {NULL, NULL, 0, NULL, 0, 0, 0, NULL, NULL},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_settings s;
    char err[256];
    memset(&s, 0, sizeof(s));
    tc_config_load_string((const char *)data, size, "fuzz", "/base", table, &s, err, sizeof(err));
    tc_config_release(table, &s);
    return 0;
}
