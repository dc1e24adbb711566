/* The optimizer step on device spans (fp32 master weights and fp32 state), the arithmetic of train/optim_cpu.c (the
 * CUDA implementation of train/optim.h, train/optim_cuda.c, calls these) and of the step's gradient norm and
 * clipping (train/step.c), so a device run can follow a CPU run:
 *
 *   - AdamW: elementwise; the scalars (step size, sqrt of the bias correction, decay factor) are computed on the host
 *     by the same double expressions as the CPU's cpu_adamw, and every float operation of the element update is
 *     spelled with a round-to-nearest intrinsic (__fmul_rn, __fadd_rn, __fdiv_rn, __fsqrt_rn) so nvcc cannot
 *     contract it into an FMA: the CPU build (gcc -O3, x86-64 without -march) has no FMA either, so the result is bit-identical.
 *   - Adafactor, one parameter: the row / column means of g^2 + eps1 and the mean of the row state are summed by one
 *     thread per row / column / batch entry in the CPU's order (double, _rn intrinsics), so the second-moment state
 *     is bit-identical too; the two RMS reductions (of the weights for scale_parameter, of the update for clipping)
 *     are deterministic fixed-shape block reductions in double whose summation order differs from the CPU's
 *     sequential sum, so the scalar learning rate and clipping factor may differ from the CPU's by a double rounding,
 *     which after the cast to float can move an update by one float ulp. No host synchronisation: the scalars stay in
 *     a device workspace.
 *   - Gradient norm (sums of squares in double per set of spans, a two-pass reduction with a grid that depends only
 *     on each span's length, so it is deterministic on any device; one copy of the sums back) and clipping by a
 *     scale. A NaN or Inf makes its sum non-finite: that is the step's non-finite check.
 *
 * Every launch is on the one stream (common.cuh) and checked; loops are grid-stride over int64 indices. */
#include "autograd/cuda/common.cuh"

#include <math.h>

/* ---- a small device workspace, grown to the largest request and kept (steady state allocates nothing) ------------- */

static void *g_ws = NULL;
static size_t g_ws_bytes = 0;

static void *optim_ws(size_t bytes) {
    if (bytes > g_ws_bytes) {
        if (g_ws) ag_cuda_free(g_ws);
        size_t want = bytes < (1u << 16) ? (1u << 16) : bytes + bytes / 4;
        g_ws = ag_cuda_malloc(want, "the optimizer's device workspace");
        g_ws_bytes = want;
    }
    return g_ws;
}

/* ---- deterministic sums of squares --------------------------------------------------------------------------------- */

#define SQ_MAX_BLOCKS 256
/* Pass 1's grid for n elements: a function of n only (not of the device), so the summation order is fixed. */
static unsigned sq_blocks(int64_t n) {
    int64_t b = (n + SX_THREADS - 1) / SX_THREADS;
    return (unsigned)(b < 1 ? 1 : b > SQ_MAX_BLOCKS ? SQ_MAX_BLOCKS : b);
}

/* What pass 1 squares: the raw values, or Adafactor's update recomputed from the second-moment state. */
enum { SQ_PLAIN, SQ_U_FACTORED, SQ_U_VEC };

struct USrc { /* the update u before clipping, as cpu_adafactor computes it */
    const float *g;
    const float *rf, *cf; /* factored: per (batch, row) and (batch, col) factors */
    const float *v;       /* unfactored: the second moment */
    int64_t R, C;
};

__device__ __forceinline__ float u_factored(const USrc &s, int64_t j) {
    int64_t RC = s.R * s.C, b = j / RC, rc = j - b * RC, r = rc / s.C, k = rc - r * s.C;
    return __fmul_rn(__fmul_rn(s.rf[b * s.R + r], s.cf[b * s.C + k]), s.g[j]);
}
__device__ __forceinline__ float u_vec(const USrc &s, int64_t j) {
    float inv = (float)__ddiv_rn(1.0, __dsqrt_rn((double)s.v[j]));
    return __fmul_rn(inv, s.g[j]);
}

