/* Every op of the CUDA table against the CPU table (DESIGN.md 6: the chain of trust CPU -> CUDA): random inputs on
 * several shapes (dims of 1, sizes that are not multiples of 8, broadcasts), forward and backward on both devices,
 * |gpu - cpu| <= atol + rtol |cpu| per tensor, with the tolerance and its reason beside each op. SKIPPED (visibly)
 * without a GPU. Values are in [-1, 1) unless said otherwise.
 *
 * Where the tolerances come from: elementwise fp32 arithmetic is IEEE on both sides, so a single add or multiply
 * is exact; the device's expf/tanhf/erff differ from glibc's by a few ulp (~3e-7 relative); a K-term fp32 dot
 * product in a different order (cuBLAS splits K, OpenBLAS does not; TF32 is off) differs by ~sqrt(K) ulp of the
 * sum of |terms| (K <= 40 here: 2e-5 absolute covers it 20x); reductions are kept in double on the device and in
 * float (sequentially) on the CPU for some backward sums, so those get 1e-5; atomics (embedding/gather backward,
 * scatter forward) only reorder float additions of a few terms. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>

#include "tests/gpu/gpu_compare.h"

static ag_arena L; /* host leaves of the current test */
static void setup(void) { ag_arena_init(&L, "leaves", 1 << 20); }
static void teardown(void) { ag_arena_free(&L); }
TestSuite(gpu_ops, .init = setup, .fini = teardown);

static ag_tensor *leaf(ag_tensor *t) {
    t->requires_grad = true;
    return t;
}
#define R(seed, ...) leaf(G_RAND(&L, (seed), __VA_ARGS__))

/* ---- matmul --------------------------------------------------------------------------------------------------------- */

typedef struct {
    bool ta, tb;
} mm_arg;
static ag_tensor *f_matmul(ag_ctx *c, ag_tensor **in, const void *a) {
    const mm_arg *m = a;
    return ag_matmul(c, in[0], in[1], m->ta, m->tb);
}

/* fp32 GEMMs with K <= 40 terms in [-1, 1) in another order: atol 2e-5 (see the header), rtol 1e-5. The backward
 * sums over N (dA) or the rows (dB, up to 2 * 3 * 7 = 42 terms): the same bound. */
#define MM_TOL ((gtol){2e-5, 1e-5})

Test(gpu_ops, matmul) {
    GPU_OR_SKIP("gpu_ops::matmul");
    const int64_t dims[][3] = {{5, 9, 3}, {1, 7, 13}, {13, 1, 6}, {7, 33, 1}, {17, 40, 19}}; /* M, K, N */
    for (size_t s = 0; s < sizeof dims / sizeof dims[0]; s++) {
        int64_t M = dims[s][0], K = dims[s][1], N = dims[s][2];
        for (int t = 0; t < 4; t++) {
            mm_arg arg = {t & 1, t >> 1};
            char name[96];
            /* 2-D */
            ag_tensor *in2[2] = {arg.ta ? R(1, K, M) : R(1, M, K), arg.tb ? R(2, N, K) : R(2, K, N)};
            snprintf(name, sizeof name, "matmul 2d %lldx%lldx%lld ta%d tb%d", (long long)M, (long long)K, (long long)N, arg.ta, arg.tb);
            g_check_op(name, f_matmul, &arg, in2, 2, false, MM_TOL, MM_TOL);
            /* batched 3-D and 4-D (attention's [B, H, S, K]) */
            ag_tensor *in3[2] = {arg.ta ? R(3, 3, K, M) : R(3, 3, M, K), arg.tb ? R(4, 3, N, K) : R(4, 3, K, N)};
            snprintf(name, sizeof name, "matmul batched3 %lldx%lldx%lld ta%d tb%d", (long long)M, (long long)K, (long long)N, arg.ta, arg.tb);
            g_check_op(name, f_matmul, &arg, in3, 2, false, MM_TOL, MM_TOL);
            ag_tensor *in4[2] = {arg.ta ? R(5, 2, 1, K, M) : R(5, 2, 1, M, K), arg.tb ? R(6, 2, 1, N, K) : R(6, 2, 1, K, N)};
            snprintf(name, sizeof name, "matmul batched4 %lldx%lldx%lld ta%d tb%d", (long long)M, (long long)K, (long long)N, arg.ta, arg.tb);
            g_check_op(name, f_matmul, &arg, in4, 2, false, MM_TOL, MM_TOL);
            /* a shared 2-D B under a 3-D A (the linear layer): A's leading dims flatten into rows */
            if (!arg.ta) {
                ag_tensor *ins[2] = {R(7, 2, M, K), arg.tb ? R(8, N, K) : R(8, K, N)};
                snprintf(name, sizeof name, "matmul sharedB %lldx%lldx%lld tb%d", (long long)M, (long long)K, (long long)N, arg.tb);
                g_check_op(name, f_matmul, &arg, ins, 2, false, MM_TOL, MM_TOL);
            }
        }
    }
    /* only one operand requires grad: the other gradient is never allocated */
    mm_arg arg = {false, true};
    ag_tensor *in[2] = {R(9, 4, 5), G_RAND(&L, 10, 6, 5)};
    g_check_op("matmul dA only", f_matmul, &arg, in, 2, false, MM_TOL, MM_TOL);
}

