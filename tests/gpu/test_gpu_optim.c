/* The CUDA implementation of the optimizer (train/optim.h with optim_config.device = AG_DEV_CUDA: train/optim_cuda.c
 * over autograd/cuda/k_optim.cu) against the CPU one, both through optim_step: the same random weights and five steps
 * of random gradients on a parameter set with expert blocks (an [E, F, D] block of 2-D units and an [E, F] block of
 * 1-D units), a frozen parameter and idle units (one expert idle at every step, another one per step, a dense unit
 * once, so the units' step counts differ), then every weight, every state array and every step count compared. Then
 * the step's gradient norm and clipping (optim_sumsq, optim_scale) on both devices, and one whole training step
 * (train/step.h) of a model on the device against the same step on the CPU.
 *   - AdamW: EXACT. The element update is the CPU's float operations in the CPU's order with no FMA contraction on
 *     either side (gcc -O3 on x86-64 without -march emits none; the kernel spells each operation with an _rn
 *     intrinsic), the scalars are computed on the host by the same double expressions, and IEEE add / mul / div /
 *     sqrt are correctly rounded on both, so every bit matches.
 *   - Adafactor: the second-moment state (exp_avg_sq, exp_avg_sq_row, exp_avg_sq_col) is EXACT (one thread per row /
 *     column / batch entry sums in the CPU's order, in double, without contraction). The weights and exp_avg get
 *     AF_TOL = 1e-7 abs + 1e-6 rel: the two RMS reductions (rms(w) for scale_parameter, rms(u) for update clipping)
 *     are block reductions whose double summation order differs from the CPU's sequential sum, so the clipped
 *     learning-rate factor f = (float)(lr / denom) can differ by one float ulp (2^-24 relative), which moves a weight
 *     by at most about an ulp per step; five steps stay well inside 8 ulp of a weight of size ~1.
 *   - Step counts, idle and frozen units: EXACT (host bookkeeping shared by both; an idle unit's weights never move).
 *   - Gradient norm: 1e-12 relative (double sums of up to ~10^5 terms in two different orders: error <= n * 2^-53
 *     ~ 1e-11 worst case, typically 1e-15); clipping by a given float factor EXACT (one float multiply on both).
 *   - The whole training step: see its section below.
 * SKIPPED (visibly) without a GPU. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/gpu/gpu_compare.h"
#include "train/optim.h"
#include "train/step.h"

#ifndef SX_SOURCE_DIR
#define SX_SOURCE_DIR "." /* tests/gpu/emu/run.sh runs the suites from the repository root */
#endif

/* ---- helpers ------------------------------------------------------------------------------------------------------ */

static void fill_rand(float *x, int64_t n, uint64_t seed, double lo, double hi) {
    ag_rng_key k = ag_rng_make(seed, 3, 5);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * ag_rng_uniform(k, (uint64_t)i));
}

static float *dev_alloc(int64_t n) {
    float *p = ag_cuda_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1), "test_gpu_optim");
    ag_cuda_memset0(p, sizeof(float) * (size_t)(n > 0 ? n : 1));
    return p;
}
static void to_dev(float *d, const float *h, int64_t n) { ag_cuda_memcpy(d, h, sizeof(float) * (size_t)n, AG_COPY_H2D); }
static float *from_dev(const float *d, int64_t n) {
    float *h = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    ag_cuda_memcpy(h, d, sizeof(float) * (size_t)n, AG_COPY_D2H);
    return h;
}

/* |gpu - cpu| <= atol + rtol |cpu| over n floats: one summary line (the gpu-compare format of gpu_compare.h) and
 * one assertion. */
