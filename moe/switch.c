/* The Switch layer on the autograd ops: fp32 router, top-k choices, capacity with left-to-right priority per group,
 * permutation of the kept tokens by expert, grouped expert FFN over the [E, F, D] blocks, gate, and scatter back.
 * HF v4.57 semantics by default (SPEC 4.1-4.2): a dropped token's output is 0, so it passes through the residual. */
#include "moe/switch.h"

#include "autograd/ag_cuda.h"
#include "moe/lora.h"
#include "moe/route.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* x W^T per expert group: the int8 weights when the layer has them, plus the LoRA update when it has one */
static ag_tensor *expert_matmul(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, const ag_int8_weight *q, ag_tensor *off, const struct moe_lora *lo) {
    ag_tensor *y = q ? ag_int8_grouped_linear(ctx, x, q, off) : ag_grouped_matmul(ctx, x, w, off, true);
    return lo ? moe_lora_add(ctx, x, y, lo, off) : y;
}

static ag_tensor *experts_local(ag_ctx *ctx, const moe_config *cfg, const moe_weights *w, ag_tensor *xe, ag_tensor *off, ag_rng_key dropout_key) {
    ag_tensor *h;
    if (cfg->gated)
        h = ag_mul(ctx, ag_act(ctx, cfg->act, expert_matmul(ctx, xe, w->wi0, w->q_wi0, off, w->lora_wi0)),
                   expert_matmul(ctx, xe, w->wi1, w->q_wi1, off, w->lora_wi1));
    else
        h = ag_act(ctx, cfg->act, expert_matmul(ctx, xe, w->wi, w->q_wi, off, w->lora_wi)); /* [Nk, F] */
    h = ag_dropout(ctx, h, cfg->expert_dropout, dropout_key);
    return expert_matmul(ctx, h, w->wo, w->q_wo, off, w->lora_wo); /* [Nk, D] */
}

/* ---- expert parallelism: rows to the owners of their experts and back ------------------------------------------- */

/* One direction of the exchange, as a tape op: forward sends rows by (send counts, displs); backward sends the
 * gradient rows back the other way. Counts are in rows; the transport moves floats. */
typedef struct {
    par_group *g;
    int64_t *sc, *sd, *rc, *rd; /* rows per peer: [size] each */
    int64_t D;
    float *tmp; /* the returning gradient, before it is added (sized when the plan is made: no malloc in a step) */
} a2a_plan;

static void a2a_move(par_group *g, const float *send, const int64_t *sc, const int64_t *sd, float *recv, const int64_t *rc, const int64_t *rd, int64_t D) {
    int n = par_group_size(g);
    int64_t buf[4 * 64], *e = n <= 64 ? buf : malloc(sizeof(int64_t) * 4 * (size_t)n);
    for (int r = 0; r < n; r++) {
        e[r] = sc[r] * D;
        e[n + r] = sd[r] * D;
        e[2 * n + r] = rc[r] * D;
        e[3 * n + r] = rd[r] * D;
    }
    sx_status s = par_alltoallv(g, send, e, e + n, recv, e + 2 * n, e + 3 * n, PAR_F32);
    if (e != buf) free(e);
    SX_ASSERT(s.ok, "expert-parallel token exchange: %s", s.msg);
}

static void a2a_forward(void *u, const ag_tensor *in, ag_tensor *out) {
    const a2a_plan *p = u;
    a2a_move(p->g, in->data, p->sc, p->sd, out->data, p->rc, p->rd, p->D);
}

static void a2a_backward(void *u, const ag_tensor *dout, ag_tensor *din) {
    const a2a_plan *p = u;
    /* the gradient goes back along the reverse plan, into a temporary, then adds */
    a2a_move(p->g, dout->data, p->rc, p->rd, p->tmp, p->sc, p->sd, p->D);
    float *d = din->data;
    for (int64_t i = 0; i < din->numel; i++) d[i] += p->tmp[i];
}

