/* Parity with Hugging Face transformers 4.57.6 (float32) on the fixtures of scripts/make_reference.py: for every
 * committed case, the same weights and inputs must give identical expert choices, logits and losses within 1e-5
 * relative, and every parameter gradient within 1e-4 relative. Relative = max |ours - ref| / max |ref| over the
 * tensor. Why these: both sides compute in fp32 with different summation orders (BLAS blocking, reduction trees);
 * forward errors stay ~1e-6, and gradients through softmax/rmsnorm chains accumulate a few more ulps. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tests/h5fixture.h"
#include "train/model/model.h"

#define FWD_TOL 1e-5
#define GRAD_TOL 1e-4

typedef struct {
    double worst;
    char name[300];
    int fails;
} tally;

static double rel_err(const float *a, const float *ref, int64_t n) {
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= md)) md = d; /* NaN propagates as a failure */
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return md / (mr > 0 ? mr : 1.0);
}

static void check(tally *t, const char *what, double err, double tol) {
    printf("  %-72s rel err %.3e%s\n", what, err, err <= tol ? "" : "  <-- FAIL");
    if (!(err <= tol)) t->fails++;
    if (!(err <= t->worst)) {
        t->worst = err;
        snprintf(t->name, sizeof t->name, "%s", what);
    }
}

/* The model of a fixture: its config_json and its HF weights (expert blocks per expert). */
static void load_model(hid_t f, const char *path, model_config *cfg, model *m) {
    char *cfg_text = h5f_attr_string(f, "config_json");
    cJSON *cj = cJSON_Parse(cfg_text);
    cr_assert(cj, "%s: config_json is not JSON", path);
    sx_status st = model_config_from_json(cj, path, cfg);
    cr_assert(st.ok, "%s", st.msg);
    cJSON_Delete(cj);
    free(cfg_text);
    cr_assert(model_init(m, cfg).ok);
    char name[256], hf[160];
    for (int i = 0; i < m->n_params; i++) {
        param_desc *p = &m->params[i];
        int ne = p->n_experts ? p->n_experts : 1;
        int64_t per = p->numel / ne;
        for (int e = 0; e < ne; e++) {
            snprintf(name, sizeof name, "weights/%s", model_param_hf_name(m, i, e, hf, sizeof hf));
            int64_t n;
            float *w = h5f_floats(f, name, &n);
            cr_assert(n == per, "%s: %lld values, the model expects %lld", name, (long long)n, (long long)per);
            memcpy(m->w + p->offset + e * per, w, sizeof(float) * (size_t)per);
            free(w);
        }
    }
}

/* The total loss and each of its parts against HF's (a part HF does not compute is its 0). */
static void check_losses(hid_t f, const model_output *out, tally *t) {
    struct {
        const char *name;
        ag_tensor *ours;
    } losses[] = {{"outputs/loss", out->loss},           {"outputs/ce_loss", out->ce},          {"outputs/encoder_z_loss", out->enc_z},
                  {"outputs/encoder_aux_loss", out->enc_aux}, {"outputs/decoder_z_loss", out->dec_z}, {"outputs/decoder_aux_loss", out->dec_aux}};
    for (size_t i = 0; i < sizeof losses / sizeof losses[0]; i++) {
        double r = h5f_scalar(f, losses[i].name);
        double o = losses[i].ours ? ((float *)losses[i].ours->data)[0] : 0.0; /* absent = HF's 0 */
        double err = fabs(o - r) / fmax(fabs(r), 1e-30);
        if (r == 0 && o == 0) err = 0;
        printf("    %s ours %.9g ref %.9g\n", losses[i].name, o, r);
        check(t, losses[i].name, err, FWD_TOL);
    }
}

/* Routing: expert choices (before capacity) and the kept mask exactly, the router logits within FWD_TOL. Returns the
 * number of layers whose choices differ. */
static int check_routing(hid_t f, const model_output *out, int64_t B, int64_t S, int64_t T, tally *t) {
    int mismatched = 0;
    char name[256], what[160];
    for (int r = 0; r < out->n_routes; r++) {
        model_route_stats *rs = &out->routes[r];
        const char *stack = rs->stack ? "decoder" : "encoder";
        snprintf(name, sizeof name, "router/%s/block_%d/expert_index", stack, rs->block);
        int32_t *ei = h5f_ints(f, name, NULL, NULL);
        snprintf(name, sizeof name, "router/%s/block_%d/kept", stack, rs->block);
        int32_t *kp = h5f_ints(f, name, NULL, NULL);
        int64_t L = rs->stack ? T : S, bad = 0, dropped = 0, n;
        for (int64_t i = 0; i < B * L; i++) {
            bad += rs->expert_index[i] != ei[i] || (int32_t)rs->kept[i] != kp[i];
            dropped += !kp[i];
        }
        snprintf(name, sizeof name, "router/%s/block_%d/logits", stack, rs->block);
        float *ref = h5f_floats(f, name, &n);
        snprintf(what, sizeof what, "%s block %d router logits (%lld dropped)", stack, rs->block, (long long)dropped);
        check(t, what, rel_err(rs->logits->data, ref, n), FWD_TOL);
        free(ref);
        if (bad) printf("  %s block %d: %lld expert choices or kept flags differ\n", stack, rs->block, (long long)bad);
        mismatched += bad > 0;
        free(ei);
        free(kp);
    }
    return mismatched;
}