static bool cmp_f32(const char *op, const char *what, const float *ref, const float *got, int64_t n, gtol tol) {
    int64_t bad = 0, worst = -1;
    double max_abs = 0, max_rel = 0, worst_excess = -1;
    for (int64_t i = 0; i < n; i++) {
        double r = ref[i], v = got[i];
        bool same = r == v || (isnan(r) && isnan(v));
        double d = same ? 0.0 : fabs(v - r);
        if (isnan(d)) d = INFINITY;
        double lim = tol.atol + tol.rtol * fabs(r);
        if (d > max_abs) max_abs = d;
        if (r != 0 && d / fabs(r) > max_rel) max_rel = d / fabs(r);
        if (!same && !(d <= lim)) {
            bad++;
            if (d - lim > worst_excess) {
                worst_excess = d - lim;
                worst = i;
            }
        }
    }
    /* EXACT also asks for the same bits (-0 vs +0 and NaN payloads aside, equal floats are equal bits) */
    printf("gpu-compare %-24s %-26s n %-7lld max_abs %.2e max_rel %.2e (atol %.0e rtol %.0e) %s\n", op, what, (long long)n, max_abs, max_rel,
           tol.atol, tol.rtol, bad ? "FAIL" : "ok");
    fflush(stdout);
    if (bad)
        cr_expect(false, "%s %s: %lld of %lld elements outside |gpu - cpu| <= %g + %g |cpu|; worst at [%lld]: cpu %.9g, gpu %.9g", op, what,
                  (long long)bad, (long long)n, tol.atol, tol.rtol, (long long)worst, ref[worst], got[worst]);
    return bad == 0;
}

static int64_t numel_of(const optim_param *p) {
    int64_t n = 1;
    for (int i = 0; i < p->ndim; i++) n *= p->shape[i];
    return n;
}

/* 1-D sizes 1, 7, 1000, 100003, a 2-D matrix, two expert blocks of E = 4 (2-D and 1-D units), a [1, 40] row and a
 * frozen matrix. */
#define E_BLOCK 4
#define P1(nm, n, dec) {.name = (nm), .ndim = 1, .shape = {(n)}, .decay = (dec)}
static const optim_param PARAMS[] = {
    P1("p1", 1, true),
    P1("p7", 7, false),
    P1("p1000", 1000, true),
    P1("p100003", 100003, true),
    {.name = "mat", .ndim = 2, .shape = {37, 29}, .decay = true},
    {.name = "experts.wi", .ndim = 3, .shape = {E_BLOCK, 17, 23}, .decay = true, .batch_dims = 1},
    {.name = "experts.bias", .ndim = 2, .shape = {E_BLOCK, 9}, .decay = false, .batch_dims = 1},
    {.name = "row1", .ndim = 2, .shape = {1, 40}, .decay = false},
    {.name = "frozen", .ndim = 2, .shape = {5, 6}, .decay = true, .frozen = true},
};
#define N_PARAMS ((int)(sizeof PARAMS / sizeof PARAMS[0]))
#define P_SMALL 1   /* p7: idle at step 3 */
#define P_BIG 3     /* p100003 */
#define P_WI 5
#define P_BIAS 6
#define P_FROZEN 8
#define IDLE_ALWAYS 1 /* the expert of both blocks that never sees a token */

/* Offsets (padded to 16 floats, as a model's layout might not be) and the total. */
static int64_t layout(optim_param *p) {
    int64_t off = 0;
    for (int i = 0; i < N_PARAMS; i++) {
        p[i] = PARAMS[i];
        p[i].offset = off;
        off += (numel_of(&p[i]) + 15) & ~(int64_t)15;
    }
    return off;
}

/* The units stepped at step t (1-based): all, less expert IDLE_ALWAYS of each block, expert t % E of each block, and
 * p7 at step 3. */
static void active_at(const optim *o, int t, uint8_t *active) {
    memset(active, 1, (size_t)optim_unit_count(o));
    for (int i = P_WI; i <= P_BIAS; i++) {
        active[optim_unit_first(o, i) + IDLE_ALWAYS] = 0;
        active[optim_unit_first(o, i) + t % E_BLOCK] = 0;
    }
    if (t == 3) active[optim_unit_first(o, P_SMALL)] = 0;
}

