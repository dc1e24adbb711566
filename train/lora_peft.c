/* peft's on-disk LoRA format (train/lora.h), as peft 0.21.2 writes it for SwitchTransformers: adapter_config.json
 * (LoraConfig's field names) and adapter_model.safetensors with one tensor per adapted nn.Linear and matrix,
 * "base_model.model.<module>.lora_A.weight" [r, in] and "...lora_B.weight" [out, r] (peft drops the adapter name
 * "default" when it saves); an expert block is E such modules, "...experts.expert_<e>.wi". */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "train/cfg_util.h"
#include "train/hf/hf_model.h"
#include "train/hf/hf_weights.h"
#include "train/lora.h"

#define PEFT_PREFIX "base_model.model."

/* ---- adapter_config.json in ----------------------------------------------------------------------------------------- */

/* A key that must be absent, null, false, "none" or empty for switchc to hold the adapter. */
static sx_status refuse_if_set(const cJSON *j, const char *path, const char *key, const char *why) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    bool unset = !v || cJSON_IsNull(v) || cJSON_IsFalse(v) || (cJSON_IsString(v) && (!v->valuestring[0] || !strcmp(v->valuestring, "none"))) ||
                 ((cJSON_IsObject(v) || cJSON_IsArray(v)) && cJSON_GetArraySize(v) == 0);
    if (unset) return sx_ok();
    char *txt = cJSON_PrintUnformatted(v);
    sx_status s = sx_errorf("%s: %s = %.80s is not supported: %s", path, key, txt, why);
    free(txt);
    return s;
}

static sx_status check_supported(const cJSON *j, const char *path) {
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA"))
        return sx_errorf("%s: peft_type must be \"LORA\" (switchc reads LoRA adapters only)", path);
    static const struct {
        const char *key, *why;
    } NO[] = {
        {"use_dora", "DoRA adds a magnitude vector switchc does not hold"},
        {"fan_in_fan_out", "switchc's linears store [out, in] as nn.Linear"},
        {"lora_bias", "switchc's adapters have no bias"},
        {"modules_to_save", "train whole modules with train.train_only instead"},
        {"rank_pattern", "every adapter has the one rank lora.r"},
        {"alpha_pattern", "every adapter has the one lora.alpha"},
        {"layers_to_transform", "name the layers in lora.targets instead"},
        {"exclude_modules", "name the modules to adapt in lora.targets instead"},
        {"target_parameters", "switchc adapts nn.Linear modules"},
        {"trainable_token_indices", "switchc's embedding has no adapter"},
        {"use_qalora", "QA-LoRA is not implemented"},
    };
    for (size_t k = 0; k < sizeof NO / sizeof NO[0]; k++) SX_TRY(refuse_if_set(j, path, NO[k].key, NO[k].why));
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "bias");
    if (b && !(cJSON_IsString(b) && !strcmp(b->valuestring, "none")))
        return sx_errorf("%s: bias must be \"none\" (switchc trains no biases beside the adapters)", path);
    return sx_ok();
}

/* The modules adapter_model.safetensors holds, one glob per expert block ("expert_*"), comma-separated. */
static sx_status modules_of_file(const char *dir, char *out, size_t cap);

static sx_status targets_from(const cJSON *tm, const char *path, const char *dir, char *out, size_t cap) {
    out[0] = 0;
    bool plain = cJSON_IsArray(tm) && cJSON_GetArraySize(tm) > 0;
    const cJSON *it;
    if (plain) cJSON_ArrayForEach(it, tm) plain &= cJSON_IsString(it) && !strpbrk(it->valuestring, "*?[(\\|^$+{,");
    if (!plain) return modules_of_file(dir, out, cap); /* a regex (or odd names): the modules the file holds */
    size_t len = 0;
    cJSON_ArrayForEach(it, tm) {
        int n = snprintf(out + len, cap - len, "%s%s", len ? "," : "", it->valuestring);
        if (n < 0 || (size_t)n >= cap - len) return sx_errorf("%s: target_modules is longer than lora.targets holds (%zu bytes)", path, cap);
        len += (size_t)n;
    }
    return sx_ok();
}

