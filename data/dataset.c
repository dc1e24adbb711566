/* HDF5 token datasets: an appending writer over extendible chunked datasets (flushed every 1M tokens) and a reader
 * that validates the layout once and then reads one example by hyperslab; and the memoryless epoch permutation. */
#include "data/dataset.h"

#include "autograd/sx_file.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK 65536
/* Examples one dataset may hold (its offsets take 8 bytes each in memory). */
#define DATA_MAX_EXAMPLES ((int64_t)1 << 32)
#define FLUSH_TOKENS (1 << 20)

typedef struct {
    hid_t tok, off;       /* extendible datasets */
    int32_t *buf;         /* tokens not yet written */
    int64_t nbuf, cap;
    int64_t written, examples;
    int64_t *offbuf;      /* offsets not yet written */
    int64_t noff, offcap, offs_written;
} stream;

struct data_writer {
    hid_t file;
    char path[1024], tmp[1100];
    bool has_targets;
    stream s[2];
};

static hid_t make_ext(hid_t grp, const char *name, hid_t type) {
    hsize_t dims[1] = {0}, maxd[1] = {H5S_UNLIMITED}, ch[1] = {CHUNK};
    hid_t sp = H5Screate_simple(1, dims, maxd), pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, 1, ch);
    hid_t d = H5Dcreate2(grp, name, type, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    H5Pclose(pl);
    H5Sclose(sp);
    return d;
}

static herr_t append_raw(hid_t d, hid_t memtype, const void *data, int64_t at, int64_t n) {
    if (n == 0) return 0;
    hsize_t newsz[1] = {(hsize_t)(at + n)}, start[1] = {(hsize_t)at}, cnt[1] = {(hsize_t)n};
    if (H5Dset_extent(d, newsz) < 0) return -1;
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(1, cnt, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
    herr_t r = H5Dwrite(d, memtype, ms, fs, H5P_DEFAULT, data);
    H5Sclose(ms);
    H5Sclose(fs);
    return r;
}

static sx_status flush(data_writer *w, stream *s) {
    if (append_raw(s->tok, H5T_NATIVE_INT32, s->buf, s->written, s->nbuf) < 0 ||
        append_raw(s->off, H5T_NATIVE_INT64, s->offbuf, s->offs_written, s->noff) < 0)
        return sx_errorf("%s: writing tokens failed: %s", w->tmp, errno ? strerror(errno) : "HDF5 write error");
    s->written += s->nbuf;
    s->offs_written += s->noff;
    s->nbuf = s->noff = 0;
    return sx_ok();
}

static void attr_i64(hid_t obj, const char *name, int64_t v) {
    hid_t sp = H5Screate(H5S_SCALAR), a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Sclose(sp);
}

static void attr_str(hid_t obj, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v));
    hid_t sp = H5Screate(H5S_SCALAR), a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, v);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

sx_status data_writer_open(const char *path, int32_t vocab_size, uint32_t crc, bool has_targets, data_writer **out) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (strlen(path) + 24 > sizeof((data_writer *)0)->path)
        return sx_errorf("%.64s...: the dataset path is longer than %zu characters", path,
                         sizeof((data_writer *)0)->path - 24);
    data_writer *w = calloc(1, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%d", path, (int)getpid());
    w->has_targets = has_targets;
    errno = 0;
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        sx_status s = sx_errorf("%s: cannot create: %s", w->tmp, errno ? strerror(errno) : "HDF5 error");
        free(w);
        return s;
    }
    attr_str(w->file, "format", DATA_FORMAT_NAME);
    attr_i64(w->file, "format_version", DATA_FORMAT_VERSION);
    attr_i64(w->file, "vocab_size", vocab_size);
    attr_i64(w->file, "tokenizer_crc32", crc);
    for (int k = 0; k < (has_targets ? 2 : 1); k++) {
        hid_t g = H5Gcreate2(w->file, k ? "targets" : "inputs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        w->s[k].tok = make_ext(g, "tokens", H5T_STD_I32LE);
        w->s[k].off = make_ext(g, "offsets", H5T_STD_I64LE);
        H5Gclose(g);
        w->s[k].cap = FLUSH_TOKENS;
        w->s[k].buf = malloc(sizeof(int32_t) * (size_t)w->s[k].cap);
        w->s[k].offcap = 4096;
        w->s[k].offbuf = malloc(sizeof(int64_t) * (size_t)w->s[k].offcap);
        w->s[k].offbuf[w->s[k].noff++] = 0; /* offsets[0] */
    }
    *out = w;
    return sx_ok();
}

