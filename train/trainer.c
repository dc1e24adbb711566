/* The training loop: built-in task batches (datasets plug in through the same batch struct), micro-batches with
 * gradient accumulation, a non-finite guard, global-norm clipping, the optimizer and schedule, console/JSONL/
 * TensorBoard metrics, evaluation with greedy exact match, and checkpoints that resume bit for bit. */
#include "train/trainer.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "autograd/sx_file.h"
#include "data/batches.h"
#include "data/task.h"
#include "train/cfg_util.h"
#include "train/ckpt.h"
#include "train/model/generate.h"
#include "train/hf/hf_model.h"
#include "train/lora.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/run_checks.h"
#include "train/step.h"
#include "train/schedule.h"

#define CKPT_PREFIX "ckpt_step"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static sx_status mkdir_p(const char *path) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return sx_errorf("%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return sx_errorf("%s: cannot create directory: %s", buf, strerror(errno));
    return sx_ok();
}


/* ---- parameters in checkpoints: one dataset per HF tensor (expert blocks split into their HF slices); a rank reads
 * only its own experts ------------------------------------------------------------------------------------------ */

/* base_only: the LoRA adapters keep their values (--init-from gives the base; adapters come from --init-adapter). */
static sx_status read_params(ckpt_reader *r, model *m, const char *path, bool base_only) {
    char hf[160], name[200];
    for (int i = 0; i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        if (base_only && lora_is_adapter(p)) continue;
        int ne = p->n_experts ? p->n_experts : 1;
        int64_t per = p->numel / ne;
        for (int e = 0; e < ne; e++) {
            snprintf(name, sizeof name, "params/%s", model_param_hf_name(m, i, e, hf, sizeof hf));
            bool present;
            SX_TRY(ckpt_lookup(r, name, &present));
            if (!present)
                return sx_errorf("%s: missing parameter '%s' (does the checkpoint match the model config?)", path, hf);
            SX_TRY(ckpt_read_f32(r, name, p->n_experts ? p->ndim - 1 : p->ndim, p->n_experts ? p->shape + 1 : p->shape, m->w + p->offset + e * per));
        }
    }
    return sx_ok();
}

static sx_status load_params(model *m, const char *ckpt_path, bool base_only) {
    if (hf_is_model_dir(ckpt_path)) return hf_load_weights(m, ckpt_path); /* a Hugging Face model folder: the base */
    ckpt_reader *r;
    SX_TRY(ckpt_open(ckpt_path, &r));
    sx_status s = read_params(r, m, ckpt_path, base_only);
    ckpt_close(r);
    return s;
}

sx_status trainer_load_params(model *m, const char *ckpt_path) { return load_params(m, ckpt_path, false); }

sx_status trainer_config_from_checkpoint(const char *ckpt_path, run_config *cfg) {
    if (hf_is_model_dir(ckpt_path)) {
        run_config_defaults(cfg);
        snprintf(cfg->model_source, sizeof cfg->model_source, "%s", ckpt_path);
        return hf_read_config(ckpt_path, &cfg->model);
    }
    ckpt_reader *r;
    SX_TRY(ckpt_open(ckpt_path, &r));
    char *text = NULL;
    sx_status s = ckpt_read_string(r, "run_config", &text);
    ckpt_close(r);
    if (!s.ok) return s;
    cJSON *j;
    char label[600];
    snprintf(label, sizeof label, "%s: the stored run_config", ckpt_path);
    s = cfg_parse_text(text, strlen(text), label, &j);
    free(text);
    if (!s.ok) return s;
    run_config_defaults(cfg);
    char where[600];
    snprintf(where, sizeof where, "%s: run_config", ckpt_path);
    s = run_config_apply_json(cfg, j, where);
    cJSON_Delete(j);
    return s;
}

sx_status trainer_write_model(const model *m, const run_config *cfg, const char *path) {
    if (m->ep_size != 1) return sx_errorf("trainer_write_model: a whole model (no expert parallelism) is needed");
    ckpt_writer *w;
    SX_TRY(ckpt_writer_open(path, &w));
    cJSON *cj = run_config_to_json(cfg), *mj = model_config_to_json(&m->cfg);
    char *ct = cJSON_Print(cj), *mt = cJSON_Print(mj);
    cJSON_Delete(cj);
    cJSON_Delete(mj);
    sx_status s = ckpt_write_string(w, "run_config", ct);
    if (s.ok) s = ckpt_write_string(w, "model_config", mt);
    if (s.ok) s = ckpt_write_attr_i64(w, "step", 0);
    char hf[160], name[200];
    for (int i = 0; s.ok && i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        int ne = p->n_experts ? p->n_experts : 1;
        int64_t per = p->numel / ne;
        for (int e = 0; s.ok && e < ne; e++) {
            snprintf(name, sizeof name, "params/%s", model_param_hf_name(m, i, e, hf, sizeof hf));
            s = ckpt_write_f32(w, name, p->n_experts ? p->ndim - 1 : p->ndim, p->n_experts ? p->shape + 1 : p->shape, m->w + p->offset + e * per);
        }
    }
    free(ct);
    free(mt);
    if (!s.ok) {
        ckpt_writer_abort(w);
        return s;
    }
    return ckpt_writer_commit(w);
}

/* ---- the trainer state -------------------------------------------------------------------------------------------- */

typedef struct {
    const run_config *cfg;
    model m;
    train_step *ts;            /* the one training step (train/step.h): optimizer, gradient sync, clipping */
    sched_config sched;
    int64_t step;              /* optimizer steps completed */
    int64_t skipped_total;
    int consecutive_skips;
    char dir[600];
    par_ctx *par;
    par_ctx local_par;
    bool rank0;                /* world rank 0 prints and writes files */
    batch_source *src;         /* the training batches (their position goes into checkpoints) */
    uint64_t data_skew;        /* the data position is step * batch_size + data_skew examples: 0 for a fresh run; a
                                * resume sets it from the checkpoint's recorded position (read_data_position) */
} trainer;

/* Examples consumed before the current step: where the next batch starts. */
static uint64_t data_consumed(const trainer *t) { return (uint64_t)(t->step * t->cfg->batch_size) + t->data_skew; }

