/* autograd: tensors, arenas, the op table and a tape-based reverse mode.
 * Knows nothing about T5, MoE or ranks (DESIGN.md 1-2). The ops are listed once, in autograd/ag_ops.def. Every
 * differentiable op has a CPU forward and backward (autograd/cpu/) and is checked by finite differences on its cases
 * of tests/op_cases.h (tests/test_autograd_grad.c). */
#ifndef SX_AG_H
#define SX_AG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/ag_rng.h"
#include "autograd/sx_error.h"

#ifdef __cplusplus /* the CUDA backend includes this from C++ */
extern "C" {
#endif

/* ---- tensors ------------------------------------------------------------------------------------------------------ */

typedef enum { AG_F32, AG_F64, AG_BF16, AG_I32, AG_I64, AG_DTYPE_COUNT } ag_dtype;
typedef enum { AG_DEV_CPU, AG_DEV_CUDA, AG_DEV_COUNT } ag_device;
#define AG_MAX_DIMS 4

typedef struct ag_tensor ag_tensor;
struct ag_tensor {
    ag_dtype dtype;
    ag_device device;
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    int64_t numel;
    void *data;          /* row-major, contiguous, owned by an arena */
    ag_tensor *grad;     /* same shape and float dtype; NULL until backward (parameters: preallocated) */
    bool requires_grad;
    const char *name;    /* optional: parameters carry their HF name, for messages */
};

size_t ag_dtype_size(ag_dtype dt);
const char *ag_dtype_name(ag_dtype dt);
bool ag_dtype_is_float(ag_dtype dt); /* f32, f64 (bf16 is storage only) */

/* bf16 <-> f32: round to nearest even; NaN stays NaN. Widening is exact. */
uint16_t ag_bf16_from_f32(float x);
float ag_f32_from_bf16(uint16_t b);
void ag_bf16_from_f32_n(uint16_t *dst, const float *src, int64_t n);
void ag_f32_from_bf16_n(float *dst, const uint16_t *src, int64_t n);

/* "[2, 3, 4]" into a caller buffer; for error messages. */
const char *ag_shape_str(const ag_tensor *t, char *buf, size_t cap);

/* ---- arenas: one per lifetime (parameters, gradients, optimizer state, activations, scratch) ---------------------- */
/* A bump allocator made of blocks. The first pass through a step may add blocks; ag_arena_reset() then merges them
 * into one, so every later step allocates nothing from the system (DESIGN.md 2, "no malloc inside a step").
 * A device arena (ag_arena_init_device) takes its blocks from cudaMalloc, one per block, with the same bump
 * allocation and reset-merge; tensor headers and other host-side bookkeeping go to its companion host arena. */
typedef struct ag_arena_block ag_arena_block;
typedef struct ag_arena ag_arena;
struct ag_arena {
    const char *name;
    ag_arena_block *head;  /* current block */
    size_t used_total;     /* bytes handed out since the last reset */
    size_t peak;           /* the largest used_total ever seen */
    size_t capacity;       /* sum of block sizes */
    size_t limit;          /* 0 = unlimited; otherwise allocation beyond it is an error naming the arena */
    int n_system_allocs;   /* how many blocks were malloc'ed (cudaMalloc'ed on a device; steady state adds none) */
    ag_device device;      /* where the blocks live */
    ag_arena *host;        /* device arenas: the host arena for tensor headers (NULL for CPU arenas) */
};

void ag_arena_init(ag_arena *a, const char *name, size_t initial_bytes);
/* An arena whose blocks live on dev (AG_DEV_CPU: same as ag_arena_init). Aborts in a build without CUDA. */
void ag_arena_init_device(ag_arena *a, const char *name, size_t initial_bytes, ag_device dev);
void *ag_arena_alloc(ag_arena *a, size_t bytes);   /* 64-byte aligned, uninitialised */
void *ag_arena_calloc(ag_arena *a, size_t bytes);  /* zeroed */
void ag_arena_reset(ag_arena *a);
void ag_arena_free(ag_arena *a);

/* A tensor header and its data, both in the arena. Data is uninitialised unless _zeros. */
ag_tensor *ag_tensor_new(ag_arena *a, ag_dtype dt, int ndim, const int64_t *shape);
ag_tensor *ag_tensor_zeros(ag_arena *a, ag_dtype dt, int ndim, const int64_t *shape);
/* A header that views existing memory (no copy). */
ag_tensor *ag_tensor_view(ag_arena *a, ag_dtype dt, int ndim, const int64_t *shape, void *data);
#define AG_SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define AG_NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define ag_new(arena, dt, ...) ag_tensor_new((arena), (dt), AG_NDIM(__VA_ARGS__), AG_SHAPE(__VA_ARGS__))
#define ag_zeros(arena, dt, ...) ag_tensor_zeros((arena), (dt), AG_NDIM(__VA_ARGS__), AG_SHAPE(__VA_ARGS__))

/* Element access for tests and slow paths (float tensors as double; index tensors as int64). On a device tensor
 * each call is a synchronous copy of one element (ag_fill and ag_copy run on the device or copy in bulk). */
double ag_get(const ag_tensor *t, int64_t i);
void ag_set(ag_tensor *t, int64_t i, double v);
void ag_fill(ag_tensor *t, double v);
/* Same numel, any devices; converts between f32, f64 and bf16 (on the device: f32 <-> bf16). */
void ag_copy(ag_tensor *dst, const ag_tensor *src);
bool ag_same_shape(const ag_tensor *a, const ag_tensor *b);

/* ---- the op table ------------------------------------------------------------------------------------------------- */
/* One enum value per line of autograd/ag_ops.def (where each op's formula is). */
#define AG_GRAD true
#define AG_NOGRAD false
typedef enum {
#define AG_OP(E, name, grad) AG_OP_##E,
#include "autograd/ag_ops.def"
    AG_OP_COUNT
} ag_op;

#define AG_MAX_INPUTS 4

/* One tape entry. Op parameters live in ip/fp; 'saved' holds what backward needs. */
typedef struct ag_custom_fn ag_custom_fn;

typedef struct ag_node {
    ag_op op;
    int n_in;
    ag_tensor *in[AG_MAX_INPUTS];
    ag_tensor *out;
    ag_tensor *saved[2];
    int64_t ip[8];
    double fp[4];
    ag_rng_key key;
    const ag_custom_fn *custom; /* AG_OP_CUSTOM only */
} ag_node;

typedef struct ag_ctx ag_ctx;
typedef void (*ag_kernel_fn)(ag_ctx *ctx, ag_node *n);
/* A backend's kernels for one op. Each backend has a table of AG_OP_COUNT entries, written with designated
 * initialisers indexed by the enum and checked when first used: every op has a forward or an AG_UNSUPPORTED marker
 * (the CPU, the reference, has no marker), and a backward exactly when ag_ops.def gives it a gradient. */
typedef struct {
    ag_kernel_fn forward;
    ag_kernel_fn backward;   /* NULL: not differentiable (AG_NOGRAD) */
    const char *unsupported; /* non-NULL: this backend lacks the op, and running it aborts with this reason */
} ag_op_entry;
#define AG_UNSUPPORTED(why) {NULL, NULL, (why)}

const ag_op_entry *ag_op_table(ag_device dev); /* AG_OP_COUNT entries */
const char *ag_op_name(ag_op op);              /* "matmul": the short name from ag_ops.def */
bool ag_op_differentiable(ag_op op);           /* AG_GRAD in ag_ops.def */

/* ---- the context: activation arena, tape, mode ---------------------------------------------------------------------- */
struct ag_ctx {
    ag_arena *act;        /* outputs, saved tensors and activation gradients of this step */
    ag_node *tape;        /* a host array kept across resets; grows by doubling during the first step */
    int64_t tape_len, tape_cap;
    bool grad_enabled;    /* false: no-grad (evaluation, generation) */
    bool training;        /* dropout and jitter active */
    ag_device device;     /* the device of act: every op input and output lives there, and its op table runs */
    /* CUDA only (the CPU computes in fp32 throughout, DESIGN.md 3): matmul and grouped_matmul round their operands
     * (and, in backward, the incoming gradient) to bf16 and accumulate in fp32; outputs, gradients and weights stay
     * fp32. Read when an op is recorded, so a context may switch it between ops. */
    bool mixed_bf16;
};

/* The context runs on act's device (a device arena gives a CUDA context). */
void ag_ctx_init(ag_ctx *ctx, ag_arena *act);
void ag_ctx_free(ag_ctx *ctx);
/* A no-grad, non-training context (evaluation, generation, inference) over act, a fresh CPU arena named name;
 * ag_ctx_free_eval frees the context and its arena. */
void ag_ctx_init_eval(ag_ctx *ctx, ag_arena *act, const char *name, size_t initial_bytes);
void ag_ctx_free_eval(ag_ctx *ctx);
/* Forget the tape and free every activation: call once per micro-batch, after backward. */
void ag_ctx_reset(ag_ctx *ctx);
/* Small tensors built on the host during a step (indices, masks, counts): ag_ctx_host_arena gives the arena they
 * live in (the activation arena of a CPU context, its host companion in a device context: reset with it), and
 * ag_ctx_from_host the context's view of one (the tensor itself on the CPU, a copy in the activation arena on a
 * device). */
ag_arena *ag_ctx_host_arena(const ag_ctx *ctx);
ag_tensor *ag_ctx_from_host(ag_ctx *ctx, ag_tensor *t);
/* Reverse walk: seeds d(loss)=1 (or 'seed' when given) and accumulates into every requires_grad leaf's ->grad. */
void ag_backward(ag_ctx *ctx, ag_tensor *loss);
void ag_backward_seed(ag_ctx *ctx, ag_tensor *out, const ag_tensor *seed);
/* Gradient of t, allocated zeroed in the activation arena on first use (parameters keep their own). */
ag_tensor *ag_grad_of(ag_ctx *ctx, ag_tensor *t);
void ag_zero_grad(ag_tensor *t);

/* ---- ops (forward now, recorded on the tape when any input requires grad and grad is enabled) --------------------- */
/* Bad shapes or arguments abort with the op name and the shapes (SX_ASSERT): they are programming errors. */
ag_tensor *ag_matmul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b, bool trans_a, bool trans_b);
ag_tensor *ag_add(ag_ctx *ctx, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_mul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_scale(ag_ctx *ctx, ag_tensor *x, double s);
ag_tensor *ag_relu(ag_ctx *ctx, ag_tensor *x);
ag_tensor *ag_gelu_tanh(ag_ctx *ctx, ag_tensor *x);
ag_tensor *ag_gelu_erf(ag_ctx *ctx, ag_tensor *x);
/* The FFN activations, one per formula of Hugging Face's ACT2FN (names in train/model/model_config.c), in float32 as HF's
 * modules compute them:
 *   RELU max(x, 0)                       GELU_ERF 0.5 x (1 + erf(x / sqrt 2))       GELU_TANH the tanh approximation
 *   SILU x / (1 + exp(-x))               QUICK_GELU x sigmoid(1.702 x)              SIGMOID 1 / (1 + exp(-x))
 *   TANH tanh x                          RELU6 min(max(x, 0), 6)                    RELU2 max(x, 0)^2
 *   LEAKY_RELU x > 0 ? x : 0.01 x        MISH x tanh(log1p(exp x))                  GELU_10 clip(gelu_erf(x), -10, 10)
 *   LAPLACE 0.5 (1 + erf((x - 0.707107) / (0.282095 sqrt 2)))                       LINEAR x (no op)
 * RELU and the GELUs are the ops above; LINEAR returns x itself; the rest is AG_OP_ACT. */
typedef enum {
    AG_ACT_RELU, AG_ACT_GELU_ERF, AG_ACT_GELU_TANH, AG_ACT_SILU, AG_ACT_QUICK_GELU, AG_ACT_SIGMOID, AG_ACT_TANH,
    AG_ACT_RELU6, AG_ACT_RELU2, AG_ACT_LEAKY_RELU, AG_ACT_MISH, AG_ACT_GELU_10, AG_ACT_LAPLACE, AG_ACT_LINEAR,
    AG_ACT_COUNT
} ag_act_kind;
ag_tensor *ag_act(ag_ctx *ctx, ag_act_kind kind, ag_tensor *x);
ag_tensor *ag_rmsnorm(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, double eps);
/* bias, mask: NULL or broadcastable to x; the sum is x + (bias + mask) as HF adds them (SPEC 3.5). */
ag_tensor *ag_softmax(ag_ctx *ctx, ag_tensor *x, ag_tensor *bias, ag_tensor *mask);
ag_tensor *ag_logsumexp(ag_ctx *ctx, ag_tensor *x);
ag_tensor *ag_embedding(ag_ctx *ctx, ag_tensor *w, ag_tensor *idx);
ag_tensor *ag_dropout(ag_ctx *ctx, ag_tensor *x, double p, ag_rng_key key);
ag_tensor *ag_reshape(ag_ctx *ctx, ag_tensor *x, int ndim, const int64_t *shape);
#define ag_reshapev(ctx, x, ...) ag_reshape((ctx), (x), AG_NDIM(__VA_ARGS__), AG_SHAPE(__VA_ARGS__))
ag_tensor *ag_permute(ag_ctx *ctx, ag_tensor *x, const int *perm);
ag_tensor *ag_transpose(ag_ctx *ctx, ag_tensor *x, int d0, int d1);
ag_tensor *ag_sum(ag_ctx *ctx, ag_tensor *x);
ag_tensor *ag_sum_last(ag_ctx *ctx, ag_tensor *x);
ag_tensor *ag_square(ag_ctx *ctx, ag_tensor *x);
ag_tensor *ag_cast(ag_ctx *ctx, ag_tensor *x, ag_dtype dt);
#define AG_IGNORE_INDEX (-100)
/* logits [N, V], labels i32 [N]; mean over labels != -100 (0 if none). */
ag_tensor *ag_cross_entropy(ag_ctx *ctx, ag_tensor *logits, ag_tensor *labels);
ag_tensor *ag_gather_rows(ag_ctx *ctx, ag_tensor *x, ag_tensor *idx);
ag_tensor *ag_scatter_rows(ag_ctx *ctx, ag_tensor *x, ag_tensor *idx, int64_t n_rows);
/* x [N, in], w [E, out, in] (trans_w) or [E, in, out]; offsets i64 [E+1] (host or device: the node keeps a host copy,
 * since the group sizes drive the GEMM launches), rows offsets[e]..offsets[e+1] of x go to
 * expert e (the tokens permuted by expert; offsets[E] <= N, rows past it give zero). y [N, out]. */
ag_tensor *ag_grouped_matmul(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *offsets, bool trans_w);
/* An op whose kernels the caller supplies, so data movement that autograd must not know about (tokens crossing
 * ranks) still joins the tape. forward fills out from in; backward ADDS into din from dout. fn must outlive the
 * backward pass (allocate it in the activation arena). */
struct ag_custom_fn {
    const char *name;
    void (*forward)(void *user, const ag_tensor *in, ag_tensor *out);
    void (*backward)(void *user, const ag_tensor *dout, ag_tensor *din);
    void *user;
};
ag_tensor *ag_custom(ag_ctx *ctx, ag_tensor *x, int ndim, const int64_t *out_shape, const ag_custom_fn *fn);

#ifdef __cplusplus
}
#endif
#endif
