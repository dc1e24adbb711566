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
    /* the message is cut at the buffer's end rather than overflowing it */
    size_t n = strlen(prefix);
    if (n > sizeof s.msg - 3) n = sizeof s.msg - 3;
    memcpy(s.msg, prefix, n);
    memcpy(s.msg + n, ": ", 2);
    size_t rest = sizeof s.msg - n - 3, m = strlen(inner.msg);
    if (m > rest) m = rest;
    memcpy(s.msg + n + 2, inner.msg, m);
    s.msg[n + 2 + m] = 0;
    return s;
}
