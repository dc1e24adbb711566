/* Optimizers on flat float32 spans: every parameter is a descriptor (offset, shape) into one flat parameter buffer
 * and one flat gradient buffer with the same layout. AdamW as torch.optim.AdamW; Adafactor as
 * transformers.optimization.Adafactor (T5 and the Switch paper). An [E, F, D] expert block is E *units*, each updated
 * as the separate 2-D tensor transformers holds per expert: its own step count, factoring, RMS scale and update
 * clipping; a unit whose expert received no token is skipped like a torch parameter whose grad is None. State is
 * fp32, allocated once at init. */
#ifndef SX_TRAIN_OPTIM_H
#define SX_TRAIN_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/sx_error.h"

typedef struct {
    const char *name;      /* HF name (expert blocks: with %d) */
    int64_t offset;        /* into the flat buffers, in floats */
    int ndim;
    int64_t shape[4];
    bool decay;            /* weight decay applies (not norms, biases, the relative-position table) */
    int batch_dims;        /* 0, or 1: the leading dim indexes independent units (the experts of a block) */
    bool frozen;           /* no update, no state change */
} optim_param;

typedef enum { OPTIM_ADAMW, OPTIM_ADAFACTOR } optim_kind;

typedef struct {
    optim_kind kind;
    double lr;
    double weight_decay;
    double beta1, beta2, eps;   /* AdamW */
    double decay_rate;          /* Adafactor: beta2_t = 1 - t^decay_rate, HF's sign convention (-0.8) */
    double clip_threshold;      /* Adafactor update clipping (1.0) */
    double eps1, eps2;          /* Adafactor (1e-30, 1e-3) */
    bool relative_step, scale_parameter, warmup_init;
    double beta1_adafactor;     /* 0 = no first moment (T5's default) */
} optim_config;

typedef struct optim optim;

sx_status optim_init(optim **out, const optim_config *cfg, const optim_param *params, int n_params);
/* Units: every parameter is shape[0] units when batch_dims is 1, else one; unit u of parameter i is
 * optim_unit_first(o, i) + u. */
int64_t optim_unit_count(const optim *o);
int64_t optim_unit_first(const optim *o, int i);
/* One update with learning rate lr (Adafactor with relative_step ignores lr) of every non-frozen unit u with
 * active[u] != 0 (active NULL: all); an updated unit's step count advances first (1-based, as torch's state["step"]),
 * a skipped one keeps its count, weights and state. */
void optim_step(optim *o, float *w, const float *g, double lr, const uint8_t *active);
/* The step counts of every unit (optim_unit_count of them): read for checkpoints, written on resume. */
int64_t *optim_step_counts(optim *o);
/* State arrays for checkpoints, each with a stable name. */
int optim_state_count(const optim *o);
void optim_state_get(const optim *o, int i, const char **name, float **data, int64_t *numel);
/* The parameter (index into the descriptors given to optim_init) that state array i belongs to. */
int optim_state_param(const optim *o, int i);
void optim_free(optim *o);

/* Global L2 norm over the non-frozen parameters (accumulated in double). */
double optim_grad_norm(const float *g, const optim_param *p, int n);
/* torch.nn.utils.clip_grad_norm_: scales g by max_norm / (norm + 1e-6) when that is < 1. Returns the norm. */
double optim_clip_grad_norm(float *g, const optim_param *p, int n, double max_norm);

#endif
