/* HDF5 token datasets: inputs (and targets) as flat int32 token arrays with int64 offsets [n + 1], chunked and
 * read by hyperslab one example at a time (a dataset larger than memory is never loaded whole), with attributes for
 * the format, its version, the vocabulary size and the tokenizer's checksum. Written atomically (temp + rename). */
#ifndef SX_DATA_DATASET_H
#define SX_DATA_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/sx_error.h"

#define DATA_FORMAT_NAME "switchc-tokens"
#define DATA_FORMAT_VERSION 1

typedef struct data_writer data_writer;
/* has_targets false: a raw-text dataset (inputs only), e.g. for span corruption. */
sx_status data_writer_open(const char *path, int32_t vocab_size, uint32_t tokenizer_crc32, bool has_targets, data_writer **out);
sx_status data_writer_append(data_writer *w, const int32_t *in, int64_t n_in, const int32_t *tgt, int64_t n_tgt);
sx_status data_writer_close(data_writer *w); /* writes offsets and attributes, renames into place; frees w */
void data_writer_abort(data_writer *w);

typedef struct data_dataset data_dataset;
/* Validates the format, version, datasets and offsets (monotonic, within the token arrays); errors name the file and
 * the dataset. */
sx_status data_dataset_open(const char *path, data_dataset **out);
/* The same with the HDF5 raw-data chunk cache of each token dataset set to cache_bytes (the memory budget of reads:
 * examples are read one hyperslab at a time through this cache, never the whole array; 0 = HDF5's default, 1 MiB).
 * The offsets (8 bytes per example) are held in memory. */
sx_status data_dataset_open_cached(const char *path, int64_t cache_bytes, data_dataset **out);
int64_t data_dataset_count(const data_dataset *d);
bool data_dataset_has_targets(const data_dataset *d);
int32_t data_dataset_vocab_size(const data_dataset *d);
uint32_t data_dataset_tokenizer_crc(const data_dataset *d);
/* Example i: at most cap tokens into buf (the rest is cut); *n gets the full length. Token ids outside
 * [0, vocab_size) are an error naming the file and the example. which: 0 inputs, 1 targets. */
sx_status data_dataset_get(data_dataset *d, int64_t i, int which, int32_t *buf, int64_t cap, int64_t *n);
/* Length of example i (which: 0 inputs, 1 targets) from the offsets, reading no tokens; -1 when out of range. */
int64_t data_dataset_length(const data_dataset *d, int64_t i, int which);
void data_dataset_close(data_dataset *d);

/* A random permutation of [0, n) that needs no memory: a keyed Feistel network with cycle walking, so epoch e's
 * order is a pure function of (seed, e) and a resumed run sees the same batches. */
int64_t data_permute(int64_t i, int64_t n, uint64_t seed, uint64_t epoch);

#endif
