/* Model config: HF config.json in, strict validation, HF config.json out (SPEC.md 1.1-1.2, 9). */
#include "train/model/model_config.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "train/cfg_util.h"

void model_config_defaults(model_config *c) {
    memset(c, 0, sizeof *c);
    c->lora.alpha = 8.0; /* peft's default lora_alpha (lora.r 0: no adapters) */
    c->vocab_size = 32128;
    c->d_model = 768;
    c->d_kv = 64;
    c->d_ff = 2048;
    c->num_heads = 12;
    c->num_layers = 12;
    c->num_decoder_layers = -1; /* = num_layers */
    c->num_sparse_encoder_layers = 3;
    c->num_sparse_decoder_layers = 3;
    c->encoder_sparse_step = -1; /* derived */
    c->decoder_sparse_step = -1;
    c->num_experts = 8;
    c->expert_capacity = 64;
    c->router_bias = false;
    c->router_jitter_noise = 0.01;
    c->relative_attention_num_buckets = 32;
    c->relative_attention_max_distance = 128;
    c->dropout_rate = 0.1;
    c->layer_norm_epsilon = 1e-6;
    c->router_z_loss_coef = 0.001;
    c->router_aux_loss_coef = 0.001;
    c->initializer_factor = 1.0;
    c->act = AG_ACT_RELU;
    c->gated = false;
    c->tie_word_embeddings = true;
    c->pad_token_id = 0;
    c->eos_token_id = 1;
    c->decoder_start_token_id = 0;
    c->capacity_mode = MOE_CAPACITY_HF;
    c->train_capacity_factor = 1.25;
    c->eval_capacity_factor = 2.0;
    c->min_expert_capacity = 4;
    c->capacity_group_size = 0;
    c->router_loss_mode = MOE_LOSS_POOLED;
    c->expert_dropout_rate = -1;
    c->router_top_k = 1;
    c->hf_zero_router_loss_step1 = true;
}

bool model_config_block_is_sparse(int step, int i) { return step > 0 && (i % step == 1 || step == 1); }

int model_config_sparse_count(int step, int n_layers) {
    int k = 0;
    for (int i = 0; i < n_layers; i++) k += model_config_block_is_sparse(step, i);
    return k;
}

/* Keys of HF's config.json (PretrainedConfig and generation defaults) that do not change the model: accepted and
 * ignored, so a downloaded file loads as is (SPEC 1.1 notes which Switch keys HF itself ignores). */
static const char *const IGNORED_KEYS[] = {
    "_name_or_path", "add_cross_attention", "add_router_probs", "architectures", "bad_words_ids",
    "begin_suppress_tokens", "bos_token_id", "chunk_size_feed_forward", "cross_attention_hidden_size",
    "diversity_penalty", "do_sample", "dtype", "torch_dtype", "early_stopping", "encoder_no_repeat_ngram_size",
    "exponential_decay_length_penalty", "finetuning_task", "forced_bos_token_id", "forced_eos_token_id", "id2label",
    "is_decoder", "is_encoder_decoder", "label2id", "length_penalty", "max_length", "min_length", "model_type",
    "no_repeat_ngram_size", "num_beam_groups", "num_beams", "num_return_sequences", "output_attentions",
    "output_hidden_states", "output_scores", "prefix", "problem_type", "pruned_heads", "remove_invalid_values",
    "repetition_penalty", "return_dict", "return_dict_in_generate", "router_ignore_padding_tokens", "sep_token_id",
    "suppress_tokens", "task_specific_params", "temperature", "tf_legacy_loss", "tie_encoder_decoder",
    "tokenizer_class", "top_k", "top_p", "torchscript", "transformers_version", "typical_p", "use_bfloat16",
    "use_cache", "num_selected_experts", "router_type", "batch_prioritized_routing", "output_past", "n_positions",
    "gradient_checkpointing", "initializer_range",
    /* in Google's config.json files, but HF's Switch code never reads them: its FFNs are always
     * SwitchTransformersDenseActDense (wi, wo) with ACT2FN[dense_act_fn], whatever is_gated_act or feed_forward_proj
     * say ("gated-gelu" included). switchc's gated FFN is the knob switchc.gated_ffn. */
    "feed_forward_proj", "is_gated_act"};

