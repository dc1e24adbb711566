/* The inference commands against Hugging Face (transformers 4.57.6, float32) on the fixtures of
 * scripts/make_infer_fixtures.py (a small random Switch model with a real SentencePiece tokenizer):
 *  - generate over a file: `switchc generate --input-file` (JSONL and plain text, batches of mixed lengths in
 *    length order) gives, input for input and in input order, HF generate's tokens, text and beam score for
 *    greedy and two beam-search settings;
 *  - sampling: switchc's warpers give HF's distribution after temperature/top-k/top-p, the sampler's first-token
 *    frequencies over 20000 (seed, input index) streams fit it (chi-square), and the same seed gives the same
 *    tokens whatever the batch size;
 *  - embed: `switchc embed` gives SwitchTransformersEncoderModel's last hidden state and router logits and their
 *    mean over the mask within 1e-5 relative, in every output layout (padded HDF5, per example, .npy), from the HF
 *    folder and from a converted checkpoint. */
#include <cjson/cJSON.h>
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

#define FIX SX_SOURCE_DIR "/tests/fixtures/infer"
#define BIN SX_BINARY_DIR "/switchc"
/* beam scores: both sides sum the same fp32 log-probabilities in different orders over <= 10 tokens, from logits
 * that agree to ~1e-6 relative (test_hf_weights): 1e-4 relative is loose for that, tight for any other hypothesis */
#define SCORE_TOL 1e-4

/* runs cmd (stderr to a file), returns its exit status */
static int run(const char *cmd) {
    char full[4096];
    snprintf(full, sizeof full, "%s 2>/tmp/test_infer_%d.err", cmd, (int)getpid());
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* the JSON objects of a JSONL file; n set to their count */
static cJSON **read_jsonl(const char *path, int *n) {
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot open %s", path);
    cJSON **v = NULL;
    int k = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '\n') continue;
        v = realloc(v, sizeof *v * (size_t)(k + 1));
        v[k] = cJSON_Parse(line);
        cr_assert(v[k], "%s: line %d is not JSON: %s", path, k + 1, line);
        k++;
    }
    free(line);
    fclose(f);
    *n = k;
    return v;
}

static void free_jsonl(cJSON **v, int n) {
    for (int i = 0; i < n; i++) cJSON_Delete(v[i]);
    free(v);
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    cr_assert(cJSON_IsNumber(j), "no number \"%s\"", key);
    return j->valuedouble;
}

static bool same_ids(const cJSON *a, const cJSON *b) {
    if (!cJSON_IsArray(a) || !cJSON_IsArray(b) || cJSON_GetArraySize(a) != cJSON_GetArraySize(b)) return false;
    for (int i = 0; i < cJSON_GetArraySize(a); i++)
        if (cJSON_GetArrayItem(a, i)->valuedouble != cJSON_GetArrayItem(b, i)->valuedouble) return false;
    return true;
}

