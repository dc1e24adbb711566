/* Finite-difference gradient checks, in f64, of every differentiable op of the autograd engine, on shapes that
 * include a dim of 1 and sizes that are not multiples of 8. Tolerance: 1e-6 relative to the largest numeric
 * gradient entry, unless a comment beside the test gives a reason for another. Central differences with h = 1e-6 in
 * f64 have truncation error ~h^2 |f'''| ~ 1e-12 and rounding error ~1e-16/h ~ 1e-10, far below 1e-6. */
#include <criterion/criterion.h>

#include "tests/gradcheck.h"

#define TOL 1e-6
#define H 1e-6

static ag_arena A;
static void setup(void) { ag_arena_init(&A, "test-inputs", 1 << 20); }
static void teardown(void) { ag_arena_free(&A); }
TestSuite(grad, .init = setup, .fini = teardown);

static ag_tensor *input(uint64_t seed, bool grad, int ndim, const int64_t *shape, double lo, double hi) {
    ag_tensor *t = ag_tensor_new(&A, AG_F64, ndim, shape);
    gc_fill_uniform(t, seed, lo, hi);
    t->requires_grad = grad;
    return t;
}
#define IN(seed, ...) input((seed), true, AG_NDIM(__VA_ARGS__), AG_SHAPE(__VA_ARGS__), -1.0, 1.0)
#define CONST(seed, ...) input((seed), false, AG_NDIM(__VA_ARGS__), AG_SHAPE(__VA_ARGS__), -1.0, 1.0)

static ag_tensor *idx_tensor(int n, const int32_t *v) {
    ag_tensor *t = ag_new(&A, AG_I32, n);
    for (int i = 0; i < n; i++) ((int32_t *)t->data)[i] = v[i];
    return t;
}

static void expect_ok(const char *what, gc_result r, double tol) {
    printf("gradcheck %-28s max rel err %.3e (input %d, index %lld)\n", what, r.max_rel, r.worst_input, (long long)r.worst_index);
    cr_expect(r.max_rel <= tol, "%s: gradient rel error %.3e > %.1e at input %d index %lld", what, r.max_rel, tol, r.worst_input,
              (long long)r.worst_index);
}

/* ---- matmul --------------------------------------------------------------------------------------------------- */
typedef struct { bool ta, tb; } mm_args;
static ag_tensor *f_matmul(ag_ctx *c, ag_tensor **in, void *u) {
    mm_args *a = u;
    return ag_matmul(c, in[0], in[1], a->ta, a->tb);
}
Test(grad, matmul_2d_all_transposes) {
    for (int k = 0; k < 4; k++) {
        mm_args a = {k & 1, k >> 1};
        int64_t M = 5, K = 3, N = 7;
        ag_tensor *x = a.ta ? IN(1, K, M) : IN(1, M, K);
        ag_tensor *w = a.tb ? IN(2, N, K) : IN(2, K, N);
        char name[64];
        snprintf(name, sizeof name, "matmul ta=%d tb=%d", a.ta, a.tb);
        expect_ok(name, gc_check(f_matmul, (ag_tensor *[]){x, w}, 2, &a, H, false), TOL);
    }
}
Test(grad, matmul_shared_weight_3d) {
    mm_args a = {false, true}; /* y = x W^T, the linear layer: x [B, S, in], W [out, in] */
    expect_ok("matmul linear [2,3,5]x[4,5]^T", gc_check(f_matmul, (ag_tensor *[]){IN(3, 2, 3, 5), IN(4, 4, 5)}, 2, &a, H, false), TOL);
}
Test(grad, matmul_batched_4d) {
    for (int k = 0; k < 4; k++) {
        mm_args a = {k & 1, k >> 1};
        ag_tensor *x = a.ta ? IN(5, 2, 1, 3, 5) : IN(5, 2, 1, 5, 3);
        ag_tensor *w = a.tb ? IN(6, 2, 1, 9, 3) : IN(6, 2, 1, 3, 9);
        char name[64];
        snprintf(name, sizeof name, "bmm 4d ta=%d tb=%d", a.ta, a.tb);
        expect_ok(name, gc_check(f_matmul, (ag_tensor *[]){x, w}, 2, &a, H, false), TOL);
    }
}

