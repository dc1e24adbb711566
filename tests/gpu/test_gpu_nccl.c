/* The NCCL transport on one rank against the MPI transport (and the loopback): the collectives the trainer and
 * moe/switch.c use, through par.h, NCCL on device buffers and MPI / loopback on host buffers. On one rank every
 * collective is a copy (a sum over one rank is its input), so the results must be bit-identical: no tolerance.
 * SKIPPED (visibly) where no GPU is present or the build lacks NCCL or MPI (the NCCL transport needs MPI to
 * broadcast its unique id: par_init initialises MPI itself, as a singleton when not launched by mpirun).
 *
 * - all-reduce (sum, in place) of a float span, as sync_grads in train/trainer.c does over the world and the DP
 *   group, with -0.0, infinities, subnormals and an odd length; and of an int64 span (the token counts);
 * - all-to-all of counts (par_alltoall, int64, El per rank), as experts_remote in moe/switch.c: host buffers in
 *   every transport (under NCCL it goes over MPI, by design), compared anyway;
 * - all-to-all(v) of rows, as a2a_move in moe/switch.c (counts and displacements in floats = rows * D) over the EP
 *   group: rows at a displacement, the reverse (gradient) direction, and zero counts (every rank must call even
 *   with nothing to send); the untouched parts of the receive buffer must stay as they were.
 * - error reporting: an exchange that can never complete (a send to itself with no matching receive) must end the
 *   process with par_abort's status 3 once parallel.timeout_s passes (or at once, if NCCL reports the misuse)
 *   instead of hanging; and a deadline shorter than a 256 MiB exchange takes must abort the communicator and the job
 *   (status 3) from nccl_wait's timeout branch. Criterion's own timeout bounds both if the abort does not come.
 *   A dead peer cannot be staged on one rank: tests/mpi/fault_test.sh does that for the MPI transport. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ag.h"
#include "autograd/ag_cuda.h"
#include "parallel/par.h"

#if defined(SWITCHC_HAVE_NCCL) && defined(SWITCHC_HAVE_MPI)
#define NCCL_BUILT 1
#else
#define NCCL_BUILT 0
#endif

#define SKIP_WITHOUT_NCCL(name)                                                                                       \
    do {                                                                                                              \
        if (!NCCL_BUILT) {                                                                                            \
            printf("SKIPPED: gpu_nccl::%s: this build has no NCCL transport (needs CUDA, NCCL and MPI)\n", (name));  \
            cr_skip_test("SKIPPED: no NCCL transport in this build");                                                \
        }                                                                                                             \
        if (ag_cuda_device_count() == 0) {                                                                            \
            printf("SKIPPED: gpu_nccl::%s: no CUDA device (%s)\n", (name), ag_cuda_describe());                      \
            cr_skip_test("SKIPPED: no CUDA device (%s)", ag_cuda_describe());                                        \
        }                                                                                                             \
    } while (0)

/* Three contexts in one process: NCCL (it initialises MPI and owns it), MPI (reuses that MPI) and the loopback. */
typedef struct {
    par_ctx nccl, mpi, loop;
} transports;

static bool open_transports(transports *t, double timeout_s, const char *name) {
    sx_status s = par_init(&t->nccl, NULL, NULL, 1, PAR_TRANSPORT_NCCL, timeout_s);
    cr_assert(s.ok, "par_init(nccl): %s", s.msg);
    if (t->nccl.world_size != 1) { /* launched under mpirun with several ranks: this suite is the one-rank check */
        printf("SKIPPED: gpu_nccl::%s: %d ranks; this suite runs on one\n", name, t->nccl.world_size);
        par_finalize(&t->nccl);
        return false;
    }
    s = par_init(&t->mpi, NULL, NULL, 1, PAR_TRANSPORT_MPI, timeout_s);
    cr_assert(s.ok, "par_init(mpi): %s", s.msg);
    cr_assert_eq(t->nccl.kind, PAR_TRANSPORT_NCCL);
    cr_assert_eq(t->mpi.kind, PAR_TRANSPORT_MPI);
    par_init_local(&t->loop);
    return true;
}