/* ---- add, mul with broadcasting -------------------------------------------------------------------------------- */

static ag_tensor *f_add(ag_ctx *c, ag_tensor **in, const void *a) { return ag_add(c, in[0], in[1]); }
static ag_tensor *f_mul(ag_ctx *c, ag_tensor **in, const void *a) { return ag_mul(c, in[0], in[1]); }
static ag_tensor *f_mul_self(ag_ctx *c, ag_tensor **in, const void *a) { return ag_mul(c, in[0], in[0]); }

/* Forward: one IEEE add/mul per element on both sides: exact. Backward: the broadcast inputs' gradients are sums
 * over up to 35 output elements (double on the device, float in order on the CPU): atol 1e-6, rtol 1e-5. */
Test(gpu_ops, add_mul_broadcast) {
    GPU_OR_SKIP("gpu_ops::add_mul_broadcast");
    const int64_t shapes[][2][5] = {
        /* {ndim, d0, d1, d2, d3} for a, then b */
        {{3, 2, 3, 4}, {3, 2, 3, 4}}, {{3, 2, 3, 4}, {1, 4}},          {{3, 2, 3, 4}, {2, 3, 1}},       {{2, 1, 5}, {2, 7, 1}},
        {{4, 2, 1, 4, 1}, {3, 3, 1, 5}}, {{1, 6}, {1, 6}},             {{1, 1}, {2, 3, 3}},            {{4, 2, 3, 5, 7}, {4, 1, 3, 1, 7}},
        {{2, 9, 13}, {2, 9, 1}},
    };
    g_op_fn fns[2] = {f_add, f_mul};
    const char *names[2] = {"add", "mul"};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int k = 0; k < 2; k++) {
            ag_tensor *in[2];
            for (int side = 0; side < 2; side++) {
                const int64_t *d = shapes[s][side];
                in[side] = leaf(g_rand(&L, 20 + side, -1, 1, (int)d[0], d + 1));
            }
            char name[64];
            snprintf(name, sizeof name, "%s case %zu", names[k], s);
            g_check_op(name, fns[k], NULL, in, 2, false, EXACT, (gtol){1e-6, 1e-5});
            /* the reversed operand order (the broadcast side first) */
            ag_tensor *rev[2] = {in[1], in[0]};
            snprintf(name, sizeof name, "%s case %zu reversed", names[k], s);
            g_check_op(name, fns[k], NULL, rev, 2, false, EXACT, (gtol){1e-6, 1e-5});
        }
    /* x * x: both gradients land in one tensor */
    ag_tensor *x[1] = {R(30, 3, 5)};
    g_check_op("mul x*x", f_mul_self, NULL, x, 1, false, EXACT, (gtol){1e-7, 1e-6});
}

/* ---- unary elementwise ---------------------------------------------------------------------------------------------- */

static ag_tensor *f_scale(ag_ctx *c, ag_tensor **in, const void *a) { return ag_scale(c, in[0], -1.75); }
static ag_tensor *f_relu(ag_ctx *c, ag_tensor **in, const void *a) { return ag_relu(c, in[0]); }
static ag_tensor *f_square(ag_ctx *c, ag_tensor **in, const void *a) { return ag_square(c, in[0]); }
static ag_tensor *f_gelu_tanh(ag_ctx *c, ag_tensor **in, const void *a) { return ag_gelu_tanh(c, in[0]); }
static ag_tensor *f_gelu_erf(ag_ctx *c, ag_tensor **in, const void *a) { return ag_gelu_erf(c, in[0]); }
static ag_tensor *f_act(ag_ctx *c, ag_tensor **in, const void *a) { return ag_act(c, *(const ag_act_kind *)a, in[0]); }

