/* The training loop in one process (ranks and GPUs join the same loop): micro-batch accumulation, non-finite
 * step skipping, clipping, the optimizer and schedule, metrics, evaluation and checkpoints with exact resume. */
#ifndef SX_TRAIN_TRAINER_H
#define SX_TRAIN_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "parallel/par.h"
#include "train/model/model.h"
#include "train/run_config.h"

typedef struct {
    const char *resume;      /* NULL: fresh run; "auto": the newest checkpoint in out_dir; else a checkpoint path */
    const char *init_from;   /* checkpoint whose parameters initialise the model (fine-tuning), or NULL */
    const char *init_adapter; /* a peft LoRA folder whose adapters initialise the model's (after init_from), or NULL */
    bool quiet;              /* no progress bar (tests) */
    bool overwrite;          /* a fresh run may replace the run directory's earlier run (else: an error) */
    int64_t stop_after;      /* > 0: stop (with a checkpoint) after this many steps of this invocation (tests) */
    double *loss_trace;      /* optional: the loss of every step, indexed by step - 1 */
    par_ctx *par;            /* ranks and groups (NULL: one process, loopback) */
    /* optional: called once after the gradients of the first step of this invocation are complete (synchronised
     * across ranks, before clipping and the update), with this rank's model: the multi-rank parity test */
    void (*on_first_grads)(const model *m, void *user);
    void *user;
} trainer_opts;

typedef struct {
    int64_t steps_done;
    double final_loss;
    double eval_loss, eval_token_acc, eval_exact_match;
    int64_t skipped_steps;
} trainer_result;

/* Runs (or resumes) a training run. Errors (bad checkpoint, unwritable directory, too many non-finite steps) come
 * back as a status naming the file or the cause. */
sx_status trainer_run(const run_config *cfg, const trainer_opts *opts, trainer_result *res);

/* Evaluation of a model on the configured task: teacher-forced loss and token accuracy, and greedy exact match. */
typedef struct {
    double loss, token_acc, exact_match;
    int64_t examples;
} eval_result;
sx_status trainer_evaluate(model *m, const run_config *cfg, bool print_examples, eval_result *out);

/* Checkpoint I/O of the model parameters (HF names under params/), shared with eval and generate; an HF model folder
 * (config.json + weights) is accepted wherever a checkpoint is. */
sx_status trainer_load_params(model *m, const char *ckpt_path);
/* A parameters-only checkpoint (step 0, no optimizer state) of a whole model: what `switchc convert` writes. */
sx_status trainer_write_model(const model *m, const run_config *cfg, const char *path);
/* Reads the run config stored inside a checkpoint (for an HF model folder: the defaults with its config.json). */
sx_status trainer_config_from_checkpoint(const char *ckpt_path, run_config *cfg);

#endif
