/* The switchc command line: one executable, one subcommand per job (DESIGN.md 7). Each subcommand has --help;
 * errors are one clear line on stderr and a non-zero exit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <hdf5.h>

#include "autograd/ag_cuda.h"
#include "autograd/sx_file.h"
#include "data/batches.h"
#include "data/dataset.h"
#include "data/prepare.h"
#include "data/spm.h"
#include "parallel/par.h"
#include "train/cli/cli.h"
#include "train/model/generate.h"
#include "train/hf/hf_model.h"
#include "train/lora.h"
#include "train/run_checks.h"
#include "train/trainer.h"

/* ---- train ------------------------------------------------------------------------------------------------------ */

static void train_help(void) {
    printf("usage: switchc train [--config RUN.json] [--set section.key=value ...] [--resume [auto|CKPT]] [--init-from CKPT]\n"
           "                     [--init-adapter PEFT_DIR]\n"
           "\n"
           "Trains a Switch Transformer. With neither --config nor --init-from: the built-in demo, a tiny Switch model (2+2\n"
           "blocks, 4 experts) learning to reverse digit strings on the CPU in under a minute, then printing the held-out\n"
           "exact match and the use of each expert (its tuned values: lr 3e-3, beta2 0.98, cosine, 100 warmup steps).\n"
           "A --config file or --init-from starts from Hugging Face Trainer's defaults instead (AdamW lr 5e-5, betas\n"
           "0.9/0.999, eps 1e-8, weight decay 0, linear decay without warmup, gradient clipping 1.0). The run directory\n"
           "(train.out_dir, default runs/default) gets config.json (the effective config), metrics.jsonl, TensorBoard\n"
           "events, checkpoints ckpt_stepNNNNNNNN.h5 and summary.json.\n"
           "\n"
           "  --config FILE        a run config (JSON sections model, data, optim, schedule, train, eval, parallel)\n"
           "  --set K=V            override one key, e.g. --set train.steps=500 --set optim.lr=1e-3\n"
           "                       --set model.num_experts=8 --set model.switchc.capacity_mode=factor (repeatable)\n"
           "  --resume [auto|CKPT] continue from the newest checkpoint in the run directory (auto) or a given file;\n"
           "                       the continued run is bitwise identical to an uninterrupted one on the CPU\n"
           "  --overwrite          replace an earlier run in train.out_dir (its checkpoints, metrics, events, summary);\n"
           "                       without it a fresh run into a directory holding one is an error\n"
           "  --init-from CKPT|DIR start from a checkpoint's parameters, or a Hugging Face folder's (config.json and\n"
           "                       safetensors or pytorch_model.bin, e.g. google/switch-base-8): fine-tuning, fresh optimizer\n"
           "  --init-adapter DIR   start the LoRA adapters from a peft folder (adapter_config.json, adapter_model.safetensors);\n"
           "                       without a lora section in the run config, the adapter's r, alpha, dropout and modules\n"
           "                       are the run's (README: parameter-efficient fine-tuning)\n"
           "  --help-config        list every config key with its meaning\n"
           "  --print-config       print the effective config (after --config and --set) and exit\n"
           "\n"
           "Example: switchc train --set data.task=sort --set train.steps=3000 --set train.out_dir=runs/sort\n");
}

