/* Benchmark of the model on the CPU: forward+backward (or a whole AdamW training step) of a config at a given batch
 * shape with random weights and tokens, timed over several iterations after warm-up. Prints one JSON line, the same
 * fields as bench/hf_bench.py prints for Hugging Face, so scripts/bench_model.sh can put them side by side. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/metrics.h"
#include "train/model.h"
#include "train/optim.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *config = NULL, *mode = "fwdbwd";
    int B = 2, S = 128, T = 32, steps = 5, warmup = 1, threads = 0;
    bool train = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc) mode = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--src-len") && i + 1 < argc) S = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tgt-len") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--train")) train = true;
        else {
            fprintf(stderr, "usage: bench_model --config CONFIG.json [--mode fwdbwd|trainstep] [--batch B] [--src-len S] [--tgt-len T]\n"
                            "                   [--steps N] [--warmup N] [--threads N] [--train]\n");
            return 2;
        }
    }
    if (!config || B <= 0 || S <= 0 || T <= 0 || steps <= 0) {
        fprintf(stderr, "bench_model: --config is required and sizes must be positive\n");
        return 2;
    }
    if (threads > 0) openblas_set_num_threads(threads);
    model_config c;
    sx_status s = model_config_load(config, &c);
    if (!s.ok) {
        fprintf(stderr, "bench_model: %s\n", s.msg);
        return 1;
    }
    model m;
    if (!(s = model_init(&m, &c)).ok) {
        fprintf(stderr, "bench_model: %s\n", s.msg);
        return 1;
    }
    model_init_weights(&m, 1);
    bool trainstep = !strcmp(mode, "trainstep");
    optim *opt = NULL;
    optim_param *op = calloc((size_t)m.n_params, sizeof *op);
    for (int i = 0; i < m.n_params; i++) {
        op[i].name = m.params[i].name;
        op[i].offset = m.params[i].offset;
        op[i].ndim = m.params[i].ndim;
        memcpy(op[i].shape, m.params[i].shape, sizeof op[i].shape);
        op[i].decay = m.params[i].decay;
    }
    if (trainstep) {
        optim_config oc = {.kind = OPTIM_ADAMW, .lr = 1e-4, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
        if (!(s = optim_init(&opt, &oc, op, m.n_params)).ok) {
            fprintf(stderr, "bench_model: %s\n", s.msg);
            return 1;
        }
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * S)), *mask = malloc(sizeof(int32_t) * (size_t)(B * S));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)(B * T));
    ag_rng_key k = ag_rng_make(5, 0, 0);
    for (int i = 0; i < B * S; i++) {
        ids[i] = 2 + (int32_t)(ag_rng_uniform(k, (uint64_t)i) * (float)(c.vocab_size - 2));
        mask[i] = 1;
    }
    for (int i = 0; i < B * T; i++) labels[i] = 2 + (int32_t)(ag_rng_uniform(k, (uint64_t)(1000000 + i)) * (float)(c.vocab_size - 2));
    ag_arena act;
    ag_arena_init(&act, "activations", 1 << 24);
    ag_ctx ctx;
    ag_ctx_init(&ctx, &act);
    ctx.training = train;
    double t0 = 0;
    for (int it = 0; it < warmup + steps; it++) {
        if (it == warmup) t0 = now_s();
        memset(m.g, 0, sizeof(float) * (size_t)m.n_floats);
        model_batch b = {B, S, T, ids, mask, labels, NULL};
        model_output o;
        model_forward(&m, &ctx, &b, (model_rng){1, (uint64_t)it, false}, &o);
        ag_backward(&ctx, o.loss);
        if (trainstep) optim_step(opt, m.w, m.g, 1e-4, it + 1);
        ag_ctx_reset(&ctx);
    }
    double sec = (now_s() - t0) / steps;
    printf("{\"impl\": \"switchc\", \"mode\": \"%s\", \"batch\": %d, \"src_len\": %d, \"tgt_len\": %d, \"threads\": %d, \"sec_per_step\": %.6f, "
           "\"tokens_per_s\": %.1f, \"peak_rss_mb\": %.1f, \"params\": %lld, \"activation_arena_mb\": %.1f}\n",
           mode, B, S, T, threads, sec, (double)B * (S + T) / sec, train_peak_rss_mb(), (long long)model_param_count(&m), act.peak / 1048576.0);
    optim_free(opt);
    free(op);
    free(ids);
    free(mask);
    free(labels);
    ag_ctx_free(&ctx);
    ag_arena_free(&act);
    model_free(&m);
    return 0;
}
