/* safetensors: the header parser with every validation rule of the reference reader (FORMATS.md 1.2: header size
 * limit, UTF-8 JSON object, no duplicate keys, integral offsets, dtype x shape = byte size, sorted offsets contiguous
 * without gaps or overlaps, the data section covering the file exactly, __metadata__ a string map), and the writer
 * used by export-hf (tensors sorted by name, header padded with spaces to 8 bytes). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "train/hf/hf_weights_internal.h"

static bool valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + (size_t)len > n) return false;
        for (int k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80) return false;
        if (len == 2 && c < 0xc2) return false;                                  /* overlong */
        if (len == 3 && c == 0xe0 && s[i + 1] < 0xa0) return false;               /* overlong */
        if (len == 3 && c == 0xed && s[i + 1] >= 0xa0) return false;              /* surrogates */
        if (len == 4 && (c > 0xf4 || (c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] >= 0x90))) return false;
        i += (size_t)len;
    }
    return true;
}

static bool dtype_of(const char *s, hf_dtype *d, int *bits) {
    static const struct {
        const char *name;
        hf_dtype d;
        int bits;
    } T[] = {{"F32", HF_DT_F32, 32}, {"F16", HF_DT_F16, 16}, {"BF16", HF_DT_BF16, 16}, {"F64", HF_DT_F64, 64}, {"I64", HF_DT_I64, 64},
             {"I32", HF_DT_I32, 32}, {"I16", HF_DT_I16, 16}, {"I8", HF_DT_I8, 8},      {"U8", HF_DT_U8, 8},      {"BOOL", HF_DT_BOOL, 8},
             {"U16", HF_DT_OTHER, 16}, {"U32", HF_DT_OTHER, 32}, {"U64", HF_DT_OTHER, 64}, {"C64", HF_DT_OTHER, 64},
             {"F8_E5M2", HF_DT_OTHER, 8}, {"F8_E4M3", HF_DT_OTHER, 8}, {"F8_E8M0", HF_DT_OTHER, 8}, {"F8_E4M3FNUZ", HF_DT_OTHER, 8},
             {"F8_E5M2FNUZ", HF_DT_OTHER, 8}, {"F6_E2M3", HF_DT_OTHER, 6}, {"F6_E3M2", HF_DT_OTHER, 6}, {"F4", HF_DT_OTHER, 4}};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (!strcmp(s, T[i].name)) {
            *d = T[i].d;
            *bits = T[i].bits;
            return true;
        }
    return false;
}

