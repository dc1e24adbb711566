/* AdamW (torch.optim.AdamW semantics) and Adafactor (transformers.optimization.Adafactor semantics, v4.57) on flat
 * fp32 spans, one unit at a time: a unit is a whole parameter, or one expert of an [E, F, D] block (batch_dims 1),
 * which transformers holds as its own 2-D weight. Each unit has its own step count (bias correction, Adafactor's
 * beta2_t and relative step), its own Adafactor factoring, RMS scale and update clipping, and is skipped in a step
 * where its expert saw no token (torch skips a parameter whose grad is None). */
#include "train/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int param;            /* index into params */
    char name[192];
    float *data;
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
    float *buf;           /* one allocation for every state array */
    float *scratch;       /* Adafactor's update, sized for the largest unit */
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

sx_status optim_init(optim **out, const optim_config *cfg, const optim_param *params, int n_params) {
    if (cfg->kind == OPTIM_ADAMW && (cfg->beta1 < 0 || cfg->beta1 >= 1 || cfg->beta2 < 0 || cfg->beta2 >= 1))
        return sx_errorf("optim: AdamW betas (%g, %g) must lie in [0, 1)", cfg->beta1, cfg->beta2);
    if (cfg->kind == OPTIM_ADAFACTOR && cfg->decay_rate >= 0) return sx_errorf("optim.decay_rate: %g must be negative (HF: -0.8)", cfg->decay_rate);
    for (int i = 0; i < n_params; i++)
        if (params[i].batch_dims < 0 || params[i].batch_dims > 1 || params[i].ndim <= params[i].batch_dims)
            return sx_errorf("optim: parameter '%s': batch_dims %d of a %d-D tensor (0, or 1 for an expert block)", params[i].name,
                             params[i].batch_dims, params[i].ndim);
    optim *o = calloc(1, sizeof *o);
    o->cfg = *cfg;
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
    int64_t total = 0, largest = 1;
    for (int i = 0; i < n_params; i++) {
        const optim_param *p = &params[i];
        o->m_idx[i] = o->v_idx[i] = o->row_idx[i] = o->col_idx[i] = -1;
        if (p->frozen) continue;
        int64_t n = numel_of(p);
        if (n / units_of(p) > largest) largest = n / units_of(p);
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
            *want[j].slot = o->n_states++;
            total += (want[j].n + 15) & ~(int64_t)15;
        }
    }
    o->buf = calloc((size_t)(total + 16), sizeof(float));
    o->scratch = malloc(sizeof(float) * (size_t)largest);
    if (!o->buf || !o->scratch) {
        optim_free(o);
        return sx_errorf("optim: out of memory for %lld floats of optimizer state", (long long)total);
    }
    int64_t off = 0;
    for (int j = 0; j < o->n_states; j++) {
        o->states[j].data = o->buf + off;
        off += (o->states[j].numel + 15) & ~(int64_t)15;
    }
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

double optim_grad_norm(const float *g, const optim_param *p, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) {
        if (p[i].frozen) continue;
        const float *gi = g + p[i].offset;
        int64_t m = numel_of(&p[i]);
        for (int64_t j = 0; j < m; j++) s += (double)gi[j] * gi[j];
    }
    return sqrt(s);
}

double optim_clip_grad_norm(float *g, const optim_param *p, int n, double max_norm) {
    double norm = optim_grad_norm(g, p, n);
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1) {
        float c = (float)coef;
        for (int i = 0; i < n; i++) {
            if (p[i].frozen) continue;
            float *gi = g + p[i].offset;
            int64_t m = numel_of(&p[i]);
            for (int64_t j = 0; j < m; j++) gi[j] *= c;
        }
    }
    return norm;
}

static double rms(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return n ? sqrt(s / (double)n) : 0;
}

/* Unit u of parameter i (n floats at w, g). w, g, m and v are distinct spans (restrict lets the update vectorise);
 * the order of operations is torch's. */
static void adamw_unit(optim *o, int i, int64_t u, int64_t n, float *restrict w, const float *restrict g, double lr, int64_t t) {
    const optim_config *c = &o->cfg;
    const optim_param *p = &o->params[i];
    float *restrict m = o->states[o->m_idx[i]].data + u * n, *restrict v = o->states[o->v_idx[i]].data + u * n;
    float b1 = (float)c->beta1, b2 = (float)c->beta2;
    double bc1 = 1 - pow(c->beta1, (double)t), bc2 = 1 - pow(c->beta2, (double)t);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)c->eps;
    float decay = p->decay && c->weight_decay > 0 ? (float)(1 - lr * c->weight_decay) : 1.0f;
    for (int64_t j = 0; j < n; j++) {
        m[j] = b1 * m[j] + (1 - b1) * g[j];
        v[j] = b2 * v[j] + (1 - b2) * g[j] * g[j];
        w[j] *= decay;
        w[j] -= step_size * m[j] / (sqrtf(v[j]) / bc2_sqrt + eps);
    }
}

