/* Synthetic tasks for the built-in default run: reverse or sort digit strings, deterministic per example. */
#include "data/task.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ag_rng.h"

/* A sequence belongs to the held-out split when its hash is 0 mod 8, so held-out strings are never trained on. */
static uint64_t seq_hash(const int32_t *d, int n) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) h = (h ^ (uint64_t)d[i]) * 1099511628211ull;
    h ^= h >> 29;
    return h * 0xbf58476d1ce4e5b9ull;
}

static int cmp_i32(const void *a, const void *b) { return *(const int32_t *)a - *(const int32_t *)b; }

int task_example(const task_spec *t, task_split split, uint64_t index, int32_t *in, int32_t *tgt) {
    ag_rng_key k = ag_rng_make(t->seed, index, split == TASK_TRAIN ? 0x7a51 : 0x4e1d);
    int32_t d[64];
    int n = 0;
    for (uint64_t attempt = 0;; attempt++) {
        uint32_t r[4];
        ag_philox(k, attempt * 64, r);
        n = t->min_len + (int)(r[0] % (uint32_t)(t->max_len - t->min_len + 1));
        for (int i = 0; i < n; i++) d[i] = (int32_t)(ag_rng_uniform(k, attempt * 64 + 1 + (uint64_t)i) * 10.0f) % 10;
        bool heldout = seq_hash(d, n) % 8 == 0;
        if (heldout == (split == TASK_HELDOUT)) break;
    }
    for (int i = 0; i < n; i++) in[i] = TASK_DIGIT0 + d[i];
    in[n] = TASK_EOS;
    if (t->kind == TASK_REVERSE) {
        for (int i = 0; i < n; i++) tgt[i] = TASK_DIGIT0 + d[n - 1 - i];
    } else {
        qsort(d, (size_t)n, sizeof d[0], cmp_i32);
        for (int i = 0; i < n; i++) tgt[i] = TASK_DIGIT0 + d[i];
    }
    tgt[n] = TASK_EOS;
    return n;
}

void task_batch(const task_spec *t, task_split split, uint64_t first, int B, int32_t *input_ids, int32_t *attention_mask,
                int32_t *labels, int64_t *S, int64_t *T) {
    /* two passes over the examples (each a pure function of its index): the batch maximum, then the padded rows; no
     * per-batch table, so any batch size works */
    int32_t in[65], tgt[65];
    int Lmax = 0;
    for (int b = 0; b < B; b++) {
        int len = task_example(t, split, first + (uint64_t)b, in, tgt) + 1;
        if (len > Lmax) Lmax = len;
    }
    for (int b = 0; b < B; b++) {
        int len = task_example(t, split, first + (uint64_t)b, in, tgt) + 1;
        for (int i = 0; i < Lmax; i++) {
            bool real = i < len;
            input_ids[(int64_t)b * Lmax + i] = real ? in[i] : TASK_PAD;
            attention_mask[(int64_t)b * Lmax + i] = real;
            labels[(int64_t)b * Lmax + i] = real ? tgt[i] : -100;
        }
    }
    *S = *T = Lmax;
}

void task_format(const int32_t *ids, int n, char *buf, int cap) {
    int o = 0;
    for (int i = 0; i < n && o < cap - 1; i++) {
        if (ids[i] == TASK_EOS) break;
        buf[o++] = ids[i] >= TASK_DIGIT0 && ids[i] < TASK_DIGIT0 + 10 ? (char)('0' + ids[i] - TASK_DIGIT0) : '?';
    }
    buf[o] = 0;
}
