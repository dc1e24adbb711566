/* Host-side entry points of the CUDA backend (autograd/cuda/). Every function exists in every build: without
 * SWITCHC_HAVE_CUDA (autograd/cuda_stub.c) the queries report no device and the rest abort with a clear message,
 * so callers and tests need no #ifdef.
 *
 * Execution model (docs/gpu.md): one stream for the whole process, the legacy default stream. Every kernel, cuBLAS
 * call, memset and copy of the backend is issued on it in program order, so a kernel never sees memory that an
 * earlier op has not finished writing, and arena memory may be reused after a reset without further fences. Host
 * reads (ag_tensor_to_host, ag_get, the index checks of ops.c) copy on that stream and wait for it.
 * Set SWITCHC_CUDA_SYNC=1 to also synchronise after every kernel launch: an asynchronous fault (an illegal address)
 * is then reported with the op and the source line that launched it instead of at the next copy. */
#ifndef SX_AG_CUDA_H
#define SX_AG_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/ag.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices (0 without a GPU, a driver, or a CUDA build). */
int ag_cuda_device_count(void);
/* A one-line description of the build and device, e.g. for `switchc --version` and benchmark headers. */
const char *ag_cuda_describe(void);
/* y = relu(x) on the device for n floats of host memory (copies in and out): a smoke test of the toolchain.
 * Returns false when no device is available. */
bool ag_cuda_relu_f32_host(const float *x, float *y, int64_t n);

/* ---- device tensors --------------------------------------------------------------------------------------------- */
/* A copy of t (any device) in a device / host arena: the same dtype, shape and name, requires_grad false, no grad. */
ag_tensor *ag_tensor_to_device(ag_arena *dev_arena, const ag_tensor *t);
ag_tensor *ag_tensor_to_host(ag_arena *host_arena, const ag_tensor *t);
/* Waits for every queued kernel and copy; a pending asynchronous error aborts naming 'what'. */
void ag_cuda_synchronize(const char *what);
/* The stream every op runs on (a cudaStream_t; today the legacy default stream, NULL). Custom ops
 * (ag_custom) that launch their own kernels or NCCL calls on device tensors should use it. */
void *ag_cuda_stream(void);

/* ---- used by autograd's own C files (tensor.c, tape.c, ops.c) ----------------------------------------------------- */
typedef enum { AG_COPY_H2D, AG_COPY_D2H, AG_COPY_D2D } ag_copy_kind;
void *ag_cuda_malloc(size_t bytes, const char *what); /* aborts with 'what' and the size when the device is full */
void ag_cuda_free(void *p);
void ag_cuda_memset0(void *p, size_t bytes);
/* Ordered after every queued op; a copy into host memory returns once the data is there. */
void ag_cuda_memcpy(void *dst, const void *src, size_t bytes, ag_copy_kind kind);
void ag_cuda_fill(ag_tensor *t, double v);                   /* t on the device, any dtype */
void ag_cuda_convert(ag_tensor *dst, const ag_tensor *src);  /* both on the device, f32 <-> bf16, same numel */
void ag_cuda_add_into(ag_tensor *dst, const ag_tensor *src); /* f32: dst += src, or dst += 1 when src is NULL */
/* The first position i with !(lo <= idx[i] < hi) && idx[i] != also_ok, or -1: one reduction and one 8-byte copy. */
int64_t ag_cuda_first_bad_index(const ag_tensor *idx, int64_t lo, int64_t hi, int64_t also_ok);
/* The Philox4x32-10 words of ag_philox(k, first + i) for i < n, computed on the device into host memory: the test
 * that the device generator is bit-identical to the CPU one. */
void ag_cuda_philox_host(ag_rng_key k, uint64_t first, int64_t n, uint32_t *out4);
/* The CUDA op table (AG_OP_COUNT entries, f32; see autograd/cuda/table.c). */
const ag_op_entry *ag_cuda_op_table(void);

/* ---- the optimizer step on device spans (autograd/cuda/k_optim.cu) ------------------------------------------------
 * fp32 weights, gradients and state in device memory, the arithmetic of train/optim_cpu.c (cpu_adamw,
 * cpu_adafactor) and of the step's gradient norm and clipping; train/optim_cuda.c is the caller (the CUDA
 * implementation of train/optim.h). AdamW and Adafactor's second-moment state are bit-identical to the CPU;
 * Adafactor's two RMS reductions (scale_parameter, update clipping) sum in a different (fixed) order, so its weights
 * can differ by a float ulp per step. Queued on the one stream; only the norm copies a result back. */
typedef struct {
    int64_t offset, numel; /* in floats, from the base pointer */
} ag_cuda_span;
/* out[k] (host) = the sum over the spans j with set[j] == k (set NULL: all in set 0) of x^2, in double, k < n_sets:
 * deterministic two-pass reductions (the grid depends only on each span's length), then one copy of the n_sets sums,
 * which waits for the stream. A non-finite value makes its set's sum non-finite (the step's non-finite check). */
void ag_cuda_sumsq_sets(const float *base, const ag_cuda_span *spans, const int *set, int n_spans, int n_sets, double *out);
/* x *= c over the spans (clipping). */
void ag_cuda_scale_spans(float *base, const ag_cuda_span *spans, int n_spans, float c);
/* cpu_adamw on one span of n floats (w, g, m = exp_avg, v = exp_avg_sq, all on the device), step t >= 1;
 * weight decay applies when decay && weight_decay > 0. */
void ag_cuda_adamw_step(float *w, const float *g, float *m, float *v, int64_t n, double lr, double beta1, double beta2, double eps,
                        double weight_decay, bool decay, int64_t step);
typedef struct {
    double lr;                  /* ignored with relative_step */
    double weight_decay;
    bool decay;                 /* weight decay applies to this parameter */
    double beta1;               /* 0: no first moment (m may be NULL) */
    double decay_rate;          /* -0.8 */
    double clip_threshold;      /* 1.0 */
    double eps1, eps2;          /* 1e-30, 1e-3 */
    bool relative_step, scale_parameter, warmup_init;
} ag_cuda_adafactor_cfg;
/* cpu_adafactor on one unit of shape[ndim]: ndim >= 2 factors over the last two dims (R, C), the leading
 * dims a batch (the expert axis of [E, F, D]), with row [lead*R] and col [lead*C] state; ndim < 2 uses v [n].
 * m [n] is the first moment when beta1 > 0. */
void ag_cuda_adafactor_step(const ag_cuda_adafactor_cfg *c, float *w, const float *g, float *m, float *v, float *row, float *col, int ndim,
                            const int64_t *shape, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
