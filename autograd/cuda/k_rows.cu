/* Row-wise ops on the device, one block of SX_THREADS per row (rows looped with stride gridDim.x): rmsnorm (fp32
 * statistics, sums in double as on the CPU), softmax with additive bias and mask (fully masked rows come out
 * uniform exactly as on the CPU: the same float additions make every entry equal), logsumexp, cross-entropy
 * (the row's logsumexp is the only thing stored; the backward recomputes the probabilities) and the whole-tensor
 * sum (two passes with a fixed number of partials: deterministic). */
#include <math.h>

#include "autograd/cuda/common.cuh"

/* ---- rmsnorm: y = w * (x * rs), rs = 1 / sqrt(mean(x^2) + eps) saved per row ---------------------------------------- */

__global__ void rmsnorm_fwd_k(const float *x, const float *w, float *y, float *rstd, int64_t rows, int64_t D, float eps) {
    SX_ROWS(r, rows) {
        const float *xr = x + r * D;
        double ss = 0;
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) ss += (double)xr[j] * xr[j];
        ss = sx_block_reduce(ss, SxSum(), 0.0);
        float v = (float)(ss / (double)D);
        float rs = 1.0f / sqrtf(v + eps);
        if (threadIdx.x == 0) rstd[r] = rs;
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) y[r * D + j] = w[j] * (xr[j] * rs);
    }
}

extern "C" void ag_cuda_rmsnorm_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("rmsnorm", n->in[0]);
    int64_t D = sx_last_dim(n->in[0]), rows = D ? n->in[0]->numel / D : 0;
    if (!rows) return;
    rmsnorm_fwd_k<<<sx_row_blocks(rows), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_f32(n->in[1]), sx_f32(n->out),
                                                                        sx_f32(n->saved[0]), rows, D, (float)n->fp[0]);
    SX_LAUNCHED("rmsnorm");
}

/* dx[r, j] += rs (g w - x rs m), m = mean_j(g w x rs) (the dot in double, as the CPU) */
__global__ void rmsnorm_dx_k(const float *x, const float *w, const float *dy, const float *rstd, float *dx, int64_t rows, int64_t D) {
    SX_ROWS(r, rows) {
        const float *xr = x + r * D, *g = dy + r * D;
        float rs = rstd[r];
        double dot = 0;
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) dot += (double)g[j] * w[j] * xr[j] * rs;
        dot = sx_block_reduce(dot, SxSum(), 0.0);
        float m = (float)(dot / (double)D);
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) dx[r * D + j] += rs * (g[j] * w[j] - xr[j] * rs * m);
    }
}

/* dw[j] += sum_r g x rs: a column sum in two deterministic passes. Pass 1: block (32, 8) covers 32 columns of one
 * chunk of rows and writes one double partial per (chunk, column); pass 2 adds the chunks in order. */
#define COL_TX 32
#define COL_TY 8
__global__ void rmsnorm_dw_partial_k(const float *x, const float *dy, const float *rstd, double *part, int64_t rows, int64_t D,
                                     int64_t rows_per_chunk) {
    __shared__ double sh[COL_TY][COL_TX + 1];
    int64_t j = (int64_t)blockIdx.x * COL_TX + threadIdx.x, chunk = blockIdx.y;
    int64_t r0 = chunk * rows_per_chunk, r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    double acc = 0;
    if (j < D)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += COL_TY) acc += (double)(dy[r * D + j] * x[r * D + j] * rstd[r]);
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < D) {
        double s = 0;
        for (int k = 0; k < COL_TY; k++) s += sh[k][threadIdx.x];
        part[chunk * D + j] = s;
    }
}
__global__ void col_finish_k(const double *part, float *dst, int64_t chunks, int64_t D) {
    SX_GRID_STRIDE(j, D) {
        double s = 0;
        for (int64_t c = 0; c < chunks; c++) s += part[c * D + j];
        dst[j] += (float)s;
    }
}

