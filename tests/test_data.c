/* Token datasets, the epoch permutation, span corruption, `switchc prepare`, and training on a prepared dataset
 * end to end (prepare -> train -> eval, with an exact resume). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/prepare.h"
#include "data/span.h"
#include "train/trainer.h"
#include "tests/tutil.h"

static void path_of(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/data_test_%d_%s", SX_BINARY_DIR, (int)getpid(), name); }

Test(data, dataset_round_trip_and_validation) {
    char p[600];
    path_of(p, sizeof p, "rt.h5");
    data_writer *w;
    cr_assert(data_writer_open(p, 50, 1234, true, &w).ok);
    int32_t a[100], b[100];
    for (int i = 0; i < 300; i++) {
        int na = 1 + i % 37, nb = i % 5; /* empty targets included */
        for (int k = 0; k < na; k++) a[k] = (i + k) % 50;
        for (int k = 0; k < nb; k++) b[k] = (i * 3 + k) % 50;
        cr_assert(data_writer_append(w, a, na, b, nb).ok);
    }
    cr_assert(data_writer_close(w).ok);
    data_dataset *d;
    sx_status s = data_dataset_open(p, &d);
    cr_assert(s.ok, "%s", s.msg);
    cr_expect_eq(data_dataset_count(d), 300);
    cr_expect_eq(data_dataset_vocab_size(d), 50);
    cr_expect_eq(data_dataset_tokenizer_crc(d), 1234u);
    int bad = 0;
    for (int i = 0; i < 300; i++) {
        int64_t na, nb;
        cr_assert(data_dataset_get(d, i, 0, a, 100, &na).ok);
        cr_assert(data_dataset_get(d, i, 1, b, 100, &nb).ok);
        bad += na != 1 + i % 37 || nb != i % 5;
        for (int k = 0; k < na; k++) bad += a[k] != (i + k) % 50;
        for (int k = 0; k < nb; k++) bad += b[k] != (i * 3 + k) % 50;
    }
    cr_expect_eq(bad, 0, "%d values read back wrong", bad);
    int64_t n;
    s = data_dataset_get(d, 300, 0, a, 100, &n);
    cr_expect(!s.ok && strstr(s.msg, "out of range"), "got: %s", s.msg);
    data_dataset_close(d);
    /* not a dataset, a missing file */
    s = data_dataset_open(SX_SOURCE_DIR "/README.md", &d);
    cr_expect(!s.ok && strstr(s.msg, "not an HDF5"), "got: %s", s.msg);
    s = data_dataset_open("/nonexistent.h5", &d);
    cr_expect(!s.ok && strstr(s.msg, "cannot open"), "got: %s", s.msg);
    /* a token outside the declared vocabulary is reported with its example */
    char q[600];
    path_of(q, sizeof q, "vocab.h5");
    cr_assert(data_writer_open(q, 10, 0, false, &w).ok);
    int32_t ok[2] = {1, 2}, wrong[2] = {3, 17};
    cr_assert(data_writer_append(w, ok, 2, NULL, 0).ok);
    cr_assert(data_writer_append(w, wrong, 2, NULL, 0).ok);
    cr_assert(data_writer_close(w).ok);
    cr_assert(data_dataset_open(q, &d).ok);
    s = data_dataset_get(d, 1, 0, a, 100, &n);
    cr_expect(!s.ok && strstr(s.msg, "example 1") && strstr(s.msg, "17"), "got: %s", s.msg);
    data_dataset_close(d);
}

Test(data, permutation_is_a_bijection_per_epoch) {
    int64_t sizes[4] = {1, 7, 1000, 4099};
    for (int k = 0; k < 4; k++) {
        int64_t n = sizes[k];
        char *seen = calloc((size_t)n, 1);
        int64_t same_as_next_epoch = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t j = data_permute(i, n, 5, 2);
            cr_assert(j >= 0 && j < n && !seen[j], "n=%lld: not a permutation at %lld", (long long)n, (long long)i);
            seen[j] = 1;
            same_as_next_epoch += j == data_permute(i, n, 5, 3);
            cr_assert_eq(j, data_permute(i, n, 5, 2), "not deterministic");
        }
        if (n >= 1000) cr_expect(same_as_next_epoch < n / 10, "epochs must shuffle differently (%lld fixed points)", (long long)same_as_next_epoch);
        free(seen);
    }
}

Test(data, span_corruption_follows_t5) {
    data_span_config c = {0.15, 3.0, 99, 1};
    for (int64_t len = 2; len < 300; len += 13) {
        int32_t tok[300], in[700], tgt[700];
        for (int64_t i = 0; i < len; i++) tok[i] = 2 + (int32_t)(i % 30); /* below the sentinels (99 down to ~85) */
        uint8_t noise[300];
        data_span_mask(len, &c, 1, 0, (uint64_t)len, noise);
        int64_t nn = 0, spans = 0;
        for (int64_t i = 0; i < len; i++) {
            nn += noise[i];
            spans += noise[i] && (i == 0 || !noise[i - 1]);
        }
        int64_t want = llround(len * 0.15);
        if (want < 1) want = 1;
        if (want > len - 1) want = len - 1;
        cr_expect_eq(nn, want, "len %lld: %lld noise tokens, T5 gives %lld", (long long)len, (long long)nn, (long long)want);
        int64_t want_spans = llround((double)want / 3.0);
        if (want_spans < 1) want_spans = 1;
        cr_expect_eq(spans, want_spans, "len %lld: %lld spans, expected %lld", (long long)len, (long long)spans, (long long)want_spans);
        cr_expect(!noise[0], "spans start with non-noise");
        int64_t ni, nt;
        data_span_corrupt(tok, len, &c, 1, 0, (uint64_t)len, in, &ni, tgt, &nt);
        /* reconstruct: replace each sentinel of the inputs by the span that follows it in the targets */
        int32_t rec[300];
        int64_t r = 0, tp = 0;
        for (int64_t i = 0; i < ni - 1; i++) {
            if (in[i] > 40) {
                cr_assert(tgt[tp] == in[i], "sentinel order differs");
                tp++;
                while (tp < nt - 1 && !(tgt[tp] > 40)) rec[r++] = tgt[tp++];
            } else {
                rec[r++] = in[i];
            }
        }
        cr_expect(r == len && !memcmp(rec, tok, sizeof(int32_t) * (size_t)len), "len %lld: inputs + targets do not rebuild the text", (long long)len);
        cr_expect(in[ni - 1] == 1 && tgt[nt - 1] == 1, "both end with EOS");
        int64_t ni2, nt2;
        int32_t in2[700], tgt2[700];
        data_span_corrupt(tok, len, &c, 1, 0, (uint64_t)len, in2, &ni2, tgt2, &nt2);
        cr_expect(ni2 == ni && !memcmp(in, in2, sizeof(int32_t) * (size_t)ni), "not deterministic");
    }
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
}