static sx_status number(const cJSON *j, const char *path, const char *key, double lo, double hi, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v) return sx_errorf("%s: missing \"%s\"", path, key);
    return cfg_get_double(v, path, lo, hi, out) /* names the file and the key */;
}

sx_status lora_peft_spec(const char *dir, lora_spec *spec) {
    char path[1100];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    cJSON *j;
    SX_TRY(cfg_parse_file(path, &j));
    sx_status s = cJSON_IsObject(j) ? check_supported(j, path) : sx_errorf("%s: expected a JSON object", path);
    double r = 0, alpha = 0, dropout = 0;
    bool rs = false;
    if (s.ok) s = number(j, path, "r", 1, 1 << 16, &r);
    if (s.ok && r != floor(r)) s = sx_errorf("%s: r = %g must be a whole number", path, r);
    if (s.ok) s = number(j, path, "lora_alpha", 1e-30, 1e9, &alpha);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "lora_dropout"), *u = cJSON_GetObjectItemCaseSensitive(j, "use_rslora");
    if (s.ok && d) s = cfg_get_double(d, path, 0, 0.999, &dropout);
    if (s.ok && u) s = cfg_get_bool(u, path, &rs);
    if (s.ok && spec->r == 0) {
        spec->r = (int)r;
        spec->alpha = alpha;
        spec->dropout = dropout;
        spec->rslora = rs;
        s = targets_from(cJSON_GetObjectItemCaseSensitive(j, "target_modules"), path, dir, spec->targets, sizeof spec->targets);
    } else if (s.ok) {
        if ((int)r != spec->r) s = sx_errorf("%s: r = %d but the run config's lora.r = %d", path, (int)r, spec->r);
        else if (alpha != spec->alpha) s = sx_errorf("%s: lora_alpha = %g but the run config's lora.alpha = %g", path, alpha, spec->alpha);
        else if (rs != spec->rslora) s = sx_errorf("%s: use_rslora = %s but the run config's lora.rslora = %s", path, rs ? "true" : "false",
                                                   spec->rslora ? "true" : "false");
    }
    cJSON_Delete(j);
    return s;
}

/* ---- adapter_model.safetensors in ----------------------------------------------------------------------------------- */

static sx_status open_weights(const char *dir, hf_weights **w, char *file, size_t cap) {
    struct stat st;
    snprintf(file, cap, "%s/adapter_model.safetensors", dir);
    if (stat(file, &st) != 0) snprintf(file, cap, "%s/adapter_model.bin", dir);
    if (stat(file, &st) != 0)
        return sx_errorf("%s: no adapter_model.safetensors (or adapter_model.bin): not a peft adapter folder", dir);
    return hf_weights_open(file, w);
}

/* "base_model.model.X.lora_A.weight" -> X (NULL for any other name). */
static const char *module_of(const char *name, char *buf, size_t cap) {
    size_t n = strlen(name), pl = strlen(PEFT_PREFIX), sl = strlen(".lora_A.weight");
    if (strncmp(name, PEFT_PREFIX, pl) || n <= pl + sl || strcmp(name + n - sl, ".lora_A.weight")) return NULL;
    snprintf(buf, cap, "%.*s", (int)(n - pl - sl), name + pl);
    return buf;
}

static sx_status modules_of_file(const char *dir, char *out, size_t cap) {
    hf_weights *w;
    char file[1100], mod[300];
    SX_TRY(open_weights(dir, &w, file, sizeof file));
    size_t len = 0;
    out[0] = 0;
    sx_status s = sx_ok();
    for (int i = 0; s.ok && i < hf_weights_count(w); i++) {
        if (!module_of(hf_weights_info(w, i)->name, mod, sizeof mod)) continue;
        char *ex = strstr(mod, ".experts.expert_"); /* one glob per expert block */
        if (ex) {
            char *dig = ex + strlen(".experts.expert_"), *end = dig;
            while (*end >= '0' && *end <= '9') end++;
            memmove(dig + 1, end, strlen(end) + 1);
            *dig = '*';
        }
        bool seen = false; /* as a whole item of the list */
        for (char *q = strstr(out, mod); q && !seen; q = strstr(q + 1, mod))
            seen = (q == out || q[-1] == ',') && (q[strlen(mod)] == ',' || !q[strlen(mod)]);
        if (seen) continue;
        int n = snprintf(out + len, cap - len, "%s%s", len ? "," : "", mod);
        if (n < 0 || (size_t)n >= cap - len) s = sx_errorf("%s: its modules do not fit lora.targets (%zu bytes): set lora.targets", file, cap);
        else len += (size_t)n;
    }
    if (s.ok && !len) s = sx_errorf("%s: no tensor named " PEFT_PREFIX "<module>.lora_A.weight: not a peft LoRA adapter", file);
    hf_weights_close(w);
    return s;
}