/* switchc's output for one setting against generate.jsonl; returns the rows compared */
static int check_setting(const char *setting, const char *flags, const char *input, int batch) {
    char out[256], cmd[2048];
    snprintf(out, sizeof out, "/tmp/test_infer_%d_%s.jsonl", (int)getpid(), setting);
    snprintf(cmd, sizeof cmd, "%s generate --model %s/model --input-file %s --output %s --batch-size %d %s", BIN, FIX,
             input, out, batch, flags);
    cr_assert(run(cmd) == 0, "%s failed", cmd);
    int n_ref, n_got, n_in;
    cJSON **ref = read_jsonl(FIX "/generate.jsonl", &n_ref), **got = read_jsonl(out, &n_got);
    cJSON **in = read_jsonl(FIX "/inputs.jsonl", &n_in);
    cr_assert(n_got == n_in, "%s: %d results for %d inputs", setting, n_got, n_in);
    int rows = 0, fail = 0;
    double worst = 0;
    for (int i = 0; i < n_got; i++) cr_assert(num(got[i], "index") == i, "%s: line %d is index %g", setting, i,
                                              num(got[i], "index"));
    for (int r = 0; r < n_ref; r++) {
        if (strcmp(str(ref[r], "setting"), setting) || !cJSON_GetObjectItem(ref[r], "index")) continue;
        int i = (int)num(ref[r], "index");
        const cJSON *g = got[i];
        bool ok = same_ids(cJSON_GetObjectItem(g, "output_ids"), cJSON_GetObjectItem(ref[r], "output_ids"));
        ok = ok && str(g, "output") && !strcmp(str(g, "output"), str(ref[r], "output"));
        if (strstr(input, ".jsonl")) ok = ok && cJSON_Compare(cJSON_GetObjectItem(g, "input"),
                                                               cJSON_GetObjectItem(in[i], "input"), true);
        double err = 0;
        if (strstr(setting, "beam")) {
            double a = num(g, "score"), b = num(ref[r], "score");
            err = fabs(a - b) / (1 + fabs(b));
            worst = fmax(worst, err);
        }
        if (!ok || !(err <= SCORE_TOL)) {
            char *a = cJSON_PrintUnformatted(g), *b = cJSON_PrintUnformatted(ref[r]);
            printf("FAIL %s input %d:\n  switchc %s\n  HF      %s\n", setting, i, a, b);
            free(a);
            free(b);
            fail++;
        }
        rows++;
    }
    printf("generate --input-file %s (%s, batch %d): %d inputs as HF, %d differ; worst score error %.2e\n",
           strrchr(input, '/') + 1, setting, batch, rows - fail, fail, worst);
    cr_expect(fail == 0, "%s: %d of %d inputs differ from HF (printed above)", setting, fail, rows);
    cr_assert(rows >= 10, "%s: only %d inputs in the fixture", setting, rows);
    free_jsonl(ref, n_ref);
    free_jsonl(got, n_got);
    free_jsonl(in, n_in);
    unlink(out);
    return rows;
}

Test(infer, generate_file_greedy) {
    check_setting("greedy", "--max-new-tokens 10", FIX "/inputs.jsonl", 5);
    check_setting("greedy", "--max-len 10", FIX "/inputs.txt", 3); /* the old flag, the plain-text file */
}

Test(infer, generate_file_beam) {
    check_setting("beam3", "--num-beams 3 --length-penalty 1.0 --max-new-tokens 10", FIX "/inputs.jsonl", 5);
    check_setting("beam4_lp05_es", "--num-beams 4 --length-penalty 0.5 --early-stopping true --max-new-tokens 8",
                  FIX "/inputs.jsonl", 4);
}

Test(infer, generate_file_errors) {
    char cmd[2048], bad[128], out[128];
    snprintf(bad, sizeof bad, "/tmp/test_infer_%d_bad.jsonl", (int)getpid());
    snprintf(out, sizeof out, "/tmp/test_infer_%d_bad_out.jsonl", (int)getpid());
    FILE *f = fopen(bad, "w");
    fprintf(f, "{\"input\": \"fine\"}\n{\"text\": \"no input key\"}\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s generate --model %s/model --input-file %s --output %s", BIN, FIX, bad, out);
    cr_expect(run(cmd) == 1, "%s: exit status 1 expected", cmd);
    char err[256];
    snprintf(err, sizeof err, "/tmp/test_infer_%d.err", (int)getpid());
    FILE *e = fopen(err, "r");
    char msg[1024] = "";
    size_t k = fread(msg, 1, sizeof msg - 1, e);
    msg[k] = 0;
    fclose(e);
    cr_expect(strstr(msg, ":2: no \"input\" key"), "the message does not name line 2's missing key:\n%s", msg);
    snprintf(cmd, sizeof cmd, "%s generate --model %s/model --input-file %s --output %s --do-sample "
             "--num-beams 2", BIN, FIX, bad, out);
    cr_expect(run(cmd) == 2, "--do-sample with beams: exit status 2 expected");
    snprintf(cmd, sizeof cmd, "%s generate --model %s/model --input-file %s --output %s --top-p 1.5", BIN, FIX,
             bad, out);
    cr_expect(run(cmd) == 2, "--top-p 1.5: exit status 2 expected");
    snprintf(cmd, sizeof cmd, "%s generate --model %s/model --input-file %s --output %s", BIN, FIX, bad, bad);
    cr_expect(run(cmd) == 1, "--output = --input-file: exit status 1 expected");
    unlink(bad);
    unlink(out);
}