extern "C" void ag_cuda_rmsnorm_bwd(ag_ctx *ctx, ag_node *n) {
    const float *x = sx_f32(n->in[0]), *w = sx_f32(n->in[1]), *dy = sx_f32(n->out->grad), *rstd = sx_f32(n->saved[0]);
    int64_t D = sx_last_dim(n->in[0]), rows = D ? n->in[0]->numel / D : 0;
    float *dx = sx_needs(n->in[0]) ? sx_grad(ctx, n->in[0]) : NULL;
    float *dw = sx_needs(n->in[1]) ? sx_grad(ctx, n->in[1]) : NULL;
    if (!rows) return;
    if (dw) {
        int64_t chunks = (rows + 63) / 64;
        if (chunks > 1024) chunks = 1024;
        int64_t per = (rows + chunks - 1) / chunks;
        chunks = (rows + per - 1) / per;
        int64_t col_blocks = (D + COL_TX - 1) / COL_TX;
        SX_ASSERT(col_blocks <= INT32_MAX, "rmsnorm backward on CUDA: D = %lld is too large", (long long)D);
        double *part = (double *)sx_scratch(ctx, sizeof(double) * (size_t)(chunks * D));
        rmsnorm_dw_partial_k<<<dim3((unsigned)col_blocks, (unsigned)chunks), dim3(COL_TX, COL_TY), 0, sx_stream()>>>(x, dy, rstd, part, rows, D, per);
        SX_LAUNCHED("rmsnorm backward (dw partials)");
        col_finish_k<<<sx_blocks(D), SX_THREADS, 0, sx_stream()>>>(part, dw, chunks, D);
        SX_LAUNCHED("rmsnorm backward (dw)");
    }
    if (dx) {
        rmsnorm_dx_k<<<sx_row_blocks(rows), SX_THREADS, 0, sx_stream()>>>(x, w, dy, rstd, dx, rows, D);
        SX_LAUNCHED("rmsnorm backward (dx)");
    }
}

/* ---- softmax(x + (bias + mask)) over the last dim, bias and mask broadcast ------------------------------------------ */

struct RowBcast {
    int64_t o[4];    /* x's shape padded to 4 dims; rows = o0 o1 o2, D = o3 */
    int64_t sb[4], sm[4];
};

__device__ __forceinline__ int64_t row_offset(const int64_t o[4], const int64_t s[4], int64_t r) {
    int64_t i2 = r % o[2], t = r / o[2];
    int64_t i1 = t % o[1], i0 = t / o[1];
    return i0 * s[0] + i1 * s[1] + i2 * s[2];
}

__global__ void softmax_fwd_k(const float *x, const float *b, const float *m, float *y, RowBcast p, int64_t rows) {
    int64_t D = p.o[3];
    SX_ROWS(r, rows) {
        const float *xr = x + r * D;
        float *yr = y + r * D;
        int64_t ob = row_offset(p.o, p.sb, r), om = row_offset(p.o, p.sm, r);
        float mx = -INFINITY;
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
            float add = (b ? b[ob + j * p.sb[3]] : 0.f) + (m ? m[om + j * p.sm[3]] : 0.f);
            float z = (b || m) ? xr[j] + add : xr[j];
            yr[j] = z;
            mx = fmaxf(mx, z);
        }
        mx = sx_block_reduce(mx, SxMax(), -INFINITY);
        double s = 0;
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) { /* each thread rereads only what it wrote */
            float e = expf(yr[j] - mx);
            yr[j] = e;
            s += e;
        }
        s = sx_block_reduce(s, SxSum(), 0.0);
        float inv = (float)(1.0 / s);
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) yr[j] *= inv;
    }
}

static RowBcast row_bcast(const ag_node *n) {
    RowBcast p;
    ag_pad4(n->in[0], p.o);
    for (int i = 0; i < 4; i++) p.sb[i] = p.sm[i] = 0;
    if (n->in[1]) ag_bcast_strides(n->in[1], p.o, p.sb);
    if (n->in[2]) ag_bcast_strides(n->in[2], p.o, p.sm);
    return p;
}

