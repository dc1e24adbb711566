/* The CUDA backend's runtime: device queries, device memory for the arenas, copies, the stream and cuBLAS handle,
 * the launch check, and the small device helpers that tensor.c, tape.c and ops.c call on device tensors (fill,
 * conversion, seeding a gradient, index range checks). The op kernels live beside it (k_*.cu), the table in
 * table.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cuda/common.cuh"

/* ---- launch checks, stream, handle -------------------------------------------------------------------------------- */

void sx_cuda_after_launch(const char *what, const char *file, int line) {
    static int sync_each = -1;
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) sx_fatal(file, line, "CUDA error %s (%s) launching the kernel of %s", cudaGetErrorName(e), cudaGetErrorString(e), what);
    if (sync_each < 0) {
        const char *s = getenv("SWITCHC_CUDA_SYNC");
        sync_each = s && *s && strcmp(s, "0") != 0;
    }
    if (sync_each) {
        e = cudaStreamSynchronize(sx_stream());
        if (e != cudaSuccess)
            sx_fatal(file, line, "CUDA error %s (%s) while running the kernel of %s (SWITCHC_CUDA_SYNC=1)", cudaGetErrorName(e),
                     cudaGetErrorString(e), what);
    }
}

cublasHandle_t sx_cublas(void) {
    static cublasHandle_t h;
    if (!h) {
        SX_CUBLAS_CHECK(cublasCreate(&h));
        SX_CUBLAS_CHECK(cublasSetStream(h, sx_stream()));
        /* fp32 means fp32: the default math mode never down-converts CUBLAS_COMPUTE_32F (which every fp32 GEMM of
         * the backend names) to TF32, so the CUDA ops can match the CPU to 1e-5 relative. */
        SX_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    }
    return h;
}

extern "C" void *ag_cuda_stream(void) { return (void *)sx_stream(); }

extern "C" void ag_cuda_synchronize(const char *what) {
    cudaError_t e = cudaStreamSynchronize(sx_stream());
    if (e != cudaSuccess) SX_FATAL("CUDA error %s (%s) found when synchronising for %s", cudaGetErrorName(e), cudaGetErrorString(e), what ? what : "?");
}

/* ---- queries ------------------------------------------------------------------------------------------------------ */

extern "C" int ag_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky "no device" error so later calls report their own */
        return 0;
    }
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
    SX_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    snprintf(buf, sizeof buf, "CUDA runtime %d.%d, driver %d.%d, %d device(s), device 0: %s (sm_%d%d)", rt / 1000,
             (rt % 1000) / 10, drv / 1000, (drv % 1000) / 10, n, p.name, p.major, p.minor);
    return buf;
}

/* ---- memory and copies -------------------------------------------------------------------------------------------- */

extern "C" void *ag_cuda_malloc(size_t bytes, const char *what) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        SX_FATAL("CUDA error %s (%s) in `cudaMalloc` of %zu bytes for arena '%s' (device: %zu of %zu bytes free)", cudaGetErrorName(e),
                 cudaGetErrorString(e), bytes, what ? what : "?", free_b, total_b);
    }
    return p;
}

extern "C" void ag_cuda_free(void *p) { SX_CUDA_CHECK(cudaFree(p)); }

extern "C" void ag_cuda_memset0(void *p, size_t bytes) { SX_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, sx_stream())); }

extern "C" void ag_cuda_memcpy(void *dst, const void *src, size_t bytes, ag_copy_kind kind) {
    if (!bytes) return;
    cudaMemcpyKind k = kind == AG_COPY_H2D ? cudaMemcpyHostToDevice : kind == AG_COPY_D2H ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice;
    SX_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, k, sx_stream()));
    /* Host memory is pageable and may be a caller's stack buffer: wait until the copy is done with it. */
    if (kind != AG_COPY_D2D) SX_CUDA_CHECK(cudaStreamSynchronize(sx_stream()));
}

/* ---- fill, convert, add ------------------------------------------------------------------------------------------- */

template <class V> __global__ void fill_k(V *p, V v, int64_t n) {
    SX_GRID_STRIDE(i, n) p[i] = v;
}