static void close_transports(transports *t) {
    par_finalize(&t->loop);
    par_finalize(&t->mpi);
    par_finalize(&t->nccl); /* last: it owns MPI */
}

static void *to_device(const void *h, size_t bytes) {
    void *d = ag_cuda_malloc(bytes ? bytes : 1, "test_gpu_nccl buffer");
    if (bytes) ag_cuda_memcpy(d, h, bytes, AG_COPY_H2D);
    return d;
}

static void to_host(void *h, const void *d, size_t bytes) {
    if (bytes) ag_cuda_memcpy(h, d, bytes, AG_COPY_D2H);
}

/* Exact comparison: bytes, naming the first differing element. */
static void expect_same(const char *what, const void *a, const void *b, int64_t n, size_t es) {
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (memcmp((const char *)a + (size_t)i * es, (const char *)b + (size_t)i * es, es)) {
            if (first < 0) first = i;
            bad++;
        }
    cr_expect_eq(bad, 0, "%s: %lld of %lld elements differ (first at %lld)", what, (long long)bad, (long long)n, (long long)first);
}

static float test_value(ag_rng_key k, int64_t i) {
    switch (i % 11) {
    case 0: return -0.0f;
    case 1: return 1.0f / 0.0f;
    case 2: return -1.0f / 0.0f;
    case 3: return 1e-40f; /* subnormal */
    case 4: return -3e38f;
    default: return (2 * ag_rng_uniform(k, (uint64_t)i) - 1) * 1e3f;
    }
}

/* ---- all-reduce of gradient spans ----------------------------------------------------------------------------- */

Test(gpu_nccl, allreduce_matches_mpi, .timeout = 300) {
    SKIP_WITHOUT_NCCL("allreduce_matches_mpi");
    transports t;
    if (!open_transports(&t, 60, "allreduce_matches_mpi")) return;
    ag_rng_key k = ag_rng_make(7, 0, 1);
    const int64_t sizes[] = {1, 7, 1000003};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int64_t n = sizes[si];
        size_t bytes = sizeof(float) * (size_t)n;
        float *orig = malloc(bytes), *h_mpi = malloc(bytes), *h_loop = malloc(bytes), *h_nccl = malloc(bytes);
        for (int64_t i = 0; i < n; i++) orig[i] = test_value(k, i + (int64_t)si * 1000);
        par_group *gn[2] = {t.nccl.world, t.nccl.dp}, *gm[2] = {t.mpi.world, t.mpi.dp}, *gl[2] = {t.loop.world, t.loop.dp};
        for (int gi = 0; gi < 2; gi++) { /* sync_grads: dense over the world, experts over the DP group */
            memcpy(h_mpi, orig, bytes);
            memcpy(h_loop, orig, bytes);
            float *d = to_device(orig, bytes);
            sx_status s = par_allreduce_sum(gn[gi], d, n, PAR_F32);
            cr_assert(s.ok, "NCCL all-reduce: %s", s.msg);
            to_host(h_nccl, d, bytes);
            ag_cuda_free(d);
            s = par_allreduce_sum(gm[gi], h_mpi, n, PAR_F32);
            cr_assert(s.ok, "MPI all-reduce: %s", s.msg);
            s = par_allreduce_sum(gl[gi], h_loop, n, PAR_F32);
            cr_assert(s.ok, "loopback all-reduce: %s", s.msg);
            char what[96];
            snprintf(what, sizeof what, "f32 all-reduce of %lld (%s): NCCL vs MPI", (long long)n, gi ? "dp" : "world");
            expect_same(what, h_nccl, h_mpi, n, sizeof(float));
            snprintf(what, sizeof what, "f32 all-reduce of %lld (%s): MPI vs loopback", (long long)n, gi ? "dp" : "world");
            expect_same(what, h_mpi, h_loop, n, sizeof(float));
            snprintf(what, sizeof what, "f32 all-reduce of %lld (%s): one rank gives its input", (long long)n, gi ? "dp" : "world");
            expect_same(what, h_nccl, orig, n, sizeof(float));
        }
        free(orig);
        free(h_mpi);
        free(h_loop);
        free(h_nccl);
    }
    /* int64 (token counts per layer and expert) */
    enum { NI = 96 };
    int64_t iv[NI], im[NI], in_[NI];
    for (int i = 0; i < NI; i++) iv[i] = im[i] = (int64_t)i * 0x10000000001LL - 5000;
    int64_t *d = to_device(iv, sizeof iv);
    sx_status s = par_allreduce_sum(t.nccl.world, d, NI, PAR_I64);
    cr_assert(s.ok, "NCCL all-reduce (i64): %s", s.msg);
    to_host(in_, d, sizeof in_);
    ag_cuda_free(d);
    s = par_allreduce_sum(t.mpi.world, im, NI, PAR_I64);
    cr_assert(s.ok, "MPI all-reduce (i64): %s", s.msg);
    expect_same("i64 all-reduce: NCCL vs MPI", in_, im, NI, sizeof(int64_t));
    expect_same("i64 all-reduce: one rank gives its input", in_, iv, NI, sizeof(int64_t));
    close_transports(&t);
}