/* The learning-rate schedule of the run (HF's lambdas, train/schedule.h). */
static sx_status setup_schedule(trainer *t) {
    memset(&t->sched, 0, sizeof t->sched);
    SX_TRY(sched_parse_kind(t->cfg->schedule, &t->sched.kind));
    t->sched.lr = t->cfg->lr;
    t->sched.warmup_steps = t->cfg->warmup_steps;
    t->sched.total_steps = t->cfg->steps;
    t->sched.min_lr = t->cfg->min_lr;
    return sx_ok();
}

/* A tensor as the file stores it: expert blocks whole ([E, ...] gathered from the EP group), others as they are.
 * Returns a pointer valid until the next call (the gather buffer) or the tensor's own data. */
static const float *whole(trainer *t, const float *local, int64_t numel, bool expert, float **buf, int64_t *whole_numel) {
    if (!expert || t->par->ep_size == 1) {
        *whole_numel = numel;
        return local;
    }
    *whole_numel = numel * t->par->ep_size;
    *buf = realloc(*buf, sizeof(float) * (size_t)*whole_numel);
    sx_status s = par_allgather(t->par->ep, local, *buf, numel, PAR_F32);
    SX_ASSERT(s.ok, "gathering an expert block for the checkpoint: %s", s.msg);
    return *buf;
}

/* Every rank calls this (expert shards are gathered over the EP group); world rank 0 writes the one file, in the
 * same layout as a single-process run, so it loads with any expert-parallel size. */
static sx_status save_checkpoint(trainer *t) {
    char path[800], *cfg_text = NULL, *model_text = NULL;
    snprintf(path, sizeof path, "%s/%s%08lld.h5", t->dir, CKPT_PREFIX, (long long)t->step);
    ckpt_writer *w = NULL;
    sx_status s = sx_ok();
    if (t->rank0) {
        SX_TRY(ckpt_writer_open(path, &w));
        cJSON *cj = run_config_to_json(t->cfg);
        cfg_text = cJSON_Print(cj);
        cJSON_Delete(cj);
        cJSON *mj = model_config_to_json(&t->m.cfg);
        model_text = cJSON_Print(mj);
        cJSON_Delete(mj);
        s = ckpt_write_string(w, "run_config", cfg_text);
        if (s.ok) s = ckpt_write_string(w, "model_config", model_text);
        if (s.ok) s = ckpt_write_attr_i64(w, "step", t->step);
        if (s.ok) s = ckpt_write_attr_i64(w, "seed", (int64_t)t->cfg->seed);
        if (s.ok) s = ckpt_write_attr_i64(w, "skipped_total", t->skipped_total);
        if (s.ok) s = ckpt_write_attr_i64(w, "consecutive_skips", t->consecutive_skips);
        /* where the data stands: the epoch and the index in its (shuffled, bucketed) order of the next example,
         * and the training set's size (a resume on another dataset would not continue this order) */
        int64_t pos[3] = {0, 0, batch_source_count(t->src)};
        batch_source_position(t->src, data_consumed(t), &pos[0], &pos[1]);
        if (s.ok) s = ckpt_write_i64(w, "data/position", 1, AG_SHAPE(3), pos);
    }
    float *buf = NULL;
    char hf[160], name[300];
    const model *m = &t->m;
    for (int i = 0; i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        int64_t wn;
        const float *all = whole(t, m->w + p->offset, p->numel, p->n_experts > 0, &buf, &wn);
        if (!t->rank0 || !s.ok) continue;
        if (!p->n_experts) {
            snprintf(name, sizeof name, "params/%s", p->name);
            s = ckpt_write_f32(w, name, p->ndim, p->shape, all);
            continue;
        }
        int64_t per = p->numel / p->n_experts;
        for (int e = 0; s.ok && e < m->cfg.num_experts; e++) {
            char fmt[160];
            snprintf(fmt, sizeof fmt, "%s", p->name);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
            snprintf(hf, sizeof hf, fmt, e);
#pragma GCC diagnostic pop
            snprintf(name, sizeof name, "params/%s", hf);
            s = ckpt_write_f32(w, name, p->ndim - 1, p->shape + 1, all + e * per);
        }
    }
    for (int i = 0; i < optim_state_count(train_step_optim(t->ts)); i++) {
        const char *sname;
        float *data;
        int64_t n, wn;
        optim_state_get(train_step_optim(t->ts), i, &sname, &data, &n);
        const float *all = whole(t, data, n, m->params[optim_state_param(train_step_optim(t->ts), i)].n_experts > 0, &buf, &wn);
        if (!t->rank0 || !s.ok) continue;
        snprintf(name, sizeof name, "optim/%s", sname);
        s = ckpt_write_f32(w, name, 1, AG_SHAPE(wn), all);
    }
    /* each unit's step count (torch's state["step"]): experts idle in a step keep theirs */
    int64_t *steps = optim_step_counts(train_step_optim(t->ts)), *sbuf = malloc(sizeof(int64_t) * (size_t)(m->cfg.num_experts + 1));
    for (int i = 0; i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        if (train_step_frozen(t->ts, i)) continue;
        int64_t first = optim_unit_first(train_step_optim(t->ts), i), nu = p->n_experts ? p->n_experts : 1, wn = nu;
        const int64_t *all = steps + first;
        if (p->n_experts && t->par->ep_size > 1) {
            sx_status gs = par_allgather(t->par->ep, steps + first, sbuf, nu, PAR_I64);
            SX_ASSERT(gs.ok, "gathering step counts for the checkpoint: %s", gs.msg);
            all = sbuf;
            wn = nu * t->par->ep_size;
        }
        if (!t->rank0 || !s.ok) continue;
        snprintf(name, sizeof name, "optim_steps/%s", p->name);
        s = ckpt_write_i64(w, name, 1, AG_SHAPE(wn), all);
    }
    free(sbuf);
    free(buf);
    free(cfg_text);
    free(model_text);
    if (!t->rank0) return sx_ok();
    if (!s.ok) {
        ckpt_writer_abort(w);
        return s;
    }
    SX_TRY(ckpt_writer_commit(w));
    return ckpt_rotate(t->dir, CKPT_PREFIX, t->cfg->keep_checkpoints);
}

