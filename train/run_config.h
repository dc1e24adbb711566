/* The run configuration: one JSON file with sections model, data, optim, schedule, train, eval, parallel;
 * `--set section.key=value` overrides any key; unknown keys and bad values are errors naming the JSON path with a
 * hint for near misses. The built-in default (no file) is a tiny Switch model on a synthetic task. */
#ifndef SX_TRAIN_RUN_CONFIG_H
#define SX_TRAIN_RUN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "data/batches.h"
#include "train/model/model_config.h"

typedef struct cJSON cJSON;

typedef struct {
    model_config model;
    char model_source[512];      /* "built-in", or the path of the HF config.json it came from */

    /* data */
    char task[32];               /* "reverse" | "sort" (built-in synthetic tasks) | "dataset" */
    int task_min_len, task_max_len; /* digits per built-in example */
    char train_data[512], eval_data[512]; /* HDF5 token datasets (task "dataset") */
    char tokenizer[512];         /* SentencePiece .model of the datasets ("" = none): eval and generate read text with it */
    int eval_examples;           /* held-out examples evaluated (0: a dataset whole, the built-in task 512) */
    bool shuffle;                /* shuffle the training examples every epoch (false: the file's order) */
    int max_input_len, max_target_len;
    char pad_to[16];             /* "batch" (pad to the batch's longest example) | "fixed" (to max_input_len/max_target_len) */
    int bucket_batches;          /* 0 = off; K > 1: sort windows of K batches by input length, emit the K in shuffled order */
    double noise_density, mean_span_length; /* span corruption of inputs-only datasets (T5: 0.15, 3) */
    int read_cache_mb;           /* HDF5 chunk cache per open token dataset: the memory budget of reads */

    /* optim */
    char optimizer[16];          /* adamw | adafactor */
    double lr, weight_decay, beta1, beta2, eps; /* beta1 NaN: the optimizer's default (AdamW 0.9, Adafactor none) */
    char idle_experts[16];       /* skip (torch: an expert with no token has no gradient, no update) | update */
    double adafactor_decay_rate, adafactor_clip_threshold;
    bool adafactor_relative_step, adafactor_scale_parameter;

    /* schedule */
    char schedule[24];           /* constant | linear_warmup | inverse_sqrt | cosine | linear_decay */
    int64_t warmup_steps;
    double min_lr;

    /* train */
    int64_t steps;
    int batch_size, micro_batch_size;
    double grad_clip;            /* 0 = off */
    int max_nonfinite_skips;     /* consecutive skipped steps before the run stops */
    char freeze[512];            /* comma-separated glob patterns of HF parameter names to freeze */
    char train_only[512];        /* comma-separated patterns: freeze everything else */
    uint64_t seed;
    int log_every, eval_every, ckpt_every, keep_checkpoints;
    char out_dir[512];
    int threads;                 /* OpenBLAS threads; 0 = library default */

    /* eval */
    int eval_batch_size, gen_max_len;

    /* parallel */
    int expert_parallel;
    char transport[16];          /* auto | mpi | nccl | loopback */
    double collective_timeout_s;
} run_config;

/* The library defaults: the built-in tiny model and task, and Hugging Face Trainer's optimisation defaults (AdamW
 * lr 5e-5, betas 0.9/0.999, eps 1e-8, no weight decay, linear decay without warmup, gradient clipping at 1.0). A run
 * config file or --init-from starts from these. */
void run_config_defaults(run_config *r);
/* The built-in demo (`switchc train` with neither --config nor --init-from): the defaults with the demo's tuned
 * values (lr 3e-3, beta2 0.98, cosine with 100 warmup steps, 3000 steps). */
void run_config_demo(run_config *r);
/* Applies a JSON object over the current values (strict). 'where' names the source. */
sx_status run_config_apply_json(run_config *r, const cJSON *obj, const char *where);
sx_status run_config_load(run_config *r, const char *path);
/* "section.key=value": the value is parsed as JSON when it parses (numbers, true/false, quoted strings), else as a
 * bare string. */
sx_status run_config_set(run_config *r, const char *assignment);
/* Cross-field checks (micro-batch divides batch, expert_parallel divides experts, ...). */
sx_status run_config_validate(const run_config *r);
cJSON *run_config_to_json(const run_config *r);
/* The batches of the run (the training split, or heldout: the evaluation split): data/'s options filled from the data
 * section, the model's special tokens and vocabulary, the seed and the micro-batch (the unit bucketing sorts). */
sx_status run_config_batches_open(const run_config *r, bool heldout, batch_source **out);
/* Every key with its meaning, for --help-config. */
void run_config_print_help(FILE *out);

#endif
