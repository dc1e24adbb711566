/* Forward checks of the CPU ops in f32 against naive reference loops accumulated in double, on shapes with a dim of
 * 1 and sizes that are not multiples of 8, plus the engine's edge cases: fully masked softmax rows, dropout
 * statistics and determinism, empty experts, arenas, bf16, the tape's modes and the op tables' checks. Tolerances: f32
 * results against double references differ by accumulated rounding, ~K * 6e-8 relative for a K-term dot product; 1e-5
 * relative covers K up to ~100 with margin. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <string.h>

#include "autograd/ag.h"
#include "autograd/ag_internal.h"

static ag_arena A, ACT;
static ag_ctx C;
static void setup(void) {
    ag_arena_init(&A, "inputs", 1 << 20);
    ag_arena_init(&ACT, "act", 1 << 20);
    ag_ctx_init(&C, &ACT);
}
static void teardown(void) {
    ag_ctx_free(&C);
    ag_arena_free(&A);
    ag_arena_free(&ACT);
}
TestSuite(ops, .init = setup, .fini = teardown);
TestSuite(core, .init = setup, .fini = teardown);

static ag_tensor *rnd(uint64_t seed, int ndim, const int64_t *shape) {
    ag_tensor *t = ag_tensor_new(&A, AG_F32, ndim, shape);
    ag_rng_key k = ag_rng_make(seed, 1, 2);
    for (int64_t i = 0; i < t->numel; i++) ag_set(t, i, 2.0 * ag_rng_uniform(k, (uint64_t)i) - 1.0);
    return t;
}
#define RND(seed, ...) rnd((seed), AG_NDIM(__VA_ARGS__), AG_SHAPE(__VA_ARGS__))

/* max |got - want| / max(max |want|, 1e-30) */
static double relerr(const ag_tensor *got, const double *want, int64_t n) {
    cr_assert_eq(got->numel, n, "element count %lld vs %lld", (long long)got->numel, (long long)n);
    double md = 0, mw = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(ag_get(got, i) - want[i]);
        if (!(d <= md)) md = d;
        mw = fmax(mw, fabs(want[i]));
    }
    return md / fmax(mw, 1e-30);
}
#define EXPECT_CLOSE(what, got, want, n, tol)                                                                          \
    do {                                                                                                              \
        double e_ = relerr((got), (want), (n));                                                                       \
        cr_expect(e_ <= (tol), "%s: rel error %.3e > %.1e", (what), e_, (double)(tol));                              \
    } while (0)

static double *dbuf(int64_t n) { return ag_arena_calloc(&A, sizeof(double) * (size_t)n); }
static double at(const ag_tensor *t, int64_t i) { return ag_get(t, i); }

Test(ops, matmul_all_transposes_and_batches) {
    int64_t M = 5, K = 9, N = 3;
    for (int k = 0; k < 4; k++) {
        bool ta = k & 1, tb = k >> 1;
        for (int64_t batch = 1; batch <= 3; batch += 2) {
            ag_tensor *a = ta ? RND(1, batch, K, M) : RND(1, batch, M, K);
            ag_tensor *b = tb ? RND(2, batch, N, K) : RND(2, batch, K, N);
            ag_tensor *c = ag_matmul(&C, a, b, ta, tb);
            double *want = dbuf(batch * M * N);
            for (int64_t z = 0; z < batch; z++)
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < N; j++) {
                        double s = 0;
                        for (int64_t q = 0; q < K; q++)
                            s += at(a, z * M * K + (ta ? q * M + i : i * K + q)) * at(b, z * K * N + (tb ? j * K + q : q * N + j));
                        want[z * M * N + i * N + j] = s;
                    }
            EXPECT_CLOSE("batched matmul", c, want, batch * M * N, 1e-5);
        }
    }
    /* a shared 2-D weight applied to every row of a 3-D input: the linear layer */
    ag_tensor *x = RND(3, 2, 7, 9), *w = RND(4, 3, 9);
    ag_tensor *y = ag_matmul(&C, x, w, false, true);
    double *want = dbuf(2 * 7 * 3);
    for (int64_t r = 0; r < 14; r++)
        for (int64_t j = 0; j < 3; j++) {
            double s = 0;
            for (int64_t q = 0; q < 9; q++) s += at(x, r * 9 + q) * at(w, j * 9 + q);
            want[r * 3 + j] = s;
        }
    EXPECT_CLOSE("linear", y, want, 42, 1e-5);
}