/* Keys a resumed run may change: how long it runs, what it logs and evaluates, where it runs and over which
 * transport. Any other difference from the checkpoint's run config would make the continued run a different run
 * (another batch, model, data order, optimizer): refused, each key named with both values. */
static bool resume_may_change(const char *sec, const char *key) {
    static const char *const ok[] = {"train.steps", "train.log_every", "train.eval_every", "train.ckpt_every", "train.keep_checkpoints",
                                     "train.out_dir", "train.threads", "train.max_nonfinite_skips", "data.eval", "data.eval_examples",
                                     "data.tokenizer", "data.read_cache_mb", "parallel.expert_parallel", "parallel.transport",
                                     "parallel.timeout_s"};
    char full[160];
    snprintf(full, sizeof full, "%s.%s", sec, key);
    if (!strcmp(sec, "eval")) return true;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(full, ok[i])) return true;
    return false;
}

static sx_status check_resume_config(ckpt_reader *r, const char *path, const run_config *cfg) {
    char *text = NULL;
    SX_TRY(ckpt_read_string(r, "run_config", &text));
    cJSON *saved;
    char label[1100];
    snprintf(label, sizeof label, "%s: the stored run_config (the file is damaged)", path);
    sx_status ps = cfg_parse_text(text, strlen(text), label, &saved);
    free(text);
    if (!ps.ok) return ps;
    cJSON *now = run_config_to_json(cfg);
    char diffs[1500] = "";
    size_t len = 0;
    int n = 0;
    const cJSON *sec;
    cJSON_ArrayForEach(sec, now) {
        const cJSON *old = cJSON_GetObjectItemCaseSensitive(saved, sec->string);
        const cJSON *it;
        cJSON_ArrayForEach(it, sec) {
            if (resume_may_change(sec->string, it->string)) continue;
            if (!strcmp(sec->string, "model") && !strcmp(it->string, "switchc")) {
                /* the knobs, but for the evaluation capacity, are the model */
                const cJSON *ok = old ? cJSON_GetObjectItemCaseSensitive(old, "switchc") : NULL, *k;
                cJSON_ArrayForEach(k, it) {
                    if (!strcmp(k->string, "eval_capacity_factor")) continue;
                    const cJSON *o = ok ? cJSON_GetObjectItemCaseSensitive(ok, k->string) : NULL;
                    if (o && cJSON_Compare(o, k, true)) continue;
                    char *a = o ? cJSON_PrintUnformatted(o) : NULL, *b = cJSON_PrintUnformatted(k);
                    if (len < sizeof diffs - 1)
                        len += (size_t)snprintf(diffs + len, sizeof diffs - len, "%smodel.switchc.%s (%s -> %s)", n++ ? ", " : "", k->string,
                                                a ? a : "absent", b);
                    free(a);
                    free(b);
                }
                continue;
            }
            const cJSON *o = old ? cJSON_GetObjectItemCaseSensitive(old, it->string) : NULL;
            if (!o) continue; /* a key newer than the checkpoint: its default is what the old run did */
            if (cJSON_Compare(o, it, true)) continue;
            char *a = cJSON_PrintUnformatted(o), *b = cJSON_PrintUnformatted(it);
            if (len < sizeof diffs - 1)
                len += (size_t)snprintf(diffs + len, sizeof diffs - len, "%s%s.%s (%s -> %s)", n++ ? ", " : "", sec->string, it->string, a, b);
            free(a);
            free(b);
        }
    }
    cJSON_Delete(saved);
    cJSON_Delete(now);
    if (n)
        return sx_errorf("%s: resuming with %d setting%s changed would continue a different run: %s. Resume with the run's own config "
                         "(RUN_DIR/config.json), or start a new run (--overwrite or another train.out_dir)",
                         path, n, n > 1 ? "s" : "", diffs);
    return sx_ok();
}

/* The data position the checkpoint recorded (epoch, index in the shuffled, bucketed order, training-set size): the
 * run continues from it. A checkpoint without one (older files) continues at step * batch_size. */
static sx_status read_data_position(trainer *t, ckpt_reader *r, const char *path) {
    t->data_skew = 0;
    if (!ckpt_has(r, "data/position")) return sx_ok();
    int64_t pos[3];
    SX_TRY(ckpt_read_i64(r, "data/position", 1, AG_SHAPE(3), pos));
    if (pos[2] != batch_source_count(t->src))
        return sx_errorf("%s: written for a training set of %lld examples, data.train now has %lld: resuming would not continue its "
                         "epoch %lld at example %lld (start a new run, or restore the dataset)", path, (long long)pos[2],
                         (long long)batch_source_count(t->src), (long long)pos[0], (long long)pos[1]);
    char where[1100];
    snprintf(where, sizeof where, "%s: data/position", path);
    uint64_t consumed;
    SX_TRY(batch_source_seek(t->src, pos[0], pos[1], where, &consumed));
    t->data_skew = consumed - (uint64_t)(t->step * t->cfg->batch_size);
    return sx_ok();
}

