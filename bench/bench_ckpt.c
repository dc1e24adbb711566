/* Checkpoint throughput: writing (commit included: close, fsync, rename, directory fsync) and reading back a
 * checkpoint of many f32 tensors, against the peer of the same bytes written raw with write()+fsync() and read()
 * back, so the ratio shows what HDF5 + Fletcher32 cost. Usage: bench_ckpt [MB=256] [tensors=64] [dir=.] */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "train/ckpt.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(sx_status s) {
    if (!s.ok) {
        fprintf(stderr, "bench_ckpt: %s\n", s.msg);
        exit(1);
    }
}

/* Writes (write) or reads back nt tensors [rows, cols] as params/layer.T.weight. */
static void ckpt_pass(const char *path, bool write, int nt, int64_t rows, int64_t cols, float *buf) {
    ckpt_writer *w = NULL;
    ckpt_reader *r = NULL;
    die(write ? ckpt_writer_open(path, &w) : ckpt_open(path, &r));
    for (int t = 0; t < nt; t++) {
        char name[64];
        snprintf(name, sizeof name, "params/layer.%d.weight", t);
        die(write ? ckpt_write_f32(w, name, 2, (int64_t[]){rows, cols}, buf) : ckpt_read_f32(r, name, 2, (int64_t[]){rows, cols}, buf));
    }
    if (write) die(ckpt_writer_commit(w));
    else ckpt_close(r);
}

int main(int argc, char **argv) {
    int64_t mb = argc > 1 ? atoll(argv[1]) : 256;
    int nt = argc > 2 ? atoi(argv[2]) : 64;
    const char *dir = argc > 3 ? argv[3] : ".";
    if (mb <= 0 || nt <= 0) {
        fprintf(stderr, "usage: bench_ckpt [MB > 0] [tensors > 0] [dir]\n");
        return 2;
    }
    int64_t per = mb * 1024 * 1024 / 4 / nt; /* floats per tensor */
    int64_t cols = 1024, rows = per / cols;
    per = rows * cols;
    double bytes = (double)per * 4 * nt;
    float *buf = malloc(sizeof(float) * (size_t)per);
    if (!buf) return 1;
    for (int64_t i = 0; i < per; i++) buf[i] = (float)(i % 9973) * 0.001f;
    char path[4096], raw[4096];
    snprintf(path, sizeof path, "%s/bench_ckpt.h5", dir);
    snprintf(raw, sizeof raw, "%s/bench_ckpt.raw", dir);

    double t0 = now();
    ckpt_pass(path, true, nt, rows, cols, buf);
    double t_write = now() - t0;

    t0 = now();
    ckpt_pass(path, false, nt, rows, cols, buf);
    double t_read = now() - t0;

    t0 = now();
    int fd = open(raw, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (int t = 0; t < nt && fd >= 0; t++)
        if (write(fd, buf, (size_t)per * 4) != (ssize_t)per * 4) return 1;
    if (fd < 0 || fsync(fd) != 0) return 1;
    close(fd);
    double t_raww = now() - t0;
    t0 = now();
    fd = open(raw, O_RDONLY);
    for (int t = 0; t < nt && fd >= 0; t++)
        if (read(fd, buf, (size_t)per * 4) != (ssize_t)per * 4) return 1;
    close(fd);
    double t_rawr = now() - t0;
    unlink(raw);
    unlink(path);

    double m = bytes / 1048576.0;
    printf("checkpoint %.0f MB in %d tensors [%lld, %lld] (reads are from the page cache)\n", m, nt, (long long)rows,
           (long long)cols);
    printf("write+commit  %7.1f MB/s   raw write+fsync %7.1f MB/s   ratio %.2f\n", m / t_write, m / t_raww, t_raww / t_write);
    printf("open+read     %7.1f MB/s   raw read        %7.1f MB/s   ratio %.2f\n", m / t_read, m / t_rawr, t_rawr / t_read);
    free(buf);
    return 0;
}
