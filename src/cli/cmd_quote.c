/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the quote commands land. */
#include <stdio.h>

#include "cli.h"

int cmd_quote(int argc, char **argv)
{
    fprintf(stderr, "trustcloud quote: not built yet\n");
    return TC_EXIT_USAGE;
}
