/* The op test cases, written once (DESIGN.md 10, "ops defined once"): for every op of autograd/ag_ops.def a
 * function oc_<name> builds inputs of chosen shapes (dims of 1, sizes that are not multiples of 8, broadcasts) and
 * hands each case to the suite that includes this file:
 *   tests/test_autograd_grad.c   finite-difference gradient checks on the CPU, in f64;
 *   tests/gpu/test_gpu_ops.c     the CPU table against the CUDA table, f32, forward and every input gradient.
 * OC_CASES is generated from ag_ops.def, so an op without oc_<name> does not compile; a suite fails an op when none
 * of its cases ran there. A case runs in both suites unless .only names one, with the reason beside it.
 *
 * CPU-vs-CUDA tolerances, |gpu - cpu| <= atol + rtol |cpu| per tensor, stand beside each case with their reason.
 * Where they come from: elementwise fp32 arithmetic is IEEE on both sides, so a single add or multiply is exact;
 * the device's expf/tanhf/erff differ from glibc's by a few ulp (~3e-7 relative); a K-term fp32 dot product in a
 * different order (cuBLAS splits K, OpenBLAS does not; TF32 is off) differs by ~sqrt(K) ulp of the sum of |terms|
 * (K <= 40 here: 2e-5 absolute covers it 20x); reductions are kept in double on the device and in float
 * (sequentially) on the CPU for some backward sums, so those get 1e-5; atomics (embedding/gather backward, scatter
 * forward) only reorder float additions of a few terms.
 * Gradient checks: 1e-6 relative to the largest numeric gradient entry, h = 1e-6, unless a case gives a reason for
 * others (.grad_tol, .grad_h). Central differences in f64 have truncation error ~h^2 |f'''| ~ 1e-12 and rounding
 * error ~1e-16/h ~ 1e-10, far below 1e-6.
 * Values are in [-1, 1) unless said otherwise. Random inputs come from the suite's own stream (oc_env), so each
 * suite sees the values it always saw for a given seed. */
#ifndef SX_TEST_OP_CASES_H
#define SX_TEST_OP_CASES_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/ag.h"
#include "autograd/ag_cuda.h"

/* ---- the interface between the cases and the suites -------------------------------------------------------------- */

enum { OC_GRAD = 1, OC_GPU = 2 }; /* the suites */
#define OC_MAX_IN 5

typedef ag_tensor *(*oc_fn)(ag_ctx *ctx, ag_tensor **in, const void *arg);
typedef struct {
    double atol, rtol;
} oc_tol;
#define OC_EXACT ((oc_tol){0, 0})

typedef struct {
    const char *name;
    ag_op op;                 /* the op under test: running f must record it (AG_OP_COUNT: a graph of several) */
    oc_fn f;                  /* builds the op (or graph) from in in the given context */
    const void *arg;          /* f's parameters */
    int n_in;
    ag_tensor *in[OC_MAX_IN]; /* host leaves (requires_grad: differentiated and compared) and index tensors */
    bool training;            /* dropout active */
    int only;                 /* 0: both suites; OC_GRAD or OC_GPU, with the reason beside */
    oc_tol fwd, bwd;          /* CPU vs CUDA: the output; every input gradient */
    double grad_tol, grad_h;  /* 0: the gradient check's 1e-6 and h = 1e-6 */
} oc_case;

typedef struct oc_env oc_env;
struct oc_env {
    int suite;                /* OC_GRAD or OC_GPU */
    ag_arena *arena;          /* the inputs (host) */
    ag_dtype dtype;           /* of float inputs: f64 (gradient checks) or f32 (GPU) */
    uint64_t rng_step, rng_purpose;
    void (*run)(oc_env *e, const oc_case *c);
    int n_run;                /* cases this suite ran */
    int n_bad;                /* cases whose f did not record their op */
};

/* Runs f once on the CPU with gradients on and looks for c->op on the tape: a case must test the op it names. */
static inline bool oc_records_op(const oc_case *c) {
    if (c->op == AG_OP_COUNT) return true;
    if (!ag_op_differentiable(c->op)) return true; /* never recorded */
    ag_arena act;
    ag_arena_init(&act, "op-case-probe", 1 << 16);
    ag_ctx ctx;
    ag_ctx_init(&ctx, &act);
    ctx.training = c->training;
    ag_tensor *in[OC_MAX_IN];
    memcpy(in, c->in, sizeof in);
    c->f(&ctx, in, c->arg);
    bool found = false;
    for (int64_t k = 0; k < ctx.tape_len; k++) found |= ctx.tape[k].op == c->op;
    ag_ctx_free(&ctx);
    ag_arena_free(&act);
    return found;
}

static inline void oc_check(oc_env *e, const oc_case *c) {
    if (c->only && c->only != e->suite) return;
    if (!oc_records_op(c)) {
        printf("op case '%s' never records %s: it must apply the op it is listed under\n", c->name, ag_op_name(c->op));
        e->n_bad++;
        return;
    }
    e->run(e, c);
    e->n_run++;
}
#define OC_CASE(e, ...) oc_check((e), &(oc_case){__VA_ARGS__})

/* ---- inputs ------------------------------------------------------------------------------------------------------ */

static inline ag_tensor *oc_rand(oc_env *e, uint64_t seed, double lo, double hi, bool grad, int ndim,
                                 const int64_t *shape) {
    ag_tensor *t = ag_tensor_new(e->arena, e->dtype, ndim, shape);
    ag_rng_key k = ag_rng_make(seed, e->rng_step, e->rng_purpose);
    for (int64_t i = 0; i < t->numel; i++) ag_set(t, i, lo + (hi - lo) * ag_rng_uniform(k, (uint64_t)i));
    t->requires_grad = grad;
    return t;
}
/* A leaf in [lo, hi) (requires grad); OC_R: in [-1, 1); OC_CONST: in [-1, 1), no gradient. */
#define OC_IN(e, seed, lo, hi, ...) oc_rand((e), (seed), (lo), (hi), true, AG_NDIM(__VA_ARGS__), AG_SHAPE(__VA_ARGS__))
#define OC_R(e, seed, ...) OC_IN((e), (seed), -1.0, 1.0, __VA_ARGS__)
#define OC_CONST(e, seed, ...) oc_rand((e), (seed), -1.0, 1.0, false, AG_NDIM(__VA_ARGS__), AG_SHAPE(__VA_ARGS__))
/* A leaf of the shape d = {ndim, d0, d1, ...}. */
static inline ag_tensor *oc_randv(oc_env *e, uint64_t seed, double lo, double hi, const int64_t *d) {
    return oc_rand(e, seed, lo, hi, true, (int)d[0], d + 1);
}
static inline ag_tensor *oc_zeros(oc_env *e, int ndim, const int64_t *shape) {
    return ag_tensor_zeros(e->arena, e->dtype, ndim, shape);
}
#define OC_ZEROS(e, ...) oc_zeros((e), AG_NDIM(__VA_ARGS__), AG_SHAPE(__VA_ARGS__))
static inline ag_tensor *oc_index(oc_env *e, const int32_t *vals, int ndim, const int64_t *shape) {
    ag_tensor *t = ag_tensor_new(e->arena, AG_I32, ndim, shape);
    memcpy(t->data, vals, sizeof(int32_t) * (size_t)t->numel);
    return t;
}
#define OC_INDEX(e, vals, ...) oc_index((e), (vals), AG_NDIM(__VA_ARGS__), AG_SHAPE(__VA_ARGS__))
static inline ag_tensor *oc_offsets(oc_env *e, int n, const int64_t *vals) {
    ag_tensor *t = ag_new(e->arena, AG_I64, n);
    memcpy(t->data, vals, sizeof(int64_t) * (size_t)n);
    return t;
}

/* ---- matmul, grouped_matmul (and their bf16 mixed-precision mode) ------------------------------------------------ */

