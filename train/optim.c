/* AdamW (torch.optim.AdamW semantics) and Adafactor (transformers.optimization.Adafactor semantics, v4.57) on flat
 * fp32 spans, one unit at a time: a unit is a whole parameter, or one expert of an [E, F, D] block (batch_dims 1),
 * which transformers holds as its own 2-D weight. Each unit has its own step count (bias correction, Adafactor's
 * beta2_t and relative step), its own Adafactor factoring, RMS scale and update clipping, and is skipped in a step
 * where its expert saw no token (torch skips a parameter whose grad is None). This file keeps the bookkeeping and
 * cuts each step into unit spans for the device's implementation (train/optim_impl.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/optim_impl.h"

typedef struct {
    int param;            /* index into params */
    char name[192];
    float *data;          /* host memory (a CUDA optimizer's host copy) */
    int64_t at;           /* floats into the state buffer, on either device */
    int64_t numel;
} state_array;

struct optim {
    optim_config cfg;
    int n_params;
    optim_param *params;
    int n_states;
    state_array *states;
    /* per parameter: indices of its state arrays (-1 when absent) */
    int *m_idx, *v_idx, *row_idx, *col_idx;
    float *buf;           /* one allocation for every state array (host) */
    float *dbuf;          /* CUDA: the state on the device, buf's layout; NULL on the CPU */
    int64_t buf_floats;
    const optim_backend *impl;
    float *scratch;       /* the CPU's Adafactor update, sized for the largest unit */
    int64_t n_units;
    int64_t *unit_first;  /* [n_params + 1]: the first unit of each parameter */
    int64_t *steps;       /* [n_units]: updates applied to each unit (torch's state["step"]) */
};

static int64_t numel_of(const optim_param *p) {
    int64_t n = 1;
    for (int i = 0; i < p->ndim; i++) n *= p->shape[i];
    return n;
}

static int64_t units_of(const optim_param *p) { return p->batch_dims ? p->shape[0] : 1; }
/* Adafactor factors a unit of two or more dims (HF: len(grad.shape) >= 2 of the tensor it holds). */
static bool factored(const optim_param *p) { return p->ndim - p->batch_dims >= 2; }

/* The state arrays of every non-frozen parameter (names, sizes, offsets into one buffer padded to 16 floats);
 * returns the buffer's floats and sets *largest to the largest unit. */
static int64_t plan_states(optim *o, int64_t *largest) {
    const optim_config *cfg = &o->cfg;
    int64_t total = 0;
    *largest = 1;
    for (int i = 0; i < o->n_params; i++) {
        const optim_param *p = &o->params[i];
        o->m_idx[i] = o->v_idx[i] = o->row_idx[i] = o->col_idx[i] = -1;
        if (p->frozen) continue;
        int64_t n = numel_of(p);
        if (n / units_of(p) > *largest) *largest = n / units_of(p);
        struct {
            int *slot;
            const char *suffix;
            int64_t n;
        } want[4];
        int k = 0;
        if (cfg->kind == OPTIM_ADAMW) {
            want[k++] = (typeof(want[0])){&o->m_idx[i], "exp_avg", n};
            want[k++] = (typeof(want[0])){&o->v_idx[i], "exp_avg_sq", n};
        } else {
            if (cfg->beta1_adafactor > 0) want[k++] = (typeof(want[0])){&o->m_idx[i], "exp_avg", n};
            if (factored(p)) {
                int64_t lead = n / (p->shape[p->ndim - 1] * p->shape[p->ndim - 2]);
                want[k++] = (typeof(want[0])){&o->row_idx[i], "exp_avg_sq_row", lead * p->shape[p->ndim - 2]};
                want[k++] = (typeof(want[0])){&o->col_idx[i], "exp_avg_sq_col", lead * p->shape[p->ndim - 1]};
            } else {
                want[k++] = (typeof(want[0])){&o->v_idx[i], "exp_avg_sq", n};
            }
        }
        for (int j = 0; j < k; j++) {
            state_array *s = &o->states[o->n_states];
            s->param = i;
            snprintf(s->name, sizeof s->name, "%s/%s", p->name, want[j].suffix);
            s->numel = want[j].n;
            s->at = total;
            *want[j].slot = o->n_states++;
            total += (want[j].n + 15) & ~(int64_t)15;
        }
    }
    return total + 16;
}

