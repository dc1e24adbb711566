/* CPU kernels, written once for a float type T and included twice by kernels.c (T = float, suffix f32; T = double,
 * suffix f64: the gradient checks); the end of the file undefines T and the other parameters. Forward functions fill n->out; backward functions ADD into input gradients.
 * Reductions accumulate in double whatever T is. */
#ifndef T
#error "include from kernels.c with T, SFX, GEMM and MATH defined"
#endif

/* libm's functions of T: MATH(exp) is expf for float, exp for double */
#define EXP MATH(exp)
#define TANH MATH(tanh)
#define ERF MATH(erf)
#define LOG1P MATH(log1p)
#define SQRT MATH(sqrt)

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)
#define DATA(t) ((T *)(t)->data)
#define GRAD(ctx, t) ((T *)ag_grad_of((ctx), (t))->data)
#define NEEDS(t) ((t) && (t)->requires_grad)

/* ---- matmul --------------------------------------------------------------------------------------------------- */

static void FN(matmul_fwd)(ag_ctx *ctx, ag_node *n) {
    bool ta = n->ip[0], tb = n->ip[1], bb = n->ip[6];
    int64_t batch = n->ip[2], M = n->ip[3], N = n->ip[4], K = n->ip[5];
    const T *A = DATA(n->in[0]), *B = DATA(n->in[1]);
    T *C = DATA(n->out);
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    if (!bb) {
        int64_t R = batch * M;
        if (R && N) GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, R, N, K, 1, A, lda, B, ldb, 0, C, N);
        if (R && N && !K) memset(C, 0, sizeof(T) * R * N);
        return;
    }
    for (int64_t b = 0; b < batch; b++) {
        if (M && N && K)
            GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1, A + b * M * K, lda, B + b * K * N, ldb, 0, C + b * M * N, N);
        else
            memset(C + b * M * N, 0, sizeof(T) * M * N);
    }
}

static void FN(matmul_bwd)(ag_ctx *ctx, ag_node *n) {
    bool ta = n->ip[0], tb = n->ip[1], bb = n->ip[6];
    int64_t batch = n->ip[2], M = n->ip[3], N = n->ip[4], K = n->ip[5];
    const T *A = DATA(n->in[0]), *B = DATA(n->in[1]), *dC = DATA(n->out->grad);
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    int64_t nb = bb ? batch : 1, R = bb ? M : batch * M;
    if (!R || !N || !K) return;
    T *dA = NEEDS(n->in[0]) ? GRAD(ctx, n->in[0]) : NULL;
    T *dB = NEEDS(n->in[1]) ? GRAD(ctx, n->in[1]) : NULL;
    for (int64_t b = 0; b < nb; b++) {
        const T *Ab = A + b * R * K, *Bb = B + (bb ? b * K * N : 0), *dCb = dC + b * R * N;
        if (dA) {
            if (!ta)
                GEMM(CblasRowMajor, CblasNoTrans, tb ? CblasNoTrans : CblasTrans, R, K, N, 1, dCb, N, Bb, ldb, 1, dA + b * R * K, K);
            else
                GEMM(CblasRowMajor, tb ? CblasTrans : CblasNoTrans, CblasTrans, K, R, N, 1, Bb, ldb, dCb, N, 1, dA + b * R * K, R);
        }
        if (dB) {
            T *dBb = dB + (bb ? b * K * N : 0);
            if (!tb)
                GEMM(CblasRowMajor, ta ? CblasNoTrans : CblasTrans, CblasNoTrans, K, N, R, 1, Ab, lda, dCb, N, 1, dBb, N);
            else
                GEMM(CblasRowMajor, CblasTrans, ta ? CblasTrans : CblasNoTrans, N, K, R, 1, dCb, N, Ab, lda, 1, dBb, K);
        }
    }
}

/* ---- broadcasting binary ops ------------------------------------------------------------------------------------ */

#ifndef SX_BIN_KINDS
#define SX_BIN_KINDS
enum { BIN_ADD, BIN_MUL };
#endif

