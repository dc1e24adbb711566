/* Expert-choice routing (moe/route.c, moe/switch.c): a hand-made routing case with every array written out, the
 * layer against a PyTorch reference written from the paper (scripts/make_expert_choice_fixture.py: forward and the
 * gradients of every input), a finite-difference gradient check, and the router kept in fp32 when the context asks
 * for bf16 operands.
 * Tolerances: the reference and this code both compute in float64 with different summation orders, so outputs and
 * gradients agree to ~1e-15 relative; 1e-10 leaves room for that and still catches a wrong token choice (O(1)). The
 * finite-difference check: 1e-6 relative with h = 1e-5 (truncation ~h^2, rounding ~1e-16 / h). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "moe/route.h"
#include "moe/switch.h"
#include "tests/gradcheck.h"
#include "tests/h5fixture.h"
#include "tests/tutil.h"

#include <cjson/cJSON.h>

#define FIX SX_SOURCE_DIR "/tests/fixtures/moe/expert_choice.h5"

/* Three tokens, two experts, one group, capacity 2: expert 0's top two of (0.9, 0.5, 0.4) are tokens 0 and 1,
 * expert 1's of (0.1, 0.5, 0.6) tokens 2 and 1: token 1 is processed twice, tokens 0 and 2 once. */
Test(moe_expert_choice, route_by_hand) {
    const float probs[3 * 2] = {0.9f, 0.1f, 0.5f, 0.5f, 0.4f, 0.6f};
    int32_t choice[6], slot[6], perm[6], gidx[6], li[3];
    uint8_t keep[6];
    int64_t off[3], tpe[2];
    moe_route_result r = {choice, keep, slot, off, tpe, perm, gidx, li, 0, 0, 0};
    moe_route_expert_choice_cpu(probs, 3, 2, 0, 2, &r);
    const uint8_t keep_ref[6] = {1, 0, 1, 1, 0, 1};
    for (int i = 0; i < 6; i++) cr_expect_eq(keep[i], keep_ref[i], "keep[%d] = %d", i, keep[i]);
    const int64_t off_ref[3] = {0, 2, 4};
    for (int i = 0; i < 3; i++) cr_expect_eq(off[i], off_ref[i]);
    const int32_t perm_ref[4] = {0, 1, 1, 2}, gidx_ref[4] = {0, 2, 3, 5};
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(perm[i], perm_ref[i], "perm[%d] = %d", i, perm[i]);
        cr_expect_eq(gidx[i], gidx_ref[i], "gidx[%d] = %d", i, gidx[i]);
    }
    const int32_t slot_ref[6] = {0, -1, 1, 2, -1, 3};
    for (int i = 0; i < 6; i++) cr_expect_eq(slot[i], slot_ref[i], "slot[%d] = %d", i, slot[i]);
    cr_expect_eq(r.n_kept, 4);
    cr_expect_eq(r.n_dropped, 0);
    cr_expect_eq(tpe[0], 2);
    cr_expect_eq(tpe[1], 2);
    cr_expect(li[0] == 0 && li[1] == 0 && li[2] == 1, "argmax per token (first on ties)");
    /* ties: equal probabilities go to the earlier tokens; a token nobody takes counts as dropped */
    const float flat[4 * 2] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    int32_t c2[8], s2[8], p2[8], g2[8], l2[4];
    uint8_t k2[8];
    int64_t o2[3], t2[2];
    moe_route_result r2 = {c2, k2, s2, o2, t2, p2, g2, l2, 0, 0, 0};
    moe_route_expert_choice_cpu(flat, 4, 2, 0, 1, &r2);
    const uint8_t k2_ref[8] = {1, 1, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 8; i++) cr_expect_eq(k2[i], k2_ref[i], "ties: keep[%d] = %d", i, k2[i]);
    cr_expect_eq(r2.n_dropped, 3);
}

static ag_tensor *load(ag_arena *a, hid_t g, const char *name, bool grad) {
    int nd;
    hsize_t dims[8];
    int64_t n;
    double *v = h5f_read(g, name, H5T_NATIVE_DOUBLE, sizeof(double), &nd, dims, &n);
    int64_t shape[4] = {0};
    for (int i = 0; i < nd; i++) shape[i] = (int64_t)dims[i];
    ag_tensor *t = ag_tensor_new(a, AG_F64, nd, shape);
    memcpy(t->data, v, sizeof(double) * (size_t)n);
    free(v);
    t->requires_grad = grad;
    return t;
}

