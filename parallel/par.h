/* Process groups and the transport that moves bytes between ranks: world, expert-parallel (EP) and data-parallel
 * (DP) groups; all-to-all(v), all-reduce, gather and broadcast. Three implementations behind one interface: a
 * loopback (one process: copies), MPI (host memory: the CPU path and CI) and NCCL (device memory: the GPU path, its
 * unique id broadcast over MPI). World size 1 goes through the same calls as world size N. Knows no model shapes. */
#ifndef SX_PAR_H
#define SX_PAR_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/sx_error.h"

typedef enum { PAR_F32, PAR_F64, PAR_I32, PAR_I64 } par_dtype;
typedef enum { PAR_TRANSPORT_AUTO, PAR_TRANSPORT_LOOPBACK, PAR_TRANSPORT_MPI, PAR_TRANSPORT_NCCL } par_transport_kind;

typedef struct par_group par_group;

/* Ranks are laid out as dp_size consecutive blocks of ep_size ranks: the EP group of a rank is its block (it holds
 * every expert of every sparse layer, num_experts / ep_size each), its DP group the ranks with the same ep_rank. */
typedef struct {
    int world_rank, world_size, local_rank;
    int ep_size, ep_rank, dp_size, dp_rank;
    par_group *world, *ep, *dp;
    par_transport_kind kind;
    double timeout_s;        /* collectives that do not finish in time abort the job, naming the collective */
    bool owns_mpi;           /* MPI_Init was called here */
} par_ctx;

/* MPI when the process was launched by mpirun/srun with more than one rank (or kind == MPI), else loopback.
 * expert_parallel must divide the world size. Errors (a bad EP size, MPI failures) come back as a status. */
sx_status par_init(par_ctx *p, int *argc, char ***argv, int expert_parallel, par_transport_kind kind, double timeout_s);
/* A single-process context (loopback) regardless of how the process was launched: reference runs inside tests. */
void par_init_local(par_ctx *p);
void par_finalize(par_ctx *p);
const char *par_transport_name(par_transport_kind k);

/* A group that only describes a position (size, rank) and cannot communicate: to build one rank's share of a model
 * outside a job (re-slicing checkpoints in tests and tools). Free with par_group_free. */
par_group *par_group_describe(int size, int rank);
void par_group_free(par_group *g);

int par_group_size(const par_group *g);
int par_group_rank(const par_group *g);

/* Counts and displacements are in elements. Every rank of the group must call, even with all counts 0. */
sx_status par_alltoallv(par_group *g, const void *send, const int64_t *send_counts, const int64_t *send_displs, void *recv,
                        const int64_t *recv_counts, const int64_t *recv_displs, par_dtype dt);
/* per_rank elements to and from every rank. */
sx_status par_alltoall(par_group *g, const void *send, void *recv, int64_t per_rank, par_dtype dt);
sx_status par_allreduce_sum(par_group *g, void *buf, int64_t n, par_dtype dt);
/* Concatenates every rank's n elements in rank order on every rank. */
sx_status par_allgather(par_group *g, const void *send, void *recv, int64_t n, par_dtype dt);
sx_status par_bcast(par_group *g, void *buf, int64_t n, par_dtype dt, int root);
sx_status par_barrier(par_group *g);

/* Seconds this process has spent inside all-to-all(v) calls so far (the token exchange of expert parallelism). */
double par_alltoall_seconds(void);

/* Prints the message with the rank named and ends the whole job (MPI_Abort under MPI), so no rank hangs. */
_Noreturn void par_abort(const par_ctx *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