static const char *const USED_KEYS[] = {
    "vocab_size", "d_model", "hidden_size", "d_kv", "d_ff", "num_heads", "num_attention_heads", "num_layers",
    "num_hidden_layers", "num_decoder_layers", "num_sparse_encoder_layers", "num_sparse_decoder_layers",
    "encoder_sparse_step", "decoder_sparse_step", "num_experts", "expert_capacity", "router_bias",
    "router_jitter_noise", "router_dtype", "relative_attention_num_buckets", "relative_attention_max_distance",
    "dropout_rate", "layer_norm_epsilon", "router_z_loss_coef", "router_aux_loss_coef", "initializer_factor",
    "dense_act_fn", "tie_word_embeddings", "pad_token_id", "eos_token_id",
    "decoder_start_token_id", "switchc"};

static const char *const KNOB_KEYS[] = {"capacity_mode", "train_capacity_factor", "eval_capacity_factor",
                                        "min_expert_capacity", "capacity_group_size", "router_loss_mode",
                                        "expert_dropout_rate", "router_top_k", "hf_zero_router_loss_step1",
                                        "router_init", "gated_ffn", "routing"};

#define NKEYS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static bool in_list(const char *k, const char *const *list, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(k, list[i])) return true;
    return false;
}

static sx_status unknown_key(const char *where, const char *key, const char *const *cands, int n) {
    const char *hint = cfg_closest(key, cands, n);
    if (hint) return sx_errorf("%s: unknown key '%s': did you mean '%s'?", where, key, hint);
    return sx_errorf("%s: unknown key '%s'", where, key);
}

static sx_status get_int(const cJSON *it, const char *where, int lo, int hi, int *out) {
    int64_t v;
    SX_TRY(cfg_get_int(it, where, lo, hi, &v));
    *out = (int)v;
    return sx_ok();
}

/* HF's ACT2FN names (transformers 4.57.6 activations.py) and the formula each computes; names of one formula are
 * the same function in real arithmetic, written with other float32 operation orders (a few ulp apart). prelu and
 * xielu are left out: they carry learnable parameters, which an FFN here does not have. */
static const struct {
    const char *name;
    ag_act_kind act;
} ACTS[] = {
    {"relu", AG_ACT_RELU},          {"gelu", AG_ACT_GELU_ERF},          {"gelu_python", AG_ACT_GELU_ERF},
    {"gelu_new", AG_ACT_GELU_TANH}, {"gelu_pytorch_tanh", AG_ACT_GELU_TANH}, {"gelu_python_tanh", AG_ACT_GELU_TANH},
    {"gelu_fast", AG_ACT_GELU_TANH}, {"gelu_accurate", AG_ACT_GELU_TANH}, {"silu", AG_ACT_SILU},
    {"swish", AG_ACT_SILU},         {"quick_gelu", AG_ACT_QUICK_GELU},  {"sigmoid", AG_ACT_SIGMOID},
    {"tanh", AG_ACT_TANH},          {"relu6", AG_ACT_RELU6},            {"relu2", AG_ACT_RELU2},
    {"leaky_relu", AG_ACT_LEAKY_RELU}, {"mish", AG_ACT_MISH},           {"gelu_10", AG_ACT_GELU_10},
    {"laplace", AG_ACT_LAPLACE},    {"linear", AG_ACT_LINEAR},
};
#define N_ACTS ((int)(sizeof ACTS / sizeof ACTS[0]))

