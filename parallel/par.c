/* Groups and collectives: the loopback (one process) and MPI implementations, with a deadline on every MPI
 * collective (non-blocking call + polling) so a dead or stuck peer ends the job instead of hanging it. NCCL, for
 * device buffers, lives in par_nccl.c behind the same group handles. */
#include "parallel/par.h"

#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef SWITCHC_HAVE_MPI
#include <mpi.h>
#endif

#include "parallel/par_internal.h"

static size_t dt_size(par_dtype dt) {
    switch (dt) {
    case PAR_F32: return 4;
    case PAR_F64: return 8;
    case PAR_I32: return 4;
    case PAR_I64: return 8;
    }
    return 0;
}

const char *par_transport_name(par_transport_kind k) {
    switch (k) {
    case PAR_TRANSPORT_AUTO: return "auto";
    case PAR_TRANSPORT_LOOPBACK: return "loopback";
    case PAR_TRANSPORT_MPI: return "mpi";
    case PAR_TRANSPORT_NCCL: return "nccl";
    }
    return "?";
}

static double a2a_seconds;
double par_alltoall_seconds(void) { return a2a_seconds; }

static double clock_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int par_group_size(const par_group *g) { return g->size; }
int par_group_rank(const par_group *g) { return g->rank; }

static par_group *group_new(const par_ctx *p, int size, int rank) {
    par_group *g = calloc(1, sizeof *g);
    SX_ASSERT(g, "out of memory");
    g->ctx = p;
    g->size = size;
    g->rank = rank;
    return g;
}

par_group *par_group_describe(int size, int rank) {
    SX_ASSERT(size >= 1 && rank >= 0 && rank < size, "par_group_describe: rank %d of %d", rank, size);
    return group_new(NULL, size, rank);
}

void par_group_free(par_group *g) { free(g); }

_Noreturn void par_abort(const par_ctx *p, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "switchc: fatal [rank %d of %d]: %s\n", p ? p->world_rank : 0, p ? p->world_size : 1, msg);
    fflush(stderr);
#ifdef SWITCHC_HAVE_MPI
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Abort(MPI_COMM_WORLD, 3);
#endif
    exit(3);
}

#ifdef SWITCHC_HAVE_MPI
/* A fatal signal on one rank: say which rank, then let the default action end the process, which mpirun turns
 * into the end of the whole job. */
static void on_fatal_signal(int sig) {
    char buf[96];
    int n = snprintf(buf, sizeof buf, "switchc: rank %d received signal %d (%s)\n", sx_log_rank, sig, sig == SIGSEGV ? "SIGSEGV" : sig == SIGTERM ? "SIGTERM" : "fatal");
    if (n > 0) (void)!write(2, buf, (size_t)n);
    signal(sig, SIG_DFL);
    raise(sig);
}
#endif

void par_init_local(par_ctx *p) {
    memset(p, 0, sizeof *p);
    p->world_size = p->ep_size = p->dp_size = 1;
    p->kind = PAR_TRANSPORT_LOOPBACK;
    p->world = group_new(p, 1, 0);
    p->ep = group_new(p, 1, 0);
    p->dp = group_new(p, 1, 0);
}

static bool launched_by_mpi(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_NTASKS", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return true;
    return false;
}