/* ---- broadcasting binary ops ------------------------------------------------------------------------------------ */
static ag_tensor *f_add(ag_ctx *c, ag_tensor **in, void *u) { return ag_add(c, in[0], in[1]); }
static ag_tensor *f_mul(ag_ctx *c, ag_tensor **in, void *u) { return ag_mul(c, in[0], in[1]); }
Test(grad, add_mul_broadcast) {
    gc_fn fns[2] = {f_add, f_mul};
    const char *names[2] = {"add", "mul"};
    for (int k = 0; k < 2; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s same shape", names[k]);
        expect_ok(name, gc_check(fns[k], (ag_tensor *[]){IN(7, 3, 5), IN(8, 3, 5)}, 2, NULL, H, false), TOL);
        snprintf(name, sizeof name, "%s [2,3,5]+[5]", names[k]);
        expect_ok(name, gc_check(fns[k], (ag_tensor *[]){IN(9, 2, 3, 5), IN(10, 5)}, 2, NULL, H, false), TOL);
        snprintf(name, sizeof name, "%s [1,3,4,5]+[2,1,1,5]", names[k]);
        expect_ok(name, gc_check(fns[k], (ag_tensor *[]){IN(11, 1, 3, 4, 5), IN(12, 2, 1, 1, 5)}, 2, NULL, H, false), TOL);
        snprintf(name, sizeof name, "%s [6,9]*[6,1]", names[k]);
        expect_ok(name, gc_check(fns[k], (ag_tensor *[]){IN(13, 6, 9), IN(14, 6, 1)}, 2, NULL, H, false), TOL);
    }
}

/* ---- elementwise ------------------------------------------------------------------------------------------------- */
static ag_tensor *f_scale(ag_ctx *c, ag_tensor **in, void *u) { return ag_scale(c, in[0], -0.37); }
static ag_tensor *f_relu(ag_ctx *c, ag_tensor **in, void *u) { return ag_relu(c, in[0]); }
static ag_tensor *f_gelu_tanh(ag_ctx *c, ag_tensor **in, void *u) { return ag_gelu_tanh(c, in[0]); }
static ag_tensor *f_gelu_erf(ag_ctx *c, ag_tensor **in, void *u) { return ag_gelu_erf(c, in[0]); }
static ag_tensor *f_square(ag_ctx *c, ag_tensor **in, void *u) { return ag_square(c, in[0]); }
Test(grad, elementwise) {
    expect_ok("scale", gc_check(f_scale, (ag_tensor *[]){IN(15, 3, 7)}, 1, NULL, H, false), TOL);
    expect_ok("gelu_tanh", gc_check(f_gelu_tanh, (ag_tensor *[]){input(16, true, 2, AG_SHAPE(3, 7), -3, 3)}, 1, NULL, H, false), TOL);
    expect_ok("gelu_erf", gc_check(f_gelu_erf, (ag_tensor *[]){input(17, true, 2, AG_SHAPE(3, 7), -3, 3)}, 1, NULL, H, false), TOL);
    expect_ok("square", gc_check(f_square, (ag_tensor *[]){IN(18, 1, 9)}, 1, NULL, H, false), TOL);
    /* relu is not differentiable at 0: inputs are kept at least 0.05 away from it, far beyond h. */
    ag_tensor *x = IN(19, 4, 5);
    for (int64_t i = 0; i < x->numel; i++) {
        double v = ag_get(x, i);
        ag_set(x, i, v >= 0 ? v + 0.05 : v - 0.05);
    }
    expect_ok("relu", gc_check(f_relu, (ag_tensor *[]){x}, 1, NULL, H, false), TOL);
}

/* AG_OP_ACT, every kind: inputs in [-3, 7) reach relu6's top and mish's and silu's tails; the kinks (0 for relu6
 * and leaky_relu, 6 for relu6) are kept 0.05 away, far beyond h. */
