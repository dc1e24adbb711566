/* SentencePiece unigram tokenizer in C: a protobuf reader for .model files, the normalizer (precompiled charsmap
 * walked as the Darts-clone double array it is, whitespace rules), the Viterbi encoder over a compact double-array
 * of pieces, the decoder, and T5 sentinels. Behaviour follows google/sentencepiece (normalizer.cc, unigram_model.cc
 * EncodeOptimized, sentencepiece_processor.cc) so ids are identical; FORMATS.md 3 has the file layout. */
#include "data/spm.h"

#include <errno.h>
#include <float.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/sx_file.h"
#include "data/spm_trie.h"

enum { PT_NORMAL = 1, PT_UNKNOWN = 2, PT_CONTROL = 3, PT_USER = 4, PT_UNUSED = 5, PT_BYTE = 6 };

#define SPACE_SYMBOL "\xE2\x96\x81" /* U+2581, what a space becomes inside pieces */
#define REPLACEMENT "\xEF\xBF\xBD"   /* U+FFFD */
#define UNK_PENALTY 10.0f            /* an unknown character scores min_score - 10 (unigram_model.cc) */

/* ---- UTF-8 -------------------------------------------------------------------------------------------------------
 * sentencepiece's rules (util.cc DecodeUTF8): shortest form only, no surrogates, nothing above U+10FFFF. */

/* The byte length of the valid character at s (1-4), or 0 when the bytes there are not one. */
static inline int utf8_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    if (n >= 2 && (c & 0xE0) == 0xC0) {
        uint32_t cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
        return (s[1] & 0xC0) == 0x80 && cp >= 0x80 ? 2 : 0;
    } else if (n >= 3 && (c & 0xF0) == 0xE0) {
        uint32_t cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && cp >= 0x800 && (cp < 0xD800 || cp >= 0xE000) ? 3 : 0;
    } else if (n >= 4 && (c & 0xF8) == 0xF0) {
        uint32_t cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
                      (s[3] & 0x3F);
        return (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80 && cp >= 0x10000 &&
                       cp <= 0x10FFFF
                   ? 4
                   : 0;
    }
    return 0;
}

/* The length the lead byte announces (continuation and invalid bytes count 1): how the encoder steps. */
static inline int one_char_len(uint8_t c) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[c >> 4]; }

static bool utf8_valid(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int l = utf8_len(s + i, n - i);
        if (!l) return false;
        i += (size_t)l;
    }
    return true;
}

/* ---- growable scratch buffers --------------------------------------------------------------------------------- */

typedef struct {
    float score;   /* best path score ending here */
    int32_t start; /* where the last piece of that path starts; -1: not reached yet */
    int32_t id;
} lattice_node;

/* Per-thread work buffers, so encode and decode allocate only while a buffer still grows, and a const model can
 * be shared by threads. */
typedef struct {
    char *norm;
    size_t norm_cap;
    lattice_node *lat;
    size_t lat_cap;
    int32_t *path;
    size_t path_cap;
    int32_t *ids;
    size_t ids_cap, n_ids;
    char *text, *text2;
    size_t text_cap, text2_cap;
    uint8_t *bytes;
    size_t bytes_cap;
} scratch;
static _Thread_local scratch tls;

static void *grow_buf(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 256;
    while (c < need) c = c * 2 > c ? c * 2 : need;
    void *q = realloc(p, c * elem);
    SX_ASSERT(q, "spm: out of memory (%zu bytes)", c * elem);
    *cap = c;
    return q;
}
#define GROW(buf, cap, need) ((buf) = grow_buf((buf), &(cap), (need), sizeof *(buf)))

/* ---- the model ------------------------------------------------------------------------------------------------ */

/* A precompiled charsmap: a Darts-clone double array (32-bit units) and the NUL-separated replacement strings its
 * leaves point into (normalizer.cc DecodePrecompiledCharsMap). n_units == 0: identity. */
typedef struct {
    uint32_t *units;
    uint32_t n_units;
    char *repl;
    uint32_t repl_len;
} charsmap;

typedef struct {
    bool add_dummy_prefix, remove_extra_ws, escape_ws, ws_suffix;
    charsmap cm;
    const spm_trie *matcher; /* user-defined symbols pass through unnormalized; NULL when there are none */
} normalizer;

typedef struct {
    uint32_t hash;
    int32_t normal;   /* NORMAL, USER_DEFINED or UNUSED piece with this text, -1 if none */
    int32_t reserved; /* CONTROL, UNKNOWN or BYTE piece, -1 if none; PieceToId prefers it */
} hslot;

struct data_spm {
    int32_t n;         /* pieces */
    char *strs;        /* the pieces, NUL-terminated, back to back */
    uint32_t *off, *len;
    float *score;
    uint8_t *type;
    uint8_t *byte_val; /* the byte a BYTE piece stands for */
    int32_t *canon;    /* PieceToId(IdToPiece(id)): what sentencepiece's decoder looks the piece up as */
    int32_t unk_id, bos_id, eos_id, pad_id;
    bool byte_fallback;
    int32_t byte_id[256];
    float min_score, max_score;
    spm_trie pieces;   /* NORMAL and USER_DEFINED pieces (UNUSED ones never win, so they are left out) */
    spm_trie user;     /* USER_DEFINED pieces, for the normalizer */
    normalizer norm, denorm;
    bool has_denorm;
    char *unk_surface;
    size_t unk_surface_len;
    hslot *h;
    uint32_t hmask;
    uint32_t crc;
    int32_t n_extra;   /* T5 sentinels */
    char *extra_strs;
    uint32_t *extra_off;
};

/* ---- CRC32 (zlib's polynomial), for data_spm_checksum ------------------------------------------------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_fill(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32_zlib(const uint8_t *p, size_t n) {
    pthread_once(&crc_once, crc_table_fill);
    const uint32_t *table = crc_table;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* ---- protobuf wire format ------------------------------------------------------------------------------------
 * Only what ModelProto needs: varints, fixed32, length-delimited; fixed64 is skipped; groups are refused. */

typedef struct {
    uint32_t field;
    int wt;
    uint64_t v;         /* varint, fixed32, fixed64 */
    const uint8_t *s;   /* length-delimited */
    size_t n;
    size_t at;          /* file offset of the key, for messages */
} pb_field;

typedef struct {
    const uint8_t *file; /* start of the whole file, for offsets */
    const char *label;
} pb_ctx;

static const char *wt_name(int wt) {
    static const char *const n[] = {"varint", "fixed64", "length-delimited", "start-group", "end-group", "fixed32",
                                    "invalid (6)", "invalid (7)"};
    return n[wt & 7];
}