static void FN(binary_fwd)(ag_node *n, int kind) {
    const T *a = DATA(n->in[0]), *b = DATA(n->in[1]);
    T *y = DATA(n->out);
    if (n->in[0]->numel == n->out->numel && n->in[1]->numel == n->out->numel) {
        int64_t cnt = n->out->numel;
        if (kind == BIN_ADD)
            for (int64_t i = 0; i < cnt; i++) y[i] = a[i] + b[i];
        else
            for (int64_t i = 0; i < cnt; i++) y[i] = a[i] * b[i];
        return;
    }
    int64_t o[4], sa[4], sb[4];
    ag_pad4(n->out, o);
    ag_bcast_strides(n->in[0], o, sa);
    ag_bcast_strides(n->in[1], o, sb);
    int64_t k = 0;
    for (int64_t i0 = 0; i0 < o[0]; i0++)
        for (int64_t i1 = 0; i1 < o[1]; i1++)
            for (int64_t i2 = 0; i2 < o[2]; i2++) {
                const T *ar = a + i0 * sa[0] + i1 * sa[1] + i2 * sa[2], *br = b + i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
                for (int64_t i3 = 0; i3 < o[3]; i3++, k++) {
                    T va = ar[i3 * sa[3]], vb = br[i3 * sb[3]];
                    y[k] = kind == BIN_ADD ? va + vb : va * vb;
                }
            }
}

static void FN(binary_bwd)(ag_ctx *ctx, ag_node *n, int kind) {
    const T *a = DATA(n->in[0]), *b = DATA(n->in[1]), *dy = DATA(n->out->grad);
    T *da = NEEDS(n->in[0]) ? GRAD(ctx, n->in[0]) : NULL;
    T *db = NEEDS(n->in[1]) ? GRAD(ctx, n->in[1]) : NULL;
    int64_t o[4], sa[4], sb[4];
    ag_pad4(n->out, o);
    ag_bcast_strides(n->in[0], o, sa);
    ag_bcast_strides(n->in[1], o, sb);
    int64_t k = 0;
    for (int64_t i0 = 0; i0 < o[0]; i0++)
        for (int64_t i1 = 0; i1 < o[1]; i1++)
            for (int64_t i2 = 0; i2 < o[2]; i2++) {
                int64_t ba = i0 * sa[0] + i1 * sa[1] + i2 * sa[2], bo = i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
                for (int64_t i3 = 0; i3 < o[3]; i3++, k++) {
                    int64_t ia = ba + i3 * sa[3], ib = bo + i3 * sb[3];
                    if (kind == BIN_MUL) {
                        if (da) da[ia] += dy[k] * b[ib];
                        if (db) db[ib] += dy[k] * a[ia];
                    } else {
                        if (da) da[ia] += dy[k];
                        if (db) db[ib] += dy[k];
                    }
                }
            }
}

static void FN(add_fwd)(ag_ctx *ctx, ag_node *n) { FN(binary_fwd)(n, BIN_ADD); }
static void FN(mul_fwd)(ag_ctx *ctx, ag_node *n) { FN(binary_fwd)(n, BIN_MUL); }
static void FN(add_bwd)(ag_ctx *ctx, ag_node *n) { FN(binary_bwd)(ctx, n, BIN_ADD); }
static void FN(mul_bwd)(ag_ctx *ctx, ag_node *n) { FN(binary_bwd)(ctx, n, BIN_MUL); }

/* ---- elementwise ------------------------------------------------------------------------------------------------- */

static void FN(scale_fwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]);
    T *y = DATA(n->out), s = (T)n->fp[0];
    for (int64_t i = 0; i < n->out->numel; i++) y[i] = x[i] * s;
}
static void FN(scale_bwd)(ag_ctx *ctx, ag_node *n) {
    T *dx = GRAD(ctx, n->in[0]), s = (T)n->fp[0];
    const T *dy = DATA(n->out->grad);
    for (int64_t i = 0; i < n->out->numel; i++) dx[i] += dy[i] * s;
}

static void FN(square_fwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]);
    T *y = DATA(n->out);
    for (int64_t i = 0; i < n->out->numel; i++) y[i] = x[i] * x[i];
}
static void FN(square_bwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]), *dy = DATA(n->out->grad);
    T *dx = GRAD(ctx, n->in[0]);
    for (int64_t i = 0; i < n->out->numel; i++) dx[i] += 2 * x[i] * dy[i];
}

static void FN(relu_fwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]);
    T *y = DATA(n->out);
    for (int64_t i = 0; i < n->out->numel; i++) y[i] = x[i] > 0 ? x[i] : 0;
}
static void FN(relu_bwd)(ag_ctx *ctx, ag_node *n) {
    const T *restrict x = DATA(n->in[0]), *restrict dy = DATA(n->out->grad);
    T *restrict dx = GRAD(ctx, n->in[0]);
    /* a select, not a branch (the signs of x are random); restrict lets it vectorise */
    const int64_t N = n->out->numel;
    for (int64_t i = 0; i < N; i++) {
        T g = dy[i]; /* loaded unconditionally, so the compiler may if-convert */
        dx[i] += x[i] > 0 ? g : (T)0;
    }
}

