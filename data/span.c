/* Span corruption as T5 defines it: num_noise = round(length * density) (at least 1, at most length - 1),
 * num_spans = round(num_noise / mean_span_length) (at least 1); noise and non-noise tokens are each cut into num_spans
 * random non-empty segments (a uniform choice of cut points), interleaved non-noise first. The random stream is our
 * counter-based one (TensorFlow's cannot be reproduced), keyed by (seed, epoch, example). */
#include "data/span.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* lengths[0..segments) of a random segmentation of items into non-empty segments: choose segments - 1 cut points
 * among the items - 1 gaps, uniformly (a partial Fisher-Yates over the gaps). */
static void segment(int64_t items, int64_t segments, uint64_t *rng, int64_t *lengths, uint8_t *scratch) {
    memset(scratch, 0, (size_t)(items > 1 ? items - 1 : 1));
    int64_t gaps = items - 1, need = segments - 1;
    /* mark need distinct gaps: Floyd's algorithm */
    for (int64_t j = gaps - need; j < gaps; j++) {
        int64_t t = (int64_t)(splitmix(rng) % (uint64_t)(j + 1));
        if (scratch[t]) t = j;
        scratch[t] = 1;
    }
    int64_t k = 0, len = 1;
    for (int64_t g = 0; g < gaps; g++) {
        if (scratch[g]) {
            lengths[k++] = len;
            len = 1;
        } else {
            len++;
        }
    }
    lengths[k] = len;
}

void data_span_mask(int64_t length, const data_span_config *c, uint64_t seed, uint64_t epoch, uint64_t index, uint8_t *noise) {
    memset(noise, 0, (size_t)length);
    if (length < 2) return;
    int64_t num_noise = llround((double)length * c->noise_density);
    if (num_noise < 1) num_noise = 1;
    if (num_noise > length - 1) num_noise = length - 1;
    int64_t spans = llround((double)num_noise / c->mean_span_length);
    if (spans < 1) spans = 1;
    int64_t num_keep = length - num_noise;
    if (spans > num_keep) spans = num_keep;
    if (spans > num_noise) spans = num_noise;
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull ^ (epoch + 1) * 0xC2B2AE3D27D4EB4Full ^ (index + 1) * 0x165667B19E3779F9ull;
    int64_t *nl = malloc(sizeof(int64_t) * (size_t)spans * 2);
    uint8_t *scratch = malloc((size_t)length);
    segment(num_noise, spans, &rng, nl, scratch);
    segment(num_keep, spans, &rng, nl + spans, scratch);
    int64_t pos = 0;
    for (int64_t s = 0; s < spans; s++) {
        pos += nl[spans + s]; /* non-noise first */
        for (int64_t k = 0; k < nl[s]; k++) noise[pos++] = 1;
    }
    free(nl);
    free(scratch);
}

void data_span_corrupt(const int32_t *tokens, int64_t n, const data_span_config *c, uint64_t seed, uint64_t epoch, uint64_t index, int32_t *inputs,
                       int64_t *n_in, int32_t *targets, int64_t *n_tgt) {
    uint8_t *noise = malloc((size_t)(n > 0 ? n : 1));
    data_span_mask(n, c, seed, epoch, index, noise);
    int64_t a = 0, b = 0;
    int32_t sentinel = c->sentinel_first;
    for (int64_t i = 0; i < n; i++) {
        if (!noise[i]) {
            inputs[a++] = tokens[i];
            continue;
        }
        if (i == 0 || !noise[i - 1]) { /* a new noise span: one sentinel in each stream */
            inputs[a++] = sentinel;
            targets[b++] = sentinel;
            sentinel--;
        }
        targets[b++] = tokens[i];
    }
    if (c->eos_id >= 0) {
        inputs[a++] = c->eos_id;
        targets[b++] = c->eos_id;
    }
    *n_in = a;
    *n_tgt = b;
    free(noise);
}
