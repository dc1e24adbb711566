/* Shared by the HF weight parsers: the tensor table and helpers to fill it. */
#ifndef SX_TRAIN_HF_WEIGHTS_INTERNAL_H
#define SX_TRAIN_HF_WEIGHTS_INTERNAL_H

#include "train/hf/hf_weights.h"

#define HF_MAX_HEADER 100000000ull /* safetensors' MAX_HEADER_SIZE (FORMATS 1.2) */

struct hf_weights {
    int n, cap;
    hf_tensor_info *t;
    int nfiles;
    char **files;
    char format[64];
};

int hf_add_file(hf_weights *w, const char *path);
hf_tensor_info *hf_add_tensor(hf_weights *w, const char *name);
int hf_dtype_size(hf_dtype d);

#endif