extern "C" void ag_cuda_softmax_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("softmax", n->in[0]);
    RowBcast p = row_bcast(n);
    int64_t rows = p.o[0] * p.o[1] * p.o[2];
    if (!rows || !p.o[3]) return;
    softmax_fwd_k<<<sx_row_blocks(rows), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), n->in[1] ? sx_f32(n->in[1]) : NULL,
                                                                        n->in[2] ? sx_f32(n->in[2]) : NULL, sx_f32(n->out), p, rows);
    SX_LAUNCHED("softmax");
}

/* dz = y (g - sum_j g y); dx += dz; dz also into a scratch when the bias or mask needs it (their gradients are
 * broadcast reductions of dz, done afterwards without atomics). */
__global__ void softmax_bwd_k(const float *y, const float *dy, float *dx, float *dz_out, int64_t rows, int64_t D) {
    SX_ROWS(r, rows) {
        const float *yr = y + r * D, *g = dy + r * D;
        double dot = 0;
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) dot += (double)g[j] * yr[j];
        dot = sx_block_reduce(dot, SxSum(), 0.0);
        float fd = (float)dot;
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
            float dz = yr[j] * (g[j] - fd);
            if (dx) dx[r * D + j] += dz;
            if (dz_out) dz_out[r * D + j] = dz;
        }
    }
}

extern "C" void ag_cuda_softmax_bwd(ag_ctx *ctx, ag_node *n) {
    ag_tensor *xt = n->in[0], *bt = n->in[1], *mt = n->in[2];
    float *dx = sx_needs(xt) ? sx_grad(ctx, xt) : NULL, *db = sx_needs(bt) ? sx_grad(ctx, bt) : NULL, *dm = sx_needs(mt) ? sx_grad(ctx, mt) : NULL;
    int64_t D = sx_last_dim(xt), rows = D ? xt->numel / D : 0;
    if (!rows) return;
    float *dz = (db || dm) ? (float *)sx_scratch(ctx, sizeof(float) * (size_t)xt->numel) : NULL;
    softmax_bwd_k<<<sx_row_blocks(rows), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->out), sx_f32(n->out->grad), dx, dz, rows, D);
    SX_LAUNCHED("softmax backward");
    if (db) sx_bcast_reduce_add("softmax backward (bias)", db, bt, xt, dz, NULL, NULL);
    if (dm) sx_bcast_reduce_add("softmax backward (mask)", dm, mt, xt, dz, NULL, NULL);
}

/* ---- logsumexp: the CPU's row_lse (max in float, sum of expf in double, mx + log(sum)) --------------------------- */

__device__ double row_lse(const float *x, int64_t D) {
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) mx = fmaxf(mx, x[j]);
    mx = sx_block_reduce(mx, SxMax(), -INFINITY);
    double s = 0;
    if (mx != -INFINITY) /* uniform across the block: the reduction below is reached by every thread or none */
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) s += expf(x[j] - mx);
    s = sx_block_reduce(s, SxSum(), 0.0);
    return mx == -INFINITY ? -INFINITY : (double)mx + log(s);
}

__global__ void logsumexp_fwd_k(const float *x, float *y, int64_t rows, int64_t D) {
    SX_ROWS(r, rows) {
        float lse = (float)row_lse(x + r * D, D);
        if (threadIdx.x == 0) y[r] = lse;
    }
}
__global__ void logsumexp_bwd_k(const float *x, const float *y, const float *dy, float *dx, int64_t n, int64_t D) {
    SX_GRID_STRIDE(i, n) {
        int64_t r = i / D;
        dx[i] += dy[r] * expf(x[i] - y[r]);
    }
}

#define ROWS_OF(t, D, rows)                                                                                           \
    int64_t D = sx_last_dim(t), rows = D ? (t)->numel / D : 0;                                                        \
    if (!rows) return