/* a non-negative integral JSON number up to 2^53 (cJSON holds numbers as doubles) */
static bool as_u53(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

typedef struct {
    uint64_t begin, end;
    int idx;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

sx_status hf_safetensors_parse(const uint8_t *buf, size_t len, uint64_t file_size, const char *label, hf_weights *w, int file) {
    if (len < 8) return sx_errorf("%s: header too small (%zu bytes)", label, len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | buf[i];
    if (n > HF_MAX_HEADER) return sx_errorf("%s: header length %llu exceeds the 100 MB limit", label, (unsigned long long)n);
    if (n > len - 8 || 8 + n > file_size) return sx_errorf("%s: header length %llu runs past the end of the data", label, (unsigned long long)n);
    const uint8_t *h = buf + 8;
    if (!valid_utf8(h, (size_t)n)) return sx_errorf("%s: the header is not valid UTF-8", label);
    cJSON *j = cJSON_ParseWithLength((const char *)h, (size_t)n);
    if (!j) return sx_errorf("%s: the header is not valid JSON", label);
    sx_status s = sx_ok();
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sx_errorf("%s: the header must be a JSON object", label);
    }
    int count = cJSON_GetArraySize(j), first = w->n;
    span *sp = calloc((size_t)(count + 1), sizeof *sp);
    int ns = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        /* cJSON keeps duplicate keys: the reference rejects them */
        for (const cJSON *o = j->child; o != it; o = o->next)
            if (!strcmp(o->string, it->string)) {
                s = sx_errorf("%s: duplicate key \"%s\" in the header", label, it->string);
                goto done;
            }
        if (!strcmp(it->string, "__metadata__")) {
            if (!cJSON_IsObject(it)) {
                s = sx_errorf("%s: __metadata__ must be an object of strings", label);
                goto done;
            }
            const cJSON *m;
            cJSON_ArrayForEach(m, it) if (!cJSON_IsString(m)) {
                s = sx_errorf("%s: __metadata__[\"%s\"] is not a string", label, m->string);
                goto done;
            }
            continue;
        }
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype"), *shape = cJSON_GetObjectItemCaseSensitive(it, "shape"),
                    *off = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsObject(it) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2) {
            s = sx_errorf("%s: tensor \"%s\": needs dtype, shape and data_offsets [begin, end]", label, it->string);
            goto done;
        }
        hf_dtype d;
        int bits;
        if (!dtype_of(dt->valuestring, &d, &bits)) {
            s = sx_errorf("%s: tensor \"%s\": unknown dtype \"%s\"", label, it->string, dt->valuestring);
            goto done;
        }
        int nd = cJSON_GetArraySize(shape);
        if (nd > HF_MAX_DIMS) {
            s = sx_errorf("%s: tensor \"%s\": %d dims (at most %d)", label, it->string, nd, HF_MAX_DIMS);
            goto done;
        }
        hf_tensor_info *t = hf_add_tensor(w, it->string);
        t->dtype = d;
        t->ndim = nd;
        t->file = file;
        /* checked multiply: elements x bits must not overflow (the reference's ValidationOverflow) */
        unsigned __int128 total_bits = (unsigned __int128)bits;
        for (int k = 0; k < nd; k++) {
            uint64_t v;
            if (!as_u53(cJSON_GetArrayItem(shape, k), &v)) {
                s = sx_errorf("%s: tensor \"%s\": shape[%d] is not a non-negative integer", label, it->string, k);
                goto done;
            }
            t->shape[k] = (int64_t)v;
            total_bits *= v;
            if (total_bits >> 64) {
                s = sx_errorf("%s: tensor \"%s\": its size overflows", label, it->string);
                goto done;
            }
        }
        uint64_t b, e;
        if (!as_u53(cJSON_GetArrayItem(off, 0), &b) || !as_u53(cJSON_GetArrayItem(off, 1), &e) || e < b) {
            s = sx_errorf("%s: tensor \"%s\": data_offsets must be integers with begin <= end", label, it->string);
            goto done;
        }
        if (total_bits % 8) {
            s = sx_errorf("%s: tensor \"%s\": %llu bits is not a whole number of bytes", label, it->string, (unsigned long long)total_bits);
            goto done;
        }
        if ((unsigned __int128)(e - b) != total_bits / 8) {
            s = sx_errorf("%s: tensor \"%s\": %llu bytes in data_offsets but dtype %s x shape needs %llu", label, it->string,
                          (unsigned long long)(e - b), dt->valuestring, (unsigned long long)(total_bits / 8));
            goto done;
        }
        t->offset = (int64_t)(8 + n + b);
        t->nbytes = (int64_t)(e - b);
        sp[ns].begin = b;
        sp[ns].end = e;
        sp[ns].idx = w->n - 1;
        ns++;
    }
    /* sorted by offsets, the tensors must tile the data section: no gaps, no overlaps, nothing after the last */
    qsort(sp, (size_t)ns, sizeof *sp, span_cmp);
    uint64_t at = 0;
    for (int k = 0; k < ns; k++) {
        if (sp[k].begin != at) {
            s = sx_errorf("%s: tensor \"%s\" starts at byte %llu of the data but the previous one ends at %llu (%s)", label, w->t[sp[k].idx].name,
                          (unsigned long long)sp[k].begin, (unsigned long long)at, sp[k].begin > at ? "a gap" : "an overlap");
            goto done;
        }
        at = sp[k].end;
    }
    if (8 + n + at != file_size)
        s = sx_errorf("%s: the tensors cover %llu bytes of data but the file holds %llu after the header (trailing or missing bytes)", label,
                      (unsigned long long)at, (unsigned long long)(file_size - 8 - n));
done:
    if (!s.ok) { /* leave the table as it was */
        for (int k = first; k < w->n; k++) free(w->t[k].name);
        w->n = first;
    }
    free(sp);
    cJSON_Delete(j);
    return s;
}

static int out_cmp(const void *a, const void *b) { return strcmp(((const hf_out_tensor *)a)->name, ((const hf_out_tensor *)b)->name); }

sx_status hf_safetensors_write(const char *path, const hf_out_tensor *tin, int n) {
    hf_out_tensor *t = malloc(sizeof *t * (size_t)(n > 0 ? n : 1));
    memcpy(t, tin, sizeof *t * (size_t)n);
    qsort(t, (size_t)n, sizeof *t, out_cmp); /* one dtype (F32): by name, as the reference orders equal alignments */
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_AddObjectToObject(h, t[i].name);
        cJSON_AddStringToObject(o, "dtype", "F32");
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        uint64_t numel = 1;
        for (int k = 0; k < t[i].ndim; k++) {
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[k]));
            numel *= (uint64_t)t[i].shape[k];
        }
        cJSON *of = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        off += numel * 4;
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
    }
    char *text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t hl = strlen(text), padded = (hl + 7) & ~(size_t)7;
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    sx_status s = sx_ok();
    if (!f) s = sx_errorf("%s: cannot create: %s", tmp, strerror(errno));
    if (s.ok) {
        uint8_t len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
        bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(text, 1, hl, f) == hl;
        for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
        for (int i = 0; ok && i < n; i++) {
            size_t numel = 1;
            for (int k = 0; k < t[i].ndim; k++) numel *= (size_t)t[i].shape[k];
            ok = fwrite(t[i].data, sizeof(float), numel, f) == numel;
        }
        if (fclose(f) != 0 || !ok) s = sx_errorf("%s: write failed: %s", tmp, strerror(errno));
        else if (rename(tmp, path) != 0) s = sx_errorf("%s: cannot rename into place: %s", path, strerror(errno));
    }
    free(text);
    free(t);
    return s;
}
