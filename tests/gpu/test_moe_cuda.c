/* The device routing and token permutation (moe/moe_cuda.h) against the CPU reference (moe/route.c and plain loops
 * written like the CPU autograd ops). SKIPPED (visibly) where no GPU is present.
 *
 * Tolerances and their reasons:
 * - choices, keep, slot, off, tokens_per_expert, perm, gidx, loss_index, n_kept, n_dropped: identical. They are
 *   decisions on identical fp32 inputs made by the same comparisons and integer counts; any difference is a bug.
 * - entropy: |gpu - cpu| <= 1e-9 * cpu. Both accumulate nonnegative terms in fp64; they differ in summation order
 *   (relative error <= N * 2^-53, 1.2e-10 for N = 2^20) and in the last ulp of log.
 * - permute and its backward: identical (copies, and additions in the CPU's row order).
 * - unpermute and the dye part of its backward: |gpu - cpu| <= 2^-22 * sum of |terms|. The device rounds each
 *   product and sum singly in the CPU's order, so it is built to be exact; the slack absorbs a host compiler that
 *   fuses the reference loop's multiply-add (one rounding fewer, at most an ulp of the terms).
 * - dgate = dot(dy, ye) over D and dprobs: |gpu - cpu| <= (ceil(D / 128) + 8) * 2^-23 * sum_d |dy * ye| (+ 2^-23
 *   |dprobs| for the rounding of the accumulated value). The device rounds each product and sums in fp32 over a fixed
 *   tree (ceil(D / 128) serial terms per thread, then 7 levels), the reference in double: the fp32 error is below
 *   (ceil(D / 128) + 8) * 2^-24 * sum |terms|; the tolerance is twice that (1e-6 relative at D = 64, 2.9e-6 at
 *   D = 2048). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ag.h"
#include "autograd/ag_cuda.h"
#include "moe/moe_cuda.h"
#include "moe/route.h"

#define SKIP_WITHOUT_GPU(name)                                                                                        \
    do {                                                                                                              \
        if (ag_cuda_device_count() == 0) {                                                                            \
            printf("SKIPPED: moe_cuda::%s: no CUDA device (%s)\n", (name), ag_cuda_describe());                      \
            cr_skip_test("SKIPPED: no CUDA device (%s)", ag_cuda_describe());                                        \
        }                                                                                                             \
    } while (0)

/* ---- routing outputs on the host --------------------------------------------------------------------------------- */

typedef struct {
    moe_route_result r;
    int64_t N;
    int E, K;
} routed;

static void routed_alloc(routed *o, int64_t N, int E, int K) {
    size_t nk = (size_t)(N * K) + 1;
    o->N = N;
    o->E = E;
    o->K = K;
    o->r = (moe_route_result){
        .choice = malloc(sizeof(int32_t) * nk),
        .keep = malloc(nk),
        .slot = malloc(sizeof(int32_t) * nk),
        .off = malloc(sizeof(int64_t) * (size_t)(E + 1)),
        .tokens_per_expert = malloc(sizeof(int64_t) * (size_t)E),
        .perm = malloc(sizeof(int32_t) * nk),
        .gidx = malloc(sizeof(int32_t) * nk),
        .loss_index = malloc(sizeof(int32_t) * (size_t)(N + 1)),
    };
    /* garbage in every output, different on the two sides: each must write what it returns */
    memset(o->r.choice, 0x5a, sizeof(int32_t) * nk);
    memset(o->r.slot, 0x5a, sizeof(int32_t) * nk);
    memset(o->r.perm, 0x5a, sizeof(int32_t) * nk);
    memset(o->r.gidx, 0x5a, sizeof(int32_t) * nk);
    memset(o->r.keep, 0x5a, nk);
}

static void routed_free(routed *o) {
    free(o->r.choice);
    free(o->r.keep);
    free(o->r.slot);
    free(o->r.off);
    free(o->r.tokens_per_expert);
    free(o->r.perm);
    free(o->r.gidx);
    free(o->r.loss_index);
}

/* ---- inputs -------------------------------------------------------------------------------------------------------- */