static ag_tensor *f_act(ag_ctx *c, ag_tensor **in, void *u) { return ag_act(c, *(ag_act_kind *)u, in[0]); }
Test(grad, activations) {
    static const struct {
        ag_act_kind k;
        const char *name;
    } kinds[] = {{AG_ACT_SILU, "silu"},       {AG_ACT_QUICK_GELU, "quick_gelu"}, {AG_ACT_SIGMOID, "sigmoid"},
                 {AG_ACT_TANH, "tanh"},       {AG_ACT_RELU6, "relu6"},           {AG_ACT_RELU2, "relu2"},
                 {AG_ACT_LEAKY_RELU, "leaky_relu"}, {AG_ACT_MISH, "mish"},       {AG_ACT_GELU_10, "gelu_10"},
                 {AG_ACT_LAPLACE, "laplace"}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        ag_tensor *x = input(40 + i, true, 2, AG_SHAPE(4, 9), -3, 7);
        for (int64_t j = 0; j < x->numel; j++) {
            double v = ag_get(x, j);
            if (fabs(v) < 0.05) v = v < 0 ? -0.05 : 0.05;
            if (fabs(v - 6) < 0.05) v = v < 6 ? 5.95 : 6.05;
            ag_set(x, j, v);
        }
        ag_act_kind k = kinds[i].k;
        expect_ok(kinds[i].name, gc_check(f_act, (ag_tensor *[]){x}, 1, &k, H, false), TOL);
    }
}

/* ---- rmsnorm ------------------------------------------------------------------------------------------------- */
static ag_tensor *f_rmsnorm(ag_ctx *c, ag_tensor **in, void *u) { return ag_rmsnorm(c, in[0], in[1], u ? *(double *)u : 1e-6); }
Test(grad, rmsnorm) {
    expect_ok("rmsnorm [2,3,7]", gc_check(f_rmsnorm, (ag_tensor *[]){IN(20, 2, 3, 7), IN(21, 7)}, 2, NULL, H, false), TOL);
    /* With D = 1 and eps = 1e-6 the output is ~w sign(x) and dy/dx ~ eps/|x|^3 vanishes into rounding: a larger eps
     * gives the size-1 edge case a gradient worth checking. */
    double eps = 0.3;
    expect_ok("rmsnorm [1,1] eps 0.3", gc_check(f_rmsnorm, (ag_tensor *[]){IN(22, 1, 1), IN(23, 1)}, 2, &eps, H, false), TOL);
}

/* ---- softmax family ----------------------------------------------------------------------------------------------- */
static ag_tensor *f_softmax(ag_ctx *c, ag_tensor **in, void *u) { return ag_softmax(c, in[0], in[1], in[2]); }
static ag_tensor *f_softmax_plain(ag_ctx *c, ag_tensor **in, void *u) { return ag_softmax(c, in[0], NULL, NULL); }
static ag_tensor *f_logsumexp(ag_ctx *c, ag_tensor **in, void *u) { return ag_logsumexp(c, in[0]); }
Test(grad, softmax_bias_mask) {
    /* scores [B, H, T, S] + position bias [1, H, T, S] + mask [B, 1, 1, S], as T5 attention adds them */
    ag_tensor *mask = ag_zeros(&A, AG_F64, 2, 1, 1, 5);
    ag_set(mask, 4, -1e9); /* key 4 masked in batch row 0 */
    ag_set(mask, 5 + 0, -1e9);
    expect_ok("softmax+bias+mask", gc_check(f_softmax, (ag_tensor *[]){IN(24, 2, 3, 4, 5), IN(25, 1, 3, 4, 5), mask}, 3, NULL, H, false), TOL);
    expect_ok("softmax plain [1,7]", gc_check(f_softmax_plain, (ag_tensor *[]){IN(26, 1, 7)}, 1, NULL, H, false), TOL);
    expect_ok("logsumexp", gc_check(f_logsumexp, (ag_tensor *[]){IN(28, 2, 3, 9)}, 1, NULL, H, false), TOL);
    expect_ok("logsumexp 1-d", gc_check(f_logsumexp, (ag_tensor *[]){IN(29, 11)}, 1, NULL, H, false), TOL);
}

