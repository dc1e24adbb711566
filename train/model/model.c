/* The Switch Transformer: the parameter table built from the config (HF names, SPEC 2.1), HF's initialisation, and
 * the forward graph of SPEC 3 (T5 blocks) with moe/ Switch layers and the router losses of SPEC 5. */
#include "train/model/model.h"

#include "autograd/ag_cuda.h"
#include "train/lora.h"
#include "train/model/model_int8.h"
#include "train/run_checks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the parameter table --------------------------------------------------------------------------------------- */

typedef struct {
    model *m;
    int cap;
} table_builder;

static sx_status model_build(model *m, const model_config *cfg, ag_dtype dtype);

static int add_param(table_builder *tb, param_kind kind, double std, bool decay, int n_experts, int ndim, const int64_t *shape,
                     const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static int add_param(table_builder *tb, param_kind kind, double std, bool decay, int n_experts, int ndim, const int64_t *shape,
                     const char *fmt, ...) {
    model *m = tb->m;
    if (m->n_params == tb->cap) {
        tb->cap = tb->cap ? 2 * tb->cap : 64;
        m->params = realloc(m->params, sizeof(param_desc) * (size_t)tb->cap);
        SX_ASSERT(m->params, "out of memory building the parameter table");
    }
    param_desc *p = &m->params[m->n_params];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->kind = kind;
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= shape[i];
    }
    p->n_experts = n_experts;
    p->expert_offset = n_experts ? m->ep_rank * n_experts : 0;
    p->init_std = std;
    p->decay = decay;
    p->offset = m->n_floats;
    m->n_floats += (p->numel + 15) & ~(int64_t)15; /* 64-byte aligned spans */
    return m->n_params++;
}

#define SH(...) AG_NDIM(__VA_ARGS__), AG_SHAPE(__VA_ARGS__)

/* train/lora.c's way into the builder: adapters decay (HF Trainer's decay names include lora_A/lora_B) */
static int add_param_named(void *tb, param_kind kind, int n_experts, int ndim, const int64_t *shape, const char *name) {
    return add_param(tb, kind, 0.0, true, n_experts, ndim, shape, "%s", name);
}

static void add_attention(table_builder *tb, const model_config *c, const char *prefix, const char *mod, int *q, int *k, int *v, int *o) {
    int64_t D = c->d_model, inner = (int64_t)c->num_heads * c->d_kv;
    double f = c->initializer_factor;
    *q = add_param(tb, PK_ATTN_Q, f * pow((double)D * c->d_kv, -0.5), true, 0, SH(inner, D), "%s.%s.q.weight", prefix, mod);
    *k = add_param(tb, PK_ATTN_K, f * pow((double)D, -0.5), true, 0, SH(inner, D), "%s.%s.k.weight", prefix, mod);
    *v = add_param(tb, PK_ATTN_V, f * pow((double)D, -0.5), true, 0, SH(inner, D), "%s.%s.v.weight", prefix, mod);
    *o = add_param(tb, PK_ATTN_O, f * pow((double)inner, -0.5), true, 0, SH(D, inner), "%s.%s.o.weight", prefix, mod);
}

static void add_ffn(table_builder *tb, const model_config *c, const char *prefix, block_params *bp) {
    int64_t D = c->d_model, F = c->d_ff, E_all = c->num_experts, E = c->num_experts / tb->m->ep_size; /* E: experts held here */
    double f = c->initializer_factor;
    bp->wi = bp->wi0 = bp->wi1 = bp->wo = bp->router = bp->router_bias = -1;
    if (!bp->sparse) {
        if (c->gated) {
            bp->wi0 = add_param(tb, PK_WI, f * pow((double)D, -0.5), true, 0, SH(F, D), "%s.mlp.wi_0.weight", prefix);
            bp->wi1 = add_param(tb, PK_WI, f * pow((double)D, -0.5), true, 0, SH(F, D), "%s.mlp.wi_1.weight", prefix);
        } else {
            bp->wi = add_param(tb, PK_WI, f * pow((double)D, -0.5), true, 0, SH(F, D), "%s.mlp.wi.weight", prefix);
        }
        bp->wo = add_param(tb, PK_WO, f * pow((double)F, -0.5), true, 0, SH(D, F), "%s.mlp.wo.weight", prefix);
        return;
    }
    bp->router = add_param(tb, PK_ROUTER, f * 1.0, true, 0, SH(E_all, D), "%s.mlp.router.classifier.weight", prefix);
    if (c->router_bias) bp->router_bias = add_param(tb, PK_ROUTER_BIAS, 0.0, false, 0, SH(E_all), "%s.mlp.router.classifier.bias", prefix);
    /* HF initialises both expert matrices with d_model^-0.5 (its _init_weights for SparseMLP). */
    if (c->gated) {
        bp->wi0 = add_param(tb, PK_WI, f * pow((double)D, -0.5), true, (int)E, SH(E, F, D), "%s.mlp.experts.expert_%%d.wi_0.weight", prefix);
        bp->wi1 = add_param(tb, PK_WI, f * pow((double)D, -0.5), true, (int)E, SH(E, F, D), "%s.mlp.experts.expert_%%d.wi_1.weight", prefix);
    } else {
        bp->wi = add_param(tb, PK_WI, f * pow((double)D, -0.5), true, (int)E, SH(E, F, D), "%s.mlp.experts.expert_%%d.wi.weight", prefix);
    }
    bp->wo = add_param(tb, PK_WO, f * pow((double)D, -0.5), true, (int)E, SH(E, D, F), "%s.mlp.experts.expert_%%d.wo.weight", prefix);
}

sx_status model_init(model *m, const model_config *cfg) { return model_init_dtype(m, cfg, AG_F32); }

sx_status model_init_ep(model *m, const model_config *cfg, par_group *ep) {
    int n = par_group_size(ep);
    if (cfg->num_experts % n) return sx_errorf("parallel.expert_parallel = %d does not divide model.num_experts = %d", n, cfg->num_experts);
    memset(m, 0, sizeof *m);
    m->ep_size = n;
    m->ep_rank = par_group_rank(ep);
    SX_TRY(model_build(m, cfg, AG_F32));
    m->ep = ep;
    return sx_ok();
}