static sx_status parse_act(const cJSON *it, const char *where, model_config *c) {
    char s[64];
    SX_TRY(cfg_get_string(it, where, s, sizeof s));
    for (int i = 0; i < N_ACTS; i++)
        if (!strcmp(s, ACTS[i].name)) {
            c->act = ACTS[i].act;
            return sx_ok();
        }
    if (!strcmp(s, "prelu") || !strcmp(s, "xielu"))
        return sx_errorf("%s.dense_act_fn: '%s' has learnable parameters, which switchc's FFNs do not hold", where, s);
    char valid[512] = "";
    for (int i = 0; i < N_ACTS; i++)
        snprintf(valid + strlen(valid), sizeof valid - strlen(valid), i ? ", %s" : "%s", ACTS[i].name);
    const char *names[N_ACTS];
    for (int i = 0; i < N_ACTS; i++) names[i] = ACTS[i].name;
    const char *hint = cfg_closest(s, (const char *const *)names, N_ACTS);
    if (hint)
        return sx_errorf("%s.dense_act_fn: unknown activation '%s': did you mean '%s'? (one of %s)", where, s, hint,
                         valid);
    return sx_errorf("%s.dense_act_fn: unknown activation '%s' (one of %s)", where, s, valid);
}

/* The name model_config_to_json writes: the first of the act's names. */
static const char *act_name(ag_act_kind a) {
    for (int i = 0; i < N_ACTS; i++)
        if (ACTS[i].act == a) return ACTS[i].name;
    SX_FATAL("activation %d has no HF name", (int)a);
}

static sx_status parse_knobs(const cJSON *obj, const char *where0, model_config *c) {
    char where[256];
    snprintf(where, sizeof where, "%s.switchc", where0);
    if (!cJSON_IsObject(obj)) return sx_errorf("%s: expected an object", where);
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        const char *k = it->string;
        char s[32];
        if (!strcmp(k, "capacity_mode")) {
            SX_TRY(cfg_get_string(it, where, s, sizeof s));
            if (!strcmp(s, "hf"))
                c->capacity_mode = MOE_CAPACITY_HF;
            else if (!strcmp(s, "factor"))
                c->capacity_mode = MOE_CAPACITY_FACTOR;
            else
                return sx_errorf("%s.capacity_mode: '%s' is not one of hf, factor", where, s);
        } else if (!strcmp(k, "train_capacity_factor"))
            SX_TRY(cfg_get_double(it, where, 0, 1e6, &c->train_capacity_factor));
        else if (!strcmp(k, "eval_capacity_factor"))
            SX_TRY(cfg_get_double(it, where, 0, 1e6, &c->eval_capacity_factor));
        else if (!strcmp(k, "min_expert_capacity"))
            SX_TRY(get_int(it, where, 0, INT_MAX, &c->min_expert_capacity));
        else if (!strcmp(k, "capacity_group_size"))
            SX_TRY(get_int(it, where, 0, INT_MAX, &c->capacity_group_size));
        else if (!strcmp(k, "router_loss_mode")) {
            SX_TRY(cfg_get_string(it, where, s, sizeof s));
            if (!strcmp(s, "pooled"))
                c->router_loss_mode = MOE_LOSS_POOLED;
            else if (!strcmp(s, "per_layer"))
                c->router_loss_mode = MOE_LOSS_PER_LAYER;
            else
                return sx_errorf("%s.router_loss_mode: '%s' is not one of pooled, per_layer", where, s);
        } else if (!strcmp(k, "expert_dropout_rate")) {
            SX_TRY(cfg_get_double(it, where, -1, 0.999, &c->expert_dropout_rate));
        } else if (!strcmp(k, "router_top_k"))
            SX_TRY(get_int(it, where, 1, 2, &c->router_top_k));
        else if (!strcmp(k, "hf_zero_router_loss_step1"))
            SX_TRY(cfg_get_bool(it, where, &c->hf_zero_router_loss_step1));
        else if (!strcmp(k, "gated_ffn"))
            SX_TRY(cfg_get_bool(it, where, &c->gated));
        else if (!strcmp(k, "routing")) {
            SX_TRY(cfg_get_string(it, where, s, sizeof s));
            if (!strcmp(s, "tokens_choose"))
                c->expert_choice = false;
            else if (!strcmp(s, "expert_choice"))
                c->expert_choice = true;
            else
                return sx_errorf("%s.routing: '%s' is not one of tokens_choose, expert_choice", where, s);
        }
        else if (!strcmp(k, "router_init")) {
            SX_TRY(cfg_get_string(it, where, s, sizeof s));
            if (!strcmp(s, "hf"))
                c->router_init_paper = false;
            else if (!strcmp(s, "paper"))
                c->router_init_paper = true;
            else
                return sx_errorf("%s.router_init: '%s' is not one of hf, paper", where, s);
        }
        else
            return unknown_key(where, k, KNOB_KEYS, NKEYS(KNOB_KEYS));
    }
    return sx_ok();
}

