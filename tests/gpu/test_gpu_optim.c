/* The optimizer step on device spans (autograd/cuda/k_optim.cu) against train/optim.c through its public API: the
 * same random weights and five steps of random gradients on both, then every weight and every state array compared.
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
 *   - Gradient norm: 1e-12 relative (double sums of up to ~10^5 terms in two different orders: error <= n * 2^-53
 *     ~ 1e-11 worst case, typically 1e-15); clipped gradients 2.5e-7 relative (the float clip factor comes from that
 *     norm and may round one ulp differently); untouched spans (frozen, or no clipping) EXACT.
 * SKIPPED (visibly) without a GPU. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/gpu/gpu_compare.h"
#include "train/optim.h"

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

/* The parameters of the tests: 1-D sizes 1, 7, 1000, 100003, a 2-D matrix and a 3-D expert block [E, F, D]. */
#define P1(nm, n, dec) {.name = (nm), .ndim = 1, .shape = {(n)}, .decay = (dec)}
static const optim_param PARAMS[] = {
    P1("p1", 1, true),
    P1("p7", 7, false),
    P1("p1000", 1000, true),
    P1("p100003", 100003, true),
    {.name = "mat", .ndim = 2, .shape = {37, 29}, .decay = true},
    {.name = "experts", .ndim = 3, .shape = {3, 17, 23}, .decay = true, .batch_dims = 1},
    {.name = "row1", .ndim = 2, .shape = {1, 40}, .decay = false},
};
#define N_PARAMS ((int)(sizeof PARAMS / sizeof PARAMS[0]))
_Static_assert(N_PARAMS <= 16, "dev_states holds 16 parameters");

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

enum { ST_M, ST_V, ST_ROW, ST_COL, ST_KINDS };
static int state_kind(const char *name) {
    const char *s = strrchr(name, '/');
    s = s ? s + 1 : name;
    if (!strcmp(s, "exp_avg_sq_row")) return ST_ROW;
    if (!strcmp(s, "exp_avg_sq_col")) return ST_COL;
    if (!strcmp(s, "exp_avg_sq")) return ST_V;
    if (!strcmp(s, "exp_avg")) return ST_M;
    cr_assert_fail("unknown optimizer state %s", name);
    return -1;
}

/* Device state arrays per parameter and kind, sized as the CPU's. */
typedef struct {
    float *d[16][ST_KINDS];
} dev_states;

static void alloc_states(const optim *o, dev_states *ds) {
    memset(ds, 0, sizeof *ds);
    for (int i = 0; i < optim_state_count(o); i++) {
        const char *name;
        float *data;
        int64_t numel;
        optim_state_get(o, i, &name, &data, &numel);
        ds->d[optim_state_param(o, i)][state_kind(name)] = dev_alloc(numel);
    }
}

static void free_states(dev_states *ds) {
    for (int i = 0; i < 16; i++)
        for (int k = 0; k < ST_KINDS; k++)
            if (ds->d[i][k]) ag_cuda_free(ds->d[i][k]);
}