static sx_status load_checkpoint(trainer *t, const char *path) {
    ckpt_reader *r;
    SX_TRY(ckpt_open(path, &r));
    sx_status s = read_params(r, &t->m, path, false);
    int64_t v;
    if (s.ok) s = ckpt_read_attr_i64(r, "step", &t->step);
    if (s.ok) s = ckpt_read_attr_i64(r, "skipped_total", &t->skipped_total);
    if (s.ok) s = ckpt_read_attr_i64(r, "consecutive_skips", &v);
    if (s.ok) t->consecutive_skips = (int)v;
    if (s.ok) {
        s = ckpt_read_attr_i64(r, "seed", &v);
        if (s.ok && (uint64_t)v != t->cfg->seed)
            s = sx_errorf("%s: written with seed %lld but the run config says %llu: resuming would change the data and dropout streams", path,
                          (long long)v, (unsigned long long)t->cfg->seed);
    }
    if (s.ok) s = check_resume_config(r, path, t->cfg);
    if (s.ok) s = read_data_position(t, r, path);
    float *buf = NULL;
    for (int i = 0; s.ok && i < optim_state_count(train_step_optim(t->ts)); i++) {
        const char *name;
        float *data;
        int64_t n;
        optim_state_get(train_step_optim(t->ts), i, &name, &data, &n);
        char dn[300];
        snprintf(dn, sizeof dn, "optim/%s", name);
        /* expert states are stored whole: this rank takes its experts' slice */
        bool expert = t->m.params[optim_state_param(train_step_optim(t->ts), i)].n_experts > 0;
        int64_t wn = expert ? n * t->m.ep_size : n;
        bool present;
        s = ckpt_lookup(r, dn, &present);
        if (s.ok && !present)
            s = sx_errorf("%s: no optimizer state '%s' (was it written with another optimizer?)", path, dn);
        if (!s.ok) break;
        buf = realloc(buf, sizeof(float) * (size_t)wn);
        s = ckpt_read_f32(r, dn, 1, AG_SHAPE(wn), buf);
        if (s.ok) memcpy(data, buf + (expert ? n * t->m.ep_rank : 0), sizeof(float) * (size_t)n);
    }
    free(buf);
    /* step counts per unit; a checkpoint from before they were recorded gives every unit the global step */
    int64_t *steps = optim_step_counts(train_step_optim(t->ts)), *sbuf = malloc(sizeof(int64_t) * (size_t)(t->m.cfg.num_experts + 1));
    bool legacy = false;
    for (int i = 0; s.ok && i < t->m.n_params; i++) {
        const param_desc *p = &t->m.params[i];
        if (train_step_frozen(t->ts, i)) continue;
        int64_t first = optim_unit_first(train_step_optim(t->ts), i), nu = p->n_experts ? p->n_experts : 1, wn = p->n_experts ? nu * t->m.ep_size : 1;
        char dn[300];
        snprintf(dn, sizeof dn, "optim_steps/%s", p->name);
        if (!ckpt_has(r, dn)) {
            for (int64_t k = 0; k < nu; k++) steps[first + k] = t->step; /* the old loop stepped with the global count */
            legacy = true;
            continue;
        }
        s = ckpt_read_i64(r, dn, 1, AG_SHAPE(wn), sbuf);
        if (s.ok) memcpy(steps + first, sbuf + (p->n_experts ? nu * t->m.ep_rank : 0), sizeof(int64_t) * (size_t)nu);
    }
    free(sbuf);
    if (s.ok && legacy && t->rank0)
        printf("switchc: %s records no per-tensor step counts (an older checkpoint): every tensor resumes at step %lld\n", path,
               (long long)t->step);
    ckpt_close(r);
    /* an expert block's optimizer state is stored whole, under a name that holds "%d" for the expert: shown as '*' */
    for (char *pc; !s.ok && (pc = strstr(s.msg, "%d"));) memmove(pc + 1, pc + 2, strlen(pc + 2) + 1), *pc = '*';
    return s;
}

/* ---- evaluation ---------------------------------------------------------------------------------------------------- */

sx_status trainer_evaluate(model *m, const run_config *cfg0, bool print_examples, eval_result *out) {
    memset(out, 0, sizeof *out);
    run_config bounded = *cfg0; /* generation bounded by the data: longer cannot change an exact match */
    bounded.gen_max_len = run_checks_eval_gen_len(cfg0);
    const run_config *cfg = &bounded;
    batch_source *src;
    SX_TRY(run_config_batches_open(cfg, true, &src));
    int EB = cfg->eval_batch_size;
    int64_t Lmax = batch_source_max_len(src), n_eval = batch_source_count(src);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(EB * Lmax)), *mask = malloc(sizeof(int32_t) * (size_t)(EB * Lmax));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)(EB * Lmax)), *gen = malloc(sizeof(int32_t) * (size_t)(EB * cfg->gen_max_len));
    int *lens = malloc(sizeof(int) * (size_t)EB);
    ag_arena act;
    ag_ctx ctx;
    ag_ctx_init_eval(&ctx, &act, "eval-activations", 1 << 22);
    double loss_sum = 0;
    int64_t tok = 0, tok_ok = 0, exact = 0, n = 0;
    sx_status st = sx_ok();
    for (int64_t first = 0; first < n_eval && st.ok; first += EB) {
        int B = (int)(n_eval - first < EB ? n_eval - first : EB);
        int64_t S, T;
        st = batch_source_get(src, (uint64_t)first, B, ids, mask, labels, &S, &T);
        if (!st.ok) break;
        model_batch b = {B, S, T, ids, mask, labels, NULL};
        model_output o;
        model_forward(m, &ctx, &b, (model_rng){cfg->seed, 0, false}, &o);
        loss_sum += ((float *)o.ce->data)[0] * B;
        const float *lg = o.logits->data;
        int64_t V = m->cfg.vocab_size;
        for (int64_t i = 0; i < B * T; i++) {
            if (labels[i] < 0) continue;
            int32_t best = 0;
            for (int64_t v = 1; v < V; v++)
                if (lg[i * V + v] > lg[i * V + best]) best = (int32_t)v;
            tok_ok += best == labels[i];
            tok++;
        }
        ag_ctx_reset(&ctx);
        gen_config g = {cfg->gen_max_len, 1, 1.0};
        generate(m, &ctx, ids, mask, B, S, &g, gen, lens);
        for (int bi = 0; bi < B; bi++) {
            bool ok = true;
            int want = 0;
            while (want < T && labels[bi * T + want] >= 0) want++;
            if (lens[bi] != want) ok = false;
            for (int t = 0; ok && t < want; t++) ok = gen[bi * cfg->gen_max_len + t] == labels[bi * T + t];
            exact += ok;
            if (print_examples && first == 0 && bi < 3 && strcmp(cfg->task, "dataset")) {
                char in_s[80], want_s[80], got_s[80];
                task_format(ids + bi * S, (int)S, in_s, sizeof in_s);
                task_format(labels + bi * T, want, want_s, sizeof want_s);
                task_format(gen + bi * cfg->gen_max_len, lens[bi], got_s, sizeof got_s);
                printf("  example: %-10s -> %-10s (want %s) %s\n", in_s, got_s, want_s, ok ? "ok" : "WRONG");
            }
        }
        n += B;
        ag_ctx_reset(&ctx);
    }
    out->loss = n ? loss_sum / (double)n : 0;
    out->token_acc = tok ? (double)tok_ok / (double)tok : 0;
    out->exact_match = n ? (double)exact / (double)n : 0;
    out->examples = n;
    ag_ctx_free_eval(&ctx);
    batch_source_close(src);
    free(ids);
    free(mask);
    free(labels);
    free(gen);
    free(lens);
    return st;
}

