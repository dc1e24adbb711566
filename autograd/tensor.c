/* Tensors, dtypes, bf16 conversion and arenas: the storage layer under the op table (the RNG: autograd/rng.c).
 * Arenas and tensors may live on a device (ag_arena_init_device); the memory calls then go to the CUDA backend's
 * host functions (autograd/ag_cuda.h), which abort with a clear message in a build without CUDA. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ag.h"
#include "autograd/ag_cuda.h"
#include "autograd/ag_internal.h"

size_t ag_dtype_size(ag_dtype dt) {
    switch (dt) {
    case AG_F32: return 4;
    case AG_F64: return 8;
    case AG_BF16: return 2;
    case AG_I32: return 4;
    case AG_I64: return 8;
    default: SX_FATAL("unknown dtype %d", (int)dt);
    }
}

const char *ag_dtype_name(ag_dtype dt) {
    static const char *names[AG_DTYPE_COUNT] = {"f32", "f64", "bf16", "i32", "i64"};
    return (dt >= 0 && dt < AG_DTYPE_COUNT) ? names[dt] : "?";
}

bool ag_dtype_is_float(ag_dtype dt) { return dt == AG_F32 || dt == AG_F64; }

/* Round to nearest even on the 16 dropped bits; NaN keeps a quiet-NaN payload so it never rounds to inf. */
uint16_t ag_bf16_from_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (uint16_t)((u >> 16) | 0x0040u);
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + rounding) >> 16);
}

float ag_f32_from_bf16(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void ag_bf16_from_f32_n(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = ag_bf16_from_f32(src[i]);
}

void ag_f32_from_bf16_n(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = ag_f32_from_bf16(src[i]);
}

const char *ag_shape_str(const ag_tensor *t, char *buf, size_t cap) {
    if (!t) {
        snprintf(buf, cap, "(null)");
        return buf;
    }
    size_t o = (size_t)snprintf(buf, cap, "%s[", ag_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && o < cap; i++) o += (size_t)snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
    return buf;
}

/* ---- arenas ---------------------------------------------------------------------------------------------------- */

struct ag_arena_block {
    ag_arena_block *prev;
    size_t size, used;
    char *base;
};

#define AG_ALIGN 64

static ag_arena_block *block_new(ag_device dev, const char *name, size_t size) {
    ag_arena_block *b = malloc(sizeof *b);
    SX_ASSERT(b, "out of host memory allocating an arena block header");
    b->base = NULL;
    if (size) {
        if (dev == AG_DEV_CPU) {
            if (posix_memalign((void **)&b->base, AG_ALIGN, size) != 0) SX_FATAL("out of host memory: arena block of %zu bytes", size);
        } else {
            b->base = ag_cuda_malloc(size, name); /* 256-byte aligned */
        }
    }
    b->size = size;
    b->used = 0;
    b->prev = NULL;
    return b;
}

static void block_free(ag_device dev, ag_arena_block *b) {
    if (dev == AG_DEV_CPU)
        free(b->base);
    else if (b->base)
        ag_cuda_free(b->base);
    free(b);
}

void ag_arena_init(ag_arena *a, const char *name, size_t initial_bytes) {
    memset(a, 0, sizeof *a);
    a->name = name;
    a->device = AG_DEV_CPU;
    a->head = block_new(AG_DEV_CPU, name, initial_bytes);
    a->capacity = initial_bytes;
    a->n_system_allocs = initial_bytes ? 1 : 0;
}

void ag_arena_init_device(ag_arena *a, const char *name, size_t initial_bytes, ag_device dev) {
    if (dev == AG_DEV_CPU) {
        ag_arena_init(a, name, initial_bytes);
        return;
    }
    SX_ASSERT(dev == AG_DEV_CUDA, "arena '%s': unknown device %d", name, (int)dev);
    memset(a, 0, sizeof *a);
    a->name = name;
    a->device = dev;
    a->host = malloc(sizeof *a->host);
    SX_ASSERT(a->host, "out of host memory allocating the header arena of '%s'", name);
    ag_arena_init(a->host, name, 1 << 16);
    a->head = block_new(dev, name, initial_bytes);
    a->capacity = initial_bytes;
    a->n_system_allocs = initial_bytes ? 1 : 0;
}

ag_arena *ag_arena_host_side(ag_arena *a) { return a->device == AG_DEV_CPU ? a : a->host; }

void *ag_arena_alloc(ag_arena *a, size_t bytes) {
    size_t need = (bytes + AG_ALIGN - 1) & ~(size_t)(AG_ALIGN - 1);
    if (need == 0) need = AG_ALIGN;
    if (a->limit && a->used_total + need > a->limit)
        SX_FATAL("arena '%s' exceeds its limit of %zu bytes (asked for %zu more, %zu in use)", a->name, a->limit, need, a->used_total);
    ag_arena_block *b = a->head;
    if (!b || b->used + need > b->size) {
        size_t sz = a->capacity > need ? a->capacity : need; /* grow geometrically */
        if (sz < (1u << 20)) sz = 1u << 20;
        ag_arena_block *nb = block_new(a->device, a->name, sz);
        nb->prev = b;
        a->head = nb;
        a->capacity += sz;
        a->n_system_allocs++;
        b = nb;
    }
    void *p = b->base + b->used;
    b->used += need;
    a->used_total += need;
    if (a->used_total > a->peak) a->peak = a->used_total;
    return p;
}

void *ag_arena_calloc(ag_arena *a, size_t bytes) {
    void *p = ag_arena_alloc(a, bytes);
    if (a->device == AG_DEV_CPU)
        memset(p, 0, bytes);
    else if (bytes)
        ag_cuda_memset0(p, bytes); /* queued on the op stream: ordered after earlier users of this memory */
    return p;
}

/* Frees nothing in steady state: when the last pass needed several blocks, they are merged into one block of
 * the total size, so the next pass fits in it. */
void ag_arena_reset(ag_arena *a) {
    if (a->head && a->head->prev) {
        size_t total = 0;
        for (ag_arena_block *b = a->head; b; b = b->prev) total += b->size;
        for (ag_arena_block *b = a->head; b;) {
            ag_arena_block *p = b->prev;
            block_free(a->device, b);
            b = p;
        }
        a->head = block_new(a->device, a->name, total);
        a->capacity = total;
        a->n_system_allocs++;
    }
    if (a->head) a->head->used = 0;
    a->used_total = 0;
    if (a->host) ag_arena_reset(a->host);
}

void ag_arena_free(ag_arena *a) {
    for (ag_arena_block *b = a->head; b;) {
        ag_arena_block *p = b->prev;
        block_free(a->device, b);
        b = p;
    }
    if (a->host) {
        ag_arena_free(a->host);
        free(a->host);
    }
    memset(a, 0, sizeof *a);
}

/* ---- tensors --------------------------------------------------------------------------------------------------- */

static ag_tensor *header_new(ag_arena *a, ag_dtype dt, int ndim, const int64_t *shape) {
    SX_ASSERT(ndim >= 1 && ndim <= AG_MAX_DIMS, "tensor with %d dims (1..%d supported)", ndim, AG_MAX_DIMS);
    ag_tensor *t = ag_arena_calloc(ag_arena_host_side(a), sizeof *t);
    t->dtype = dt;
    t->device = a->device;
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        SX_ASSERT(shape[i] >= 0, "negative dimension %lld at axis %d", (long long)shape[i], i);
        t->shape[i] = shape[i];
        t->numel *= shape[i];
    }
    return t;
}

