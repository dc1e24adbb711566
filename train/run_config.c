/* Run config: one table of fields (section, key, type, bounds, offset) drives parsing, --set, and the effective
 * config written into the run directory, so a key exists in exactly one place. */
#include "train/run_config.h"

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "train/cfg_util.h"
#include "train/lora.h"
#include "train/run_checks.h"

typedef enum { F_INT, F_I64, F_U64, F_DOUBLE, F_BOOL, F_STR } field_type;
typedef struct {
    const char *section, *key;
    field_type type;
    size_t offset, size;
    double def;       /* the library default of a number or bool (NaN: null) */
    const char *sdef; /* the library default of a string (NULL: empty) */
    double lo, hi;
    const char *help;
} field;

#define MEMBER(member) offsetof(run_config, member), sizeof(((run_config *)0)->member)
/* a number or bool: its default, then its range (unused for bools) */
#define NUM(sec, k, t, member, def, lo, hi, help) {sec, k, t, MEMBER(member), def, NULL, lo, hi, help}
#define STR(sec, k, member, def, help) {sec, k, F_STR, MEMBER(member), 0, def, 0, 0, help}
/* a key of the model config (lora.*): its default is model_config_defaults' */
#define MODEL_NUM(sec, k, t, member, lo, hi, help) NUM(sec, k, t, member, 0, lo, hi, help)
#define MODEL_STR(sec, k, member, help) STR(sec, k, member, NULL, help)
#define IN_MODEL(f) ((f)->offset < sizeof(model_config))
_Static_assert(offsetof(run_config, model) == 0, "IN_MODEL: the model config is run_config's first member");

/* The default column: the built-in task, and for optim, schedule and train Hugging Face Trainer's defaults
 * (TrainingArguments, torch AdamW). */
