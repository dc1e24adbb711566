/* The switchc command line: one executable, one subcommand per job (DESIGN.md 7). Each subcommand has --help;
 * errors are one clear line on stderr and a non-zero exit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "autograd/ag_cuda.h"
#include "parallel/par.h"
#include "train/cli/cli.h"
#include "train/generate.h"
#include "train/hf_model.h"
#include "train/trainer.h"

static int fail(sx_status s) {
    fprintf(stderr, "switchc: error: %s\n", s.msg);
    return 1;
}

static int usage_error(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "switchc %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see switchc %s --help)\n", cmd);
    return 2;
}

/* ---- train ------------------------------------------------------------------------------------------------------ */

static void train_help(void) {
    printf("usage: switchc train [--config RUN.json] [--set section.key=value ...] [--resume [auto|CKPT]] [--init-from CKPT]\n"
           "\n"
           "Trains a Switch Transformer. With no arguments: the built-in default, a tiny Switch model (2+2 blocks, 4 experts)\n"
           "learning to reverse digit strings on the CPU in a few minutes, then printing the held-out exact match and the\n"
           "use of each expert. The run directory (train.out_dir, default runs/default) gets config.json (the effective\n"
           "config), metrics.jsonl, TensorBoard events and checkpoints ckpt_stepNNNNNNNN.h5.\n"
           "\n"
           "  --config FILE        a run config (JSON sections model, data, optim, schedule, train, eval, parallel)\n"
           "  --set K=V            override one key, e.g. --set train.steps=500 --set optim.lr=1e-3\n"
           "                       --set model.num_experts=8 --set model.switchc.capacity_mode=factor (repeatable)\n"
           "  --resume [auto|CKPT] continue from the newest checkpoint in the run directory (auto) or a given file;\n"
           "                       the continued run is bitwise identical to an uninterrupted one on the CPU\n"
           "  --init-from CKPT|DIR start from a checkpoint's parameters, or a Hugging Face folder's (config.json and\n"
           "                       safetensors or pytorch_model.bin, e.g. google/switch-base-8): fine-tuning, fresh optimizer\n"
           "  --help-config        list every config key with its meaning\n"
           "  --print-config       print the effective config (after --config and --set) and exit\n"
           "\n"
           "Example: switchc train --set data.task=sort --set train.steps=3000 --set train.out_dir=runs/sort\n");
}

static int cmd_train(int argc, char **argv) {
    run_config cfg;
    run_config_defaults(&cfg);
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
            if (++i >= argc) return usage_error("train", "%s needs a file", a);
            sx_status s = run_config_load(&cfg, argv[i]);
            if (!s.ok) return fail(s);
        } else if (!strcmp(a, "--set")) {
            if (++i >= argc) return usage_error("train", "%s needs section.key=value", a);
            sx_status s = run_config_set(&cfg, argv[i]);
            if (!s.ok) return fail(s);
        } else if (!strcmp(a, "--resume")) {
            opts.resume = (i + 1 < argc && argv[i + 1][0] != '-') ? argv[++i] : "auto";
        } else if (!strcmp(a, "--init-from")) {
            if (++i >= argc) return usage_error("train", "%s needs a checkpoint", a);
            opts.init_from = argv[i];
        } else {
            return usage_error("train", "unknown argument '%s'", a);
        }
    }
    /* fine-tuning an HF folder: its config.json is the model unless the run config gave one */
    if (opts.init_from && hf_is_model_dir(opts.init_from) && !strcmp(cfg.model_source, "built-in")) {
        sx_status hs = hf_read_config(opts.init_from, &cfg.model);
        if (!hs.ok) return fail(hs);
        snprintf(cfg.model_source, sizeof cfg.model_source, "%s", opts.init_from);
    }
    if (print_config) { /* the effective config after --config and --set, then exit */
        sx_status v = run_config_validate(&cfg);
        if (!v.ok) return fail(v);
        cJSON *j = run_config_to_json(&cfg);
        char *text = cJSON_Print(j);
        printf("%s\n", text);
        free(text);
        cJSON_Delete(j);
        return 0;
    }
    par_transport_kind kind = PAR_TRANSPORT_AUTO;
    if (!strcmp(cfg.transport, "mpi")) kind = PAR_TRANSPORT_MPI;
    else if (!strcmp(cfg.transport, "nccl")) kind = PAR_TRANSPORT_NCCL;
    else if (!strcmp(cfg.transport, "loopback")) kind = PAR_TRANSPORT_LOOPBACK;
    else if (strcmp(cfg.transport, "auto")) return fail(sx_errorf("parallel.transport: '%s' is not one of auto, mpi, nccl, loopback", cfg.transport));
    par_ctx par;
    sx_status s = par_init(&par, &argc, &argv, cfg.expert_parallel, kind, cfg.collective_timeout_s);
    if (!s.ok) return fail(s);
    opts.par = &par;
    trainer_result res;
    s = trainer_run(&cfg, &opts, &res);
    if (!s.ok) {
        /* one rank's error ends the job: the others may be waiting in a collective */
        if (par.world_size > 1) par_abort(&par, "%s", s.msg);
        return fail(s);
    }
    par_finalize(&par);
    return 0;
}

/* ---- eval ------------------------------------------------------------------------------------------------------- */

