/* Elementwise ops on the device: broadcasting add/mul (with the deterministic broadcast reduction of their
 * backward), scale, square, relu, the two gelus, dropout (the CPU's Philox mask, bit for bit), reshape, permute,
 * cast (f32 <-> bf16). Grid-stride loops over int64 indices; the float arithmetic of each element is
 * the CPU kernel's (autograd/cpu/kernels_t.h), so results differ from it only by the device's libm (expf, tanhf,
 * erff: a few ulp) and by FMA contraction. */
#include "autograd/cuda/common.cuh"

/* ---- broadcasting binary ops --------------------------------------------------------------------------------------- */

enum { BIN_ADD, BIN_MUL };

struct Bcast {
    int64_t o[4], sa[4], sb[4];
};

__device__ __forceinline__ float bin_apply(int kind, float a, float b) { return kind == BIN_ADD ? a + b : a * b; }

__global__ void binary_same_k(const float *a, const float *b, float *y, int64_t n, int kind) {
    SX_GRID_STRIDE(i, n) y[i] = bin_apply(kind, a[i], b[i]);
}

__global__ void binary_bcast_k(const float *a, const float *b, float *y, Bcast p, int64_t n, int kind) {
    SX_GRID_STRIDE(k, n) {
        int64_t i3 = k % p.o[3], t = k / p.o[3];
        int64_t i2 = t % p.o[2];
        t /= p.o[2];
        int64_t i1 = t % p.o[1], i0 = t / p.o[1];
        float va = a[i0 * p.sa[0] + i1 * p.sa[1] + i2 * p.sa[2] + i3 * p.sa[3]];
        float vb = b[i0 * p.sb[0] + i1 * p.sb[1] + i2 * p.sb[2] + i3 * p.sb[3]];
        y[k] = bin_apply(kind, va, vb);
    }
}

static void binary_fwd(ag_node *n, int kind, const char *name) {
    SX_REQUIRE_F32(name, n->in[0]);
    const ag_tensor *at = n->in[0], *bt = n->in[1];
    int64_t cnt = n->out->numel;
    if (!cnt) return;
    if (at->numel == cnt && bt->numel == cnt) {
        binary_same_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(at), sx_f32(bt), sx_f32(n->out), cnt, kind);
    } else {
        Bcast p;
        ag_pad4(n->out, p.o);
        ag_bcast_strides(at, p.o, p.sa);
        ag_bcast_strides(bt, p.o, p.sb);
        binary_bcast_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(at), sx_f32(bt), sx_f32(n->out), p, cnt, kind);
    }
    SX_LAUNCHED(name);
}

/* dst[e] += sum over the reduced axes of src[k] * (other ? other[k'] : 1). The products are rounded to float as
 * the CPU's `da[ia] += dy[k] * b[ib]` rounds them; the sum is kept in double (the CPU sums in float, in order). */
__global__ void bcast_reduce_k(float *dst, const float *src, const float *other, SxReduce p, int64_t n_dst) {
    SX_GRID_STRIDE(e, n_dst) {
        int64_t c[4], t = e;
        for (int d = 3; d >= 0; d--) {
            c[d] = t % p.t4[d];
            t /= p.t4[d];
        }
        double acc = 0;
        for (int64_t r = 0; r < p.R; r++) {
            int64_t q = r, k = 0, ko = 0;
            for (int d = 3; d >= 0; d--) {
                int64_t oc = c[d];
                if (p.red[d]) {
                    oc = q % p.o4[d];
                    q /= p.o4[d];
                }
                k += oc * p.ostride[d];
                ko += oc * p.so[d];
            }
            float g = other ? src[k] * other[ko] : src[k];
            acc += g;
        }
        dst[e] += (float)acc;
    }
}