sx_status model_config_from_json(const cJSON *obj, const char *where, model_config *c) {
    model_config_defaults(c);
    if (!cJSON_IsObject(obj)) return sx_errorf("%s: a model config must be a JSON object", where);
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        const char *k = it->string;
        if (in_list(k, IGNORED_KEYS, NKEYS(IGNORED_KEYS))) continue;
        if (!strcmp(k, "vocab_size")) SX_TRY(get_int(it, where, 1, INT_MAX, &c->vocab_size));
        else if (!strcmp(k, "d_model") || !strcmp(k, "hidden_size")) SX_TRY(get_int(it, where, 1, 1 << 20, &c->d_model));
        else if (!strcmp(k, "d_kv")) SX_TRY(get_int(it, where, 1, 1 << 16, &c->d_kv));
        else if (!strcmp(k, "d_ff")) SX_TRY(get_int(it, where, 1, 1 << 24, &c->d_ff));
        else if (!strcmp(k, "num_heads") || !strcmp(k, "num_attention_heads")) SX_TRY(get_int(it, where, 1, 1 << 12, &c->num_heads));
        else if (!strcmp(k, "num_layers") || !strcmp(k, "num_hidden_layers")) SX_TRY(get_int(it, where, 1, 1 << 12, &c->num_layers));
        else if (!strcmp(k, "num_decoder_layers")) {
            if (cJSON_IsNull(it)) c->num_decoder_layers = -1;
            else SX_TRY(get_int(it, where, 1, 1 << 12, &c->num_decoder_layers));
        } else if (!strcmp(k, "num_sparse_encoder_layers")) SX_TRY(get_int(it, where, 0, 1 << 12, &c->num_sparse_encoder_layers));
        else if (!strcmp(k, "num_sparse_decoder_layers")) SX_TRY(get_int(it, where, 0, 1 << 12, &c->num_sparse_decoder_layers));
        else if (!strcmp(k, "encoder_sparse_step")) SX_TRY(get_int(it, where, 0, 1 << 12, &c->encoder_sparse_step));
        else if (!strcmp(k, "decoder_sparse_step")) SX_TRY(get_int(it, where, 0, 1 << 12, &c->decoder_sparse_step));
        else if (!strcmp(k, "num_experts")) SX_TRY(get_int(it, where, 0, 1 << 20, &c->num_experts));
        else if (!strcmp(k, "expert_capacity")) SX_TRY(get_int(it, where, 0, INT_MAX, &c->expert_capacity));
        else if (!strcmp(k, "router_bias")) SX_TRY(cfg_get_bool(it, where, &c->router_bias));
        else if (!strcmp(k, "router_jitter_noise")) SX_TRY(cfg_get_double(it, where, 0, 0.999, &c->router_jitter_noise));
        else if (!strcmp(k, "router_dtype")) {
            char s[32];
            SX_TRY(cfg_get_string(it, where, s, sizeof s));
            /* HF casts the router's input and its weights (for good: the parameter becomes that dtype) to
             * router_dtype and returns logits, probabilities and gates rounded to it (bfloat16: logits ~1e-3 off
             * float32). switchc's router is float32 only (the paper's selective precision): the other two are
             * refused rather than run as float32. */
            if (!strcmp(s, "bfloat16") || !strcmp(s, "float16"))
                return sx_errorf("%s.router_dtype: '%s' is not supported: switchc's router runs in float32 only (HF "
                                 "would cast the router's input and weights to %s); set it to \"float32\"",
                                 where, s, s);
            if (strcmp(s, "float32"))
                return sx_errorf("%s.router_dtype: '%s' is not one of float32, bfloat16, float16", where, s);
        } else if (!strcmp(k, "relative_attention_num_buckets")) SX_TRY(get_int(it, where, 2, 1 << 16, &c->relative_attention_num_buckets));
        else if (!strcmp(k, "relative_attention_max_distance")) SX_TRY(get_int(it, where, 1, 1 << 24, &c->relative_attention_max_distance));
        else if (!strcmp(k, "dropout_rate")) SX_TRY(cfg_get_double(it, where, 0, 0.999, &c->dropout_rate));
        else if (!strcmp(k, "layer_norm_epsilon")) SX_TRY(cfg_get_double(it, where, 1e-30, 1, &c->layer_norm_epsilon));
        else if (!strcmp(k, "router_z_loss_coef")) SX_TRY(cfg_get_double(it, where, 0, 1e6, &c->router_z_loss_coef));
        else if (!strcmp(k, "router_aux_loss_coef")) SX_TRY(cfg_get_double(it, where, 0, 1e6, &c->router_aux_loss_coef));
        else if (!strcmp(k, "initializer_factor")) SX_TRY(cfg_get_double(it, where, 0, 1e6, &c->initializer_factor));
        else if (!strcmp(k, "dense_act_fn")) SX_TRY(parse_act(it, where, c));
        else if (!strcmp(k, "tie_word_embeddings")) SX_TRY(cfg_get_bool(it, where, &c->tie_word_embeddings));
        else if (!strcmp(k, "pad_token_id")) SX_TRY(get_int(it, where, 0, INT_MAX, &c->pad_token_id));
        else if (!strcmp(k, "eos_token_id")) SX_TRY(get_int(it, where, 0, INT_MAX, &c->eos_token_id));
        else if (!strcmp(k, "decoder_start_token_id")) SX_TRY(get_int(it, where, 0, INT_MAX, &c->decoder_start_token_id));
        else if (!strcmp(k, "switchc")) SX_TRY(parse_knobs(it, where, c));
        else return unknown_key(where, k, USED_KEYS, NKEYS(USED_KEYS));
    }
    if (c->num_decoder_layers < 0) c->num_decoder_layers = c->num_layers;
    /* SPEC 1.1: steps derived from the sparse counts unless config.json gives them. */
    if (c->encoder_sparse_step < 0) c->encoder_sparse_step = c->num_sparse_encoder_layers > 0 ? c->num_layers / c->num_sparse_encoder_layers : 0;
    if (c->decoder_sparse_step < 0)
        c->decoder_sparse_step = c->num_sparse_decoder_layers > 0 ? c->num_decoder_layers / c->num_sparse_decoder_layers : 0;
    if (c->num_sparse_encoder_layers > c->num_layers)
        return sx_errorf("%s.num_sparse_encoder_layers: %d sparse layers in a %d-layer encoder", where, c->num_sparse_encoder_layers, c->num_layers);
    if (c->num_sparse_decoder_layers > c->num_decoder_layers)
        return sx_errorf("%s.num_sparse_decoder_layers: %d sparse layers in a %d-layer decoder", where, c->num_sparse_decoder_layers, c->num_decoder_layers);
    if (c->encoder_sparse_step > c->num_layers)
        return sx_errorf("%s.encoder_sparse_step: step %d is larger than the %d encoder layers", where, c->encoder_sparse_step, c->num_layers);
    if (c->decoder_sparse_step > c->num_decoder_layers)
        return sx_errorf("%s.decoder_sparse_step: step %d is larger than the %d decoder layers", where, c->decoder_sparse_step, c->num_decoder_layers);
    bool any_sparse = c->encoder_sparse_step > 0 || c->decoder_sparse_step > 0;
    if (any_sparse && c->num_experts < 1) return sx_errorf("%s.num_experts: a model with sparse layers needs at least 1 expert", where);
    if (any_sparse && c->capacity_mode == MOE_CAPACITY_HF && c->expert_capacity < 1)
        return sx_errorf("%s.expert_capacity: must be at least 1 (0 would drop every token)", where);
    if (c->expert_choice && c->decoder_sparse_step > 0)
        return sx_errorf("%s.switchc.routing: expert_choice lets each expert see every token of its group, so a decoder "
                         "layer would look at future tokens: set decoder_sparse_step 0 (and num_sparse_decoder_layers 0) "
                         "or use tokens_choose", where);
    if (c->expert_choice && c->capacity_mode == MOE_CAPACITY_FACTOR && (c->train_capacity_factor <= 0 || c->eval_capacity_factor <= 0))
        return sx_errorf("%s.switchc: expert_choice needs a capacity: train_capacity_factor and eval_capacity_factor > 0 "
                         "(0 means dropless, which expert choice has no meaning for)", where);
    if (c->router_top_k > c->num_experts && any_sparse)
        return sx_errorf("%s.switchc.router_top_k: top-%d routing needs at least %d experts", where, c->router_top_k, c->router_top_k);
    /* the decoder's exact range is num_buckets / 2: at or below it HF's log(max_distance / max_exact) is <= 0 and its
     * buckets go negative (an index error in its embedding) */
    if (c->relative_attention_max_distance <= c->relative_attention_num_buckets / 2)
        return sx_errorf("%s.relative_attention_max_distance: %d must exceed num_buckets/2 = %d (the log-spaced "
                         "buckets need room)", where, c->relative_attention_max_distance,
                         c->relative_attention_num_buckets / 2);
    if (c->relative_attention_num_buckets < 4)
        return sx_errorf("%s.relative_attention_num_buckets: %d is below 4 (HF's encoder then has no exact "
                         "bucket)", where, c->relative_attention_num_buckets);
    if (c->decoder_start_token_id >= c->vocab_size || c->pad_token_id >= c->vocab_size || c->eos_token_id >= c->vocab_size)
        return sx_errorf("%s: pad (%d), eos (%d) and decoder_start (%d) token ids must be below vocab_size %d", where, c->pad_token_id,
                         c->eos_token_id, c->decoder_start_token_id, c->vocab_size);
    return sx_ok();
}

