/* The training loop: N steps straight and N/2 + resume + N/2 give bitwise-identical losses on the CPU (the built-in
 * task, and a shuffled, bucketed dataset stopped mid-window in its second epoch); a corrupt,
 * truncated or wrong-version checkpoint is a clear error; the run directory holds what the README promises; a
 * run whose loss is non-finite stops after the configured number of skipped steps; freezing leaves parameters
 * untouched. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/dataset.h"
#include "train/ckpt.h"
#include "train/trainer.h"

static void small_run(run_config *c, const char *dir) {
    run_config_demo(c);
    c->model.d_model = 16;
    c->model.d_kv = 4;
    c->model.d_ff = 24;
    c->model.dropout_rate = 0.1;       /* dropout and jitter on: their streams must resume exactly too */
    c->model.router_jitter_noise = 0.01;
    c->steps = 8;
    c->batch_size = 8;
    c->micro_batch_size = 4;           /* gradient accumulation on the resume path as well */
    c->eval_every = 0;
    c->eval_examples = 16;
    c->ckpt_every = 0;
    c->log_every = 4;
    c->warmup_steps = 2;
    snprintf(c->out_dir, sizeof c->out_dir, "%s", dir);
}

static void tmpdir(char *buf, size_t cap, const char *tag) {
    snprintf(buf, cap, "%s/trainer_test_%s_%d", SX_BINARY_DIR, tag, (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", buf);
    cr_assert(system(cmd) == 0);
}

static void exists(const char *dir, const char *name) {
    char p[800];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    cr_expect(stat(p, &st) == 0, "run directory lacks %s", name);
}

Test(trainer, resume_is_bitwise, .timeout = 300) {
    char d1[512], d2[512];
    tmpdir(d1, sizeof d1, "straight");
    tmpdir(d2, sizeof d2, "resumed");
    run_config c;
    double straight[8], resumed[8];
    small_run(&c, d1);
    trainer_opts o = {.quiet = true, .loss_trace = straight};
    trainer_result r;
    sx_status s = trainer_run(&c, &o, &r);
    cr_assert(s.ok, "%s", s.msg);
    cr_assert_eq(r.steps_done, 8);

    small_run(&c, d2);
    trainer_opts o1 = {.quiet = true, .loss_trace = resumed, .stop_after = 4};
    s = trainer_run(&c, &o1, &r);
    cr_assert(s.ok, "%s", s.msg);
    cr_assert_eq(r.steps_done, 4);
    trainer_opts o2 = {.quiet = true, .loss_trace = resumed, .resume = "auto"};
    s = trainer_run(&c, &o2, &r);
    cr_assert(s.ok, "%s", s.msg);
    cr_assert_eq(r.steps_done, 8);
    for (int i = 0; i < 8; i++) {
        printf("step %d: straight %.9g resumed %.9g\n", i + 1, straight[i], resumed[i]);
        cr_expect(memcmp(&straight[i], &resumed[i], sizeof(double)) == 0, "step %d: %.9g vs %.9g: not bitwise identical", i + 1, straight[i], resumed[i]);
    }
    exists(d1, "config.json");
    exists(d1, "metrics.jsonl");
    exists(d1, "ckpt_step00000008.h5");
}

/* A prepared token dataset of n (input, target) pairs with varied input lengths, so length buckets reorder it. */
static void write_dataset(const char *path, int n, int vocab) {
    data_writer *w;
    sx_status s = data_writer_open(path, vocab, 0, true, &w);
    cr_assert(s.ok, "%s", s.msg);
    int32_t in[32], tgt[4];
    for (int i = 0; i < n; i++) {
        int len = 2 + (i * 7) % 29;
        for (int k = 0; k < len; k++) in[k] = 3 + (i * 31 + k * 17) % (vocab - 3);
        for (int k = 0; k < 3; k++) tgt[k] = in[(k * 5) % len];
        tgt[3] = 1; /* EOS */
        cr_assert(data_writer_append(w, in, len, tgt, 4).ok);
    }
    s = data_writer_close(w);
    cr_assert(s.ok, "%s", s.msg);
}

/* data.task = dataset, shuffled, length-bucketed: stopped in the second epoch inside a bucket window and resumed, the
 * losses match the straight run bit for bit, and the checkpoint holds the position a wrong seek would miss. */
Test(trainer, dataset_resume_mid_epoch_in_a_bucket_window_is_bitwise, .timeout = 300) {
    enum { N = 68, VOCAB = 64, K = 3, STEPS = 18, STOP = 11 };
    char d1[400], d2[400], data[480], ck[600];
    tmpdir(d1, sizeof d1, "ds_straight");
    tmpdir(d2, sizeof d2, "ds_resumed");
    snprintf(data, sizeof data, "%s.tokens.h5", d1);
    write_dataset(data, N, VOCAB);
    run_config c;
    small_run(&c, d1);
    c.model.vocab_size = VOCAB;
    snprintf(c.task, sizeof c.task, "dataset");
    snprintf(c.train_data, sizeof c.train_data, "%s", data);
    snprintf(c.eval_data, sizeof c.eval_data, "%s", data);
    c.max_input_len = 24; /* below the longest input (30): truncation is on the path too */
    c.max_target_len = 8;
    c.bucket_batches = K;
    c.steps = STEPS;
    cr_assert(c.shuffle, "the default shuffles every epoch");
    sx_status s = run_config_validate(&c);
    cr_assert(s.ok, "%s", s.msg);
    /* where the stop lands: 88 examples = epoch 1, example 20, inside window 1 ([12, 24): K micro-batches of 4) */
    const int64_t window = (int64_t)K * c.micro_batch_size, stop_at = (int64_t)STOP * c.batch_size;
    cr_assert(stop_at / N == 1 && stop_at % N % window != 0, "the stop must fall mid-epoch and mid-window");
    cr_assert((int64_t)STEPS * c.batch_size > 2 * N, "the run crosses two epoch boundaries");

    double straight[STEPS], resumed[STEPS];
    trainer_opts o = {.quiet = true, .loss_trace = straight};
    trainer_result r;
    s = trainer_run(&c, &o, &r);
    cr_assert(s.ok, "%s", s.msg);
    cr_assert_eq(r.steps_done, STEPS);

    snprintf(c.out_dir, sizeof c.out_dir, "%s", d2);
    trainer_opts o1 = {.quiet = true, .loss_trace = resumed, .stop_after = STOP};
    s = trainer_run(&c, &o1, &r);
    cr_assert(s.ok, "%s", s.msg);
    cr_assert_eq(r.steps_done, STOP);
    snprintf(ck, sizeof ck, "%s/ckpt_step%08d.h5", d2, STOP);
    ckpt_reader *rd;
    cr_assert(ckpt_open(ck, &rd).ok);
    int64_t pos[3];
    cr_assert(ckpt_read_i64(rd, "data/position", 1, (int64_t[]){3}, pos).ok);
    ckpt_close(rd);
    cr_expect(pos[0] == stop_at / N && pos[1] == stop_at % N && pos[2] == N, "data position %lld %lld %lld, want %lld %lld %d",
              (long long)pos[0], (long long)pos[1], (long long)pos[2], (long long)(stop_at / N), (long long)(stop_at % N), N);

    trainer_opts o2 = {.quiet = true, .loss_trace = resumed, .resume = "auto"};
    s = trainer_run(&c, &o2, &r);
    cr_assert(s.ok, "%s", s.msg);
    cr_assert_eq(r.steps_done, STEPS);
    for (int i = 0; i < STEPS; i++)
        cr_expect(memcmp(&straight[i], &resumed[i], sizeof(double)) == 0, "step %d: %.9g vs %.9g: not bitwise identical", i + 1, straight[i],
                  resumed[i]);
    unlink(data);
}

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert(fwrite(b, 1, n, f) == n);
    fclose(f);
}

Test(trainer, bad_checkpoints_are_clear_errors, .timeout = 300) {
    char d[512];
    tmpdir(d, sizeof d, "badckpt");
    run_config c;
    small_run(&c, d);
    c.steps = 2;
    trainer_opts o = {.quiet = true};
    trainer_result r;
    cr_assert(trainer_run(&c, &o, &r).ok);
    char good[700], bad[700];
    snprintf(good, sizeof good, "%s/ckpt_step00000002.h5", d);
    FILE *f = fopen(good, "rb");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n);
    cr_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    model m;
    cr_assert(model_init(&m, &c.model).ok);

    snprintf(bad, sizeof bad, "%s/truncated.h5", d);
    write_bytes(bad, buf, (size_t)n / 2);
    sx_status s = trainer_load_params(&m, bad);
    cr_expect(!s.ok && strstr(s.msg, "truncated.h5"), "truncated: %s", s.msg);

    snprintf(bad, sizeof bad, "%s/notckpt.h5", d);
    write_bytes(bad, "this is not HDF5 at all", 23);
    s = trainer_load_params(&m, bad);
    cr_expect(!s.ok && strstr(s.msg, "notckpt.h5"), "garbage: %s", s.msg);

    /* a wrong format version: rewrite the checkpoint's attribute */
    snprintf(bad, sizeof bad, "%s/ckpt_step00000099.h5", d);
    ckpt_writer *w;
    cr_assert(ckpt_writer_open(bad, &w).ok);
    cr_assert(ckpt_writer_commit(w).ok);
    s = trainer_load_params(&m, bad);
    cr_expect(!s.ok && strstr(s.msg, "missing parameter"), "empty checkpoint: %s", s.msg);

    /* a checkpoint of another model shape */
    run_config c2;
    small_run(&c2, d);
    c2.model.d_model = 24;
    model m2;
    cr_assert(model_init(&m2, &c2.model).ok);
    s = trainer_load_params(&m2, good);
    cr_expect(!s.ok && strstr(s.msg, "shape"), "shape mismatch: %s", s.msg);
    model_free(&m);
    model_free(&m2);
    free(buf);
}

