/* The model beyond HF parity: config validation, parameter counts, the relative-position bucket table, a whole-model
 * finite-difference gradient check in f64, the Switch knobs of SPEC 9 and the dense equivalence of a one-expert
 * Switch layer. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "train/model/model.h"
#include "tests/tutil.h"

static model_config tiny_config(void) {
    model_config c = tu_tiny_config((tu_dims){.V = 13, .D = 6, .K = 3, .F = 7, .H = 2, .E = 3});
    c.expert_capacity = 3;
    return c;
}

Test(model_config, errors_name_the_key) {
    model_config c;
    sx_status s = tu_model_config_json("{\"num_expert\": 8}", &c);
    cr_assert(!s.ok);
    cr_expect(strstr(s.msg, "num_expert") && strstr(s.msg, "did you mean 'num_experts'"), "got: %s", s.msg);
    s = tu_model_config_json("{\"d_model\": \"768\"}", &c);
    cr_expect(!s.ok && strstr(s.msg, "test.json.d_model"), "got: %s", s.msg);
    s = tu_model_config_json("{\"num_experts\": 0}", &c);
    cr_expect(!s.ok && strstr(s.msg, "num_experts"), "got: %s", s.msg);
    s = tu_model_config_json("{\"num_layers\": 4, \"encoder_sparse_step\": 5}", &c);
    cr_expect(!s.ok && strstr(s.msg, "encoder_sparse_step"), "got: %s", s.msg);
    s = tu_model_config_json("{\"dense_act_fn\": \"swiglu\"}", &c);
    cr_expect(!s.ok && strstr(s.msg, "dense_act_fn"), "got: %s", s.msg);
    s = tu_model_config_json("{\"switchc\": {\"capacity_mode\": \"ceil\"}}", &c);
    cr_expect(!s.ok && strstr(s.msg, "capacity_mode"), "got: %s", s.msg);
    s = tu_model_config_json("{\"dropout_rate\": 1.5}", &c);
    cr_expect(!s.ok && strstr(s.msg, "dropout_rate"), "got: %s", s.msg);
}

Test(model_config, switch_base_8_loads_with_the_real_parameter_count) {
    model_config c;
    sx_status s = model_config_load(SX_SOURCE_DIR "/configs/models/switch-base-8.json", &c);
    cr_assert(s.ok, "%s", s.msg);
    cr_expect_eq(c.encoder_sparse_step, 2);
    cr_expect_eq(c.d_ff, 3072);
    cr_expect_eq(c.router_jitter_noise, 0.0);
    model m;
    cr_assert(model_init(&m, &c).ok);
    /* SPEC 2.2: 619,339,008 unique parameters (tied tensors once) */
    cr_expect_eq(model_param_count(&m), 619339008LL, "param count %lld", (long long)model_param_count(&m));
    int sparse = 0;
    for (int i = 0; i < 12; i++) sparse += m.enc[i].sparse * (1 << i);
    cr_expect_eq(sparse, 0xAAA, "sparse encoder blocks must be 1,3,5,7,9,11 (mask %x)", sparse);
    int e;
    cr_expect(model_find_param(&m, "decoder.block.11.layer.2.mlp.experts.expert_7.wo.weight", &e) >= 0 && e == 7);
    cr_expect(model_find_param(&m, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", &e) >= 0);
    cr_expect(model_find_param(&m, "lm_head.weight", &e) < 0, "tied: no separate lm_head");
    model_free(&m);
    /* and it round-trips through JSON */
    cJSON *j = model_config_to_json(&c);
    model_config c2;
    s = model_config_from_json(j, "roundtrip", &c2);
    cJSON_Delete(j);
    cr_assert(s.ok, "%s", s.msg);
    cr_expect(!memcmp(&c, &c2, sizeof c), "config differs after a JSON round trip");
}

/* SPEC 3.5's derived tables. */
Test(model, relative_position_buckets_match_spec_tables) {
    static const int enc_lo[] = {0, 8, 12, 16, 23, 32, 46, 64, 91}, enc_b[] = {-1, 8, 9, 10, 11, 12, 13, 14, 15};
    for (int n = 0; n < 300; n++) {
        int expect = n;
        if (n >= 8)
            for (int i = 1; i < 9; i++)
                if (n >= enc_lo[i]) expect = enc_b[i];
        cr_expect_eq(model_relative_bucket(-n, true, 32, 128), expect, "encoder n=%d (key before query)", n);
        if (n > 0) cr_expect_eq(model_relative_bucket(n, true, 32, 128), expect + 16, "encoder n=%d (key after query)", n);
    }
    static const int dec_lo[] = {16, 19, 21, 24, 27, 31, 35, 40, 46, 52, 59, 67, 77, 87, 99, 113};
    for (int n = 0; n < 300; n++) {
        int expect = n < 16 ? n : 16;
        for (int i = 1; i < 16; i++)
            if (n >= dec_lo[i]) expect = 16 + i;
        cr_expect_eq(model_relative_bucket(-n, false, 32, 128), expect, "decoder n=%d", n);
    }
    cr_expect_eq(model_relative_bucket(5, false, 32, 128), 0, "decoder: future keys map to bucket 0");
}

/* ---- whole-model gradient check in f64 -------------------------------------------------------------------------- */

static const int32_t IDS[2 * 5] = {3, 7, 2, 9, 1, 4, 4, 12, 1, 0};
static const int32_t MASK[2 * 5] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0};
static const int32_t LABELS[2 * 4] = {5, 6, 1, -100, 2, 11, 8, 1};