/* gelu_new / "gelu_pytorch_tanh": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
#define GELU_C ((T)0.7978845608028654)
static void FN(gelu_tanh_fwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]);
    T *y = DATA(n->out);
    for (int64_t i = 0; i < n->out->numel; i++) {
        T v = x[i];
        y[i] = (T)0.5 * v * (1 + TANH(GELU_C * (v + (T)0.044715 * v * v * v)));
    }
}
static void FN(gelu_tanh_bwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]), *dy = DATA(n->out->grad);
    T *dx = GRAD(ctx, n->in[0]);
    for (int64_t i = 0; i < n->out->numel; i++) {
        T v = x[i], u = GELU_C * (v + (T)0.044715 * v * v * v), t = TANH(u);
        T du = GELU_C * (1 + 3 * (T)0.044715 * v * v);
        dx[i] += dy[i] * ((T)0.5 * (1 + t) + (T)0.5 * v * (1 - t * t) * du);
    }
}

/* exact gelu: 0.5 x (1 + erf(x / sqrt 2)) */
static void FN(gelu_erf_fwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]);
    T *y = DATA(n->out);
    for (int64_t i = 0; i < n->out->numel; i++) y[i] = (T)0.5 * x[i] * (1 + ERF(x[i] * (T)0.7071067811865476));
}
static void FN(gelu_erf_bwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]), *dy = DATA(n->out->grad);
    T *dx = GRAD(ctx, n->in[0]);
    for (int64_t i = 0; i < n->out->numel; i++) {
        T v = x[i];
        T cdf = (T)0.5 * (1 + ERF(v * (T)0.7071067811865476)), pdf = EXP((T)-0.5 * v * v) * (T)0.3989422804014327;
        dx[i] += dy[i] * (cdf + v * pdf);
    }
}

/* AG_OP_ACT: the activations of ag_act_kind other than relu and the gelus (formulas in ag.h), and their
 * derivatives. Where HF's torch op clamps (relu6, gelu_10), the gradient is torch's (2.15): it passes strictly inside
 * the bounds only (relu6: 0 < x < 6; gelu_10: -10 < gelu(x) < 10), and is 0 on them. */
static inline T FN(sigmoid)(T v) { return 1 / (1 + EXP(-v)); }
static inline T FN(gelu_erf_of)(T v) { return (T)0.5 * v * (1 + ERF(v * (T)0.7071067811865476)); }
#define LAPLACE_MU ((T)0.707107)
#define LAPLACE_S ((T)(0.282095 * 1.4142135623730951)) /* sigma sqrt 2 */
static inline T FN(act_f)(int kind, T v) {
    switch (kind) {
    case AG_ACT_SILU: return v / (1 + EXP(-v));
    case AG_ACT_QUICK_GELU: return v * FN(sigmoid)((T)1.702 * v);
    case AG_ACT_SIGMOID: return FN(sigmoid)(v);
    case AG_ACT_TANH: return TANH(v);
    case AG_ACT_RELU6: return v < 0 ? 0 : v > 6 ? 6 : v;
    case AG_ACT_RELU2: return v > 0 ? v * v : 0;
    case AG_ACT_LEAKY_RELU: return v > 0 ? v : (T)0.01 * v;
    case AG_ACT_MISH: return v * TANH(LOG1P(EXP(v)));
    case AG_ACT_GELU_10: {
        T g = FN(gelu_erf_of)(v);
        return g < -10 ? -10 : g > 10 ? 10 : g;
    }
    case AG_ACT_LAPLACE: return (T)0.5 * (1 + ERF((v - LAPLACE_MU) / LAPLACE_S));
    }
    SX_FATAL("act: unknown activation %d", kind);
}
static inline T FN(act_df)(int kind, T v) {
    switch (kind) {
    case AG_ACT_SILU: {
        T s = FN(sigmoid)(v);
        return s * (1 + v * (1 - s));
    }
    case AG_ACT_QUICK_GELU: {
        T s = FN(sigmoid)((T)1.702 * v);
        return s + (T)1.702 * v * s * (1 - s);
    }
    case AG_ACT_SIGMOID: {
        T s = FN(sigmoid)(v);
        return s * (1 - s);
    }
    case AG_ACT_TANH: {
        T t = TANH(v);
        return 1 - t * t;
    }
    case AG_ACT_RELU6: return v > 0 && v < 6 ? 1 : 0;
    case AG_ACT_RELU2: return v > 0 ? 2 * v : 0;
    case AG_ACT_LEAKY_RELU: return v > 0 ? 1 : (T)0.01;
    case AG_ACT_MISH: {
        T t = TANH(LOG1P(EXP(v)));
        return t + v * FN(sigmoid)(v) * (1 - t * t);
    }
    case AG_ACT_GELU_10: {
        T g = FN(gelu_erf_of)(v);
        if (g <= -10 || g >= 10) return 0;
        T cdf = (T)0.5 * (1 + ERF(v * (T)0.7071067811865476)), pdf = EXP((T)-0.5 * v * v) * (T)0.3989422804014327;
        return cdf + v * pdf;
    }
    case AG_ACT_LAPLACE: {
        T u = (v - LAPLACE_MU) / LAPLACE_S;
        return EXP(-u * u) * (T)0.5641895835477563 / LAPLACE_S; /* d/dx 0.5 erf(u) = exp(-u^2) / (sqrt(pi) s) */
    }
    }
    SX_FATAL("act: unknown activation %d", kind);
}
#undef LAPLACE_MU
#undef LAPLACE_S
static void FN(act_fwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]);
    T *y = DATA(n->out);
    int kind = (int)n->ip[0];
    for (int64_t i = 0; i < n->out->numel; i++) y[i] = FN(act_f)(kind, x[i]);
}
static void FN(act_bwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]), *dy = DATA(n->out->grad);
    T *dx = GRAD(ctx, n->in[0]);
    int kind = (int)n->ip[0];
    for (int64_t i = 0; i < n->out->numel; i++) dx[i] += dy[i] * FN(act_df)(kind, x[i]);
}