Test(trainer, frozen_parameters_do_not_move, .timeout = 300) {
    char d[512];
    tmpdir(d, sizeof d, "freeze");
    run_config c;
    small_run(&c, d);
    c.steps = 3;
    snprintf(c.train_only, sizeof c.train_only, "*.router.*");
    trainer_opts o = {.quiet = true};
    trainer_result r;
    sx_status s = trainer_run(&c, &o, &r);
    cr_assert(s.ok, "%s", s.msg);
    model init, trained;
    cr_assert(model_init(&init, &c.model).ok);
    model_init_weights(&init, c.seed);
    cr_assert(model_init(&trained, &c.model).ok);
    char p[700];
    snprintf(p, sizeof p, "%s/ckpt_step00000003.h5", d);
    s = trainer_load_params(&trained, p);
    cr_assert(s.ok, "%s", s.msg);
    int moved_router = 0, moved_other = 0;
    for (int i = 0; i < init.n_params; i++) {
        bool same = !memcmp(init.w + init.params[i].offset, trained.w + trained.params[i].offset, sizeof(float) * (size_t)init.params[i].numel);
        if (init.params[i].kind == PK_ROUTER) moved_router += !same;
        else moved_other += !same;
    }
    cr_expect(moved_router > 0, "the routers (the only trained tensors) did not move");
    cr_expect_eq(moved_other, 0, "%d frozen tensors moved", moved_other);
    model_free(&init);
    model_free(&trained);
}