extern "C" void ag_cuda_fill(ag_tensor *t, double v) {
    SX_ASSERT(t->device == AG_DEV_CUDA, "ag_cuda_fill: not a device tensor");
    int64_t n = t->numel;
    if (!n) return;
    if (v == 0.0) {
        ag_cuda_memset0(t->data, (size_t)n * ag_dtype_size(t->dtype));
        return;
    }
    unsigned g = sx_blocks(n);
    switch (t->dtype) {
    case AG_F32: fill_k<float><<<g, SX_THREADS, 0, sx_stream()>>>((float *)t->data, (float)v, n); break;
    case AG_F64: fill_k<double><<<g, SX_THREADS, 0, sx_stream()>>>((double *)t->data, v, n); break;
    case AG_BF16: fill_k<uint16_t><<<g, SX_THREADS, 0, sx_stream()>>>((uint16_t *)t->data, ag_bf16_from_f32((float)v), n); break;
    case AG_I32: fill_k<int32_t><<<g, SX_THREADS, 0, sx_stream()>>>((int32_t *)t->data, (int32_t)v, n); break;
    case AG_I64: fill_k<int64_t><<<g, SX_THREADS, 0, sx_stream()>>>((int64_t *)t->data, (int64_t)v, n); break;
    default: SX_FATAL("ag_fill: bad dtype %d", (int)t->dtype);
    }
    SX_LAUNCHED("ag_fill");
}

__global__ void f32_to_bf16_k(const float *x, uint16_t *y, int64_t n) {
    SX_GRID_STRIDE(i, n) y[i] = sx_bf16_from_f32(x[i]);
}
__global__ void bf16_to_f32_k(const uint16_t *x, float *y, int64_t n) {
    SX_GRID_STRIDE(i, n) y[i] = sx_f32_from_bf16(x[i]);
}

void sx_f32_to_bf16(const char *what, const float *x, uint16_t *y, int64_t n) {
    if (!n) return;
    f32_to_bf16_k<<<sx_blocks(n), SX_THREADS, 0, sx_stream()>>>(x, y, n);
    SX_LAUNCHED(what);
}

extern "C" void ag_cuda_convert(ag_tensor *dst, const ag_tensor *src) {
    SX_ASSERT(dst->device == AG_DEV_CUDA && src->device == AG_DEV_CUDA && dst->numel == src->numel, "ag_cuda_convert: needs two device tensors of the same size");
    int64_t n = src->numel;
    if (dst->dtype == src->dtype) {
        ag_cuda_memcpy(dst->data, src->data, (size_t)n * ag_dtype_size(src->dtype), AG_COPY_D2D);
        return;
    }
    if (!n) return;
    if (src->dtype == AG_F32 && dst->dtype == AG_BF16)
        f32_to_bf16_k<<<sx_blocks(n), SX_THREADS, 0, sx_stream()>>>((const float *)src->data, (uint16_t *)dst->data, n);
    else if (src->dtype == AG_BF16 && dst->dtype == AG_F32)
        bf16_to_f32_k<<<sx_blocks(n), SX_THREADS, 0, sx_stream()>>>((const uint16_t *)src->data, (float *)dst->data, n);
    else
        SX_FATAL("conversion %s -> %s on the device: only f32 <-> bf16 (f64 lives on the CPU)", ag_dtype_name(src->dtype), ag_dtype_name(dst->dtype));
    SX_LAUNCHED("a dtype conversion");
}

__global__ void add_into_k(float *dst, const float *src, int64_t n) {
    SX_GRID_STRIDE(i, n) dst[i] += src ? src[i] : 1.0f;
}

void sx_add_into(const char *what, float *dst, const float *src, int64_t n) {
    if (!n) return;
    add_into_k<<<sx_blocks(n), SX_THREADS, 0, sx_stream()>>>(dst, src, n);
    SX_LAUNCHED(what);
}

extern "C" void ag_cuda_add_into(ag_tensor *dst, const ag_tensor *src) {
    SX_ASSERT(dst->device == AG_DEV_CUDA && dst->dtype == AG_F32, "ag_cuda_add_into: dst must be an f32 device tensor");
    if (src)
        SX_ASSERT(src->device == AG_DEV_CUDA && src->dtype == AG_F32 && src->numel == dst->numel,
                  "ag_cuda_add_into: src must be an f32 device tensor of %lld elements", (long long)dst->numel);
    sx_add_into("a gradient seed", (float *)dst->data, src ? (const float *)src->data : NULL, dst->numel);
}

