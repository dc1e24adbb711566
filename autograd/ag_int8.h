/* 8-bit weights for inference on the CPU: LLM.int8 (Dettmers et al. 2022, arXiv:2208.07339) as bitsandbytes
 * 0.50's Linear8bitLt computes it in eval mode with has_fp16_weights=False (what transformers' load_in_8bit builds).
 * No gradient: these are not tape ops. Knows nothing of T5.
 *
 * Weights (once, ag_int8_quantize): each row o of a [O, I] nn.Linear weight (each expert's separately), rounded to
 * fp16 as bitsandbytes does (Int8Params casts to float16 before quantizing), scale[o] = max_i |W[o, i]| (SCB) and
 * q[o, i] = round(W[o, i] * (127 / scale[o])) in [-127, 127] (round half to even; 127 / scale as in 2. below).
 *
 * Each call y[N, O] = x[N, I] W^T (ag_int8_matmul; bitsandbytes' int8_vectorwise_quant + int8_mixed_scaled_mm):
 *  1. x rounded to fp16 (MatMul8bitLt's A.to(float16)) for the decisions below; outlier columns: the input features
 *     i with |x[n, i]| >= threshold in any row n of this call (threshold <= 0: none);
 *  2. per row n: s[n] = max_i |x[n, i]| over the elements below the threshold (the outliers themselves zeroed first,
 *     the rest of an outlier column counted), xq[n, i] = round(x[n, i] * (127 / s[n])), 0 in the outlier columns;
 *     127 / s as torch evaluates a scalar over a tensor, (1 / s) * 127 in float32 (on a tie it decides the rounding);
 *  3. y[n, o] = (sum_i xq[n, i] q[o, i]) * (s[n] scale[o]) * c + bias[o], an exact int32 sum, c ~ 1/127^2;
 *  4. the outlier columns in fp32: y[n, o] += sum_{i outlier} x[n, i] (q[o, i] scale[o] / 127), x unrounded, the
 *     weight dequantized (with has_fp16_weights=False bitsandbytes keeps no other copy).
 * The constant c is 6.200124e-05 as in bitsandbytes' default PyTorch backend, the one its CPU path runs and the
 * fixtures come from (its CUDA kernel has 6.200012e-05, 1.8e-5 relative less; 1/127^2 is 6.2000124e-05). The int32
 * sum is exact (that backend sums the int8 values in fp32, exact while |sum| < 2^24: I <= 1040 always).
 * The outlier set, and so the result of a row, depends on the other rows of the call, as in bitsandbytes: a row's
 * output is the same as HF's only when the call holds the same rows (the same batch; for an expert, its tokens). */
#ifndef SX_AG_INT8_H
#define SX_AG_INT8_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/ag.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int64_t n, rows, cols; /* n matrices (experts) of [rows = O, cols = I] */
    int64_t ld;            /* row stride of q in bytes (cols rounded up to 32, zero-padded) */
    int8_t *q;             /* [n, rows, ld] */
    float *scale;          /* [n, rows]: absmax of each fp16-rounded row */
    const float *bias;     /* [rows] or NULL (not owned) */
    float threshold;       /* outlier threshold (bitsandbytes' llm_int8_threshold; <= 0: no decomposition) */
} ag_int8_weight;

/* Quantizes w [n, O, ni] (row-major f32; ni input features). */
void ag_int8_quantize(ag_int8_weight *q, const float *w, int64_t n, int64_t O, int64_t ni, double threshold);
void ag_int8_free(ag_int8_weight *q);
/* Bytes held: int8 values (with the row padding) and scales. */
size_t ag_int8_bytes(const ag_int8_weight *q);
/* y[N, O] = x[N, I] (matrix e)^T as in the header; y is overwritten. */
void ag_int8_matmul(const ag_int8_weight *q, int64_t e, const float *x, int64_t N, float *y);
/* Threads of the int8 kernels (default: OpenBLAS's thread count at the first call). */
void ag_int8_set_threads(int n);

/* The same on tensors of a CPU context (no tape; the context must not record gradients through it):
 * x [.., I] -> [.., O] with matrix 0 of q. */
ag_tensor *ag_int8_linear(ag_ctx *ctx, ag_tensor *x, const ag_int8_weight *q);
/* x [N, I], rows offsets[e] .. offsets[e+1] (i64 [E+1] on the host) through matrix e, each group its own call
 * (its own outlier columns, as HF calls each expert on its tokens); rows past offsets[E] give zero. -> [N, O] */
ag_tensor *ag_int8_grouped_linear(ag_ctx *ctx, ag_tensor *x, const ag_int8_weight *q, const ag_tensor *offsets);

/* fp32 -> fp16 -> fp32, round to nearest even (subnormals kept, |x| >= 65520 -> inf), as torch's .to(float16). */
float ag_f16_round(float x);

#ifdef __cplusplus
}
#endif
#endif
