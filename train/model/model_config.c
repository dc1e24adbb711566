/* Model config: HF config.json in, strict validation, HF config.json out (SPEC.md 1.1-1.2, 9). */
#include "train/model/model_config.h"

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "train/cfg_util.h"

/* The keys: each config.json key (top level, or a knob under "switchc") once, in the order model_config_to_json
 * writes them, with its member, default and range. dense_act_fn and router_dtype are parsed by their own code. */
typedef enum { K_INT, K_DOUBLE, K_BOOL, K_CHOICE, K_ACT, K_DTYPE } key_type;
typedef struct {
    const char *key, *alias; /* alias: HF's generic name of the same key (PretrainedConfig's attribute_map) */
    key_type type;
    size_t offset, size;
    double def, lo, hi;        /* K_CHOICE: the default is choice_val[0] */
    const char *choice[2];     /* K_CHOICE: the names of values choice_val[0], choice_val[1] */
    int choice_val[2];
    bool knob;                 /* under "switchc" */
    bool null_is_default;      /* JSON null means the default (num_decoder_layers: = num_layers) */
} key_desc;

#define MEMBER(m) offsetof(model_config, m), sizeof(((model_config *)0)->m)
#define KEY(k, alias, t, m, def, lo, hi, knob, null_ok) {k, alias, t, MEMBER(m), def, lo, hi, {0}, {0}, knob, null_ok}
#define KINT(k, m, def, lo, hi) KEY(k, NULL, K_INT, m, def, lo, hi, false, false)
#define KDBL(k, m, def, lo, hi) KEY(k, NULL, K_DOUBLE, m, def, lo, hi, false, false)
#define KBOOL(k, m, def) KEY(k, NULL, K_BOOL, m, def, 0, 0, false, false)
/* the knobs (under "switchc"); a choice's default is its first name */
#define NINT(k, m, def, lo, hi) KEY(k, NULL, K_INT, m, def, lo, hi, true, false)
#define NDBL(k, m, def, lo, hi) KEY(k, NULL, K_DOUBLE, m, def, lo, hi, true, false)
#define NBOOL(k, m, def) KEY(k, NULL, K_BOOL, m, def, 0, 0, true, false)
#define NCHOICE(k, m, a, va, b, vb) {k, NULL, K_CHOICE, MEMBER(m), 0, 0, 0, {a, b}, {va, vb}, true, false}

static const key_desc KEYS[] = {
    KINT("vocab_size", vocab_size, 32128, 1, INT_MAX),
    KEY("d_model", "hidden_size", K_INT, d_model, 768, 1, 1 << 20, false, false),
    KINT("d_kv", d_kv, 64, 1, 1 << 16),
    KINT("d_ff", d_ff, 2048, 1, 1 << 24),
    KEY("num_heads", "num_attention_heads", K_INT, num_heads, 12, 1, 1 << 12, false, false),
    KEY("num_layers", "num_hidden_layers", K_INT, num_layers, 12, 1, 1 << 12, false, false),
    KEY("num_decoder_layers", NULL, K_INT, num_decoder_layers, -1, 1, 1 << 12, false, true), /* -1: = num_layers */
    KINT("num_sparse_encoder_layers", num_sparse_encoder_layers, 3, 0, 1 << 12),
    KINT("num_sparse_decoder_layers", num_sparse_decoder_layers, 3, 0, 1 << 12),
    KINT("encoder_sparse_step", encoder_sparse_step, -1, 0, 1 << 12), /* -1: derived */
    KINT("decoder_sparse_step", decoder_sparse_step, -1, 0, 1 << 12),
    KINT("num_experts", num_experts, 8, 0, 1 << 20),
    KINT("expert_capacity", expert_capacity, 64, 0, INT_MAX),
    KBOOL("router_bias", router_bias, false),
    KDBL("router_jitter_noise", router_jitter_noise, 0.01, 0, 0.999),
    {"router_dtype", NULL, K_DTYPE, 0, 0, 0, 0, 0, {0}, {0}, false, false}, /* no member: float32 only */
    KINT("relative_attention_num_buckets", relative_attention_num_buckets, 32, 2, 1 << 16),
    KINT("relative_attention_max_distance", relative_attention_max_distance, 128, 1, 1 << 24),
    KDBL("dropout_rate", dropout_rate, 0.1, 0, 0.999),
    KDBL("layer_norm_epsilon", layer_norm_epsilon, 1e-6, 1e-30, 1),
    KDBL("router_z_loss_coef", router_z_loss_coef, 0.001, 0, 1e6),
    KDBL("router_aux_loss_coef", router_aux_loss_coef, 0.001, 0, 1e6),
    KDBL("initializer_factor", initializer_factor, 1.0, 0, 1e6),
    KEY("dense_act_fn", NULL, K_ACT, act, AG_ACT_RELU, 0, 0, false, false),
    KBOOL("tie_word_embeddings", tie_word_embeddings, true),
    KINT("pad_token_id", pad_token_id, 0, 0, INT_MAX),
    KINT("eos_token_id", eos_token_id, 1, 0, INT_MAX),
    KINT("decoder_start_token_id", decoder_start_token_id, 0, 0, INT_MAX),
    NCHOICE("capacity_mode", capacity_mode, "hf", MOE_CAPACITY_HF, "factor", MOE_CAPACITY_FACTOR),
    NDBL("train_capacity_factor", train_capacity_factor, 1.25, 0, 1e6),
    NDBL("eval_capacity_factor", eval_capacity_factor, 2.0, 0, 1e6),
    NINT("min_expert_capacity", min_expert_capacity, 4, 0, INT_MAX),
    NINT("capacity_group_size", capacity_group_size, 0, 0, INT_MAX),
    NCHOICE("router_loss_mode", router_loss_mode, "pooled", MOE_LOSS_POOLED, "per_layer", MOE_LOSS_PER_LAYER),
    NDBL("expert_dropout_rate", expert_dropout_rate, -1, -1, 0.999), /* < 0: = dropout_rate */
    NINT("router_top_k", router_top_k, 1, 1, 2),
    NBOOL("hf_zero_router_loss_step1", hf_zero_router_loss_step1, true),
    NCHOICE("router_init", router_init_paper, "hf", false, "paper", true),
    NBOOL("gated_ffn", gated, false),
    NCHOICE("routing", expert_choice, "tokens_choose", false, "expert_choice", true),
};
#define N_KEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