/* ---- rmsnorm (T5LayerNorm, SPEC 3.2): y = w * (x * rsqrt(mean(x^2) + eps)) ---------------------------------------- */

static void FN(rmsnorm_fwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]), *w = DATA(n->in[1]);
    T *y = DATA(n->out), *rstd = DATA(n->saved[0]);
    int64_t D = n->in[0]->shape[n->in[0]->ndim - 1], rows = D ? n->in[0]->numel / D : 0;
    for (int64_t r = 0; r < rows; r++) {
        const T *xr = x + r * D;
        double ss = 0;
        for (int64_t j = 0; j < D; j++) ss += (double)xr[j] * xr[j];
        T v = (T)(ss / (double)D);
        T rs = (T)1 / SQRT(v + (T)n->fp[0]);
        rstd[r] = rs;
        for (int64_t j = 0; j < D; j++) y[r * D + j] = w[j] * (xr[j] * rs);
    }
}

static void FN(rmsnorm_bwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]), *w = DATA(n->in[1]), *rstd = DATA(n->saved[0]), *dy = DATA(n->out->grad);
    int64_t D = n->in[0]->shape[n->in[0]->ndim - 1], rows = D ? n->in[0]->numel / D : 0;
    T *dx = NEEDS(n->in[0]) ? GRAD(ctx, n->in[0]) : NULL;
    T *dw = NEEDS(n->in[1]) ? GRAD(ctx, n->in[1]) : NULL;
    for (int64_t r = 0; r < rows; r++) {
        const T *xr = x + r * D, *g = dy + r * D;
        T rs = rstd[r];
        if (dw)
            for (int64_t j = 0; j < D; j++) dw[j] += g[j] * xr[j] * rs;
        if (dx) {
            double dot = 0; /* sum_j (g_j w_j) xhat_j */
            for (int64_t j = 0; j < D; j++) dot += (double)g[j] * w[j] * xr[j] * rs;
            T m = (T)(dot / (double)D);
            for (int64_t j = 0; j < D; j++) dx[r * D + j] += rs * (g[j] * w[j] - xr[j] * rs * m);
        }
    }
}

/* ---- softmax family ----------------------------------------------------------------------------------------------- */

/* y = softmax(x + (bias + mask)) over the last dim. A row whose entries all equal finfo.min gives a uniform row,
 * exactly as HF's additive masks do (SPEC 3.6). */
