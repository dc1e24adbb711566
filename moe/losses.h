/* The router losses (SPEC 5): the z-loss (mean squared log-sum-exp of the router logits) and the load-balancing
 * aux loss (E^2 mean_{b,e} f_{b,e} P_{b,e}), over the sparse layers of one stack, pooled as HF does or per layer as
 * t5x does; and how the stacks' values add into the training loss. */
#ifndef SX_MOE_LOSSES_H
#define SX_MOE_LOSSES_H

#include <stdint.h>

#include "autograd/ag.h"

/* Pooled (HF): every token of every layer of a stack in one mean. Per layer (t5x): each layer's losses alone,
 * averaged over every sparse layer of both stacks. */
typedef enum { MOE_LOSS_POOLED, MOE_LOSS_PER_LAYER } moe_loss_mode;

/* What the losses read from one sparse layer's routing (moe_output): */
typedef struct {
    ag_tensor *logits;          /* [B*L, E] raw router logits, fp32 */
    const int32_t *loss_index;  /* [B*L] the expert a token counts for (HF: the kept expert, 0 when dropped) */
} moe_loss_layer;

/* One stack's losses. z and aux are what the stack reports (pooled: the pooled value; per layer: the mean over its
 * layers); z_sum and aux_sum what it adds to the total before the division by the layer count (pooled: the same
 * tensors); n_layers 0 = the stack has no loss (all four NULL). */
typedef struct {
    ag_tensor *z, *aux, *z_sum, *aux_sum;
    int n_layers;
} moe_stack_losses;

/* The losses of n layers (batch B rows of L tokens each, E experts) of one stack. */
moe_stack_losses moe_router_losses(ag_ctx *ctx, moe_loss_mode mode, const moe_loss_layer *layers, int n, int64_t B, int64_t L, int E);

/* weight x (z_coef Z + aux_coef A) over the stacks: pooled, Z = the sum of the stacks' z; per layer, Z = the sum of
 * every layer's z over the number of layers (aux alike). NULL when no stack has a loss. */
ag_tensor *moe_router_loss_total(ag_ctx *ctx, moe_loss_mode mode, const moe_stack_losses *stacks, int n_stacks, double z_coef, double aux_coef,
                                 double weight);

#endif