static void put_int(const key_desc *k, void *p, int v) {
    if (k->size == sizeof(bool)) *(bool *)p = v != 0;
    else *(int *)p = v; /* an int or an enum of int size */
}

static int get_int_member(const key_desc *k, const void *p) {
    if (k->size == sizeof(bool)) return *(const bool *)p;
    return *(const int *)p;
}

void model_config_defaults(model_config *c) {
    memset(c, 0, sizeof *c);
    c->lora.alpha = 8.0; /* peft's default lora_alpha (lora.r 0: no adapters) */
    for (int i = 0; i < N_KEYS; i++) {
        const key_desc *k = &KEYS[i];
        void *p = (char *)c + k->offset;
        switch (k->type) {
        case K_INT:
        case K_ACT: put_int(k, p, (int)k->def); break;
        case K_DOUBLE: *(double *)p = k->def; break;
        case K_BOOL: *(bool *)p = k->def != 0; break;
        case K_CHOICE: put_int(k, p, k->choice_val[0]); break;
        case K_DTYPE: break;
        }
    }
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

/* HF casts the router's input and its weights (for good: the parameter becomes that dtype) to router_dtype and
 * returns logits, probabilities and gates rounded to it (bfloat16: logits ~1e-3 off float32). switchc's router is
 * float32 only (the paper's selective precision): the other two are refused rather than run as float32. */
static sx_status check_router_dtype(const cJSON *it, const char *where) {
    char s[32];
    SX_TRY(cfg_get_string(it, where, s, sizeof s));
    if (!strcmp(s, "bfloat16") || !strcmp(s, "float16"))
        return sx_errorf("%s.router_dtype: '%s' is not supported: switchc's router runs in float32 only (HF "
                         "would cast the router's input and weights to %s); set it to \"float32\"",
                         where, s, s);
    if (strcmp(s, "float32")) return sx_errorf("%s.router_dtype: '%s' is not one of float32, bfloat16, float16", where, s);
    return sx_ok();
}

static sx_status set_key(const key_desc *k, const cJSON *it, const char *where, model_config *c) {
    void *p = (char *)c + k->offset;
    if (k->null_is_default && cJSON_IsNull(it)) {
        put_int(k, p, (int)k->def);
        return sx_ok();
    }
    int64_t v;
    char s[32];
    switch (k->type) {
    case K_INT:
        SX_TRY(cfg_get_int(it, where, (int64_t)k->lo, (int64_t)k->hi, &v));
        put_int(k, p, (int)v);
        return sx_ok();
    case K_DOUBLE: return cfg_get_double(it, where, k->lo, k->hi, (double *)p);
    case K_BOOL: return cfg_get_bool(it, where, (bool *)p);
    case K_CHOICE:
        SX_TRY(cfg_get_string(it, where, s, sizeof s));
        for (int j = 0; j < 2; j++)
            if (!strcmp(s, k->choice[j])) {
                put_int(k, p, k->choice_val[j]);
                return sx_ok();
            }
        return sx_errorf("%s.%s: '%s' is not one of %s, %s", where, k->key, s, k->choice[0], k->choice[1]);
    case K_ACT: return parse_act(it, where, c);
    case K_DTYPE: return check_router_dtype(it, where);
    }
    SX_FATAL("key type %d", (int)k->type);
}

/* The members of one object (the top level, or the knobs under "switchc"), checked against the table. */
static sx_status parse_keys(const cJSON *obj, const char *where, bool knobs, model_config *c) {
    const char *names[2 * N_KEYS + 1];
    int nn = 0;
    for (int i = 0; i < N_KEYS; i++) {
        if (KEYS[i].knob != knobs) continue;
        names[nn++] = KEYS[i].key;
        if (KEYS[i].alias) names[nn++] = KEYS[i].alias;
    }
    if (!knobs) names[nn++] = "switchc";
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        const char *name = it->string;
        if (!knobs && in_list(name, IGNORED_KEYS, NKEYS(IGNORED_KEYS))) continue;
        if (!knobs && !strcmp(name, "switchc")) {
            char w[256];
            snprintf(w, sizeof w, "%s.switchc", where);
            if (!cJSON_IsObject(it)) return sx_errorf("%s: expected an object", w);
            SX_TRY(parse_keys(it, w, true, c));
            continue;
        }
        const key_desc *k = NULL;
        for (int i = 0; i < N_KEYS && !k; i++)
            if (KEYS[i].knob == knobs && (!strcmp(name, KEYS[i].key) || (KEYS[i].alias && !strcmp(name, KEYS[i].alias))))
                k = &KEYS[i];
        if (!k) return unknown_key(where, name, names, nn);
        SX_TRY(set_key(k, it, where, c));
    }
    return sx_ok();
}

