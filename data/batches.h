/* Where a run's batches come from: the built-in synthetic tasks (data/task.h), or token datasets (data/dataset.h) with
 * a fresh memoryless shuffle every epoch and optional on-the-fly span corruption. A batch is a pure function of the
 * global index of its first example, so a resumed run (and every rank) sees exactly the batches it would have seen.
 * The options are this folder's own: train/ fills them from the run config (run_config_batches_open). */
#ifndef SX_DATA_BATCHES_H
#define SX_DATA_BATCHES_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/sx_error.h"

typedef struct {
    const char *task;                   /* "reverse" | "sort" (the built-in tasks) | "dataset" */
    int task_min_len, task_max_len;     /* digits per built-in example */
    const char *train_data, *eval_data; /* HDF5 token datasets (task "dataset"; the run config's data.train, data.eval) */
    int eval_examples;                  /* held-out examples (0: a dataset whole, the built-in task 512) */
    int64_t read_cache_bytes;           /* HDF5 chunk cache per open dataset */
    uint64_t seed;                      /* the shuffle, the bucket order, span corruption, the built-in examples */
    bool shuffle;                       /* a keyed permutation per epoch (false: the file's order) */
    bool pad_fixed;                     /* pad to max_input_len x max_target_len (false: to the batch's longest) */
    int max_input_len, max_target_len;  /* dataset examples are truncated to these */
    int bucket_batches;                 /* 0 or 1: off; K > 1: length-bucket windows of K micro-batches */
    int micro_batch;                    /* examples per padded batch (the bucketing unit) */
    double noise_density, mean_span_length; /* span corruption of inputs-only datasets */
    int32_t eos_token_id, pad_token_id;
    int vocab_size;                     /* the model's: a dataset's token ids must lie below it */
} batch_source_options;

typedef struct batch_source batch_source;

/* heldout: the evaluation split (the built-in task's held-out strings, or eval_data read in order). */
sx_status batch_source_open(const batch_source_options *o, bool heldout, batch_source **out);
/* Examples [first, first + B) in consumption order, padded to the batch maximum or (pad_fixed) to
 * max_input_len x max_target_len: input_ids/attention_mask [B, S], labels [B, T] (-100 at padding).
 * Buffers hold B * batch_source_max_len(). With bucket_batches, consumption order is length-bucketed within
 * windows (data/batches.c) and stays a pure function of the position. */
sx_status batch_source_get(batch_source *s, uint64_t first, int B, int32_t *input_ids, int32_t *attention_mask, int32_t *labels, int64_t *S,
                           int64_t *T);
int64_t batch_source_max_len(const batch_source *s);
/* Examples in one pass (an epoch of a dataset; the configured count for the built-in held-out split). */
int64_t batch_source_count(const batch_source *s);
/* Position in the data after 'consumed' examples: epoch and index within it (for checkpoints and logs). */
void batch_source_position(const batch_source *s, uint64_t consumed, int64_t *epoch, int64_t *index);
/* Its inverse, for a resume: the examples consumed before (epoch, index). A position outside the data (a negative
 * epoch, an index past the epoch) is an error naming 'where' (the checkpoint). */
sx_status batch_source_seek(const batch_source *s, int64_t epoch, int64_t index, const char *where, uint64_t *consumed);
void batch_source_close(batch_source *s);

#endif
