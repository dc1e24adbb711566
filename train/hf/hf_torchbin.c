/* pytorch_model.bin: torch.save's ZIP archive (stored members, ZIP64 aware) holding data.pkl and one file per
 * storage. data.pkl is run by a small pickle machine that knows only the opcodes torch's weights-only unpickler
 * accepts and only an allow-list of globals (OrderedDict, the tensor rebuild functions, the storage types): anything
 * else is refused by name, and no code ever runs (FORMATS.md 1.5). Every offset is bounds-checked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/hf/hf_weights_internal.h"

/* ---- ZIP ----------------------------------------------------------------------------------------------------------- */

typedef struct {
    char name[512];
    uint64_t data_off, size;
} zentry;

static uint64_t rd(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static sx_status zip_entries(const uint8_t *b, size_t len, const char *label, zentry **out, int *count) {
    if (len < 22) return sx_errorf("%s: not a ZIP archive (%zu bytes): pytorch_model.bin is torch.save's ZIP format", label, len);
    /* the end-of-central-directory record: within the last 64 KiB + 22 bytes */
    int64_t eocd = -1;
    for (int64_t i = (int64_t)len - 22; i >= 0 && i >= (int64_t)len - 22 - 65535; i--)
        if (rd(b + i, 4) == 0x06054b50) {
            eocd = i;
            break;
        }
    if (eocd < 0) return sx_errorf("%s: no ZIP end-of-central-directory record (truncated, or not torch.save's format)", label);
    uint64_t n = rd(b + eocd + 10, 2), cd_size = rd(b + eocd + 12, 4), cd_off = rd(b + eocd + 16, 4);
    if (n == 0xffff || cd_off == 0xffffffffu || cd_size == 0xffffffffu) {
        /* ZIP64: the locator just before the EOCD points at the ZIP64 record */
        if (eocd < 20 || rd(b + eocd - 20, 4) != 0x07064b50) return sx_errorf("%s: ZIP64 archive without its locator", label);
        uint64_t z64 = rd(b + eocd - 20 + 8, 8);
        if (len < 56 || z64 > len - 56 || rd(b + z64, 4) != 0x06064b50) return sx_errorf("%s: bad ZIP64 end-of-central-directory record", label);
        n = rd(b + z64 + 32, 8);
        cd_size = rd(b + z64 + 40, 8);
        cd_off = rd(b + z64 + 48, 8);
    }
    if (cd_off > len || cd_size > len - cd_off) return sx_errorf("%s: the ZIP central directory lies outside the file", label);
    if (n > cd_size / 46) return sx_errorf("%s: the ZIP central directory claims %llu entries in %llu bytes", label, (unsigned long long)n, (unsigned long long)cd_size);
    zentry *e = calloc((size_t)(n + 1), sizeof *e);
    uint64_t p = cd_off;
    for (uint64_t k = 0; k < n; k++) {
        if (p + 46 > cd_off + cd_size || rd(b + p, 4) != 0x02014b50) {
            free(e);
            return sx_errorf("%s: ZIP central directory entry %llu is damaged", label, (unsigned long long)k);
        }
        uint64_t method = rd(b + p + 10, 2), csize = rd(b + p + 20, 4), usize = rd(b + p + 24, 4), nlen = rd(b + p + 28, 2), xlen = rd(b + p + 30, 2),
                 clen = rd(b + p + 32, 2), loff = rd(b + p + 42, 4);
        if (p + 46 + nlen + xlen + clen > cd_off + cd_size) {
            free(e);
            return sx_errorf("%s: ZIP central directory entry %llu runs past the directory", label, (unsigned long long)k);
        }
        /* ZIP64 extra field: the 0xffffffff fields, in order usize, csize, offset */
        for (uint64_t x = p + 46 + nlen; x + 4 <= p + 46 + nlen + xlen;) {
            uint64_t id = rd(b + x, 2), sz = rd(b + x + 2, 2), q = x + 4;
            if (x + 4 + sz > p + 46 + nlen + xlen) break;
            if (id == 1) {
                if (usize == 0xffffffffu && q + 8 <= x + 4 + sz) usize = rd(b + q, 8), q += 8;
                if (csize == 0xffffffffu && q + 8 <= x + 4 + sz) csize = rd(b + q, 8), q += 8;
                if (loff == 0xffffffffu && q + 8 <= x + 4 + sz) loff = rd(b + q, 8);
            }
            x += 4 + sz;
        }
        if (nlen >= sizeof e[k].name) nlen = sizeof e[k].name - 1;
        memcpy(e[k].name, b + p + 46, nlen);
        if (method != 0 || csize != usize) {
            sx_status s = sx_errorf("%s: ZIP member '%s' is compressed (method %llu): torch.save stores members uncompressed", label, e[k].name,
                                    (unsigned long long)method);
            free(e);
            return s;
        }
        if (len < 30 || loff > len - 30 || rd(b + loff, 4) != 0x04034b50) {
            sx_status s = sx_errorf("%s: ZIP member '%s': bad local header offset", label, e[k].name);
            free(e);
            return s;
        }
        uint64_t data = loff + 30 + rd(b + loff + 26, 2) + rd(b + loff + 28, 2);
        if (data > len || usize > len - data) {
            sx_status s = sx_errorf("%s: ZIP member '%s' runs past the end of the file (truncated?)", label, e[k].name);
            free(e);
            return s;
        }
        e[k].data_off = data;
        e[k].size = usize;
        p += 46 + nlen + xlen + clen;
    }
    *out = e;
    *count = (int)n;
    return sx_ok();
}

/* ---- the pickle machine -------------------------------------------------------------------------------------------- */

typedef enum { V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_TUPLE, V_LIST, V_DICT, V_GLOBAL, V_STORAGE, V_TENSOR, V_MARK } vkind;
typedef enum { G_ORDERED_DICT, G_REBUILD_TENSOR, G_REBUILD_PARAMETER, G_STORAGE } gkind;

typedef struct val val;
struct val {
    vkind k;
    int64_t i;           /* int, bool; storage numel */
    double f;
    char *s;             /* str; storage key */
    int n, cap;          /* tuple/list items; dict holds 2n (key, value) */
    val **items;
    gkind g;             /* global */
    hf_dtype dt;         /* global storage type; storage; tensor */
    val *storage;        /* tensor */
    int64_t offset, shape[HF_MAX_DIMS], stride[HF_MAX_DIMS];
    int ndim;
};

typedef struct {
    const uint8_t *p, *end;
    val **stack;
    int sp, scap;
    val **memo;
    int64_t nmemo;
    val **all; /* every allocation, freed at the end */
    int nall, capall;
    const char *label;
    char err[1200];
} pm;

static val *nv(pm *m, vkind k) {
    val *v = calloc(1, sizeof *v);
    v->k = k;
    if (m->nall == m->capall) {
        m->capall = m->capall ? 2 * m->capall : 256;
        m->all = realloc(m->all, sizeof(val *) * (size_t)m->capall);
    }
    m->all[m->nall++] = v;
    return v;
}

static bool fail(pm *m, const char *fmt, const char *a) {
    if (!m->err[0]) snprintf(m->err, sizeof m->err, fmt, a);
    return false;
}

static bool push(pm *m, val *v) {
    if (m->sp > 1000000) return fail(m, "%s", "pickle stack deeper than 1,000,000");
    if (m->sp == m->scap) {
        m->scap = m->scap ? 2 * m->scap : 64;
        m->stack = realloc(m->stack, sizeof(val *) * (size_t)m->scap);
    }
    m->stack[m->sp++] = v;
    return true;
}

static val *pop(pm *m) { return m->sp > 0 ? m->stack[--m->sp] : NULL; }
static bool need(pm *m, size_t n) { return (size_t)(m->end - m->p) >= n ? true : fail(m, "%s", "the pickle ends inside an opcode (truncated)"); }

static void add_item(val *c, val *x) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 4;
        c->items = realloc(c->items, sizeof(val *) * (size_t)c->cap);
    }
    c->items[c->n++] = x;
}

