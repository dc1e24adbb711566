/* Config fields mean in switchc what they mean to transformers 4.57.6 (SPEC.md 1.1): is_gated_act and
 * feed_forward_proj are ignored as HF's Switch code ignores them (a gated FFN is the knob switchc.gated_ffn);
 * router_dtype other than float32 is refused by name (HF would run the router in that dtype); every ACT2FN name a
 * T5 FFN can use is accepted for dense_act_fn and computes HF's values and derivatives (against torch's, written by
 * scripts/make_act_fixtures.py), anything else is an error naming the key and listing the valid names. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "tests/h5fixture.h"
#include "train/hf/hf_model.h"
#include "tests/tutil.h"

#define ACT_FIXTURE SX_SOURCE_DIR "/tests/fixtures/activations/act2fn.h5"

/* a small model of the config's kind: two blocks per stack, block 1 sparse */
static void shrink(model_config *c) {
    c->vocab_size = 11;
    c->d_model = 8;
    c->d_kv = 2;
    c->num_heads = 2;
    c->d_ff = 6;
    c->num_layers = c->num_decoder_layers = 2;
    c->num_sparse_encoder_layers = c->num_sparse_decoder_layers = 1;
    c->encoder_sparse_step = c->decoder_sparse_step = 2;
    c->num_experts = 2;
}

Test(hf_config, gated_keys_mean_nothing_as_in_hf) {
    model_config c;
    sx_status s = tu_model_config_json("{\"is_gated_act\": true, \"feed_forward_proj\": \"gated-gelu\"}", &c);
    cr_assert(s.ok, "%s", s.msg);
    cr_expect(!c.gated, "is_gated_act / feed_forward_proj must not make the FFNs gated (HF builds wi/wo)");
    cr_expect_eq(c.act, AG_ACT_RELU,
                 "feed_forward_proj must not change the activation (HF: dense_act_fn, default relu)");
    s = tu_model_config_json("{\"dense_act_fn\": \"gelu_new\", \"is_gated_act\": true}", &c);
    cr_assert(s.ok, "%s", s.msg);
    cr_expect(!c.gated && c.act == AG_ACT_GELU_TANH);
    /* the model built from such a config has HF's tensor names */
    model m;
    shrink(&c);
    cr_assert(model_init_inference(&m, &c).ok);
    cr_expect(model_find_param(&m, "encoder.block.0.layer.1.mlp.wi.weight", NULL) >= 0);
    cr_expect(model_find_param(&m, "encoder.block.1.layer.1.mlp.experts.expert_1.wi.weight", NULL) >= 0);
    cr_expect(model_find_param(&m, "encoder.block.0.layer.1.mlp.wi_0.weight", NULL) < 0);
    model_free(&m);
}

Test(hf_config, gated_ffn_is_a_switchc_knob) {
    model_config c;
    sx_status s = tu_model_config_json("{\"dense_act_fn\": \"gelu_new\", \"switchc\": {\"gated_ffn\": true}}", &c);
    cr_assert(s.ok, "%s", s.msg);
    cr_expect(c.gated && c.act == AG_ACT_GELU_TANH);
    cJSON *j = model_config_to_json(&c);
    cr_expect(!cJSON_GetObjectItemCaseSensitive(j, "is_gated_act") &&
                  !cJSON_GetObjectItemCaseSensitive(j, "feed_forward_proj"),
              "the JSON must not say is_gated_act / feed_forward_proj: HF ignores them");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "switchc"), "gated_ffn");
    cr_expect(cJSON_IsTrue(k), "switchc.gated_ffn must be written back");
    model_config c2;
    s = model_config_from_json(j, "roundtrip", &c2);
    cr_assert(s.ok, "%s", s.msg);
    cr_expect(!memcmp(&c, &c2, sizeof c), "config differs after a JSON round trip");
    cJSON_Delete(j);
    /* transformers cannot hold a gated model: export-hf says so instead of writing a folder that loads wrong */
    shrink(&c);
    model m;
    cr_assert(model_init_inference(&m, &c).ok);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/hf_gated_export_%d", SX_BINARY_DIR, (int)getpid());
    s = hf_export(&m, dir);
    cr_expect(!s.ok && strstr(s.msg, "gated_ffn"), "got: %s", s.ok ? "ok" : s.msg);
    model_free(&m);
    s = tu_model_config_json("{\"switchc\": {\"gated_ffn\": 1}}", &c);
    cr_expect(!s.ok && strstr(s.msg, "gated_ffn"), "got: %s", s.ok ? "ok" : s.msg);
}

Test(hf_config, router_dtype_other_than_float32_is_refused_by_name) {
    model_config c;
    cr_expect(tu_model_config_json("{\"router_dtype\": \"float32\"}", &c).ok);
    const char *bad[] = {"bfloat16", "float16"};
    for (int i = 0; i < 2; i++) {
        char js[64];
        snprintf(js, sizeof js, "{\"router_dtype\": \"%s\"}", bad[i]);
        sx_status s = tu_model_config_json(js, &c);
        cr_expect(!s.ok && strstr(s.msg, "test.json.router_dtype") && strstr(s.msg, "float32 only"), "%s: got %s",
                  bad[i], s.ok ? "ok" : s.msg);
    }
    sx_status s = tu_model_config_json("{\"router_dtype\": \"float64\"}", &c);
    cr_expect(!s.ok && strstr(s.msg, "router_dtype") && strstr(s.msg, "float32, bfloat16, float16"), "got %s",
              s.ok ? "ok" : s.msg);
}