Test(trainer, nonfinite_loss_stops_after_the_skip_limit, .timeout = 300) {
    char d[512];
    tmpdir(d, sizeof d, "nan");
    run_config c;
    small_run(&c, d);
    c.steps = 20;
    c.lr = 1e30; /* the first update explodes the weights; later losses are not finite */
    c.grad_clip = 0;
    c.max_nonfinite_skips = 3;
    c.warmup_steps = 0;
    snprintf(c.schedule, sizeof c.schedule, "constant");
    trainer_opts o = {.quiet = true};
    trainer_result r;
    sx_status s = trainer_run(&c, &o, &r);
    cr_expect(!s.ok, "a run with exploding weights must stop");
    cr_expect(strstr(s.msg, "non-finite") && strstr(s.msg, "max_nonfinite_skips"), "got: %s", s.msg);
    cr_expect(r.skipped_steps >= 3, "skipped %lld", (long long)r.skipped_steps);
}

/* SIGKILL while checkpoints are being written: the run resumes from the newest complete checkpoint and every
 * checkpoint file present opens cleanly (temp files may remain; they are never taken for checkpoints). */
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>

Test(trainer, sigkill_during_checkpoint_resumes_from_the_previous_one, .timeout = 600) {
    char d[512];
    tmpdir(d, sizeof d, "sigkill");
    run_config c;
    small_run(&c, d);
    c.model.d_model = 64; /* ~1 MB checkpoints: writes take long enough to be interrupted */
    c.model.d_ff = 256;
    c.model.d_kv = 16;
    c.steps = 100000;
    c.ckpt_every = 1;
    c.keep_checkpoints = 3;
    c.log_every = 1000;
    int kills_mid_write = 0, rounds = 0;
    /* kill as soon as a checkpoint's temporary file appears (a real event, not a time: the test must not depend on
     * how loaded the machine is), or between writes on odd rounds */
    for (int round = 0; round < 6; round++, rounds++) {
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
            trainer_opts o = {.quiet = true, .resume = "auto"};
            trainer_result r;
            trainer_run(&c, &o, &r);
            _exit(0);
        }
        /* the event: a checkpoint write in progress, and from round 1 on a complete checkpoint beside it (so the
         * kill has something to spare) */
        bool seen = false;
        for (int waited = 0; waited < 120000 && !seen; waited++) { /* up to 120 s in 1 ms polls */
            DIR *dir = opendir(d);
            struct dirent *e;
            bool temp = false, done = round == 0;
            while (dir && (e = readdir(dir))) {
                temp |= strstr(e->d_name, ".tmp.") != NULL && strstr(e->d_name, ".tmp.999") == NULL;
                done |= !strncmp(e->d_name, "ckpt_step", 9) && !strstr(e->d_name, ".tmp.");
            }
            if (dir) closedir(dir);
            seen = temp && done;
            if (!seen) usleep(1000);
        }
        cr_assert(seen, "round %d: no checkpoint write started within 120 s", round);
        if (round % 2) usleep(5000); /* odd rounds: a little later, sometimes after the write */
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        cr_assert(WIFSIGNALED(st), "the child was meant to be killed");
        /* a temp file left behind means the kill landed inside a checkpoint write */
        DIR *dir = opendir(d);
        struct dirent *e;
        int valid = 0;
        while ((e = readdir(dir))) {
            char p[800];
            snprintf(p, sizeof p, "%s/%s", d, e->d_name);
            if (strstr(e->d_name, ".tmp.")) {
                kills_mid_write++; /* left for the next run to clean (it must) */
                continue;
            }
            if (strncmp(e->d_name, "ckpt_step", 9)) continue;
            ckpt_reader *r;
            sx_status s = ckpt_open(p, &r);
            cr_expect(s.ok, "round %d: checkpoint %s is corrupt: %s", round, e->d_name, s.msg);
            if (s.ok) {
                ckpt_close(r);
                valid++;
            }
        }
        closedir(dir);
        cr_expect(valid > 0 || round == 0, "round %d: the complete checkpoint did not survive the kill", round);
    }
    printf("SIGKILL rounds that interrupted a checkpoint write: %d of %d\n", kills_mid_write, rounds);
    cr_expect(kills_mid_write >= 1, "no kill landed inside a checkpoint write in %d rounds: the test did not test it", rounds);
    /* and the run resumes from what is there */
    c.steps = 1;
    trainer_opts o = {.quiet = true, .resume = "auto", .stop_after = 1};
    run_config c2 = c;
    trainer_result r;
    sx_status s = trainer_run(&c2, &o, &r);
    (void)s; /* steps=1 is below the resumed step: the loop does nothing; loading is what is checked */
    cr_expect(s.ok, "resume after SIGKILL failed: %s", s.msg);
    DIR *dir = opendir(d);
    struct dirent *e;
    while ((e = readdir(dir))) cr_expect(!strstr(e->d_name, ".tmp."), "the resumed run left the stale %s", e->d_name);
    closedir(dir);
}