/* Unit k of parameter i: n floats at w, g, shaped as the parameter without its batch dim. */
static void adafactor_unit(optim *o, int i, int64_t k_unit, int64_t n, float *w, const float *g, double lr_in, int64_t t) {
    const optim_config *c = &o->cfg;
    const optim_param *p = &o->params[i];
    float *u = o->scratch;
    /* learning rate (HF _get_lr) */
    double rel = lr_in;
    if (c->relative_step) {
        double min_step = c->warmup_init ? 1e-6 * (double)t : 1e-2;
        rel = fmin(min_step, 1.0 / sqrt((double)t));
    }
    double scale = c->scale_parameter ? fmax(c->eps2, rms(w, n)) : 1.0;
    double lr = scale * rel;
    double beta2t = 1.0 - pow((double)t, c->decay_rate);
    if (factored(p)) {
        int64_t R = p->shape[p->ndim - 2], C = p->shape[p->ndim - 1], lead = n / (R * C);
        float *row = o->states[o->row_idx[i]].data + k_unit * lead * R, *col = o->states[o->col_idx[i]].data + k_unit * lead * C;
        for (int64_t b = 0; b < lead; b++) {
            const float *gb = g + b * R * C;
            float *rb = row + b * R, *cb = col + b * C, *ub = u + b * R * C;
            for (int64_t r = 0; r < R; r++) {
                double s = 0;
                for (int64_t k = 0; k < C; k++) s += (double)gb[r * C + k] * gb[r * C + k] + c->eps1;
                rb[r] = (float)(beta2t * rb[r] + (1 - beta2t) * (s / (double)C));
            }
            for (int64_t k = 0; k < C; k++) {
                double s = 0;
                for (int64_t r = 0; r < R; r++) s += (double)gb[r * C + k] * gb[r * C + k] + c->eps1;
                cb[k] = (float)(beta2t * cb[k] + (1 - beta2t) * (s / (double)R));
            }
            double rmean = 0;
            for (int64_t r = 0; r < R; r++) rmean += rb[r];
            rmean /= (double)R;
            for (int64_t r = 0; r < R; r++) {
                float rf = (float)(1.0 / sqrt(rb[r] / rmean));
                for (int64_t k = 0; k < C; k++) ub[r * C + k] = rf * (float)(1.0 / sqrt((double)cb[k])) * gb[r * C + k];
            }
        }
    } else {
        float *v = o->states[o->v_idx[i]].data + k_unit * n;
        for (int64_t j = 0; j < n; j++) {
            v[j] = (float)(beta2t * v[j] + (1 - beta2t) * ((double)g[j] * g[j] + c->eps1));
            u[j] = (float)(1.0 / sqrt((double)v[j])) * g[j];
        }
    }
    double denom = fmax(1.0, rms(u, n) / c->clip_threshold);
    float f = (float)(lr / denom);
    for (int64_t j = 0; j < n; j++) u[j] *= f;
    if (c->beta1_adafactor > 0) {
        float *m = o->states[o->m_idx[i]].data + k_unit * n, b1 = (float)c->beta1_adafactor;
        for (int64_t j = 0; j < n; j++) {
            m[j] = b1 * m[j] + (1 - b1) * u[j];
            u[j] = m[j];
        }
    }
    if (p->decay && c->weight_decay > 0) {
        float d = (float)(-c->weight_decay * lr);
        for (int64_t j = 0; j < n; j++) w[j] += d * w[j];
    }
    for (int64_t j = 0; j < n; j++) w[j] -= u[j];
}

void optim_step(optim *o, float *w, const float *g, double lr, const uint8_t *active) {
    for (int i = 0; i < o->n_params; i++) {
        const optim_param *p = &o->params[i];
        if (p->frozen) continue;
        int64_t nu = units_of(p), n = numel_of(p) / nu;
        for (int64_t k = 0; k < nu; k++) {
            int64_t unit = o->unit_first[i] + k, off = p->offset + k * n;
            if (active && !active[unit]) continue;
            int64_t t = ++o->steps[unit];
            if (o->cfg.kind == OPTIM_ADAMW)
                adamw_unit(o, i, k, n, w + off, g + off, lr, t);
            else
                adafactor_unit(o, i, k, n, w + off, g + off, lr, t);
        }
    }
}