static void FN(softmax_fwd)(ag_ctx *ctx, ag_node *n) {
    ag_tensor *xt = n->in[0], *bt = n->in[1], *mt = n->in[2];
    const T *x = DATA(xt), *b = bt ? DATA(bt) : NULL, *m = mt ? DATA(mt) : NULL;
    T *y = DATA(n->out);
    int64_t o[4], sb[4] = {0}, sm[4] = {0};
    ag_pad4(xt, o);
    if (bt) ag_bcast_strides(bt, o, sb);
    if (mt) ag_bcast_strides(mt, o, sm);
    int64_t D = o[3], k = 0;
    for (int64_t i0 = 0; i0 < o[0]; i0++)
        for (int64_t i1 = 0; i1 < o[1]; i1++)
            for (int64_t i2 = 0; i2 < o[2]; i2++, k += D) {
                const T *xr = x + k;
                T *yr = y + k;
                int64_t ob = i0 * sb[0] + i1 * sb[1] + i2 * sb[2], om = i0 * sm[0] + i1 * sm[1] + i2 * sm[2];
                T mx = -INFINITY;
                for (int64_t j = 0; j < D; j++) {
                    T add = (b ? b[ob + j * sb[3]] : 0) + (m ? m[om + j * sm[3]] : 0);
                    yr[j] = (b || m) ? xr[j] + add : xr[j];
                    if (yr[j] > mx) mx = yr[j];
                }
                double s = 0;
                for (int64_t j = 0; j < D; j++) {
                    yr[j] = EXP(yr[j] - mx);
                    s += yr[j];
                }
                T inv = (T)(1.0 / s);
                for (int64_t j = 0; j < D; j++) yr[j] *= inv;
            }
}

static void FN(softmax_bwd)(ag_ctx *ctx, ag_node *n) {
    ag_tensor *xt = n->in[0], *bt = n->in[1], *mt = n->in[2];
    const T *y = DATA(n->out), *dy = DATA(n->out->grad);
    T *dx = NEEDS(xt) ? GRAD(ctx, xt) : NULL, *db = NEEDS(bt) ? GRAD(ctx, bt) : NULL, *dm = NEEDS(mt) ? GRAD(ctx, mt) : NULL;
    int64_t o[4], sb[4] = {0}, sm[4] = {0};
    ag_pad4(xt, o);
    if (bt) ag_bcast_strides(bt, o, sb);
    if (mt) ag_bcast_strides(mt, o, sm);
    int64_t D = o[3], k = 0;
    for (int64_t i0 = 0; i0 < o[0]; i0++)
        for (int64_t i1 = 0; i1 < o[1]; i1++)
            for (int64_t i2 = 0; i2 < o[2]; i2++, k += D) {
                const T *yr = y + k, *g = dy + k;
                double dot = 0;
                for (int64_t j = 0; j < D; j++) dot += (double)g[j] * yr[j];
                int64_t ob = i0 * sb[0] + i1 * sb[1] + i2 * sb[2], om = i0 * sm[0] + i1 * sm[1] + i2 * sm[2];
                for (int64_t j = 0; j < D; j++) {
                    T dz = yr[j] * (g[j] - (T)dot);
                    if (dx) dx[k + j] += dz;
                    if (db) db[ob + j * sb[3]] += dz;
                    if (dm) dm[om + j * sm[3]] += dz;
                }
            }
}

static double FN(row_lse)(const T *x, int64_t D) {
    T mx = -INFINITY;
    for (int64_t j = 0; j < D; j++)
        if (x[j] > mx) mx = x[j];
    if (mx == -INFINITY) return -INFINITY;
    double s = 0;
    for (int64_t j = 0; j < D; j++) s += EXP(x[j] - mx);
    return (double)mx + log(s);
}

static void FN(logsumexp_fwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]);
    T *y = DATA(n->out);
    int64_t D = n->in[0]->shape[n->in[0]->ndim - 1], rows = D ? n->in[0]->numel / D : 0;
    for (int64_t r = 0; r < rows; r++) y[r] = (T)FN(row_lse)(x + r * D, D);
}
static void FN(logsumexp_bwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]), *y = DATA(n->out), *dy = DATA(n->out->grad);
    T *dx = GRAD(ctx, n->in[0]);
    int64_t D = n->in[0]->shape[n->in[0]->ndim - 1], rows = D ? n->in[0]->numel / D : 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < D; j++) dx[r * D + j] += dy[r] * EXP(x[r * D + j] - y[r]);
}

/* ---- indexing ---------------------------------------------------------------------------------------------------- */

