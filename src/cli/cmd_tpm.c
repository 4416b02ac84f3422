/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the tpm commands land. */
#include <stdio.h>

#include "cli.h"

int cmd_tpm(int argc, char **argv)
{
    fprintf(stderr, "trustcloud tpm: not built yet\n");
    return TC_EXIT_USAGE;
}