/* SIGTERM (or SIGINT) stops the run at the next step boundary with a checkpoint and a non-zero status that says
 * where; the run resumes from it. Two signals in a row end the process at once. */
static int lines_of(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0, ch;
    while ((ch = fgetc(f)) != EOF) n += ch == '\n';
    fclose(f);
    return n;
}

Test(trainer, sigterm_stops_at_a_step_with_a_checkpoint, .timeout = 300) {
    char d[512], metrics[600];
    tmpdir(d, sizeof d, "sigterm");
    run_config c;
    small_run(&c, d);
    c.steps = 100000;
    c.ckpt_every = 0;
    c.log_every = 1;
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", d);
    for (int twice = 0; twice < 2; twice++) {
        int pfd[2];
        cr_assert(pipe(pfd) == 0);
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            dup2(pfd[1], 2); /* the handler's acknowledgement goes to the parent */
            trainer_opts o = {.quiet = true, .resume = twice ? "auto" : NULL};
            trainer_result r;
            sx_status s = trainer_run(&c, &o, &r);
            _exit(!s.ok && strstr(s.msg, "stopped by SIGTERM") && strstr(s.msg, "--resume") ? 3 : s.ok ? 0 : 4);
        }
        /* the event: the run has logged steps (and so installed its handlers) */
        int base = twice ? lines_of(metrics) : 0;
        for (int waited = 0; waited < 120000 && lines_of(metrics) < base + 3; waited++) usleep(1000);
        cr_assert(lines_of(metrics) >= base + 3, "the run logged no steps");
        kill(pid, SIGTERM);
        close(pfd[1]);
        if (twice) {
            /* the second only once the first was taken (two pending signals would merge into one) */
            char buf[512];
            size_t got = 0;
            ssize_t k;
            while (got < sizeof buf - 1 && (k = read(pfd[0], buf + got, sizeof buf - 1 - got)) > 0) {
                got += (size_t)k;
                buf[got] = 0;
                if (strstr(buf, "send the signal again")) break;
            }
            kill(pid, SIGTERM);
        }
        int st;
        waitpid(pid, &st, 0);
        close(pfd[0]); /* after the child is gone: its message must not meet a closed pipe */
        if (!twice) {
            cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 3, "one SIGTERM: a clean stop with the checkpoint named (status %d)", st);
        } else {
            cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "two SIGTERMs: the process ends at once (status %d)", st);
            continue;
        }
        DIR *dir = opendir(d);
        struct dirent *e;
        int ckpts = 0;
        while ((e = readdir(dir))) ckpts += !strncmp(e->d_name, "ckpt_step", 9) && !strstr(e->d_name, ".tmp.");
        closedir(dir);
        cr_expect_eq(ckpts, 1, "the stopped run wrote its checkpoint");
    }
}