static double rel_err(const ag_tensor *a, const double *ref, int64_t n) {
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        md = fmax(md, fabs(ag_get(a, i) - ref[i]));
        mr = fmax(mr, fabs(ref[i]));
    }
    return md / fmax(mr, 1e-300);
}

typedef struct {
    moe_config mc;
} ec_user;

/* in: x, router, wi, wo */
static ag_tensor *ec_layer(ag_ctx *ctx, ag_tensor **in, void *user) {
    ec_user *u = user;
    moe_weights w = {.router_w = in[1], .wi = in[2], .wo = in[3]};
    moe_output mo;
    moe_switch_forward(ctx, &u->mc, &w, in[0], ag_rng_make(0, 0, 0), ag_rng_make(0, 0, 1), &mo);
    return mo.y;
}

Test(moe_expert_choice, matches_the_pytorch_reference_and_its_gradients) {
    hid_t f = H5Fopen(FIX, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0, "no fixture %s (scripts/make_expert_choice_fixture.py)", FIX);
    const char *cases[] = {"small", "groups", "big_capacity"};
    for (int c = 0; c < 3; c++) {
        hid_t g = H5Gopen2(f, cases[c], H5P_DEFAULT);
        ag_arena a, act;
        ag_arena_init(&a, "w", 1 << 16);
        ag_arena_init(&act, "act", 1 << 18);
        ag_ctx ctx;
        ag_ctx_init(&ctx, &act);
        ag_tensor *in[4] = {load(&a, g, "x", true), load(&a, g, "router", true), load(&a, g, "wi", true), load(&a, g, "wo", true)};
        ag_tensor *R = load(&a, g, "R", false);
        int64_t G, cap;
        hid_t at = H5Aopen(g, "G", H5P_DEFAULT);
        H5Aread(at, H5T_NATIVE_INT64, &G);
        H5Aclose(at);
        at = H5Aopen(g, "capacity", H5P_DEFAULT);
        H5Aread(at, H5T_NATIVE_INT64, &cap);
        H5Aclose(at);
        ec_user u = {{.num_experts = (int)in[1]->shape[0], .routing = MOE_ROUTING_EXPERT_CHOICE, .group_tokens = G, .capacity = cap,
                      .act = AG_ACT_RELU}};
        ag_tensor *y = ec_layer(&ctx, in, &u);
        int64_t n;
        double *yref = h5f_read(g, "y", H5T_NATIVE_DOUBLE, sizeof(double), NULL, NULL, &n);
        double ey = rel_err(y, yref, n);
        cr_expect(ey <= 1e-10, "%s: output differs from the reference by %.3e", cases[c], ey);
        ag_backward(&ctx, ag_sum(&ctx, ag_mul(&ctx, y, R)));
        const char *gn[4] = {"grad_x", "grad_router", "grad_wi", "grad_wo"};
        double worst = 0;
        for (int k = 0; k < 4; k++) {
            double *gref = h5f_read(g, gn[k], H5T_NATIVE_DOUBLE, sizeof(double), NULL, NULL, &n);
            double e = rel_err(in[k]->grad, gref, n);
            worst = fmax(worst, e);
            cr_expect(e <= 1e-10, "%s: %s differs from the reference by %.3e", cases[c], gn[k], e);
            free(gref);
        }
        printf("expert choice %-12s output rel %.2e, gradients rel %.2e (vs PyTorch)\n", cases[c], ey, worst);
        free(yref);
        for (int k = 0; k < 4; k++) in[k]->grad = NULL;
        gc_result gr = gc_check(ec_layer, in, 4, &u, 1e-5, false);
        cr_expect(gr.max_rel <= 1e-6, "%s: finite differences: input %d entry %lld rel %.3e", cases[c], gr.worst_input, (long long)gr.worst_index,
                  gr.max_rel);
        ag_ctx_free(&ctx);
        ag_arena_free(&a);
        ag_arena_free(&act);
        H5Gclose(g);
    }
    H5Fclose(f);
}

