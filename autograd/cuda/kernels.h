/* The CUDA op kernels' host entry points (defined in autograd/cuda/k_*.cu, and table.c for custom), declared for
 * the op table (table.c): ag_cuda_<name>_fwd and ag_cuda_<name>_bwd for every op of autograd/ag_ops.def (an op
 * without a gradient, or one the table marks AG_UNSUPPORTED, leaves the undefined ones unreferenced).
 * Forward functions fill n->out; backward functions ADD into the inputs' gradients, as on the CPU. */
#ifndef SX_CUDA_KERNELS_H
#define SX_CUDA_KERNELS_H

#include "autograd/ag.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AG_OP(E, name, grad)                                                                                          \
    void ag_cuda_##name##_fwd(ag_ctx *ctx, ag_node *node);                                                            \
    void ag_cuda_##name##_bwd(ag_ctx *ctx, ag_node *node);
#include "autograd/ag_ops.def"

#ifdef __cplusplus
}
#endif
#endif