/* ---- indexing ------------------------------------------------------------------------------------------------- */
static ag_tensor *f_embedding(ag_ctx *c, ag_tensor **in, void *u) { return ag_embedding(c, in[0], u); }
static ag_tensor *f_gather(ag_ctx *c, ag_tensor **in, void *u) { return ag_gather_rows(c, in[0], u); }
static ag_tensor *f_scatter(ag_ctx *c, ag_tensor **in, void *u) { return ag_scatter_rows(c, in[0], u, 6); }
Test(grad, embedding_gather_scatter) {
    ag_tensor *ids = ag_new(&A, AG_I32, 2, 3);
    int32_t v[6] = {4, 0, 4, 9, 1, 4}; /* repeated ids: their gradients must add */
    memcpy(ids->data, v, sizeof v);
    expect_ok("embedding", gc_check(f_embedding, (ag_tensor *[]){IN(30, 10, 3)}, 1, ids, H, false), TOL);
    ag_tensor *gi = idx_tensor(7, (int32_t[]){2, -1, 0, 2, 5, 5, 1}); /* -1: a zero row */
    expect_ok("gather_rows", gc_check(f_gather, (ag_tensor *[]){IN(31, 6, 5)}, 1, gi, H, false), TOL);
    ag_tensor *si = idx_tensor(4, (int32_t[]){5, -1, 0, 5});
    expect_ok("scatter_rows", gc_check(f_scatter, (ag_tensor *[]){IN(32, 4, 3)}, 1, si, H, false), TOL);
}

typedef struct { ag_tensor *off; bool tw; } gm_args;
static ag_tensor *f_grouped(ag_ctx *c, ag_tensor **in, void *u) {
    gm_args *a = u;
    return ag_grouped_matmul(c, in[0], in[1], a->off, a->tw);
}
Test(grad, grouped_matmul) {
    /* 4 experts, 9 rows of which 8 are routed: expert 2 gets no token, row 8 is beyond offsets[E] */
    ag_tensor *off = ag_new(&A, AG_I64, 5);
    int64_t o[5] = {0, 3, 4, 4, 8};
    memcpy(off->data, o, sizeof o);
    for (int tw = 0; tw < 2; tw++) {
        gm_args a = {off, tw};
        ag_tensor *w = tw ? IN(34, 4, 6, 5) : IN(34, 4, 5, 6);
        expect_ok(tw ? "grouped_matmul W^T" : "grouped_matmul W", gc_check(f_grouped, (ag_tensor *[]){IN(33, 9, 5), w}, 2, &a, H, false), TOL);
    }
}

/* ---- dropout, shapes, reductions ----------------------------------------------------------------------------- */
static ag_tensor *f_dropout(ag_ctx *c, ag_tensor **in, void *u) { return ag_dropout(c, in[0], 0.3, ag_rng_make(5, 7, 11)); }
static ag_tensor *f_reshape(ag_ctx *c, ag_tensor **in, void *u) { return ag_mul(c, ag_reshapev(c, in[0], 5, 6), in[1]); }
static ag_tensor *f_permute(ag_ctx *c, ag_tensor **in, void *u) { return ag_permute(c, in[0], (const int[]){2, 0, 3, 1}); }
static ag_tensor *f_transpose(ag_ctx *c, ag_tensor **in, void *u) { return ag_transpose(c, in[0], 0, 1); }
static ag_tensor *f_sum(ag_ctx *c, ag_tensor **in, void *u) { return ag_sum(c, ag_square(c, in[0])); }
static ag_tensor *f_sum_last(ag_ctx *c, ag_tensor **in, void *u) { return ag_sum_last(c, in[0]); }
Test(grad, dropout_shapes_reductions) {
    expect_ok("dropout (training)", gc_check(f_dropout, (ag_tensor *[]){IN(35, 4, 9)}, 1, NULL, H, true), TOL);
    expect_ok("reshape", gc_check(f_reshape, (ag_tensor *[]){IN(36, 2, 3, 5), IN(37, 5, 6)}, 2, NULL, H, false), TOL);
    expect_ok("permute 4d", gc_check(f_permute, (ag_tensor *[]){IN(38, 2, 3, 1, 5)}, 1, NULL, H, false), TOL);
    expect_ok("transpose", gc_check(f_transpose, (ag_tensor *[]){IN(39, 3, 7)}, 1, NULL, H, false), TOL);
    expect_ok("sum", gc_check(f_sum, (ag_tensor *[]){IN(40, 3, 7)}, 1, NULL, H, false), TOL);
    expect_ok("sum_last", gc_check(f_sum_last, (ag_tensor *[]){IN(42, 2, 3, 7)}, 1, NULL, H, false), TOL);
}

