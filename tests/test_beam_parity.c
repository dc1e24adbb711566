/* Beam search and greedy decoding against Hugging Face generate (transformers 4.57.6, float32) on the fixtures of
 * scripts/make_beam_fixtures.py: for every case (num_beams 1..8, length_penalty, early_stopping False/True/"never",
 * length limit hit or not, padded batches) switchc's tokens and lengths must equal HF's exactly, and the sequence's
 * log-probability recomputed by the full forward, divided by len^length_penalty, must give HF's sequence score.
 * `switchc generate` gives the same ids through its flags, and refuses a bad --length-penalty or --early-stopping. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/h5fixture.h"
#include "train/model/generate.h"
#include "train/hf/hf_model.h"
#include "train/hf/hf_weights.h"
#include "tests/tutil.h"

#define FIX SX_SOURCE_DIR "/tests/fixtures/beam"
/* The score check: both sides sum the same fp32 log-probabilities in different orders over <= 24 tokens, from logits
 * that agree to ~1e-6 relative (test_hf_weights). Tokens are compared exactly. */
#define SCORE_TOL 1e-4

/* sum of log p(seq[t] | input, seq[<t]) over t < len, by the teacher-forced forward of one row */
static double seq_logprob(model *m, ag_ctx *ctx, const int32_t *ids, const int32_t *mask, int64_t S,
                          const int32_t *seq, int len) {
    int32_t labels[64];
    cr_assert(len <= 64);
    memcpy(labels, seq, sizeof(int32_t) * (size_t)len);
    model_batch bt = {1, S, len, ids, mask, labels, NULL, 0, 0};
    model_output o;
    ctx->grad_enabled = false;
    model_forward(m, ctx, &bt, (model_rng){0, 0, false}, &o);
    double lp = -(double)((float *)o.ce->data)[0] * len; /* CE is the mean over the len tokens */
    ag_ctx_reset(ctx);
    return lp;
}

static void run_model(const char *name) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", FIX, name);
    model_config cfg;
    sx_status s = hf_read_config(dir, &cfg);
    cr_assert(s.ok, "%s", s.msg);
    model m;
    cr_assert(model_init(&m, &cfg).ok);
    s = hf_load_weights(&m, dir);
    cr_assert(s.ok, "%s: %s", dir, s.msg);

    hid_t f = h5f_open(FIX "/cases.h5", NULL);
    hid_t grp = H5Gopen2(f, name, H5P_DEFAULT);
    cr_assert(grp >= 0, "cases.h5 has no group %s", name);
    int nd;
    hsize_t dims[8];
    int32_t *ids = h5f_ints(grp, "input_ids", &nd, dims), *mask = h5f_ints(grp, "attention_mask", NULL, NULL);
    int64_t S = (int64_t)dims[1];
    ag_arena act;
    ag_ctx ctx;
    ag_ctx_init_eval(&ctx, &act, "act", 1 << 20);

    int64_t B_all = (int64_t)dims[0];
    int32_t *nbs = h5f_ints(grp, "num_beams", &nd, dims), *max_new = h5f_ints(grp, "max_new_tokens", NULL, NULL);
    int n_cases = (int)dims[0];
    int32_t *rows = h5f_ints(grp, "rows", NULL, NULL), *es = h5f_ints(grp, "early_stopping", NULL, NULL);
    double *lpen = h5f_read(grp, "length_penalty", H5T_NATIVE_DOUBLE, sizeof(double), NULL, NULL, NULL);
    int32_t *ref_all = h5f_ints(grp, "sequences", &nd, dims), *ref_len_all = h5f_ints(grp, "lengths", NULL, NULL);
    int64_t T = (int64_t)dims[2];
    float *ref_score_all = h5f_floats(grp, "scores", NULL);
    cr_assert(nd == 3 && dims[0] == (hsize_t)n_cases && dims[1] == (hsize_t)B_all, "%s: sequences shape", name);
    int n_fail = 0, n_rows = 0, n_beam = 0;
    double worst_score = 0;
    static const char *es_name[3] = {"false", "true", "never"};
    for (int i = 0; i < n_cases; i++) {
        gen_config g = {max_new[i], nbs[i], lpen[i], (gen_early_stopping)es[i]};
        int64_t B = rows[i];
        cr_assert(B >= 1 && B <= B_all && g.max_len <= T && es[i] >= 0 && es[i] <= 2, "%s: case %d", name, i);
        const int32_t *ref = ref_all + (int64_t)i * B_all * T, *ref_len = ref_len_all + (int64_t)i * B_all;
        const float *ref_score = ref_score_all + (int64_t)i * B_all;
        int32_t *out = malloc(sizeof(int32_t) * (size_t)(B * g.max_len));
        int *lens = malloc(sizeof(int) * (size_t)B);
        generate(&m, &ctx, ids, mask, B, S, &g, out, lens);
        for (int64_t b = 0; b < B; b++) {
            bool ok = lens[b] == ref_len[b];
            for (int t = 0; ok && t < lens[b]; t++) ok = out[b * g.max_len + t] == ref[b * T + t];
            for (int t = lens[b]; ok && t < g.max_len; t++) ok = out[b * g.max_len + t] == m.cfg.pad_token_id;
            double err = 0;
            if (ok && g.num_beams > 1) {
                double lp = seq_logprob(&m, &ctx, ids + b * S, mask + b * S, S, out + b * g.max_len, lens[b]);
                double sc = lp / pow(lens[b], g.length_penalty);
                err = fabs(sc - ref_score[b]) / (1 + fabs(ref_score[b]));
                worst_score = fmax(worst_score, err);
            }
            if (!ok || !(err <= SCORE_TOL)) {
                n_fail++;
                printf("FAIL %s case %d row %lld (beams %d, length_penalty %g, early_stopping %s, max_len %d):\n"
                       "  switchc",
                       name, i, (long long)b, g.num_beams, g.length_penalty, es_name[g.early_stopping], g.max_len);
                for (int t = 0; t < lens[b]; t++) printf(" %d", out[b * g.max_len + t]);
                printf("\n  HF     ");
                for (int t = 0; t < ref_len[b]; t++) printf(" %d", ref[b * T + t]);
                printf("   (score %.6f, relative score error %.2e)\n", ref_score[b], err);
            }
            n_rows++;
        }
        n_beam += g.num_beams > 1;
        free(out);
        free(lens);
    }
    printf("beam parity %s: %d cases (%d beam search, %d greedy), %d rows, %d failing; worst score error %.2e\n", name,
           n_cases, n_beam, n_cases - n_beam, n_rows, n_fail, worst_score);
    cr_assert(n_cases >= 50, "%s: only %d cases in the fixture", name, n_cases);
    cr_expect(n_fail == 0, "%s: %d of %d rows differ from HF (printed above)", name, n_fail, n_rows);
    ag_ctx_free_eval(&ctx);
    free(ids);
    free(mask);
    free(nbs);
    free(max_new);
    free(rows);
    free(es);
    free(lpen);
    free(ref_all);
    free(ref_len_all);
    free(ref_score_all);
    H5Gclose(grp);
    H5Fclose(f);
    model_free(&m);
}