typedef struct {
    bool ta, tb;
} oc_mm;
static const oc_mm OC_MM[4] = {{false, false}, {true, false}, {false, true}, {true, true}};
static ag_tensor *f_matmul(ag_ctx *c, ag_tensor **in, const void *a) {
    const oc_mm *m = a;
    return ag_matmul(c, in[0], in[1], m->ta, m->tb);
}
static ag_tensor *oc_round_bf16(ag_ctx *c, ag_tensor *x) { return ag_cast(c, ag_cast(c, x, AG_BF16), AG_F32); }
/* ctx->mixed_bf16 on the device; the CPU reference rounds the operands to bf16 itself (a cast there and back, whose
 * gradient is the identity). */
static ag_tensor *f_matmul_mixed(ag_ctx *c, ag_tensor **in, const void *a) {
    const oc_mm *m = a;
    if (c->device == AG_DEV_CPU) return ag_matmul(c, oc_round_bf16(c, in[0]), oc_round_bf16(c, in[1]), m->ta, m->tb);
    c->mixed_bf16 = true;
    ag_tensor *y = ag_matmul(c, in[0], in[1], m->ta, m->tb);
    c->mixed_bf16 = false;
    return y;
}

/* fp32 GEMMs with K <= 40 terms in [-1, 1) in another order: atol 2e-5 (see the header), rtol 1e-5. The backward
 * sums over N (dA) or the rows (dB, up to 2 * 3 * 7 = 42 terms): the same bound. */
#define OC_MM_TOL ((oc_tol){2e-5, 1e-5})
/* Mixed precision: the upstream gradient is bf16-representable (tests/gpu/gpu_compare.h), so both sides multiply
 * the same bf16 values: the products are exact in fp32 and only the fp32 accumulation differs, in order and in the
 * tensor cores' alignment of addends (truncation rather than rounding, Fasi et al. 2021): 5e-5 both for K <= 40.
 * GPU only: rounding to bf16 is piecewise constant, so finite differences through it mean nothing (the cast's own
 * gradient is checked by oc_cast). */
#define OC_MIXED_TOL ((oc_tol){5e-5, 5e-5})

static void oc_matmul(oc_env *e) {
    char name[96];
    for (int t = 0; t < 4; t++) { /* 2-D, every transpose */
        const oc_mm *a = &OC_MM[t];
        int64_t M = 5, K = 3, N = 7;
        ag_tensor *x = a->ta ? OC_R(e, 1, K, M) : OC_R(e, 1, M, K);
        ag_tensor *w = a->tb ? OC_R(e, 2, N, K) : OC_R(e, 2, K, N);
        snprintf(name, sizeof name, "matmul ta=%d tb=%d", a->ta, a->tb);
        OC_CASE(e, .name = name, .op = AG_OP_MATMUL, .f = f_matmul, .arg = a, .n_in = 2, .in = {x, w}, .fwd = OC_MM_TOL,
                .bwd = OC_MM_TOL);
    }
    /* y = x W^T, the linear layer: x [B, S, in], W [out, in] */
    OC_CASE(e, .name = "matmul linear [2,3,5]x[4,5]^T", .op = AG_OP_MATMUL, .f = f_matmul, .arg = &OC_MM[2], .n_in = 2,
            .in = {OC_R(e, 3, 2, 3, 5), OC_R(e, 4, 4, 5)}, .fwd = OC_MM_TOL, .bwd = OC_MM_TOL);
    for (int t = 0; t < 4; t++) {
        const oc_mm *a = &OC_MM[t];
        ag_tensor *x = a->ta ? OC_R(e, 5, 2, 1, 3, 5) : OC_R(e, 5, 2, 1, 5, 3);
        ag_tensor *w = a->tb ? OC_R(e, 6, 2, 1, 9, 3) : OC_R(e, 6, 2, 1, 3, 9);
        snprintf(name, sizeof name, "bmm 4d ta=%d tb=%d", a->ta, a->tb);
        OC_CASE(e, .name = name, .op = AG_OP_MATMUL, .f = f_matmul, .arg = a, .n_in = 2, .in = {x, w}, .fwd = OC_MM_TOL,
                .bwd = OC_MM_TOL);
    }
    const int64_t dims[][3] = {{5, 9, 3}, {1, 7, 13}, {13, 1, 6}, {7, 33, 1}, {17, 40, 19}}; /* M, K, N */
    for (size_t s = 0; s < sizeof dims / sizeof dims[0]; s++) {
        int64_t M = dims[s][0], K = dims[s][1], N = dims[s][2];
        for (int t = 0; t < 4; t++) {
            const oc_mm *a = &OC_MM[t];
            snprintf(name, sizeof name, "matmul 2d %lldx%lldx%lld ta%d tb%d", (long long)M, (long long)K, (long long)N,
                     a->ta, a->tb);
            OC_CASE(e, .name = name, .op = AG_OP_MATMUL, .f = f_matmul, .arg = a, .n_in = 2, .fwd = OC_MM_TOL,
                    .bwd = OC_MM_TOL, .in = {a->ta ? OC_R(e, 1, K, M) : OC_R(e, 1, M, K),
                                             a->tb ? OC_R(e, 2, N, K) : OC_R(e, 2, K, N)});
            /* batched 3-D and 4-D (attention's [B, H, S, K]) */
            snprintf(name, sizeof name, "matmul batched3 %lldx%lldx%lld ta%d tb%d", (long long)M, (long long)K,
                     (long long)N, a->ta, a->tb);
            OC_CASE(e, .name = name, .op = AG_OP_MATMUL, .f = f_matmul, .arg = a, .n_in = 2, .fwd = OC_MM_TOL,
                    .bwd = OC_MM_TOL, .in = {a->ta ? OC_R(e, 3, 3, K, M) : OC_R(e, 3, 3, M, K),
                                             a->tb ? OC_R(e, 4, 3, N, K) : OC_R(e, 4, 3, K, N)});
            snprintf(name, sizeof name, "matmul batched4 %lldx%lldx%lld ta%d tb%d", (long long)M, (long long)K,
                     (long long)N, a->ta, a->tb);
            OC_CASE(e, .name = name, .op = AG_OP_MATMUL, .f = f_matmul, .arg = a, .n_in = 2, .fwd = OC_MM_TOL,
                    .bwd = OC_MM_TOL, .in = {a->ta ? OC_R(e, 5, 2, 1, K, M) : OC_R(e, 5, 2, 1, M, K),
                                             a->tb ? OC_R(e, 6, 2, 1, N, K) : OC_R(e, 6, 2, 1, K, N)});
            /* a shared 2-D B under a 3-D A (the linear layer): A's leading dims flatten into rows */
            if (!a->ta) {
                snprintf(name, sizeof name, "matmul sharedB %lldx%lldx%lld tb%d", (long long)M, (long long)K,
                         (long long)N, a->tb);
                OC_CASE(e, .name = name, .op = AG_OP_MATMUL, .f = f_matmul, .arg = a, .n_in = 2, .fwd = OC_MM_TOL,
                        .bwd = OC_MM_TOL, .in = {OC_R(e, 7, 2, M, K), a->tb ? OC_R(e, 8, N, K) : OC_R(e, 8, K, N)});
            }
        }
    }
    /* only one operand requires grad: the other gradient is never allocated */
    OC_CASE(e, .name = "matmul dA only", .op = AG_OP_MATMUL, .f = f_matmul, .arg = &OC_MM[2], .n_in = 2,
            .in = {OC_R(e, 9, 4, 5), OC_CONST(e, 10, 6, 5)}, .fwd = OC_MM_TOL, .bwd = OC_MM_TOL);

    const int64_t mixed[][3] = {{5, 9, 3}, {1, 7, 13}, {17, 40, 19}, {64, 32, 48}}; /* M, K, N */
    for (size_t s = 0; s < sizeof mixed / sizeof mixed[0]; s++) {
        int64_t M = mixed[s][0], K = mixed[s][1], N = mixed[s][2];
        for (int t = 0; t < 4; t++) {
            const oc_mm *a = &OC_MM[t];
            snprintf(name, sizeof name, "matmul bf16 batched %lldx%lldx%lld ta%d tb%d", (long long)M, (long long)K,
                     (long long)N, a->ta, a->tb);
            OC_CASE(e, .name = name, .op = AG_OP_MATMUL, .f = f_matmul_mixed, .arg = a, .n_in = 2, .only = OC_GPU,
                    .fwd = OC_MIXED_TOL, .bwd = OC_MIXED_TOL,
                    .in = {a->ta ? OC_R(e, 3, 3, K, M) : OC_R(e, 3, 3, M, K),
                           a->tb ? OC_R(e, 4, 3, N, K) : OC_R(e, 4, 3, K, N)});
            if (!a->ta) {
                snprintf(name, sizeof name, "matmul bf16 sharedB %lldx%lldx%lld tb%d", (long long)M, (long long)K,
                         (long long)N, a->tb);
                OC_CASE(e, .name = name, .op = AG_OP_MATMUL, .f = f_matmul_mixed, .arg = a, .n_in = 2,
                        .only = OC_GPU, .fwd = OC_MIXED_TOL, .bwd = OC_MIXED_TOL,
                        .in = {OC_R(e, 7, 2, M, K), a->tb ? OC_R(e, 8, N, K) : OC_R(e, 8, K, N)});
            }
        }
    }
}

