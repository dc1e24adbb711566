/* The model configuration: Hugging Face's config.json field names (SPEC.md 1.1), so a downloaded config.json loads
 * as is, plus switchc's research knobs (SPEC.md 9) under the optional object "switchc". Strict: an unknown key, a
 * wrong type or an impossible value is an error naming the key. */
#ifndef SX_TRAIN_MODEL_CONFIG_H
#define SX_TRAIN_MODEL_CONFIG_H

#include <stdbool.h>

#include "autograd/ag.h" /* ag_act_kind */
#include "autograd/sx_error.h"
#include "moe/capacity.h" /* moe_capacity_mode */
#include "moe/losses.h"   /* moe_loss_mode */
#include "train/lora_spec.h"

typedef struct cJSON cJSON;

typedef struct {
    /* HF fields (defaults: SwitchTransformersConfig) */
    int vocab_size, d_model, d_kv, d_ff, num_heads;
    int num_layers, num_decoder_layers;
    int num_sparse_encoder_layers, num_sparse_decoder_layers;
    int encoder_sparse_step, decoder_sparse_step; /* derived unless given (SPEC 1.1) */
    int num_experts, expert_capacity;
    bool router_bias;
    double router_jitter_noise;
    int relative_attention_num_buckets, relative_attention_max_distance;
    double dropout_rate, layer_norm_epsilon;
    double router_z_loss_coef, router_aux_loss_coef, initializer_factor;
    ag_act_kind act;            /* dense_act_fn: HF's ACT2FN name, in the dense FFNs and the experts */
    bool gated;                 /* switchc.gated_ffn: act(x wi_0^T) * (x wi_1^T), then wo (T5 v1.1); HF has none */
    bool tie_word_embeddings;
    int pad_token_id, eos_token_id, decoder_start_token_id;

    /* switchc knobs (SPEC 9); each defaults to HF behaviour */
    moe_capacity_mode capacity_mode;
    double train_capacity_factor, eval_capacity_factor; /* capacity_mode factor; 0 = dropless */
    int min_expert_capacity;
    int capacity_group_size;    /* tokens per capacity group in factor mode; 0 = the whole local micro-batch */
    moe_loss_mode router_loss_mode;
    double expert_dropout_rate; /* < 0: same as dropout_rate */
    int router_top_k;           /* 1 (Switch) or 2 (GShard-style, gates renormalised over the top 2) */
    bool expert_choice;         /* switchc.routing "expert_choice": experts pick their top-C tokens (encoder only) */
    bool hf_zero_router_loss_step1; /* HF sets a stack's router losses to 0 when its sparse step is 1 (SPEC 5.4) */
    bool router_init_paper;     /* router weights ~ truncated normal, std sqrt(0.1 / d_model) (paper 2.4); else HF's N(0, factor) */

    /* LoRA adapters: the run config's "lora" section (not part of config.json; run_config.c keeps it across model
     * config reloads) */
    lora_spec lora;
} model_config;

void model_config_defaults(model_config *c);
/* Parses a config.json object. 'where' names the source in messages ("configs/x.json" or "run.json: model"). */
sx_status model_config_from_json(const cJSON *obj, const char *where, model_config *c);
sx_status model_config_load(const char *path, model_config *c);
/* Writes the config back as an HF config.json object (plus the "switchc" knobs when any differs from HF). */
cJSON *model_config_to_json(const model_config *c);

/* Block i of a stack with sparse step 'step' holds a Switch layer: step > 0 and (i % step == 1 or step == 1),
 * HF's placement (SPEC 1.2). */
bool model_config_block_is_sparse(int step, int i);
int model_config_sparse_count(int step, int n_layers);

#endif
