/* Hugging Face weights in and out: every form the Hub ships loads and gives HF's float32 logits (within 1e-5
 * relative: the same fp32 model, different summation orders); bf16 widens exactly; every safetensors validation
 * rule of the reference reader is enforced; hostile or damaged pickles are refused by name and nothing runs;
 * truncated and bit-flipped files never crash; export round-trips bit for bit. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/h5fixture.h"
#include "train/hf/hf_model.h"
#include "train/hf/hf_weights.h"
#include "tests/tutil.h"

#define FIX SX_SOURCE_DIR "/tests/fixtures/hf"

static double logits_err(model *m, const char *ref_name) {
    hid_t f = h5f_open(FIX "/reference.h5", NULL);
    int nd;
    hsize_t d[8];
    int32_t *ids = h5f_ints(f, "input_ids", &nd, d), *mask = h5f_ints(f, "attention_mask", NULL, NULL);
    int64_t B = (int64_t)d[0], S = (int64_t)d[1];
    int32_t *labels = h5f_ints(f, "labels", &nd, d);
    int64_t T = (int64_t)d[1], n;
    float *ref = h5f_floats(f, ref_name, &n);
    ag_arena act;
    ag_ctx ctx;
    ag_ctx_init_eval(&ctx, &act, "act", 1 << 20);
    model_batch b = {B, S, T, ids, mask, labels, NULL, 0, 0};
    model_output o;
    model_forward(m, &ctx, &b, (model_rng){0, 0, 0}, &o);
    cr_assert_eq(o.logits->numel, n);
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)((float *)o.logits->data)[i] - ref[i]));
        mr = fmax(mr, fabs(ref[i]));
    }
    ag_ctx_free_eval(&ctx);
    free(ids);
    free(mask);
    free(labels);
    free(ref);
    H5Fclose(f);
    return md / mr;
}

Test(hf, every_form_loads_and_matches_hf_logits) {
    const char *forms[4] = {"safetensors", "sharded", "bin_f32", "bin_bf16"};
    for (int k = 0; k < 4; k++) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/%s", FIX, forms[k]);
        model m;
        tu_load_hf(&m, dir, false);
        double e = logits_err(&m, k == 3 ? "logits_bf16" : "logits_f32");
        printf("%-12s logits rel error vs HF %.3e\n", forms[k], e);
        cr_expect(e <= 1e-5, "%s: logits differ from HF by %.3e", forms[k], e);
        model_free(&m);
    }
}

Test(hf, bf16_widens_exactly) {
    model a, b;
    tu_load_hf(&a, FIX "/bin_f32", false);
    tu_load_hf(&b, FIX "/bin_bf16", false);
    int64_t bad = 0;
    for (int64_t i = 0; i < a.n_floats; i++) bad += ag_f32_from_bf16(ag_bf16_from_f32(a.w[i])) != b.w[i];
    cr_expect_eq(bad, 0, "%lld values differ from the bf16 rounding of the fp32 weights", (long long)bad);
    model_free(&a);
    model_free(&b);
}

Test(hf, export_round_trips) {
    model a, b;
    tu_load_hf(&a, FIX "/safetensors", false);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/hf_export_test_%d", SX_BINARY_DIR, (int)getpid());
    sx_status s = hf_export(&a, dir);
    cr_assert(s.ok, "%s", s.msg);
    tu_load_hf(&b, dir, false);
    cr_expect(!memcmp(a.w, b.w, sizeof(float) * (size_t)a.n_floats), "exported weights differ");
    model_free(&a);
    model_free(&b);
}

/* The exported key set is what transformers 4.57.6 loads with no missing and no unexpected key: every parameter of
 * the table; tied, shared.weight alone (as save_pretrained writes it); untied, lm_head.weight plus copies of
 * shared.weight as encoder.embed_tokens.weight and decoder.embed_tokens.weight, which from_pretrained otherwise
 * reports missing and re-initialises. The output folder is created with its missing parents. */
