/* Shared by the CUDA backend's .cu files, on top of autograd/ag_cuda_kernel.cuh (checks, stream, reductions): the
 * cuBLAS check and handle, tensor accessors, launch helpers, the argmax reduction, and the device twins of the CPU's
 * Philox and bf16 rounding (bit-identical by construction: the same integer operations). */
#ifndef SX_CUDA_COMMON_CUH
#define SX_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "autograd/ag.h"
#include "autograd/ag_cuda.h"
#include "autograd/ag_cuda_kernel.cuh"
#include "autograd/ag_internal.h"

/* ---- cuBLAS ------------------------------------------------------------------------------------------------------ */

#define SX_CUBLAS_CHECK(stmt)                                                                                         \
    do {                                                                                                              \
        cublasStatus_t s_ = (stmt);                                                                                   \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                                              \
            sx_fatal(__FILE__, __LINE__, "cuBLAS error %s (%s) in `%s`", cublasGetStatusName(s_),                    \
                     cublasGetStatusString(s_), #stmt);                                                               \
    } while (0)

/* The cuBLAS handle bound to the backend's stream (created on first use). */
cublasHandle_t sx_cublas(void);

/* Device scratch from the context's activation arena (reset with it, so no cudaMalloc after the first step). */
static inline void *sx_scratch(ag_ctx *ctx, size_t bytes) {
    SX_ASSERT(ctx->act && ctx->act->device == AG_DEV_CUDA, "CUDA op: the context's arena is not a device arena");
    return ag_arena_alloc(ctx->act, bytes);
}

/* ---- tensors ------------------------------------------------------------------------------------------------------ */

#define SX_REQUIRE_F32(op, t)                                                                                         \
    SX_ASSERT((t)->dtype == AG_F32, "%s on CUDA: f32 tensors only, got %s (f64 runs on the CPU; bf16 through ag_cast)", \
              (op), ag_dtype_name((t)->dtype))

static inline float *sx_f32(const ag_tensor *t) { return (float *)t->data; }
static inline const int32_t *sx_i32(const ag_tensor *t) { return (const int32_t *)t->data; }
static inline bool sx_needs(const ag_tensor *t) { return t && t->requires_grad; }
static inline float *sx_grad(ag_ctx *ctx, ag_tensor *t) {
    ag_tensor *g = ag_grad_of(ctx, t);
    SX_ASSERT(g->dtype == AG_F32 && g->device == AG_DEV_CUDA, "CUDA backward: gradient of %s must be an f32 device tensor",
              t->name ? t->name : "a tensor");
    return (float *)g->data;
}
static inline int64_t sx_last_dim(const ag_tensor *t) { return t->shape[t->ndim - 1]; }

/* ---- launches ----------------------------------------------------------------------------------------------------- */

#define SX_THREADS 256
/* Blocks for a grid-stride loop over n elements: capped, so any n (also beyond 2^31) is covered by the loop. */
static inline unsigned sx_blocks(int64_t n) {
    int64_t b = (n + SX_THREADS - 1) / SX_THREADS;
    if (b > (1 << 20)) b = 1 << 20;
    return (unsigned)(b < 1 ? 1 : b);
}
/* Blocks for one-block-per-row kernels, which loop over rows with stride gridDim.x. */
static inline unsigned sx_row_blocks(int64_t rows) { return (unsigned)(rows > (1 << 20) ? (1 << 20) : (rows < 1 ? 1 : rows)); }

#define SX_GRID_STRIDE(i, n)                                                                                          \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)
#define SX_ROWS(r, rows) for (int64_t r = blockIdx.x; r < (rows); r += gridDim.x)

/* ---- the CPU's generators and conversions, bit for bit ------------------------------------------------------------ */

/* ag_philox (autograd/rng.c): Philox4x32-10 with counter (index, key.counter_hi) and key key.key. */
__device__ __forceinline__ void sx_philox(uint64_t key, uint64_t counter_hi, uint64_t index, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)index, c1 = (uint32_t)(index >> 32), c2 = (uint32_t)counter_hi, c3 = (uint32_t)(counter_hi >> 32);
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
#pragma unroll
    for (int r = 0; r < 10; r++) {
        uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0; /* the 64-bit product p0 */
        uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2; /* p1 */
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c1 = lo1;
        c3 = lo0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* ag_rng_uniform: the top 24 bits of word 0 over 2^24 (exact in float). */
__device__ __forceinline__ float sx_rng_uniform(uint64_t key, uint64_t counter_hi, uint64_t index) {
    uint32_t o[4];
    sx_philox(key, counter_hi, index, o);
    return (float)(o[0] >> 8) * (1.0f / 16777216.0f);
}

/* ag_rng_words: word (i & 3) of the Philox block i >> 2. */
__device__ __forceinline__ uint32_t sx_rng_word(uint64_t key, uint64_t counter_hi, uint64_t i) {
    uint32_t o[4];
    sx_philox(key, counter_hi, i >> 2, o);
    return o[i & 3];
}

/* ag_bf16_from_f32: round to nearest even, NaN kept quiet. */
__device__ __forceinline__ uint16_t sx_bf16_from_f32(float x) {
    uint32_t u = __float_as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (uint16_t)((u >> 16) | 0x0040u);
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + rounding) >> 16);
}
__device__ __forceinline__ float sx_f32_from_bf16(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }

/* ---- shared helpers between the .cu files ------------------------------------------------------------------------- */

/* Broadcast reduction: dst (shape t4, contiguous) += sum over the axes where t4 is 1 and o4 is not of
 * src[k] * (other ? other[k'] : 1), src and k in the output shape o4, other read through its broadcast strides so.
 * One thread per dst element, a fixed order: deterministic. */
struct SxReduce {
    int64_t t4[4], o4[4], ostride[4], so[4];
    int red[4];
    int64_t R; /* product of o4 over the reduced axes */
};
void sx_bcast_reduce_add(const char *what, float *dst, const ag_tensor *dst_t, const ag_tensor *out_shape, const float *src,
                         const float *other, const ag_tensor *other_t);
/* dst[i] += src[i] for n floats (src NULL: += 1). */
void sx_add_into(const char *what, float *dst, const float *src, int64_t n);
/* y[i] = bf16(x[i]) with the CPU's rounding, queued on the stream. */
void sx_f32_to_bf16(const char *what, const float *x, uint16_t *y, int64_t n);

#endif
