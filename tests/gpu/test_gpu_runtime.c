/* The CUDA backend's runtime against the CPU: device arenas (bump allocation, reset-merge, no cudaMalloc in steady
 * state), copies and conversions between devices, element access, the Philox generator and the dropout mask bit
 * for bit, index checks and device mismatches that must abort, and a small graph (embedding, rmsnorm, FFN with
 * dropout, attention-like softmax, MoE-like gather / grouped matmul / scatter, cross-entropy with a z-loss) whose
 * loss and parameter gradients must match the CPU. SKIPPED (visibly) without a GPU. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/gpu/gpu_compare.h"

static ag_arena L;
static void setup(void) { ag_arena_init(&L, "leaves", 1 << 20); }
static void teardown(void) { ag_arena_free(&L); }
TestSuite(gpu_runtime, .init = setup, .fini = teardown);

/* ---- arenas ----------------------------------------------------------------------------------------------------------- */

Test(gpu_runtime, device_arena_reset_merges_and_steady_state_allocates_nothing) {
    GPU_OR_SKIP("gpu_runtime::device_arena_reset_merges_and_steady_state_allocates_nothing");
    ag_arena a;
    ag_arena_init_device(&a, "dev", 4096, AG_DEV_CUDA);
    cr_assert_eq(a.device, AG_DEV_CUDA);
    cr_assert_not_null(a.host, "a device arena keeps its tensor headers in a host arena");
    int allocs0 = a.n_system_allocs;
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < 5; i++) {
            ag_tensor *t = ag_zeros(&a, AG_F32, 1000, 100 + i); /* ~400 KB each: several blocks on the first pass */
            cr_assert_eq(t->device, AG_DEV_CUDA);
            cr_assert_eq(((uintptr_t)t->data) % 64, 0, "device tensors are 64-byte aligned");
            cr_assert_eq(ag_get(t, t->numel - 1), 0.0, "ag_zeros on the device is zeroed");
        }
        int before = a.n_system_allocs;
        ag_arena_reset(&a);
        if (pass == 0) cr_expect_gt(before, allocs0, "the first pass must have grown the arena");
        if (pass == 0) cr_expect_eq(a.n_system_allocs, before + 1, "reset merges the blocks into one");
        if (pass > 0) cr_expect_eq(a.n_system_allocs, before, "pass %d allocated from the system (cudaMalloc) in steady state", pass);
        cr_expect_eq(a.used_total, 0u);
    }
    ag_arena_free(&a);
}

/* ---- copies, conversions, element access -------------------------------------------------------------------------------- */