sx_status model_init_dtype(model *m, const model_config *cfg, ag_dtype dtype) {
    memset(m, 0, sizeof *m);
    m->ep_size = 1;
    return model_build(m, cfg, dtype);
}

sx_status model_init_inference(model *m, const model_config *cfg) {
    memset(m, 0, sizeof *m);
    m->ep_size = 1;
    m->inference = true;
    return model_build(m, cfg, AG_F32);
}

static sx_status model_build(model *m, const model_config *cfg, ag_dtype dtype) {
    SX_ASSERT(dtype == AG_F32 || dtype == AG_F64, "model: dtype must be f32 (training) or f64 (gradient checks)");
    SX_TRY(run_checks_model_memory(cfg, m->ep_size, !m->inference)); /* before any size is multiplied out */
    m->cfg = *cfg;
    m->dtype = dtype;
    const model_config *c = &m->cfg;
    table_builder tb = {m, 0};
    int64_t V = c->vocab_size, D = c->d_model, H = c->num_heads, NB = c->relative_attention_num_buckets;
    double f = c->initializer_factor;
    m->shared = add_param(&tb, PK_EMBED, f * 1.0, true, 0, SH(V, D), "shared.weight");
    m->enc = calloc((size_t)c->num_layers, sizeof(block_params));
    m->dec = calloc((size_t)c->num_decoder_layers, sizeof(block_params));
    SX_ASSERT(m->enc && m->dec, "out of memory");
    char prefix[96];
    for (int s = 0; s < 2; s++) {
        int L = s ? c->num_decoder_layers : c->num_layers, step = s ? c->decoder_sparse_step : c->encoder_sparse_step;
        const char *stack = s ? "decoder" : "encoder";
        for (int i = 0; i < L; i++) {
            block_params *bp = s ? &m->dec[i] : &m->enc[i];
            memset(bp, -1, sizeof *bp);
            bp->sparse = model_config_block_is_sparse(step, i);
            snprintf(prefix, sizeof prefix, "%s.block.%d.layer.0", stack, i);
            add_attention(&tb, c, prefix, "SelfAttention", &bp->q, &bp->k, &bp->v, &bp->o);
            if (i == 0) {
                int rb = add_param(&tb, PK_RELBIAS, f * pow((double)D, -0.5), false, 0, SH(NB, H), "%s.SelfAttention.relative_attention_bias.weight", prefix);
                if (s) m->dec_relbias = rb;
                else m->enc_relbias = rb;
            }
            bp->ln_attn = add_param(&tb, PK_NORM, 0, false, 0, SH(D), "%s.layer_norm.weight", prefix);
            int ff_layer = 1;
            if (s) {
                snprintf(prefix, sizeof prefix, "%s.block.%d.layer.1", stack, i);
                add_attention(&tb, c, prefix, "EncDecAttention", &bp->xq, &bp->xk, &bp->xv, &bp->xo);
                bp->ln_cross = add_param(&tb, PK_NORM, 0, false, 0, SH(D), "%s.layer_norm.weight", prefix);
                ff_layer = 2;
            }
            snprintf(prefix, sizeof prefix, "%s.block.%d.layer.%d", stack, i, ff_layer);
            add_ffn(&tb, c, prefix, bp);
            bp->ln_ff = add_param(&tb, PK_NORM, 0, false, 0, SH(D), "%s.layer_norm.weight", prefix);
        }
        int fl = add_param(&tb, PK_NORM, 0, false, 0, SH(D), "%s.final_layer_norm.weight", stack);
        if (s) m->dec_final_ln = fl;
        else m->enc_final_ln = fl;
    }
    m->lm_head = c->tie_word_embeddings ? -1 : add_param(&tb, PK_HEAD, f * 1.0, true, 0, SH(V, D), "lm_head.weight");
    SX_TRY(lora_build(m, add_param_named, &tb)); /* LoRA adapters, laid out first; n_grad_floats */

    ag_arena_init(&m->arena, "parameters", 0);
    size_t es = ag_dtype_size(dtype);
    char *wb = ag_arena_calloc(&m->arena, es * (size_t)m->n_floats);
    char *gb = m->inference ? NULL : ag_arena_calloc(&m->arena, es * (size_t)m->n_grad_floats);
    if (dtype == AG_F32) {
        m->w = (float *)wb;
        m->g = (float *)gb;
    }
    m->t = ag_arena_calloc(&m->arena, sizeof(ag_tensor *) * (size_t)m->n_params);
    for (int i = 0; i < m->n_params; i++) {
        param_desc *p = &m->params[i];
        m->t[i] = ag_tensor_view(&m->arena, dtype, p->ndim, p->shape, wb + es * (size_t)p->offset);
        if (gb && !p->no_grad) m->t[i]->grad = ag_tensor_view(&m->arena, dtype, p->ndim, p->shape, gb + es * (size_t)p->offset);
        m->t[i]->requires_grad = gb != NULL && !p->no_grad;
        m->t[i]->name = p->name;
    }
    return sx_ok();
}

