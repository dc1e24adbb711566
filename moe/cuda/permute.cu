/* Token permutation of the Switch layer on the device (moe/moe_cuda.h): the gather of the kept rows by perm, the
 * gated combine back to token order, and their backward. Where several rows meet one token (top-2), one thread owns
 * the token's element and adds its rows through slot (route's inverse of perm) in a fixed order: no atomics, and the
 * same roundings as the CPU's row-order scatter. Products and sums use __fmul_rn / __fadd_rn so that nvcc does not
 * fuse them into an FMA the CPU path does not have. */
#include "moe/cuda/moe_cuda_common.cuh"
#include "moe/moe_cuda.h"

namespace {

constexpr int THREADS = 256, ROW_THREADS = 128;

#define FOR_ELEMS(i, n) for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__global__ void permute_k(const float *__restrict__ x, const int32_t *__restrict__ perm, int64_t Nk, int64_t D, float *__restrict__ xe) {
    FOR_ELEMS(i, Nk * D) {
        const int64_t r = i / D, d = i - r * D;
        xe[i] = x[(int64_t)perm[r] * D + d];
    }
}

/* The two rows of a token in increasing row order (-1: none), so the sums round as the CPU's loop over rows does. */
__host__ __device__ inline void rows_of(const int32_t *slot, int64_t t, int K, int32_t *a, int32_t *b) {
    int32_t s0 = slot[t * K], s1 = K == 2 ? slot[t * K + 1] : -1;
    if (s0 < 0 || (s1 >= 0 && s1 < s0)) {
        const int32_t tmp = s0;
        s0 = s1;
        s1 = tmp;
    }
    *a = s0; /* kept rows first, the smaller first */
    *b = s1;
}

__global__ void permute_bwd_k(const float *__restrict__ dxe, const int32_t *__restrict__ slot, int64_t N, int K, int64_t D, float *__restrict__ dx) {
    FOR_ELEMS(i, N * D) {
        const int64_t t = i / D, d = i - t * D;
        int32_t a, b;
        rows_of(slot, t, K, &a, &b);
        float acc = dx[i];
        if (a >= 0) acc = __fadd_rn(acc, dxe[(int64_t)a * D + d]);
        if (b >= 0) acc = __fadd_rn(acc, dxe[(int64_t)b * D + d]);
        dx[i] = acc;
    }
}

__global__ void unpermute_k(const float *__restrict__ ye, const float *__restrict__ probs, const int32_t *__restrict__ gidx,
                            const int32_t *__restrict__ slot, int64_t N, int K, int64_t D, float *__restrict__ y) {
    FOR_ELEMS(i, N * D) {
        const int64_t t = i / D, d = i - t * D;
        int32_t a, b;
        rows_of(slot, t, K, &a, &b);
        float acc = 0.0f; /* the CPU scatters into zeros */
        if (a >= 0) acc = __fadd_rn(acc, __fmul_rn(ye[(int64_t)a * D + d], probs[gidx[a]]));
        if (b >= 0) acc = __fadd_rn(acc, __fmul_rn(ye[(int64_t)b * D + d], probs[gidx[b]]));
        y[i] = acc;
    }
}

/* One block per row r (block-uniform loop, so every thread reaches the block sum). */
__global__ void __launch_bounds__(ROW_THREADS) unpermute_bwd_k(const float *__restrict__ dy, const float *__restrict__ ye,
                                                                const float *__restrict__ probs, const int32_t *__restrict__ perm,
                                                                const int32_t *__restrict__ gidx, int64_t Nk, int64_t D,
                                                                float *__restrict__ dye, float *__restrict__ dgate, float *__restrict__ dprobs) {
    for (int64_t r = blockIdx.x; r < Nk; r += gridDim.x) {
        const float *dyr = dy + (int64_t)perm[r] * D;
        const float *yer = ye + r * D;
        const float gate = probs[gidx[r]];
        float dot = 0.0f;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            const float g = dyr[d];
            if (dye) dye[r * D + d] = __fadd_rn(dye[r * D + d], __fmul_rn(g, gate));
            dot = __fadd_rn(dot, __fmul_rn(g, yer[d]));
        }
        dot = sx_block_reduce(dot, SxSum(), 0.0f);
        if (threadIdx.x == 0) {
            if (dgate) dgate[r] = dot;
            if (dprobs) dprobs[gidx[r]] += dot; /* gidx has no repeats: one writer per element */
        }
    }
}