typedef struct {
    ag_tensor *offsets; /* host i64 [E+1] */
    bool trans_w, offsets_on_device;
} oc_gm;
static ag_tensor *f_grouped(ag_ctx *c, ag_tensor **in, const void *a) {
    const oc_gm *g = a;
    ag_tensor *off = g->offsets;
    if (g->offsets_on_device && c->device == AG_DEV_CUDA) off = ag_tensor_to_device(c->act, off);
    return ag_grouped_matmul(c, in[0], in[1], off, g->trans_w);
}
static ag_tensor *f_grouped_mixed(ag_ctx *c, ag_tensor **in, const void *a) {
    const oc_gm *g = a;
    if (c->device == AG_DEV_CPU)
        return ag_grouped_matmul(c, oc_round_bf16(c, in[0]), oc_round_bf16(c, in[1]), g->offsets, g->trans_w);
    c->mixed_bf16 = true;
    ag_tensor *y = ag_grouped_matmul(c, in[0], in[1], g->offsets, g->trans_w);
    c->mixed_bf16 = false;
    return y;
}

/* One fp32 GEMM per expert with in <= 29 terms: as matmul. The tail rows past offsets[E] are zero on both. */
static void oc_grouped_matmul(oc_env *e) {
    /* 4 experts, 9 rows of which 8 are routed: expert 2 gets no token, row 8 is beyond offsets[E] */
    ag_tensor *off = oc_offsets(e, 5, (const int64_t[]){0, 3, 4, 4, 8});
    oc_gm g[2] = {{off, false, false}, {off, true, false}};
    for (int tw = 0; tw < 2; tw++)
        OC_CASE(e, .name = tw ? "grouped_matmul W^T" : "grouped_matmul W", .op = AG_OP_GROUPED_MATMUL, .f = f_grouped,
                .arg = &g[tw], .n_in = 2, .in = {OC_R(e, 33, 9, 5), tw ? OC_R(e, 34, 4, 6, 5) : OC_R(e, 34, 4, 5, 6)},
                .fwd = OC_MM_TOL, .bwd = OC_MM_TOL);
    const int64_t offs[][5] = {{0, 5, 5, 12, 20}, {0, 0, 0, 0, 23}, {0, 1, 2, 3, 4}, {0, 6, 11, 17, 23}};
    const int64_t io[][2] = {{7, 5}, {1, 9}, {29, 1}};
    oc_gm args[4][3][4];
    char name[96];
    for (int o = 0; o < 4; o++)
        for (int s = 0; s < 3; s++)
            for (int t = 0; t < 4; t++) {
                bool tw = t & 1, dev = t >> 1;
                int64_t in_f = io[s][0], out_f = io[s][1];
                args[o][s][t] = (oc_gm){oc_offsets(e, 5, offs[o]), tw, dev};
                snprintf(name, sizeof name, "grouped_matmul offs%d in%lld out%lld tw%d dev_off%d", o, (long long)in_f,
                         (long long)out_f, tw, dev);
                /* offsets on the device: only the GPU has them (the CPU run would repeat the host case) */
                OC_CASE(e, .name = name, .op = AG_OP_GROUPED_MATMUL, .f = f_grouped, .arg = &args[o][s][t], .n_in = 2,
                        .only = dev ? OC_GPU : 0, .fwd = OC_MM_TOL, .bwd = OC_MM_TOL,
                        .in = {OC_R(e, 100 + s, 23, in_f),
                               tw ? OC_R(e, 110 + s, 4, out_f, in_f) : OC_R(e, 110 + s, 4, in_f, out_f)});
            }
    ag_tensor *moff = oc_offsets(e, 5, (const int64_t[]){0, 5, 5, 12, 20});
    oc_gm m[2] = {{moff, false, false}, {moff, true, false}};
    for (int tw = 0; tw < 2; tw++) /* GPU only: see OC_MIXED_TOL */
        OC_CASE(e, .name = tw ? "grouped_matmul bf16 tw1" : "grouped_matmul bf16 tw0", .op = AG_OP_GROUPED_MATMUL,
                .f = f_grouped_mixed, .arg = &m[tw], .n_in = 2, .only = OC_GPU, .fwd = OC_MIXED_TOL,
                .bwd = OC_MIXED_TOL, .in = {OC_R(e, 200, 23, 7), tw ? OC_R(e, 201, 4, 5, 7) : OC_R(e, 201, 4, 7, 5)});
}

/* ---- add, mul with broadcasting ---------------------------------------------------------------------------------- */

static ag_tensor *f_add(ag_ctx *c, ag_tensor **in, const void *a) { return ag_add(c, in[0], in[1]); }
static ag_tensor *f_mul(ag_ctx *c, ag_tensor **in, const void *a) { return ag_mul(c, in[0], in[1]); }
static ag_tensor *f_mul_self(ag_ctx *c, ag_tensor **in, const void *a) { return ag_mul(c, in[0], in[0]); }

/* Forward: one IEEE add/mul per element on both sides: exact. Backward: the broadcast inputs' gradients are sums over
 * up to 35 output elements (double on the device, float in order on the CPU): atol 1e-6, rtol 1e-5. */