/* Runs 5 steps on both and compares everything. */
static void run_and_compare(const char *op, const optim_config *cfg, gtol w_tol, gtol m_tol, uint64_t seed) {
    optim_param p[N_PARAMS];
    int64_t total = layout(p);
    float *w = calloc((size_t)total, sizeof(float)), *g = calloc((size_t)total, sizeof(float));
    for (int i = 0; i < N_PARAMS; i++) fill_rand(w + p[i].offset, numel_of(&p[i]), seed + (uint64_t)i, -1.0, 1.0);
    float *dw = dev_alloc(total), *dg = dev_alloc(total);
    to_dev(dw, w, total);
    optim *o = NULL;
    sx_status s = optim_init(&o, cfg, p, N_PARAMS);
    cr_assert(s.ok, "optim_init: %s", s.msg);
    dev_states ds;
    alloc_states(o, &ds);
    const double lrs[5] = {1e-3, 2e-3, 3e-3, 2.5e-3, 1e-3}; /* a schedule */
    for (int t = 1; t <= 5; t++) {
        for (int i = 0; i < N_PARAMS; i++) {
            double mag = i % 3 == 0 ? 1e-3 : i % 3 == 1 ? 1.0 : 20.0; /* small, unit and large gradients */
            fill_rand(g + p[i].offset, numel_of(&p[i]), 1000 * seed + 97 * (uint64_t)t + (uint64_t)i, -mag, mag);
        }
        to_dev(dg, g, total);
        optim_step(o, w, g, lrs[t - 1], NULL);
        for (int i = 0; i < N_PARAMS; i++) {
            float *wi = dw + p[i].offset, *gi = dg + p[i].offset;
            if (cfg->kind == OPTIM_ADAMW) {
                ag_cuda_adamw_step(wi, gi, ds.d[i][ST_M], ds.d[i][ST_V], numel_of(&p[i]), lrs[t - 1], cfg->beta1, cfg->beta2, cfg->eps,
                                   cfg->weight_decay, p[i].decay, t);
            } else {
                ag_cuda_adafactor_cfg ac = {
                    .lr = lrs[t - 1],
                    .weight_decay = cfg->weight_decay,
                    .decay = p[i].decay,
                    .beta1 = cfg->beta1_adafactor,
                    .decay_rate = cfg->decay_rate,
                    .clip_threshold = cfg->clip_threshold,
                    .eps1 = cfg->eps1,
                    .eps2 = cfg->eps2,
                    .relative_step = cfg->relative_step,
                    .scale_parameter = cfg->scale_parameter,
                    .warmup_init = cfg->warmup_init,
                };
                /* an expert block is E units, each stepped as its own 2-D weight (train/optim.c) */
                int64_t nu = p[i].batch_dims ? p[i].shape[0] : 1, un = numel_of(&p[i]) / nu;
                int und = p[i].ndim - p[i].batch_dims;
                const int64_t *ush = p[i].shape + p[i].batch_dims;
                int64_t R = und >= 2 ? ush[und - 2] : 0, C = und >= 2 ? ush[und - 1] : 0, ul = und >= 2 ? un / (R * C) : 0;
                for (int64_t k = 0; k < nu; k++) {
                    float *m = ds.d[i][ST_M] ? ds.d[i][ST_M] + k * un : NULL, *v = ds.d[i][ST_V] ? ds.d[i][ST_V] + k * un : NULL;
                    float *row = ds.d[i][ST_ROW] ? ds.d[i][ST_ROW] + k * ul * R : NULL, *col = ds.d[i][ST_COL] ? ds.d[i][ST_COL] + k * ul * C : NULL;
                    ag_cuda_adafactor_step(&ac, wi + k * un, gi + k * un, m, v, row, col, und, ush, t);
                }
            }
        }
    }
    ag_cuda_synchronize("test_gpu_optim");
    for (int i = 0; i < N_PARAMS; i++) {
        float *hw = from_dev(dw + p[i].offset, numel_of(&p[i]));
        char what[64];
        snprintf(what, sizeof what, "%s/weight", p[i].name);
        cmp_f32(op, what, w + p[i].offset, hw, numel_of(&p[i]), w_tol);
        free(hw);
    }
    for (int j = 0; j < optim_state_count(o); j++) {
        const char *name;
        float *data;
        int64_t numel;
        optim_state_get(o, j, &name, &data, &numel);
        int kind = state_kind(name), pi = optim_state_param(o, j);
        float *h = from_dev(ds.d[pi][kind], numel);
        /* AdamW: everything exact; Adafactor: the second moments exact, exp_avg within m_tol */
        gtol tol = cfg->kind == OPTIM_ADAFACTOR && kind == ST_M ? m_tol : EXACT;
        cmp_f32(op, name, data, h, numel, tol);
        free(h);
    }
    free_states(&ds);
    optim_free(o);
    ag_cuda_free(dw);
    ag_cuda_free(dg);
    free(w);
    free(g);
}

/* ---- AdamW ---------------------------------------------------------------------------------------------------------- */