/* The forward of the fixed batch on ctx, a context over act (dropout off: the same loss every call). */
static model_output forward_fixed(model *m, ag_ctx *ctx, ag_arena *act, bool grad) {
    ag_ctx_init(ctx, act);
    ctx->grad_enabled = grad;
    model_batch b = {2, 5, 4, IDS, MASK, LABELS, NULL};
    model_output out;
    model_forward(m, ctx, &b, (model_rng){1, 0, false}, &out);
    return out;
}

static void release(ag_ctx *ctx, ag_arena *act) {
    ag_ctx_free(ctx);
    ag_arena_reset(act);
}

static double loss_of(model *m, ag_arena *act) {
    ag_ctx ctx;
    double l = ag_get(forward_fixed(m, &ctx, act, false).loss, 0);
    release(&ctx, act);
    return l;
}

/* The smallest gap between the best and the second router logit of any token. */
static double route_margin(model *m, ag_arena *act) {
    ag_ctx ctx;
    model_output out = forward_fixed(m, &ctx, act, false);
    double margin = INFINITY;
    for (int r = 0; r < out.n_routes; r++) {
        ag_tensor *lg = out.routes[r].logits;
        int64_t E = lg->shape[1];
        for (int64_t t = 0; t < lg->shape[0]; t++) {
            double best = -INFINITY, second = -INFINITY;
            for (int64_t e = 0; e < E; e++) {
                double v = ag_get(lg, t * E + e);
                if (v > best) {
                    second = best;
                    best = v;
                } else if (v > second)
                    second = v;
            }
            if (best - second < margin) margin = best - second;
        }
    }
    release(&ctx, act);
    return margin;
}

static void model_gradcheck(model_config c, const char *what) {
    model m;
    cr_assert(model_init_dtype(&m, &c, AG_F64).ok);
    model_init_weights(&m, 7);
    ag_arena act;
    ag_arena_init(&act, "gradcheck", 1 << 20);
    /* Routing is piecewise constant: with every top-1 logit margin >> h the finite differences never flip a choice. */
    double margin = route_margin(&m, &act);
    printf("%s: smallest router logit margin %.3e\n", what, margin);
    cr_assert(margin > 1e-3, "%s: the test point's routing margin %.3e is too small for finite differences", what, margin);
    ag_ctx ctx;
    ag_backward(&ctx, forward_fixed(&m, &ctx, &act, true).loss);
    release(&ctx, &act);
    const double h = 1e-6;
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < m.n_params; i++) {
        ag_tensor *w = m.t[i];
        double max_err = 0, max_num = 0;
        for (int64_t j = 0; j < w->numel; j++) {
            double x0 = ag_get(w, j);
            ag_set(w, j, x0 + h);
            double fp = loss_of(&m, &act);
            ag_set(w, j, x0 - h);
            double fm = loss_of(&m, &act);
            ag_set(w, j, x0);
            double num = (fp - fm) / (2 * h), ana = ag_get(w->grad, j);
            max_err = fmax(max_err, fabs(num - ana));
            max_num = fmax(max_num, fabs(num));
        }
        double rel = max_err / fmax(max_num, 1e-8);
        if (rel > worst) {
            worst = rel;
            worst_name = m.params[i].name;
        }
        cr_expect(rel <= 1e-6, "%s: %s gradient rel error %.3e", what, m.params[i].name, rel);
    }
    printf("%s: worst gradient rel error %.3e (%s)\n", what, worst, worst_name);
    ag_arena_free(&act);
    model_free(&m);
}

/* Tolerance 1e-6 as for the single ops: everything is f64, the function is smooth at the test point. */
Test(model, whole_model_gradcheck_f64, .timeout = 300) {
    model_config c = tiny_config();
    model_gradcheck(c, "relu, tied, capacity 3 (drops)");
}

