/* The GPU's measured bf16 matrix rate, the denominator of switchc's MFU (scripts/bench_gpu.py), and the versions of
 * the GPU stack for docs/benchmarks.md.
 *
 *   bench_gemm_cuda [M N K] [--warmup W] [--iters N]        (default 8192 8192 8192, 5 warm-up, 20 timed)
 *
 * Prints JSON lines on stdout:
 *   {"versions": {...}}   device, driver, CUDA runtime/driver API, cuBLAS(Lt), cuDNN, NCCL (printed with or without a
 *                         GPU: the library versions need none)
 *   {"tflops": ..., "m": .., "n": .., "k": .., ...}
 *                         D = A^T B with A, B bf16 (random, never zeros: zeros run faster), fp32 accumulation
 *                         (CUBLAS_COMPUTE_32F), D bf16, through cuBLASLt's first heuristic; rate from the median of
 *                         the timed launches (cudaEvents around each), 2*M*N*K flops per product.
 * Without a GPU it prints "SKIPPED: no CUDA device (...)" and exits 0. Every CUDA / cuBLAS call is checked: a failure
 * names the statement, file and line and exits 1. A sample of D is checked against a host dot product of the same
 * bf16 inputs (relative error < 1e-2, bf16 output rounding), so a fast wrong kernel is not reported as a rate.
 *
 * cuDNN: with SX_HAVE_CUDNN (cmake/gpu_bench.cmake found it) cudnnGetVersion() is linked; otherwise libcudnn.so.9 /
 * libcudnn.so is looked up at run time with dlopen. NCCL: likewise with SWITCHC_HAVE_NCCL, else libnccl.so.2. The
 * driver's version string comes from NVML (libnvidia-ml.so.1, dlopen), the CUDA driver API version from the runtime. */
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#ifdef SX_HAVE_CUDNN
#include <cudnn.h>
#endif
#ifdef SWITCHC_HAVE_NCCL
#include <nccl.h>
#endif

