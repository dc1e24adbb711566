/* Learning-rate schedules as transformers' lambdas: sched_lr(c, n) is the rate after n scheduler steps (HF's
 * current_step), i.e. the rate of the update that follows n completed updates. The trainer passes the updates done
 * so far, so update 1 runs at lambda(0) as with HF (0 under a linear warmup, as HF). */
#ifndef SX_TRAIN_SCHEDULE_H
#define SX_TRAIN_SCHEDULE_H

#include <stdint.h>

#include "autograd/sx_error.h"

typedef enum { SCHED_CONSTANT, SCHED_LINEAR_WARMUP, SCHED_INVERSE_SQRT, SCHED_COSINE, SCHED_LINEAR_DECAY } sched_kind;

typedef struct {
    sched_kind kind;
    double lr;               /* peak */
    int64_t warmup_steps;
    int64_t total_steps;
    double min_lr;           /* cosine floor */
} sched_config;

double sched_lr(const sched_config *c, int64_t step);
sx_status sched_parse_kind(const char *s, sched_kind *out);

#endif
