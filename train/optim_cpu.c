/* The CPU implementation of the optimizer (train/optim_impl.h): torch.optim.AdamW's and transformers' Adafactor's
 * update of one unit on host spans, in the order of operations the CUDA kernels (autograd/cuda/k_optim.cu) repeat,
 * and the sums of squares and scaling of the gradient norm and clipping. */
#include <math.h>

#include "train/optim_impl.h"

static double rms(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return n ? sqrt(s / (double)n) : 0;
}

/* w, g, m and v are distinct spans (restrict lets the update vectorise); the order of operations is torch's. */
static void adamw_span(float *restrict w, const float *restrict g, float *restrict m, float *restrict v, int64_t n, float b1, float b2,
                       float step_size, float bc2_sqrt, float eps, float decay) {
    for (int64_t j = 0; j < n; j++) {
        m[j] = b1 * m[j] + (1 - b1) * g[j];
        v[j] = b2 * v[j] + (1 - b2) * g[j] * g[j];
        w[j] *= decay;
        w[j] -= step_size * m[j] / (sqrtf(v[j]) / bc2_sqrt + eps);
    }
}

static void cpu_adamw(const optim_config *c, const optim_unit *u, double lr) {
    double bc1 = 1 - pow(c->beta1, (double)u->step), bc2 = 1 - pow(c->beta2, (double)u->step);
    float decay = u->decay && c->weight_decay > 0 ? (float)(1 - lr * c->weight_decay) : 1.0f;
    adamw_span(u->w, u->g, u->m, u->v, u->n, (float)c->beta1, (float)c->beta2, (float)(lr / bc1), (float)sqrt(bc2), (float)c->eps, decay);
}

/* The factored second moment of one [R, C] slice b and the update ub = g / sqrt(v_hat) from it. */
static void adafactor_factored(const optim_config *c, const float *gb, float *rb, float *cb, float *ub, int64_t R, int64_t C, double beta2t) {
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

static void cpu_adafactor(const optim_config *c, const optim_unit *p, double lr_in) {
    const int64_t n = p->n, t = p->step;
    float *w = p->w, *u = p->scratch;
    const float *g = p->g;
    /* learning rate (HF _get_lr) */
    double rel = lr_in;
    if (c->relative_step) {
        double min_step = c->warmup_init ? 1e-6 * (double)t : 1e-2;
        rel = fmin(min_step, 1.0 / sqrt((double)t));
    }
    double scale = c->scale_parameter ? fmax(c->eps2, rms(w, n)) : 1.0;
    double lr = scale * rel;
    double beta2t = 1.0 - pow((double)t, c->decay_rate);
    if (p->row) {
        int64_t R = p->shape[p->ndim - 2], C = p->shape[p->ndim - 1], lead = n / (R * C);
        for (int64_t b = 0; b < lead; b++)
            adafactor_factored(c, g + b * R * C, p->row + b * R, p->col + b * C, u + b * R * C, R, C, beta2t);
    } else {
        for (int64_t j = 0; j < n; j++) {
            p->v[j] = (float)(beta2t * p->v[j] + (1 - beta2t) * ((double)g[j] * g[j] + c->eps1));
            u[j] = (float)(1.0 / sqrt((double)p->v[j])) * g[j];
        }
    }
    double denom = fmax(1.0, rms(u, n) / c->clip_threshold);
    float f = (float)(lr / denom);
    for (int64_t j = 0; j < n; j++) u[j] *= f;
    if (p->m) {
        float b1 = (float)c->beta1_adafactor;
        for (int64_t j = 0; j < n; j++) {
            p->m[j] = b1 * p->m[j] + (1 - b1) * u[j];
            u[j] = p->m[j];
        }
    }
    if (p->decay && c->weight_decay > 0) {
        float d = (float)(-c->weight_decay * lr);
        for (int64_t j = 0; j < n; j++) w[j] += d * w[j];
    }
    for (int64_t j = 0; j < n; j++) w[j] -= u[j];
}

static void cpu_sumsq(const float *base, const optim_span *spans, const int *set, int n_spans, int n_sets, double *out) {
    for (int k = 0; k < n_sets; k++) out[k] = 0;
    for (int j = 0; j < n_spans; j++) {
        const float *x = base + spans[j].offset;
        double acc = 0;
        for (int64_t i = 0; i < spans[j].numel; i++) acc += (double)x[i] * x[i];
        out[set ? set[j] : 0] += acc;
    }
}

static void cpu_scale(float *base, const optim_span *spans, int n_spans, float c) {
    for (int j = 0; j < n_spans; j++) {
        float *x = base + spans[j].offset;
        for (int64_t i = 0; i < spans[j].numel; i++) x[i] *= c;
    }
}

const optim_backend optim_backend_cpu = {cpu_adamw, cpu_adafactor, cpu_sumsq, cpu_scale};
