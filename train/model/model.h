/* The Switch Transformer encoder-decoder (SPEC.md 3-5) assembled from autograd ops and moe/ layers, with its
 * parameter table: one descriptor per HF tensor name, read by the checkpoint writer, the HF loader, the parity test
 * and the optimizer alike (DESIGN.md 2). */
#ifndef SX_TRAIN_MODEL_H
#define SX_TRAIN_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/ag.h"
#include "autograd/ag_int8.h"
#include "moe/switch.h"
#include "parallel/par.h"
#include "train/model/model_config.h"
#include "train/model/relpos.h" /* model_relative_bucket */

typedef enum { PK_EMBED, PK_HEAD, PK_ATTN_Q, PK_ATTN_K, PK_ATTN_V, PK_ATTN_O, PK_RELBIAS, PK_NORM, PK_WI, PK_WO, PK_ROUTER, PK_ROUTER_BIAS,
              PK_LORA_A, PK_LORA_B /* LoRA adapters (train/lora.h) */ } param_kind;

/* One parameter tensor. An expert block [E, ...] is one descriptor whose HF name holds "%d" for the expert index
 * (E HF tensors, contiguous slices of the block). */
typedef struct {
    char name[128];
    param_kind kind;
    int ndim;
    int64_t shape[4];
    int n_experts;       /* 0, or the experts held here for an expert block (E / expert_parallel) */
    int expert_offset;   /* global index of the first of them (HF names count from it) */
    int64_t offset;      /* floats into the flat parameter and gradient buffers */
    int64_t numel;
    double init_std;     /* HF _init_weights (SPEC 2.1); norms are 1 */
    bool decay;          /* weight decay applies (not to norms, biases, the relative bias table) */
    bool no_grad;        /* frozen for good, no gradient buffer (the base of a model with LoRA adapters) */
    int lora_base;       /* an adapter (PK_LORA_*): the descriptor it adapts */
} param_desc;

/* Per-block indices into the parameter table (-1 when absent). */
typedef struct {
    int q, k, v, o, ln_attn;
    int xq, xk, xv, xo, ln_cross;     /* decoder only */
    int ln_ff;
    bool sparse;
    int wi, wi0, wi1, wo;             /* dense FFN, or expert blocks when sparse */
    int router, router_bias;
} block_params;

typedef struct {
    model_config cfg;
    ag_dtype dtype;           /* f32; f64 only for the whole-model gradient check */
    int n_params;
    param_desc *params;
    int64_t n_floats;
    int64_t n_grad_floats;    /* the span at the start of the layout with gradients: n_floats, or the adapters alone */
    float *w;                 /* flat parameters [n_floats] (f32 models; NULL for f64) */
    float *g;                 /* flat gradients [n_grad_floats], same offsets (none for no_grad descriptors) */
    ag_tensor **t;            /* a tensor view per descriptor, ->grad a view into g */
    int shared, lm_head, enc_relbias, dec_relbias, enc_final_ln, dec_final_ln;
    block_params *enc, *dec;
    ag_arena arena;           /* descriptor table, tensor headers, buffers */
    int ep_size, ep_rank;     /* expert parallelism: this rank holds experts [ep_rank * E/ep_size, ...) */
    par_group *ep;            /* NULL: every expert here, no exchange */
    bool inference;           /* no gradient buffer (convert, export, eval, generate): g is NULL */
    /* Where the tensors of t live. After model_to_device: a device copy of the flat block (weights, then gradients)
     * in dev_arena, t[i] (and ->grad) device views into it, host_t the host views into w / g, which keep their last
     * copied values (model_weights_to_host / model_grads_to_host refresh them). */
    ag_device device;
    ag_arena dev_arena;
    float *dw, *dg;           /* device flat weights and gradients (NULL on the CPU) */
    ag_tensor **host_t;       /* the host views (NULL until model_to_device) */
    /* 8-bit inference (train/model/model_int8.h): q8[i] the int8 form of parameter i (its f32 data then released), NULL
     * for the ones kept in f32; q8 itself NULL for an f32 model */
    ag_int8_weight **q8;
    struct lora_map *lora;    /* LoRA adapters (train/lora.h, cfg.lora); NULL without */
} model;

/* Builds the table from the config and allocates the buffers (weights zeroed). */
sx_status model_init(model *m, const model_config *cfg);
sx_status model_init_dtype(model *m, const model_config *cfg, ag_dtype dtype);
/* Parameters only, no gradients: half the memory, for conversion and inference. */
sx_status model_init_inference(model *m, const model_config *cfg);
/* A rank's share of the model under expert parallelism: every dense parameter, and E / size experts of each Switch
 * layer (the ones of index rank * E/size onwards), exchanging tokens over ep (size 1: the same path, loopback). */
sx_status model_init_ep(model *m, const model_config *cfg, par_group *ep);
void model_free(model *m);
/* Moves the f32 model's parameters (and gradients) to dev (AG_DEV_CUDA): one device block holding a copy of w and g,
 * m->t switched to device views, so model_forward runs in a context of that device. Once per model. */
