/* A finite-difference gradient checker for the autograd tests: builds f(inputs) in f64, reduces it to a scalar
 * with fixed random weights (so every output element matters), and compares the tape's gradient of every input that
 * requires grad with central differences. One summary per input: the worst relative error. */
#ifndef SX_TEST_GRADCHECK_H
#define SX_TEST_GRADCHECK_H

#include <math.h>
#include <stdio.h>

#include "autograd/ag.h"

typedef ag_tensor *(*gc_fn)(ag_ctx *ctx, ag_tensor **in, void *user);

typedef struct {
    double max_rel;  /* max |analytic - numeric| / max(max |numeric|, floor) over each input, worst input */
    int worst_input;
    int64_t worst_index;
} gc_result;

/* Deterministic test data from the project's RNG (no global state). */
static inline void gc_fill_uniform(ag_tensor *t, uint64_t seed, double lo, double hi) {
    ag_rng_key k = ag_rng_make(seed, 0, 77);
    for (int64_t i = 0; i < t->numel; i++) ag_set(t, i, lo + (hi - lo) * ag_rng_uniform(k, (uint64_t)i));
}

static inline double gc_eval(ag_ctx *ctx, gc_fn f, ag_tensor **in, void *user, const ag_tensor *w) {
    bool g = ctx->grad_enabled;
    ctx->grad_enabled = false;
    ag_tensor *y = f(ctx, in, user);
    ctx->grad_enabled = g;
    double s = 0;
    for (int64_t i = 0; i < y->numel; i++) s += ag_get(y, i) * ag_get(w, i);
    return s;
}

/* n_in inputs (f64 tensors; those with requires_grad are checked). h: the finite-difference step. */
static inline gc_result gc_check(gc_fn f, ag_tensor **in, int n_in, void *user, double h, bool training) {
    ag_arena act;
    ag_arena_init(&act, "gradcheck", 1 << 20);
    ag_ctx ctx;
    ag_ctx_init(&ctx, &act);
    ctx.training = training;
    for (int i = 0; i < n_in; i++) in[i]->grad = NULL;
    ag_tensor *y = f(&ctx, in, user);
    ag_arena warena;
    ag_arena_init(&warena, "gradcheck-weights", 1 << 16);
    ag_tensor *w = ag_tensor_new(&warena, AG_F64, y->ndim, y->shape);
    gc_fill_uniform(w, 999, -1.0, 1.0);
    ag_backward_seed(&ctx, y, w);
    /* Keep the analytic gradients before the arena is reused by the numeric evaluations. */
    ag_tensor *ana[AG_MAX_INPUTS * 2] = {0};
    for (int i = 0; i < n_in; i++) {
        if (!in[i]->requires_grad) continue;
        ana[i] = ag_tensor_new(&warena, AG_F64, in[i]->ndim, in[i]->shape);
        if (in[i]->grad)
            ag_copy(ana[i], in[i]->grad);
        else
            ag_fill(ana[i], 0.0);
    }
    gc_result r = {0, -1, -1};
    for (int i = 0; i < n_in; i++) {
        if (!in[i]->requires_grad) continue;
        double max_err = 0, max_num = 0;
        int64_t worst = -1;
        for (int64_t j = 0; j < in[i]->numel; j++) {
            double x0 = ag_get(in[i], j);
            ag_ctx_reset(&ctx);
            ag_set(in[i], j, x0 + h);
            double fp = gc_eval(&ctx, f, in, user, w);
            ag_ctx_reset(&ctx);
            ag_set(in[i], j, x0 - h);
            double fm = gc_eval(&ctx, f, in, user, w);
            ag_set(in[i], j, x0);
            double num = (fp - fm) / (2 * h), a = ag_get(ana[i], j);
            if (fabs(num) > max_num) max_num = fabs(num);
            if (fabs(a - num) > max_err) {
                max_err = fabs(a - num);
                worst = j;
            }
        }
        double rel = max_err / fmax(max_num, 1e-8);
        if (rel > r.max_rel || r.worst_input < 0) {
            r.max_rel = rel;
            r.worst_input = i;
            r.worst_index = worst;
        }
    }
    ag_ctx_free(&ctx);
    ag_arena_free(&act);
    ag_arena_free(&warena);
    for (int i = 0; i < n_in; i++) in[i]->grad = NULL;
    return r;
}

#endif
