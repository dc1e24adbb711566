/* Metrics tests: CRC-32C against published vectors, the TensorBoard event file decoded back record by record (both
 * CRCs and the Event/Summary fields), metrics.jsonl parsed back with cJSON (non-finite values flagged), and the
 * progress line. scripts/check_tb_events.py re-reads the event file this suite leaves in
 * <build>/test_metrics_tmp/tb_check/ with TensorBoard's own reader. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/metrics.h"
#include "tests/tutil.h"

#define MSG_HAS(s, sub) cr_assert(strstr((s).msg, (sub)), "message lacks '%s': %s", (sub), (s).msg)

static void check(sx_status s) { cr_assert(s.ok, "unexpected error: %s", s.msg); }

Test(metrics, crc32c_known_vectors) {
    /* RFC 3720 (iSCSI) appendix B.4 vectors and the classic check value. */
    unsigned char zeros[32] = {0}, ones[32], inc[32], dec[32];
    for (int i = 0; i < 32; i++) {
        ones[i] = 0xFF;
        inc[i] = (unsigned char)i;
        dec[i] = (unsigned char)(31 - i);
    }
    cr_assert_eq(train_crc32c(0, "123456789", 9), 0xE3069283u);
    cr_assert_eq(train_crc32c(0, zeros, 32), 0x8A9136AAu);
    cr_assert_eq(train_crc32c(0, ones, 32), 0x62A8AB43u);
    cr_assert_eq(train_crc32c(0, inc, 32), 0x46DD794Eu);
    cr_assert_eq(train_crc32c(0, dec, 32), 0x113FDB5Cu);
    cr_assert_eq(train_crc32c(0, "", 0), 0u);
    cr_assert_eq(train_crc32c(train_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u, "chaining must equal one pass");
    cr_assert_eq(train_crc32c_mask(0), 0xa282ead8u);
    cr_assert_eq(train_crc32c_mask(0xE3069283u), ((0xE3069283u >> 15) | (0xE3069283u << 17)) + 0xa282ead8u);
}

/* ---- a minimal decoder for what the writer emits ------------------------------------------------------------------ */

static uint64_t rd_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint64_t rd_varint(const unsigned char **p, const unsigned char *end) {
    uint64_t v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        unsigned char c = *(*p)++;
        v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) return v;
    }
    cr_assert_fail("bad varint");
    return 0;
}

typedef struct {
    double wall_time;
    int64_t step;
    char file_version[32];
    int nval;
    char tags[8][64];
    float vals[8];
} event;

static void decode_value(const unsigned char *p, const unsigned char *end, event *e) {
    int k = e->nval++;
    cr_assert(k < 8);
    while (p < end) {
        uint64_t key = rd_varint(&p, end);
        if (key == (1 << 3 | 2)) {
            uint64_t n = rd_varint(&p, end);
            cr_assert(n < 64 && p + n <= end);
            memcpy(e->tags[k], p, n);
            e->tags[k][n] = 0;
            p += n;
        } else if (key == (2 << 3 | 5)) {
            uint32_t bits = (uint32_t)rd_le(p, 4);
            memcpy(&e->vals[k], &bits, 4);
            p += 4;
        } else
            cr_assert_fail("unexpected Summary.Value key %llu", (unsigned long long)key);
    }
}

static void decode_event(const unsigned char *p, const unsigned char *end, event *e) {
    memset(e, 0, sizeof *e);
    while (p < end) {
        uint64_t key = rd_varint(&p, end);
        if (key == (1 << 3 | 1)) {
            uint64_t bits = rd_le(p, 8);
            memcpy(&e->wall_time, &bits, 8);
            p += 8;
        } else if (key == (2 << 3 | 0)) {
            e->step = (int64_t)rd_varint(&p, end);
        } else if (key == (3 << 3 | 2)) {
            uint64_t n = rd_varint(&p, end);
            cr_assert(n < 32 && p + n <= end);
            memcpy(e->file_version, p, n);
            p += n;
        } else if (key == (5 << 3 | 2)) {
            uint64_t n = rd_varint(&p, end);
            const unsigned char *send = p + n;
            cr_assert(send <= end);
            while (p < send) {
                cr_assert_eq(rd_varint(&p, send), 1 << 3 | 2, "Summary holds only values");
                uint64_t vn = rd_varint(&p, send);
                decode_value(p, p + vn, e);
                p += vn;
            }
        } else
            cr_assert_fail("unexpected Event key %llu", (unsigned long long)key);
    }
}

/* Splits the file into TFRecords, checking both masked CRCs of each. */
static int read_events(const char *path, event *out, int cap) {
    size_t n;
    unsigned char *b = (unsigned char *)tu_slurp(path, &n);
    size_t off = 0;
    int k = 0;
    while (off < n) {
        cr_assert(off + 12 <= n, "truncated record header at %zu", off);
        uint64_t len = rd_le(b + off, 8);
        cr_assert_eq((uint32_t)rd_le(b + off + 8, 4), train_crc32c_mask(train_crc32c(0, b + off, 8)), "length CRC at %zu", off);
        cr_assert(off + 12 + len + 4 <= n, "truncated record at %zu", off);
        const unsigned char *data = b + off + 12;
        cr_assert_eq((uint32_t)rd_le(data + len, 4), train_crc32c_mask(train_crc32c(0, data, len)), "data CRC at %zu", off);
        cr_assert(k < cap);
        decode_event(data, data + len, &out[k++]);
        off += 12 + len + 4;
    }
    free(b);
    return k;
}

