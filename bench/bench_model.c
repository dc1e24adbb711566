/* Benchmark of the model: forward+backward (or a whole AdamW training step) of a config at a given batch shape with
 * random weights and tokens, timed over several iterations after warm-up. Prints one JSON line, the same fields as
 * bench/hf_bench.py prints for Hugging Face, so scripts/bench_model.sh can put them side by side.
 * --device cuda runs forward and backward in a CUDA context (model_to_device; --dtype bf16 sets ctx->mixed_bf16:
 * bf16 matmul operands, fp32 accumulation), synchronising before each clock read; the line then carries
 * "device": "cuda", "dtype" and peak_mem_mb (the peak of the device arenas' cudaMalloc'ed blocks: parameters,
 * gradients, AdamW state, activations; cuBLAS's own workspace is not counted), and the host's RSS as host_rss_mb.
 * The AdamW step of --mode trainstep runs on the device too (ag_cuda_adamw_step per parameter, train/optim.c's
 * arithmetic: "optimizer": "device"). On the CPU, --mode trainstep is the trainer's own step (train/step.h: the
 * forward, backward, norm, non-finite check and AdamW of a real run, lr 1e-4, weight decay 0.01, no clipping, as
 * bench/hf_bench.py's torch loop). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/ag_cuda.h"
#include "train/metrics.h"
#include "train/model.h"
#include "train/optim.h"
#include "train/step.h"

/* The one fixed batch of the benchmark, as the step's batch callback. */
typedef struct {
    const int32_t *ids, *mask, *labels;
    int S, T;
} fixed_batch;