static const field FIELDS[] = {
    STR("data", "task", task, "reverse", "reverse | sort (built-in synthetic tasks) | dataset"),
    NUM("data", "task_min_len", F_INT, task_min_len, 3, 1, 64, "shortest built-in example (digits)"),
    NUM("data", "task_max_len", F_INT, task_max_len, 7, 1, 64, "longest built-in example (digits)"),
    STR("data", "train", train_data, NULL, "HDF5 token dataset for training (task dataset)"),
    STR("data", "eval", eval_data, NULL, "HDF5 token dataset for evaluation"),
    STR("data", "tokenizer", tokenizer, NULL, "SentencePiece .model (or HF folder) the datasets were prepared with: eval/generate text"),
    NUM("data", "eval_examples", F_INT, eval_examples, 512, 0, 1e7, "held-out examples evaluated (0 = an eval dataset whole; the built-in task 512)"),
    NUM("data", "shuffle", F_BOOL, shuffle, 1, 0, 0, "shuffle the training examples every epoch (false = the dataset's order)"),
    NUM("data", "max_input_len", F_INT, max_input_len, 512, 1, 1e6, "truncate inputs to this many tokens"),
    NUM("data", "max_target_len", F_INT, max_target_len, 128, 1, 1e6, "truncate targets to this many tokens"),
    STR("data", "pad_to", pad_to, "batch", "batch (pad to the batch's longest example) | fixed (always max_input_len x max_target_len)"),
    NUM("data", "bucket_batches", F_INT, bucket_batches, 0, 0, 1e6,
        "length bucketing: 0 = off; K > 1 sorts each window of K (micro-)batches by input length and shuffles the K"),
    NUM("data", "noise_density", F_DOUBLE, noise_density, 0.15, 0, 1, "span corruption: fraction of noise tokens, 0 < d < 1 (T5: 0.15)"),
    NUM("data", "mean_span_length", F_DOUBLE, mean_span_length, 3, 1, 1e6, "span corruption: mean noise span length, >= 1 (T5: 3)"),
    NUM("data", "read_cache_mb", F_INT, read_cache_mb, 4, 0, 1 << 20,
        "memory budget of dataset reads: HDF5 chunk cache per open dataset in MiB (examples are read one by one; 0 = HDF5 default)"),
    STR("optim", "name", optimizer, "adamw", "adamw | adafactor"),
    NUM("optim", "lr", F_DOUBLE, lr, 5e-5, 0, 10, "peak learning rate"),
    NUM("optim", "weight_decay", F_DOUBLE, weight_decay, 0, 0, 10, "decoupled weight decay (not on norms)"),
    NUM("optim", "beta1", F_DOUBLE, beta1, NAN, 0, 0.9999999,
        "first-moment decay; null = the optimizer's default (AdamW 0.9; Adafactor none, HF's beta1=None)"),
    NUM("optim", "beta2", F_DOUBLE, beta2, 0.999, 0, 0.9999999, "AdamW beta2"),
    NUM("optim", "eps", F_DOUBLE, eps, 1e-8, 0, 1, "AdamW epsilon"),
    NUM("optim", "decay_rate", F_DOUBLE, adafactor_decay_rate, -0.8, -10, 0, "Adafactor second-moment decay exponent (-0.8)"),
    NUM("optim", "clip_threshold", F_DOUBLE, adafactor_clip_threshold, 1, 0, 1e6, "Adafactor update clipping"),
    NUM("optim", "relative_step", F_BOOL, adafactor_relative_step, 0, 0, 0, "Adafactor relative step size (T5)"),
    NUM("optim", "scale_parameter", F_BOOL, adafactor_scale_parameter, 0, 0, 0, "Adafactor scales by the parameter RMS"),
    STR("optim", "idle_experts", idle_experts, "skip",
        "skip (torch: an expert no token reached in the global batch has no gradient: no update, no decay, its step count "
        "stays) | update (Megatron: every expert steps every step)"),
    STR("schedule", "name", schedule, "linear_decay", "constant | linear_warmup | inverse_sqrt | cosine | linear_decay"),
    NUM("schedule", "warmup_steps", F_I64, warmup_steps, 0, 0, 1e12, "linear warmup steps"),
    NUM("schedule", "min_lr", F_DOUBLE, min_lr, 0, 0, 10, "floor of the cosine schedule"),
    NUM("train", "steps", F_I64, steps, 3000, 1, 1e12, "optimizer steps"),
    NUM("train", "batch_size", F_INT, batch_size, 32, 1, 1e7, "examples per optimizer step (global)"),
    NUM("train", "micro_batch_size", F_INT, micro_batch_size, 0, 0, 1e7, "examples per forward/backward (0 = batch_size)"),
    NUM("train", "grad_clip", F_DOUBLE, grad_clip, 1, 0, 1e9, "clip the global gradient norm (0 = off)"),
    NUM("train", "max_nonfinite_skips", F_INT, max_nonfinite_skips, 10, 1, 1e9, "consecutive non-finite steps before stopping"),
    STR("train", "freeze", freeze, NULL, "comma-separated name patterns to freeze (e.g. *.router.*)"),
    STR("train", "train_only", train_only, NULL, "comma-separated name patterns: train only these"),
    NUM("train", "seed", F_U64, seed, 1234, 0, 1.8e19, "seed of every random stream (init, data, dropout, jitter)"),
    NUM("train", "log_every", F_INT, log_every, 100, 1, 1e9, "steps between metric lines"),
    NUM("train", "eval_every", F_INT, eval_every, 1000, 0, 1e9, "steps between evaluations (0 = at the end only)"),
    NUM("train", "ckpt_every", F_INT, ckpt_every, 1000, 0, 1e9, "steps between checkpoints (0 = at the end only)"),
    NUM("train", "keep_checkpoints", F_INT, keep_checkpoints, 2, 1, 1e6, "checkpoints kept in the run directory"),
    STR("train", "out_dir", out_dir, "runs/default", "run directory"),
    NUM("train", "threads", F_INT, threads, 0, 0, 4096, "CPU threads for BLAS (0 = default)"),
    NUM("eval", "batch_size", F_INT, eval_batch_size, 128, 1, 1e7, "examples per evaluation batch"),
    NUM("eval", "max_gen_len", F_INT, gen_max_len, 16, 1, 1e6, "longest generated target"),
    NUM("parallel", "expert_parallel", F_INT, expert_parallel, 1, 1, 1e6, "ranks sharing the experts of a layer"),
    STR("parallel", "transport", transport, "auto", "auto | mpi | nccl | loopback"),
    NUM("parallel", "timeout_s", F_DOUBLE, collective_timeout_s, 300, 0, 1e9, "collective timeout in seconds"),
    MODEL_NUM("lora", "r", F_INT, model.lora.r, 0, 1 << 16, "LoRA rank (peft's r); 0 = no adapters, the whole model trains"),
    MODEL_NUM("lora", "alpha", F_DOUBLE, model.lora.alpha, 0, 1e9, "peft's lora_alpha: updates scaled by alpha / r"),
    MODEL_NUM("lora", "dropout", F_DOUBLE, model.lora.dropout, 0, 0.999, "peft's lora_dropout on each adapter's input (training only)"),
    MODEL_NUM("lora", "rslora", F_BOOL, model.lora.rslora, 0, 0, "peft's use_rslora: scale by alpha / sqrt(r)"),
    MODEL_STR("lora", "targets", model.lora.targets,
        "comma-separated linears to adapt: plain names as peft's target_modules (q,v: every q and v), or globs over HF module "
        "names (*.experts.*.wi: every expert's wi, one [E, ...] adapter block per layer); the base is frozen"),
};
#define NFIELDS ((int)(sizeof FIELDS / sizeof FIELDS[0]))
static const char *const SECTIONS[] = {"model", "data", "optim", "schedule", "train", "eval", "parallel", "lora"};
#define NSECTIONS ((int)(sizeof SECTIONS / sizeof SECTIONS[0]))

