/* One training step (train/step.h): micro-batches with gradient accumulation, the gradient sync, statistics over
 * ranks, the units to update, the global norm, the non-finite check, clipping and the optimizer. The trainer and the
 * benchmark both call it, on the CPU or (the model after model_to_device) on the CUDA device: the norm, clipping and
 * optimizer go to the device's implementation (train/optim.h) over the same spans. */
#include "train/step.h"

#include "train/cfg_util.h"
#include "train/lora.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTE_SLOTS 12 /* wi, wi_0, wi_1, wo, then the A and B adapters of each */

struct train_step {
    const run_config *cfg;
    model *m;
    par_ctx *par;
    bool rank0;
    ag_device dev;             /* the model's: where weights, gradients, optimizer state and activations live */
    float *w, *g;              /* the flat weights and gradients on dev */
    optim *opt;
    optim_param *op;
    optim_span *spans;         /* [n_spans]: the gradient of every non-frozen parameter */
    int *span_set;             /* [n_spans]: 0 dense, 1 an expert block (its norm part is summed over the EP group) */
    int n_spans;
    int64_t n_units;           /* optimizer units: a whole tensor, or one expert of a block (train/optim.h) */
    uint8_t *unit_frozen;      /* [n_units] */
    uint8_t *active;           /* [n_units]: the units this step updates */
    float *stage;              /* gradient packing for the all-reduces, sized once */
    ag_arena act, seed_arena;
    ag_ctx ctx;
    ag_tensor *seed;           /* 1 / micro-batches: the step's loss is their mean */
    int mb, n_micro, n_sparse;
    int32_t *ids, *mask, *labels;
    int64_t *step_tokens;      /* [n_sparse, E] of one step, global */
    int *route_param;          /* [n_sparse, ROUTE_SLOTS]: the expert blocks of each routed layer and their LoRA adapters (-1 absent) */
};

/* train.freeze / train.train_only: fnmatch patterns over the HF parameter names of the whole model, one name per
 * expert ("decoder.block.1.layer.2.mlp.experts.expert_3.wi.weight"), so a pattern can name single experts. A
 * pattern that matches no name is an error (a typo would otherwise freeze nothing, silently). Sets t->unit_frozen
 * for this rank's units and reports the counts in HF tensors. */
static sx_status setup_freeze(train_step *t) {
    const run_config *cfg = t->cfg;
    const model *m = t->m;
    const int E = m->cfg.num_experts;
    char fbuf[sizeof cfg->freeze], obuf[sizeof cfg->train_only], name[192];
    char *fp[64], *op[64];
    int nf = cfg_split_list(cfg->freeze, fbuf, sizeof fbuf, fp, 64), no = cfg_split_list(cfg->train_only, obuf, sizeof obuf, op, 64);
    int fhits[64] = {0}, ohits[64] = {0};
    int64_t tensors = 0, tensors_frozen = 0, numel = 0, numel_frozen = 0, u = 0;
    for (int i = 0; i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        int ng = p->n_experts ? E : 1;
        int64_t per = p->n_experts ? p->numel / p->n_experts : p->numel;
        for (int e = 0; e < ng; e++) {
            model_param_hf_name(m, i, e - p->expert_offset, name, sizeof name); /* e: the global expert */
            bool fz = false, only = no == 0;
            for (int k = 0; k < nf; k++)
                if (fnmatch(fp[k], name, 0) == 0) fhits[k]++, fz = true;
            for (int k = 0; k < no; k++)
                if (fnmatch(op[k], name, 0) == 0) ohits[k]++, only = true;
            bool frozen = fz || !only || p->no_grad; /* no_grad: the base under LoRA */
            tensors++;
            numel += per;
            tensors_frozen += frozen;
            numel_frozen += frozen ? per : 0;
            bool mine = !p->n_experts || (e >= p->expert_offset && e < p->expert_offset + p->n_experts);
            if (mine) t->unit_frozen[u++] = frozen;
        }
    }
    SX_ASSERT(u == t->n_units, "freeze: %lld units, the optimizer has %lld", (long long)u, (long long)t->n_units);
    for (int k = 0; k < nf; k++)
        if (!fhits[k])
            return sx_errorf("train.freeze: pattern '%s' matches no parameter (patterns match HF names such as '%s' or "
                             "'encoder.block.1.layer.1.mlp.experts.expert_0.wi.weight')", fp[k], m->params[0].name);
    for (int k = 0; k < no; k++)
        if (!ohits[k])
            return sx_errorf("train.train_only: pattern '%s' matches no parameter (patterns match HF names such as '%s' or "
                             "'encoder.block.1.layer.1.mlp.router.classifier.weight')", op[k], m->params[0].name);
    if (tensors_frozen == tensors) return sx_errorf("train.freeze/train.train_only: every parameter is frozen, nothing would train");
    if (tensors_frozen && t->rank0)
        printf("switchc: %lld of %lld parameter tensors (HF names) frozen; %lld of %lld parameters train\n", (long long)tensors_frozen,
               (long long)tensors, (long long)(numel - numel_frozen), (long long)numel);
    return sx_ok();
}

