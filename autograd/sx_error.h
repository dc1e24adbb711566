/* Errors, in three tiers (DESIGN.md 4): *_CHECK around library calls, SX_ASSERT for invariants (always on),
 * and sx_status for functions that read the outside world, so tests can feed them bad input. */
#ifndef SX_ERROR_H
#define SX_ERROR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#ifdef __cplusplus /* the CUDA backend (the .cu files of autograd/cuda) includes this from C++ */
#define SX_NORETURN [[noreturn]]
extern "C" {
#else
#define SX_NORETURN _Noreturn
#endif

/* The rank printed in every fatal message; parallel/ sets it after MPI_Init (-1: not distributed). */
extern int sx_log_rank;

SX_NORETURN void sx_fatal(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define SX_ASSERT(cond, ...)                                                                                          \
    do {                                                                                                              \
        if (!(cond)) sx_fatal(__FILE__, __LINE__, __VA_ARGS__);                                                       \
    } while (0)
#define SX_FATAL(...) sx_fatal(__FILE__, __LINE__, __VA_ARGS__)

/* A status with a message, for functions that read files, configs and flags. ok == true means success. */
typedef struct {
    bool ok;
    char msg[1024];
} sx_status;

static inline sx_status sx_ok(void) { sx_status s; s.ok = true; s.msg[0] = 0; return s; }
sx_status sx_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prefix an existing error with context ("reading run.json: ..."). */
sx_status sx_error_wrap(sx_status inner, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define SX_TRY(expr)                                                                                                  \
    do {                                                                                                              \
        sx_status sx__s = (expr);                                                                                     \
        if (!sx__s.ok) return sx__s;                                                                                  \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