ag_tensor *ag_tensor_new(ag_arena *a, ag_dtype dt, int ndim, const int64_t *shape) {
    ag_tensor *t = header_new(a, dt, ndim, shape);
    t->data = ag_arena_alloc(a, (size_t)t->numel * ag_dtype_size(dt));
    return t;
}

ag_tensor *ag_tensor_zeros(ag_arena *a, ag_dtype dt, int ndim, const int64_t *shape) {
    ag_tensor *t = header_new(a, dt, ndim, shape);
    t->data = ag_arena_calloc(a, (size_t)t->numel * ag_dtype_size(dt));
    return t;
}

ag_tensor *ag_tensor_view(ag_arena *a, ag_dtype dt, int ndim, const int64_t *shape, void *data) {
    ag_tensor *t = header_new(a, dt, ndim, shape);
    t->data = data;
    return t;
}

static double decode(ag_dtype dt, const void *p) {
    switch (dt) {
    case AG_F32: return *(const float *)p;
    case AG_F64: return *(const double *)p;
    case AG_BF16: return ag_f32_from_bf16(*(const uint16_t *)p);
    case AG_I32: return *(const int32_t *)p;
    case AG_I64: return (double)*(const int64_t *)p;
    default: SX_FATAL("ag_get: bad dtype");
    }
}

