/* The CUDA backend's first kernel and its host wrapper: proves the toolchain builds and links sm_90 code. The ops
 * of the GPU path join this folder one by one, each tested against the CPU table (tests/gpu/). */
#include <cuda_runtime.h>
#include <stdio.h>

#include "autograd/ag_cuda.h"

#define SX_CUDA_CHECK(stmt)                                                                                           \
    do {                                                                                                              \
        cudaError_t e_ = (stmt);                                                                                      \
        if (e_ != cudaSuccess) {                                                                                      \
            fprintf(stderr, "switchc: CUDA error %s in `%s` at %s:%d\n", cudaGetErrorString(e_), #stmt, __FILE__,   \
                    __LINE__);                                                                                        \
            return false;                                                                                             \
        }                                                                                                             \
    } while (0)

__global__ static void relu_kernel(const float *x, float *y, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] > 0.f ? x[i] : 0.f;
}

extern "C" int ag_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}

extern "C" const char *ag_cuda_describe(void) {
    static char buf[512];
    int rt = 0, drv = 0;
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    int n = ag_cuda_device_count();
    if (n == 0) {
        snprintf(buf, sizeof buf, "CUDA runtime %d.%d, no device", rt / 1000, (rt % 1000) / 10);
        return buf;
    }
    cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    snprintf(buf, sizeof buf, "CUDA runtime %d.%d, driver %d.%d, %d device(s), device 0: %s (sm_%d%d)", rt / 1000,
             (rt % 1000) / 10, drv / 1000, (drv % 1000) / 10, n, p.name, p.major, p.minor);
    return buf;
}

extern "C" bool ag_cuda_relu_f32_host(const float *x, float *y, int64_t n) {
    if (ag_cuda_device_count() == 0) return false;
    float *dx = NULL, *dy = NULL;
    SX_CUDA_CHECK(cudaMalloc(&dx, n * sizeof(float)));
    SX_CUDA_CHECK(cudaMalloc(&dy, n * sizeof(float)));
    SX_CUDA_CHECK(cudaMemcpy(dx, x, n * sizeof(float), cudaMemcpyHostToDevice));
    relu_kernel<<<(unsigned)((n + 255) / 256), 256>>>(dx, dy, n);
    SX_CUDA_CHECK(cudaGetLastError());
    SX_CUDA_CHECK(cudaMemcpy(y, dy, n * sizeof(float), cudaMemcpyDeviceToHost));
    cudaFree(dx);
    cudaFree(dy);
    return true;
}