static int find_mark(pm *m) {
    for (int i = m->sp - 1; i >= 0; i--)
        if (m->stack[i]->k == V_MARK) return i;
    return -1;
}

/* pops down to the mark, returning the items as a new tuple/list */
static val *pop_to_mark(pm *m, vkind k) {
    int mk = find_mark(m);
    if (mk < 0) {
        fail(m, "%s", "no MARK on the pickle stack");
        return NULL;
    }
    val *t = nv(m, k);
    for (int i = mk + 1; i < m->sp; i++) add_item(t, m->stack[i]);
    m->sp = mk;
    return t;
}

static bool global_of(pm *m, const char *mod, const char *name, val **out) {
    val *g = nv(m, V_GLOBAL);
    char full[520];
    snprintf(full, sizeof full, "%s.%s", mod, name);
    static const struct {
        const char *n;
        gkind g;
        hf_dtype d;
    } ALLOW[] = {{"collections.OrderedDict", G_ORDERED_DICT, 0},
                 {"torch._utils._rebuild_tensor_v2", G_REBUILD_TENSOR, 0},
                 {"torch._utils._rebuild_parameter", G_REBUILD_PARAMETER, 0},
                 {"torch.FloatStorage", G_STORAGE, HF_DT_F32},
                 {"torch.BFloat16Storage", G_STORAGE, HF_DT_BF16},
                 {"torch.HalfStorage", G_STORAGE, HF_DT_F16},
                 {"torch.DoubleStorage", G_STORAGE, HF_DT_F64},
                 {"torch.LongStorage", G_STORAGE, HF_DT_I64},
                 {"torch.IntStorage", G_STORAGE, HF_DT_I32},
                 {"torch.ShortStorage", G_STORAGE, HF_DT_I16},
                 {"torch.CharStorage", G_STORAGE, HF_DT_I8},
                 {"torch.ByteStorage", G_STORAGE, HF_DT_U8},
                 {"torch.BoolStorage", G_STORAGE, HF_DT_BOOL}};
    for (size_t i = 0; i < sizeof ALLOW / sizeof ALLOW[0]; i++)
        if (!strcmp(full, ALLOW[i].n)) {
            g->g = ALLOW[i].g;
            g->dt = ALLOW[i].d;
            *out = g;
            return true;
        }
    return fail(m, "refused global '%s': only OrderedDict, torch tensor rebuilds and storage types are allowed (weights only)", full);
}