/* scale, relu, square: one IEEE operation per element (the backward's single add into a zero gradient too): exact.
 * The gelus: the device's tanhf/erff/expf against glibc's, a few ulp: atol 1e-6 (outputs near 0 for x << 0), rtol
 * 1e-5. Inputs in [-4, 4) reach both tails. */
Test(gpu_ops, unary) {
    GPU_OR_SKIP("gpu_ops::unary");
    const int64_t shapes[][4] = {{1, 1}, {2, 7, 1}, {3, 2, 3, 5}, {1, 1000}};
    const int nd[] = {1, 2, 3, 2};
    for (size_t s = 0; s < 4; s++) {
        ag_tensor *x = leaf(g_rand(&L, 40 + s, -4, 4, nd[s], shapes[s]));
        ag_tensor *in[1] = {x};
        g_check_op("scale", f_scale, NULL, in, 1, false, EXACT, EXACT);
        g_check_op("relu", f_relu, NULL, in, 1, false, EXACT, EXACT);
        g_check_op("square", f_square, NULL, in, 1, false, EXACT, EXACT);
        g_check_op("gelu_tanh", f_gelu_tanh, NULL, in, 1, false, (gtol){1e-6, 1e-5}, (gtol){1e-6, 1e-5});
        g_check_op("gelu_erf", f_gelu_erf, NULL, in, 1, false, (gtol){1e-6, 1e-5}, (gtol){1e-6, 1e-5});
    }
}

/* AG_OP_ACT, every kind, on [-8, 12): the clamps of relu6 and gelu_10 and both tails. Device expf/tanhf/erff/log1pf
 * against glibc's: a few ulp, as for the gelus. */
Test(gpu_ops, activations) {
    GPU_OR_SKIP("gpu_ops::activations");
    static const char *const names[AG_ACT_COUNT] = {
        [AG_ACT_SILU] = "act silu",     [AG_ACT_QUICK_GELU] = "act quick_gelu", [AG_ACT_SIGMOID] = "act sigmoid",
        [AG_ACT_TANH] = "act tanh",     [AG_ACT_RELU6] = "act relu6",           [AG_ACT_RELU2] = "act relu2",
        [AG_ACT_LEAKY_RELU] = "act leaky_relu", [AG_ACT_MISH] = "act mish",     [AG_ACT_GELU_10] = "act gelu_10",
        [AG_ACT_LAPLACE] = "act laplace"};
    ag_tensor *x = leaf(g_rand(&L, 47, -8, 12, 2, AG_SHAPE(3, 333)));
    ag_tensor *in[1] = {x};
    for (int k = 0; k < AG_ACT_COUNT; k++) {
        if (!names[k]) continue; /* relu, the gelus and linear are other ops (or none) */
        ag_act_kind kind = (ag_act_kind)k;
        g_check_op(names[k], f_act, &kind, in, 1, false, (gtol){1e-6, 1e-5}, (gtol){1e-6, 1e-5});
    }
}

/* ---- rmsnorm ----------------------------------------------------------------------------------------------------------- */

static ag_tensor *f_rmsnorm(ag_ctx *c, ag_tensor **in, const void *a) { return ag_rmsnorm(c, in[0], in[1], 1e-6); }

/* The sum of squares in double on both sides (another order), 1/sqrt in float: a few ulp, rtol 1e-5 atol 1e-6. The
 * backward's dw sums over up to 30 rows (double chunks on the device, float in order on the CPU): atol 1e-5. */
Test(gpu_ops, rmsnorm) {
    GPU_OR_SKIP("gpu_ops::rmsnorm");
    const int64_t shapes[][4] = {{1, 1}, {5, 1}, {3, 7}, {2, 3, 13}, {2, 5, 300}};
    const int nd[] = {2, 2, 2, 3, 3};
    for (size_t s = 0; s < 5; s++) {
        ag_tensor *x = leaf(g_rand(&L, 50 + s, -2, 2, nd[s], shapes[s]));
        int64_t D = shapes[s][nd[s] - 1];
        ag_tensor *w = leaf(g_rand(&L, 60 + s, 0.5, 1.5, 1, AG_SHAPE(D)));
        ag_tensor *in[2] = {x, w};
        g_check_op("rmsnorm", f_rmsnorm, NULL, in, 2, false, (gtol){1e-6, 1e-5}, (gtol){1e-5, 1e-5});
    }
}

/* ---- softmax with bias and mask, logsumexp ---------------------------------------------------------- */