void sx_bcast_reduce_add(const char *what, float *dst, const ag_tensor *dst_t, const ag_tensor *out_shape, const float *src,
                         const float *other, const ag_tensor *other_t) {
    if (!dst_t->numel || !out_shape->numel) return;
    SxReduce p;
    ag_pad4(dst_t, p.t4);
    ag_pad4(out_shape, p.o4);
    int64_t s = 1;
    p.R = 1;
    for (int d = 3; d >= 0; d--) {
        p.ostride[d] = s;
        s *= p.o4[d];
        p.red[d] = p.t4[d] == 1 && p.o4[d] != 1;
        if (p.red[d]) p.R *= p.o4[d];
        p.so[d] = 0;
    }
    if (other_t) ag_bcast_strides(other_t, p.o4, p.so);
    bcast_reduce_k<<<sx_blocks(dst_t->numel), SX_THREADS, 0, sx_stream()>>>(dst, src, other, p, dst_t->numel);
    SX_LAUNCHED(what);
}

__global__ void grad_same_k(float *d, const float *dy, const float *other, int64_t n) {
    SX_GRID_STRIDE(i, n) d[i] += other ? dy[i] * other[i] : dy[i];
}

/* One kernel per input, one after the other on the stream: correct also when a and b are the same tensor (x * x). */
static void binary_bwd(ag_ctx *ctx, ag_node *n, int kind, const char *name) {
    ag_tensor *at = n->in[0], *bt = n->in[1];
    const float *dy = sx_f32(n->out->grad);
    int64_t cnt = n->out->numel;
    for (int side = 0; side < 2; side++) {
        ag_tensor *t = side ? bt : at, *o = side ? at : bt;
        if (!sx_needs(t)) continue;
        float *d = sx_grad(ctx, t);
        const float *other = kind == BIN_MUL ? sx_f32(o) : NULL;
        if (!cnt) continue;
        if (t->numel == cnt && (!other || o->numel == cnt)) {
            grad_same_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(d, dy, other, cnt);
            SX_LAUNCHED(name);
        } else {
            sx_bcast_reduce_add(name, d, t, n->out, dy, other, other ? o : NULL);
        }
    }
}

extern "C" void ag_cuda_add_fwd(ag_ctx *ctx, ag_node *n) { binary_fwd(n, BIN_ADD, "add"); }
extern "C" void ag_cuda_mul_fwd(ag_ctx *ctx, ag_node *n) { binary_fwd(n, BIN_MUL, "mul"); }
extern "C" void ag_cuda_add_bwd(ag_ctx *ctx, ag_node *n) { binary_bwd(ctx, n, BIN_ADD, "add backward"); }
extern "C" void ag_cuda_mul_bwd(ag_ctx *ctx, ag_node *n) { binary_bwd(ctx, n, BIN_MUL, "mul backward"); }

/* ---- unary ops: forward y = f(x), backward dx += dy f'(x) --------------------------------------------------------- */

enum { UN_SCALE, UN_SQUARE, UN_RELU, UN_GELU_TANH, UN_GELU_ERF };

#define GELU_C 0.7978845608028654f

__device__ __forceinline__ float unary_f(int kind, float v, float s) {
    switch (kind) {
    case UN_SCALE: return v * s;
    case UN_SQUARE: return v * v;
    case UN_RELU: return v > 0 ? v : 0.f;
    case UN_GELU_TANH: return 0.5f * v * (1 + tanhf(GELU_C * (v + 0.044715f * v * v * v)));
    default: return 0.5f * v * (1 + erff(v * 0.7071067811865476f));
    }
}

/* The increment to dx for one element (relu: 0 where x <= 0, as the CPU skips those). */
__device__ __forceinline__ float unary_df(int kind, float v, float g, float s) {
    switch (kind) {
    case UN_SCALE: return g * s;
    case UN_SQUARE: return 2 * v * g;
    case UN_RELU: return v > 0 ? g : 0.f;
    case UN_GELU_TANH: {
        float u = GELU_C * (v + 0.044715f * v * v * v), t = tanhf(u);
        float du = GELU_C * (1 + 3 * 0.044715f * v * v);
        return g * (0.5f * (1 + t) + 0.5f * v * (1 - t * t) * du);
    }
    default: {
        float cdf = 0.5f * (1 + erff(v * 0.7071067811865476f)), pdf = expf(-0.5f * v * v) * 0.3989422804014327f;
        return g * (cdf + v * pdf);
    }
    }
}

