/* The fine-tuning fixtures' replay in tests (test_finetune.c, test_lora.c): the 64 examples of a trajectories.h5 as a
 * token dataset, and the run config a user writes for a case (an HF folder's config.json, the case's --set
 * assignments, a dataset task without evaluations or intermediate checkpoints). Header-only; failures are Criterion
 * assertions. */
#ifndef SX_TEST_FINETUNE_FIXTURE_H
#define SX_TEST_FINETUNE_FIXTURE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "data/dataset.h"
#include "tests/h5fixture.h"
#include "train/hf/hf_model.h"
#include "train/run_config.h"

/* The fixture's examples (data/inputs, data/targets with their offsets) as a token dataset at path. */
static inline void ft_write_dataset(hid_t f, const char *path) {
    int64_t nin, ntg, noi, not;
    int32_t *in = h5f_read(f, "data/inputs", H5T_NATIVE_INT32, 4, NULL, NULL, &nin);
    int32_t *tg = h5f_read(f, "data/targets", H5T_NATIVE_INT32, 4, NULL, NULL, &ntg);
    int64_t *oi = h5f_read(f, "data/input_offsets", H5T_NATIVE_INT64, 8, NULL, NULL, &noi);
    int64_t *ot = h5f_read(f, "data/target_offsets", H5T_NATIVE_INT64, 8, NULL, NULL, &not);
    cr_assert_eq(noi, not);
    data_writer *w;
    sx_status s = data_writer_open(path, 32, 0, true, &w);
    cr_assert(s.ok, "%s", s.msg);
    for (int64_t i = 0; i + 1 < noi; i++) {
        s = data_writer_append(w, in + oi[i], oi[i + 1] - oi[i], tg + ot[i], ot[i + 1] - ot[i]);
        cr_assert(s.ok, "%s", s.msg);
    }
    s = data_writer_close(w);
    cr_assert(s.ok, "%s", s.msg);
    free(in);
    free(tg);
    free(oi);
    free(ot);
}

/* Applies a JSON list of --set assignments (the attribute "set" of a case group g). */
static inline void ft_apply_sets(hid_t g, run_config *cfg) {
    char *sets = h5f_attr_string(g, "set");
    cJSON *j = cJSON_Parse(sets);
    cr_assert(cJSON_IsArray(j));
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        sx_status s = run_config_set(cfg, it->valuestring);
        cr_assert(s.ok, "--set %s: %s", it->valuestring, s.msg);
    }
    cJSON_Delete(j);
    free(sets);
}

/* The run config of case g: the HF folder model_dir, the case's assignments, the dataset data, run directory dir
 * (emptied). */
static inline void ft_case_config(hid_t g, const char *model_dir, const char *data, const char *dir, run_config *cfg) {
    run_config_defaults(cfg);
    sx_status s = hf_read_config(model_dir, &cfg->model);
    cr_assert(s.ok, "%s", s.msg);
    snprintf(cfg->model_source, sizeof cfg->model_source, "%s", model_dir);
    ft_apply_sets(g, cfg);
    char a[800];
    const char *extra[] = {"data.task=dataset", "train.eval_every=0", "train.ckpt_every=0", "train.log_every=100", "eval.batch_size=64"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) cr_assert(run_config_set(cfg, extra[i]).ok);
    snprintf(cfg->train_data, sizeof cfg->train_data, "%s", data);
    snprintf(cfg->eval_data, sizeof cfg->eval_data, "%s", data);
    snprintf(a, sizeof a, "rm -rf '%s'", dir);
    cr_assert(system(a) == 0);
    snprintf(cfg->out_dir, sizeof cfg->out_dir, "%s", dir);
}

#endif
