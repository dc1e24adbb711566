/* The front end of the HF weight readers: which files a model folder holds (single or sharded, safetensors or
 * pytorch .bin), the tensor table, and reading one tensor as float32 with pread (a 1.2 GB checkpoint is never loaded
 * whole). The format parsers are hf_safetensors.c and hf_torchbin.c. */
#include "train/hf/hf_weights.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "autograd/ag.h"
#include "autograd/sx_file.h"
#include "train/cfg_util.h"
#include "train/hf/hf_weights_internal.h"

const char *hf_dtype_name(hf_dtype d) {
    static const char *n[] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "other"};
    return d <= HF_DT_OTHER ? n[d] : "?";
}

int hf_dtype_size(hf_dtype d) {
    switch (d) {
    case HF_DT_F64:
    case HF_DT_I64: return 8;
    case HF_DT_F32:
    case HF_DT_I32: return 4;
    case HF_DT_F16:
    case HF_DT_BF16:
    case HF_DT_I16: return 2;
    case HF_DT_I8:
    case HF_DT_U8:
    case HF_DT_BOOL: return 1;
    default: return 0;
    }
}

hf_weights *hf_weights_new_empty(void) {
    hf_weights *w = calloc(1, sizeof *w);
    SX_ASSERT(w, "out of memory");
    return w;
}

int hf_add_file(hf_weights *w, const char *path) {
    w->files = realloc(w->files, sizeof(char *) * (size_t)(w->nfiles + 1));
    w->files[w->nfiles] = strdup(path);
    return w->nfiles++;
}

hf_tensor_info *hf_add_tensor(hf_weights *w, const char *name) {
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->t = realloc(w->t, sizeof(hf_tensor_info) * (size_t)w->cap);
        SX_ASSERT(w->t, "out of memory");
    }
    hf_tensor_info *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    return t;
}

int hf_weights_count(const hf_weights *w) { return w->n; }
const hf_tensor_info *hf_weights_info(const hf_weights *w, int i) { return i >= 0 && i < w->n ? &w->t[i] : NULL; }
const char *hf_weights_format(const hf_weights *w) { return w->format; }

const hf_tensor_info *hf_weights_find(const hf_weights *w, const char *name) {
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name)) return &w->t[i];
    return NULL;
}

void hf_weights_close(hf_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    for (int i = 0; i < w->nfiles; i++) free(w->files[i]);
    free(w->t);
    free(w->files);
    free(w);
}

static sx_status read_safetensors_file(hf_weights *w, const char *path) {
    int fd;
    int64_t fsize;
    SX_TRY(sx_file_open_read(path, "safetensors file", &fd, &fsize));
    struct stat st;
    st.st_size = (off_t)fsize;
    uint8_t head[8];
    if (st.st_size < 8 || pread(fd, head, 8, 0) != 8) {
        close(fd);
        return sx_errorf("%s: header too small: a safetensors file starts with an 8-byte header length", path);
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | head[i];
    if (n > HF_MAX_HEADER) {
        close(fd);
        return sx_errorf("%s: header length %llu exceeds the 100 MB limit", path, (unsigned long long)n);
    }
    if (8 + n > (uint64_t)st.st_size) {
        close(fd);
        return sx_errorf("%s: header length %llu runs past the end of the %lld-byte file", path, (unsigned long long)n, (long long)st.st_size);
    }
    uint8_t *buf = malloc((size_t)n + 8);
    if (!buf) {
        close(fd);
        return sx_errorf("%s: out of memory for a %llu-byte header", path, (unsigned long long)n);
    }
    ssize_t got = pread(fd, buf, (size_t)n + 8, 0);
    close(fd);
    if (got != (ssize_t)(n + 8)) {
        free(buf);
        return sx_errorf("%s: short read of the header", path);
    }
    int file = hf_add_file(w, path);
    sx_status s = hf_safetensors_parse(buf, (size_t)n + 8, (uint64_t)st.st_size, path, w, file);
    free(buf);
    return s;
}

static sx_status read_torchbin_file(hf_weights *w, const char *path) {
    int fd;
    int64_t fsize;
    SX_TRY(sx_file_open_read(path, "pytorch_model.bin", &fd, &fsize));
    struct stat st;
    st.st_size = (off_t)fsize;
    if (st.st_size == 0) {
        close(fd);
        return sx_errorf("%s: an empty file: not a torch.save archive", path);
    }
    /* mapped, not read: only the pickle and the ZIP directory are touched here; tensors are read one by one */
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return sx_errorf("%s: cannot map: %s", path, strerror(errno));
    int file = hf_add_file(w, path);
    sx_status s = hf_torchbin_parse_bytes(map, (size_t)st.st_size, path, w, file);
    munmap(map, (size_t)st.st_size);
    return s;
}

static sx_status read_one(hf_weights *w, const char *path) {
    size_t l = strlen(path);
    if (l > 12 && !strcmp(path + l - 12, ".safetensors")) return read_safetensors_file(w, path);
    return read_torchbin_file(w, path);
}

/* {"metadata": {...}, "weight_map": {tensor: file}}: every file once, in first-seen order. */
static sx_status read_index(hf_weights *w, const char *dir, const char *index_path) {
    cJSON *j;
    SX_TRY(cfg_parse_file(index_path, &j));
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(j);
        return sx_errorf("%s: no \"weight_map\" object", index_path);
    }
    const cJSON *it;
    char **seen = NULL;
    int nseen = 0;
    sx_status s = sx_ok();
    cJSON_ArrayForEach(it, map) {
        if (!cJSON_IsString(it)) {
            s = sx_errorf("%s: weight_map[\"%s\"] is not a file name", index_path, it->string);
            break;
        }
        const char *f = it->valuestring;
        if (strchr(f, '/') || !strcmp(f, "..")) {
            s = sx_errorf("%s: weight_map[\"%s\"] = \"%s\" is not a file of this folder", index_path, it->string, f);
            break;
        }
        bool dup = false;
        for (int i = 0; i < nseen; i++) dup |= !strcmp(seen[i], f);
        if (dup) continue;
        seen = realloc(seen, sizeof(char *) * (size_t)(nseen + 1));
        seen[nseen++] = strdup(f);
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", dir, f);
        if (access(p, R_OK) != 0) {
            s = sx_errorf("%s: shard \"%s\" listed in the index is missing", index_path, f);
            break;
        }
        s = read_one(w, p);
        if (!s.ok) break;
    }
    /* every tensor the index names must be in its shard */
    cJSON_ArrayForEach(it, map) {
        if (!s.ok) break;
        if (!hf_weights_find(w, it->string)) s = sx_errorf("%s: tensor \"%s\" is listed for %s but not found there", index_path, it->string, it->valuestring);
    }
    for (int i = 0; i < nseen; i++) free(seen[i]);
    free(seen);
    cJSON_Delete(j);
    return s;
}

