/* Files from the outside world, opened the one safe way (DESIGN.md 4): a reader gets a regular file or an error that
 * names the path and what it is instead (a directory, a FIFO, a device, a socket), never a hang on a FIFO or a read
 * of a directory's "size"; an output path is checked before work starts (empty, a directory, a missing parent). */
#ifndef SX_FILE_H
#define SX_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/sx_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* path must name an existing regular file (symbolic links followed). what: the role in messages ("run config"). */
sx_status sx_file_check_regular(const char *path, const char *what);
/* Opens a regular file read-only (O_NONBLOCK while checking, so a FIFO is refused, not waited on); *size gets its
 * length when size is not NULL. */
sx_status sx_file_open_read(const char *path, const char *what, int *fd, int64_t *size);
/* The same as a stdio stream (mode "r" or "rb"). */
sx_status sx_file_fopen_read(const char *path, const char *what, FILE **out, int64_t *size);
/* Reads a whole regular file of at most max_bytes into a NUL-terminated buffer (the caller frees). */
sx_status sx_file_read_all(const char *path, const char *what, size_t max_bytes, char **out, size_t *len);
/* An output path named by flag ("--output", "train.out_dir"): not empty, not an existing directory (unless dir_ok),
 * its parent directory exists. */
sx_status sx_file_check_output(const char *path, const char *flag, bool dir_ok);
/* True when both paths exist and are the same file (same device and inode: hard and symbolic links too). */
bool sx_file_same(const char *a, const char *b);
/* What a path is, for messages: "a directory", "a FIFO", ... ("a regular file"; "missing" when stat fails). */
const char *sx_file_kind(const char *path);
/* Writes len bytes as path, atomically: into path.tmp.PID, then renamed over path (a reader sees the old file or the
 * new one; a FIFO or a file in the way is replaced, never written through). what: the role in messages. */
sx_status sx_file_write_atomic(const char *path, const char *what, const void *data, size_t len);
/* Past a file-size limit (ulimit -f), the kernel sends SIGXFSZ, which kills silently: ignored, the write fails
 * with EFBIG and the writer reports the file. Call once at program start. */
void sx_file_ignore_sigxfsz(void);

#ifdef __cplusplus
}
#endif
#endif
