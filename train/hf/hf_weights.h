/* Hugging Face weight files, read and written in C: model.safetensors (validated as the reference library does),
 * sharded safetensors with model.safetensors.index.json, and pytorch_model.bin (a stored ZIP holding a pickle that
 * is interpreted by a restricted virtual machine: only what torch's weights-only loader allows, no code ever runs),
 * sharded or not. Tensors are read one at a time, converted to float32 (bf16 and f16 widen exactly). */
#ifndef SX_TRAIN_HF_WEIGHTS_H
#define SX_TRAIN_HF_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/sx_error.h"

typedef enum { HF_DT_F32, HF_DT_F16, HF_DT_BF16, HF_DT_F64, HF_DT_I64, HF_DT_I32, HF_DT_I16, HF_DT_I8, HF_DT_U8, HF_DT_BOOL, HF_DT_OTHER } hf_dtype;

#define HF_MAX_DIMS 8
typedef struct {
    char *name;
    hf_dtype dtype;
    int ndim;
    int64_t shape[HF_MAX_DIMS];
    int file;            /* index into the opened files */
    int64_t offset;      /* absolute byte offset of the data in that file */
    int64_t nbytes;
} hf_tensor_info;

typedef struct hf_weights hf_weights;

/* path: a directory (model.safetensors, model.safetensors.index.json, pytorch_model.bin,
 * pytorch_model.bin.index.json, in that order) or one .safetensors / .bin file. */
sx_status hf_weights_open(const char *path, hf_weights **out);
int hf_weights_count(const hf_weights *w);
const hf_tensor_info *hf_weights_info(const hf_weights *w, int i);
const hf_tensor_info *hf_weights_find(const hf_weights *w, const char *name);
const char *hf_weights_format(const hf_weights *w); /* "safetensors", "pytorch .bin", with "(sharded)" */
/* numel must equal the tensor's element count. Errors name the file and the tensor. */
sx_status hf_weights_read_f32(const hf_weights *w, const char *name, float *dst, int64_t numel);
void hf_weights_close(hf_weights *w);
const char *hf_dtype_name(hf_dtype d);

/* Single-file parsers, exposed for the tests and fuzz targets (they never read beyond len). */
sx_status hf_safetensors_parse(const uint8_t *header_and_size, size_t len, uint64_t file_size, const char *label, hf_weights *w, int file);
sx_status hf_torchbin_parse_bytes(const uint8_t *bytes, size_t len, const char *label, hf_weights *w, int file);
hf_weights *hf_weights_new_empty(void);

/* Export: one safetensors file, tensors sorted by name, header padded to 8 bytes, metadata {"format": "pt"}. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[HF_MAX_DIMS];
    const float *data;
} hf_out_tensor;
sx_status hf_safetensors_write(const char *path, const hf_out_tensor *t, int n);

#endif