/* Routing statistics per sparse layer on one held-out batch: each expert's share of the tokens, the dropped
 * fraction and the mean router entropy. Printed (console) and/or logged (metrics.jsonl, TensorBoard). */
static sx_status route_stats(model *m, const run_config *cfg, bool print, train_metrics *metrics, int64_t step) {
    batch_source *src;
    SX_TRY(run_config_batches_open(cfg, true, &src));
    int64_t Lmax = batch_source_max_len(src);
    int B = (int)(cfg->eval_batch_size < batch_source_count(src) ? cfg->eval_batch_size : batch_source_count(src)), E = m->cfg.num_experts;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * Lmax)), *mask = malloc(sizeof(int32_t) * (size_t)(B * Lmax)),
            *labels = malloc(sizeof(int32_t) * (size_t)(B * Lmax));
    int64_t S, T;
    sx_status bs = batch_source_get(src, 0, B, ids, mask, labels, &S, &T);
    batch_source_close(src);
    if (!bs.ok) {
        free(ids);
        free(mask);
        free(labels);
        return bs;
    }
    ag_arena act;
    ag_ctx ctx;
    ag_ctx_init_eval(&ctx, &act, "eval", 1 << 20);
    model_batch b = {B, S, T, ids, mask, labels, NULL};
    model_output o;
    model_forward(m, &ctx, &b, (model_rng){cfg->seed, 0, false}, &o);
    if (print) printf("expert use on held-out data (share of tokens per expert; dropped; router entropy):\n");
    sx_status s = sx_ok();
    char (*names)[64] = malloc(sizeof(*names) * (size_t)(E + 2));
    const char **np = malloc(sizeof(char *) * (size_t)(E + 2));
    double *vals = malloc(sizeof(double) * (size_t)(E + 2));
    for (int r = 0; r < o.n_routes && s.ok; r++) {
        model_route_stats *rs = &o.routes[r];
        const char *stack = rs->stack ? "decoder" : "encoder";
        int64_t tot = 0;
        for (int e = 0; e < E; e++) tot += rs->tokens_per_expert[e];
        if (print) printf("  %s block %d:", stack, rs->block);
        for (int e = 0; e < E; e++) {
            vals[e] = tot ? (double)rs->tokens_per_expert[e] / (double)tot : 0.0;
            snprintf(names[e], 64, "routing/%s.%d/expert_%d_share", stack, rs->block, e);
            if (print) printf(" e%d %4.1f%%", e, 100 * vals[e]);
        }
        vals[E] = rs->n_tokens ? (double)rs->n_dropped / (double)rs->n_tokens : 0.0;
        snprintf(names[E], 64, "routing/%s.%d/dropped_frac", stack, rs->block);
        vals[E + 1] = rs->entropy_mean;
        snprintf(names[E + 1], 64, "routing/%s.%d/router_entropy", stack, rs->block);
        if (print) printf("; dropped %.1f%%; entropy %.3f\n", 100 * vals[E], vals[E + 1]);
        for (int e = 0; e < E + 2; e++) np[e] = names[e];
        if (metrics) s = train_metrics_log(metrics, step, E + 2, np, vals);
    }
    free(names);
    free(np);
    free(vals);
    ag_ctx_free_eval(&ctx);
    free(ids);
    free(mask);
    free(labels);
    return s;
}

/* ---- the run summary (one JSON file per run: what sweeps tabulate) ---------------------------------------------- */

typedef struct {
    double train_seconds, best_eval_loss;
    int64_t tokens, dropped, routed;
    eval_result last_eval;
    bool have_eval;
} run_totals;

/* Parameters a token meets: everything but the experts, plus top_k experts of each sparse layer (the embedding
 * table counted once, as the tied head's matmul). FLOPs per token of a training step: 6 per active parameter. */
static int64_t active_params(const model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++) {
        const param_desc *p = &m->params[i];
        n += p->n_experts ? p->numel / p->n_experts * m->cfg.router_top_k : p->numel;
    }
    return n;
}

static sx_status write_summary(trainer *t, const run_totals *r, const int64_t *layer_tokens, int n_sparse, double last_loss) {
    int E = t->m.cfg.num_experts;
    double maxmean = 0, cv = 0;
    for (int l = 0; l < n_sparse; l++) {
        double sum = 0, sq = 0, mx = 0;
        for (int e = 0; e < E; e++) {
            double v = (double)layer_tokens[l * E + e];
            sum += v;
            sq += v * v;
            mx = fmax(mx, v);
        }
        double mean = sum / E, var = sq / E - mean * mean;
        maxmean += mean > 0 ? mx / mean : 0;
        cv += mean > 0 ? sqrt(fmax(var, 0)) / mean : 0;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "steps", (double)t->step);
    cJSON_AddNumberToObject(j, "final_train_loss", last_loss);
    if (r->have_eval) {
        cJSON_AddNumberToObject(j, "final_eval_loss", r->last_eval.loss);
        cJSON_AddNumberToObject(j, "best_eval_loss", r->best_eval_loss);
        cJSON_AddNumberToObject(j, "exact_match", r->last_eval.exact_match);
        cJSON_AddNumberToObject(j, "token_accuracy", r->last_eval.token_acc);
    }
    cJSON_AddNumberToObject(j, "tokens_per_s", r->train_seconds > 0 ? (double)r->tokens / r->train_seconds : 0);
    cJSON_AddNumberToObject(j, "peak_rss_mb", train_peak_rss_mb());
    cJSON_AddNumberToObject(j, "params", (double)model_param_count_global(&t->m));
    cJSON_AddNumberToObject(j, "active_params", (double)active_params(&t->m));
    cJSON_AddNumberToObject(j, "flops_per_token", 6.0 * (double)active_params(&t->m));
    cJSON_AddNumberToObject(j, "dropped_frac", r->routed ? (double)r->dropped / (double)r->routed : 0);
    cJSON_AddNumberToObject(j, "expert_load_max_over_mean", n_sparse ? maxmean / n_sparse : 0);
    cJSON_AddNumberToObject(j, "expert_load_cv", n_sparse ? cv / n_sparse : 0);
    cJSON_AddNumberToObject(j, "skipped_steps", (double)t->skipped_total);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    char p[800];
    snprintf(p, sizeof p, "%s/summary.json", t->dir);
    sx_status s = sx_file_write_atomic(p, "run summary", text, strlen(text));
    free(text);
    return s;
}

