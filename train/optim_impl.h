/* The optimizer's implementations behind train/optim.h: train/optim.c cuts every update into the spans of one unit
 * (optim_unit) and hands them to the implementation of the optimizer's device, CPU (train/optim_cpu.c) or CUDA
 * (train/optim_cuda.c); the gradient norm and clipping go through the same table. Internal to train/optim*.c. */
#ifndef SX_TRAIN_OPTIM_IMPL_H
#define SX_TRAIN_OPTIM_IMPL_H

#include "train/optim.h"

/* One unit (a whole parameter, or one expert of a block) at step t, every pointer on the optimizer's device. An
 * AdamW span may cover a run of adjacent units with the same step count: the update is elementwise. */
typedef struct {
    float *w;                 /* [n] weights */
    const float *g;           /* [n] gradient */
    float *m;                 /* [n] exp_avg (AdamW; Adafactor with beta1 > 0), else NULL */
    float *v;                 /* [n] exp_avg_sq (AdamW; unfactored Adafactor), else NULL */
    float *row, *col;         /* factored Adafactor: [lead, R] and [lead, C] for shape [..., R, C], else NULL */
    int64_t n;
    int ndim;                 /* the unit's shape, without the expert axis */
    const int64_t *shape;
    bool decay;               /* weight decay applies */
    int64_t step;             /* t >= 1, after this update's increment */
    float *scratch;           /* [n] host scratch for the CPU's Adafactor update; NULL on the device */
} optim_unit;

typedef struct {
    void (*adamw)(const optim_config *c, const optim_unit *u, double lr);
    void (*adafactor)(const optim_config *c, const optim_unit *u, double lr);
    void (*sumsq)(const float *base, const optim_span *spans, const int *set, int n_spans, int n_sets, double *out);
    void (*scale)(float *base, const optim_span *spans, int n_spans, float c);
} optim_backend;

extern const optim_backend optim_backend_cpu, optim_backend_cuda;

#endif