static bool int_tuple(const val *t, int64_t *out, int *n) {
    if (t->k != V_TUPLE || t->n > HF_MAX_DIMS) return false;
    for (int i = 0; i < t->n; i++) {
        if (t->items[i]->k != V_INT) return false;
        out[i] = t->items[i]->i;
    }
    *n = t->n;
    return true;
}

/* REDUCE / NEWOBJ: the only callables are the allow-listed globals */
static bool call(pm *m, val *fn, val *args, val **out) {
    if (fn->k != V_GLOBAL) return fail(m, "%s", "REDUCE of something that is not an allowed global");
    if (args->k != V_TUPLE) return fail(m, "%s", "REDUCE arguments are not a tuple");
    switch (fn->g) {
    case G_ORDERED_DICT:
        *out = nv(m, V_DICT);
        return true;
    case G_REBUILD_TENSOR: {
        /* (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) */
        if (args->n < 4 || args->items[0]->k != V_STORAGE || args->items[1]->k != V_INT) return fail(m, "%s", "malformed _rebuild_tensor_v2 arguments");
        val *t = nv(m, V_TENSOR);
        t->storage = args->items[0];
        t->dt = t->storage->dt;
        t->offset = args->items[1]->i;
        int ns;
        if (!int_tuple(args->items[2], t->shape, &t->ndim) || !int_tuple(args->items[3], t->stride, &ns) || ns != t->ndim)
            return fail(m, "%s", "malformed tensor size or stride");
        *out = t;
        return true;
    }
    case G_REBUILD_PARAMETER:
        if (args->n < 1 || args->items[0]->k != V_TENSOR) return fail(m, "%s", "malformed _rebuild_parameter arguments");
        *out = args->items[0];
        return true;
    case G_STORAGE: return fail(m, "%s", "a storage type cannot be called");
    }
    return fail(m, "%s", "REDUCE of a global that cannot be called");
}