#define OC_BIN_BWD ((oc_tol){1e-6, 1e-5})
static void oc_binary(oc_env *e, ag_op op, oc_fn f) {
    const char *nm = ag_op_name(op);
    char name[64];
    const int64_t pairs[][2][5] = {
        /* {ndim, d0, d1, d2, d3} for a, then b */
        {{2, 3, 5}, {2, 3, 5}}, {{3, 2, 3, 5}, {1, 5}}, {{4, 1, 3, 4, 5}, {4, 2, 1, 1, 5}}, {{2, 6, 9}, {2, 6, 1}},
    };
    const char *what[] = {"same shape", "[2,3,5]+[5]", "[1,3,4,5]+[2,1,1,5]", "[6,9]*[6,1]"};
    for (int s = 0; s < 4; s++) {
        snprintf(name, sizeof name, "%s %s", nm, what[s]);
        OC_CASE(e, .name = name, .op = op, .f = f, .n_in = 2, .fwd = OC_EXACT, .bwd = OC_BIN_BWD,
                .in = {oc_randv(e, 7 + 2 * s, -1, 1, pairs[s][0]), oc_randv(e, 8 + 2 * s, -1, 1, pairs[s][1])});
    }
    const int64_t shapes[][2][5] = {
        {{3, 2, 3, 4}, {3, 2, 3, 4}}, {{3, 2, 3, 4}, {1, 4}},          {{3, 2, 3, 4}, {2, 3, 1}},
        {{2, 1, 5}, {2, 7, 1}},       {{4, 2, 1, 4, 1}, {3, 3, 1, 5}}, {{1, 6}, {1, 6}},
        {{1, 1}, {2, 3, 3}},          {{4, 2, 3, 5, 7}, {4, 1, 3, 1, 7}}, {{2, 9, 13}, {2, 9, 1}},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        ag_tensor *a = oc_randv(e, 20, -1, 1, shapes[s][0]), *b = oc_randv(e, 21, -1, 1, shapes[s][1]);
        snprintf(name, sizeof name, "%s case %zu", nm, s);
        OC_CASE(e, .name = name, .op = op, .f = f, .n_in = 2, .in = {a, b}, .fwd = OC_EXACT, .bwd = OC_BIN_BWD);
        /* the reversed operand order (the broadcast side first) */
        snprintf(name, sizeof name, "%s case %zu reversed", nm, s);
        OC_CASE(e, .name = name, .op = op, .f = f, .n_in = 2, .in = {b, a}, .fwd = OC_EXACT, .bwd = OC_BIN_BWD);
    }
}
static void oc_add(oc_env *e) { oc_binary(e, AG_OP_ADD, f_add); }
static void oc_mul(oc_env *e) {
    oc_binary(e, AG_OP_MUL, f_mul);
    /* x * x: both gradients land in one tensor (two additions into it, one after the other on both): atol 1e-7,
     * rtol 1e-6 */
    OC_CASE(e, .name = "mul x*x", .op = AG_OP_MUL, .f = f_mul_self, .n_in = 1, .in = {OC_R(e, 30, 3, 5)},
            .fwd = OC_EXACT, .bwd = ((oc_tol){1e-7, 1e-6}));
}

/* ---- unary elementwise ------------------------------------------------------------------------------------------- */

static ag_tensor *f_scale(ag_ctx *c, ag_tensor **in, const void *a) { return ag_scale(c, in[0], *(const double *)a); }
static ag_tensor *f_relu(ag_ctx *c, ag_tensor **in, const void *a) { return ag_relu(c, in[0]); }
static ag_tensor *f_square(ag_ctx *c, ag_tensor **in, const void *a) { return ag_square(c, in[0]); }
static ag_tensor *f_gelu_tanh(ag_ctx *c, ag_tensor **in, const void *a) { return ag_gelu_tanh(c, in[0]); }
static ag_tensor *f_gelu_erf(ag_ctx *c, ag_tensor **in, const void *a) { return ag_gelu_erf(c, in[0]); }

/* scale, relu, square: one IEEE operation per element (the backward's single add into a zero gradient too): exact.
 * The gelus: the device's tanhf/erff/expf against glibc's, a few ulp: atol 1e-6 (outputs near 0 for x << 0), rtol
 * 1e-5. */
#define OC_LIBM_TOL ((oc_tol){1e-6, 1e-5})
/* The GPU suite's shapes, inputs in [-4, 4) to reach both tails of the gelus. */
static void oc_unary(oc_env *e, ag_op op, oc_fn f, const void *arg, oc_tol tol) {
    const int64_t shapes[][5] = {{1, 1}, {2, 2, 7}, {3, 3, 2, 3}, {2, 1, 1000}};
    for (int s = 0; s < 4; s++)
        OC_CASE(e, .name = ag_op_name(op), .op = op, .f = f, .arg = arg, .n_in = 1,
                .in = {oc_randv(e, 40 + s, -4, 4, shapes[s])}, .fwd = tol, .bwd = tol);
}
static void oc_scale(oc_env *e) {
    static const double s1 = -0.37, s2 = -1.75;
    OC_CASE(e, .name = "scale", .op = AG_OP_SCALE, .f = f_scale, .arg = &s1, .n_in = 1, .in = {OC_R(e, 15, 3, 7)},
            .fwd = OC_EXACT, .bwd = OC_EXACT);
    oc_unary(e, AG_OP_SCALE, f_scale, &s2, OC_EXACT);
}
static void oc_gelu_tanh(oc_env *e) {
    OC_CASE(e, .name = "gelu_tanh", .op = AG_OP_GELU_TANH, .f = f_gelu_tanh, .n_in = 1,
            .in = {OC_IN(e, 16, -3, 3, 3, 7)}, .fwd = OC_LIBM_TOL, .bwd = OC_LIBM_TOL);
    oc_unary(e, AG_OP_GELU_TANH, f_gelu_tanh, NULL, OC_LIBM_TOL);
}
static void oc_gelu_erf(oc_env *e) {
    OC_CASE(e, .name = "gelu_erf", .op = AG_OP_GELU_ERF, .f = f_gelu_erf, .n_in = 1,
            .in = {OC_IN(e, 17, -3, 3, 3, 7)}, .fwd = OC_LIBM_TOL, .bwd = OC_LIBM_TOL);
    oc_unary(e, AG_OP_GELU_ERF, f_gelu_erf, NULL, OC_LIBM_TOL);
}
static ag_tensor *f_act(ag_ctx *c, ag_tensor **in, const void *a) { return ag_act(c, *(const ag_act_kind *)a, in[0]); }

/* AG_OP_ACT, every kind that is this op (relu, the gelus and linear are other ops or none). Device
 * expf/tanhf/erff/log1pf against glibc's: a few ulp, as for the gelus. */
static void oc_act(oc_env *e) {
    static const struct {
        ag_act_kind k;
        const char *name;
    } kinds[] = {{AG_ACT_SILU, "silu"},       {AG_ACT_QUICK_GELU, "quick_gelu"}, {AG_ACT_SIGMOID, "sigmoid"},
                 {AG_ACT_TANH, "tanh"},       {AG_ACT_RELU6, "relu6"},           {AG_ACT_RELU2, "relu2"},
                 {AG_ACT_LEAKY_RELU, "leaky_relu"}, {AG_ACT_MISH, "mish"},       {AG_ACT_GELU_10, "gelu_10"},
                 {AG_ACT_LAPLACE, "laplace"}};
    const int n = (int)(sizeof kinds / sizeof kinds[0]);
    /* inputs in [-3, 7) reach relu6's top and mish's and silu's tails; the kinks (0 for relu6 and leaky_relu, 6 for
     * relu6) are kept 0.05 away, far beyond h */
    for (int i = 0; i < n; i++) {
        ag_tensor *x = OC_IN(e, 40 + i, -3, 7, 4, 9);
        for (int64_t j = 0; j < x->numel; j++) {
            double v = ag_get(x, j);
            if (fabs(v) < 0.05) v = v < 0 ? -0.05 : 0.05;
            if (fabs(v - 6) < 0.05) v = v < 6 ? 5.95 : 6.05;
            ag_set(x, j, v);
        }
        OC_CASE(e, .name = kinds[i].name, .op = AG_OP_ACT, .f = f_act, .arg = &kinds[i].k, .n_in = 1, .in = {x},
                .fwd = OC_LIBM_TOL, .bwd = OC_LIBM_TOL);
    }
    /* on [-8, 12): the clamps of relu6 and gelu_10 and both tails */
    ag_tensor *x = OC_IN(e, 47, -8, 12, 3, 333);
    char name[64];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "act %s", kinds[i].name);
        OC_CASE(e, .name = name, .op = AG_OP_ACT, .f = f_act, .arg = &kinds[i].k, .n_in = 1, .in = {x},
                .fwd = OC_LIBM_TOL, .bwd = OC_LIBM_TOL);
    }
}

