/* libFuzzer target: the configuration readers on arbitrary bytes: a run config (every section, the model object
 * with its "switchc" knobs, as `--config FILE` reads it) and an HF config.json (as an --init-from folder's), each
 * followed by the cross-field checks and the JSON the trainer writes back. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "train/model/model_config.h"
#include "train/run_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *j = cJSON_ParseWithLength((const char *)data, size);
    if (!j) return 0;
    run_config r;
    run_config_defaults(&r);
    sx_status s = run_config_apply_json(&r, j, "fuzz");
    if (s.ok) s = run_config_validate(&r);
    if (s.ok) {
        cJSON *back = run_config_to_json(&r);
        char *text = cJSON_PrintUnformatted(back);
        free(text);
        cJSON_Delete(back);
    }
    model_config m;
    model_config_defaults(&m);
    s = model_config_from_json(j, "fuzz: config.json", &m);
    if (s.ok) {
        cJSON *back = model_config_to_json(&m);
        cJSON_Delete(back);
    }
    cJSON_Delete(j);
    return 0;
}
