/* Built-in synthetic seq2seq tasks (no files needed): reverse or sort a string of digits. Examples are a pure
 * function of (seed, split, index), and a sequence-level hash keeps the held-out split disjoint from training. */
#ifndef SX_DATA_TASK_H
#define SX_DATA_TASK_H

#include <stdint.h>

enum { TASK_PAD = 0, TASK_EOS = 1, TASK_UNK = 2, TASK_DIGIT0 = 3, TASK_VOCAB = 13 };
typedef enum { TASK_REVERSE, TASK_SORT } task_kind;
typedef enum { TASK_TRAIN, TASK_HELDOUT } task_split;

typedef struct {
    task_kind kind;
    int min_len, max_len;
    uint64_t seed;
} task_spec;

/* One example: in = digits + EOS, tgt = answer + EOS. Buffers hold max_len + 1. Returns the number of digits. */
int task_example(const task_spec *t, task_split split, uint64_t index, int32_t *in, int32_t *tgt);

/* A batch of examples [first, first + B), padded to the batch maximum: input_ids/attention_mask [B, S],
 * labels [B, T] with -100 at padding. S and T are written back; buffers must hold B * (max_len + 1). */
void task_batch(const task_spec *t, task_split split, uint64_t first, int B, int32_t *input_ids, int32_t *attention_mask,
                int32_t *labels, int64_t *S, int64_t *T);

/* Text form for the console: digits as characters. */
void task_format(const int32_t *ids, int n, char *buf, int cap);

#endif