sx_status model_config_from_json(const cJSON *obj, const char *where, model_config *c) {
    model_config_defaults(c);
    if (!cJSON_IsObject(obj)) return sx_errorf("%s: a model config must be a JSON object", where);
    SX_TRY(parse_keys(obj, where, false, c));
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

static void write_key(cJSON *o, const key_desc *k, const model_config *c) {
    const void *p = (const char *)c + k->offset;
    switch (k->type) {
    case K_INT: cJSON_AddNumberToObject(o, k->key, get_int_member(k, p)); break;
    case K_DOUBLE: cJSON_AddNumberToObject(o, k->key, *(const double *)p); break;
    case K_BOOL: cJSON_AddBoolToObject(o, k->key, *(const bool *)p); break;
    case K_CHOICE: cJSON_AddStringToObject(o, k->key, k->choice[get_int_member(k, p) == k->choice_val[0] ? 0 : 1]); break;
    case K_ACT: cJSON_AddStringToObject(o, k->key, act_name(c->act)); break;
    case K_DTYPE: cJSON_AddStringToObject(o, k->key, "float32"); break;
    }
}

static bool key_differs(const key_desc *k, const model_config *a, const model_config *b) {
    const void *pa = (const char *)a + k->offset, *pb = (const char *)b + k->offset;
    if (k->type == K_DOUBLE) return *(const double *)pa != *(const double *)pb;
    return get_int_member(k, pa) != get_int_member(k, pb);
}

cJSON *model_config_to_json(const model_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "architectures", cJSON_CreateStringArray((const char *[]){"SwitchTransformersForConditionalGeneration"}, 1));
    cJSON_AddStringToObject(o, "model_type", "switch_transformers");
    for (int i = 0; i < N_KEYS; i++)
        if (!KEYS[i].knob) write_key(o, &KEYS[i], c);
    cJSON_AddBoolToObject(o, "is_encoder_decoder", true);
    /* the knobs only where one differs from its default, so a plain HF config stays plain */
    model_config d;
    model_config_defaults(&d);
    bool knobs = false;
    for (int i = 0; i < N_KEYS; i++) knobs |= KEYS[i].knob && key_differs(&KEYS[i], c, &d);
    if (knobs) {
        cJSON *k = cJSON_AddObjectToObject(o, "switchc");
        for (int i = 0; i < N_KEYS; i++)
            if (KEYS[i].knob) write_key(k, &KEYS[i], c);
    }
    return o;
}
