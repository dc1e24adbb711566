/* The group handle shared by the transport implementations (par.c: loopback and MPI; par_nccl.c: NCCL). */
#ifndef SX_PAR_INTERNAL_H
#define SX_PAR_INTERNAL_H

#include "parallel/par.h"

#ifdef SWITCHC_HAVE_MPI
#include <mpi.h>
#endif

struct par_group {
    const par_ctx *ctx;
    int size, rank;
    bool mpi;              /* a real communicator (else loopback) */
#ifdef SWITCHC_HAVE_MPI
    MPI_Comm comm;
#endif
    void *nccl;            /* ncclComm_t when the transport is NCCL */
};

/* NCCL transport (device buffers). Without NCCL in the build these return an error naming the missing piece. */
sx_status par_nccl_init(par_ctx *p);
void par_nccl_finalize(par_ctx *p);
sx_status par_nccl_alltoallv(par_group *g, const void *send, const int64_t *sc, const int64_t *sd, void *recv, const int64_t *rc,
                             const int64_t *rd, par_dtype dt);
sx_status par_nccl_allreduce_sum(par_group *g, void *buf, int64_t n, par_dtype dt);

#endif