static int cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL;
    int examples = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: switchc eval --checkpoint CKPT [--examples N]\n\n"
                   "Evaluates a checkpoint on its run's task (held-out split) with the eval capacity settings: loss, token\n"
                   "accuracy (teacher forced) and exact match (greedy decoding).\n");
            return 0;
        } else if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc) {
            ckpt = argv[++i];
        } else if (!strcmp(argv[i], "--examples") && i + 1 < argc) {
            examples = atoi(argv[++i]);
            if (examples <= 0) return usage_error("eval", "--examples '%s' must be a positive integer", argv[i]);
        } else {
            return usage_error("eval", "unknown argument '%s'", argv[i]);
        }
    }
    if (!ckpt) return usage_error("eval", "%s", "--checkpoint CKPT is required");
    run_config cfg;
    sx_status s = trainer_config_from_checkpoint(ckpt, &cfg);
    if (!s.ok) return fail(s);
    if (examples) cfg.eval_examples = examples;
    model m;
    s = model_init_inference(&m, &cfg.model);
    if (s.ok) s = trainer_load_params(&m, ckpt);
    if (!s.ok) return fail(s);
    eval_result ev;
    s = trainer_evaluate(&m, &cfg, true, &ev);
    if (!s.ok) return fail(s);
    printf("{\"loss\": %.6f, \"token_accuracy\": %.6f, \"exact_match\": %.6f, \"examples\": %lld}\n", ev.loss, ev.token_acc, ev.exact_match,
           (long long)ev.examples);
    model_free(&m);
    return 0;
}

/* ---- generate ----------------------------------------------------------------------------------------------------- */

static int cmd_generate(int argc, char **argv) {
    const char *ckpt = NULL, *ids_arg = NULL;
    gen_config g = {32, 1, 1.0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: switchc generate --checkpoint CKPT --ids \"5 7 3 1\" [--max-len N] [--beams K] [--length-penalty P]\n\n"
                   "Decodes one input with the KV cache (greedy, or beam search with --beams > 1), stopping at EOS or\n"
                   "--max-len. Token ids in and out.\n");
            return 0;
        } else if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc) {
            ckpt = argv[++i];
        } else if (!strcmp(argv[i], "--ids") && i + 1 < argc) {
            ids_arg = argv[++i];
        } else if (!strcmp(argv[i], "--max-len") && i + 1 < argc) {
            g.max_len = atoi(argv[++i]);
            if (g.max_len <= 0) return usage_error("generate", "--max-len '%s' must be a positive integer", argv[i]);
        } else if (!strcmp(argv[i], "--beams") && i + 1 < argc) {
            g.num_beams = atoi(argv[++i]);
            if (g.num_beams <= 0) return usage_error("generate", "--beams '%s' must be a positive integer", argv[i]);
        } else if (!strcmp(argv[i], "--length-penalty") && i + 1 < argc) {
            g.length_penalty = atof(argv[++i]);
        } else {
            return usage_error("generate", "unknown argument '%s'", argv[i]);
        }
    }
    if (!ckpt || !ids_arg) return usage_error("generate", "%s", "--checkpoint and --ids are required");
    run_config cfg;
    sx_status s = trainer_config_from_checkpoint(ckpt, &cfg);
    if (!s.ok) return fail(s);
    model m;
    s = model_init_inference(&m, &cfg.model);
    if (s.ok) s = trainer_load_params(&m, ckpt);
    if (!s.ok) return fail(s);
    int32_t ids[4096];
    int n = 0;
    char *end;
    for (const char *p = ids_arg; *p && n < 4096;) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= m.cfg.vocab_size) {
            fprintf(stderr, "switchc generate: --ids: '%s' is not a token id in [0, %d)\n", p, m.cfg.vocab_size);
            return 2;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    if (n == 0) return usage_error("generate", "%s", "--ids is empty");
    ag_arena act;
    ag_arena_init(&act, "generate", 1 << 20);
    ag_ctx ctx;
    ag_ctx_init(&ctx, &act);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)g.max_len);
    int len;
    generate(&m, &ctx, ids, NULL, 1, n, &g, out, &len);
    for (int i = 0; i < len; i++) printf(i ? " %d" : "%d", out[i]);
    printf("\n");
    free(out);
    ag_ctx_free(&ctx);
    ag_arena_free(&act);
    model_free(&m);
    return 0;
}

/* ---- dispatch ----------------------------------------------------------------------------------------------------- */

static const cli_command COMMANDS[] = {
    {"train", "train or fine-tune (no arguments: the built-in demo run)", cmd_train},
    {"eval", "evaluate a checkpoint: loss, token accuracy, exact match", cmd_eval},
    {"generate", "decode with the KV cache (greedy or beam search)", cmd_generate},
};

static void main_help(void) {
    printf("switchc: train and fine-tune Switch Transformers (sparse T5 mixture-of-experts) in C.\n\n"
           "usage: switchc <command> [options]   (switchc <command> --help for each)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) printf("  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].help);
    for (int i = 0; i < cli_extra_count(); i++) printf("  %-10s %s\n", cli_extra(i)->name, cli_extra(i)->help);
    printf("\nbuild: %s\n", ag_cuda_describe());
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress on stderr and results on stdout interleave in order */
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        main_help();
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    for (int i = 0; i < cli_extra_count(); i++)
        if (!strcmp(argv[1], cli_extra(i)->name)) return cli_extra(i)->run(argc - 1, argv + 1);
    fprintf(stderr, "switchc: unknown command '%s' (switchc --help lists them)\n", argv[1]);
    return 2;
}