/* Every parameter's gradient (per expert) against HF's within GRAD_TOL. */
static void check_grads(hid_t f, const model *m, tally *t) {
    char name[256], hf[160];
    for (int i = 0; i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        int ne = p->n_experts ? p->n_experts : 1;
        int64_t per = p->numel / ne, n;
        for (int e = 0; e < ne; e++) {
            model_param_hf_name(m, i, e, hf, sizeof hf);
            snprintf(name, sizeof name, "grads/%s", hf);
            if (!h5f_exists(f, name)) {
                t->fails++;
                printf("  missing reference gradient %s\n", name);
                continue;
            }
            float *ref = h5f_floats(f, name, &n);
            snprintf(name, sizeof name, "grad %s", hf);
            check(t, name, rel_err(m->g + p->offset + e * per, ref, n), GRAD_TOL);
            free(ref);
        }
    }
}

static void run_case(const char *path) {
    printf("parity: %s\n", path);
    hid_t f = h5f_open(path, NULL);
    model_config cfg;
    model m;
    load_model(f, path, &cfg, &m);
    int nd;
    hsize_t dims[8];
    int32_t *ids = h5f_ints(f, "inputs/input_ids", &nd, dims);
    int64_t B = (int64_t)dims[0], S = (int64_t)dims[1];
    int32_t *mask = h5f_ints(f, "inputs/attention_mask", NULL, NULL);
    int32_t *labels = h5f_ints(f, "inputs/labels", &nd, dims);
    int64_t T = (int64_t)dims[1];
    int32_t *dec_in = h5f_ints(f, "inputs/decoder_input_ids", NULL, NULL);

    /* shift_right must reproduce HF's decoder inputs */
    int32_t *shifted = malloc(sizeof(int32_t) * (size_t)(B * T));
    model_shift_right(&cfg, labels, B, T, shifted);
    cr_expect(memcmp(shifted, dec_in, sizeof(int32_t) * (size_t)(B * T)) == 0, "%s: shift_right differs from HF's", path);
    free(shifted);

    ag_arena act;
    ag_arena_init(&act, "activations", 1 << 20);
    ag_ctx ctx;
    ag_ctx_init(&ctx, &act);
    ctx.training = false; /* the fixtures are HF eval mode: no dropout, no jitter */
    model_batch b = {B, S, T, ids, mask, labels, NULL};
    model_output out;
    model_forward(&m, &ctx, &b, (model_rng){1, 0, false}, &out);
    memset(m.g, 0, sizeof(float) * (size_t)m.n_floats);
    ag_backward(&ctx, out.loss);

    tally t = {0, "", 0};
    int64_t n;
    float *ref = h5f_floats(f, "outputs/logits", &n);
    cr_assert(n == out.logits->numel, "logits: %lld values vs ours %lld", (long long)n, (long long)out.logits->numel);
    check(&t, "logits", rel_err(out.logits->data, ref, n), FWD_TOL);
    free(ref);
    ref = h5f_floats(f, "outputs/encoder_last_hidden_state", &n);
    check(&t, "encoder_last_hidden_state", rel_err(out.encoder_out->data, ref, n), FWD_TOL);
    free(ref);
    check_losses(f, &out, &t);
    int mismatched = check_routing(f, &out, B, S, T, &t);
    cr_expect(mismatched == 0, "%s: expert choices differ from HF in %d layers", path, mismatched);
    check_grads(f, &m, &t);
    printf("parity: %s: worst %s (%.3e), %d tensors over tolerance\n", path, t.name, t.worst, t.fails);
    cr_expect(t.fails == 0, "%s: %d tensors outside tolerance; worst %s at %.3e", path, t.fails, t.name, t.worst);

    ag_ctx_free(&ctx);
    ag_arena_free(&act);
    model_free(&m);
    free(ids);
    free(mask);
    free(labels);
    free(dec_in);
    H5Fclose(f);
}

Test(parity, every_reference_fixture, .timeout = 600) {
    const char *dir = SX_SOURCE_DIR "/tests/fixtures/reference";
    DIR *d = opendir(dir);
    cr_assert(d, "no fixture directory %s (run scripts/make_reference.py)", dir);
    struct dirent *e;
    int cases = 0;
    char paths[64][512];
    while ((e = readdir(d)) && cases < 64) {
        size_t l = strlen(e->d_name);
        if (l > 3 && !strcmp(e->d_name + l - 3, ".h5")) snprintf(paths[cases++], 512, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    cr_assert(cases > 0, "no .h5 fixtures in %s", dir);
    qsort(paths, (size_t)cases, 512, (int (*)(const void *, const void *))strcmp);
    for (int i = 0; i < cases; i++) run_case(paths[i]);
}
