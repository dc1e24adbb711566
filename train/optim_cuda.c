/* The CUDA implementation of the optimizer (train/optim_impl.h): each unit's spans handed to the kernels of
 * autograd/cuda/k_optim.cu, which repeat train/optim_cpu.c's arithmetic (the scalars by the same host expressions).
 * In a build without CUDA the entry points are autograd/cuda_stub.c's, and optim_init refuses AG_DEV_CUDA first. */
#include "train/optim_impl.h"

static void cuda_adamw(const optim_config *c, const optim_unit *u, double lr) {
    ag_cuda_adamw_step(u->w, u->g, u->m, u->v, u->n, lr, c->beta1, c->beta2, c->eps, c->weight_decay, u->decay, u->step);
}

static void cuda_adafactor(const optim_config *c, const optim_unit *u, double lr) {
    ag_cuda_adafactor_cfg ac = {
        .lr = lr,
        .weight_decay = c->weight_decay,
        .decay = u->decay,
        .beta1 = c->beta1_adafactor,
        .decay_rate = c->decay_rate,
        .clip_threshold = c->clip_threshold,
        .eps1 = c->eps1,
        .eps2 = c->eps2,
        .relative_step = c->relative_step,
        .scale_parameter = c->scale_parameter,
        .warmup_init = c->warmup_init,
    };
    ag_cuda_adafactor_step(&ac, u->w, u->g, u->m, u->v, u->row, u->col, u->ndim, u->shape, u->step);
}

const optim_backend optim_backend_cuda = {cuda_adamw, cuda_adafactor, ag_cuda_sumsq_sets, ag_cuda_scale_spans};