static ag_tensor *f_ce(ag_ctx *c, ag_tensor **in, void *u) { return ag_cross_entropy(c, in[0], u); }
Test(grad, cross_entropy_ignore_index) {
    ag_tensor *labels = idx_tensor(5, (int32_t[]){3, -100, 0, 10, -100});
    expect_ok("cross_entropy", gc_check(f_ce, (ag_tensor *[]){input(43, true, 2, AG_SHAPE(5, 11), -3, 3)}, 1, labels, H, false), TOL);
}

/* Cast through f32 and back: the function is the identity up to f32 rounding, so the central difference carries a
 * rounding error of ~eps_f32 |x| / h = 6e-8 / 1e-2 ~ 6e-6 relative; 1e-4 leaves a margin. */
static ag_tensor *f_cast(ag_ctx *c, ag_tensor **in, void *u) { return ag_cast(c, ag_cast(c, in[0], AG_F32), AG_F64); }
Test(grad, cast_roundtrip) {
    expect_ok("cast f64->f32->f64", gc_check(f_cast, (ag_tensor *[]){IN(44, 3, 5)}, 1, NULL, 1e-2, false), 1e-4);
}

/* A composed graph (attention-like) checks that gradients from several consumers of one tensor add up. */
static ag_tensor *f_attention(ag_ctx *c, ag_tensor **in, void *u) {
    ag_tensor *q = ag_matmul(c, in[0], in[1], false, true);  /* [2, 4, 6] */
    ag_tensor *k = ag_matmul(c, in[0], in[2], false, true);
    ag_tensor *s = ag_matmul(c, q, k, false, true);          /* [2, 4, 4] */
    ag_tensor *p = ag_softmax(c, s, in[3], NULL);
    return ag_rmsnorm(c, ag_matmul(c, p, q, false, false), in[4], 1e-6);
}
Test(grad, composed_attention) {
    expect_ok("attention-like graph",
              gc_check(f_attention, (ag_tensor *[]){IN(45, 2, 4, 3), IN(46, 6, 3), IN(47, 6, 3), IN(48, 1, 4, 4), IN(49, 6)}, 5, NULL, H, false), TOL);
}

/* A caller-supplied op (the hook expert parallelism moves tokens through): here, rows in reverse order. */
static void rev_fwd(void *u, const ag_tensor *in, ag_tensor *out) {
    int64_t R = in->shape[0], D = in->shape[1];
    for (int64_t r = 0; r < R; r++) memcpy((double *)out->data + r * D, (const double *)in->data + (R - 1 - r) * D, sizeof(double) * (size_t)D);
}
static void rev_bwd(void *u, const ag_tensor *dout, ag_tensor *din) {
    int64_t R = dout->shape[0], D = dout->shape[1];
    for (int64_t r = 0; r < R; r++)
        for (int64_t j = 0; j < D; j++) ((double *)din->data)[(R - 1 - r) * D + j] += ((const double *)dout->data)[r * D + j];
}
static const ag_custom_fn REV = {"reverse_rows", rev_fwd, rev_bwd, NULL};
static ag_tensor *f_custom(ag_ctx *c, ag_tensor **in, void *u) { return ag_square(c, ag_custom(c, in[0], 2, in[0]->shape, &REV)); }
Test(grad, custom_op) {
    expect_ok("custom (reverse rows)", gc_check(f_custom, (ag_tensor *[]){IN(50, 5, 3)}, 1, NULL, H, false), TOL);
}
