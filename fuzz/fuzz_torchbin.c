/* libFuzzer target: the pytorch_model.bin reader (ZIP directory + restricted pickle machine) on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "train/hf/hf_weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hf_weights *w = hf_weights_new_empty();
    hf_torchbin_parse_bytes(data, size, "fuzz", w, 0);
    hf_weights_close(w);
    return 0;
}
