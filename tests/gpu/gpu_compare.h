/* The harness of the GPU suites: run one op (or a small graph) on the CPU table and on the CUDA table from the same
 * random inputs, seed both backward passes with the same random upstream gradient, and compare every output and
 * every input gradient with |gpu - cpu| <= atol + rtol |cpu|: one summary assertion per tensor (how many elements
 * fail, the worst one with both values, max abs and rel error), never one assertion per element.
 * Every test starts with GPU_OR_SKIP(): without a device it prints a visible "SKIPPED: ..." line (CTest's skip regex)
 * and skips. The tests also set SWITCHC_CUDA_SYNC=1, so a device fault is reported at the launch that caused it. */
#ifndef SX_TEST_GPU_COMPARE_H
#define SX_TEST_GPU_COMPARE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ag.h"
#include "autograd/ag_cuda.h"

#define GPU_OR_SKIP(name)                                                                                             \
    do {                                                                                                              \
        if (ag_cuda_device_count() == 0) {                                                                            \
            printf("SKIPPED: %s: no CUDA device (%s)\n", (name), ag_cuda_describe());                                 \
            fflush(stdout);                                                                                           \
            cr_skip_test("SKIPPED: no CUDA device (%s)", ag_cuda_describe());                                         \
        }                                                                                                             \
        setenv("SWITCHC_CUDA_SYNC", "1", 0);                                                                          \
    } while (0)

/* A tolerance and the reason for it, written beside each op's test. */
typedef struct {
    double atol, rtol;
} gtol;
#define EXACT ((gtol){0, 0})

/* ---- tensors ------------------------------------------------------------------------------------------------------ */

static inline ag_tensor *g_rand(ag_arena *a, uint64_t seed, double lo, double hi, int ndim, const int64_t *shape) {
    ag_tensor *t = ag_tensor_new(a, AG_F32, ndim, shape);
    ag_rng_key k = ag_rng_make(seed, 7, 11);
    for (int64_t i = 0; i < t->numel; i++) ag_set(t, i, lo + (hi - lo) * ag_rng_uniform(k, (uint64_t)i));
    return t;
}
static inline ag_tensor *g_index(ag_arena *a, int ndim, const int64_t *shape, const int32_t *vals) {
    ag_tensor *t = ag_tensor_new(a, AG_I32, ndim, shape);
    memcpy(t->data, vals, sizeof(int32_t) * (size_t)t->numel);
    return t;
}
#define G_RAND(a, seed, ...) g_rand((a), (seed), -1.0, 1.0, AG_NDIM(__VA_ARGS__), AG_SHAPE(__VA_ARGS__))
#define G_INDEX(a, vals, ...) g_index((a), AG_NDIM(__VA_ARGS__), AG_SHAPE(__VA_ARGS__), (vals))

/* ---- comparison --------------------------------------------------------------------------------------------------- */

/* ref on the CPU; got on either device (brought to the host). A NULL tensor reads as zeros of the other's shape (a
 * gradient the CPU never allocated because nothing flowed into it). Returns true when every element passes. */
static inline bool g_expect_close(const char *op, const char *what, const ag_tensor *ref, const ag_tensor *got, gtol tol) {
    ag_arena tmp;
    ag_arena_init(&tmp, "compare", 0);
    const ag_tensor *g = got && got->device != AG_DEV_CPU ? ag_tensor_to_host(&tmp, got) : got;
    const ag_tensor *shape = ref ? ref : g;
    bool ok = true;
    if (!shape) {
        ag_arena_free(&tmp);
        return true;
    }
    if (ref && g && (ref->numel != g->numel || ref->ndim != g->ndim)) {
        char s1[96], s2[96];
        cr_expect(false, "%s %s: shapes differ: cpu %s, gpu %s", op, what, ag_shape_str(ref, s1, sizeof s1), ag_shape_str(g, s2, sizeof s2));
        ag_arena_free(&tmp);
        return false;
    }
    int64_t n = shape->numel, bad = 0, worst = -1;
    double max_abs = 0, max_rel = 0, worst_excess = -1;
    for (int64_t i = 0; i < n; i++) {
        double r = ref ? ag_get(ref, i) : 0.0, v = g ? ag_get(g, i) : 0.0;
        bool same = r == v || (isnan(r) && isnan(v)); /* also equal infinities */
        double d = same ? 0.0 : fabs(v - r);
        if (isnan(d)) d = INFINITY; /* a NaN on one side only */
        bool pass = same || d <= tol.atol + tol.rtol * fabs(r);
        if (d > max_abs) max_abs = d;
        if (r != 0 && d / fabs(r) > max_rel) max_rel = d / fabs(r);
        double excess = d - (tol.atol + tol.rtol * fabs(r));
        if (!pass) bad++;
        if (!pass && excess > worst_excess) {
            worst_excess = excess;
            worst = i;
        }
    }
    printf("gpu-compare %-24s %-12s n %-7lld max_abs %.2e max_rel %.2e (atol %.0e rtol %.0e) %s\n", op, what, (long long)n, max_abs,
           max_rel, tol.atol, tol.rtol, bad ? "FAIL" : "ok");
    if (bad) {
        ok = false;
        cr_expect(false, "%s %s: %lld of %lld elements outside |gpu - cpu| <= %g + %g |cpu|; worst at [%lld]: cpu %.9g, gpu %.9g; max abs %.3g, max rel %.3g",
                  op, what, (long long)bad, (long long)n, tol.atol, tol.rtol, (long long)worst, ref ? ag_get(ref, worst) : 0.0,
                  g ? ag_get(g, worst) : 0.0, max_abs, max_rel);
    }
    ag_arena_free(&tmp);
    return ok;
}

