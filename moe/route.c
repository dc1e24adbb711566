/* The CPU reference of the Switch routing decision (moe/route.h): choices, entropy, capacity per group, and the
 * counting-sort permutation by expert. Plain loops over host arrays, in the order that defines the semantics; the
 * device twin (moe/cuda/route.cu) computes the same decisions with prefix counts. */
#include "moe/route.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/sx_error.h"

/* One body for f32 and f64 probabilities: exactly one of pf, pd is non-NULL. Widening a float to double is exact
 * and keeps its order, so the comparisons decide as they would on the floats themselves. */
static inline double prob_at(const float *pf, const double *pd, int64_t i) { return pd ? pd[i] : (double)pf[i]; }

static void route(const float *pf, const double *pd, int64_t N, int E, int K, int64_t group_tokens, int64_t capacity,
                  moe_route_result *r) {
    SX_ASSERT(E >= 1 && K >= 1 && K <= 2 && K <= E, "moe route: top-%d routing with %d experts", K, E);
    SX_ASSERT(N >= 0 && N * (int64_t)E <= INT32_MAX && N * (int64_t)K <= INT32_MAX,
              "moe route: %lld tokens x %d experts do not fit the int32 row indices", (long long)N, E);
    const int64_t G = group_tokens > 0 ? group_tokens : (N > 0 ? N : 1);
    SX_ASSERT(N % G == 0, "moe: %lld tokens are not a whole number of groups of %lld", (long long)N, (long long)G);

    /* 1. Choices: the top-k experts of each token, first index on ties (torch.argmax / topk order), and the
     * entropy, subtracted term by term in (t, e) order. */
    double h = 0;
    for (int64_t t = 0; t < N; t++) {
        const int64_t row = t * E;
        int32_t best = 0;
        for (int e = 1; e < E; e++)
            if (prob_at(pf, pd, row + e) > prob_at(pf, pd, row + best)) best = e;
        r->choice[t * K] = best;
        if (K == 2) {
            int32_t second = best == 0 ? 1 : 0;
            for (int e = 0; e < E; e++)
                if (e != best && prob_at(pf, pd, row + e) > prob_at(pf, pd, row + second)) second = e;
            r->choice[t * K + 1] = second;
        }
        for (int e = 0; e < E; e++) {
            double p = prob_at(pf, pd, row + e);
            if (p > 0) h -= p * log(p);
        }
    }
    r->entropy_sum = h;

    /* 2. Capacity per group: within a group, first choices claim slots left to right, then second choices
     * (GShard's priority); HF's cumsum over the sequence is the top-1 case (SPEC 4.1 step 6). off[0..E-1] serves
     * as the group's fill counters until step 3 writes the offsets. */
    int64_t *fill = r->off, *tpe = r->tokens_per_expert;
    memset(tpe, 0, sizeof(int64_t) * (size_t)E);
    int64_t n_kept = 0;
    for (int64_t g0 = 0; g0 < N; g0 += G) {
        memset(fill, 0, sizeof(int64_t) * (size_t)E);
        for (int k = 0; k < K; k++)
            for (int64_t t = g0; t < g0 + G; t++) {
                int32_t e = r->choice[t * K + k];
                uint8_t kept = capacity < 0 || fill[e] < capacity;
                r->keep[t * K + k] = kept;
                if (kept) {
                    fill[e]++;
                    tpe[e]++;
                    n_kept++;
                }
            }
    }
    r->n_kept = n_kept;

    /* 3. Permutation by expert (counting sort, stable in token order): rows of expert e are off[e]..off[e+1].
     * tokens_per_expert serves as the write cursors and is restored from the offsets afterwards. */
    int64_t *o = r->off;
    o[0] = 0;
    for (int e = 0; e < E; e++) o[e + 1] = o[e] + tpe[e];
    for (int e = 0; e < E; e++) tpe[e] = o[e];
    for (int64_t t = 0; t < N; t++)
        for (int k = 0; k < K; k++) {
            if (!r->keep[t * K + k]) {
                r->slot[t * K + k] = -1;
                continue;
            }
            int32_t e = r->choice[t * K + k];
            int64_t row = tpe[e]++;
            r->perm[row] = (int32_t)t;
            r->gidx[row] = (int32_t)(t * E + e);
            r->slot[t * K + k] = (int32_t)row;
        }
    for (int e = 0; e < E; e++) tpe[e] = o[e + 1] - o[e];

    /* 4. What the aux loss and the statistics read. */
    r->n_dropped = 0;
    for (int64_t t = 0; t < N; t++) {
        r->loss_index[t] = r->keep[t * K] ? r->choice[t * K] : 0; /* HF: argmax of an all-zero mask row is 0 */
        r->n_dropped += !r->keep[t * K];
    }
}