__global__ void unary_fwd_k(const float *x, float *y, int64_t n, int kind, float s) {
    SX_GRID_STRIDE(i, n) y[i] = unary_f(kind, x[i], s);
}
__global__ void unary_bwd_k(const float *x, const float *dy, float *dx, int64_t n, int kind, float s) {
    SX_GRID_STRIDE(i, n) {
        float inc = unary_df(kind, x[i], dy[i], s);
        if (kind != UN_RELU || x[i] > 0) dx[i] += inc; /* relu: leave dx untouched (also -0.0) where the CPU does */
    }
}

static void unary_fwd(ag_node *n, int kind, const char *name) {
    SX_REQUIRE_F32(name, n->in[0]);
    int64_t cnt = n->out->numel;
    if (!cnt) return;
    unary_fwd_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_f32(n->out), cnt, kind, (float)n->fp[0]);
    SX_LAUNCHED(name);
}
static void unary_bwd(ag_ctx *ctx, ag_node *n, int kind, const char *name) {
    float *dx = sx_grad(ctx, n->in[0]);
    int64_t cnt = n->out->numel;
    if (!cnt) return;
    unary_bwd_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_f32(n->out->grad), dx, cnt, kind, (float)n->fp[0]);
    SX_LAUNCHED(name);
}

extern "C" void ag_cuda_scale_fwd(ag_ctx *ctx, ag_node *n) { unary_fwd(n, UN_SCALE, "scale"); }
extern "C" void ag_cuda_scale_bwd(ag_ctx *ctx, ag_node *n) { unary_bwd(ctx, n, UN_SCALE, "scale backward"); }
extern "C" void ag_cuda_square_fwd(ag_ctx *ctx, ag_node *n) { unary_fwd(n, UN_SQUARE, "square"); }
extern "C" void ag_cuda_square_bwd(ag_ctx *ctx, ag_node *n) { unary_bwd(ctx, n, UN_SQUARE, "square backward"); }
extern "C" void ag_cuda_relu_fwd(ag_ctx *ctx, ag_node *n) { unary_fwd(n, UN_RELU, "relu"); }
extern "C" void ag_cuda_relu_bwd(ag_ctx *ctx, ag_node *n) { unary_bwd(ctx, n, UN_RELU, "relu backward"); }
extern "C" void ag_cuda_gelu_tanh_fwd(ag_ctx *ctx, ag_node *n) { unary_fwd(n, UN_GELU_TANH, "gelu_tanh"); }
extern "C" void ag_cuda_gelu_tanh_bwd(ag_ctx *ctx, ag_node *n) { unary_bwd(ctx, n, UN_GELU_TANH, "gelu_tanh backward"); }
extern "C" void ag_cuda_gelu_erf_fwd(ag_ctx *ctx, ag_node *n) { unary_fwd(n, UN_GELU_ERF, "gelu_erf"); }
extern "C" void ag_cuda_gelu_erf_bwd(ag_ctx *ctx, ag_node *n) { unary_bwd(ctx, n, UN_GELU_ERF, "gelu_erf backward"); }

/* ---- AG_OP_ACT: the other activations of ag_act_kind, as the CPU computes them (autograd/cpu/kernels_t.h) ------- */

#define LAPLACE_MU 0.707107f
#define LAPLACE_S ((float)(0.282095 * 1.4142135623730951))

__device__ __forceinline__ float sigmoid_f(float v) { return 1.f / (1.f + expf(-v)); }

__device__ __forceinline__ float act_f(int kind, float v) {
    switch (kind) {
    case AG_ACT_SILU: return v / (1.f + expf(-v));
    case AG_ACT_QUICK_GELU: return v * sigmoid_f(1.702f * v);
    case AG_ACT_SIGMOID: return sigmoid_f(v);
    case AG_ACT_TANH: return tanhf(v);
    case AG_ACT_RELU6: return v < 0 ? 0.f : v > 6 ? 6.f : v;
    case AG_ACT_RELU2: return v > 0 ? v * v : 0.f;
    case AG_ACT_LEAKY_RELU: return v > 0 ? v : 0.01f * v;
    case AG_ACT_MISH: return v * tanhf(log1pf(expf(v)));
    case AG_ACT_GELU_10: {
        float g = 0.5f * v * (1 + erff(v * 0.7071067811865476f));
        return g < -10 ? -10.f : g > 10 ? 10.f : g;
    }
    default: return 0.5f * (1 + erff((v - LAPLACE_MU) / LAPLACE_S)); /* AG_ACT_LAPLACE */
    }
}

