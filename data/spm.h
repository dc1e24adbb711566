/* SentencePiece: a reader of .model files (protobuf ModelProto) and a unigram encoder/decoder that reproduce the
 * sentencepiece library, plus T5's sentinels <extra_id_N> appended after the vocabulary (SPEC.md 2.3). */
#ifndef SX_DATA_SPM_H
#define SX_DATA_SPM_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/sx_error.h"

typedef struct data_spm data_spm;

/* Reads and validates a .model file. Any malformed input is an error naming the file and the field. */
sx_status data_spm_load(const char *path, data_spm **out);
sx_status data_spm_load_bytes(const void *bytes, size_t len, const char *label, data_spm **out);
void data_spm_free(data_spm *m);

/* T5 convention: n sentinels <extra_id_0..n-1> with <extra_id_0> = piece_count + n - 1 (32099 for T5's model),
 * recognised as single tokens by encode and produced by decode. 0 (the default) disables them. Call it before
 * sharing the model between threads. */
void data_spm_set_extra_ids(data_spm *m, int n);

int32_t data_spm_piece_count(const data_spm *m);   /* pieces in the .model */
int32_t data_spm_vocab_size(const data_spm *m);    /* pieces + extra ids */
/* pad, eos and bos: the CONTROL piece named by trainer_spec (<pad>, </s>, <s> by default), as sentencepiece's
 * pad_id() etc.; unk: the UNKNOWN piece. */
int32_t data_spm_pad_id(const data_spm *m);        /* -1 when the model has none */
int32_t data_spm_eos_id(const data_spm *m);
int32_t data_spm_unk_id(const data_spm *m);
int32_t data_spm_bos_id(const data_spm *m);
const char *data_spm_id_to_piece(const data_spm *m, int32_t id); /* NULL when out of range */
int32_t data_spm_piece_to_id(const data_spm *m, const char *piece); /* unk id when absent; knows the sentinels */
uint32_t data_spm_checksum(const data_spm *m);     /* CRC32 of the .model bytes: stored in datasets */

/* Encodes UTF-8 text (no EOS appended). Writes at most cap ids and returns how many the text needs, so a caller
 * retries with a bigger buffer when the result exceeds cap. Invalid UTF-8 is handled as sentencepiece does (each bad
 * byte normalizes to U+FFFD). With extra ids set, the literal text <extra_id_N> (N < n, written without leading
 * zeros) is one sentinel token and the whitespace around it is dropped, as T5Tokenizer does; only sentinels are split
 * out, not "</s>" or "<unk>" written in the text. Ids match sentencepiece's encode() exactly (tests/test_spm.c).
 * Work buffers are per thread and reused, so several threads may encode with one model at once. */
int64_t data_spm_encode(const data_spm *m, const char *text, size_t len, int32_t *ids, int64_t cap);
/* Decodes ids to UTF-8 (NUL-terminated when cap > 0). Returns the bytes needed, excluding the NUL. As sentencepiece's
 * decode(): control ids vanish, the unknown id prints " \u2047 " (or the model's unk_surface), byte pieces reassemble
 * into UTF-8 (U+FFFD per bad byte), the dummy-prefix space is dropped. Sentinels print as <extra_id_N>. Ids outside
 * [0, vocab_size) are skipped (sentencepiece would reject the call; generation may emit the padded rows). */
size_t data_spm_decode(const data_spm *m, const int32_t *ids, int64_t n, char *out, size_t cap);

#endif
