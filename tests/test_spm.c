/* The native SentencePiece tokenizer against the sentencepiece library: ids and decoded text on every held-out line
 * of the fixtures written by scripts/make_spm_fixtures.py, T5 sentinels, the API's edges, and damaged or foreign
 * model files (truncated, bit-flipped, garbage, BPE), which must give an error naming the file, never a crash. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ag.h"
#include "data/spm.h"
#include "tests/tutil.h"

#define FIX SX_SOURCE_DIR "/tests/fixtures/spm"

/* Undoes the fixture escapes (\\ \t \n \r \xHH) in place; returns the length. */
static size_t unescape(char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            s[o++] = s[i];
            continue;
        }
        char c = s[++i];
        if (c == 't') s[o++] = '\t';
        else if (c == 'n') s[o++] = '\n';
        else if (c == 'r') s[o++] = '\r';
        else if (c == 'x' && i + 2 < n) {
            char h[3] = {s[i + 1], s[i + 2], 0};
            s[o++] = (char)strtol(h, NULL, 16);
            i += 2;
        } else s[o++] = c;
    }
    return o;
}

static void format_ids(char *buf, size_t cap, const int32_t *ids, int64_t n) {
    size_t o = 0;
    buf[0] = 0;
    for (int64_t i = 0; i < n && o + 16 < cap; i++) o += (size_t)snprintf(buf + o, cap - o, "%s%d", i ? " " : "", ids[i]);
}

/* Encodes and decodes every line of one fixture; returns the number of lines. Fails on the first mismatch with the
 * line number, the text, and both id lists (or both decoded strings). */
static int check_fixture(const char *name) {
    char path[512];
    snprintf(path, sizeof path, FIX "/%s.model", name);
    data_spm *m;
    sx_status s = data_spm_load(path, &m);
    cr_assert(s.ok, "%s", s.msg);
    snprintf(path, sizeof path, FIX "/%s.txt", name);
    size_t n;
    char *buf = tu_slurp(path, &n);
    int32_t want[4096], got[4096];
    size_t dcap = 1 << 16;
    char *dec = malloc(dcap);
    int lines = 0, id_mismatch = 0, dec_mismatch = 0;
    char *line = buf;
    while (line < buf + n) {
        char *nl = memchr(line, '\n', (size_t)(buf + n - line));
        if (!nl) nl = buf + n;
        *nl = 0;
        lines++;
        char *t1 = strchr(line, '\t');
        cr_assert(t1, "%s line %d: no tab", path, lines);
        char *t2 = strchr(t1 + 1, '\t');
        cr_assert(t2, "%s line %d: one tab", path, lines);
        size_t tl = unescape(line, (size_t)(t1 - line));
        int64_t nw = 0;
        for (char *p = t1 + 1; p < t2;) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p) break;
            want[nw++] = (int32_t)v;
            p = e;
        }
        char *d = t2 + 1;
        size_t dl = strcmp(d, "=") ? unescape(d, strlen(d)) : tl;
        if (!strcmp(d, "=")) d = line;

        int64_t ng = data_spm_encode(m, line, tl, got, 4096);
        cr_assert(ng <= 4096);
        if (ng != nw || memcmp(got, want, (size_t)nw * sizeof *got)) {
            if (!id_mismatch) {
                char a[8192], b[8192];
                format_ids(a, sizeof a, want, nw);
                format_ids(b, sizeof b, got, ng);
                cr_expect(0, "%s line %d: \"%.*s\"\n  sentencepiece: [%s]\n  switchc:       [%s]", name, lines, (int)tl, line, a, b);
            }
            id_mismatch++;
        }
        size_t need = data_spm_decode(m, want, nw, dec, dcap);
        cr_assert(need < dcap);
        if (need != dl || memcmp(dec, d, dl)) {
            if (!dec_mismatch)
                cr_expect(0, "%s line %d: decode differs\n  sentencepiece: \"%.*s\"\n  switchc:       \"%s\"", name, lines, (int)dl, d, dec);
            dec_mismatch++;
        }
        line = nl + 1;
    }
    cr_expect(id_mismatch == 0 && dec_mismatch == 0, "%s: %d of %d lines encode differently, %d decode differently", name,
              id_mismatch, lines, dec_mismatch);
    printf("%s: %d lines, %d id mismatches, %d decode mismatches\n", name, lines, id_mismatch, dec_mismatch);
    free(dec);
    free(buf);
    data_spm_free(m);
    return lines;
}