static ag_tensor *exchange(ag_ctx *ctx, par_group *g, ag_tensor *x, int64_t rows_out, const int64_t *sc, const int64_t *rc, const char *name) {
    int n = par_group_size(g);
    a2a_plan *p = ag_arena_alloc(ctx->act, sizeof *p);
    p->g = g;
    p->D = x->shape[1];
    p->sc = ag_arena_alloc(ctx->act, sizeof(int64_t) * 4 * (size_t)n);
    p->sd = p->sc + n;
    p->rc = p->sc + 2 * n;
    p->rd = p->sc + 3 * n;
    int64_t so = 0, ro = 0;
    for (int r = 0; r < n; r++) {
        p->sc[r] = sc[r];
        p->sd[r] = so;
        so += sc[r];
        p->rc[r] = rc[r];
        p->rd[r] = ro;
        ro += rc[r];
    }
    SX_ASSERT(so == x->shape[0] && ro == rows_out, "%s: plan of %lld/%lld rows for %lld/%lld", name, (long long)so, (long long)ro,
              (long long)x->shape[0], (long long)rows_out);
    p->tmp = ag_arena_alloc(ctx->act, sizeof(float) * (size_t)(x->numel > 0 ? x->numel : 1));
    ag_custom_fn *fn = ag_arena_alloc(ctx->act, sizeof *fn);
    fn->name = name;
    fn->forward = a2a_forward;
    fn->backward = a2a_backward;
    fn->user = p;
    return ag_custom(ctx, x, 2, AG_SHAPE(rows_out, x->shape[1]), fn);
}

/* xe: this rank's kept rows, sorted by global expert. Every rank of the EP group calls this in step, even with no
 * rows: the count exchange and both all-to-alls are collectives. Returns the expert outputs in xe's row order. */
static ag_tensor *experts_remote(ag_ctx *ctx, const moe_config *cfg, const moe_weights *w, ag_tensor *xe, const int64_t *tokens_per_expert,
                                 ag_rng_key dropout_key) {
    par_group *g = cfg->ep;
    const int n = par_group_size(g), E = cfg->num_experts, El = E / n;
    SX_ASSERT(E % n == 0, "expert parallelism: %d experts over %d ranks", E, n);
    /* rows for each (destination rank, its local expert), and the same from every source rank */
    int64_t *send_e = ag_arena_alloc(ctx->act, sizeof(int64_t) * (size_t)E), *recv_e = ag_arena_alloc(ctx->act, sizeof(int64_t) * (size_t)E);
    memcpy(send_e, tokens_per_expert, sizeof(int64_t) * (size_t)E);
    sx_status s = par_alltoall(g, send_e, recv_e, El, PAR_I64);
    SX_ASSERT(s.ok, "expert-parallel count exchange: %s", s.msg);
    int64_t *sc = ag_arena_calloc(ctx->act, sizeof(int64_t) * (size_t)n), *rc = ag_arena_calloc(ctx->act, sizeof(int64_t) * (size_t)n);
    int64_t R = 0;
    for (int r = 0; r < n; r++)
        for (int le = 0; le < El; le++) {
            sc[r] += send_e[r * El + le];
            rc[r] += recv_e[r * El + le];
            R += recv_e[r * El + le];
        }
    ag_tensor *xr = exchange(ctx, g, xe, R, sc, rc, "moe_dispatch"); /* [R, D] ordered [source][local expert] */
    /* regroup to [local expert][source] for the grouped GEMM, and remember the way back */
    ag_tensor *to_local = ag_new(ctx->act, AG_I32, R > 0 ? R : 1), *to_wire = ag_new(ctx->act, AG_I32, R > 0 ? R : 1);
    to_local->shape[0] = to_wire->shape[0] = to_local->numel = to_wire->numel = R;
    ag_tensor *off = ag_new(ctx->act, AG_I64, El + 1);
    int64_t *o = off->data, *src_start = ag_arena_alloc(ctx->act, sizeof(int64_t) * (size_t)(n * El + 1));
    int64_t pos = 0;
    for (int r = 0; r < n; r++)
        for (int le = 0; le < El; le++) {
            src_start[r * El + le] = pos;
            pos += recv_e[r * El + le];
        }
    int64_t k = 0;
    for (int le = 0; le < El; le++) {
        o[le] = k;
        for (int r = 0; r < n; r++)
            for (int64_t i = 0; i < recv_e[r * El + le]; i++, k++) {
                ((int32_t *)to_local->data)[k] = (int32_t)(src_start[r * El + le] + i);
                ((int32_t *)to_wire->data)[src_start[r * El + le] + i] = (int32_t)k;
            }
    }
    o[El] = k;
    ag_tensor *xl = ag_gather_rows(ctx, xr, to_local);
    ag_tensor *yl = experts_local(ctx, cfg, w, xl, off, dropout_key);
    ag_tensor *yr = ag_gather_rows(ctx, yl, to_wire);
    return exchange(ctx, g, yr, xe->shape[0], rc, sc, "moe_combine"); /* back to the senders, in xe's order */
}

/* 1. Router logits, fp32. Jitter multiplies a copy of the router input only (flaxformer; HF's leak into the experts,
 * issue #33969, is not reproduced: SPEC 9). */
