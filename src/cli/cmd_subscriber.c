/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>

#include "cli.h"

int cmd_subscriber(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "trustcloud subscriber: not implemented yet\n");
    return TC_EXIT_USAGE;
}
