/* Benchmark of the model: forward+backward (or a whole AdamW training step) of a config at a given batch shape with
 * random weights and tokens, timed over several iterations after warm-up. Prints one JSON line, the same fields as
 * bench/hf_bench.py prints for Hugging Face, so scripts/bench_model.sh can put them side by side.
 * --mode trainstep is the trainer's own step (train/step.h: the forward, backward, norm, non-finite check and AdamW
 * of a real run, lr 1e-4, weight decay 0.01, no clipping, as bench/hf_bench.py's torch loop) on either device.
 * --device cuda runs in a CUDA context (model_to_device; --dtype bf16 sets mixed_bf16: bf16 matmul operands, fp32
 * accumulation), synchronising before each clock read; the line then carries "device": "cuda", "dtype" and
 * peak_mem_mb (the device arenas' cudaMalloc'ed blocks: parameters, gradients, optimizer state, activations;
 * cuBLAS's own workspace is not counted), and the host's RSS as host_rss_mb; the step's optimizer then runs on the
 * device ("optimizer": "device", train/optim.h's CUDA implementation).
 * --lora R adds rank-R LoRA adapters (train/lora.h; --lora-alpha, --lora-dropout, --lora-targets: the run config's
 * lora section, defaults those of configs/runs/lora-experts.json) and freezes the base, as a LoRA run does; the line
 * then carries lora_r and trainable_params (the floats with a gradient and optimizer state). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/ag_cuda.h"
#include "train/lora.h"
#include "train/metrics.h"
#include "train/model/model.h"
#include "train/step.h"

typedef struct {
    const char *config, *mode;
    int B, S, T, steps, warmup, threads;
    bool train, cuda, bf16, trainstep;
    lora_spec lora; /* --lora R: r > 0 */
} bench_opts;

/* The one fixed batch of the benchmark, as the step's batch callback. */
typedef struct {
    int32_t *ids, *mask, *labels;
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

/* A whole-string number for a --lora* flag; false (after one line naming the flag) when it is not one. */
static bool parse_number(const char *flag, const char *text, double *out) {
    char *end;
    *out = strtod(text, &end);
    if (end == text || *end || *out != *out) {
        fprintf(stderr, "bench_model: %s: '%s' is not a number\n", flag, text);
        return false;
    }
    return true;
}

/* --lora R, --lora-alpha A, --lora-dropout P, --lora-targets PATTERNS at argv[*i] (advanced past its value).
 * Returns 1 when taken, 0 when argv[*i] is no --lora flag, -1 after a bad value. */
static int parse_lora_flag(int argc, char **argv, int *i, lora_spec *l) {
    const char *f = argv[*i];
    bool r = !strcmp(f, "--lora"), alpha = !strcmp(f, "--lora-alpha"), drop = !strcmp(f, "--lora-dropout");
    bool targets = !strcmp(f, "--lora-targets");
    if (!(r || alpha || drop || targets) || *i + 1 >= argc) return 0;
    const char *v = argv[++*i];
    double x = 0;
    if (targets) {
        if (strlen(v) >= sizeof l->targets) return fprintf(stderr, "bench_model: --lora-targets: too long\n"), -1;
        snprintf(l->targets, sizeof l->targets, "%s", v);
        return 1;
    }
    if (!parse_number(f, v, &x)) return -1;
    if (r && (x < 1 || x > 1 << 16 || x != (int)x))
        return fprintf(stderr, "bench_model: --lora: the rank must be an integer in 1..65536\n"), -1;
    if (alpha && !(x > 0 && x <= 1e9)) return fprintf(stderr, "bench_model: --lora-alpha: must be > 0\n"), -1;
    if (drop && !(x >= 0 && x < 1)) return fprintf(stderr, "bench_model: --lora-dropout: must be in [0, 1)\n"), -1;
    if (r) l->r = (int)x;
    else if (alpha) l->alpha = x;
    else l->dropout = x;
    return 1;
}

/* Returns -1 to go on, else the exit code (0 after --help, 2 for bad usage). */
static int parse_args(int argc, char **argv, bench_opts *o) {
    const char *device = "cpu", *dtype = "fp32";
    *o = (bench_opts){.mode = "fwdbwd", .B = 2, .S = 128, .T = 32, .steps = 5, .warmup = 1,
                      .lora = {.alpha = 16, .dropout = 0.05, .targets = "*.experts.*.wi,*.experts.*.wo"}};
    for (int i = 1; i < argc; i++) {
        int lf = parse_lora_flag(argc, argv, &i, &o->lora);
        if (lf < 0) return 2;
        if (lf) continue;
        if (!strcmp(argv[i], "--config") && i + 1 < argc) o->config = argv[++i];
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc) o->mode = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) o->B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--src-len") && i + 1 < argc) o->S = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tgt-len") && i + 1 < argc) o->T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) o->steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) o->warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) o->threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--train")) o->train = true;
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) dtype = argv[++i];
        else {
            bool help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
            fprintf(help ? stdout : stderr,
                    "usage: bench_model --config CONFIG.json [--mode fwdbwd|trainstep] [--batch B] [--src-len S] [--tgt-len T]\n"
                    "                   [--steps N] [--warmup N] [--threads N] [--train] [--device cpu|cuda] [--dtype fp32|bf16]\n"
                    "                   [--lora R [--lora-alpha A] [--lora-dropout P] [--lora-targets PATTERNS]]\n"
                    "  --mode trainstep: the trainer's step (forward, backward, norm, AdamW) on the chosen device;\n"
                    "  --train: training mode (dropout) for --mode fwdbwd (the step always trains);\n"
                    "  --dtype bf16: bf16 matmul operands with fp32 accumulation (CUDA only);\n"
                    "  --lora R: rank-R LoRA adapters on the targets (default *.experts.*.wi,*.experts.*.wo, alpha 16,\n"
                    "            dropout 0.05: configs/runs/lora-experts.json), the base frozen\n");
            return help ? 0 : 2;
        }
    }
    o->cuda = !strcmp(device, "cuda");
    o->bf16 = !strcmp(dtype, "bf16");
    o->trainstep = !strcmp(o->mode, "trainstep");
    if ((!o->cuda && strcmp(device, "cpu")) || (!o->bf16 && strcmp(dtype, "fp32")) || (!o->trainstep && strcmp(o->mode, "fwdbwd"))) {
        fprintf(stderr, "bench_model: --device must be cpu or cuda, --dtype fp32 or bf16, --mode fwdbwd or trainstep\n");
        return 2;
    }
    if (o->bf16 && !o->cuda) {
        fprintf(stderr, "bench_model: --dtype bf16 needs --device cuda (the CPU computes in fp32)\n");
        return 2;
    }
    if (!o->config || o->B <= 0 || o->S <= 0 || o->T <= 0 || o->steps <= 0) {
        fprintf(stderr, "bench_model: --config is required and sizes must be positive\n");
        return 2;
    }
    if (!o->lora.r) o->lora = (lora_spec){0}; /* the --lora-* flags alone add nothing */
    return -1;
}

