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

/* Generated from ag_ops.def like the CPU table: every op has its ag_cuda_<name>_fwd/_bwd (cuda/kernels.h). An op
 * without a CUDA kernel would get a pair of wrappers that abort with the reason, or an AG_UNSUPPORTED("why") entry
 * in place of this generated list. */
static const ag_op_entry cuda_table[] = {
#define ENTRY_AG_GRAD(op) PAIR(op)
#define ENTRY_AG_NOGRAD(op) {ag_cuda_##op##_fwd, NULL, NULL}
#define AG_OP(E, name, grad) [AG_OP_##E] = ENTRY_##grad(name),
#include "autograd/ag_ops.def"
#undef ENTRY_AG_GRAD
#undef ENTRY_AG_NOGRAD
};
_Static_assert(sizeof cuda_table / sizeof cuda_table[0] == AG_OP_COUNT, "the CUDA op table must cover every AG_OP_*");

const ag_op_entry *ag_cuda_op_table(void) { return cuda_table; }