static sx_status setup_optimizer(train_step *t) {
    const run_config *cfg = t->cfg;
    model *m = t->m;
    t->op = calloc((size_t)m->n_params, sizeof(optim_param));
    t->n_units = 0;
    for (int i = 0; i < m->n_params; i++) t->n_units += m->params[i].n_experts ? m->params[i].n_experts : 1;
    t->unit_frozen = calloc((size_t)t->n_units + 1, 1);
    t->active = calloc((size_t)t->n_units + 1, 1);
    SX_TRY(setup_freeze(t));
    int64_t u = 0;
    for (int i = 0; i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        optim_param *o = &t->op[i];
        o->name = p->name;
        o->offset = p->offset;
        o->ndim = p->ndim;
        memcpy(o->shape, p->shape, sizeof o->shape);
        o->decay = p->decay;
        o->batch_dims = p->n_experts ? 1 : 0; /* each expert its own unit, as HF's one weight per expert */
        int nu = p->n_experts ? p->n_experts : 1;
        bool all = true;
        for (int k = 0; k < nu; k++) all &= t->unit_frozen[u + k] != 0;
        o->frozen = all; /* no state; a partly frozen block keeps state and skips its frozen units */
        u += nu;
    }
    optim_config oc;
    memset(&oc, 0, sizeof oc);
    oc.kind = strcmp(cfg->optimizer, "adafactor") ? OPTIM_ADAMW : OPTIM_ADAFACTOR;
    oc.lr = cfg->lr;
    oc.weight_decay = cfg->weight_decay;
    oc.beta1 = cfg->beta1;
    oc.beta2 = cfg->beta2;
    oc.eps = cfg->eps;
    oc.decay_rate = cfg->adafactor_decay_rate;
    oc.clip_threshold = cfg->adafactor_clip_threshold;
    oc.eps1 = 1e-30;
    oc.eps2 = 1e-3;
    oc.relative_step = cfg->adafactor_relative_step;
    oc.scale_parameter = cfg->adafactor_scale_parameter;
    oc.warmup_init = false;
    /* optim.beta1 unset (NaN): the optimizer's own default, AdamW 0.9, Adafactor none (HF's beta1=None) */
    bool b1_unset = isnan(cfg->beta1);
    oc.beta1 = b1_unset ? 0.9 : cfg->beta1;
    oc.beta1_adafactor = oc.kind == OPTIM_ADAFACTOR && !b1_unset ? cfg->beta1 : 0.0;
    oc.device = t->dev;
    SX_TRY(optim_init(&t->opt, &oc, t->op, m->n_params));
    for (int i = 0; i < m->n_params; i++)
        SX_ASSERT(optim_unit_first(t->opt, i) + (m->params[i].n_experts ? m->params[i].n_experts : 1) <=
                      optim_unit_count(t->opt), "optimizer units");
    t->spans = malloc(sizeof(optim_span) * (size_t)(m->n_params + 1));
    t->span_set = malloc(sizeof(int) * (size_t)(m->n_params + 1));
    for (int i = 0; i < m->n_params; i++) {
        if (t->op[i].frozen) continue;
        t->spans[t->n_spans] = (optim_span){m->params[i].offset, m->params[i].numel};
        t->span_set[t->n_spans++] = m->params[i].n_experts > 0;
    }
    return sx_ok();
}