Test(ops, broadcast_binary) {
    ag_tensor *a = RND(5, 2, 1, 3, 5), *b = RND(6, 1, 4, 1, 5);
    ag_tensor *s = ag_add(&C, a, b), *m = ag_mul(&C, a, b);
    cr_assert(s->ndim == 4 && s->shape[0] == 2 && s->shape[1] == 4 && s->shape[2] == 3 && s->shape[3] == 5);
    double *ws = dbuf(120), *wm = dbuf(120);
    for (int i0 = 0; i0 < 2; i0++)
        for (int i1 = 0; i1 < 4; i1++)
            for (int i2 = 0; i2 < 3; i2++)
                for (int i3 = 0; i3 < 5; i3++) {
                    int o = ((i0 * 4 + i1) * 3 + i2) * 5 + i3;
                    double x = at(a, (i0 * 3 + i2) * 5 + i3), y = at(b, i1 * 5 + i3);
                    ws[o] = x + y;
                    wm[o] = x * y;
                }
    EXPECT_CLOSE("add", s, ws, 120, 1e-7);
    EXPECT_CLOSE("mul", m, wm, 120, 1e-7);
}

Test(ops, activations_scale_square) {
    ag_tensor *x = RND(7, 3, 11);
    for (int64_t i = 0; i < x->numel; i++) ag_set(x, i, 4 * at(x, i));
    ag_tensor *r = ag_relu(&C, x), *gt = ag_gelu_tanh(&C, x), *ge = ag_gelu_erf(&C, x), *sc = ag_scale(&C, x, -1.5), *sq = ag_square(&C, x);
    double *wr = dbuf(33), *wt = dbuf(33), *we = dbuf(33), *ws = dbuf(33), *wq = dbuf(33);
    for (int i = 0; i < 33; i++) {
        double v = at(x, i);
        wr[i] = v > 0 ? v : 0;
        wt[i] = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        we[i] = 0.5 * v * (1 + erf(v / sqrt(2.0)));
        ws[i] = -1.5 * v;
        wq[i] = v * v;
    }
    EXPECT_CLOSE("relu", r, wr, 33, 0);
    EXPECT_CLOSE("gelu_tanh", gt, wt, 33, 1e-6); /* f32 tanhf/erff vs double: a few ulps */
    EXPECT_CLOSE("gelu_erf", ge, we, 33, 1e-6);
    EXPECT_CLOSE("scale", sc, ws, 33, 1e-7);
    EXPECT_CLOSE("square", sq, wq, 33, 1e-7);
}

Test(ops, rmsnorm_matches_t5_layernorm) {
    ag_tensor *x = RND(8, 2, 3, 13), *w = RND(9, 13);
    ag_tensor *y = ag_rmsnorm(&C, x, w, 1e-6);
    double *want = dbuf(78);
    for (int r = 0; r < 6; r++) {
        double v = 0;
        for (int j = 0; j < 13; j++) v += at(x, r * 13 + j) * at(x, r * 13 + j);
        v /= 13;
        for (int j = 0; j < 13; j++) want[r * 13 + j] = at(w, j) * at(x, r * 13 + j) / sqrt(v + 1e-6);
    }
    EXPECT_CLOSE("rmsnorm", y, want, 78, 1e-6);
}

Test(ops, softmax_bias_mask_and_fully_masked_rows) {
    const float MINF = -3.4028234663852886e38f; /* torch.finfo(float32).min, HF's additive mask */
    ag_tensor *x = RND(10, 2, 3, 4, 7), *bias = RND(11, 1, 3, 4, 7);
    ag_tensor *mask = ag_zeros(&A, AG_F32, 2, 1, 1, 7);
    ag_set(mask, 5, MINF);
    ag_set(mask, 6, MINF);
    for (int j = 0; j < 7; j++) ag_set(mask, 7 + j, MINF); /* batch row 1: every key masked */
    ag_tensor *y = ag_softmax(&C, x, bias, mask);
    double *want = dbuf(168);
    for (int b = 0; b < 2; b++)
        for (int h = 0; h < 3; h++)
            for (int q = 0; q < 4; q++) {
                double z[7], mx = -INFINITY, s = 0;
                for (int j = 0; j < 7; j++) {
                    /* x + (bias + mask) in f32, as HF adds them */
                    float add = (float)at(bias, (h * 4 + q) * 7 + j) + (float)at(mask, b * 7 + j);
                    z[j] = (double)((float)at(x, ((b * 3 + h) * 4 + q) * 7 + j) + add);
                    mx = fmax(mx, z[j]);
                }
                for (int j = 0; j < 7; j++) s += exp(z[j] - mx);
                for (int j = 0; j < 7; j++) want[((b * 3 + h) * 4 + q) * 7 + j] = exp(z[j] - mx) / s;
            }
    EXPECT_CLOSE("softmax", y, want, 168, 1e-6);
    for (int j = 0; j < 7; j++) cr_expect(fabs(at(y, 84 + j) - 1.0 / 7) < 1e-7, "a fully masked row must be uniform, got %g", at(y, 84 + j));
    for (int64_t i = 0; i < y->numel; i++) cr_assert(isfinite(at(y, i)), "NaN/inf in softmax output at %lld", (long long)i);
}

