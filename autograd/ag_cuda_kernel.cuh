/* For the CUDA kernels of every folder (autograd/cuda, moe/cuda): the check macros (statement, file, line; log and
 * abort, DESIGN.md 4), the per-launch check, the backend's one stream, and fixed-order warp and block reductions (the
 * same tree every run, so reductions are deterministic). autograd/cuda/common.cuh adds the backend's internals. */
#ifndef SX_AG_CUDA_KERNEL_CUH
#define SX_AG_CUDA_KERNEL_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "autograd/sx_error.h"

/* ---- checks ------------------------------------------------------------------------------------------------------ */

#define SX_CUDA_CHECK(stmt)                                                                                           \
    do {                                                                                                              \
        cudaError_t e_ = (stmt);                                                                                      \
        if (e_ != cudaSuccess)                                                                                        \
            sx_fatal(__FILE__, __LINE__, "CUDA error %s (%s) in `%s`", cudaGetErrorName(e_), cudaGetErrorString(e_),  \
                     #stmt);                                                                                          \
    } while (0)

/* After every kernel launch: a bad launch configuration is reported at once, naming the op; with
 * SWITCHC_CUDA_SYNC=1 the stream is also synchronised, so an asynchronous fault names the launch that caused it. */
void sx_cuda_after_launch(const char *what, const char *file, int line);
#define SX_LAUNCHED(what) sx_cuda_after_launch((what), __FILE__, __LINE__)

/* The one stream of the backend (the legacy default stream; ag_cuda_stream() is its host-side name). */
static inline cudaStream_t sx_stream(void) { return (cudaStream_t)0; }

/* ---- block reductions (every thread of the block must call; at most 1024 threads) ---------------------------------- */

struct SxSum {
    template <class V> __device__ V operator()(V a, V b) const { return a + b; }
};
struct SxMax { /* NaN is ignored, as the CPU's `if (v > mx) mx = v` does */
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <class V, class F> __device__ __forceinline__ V sx_warp_reduce(V v, F f) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = f(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Every thread returns the block's result. The leading barrier lets consecutive calls reuse the shared slots. */
template <class V, class F> __device__ V sx_block_reduce(V v, F f, V identity) {
    __shared__ V sh[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = sx_warp_reduce(v, f);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < nw ? sh[lane] : identity;
        v = sx_warp_reduce(v, f);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    return sh[0];
}

#endif
