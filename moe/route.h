/* The routing decision of the Switch layer on host arrays, the CPU reference (SPEC 4.1 steps 5-6, SPEC 9): top-k
 * choices (first index on ties), the router entropy, per-group capacity with left-to-right priority (first choices of
 * a group before its second choices) and the permutation of the kept (token, choice) rows by expert, stable in token
 * order. moe_switch_forward uses it; moe/cuda/route.cu is its device twin and tests/gpu/test_moe_cuda.c holds them
 * to identical decisions. */
#ifndef SX_MOE_ROUTE_H
#define SX_MOE_ROUTE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every array is the caller's: sizes in brackets (NK = N * K). Rows are "(token t, choice k)" pairs; (t, k) lives at
 * index t*K + k. Row r of the permuted order belongs to expert e iff off[e] <= r < off[e+1]. */
typedef struct {
    int32_t *choice;            /* [NK] the k-th expert of token t, before capacity (k = 0: the argmax) */
    uint8_t *keep;              /* [NK] 1 if (t, k) was dispatched */
    int32_t *slot;              /* [NK] the permuted row of (t, k), -1 if dropped (the inverse of perm) */
    int64_t *off;               /* [E+1] off[0] = 0, off[E] = n_kept */
    int64_t *tokens_per_expert; /* [E] kept rows per expert (all choices) */
    int32_t *perm;              /* [NK] (the first n_kept used) the token of each permuted row */
    int32_t *gidx;              /* [NK] (the first n_kept used) t*E + e of each permuted row: its gate in probs [N*E] */
    int32_t *loss_index;        /* [N] HF's expert index for the aux loss: the kept first choice, 0 if dropped (SPEC 4.2) */
    int64_t n_kept;             /* rows dispatched (all choices) */
    int64_t n_dropped;          /* tokens whose first choice was dropped */
    double entropy_sum;         /* sum over tokens of -sum_e p log p (terms with p > 0), accumulated in double */
} moe_route_result;

/* probs: [N, E] router probabilities, row-major. K in {1, 2}, K <= E. group_tokens: tokens per capacity group (N a
 * multiple of it; <= 0: one group of N). capacity: at most this many rows per expert per group, counted over first
 * choices left to right, then second choices left to right; < 0: dropless. N * max(E, K) must fit in int32.
 * The f32 variant compares and sums in double on the exact widening of each float, so both variants decide alike. */
void moe_route_cpu(const float *probs, int64_t N, int E, int K, int64_t group_tokens, int64_t capacity, moe_route_result *r);
void moe_route_cpu_f64(const double *probs, int64_t N, int E, int K, int64_t group_tokens, int64_t capacity, moe_route_result *r);

/* Expert-choice routing (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing"): in each group of
 * group_tokens tokens every expert takes the `capacity` tokens of highest probability for it (all of them when the
 * group is smaller; ties: the earlier token), so a token is processed by 0..E experts and every expert is full.
 * Rows are (token t, expert e) pairs at index t*E + e: the result's arrays are sized as for K = E, choice[t*E + e] =
 * e and keep[t*E + e] = 1 iff expert e chose t; perm / gidx / off list each expert's tokens in token order.
 * loss_index is the token's argmax (no load-balancing loss is needed: the load is balanced by construction) and
 * n_dropped counts the tokens no expert chose. capacity must be >= 1. */
void moe_route_expert_choice_cpu(const float *probs, int64_t N, int E, int64_t group_tokens, int64_t capacity, moe_route_result *r);
void moe_route_expert_choice_cpu_f64(const double *probs, int64_t N, int E, int64_t group_tokens, int64_t capacity, moe_route_result *r);

#ifdef __cplusplus
}
#endif
#endif
