/* Batching options of data/batches.c: fixed padding, length bucketing (every example once per epoch, tighter
 * batches, an exact resume from inside a window, the data position and its seek), the span corruption knobs, the
 * read cache, and their config keys. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/batches.h"
#include "data/dataset.h"
#include "train/ckpt.h"
#include "train/run_config.h"
#include "train/trainer.h"
#include "tests/tutil.h"

#define N_EX 300
#define VOCAB 400

static void path_of(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/batching_test_%d_%s", SX_BINARY_DIR, (int)getpid(), name); }

static int in_len(int i) { return 1 + (i * 37) % 50; }

/* N_EX examples with varied input lengths; the target is the example's id (+ 2), so batches can be identified. */
static void write_pairs(const char *p) {
    data_writer *w;
    cr_assert(data_writer_open(p, VOCAB, 0, true, &w).ok);
    int32_t in[64], tgt[1];
    for (int i = 0; i < N_EX; i++) {
        for (int k = 0; k < in_len(i); k++) in[k] = 3 + (i + k) % 40;
        tgt[0] = 2 + i;
        cr_assert(data_writer_append(w, in, in_len(i), tgt, 1).ok);
    }
    cr_assert(data_writer_close(w).ok);
}

static void dataset_config(run_config *c, const char *path, int batch, int bucket) {
    run_config_defaults(c);
    c->model.vocab_size = VOCAB;
    snprintf(c->task, sizeof c->task, "dataset");
    snprintf(c->train_data, sizeof c->train_data, "%s", path);
    c->max_input_len = 64;
    c->max_target_len = 8;
    c->batch_size = batch;
    c->bucket_batches = bucket;
    cr_assert(run_config_validate(c).ok);
}

/* write_pairs into the file name of this suite, and c a dataset run of it */
static void pairs_dataset(char *p, size_t cap, const char *name, run_config *c, int batch, int bucket) {
    path_of(p, cap, name);
    write_pairs(p);
    dataset_config(c, p, batch, bucket);
}

typedef struct {
    int32_t *ids, *mask, *labels;
    int64_t S, T;
} batch_buf;

static void get(batch_source *s, uint64_t first, int B, batch_buf *b) {
    int64_t L = batch_source_max_len(s);
    if (!b->ids) {
        b->ids = malloc(sizeof(int32_t) * (size_t)(64 * L));
        b->mask = malloc(sizeof(int32_t) * (size_t)(64 * L));
        b->labels = malloc(sizeof(int32_t) * (size_t)(64 * L));
    }
    sx_status st = batch_source_get(s, first, B, b->ids, b->mask, b->labels, &b->S, &b->T);
    cr_assert(st.ok, "%s", st.msg);
}

static void free_buf(batch_buf *b) {
    free(b->ids);
    free(b->mask);
    free(b->labels);
}

static int row_len(const batch_buf *b, int r) {
    int n = 0;
    for (int64_t k = 0; k < b->S; k++) n += b->mask[r * b->S + k];
    return n;
}

Test(batching, dataset_length_and_read_cache) {
    char p[400];
    path_of(p, sizeof p, "len.h5");
    write_pairs(p);
    data_dataset *d;
    sx_status s = data_dataset_open_cached(p, 1 << 20, &d);
    cr_assert(s.ok, "%s", s.msg);
    int bad = 0;
    int32_t buf[64];
    for (int i = 0; i < N_EX; i++) {
        int64_t n;
        cr_assert(data_dataset_get(d, i, 0, buf, 64, &n).ok);
        bad += data_dataset_length(d, i, 0) != in_len(i) || n != in_len(i) || data_dataset_length(d, i, 1) != 1;
    }
    cr_expect_eq(bad, 0);
    cr_expect_eq(data_dataset_length(d, N_EX, 0), -1);
    cr_expect_eq(data_dataset_length(d, 0, 2), -1);
    data_dataset_close(d);
    unlink(p);
}

