/* Op constructors: check shapes and arguments (naming the op and the shapes), allocate the output in the
 * activation arena, fill the tape node, and hand it to the backend's forward through the op table. */
#include <math.h>
#include <string.h>

#include "autograd/ag.h"
#include "autograd/ag_cuda.h"
#include "autograd/ag_internal.h"

#define SHAPES2(a, b)                                                                                                 \
    char sa_[96], sb_[96];                                                                                            \
    ag_shape_str((a), sa_, sizeof sa_);                                                                               \
    ag_shape_str((b), sb_, sizeof sb_)

static void check_float(const char *op, const ag_tensor *t) {
    char s[96];
    SX_ASSERT(t, "%s: input is NULL", op);
    SX_ASSERT(ag_dtype_is_float(t->dtype), "%s: input must be f32 or f64, got %s", op, ag_shape_str(t, s, sizeof s));
}

static void check_same_dtype(const char *op, const ag_tensor *a, const ag_tensor *b) {
    SHAPES2(a, b);
    SX_ASSERT(a->dtype == b->dtype, "%s: dtypes differ: %s and %s", op, sa_, sb_);
}

static void check_index(const char *op, const ag_tensor *t) {
    char s[96];
    SX_ASSERT(t && t->dtype == AG_I32, "%s: indices must be i32, got %s", op, t ? ag_shape_str(t, s, sizeof s) : "NULL");
}

/* The first position whose index v breaks lo <= v < hi (and is not also_ok), or -1. Device indices are checked
 * by a reduction on the device; reporting one costs a synchronisation, as every ag_get of a device tensor does. */
static int64_t first_bad_index(const ag_tensor *idx, int64_t lo, int64_t hi, int64_t also_ok) {
    if (idx->device != AG_DEV_CPU) return ag_cuda_first_bad_index(idx, lo, hi, also_ok);
    const int32_t *v = idx->data;
    for (int64_t i = 0; i < idx->numel; i++)
        if (!(v[i] >= lo && v[i] < hi) && v[i] != also_ok) return i;
    return -1;
}

static ag_node node_new(ag_op op, int n_in, ag_tensor *a, ag_tensor *b, ag_tensor *c, ag_tensor *d) {
    ag_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.n_in = n_in;
    n.in[0] = a;
    n.in[1] = b;
    n.in[2] = c;
    n.in[3] = d;
    return n;
}

static ag_tensor *out_like(ag_ctx *ctx, const ag_tensor *x) { return ag_tensor_new(ctx->act, x->dtype, x->ndim, x->shape); }

/* ---- broadcasting --------------------------------------------------------------------------------------------- */

void ag_pad4(const ag_tensor *t, int64_t s4[4]) {
    int off = 4 - t->ndim;
    for (int i = 0; i < 4; i++) s4[i] = i < off ? 1 : t->shape[i - off];
}

void ag_bcast_strides(const ag_tensor *t, const int64_t out4[4], int64_t st[4]) {
    int64_t s4[4];
    ag_pad4(t, s4);
    int64_t stride = 1;
    for (int i = 3; i >= 0; i--) {
        st[i] = (s4[i] == 1 && out4[i] != 1) ? 0 : stride;
        stride *= s4[i];
    }
}

/* The broadcast shape of a and b (numpy rules), or an error naming the op and both shapes. */
static int bcast_shape(const char *op, const ag_tensor *a, const ag_tensor *b, int64_t out[4]) {
    int64_t a4[4], b4[4];
    ag_pad4(a, a4);
    ag_pad4(b, b4);
    for (int i = 0; i < 4; i++) {
        SHAPES2(a, b);
        SX_ASSERT(a4[i] == b4[i] || a4[i] == 1 || b4[i] == 1, "%s: shapes %s and %s do not broadcast", op, sa_, sb_);
        out[i] = a4[i] > b4[i] ? a4[i] : b4[i];
    }
    return a->ndim > b->ndim ? a->ndim : b->ndim;
}