void run_config_defaults(run_config *r) {
    memset(r, 0, sizeof *r);
    model_config *m = &r->model;
    model_config_defaults(m);
    /* A tiny Switch model: 2+2 blocks, every second FFN a 4-expert Switch layer (HF placement: blocks 1). */
    m->vocab_size = 16;
    m->d_model = 64;
    m->d_kv = 16;
    m->num_heads = 4;
    m->d_ff = 128;
    m->num_layers = 2;
    m->num_decoder_layers = 2;
    m->num_sparse_encoder_layers = 1;
    m->num_sparse_decoder_layers = 1;
    m->encoder_sparse_step = 2;
    m->decoder_sparse_step = 2;
    m->num_experts = 4;
    m->expert_capacity = 16;
    m->router_jitter_noise = 0.0;
    m->dropout_rate = 0.0;
    m->router_aux_loss_coef = 0.01; /* the paper's alpha (SPEC 6) */
    snprintf(r->model_source, sizeof r->model_source, "built-in");
    for (int i = 0; i < NFIELDS; i++) {
        const field *f = &FIELDS[i];
        char *p = (char *)r + f->offset;
        if (IN_MODEL(f)) continue;
        switch (f->type) {
        case F_INT: *(int *)p = (int)f->def; break;
        case F_I64: *(int64_t *)p = (int64_t)f->def; break;
        case F_U64: *(uint64_t *)p = (uint64_t)f->def; break;
        case F_DOUBLE: *(double *)p = f->def; break;
        case F_BOOL: *(bool *)p = f->def != 0; break;
        case F_STR: snprintf(p, f->size, "%s", f->sdef ? f->sdef : ""); break;
        }
    }
}

void run_config_demo(run_config *r) {
    run_config_defaults(r);
    r->lr = 3e-3;
    r->beta1 = 0.9;
    r->beta2 = 0.98;
    snprintf(r->schedule, sizeof r->schedule, "cosine");
    r->warmup_steps = 100;
    r->min_lr = 1e-4;
}

/* Keys whose JSON null means "the default of whatever uses it" (stored as NaN). */
static bool nullable(const field *f) { return f->type == F_DOUBLE && !strcmp(f->section, "optim") && !strcmp(f->key, "beta1"); }

