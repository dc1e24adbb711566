/* One training step, the same for the trainer and the benchmark, on the CPU and on the CUDA device: the
 * micro-batches' forward and backward with gradient accumulation, the gradient sync over ranks, the step's statistics
 * summed over ranks, the units the optimizer updates (frozen tensors and experts no token reached are skipped), the
 * global gradient norm, the non-finite check, clipping and the optimizer update. The device is the model's
 * (model_to_device before train_step_init): activations, gradients and optimizer state then live there, and the norm,
 * clipping and optimizer run as device kernels (train/optim.h) with one wait for the stream among them, to read the
 * norm (the forward pass waits too: each micro-batch's losses and routing counts are copied to the host). */
#ifndef SX_TRAIN_STEP_H
#define SX_TRAIN_STEP_H

#include <stdbool.h>
#include <stdint.h>

#include "parallel/par.h"
#include "train/model/model.h"
#include "train/optim.h"
#include "train/run_config.h"

/* Fills rows [0, B) of one micro-batch starting at the global example index 'first': ids/mask [B, *S] and labels
 * [B, *T] (-100 on padding), as batch_source_get. */
typedef sx_status (*train_batch_fn)(void *user, uint64_t first, int B, int32_t *ids, int32_t *mask, int32_t *labels, int64_t *S,
                                    int64_t *T);

typedef struct {
    double loss, ce, z, aux;  /* the step's values (mean over micro-batches), summed over ranks */
    double grad_norm;         /* the global norm before clipping */
    int64_t tokens, dropped, routed;
    bool finite;              /* false: a non-finite loss or gradient, nothing was updated */
    bool stop;                /* some rank asked to stop after this step */
    const int64_t *layer_tokens; /* [n_sparse * E]: kept tokens per layer and expert, global; valid until the next step */
    int n_sparse;
} train_step_stats;

typedef struct train_step train_step;

/* The step of model m (this rank's share) under cfg, with the ranks of par: builds the optimizer over the trainable
 * units (train.freeze / train.train_only: patterns over HF names, one per expert; one that matches nothing is an
 * error) and the buffers. max_len bounds the batch widths (batch_source_max_len). A model on the CUDA device trains
 * on one rank for now (an error otherwise). */
sx_status train_step_init(train_step **out, model *m, const run_config *cfg, par_ctx *par, int64_t max_len);
/* Runs the step at index 'step' (0-based: the updates done so far) with learning rate lr. stop_request: this rank
 * asks every rank to stop after this step (stats->stop). on_grads, if set, sees the synchronised gradients before
 * clipping (m->g; on the device m->dg, or m->g after model_grads_to_host). On the device the optimizer's kernels may
 * still be running when it returns (ag_cuda_synchronize or the next host copy waits for them). */
sx_status train_step_run(train_step *ts, train_batch_fn get, void *user, int64_t step, double lr, bool stop_request,
                         void (*on_grads)(const model *m, void *user), void *grads_user, train_step_stats *stats);
optim *train_step_optim(train_step *ts);
/* The step's autograd context (its device; mixed_bf16 may be set before the first step). */
ag_ctx *train_step_ctx(train_step *ts);
/* Device memory the step holds: its activation arena's blocks and the optimizer state (0 on the CPU). */
int64_t train_step_device_bytes(const train_step *ts);
/* The peak of the step's activation arena so far, in bytes. */
int64_t train_step_activation_peak(const train_step *ts);
/* Whether parameter descriptor i is wholly frozen (no optimizer state). */
bool train_step_frozen(const train_step *ts, int i);
void train_step_free(train_step *ts);

#endif
