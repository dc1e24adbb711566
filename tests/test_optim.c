/* Optimizers and schedules against torch.optim.AdamW and transformers' Adafactor and schedules (fixture written by
 * scripts/make_optim_fixtures.py): five steps on a 2-D matrix, a 1-D norm (no weight decay) and a [3, 4, 5] expert
 * block (three separate [4, 5] weights on the torch side), with and without idle experts, and 60 steps of each
 * schedule.
 * Tolerance on parameters: 2e-6 relative to their largest entry: both sides update in float32 with different
 * operation orders (means, rsqrt, RMS); parameters ~1 move by ~1e-3 per step, and a few float32 ulps of 1 (6e-8)
 * per step over 5 steps stay well below it. Schedules: 1e-12 (double arithmetic on both sides). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "tests/h5fixture.h"
#include "train/optim.h"
#include "train/schedule.h"

#define FIX SX_SOURCE_DIR "/tests/fixtures/optim/optim.h5"
static const char *NAMES[3] = {"w2", "n1", "e3"};

static void run1(const char *name, optim_config cfg) {
    hid_t f = H5Fopen(FIX, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0);
    optim_param p[3] = {{"w2", 0, 2, {5, 7}, true, 0, false}, {"n1", 48, 1, {7}, false, 0, false}, {"e3", 64, 3, {3, 4, 5}, true, 1, false}};
    float w[124] = {0}, g[124] = {0};
    int64_t numel[3] = {35, 7, 60};
    char path[128];
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "init/%s", NAMES[k]);
        int64_t n;
        float *v = h5f_floats(f, path, &n);
        cr_assert_eq(n, numel[k]);
        memcpy(w + p[k].offset, v, sizeof(float) * (size_t)n);
        free(v);
    }
    optim *o;
    sx_status s = optim_init(&o, &cfg, p, 3);
    cr_assert(s.ok, "%s", s.msg);
    double worst = 0;
    snprintf(path, sizeof path, "%s/active", name);
    int64_t na;
    uint8_t *act = h5f_read(f, path, H5T_NATIVE_UINT8, 1, NULL, NULL, &na);
    cr_assert_eq(na, 15);
    cr_assert_eq(optim_unit_count(o), 5, "w2, n1 and three experts");
    for (int t = 1; t <= 5; t++) {
        for (int k = 0; k < 3; k++) {
            snprintf(path, sizeof path, "grads/step%d/%s", t, NAMES[k]);
            float *v = h5f_floats(f, path, NULL);
            memcpy(g + p[k].offset, v, sizeof(float) * (size_t)numel[k]);
            free(v);
        }
        uint8_t active[5] = {1, 1, act[(t - 1) * 3], act[(t - 1) * 3 + 1], act[(t - 1) * 3 + 2]};
        optim_step(o, w, g, cfg.lr, active);
        for (int k = 0; k < 3; k++) {
            snprintf(path, sizeof path, "%s/step%d/%s", name, t, NAMES[k]);
            float *ref = h5f_floats(f, path, NULL);
            double md = 0, mr = 0;
            for (int64_t i = 0; i < numel[k]; i++) {
                md = fmax(md, fabs((double)w[p[k].offset + i] - ref[i]));
                mr = fmax(mr, fabs(ref[i]));
            }
            free(ref);
            worst = fmax(worst, md / mr);
            cr_expect(md / mr <= 2e-6, "%s step %d %s: rel error %.3e", name, t, NAMES[k], md / mr);
        }
    }
    printf("%-22s worst parameter rel error over 5 steps: %.3e\n", name, worst);
    /* a unit's step count is the number of steps it was updated in */
    for (int e = 0; e < 3; e++) {
        int64_t want = 0;
        for (int t = 0; t < 5; t++) want += act[t * 3 + e];
        cr_expect_eq(optim_step_counts(o)[2 + e], want, "%s: expert %d stepped %lld times, want %lld", name, e,
                     (long long)optim_step_counts(o)[2 + e], (long long)want);
    }
    free(act);
    optim_free(o);
    H5Fclose(f);
}

static void run(const char *name, optim_config cfg) {
    char idle[64];
    run1(name, cfg);
    snprintf(idle, sizeof idle, "%s_idle", name);
    run1(idle, cfg);
}

Test(optim, adamw_matches_torch) {
    run("adamw", (optim_config){.kind = OPTIM_ADAMW, .lr = 1e-3, .weight_decay = 0.01, .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-8});
}

static optim_config adafactor(double lr, bool rel, double beta1) {
    return (optim_config){.kind = OPTIM_ADAFACTOR, .lr = lr, .decay_rate = -0.8, .clip_threshold = 1.0, .eps1 = 1e-30, .eps2 = 1e-3,
                          .relative_step = rel, .scale_parameter = rel, .beta1_adafactor = beta1};
}