static ag_tensor *f_softmax(ag_ctx *c, ag_tensor **in, const void *a) { return ag_softmax(c, in[0], NULL, NULL); }
static ag_tensor *f_softmax_bm(ag_ctx *c, ag_tensor **in, const void *a) { return ag_softmax(c, in[0], in[1], in[2]); }
static ag_tensor *f_softmax_b(ag_ctx *c, ag_tensor **in, const void *a) { return ag_softmax(c, in[0], in[1], NULL); }
static ag_tensor *f_logsumexp(ag_ctx *c, ag_tensor **in, const void *a) { return ag_logsumexp(c, in[0]); }

/* exp on the device vs glibc, sums in double on both: rtol 1e-5, atol 1e-7 (probabilities are <= 1). Backward: the
 * per-row dot in double on both: atol 1e-6, rtol 1e-5; the gradients of a broadcast bias or mask sum up to 42 terms
 * (double on the device, float in order on the CPU): atol 1e-5. A fully masked row (every entry at finfo.min)
 * must come out uniform on both, exactly as the CPU makes it. */
Test(gpu_ops, softmax_bias_mask) {
    GPU_OR_SKIP("gpu_ops::softmax_bias_mask");
    const gtol F = {1e-7, 1e-5}, B = {1e-6, 1e-5}, BB = {1e-5, 1e-5};
    const int64_t shapes[][4] = {{4, 1}, {3, 13}, {2, 300}, {1, 1}};
    for (int s = 0; s < 4; s++) {
        ag_tensor *in[1] = {leaf(g_rand(&L, 70 + s, -3, 3, 2, shapes[s]))};
        g_check_op("softmax", f_softmax, NULL, in, 1, false, F, B);
        g_check_op("logsumexp", f_logsumexp, NULL, in, 1, false, F, B);
    }
    /* scores [B=2, H=3, Sq=5, Sk=7] + position bias [1, 3, 5, 7] (requires grad) + padding mask [2, 1, 1, 7] */
    ag_tensor *x = leaf(g_rand(&L, 80, -3, 3, 4, AG_SHAPE(2, 3, 5, 7)));
    ag_tensor *bias = leaf(g_rand(&L, 81, -2, 2, 4, AG_SHAPE(1, 3, 5, 7)));
    ag_tensor *mask = ag_zeros(&L, AG_F32, 2, 1, 1, 7);
    const float fmin = -3.4028234663852886e38f;
    for (int j = 4; j < 7; j++) ag_set(mask, 7 + j, fmin);  /* batch 1: the last 3 keys are padding */
    for (int j = 0; j < 7; j++) ag_set(mask, j, j == 2 ? fmin : 0); /* batch 0: key 2 masked */
    ag_tensor *in3[3] = {x, bias, mask};
    g_check_op("softmax bias+mask", f_softmax_bm, NULL, in3, 3, false, F, BB);
    /* a causal mask [1, 1, 5, 7] whose first row is fully masked: uniform on both */
    ag_tensor *causal = ag_zeros(&L, AG_F32, 1, 1, 5, 7);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 7; j++)
            if (i == 0 || j > i + 1) ag_set(causal, i * 7 + j, fmin);
    ag_tensor *in4[3] = {x, bias, causal};
    g_check_op("softmax causal fully-masked row", f_softmax_bm, NULL, in4, 3, false, F, BB);
    /* the mask requiring grad too (its gradient is a broadcast reduction like the bias's) */
    ag_tensor *m2 = leaf(g_rand(&L, 82, -1, 1, 4, AG_SHAPE(2, 1, 5, 1)));
    ag_tensor *in5[3] = {x, bias, m2};
    g_check_op("softmax bias+mask grads", f_softmax_bm, NULL, in5, 3, false, F, BB);
    /* a bias of x's full shape and a bias broadcast along the last dim */
    ag_tensor *in6[2] = {x, leaf(g_rand(&L, 83, -1, 1, 4, AG_SHAPE(2, 3, 5, 7)))};
    g_check_op("softmax full bias", f_softmax_b, NULL, in6, 2, false, F, BB);
    ag_tensor *in7[2] = {x, leaf(g_rand(&L, 84, -1, 1, 2, AG_SHAPE(5, 1)))};
    g_check_op("softmax bias [5,1]", f_softmax_b, NULL, in7, 2, false, F, BB);
    /* the uniform row, checked directly on the device */
    {
        g_pair p;
        g_pair_init(&p, false);
        ag_tensor *dx = ag_tensor_to_device(&p.dev_leaves, x), *db = ag_tensor_to_device(&p.dev_leaves, bias);
        ag_tensor *dc = ag_tensor_to_device(&p.dev_leaves, causal);
        ag_tensor *y = ag_softmax(&p.gpu, dx, db, dc);
        int bad = 0;
        for (int b = 0; b < 2; b++)
            for (int h = 0; h < 3; h++)
                for (int j = 0; j < 7; j++) bad += ag_get(y, ((b * 3 + h) * 5) * 7 + j) != (float)(1.0 / 7.0);
        cr_expect_eq(bad, 0, "softmax on CUDA: %d entries of the fully masked rows are not exactly 1/7", bad);
        g_pair_free(&p);
    }
}