Test(ops, logsumexp) {
    ag_tensor *x = RND(12, 3, 17);
    ag_tensor *lse = ag_logsumexp(&C, x);
    double *we = dbuf(3);
    for (int r = 0; r < 3; r++) {
        double s = 0;
        for (int j = 0; j < 17; j++) s += exp(at(x, r * 17 + j));
        we[r] = log(s);
    }
    EXPECT_CLOSE("logsumexp", lse, we, 3, 1e-6);
}

Test(ops, embedding_gather_scatter) {
    ag_tensor *w = RND(13, 10, 3);
    ag_tensor *ids = ag_new(&A, AG_I32, 2, 2);
    int32_t iv[4] = {9, 0, 9, 4};
    memcpy(ids->data, iv, sizeof iv);
    ag_tensor *e = ag_embedding(&C, w, ids);
    cr_assert(e->ndim == 3 && e->shape[2] == 3);
    double *we = dbuf(12);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) we[i * 3 + j] = at(w, iv[i] * 3 + j);
    EXPECT_CLOSE("embedding", e, we, 12, 0);
    ag_tensor *gi = ag_new(&A, AG_I32, 3);
    int32_t gv[3] = {2, -1, 2};
    memcpy(gi->data, gv, sizeof gv);
    ag_tensor *g = ag_gather_rows(&C, w, gi);
    double wg[9] = {at(w, 6), at(w, 7), at(w, 8), 0, 0, 0, at(w, 6), at(w, 7), at(w, 8)};
    EXPECT_CLOSE("gather_rows (-1 gives zeros)", g, wg, 9, 0);
    ag_tensor *s = ag_scatter_rows(&C, g, gi, 4); /* rows 0 and 2 of g both land in row 2 */
    double ws[12] = {0};
    for (int j = 0; j < 3; j++) ws[2 * 3 + j] = 2 * at(w, 6 + j);
    EXPECT_CLOSE("scatter_rows", s, ws, 12, 1e-7);
}

Test(ops, grouped_matmul_with_an_empty_expert_and_tail_rows) {
    ag_tensor *x = RND(14, 9, 5), *w = RND(15, 4, 6, 5);
    ag_tensor *off = ag_new(&A, AG_I64, 5);
    int64_t o[5] = {0, 3, 3, 7, 8}; /* expert 1 gets nothing; row 8 is past offsets[E] */
    memcpy(off->data, o, sizeof o);
    ag_tensor *y = ag_grouped_matmul(&C, x, w, off, true);
    double *want = dbuf(54);
    for (int e = 0; e < 4; e++)
        for (int64_t r = o[e]; r < o[e + 1]; r++)
            for (int j = 0; j < 6; j++) {
                double s = 0;
                for (int q = 0; q < 5; q++) s += at(x, r * 5 + q) * at(w, (e * 6 + j) * 5 + q);
                want[r * 6 + j] = s;
            }
    EXPECT_CLOSE("grouped_matmul", y, want, 54, 1e-6);
}