typedef enum {
    P_RANDOM,    /* logits N(0, 2^2): ties rare */
    P_QUANTIZED, /* logits in {0, 1, 2, 3}: ties everywhere, so first-index tie breaking decides */
    P_ONE_EXPERT /* every token prefers expert E/2 by far, the rest tie: the heaviest imbalance */
} probs_kind;

/* Row softmax in float, the way the CPU op does it (max, exp, sum, divide): the inputs of both sides. */
static float *make_probs(int64_t N, int E, probs_kind kind, uint64_t seed) {
    float *p = malloc(sizeof(float) * (size_t)(N * E + 1));
    ag_rng_key k = ag_rng_make(seed, 0, 77);
    for (int64_t t = 0; t < N; t++) {
        float *row = p + t * E, mx = -INFINITY, s = 0;
        for (int e = 0; e < E; e++) {
            uint64_t i = (uint64_t)(t * E + e);
            float z = kind == P_RANDOM ? 2 * ag_rng_normal(k, i)
                    : kind == P_QUANTIZED ? floorf(4 * ag_rng_uniform(k, i))
                                          : (e == E / 2 ? 8.0f : 0.0f);
            row[e] = z;
            mx = z > mx ? z : mx;
        }
        for (int e = 0; e < E; e++) s += row[e] = expf(row[e] - mx);
        for (int e = 0; e < E; e++) row[e] /= s;
    }
    return p;
}

static float *make_floats(int64_t n, uint64_t seed) {
    float *v = malloc(sizeof(float) * (size_t)(n + 1));
    ag_rng_key k = ag_rng_make(seed, 1, 78);
    for (int64_t i = 0; i < n; i++) v[i] = 2 * ag_rng_uniform(k, (uint64_t)i) - 1;
    return v;
}

/* ---- comparisons: one summary assertion per array ------------------------------------------------------------------ */

#define EXPECT_SAME(what, a, b, n)                                                                                    \
    do {                                                                                                              \
        int64_t bad_ = 0, first_ = -1;                                                                                \
        for (int64_t i_ = 0; i_ < (int64_t)(n); i_++)                                                                 \
            if ((a)[i_] != (b)[i_]) {                                                                                 \
                if (first_ < 0) first_ = i_;                                                                          \
                bad_++;                                                                                               \
            }                                                                                                         \
        cr_expect_eq(bad_, 0, "%s: %s differs at %lld of %lld entries, first at %lld (gpu %lld, cpu %lld)", label, (what), \
                     (long long)bad_, (long long)(n), (long long)first_, (long long)(first_ >= 0 ? (a)[first_] : 0),  \
                     (long long)(first_ >= 0 ? (b)[first_] : 0));                                                     \
    } while (0)

/* |gpu - cpu| <= tol[i] (tol NULL: exact); reports the worst entry. */
static void expect_close(const char *label, const char *what, const float *gpu, const double *cpu, const double *tol, int64_t n) {
    int64_t bad = 0, worst = -1;
    double worst_excess = 0;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)gpu[i] - cpu[i]), t = tol ? tol[i] : 0;
        if (!(err <= t)) { /* NaN fails */
            bad++;
            if (worst < 0 || !(err - t <= worst_excess)) worst = i, worst_excess = err - t;
        }
    }
    cr_expect_eq(bad, 0, "%s: %s: %lld of %lld entries out of tolerance, worst at %lld: gpu %.9g, cpu %.9g, tol %.3g", label, what,
                 (long long)bad, (long long)n, (long long)worst, worst >= 0 ? gpu[worst] : 0.0, worst >= 0 ? cpu[worst] : 0.0,
                 worst >= 0 && tol ? tol[worst] : 0.0);
}

/* ---- routing ------------------------------------------------------------------------------------------------------- */

typedef struct {
    int64_t N;
    int E, K;
    int64_t G, C; /* group_tokens (<= 0: one group), capacity (< 0: dropless) */
    probs_kind kind;
} route_case;