Test(optim, adafactor_relative_step_matches_hf) { run("adafactor_rel", adafactor(0, true, 0)); }
Test(optim, adafactor_fixed_lr_matches_hf) { run("adafactor_fixed", adafactor(1e-3, false, 0)); }
Test(optim, adafactor_beta1_matches_hf) { run("adafactor_beta1", adafactor(1e-3, false, 0.9)); }

Test(optim, schedules_match_transformers) {
    hid_t f = H5Fopen(FIX, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0);
    struct {
        const char *name;
        sched_kind k;
    } S[] = {{"constant_warmup", SCHED_LINEAR_WARMUP}, {"cosine", SCHED_COSINE}, {"linear", SCHED_LINEAR_DECAY}, {"inverse_sqrt", SCHED_INVERSE_SQRT}};
    for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "schedules/%s", S[i].name);
        double *ref = h5f_read(f, path, H5T_NATIVE_DOUBLE, sizeof(double), NULL, NULL, NULL);
        sched_config c = {S[i].k, 0.5, 10, 60, 0.0};
        double md = 0;
        for (int t = 1; t <= 60; t++) md = fmax(md, fabs(sched_lr(&c, t) - ref[t - 1]));
        printf("schedule %-16s max abs difference %.3e\n", S[i].name, md);
        cr_expect(md <= 1e-12, "%s: differs from transformers by %.3e", S[i].name, md);
        free(ref);
    }
    H5Fclose(f);
    sched_kind k;
    sx_status s = sched_parse_kind("cosin", &k);
    cr_expect(!s.ok && strstr(s.msg, "cosine"), "got: %s", s.msg);
}

Test(optim, frozen_parameters_and_clipping) {
    optim_param p[2] = {{"a", 0, 1, {4}, true, 0, false}, {"b", 16, 1, {4}, true, 0, true}};
    float w[20] = {1, 1, 1, 1}, g[20] = {3, 4, 0, 0};
    for (int i = 16; i < 20; i++) {
        w[i] = 2;
        g[i] = 100; /* frozen: must neither move nor count in the norm */
    }
    optim *o;
    optim_config c = {.kind = OPTIM_ADAMW, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    cr_assert(optim_init(&o, &c, p, 2).ok);
    cr_expect_eq(optim_state_count(o), 2, "state only for the trainable parameter");
    double norm = optim_clip_grad_norm(g, p, 2, 1.0);
    cr_expect(fabs(norm - 5.0) < 1e-12, "norm %g", norm);
    cr_expect(fabs(g[0] - 3.0 / (5.0 + 1e-6)) < 1e-6 && fabs(g[1] - 4.0 / (5.0 + 1e-6)) < 1e-6, "clipped to norm 1 (torch's max/(norm+1e-6))");
    optim_step(o, w, g, 0.1, NULL);
    for (int i = 16; i < 20; i++) cr_expect(w[i] == 2.0f, "a frozen parameter moved");
    cr_expect(w[0] != 1.0f, "the trainable parameter did not move");
    optim_free(o);
}

/* The sums of squares of the step's norm, per set of spans, and a device the build cannot serve: an error, not an
 * abort. */
Test(optim, sums_per_set_and_a_missing_device) {
    float g[8] = {1, 2, 3, 4, 5, 6, 7, NAN};
    optim_span spans[3] = {{0, 2}, {2, 3}, {5, 2}};
    int set[3] = {1, 0, 1};
    double out[3] = {-1, -1, -1};
    optim_sumsq(AG_DEV_CPU, g, spans, set, 3, 3, out);
    cr_expect(out[0] == 9 + 16 + 25 && out[1] == 1 + 4 + 36 + 49 && out[2] == 0, "sums %g %g %g", out[0], out[1], out[2]);
    optim_sumsq(AG_DEV_CPU, g, &(optim_span){6, 2}, NULL, 1, 1, out);
    cr_expect(isnan(out[0]), "a NaN in a span must make its sum NaN");
    optim_scale(AG_DEV_CPU, g, spans, 1, 0.5f);
    cr_expect(g[0] == 0.5f && g[1] == 1.0f && g[2] == 3.0f, "scaled only inside the span");
    if (ag_cuda_device_count() > 0) return; /* a CUDA build on a GPU machine: AG_DEV_CUDA is served */
    optim_param p = {"a", 0, 1, {4}, true, 0, false};
    optim_config c = {.kind = OPTIM_ADAMW, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .device = AG_DEV_CUDA};
    optim *o = NULL;
    sx_status s = optim_init(&o, &c, &p, 1);
    cr_expect(!s.ok && strstr(s.msg, "CUDA device"), "AG_DEV_CUDA without a device: %s", s.ok ? "accepted" : s.msg);
    cr_expect_null(o);
}
