/* Where a run's batches come from: the built-in synthetic tasks, or token datasets (data/dataset.h) with a fresh
 * memoryless shuffle every epoch and optional on-the-fly span corruption. A batch is a pure function of the global
 * index of its first example, so a resumed run (and every rank) sees exactly the batches it would have seen. */
#ifndef SX_DATA_BATCHES_H
#define SX_DATA_BATCHES_H

#include <stdbool.h>
#include <stdint.h>

#include "train/run_config.h"

typedef struct batch_source batch_source;

/* heldout: the evaluation split (the built-in task's held-out strings, or data.eval read in order). */
sx_status batch_source_open(const run_config *cfg, bool heldout, batch_source **out);
/* Examples [first, first + B) in consumption order, padded to the batch maximum (data.pad_to "batch") or to
 * max_input_len x max_target_len ("fixed"): input_ids/attention_mask [B, S], labels [B, T] (-100 at padding).
 * Buffers hold B * batch_source_max_len(). With data.bucket_batches, consumption order is length-bucketed within
 * windows (train/batches.c) and stays a pure function of the position. */
sx_status batch_source_get(batch_source *s, uint64_t first, int B, int32_t *input_ids, int32_t *attention_mask, int32_t *labels, int64_t *S,
                           int64_t *T);
int64_t batch_source_max_len(const batch_source *s);
/* Examples in one pass (an epoch of a dataset; the configured count for the built-in held-out split). */
int64_t batch_source_count(const batch_source *s);
/* Position in the data after 'consumed' examples: epoch and index within it (for checkpoints and logs). */
void batch_source_position(const batch_source *s, uint64_t consumed, int64_t *epoch, int64_t *index);
void batch_source_close(batch_source *s);

#endif
