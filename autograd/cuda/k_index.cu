/* Index ops on the device: embedding, gather_rows, scatter_rows. One thread per element of the [rows, D] side.
 * Where several rows may land on one destination row (embedding and gather backward, scatter forward) the sums
 * use float atomicAdd: correct, but the order of the additions (and so the last bits) may change between runs.
 * In the MoE path the indices are a permutation, so no two rows collide and the results are exact. */
#include "autograd/cuda/common.cuh"

/* Every index op is one of three row movements over [M, D] rows, idx[m] < 0 marking a row that moves nowhere (as
 * autograd/cpu/kernels_t.h): gather y[m] = x[idx[m]] (zero where idx[m] < 0), scatter-add y[idx[m]] += x[m] (atomic),
 * gather-add y[m] += x[idx[m]]. embedding and gather_rows gather forward and scatter-add backward; scatter_rows
 * scatter-adds into zeros forward and gather-adds backward. The embedding's indices are checked by its constructor.
 * n counts elements, M * D. */

__global__ void gather_k(const float *x, const int32_t *idx, float *y, int64_t n, int64_t D) {
    SX_GRID_STRIDE(i, n) {
        int64_t m = i / D, j = i - m * D;
        int32_t r = idx[m];
        y[i] = r < 0 ? 0.f : x[(int64_t)r * D + j];
    }
}
__global__ void scatter_add_k(const float *x, const int32_t *idx, float *y, int64_t n, int64_t D) {
    SX_GRID_STRIDE(i, n) {
        int64_t m = i / D, j = i - m * D;
        int32_t r = idx[m];
        if (r >= 0) atomicAdd(y + (int64_t)r * D + j, x[i]);
    }
}
__global__ void gather_add_k(const float *x, const int32_t *idx, float *y, int64_t n, int64_t D) {
    SX_GRID_STRIDE(i, n) {
        int64_t m = i / D, j = i - m * D;
        int32_t r = idx[m];
        if (r >= 0) y[i] += x[(int64_t)r * D + j];
    }
}

typedef void (*rows_kernel)(const float *, const int32_t *, float *, int64_t, int64_t);

/* One row movement of node n: src and dst as the kernel reads and writes them, D the row width of in[0]. */
static void launch_rows(rows_kernel k, const ag_node *n, const float *src, float *dst, const char *what) {
    int64_t D = n->in[0]->shape[1], cnt = n->in[1]->numel * D;
    if (!cnt) return;
    k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(src, sx_i32(n->in[1]), dst, cnt, D);
    SX_LAUNCHED(what);
}

extern "C" void ag_cuda_embedding_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("embedding", n->in[0]);
    launch_rows(gather_k, n, sx_f32(n->in[0]), sx_f32(n->out), "embedding");
}
extern "C" void ag_cuda_embedding_bwd(ag_ctx *ctx, ag_node *n) {
    launch_rows(scatter_add_k, n, sx_f32(n->out->grad), sx_grad(ctx, n->in[0]), "embedding backward");
}
extern "C" void ag_cuda_gather_rows_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("gather_rows", n->in[0]);
    launch_rows(gather_k, n, sx_f32(n->in[0]), sx_f32(n->out), "gather_rows");
}
extern "C" void ag_cuda_gather_rows_bwd(ag_ctx *ctx, ag_node *n) {
    launch_rows(scatter_add_k, n, sx_f32(n->out->grad), sx_grad(ctx, n->in[0]), "gather_rows backward");
}
extern "C" void ag_cuda_scatter_rows_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("scatter_rows", n->in[0]);
    if (n->out->numel) ag_cuda_memset0(n->out->data, sizeof(float) * (size_t)n->out->numel);
    launch_rows(scatter_add_k, n, sx_f32(n->in[0]), sx_f32(n->out), "scatter_rows");
}
extern "C" void ag_cuda_scatter_rows_bwd(ag_ctx *ctx, ag_node *n) {
    launch_rows(gather_add_k, n, sx_f32(n->out->grad), sx_grad(ctx, n->in[0]), "scatter_rows backward");
}
