// cuBLAS's column-major GEMMs as naive loops, with cuBLAS's argument rules checked (leading dimensions).
#pragma once
#include "cuda_runtime.h"
typedef void *cublasHandle_t;
typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15 } cublasStatus_t;
typedef enum { CUBLAS_OP_N, CUBLAS_OP_T } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH } cublasMath_t;
typedef enum { CUBLAS_COMPUTE_32F } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT } cublasGemmAlgo_t;
inline const char *cublasGetStatusName(cublasStatus_t s) { return s == 0 ? "CUBLAS_STATUS_SUCCESS" : s == 7 ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_OTHER"; }
inline const char *cublasGetStatusString(cublasStatus_t s) { return cublasGetStatusName(s); }
inline cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = (void *)1; return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
inline long emu_gemms = 0;
inline float emu_ld(const void *p, cudaDataType_t t, long i) {
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    return __uint_as_float((uint32_t)((const uint16_t *)p)[i] << 16);
}
inline cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *alpha,
                                                 const void *A, cudaDataType_t At, int lda, long long sA, const void *B, cudaDataType_t Bt, int ldb,
                                                 long long sB, const void *beta, void *C, cudaDataType_t Ct, int ldc, long long sC, int batch,
                                                 cublasComputeType_t, cublasGemmAlgo_t) {
    emu_gemms++;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || Ct != CUDA_R_32F || At != Bt) return CUBLAS_STATUS_INVALID_VALUE;
    int ra = ta == CUBLAS_OP_N ? m : k, rb = tb == CUBLAS_OP_N ? k : n;
    if (lda < (ra > 1 ? ra : 1) || ldb < (rb > 1 ? rb : 1) || ldc < (m > 1 ? m : 1)) {
        fprintf(stderr, "emu cublas: bad leading dimension m=%d n=%d k=%d lda=%d ldb=%d ldc=%d ta=%d tb=%d\n", m, n, k, lda, ldb, ldc, ta, tb);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    float al = *(const float *)alpha, be = *(const float *)beta;
    for (int z = 0; z < batch; z++)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double s = 0;
                for (int l = 0; l < k; l++) {
                    float a = emu_ld(A, At, z * sA + (ta == CUBLAS_OP_N ? i + (long)l * lda : l + (long)i * lda));
                    float b = emu_ld(B, Bt, z * sB + (tb == CUBLAS_OP_N ? l + (long)j * ldb : j + (long)l * ldb));
                    s += (double)a * b;
                }
                float *c = (float *)C + z * sC + i + (long)j * ldc;
                *c = be == 0.f ? (float)(al * s) : (float)(al * s + be * (double)*c);
            }
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *alpha, const void *A,
                                   cudaDataType_t At, int lda, const void *B, cudaDataType_t Bt, int ldb, const void *beta, void *C, cudaDataType_t Ct,
                                   int ldc, cublasComputeType_t ct, cublasGemmAlgo_t al) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, At, lda, 0, B, Bt, ldb, 0, beta, C, Ct, ldc, 0, 1, ct, al);
}