static void oc_square(oc_env *e) {
    OC_CASE(e, .name = "square", .op = AG_OP_SQUARE, .f = f_square, .n_in = 1, .in = {OC_R(e, 18, 1, 9)},
            .fwd = OC_EXACT, .bwd = OC_EXACT);
    oc_unary(e, AG_OP_SQUARE, f_square, NULL, OC_EXACT);
}
static void oc_relu(oc_env *e) {
    /* relu is not differentiable at 0: inputs are kept at least 0.05 away from it, far beyond h. */
    ag_tensor *x = OC_R(e, 19, 4, 5);
    for (int64_t i = 0; i < x->numel; i++) {
        double v = ag_get(x, i);
        ag_set(x, i, v >= 0 ? v + 0.05 : v - 0.05);
    }
    OC_CASE(e, .name = "relu", .op = AG_OP_RELU, .f = f_relu, .n_in = 1, .in = {x}, .fwd = OC_EXACT, .bwd = OC_EXACT);
    oc_unary(e, AG_OP_RELU, f_relu, NULL, OC_EXACT);
}

/* ---- rmsnorm ----------------------------------------------------------------------------------------------------- */

static ag_tensor *f_rmsnorm(ag_ctx *c, ag_tensor **in, const void *a) {
    return ag_rmsnorm(c, in[0], in[1], *(const double *)a);
}

/* The sum of squares in double on both sides (another order), 1/sqrt in float: a few ulp, rtol 1e-5 atol 1e-6. The
 * backward's dw sums over up to 30 rows (double chunks on the device, float in order on the CPU): atol 1e-5. */
static void oc_rmsnorm(oc_env *e) {
    const oc_tol F = {1e-6, 1e-5}, B = {1e-5, 1e-5};
    static const double eps = 1e-6, eps_big = 0.3;
    OC_CASE(e, .name = "rmsnorm [2,3,7]", .op = AG_OP_RMSNORM, .f = f_rmsnorm, .arg = &eps, .n_in = 2,
            .in = {OC_R(e, 20, 2, 3, 7), OC_R(e, 21, 7)}, .fwd = F, .bwd = B);
    /* With D = 1 and eps = 1e-6 the output is ~w sign(x) and dy/dx ~ eps/|x|^3 vanishes into rounding: a larger eps
     * gives the size-1 edge case a gradient worth checking. */
    OC_CASE(e, .name = "rmsnorm [1,1] eps 0.3", .op = AG_OP_RMSNORM, .f = f_rmsnorm, .arg = &eps_big, .n_in = 2,
            .in = {OC_R(e, 22, 1, 1), OC_R(e, 23, 1)}, .fwd = F, .bwd = B);
    const int64_t shapes[][4] = {{2, 1, 1}, {2, 5, 1}, {2, 3, 7}, {3, 2, 3, 13}, {3, 2, 5, 300}};
    for (int s = 0; s < 5; s++) {
        int64_t D = shapes[s][shapes[s][0]];
        /* D = 1 with eps = 1e-6: GPU only, for the reason above */
        OC_CASE(e, .name = "rmsnorm", .op = AG_OP_RMSNORM, .f = f_rmsnorm, .arg = &eps, .n_in = 2,
                .only = D == 1 ? OC_GPU : 0, .fwd = F, .bwd = B,
                .in = {oc_randv(e, 50 + s, -2, 2, shapes[s]), oc_rand(e, 60 + s, 0.5, 1.5, true, 1, AG_SHAPE(D))});
    }
}

/* ---- softmax with bias and mask, logsumexp ----------------------------------------------------------------------- */

static ag_tensor *f_softmax(ag_ctx *c, ag_tensor **in, const void *a) { return ag_softmax(c, in[0], NULL, NULL); }
static ag_tensor *f_softmax_bm(ag_ctx *c, ag_tensor **in, const void *a) { return ag_softmax(c, in[0], in[1], in[2]); }
static ag_tensor *f_softmax_b(ag_ctx *c, ag_tensor **in, const void *a) { return ag_softmax(c, in[0], in[1], NULL); }
static ag_tensor *f_logsumexp(ag_ctx *c, ag_tensor **in, const void *a) { return ag_logsumexp(c, in[0]); }

/* exp on the device vs glibc, sums in double on both: rtol 1e-5, atol 1e-7 (probabilities are <= 1). Backward: the
 * per-row dot in double on both: atol 1e-6, rtol 1e-5; the gradients of a broadcast bias or mask sum up to 42 terms
 * (double on the device, float in order on the CPU): atol 1e-5. */
#define OC_SOFTMAX_F ((oc_tol){1e-7, 1e-5})
#define OC_SOFTMAX_B ((oc_tol){1e-6, 1e-5})
#define OC_SOFTMAX_BB ((oc_tol){1e-5, 1e-5})
static const int64_t OC_ROWS[][3] = {{2, 4, 1}, {2, 3, 13}, {2, 2, 300}, {2, 1, 1}}; /* rows of 1..300, in [-3, 3) */
#define OC_FINFO_MIN (-3.4028234663852886e38) /* HF's mask value, torch.finfo(float32).min */

/* Attention scores [B=2, H=3, Sq=5, Sk=7] and a position bias [1, 3, 5, 7], both requiring grad. */
static inline void oc_scores(oc_env *e, ag_tensor **x, ag_tensor **bias) {
    *x = OC_IN(e, 80, -3, 3, 2, 3, 5, 7);
    *bias = OC_IN(e, 81, -2, 2, 1, 3, 5, 7);
}
/* A causal mask [1, 1, 5, 7] whose first row is fully masked. */
static inline ag_tensor *oc_causal(oc_env *e) {
    ag_tensor *causal = OC_ZEROS(e, 1, 1, 5, 7);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 7; j++)
            if (i == 0 || j > i + 1) ag_set(causal, i * 7 + j, OC_FINFO_MIN);
    return causal;
}

static void oc_softmax(oc_env *e) {
    /* scores [B, H, T, S] + position bias [1, H, T, S] + mask [B, 1, 1, S], as T5 attention adds them */
    ag_tensor *mask = OC_ZEROS(e, 2, 1, 1, 5);
    ag_set(mask, 4, -1e9); /* key 4 masked in batch row 0 */
    ag_set(mask, 5 + 0, -1e9);
    OC_CASE(e, .name = "softmax+bias+mask", .op = AG_OP_SOFTMAX, .f = f_softmax_bm, .n_in = 3,
            .in = {OC_R(e, 24, 2, 3, 4, 5), OC_R(e, 25, 1, 3, 4, 5), mask}, .fwd = OC_SOFTMAX_F, .bwd = OC_SOFTMAX_BB);
    OC_CASE(e, .name = "softmax plain [1,7]", .op = AG_OP_SOFTMAX, .f = f_softmax, .n_in = 1, .in = {OC_R(e, 26, 1, 7)},
            .fwd = OC_SOFTMAX_F, .bwd = OC_SOFTMAX_B);
    for (int s = 0; s < 4; s++)
        OC_CASE(e, .name = "softmax", .op = AG_OP_SOFTMAX, .f = f_softmax, .n_in = 1,
                .in = {oc_randv(e, 70 + s, -3, 3, OC_ROWS[s])}, .fwd = OC_SOFTMAX_F, .bwd = OC_SOFTMAX_B);
    /* scores + position bias + padding mask [2, 1, 1, 7] at finfo.min, as HF masks */
    ag_tensor *x, *bias, *pad = OC_ZEROS(e, 2, 1, 1, 7);
    oc_scores(e, &x, &bias);
    for (int j = 4; j < 7; j++) ag_set(pad, 7 + j, OC_FINFO_MIN);          /* batch 1: the last 3 keys are padding */
    for (int j = 0; j < 7; j++) ag_set(pad, j, j == 2 ? OC_FINFO_MIN : 0); /* batch 0: key 2 masked */
    OC_CASE(e, .name = "softmax bias+mask", .op = AG_OP_SOFTMAX, .f = f_softmax_bm, .n_in = 3, .in = {x, bias, pad},
            .fwd = OC_SOFTMAX_F, .bwd = OC_SOFTMAX_BB);
    /* the causal mask: the fully masked row comes out uniform on both. GPU only: that row does not depend on x in
     * floating point (x + finfo.min == finfo.min), so its finite difference is 0 while the analytic gradient is
     * that of the uniform softmax it comes out as. */
    OC_CASE(e, .name = "softmax causal fully-masked row", .op = AG_OP_SOFTMAX, .f = f_softmax_bm, .n_in = 3,
            .only = OC_GPU, .in = {x, bias, oc_causal(e)}, .fwd = OC_SOFTMAX_F, .bwd = OC_SOFTMAX_BB);
    /* The mask requiring grad too (its gradient is a broadcast reduction like the bias's), and a bias broadcast
     * along the last dim. GPU only: an input constant along the softmax axis has a zero gradient (softmax is
     * shift-invariant), which finite differences see only as rounding noise; the device's broadcast reduction of
     * it is what these compare. */
    OC_CASE(e, .name = "softmax bias+mask grads", .op = AG_OP_SOFTMAX, .f = f_softmax_bm, .n_in = 3, .only = OC_GPU,
            .in = {x, bias, OC_R(e, 82, 2, 1, 5, 1)}, .fwd = OC_SOFTMAX_F, .bwd = OC_SOFTMAX_BB);
    OC_CASE(e, .name = "softmax bias [5,1]", .op = AG_OP_SOFTMAX, .f = f_softmax_b, .n_in = 2, .only = OC_GPU,
            .in = {x, OC_R(e, 84, 5, 1)}, .fwd = OC_SOFTMAX_F, .bwd = OC_SOFTMAX_BB);
    /* a bias of x's full shape */
    OC_CASE(e, .name = "softmax full bias", .op = AG_OP_SOFTMAX, .f = f_softmax_b, .n_in = 2,
            .in = {x, OC_R(e, 83, 2, 3, 5, 7)}, .fwd = OC_SOFTMAX_F, .bwd = OC_SOFTMAX_BB);
}