void moe_route_cpu(const float *probs, int64_t N, int E, int K, int64_t group_tokens, int64_t capacity, moe_route_result *r) {
    route(probs, NULL, N, E, K, group_tokens, capacity, r);
}

void moe_route_cpu_f64(const double *probs, int64_t N, int E, int K, int64_t group_tokens, int64_t capacity, moe_route_result *r) {
    route(NULL, probs, N, E, K, group_tokens, capacity, r);
}

/* ---- expert choice ----------------------------------------------------------------------------------------------- */

typedef struct {
    double p;
    int64_t t;
} ec_cand;

/* Higher probability first; on equal probabilities the earlier token (a stable top-k). */
static int ec_cmp(const void *a, const void *b) {
    const ec_cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->t > y->t) - (x->t < y->t);
}

static void route_ec(const float *pf, const double *pd, int64_t N, int E, int64_t group_tokens, int64_t capacity, moe_route_result *r) {
    SX_ASSERT(E >= 1 && capacity >= 1, "moe expert-choice route: %d experts, capacity %lld (must be >= 1)", E, (long long)capacity);
    SX_ASSERT(N >= 0 && N * (int64_t)E <= INT32_MAX, "moe route: %lld tokens x %d experts do not fit the int32 row indices", (long long)N, E);
    const int64_t G = group_tokens > 0 ? group_tokens : (N > 0 ? N : 1);
    SX_ASSERT(N % G == 0, "moe: %lld tokens are not a whole number of groups of %lld", (long long)N, (long long)G);
    const int64_t C = capacity < G ? capacity : G;
    double h = 0;
    for (int64_t t = 0; t < N; t++) {
        int32_t best = 0;
        for (int e = 0; e < E; e++) {
            double p = prob_at(pf, pd, t * E + e);
            if (p > 0) h -= p * log(p);
            if (p > prob_at(pf, pd, t * E + best)) best = e;
            r->choice[t * E + e] = e;
            r->keep[t * E + e] = 0;
        }
        r->loss_index[t] = best;
    }
    r->entropy_sum = h;
    /* each expert's top-C tokens of every group */
    ec_cand *c = malloc(sizeof(ec_cand) * (size_t)(G > 0 ? G : 1));
    for (int64_t g0 = 0; g0 < N; g0 += G)
        for (int e = 0; e < E; e++) {
            for (int64_t i = 0; i < G; i++) c[i] = (ec_cand){prob_at(pf, pd, (g0 + i) * E + e), g0 + i};
            qsort(c, (size_t)G, sizeof *c, ec_cmp);
            for (int64_t i = 0; i < C; i++) r->keep[c[i].t * E + e] = 1;
        }
    free(c);
    /* the permutation by expert, each expert's tokens in token order */
    int64_t *o = r->off, *tpe = r->tokens_per_expert;
    memset(tpe, 0, sizeof(int64_t) * (size_t)E);
    for (int64_t t = 0; t < N; t++)
        for (int e = 0; e < E; e++) tpe[e] += r->keep[t * E + e];
    o[0] = 0;
    for (int e = 0; e < E; e++) o[e + 1] = o[e] + tpe[e];
    for (int e = 0; e < E; e++) tpe[e] = o[e];
    r->n_dropped = 0;
    for (int64_t t = 0; t < N; t++) {
        bool any = false;
        for (int e = 0; e < E; e++) {
            if (!r->keep[t * E + e]) {
                r->slot[t * E + e] = -1;
                continue;
            }
            any = true;
            int64_t row = tpe[e]++;
            r->perm[row] = (int32_t)t;
            r->gidx[row] = (int32_t)(t * E + e);
            r->slot[t * E + e] = (int32_t)row;
        }
        r->n_dropped += !any;
    }
    for (int e = 0; e < E; e++) tpe[e] = o[e + 1] - o[e];
    r->n_kept = o[E];
}

void moe_route_expert_choice_cpu(const float *probs, int64_t N, int E, int64_t group_tokens, int64_t capacity, moe_route_result *r) {
    route_ec(probs, NULL, N, E, group_tokens, capacity, r);
}

void moe_route_expert_choice_cpu_f64(const double *probs, int64_t N, int E, int64_t group_tokens, int64_t capacity, moe_route_result *r) {
    route_ec(NULL, probs, N, E, group_tokens, capacity, r);
}
