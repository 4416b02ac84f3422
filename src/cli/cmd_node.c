/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>

#include "cli.h"

int cmd_node(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "trustcloud node: not implemented yet\n");
    return TC_EXIT_USAGE;
}
