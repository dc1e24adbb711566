/* Loader benchmark: a synthetic token dataset of switch-base-8 shapes (inputs 512, targets 114 tokens, vocab 32128)
 * written to a temp file, then batches of 16 x 512/128 read through the trainer's batch source (shuffled, padded):
 * batches/s and tokens/s, one JSON line. Compare with the trainer's step time at that shape. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data/batches.h"
#include "data/dataset.h"
#include "train/run_config.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    int64_t n = argc > 1 ? atoll(argv[1]) : 20000;
    int batches = argc > 2 ? atoi(argv[2]) : 200;
    char path[256];
    snprintf(path, sizeof path, "/tmp/bench_loader_%d.h5", (int)getpid());
    data_writer *w;
    sx_status s = data_writer_open(path, 32128, 0, true, &w);
    if (!s.ok) {
        fprintf(stderr, "bench_loader: %s\n", s.msg);
        return 1;
    }
    int32_t in[512], tgt[114];
    uint64_t x = 88172645463325252ull;
    double t0 = now_s();
    for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < 512; k++) in[k] = (int32_t)((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 33) % 32000 + 2;
        for (int k = 0; k < 114; k++) tgt[k] = (int32_t)((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 33) % 32000 + 2;
        if (!(s = data_writer_append(w, in, 512, tgt, 114)).ok) break;
    }
    if (s.ok) s = data_writer_close(w);
    if (!s.ok) {
        fprintf(stderr, "bench_loader: %s\n", s.msg);
        return 1;
    }
    double write_s = now_s() - t0;
    run_config cfg;
    run_config_defaults(&cfg);
    snprintf(cfg.task, sizeof cfg.task, "dataset");
    snprintf(cfg.train_data, sizeof cfg.train_data, "%s", path);
    cfg.model.vocab_size = 32128;
    cfg.max_input_len = 512;
    cfg.max_target_len = 128;
    batch_source *src;
    if (!(s = run_config_batches_open(&cfg, false, &src)).ok) {
        fprintf(stderr, "bench_loader: %s\n", s.msg);
        return 1;
    }
    int B = 16;
    int64_t L = batch_source_max_len(src);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * L)), *mask = malloc(sizeof(int32_t) * (size_t)(B * L)), *labels = malloc(sizeof(int32_t) * (size_t)(B * L));
    int64_t S, T, tokens = 0;
    t0 = now_s();
    for (int b = 0; b < batches; b++) {
        if (!(s = batch_source_get(src, (uint64_t)b * (uint64_t)B, B, ids, mask, labels, &S, &T)).ok) {
            fprintf(stderr, "bench_loader: %s\n", s.msg);
            return 1;
        }
        tokens += (int64_t)B * (S + T);
    }
    double el = now_s() - t0;
    printf("{\"bench\": \"loader\", \"examples\": %lld, \"batch\": %d, \"src_len\": %lld, \"tgt_len\": %lld, \"batches_per_s\": %.1f, \"tokens_per_s\": %.0f, "
           "\"write_examples_per_s\": %.0f}\n",
           (long long)n, B, (long long)S, (long long)T, batches / el, tokens / el, n / write_s);
    batch_source_close(src);
    remove(path);
    free(ids);
    free(mask);
    free(labels);
    return 0;
}
