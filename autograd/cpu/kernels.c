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
#define EXP expf
#define TANH tanhf
#define ERF erff
#define LOG1P log1pf
#define SQRT sqrtf
#include "autograd/cpu/kernels_t.h"
#undef T
#undef SFX
#undef GEMM
#undef EXP
#undef TANH
#undef ERF
#undef LOG1P
#undef SQRT

#define T double
#define SFX f64
#define GEMM cblas_dgemm
#define EXP exp
#define TANH tanh
#define ERF erf
#define LOG1P log1p
#define SQRT sqrt
#include "autograd/cpu/kernels_t.h"
#undef T
#undef SFX
#undef GEMM
#undef EXP
#undef TANH
#undef ERF
#undef LOG1P
#undef SQRT

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

/* Indexed by the enum; checked against ag_ops.def when first used (ag_op_table_checked): a missing entry aborts
 * naming the op. */
static const ag_op_entry cpu_table[] = {
    [AG_OP_MATMUL] = PAIR(matmul),
    [AG_OP_ADD] = PAIR(add),
    [AG_OP_MUL] = PAIR(mul),
    [AG_OP_SCALE] = PAIR(scale),
    [AG_OP_RELU] = PAIR(relu),
    [AG_OP_GELU_TANH] = PAIR(gelu_tanh),
    [AG_OP_GELU_ERF] = PAIR(gelu_erf),
    [AG_OP_ACT] = PAIR(act),
    [AG_OP_RMSNORM] = PAIR(rmsnorm),
    [AG_OP_SOFTMAX] = PAIR(softmax),
    [AG_OP_LOGSUMEXP] = PAIR(logsumexp),
    [AG_OP_EMBEDDING] = PAIR(embedding),
    [AG_OP_DROPOUT] = PAIR(dropout),
    [AG_OP_RESHAPE] = PAIR(reshape),
    [AG_OP_PERMUTE] = PAIR(permute),
    [AG_OP_SUM] = PAIR(sum),
    [AG_OP_SUM_LAST] = PAIR(sum_last),
    [AG_OP_CROSS_ENTROPY] = PAIR(cross_entropy),
    [AG_OP_GATHER_ROWS] = PAIR(gather_rows),
    [AG_OP_SCATTER_ROWS] = PAIR(scatter_rows),
    [AG_OP_GROUPED_MATMUL] = PAIR(grouped_matmul),
    [AG_OP_SQUARE] = PAIR(square),
    [AG_OP_CAST] = PAIR(cast),
    [AG_OP_CUSTOM] = PAIR(custom),
};
_Static_assert(sizeof cpu_table / sizeof cpu_table[0] == AG_OP_COUNT, "the CPU op table must cover every AG_OP_*");

const ag_op_entry *ag_cpu_op_table(void) { return cpu_table; }