/* A status of type T other than ok: its name and text, the statement and where, then exit. */
#define CK_STATUS(T, stmt, text, ok, what, name_of, string_of)                                                        \
    do {                                                                                                              \
        T s_ = (stmt);                                                                                                \
        if (s_ != (ok)) {                                                                                             \
            fprintf(stderr, "bench_gemm_cuda: %s error %s (%s) in `%s` at %s:%d\n", what, name_of(s_),                \
                    string_of(s_), text, __FILE__, __LINE__);                                                         \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)
#define CK_CUDA(stmt) CK_STATUS(cudaError_t, stmt, #stmt, cudaSuccess, "CUDA", cudaGetErrorName, cudaGetErrorString)
#define CK_CUBLAS(stmt)                                                                                               \
    CK_STATUS(cublasStatus_t, stmt, #stmt, CUBLAS_STATUS_SUCCESS, "cuBLAS", cublasLtGetStatusName, cublasLtGetStatusString)

/* After a kernel launch: the launch error now, an execution error at the next synchronisation. */
#define CK_LAUNCH() CK_CUDA(cudaGetLastError())

/* A counter-based hash to uniform in [-1, 1): the same values on every run, no state, no curand dependency. */
__host__ __device__ static inline float hash_uniform(uint64_t seed, uint64_t i) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + i;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((z >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

__global__ static void fill_bf16(__nv_bfloat16 *x, int64_t n, uint64_t seed) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __float2bfloat16(hash_uniform(seed, (uint64_t)i));
}

/* ---- versions -------------------------------------------------------------------------------------------------- */

static void json_str(char *dst, size_t cap, const char *s) { /* s has no quotes or backslashes we care to escape */
    size_t j = 0;
    for (size_t i = 0; s && s[i] && j + 2 < cap; i++)
        if (s[i] != '"' && s[i] != '\\' && (unsigned char)s[i] >= 0x20) dst[j++] = s[i];
    dst[j] = 0;
}

static void *dlopen_first(const char *const *names) {
    for (int i = 0; names[i]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    return NULL;
}

/* cuDNN 9 encodes its version as major*10000 + minor*100 + patch (8.x: major*1000 + minor*100 + patch). */
static void cudnn_version(char *out, size_t cap) {
    size_t v = 0;
    const char *how = NULL;
#ifdef SX_HAVE_CUDNN
    v = cudnnGetVersion();
    how = "linked";
#else
    static const char *const names[] = {"libcudnn.so.9", "libcudnn.so", "libcudnn.so.8", NULL};
    void *h = dlopen_first(names);
    if (h) {
        size_t (*get)(void) = (size_t (*)(void))dlsym(h, "cudnnGetVersion");
        if (get) {
            v = get();
            how = "dlopen";
        }
    }
#endif
    if (!how) {
        snprintf(out, cap, "not found");
        return;
    }
    unsigned maj = v >= 90000 ? (unsigned)(v / 10000) : (unsigned)(v / 1000);
    unsigned min = v >= 90000 ? (unsigned)(v % 10000 / 100) : (unsigned)(v % 1000 / 100);
    snprintf(out, cap, "%u.%u.%u (%s)", maj, min, (unsigned)(v % 100), how);
}

/* NCCL >= 2.9 encodes major*10000 + minor*100 + patch. */
static void nccl_version(char *out, size_t cap) {
    int v = 0;
    const char *how = NULL;
#ifdef SWITCHC_HAVE_NCCL
    if (ncclGetVersion(&v) == ncclSuccess) how = "linked";
#else
    static const char *const names[] = {"libnccl.so.2", "libnccl.so", NULL};
    void *h = dlopen_first(names);
    if (h) {
        int (*get)(int *) = (int (*)(int *))dlsym(h, "ncclGetVersion");
        if (get && get(&v) == 0) how = "dlopen";
    }
#endif
    if (!how) {
        snprintf(out, cap, "not found");
        return;
    }
    snprintf(out, cap, "%d.%d.%d (%s)", v / 10000, v % 10000 / 100, v % 100, how);
}

/* The driver's own version string ("580.159.04") through NVML, which ships with the driver. */
static void driver_version(char *out, size_t cap) {
    static const char *const names[] = {"libnvidia-ml.so.1", "libnvidia-ml.so", NULL};
    void *h = dlopen_first(names);
    snprintf(out, cap, "unknown");
    if (!h) return;
    int (*init)(void) = (int (*)(void))dlsym(h, "nvmlInit_v2");
    int (*get)(char *, unsigned) = (int (*)(char *, unsigned))dlsym(h, "nvmlSystemGetDriverVersion");
    int (*fini)(void) = (int (*)(void))dlsym(h, "nvmlShutdown");
    if (!init || !get || init() != 0) return;
    char buf[96] = {0};
    if (get(buf, sizeof buf) == 0) json_str(out, cap, buf);
    if (fini) fini();
}

static void print_versions(int have_device, const cudaDeviceProp *p, const char *no_device_reason) {
    int rt = 0, drv = 0, lt_maj = 0, lt_min = 0, lt_pat = 0;
    cudaRuntimeGetVersion(&rt); /* neither needs a device; 0 stays 0 on failure */
    cudaDriverGetVersion(&drv);
    CK_CUBLAS(cublasLtGetProperty(MAJOR_VERSION, &lt_maj));
    CK_CUBLAS(cublasLtGetProperty(MINOR_VERSION, &lt_min));
    CK_CUBLAS(cublasLtGetProperty(PATCH_LEVEL, &lt_pat));
    char cudnn[64], nccl[64], driver[96], name[300];
    cudnn_version(cudnn, sizeof cudnn);
    nccl_version(nccl, sizeof nccl);
    driver_version(driver, sizeof driver);
    if (have_device) json_str(name, sizeof name, p->name);
    else snprintf(name, sizeof name, "none: %s", no_device_reason);
    printf("{\"versions\": {\"device\": \"%s\", \"sm\": \"%d%d\", \"multiprocessors\": %d, \"memory_mib\": %.0f, "
           "\"driver\": \"%s\", \"driver_cuda_api\": \"%d.%d\", \"cuda_runtime\": \"%d.%d\", \"cublaslt\": \"%d.%d.%d\", "
           "\"cudnn\": \"%s\", \"nccl\": \"%s\"}}\n",
           name, have_device ? p->major : 0, have_device ? p->minor : 0, have_device ? p->multiProcessorCount : 0,
           have_device ? (double)p->totalGlobalMem / 1048576.0 : 0.0, driver, drv / 1000, (drv % 1000) / 10, rt / 1000,
           (rt % 1000) / 10, lt_maj, lt_min, lt_pat, cudnn, nccl);
    fflush(stdout);
}

/* ---- the GEMM ------------------------------------------------------------------------------------------------- */

static float bf16_to_float_host(__nv_bfloat16 b) {
    uint16_t u;
    memcpy(&u, &b, 2);
    uint32_t w = (uint32_t)u << 16;
    float f;
    memcpy(&f, &w, 4);
    return f;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_gemm_cuda [M N K] [--warmup W] [--iters N]\n");
    exit(2);
}

/* Check samples entries of D against the host: D[i, j] = sum_k A[k, i] B[k, j] over the same bf16 values. Returns
 * the number that differ; *worst the largest error. */
static int check_samples(const __nv_bfloat16 *A, const __nv_bfloat16 *B, const __nv_bfloat16 *D, int64_t M, int64_t N, int64_t K,
                         int samples, double *worst) {
    int bad = 0;
    *worst = 0;
    std::vector<__nv_bfloat16> col_a((size_t)K), col_b((size_t)K);
    for (int s = 0; s < samples; s++) {
        int64_t i = (int64_t)(0.5 * (hash_uniform(7, (uint64_t)s) + 1.0) * (double)M) % M;
        int64_t j = (int64_t)(0.5 * (hash_uniform(8, (uint64_t)s) + 1.0) * (double)N) % N;
        __nv_bfloat16 d;
        CK_CUDA(cudaMemcpy(col_a.data(), A + i * K, sizeof(__nv_bfloat16) * (size_t)K, cudaMemcpyDeviceToHost));
        CK_CUDA(cudaMemcpy(col_b.data(), B + j * K, sizeof(__nv_bfloat16) * (size_t)K, cudaMemcpyDeviceToHost));
        CK_CUDA(cudaMemcpy(&d, D + j * M + i, sizeof d, cudaMemcpyDeviceToHost));
        double ref = 0, mag = 0;
        for (int64_t k = 0; k < K; k++) {
            double p = (double)bf16_to_float_host(col_a[(size_t)k]) * (double)bf16_to_float_host(col_b[(size_t)k]);
            ref += p;
            mag += p * p;
        }
        /* Error relative to the scale of the sum (sqrt of the sum of squared terms): a random-sign sum can be near
         * zero, where a plain relative error means nothing. bf16 output rounding alone gives ~4e-3 of |ref|. */
        double err = fabs((double)bf16_to_float_host(d) - ref) / (sqrt(mag) + 1e-30);
        if (!(err < 1e-2)) bad++; /* NaN (an unwritten element) counts as bad */
        if (err > *worst || err != err) *worst = err;
    }
    return bad;
}

int main(int argc, char **argv) {
    long long dims[3] = {8192, 8192, 8192};
    int nd = 0, warmup = 5, iters = 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (argv[i][0] != '-' && nd < 3) dims[nd++] = atoll(argv[i]);
        else usage();
    }
    if ((nd != 0 && nd != 3) || dims[0] <= 0 || dims[1] <= 0 || dims[2] <= 0 || iters <= 0 || warmup < 0) usage();
    const int64_t M = dims[0], N = dims[1], K = dims[2];

    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        const char *why = e != cudaSuccess ? cudaGetErrorString(e) : "0 devices";
        print_versions(0, NULL, why);
        printf("SKIPPED: no CUDA device (%s)\n", why);
        return 0;
    }
    cudaDeviceProp prop;
    CK_CUDA(cudaSetDevice(0));
    CK_CUDA(cudaGetDeviceProperties(&prop, 0));
    print_versions(1, &prop, NULL);

    /* D (M x N, column-major) = A^T B with A stored K x M and B stored K x N: the "TN" layout cuBLASLt favours. */
    __nv_bfloat16 *A, *B, *D;
    CK_CUDA(cudaMalloc(&A, sizeof(__nv_bfloat16) * (size_t)(K * M)));
    CK_CUDA(cudaMalloc(&B, sizeof(__nv_bfloat16) * (size_t)(K * N)));
    CK_CUDA(cudaMalloc(&D, sizeof(__nv_bfloat16) * (size_t)(M * N)));
    fill_bf16<<<1024, 256>>>(A, K * M, 1);
    CK_LAUNCH();
    fill_bf16<<<1024, 256>>>(B, K * N, 2);
    CK_LAUNCH();
    CK_CUDA(cudaMemset(D, 0xFF, sizeof(__nv_bfloat16) * (size_t)(M * N))); /* poison: NaN until written */
    size_t ws_size = 64u << 20;
    void *ws;
    CK_CUDA(cudaMalloc(&ws, ws_size));
    cudaStream_t stream;
    CK_CUDA(cudaStreamCreate(&stream));

    cublasLtHandle_t lt;
    CK_CUBLAS(cublasLtCreate(&lt));
    cublasLtMatmulDesc_t op;
    CK_CUBLAS(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CK_CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CK_CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtMatrixLayout_t la, lb, ld;
    CK_CUBLAS(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, (uint64_t)K, (uint64_t)M, K));
    CK_CUBLAS(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, (uint64_t)K, (uint64_t)N, K));
    CK_CUBLAS(cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, (uint64_t)M, (uint64_t)N, M));
    cublasLtMatmulPreference_t pref;
    CK_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
    CK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_size, sizeof ws_size));
    cublasLtMatmulHeuristicResult_t heur;
    int nheur = 0;
    CK_CUBLAS(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, ld, ld, pref, 1, &heur, &nheur));
    if (nheur == 0) {
        fprintf(stderr, "bench_gemm_cuda: cuBLASLt offers no algorithm for %lldx%lldx%lld bf16\n", (long long)M,
                (long long)N, (long long)K);
        return 1;
    }
    const float alpha = 1.0f, beta = 0.0f;