Test(batching, fixed_padding_gives_the_configured_shapes) {
    char p[400];
    run_config c;
    pairs_dataset(p, sizeof p, "fixed.h5", &c, 8, 0);
    batch_source *s;
    batch_buf b = {0}, f = {0};
    cr_assert(run_config_batches_open(&c, false, &s).ok);
    get(s, 16, 8, &b);
    batch_source_close(s);
    cr_expect(b.S < 64 && b.T == 1, "pad_to batch: S %lld, T %lld", (long long)b.S, (long long)b.T);
    snprintf(c.pad_to, sizeof c.pad_to, "fixed");
    cr_assert(run_config_validate(&c).ok);
    cr_assert(run_config_batches_open(&c, false, &s).ok);
    get(s, 16, 8, &f);
    batch_source_close(s);
    cr_expect(f.S == 64 && f.T == 8, "pad_to fixed: S %lld, T %lld (want 64, 8)", (long long)f.S, (long long)f.T);
    int bad = 0;
    for (int r = 0; r < 8; r++) {
        for (int64_t k = 0; k < f.S; k++) bad += k < b.S ? f.ids[r * f.S + k] != b.ids[r * b.S + k] || f.mask[r * f.S + k] != b.mask[r * b.S + k]
                                                       : f.mask[r * f.S + k] != 0 || f.ids[r * f.S + k] != c.model.pad_token_id;
        for (int64_t k = 0; k < f.T; k++) bad += k < b.T ? f.labels[r * f.T + k] != b.labels[r * b.T + k] : f.labels[r * f.T + k] != -100;
    }
    cr_expect_eq(bad, 0, "the same rows, padded further");
    /* the built-in task too: max_len + 1 (EOS) */
    run_config t;
    run_config_defaults(&t);
    snprintf(t.pad_to, sizeof t.pad_to, "fixed");
    batch_buf bt = {0};
    cr_assert(run_config_batches_open(&t, false, &s).ok);
    get(s, 0, 8, &bt);
    batch_source_close(s);
    cr_expect(bt.S == t.task_max_len + 1 && bt.T == t.task_max_len + 1, "built-in fixed: S %lld, T %lld", (long long)bt.S, (long long)bt.T);
    for (int r = 0; r < 8; r++) cr_expect(row_len(&bt, r) >= t.task_min_len + 1, "row %d keeps its tokens", r);
    free_buf(&b);
    free_buf(&f);
    free_buf(&bt);
    unlink(p);
}

/* The ids (labels[0] - 2) and input lengths of consumption positions [0, count), read batch by batch. */
static void read_positions(batch_source *s, int B, int count, int *ids, int *lens, double *mean_spread) {
    batch_buf b = {0};
    double spread = 0;
    int batches = 0;
    for (int first = 0; first < count; first += B) {
        int nb = count - first < B ? count - first : B;
        get(s, (uint64_t)first, nb, &b);
        int lo = 1 << 30, hi = 0;
        for (int r = 0; r < nb; r++) {
            ids[first + r] = b.labels[r * b.T] - 2;
            lens[first + r] = row_len(&b, r);
            if (lens[first + r] < lo) lo = lens[first + r];
            if (lens[first + r] > hi) hi = lens[first + r];
        }
        if (nb == B) {
            spread += hi - lo;
            batches++;
        }
    }
    *mean_spread = spread / batches;
    free_buf(&b);
}