/* Every index op is one of three row movements over [M, D] rows, idx[m] < 0 marking a row that moves nowhere:
 * gather y[m] = x[idx[m]] (a zero row where idx[m] < 0), scatter-add y[idx[m]] += x[m], gather-add y[m] += x[idx[m]].
 * embedding and gather_rows gather forward and scatter-add backward; scatter_rows scatter-adds into zeros forward and
 * gather-adds backward. The embedding's indices are checked by its constructor, so it never meets a negative one. */
static void FN(rows_gather)(const T *x, const int32_t *idx, int64_t M, int64_t D, T *y) {
    for (int64_t m = 0; m < M; m++) {
        if (idx[m] < 0)
            memset(y + m * D, 0, sizeof(T) * D);
        else
            memcpy(y + m * D, x + (int64_t)idx[m] * D, sizeof(T) * D);
    }
}
static void FN(rows_scatter_add)(const T *x, const int32_t *idx, int64_t M, int64_t D, T *y) {
    for (int64_t m = 0; m < M; m++) {
        if (idx[m] < 0) continue;
        T *row = y + (int64_t)idx[m] * D;
        for (int64_t j = 0; j < D; j++) row[j] += x[m * D + j];
    }
}
static void FN(rows_gather_add)(const T *x, const int32_t *idx, int64_t M, int64_t D, T *y) {
    for (int64_t m = 0; m < M; m++) {
        if (idx[m] < 0) continue;
        const T *row = x + (int64_t)idx[m] * D;
        for (int64_t j = 0; j < D; j++) y[m * D + j] += row[j];
    }
}

/* in[0] the [rows, D] table or rows, in[1] the indices */
static void FN(embedding_fwd)(ag_ctx *ctx, ag_node *n) {
    FN(rows_gather)(DATA(n->in[0]), n->in[1]->data, n->in[1]->numel, n->in[0]->shape[1], DATA(n->out));
}
static void FN(embedding_bwd)(ag_ctx *ctx, ag_node *n) {
    FN(rows_scatter_add)(DATA(n->out->grad), n->in[1]->data, n->in[1]->numel, n->in[0]->shape[1], GRAD(ctx, n->in[0]));
}
static void FN(gather_rows_fwd)(ag_ctx *ctx, ag_node *n) { FN(embedding_fwd)(ctx, n); }
static void FN(gather_rows_bwd)(ag_ctx *ctx, ag_node *n) { FN(embedding_bwd)(ctx, n); }
static void FN(scatter_rows_fwd)(ag_ctx *ctx, ag_node *n) {
    memset(DATA(n->out), 0, sizeof(T) * n->out->numel);
    FN(rows_scatter_add)(DATA(n->in[0]), n->in[1]->data, n->in[1]->numel, n->in[0]->shape[1], DATA(n->out));
}
static void FN(scatter_rows_bwd)(ag_ctx *ctx, ag_node *n) {
    FN(rows_gather_add)(DATA(n->out->grad), n->in[1]->data, n->in[1]->numel, n->in[0]->shape[1], GRAD(ctx, n->in[0]));
}

/* ---- grouped expert matmul: rows offsets[e]..offsets[e+1] use W[e] ------------------------------------------------ */

static void FN(grouped_matmul_fwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]), *w = DATA(n->in[1]);
    const int64_t *off = n->in[2]->data;
    T *y = DATA(n->out);
    bool tw = n->ip[0];
    int64_t E = n->in[1]->shape[0], in = n->in[0]->shape[1], out = n->out->shape[1], Nrows = n->in[0]->shape[0];
    for (int64_t e = 0; e < E; e++) {
        int64_t r0 = off[e], m = off[e + 1] - off[e];
        if (!m) continue;
        const T *we = w + e * in * out;
        if (in)
            GEMM(CblasRowMajor, CblasNoTrans, tw ? CblasTrans : CblasNoTrans, m, out, in, 1, x + r0 * in, in, we, tw ? in : out, 0, y + r0 * out, out);
        else
            memset(y + r0 * out, 0, sizeof(T) * m * out);
    }
    if (off[E] < Nrows) memset(y + off[E] * out, 0, sizeof(T) * (Nrows - off[E]) * out);
}