Test(spm, parity_nmt_nfkc_t5_ids) { cr_expect(check_fixture("m1_nmt_nfkc") >= 2000); }
Test(spm, parity_byte_fallback_nfkc_cf) { cr_expect(check_fixture("m2_byte_fallback") >= 2000); }
Test(spm, parity_identity_user_defined) { cr_expect(check_fixture("m3_identity_user") >= 2000); }
Test(spm, parity_suffix_no_prefix_unescaped) { cr_expect(check_fixture("m4_suffix_noprefix") >= 2000); }
Test(spm, parity_denormalizer) { cr_expect(check_fixture("denorm") >= 300); }
Test(spm, parity_rule_tsv_normalizer) { cr_expect(check_fixture("rules") >= 300); }

/* ---- the API ---------------------------------------------------------------------------------------------------- */

static uint32_t crc32_bitwise(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

Test(spm, ids_pieces_and_checksum) {
    cr_assert_eq(crc32_bitwise((const uint8_t *)"123456789", 9), 0xCBF43926u); /* the check value of CRC-32/zlib */
    data_spm *m;
    sx_status s = data_spm_load(FIX "/m1_nmt_nfkc.model", &m);
    cr_assert(s.ok, "%s", s.msg);
    /* trained with T5's flags: pad 0, eos 1, unk 2, no bos */
    cr_expect_eq(data_spm_piece_count(m), 2000);
    cr_expect_eq(data_spm_vocab_size(m), 2000);
    cr_expect_eq(data_spm_pad_id(m), 0);
    cr_expect_eq(data_spm_eos_id(m), 1);
    cr_expect_eq(data_spm_unk_id(m), 2);
    cr_expect_eq(data_spm_bos_id(m), -1);
    cr_expect_str_eq(data_spm_id_to_piece(m, 0), "<pad>");
    cr_expect_str_eq(data_spm_id_to_piece(m, 1), "</s>");
    cr_expect_str_eq(data_spm_id_to_piece(m, 2), "<unk>");
    cr_expect_str_eq(data_spm_id_to_piece(m, 3), "<ctl>");
    cr_expect_null(data_spm_id_to_piece(m, 2000));
    cr_expect_null(data_spm_id_to_piece(m, -1));
    cr_expect_eq(data_spm_piece_to_id(m, "</s>"), 1);
    cr_expect_eq(data_spm_piece_to_id(m, "<ctl>"), 3);
    cr_expect_eq(data_spm_piece_to_id(m, "no such piece, surely"), 2);
    cr_expect_eq(data_spm_piece_to_id(m, ""), 2);
    for (int32_t i = 0; i < 2000; i++) cr_assert_eq(data_spm_piece_to_id(m, data_spm_id_to_piece(m, i)), i);
    size_t n;
    uint8_t *b = (uint8_t *)tu_slurp(FIX "/m1_nmt_nfkc.model", &n);
    cr_expect_eq(data_spm_checksum(m), crc32_bitwise(b, n));
    free(b);

    /* control pieces never match text; the encoder reports the size it needs when the buffer is short */
    int32_t ids[64];
    int64_t k = data_spm_encode(m, "<ctl> </s>", 10, ids, 64);
    for (int64_t i = 0; i < k; i++) cr_expect(ids[i] != 3 && ids[i] != 1, "a control piece matched text");
    const char *text = "the quick brown fox jumps over the lazy dog";
    int64_t full = data_spm_encode(m, text, strlen(text), ids, 64);
    cr_assert(full > 3 && full < 64);
    int32_t few[3] = {-7, -7, -7};
    cr_expect_eq(data_spm_encode(m, text, strlen(text), few, 2), full);
    cr_expect(few[0] == ids[0] && few[1] == ids[1] && few[2] == -7, "wrote past cap");
    cr_expect_eq(data_spm_encode(m, text, strlen(text), NULL, 0), full);
    cr_expect_eq(data_spm_encode(m, "", 0, ids, 64), 0);
    cr_expect_eq(data_spm_encode(m, "   \t ", 5, ids, 64), 0);
    /* decode: NUL-terminated, truncated to cap, returns the length it needs; ids outside the vocabulary skipped */
    char out[256];
    size_t need = data_spm_decode(m, ids, full, out, sizeof out);
    cr_expect_str_eq(out, text);
    cr_expect_eq(need, strlen(text));
    char small[5];
    cr_expect_eq(data_spm_decode(m, ids, full, small, sizeof small), need);
    cr_expect_str_eq(small, "the ");
    cr_expect_eq(data_spm_decode(m, ids, full, NULL, 0), need);
    int32_t with_junk[4] = {ids[0], -5, 99999, ids[1]};
    int32_t plain[2] = {ids[0], ids[1]};
    char o1[64], o2[64];
    data_spm_decode(m, with_junk, 4, o1, sizeof o1);
    data_spm_decode(m, plain, 2, o2, sizeof o2);
    cr_expect_str_eq(o1, o2);
    cr_expect_eq(data_spm_decode(m, ids, 0, out, sizeof out), 0);
    cr_expect_str_eq(out, "");
    /* unknown characters: one <unk> for a run, decoded as " ⁇ " */
    k = data_spm_encode(m, "\xE0\xBC\x84\xF0\x9F\xA6\x80", 7, ids, 64); /* U+0F04 U+1F980: never in the training text */
    data_spm_decode(m, ids, k, out, sizeof out);
    cr_expect(k == 2 && ids[1] == 2, "a run of unknown characters is one <unk>");
    cr_expect(strstr(out, "\xE2\x81\x87"), "decoded: %s", out);
    data_spm_free(m);
}

Test(spm, t5_sentinels) {
    data_spm *m;
    sx_status s = data_spm_load(FIX "/m1_nmt_nfkc.model", &m);
    cr_assert(s.ok, "%s", s.msg);
    int32_t P = data_spm_piece_count(m);
    data_spm_set_extra_ids(m, 100);
    cr_expect_eq(data_spm_vocab_size(m), P + 100);
    cr_expect_eq(data_spm_piece_to_id(m, "<extra_id_0>"), P + 99);
    cr_expect_eq(data_spm_piece_to_id(m, "<extra_id_99>"), P);
    cr_expect_eq(data_spm_piece_to_id(m, "<extra_id_100>"), data_spm_unk_id(m));
    cr_expect_eq(data_spm_piece_to_id(m, "<extra_id_07>"), data_spm_unk_id(m));
    cr_expect_str_eq(data_spm_id_to_piece(m, P + 99), "<extra_id_0>");
    cr_expect_str_eq(data_spm_id_to_piece(m, P), "<extra_id_99>");
    cr_expect_null(data_spm_id_to_piece(m, P + 100));

    /* transformers 4.57.6 T5Tokenizer(m1_nmt_nfkc.model, extra_ids=100, legacy=True): it splits the text on the
     * sentinels, strips the whitespace around each (Unicode whitespace too) and encodes the parts with sentencepiece */
    const struct {
        const char *text;
        int32_t ids[20];
        int n;
    } hf_enc[] = {
        {"a <extra_id_0> b", {4, 1998, 2099, 4, 1988}, 5},
        {"<extra_id_5><extra_id_12>x<extra_id_99>", {2094, 2087, 4, 271, 2000}, 5},
        {"x\xE3\x80\x80<extra_id_1>\xC2\xA0 y", {4, 271, 2098, 588}, 4},
        {"<extra_id_100> <extra_id_01>", {44, 944, 935, 877, 833, 877, 129, 17, 76, 44, 944, 935, 877, 833, 877, 673, 76}, 17},
    };
    int32_t ids[64];
    for (int i = 0; i < 4; i++) {
        int64_t n = data_spm_encode(m, hf_enc[i].text, strlen(hf_enc[i].text), ids, 64);
        char a[512], b[512];
        format_ids(a, sizeof a, hf_enc[i].ids, hf_enc[i].n);
        format_ids(b, sizeof b, ids, n);
        cr_expect(n == hf_enc[i].n && !memcmp(ids, hf_enc[i].ids, (size_t)n * 4), "\"%s\": transformers [%s], switchc [%s]",
                  hf_enc[i].text, a, b);
    }
    /* and its decode: the text between sentinels decoded on its own, the parts joined by single spaces */
    const int32_t S0 = P + 99, S1 = P + 98;
    int32_t hw[16], foo[16], x[16], y[16];
    int nhw = (int)data_spm_encode(m, "hello world", 11, hw, 16), nfoo = (int)data_spm_encode(m, "foo", 3, foo, 16);
    int nx = (int)data_spm_encode(m, "x.", 2, x, 16), ny = (int)data_spm_encode(m, ", y", 3, y, 16);
    struct {
        int32_t ids[40];
        int n;
        const char *want;
    } hf_dec[8] = {{{S0}, 1, "<extra_id_0>"}, {{S0, S1}, 2, "<extra_id_0> <extra_id_1>"}, {{4, S0}, 2, "<extra_id_0>"}};
    int nd = 3;
    memcpy(hf_dec[nd].ids, hw, (size_t)nhw * 4);
    hf_dec[nd].ids[nhw] = S0;
    hf_dec[nd].n = nhw + 1;
    hf_dec[nd++].want = "hello world <extra_id_0>";
    hf_dec[nd].ids[0] = S0;
    memcpy(hf_dec[nd].ids + 1, hw, (size_t)nhw * 4);
    hf_dec[nd].n = nhw + 1;
    hf_dec[nd++].want = "<extra_id_0> hello world";
    memcpy(hf_dec[nd].ids, hw, (size_t)nhw * 4);
    hf_dec[nd].ids[nhw] = S0;
    memcpy(hf_dec[nd].ids + nhw + 1, foo, (size_t)nfoo * 4);
    hf_dec[nd].ids[nhw + 1 + nfoo] = S1;
    hf_dec[nd].n = nhw + nfoo + 2;
    hf_dec[nd++].want = "hello world <extra_id_0> foo <extra_id_1>";
    memcpy(hf_dec[nd].ids, x, (size_t)nx * 4);
    hf_dec[nd].ids[nx] = S0;
    memcpy(hf_dec[nd].ids + nx + 1, y, (size_t)ny * 4);
    hf_dec[nd].n = nx + ny + 1;
    hf_dec[nd++].want = "x. <extra_id_0> , y";
    char out[256];
    for (int i = 0; i < nd; i++) {
        data_spm_decode(m, hf_dec[i].ids, hf_dec[i].n, out, sizeof out);
        cr_expect_str_eq(out, hf_dec[i].want);
    }
    int64_t n;
    const char *fakes[] = {"<extra_id_100>", "<extra_id_01>", "<extra_id_>", "<extra_id_3", "extra_id_3>", "<extra_id_-1>"};
    for (int i = 0; i < 6; i++) {
        n = data_spm_encode(m, fakes[i], strlen(fakes[i]), ids, 64);
        for (int64_t j = 0; j < n; j++) cr_expect(ids[j] < P, "\"%s\" produced a sentinel", fakes[i]);
    }
    data_spm_set_extra_ids(m, 0); /* off again: the text is text */
    n = data_spm_encode(m, "<extra_id_0>", 12, ids, 64);
    for (int64_t j = 0; j < n; j++) cr_expect(ids[j] < P);
    data_spm_free(m);
}

/* ---- damaged and foreign files ---------------------------------------------------------------------------------- */

#define EXPECT_ERR(expr, needle)                                                                                      \
    do {                                                                                                              \
        data_spm *m_ = NULL;                                                                                          \
        sx_status s_ = (expr);                                                                                        \
        if (s_.ok) data_spm_free(m_);                                                                                 \
        cr_expect(!s_.ok && strstr(s_.msg, needle), "expected an error with \"%s\", got: %s", needle, s_.ok ? "ok" : s_.msg); \
    } while (0)

/* protobuf writing helpers for hand-made models */
typedef struct {
    uint8_t b[4096];
    size_t n;
} pbw;

static void w_varint(pbw *w, uint64_t v) {
    do {
        uint8_t c = v & 0x7F;
        v >>= 7;
        w->b[w->n++] = c | (v ? 0x80 : 0);
    } while (v);
}
static void w_key(pbw *w, int field, int wt) { w_varint(w, (uint64_t)field << 3 | (uint64_t)wt); }
static void w_bytes(pbw *w, int field, const void *s, size_t n) {
    w_key(w, field, 2);
    w_varint(w, n);
    memcpy(w->b + w->n, s, n);
    w->n += n;
}
static void w_piece(pbw *w, const char *piece, float score, int type) {
    pbw p = {.n = 0};
    w_bytes(&p, 1, piece, strlen(piece));
    w_key(&p, 2, 5);
    memcpy(p.b + p.n, &score, 4);
    p.n += 4;
    w_key(&p, 3, 0);
    w_varint(&p, (uint64_t)type);
    w_bytes(w, 1, p.b, p.n);
}

/* A minimal valid model: <unk> (id 0), "▁a" (1) and "b" (2); tests append fields to copies of it. */
static void tiny_model(pbw *w) {
    w->n = 0;
    w_piece(w, "<unk>", 0, 2);
    w_piece(w, "\xE2\x96\x81" "a", -1, 1);
    w_piece(w, "b", -2, 1);
}

/* Faulty pieces appended to the tiny model w: each a clear error. */
static void piece_faults(const pbw *w) {
    pbw t;
    /* pieces: invalid UTF-8, empty, duplicate, unknown type, no <unk>, two <unk>, byte pieces */
    t = *w;
    w_piece(&t, "\xC3\x28", 0, 1);
    EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "utf8.model", &m_), "ModelProto.pieces[3].piece is not valid UTF-8");
    t = *w;
    w_piece(&t, "\xED\xA0\x80", 0, 1); /* a surrogate */
    EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "sur.model", &m_), "not valid UTF-8");
    t = *w;
    w_piece(&t, "", 0, 1);
    EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "e.model", &m_), "pieces[3].piece is empty");
    t = *w;
    w_piece(&t, "b", 0, 1);
    EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "dup.model", &m_), "already defined by piece 2");
    t = *w;
    w_piece(&t, "c", 0, 9);
    EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "type.model", &m_), "unknown piece type 9");
    t = *w;
    w_piece(&t, "<unk2>", 0, 2);
    EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "unk2.model", &m_), "a second UNKNOWN piece");
    t.n = 0;
    w_piece(&t, "a", 0, 1);
    EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "nounk.model", &m_), "no UNKNOWN piece");
    t = *w;
    w_piece(&t, "<0x41>", 0, 6);
    EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "byte.model", &m_), "byte_fallback is false");
    pbw bf = {.n = 0}; /* trainer_spec { byte_fallback: true } */
    w_key(&bf, 35, 0);
    w_varint(&bf, 1);
    t = *w;
    w_bytes(&t, 2, bf.b, bf.n);
    w_piece(&t, "<0x41>", 0, 6);
    EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "bytes.model", &m_), "no byte piece <0x00>");
    t = *w;
    w_bytes(&t, 2, bf.b, bf.n);
    w_piece(&t, "<0x4a>", 0, 6);
    EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "hex.model", &m_), "not of the form <0xHH>");
    /* model types */
    for (int mt = 2; mt <= 5; mt++) {
        t = *w;
        uint8_t ms[2] = {3 << 3, (uint8_t)mt};
        w_bytes(&t, 2, ms, 2);
        EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "type.model", &m_), "only unigram models are supported");
    }
}