static void encode(ag_dtype dt, void *p, double v) {
    switch (dt) {
    case AG_F32: *(float *)p = (float)v; break;
    case AG_F64: *(double *)p = v; break;
    case AG_BF16: *(uint16_t *)p = ag_bf16_from_f32((float)v); break;
    case AG_I32: *(int32_t *)p = (int32_t)v; break;
    case AG_I64: *(int64_t *)p = (int64_t)v; break;
    default: SX_FATAL("ag_set: bad dtype");
    }
}

double ag_get(const ag_tensor *t, int64_t i) {
    size_t sz = ag_dtype_size(t->dtype);
    if (t->device == AG_DEV_CPU) return decode(t->dtype, (const char *)t->data + (size_t)i * sz);
    char buf[8];
    ag_cuda_memcpy(buf, (const char *)t->data + (size_t)i * sz, sz, AG_COPY_D2H);
    return decode(t->dtype, buf);
}

void ag_set(ag_tensor *t, int64_t i, double v) {
    size_t sz = ag_dtype_size(t->dtype);
    if (t->device == AG_DEV_CPU) {
        encode(t->dtype, (char *)t->data + (size_t)i * sz, v);
        return;
    }
    char buf[8];
    encode(t->dtype, buf, v);
    ag_cuda_memcpy((char *)t->data + (size_t)i * sz, buf, sz, AG_COPY_H2D);
}

void ag_fill(ag_tensor *t, double v) {
    if (t->device != AG_DEV_CPU) {
        ag_cuda_fill(t, v);
        return;
    }
    if (v == 0.0) {
        memset(t->data, 0, (size_t)t->numel * ag_dtype_size(t->dtype));
        return;
    }
    for (int64_t i = 0; i < t->numel; i++) ag_set(t, i, v);
}

static ag_copy_kind copy_kind(const ag_tensor *dst, const ag_tensor *src) {
    if (src->device == AG_DEV_CPU) return AG_COPY_H2D;
    return dst->device == AG_DEV_CPU ? AG_COPY_D2H : AG_COPY_D2D;
}

void ag_copy(ag_tensor *dst, const ag_tensor *src) {
    SX_ASSERT(dst->numel == src->numel, "ag_copy: %lld elements into %lld", (long long)src->numel, (long long)dst->numel);
    bool host = dst->device == AG_DEV_CPU && src->device == AG_DEV_CPU;
    if (dst->dtype == src->dtype) {
        size_t bytes = (size_t)src->numel * ag_dtype_size(src->dtype);
        if (host)
            memcpy(dst->data, src->data, bytes);
        else if (bytes)
            ag_cuda_memcpy(dst->data, src->data, bytes, copy_kind(dst, src));
        return;
    }
    if (host) {
        for (int64_t i = 0; i < src->numel; i++) ag_set(dst, i, ag_get(src, i));
        return;
    }
    if (dst->device != AG_DEV_CPU && src->device != AG_DEV_CPU) {
        ag_cuda_convert(dst, src);
        return;
    }
    /* A conversion across devices (a slow path: tests, checkpoints): through a host copy of the device side. */
    const ag_tensor *dev = dst->device != AG_DEV_CPU ? dst : src;
    ag_tensor tmp = *dev;
    tmp.device = AG_DEV_CPU;
    size_t bytes = (size_t)dev->numel * ag_dtype_size(dev->dtype);
    tmp.data = malloc(bytes ? bytes : 1);
    SX_ASSERT(tmp.data, "out of host memory staging a %zu-byte copy", bytes);
    if (dev == src) {
        ag_cuda_memcpy(tmp.data, src->data, bytes, AG_COPY_D2H);
        ag_copy(dst, &tmp);
    } else {
        ag_copy(&tmp, src);
        ag_cuda_memcpy(dst->data, tmp.data, bytes, AG_COPY_H2D);
    }
    free(tmp.data);
}

static ag_tensor *copy_into(ag_arena *a, const ag_tensor *t) {
    ag_tensor *d = ag_tensor_new(a, t->dtype, t->ndim, t->shape);
    d->name = t->name;
    ag_copy(d, t);
    return d;
}

ag_tensor *ag_tensor_to_device(ag_arena *a, const ag_tensor *t) {
    SX_ASSERT(a->device != AG_DEV_CPU, "ag_tensor_to_device: arena '%s' is a host arena", a->name);
    return copy_into(a, t);
}

ag_tensor *ag_tensor_to_host(ag_arena *a, const ag_tensor *t) {
    SX_ASSERT(a->device == AG_DEV_CPU, "ag_tensor_to_host: arena '%s' is a device arena", a->name);
    return copy_into(a, t);
}

bool ag_same_shape(const ag_tensor *a, const ag_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}
