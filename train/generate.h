/* Decoding: greedy and beam search over the model's KV-cached incremental decoder (model_decode_*), stopping at EOS
 * or a maximum length. Token ids in and out; text goes through data/spm.h at the CLI. */
#ifndef SX_TRAIN_GENERATE_H
#define SX_TRAIN_GENERATE_H

#include "train/model.h"

typedef struct {
    int max_len;            /* generated tokens per sequence, EOS included */
    int num_beams;          /* 1 = greedy */
    double length_penalty;  /* beam score = sum log p / len^length_penalty (HF's default 1.0) */
} gen_config;

/* out [B, max_len]: generated ids (without the start token), pad after EOS; lens[b] counts up to and including EOS. */
void generate(model *m, ag_ctx *ctx, const int32_t *input_ids, const int32_t *attention_mask, int64_t B, int64_t S, const gen_config *g,
              int32_t *out, int *lens);

#endif
