/* T5's span corruption (random_spans_noise_mask in t5/data/preprocessors.py): noise density 0.15, mean noise span
 * length 3; the noise spans of an example become one sentinel each in the inputs, and the targets hold each sentinel
 * followed by its span; both end with EOS. Deterministic given (seed, epoch, example index). */
#ifndef SX_DATA_SPAN_H
#define SX_DATA_SPAN_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    double noise_density;     /* 0.15 */
    double mean_span_length;  /* 3.0 */
    int32_t sentinel_first;   /* id of <extra_id_0>; <extra_id_k> = sentinel_first - k (T5: vocab - 1) */
    int32_t eos_id;           /* appended to inputs and targets (-1: none) */
} data_span_config;

/* The noise mask of T5 for a length: noise[i] = 1 on noise tokens. Spans start with non-noise. */
void data_span_mask(int64_t length, const data_span_config *c, uint64_t seed, uint64_t epoch, uint64_t index, uint8_t *noise);
/* Corrupts tokens[0..n): writes inputs and targets (buffers of n + 2 and n + 2 + n/2 entries are enough). */
void data_span_corrupt(const int32_t *tokens, int64_t n, const data_span_config *c, uint64_t seed, uint64_t epoch, uint64_t index, int32_t *inputs,
                       int64_t *n_in, int32_t *targets, int64_t *n_tgt);

#endif
