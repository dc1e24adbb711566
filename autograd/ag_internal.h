/* Shared between the op constructors (ops.c), the tape and the backend kernels; not part of the public API. */
#ifndef SX_AG_INTERNAL_H
#define SX_AG_INTERNAL_H

#include "autograd/ag.h"

/* Runs n's forward on the context's backend and records n on the tape when an input requires grad. */
ag_tensor *ag_run(ag_ctx *ctx, ag_node *n);

/* Up to 4-dim broadcasting: shapes right-aligned into 4 dims, strides 0 along broadcast axes. */
typedef struct {
    int64_t shape[4];   /* output shape, padded to 4 dims */
    int64_t sa[4], sb[4];
} ag_bcast;
void ag_bcast_strides(const ag_tensor *t, const int64_t out4[4], int64_t st[4]);
void ag_pad4(const ag_tensor *t, int64_t s4[4]);

#endif