static ag_tensor *router_logits(ag_ctx *ctx, const moe_config *cfg, const moe_weights *w, ag_tensor *x, ag_rng_key jitter_key) {
    const int64_t N = x->shape[0], D = x->shape[1];
    ag_tensor *xr = x;
    if (ctx->training && cfg->jitter > 0) {
        ag_tensor *noise = ag_new(ag_ctx_host_arena(ctx), x->dtype, N, D);
        float lo = (float)(1.0 - cfg->jitter), span = (float)(2.0 * cfg->jitter), u[256];
        for (int64_t i0 = 0; i0 < N * D; i0 += 256) { /* every bit of the generator: 4 uniforms per Philox block */
            int64_t m = N * D - i0 < 256 ? N * D - i0 : 256;
            ag_rng_uniform_words(jitter_key, (uint64_t)i0, m, u);
            for (int64_t j = 0; j < m; j++) ag_set(noise, i0 + j, lo + span * u[j]);
        }
        xr = ag_mul(ctx, x, ag_ctx_from_host(ctx, noise));
    }
    /* the router in fp32 whatever the context's precision (the paper's selective precision): no bf16 operands */
    const bool mixed = ctx->mixed_bf16;
    ctx->mixed_bf16 = false;
    ag_tensor *logits = w->q_router ? ag_int8_linear(ctx, xr, w->q_router) /* [N, E] */
                                    : ag_matmul(ctx, xr, w->router_w, false, true);
    ctx->mixed_bf16 = mixed;
    return w->router_b ? ag_add(ctx, logits, w->router_b) : logits;
}

/* The rows of one routing decision: perm (kept rows by expert), gidx (their (token, expert) index into the
 * probabilities), off (expert offsets, on the host: grouped_matmul reads them there). */
typedef struct {
    moe_route_result rt;
    ag_tensor *perm, *gidx, *off;
} routing;

/* 2-4. The routing decision on the host (moe/route.c): choices, entropy, capacity per group, and the permutation of
 * the kept rows by expert. In a CUDA context the f32 probabilities come to the host for it (one copy and one
 * synchronisation per layer) and perm / gidx go back to the device. moe_cuda_route (moe/moe_cuda.h) is the device
 * twin that would remove the round trip. */
static routing route(ag_ctx *ctx, const moe_config *cfg, const ag_tensor *probs, int K, int64_t G) {
    ag_arena *ha = ag_ctx_host_arena(ctx);
    const bool ec = cfg->routing == MOE_ROUTING_EXPERT_CHOICE;
    const int E = cfg->num_experts;
    const int64_t N = probs->shape[0], NK = N * K;
    const ag_tensor *hp = probs;
    if (ctx->device != AG_DEV_CPU) {
        SX_ASSERT(probs->dtype == AG_F32, "moe_switch_forward: the routing of a CUDA context runs on f32 probabilities");
        hp = ag_tensor_to_host(ha, probs);
    }
    SX_ASSERT(hp->device == AG_DEV_CPU && (hp->dtype == AG_F32 || hp->dtype == AG_F64),
              "moe_switch_forward: the routing runs on f32/f64 host probabilities");
    routing r;
    r.off = ag_new(ha, AG_I64, E + 1);
    r.perm = ag_new(ha, AG_I32, NK > 0 ? NK : 1);
    r.gidx = ag_new(ha, AG_I32, NK > 0 ? NK : 1);
    r.rt = (moe_route_result){
        .choice = ag_arena_alloc(ha, sizeof(int32_t) * (size_t)(NK + 1)),
        .keep = ag_arena_alloc(ha, (size_t)(NK + 1)),
        .slot = ag_arena_alloc(ha, sizeof(int32_t) * (size_t)(NK + 1)),
        .off = r.off->data,
        .tokens_per_expert = ag_arena_alloc(ha, sizeof(int64_t) * (size_t)E),
        .perm = r.perm->data,
        .gidx = r.gidx->data,
        .loss_index = ag_arena_alloc(ha, sizeof(int32_t) * (size_t)(N + 1)),
    };
    const bool f32 = hp->dtype == AG_F32;
    if (ec && f32)
        moe_route_expert_choice_cpu(hp->data, N, E, G, cfg->capacity, &r.rt);
    else if (ec)
        moe_route_expert_choice_cpu_f64(hp->data, N, E, G, cfg->capacity, &r.rt);
    else if (f32)
        moe_route_cpu(hp->data, N, E, K, G, cfg->capacity, &r.rt);
    else
        moe_route_cpu_f64(hp->data, N, E, K, G, cfg->capacity, &r.rt);
    r.perm->shape[0] = r.gidx->shape[0] = r.perm->numel = r.gidx->numel = r.rt.n_kept;
    r.perm = ag_ctx_from_host(ctx, r.perm);
    r.gidx = ag_ctx_from_host(ctx, r.gidx);
    return r;
}

