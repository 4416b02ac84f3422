/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the ima commands land. */
#include <stdio.h>

#include "cli.h"

int cmd_ima(int argc, char **argv)
{
    fprintf(stderr, "trustcloud ima: not built yet\n");
    return TC_EXIT_USAGE;
}