static sx_status push(data_writer *w, stream *s, const int32_t *ids, int64_t n) {
    if (s->nbuf + n > s->cap) {
        SX_TRY(flush(w, s));
        if (n > s->cap) {
            s->cap = n;
            s->buf = realloc(s->buf, sizeof(int32_t) * (size_t)s->cap);
        }
    }
    memcpy(s->buf + s->nbuf, ids, sizeof(int32_t) * (size_t)n);
    s->nbuf += n;
    if (s->noff == s->offcap) {
        s->offcap *= 2;
        s->offbuf = realloc(s->offbuf, sizeof(int64_t) * (size_t)s->offcap);
    }
    s->offbuf[s->noff++] = s->written + s->nbuf;
    s->examples++;
    return sx_ok();
}

sx_status data_writer_append(data_writer *w, const int32_t *in, int64_t n_in, const int32_t *tgt, int64_t n_tgt) {
    SX_TRY(push(w, &w->s[0], in, n_in));
    if (w->has_targets) SX_TRY(push(w, &w->s[1], tgt, n_tgt));
    return sx_ok();
}

static void free_streams(data_writer *w) {
    for (int k = 0; k < 2; k++) {
        if (w->s[k].tok > 0) H5Dclose(w->s[k].tok);
        if (w->s[k].off > 0) H5Dclose(w->s[k].off);
        free(w->s[k].buf);
        free(w->s[k].offbuf);
    }
}

sx_status data_writer_close(data_writer *w) {
    sx_status s = sx_ok();
    for (int k = 0; k < (w->has_targets ? 2 : 1) && s.ok; k++) s = flush(w, &w->s[k]);
    if (s.ok) attr_i64(w->file, "n_examples", w->s[0].examples);
    free_streams(w);
    errno = 0;
    if (H5Fclose(w->file) < 0 && s.ok)
        s = sx_errorf("%s: closing failed: %s", w->tmp, errno ? strerror(errno) : "HDF5 error");
    if (s.ok && rename(w->tmp, w->path) != 0) s = sx_errorf("%s: cannot rename into place: %s", w->path, strerror(errno));
    if (!s.ok) remove(w->tmp);
    free(w);
    return s;
}

void data_writer_abort(data_writer *w) {
    if (!w) return;
    free_streams(w);
    H5Fclose(w->file);
    remove(w->tmp);
    free(w);
}

/* ---- reading --------------------------------------------------------------------------------------------------- */

struct data_dataset {
    hid_t file, tok[2];
    int64_t *off[2];
    int64_t n, ntok[2];
    bool has_targets;
    int32_t vocab;
    uint32_t crc;
    char path[1024];
};

static sx_status read_attr_i64(hid_t f, const char *name, int64_t *v, const char *path) {
    if (H5Aexists(f, name) <= 0) return sx_errorf("%s: missing attribute '%s' (not a switchc token dataset?)", path, name);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    herr_t r = H5Aread(a, H5T_NATIVE_INT64, v);
    H5Aclose(a);
    return r < 0 ? sx_errorf("%s: attribute '%s' is not an integer", path, name) : sx_ok();
}

void data_dataset_close(data_dataset *d) {
    if (!d) return;
    for (int k = 0; k < 2; k++) {
        if (d->tok[k] > 0) H5Dclose(d->tok[k]);
        free(d->off[k]);
    }
    if (d->file > 0) H5Fclose(d->file);
    free(d);
}

sx_status data_dataset_open(const char *path, data_dataset **out) { return data_dataset_open_cached(path, 0, out); }