static char *find_events(const char *dir, int *count) {
    DIR *d = opendir(dir);
    cr_assert(d);
    struct dirent *e;
    char *found = NULL;
    *count = 0;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, "tfevents")) continue;
        (*count)++;
        free(found);
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        found = malloc(n);
        snprintf(found, n, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    return found;
}

/* The file the Python check reads: steps 0..9, train/loss = 3 - 0.1*step, train/lr = 1e-4*(step+1), plus one NaN. */
Test(metrics, tensorboard_events_round_trip) {
    char dir[1024];
    tu_fresh_dir("test_metrics", "tb_check", dir, sizeof dir);
    train_metrics *m;
    check(train_metrics_open(dir, &m));
    const char *names[2] = {"train/loss", "train/lr"};
    for (int s = 0; s < 10; s++) {
        double v[2] = {3.0 - 0.1 * s, 1e-4 * (s + 1)};
        check(train_metrics_log(m, s, 2, names, v));
    }
    const char *nn[1] = {"train/grad_norm"};
    check(train_metrics_log(m, 10, 1, nn, (double[]){NAN}));
    check(train_metrics_log(m, 1LL << 40, 1, nn, (double[]){2.5})); /* steps beyond 32 bits */
    check(train_metrics_flush(m));
    char *path = strdup(train_metrics_events_path(m));
    train_metrics_close(m);
    cr_log_info("TensorBoard file for scripts/check_tb_events.py: %s", path);

    event ev[16];
    int n = read_events(path, ev, 16);
    cr_assert_eq(n, 13, "file_version + 12 scalar events, got %d records", n);
    cr_assert_str_eq(ev[0].file_version, "brain.Event:2");
    cr_assert(ev[0].wall_time > 1.6e9, "wall_time is unix seconds");
    double worst = 0;
    for (int s = 0; s < 10; s++) {
        event *e = &ev[1 + s];
        cr_assert(e->step == s && e->nval == 2 && !strcmp(e->tags[0], "train/loss") && !strcmp(e->tags[1], "train/lr"),
                  "event %d: step %lld, %d values", s, (long long)e->step, e->nval);
        cr_assert(e->wall_time >= ev[0].wall_time);
        double d0 = fabs(e->vals[0] - (3.0 - 0.1 * s)) / (3.0 - 0.1 * s);
        double d1 = fabs(e->vals[1] - 1e-4 * (s + 1)) / (1e-4 * (s + 1));
        worst = fmax(worst, fmax(d0, d1));
    }
    /* simple_value is a float: relative rounding error at most 2^-24. */
    cr_assert(worst <= 6e-8, "worst relative error %g exceeds float rounding", worst);
    cr_assert(ev[11].step == 10 && isnan(ev[11].vals[0]) && !strcmp(ev[11].tags[0], "train/grad_norm"));
    cr_assert(ev[12].step == (1LL << 40) && ev[12].vals[0] == 2.5f);
    free(path);
}

