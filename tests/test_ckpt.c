/* Checkpoint I/O tests: round trips, every kind of bad file (truncated, flipped bytes, wrong format/version,
 * not HDF5, missing dataset, wrong shape) giving a clear error without a crash, atomic commit under SIGKILL,
 * rotation and finding the latest complete checkpoint. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "train/ckpt.h"
#include "tests/tutil.h"

#define MSG_HAS(s, sub) cr_assert(strstr((s).msg, (sub)), "message lacks '%s': %s", (sub), (s).msg)

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void check(sx_status s) { cr_assert(s.ok, "unexpected error: %s", s.msg); }

/* The standard test checkpoint: a distinctive f32 block (found in the file by its bytes), a small i64, a string. */
#define BIG_ROWS 300
#define BIG_COLS 257
static float *big_data(void) {
    float *v = malloc(sizeof(float) * BIG_ROWS * BIG_COLS);
    for (int i = 0; i < BIG_ROWS * BIG_COLS; i++) v[i] = 1000.0f + (float)i * 0.25f;
    return v;
}

static void write_standard(const char *path) {
    float *big = big_data();
    int64_t ids[6] = {1, -2, 3, INT64_MAX, INT64_MIN, 0};
    ckpt_writer *w;
    check(ckpt_writer_open(path, &w));
    check(ckpt_write_f32(w, "params/encoder.block.0.layer.0.SelfAttention.q.weight", 2, (int64_t[]){BIG_ROWS, BIG_COLS}, big));
    check(ckpt_write_i64(w, "data/position", 1, (int64_t[]){6}, ids));
    check(ckpt_write_string(w, "config", "{\"d_model\": 32}"));
    check(ckpt_write_attr_i64(w, "step", 77));
    check(ckpt_writer_commit(w));
    free(big);
}

/* Reads everything write_standard wrote; returns the first error, and whether the data matched. */
static sx_status read_standard(const char *path, bool *same) {
    *same = false;
    ckpt_reader *r;
    SX_TRY(ckpt_open(path, &r));
    float *want = big_data(), *got = malloc(sizeof(float) * BIG_ROWS * BIG_COLS);
    int64_t ids[6], step = 0;
    char *cfg = NULL;
    sx_status s = ckpt_read_f32(r, "params/encoder.block.0.layer.0.SelfAttention.q.weight", 2, (int64_t[]){BIG_ROWS, BIG_COLS}, got);
    if (s.ok) s = ckpt_read_i64(r, "data/position", 1, (int64_t[]){6}, ids);
    if (s.ok) s = ckpt_read_string(r, "config", &cfg);
    if (s.ok) s = ckpt_read_attr_i64(r, "step", &step);
    if (s.ok)
        *same = !memcmp(want, got, sizeof(float) * BIG_ROWS * BIG_COLS) && ids[3] == INT64_MAX && ids[1] == -2 &&
                !strcmp(cfg, "{\"d_model\": 32}") && step == 77;
    free(cfg);
    free(want);
    free(got);
    ckpt_close(r);
    return s;
}

/* A root with hand-chosen format attributes, written with HDF5 directly (what another tool might produce). */
static void write_raw(const char *path, const char *format, int64_t version, bool complete) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(f >= 0);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, strlen(format) + 1);
    hid_t a = H5Acreate2(f, "format", st, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, format);
    H5Aclose(a);
    a = H5Acreate2(f, "format_version", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &version);
    H5Aclose(a);
    if (complete) {
        int64_t one = 1;
        a = H5Acreate2(f, "complete", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, &one);
        H5Aclose(a);
    }
    H5Tclose(st);
    H5Sclose(sp);
    H5Fclose(f);
}

typedef struct {
    int n;
    char names[16][128];
    int ndim[16];
    int64_t dim0[16];
} listing;

static void collect(const char *name, int ndim, const int64_t *shape, void *u) {
    listing *l = u;
    if (l->n >= 16) return;
    snprintf(l->names[l->n], 128, "%s", name);
    l->ndim[l->n] = ndim;
    l->dim0[l->n] = ndim ? shape[0] : -1;
    l->n++;
}