__global__ void sumsq_partial_k(const float *x, int64_t n, int kind, USrc us, double *partials) {
    double acc = 0;
    SX_GRID_STRIDE(j, n) {
        float v = kind == SQ_PLAIN ? x[j] : kind == SQ_U_FACTORED ? u_factored(us, j) : u_vec(us, j);
        acc = __dadd_rn(acc, __dmul_rn((double)v, (double)v));
    }
    acc = sx_block_reduce(acc, SxSum(), 0.0);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

/* One block sums np partials in a fixed order into *out. */
__global__ void sum_partials_k(const double *partials, int64_t np, double *out) {
    double acc = 0;
    for (int64_t i = threadIdx.x; i < np; i += blockDim.x) acc = __dadd_rn(acc, partials[i]);
    acc = sx_block_reduce(acc, SxSum(), 0.0);
    if (threadIdx.x == 0) *out = acc;
}

static void sumsq_pass1(const char *what, const float *x, int64_t n, int kind, const USrc &us, double *partials, unsigned nb) {
    sumsq_partial_k<<<nb, SX_THREADS, 0, sx_stream()>>>(x, n, kind, us, partials);
    SX_LAUNCHED(what);
}

/* ---- gradient norm and clipping ----------------------------------------------------------------------------------- */

extern "C" void ag_cuda_sumsq_sets(const float *base, const ag_cuda_span *spans, const int *set, int n_spans, int n_sets, double *out) {
    int64_t np = 0;
    for (int j = 0; j < n_spans; j++) np += spans[j].numel > 0 ? sq_blocks(spans[j].numel) : 0;
    double *sums = (double *)optim_ws(sizeof(double) * (size_t)(n_sets + np)), *partials = sums + n_sets;
    SX_CUDA_CHECK(cudaMemsetAsync(sums, 0, sizeof(double) * (size_t)n_sets, sx_stream()));
    USrc none = {};
    int64_t at = 0;
    for (int k = 0; k < n_sets; k++) { /* each set's partials contiguous, in span order, then summed in one block */
        int64_t first = at;
        for (int j = 0; j < n_spans; j++) {
            if ((set ? set[j] : 0) != k || spans[j].numel <= 0) continue;
            unsigned nb = sq_blocks(spans[j].numel);
            sumsq_pass1("the gradient norm (pass 1)", base + spans[j].offset, spans[j].numel, SQ_PLAIN, none, partials + at, nb);
            at += nb;
        }
        if (at == first) continue;
        sum_partials_k<<<1, 1024, 0, sx_stream()>>>(partials + first, at - first, sums + k);
        SX_LAUNCHED("the gradient norm (pass 2)");
    }
    ag_cuda_memcpy(out, sums, sizeof(double) * (size_t)n_sets, AG_COPY_D2H);
}

__global__ void scale_k(float *x, int64_t n, float c) {
    SX_GRID_STRIDE(j, n) x[j] = __fmul_rn(x[j], c);
}

extern "C" void ag_cuda_scale_spans(float *base, const ag_cuda_span *spans, int n_spans, float c) {
    for (int s = 0; s < n_spans; s++) {
        if (spans[s].numel <= 0) continue;
        scale_k<<<sx_blocks(spans[s].numel), SX_THREADS, 0, sx_stream()>>>(base + spans[s].offset, spans[s].numel, c);
        SX_LAUNCHED("gradient clipping (scale)");
    }
}

/* ---- AdamW -------------------------------------------------------------------------------------------------------------- */

struct AdamScalars {
    float b1, b2, one_m_b1, one_m_b2, step_size, bc2_sqrt, eps, decay;
};

/* adamw_span's loop body (train/optim_cpu.c), operation for operation:
 *   m = b1*m + (1-b1)*g;  v = b2*v + ((1-b2)*g)*g;  w *= decay;  w -= (step_size*m) / (sqrtf(v)/bc2_sqrt + eps) */
__global__ void adamw_k(float *w, const float *g, float *m, float *v, int64_t n, AdamScalars s) {
    SX_GRID_STRIDE(j, n) {
        float gj = g[j];
        float mj = __fadd_rn(__fmul_rn(s.b1, m[j]), __fmul_rn(s.one_m_b1, gj));
        float vj = __fadd_rn(__fmul_rn(s.b2, v[j]), __fmul_rn(__fmul_rn(s.one_m_b2, gj), gj));
        m[j] = mj;
        v[j] = vj;
        float wj = __fmul_rn(w[j], s.decay);
        float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vj), s.bc2_sqrt), s.eps);
        w[j] = __fsub_rn(wj, __fdiv_rn(__fmul_rn(s.step_size, mj), den));
    }
}

