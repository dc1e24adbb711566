/* Helpers for strict JSON configs: typed reads that name the JSON path on error, and near-miss hints
 * ("unknown key 'lr' in train: did you mean 'learning_rate'?"). */
#ifndef SX_TRAIN_CFG_UTIL_H
#define SX_TRAIN_CFG_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "autograd/sx_error.h"

/* The closest candidate by edit distance (case-insensitive), or NULL when none is close enough to suggest. */
const char *cfg_closest(const char *word, const char *const *candidates, int n);

/* Typed reads of one member. 'where' is the path of the enclosing object (for messages). */
sx_status cfg_get_int(const cJSON *item, const char *where, int64_t lo, int64_t hi, int64_t *out);
sx_status cfg_get_double(const cJSON *item, const char *where, double lo, double hi, double *out);
sx_status cfg_get_bool(const cJSON *item, const char *where, bool *out);
sx_status cfg_get_string(const cJSON *item, const char *where, char *out, size_t cap);

/* Splits a comma-separated list (train.freeze, lora.targets) into at most max items, blanks around each trimmed and
 * empty items dropped: copies list into buf and points items into it. Returns the count. */
int cfg_split_list(const char *list, char *buf, size_t cap, char **items, int max);

/* JSON files (configs, indexes, batches) larger than this are refused before reading. */
#define CFG_MAX_FILE_BYTES ((size_t)256 << 20)

/* Reads a whole regular file (a directory, FIFO or device is refused by name) into a NUL-terminated buffer (caller
 * frees). */
sx_status cfg_read_file(const char *path, char **out, size_t *len);
/* Parses one JSON value, strictly: a leading UTF-8 BOM is skipped; NUL bytes, "\u0000" in strings and anything
 * after the value but whitespace are errors. Messages give label:line:column. */
sx_status cfg_parse_text(const char *text, size_t len, const char *label, cJSON **out);
/* Parses a JSON file with cfg_parse_text. */
sx_status cfg_parse_file(const char *path, cJSON **out);
/* The value of --set section.key=VALUE: JSON when it parses as one whole value, else the bare word as a string. */
sx_status cfg_parse_set_value(const char *assignment, const char *val, cJSON **out);
/* True for an object with Hugging Face model config.json keys at its top ("architectures", "d_model", ...): what a
 * run config is not, so the error can say where such a file goes. */
bool cfg_looks_like_hf_model_config(const cJSON *obj);

#endif
