/* Subcommands implemented outside the CLI's own file. */
#include <stddef.h>

#include "train/cli/cli.h"

static const cli_command EXTRA[] = {
    {NULL, NULL, NULL},
};

int cli_extra_count(void) { return (int)(sizeof EXTRA / sizeof EXTRA[0]) - 1; }
const cli_command *cli_extra(int i) { return &EXTRA[i]; }
