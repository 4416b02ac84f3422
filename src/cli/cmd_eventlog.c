/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the eventlog commands land. */
#include <stdio.h>

#include "cli.h"

int cmd_eventlog(int argc, char **argv)
{
    fprintf(stderr, "trustcloud eventlog: not built yet\n");
    return TC_EXIT_USAGE;
}
