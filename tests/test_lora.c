/* LoRA fine-tuning is the same run as transformers 4.57.6 + peft 0.21.2 (scripts/make_lora_fixtures.py): LoRA on
 * q and v, and LoRA inside every expert (wi, wo), 20 AdamW steps from peft's own initial adapter (train
 * --init-adapter), on the fine-tuning fixture's base and examples; peft's trained adapter loads and gives peft's
 * logits; the adapter export reads back; the merged export gives the adapter model's logits; the base carries no
 * gradient; bad specs and adapter folders are errors naming the key or file.
 *
 * Tolerances:
 * - step losses within 1e-5 relative: as tests/test_finetune.c (the forward agrees with transformers to ~1e-7, the
 *   20 steps drift by float32 rounding of different summation orders);
 * - final adapters within 1e-3 of their tensor's largest entry: AdamW turns rounding-level differences of tiny
 *   gradients into visible ones in single entries (test_finetune.c), and B starts at zero, so its scale is the 20
 *   updates of lr 1e-3 themselves;
 * - logits within 1e-6 of the largest logit: one eval forward, fp32 against fp32 (~1e-7 measured, see the printed
 *   figures); the adapter's extra matmuls add rounding of the same size;
 * - merged against unmerged within 1e-6 for the same reason (peft's own merge_and_unload differs from its adapter
 *   model by ~5e-7 on this fixture). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/finetune_fixture.h"
#include "train/cfg_util.h"
#include "train/hf/hf_model.h"
#include "train/lora.h"
#include "train/model/model.h"
#include "train/trainer.h"

#define BASE SX_SOURCE_DIR "/tests/fixtures/finetune/model"
#define FT_TRAJ SX_SOURCE_DIR "/tests/fixtures/finetune/trajectories.h5"
#define LORA SX_SOURCE_DIR "/tests/fixtures/lora"
#define STEPS 20

static void remove_tree(const char *path) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    cr_expect(system(cmd) == 0, "cannot remove %s", path);
}

static double max_rel(const float *a, const float *ref, int64_t n) {
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - ref[i]));
        mr = fmax(mr, fabs(ref[i]));
    }
    return md / fmax(mr, 1e-30);
}

/* The model of case 'name' for inference: the base, the case's lora section, peft's adapter from adir (NULL: none). */
static void case_model(const char *name, const char *adir, model *m) {
    hid_t f = H5Fopen(LORA "/trajectories.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0, "no fixture %s (scripts/make_lora_fixtures.py)", LORA "/trajectories.h5");
    hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
    run_config cfg;
    run_config_defaults(&cfg);
    cr_assert(hf_read_config(BASE, &cfg.model).ok);
    ft_apply_sets(g, &cfg);
    H5Gclose(g);
    H5Fclose(f);
    sx_status s = model_init_inference(m, &cfg.model);
    cr_assert(s.ok, "%s", s.msg);
    s = hf_load_weights(m, BASE);
    cr_assert(s.ok, "%s", s.msg);
    if (adir) {
        s = lora_peft_load(m, adir);
        cr_assert(s.ok, "%s", s.msg);
    }
}

/* Eval-mode logits of the fixture's batch [8, T, V] (malloc'd). */
static float *batch_logits(model *m, int64_t *n) {
    hid_t f = H5Fopen(LORA "/trajectories.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    hsize_t d[8];
    int nd;
    int32_t *ids = h5f_ints(f, "logit_batch/input_ids", &nd, d);
    int64_t B = (int64_t)d[0], S = (int64_t)d[1];
    int32_t *mask = h5f_ints(f, "logit_batch/attention_mask", &nd, d);
    int32_t *labels = h5f_ints(f, "logit_batch/labels", &nd, d);
    int64_t T = (int64_t)d[1];
    H5Fclose(f);
    ag_arena act;
    ag_arena_init(&act, "act", 1 << 20);
    ag_ctx ctx;
    ag_ctx_init(&ctx, &act);
    ctx.grad_enabled = false;
    model_batch b = {B, S, T, ids, mask, labels, NULL, 0, 0};
    model_output o;
    model_forward(m, &ctx, &b, (model_rng){0, 0, 0}, &o);
    *n = o.logits->numel;
    float *out = malloc(sizeof(float) * (size_t)*n);
    memcpy(out, o.logits->data, sizeof(float) * (size_t)*n);
    ag_ctx_free(&ctx);
    ag_arena_free(&act);
    free(ids);
    free(mask);
    free(labels);
    return out;
}

static float *fixture_floats(const char *path, int64_t *n) {
    hid_t f = H5Fopen(LORA "/trajectories.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    float *v = h5f_floats(f, path, n);
    H5Fclose(f);
    return v;
}

/* ---- (a) the trajectories -------------------------------------------------------------------------------------- */

/* Every adapter of the run's last checkpoint against peft's final adapter. */
static double compare_final(const char *name, const char *ckpt, const run_config *cfg) {
    model m, ref;
    cr_assert(model_init_inference(&m, &cfg->model).ok);
    sx_status s = trainer_load_params(&m, ckpt);
    cr_assert(s.ok, "%s", s.msg);
    char adir[300];
    snprintf(adir, sizeof adir, LORA "/%s/final", name);
    case_model(name, adir, &ref);
    double worst = 0;
    for (int i = 0; i < m.n_params; i++) {
        const param_desc *p = &m.params[i];
        if (!lora_is_adapter(p)) continue;
        int ne = p->n_experts ? p->n_experts : 1;
        for (int e = 0; e < ne; e++) {
            int64_t per = p->numel / ne;
            double rel = max_rel(m.w + p->offset + e * per, ref.w + ref.params[i].offset + e * per, per);
            cr_expect(rel <= 1e-3, "%s: final %s (expert %d) differs from peft's by %.3e relative", name, p->name, e, rel);
            worst = fmax(worst, rel);
        }
    }
    model_free(&m);
    model_free(&ref);
    return worst;
}

static void replay(const char *name) {
    hid_t ff = H5Fopen(FT_TRAJ, H5F_ACC_RDONLY, H5P_DEFAULT), f = H5Fopen(LORA "/trajectories.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(ff >= 0 && f >= 0, "fixtures missing (scripts/make_finetune_fixtures.py, scripts/make_lora_fixtures.py)");
    char data[400], dir[400], ckpt[700], adir[300];
    snprintf(data, sizeof data, "%s/lora_%s_%d.h5", SX_BINARY_DIR, name, (int)getpid());
    snprintf(dir, sizeof dir, "%s/lora_%s_%d", SX_BINARY_DIR, name, (int)getpid());
    snprintf(adir, sizeof adir, LORA "/%s/initial", name);
    ft_write_dataset(ff, data);
    hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
    cr_assert(g >= 0, "fixture has no case %s", name);
    run_config cfg;
    ft_case_config(g, BASE, data, dir, &cfg);
    cr_assert(run_config_set(&cfg, "optim.name=adamw").ok);
    const char *sets[] = {"data.shuffle=false", "model.dropout_rate=0", "train.batch_size=8", "train.steps=20", "optim.lr=1e-3",
                          "optim.weight_decay=0.01", "schedule.name=linear_decay", "train.grad_clip=1.0"};
    for (size_t k = 0; k < sizeof sets / sizeof sets[0]; k++) cr_assert(run_config_set(&cfg, sets[k]).ok, "%s", sets[k]);
    cr_assert(lora_peft_spec(adir, &cfg.model.lora).ok, "the fixture's adapter agrees with the case's lora section");
    double loss[STEPS];
    trainer_opts o = {.quiet = true, .loss_trace = loss, .init_from = BASE, .init_adapter = adir};
    trainer_result r;
    sx_status s = trainer_run(&cfg, &o, &r);
    cr_assert(s.ok, "%s: %s", name, s.msg);
    cr_assert_eq(r.steps_done, STEPS);
    double *ref = h5f_read(g, "losses", H5T_NATIVE_DOUBLE, 8, NULL, NULL, NULL);
    double worst = 0;
    for (int t = 0; t < STEPS; t++) {
        double rel = fabs(loss[t] - ref[t]) / fabs(ref[t]);
        worst = fmax(worst, rel);
        cr_expect(rel <= 1e-5, "%s step %d: loss %.9g, peft %.9g (rel %.3e)", name, t + 1, loss[t], ref[t], rel);
    }
    cr_expect(fabs(ref[STEPS - 1] - ref[0]) > 1e-3, "%s: the adapters moved the loss (a trajectory to compare)", name);
    free(ref);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt_step%08d.h5", dir, STEPS);
    double wrel = compare_final(name, ckpt, &cfg);
    printf("lora %-8s max step-loss rel diff %.3e, max final-adapter rel diff %.3e\n", name, worst, wrel);
    H5Gclose(g);
    H5Fclose(f);
    H5Fclose(ff);
    unlink(data);
    remove_tree(dir);
}

Test(lora, attention_qv_matches_peft, .timeout = 120) { replay("attn_qv"); }
Test(lora, experts_wi_wo_matches_peft, .timeout = 120) { replay("experts"); }

/* ---- (b) peft's adapter in, switchc's adapter out ------------------------------------------------------------------- */

static void peft_logits(const char *name) {
    char adir[300], path[300];
    snprintf(adir, sizeof adir, LORA "/%s/final", name);
    model m;
    case_model(name, adir, &m);
    int64_t n, nr;
    float *lg = batch_logits(&m, &n);
    snprintf(path, sizeof path, "%s/logits", name);
    float *ref = fixture_floats(path, &nr);
    cr_assert_eq(n, nr);
    double rel = max_rel(lg, ref, n);
    cr_expect(rel <= 1e-6, "%s: logits with peft's trained adapter differ from peft's by %.3e relative", name, rel);
    /* the adapter matters: the base alone is far from it */
    model base;
    case_model(name, NULL, &base);
    float *lb = batch_logits(&base, &n);
    cr_expect(max_rel(lb, ref, n) > 1e3 * rel, "%s: the trained adapter changes the logits", name);
    printf("lora %-8s logits vs peft's: max rel diff %.3e (base alone: %.3e)\n", name, rel, max_rel(lb, ref, n));
    free(lg);
    free(lb);
    free(ref);
    model_free(&m);
    model_free(&base);
}

Test(lora, peft_adapter_gives_peft_logits_attention) { peft_logits("attn_qv"); }
Test(lora, peft_adapter_gives_peft_logits_experts) { peft_logits("experts"); }

/* switchc's export reads back bit for bit, and its adapter_config.json speaks peft. */
static void export_roundtrip(const char *name) {
    char adir[300], out[400], path[500];
    snprintf(adir, sizeof adir, LORA "/%s/final", name);
    snprintf(out, sizeof out, "%s/lora_export_%s_%d", SX_BINARY_DIR, name, (int)getpid());
    model m, back;
    case_model(name, adir, &m);
    sx_status s = lora_peft_export(&m, out, BASE);
    cr_assert(s.ok, "%s", s.msg);
    case_model(name, out, &back);
    for (int i = 0; i < m.n_params; i++)
        if (lora_is_adapter(&m.params[i]))
            cr_expect(!memcmp(m.w + m.params[i].offset, back.w + back.params[i].offset, sizeof(float) * (size_t)m.params[i].numel),
                      "%s: %s changed through the export", name, m.params[i].name);
    snprintf(path, sizeof path, "%s/adapter_config.json", out);
    cJSON *j;
    cr_assert(cfg_parse_file(path, &j).ok);
    cr_expect_str_eq(cJSON_GetObjectItem(j, "peft_type")->valuestring, "LORA");
    cr_expect_eq(cJSON_GetObjectItem(j, "r")->valueint, m.cfg.lora.r);
    cr_expect_eq(cJSON_GetObjectItem(j, "lora_alpha")->valuedouble, m.cfg.lora.alpha);
    cr_expect(cJSON_IsArray(cJSON_GetObjectItem(j, "target_modules")));
    cJSON_Delete(j);
    /* the spec read back from switchc's own export is the run's */
    lora_spec sp;
    memset(&sp, 0, sizeof sp);
    s = lora_peft_spec(out, &sp);
    cr_assert(s.ok, "%s", s.msg);
    cr_expect(sp.r == m.cfg.lora.r && sp.alpha == m.cfg.lora.alpha);
    model_free(&m);
    model_free(&back);
    remove_tree(out);
}

Test(lora, adapter_export_reads_back_attention) { export_roundtrip("attn_qv"); }
Test(lora, adapter_export_reads_back_experts) { export_roundtrip("experts"); }

/* Without a lora section, the adapter's own r, alpha and modules make the run's: a list of names as peft wrote it, a
 * regex as the modules the file holds (one glob per expert block). */
Test(lora, spec_from_peft_config) {
    lora_spec sp;
    memset(&sp, 0, sizeof sp);
    sx_status s = lora_peft_spec(LORA "/attn_qv/initial", &sp);
    cr_assert(s.ok, "%s", s.msg);
    cr_expect(sp.r == 4 && sp.alpha == 8 && !strcmp(sp.targets, "q,v"), "r %d alpha %g targets '%s'", sp.r, sp.alpha, sp.targets);
    memset(&sp, 0, sizeof sp);
    s = lora_peft_spec(LORA "/experts/initial", &sp);
    cr_assert(s.ok, "%s", s.msg);
    cr_expect(sp.r == 4 && sp.alpha == 16 && strstr(sp.targets, "decoder.block.1.layer.2.mlp.experts.expert_*.wo"), "targets '%s'", sp.targets);
    model_config c;
    cr_assert(hf_read_config(BASE, &c).ok);
    c.lora = sp;
    model m;
    s = model_init_inference(&m, &c);
    cr_assert(s.ok, "%s", s.msg);
    s = lora_peft_load(&m, LORA "/experts/initial");
    cr_expect(s.ok, "the derived targets hold exactly the file's adapters: %s", s.msg);
    model_free(&m);
}

/* ---- (c) the merged export ------------------------------------------------------------------------------------------ */

static void merged_logits(const char *name) {
    char adir[300], out[400], path[500];
    snprintf(adir, sizeof adir, LORA "/%s/final", name);
    snprintf(out, sizeof out, "%s/lora_merged_%s_%d", SX_BINARY_DIR, name, (int)getpid());
    model m;
    case_model(name, adir, &m);
    int64_t n, n2, nr;
    float *adapted = batch_logits(&m, &n);
    sx_status s = hf_export(&m, out);
    cr_expect(!s.ok && strstr(s.msg, "--merge"), "an export that would drop the adapters is refused");
    lora_merge(&m);
    s = hf_export(&m, out);
    cr_assert(s.ok, "%s", s.msg);
    model_config c;
    cr_assert(hf_read_config(out, &c).ok);
    cr_assert_eq(c.lora.r, 0, "an HF folder holds no adapters");
    model plain;
    cr_assert(model_init_inference(&plain, &c).ok);
    s = hf_load_weights(&plain, out);
    cr_assert(s.ok, "%s", s.msg);
    float *merged = batch_logits(&plain, &n2);
    snprintf(path, sizeof path, "%s/merged_logits", name);
    float *peft_merged = fixture_floats(path, &nr);
    cr_assert(n == n2 && n == nr);
    double rel = max_rel(merged, adapted, n), relp = max_rel(merged, peft_merged, n);
    cr_expect(rel <= 1e-6, "%s: merged export vs adapter model: %.3e relative", name, rel);
    cr_expect(relp <= 1e-6, "%s: merged export vs peft's merge_and_unload: %.3e relative", name, relp);
    printf("lora %-8s merged export vs adapter logits %.3e, vs peft's merged %.3e\n", name, rel, relp);
    free(adapted);
    free(merged);
    free(peft_merged);
    model_free(&m);
    model_free(&plain);
    remove_tree(out);
}

Test(lora, merged_export_gives_adapter_logits_attention) { merged_logits("attn_qv"); }
Test(lora, merged_export_gives_adapter_logits_experts) { merged_logits("experts"); }

/* ---- memory: the base has no gradient --------------------------------------------------------------------------------- */

Test(lora, base_carries_no_gradient) {
    model_config c;
    cr_assert(hf_read_config(BASE, &c).ok);
    c.lora.r = 4;
    c.lora.alpha = 8;
    snprintf(c.lora.targets, sizeof c.lora.targets, "*.experts.*.wi,*.experts.*.wo");
    model m;
    cr_assert(model_init(&m, &c).ok);
    int64_t adapters = 0;
    for (int i = 0; i < m.n_params; i++) {
        const param_desc *p = &m.params[i];
        if (lora_is_adapter(p)) {
            adapters += p->numel;
            cr_expect(m.t[i]->grad && p->offset + p->numel <= m.n_grad_floats, "%s has its gradient", p->name);
            cr_expect_eq(p->ndim, 3, "%s: one [E, ...] block per layer", p->name);
        } else {
            cr_expect(!m.t[i]->grad && !m.t[i]->requires_grad && p->no_grad, "%s (base) carries no gradient", p->name);
        }
    }
    /* 2 sparse layers x (wi, wo) x (A, B): E * r * (D + F) each, aligned spans at most 15 floats apart */
    int64_t want = 2 * 2 * (int64_t)c.num_experts * 4 * (c.d_model + c.d_ff);
    cr_expect_eq(adapters, want);
    cr_expect(m.n_grad_floats >= adapters && m.n_grad_floats <= adapters + 16 * m.n_params, "gradient buffer %lld floats for %lld",
              (long long)m.n_grad_floats, (long long)adapters);
    model_free(&m);
}

/* ---- resume: checkpoints carry the adapters and their optimizer state ------------------------------------------------ */

Test(lora, resume_is_bitwise, .timeout = 120) {
    hid_t ff = H5Fopen(FT_TRAJ, H5F_ACC_RDONLY, H5P_DEFAULT), f = H5Fopen(LORA "/trajectories.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    char data[400], dir[400], cmd[500];
    snprintf(data, sizeof data, "%s/lora_resume_%d.h5", SX_BINARY_DIR, (int)getpid());
    ft_write_dataset(ff, data);
    hid_t g = H5Gopen2(f, "experts", H5P_DEFAULT);
    double full[STEPS], parts[STEPS];
    for (int pass = 0; pass < 2; pass++) {
        snprintf(dir, sizeof dir, "%s/lora_resume_%d_%d", SX_BINARY_DIR, pass, (int)getpid());
        run_config cfg;
        ft_case_config(g, BASE, data, dir, &cfg);
        cr_assert(run_config_set(&cfg, "train.steps=20").ok && run_config_set(&cfg, "optim.lr=1e-3").ok);
        trainer_opts o = {.quiet = true, .loss_trace = pass ? parts : full, .init_from = BASE, .init_adapter = LORA "/experts/initial"};
        if (pass) o.stop_after = 10;
        trainer_result r;
        sx_status s = trainer_run(&cfg, &o, &r);
        cr_assert(s.ok, "%s", s.msg);
        if (!pass) continue;
        cr_assert_eq(r.steps_done, 10);
        trainer_opts o2 = {.quiet = true, .loss_trace = parts, .resume = "auto"};
        s = trainer_run(&cfg, &o2, &r);
        cr_assert(s.ok, "%s", s.msg);
        cr_assert_eq(r.steps_done, STEPS);
    }
    for (int t = 0; t < STEPS; t++) cr_expect(full[t] == parts[t], "step %d: %.9g uninterrupted, %.9g resumed", t + 1, full[t], parts[t]);
    for (int pass = 0; pass < 2; pass++) {
        snprintf(cmd, sizeof cmd, "%s/lora_resume_%d_%d", SX_BINARY_DIR, pass, (int)getpid());
        remove_tree(cmd);
    }
    unlink(data);
    H5Gclose(g);
    H5Fclose(f);
    H5Fclose(ff);
}

/* ---- bad input: one clear error naming the key or file ----------------------------------------------------------- */

static sx_status build_with(const char *targets, int r) {
    model_config c;
    cr_assert(hf_read_config(BASE, &c).ok);
    c.lora.r = r;
    snprintf(c.lora.targets, sizeof c.lora.targets, "%s", targets);
    model m;
    sx_status s = model_init_inference(&m, &c);
    if (s.ok) model_free(&m);
    return s;
}

Test(lora, bad_specs_are_errors) {
    sx_status s = build_with("q", 0);
    cr_expect(!s.ok && strstr(s.msg, "lora.r"), "targets without a rank: %s", s.msg);
    s = build_with("", 4);
    cr_expect(!s.ok && strstr(s.msg, "lora.targets"), "a rank without targets: %s", s.msg);
    s = build_with("q,classifier", 4);
    cr_expect(!s.ok && strstr(s.msg, "'classifier'") && strstr(s.msg, "router"), "the router is not adaptable: %s", s.msg);
    s = build_with("*.nothing.*", 4);
    cr_expect(!s.ok && strstr(s.msg, "'*.nothing.*'"), "a pattern that selects nothing: %s", s.msg);
    s = build_with("*.expert_3.wi", 4);
    cr_expect(!s.ok && strstr(s.msg, "every expert"), "part of an expert block: %s", s.msg);
    run_config cfg;
    run_config_defaults(&cfg);
    cr_assert(run_config_set(&cfg, "lora.targets=q").ok);
    s = run_config_validate(&cfg);
    cr_expect(!s.ok && strstr(s.msg, "lora.r"), "%s", s.msg);
    s = run_config_set(&cfg, "lora.rank=4");
    cr_expect(!s.ok && strstr(s.msg, "'rank'"), "an unknown lora key: %s", s.msg);
    /* the lora section survives a model override given after it */
    cr_assert(run_config_set(&cfg, "lora.r=4").ok && run_config_set(&cfg, "model.d_ff=64").ok);
    cr_expect_eq(cfg.model.lora.r, 4);
}

/* A copy of the attention case's initial adapter with one edit to its adapter_config.json. */
static void edited_adapter(const char *dir, const char *from, const char *to) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s' && sed -i 's/%s/%s/' '%s/adapter_config.json'", dir, LORA "/attn_qv/initial", dir,
             from, to, dir);
    cr_assert(system(cmd) == 0);
}

Test(lora, bad_adapters_are_errors) {
    lora_spec sp;
    memset(&sp, 0, sizeof sp);
    sx_status s = lora_peft_spec(SX_BINARY_DIR "/no_such_adapter", &sp);
    cr_expect(!s.ok && strstr(s.msg, "adapter_config.json"), "%s", s.msg);
    char dir[400], cmd[500];
    snprintf(dir, sizeof dir, "%s/lora_bad_%d", SX_BINARY_DIR, (int)getpid());
    edited_adapter(dir, "\"use_dora\": false", "\"use_dora\": true");
    s = lora_peft_spec(dir, &sp);
    cr_expect(!s.ok && strstr(s.msg, "use_dora") && strstr(s.msg, dir), "%s", s.msg);
    edited_adapter(dir, "\"r\": 4", "\"r\": 0");
    s = lora_peft_spec(dir, &sp);
    cr_expect(!s.ok && strstr(s.msg, "adapter_config.json.r: 0 is outside"), "a rank of 0: %s", s.msg);
    sp.r = 8;
    sp.alpha = 8;
    s = lora_peft_spec(LORA "/attn_qv/initial", &sp);
    cr_expect(!s.ok && strstr(s.msg, "lora.r = 8"), "a rank that disagrees: %s", s.msg);
    /* the experts' adapter into a model adapting q and v: names the first tensor it has no place for */
    model m;
    case_model("attn_qv", NULL, &m);
    s = lora_peft_load(&m, LORA "/experts/initial");
    cr_expect(!s.ok && strstr(s.msg, "adapter_model.safetensors") && strstr(s.msg, "lora_A"), "%s", s.msg);
    snprintf(cmd, sizeof cmd, "rm -f '%s/adapter_model.safetensors'", dir);
    cr_assert(system(cmd) == 0);
    s = lora_peft_load(&m, dir);
    cr_expect(!s.ok && strstr(s.msg, "adapter_model.safetensors"), "%s", s.msg);
    model_free(&m);
    remove_tree(dir);
}
