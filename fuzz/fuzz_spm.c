/* libFuzzer target: the SentencePiece model reader on arbitrary bytes; a model that loads must then encode and
 * decode a fixed multilingual string and a slice of the input itself (as text) without harm. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "data/spm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    data_spm *m;
    sx_status s = data_spm_load_bytes(data, size, "fuzz", &m);
    if (!s.ok) return 0;
    static const char text[] = "Hello wörld ＡＢＣ ﬁ ①  \t x²  <sep> <extra_id_3> \xff\xc0\xaf Ꭰ 😀 東京 ";
    int32_t ids[512];
    char out[4096];
    int64_t n = data_spm_encode(m, text, sizeof text - 1, ids, 512);
    data_spm_decode(m, ids, n < 512 ? n : 512, out, sizeof out);
    size_t k = size < 256 ? size : 256;
    n = data_spm_encode(m, (const char *)data + (size - k), k, ids, 512);
    data_spm_decode(m, ids, n < 512 ? n : 512, out, sizeof out);
    /* every id, one at a time, including the sentinels */
    data_spm_set_extra_ids(m, 5);
    n = data_spm_encode(m, text, sizeof text - 1, ids, 512);
    data_spm_decode(m, ids, n < 512 ? n : 512, out, sizeof out);
    int32_t v = data_spm_vocab_size(m);
    for (int32_t id = 0; id < v && id < 4096; id++) {
        data_spm_decode(m, &id, 1, out, sizeof out);
        (void)data_spm_piece_to_id(m, data_spm_id_to_piece(m, id));
    }
    data_spm_free(m);
    return 0;
}
