/* The CUDA backend against the CPU: SKIPPED (visibly) where no GPU is present. So far the backend has its first
 * kernel (relu) and host wrapper; each op of the GPU path joins this suite with its tolerance and reason. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>

#include "autograd/ag.h"
#include "autograd/ag_cuda.h"

Test(gpu, relu_matches_cpu) {
    if (ag_cuda_device_count() == 0) {
        printf("SKIPPED: gpu::relu_matches_cpu: no CUDA device (%s)\n", ag_cuda_describe());
        cr_skip_test("SKIPPED: no CUDA device (%s)", ag_cuda_describe());
    }
    enum { N = 1000003 };
    static float x[N], y[N];
    ag_rng_key k = ag_rng_make(1, 2, 3);
    for (int i = 0; i < N; i++) x[i] = 2 * ag_rng_uniform(k, (uint64_t)i) - 1;
    cr_assert(ag_cuda_relu_f32_host(x, y, N), "the CUDA relu failed");
    int bad = 0;
    for (int i = 0; i < N; i++) bad += y[i] != (x[i] > 0 ? x[i] : 0.0f); /* exact: max(x, 0) has one correct answer */
    cr_expect_eq(bad, 0, "%d of %d elements differ from the CPU", bad, N);
}
