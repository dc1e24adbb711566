/* Stand-ins for the CUDA backend's host functions in builds without CUDA (-DSWITCHC_CUDA=OFF), so the rest of the
 * program and the GPU tests (which then print SKIPPED) link unchanged. Queries answer "no device"; anything that
 * would need one aborts with a message naming the build. */
#ifndef SWITCHC_HAVE_CUDA
#include "autograd/ag_cuda.h"

#define NO_CUDA(what) SX_FATAL("%s needs the CUDA backend, but this build has none (configure with -DSWITCHC_CUDA=ON and nvcc)", what)

int ag_cuda_device_count(void) { return 0; }
const char *ag_cuda_describe(void) { return "built without CUDA"; }
bool ag_cuda_relu_f32_host(const float *x, float *y, int64_t n) {
    (void)x; (void)y; (void)n;
    return false;
}
void ag_cuda_synchronize(const char *what) { (void)what; }
void *ag_cuda_stream(void) { return NULL; }
void *ag_cuda_malloc(size_t bytes, const char *what) {
    (void)bytes;
    SX_FATAL("device arena '%s' needs the CUDA backend, but this build has none (configure with -DSWITCHC_CUDA=ON and nvcc)", what ? what : "?");
}
void ag_cuda_free(void *p) { (void)p; NO_CUDA("ag_cuda_free"); }
void ag_cuda_memset0(void *p, size_t bytes) { (void)p; (void)bytes; NO_CUDA("a device memset"); }
void ag_cuda_memcpy(void *dst, const void *src, size_t bytes, ag_copy_kind kind) {
    (void)dst; (void)src; (void)bytes; (void)kind;
    NO_CUDA("a device copy");
}
void ag_cuda_fill(ag_tensor *t, double v) { (void)t; (void)v; NO_CUDA("ag_fill of a device tensor"); }
void ag_cuda_convert(ag_tensor *dst, const ag_tensor *src) { (void)dst; (void)src; NO_CUDA("a device conversion"); }
void ag_cuda_add_into(ag_tensor *dst, const ag_tensor *src) { (void)dst; (void)src; NO_CUDA("a device gradient seed"); }
int64_t ag_cuda_first_bad_index(const ag_tensor *idx, int64_t lo, int64_t hi, int64_t also_ok) {
    (void)idx; (void)lo; (void)hi; (void)also_ok;
    NO_CUDA("an index check on the device");
}
void ag_cuda_philox_host(ag_rng_key k, uint64_t first, int64_t n, uint32_t *out4) {
    (void)k; (void)first; (void)n; (void)out4;
    NO_CUDA("ag_cuda_philox_host");
}
const ag_op_entry *ag_cuda_op_table(void) { NO_CUDA("the CUDA op table"); }
void ag_cuda_sumsq_sets(const float *base, const ag_cuda_span *spans, const int *set, int n_spans, int n_sets, double *out) {
    (void)base; (void)spans; (void)set; (void)n_spans; (void)n_sets; (void)out;
    NO_CUDA("the gradient norm on the device");
}
void ag_cuda_scale_spans(float *base, const ag_cuda_span *spans, int n_spans, float c) {
    (void)base; (void)spans; (void)n_spans; (void)c;
    NO_CUDA("gradient scaling on the device");
}
void ag_cuda_adamw_step(float *w, const float *g, float *m, float *v, int64_t n, double lr, double beta1, double beta2, double eps,
                        double weight_decay, bool decay, int64_t step) {
    (void)w; (void)g; (void)m; (void)v; (void)n; (void)lr; (void)beta1; (void)beta2; (void)eps; (void)weight_decay; (void)decay; (void)step;
    NO_CUDA("the AdamW step on the device");
}
void ag_cuda_adafactor_step(const ag_cuda_adafactor_cfg *c, float *w, const float *g, float *m, float *v, float *row, float *col, int ndim,
                            const int64_t *shape, int64_t step) {
    (void)c; (void)w; (void)g; (void)m; (void)v; (void)row; (void)col; (void)ndim; (void)shape; (void)step;
    NO_CUDA("the Adafactor step on the device");
}
#else
typedef int sx_cuda_stub_unused; /* ISO C forbids an empty translation unit */
#endif