/* ---- embedding, gather_rows, scatter_rows -------------------------------------------------------------------------- */

static ag_tensor *f_embedding(ag_ctx *c, ag_tensor **in, const void *a) { return ag_embedding(c, in[0], in[1]); }
static ag_tensor *f_gather(ag_ctx *c, ag_tensor **in, const void *a) { return ag_gather_rows(c, in[0], in[1]); }
static ag_tensor *f_scatter(ag_ctx *c, ag_tensor **in, const void *a) { return ag_scatter_rows(c, in[0], in[1], *(const int64_t *)a); }

/* Copies: exact forward (gather, embedding) and exact backward (scatter). Repeated indices make the other direction
 * a sum of up to 3 rows through float atomics, in any order: atol 1e-7, rtol 1e-6. */
Test(gpu_ops, embedding_gather_scatter) {
    GPU_OR_SKIP("gpu_ops::embedding_gather_scatter");
    const gtol ATOM = {1e-7, 1e-6};
    const int32_t ids[6] = {3, 0, 10, 3, 7, 3};
    ag_tensor *w = R(90, 11, 5);
    ag_tensor *in[2] = {w, G_INDEX(&L, ids, 2, 3)};
    g_check_op("embedding [2,3] of [11,5]", f_embedding, NULL, in, 2, false, EXACT, ATOM);
    ag_tensor *w1 = R(91, 4, 1);
    const int32_t ids1[1] = {2};
    ag_tensor *in1[2] = {w1, G_INDEX(&L, ids1, 1)};
    g_check_op("embedding D=1", f_embedding, NULL, in1, 2, false, EXACT, ATOM);

    const int32_t gi[9] = {5, -1, 0, 5, 2, -7, 4, 5, 1};
    ag_tensor *gx[2] = {R(92, 6, 13), G_INDEX(&L, gi, 9)};
    g_check_op("gather_rows", f_gather, NULL, gx, 2, false, EXACT, ATOM);
    int64_t n_rows = 6;
    ag_tensor *sx[2] = {R(93, 9, 13), G_INDEX(&L, gi, 9)};
    g_check_op("scatter_rows", f_scatter, &n_rows, sx, 2, false, ATOM, EXACT);
    const int32_t perm[5] = {4, 2, 0, 1, 3}; /* a permutation (the MoE case): no collisions, exact both ways */
    ag_tensor *px[2] = {R(94, 5, 3), G_INDEX(&L, perm, 5)};
    int64_t five = 5;
    g_check_op("gather_rows permutation", f_gather, NULL, px, 2, false, EXACT, EXACT);
    g_check_op("scatter_rows permutation", f_scatter, &five, px, 2, false, EXACT, EXACT);
}

/* ---- grouped matmul ------------------------------------------------------------------------------------------------ */

typedef struct {
    ag_tensor *offsets; /* host i64 [E+1] */
    bool trans_w, offsets_on_device;
} gm_arg;
static ag_tensor *f_grouped(ag_ctx *c, ag_tensor **in, const void *a) {
    const gm_arg *g = a;
    ag_tensor *off = g->offsets;
    if (g->offsets_on_device && c->device == AG_DEV_CUDA) off = ag_tensor_to_device(c->act, off);
    return ag_grouped_matmul(c, in[0], in[1], off, g->trans_w);
}

/* One fp32 GEMM per expert with in <= 29 terms: as matmul, atol 2e-5, rtol 1e-5. The tail rows past offsets[E]
 * are zero on both. */
