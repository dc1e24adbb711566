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

/* Reads a whole file into a NUL-terminated buffer (caller frees). */
sx_status cfg_read_file(const char *path, char **out, size_t *len);
/* Parses a JSON file; the error gives the line and column of a syntax error. */
sx_status cfg_parse_file(const char *path, cJSON **out);

#endif