static void check_route(const route_case *c, uint64_t seed) {
    char label[160];
    snprintf(label, sizeof label, "N=%lld E=%d K=%d G=%lld C=%lld kind=%d", (long long)c->N, c->E, c->K, (long long)c->G, (long long)c->C,
             (int)c->kind);
    float *p = make_probs(c->N, c->E, c->kind, seed);
    routed cpu, gpu;
    routed_alloc(&cpu, c->N, c->E, c->K);
    routed_alloc(&gpu, c->N, c->E, c->K);
    memset(gpu.r.choice, 0xa5, sizeof(int32_t) * (size_t)(c->N * c->K));
    moe_route_cpu(p, c->N, c->E, c->K, c->G, c->C, &cpu.r);
    cr_assert(moe_cuda_route_host(p, c->N, c->E, c->K, c->G, c->C, &gpu.r), "%s: the CUDA route did not run", label);

    const int64_t NK = c->N * c->K;
    EXPECT_SAME("choice", gpu.r.choice, cpu.r.choice, NK);
    EXPECT_SAME("keep", gpu.r.keep, cpu.r.keep, NK);
    EXPECT_SAME("slot", gpu.r.slot, cpu.r.slot, NK);
    EXPECT_SAME("off", gpu.r.off, cpu.r.off, c->E + 1);
    EXPECT_SAME("tokens_per_expert", gpu.r.tokens_per_expert, cpu.r.tokens_per_expert, c->E);
    cr_expect_eq(gpu.r.n_kept, cpu.r.n_kept, "%s: n_kept gpu %lld, cpu %lld", label, (long long)gpu.r.n_kept, (long long)cpu.r.n_kept);
    const int64_t nk = gpu.r.n_kept < cpu.r.n_kept ? gpu.r.n_kept : cpu.r.n_kept;
    EXPECT_SAME("perm", gpu.r.perm, cpu.r.perm, nk);
    EXPECT_SAME("gidx", gpu.r.gidx, cpu.r.gidx, nk);
    EXPECT_SAME("loss_index", gpu.r.loss_index, cpu.r.loss_index, c->N);
    cr_expect_eq(gpu.r.n_dropped, cpu.r.n_dropped, "%s: n_dropped gpu %lld, cpu %lld", label, (long long)gpu.r.n_dropped,
                 (long long)cpu.r.n_dropped);
    const double herr = fabs(gpu.r.entropy_sum - cpu.r.entropy_sum);
    cr_expect(herr <= 1e-9 * fabs(cpu.r.entropy_sum), "%s: entropy gpu %.17g, cpu %.17g", label, gpu.r.entropy_sum, cpu.r.entropy_sum);
    routed_free(&cpu);
    routed_free(&gpu);
    free(p);
}

