/* The machine's own rates, measured in the same run as the model benchmarks so that they can be quoted as fractions of
 * what the hardware gives: the sgemm rate of OpenBLAS at the shapes a model step runs (cblas_sgemm, row-major, the
 * mean of the best of --repeat timings over the shapes), and the memory-copy rate (memcpy of a buffer much larger
 * than the caches, bytes read + written per second). Prints one JSON line.
 *   bench_rates [--threads N] [--dim D] [--ff F] [--rows R] [--mb M] [--repeat K]
 * --threads sets OpenBLAS's threads (0: its default); the shapes are x[R, D] W[F, D]^T -> [R, F] and its two
 * backward products, as an FFN of d_model D and d_ff F over R tokens. */
#include <cblas.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *filled(size_t n) {
    float *p = malloc(sizeof(float) * n);
    if (!p) {
        fprintf(stderr, "bench_rates: out of memory (%zu floats)\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    return p;
}

/* GFLOP/s of the best of k runs of one product C[m, n] = A[m, k] op(B). */
static double gemm_rate(int m, int n, int kk, bool bt, int repeat) {
    float *a = filled((size_t)m * kk), *b = filled((size_t)n * kk), *c = filled((size_t)m * n);
    double best = 1e30;
    for (int r = 0; r < repeat + 1; r++) { /* the first run is a warm-up */
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, bt ? CblasTrans : CblasNoTrans, m, n, kk, 1.0f, a, kk, b, bt ? kk : n, 0.0f, c, n);
        double t = now_s() - t0;
        if (r > 0 && t < best) best = t;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * m * n * kk / best / 1e9;
}

int main(int argc, char **argv) {
    int threads = 0, D = 768, F = 3072, R = 256, repeat = 5;
    long mb = 256;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dim") && i + 1 < argc) D = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ff") && i + 1 < argc) F = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) R = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = atol(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else {
            bool help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
            fprintf(help ? stdout : stderr, "usage: bench_rates [--threads N] [--dim D] [--ff F] [--rows R] [--mb M] [--repeat K]\n");
            return help ? 0 : 2;
        }
    }
    if (D < 1 || F < 1 || R < 1 || mb < 1 || repeat < 1) {
        fprintf(stderr, "bench_rates: sizes and --repeat must be positive\n");
        return 2;
    }
    if (threads > 0) openblas_set_num_threads(threads);
    /* forward x W^T, backward dx = dy W and dW = dy^T x: the three products of a linear layer */
    double g1 = gemm_rate(R, F, D, true, repeat), g2 = gemm_rate(R, D, F, false, repeat), g3 = gemm_rate(F, D, R, false, repeat);
    double sgemm = 3.0 / (1.0 / g1 + 1.0 / g2 + 1.0 / g3); /* the rate of doing all three once each */
    size_t n = (size_t)mb << 20;
    char *src = malloc(n), *dst = malloc(n);
    if (!src || !dst) {
        fprintf(stderr, "bench_rates: out of memory (2 x %ld MB)\n", mb);
        return 1;
    }
    memset(src, 1, n);
    memset(dst, 2, n);
    double best = 1e30;
    for (int r = 0; r < repeat + 1; r++) {
        double t0 = now_s();
        memcpy(dst, src, n);
        double t = now_s() - t0;
        if (r > 0 && t < best) best = t;
    }
    double copy_gbs = 2.0 * (double)n / best / 1e9; /* read + write */
    if (dst[n / 2] != 1) return 1; /* the copy happened */
    printf("{\"sgemm_gflops\": %.2f, \"sgemm_fwd_gflops\": %.2f, \"sgemm_dx_gflops\": %.2f, \"sgemm_dw_gflops\": %.2f, "
           "\"copy_gb_s\": %.2f, \"threads\": %d, \"dim\": %d, \"ff\": %d, \"rows\": %d, \"copy_mb\": %ld}\n",
           sgemm, g1, g2, g3, copy_gbs, openblas_get_num_threads(), D, F, R, mb);
    free(src);
    free(dst);
    return 0;
}
