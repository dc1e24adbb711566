/* LoRA adapters in the model's parameter table (train/lora.h): which linears the targets select, the adapter
 * descriptors and the adapters-first layout, peft's initialisation, the low-rank update in a forward, and the merge
 * into the base weights. */
#include "train/lora.h"

#include <cblas.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe/lora.h"
#include "train/cfg_util.h"

struct lora_map {
    lora_spec spec;
    double scaling;
    int *a, *b;       /* [n_params]: the adapter descriptors of base parameter i (-1 when none) */
    model_rng rng;    /* the current forward's dropout keys */
    bool merged;
};

sx_status lora_spec_check(const lora_spec *s) {
    if (s->r < 0) return sx_errorf("lora.r: %d must be at least 1 (or 0: no adapters)", s->r);
    if (s->r == 0) {
        if (s->targets[0]) return sx_errorf("lora.targets is set ('%.60s') but lora.r is 0: give the rank (e.g. lora.r=8)", s->targets);
        return sx_ok();
    }
    if (!s->targets[0]) return sx_errorf("lora.r = %d but lora.targets is empty: name the linears to adapt (e.g. q,v or *.experts.*.wi)", s->r);
    if (!(s->alpha > 0)) return sx_errorf("lora.alpha: %g must be positive (peft's lora_alpha; the update is scaled by alpha / r)", s->alpha);
    if (!(s->dropout >= 0 && s->dropout < 1)) return sx_errorf("lora.dropout: %g must lie in [0, 1)", s->dropout);
    return sx_ok();
}

double lora_scaling(const lora_spec *s) { return s->rslora ? s->alpha / sqrt((double)s->r) : s->alpha / (double)s->r; }

bool lora_is_adapter(const param_desc *p) { return p->kind == PK_LORA_A || p->kind == PK_LORA_B; }

bool lora_target_matches(const char *pat, const char *module) {
    if (strpbrk(pat, "*?[")) return fnmatch(pat, module, 0) == 0;
    size_t n = strlen(module), k = strlen(pat);
    if (!strcmp(module, pat)) return true;
    return n > k && module[n - k - 1] == '.' && !strcmp(module + n - k, pat); /* peft: key.endswith("." + target) */
}

/* The linears LoRA adapts: attention q/k/v/o, dense FFN and expert wi/wo (wi_0/wi_1 gated). */
static bool adaptable(const param_desc *p) {
    switch (p->kind) {
    case PK_ATTN_Q: case PK_ATTN_K: case PK_ATTN_V: case PK_ATTN_O: case PK_WI: case PK_WO: return true;
    default: return false;
    }
}

/* The module name of parameter i for global expert e: its HF name less ".weight". */
static void module_name(const model *m, int i, int e, char *buf, size_t cap) {
    model_param_hf_name(m, i, e - m->params[i].expert_offset, buf, cap);
    size_t n = strlen(buf);
    if (n > 7 && !strcmp(buf + n - 7, ".weight")) buf[n - 7] = 0;
}

#define MAX_PATTERNS 512

/* Whether the targets select base parameter i; an expert block is selected whole or not at all. */
static sx_status selects(const model *m, int i, char **pats, int np, int *hits, bool *out) {
    const param_desc *p = &m->params[i];
    const int E = p->n_experts ? m->cfg.num_experts : 1;
    char name[200], first[200] = "";
    int n_sel = 0;
    for (int e = 0; e < E; e++) {
        module_name(m, i, e, name, sizeof name);
        bool any = false;
        for (int k = 0; k < np; k++)
            if (lora_target_matches(pats[k], name)) hits[k]++, any = true;
        if (any && !n_sel++) snprintf(first, sizeof first, "%s", name);
    }
    if (n_sel && n_sel < E)
        return sx_errorf("lora.targets: %s and %d more of the %d experts of its layer are selected, not all: the experts of a "
                         "layer share one [E, ...] adapter block, so name every expert (e.g. *.experts.*.wi)", first, n_sel - 1, E);
    *out = n_sel > 0;
    return sx_ok();
}

