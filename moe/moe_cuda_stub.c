/* Stand-ins for moe/moe_cuda.h in builds without CUDA (-DSWITCHC_CUDA=OFF): every entry point reports that it did
 * nothing, so callers and the GPU tests (which then print SKIPPED) link unchanged. */
#ifndef SWITCHC_HAVE_CUDA
#include "moe/moe_cuda.h"

size_t moe_cuda_route_scratch_bytes(int64_t N, int E, int K, int64_t group_tokens) {
    (void)N, (void)E, (void)K, (void)group_tokens;
    return 0;
}
bool moe_cuda_route(const float *probs, int64_t N, int E, int K, int64_t group_tokens, int64_t capacity, const moe_route_dev *out,
                    void *scratch, size_t scratch_bytes) {
    (void)probs, (void)N, (void)E, (void)K, (void)group_tokens, (void)capacity, (void)out, (void)scratch, (void)scratch_bytes;
    return false;
}
bool moe_cuda_permute(const float *x, const int32_t *perm, int64_t Nk, int64_t D, float *xe) {
    (void)x, (void)perm, (void)Nk, (void)D, (void)xe;
    return false;
}
bool moe_cuda_permute_backward(const float *dxe, const int32_t *slot, int64_t N, int K, int64_t D, float *dx) {
    (void)dxe, (void)slot, (void)N, (void)K, (void)D, (void)dx;
    return false;
}
bool moe_cuda_unpermute(const float *ye, const float *probs, const int32_t *gidx, const int32_t *slot, int64_t N, int K, int64_t D,
                        float *y) {
    (void)ye, (void)probs, (void)gidx, (void)slot, (void)N, (void)K, (void)D, (void)y;
    return false;
}
bool moe_cuda_unpermute_backward(const float *dy, const float *ye, const float *probs, const int32_t *perm, const int32_t *gidx,
                                 int64_t Nk, int64_t D, float *dye, float *dgate, float *dprobs) {
    (void)dy, (void)ye, (void)probs, (void)perm, (void)gidx, (void)Nk, (void)D, (void)dye, (void)dgate, (void)dprobs;
    return false;
}
bool moe_cuda_route_host(const float *probs, int64_t N, int E, int K, int64_t group_tokens, int64_t capacity, moe_route_result *r) {
    (void)probs, (void)N, (void)E, (void)K, (void)group_tokens, (void)capacity, (void)r;
    return false;
}
bool moe_cuda_permute_host(const float *x, int64_t N, const int32_t *perm, int64_t Nk, int64_t D, float *xe) {
    (void)x, (void)N, (void)perm, (void)Nk, (void)D, (void)xe;
    return false;
}
bool moe_cuda_permute_backward_host(const float *dxe, int64_t Nk, const int32_t *slot, int64_t N, int K, int64_t D, float *dx) {
    (void)dxe, (void)Nk, (void)slot, (void)N, (void)K, (void)D, (void)dx;
    return false;
}
bool moe_cuda_unpermute_host(const float *ye, int64_t Nk, const float *probs, int E, const int32_t *gidx, const int32_t *slot, int64_t N,
                             int K, int64_t D, float *y) {
    (void)ye, (void)Nk, (void)probs, (void)E, (void)gidx, (void)slot, (void)N, (void)K, (void)D, (void)y;
    return false;
}
bool moe_cuda_unpermute_backward_host(const float *dy, int64_t N, const float *ye, const float *probs, int E, const int32_t *perm,
                                      const int32_t *gidx, int64_t Nk, int64_t D, float *dye, float *dgate, float *dprobs) {
    (void)dy, (void)N, (void)ye, (void)probs, (void)E, (void)perm, (void)gidx, (void)Nk, (void)D, (void)dye, (void)dgate, (void)dprobs;
    return false;
}
#else
typedef int moe_cuda_stub_unused; /* ISO C forbids an empty translation unit */
#endif