__device__ __forceinline__ float act_df(int kind, float v) {
    switch (kind) {
    case AG_ACT_SILU: {
        float s = sigmoid_f(v);
        return s * (1 + v * (1 - s));
    }
    case AG_ACT_QUICK_GELU: {
        float s = sigmoid_f(1.702f * v);
        return s + 1.702f * v * s * (1 - s);
    }
    case AG_ACT_SIGMOID: {
        float s = sigmoid_f(v);
        return s * (1 - s);
    }
    case AG_ACT_TANH: {
        float t = tanhf(v);
        return 1 - t * t;
    }
    case AG_ACT_RELU6: return v > 0 && v < 6 ? 1.f : 0.f;
    case AG_ACT_RELU2: return v > 0 ? 2 * v : 0.f;
    case AG_ACT_LEAKY_RELU: return v > 0 ? 1.f : 0.01f;
    case AG_ACT_MISH: {
        float t = tanhf(log1pf(expf(v)));
        return t + v * sigmoid_f(v) * (1 - t * t);
    }
    case AG_ACT_GELU_10: {
        float g = 0.5f * v * (1 + erff(v * 0.7071067811865476f));
        if (g <= -10 || g >= 10) return 0.f;
        float cdf = 0.5f * (1 + erff(v * 0.7071067811865476f)), pdf = expf(-0.5f * v * v) * 0.3989422804014327f;
        return cdf + v * pdf;
    }
    default: { /* AG_ACT_LAPLACE */
        float u = (v - LAPLACE_MU) / LAPLACE_S;
        return expf(-u * u) * 0.5641895835477563f / LAPLACE_S;
    }
    }
}

__global__ void act_fwd_k(const float *x, float *y, int64_t n, int kind) {
    SX_GRID_STRIDE(i, n) y[i] = act_f(kind, x[i]);
}
__global__ void act_bwd_k(const float *x, const float *dy, float *dx, int64_t n, int kind) {
    SX_GRID_STRIDE(i, n) dx[i] += dy[i] * act_df(kind, x[i]);
}

extern "C" void ag_cuda_act_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("act", n->in[0]);
    int64_t cnt = n->out->numel;
    if (!cnt) return;
    act_fwd_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_f32(n->out), cnt, (int)n->ip[0]);
    SX_LAUNCHED("act");
}
extern "C" void ag_cuda_act_bwd(ag_ctx *ctx, ag_node *n) {
    float *dx = sx_grad(ctx, n->in[0]);
    int64_t cnt = n->out->numel;
    if (!cnt) return;
    act_bwd_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_f32(n->out->grad), dx, cnt,
                                                               (int)n->ip[0]);
    SX_LAUNCHED("act backward");
}

/* ---- dropout: keep element i where its word of ag_rng_words(key, i) >= ag_dropout_threshold(p), scaled by
 * 1 / (1 - p) (the CPU's mask bit for bit; the backward draws the words again instead of keeping the mask) ------ */

__global__ void dropout_fwd_k(const float *x, float *y, int64_t n, uint64_t key, uint64_t ctr, uint32_t thr, float s) {
    SX_GRID_STRIDE(i, n) y[i] = sx_rng_word(key, ctr, (uint64_t)i) >= thr ? x[i] * s : 0.f;
}
__global__ void dropout_bwd_k(const float *dy, float *dx, int64_t n, uint64_t key, uint64_t ctr, uint32_t thr, float s) {
    SX_GRID_STRIDE(i, n) {
        if (sx_rng_word(key, ctr, (uint64_t)i) >= thr) dx[i] += dy[i] * s;
    }
}