static void oc_logsumexp(oc_env *e) {
    OC_CASE(e, .name = "logsumexp", .op = AG_OP_LOGSUMEXP, .f = f_logsumexp, .n_in = 1, .in = {OC_R(e, 28, 2, 3, 9)},
            .fwd = OC_SOFTMAX_F, .bwd = OC_SOFTMAX_B);
    OC_CASE(e, .name = "logsumexp 1-d", .op = AG_OP_LOGSUMEXP, .f = f_logsumexp, .n_in = 1, .in = {OC_R(e, 29, 11)},
            .fwd = OC_SOFTMAX_F, .bwd = OC_SOFTMAX_B);
    for (int s = 0; s < 4; s++)
        OC_CASE(e, .name = "logsumexp", .op = AG_OP_LOGSUMEXP, .f = f_logsumexp, .n_in = 1,
                .in = {oc_randv(e, 70 + s, -3, 3, OC_ROWS[s])}, .fwd = OC_SOFTMAX_F, .bwd = OC_SOFTMAX_B);
}

/* ---- embedding, gather_rows, scatter_rows ------------------------------------------------------------------------ */

static ag_tensor *f_embedding(ag_ctx *c, ag_tensor **in, const void *a) { return ag_embedding(c, in[0], in[1]); }
static ag_tensor *f_gather(ag_ctx *c, ag_tensor **in, const void *a) { return ag_gather_rows(c, in[0], in[1]); }
static ag_tensor *f_scatter(ag_ctx *c, ag_tensor **in, const void *a) {
    return ag_scatter_rows(c, in[0], in[1], *(const int64_t *)a);
}

/* Copies: exact forward (gather, embedding) and exact backward (scatter). Repeated indices make the other direction
 * a sum of up to 3 rows through float atomics, in any order: atol 1e-7, rtol 1e-6. */
#define OC_ATOM ((oc_tol){1e-7, 1e-6})

static void oc_embedding(oc_env *e) {
    static const int32_t rep[6] = {4, 0, 4, 9, 1, 4}; /* repeated ids: their gradients must add */
    OC_CASE(e, .name = "embedding", .op = AG_OP_EMBEDDING, .f = f_embedding, .n_in = 2,
            .in = {OC_R(e, 30, 10, 3), OC_INDEX(e, rep, 2, 3)}, .fwd = OC_EXACT, .bwd = OC_ATOM);
    static const int32_t ids[6] = {3, 0, 10, 3, 7, 3}, ids1[1] = {2};
    OC_CASE(e, .name = "embedding [2,3] of [11,5]", .op = AG_OP_EMBEDDING, .f = f_embedding, .n_in = 2,
            .in = {OC_R(e, 90, 11, 5), OC_INDEX(e, ids, 2, 3)}, .fwd = OC_EXACT, .bwd = OC_ATOM);
    OC_CASE(e, .name = "embedding D=1", .op = AG_OP_EMBEDDING, .f = f_embedding, .n_in = 2,
            .in = {OC_R(e, 91, 4, 1), OC_INDEX(e, ids1, 1)}, .fwd = OC_EXACT, .bwd = OC_ATOM);
}

static const int32_t OC_GI[9] = {5, -1, 0, 5, 2, -7, 4, 5, 1};     /* < 0: a zero row (gather) / dropped (scatter) */
static const int32_t OC_PERM[5] = {4, 2, 0, 1, 3}; /* a permutation (the MoE case): no collisions, exact both ways */

static void oc_gather_rows(oc_env *e) {
    static const int32_t gi[7] = {2, -1, 0, 2, 5, 5, 1}; /* -1: a zero row */
    OC_CASE(e, .name = "gather_rows [6,5]", .op = AG_OP_GATHER_ROWS, .f = f_gather, .n_in = 2,
            .in = {OC_R(e, 31, 6, 5), OC_INDEX(e, gi, 7)}, .fwd = OC_EXACT, .bwd = OC_ATOM);
    OC_CASE(e, .name = "gather_rows", .op = AG_OP_GATHER_ROWS, .f = f_gather, .n_in = 2,
            .in = {OC_R(e, 92, 6, 13), OC_INDEX(e, OC_GI, 9)}, .fwd = OC_EXACT, .bwd = OC_ATOM);
    OC_CASE(e, .name = "gather_rows permutation", .op = AG_OP_GATHER_ROWS, .f = f_gather, .n_in = 2,
            .in = {OC_R(e, 94, 5, 3), OC_INDEX(e, OC_PERM, 5)}, .fwd = OC_EXACT, .bwd = OC_EXACT);
}

static void oc_scatter_rows(oc_env *e) {
    static const int64_t six = 6, five = 5;
    static const int32_t si[4] = {5, -1, 0, 5};
    OC_CASE(e, .name = "scatter_rows [4,3]", .op = AG_OP_SCATTER_ROWS, .f = f_scatter, .arg = &six, .n_in = 2,
            .in = {OC_R(e, 32, 4, 3), OC_INDEX(e, si, 4)}, .fwd = OC_ATOM, .bwd = OC_EXACT);
    OC_CASE(e, .name = "scatter_rows", .op = AG_OP_SCATTER_ROWS, .f = f_scatter, .arg = &six, .n_in = 2,
            .in = {OC_R(e, 93, 9, 13), OC_INDEX(e, OC_GI, 9)}, .fwd = OC_ATOM, .bwd = OC_EXACT);
    OC_CASE(e, .name = "scatter_rows permutation", .op = AG_OP_SCATTER_ROWS, .f = f_scatter, .arg = &five, .n_in = 2,
            .in = {OC_R(e, 94, 5, 3), OC_INDEX(e, OC_PERM, 5)}, .fwd = OC_EXACT, .bwd = OC_EXACT);
}

/* ---- dropout, reshape, permute, reductions ----------------------------------------------------------------------- */

typedef struct {
    double p;
    uint64_t seed, step, purpose;
} oc_drop;
static ag_tensor *f_dropout(ag_ctx *c, ag_tensor **in, const void *a) {
    const oc_drop *d = a;
    return ag_dropout(c, in[0], d->p, ag_rng_make(d->seed, d->step, d->purpose));
}