/* 6. Gate: the full softmax probability of the chosen expert (not renormalised; SPEC 4.1 step 7, and the paper's
 * eq. 2 for top-2), then back to token order. */
static ag_tensor *combine(ag_ctx *ctx, ag_tensor *ye, ag_tensor *probs, const routing *r) {
    const int64_t N = probs->shape[0], E = probs->shape[1];
    ag_tensor *gate = ag_gather_rows(ctx, ag_reshapev(ctx, probs, N * E, 1), r->gidx); /* [Nk, 1] */
    return ag_scatter_rows(ctx, ag_mul(ctx, ye, gate), r->perm, N);
}

/* 7. What the losses and statistics need. */
static void record(ag_ctx *ctx, const moe_config *cfg, const routing *r, int K, int64_t N, moe_output *out) {
    ag_arena *ha = ag_ctx_host_arena(ctx);
    const bool ec = cfg->routing == MOE_ROUTING_EXPERT_CHOICE;
    const moe_route_result *rt = &r->rt;
    out->tokens_per_expert = rt->tokens_per_expert;
    out->entropy_sum = rt->entropy_sum;
    out->expert_index = ag_arena_alloc(ha, sizeof(int32_t) * (size_t)(N + 1));
    out->kept = ag_arena_alloc(ha, (size_t)(N + 1));
    for (int64_t t = 0; t < N; t++) {
        out->expert_index[t] = ec ? rt->loss_index[t] : rt->choice[t * K];
        bool any = !ec && rt->keep[t * K];
        for (int e = 0; ec && e < cfg->num_experts; e++) any |= rt->keep[t * cfg->num_experts + e] != 0;
        out->kept[t] = any;
    }
    out->loss_index = rt->loss_index;
    out->n_dropped = rt->n_dropped;
    out->n_tokens = N;
}

void moe_switch_forward(ag_ctx *ctx, const moe_config *cfg, const moe_weights *w, ag_tensor *x, ag_rng_key jitter_key,
                        ag_rng_key dropout_key, moe_output *out) {
    char sx[96];
    SX_ASSERT(x->ndim == 2 && ag_dtype_is_float(x->dtype), "moe_switch_forward: x must be float [N, D], got %s", ag_shape_str(x, sx, sizeof sx));
    const bool ec = cfg->routing == MOE_ROUTING_EXPERT_CHOICE;
    const int E = cfg->num_experts, K = ec ? cfg->num_experts : cfg->top_k; /* expert choice: a row per (token, expert) */
    const int64_t N = x->shape[0], D = x->shape[1];
    SX_ASSERT(ec || (K >= 1 && K <= 2 && K <= E), "moe: top-%d routing with %d experts", K, E);
    SX_ASSERT(!ec || cfg->capacity >= 1, "moe: expert-choice routing needs a capacity >= 1, got %lld", (long long)cfg->capacity);
    SX_ASSERT(w->router_w->shape[0] == E && w->router_w->shape[1] == D, "moe: router weight does not match [E=%d, D=%lld]", E, (long long)D);
    const int64_t G = cfg->group_tokens > 0 ? cfg->group_tokens : (N > 0 ? N : 1);
    SX_ASSERT(N % G == 0, "moe: %lld tokens are not a whole number of groups of %lld", (long long)N, (long long)G);
    SX_ASSERT(ctx->device == AG_DEV_CPU || !cfg->ep, "moe_switch_forward: expert parallelism runs on the CPU only for now");

    ag_tensor *logits = router_logits(ctx, cfg, w, x, jitter_key);
    ag_tensor *probs = ag_softmax(ctx, logits, NULL, NULL);
    routing r = route(ctx, cfg, probs, K, G);
    /* 5. Experts on the permuted tokens, one grouped computation per weight (never every expert x every token).
     * Under expert parallelism the rows travel to the ranks that own their experts and back. */
    ag_tensor *xe = ag_gather_rows(ctx, x, r.perm); /* [Nk, D] */
    ag_tensor *ye = cfg->ep ? experts_remote(ctx, cfg, w, xe, r.rt.tokens_per_expert, dropout_key) : experts_local(ctx, cfg, w, xe, r.off, dropout_key);
    out->y = combine(ctx, ye, probs, &r);
    out->logits = logits;
    record(ctx, cfg, &r, K, N, out);
}