void check_k(int K) { SX_ASSERT(K == 1 || K == 2, "moe permutation: top-%d routing (1 or 2)", K); }

} // namespace

extern "C" bool moe_cuda_permute(const float *x, const int32_t *perm, int64_t Nk, int64_t D, float *xe) {
    if (Nk * D == 0) return true;
    permute_k<<<moe_blocks(Nk * D, THREADS, MOE_MAX_BLOCKS), THREADS, 0, sx_stream()>>>(x, perm, Nk, D, xe);
    SX_LAUNCHED("permute_k");
    return true;
}

extern "C" bool moe_cuda_permute_backward(const float *dxe, const int32_t *slot, int64_t N, int K, int64_t D, float *dx) {
    check_k(K);
    if (N * D == 0) return true;
    permute_bwd_k<<<moe_blocks(N * D, THREADS, MOE_MAX_BLOCKS), THREADS, 0, sx_stream()>>>(dxe, slot, N, K, D, dx);
    SX_LAUNCHED("permute_bwd_k");
    return true;
}

extern "C" bool moe_cuda_unpermute(const float *ye, const float *probs, const int32_t *gidx, const int32_t *slot, int64_t N, int K, int64_t D,
                                   float *y) {
    check_k(K);
    if (N * D == 0) return true;
    unpermute_k<<<moe_blocks(N * D, THREADS, MOE_MAX_BLOCKS), THREADS, 0, sx_stream()>>>(ye, probs, gidx, slot, N, K, D, y);
    SX_LAUNCHED("unpermute_k");
    return true;
}

extern "C" bool moe_cuda_unpermute_backward(const float *dy, const float *ye, const float *probs, const int32_t *perm, const int32_t *gidx,
                                            int64_t Nk, int64_t D, float *dye, float *dgate, float *dprobs) {
    if (Nk == 0) return true;
    /* D == 0 still runs: dgate = 0 for every row */
    const unsigned blocks = (unsigned)(Nk < MOE_MAX_BLOCKS ? Nk : MOE_MAX_BLOCKS);
    unpermute_bwd_k<<<blocks, ROW_THREADS, 0, sx_stream()>>>(dy, ye, probs, perm, gidx, Nk, D, dye, dgate, dprobs);
    SX_LAUNCHED("unpermute_bwd_k");
    return true;
}

/* ---- host-memory wrappers for the tests --------------------------------------------------------------------------- */

extern "C" bool moe_cuda_permute_host(const float *x, int64_t N, const int32_t *perm, int64_t Nk, int64_t D, float *xe) {
    if (!moe_have_device()) return false;
    float *dx = (float *)moe_dev_upload(x, sizeof(float) * (size_t)(N * D)), *dxe = (float *)moe_dev_alloc(sizeof(float) * (size_t)(Nk * D));
    int32_t *dp = (int32_t *)moe_dev_upload(perm, sizeof(int32_t) * (size_t)Nk);
    moe_cuda_permute(dx, dp, Nk, D, dxe);
    moe_dev_download(xe, dxe, sizeof(float) * (size_t)(Nk * D));
    SX_CUDA_CHECK(cudaFree(dx));
    SX_CUDA_CHECK(cudaFree(dxe));
    SX_CUDA_CHECK(cudaFree(dp));
    return true;
}

