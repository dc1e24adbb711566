/* The optimizer step alone, on the CPU: every parameter of a model config (the trainer's descriptors, each expert its
 * own unit) updated --steps times with random gradients, through the trainer's optimizer (train_step_optim: the one
 * the training step calls), timed after --warmup steps. Prints one JSON line with s/step and the bytes an AdamW step
 * must move (read w, g, m, v and write w, m, v: 28 bytes per parameter) as GB/s, to set against the memory-copy rate
 * of bench_rates measured in the same run (scripts/bench_model.py).
 *   bench_optim --config MODEL.json [--optimizer adamw|adafactor] [--steps N] [--warmup N] [--threads N] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/model/model.h"
#include "train/optim.h"
#include "train/run_config.h"
#include "train/step.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(const char *what, sx_status s) {
    fprintf(stderr, "bench_optim: %s%s%s\n", what, s.ok ? "" : ": ", s.ok ? "" : s.msg);
    return 1;
}

int main(int argc, char **argv) {
    const char *config = NULL, *kind = "adamw";
    int steps = 10, warmup = 2, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "--optimizer") && i + 1 < argc) kind = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else {
            bool help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
            fprintf(help ? stdout : stderr, "usage: bench_optim --config MODEL.json [--optimizer adamw|adafactor] [--steps N] [--warmup N] [--threads N]\n");
            return help ? 0 : 2;
        }
    }
    if (!config || steps < 1 || warmup < 0 || (strcmp(kind, "adamw") && strcmp(kind, "adafactor"))) {
        fprintf(stderr, "bench_optim: --config is required, --steps >= 1, --optimizer adamw or adafactor\n");
        return 2;
    }
    if (threads > 0) openblas_set_num_threads(threads);
    run_config rc;
    run_config_defaults(&rc);
    snprintf(rc.optimizer, sizeof rc.optimizer, "%s", kind);
    rc.weight_decay = 0.01;
    model m;
    sx_status s = model_config_load(config, &rc.model);
    if (!s.ok || !(s = model_init(&m, &rc.model)).ok) return fail(config, s);
    model_init_weights(&m, 1);
    par_ctx local;
    par_init_local(&local);
    train_step *ts;
    if (!(s = train_step_init(&ts, &m, &rc, &local, 8)).ok) return fail("train_step_init", s);
    optim *o = train_step_optim(ts);
    ag_rng_key k = ag_rng_make(9, 0, 0);
    ag_rng_uniform_words(k, 0, m.n_grad_floats, m.g); /* gradients in [0, 1): every unit moves */
    double t0 = 0;
    for (int it = 0; it < warmup + steps; it++) {
        if (it == warmup) t0 = now_s();
        optim_step(o, m.w, m.g, 1e-4, NULL);
    }
    double sec = (now_s() - t0) / steps;
    int64_t n = m.n_grad_floats;
    printf("{\"bench\": \"optim\", \"optimizer\": \"%s\", \"params\": %lld, \"sec_per_step\": %.6f, \"adamw_gb_s\": %.2f, \"threads\": %d}\n", kind,
           (long long)n, sec, 28.0 * (double)n / sec / 1e9, openblas_get_num_threads());
    train_step_free(ts);
    model_free(&m);
    return 0;
}
