/* Shared by the .cu files of moe/cuda: launch sizes and small host helpers for the host-copy test wrappers. The check
 * macros, the stream and the fixed-tree block sum come from autograd/ag_cuda_kernel.cuh, as for every folder's kernels. */
#ifndef SX_MOE_CUDA_COMMON_CUH
#define SX_MOE_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "autograd/ag_cuda_kernel.cuh"

/* Blocks for a grid-stride loop over n items with 'threads' per block, capped (the loops cover any n). */
static inline unsigned moe_blocks(int64_t n, int threads, int64_t cap) {
    int64_t b = (n + threads - 1) / threads;
    if (b > cap) b = cap;
    return (unsigned)(b < 1 ? 1 : b);
}
#define MOE_MAX_BLOCKS ((int64_t)1 << 16)

/* ---- host helpers for the *_host wrappers ------------------------------------------------------------------------ */

static inline bool moe_have_device(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the "no device" error so later checks report their own */
        return false;
    }
    return n > 0;
}
/* At least 16 bytes, so that empty arrays are valid distinct pointers. */
static inline void *moe_dev_alloc(size_t bytes) {
    void *p = NULL;
    SX_CUDA_CHECK(cudaMalloc(&p, bytes > 16 ? bytes : 16));
    return p;
}
static inline void *moe_dev_upload(const void *h, size_t bytes) {
    void *d = moe_dev_alloc(bytes);
    if (bytes) SX_CUDA_CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    return d;
}
static inline void moe_dev_download(void *h, const void *d, size_t bytes) {
    if (bytes) SX_CUDA_CHECK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
}

#endif