/* Random tokens (every position real) and labels, from a fixed key. */
static fixed_batch make_batch(const bench_opts *o, int vocab) {
    fixed_batch f = {malloc(sizeof(int32_t) * (size_t)(o->B * o->S)), malloc(sizeof(int32_t) * (size_t)(o->B * o->S)),
                     malloc(sizeof(int32_t) * (size_t)(o->B * o->T)), o->S, o->T};
    ag_rng_key k = ag_rng_make(5, 0, 0);
    for (int i = 0; i < o->B * o->S; i++) {
        f.ids[i] = 2 + (int32_t)(ag_rng_uniform(k, (uint64_t)i) * (float)(vocab - 2));
        f.mask[i] = 1;
    }
    for (int i = 0; i < o->B * o->T; i++) f.labels[i] = 2 + (int32_t)(ag_rng_uniform(k, (uint64_t)(1000000 + i)) * (float)(vocab - 2));
    return f;
}

/* The trainer's step over the model, as bench/hf_bench.py's torch loop: AdamW, lr 1e-4, weight decay 0.01, no
 * clipping. rc and local must outlive the step. */
static sx_status open_step(train_step **ts, model *m, const bench_opts *o, run_config *rc, par_ctx *local) {
    run_config_defaults(rc);
    rc->model = m->cfg;
    rc->batch_size = o->B;
    rc->lr = 1e-4;
    rc->weight_decay = 0.01;
    rc->grad_clip = 0;
    par_init_local(local);
    SX_TRY(train_step_init(ts, m, rc, local, o->S > o->T ? o->S : o->T));
    train_step_ctx(*ts)->mixed_bf16 = o->bf16;
    return sx_ok();
}

/* Forward and backward alone, in ctx (--mode fwdbwd). */
static void fwd_bwd(model *m, ag_ctx *ctx, const bench_opts *o, fixed_batch *fb, int it) {
    model_zero_grads(m);
    model_batch b = {o->B, o->S, o->T, fb->ids, fb->mask, fb->labels, NULL};
    model_output out;
    model_forward(m, ctx, &b, (model_rng){1, (uint64_t)it, false}, &out);
    ag_backward(ctx, out.loss);
    ag_ctx_reset(ctx);
}

