/* Subcommands around Hugging Face folders: convert (HF folder -> switchc checkpoint) and export-hf (checkpoint -> HF
 * folder). Each has --help; errors are one line and a non-zero exit. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "autograd/sx_file.h"
#include "data/prepare.h"
#include "train/cfg_util.h"
#include "train/cli/cli.h"
#include "train/hf/hf_model.h"
#include "train/hf/hf_weights.h"
#include "train/lora.h"
#include "train/run_checks.h"
#include "train/trainer.h"

static int err(const char *cmd, sx_status s) {
    fprintf(stderr, "switchc %s: error: %s\n", cmd, s.msg);
    return 1;
}

static void convert_help(void) {
    printf("usage: switchc convert --from-hf DIR --output CKPT.h5\n\n"
           "Reads a Hugging Face model folder as downloaded (config.json and model.safetensors, sharded safetensors\n"
           "with model.safetensors.index.json, or pytorch_model.bin, bf16 or fp32: google/switch-base-8 ships a bf16\n"
           ".bin) and writes a switchc checkpoint (parameters under their HF names) for train --init-from, eval and\n"
           "generate. The .bin is read by a restricted unpickler: no code in the file ever runs.\n");
}

static int cmd_convert(int argc, char **argv) {
    const char *from = NULL, *out = NULL;
    const cli_flag FLAGS[] = {
        {"--from-hf", NULL, CLI_STR, &from, 0, 0, NULL},
        {"--output", NULL, CLI_STR, &out, 0, 0, NULL},
        {NULL, NULL, CLI_SET, NULL, 0, 0, NULL},
    };
    int rc = cli_parse_args("convert", argc, argv, convert_help, NULL, NULL, FLAGS);
    if (rc >= 0) return rc;
    if (!from || !out) {
        fprintf(stderr, "switchc convert: --from-hf DIR and --output CKPT.h5 are required (see --help)\n");
        return 2;
    }
    /* the paths before a large model is read */
    sx_status ps = sx_file_check_output(out, "--output", false);
    if (ps.ok && !hf_is_model_dir(from))
        ps = sx_errorf("--from-hf %s: not a Hugging Face model folder (%s, without config.json)", from,
                       sx_file_kind(from));
    if (!ps.ok) return err("convert", ps);
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

/* Copies src to dst through dst.tmp + rename, so an interrupted export never leaves a half-written file. */
static sx_status copy_file(const char *src, const char *dst) {
    FILE *in;
    SX_TRY(sx_file_fopen_read(src, "tokenizer file", &in, NULL)); /* a FIFO is refused, not waited on */
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dst, (long)getpid());
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        fclose(in);
        return sx_errorf("%s: cannot create: %s", tmp, strerror(errno));
    }
    char buf[1 << 16];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    ok = ok && !ferror(in);
    fclose(in);
    if (fclose(out) != 0) ok = false;
    if (!ok || rename(tmp, dst) != 0) {
        int e = errno;
        unlink(tmp);
        return sx_errorf("%s: cannot write: %s", dst, strerror(e));
    }
    return sx_ok();
}

/* The tokenizer files that go with the export: a .model file is copied as spiece.model; a folder (an HF model folder)
 * gives its spiece.model and, when present, the files transformers' T5 tokenizers read beside it. The caller has
 * parsed the .model already, so a broken tokenizer is reported before anything is written. */
static sx_status export_tokenizer(const char *tok, const char *dir, int *copied) {
    static const char *const EXTRA[] = {"tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"};
    struct stat st;
    bool is_dir = stat(tok, &st) == 0 && S_ISDIR(st.st_mode);
    char src[1100], dst[1100];
    snprintf(src, sizeof src, is_dir ? "%s/spiece.model" : "%s", tok);
    snprintf(dst, sizeof dst, "%s/spiece.model", dir);
    SX_TRY(copy_file(src, dst));
    *copied = 1;
    for (int k = 0; is_dir && k < 3; k++) {
        snprintf(src, sizeof src, "%s/%s", tok, EXTRA[k]);
        if (stat(src, &st) != 0) continue;
        snprintf(dst, sizeof dst, "%s/%s", dir, EXTRA[k]);
        SX_TRY(copy_file(src, dst));
        (*copied)++;
    }
    return sx_ok();
}