Test(batching, bucketing_sorts_windows_and_keeps_the_epoch) {
    char p[400];
    path_of(p, sizeof p, "bucket.h5");
    write_pairs(p);
    const int B = 8, K = 4;
    run_config c;
    batch_source *s;
    int ids0[N_EX], lens0[N_EX], ids[N_EX], lens[N_EX];
    double spread0, spread;
    dataset_config(&c, p, B, 0);
    cr_assert(run_config_batches_open(&c, false, &s).ok);
    read_positions(s, B, N_EX, ids0, lens0, &spread0);
    batch_source_close(s);
    dataset_config(&c, p, B, K);
    cr_assert(run_config_batches_open(&c, false, &s).ok);
    read_positions(s, B, N_EX, ids, lens, &spread);
    batch_source_close(s);
    /* every example of the epoch exactly once (300 = 9 windows of 32 and a short one of 12) */
    char seen[N_EX] = {0};
    int dup = 0;
    for (int i = 0; i < N_EX; i++) {
        cr_assert(ids[i] >= 0 && ids[i] < N_EX, "position %d: id %d", i, ids[i]);
        dup += seen[ids[i]]++;
        cr_expect_eq(lens[i], in_len(ids[i]), "position %d: the mask shows the example's length", i);
    }
    cr_expect_eq(dup, 0, "%d examples seen twice in one epoch", dup);
    /* the windows hold the same examples as the plain shuffle, in another order */
    int moved = 0;
    for (int w = 0; w * B * K < N_EX; w++) {
        int a = w * B * K, m = N_EX - a < B * K ? N_EX - a : B * K;
        char in_win[N_EX] = {0};
        for (int q = 0; q < m; q++) in_win[ids0[a + q]] = 1;
        for (int q = 0; q < m; q++) cr_expect(in_win[ids[a + q]], "window %d: example %d came from elsewhere", w, ids[a + q]);
        for (int q = 0; q < m; q++) moved += ids[a + q] != ids0[a + q];
        /* batches of one window are consecutive pieces of its sorted order: their length ranges do not overlap */
        for (int x = 0; x < m / B; x++)
            for (int y = 0; y < m / B; y++) {
                if (x == y) continue;
                int xlo = 1 << 30, xhi = 0, ylo = 1 << 30, yhi = 0;
                for (int r = 0; r < B; r++) {
                    int lx = lens[a + x * B + r], ly = lens[a + y * B + r];
                    xlo = lx < xlo ? lx : xlo;
                    xhi = lx > xhi ? lx : xhi;
                    ylo = ly < ylo ? ly : ylo;
                    yhi = ly > yhi ? ly : yhi;
                }
                cr_expect(xhi <= ylo || yhi <= xlo, "window %d: batches %d [%d, %d] and %d [%d, %d] overlap", w, x, xlo, xhi, y, ylo, yhi);
            }
    }
    cr_expect(moved > N_EX / 2, "bucketing reorders the epoch");
    printf("mean max-min input length per batch: %.2f plain, %.2f bucketed (K = %d)\n", spread0, spread, K);
    cr_expect(spread < spread0 / 2, "bucketed batches are tighter: %.2f vs %.2f", spread, spread0);
    /* the sorted batches are emitted in a shuffled order, not always ascending */
    int descending = 0;
    for (int w = 0; w < N_EX / (B * K); w++)
        for (int x = 1; x < K; x++) descending += lens[w * B * K + x * B] < lens[w * B * K + (x - 1) * B];
    cr_expect(descending > 0, "the K batches of a window are shuffled");
    unlink(p);
}

/* The data position of a checkpoint: batch_source_seek inverts batch_source_position, and a position outside the
 * data (a damaged or foreign checkpoint) is an error naming where it came from; the built-in task has one endless
 * epoch. */
static void check_seek(batch_source *s) {
    uint64_t consumed[4] = {0, 40, N_EX, 2 * N_EX + 17}, back;
    for (int k = 0; k < 4; k++) {
        int64_t epoch, index;
        batch_source_position(s, consumed[k], &epoch, &index);
        cr_expect(epoch == (int64_t)(consumed[k] / N_EX) && index == (int64_t)(consumed[k] % N_EX), "position of %llu: %lld %lld",
                  (unsigned long long)consumed[k], (long long)epoch, (long long)index);
        sx_status st = batch_source_seek(s, epoch, index, "ck.h5", &back);
        cr_expect(st.ok && back == consumed[k], "seek(%lld, %lld) = %llu, want %llu", (long long)epoch, (long long)index, (unsigned long long)back,
                  (unsigned long long)consumed[k]);
    }
    int64_t bad[3][2] = {{0, N_EX}, {-1, 0}, {0, -3}};
    for (int k = 0; k < 3; k++) {
        sx_status st = batch_source_seek(s, bad[k][0], bad[k][1], "ck.h5: data/position", &back);
        cr_expect(!st.ok && strstr(st.msg, "ck.h5: data/position") && strstr(st.msg, "300 examples"), "epoch %lld, example %lld: %s",
                  (long long)bad[k][0], (long long)bad[k][1], st.ok ? "accepted" : st.msg);
    }
    run_config c;
    run_config_defaults(&c);
    batch_source *b;
    cr_assert(run_config_batches_open(&c, false, &b).ok);
    cr_expect(batch_source_seek(b, 0, 1000, "ck.h5", &back).ok && back == 1000);
    sx_status st = batch_source_seek(b, 1, 0, "ck.h5", &back);
    cr_expect(!st.ok && strstr(st.msg, "built-in task"), "got: %s", st.ok ? "accepted" : st.msg);
    batch_source_close(b);
}