/* A fresh run into a directory holding an earlier run is refused; --overwrite replaces it. */
Test(trainer, rerun_into_a_run_directory_needs_overwrite, .timeout = 300) {
    char d[512], p[700];
    tmpdir(d, sizeof d, "rerun");
    run_config c;
    small_run(&c, d);
    c.steps = 2;
    trainer_opts o = {.quiet = true};
    trainer_result r;
    cr_assert(trainer_run(&c, &o, &r).ok);
    snprintf(p, sizeof p, "%s/metrics.jsonl", d);
    int lines = lines_of(p);
    sx_status s = trainer_run(&c, &o, &r);
    cr_expect(!s.ok && strstr(s.msg, "already holds a run") && strstr(s.msg, "--overwrite") && strstr(s.msg, "--resume"), "got: %s",
              s.ok ? "ok" : s.msg);
    cr_expect_eq(lines_of(p), lines, "the refused run touched metrics.jsonl");
    /* a stale temporary file of a dead process is removed by the next run */
    snprintf(p, sizeof p, "%s/ckpt_step00000002.h5.tmp.999999999", d);
    write_bytes(p, "x", 1);
    trainer_opts ow = {.quiet = true, .overwrite = true};
    s = trainer_run(&c, &ow, &r);
    cr_expect(s.ok, "--overwrite: %s", s.msg);
    snprintf(p, sizeof p, "%s/metrics.jsonl", d);
    cr_expect_eq(lines_of(p), lines, "--overwrite starts metrics.jsonl afresh");
    struct stat stt;
    snprintf(p, sizeof p, "%s/ckpt_step00000002.h5.tmp.999999999", d);
    cr_expect(stat(p, &stt) != 0, "the stale temporary file is still there");
}

