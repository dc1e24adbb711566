/* Batch sources: built-in tasks (data/task.c) and token datasets (data/dataset.c), shuffled per epoch by a keyed
 * permutation, optionally length-bucketed, truncated to the configured lengths, span-corrupted when the dataset has
 * inputs only, padded to the batch maximum or to the fixed configured lengths.
 *
 * Length bucketing (bucket_batches = K): the epoch's shuffled order is cut into windows of K * B examples (B the
 * micro-batch, the unit that is padded); a window is sorted by input length (stable: ties keep their shuffled order),
 * cut into K batches of B, and those batches are emitted in an order shuffled by (seed, epoch, window). The epoch's
 * last window may be short: its full batches are shuffled, its partial tail stays last. So the example at consumption
 * position g is still a pure function of (seed, g): a resumed run recomputes its window and sees the same batches, and
 * every rank, building the same global batch and keeping its rows, gets a disjoint share. */
#include "data/batches.h"

#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/span.h"
#include "data/task.h"

typedef struct {
    int64_t len, pos, idx;
} win_entry;

struct batch_source {
    bool builtin, heldout, span, fixed;
    int bucket, bb;         /* bucketing: K batches of bb examples per window (0: off) */
    win_entry *win;         /* the current window, sorted; valid for (win_epoch, win_no) */
    int64_t win_epoch, win_no, win_len;
    task_spec task;
    data_dataset *ds;
    int64_t n, max_in, max_tgt, count;
    uint64_t seed;
    bool shuffle;         /* a keyed permutation per epoch, else the file order */
    int32_t eos, pad;
    data_span_config sc;
    int32_t *raw, *in, *tgt; /* one example, sized once */
};