static bool exists(const char *p) { return access(p, R_OK) == 0; }

sx_status hf_weights_open(const char *path, hf_weights **out) {
    hf_weights *w = hf_weights_new_empty();
    struct stat st;
    sx_status s;
    if (stat(path, &st) != 0) {
        hf_weights_close(w);
        return sx_errorf("%s: no such file or directory", path);
    }
    if (S_ISDIR(st.st_mode)) {
        char p[1200];
        const char *single[2] = {"model.safetensors", "pytorch_model.bin"}, *index[2] = {"model.safetensors.index.json", "pytorch_model.bin.index.json"};
        s = sx_errorf("%s: no weights (model.safetensors, model.safetensors.index.json, pytorch_model.bin or its index)", path);
        for (int k = 0; k < 2; k++) {
            snprintf(p, sizeof p, "%s/%s", path, single[k]);
            if (exists(p)) {
                s = read_one(w, p);
                snprintf(w->format, sizeof w->format, "%s", k ? "pytorch .bin" : "safetensors");
                break;
            }
            snprintf(p, sizeof p, "%s/%s", path, index[k]);
            if (exists(p)) {
                s = read_index(w, path, p);
                snprintf(w->format, sizeof w->format, "%s (sharded)", k ? "pytorch .bin" : "safetensors");
                break;
            }
        }
    } else {
        s = read_one(w, path);
        size_t l = strlen(path);
        snprintf(w->format, sizeof w->format, "%s", l > 12 && !strcmp(path + l - 12, ".safetensors") ? "safetensors" : "pytorch .bin");
    }
    if (!s.ok) {
        hf_weights_close(w);
        return s;
    }
    *out = w;
    return sx_ok();
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ff;
            u = sign | exp << 23 | man << 13;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | man << 13;
    } else {
        u = sign | (exp - 15 + 127) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

sx_status hf_weights_read_f32(const hf_weights *w, const char *name, float *dst, int64_t numel) {
    const hf_tensor_info *t = hf_weights_find(w, name);
    if (!t) return sx_errorf("no tensor '%s' in the weights", name);
    const char *file = w->files[t->file];
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    if (n != numel) return sx_errorf("%s: tensor '%s' has %lld elements, %lld expected", file, name, (long long)n, (long long)numel);
    int es = hf_dtype_size(t->dtype);
    if (t->dtype != HF_DT_F32 && t->dtype != HF_DT_BF16 && t->dtype != HF_DT_F16 && t->dtype != HF_DT_F64)
        return sx_errorf("%s: tensor '%s' has dtype %s, not a floating-point type", file, name, hf_dtype_name(t->dtype));
    if (t->nbytes != n * es) return sx_errorf("%s: tensor '%s': %lld bytes for %lld elements of %s", file, name, (long long)t->nbytes, (long long)n, hf_dtype_name(t->dtype));
    int fd = open(file, O_RDONLY);
    if (fd < 0) return sx_errorf("%s: cannot open: %s", file, strerror(errno));
    /* read in 16 MB pieces, converting in place into dst (f32 and narrower types fit; f64 goes through a buffer) */
    sx_status s = sx_ok();
    const int64_t CHUNK = 1 << 22;
    uint8_t *buf = malloc((size_t)(CHUNK * 8));
    for (int64_t done = 0; done < n && s.ok;) {
        int64_t m = n - done < CHUNK ? n - done : CHUNK;
        ssize_t got = pread(fd, buf, (size_t)(m * es), (off_t)(t->offset + done * es));
        if (got != (ssize_t)(m * es)) {
            s = sx_errorf("%s: tensor '%s' is truncated (the file ends inside its data)", file, name);
            break;
        }
        for (int64_t i = 0; i < m; i++) {
            const uint8_t *p = buf + i * es;
            float v;
            switch (t->dtype) {
            case HF_DT_F32: memcpy(&v, p, 4); break;
            case HF_DT_BF16: v = ag_f32_from_bf16((uint16_t)(p[0] | p[1] << 8)); break;
            case HF_DT_F16: v = f16_to_f32((uint16_t)(p[0] | p[1] << 8)); break;
            default: {
                double d;
                memcpy(&d, p, 8);
                v = (float)d;
            }
            }
            dst[done + i] = v;
        }
        done += m;
    }
    free(buf);
    close(fd);
    return s;
}