Test(ckpt, round_trip) {
    char dir[1024], path[1200];
    tu_fresh_dir("test_ckpt", "round_trip", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/ckpt_00000010.h5", dir);

    enum { R = 1500, C = 1000 }; /* 6 MB: two 4 MiB Fletcher32 chunks */
    float *big = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++) big[i] = (float)((i * 2654435761u) % 100003) / 7.0f - 5000.0f;
    float small[15], scalar = 3.25f;
    for (int i = 0; i < 15; i++) small[i] = (float)i - 7.5f;
    int64_t ids[4] = {INT64_MIN, -1, 0, INT64_MAX};
    uint64_t rng[2] = {UINT64_MAX, 12345678901234567ull};
    char *text = malloc(200001); /* bigger than the object-header limit: must be a chunked dataset */
    for (int i = 0; i < 200000; i++) text[i] = (char)('a' + i % 26);
    text[200000] = 0;

    ckpt_writer *w;
    check(ckpt_writer_open(path, &w));
    check(ckpt_write_f32(w, "params/encoder.block.0.layer.0.SelfAttention.q.weight", 2, (int64_t[]){R, C}, big));
    check(ckpt_write_f32(w, "params/shared.weight", 2, (int64_t[]){3, 5}, small));
    check(ckpt_write_f32(w, "opt/lr", 0, NULL, &scalar));
    check(ckpt_write_f32(w, "opt/empty", 2, (int64_t[]){0, 3}, NULL));
    check(ckpt_write_i64(w, "data/position", 1, (int64_t[]){4}, ids));
    check(ckpt_write_u64(w, "rng/state", 1, (int64_t[]){2}, rng));
    check(ckpt_write_string(w, "config", text));
    check(ckpt_write_string(w, "notes", ""));
    check(ckpt_write_attr_i64(w, "step", 10));
    check(ckpt_write_attr_i64(w, "seed", -42));
    cr_assert(!file_exists(path), "the final path must not appear before commit");
    check(ckpt_writer_commit(w));
    cr_assert_eq(count_files(dir), 1, "commit must leave exactly the checkpoint, no temp file");

    ckpt_reader *r;
    check(ckpt_open(path, &r));
    float *big2 = malloc(sizeof(float) * R * C), small2[15], scalar2 = 0;
    int64_t ids2[4], step = 0, seed = 0;
    uint64_t rng2[2];
    char *text2 = NULL, *notes = NULL;
    check(ckpt_read_f32(r, "params/encoder.block.0.layer.0.SelfAttention.q.weight", 2, (int64_t[]){R, C}, big2));
    check(ckpt_read_f32(r, "params/shared.weight", 2, (int64_t[]){3, 5}, small2));
    check(ckpt_read_f32(r, "opt/lr", 0, NULL, &scalar2));
    check(ckpt_read_f32(r, "opt/empty", 2, (int64_t[]){0, 3}, NULL));
    check(ckpt_read_i64(r, "data/position", 1, (int64_t[]){4}, ids2));
    check(ckpt_read_u64(r, "rng/state", 1, (int64_t[]){2}, rng2));
    check(ckpt_read_string(r, "config", &text2));
    check(ckpt_read_string(r, "notes", &notes));
    check(ckpt_read_attr_i64(r, "step", &step));
    check(ckpt_read_attr_i64(r, "seed", &seed));
    cr_assert(!memcmp(big, big2, sizeof(float) * R * C), "big f32 tensor differs after round trip");
    cr_assert(!memcmp(small, small2, sizeof small), "small f32 tensor differs after round trip");
    cr_assert(scalar2 == 3.25f && !memcmp(ids, ids2, sizeof ids) && !memcmp(rng, rng2, sizeof rng),
              "scalar/i64/u64 differ after round trip");
    cr_assert(!strcmp(text, text2) && notes[0] == 0, "strings differ after round trip");
    cr_assert(step == 10 && seed == -42, "attributes differ: step %lld seed %lld", (long long)step, (long long)seed);

    cr_assert(ckpt_has(r, "params/shared.weight"));
    cr_assert(!ckpt_has(r, "params"), "a group is not a dataset");
    cr_assert(!ckpt_has(r, "params/nope") && !ckpt_has(r, "nope/deeper/x"));

    listing l = {0};
    check(ckpt_list(r, "params", collect, &l));
    cr_assert_eq(l.n, 2);
    cr_assert_str_eq(l.names[0], "encoder.block.0.layer.0.SelfAttention.q.weight");
    cr_assert(l.ndim[0] == 2 && l.dim0[0] == R);
    cr_assert_str_eq(l.names[1], "shared.weight");
    listing all = {0};
    check(ckpt_list(r, "", collect, &all));
    cr_assert_eq(all.n, 8, "whole-file listing has %d datasets", all.n);
    sx_status s = ckpt_list(r, "missing", collect, &all);
    cr_assert(!s.ok);
    MSG_HAS(s, "group 'missing' not found");
    ckpt_close(r);
    free(big);
    free(big2);
    free(text);
    free(text2);
    free(notes);
}