Test(gpu_runtime, copies_roundtrip_every_dtype_and_convert_on_device) {
    GPU_OR_SKIP("gpu_runtime::copies_roundtrip_every_dtype_and_convert_on_device");
    ag_arena d;
    ag_arena_init_device(&d, "dev", 1 << 20, AG_DEV_CUDA);
    const ag_dtype dts[] = {AG_F32, AG_F64, AG_BF16, AG_I32, AG_I64};
    for (int k = 0; k < 5; k++) {
        ag_tensor *h = ag_new(&L, dts[k], 3, 37);
        for (int64_t i = 0; i < h->numel; i++) ag_set(h, i, (double)(i * 7 % 101) - 50.25);
        ag_tensor *g = ag_tensor_to_device(&d, h);
        cr_assert_eq(g->device, AG_DEV_CUDA);
        ag_tensor *back = ag_tensor_to_host(&L, g);
        cr_expect_eq(memcmp(back->data, h->data, (size_t)h->numel * ag_dtype_size(h->dtype)), 0, "%s: host -> device -> host changed bits",
                     ag_dtype_name(dts[k]));
        /* element access and fill on the device */
        ag_set(g, 5, 3.0);
        cr_expect_eq(ag_get(g, 5), 3.0, "%s: ag_set/ag_get on the device", ag_dtype_name(dts[k]));
        ag_fill(g, 2.0);
        cr_expect_eq(ag_get(g, h->numel - 1), 2.0, "%s: ag_fill(2) on the device", ag_dtype_name(dts[k]));
        ag_fill(g, 0.0);
        cr_expect_eq(ag_get(g, 17), 0.0, "%s: ag_fill(0) on the device", ag_dtype_name(dts[k]));
    }
    /* f32 -> bf16 on the device, host -> device with a conversion, device -> host with a conversion */
    ag_tensor *x = g_rand(&L, 3, -1e3, 1e3, 1, AG_SHAPE(1001));
    ag_tensor *want = ag_new(&L, AG_BF16, 1001);
    ag_copy(want, x); /* the CPU's rounding */
    ag_tensor *gx = ag_tensor_to_device(&d, x), *gb = ag_new(&d, AG_BF16, 1001);
    ag_copy(gb, gx);
    ag_tensor *hb = ag_tensor_to_host(&L, gb);
    cr_expect_eq(memcmp(hb->data, want->data, 2 * 1001), 0, "f32 -> bf16 on the device differs from the CPU's rounding");
    ag_tensor *gb2 = ag_new(&d, AG_BF16, 1001);
    ag_copy(gb2, x); /* host f32 -> device bf16 */
    ag_tensor *hb2 = ag_tensor_to_host(&L, gb2);
    cr_expect_eq(memcmp(hb2->data, want->data, 2 * 1001), 0, "host f32 -> device bf16 differs");
    ag_tensor *hf = ag_new(&L, AG_F32, 1001);
    ag_copy(hf, gb); /* device bf16 -> host f32 */
    int bad = 0;
    for (int i = 0; i < 1001; i++) bad += ag_get(hf, i) != ag_get(want, i);
    cr_expect_eq(bad, 0, "device bf16 -> host f32: %d elements differ", bad);
    ag_arena_free(&d);
}

/* ---- randomness: bit for bit ---------------------------------------------------------------------------------------- */

Test(gpu_runtime, philox_is_bit_identical_to_the_cpu) {
    GPU_OR_SKIP("gpu_runtime::philox_is_bit_identical_to_the_cpu");
    const ag_rng_key keys[] = {ag_rng_make(0, 0, 0), ag_rng_make(1234, 99, 7), ag_rng_make(~0ull, ~0ull, 3)};
    const uint64_t starts[] = {0, (1ull << 32) - 5, 0xfffffffffffff000ull};
    enum { N = 4099 };
    static uint32_t dev[4 * N];
    for (int k = 0; k < 3; k++)
        for (int s = 0; s < 3; s++) {
            ag_cuda_philox_host(keys[k], starts[s], N, dev);
            int64_t bad = 0, first = -1;
            for (int64_t i = 0; i < N; i++) {
                uint32_t o[4];
                ag_philox(keys[k], starts[s] + (uint64_t)i, o);
                if (memcmp(o, dev + 4 * i, 16) != 0) {
                    if (first < 0) first = i;
                    bad++;
                }
            }
            cr_expect_eq(bad, 0, "key %d, start %llu: %lld of %d Philox outputs differ (first at +%lld)", k, (unsigned long long)starts[s],
                         (long long)bad, N, (long long)first);
        }
}