/* The same Philox mask and the same float scale: exact both ways. */
static void oc_dropout(oc_env *e) {
    static const oc_drop d = {0.3, 5, 7, 11}, rates[3] = {{0.1, 5, 9, 3}, {0.5, 5, 9, 3}, {0.9, 5, 9, 3}};
    OC_CASE(e, .name = "dropout (training)", .op = AG_OP_DROPOUT, .f = f_dropout, .arg = &d, .n_in = 1,
            .in = {OC_R(e, 35, 4, 9)}, .training = true, .fwd = OC_EXACT, .bwd = OC_EXACT);
    for (int r = 0; r < 3; r++)
        OC_CASE(e, .name = "dropout", .op = AG_OP_DROPOUT, .f = f_dropout, .arg = &rates[r], .n_in = 1,
                .in = {OC_R(e, 120 + r, 3, 7, 33)}, .training = true, .fwd = OC_EXACT, .bwd = OC_EXACT);
}

static ag_tensor *f_reshape_mul(ag_ctx *c, ag_tensor **in, const void *a) {
    return ag_mul(c, ag_reshapev(c, in[0], 5, 6), in[1]);
}
static ag_tensor *f_reshape(ag_ctx *c, ag_tensor **in, const void *a) {
    return ag_relu(c, ag_reshapev(c, ag_scale(c, in[0], 2.0), 5, -1));
}
static ag_tensor *f_permute(ag_ctx *c, ag_tensor **in, const void *a) { return ag_permute(c, in[0], (const int *)a); }
static ag_tensor *f_transpose(ag_ctx *c, ag_tensor **in, const void *a) { return ag_transpose(c, in[0], 0, 1); }

/* reshape (a view) and permute (a copy), around single IEEE operations: exact both ways. */
static void oc_reshape(oc_env *e) {
    OC_CASE(e, .name = "reshape", .op = AG_OP_RESHAPE, .f = f_reshape_mul, .n_in = 2,
            .in = {OC_R(e, 36, 2, 3, 5), OC_R(e, 37, 5, 6)}, .fwd = OC_EXACT, .bwd = OC_EXACT);
    OC_CASE(e, .name = "reshape", .op = AG_OP_RESHAPE, .f = f_reshape, .n_in = 1, .in = {OC_R(e, 130, 2, 5, 3)},
            .fwd = OC_EXACT, .bwd = OC_EXACT);
}
static void oc_permute(oc_env *e) {
    static const int p0[4] = {2, 0, 3, 1}, p4[][4] = {{0, 2, 1, 3}, {3, 2, 1, 0}, {1, 0, 3, 2}, {0, 1, 2, 3}};
    static const int p2[2] = {1, 0}, p3[3] = {2, 0, 1};
    OC_CASE(e, .name = "permute 4d", .op = AG_OP_PERMUTE, .f = f_permute, .arg = p0, .n_in = 1,
            .in = {OC_R(e, 38, 2, 3, 1, 5)}, .fwd = OC_EXACT, .bwd = OC_EXACT);
    OC_CASE(e, .name = "transpose", .op = AG_OP_PERMUTE, .f = f_transpose, .n_in = 1, .in = {OC_R(e, 39, 3, 7)},
            .fwd = OC_EXACT, .bwd = OC_EXACT);
    ag_tensor *y = OC_R(e, 131, 2, 3, 5, 7);
    for (int i = 0; i < 4; i++)
        OC_CASE(e, .name = "permute 4d", .op = AG_OP_PERMUTE, .f = f_permute, .arg = p4[i], .n_in = 1, .in = {y},
                .fwd = OC_EXACT, .bwd = OC_EXACT);
    OC_CASE(e, .name = "permute 2d", .op = AG_OP_PERMUTE, .f = f_permute, .arg = p2, .n_in = 1,
            .in = {OC_R(e, 132, 1, 9)}, .fwd = OC_EXACT, .bwd = OC_EXACT);
    OC_CASE(e, .name = "permute 3d", .op = AG_OP_PERMUTE, .f = f_permute, .arg = p3, .n_in = 1,
            .in = {OC_R(e, 133, 4, 1, 6)}, .fwd = OC_EXACT, .bwd = OC_EXACT);
}

static ag_tensor *f_sum(ag_ctx *c, ag_tensor **in, const void *a) { return ag_sum(c, in[0]); }
static ag_tensor *f_sum_square(ag_ctx *c, ag_tensor **in, const void *a) { return ag_sum(c, ag_square(c, in[0])); }
static ag_tensor *f_sum_last(ag_ctx *c, ag_tensor **in, const void *a) { return ag_sum_last(c, in[0]); }

/* Sums in double on both (another order), one rounding to float: atol 1e-6, rtol 1e-6. Backward: dx += dy (and
 * square's 2 x dy): exact. */
#define OC_SUM_F ((oc_tol){1e-6, 1e-6})
/* [1000, 300]: GPU only, too large for finite differences (two evaluations of 300k elements per element). */
static const int64_t OC_RED[][4] = {{1, 1}, {2, 7, 1}, {3, 3, 5, 13}, {2, 1000, 300}};

static void oc_sum(oc_env *e) {
    OC_CASE(e, .name = "sum", .op = AG_OP_SUM, .f = f_sum_square, .n_in = 1, .in = {OC_R(e, 40, 3, 7)},
            .fwd = OC_SUM_F, .bwd = OC_EXACT);
    for (int s = 0; s < 4; s++)
        OC_CASE(e, .name = "sum", .op = AG_OP_SUM, .f = f_sum, .n_in = 1,
                .in = {oc_randv(e, 140 + s, -1, 1, OC_RED[s])}, .only = s == 3 ? OC_GPU : 0, .fwd = OC_SUM_F,
                .bwd = OC_EXACT);
}
static void oc_sum_last(oc_env *e) {
    OC_CASE(e, .name = "sum_last", .op = AG_OP_SUM_LAST, .f = f_sum_last, .n_in = 1, .in = {OC_R(e, 42, 2, 3, 7)},
            .fwd = OC_SUM_F, .bwd = OC_EXACT);
    for (int s = 0; s < 4; s++)
        OC_CASE(e, .name = "sum_last", .op = AG_OP_SUM_LAST, .f = f_sum_last, .n_in = 1,
                .in = {oc_randv(e, 140 + s, -1, 1, OC_RED[s])}, .only = s == 3 ? OC_GPU : 0, .fwd = OC_SUM_F,
                .bwd = OC_EXACT);
}

/* ---- cross-entropy ----------------------------------------------------------------------------------------------- */

static ag_tensor *f_ce(ag_ctx *c, ag_tensor **in, const void *a) { return ag_cross_entropy(c, in[0], in[1]); }

/* lse with the device's expf (sum in double on both) and a mean in double: rtol 1e-5. Backward: g exp(x - lse) per
 * element: atol 1e-7 (g = 1/count <= 1), rtol 1e-5. All labels ignored: loss 0 and zero gradients on both (the CPU
 * allocates no gradient, the GPU a zero one: the comparison reads a missing gradient as zeros). */