/* Faulty and valid normalization charsmaps on the tiny model w. */
static void charsmap_faults(const pbw *w) {
    pbw t;
    data_spm *m;
    sx_status s;
    int32_t ids[8];
    /* charsmaps: too short, trie size past the blob, not a multiple of 4, a leaf pointing past the strings */
    const struct {
        uint8_t blob[16];
        size_t n;
        const char *err;
    } cms[] = {
        {{1, 0, 0}, 3, "too short"},
        {{200, 0, 0, 0, 1, 2, 3, 4}, 8, "runs past the blob"},
        {{3, 0, 0, 0, 1, 2, 3, 4}, 8, "not a positive multiple of 4"},
        {{0, 0, 0, 0, 1, 2, 3, 4}, 8, "not a positive multiple of 4"},
    };
    for (int i = 0; i < 4; i++) {
        t = *w;
        pbw ns = {.n = 0};
        w_bytes(&ns, 2, cms[i].blob, cms[i].n);
        w_bytes(&t, 3, ns.b, ns.n);
        EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "cm.model", &m_), cms[i].err);
    }
    /* a one-rule Darts-clone trie, 128 units: the root (unit 0, offset 0) has its children at 0 ^ c; unit 0x61 ('a')
     * has a leaf and offset 0x40, so its leaf is unit 0x61 ^ 0x40 = 0x21, whose value is the replacement's offset.
     * 1000 lies past the 4 bytes of strings; 1 is "y". */
    {
        static uint8_t blob[4 + 128 * 4 + 4];
        memset(blob, 0, sizeof blob);
        blob[0] = 0x00;
        blob[1] = 0x02; /* 512 bytes of trie */
        uint32_t units[128] = {0};
        units[0x61] = 0x61u | (1u << 8) | (0x40u << 10);
        units[0x21] = (1u << 31) | 1000u;
        units[0] = 0; /* offset 0: the root's children at 0 ^ c */
        memcpy(blob + 4, units, sizeof units);
        memcpy(blob + 4 + 512, "xy\0", 4);
        t = *w;
        pbw ns = {.n = 0};
        w_bytes(&ns, 2, blob, sizeof blob);
        w_bytes(&t, 3, ns.b, ns.n);
        EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "leaf.model", &m_), "replacement starts at byte 1000 of 4");
        /* the same with value 1: loads, and 'a' normalizes to "y" */
        units[0x21] = (1u << 31) | 1u;
        memcpy(blob + 4, units, sizeof units);
        t = *w;
        ns.n = 0;
        w_bytes(&ns, 2, blob, sizeof blob);
        w_bytes(&t, 3, ns.b, ns.n);
        s = data_spm_load_bytes(t.b, t.n, "leaf.model", &m);
        cr_assert(s.ok, "%s", s.msg);
        int64_t k = data_spm_encode(m, "a", 1, ids, 8); /* normalized "▁y": no piece covers it, so one <unk> */
        cr_expect(k >= 1);
        char out[64];
        data_spm_decode(m, ids, k, out, sizeof out);
        cr_expect_str_eq(out, " \xE2\x81\x87 ");
        data_spm_free(m);
    }
}

