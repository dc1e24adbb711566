/* Philox4x32-10 (Salmon et al., SC'11), the counter-based generator of every random stream, written once for the CPU
 * (autograd/rng.c, scalar and in vector lanes) and the CUDA kernels (autograd/cuda/common.cuh): the same integer
 * operations on both, so a mask is bit-identical across backends. The 32x32 -> 64-bit products are plain 64-bit
 * multiplications (nvcc makes them one mul.wide.u32). */
#ifndef SX_AG_PHILOX_H
#define SX_AG_PHILOX_H

#include <stdint.h>

/* One round on the counter words c0..c3 with the key words k0, k1 (all lvalues of uint32_t). */
#define AG_PHILOX_ROUND(c0, c1, c2, c3, k0, k1)                                                                      \
    do {                                                                                                              \
        uint64_t p0_ = (uint64_t)0xD2511F53u * (c0), p1_ = (uint64_t)0xCD9E8D57u * (c2);                              \
        uint32_t n0_ = (uint32_t)(p1_ >> 32) ^ (c1) ^ (k0), n2_ = (uint32_t)(p0_ >> 32) ^ (c3) ^ (k1);                \
        (c1) = (uint32_t)p1_;                                                                                         \
        (c3) = (uint32_t)p0_;                                                                                         \
        (c0) = n0_;                                                                                                   \
        (c2) = n2_;                                                                                                   \
    } while (0)
/* The key schedule between rounds (the Weyl constants). */
#define AG_PHILOX_BUMP(k0, k1) ((k0) += 0x9E3779B9u, (k1) += 0xBB67AE85u)

#ifdef __CUDACC__
#define AG_PHILOX_FN __host__ __device__ __forceinline__
#else
#define AG_PHILOX_FN static inline
#endif

/* The block of counter (index, counter_hi) under key: four 32-bit words. */
AG_PHILOX_FN void ag_philox_block(uint64_t key, uint64_t counter_hi, uint64_t index, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)index, c1 = (uint32_t)(index >> 32), c2 = (uint32_t)counter_hi, c3 = (uint32_t)(counter_hi >> 32);
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
#ifdef __CUDACC__
#pragma unroll
#endif
    for (int r = 0; r < 10; r++) {
        AG_PHILOX_ROUND(c0, c1, c2, c3, k0, k1);
        AG_PHILOX_BUMP(k0, k1);
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

#endif
