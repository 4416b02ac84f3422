/* SPDX-License-Identifier: Apache-2.0 */
/* trustcloud policy create|check measured-boot. */
#include <stdio.h>

#include "cli.h"

int policy_mb_create_main(int argc, char **argv)
{
    fprintf(stderr, "trustcloud policy create measured-boot: not built yet\n");
    return TC_EXIT_USAGE;
}

int policy_mb_check_main(int argc, char **argv)
{
    fprintf(stderr, "trustcloud policy check measured-boot: not built yet\n");
    return TC_EXIT_USAGE;
}