extern "C" void ag_cuda_adamw_step(float *w, const float *g, float *m, float *v, int64_t n, double lr, double beta1, double beta2,
                                   double eps, double weight_decay, bool decay, int64_t step) {
    if (n <= 0) return;
    AdamScalars s;
    /* the host scalars of cpu_adamw, the same expressions */
    s.b1 = (float)beta1;
    s.b2 = (float)beta2;
    s.one_m_b1 = 1 - s.b1;
    s.one_m_b2 = 1 - s.b2;
    double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);
    s.step_size = (float)(lr / bc1);
    s.bc2_sqrt = (float)sqrt(bc2);
    s.eps = (float)eps;
    s.decay = decay && weight_decay > 0 ? (float)(1 - lr * weight_decay) : 1.0f;
    adamw_k<<<sx_blocks(n), SX_THREADS, 0, sx_stream()>>>(w, g, m, v, n, s);
    SX_LAUNCHED("the AdamW step");
}

/* ---- Adafactor ------------------------------------------------------------------------------------------------------------ */

/* The device scalars of one Adafactor step (workspace). */
struct AfScalars {
    double lr;  /* scale * rel */
    float f;    /* lr / max(1, rms(u) / clip_threshold), as float */
    float d;    /* -weight_decay * lr, as float */
};

/* lr = (scale_parameter ? max(eps2, rms(w)) : 1) * rel from the sum of squares of w (or none). */
__global__ void af_lr_k(const double *sumsq_w, int64_t n, double eps2, double rel, int scale_parameter, double wd, AfScalars *s) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double scale = 1.0;
    if (scale_parameter) {
        double r = n ? __dsqrt_rn(__ddiv_rn(*sumsq_w, (double)n)) : 0;
        scale = fmax(eps2, r);
    }
    s->lr = __dmul_rn(scale, rel);
    s->d = (float)(-wd * s->lr);
}

/* f = lr / max(1, rms(u) / clip) */
__global__ void af_clip_k(const double *sumsq_u, int64_t n, double clip, AfScalars *s) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double r = n ? __dsqrt_rn(__ddiv_rn(*sumsq_u, (double)n)) : 0;
    double denom = fmax(1.0, __ddiv_rn(r, clip));
    s->f = (float)__ddiv_rn(s->lr, denom);
}

/* beta2t * x + (1 - beta2t) * mean, in double without contraction, rounded to float */
__device__ __forceinline__ float ema_f(double beta2t, double one_m, float x, double mean) {
    return (float)__dadd_rn(__dmul_rn(beta2t, (double)x), __dmul_rn(one_m, mean));
}

/* One thread per (batch, row): the row's sum of g^2 + eps1 over the columns, in the CPU's order. */
__global__ void af_rows_k(const float *g, float *row, int64_t lead, int64_t R, int64_t C, double eps1, double beta2t, double one_m) {
    SX_GRID_STRIDE(br, lead * R) {
        const float *gr = g + br * C;
        double s = 0;
        for (int64_t k = 0; k < C; k++) s = __dadd_rn(s, __dadd_rn(__dmul_rn((double)gr[k], (double)gr[k]), eps1));
        row[br] = ema_f(beta2t, one_m, row[br], __ddiv_rn(s, (double)C));
    }
}