Test(ops, dropout_statistics_and_determinism) {
    C.training = true;
    int64_t n = 200000;
    ag_tensor *x = ag_new(&A, AG_F32, n);
    ag_fill(x, 1.0);
    ag_tensor *y1 = ag_dropout(&C, x, 0.3, ag_rng_make(1, 2, 3)), *y2 = ag_dropout(&C, x, 0.3, ag_rng_make(1, 2, 3));
    ag_tensor *y3 = ag_dropout(&C, x, 0.3, ag_rng_make(1, 3, 3));
    int64_t kept = 0, same = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = ((float *)y1->data)[i];
        cr_assert(v == 0.0f || fabsf(v - 1.0f / 0.7f) < 1e-6f, "kept values must be scaled by 1/(1-p), got %g", v);
        kept += v != 0;
        same += ((float *)y1->data)[i] == ((float *)y3->data)[i];
    }
    /* binomial: sd = sqrt(n p (1-p)) ~ 205; 6 sd bounds the chance of a false failure below 1e-8 */
    double sd = sqrt(n * 0.3 * 0.7);
    cr_expect(fabs((double)kept - 0.7 * n) < 6 * sd, "kept %lld of %lld (expected 0.7 n +- %.0f)", (long long)kept, (long long)n, 6 * sd);
    cr_expect(!memcmp(y1->data, y2->data, sizeof(float) * (size_t)n), "the same key must give the same mask");
    cr_expect(same < n, "another step must give another mask");
    C.training = false;
    cr_expect(ag_dropout(&C, x, 0.3, ag_rng_make(1, 2, 3)) == x, "dropout is the identity in eval mode");
}

/* The backward's stored mask is the forward's: the gradient flows exactly where an element was kept (an odd size,
 * so the last mask word and the last 256-chunk are partial). */
Test(ops, dropout_backward_uses_the_forward_mask) {
    C.training = true;
    int64_t n = 1003;
    ag_tensor *x = ag_new(&A, AG_F32, n);
    for (int64_t i = 0; i < n; i++) ag_set(x, i, 1.0 + (double)(i % 7));
    x->requires_grad = true;
    x->grad = NULL;
    ag_tensor *y = ag_dropout(&C, x, 0.4, ag_rng_make(5, 6, 7));
    ag_backward(&C, ag_sum(&C, y));
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        bool k = ag_get(y, i) != 0;
        kept += k;
        cr_assert(k ? fabs(ag_get(x->grad, i) - 1.0 / 0.6) < 1e-6 : ag_get(x->grad, i) == 0, "element %lld: kept %d but gradient %g", (long long)i, k,
                  ag_get(x->grad, i));
    }
    cr_expect(kept > 0 && kept < n);
    x->grad = NULL;
    x->requires_grad = false;
    ag_ctx_reset(&C);
    C.training = false;
}

Test(ops, reshape_permute_reductions) {
    ag_tensor *x = RND(16, 2, 3, 1, 5);
    ag_tensor *r = ag_reshapev(&C, x, 6, -1);
    cr_expect(r->data == x->data && r->shape[1] == 5, "reshape is a view");
    ag_tensor *p = ag_permute(&C, x, (const int[]){3, 0, 2, 1}); /* [5, 2, 1, 3] */
    double *wp = dbuf(30);
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 2; b++)
            for (int c = 0; c < 3; c++) wp[(a * 2 + b) * 3 + c] = at(x, (b * 3 + c) * 5 + a);
    EXPECT_CLOSE("permute", p, wp, 30, 0);
    ag_tensor *s = ag_sum(&C, x), *sl = ag_sum_last(&C, x);
    double tot = 0, rows[6] = {0};
    for (int i = 0; i < 30; i++) {
        tot += at(x, i);
        rows[i / 5] += at(x, i);
    }
    double ws[1] = {tot};
    EXPECT_CLOSE("sum", s, ws, 1, 1e-6);
    EXPECT_CLOSE("sum_last", sl, rows, 6, 1e-6);
}

Test(ops, cross_entropy_ignore_index) {
    ag_tensor *lg = RND(17, 4, 9), *lab = ag_new(&A, AG_I32, 4);
    int32_t lv[4] = {3, -100, 8, 0};
    memcpy(lab->data, lv, sizeof lv);
    ag_tensor *l = ag_cross_entropy(&C, lg, lab);
    double tot = 0;
    for (int r = 0; r < 4; r++) {
        if (lv[r] < 0) continue;
        double s = 0;
        for (int j = 0; j < 9; j++) s += exp(at(lg, r * 9 + j));
        tot += log(s) - at(lg, r * 9 + lv[r]);
    }
    double want[1] = {tot / 3};
    EXPECT_CLOSE("cross_entropy", l, want, 1, 1e-6);
    int32_t all_ignored[4] = {-100, -100, -100, -100};
    memcpy(lab->data, all_ignored, sizeof all_ignored);
    cr_expect(ag_get(ag_cross_entropy(&C, lg, lab), 0) == 0.0, "no valid label: loss 0 (torch would give NaN)");
}