/* ---- all-to-all of counts (host buffers in every transport) ---------------------------------------------------- */

Test(gpu_nccl, alltoall_counts_match_mpi, .timeout = 300) {
    SKIP_WITHOUT_NCCL("alltoall_counts_match_mpi");
    transports t;
    if (!open_transports(&t, 60, "alltoall_counts_match_mpi")) return;
    enum { E = 8 }; /* El = E / ep_size = E on one rank */
    int64_t send[E] = {3, 0, 0, 17, 1, 0, 250, 2}, rn[E], rm[E], rl[E];
    for (int i = 0; i < E; i++) rn[i] = rm[i] = rl[i] = -1;
    sx_status s = par_alltoall(t.nccl.ep, send, rn, E, PAR_I64);
    cr_assert(s.ok, "all-to-all under the NCCL context: %s", s.msg);
    s = par_alltoall(t.mpi.ep, send, rm, E, PAR_I64);
    cr_assert(s.ok, "MPI all-to-all: %s", s.msg);
    s = par_alltoall(t.loop.ep, send, rl, E, PAR_I64);
    cr_assert(s.ok, "loopback all-to-all: %s", s.msg);
    expect_same("all-to-all of counts: NCCL context vs MPI", rn, rm, E, sizeof(int64_t));
    expect_same("all-to-all of counts: MPI vs loopback", rm, rl, E, sizeof(int64_t));
    expect_same("all-to-all of counts: one rank gives its input", rn, send, E, sizeof(int64_t));
    close_transports(&t);
}

/* ---- all-to-all(v) of rows as moe/switch.c moves them ---------------------------------------------------------- */

/* One exchange of `rows` rows of D floats: sent from row `s_off` of a send buffer of `s_rows` rows into row `r_off`
 * of a receive buffer of `r_rows` rows (prefilled with a pattern that must survive outside the received block). */
typedef struct {
    int64_t D, s_rows, s_off, r_rows, r_off, rows;
} a2a_case;

static void run_alltoallv(par_group *g, bool device, const float *send, const a2a_case *c, float *recv_out) {
    /* counts and displacements in floats, as a2a_move does (one peer: this rank) */
    int64_t sc[1] = {c->rows * c->D}, sd[1] = {c->s_off * c->D}, rc[1] = {c->rows * c->D}, rd[1] = {c->r_off * c->D};
    size_t sb = sizeof(float) * (size_t)(c->s_rows * c->D), rb = sizeof(float) * (size_t)(c->r_rows * c->D);
    for (int64_t i = 0; i < c->r_rows * c->D; i++) recv_out[i] = -1000.0f - (float)i; /* the untouched pattern */
    sx_status s;
    if (device) {
        float *ds = to_device(send, sb), *dr = to_device(recv_out, rb);
        s = par_alltoallv(g, ds, sc, sd, dr, rc, rd, PAR_F32);
        cr_assert(s.ok, "NCCL all-to-all(v): %s", s.msg);
        to_host(recv_out, dr, rb);
        ag_cuda_free(ds);
        ag_cuda_free(dr);
    } else {
        s = par_alltoallv(g, send, sc, sd, recv_out, rc, rd, PAR_F32);
        cr_assert(s.ok, "all-to-all(v): %s", s.msg);
    }
}