static int cmd_train(int argc, char **argv) {
    run_config cfg;
    /* the demo's tuned values only for the demo: a run config or a checkpoint to fine-tune starts from the library
     * defaults (Hugging Face Trainer's) */
    bool demo = true;
    for (int i = 1; i < argc; i++) demo &= strcmp(argv[i], "--config") && strcmp(argv[i], "--init-from");
    if (demo) run_config_demo(&cfg);
    else run_config_defaults(&cfg);
    trainer_opts opts = {0};
    bool print_config = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            train_help();
            return 0;
        } else if (!strcmp(a, "--help-config")) {
            run_config_print_help(stdout);
            return 0;
        } else if (!strcmp(a, "--print-config")) {
            print_config = true;
        } else if (!strcmp(a, "--config")) {
            if (++i >= argc) return cli_usage("train", "%s needs a file", a);
            sx_status s = run_config_load(&cfg, argv[i]);
            if (!s.ok) return cli_fail(s);
        } else if (!strcmp(a, "--set")) { /* applied below, after every --config */
            if (++i >= argc) return cli_usage("train", "%s needs section.key=value", a);
        } else if (!strcmp(a, "--overwrite")) {
            opts.overwrite = true;
        } else if (!strcmp(a, "--resume")) {
            opts.resume = (i + 1 < argc && argv[i + 1][0] != '-') ? argv[++i] : "auto";
        } else if (!strcmp(a, "--init-from")) {
            if (++i >= argc) return cli_usage("train", "%s needs a checkpoint", a);
            opts.init_from = argv[i];
        } else if (!strcmp(a, "--init-adapter")) {
            if (++i >= argc) return cli_usage("train", "%s needs a peft adapter folder", a);
            opts.init_adapter = argv[i];
        } else {
            return cli_bad_arg("train", a, NULL);
        }
    }
    /* the files the run starts from, before anything is built */
    if (opts.init_from && !hf_is_model_dir(opts.init_from)) {
        sx_status is =
            sx_file_check_regular(opts.init_from, "--init-from checkpoint (or a Hugging Face folder with config.json)");
        if (!is.ok) return cli_fail(is);
    }
    if (opts.resume && strcmp(opts.resume, "auto")) {
        sx_status rs = sx_file_check_regular(opts.resume, "--resume checkpoint");
        if (!rs.ok) return cli_fail(rs);
    }
    /* --set overrides the run config wherever it stands: `--set K=V --config F` keeps V (scripts/launch_mpirun.sh
     * puts its --set parallel.expert_parallel before the caller's --config) */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--set")) {
            sx_status s = run_config_set(&cfg, argv[++i]);
            if (!s.ok) return cli_fail(s);
        } else if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "--init-from") || !strcmp(argv[i], "--init-adapter")) {
            i++; /* a value, never a flag */
        }
    /* fine-tuning an HF folder: its config.json is the model unless the run config gave one */
    if (opts.init_from && hf_is_model_dir(opts.init_from) && !strcmp(cfg.model_source, "built-in")) {
        lora_spec keep = cfg.model.lora; /* the run's lora section, not the folder's */
        sx_status hs = hf_read_config(opts.init_from, &cfg.model);
        cfg.model.lora = keep;
        if (!hs.ok) return cli_fail(hs);
        snprintf(cfg.model_source, sizeof cfg.model_source, "%s", opts.init_from);
        /* --set model.* overrides apply over the folder's config.json, as from_pretrained(dir, key=value) */
        for (int i = 1; i + 1 < argc; i++)
            if (!strcmp(argv[i], "--set") && !strncmp(argv[i + 1], "model.", 6)) {
                hs = run_config_set(&cfg, argv[++i]);
                if (!hs.ok) return cli_fail(hs);
            }
    }
    if (opts.init_adapter) { /* the adapter's r, alpha, dropout and modules, or a check against the run's */
        sx_status as = lora_peft_spec(opts.init_adapter, &cfg.model.lora);
        if (!as.ok) return cli_fail(as);
    }
    if (print_config) { /* the effective config after --config and --set, then exit */
        sx_status v = run_config_validate(&cfg);
        if (!v.ok) return cli_fail(v);
        cJSON *j = run_config_to_json(&cfg);
        char *text = cJSON_Print(j);
        printf("%s\n", text);
        free(text);
        cJSON_Delete(j);
        return 0;
    }
    sx_status os = sx_file_check_output(cfg.out_dir, "train.out_dir", true);
    if (!os.ok) return cli_fail(os);
    par_transport_kind kind = PAR_TRANSPORT_AUTO;
    if (!strcmp(cfg.transport, "mpi")) kind = PAR_TRANSPORT_MPI;
    else if (!strcmp(cfg.transport, "nccl")) kind = PAR_TRANSPORT_NCCL;
    else if (!strcmp(cfg.transport, "loopback")) kind = PAR_TRANSPORT_LOOPBACK;
    else if (strcmp(cfg.transport, "auto")) return cli_fail(sx_errorf("parallel.transport: '%s' is not one of auto, mpi, nccl, loopback", cfg.transport));
    par_ctx par;
    sx_status s = par_init(&par, &argc, &argv, cfg.expert_parallel, kind, cfg.collective_timeout_s);
    if (!s.ok) return cli_fail(s);
    opts.par = &par;
    trainer_result res;
    s = trainer_run(&cfg, &opts, &res);
    if (!s.ok) {
        /* one rank's error ends the job: the others may be waiting in a collective */
        if (par.world_size > 1) par_abort(&par, "%s", s.msg);
        return cli_fail(s);
    }
    par_finalize(&par);
    return 0;
}

