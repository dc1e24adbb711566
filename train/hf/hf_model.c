/* HF model folders: the parameter table's HF names looked up in the weight files, with the tied aliases of SPEC 2.3
 * (shared / encoder.embed_tokens / decoder.embed_tokens / lm_head are one tensor when tie_word_embeddings), strict
 * reporting of what does not fit, and the export back to config.json + model.safetensors. */
#include "train/hf/hf_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "train/hf/hf_weights.h"
#include "train/lora.h"

bool hf_is_model_dir(const char *path) {
    struct stat st;
    char p[1100];
    snprintf(p, sizeof p, "%s/config.json", path);
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && stat(p, &st) == 0;
}

sx_status hf_read_config(const char *dir, model_config *cfg) {
    char p[1100];
    snprintf(p, sizeof p, "%s/config.json", dir);
    return model_config_load(p, cfg);
}

static const char *const TIED[] = {"shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"};

static bool is_tied_alias(const model *m, const char *name) {
    for (int k = 0; k < 4; k++)
        if (!strcmp(name, TIED[k])) return k < 3 || m->cfg.tie_word_embeddings;
    return false;
}

static sx_status shape_ok(const hf_tensor_info *t, int ndim, const int64_t *shape, const char *dir) {
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return sx_ok();
    char want[128] = "", got[128] = "";
    for (int i = 0; i < ndim; i++) snprintf(want + strlen(want), sizeof want - strlen(want), i ? ", %lld" : "%lld", (long long)shape[i]);
    for (int i = 0; i < t->ndim; i++) snprintf(got + strlen(got), sizeof got - strlen(got), i ? ", %lld" : "%lld", (long long)t->shape[i]);
    return sx_errorf("%s: tensor '%s' is [%s] in the weights but config.json implies [%s]: the config does not match the weights", dir, t->name,
                     got, want);
}

sx_status hf_load_weights(model *m, const char *dir) {
    SX_ASSERT(m->dtype == AG_F32, "HF weights load into f32 models");
    hf_weights *w;
    SX_TRY(hf_weights_open(dir, &w));
    sx_status s = sx_ok();
    bool *used = calloc((size_t)hf_weights_count(w) + 1, 1);
    char hf[160];
    for (int i = 0; s.ok && i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        if (lora_is_adapter(p)) continue; /* an HF folder holds the base; adapters come from peft's folder */
        int ne = p->n_experts ? p->n_experts : 1;
        int64_t per = p->numel / ne;
        for (int e = 0; s.ok && e < ne; e++) {
            model_param_hf_name(m, i, e, hf, sizeof hf);
            const hf_tensor_info *t = hf_weights_find(w, hf);
            if (!t && p->kind == PK_EMBED) /* the embedding may be stored under any of its tied names */
                for (int k = 1; !t && k < 4; k++)
                    if (is_tied_alias(m, TIED[k])) t = hf_weights_find(w, TIED[k]);
            if (!t) {
                s = sx_errorf("%s: missing tensor '%s' (%s weights)", dir, hf, hf_weights_format(w));
                break;
            }
            s = shape_ok(t, p->n_experts ? p->ndim - 1 : p->ndim, p->n_experts ? p->shape + 1 : p->shape, dir);
            if (s.ok) s = hf_weights_read_f32(w, t->name, m->w + p->offset + e * per, per);
            used[t - hf_weights_info(w, 0)] = true;
        }
    }
    /* anything left must be a tied alias (or another rank's experts under expert parallelism) */
    for (int i = 0; s.ok && i < hf_weights_count(w); i++) {
        const hf_tensor_info *t = hf_weights_info(w, i);
        if (used[i] || is_tied_alias(m, t->name)) continue;
        if (m->ep_size > 1 && strstr(t->name, ".mlp.experts.expert_")) continue;
        s = sx_errorf("%s: unexpected tensor '%s' that the config's model has no place for (check num_experts, layers, sparse steps, "
                      "tie_word_embeddings, switchc.gated_ffn)",
                      dir, t->name);
    }
    /* non-finite weights are not checked by the formats: say so here rather than train on them */
    for (int64_t j = 0; s.ok && j < m->n_floats; j++)
        if (m->w[j] != m->w[j] || m->w[j] - m->w[j] != 0) {
            s = sx_errorf("%s: the weights contain NaN or infinity", dir);
            break;
        }
    free(used);
    hf_weights_close(w);
    return s;
}

