/* The NCCL transport: one communicator per group (world, EP, DP), created from a unique id broadcast over MPI after
 * cudaSetDevice(local_rank % devices); all-to-all(v) as grouped ncclSend/ncclRecv; all-reduce; non-blocking
 * communicators polled with ncclCommGetAsyncError against parallel.timeout_s, then ncclCommAbort, so a dead peer
 * ends the job instead of hanging it. Buffers are device memory. Collectives run on the backend's stream
 * (ag_cuda_stream()) and return once their results are in place, like the MPI transport's. */
#include "parallel/par_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(SWITCHC_HAVE_NCCL) && defined(SWITCHC_HAVE_MPI)
#include <cuda_runtime.h>
#include <nccl.h>

#include "autograd/ag_cuda.h"

#define NCCL_TRY(g, stmt)                                                                                             \
    do {                                                                                                              \
        ncclResult_t r_ = (stmt);                                                                                     \
        if (r_ != ncclSuccess && r_ != ncclInProgress)                                                                \
            return sx_errorf("rank %d: NCCL error '%s' in `%s` at %s:%d", (g)->ctx->world_rank, ncclGetErrorString(r_), #stmt, __FILE__, \
                             __LINE__);                                                                               \
    } while (0)

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ncclDataType_t nccl_type(par_dtype dt) {
    switch (dt) {
    case PAR_F32: return ncclFloat32;
    case PAR_F64: return ncclFloat64;
    case PAR_I32: return ncclInt32;
    case PAR_I64: return ncclInt64;
    }
    return ncclFloat32;
}

static size_t dt_size(par_dtype dt) { return dt == PAR_F64 || dt == PAR_I64 ? 8 : 4; }

/* The stream every device op runs on, so collectives are ordered with the kernels that produce and consume them. */
static cudaStream_t nccl_stream(void) { return (cudaStream_t)ag_cuda_stream(); }

/* Polls a non-blocking communicator until its pending work is done (and, for a collective, until the stream has run
 * it: the kernels are what hangs when a peer is gone) or the deadline passes. */
static sx_status nccl_wait(par_group *g, bool on_stream, const char *what) {
    ncclComm_t comm = (ncclComm_t)g->nccl;
    double t0 = mono();
    long spins = 0;
    for (;;) {
        ncclResult_t async;
        ncclCommGetAsyncError(comm, &async);
        if (async != ncclSuccess && async != ncclInProgress) {
            ncclCommAbort(comm);
            par_abort(g->ctx, "%s: NCCL asynchronous error '%s'", what, ncclGetErrorString(async));
        }
        cudaError_t q = on_stream && async == ncclSuccess ? cudaStreamQuery(nccl_stream()) : cudaSuccess;
        if (async == ncclSuccess && q == cudaSuccess) return sx_ok();
        if (q != cudaSuccess && q != cudaErrorNotReady) return sx_errorf("rank %d: %s: CUDA error %s", g->ctx->world_rank, what, cudaGetErrorString(q));
        if (g->ctx->timeout_s > 0 && mono() - t0 > g->ctx->timeout_s) {
            ncclCommAbort(comm);
            par_abort(g->ctx, "%s did not complete within parallel.timeout_s = %.0f s (NCCL communicator aborted)", what, g->ctx->timeout_s);
        }
        if (++spins > 1000) {
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
}

static sx_status comm_init(par_group *g) {
    ncclUniqueId id;
    if (g->rank == 0) NCCL_TRY(g, ncclGetUniqueId(&id));
    if (MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, g->comm) != MPI_SUCCESS) return sx_errorf("rank %d: broadcasting the NCCL unique id failed", g->ctx->world_rank);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclComm_t comm;
    NCCL_TRY(g, ncclCommInitRankConfig(&comm, g->size, id, g->rank, &cfg));
    g->nccl = comm;
    return nccl_wait(g, false, "ncclCommInitRankConfig");
}

sx_status par_nccl_init(par_ctx *p) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) return sx_errorf("rank %d: parallel.transport nccl needs a CUDA device; none is visible", p->world_rank);
    cudaError_t e = cudaSetDevice(p->local_rank % ndev); /* before any communicator exists (FORMATS 5) */
    if (e != cudaSuccess) return sx_errorf("rank %d: cudaSetDevice(%d) failed: %s", p->world_rank, p->local_rank % ndev, cudaGetErrorString(e));
    SX_TRY(comm_init(p->world));
    SX_TRY(comm_init(p->ep));
    SX_TRY(comm_init(p->dp));
    return sx_ok();
}

void par_nccl_finalize(par_ctx *p) {
    par_group *gs[3] = {p->world, p->ep, p->dp};
    for (int i = 0; i < 3; i++)
        if (gs[i] && gs[i]->nccl) {
            ncclCommDestroy((ncclComm_t)gs[i]->nccl);
            gs[i]->nccl = NULL;
        }
}

sx_status par_nccl_alltoallv(par_group *g, const void *send, const int64_t *sc, const int64_t *sd, void *recv, const int64_t *rc,
                             const int64_t *rd, par_dtype dt) {
    ncclComm_t comm = (ncclComm_t)g->nccl;
    cudaStream_t st = nccl_stream();
    size_t es = dt_size(dt);
    NCCL_TRY(g, ncclGroupStart());
    for (int r = 0; r < g->size; r++) {
        if (sc[r]) NCCL_TRY(g, ncclSend((const char *)send + (size_t)sd[r] * es, (size_t)sc[r], nccl_type(dt), r, comm, st));
        if (rc[r]) NCCL_TRY(g, ncclRecv((char *)recv + (size_t)rd[r] * es, (size_t)rc[r], nccl_type(dt), r, comm, st));
    }
    NCCL_TRY(g, ncclGroupEnd());
    return nccl_wait(g, true, "NCCL all-to-all(v) of tokens");
}

sx_status par_nccl_allreduce_sum(par_group *g, void *buf, int64_t n, par_dtype dt) {
    NCCL_TRY(g, ncclAllReduce(buf, buf, (size_t)n, nccl_type(dt), ncclSum, (ncclComm_t)g->nccl, nccl_stream()));
    return nccl_wait(g, true, "NCCL all-reduce");
}

#else

sx_status par_nccl_init(par_ctx *p) { return sx_errorf("rank %d: parallel.transport nccl: this switchc was built without NCCL or MPI", p->world_rank); }
void par_nccl_finalize(par_ctx *p) { (void)p; }
sx_status par_nccl_alltoallv(par_group *g, const void *send, const int64_t *sc, const int64_t *sd, void *recv, const int64_t *rc,
                             const int64_t *rd, par_dtype dt) {
    (void)g; (void)send; (void)sc; (void)sd; (void)recv; (void)rc; (void)rd; (void)dt;
    return sx_errorf("NCCL transport not built");
}
sx_status par_nccl_allreduce_sum(par_group *g, void *buf, int64_t n, par_dtype dt) {
    (void)g; (void)buf; (void)n; (void)dt;
    return sx_errorf("NCCL transport not built");
}

#endif