/* ---- the run directory ------------------------------------------------------------------------------------------ */

/* Temporary files of checkpoint writes killed mid-way (NAME.tmp.PID of a process that no longer exists). */
static void remove_stale_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *t = strstr(e->d_name, ".tmp.");
        if (!t) continue;
        char *end;
        long pid = strtol(t + 5, &end, 10);
        if (*end || pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH)) {
            char p[1200];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (remove(p) == 0) printf("switchc: removed %s, left by a run killed while writing it\n", p);
        }
    }
    closedir(d);
}

/* A fresh run into a directory that holds an earlier run's files: refused (it would append to metrics.jsonl and
 * overwrite checkpoints), or with overwrite, those files removed first. */
static sx_status claim_run_dir(const char *dir, bool overwrite) {
    DIR *d = opendir(dir);
    if (!d) return sx_ok();
    struct dirent *e;
    char first[300] = "";
    int n = 0;
    sx_status s = sx_ok();
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        bool ours = !strncmp(nm, CKPT_PREFIX, strlen(CKPT_PREFIX)) || !strcmp(nm, "metrics.jsonl") || !strcmp(nm, "summary.json") ||
                    !strncmp(nm, "events.out.tfevents.", 20);
        if (!ours) continue;
        if (!n++) snprintf(first, sizeof first, "%s", nm);
        if (overwrite) {
            char p[1200];
            snprintf(p, sizeof p, "%s/%s", dir, nm);
            if (remove(p) != 0) s = sx_errorf("%s: cannot remove it (--overwrite): %s", p, strerror(errno));
        }
    }
    closedir(d);
    if (!s.ok) return s;
    if (n && !overwrite)
        return sx_errorf("train.out_dir %s already holds a run (%s and %d more file%s): continue it with --resume, replace it with --overwrite, "
                         "or set another train.out_dir", dir, first, n - 1, n == 2 ? "" : "s");
    if (n) printf("switchc: --overwrite: removed the %d files of the earlier run in %s\n", n, dir);
    return sx_ok();
}

/* ---- signals: SIGINT / SIGTERM stop at the step boundary with a checkpoint; a second one ends the process ----------- */

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
    if (stop_signal) { /* the second: at once */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
    static const char msg[] = "\nswitchc: stopping after this step (a checkpoint will be written); send the signal again to stop now\n";
    (void)!write(2, msg, sizeof msg - 1);
}

/* ---- the loop ------------------------------------------------------------------------------------------------------ */

/* ---- the run, in named phases ---------------------------------------------------------------------------------- */

/* What a run keeps beside the step: metrics, progress and totals. */
typedef struct {
    train_metrics *metrics;
    train_progress prog;
    run_totals tot;
    int64_t *layer_tokens;     /* [n_sparse, E]: kept tokens over the run */
    int n_sparse;
    double t_log, a2a_log, last_loss;
    int64_t tok_since_log;
} run_state;

/* train/step.c numbers a step's examples from step * batch_size; the batches come from the data position. */
static sx_status batch_get(void *user, uint64_t first, int B, int32_t *ids, int32_t *mask, int32_t *labels, int64_t *S, int64_t *T) {
    const trainer *t = user;
    return batch_source_get(t->src, first + t->data_skew, B, ids, mask, labels, S, T);
}

/* The run directory (claimed for a fresh run), the model, the step, the schedule and the training batches. */
static sx_status open_run(trainer *t, const trainer_opts *opts) {
    const run_config *cfg = t->cfg;
    const int W = t->par->world_size, mb = cfg->micro_batch_size ? cfg->micro_batch_size : cfg->batch_size;
    if (mb % W) return sx_errorf("train.micro_batch_size %d (or batch_size) must be a multiple of the %d ranks", mb, W);
    if (t->par->ep_size != cfg->expert_parallel)
        return sx_errorf("parallel.expert_parallel = %d but the ranks were grouped by %d", cfg->expert_parallel, t->par->ep_size);
    snprintf(t->dir, sizeof t->dir, "%s", cfg->out_dir);
    if (t->rank0) {
        SX_TRY(mkdir_p(t->dir));
        remove_stale_temps(t->dir);
        if (!opts->resume) SX_TRY(claim_run_dir(t->dir, opts->overwrite));
    }
    SX_TRY(par_barrier(t->par->world));
    SX_TRY(model_init_ep(&t->m, &cfg->model, t->par->ep));
    model_init_weights(&t->m, cfg->seed);
    SX_TRY(setup_schedule(t));
    SX_TRY(run_config_batches_open(cfg, false, &t->src));
    return train_step_init(&t->ts, &t->m, cfg, t->par, batch_source_max_len(t->src));
}

/* --init-from's parameters, then --resume's checkpoint (parameters, optimizer, counters). */
static sx_status restore(trainer *t, const trainer_opts *opts) {
    if (opts->init_from) {
        SX_TRY(load_params(&t->m, opts->init_from, true));
        if (t->rank0) printf("switchc: initialised from %s\n", opts->init_from);
    }
    if (opts->init_adapter) {
        if (!t->m.lora) return sx_errorf("--init-adapter %s: the run has no LoRA adapters (lora.r is 0)", opts->init_adapter);
        SX_TRY(lora_peft_load(&t->m, opts->init_adapter));
        if (t->rank0) printf("switchc: LoRA adapters from %s\n", opts->init_adapter);
    }
    if (!opts->resume) return sx_ok();
    char path[1024];
    bool found = true;
    if (!strcmp(opts->resume, "auto")) SX_TRY(ckpt_find_latest(t->dir, CKPT_PREFIX, path, sizeof path, &found));
    else snprintf(path, sizeof path, "%s", opts->resume);
    if (found) {
        SX_TRY(load_checkpoint(t, path));
        int64_t epoch, index;
        batch_source_position(t->src, data_consumed(t), &epoch, &index);
        if (t->rank0) printf("switchc: resumed from %s at step %lld (data: epoch %lld, example %lld)\n", path, (long long)t->step, (long long)epoch,
                             (long long)index);
    } else if (t->rank0) {
        printf("switchc: no checkpoint in %s: starting from step 0\n", t->dir);
    }
    return sx_ok();
}