Test(ckpt, missing_dataset_and_shape_mismatch) {
    char dir[1024], path[1200];
    tu_fresh_dir("test_ckpt", "mismatch", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/c.h5", dir);
    write_standard(path);
    ckpt_reader *r;
    check(ckpt_open(path, &r));
    float *buf = malloc(sizeof(float) * BIG_ROWS * BIG_COLS);
    const char *q = "params/encoder.block.0.layer.0.SelfAttention.q.weight";

    sx_status s = ckpt_read_f32(r, "params/encoder.block.0.layer.0.SelfAttention.k.weight", 2, (int64_t[]){2, 2}, buf);
    cr_assert(!s.ok);
    MSG_HAS(s, path);
    MSG_HAS(s, "'params/encoder.block.0.layer.0.SelfAttention.k.weight' not found");

    s = ckpt_read_f32(r, q, 2, (int64_t[]){BIG_COLS, BIG_ROWS}, buf);
    cr_assert(!s.ok);
    MSG_HAS(s, path);
    MSG_HAS(s, q);
    MSG_HAS(s, "has shape [300, 257], expected [257, 300]");

    s = ckpt_read_f32(r, q, 1, (int64_t[]){BIG_ROWS * BIG_COLS}, buf);
    cr_assert(!s.ok);
    MSG_HAS(s, "expected [77100]");

    int64_t ibuf[6];
    s = ckpt_read_i64(r, q, 2, (int64_t[]){BIG_ROWS, BIG_COLS}, ibuf);
    cr_assert(!s.ok);
    MSG_HAS(s, "has type float32, expected int64");

    int64_t v;
    s = ckpt_read_attr_i64(r, "epoch", &v);
    cr_assert(!s.ok);
    MSG_HAS(s, "attribute 'epoch' not found");

    s = ckpt_read_f32(r, "params//x", 1, (int64_t[]){1}, buf);
    cr_assert(!s.ok);
    MSG_HAS(s, "invalid dataset name");
    ckpt_close(r);
    free(buf);
}

Test(ckpt, writer_rejects_misuse) {
    char dir[1024], path[1200];
    tu_fresh_dir("test_ckpt", "misuse", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/c.h5", dir);
    float x[2] = {1, 2};
    ckpt_writer *w;
    check(ckpt_writer_open(path, &w));
    check(ckpt_write_f32(w, "a/b", 1, (int64_t[]){2}, x));
    sx_status s = ckpt_write_f32(w, "a/b", 1, (int64_t[]){2}, x);
    cr_assert(!s.ok);
    MSG_HAS(s, "'a/b' written twice");
    s = ckpt_write_f32(w, "/abs", 1, (int64_t[]){2}, x);
    MSG_HAS(s, "invalid dataset name '/abs'");
    s = ckpt_write_f32(w, "a/./c", 1, (int64_t[]){2}, x);
    MSG_HAS(s, "invalid dataset name");
    s = ckpt_write_f32(w, "neg", 1, (int64_t[]){-2}, x);
    MSG_HAS(s, "negative dimension");
    s = ckpt_write_attr_i64(w, "complete", 1);
    MSG_HAS(s, "reserved");
    ckpt_writer_abort(w);
    cr_assert_eq(count_files(dir), 0);

    s = ckpt_writer_open("/nonexistent-dir-for-switchc/c.h5", &w);
    cr_assert(!s.ok && w == NULL);
    MSG_HAS(s, "/nonexistent-dir-for-switchc/c.h5");
    MSG_HAS(s, "cannot create");
}

Test(ckpt, abort_leaves_nothing) {
    char dir[1024], path[1200];
    tu_fresh_dir("test_ckpt", "abort", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/c.h5", dir);
    float *big = big_data();
    ckpt_writer *w;
    check(ckpt_writer_open(path, &w));
    check(ckpt_write_f32(w, "w", 2, (int64_t[]){BIG_ROWS, BIG_COLS}, big));
    cr_assert_eq(count_files(dir), 1, "the temp file exists while writing");
    ckpt_writer_abort(w);
    cr_assert(!file_exists(path));
    cr_assert_eq(count_files(dir), 0, "abort must remove the temp file");
    free(big);
}

Test(ckpt, wrong_format_version_incomplete) {
    char dir[1024], path[1200];
    tu_fresh_dir("test_ckpt", "format", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/c.h5", dir);
    ckpt_reader *r;

    write_raw(path, "keras-model", 1, true);
    sx_status s = ckpt_open(path, &r);
    cr_assert(!s.ok && r == NULL);
    MSG_HAS(s, path);
    MSG_HAS(s, "wrong format 'keras-model', expected 'switchc-checkpoint'");

    write_raw(path, "switchc-checkpoint", 2, true);
    s = ckpt_open(path, &r);
    cr_assert(!s.ok);
    MSG_HAS(s, "format_version 2, this build reads format_version 1");

    write_raw(path, "switchc-checkpoint", 1, false);
    s = ckpt_open(path, &r);
    cr_assert(!s.ok);
    MSG_HAS(s, "incomplete checkpoint");

    /* An HDF5 file without our attributes (e.g. a data file passed by mistake). */
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    s = ckpt_open(path, &r);
    cr_assert(!s.ok);
    MSG_HAS(s, "not a switchc checkpoint");
}

Test(ckpt, not_hdf5_and_missing_file) {
    char dir[1024], path[1200];
    tu_fresh_dir("test_ckpt", "nothdf5", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/c.h5", dir);
    ckpt_reader *r;
    const char *json = "{\"this\": \"is json\"}\n";
    tu_spill(path, (const unsigned char *)json, strlen(json));
    sx_status s = ckpt_open(path, &r);
    cr_assert(!s.ok);
    MSG_HAS(s, path);
    MSG_HAS(s, "not an HDF5 file");

    tu_spill(path, (const unsigned char *)"", 0);
    s = ckpt_open(path, &r);
    MSG_HAS(s, "not an HDF5 file");

    snprintf(path, sizeof path, "%s/absent.h5", dir);
    s = ckpt_open(path, &r);
    cr_assert(!s.ok);
    MSG_HAS(s, "absent.h5");
    MSG_HAS(s, "No such file");

    s = ckpt_open(dir, &r);
    MSG_HAS(s, "not a regular file");
}

Test(ckpt, truncated_files) {
    char dir[1024], path[1200], cut[1200];
    tu_fresh_dir("test_ckpt", "truncated", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/c.h5", dir);
    snprintf(cut, sizeof cut, "%s/cut.h5", dir);
    write_standard(path);
    size_t n;
    unsigned char *b = (unsigned char *)tu_slurp(path, &n);
    size_t lens[] = {0, 7, 64, 200, 512, 2048, n / 4, n / 2, 3 * n / 4, n - 4096, n - 100, n - 1};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        tu_spill(cut, b, lens[i]);
        bool same;
        sx_status s = read_standard(cut, &same);
        cr_assert(!s.ok, "a file truncated to %zu of %zu bytes was accepted", lens[i], n);
        MSG_HAS(s, cut);
        cr_assert(strstr(s.msg, "truncated") || strstr(s.msg, "not an HDF5 file"),
                  "truncated to %zu: unclear message: %s", lens[i], s.msg);
    }
    free(b);
}

static const void *find_bytes(const unsigned char *hay, size_t n, const void *needle, size_t m) {
    for (size_t i = 0; i + m <= n; i++)
        if (!memcmp(hay + i, needle, m)) return hay + i;
    return NULL;
}

Test(ckpt, flipped_data_byte_names_dataset) {
    char dir[1024], path[1200], bad[1200];
    tu_fresh_dir("test_ckpt", "flip", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/c.h5", dir);
    snprintf(bad, sizeof bad, "%s/bad.h5", dir);
    write_standard(path);
    size_t n;
    unsigned char *b = (unsigned char *)tu_slurp(path, &n);
    float *big = big_data();
    /* Element 40000 lies in the middle of the tensor's raw data (the f32 values are little-endian in the file). */
    const unsigned char *at = find_bytes(b, n, big + 40000, 16);
    cr_assert(at, "could not locate the raw data in the file");
    b[at - b + 2] ^= 0x10;
    tu_spill(bad, b, n);

    ckpt_reader *r;
    check(ckpt_open(bad, &r)); /* metadata is intact: only the data read can notice */
    float *got = malloc(sizeof(float) * BIG_ROWS * BIG_COLS);
    sx_status s = ckpt_read_f32(r, "params/encoder.block.0.layer.0.SelfAttention.q.weight", 2,
                                (int64_t[]){BIG_ROWS, BIG_COLS}, got);
    cr_assert(!s.ok, "a flipped data byte was not detected");
    MSG_HAS(s, bad);
    MSG_HAS(s, "'params/encoder.block.0.layer.0.SelfAttention.q.weight' is corrupt (checksum mismatch)");
    /* The other datasets are still readable. */
    int64_t ids[6];
    check(ckpt_read_i64(r, "data/position", 1, (int64_t[]){6}, ids));
    ckpt_close(r);

    /* The small i64 dataset is compact (stored in its object header): a flip there fails the header checksum. */
    unsigned char *b2 = (unsigned char *)tu_slurp(path, &n);
    int64_t pat[2] = {INT64_MAX, INT64_MIN};
    const unsigned char *at2 = find_bytes(b2, n, pat, 16);
    cr_assert(at2, "could not locate the compact data in the file");
    b2[at2 - b2 + 3] ^= 0x01;
    tu_spill(bad, b2, n);
    bool same;
    s = read_standard(bad, &same);
    cr_assert(!s.ok, "a flipped byte in compact data was not detected");
    MSG_HAS(s, bad);
    free(b);
    free(b2);
    free(big);
    free(got);
}

/* Every byte position class: a flip anywhere either raises an error or leaves the data exactly right (bytes HDF5
 * never reads, such as free space), and never crashes. */
Test(ckpt, flip_sweep_never_silent) {
    char dir[1024], path[1200], bad[1200];
    tu_fresh_dir("test_ckpt", "sweep", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/c.h5", dir);
    snprintf(bad, sizeof bad, "%s/bad.h5", dir);
    write_standard(path);
    size_t n;
    unsigned char *b = (unsigned char *)tu_slurp(path, &n);
    int detected = 0, harmless = 0, tried = 0;
    /* Every byte of the first 4 KiB (superblock, root header, heaps) then a stride through the rest. */
    for (size_t pos = 0; pos < n; pos += pos < 4096 ? 1 : 997) {
        b[pos] ^= 0x40;
        tu_spill(bad, b, n);
        b[pos] ^= 0x40;
        bool same;
        sx_status s = read_standard(bad, &same);
        tried++;
        /* Our error paths close every HDF5 id they opened, also when the library fails half-way. */
        cr_assert_eq(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0, "byte %zu: HDF5 ids left open", pos);
        if (!s.ok)
            detected++;
        else {
            cr_assert(same, "flipping byte %zu of %zu silently changed the data", pos, n);
            harmless++;
        }
    }
    cr_log_info("flip sweep over %zu bytes: %d flips, %d detected, %d harmless (unused bytes)", n, tried, detected,
                harmless);
    free(b);
}

static void write_step(const char *dir, const char *prefix, long step) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s%ld.h5", dir, prefix, step);
    ckpt_writer *w;
    check(ckpt_writer_open(p, &w));
    check(ckpt_write_attr_i64(w, "step", step));
    check(ckpt_writer_commit(w));
}

Test(ckpt, rotate_keeps_newest_by_step) {
    char dir[1024], p[1200];
    tu_fresh_dir("test_ckpt", "rotate", dir, sizeof dir);
    long steps[] = {900, 1000, 80, 100000, 5000};
    for (int i = 0; i < 5; i++) write_step(dir, "ckpt_", steps[i]);
    snprintf(p, sizeof p, "%s/ckpt_200000.h5.tmp.123", dir);
    tu_spill(p, (const unsigned char *)"x", 1);
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    tu_spill(p, (const unsigned char *)"x", 1);
    snprintf(p, sizeof p, "%s/ckpt_final.h5", dir);
    tu_spill(p, (const unsigned char *)"x", 1);

    check(ckpt_rotate(dir, "ckpt_", 2));
    const char *keep[] = {"ckpt_100000.h5", "ckpt_5000.h5", "ckpt_200000.h5.tmp.123", "notes.txt", "ckpt_final.h5"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, keep[i]);
        cr_assert(file_exists(p), "%s should have been kept", keep[i]);
    }
    cr_assert_eq(count_files(dir), 5, "rotation must delete exactly the 3 oldest checkpoints");
    sx_status s = ckpt_rotate(dir, "ckpt_", 0);
    cr_assert(!s.ok);
    MSG_HAS(s, "keep >= 1");
}

Test(ckpt, find_latest_skips_temp_and_incomplete) {
    char dir[1024], p[1200], got[1200];
    tu_fresh_dir("test_ckpt", "latest", dir, sizeof dir);
    bool found = true;
    check(ckpt_find_latest(dir, "ckpt_", got, sizeof got, &found));
    cr_assert(!found && got[0] == 0, "an empty directory has no checkpoint");
    snprintf(p, sizeof p, "%s/does-not-exist", dir);
    check(ckpt_find_latest(p, "ckpt_", got, sizeof got, &found));
    cr_assert(!found);

    write_step(dir, "ckpt_", 100);
    write_step(dir, "ckpt_", 200);
    snprintf(p, sizeof p, "%s/ckpt_300.h5", dir);
    write_raw(p, "switchc-checkpoint", 1, false); /* incomplete */
    snprintf(p, sizeof p, "%s/ckpt_400.h5.tmp.999", dir);
    write_raw(p, "switchc-checkpoint", 1, true); /* a leftover temp file, even a valid one, is not a checkpoint */
    check(ckpt_find_latest(dir, "ckpt_", got, sizeof got, &found));
    cr_assert(found);
    snprintf(p, sizeof p, "%s/ckpt_200.h5", dir);
    cr_assert_str_eq(got, p);

    char tiny[8];
    sx_status s = ckpt_find_latest(dir, "ckpt_", tiny, sizeof tiny, &found);
    cr_assert(!s.ok && !found);
    MSG_HAS(s, "buffer");
}

/* A writer killed at a random moment must leave the final path absent or holding a complete previous checkpoint. */
#define KILL_N (2 * 1024 * 1024) /* 8 MB of f32 per checkpoint: long enough to be killed mid-write */
static void kill_child(const char *path) {
    float *v = malloc(sizeof(float) * KILL_N);
    if (!v) _exit(2);
    for (int64_t iter = 1;; iter++) {
        for (int i = 0; i < KILL_N; i++) v[i] = (float)iter;
        ckpt_writer *w;
        if (!ckpt_writer_open(path, &w).ok) _exit(3);
        if (!ckpt_write_f32(w, "params/w", 1, (int64_t[]){KILL_N}, v).ok) _exit(4);
        if (!ckpt_write_attr_i64(w, "iter", iter).ok) _exit(5);
        if (!ckpt_writer_commit(w).ok) _exit(6);
    }
}

Test(ckpt, sigkill_during_write_is_atomic, .timeout = 300) {
    char dir[1024], path[1200];
    tu_fresh_dir("test_ckpt", "sigkill", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/ckpt_1.h5", dir);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    cr_log_info("sigkill test seed %u", seed);
    float *v = malloc(sizeof(float) * KILL_N);
    int valid = 0, absent = 0;
    const int rounds = 8;
    for (int round = 0; round < rounds; round++) {
        fflush(NULL);
        pid_t pid = fork();
        cr_assert(pid >= 0, "fork failed: %s", strerror(errno));
        if (pid == 0) kill_child(path);
        /* Random delays up to 0.6 s; the last round waits long enough for at least one commit. */
        long us = round == rounds - 1 ? 1500000 : 1000 + rand() % 600000;
        usleep((useconds_t)us);
        kill(pid, SIGKILL);
        int st;
        cr_assert(waitpid(pid, &st, 0) == pid);
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the writer exited on its own (status %d): it failed", st);
        if (!file_exists(path)) {
            absent++;
            continue;
        }
        ckpt_reader *r;
        check(ckpt_open(path, &r));
        int64_t iter = 0;
        check(ckpt_read_attr_i64(r, "iter", &iter));
        check(ckpt_read_f32(r, "params/w", 1, (int64_t[]){KILL_N}, v));
        ckpt_close(r);
        float lo = v[0], hi = v[0];
        for (int i = 1; i < KILL_N; i++) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
        }
        cr_assert(lo == (float)iter && hi == (float)iter, "checkpoint mixes iterations: values %g..%g, iter %lld", lo,
                  hi, (long long)iter);
        valid++;
    }
    /* Each temp leftover is a round killed mid-write (the rest died between commits). */
    cr_log_info("sigkill: %d rounds, final path valid %d, absent %d, killed mid-write %d", rounds, valid, absent,
                count_files(dir) - 1);
    cr_assert(valid >= 1, "no round ever saw a committed checkpoint");
    char got[1200];
    bool found;
    check(ckpt_find_latest(dir, "ckpt_", got, sizeof got, &found));
    cr_assert(found && !strcmp(got, path), "find_latest must pick the committed file over temp leftovers");
    free(v);
}