/* A checkpoint keeps the single-process layout: the whole model written once loads as any expert-parallel share
 * (E = 1, 2, 4, 8 ranks of an 8-expert model), each rank taking exactly its experts' slices. */
#include "parallel/par.h"

Test(trainer, checkpoint_reslices_for_any_expert_parallel_size, .timeout = 120) {
    char d[512];
    tmpdir(d, sizeof d, "reslice");
    run_config c;
    small_run(&c, d);
    c.model.num_experts = 8;
    model whole;
    cr_assert(model_init(&whole, &c.model).ok);
    model_init_weights(&whole, 77);
    char p[700];
    cr_assert(system((snprintf(p, sizeof p, "mkdir -p '%s'", d), p)) == 0);
    snprintf(p, sizeof p, "%s/whole.h5", d);
    sx_status s = trainer_write_model(&whole, &c, p);
    cr_assert(s.ok, "%s", s.msg);
    for (int E = 1; E <= 8; E *= 2)
        for (int r = 0; r < E; r++) {
            par_group *g = par_group_describe(E, r);
            model part;
            cr_assert(model_init_ep(&part, &c.model, g).ok);
            s = trainer_load_params(&part, p);
            cr_assert(s.ok, "E=%d rank %d: %s", E, r, s.msg);
            int bad = 0;
            for (int i = 0; i < part.n_params; i++) {
                const param_desc *q = &part.params[i];
                int64_t first = q->n_experts ? (int64_t)q->expert_offset * (q->numel / q->n_experts) : 0;
                bad += memcmp(part.w + q->offset, whole.w + whole.params[i].offset + first, sizeof(float) * (size_t)q->numel) != 0;
            }
            cr_expect_eq(bad, 0, "E=%d rank %d: %d tensors differ from their slice of the whole model", E, r, bad);
            model_free(&part);
            par_group_free(g);
        }
    model_free(&whole);
}

/* A resumed run must be the same run: a changed batch size or learning rate is refused with each key named and both
 * values; a longer train.steps or another log interval is fine. The checkpoint records the data position. */
Test(trainer, resume_refuses_settings_that_change_the_run, .timeout = 300) {
    char d[512], p[700];
    tmpdir(d, sizeof d, "resumecfg");
    run_config c;
    small_run(&c, d);
    c.steps = 2;
    trainer_opts o = {.quiet = true};
    trainer_result r;
    cr_assert(trainer_run(&c, &o, &r).ok);
    run_config c2 = c;
    c2.batch_size = 16;
    c2.lr = 0.5;
    trainer_opts ro = {.quiet = true, .resume = "auto"};
    sx_status s = trainer_run(&c2, &ro, &r);
    cr_expect(!s.ok && strstr(s.msg, "train.batch_size (8 -> 16)") && strstr(s.msg, "optim.lr") && strstr(s.msg, "2 settings"), "got: %s",
              s.ok ? "ok" : s.msg);
    c2 = c;
    c2.steps = 3;
    c2.log_every = 1;
    s = trainer_run(&c2, &ro, &r);
    cr_expect(s.ok, "a longer run with another log interval resumes: %s", s.msg);
    cr_expect_eq(r.steps_done, 3);
    snprintf(p, sizeof p, "%s/ckpt_step00000003.h5", d);
    ckpt_reader *rd;
    cr_assert(ckpt_open(p, &rd).ok);
    int64_t pos[3];
    cr_assert(ckpt_read_i64(rd, "data/position", 1, (int64_t[]){3}, pos).ok);
    ckpt_close(rd);
    cr_expect(pos[0] == 0 && pos[1] == 3 * 8 && pos[2] == -1, "built-in task: epoch 0, example 24, no fixed size; got %lld %lld %lld",
              (long long)pos[0], (long long)pos[1], (long long)pos[2]);
}
