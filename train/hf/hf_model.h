/* A Hugging Face model folder <-> the model: load config.json and the weights in any form hf_weights reads (tied names
 * mapped to the one embedding, bf16 widened exactly, every missing, unexpected or mis-shaped tensor named), and
 * export config.json + model.safetensors that transformers' from_pretrained loads. */
#ifndef SX_TRAIN_HF_MODEL_H
#define SX_TRAIN_HF_MODEL_H

#include <stdbool.h>

#include "train/model/model.h"

/* True when path is a directory holding a config.json (an HF model folder). */
bool hf_is_model_dir(const char *path);
/* Reads dir/config.json. */
sx_status hf_read_config(const char *dir, model_config *cfg);
/* Fills an initialised model (any expert-parallel slice) from the folder's weights. */
sx_status hf_load_weights(model *m, const char *dir);
/* mkdir -p: the folder and any missing parents, as save_pretrained makes them. */
sx_status hf_make_dirs(const char *dir);
/* Writes dir/config.json and dir/model.safetensors (a whole model: expert parallelism 1). */
sx_status hf_export(const model *m, const char *dir);

#endif
