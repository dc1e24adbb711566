/* The counter-based generator (Philox4x32-10, Salmon et al., SC'11): a draw depends only on (seed, step, purpose,
 * index), so it is the same on any backend, rank count or resume. On its own (target sx_rng, no tensors) so that
 * data/'s built-in task draws from it without linking autograd. */
#include "autograd/ag_rng.h"

#include <math.h>
#include <string.h>

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

ag_rng_key ag_rng_make(uint64_t seed, uint64_t step, uint64_t purpose) {
    ag_rng_key k;
    k.key = splitmix64(seed ^ splitmix64(purpose + 0x632be59bd9b4e019ull));
    k.counter_hi = step;
    return k;
}

void ag_philox(ag_rng_key k, uint64_t index, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)index, c1 = (uint32_t)(index >> 32), c2 = (uint32_t)k.counter_hi, c3 = (uint32_t)(k.counter_hi >> 32);
    uint32_t k0 = (uint32_t)k.key, k1 = (uint32_t)(k.key >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* 8 Philox blocks at a time in lanes: the rounds over independent counters vectorise. */
#define RNG_LANES 8
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx2", "default")))
#endif
static void philox_lanes(ag_rng_key k, uint64_t block0, uint32_t out[RNG_LANES * 4]) {
    uint32_t c0[RNG_LANES], c1[RNG_LANES], c2[RNG_LANES], c3[RNG_LANES];
    for (int j = 0; j < RNG_LANES; j++) {
        uint64_t b = block0 + (uint64_t)j;
        c0[j] = (uint32_t)b;
        c1[j] = (uint32_t)(b >> 32);
        c2[j] = (uint32_t)k.counter_hi;
        c3[j] = (uint32_t)(k.counter_hi >> 32);
    }
    uint32_t k0 = (uint32_t)k.key, k1 = (uint32_t)(k.key >> 32);
    for (int r = 0; r < 10; r++) {
        for (int j = 0; j < RNG_LANES; j++) { /* ag_philox's round, lane by lane */
            uint64_t p0 = (uint64_t)0xD2511F53u * c0[j], p1 = (uint64_t)0xCD9E8D57u * c2[j];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[j] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3[j] ^ k1;
            c1[j] = (uint32_t)p1;
            c3[j] = (uint32_t)p0;
            c0[j] = n0;
            c2[j] = n2;
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    for (int j = 0; j < RNG_LANES; j++) {
        out[4 * j] = c0[j];
        out[4 * j + 1] = c1[j];
        out[4 * j + 2] = c2[j];
        out[4 * j + 3] = c3[j];
    }
}

void ag_rng_words(ag_rng_key k, uint64_t first, int64_t n, uint32_t *out) {
    int64_t i = 0;
    uint32_t w[RNG_LANES * 4];
    while (i < n) {
        uint64_t pos = first + (uint64_t)i, block = pos >> 2;
        int skip = (int)(pos & 3); /* an unaligned start: the first block's leading words are not ours */
        int64_t take = RNG_LANES * 4 - skip;
        if (take > n - i) take = n - i;
        if (take >= 4 * RNG_LANES - skip && take >= 8) {
            philox_lanes(k, block, w);
        } else { /* a short tail: only the blocks it needs */
            for (int64_t b = 0; b < (skip + take + 3) / 4; b++) ag_philox(k, block + (uint64_t)b, w + 4 * b);
        }
        memcpy(out + i, w + skip, sizeof(uint32_t) * (size_t)take);
        i += take;
    }
}

void ag_rng_uniform_words(ag_rng_key k, uint64_t first, int64_t n, float *out) {
    uint32_t w[256];
    for (int64_t i = 0; i < n; i += 256) {
        int64_t m = n - i < 256 ? n - i : 256;
        ag_rng_words(k, first + (uint64_t)i, m, w);
        for (int64_t j = 0; j < m; j++) out[i + j] = (float)(w[j] >> 8) * (1.0f / 16777216.0f);
    }
}

uint32_t ag_dropout_threshold(double p) {
    if (!(p > 0)) return 0;
    double t = ceil(p * 4294967296.0);
    return t >= 4294967295.0 ? 4294967295u : (uint32_t)t;
}

float ag_rng_uniform(ag_rng_key k, uint64_t index) {
    uint32_t o[4];
    ag_philox(k, index, o);
    return (float)(o[0] >> 8) * (1.0f / 16777216.0f);
}

float ag_rng_normal(ag_rng_key k, uint64_t index) {
    uint32_t o[4];
    ag_philox(k, index, o);
    double u1 = ((double)(o[0] >> 8) + 1.0) / 16777217.0, u2 = (double)(o[1] >> 8) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}