/* Reads a varint at *p; 0 on success, or an error message. */
static const char *pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) {
        if (*p >= end) return "truncated varint";
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            return NULL;
        }
    }
    return "varint longer than 10 bytes";
}

/* Reads the next field of a message [*p, end). Returns 1 with a field, 0 at the end, -1 with *st set. */
static int pb_next(const pb_ctx *c, const char *msg, const uint8_t **p, const uint8_t *end, pb_field *f,
                   sx_status *st) {
    if (*p >= end) return 0;
    f->at = (size_t)(*p - c->file);
    uint64_t key;
    const char *e = pb_varint(p, end, &key);
    if (e) {
        *st = sx_errorf("%s: %s: %s in a field key at byte %zu", c->label, msg, e, f->at);
        return -1;
    }
    f->field = (uint32_t)(key >> 3);
    f->wt = (int)(key & 7);
    if ((key >> 3) == 0 || (key >> 3) > 0x1FFFFFFF) {
        *st = sx_errorf("%s: %s: invalid field number %llu at byte %zu", c->label, msg, (unsigned long long)(key >> 3), f->at);
        return -1;
    }
    switch (f->wt) {
    case 0:
        e = pb_varint(p, end, &f->v);
        break;
    case 1:
        if (end - *p < 8) e = "truncated fixed64";
        else {
            memcpy(&f->v, *p, 8);
            *p += 8;
        }
        break;
    case 5:
        if (end - *p < 4) e = "truncated fixed32";
        else {
            uint32_t x;
            memcpy(&x, *p, 4);
            f->v = x;
            *p += 4;
        }
        break;
    case 2: {
        uint64_t n;
        e = pb_varint(p, end, &n);
        if (!e && n > (uint64_t)(end - *p)) e = "length runs past the end of its message";
        if (!e) {
            f->s = *p;
            f->n = (size_t)n;
            *p += n;
        }
        break;
    }
    default:
        *st = sx_errorf("%s: %s: field %u has wire type %s, which this reader does not accept (byte %zu)", c->label, msg,
                        f->field, wt_name(f->wt), f->at);
        return -1;
    }
    if (e) {
        *st = sx_errorf("%s: %s: field %u: %s (byte %zu)", c->label, msg, f->field, e, f->at);
        return -1;
    }
    return 1;
}

static bool pb_want(const pb_ctx *c, const char *msg, const char *name, const pb_field *f, int wt, sx_status *st) {
    if (f->wt == wt) return true;
    *st = sx_errorf("%s: %s.%s (field %u) has wire type %s, expected %s (byte %zu)", c->label, msg, name, f->field,
                    wt_name(f->wt), wt_name(wt), f->at);
    return false;
}

typedef struct {
    const uint8_t *s;
    size_t n;
    bool set;
} pb_str;

typedef struct {
    int32_t model_type;
    bool byte_fallback, ws_suffix;
    pb_str unk_piece, bos_piece, eos_piece, pad_piece, unk_surface;
} trainer_spec;

typedef struct {
    bool present;
    pb_str charsmap;
    bool add_dummy_prefix, remove_extra_ws, escape_ws;
} norm_spec;

/* Fields of a message that occurs more than once are merged, as protobuf does: later values win. */
static sx_status parse_trainer(const pb_ctx *c, const uint8_t *p, const uint8_t *end, trainer_spec *t) {
    static const char *msg = "ModelProto.trainer_spec";
    sx_status st = sx_ok();
    pb_field f = {0};
    int r;
    while ((r = pb_next(c, msg, &p, end, &f, &st)) > 0) {
        switch (f.field) {
        case 3:
            if (!pb_want(c, msg, "model_type", &f, 0, &st)) return st;
            t->model_type = (int32_t)(uint32_t)f.v;
            break;
        case 35:
            if (!pb_want(c, msg, "byte_fallback", &f, 0, &st)) return st;
            t->byte_fallback = f.v != 0;
            break;
        case 24:
            if (!pb_want(c, msg, "treat_whitespace_as_suffix", &f, 0, &st)) return st;
            t->ws_suffix = f.v != 0;
            break;
        case 44: case 45: case 46: case 47: case 48: {
            static const char *const names[] = {"unk_surface", "unk_piece", "bos_piece", "eos_piece", "pad_piece"};
            if (!pb_want(c, msg, names[f.field - 44], &f, 2, &st)) return st;
            pb_str *d = f.field == 44 ? &t->unk_surface : f.field == 45 ? &t->unk_piece : f.field == 46 ? &t->bos_piece
                      : f.field == 47 ? &t->eos_piece : &t->pad_piece;
            *d = (pb_str){f.s, f.n, true};
            break;
        }
        default:
            break; /* training-only fields */
        }
    }
    return st;
}

static sx_status parse_norm(const pb_ctx *c, const char *msg, const uint8_t *p, const uint8_t *end, norm_spec *ns) {
    sx_status st = sx_ok();
    pb_field f = {0};
    int r;
    ns->present = true;
    while ((r = pb_next(c, msg, &p, end, &f, &st)) > 0) {
        switch (f.field) {
        case 1:
            if (!pb_want(c, msg, "name", &f, 2, &st)) return st;
            break;
        case 2:
            if (!pb_want(c, msg, "precompiled_charsmap", &f, 2, &st)) return st;
            ns->charsmap = (pb_str){f.s, f.n, true};
            break;
        case 3:
            if (!pb_want(c, msg, "add_dummy_prefix", &f, 0, &st)) return st;
            ns->add_dummy_prefix = f.v != 0;
            break;
        case 4:
            if (!pb_want(c, msg, "remove_extra_whitespaces", &f, 0, &st)) return st;
            ns->remove_extra_ws = f.v != 0;
            break;
        case 5:
            if (!pb_want(c, msg, "escape_whitespaces", &f, 0, &st)) return st;
            ns->escape_ws = f.v != 0;
            break;
        case 6:
            if (!pb_want(c, msg, "normalization_rule_tsv", &f, 2, &st)) return st;
            break;
        default:
            break;
        }
    }
    return st;
}

typedef struct {
    pb_str piece;
    float score;
    int32_t type;
} piece_rec;