Test(gpu_nccl, alltoallv_rows_match_mpi, .timeout = 300) {
    SKIP_WITHOUT_NCCL("alltoallv_rows_match_mpi");
    transports t;
    if (!open_transports(&t, 60, "alltoallv_rows_match_mpi")) return;
    const a2a_case cases[] = {
        {.D = 5, .s_rows = 13, .s_off = 0, .r_rows = 13, .r_off = 0, .rows = 13},    /* dispatch: every row */
        {.D = 5, .s_rows = 13, .s_off = 3, .r_rows = 17, .r_off = 2, .rows = 9},     /* at displacements */
        {.D = 64, .s_rows = 0, .s_off = 0, .r_rows = 0, .r_off = 0, .rows = 0},      /* a rank with no rows */
        {.D = 64, .s_rows = 4, .s_off = 4, .r_rows = 4, .r_off = 4, .rows = 0},      /* zero counts, nonempty buffers */
        {.D = 512, .s_rows = 1031, .s_off = 0, .r_rows = 1031, .r_off = 0, .rows = 1031},
        {.D = 1, .s_rows = 1, .s_off = 0, .r_rows = 1, .r_off = 0, .rows = 1},
    };
    ag_rng_key k = ag_rng_make(7, 0, 2);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const a2a_case *c = &cases[ci];
        int64_t ns = c->s_rows * c->D, nr = c->r_rows * c->D;
        float *send = malloc(sizeof(float) * (size_t)(ns + 1));
        float *rn = malloc(sizeof(float) * (size_t)(nr + 1)), *rm = malloc(sizeof(float) * (size_t)(nr + 1)),
              *rl = malloc(sizeof(float) * (size_t)(nr + 1)), *back_n = malloc(sizeof(float) * (size_t)(ns + 1)),
              *back_m = malloc(sizeof(float) * (size_t)(ns + 1));
        for (int64_t i = 0; i < ns; i++) send[i] = test_value(k, i + (int64_t)ci * 100000);
        run_alltoallv(t.nccl.ep, true, send, c, rn);
        run_alltoallv(t.mpi.ep, false, send, c, rm);
        run_alltoallv(t.loop.ep, false, send, c, rl);
        char what[128];
        snprintf(what, sizeof what, "all-to-all(v) case %zu (%lld rows of %lld): NCCL vs MPI", ci, (long long)c->rows, (long long)c->D);
        expect_same(what, rn, rm, nr, sizeof(float));
        snprintf(what, sizeof what, "all-to-all(v) case %zu: MPI vs loopback", ci);
        expect_same(what, rm, rl, nr, sizeof(float));
        /* the expected block, and the pattern around it */
        int64_t bad = 0;
        for (int64_t i = 0; i < nr; i++) {
            int64_t row = i / c->D;
            float want = row >= c->r_off && row < c->r_off + c->rows ? send[(c->s_off + row - c->r_off) * c->D + i % c->D] : -1000.0f - (float)i;
            bad += memcmp(&rn[i], &want, sizeof want) != 0;
        }
        cr_expect_eq(bad, 0, "all-to-all(v) case %zu: %lld floats are not the sent rows / the untouched pattern", ci, (long long)bad);
        /* the backward direction (a2a_backward): the received rows go back along the reversed plan */
        a2a_case rev = {.D = c->D, .s_rows = c->r_rows, .s_off = c->r_off, .r_rows = c->s_rows, .r_off = c->s_off, .rows = c->rows};
        run_alltoallv(t.nccl.ep, true, rn, &rev, back_n);
        run_alltoallv(t.mpi.ep, false, rm, &rev, back_m);
        snprintf(what, sizeof what, "all-to-all(v) case %zu backward: NCCL vs MPI", ci);
        expect_same(what, back_n, back_m, ns, sizeof(float));
        free(send);
        free(rn);
        free(rm);
        free(rl);
        free(back_n);
        free(back_m);
    }
    cr_expect_gt(par_alltoall_seconds(), 0.0, "the all-to-all(v) time is counted");
    close_transports(&t);
}