Test(gpu_optim, adamw_five_steps_bit_identical) {
    GPU_OR_SKIP("gpu_optim::adamw_five_steps_bit_identical");
    optim_config c = {.kind = OPTIM_ADAMW, .lr = 1e-3, .weight_decay = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    run_and_compare("adamw", &c, EXACT, EXACT, 11);
}

Test(gpu_optim, adamw_no_decay_other_betas_bit_identical) {
    GPU_OR_SKIP("gpu_optim::adamw_no_decay_other_betas_bit_identical");
    optim_config c = {.kind = OPTIM_ADAMW, .lr = 1e-3, .weight_decay = 0.0, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6};
    run_and_compare("adamw-nodecay", &c, EXACT, EXACT, 12);
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
    run_and_compare("adafactor-t5", &c, AF_TOL, AF_TOL, 21);
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
    run_and_compare("adafactor-beta1", &c, AF_TOL, AF_TOL, 22);
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
    run_and_compare("adafactor-warmup", &c, AF_TOL, AF_TOL, 23);
}

/* ---- gradient norm, clipping, non-finite check ---------------------------------------------------------------------- */

Test(gpu_optim, grad_norm_clip_and_nonfinite_match_the_cpu) {
    GPU_OR_SKIP("gpu_optim::grad_norm_clip_and_nonfinite_match_the_cpu");
    optim_param p[N_PARAMS];
    int64_t total = layout(p);
    p[2].frozen = true; /* p1000 takes no part */
    ag_cuda_span spans[N_PARAMS];
    int ns = 0;
    for (int i = 0; i < N_PARAMS; i++)
        if (!p[i].frozen) spans[ns++] = (ag_cuda_span){p[i].offset, numel_of(&p[i])};
    float *g = calloc((size_t)total, sizeof(float)), *g0 = calloc((size_t)total, sizeof(float));
    for (int i = 0; i < N_PARAMS; i++) fill_rand(g + p[i].offset, numel_of(&p[i]), 500 + (uint64_t)i, -3.0, 3.0);
    memcpy(g0, g, sizeof(float) * (size_t)total);
    float *dg = dev_alloc(total);
    to_dev(dg, g, total);

    /* the norm */
    double want = optim_grad_norm(g, p, N_PARAMS), got = sqrt(ag_cuda_sumsq_spans(dg, spans, ns));
    printf("gpu-compare %-24s %-26s cpu %.17g gpu %.17g rel %.2e (rtol 1e-12) %s\n", "grad-norm", "norm", want, got, fabs(got - want) / want,
           fabs(got - want) <= 1e-12 * want ? "ok" : "FAIL");
    cr_expect(fabs(got - want) <= 1e-12 * want, "grad norm: cpu %.17g, gpu %.17g", want, got);
    /* a single span of one element, and an empty list */
    ag_cuda_span one = {p[0].offset, 1};
    cr_expect_eq(ag_cuda_sumsq_spans(dg, &one, 1), (double)g[p[0].offset] * g[p[0].offset], "sum of squares of one element");
    cr_expect_eq(ag_cuda_sumsq_spans(dg, spans, 0), 0.0, "no spans: 0");

    /* no clipping when max_norm is above the norm: nothing changes */
    double n1 = ag_cuda_clip_grad_norm_spans(dg, spans, ns, 10 * want);
    cr_expect(fabs(n1 - want) <= 1e-12 * want);
    float *h = from_dev(dg, total);
    cmp_f32("clip-noop", "all", g0, h, total, EXACT);
    free(h);

    /* clipping to a third of the norm */
    double max_norm = want / 3;
    double cn = optim_clip_grad_norm(g, p, N_PARAMS, max_norm);
    double gn = ag_cuda_clip_grad_norm_spans(dg, spans, ns, max_norm);
    cr_expect(fabs(gn - cn) <= 1e-12 * cn, "clip: returned norms cpu %.17g gpu %.17g", cn, gn);
    h = from_dev(dg, total);
    for (int i = 0; i < N_PARAMS; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s%s", p[i].name, p[i].frozen ? " (frozen)" : "");
        cmp_f32("clip", what, g + p[i].offset, h + p[i].offset, numel_of(&p[i]), p[i].frozen ? EXACT : (gtol){0, 2.5e-7});
    }
    free(h);
    double after = sqrt(ag_cuda_sumsq_spans(dg, spans, ns));
    cr_expect(fabs(after - max_norm) <= 1e-5 * max_norm, "after clipping the norm is max_norm: %g vs %g", after, max_norm);

    /* non-finite flag */
    cr_expect_not(ag_cuda_nonfinite_spans(dg, spans, ns), "finite gradients flagged as non-finite");
    float nan = NAN, inf = INFINITY, fine = 1.0f;
    /* a NaN in the frozen parameter, which the spans leave out: not flagged */
    to_dev(dg + p[2].offset + 500, &nan, 1);
    cr_expect_not(ag_cuda_nonfinite_spans(dg, spans, ns), "a NaN outside the spans was flagged");
    /* the last element of the largest span */
    to_dev(dg + p[3].offset + 100002, &nan, 1);
    cr_expect(ag_cuda_nonfinite_spans(dg, spans, ns), "a NaN at the end of a span was missed");
    cr_expect(isnan(ag_cuda_sumsq_spans(dg, spans, ns)), "a NaN gradient must make the norm NaN (the trainer's guard)");
    to_dev(dg + p[3].offset + 100002, &fine, 1);
    /* -Inf in the single-element parameter */
    float ninf = -inf;
    to_dev(dg + p[0].offset, &ninf, 1);
    cr_expect(ag_cuda_nonfinite_spans(dg, spans, ns), "-Inf in a one-element span was missed");
    cr_expect(isinf(ag_cuda_sumsq_spans(dg, spans, ns)), "an infinite gradient must make the norm infinite");
    to_dev(dg + p[0].offset, &fine, 1);
    /* +Inf inside the expert block */
    to_dev(dg + p[5].offset + 17 * 23 + 5, &inf, 1);
    cr_expect(ag_cuda_nonfinite_spans(dg, spans, ns), "+Inf in the expert block was missed");
    to_dev(dg + p[5].offset + 17 * 23 + 5, &fine, 1);
    cr_expect_not(ag_cuda_nonfinite_spans(dg, spans, ns), "the flag must be cleared between calls");

    ag_cuda_free(dg);
    free(g);
    free(g0);
}

/* The scaling kernel alone: x *= c bit for bit against the CPU's float multiply. */
Test(gpu_optim, scale_spans_bit_identical) {
    GPU_OR_SKIP("gpu_optim::scale_spans_bit_identical");
    int64_t n = 100003;
    float *x = malloc(sizeof(float) * (size_t)n);
    fill_rand(x, n, 77, -5.0, 5.0);
    float *d = dev_alloc(n);
    to_dev(d, x, n);
    ag_cuda_span sp[2] = {{0, 7}, {1000, n - 1000}};
    float c = 0.3337f;
    ag_cuda_scale_spans(d, sp, 2, c);
    for (int64_t j = 0; j < 7; j++) x[j] *= c;
    for (int64_t j = 1000; j < n; j++) x[j] *= c;
    float *h = from_dev(d, n);
    cmp_f32("scale", "spans", x, h, n, EXACT);
    free(h);
    free(x);
    ag_cuda_free(d);
}