/* ---- sampling ------------------------------------------------------------------------------------------------ */

/* The chi-square statistic's 1 - p quantile for dof degrees of freedom (Wilson-Hilferty; z the normal quantile). */
static double chi2_quantile(int dof, double z) {
    double k = dof, a = 2.0 / (9.0 * k);
    return k * pow(1 - a + z * sqrt(a), 3);
}

Test(infer, sampling_distribution) {
    model m;
    tu_load_hf(&m, FIX "/model", false);
    hid_t f = h5f_open(FIX "/sampling.h5", NULL);
    int nd;
    hsize_t dims[8];
    int32_t *ids = h5f_ints(f, "input_ids", &nd, dims);
    int64_t S = (int64_t)dims[0], V = m.cfg.vocab_size;
    float *hf_logits = h5f_floats(f, "logits", NULL);
    double *warp = h5f_read(f, "warpers", H5T_NATIVE_DOUBLE, sizeof(double), &nd, dims, NULL);
    int n_warp = (int)dims[0];
    float *hf_probs = h5f_floats(f, "probs", NULL);
    H5Fclose(f);

    ag_arena act;
    ag_ctx ctx;
    ag_ctx_init_eval(&ctx, &act, "act", 1 << 20);
    /* the first step's logits (the decoder start token) */
    model_decoder_cache *dc = model_decode_begin(&m, &ctx, ids, NULL, 1, S, 1);
    int32_t start = m.cfg.decoder_start_token_id;
    const float *lg = model_decode_step(&m, &ctx, dc, &start)->data;
    float *logits = malloc(sizeof(float) * (size_t)V);
    memcpy(logits, lg, sizeof(float) * (size_t)V);
    model_decode_end(dc);
    ag_ctx_reset(&ctx);
    double lerr = 0;
    for (int64_t v = 0; v < V; v++) lerr = fmax(lerr, fabs(logits[v] - hf_logits[v]));
    printf("sampling: first-step logits vs HF: max abs error %.2e\n", lerr);
    cr_assert(lerr < 1e-4, "first-step logits differ from HF by %g", lerr);

    enum { N = 20000, CHUNK = 2000 };
    float *work = malloc(sizeof(float) * (size_t)(2 * V));
    double *probs = malloc(sizeof(double) * (size_t)V);
    int64_t *count = malloc(sizeof(int64_t) * (size_t)V);
    int32_t *rep = malloc(sizeof(int32_t) * (size_t)(CHUNK * S)), out[CHUNK];
    int lens[CHUNK];
    int64_t rows[CHUNK];
    for (int64_t r = 0; r < CHUNK; r++) memcpy(rep + r * S, ids, sizeof(int32_t) * (size_t)S);
    for (int w = 0; w < n_warp; w++) {
        gen_config g = {1, 1, 1.0, GEN_EARLY_STOP_FALSE, true, warp[w * 3], (int)warp[w * 3 + 1], warp[w * 3 + 2],
                        (uint64_t)(1234 + w)};
        /* 1. the warped distribution, from HF's logits: equal to HF's (same float32 steps; the final softmax in
         *    double here, float32 in torch) */
        const float *ref = hf_probs + (int64_t)w * V;
        int64_t kept = gen_sample_probs(hf_logits, V, &g, work, probs), ref_kept = 0;
        double perr = 0;
        bool same_support = true;
        for (int64_t v = 0; v < V; v++) {
            perr = fmax(perr, fabs(probs[v] - ref[v]));
            same_support &= (probs[v] > 0) == (ref[v] > 0);
            ref_kept += ref[v] > 0;
        }
        /* 2. the sampler, from switchc's own logits: N draws of the first token, input index r for stream r */
        gen_sample_probs(logits, V, &g, work, probs);
        memset(count, 0, sizeof(int64_t) * (size_t)V);
        for (int64_t first = 0; first < N; first += CHUNK) {
            for (int64_t r = 0; r < CHUNK; r++) rows[r] = first + r;
            generate_ex(&m, &ctx, rep, NULL, CHUNK, S, &g, rows, out, lens, NULL);
            for (int64_t r = 0; r < CHUNK; r++) count[out[r]]++;
        }
        /* chi-square over the tokens with expected count >= 5, the rest pooled into one cell */
        double chi2 = 0, pooled_e = 0, pooled_o = 0;
        int cells = 0, outside = 0;
        for (int64_t v = 0; v < V; v++) {
            double e = probs[v] * N;
            if (probs[v] == 0) {
                outside += count[v] > 0;
                continue;
            }
            if (e >= 5) {
                chi2 += (count[v] - e) * (count[v] - e) / e;
                cells++;
            } else {
                pooled_e += e;
                pooled_o += (double)count[v];
            }
        }
        if (pooled_e > 0) {
            chi2 += (pooled_o - pooled_e) * (pooled_o - pooled_e) / pooled_e;
            cells++;
        }
        /* z = 3.719: the 1e-4 upper tail. The draws are a fixed function of the seed, so this either always passes
         * or always fails; a correct sampler fails it for one seed in 10^4. */
        double crit = cells > 1 ? chi2_quantile(cells - 1, 3.719) : 0;
        printf("sampling T=%g top_k=%d top_p=%g: %lld tokens kept (HF %lld), max |p - p_HF| %.1e; "
               "%d draws, chi2 %.1f over %d cells (1e-4 critical value %.1f), %d draws outside the support\n",
               g.temperature, g.top_k, g.top_p, (long long)kept, (long long)ref_kept, perr, N, chi2, cells, crit,
               outside);
        cr_expect(same_support && perr < 1e-6, "warper %d: distribution differs from HF's (%g, support %d)", w, perr,
                  (int)same_support);
        cr_expect(outside == 0, "warper %d: %d draws of removed tokens", w, outside);
        cr_expect(cells <= 1 || chi2 <= crit, "warper %d: chi2 %g > %g", w, chi2, crit);
    }
    free(work);
    free(probs);
    free(count);
    free(rep);
    free(logits);
    free(ids);
    free(hf_logits);
    free(warp);
    free(hf_probs);
    ag_ctx_free_eval(&ctx);
    model_free(&m);
}