Test(gpu_runtime, dropout_mask_is_bit_identical_to_the_cpu) {
    GPU_OR_SKIP("gpu_runtime::dropout_mask_is_bit_identical_to_the_cpu");
    g_pair p;
    g_pair_init(&p, true);
    const double rates[] = {0.1, 0.3, 0.5};
    for (int r = 0; r < 3; r++) {
        ag_tensor *x = g_rand(&L, 10 + r, -2, 2, 2, AG_SHAPE(3, 1001));
        ag_tensor *gx = ag_tensor_to_device(&p.dev_leaves, x);
        ag_rng_key key = ag_rng_make(77, 5 + r, 2);
        ag_tensor *yc = ag_dropout(&p.cpu, x, rates[r], key), *yg = ag_dropout(&p.gpu, gx, rates[r], key);
        ag_tensor *yh = ag_tensor_to_host(&p.host_act, yg);
        int64_t zeros = 0;
        for (int64_t i = 0; i < yc->numel; i++) zeros += ((float *)yc->data)[i] == 0.f;
        cr_expect_eq(memcmp(yh->data, yc->data, sizeof(float) * (size_t)yc->numel), 0, "rate %g: the GPU's dropout output differs from the CPU's",
                     rates[r]);
        cr_expect(zeros > 0 && zeros < yc->numel, "rate %g: %lld zeros of %lld", rates[r], (long long)zeros, (long long)yc->numel);
    }
    g_pair_free(&p);
}

/* ---- checks that must abort ------------------------------------------------------------------------------------------ */

/* body() runs in a child process (which alone touches CUDA: a context does not survive fork) with its stderr
 * captured; it must die of SIGABRT with a message containing 'needle'. No device: the child says so and the test
 * is SKIPPED. */
static void expect_fatal(const char *name, void (*body)(void), const char *needle) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork failed");
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        if (ag_cuda_device_count() == 0) _exit(77);
        setenv("SWITCHC_CUDA_SYNC", "1", 0);
        body();
        _exit(0);
    }
    close(fds[1]);
    char msg[4096];
    size_t len = 0;
    ssize_t r;
    while (len + 1 < sizeof msg && (r = read(fds[0], msg + len, sizeof msg - 1 - len)) > 0) len += (size_t)r;
    msg[len] = 0;
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
        printf("SKIPPED: %s: no CUDA device\n", name);
        fflush(stdout);
        cr_skip_test("SKIPPED: no CUDA device");
    }
    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: expected an abort (SIGABRT), got %s %d; stderr: %s", name,
              WIFSIGNALED(st) ? "signal" : "exit status", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), msg);
    cr_expect(strstr(msg, needle) != NULL, "%s: the message should contain '%s', got: %s", name, needle, msg);
}

static void bad_embedding(void) {
    g_pair p;
    g_pair_init(&p, false);
    const int32_t ids[4] = {0, 1, 11, 2};
    ag_tensor *w = ag_tensor_to_device(&p.dev_leaves, G_RAND(&L, 1, 11, 4));
    ag_tensor *idx = ag_tensor_to_device(&p.dev_leaves, G_INDEX(&L, ids, 4));
    ag_embedding(&p.gpu, w, idx);
}
Test(gpu_runtime, embedding_index_out_of_range_on_device_aborts) {
    expect_fatal("gpu_runtime::embedding_index_out_of_range_on_device_aborts", bad_embedding, "index 11 at position 2 outside [0, 11)");
}

static void bad_label(void) {
    g_pair p;
    g_pair_init(&p, false);
    const int32_t lab[3] = {0, -100, -3};
    ag_tensor *x = ag_tensor_to_device(&p.dev_leaves, G_RAND(&L, 1, 3, 5));
    ag_tensor *y = ag_tensor_to_device(&p.dev_leaves, G_INDEX(&L, lab, 3));
    ag_cross_entropy(&p.gpu, x, y);
}
Test(gpu_runtime, cross_entropy_label_out_of_range_on_device_aborts) {
    expect_fatal("gpu_runtime::cross_entropy_label_out_of_range_on_device_aborts", bad_label, "label -3 at row 2");
}

static void host_tensor_in_cuda_ctx(void) {
    g_pair p;
    g_pair_init(&p, false);
    ag_relu(&p.gpu, G_RAND(&L, 1, 3, 5));
}
Test(gpu_runtime, host_tensor_in_a_cuda_context_aborts) {
    expect_fatal("gpu_runtime::host_tensor_in_a_cuda_context_aborts", host_tensor_in_cuda_ctx, "lives on cpu but the context runs on cuda");
}