static sx_status parse_piece(const pb_ctx *c, int32_t idx, const uint8_t *p, const uint8_t *end, piece_rec *pr) {
    char msg[64];
    snprintf(msg, sizeof msg, "ModelProto.pieces[%d]", idx);
    sx_status st = sx_ok();
    pb_field f = {0};
    int r;
    pr->piece = (pb_str){0};
    pr->score = 0.0f;
    pr->type = PT_NORMAL;
    while ((r = pb_next(c, msg, &p, end, &f, &st)) > 0) {
        switch (f.field) {
        case 1:
            if (!pb_want(c, msg, "piece", &f, 2, &st)) return st;
            pr->piece = (pb_str){f.s, f.n, true};
            break;
        case 2: {
            if (!pb_want(c, msg, "score", &f, 5, &st)) return st;
            uint32_t x = (uint32_t)f.v;
            memcpy(&pr->score, &x, 4);
            break;
        }
        case 3:
            if (!pb_want(c, msg, "type", &f, 0, &st)) return st;
            if (f.v < PT_NORMAL || f.v > PT_BYTE)
                return sx_errorf("%s: %s.type: unknown piece type %llu (byte %zu)", c->label, msg, (unsigned long long)f.v, f.at);
            pr->type = (int32_t)f.v;
            break;
        default:
            break;
        }
    }
    return st;
}

/* ---- the charsmap: validation and lookup --------------------------------------------------------------------- */

static inline uint32_t da_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }
static inline uint32_t da_label(uint32_t u) { return u & ((1u << 31) | 0xFFu); }
static inline bool da_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t da_value(uint32_t u) { return u & ((1u << 31) - 1); }

/* Splits and checks a charsmap blob: <uint32 LE trie bytes><trie><replacement strings>. Every node a walk can reach
 * is visited once (all 256 labels from each), and every leaf must point inside the strings, so lookups never stray. */
static sx_status charsmap_load(const char *label, const char *msg, const pb_str *blob, charsmap *cm) {
    memset(cm, 0, sizeof *cm);
    if (!blob->n) return sx_ok();
    if (blob->n <= 4)
        return sx_errorf("%s: %s.precompiled_charsmap: %zu bytes is too short for its 4-byte trie size", label, msg, blob->n);
    uint32_t tsize = (uint32_t)blob->s[0] | (uint32_t)blob->s[1] << 8 | (uint32_t)blob->s[2] << 16 | (uint32_t)blob->s[3] << 24;
    if ((size_t)tsize > blob->n - 4)
        return sx_errorf("%s: %s.precompiled_charsmap: the trie size %u runs past the blob (%zu bytes after the size)", label,
                         msg, tsize, blob->n - 4);
    if (tsize == 0 || tsize % 4)
        return sx_errorf("%s: %s.precompiled_charsmap: the trie size %u is not a positive multiple of 4", label, msg, tsize);
    cm->n_units = tsize / 4;
    cm->units = malloc((size_t)tsize);
    cm->repl_len = (uint32_t)(blob->n - 4 - tsize);
    cm->repl = malloc((size_t)cm->repl_len + 1);
    SX_ASSERT(cm->units && cm->repl, "spm: out of memory");
    for (uint32_t i = 0; i < cm->n_units; i++) {
        const uint8_t *q = blob->s + 4 + 4 * (size_t)i;
        cm->units[i] = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
    }
    memcpy(cm->repl, blob->s + 4 + tsize, cm->repl_len);
    cm->repl[cm->repl_len] = 0; /* the string of the last leaf ends at the blob's end, as in a std::string */

    uint32_t n = cm->n_units;
    uint8_t *seen = calloc(n, 1);
    uint32_t *stack = malloc((size_t)n * sizeof *stack + sizeof *stack);
    SX_ASSERT(seen && stack, "spm: out of memory");
    size_t sp = 0;
    stack[sp++] = da_offset(cm->units[0]); /* the root's children sit at 0 ^ offset ^ label */
    sx_status st = sx_ok();
    while (sp && st.ok) {
        uint32_t base = stack[--sp];
        /* the 256 candidates base ^ ch fill one aligned block of units: scan it in memory order */
        uint32_t blk = base & ~0xFFu;
        if (blk >= n) continue;
        uint32_t lim = n - blk < 256 ? n - blk : 256;
        for (uint32_t j = 0; j < lim; j++) {
            uint32_t pos = blk + j, ch = (pos ^ base) & 0xFFu;
            uint32_t u = cm->units[pos];
            if (da_label(u) != ch || seen[pos]) continue;
            seen[pos] = 1;
            uint32_t next = pos ^ da_offset(u);
            if (da_has_leaf(u)) {
                if (next >= n) {
                    st = sx_errorf("%s: %s.precompiled_charsmap: unit %u points to a leaf at %u, past the %u units of the trie",
                                   label, msg, pos, next, n);
                    break;
                }
                uint32_t v = da_value(cm->units[next]);
                if (v > cm->repl_len) {
                    st = sx_errorf("%s: %s.precompiled_charsmap: a rule's replacement starts at byte %u of %u", label, msg,
                                   v, cm->repl_len);
                    break;
                }
            }
            stack[sp++] = next; /* each unit is pushed at most once: the stack cannot overflow */
        }
    }
    free(seen);
    free(stack);
    if (!st.ok) {
        free(cm->units);
        free(cm->repl);
        memset(cm, 0, sizeof *cm);
    }
    return st;
}

static void charsmap_free(charsmap *cm) {
    free(cm->units);
    free(cm->repl);
    memset(cm, 0, sizeof *cm);
}

/* The longest rule matching a prefix of s: its length, with the replacement in *out; 0 when none matches. */
static inline size_t charsmap_match(const charsmap *cm, const uint8_t *s, size_t n, const char **out, size_t *out_len) {
    const uint32_t *a = cm->units;
    uint32_t pos = da_offset(a[0]), nu = cm->n_units;
    size_t best = 0;
    uint32_t best_v = 0;
    for (size_t i = 0; i < n; i++) {
        pos ^= s[i];
        if (pos >= nu) break;
        uint32_t u = a[pos];
        if (da_label(u) != s[i]) break;
        pos ^= da_offset(u);
        if (da_has_leaf(u) && pos < nu) {
            best = i + 1;
            best_v = da_value(a[pos]);
        }
    }
    if (!best || best_v > cm->repl_len) return 0;
    *out = cm->repl + best_v;
    *out_len = strlen(*out); /* bounded: repl carries a NUL at repl_len */
    return best;
}

/* ---- the normalizer (normalizer.cc Normalize) ---------------------------------------------------------------- */

typedef struct {
    const char *s; /* the normalized form of the prefix */
    size_t len;
    size_t consumed; /* input bytes it stands for */
} prefix;

