/* Helpers shared by the Criterion suites: see tutil.h. */
#include "tests/tutil.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "train/ckpt.h"
#include "train/hf/hf_model.h"
#include "train/hf/hf_weights.h"

char *tu_slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    cr_assert(b && fread(b, 1, (size_t)len, f) == (size_t)len, "cannot read %s", path);
    b[len] = 0;
    fclose(f);
    if (n) *n = (size_t)len;
    return b;
}

void tu_spill(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot create %s", path);
    cr_assert(fwrite(bytes, 1, n, f) == n, "cannot write %s", path);
    cr_assert(fclose(f) == 0, "cannot write %s", path);
}

void tu_fresh_dir(const char *suite, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s_tmp", SX_BINARY_DIR, suite);
    mkdir(out, 0755);
    snprintf(out, cap, "%s/%s_tmp/%s", SX_BINARY_DIR, suite, name);
    mkdir(out, 0755);
    DIR *d = opendir(out);
    cr_assert(d, "cannot open %s", out);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", out, e->d_name);
        unlink(p);
    }
    closedir(d);
}

void tu_gone_dir(const char *suite, const char *tag, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s_%s_%d", SX_BINARY_DIR, suite, tag, (int)getpid());
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    cr_assert(system(cmd) == 0, "%s failed", cmd);
}

int tu_run_capture(const char *cmd, char *out, size_t cap) {
    char full[4096];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert(p, "cannot run %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

model_config tu_tiny_config(tu_dims d) {
    model_config c;
    model_config_defaults(&c);
    c.vocab_size = d.V;
    c.d_model = d.D;
    c.d_kv = d.K;
    c.d_ff = d.F;
    c.num_heads = d.H;
    c.num_experts = d.E;
    c.num_layers = c.num_decoder_layers = 2;
    c.num_sparse_encoder_layers = c.num_sparse_decoder_layers = 1;
    c.encoder_sparse_step = c.decoder_sparse_step = 2;
    c.router_jitter_noise = 0;
    c.dropout_rate = 0;
    return c;
}

void tu_model_variants(model_config *c) {
    c->gated = true;
    c->act = AG_ACT_GELU_TANH;
    c->tie_word_embeddings = false;
    c->router_bias = true;
    c->router_top_k = 2;
    c->router_loss_mode = MOE_LOSS_PER_LAYER;
    c->encoder_sparse_step = 1;
    c->num_sparse_encoder_layers = 2;
    c->hf_zero_router_loss_step1 = false;
}

sx_status tu_model_config_json(const char *json, model_config *c) {
    cJSON *j = cJSON_Parse(json);
    cr_assert(j, "test JSON does not parse: %s", json);
    sx_status s = model_config_from_json(j, "test.json", c);
    cJSON_Delete(j);
    return s;
}

void tu_load_hf(model *m, const char *dir, bool inference) {
    model_config c;
    sx_status s = hf_read_config(dir, &c);
    cr_assert(s.ok, "%s", s.msg);
    s = inference ? model_init_inference(m, &c) : model_init(m, &c);
    cr_assert(s.ok, "%s: %s", dir, s.msg);
    s = hf_load_weights(m, dir);
    cr_assert(s.ok, "%s: %s", dir, s.msg);
}

trainer_result tu_train(run_config *c, const char *out_dir, double *loss) {
    snprintf(c->out_dir, sizeof c->out_dir, "%s", out_dir);
    trainer_opts o = {.quiet = true, .loss_trace = loss};
    trainer_result r;
    sx_status s = trainer_run(c, &o, &r);
    cr_assert(s.ok, "%s: %s", out_dir, s.msg);
    return r;
}

trainer_result tu_train_resumed(run_config *c, const char *out_dir, int64_t stop_after, double *loss) {
    snprintf(c->out_dir, sizeof c->out_dir, "%s", out_dir);
    trainer_opts o1 = {.quiet = true, .loss_trace = loss, .stop_after = stop_after};
    trainer_result r;
    sx_status s = trainer_run(c, &o1, &r);
    cr_assert(s.ok, "%s: %s", out_dir, s.msg);
    cr_assert_eq(r.steps_done, stop_after);
    trainer_opts o2 = {.quiet = true, .loss_trace = loss, .resume = "auto"};
    s = trainer_run(c, &o2, &r);
    cr_assert(s.ok, "%s (resumed): %s", out_dir, s.msg);
    return r;
}

void tu_ckpt_position(const char *path, int64_t pos[3]) {
    ckpt_reader *rd;
    sx_status s = ckpt_open(path, &rd);
    cr_assert(s.ok, "%s", s.msg);
    s = ckpt_read_i64(rd, "data/position", 1, (int64_t[]){3}, pos);
    cr_assert(s.ok, "%s", s.msg);
    ckpt_close(rd);
}

void tu_layer_init(tu_layer *l, int64_t N, int64_t D, int64_t F, int64_t E, size_t act_bytes) {
    ag_arena_init(&l->a, "w", 1 << 16);
    ag_arena_init(&l->act, "act", act_bytes);
    ag_ctx_init(&l->ctx, &l->act);
    l->x = ag_zeros(&l->a, AG_F32, N, D);
    l->wr = ag_zeros(&l->a, AG_F32, E, D);
    l->wi = ag_zeros(&l->a, AG_F32, E, F, D);
    l->wo = ag_zeros(&l->a, AG_F32, E, D, F);
}

void tu_layer_fill_normal(tu_layer *l, uint64_t seed) {
    ag_tensor *all[4] = {l->x, l->wr, l->wi, l->wo};
    for (int k = 0; k < 4; k++)
        for (int64_t i = 0; i < all[k]->numel; i++) ag_set(all[k], i, ag_rng_normal(ag_rng_make(seed, (uint64_t)k, 0), (uint64_t)i));
}

void tu_layer_free(tu_layer *l) {
    ag_ctx_free(&l->ctx);
    ag_arena_free(&l->a);
    ag_arena_free(&l->act);
}
