/* The CPU backend's op table: the reference implementation of every op (CBLAS from OpenBLAS for GEMM).
 * kernels_t.h is instantiated for float (training) and double (gradient checks); the table entries dispatch on the
 * dtype of the first input. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "autograd/ag.h"
#include "autograd/ag_internal.h"

#define T float
#define SFX f32
#define GEMM cblas_sgemm
#define MATH(fn) fn##f
#include "autograd/cpu/kernels_t.h"

#define T double
#define SFX f64
#define GEMM cblas_dgemm
#define MATH(fn) fn
#include "autograd/cpu/kernels_t.h"

/* One wrapper per kernel of every op of ag_ops.def, choosing the instantiation by the dtype of input 0 (the op
 * constructors guarantee that all float inputs share it): <name>_fwd, and <name>_bwd for ops with a gradient. */
#define DISPATCH(name)                                                                                                \
    static void name(ag_ctx *ctx, ag_node *n) {                                                                       \
        if (n->in[0]->dtype == AG_F64)                                                                                \
            name##_f64(ctx, n);                                                                                       \
        else                                                                                                          \
            name##_f32(ctx, n);                                                                                       \
    }
#define DISPATCH_AG_GRAD(op) DISPATCH(op##_fwd) DISPATCH(op##_bwd)
#define DISPATCH_AG_NOGRAD(op) DISPATCH(op##_fwd)
#define AG_OP(E, name, grad) DISPATCH_##grad(name)
#include "autograd/ag_ops.def"

#define PAIR(op) {op##_fwd, op##_bwd, NULL}

/* Generated from ag_ops.def (every op needs its CPU kernels, named after it), indexed by the enum; checked when first
 * used (ag_op_table_checked). */
static const ag_op_entry cpu_table[] = {
#define ENTRY_AG_GRAD(op) PAIR(op)
#define ENTRY_AG_NOGRAD(op) {op##_fwd, NULL, NULL}
#define AG_OP(E, name, grad) [AG_OP_##E] = ENTRY_##grad(name),
#include "autograd/ag_ops.def"
#undef ENTRY_AG_GRAD
#undef ENTRY_AG_NOGRAD
};
_Static_assert(sizeof cpu_table / sizeof cpu_table[0] == AG_OP_COUNT, "the CPU op table must cover every AG_OP_*");

const ag_op_entry *ag_cpu_op_table(void) { return cpu_table; }