/* RUN_DIR/config.json (the effective config) and the metrics writers, on rank 0. */
static sx_status record_run(trainer *t, run_state *rs) {
    if (!t->rank0) return sx_ok();
    char p[800];
    snprintf(p, sizeof p, "%s/config.json", t->dir);
    cJSON *j = run_config_to_json(t->cfg);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    sx_status s = sx_file_write_atomic(p, "effective config", text, strlen(text));
    free(text);
    SX_TRY(s);
    return train_metrics_open(t->dir, &rs->metrics);
}

/* A step with a non-finite loss or gradient updated nothing: counted, and too many in a row end the run. */
static sx_status count_skip(trainer *t, const train_step_stats *st) {
    t->skipped_total++;
    t->consecutive_skips++;
    if (t->rank0)
        fprintf(stderr, "\nswitchc: step %lld: non-finite %s: step skipped (%d in a row, %lld in all)\n", (long long)t->step + 1,
                isfinite(st->loss) ? "gradient" : "loss", t->consecutive_skips, (long long)t->skipped_total);
    if (t->consecutive_skips >= t->cfg->max_nonfinite_skips)
        return sx_errorf("%d consecutive steps had a non-finite loss or gradient (train.max_nonfinite_skips): stopping at step %lld; "
                         "the last good checkpoint in %s is kept (lower optim.lr or set train.grad_clip)",
                         t->consecutive_skips, (long long)t->step, t->dir);
    return sx_ok();
}

/* The metric line of a step: metrics.jsonl / TensorBoard, and stdout. */
static sx_status log_step(trainer *t, run_state *rs, const train_step_stats *st, double lr, bool quiet) {
    const int E = t->m.cfg.num_experts, n = st->n_sparse;
    double el = now_s() - rs->t_log;
    int64_t busiest = 0, idlest = INT64_MAX, tot = 0, idle = 0;
    for (int e = 0; e < E; e++) {
        int64_t c = 0;
        for (int r = 0; r < n; r++) c += st->layer_tokens[r * E + e];
        tot += c;
        busiest = c > busiest ? c : busiest;
        idlest = c < idlest ? c : idlest;
    }
    for (int q = 0; q < n * E; q++) idle += st->layer_tokens[q] == 0;
    double a2a = par_alltoall_seconds() - rs->a2a_log;
    double vals[] = {st->loss, st->ce, st->aux, st->z, lr, st->grad_norm, el > 0 ? (double)rs->tok_since_log / el : 0,
                     st->routed ? (double)st->dropped / (double)st->routed : 0, tot ? (double)busiest / (double)tot : 0,
                     tot ? (double)idlest / (double)tot : 0, (double)t->skipped_total, el > 0 ? a2a / el : 0,
                     n ? (double)idle / (double)(n * E) : 0};
    const char *names[] = {"train/loss", "train/ce", "train/aux_loss", "train/z_loss", "train/lr", "train/grad_norm", "train/tokens_per_s",
                           "train/dropped_frac", "train/busiest_expert_share", "train/idlest_expert_share", "train/skipped_steps",
                           "train/alltoall_time_share", "train/idle_expert_frac"};
    if (t->rank0) SX_TRY(train_metrics_log(rs->metrics, t->step, 13, names, vals));
    if (!quiet && t->rank0) {
        if (rs->prog.tty) fputs("\r\033[K", stderr); /* the progress bar's line, redrawn by the next update */
        printf("step %6lld | loss %.4f | ce %.4f | aux %.4f | z %.4f | lr %.2e | gnorm %.3f | %.0f tok/s | dropped %.1f%% | experts max %.0f%% min %.0f%%\n",
               (long long)t->step, vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], vals[6], 100 * vals[7], 100 * vals[8], 100 * vals[9]);
        fflush(stdout);
    }
    rs->t_log = now_s();
    rs->a2a_log = par_alltoall_seconds();
    rs->tok_since_log = 0;
    return sx_ok();
}

/* A held-out evaluation during the run: metrics, routing statistics, the console line. */
static sx_status evaluate_now(trainer *t, run_state *rs, bool quiet, trainer_result *res) {
    eval_result ev;
    SX_TRY(trainer_evaluate(&t->m, t->cfg, false, &ev));
    double vals[] = {ev.loss, ev.token_acc, ev.exact_match};
    const char *names[] = {"eval/loss", "eval/token_acc", "eval/exact_match"};
    if (t->rank0) SX_TRY(train_metrics_log(rs->metrics, t->step, 3, names, vals));
    SX_TRY(route_stats(&t->m, t->cfg, false, rs->metrics, t->step));
    if (!quiet && t->rank0) {
        if (rs->prog.tty) fputs("\r\033[K", stderr);
        printf("eval  %6lld | loss %.4f | token acc %.4f | exact match %.4f (%lld held-out examples)\n", (long long)t->step, ev.loss, ev.token_acc,
               ev.exact_match, (long long)ev.examples);
        fflush(stdout);
    }
    if (ev.loss < rs->tot.best_eval_loss) rs->tot.best_eval_loss = ev.loss;
    rs->tot.last_eval = ev;
    rs->tot.have_eval = true;
    if (res) {
        res->eval_loss = ev.loss;
        res->eval_token_acc = ev.token_acc;
        res->eval_exact_match = ev.exact_match;
    }
    return sx_ok();
}