static sx_status set_field(run_config *r, const field *f, const cJSON *it, const char *where) {
    char *p = (char *)r + f->offset;
    if (nullable(f) && cJSON_IsNull(it)) {
        *(double *)p = NAN;
        return sx_ok();
    }
    int64_t iv;
    switch (f->type) {
    case F_INT:
        SX_TRY(cfg_get_int(it, where, (int64_t)f->lo, (int64_t)f->hi, &iv));
        *(int *)p = (int)iv;
        break;
    case F_I64:
        SX_TRY(cfg_get_int(it, where, (int64_t)f->lo, (int64_t)f->hi, &iv));
        *(int64_t *)p = iv;
        break;
    case F_U64:
        SX_TRY(cfg_get_int(it, where, 0, INT64_MAX, &iv));
        *(uint64_t *)p = (uint64_t)iv;
        break;
    case F_DOUBLE: SX_TRY(cfg_get_double(it, where, f->lo, f->hi, (double *)p)); break;
    case F_BOOL: SX_TRY(cfg_get_bool(it, where, (bool *)p)); break;
    case F_STR: SX_TRY(cfg_get_string(it, where, p, f->size)); break;
    }
    return sx_ok();
}

static sx_status apply_section(run_config *r, const char *sec, const cJSON *obj, const char *where) {
    char path[600];
    snprintf(path, sizeof path, "%s: %s", where, sec);
    if (!cJSON_IsObject(obj)) return sx_errorf("%s: expected an object", path);
    const char *keys[64];
    int nk = 0;
    for (int i = 0; i < NFIELDS; i++)
        if (!strcmp(FIELDS[i].section, sec)) keys[nk++] = FIELDS[i].key;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        const field *f = NULL;
        for (int i = 0; i < NFIELDS; i++)
            if (!strcmp(FIELDS[i].section, sec) && !strcmp(FIELDS[i].key, it->string)) f = &FIELDS[i];
        if (!f) {
            const char *hint = cfg_closest(it->string, keys, nk);
            if (hint) return sx_errorf("%s: unknown key '%s': did you mean '%s'?", path, it->string, hint);
            return sx_errorf("%s: unknown key '%s' (known: see `switchc train --help-config`)", path, it->string);
        }
        SX_TRY(set_field(r, f, it, path));
    }
    return sx_ok();
}

sx_status run_config_apply_json(run_config *r, const cJSON *obj, const char *where) {
    if (!cJSON_IsObject(obj)) return sx_errorf("%s: a run config must be a JSON object", where);
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        const char *sec = it->string;
        if (!strcmp(sec, "model")) {
            char w[600];
            lora_spec keep = r->model.lora; /* the lora section is the run's, not the model config's */
            if (cJSON_IsString(it)) {
                /* the path of an HF config.json, relative to the working directory */
                snprintf(w, sizeof w, "%s", it->valuestring);
                sx_status ms = model_config_load(w, &r->model);
                if (!ms.ok) return sx_error_wrap(ms, "%s: model", where);
                snprintf(r->model_source, sizeof r->model_source, "%s", it->valuestring);
            } else {
                snprintf(w, sizeof w, "%s: model", where);
                SX_TRY(model_config_from_json(it, w, &r->model));
                snprintf(r->model_source, sizeof r->model_source, "%s", where);
            }
            r->model.lora = keep;
            continue;
        }
        bool known = false;
        for (int i = 1; i < NSECTIONS; i++) known |= !strcmp(sec, SECTIONS[i]);
        if (!known) {
            if (cfg_looks_like_hf_model_config(obj))
                return sx_errorf(
                    "%s: unknown section '%s': this looks like a Hugging Face model config.json; pass it as \"model\": "
                    "\"%s\" in a run config or as --init-from its folder",
                    where, sec, where);
            const char *hint = cfg_closest(sec, SECTIONS, NSECTIONS);
            if (hint) return sx_errorf("%s: unknown section '%s': did you mean '%s'?", where, sec, hint);
            return sx_errorf("%s: unknown section '%s' (model, data, optim, schedule, train, eval, parallel, lora)", where, sec);
        }
        SX_TRY(apply_section(r, sec, it, where));
    }
    return sx_ok();
}

sx_status run_config_load(run_config *r, const char *path) {
    cJSON *j;
    SX_TRY(cfg_parse_file(path, &j));
    sx_status s = run_config_apply_json(r, j, path);
    cJSON_Delete(j);
    return s;
}