/* Gradients of one step, made global: dense parameters summed over every rank, expert blocks over the data-parallel
 * replicas of the same shard (the tokens of the whole EP group already reached them through the all-to-all). Each
 * rank's loss is its share of the global loss, so sums are exactly the single-process gradients. */
static sx_status sync_grads(train_step *t) {
    const model *m = t->m;
    for (int pass = 0; pass < 2; pass++) { /* 0: dense over the world, 1: experts over the DP group */
        par_group *g = pass ? t->par->dp : t->par->world;
        if (par_group_size(g) == 1) continue;
        int64_t k = 0;
        for (int i = 0; i < m->n_params; i++)
            if ((m->params[i].n_experts > 0) == pass && !m->params[i].no_grad) {
                memcpy(t->stage + k, m->g + m->params[i].offset, sizeof(float) * (size_t)m->params[i].numel);
                k += m->params[i].numel;
            }
        SX_TRY(par_allreduce_sum(g, t->stage, k, PAR_F32));
        k = 0;
        for (int i = 0; i < m->n_params; i++)
            if ((m->params[i].n_experts > 0) == pass && !m->params[i].no_grad) {
                memcpy(m->g + m->params[i].offset, t->stage + k, sizeof(float) * (size_t)m->params[i].numel);
                k += m->params[i].numel;
            }
    }
    return sx_ok();
}

/* The global L2 norm of the (synchronised) gradient over trainable parameters: the dense part is the same on every
 * rank, the expert part is summed over the EP group. Non-finite values make the norm non-finite. On the device: the
 * device reductions of both parts and one copy of the two sums (the only wait between backward and optimizer). */
static double global_grad_norm(train_step *t) {
    double sq[2];
    optim_sumsq(t->dev, t->g, t->spans, t->span_set, t->n_spans, 2, sq);
    sx_status s = par_allreduce_sum(t->par->ep, &sq[1], 1, PAR_F64);
    SX_ASSERT(s.ok, "gradient norm: %s", s.msg);
    return sqrt(sq[0] + sq[1]);
}

static void zero_floats(ag_device dev, float *x, int64_t n) {
    if (dev == AG_DEV_CPU)
        memset(x, 0, sizeof(float) * (size_t)n);
    else
        ag_cuda_memset0(x, sizeof(float) * (size_t)n);
}

/* The units this step updates (t->active): every unit not frozen, less, with optim.idle_experts = skip, the experts
 * that no token of the global batch reached (kept, after capacity) in their layer: they have no gradient, and torch
 * skips a parameter whose grad is None (no decay, no moment decay, no step count). Frozen units of a partly frozen
 * block get a zero gradient, so the norm and clipping see only what trains, as in torch. step_tokens [layer, expert]
 * is global; route_param holds each layer's expert blocks (-1 absent). */
static void select_units(train_step *t, const int64_t *step_tokens, const int *route_param, int n_sparse) {
    const model *m = t->m;
    const int E = m->cfg.num_experts;
    for (int64_t u = 0; u < t->n_units; u++) t->active[u] = !t->unit_frozen[u];
    for (int i = 0; i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        if (!p->n_experts || t->op[i].frozen) continue;
        int64_t first = optim_unit_first(t->opt, i), per = p->numel / p->n_experts;
        for (int k = 0; k < p->n_experts; k++)
            if (t->unit_frozen[first + k]) zero_floats(t->dev, t->g + p->offset + k * per, per);
    }
    if (strcmp(t->cfg->idle_experts, "skip")) return;
    for (int r = 0; r < n_sparse; r++)
        for (int j = 0; j < ROUTE_SLOTS; j++) {
            int i = route_param[ROUTE_SLOTS * r + j];
            if (i < 0) continue;
            const param_desc *p = &m->params[i];
            int64_t first = optim_unit_first(t->opt, i);
            for (int k = 0; k < p->n_experts; k++)
                if (step_tokens[r * E + p->expert_offset + k] == 0) t->active[first + k] = 0;
        }
}