extern "C" void ag_cuda_logsumexp_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("logsumexp", n->in[0]);
    ROWS_OF(n->in[0], D, rows);
    logsumexp_fwd_k<<<sx_row_blocks(rows), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_f32(n->out), rows, D);
    SX_LAUNCHED("logsumexp");
}
extern "C" void ag_cuda_logsumexp_bwd(ag_ctx *ctx, ag_node *n) {
    float *dx = sx_grad(ctx, n->in[0]);
    ROWS_OF(n->in[0], D, rows);
    logsumexp_bwd_k<<<sx_blocks(rows * D), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_f32(n->out), sx_f32(n->out->grad), dx, rows * D, D);
    SX_LAUNCHED("logsumexp backward");
}

/* ---- sum (whole tensor), sum_last -------------------------------------------------------------------------------- */

#define RED_BLOCKS 1024 /* partials of the whole-tensor sums: a fixed count, so the order of the sum is fixed */

__global__ void sum_partial_k(const float *x, int64_t n, double *part) {
    double s = 0;
    SX_GRID_STRIDE(i, n) s += x[i];
    s = sx_block_reduce(s, SxSum(), 0.0);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}
/* One block: out[0] = sum(part). */
__global__ void sum_finish_k(const double *part, int64_t n_part, float *out) {
    double s = 0;
    for (int64_t i = threadIdx.x; i < n_part; i += blockDim.x) s += part[i];
    s = sx_block_reduce(s, SxSum(), 0.0);
    if (threadIdx.x == 0) out[0] = (float)s;
}

extern "C" void ag_cuda_sum_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("sum", n->in[0]);
    int64_t cnt = n->in[0]->numel;
    unsigned g = sx_blocks(cnt);
    if (g > RED_BLOCKS) g = RED_BLOCKS;
    double *part = (double *)sx_scratch(ctx, sizeof(double) * g);
    if (cnt) {
        sum_partial_k<<<g, SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), cnt, part);
        SX_LAUNCHED("sum");
    }
    sum_finish_k<<<1, SX_THREADS, 0, sx_stream()>>>(part, cnt ? g : 0, sx_f32(n->out));
    SX_LAUNCHED("sum");
}

/* dx += dy[0], read on the device: no synchronisation. */
__global__ void sum_bwd_k(const float *dy, float *dx, int64_t n) {
    float g = dy[0];
    SX_GRID_STRIDE(i, n) dx[i] += g;
}

extern "C" void ag_cuda_sum_bwd(ag_ctx *ctx, ag_node *n) {
    int64_t cnt = n->in[0]->numel;
    float *dx = sx_grad(ctx, n->in[0]);
    if (!cnt) return;
    sum_bwd_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->out->grad), dx, cnt);
    SX_LAUNCHED("sum backward");
}

__global__ void sum_last_k(const float *x, float *y, int64_t rows, int64_t D) {
    SX_ROWS(r, rows) {
        double s = 0;
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) s += x[r * D + j];
        s = sx_block_reduce(s, SxSum(), 0.0);
        if (threadIdx.x == 0) y[r] = (float)s;
    }
}
__global__ void sum_last_bwd_k(const float *dy, float *dx, int64_t n, int64_t D) {
    SX_GRID_STRIDE(i, n) dx[i] += dy[i / D];
}

extern "C" void ag_cuda_sum_last_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("sum_last", n->in[0]);
    int64_t D = sx_last_dim(n->in[0]), rows = n->out->numel;
    if (!rows) return;
    sum_last_k<<<sx_row_blocks(rows), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_f32(n->out), rows, D);
    SX_LAUNCHED("sum_last");
}
extern "C" void ag_cuda_sum_last_bwd(ag_ctx *ctx, ag_node *n) {
    float *dx = sx_grad(ctx, n->in[0]);
    int64_t D = sx_last_dim(n->in[0]), cnt = n->in[0]->numel;
    if (!cnt) return;
    sum_last_bwd_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->out->grad), dx, cnt, D);
    SX_LAUNCHED("sum_last backward");
}

