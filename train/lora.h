/* LoRA (Hu et al. 2021) as peft 0.21 computes it: an adapted Linear gives x W^T + s * B(A(dropout(x))), A [r, in]
 * drawn as peft's Kaiming-uniform (bound 1/sqrt(in)), B [out, r] zero, s = alpha / r (alpha / sqrt(r) with rslora).
 * The adapters are parameters of the model's table, named as peft names them (without its "base_model.model."
 * prefix): "<module>.lora_A.weight"; the experts of a layer share one [E, r, in] / [E, out, r] block per weight, so
 * expert parallelism shards it as it shards the experts. A model with adapters keeps its base frozen: the flat
 * layout puts the adapters first and the gradient buffer covers them alone (m->n_grad_floats), so gradients and
 * optimizer state scale with the adapters. peft's on-disk format (adapter_config.json + adapter_model.safetensors)
 * in and out: lora_peft.c. */
#ifndef SX_TRAIN_LORA_H
#define SX_TRAIN_LORA_H

#include <stdbool.h>
#include <stdint.h>

#include "moe/switch.h"
#include "train/lora_spec.h"
#include "train/model/model.h"

/* Checks a spec (the run config's lora section) alone: r > 0 needs targets and alpha > 0, targets need r > 0. */
sx_status lora_spec_check(const lora_spec *s);
double lora_scaling(const lora_spec *s);

/* Target patterns, comma-separated, over HF module names (a parameter name less ".weight"): a plain name matches as
 * peft's target_modules list does (the module's name, or its last dotted components: "q", "SelfAttention.q"); a
 * pattern with * ? or [ is an fnmatch glob over the whole name ("*.experts.*.wi"). */
bool lora_target_matches(const char *pattern, const char *module);

/* Adds a parameter descriptor to the table being built (model.c's builder), returning its index. */
typedef int (*lora_param_adder)(void *builder, param_kind kind, int n_experts, int ndim, const int64_t *shape, const char *name);
/* With m->cfg.lora.r > 0: the adapter descriptors of every linear the targets select (errors name the pattern that
 * selects nothing or part of an expert block), m->lora; then the layout: adapters first, m->n_grad_floats. Without:
 * m->n_grad_floats = m->n_floats. Call once the base table is complete, before the buffers are allocated. */
sx_status lora_build(model *m, lora_param_adder add, void *builder);
void lora_free(model *m);
bool lora_is_adapter(const param_desc *p);
/* The adapter descriptors of base parameter i (-1, -1 when it has none). */
void lora_adapters_of(const model *m, int i, int *a, int *b);
/* peft's initialisation of adapter descriptor i (A Kaiming-uniform from the project's RNG, B zero). */
void lora_init_param(model *m, int i, uint64_t seed);

/* The dropout keys of the forward about to run. */
void lora_begin(model *m, model_rng rng);
/* y (= x W^T of base parameter w) plus w's low-rank update when it has an adapter. */
ag_tensor *lora_linear(ag_ctx *ctx, const model *m, ag_tensor *x, int w, ag_tensor *y);
/* The expert blocks' adapters of one Switch layer into w (moe/lora.h). */
void lora_moe_weights(ag_ctx *ctx, const model *m, const block_params *bp, moe_weights *w);

/* Folds every adapter into its base weight (W += s B A, per expert for a block), as peft's merge_and_unload; the
 * adapters then no longer apply. */
void lora_merge(model *m);
/* True when m holds adapters not merged into its weights (an HF export would drop them). */
bool lora_unmerged(const model *m);

/* ---- peft's on-disk format (lora_peft.c) -------------------------------------------------------------------------- */

/* Reads DIR/adapter_config.json. spec->r == 0: fills spec from it (r, lora_alpha, lora_dropout, use_rslora and
 * targets: peft's target_modules when a list of names, else the modules adapter_model.safetensors holds); otherwise
 * checks that r, lora_alpha and use_rslora agree. What switchc cannot hold (DoRA, biases, rank or alpha patterns,
 * modules_to_save, ...) is an error naming the key. */
sx_status lora_peft_spec(const char *dir, lora_spec *spec);
/* Reads DIR/adapter_model.safetensors into m's adapters (this rank's experts): every adapter present with its
 * shape, no tensor left over; errors name the file and the tensor. */
sx_status lora_peft_load(model *m, const char *dir);
/* Writes DIR/adapter_config.json (peft's field names) and DIR/adapter_model.safetensors (peft's tensor names), which
 * peft.PeftModel.from_pretrained(base, DIR) loads. base_model: the folder or hub id the base came from, or NULL. */
sx_status lora_peft_export(const model *m, const char *dir, const char *base_model);

#endif