Test(gpu_runtime, index_checks_pass_valid_indices_on_device) {
    GPU_OR_SKIP("gpu_runtime::index_checks_pass_valid_indices_on_device");
    g_pair p;
    g_pair_init(&p, false);
    const int32_t v[5] = {-100, 0, 4, -100, 2};
    ag_tensor *idx = ag_tensor_to_device(&p.dev_leaves, G_INDEX(&L, v, 5));
    cr_expect_eq(ag_cuda_first_bad_index(idx, 0, 5, -100), -1);
    cr_expect_eq(ag_cuda_first_bad_index(idx, 0, 5, INT64_MIN), 0);
    cr_expect_eq(ag_cuda_first_bad_index(idx, 0, 4, -100), 2);
    g_pair_free(&p);
}

/* ---- a small graph: loss and every parameter gradient, and no cudaMalloc after the first step ----------------------- */

enum { P_EMB, P_NRM, P_W1, P_B1, P_W2, P_WE, P_WO, P_COUNT };
static const char *pnames[P_COUNT] = {"emb", "norm", "w1", "b1", "w2", "experts", "out"};

typedef struct {
    ag_tensor *p[P_COUNT];
    ag_tensor *ids, *labels, *mask, *perm, *offsets; /* offsets: host i64 */
} graph_in;

/* B = 2, S = 5, D = 12, F = 20, V = 19, E = 3 */
static ag_tensor *graph(ag_ctx *c, const graph_in *g, uint64_t step) {
    ag_tensor *h = ag_embedding(c, g->p[P_EMB], g->ids);                     /* [2, 5, 12] */
    ag_tensor *n = ag_rmsnorm(c, h, g->p[P_NRM], 1e-6);
    ag_tensor *u = ag_gelu_tanh(c, ag_add(c, ag_matmul(c, n, g->p[P_W1], false, false), g->p[P_B1])); /* [2, 5, 20] */
    u = ag_dropout(c, u, 0.1, ag_rng_make(3, step, 1));
    h = ag_add(c, h, ag_matmul(c, u, g->p[P_W2], false, false));            /* [2, 5, 12] */
    ag_tensor *s = ag_scale(c, ag_matmul(c, h, h, false, true), 0.3);       /* [2, 5, 5] */
    ag_tensor *a = ag_softmax(c, s, NULL, g->mask);
    h = ag_add(c, h, ag_matmul(c, a, h, false, false));
    ag_tensor *flat = ag_reshapev(c, h, 10, 12);
    ag_tensor *xs = ag_gather_rows(c, flat, g->perm);
    ag_tensor *ys = ag_relu(c, ag_grouped_matmul(c, xs, g->p[P_WE], g->offsets, true));
    flat = ag_add(c, flat, ag_scatter_rows(c, ys, g->perm, 10));
    ag_tensor *logits = ag_matmul(c, flat, g->p[P_WO], false, true);        /* [10, 19] */
    ag_tensor *ce = ag_cross_entropy(c, logits, g->labels);
    ag_tensor *z = ag_scale(c, ag_sum(c, ag_square(c, ag_logsumexp(c, logits))), 1e-3 / 10); /* mean of 10 rows */
    return ag_add(c, ce, z);
}

static void graph_inputs(ag_arena *host, graph_in *g) {
    const int64_t shapes[P_COUNT][3] = {{19, 12}, {12}, {12, 20}, {20}, {20, 12}, {3, 12, 12}, {19, 12}};
    const int nd[P_COUNT] = {2, 1, 2, 1, 2, 3, 2};
    for (int i = 0; i < P_COUNT; i++) {
        g->p[i] = g_rand(host, 200 + i, i == P_NRM ? 0.5 : -0.5, i == P_NRM ? 1.5 : 0.5, nd[i], shapes[i]);
        g->p[i]->requires_grad = true;
        g->p[i]->name = pnames[i];
    }
    const int32_t ids[10] = {1, 5, 18, 5, 0, 7, 7, 2, 11, 3}, labels[10] = {4, 0, -100, 18, 3, 3, 9, -100, 1, 6};
    const int32_t perm[10] = {3, 9, 0, 4, 1, 8, 2, 7, 5, 6};
    g->ids = G_INDEX(host, ids, 2, 5);
    g->labels = G_INDEX(host, labels, 10);
    g->perm = G_INDEX(host, perm, 10);
    g->mask = ag_zeros(host, AG_F32, 1, 5, 5); /* causal */
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++) ag_set(g->mask, i * 5 + j, -3.4028234663852886e38);
    g->offsets = ag_new(host, AG_I64, 4);
    const int64_t off[4] = {0, 3, 3, 10};
    memcpy(g->offsets->data, off, sizeof off);
}

