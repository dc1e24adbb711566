/* The CUDA op kernels' host entry points (defined in autograd/cuda/k_*.cu), declared for the op table (table.c).
 * Forward functions fill n->out; backward functions ADD into the inputs' gradients, as on the CPU. */
#ifndef SX_CUDA_KERNELS_H
#define SX_CUDA_KERNELS_H

#include "autograd/ag.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SX_CUDA_PAIR(op)                                                                                              \
    void ag_cuda_##op##_fwd(ag_ctx *ctx, ag_node *n);                                                                 \
    void ag_cuda_##op##_bwd(ag_ctx *ctx, ag_node *n);

SX_CUDA_PAIR(matmul)
SX_CUDA_PAIR(add)
SX_CUDA_PAIR(mul)
SX_CUDA_PAIR(scale)
SX_CUDA_PAIR(relu)
SX_CUDA_PAIR(gelu_tanh)
SX_CUDA_PAIR(gelu_erf)
SX_CUDA_PAIR(act)
SX_CUDA_PAIR(rmsnorm)
SX_CUDA_PAIR(softmax)
SX_CUDA_PAIR(logsumexp)
SX_CUDA_PAIR(embedding)
SX_CUDA_PAIR(dropout)
SX_CUDA_PAIR(reshape)
SX_CUDA_PAIR(permute)
SX_CUDA_PAIR(sum)
SX_CUDA_PAIR(sum_last)
SX_CUDA_PAIR(cross_entropy)
SX_CUDA_PAIR(gather_rows)
SX_CUDA_PAIR(scatter_rows)
SX_CUDA_PAIR(grouped_matmul)
SX_CUDA_PAIR(square)
SX_CUDA_PAIR(cast)

#undef SX_CUDA_PAIR

#ifdef __cplusplus
}
#endif
#endif
