/* Decoding: greedy, beam search and sampling over the model's KV-cached incremental decoder (model_decode_*),
 * stopping at EOS or a maximum length. Token ids in and out; text goes through data/spm.h at the CLI. Greedy and beam
 * search give what Hugging Face's generate (transformers 4.57.6, do_sample=False) gives for the same model, inputs and
 * settings; sampling draws from the distribution HF's do_sample=True draws from (its warpers in its order), with the
 * project's counter-based generator instead of torch's, keyed by (seed, input index), so a row's tokens do not depend
 * on the batch it was decoded in. */
#ifndef SX_TRAIN_GENERATE_H
#define SX_TRAIN_GENERATE_H

#include "train/model/model.h"

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
    /* Sampling (HF's do_sample=True; num_beams 1 only). The logits of a step go through HF's warpers in the order
     * _get_logits_processor builds them: temperature (scores / T, when T != 1), top-k (scores below the k-th largest
     * set to -inf, when k != 0), top-p (ascending sort, softmax, cumulative sum; entries whose cumulative probability
     * is <= 1 - top_p removed, the largest always kept, when top_p < 1); then softmax and one draw. */
    bool do_sample;
    double temperature;                /* > 0 (HF's default 1.0) */
    int top_k;                         /* >= 0, 0 = off (HF's default 50) */
    double top_p;                      /* in (0, 1], 1 = off (HF's default 1.0) */
    uint64_t seed;                     /* the draw of input r at step t: uniform (seed, r, t) (gen_uniform) */
} gen_config;

/* out [B, max_len]: generated ids (without the start token), pad after EOS; lens[b] counts up to and including EOS
 * (max_len for a hypothesis that reached the length limit). attention_mask may be NULL (all ones). */
void generate(model *m, ag_ctx *ctx, const int32_t *input_ids, const int32_t *attention_mask, int64_t B, int64_t S,
              const gen_config *g, int32_t *out, int *lens);

/* generate, plus: row_ids[b] is input b's index for the sampling draws (NULL: b), and scores[b] (may be NULL) gets
 * the returned hypothesis' beam score, HF's sequences_scores (sum log p / len^length_penalty; 0 without beams). */
void generate_ex(model *m, ag_ctx *ctx, const int32_t *input_ids, const int32_t *attention_mask, int64_t B, int64_t S,
                 const gen_config *g, const int64_t *row_ids, int32_t *out, int *lens, float *scores);

/* The sampling distribution of one step: probs[V] after temperature, top-k and top-p as above (float32 arithmetic as
 * torch's, the final softmax in double); returns how many tokens keep a non-zero probability. work: 2 V floats. */
int64_t gen_sample_probs(const float *logits, int64_t V, const gen_config *g, float *work, double *probs);
/* The uniform in [0, 1) (53 bits) of draw (seed, row, step): Philox (autograd/ag.h) keyed by seed and row. */
double gen_uniform(uint64_t seed, uint64_t row, uint64_t step);
/* The first token whose cumulative probability exceeds u * sum(probs). */
int32_t gen_sample_token(const double *probs, int64_t V, double u);

#endif