static int prepare(const char *in, const char *out, const char *on_error) {
    char *argv[] = {"prepare", "--input", (char *)in, "--output", (char *)out, "--vocab-size", "16", "--on-error", (char *)on_error, NULL};
    return data_prepare_main(9, argv);
}

Test(data, prepare_reports_bad_lines_and_truncation) {
    char in[600], out[600];
    path_of(in, sizeof in, "bad.jsonl");
    path_of(out, sizeof out, "bad.h5");
    write_text(in, "{\"input\": [3, 4, 5], \"target\": [5, 4, 3]}\n"
                   "{\"input\": [3, 4\n"
                   "{\"inputs\": [3], \"target\": [3]}\n"
                   "{\"input\": [3, 99], \"target\": [3]}\n"
                   "{\"input\": \"some text\", \"target\": [3]}\n"
                   "{\"input\": [6], \"target\": [7]}\n");
    cr_expect_neq(prepare(in, out, "stop"), 0, "the first bad line (line 2) must stop the run");
    cr_expect(access(out, F_OK) != 0, "nothing is written when the run stops");
    cr_expect_eq(prepare(in, out, "skip"), 0);
    data_dataset *d;
    cr_assert(data_dataset_open(out, &d).ok);
    cr_expect_eq(data_dataset_count(d), 2, "two good lines of six");
    int32_t buf[8];
    int64_t n;
    cr_assert(data_dataset_get(d, 1, 1, buf, 8, &n).ok);
    cr_expect(n == 2 && buf[0] == 7 && buf[1] == 1, "target + EOS");
    data_dataset_close(d);
}

/* prepare -> train -> eval on a small task (the reverse task written out as token ids), and an exact resume. */
Test(data, prepare_train_eval_end_to_end, .timeout = 300) {
    char tr[500], ev[500], trh[500], evh[500], dir[400];
    path_of(tr, sizeof tr, "train.jsonl");
    path_of(ev, sizeof ev, "eval.jsonl");
    path_of(trh, sizeof trh, "train.h5");
    path_of(evh, sizeof evh, "eval.h5");
    path_of(dir, sizeof dir, "run");
    FILE *ft = fopen(tr, "w"), *fe = fopen(ev, "w");
    for (int i = 0; i < 400; i++) {
        int len = 3 + i % 4;
        int d[8];
        for (int k = 0; k < len; k++) d[k] = 3 + (i * 7 + k * 3) % 10;
        FILE *f = i < 340 ? ft : fe;
        fprintf(f, "{\"input\": [");
        for (int k = 0; k < len; k++) fprintf(f, k ? ",%d" : "%d", d[k]);
        fprintf(f, "], \"target\": [");
        for (int k = 0; k < len; k++) fprintf(f, k ? ",%d" : "%d", d[len - 1 - k]);
        fprintf(f, "]}\n");
    }
    fclose(ft);
    fclose(fe);
    cr_assert_eq(prepare(tr, trh, "stop"), 0);
    cr_assert_eq(prepare(ev, evh, "stop"), 0);
    run_config c;
    run_config_defaults(&c);
    c.model.d_model = 16;
    c.model.d_kv = 4;
    c.model.d_ff = 24;
    snprintf(c.task, sizeof c.task, "dataset");
    snprintf(c.train_data, sizeof c.train_data, "%s", trh);
    snprintf(c.eval_data, sizeof c.eval_data, "%s", evh);
    c.steps = 30; /* 30 x 16 = 480 examples: more than one epoch of 340 */
    c.batch_size = 16;
    c.eval_every = 0;
    c.ckpt_every = 0;
    c.eval_examples = 60;
    double straight[30], resumed[30];
    char a[600], b[600];
    snprintf(a, sizeof a, "%s_a", dir);
    snprintf(b, sizeof b, "%s_b", dir);
    trainer_result r = tu_train(&c, a, straight);
    cr_expect(r.eval_token_acc > 0, "evaluation on the eval dataset ran (token accuracy %.3f, exact match %.3f)", r.eval_token_acc, r.eval_exact_match);
    printf("dataset run: 30 steps, eval loss %.4f, token accuracy %.3f, exact match %.3f\n", r.eval_loss, r.eval_token_acc, r.eval_exact_match);
    tu_train_resumed(&c, b, 15, resumed);
    for (int i = 0; i < 30; i++) cr_expect(straight[i] == resumed[i], "step %d: %.9g vs %.9g after resume (the epoch boundary is at step 22)", i + 1, straight[i], resumed[i]);
}