Test(metrics, jsonl_records_and_nonfinite_flags) {
    char dir[1024], p[1200];
    tu_fresh_dir("test_metrics", "jsonl", dir, sizeof dir);
    train_metrics *m;
    check(train_metrics_open(dir, &m));
    const char *names[4] = {"train/loss", "train/lr", "router/aux_loss", "train/grad_norm"};
    check(train_metrics_log(m, 1, 4, names, (double[]){2.31, 1e-4, 0.0125, 0.7}));
    check(train_metrics_log(m, 2, 4, names, (double[]){NAN, 1e-4, INFINITY, -INFINITY}));
    check(train_metrics_log(m, 3, 0, NULL, NULL));

    sx_status s = train_metrics_log(m, 4, 2, (const char *[]){"a", "a"}, (double[]){1, 2});
    cr_assert(!s.ok);
    MSG_HAS(s, "'a' appears twice");
    s = train_metrics_log(m, 4, 1, (const char *[]){"step"}, (double[]){1});
    MSG_HAS(s, "'step' is reserved");
    s = train_metrics_log(m, 4, 1, (const char *[]){""}, (double[]){1});
    MSG_HAS(s, "empty name");
    train_metrics_close(m);

    /* Reopening (a resumed run) appends to metrics.jsonl and starts a second event file. */
    check(train_metrics_open(dir, &m));
    check(train_metrics_log(m, 4, 1, names, (double[]){2.0}));
    train_metrics_close(m);
    int nev;
    free(find_events(dir, &nev));
    cr_assert_eq(nev, 2, "each open starts its own event file");

    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    size_t n;
    char *text = tu_slurp(p, &n);
    cJSON *rec[8];
    int k = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cr_assert(k < 8);
        rec[k] = cJSON_Parse(line);
        cr_assert(rec[k], "line %d is not JSON: %s", k + 1, line);
        k++;
    }
    cr_assert_eq(k, 4, "4 records, got %d", k);

    cJSON *r0 = rec[0];
    cr_assert_eq(cJSON_GetObjectItem(r0, "step")->valuedouble, 1);
    cr_assert(cJSON_GetObjectItem(r0, "wall_time")->valuedouble > 1.6e9);
    cr_assert_eq(cJSON_GetObjectItem(r0, "train/loss")->valuedouble, 2.31, "doubles print round-trip exact");
    cr_assert_eq(cJSON_GetObjectItem(r0, "train/lr")->valuedouble, 1e-4);
    cr_assert_null(cJSON_GetObjectItem(r0, "nonfinite"), "a finite record has no nonfinite list");

    cJSON *r1 = rec[1];
    cr_assert_str_eq(cJSON_GetObjectItem(r1, "train/loss")->valuestring, "nan");
    cr_assert_str_eq(cJSON_GetObjectItem(r1, "router/aux_loss")->valuestring, "inf");
    cr_assert_str_eq(cJSON_GetObjectItem(r1, "train/grad_norm")->valuestring, "-inf");
    cr_assert_eq(cJSON_GetObjectItem(r1, "train/lr")->valuedouble, 1e-4);
    cJSON *bad = cJSON_GetObjectItem(r1, "nonfinite");
    cr_assert(cJSON_IsArray(bad) && cJSON_GetArraySize(bad) == 3);
    cr_assert_str_eq(cJSON_GetArrayItem(bad, 0)->valuestring, "train/loss");
    cr_assert_str_eq(cJSON_GetArrayItem(bad, 1)->valuestring, "router/aux_loss");
    cr_assert_str_eq(cJSON_GetArrayItem(bad, 2)->valuestring, "train/grad_norm");

    cr_assert_eq(cJSON_GetArraySize(rec[2]), 2, "an empty record has step and wall_time only");
    cr_assert_eq(cJSON_GetObjectItem(rec[3], "step")->valuedouble, 4);
    for (int i = 0; i < k; i++) cJSON_Delete(rec[i]);
    free(text);
}

Test(metrics, open_errors) {
    train_metrics *m;
    sx_status s = train_metrics_open("/nonexistent-dir-for-switchc/run", &m);
    cr_assert(!s.ok && m == NULL);
    MSG_HAS(s, "/nonexistent-dir-for-switchc/run");
    s = train_metrics_open("", &m);
    cr_assert(!s.ok);
}

Test(metrics, progress_line_format) {
    train_progress p = {.total = 1010, .t_start = 100, .last_print = -1, .tty = false, .first_step = -1, .t_first = 100};
    char line[512];
    train_progress_format(&p, 0, 101, NULL, line, sizeof line);
    cr_assert(strstr(line, "step 0/1010") && strstr(line, "ETA ?"), "before any rate: %s", line);
    p.first_step = 10;
    p.t_first = 110;
    /* 100 steps in 10 s: 10 step/s, 900 steps left: 90 s. */
    train_progress_format(&p, 110, 120, "loss 2.31", line, sizeof line);
    cr_assert(strstr(line, "step 110/1010 [##------------------]  10.9%"), "%s", line);
    cr_assert(strstr(line, "10 step/s") && strstr(line, "elapsed 20s") && strstr(line, "ETA 1m30s") &&
                  strstr(line, "| loss 2.31"),
              "%s", line);
    /* Slow steps read as seconds per step; long ETAs in hours. */
    train_progress_format(&p, 11, 130, NULL, line, sizeof line);
    cr_assert(strstr(line, "20.0 s/step") && strstr(line, "ETA 5h33m"), "%s", line);
    train_progress_format(&p, 1010, 130, NULL, line, sizeof line);
    cr_assert(strstr(line, "100.0%") && strstr(line, "ETA 0s"), "%s", line);
}

Test(metrics, progress_plain_output_is_rate_limited) {
    char dir[1024], p[1200];
    tu_fresh_dir("test_metrics", "progress", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/stderr.txt", dir);
    cr_assert(freopen(p, "w", stderr), "cannot redirect stderr");
    train_progress pr;
    train_progress_init(&pr, 1000);
    cr_assert(!pr.tty, "stderr is a file here");
    /* A fast loop: within TRAIN_PROGRESS_PLAIN_SECONDS only the first and the last step print. */
    for (int s = 1; s <= 1000; s++) train_progress_update(&pr, s, "loss 1.00");
    train_progress_done(&pr);
    fflush(stderr);
    size_t n;
    char *text = tu_slurp(p, &n);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += text[i] == '\n';
    cr_assert_eq(lines, 3, "expected 3 lines, got:\n%s", text);
    cr_assert(strstr(text, "step 1/1000") && strstr(text, "step 1000/1000") && strstr(text, "done in"), "%s", text);
    cr_assert_null(strchr(text, '\r'), "no carriage returns when stderr is not a TTY");
    free(text);
}