sx_status optim_init(optim **out, const optim_config *cfg, const optim_param *params, int n_params) {
    if (cfg->kind == OPTIM_ADAMW && (cfg->beta1 < 0 || cfg->beta1 >= 1 || cfg->beta2 < 0 || cfg->beta2 >= 1))
        return sx_errorf("optim: AdamW betas (%g, %g) must lie in [0, 1)", cfg->beta1, cfg->beta2);
    if (cfg->kind == OPTIM_ADAFACTOR && cfg->decay_rate >= 0) return sx_errorf("optim.decay_rate: %g must be negative (HF: -0.8)", cfg->decay_rate);
    if (cfg->device != AG_DEV_CPU && cfg->device != AG_DEV_CUDA) return sx_errorf("optim: unknown device %d", (int)cfg->device);
    if (cfg->device == AG_DEV_CUDA && ag_cuda_device_count() == 0)
        return sx_errorf("optim: the CUDA optimizer needs a CUDA device, and there is none (%s)", ag_cuda_describe());
    for (int i = 0; i < n_params; i++)
        if (params[i].batch_dims < 0 || params[i].batch_dims > 1 || params[i].ndim <= params[i].batch_dims)
            return sx_errorf("optim: parameter '%s': batch_dims %d of a %d-D tensor (0, or 1 for an expert block)", params[i].name,
                             params[i].batch_dims, params[i].ndim);
    optim *o = calloc(1, sizeof *o);
    o->cfg = *cfg;
    o->impl = cfg->device == AG_DEV_CUDA ? &optim_backend_cuda : &optim_backend_cpu;
    o->unit_first = malloc(sizeof(int64_t) * (size_t)(n_params + 1));
    o->unit_first[0] = 0;
    for (int i = 0; i < n_params; i++) o->unit_first[i + 1] = o->unit_first[i] + units_of(&params[i]);
    o->n_units = o->unit_first[n_params];
    o->steps = calloc((size_t)o->n_units + 1, sizeof(int64_t));
    o->n_params = n_params;
    o->params = malloc(sizeof(optim_param) * (size_t)n_params);
    memcpy(o->params, params, sizeof(optim_param) * (size_t)n_params);
    o->m_idx = malloc(sizeof(int) * (size_t)n_params);
    o->v_idx = malloc(sizeof(int) * (size_t)n_params);
    o->row_idx = malloc(sizeof(int) * (size_t)n_params);
    o->col_idx = malloc(sizeof(int) * (size_t)n_params);
    o->states = calloc((size_t)(4 * n_params + 1), sizeof(state_array));
    int64_t largest;
    o->buf_floats = plan_states(o, &largest);
    /* the host buffer is the state itself (CPU) or its checkpoint copy (CUDA: calloc'ed pages stay untouched until
     * optim_state_to_host) */
    o->buf = calloc((size_t)o->buf_floats, sizeof(float));
    o->scratch = cfg->device == AG_DEV_CPU ? malloc(sizeof(float) * (size_t)largest) : NULL;
    if (!o->buf || (cfg->device == AG_DEV_CPU && !o->scratch)) {
        optim_free(o);
        return sx_errorf("optim: out of memory for %lld floats of optimizer state", (long long)o->buf_floats);
    }
    if (cfg->device == AG_DEV_CUDA) {
        o->dbuf = ag_cuda_malloc(sizeof(float) * (size_t)o->buf_floats, "the optimizer state");
        ag_cuda_memset0(o->dbuf, sizeof(float) * (size_t)o->buf_floats);
    }
    for (int j = 0; j < o->n_states; j++) o->states[j].data = o->buf + o->states[j].at;
    *out = o;
    return sx_ok();
}

void optim_free(optim *o) {
    if (!o) return;
    free(o->params);
    free(o->states);
    free(o->m_idx);
    free(o->v_idx);
    free(o->row_idx);
    free(o->col_idx);
    free(o->buf);
    if (o->dbuf) ag_cuda_free(o->dbuf);
    free(o->scratch);
    free(o->unit_first);
    free(o->steps);
    free(o);
}

int64_t optim_unit_count(const optim *o) { return o->n_units; }
int64_t optim_unit_first(const optim *o, int i) { return o->unit_first[i]; }
int64_t *optim_step_counts(optim *o) { return o->steps; }

int optim_state_count(const optim *o) { return o->n_states; }

