/* TensorBoard event files without TensorFlow or protobuf: TFRecord framing (length, masked CRC-32C of the length,
 * data, masked CRC-32C of the data) around hand-encoded Event protos (tensorboard/compat/proto/event.proto and
 * summary.proto: Event.wall_time=1, step=2, file_version=3, summary=5; Summary.value=1; Value.tag=1, simple_value=2). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/metrics.h"

static uint32_t crc_table[256];

static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_fill(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1; /* reflected Castagnoli poly */
        crc_table[i] = c;
    }
}

uint32_t train_crc32c(uint32_t crc, const void *data, size_t n) {
    pthread_once(&crc_once, crc_table_fill);
    const unsigned char *p = data;
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return ~c;
}

uint32_t train_crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

/* ---- a growable byte buffer and the few protobuf encodings we need ------------------------------------------------ */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} buf_t;

static void put(buf_t *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = realloc(b->p, cap);
        SX_ASSERT(b->p, "out of memory");
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_byte(buf_t *b, unsigned char c) { put(b, &c, 1); }

static void put_varint(buf_t *b, uint64_t v) {
    while (v >= 0x80) {
        put_byte(b, (unsigned char)(v | 0x80));
        v >>= 7;
    }
    put_byte(b, (unsigned char)v);
}

static void put_le(buf_t *b, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) put_byte(b, (unsigned char)(v >> (8 * i)));
}

/* Field keys: (number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32). */
static void put_double_field(buf_t *b, int field, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    put_varint(b, (uint64_t)field << 3 | 1);
    put_le(b, bits, 8);
}

static void put_float_field(buf_t *b, int field, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    put_varint(b, (uint64_t)field << 3 | 5);
    put_le(b, bits, 4);
}

static void put_bytes_field(buf_t *b, int field, const void *data, size_t n) {
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, n);
    put(b, data, n);
}

/* ---- writer ------------------------------------------------------------------------------------------------------- */

struct train_tb_writer {
    FILE *f;
    char *path;
    buf_t event, summary, value;
};

static sx_status write_record(train_tb_writer *w, const buf_t *data) {
    unsigned char head[12];
    uint64_t len = data->n;
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)(len >> (8 * i));
    uint32_t hc = train_crc32c_mask(train_crc32c(0, head, 8));
    for (int i = 0; i < 4; i++) head[8 + i] = (unsigned char)(hc >> (8 * i));
    uint32_t dc = train_crc32c_mask(train_crc32c(0, data->p, data->n));
    unsigned char tail[4];
    for (int i = 0; i < 4; i++) tail[i] = (unsigned char)(dc >> (8 * i));
    if (fwrite(head, 1, 12, w->f) != 12 || fwrite(data->p, 1, data->n, w->f) != data->n || fwrite(tail, 1, 4, w->f) != 4 ||
        fflush(w->f) != 0)
        return sx_errorf("%s: writing a TensorBoard record failed: %s", w->path, strerror(errno));
    return sx_ok();
}

sx_status train_tb_open(const char *path, double wall_time, train_tb_writer **out) {
    *out = NULL;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) return sx_errorf("%s: cannot create TensorBoard event file: %s", path, strerror(errno));
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        return sx_errorf("%s: fdopen failed: %s", path, strerror(errno));
    }
    train_tb_writer *w = calloc(1, sizeof *w);
    SX_ASSERT(w, "out of memory");
    w->f = f;
    size_t n = strlen(path) + 1;
    w->path = malloc(n);
    SX_ASSERT(w->path, "out of memory");
    memcpy(w->path, path, n);
    static const char version[] = "brain.Event:2";
    put_double_field(&w->event, 1, wall_time);
    put_bytes_field(&w->event, 3, version, sizeof version - 1);
    sx_status s = write_record(w, &w->event);
    if (!s.ok) {
        train_tb_close(w);
        return s;
    }
    *out = w;
    return sx_ok();
}

sx_status train_tb_write_scalars(train_tb_writer *w, int64_t step, double wall_time, int n, const char *const *tags,
                                 const double *values) {
    if (!w) return sx_errorf("TensorBoard: write on a NULL writer");
    if (n < 0 || (n > 0 && (!tags || !values))) return sx_errorf("%s: bad scalar list (n = %d)", w->path, n);
    w->summary.n = 0;
    for (int i = 0; i < n; i++) {
        if (!tags[i] || !tags[i][0]) return sx_errorf("%s: scalar %d has an empty tag", w->path, i);
        w->value.n = 0;
        put_bytes_field(&w->value, 1, tags[i], strlen(tags[i]));
        put_float_field(&w->value, 2, (float)values[i]);
        put_bytes_field(&w->summary, 1, w->value.p, w->value.n);
    }
    w->event.n = 0;
    put_double_field(&w->event, 1, wall_time);
    put_varint(&w->event, 2 << 3 | 0);
    put_varint(&w->event, (uint64_t)step); /* int64: negative steps take the 10-byte two's-complement form */
    put_varint(&w->event, 5 << 3 | 2);
    put_varint(&w->event, w->summary.n);
    if (w->summary.n) put(&w->event, w->summary.p, w->summary.n);
    return write_record(w, &w->event);
}

sx_status train_tb_flush(train_tb_writer *w) {
    if (!w) return sx_errorf("TensorBoard: flush on a NULL writer");
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) return sx_errorf("%s: flush failed: %s", w->path, strerror(errno));
    return sx_ok();
}

void train_tb_close(train_tb_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    free(w->event.p);
    free(w->summary.p);
    free(w->value.p);
    free(w->path);
    free(w);
}