static sx_status add_adapters(model *m, int i, lora_param_adder add, void *tb, int *ia, int *ib) {
    const param_desc *p = &m->params[i]; /* valid until the first add: the table may move */
    const int64_t r = m->cfg.lora.r, out = p->shape[p->ndim - 2], in = p->shape[p->ndim - 1];
    const int nd = p->ndim, ne = p->n_experts;
    char mod[200], name[240];
    snprintf(mod, sizeof mod, "%s", p->name);
    mod[strlen(mod) - 7] = 0; /* less ".weight" (every adaptable name ends so) */
    int64_t sa[3], sb[3];
    if (ne) sa[0] = sb[0] = p->shape[0];
    sa[nd - 2] = r;
    sa[nd - 1] = in;
    sb[nd - 2] = out;
    sb[nd - 1] = r;
    snprintf(name, sizeof name, "%s.lora_A.weight", mod);
    *ia = add(tb, PK_LORA_A, ne, nd, sa, name);
    snprintf(name, sizeof name, "%s.lora_B.weight", mod);
    *ib = add(tb, PK_LORA_B, ne, nd, sb, name);
    m->params[*ia].lora_base = m->params[*ib].lora_base = i;
    return sx_ok();
}

/* Adapters first in the flat layout, the base after them without a gradient. */
static void layout(model *m) {
    int64_t off = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < m->n_params; i++) {
            param_desc *p = &m->params[i];
            if (lora_is_adapter(p) != (pass == 0)) continue;
            p->offset = off;
            p->no_grad = pass == 1;
            off += (p->numel + 15) & ~(int64_t)15; /* 64-byte aligned spans, as model.c's */
        }
        if (pass == 0) m->n_grad_floats = off;
    }
    m->n_floats = off;
}

sx_status lora_build(model *m, lora_param_adder add, void *tb) {
    const lora_spec *s = &m->cfg.lora;
    m->n_grad_floats = m->n_floats;
    SX_TRY(lora_spec_check(s));
    if (s->r == 0) return sx_ok();
    char buf[LORA_TARGETS_CAP], *pats[MAX_PATTERNS];
    int np = cfg_split_list(s->targets, buf, sizeof buf, pats, MAX_PATTERNS), hits[MAX_PATTERNS] = {0};
    const int n_base = m->n_params;
    bool *sel = calloc((size_t)n_base + 1, 1);
    sx_status st = sx_ok();
    for (int i = 0; st.ok && i < n_base; i++)
        if (adaptable(&m->params[i])) st = selects(m, i, pats, np, hits, &sel[i]);
    for (int k = 0; st.ok && k < np; k++)
        if (!hits[k])
            st = sx_errorf("lora.targets: '%s' selects no linear LoRA can adapt (attention q, k, v, o; dense and expert wi, wo; "
                           "names such as 'encoder.block.0.layer.0.SelfAttention.q' or "
                           "'encoder.block.1.layer.1.mlp.experts.expert_0.wi'; the router trains whole: train.train_only=*.router.*)",
                           pats[k]);
    int *ia = malloc(sizeof(int) * (size_t)(n_base + 1)), *ib = malloc(sizeof(int) * (size_t)(n_base + 1));
    for (int i = 0; i < n_base; i++) {
        ia[i] = ib[i] = -1;
        if (st.ok && sel[i]) st = add_adapters(m, i, add, tb, &ia[i], &ib[i]);
    }
    free(sel);
    if (!st.ok) {
        free(ia);
        free(ib);
        return st;
    }
    struct lora_map *L = calloc(1, sizeof *L);
    L->spec = *s;
    L->scaling = lora_scaling(s);
    L->a = malloc(sizeof(int) * (size_t)m->n_params);
    L->b = malloc(sizeof(int) * (size_t)m->n_params);
    for (int i = 0; i < m->n_params; i++) L->a[i] = L->b[i] = -1;
    memcpy(L->a, ia, sizeof(int) * (size_t)n_base);
    memcpy(L->b, ib, sizeof(int) * (size_t)n_base);
    free(ia);
    free(ib);
    m->lora = L;
    layout(m);
    return sx_ok();
}

void lora_free(model *m) {
    if (!m->lora) return;
    free(m->lora->a);
    free(m->lora->b);
    free(m->lora);
    m->lora = NULL;
}

void lora_adapters_of(const model *m, int i, int *a, int *b) {
    *a = *b = -1;
    if (!m->lora || i < 0) return;
    *a = m->lora->a[i];
    *b = m->lora->b[i];
}