/* ---- eval ------------------------------------------------------------------------------------------------------- */

static void eval_help(void) {
    printf("usage: switchc eval --checkpoint CKPT [--data EVAL.h5] [--examples N] [--spm PATH.model]\n"
           "\n"
           "Evaluates a checkpoint (or an HF model folder) with the eval capacity settings: loss, token accuracy (teacher\n"
           "forced) and exact match (greedy decoding), printed as one JSON line. The data is the run's held-out split:\n"
           "the built-in task's, or the run config's data.eval dataset.\n"
           "\n"
           "  --checkpoint CKPT    a switchc checkpoint, or an HF model folder (--model is the same flag)\n"
           "  --data EVAL.h5       evaluate on this token dataset (from switchc prepare) instead of data.eval\n"
           "  --examples N         evaluate the first N examples (default: the run config's data.eval_examples)\n"
           "  --spm PATH.model     print the first examples as text (input, target, generated) with this tokenizer;\n"
           "                       without it the run config's data.tokenizer (or the folder's spiece.model) is used\n"
           "                       when there is one\n"
           "  --extra-ids N        T5 sentinels after the pieces (default: what the dataset was prepared with, else 100)\n"
           CLI_INT8_HELP);
}

/* The first few held-out examples decoded: what the model makes of text, beside the numbers. */
static sx_status print_text_examples(model *m, const run_config *cfg0, const data_spm *t, int count) {
    run_config bounded = *cfg0; /* generation bounded by the data (run_checks_eval_gen_len) */
    bounded.gen_max_len = run_checks_eval_gen_len(cfg0);
    const run_config *cfg = &bounded;
    batch_source *src;
    SX_TRY(run_config_batches_open(cfg, true, &src));
    int B = (int)(batch_source_count(src) < count ? batch_source_count(src) : count);
    int64_t L = batch_source_max_len(src), S, T;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * L)), *mask = malloc(sizeof(int32_t) * (size_t)(B * L));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)(B * L)), *gen = malloc(sizeof(int32_t) * (size_t)(B * cfg->gen_max_len));
    int *lens = malloc(sizeof(int) * (size_t)(B > 0 ? B : 1));
    sx_status s = batch_source_get(src, 0, B, ids, mask, labels, &S, &T);
    if (s.ok && B > 0) {
        ag_arena act;
        ag_ctx ctx;
        ag_ctx_init_eval(&ctx, &act, "eval-text", 1 << 20);
        gen_config g = {cfg->gen_max_len, 1, 1.0};
        generate(m, &ctx, ids, mask, B, S, &g, gen, lens);
        int32_t eos = m->cfg.eos_token_id, pad = m->cfg.pad_token_id;
        for (int b = 0; b < B; b++) {
            int64_t ns = 0, nt = 0;
            while (ns < S && mask[b * S + ns]) ns++;
            while (nt < T && labels[b * T + nt] >= 0) nt++;
            char *in = cli_decode_text(t, ids + b * S, ns, eos, pad), *want = cli_decode_text(t, labels + b * T, nt, eos, pad),
                 *got = cli_decode_text(t, gen + b * cfg->gen_max_len, lens[b], eos, pad);
            printf("  example %d: %s\n    target:    %s\n    generated: %s%s\n", b, in, want, got, strcmp(want, got) ? "" : "   (exact)");
            free(in);
            free(want);
            free(got);
        }
        ag_ctx_free_eval(&ctx);
    }
    batch_source_close(src);
    free(ids);
    free(mask);
    free(labels);
    free(gen);
    free(lens);
    return s;
}