sx_status batch_source_open(const batch_source_options *o, bool heldout, batch_source **out) {
    batch_source *s = calloc(1, sizeof *s);
    s->heldout = heldout;
    s->seed = o->seed;
    s->shuffle = o->shuffle;
    s->eos = o->eos_token_id;
    s->pad = o->pad_token_id;
    s->fixed = o->pad_fixed;
    s->win_epoch = -1;
    if (strcmp(o->task, "dataset")) {
        s->builtin = true;
        s->task = (task_spec){strcmp(o->task, "sort") ? TASK_REVERSE : TASK_SORT, o->task_min_len, o->task_max_len, o->seed};
        s->max_in = s->max_tgt = o->task_max_len + 1;
        s->count = heldout ? (o->eval_examples ? o->eval_examples : 512) : -1; /* 0: the built-in's 512 */
        *out = s;
        return sx_ok();
    }
    const char *path = heldout ? o->eval_data : o->train_data;
    if (!path || !path[0]) {
        free(s);
        return sx_errorf("data.%s: no dataset given for %s", heldout ? "eval" : "train", heldout ? "evaluation" : "training");
    }
    sx_status st = data_dataset_open_cached(path, o->read_cache_bytes, &s->ds);
    if (!st.ok) {
        free(s);
        return st;
    }
    s->n = data_dataset_count(s->ds);
    if (s->n == 0) st = sx_errorf("%s: the dataset has no examples", path);
    else if (data_dataset_vocab_size(s->ds) > o->vocab_size)
        st = sx_errorf("%s: token ids up to %d but the model's vocab_size is %d", path, data_dataset_vocab_size(s->ds), o->vocab_size);
    if (!st.ok) {
        batch_source_close(s);
        return st;
    }
    s->span = !data_dataset_has_targets(s->ds);
    s->max_in = o->max_input_len;
    s->max_tgt = o->max_target_len;
    s->count = heldout && o->eval_examples && o->eval_examples < s->n ? o->eval_examples : s->n; /* 0: all of it */
    /* T5's sentinels count down from the end of the tokenizer's vocabulary: <extra_id_0> = vocab - 1 */
    s->sc = (data_span_config){o->noise_density, o->mean_span_length, data_dataset_vocab_size(s->ds) - 1, s->eos};
    if (!heldout && o->bucket_batches > 1) {
        s->bucket = o->bucket_batches;
        s->bb = o->micro_batch > 1 ? o->micro_batch : 1;
        int64_t wn = (int64_t)s->bucket * s->bb;
        s->win = malloc(sizeof(win_entry) * (size_t)(wn < s->n ? wn : s->n));
    }
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

sx_status batch_source_seek(const batch_source *s, int64_t epoch, int64_t index, const char *where, uint64_t *consumed) {
    if (s->builtin && (epoch != 0 || index < 0))
        return sx_errorf("%s: data position epoch %lld, example %lld: the built-in task has one endless epoch (0)", where, (long long)epoch,
                         (long long)index);
    if (!s->builtin && (epoch < 0 || index < 0 || index >= s->n))
        return sx_errorf("%s: data position epoch %lld, example %lld lies outside a training set of %lld examples", where, (long long)epoch,
                         (long long)index, (long long)s->n);
    *consumed = s->builtin ? (uint64_t)index : (uint64_t)epoch * (uint64_t)s->n + (uint64_t)index;
    return sx_ok();
}

static int win_cmp(const void *a, const void *b) {
    const win_entry *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The epoch's shuffle (data.shuffle), or the file order. */
static int64_t shuffled(const batch_source *s, int64_t p, int64_t n, uint64_t key, uint64_t epoch) {
    return s->shuffle ? data_permute(p, n, key, epoch) : p;
}

/* The dataset example at position p of epoch 'epoch' (training order): the shuffle, then the bucketing of p's window. */
static int64_t train_index(batch_source *s, int64_t p, uint64_t epoch) {
    if (!s->bucket) return shuffled(s, p, s->n, s->seed, epoch);
    int64_t wn = (int64_t)s->bucket * s->bb, w = p / wn, start = w * wn, m = s->n - start < wn ? s->n - start : wn, o = p - start;
    if (s->win_epoch != (int64_t)epoch || s->win_no != w) {
        for (int64_t q = 0; q < m; q++) {
            int64_t i = shuffled(s, start + q, s->n, s->seed, epoch);
            s->win[q] = (win_entry){data_dataset_length(s->ds, i, 0), q, i};
        }
        qsort(s->win, (size_t)m, sizeof *s->win, win_cmp);
        s->win_epoch = (int64_t)epoch;
        s->win_no = w;
        s->win_len = m;
    }
    int64_t full = m / s->bb, j = o / s->bb, sorted = o;
    if (j < full) {
        /* the window's batches in a shuffled order keyed by (seed, epoch, window) */
        uint64_t key = s->seed * 0xD6E8FEB86659FD93ull + (epoch + 1) * 0x9E3779B97F4A7C15ull + 0x5851F42D4C957F2Dull;
        sorted = shuffled(s, j, full, key, (uint64_t)w) * s->bb + o % s->bb;
    }
    return s->win[sorted].idx;
}

/* One example of a dataset by consumption index: shuffled per epoch in training, in order for evaluation. */
static sx_status example(batch_source *s, uint64_t g, int64_t *n_in, int64_t *n_tgt) {
    uint64_t epoch = s->heldout ? 0 : g / (uint64_t)s->n;
    int64_t i = s->heldout ? (int64_t)(g % (uint64_t)s->n) : train_index(s, (int64_t)(g % (uint64_t)s->n), epoch);
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
        if (s->fixed) { /* re-lay the rows at the fixed widths, from the last row back (rows only grow) */
            int64_t S0 = *S, T0 = *T;
            for (int64_t q = (int64_t)B * s->max_in - 1; q >= 0; q--) {
                int64_t b = q / s->max_in, k = q % s->max_in;
                ids[q] = k < S0 ? ids[b * S0 + k] : s->pad;
                mask[q] = k < S0 ? mask[b * S0 + k] : 0;
            }
            for (int64_t q = (int64_t)B * s->max_tgt - 1; q >= 0; q--) {
                int64_t b = q / s->max_tgt, k = q % s->max_tgt;
                labels[q] = k < T0 ? labels[b * T0 + k] : -100;
            }
            *S = s->max_in;
            *T = s->max_tgt;
        }
        return sx_ok();
    }
    /* two passes: lengths first (for the batch maximum), then the padded rows */
    int64_t Smax = 1, Tmax = 1, ni, nt;
    if (s->fixed) {
        Smax = s->max_in;
        Tmax = s->max_tgt;
    } else {
        for (int b = 0; b < B; b++) {
            SX_TRY(example(s, first + (uint64_t)b, &ni, &nt));
            if (ni > Smax) Smax = ni;
            if (nt > Tmax) Tmax = nt;
        }
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
    free(s->win);
    free(s);
}