/* One thread per (batch, column), summing down the rows in the CPU's order (adjacent threads read adjacent columns). */
__global__ void af_cols_k(const float *g, float *col, int64_t lead, int64_t R, int64_t C, double eps1, double beta2t, double one_m) {
    SX_GRID_STRIDE(bc, lead * C) {
        int64_t b = bc / C, k = bc - b * C;
        const float *gb = g + b * R * C;
        double s = 0;
        for (int64_t r = 0; r < R; r++) {
            double x = (double)gb[r * C + k];
            s = __dadd_rn(s, __dadd_rn(__dmul_rn(x, x), eps1));
        }
        col[bc] = ema_f(beta2t, one_m, col[bc], __ddiv_rn(s, (double)R));
    }
}

/* One thread per batch entry: the mean of its row state (the CPU's order), then the row factors
 * rf = (float)(1 / sqrt(row / rmean)) by the same thread. */
__global__ void af_rowfac_k(const float *row, float *rf, int64_t lead, int64_t R) {
    SX_GRID_STRIDE(b, lead) {
        const float *rb = row + b * R;
        double rmean = 0;
        for (int64_t r = 0; r < R; r++) rmean = __dadd_rn(rmean, (double)rb[r]);
        rmean = __ddiv_rn(rmean, (double)R);
        for (int64_t r = 0; r < R; r++) rf[b * R + r] = (float)__ddiv_rn(1.0, __dsqrt_rn(__ddiv_rn((double)rb[r], rmean)));
    }
}

/* cf = (float)(1 / sqrt(col)) */
__global__ void af_colfac_k(const float *col, float *cf, int64_t n) {
    SX_GRID_STRIDE(j, n) cf[j] = (float)__ddiv_rn(1.0, __dsqrt_rn((double)col[j]));
}

/* Unfactored second moment: v = (float)(beta2t * v + (1 - beta2t) * ((double)g^2 + eps1)) */
__global__ void af_vec_k(const float *g, float *v, int64_t n, double eps1, double beta2t, double one_m) {
    SX_GRID_STRIDE(j, n) {
        double x = (double)g[j];
        v[j] = ema_f(beta2t, one_m, v[j], __dadd_rn(__dmul_rn(x, x), eps1));
    }
}

/* u *= f; (beta1: m = b1*m + (1-b1)*u; u = m); (decay: w += d*w); w -= u */
__global__ void af_update_k(float *w, float *m, int64_t n, int factored, USrc us, const AfScalars *s, float b1, float one_m_b1, int decay) {
    float f = s->f, d = s->d;
    SX_GRID_STRIDE(j, n) {
        float u = factored ? u_factored(us, j) : u_vec(us, j);
        u = __fmul_rn(u, f);
        if (m) {
            float mj = __fadd_rn(__fmul_rn(b1, m[j]), __fmul_rn(one_m_b1, u));
            m[j] = mj;
            u = mj;
        }
        float wj = w[j];
        if (decay) wj = __fadd_rn(wj, __fmul_rn(d, wj));
        w[j] = __fsub_rn(wj, u);
    }
}