/* export-hf --adapter-only: the LoRA adapters alone, in peft's format, for the base the run started from. */
static int export_adapter(const char *ckpt, const char *out, const run_config *cfg) {
    model m;
    sx_status s = model_init_inference(&m, &cfg->model);
    if (!s.ok) return err("export-hf", s);
    s = trainer_load_params(&m, ckpt);
    /* the base's folder when the run config names one (a checkpoint's stored config names only itself) */
    if (s.ok) s = lora_peft_export(&m, out, hf_is_model_dir(cfg->model_source) ? cfg->model_source : NULL);
    model_free(&m);
    if (!s.ok) return err("export-hf", s);
    printf("switchc export-hf: %s -> %s/adapter_config.json, %s/adapter_model.safetensors (peft LoRA, r %d)\n", ckpt, out, out,
           cfg->model.lora.r);
    return 0;
}

static void export_help(void) {
    printf("usage: switchc export-hf --checkpoint CKPT.h5 --output DIR [--tokenizer PATH.model|HF_DIR | --no-tokenizer]\n"
           "                         [--merge | --adapter-only]\n\n"
           "Writes DIR/config.json and DIR/model.safetensors (float32, HF names) so that transformers'\n"
           "SwitchTransformersForConditionalGeneration.from_pretrained(DIR) loads the model with no missing or\n"
           "unexpected key and gives the same logits (an untied model also gets encoder.embed_tokens.weight and\n"
           "decoder.embed_tokens.weight, copies of shared.weight, which transformers needs). DIR and its missing\n"
           "parents are created.\n\n"
           "The tokenizer goes with it: --tokenizer names a SentencePiece .model (copied as spiece.model) or an HF\n"
           "folder (its spiece.model, plus tokenizer_config.json, special_tokens_map.json and tokenizer.json when\n"
           "present); without the flag, the checkpoint's run config key data.tokenizer is used when it is set.\n"
           "Then AutoTokenizer.from_pretrained(DIR) works as well.\n\n"
           "A checkpoint of a LoRA run (lora.r > 0) needs one of:\n"
           "  --merge          fold the adapters into the weights (W + alpha/r B A, peft's merge_and_unload): a plain\n"
           "                   HF folder as above\n"
           "  --adapter-only   DIR/adapter_config.json + DIR/adapter_model.safetensors in peft's format, which\n"
           "                   peft.PeftModel.from_pretrained(base, DIR) loads over the base model\n");
}

static int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *tok = NULL;
    bool no_tok = false, adapter_only = false, merge = false;
    const cli_flag FLAGS[] = {
        {"--checkpoint", NULL, CLI_STR, &ckpt, 0, 0, NULL},
        {"--output", NULL, CLI_STR, &out, 0, 0, NULL},
        {"--tokenizer", NULL, CLI_STR, &tok, 0, 0, NULL},
        {"--no-tokenizer", NULL, CLI_SET, &no_tok, 0, 0, NULL},
        {"--merge", NULL, CLI_SET, &merge, 0, 0, NULL},
        {"--adapter-only", NULL, CLI_SET, &adapter_only, 0, 0, NULL},
        {NULL, NULL, CLI_SET, NULL, 0, 0, NULL},
    };
    int rc = cli_parse_args("export-hf", argc, argv, export_help, NULL, NULL, FLAGS);
    if (rc >= 0) return rc;
    if (!ckpt || !out) {
        fprintf(stderr, "switchc export-hf: --checkpoint and --output are required (see --help)\n");
        return 2;
    }
    if (merge && adapter_only) {
        fprintf(stderr, "switchc export-hf: --merge and --adapter-only exclude each other (see --help)\n");
        return 2;
    }
    sx_status ps = sx_file_check_output(out, "--output", true);
    if (!ps.ok) return err("export-hf", ps);
    run_config cfg;
    sx_status s = trainer_config_from_checkpoint(ckpt, &cfg);
    if (!s.ok) return err("export-hf", s);
    if ((merge || adapter_only) && cfg.model.lora.r == 0)
        return err("export-hf", sx_errorf("%s: %s: the checkpoint's run has no LoRA adapters (lora.r 0)", ckpt, merge ? "--merge" : "--adapter-only"));
    if (adapter_only) return export_adapter(ckpt, out, &cfg);
    if (!tok && !no_tok && cfg.tokenizer[0]) tok = cfg.tokenizer;
    if (no_tok) tok = NULL;
    if (tok) { /* a broken tokenizer stops the export before anything is written */
        data_spm *spm;
        s = data_tokenizer_open(tok, 0, &spm);
        if (!s.ok) return err("export-hf", s);
        data_spm_free(spm);
    }
    model m;
    s = model_init_inference(&m, &cfg.model);
    if (s.ok) s = trainer_load_params(&m, ckpt);
    if (s.ok && merge) lora_merge(&m);
    if (s.ok) s = hf_export(&m, out);
    int copied = 0;
    if (s.ok && tok) s = export_tokenizer(tok, out, &copied);
    if (!s.ok) return err("export-hf", s);
    printf("switchc export-hf: %s -> %s/config.json, %s/model.safetensors", ckpt, out, out);
    if (copied)
        printf(", tokenizer from %s (%d file%s)\n", tok, copied, copied > 1 ? "s" : "");
    else
        printf("\n  (no tokenizer copied: give --tokenizer PATH.model or an HF folder to make DIR a complete HF folder)\n");
    model_free(&m);
    return 0;
}

