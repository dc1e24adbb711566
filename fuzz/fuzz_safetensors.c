/* libFuzzer target: the safetensors header parser on arbitrary bytes (the file size is the input size). */
#include <stddef.h>
#include <stdint.h>

#include "train/hf/hf_weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hf_weights *w = hf_weights_new_empty();
    hf_safetensors_parse(data, size, size, "fuzz", w, 0);
    hf_weights_close(w);
    return 0;
}