Test(model, whole_model_gradcheck_variants, .timeout = 300) {
    model_config c = tiny_config();
    tu_model_variants(&c);
    model_gradcheck(c, "gated gelu, untied, router bias, top-2, per-layer losses, step 1");
}

/* ---- knobs ------------------------------------------------------------------------------------------------------ */

Test(moe, capacity_from_factor_rounds_like_flaxformer) {
    cr_expect_eq(moe_capacity_from_factor(1.25, 100, 8, 4), 16); /* round(15.625) */
    cr_expect_eq(moe_capacity_from_factor(1.0, 10, 8, 4), 4);    /* the minimum wins */
    cr_expect_eq(moe_capacity_from_factor(2.0, 4096, 8, 4), 1024);
    cr_expect_eq(moe_capacity_from_factor(0, 4096, 8, 4), -1, "cf 0 = dropless");
}

/* A Switch layer with one expert and room for every token is a dense FFN of the same width scaled by the gate,
 * and the gate of a one-expert softmax is exactly 1. */
Test(moe, one_expert_equals_dense_ffn) {
    int64_t N = 11, D = 6, F = 9, E = 1;
    tu_layer l;
    tu_layer_init(&l, N, D, F, E, 1 << 16);
    ag_ctx *ctx = &l.ctx;
    ag_tensor *x = l.x, *wr = l.wr, *wi = l.wi, *wo = l.wo;
    tu_layer_fill_normal(&l, 3);
    moe_config mc = {.num_experts = 1, .top_k = 1, .group_tokens = N, .capacity = N, .act = AG_ACT_RELU};
    moe_weights w = {.router_w = wr, .wi = wi, .wo = wo};
    moe_output mo;
    moe_switch_forward(ctx, &mc, &w, x, ag_rng_make(0, 0, 0), ag_rng_make(0, 0, 1), &mo);
    ag_tensor *wi2 = ag_reshapev(ctx, wi, F, D), *wo2 = ag_reshapev(ctx, wo, D, F);
    ag_tensor *dense = ag_matmul(ctx, ag_relu(ctx, ag_matmul(ctx, x, wi2, false, true)), wo2, false, true);
    double md = 0;
    for (int64_t i = 0; i < N * D; i++) md = fmax(md, fabs(ag_get(mo.y, i) - ag_get(dense, i)));
    cr_expect(md == 0, "one-expert Switch layer differs from the dense FFN by %.3e (same GEMMs, gate exactly 1)", md);
    cr_expect_eq(mo.n_dropped, 0);
    tu_layer_free(&l);
}

/* Capacity: per group, left to right; dropped tokens output exactly zero. */
Test(moe, capacity_drops_later_tokens_and_zeroes_them) {
    int64_t N = 8, D = 4, F = 5, E = 2;
    tu_layer l;
    tu_layer_init(&l, N, D, F, E, 1 << 16);
    ag_ctx *ctx = &l.ctx;
    ag_tensor *x = l.x, *wr = l.wr, *wi = l.wi, *wo = l.wo;
    for (int64_t i = 0; i < N * D; i++) ag_set(x, i, 1.0 + 0.1 * (double)(i % 5));
    ag_set(wr, 0, 1.0); /* every token prefers expert 0: its logit is x[0] > 0 */
    for (int64_t i = 0; i < wi->numel; i++) ag_set(wi, i, 0.1);
    for (int64_t i = 0; i < wo->numel; i++) ag_set(wo, i, 0.2);
    moe_config mc = {.num_experts = (int)E, .top_k = 1, .group_tokens = 4, .capacity = 3, .act = AG_ACT_RELU};
    moe_weights w = {.router_w = wr, .wi = wi, .wo = wo};
    moe_output mo;
    moe_switch_forward(ctx, &mc, &w, x, ag_rng_make(0, 0, 0), ag_rng_make(0, 0, 1), &mo);
    for (int64_t t = 0; t < N; t++) {
        bool expect_kept = (t % 4) < 3; /* two groups of 4 tokens, capacity 3 each */
        cr_expect_eq(mo.kept[t], expect_kept, "token %lld kept=%d", (long long)t, mo.kept[t]);
        cr_expect_eq(mo.loss_index[t], 0);
        for (int64_t j = 0; j < D; j++)
            if (!expect_kept) cr_expect(ag_get(mo.y, t * D + j) == 0.0, "dropped token %lld has a non-zero output", (long long)t);
    }
    cr_expect_eq(mo.n_dropped, 2);
    cr_expect_eq(mo.tokens_per_expert[0], 6);
    tu_layer_free(&l);
}