static inline prefix normalize_prefix(const normalizer *nz, const uint8_t *in, size_t n) {
    prefix r;
    if (nz->matcher) { /* a user-defined symbol is kept as written */
        size_t best = 0;
        int32_t node = 0;
        for (size_t i = 0; i < n; i++) {
            node = spm_trie_step(nz->matcher, node, in[i]);
            if (node < 0) break;
            if (nz->matcher->unit[node] & SPM_TRIE_HAS_VALUE) best = i + 1;
        }
        if (best) return (prefix){(const char *)in, best, best};
    }
    if (nz->cm.n_units) {
        size_t m = charsmap_match(&nz->cm, in, n, &r.s, &r.len);
        if (m) {
            r.consumed = m;
            return r;
        }
    }
    int l = utf8_len(in, n);
    if (!l) return (prefix){REPLACEMENT, 3, 1}; /* one malformed byte becomes U+FFFD */
    return (prefix){(const char *)in, (size_t)l, (size_t)l};
}

/* Normalizes in[0..n) into *buf (grown as needed); returns the length. Leading spaces dropped, runs of spaces
 * collapsed and trailing ones removed (remove_extra_ws), a space added in front or behind (add_dummy_prefix,
 * ws_suffix), spaces written as U+2581 (escape_ws). */
static size_t normalize(const normalizer *nz, const uint8_t *in, size_t n, char **buf, size_t *cap) {
    if (!n) return 0;
    size_t pos = 0;
    if (nz->remove_extra_ws) {
        while (pos < n) {
            prefix p = normalize_prefix(nz, in + pos, n - pos);
            if (!(p.len == 1 && p.s[0] == ' ')) break;
            pos += p.consumed;
        }
    }
    if (pos == n) return 0;
    const char *ws = nz->escape_ws ? SPACE_SYMBOL : " ";
    size_t wsl = nz->escape_ws ? 3 : 1;
    size_t o = 0;
    *buf = grow_buf(*buf, cap, (n - pos) + 16, 1);
    char *out = *buf;
    if (!nz->ws_suffix && nz->add_dummy_prefix) {
        memcpy(out, ws, wsl);
        o = wsl;
    }
    bool prev_space = nz->remove_extra_ws;
    while (pos < n) {
        prefix p = normalize_prefix(nz, in + pos, n - pos);
        const char *s = p.s;
        size_t l = p.len;
        if (prev_space)
            while (l && *s == ' ') s++, l--;
        if (l) {
            if (o + 3 * l + 8 > *cap) {
                *buf = grow_buf(*buf, cap, o + 3 * l + 8 + (n - pos), 1);
                out = *buf;
            }
            if (l == 1 && *s != ' ') {
                out[o++] = *s;
            } else {
                for (size_t k = 0; k < l; k++) {
                    if (s[k] == ' ' && nz->escape_ws) {
                        memcpy(out + o, SPACE_SYMBOL, 3);
                        o += 3;
                    } else {
                        out[o++] = s[k];
                    }
                }
            }
            prev_space = s[l - 1] == ' ';
        }
        pos += p.consumed;
        if (!nz->remove_extra_ws) prev_space = false;
    }
    if (nz->remove_extra_ws)
        while (o >= wsl && !memcmp(out + o - wsl, ws, wsl)) o -= wsl;
    if (nz->ws_suffix && nz->add_dummy_prefix) {
        *buf = grow_buf(*buf, cap, o + wsl, 1);
        memcpy(*buf + o, ws, wsl);
        o += wsl;
    }
    return o;
}

/* ---- loading ------------------------------------------------------------------------------------------------ */

static uint32_t hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

static hslot *hash_find(const data_spm *m, const void *s, size_t n) {
    uint32_t h = hash_bytes(s, n);
    for (uint32_t i = h & m->hmask;; i = (i + 1) & m->hmask) {
        hslot *e = &m->h[i];
        if (e->normal < 0 && e->reserved < 0) return e; /* empty: where it would go */
        int32_t id = e->normal >= 0 ? e->normal : e->reserved;
        if (e->hash == h && m->len[id] == n && !memcmp(m->strs + m->off[id], s, n)) return e;
    }
}

static int32_t lookup_piece(const data_spm *m, const void *s, size_t n) {
    hslot *e = hash_find(m, s, n);
    return e->reserved >= 0 ? e->reserved : e->normal;
}

static void normalizer_set(normalizer *nz, const norm_spec *ns, bool ws_suffix, const spm_trie *matcher) {
    nz->add_dummy_prefix = ns->add_dummy_prefix;
    nz->remove_extra_ws = ns->remove_extra_ws;
    nz->escape_ws = ns->escape_ws;
    nz->ws_suffix = ws_suffix;
    nz->matcher = matcher;
}

/* id of a CONTROL piece named `name` (or `def` when the spec leaves it empty), else -1: sentencepiece's
 * bos_id()/eos_id()/pad_id(). */
static int32_t control_id(const data_spm *m, const pb_str *name, const char *def) {
    const void *s = name->set && name->n ? (const void *)name->s : def;
    size_t n = name->set && name->n ? name->n : strlen(def);
    int32_t id = lookup_piece(m, s, n);
    return id >= 0 && m->type[id] == PT_CONTROL ? id : -1;
}