static void compare_states(const char *op, optim *cpu, optim *gpu, gtol m_tol, bool adafactor) {
    optim_state_to_host(gpu);
    cr_assert_eq(optim_state_count(gpu), optim_state_count(cpu), "%s: the two optimizers hold different state", op);
    for (int j = 0; j < optim_state_count(cpu); j++) {
        const char *name, *gname;
        float *data, *gdata;
        int64_t numel, gnumel;
        optim_state_get(cpu, j, &name, &data, &numel);
        optim_state_get(gpu, j, &gname, &gdata, &gnumel);
        cr_assert(!strcmp(name, gname) && numel == gnumel, "%s: state %d is %s [%lld] on the CPU, %s [%lld] on the GPU", op, j, name,
                  (long long)numel, gname, (long long)gnumel);
        /* AdamW: everything exact; Adafactor: the second moments exact, exp_avg within m_tol */
        const char *leaf = strrchr(name, '/');
        bool m = leaf && !strcmp(leaf + 1, "exp_avg");
        cmp_f32(op, name, data, gdata, numel, adafactor && m ? m_tol : EXACT);
    }
    const int64_t *cs = optim_step_counts(cpu), *gs = optim_step_counts(gpu);
    int64_t diff = 0;
    for (int64_t u = 0; u < optim_unit_count(cpu); u++) diff += cs[u] != gs[u];
    cr_expect_eq(diff, 0, "%s: %lld units with different step counts", op, (long long)diff);
}

/* Runs 5 steps on both devices and compares everything. */
static void run_and_compare(const char *op, optim_config cfg, gtol w_tol, gtol m_tol, uint64_t seed) {
    optim_param p[N_PARAMS];
    int64_t total = layout(p);
    float *w = calloc((size_t)total, sizeof(float)), *g = calloc((size_t)total, sizeof(float)), *w0 = calloc((size_t)total, sizeof(float));
    for (int i = 0; i < N_PARAMS; i++) fill_rand(w + p[i].offset, numel_of(&p[i]), seed + (uint64_t)i, -1.0, 1.0);
    memcpy(w0, w, sizeof(float) * (size_t)total);
    float *dw = dev_alloc(total), *dg = dev_alloc(total);
    to_dev(dw, w, total);
    optim *cpu = NULL, *gpu = NULL;
    sx_status s = optim_init(&cpu, &cfg, p, N_PARAMS);
    cr_assert(s.ok, "optim_init (CPU): %s", s.msg);
    cfg.device = AG_DEV_CUDA;
    s = optim_init(&gpu, &cfg, p, N_PARAMS);
    cr_assert(s.ok, "optim_init (CUDA): %s", s.msg);
    uint8_t *active = malloc((size_t)optim_unit_count(cpu));
    const double lrs[5] = {1e-3, 2e-3, 3e-3, 2.5e-3, 1e-3}; /* a schedule */
    for (int t = 1; t <= 5; t++) {
        for (int i = 0; i < N_PARAMS; i++) {
            double mag = i % 3 == 0 ? 1e-3 : i % 3 == 1 ? 1.0 : 20.0; /* small, unit and large gradients */
            fill_rand(g + p[i].offset, numel_of(&p[i]), 1000 * seed + 97 * (uint64_t)t + (uint64_t)i, -mag, mag);
        }
        to_dev(dg, g, total);
        active_at(cpu, t, active);
        optim_step(cpu, w, g, lrs[t - 1], active);
        optim_step(gpu, dw, dg, lrs[t - 1], active);
    }
    ag_cuda_synchronize("test_gpu_optim");
    float *hw = from_dev(dw, total);
    for (int i = 0; i < N_PARAMS; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s/weight", p[i].name);
        cmp_f32(op, what, w + p[i].offset, hw + p[i].offset, numel_of(&p[i]), p[i].frozen ? EXACT : w_tol);
    }
    /* the expert that never stepped and the frozen parameter keep their first weights, bit for bit */
    for (int i = P_WI; i <= P_BIAS; i++) {
        int64_t per = numel_of(&p[i]) / E_BLOCK, at = p[i].offset + IDLE_ALWAYS * per;
        cmp_f32(op, i == P_WI ? "idle expert (wi) unchanged" : "idle expert (bias) unchanged", w0 + at, hw + at, per, EXACT);
    }
    cmp_f32(op, "frozen unchanged", w0 + p[P_FROZEN].offset, hw + p[P_FROZEN].offset, numel_of(&p[P_FROZEN]), EXACT);
    cr_expect_eq(optim_step_counts(gpu)[optim_unit_first(gpu, P_WI) + IDLE_ALWAYS], 0, "an idle expert's step count advanced");
    cr_expect_eq(optim_step_counts(gpu)[optim_unit_first(gpu, P_SMALL)], 4, "p7 is stepped at 4 of the 5 steps");
    compare_states(op, cpu, gpu, m_tol, cfg.kind == OPTIM_ADAFACTOR);
    free(hw);
    free(active);
    optim_free(cpu);
    optim_free(gpu);
    ag_cuda_free(dw);
    ag_cuda_free(dg);
    free(w);
    free(w0);
    free(g);
}

