/* Stand-ins for the CUDA backend's host functions in builds without CUDA (-DSWITCHC_CUDA=OFF), so the rest of the
 * program and the GPU tests (which then print SKIPPED) link unchanged. */
#ifndef SWITCHC_HAVE_CUDA
#include "autograd/ag_cuda.h"

int ag_cuda_device_count(void) { return 0; }
const char *ag_cuda_describe(void) { return "built without CUDA"; }
bool ag_cuda_relu_f32_host(const float *x, float *y, int64_t n) {
    (void)x; (void)y; (void)n;
    return false;
}
#else
typedef int sx_cuda_stub_unused; /* ISO C forbids an empty translation unit */
#endif
