/* Matmul and the grouped expert matmul on the device through cuBLAS (cublasGemmEx / cublasGemmStridedBatchedEx),
 * fp32 output and accumulation with CUBLAS_COMPUTE_32F, so no TF32. Operands are fp32, or bf16 copies when the op
 * was recorded with ctx->mixed_bf16 (ip[7] for matmul, ip[1] for grouped_matmul): A, B and, in backward, the
 * incoming gradient are rounded to bf16 (the CPU's rounding) into activation scratch, the products accumulate in
 * fp32 and the gradients are accumulated (beta = 1) into the fp32 gradients.
 * Each GEMM is the CPU kernel's CBLAS row-major call transcribed through gemm_rm, so forward and backward read line
 * by line against autograd/cpu/kernels_t.h.
 * Grouped matmul: one GEMM per non-empty expert, driven by the host copy of the offsets that the op constructor
 * keeps. CUDA 13's cuBLAS has cublasGemmGroupedBatchedEx (one call for all experts: host arrays of sizes, device
 * arrays of pointers): the target once a measurement shows the per-expert launches matter. */
#include <limits.h>

#include "autograd/cuda/common.cuh"

static int as_int(const char *what, const char *name, int64_t v) {
    SX_ASSERT(v >= 0 && v <= INT_MAX, "%s on CUDA: %s = %lld does not fit cuBLAS's int", what, name, (long long)v);
    return (int)v;
}

/* The operands of one op: fp32 as given, or their bf16 copies. */
typedef struct {
    cudaDataType_t type;
    size_t esize;
} operand_kind;
static const operand_kind F32 = {CUDA_R_32F, 4}, BF16 = {CUDA_R_16BF, 2};

static const void *at(const void *p, int64_t elems, operand_kind k) { return (const char *)p + (size_t)elems * k.esize; }

/* p itself (fp32), or a bf16 copy of its n elements in activation scratch. */
static const void *operand(ag_ctx *ctx, const float *p, int64_t n, operand_kind k, const char *what) {
    if (k.type == CUDA_R_32F) return p;
    uint16_t *q = (uint16_t *)sx_scratch(ctx, sizeof(uint16_t) * (size_t)(n ? n : 1));
    sx_f32_to_bf16(what, p, q, n);
    return q;
}

/* Row-major C[M, N] = alpha op(A) op(B) + beta C for 'batch' matrices at the given strides (in elements). cuBLAS is
 * column-major, where the same memory holds C^T, so it computes C^T = op(B)^T op(A)^T: the operands swap places
 * and M and N swap, the leading dimensions stay. */