sx_status run_config_set(run_config *r, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    const char *dot = strchr(assignment, '.');
    if (!eq || !dot || dot > eq) return sx_errorf("--set '%s': expected section.key=value (e.g. --set train.steps=500)", assignment);
    char sec[64], key[128];
    snprintf(sec, sizeof sec, "%.*s", (int)(dot - assignment), assignment);
    snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
    const char *val = eq + 1;
    cJSON *v;
    SX_TRY(cfg_parse_set_value(assignment, val, &v));
    cJSON *inner = cJSON_CreateObject();
    cJSON_AddItemToObject(inner, key, v);
    sx_status s;
    if (!strcmp(sec, "model")) {
        /* a model key is applied over the current model config, keeping its other values; "switchc.<knob>"
         * reaches the knobs object */
        cJSON *cur = model_config_to_json(&r->model), *target = cur;
        char *sub = strchr(key, '.');
        if (sub) {
            *sub++ = 0;
            if (strcmp(key, "switchc")) {
                cJSON_Delete(cur);
                cJSON_Delete(inner);
                return sx_errorf("--set '%s': model keys are flat except switchc.<knob>", assignment);
            }
            target = cJSON_GetObjectItemCaseSensitive(cur, "switchc");
            if (!target) target = cJSON_AddObjectToObject(cur, "switchc");
        }
        const char *leaf = sub ? sub : key;
        cJSON_DeleteItemFromObjectCaseSensitive(target, leaf);
        cJSON_AddItemReferenceToObject(target, leaf, v);
        lora_spec keep = r->model.lora;
        model_config_defaults(&r->model);
        s = model_config_from_json(cur, "--set model", &r->model);
        r->model.lora = keep;
        cJSON_Delete(cur);
        cJSON_Delete(inner);
        return s;
    }
    cJSON *outer = cJSON_CreateObject();
    cJSON_AddItemToObject(outer, sec, inner);
    s = run_config_apply_json(r, outer, "--set");
    cJSON_Delete(outer);
    return s;
}

sx_status run_config_validate(const run_config *r) {
    if (strcmp(r->task, "reverse") && strcmp(r->task, "sort") && strcmp(r->task, "dataset"))
        return sx_errorf("data.task: '%s' is not one of reverse, sort, dataset", r->task);
    if (!strcmp(r->task, "dataset") && !r->train_data[0]) return sx_errorf("data.train: task 'dataset' needs a training dataset path");
    if (r->task_min_len > r->task_max_len) return sx_errorf("data.task_min_len %d > data.task_max_len %d", r->task_min_len, r->task_max_len);
    if (strcmp(r->task, "dataset") && r->model.vocab_size < 13)
        return sx_errorf("model.vocab_size: the built-in tasks need 13 ids (pad, eos, unk, 10 digits), got %d", r->model.vocab_size);
    if (strcmp(r->pad_to, "batch") && strcmp(r->pad_to, "fixed")) return sx_errorf("data.pad_to: '%s' is not one of batch, fixed", r->pad_to);
    if (r->bucket_batches == 1) return sx_errorf("data.bucket_batches: 1 sorts nothing; use 0 (off) or K >= 2 batches per window");
    if (!(r->noise_density > 0 && r->noise_density < 1)) return sx_errorf("data.noise_density: %g must be strictly between 0 and 1", r->noise_density);
    if (!(r->mean_span_length >= 1)) return sx_errorf("data.mean_span_length: %g must be at least 1", r->mean_span_length);
    if (strcmp(r->optimizer, "adamw") && strcmp(r->optimizer, "adafactor")) return sx_errorf("optim.name: '%s' is not one of adamw, adafactor", r->optimizer);
    if (strcmp(r->idle_experts, "skip") && strcmp(r->idle_experts, "update"))
        return sx_errorf("optim.idle_experts: '%s' is not one of skip, update", r->idle_experts);
    int mb = r->micro_batch_size ? r->micro_batch_size : r->batch_size;
    if (r->batch_size % mb) return sx_errorf("train.micro_batch_size %d does not divide train.batch_size %d", mb, r->batch_size);
    if (r->model.num_experts % r->expert_parallel)
        return sx_errorf("parallel.expert_parallel %d does not divide model.num_experts %d", r->expert_parallel, r->model.num_experts);
    SX_TRY(lora_spec_check(&r->model.lora));
    return run_checks_validate(r);
}