static ag_tensor *binary(ag_ctx *ctx, ag_op op, ag_tensor *a, ag_tensor *b) {
    const char *name = ag_op_name(op);
    check_float(name, a);
    check_float(name, b);
    check_same_dtype(name, a, b);
    int64_t o4[4];
    int nd = bcast_shape(name, a, b, o4);
    ag_node n = node_new(op, 2, a, b, NULL, NULL);
    n.out = ag_tensor_new(ctx->act, a->dtype, nd, o4 + (4 - nd));
    return ag_run(ctx, &n);
}

ag_tensor *ag_add(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) { return binary(ctx, AG_OP_ADD, a, b); }
ag_tensor *ag_mul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) { return binary(ctx, AG_OP_MUL, a, b); }

/* ---- matmul ---------------------------------------------------------------------------------------------------- */

/* C = op(A) op(B). A [.., M, K] (trans: [.., K, M]); B [K, N] shared by every row of A (trans: [N, K]), or batched
 * [.., K, N] with the same leading dims as A. A shared B flattens A's leading dims into M. */
ag_tensor *ag_matmul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b, bool ta, bool tb) {
    check_float("matmul", a);
    check_float("matmul", b);
    check_same_dtype("matmul", a, b);
    SHAPES2(a, b);
    SX_ASSERT(a->ndim >= 2 && b->ndim >= 2, "matmul: operands need 2+ dims, got %s and %s", sa_, sb_);
    int64_t M = ta ? a->shape[a->ndim - 1] : a->shape[a->ndim - 2];
    int64_t K = ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
    int64_t Kb = tb ? b->shape[b->ndim - 1] : b->shape[b->ndim - 2];
    int64_t N = tb ? b->shape[b->ndim - 2] : b->shape[b->ndim - 1];
    SX_ASSERT(K == Kb, "matmul%s%s: inner dims differ: %s and %s", ta ? " (A transposed)" : "", tb ? " (B transposed)" : "", sa_, sb_);
    int64_t batch = 1;
    for (int i = 0; i < a->ndim - 2; i++) batch *= a->shape[i];
    bool b_batched = b->ndim > 2;
    if (b_batched) {
        SX_ASSERT(b->ndim == a->ndim, "matmul: batched operands need the same number of dims: %s and %s", sa_, sb_);
        for (int i = 0; i < a->ndim - 2; i++)
            SX_ASSERT(a->shape[i] == b->shape[i], "matmul: batch dims differ: %s and %s", sa_, sb_);
    } else {
        SX_ASSERT(!ta || a->ndim == 2, "matmul: a transposed A with a shared B must be 2-D, got %s", sa_);
    }
    int64_t shape[AG_MAX_DIMS];
    for (int i = 0; i < a->ndim - 2; i++) shape[i] = a->shape[i];
    shape[a->ndim - 2] = M;
    shape[a->ndim - 1] = N;
    ag_node n = node_new(AG_OP_MATMUL, 2, a, b, NULL, NULL);
    n.out = ag_tensor_new(ctx->act, a->dtype, a->ndim, shape);
    n.ip[0] = ta;
    n.ip[1] = tb;
    n.ip[2] = batch;
    n.ip[3] = M;
    n.ip[4] = N;
    n.ip[5] = K;
    n.ip[6] = b_batched;
    n.ip[7] = ctx->mixed_bf16;
    return ag_run(ctx, &n);
}

/* ---- elementwise ------------------------------------------------------------------------------------------------ */

static ag_tensor *unary(ag_ctx *ctx, ag_op op, ag_tensor *x) {
    check_float(ag_op_name(op), x);
    ag_node n = node_new(op, 1, x, NULL, NULL, NULL);
    n.out = out_like(ctx, x);
    return ag_run(ctx, &n);
}