static void gemm_rm(const char *what, operand_kind k, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void *A,
                    int64_t lda, int64_t sA, const void *B, int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC,
                    int64_t batch) {
    if (!M || !N || !batch) return;
    SX_ASSERT(K > 0, "%s on CUDA: a GEMM with K = 0 must be handled by its caller", what);
    int m = as_int(what, "N", N), n = as_int(what, "M", M), kk = as_int(what, "K", K);
    int ldA = as_int(what, "lda", lda), ldB = as_int(what, "ldb", ldb), ldC = as_int(what, "ldc", ldc), nb = as_int(what, "batch", batch);
    cublasOperation_t opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (nb == 1)
        SX_CUBLAS_CHECK(cublasGemmEx(sx_cublas(), opB, opA, m, n, kk, &alpha, B, k.type, ldB, A, k.type, ldA, &beta, C, CUDA_R_32F, ldC,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    else
        SX_CUBLAS_CHECK(cublasGemmStridedBatchedEx(sx_cublas(), opB, opA, m, n, kk, &alpha, B, k.type, ldB, (long long)sB, A, k.type, ldA,
                                                   (long long)sA, &beta, C, CUDA_R_32F, ldC, (long long)sC, nb, CUBLAS_COMPUTE_32F,
                                                   CUBLAS_GEMM_DEFAULT));
}

/* ---- matmul: ip = {ta, tb, batch, M, N, K, b_batched, mixed_bf16} --------------------------------------------------- */

extern "C" void ag_cuda_matmul_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("matmul", n->in[0]);
    bool ta = n->ip[0], tb = n->ip[1], bb = n->ip[6];
    int64_t batch = n->ip[2], M = n->ip[3], N = n->ip[4], K = n->ip[5];
    operand_kind k = n->ip[7] ? BF16 : F32;
    float *C = sx_f32(n->out);
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    if (!batch || !M || !N) return;
    if (!K) {
        ag_cuda_memset0(C, sizeof(float) * (size_t)(batch * M * N));
        return;
    }
    const void *A = operand(ctx, sx_f32(n->in[0]), n->in[0]->numel, k, "matmul (A to bf16)");
    const void *B = operand(ctx, sx_f32(n->in[1]), n->in[1]->numel, k, "matmul (B to bf16)");
    if (!bb) /* a shared B: A's leading dims flatten into the rows (ta implies 2-D, so batch is 1 there) */
        gemm_rm("matmul", k, ta, tb, batch * M, N, K, 1.f, A, lda, 0, B, ldb, 0, 0.f, C, N, 0, 1);
    else
        gemm_rm("matmul", k, ta, tb, M, N, K, 1.f, A, lda, M * K, B, ldb, K * N, 0.f, C, N, M * N, batch);
}

extern "C" void ag_cuda_matmul_bwd(ag_ctx *ctx, ag_node *n) {
    bool ta = n->ip[0], tb = n->ip[1], bb = n->ip[6];
    int64_t batch = n->ip[2], M = n->ip[3], N = n->ip[4], K = n->ip[5];
    operand_kind k = n->ip[7] ? BF16 : F32;
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    int64_t nb = bb ? batch : 1, R = bb ? M : batch * M;
    if (!R || !N || !K || !nb) return;
    float *dA = sx_needs(n->in[0]) ? sx_grad(ctx, n->in[0]) : NULL;
    float *dB = sx_needs(n->in[1]) ? sx_grad(ctx, n->in[1]) : NULL;
    const void *dC = operand(ctx, sx_f32(n->out->grad), n->out->numel, k, "matmul backward (dC to bf16)");
    const void *A = dB ? operand(ctx, sx_f32(n->in[0]), n->in[0]->numel, k, "matmul backward (A to bf16)") : NULL;
    const void *B = dA ? operand(ctx, sx_f32(n->in[1]), n->in[1]->numel, k, "matmul backward (B to bf16)") : NULL;
    int64_t sA = R * K, sB = bb ? K * N : 0, sC = R * N;
    if (dA) {
        if (!ta) /* dA [R, K] += dC op(B)^T */
            gemm_rm("matmul backward (dA)", k, false, !tb, R, K, N, 1.f, dC, N, sC, B, ldb, sB, 1.f, dA, K, sA, nb);
        else /* A is [K, R]: dA += op(B) dC^T */
            gemm_rm("matmul backward (dA)", k, tb, true, K, R, N, 1.f, B, ldb, sB, dC, N, sC, 1.f, dA, R, sA, nb);
    }
    if (dB) {
        /* With a shared B (nb = 1) the one GEMM sums over all rows; batched B gets one slice per batch. */
        if (!tb) /* dB [K, N] += op(A)^T dC */
            gemm_rm("matmul backward (dB)", k, !ta, false, K, N, R, 1.f, A, lda, sA, dC, N, sC, 1.f, dB, N, sB, nb);
        else /* B is [N, K]: dB += dC^T op(A) */
            gemm_rm("matmul backward (dB)", k, true, ta, N, K, R, 1.f, dC, N, sC, A, lda, sA, 1.f, dB, K, sB, nb);
    }
}

/* ---- grouped matmul: rows offsets[e]..offsets[e+1] of x use W[e]; offsets is a host tensor (see ops.c) ---------- */

extern "C" void ag_cuda_grouped_matmul_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("grouped_matmul", n->in[0]);
    SX_ASSERT(n->in[2]->device == AG_DEV_CPU, "grouped_matmul on CUDA: the node's offsets must be the host copy");
    const int64_t *off = (const int64_t *)n->in[2]->data;
    float *y = sx_f32(n->out);
    bool tw = n->ip[0];
    operand_kind k = n->ip[1] ? BF16 : F32;
    int64_t E = n->in[1]->shape[0], in = n->in[0]->shape[1], out = n->out->shape[1], Nrows = n->in[0]->shape[0];
    if (!out) return;
    const void *x = NULL, *w = NULL;
    if (in && off[E] > 0) {
        x = operand(ctx, sx_f32(n->in[0]), off[E] * in, k, "grouped_matmul (x to bf16)");
        w = operand(ctx, sx_f32(n->in[1]), n->in[1]->numel, k, "grouped_matmul (w to bf16)");
    }
    for (int64_t e = 0; e < E; e++) {
        int64_t r0 = off[e], m = off[e + 1] - off[e];
        if (!m) continue;
        if (in)
            gemm_rm("grouped_matmul", k, false, tw, m, out, in, 1.f, at(x, r0 * in, k), in, 0, at(w, e * in * out, k), tw ? in : out, 0, 0.f,
                    y + r0 * out, out, 0, 1);
        else
            ag_cuda_memset0(y + r0 * out, sizeof(float) * (size_t)(m * out));
    }
    if (off[E] < Nrows) ag_cuda_memset0(y + off[E] * out, sizeof(float) * (size_t)((Nrows - off[E]) * out));
}