static void FN(grouped_matmul_bwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]), *w = DATA(n->in[1]), *dy = DATA(n->out->grad);
    const int64_t *off = n->in[2]->data;
    bool tw = n->ip[0];
    int64_t E = n->in[1]->shape[0], in = n->in[0]->shape[1], out = n->out->shape[1];
    T *dx = NEEDS(n->in[0]) ? GRAD(ctx, n->in[0]) : NULL;
    T *dw = NEEDS(n->in[1]) ? GRAD(ctx, n->in[1]) : NULL;
    if (!in || !out) return;
    for (int64_t e = 0; e < E; e++) {
        int64_t r0 = off[e], m = off[e + 1] - off[e];
        if (!m) continue;
        const T *we = w + e * in * out, *g = dy + r0 * out, *xe = x + r0 * in;
        if (dx) GEMM(CblasRowMajor, CblasNoTrans, tw ? CblasNoTrans : CblasTrans, m, in, out, 1, g, out, we, tw ? in : out, 1, dx + r0 * in, in);
        if (dw) {
            if (tw)
                GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, m, 1, g, out, xe, in, 1, dw + e * in * out, in);
            else
                GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, in, out, m, 1, xe, in, g, out, 1, dw + e * in * out, out);
        }
    }
}

/* ---- dropout, reshape, permute, reductions ------------------------------------------------------------------------ */

/* Element i is kept iff its word of ag_rng_words(key, i) >= ag_dropout_threshold(p) (ag.h). The forward keeps the
 * mask as bytes (a quarter of an f32 tensor) in saved[0], so the backward draws nothing; both loops vectorise. */
static void FN(dropout_fwd)(ag_ctx *ctx, ag_node *n) {
    const T *restrict x = DATA(n->in[0]);
    T *restrict y = DATA(n->out);
    const int64_t N = n->out->numel;
    const T s = (T)1 / ((T)1 - (T)n->fp[0]);
    const uint32_t thr = ag_dropout_threshold(n->fp[0]);
    n->saved[0] = ag_new(ctx->act, AG_I32, (N + 3) / 4 + 1);
    uint8_t *restrict mask = n->saved[0]->data;
    uint32_t w[256];
    for (int64_t i0 = 0; i0 < N; i0 += 256) {
        int64_t m = N - i0 < 256 ? N - i0 : 256;
        ag_rng_words(n->key, (uint64_t)i0, m, w);
        for (int64_t j = 0; j < m; j++) mask[i0 + j] = w[j] >= thr;
        for (int64_t j = 0; j < m; j++) y[i0 + j] = mask[i0 + j] ? x[i0 + j] * s : (T)0; /* +0, as the GPU, whatever x's sign */
    }
}
static void FN(dropout_bwd)(ag_ctx *ctx, ag_node *n) {
    const T *restrict dy = DATA(n->out->grad);
    T *restrict dx = GRAD(ctx, n->in[0]);
    const T s = (T)1 / ((T)1 - (T)n->fp[0]);
    const uint8_t *restrict mask = n->saved[0]->data;
    for (int64_t i = 0; i < n->out->numel; i++) dx[i] += mask[i] ? dy[i] * s : (T)0;
}

static void FN(reshape_fwd)(ag_ctx *ctx, ag_node *n) { (void)n; /* a view: the output shares the input's data */ }
static void FN(reshape_bwd)(ag_ctx *ctx, ag_node *n) {
    const T *dy = DATA(n->out->grad);
    T *dx = GRAD(ctx, n->in[0]);
    for (int64_t i = 0; i < n->out->numel; i++) dx[i] += dy[i];
}

/* Output index (o0..o3) reads input element at sum_k o_k * stride_in[perm[k]]. */
static void FN(permute_apply)(const ag_node *n, const T *src, T *dst, bool backward) {
    int nd = n->in[0]->ndim, off = 4 - nd;
    int64_t istride[4], ostride4[4], oshape[4];
    int64_t s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        istride[i] = s;
        s *= n->in[0]->shape[i];
    }
    for (int k = 0; k < 4; k++) {
        oshape[k] = k < off ? 1 : n->out->shape[k - off];
        ostride4[k] = k < off ? 0 : istride[n->ip[k - off]];
    }
    int64_t k = 0;
    for (int64_t i0 = 0; i0 < oshape[0]; i0++)
        for (int64_t i1 = 0; i1 < oshape[1]; i1++)
            for (int64_t i2 = 0; i2 < oshape[2]; i2++) {
                int64_t base = i0 * ostride4[0] + i1 * ostride4[1] + i2 * ostride4[2];
                for (int64_t i3 = 0; i3 < oshape[3]; i3++, k++) {
                    if (backward)
                        dst[base + i3 * ostride4[3]] += src[k];
                    else
                        dst[k] = src[base + i3 * ostride4[3]];
                }
            }
}
static void FN(permute_fwd)(ag_ctx *ctx, ag_node *n) { FN(permute_apply)(n, DATA(n->in[0]), DATA(n->out), false); }
static void FN(permute_bwd)(ag_ctx *ctx, ag_node *n) { FN(permute_apply)(n, DATA(n->out->grad), GRAD(ctx, n->in[0]), true); }