sx_status data_dataset_open_cached(const char *path, int64_t cache_bytes, data_dataset **out) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    SX_TRY(sx_file_check_regular(path, "token dataset"));
    if (access(path, R_OK) != 0) return sx_errorf("%s: cannot open: %s", path, strerror(errno));
    if (H5Fis_hdf5(path) <= 0) return sx_errorf("%s: not an HDF5 file (make token datasets with switchc prepare)", path);
    data_dataset *d = calloc(1, sizeof *d);
    snprintf(d->path, sizeof d->path, "%s", path);
    sx_status s = sx_ok();
    d->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (d->file < 0) {
        free(d);
        return sx_errorf("%s: cannot open as HDF5 (damaged or truncated?)", path);
    }
    char fmt[64] = "";
    if (H5Aexists(d->file, "format") > 0) {
        hid_t a = H5Aopen(d->file, "format", H5P_DEFAULT), t = H5Aget_type(a);
        size_t sz = H5Tget_size(t);
        if (H5Tget_class(t) == H5T_STRING && sz < sizeof fmt) H5Aread(a, t, fmt);
        H5Tclose(t);
        H5Aclose(a);
    }
    int64_t v = 0, vocab = 0, crc = 0;
    if (strcmp(fmt, DATA_FORMAT_NAME)) s = sx_errorf("%s: format '%s', expected '%s'", path, fmt, DATA_FORMAT_NAME);
    if (s.ok) s = read_attr_i64(d->file, "format_version", &v, path);
    if (s.ok && v != DATA_FORMAT_VERSION) s = sx_errorf("%s: format version %lld, this switchc reads version %d", path, (long long)v, DATA_FORMAT_VERSION);
    if (s.ok) s = read_attr_i64(d->file, "vocab_size", &vocab, path);
    if (s.ok) s = read_attr_i64(d->file, "tokenizer_crc32", &crc, path);
    d->vocab = (int32_t)vocab;
    d->crc = (uint32_t)crc;
    d->has_targets = H5Lexists(d->file, "targets", H5P_DEFAULT) > 0;
    for (int k = 0; s.ok && k < (d->has_targets ? 2 : 1); k++) {
        const char *g = k ? "targets" : "inputs";
        char tn[64], on[64];
        snprintf(tn, sizeof tn, "%s/tokens", g);
        snprintf(on, sizeof on, "%s/offsets", g);
        if (H5Lexists(d->file, g, H5P_DEFAULT) <= 0 || H5Lexists(d->file, tn, H5P_DEFAULT) <= 0 || H5Lexists(d->file, on, H5P_DEFAULT) <= 0) {
            s = sx_errorf("%s: missing dataset %s or %s", path, tn, on);
            break;
        }
        hid_t od = H5Dopen2(d->file, on, H5P_DEFAULT);
        hid_t osp = H5Dget_space(od);
        hsize_t no = 0;
        if (osp < 0 || H5Sget_simple_extent_ndims(osp) != 1) {
            if (osp >= 0) H5Sclose(osp);
            H5Dclose(od);
            s = sx_errorf("%s: %s is not a one-dimensional dataset (damaged?)", path, on);
            break;
        }
        H5Sget_simple_extent_dims(osp, &no, NULL);
        H5Sclose(osp);
        /* the extent comes from the file: a damaged or crafted one may claim any size, so it is bounded before the
         * offsets are read into memory (8 bytes per example) */
        if (no > DATA_MAX_EXAMPLES + 1) {
            H5Dclose(od);
            s = sx_errorf("%s: %s claims %llu examples (more than %lld): a damaged file?", path, on,
                          (unsigned long long)no - 1, (long long)DATA_MAX_EXAMPLES);
            break;
        }
        d->off[k] = malloc(sizeof(int64_t) * (size_t)(no + 1));
        if (!d->off[k]) {
            H5Dclose(od);
            s = sx_errorf("%s: out of memory for the offsets of %llu examples", path, (unsigned long long)no);
            break;
        }
        herr_t r = no ? H5Dread(od, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->off[k]) : -1;
        H5Dclose(od);
        if (r < 0) {
            s = sx_errorf("%s: cannot read %s (damaged?)", path, on);
            break;
        }
        hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
        if (cache_bytes > 0) H5Pset_chunk_cache(dapl, H5D_CHUNK_CACHE_NSLOTS_DEFAULT, (size_t)cache_bytes, H5D_CHUNK_CACHE_W0_DEFAULT);
        d->tok[k] = H5Dopen2(d->file, tn, dapl);
        H5Pclose(dapl);
        hid_t tsp = H5Dget_space(d->tok[k]);
        hsize_t nt = 0;
        H5Sget_simple_extent_dims(tsp, &nt, NULL);
        H5Sclose(tsp);
        d->ntok[k] = (int64_t)nt;
        int64_t n = (int64_t)no - 1;
        if (k == 0) d->n = n;
        else if (n != d->n) s = sx_errorf("%s: %lld input examples but %lld target examples", path, (long long)d->n, (long long)n);
        if (s.ok && d->off[k][0] != 0) s = sx_errorf("%s: %s[0] = %lld, must be 0", path, on, (long long)d->off[k][0]);
        for (int64_t i = 0; s.ok && i < n; i++)
            if (d->off[k][i + 1] < d->off[k][i]) s = sx_errorf("%s: %s decreases at example %lld", path, on, (long long)i);
        if (s.ok && d->off[k][n] != d->ntok[k])
            s = sx_errorf("%s: %s ends at %lld but %s holds %lld tokens", path, on, (long long)d->off[k][n], tn, (long long)d->ntok[k]);
    }
    if (!s.ok) {
        data_dataset_close(d);
        return s;
    }
    *out = d;
    return sx_ok();
}