/* The router stays fp32 when the context asks for bf16 matmul operands: its matmul is recorded without the flag,
 * the experts' grouped matmuls with it. */
Test(moe_expert_choice, router_stays_fp32_under_bf16_operands) {
    int64_t N = 6, D = 4, F = 5, E = 2;
    tu_layer l;
    tu_layer_init(&l, N, D, F, E, 1 << 18);
    ag_ctx *ctx = &l.ctx;
    ag_tensor *x = l.x, *wr = l.wr, *wi = l.wi, *wo = l.wo;
    ctx->mixed_bf16 = true;
    tu_layer_fill_normal(&l, 5);
    ag_tensor *all[4] = {x, wr, wi, wo};
    for (int k = 0; k < 4; k++) all[k]->requires_grad = true;
    for (int routing = 0; routing < 2; routing++) {
        moe_config mc = {.num_experts = (int)E, .routing = (moe_routing)routing, .top_k = 1, .group_tokens = N, .capacity = N, .act = AG_ACT_RELU};
        moe_weights w = {.router_w = wr, .wi = wi, .wo = wo};
        moe_output mo;
        moe_switch_forward(ctx, &mc, &w, x, ag_rng_make(0, 0, 0), ag_rng_make(0, 0, 1), &mo);
        int router = 0, experts = 0;
        for (int64_t i = 0; i < ctx->tape_len; i++) {
            const ag_node *nd = &ctx->tape[i];
            if (nd->op == AG_OP_MATMUL && nd->in[1] == wr) {
                router++;
                cr_expect_eq(nd->ip[7], 0, "the router matmul was recorded with bf16 operands");
            }
            if (nd->op == AG_OP_GROUPED_MATMUL) {
                experts++;
                cr_expect_eq(nd->ip[1], 1, "the experts' grouped matmul lost the context's bf16 flag");
            }
        }
        cr_expect_eq(router, 1, "one router matmul");
        cr_expect(experts >= 2, "the experts' grouped matmuls");
        cr_expect(ctx->mixed_bf16, "the context's flag is restored");
        ag_ctx_reset(ctx);
    }
    tu_layer_free(&l);
}

/* From the model config: the knob, and a decoder with expert-choice layers is refused naming the key. */
#include "train/model/model_config.h"

Test(moe_expert_choice, selectable_in_the_model_config_encoder_only) {
    const char *ok = "{\"num_layers\": 2, \"num_decoder_layers\": 2, \"num_sparse_encoder_layers\": 1, \"num_sparse_decoder_layers\": 0,"
                     " \"decoder_sparse_step\": 0, \"switchc\": {\"routing\": \"expert_choice\"}}";
    cJSON *j = cJSON_Parse(ok);
    model_config c;
    model_config_defaults(&c);
    sx_status s = model_config_from_json(j, "t.json", &c);
    cJSON_Delete(j);
    cr_assert(s.ok, "%s", s.msg);
    cr_expect(c.expert_choice);
    cJSON *back = model_config_to_json(&c);
    char *text = cJSON_PrintUnformatted(back);
    cr_expect(strstr(text, "\"routing\":\"expert_choice\""), "written back: %s", text);
    free(text);
    cJSON_Delete(back);
    const char *bad = "{\"num_layers\": 2, \"num_decoder_layers\": 2, \"num_sparse_encoder_layers\": 1, \"num_sparse_decoder_layers\": 1,"
                      " \"switchc\": {\"routing\": \"expert_choice\"}}";
    j = cJSON_Parse(bad);
    model_config_defaults(&c);
    s = model_config_from_json(j, "t.json", &c);
    cJSON_Delete(j);
    cr_expect(!s.ok && strstr(s.msg, "switchc.routing") && strstr(s.msg, "future tokens"), "got: %s", s.ok ? "ok" : s.msg);
    j = cJSON_Parse("{\"switchc\": {\"routing\": \"experts\"}}");
    model_config_defaults(&c);
    s = model_config_from_json(j, "t.json", &c);
    cJSON_Delete(j);
    cr_expect(!s.ok && strstr(s.msg, "tokens_choose, expert_choice"), "got: %s", s.ok ? "ok" : s.msg);
}