sx_status model_config_load(const char *path, model_config *c) {
    cJSON *j;
    SX_TRY(cfg_parse_file(path, &j));
    sx_status s = model_config_from_json(j, path, c);
    cJSON_Delete(j);
    return s;
}

cJSON *model_config_to_json(const model_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "architectures", cJSON_CreateStringArray((const char *[]){"SwitchTransformersForConditionalGeneration"}, 1));
    cJSON_AddStringToObject(o, "model_type", "switch_transformers");
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "d_model", c->d_model);
    cJSON_AddNumberToObject(o, "d_kv", c->d_kv);
    cJSON_AddNumberToObject(o, "d_ff", c->d_ff);
    cJSON_AddNumberToObject(o, "num_heads", c->num_heads);
    cJSON_AddNumberToObject(o, "num_layers", c->num_layers);
    cJSON_AddNumberToObject(o, "num_decoder_layers", c->num_decoder_layers);
    cJSON_AddNumberToObject(o, "num_sparse_encoder_layers", c->num_sparse_encoder_layers);
    cJSON_AddNumberToObject(o, "num_sparse_decoder_layers", c->num_sparse_decoder_layers);
    cJSON_AddNumberToObject(o, "encoder_sparse_step", c->encoder_sparse_step);
    cJSON_AddNumberToObject(o, "decoder_sparse_step", c->decoder_sparse_step);
    cJSON_AddNumberToObject(o, "num_experts", c->num_experts);
    cJSON_AddNumberToObject(o, "expert_capacity", c->expert_capacity);
    cJSON_AddBoolToObject(o, "router_bias", c->router_bias);
    cJSON_AddNumberToObject(o, "router_jitter_noise", c->router_jitter_noise);
    cJSON_AddStringToObject(o, "router_dtype", "float32");
    cJSON_AddNumberToObject(o, "relative_attention_num_buckets", c->relative_attention_num_buckets);
    cJSON_AddNumberToObject(o, "relative_attention_max_distance", c->relative_attention_max_distance);
    cJSON_AddNumberToObject(o, "dropout_rate", c->dropout_rate);
    cJSON_AddNumberToObject(o, "layer_norm_epsilon", c->layer_norm_epsilon);
    cJSON_AddNumberToObject(o, "router_z_loss_coef", c->router_z_loss_coef);
    cJSON_AddNumberToObject(o, "router_aux_loss_coef", c->router_aux_loss_coef);
    cJSON_AddNumberToObject(o, "initializer_factor", c->initializer_factor);
    cJSON_AddStringToObject(o, "dense_act_fn", act_name(c->act));
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_word_embeddings);
    cJSON_AddNumberToObject(o, "pad_token_id", c->pad_token_id);
    cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id);
    cJSON_AddNumberToObject(o, "decoder_start_token_id", c->decoder_start_token_id);
    cJSON_AddBoolToObject(o, "is_encoder_decoder", true);
    model_config d;
    model_config_defaults(&d);
    bool knobs = c->capacity_mode != d.capacity_mode || c->train_capacity_factor != d.train_capacity_factor ||
                 c->eval_capacity_factor != d.eval_capacity_factor || c->min_expert_capacity != d.min_expert_capacity ||
                 c->capacity_group_size != d.capacity_group_size || c->router_loss_mode != d.router_loss_mode ||
                 c->expert_dropout_rate != d.expert_dropout_rate || c->router_top_k != d.router_top_k ||
                 c->hf_zero_router_loss_step1 != d.hf_zero_router_loss_step1 ||
                 c->router_init_paper != d.router_init_paper || c->gated != d.gated || c->expert_choice != d.expert_choice;
    if (knobs) {
        cJSON *k = cJSON_AddObjectToObject(o, "switchc");
        cJSON_AddStringToObject(k, "capacity_mode", c->capacity_mode == MOE_CAPACITY_HF ? "hf" : "factor");
        cJSON_AddNumberToObject(k, "train_capacity_factor", c->train_capacity_factor);
        cJSON_AddNumberToObject(k, "eval_capacity_factor", c->eval_capacity_factor);
        cJSON_AddNumberToObject(k, "min_expert_capacity", c->min_expert_capacity);
        cJSON_AddNumberToObject(k, "capacity_group_size", c->capacity_group_size);
        cJSON_AddStringToObject(k, "router_loss_mode", c->router_loss_mode == MOE_LOSS_POOLED ? "pooled" : "per_layer");
        cJSON_AddNumberToObject(k, "expert_dropout_rate", c->expert_dropout_rate);
        cJSON_AddNumberToObject(k, "router_top_k", c->router_top_k);
        cJSON_AddBoolToObject(k, "hf_zero_router_loss_step1", c->hf_zero_router_loss_step1);
        cJSON_AddStringToObject(k, "router_init", c->router_init_paper ? "paper" : "hf");
        cJSON_AddBoolToObject(k, "gated_ffn", c->gated);
        cJSON_AddStringToObject(k, "routing", c->expert_choice ? "expert_choice" : "tokens_choose");
    }
    return o;
}