sx_status run_config_batches_open(const run_config *r, bool heldout, batch_source **out) {
    const batch_source_options o = {
        .task = r->task,
        .task_min_len = r->task_min_len,
        .task_max_len = r->task_max_len,
        .train_data = r->train_data,
        .eval_data = r->eval_data,
        .eval_examples = r->eval_examples,
        .read_cache_bytes = (int64_t)r->read_cache_mb << 20,
        .seed = r->seed,
        .shuffle = r->shuffle,
        .pad_fixed = !strcmp(r->pad_to, "fixed"),
        .max_input_len = r->max_input_len,
        .max_target_len = r->max_target_len,
        .bucket_batches = r->bucket_batches,
        .micro_batch = r->micro_batch_size ? r->micro_batch_size : r->batch_size,
        .noise_density = r->noise_density,
        .mean_span_length = r->mean_span_length,
        .eos_token_id = r->model.eos_token_id,
        .pad_token_id = r->model.pad_token_id,
        .vocab_size = r->model.vocab_size,
    };
    return batch_source_open(&o, heldout, out);
}

cJSON *run_config_to_json(const run_config *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "model", model_config_to_json(&r->model));
    for (int s = 1; s < NSECTIONS; s++) {
        cJSON *sec = cJSON_AddObjectToObject(o, SECTIONS[s]);
        for (int i = 0; i < NFIELDS; i++) {
            const field *f = &FIELDS[i];
            if (strcmp(f->section, SECTIONS[s])) continue;
            const char *p = (const char *)r + f->offset;
            switch (f->type) {
            case F_INT: cJSON_AddNumberToObject(sec, f->key, *(const int *)p); break;
            case F_I64: cJSON_AddNumberToObject(sec, f->key, (double)*(const int64_t *)p); break;
            case F_U64: cJSON_AddNumberToObject(sec, f->key, (double)*(const uint64_t *)p); break;
            case F_DOUBLE:
                if (isnan(*(const double *)p)) cJSON_AddNullToObject(sec, f->key);
                else cJSON_AddNumberToObject(sec, f->key, *(const double *)p);
                break;
            case F_BOOL: cJSON_AddBoolToObject(sec, f->key, *(const bool *)p); break;
            case F_STR: cJSON_AddStringToObject(sec, f->key, p); break;
            }
        }
    }
    return o;
}

void run_config_print_help(FILE *out) {
    run_config d;
    run_config_defaults(&d);
    fprintf(out, "Run config keys (JSON sections; override any with --set section.key=value). Defaults are the library's (a\n"
                 "--config file or --init-from starts from them); `switchc train --print-config` shows the demo's values.\n");
    fprintf(out, "  model                  an HF config.json object, or the path of one (SPEC.md 1.1; knobs under \"switchc\")\n");
    for (int i = 0; i < NFIELDS; i++) {
        const field *f = &FIELDS[i];
        const char *p = (const char *)&d + f->offset;
        char def[160], range[96] = "";
        switch (f->type) {
        case F_INT: snprintf(def, sizeof def, "%d", *(const int *)p); break;
        case F_I64: snprintf(def, sizeof def, "%lld", (long long)*(const int64_t *)p); break;
        case F_U64: snprintf(def, sizeof def, "%llu", (unsigned long long)*(const uint64_t *)p); break;
        case F_DOUBLE:
            if (isnan(*(const double *)p)) snprintf(def, sizeof def, "null");
            else snprintf(def, sizeof def, "%g", *(const double *)p);
            break;
        case F_BOOL: snprintf(def, sizeof def, "%s", *(const bool *)p ? "true" : "false"); break;
        case F_STR: snprintf(def, sizeof def, "\"%s\"", p); break;
        }
        if (f->type == F_INT || f->type == F_I64 || f->type == F_DOUBLE) snprintf(range, sizeof range, ", range [%g, %g]", f->lo, f->hi);
        fprintf(out, "  %-8s %-22s %s (default %s%s)\n", f->section, f->key, f->help, def, range);
    }
}