sx_status train_step_init(train_step **out, model *m, const run_config *cfg, par_ctx *par, int64_t max_len) {
    if (m->device != AG_DEV_CPU && par->world_size > 1)
        return sx_errorf("the training step on the CUDA device runs on one rank for now (world size %d): its gradient sync is "
                         "host memory", par->world_size);
    if (!m->g) return sx_errorf("the training step needs a model with gradients (not model_init_inference)");
    train_step *t = calloc(1, sizeof *t);
    t->cfg = cfg;
    t->m = m;
    t->par = par;
    t->dev = m->device;
    t->w = m->device == AG_DEV_CPU ? m->w : m->dw;
    t->g = m->device == AG_DEV_CPU ? m->g : m->dg;
    t->rank0 = par->world_rank == 0;
    t->mb = cfg->micro_batch_size ? cfg->micro_batch_size : cfg->batch_size;
    t->n_micro = cfg->batch_size / t->mb;
    t->n_sparse = model_config_sparse_count(m->cfg.encoder_sparse_step, m->cfg.num_layers) +
                  model_config_sparse_count(m->cfg.decoder_sparse_step, m->cfg.num_decoder_layers);
    t->stage = malloc(sizeof(float) * (size_t)(m->n_grad_floats + 1));
    size_t cells = (size_t)(t->mb * max_len);
    t->ids = malloc(sizeof(int32_t) * cells);
    t->mask = malloc(sizeof(int32_t) * cells);
    t->labels = malloc(sizeof(int32_t) * cells);
    t->step_tokens = calloc((size_t)(t->n_sparse * m->cfg.num_experts + 1), sizeof(int64_t));
    t->route_param = malloc(sizeof(int) * (size_t)(ROUTE_SLOTS * t->n_sparse + 1));
    ag_arena_init_device(&t->act, "activations", 1 << 22, t->dev);
    ag_ctx_init(&t->ctx, &t->act);
    t->ctx.training = true;
    ag_arena_init(&t->seed_arena, "loss-seed", 4096);
    t->seed = ag_new(&t->seed_arena, AG_F32, 1);
    ((float *)t->seed->data)[0] = 1.0f / (float)t->n_micro;
    *out = t;
    sx_status s = setup_optimizer(t);
    if (!s.ok) {
        train_step_free(t);
        *out = NULL;
    }
    return s;
}

optim *train_step_optim(train_step *ts) { return ts->opt; }
ag_ctx *train_step_ctx(train_step *ts) { return &ts->ctx; }
int64_t train_step_device_bytes(const train_step *ts) {
    return ts->dev == AG_DEV_CPU ? 0 : (int64_t)ts->act.capacity + optim_device_bytes(ts->opt);
}
int64_t train_step_activation_peak(const train_step *ts) { return (int64_t)ts->act.peak; }
bool train_step_frozen(const train_step *ts, int i) { return ts->op[i].frozen; }

void train_step_free(train_step *t) {
    if (!t) return;
    if (t->opt) optim_free(t->opt);
    free(t->op);
    free(t->spans);
    free(t->span_set);
    free(t->unit_frozen);
    free(t->active);
    free(t->stage);
    free(t->ids);
    free(t->mask);
    free(t->labels);
    free(t->step_tokens);
    free(t->route_param);
    ag_ctx_free(&t->ctx);
    ag_arena_free(&t->act);
    ag_arena_free(&t->seed_arena);
    free(t);
}

/* The micro-batches: forward and backward of this rank's rows, accumulating gradients, this rank's shares of the
 * step's values in st and the kept tokens per layer and expert in t->step_tokens (local). */