extern "C" void ag_cuda_grouped_matmul_bwd(ag_ctx *ctx, ag_node *n) {
    const int64_t *off = (const int64_t *)n->in[2]->data;
    bool tw = n->ip[0];
    operand_kind k = n->ip[1] ? BF16 : F32;
    int64_t E = n->in[1]->shape[0], in = n->in[0]->shape[1], out = n->out->shape[1];
    float *dx = sx_needs(n->in[0]) ? sx_grad(ctx, n->in[0]) : NULL;
    float *dw = sx_needs(n->in[1]) ? sx_grad(ctx, n->in[1]) : NULL;
    if (!in || !out || off[E] == 0) return;
    const void *dy = operand(ctx, sx_f32(n->out->grad), off[E] * out, k, "grouped_matmul backward (dy to bf16)");
    const void *x = dw ? operand(ctx, sx_f32(n->in[0]), off[E] * in, k, "grouped_matmul backward (x to bf16)") : NULL;
    const void *w = dx ? operand(ctx, sx_f32(n->in[1]), n->in[1]->numel, k, "grouped_matmul backward (w to bf16)") : NULL;
    for (int64_t e = 0; e < E; e++) {
        int64_t r0 = off[e], m = off[e + 1] - off[e];
        if (!m) continue;
        const void *g = at(dy, r0 * out, k);
        if (dx) /* dx[rows of e] += g op(W_e)^T */
            gemm_rm("grouped_matmul backward (dx)", k, false, !tw, m, in, out, 1.f, g, out, 0, at(w, e * in * out, k), tw ? in : out, 0, 1.f,
                    dx + r0 * in, in, 0, 1);
        if (dw) {
            const void *xe = at(x, r0 * in, k);
            if (tw) /* W_e [out, in] += g^T x_e */
                gemm_rm("grouped_matmul backward (dw)", k, true, false, out, in, m, 1.f, g, out, 0, xe, in, 0, 1.f, dw + e * in * out, in, 0, 1);
            else /* W_e [in, out] += x_e^T g */
                gemm_rm("grouped_matmul backward (dw)", k, true, false, in, out, m, 1.f, xe, in, 0, g, out, 0, 1.f, dw + e * in * out, out, 0, 1);
        }
    }
}
