/* Subcommands around Hugging Face folders: convert (HF folder -> switchc checkpoint) and export-hf (checkpoint -> HF
 * folder). Each has --help; errors are one line and a non-zero exit. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "data/prepare.h"
#include "train/cfg_util.h"
#include "train/cli/cli.h"
#include "train/hf_model.h"
#include "train/hf_weights.h"
#include "train/trainer.h"

static int err(const char *cmd, sx_status s) {
    fprintf(stderr, "switchc %s: error: %s\n", cmd, s.msg);
    return 1;
}

static int cmd_convert(int argc, char **argv) {
    const char *from = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: switchc convert --from-hf DIR --output CKPT.h5\n\n"
                   "Reads a Hugging Face model folder as downloaded (config.json and model.safetensors, sharded safetensors\n"
                   "with model.safetensors.index.json, or pytorch_model.bin, bf16 or fp32: google/switch-base-8 ships a bf16\n"
                   ".bin) and writes a switchc checkpoint (parameters under their HF names) for train --init-from, eval and\n"
                   "generate. The .bin is read by a restricted unpickler: no code in the file ever runs.\n");
            return 0;
        } else if (!strcmp(argv[i], "--from-hf") && i + 1 < argc) {
            from = argv[++i];
        } else if (!strcmp(argv[i], "--output") && i + 1 < argc) {
            out = argv[++i];
        } else {
            fprintf(stderr, "switchc convert: unknown argument '%s' (see switchc convert --help)\n", argv[i]);
            return 2;
        }
    }
    if (!from || !out) {
        fprintf(stderr, "switchc convert: --from-hf DIR and --output CKPT.h5 are required (see --help)\n");
        return 2;
    }
    run_config cfg;
    run_config_defaults(&cfg);
    sx_status s = hf_read_config(from, &cfg.model);
    if (!s.ok) return err("convert", s);
    snprintf(cfg.model_source, sizeof cfg.model_source, "%s", from);
    model m;
    s = model_init_inference(&m, &cfg.model);
    if (s.ok) s = hf_load_weights(&m, from);
    if (s.ok) s = trainer_write_model(&m, &cfg, out);
    if (!s.ok) return err("convert", s);
    printf("switchc convert: %s -> %s (%lld parameters)\n", from, out, (long long)model_param_count(&m));
    model_free(&m);
    return 0;
}

static int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: switchc export-hf --checkpoint CKPT.h5 --output DIR\n\n"
                   "Writes DIR/config.json and DIR/model.safetensors (float32, HF names) so that transformers'\n"
                   "SwitchTransformersForConditionalGeneration.from_pretrained(DIR) loads the model and gives the same logits.\n"
                   "Copy the tokenizer files (spiece.model, tokenizer_config.json) into DIR yourself if you have them.\n");
            return 0;
        } else if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc) {
            ckpt = argv[++i];
        } else if (!strcmp(argv[i], "--output") && i + 1 < argc) {
            out = argv[++i];
        } else {
            fprintf(stderr, "switchc export-hf: unknown argument '%s' (see switchc export-hf --help)\n", argv[i]);
            return 2;
        }
    }
    if (!ckpt || !out) {
        fprintf(stderr, "switchc export-hf: --checkpoint and --output are required (see --help)\n");
        return 2;
    }
    run_config cfg;
    sx_status s = trainer_config_from_checkpoint(ckpt, &cfg);
    if (!s.ok) return err("export-hf", s);
    model m;
    s = model_init_inference(&m, &cfg.model);
    if (s.ok) s = trainer_load_params(&m, ckpt);
    if (s.ok) s = hf_export(&m, out);
    if (!s.ok) return err("export-hf", s);
    printf("switchc export-hf: %s -> %s/config.json, %s/model.safetensors\n", ckpt, out, out);
    model_free(&m);
    return 0;
}

/* Logits of one batch, for cross-checks with other implementations (scripts/check_hf_roundtrip.py). */
static sx_status read_ids(const cJSON *j, const char *key, int32_t *out, int64_t *rows, int64_t *cols, int64_t cap, bool required) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!a) return required ? sx_errorf("batch JSON: missing \"%s\"", key) : sx_ok();
    if (!cJSON_IsArray(a) || !cJSON_GetArraySize(a)) return sx_errorf("batch JSON: \"%s\" must be a non-empty list of lists of ints", key);
    int64_t r = cJSON_GetArraySize(a), c = -1, k = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, a) {
        if (!cJSON_IsArray(row) || (c >= 0 && cJSON_GetArraySize(row) != c)) return sx_errorf("batch JSON: \"%s\" rows must be lists of one length", key);
        c = cJSON_GetArraySize(row);
        const cJSON *v;
        cJSON_ArrayForEach(v, row) {
            if (!cJSON_IsNumber(v) || k >= cap) return sx_errorf("batch JSON: \"%s\" holds a non-integer or too many values", key);
            out[k++] = (int32_t)v->valuedouble;
        }
    }
    *rows = r;
    *cols = c;
    return sx_ok();
}