void optim_state_get(const optim *o, int i, const char **name, float **data, int64_t *numel) {
    *name = o->states[i].name;
    *data = o->states[i].data;
    *numel = o->states[i].numel;
}

int optim_state_param(const optim *o, int i) { return o->states[i].param; }

void optim_state_to_host(optim *o) {
    if (o->dbuf) ag_cuda_memcpy(o->buf, o->dbuf, sizeof(float) * (size_t)o->buf_floats, AG_COPY_D2H);
}

void optim_state_to_device(optim *o) {
    if (o->dbuf) ag_cuda_memcpy(o->dbuf, o->buf, sizeof(float) * (size_t)o->buf_floats, AG_COPY_H2D);
}

int64_t optim_device_bytes(const optim *o) { return o->dbuf ? (int64_t)sizeof(float) * o->buf_floats : 0; }

/* The spans of units [k, k + run) of parameter i (n floats each) at step t, on the optimizer's device. */
static optim_unit unit_spans(const optim *o, int i, int64_t k, int64_t run, int64_t n, float *w, const float *g, int64_t t) {
    const optim_param *p = &o->params[i];
    float *sb = o->dbuf ? o->dbuf : o->buf;
    optim_unit u = {.w = w + p->offset + k * n, .g = g + p->offset + k * n, .n = run * n, .ndim = p->ndim - p->batch_dims,
                    .shape = p->shape + p->batch_dims, .decay = p->decay, .step = t, .scratch = o->scratch};
    if (o->m_idx[i] >= 0) u.m = sb + o->states[o->m_idx[i]].at + k * n;
    if (o->v_idx[i] >= 0) u.v = sb + o->states[o->v_idx[i]].at + k * n;
    if (o->row_idx[i] >= 0) {
        int64_t R = u.shape[u.ndim - 2], C = u.shape[u.ndim - 1], lead = n / (R * C);
        u.row = sb + o->states[o->row_idx[i]].at + k * lead * R;
        u.col = sb + o->states[o->col_idx[i]].at + k * lead * C;
    }
    return u;
}

void optim_step(optim *o, float *w, const float *g, double lr, const uint8_t *active) {
    const bool adamw = o->cfg.kind == OPTIM_ADAMW;
    for (int i = 0; i < o->n_params; i++) {
        const optim_param *p = &o->params[i];
        if (p->frozen) continue;
        int64_t nu = units_of(p), n = numel_of(p) / nu, *steps = o->steps + o->unit_first[i];
        const uint8_t *act = active ? active + o->unit_first[i] : NULL;
        for (int64_t k = 0; k < nu;) {
            if (act && !act[k]) {
                k++;
                continue;
            }
            int64_t t = ++steps[k], run = 1;
            /* AdamW is elementwise: adjacent active units at the same step are one span (one launch on the device) */
            while (adamw && k + run < nu && (!act || act[k + run]) && steps[k + run] + 1 == t) {
                steps[k + run]++;
                run++;
            }
            optim_unit u = unit_spans(o, i, k, run, n, w, g, t);
            if (adamw)
                o->impl->adamw(&o->cfg, &u, lr);
            else
                o->impl->adafactor(&o->cfg, &u, lr);
            k += run;
        }
    }
}

void optim_sumsq(ag_device dev, const float *base, const optim_span *spans, const int *set, int n_spans, int n_sets, double *out) {
    (dev == AG_DEV_CUDA ? &optim_backend_cuda : &optim_backend_cpu)->sumsq(base, spans, set, n_spans, n_sets, out);
}

void optim_scale(ag_device dev, float *base, const optim_span *spans, int n_spans, float c) {
    (dev == AG_DEV_CUDA ? &optim_backend_cuda : &optim_backend_cpu)->scale(base, spans, n_spans, c);
}

double optim_grad_norm(const float *g, const optim_param *p, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) {
        if (p[i].frozen) continue;
        double part;
        optim_sumsq(AG_DEV_CPU, g, &(optim_span){p[i].offset, numel_of(&p[i])}, NULL, 1, 1, &part);
        s += part;
    }
    return sqrt(s);
}

double optim_clip_grad_norm(float *g, const optim_param *p, int n, double max_norm) {
    double norm = optim_grad_norm(g, p, n);
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1)
        for (int i = 0; i < n; i++)
            if (!p[i].frozen) optim_scale(AG_DEV_CPU, g, &(optim_span){p[i].offset, numel_of(&p[i])}, 1, (float)coef);
    return norm;
}