/* The loop: steps until stop_at (or a stop signal), with logging, evaluation and checkpoints on their intervals. */
static sx_status train_loop(trainer *t, run_state *rs, const trainer_opts *opts, trainer_result *res) {
    const run_config *cfg = t->cfg;
    int64_t start_step = t->step, stop_at = cfg->steps;
    if (opts->stop_after > 0 && start_step + opts->stop_after < stop_at) stop_at = start_step + opts->stop_after;
    while (t->step < stop_at) {
        double lr = sched_lr(&t->sched, t->step), t0 = now_s(); /* HF: lambda(updates done) */
        train_step_stats st;
        SX_TRY(train_step_run(t->ts, batch_get, t, t->step, lr, stop_signal != 0, t->step == start_step ? opts->on_first_grads : NULL,
                              opts->user, &st));
        if (!st.finite) SX_TRY(count_skip(t, &st));
        else t->consecutive_skips = 0;
        t->step++;
        rs->last_loss = st.loss;
        rs->tot.train_seconds += now_s() - t0;
        rs->tot.tokens += st.tokens;
        rs->tot.dropped += st.dropped;
        rs->tot.routed += st.routed;
        for (int q = 0; q < st.n_sparse * t->m.cfg.num_experts; q++) rs->layer_tokens[q] += st.layer_tokens[q];
        if (opts->loss_trace) opts->loss_trace[t->step - 1] = st.loss;
        rs->tok_since_log += st.tokens;
        if (!opts->quiet && t->rank0) {
            char extra[64];
            snprintf(extra, sizeof extra, "loss %.4f", st.loss);
            train_progress_update(&rs->prog, t->step, extra);
        }
        if (t->step % cfg->log_every == 0 || t->step == cfg->steps) SX_TRY(log_step(t, rs, &st, lr, opts->quiet));
        if ((cfg->eval_every && t->step % cfg->eval_every == 0) || t->step == cfg->steps) SX_TRY(evaluate_now(t, rs, opts->quiet, res));
        if ((cfg->ckpt_every && t->step % cfg->ckpt_every == 0) || t->step == stop_at || st.stop) SX_TRY(save_checkpoint(t));
        if (st.stop)
            return sx_errorf("stopped by %s after step %lld of %lld: checkpoint %s/%s%08lld.h5 written; continue with --resume",
                             stop_signal == SIGINT ? "SIGINT" : stop_signal == SIGTERM ? "SIGTERM" : "a signal on another rank", (long long)t->step,
                             (long long)cfg->steps, t->dir, CKPT_PREFIX, (long long)t->step);
    }
    return sx_ok();
}

/* The end of a run: summary.json, and for a finished run the final held-out report. */
static sx_status finish_run(trainer *t, run_state *rs, const trainer_opts *opts) {
    /* every rank leaves with the last checkpoint written (rank 0 writes it; the others may read it next) */
    SX_TRY(par_barrier(t->par->world));
    if (t->rank0) SX_TRY(write_summary(t, &rs->tot, rs->layer_tokens, rs->n_sparse, rs->last_loss));
    if (t->step != t->cfg->steps || opts->quiet) return sx_ok();
    eval_result ev;
    SX_TRY(trainer_evaluate(&t->m, t->cfg, true, &ev));
    if (t->rank0) {
        printf("held-out exact match: %.4f (%lld examples), token accuracy %.4f, loss %.4f\n", ev.exact_match, (long long)ev.examples, ev.token_acc,
               ev.loss);
        printf("run directory %s: checkpoint %s%08lld.h5, summary.json, metrics.jsonl (plot: tensorboard --logdir %s)\n", t->dir, CKPT_PREFIX,
               (long long)t->step, t->dir);
    }
    return route_stats(&t->m, t->cfg, t->rank0, NULL, t->step);
}

sx_status trainer_run(const run_config *cfg, const trainer_opts *opts, trainer_result *res) {
    SX_TRY(run_config_validate(cfg));
    /* the data the run reads, the evaluation set too, before step 1 */
    SX_TRY(run_checks_preflight(cfg, !(opts->stop_after > 0 && cfg->eval_every == 0)));
    if (cfg->threads > 0) openblas_set_num_threads(cfg->threads);
    trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    if (!opts->par) par_init_local(&t.local_par);
    t.par = opts->par ? opts->par : &t.local_par;
    t.rank0 = t.par->world_rank == 0;
    run_state rs;
    memset(&rs, 0, sizeof rs);
    rs.tot.best_eval_loss = INFINITY;
    rs.last_loss = NAN;
    sx_status s = open_run(&t, opts);
    if (s.ok) s = restore(&t, opts);
    if (s.ok) s = record_run(&t, &rs);
    if (s.ok) {
        rs.n_sparse = model_config_sparse_count(t.m.cfg.encoder_sparse_step, t.m.cfg.num_layers) +
                      model_config_sparse_count(t.m.cfg.decoder_sparse_step, t.m.cfg.num_decoder_layers);
        rs.layer_tokens = calloc((size_t)(rs.n_sparse * t.m.cfg.num_experts + 1), sizeof(int64_t));
        train_progress_init(&rs.prog, cfg->steps);
        rs.t_log = now_s();
        rs.a2a_log = par_alltoall_seconds();
        if (t.rank0)
            printf("switchc: training %lld parameters (%s, %d experts) on task '%s' for %lld steps, batch %d%s, %d rank%s (expert parallel %d), "
                   "run directory %s\n",
                   (long long)model_param_count_global(&t.m), cfg->model_source, t.m.cfg.num_experts, cfg->task, (long long)cfg->steps,
                   cfg->batch_size, cfg->micro_batch_size && cfg->micro_batch_size < cfg->batch_size ? " (micro-batches)" : "",
                   t.par->world_size, t.par->world_size > 1 ? "s" : "", t.par->ep_size, t.dir);
        /* SIGINT / SIGTERM: stop at the step boundary with a checkpoint (a second one ends the process) */
        struct sigaction stop_sa = {0}, old_int, old_term;
        stop_sa.sa_handler = on_stop_signal;
        sigemptyset(&stop_sa.sa_mask);
        stop_signal = 0;
        sigaction(SIGINT, &stop_sa, &old_int);
        sigaction(SIGTERM, &stop_sa, &old_term);
        s = train_loop(&t, &rs, opts, res);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        if (!opts->quiet && t.rank0) train_progress_done(&rs.prog);
        if (rs.metrics) train_metrics_close(rs.metrics);
        rs.metrics = NULL;
        if (s.ok) s = finish_run(&t, &rs, opts);
    }
    if (res) {
        res->steps_done = t.step;
        res->final_loss = rs.last_loss;
        res->skipped_steps = t.skipped_total;
    }
    if (rs.metrics) train_metrics_close(rs.metrics);
    free(rs.layer_tokens);
    if (t.src) batch_source_close(t.src);
    train_step_free(t.ts);
    model_free(&t.m);
    return s;
}
