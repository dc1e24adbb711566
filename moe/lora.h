/* LoRA inside the experts: the low-rank update of a grouped expert matmul, one adapter per expert held as one
 * [E, r, in] / [E, out, r] block (train/lora.h builds them), applied to the rows each expert received. */
#ifndef SX_MOE_LORA_H
#define SX_MOE_LORA_H

#include "autograd/ag.h"

struct moe_lora {
    ag_tensor *a;      /* [E, r, in] */
    ag_tensor *b;      /* [E, out, r] */
    double scale;      /* alpha / r */
    double dropout;    /* on the adapter's input, training only */
    ag_rng_key key;
};

/* y [N, out] (the rows' x W_e^T) + scale * (dropout(x) A_e^T) B_e^T, rows offsets[e]..offsets[e+1] with expert e. */
ag_tensor *moe_lora_add(ag_ctx *ctx, ag_tensor *x, ag_tensor *y, const struct moe_lora *l, ag_tensor *offsets);

#endif
