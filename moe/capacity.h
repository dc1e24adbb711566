/* Expert capacity: every policy that decides how many tokens an expert may take from a group, and how big a group
 * is (SPEC 4.1 step 6, 4.3). The routing (moe/route.c) applies the plan; this file only computes it. */
#ifndef SX_MOE_CAPACITY_H
#define SX_MOE_CAPACITY_H

#include <stdbool.h>
#include <stdint.h>

/* HF: a fixed expert_capacity per sequence (one group = one sequence of L tokens). Factor (flaxformer / Megatron):
 * capacity = max(round(cf x G / E), min_capacity) per group of G tokens; cf 0 = dropless. */
typedef enum { MOE_CAPACITY_HF, MOE_CAPACITY_FACTOR } moe_capacity_mode;

typedef struct {
    moe_capacity_mode mode;
    int64_t expert_capacity;           /* HF mode */
    double train_factor, eval_factor;  /* factor mode; 0 = dropless */
    int min_capacity;                  /* factor mode: the floor */
    int64_t group_size;                /* factor mode: tokens per group; 0 (or one that does not divide the call's
                                        * tokens) = every token of the call in one group */
} moe_capacity_policy;

typedef struct {
    int64_t group_tokens;              /* consecutive tokens that share the capacity */
    int64_t capacity;                  /* per expert and group; -1 = dropless */
} moe_capacity_plan;

/* The plan of one layer call over n_tokens tokens made of sequences of seq_len tokens. */
moe_capacity_plan moe_capacity_for(const moe_capacity_policy *p, int num_experts, int64_t n_tokens, int64_t seq_len, bool training);

/* Capacity of one group from a factor: max(round(cf * group_tokens / E), min_capacity) (flaxformer rounds: SPEC
 * 4.3); cf <= 0 gives -1 (dropless). */
int64_t moe_capacity_from_factor(double cf, int64_t group_tokens, int num_experts, int min_capacity);

#endif