void model_to_device(model *m, ag_device dev) {
    SX_ASSERT(dev != AG_DEV_CPU, "model_to_device: pass a device (AG_DEV_CUDA)");
    SX_ASSERT(m->device == AG_DEV_CPU, "model_to_device: the model is already on a device");
    SX_ASSERT(m->dtype == AG_F32 && m->w, "model_to_device: f32 models only");
    size_t bytes = sizeof(float) * (size_t)m->n_floats, gbytes = sizeof(float) * (size_t)m->n_grad_floats;
    ag_arena_init_device(&m->dev_arena, "parameters-device", bytes + (m->g ? gbytes : 0) + 256, dev);
    m->dw = ag_arena_alloc(&m->dev_arena, bytes);
    m->dg = m->g ? ag_arena_alloc(&m->dev_arena, gbytes) : NULL;
    ag_cuda_memcpy(m->dw, m->w, bytes, AG_COPY_H2D);
    if (m->g) ag_cuda_memcpy(m->dg, m->g, gbytes, AG_COPY_H2D);
    m->host_t = m->t;
    m->t = ag_arena_calloc(&m->arena, sizeof(ag_tensor *) * (size_t)m->n_params);
    for (int i = 0; i < m->n_params; i++) {
        param_desc *p = &m->params[i];
        m->t[i] = ag_tensor_view(&m->dev_arena, AG_F32, p->ndim, p->shape, m->dw + p->offset);
        if (m->dg && !p->no_grad) m->t[i]->grad = ag_tensor_view(&m->dev_arena, AG_F32, p->ndim, p->shape, m->dg + p->offset);
        m->t[i]->requires_grad = m->dg != NULL && !p->no_grad;
        m->t[i]->name = p->name;
    }
    m->device = dev;
}

void model_weights_to_host(model *m) {
    if (m->device != AG_DEV_CPU) ag_cuda_memcpy(m->w, m->dw, sizeof(float) * (size_t)m->n_floats, AG_COPY_D2H);
}

void model_weights_to_device(model *m) {
    if (m->device != AG_DEV_CPU) ag_cuda_memcpy(m->dw, m->w, sizeof(float) * (size_t)m->n_floats, AG_COPY_H2D);
}

void model_grads_to_host(model *m) {
    if (m->device != AG_DEV_CPU && m->g) ag_cuda_memcpy(m->g, m->dg, sizeof(float) * (size_t)m->n_grad_floats, AG_COPY_D2H);
}

void model_zero_grads(model *m) {
    if (m->device != AG_DEV_CPU) {
        if (m->dg) ag_cuda_memset0(m->dg, sizeof(float) * (size_t)m->n_grad_floats);
    } else if (m->g) {
        memset(m->g, 0, sizeof(float) * (size_t)m->n_grad_floats);
    } else if (m->dtype != AG_F32 && !m->inference) {
        for (int i = 0; i < m->n_params; i++) ag_zero_grad(m->t[i]);
    }
}

void model_free(model *m) {
    if (m->q8) model_int8_free(m);
    lora_free(m);
    if (m->device != AG_DEV_CPU) ag_arena_free(&m->dev_arena);
    free(m->params);
    free(m->enc);
    free(m->dec);
    ag_arena_free(&m->arena);
    memset(m, 0, sizeof *m);
}

void model_init_weights(model *m, uint64_t seed) {
    for (int i = 0; i < m->n_params; i++) {
        param_desc *p = &m->params[i];
        ag_tensor *w = m->t[i];
        if (p->kind == PK_NORM) {
            ag_fill(w, m->cfg.initializer_factor);
            continue;
        }
        if (lora_is_adapter(p)) {
            lora_init_param(m, i, seed);
            continue;
        }
        ag_rng_key k = ag_rng_make(seed, (uint64_t)i, 0x1417);
        /* element j of an expert slice is element j + first of the whole [E, ...] block: every expert-parallel
         * layout draws the same weights */
        int64_t first = p->n_experts ? (int64_t)p->expert_offset * (p->numel / p->n_experts) : 0;
        int64_t whole = p->n_experts ? (int64_t)m->cfg.num_experts * (p->numel / p->n_experts) : p->numel;
        if (p->kind == PK_ROUTER && m->cfg.router_init_paper) {
            /* the paper's 2.4: truncated normal (at 2 sigma) with std sqrt(0.1 / fan_in) */
            double sd = sqrt(0.1 / (double)m->cfg.d_model);
            for (int64_t j = 0; j < p->numel; j++) {
                double v;
                uint64_t draw = (uint64_t)(first + j);
                do {
                    v = ag_rng_normal(k, draw);
                    draw += (uint64_t)whole;
                } while (fabs(v) > 2.0);
                ag_set(w, j, sd * v);
            }
            continue;
        }
        for (int64_t j = 0; j < p->numel; j++) ag_set(w, j, p->init_std * ag_rng_normal(k, (uint64_t)(first + j)));
    }
}

int64_t model_param_count_global(const model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++)
        n += m->params[i].n_experts ? m->params[i].numel / m->params[i].n_experts * m->cfg.num_experts : m->params[i].numel;
    return n;
}

int64_t model_param_count(const model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++) n += m->params[i].numel;
    return n;
}

const char *model_param_hf_name(const model *m, int i, int e, char *buf, size_t cap) {
    const param_desc *p = &m->params[i];
    if (p->n_experts) {
        char fmt[160];
        snprintf(fmt, sizeof fmt, "%s", p->name);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(buf, cap, fmt, e + p->expert_offset);
#pragma GCC diagnostic pop
    } else {
        snprintf(buf, cap, "%s", p->name);
    }
    return buf;
}

int model_find_param(const model *m, const char *hf_name, int *expert) {
    char buf[160];
    for (int i = 0; i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        int ne = p->n_experts ? p->n_experts : 1;
        for (int e = 0; e < ne; e++) {
            if (!strcmp(model_param_hf_name(m, i, e, buf, sizeof buf), hf_name)) {
                if (expert) *expert = p->n_experts ? e : -1;
                return i;
            }
        }
    }
    return -1;
}

/* ---- position buckets and masks ---------------------------------------------------------------------------------- */

void model_shift_right(const model_config *c, const int32_t *labels, int64_t B, int64_t T, int32_t *out) {
    for (int64_t b = 0; b < B; b++) {
        out[b * T] = c->decoder_start_token_id;
        for (int64_t t = 1; t < T; t++) {
            int32_t v = labels[b * T + t - 1];
            out[b * T + t] = v == AG_IGNORE_INDEX ? c->pad_token_id : v;
        }
    }
}

/* Small tensors built on the host (indices, masks, counts) live in ag_ctx_host_arena and reach the context's device
 * through ag_ctx_from_host (autograd/ag.h). */

#define FINFO_MIN (-3.4028234663852886e38f) /* torch.finfo(torch.float32).min: HF's additive mask value (SPEC 3.6) */