static sx_status read_adapter(model *m, hf_weights *w, const char *file, int i, bool *used) {
    const param_desc *p = &m->params[i];
    const int ne = p->n_experts ? p->n_experts : 1, nd = p->n_experts ? p->ndim - 1 : p->ndim;
    const int64_t *shape = p->n_experts ? p->shape + 1 : p->shape, per = p->numel / ne;
    char hf[200], name[240];
    for (int e = 0; e < ne; e++) {
        snprintf(name, sizeof name, PEFT_PREFIX "%s", model_param_hf_name(m, i, e, hf, sizeof hf));
        const hf_tensor_info *t = hf_weights_find(w, name);
        if (!t) return sx_errorf("%s: missing tensor '%s' (the run's lora.targets adapt that module)", file, name);
        bool ok = t->ndim == nd;
        for (int k = 0; ok && k < nd; k++) ok = t->shape[k] == shape[k];
        if (!ok)
            return sx_errorf("%s: tensor '%s' is not [%lld, %lld] (lora.r = %d and the model's shapes)", file, name, (long long)shape[0],
                             (long long)shape[1], m->cfg.lora.r);
        SX_TRY(hf_weights_read_f32(w, name, m->w + p->offset + e * per, per));
        used[t - hf_weights_info(w, 0)] = true;
    }
    for (int64_t j = 0; j < p->numel; j++)
        if (!isfinite(m->w[p->offset + j])) return sx_errorf("%s: '%s' holds NaN or infinity", file, p->name);
    return sx_ok();
}

sx_status lora_peft_load(model *m, const char *dir) {
    if (!m->lora) return sx_errorf("%s: the model has no LoRA adapters to load (lora.r is 0)", dir);
    hf_weights *w;
    char file[1100], mod[300];
    SX_TRY(open_weights(dir, &w, file, sizeof file));
    bool *used = calloc((size_t)hf_weights_count(w) + 1, 1);
    sx_status s = sx_ok();
    for (int i = 0; s.ok && i < m->n_params; i++)
        if (lora_is_adapter(&m->params[i])) s = read_adapter(m, w, file, i, used);
    for (int i = 0; s.ok && i < hf_weights_count(w); i++) {
        const char *name = hf_weights_info(w, i)->name;
        if (used[i] || (m->ep_size > 1 && strstr(name, ".mlp.experts.expert_"))) continue; /* another rank's experts */
        const char *mo = module_of(name, mod, sizeof mod);
        s = sx_errorf("%s: unexpected tensor '%s'%s%s%s", file, name, mo ? ": the run's lora.targets do not adapt module '" : "", mo ? mo : "",
                      mo ? "' (lora.targets, or none to take the adapter's own)" : " (not a LoRA matrix switchc holds)");
    }
    free(used);
    hf_weights_close(w);
    return s;
}

/* ---- out ----------------------------------------------------------------------------------------------------------- */

/* peft's target_modules: the run's patterns when all are plain names (peft matches them the same way), else every
 * adapted module by name. */