ag_tensor *ag_relu(ag_ctx *ctx, ag_tensor *x) { return unary(ctx, AG_OP_RELU, x); }
ag_tensor *ag_gelu_tanh(ag_ctx *ctx, ag_tensor *x) { return unary(ctx, AG_OP_GELU_TANH, x); }
ag_tensor *ag_gelu_erf(ag_ctx *ctx, ag_tensor *x) { return unary(ctx, AG_OP_GELU_ERF, x); }
ag_tensor *ag_square(ag_ctx *ctx, ag_tensor *x) { return unary(ctx, AG_OP_SQUARE, x); }

ag_tensor *ag_act(ag_ctx *ctx, ag_act_kind kind, ag_tensor *x) {
    switch (kind) {
    case AG_ACT_RELU: return ag_relu(ctx, x);
    case AG_ACT_GELU_ERF: return ag_gelu_erf(ctx, x);
    case AG_ACT_GELU_TANH: return ag_gelu_tanh(ctx, x);
    case AG_ACT_LINEAR: return x;
    default: break;
    }
    SX_ASSERT(kind >= 0 && kind < AG_ACT_COUNT, "act: unknown activation %d", (int)kind);
    check_float("act", x);
    ag_node n = node_new(AG_OP_ACT, 1, x, NULL, NULL, NULL);
    n.out = out_like(ctx, x);
    n.ip[0] = kind;
    return ag_run(ctx, &n);
}

ag_tensor *ag_scale(ag_ctx *ctx, ag_tensor *x, double s) {
    check_float("scale", x);
    ag_node n = node_new(AG_OP_SCALE, 1, x, NULL, NULL, NULL);
    n.out = out_like(ctx, x);
    n.fp[0] = s;
    return ag_run(ctx, &n);
}

/* f32 <-> f64 (gradient checks on the CPU) and f32 <-> bf16 (storage of activations and weights on the GPU). The
 * gradient of a bf16 tensor is f32. */
ag_tensor *ag_cast(ag_ctx *ctx, ag_tensor *x, ag_dtype dt) {
    char s[96];
    SX_ASSERT(x && (ag_dtype_is_float(x->dtype) || x->dtype == AG_BF16), "cast: input must be f32, f64 or bf16, got %s",
              x ? ag_shape_str(x, s, sizeof s) : "NULL");
    SX_ASSERT(ag_dtype_is_float(dt) || dt == AG_BF16, "cast: target must be f32, f64 or bf16, got %s", ag_dtype_name(dt));
    if (x->dtype == dt) return x;
    ag_node n = node_new(AG_OP_CAST, 1, x, NULL, NULL, NULL);
    n.out = ag_tensor_new(ctx->act, dt, x->ndim, x->shape);
    return ag_run(ctx, &n);
}

ag_tensor *ag_rmsnorm(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, double eps) {
    check_float("rmsnorm", x);
    check_float("rmsnorm", w);
    check_same_dtype("rmsnorm", x, w);
    SHAPES2(x, w);
    SX_ASSERT(w->ndim == 1 && w->shape[0] == x->shape[x->ndim - 1], "rmsnorm: weight %s does not match the last dim of %s", sb_, sa_);
    SX_ASSERT(eps >= 0, "rmsnorm: eps %g < 0", eps);
    ag_node n = node_new(AG_OP_RMSNORM, 2, x, w, NULL, NULL);
    n.out = out_like(ctx, x);
    int64_t rows = x->numel / x->shape[x->ndim - 1];
    n.saved[0] = ag_tensor_new(ctx->act, x->dtype, 1, AG_SHAPE(rows)); /* 1/rms per row */
    n.fp[0] = eps;
    return ag_run(ctx, &n);
}