static int cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *spm_path = NULL;
    int examples = 0, extra_ids = -1;
    cli_int8_opts q8 = CLI_INT8_DEFAULT;
    const cli_flag FLAGS[] = {
        {"--checkpoint", "--model", CLI_STR, &ckpt, 0, 0, NULL},
        {"--data", NULL, CLI_STR, &data, 0, 0, NULL},
        {"--spm", NULL, CLI_STR, &spm_path, 0, 0, NULL},
        {"--extra-ids", NULL, CLI_INT, &extra_ids, 0, 100000, NULL},
        {"--examples", NULL, CLI_INT, &examples, 1, 10000000, NULL}, /* data.eval_examples' bound; a dataset bounds it further by its size */
        {NULL, NULL, CLI_SET, NULL, 0, 0, NULL},
    };
    int rc = cli_parse_args("eval", argc, argv, eval_help, cli_int8_arg, &q8, FLAGS);
    if (rc >= 0) return rc;
    if (!ckpt) return cli_usage("eval", "%s", "--checkpoint CKPT is required");
    if (!ckpt[0]) return cli_usage("eval", "%s", "--checkpoint: the path is empty");
    run_config cfg;
    sx_status s = trainer_config_from_checkpoint(ckpt, &cfg);
    if (!s.ok) return cli_fail(s);
    if (data) {
        snprintf(cfg.task, sizeof cfg.task, "dataset");
        snprintf(cfg.eval_data, sizeof cfg.eval_data, "%s", data);
    }
    if (examples) cfg.eval_examples = examples;
    s = run_checks_validate(&cfg);
    if (s.ok && !strcmp(cfg.task, "dataset") && !cfg.eval_data[0])
        s = sx_errorf("%s: its run config has no data.eval: give the evaluation dataset with --data EVAL.h5", ckpt);
    if (!s.ok) return cli_fail(s);
    data_spm *tok = NULL; /* text examples: datasets only (the built-in tasks print their own) */
    if (!strcmp(cfg.task, "dataset")) {
        s = cli_open_tokenizer(spm_path, ckpt, &cfg, extra_ids, spm_path != NULL, &tok);
        if (!s.ok && spm_path) return cli_fail(s);
        if (!s.ok) fprintf(stderr, "switchc eval: warning: no text examples: %s\n", s.msg);
    }
    model m;
    s = cli_load_model(ckpt, &cfg, &q8, &m);
    if (!s.ok) {
        data_spm_free(tok);
        return cli_fail(s);
    }
    if (tok) s = print_text_examples(&m, &cfg, tok, 3);
    eval_result ev;
    if (s.ok) s = trainer_evaluate(&m, &cfg, true, &ev);
    data_spm_free(tok);
    if (!s.ok) {
        model_free(&m);
        return cli_fail(s);
    }
    printf("{\"loss\": %.6f, \"token_accuracy\": %.6f, \"exact_match\": %.6f, \"examples\": %lld}\n", ev.loss, ev.token_acc, ev.exact_match,
           (long long)ev.examples);
    model_free(&m);
    return 0;
}

/* ---- dispatch ----------------------------------------------------------------------------------------------------- */

static const cli_command COMMANDS[] = {
    {"train", "train or fine-tune (no arguments: the built-in demo run)", cmd_train},
    {"eval", "evaluate a checkpoint: loss, token accuracy, exact match (text examples with a tokenizer)", cmd_eval},
    {"generate", "text (or ids) in, text (or ids) out: greedy, beam search or sampling, one input or a file",
     cmd_generate},
    {"embed", "the encoder alone over a file of inputs: hidden states (or their mean) to HDF5 or .npy", cmd_embed},
};

static void main_help(void) {
    printf("switchc: train and fine-tune Switch Transformers (sparse T5 mixture-of-experts) in C.\n\n"
           "usage: switchc <command> [options]   (switchc <command> --help for each)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) printf("  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].help);
    for (int i = 0; i < cli_extra_count(); i++) printf("  %-10s %s\n", cli_extra(i)->name, cli_extra(i)->help);
    printf("\n  --version  the version and its git commit\n");
    printf("\nbuild: %s\n", ag_cuda_describe());
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress on stderr and results on stdout interleave in order */
    /* A write past ulimit -f fails with EFBIG and is reported with its file, instead of SIGXFSZ killing silently. */
    sx_file_ignore_sigxfsz();
    /* HDF5 must not close files again at exit: after a failed H5Fclose (a full disk, a file-size limit) its own atexit
     * cleanup dereferences the half-closed file and crashes, after the error was already reported. */
    H5dont_atexit();
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        main_help();
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("switchc %s (%s)\n", SWITCHC_VERSION, SWITCHC_GIT);
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    for (int i = 0; i < cli_extra_count(); i++)
        if (!strcmp(argv[1], cli_extra(i)->name)) return cli_extra(i)->run(argc - 1, argv + 1);
    fprintf(stderr, "switchc: unknown command '%s' (switchc --help lists them)\n", argv[1]);
    return 2;
}