Test(infer, sampling_same_seed_any_batch) {
    char cmd[2048], out[3][128];
    const char *flags[3] = {"--seed 11 --batch-size 1", "--seed 11 --batch-size 5", "--seed 12 --batch-size 5"};
    for (int k = 0; k < 3; k++) {
        snprintf(out[k], sizeof out[k], "/tmp/test_infer_%d_sample%d.jsonl", (int)getpid(), k);
        snprintf(cmd, sizeof cmd, "%s generate --model %s/model --input-file %s/inputs.jsonl --output %s "
                 "--do-sample --temperature 1.5 --top-k 0 --top-p 0.95 --max-new-tokens 10 %s", BIN, FIX, FIX, out[k],
                 flags[k]);
        cr_assert(run(cmd) == 0, "%s failed", cmd);
    }
    char *a = tu_slurp(out[0], NULL), *b = tu_slurp(out[1], NULL), *c = tu_slurp(out[2], NULL);
    cr_expect_str_eq(a, b, "seed 11: batch size 1 and 5 give different samples:\n%s\n%s", a, b);
    cr_expect(strcmp(b, c), "seeds 11 and 12 give the same samples");
    printf("sampling: seed 11 gives the same tokens with --batch-size 1 and 5 (%zu bytes of JSONL); seed 12 differs\n",
           strlen(a));
    free(a);
    free(b);
    free(c);
    for (int k = 0; k < 3; k++) unlink(out[k]);
}

/* ---- embed ----------------------------------------------------------------------------------------------------- */

/* Relative error of a tensor: max |a - b| over max |b| (one number per tensor; elements near zero make an
 * element-wise relative error meaningless). SwitchTransformersEncoderModel's states agree to ~1e-6 absolute on O(1)
 * values (the model parity tests' level); 1e-5 relative is the acceptance bound. */
#define EMBED_TOL 1e-5

typedef struct {
    double max_err, max_ref;
} rel_err;

static void rel_add(rel_err *r, double a, double b) {
    r->max_err = fmax(r->max_err, fabs(a - b));
    r->max_ref = fmax(r->max_ref, fabs(b));
}