sx_status data_spm_load_bytes(const void *bytes, size_t len, const char *label, data_spm **out) {
    *out = NULL;
    if (!label) label = "(memory)";
    const uint8_t *file = bytes, *end = file + len;
    if (!len) return sx_errorf("%s: empty file (not a SentencePiece model)", label);
    pb_ctx c = {file, label};
    trainer_spec ts = {.model_type = 1};
    norm_spec ns = {.add_dummy_prefix = true, .remove_extra_ws = true, .escape_ws = true};
    norm_spec ds = ns;
    ns.present = false;
    ds.present = false;

    /* pass 1: count pieces, read the specs */
    sx_status st = sx_ok();
    pb_field f = {0};
    int r;
    int64_t n_pieces = 0;
    const uint8_t *p = file;
    while ((r = pb_next(&c, "ModelProto", &p, end, &f, &st)) > 0) {
        switch (f.field) {
        case 1:
            if (!pb_want(&c, "ModelProto", "pieces", &f, 2, &st)) return st;
            n_pieces++;
            break;
        case 2:
            if (!pb_want(&c, "ModelProto", "trainer_spec", &f, 2, &st)) return st;
            SX_TRY(parse_trainer(&c, f.s, f.s + f.n, &ts));
            break;
        case 3:
            if (!pb_want(&c, "ModelProto", "normalizer_spec", &f, 2, &st)) return st;
            SX_TRY(parse_norm(&c, "ModelProto.normalizer_spec", f.s, f.s + f.n, &ns));
            break;
        case 4:
            if (!pb_want(&c, "ModelProto", "self_test_data", &f, 2, &st)) return st;
            break;
        case 5:
            if (!pb_want(&c, "ModelProto", "denormalizer_spec", &f, 2, &st)) return st;
            SX_TRY(parse_norm(&c, "ModelProto.denormalizer_spec", f.s, f.s + f.n, &ds));
            break;
        default:
            break;
        }
    }
    if (r < 0) return st;
    if (ts.model_type != 1) {
        static const char *const mt[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
        if (ts.model_type >= 2 && ts.model_type <= 4)
            return sx_errorf("%s: ModelProto.trainer_spec.model_type is %s: only unigram models are supported", label,
                             mt[ts.model_type]);
        return sx_errorf("%s: ModelProto.trainer_spec.model_type: unknown model type %d (only unigram models are supported)",
                         label, ts.model_type);
    }
    if (n_pieces == 0) return sx_errorf("%s: ModelProto.pieces: the model has no pieces", label);
    if (n_pieces > INT32_MAX / 2) return sx_errorf("%s: ModelProto.pieces: %lld pieces is too many", label, (long long)n_pieces);

    data_spm *m = calloc(1, sizeof *m);
    SX_ASSERT(m, "spm: out of memory");
    int32_t n = (int32_t)n_pieces;
    m->n = n;
    m->crc = crc32_zlib(file, len);
    m->off = malloc((size_t)n * sizeof *m->off);
    m->len = malloc((size_t)n * sizeof *m->len);
    m->score = malloc((size_t)n * sizeof *m->score);
    m->type = malloc((size_t)n);
    m->byte_val = calloc((size_t)n, 1);
    m->canon = malloc((size_t)n * sizeof *m->canon);
    uint32_t hcap = 16;
    while (hcap < 2u * (uint32_t)n) hcap *= 2;
    m->h = malloc((size_t)hcap * sizeof *m->h);
    m->hmask = hcap - 1;
    SX_ASSERT(m->off && m->len && m->score && m->type && m->byte_val && m->canon && m->h, "spm: out of memory");
    for (uint32_t i = 0; i < hcap; i++) m->h[i] = (hslot){0, -1, -1};
    m->unk_id = -1;
    for (int i = 0; i < 256; i++) m->byte_id[i] = -1;

    /* pass 2: the pieces */
    size_t total = 0;
    piece_rec *pr = malloc((size_t)n * sizeof *pr);
    SX_ASSERT(pr, "spm: out of memory");
    int32_t k = 0;
    p = file;
    while ((r = pb_next(&c, "ModelProto", &p, end, &f, &st)) > 0) {
        if (f.field != 1) continue;
        st = parse_piece(&c, k, f.s, f.s + f.n, &pr[k]);
        if (!st.ok) goto fail;
        total += pr[k].piece.n + 1;
        k++;
    }
    if (r < 0) goto fail;
    if (k != n) { /* pass 1 read the same framing: cannot happen */
        st = sx_errorf("%s: ModelProto.pieces: counted %d pieces, then read %d", label, n, k);
        goto fail;
    }
    m->strs = malloc(total ? total : 1);
    SX_ASSERT(m->strs, "spm: out of memory");
    size_t o = 0;
    int32_t n_trie = 0, n_user = 0;
    /* min and max over the NORMAL pieces. unigram_model.cc as of 2025-02 starts the max at FLT_MIN (the smallest
     * positive float, so a model of log-probabilities would get max_score = 1e-38), but sentencepiece 0.2.3 as shipped
     * behaves as if it started at -FLT_MAX: a user-defined piece scores length * (largest NORMAL score) - 0.1. Only
     * that reproduces its ids where this score decides a near-tie (a regression line in the fixtures). */
    m->min_score = FLT_MAX;
    m->max_score = -FLT_MAX;
    for (int32_t i = 0; i < n; i++) {
        const piece_rec *q = &pr[i];
        if (!q->piece.n) {
            st = sx_errorf("%s: ModelProto.pieces[%d].piece is empty", label, i);
            goto fail;
        }
        if (memchr(q->piece.s, 0, q->piece.n)) {
            st = sx_errorf("%s: ModelProto.pieces[%d].piece contains a NUL byte", label, i);
            goto fail;
        }
        if (!utf8_valid(q->piece.s, q->piece.n)) {
            st = sx_errorf("%s: ModelProto.pieces[%d].piece is not valid UTF-8", label, i);
            goto fail;
        }
        memcpy(m->strs + o, q->piece.s, q->piece.n);
        m->strs[o + q->piece.n] = 0;
        m->off[i] = (uint32_t)o;
        m->len[i] = (uint32_t)q->piece.n;
        o += q->piece.n + 1;
        m->score[i] = q->score;
        m->type[i] = (uint8_t)q->type;
        bool normal = q->type == PT_NORMAL || q->type == PT_USER || q->type == PT_UNUSED;
        hslot *e = hash_find(m, q->piece.s, q->piece.n);
        int32_t *slot = normal ? &e->normal : &e->reserved;
        if (*slot >= 0) {
            st = sx_errorf("%s: ModelProto.pieces[%d].piece \"%s\" is already defined by piece %d", label, i,
                           m->strs + m->off[i], *slot);
            goto fail;
        }
        *slot = i;
        e->hash = hash_bytes(q->piece.s, q->piece.n);
        if (q->type == PT_NORMAL) {
            if (q->score < m->min_score) m->min_score = q->score;
            if (q->score > m->max_score) m->max_score = q->score;
        }
        if (q->type == PT_NORMAL || q->type == PT_USER) n_trie++;
        if (q->type == PT_USER) n_user++;
        if (q->type == PT_UNKNOWN) {
            if (m->unk_id >= 0) {
                st = sx_errorf("%s: ModelProto.pieces[%d]: a second UNKNOWN piece (the first is piece %d)", label, i, m->unk_id);
                goto fail;
            }
            m->unk_id = i;
        }
        if (q->type == PT_BYTE) {
            if (!ts.byte_fallback) {
                st = sx_errorf("%s: ModelProto.pieces[%d]: byte piece \"%s\" but trainer_spec.byte_fallback is false", label, i,
                               m->strs + m->off[i]);
                goto fail;
            }
            const char *s = m->strs + m->off[i];
            static const char hex[] = "0123456789ABCDEF";
            const char *h1 = q->piece.n == 6 ? memchr(hex, s[3], 16) : NULL, *h2 = q->piece.n == 6 ? memchr(hex, s[4], 16) : NULL;
            if (q->piece.n != 6 || memcmp(s, "<0x", 3) || s[5] != '>' || !s[3] || !s[4] || !h1 || !h2) {
                st = sx_errorf("%s: ModelProto.pieces[%d]: byte piece \"%s\" is not of the form <0xHH>", label, i, s);
                goto fail;
            }
            int b = (int)((h1 - hex) * 16 + (h2 - hex));
            m->byte_val[i] = (uint8_t)b;
            m->byte_id[b] = i;
        }
    }
    if (m->unk_id < 0) {
        st = sx_errorf("%s: ModelProto.pieces: no UNKNOWN piece (unk is not defined)", label);
        goto fail;
    }
    m->byte_fallback = ts.byte_fallback;
    if (m->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (m->byte_id[b] < 0) {
                st = sx_errorf("%s: trainer_spec.byte_fallback is true but there is no byte piece <0x%02X>", label, b);
                goto fail;
            }
    if (n_trie == 0) {
        int32_t n_unused = 0;
        for (int32_t i = 0; i < n; i++) n_unused += m->type[i] == PT_UNUSED;
        if (!n_unused) {
            st = sx_errorf("%s: ModelProto.pieces: no NORMAL, USER_DEFINED or UNUSED piece to encode with", label);
            goto fail;
        }
    }
    for (int32_t i = 0; i < n; i++) m->canon[i] = lookup_piece(m, m->strs + m->off[i], m->len[i]);

    /* the piece trie; a user-defined piece is marked by a negative id (-2 - id) since it scores by its length */
    spm_trie_key *keys = malloc(((size_t)n_trie + 1) * sizeof *keys);
    SX_ASSERT(keys, "spm: out of memory");
    int32_t nk = 0;
    for (int32_t i = 0; i < n; i++)
        if (m->type[i] == PT_NORMAL || m->type[i] == PT_USER)
            keys[nk++] = (spm_trie_key){(const uint8_t *)m->strs + m->off[i], m->len[i],
                                        {m->type[i] == PT_USER ? -2 - i : i, m->score[i]}};
    bool built = spm_trie_build(&m->pieces, keys, nk);
    if (built && n_user) {
        nk = 0;
        for (int32_t i = 0; i < n; i++)
            if (m->type[i] == PT_USER)
                keys[nk++] = (spm_trie_key){(const uint8_t *)m->strs + m->off[i], m->len[i], {(int32_t)m->len[i], 0.0f}};
        built = spm_trie_build(&m->user, keys, nk);
    }
    free(keys);
    if (!built) {
        st = sx_errorf("%s: ModelProto.pieces: the vocabulary is too large for the piece trie", label);
        goto fail;
    }

    st = charsmap_load(label, "ModelProto.normalizer_spec", &ns.charsmap, &m->norm.cm);
    if (!st.ok) goto fail;
    normalizer_set(&m->norm, &ns, ts.ws_suffix, n_user ? &m->user : NULL);
    if (ds.present && ds.charsmap.n) { /* sentencepiece applies a denormalizer only when it has rules */
        st = charsmap_load(label, "ModelProto.denormalizer_spec", &ds.charsmap, &m->denorm.cm);
        if (!st.ok) goto fail;
        normalizer_set(&m->denorm, &ds, false, NULL);
        m->has_denorm = true;
    }

    const void *us = ts.unk_surface.set ? (const void *)ts.unk_surface.s : " \xE2\x81\x87 "; /* " ⁇ " */
    m->unk_surface_len = ts.unk_surface.set ? ts.unk_surface.n : 5;
    m->unk_surface = malloc(m->unk_surface_len + 1);
    SX_ASSERT(m->unk_surface, "spm: out of memory");
    memcpy(m->unk_surface, us, m->unk_surface_len);
    m->unk_surface[m->unk_surface_len] = 0;
    m->bos_id = control_id(m, &ts.bos_piece, "<s>");
    m->eos_id = control_id(m, &ts.eos_piece, "</s>");
    m->pad_id = control_id(m, &ts.pad_piece, "<pad>");
    free(pr);
    *out = m;
    return sx_ok();
fail:
    free(pr);
    data_spm_free(m);
    return st;
}

sx_status data_spm_load(const char *path, data_spm **out) {
    *out = NULL;
    FILE *fp;
    SX_TRY(sx_file_fopen_read(path, "SentencePiece model", &fp, NULL));
    size_t cap = 1 << 20, len = 0;
    uint8_t *buf = malloc(cap);
    SX_ASSERT(buf, "spm: out of memory");
    for (;;) {
        size_t got = fread(buf + len, 1, cap - len, fp);
        len += got;
        if (got == 0) break;
        if (len == cap) {
            if (cap >= ((size_t)1 << 31)) {
                free(buf);
                fclose(fp);
                return sx_errorf("%s: larger than 2 GB: not a SentencePiece model", path);
            }
            cap *= 2;
            buf = realloc(buf, cap);
            SX_ASSERT(buf, "spm: out of memory");
        }
    }
    bool err = ferror(fp);
    fclose(fp);
    if (err) {
        free(buf);
        return sx_errorf("%s: read error", path);
    }
    sx_status st = data_spm_load_bytes(buf, len, path, out);
    free(buf);
    return st;
}

void data_spm_free(data_spm *m) {
    if (!m) return;
    free(m->strs);
    free(m->off);
    free(m->len);
    free(m->score);
    free(m->type);
    free(m->byte_val);
    free(m->canon);
    free(m->h);
    spm_trie_free(&m->pieces);
    spm_trie_free(&m->user);
    charsmap_free(&m->norm.cm);
    charsmap_free(&m->denorm.cm);
    free(m->unk_surface);
    free(m->extra_strs);
    free(m->extra_off);
    free(m);
}

/* ---- small accessors ------------------------------------------------------------------------------------------ */

void data_spm_set_extra_ids(data_spm *m, int n) {
    SX_ASSERT(n >= 0 && n <= 1000000, "spm: %d extra ids (0..1000000)", n);
    free(m->extra_strs);
    free(m->extra_off);
    m->extra_strs = NULL;
    m->extra_off = NULL;
    m->n_extra = n;
    if (!n) return;
    m->extra_off = malloc((size_t)n * sizeof *m->extra_off);
    m->extra_strs = malloc((size_t)n * 24);
    SX_ASSERT(m->extra_off && m->extra_strs, "spm: out of memory");
    size_t o = 0;
    for (int k = 0; k < n; k++) {
        m->extra_off[k] = (uint32_t)o;
        o += (size_t)snprintf(m->extra_strs + o, 24, "<extra_id_%d>", k) + 1;
    }
}

int32_t data_spm_piece_count(const data_spm *m) { return m->n; }
int32_t data_spm_vocab_size(const data_spm *m) { return m->n + m->n_extra; }
int32_t data_spm_pad_id(const data_spm *m) { return m->pad_id; }
int32_t data_spm_eos_id(const data_spm *m) { return m->eos_id; }
int32_t data_spm_unk_id(const data_spm *m) { return m->unk_id; }
int32_t data_spm_bos_id(const data_spm *m) { return m->bos_id; }
uint32_t data_spm_checksum(const data_spm *m) { return m->crc; }

const char *data_spm_id_to_piece(const data_spm *m, int32_t id) {
    if (id < 0 || id >= m->n + m->n_extra) return NULL;
    if (id < m->n) return m->strs + m->off[id];
    return m->extra_strs + m->extra_off[m->n + m->n_extra - 1 - id];
}

/* "<extra_id_K>" with K in canonical decimal (as T5Tokenizer names them) and K < n: its length, and K in *k. */
static size_t match_sentinel(const char *s, size_t n, int32_t n_extra, int32_t *k) {
    if (n < 12 || memcmp(s, "<extra_id_", 10)) return 0;
    size_t i = 10;
    int64_t v = 0;
    while (i < n && i < 18 && s[i] >= '0' && s[i] <= '9') v = v * 10 + (s[i++] - '0');
    if (i == 10 || i >= n || s[i] != '>' || (s[10] == '0' && i > 11) || v >= n_extra) return 0;
    *k = (int32_t)v;
    return i + 1;
}

int32_t data_spm_piece_to_id(const data_spm *m, const char *piece) {
    size_t n = strlen(piece);
    int32_t k;
    if (m->n_extra && n && match_sentinel(piece, n, m->n_extra, &k) == n) return m->n + m->n_extra - 1 - k;
    int32_t id = lookup_piece(m, piece, n);
    return id >= 0 ? id : m->unk_id;
}

/* ---- encoding ------------------------------------------------------------------------------------------------- */

static inline void push_id(scratch *sc, int32_t id) {
    if (sc->n_ids == sc->ids_cap) GROW(sc->ids, sc->ids_cap, sc->n_ids + 1);
    sc->ids[sc->n_ids++] = id;
}

/* Viterbi over the normalized bytes (unigram_model.cc EncodeOptimized): the best path ending at each position, built
 * from every piece that starts at a character boundary; a position no one-character piece covers gets the unknown
 * piece at min_score - 10. Ties keep the first candidate, and candidates arrive in sentencepiece's order (by start,
 * then by length), so the same path wins. A user-defined piece scores length * max_score - 0.1, with max_score the
 * largest NORMAL score (see the loader). */
static void encode_normalized(const data_spm *m, const uint8_t *s, int32_t n, scratch *sc) {
    GROW(sc->lat, sc->lat_cap, (size_t)n + 1);
    lattice_node *lat = sc->lat;
    for (int32_t i = 0; i <= n; i++) lat[i] = (lattice_node){0.0f, -1, -1};
    const uint32_t *unit = m->pieces.unit;
    const spm_trie_val *val = m->pieces.val;
    const float unk_score = m->min_score - UNK_PENALTY;
    const float max_score = m->max_score;
    for (int32_t st = 0; st < n;) {
        int32_t mb = one_char_len(s[st]);
        if (mb > n - st) mb = n - st;
        const float till = lat[st].score;
        bool single = false;
        int32_t node = 0;
        for (int32_t k = st; k < n; k++) {
            uint8_t c = s[k];
            int32_t t = (int32_t)(unit[node] >> 10) + c;
            uint32_t u = unit[t];
            if ((u & (SPM_TRIE_USED | 0xFFu)) != (SPM_TRIE_USED | c)) break;
            node = t;
            if (!(u & SPM_TRIE_HAS_VALUE)) continue;
            spm_trie_val v = val[t];
            int32_t len = k + 1 - st;
            lattice_node *e = &lat[k + 1];
            if (v.id >= 0) {
                float cand = v.score + till;
                if (e->start < 0 || cand > e->score) *e = (lattice_node){cand, st, v.id};
            } else { /* `len * max_score - 0.1` is a double in the C++ expression */
                double cand = ((double)((float)len * max_score) - 0.1) + (double)till;
                if (e->start < 0 || cand > (double)e->score) *e = (lattice_node){(float)cand, st, -2 - v.id};
            }
            if (len == mb) single = true;
        }
        if (!single) {
            float cand = unk_score + till;
            lattice_node *e = &lat[st + mb];
            if (e->start < 0 || cand > e->score) *e = (lattice_node){cand, st, m->unk_id};
        }
        st += mb;
    }
    /* backtrack, then emit in order: runs of unknown pieces merge into one <unk>, or with byte fallback each unknown
     * character becomes its UTF-8 bytes as <0xXX> pieces (sentencepiece_processor.cc PopulateSentencePieceText) */
    GROW(sc->path, sc->path_cap, (size_t)n + 1);
    int32_t np = 0;
    for (int32_t e = n; e > 0;) {
        int32_t b = lat[e].start;
        if (b < 0 || b >= e) break; /* cannot happen: every boundary is reached */
        sc->path[np++] = e;
        e = b;
    }
    bool prev_unk = false;
    for (int32_t i = np - 1; i >= 0; i--) {
        const lattice_node *e = &lat[sc->path[i]];
        int32_t id = e->id;
        if (id == m->unk_id) {
            if (m->byte_fallback) {
                for (int32_t b = e->start; b < sc->path[i]; b++) push_id(sc, m->byte_id[s[b]]);
            } else if (!prev_unk) {
                push_id(sc, id);
            }
            prev_unk = true;
        } else {
            push_id(sc, id);
            prev_unk = false;
        }
    }
}

static void encode_segment(const data_spm *m, const char *text, size_t len, scratch *sc) {
    size_t n = normalize(&m->norm, (const uint8_t *)text, len, &sc->norm, &sc->norm_cap);
    if (!n) return;
    SX_ASSERT(n < (size_t)INT32_MAX, "spm: a text of %zu normalized bytes is too long to encode in one piece", n);
    encode_normalized(m, (const uint8_t *)sc->norm, (int32_t)n, sc);
}

/* Python's str.isspace() for one code point: what T5Tokenizer strips around a sentinel (lstrip/rstrip = True). */
static bool py_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static uint32_t decode_cp(const uint8_t *s, int l) {
    if (l == 1) return s[0];
    if (l == 2) return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
    if (l == 3) return (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
}

static size_t lstrip(const uint8_t *s, size_t i, size_t end) {
    while (i < end) {
        int l = utf8_len(s + i, end - i);
        if (!l || !py_space(decode_cp(s + i, l))) break;
        i += (size_t)l;
    }
    return i;
}

static size_t rstrip(const uint8_t *s, size_t begin, size_t e) {
    while (e > begin) {
        size_t b = e - 1;
        while (b > begin && e - b < 4 && (s[b] & 0xC0) == 0x80) b--;
        int l = utf8_len(s + b, e - b);
        if (!l || b + (size_t)l != e || !py_space(decode_cp(s + b, l))) break;
        e = b;
    }
    return e;
}

int64_t data_spm_encode(const data_spm *m, const char *text, size_t len, int32_t *ids, int64_t cap) {
    scratch *sc = &tls;
    sc->n_ids = 0;
    if (m->n_extra > 0) {
        /* T5Tokenizer splits the text on its added tokens first, strips the whitespace around each, and encodes
         * the pieces between them with sentencepiece */
        const uint8_t *s = (const uint8_t *)text;
        size_t seg = 0, i = 0;
        while (i < len) {
            const char *lt = memchr(text + i, '<', len - i);
            if (!lt) break;
            size_t at = (size_t)(lt - text);
            int32_t k;
            size_t tl = match_sentinel(lt, len - at, m->n_extra, &k);
            if (!tl) {
                i = at + 1;
                continue;
            }
            size_t e = rstrip(s, seg, at);
            encode_segment(m, text + seg, e - seg, sc);
            push_id(sc, m->n + m->n_extra - 1 - k);
            i = seg = lstrip(s, at + tl, len);
        }
        encode_segment(m, text + seg, len - seg, sc);
    } else {
        encode_segment(m, text, len, sc);
    }
    int64_t n = (int64_t)sc->n_ids;
    if (ids && cap > 0 && n > 0) memcpy(ids, sc->ids, (size_t)(n < cap ? n : cap) * sizeof *ids);
    return n;
}

/* ---- decoding ------------------------------------------------------------------------------------------------- */

static inline void put(scratch *sc, size_t *o, const void *s, size_t n) {
    if (!n) return;
    if (*o + n > sc->text_cap) GROW(sc->text, sc->text_cap, *o + n);
    memcpy(sc->text + *o, s, n);
    *o += n;
}

/* Pending byte pieces become text one character at a time; a byte that starts no valid character becomes U+FFFD. */
static void flush_bytes(scratch *sc, size_t *o, size_t *nb) {
    for (size_t i = 0; i < *nb;) {
        int l = utf8_len(sc->bytes + i, *nb - i);
        if (l) {
            put(sc, o, sc->bytes + i, (size_t)l);
            i += (size_t)l;
        } else {
            put(sc, o, REPLACEMENT, 3);
            i++;
        }
    }
    *nb = 0;
}

/* Closes the text segment [seg, *o): pending byte pieces become text, the denormalizer (if any) rewrites it, and
 * an empty segment takes back the space put before it. */
static void end_segment(const data_spm *m, scratch *sc, size_t seg, bool spaced, size_t *o, size_t *nb) {
    flush_bytes(sc, o, nb);
    if (m->has_denorm && *o > seg) {
        size_t k = normalize(&m->denorm, (const uint8_t *)sc->text + seg, *o - seg, &sc->text2, &sc->text2_cap);
        *o = seg;
        put(sc, o, sc->text2, k);
    }
    if (*o == seg && spaced) *o = seg - 1;
}

/* sentencepiece_processor.cc Decode: control pieces vanish, the unknown piece prints unk_surface, U+2581 becomes a
 * space, and the first piece loses its leading U+2581 (all leading ones while the text is still empty, when the model
 * removes extra whitespace). Sentinels split the ids into segments, each decoded that way on its own, and the parts
 * are joined by single spaces, as transformers' T5Tokenizer.decode does ("hello <extra_id_0> world"). Ids outside
 * the vocabulary are skipped (sentencepiece would refuse the whole call). */
size_t data_spm_decode(const data_spm *m, const int32_t *ids, int64_t n, char *out, size_t cap) {
    scratch *sc = &tls;
    size_t o = 0, nb = 0, seg = 0;
    bool spaced = false; /* a space was put before the current segment */
    bool is_bos_ws = true, bos_ws_seen = false;
    const bool strip_first = m->norm.add_dummy_prefix || m->norm.remove_extra_ws;
    for (int64_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= m->n + m->n_extra) continue;
        if (id >= m->n) {
            end_segment(m, sc, seg, spaced, &o, &nb);
            if (o > 0) put(sc, &o, " ", 1);
            const char *s = data_spm_id_to_piece(m, id);
            put(sc, &o, s, strlen(s));
            put(sc, &o, " ", 1);
            seg = o;
            spaced = true;
            is_bos_ws = true;
            bos_ws_seen = false;
            continue;
        }
        int32_t cid = m->canon[id];
        if (m->type[cid] == PT_BYTE) {
            if (nb == sc->bytes_cap) GROW(sc->bytes, sc->bytes_cap, nb + 1);
            sc->bytes[nb++] = m->byte_val[cid];
            continue;
        }
        flush_bytes(sc, &o, &nb);
        if (bos_ws_seen || o > seg) is_bos_ws = false;
        bos_ws_seen = false;
        if (m->type[cid] == PT_CONTROL) continue;
        if (m->type[cid] == PT_UNKNOWN) {
            put(sc, &o, m->unk_surface, m->unk_surface_len);
            continue;
        }
        const char *s = m->strs + m->off[cid];
        size_t l = m->len[cid];
        if (is_bos_ws && strip_first && l >= 3 && !memcmp(s, SPACE_SYMBOL, 3)) {
            s += 3;
            l -= 3;
            bos_ws_seen = !m->norm.remove_extra_ws;
        }
        if (o + l > sc->text_cap) GROW(sc->text, sc->text_cap, o + l);
        for (size_t k = 0; k < l;) {
            if (k + 3 <= l && !memcmp(s + k, SPACE_SYMBOL, 3)) {
                sc->text[o++] = ' ';
                k += 3;
            } else {
                sc->text[o++] = s[k++];
            }
        }
    }
    end_segment(m, sc, seg, spaced, &o, &nb);
    if (cap > 0) {
        size_t w = o < cap - 1 ? o : cap - 1;
        if (w) memcpy(out, sc->text, w);
        out[w] = 0;
    }
    return o;
}
