/* Shared between the op constructors (ops.c), the tape and the backend kernels; not part of the public API. */
#ifndef SX_AG_INTERNAL_H
#define SX_AG_INTERNAL_H

#include "autograd/ag.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs n's forward on the context's backend and records n on the tape when an input requires grad. */
ag_tensor *ag_run(ag_ctx *ctx, ag_node *n);
/* Every input of n lives on the context's device (grouped_matmul's offsets are the one host-side input). */
void ag_check_devices(const ag_ctx *ctx, const ag_node *n);
const char *ag_device_name(ag_device dev);
/* Checks a backend's table against autograd/ag_ops.def (every op has an entry, a backward exactly when the op has a
 * gradient; AG_UNSUPPORTED entries only where may_lack_ops) and returns it; aborts naming the backend and the op. */
const ag_op_entry *ag_op_table_checked(const ag_op_entry *t, const char *backend, bool may_lack_ops);

/* The host arena beside a: a itself for a CPU arena, the header arena of a device arena. Host-side bookkeeping of
 * an op on the device (tensor headers, a host copy of grouped_matmul's offsets) goes there. */
ag_arena *ag_arena_host_side(ag_arena *a);

/* Up to 4-dim broadcasting: shapes right-aligned into 4 dims, strides 0 along broadcast axes. */
typedef struct {
    int64_t shape[4];   /* output shape, padded to 4 dims */
    int64_t sa[4], sb[4];
} ag_bcast;
void ag_bcast_strides(const ag_tensor *t, const int64_t out4[4], int64_t st[4]);
void ag_pad4(const ag_tensor *t, int64_t s4[4]);

#ifdef __cplusplus
}
#endif
#endif
