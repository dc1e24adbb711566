/* Index ops on the device: embedding, gather_rows, scatter_rows. One thread per element of the [rows, D] side.
 * Where several rows may land on one destination row (embedding and gather backward, scatter forward) the sums
 * use float atomicAdd: correct, but the order of the additions (and so the last bits) may change between runs.
 * In the MoE path the indices are a permutation, so no two rows collide and the results are exact. */
#include "autograd/cuda/common.cuh"

/* ---- embedding: y[i, :] = W[idx[i], :] (indices checked by the constructor) ------------------------------------------ */

__global__ void embedding_fwd_k(const float *w, const int32_t *idx, float *y, int64_t n, int64_t D) {
    SX_GRID_STRIDE(i, n) {
        int64_t r = i / D, j = i - r * D;
        y[i] = w[(int64_t)idx[r] * D + j];
    }
}
__global__ void embedding_bwd_k(const float *dy, const int32_t *idx, float *dw, int64_t n, int64_t D) {
    SX_GRID_STRIDE(i, n) {
        int64_t r = i / D, j = i - r * D;
        atomicAdd(dw + (int64_t)idx[r] * D + j, dy[i]);
    }
}

extern "C" void ag_cuda_embedding_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("embedding", n->in[0]);
    int64_t D = n->in[0]->shape[1], cnt = n->in[1]->numel * D;
    if (!cnt) return;
    embedding_fwd_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_i32(n->in[1]), sx_f32(n->out), cnt, D);
    SX_LAUNCHED("embedding");
}
extern "C" void ag_cuda_embedding_bwd(ag_ctx *ctx, ag_node *n) {
    float *dw = sx_grad(ctx, n->in[0]);
    int64_t D = n->in[0]->shape[1], cnt = n->in[1]->numel * D;
    if (!cnt) return;
    embedding_bwd_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->out->grad), sx_i32(n->in[1]), dw, cnt, D);
    SX_LAUNCHED("embedding backward");
}

/* ---- gather_rows: y[m, :] = x[idx[m], :], a zero row where idx[m] < 0 --------------------------------------------- */

__global__ void gather_fwd_k(const float *x, const int32_t *idx, float *y, int64_t n, int64_t D) {
    SX_GRID_STRIDE(i, n) {
        int64_t m = i / D, j = i - m * D;
        int32_t r = idx[m];
        y[i] = r < 0 ? 0.f : x[(int64_t)r * D + j];
    }
}
__global__ void gather_bwd_k(const float *dy, const int32_t *idx, float *dx, int64_t n, int64_t D) {
    SX_GRID_STRIDE(i, n) {
        int64_t m = i / D, j = i - m * D;
        int32_t r = idx[m];
        if (r >= 0) atomicAdd(dx + (int64_t)r * D + j, dy[i]);
    }
}

extern "C" void ag_cuda_gather_rows_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("gather_rows", n->in[0]);
    int64_t D = n->in[0]->shape[1], cnt = n->in[1]->numel * D;
    if (!cnt) return;
    gather_fwd_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_i32(n->in[1]), sx_f32(n->out), cnt, D);
    SX_LAUNCHED("gather_rows");
}
extern "C" void ag_cuda_gather_rows_bwd(ag_ctx *ctx, ag_node *n) {
    float *dx = sx_grad(ctx, n->in[0]);
    int64_t D = n->in[0]->shape[1], cnt = n->in[1]->numel * D;
    if (!cnt) return;
    gather_bwd_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->out->grad), sx_i32(n->in[1]), dx, cnt, D);
    SX_LAUNCHED("gather_rows backward");
}

/* ---- scatter_rows: y[idx[m], :] += x[m, :] into zeros; rows with idx[m] < 0 are dropped ----------------------------- */

__global__ void scatter_fwd_k(const float *x, const int32_t *idx, float *y, int64_t n, int64_t D) {
    SX_GRID_STRIDE(i, n) {
        int64_t m = i / D, j = i - m * D;
        int32_t r = idx[m];
        if (r >= 0) atomicAdd(y + (int64_t)r * D + j, x[i]);
    }
}
__global__ void scatter_bwd_k(const float *dy, const int32_t *idx, float *dx, int64_t n, int64_t D) {
    SX_GRID_STRIDE(i, n) {
        int64_t m = i / D, j = i - m * D;
        int32_t r = idx[m];
        if (r >= 0) dx[i] += dy[(int64_t)r * D + j];
    }
}

extern "C" void ag_cuda_scatter_rows_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("scatter_rows", n->in[0]);
    if (n->out->numel) ag_cuda_memset0(n->out->data, sizeof(float) * (size_t)n->out->numel);
    int64_t D = n->in[0]->shape[1], cnt = n->in[1]->numel * D;
    if (!cnt) return;
    scatter_fwd_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_i32(n->in[1]), sx_f32(n->out), cnt, D);
    SX_LAUNCHED("scatter_rows");
}
extern "C" void ag_cuda_scatter_rows_bwd(ag_ctx *ctx, ag_node *n) {
    float *dx = sx_grad(ctx, n->in[0]);
    int64_t D = n->in[0]->shape[1], cnt = n->in[1]->numel * D;
    if (!cnt) return;
    scatter_bwd_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->out->grad), sx_i32(n->in[1]), dx, cnt, D);
    SX_LAUNCHED("scatter_rows backward");
}