enum { OP_FAIL = 0, OP_DONE = 1, OP_NONE = -1 }; /* what an opcode group did with an opcode */

static int op_fail(pm *m, const char *fmt, const char *a) {
    fail(m, fmt, a);
    return OP_FAIL;
}

/* PROTO and FRAME: checked and skipped; OP_NONE for an opcode of another group. */
static int op_frame(pm *m, uint8_t op) {
    switch (op) {
    case 0x80: /* PROTO */
        if (!need(m, 1)) return OP_FAIL;
        if (*m->p > 5) return op_fail(m, "%s", "unsupported pickle protocol");
        m->p++;
        break;
    case 0x95: /* FRAME */
        if (!need(m, 8)) return OP_FAIL;
        m->p += 8;
        break;
    default: return OP_NONE;
    }
    return OP_DONE;
}

/* constants: None, booleans, integers, floats, strings; OP_NONE for an opcode of another group. */
static int op_scalar(pm *m, uint8_t op) {
    val *v = NULL; /* v: set by every path that pushes it (call() sets it whenever it returns true) */
    uint64_t n;
    switch (op) {
    case 'J':
    case 'K':
    case 'M': {
        int len = op == 'J' ? 4 : op == 'K' ? 1 : 2;
        if (!need(m, (size_t)len)) return OP_FAIL;
        v = nv(m, V_INT);
        v->i = op == 'J' ? (int32_t)rd(m->p, 4) : (int64_t)rd(m->p, len);
        m->p += len;
        push(m, v);
        break;
    }
    case 0x8a: /* LONG1 */
        if (!need(m, 1)) return OP_FAIL;
        n = *m->p++;
        if (n > 8 || !need(m, n)) return op_fail(m, "%s", "LONG1 wider than 64 bits");
        v = nv(m, V_INT);
        v->i = n ? (int64_t)rd(m->p, (int)n) : 0;
        if (n && n < 8 && (m->p[n - 1] & 0x80)) v->i -= (int64_t)1 << (8 * n); /* two's complement */
        m->p += n;
        push(m, v);
        break;
    case 'G': /* BINFLOAT, big-endian */
        if (!need(m, 8)) return OP_FAIL;
        {
            uint64_t u = 0;
            for (int i = 0; i < 8; i++) u = u << 8 | m->p[i];
            v = nv(m, V_FLOAT);
            memcpy(&v->f, &u, 8);
        }
        m->p += 8;
        push(m, v);
        break;
    case 'X':
    case 0x8c:
    case 'U':
    case 'T': {
        int len = op == 'X' || op == 'T' ? 4 : 1;
        if (!need(m, (size_t)len)) return OP_FAIL;
        n = rd(m->p, len);
        m->p += len;
        if (!need(m, n)) return OP_FAIL;
        v = nv(m, V_STR);
        v->s = malloc(n + 1);
        memcpy(v->s, m->p, n);
        v->s[n] = 0;
        m->p += n;
        push(m, v);
        break;
    }
    default: return OP_NONE;
    }
    return OP_DONE;
}

