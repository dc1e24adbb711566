/* Decoding: greedy and beam search over the model's KV-cached incremental decoder (model_decode_*), stopping at EOS
 * or a maximum length. Token ids in and out; text goes through data/spm.h at the CLI. Both give what Hugging Face's
 * generate (transformers 4.57.6, do_sample=False) gives for the same model, inputs and settings. */
#ifndef SX_TRAIN_GENERATE_H
#define SX_TRAIN_GENERATE_H

#include "train/model.h"

/* HF's GenerationConfig.early_stopping (False, True, "never"): when beam search may stop before max_len.
 *   FALSE: an input stops once num_beams hypotheses are finished and the best running beam, normalised by the length
 *          generated so far, does not beat the worst of them (HF's heuristic, also applied under TRUE).
 *   TRUE:  an input stops as soon as num_beams hypotheses are finished.
 *   NEVER: as FALSE, but with length_penalty > 0 the running beam is normalised by max_len (the best length it could
 *          still reach), so inputs rarely stop early. */
typedef enum { GEN_EARLY_STOP_FALSE = 0, GEN_EARLY_STOP_TRUE = 1, GEN_EARLY_STOP_NEVER = 2 } gen_early_stopping;

typedef struct {
    int max_len;                       /* generated tokens per sequence, EOS included (HF's max_new_tokens) */
    int num_beams;                     /* 1 = greedy */
    double length_penalty;             /* beam score = sum log p / len^length_penalty (HF's default 1.0); finite */
    gen_early_stopping early_stopping; /* beam search only; default (zero) FALSE, as HF's */
} gen_config;

/* out [B, max_len]: generated ids (without the start token), pad after EOS; lens[b] counts up to and including EOS
 * (max_len for a hypothesis that reached the length limit). attention_mask may be NULL (all ones). */
void generate(model *m, ag_ctx *ctx, const int32_t *input_ids, const int32_t *attention_mask, int64_t B, int64_t S,
              const gen_config *g, int32_t *out, int *lens);

#endif
