/* Optimizers on flat float32 spans: every parameter is a descriptor (offset, shape) into one flat parameter buffer
 * and one flat gradient buffer with the same layout. AdamW as torch.optim.AdamW; Adafactor as
 * transformers.optimization.Adafactor (T5 and the Switch paper). An [E, F, D] expert block is E *units*, each updated
 * as the separate 2-D tensor transformers holds per expert: its own step count, factoring, RMS scale and update
 * clipping; a unit whose expert received no token is skipped like a torch parameter whose grad is None. State is
 * fp32, allocated once at init, on the optimizer's device.
 *
 * One interface, two implementations (train/optim_impl.h): the bookkeeping here (units, step counts, state layout,
 * checkpoint access) is shared, and each update is handed to the CPU implementation (train/optim_cpu.c) or the CUDA
 * one (train/optim_cuda.c over autograd/cuda/k_optim.cu) as the spans of one unit, chosen by optim_config.device,
 * the device the weights, gradients and state live on. The CUDA one computes what the CPU one computes: AdamW bit for
 * bit, Adafactor's second moments bit for bit and its weights within a float ulp per step (tests/gpu/test_gpu_optim.c).
 * The gradient norm and clipping of a step (optim_sumsq, optim_scale) dispatch by device the same way. */
#ifndef SX_TRAIN_OPTIM_H
#define SX_TRAIN_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/ag_cuda.h"
#include "autograd/sx_error.h"

typedef struct {
    const char *name;      /* HF name (expert blocks: with %d) */
    int64_t offset;        /* into the flat buffers, in floats */
    int ndim;
    int64_t shape[4];
    bool decay;            /* weight decay applies (not norms, biases, the relative-position table) */
    int batch_dims;        /* 0, or 1: the leading dim indexes independent units (the experts of a block) */
    bool frozen;           /* no update, no state change */
} optim_param;

typedef enum { OPTIM_ADAMW, OPTIM_ADAFACTOR } optim_kind;

typedef struct {
    optim_kind kind;
    double lr;
    double weight_decay;
    double beta1, beta2, eps;   /* AdamW */
    double decay_rate;          /* Adafactor: beta2_t = 1 - t^decay_rate, HF's sign convention (-0.8) */
    double clip_threshold;      /* Adafactor update clipping (1.0) */
    double eps1, eps2;          /* Adafactor (1e-30, 1e-3) */
    bool relative_step, scale_parameter, warmup_init;
    double beta1_adafactor;     /* 0 = no first moment (T5's default) */
    ag_device device;           /* where weights, gradients and state live: AG_DEV_CPU (0, the default) or AG_DEV_CUDA */
} optim_config;

typedef struct optim optim;

/* Errors: bad hyper-parameters or descriptors, AG_DEV_CUDA without a CUDA device, no memory for the state. */
sx_status optim_init(optim **out, const optim_config *cfg, const optim_param *params, int n_params);
/* Units: every parameter is shape[0] units when batch_dims is 1, else one; unit u of parameter i is
 * optim_unit_first(o, i) + u. */
int64_t optim_unit_count(const optim *o);
int64_t optim_unit_first(const optim *o, int i);
/* One update with learning rate lr (Adafactor with relative_step ignores lr) of every non-frozen unit u with
 * active[u] != 0 (active NULL: all); an updated unit's step count advances first (1-based, as torch's state["step"]),
 * a skipped one keeps its count, weights and state. w and g are the flat buffers on the optimizer's device (a CUDA
 * step is queued on the one stream and does not wait for it); active and the step counts are host memory. */
void optim_step(optim *o, float *w, const float *g, double lr, const uint8_t *active);
/* The step counts of every unit (optim_unit_count of them): read for checkpoints, written on resume. */
int64_t *optim_step_counts(optim *o);
/* State arrays for checkpoints, each with a stable name. data is host memory: for a CUDA optimizer, the host copy
 * that optim_state_to_host refreshes and optim_state_to_device sends back (both no-ops on the CPU). */
int optim_state_count(const optim *o);
void optim_state_get(const optim *o, int i, const char **name, float **data, int64_t *numel);
/* The parameter (index into the descriptors given to optim_init) that state array i belongs to. */
int optim_state_param(const optim *o, int i);
void optim_state_to_host(optim *o);
void optim_state_to_device(optim *o);
/* Bytes of state on the optimizer's device (0 for a CPU optimizer). */
int64_t optim_device_bytes(const optim *o);
void optim_free(optim *o);

/* ---- gradient spans: the norm and clipping of a step, on the spans' device ---------------------------------------- */
typedef ag_cuda_span optim_span; /* offset, numel in floats from a base pointer */
/* out[k] = the sum of x^2 (in double) over the spans j with set[j] == k (set NULL: every span in set 0), k < n_sets;
 * a NaN or Inf value makes its set's sum non-finite. CPU: each span summed in order, then added to its set. CUDA: a
 * deterministic two-pass device reduction and one copy of the n_sets sums (the step's one host wait); the order
 * differs from the CPU's, so the sums agree to about n * 2^-53 relative. */
void optim_sumsq(ag_device dev, const float *base, const optim_span *spans, const int *set, int n_spans, int n_sets, double *out);
/* x *= c over the spans (clipping), bit for bit the same float multiply on both devices. */
void optim_scale(ag_device dev, float *base, const optim_span *spans, int n_spans, float c);

/* Global L2 norm over the non-frozen parameters (accumulated in double), host memory. */
double optim_grad_norm(const float *g, const optim_param *p, int n);
/* torch.nn.utils.clip_grad_norm_: scales g by max_norm / (norm + 1e-6) when that is < 1. Returns the norm. */
double optim_clip_grad_norm(float *g, const optim_param *p, int n, double max_norm);

#endif