static void oc_cross_entropy(oc_env *e) {
    const oc_tol F = {1e-6, 1e-5}, B = {1e-7, 1e-5};
    static const int32_t lab0[5] = {3, -100, 0, 10, -100}, lab[7] = {3, -100, 0, 12, 12, -100, 5}, one[1] = {0};
    static const int32_t none[3] = {-100, -100, -100};
    OC_CASE(e, .name = "cross_entropy [5,11]", .op = AG_OP_CROSS_ENTROPY, .f = f_ce, .n_in = 2,
            .in = {OC_IN(e, 43, -3, 3, 5, 11), OC_INDEX(e, lab0, 5)}, .fwd = F, .bwd = B);
    OC_CASE(e, .name = "cross_entropy", .op = AG_OP_CROSS_ENTROPY, .f = f_ce, .n_in = 2,
            .in = {OC_IN(e, 150, -4, 4, 7, 13), OC_INDEX(e, lab, 7)}, .fwd = F, .bwd = B);
    OC_CASE(e, .name = "cross_entropy V=1", .op = AG_OP_CROSS_ENTROPY, .f = f_ce, .n_in = 2,
            .in = {OC_R(e, 151, 1, 1), OC_INDEX(e, one, 1)}, .fwd = F, .bwd = B);
    OC_CASE(e, .name = "cross_entropy all ignored", .op = AG_OP_CROSS_ENTROPY, .f = f_ce, .n_in = 2,
            .in = {OC_R(e, 152, 3, 9), OC_INDEX(e, none, 3)}, .fwd = OC_EXACT, .bwd = OC_EXACT);
    static int32_t big[300];
    for (int i = 0; i < 300; i++) big[i] = i % 17 == 0 ? -100 : (i * 37) % 1000;
    /* GPU only: 300k logits are too many for finite differences */
    OC_CASE(e, .name = "cross_entropy 300x1000", .op = AG_OP_CROSS_ENTROPY, .f = f_ce, .n_in = 2, .only = OC_GPU,
            .in = {OC_IN(e, 153, -4, 4, 300, 1000), OC_INDEX(e, big, 300)}, .fwd = F, .bwd = B);
}

/* ---- cast -------------------------------------------------------------------------------------------------------- */

static ag_tensor *f_cast_f32_f64(ag_ctx *c, ag_tensor **in, const void *a) {
    return ag_cast(c, ag_cast(c, in[0], AG_F32), AG_F64);
}
static ag_tensor *f_cast_bf16(ag_ctx *c, ag_tensor **in, const void *a) { return ag_cast(c, in[0], AG_BF16); }
static ag_tensor *f_cast_roundtrip(ag_ctx *c, ag_tensor **in, const void *a) {
    return ag_mul(c, ag_cast(c, ag_cast(c, in[0], AG_BF16), AG_F32), in[0]);
}

static void oc_cast(oc_env *e) {
    /* Gradient check only (f64 exists on the CPU only). Through f32 and back, the function is the identity up to f32
     * rounding, so the central difference carries a rounding error of ~eps_f32 |x| / h = 6e-8 / 1e-2 ~ 6e-6
     * relative; 1e-4 leaves a margin. */
    OC_CASE(e, .name = "cast f64->f32->f64", .op = AG_OP_CAST, .f = f_cast_f32_f64, .n_in = 1, .only = OC_GRAD,
            .in = {OC_R(e, 44, 3, 5)}, .grad_tol = 1e-4, .grad_h = 1e-2);
    /* GPU only (finite differences through bf16 rounding mean nothing): round to nearest even with the same integer
     * operations, and exact widening: exact both ways, also for infinities, NaN, overflow, subnormals and -0. */
    ag_tensor *x = OC_IN(e, 160, -300, 300, 9, 37);
    ag_set(x, 0, INFINITY);
    ag_set(x, 1, -INFINITY);
    ag_set(x, 2, NAN);
    ag_set(x, 3, 3.4e38); /* above bf16's largest finite value: rounds to inf */
    ag_set(x, 4, 1e-40);  /* subnormal */
    ag_set(x, 5, -0.0);
    OC_CASE(e, .name = "cast f32->bf16", .op = AG_OP_CAST, .f = f_cast_bf16, .n_in = 1, .only = OC_GPU, .in = {x},
            .fwd = OC_EXACT, .bwd = OC_EXACT);
    OC_CASE(e, .name = "cast f32->bf16->f32 * x", .op = AG_OP_CAST, .f = f_cast_roundtrip, .n_in = 1, .only = OC_GPU,
            .in = {OC_R(e, 161, 4, 5)}, .fwd = OC_EXACT, .bwd = OC_EXACT);
}

/* ---- custom: the caller's kernels -------------------------------------------------------------------------------- */

/* forward: out = in (ag_copy works on either device); backward: din += dout (the device helper on the GPU) */
static void oc_copy_fwd(void *user, const ag_tensor *in, ag_tensor *out) { ag_copy(out, in); }
static void oc_copy_bwd(void *user, const ag_tensor *dout, ag_tensor *din) {
    if (din->device == AG_DEV_CUDA) {
        ag_cuda_add_into(din, dout);
        return;
    }
    for (int64_t i = 0; i < din->numel; i++) ag_set(din, i, ag_get(din, i) + ag_get(dout, i));
}
static const ag_custom_fn OC_COPY = {"copy", oc_copy_fwd, oc_copy_bwd, NULL};
static ag_tensor *f_custom_copy(ag_ctx *c, ag_tensor **in, const void *a) {
    return ag_square(c, ag_custom(c, in[0], 2, AG_SHAPE(3, 4), &OC_COPY));
}
/* rows in reverse order, host loops over double (the hook expert parallelism moves tokens through) */
static void oc_rev_fwd(void *u, const ag_tensor *in, ag_tensor *out) {
    int64_t R = in->shape[0], D = in->shape[1];
    for (int64_t r = 0; r < R; r++)
        memcpy((double *)out->data + r * D, (const double *)in->data + (R - 1 - r) * D, sizeof(double) * (size_t)D);
}
static void oc_rev_bwd(void *u, const ag_tensor *dout, ag_tensor *din) {
    int64_t R = dout->shape[0], D = dout->shape[1];
    for (int64_t r = 0; r < R; r++)
        for (int64_t j = 0; j < D; j++)
            ((double *)din->data)[(R - 1 - r) * D + j] += ((const double *)dout->data)[r * D + j];
}
static const ag_custom_fn OC_REV = {"reverse_rows", oc_rev_fwd, oc_rev_bwd, NULL};
static ag_tensor *f_custom_rev(ag_ctx *c, ag_tensor **in, const void *a) {
    return ag_square(c, ag_custom(c, in[0], 2, in[0]->shape, &OC_REV));
}

static void oc_custom(oc_env *e) {
    /* gradient check only: its kernels read and write doubles on the host */
    OC_CASE(e, .name = "custom (reverse rows)", .op = AG_OP_CUSTOM, .f = f_custom_rev, .n_in = 1, .only = OC_GRAD,
            .in = {OC_R(e, 50, 5, 3)});
    /* a copy and a square: exact */
    OC_CASE(e, .name = "custom copy", .op = AG_OP_CUSTOM, .f = f_custom_copy, .n_in = 1, .in = {OC_R(e, 170, 12)},
            .fwd = OC_EXACT, .bwd = OC_EXACT);
}

/* ---- graphs of several ops --------------------------------------------------------------------------------------- */

/* Attention-like: gradients from several consumers of one tensor must add up. Gradient check only: whole graphs on
 * the device are compared by tests/gpu/test_gpu_runtime.c and test_gpu_model.c. */
static ag_tensor *f_attention(ag_ctx *c, ag_tensor **in, const void *a) {
    ag_tensor *q = ag_matmul(c, in[0], in[1], false, true); /* [2, 4, 6] */
    ag_tensor *k = ag_matmul(c, in[0], in[2], false, true);
    ag_tensor *s = ag_matmul(c, q, k, false, true);         /* [2, 4, 4] */
    ag_tensor *p = ag_softmax(c, s, in[3], NULL);
    return ag_rmsnorm(c, ag_matmul(c, p, q, false, false), in[4], 1e-6);
}
static void oc_graphs(oc_env *e) {
    OC_CASE(e, .name = "attention-like graph", .op = AG_OP_COUNT, .f = f_attention, .n_in = 5, .only = OC_GRAD,
            .in = {OC_R(e, 45, 2, 4, 3), OC_R(e, 46, 6, 3), OC_R(e, 47, 6, 3), OC_R(e, 48, 1, 4, 4), OC_R(e, 49, 6)});
}

/* ---- the table: one entry per op of ag_ops.def (an op without oc_<name> above does not compile) ------------------ */

typedef void (*oc_family)(oc_env *e);
static const oc_family OC_CASES[AG_OP_COUNT] = {
#define AG_OP(E, name, grad) [AG_OP_##E] = oc_##name,
#include "autograd/ag_ops.def"
};

#endif
