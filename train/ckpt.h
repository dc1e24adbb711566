/* Checkpoint files: model-agnostic HDF5 I/O with atomic commit (temp file, fsync, rename, fsync dir), per-dataset
 * Fletcher32 checksums and a `complete` marker, so a crash or a flipped bit is reported, never loaded silently.
 * The trainer supplies names and plain arrays; names with '/' make groups ("params/encoder.block.0...."). */
#ifndef TRAIN_CKPT_H
#define TRAIN_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/sx_error.h"

#define CKPT_FORMAT_NAME "switchc-checkpoint"
#define CKPT_FORMAT_VERSION 1
#define CKPT_MAX_DIMS 8

typedef struct ckpt_writer ckpt_writer;

/* Writes go to "<path>.tmp.<pid>" in the same directory; nothing appears at `path` until commit. Writes the root
 * attributes format and format_version. */
sx_status ckpt_writer_open(const char *path, ckpt_writer **out);
/* ndim 0 is a scalar (shape may be NULL). Every dataset with elements is chunked and Fletcher32-checksummed. */
sx_status ckpt_write_f32(ckpt_writer *w, const char *name, int ndim, const int64_t *shape, const float *data);
sx_status ckpt_write_i64(ckpt_writer *w, const char *name, int ndim, const int64_t *shape, const int64_t *data);
sx_status ckpt_write_u64(ckpt_writer *w, const char *name, int ndim, const int64_t *shape, const uint64_t *data);
/* Big text (config JSON): a 1-D uint8 dataset with attribute encoding="utf-8", not an attribute (64 KiB limit). */
sx_status ckpt_write_string(ckpt_writer *w, const char *name, const char *text);
/* Root attributes; names must not contain '/'. */
sx_status ckpt_write_attr_i64(ckpt_writer *w, const char *name, int64_t v);
/* Writes `complete` = 1, closes, fsyncs, renames onto the final path, fsyncs the directory. Frees w, also on error
 * (then the temp file is removed). */
sx_status ckpt_writer_commit(ckpt_writer *w);
/* Removes the temp file and frees w. NULL is a no-op. */
void ckpt_writer_abort(ckpt_writer *w);

typedef struct ckpt_reader ckpt_reader;

/* Opens read-only and checks format == "switchc-checkpoint", format_version == 1 and complete == 1. */
sx_status ckpt_open(const char *path, ckpt_reader **out);
/* True when `name` exists and is a dataset. */
bool ckpt_has(const ckpt_reader *r, const char *name);
/* The same, telling a missing name (*present false, ok) from a lookup that fails on damaged metadata or a name that
 * is not a dataset (an error naming the file and the object). */
sx_status ckpt_lookup(const ckpt_reader *r, const char *name, bool *present);
/* Reads a whole dataset whose type and shape must equal the expected ones; errors name the file, the dataset and
 * both shapes. A checksum failure is reported as corruption of that dataset. */
sx_status ckpt_read_f32(ckpt_reader *r, const char *name, int ndim, const int64_t *shape, float *dst);
sx_status ckpt_read_i64(ckpt_reader *r, const char *name, int ndim, const int64_t *shape, int64_t *dst);
sx_status ckpt_read_u64(ckpt_reader *r, const char *name, int ndim, const int64_t *shape, uint64_t *dst);
/* *out is NUL-terminated and malloc'd: the caller frees it. */
sx_status ckpt_read_string(ckpt_reader *r, const char *name, char **out);
sx_status ckpt_read_attr_i64(ckpt_reader *r, const char *name, int64_t *v);
/* Calls fn for every dataset under `group` ("" or "/" = the whole file), recursively, in name order. The name
 * given to fn is relative to the group ("params" lists "encoder.block.0...."); shape has ndim entries. */
sx_status ckpt_list(ckpt_reader *r, const char *group,
                    void (*fn)(const char *name, int ndim, const int64_t *shape, void *u), void *u);
/* NULL is a no-op. */
void ckpt_close(ckpt_reader *r);

/* Keeps the newest `keep` (>= 1) files "<dir>/<prefix><step>*.h5", ordered by the step number right after the
 * prefix, and deletes older ones. Temp files ("*.tmp.*") and names without a step are left alone. */
sx_status ckpt_rotate(const char *dir, const char *prefix, int keep);
/* Finds the newest checkpoint in dir that opens as complete and valid (ignores *.tmp.* leftovers; skips a broken
 * newer file with a warning on stderr). *found is false (and out_path "") when there is none. */
sx_status ckpt_find_latest(const char *dir, const char *prefix, char *out_path, size_t cap, bool *found);

#endif
