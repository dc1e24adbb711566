/* The tape: ops append {op, inputs, output, saved}; backward walks it in reverse and adds into gradients
 * (DESIGN.md 2). Gradients are zeroed once per optimizer step, so accumulation over micro-batches is free. */
#include <stdlib.h>
#include <string.h>

#include "autograd/ag.h"
#include "autograd/ag_cuda.h"
#include "autograd/ag_internal.h"

void ag_ctx_init(ag_ctx *ctx, ag_arena *act) {
    memset(ctx, 0, sizeof *ctx);
    ctx->act = act;
    ctx->grad_enabled = true;
    ctx->training = false;
    ctx->device = act ? act->device : AG_DEV_CPU;
}

void ag_ctx_init_eval(ag_ctx *ctx, ag_arena *act, const char *name, size_t initial_bytes) {
    ag_arena_init(act, name, initial_bytes);
    ag_ctx_init(ctx, act);
    ctx->grad_enabled = false;
}

void ag_ctx_free_eval(ag_ctx *ctx) {
    ag_arena *act = ctx->act;
    ag_ctx_free(ctx);
    ag_arena_free(act);
}

ag_arena *ag_ctx_host_arena(const ag_ctx *ctx) { return ctx->act->device == AG_DEV_CPU ? ctx->act : ctx->act->host; }

ag_tensor *ag_ctx_from_host(ag_ctx *ctx, ag_tensor *t) {
    SX_ASSERT(t->device == AG_DEV_CPU, "ag_ctx_from_host: the tensor is already on a device");
    return ctx->device == AG_DEV_CPU ? t : ag_tensor_to_device(ctx->act, t);
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

const char *ag_device_name(ag_device dev) { return dev == AG_DEV_CPU ? "cpu" : dev == AG_DEV_CUDA ? "cuda" : "?"; }

void ag_check_devices(const ag_ctx *ctx, const ag_node *n) {
    SX_ASSERT(!ctx->act || ctx->act->device == ctx->device, "%s: the context runs on %s but its arena '%s' lives on %s",
              ag_op_name(n->op), ag_device_name(ctx->device), ctx->act->name, ag_device_name(ctx->act->device));
    for (int i = 0; i < n->n_in; i++) {
        if (!n->in[i] || (n->op == AG_OP_GROUPED_MATMUL && i == 2)) continue; /* offsets: host-side by design */
        SX_ASSERT(n->in[i]->device == ctx->device, "%s: input %d (%s) lives on %s but the context runs on %s", ag_op_name(n->op), i,
                  n->in[i]->name ? n->in[i]->name : "unnamed", ag_device_name(n->in[i]->device), ag_device_name(ctx->device));
    }
}

ag_tensor *ag_run(ag_ctx *ctx, ag_node *n) {
    ag_check_devices(ctx, n);
    const ag_op_entry *e = &ag_op_table(ctx->device)[n->op];
    if (e->unsupported)
        SX_FATAL("op '%s' is not on %s: %s", ag_op_name(n->op), ag_device_name(ctx->device), e->unsupported);
    e->forward(ctx, n);
    bool needs = false;
    if (ctx->grad_enabled && ag_op_differentiable(n->op)) /* an AG_NOGRAD op is never recorded */
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
        SX_ASSERT(t->device == ctx->device, "gradient of a tensor on %s (%s) in a context on %s", ag_device_name(t->device),
                  t->name ? t->name : "unnamed", ag_device_name(ctx->device));
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
    if (seed) SX_ASSERT(seed->numel == out->numel, "backward seed has %lld elements, output %lld", (long long)seed->numel, (long long)out->numel);
    if (g->device == AG_DEV_CPU) {
        if (seed) {
            for (int64_t i = 0; i < g->numel; i++) ag_set(g, i, ag_get(g, i) + ag_get(seed, i));
        } else {
            for (int64_t i = 0; i < g->numel; i++) ag_set(g, i, ag_get(g, i) + 1.0);
        }
    } else {
        SX_ASSERT(g->dtype == AG_F32, "backward on %s: gradients must be f32, got %s", ag_device_name(g->device), ag_dtype_name(g->dtype));
        const ag_tensor *s = seed;
        if (seed && (seed->device != g->device || seed->dtype != g->dtype)) { /* a host or f64 seed: one copy */
            ag_tensor *c = ag_tensor_new(ctx->act, g->dtype, g->ndim, g->shape);
            ag_copy(c, seed);
            s = c;
        }
        ag_cuda_add_into(g, s);
    }
    for (int64_t k = ctx->tape_len - 1; k >= 0; k--) {
        ag_node *n = &ctx->tape[k];
        if (!n->out->grad) continue; /* nothing flowed back into this op */
        const ag_op_entry *e = &ag_op_table(n->out->device)[n->op]; /* the table of the device the op ran on */
        if (!e->backward) SX_FATAL("op '%s' has no backward: it cannot be differentiated", ag_op_name(n->op));
        e->backward(ctx, n);
    }
}

void ag_backward(ag_ctx *ctx, ag_tensor *loss) { ag_backward_seed(ctx, loss, NULL); }