/* marks, tuples, lists and dicts; OP_NONE for an opcode of another group. */
static int op_container(pm *m, uint8_t op) {
    val *v = NULL, *a, *b; /* v: set by every path that pushes it (call() sets it whenever it returns true) */
    switch (op) {
    case '(': push(m, nv(m, V_MARK)); break;
    case ')': push(m, nv(m, V_TUPLE)); break;
    case ']': push(m, nv(m, V_LIST)); break;
    case '}': push(m, nv(m, V_DICT)); break;
    case 'N': push(m, nv(m, V_NONE)); break;
    case 0x88:
    case 0x89:
        v = nv(m, V_BOOL);
        v->i = op == 0x88;
        push(m, v);
        break;
    case 't':
        if (!(v = pop_to_mark(m, V_TUPLE))) return OP_FAIL;
        push(m, v);
        break;
    case 0x85:
    case 0x86:
    case 0x87: {
        int k = op - 0x84;
        if (m->sp < k) return op_fail(m, "%s", "TUPLE with too few items");
        v = nv(m, V_TUPLE);
        for (int i = m->sp - k; i < m->sp; i++) add_item(v, m->stack[i]);
        m->sp -= k;
        push(m, v);
        break;
    }
    case 'a':
        b = pop(m);
        a = m->sp ? m->stack[m->sp - 1] : NULL;
        if (!a || !b || a->k != V_LIST) return op_fail(m, "%s", "APPEND to something that is not a list");
        add_item(a, b);
        break;
    case 'e':
    case 'u': { /* APPENDS, SETITEMS: the items since the mark into the list (as key-value pairs: the dict) below it */
        bool dict = op == 'u';
        val *items = pop_to_mark(m, V_TUPLE);
        if (!items) return OP_FAIL;
        a = m->sp ? m->stack[m->sp - 1] : NULL;
        if (!a || a->k != (dict ? V_DICT : V_LIST) || (dict && items->n % 2))
            return op_fail(m, "%s", dict ? "SETITEMS on something that is not a dict" : "APPENDS to something that is not a list");
        for (int i = 0; i < items->n; i++) add_item(a, items->items[i]);
        break;
    }
    case 's':
        b = pop(m);
        v = pop(m);
        a = m->sp ? m->stack[m->sp - 1] : NULL;
        if (!a || !b || !v || a->k != V_DICT) return op_fail(m, "%s", "SETITEM on something that is not a dict");
        add_item(a, v);
        add_item(a, b);
        break;
    default: return OP_NONE;
    }
    return OP_DONE;
}

/* the memo: PUT and GET; OP_NONE for an opcode of another group. */
static int op_memo(pm *m, uint8_t op) {
    switch (op) {
    case 'q':
    case 'r':
    case 0x94: { /* BINPUT, LONG_BINPUT, MEMOIZE */
        uint64_t idx;
        if (op == 0x94) idx = (uint64_t)m->nmemo;
        else {
            int len = op == 'q' ? 1 : 4;
            if (!need(m, (size_t)len)) return OP_FAIL;
            idx = rd(m->p, len);
            m->p += len;
        }
        if (!m->sp) return op_fail(m, "%s", "PUT on an empty stack");
        if (idx > 10000000) return op_fail(m, "%s", "memo index too large");
        if ((int64_t)idx >= m->nmemo) {
            m->memo = realloc(m->memo, sizeof(val *) * (size_t)(idx + 1));
            for (int64_t i = m->nmemo; i <= (int64_t)idx; i++) m->memo[i] = NULL;
            m->nmemo = (int64_t)idx + 1;
        }
        m->memo[idx] = m->stack[m->sp - 1];
        break;
    }
    case 'h':
    case 'j': {
        int len = op == 'h' ? 1 : 4;
        if (!need(m, (size_t)len)) return OP_FAIL;
        uint64_t idx = rd(m->p, len);
        m->p += len;
        if ((int64_t)idx >= m->nmemo || !m->memo[idx]) return op_fail(m, "%s", "GET of an unset memo slot");
        push(m, m->memo[idx]);
        break;
    }
    default: return OP_NONE;
    }
    return OP_DONE;
}