/* ---- core ---------------------------------------------------------------------------------------------------- */

Test(core, arena_alignment_and_steady_state) {
    ag_arena a;
    ag_arena_init(&a, "t", 1024);
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < 100; i++) {
            void *p = ag_arena_alloc(&a, 1000 + (size_t)i);
            cr_assert(((uintptr_t)p & 63) == 0, "allocation not 64-byte aligned");
        }
        int before = a.n_system_allocs;
        ag_arena_reset(&a);
        if (pass >= 1) cr_expect_eq(a.n_system_allocs, before, "pass %d: a reset after a pass that fitted must not allocate", pass);
    }
    int allocs = a.n_system_allocs;
    for (int i = 0; i < 100; i++) ag_arena_alloc(&a, 1000 + (size_t)i);
    cr_expect_eq(a.n_system_allocs, allocs, "the same pass again allocates nothing from the system");
    ag_arena_free(&a);
}

Test(core, arena_limit_aborts, .signal = SIGABRT) {
    ag_arena a;
    ag_arena_init(&a, "limited", 0);
    a.limit = 4096;
    ag_arena_alloc(&a, 8192);
}

Test(core, bf16_round_to_nearest_even) {
    cr_expect_eq(ag_bf16_from_f32(1.0f), 0x3f80);
    /* 1 + 2^-8 is halfway between two bf16 values: ties to even (down); 1 + 3*2^-8 rounds up */
    cr_expect_eq(ag_bf16_from_f32(1.0f + 1.0f / 256), 0x3f80);
    cr_expect_eq(ag_bf16_from_f32(1.0f + 3.0f / 256), 0x3f82);
    cr_expect_eq(ag_bf16_from_f32(INFINITY), 0x7f80);
    uint16_t nb = ag_bf16_from_f32(NAN);
    cr_expect((nb & 0x7f80) == 0x7f80 && (nb & 0x7f), "NaN must stay NaN, got %04x", nb);
    cr_expect(ag_f32_from_bf16(0x4049) == 3.140625f, "widening is exact");
    cr_expect(ag_f32_from_bf16(ag_bf16_from_f32(-2.5f)) == -2.5f);
}

Test(core, philox_streams) {
    ag_rng_key k1 = ag_rng_make(1, 2, 3), k2 = ag_rng_make(1, 2, 4), k3 = ag_rng_make(1, 3, 3);
    cr_expect(ag_rng_uniform(k1, 7) == ag_rng_uniform(k1, 7), "deterministic");
    cr_expect(ag_rng_uniform(k1, 7) != ag_rng_uniform(k2, 7) && ag_rng_uniform(k1, 7) != ag_rng_uniform(k3, 7), "streams differ");
    double s = 0, s2 = 0;
    int n = 100000;
    for (int i = 0; i < n; i++) {
        double u = ag_rng_uniform(k1, (uint64_t)i);
        cr_assert(u >= 0 && u < 1);
        s += u;
        s2 += u * u;
    }
    /* mean 1/2 with sd sqrt(1/12/n) ~ 9e-4; 6 sd */
    cr_expect(fabs(s / n - 0.5) < 6 * sqrt(1.0 / 12 / n), "uniform mean %.5f", s / n);
    cr_expect(fabs(s2 / n - s * s / n / n - 1.0 / 12) < 2e-3, "uniform variance %.5f", s2 / n - s * s / n / n);
}

/* ag_rng_words is ag_philox's four words per block, in order, from any start (aligned or not, batched or tail);
 * the uniforms are their top 24 bits; the dropout threshold rounds p * 2^32 up. */
