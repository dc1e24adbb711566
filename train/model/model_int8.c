/* The model's 8-bit inference weights (train/model/model_int8.h): which parameters, their quantization, and the release
 * of their f32 pages (madvise: the flat parameter block stays one allocation, the pages of the quantized spans go
 * back to the system and the tensors lose their data pointer, so a path that still reads them fails at once). */
#include "train/model/model_int8.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* the parameters HF's load_in_8bit converts: nn.Linear weights except lm_head */
static bool converted(param_kind k) {
    switch (k) {
    case PK_ATTN_Q: case PK_ATTN_K: case PK_ATTN_V: case PK_ATTN_O: case PK_WI: case PK_WO: case PK_ROUTER:
        return true;
    case PK_EMBED: case PK_HEAD: case PK_RELBIAS: case PK_NORM: case PK_ROUTER_BIAS: case PK_LORA_A: case PK_LORA_B: /* adapters stay fp32 */
        return false;
    }
    return false;
}

sx_status model_quantize_int8(model *m, double threshold) {
    if (m->q8) return sx_errorf("model: already quantized to int8");
    if (m->dtype != AG_F32 || m->device != AG_DEV_CPU || !m->w)
        return sx_errorf("int8: only an f32 model on the CPU can be quantized");
    if (m->ep_size != 1) return sx_errorf("int8: the model must hold every expert (no expert parallelism)");
    m->q8 = calloc((size_t)m->n_params, sizeof *m->q8);
    SX_ASSERT(m->q8, "out of memory");
    long page = sysconf(_SC_PAGESIZE);
    for (int i = 0; i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        if (!converted(p->kind)) continue;
        int64_t n = p->n_experts ? p->n_experts : 1, O = p->shape[p->ndim - 2], I = p->shape[p->ndim - 1];
        ag_int8_weight *q = malloc(sizeof *q);
        SX_ASSERT(q, "out of memory");
        ag_int8_quantize(q, m->t[i]->data, n, O, I, threshold);
        m->q8[i] = q;
        /* the whole pages inside this tensor's span go back to the system */
        uintptr_t lo = (uintptr_t)m->t[i]->data, hi = lo + sizeof(float) * (size_t)p->numel;
        uintptr_t a = (lo + (uintptr_t)page - 1) & ~((uintptr_t)page - 1), z = hi & ~((uintptr_t)page - 1);
        if (z > a) madvise((void *)a, z - a, MADV_DONTNEED);
        m->t[i]->data = NULL;
    }
    /* a router's bias (router_bias configs) is its Linear8bitLt's bias, added before the outlier part */
    for (int b = 0; b < m->cfg.num_layers + m->cfg.num_decoder_layers; b++) {
        const block_params *bp = b < m->cfg.num_layers ? &m->enc[b] : &m->dec[b - m->cfg.num_layers];
        if (bp->sparse && bp->router_bias >= 0) m->q8[bp->router]->bias = m->t[bp->router_bias]->data;
    }
    return sx_ok();
}

void model_int8_free(model *m) {
    for (int i = 0; m->q8 && i < m->n_params; i++) {
        ag_int8_free(m->q8[i]);
        free(m->q8[i]);
    }
    free(m->q8);
    m->q8 = NULL;
}

size_t model_weight_bytes(const model *m) {
    size_t bytes = 0;
    for (int i = 0; i < m->n_params; i++)
        bytes += m->q8 && m->q8[i] ? ag_int8_bytes(m->q8[i]) : ag_dtype_size(m->dtype) * (size_t)m->params[i].numel;
    return bytes;
}

void model_int8_moe_weights(const model *m, const block_params *bp, moe_weights *w) {
    w->q_router = m->q8[bp->router];
    if (w->q_router->bias) w->router_b = NULL; /* added inside the int8 matmul, as bitsandbytes adds it */
    w->q_wi = bp->wi >= 0 ? m->q8[bp->wi] : NULL;
    w->q_wi0 = bp->wi0 >= 0 ? m->q8[bp->wi0] : NULL;
    w->q_wi1 = bp->wi1 >= 0 ? m->q8[bp->wi1] : NULL;
    w->q_wo = m->q8[bp->wo];
}
