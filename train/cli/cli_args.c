/* Strict reading of command-line values: whole numbers in a range (no "2abc" read as 2, no overflow), and the
 * message for a flag given without its value. Each prints one line naming the command and the flag. */
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