static void check_export_keys(bool tied) {
    model_config c = tu_tiny_config((tu_dims){.V = 13, .D = 8, .K = 4, .F = 12, .H = 2, .E = 2});
    c.tie_word_embeddings = tied;
    model m;
    cr_assert(model_init_inference(&m, &c).ok);
    model_init_weights(&m, 5);
    char dir[600], st[700];
    snprintf(dir, sizeof dir, "%s/hf_keys_test_%d/%s/nested", SX_BINARY_DIR, (int)getpid(), tied ? "tied" : "untied");
    sx_status s = hf_export(&m, dir);
    cr_assert(s.ok, "%s", s.msg);
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    hf_weights *w;
    cr_assert(hf_weights_open(st, &w).ok);
    int expected = 0;
    char name[160];
    for (int i = 0; i < m.n_params; i++) {
        int ne = m.params[i].n_experts ? m.params[i].n_experts : 1;
        for (int e = 0; e < ne; e++, expected++)
            cr_expect(hf_weights_find(w, model_param_hf_name(&m, i, e, name, sizeof name)), "%s: '%s' is missing", st, name);
    }
    const char *aliases[2] = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"};
    int64_t V = c.vocab_size, D = c.d_model;
    float *buf = malloc(sizeof(float) * (size_t)(V * D));
    for (int a = 0; a < 2; a++) {
        const hf_tensor_info *t = hf_weights_find(w, aliases[a]);
        if (tied) {
            cr_expect(!t, "tied: '%s' is written (save_pretrained writes shared.weight alone)", aliases[a]);
            continue;
        }
        cr_assert(t, "untied: '%s' is missing: transformers would re-initialise it", aliases[a]);
        cr_assert(t->ndim == 2 && t->shape[0] == V && t->shape[1] == D);
        cr_assert(hf_weights_read_f32(w, aliases[a], buf, V * D).ok);
        cr_expect(!memcmp(buf, m.w + m.params[m.shared].offset, sizeof(float) * (size_t)(V * D)), "'%s' is not shared.weight", aliases[a]);
        expected++;
    }
    cr_expect_eq(!hf_weights_find(w, "lm_head.weight"), tied, "lm_head.weight must be written exactly when untied");
    cr_expect_eq(hf_weights_count(w), expected, "%d tensors in the export, expected %d", hf_weights_count(w), expected);
    free(buf);
    hf_weights_close(w);
    /* and it loads back into switchc bit for bit */
    model b;
    cr_assert(model_init_inference(&b, &c).ok);
    s = hf_load_weights(&b, dir);
    cr_assert(s.ok, "%s", s.msg);
    cr_expect(!memcmp(m.w, b.w, sizeof(float) * (size_t)m.n_floats));
    model_free(&b);
    model_free(&m);
}

Test(hf, export_key_set_tied) { check_export_keys(true); }
Test(hf, export_key_set_untied) { check_export_keys(false); }

Test(hf, mismatched_config_and_missing_tensors_are_named) {
    model_config c;
    model m;
    cr_assert(hf_read_config(FIX "/safetensors", &c).ok);
    c.num_experts = 8; /* the router's shape gives it away first */
    cr_assert(model_init(&m, &c).ok);
    sx_status s = hf_load_weights(&m, FIX "/safetensors");
    cr_expect(!s.ok && strstr(s.msg, "router.classifier.weight") && strstr(s.msg, "does not match the weights"), "got: %s", s.msg);
    model_free(&m);
    cr_assert(hf_read_config(FIX "/safetensors", &c).ok);
    c.tie_word_embeddings = false; /* an untied head the files do not have */
    cr_assert(model_init(&m, &c).ok);
    s = hf_load_weights(&m, FIX "/safetensors");
    cr_expect(!s.ok && strstr(s.msg, "missing tensor 'lm_head.weight'"), "got: %s", s.msg);
    model_free(&m);
    /* a file with one tensor too many */
    model a;
    tu_load_hf(&a, FIX "/safetensors", false);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/hf_extra_test_%d", SX_BINARY_DIR, (int)getpid());
    cr_assert(hf_export(&a, dir).ok);
    hf_weights *w;
    char st[700];
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    cr_assert(hf_weights_open(st, &w).ok);
    int n = hf_weights_count(w);
    hf_out_tensor *t = calloc((size_t)n + 1, sizeof *t);
    float *bufs = malloc(sizeof(float) * (size_t)(a.n_floats + 16));
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        const hf_tensor_info *ti = hf_weights_info(w, i);
        int64_t numel = 1;
        for (int d = 0; d < ti->ndim; d++) numel *= ti->shape[d];
        cr_assert(hf_weights_read_f32(w, ti->name, bufs + off, numel).ok);
        t[i] = (hf_out_tensor){ti->name, ti->ndim, {0}, bufs + off};
        memcpy(t[i].shape, ti->shape, sizeof(int64_t) * (size_t)ti->ndim);
        off += numel;
    }
    static const float extra[2] = {1, 2};
    t[n] = (hf_out_tensor){"encoder.block.7.layer.0.SelfAttention.q.weight", 1, {2}, extra};
    cr_assert(hf_safetensors_write(st, t, n + 1).ok);
    hf_weights_close(w);
    model b;
    cr_assert(model_init(&b, &a.cfg).ok);
    s = hf_load_weights(&b, dir);
    cr_expect(!s.ok && strstr(s.msg, "unexpected tensor 'encoder.block.7"), "got: %s", s.msg);
    free(t);
    free(bufs);
    model_free(&a);
    model_free(&b);
}

