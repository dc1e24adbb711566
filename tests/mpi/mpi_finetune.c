/* The fine-tuning trajectories of tests/fixtures/finetune (transformers 4.57.6 + torch) under mpirun with expert
 * parallelism E: `mpi_finetune CASE E`. Every rank count and E must give the one-process run: each step's loss within
 * 1e-6 relative of it (the same sums in another order: the gradient all-reduce and the token all-to-all reorder float
 * additions, ~1e-7 of a loss near 4) and of transformers within 1e-5 (test_finetune.c's bound), and the final
 * checkpoint's parameters within 1e-5 relative of the one-process checkpoint's, tensor by tensor: AdamW's update
 * m / (sqrt(v) + eps) is near lr whatever the gradient's size, so where a gradient is tiny a reordered sum moves the
 * update by more than its 1e-7 (measured 1.5e-6 for AdamW, 2e-7 for Adafactor, after 20 steps). Adafactor's update
 * clipping per expert is what makes this hold for E > 1 (each rank holds a slice of the block). */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "data/dataset.h"
#include "parallel/par.h"
#include "train/hf/hf_model.h"
#include "train/model/model.h"
#include "train/run_config.h"
#include "train/trainer.h"

#define FIXDIR SX_SOURCE_DIR "/tests/fixtures/finetune"
#define STEPS 20

static void *read_all(hid_t f, const char *path, hid_t mt, size_t el, int64_t *numel) {
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d < 0) {
        fprintf(stderr, "mpi_finetune: fixture has no %s\n", path);
        exit(2);
    }
    hid_t sp = H5Dget_space(d);
    int64_t n = H5Sget_simple_extent_npoints(sp);
    void *buf = malloc((size_t)(n + 1) * el);
    if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        fprintf(stderr, "mpi_finetune: cannot read %s\n", path);
        exit(2);
    }
    H5Sclose(sp);
    H5Dclose(d);
    if (numel) *numel = n;
    return buf;
}

static char *read_attr(hid_t g, const char *name) {
    hid_t a = H5Aopen(g, name, H5P_DEFAULT), t = H5Aget_type(a), mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(t));
    char *v = NULL;
    if (H5Aread(a, mt, &v) < 0) {
        fprintf(stderr, "mpi_finetune: cannot read attribute %s\n", name);
        exit(2);
    }
    char *out = strdup(v);
    H5free_memory(v);
    H5Tclose(mt);
    H5Tclose(t);
    H5Aclose(a);
    return out;
}

static void write_dataset(hid_t f, const char *path) {
    int64_t noi;
    int32_t *in = read_all(f, "data/inputs", H5T_NATIVE_INT32, 4, NULL), *tg = read_all(f, "data/targets", H5T_NATIVE_INT32, 4, NULL);
    int64_t *oi = read_all(f, "data/input_offsets", H5T_NATIVE_INT64, 8, &noi), *ot = read_all(f, "data/target_offsets", H5T_NATIVE_INT64, 8, NULL);
    data_writer *w;
    sx_status s = data_writer_open(path, 32, 0, true, &w);
    for (int64_t i = 0; s.ok && i + 1 < noi; i++) s = data_writer_append(w, in + oi[i], oi[i + 1] - oi[i], tg + ot[i], ot[i + 1] - ot[i]);
    if (s.ok) s = data_writer_close(w);
    if (!s.ok) {
        fprintf(stderr, "mpi_finetune: %s\n", s.msg);
        exit(2);
    }
    free(in);
    free(tg);
    free(oi);
    free(ot);
}

static sx_status case_config(hid_t g, const char *data, const char *dir, int E, run_config *cfg) {
    run_config_defaults(cfg);
    SX_TRY(hf_read_config(FIXDIR "/model", &cfg->model));
    char *sets = read_attr(g, "set");
    cJSON *j = cJSON_Parse(sets);
    free(sets);
    const cJSON *it;
    cJSON_ArrayForEach(it, j) SX_TRY(run_config_set(cfg, it->valuestring));
    cJSON_Delete(j);
    const char *extra[] = {"data.task=dataset", "train.eval_every=0", "train.ckpt_every=0", "train.log_every=100", "eval.batch_size=64"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) SX_TRY(run_config_set(cfg, extra[i]));
    snprintf(cfg->train_data, sizeof cfg->train_data, "%s", data);
    snprintf(cfg->eval_data, sizeof cfg->eval_data, "%s", data);
    snprintf(cfg->out_dir, sizeof cfg->out_dir, "%s", dir);
    cfg->expert_parallel = E;
    return sx_ok();
}

