/* Batch sources: built-in tasks (train/task.c) and token datasets (data/dataset.c), shuffled per epoch by a keyed
 * permutation, truncated to the configured lengths, span-corrupted when the dataset has inputs only. */
#include "train/batches.h"

#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/span.h"
#include "train/task.h"

struct batch_source {
    bool builtin, heldout, span;
    task_spec task;
    data_dataset *ds;
    int64_t n, max_in, max_tgt, count;
    uint64_t seed;
    int32_t eos, pad;
    data_span_config sc;
    int32_t *raw, *in, *tgt; /* one example, sized once */
};

sx_status batch_source_open(const run_config *cfg, bool heldout, batch_source **out) {
    batch_source *s = calloc(1, sizeof *s);
    s->heldout = heldout;
    s->seed = cfg->seed;
    s->eos = cfg->model.eos_token_id;
    s->pad = cfg->model.pad_token_id;
    if (strcmp(cfg->task, "dataset")) {
        s->builtin = true;
        s->task = (task_spec){strcmp(cfg->task, "sort") ? TASK_REVERSE : TASK_SORT, cfg->task_min_len, cfg->task_max_len, cfg->seed};
        s->max_in = s->max_tgt = cfg->task_max_len + 1;
        s->count = heldout ? cfg->eval_examples : -1;
        *out = s;
        return sx_ok();
    }
    const char *path = heldout ? cfg->eval_data : cfg->train_data;
    if (!path[0]) {
        free(s);
        return sx_errorf("data.%s: no dataset given for %s", heldout ? "eval" : "train", heldout ? "evaluation" : "training");
    }
    sx_status st = data_dataset_open(path, &s->ds);
    if (!st.ok) {
        free(s);
        return st;
    }
    s->n = data_dataset_count(s->ds);
    if (s->n == 0) st = sx_errorf("%s: the dataset has no examples", path);
    else if (data_dataset_vocab_size(s->ds) > cfg->model.vocab_size)
        st = sx_errorf("%s: token ids up to %d but the model's vocab_size is %d", path, data_dataset_vocab_size(s->ds), cfg->model.vocab_size);
    if (!st.ok) {
        batch_source_close(s);
        return st;
    }
    s->span = !data_dataset_has_targets(s->ds);
    s->max_in = cfg->max_input_len;
    s->max_tgt = cfg->max_target_len;
    s->count = heldout && cfg->eval_examples < s->n ? cfg->eval_examples : s->n;
    /* T5's sentinels count down from the end of the tokenizer's vocabulary: <extra_id_0> = vocab - 1 */
    s->sc = (data_span_config){0.15, 3.0, data_dataset_vocab_size(s->ds) - 1, s->eos};
    int64_t cap = (s->max_in > s->max_tgt ? s->max_in : s->max_tgt) * 2 + 8;
    s->raw = malloc(sizeof(int32_t) * (size_t)cap);
    s->in = malloc(sizeof(int32_t) * (size_t)cap);
    s->tgt = malloc(sizeof(int32_t) * (size_t)cap);
    *out = s;
    return sx_ok();
}

int64_t batch_source_max_len(const batch_source *s) { return (s->max_in > s->max_tgt ? s->max_in : s->max_tgt) + 1; }
int64_t batch_source_count(const batch_source *s) { return s->count; }

void batch_source_position(const batch_source *s, uint64_t consumed, int64_t *epoch, int64_t *index) {
    if (s->builtin) {
        *epoch = 0;
        *index = (int64_t)consumed;
    } else {
        *epoch = (int64_t)(consumed / (uint64_t)s->n);
        *index = (int64_t)(consumed % (uint64_t)s->n);
    }
}

/* One example of a dataset by consumption index: shuffled per epoch in training, in order for evaluation. */
static sx_status example(batch_source *s, uint64_t g, int64_t *n_in, int64_t *n_tgt) {
    uint64_t epoch = s->heldout ? 0 : g / (uint64_t)s->n;
    int64_t i = s->heldout ? (int64_t)(g % (uint64_t)s->n) : data_permute((int64_t)(g % (uint64_t)s->n), s->n, s->seed, epoch);
    int64_t n;
    if (s->span) {
        /* room for the sentinels and EOS: corrupt at most max_input_len - 1 raw tokens */
        SX_TRY(data_dataset_get(s->ds, i, 0, s->raw, s->max_in, &n));
        if (n > s->max_in) n = s->max_in;
        if (n > 0 && s->raw[n - 1] == s->eos) n--; /* prepare appended EOS: corruption appends its own */
        data_span_corrupt(s->raw, n, &s->sc, s->seed, epoch, (uint64_t)i, s->in, n_in, s->tgt, n_tgt);
        if (*n_in > s->max_in) *n_in = s->max_in;
        if (*n_tgt > s->max_tgt) *n_tgt = s->max_tgt;
        return sx_ok();
    }
    SX_TRY(data_dataset_get(s->ds, i, 0, s->in, s->max_in, n_in));
    SX_TRY(data_dataset_get(s->ds, i, 1, s->tgt, s->max_tgt, n_tgt));
    if (*n_in > s->max_in) *n_in = s->max_in;
    if (*n_tgt > s->max_tgt) *n_tgt = s->max_tgt;
    return sx_ok();
}

sx_status batch_source_get(batch_source *s, uint64_t first, int B, int32_t *ids, int32_t *mask, int32_t *labels, int64_t *S, int64_t *T) {
    if (s->builtin) {
        task_batch(&s->task, s->heldout ? TASK_HELDOUT : TASK_TRAIN, first, B, ids, mask, labels, S, T);
        return sx_ok();
    }
    /* two passes: lengths first (for the batch maximum), then the padded rows */
    int64_t Smax = 1, Tmax = 1, ni, nt;
    for (int b = 0; b < B; b++) {
        SX_TRY(example(s, first + (uint64_t)b, &ni, &nt));
        if (ni > Smax) Smax = ni;
        if (nt > Tmax) Tmax = nt;
    }
    for (int b = 0; b < B; b++) {
        SX_TRY(example(s, first + (uint64_t)b, &ni, &nt));
        for (int64_t k = 0; k < Smax; k++) {
            ids[b * Smax + k] = k < ni ? s->in[k] : s->pad;
            mask[b * Smax + k] = k < ni;
        }
        for (int64_t k = 0; k < Tmax; k++) labels[b * Tmax + k] = k < nt ? s->tgt[k] : -100;
    }
    *S = Smax;
    *T = Tmax;
    return sx_ok();
}

void batch_source_close(batch_source *s) {
    if (!s) return;
    data_dataset_close(s->ds);
    free(s->raw);
    free(s->in);
    free(s->tgt);
    free(s);
}
