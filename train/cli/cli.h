/* Subcommand table of the switchc CLI: the core commands live in main.c, the ones owned by other folders (prepare
 * from data/, convert and export-hf from train/hf_*) are listed in commands.c. */
#ifndef SX_TRAIN_CLI_H
#define SX_TRAIN_CLI_H

typedef struct {
    const char *name;
    const char *help;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} cli_command;

int cli_extra_count(void);
const cli_command *cli_extra(int i);

#endif