void model_to_device(model *m, ag_device dev);
/* Device -> host copies of the flat blocks (no-ops for a CPU model). */
void model_weights_to_host(model *m);
void model_grads_to_host(model *m);
/* Host -> device copy of the flat weights (after a host-side optimizer step; a no-op for a CPU model). */
void model_weights_to_device(model *m);
/* Zeroes the gradients wherever they live. */
void model_zero_grads(model *m);
/* HF's initialisation with the project's RNG (normal(0, std) per descriptor, norms 1). */
void model_init_weights(model *m, uint64_t seed);
/* Finds a descriptor by HF name; an expert's name "…expert_3.wi.weight" returns its block and sets *expert = 3. */
int model_find_param(const model *m, const char *hf_name, int *expert);
/* The HF name of expert e of descriptor i (or the plain name), into buf. */
const char *model_param_hf_name(const model *m, int i, int e, char *buf, size_t cap);
int64_t model_param_count(const model *m);        /* held by this rank */
int64_t model_param_count_global(const model *m); /* of the whole model */

/* One batch. labels: -100 where ignored; NULL for a forward without loss (decoder_input_ids then required). */
typedef struct {
    int64_t B, S, T;
    const int32_t *input_ids;       /* [B, S] */
    const int32_t *attention_mask;  /* [B, S] 1 = real token; NULL = all ones */
    const int32_t *labels;          /* [B, T] or NULL */
    const int32_t *decoder_input_ids; /* [B, T] or NULL (= shift_right(labels)) */
    /* Data parallelism: this batch is one of 'shards' equal slices of a global batch whose valid labels number
     * 'ce_denominator'. The loss is then this shard's share of the global loss (CE summed over its labels divided
     * by the global count, router losses divided by the shard count), so the gradients of all shards add up to the
     * single-process gradient. 0 = a whole batch. */
    int64_t ce_denominator;
    int shards;
} model_batch;

/* Routing statistics of one sparse layer. */
typedef struct {
    int stack;                      /* 0 encoder, 1 decoder */
    int block;
    int64_t n_tokens, n_dropped;
    double entropy_mean;
    int64_t *tokens_per_expert;     /* [E], in the activation arena */
    ag_tensor *logits;              /* [B*len, E] */
    int32_t *expert_index, *loss_index;
    uint8_t *kept;
} model_route_stats;

typedef struct {
    ag_tensor *loss;                /* [1] total = CE + z_coef (z_enc + z_dec) + aux_coef (aux_enc + aux_dec) */
    ag_tensor *ce, *enc_z, *enc_aux, *dec_z, *dec_aux; /* [1]; router losses NULL when a stack has none */
    ag_tensor *logits;              /* [B, T, V] */
    ag_tensor *encoder_out;         /* [B, S, D] after the final norm (and dropout) */
    int n_routes;
    model_route_stats *routes;      /* encoder layers first */
} model_output;

typedef struct {
    uint64_t seed, step;            /* dropout and jitter keys: (seed, rank, step, site) */
    uint64_t rank;                  /* the data shard (world rank): ranks draw independent masks */
} model_rng;

/* Builds the whole graph on ctx (training mode from ctx->training). */
void model_forward(model *m, ag_ctx *ctx, const model_batch *b, model_rng rng, model_output *out);
/* The encoder alone, in eval mode, as HF's SwitchTransformersEncoderModel: the last hidden state after the final
 * layer norm [B, S, D]; *routes (if given) the routing of each sparse encoder layer, in order (logits [B*S, E]: the
 * raw router logits, HF's router_probs[l][0]), *n_routes their count. Lives in ctx's arenas. */
ag_tensor *model_encode(model *m, ag_ctx *ctx, const int32_t *input_ids, const int32_t *attention_mask, int64_t B,
                        int64_t S, model_route_stats **routes, int *n_routes);
/* Incremental decoding with a KV cache: the encoder and the cross-attention keys/values run once in begin; each
 * step appends one position's self-attention keys/values and returns the logits [B, V] of the next token. */
typedef struct model_decoder_cache model_decoder_cache;
model_decoder_cache *model_decode_begin(model *m, ag_ctx *ctx, const int32_t *input_ids, const int32_t *attention_mask, int64_t B,
                                        int64_t S, int64_t Tmax);
ag_tensor *model_decode_step(model *m, ag_ctx *ctx, model_decoder_cache *dc, const int32_t *tokens);
/* Beam search: row b of every cache becomes row src[b]. */
void model_decode_reorder(model *m, model_decoder_cache *dc, const int32_t *src);
void model_decode_end(model_decoder_cache *dc);

/* HF's _shift_right: [start, labels[:-1]] with -100 -> pad. */
void model_shift_right(const model_config *c, const int32_t *labels, int64_t B, int64_t T, int32_t *out);

#endif