/* Logits of one batch, for cross-checks with other implementations (scripts/check_hf_roundtrip.py). */

/* One [rows, cols] list of lists of integers; every value in [lo, hi) or equal to also (-100 for ignored labels), so
 * nothing from the file reaches the model unchecked. Errors name the file, the key and the row and column. */
static sx_status read_ids(const cJSON *j, const char *path, const char *key, int32_t *out, int64_t *rows, int64_t *cols,
                          int64_t cap, bool required, int64_t lo, int64_t hi, int64_t also) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!a) return required ? sx_errorf("%s: missing \"%s\"", path, key) : sx_ok();
    if (!cJSON_IsArray(a) || !cJSON_GetArraySize(a))
        return sx_errorf("%s: \"%s\" must be a non-empty list of lists of ints", path, key);
    int64_t r = cJSON_GetArraySize(a), c = -1, k = 0, ri = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, a) {
        if (!cJSON_IsArray(row) || (c >= 0 && cJSON_GetArraySize(row) != c))
            return sx_errorf("%s: \"%s\" rows must be lists of one length (row %lld)", path, key, (long long)ri);
        c = cJSON_GetArraySize(row);
        if (c == 0) return sx_errorf("%s: \"%s\" row %lld is empty", path, key, (long long)ri);
        const cJSON *v;
        int64_t ci = 0;
        cJSON_ArrayForEach(v, row) {
            if (k >= cap) return sx_errorf("%s: \"%s\" holds more than %lld values", path, key, (long long)cap);
            double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
            if (!(d == floor(d)) || ((d < (double)lo || d >= (double)hi) && d != (double)also)) {
                char val[48] = "a non-number";
                if (cJSON_IsNumber(v)) snprintf(val, sizeof val, "%.17g", d);
                return sx_errorf("%s: \"%s\"[%lld][%lld] = %s is not an integer in [%lld, %lld)%s", path, key,
                                 (long long)ri, (long long)ci, val, (long long)lo, (long long)hi,
                                 also != lo - 1 ? " (or -100: ignored)" : "");
            }
            out[k++] = (int32_t)d;
            ci++;
        }
        ri++;
    }
    *rows = r;
    *cols = c;
    return sx_ok();
}

static void logits_help(void) {
    printf("usage: switchc logits --model CKPT|DIR --input BATCH.json --output LOGITS.f32\n\n"
           "Runs one eval-mode forward on {\"input_ids\": [[..]], \"attention_mask\": [[..]], \"labels\": [[..]]} and writes the\n"
           "logits [B, T, V] as raw little-endian float32, printing the shape and the loss: a cross-check with other\n"
           "implementations.\n\n" CLI_INT8_HELP);
}