extern "C" bool moe_cuda_permute_backward_host(const float *dxe, int64_t Nk, const int32_t *slot, int64_t N, int K, int64_t D, float *dx) {
    if (!moe_have_device()) return false;
    float *ddxe = (float *)moe_dev_upload(dxe, sizeof(float) * (size_t)(Nk * D)), *ddx = (float *)moe_dev_upload(dx, sizeof(float) * (size_t)(N * D));
    int32_t *ds = (int32_t *)moe_dev_upload(slot, sizeof(int32_t) * (size_t)(N * K));
    moe_cuda_permute_backward(ddxe, ds, N, K, D, ddx);
    moe_dev_download(dx, ddx, sizeof(float) * (size_t)(N * D));
    SX_CUDA_CHECK(cudaFree(ddxe));
    SX_CUDA_CHECK(cudaFree(ddx));
    SX_CUDA_CHECK(cudaFree(ds));
    return true;
}

extern "C" bool moe_cuda_unpermute_host(const float *ye, int64_t Nk, const float *probs, int E, const int32_t *gidx, const int32_t *slot, int64_t N,
                                        int K, int64_t D, float *y) {
    if (!moe_have_device()) return false;
    float *dye = (float *)moe_dev_upload(ye, sizeof(float) * (size_t)(Nk * D)), *dp = (float *)moe_dev_upload(probs, sizeof(float) * (size_t)(N * E));
    int32_t *dg = (int32_t *)moe_dev_upload(gidx, sizeof(int32_t) * (size_t)Nk), *ds = (int32_t *)moe_dev_upload(slot, sizeof(int32_t) * (size_t)(N * K));
    float *dy = (float *)moe_dev_alloc(sizeof(float) * (size_t)(N * D));
    moe_cuda_unpermute(dye, dp, dg, ds, N, K, D, dy);
    moe_dev_download(y, dy, sizeof(float) * (size_t)(N * D));
    void *bufs[] = {dye, dp, dg, ds, dy};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) SX_CUDA_CHECK(cudaFree(bufs[i]));
    return true;
}

extern "C" bool moe_cuda_unpermute_backward_host(const float *dy, int64_t N, const float *ye, const float *probs, int E, const int32_t *perm,
                                                 const int32_t *gidx, int64_t Nk, int64_t D, float *dye, float *dgate, float *dprobs) {
    if (!moe_have_device()) return false;
    float *ddy = (float *)moe_dev_upload(dy, sizeof(float) * (size_t)(N * D)), *dye_in = (float *)moe_dev_upload(ye, sizeof(float) * (size_t)(Nk * D));
    float *dp = (float *)moe_dev_upload(probs, sizeof(float) * (size_t)(N * E));
    int32_t *dperm = (int32_t *)moe_dev_upload(perm, sizeof(int32_t) * (size_t)Nk), *dg = (int32_t *)moe_dev_upload(gidx, sizeof(int32_t) * (size_t)Nk);
    float *ddye = dye ? (float *)moe_dev_upload(dye, sizeof(float) * (size_t)(Nk * D)) : NULL;
    float *ddgate = dgate ? (float *)moe_dev_alloc(sizeof(float) * (size_t)Nk) : NULL;
    float *ddprobs = dprobs ? (float *)moe_dev_upload(dprobs, sizeof(float) * (size_t)(N * E)) : NULL;
    moe_cuda_unpermute_backward(ddy, dye_in, dp, dperm, dg, Nk, D, ddye, ddgate, ddprobs);
    if (dye) moe_dev_download(dye, ddye, sizeof(float) * (size_t)(Nk * D));
    if (dgate) moe_dev_download(dgate, ddgate, sizeof(float) * (size_t)Nk);
    if (dprobs) moe_dev_download(dprobs, ddprobs, sizeof(float) * (size_t)(N * E));
    void *bufs[] = {ddy, dye_in, dp, dperm, dg, ddye, ddgate, ddprobs};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) SX_CUDA_CHECK(cudaFree(bufs[i]));
    return true;
}