sx_status hf_make_dirs(const char *dir) {
    char p[1100];
    int n = snprintf(p, sizeof p, "%s", dir);
    if (n <= 0 || n >= (int)sizeof p) return sx_errorf("%s: path too long", dir);
    for (char *c = p + 1; ; c++) {
        if (*c != '/' && *c) continue;
        char keep = *c;
        *c = 0;
        struct stat st;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return sx_errorf("%s: cannot create: %s", p, strerror(errno));
        if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) return sx_errorf("%s: exists and is not a directory", p);
        if (!keep) break;
        *c = keep;
    }
    return sx_ok();
}

sx_status hf_export(const model *m, const char *dir) {
    if (m->ep_size != 1) return sx_errorf("export-hf: load the checkpoint without expert parallelism");
    if (lora_unmerged(m))
        return sx_errorf("export-hf: the model holds LoRA adapters: merge them into the weights (export-hf --merge) or write "
                         "them in peft's format (export-hf --adapter-only)");
    if (m->cfg.gated)
        return sx_errorf("export-hf: the model has gated FFNs (switchc.gated_ffn: wi_0, wi_1), which transformers' "
                         "SwitchTransformers cannot hold (its FFNs are wi/wo only)");
    SX_TRY(hf_make_dirs(dir));
    /* Untied, transformers 4.57.6 does not take encoder/decoder.embed_tokens from shared.weight: without them in the
     * file it reports both missing and re-initialises them (its own save_pretrained drops them and fails the same
     * way). Tied, shared.weight alone loads cleanly, as save_pretrained writes it. */
    int n_alias = m->cfg.tie_word_embeddings ? 0 : 2;
    int total = n_alias;
    for (int i = 0; i < m->n_params; i++)
        if (!lora_is_adapter(&m->params[i])) total += m->params[i].n_experts ? m->params[i].n_experts : 1;
    hf_out_tensor *t = calloc((size_t)total, sizeof *t);
    char (*names)[160] = calloc((size_t)total, sizeof *names);
    SX_ASSERT(t && names, "out of memory");
    int k = 0;
    for (int i = 0; i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        if (lora_is_adapter(p)) continue; /* merged into their base weights */
        int ne = p->n_experts ? p->n_experts : 1;
        int64_t per = p->numel / ne;
        for (int e = 0; e < ne; e++, k++) {
            model_param_hf_name(m, i, e, names[k], sizeof names[k]);
            t[k].name = names[k];
            t[k].ndim = p->n_experts ? p->ndim - 1 : p->ndim;
            memcpy(t[k].shape, p->n_experts ? p->shape + 1 : p->shape, sizeof(int64_t) * (size_t)t[k].ndim);
            t[k].data = m->w + p->offset + e * per;
        }
    }
    for (int a = 0; a < n_alias; a++, k++) {
        const param_desc *p = &m->params[m->shared];
        t[k] = (hf_out_tensor){TIED[1 + a], p->ndim, {0}, m->w + p->offset}; /* encoder., decoder.embed_tokens */
        memcpy(t[k].shape, p->shape, sizeof(int64_t) * (size_t)p->ndim);
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    sx_status s = hf_safetensors_write(path, t, total);
    free(t);
    free(names);
    if (!s.ok) return s;
    cJSON *j = model_config_to_json(&m->cfg);
    cJSON_DeleteItemFromObject(j, "switchc"); /* HF would keep it as an unknown attribute: harmless, but not HF's */
    cJSON_AddStringToObject(j, "torch_dtype", "float32");
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    bool ok = f && fputs(text, f) >= 0;
    if (f && fclose(f) != 0) ok = false;
    free(text);
    return ok ? sx_ok() : sx_errorf("%s: cannot write: %s", path, strerror(errno));
}
