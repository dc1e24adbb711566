/* Fatal errors and status messages shared by every folder (DESIGN.md 4). */
#include "autograd/sx_error.h"

#include <stdlib.h>
#include <string.h>

int sx_log_rank = -1;

_Noreturn void sx_fatal(const char *file, int line, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (sx_log_rank >= 0)
        fprintf(stderr, "switchc: fatal [rank %d] %s:%d: %s\n", sx_log_rank, file, line, msg);
    else
        fprintf(stderr, "switchc: fatal %s:%d: %s\n", file, line, msg);
    fflush(stderr);
    abort();
}

sx_status sx_errorf(const char *fmt, ...) {
    sx_status s;
    s.ok = false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s.msg, sizeof s.msg, fmt, ap);
    va_end(ap);
    return s;
}

sx_status sx_error_wrap(sx_status inner, const char *fmt, ...) {
    if (inner.ok) return inner;
    sx_status s;
    s.ok = false;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    snprintf(s.msg, sizeof s.msg, "%s: %s", prefix, inner.msg);
    return s;
}