static void FN(sum_fwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]);
    double s = 0;
    for (int64_t i = 0; i < n->in[0]->numel; i++) s += x[i];
    DATA(n->out)[0] = (T)s;
}
static void FN(sum_bwd)(ag_ctx *ctx, ag_node *n) {
    T g = DATA(n->out->grad)[0], *dx = GRAD(ctx, n->in[0]);
    for (int64_t i = 0; i < n->in[0]->numel; i++) dx[i] += g;
}
static void FN(sum_last_fwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]);
    T *y = DATA(n->out);
    int64_t D = n->in[0]->shape[n->in[0]->ndim - 1], rows = n->out->numel;
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t j = 0; j < D; j++) s += x[r * D + j];
        y[r] = (T)s;
    }
}
static void FN(sum_last_bwd)(ag_ctx *ctx, ag_node *n) {
    const T *dy = DATA(n->out->grad);
    T *dx = GRAD(ctx, n->in[0]);
    int64_t D = n->in[0]->shape[n->in[0]->ndim - 1], rows = n->out->numel;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < D; j++) dx[r * D + j] += dy[r];
}

/* ---- cross-entropy: mean over labels != -100 of lse(row) - row[label] (torch's CrossEntropyLoss, mean) --------- */

static void FN(cross_entropy_fwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]);
    const int32_t *y = n->in[1]->data;
    T *lse = DATA(n->saved[0]);
    int64_t N = n->in[0]->shape[0], V = n->in[0]->shape[1], cnt = 0;
    double total = 0;
    for (int64_t r = 0; r < N; r++) {
        if (y[r] == AG_IGNORE_INDEX) continue;
        lse[r] = (T)FN(row_lse)(x + r * V, V);
        total += (double)lse[r] - x[r * V + y[r]];
        cnt++;
    }
    n->fp[0] = (double)cnt;
    DATA(n->out)[0] = cnt ? (T)(total / (double)cnt) : 0;
}
static void FN(cross_entropy_bwd)(ag_ctx *ctx, ag_node *n) {
    const T *x = DATA(n->in[0]), *lse = DATA(n->saved[0]);
    const int32_t *y = n->in[1]->data;
    int64_t N = n->in[0]->shape[0], V = n->in[0]->shape[1];
    if (n->fp[0] == 0) return;
    T g = DATA(n->out->grad)[0] / (T)n->fp[0], *dx = GRAD(ctx, n->in[0]);
    for (int64_t r = 0; r < N; r++) {
        if (y[r] == AG_IGNORE_INDEX) continue;
        for (int64_t j = 0; j < V; j++) dx[r * V + j] += g * EXP(x[r * V + j] - lse[r]);
        dx[r * V + y[r]] -= g;
    }
}

/* ---- dtype-independent: the same code in both instantiations, so that every op dispatches alike ------------- */

/* Cast between f32, f64 and bf16 (ag_copy's conversions); the gradient flows back converted (both are float). */
static void FN(cast_fwd)(ag_ctx *ctx, ag_node *n) { ag_copy(n->out, n->in[0]); }
static void FN(cast_bwd)(ag_ctx *ctx, ag_node *n) {
    ag_tensor *dx = ag_grad_of(ctx, n->in[0]), *dy = n->out->grad;
    for (int64_t i = 0; i < dx->numel; i++) ag_set(dx, i, ag_get(dx, i) + ag_get(dy, i));
}

static void FN(custom_fwd)(ag_ctx *ctx, ag_node *n) { n->custom->forward(n->custom->user, n->in[0], n->out); }
static void FN(custom_bwd)(ag_ctx *ctx, ag_node *n) {
    n->custom->backward(n->custom->user, n->out->grad, ag_grad_of(ctx, n->in[0]));
}

#undef CAT_
#undef CAT
#undef FN
#undef DATA
#undef GRAD
#undef NEEDS
#undef GELU_C
/* the instantiation's parameters too, so that kernels.c defines the next one afresh */
#undef T
#undef SFX
#undef GEMM
#undef MATH
#undef EXP
#undef TANH
#undef ERF
#undef LOG1P
#undef SQRT
