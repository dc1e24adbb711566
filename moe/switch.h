/* The Switch layer (SPEC.md 4-5, 9): router in fp32 (jitter in training only, on the router input only), top-1
 * (or top-2) tokens-choose routing with per-group capacity and left-to-right priority, or expert-choice routing,
 * tokens permuted by expert,
 * the experts of a layer as one grouped computation over an [E, F, D] block, the gated combine, and what the
 * router losses and routing statistics need. Knows nothing about T5; moves no bytes between ranks itself. */
#ifndef SX_MOE_SWITCH_H
#define SX_MOE_SWITCH_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/ag.h"
#include "autograd/ag_int8.h"
#include "moe/capacity.h"
#include "parallel/par.h"

/* Who chooses: tokens choose their top-k experts (Switch, GShard), or experts choose their top-C tokens (Zhou et al.
 * 2022; an expert sees every token of its group, so a decoder would look at future tokens: encoder stacks only). */
typedef enum { MOE_ROUTING_TOKENS_CHOOSE, MOE_ROUTING_EXPERT_CHOICE } moe_routing;

typedef struct {
    int num_experts;
    moe_routing routing;
    int top_k;                 /* 1 or 2 (tokens choose) */
    /* capacity: per group of 'group_tokens' consecutive tokens (HF: one sequence), at most 'capacity' tokens per
     * expert; capacity < 0 means dropless (tokens choose only). Expert choice: each expert takes exactly
     * min(capacity, group_tokens) tokens of each group. */
    int64_t group_tokens;
    int64_t capacity;
    double jitter;             /* multiplicative U(1-j, 1+j) on the router input, training only */
    double expert_dropout;     /* inside the experts, after the activation */
    ag_act_kind act;           /* the experts' activation (ag_act) */
    bool gated;                /* act(x wi_0^T) * (x wi_1^T) */
    /* Expert parallelism: NULL keeps every expert here; otherwise the group's ranks each hold num_experts / size
     * consecutive experts (moe_weights then hold this rank's slice) and tokens travel by all-to-all(v). */
    par_group *ep;
} moe_config;

typedef struct {
    ag_tensor *router_w;       /* [E, D] */
    ag_tensor *router_b;       /* [E] or NULL */
    ag_tensor *wi;             /* [E, F, D] (non-gated) */
    ag_tensor *wi0, *wi1;      /* [E, F, D] (gated) */
    ag_tensor *wo;             /* [E, D, F] */
    /* 8-bit inference (autograd/ag_int8.h): when set, these replace the f32 matmuls of the router and the experts
     * (HF's load_in_8bit converts both); NULL: f32 */
    const ag_int8_weight *q_router, *q_wi, *q_wi0, *q_wi1, *q_wo;
    /* LoRA adapters of the expert blocks (moe/lora.h), added to the matmuls they adapt; NULL: none */
    const struct moe_lora *lora_wi, *lora_wi0, *lora_wi1, *lora_wo;
} moe_weights;                 /* expert blocks: [E_local, ...] under expert parallelism */

typedef struct {
    ag_tensor *y;              /* [N, D]: the layer output (gate * expert(x)); zero for dropped tokens */
    ag_tensor *logits;         /* [N, E] fp32 raw router logits (for the z-loss and the load-balancing loss) */
    int32_t *expert_index;     /* [N] top-1 expert before capacity */
    int32_t *loss_index;       /* [N] HF's index for the aux loss: the kept expert, 0 for a dropped token (SPEC 4.2) */
    uint8_t *kept;             /* [N] 1 if the token's (first) choice was dispatched (expert choice: any expert took it) */
    int64_t *tokens_per_expert;/* [E] tokens dispatched (all choices) */
    int64_t n_tokens, n_dropped;
    double entropy_sum;        /* sum over tokens of the router entropy */
} moe_output;

/* x: [N, D] router/expert input (the FF sub-layer's normed activations); N a multiple of group_tokens (or
 * group_tokens <= 0: one group). jitter_key / dropout_key: the counter-based RNG keys of this call. */
void moe_switch_forward(ag_ctx *ctx, const moe_config *cfg, const moe_weights *w, ag_tensor *x, ag_rng_key jitter_key,
                        ag_rng_key dropout_key, moe_output *out);

#endif