static double rel(const rel_err *r) { return r->max_ref > 0 ? r->max_err / r->max_ref : r->max_err; }

static void embed_cmd(const char *out, const char *flags) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s embed --model %s/model --input-file %s/inputs.jsonl --output %s %s", BIN, FIX, FIX,
             out, flags);
    cr_assert(run(cmd) == 0, "%s failed", cmd);
}

/* embed --pool mean into HDF5 and .npy against HF's mean over the mask (pooled [N, D]). */
static void check_pooled(const char *out, const float *pooled, int64_t N, int64_t D) {
    embed_cmd(out, "--pool mean --batch-size 4");
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    float *p = h5f_floats(f, "pooled", NULL);
    H5Fclose(f);
    rel_err ep = {0};
    for (int64_t k = 0; k < N * D; k++) rel_add(&ep, p[k], pooled[k]);
    char npy[256];
    snprintf(npy, sizeof npy, "/tmp/test_infer_%d_embed.npy", (int)getpid());
    embed_cmd(npy, "--pool mean");
    char *raw = tu_slurp(npy, NULL);
    const char *want = "{'descr': '<f4', 'fortran_order': False, 'shape': (12, 16), }";
    int hl = (unsigned char)raw[8] | (unsigned char)raw[9] << 8;
    cr_assert(!memcmp(raw, "\x93NUMPY\x01\x00", 8) && !strncmp(raw + 10, want, strlen(want)), "npy header: %.80s",
              raw + 10);
    cr_assert((10 + hl) % 64 == 0, "npy header length %d", hl);
    rel_err en = {0};
    for (int64_t k = 0; k < N * D; k++) {
        float v;
        memcpy(&v, raw + 10 + hl + 4 * k, 4);
        rel_add(&en, v, pooled[k]);
    }
    printf("embed --pool mean: .h5 %.2e relative, .npy %.2e relative to HF's mean over the mask\n", rel(&ep),
           rel(&en));
    cr_expect(rel(&ep) <= EMBED_TOL && rel(&en) <= EMBED_TOL, "pooled %g, npy %g", rel(&ep), rel(&en));
    unlink(npy);
    free(raw);
    free(p);
}

/* embed from a switchc checkpoint of the same model (the tokenizer given with --spm): the same pooled vectors. */
static void check_from_checkpoint(const char *out, const float *pooled, int64_t n) {
    char ckpt[256], cmd[2048];
    snprintf(ckpt, sizeof ckpt, "/tmp/test_infer_%d_model.h5", (int)getpid());
    snprintf(cmd, sizeof cmd, "%s convert --from-hf %s/model --output %s > /dev/null", BIN, FIX, ckpt);
    cr_assert(run(cmd) == 0, "%s failed", cmd);
    snprintf(cmd, sizeof cmd, "%s embed --model %s --spm %s/model/spiece.model --input-file %s/inputs.jsonl "
             "--output %s --pool mean", BIN, ckpt, FIX, FIX, out);
    cr_assert(run(cmd) == 0, "%s failed", cmd);
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    float *pc = h5f_floats(f, "pooled", NULL);
    H5Fclose(f);
    rel_err ec = {0};
    for (int64_t k = 0; k < n; k++) rel_add(&ec, pc[k], pooled[k]);
    printf("embed from a checkpoint (switchc convert): pooled %.2e relative\n", rel(&ec));
    cr_expect(rel(&ec) <= EMBED_TOL);
    free(pc);
    unlink(ckpt);
}