/* bias [1, H, Lq, Lk] from the bucket table [NB, H]: query q0 + q attends to key k with relative position
 * k - (q0 + q). q0 is 0 for a whole sequence, the position being decoded for one step of incremental decoding. */
static ag_tensor *position_bias(ag_ctx *ctx, const model *m, int table, int64_t q0, int64_t Lq, int64_t Lk, bool bidirectional) {
    ag_tensor *buckets = ag_new(ag_ctx_host_arena(ctx), AG_I32, Lq, Lk);
    int32_t *bk = buckets->data;
    /* the bucket depends on k - q alone: one per relative position in [-(q0+Lq-1), Lk-1-q0] */
    const int64_t lo = -(q0 + Lq - 1);
    int32_t *by_rel = ag_arena_alloc(ag_ctx_host_arena(ctx), sizeof(int32_t) * (size_t)(Lq + Lk - 1));
    for (int64_t r = lo; r < Lk - q0; r++)
        by_rel[r - lo] = model_relative_bucket(r, bidirectional, m->cfg.relative_attention_num_buckets, m->cfg.relative_attention_max_distance);
    for (int64_t q = 0; q < Lq; q++)
        for (int64_t k = 0; k < Lk; k++) bk[q * Lk + k] = by_rel[k - q0 - q - lo];
    ag_tensor *vals = ag_embedding(ctx, m->t[table], ag_ctx_from_host(ctx, buckets)); /* [Lq, Lk, H] */
    ag_tensor *hqk = ag_permute(ctx, vals, (const int[]){2, 0, 1});   /* [H, Lq, Lk] */
    return ag_reshapev(ctx, hqk, 1, m->cfg.num_heads, Lq, Lk);
}

/* (1 - mask) * finfo.min as [B, 1, 1, S]: -0.0 where attended, min where padded (SPEC 3.6). */
static ag_tensor *padding_mask(ag_ctx *ctx, ag_dtype dt, const int32_t *attn, int64_t B, int64_t S) {
    ag_tensor *mk = ag_new(ag_ctx_host_arena(ctx), dt, B, 1, 1, S);
    for (int64_t i = 0; i < B * S; i++) ag_set(mk, i, (1.0f - (float)(attn ? attn[i] : 1)) * FINFO_MIN);
    return ag_ctx_from_host(ctx, mk);
}

/* ---- blocks -------------------------------------------------------------------------------------------------------- */

typedef struct {
    model *m;
    ag_ctx *ctx;
    model_rng rng;
    int stack, block;
} fwd_state;

/* Dropout sites (the last part of the RNG key, site_key): */
enum { SITE_EMBED = 0, SITE_SELF_PROBS = 1, SITE_FFN_HIDDEN = 2, SITE_SELF_OUT = 3, SITE_FFN_OUT = 4, SITE_FINAL = 5, SITE_CROSS_OUT = 6,
       SITE_CROSS_PROBS = 7, SITE_ROUTER_JITTER = 10, SITE_EXPERT_HIDDEN = 11 };

static ag_rng_key site_key(const fwd_state *st, int site) {
    return ag_rng_make(st->rng.seed ^ (st->rng.rank * 0x9E3779B97F4A7C15ull), st->rng.step, (uint64_t)(st->stack * 1000000 + st->block * 100 + site + 1));
}

static ag_tensor *dropout(const fwd_state *st, ag_tensor *x, int site) {
    return ag_dropout(st->ctx, x, st->m->cfg.dropout_rate, site_key(st, site));
}

/* T5 attention without 1/sqrt(d) scaling (SPEC 3.4). x [B, Lq, D], kv [B, Lk, D]. bias/mask broadcast to
 * [B, H, Lq, Lk]. */
/* x W^T for the nn.Linear parameter w: through its int8 form when the model has one (model_quantize_int8) */
static ag_tensor *linear(ag_ctx *ctx, const model *m, ag_tensor *x, int w) {
    ag_tensor *y = m->q8 && m->q8[w] ? ag_int8_linear(ctx, x, m->q8[w]) : ag_matmul(ctx, x, m->t[w], false, true);
    return m->lora ? lora_linear(ctx, m, x, w, y) : y; /* + its LoRA update (train/lora.h) */
}

/* x [B, L, D] -> heads [B, H, L, K] through the projection w. */
static ag_tensor *to_heads(ag_ctx *ctx, const model *m, ag_tensor *x, int w) {
    int64_t B = x->shape[0], L = x->shape[1];
    return ag_permute(ctx, ag_reshapev(ctx, linear(ctx, m, x, w), B, L, m->cfg.num_heads, m->cfg.d_kv),
                      (const int[]){0, 2, 1, 3});
}

/* softmax(Q K^T + bias + mask) V, merged heads, output projection: Q [B,H,Lq,K], Kt/Vt [B,H,Lk,K] -> [B, Lq, D]. */
static ag_tensor *attention_core(const fwd_state *st, ag_tensor *Q, ag_tensor *Kt, ag_tensor *Vt, int o, ag_tensor *bias, ag_tensor *mask,
                                 int prob_site) {
    ag_ctx *ctx = st->ctx;
    const model *m = st->m;
    int64_t B = Q->shape[0], Lq = Q->shape[2], H = m->cfg.num_heads, K = m->cfg.d_kv;
    ag_tensor *scores = ag_matmul(ctx, Q, Kt, false, true); /* [B, H, Lq, Lk], unscaled (SPEC 3.4) */
    ag_tensor *a = ag_softmax(ctx, scores, bias, mask);
    a = dropout(st, a, prob_site);
    ag_tensor *ctxv = ag_permute(ctx, ag_matmul(ctx, a, Vt, false, false), (const int[]){0, 2, 1, 3}); /* [B, Lq, H, K] */
    return linear(ctx, m, ag_reshapev(ctx, ctxv, B, Lq, H * K), o);
}

