/* Strict reading of command-line values: whole numbers in a range (no "2abc" read as 2, no overflow), the message
 * for a flag given without its value, and the table-driven argument loop of the subcommands. Each error prints one
 * line naming the command and the flag. */
#include "train/cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_bad_arg(const char *cmd, const char *arg, const char *const *value_flags) {
    for (int k = 0; value_flags && value_flags[k]; k++)
        if (!strcmp(arg, value_flags[k])) {
            fprintf(stderr, "switchc %s: flag %s needs a value (see switchc %s --help)\n", cmd, arg, cmd);
            return 2;
        }
    fprintf(stderr, "switchc %s: unknown argument '%s' (see switchc %s --help)\n", cmd, arg, cmd);
    return 2;
}

bool cli_parse_int(const char *cmd, const char *flag, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno) {
        fprintf(stderr, "switchc %s: %s '%s': expected an integer in [%lld, %lld]\n", cmd, flag, v, lo, hi);
        return false;
    }
    if (x < lo || x > hi) {
        fprintf(stderr, "switchc %s: %s %lld is outside [%lld, %lld]\n", cmd, flag, x, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

int cli_usage(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "switchc %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see switchc %s --help)\n", cmd);
    return 2;
}

int cli_flag_arg(const cli_flag *flags, const char *cmd, int argc, char **argv, int i) {
    const char *a = argv[i];
    for (const cli_flag *f = flags; f && f->flag; f++) {
        if (strcmp(a, f->flag) && (!f->alias || strcmp(a, f->alias))) continue;
        if (f->kind == CLI_SET) {
            *(bool *)f->dst = true;
            return 1;
        }
        if (i + 1 >= argc) {
            cli_bad_arg(cmd, a, (const char *const[]){a, NULL});
            return -1;
        }
        const char *v = argv[i + 1];
        if (f->kind == CLI_CHOICE) {
            int k = 0, n = 0;
            while (f->choices[n]) n++;
            while (k < n && strcmp(v, f->choices[k])) k++;
            if (k == n) { /* "--x 'v' must be a, b or c" */
                fprintf(stderr, "switchc %s: %s '%s' must be ", cmd, a, v);
                for (k = 0; k < n; k++) fprintf(stderr, "%s%s", k ? (k == n - 1 ? " or " : ", ") : "", f->choices[k]);
                fprintf(stderr, " (see switchc %s --help)\n", cmd);
                return -1;
            }
        }
        if (f->kind == CLI_STR || f->kind == CLI_CHOICE) {
            *(const char **)f->dst = v;
        } else {
            long long x;
            if (!cli_parse_int(cmd, a, v, f->lo, f->hi, &x)) return -1;
            *(int *)f->dst = (int)x;
        }
        return 2;
    }
    return 0;
}

int cli_parse_args(const char *cmd, int argc, char **argv, void (*help)(void), cli_arg_fn more, void *user,
                   const cli_flag *flags) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            help();
            return 0;
        }
        int used = more ? more(user, cmd, argc, argv, i) : 0;
        if (!used) used = cli_flag_arg(flags, cmd, argc, argv, i);
        if (used < 0) return 2;
        if (!used) return cli_bad_arg(cmd, argv[i], NULL);
        i += used - 1;
    }
    return -1;
}