Test(batching, bucketing_resumes_mid_window_exactly) {
    char p[400];
    const int B = 8, K = 4, NB = 90; /* 720 examples: across two epoch boundaries */
    run_config c;
    pairs_dataset(p, sizeof p, "resume.h5", &c, B, K);
    batch_source *a, *r;
    cr_assert(run_config_batches_open(&c, false, &a).ok);
    int32_t *straight = malloc(sizeof(int32_t) * (size_t)(NB * B));
    batch_buf b = {0};
    for (int k = 0; k < NB; k++) {
        get(a, (uint64_t)k * B, B, &b);
        for (int q = 0; q < B; q++) straight[k * B + q] = b.labels[q * b.T];
    }
    check_seek(a);
    batch_source_close(a);
    /* a fresh source (no window in memory) started at batch 5, the second batch of window 1, and one that jumps */
    int starts[3] = {5, 38, 41}, bad = 0;
    for (int t = 0; t < 3; t++) {
        cr_assert(run_config_batches_open(&c, false, &r).ok);
        for (int k = starts[t]; k < NB; k++) {
            batch_buf e = {0};
            int64_t S0, T0;
            get(r, (uint64_t)k * B, B, &b);
            S0 = b.S;
            T0 = b.T;
            for (int q = 0; q < B; q++) bad += b.labels[q * b.T] != straight[k * B + q];
            /* the full contents match a third source reading only this batch */
            batch_source *one;
            cr_assert(run_config_batches_open(&c, false, &one).ok);
            get(one, (uint64_t)k * B, B, &e);
            batch_source_close(one);
            bad += e.S != S0 || e.T != T0 || memcmp(e.ids, b.ids, sizeof(int32_t) * (size_t)(B * S0)) ||
                   memcmp(e.mask, b.mask, sizeof(int32_t) * (size_t)(B * S0)) || memcmp(e.labels, b.labels, sizeof(int32_t) * (size_t)(B * T0));
            free_buf(&e);
        }
        batch_source_close(r);
    }
    cr_expect_eq(bad, 0, "%d differences after resuming", bad);
    /* and the second epoch is bucketed differently from the first */
    int same = 0;
    for (int q = 0; q < N_EX - 4; q++) same += straight[q] == straight[N_EX + q];
    cr_expect(same < N_EX / 4, "epoch 2 reshuffles (%d positions equal)", same);
    free(straight);
    free_buf(&b);
    unlink(p);
}