/* fp32 end to end through ~25 ops: each a few ulp, some sums in another order: the loss within 1e-5 relative, the
 * gradients within atol 1e-5 + rtol 1e-4 (gradients of O(0.01..1) after chains of reductions). */
Test(gpu_runtime, small_graph_matches_the_cpu_and_reaches_steady_state) {
    GPU_OR_SKIP("gpu_runtime::small_graph_matches_the_cpu_and_reaches_steady_state");
    g_pair p;
    g_pair_init(&p, true);
    graph_in hc, gd;
    graph_inputs(&L, &hc);
    gd = hc;
    for (int i = 0; i < P_COUNT; i++) {
        gd.p[i] = ag_tensor_to_device(&p.dev_leaves, hc.p[i]);
        gd.p[i]->requires_grad = true;
        /* parameters keep their gradients outside the activation arena, zeroed once per step */
        hc.p[i]->grad = ag_tensor_zeros(&L, AG_F32, hc.p[i]->ndim, hc.p[i]->shape);
        gd.p[i]->grad = ag_tensor_zeros(&p.dev_leaves, AG_F32, hc.p[i]->ndim, hc.p[i]->shape);
    }
    gd.ids = ag_tensor_to_device(&p.dev_leaves, hc.ids);
    gd.labels = ag_tensor_to_device(&p.dev_leaves, hc.labels);
    gd.perm = ag_tensor_to_device(&p.dev_leaves, hc.perm);
    gd.mask = ag_tensor_to_device(&p.dev_leaves, hc.mask);
    int allocs_after_first = -1, host_allocs_after_first = -1;
    for (uint64_t step = 0; step < 3; step++) {
        for (int i = 0; i < P_COUNT; i++) {
            ag_zero_grad(hc.p[i]);
            ag_zero_grad(gd.p[i]);
        }
        ag_tensor *lc = graph(&p.cpu, &hc, step), *lg = graph(&p.gpu, &gd, step);
        char what[32];
        snprintf(what, sizeof what, "loss step %llu", (unsigned long long)step);
        g_expect_close("small graph", what, lc, lg, (gtol){0, 1e-5});
        ag_backward(&p.cpu, lc);
        ag_backward(&p.gpu, lg);
        for (int i = 0; i < P_COUNT; i++) {
            snprintf(what, sizeof what, "d%s step %llu", pnames[i], (unsigned long long)step);
            g_expect_close("small graph", what, hc.p[i]->grad, gd.p[i]->grad, (gtol){1e-5, 1e-4});
        }
        ag_ctx_reset(&p.cpu);
        ag_ctx_reset(&p.gpu);
        if (step == 0) {
            allocs_after_first = p.dev_act.n_system_allocs;
            host_allocs_after_first = p.dev_act.host->n_system_allocs;
        }
    }
    cr_expect_eq(p.dev_act.n_system_allocs, allocs_after_first, "steps 2 and 3 called cudaMalloc (%d blocks after step 1, %d now)",
                 allocs_after_first, p.dev_act.n_system_allocs);
    cr_expect_eq(p.dev_act.host->n_system_allocs, host_allocs_after_first, "steps 2 and 3 grew the header arena");
    g_pair_free(&p);
}