Test(spm, hand_made_models_load_or_name_their_fault) {
    pbw w;
    tiny_model(&w);
    data_spm *m;
    sx_status s = data_spm_load_bytes(w.b, w.n, "tiny.model", &m);
    cr_assert(s.ok, "%s", s.msg);
    int32_t ids[8];
    cr_expect_eq(data_spm_encode(m, "ab", 2, ids, 8), 2);
    cr_expect(ids[0] == 1 && ids[1] == 2);
    data_spm_free(m);

    EXPECT_ERR(data_spm_load_bytes(w.b, 0, "empty.model", &m_), "empty.model: empty file");
    EXPECT_ERR(data_spm_load(FIX "/no_such.model", &m_), "no_such.model: cannot open");
    EXPECT_ERR(data_spm_load(FIX "/bpe.model", &m_), "only unigram models are supported");
    EXPECT_ERR(data_spm_load(FIX "/bpe.model", &m_), "bpe.model");
    EXPECT_ERR(data_spm_load(FIX "/m1_nmt_nfkc.txt", &m_), "m1_nmt_nfkc.txt");

    /* no pieces: a trainer_spec only */
    pbw t = {.n = 0};
    uint8_t spec[2] = {3 << 3, 1}; /* model_type = UNIGRAM */
    w_bytes(&t, 2, spec, 2);
    EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "nopieces.model", &m_), "nopieces.model: ModelProto.pieces: the model has no pieces");
    /* wrong wire type for a known field: pieces as a varint */
    t.n = 0;
    w_key(&t, 1, 0);
    w_varint(&t, 5);
    EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "wt.model", &m_), "ModelProto.pieces (field 1) has wire type varint");
    /* score as a varint */
    pbw p = {.n = 0};
    w_bytes(&p, 1, "x", 1);
    w_key(&p, 2, 0);
    w_varint(&p, 3);
    t = w;
    w_bytes(&t, 1, p.b, p.n);
    EXPECT_ERR(data_spm_load_bytes(t.b, t.n, "score.model", &m_), "ModelProto.pieces[3].score (field 2) has wire type varint");
    /* truncated varint, a length past the end, a group */
    uint8_t tv[3] = {0x08, 0x80, 0x80};
    EXPECT_ERR(data_spm_load_bytes(tv, 3, "tv.model", &m_), "truncated varint");
    uint8_t lp[3] = {0x0A, 0x7F, 0x00};
    EXPECT_ERR(data_spm_load_bytes(lp, 3, "lp.model", &m_), "length runs past the end");
    uint8_t gr[2] = {0x0B, 0x0C};
    EXPECT_ERR(data_spm_load_bytes(gr, 2, "gr.model", &m_), "start-group");
    uint8_t f0[2] = {0x00, 0x00};
    EXPECT_ERR(data_spm_load_bytes(f0, 2, "f0.model", &m_), "invalid field number 0");
    piece_faults(&w);
    charsmap_faults(&w);

}