Test(gpu_ops, grouped_matmul) {
    GPU_OR_SKIP("gpu_ops::grouped_matmul");
    const int64_t offs[][5] = {{0, 5, 5, 12, 20}, {0, 0, 0, 0, 23}, {0, 1, 2, 3, 4}, {0, 6, 11, 17, 23}};
    const int64_t io[][2] = {{7, 5}, {1, 9}, {29, 1}};
    for (int o = 0; o < 4; o++)
        for (int s = 0; s < 3; s++)
            for (int t = 0; t < 4; t++) {
                bool tw = t & 1, dev = t >> 1;
                int64_t in_f = io[s][0], out_f = io[s][1];
                ag_tensor *off = ag_new(&L, AG_I64, 5);
                for (int e = 0; e < 5; e++) ag_set(off, e, (double)offs[o][e]);
                gm_arg arg = {off, tw, dev};
                ag_tensor *in[2] = {R(100 + s, 23, in_f), tw ? R(110 + s, 4, out_f, in_f) : R(110 + s, 4, in_f, out_f)};
                char name[96];
                snprintf(name, sizeof name, "grouped_matmul offs%d in%lld out%lld tw%d dev_off%d", o, (long long)in_f, (long long)out_f, tw, dev);
                g_check_op(name, f_grouped, &arg, in, 2, false, MM_TOL, MM_TOL);
            }
}

/* ---- mixed precision: bf16 operands, fp32 accumulation (ctx->mixed_bf16, CUDA only) ------------------------------ */

/* The CPU reference rounds the operands to bf16 itself (cast there and back, whose gradient is the identity), and
 * the upstream gradient is bf16-representable (see g_check_op), so both sides multiply the same bf16 values: the
 * products are exact in fp32 and only the fp32 accumulation differs, in order and in the tensor cores' alignment of
 * addends (truncation rather than rounding, Fasi et al. 2021): atol 5e-5, rtol 5e-5 for K <= 40. */
#define MIXED_TOL ((gtol){5e-5, 5e-5})
static ag_tensor *round_bf16(ag_ctx *c, ag_tensor *x) { return ag_cast(c, ag_cast(c, x, AG_BF16), AG_F32); }
static ag_tensor *f_matmul_mixed(ag_ctx *c, ag_tensor **in, const void *a) {
    const mm_arg *m = a;
    if (c->device == AG_DEV_CPU) return ag_matmul(c, round_bf16(c, in[0]), round_bf16(c, in[1]), m->ta, m->tb);
    c->mixed_bf16 = true;
    ag_tensor *y = ag_matmul(c, in[0], in[1], m->ta, m->tb);
    c->mixed_bf16 = false;
    return y;
}
static ag_tensor *f_grouped_mixed(ag_ctx *c, ag_tensor **in, const void *a) {
    const gm_arg *g = a;
    if (c->device == AG_DEV_CPU) return ag_grouped_matmul(c, round_bf16(c, in[0]), round_bf16(c, in[1]), g->offsets, g->trans_w);
    c->mixed_bf16 = true;
    ag_tensor *y = ag_grouped_matmul(c, in[0], in[1], g->offsets, g->trans_w);
    c->mixed_bf16 = false;
    return y;
}

Test(gpu_ops, matmul_mixed_bf16) {
    GPU_OR_SKIP("gpu_ops::matmul_mixed_bf16");
    const int64_t dims[][3] = {{5, 9, 3}, {1, 7, 13}, {17, 40, 19}, {64, 32, 48}}; /* M, K, N */
    for (size_t s = 0; s < sizeof dims / sizeof dims[0]; s++) {
        int64_t M = dims[s][0], K = dims[s][1], N = dims[s][2];
        for (int t = 0; t < 4; t++) {
            mm_arg arg = {t & 1, t >> 1};
            char name[96];
            ag_tensor *in3[2] = {arg.ta ? R(3, 3, K, M) : R(3, 3, M, K), arg.tb ? R(4, 3, N, K) : R(4, 3, K, N)};
            snprintf(name, sizeof name, "matmul bf16 batched %lldx%lldx%lld ta%d tb%d", (long long)M, (long long)K, (long long)N, arg.ta, arg.tb);
            g_check_op(name, f_matmul_mixed, &arg, in3, 2, false, MIXED_TOL, MIXED_TOL);
            if (!arg.ta) {
                ag_tensor *ins[2] = {R(7, 2, M, K), arg.tb ? R(8, N, K) : R(8, K, N)};
                snprintf(name, sizeof name, "matmul bf16 sharedB %lldx%lldx%lld tb%d", (long long)M, (long long)K, (long long)N, arg.tb);
                g_check_op(name, f_matmul_mixed, &arg, ins, 2, false, MIXED_TOL, MIXED_TOL);
            }
        }
    }
    const int64_t offs[5] = {0, 5, 5, 12, 20};
    for (int tw = 0; tw < 2; tw++) {
        ag_tensor *off = ag_new(&L, AG_I64, 5);
        for (int e = 0; e < 5; e++) ag_set(off, e, (double)offs[e]);
        gm_arg arg = {off, tw, false};
        ag_tensor *in[2] = {R(200, 23, 7), tw ? R(201, 4, 5, 7) : R(201, 4, 7, 5)};
        g_check_op(tw ? "grouped_matmul bf16 tw1" : "grouped_matmul bf16 tw0", f_grouped_mixed, &arg, in, 2, false, MIXED_TOL, MIXED_TOL);
    }
}

