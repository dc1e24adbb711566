/* Training metrics: one JSON object per line (metrics.jsonl, the canonical stream), TensorBoard event files
 * written by hand (TFRecord framing + a few protobuf fields, no dependency), and a console progress line.
 * Rank 0 only: the caller decides who logs. */
#ifndef TRAIN_METRICS_H
#define TRAIN_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/sx_error.h"

/* ---- CRC-32C (Castagnoli), as TFRecord uses it --------------------------------------------------------------------- */

/* zlib-style chaining: train_crc32c(train_crc32c(0, a), b) == CRC of a followed by b. */
uint32_t train_crc32c(uint32_t crc, const void *data, size_t n);
/* TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8. */
uint32_t train_crc32c_mask(uint32_t crc);

/* ---- TensorBoard event file --------------------------------------------------------------------------------------- */

typedef struct train_tb_writer train_tb_writer;
/* Creates the file (it must not exist) and writes the first record, Event{file_version: "brain.Event:2"}. */
sx_status train_tb_open(const char *path, double wall_time, train_tb_writer **out);
/* One Event{wall_time, step, summary{value{tag, simple_value}...}} with n scalars (stored as float). */
sx_status train_tb_write_scalars(train_tb_writer *w, int64_t step, double wall_time, int n, const char *const *tags,
                                 const double *values);
sx_status train_tb_flush(train_tb_writer *w);
void train_tb_close(train_tb_writer *w);

/* ---- metrics ------------------------------------------------------------------------------------------------------ */

typedef struct train_metrics train_metrics;
/* dir: the run directory (created if missing, one level); appends to dir/metrics.jsonl (so a resumed run continues
 * it) and starts a new dir/events.out.tfevents.<unix time>.<host>[.<n>]. */
sx_status train_metrics_open(const char *dir, train_metrics **out);
/* One record: {"step": s, "wall_time": t, name: value, ...}. Non-finite values are written as the strings "nan",
 * "inf", "-inf" and listed in "nonfinite": [names] (flagged, not silently nulled). Also one TensorBoard Event with
 * one scalar per value, tag = name ("train/loss"). Names must be non-empty, distinct and not "step", "wall_time" or
 * "nonfinite". Both files are flushed to the OS after each record. */
sx_status train_metrics_log(train_metrics *m, int64_t step, int n, const char *const *names, const double *values);
/* fsyncs both files. */
sx_status train_metrics_flush(train_metrics *m);
/* The path of the event file (valid until close). */
const char *train_metrics_events_path(const train_metrics *m);
/* NULL is a no-op. */
void train_metrics_close(train_metrics *m);

/* ---- console progress --------------------------------------------------------------------------------------------- */

/* A progress line with ETA on stderr: rewritten in place with \r when stderr is a TTY (at most 10 times a second),
 * otherwise printed as a plain line at most every TRAIN_PROGRESS_PLAIN_SECONDS (and at the last step).
 * The rate is measured from the first update, so startup and a resumed run's earlier steps do not skew the ETA. */
#define TRAIN_PROGRESS_PLAIN_SECONDS 10.0
typedef struct {
    int64_t total;
    double t_start;    /* monotonic seconds at init */
    double last_print; /* monotonic seconds of the last line; negative: none yet */
    bool tty;
    int64_t first_step; /* step of the first update; -1 before it */
    double t_first;     /* monotonic seconds of the first update */
} train_progress;

void train_progress_init(train_progress *p, int64_t total_steps);
/* extra: "loss 2.31 | lr 1e-4" etc., or NULL. */
void train_progress_update(train_progress *p, int64_t step, const char *extra);
void train_progress_done(train_progress *p);
/* The line update prints, for time `now` (monotonic seconds), without printing or changing p. */
void train_progress_format(const train_progress *p, int64_t step, double now, const char *extra, char *buf, size_t cap);

/* ---- memory --------------------------------------------------------------------------------------------------------- */

/* This process's peak resident set in MiB: VmHWM of /proc/self/status, which belongs to the process's own address
 * space. getrusage's ru_maxrss is not used: Linux folds the parent's resident set at fork into the child's maxrss
 * when the child execs, so a switchc started by a large Python process (a benchmark or sweep script holding a model)
 * would report the parent's memory. Falls back to ru_maxrss where /proc is missing. */
double train_peak_rss_mb(void);

#endif