/* The trainer with bucketing and fixed padding: stopped mid-window and resumed, the losses match bit for bit. */
Test(batching, trainer_resume_with_bucketing, .timeout = 300) {
    char p[400], dir[400];
    path_of(dir, sizeof dir, "run");
    run_config c;
    pairs_dataset(p, sizeof p, "trainer.h5", &c, 8, 4);
    c.model.d_model = 16;
    c.model.d_kv = 4;
    c.model.d_ff = 24;
    c.max_input_len = 48;
    c.steps = 12;
    snprintf(c.eval_data, sizeof c.eval_data, "%s", p);
    c.eval_examples = 16;
    c.eval_every = 0;
    c.ckpt_every = 0;
    snprintf(c.pad_to, sizeof c.pad_to, "fixed");
    double straight[12], resumed[12];
    char a[600], b[600];
    snprintf(a, sizeof a, "%s_a", dir);
    snprintf(b, sizeof b, "%s_b", dir);
    tu_train(&c, a, straight);
    tu_train_resumed(&c, b, 5, resumed); /* 5 steps, 40 examples: inside window 1 */
    /* the step-5 checkpoint says where the data stood: epoch 0, example 40 of the 300 */
    char ck[700];
    snprintf(ck, sizeof ck, "%s/ckpt_step00000005.h5", b);
    int64_t pos[3];
    tu_ckpt_position(ck, pos);
    cr_expect(pos[0] == 0 && pos[1] == 40 && pos[2] == N_EX, "data position %lld %lld %lld", (long long)pos[0], (long long)pos[1], (long long)pos[2]);
    for (int i = 0; i < 12; i++) cr_expect(straight[i] == resumed[i], "step %d: %.9g vs %.9g after resume", i + 1, straight[i], resumed[i]);
    unlink(p);
}

/* Inputs-only text: the knobs reach span corruption. */
Test(batching, span_knobs_change_the_corruption) {
    char p[400];
    path_of(p, sizeof p, "span.h5");
    data_writer *w;
    const int L = 200, VOC = 1000;
    cr_assert(data_writer_open(p, VOC, 0, false, &w).ok);
    int32_t tok[200];
    for (int i = 0; i < 16; i++) {
        for (int k = 0; k < L; k++) tok[k] = 2 + (i + k) % 40; /* no EOS (1), far below the sentinels */
        cr_assert(data_writer_append(w, tok, L, NULL, 0).ok);
    }
    cr_assert(data_writer_close(w).ok);
    double dens[3] = {0.15, 0.5, 0.5}, mean[3] = {3, 3, 10};
    for (int t = 0; t < 3; t++) {
        run_config c;
        run_config_defaults(&c);
        c.model.vocab_size = VOC;
        snprintf(c.task, sizeof c.task, "dataset");
        snprintf(c.train_data, sizeof c.train_data, "%s", p);
        c.max_input_len = 256;
        c.max_target_len = 256;
        c.noise_density = dens[t];
        c.mean_span_length = mean[t];
        cr_assert(run_config_validate(&c).ok);
        batch_source *s;
        cr_assert(run_config_batches_open(&c, false, &s).ok);
        batch_buf b = {0};
        get(s, 0, 4, &b);
        batch_source_close(s);
        for (int r = 0; r < 4; r++) {
            int64_t nt = 0, sentinels = 0;
            for (int64_t k = 0; k < b.T; k++) {
                int32_t v = b.labels[r * b.T + k];
                if (v < 0) break;
                nt++;
                sentinels += v > 100;
            }
            int64_t noise = nt - sentinels - 1; /* targets: sentinel + span, ..., EOS */
            int64_t want = llround(L * dens[t]), want_spans = llround((double)want / mean[t]);
            cr_expect_eq(noise, want, "density %.2f: %lld noise tokens of %d, want %lld", dens[t], (long long)noise, L, (long long)want);
            cr_expect_eq(sentinels, want_spans, "density %.2f, mean span %.0f: %lld spans, want %lld", dens[t], mean[t], (long long)sentinels,
                         (long long)want_spans);
            cr_expect_eq(row_len(&b, r), L - want + want_spans + 1, "inputs: kept tokens, one sentinel per span, EOS");
        }
        free_buf(&b);
    }
    unlink(p);
}