extern "C" void ag_cuda_dropout_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("dropout", n->in[0]);
    int64_t cnt = n->out->numel;
    float p = (float)n->fp[0], s = 1.0f / (1.0f - p);
    uint32_t thr = ag_dropout_threshold(n->fp[0]);
    if (!cnt) return;
    dropout_fwd_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_f32(n->out), cnt, n->key.key, n->key.counter_hi, thr, s);
    SX_LAUNCHED("dropout");
}
extern "C" void ag_cuda_dropout_bwd(ag_ctx *ctx, ag_node *n) {
    float *dx = sx_grad(ctx, n->in[0]);
    int64_t cnt = n->out->numel;
    float p = (float)n->fp[0], s = 1.0f / (1.0f - p);
    uint32_t thr = ag_dropout_threshold(n->fp[0]);
    if (!cnt) return;
    dropout_bwd_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->out->grad), dx, cnt, n->key.key, n->key.counter_hi, thr, s);
    SX_LAUNCHED("dropout backward");
}

/* ---- reshape (a view: nothing to run forward), permute ------------------------------------------------------------- */

extern "C" void ag_cuda_reshape_fwd(ag_ctx *ctx, ag_node *n) { (void)n; }
extern "C" void ag_cuda_reshape_bwd(ag_ctx *ctx, ag_node *n) {
    float *dx = sx_grad(ctx, n->in[0]);
    sx_add_into("reshape backward", dx, sx_f32(n->out->grad), n->out->numel);
}

struct Perm {
    int64_t oshape[4], istride[4]; /* output shape padded to 4 dims; the input stride each output axis walks */
};

/* Output element k reads input element sum_d o_d istride[d]; a permutation, so the backward's += never collides. */
__global__ void permute_k(const float *src, float *dst, Perm p, int64_t n, int backward) {
    SX_GRID_STRIDE(k, n) {
        int64_t t = k, off = 0;
        for (int d = 3; d >= 0; d--) {
            off += (t % p.oshape[d]) * p.istride[d];
            t /= p.oshape[d];
        }
        if (backward)
            dst[off] += src[k];
        else
            dst[k] = src[off];
    }
}

static Perm perm_params(const ag_node *n) {
    Perm p;
    int nd = n->in[0]->ndim, pad = 4 - nd;
    int64_t istride[AG_MAX_DIMS], s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        istride[i] = s;
        s *= n->in[0]->shape[i];
    }
    for (int d = 0; d < 4; d++) {
        p.oshape[d] = d < pad ? 1 : n->out->shape[d - pad];
        p.istride[d] = d < pad ? 0 : istride[n->ip[d - pad]];
    }
    return p;
}

extern "C" void ag_cuda_permute_fwd(ag_ctx *ctx, ag_node *n) {
    SX_REQUIRE_F32("permute", n->in[0]);
    int64_t cnt = n->out->numel;
    if (!cnt) return;
    permute_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->in[0]), sx_f32(n->out), perm_params(n), cnt, 0);
    SX_LAUNCHED("permute");
}
extern "C" void ag_cuda_permute_bwd(ag_ctx *ctx, ag_node *n) {
    float *dx = sx_grad(ctx, n->in[0]);
    int64_t cnt = n->out->numel;
    if (!cnt) return;
    permute_k<<<sx_blocks(cnt), SX_THREADS, 0, sx_stream()>>>(sx_f32(n->out->grad), dx, perm_params(n), cnt, 1);
    SX_LAUNCHED("permute backward");
}

/* ---- cast: f32 <-> bf16 forward; both gradients are f32, so the backward is dx += dy -------------------------------- */

extern "C" void ag_cuda_cast_fwd(ag_ctx *ctx, ag_node *n) { ag_cuda_convert(n->out, n->in[0]); }
extern "C" void ag_cuda_cast_bwd(ag_ctx *ctx, ag_node *n) {
    float *dx = sx_grad(ctx, n->in[0]);
    SX_REQUIRE_F32("cast backward", n->out->grad);
    sx_add_into("cast backward", dx, sx_f32(n->out->grad), n->out->numel);
}
