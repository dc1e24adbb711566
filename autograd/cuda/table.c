/* The CUDA backend's op table: the same entries as the CPU table (autograd/cpu/kernels.c), f32 on the device, each
 * op tested against the CPU one in tests/gpu/. Written in C, like the CPU table, for the designated initializers
 * and the _Static_assert that the table covers the enum. */
#include <string.h>

#include "autograd/ag.h"
#include "autograd/ag_cuda.h"
#include "autograd/cuda/kernels.h"

/* The caller's kernels, given device tensors: they must launch on ag_cuda_stream() (or synchronise with it). */
static void custom_fwd(ag_ctx *ctx, ag_node *n) { n->custom->forward(n->custom->user, n->in[0], n->out); }
static void custom_bwd(ag_ctx *ctx, ag_node *n) { n->custom->backward(n->custom->user, n->out->grad, ag_grad_of(ctx, n->in[0])); }

#define PAIR(op) {#op, ag_cuda_##op##_fwd, ag_cuda_##op##_bwd}

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
    [AG_OP_CUSTOM] = {"custom", custom_fwd, custom_bwd},
};
_Static_assert(sizeof cuda_table / sizeof cuda_table[0] == AG_OP_COUNT, "the CUDA op table must cover every AG_OP_*");

const ag_op_entry *ag_cuda_op_table(void) {
    const ag_op_entry *cpu = ag_op_table(AG_DEV_CPU);
    for (int i = 0; i < AG_OP_COUNT; i++) {
        SX_ASSERT(cuda_table[i].name && cuda_table[i].forward, "CUDA op table: entry %d is empty", i);
        SX_ASSERT(strcmp(cuda_table[i].name, cpu[i].name) == 0, "CUDA op table: entry %d is %s, the CPU's %s", i, cuda_table[i].name, cpu[i].name);
        SX_ASSERT(!cpu[i].backward == !cuda_table[i].backward, "CUDA op table: %s is differentiable on one device only", cpu[i].name);
    }
    return cuda_table;
}
