/* Shared by the .cu files of moe/cuda: the check macros (statement, file, line; log and abort, DESIGN.md 4), launch
 * sizes, the block sum in a fixed tree, and small host helpers for the host-copy test wrappers. moe/ keeps its own copy
 * of these few lines rather than reaching into autograd/cuda's internals. */
#ifndef SX_MOE_CUDA_COMMON_CUH
#define SX_MOE_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "autograd/sx_error.h"

#define MOE_CUDA_CHECK(stmt)                                                                                          \
    do {                                                                                                              \
        cudaError_t e_ = (stmt);                                                                                      \
        if (e_ != cudaSuccess)                                                                                        \
            sx_fatal(__FILE__, __LINE__, "CUDA error %s (%s) in `%s`", cudaGetErrorName(e_), cudaGetErrorString(e_),  \
                     #stmt);                                                                                          \
    } while (0)

/* After each launch: a bad configuration is reported at once, naming the kernel. Faults inside a kernel surface at
 * the next checked call on the stream (SWITCHC_CUDA_SYNC=1 in autograd/ makes the backend synchronise per op). */
#define MOE_LAUNCHED(what)                                                                                            \
    do {                                                                                                              \
        cudaError_t e_ = cudaGetLastError();                                                                          \
        if (e_ != cudaSuccess)                                                                                        \
            sx_fatal(__FILE__, __LINE__, "CUDA error %s (%s) launching %s", cudaGetErrorName(e_), cudaGetErrorString(e_), \
                     (what));                                                                                         \
    } while (0)

/* The one stream of the backend: the legacy default stream (autograd/ag_cuda.h). */
#define MOE_STREAM ((cudaStream_t)0)

/* Blocks for a grid-stride loop over n items with 'threads' per block, capped (the loops cover any n). */
static inline unsigned moe_blocks(int64_t n, int threads, int64_t cap) {
    int64_t b = (n + threads - 1) / threads;
    if (b > cap) b = cap;
    return (unsigned)(b < 1 ? 1 : b);
}
#define MOE_MAX_BLOCKS ((int64_t)1 << 16)

/* Sum over the block (blockDim.x a multiple of 32, at most 1024), a fixed tree: every thread gets the result. Every
 * thread of the block must call it; the trailing barrier lets the caller call it again at once. */
template <class V> __device__ V moe_block_sum(V v) {
    __shared__ V sh[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < nw ? sh[lane] : (V)0;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

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
    MOE_CUDA_CHECK(cudaMalloc(&p, bytes > 16 ? bytes : 16));
    return p;
}
static inline void *moe_dev_upload(const void *h, size_t bytes) {
    void *d = moe_dev_alloc(bytes);
    if (bytes) MOE_CUDA_CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    return d;
}
static inline void moe_dev_download(void *h, const void *d, size_t bytes) {
    if (bytes) MOE_CUDA_CHECK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
}

#endif