static ag_tensor *dense_ffn(const fwd_state *st, const block_params *bp, ag_tensor *x) {
    ag_ctx *ctx = st->ctx;
    model *m = st->m;
    ag_tensor *h;
    if (m->cfg.gated)
        h = ag_mul(ctx, ag_act(ctx, m->cfg.act, linear(ctx, m, x, bp->wi0)), linear(ctx, m, x, bp->wi1));
    else
        h = ag_act(ctx, m->cfg.act, linear(ctx, m, x, bp->wi));
    h = dropout(st, h, SITE_FFN_HIDDEN);
    return linear(ctx, m, h, bp->wo);
}

static ag_tensor *sparse_ffn(const fwd_state *st, const block_params *bp, ag_tensor *x, model_route_stats *rs) {
    ag_ctx *ctx = st->ctx;
    model *m = st->m;
    const model_config *c = &m->cfg;
    int64_t B = x->shape[0], L = x->shape[1], D = x->shape[2], N = B * L;
    moe_config mc;
    memset(&mc, 0, sizeof mc);
    mc.num_experts = c->num_experts;
    mc.top_k = c->router_top_k;
    mc.routing = c->expert_choice ? MOE_ROUTING_EXPERT_CHOICE : MOE_ROUTING_TOKENS_CHOOSE;
    mc.jitter = c->router_jitter_noise;
    mc.expert_dropout = c->expert_dropout_rate >= 0 ? c->expert_dropout_rate : c->dropout_rate;
    mc.act = c->act;
    mc.gated = c->gated;
    mc.ep = m->ep;
    moe_capacity_policy cp = {c->capacity_mode, c->expert_capacity, c->train_capacity_factor, c->eval_capacity_factor, c->min_expert_capacity,
                              c->capacity_group_size};
    moe_capacity_plan plan = moe_capacity_for(&cp, c->num_experts, N, L, ctx->training);
    mc.group_tokens = plan.group_tokens;
    mc.capacity = plan.capacity;
    moe_weights w = {m->t[bp->router], bp->router_bias >= 0 ? m->t[bp->router_bias] : NULL, bp->wi >= 0 ? m->t[bp->wi] : NULL,
                     bp->wi0 >= 0 ? m->t[bp->wi0] : NULL, bp->wi1 >= 0 ? m->t[bp->wi1] : NULL, m->t[bp->wo]};
    if (m->q8) model_int8_moe_weights(m, bp, &w);
    if (m->lora) lora_moe_weights(ctx, m, bp, &w);
    moe_output mo;
    moe_switch_forward(ctx, &mc, &w, ag_reshapev(ctx, x, N, D), site_key(st, SITE_ROUTER_JITTER), site_key(st, SITE_EXPERT_HIDDEN), &mo);
    rs->stack = st->stack;
    rs->block = st->block;
    rs->n_tokens = mo.n_tokens;
    rs->n_dropped = mo.n_dropped;
    rs->entropy_mean = N ? mo.entropy_sum / (double)N : 0;
    rs->tokens_per_expert = mo.tokens_per_expert;
    rs->logits = mo.logits;
    rs->expert_index = mo.expert_index;
    rs->loss_index = mo.loss_index;
    rs->kept = mo.kept;
    return ag_reshapev(ctx, mo.y, B, L, D);
}

/* ---- one T5 block ---------------------------------------------------------------------------------------------- */

/* The self-attention keys and values of incremental decoding: this position's are appended to the cache (k, v:
 * [Tmax, B, H*K] each) at position t, and the query attends to positions 0..t. */
typedef struct {
    float *k, *v;
    int64_t t;
} kv_cache_slot;

/* Cross-attention: the encoder's keys and values as heads [B, H, S, K], and its padding mask. */
typedef struct {
    ag_tensor *Kt, *Vt, *mask;
} cross_source;

static ag_tensor *self_attention(const fwd_state *st, const block_params *bp, ag_tensor *n, ag_tensor *bias, const kv_cache_slot *kv) {
    ag_ctx *ctx = st->ctx;
    const model *m = st->m;
    ag_tensor *Q = to_heads(ctx, m, n, bp->q);
    if (!kv) return attention_core(st, Q, to_heads(ctx, m, n, bp->k), to_heads(ctx, m, n, bp->v), bp->o, bias, NULL, SITE_SELF_PROBS);
    int64_t B = n->shape[0], H = m->cfg.num_heads, K = m->cfg.d_kv, HK = H * K, t = kv->t;
    ag_tensor *kn = linear(ctx, m, n, bp->k), *vn = linear(ctx, m, n, bp->v); /* [B, 1, HK] */
    memcpy(kv->k + t * B * HK, kn->data, sizeof(float) * (size_t)(B * HK));
    memcpy(kv->v + t * B * HK, vn->data, sizeof(float) * (size_t)(B * HK));
    const int to_bhtk[4] = {1, 2, 0, 3}; /* [t+1, B, H, K] -> [B, H, t+1, K] */
    ag_tensor *Kt = ag_permute(ctx, ag_tensor_view(ctx->act, AG_F32, 4, AG_SHAPE(t + 1, B, H, K), kv->k), to_bhtk);
    ag_tensor *Vt = ag_permute(ctx, ag_tensor_view(ctx->act, AG_F32, 4, AG_SHAPE(t + 1, B, H, K), kv->v), to_bhtk);
    return attention_core(st, Q, Kt, Vt, bp->o, bias, NULL, SITE_SELF_PROBS);
}

/* One T5 block (SPEC 3.2-3.8), the same for the encoder, the decoder and a step of cached decoding: pre-norm
 * self-attention (bias: relative position + mask), pre-norm cross-attention when cross is given (no relative bias,
 * the encoder's padding mask: SPEC 3.5), the pre-norm FFN (dense, or the Switch layer, whose routing lands in *rs),
 * each with dropout on its output and a residual. kv: the KV cache of incremental decoding, else NULL. */
