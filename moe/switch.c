/* The Switch layer on the autograd ops: fp32 router, top-k choices, capacity with left-to-right priority per group,
 * permutation of the kept tokens by expert, grouped expert FFN over the [E, F, D] blocks, gate, and scatter back.
 * HF v4.57 semantics by default (SPEC 4.1-4.2): a dropped token's output is 0, so it passes through the residual. */
#include "moe/switch.h"

#include <math.h>
#include <string.h>

int64_t moe_capacity_from_factor(double cf, int64_t group_tokens, int num_experts, int min_capacity) {
    if (cf <= 0) return -1;
    int64_t c = (int64_t)llround(cf * (double)group_tokens / (double)num_experts); /* flaxformer rounds (SPEC 4.3) */
    return c > min_capacity ? c : min_capacity;
}

static ag_tensor *act_apply(ag_ctx *ctx, moe_act a, ag_tensor *h) {
    switch (a) {
    case MOE_ACT_RELU: return ag_relu(ctx, h);
    case MOE_ACT_GELU_ERF: return ag_gelu_erf(ctx, h);
    case MOE_ACT_GELU_TANH: return ag_gelu_tanh(ctx, h);
    }
    SX_FATAL("unknown expert activation %d", (int)a);
}

void moe_switch_forward(ag_ctx *ctx, const moe_config *cfg, const moe_weights *w, ag_tensor *x, ag_rng_key jitter_key,
                        ag_rng_key dropout_key, moe_output *out) {
    char sx[96];
    SX_ASSERT(x->ndim == 2 && ag_dtype_is_float(x->dtype), "moe_switch_forward: x must be float [N, D], got %s", ag_shape_str(x, sx, sizeof sx));
    const int E = cfg->num_experts, K = cfg->top_k;
    const int64_t N = x->shape[0], D = x->shape[1];
    SX_ASSERT(K >= 1 && K <= 2 && K <= E, "moe: top-%d routing with %d experts", K, E);
    SX_ASSERT(w->router_w->shape[0] == E && w->router_w->shape[1] == D, "moe: router weight does not match [E=%d, D=%lld]", E, (long long)D);
    const int64_t G = cfg->group_tokens > 0 ? cfg->group_tokens : (N > 0 ? N : 1);
    SX_ASSERT(N % G == 0, "moe: %lld tokens are not a whole number of groups of %lld", (long long)N, (long long)G);

    /* 1. Router, fp32. Jitter multiplies a copy of the router input only (flaxformer; HF's leak into the experts,
     * issue #33969, is not reproduced: SPEC 9). */
    ag_tensor *xr = x;
    if (ctx->training && cfg->jitter > 0) {
        ag_tensor *noise = ag_new(ctx->act, x->dtype, N, D);
        float lo = (float)(1.0 - cfg->jitter), span = (float)(2.0 * cfg->jitter);
        for (int64_t i = 0; i < N * D; i++) ag_set(noise, i, lo + span * ag_rng_uniform(jitter_key, (uint64_t)i));
        xr = ag_mul(ctx, x, noise);
    }
    ag_tensor *logits = ag_matmul(ctx, xr, w->router_w, false, true); /* [N, E] */
    if (w->router_b) logits = ag_add(ctx, logits, w->router_b);
    ag_tensor *probs = ag_softmax(ctx, logits, NULL, NULL);
    /* Probabilities as double for the choices: f32 models read floats, the f64 gradient-check model doubles. */
    double *p = ag_arena_alloc(ctx->act, sizeof(double) * (size_t)(N * E + 1));
    if (probs->dtype == AG_F32)
        for (int64_t i = 0; i < N * E; i++) p[i] = ((const float *)probs->data)[i];
    else
        memcpy(p, probs->data, sizeof(double) * (size_t)(N * E));

    /* 2. Choices: the top-k experts of each token, first index on ties (torch.argmax / topk order). */
    int32_t *choice = ag_arena_alloc(ctx->act, sizeof(int32_t) * (size_t)(N * K + 1));
    out->entropy_sum = 0;
    for (int64_t t = 0; t < N; t++) {
        const double *pt = p + t * E;
        int32_t best = 0;
        for (int e = 1; e < E; e++)
            if (pt[e] > pt[best]) best = e;
        choice[t * K] = best;
        if (K == 2) {
            int32_t second = best == 0 ? 1 : 0;
            for (int e = 0; e < E; e++)
                if (e != best && pt[e] > pt[second]) second = e;
            choice[t * K + 1] = second;
        }
        for (int e = 0; e < E; e++)
            if (pt[e] > 0) out->entropy_sum -= pt[e] * log(pt[e]);
    }

    /* 3. Capacity per group: within a group, first choices claim slots left to right, then second choices
     * (GShard's priority); HF's cumsum over the sequence is the top-1 case (SPEC 4.1 step 6). */
    uint8_t *keep = ag_arena_calloc(ctx->act, (size_t)(N * K + 1));
    int64_t *fill = ag_arena_alloc(ctx->act, sizeof(int64_t) * (size_t)E);
    out->tokens_per_expert = ag_arena_calloc(ctx->act, sizeof(int64_t) * (size_t)E);
    int64_t n_kept = 0;
    for (int64_t g0 = 0; g0 < N; g0 += G) {
        memset(fill, 0, sizeof(int64_t) * (size_t)E);
        for (int k = 0; k < K; k++)
            for (int64_t t = g0; t < g0 + G; t++) {
                int32_t e = choice[t * K + k];
                if (cfg->capacity < 0 || fill[e] < cfg->capacity) {
                    fill[e]++;
                    keep[t * K + k] = 1;
                    out->tokens_per_expert[e]++;
                    n_kept++;
                }
            }
    }

    /* 4. Permutation by expert (counting sort, stable in token order): rows of expert e are off[e]..off[e+1]. */
    ag_tensor *off = ag_new(ctx->act, AG_I64, E + 1);
    int64_t *o = off->data;
    o[0] = 0;
    for (int e = 0; e < E; e++) o[e + 1] = o[e] + out->tokens_per_expert[e];
    ag_tensor *perm = ag_new(ctx->act, AG_I32, n_kept > 0 ? n_kept : 1);
    ag_tensor *gidx = ag_new(ctx->act, AG_I32, n_kept > 0 ? n_kept : 1);
    perm->shape[0] = gidx->shape[0] = perm->numel = gidx->numel = n_kept;
    memcpy(fill, o, sizeof(int64_t) * (size_t)E);
    for (int64_t t = 0; t < N; t++)
        for (int k = 0; k < K; k++) {
            if (!keep[t * K + k]) continue;
            int32_t e = choice[t * K + k];
            int64_t r = fill[e]++;
            ((int32_t *)perm->data)[r] = (int32_t)t;
            ((int32_t *)gidx->data)[r] = (int32_t)(t * E + e);
        }

    /* 5. Experts on the permuted tokens, one grouped computation per weight (never every expert x every token). */
    ag_tensor *xe = ag_gather_rows(ctx, x, perm); /* [Nk, D] */
    ag_tensor *h;
    if (cfg->gated)
        h = ag_mul(ctx, act_apply(ctx, cfg->act, ag_grouped_matmul(ctx, xe, w->wi0, off, true)), ag_grouped_matmul(ctx, xe, w->wi1, off, true));
    else
        h = act_apply(ctx, cfg->act, ag_grouped_matmul(ctx, xe, w->wi, off, true)); /* [Nk, F] */
    h = ag_dropout(ctx, h, cfg->expert_dropout, dropout_key);
    ag_tensor *ye = ag_grouped_matmul(ctx, h, w->wo, off, true); /* [Nk, D] */

    /* 6. Gate: the full softmax probability of the chosen expert (not renormalised; SPEC 4.1 step 7, and the
     * paper's eq. 2 for top-2), then back to token order. */
    ag_tensor *pflat = ag_reshapev(ctx, probs, N * E, 1);
    ag_tensor *gate = ag_gather_rows(ctx, pflat, gidx); /* [Nk, 1] */
    ye = ag_mul(ctx, ye, gate);
    out->y = ag_scatter_rows(ctx, ye, perm, N);
    out->logits = logits;

    /* 7. What the losses and statistics need. */
    out->expert_index = ag_arena_alloc(ctx->act, sizeof(int32_t) * (size_t)(N + 1));
    out->loss_index = ag_arena_alloc(ctx->act, sizeof(int32_t) * (size_t)(N + 1));
    out->kept = ag_arena_alloc(ctx->act, (size_t)(N + 1));
    out->n_dropped = 0;
    for (int64_t t = 0; t < N; t++) {
        out->expert_index[t] = choice[t * K];
        out->kept[t] = keep[t * K];
        out->loss_index[t] = keep[t * K] ? choice[t * K] : 0; /* HF: argmax of an all-zero mask row is 0 */
        out->n_dropped += !keep[t * K];
    }
    out->n_tokens = N;
}