Test(core, rng_words_are_the_philox_words) {
    ag_rng_key k = ag_rng_make(9, 4, 2);
    const uint64_t starts[] = {0, 1, 2, 3, 5, 31, 32, 33, 1000003};
    const int64_t lens[] = {0, 1, 3, 4, 7, 31, 32, 33, 64, 65, 200};
    uint32_t got[256], o[4];
    float u[256];
    for (size_t a = 0; a < sizeof starts / sizeof starts[0]; a++)
        for (size_t b = 0; b < sizeof lens / sizeof lens[0]; b++) {
            ag_rng_words(k, starts[a], lens[b], got);
            ag_rng_uniform_words(k, starts[a], lens[b], u);
            for (int64_t i = 0; i < lens[b]; i++) {
                uint64_t w = starts[a] + (uint64_t)i;
                ag_philox(k, w >> 2, o);
                cr_assert_eq(got[i], o[w & 3], "start %llu len %lld: word %lld", (unsigned long long)starts[a], (long long)lens[b], (long long)i);
                cr_assert(u[i] == (float)(o[w & 3] >> 8) * (1.0f / 16777216.0f));
            }
        }
    cr_expect_eq(ag_dropout_threshold(0), 0u, "p = 0 keeps everything");
    cr_expect_eq(ag_dropout_threshold(0.5), 2147483648u);
    cr_expect_eq(ag_dropout_threshold(1e-12), 1u, "rounded up: a positive rate drops something");
    cr_expect_eq(ag_dropout_threshold(0.9999999999999), 4294967295u);
}

Test(core, no_grad_records_nothing_and_grads_accumulate) {
    ag_tensor *w = RND(20, 3, 4);
    w->requires_grad = true;
    w->grad = ag_zeros(&A, AG_F32, 3, 4); /* a parameter: its gradient lives outside the activation arena */
    ag_tensor *x = RND(21, 2, 4);
    C.grad_enabled = false;
    ag_tensor *y = ag_matmul(&C, x, w, false, true);
    cr_expect_eq(C.tape_len, 0, "no-grad mode must not record");
    cr_expect(!y->requires_grad);
    C.grad_enabled = true;
    for (int micro = 0; micro < 2; micro++) {
        ag_backward(&C, ag_sum(&C, ag_matmul(&C, x, w, false, true)));
        ag_ctx_reset(&C);
    }
    /* d sum(x w^T) / dw[j, q] = sum_r x[r, q], twice */
    for (int j = 0; j < 3; j++)
        for (int q = 0; q < 4; q++) {
            double want = 2 * (at(x, q) + at(x, 4 + q));
            cr_expect(fabs(ag_get(w->grad, j * 4 + q) - want) < 1e-6, "accumulated grad [%d,%d] %g vs %g", j, q, ag_get(w->grad, j * 4 + q), want);
        }
    ag_zero_grad(w);
    for (int i = 0; i < 12; i++) cr_expect(ag_get(w->grad, i) == 0);
}

Test(core, shape_mismatch_aborts, .signal = SIGABRT) {
    ag_matmul(&C, RND(22, 2, 3), RND(23, 4, 5), false, false);
}

/* The op tables are checked against autograd/ag_ops.def when first used (ag_op_table_checked). */
static ag_op_entry test_table[AG_OP_COUNT];
static void fill_like_cpu(void) { memcpy(test_table, ag_op_table(AG_DEV_CPU), sizeof test_table); }

Test(core, op_tables_cover_every_op) {
    const ag_op_entry *cpu = ag_op_table(AG_DEV_CPU);
    for (int i = 0; i < AG_OP_COUNT; i++) {
        cr_expect(cpu[i].forward && !cpu[i].unsupported, "CPU: %s has no forward", ag_op_name((ag_op)i));
        cr_expect(!cpu[i].backward == !ag_op_differentiable((ag_op)i), "CPU: %s", ag_op_name((ag_op)i));
    }
    cr_expect_str_eq(ag_op_name(AG_OP_MATMUL), "matmul");
    cr_expect_str_eq(ag_op_name(AG_OP_GROUPED_MATMUL), "grouped_matmul");
    fill_like_cpu();
    test_table[AG_OP_SOFTMAX] = (ag_op_entry)AG_UNSUPPORTED("not yet");
    cr_expect(ag_op_table_checked(test_table, "test", true) == test_table, "a marked op is allowed where ops may lack");
}
Test(core, op_table_missing_entry_aborts, .signal = SIGABRT) {
    fill_like_cpu();
    test_table[AG_OP_SOFTMAX] = (ag_op_entry){0};
    ag_op_table_checked(test_table, "test", true);
}
Test(core, op_table_backward_mismatch_aborts, .signal = SIGABRT) {
    fill_like_cpu();
    test_table[AG_OP_SOFTMAX].backward = NULL;
    ag_op_table_checked(test_table, "test", true);
}
Test(core, op_table_unsupported_on_the_cpu_aborts, .signal = SIGABRT) {
    fill_like_cpu();
    test_table[AG_OP_SOFTMAX] = (ag_op_entry)AG_UNSUPPORTED("not yet");
    ag_op_table_checked(test_table, "CPU", false);
}