ag_tensor *ag_softmax(ag_ctx *ctx, ag_tensor *x, ag_tensor *bias, ag_tensor *mask) {
    check_float("softmax", x);
    int64_t o4[4], x4[4];
    ag_pad4(x, x4);
    ag_tensor *extra[2] = {bias, mask};
    for (int k = 0; k < 2; k++) {
        if (!extra[k]) continue;
        check_float("softmax", extra[k]);
        check_same_dtype("softmax", x, extra[k]);
        bcast_shape("softmax", x, extra[k], o4);
        SHAPES2(x, extra[k]);
        for (int i = 0; i < 4; i++) SX_ASSERT(o4[i] == x4[i], "softmax: %s %s must broadcast to the scores %s", k ? "mask" : "bias", sb_, sa_);
    }
    ag_node n = node_new(AG_OP_SOFTMAX, 3, x, bias, mask, NULL);
    n.out = out_like(ctx, x);
    return ag_run(ctx, &n);
}

/* The output of a reduction over the last dim: x's shape without it ([1] for a vector). */
static ag_tensor *reduced_last(ag_ctx *ctx, const ag_tensor *x) {
    if (x->ndim == 1) return ag_tensor_new(ctx->act, x->dtype, 1, AG_SHAPE(1));
    return ag_tensor_new(ctx->act, x->dtype, x->ndim - 1, x->shape);
}

ag_tensor *ag_logsumexp(ag_ctx *ctx, ag_tensor *x) {
    check_float("logsumexp", x);
    ag_node n = node_new(AG_OP_LOGSUMEXP, 1, x, NULL, NULL, NULL);
    n.out = reduced_last(ctx, x);
    return ag_run(ctx, &n);
}

ag_tensor *ag_embedding(ag_ctx *ctx, ag_tensor *w, ag_tensor *idx) {
    check_float("embedding", w);
    check_index("embedding", idx);
    SX_ASSERT(w->ndim == 2, "embedding: table must be [V, D]");
    SX_ASSERT(idx->ndim < AG_MAX_DIMS, "embedding: indices with %d dims leave no room for D", idx->ndim);
    int64_t bad = first_bad_index(idx, 0, w->shape[0], INT64_MIN); /* INT64_MIN: no exception */
    if (bad >= 0) SX_FATAL("embedding: index %d at position %lld outside [0, %lld)", (int)ag_get(idx, bad), (long long)bad, (long long)w->shape[0]);
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, idx->shape, sizeof(int64_t) * idx->ndim);
    shape[idx->ndim] = w->shape[1];
    ag_node n = node_new(AG_OP_EMBEDDING, 2, w, idx, NULL, NULL);
    n.out = ag_tensor_new(ctx->act, w->dtype, idx->ndim + 1, shape);
    return ag_run(ctx, &n);
}

ag_tensor *ag_dropout(ag_ctx *ctx, ag_tensor *x, double p, ag_rng_key key) {
    check_float("dropout", x);
    SX_ASSERT(p >= 0 && p < 1, "dropout: rate %g outside [0, 1)", p);
    if (!ctx->training || p == 0) return x;
    ag_node n = node_new(AG_OP_DROPOUT, 1, x, NULL, NULL, NULL);
    n.out = out_like(ctx, x);
    n.fp[0] = p;
    n.key = key;
    return ag_run(ctx, &n);
}

ag_tensor *ag_reshape(ag_ctx *ctx, ag_tensor *x, int ndim, const int64_t *shape) {
    int64_t numel = 1, infer = -1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == -1) {
            SX_ASSERT(infer < 0, "reshape: more than one -1");
            infer = i;
        } else
            numel *= shape[i];
    }
    int64_t s[AG_MAX_DIMS];
    memcpy(s, shape, sizeof(int64_t) * ndim);
    if (infer >= 0) s[infer] = numel ? x->numel / numel : 0;
    int64_t total = 1;
    for (int i = 0; i < ndim; i++) total *= s[i];
    char sx[96];
    SX_ASSERT(total == x->numel, "reshape: %s has %lld elements, the new shape %lld", ag_shape_str(x, sx, sizeof sx), (long long)x->numel, (long long)total);
    ag_node n = node_new(AG_OP_RESHAPE, 1, x, NULL, NULL, NULL);
    n.out = ag_tensor_view(ctx->act, x->dtype, ndim, s, x->data);
    return ag_run(ctx, &n);
}