Test(batching, config_keys_are_validated_and_listed) {
    run_config c;
    run_config_defaults(&c);
    cr_expect(!strcmp(c.pad_to, "batch") && c.bucket_batches == 0 && c.noise_density == 0.15 && c.mean_span_length == 3.0 && c.read_cache_mb > 0);
    cr_assert(run_config_set(&c, "data.pad_to=fixed").ok);
    cr_expect(run_config_validate(&c).ok);
    /* each bad value from the defaults: refused by --set itself (a range) or by the cross-field validation */
    static const struct {
        const char *set;
        bool at_validate;
        const char *want, *also;
    } BAD[] = {
        {"data.pad_to=longest", true, "data.pad_to", "longest"},
        {"data.bucket_batches=1", true, "data.bucket_batches", NULL},
        {"data.bucket_batches=-2", false, "bucket_batches", NULL},
        {"data.noise_density=0", true, "data.noise_density", NULL},
        {"data.noise_density=1.5", false, "noise_density", NULL},
        {"data.mean_span_length=0.5", false, "mean_span_length", NULL},
    };
    for (size_t k = 0; k < sizeof BAD / sizeof BAD[0]; k++) {
        run_config_defaults(&c);
        sx_status s = run_config_set(&c, BAD[k].set);
        cr_assert(s.ok == BAD[k].at_validate, "--set %s: %s", BAD[k].set, s.ok ? "accepted" : s.msg);
        if (s.ok) s = run_config_validate(&c);
        cr_expect(!s.ok && strstr(s.msg, BAD[k].want) && (!BAD[k].also || strstr(s.msg, BAD[k].also)), "%s: got: %s",
                  BAD[k].set, s.ok ? "accepted" : s.msg);
    }
    run_config_defaults(&c);
    cr_expect(run_config_set(&c, "data.read_cache_mb=16").ok && c.read_cache_mb == 16);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    run_config_print_help(f);
    fclose(f);
    const char *keys[5] = {"pad_to", "bucket_batches", "noise_density", "mean_span_length", "read_cache_mb"};
    for (int k = 0; k < 5; k++) cr_expect(strstr(text, keys[k]), "--help-config lists data.%s", keys[k]);
    free(text);
}

/* data.shuffle = false: the training order is the file's, epoch after epoch (the targets carry the example id). */
Test(batching, shuffle_false_keeps_the_file_order) {
    char p[512];
    run_config c;
    pairs_dataset(p, sizeof p, "order.h5", &c, 10, 0);
    cr_assert(run_config_set(&c, "data.shuffle=false").ok);
    batch_source *s;
    cr_assert(run_config_batches_open(&c, false, &s).ok);
    batch_buf b = {0};
    for (uint64_t first = 0; first < 2 * N_EX; first += 10) {
        get(s, first, 10, &b);
        for (int r = 0; r < 10; r++)
            cr_assert_eq(b.labels[r * b.T], 2 + (int)((first + (uint64_t)r) % N_EX), "position %d: not the file's order", (int)first + r);
    }
    batch_source_close(s);
    /* shuffled (the default): some batch differs from the file order */
    dataset_config(&c, p, 10, 0);
    cr_assert(run_config_batches_open(&c, false, &s).ok);
    get(s, 0, 10, &b);
    bool moved = false;
    for (int r = 0; r < 10; r++) moved |= b.labels[r * b.T] != 2 + r;
    cr_expect(moved, "the default shuffles");
    batch_source_close(s);
    free(b.ids);
    free(b.mask);
    free(b.labels);
    unlink(p);
}

/* data.eval_examples: 0 (the default) evaluates an eval dataset whole (it capped it at 512 before); a value caps it. */
Test(batching, eval_examples_default_is_the_whole_dataset) {
    char p[512];
    run_config c;
    pairs_dataset(p, sizeof p, "evalcount.h5", &c, 10, 0);
    snprintf(c.eval_data, sizeof c.eval_data, "%s", p);
    batch_source *s;
    cr_assert(run_config_batches_open(&c, true, &s).ok);
    cr_expect_eq(batch_source_count(s), N_EX);
    batch_source_close(s);
    cr_assert(run_config_set(&c, "data.eval_examples=7").ok);
    cr_assert(run_config_batches_open(&c, true, &s).ok);
    cr_expect_eq(batch_source_count(s), 7);
    batch_source_close(s);
    unlink(p);
}