static sx_status micro_batches(train_step *t, train_batch_fn get, void *user, int64_t step, train_step_stats *st) {
    const run_config *cfg = t->cfg;
    const int W = t->par->world_size, mbl = t->mb / W, n_micro = t->n_micro, E = t->m->cfg.num_experts;
    for (int k = 0; k < n_micro; k++) {
        int64_t S, T;
        uint64_t first = (uint64_t)(step * cfg->batch_size + k * t->mb);
        /* every rank builds the whole micro-batch (padded to its longest example, as one process would) and keeps
         * its rows; the valid-label count of the whole batch normalises the loss */
        SX_TRY(get(user, first, t->mb, t->ids, t->mask, t->labels, &S, &T));
        int64_t valid = 0, mine = 0, r0 = (int64_t)t->par->world_rank * mbl;
        for (int64_t q = 0; q < (int64_t)t->mb * T; q++) {
            valid += t->labels[q] >= 0;
            mine += t->labels[q] >= 0 && q / T >= r0 && q / T < r0 + mbl;
        }
        model_batch b = {mbl, S, T, t->ids + r0 * S, t->mask + r0 * S, t->labels + r0 * T, NULL, valid, W};
        model_output o;
        model_forward(t->m, &t->ctx, &b, (model_rng){cfg->seed, (uint64_t)(step * n_micro + k), (uint64_t)t->par->world_rank}, &o);
        ag_backward_seed(&t->ctx, o.loss, t->seed);
        /* this rank's shares of the global values: summed over ranks by the caller (ag_get: a copy on the device) */
        st->loss += ag_get(o.loss, 0) / n_micro;
        st->ce += ag_get(o.ce, 0) * (valid ? (double)mine / (double)valid : 0) / n_micro;
        if (o.enc_z) st->z += ag_get(o.enc_z, 0) / n_micro / W;
        if (o.dec_z) st->z += ag_get(o.dec_z, 0) / n_micro / W;
        if (o.enc_aux) st->aux += ag_get(o.enc_aux, 0) / n_micro / W;
        if (o.dec_aux) st->aux += ag_get(o.dec_aux, 0) / n_micro / W;
        SX_ASSERT(o.n_routes == t->n_sparse, "%d routed layers, expected %d", o.n_routes, t->n_sparse);
        for (int r = 0; r < o.n_routes; r++) {
            st->dropped += o.routes[r].n_dropped;
            st->routed += o.routes[r].n_tokens;
            for (int e = 0; e < E; e++) t->step_tokens[r * E + e] += o.routes[r].tokens_per_expert[e];
            const block_params *bp = o.routes[r].stack ? &t->m->dec[o.routes[r].block] : &t->m->enc[o.routes[r].block];
            const int blocks[4] = {bp->wi, bp->wi0, bp->wi1, bp->wo};
            int *slots = t->route_param + ROUTE_SLOTS * r;
            memcpy(slots, blocks, sizeof blocks);
            for (int j = 0; j < 4; j++) lora_adapters_of(t->m, blocks[j], &slots[4 + 2 * j], &slots[5 + 2 * j]);
        }
        st->tokens += (int64_t)mbl * (S + T);
        ag_ctx_reset(&t->ctx);
    }
    return sx_ok();
}

sx_status train_step_run(train_step *t, train_batch_fn get, void *user, int64_t step, double lr, bool stop_request,
                         void (*on_grads)(const model *m, void *user), void *grads_user, train_step_stats *st) {
    const int E = t->m->cfg.num_experts;
    memset(st, 0, sizeof *st);
    model_zero_grads(t->m);
    memset(t->step_tokens, 0, sizeof(int64_t) * (size_t)(t->n_sparse * E));
    SX_TRY(micro_batches(t, get, user, step, st));
    SX_TRY(sync_grads(t));
    if (on_grads) on_grads(t->m, grads_user);
    /* the step's numbers, summed over ranks (shares of the loss; token and routing counts); v[7]: a stop request on
     * any rank stops every rank after this step */
    double v[8] = {st->loss, st->ce, st->z, st->aux, (double)st->dropped, (double)st->routed, (double)st->tokens, stop_request ? 1.0 : 0.0};
    SX_TRY(par_allreduce_sum(t->par->world, v, 8, PAR_F64));
    SX_TRY(par_allreduce_sum(t->par->world, t->step_tokens, t->n_sparse * E, PAR_I64));
    st->loss = v[0];
    st->ce = v[1];
    st->z = v[2];
    st->aux = v[3];
    st->dropped = (int64_t)v[4];
    st->routed = (int64_t)v[5];
    st->tokens = (int64_t)v[6];
    st->stop = v[7] > 0;
    st->layer_tokens = t->step_tokens;
    st->n_sparse = t->n_sparse;
    select_units(t, t->step_tokens, t->route_param, t->n_sparse);
    st->grad_norm = global_grad_norm(t);
    st->finite = isfinite(st->loss) && isfinite(st->grad_norm);
    if (!st->finite) return sx_ok();
    /* torch's clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1 */
    double clip = t->cfg->grad_clip;
    if (clip > 0 && clip / (st->grad_norm + 1e-6) < 1) optim_scale(t->dev, t->g, t->spans, t->n_spans, (float)(clip / (st->grad_norm + 1e-6)));
    optim_step(t->opt, t->w, t->g, lr, t->active);
    return sx_ok();
}
