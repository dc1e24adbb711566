/* Benchmark of generation and of the 8-bit weights: greedy decoding of a batch (input ids from a file, exactly
 * --new-tokens per row: EOS never stops a row), fp32 or --int8, timed after a short warm-up; one JSON line with
 * tokens/s and the weight memory (model_weight_bytes, and the process's resident set before and after quantizing).
 * --agreement instead compares the fp32 and int8 next-token choices of the same model on a teacher-forced batch.
 * scripts/bench_generate.py runs it beside bench/hf_generate_bench.py (transformers) and writes docs/benchmarks.md. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/model/generate.h"
#include "train/hf/hf_model.h"
#include "train/hf/hf_weights.h"
#include "train/model/model_int8.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double v = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) v = atof(line + 6) / 1024.0;
    if (f) fclose(f);
    return v;
}

/* rows of space-separated ids, all of one length */
static int32_t *read_ids(const char *path, int64_t *B, int64_t *S) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    int32_t *ids = NULL;
    int64_t n = 0, rows = 0, cap = 0;
    char line[65536];
    while (fgets(line, sizeof line, f)) {
        char *p = line, *end;
        int64_t before = n;
        for (long v = strtol(p, &end, 10); end != p; v = strtol(p = end, &end, 10)) {
            if (n == cap) ids = realloc(ids, sizeof(int32_t) * (size_t)(cap = cap ? 2 * cap : 1024));
            ids[n++] = (int32_t)v;
        }
        if (n > before) rows++;
    }
    fclose(f);
    *B = rows;
    *S = rows ? n / rows : 0;
    return ids;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *ids_path = NULL;
    int T = 32, threads = 0;
    bool int8 = false, agreement = false;
    double threshold = 6.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--ids") && i + 1 < argc) ids_path = argv[++i];
        else if (!strcmp(argv[i], "--new-tokens") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--int8")) int8 = true;
        else if (!strcmp(argv[i], "--int8-threshold") && i + 1 < argc) threshold = atof(argv[++i]);
        else if (!strcmp(argv[i], "--agreement")) agreement = true;
        else {
            fprintf(stderr, "usage: bench_generate --model HF_DIR --ids IDS.txt [--new-tokens T] [--threads N]\n"
                            "                      [--int8] [--int8-threshold T] [--agreement]\n");
            return 2;
        }
    }
    int64_t B, S;
    int32_t *ids = ids_path ? read_ids(ids_path, &B, &S) : NULL;
    if (!dir || !ids || B <= 0 || S <= 0) {
        fprintf(stderr, "bench_generate: --model and a non-empty --ids file are required\n");
        return 2;
    }
    if (threads > 0) openblas_set_num_threads(threads);
    double rss0 = rss_mb(), t0 = now_s();
    model_config cfg;
    sx_status s = hf_read_config(dir, &cfg);
    model m;
    if (s.ok) s = model_init_inference(&m, &cfg);
    if (s.ok) s = hf_load_weights(&m, dir);
    if (!s.ok) {
        fprintf(stderr, "bench_generate: %s\n", s.msg);
        return 1;
    }
    double load_s = now_s() - t0, rss_f32 = rss_mb();
    size_t bytes_f32 = model_weight_bytes(&m);
    ag_arena act;
    ag_ctx ctx;
    ag_ctx_init_eval(&ctx, &act, "bench", 1 << 20);
    if (agreement) { /* teacher-forced next tokens of fp32, then of int8, on the same random batch */
        int32_t *dec = malloc(sizeof(int32_t) * (size_t)(B * T));
        uint64_t x = 88172645463325252ull;
        for (int64_t k = 0; k < B * T; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            dec[k] = k % T ? (int32_t)(2 + x % (uint64_t)(cfg.vocab_size - 2)) : cfg.decoder_start_token_id;
        }
        model_batch b = {B, S, T, ids, NULL, NULL, dec};
        int32_t *choice[2];
        for (int q = 0; q < 2; q++) {
            if (q) s = model_quantize_int8(&m, threshold);
            model_output o;
            model_forward(&m, &ctx, &b, (model_rng){0, 0, 0}, &o);
            choice[q] = malloc(sizeof(int32_t) * (size_t)(B * T));
            const float *lg = o.logits->data;
            for (int64_t r = 0; r < B * T; r++) {
                int32_t best = 0;
                for (int64_t v = 1; v < cfg.vocab_size; v++)
                    if (lg[r * cfg.vocab_size + v] > lg[r * cfg.vocab_size + best]) best = (int32_t)v;
                choice[q][r] = best;
            }
            ag_ctx_reset(&ctx);
        }
        int64_t same = 0;
        for (int64_t r = 0; r < B * T; r++) same += choice[0][r] == choice[1][r];
        printf("{\"mode\": \"agreement\", \"positions\": %lld, \"same_next_token\": %lld, \"agreement\": %.4f, "
               "\"threshold\": %g}\n", (long long)(B * T), (long long)same, (double)same / (double)(B * T), threshold);
        return 0;
    }
    double quant_s = 0;
    if (int8) {
        double tq = now_s();
        s = model_quantize_int8(&m, threshold);
        if (!s.ok) {
            fprintf(stderr, "bench_generate: %s\n", s.msg);
            return 1;
        }
        quant_s = now_s() - tq;
    }
    double rss_q = rss_mb();
    m.cfg.eos_token_id = -1; /* every row runs to --new-tokens, as min_new_tokens on the HF side */
    gen_config g = {T, 1, 1.0, GEN_EARLY_STOP_FALSE};
    int32_t *out = malloc(sizeof(int32_t) * (size_t)(B * T));
    int *lens = malloc(sizeof(int) * (size_t)B);
    gen_config warm = {2, 1, 1.0, GEN_EARLY_STOP_FALSE};
    generate(&m, &ctx, ids, NULL, B, S, &warm, out, lens);
    double tg = now_s();
    generate(&m, &ctx, ids, NULL, B, S, &g, out, lens);
    double sec = now_s() - tg;
    int64_t tokens = 0;
    for (int64_t b = 0; b < B; b++) tokens += lens[b];
    printf("{\"impl\": \"switchc\", \"int8\": %s, \"batch\": %lld, \"src_len\": %lld, \"new_tokens\": %d, "
           "\"threads\": %d, \"sec\": %.4f, \"tokens\": %lld, \"tokens_per_s\": %.2f, \"load_s\": %.2f, "
           "\"quantize_s\": %.2f, \"weight_bytes_fp32\": %zu, \"weight_bytes\": %zu, \"rss_start_mb\": %.1f, "
           "\"rss_fp32_mb\": %.1f, \"rss_weights_mb\": %.1f, \"first_row\": [%d, %d, %d]}\n",
           int8 ? "true" : "false", (long long)B, (long long)S, T, openblas_get_num_threads(), sec, (long long)tokens,
           (double)tokens / sec, load_s, quant_s, bytes_f32, model_weight_bytes(&m), rss0, rss_f32, rss_q, out[0],
           out[1], out[2]);
    free(out);
    free(lens);
    free(ids);
    ag_ctx_free_eval(&ctx);
    model_free(&m);
    return 0;
}
