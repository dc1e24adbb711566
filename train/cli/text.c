/* Text in and out of a model for the inference commands (eval, generate, embed): which tokenizer goes with a model,
 * ids back to text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "data/prepare.h"
#include "train/cli/cli.h"
#include "train/hf/hf_model.h"
#include "train/model/model_int8.h"
#include "train/trainer.h"

sx_status cli_open_tokenizer(const char *spm_flag, const char *model_path, const run_config *cfg, int extra_ids,
                             bool required, data_spm **out) {
    *out = NULL;
    const char *path = spm_flag                       ? spm_flag
                       : hf_is_model_dir(model_path) ? model_path
                       : cfg->tokenizer[0]           ? cfg->tokenizer
                                                     : NULL;
    if (!path) {
        if (!required) return sx_ok();
        return sx_errorf("%s: no tokenizer known for this model (its run config has no data.tokenizer): "
                         "give --spm PATH.model", model_path);
    }
    data_spm *t;
    SX_TRY(data_tokenizer_open(path, 0, &t));
    uint32_t crc = data_spm_checksum(t);
    for (int k = 0; k < 2 && !strcmp(cfg->task, "dataset"); k++) {
        const char *ds_path = k ? cfg->eval_data : cfg->train_data;
        data_dataset *d;
        if (!ds_path[0] || !data_dataset_open(ds_path, &d).ok) continue; /* the data may live elsewhere by now */
        uint32_t dcrc = data_dataset_tokenizer_crc(d);
        int32_t dv = data_dataset_vocab_size(d);
        data_dataset_close(d);
        if (dcrc == crc) {
            if (extra_ids < 0 && dv >= data_spm_piece_count(t)) extra_ids = dv - data_spm_piece_count(t);
            break;
        }
        if (dcrc) {
            fprintf(stderr, "switchc: warning: %s (checksum %08x) is not the tokenizer %s was prepared with "
                    "(checksum %08x): text may come out wrong\n", path, crc, ds_path, dcrc);
            break;
        }
    }
    data_spm_set_extra_ids(t, extra_ids < 0 ? 100 : extra_ids);
    if (data_spm_vocab_size(t) > cfg->model.vocab_size) {
        sx_status s = sx_errorf("%s: %d ids (%d pieces + %d extra ids) but the model's vocab_size is %d (fewer "
                                "--extra-ids, or another tokenizer)", path, data_spm_vocab_size(t),
                                data_spm_piece_count(t), data_spm_vocab_size(t) - data_spm_piece_count(t),
                                cfg->model.vocab_size);
        data_spm_free(t);
        return s;
    }
    *out = t;
    return sx_ok();
}

char *cli_decode_text(const data_spm *t, const int32_t *ids, int64_t n, int32_t eos, int32_t pad) {
    int32_t *keep = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    int64_t k = 0;
    for (int64_t i = 0; i < n && ids[i] != eos; i++)
        if (ids[i] >= 0 && ids[i] != pad && ids[i] < data_spm_vocab_size(t)) keep[k++] = ids[i];
    char small[2];
    size_t need = data_spm_decode(t, keep, k, small, sizeof small);
    char *out = malloc(need + 1);
    data_spm_decode(t, keep, k, out, need + 1);
    free(keep);
    return out;
}

bool cli_tokenizer_known(const char *spm_flag, const char *model_path, const run_config *cfg) {
    if (spm_flag) return true;
    if (hf_is_model_dir(model_path)) {
        char p[1100];
        struct stat st;
        snprintf(p, sizeof p, "%s/spiece.model", model_path);
        return stat(p, &st) == 0;
    }
    return cfg->tokenizer[0] != 0;
}

int cli_fail(sx_status s) {
    fprintf(stderr, "switchc: error: %s\n", s.msg);
    return 1;
}

int cli_int8_arg(void *opts, const char *cmd, int argc, char **argv, int i) {
    cli_int8_opts *o = opts;
    if (!strcmp(argv[i], "--int8")) {
        o->int8 = true;
        return 1;
    }
    if (strcmp(argv[i], "--int8-threshold")) return 0;
    char *end = NULL;
    double t = i + 1 < argc ? strtod(argv[i + 1], &end) : 0;
    if (i + 1 >= argc || end == argv[i + 1] || *end || !isfinite(t) || t < 0) {
        fprintf(stderr, "switchc %s: --int8-threshold '%s' must be a non-negative number (see switchc %s --help)\n",
                cmd, i + 1 < argc ? argv[i + 1] : "", cmd);
        return -1;
    }
    o->threshold = t;
    return 2;
}

sx_status cli_load_model(const char *path, const run_config *cfg, const cli_int8_opts *o, model *m) {
    SX_TRY(model_init_inference(m, &cfg->model));
    sx_status s = trainer_load_params(m, path);
    if (s.ok && o && o->int8) {
        size_t f32 = model_weight_bytes(m);
        s = model_quantize_int8(m, o->threshold);
        if (s.ok)
            fprintf(stderr, "switchc: int8 weights (outlier threshold %g): %.1f MB, %.3fx the %.1f MB of fp32\n",
                    o->threshold, (double)model_weight_bytes(m) / 1e6, (double)model_weight_bytes(m) / (double)f32,
                    (double)f32 / 1e6);
    }
    if (!s.ok) model_free(m);
    return s;
}