static ag_tensor *t5_block(const fwd_state *st, const block_params *bp, ag_tensor *h, ag_tensor *bias, const kv_cache_slot *kv,
                           const cross_source *cross, model_route_stats *rs) {
    ag_ctx *ctx = st->ctx;
    const model *m = st->m;
    const double eps = m->cfg.layer_norm_epsilon;
    ag_tensor *n = ag_rmsnorm(ctx, h, m->t[bp->ln_attn], eps);
    h = ag_add(ctx, h, dropout(st, self_attention(st, bp, n, bias, kv), SITE_SELF_OUT));
    if (cross) {
        n = ag_rmsnorm(ctx, h, m->t[bp->ln_cross], eps);
        ag_tensor *a = attention_core(st, to_heads(ctx, m, n, bp->xq), cross->Kt, cross->Vt, bp->xo, NULL, cross->mask, SITE_CROSS_PROBS);
        h = ag_add(ctx, h, dropout(st, a, SITE_CROSS_OUT));
    }
    n = ag_rmsnorm(ctx, h, m->t[bp->ln_ff], eps);
    ag_tensor *f = bp->sparse ? sparse_ffn(st, bp, n, rs) : dense_ffn(st, bp, n);
    return ag_add(ctx, h, dropout(st, f, SITE_FFN_OUT));
}

/* The output head: tied (SPEC 3.9: the decoder output scaled by d_model^-0.5, times the shared embedding) or
 * untied. dec [.., D] -> logits [.., V]. */
static ag_tensor *lm_head(ag_ctx *ctx, const model *m, ag_tensor *dec) {
    if (m->cfg.tie_word_embeddings) return ag_matmul(ctx, ag_scale(ctx, dec, pow((double)m->cfg.d_model, -0.5)), m->t[m->shared], false, true);
    return ag_matmul(ctx, dec, m->t[m->lm_head], false, true);
}

/* ---- the stacks ----------------------------------------------------------------------------------------------- */

static ag_tensor *encoder(fwd_state *st, const model_batch *b, ag_tensor *enc_mask, model_route_stats *routes, int *n_routes) {
    model *m = st->m;
    ag_ctx *ctx = st->ctx;
    const model_config *c = &m->cfg;
    st->stack = 0;
    st->block = -1;
    ag_tensor *ids = ag_ctx_from_host(ctx, ag_tensor_view(ag_ctx_host_arena(ctx), AG_I32, 2, AG_SHAPE(b->B, b->S), (void *)b->input_ids));
    ag_tensor *h = dropout(st, ag_embedding(ctx, m->t[m->shared], ids), SITE_EMBED); /* unscaled (SPEC 3.1) */
    ag_tensor *bias = ag_add(ctx, position_bias(ctx, m, m->enc_relbias, 0, b->S, b->S, true), enc_mask); /* [B,H,S,S] */
    for (int i = 0; i < c->num_layers; i++) {
        st->block = i;
        h = t5_block(st, &m->enc[i], h, bias, NULL, NULL, m->enc[i].sparse ? &routes[(*n_routes)++] : NULL);
    }
    st->block = c->num_layers;
    return dropout(st, ag_rmsnorm(ctx, h, m->t[m->enc_final_ln], c->layer_norm_epsilon), SITE_FINAL);
}

static ag_tensor *decoder(fwd_state *st, const model_batch *b, const int32_t *dec_ids, ag_tensor *enc_out, ag_tensor *enc_mask,
                          model_route_stats *routes, int *n_routes) {
    model *m = st->m;
    ag_ctx *ctx = st->ctx;
    const model_config *c = &m->cfg;
    int64_t T = b->T;
    st->stack = 1;
    st->block = -1;
    ag_tensor *ids = ag_ctx_from_host(ctx, ag_tensor_view(ag_ctx_host_arena(ctx), AG_I32, 2, AG_SHAPE(b->B, T), (void *)dec_ids));
    ag_tensor *h = dropout(st, ag_embedding(ctx, m->t[m->shared], ids), SITE_EMBED);
    ag_tensor *causal = ag_new(ag_ctx_host_arena(ctx), m->dtype, 1, 1, T, T);
    for (int64_t q = 0; q < T; q++)
        for (int64_t k = 0; k < T; k++) ag_set(causal, q * T + k, k > q ? FINFO_MIN : 0.0f);
    causal = ag_ctx_from_host(ctx, causal);
    ag_tensor *bias = ag_add(ctx, position_bias(ctx, m, m->dec_relbias, 0, T, T, false), causal); /* [1,H,T,T] */
    for (int i = 0; i < c->num_decoder_layers; i++) {
        const block_params *bp = &m->dec[i];
        st->block = i;
        cross_source x = {to_heads(ctx, m, enc_out, bp->xk), to_heads(ctx, m, enc_out, bp->xv), enc_mask};
        h = t5_block(st, bp, h, bias, NULL, &x, bp->sparse ? &routes[(*n_routes)++] : NULL);
    }
    st->block = c->num_decoder_layers;
    return dropout(st, ag_rmsnorm(ctx, h, m->t[m->dec_final_ln], c->layer_norm_epsilon), SITE_FINAL);
}

