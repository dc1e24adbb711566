/* Subcommand table of the switchc CLI: the core commands live in main.c, the ones owned by other folders (prepare
 * from data/, convert and export-hf from train/hf_*) are listed in commands.c. */
#ifndef SX_TRAIN_CLI_H
#define SX_TRAIN_CLI_H

#include <stdbool.h>

typedef struct {
    const char *name;
    const char *help;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} cli_command;

int cli_extra_count(void);
const cli_command *cli_extra(int i);

/* An argument no branch took: "flag --x needs a value" when it is one of value_flags (NULL-terminated) given last,
 * else "unknown argument". Returns the exit code, 2. */
int cli_bad_arg(const char *cmd, const char *arg, const char *const *value_flags);
/* A whole number in [lo, hi]; false after printing the error line. */
bool cli_parse_int(const char *cmd, const char *flag, const char *v, long long lo, long long hi, long long *out);

#endif
