// A small CUDA emulator for checking the logic of autograd/cuda/ on a machine without a GPU (tests/gpu/emu/run.sh):
// every block runs its threads as pthreads (real __syncthreads barriers and warp shuffles), the blocks of a grid
// one after another, in host memory (cudaMalloc poisons it, so unwritten outputs show). What it checks: index
// math, reductions, tie rules, launch configurations, the row-major -> cuBLAS transcription. What it cannot: races
// between blocks, timing, the real libm/cuBLAS rounding, memory limits. Not a substitute for a GPU run.
#pragma once
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <mutex>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct emu_uint3 { unsigned x, y, z; };
inline thread_local emu_uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

typedef enum { cudaSuccess = 0, cudaErrorInvalidConfiguration = 9, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2 } cudaError_t;
typedef void *cudaStream_t;
typedef enum { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice } cudaMemcpyKind;
typedef enum { CUDA_R_32F, CUDA_R_16BF } cudaDataType_t;
typedef cudaDataType_t cudaDataType;
struct cudaDeviceProp { char name[256]; int major, minor; };

inline cudaError_t emu_last_error = cudaSuccess;
inline long emu_live_allocs = 0;
inline const char *cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : e == 9 ? "cudaErrorInvalidConfiguration" : "cudaErrorOther"; }
inline const char *cudaGetErrorString(cudaError_t e) { return cudaGetErrorName(e); }
inline cudaError_t cudaGetLastError(void) { cudaError_t e = emu_last_error; emu_last_error = cudaSuccess; return e; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
inline cudaError_t cudaRuntimeGetVersion(int *v) { *v = 13000; return cudaSuccess; }
inline cudaError_t cudaDriverGetVersion(int *v) { *v = 13000; return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) { strcpy(p->name, "emulator"); p->major = 9; p->minor = 0; return cudaSuccess; }
inline cudaError_t cudaMemGetInfo(size_t *f, size_t *t) { *f = *t = 0; return cudaSuccess; }
template <class T> cudaError_t cudaMalloc(T **p, size_t n) {
    void *q = NULL;
    if (posix_memalign(&q, 256, n ? n : 1)) return cudaErrorMemoryAllocation;
    memset(q, 0xAB, n); /* poison: unwritten outputs show up */
    *p = (T *)q;
    emu_live_allocs++;
    return cudaSuccess;
}
inline cudaError_t cudaFree(void *p) { free(p); emu_live_allocs--; return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { memset(p, v, n); return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t) { memmove(d, s, n); return cudaSuccess; }

/* ---- intrinsics ---- */
inline uint32_t __umulhi(uint32_t a, uint32_t b) { return (uint32_t)(((uint64_t)a * b) >> 32); }
inline uint32_t __float_as_uint(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
inline float __uint_as_float(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
/* round-to-nearest arithmetic (the emulator is compiled without FMA contraction on x86-64, so plain operators) */
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return sqrt(a); }
inline std::mutex emu_atomic_mutex;
inline float atomicAdd(float *p, float v) { std::lock_guard<std::mutex> g(emu_atomic_mutex); float o = *p; *p = o + v; return o; }
inline unsigned long long atomicMin(unsigned long long *p, unsigned long long v) {
    std::lock_guard<std::mutex> g(emu_atomic_mutex);
    unsigned long long o = *p;
    if (v < o) *p = v;
    return o;
}

/* ---- barriers and shuffles ---- */
inline pthread_barrier_t emu_block_bar;
inline pthread_barrier_t emu_warp_bar[32];
inline uint64_t emu_slots[1024];
inline void __syncthreads(void) { pthread_barrier_wait(&emu_block_bar); }
inline int emu_lin(void) { return (int)(threadIdx.z * blockDim.y * blockDim.x + threadIdx.y * blockDim.x + threadIdx.x); }
template <class T> T __shfl_xor_sync(unsigned mask, T v, int o) {
    static_assert(sizeof(T) <= 8, "shuffle of a wide type");
    if (mask != 0xffffffffu) { fprintf(stderr, "emu: partial shuffle mask\n"); abort(); }
    int lin = emu_lin(), w = lin >> 5, lane = lin & 31;
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    emu_slots[lin] = bits;
    pthread_barrier_wait(&emu_warp_bar[w]);
    uint64_t other = emu_slots[(w << 5) | (lane ^ o)];
    pthread_barrier_wait(&emu_warp_bar[w]);
    T r;
    memcpy(&r, &other, sizeof(T));
    return r;
}

/* ---- launches ---- */
template <class F> struct emu_job { F *f; emu_uint3 t, b; dim3 bd, gd; };
template <class F> void *emu_thread(void *arg) {
    emu_job<F> *j = (emu_job<F> *)arg;
    threadIdx = j->t; blockIdx = j->b; blockDim = j->bd; gridDim = j->gd;
    (*j->f)();
    return NULL;
}
inline long emu_launches = 0;
template <class F> void emu_launch(dim3 g, dim3 b, F f) {
    unsigned nt = b.x * b.y * b.z;
    emu_launches++;
    if (!g.x || !g.y || !g.z || !nt || nt > 1024 || g.y > 65535 || g.z > 65535) { emu_last_error = cudaErrorInvalidConfiguration; return; }
    if (nt % 32) { fprintf(stderr, "emu: block of %u threads is not whole warps\n", nt); abort(); }
    static emu_job<F> jobs[1024];
    static pthread_t th[1024];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 18);
    for (unsigned bz = 0; bz < g.z; bz++)
        for (unsigned by = 0; by < g.y; by++)
            for (unsigned bx = 0; bx < g.x; bx++) {
                pthread_barrier_init(&emu_block_bar, NULL, nt);
                for (unsigned w = 0; w < nt / 32; w++) pthread_barrier_init(&emu_warp_bar[w], NULL, 32);
                for (unsigned i = 0; i < nt; i++) {
                    jobs[i].f = &f;
                    jobs[i].t = {i % b.x, (i / b.x) % b.y, i / (b.x * b.y)};
                    jobs[i].b = {bx, by, bz};
                    jobs[i].bd = b;
                    jobs[i].gd = g;
                    if (pthread_create(&th[i], &attr, emu_thread<F>, &jobs[i])) { perror("emu: pthread_create"); abort(); }
                }
                for (unsigned i = 0; i < nt; i++) pthread_join(th[i], NULL);
                pthread_barrier_destroy(&emu_block_bar);
                for (unsigned w = 0; w < nt / 32; w++) pthread_barrier_destroy(&emu_warp_bar[w]);
            }
    pthread_attr_destroy(&attr);
}
