/* The tape: ops append {op, inputs, output, saved}; backward walks it in reverse and adds into gradients
 * (DESIGN.md 2). Gradients are zeroed once per optimizer step, so accumulation over micro-batches is free. */
#include <stdlib.h>
#include <string.h>

#include "autograd/ag.h"
#include "autograd/ag_internal.h"

void ag_ctx_init(ag_ctx *ctx, ag_arena *act) {
    memset(ctx, 0, sizeof *ctx);
    ctx->act = act;
    ctx->grad_enabled = true;
    ctx->training = false;
    ctx->device = AG_DEV_CPU;
}

void ag_ctx_reset(ag_ctx *ctx) {
    ctx->tape_len = 0;
    ag_arena_reset(ctx->act);
}

void ag_ctx_free(ag_ctx *ctx) {
    free(ctx->tape);
    ctx->tape = NULL;
    ctx->tape_cap = ctx->tape_len = 0;
}

/* The tape array is the one thing kept outside the arena: it survives resets, so it grows during the first step
 * only. */
static void tape_push(ag_ctx *ctx, const ag_node *n) {
    if (ctx->tape_len == ctx->tape_cap) {
        int64_t cap = ctx->tape_cap ? 2 * ctx->tape_cap : 256;
        ag_node *t = realloc(ctx->tape, (size_t)cap * sizeof *t);
        SX_ASSERT(t, "out of host memory growing the tape to %lld nodes", (long long)cap);
        ctx->tape = t;
        ctx->tape_cap = cap;
    }
    ctx->tape[ctx->tape_len++] = *n;
}

ag_tensor *ag_run(ag_ctx *ctx, ag_node *n) {
    const ag_op_entry *e = &ag_op_table(ctx->device)[n->op];
    SX_ASSERT(e->forward, "op %s has no forward on this backend", e->name);
    e->forward(ctx, n);
    bool needs = false;
    if (ctx->grad_enabled)
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] && n->in[i]->requires_grad) needs = true;
    if (needs) {
        n->out->requires_grad = true;
        tape_push(ctx, n);
    }
    return n->out;
}

ag_tensor *ag_grad_of(ag_ctx *ctx, ag_tensor *t) {
    if (!t->grad) {
        ag_dtype gdt = t->dtype == AG_F64 ? AG_F64 : AG_F32;
        t->grad = ag_tensor_zeros(ctx->act, gdt, t->ndim, t->shape);
    }
    return t->grad;
}

void ag_zero_grad(ag_tensor *t) {
    if (t->grad) ag_fill(t->grad, 0.0);
}

void ag_backward_seed(ag_ctx *ctx, ag_tensor *out, const ag_tensor *seed) {
    SX_ASSERT(out->requires_grad, "backward from a tensor that does not require grad (no parameter reached it, or no-grad mode)");
    ag_tensor *g = ag_grad_of(ctx, out);
    if (seed) {
        SX_ASSERT(seed->numel == out->numel, "backward seed has %lld elements, output %lld", (long long)seed->numel, (long long)out->numel);
        for (int64_t i = 0; i < g->numel; i++) ag_set(g, i, ag_get(g, i) + ag_get(seed, i));
    } else {
        for (int64_t i = 0; i < g->numel; i++) ag_set(g, i, ag_get(g, i) + 1.0);
    }
    const ag_op_entry *table = ag_op_table(ctx->device);
    for (int64_t k = ctx->tape_len - 1; k >= 0; k--) {
        ag_node *n = &ctx->tape[k];
        if (!n->out->grad) continue; /* nothing flowed back into this op */
        if (!table[n->op].backward) SX_FATAL("op '%s' has no backward: it cannot be differentiated", table[n->op].name);
        table[n->op].backward(ctx, n);
    }
}

void ag_backward(ag_ctx *ctx, ag_tensor *loss) { ag_backward_seed(ctx, loss, NULL); }
