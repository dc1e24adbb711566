/* Tokenizer benchmark: every line of a text file encoded with a SentencePiece model, one call per line on one thread,
 * repeated; prints lines/s, MB/s and the token count as one JSON line (scripts/bench_spm.py puts it beside the
 * sentencepiece Python package on the same text).  Usage: bench_spm MODEL TEXT [REPEAT] [EXTRA_IDS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/spm.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_spm MODEL TEXT [REPEAT] [EXTRA_IDS]\n");
        return 2;
    }
    int repeat = argc > 3 ? atoi(argv[3]) : 3;
    data_spm *m;
    double t0 = now_s();
    sx_status s = data_spm_load(argv[1], &m);
    if (!s.ok) {
        fprintf(stderr, "bench_spm: %s\n", s.msg);
        return 1;
    }
    double load_s = now_s() - t0;
    if (argc > 4) data_spm_set_extra_ids(m, atoi(argv[4]));
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        fprintf(stderr, "bench_spm: cannot open %s\n", argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    rewind(f);
    char *text = malloc(n + 1);
    if (!text || fread(text, 1, n, f) != n) {
        fprintf(stderr, "bench_spm: cannot read %s\n", argv[2]);
        return 1;
    }
    fclose(f);
    /* lines split once, outside the timing */
    size_t n_lines = 0, cap = 1024;
    size_t *starts = malloc(cap * sizeof *starts), *lens = malloc(cap * sizeof *lens);
    for (size_t i = 0; i < n;) {
        char *nl = memchr(text + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - text) : n;
        if (n_lines == cap) {
            cap *= 2;
            starts = realloc(starts, cap * sizeof *starts);
            lens = realloc(lens, cap * sizeof *lens);
        }
        starts[n_lines] = i;
        lens[n_lines++] = e - i;
        i = e + 1;
    }
    int32_t *ids = malloc(sizeof *ids * (1 << 20));
    double best = 1e30;
    long long tokens = 0, checksum = 0;
    for (int r = 0; r < repeat; r++) {
        tokens = checksum = 0;
        double t = now_s();
        for (size_t l = 0; l < n_lines; l++) {
            int64_t k = data_spm_encode(m, text + starts[l], lens[l], ids, 1 << 20);
            tokens += k;
            if (k) checksum += ids[0] + ids[k - 1];
        }
        t = now_s() - t;
        if (t < best) best = t;
    }
    printf("{\"lines\": %zu, \"bytes\": %zu, \"repeat\": %d, \"seconds\": %.6f, \"lines_per_s\": %.1f, \"mb_per_s\": %.3f, "
           "\"tokens\": %lld, \"checksum\": %lld, \"load_s\": %.6f}\n",
           n_lines, n, repeat, best, (double)n_lines / best, (double)n / best / 1e6, tokens, checksum, load_s);
    free(ids);
    free(starts);
    free(lens);
    free(text);
    data_spm_free(m);
    return 0;
}