/* Every prefix of a small model, coarse prefixes of a big one, and thousands of single-bit flips: each must load or
 * fail with a message naming the file; a damaged model that still loads must encode and decode without harm (the
 * sanitizer build turns any stray read into a failure). */
Test(spm, truncations_bit_flips_and_garbage_never_crash, .timeout = 600) {
    const struct {
        const char *file;
        size_t stride;
        int flips;
    } cases[] = {{FIX "/m3_identity_user.model", 1, 3000}, {FIX "/m2_byte_fallback.model", 97, 600},
                 {FIX "/m1_nmt_nfkc.model", 131, 400}, {FIX "/denorm.model", 13, 1000}};
    const char *text = "Hello wörld ＡＢＣ ﬁ 1234 <sep> \xff\xfe Ꭰ 😀  東京 ";
    for (int c = 0; c < 4; c++) {
        size_t n;
        uint8_t *b = (uint8_t *)tu_slurp(cases[c].file, &n);
        int runs = 0, errors = 0, loaded = 0;
        for (size_t len = 0; len < n; len += cases[c].stride, runs++) {
            uint8_t *copy = malloc(len ? len : 1); /* exactly len bytes, so ASan sees any read past the end */
            memcpy(copy, b, len);
            data_spm *m;
            sx_status s = data_spm_load_bytes(copy, len, "cut.model", &m);
            if (!s.ok) {
                errors++;
                cr_assert(strstr(s.msg, "cut.model"), "the message must name the file: %s", s.msg);
            } else {
                loaded++;
                int32_t ids[256];
                char out[1024];
                int64_t k = data_spm_encode(m, text, strlen(text), ids, 256);
                data_spm_decode(m, ids, k < 256 ? k : 256, out, sizeof out);
                data_spm_free(m);
            }
            free(copy);
        }
        ag_rng_key key = ag_rng_make(17, (uint64_t)c, 0);
        for (int f = 0; f < cases[c].flips; f++, runs++) {
            uint32_t r[4];
            ag_philox(key, (uint64_t)f, r);
            size_t pos = r[0] % n;
            uint8_t bit = (uint8_t)(1u << (r[1] % 8));
            b[pos] ^= bit;
            data_spm *m;
            sx_status s = data_spm_load_bytes(b, n, "flip.model", &m);
            if (!s.ok) {
                errors++;
                cr_assert(strstr(s.msg, "flip.model"), "the message must name the file: %s", s.msg);
            } else {
                loaded++;
                int32_t ids[256];
                char out[1024];
                int64_t k = data_spm_encode(m, text, strlen(text), ids, 256);
                for (int64_t i = 0; i < k && i < 256; i++) cr_assert(ids[i] >= 0 && ids[i] < data_spm_vocab_size(m));
                data_spm_decode(m, ids, k < 256 ? k : 256, out, sizeof out);
                k = data_spm_encode(m, (const char *)b + pos / 2, n - pos / 2 < 200 ? n - pos / 2 : 200, ids, 256);
                data_spm_decode(m, ids, k < 256 ? k : 256, out, sizeof out);
                data_spm_free(m);
            }
            b[pos] ^= bit;
        }
        printf("%s: %d damaged variants, %d refused with an error, %d loaded and encoded, no crash\n", cases[c].file, runs,
               errors, loaded);
        cr_expect(errors > 0);
        free(b);
    }
    /* garbage */
    ag_rng_key key = ag_rng_make(23, 0, 0);
    int refused = 0;
    for (int g = 0; g < 2000; g++) {
        uint8_t buf[512];
        uint32_t r[4];
        size_t len = 1 + g % 500;
        for (size_t i = 0; i < len; i += 16) {
            ag_philox(key, (uint64_t)g * 64 + i / 16, r);
            memcpy(buf + i, r, len - i < 16 ? len - i : 16);
        }
        data_spm *m;
        sx_status s = data_spm_load_bytes(buf, len, "garbage.model", &m);
        if (s.ok) data_spm_free(m);
        else {
            refused++;
            cr_assert(strstr(s.msg, "garbage.model"), "%s", s.msg);
        }
    }
    cr_expect_eq(refused, 2000, "random bytes must not load as a model");
}
