/* SPDX-License-Identifier: Apache-2.0 */
#include "trustcloud/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int current_level = -1;

static const char *level_names[] = {"error", "warn", "info", "debug"};

static int level_from_env(void)
{
    const char *e = getenv("TC_LOG_LEVEL");
    if (e)
        for (int i = 0; i <= TC_LOG_DEBUG; i++)
            if (strcmp(e, level_names[i]) == 0)
                return i;
    return TC_LOG_WARN;
}

void tc_log_set_level(enum tc_log_level level)
{
    current_level = (int)level;
}

int tc_log_enabled(enum tc_log_level level)
{
    if (current_level < 0)
        current_level = level_from_env();
    return (int)level <= current_level;
}

void tc_log(enum tc_log_level level, const char *module, const char *fmt, ...)
{
    if (!tc_log_enabled(level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            level_names[level], module, msg);
}
