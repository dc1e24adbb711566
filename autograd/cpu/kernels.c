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

/* One wrapper per kernel, choosing the instantiation by the dtype of input 0 (the op constructors guarantee that
 * all float inputs share it). */
#define DISPATCH(name)                                                                                                \
    static void name(ag_ctx *ctx, ag_node *n) {                                                                       \
        if (n->in[0]->dtype == AG_F64)                                                                                \
            name##_f64(ctx, n);                                                                                       \
        else                                                                                                          \
            name##_f32(ctx, n);                                                                                       \
    }
#define DISPATCH_PAIR(op) DISPATCH(op##_fwd) DISPATCH(op##_bwd)

DISPATCH_PAIR(matmul)
DISPATCH_PAIR(add)
DISPATCH_PAIR(mul)
DISPATCH_PAIR(scale)
DISPATCH_PAIR(square)
DISPATCH_PAIR(relu)
DISPATCH_PAIR(gelu_tanh)
DISPATCH_PAIR(gelu_erf)
DISPATCH_PAIR(act)
DISPATCH_PAIR(rmsnorm)
DISPATCH_PAIR(softmax)
DISPATCH_PAIR(logsumexp)
DISPATCH_PAIR(embedding)
DISPATCH_PAIR(gather_rows)
DISPATCH_PAIR(scatter_rows)
DISPATCH_PAIR(grouped_matmul)
DISPATCH_PAIR(dropout)
DISPATCH_PAIR(reshape)
DISPATCH_PAIR(permute)
DISPATCH_PAIR(sum)
DISPATCH_PAIR(sum_last)
DISPATCH_PAIR(cross_entropy)

/* Cast between f32 and f64: the gradient flows back converted. */
static void cast_fwd(ag_ctx *ctx, ag_node *n) {
    ag_copy(n->out, n->in[0]);
}
static void cast_bwd(ag_ctx *ctx, ag_node *n) {
    ag_tensor *dx = ag_grad_of(ctx, n->in[0]), *dy = n->out->grad;
    for (int64_t i = 0; i < dx->numel; i++) ag_set(dx, i, ag_get(dx, i) + ag_get(dy, i));
}

static void custom_fwd(ag_ctx *ctx, ag_node *n) { n->custom->forward(n->custom->user, n->in[0], n->out); }
static void custom_bwd(ag_ctx *ctx, ag_node *n) { n->custom->backward(n->custom->user, n->out->grad, ag_grad_of(ctx, n->in[0])); }

static const ag_op_entry cpu_table[] = {
    [AG_OP_MATMUL] = {"matmul", matmul_fwd, matmul_bwd},
    [AG_OP_ADD] = {"add", add_fwd, add_bwd},
    [AG_OP_MUL] = {"mul", mul_fwd, mul_bwd},
    [AG_OP_SCALE] = {"scale", scale_fwd, scale_bwd},
    [AG_OP_RELU] = {"relu", relu_fwd, relu_bwd},
    [AG_OP_GELU_TANH] = {"gelu_tanh", gelu_tanh_fwd, gelu_tanh_bwd},
    [AG_OP_GELU_ERF] = {"gelu_erf", gelu_erf_fwd, gelu_erf_bwd},
    [AG_OP_ACT] = {"act", act_fwd, act_bwd},
    [AG_OP_RMSNORM] = {"rmsnorm", rmsnorm_fwd, rmsnorm_bwd},
    [AG_OP_SOFTMAX] = {"softmax", softmax_fwd, softmax_bwd},
    [AG_OP_LOGSUMEXP] = {"logsumexp", logsumexp_fwd, logsumexp_bwd},
    [AG_OP_EMBEDDING] = {"embedding", embedding_fwd, embedding_bwd},
    [AG_OP_DROPOUT] = {"dropout", dropout_fwd, dropout_bwd},
    [AG_OP_RESHAPE] = {"reshape", reshape_fwd, reshape_bwd},
    [AG_OP_PERMUTE] = {"permute", permute_fwd, permute_bwd},
    [AG_OP_SUM] = {"sum", sum_fwd, sum_bwd},
    [AG_OP_SUM_LAST] = {"sum_last", sum_last_fwd, sum_last_bwd},
    [AG_OP_CROSS_ENTROPY] = {"cross_entropy", cross_entropy_fwd, cross_entropy_bwd},
    [AG_OP_GATHER_ROWS] = {"gather_rows", gather_rows_fwd, gather_rows_bwd},
    [AG_OP_SCATTER_ROWS] = {"scatter_rows", scatter_rows_fwd, scatter_rows_bwd},
    [AG_OP_GROUPED_MATMUL] = {"grouped_matmul", grouped_matmul_fwd, grouped_matmul_bwd},
    [AG_OP_SQUARE] = {"square", square_fwd, square_bwd},
    [AG_OP_CAST] = {"cast", cast_fwd, cast_bwd},
    [AG_OP_CUSTOM] = {"custom", custom_fwd, custom_bwd},
};
_Static_assert(sizeof cpu_table / sizeof cpu_table[0] == AG_OP_COUNT, "the CPU op table must cover every AG_OP_*");

const ag_op_entry *ag_cpu_op_table(void) {
    for (int i = 0; i < AG_OP_COUNT; i++) SX_ASSERT(cpu_table[i].name && cpu_table[i].forward, "CPU op table: entry %d is empty", i);
    return cpu_table;
}