sx_status par_init(par_ctx *p, int *argc, char ***argv, int expert_parallel, par_transport_kind kind, double timeout_s) {
    (void)argc;
    (void)argv;
    bool use_mpi = kind == PAR_TRANSPORT_MPI || kind == PAR_TRANSPORT_NCCL || (kind == PAR_TRANSPORT_AUTO && launched_by_mpi());
    if (!use_mpi) {
        par_init_local(p);
        p->timeout_s = timeout_s;
        if (expert_parallel != 1) return sx_errorf("parallel.expert_parallel = %d needs %d ranks (launch with mpirun -np N)", expert_parallel, expert_parallel);
        return sx_ok();
    }
#ifndef SWITCHC_HAVE_MPI
    return sx_errorf("parallel.transport %s: this switchc was built without MPI (-DSWITCHC_MPI=OFF)", par_transport_name(kind));
#else
    memset(p, 0, sizeof *p);
    p->timeout_s = timeout_s;
    p->kind = kind == PAR_TRANSPORT_NCCL ? PAR_TRANSPORT_NCCL : PAR_TRANSPORT_MPI;
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
        int provided;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return sx_errorf("MPI_Init failed");
        p->owns_mpi = true;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &p->world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &p->world_size);
    sx_log_rank = p->world_rank;
    signal(SIGSEGV, on_fatal_signal);
    signal(SIGTERM, on_fatal_signal);
    if (expert_parallel < 1 || p->world_size % expert_parallel)
        return sx_errorf("parallel.expert_parallel = %d does not divide the %d ranks", expert_parallel, p->world_size);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, p->world_rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &p->local_rank);
    MPI_Comm_free(&local);
    p->ep_size = expert_parallel;
    p->dp_size = p->world_size / expert_parallel;
    p->ep_rank = p->world_rank % expert_parallel;
    p->dp_rank = p->world_rank / expert_parallel;
    p->world = group_new(p, p->world_size, p->world_rank);
    MPI_Comm_dup(MPI_COMM_WORLD, &p->world->comm);
    p->ep = group_new(p, p->ep_size, p->ep_rank);
    MPI_Comm_split(MPI_COMM_WORLD, p->dp_rank, p->ep_rank, &p->ep->comm);
    p->dp = group_new(p, p->dp_size, p->dp_rank);
    MPI_Comm_split(MPI_COMM_WORLD, p->ep_rank, p->dp_rank, &p->dp->comm);
    par_group *gs[3] = {p->world, p->ep, p->dp};
    for (int i = 0; i < 3; i++) {
        gs[i]->mpi = true;
        MPI_Comm_set_errhandler(gs[i]->comm, MPI_ERRORS_RETURN);
    }
    if (p->kind == PAR_TRANSPORT_NCCL) return par_nccl_init(p);
    return sx_ok();
#endif
}

void par_finalize(par_ctx *p) {
    par_group *gs[3] = {p->world, p->ep, p->dp};
#ifdef SWITCHC_HAVE_MPI
    if (p->kind == PAR_TRANSPORT_NCCL) par_nccl_finalize(p);
    for (int i = 0; i < 3; i++)
        if (gs[i] && gs[i]->mpi) MPI_Comm_free(&gs[i]->comm);
    if (p->owns_mpi) MPI_Finalize();
#endif
    for (int i = 0; i < 3; i++) free(gs[i]);
    memset(p, 0, sizeof *p);
}