/* ---- AdamW ---------------------------------------------------------------------------------------------------------- */

Test(gpu_optim, adamw_five_steps_bit_identical) {
    GPU_OR_SKIP("gpu_optim::adamw_five_steps_bit_identical");
    optim_config c = {.kind = OPTIM_ADAMW, .lr = 1e-3, .weight_decay = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    run_and_compare("adamw", c, EXACT, EXACT, 11);
}

Test(gpu_optim, adamw_no_decay_other_betas_bit_identical) {
    GPU_OR_SKIP("gpu_optim::adamw_no_decay_other_betas_bit_identical");
    optim_config c = {.kind = OPTIM_ADAMW, .lr = 1e-3, .weight_decay = 0.0, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6};
    run_and_compare("adamw-nodecay", c, EXACT, EXACT, 12);
}

/* ---- Adafactor ------------------------------------------------------------------------------------------------------ */

#define AF_TOL ((gtol){1e-7, 1e-6})

/* T5 / HF defaults: relative step, scale_parameter, no first moment, no weight decay. */
Test(gpu_optim, adafactor_t5_defaults) {
    GPU_OR_SKIP("gpu_optim::adafactor_t5_defaults");
    optim_config c = {.kind = OPTIM_ADAFACTOR,
                      .decay_rate = -0.8,
                      .clip_threshold = 1.0,
                      .eps1 = 1e-30,
                      .eps2 = 1e-3,
                      .relative_step = true,
                      .scale_parameter = true,
                      .warmup_init = false,
                      .beta1_adafactor = 0};
    run_and_compare("adafactor-t5", c, AF_TOL, AF_TOL, 21);
}

/* Fixed lr, no parameter scaling, a first moment, weight decay (on the parameters that take it), tighter clipping so
 * the clipping branch is taken, warmup_init off. */
Test(gpu_optim, adafactor_fixed_lr_beta1_weight_decay) {
    GPU_OR_SKIP("gpu_optim::adafactor_fixed_lr_beta1_weight_decay");
    optim_config c = {.kind = OPTIM_ADAFACTOR,
                      .weight_decay = 0.01,
                      .decay_rate = -0.8,
                      .clip_threshold = 0.5,
                      .eps1 = 1e-30,
                      .eps2 = 1e-3,
                      .relative_step = false,
                      .scale_parameter = false,
                      .beta1_adafactor = 0.9};
    run_and_compare("adafactor-beta1", c, AF_TOL, AF_TOL, 22);
}

/* relative_step with warmup_init and scale_parameter, plus a first moment. */
Test(gpu_optim, adafactor_warmup_init_scaled_beta1) {
    GPU_OR_SKIP("gpu_optim::adafactor_warmup_init_scaled_beta1");
    optim_config c = {.kind = OPTIM_ADAFACTOR,
                      .weight_decay = 0.1,
                      .decay_rate = -0.8,
                      .clip_threshold = 1.0,
                      .eps1 = 1e-30,
                      .eps2 = 1e-3,
                      .relative_step = true,
                      .scale_parameter = true,
                      .warmup_init = true,
                      .beta1_adafactor = 0.5};
    run_and_compare("adafactor-warmup", c, AF_TOL, AF_TOL, 23);
}

/* ---- the step's gradient norm and clipping -------------------------------------------------------------------------- */

/* The two sets' sums on the device against the CPU's, within 1e-12 relative (NaN and Inf must agree in kind). */
static void expect_sums(const char *what, const float *g, const float *dg, const optim_span *spans, const int *set, int ns) {
    double want[2], got[2];
    optim_sumsq(AG_DEV_CPU, g, spans, set, ns, 2, want);
    optim_sumsq(AG_DEV_CUDA, dg, spans, set, ns, 2, got);
    for (int k = 0; k < 2; k++) {
        bool ok = isfinite(want[k]) ? fabs(got[k] - want[k]) <= 1e-12 * want[k] : (isnan(want[k]) ? isnan(got[k]) : got[k] == want[k]);
        printf("gpu-compare %-24s %-26s set %d cpu %.17g gpu %.17g (rtol 1e-12) %s\n", "grad-norm", what, k, want[k], got[k], ok ? "ok" : "FAIL");
        cr_expect(ok, "%s, set %d: sum of squares cpu %.17g, gpu %.17g", what, k, want[k], got[k]);
    }
}

Test(gpu_optim, grad_norm_and_clipping_match_the_cpu) {
    GPU_OR_SKIP("gpu_optim::grad_norm_and_clipping_match_the_cpu");
    optim_param p[N_PARAMS];
    int64_t total = layout(p);
    optim_span spans[N_PARAMS];
    int set[N_PARAMS], ns = 0;
    for (int i = 0; i < N_PARAMS; i++)
        if (!p[i].frozen) {
            spans[ns] = (optim_span){p[i].offset, numel_of(&p[i])};
            set[ns++] = p[i].batch_dims; /* dense 0, expert blocks 1: the step's two parts of the norm */
        }
    float *g = calloc((size_t)total, sizeof(float));
    for (int i = 0; i < N_PARAMS; i++) fill_rand(g + p[i].offset, numel_of(&p[i]), 500 + (uint64_t)i, -3.0, 3.0);
    float *dg = dev_alloc(total);
    to_dev(dg, g, total);
    expect_sums("dense + experts", g, dg, spans, set, ns);
    /* every span in set 0 (set NULL) is the sum of the two sets; no spans gives zeros; one element its square */
    double all = -1, parts[2], none[2] = {-1, -1}, one = -1;
    optim_sumsq(AG_DEV_CUDA, dg, spans, NULL, ns, 1, &all);
    optim_sumsq(AG_DEV_CUDA, dg, spans, set, ns, 2, parts);
    cr_expect(fabs(all - (parts[0] + parts[1])) <= 1e-12 * all, "set NULL: %.17g, the two sets: %.17g", all, parts[0] + parts[1]);
    optim_sumsq(AG_DEV_CUDA, dg, spans, set, 0, 2, none);
    cr_expect(none[0] == 0 && none[1] == 0, "no spans: %g %g", none[0], none[1]);
    optim_sumsq(AG_DEV_CUDA, dg, &(optim_span){p[0].offset, 1}, NULL, 1, 1, &one);
    cr_expect_eq(one, (double)g[p[0].offset] * g[p[0].offset], "sum of squares of one element");

    /* clipping: the same float factor, bit for bit, only inside the spans (the frozen parameter untouched) */
    float c = (float)(1.0 / 3.0);
    optim_scale(AG_DEV_CPU, g, spans, ns, c);
    optim_scale(AG_DEV_CUDA, dg, spans, ns, c);
    float *h = from_dev(dg, total);
    cmp_f32("clip", "all parameters", g, h, total, EXACT);
    free(h);

    /* non-finite values make their set's sum non-finite (the step's check), values outside the spans do not */
    float nan = NAN, inf = INFINITY, ninf = -INFINITY, fine = 1.0f;
    to_dev(dg + p[P_FROZEN].offset + 7, &nan, 1);
    g[p[P_FROZEN].offset + 7] = nan;
    expect_sums("NaN outside the spans", g, dg, spans, set, ns);
    to_dev(dg + p[P_BIG].offset + 100002, &nan, 1);
    g[p[P_BIG].offset + 100002] = nan;
    expect_sums("NaN at a span's end", g, dg, spans, set, ns);
    to_dev(dg + p[P_BIG].offset + 100002, &fine, 1);
    g[p[P_BIG].offset + 100002] = fine;
    to_dev(dg + p[0].offset, &ninf, 1);
    g[p[0].offset] = ninf;
    to_dev(dg + p[P_WI].offset + 17 * 23 + 5, &inf, 1);
    g[p[P_WI].offset + 17 * 23 + 5] = inf;
    expect_sums("-Inf dense, +Inf expert", g, dg, spans, set, ns);
    optim_sumsq(AG_DEV_CUDA, dg, spans, set, ns, 2, parts);
    cr_expect(isinf(parts[0]) && isinf(parts[1]), "an infinite gradient must make its part of the norm infinite: %g %g", parts[0], parts[1]);
    ag_cuda_free(dg);
    free(g);
}

/* ---- one whole training step on the device against the CPU ---------------------------------------------------------
 * configs/models/tiny-switch.json without dropout, expert capacity 2 (drops; with 4 experts and 6 decoder tokens some
 * expert is often idle), one expert frozen by train.freeze, two micro-batches of one row, AdamW with weight decay and
 * clipping at STEP_CLIP, STEPS steps on both devices from the same weights. Tolerances:
 *  - step 1's loss within 1e-5 relative (the same weights: tests/gpu/test_gpu_model.c's forward tolerance); a later
 *    step's loss within that plus 2 ||g||_1 max|w_gpu - w_cpu| (the first-order change of the loss with the weights
 *    the two runs hold, doubled for the second-order rest; ||g||_1 from the CPU's gradient of that step);
 *  - the gradient norm within 1e-4 relative (the gradients' tolerance in test_gpu_model.c);
 *  - every weight within W_ATOL = 1e-5 absolute after every step. AdamW with eps = 1 makes the update
 *    lr m_hat / (sqrt(v_hat) + 1) Lipschitz in each gradient with constant <= 2 lr for |g| <= 0.5 (clipping to a
 *    norm of 0.5 bounds every element), so the gradients' agreement, 1e-4 |g| + 1e-5 max|g| <= 5.5e-5, moves a weight
 *    by <= 1.1e-6 per step, plus two float ulps of the weight (1.2e-7); three steps give 3.7e-6, and W_ATOL leaves
 *    room for the gradients' change with the weights. (With eps = 1e-8 the update is sign-like: a near-zero
 *    gradient that rounds the other way flips a weight by 2 lr, a fair difference no tolerance could tell from a bug.)
 *    The CPU's weights must move by more than 10 W_ATOL, or the comparison says nothing;
 *  - routing counts, step counts, the frozen expert's weights: exact. */
#define STEP_S 5
#define STEP_T 3
#define STEPS 3
#define STEP_LR 1e-2
#define STEP_CLIP 0.5
#define W_ATOL 1e-5
#define FROZEN_EXPERT "decoder.block.1.layer.2.mlp.experts.expert_2.wi.weight"

/* Row b of the batch at example 'first': ids from the example's key; the second row padded at its end, one ignored
 * label in the first. */
static sx_status step_batch(void *user, uint64_t first, int B, int32_t *ids, int32_t *mask, int32_t *labels, int64_t *S, int64_t *T) {
    (void)user;
    for (int b = 0; b < B; b++) {
        ag_rng_key k = ag_rng_make(31, first + (uint64_t)b, 0);
        for (int j = 0; j < STEP_S; j++) {
            bool pad = (first + (uint64_t)b) % 2 == 1 && j == STEP_S - 1;
            mask[b * STEP_S + j] = !pad;
            ids[b * STEP_S + j] = pad ? 0 : 2 + (int32_t)(ag_rng_uniform(k, (uint64_t)j) * 60);
        }
        for (int j = 0; j < STEP_T; j++)
            labels[b * STEP_T + j] = (first + (uint64_t)b) % 2 == 0 && j == 1 ? -100 : 2 + (int32_t)(ag_rng_uniform(k, 100 + (uint64_t)j) * 60);
    }
    *S = STEP_S;
    *T = STEP_T;
    return sx_ok();
}

static void grad_l1(const model *m, void *user) {
    double s = 0;
    for (int64_t i = 0; i < m->n_floats; i++) s += fabs(m->g[i]);
    *(double *)user = s;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double d = 0;
    for (int64_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static void step_run_config(run_config *rc, const model_config *c) {
    run_config_defaults(rc);
    /* the defaults' AdamW (betas 0.9, 0.999) with idle experts skipped, and: */
    cr_assert(!strcmp(rc->optimizer, "adamw") && !strcmp(rc->idle_experts, "skip"), "run_config_defaults changed");
    rc->model = *c;
    snprintf(rc->freeze, sizeof rc->freeze, "%s", FROZEN_EXPERT);
    rc->lr = STEP_LR;
    rc->weight_decay = 0.01;
    rc->eps = 1.0;
    rc->grad_clip = STEP_CLIP;
    rc->batch_size = 2;
    rc->micro_batch_size = 1;
}

/* One step on both; the loss, norm and routing counts compared; returns max |w_gpu - w_cpu| after it. */
static double step_both(int k, train_step *tc, train_step *tg, model *mc, model *mg, double prev_diff) {
    train_step_stats sc, sg;
    double l1 = 0;
    sx_status s = train_step_run(tc, step_batch, NULL, k, STEP_LR, false, grad_l1, &l1, &sc);
    cr_assert(s.ok, "CPU step %d: %s", k, s.msg);
    s = train_step_run(tg, step_batch, NULL, k, STEP_LR, false, NULL, NULL, &sg);
    cr_assert(s.ok, "GPU step %d: %s", k, s.msg);
    ag_cuda_synchronize("test_gpu_optim: a training step");
    cr_assert(sc.finite && sg.finite, "step %d: non-finite (cpu %d, gpu %d)", k, sc.finite, sg.finite);
    if (k == 0) cr_assert(sc.grad_norm > STEP_CLIP, "step 0: norm %g must exceed the clip %g, or clipping is not tested", sc.grad_norm, STEP_CLIP);
    double ltol = 1e-5 * fabs(sc.loss) + 2 * l1 * prev_diff;
    printf("gpu-compare %-24s step %d loss cpu %.9g gpu %.9g (tol %.2e) norm cpu %.9g gpu %.9g (rtol 1e-4) %s\n", "train-step", k, sc.loss,
           sg.loss, ltol, sc.grad_norm, sg.grad_norm, fabs(sg.loss - sc.loss) <= ltol && fabs(sg.grad_norm - sc.grad_norm) <= 1e-4 * sc.grad_norm ? "ok" : "FAIL");
    cr_expect(fabs(sg.loss - sc.loss) <= ltol, "step %d: loss cpu %.9g gpu %.9g", k, sc.loss, sg.loss);
    cr_expect(fabs(sg.grad_norm - sc.grad_norm) <= 1e-4 * sc.grad_norm, "step %d: norm cpu %.9g gpu %.9g", k, sc.grad_norm, sg.grad_norm);
    cr_expect(sc.tokens == sg.tokens && sc.routed == sg.routed && sc.dropped == sg.dropped, "step %d: routing counts differ (dropped %lld vs %lld)", k,
              (long long)sc.dropped, (long long)sg.dropped);
    model_weights_to_host(mg);
    return max_abs_diff(mc->w, mg->w, mc->n_floats);
}

Test(gpu_optim, train_step_on_the_device_matches_the_cpu, .timeout = 600) {
    GPU_OR_SKIP("gpu_optim::train_step_on_the_device_matches_the_cpu");
    model_config c;
    sx_status s = model_config_load(SX_SOURCE_DIR "/configs/models/tiny-switch.json", &c);
    cr_assert(s.ok, "%s", s.msg);
    c.dropout_rate = 0;
    c.expert_capacity = 2;
    model mc, mg;
    cr_assert(model_init(&mc, &c).ok && model_init(&mg, &c).ok);
    model_init_weights(&mc, 1);
    model_init_weights(&mg, 1);
    float *w0 = malloc(sizeof(float) * (size_t)mc.n_floats);
    memcpy(w0, mc.w, sizeof(float) * (size_t)mc.n_floats);
    model_to_device(&mg, AG_DEV_CUDA);
    run_config rc;
    step_run_config(&rc, &c);
    par_ctx local;
    par_init_local(&local);
    train_step *tc = NULL, *tg = NULL;
    s = train_step_init(&tc, &mc, &rc, &local, STEP_S);
    cr_assert(s.ok, "%s", s.msg);
    s = train_step_init(&tg, &mg, &rc, &local, STEP_S);
    cr_assert(s.ok, "%s", s.msg);
    double diff = 0;
    for (int k = 0; k < STEPS; k++) {
        diff = step_both(k, tc, tg, &mc, &mg, diff);
        cr_expect(diff <= W_ATOL, "step %d: weights differ by %.3g > %g", k, diff, W_ATOL);
    }
    double moved = max_abs_diff(mc.w, w0, mc.n_floats);
    printf("gpu-compare %-24s weights moved by up to %.3g, gpu - cpu up to %.3g (atol %g) %s\n", "train-step", moved, diff, W_ATOL,
           diff <= W_ATOL && moved > 10 * W_ATOL ? "ok" : "FAIL");
    cr_expect(moved > 10 * W_ATOL, "the CPU's weights moved by %.3g only: the comparison at %g says nothing", moved, W_ATOL);
    for (int i = 0; i < mc.n_params; i++)
        cmp_f32("train-step", mc.params[i].name, mc.w + mc.params[i].offset, mg.w + mc.params[i].offset, mc.params[i].numel, (gtol){W_ATOL, 0});
    int e = -1, fi = model_find_param(&mc, FROZEN_EXPERT, &e);
    cr_assert(fi >= 0 && e >= 0, "no parameter %s", FROZEN_EXPERT);
    int64_t per = mc.params[fi].numel / mc.params[fi].n_experts, at = mc.params[fi].offset + (int64_t)e * per;
    cmp_f32("train-step", "frozen expert unchanged", w0 + at, mg.w + at, per, EXACT);
    const int64_t *cs = optim_step_counts(train_step_optim(tc)), *gs = optim_step_counts(train_step_optim(tg));
    int64_t units = optim_unit_count(train_step_optim(tc)), differ = 0, idle = 0;
    for (int64_t u = 0; u < units; u++) {
        differ += cs[u] != gs[u];
        idle += cs[u] > 0 && cs[u] < STEPS;
    }
    printf("gpu-compare %-24s %lld units, %lld skipped at some step (idle experts), %lld step counts differ %s\n", "train-step", (long long)units,
           (long long)idle, (long long)differ, differ ? "FAIL" : "ok");
    cr_expect_eq(differ, 0, "%lld units have different step counts (an idle expert stepped on one device only)", (long long)differ);
    train_step_free(tc);
    train_step_free(tg);
    model_free(&mc);
    model_free(&mg);
    free(w0);
}
