/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the policy commands land. */
#include <stdio.h>

#include "cli.h"

int cmd_policy(int argc, char **argv)
{
    fprintf(stderr, "trustcloud policy: not built yet\n");
    return TC_EXIT_USAGE;
}