void model_forward(model *m, ag_ctx *ctx, const model_batch *b, model_rng rng, model_output *out) {
    const model_config *c = &m->cfg;
    memset(out, 0, sizeof *out);
    SX_ASSERT(b->B > 0 && b->S > 0 && b->T > 0, "model_forward: empty batch (B=%lld S=%lld T=%lld)", (long long)b->B, (long long)b->S, (long long)b->T);
    SX_ASSERT(b->labels || b->decoder_input_ids, "model_forward: needs labels or decoder_input_ids");
    SX_ASSERT(m->device == ctx->device, "model_forward: the model's parameters live on %s but the context runs on %s (model_to_device)",
              m->device == AG_DEV_CPU ? "the host" : "the device", ctx->device == AG_DEV_CPU ? "the host" : "the device");
    fwd_state st = {m, ctx, rng, 0, 0};
    lora_begin(m, rng);
    int n_enc_sparse = model_config_sparse_count(c->encoder_sparse_step, c->num_layers);
    int n_dec_sparse = model_config_sparse_count(c->decoder_sparse_step, c->num_decoder_layers);
    out->routes = ag_arena_calloc(ag_ctx_host_arena(ctx), sizeof(model_route_stats) * (size_t)(n_enc_sparse + n_dec_sparse + 1));

    ag_tensor *enc_mask = padding_mask(ctx, m->dtype, b->attention_mask, b->B, b->S);
    out->encoder_out = encoder(&st, b, enc_mask, out->routes, &out->n_routes);
    const int32_t *dec_ids = b->decoder_input_ids;
    if (!dec_ids) {
        int32_t *d = ag_arena_alloc(ag_ctx_host_arena(ctx), sizeof(int32_t) * (size_t)(b->B * b->T));
        model_shift_right(c, b->labels, b->B, b->T, d);
        dec_ids = d;
    }
    ag_tensor *dec = decoder(&st, b, dec_ids, out->encoder_out, enc_mask, out->routes, &out->n_routes);
    out->logits = lm_head(ctx, m, dec);
    if (!b->labels) return;

    ag_tensor *labels = ag_ctx_from_host(ctx, ag_tensor_view(ag_ctx_host_arena(ctx), AG_I32, 1, AG_SHAPE(b->B * b->T), (void *)b->labels));
    out->ce = ag_cross_entropy(ctx, ag_reshapev(ctx, out->logits, b->B * b->T, c->vocab_size), labels);
    out->loss = out->ce;
    /* one shard of a data-parallel batch: CE summed over this shard's labels over the global count, router losses
     * over the number of shards (model_batch) */
    double router_w = b->shards > 1 ? 1.0 / b->shards : 1.0;
    if (b->ce_denominator > 0) {
        int64_t mine = 0;
        for (int64_t i = 0; i < b->B * b->T; i++) mine += b->labels[i] != AG_IGNORE_INDEX;
        out->loss = ag_scale(ctx, out->ce, (double)mine / (double)b->ce_denominator);
    }

    /* Router losses per stack (moe/losses.c); HF computes them only when the stack's sparse step is > 1 (SPEC 5.4).
     * Expert choice balances the load by construction (every expert takes C tokens): no load-balancing term (Zhou et
     * al. 2022); the aux value is still reported, over each token's argmax expert. */
    const bool on[2] = {n_enc_sparse > 0 && !(c->hf_zero_router_loss_step1 && c->encoder_sparse_step <= 1),
                        n_dec_sparse > 0 && !(c->hf_zero_router_loss_step1 && c->decoder_sparse_step <= 1)};
    moe_loss_layer *layers = ag_arena_alloc(ag_ctx_host_arena(ctx), sizeof(moe_loss_layer) * (size_t)(out->n_routes + 1));
    for (int l = 0; l < out->n_routes; l++) layers[l] = (moe_loss_layer){out->routes[l].logits, out->routes[l].loss_index};
    moe_stack_losses st_l[2] = {{0}, {0}};
    if (on[0]) st_l[0] = moe_router_losses(ctx, c->router_loss_mode, layers, n_enc_sparse, b->B, b->S, c->num_experts);
    if (on[1]) st_l[1] = moe_router_losses(ctx, c->router_loss_mode, layers + n_enc_sparse, n_dec_sparse, b->B, b->T, c->num_experts);
    out->enc_z = st_l[0].z;
    out->enc_aux = st_l[0].aux;
    out->dec_z = st_l[1].z;
    out->dec_aux = st_l[1].aux;
    ag_tensor *router = moe_router_loss_total(ctx, c->router_loss_mode, st_l, 2, c->router_z_loss_coef, c->expert_choice ? 0.0 : c->router_aux_loss_coef,
                                              router_w);
    if (router) out->loss = ag_add(ctx, out->loss, router);
}

/* ---- the encoder alone (embeddings) ------------------------------------------------------------------------------ */

ag_tensor *model_encode(model *m, ag_ctx *ctx, const int32_t *input_ids, const int32_t *attention_mask, int64_t B,
                        int64_t S, model_route_stats **routes, int *n_routes) {
    bool g = ctx->grad_enabled, tr = ctx->training;
    ctx->grad_enabled = false;
    ctx->training = false;
    fwd_state st = {m, ctx, {0, 0, false}, 0, 0};
    model_batch b = {B, S, 1, input_ids, attention_mask, NULL, NULL};
    model_route_stats *rs = ag_arena_calloc(ag_ctx_host_arena(ctx), sizeof *rs * (size_t)(m->cfg.num_layers + 1));
    int n = 0;
    ag_tensor *enc = encoder(&st, &b, padding_mask(ctx, m->dtype, attention_mask, B, S), rs, &n);
    ctx->grad_enabled = g;
    ctx->training = tr;
    if (routes) *routes = rs;
    if (n_routes) *n_routes = n;
    return enc;
}

/* ---- incremental decoding with a KV cache (generation) ----------------------------------------------------------- */

struct model_decoder_cache {
    int64_t B, S, Tmax, t;
    ag_arena arena;
    float **self_k, **self_v;      /* per decoder layer [Tmax, B, H*K]: position-major, so a prefix is contiguous */
    ag_tensor **cross_k, **cross_v; /* per decoder layer [B, H, S, K], computed once */
    ag_tensor *enc_mask;           /* [B, 1, 1, S] */
};

static ag_tensor *persist(ag_arena *a, const ag_tensor *x) {
    ag_tensor *y = ag_tensor_new(a, x->dtype, x->ndim, x->shape);
    ag_copy(y, x);
    return y;
}