Test(hf_config, unknown_activations_are_named_with_the_valid_ones) {
    model_config c;
    sx_status s = tu_model_config_json("{\"dense_act_fn\": \"swiglu\"}", &c);
    cr_expect(!s.ok && strstr(s.msg, "test.json.dense_act_fn") && strstr(s.msg, "'swiglu'") && strstr(s.msg, "silu") &&
                  strstr(s.msg, "gelu_new") && strstr(s.msg, "relu"),
              "got: %s", s.ok ? "ok" : s.msg);
    s = tu_model_config_json("{\"dense_act_fn\": \"gelu_neww\"}", &c);
    cr_expect(!s.ok && strstr(s.msg, "did you mean 'gelu_new'"), "got: %s", s.ok ? "ok" : s.msg);
    s = tu_model_config_json("{\"dense_act_fn\": \"prelu\"}", &c);
    cr_expect(!s.ok && strstr(s.msg, "dense_act_fn") && strstr(s.msg, "learnable"), "got: %s", s.ok ? "ok" : s.msg);
    s = tu_model_config_json("{\"dense_act_fn\": 3}", &c);
    cr_expect(!s.ok && strstr(s.msg, "dense_act_fn"), "got: %s", s.ok ? "ok" : s.msg);
}

/* ---- every ACT2FN name against torch ------------------------------------------------------------------------------
 */

typedef struct {
    char names[64][32];
    int n;
} name_list;

static herr_t collect(hid_t g, const char *name, const H5L_info_t *info, void *u) {
    name_list *l = u;
    if (strcmp(name, "x") && l->n < 64)
        snprintf(l->names[l->n++], sizeof l->names[0], "%s", name);
    return 0;
}

static double rel_err(const float *a, const float *ref, int64_t n, int64_t *worst) {
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= md)) {
            md = d;
            *worst = i;
        }
        mr = fmax(mr, fabs(ref[i]));
    }
    return md / (mr > 0 ? mr : 1.0);
}

/* Tolerance: both sides are float32 formulas over libm-class functions (glibc's expf/tanhf/erff/log1pf here, torch's
 * SLEEF/MKL ones there), a few ulp apart: 1e-6 of the largest magnitude, forward and derivative. */
Test(hf_config, every_act2fn_name_computes_hf_values_and_derivatives) {
    hid_t f = h5f_open(ACT_FIXTURE, "scripts/make_act_fixtures.py");
    name_list l = {.n = 0};
    H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, NULL, collect, &l);
    cr_assert(l.n >= 18, "the fixture holds %d activations", l.n);
    int64_t N;
    float *x = h5f_floats(f, "x", &N);
    ag_arena in, act;
    ag_arena_init(&in, "in", 1 << 16);
    ag_arena_init(&act, "act", 1 << 20);
    ag_ctx ctx;
    ag_ctx_init(&ctx, &act);
    int fails = 0;
    for (int i = 0; i < l.n; i++) {
        char js[96], path[96];
        snprintf(js, sizeof js, "{\"dense_act_fn\": \"%s\"}", l.names[i]);
        model_config c;
        sx_status s = tu_model_config_json(js, &c);
        cr_expect(s.ok, "HF's ACT2FN name '%s' must be accepted: %s", l.names[i], s.ok ? "" : s.msg);
        if (!s.ok) {
            fails++;
            continue;
        }
        ag_tensor *t = ag_tensor_new(&in, AG_F32, 1, AG_SHAPE(N));
        memcpy(t->data, x, sizeof(float) * (size_t)N);
        t->requires_grad = true;
        ag_tensor *y = ag_act(&ctx, c.act, t);
        ag_backward(&ctx, ag_sum(&ctx, y));
        snprintf(path, sizeof path, "%s/y", l.names[i]);
        float *ry = h5f_floats(f, path, NULL);
        snprintf(path, sizeof path, "%s/dydx", l.names[i]);
        float *rd = h5f_floats(f, path, NULL);
        int64_t wy = 0, wd = 0;
        double ey = rel_err(y->data, ry, N, &wy), ed = rel_err(ag_grad_of(&ctx, t)->data, rd, N, &wd);
        bool ok = ey <= 1e-6 && ed <= 1e-6;
        printf("  %-18s y rel err %.2e (worst x = %g), dy/dx rel err %.2e (worst x = %g)%s\n", l.names[i], ey, x[wy],
               ed, x[wd], ok ? "" : "  <-- FAIL");
        fails += !ok;
        free(ry);
        free(rd);
        ag_ctx_reset(&ctx);
    }
    cr_expect_eq(fails, 0, "%d activations differ from HF's", fails);
    free(x);
    ag_ctx_free(&ctx);
    ag_arena_free(&in);
    ag_arena_free(&act);
    H5Fclose(f);
}

Test(hf_config, max_distance_must_leave_the_decoder_log_buckets_room) {
    model_config c;
    sx_status s = tu_model_config_json("{\"relative_attention_num_buckets\": 32, \"relative_attention_max_distance\": 16}", &c);
    cr_expect(!s.ok && strstr(s.msg, "relative_attention_max_distance"), "got: %s", s.ok ? "ok" : s.msg);
    cr_expect(tu_model_config_json("{\"relative_attention_num_buckets\": 32, \"relative_attention_max_distance\": 17}", &c).ok);
    s = tu_model_config_json("{\"relative_attention_num_buckets\": 3, \"relative_attention_max_distance\": 17}", &c);
    cr_expect(!s.ok && strstr(s.msg, "relative_attention_num_buckets"), "got: %s", s.ok ? "ok" : s.msg);
}