/* ---- dropout, reshape, permute, reductions ---------------------------------------------------------------------------- */

static ag_tensor *f_dropout(ag_ctx *c, ag_tensor **in, const void *a) { return ag_dropout(c, in[0], *(const double *)a, ag_rng_make(5, 9, 3)); }
static ag_tensor *f_reshape(ag_ctx *c, ag_tensor **in, const void *a) { return ag_relu(c, ag_reshapev(c, ag_scale(c, in[0], 2.0), 5, -1)); }
static ag_tensor *f_permute(ag_ctx *c, ag_tensor **in, const void *a) { return ag_permute(c, in[0], (const int *)a); }
static ag_tensor *f_sum(ag_ctx *c, ag_tensor **in, const void *a) { return ag_sum(c, in[0]); }
static ag_tensor *f_sum_last(ag_ctx *c, ag_tensor **in, const void *a) { return ag_sum_last(c, in[0]); }

/* dropout: the same Philox mask and the same float scale: exact both ways. */
Test(gpu_ops, dropout) {
    GPU_OR_SKIP("gpu_ops::dropout");
    const double rates[] = {0.1, 0.5, 0.9};
    for (int r = 0; r < 3; r++) {
        ag_tensor *in[1] = {R(120 + r, 3, 7, 33)};
        g_check_op("dropout", f_dropout, &rates[r], in, 1, true, EXACT, EXACT);
    }
}

/* reshape (a view) and permute (a copy): exact both ways. */
Test(gpu_ops, reshape_permute) {
    GPU_OR_SKIP("gpu_ops::reshape_permute");
    ag_tensor *x[1] = {R(130, 2, 5, 3)};
    g_check_op("reshape", f_reshape, NULL, x, 1, false, EXACT, EXACT);
    const int p4[][4] = {{0, 2, 1, 3}, {3, 2, 1, 0}, {1, 0, 3, 2}, {0, 1, 2, 3}};
    ag_tensor *y[1] = {R(131, 2, 3, 5, 7)};
    for (int i = 0; i < 4; i++) g_check_op("permute 4d", f_permute, p4[i], y, 1, false, EXACT, EXACT);
    const int p2[2] = {1, 0};
    ag_tensor *z[1] = {R(132, 1, 9)};
    g_check_op("permute 2d", f_permute, p2, z, 1, false, EXACT, EXACT);
    const int p3[3] = {2, 0, 1};
    ag_tensor *u[1] = {R(133, 4, 1, 6)};
    g_check_op("permute 3d", f_permute, p3, u, 1, false, EXACT, EXACT);
}

/* Sums in double on both (another order), one rounding to float: atol 1e-6, rtol 1e-6. Backward: dx += dy (or
 * dy / n, the same float division): exact. */
Test(gpu_ops, reductions) {
    GPU_OR_SKIP("gpu_ops::reductions");
    const int64_t shapes[][4] = {{1}, {7, 1}, {3, 5, 13}, {1000, 300}};
    const int nd[] = {1, 2, 3, 2};
    for (int s = 0; s < 4; s++) {
        ag_tensor *in[1] = {leaf(g_rand(&L, 140 + s, -1, 1, nd[s], shapes[s]))};
        g_check_op("sum", f_sum, NULL, in, 1, false, (gtol){1e-6, 1e-6}, EXACT);
        g_check_op("sum_last", f_sum_last, NULL, in, 1, false, (gtol){1e-6, 1e-6}, EXACT);
    }
}

/* ---- cross-entropy ------------------------------------------------------------------------------------------------------ */

static ag_tensor *f_ce(ag_ctx *c, ag_tensor **in, const void *a) { return ag_cross_entropy(c, in[0], in[1]); }