/* ---- one op on both devices ------------------------------------------------------------------------------------------- */

typedef ag_tensor *(*g_op_fn)(ag_ctx *ctx, ag_tensor **in, const void *arg);

/* A CPU context and a CUDA context (same flags), each with its activation arena. */
typedef struct {
    ag_arena host_act, dev_act, dev_leaves;
    ag_ctx cpu, gpu;
} g_pair;

static inline void g_pair_init(g_pair *p, bool training) {
    ag_arena_init(&p->host_act, "cpu-activations", 1 << 20);
    ag_arena_init_device(&p->dev_act, "gpu-activations", 1 << 20, AG_DEV_CUDA);
    ag_arena_init_device(&p->dev_leaves, "gpu-leaves", 1 << 20, AG_DEV_CUDA);
    ag_ctx_init(&p->cpu, &p->host_act);
    ag_ctx_init(&p->gpu, &p->dev_act);
    cr_assert_eq(p->gpu.device, AG_DEV_CUDA, "a context on a device arena must run on the device");
    p->cpu.training = p->gpu.training = training;
}
static inline void g_pair_free(g_pair *p) {
    ag_ctx_free(&p->cpu);
    ag_ctx_free(&p->gpu);
    ag_arena_free(&p->host_act);
    ag_arena_free(&p->dev_act);
    ag_arena_free(&p->dev_leaves);
}

/* The device twins of host leaves (requires_grad copied, gradients cleared on both). */
static inline void g_to_device(g_pair *p, ag_tensor **host, ag_tensor **dev, int n) {
    for (int i = 0; i < n; i++) {
        host[i]->grad = NULL;
        dev[i] = ag_tensor_to_device(&p->dev_leaves, host[i]);
        dev[i]->requires_grad = host[i]->requires_grad;
    }
}

/* Forward on both, compare; when the output requires grad, backward from the same random seed on both and compare
 * the gradient of every input that requires grad. Returns true when everything passed. */
static inline bool g_check_op(const char *op, g_op_fn f, const void *arg, ag_tensor **in, int n_in, bool training, gtol fwd, gtol bwd) {
    g_pair p;
    g_pair_init(&p, training);
    ag_tensor *din[8];
    cr_assert(n_in <= 8);
    g_to_device(&p, in, din, n_in);
    ag_tensor *yc = f(&p.cpu, in, arg), *yg = f(&p.gpu, din, arg);
    cr_assert_eq(yg->device, AG_DEV_CUDA, "%s: the output of a CUDA context must live on the device", op);
    bool ok = g_expect_close(op, "forward", yc, yg, fwd);
    if (yc->requires_grad) {
        cr_assert(yg->requires_grad, "%s: the CPU output requires grad but the GPU one does not", op);
        /* bf16-representable values, so the mixed-precision tests (which round the incoming gradient to bf16 on the
         * device) see the same gradient as the CPU; still random in [-1, 1) for every other test */
        ag_tensor *seed = g_rand(&p.host_act, 4242, -1.0, 1.0, yc->ndim, yc->shape);
        for (int64_t i = 0; i < seed->numel; i++) ag_set(seed, i, ag_f32_from_bf16(ag_bf16_from_f32((float)ag_get(seed, i))));
        ag_backward_seed(&p.cpu, yc, seed);
        ag_backward_seed(&p.gpu, yg, seed);
        for (int i = 0; i < n_in; i++) {
            if (!in[i]->requires_grad) continue;
            char what[32];
            snprintf(what, sizeof what, "grad in[%d]", i);
            ok &= g_expect_close(op, what, in[i]->grad, din[i]->grad, bwd);
        }
    }
    g_pair_free(&p);
    return ok;
}

#endif
