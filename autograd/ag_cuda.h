/* Host-side entry points of the CUDA backend (autograd/cuda/). Every function exists in every build: without
 * SWITCHC_HAVE_CUDA they report that no device is available, so callers and tests need no #ifdef. */
#ifndef SX_AG_CUDA_H
#define SX_AG_CUDA_H

#include <stdbool.h>
#include <stdint.h>

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

#ifdef __cplusplus
}
#endif
#endif
