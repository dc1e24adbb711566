/* The Switch layer's routing and token permutation on the device (moe/cuda/route.cu, moe/cuda/permute.cu): the
 * twins of moe/route.c and of the gather / gated scatter in moe_switch_forward, on f32 device arrays. Every function
 * exists in every build: without SWITCHC_HAVE_CUDA (moe/moe_cuda_stub.c) each returns false (or 0), so callers and
 * tests need no #ifdef.
 *
 * Stream: everything is issued on the legacy default stream (0), the one stream of the CUDA backend
 * (autograd/ag_cuda.h), in program order and without host synchronisation: outputs are ready for the next kernel on
 * that stream; a host read must copy on it (cudaMemcpy, ag_cuda_memcpy), which waits. Every result is
 * deterministic: no atomics decide an order or a sum. */
#ifndef SX_MOE_CUDA_H
#define SX_MOE_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moe/route.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- routing ------------------------------------------------------------------------------------------------------ */

/* The routing outputs in device memory; the fields mean what they mean in moe_route_result (NK = N * K). */
typedef struct {
    int32_t *choice;            /* [NK] */
    uint8_t *keep;              /* [NK] */
    int32_t *slot;              /* [NK] the permuted row of (t, k), -1 if dropped */
    int64_t *off;               /* [E+1]; off[E] = n_kept */
    int64_t *tokens_per_expert; /* [E] */
    int32_t *perm;              /* [NK] (the first off[E] written) */
    int32_t *gidx;              /* [NK] (the first off[E] written) */
    int32_t *loss_index;        /* [N] */
    int64_t *n_dropped;         /* [1] */
    double *entropy_sum;        /* [1] fp64 accumulation of the per-token entropies, a fixed reduction tree */
} moe_route_dev;

/* Device scratch that moe_cuda_route needs for these sizes (bytes; its start 8-byte aligned, as cudaMalloc and the
 * arenas give). Of order (N / L + groups) * E * (K + 1) * 4 bytes, L = the chunk of tokens one thread walks
 * (>= 32, grown with N so that the per-chunk tables stay near 2^22 entries). 0 without CUDA. */
size_t moe_cuda_route_scratch_bytes(int64_t N, int E, int K, int64_t group_tokens);

/* probs: [N, E] f32 device memory. The same decisions as moe_route_cpu on the same floats (its arguments and
 * asserts too), bit for bit; the entropy differs only by summation order and the device log. Asynchronous on the
 * stream; false only in a build without CUDA. */
bool moe_cuda_route(const float *probs, int64_t N, int E, int K, int64_t group_tokens, int64_t capacity, const moe_route_dev *out,
                    void *scratch, size_t scratch_bytes);

/* ---- permutation, f32, D columns ---------------------------------------------------------------------------------- */

/* xe[r, :] = x[perm[r], :] for r < Nk. x [N, D], xe [Nk, D]. */
bool moe_cuda_permute(const float *x, const int32_t *perm, int64_t Nk, int64_t D, float *xe);
/* Its backward, accumulating: dx[t, :] += dxe[s, :] for each kept row s = slot[t*K + k] of token t, in increasing s
 * (the order of the CPU's scatter by perm, so the sums round alike). dxe [Nk, D], dx [N, D]. */
bool moe_cuda_permute_backward(const float *dxe, const int32_t *slot, int64_t N, int K, int64_t D, float *dx);

/* The gated combine: y[t, :] = sum over the kept rows s = slot[t*K + k] of gate[s] * ye[s, :] (zero for a token with
 * none), gate[s] = probs[gidx[s]]. Written, not accumulated: y is this op's output. ye [Nk, D], probs [N*E], y [N, D].
 * One thread per output element sums its K terms: no atomics, and for K <= 2 the result equals the CPU's
 * mul-then-scatter bit for bit (products and sums rounded singly, never fused). */
bool moe_cuda_unpermute(const float *ye, const float *probs, const int32_t *gidx, const int32_t *slot, int64_t N, int K, int64_t D,
                        float *y);
/* Its backward, with perm = the token of each row:
 *   dye[r, :]  += gate[r] * dy[perm[r], :]
 *   dgate[r]    = dot(dy[perm[r], :], ye[r, :])        (written; dgate may be NULL)
 *   dprobs[gidx[r]] += dgate[r]                        (dprobs [N*E] may be NULL; gidx has no repeats: no race)
 * dye may be NULL (no gradient wanted for the expert outputs). One block per row; the dot is an fp32 sum in a fixed
 * tree over D. */
bool moe_cuda_unpermute_backward(const float *dy, const float *ye, const float *probs, const int32_t *perm, const int32_t *gidx,
                                 int64_t Nk, int64_t D, float *dye, float *dgate, float *dprobs);

/* ---- the same on host memory, for tests: copy in, run, copy out (false without a device) --------------------------- */

/* r's arrays sized as for moe_route_cpu; every field of r is filled (n_kept from off[E]). */
bool moe_cuda_route_host(const float *probs, int64_t N, int E, int K, int64_t group_tokens, int64_t capacity, moe_route_result *r);
bool moe_cuda_permute_host(const float *x, int64_t N, const int32_t *perm, int64_t Nk, int64_t D, float *xe);
bool moe_cuda_permute_backward_host(const float *dxe, int64_t Nk, const int32_t *slot, int64_t N, int K, int64_t D, float *dx);
bool moe_cuda_unpermute_host(const float *ye, int64_t Nk, const float *probs, int E, const int32_t *gidx, const int32_t *slot, int64_t N,
                             int K, int64_t D, float *y);
/* dye and dprobs are accumulated into (their host contents are copied in first); dgate is written. */
bool moe_cuda_unpermute_backward_host(const float *dy, int64_t N, const float *ye, const float *probs, int E, const int32_t *perm,
                                      const int32_t *gidx, int64_t Nk, int64_t D, float *dye, float *dgate, float *dprobs);

#ifdef __cplusplus
}
#endif
#endif