static int cmd_logits(int argc, char **argv) {
    const char *mpath = NULL, *in = NULL, *out = NULL;
    cli_int8_opts q8 = CLI_INT8_DEFAULT;
    const cli_flag FLAGS[] = {
        {"--model", NULL, CLI_STR, &mpath, 0, 0, NULL},
        {"--input", NULL, CLI_STR, &in, 0, 0, NULL},
        {"--output", NULL, CLI_STR, &out, 0, 0, NULL},
        {NULL, NULL, CLI_SET, NULL, 0, 0, NULL},
    };
    int rc = cli_parse_args("logits", argc, argv, logits_help, cli_int8_arg, &q8, FLAGS);
    if (rc >= 0) return rc;
    if (!mpath || !in || !out) {
        fprintf(stderr, "switchc logits: --model, --input and --output are required\n");
        return 2;
    }
    sx_status ps = sx_file_check_output(out, "--output", false);
    if (ps.ok && sx_file_same(in, out)) ps = sx_errorf("--output %s is the --input file: it would be overwritten", out);
    if (!ps.ok) return err("logits", ps);
    run_config cfg;
    sx_status s = trainer_config_from_checkpoint(mpath, &cfg);
    if (!s.ok) return err("logits", s);
    cJSON *j;
    s = cfg_parse_file(in, &j);
    if (!s.ok) return err("logits", s);
    enum { CAP = 1 << 20 };
    static int32_t ids[CAP], mask[CAP], labels[CAP];
    int64_t B, S, B2 = 0, S2 = 0, B3, T, V = cfg.model.vocab_size;
    s = read_ids(j, in, "input_ids", ids, &B, &S, CAP, true, 0, V, -1);
    if (s.ok) s = read_ids(j, in, "attention_mask", mask, &B2, &S2, CAP, false, 0, 2, -1);
    if (s.ok) s = read_ids(j, in, "labels", labels, &B3, &T, CAP, true, 0, V, -100);
    cJSON_Delete(j);
    if (s.ok && (B3 != B || (B2 && (B2 != B || S2 != S)))) s = sx_errorf("%s: input_ids, attention_mask and labels disagree on the batch shape", in);
    /* the logits [B, T, V] and their softmax, beside the weights */
    double need = (double)B * (double)T * (double)V * 4 * 2, phys = run_checks_phys_bytes();
    if (s.ok && need > phys)
        s = sx_errorf("%s: the logits of %lld x %lld labels x vocab_size %lld need %.1f GB "
                      "but this machine has %.1f GB (a smaller batch)",
                      in, (long long)B, (long long)T, (long long)V, need / (1 << 30), phys / (1 << 30));
    if (!s.ok) return err("logits", s);
    model m;
    s = cli_load_model(mpath, &cfg, &q8, &m);
    if (!s.ok) return err("logits", s);
    ag_arena act;
    ag_ctx ctx;
    ag_ctx_init_eval(&ctx, &act, "act", 1 << 20);
    model_batch b = {B, S, T, ids, B2 ? mask : NULL, labels, NULL, 0, 0};
    model_output o;
    model_forward(&m, &ctx, &b, (model_rng){0, 0, 0}, &o);
    errno = 0;
    FILE *f = fopen(out, "wb");
    bool wrote = f && fwrite(o.logits->data, sizeof(float), (size_t)o.logits->numel, f) == (size_t)o.logits->numel;
    if (f && fclose(f) != 0) wrote = false;
    if (!wrote) {
        sx_status ws = sx_errorf("%s: cannot write the logits: %s", out, errno ? strerror(errno) : "write error");
        if (f) unlink(out);
        return err("logits", ws);
    }
    printf("{\"shape\": [%lld, %lld, %lld], \"loss\": %.9g}\n", (long long)B, (long long)T, (long long)m.cfg.vocab_size, ((float *)o.loss->data)[0]);
    ag_ctx_free_eval(&ctx);
    model_free(&m);
    return 0;
}

static const cli_command EXTRA[] = {
    {"convert", "a Hugging Face folder (safetensors or pytorch .bin) -> a switchc checkpoint", cmd_convert},
    {"export-hf", "a switchc checkpoint -> config.json + model.safetensors for transformers", cmd_export},
    {"logits", "the logits of one batch (cross-checks with other implementations)", cmd_logits},
    {"prepare", "text (JSONL/TSV/raw, with a SentencePiece model) or token ids -> an HDF5 token dataset", data_prepare_main},
    {NULL, NULL, NULL},
};

int cli_extra_count(void) { return (int)(sizeof EXTRA / sizeof EXTRA[0]) - 1; }
const cli_command *cli_extra(int i) { return &EXTRA[i]; }