/* Largest difference relative to the tensor's largest entry, over every tensor of two whole checkpoints. */
static double compare_ckpts(const run_config *cfg, const char *a, const char *b) {
    model ma, mb;
    sx_status s = model_init_inference(&ma, &cfg->model);
    if (s.ok) s = model_init_inference(&mb, &cfg->model);
    if (s.ok) s = trainer_load_params(&ma, a);
    if (s.ok) s = trainer_load_params(&mb, b);
    if (!s.ok) {
        fprintf(stderr, "mpi_finetune: %s\n", s.msg);
        return INFINITY;
    }
    double worst = 0;
    for (int i = 0; i < ma.n_params; i++) {
        const param_desc *p = &ma.params[i];
        int ng = p->n_experts ? p->n_experts : 1;
        int64_t per = p->numel / ng;
        for (int e = 0; e < ng; e++) {
            const float *x = ma.w + p->offset + e * per, *y = mb.w + p->offset + e * per;
            double md = 0, mr = 0;
            for (int64_t q = 0; q < per; q++) {
                double d = fabs((double)x[q] - y[q]);
                if (!(d <= md)) md = d;
                mr = fmax(mr, fabs(y[q]));
            }
            worst = fmax(worst, md / fmax(mr, 1e-30));
        }
    }
    model_free(&ma);
    model_free(&mb);
    return worst;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: mpi_finetune CASE EXPERT_PARALLEL\n");
        return 2;
    }
    const char *name = argv[1];
    int E = atoi(argv[2]);
    par_ctx par;
    sx_status s = par_init(&par, &argc, &argv, E, PAR_TRANSPORT_MPI, 120);
    if (!s.ok) {
        fprintf(stderr, "mpi_finetune: %s\n", s.msg);
        return 1;
    }
    hid_t f = H5Fopen(FIXDIR "/trajectories.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) par_abort(&par, "no fixture %s", FIXDIR "/trajectories.h5");
    hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
    if (g < 0) par_abort(&par, "the fixture has no case %s", name);
    char data[256], dir[256], refdir[256];
    snprintf(data, sizeof data, "mpi_finetune_%s_np%d_ep%d.h5", name, par.world_size, E);
    snprintf(dir, sizeof dir, "mpi_finetune_%s_np%d_ep%d", name, par.world_size, E);
    snprintf(refdir, sizeof refdir, "mpi_finetune_%s_np%d_ep%d_ref", name, par.world_size, E);
    double ref_loss[STEPS] = {0}, loss[STEPS] = {0};
    run_config cfg, ref_cfg;
    if (par.world_rank == 0) {
        write_dataset(f, data);
        s = case_config(g, data, refdir, 1, &ref_cfg);
        if (!s.ok) par_abort(&par, "%s", s.msg);
        par_ctx local;
        par_init_local(&local);
        trainer_opts ro = {.quiet = true, .overwrite = true, .loss_trace = ref_loss, .par = &local, .init_from = FIXDIR "/model"};
        trainer_result rr;
        s = trainer_run(&ref_cfg, &ro, &rr);
        if (!s.ok) par_abort(&par, "one-process run: %s", s.msg);
    }
    s = par_barrier(par.world);
    if (s.ok) s = case_config(g, data, dir, E, &cfg);
    if (!s.ok) par_abort(&par, "%s", s.msg);
    trainer_opts o = {.quiet = true, .overwrite = true, .loss_trace = loss, .par = &par, .init_from = FIXDIR "/model"};
    trainer_result r;
    s = trainer_run(&cfg, &o, &r);
    if (!s.ok) par_abort(&par, "%s", s.msg);
    int failures = 0;
    if (par.world_rank == 0) {
        double *hf = read_all(g, "losses", H5T_NATIVE_DOUBLE, 8, NULL);
        double w1 = 0, wh = 0;
        for (int t = 0; t < STEPS; t++) {
            double e1 = fabs(loss[t] - ref_loss[t]) / fabs(ref_loss[t]), eh = fabs(loss[t] - hf[t]) / fabs(hf[t]);
            if (!(e1 <= 1e-6) || !(eh <= 1e-5)) {
                printf("%s step %d: loss %.9g, one process %.9g (rel %.3e), transformers %.9g (rel %.3e)\n", name, t + 1, loss[t], ref_loss[t], e1,
                       hf[t], eh);
                failures++;
            }
            w1 = fmax(w1, e1);
            wh = fmax(wh, eh);
        }
        free(hf);
        char a[300], b[300];
        snprintf(a, sizeof a, "%s/ckpt_step%08d.h5", dir, STEPS);
        snprintf(b, sizeof b, "%s/ckpt_step%08d.h5", refdir, STEPS);
        double wr = compare_ckpts(&cfg, a, b);
        if (!(wr <= 1e-5)) failures++;
        printf("%s np %d ep %d: step losses vs one process %.3e, vs transformers %.3e; final weights vs one process %.3e\n", name, par.world_size, E,
               w1, wh, wr);
        unlink(data);
    }
    H5Gclose(g);
    H5Fclose(f);
    par_bcast(par.world, &failures, 1, PAR_I32, 0);
    par_finalize(&par);
    if (failures) printf("FAILED: %d checks\n", failures);
    return failures ? 1 : 0;
}
