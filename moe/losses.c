/* Router z-loss and load-balancing loss (moe/losses.h, SPEC 5). */
#include "moe/losses.h"

/* z and aux over a set of layers, pooled as HF does: every token of every layer in one mean, f and P averaged per
 * batch row over all n*L tokens, dropped tokens counted as expert 0 (loss_index). */
static void pooled(ag_ctx *ctx, const moe_loss_layer *layers, int n, int64_t B, int64_t L, int E, ag_tensor **z, ag_tensor **aux) {
    ag_arena *ha = ag_ctx_host_arena(ctx);
    ag_tensor *zsum = NULL, *psum = NULL;
    ag_tensor *counts = ag_zeros(ha, layers[0].logits->dtype, B, E);
    int64_t *cnt = ag_arena_calloc(ha, sizeof(int64_t) * (size_t)(B * E));
    for (int l = 0; l < n; l++) {
        ag_tensor *lse = ag_logsumexp(ctx, layers[l].logits); /* [B*L] */
        ag_tensor *zl = ag_sum(ctx, ag_square(ctx, lse));
        zsum = zsum ? ag_add(ctx, zsum, zl) : zl;
        ag_tensor *P = ag_softmax(ctx, layers[l].logits, NULL, NULL);
        ag_tensor *pe = ag_sum_last(ctx, ag_permute(ctx, ag_reshapev(ctx, P, B, L, E), (const int[]){0, 2, 1})); /* [B, E] */
        psum = psum ? ag_add(ctx, psum, pe) : pe;
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < L; t++) cnt[b * E + layers[l].loss_index[b * L + t]]++;
    }
    for (int64_t i = 0; i < B * E; i++) ag_set(counts, i, (double)cnt[i]);
    counts = ag_ctx_from_host(ctx, counts);
    double tokens = (double)L * n;
    *z = ag_scale(ctx, zsum, 1.0 / ((double)B * tokens));
    /* aux = E^2 mean_{b,e}(f Pm) with f = counts / tokens, Pm = psum / tokens */
    *aux = ag_scale(ctx, ag_sum(ctx, ag_mul(ctx, psum, counts)), (double)E / ((double)B * tokens * tokens));
}

moe_stack_losses moe_router_losses(ag_ctx *ctx, moe_loss_mode mode, const moe_loss_layer *layers, int n, int64_t B, int64_t L, int E) {
    moe_stack_losses s = {NULL, NULL, NULL, NULL, 0};
    if (n <= 0) return s;
    s.n_layers = n;
    if (mode == MOE_LOSS_POOLED) {
        pooled(ctx, layers, n, B, L, E, &s.z, &s.aux);
        s.z_sum = s.z;
        s.aux_sum = s.aux;
        return s;
    }
    /* t5x: each layer on its own; the stack reports its layers' mean */
    for (int l = 0; l < n; l++) {
        ag_tensor *z, *a;
        pooled(ctx, &layers[l], 1, B, L, E, &z, &a);
        s.z_sum = s.z_sum ? ag_add(ctx, s.z_sum, z) : z;
        s.aux_sum = s.aux_sum ? ag_add(ctx, s.aux_sum, a) : a;
    }
    s.z = ag_scale(ctx, s.z_sum, 1.0 / n);
    s.aux = ag_scale(ctx, s.aux_sum, 1.0 / n);
    return s;
}

ag_tensor *moe_router_loss_total(ag_ctx *ctx, moe_loss_mode mode, const moe_stack_losses *stacks, int n_stacks, double z_coef, double aux_coef,
                                 double weight) {
    ag_tensor *zt = NULL, *at = NULL;
    int layers = 0;
    for (int s = 0; s < n_stacks; s++) {
        if (!stacks[s].n_layers) continue;
        zt = zt ? ag_add(ctx, zt, stacks[s].z_sum) : stacks[s].z_sum;
        at = at ? ag_add(ctx, at, stacks[s].aux_sum) : stacks[s].aux_sum;
        layers += stacks[s].n_layers;
    }
    if (!zt) return NULL;
    double div = mode == MOE_LOSS_POOLED ? 1.0 : (double)layers;
    return ag_add(ctx, ag_scale(ctx, zt, weight * z_coef / div), ag_scale(ctx, at, weight * aux_coef / div));
}