/* warmup + steps iterations; returns the seconds per timed iteration. */
static sx_status run_iterations(model *m, train_step *ts, ag_ctx *ctx, const bench_opts *o, fixed_batch *fb, double *sec) {
    double t0 = 0;
    for (int it = 0; it < o->warmup + o->steps; it++) {
        if (it == o->warmup) {
            if (o->cuda) ag_cuda_synchronize("bench_model warm-up");
            t0 = now_s();
        }
        if (ts) {
            train_step_stats st;
            SX_TRY(train_step_run(ts, fixed_get, fb, it, 1e-4, false, NULL, NULL, &st));
        } else {
            fwd_bwd(m, ctx, o, fb, it);
        }
    }
    if (o->cuda) ag_cuda_synchronize("bench_model steps");
    *sec = (now_s() - t0) / o->steps;
    return sx_ok();
}

static void print_result(const bench_opts *o, const model *m, const train_step *ts, const ag_arena *act, double sec) {
    char lora[96] = "";
    if (o->lora.r) snprintf(lora, sizeof lora, ", \"lora_r\": %d, \"trainable_params\": %lld", o->lora.r, (long long)m->n_grad_floats);
    double act_peak = (ts ? (double)train_step_activation_peak(ts) : (double)act->peak) / 1048576.0;
    double tps = (double)o->B * (o->S + o->T) / sec;
    if (o->cuda) {
        double dev_bytes = (double)m->dev_arena.capacity + (ts ? (double)train_step_device_bytes(ts) : (double)act->capacity);
        printf("{\"impl\": \"switchc\", \"device\": \"cuda\", \"dtype\": \"%s\", \"mode\": \"%s\", \"optimizer\": \"%s\", \"batch\": %d, "
               "\"src_len\": %d, \"tgt_len\": %d, \"threads\": %d, \"sec_per_step\": %.6f, \"tokens_per_s\": %.1f, \"peak_mem_mb\": %.1f, "
               "\"host_rss_mb\": %.1f, \"params\": %lld, \"activation_arena_mb\": %.1f%s}\n",
               o->bf16 ? "bf16" : "fp32", o->mode, ts ? "device" : "none", o->B, o->S, o->T, o->threads, sec, tps, dev_bytes / 1048576.0,
               train_peak_rss_mb(), (long long)model_param_count(m), act_peak, lora);
    } else {
        printf("{\"impl\": \"switchc\", \"mode\": \"%s\", \"batch\": %d, \"src_len\": %d, \"tgt_len\": %d, \"threads\": %d, \"sec_per_step\": %.6f, "
               "\"tokens_per_s\": %.1f, \"peak_rss_mb\": %.1f, \"params\": %lld, \"activation_arena_mb\": %.1f%s}\n",
               o->mode, o->B, o->S, o->T, o->threads, sec, tps, train_peak_rss_mb(), (long long)model_param_count(m), act_peak, lora);
    }
}

static int fail(sx_status s) {
    fprintf(stderr, "bench_model: %s\n", s.msg);
    return 1;
}

int main(int argc, char **argv) {
    bench_opts o;
    int rc_exit = parse_args(argc, argv, &o);
    if (rc_exit >= 0) return rc_exit;
    if (o.cuda && ag_cuda_device_count() == 0) {
        fprintf(stderr, "bench_model: --device cuda: no CUDA device (%s)\n", ag_cuda_describe());
        return 1;
    }
    if (o.threads > 0) openblas_set_num_threads(o.threads);
    model_config c;
    model m;
    sx_status s = model_config_load(o.config, &c);
    if (s.ok) {
        c.lora = o.lora; /* as a run config's lora section */
        s = lora_spec_check(&c.lora);
    }
    if (!s.ok || !(s = model_init(&m, &c)).ok) return fail(s);
    model_init_weights(&m, 1);
    if (o.cuda) model_to_device(&m, AG_DEV_CUDA);
    run_config rc;
    par_ctx local;
    train_step *ts = NULL;
    if (o.trainstep && !(s = open_step(&ts, &m, &o, &rc, &local)).ok) return fail(s);
    fixed_batch fb = make_batch(&o, c.vocab_size);
    ag_arena act; /* --mode fwdbwd's activations (the step has its own) */
    ag_arena_init_device(&act, "activations", ts ? 0 : 1 << 24, o.cuda ? AG_DEV_CUDA : AG_DEV_CPU);
    ag_ctx ctx;
    ag_ctx_init(&ctx, &act);
    ctx.training = o.train;
    ctx.mixed_bf16 = o.bf16;
    double sec = 0;
    if (!(s = run_iterations(&m, ts, &ctx, &o, &fb, &sec)).ok) return fail(s);
    print_result(&o, &m, ts, &act, sec);
    train_step_free(ts);
    free(fb.ids);
    free(fb.mask);
    free(fb.labels);
    ag_ctx_free(&ctx);
    ag_arena_free(&act);
    model_free(&m);
    return 0;
}