static cJSON *target_modules(const model *m) {
    char buf[LORA_TARGETS_CAP], *items[512];
    cJSON *a = cJSON_CreateArray();
    if (!strpbrk(m->cfg.lora.targets, "*?[")) {
        int n = cfg_split_list(m->cfg.lora.targets, buf, sizeof buf, items, 512);
        for (int k = 0; k < n; k++) cJSON_AddItemToArray(a, cJSON_CreateString(items[k]));
        return a;
    }
    char hf[200];
    for (int i = 0; i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        if (p->kind != PK_LORA_A) continue;
        for (int e = 0; e < (p->n_experts ? p->n_experts : 1); e++) {
            model_param_hf_name(m, i, e, hf, sizeof hf);
            hf[strlen(hf) - strlen(".lora_A.weight")] = 0;
            cJSON_AddItemToArray(a, cJSON_CreateString(hf));
        }
    }
    return a;
}

static sx_status write_config(const model *m, const char *dir, const char *base_model) {
    const lora_spec *sp = &m->cfg.lora;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "alpha_pattern", cJSON_CreateObject());
    cJSON_AddItemToObject(j, "auto_mapping", cJSON_CreateNull());
    cJSON_AddItemToObject(j, "base_model_name_or_path", base_model ? cJSON_CreateString(base_model) : cJSON_CreateNull());
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", false);
    cJSON_AddBoolToObject(j, "inference_mode", true);
    cJSON_AddBoolToObject(j, "init_lora_weights", true);
    cJSON_AddItemToObject(j, "layers_pattern", cJSON_CreateNull());
    cJSON_AddItemToObject(j, "layers_to_transform", cJSON_CreateNull());
    cJSON_AddNumberToObject(j, "lora_alpha", sp->alpha);
    cJSON_AddBoolToObject(j, "lora_bias", false);
    cJSON_AddNumberToObject(j, "lora_dropout", sp->dropout);
    cJSON_AddItemToObject(j, "modules_to_save", cJSON_CreateNull());
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddNumberToObject(j, "r", sp->r);
    cJSON_AddItemToObject(j, "rank_pattern", cJSON_CreateObject());
    cJSON_AddItemToObject(j, "revision", cJSON_CreateNull());
    cJSON_AddItemToObject(j, "target_modules", target_modules(m));
    cJSON_AddItemToObject(j, "task_type", cJSON_CreateNull());
    cJSON_AddBoolToObject(j, "use_dora", false);
    cJSON_AddBoolToObject(j, "use_rslora", sp->rslora);
    char *text = cJSON_Print(j), path[1100];
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    bool ok = f && fputs(text, f) >= 0;
    if (f && fclose(f) != 0) ok = false;
    free(text);
    return ok ? sx_ok() : sx_errorf("%s: cannot write: %s", path, strerror(errno));
}

sx_status lora_peft_export(const model *m, const char *dir, const char *base_model) {
    if (!m->lora) return sx_errorf("export-hf --adapter-only: the checkpoint holds no LoRA adapters (its run had lora.r 0)");
    if (!lora_unmerged(m)) return sx_errorf("export-hf --adapter-only: the adapters were merged into the weights already");
    if (m->ep_size != 1) return sx_errorf("export-hf --adapter-only: load the checkpoint without expert parallelism");
    int total = 0;
    for (int i = 0; i < m->n_params; i++)
        if (lora_is_adapter(&m->params[i])) total += m->params[i].n_experts ? m->params[i].n_experts : 1;
    hf_out_tensor *t = calloc((size_t)total, sizeof *t);
    char (*names)[240] = calloc((size_t)total, sizeof *names), hf[200];
    SX_ASSERT(t && names, "out of memory");
    int k = 0;
    for (int i = 0; i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        if (!lora_is_adapter(p)) continue;
        int ne = p->n_experts ? p->n_experts : 1;
        for (int e = 0; e < ne; e++, k++) {
            snprintf(names[k], sizeof names[k], PEFT_PREFIX "%s", model_param_hf_name(m, i, e, hf, sizeof hf));
            t[k].name = names[k];
            t[k].ndim = 2;
            memcpy(t[k].shape, p->shape + (p->n_experts ? 1 : 0), sizeof(int64_t) * 2);
            t[k].data = m->w + p->offset + e * (p->numel / ne);
        }
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    sx_status s = hf_make_dirs(dir);
    if (s.ok) s = hf_safetensors_write(path, t, total);
    if (s.ok) s = write_config(m, dir, base_model);
    free(t);
    free(names);
    return s;
}