model_decoder_cache *model_decode_begin(model *m, ag_ctx *ctx, const int32_t *input_ids, const int32_t *attention_mask, int64_t B,
                                        int64_t S, int64_t Tmax) {
    SX_ASSERT(m->dtype == AG_F32, "generation runs on f32 models");
    SX_ASSERT(ctx->device == AG_DEV_CPU && m->device == AG_DEV_CPU, "generation runs on the CPU for now (the KV cache is host memory)");
    const model_config *c = &m->cfg;
    model_decoder_cache *dc = calloc(1, sizeof *dc);
    SX_ASSERT(dc, "out of memory");
    dc->B = B;
    dc->S = S;
    dc->Tmax = Tmax;
    int L = c->num_decoder_layers;
    int64_t HK = (int64_t)c->num_heads * c->d_kv;
    ag_arena_init(&dc->arena, "kv-cache", sizeof(float) * (size_t)(2 * L * (Tmax * B * HK + B * HK * S)) + (1 << 16));
    dc->self_k = ag_arena_calloc(&dc->arena, sizeof(float *) * (size_t)L);
    dc->self_v = ag_arena_calloc(&dc->arena, sizeof(float *) * (size_t)L);
    dc->cross_k = ag_arena_calloc(&dc->arena, sizeof(ag_tensor *) * (size_t)L);
    dc->cross_v = ag_arena_calloc(&dc->arena, sizeof(ag_tensor *) * (size_t)L);
    bool g = ctx->grad_enabled, tr = ctx->training;
    ctx->grad_enabled = false;
    ctx->training = false;
    fwd_state st = {m, ctx, {0, 0, false}, 0, 0};
    model_batch b = {B, S, 1, input_ids, attention_mask, NULL, NULL};
    ag_tensor *enc_mask = padding_mask(ctx, m->dtype, attention_mask, B, S);
    int n_routes = 0;
    model_route_stats *routes = ag_arena_calloc(ctx->act, sizeof(model_route_stats) * (size_t)(c->num_layers + 1));
    ag_tensor *enc = encoder(&st, &b, enc_mask, routes, &n_routes);
    dc->enc_mask = persist(&dc->arena, enc_mask);
    for (int i = 0; i < L; i++) {
        dc->self_k[i] = ag_arena_alloc(&dc->arena, sizeof(float) * (size_t)(Tmax * B * HK));
        dc->self_v[i] = ag_arena_alloc(&dc->arena, sizeof(float) * (size_t)(Tmax * B * HK));
        dc->cross_k[i] = persist(&dc->arena, to_heads(ctx, m, enc, m->dec[i].xk));
        dc->cross_v[i] = persist(&dc->arena, to_heads(ctx, m, enc, m->dec[i].xv));
    }
    ctx->grad_enabled = g;
    ctx->training = tr;
    return dc;
}

ag_tensor *model_decode_step(model *m, ag_ctx *ctx, model_decoder_cache *dc, const int32_t *tokens) {
    const model_config *c = &m->cfg;
    SX_ASSERT(ctx->device == AG_DEV_CPU, "generation runs on the CPU for now (the KV cache is host memory)");
    SX_ASSERT(dc->t < dc->Tmax, "decode: position %lld beyond the cache length %lld", (long long)dc->t, (long long)dc->Tmax);
    bool g = ctx->grad_enabled, tr = ctx->training;
    ctx->grad_enabled = false;
    ctx->training = false;
    int64_t B = dc->B, t = dc->t;
    fwd_state st = {m, ctx, {0, 0, false}, 1, 0};
    ag_tensor *ids = ag_tensor_view(ctx->act, AG_I32, 2, AG_SHAPE(B, 1), (void *)tokens);
    ag_tensor *h = ag_embedding(ctx, m->t[m->shared], ids); /* [B, 1, D] */
    /* query t against keys 0..t: every key is visible, so the bias needs no causal mask */
    ag_tensor *bias = position_bias(ctx, m, m->dec_relbias, t, 1, t + 1, false);
    model_route_stats rs; /* one token per sequence: a group of 1 never exceeds the capacity (SPEC 3.11) */
    for (int i = 0; i < c->num_decoder_layers; i++) {
        const block_params *bp = &m->dec[i];
        st.block = i;
        kv_cache_slot kv = {dc->self_k[i], dc->self_v[i], t};
        cross_source x = {dc->cross_k[i], dc->cross_v[i], dc->enc_mask};
        h = t5_block(&st, bp, h, bias, &kv, &x, &rs);
    }
    ag_tensor *logits = lm_head(ctx, m, ag_rmsnorm(ctx, h, m->t[m->dec_final_ln], c->layer_norm_epsilon));
    dc->t++;
    ctx->grad_enabled = g;
    ctx->training = tr;
    return ag_reshapev(ctx, logits, B, c->vocab_size);
}

void model_decode_reorder(model *m, model_decoder_cache *dc, const int32_t *src) {
    const model_config *c = &m->cfg;
    int64_t B = dc->B, HK = (int64_t)c->num_heads * c->d_kv, S = dc->S;
    float *tmp = malloc(sizeof(float) * (size_t)(B * HK * (S > 1 ? S : 1) + 1));
    SX_ASSERT(tmp, "out of memory");
    for (int i = 0; i < c->num_decoder_layers; i++) {
        float *caches[2] = {dc->self_k[i], dc->self_v[i]};
        for (int w = 0; w < 2; w++)
            for (int64_t p = 0; p < dc->t; p++) {
                float *blk = caches[w] + p * B * HK;
                for (int64_t b = 0; b < B; b++) memcpy(tmp + b * HK, blk + (int64_t)src[b] * HK, sizeof(float) * (size_t)HK);
                memcpy(blk, tmp, sizeof(float) * (size_t)(B * HK));
            }
        ag_tensor *cross[2] = {dc->cross_k[i], dc->cross_v[i]};
        int64_t per = HK * S;
        for (int w = 0; w < 2; w++) {
            float *d = cross[w]->data;
            for (int64_t b = 0; b < B; b++) memcpy(tmp + b * per, d + (int64_t)src[b] * per, sizeof(float) * (size_t)per);
            memcpy(d, tmp, sizeof(float) * (size_t)(B * per));
        }
    }
    float *mk = dc->enc_mask->data;
    for (int64_t b = 0; b < B; b++) memcpy(tmp + b * S, mk + (int64_t)src[b] * S, sizeof(float) * (size_t)S);
    memcpy(mk, tmp, sizeof(float) * (size_t)(B * S));
    free(tmp);
}

void model_decode_end(model_decoder_cache *dc) {
    if (!dc) return;
    ag_arena_free(&dc->arena);
    free(dc);
}