ag_tensor *ag_permute(ag_ctx *ctx, ag_tensor *x, const int *perm) {
    int seen = 0;
    int64_t shape[AG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        SX_ASSERT(perm[i] >= 0 && perm[i] < x->ndim && !(seen & (1 << perm[i])), "permute: not a permutation of %d dims", x->ndim);
        seen |= 1 << perm[i];
        shape[i] = x->shape[perm[i]];
    }
    ag_node n = node_new(AG_OP_PERMUTE, 1, x, NULL, NULL, NULL);
    n.out = ag_tensor_new(ctx->act, x->dtype, x->ndim, shape);
    for (int i = 0; i < x->ndim; i++) n.ip[i] = perm[i];
    return ag_run(ctx, &n);
}

ag_tensor *ag_transpose(ag_ctx *ctx, ag_tensor *x, int d0, int d1) {
    SX_ASSERT(d0 >= 0 && d0 < x->ndim && d1 >= 0 && d1 < x->ndim, "transpose: dims %d, %d of a %d-dim tensor", d0, d1, x->ndim);
    int perm[AG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) perm[i] = i;
    perm[d0] = d1;
    perm[d1] = d0;
    return ag_permute(ctx, x, perm);
}

ag_tensor *ag_sum(ag_ctx *ctx, ag_tensor *x) {
    check_float("sum", x);
    ag_node n = node_new(AG_OP_SUM, 1, x, NULL, NULL, NULL);
    n.out = ag_tensor_new(ctx->act, x->dtype, 1, AG_SHAPE(1));
    return ag_run(ctx, &n);
}

ag_tensor *ag_sum_last(ag_ctx *ctx, ag_tensor *x) {
    check_float("sum_last", x);
    ag_node n = node_new(AG_OP_SUM_LAST, 1, x, NULL, NULL, NULL);
    n.out = reduced_last(ctx, x);
    return ag_run(ctx, &n);
}

ag_tensor *ag_cross_entropy(ag_ctx *ctx, ag_tensor *logits, ag_tensor *labels) {
    check_float("cross_entropy", logits);
    check_index("cross_entropy", labels);
    SHAPES2(logits, labels);
    SX_ASSERT(logits->ndim == 2 && labels->numel == logits->shape[0], "cross_entropy: logits %s need [N, V] with N = labels %s", sa_, sb_);
    int64_t V = logits->shape[1];
    int64_t bad = first_bad_index(labels, 0, V, AG_IGNORE_INDEX);
    if (bad >= 0) SX_FATAL("cross_entropy: label %d at row %lld outside [0, %lld) and not -100", (int)ag_get(labels, bad), (long long)bad, (long long)V);
    ag_node n = node_new(AG_OP_CROSS_ENTROPY, 2, logits, labels, NULL, NULL);
    n.out = ag_tensor_new(ctx->act, logits->dtype, 1, AG_SHAPE(1));
    n.saved[0] = ag_tensor_new(ctx->act, logits->dtype, 1, AG_SHAPE(logits->shape[0])); /* lse per row */
    return ag_run(ctx, &n);
}

ag_tensor *ag_gather_rows(ag_ctx *ctx, ag_tensor *x, ag_tensor *idx) {
    check_float("gather_rows", x);
    check_index("gather_rows", idx);
    SX_ASSERT(x->ndim == 2 && idx->ndim == 1, "gather_rows: x must be [N, D] and idx [M]");
    int64_t bad = first_bad_index(idx, INT32_MIN, x->shape[0], INT32_MIN); /* negative: a zero row */
    if (bad >= 0) SX_FATAL("gather_rows: index %d >= %lld rows", (int)ag_get(idx, bad), (long long)x->shape[0]);
    ag_node n = node_new(AG_OP_GATHER_ROWS, 2, x, idx, NULL, NULL);
    n.out = ag_tensor_new(ctx->act, x->dtype, 2, AG_SHAPE(idx->numel, x->shape[1]));
    return ag_run(ctx, &n);
}