Test(moe_cuda, route_matches_cpu) {
    SKIP_WITHOUT_GPU("route_matches_cpu");
    static const route_case cases[] = {
        {0, 4, 1, 0, 2, P_RANDOM},                 /* no tokens */
        {0, 4, 2, 8, -1, P_RANDOM},
        {1, 1, 1, 1, 1, P_RANDOM},                 /* one expert */
        {7, 1, 1, 7, 3, P_RANDOM},                 /* one expert, four dropped */
        {4096, 8, 1, 512, 64, P_RANDOM},           /* HF: capacity 64 per sequence of 512 */
        {4096, 8, 2, 512, 80, P_RANDOM},
        {4096, 8, 1, 512, 64, P_QUANTIZED},        /* ties decide */
        {4096, 8, 2, 512, 64, P_QUANTIZED},
        {4096, 8, 1, 0, -1, P_RANDOM},             /* dropless, one group */
        {4096, 8, 2, 0, -1, P_QUANTIZED},
        {4096, 16, 2, 256, 4, P_RANDOM},           /* heavy dropping */
        {1000, 4, 2, 100, 0, P_RANDOM},            /* capacity 0: all dropped */
        {3000, 5, 2, 1000, 150, P_RANDOM},         /* groups not a multiple of the 32-token chunks */
        {999, 3, 1, 9, 2, P_QUANTIZED},            /* groups shorter than a chunk */
        {300, 4, 2, 1, 1, P_RANDOM},               /* groups of one token */
        {5000, 8, 1, 1000, 100, P_ONE_EXPERT},     /* every token picks one expert */
        {5000, 8, 2, 1000, 10, P_ONE_EXPERT},
        {5000, 8, 2, 0, -1, P_ONE_EXPERT},
        {40, 300, 2, 40, 1, P_RANDOM},             /* more experts than one block's scan tile */
        {8192, 2048, 2, 0, 16, P_RANDOM},          /* Switch-C's expert count */
        {1 << 18, 8, 2, 0, 20000, P_QUANTIZED},    /* one group of 8192 chunks: multi-tile scans */
        {1 << 20, 64, 2, 4096, 80, P_RANDOM},      /* beyond one grid of the choose kernel: grid-stride */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_route(&cases[i], 1000 + i);
}

Test(moe_cuda, route_is_deterministic) {
    SKIP_WITHOUT_GPU("route_is_deterministic");
    const int64_t N = 1 << 16;
    const int E = 32, K = 2;
    float *p = make_probs(N, E, P_QUANTIZED, 7);
    routed a, b;
    routed_alloc(&a, N, E, K);
    routed_alloc(&b, N, E, K);
    cr_assert(moe_cuda_route_host(p, N, E, K, 2048, 100, &a.r));
    cr_assert(moe_cuda_route_host(p, N, E, K, 2048, 100, &b.r));
    const char *label = "two runs";
    EXPECT_SAME("perm", a.r.perm, b.r.perm, a.r.n_kept);
    EXPECT_SAME("slot", a.r.slot, b.r.slot, N * K);
    cr_expect(memcmp(&a.r.entropy_sum, &b.r.entropy_sum, sizeof(double)) == 0, "entropy differs between runs: %.17g vs %.17g",
              a.r.entropy_sum, b.r.entropy_sum);
    routed_free(&a);
    routed_free(&b);
    free(p);
}

/* ---- permutation --------------------------------------------------------------------------------------------------- */

static void check_permutation(const route_case *c, int64_t D, uint64_t seed) {
    char label[160];
    snprintf(label, sizeof label, "N=%lld E=%d K=%d G=%lld C=%lld D=%lld", (long long)c->N, c->E, c->K, (long long)c->G, (long long)c->C,
             (long long)D);
    const int64_t N = c->N, E = c->E;
    float *p = make_probs(N, c->E, c->kind, seed);
    routed rt;
    routed_alloc(&rt, N, c->E, c->K);
    moe_route_cpu(p, N, c->E, c->K, c->G, c->C, &rt.r); /* the CPU's routing drives both sides */
    const int64_t Nk = rt.r.n_kept;
    const int32_t *perm = rt.r.perm, *gidx = rt.r.gidx;

    float *x = make_floats(N * D, seed + 1), *ye = make_floats(Nk * D, seed + 2), *dy = make_floats(N * D, seed + 3);
    float *dx0 = make_floats(N * D, seed + 4), *dye0 = make_floats(Nk * D, seed + 5), *dp0 = make_floats(N * E, seed + 6);
    float *g1 = malloc(sizeof(float) * (size_t)(N * D + Nk * D + 1)), *g2 = malloc(sizeof(float) * (size_t)(N * E + Nk + 1));
    const size_t nref = (size_t)(N * D + Nk * D + Nk + N * E + 1); /* the largest of the layouts below */
    double *ref = malloc(sizeof(double) * nref), *tol = malloc(sizeof(double) * nref);

    /* permute: xe[r] = x[perm[r]], exact */
    cr_assert(moe_cuda_permute_host(x, N, perm, Nk, D, g1), "%s: permute did not run", label);
    for (int64_t r = 0; r < Nk; r++)
        for (int64_t d = 0; d < D; d++) ref[r * D + d] = x[(int64_t)perm[r] * D + d];
    expect_close(label, "permute", g1, ref, NULL, Nk * D);

    /* permute backward: dx[perm[r]] += dxe[r] in row order (gather_rows' backward), exact. ye serves as dxe. */
    memcpy(g1, dx0, sizeof(float) * (size_t)(N * D));
    cr_assert(moe_cuda_permute_backward_host(ye, Nk, rt.r.slot, N, c->K, D, g1));
    {
        float *acc = malloc(sizeof(float) * (size_t)(N * D + 1));
        memcpy(acc, dx0, sizeof(float) * (size_t)(N * D));
        for (int64_t r = 0; r < Nk; r++)
            for (int64_t d = 0; d < D; d++) acc[(int64_t)perm[r] * D + d] += ye[r * D + d];
        for (int64_t i = 0; i < N * D; i++) ref[i] = acc[i];
        free(acc);
    }
    expect_close(label, "permute backward", g1, ref, NULL, N * D);

    /* unpermute: y = scatter(ye * gate) into zeros, in row order (mul, then scatter_rows) */
    cr_assert(moe_cuda_unpermute_host(ye, Nk, p, c->E, gidx, rt.r.slot, N, c->K, D, g1));
    {
        float *acc = calloc((size_t)(N * D + 1), sizeof(float));
        for (int64_t i = 0; i < N * D; i++) tol[i] = 0;
        for (int64_t r = 0; r < Nk; r++)
            for (int64_t d = 0; d < D; d++) {
                const float v = ye[r * D + d] * p[gidx[r]];
                acc[(int64_t)perm[r] * D + d] += v;
                tol[(int64_t)perm[r] * D + d] += ldexp(fabs(v), -22);
            }
        for (int64_t i = 0; i < N * D; i++) ref[i] = acc[i];
        free(acc);
    }
    expect_close(label, "unpermute", g1, ref, tol, N * D);

    /* unpermute backward: dye += gate * dy[perm]; dgate = dot(dy[perm], ye); dprobs[gidx] += dgate */
    memcpy(g1, dye0, sizeof(float) * (size_t)(Nk * D));
    memcpy(g2 + Nk, dp0, sizeof(float) * (size_t)(N * E));
    cr_assert(moe_cuda_unpermute_backward_host(dy, N, ye, p, c->E, perm, gidx, Nk, D, g1, g2, g2 + Nk));
    double *rg = ref + Nk * D, *tg = tol + Nk * D, *rp = rg + Nk, *tp = tg + Nk;
    const double dot_rtol = ldexp((double)((D + 127) / 128 + 8), -23);
    for (int64_t i = 0; i < N * E; i++) rp[i] = dp0[i], tp[i] = 0;
    for (int64_t r = 0; r < Nk; r++) {
        const float gate = p[gidx[r]];
        double dot = 0, mag = 0;
        for (int64_t d = 0; d < D; d++) {
            const float g = dy[(int64_t)perm[r] * D + d];
            const float v = g * gate;
            const float s = dye0[r * D + d] + v;
            ref[r * D + d] = s;
            tol[r * D + d] = ldexp(fabs(dye0[r * D + d]) + fabs(v), -22);
            dot += (double)g * ye[r * D + d];
            mag += fabs((double)g * ye[r * D + d]);
        }
        rg[r] = dot;
        tg[r] = dot_rtol * mag;
        rp[gidx[r]] += dot;
        tp[gidx[r]] = dot_rtol * mag + ldexp(fabs(rp[gidx[r]]), -23);
    }
    expect_close(label, "unpermute backward: dye", g1, ref, tol, Nk * D);
    expect_close(label, "unpermute backward: dgate", g2, rg, tg, Nk);
    expect_close(label, "unpermute backward: dprobs", g2 + Nk, rp, tp, N * E);

    free(x), free(ye), free(dy), free(dx0), free(dye0), free(dp0), free(g1), free(g2), free(ref), free(tol);
    routed_free(&rt);
    free(p);
}

Test(moe_cuda, permutation_matches_cpu) {
    SKIP_WITHOUT_GPU("permutation_matches_cpu");
    static const struct {
        route_case c;
        int64_t D;
    } cases[] = {
        {{4096, 8, 1, 512, 64, P_RANDOM}, 64},
        {{4096, 8, 2, 512, 80, P_QUANTIZED}, 64},   /* top-2: two rows meet in one token */
        {{4096, 8, 2, 0, -1, P_RANDOM}, 1},         /* dropless, D = 1 */
        {{2000, 16, 2, 250, 5, P_RANDOM}, 1000},    /* heavy dropping: many zero rows; D not a multiple of 128 */
        {{1000, 4, 2, 100, 0, P_RANDOM}, 16},       /* nothing kept: Nk = 0 */
        {{300000, 8, 2, 1000, 200, P_RANDOM}, 64},  /* beyond one grid (2^16 blocks): grid-stride loops */
        {{128, 8, 2, 0, -1, P_ONE_EXPERT}, 2048},   /* d_ff-sized rows */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_permutation(&cases[i].c, cases[i].D, 2000 + i);
}