static sx_status fixed_get(void *user, uint64_t first, int B, int32_t *ids, int32_t *mask, int32_t *labels, int64_t *S, int64_t *T) {
    (void)first;
    const fixed_batch *f = user;
    memcpy(ids, f->ids, sizeof(int32_t) * (size_t)(B * f->S));
    memcpy(mask, f->mask, sizeof(int32_t) * (size_t)(B * f->S));
    memcpy(labels, f->labels, sizeof(int32_t) * (size_t)(B * f->T));
    *S = f->S;
    *T = f->T;
    return sx_ok();
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *config = NULL, *mode = "fwdbwd", *device = "cpu", *dtype = "fp32";
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
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) dtype = argv[++i];
        else {
            bool help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
            fprintf(help ? stdout : stderr,
                    "usage: bench_model --config CONFIG.json [--mode fwdbwd|trainstep] [--batch B] [--src-len S] [--tgt-len T]\n"
                    "                   [--steps N] [--warmup N] [--threads N] [--train] [--device cpu|cuda] [--dtype fp32|bf16]\n"
                    "  --device cuda: forward, backward and the AdamW step on the CUDA device;\n"
                    "  --dtype bf16: bf16 matmul operands with fp32 accumulation (CUDA only)\n");
            return help ? 0 : 2;
        }
    }
    const bool cuda = !strcmp(device, "cuda"), bf16 = !strcmp(dtype, "bf16");
    if ((!cuda && strcmp(device, "cpu")) || (!bf16 && strcmp(dtype, "fp32"))) {
        fprintf(stderr, "bench_model: --device must be cpu or cuda and --dtype fp32 or bf16\n");
        return 2;
    }
    if (bf16 && !cuda) {
        fprintf(stderr, "bench_model: --dtype bf16 needs --device cuda (the CPU computes in fp32)\n");
        return 2;
    }
    if (cuda && ag_cuda_device_count() == 0) {
        fprintf(stderr, "bench_model: --device cuda: no CUDA device (%s)\n", ag_cuda_describe());
        return 1;
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
    ag_arena opt_state; /* --device cuda, trainstep: AdamW's exp_avg and exp_avg_sq on the device */
    memset(&opt_state, 0, sizeof opt_state);
    float *dm = NULL, *dv = NULL;
    if (cuda) model_to_device(&m, AG_DEV_CUDA);
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
    if (trainstep && cuda) {
        size_t bytes = sizeof(float) * (size_t)m.n_floats;
        ag_arena_init_device(&opt_state, "adamw-state", 2 * bytes + 256, AG_DEV_CUDA);
        dm = ag_arena_calloc(&opt_state, bytes);
        dv = ag_arena_calloc(&opt_state, bytes);
    }
    run_config rc;
    par_ctx local;
    train_step *ts = NULL;
    if (trainstep && !cuda) {
        run_config_defaults(&rc);
        rc.model = c;
        rc.batch_size = B;
        rc.lr = 1e-4;
        rc.weight_decay = 0.01;
        rc.grad_clip = 0;
        par_init_local(&local);
        if (!(s = train_step_init(&ts, &m, &rc, &local, S > T ? S : T)).ok) {
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
    if (cuda)
        ag_arena_init_device(&act, "activations", 1 << 24, AG_DEV_CUDA);
    else
        ag_arena_init(&act, "activations", 1 << 24);
    ag_ctx ctx;
    ag_ctx_init(&ctx, &act);
    ctx.training = train;
    ctx.mixed_bf16 = bf16;
    double t0 = 0;
    for (int it = 0; it < warmup + steps; it++) {
        if (it == warmup) {
            if (cuda) ag_cuda_synchronize("bench_model warm-up");
            t0 = now_s();
        }
        if (ts) { /* the trainer's step */
            fixed_batch fb = {ids, mask, labels, S, T};
            train_step_stats st;
            s = train_step_run(ts, fixed_get, &fb, it, 1e-4, false, NULL, NULL, &st);
            if (!s.ok) {
                fprintf(stderr, "bench_model: %s\n", s.msg);
                return 1;
            }
            continue;
        }
        model_zero_grads(&m);
        model_batch b = {B, S, T, ids, mask, labels, NULL};
        model_output o;
        model_forward(&m, &ctx, &b, (model_rng){1, (uint64_t)it, false}, &o);
        ag_backward(&ctx, o.loss);
        if (trainstep && cuda) {
            for (int i = 0; i < m.n_params; i++) {
                int64_t o = m.params[i].offset;
                ag_cuda_adamw_step(m.dw + o, m.dg + o, dm + o, dv + o, m.params[i].numel, 1e-4, 0.9, 0.999, 1e-8, 0.01, m.params[i].decay, it + 1);
            }
        }
        ag_ctx_reset(&ctx);
    }
    if (cuda) ag_cuda_synchronize("bench_model steps");
    double sec = (now_s() - t0) / steps;
    if (cuda)
        printf("{\"impl\": \"switchc\", \"device\": \"cuda\", \"dtype\": \"%s\", \"mode\": \"%s\", \"optimizer\": \"%s\", \"batch\": %d, "
               "\"src_len\": %d, \"tgt_len\": %d, \"threads\": %d, \"sec_per_step\": %.6f, \"tokens_per_s\": %.1f, \"peak_mem_mb\": %.1f, "
               "\"host_rss_mb\": %.1f, \"params\": %lld, \"activation_arena_mb\": %.1f}\n",
               dtype, mode, trainstep ? "device" : "none", B, S, T, threads, sec, (double)B * (S + T) / sec,
               (double)(m.dev_arena.capacity + act.capacity + opt_state.capacity) / 1048576.0, train_peak_rss_mb(), (long long)model_param_count(&m), act.peak / 1048576.0);
    else
        printf("{\"impl\": \"switchc\", \"mode\": \"%s\", \"batch\": %d, \"src_len\": %d, \"tgt_len\": %d, \"threads\": %d, \"sec_per_step\": %.6f, "
               "\"tokens_per_s\": %.1f, \"peak_rss_mb\": %.1f, \"params\": %lld, \"activation_arena_mb\": %.1f}\n",
               mode, B, S, T, threads, sec, (double)B * (S + T) / sec, train_peak_rss_mb(), (long long)model_param_count(&m), (ts ? (double)train_step_activation_peak(ts) : (double)act.peak) / 1048576.0);
    optim_free(opt);
    train_step_free(ts);
    if (opt_state.capacity) ag_arena_free(&opt_state);
    free(op);
    free(ids);
    free(mask);
    free(labels);
    ag_ctx_free(&ctx);
    ag_arena_free(&act);
    model_free(&m);
    return 0;
}