#ifdef SWITCHC_HAVE_MPI
static MPI_Datatype mpi_type(par_dtype dt) {
    switch (dt) {
    case PAR_F32: return MPI_FLOAT;
    case PAR_F64: return MPI_DOUBLE;
    case PAR_I32: return MPI_INT32_T;
    case PAR_I64: return MPI_INT64_T;
    }
    return MPI_BYTE;
}

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Waits for a non-blocking collective; past the deadline the job is aborted with the collective named. */
static sx_status wait_for(par_group *g, MPI_Request *req, int rc, const char *what) {
    if (rc != MPI_SUCCESS) {
        char err[MPI_MAX_ERROR_STRING];
        int len = 0;
        MPI_Error_string(rc, err, &len);
        return sx_errorf("rank %d: %s failed: %s", g->ctx->world_rank, what, err);
    }
    double t0 = mono(), deadline = g->ctx->timeout_s;
    int done = 0;
    long spins = 0;
    while (!done) {
        rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return sx_errorf("rank %d: %s failed while waiting", g->ctx->world_rank, what);
        if (done) break;
        if (deadline > 0 && mono() - t0 > deadline)
            par_abort(g->ctx, "%s did not complete within parallel.timeout_s = %.0f s (a peer rank died or is stuck)", what, deadline);
        if (++spins > 1000) {
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
    return sx_ok();
}

static int *to_int(const int64_t *v, int n, const char *what, sx_status *st) {
    int *r = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    for (int i = 0; i < n; i++) {
        if (v[i] < 0 || v[i] > INT_MAX) {
            *st = sx_errorf("%s: count %lld does not fit an MPI int", what, (long long)v[i]);
            free(r);
            return NULL;
        }
        r[i] = (int)v[i];
    }
    return r;
}
#endif

static sx_status alltoallv_impl(par_group *g, const void *send, const int64_t *sc, const int64_t *sd, void *recv, const int64_t *rc, const int64_t *rd,
                                par_dtype dt);

sx_status par_alltoallv(par_group *g, const void *send, const int64_t *sc, const int64_t *sd, void *recv, const int64_t *rc, const int64_t *rd,
                        par_dtype dt) {
    double t0 = clock_s();
    sx_status s = alltoallv_impl(g, send, sc, sd, recv, rc, rd, dt);
    a2a_seconds += clock_s() - t0;
    return s;
}

static sx_status alltoallv_impl(par_group *g, const void *send, const int64_t *sc, const int64_t *sd, void *recv, const int64_t *rc, const int64_t *rd,
                                par_dtype dt) {
    size_t es = dt_size(dt);
    if (g->ctx->kind == PAR_TRANSPORT_NCCL && g->mpi) return par_nccl_alltoallv(g, send, sc, sd, recv, rc, rd, dt);
    if (!g->mpi) {
        if (sc[0] != rc[0]) return sx_errorf("alltoallv (loopback): sending %lld elements to itself but expecting %lld", (long long)sc[0], (long long)rc[0]);
        if (sc[0]) memmove((char *)recv + (size_t)rd[0] * es, (const char *)send + (size_t)sd[0] * es, (size_t)sc[0] * es);
        return sx_ok();
    }
#ifdef SWITCHC_HAVE_MPI
    sx_status st = sx_ok();
    int n = g->size;
    int *isc = to_int(sc, n, "alltoallv", &st), *isd = to_int(sd, n, "alltoallv", &st), *irc = to_int(rc, n, "alltoallv", &st),
        *ird = to_int(rd, n, "alltoallv", &st);
    if (st.ok) {
        MPI_Request req;
        int r = MPI_Ialltoallv(send, isc, isd, mpi_type(dt), recv, irc, ird, mpi_type(dt), g->comm, &req);
        st = wait_for(g, &req, r, "MPI all-to-all(v) of tokens");
    }
    free(isc);
    free(isd);
    free(irc);
    free(ird);
    return st;
#else
    return sx_errorf("alltoallv: no MPI in this build");
#endif
}

sx_status par_alltoall(par_group *g, const void *send, void *recv, int64_t per_rank, par_dtype dt) {
    double t0 = clock_s();
    sx_status s;
    if (!g->mpi) {
        memmove(recv, send, (size_t)per_rank * dt_size(dt));
        s = sx_ok();
    } else {
#ifdef SWITCHC_HAVE_MPI
        MPI_Request req;
        int r = MPI_Ialltoall(send, (int)per_rank, mpi_type(dt), recv, (int)per_rank, mpi_type(dt), g->comm, &req);
        s = wait_for(g, &req, r, "MPI all-to-all of counts");
#else
        s = sx_errorf("alltoall: no MPI in this build");
#endif
    }
    a2a_seconds += clock_s() - t0;
    return s;
}

sx_status par_allreduce_sum(par_group *g, void *buf, int64_t n, par_dtype dt) {
    if (!g->mpi || n == 0) return sx_ok();
    if (g->ctx->kind == PAR_TRANSPORT_NCCL) return par_nccl_allreduce_sum(g, buf, n, dt);
#ifdef SWITCHC_HAVE_MPI
    /* in pieces of at most INT_MAX elements */
    for (int64_t off = 0; off < n; off += INT_MAX) {
        int cnt = (int)(n - off < INT_MAX ? n - off : INT_MAX);
        MPI_Request req;
        int r = MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + (size_t)off * dt_size(dt), cnt, mpi_type(dt), MPI_SUM, g->comm, &req);
        SX_TRY(wait_for(g, &req, r, "MPI all-reduce"));
    }
    return sx_ok();
#else
    return sx_errorf("allreduce: no MPI in this build");
#endif
}

sx_status par_allgather(par_group *g, const void *send, void *recv, int64_t n, par_dtype dt) {
    if (!g->mpi) {
        memmove(recv, send, (size_t)n * dt_size(dt));
        return sx_ok();
    }
#ifdef SWITCHC_HAVE_MPI
    MPI_Request req;
    int r = MPI_Iallgather(send, (int)n, mpi_type(dt), recv, (int)n, mpi_type(dt), g->comm, &req);
    return wait_for(g, &req, r, "MPI all-gather");
#else
    return sx_errorf("allgather: no MPI in this build");
#endif
}

sx_status par_bcast(par_group *g, void *buf, int64_t n, par_dtype dt, int root) {
    if (!g->mpi) return sx_ok();
#ifdef SWITCHC_HAVE_MPI
    MPI_Request req;
    int r = MPI_Ibcast(buf, (int)n, mpi_type(dt), root, g->comm, &req);
    return wait_for(g, &req, r, "MPI broadcast");
#else
    return sx_errorf("bcast: no MPI in this build");
#endif
}

sx_status par_barrier(par_group *g) {
    if (!g->mpi) return sx_ok();
#ifdef SWITCHC_HAVE_MPI
    MPI_Request req;
    int r = MPI_Ibarrier(g->comm, &req);
    return wait_for(g, &req, r, "MPI barrier");
#else
    return sx_ok();
#endif
}