Test(beam_parity, eos_bias) { run_model("eos_bias"); }
Test(beam_parity, untied_eos_scaled) { run_model("untied_eos4"); }
Test(beam_parity, tied) { run_model("tied"); }

/* runs cmd, returns its exit status; its stdout and stderr together in out */
/* the batch-of-one cases through the CLI (its input has no padding: row 0 of the fixture is unpadded) */
Test(beam_parity, cli_flags) {
    const char *bin = SX_BINARY_DIR "/switchc", *dir = FIX "/eos_bias";
    cr_assert(access(bin, X_OK) == 0, "%s is not built", bin);
    hid_t f = h5f_open(FIX "/cases.h5", NULL);
    hid_t grp = H5Gopen2(f, "eos_bias", H5P_DEFAULT);
    int nd;
    hsize_t dims[8];
    int32_t *ids = h5f_ints(grp, "input_ids", &nd, dims), *mask = h5f_ints(grp, "attention_mask", NULL, NULL);
    int64_t S = (int64_t)dims[1], B_all = (int64_t)dims[0];
    int32_t *nbs = h5f_ints(grp, "num_beams", &nd, dims), *max_new = h5f_ints(grp, "max_new_tokens", NULL, NULL);
    int n_cases = (int)dims[0];
    int32_t *rows = h5f_ints(grp, "rows", NULL, NULL), *es = h5f_ints(grp, "early_stopping", NULL, NULL);
    double *lpen = h5f_read(grp, "length_penalty", H5T_NATIVE_DOUBLE, sizeof(double), NULL, NULL, NULL);
    int32_t *ref = h5f_ints(grp, "sequences", &nd, dims), *ref_len = h5f_ints(grp, "lengths", NULL, NULL);
    int64_t T = (int64_t)dims[2];
    char cmd[1500], out[4096], ids_arg[600] = "", want[600];
    for (int64_t s = 0; s < S; s++) {
        cr_assert(mask[s] == 1, "row 0 of the fixture is padded");
        snprintf(ids_arg + strlen(ids_arg), sizeof ids_arg - strlen(ids_arg), s ? " %d" : "%d", ids[s]);
    }
    static const char *es_flag[3] = {"false", "true", "never"};
    int n_cli = 0;
    for (int i = 0; i < n_cases; i++) {
        if (rows[i] != 1) continue;
        snprintf(cmd, sizeof cmd, "%s generate --model %s --ids \"%s\" --beams %d --length-penalty %.17g "
                 "--early-stopping %s --max-len %d", bin, dir, ids_arg, nbs[i], lpen[i], es_flag[es[i]], max_new[i]);
        cr_assert(tu_run_capture(cmd, out, sizeof out) == 0, "%s failed:\n%s", cmd, out);
        want[0] = 0;
        const int32_t *r0 = ref + (int64_t)i * B_all * T;
        for (int t = 0; t < ref_len[(int64_t)i * B_all]; t++)
            snprintf(want + strlen(want), sizeof want - strlen(want), t ? " %d" : "%d", r0[t]);
        out[strcspn(out, "\n")] = 0;
        cr_expect_str_eq(out, want, "%s:\n  switchc %s\n  HF      %s", cmd, out, want);
        n_cli++;
    }
    printf("cli: %d batch-of-one cases through switchc generate\n", n_cli);
    cr_assert(n_cli >= 4, "only %d batch-of-one cases", n_cli);
    const char *bad[3][2] = {{"--length-penalty inf", "--length-penalty 'inf' must be a finite number"},
                             {"--length-penalty nan", "--length-penalty 'nan' must be a finite number"},
                             {"--early-stopping maybe", "--early-stopping 'maybe' must be true, false or never"}};
    for (int k = 0; k < 3; k++) {
        snprintf(cmd, sizeof cmd, "%s generate --model %s --ids \"5 7 1\" --beams 2 %s", bin, dir, bad[k][0]);
        cr_expect(tu_run_capture(cmd, out, sizeof out) == 2, "%s: exit status 2 expected", cmd);
        cr_expect(strstr(out, bad[k][1]), "%s: the message does not say '%s':\n%s", cmd, bad[k][1], out);
    }
    free(ids);
    free(mask);
    free(nbs);
    free(max_new);
    free(rows);
    free(es);
    free(lpen);
    free(ref);
    free(ref_len);
    H5Gclose(grp);
    H5Fclose(f);
}