/* ---- index checks ------------------------------------------------------------------------------------------------- */

template <class I> __global__ void first_bad_k(const I *idx, int64_t n, int64_t lo, int64_t hi, int64_t also_ok, unsigned long long *first) {
    SX_GRID_STRIDE(i, n) {
        int64_t v = (int64_t)idx[i];
        if (!(v >= lo && v < hi) && v != also_ok) atomicMin(first, (unsigned long long)i);
    }
}

/* A few bytes of device memory kept for the life of the process (allocated on first use). */
static unsigned long long *result_slot(void) {
    static unsigned long long *p;
    if (!p) SX_CUDA_CHECK(cudaMalloc(&p, 64));
    return p;
}

extern "C" int64_t ag_cuda_first_bad_index(const ag_tensor *idx, int64_t lo, int64_t hi, int64_t also_ok) {
    SX_ASSERT(idx->device == AG_DEV_CUDA && (idx->dtype == AG_I32 || idx->dtype == AG_I64), "index check: needs an i32/i64 device tensor");
    if (!idx->numel) return -1;
    unsigned long long *slot = result_slot(), first = 0;
    SX_CUDA_CHECK(cudaMemsetAsync(slot, 0xff, sizeof *slot, sx_stream())); /* ULLONG_MAX: nothing found */
    if (idx->dtype == AG_I32)
        first_bad_k<int32_t><<<sx_blocks(idx->numel), SX_THREADS, 0, sx_stream()>>>((const int32_t *)idx->data, idx->numel, lo, hi, also_ok, slot);
    else
        first_bad_k<int64_t><<<sx_blocks(idx->numel), SX_THREADS, 0, sx_stream()>>>((const int64_t *)idx->data, idx->numel, lo, hi, also_ok, slot);
    SX_LAUNCHED("an index range check");
    ag_cuda_memcpy(&first, slot, sizeof first, AG_COPY_D2H);
    return first == ~0ull ? -1 : (int64_t)first;
}

/* ---- Philox on the device, for the bit-for-bit test ----------------------------------------------------------------- */

__global__ void philox_k(uint64_t key, uint64_t counter_hi, uint64_t first, int64_t n, uint32_t *out) {
    SX_GRID_STRIDE(i, n) {
        uint32_t o[4];
        sx_philox(key, counter_hi, first + (uint64_t)i, o);
        for (int w = 0; w < 4; w++) out[4 * i + w] = o[w];
    }
}

extern "C" void ag_cuda_philox_host(ag_rng_key k, uint64_t first, int64_t n, uint32_t *out4) {
    if (n <= 0) return;
    uint32_t *d = (uint32_t *)ag_cuda_malloc((size_t)n * 16, "philox test");
    philox_k<<<sx_blocks(n), SX_THREADS, 0, sx_stream()>>>(k.key, k.counter_hi, first, n, d);
    SX_LAUNCHED("the Philox test kernel");
    ag_cuda_memcpy(out4, d, (size_t)n * 16, AG_COPY_D2H);
    ag_cuda_free(d);
}

/* ---- the toolchain smoke test --------------------------------------------------------------------------------------- */

__global__ static void relu_kernel(const float *x, float *y, int64_t n) {
    SX_GRID_STRIDE(i, n) y[i] = x[i] > 0.f ? x[i] : 0.f;
}

extern "C" bool ag_cuda_relu_f32_host(const float *x, float *y, int64_t n) {
    if (ag_cuda_device_count() == 0) return false;
    if (n <= 0) return true;
    float *dx = (float *)ag_cuda_malloc((size_t)n * sizeof(float), "relu smoke test");
    float *dy = (float *)ag_cuda_malloc((size_t)n * sizeof(float), "relu smoke test");
    ag_cuda_memcpy(dx, x, (size_t)n * sizeof(float), AG_COPY_H2D);
    relu_kernel<<<sx_blocks(n), SX_THREADS, 0, sx_stream()>>>(dx, dy, n);
    SX_LAUNCHED("the relu smoke test");
    ag_cuda_memcpy(y, dy, (size_t)n * sizeof(float), AG_COPY_D2H);
    ag_cuda_free(dx);
    ag_cuda_free(dy);
    return true;
}
