/* The CUDA backend's op table: an entry for every op of autograd/ag_ops.def, f32 on the device, each op tested
 * against the CPU one (tests/gpu/test_gpu_ops.c). Written in C, like the CPU table, for the designated
 * initialisers indexed by the enum; checked against ag_ops.def when first used (ag_op_table_checked): a missing
 * entry aborts naming the op. An op without a CUDA kernel gets AG_UNSUPPORTED("why"): running it in a CUDA context
 * aborts with that reason, and the CPU-vs-CUDA test reports it instead of comparing. */
#include "autograd/ag.h"
#include "autograd/ag_cuda.h"
#include "autograd/cuda/kernels.h"

/* The caller's kernels, given device tensors: they must launch on ag_cuda_stream() (or synchronise with it). */
void ag_cuda_custom_fwd(ag_ctx *ctx, ag_node *n) { n->custom->forward(n->custom->user, n->in[0], n->out); }
void ag_cuda_custom_bwd(ag_ctx *ctx, ag_node *n) {
    n->custom->backward(n->custom->user, n->out->grad, ag_grad_of(ctx, n->in[0]));
}

#define PAIR(op) {ag_cuda_##op##_fwd, ag_cuda_##op##_bwd, NULL}

static const ag_op_entry cuda_table[] = {
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
_Static_assert(sizeof cuda_table / sizeof cuda_table[0] == AG_OP_COUNT, "the CUDA op table must cover every AG_OP_*");

const ag_op_entry *ag_cuda_op_table(void) { return cuda_table; }
