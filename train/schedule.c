/* Learning-rate schedules: constant, linear warmup then constant, T5's inverse square root, cosine and linear
 * decay (each with linear warmup), as transformers' get_*_schedule_with_warmup define them. */
#include "train/schedule.h"

#include <math.h>
#include <string.h>

static const char *const NAMES[] = {"constant", "linear_warmup", "inverse_sqrt", "cosine", "linear_decay"};

sx_status sched_parse_kind(const char *s, sched_kind *out) {
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, NAMES[i])) {
            *out = (sched_kind)i;
            return sx_ok();
        }
    return sx_errorf("schedule.name: '%s' is not one of constant, linear_warmup, inverse_sqrt, cosine, linear_decay", s);
}

double sched_lr(const sched_config *c, int64_t step) {
    double w = (double)c->warmup_steps, t = (double)step;
    if (c->kind == SCHED_CONSTANT) return c->lr;
    if (w > 0 && t < w) return c->lr * t / w;
    switch (c->kind) {
    case SCHED_LINEAR_WARMUP: return c->lr;
    case SCHED_INVERSE_SQRT: return c->lr * sqrt((w > 1 ? w : 1) / (t > 1 ? t : 1)); /* T5: rsqrt(max(step, warmup)) */
    case SCHED_COSINE: {
        double span = (double)c->total_steps - w, p = span > 0 ? (t - w) / span : 1;
        if (p > 1) p = 1;
        return c->min_lr + (c->lr - c->min_lr) * 0.5 * (1 + cos(M_PI * p));
    }
    case SCHED_LINEAR_DECAY: {
        double span = (double)c->total_steps - w, r = span > 0 ? ((double)c->total_steps - t) / span : 0;
        return c->lr * (r > 0 ? r : 0);
    }
    default: return c->lr;
    }
}