/* ---- safetensors validation: each rule of the reference reader --------------------------------------------------- */

static sx_status parse_st(const char *header, const char *data, size_t data_len) {
    size_t hl = strlen(header);
    uint8_t *buf = malloc(8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    memcpy(buf + 8 + hl, data, data_len);
    hf_weights *w = hf_weights_new_empty();
    sx_status s = hf_safetensors_parse(buf, 8 + hl, 8 + hl + data_len, "t.safetensors", w, 0);
    hf_weights_close(w);
    free(buf);
    return s;
}

#define EXPECT_ERR(s, needle)                                                                                         \
    do {                                                                                                              \
        sx_status s_ = (s);                                                                                           \
        cr_expect(!s_.ok && strstr(s_.msg, needle), "expected an error with \"%s\", got: %s", needle, s_.ok ? "ok" : s_.msg); \
    } while (0)

Test(hf, safetensors_validation_rules) {
    char d[64] = {0};
    cr_expect(parse_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", d, 8).ok, "a valid file must parse");
    cr_expect(parse_st("{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,2]}}", d, 2).ok,
              "0-rank tensors are legal");
    cr_expect(parse_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]}}", d, 0).ok, "empty tensors are legal");
    EXPECT_ERR(parse_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", d, 8), "not valid JSON");
    EXPECT_ERR(parse_st("[1,2]", d, 0), "JSON object");
    EXPECT_ERR(parse_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", d, 8),
               "duplicate key");
    EXPECT_ERR(parse_st("{\"a\":{\"dtype\":\"Q8\",\"shape\":[1],\"data_offsets\":[0,1]}}", d, 1), "unknown dtype");
    EXPECT_ERR(parse_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", d, 4), "shape[0]");
    EXPECT_ERR(parse_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", d, 4), "shape[0]");
    EXPECT_ERR(parse_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", d, 4), "begin <= end");
    EXPECT_ERR(parse_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", d, 8), "needs 12");
    EXPECT_ERR(parse_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", d, 8), "a gap");
    EXPECT_ERR(parse_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", d, 8),
               "an overlap");
    EXPECT_ERR(parse_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", d, 12), "trailing or missing");
    EXPECT_ERR(parse_st("{\"__metadata__\":{\"n\":1}}", d, 0), "__metadata__");
    EXPECT_ERR(parse_st("{\"a\":{\"dtype\":\"F4\",\"shape\":[1],\"data_offsets\":[0,1]}}", d, 1), "whole number of bytes");
    EXPECT_ERR(parse_st("{\"a\":{\"dtype\":\"U8\",\"shape\":[99999999999999, 99999999999999],\"data_offsets\":[0,1]}}", d, 1), "overflows");
    EXPECT_ERR(parse_st("{\"\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", d, 4), "UTF-8");
    /* the header-length field itself */
    uint8_t big[8] = {0, 0, 0, 0, 1, 0, 0, 0}; /* 2^32 > 100 MB */
    hf_weights *w = hf_weights_new_empty();
    EXPECT_ERR(hf_safetensors_parse(big, 8, 1 << 20, "t", w, 0), "100 MB");
    uint8_t small[8] = {100, 0, 0, 0, 0, 0, 0, 0};
    EXPECT_ERR(hf_safetensors_parse(small, 8, 50, "t", w, 0), "past the end");
    EXPECT_ERR(hf_safetensors_parse(small, 5, 5, "t", w, 0), "too small");
    hf_weights_close(w);
}

/* ---- hostile pickles ------------------------------------------------------------------------------------------------ */

Test(hf, hostile_and_damaged_bins_are_refused) {
    hf_weights *w;
    sx_status s = hf_weights_open(FIX "/bad/evil_global.bin", &w);
    cr_expect(!s.ok && strstr(s.msg, "refused global") && (strstr(s.msg, "posix.system") || strstr(s.msg, "os.system")), "got: %s", s.msg);
    s = hf_weights_open(FIX "/bad/bad_opcode.bin", &w);
    cr_expect(!s.ok && strstr(s.msg, "refused pickle opcode"), "got: %s", s.msg);
    s = hf_weights_open(FIX "/bad/compressed.bin", &w);
    cr_expect(!s.ok && strstr(s.msg, "compressed"), "got: %s", s.msg);
    s = hf_weights_open(FIX "/bad/no_pickle.bin", &w);
    cr_expect(!s.ok && strstr(s.msg, "data.pkl"), "got: %s", s.msg);
    /* a fuzzer finding (a ZIP64 record offset past the end of a short file): now an error, not an overflow */
    s = hf_weights_open(FIX "/bad/fuzz_zip64_underflow.bin", &w);
    cr_expect(!s.ok, "the fuzzer's input must be refused");
    s = hf_weights_open(FIX "/nonexistent", &w);
    cr_expect(!s.ok && strstr(s.msg, "no such file"), "got: %s", s.msg);
    s = hf_weights_open(FIX, &w); /* a folder without weights */
    cr_expect(!s.ok && strstr(s.msg, "no weights"), "got: %s", s.msg);
}

/* Every prefix length (stride 7) and 3000 single-bit flips of both formats: errors are fine, crashes are not (the
 * sanitizer build turns any out-of-bounds read into a failure). */
Test(hf, truncations_and_bit_flips_never_crash, .timeout = 300) {
    const char *files[2] = {FIX "/bin_bf16/pytorch_model.bin", FIX "/safetensors/model.safetensors"};
    for (int k = 0; k < 2; k++) {
        size_t n;
        uint8_t *b = (uint8_t *)tu_slurp(files[k], &n);
        int errors = 0, runs = 0;
        for (size_t len = 0; len < n; len += 7, runs++) {
            hf_weights *w = hf_weights_new_empty();
            sx_status s = k == 0 ? hf_torchbin_parse_bytes(b, len, "t", w, 0) : hf_safetensors_parse(b, len, len, "t", w, 0);
            errors += !s.ok;
            hf_weights_close(w);
        }
        ag_rng_key key = ag_rng_make(9, (uint64_t)k, 0);
        for (int f = 0; f < 3000; f++, runs++) {
            uint32_t r[4];
            ag_philox(key, (uint64_t)f, r);
            size_t pos = r[0] % n;
            b[pos] ^= (uint8_t)(1u << (r[1] % 8));
            hf_weights *w = hf_weights_new_empty();
            sx_status s = k == 0 ? hf_torchbin_parse_bytes(b, n, "t", w, 0) : hf_safetensors_parse(b, n, n, "t", w, 0);
            errors += !s.ok;
            hf_weights_close(w);
            b[pos] ^= (uint8_t)(1u << (r[1] % 8));
        }
        printf("%s: %d damaged variants parsed, %d refused with an error, no crash\n", files[k], runs, errors);
        cr_expect(errors > 0, "damage was never detected");
        free(b);
    }
}