ag_tensor *ag_scatter_rows(ag_ctx *ctx, ag_tensor *x, ag_tensor *idx, int64_t n_rows) {
    check_float("scatter_rows", x);
    check_index("scatter_rows", idx);
    SX_ASSERT(x->ndim == 2 && idx->ndim == 1 && idx->numel == x->shape[0], "scatter_rows: x must be [M, D] and idx [M]");
    int64_t bad = first_bad_index(idx, INT32_MIN, n_rows, INT32_MIN); /* negative: the row is dropped */
    if (bad >= 0) SX_FATAL("scatter_rows: index %d >= %lld rows", (int)ag_get(idx, bad), (long long)n_rows);
    ag_node n = node_new(AG_OP_SCATTER_ROWS, 2, x, idx, NULL, NULL);
    n.out = ag_tensor_new(ctx->act, x->dtype, 2, AG_SHAPE(n_rows, x->shape[1]));
    return ag_run(ctx, &n);
}

ag_tensor *ag_grouped_matmul(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *offsets, bool trans_w) {
    check_float("grouped_matmul", x);
    check_float("grouped_matmul", w);
    check_same_dtype("grouped_matmul", x, w);
    SHAPES2(x, w);
    SX_ASSERT(x->ndim == 2 && w->ndim == 3, "grouped_matmul: x must be [N, in] and w [E, .., ..], got %s and %s", sa_, sb_);
    int64_t E = w->shape[0], in = trans_w ? w->shape[2] : w->shape[1], out = trans_w ? w->shape[1] : w->shape[2];
    SX_ASSERT(in == x->shape[1], "grouped_matmul: x %s does not match the experts' input size in %s", sa_, sb_);
    SX_ASSERT(offsets && offsets->dtype == AG_I64 && offsets->numel == E + 1, "grouped_matmul: offsets must be i64 [E+1] = [%lld]", (long long)(E + 1));
    if (offsets->device != AG_DEV_CPU) { /* the group sizes drive the GEMM launches from the host: one copy */
        ag_tensor *h = ag_tensor_new(ag_arena_host_side(ctx->act), AG_I64, 1, AG_SHAPE(E + 1));
        ag_copy(h, offsets);
        offsets = h;
    }
    const int64_t *o = offsets->data;
    SX_ASSERT(o[0] == 0 && o[E] <= x->shape[0], "grouped_matmul: offsets must start at 0 and end within the %lld rows", (long long)x->shape[0]);
    for (int64_t e = 0; e < E; e++) SX_ASSERT(o[e] <= o[e + 1], "grouped_matmul: offsets decrease at expert %lld", (long long)e);
    ag_node n = node_new(AG_OP_GROUPED_MATMUL, 3, x, w, offsets, NULL);
    n.out = ag_tensor_new(ctx->act, x->dtype, 2, AG_SHAPE(x->shape[0], out));
    n.ip[0] = trans_w;
    n.ip[1] = ctx->mixed_bf16;
    return ag_run(ctx, &n);
}

ag_tensor *ag_custom(ag_ctx *ctx, ag_tensor *x, int ndim, const int64_t *out_shape, const ag_custom_fn *fn) {
    check_float("custom", x);
    SX_ASSERT(fn && fn->forward && fn->backward, "custom op %s: forward and backward are required", fn && fn->name ? fn->name : "?");
    ag_node n = node_new(AG_OP_CUSTOM, 1, x, NULL, NULL, NULL);
    n.out = ag_tensor_new(ctx->act, x->dtype, ndim, out_shape);
    n.custom = fn;
    return ag_run(ctx, &n);
}