Test(infer, embed_hidden_router_pooled) {
    hid_t ref = h5f_open(FIX "/embed.h5", NULL);
    int nd;
    hsize_t dims[8];
    int32_t *mask = h5f_ints(ref, "mask", &nd, dims), *ref_ids = h5f_ints(ref, "input_ids", NULL, NULL);
    int64_t N = (int64_t)dims[0], Sr = (int64_t)dims[1];
    float *hidden = h5f_read(ref, "hidden", H5T_NATIVE_FLOAT, sizeof(float), &nd, dims, NULL);
    int64_t D = (int64_t)dims[2];
    float *pooled = h5f_floats(ref, "pooled", NULL);
    float *router = h5f_read(ref, "router_logits/block_1", H5T_NATIVE_FLOAT, sizeof(float), &nd, dims, NULL);
    int64_t E = (int64_t)dims[2];
    H5Fclose(ref);

    char out[256];
    /* 1. padded, with the router logits, batches of 5 of mixed lengths */
    snprintf(out, sizeof out, "/tmp/test_infer_%d_embed.h5", (int)getpid());
    embed_cmd(out, "--router-logits --batch-size 5");
    hid_t f = h5f_open(out, NULL);
    float *h = h5f_read(f, "hidden", H5T_NATIVE_FLOAT, sizeof(float), &nd, dims, NULL);
    int64_t S = (int64_t)dims[1];
    cr_assert(nd == 3 && (int64_t)dims[0] == N && (int64_t)dims[2] == D && S <= Sr, "hidden shape");
    int32_t *mk = h5f_ints(f, "mask", NULL, NULL), *lens = h5f_ints(f, "lengths", NULL, NULL);
    int32_t *ids = h5f_ints(f, "input_ids", NULL, NULL);
    float *rl = h5f_read(f, "router_logits/block_1", H5T_NATIVE_FLOAT, sizeof(float), &nd, dims, NULL);
    cr_assert(nd == 3 && (int64_t)dims[2] == E, "router logits shape");
    H5Fclose(f);
    rel_err eh = {0}, er = {0};
    double pad_max = 0;
    int bad_mask = 0;
    for (int64_t i = 0; i < N; i++) {
        int64_t n = 0;
        while (n < Sr && mask[i * Sr + n]) n++;
        bad_mask += lens[i] != n;
        for (int64_t s = 0; s < S; s++) {
            bad_mask += mk[i * S + s] != (s < n) || (s < n && ids[i * S + s] != ref_ids[i * Sr + s]);
            for (int64_t d = 0; d < D; d++) {
                double a = h[(i * S + s) * D + d];
                if (s < n) rel_add(&eh, a, hidden[(i * Sr + s) * D + d]);
                else pad_max = fmax(pad_max, fabs(a));
            }
            for (int64_t e = 0; e < E && s < n; e++)
                rel_add(&er, rl[(i * S + s) * E + e], router[(i * Sr + s) * E + e]);
        }
    }
    printf("embed vs SwitchTransformersEncoderModel (%lld inputs, batches of 5): hidden %.2e relative (max abs %.2e), "
           "router logits %.2e relative; padding written as %g; %d mask/length/id mismatches\n",
           (long long)N, rel(&eh), eh.max_err, rel(&er), pad_max, bad_mask);
    cr_expect(rel(&eh) <= EMBED_TOL && rel(&er) <= EMBED_TOL, "hidden %g, router logits %g", rel(&eh), rel(&er));
    cr_expect(pad_max == 0 && bad_mask == 0);

    check_pooled(out, pooled, N, D);

    /* 3. one group per example */
    embed_cmd(out, "--layout per-example --router-logits");
    f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    rel_err ex = {0};
    for (int64_t i = 0; i < N; i++) {
        char name[96];
        snprintf(name, sizeof name, "example_%lld/hidden", (long long)i);
        float *x = h5f_read(f, name, H5T_NATIVE_FLOAT, sizeof(float), &nd, dims, NULL);
        cr_assert(nd == 2 && (int64_t)dims[0] == lens[i] && (int64_t)dims[1] == D, "%s shape", name);
        for (int64_t k = 0; k < lens[i] * D; k++) rel_add(&ex, x[k], hidden[i * Sr * D + k]);
        free(x);
        snprintf(name, sizeof name, "example_%lld/router_logits/block_1", (long long)i);
        cr_assert(h5f_exists(f, name), "no %s", name);
    }
    H5Fclose(f);
    printf("embed --layout per-example: hidden %.2e relative\n", rel(&ex));
    cr_expect(rel(&ex) <= EMBED_TOL);

    check_from_checkpoint(out, pooled, N * D);
    unlink(out);

    free(mask);
    free(ref_ids);
    free(hidden);
    free(pooled);
    free(router);
    free(h);
    free(mk);
    free(lens);
    free(ids);
    free(rl);
}