static int cmd_logits(int argc, char **argv) {
    const char *mpath = NULL, *in = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: switchc logits --model CKPT|DIR --input BATCH.json --output LOGITS.f32\n\n"
                   "Runs one eval-mode forward on {\"input_ids\": [[..]], \"attention_mask\": [[..]], \"labels\": [[..]]} and writes the\n"
                   "logits [B, T, V] as raw little-endian float32, printing the shape and the loss: a cross-check with other\n"
                   "implementations.\n");
            return 0;
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            mpath = argv[++i];
        } else if (!strcmp(argv[i], "--input") && i + 1 < argc) {
            in = argv[++i];
        } else if (!strcmp(argv[i], "--output") && i + 1 < argc) {
            out = argv[++i];
        } else {
            fprintf(stderr, "switchc logits: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!mpath || !in || !out) {
        fprintf(stderr, "switchc logits: --model, --input and --output are required\n");
        return 2;
    }
    run_config cfg;
    sx_status s = trainer_config_from_checkpoint(mpath, &cfg);
    if (!s.ok) return err("logits", s);
    cJSON *j;
    s = cfg_parse_file(in, &j);
    if (!s.ok) return err("logits", s);
    enum { CAP = 1 << 20 };
    static int32_t ids[CAP], mask[CAP], labels[CAP];
    int64_t B, S, B2 = 0, S2 = 0, B3, T;
    s = read_ids(j, "input_ids", ids, &B, &S, CAP, true);
    if (s.ok) s = read_ids(j, "attention_mask", mask, &B2, &S2, CAP, false);
    if (s.ok) s = read_ids(j, "labels", labels, &B3, &T, CAP, true);
    cJSON_Delete(j);
    if (s.ok && (B3 != B || (B2 && (B2 != B || S2 != S)))) s = sx_errorf("%s: input_ids, attention_mask and labels disagree on the batch shape", in);
    if (!s.ok) return err("logits", s);
    model m;
    s = model_init_inference(&m, &cfg.model);
    if (s.ok) s = trainer_load_params(&m, mpath);
    if (!s.ok) return err("logits", s);
    ag_arena act;
    ag_arena_init(&act, "act", 1 << 20);
    ag_ctx ctx;
    ag_ctx_init(&ctx, &act);
    ctx.grad_enabled = false;
    model_batch b = {B, S, T, ids, B2 ? mask : NULL, labels, NULL, 0, 0};
    model_output o;
    model_forward(&m, &ctx, &b, (model_rng){0, 0, 0}, &o);
    FILE *f = fopen(out, "wb");
    if (!f || fwrite(o.logits->data, sizeof(float), (size_t)o.logits->numel, f) != (size_t)o.logits->numel || fclose(f) != 0)
        return err("logits", sx_errorf("%s: cannot write the logits", out));
    printf("{\"shape\": [%lld, %lld, %lld], \"loss\": %.9g}\n", (long long)B, (long long)T, (long long)m.cfg.vocab_size, ((float *)o.loss->data)[0]);
    ag_ctx_free(&ctx);
    ag_arena_free(&act);
    model_free(&m);
    return 0;
}

static const cli_command EXTRA[] = {
    {"convert", "a Hugging Face folder (safetensors or pytorch .bin) -> a switchc checkpoint", cmd_convert},
    {"export-hf", "a switchc checkpoint -> config.json + model.safetensors for transformers", cmd_export},
    {"logits", "the logits of one batch (cross-checks with other implementations)", cmd_logits},
    {"prepare", "examples (JSONL/TSV of token ids) -> an HDF5 token dataset", data_prepare_main},
    {NULL, NULL, NULL},
};

int cli_extra_count(void) { return (int)(sizeof EXTRA / sizeof EXTRA[0]) - 1; }
const cli_command *cli_extra(int i) { return &EXTRA[i]; }