/* ---- error reporting: a collective that cannot complete ends the process ----------------------------------------- */

/* A send to itself with no matching receive never completes: NCCL either refuses it (an error status, which the
 * caller turns into par_abort as moe/switch.c's SX_ASSERT would end the job) or its kernel waits, and nccl_wait's
 * deadline (parallel.timeout_s = 3 s here) aborts the communicator and the job with status 3. Criterion's timeout
 * (120 s) ends the test as a failure if neither happens. Without a device or NCCL the test exits 3 itself after
 * printing SKIPPED (CTest then reports the suite Skipped): Criterion counts a skip in a test that
 * expects an exit status as a failure. */
Test(gpu_nccl, unmatched_exchange_aborts_within_timeout, .exit_code = 3, .timeout = 120) {
    if (!NCCL_BUILT || ag_cuda_device_count() == 0) {
        printf("SKIPPED: gpu_nccl::unmatched_exchange_aborts_within_timeout: %s\n", !NCCL_BUILT ? "this build has no NCCL transport" : "no CUDA device");
        fflush(stdout);
        exit(3);
    }
    transports t;
    if (!open_transports(&t, 3.0, "unmatched_exchange_aborts_within_timeout")) exit(3);
    float h[4] = {1, 2, 3, 4};
    float *d = to_device(h, sizeof h), *r = to_device(h, sizeof h);
    int64_t sc[1] = {4}, sd[1] = {0}, rc[1] = {0}, rd[1] = {0};
    sx_status s = par_alltoallv(t.nccl.ep, d, sc, sd, r, rc, rd, PAR_F32);
    if (!s.ok) par_abort(&t.nccl, "unmatched exchange refused: %s", s.msg); /* reported as an error: also right */
    cr_assert_fail("an all-to-all(v) whose send has no receive returned success");
}

/* The deadline itself: a 256 MiB exchange cannot finish within 1 microsecond, so nccl_wait's timeout branch aborts
 * the communicator (ncclCommAbort stops the running kernel) and the job with status 3 and a message naming the
 * collective. The communicators are made under a normal deadline; only the exchange gets the short one. */
Test(gpu_nccl, deadline_aborts_the_exchange, .exit_code = 3, .timeout = 120) {
    if (!NCCL_BUILT || ag_cuda_device_count() == 0) {
        printf("SKIPPED: gpu_nccl::deadline_aborts_the_exchange: %s\n", !NCCL_BUILT ? "this build has no NCCL transport" : "no CUDA device");
        fflush(stdout);
        exit(3);
    }
    transports t;
    if (!open_transports(&t, 60, "deadline_aborts_the_exchange")) exit(3);
    const int64_t n = 64LL << 20; /* floats */
    float *d = ag_cuda_malloc(sizeof(float) * (size_t)n, "send"), *r = ag_cuda_malloc(sizeof(float) * (size_t)n, "recv");
    ag_cuda_memset0(d, sizeof(float) * (size_t)n);
    ag_cuda_synchronize("deadline test setup");
    int64_t sc[1] = {n}, sd[1] = {0}, rc[1] = {n}, rd[1] = {0};
    t.nccl.timeout_s = 1e-6;
    sx_status s = par_alltoallv(t.nccl.ep, d, sc, sd, r, rc, rd, PAR_F32);
    cr_assert_fail("a 256 MiB all-to-all(v) returned (%s) within a 1 us deadline", s.ok ? "ok" : s.msg);
}