void lora_init_param(model *m, int i, uint64_t seed) {
    const param_desc *p = &m->params[i];
    ag_tensor *w = m->t[i];
    if (p->kind == PK_LORA_B) {
        ag_fill(w, 0.0);
        return;
    }
    /* peft: nn.init.kaiming_uniform_(A, a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in. Element
     * j of an expert slice is element j + first of the whole block: every expert-parallel layout draws the same. */
    const double bound = 1.0 / sqrt((double)p->shape[p->ndim - 1]);
    ag_rng_key k = ag_rng_make(seed, (uint64_t)i, 0x10A4);
    int64_t first = p->n_experts ? (int64_t)p->expert_offset * (p->numel / p->n_experts) : 0;
    for (int64_t j = 0; j < p->numel; j++) ag_set(w, j, bound * (2.0 * ag_rng_uniform(k, (uint64_t)(first + j)) - 1.0));
}

void lora_begin(model *m, model_rng rng) {
    if (m->lora) m->lora->rng = rng;
}

static ag_rng_key dropout_key(const struct lora_map *L, int w) {
    return ag_rng_make(L->rng.seed ^ (L->rng.rank * 0x9E3779B97F4A7C15ull), L->rng.step, 0x4C6F5241000000ull + (uint64_t)w);
}

ag_tensor *lora_linear(ag_ctx *ctx, const model *m, ag_tensor *x, int w, ag_tensor *y) {
    const struct lora_map *L = m->lora;
    if (!L || L->merged || w < 0 || L->a[w] < 0) return y;
    ag_tensor *xd = ag_dropout(ctx, x, L->spec.dropout, dropout_key(L, w));
    ag_tensor *h = ag_matmul(ctx, xd, m->t[L->a[w]], false, true); /* [.., r] */
    ag_tensor *u = ag_matmul(ctx, h, m->t[L->b[w]], false, true);  /* [.., out] */
    return ag_add(ctx, y, ag_scale(ctx, u, L->scaling));           /* peft: result + lora_B(lora_A(x)) * scaling */
}

static const struct moe_lora *expert_adapter(ag_ctx *ctx, const model *m, int w) {
    const struct lora_map *L = m->lora;
    if (w < 0 || L->a[w] < 0) return NULL;
    struct moe_lora *l = ag_arena_alloc(ag_ctx_host_arena(ctx), sizeof *l);
    *l = (struct moe_lora){m->t[L->a[w]], m->t[L->b[w]], L->scaling, L->spec.dropout, dropout_key(L, w)};
    return l;
}

void lora_moe_weights(ag_ctx *ctx, const model *m, const block_params *bp, moe_weights *w) {
    if (!m->lora || m->lora->merged) return;
    w->lora_wi = expert_adapter(ctx, m, bp->wi);
    w->lora_wi0 = expert_adapter(ctx, m, bp->wi0);
    w->lora_wi1 = expert_adapter(ctx, m, bp->wi1);
    w->lora_wo = expert_adapter(ctx, m, bp->wo);
}

void lora_merge(model *m) {
    struct lora_map *L = m->lora;
    if (!L || L->merged) return;
    SX_ASSERT(m->dtype == AG_F32 && m->device == AG_DEV_CPU, "lora_merge: an f32 model on the host");
    const int r = L->spec.r;
    for (int i = 0; i < m->n_params; i++) {
        if (L->a[i] < 0) continue;
        const param_desc *p = &m->params[i], *pa = &m->params[L->a[i]], *pb = &m->params[L->b[i]];
        const int ne = p->n_experts ? p->n_experts : 1;
        const int64_t out = p->shape[p->ndim - 2], in = p->shape[p->ndim - 1];
        for (int e = 0; e < ne; e++) /* W_e += s * B_e A_e */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)out, (int)in, r, (float)L->scaling,
                        m->w + pb->offset + (int64_t)e * out * r, r, m->w + pa->offset + (int64_t)e * r * in, (int)in, 1.0f,
                        m->w + p->offset + (int64_t)e * out * in, (int)in);
    }
    L->merged = true;
}

bool lora_unmerged(const model *m) { return m->lora && !m->lora->merged; }