#define GEMM()                                                                                                        \
    CK_CUBLAS(cublasLtMatmul(lt, op, &alpha, A, la, B, lb, &beta, D, ld, D, ld, &heur.algo, ws, ws_size, stream))

    for (int i = 0; i < warmup; i++) GEMM();
    CK_CUDA(cudaStreamSynchronize(stream));

    std::vector<cudaEvent_t> ev((size_t)iters + 1);
    for (auto &x : ev) CK_CUDA(cudaEventCreate(&x));
    CK_CUDA(cudaEventRecord(ev[0], stream));
    for (int i = 0; i < iters; i++) {
        GEMM();
        CK_CUDA(cudaEventRecord(ev[(size_t)i + 1], stream));
    }
    CK_CUDA(cudaStreamSynchronize(stream));
    std::vector<float> ms((size_t)iters);
    for (int i = 0; i < iters; i++) CK_CUDA(cudaEventElapsedTime(&ms[(size_t)i], ev[(size_t)i], ev[(size_t)i + 1]));
    float total = 0;
    CK_CUDA(cudaEventElapsedTime(&total, ev[0], ev[(size_t)iters]));
    std::vector<float> sorted = ms;
    std::sort(sorted.begin(), sorted.end());
    double med = iters % 2 ? sorted[(size_t)iters / 2] : 0.5 * (sorted[(size_t)iters / 2 - 1] + sorted[(size_t)iters / 2]);
    double flop = 2.0 * (double)M * (double)N * (double)K;

    const int samples = 32;
    double worst = 0;
    int bad = check_samples(A, B, D, M, N, K, samples, &worst);
    printf("{\"tflops\": %.1f, \"m\": %lld, \"n\": %lld, \"k\": %lld, \"dtype\": \"bf16\", \"accumulate\": \"fp32\", "
           "\"median_ms\": %.4f, \"mean_ms\": %.4f, \"min_ms\": %.4f, \"max_ms\": %.4f, \"iters\": %d, \"warmup\": %d, "
           "\"tflops_mean\": %.1f, \"check_samples\": %d, \"check_bad\": %d, \"check_worst_rel\": %.2e}\n",
           flop / (med * 1e-3) / 1e12, (long long)M, (long long)N, (long long)K, med, (double)total / iters,
           (double)sorted.front(), (double)sorted.back(), iters, warmup, flop / ((double)total / iters * 1e-3) / 1e12,
           samples, bad, worst);
    fflush(stdout);

    for (auto &x : ev) CK_CUDA(cudaEventDestroy(x));
    CK_CUBLAS(cublasLtMatmulPreferenceDestroy(pref));
    CK_CUBLAS(cublasLtMatrixLayoutDestroy(la));
    CK_CUBLAS(cublasLtMatrixLayoutDestroy(lb));
    CK_CUBLAS(cublasLtMatrixLayoutDestroy(ld));
    CK_CUBLAS(cublasLtMatmulDescDestroy(op));
    CK_CUBLAS(cublasLtDestroy(lt));
    CK_CUDA(cudaStreamDestroy(stream));
    CK_CUDA(cudaFree(ws));
    CK_CUDA(cudaFree(A));
    CK_CUDA(cudaFree(B));
    CK_CUDA(cudaFree(D));
    if (bad) {
        fprintf(stderr, "bench_gemm_cuda: %d of %d sampled outputs differ from the host dot product (worst %.2e)\n", bad,
                samples, worst);
        return 1;
    }
    return 0;
}
