/* Learning-rate schedules. step is the 1-based index of the update being made (HF's schedulers evaluate their
 * lambda at current_step = step - 1 with the first update at 0; ours starts the warmup at lr/warmup instead of 0). */
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