int64_t data_dataset_count(const data_dataset *d) { return d->n; }
bool data_dataset_has_targets(const data_dataset *d) { return d->has_targets; }
int32_t data_dataset_vocab_size(const data_dataset *d) { return d->vocab; }
uint32_t data_dataset_tokenizer_crc(const data_dataset *d) { return d->crc; }

int64_t data_dataset_length(const data_dataset *d, int64_t i, int which) {
    if (which < 0 || which > 1 || (which == 1 && !d->has_targets) || i < 0 || i >= d->n) return -1;
    return d->off[which][i + 1] - d->off[which][i];
}

sx_status data_dataset_get(data_dataset *d, int64_t i, int which, int32_t *buf, int64_t cap, int64_t *n) {
    if (which < 0 || which > 1 || (which == 1 && !d->has_targets)) return sx_errorf("%s: no %s in this dataset", d->path, which ? "targets" : "inputs");
    if (i < 0 || i >= d->n) return sx_errorf("%s: example %lld out of range [0, %lld)", d->path, (long long)i, (long long)d->n);
    int64_t a = d->off[which][i], len = d->off[which][i + 1] - a, m = len < cap ? len : cap;
    *n = len;
    if (m <= 0) return sx_ok();
    hsize_t start[1] = {(hsize_t)a}, cnt[1] = {(hsize_t)m};
    hid_t fs = H5Dget_space(d->tok[which]), ms = H5Screate_simple(1, cnt, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
    herr_t r = H5Dread(d->tok[which], H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    if (r < 0) return sx_errorf("%s: reading example %lld failed (damaged?)", d->path, (long long)i);
    for (int64_t k = 0; k < m; k++)
        if (buf[k] < 0 || buf[k] >= d->vocab)
            return sx_errorf("%s: example %lld has token id %d outside the vocabulary [0, %d)", d->path, (long long)i, buf[k], d->vocab);
    return sx_ok();
}

/* ---- the epoch permutation ------------------------------------------------------------------------------------ */

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

int64_t data_permute(int64_t i, int64_t n, uint64_t seed, uint64_t epoch) {
    if (n <= 1) return 0;
    int bits = 2;
    while (((int64_t)1 << bits) < n) bits++;
    bits += bits & 1; /* even: two halves */
    int half = bits / 2;
    uint64_t mask = ((uint64_t)1 << half) - 1, key = mix(seed * 0x9E3779B97F4A7C15ull + epoch + 1);
    uint64_t x = (uint64_t)i;
    do { /* cycle walking: a bijection on [0, 2^bits) restricted to [0, n) */
        uint64_t l = x >> half, r = x & mask;
        for (int round = 0; round < 6; round++) {
            uint64_t f = mix(r ^ key ^ ((uint64_t)round << 56)) & mask;
            uint64_t t = l ^ f;
            l = r;
            r = t;
        }
        x = l << half | r;
    } while (x >= (uint64_t)n);
    return (int64_t)x;
}