/* globals, torch storages, calls (REDUCE, NEWOBJ) and BUILD; OP_NONE for an opcode of another group. */
static int op_object(pm *m, uint8_t op) {
    val *v = NULL; /* v: set by every path that pushes it (call() sets it whenever it returns true) */
    switch (op) {
    case 'c': { /* GLOBAL "module\nname\n" */
        const uint8_t *nl1 = memchr(m->p, '\n', (size_t)(m->end - m->p));
        const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(m->end - nl1 - 1)) : NULL;
        if (!nl2 || nl1 - m->p > 200 || nl2 - nl1 > 200) return op_fail(m, "%s", "malformed GLOBAL");
        char mod[256], name[256];
        snprintf(mod, sizeof mod, "%.*s", (int)(nl1 - m->p), m->p);
        snprintf(name, sizeof name, "%.*s", (int)(nl2 - nl1 - 1), nl1 + 1);
        m->p = nl2 + 1;
        if (!global_of(m, mod, name, &v)) return OP_FAIL;
        push(m, v);
        break;
    }
    case 'Q': { /* BINPERSID: ('storage', <storage type>, key, location, numel) */
        val *pid = pop(m);
        if (!pid || pid->k != V_TUPLE || pid->n < 5 || pid->items[0]->k != V_STR || strcmp(pid->items[0]->s, "storage") || pid->items[1]->k != V_GLOBAL ||
            pid->items[1]->g != G_STORAGE || pid->items[2]->k != V_STR || pid->items[4]->k != V_INT)
            return op_fail(m, "%s", "a persistent id that is not a torch storage");
        v = nv(m, V_STORAGE);
        v->dt = pid->items[1]->dt;
        v->s = pid->items[2]->s;
        v->i = pid->items[4]->i;
        push(m, v);
        break;
    }
    case 'R':
    case 0x81: { /* REDUCE, NEWOBJ */
        val *args = pop(m), *fn = pop(m);
        if (!args || !fn) return op_fail(m, "%s", "REDUCE on a short stack");
        if (!call(m, fn, args, &v)) return OP_FAIL;
        push(m, v);
        break;
    }
    case 'b': /* BUILD: the state of an OrderedDict or parameter: nothing to keep */
        if (!pop(m) || !m->sp) return op_fail(m, "%s", "BUILD on a short stack");
        break;

    default: return OP_NONE;
    }
    return OP_DONE;
}

static bool run(pm *m, val **result) {
    static int (*const GROUPS[])(pm *, uint8_t) = {op_frame, op_scalar, op_container, op_memo, op_object};
    while (m->p < m->end) {
        uint8_t op = *m->p++;
        if (op == '.') { /* STOP */
            *result = pop(m);
            return *result ? true : fail(m, "%s", "STOP on an empty stack");
        }
        int r = OP_NONE;
        for (int g = 0; r == OP_NONE && g < (int)(sizeof GROUPS / sizeof GROUPS[0]); g++) r = GROUPS[g](m, op);
        if (r == OP_NONE) {
            char hex[8];
            snprintf(hex, sizeof hex, "0x%02x", op);
            return fail(m, "refused pickle opcode %s: only the opcodes of torch's weights-only loader are accepted", hex);
        }
        if (r == OP_FAIL || m->err[0]) return false;
    }
    return fail(m, "%s", "the pickle has no STOP (truncated)");
}