/* ---- cross-entropy: mean over labels != -100 of lse(row) - row[label]; 0 when every label is ignored --------------- */

/* Pass 1, a block per row: lse[r] (saved for the backward, the only per-row state) and the row's loss in double. */
__global__ void ce_rows_k(const float *x, const int32_t *lab, float *lse, double *loss, int64_t N, int64_t V) {
    SX_ROWS(r, N) {
        int32_t y = lab[r];
        if (y == AG_IGNORE_INDEX) continue; /* uniform across the block */
        float l = (float)row_lse(x + r * V, V);
        if (threadIdx.x == 0) {
            lse[r] = l;
            loss[r] = (double)l - x[r * V + y];
        }
    }
}
/* Pass 2, one block: the mean over the counted rows in a fixed order; the count goes to the device for the backward. */
__global__ void ce_finish_k(const int32_t *lab, const double *loss, int64_t N, float *out, int64_t *count) {
    double s = 0, c = 0;
    for (int64_t r = threadIdx.x; r < N; r += blockDim.x)
        if (lab[r] != AG_IGNORE_INDEX) {
            s += loss[r];
            c += 1;
        }
    s = sx_block_reduce(s, SxSum(), 0.0);
    c = sx_block_reduce(c, SxSum(), 0.0);
    if (threadIdx.x == 0) {
        out[0] = c > 0 ? (float)(s / c) : 0.f;
        count[0] = (int64_t)c;
    }
}

extern "C" void ag_cuda_cross_entropy_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("cross_entropy", n->in[0]);
    int64_t N = n->in[0]->shape[0], V = n->in[0]->shape[1];
    /* saved[1]: the number of counted labels, on the device (the CPU keeps it in fp[0]; reading it here would cost a
     * synchronisation). */
    const int64_t one[1] = {1};
    n->saved[1] = ag_tensor_zeros(ctx->act, AG_I64, 1, one);
    double *loss = (double *)sx_scratch(ctx, sizeof(double) * (size_t)(N ? N : 1));
    if (N && V) {
        ce_rows_k<<<sx_row_blocks(N), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_i32(n->in[1]), sx_f32(n->saved[0]), loss, N, V);
        SX_LAUNCHED("cross_entropy (rows)");
    }
    ce_finish_k<<<1, SX_THREADS, 0, sx_stream()>>>(sx_i32(n->in[1]), loss, V ? N : 0, sx_f32(n->out), (int64_t *)n->saved[1]->data);
    SX_LAUNCHED("cross_entropy (mean)");
}

/* dx[r, j] += g exp(x - lse[r]), then dx[r, label] -= g, in that order in one thread; g = dy / count. */
__global__ void ce_bwd_k(const float *x, const int32_t *lab, const float *lse, const float *dy, const int64_t *count, float *dx,
                         int64_t n, int64_t V) {
    int64_t c = count[0];
    if (c == 0) return;
    float g = dy[0] / (float)c;
    SX_GRID_STRIDE(i, n) {
        int64_t r = i / V, j = i - r * V;
        int32_t y = lab[r];
        if (y == AG_IGNORE_INDEX) continue;
        float v = dx[i] + g * expf(x[i] - lse[r]);
        if (j == y) v -= g;
        dx[i] = v;
    }
}

extern "C" void ag_cuda_cross_entropy_bwd(ag_ctx *ctx, ag_node *n) {
    int64_t N = n->in[0]->shape[0], V = n->in[0]->shape[1];
    /* Unlike the CPU (which knows the count on the host), dx is allocated even when every label is ignored: it stays 0. */
    float *dx = sx_grad(ctx, n->in[0]);
    if (!N || !V) return;
    ce_bwd_k<<<sx_blocks(N * V), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_i32(n->in[1]), sx_f32(n->saved[0]), sx_f32(n->out->grad),
                                                                (const int64_t *)n->saved[1]->data, dx, N * V, V);
    SX_LAUNCHED("cross_entropy backward");
}