extern "C" void ag_cuda_adafactor_step(const ag_cuda_adafactor_cfg *c, float *w, const float *g, float *m, float *v, float *row, float *col,
                                       int ndim, const int64_t *shape, int64_t step) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (n <= 0) return;
    bool fac = ndim >= 2;
    int64_t R = fac ? shape[ndim - 2] : 1, C = fac ? shape[ndim - 1] : 1, lead = fac ? n / (R * C) : 1;
    SX_ASSERT(fac ? (row && col) : v != NULL, "Adafactor on the device: %s state missing", fac ? "the factored" : "the second-moment");
    SX_ASSERT(c->beta1 <= 0 || m != NULL, "Adafactor on the device: beta1 > 0 needs the first-moment state");
    /* host scalars, cpu_adafactor's expressions */
    double rel = c->lr;
    if (c->relative_step) {
        double min_step = c->warmup_init ? 1e-6 * (double)step : 1e-2;
        rel = fmin(min_step, 1.0 / sqrt((double)step));
    }
    double beta2t = 1.0 - pow((double)step, c->decay_rate), one_m = 1 - beta2t;
    /* workspace: scalars, two sums, partials, then (factored) the row and column factors */
    unsigned nb = sq_blocks(n);
    size_t off_sums = (sizeof(AfScalars) + 15) & ~(size_t)15;
    size_t off_part = off_sums + 2 * sizeof(double);
    size_t off_rf = (off_part + sizeof(double) * nb + 15) & ~(size_t)15;
    size_t off_cf = (off_rf + sizeof(float) * (size_t)(fac ? lead * R : 0) + 15) & ~(size_t)15;
    size_t total = off_cf + sizeof(float) * (size_t)(fac ? lead * C : 0);
    char *ws = (char *)optim_ws(total);
    AfScalars *sc = (AfScalars *)ws;
    double *sum_w = (double *)(ws + off_sums), *sum_u = sum_w + 1, *partials = (double *)(ws + off_part);
    float *rf = (float *)(ws + off_rf), *cf = (float *)(ws + off_cf);
    USrc us = {};
    us.g = g;

    /* lr (rms of the weights before the update) */
    if (c->scale_parameter) {
        sumsq_pass1("Adafactor: rms(w) (pass 1)", w, n, SQ_PLAIN, us, partials, nb);
        sum_partials_k<<<1, 1024, 0, sx_stream()>>>(partials, nb, sum_w);
        SX_LAUNCHED("Adafactor: rms(w) (pass 2)");
    }
    af_lr_k<<<1, 32, 0, sx_stream()>>>(sum_w, n, c->eps2, rel, c->scale_parameter ? 1 : 0, c->decay && c->weight_decay > 0 ? c->weight_decay : 0.0, sc);
    SX_LAUNCHED("Adafactor: the learning rate");

    /* second moments and the factors of the update */
    if (fac) {
        af_rows_k<<<sx_blocks(lead * R), SX_THREADS, 0, sx_stream()>>>(g, row, lead, R, C, c->eps1, beta2t, one_m);
        SX_LAUNCHED("Adafactor: row means");
        af_cols_k<<<sx_blocks(lead * C), SX_THREADS, 0, sx_stream()>>>(g, col, lead, R, C, c->eps1, beta2t, one_m);
        SX_LAUNCHED("Adafactor: column means");
        af_rowfac_k<<<sx_blocks(lead), SX_THREADS, 0, sx_stream()>>>(row, rf, lead, R);
        SX_LAUNCHED("Adafactor: row factors");
        af_colfac_k<<<sx_blocks(lead * C), SX_THREADS, 0, sx_stream()>>>(col, cf, lead * C);
        SX_LAUNCHED("Adafactor: column factors");
        us.rf = rf;
        us.cf = cf;
        us.R = R;
        us.C = C;
    } else {
        af_vec_k<<<sx_blocks(n), SX_THREADS, 0, sx_stream()>>>(g, v, n, c->eps1, beta2t, one_m);
        SX_LAUNCHED("Adafactor: second moment");
        us.v = v;
    }

    /* update clipping: rms of the unclipped update */
    sumsq_pass1("Adafactor: rms(u) (pass 1)", NULL, n, fac ? SQ_U_FACTORED : SQ_U_VEC, us, partials, nb);
    sum_partials_k<<<1, 1024, 0, sx_stream()>>>(partials, nb, sum_u);
    SX_LAUNCHED("Adafactor: rms(u) (pass 2)");
    af_clip_k<<<1, 32, 0, sx_stream()>>>(sum_u, n, c->clip_threshold, sc);
    SX_LAUNCHED("Adafactor: update clipping");

    float b1 = (float)c->beta1;
    af_update_k<<<sx_blocks(n), SX_THREADS, 0, sx_stream()>>>(w, c->beta1 > 0 ? m : NULL, n, fac ? 1 : 0, us, sc, b1, 1 - b1,
                                                               c->decay && c->weight_decay > 0 ? 1 : 0);
    SX_LAUNCHED("Adafactor: the update");
}
