/* The counter-based RNG (Philox4x32-10): draws depend on (seed, step, purpose, index) only, so dropout and jitter
 * masks are the same on the CPU and the GPU and across a resume, and the built-in task's examples are a pure function
 * of their index. Its own target (sx_rng): data/ uses it without linking autograd. */
#ifndef SX_AG_RNG_H
#define SX_AG_RNG_H

#include <stdint.h>

#ifdef __cplusplus /* the CUDA backend includes this (through ag.h) from C++ */
extern "C" {
#endif

typedef struct { uint64_t key; uint64_t counter_hi; } ag_rng_key;
ag_rng_key ag_rng_make(uint64_t seed, uint64_t step, uint64_t purpose);
void ag_philox(ag_rng_key k, uint64_t index, uint32_t out[4]);
float ag_rng_uniform(ag_rng_key k, uint64_t index);           /* in [0, 1) */
float ag_rng_normal(ag_rng_key k, uint64_t index);            /* N(0, 1), Box-Muller */
/* Every output bit: out[i] = word (w & 3) of ag_philox(k, w >> 2), w = first + i, for i < n; batched so that the
 * compiler vectorises the rounds (about 8x fewer instructions than a Philox call per value). */
void ag_rng_words(ag_rng_key k, uint64_t first, int64_t n, uint32_t *out);
/* The same stream as uniforms in [0, 1): the top 24 bits of each word over 2^24 (jitter noise). */
void ag_rng_uniform_words(ag_rng_key k, uint64_t first, int64_t n, float *out);
/* Dropout keeps element i of a tensor iff its word (ag_rng_words(key, i)) >= ag_dropout_threshold(p): keep
 * probability 1 - ceil(p 2^32) / 2^32, i.e. 1 - p within 2^-32. The CUDA kernels draw the same words. */
uint32_t ag_dropout_threshold(double p);

#ifdef __cplusplus
}
#endif
#endif