sx_status hf_torchbin_parse_bytes(const uint8_t *bytes, size_t len, const char *label, hf_weights *w, int file) {
    zentry *e = NULL;
    int ne = 0;
    SX_TRY(zip_entries(bytes, len, label, &e, &ne));
    int pkl = -1;
    char prefix[512] = "";
    for (int i = 0; i < ne; i++) {
        size_t l = strlen(e[i].name);
        if (l >= 8 && !strcmp(e[i].name + l - 8, "data.pkl")) {
            pkl = i;
            snprintf(prefix, sizeof prefix, "%.*s", (int)(l - 8), e[i].name);
        }
        if (l >= 9 && !strcmp(e[i].name + l - 9, "byteorder") && e[i].size >= 3 && memcmp(bytes + e[i].data_off, "big", 3) == 0) {
            free(e);
            return sx_errorf("%s: written on a big-endian machine (byteorder 'big'): not supported", label);
        }
    }
    if (pkl < 0) {
        free(e);
        return sx_errorf("%s: no data.pkl in the archive: not a torch.save file", label);
    }
    pm m = {0};
    m.p = bytes + e[pkl].data_off;
    m.end = m.p + e[pkl].size;
    m.label = label;
    val *root = NULL;
    sx_status s = sx_ok();
    if (!run(&m, &root)) s = sx_errorf("%s: data.pkl: %s", label, m.err);
    else if (root->k != V_DICT) s = sx_errorf("%s: data.pkl holds no state dict (a dict of name -> tensor)", label);
    int first = w->n;
    for (int i = 0; s.ok && i + 1 < root->n; i += 2) {
        val *k = root->items[i], *t = root->items[i + 1];
        if (k->k != V_STR) {
            s = sx_errorf("%s: a state-dict key is not a string", label);
            break;
        }
        if (t->k != V_TENSOR) continue; /* e.g. _metadata entries: not tensors */
        /* contiguous (row-major) only; every product checked, since the sizes come from the file */
        int64_t expect = 1, numel = 1;
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (t->shape[d] < 0) {
                s = sx_errorf("%s: tensor '%s' has a negative size", label, k->s);
                break;
            }
            if (t->shape[d] != 1 && t->stride[d] != expect) {
                s = sx_errorf("%s: tensor '%s' is not contiguous (stride %lld at dim %d): save it with .contiguous()", label, k->s,
                              (long long)t->stride[d], d);
                break;
            }
            if (__builtin_mul_overflow(numel, t->shape[d], &numel)) {
                s = sx_errorf("%s: tensor '%s': its size overflows 64 bits (dim %d is %lld): a damaged or crafted file",
                              label, k->s, d, (long long)t->shape[d]);
                break;
            }
            expect = numel;
        }
        if (!s.ok) break;
        char member[1100];
        snprintf(member, sizeof member, "%sdata/%s", prefix, t->storage->s);
        int found = -1;
        for (int j = 0; j < ne; j++)
            if (!strcmp(e[j].name, member)) found = j;
        int es = hf_dtype_size(t->dt);
        if (found < 0) {
            s = sx_errorf("%s: tensor '%s': its storage '%s' is missing from the archive", label, k->s, member);
            break;
        }
        /* in elements, without a product that could wrap: the storage fits its ZIP member, the tensor its storage */
        uint64_t st_el = (uint64_t)t->storage->i, member_el = es ? e[found].size / (uint64_t)es : 0;
        if (es == 0 || t->offset < 0 || t->storage->i < 0 || st_el > member_el || (uint64_t)t->offset > st_el ||
            (uint64_t)numel > st_el - (uint64_t)t->offset) {
            s = sx_errorf("%s: tensor '%s' lies outside its storage (offset %lld + %lld elements, "
                          "storage %lld elements, archive member '%s' %llu bytes)",
                          label, k->s, (long long)t->offset, (long long)numel, (long long)t->storage->i, member,
                          (unsigned long long)e[found].size);
            break;
        }
        hf_tensor_info *ti = hf_add_tensor(w, k->s);
        ti->dtype = t->dt;
        ti->ndim = t->ndim;
        memcpy(ti->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        ti->file = file;
        ti->offset = (int64_t)e[found].data_off + t->offset * es;
        ti->nbytes = numel * es;
    }
    if (!s.ok) {
        for (int k = first; k < w->n; k++) free(w->t[k].name);
        w->n = first;
    }
    for (int i = 0; i < m.nall; i++) {
        if (m.all[i]->k == V_STR) free(m.all[i]->s);
        free(m.all[i]->items);
        free(m.all[i]);
    }
    free(m.all);
    free(m.stack);
    free(m.memo);
    free(e);
    return s;
}