/* lse with the device's expf (sum in double on both) and a mean in double: rtol 1e-5. Backward: g exp(x - lse) per
 * element: atol 1e-7 (g = 1/count <= 1), rtol 1e-5. All labels ignored: loss 0 and zero gradients on both (the CPU
 * allocates no gradient, the GPU a zero one: the comparison reads a missing gradient as zeros). */
Test(gpu_ops, cross_entropy) {
    GPU_OR_SKIP("gpu_ops::cross_entropy");
    const gtol F = {1e-6, 1e-5}, B = {1e-7, 1e-5};
    const int32_t lab[7] = {3, -100, 0, 12, 12, -100, 5};
    ag_tensor *in[2] = {leaf(g_rand(&L, 150, -4, 4, 2, AG_SHAPE(7, 13))), G_INDEX(&L, lab, 7)};
    g_check_op("cross_entropy", f_ce, NULL, in, 2, false, F, B);
    const int32_t one[1] = {0};
    ag_tensor *in1[2] = {R(151, 1, 1), G_INDEX(&L, one, 1)};
    g_check_op("cross_entropy V=1", f_ce, NULL, in1, 2, false, F, B);
    const int32_t none[3] = {-100, -100, -100};
    ag_tensor *in2[2] = {R(152, 3, 9), G_INDEX(&L, none, 3)};
    g_check_op("cross_entropy all ignored", f_ce, NULL, in2, 2, false, EXACT, EXACT);
    int32_t big[300];
    for (int i = 0; i < 300; i++) big[i] = i % 17 == 0 ? -100 : (i * 37) % 1000;
    ag_tensor *in3[2] = {leaf(g_rand(&L, 153, -4, 4, 2, AG_SHAPE(300, 1000))), G_INDEX(&L, big, 300)};
    g_check_op("cross_entropy 300x1000", f_ce, NULL, in3, 2, false, F, B);
}

/* ---- cast ----------------------------------------------------------------------------------------------------------- */

static ag_tensor *f_cast_bf16(ag_ctx *c, ag_tensor **in, const void *a) { return ag_cast(c, in[0], AG_BF16); }
static ag_tensor *f_cast_roundtrip(ag_ctx *c, ag_tensor **in, const void *a) {
    return ag_mul(c, ag_cast(c, ag_cast(c, in[0], AG_BF16), AG_F32), in[0]);
}

/* Round to nearest even with the same integer operations, and exact widening: exact both ways. */
Test(gpu_ops, cast_bf16) {
    GPU_OR_SKIP("gpu_ops::cast_bf16");
    ag_tensor *x = leaf(g_rand(&L, 160, -300, 300, 2, AG_SHAPE(9, 37)));
    ag_set(x, 0, INFINITY);
    ag_set(x, 1, -INFINITY);
    ag_set(x, 2, NAN);
    ag_set(x, 3, 3.4e38);                /* above bf16's largest finite value: rounds to inf */
    ag_set(x, 4, 1e-40);                 /* subnormal */
    ag_set(x, 5, -0.0);
    ag_tensor *in[1] = {x};
    g_check_op("cast f32->bf16", f_cast_bf16, NULL, in, 1, false, EXACT, EXACT);
    ag_tensor *in2[1] = {R(161, 4, 5)};
    g_check_op("cast f32->bf16->f32 * x", f_cast_roundtrip, NULL, in2, 1, false, EXACT, EXACT);
}

/* ---- custom: the caller's kernels, given device tensors ------------------------------------------------------------- */

/* forward: out = in (ag_copy works on either device); backward: din += dout (the device helper on the GPU) */
static void cf_fwd(void *user, const ag_tensor *in, ag_tensor *out) { ag_copy(out, in); }
static void cf_bwd(void *user, const ag_tensor *dout, ag_tensor *din) {
    if (din->device == AG_DEV_CUDA) {
        ag_cuda_add_into(din, dout);
        return;
    }
    for (int64_t i = 0; i < din->numel; i++) ag_set(din, i, ag_get(din, i) + ag_get(dout, i));
}
static const ag_custom_fn copy_fn = {"copy", cf_fwd, cf_bwd, NULL};
static ag_tensor *f_custom(ag_ctx *c, ag_tensor **in, const void *a) {
    ag_tensor *y = ag_custom(c, in[0], 2, AG_SHAPE(3, 4), &copy_fn);
    return ag_square(c, y);
}

Test(gpu_ops, custom) {
    GPU_OR_SKIP("gpu_ops::custom");
    ag_tensor *in[1] = {R(170, 12)};
    g_check_op("custom copy", f_custom, NULL, in, 1, false, EXACT, EXACT);
}
