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
#include "data/dataset.h"
#include "data/prepare.h"
#include "data/spm.h"
#include "parallel/par.h"
#include "train/batches.h"
#include "train/cli/cli.h"
#include "train/generate.h"
#include "train/hf_model.h"
#include "train/run_checks.h"
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
           "Trains a Switch Transformer. With neither --config nor --init-from: the built-in demo, a tiny Switch model (2+2\n"
           "blocks, 4 experts) learning to reverse digit strings on the CPU in under a minute, then printing the held-out\n"
           "exact match and the use of each expert (its tuned values: lr 3e-3, beta2 0.98, cosine, 100 warmup steps).\n"
           "A --config file or --init-from starts from Hugging Face Trainer's defaults instead (AdamW lr 5e-5, betas\n"
           "0.9/0.999, eps 1e-8, weight decay 0, linear decay without warmup, gradient clipping 1.0). The run directory (train.out_dir, default runs/default) gets config.json (the effective\n"
           "config), metrics.jsonl, TensorBoard events and checkpoints ckpt_stepNNNNNNNN.h5.\n"
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
            if (++i >= argc) return usage_error("train", "%s needs a file", a);
            sx_status s = run_config_load(&cfg, argv[i]);
            if (!s.ok) return fail(s);
        } else if (!strcmp(a, "--set")) { /* applied below, after every --config */
            if (++i >= argc) return usage_error("train", "%s needs section.key=value", a);
        } else if (!strcmp(a, "--overwrite")) {
            opts.overwrite = true;
        } else if (!strcmp(a, "--resume")) {
            opts.resume = (i + 1 < argc && argv[i + 1][0] != '-') ? argv[++i] : "auto";
        } else if (!strcmp(a, "--init-from")) {
            if (++i >= argc) return usage_error("train", "%s needs a checkpoint", a);
            opts.init_from = argv[i];
        } else {
            return cli_bad_arg("train", a, NULL);
        }
    }
    /* the files the run starts from, before anything is built */
    if (opts.init_from && !hf_is_model_dir(opts.init_from)) {
        sx_status is =
            sx_file_check_regular(opts.init_from, "--init-from checkpoint (or a Hugging Face folder with config.json)");
        if (!is.ok) return fail(is);
    }
    if (opts.resume && strcmp(opts.resume, "auto")) {
        sx_status rs = sx_file_check_regular(opts.resume, "--resume checkpoint");
        if (!rs.ok) return fail(rs);
    }
    /* --set overrides the run config wherever it stands: `--set K=V --config F` keeps V (scripts/launch_mpirun.sh
     * puts its --set parallel.expert_parallel before the caller's --config) */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--set")) {
            sx_status s = run_config_set(&cfg, argv[++i]);
            if (!s.ok) return fail(s);
        } else if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "--init-from")) {
            i++; /* a value, never a flag */
        }
    /* fine-tuning an HF folder: its config.json is the model unless the run config gave one */
    if (opts.init_from && hf_is_model_dir(opts.init_from) && !strcmp(cfg.model_source, "built-in")) {
        sx_status hs = hf_read_config(opts.init_from, &cfg.model);
        if (!hs.ok) return fail(hs);
        snprintf(cfg.model_source, sizeof cfg.model_source, "%s", opts.init_from);
        /* --set model.* overrides apply over the folder's config.json, as from_pretrained(dir, key=value) */
        for (int i = 1; i + 1 < argc; i++)
            if (!strcmp(argv[i], "--set") && !strncmp(argv[i + 1], "model.", 6)) {
                hs = run_config_set(&cfg, argv[++i]);
                if (!hs.ok) return fail(hs);
            }
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
    sx_status os = sx_file_check_output(cfg.out_dir, "train.out_dir", true);
    if (!os.ok) return fail(os);
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

/* ---- text: the tokenizer of a model ------------------------------------------------------------------------------- */

/* The tokenizer for text in and out of a model: --spm, else a Hugging Face folder's spiece.model, else the run
 * config's data.tokenizer (recorded in every checkpoint). extra_ids < 0: the sentinel count the training data was
 * prepared with (its vocabulary minus the pieces, when the dataset is reachable and has this tokenizer's checksum),
 * else T5's 100. *out stays NULL when none is known and none is required. */
static sx_status open_tokenizer(const char *spm_flag, const char *model_path, const run_config *cfg, int extra_ids, bool required, data_spm **out) {
    *out = NULL;
    const char *path = spm_flag ? spm_flag : hf_is_model_dir(model_path) ? model_path : cfg->tokenizer[0] ? cfg->tokenizer : NULL;
    if (!path) {
        if (!required) return sx_ok();
        return sx_errorf("%s: no tokenizer known for this model (its run config has no data.tokenizer): give --spm PATH.model", model_path);
    }
    data_spm *t;
    SX_TRY(data_tokenizer_open(path, 0, &t));
    uint32_t crc = data_spm_checksum(t);
    for (int k = 0; k < 2 && !strcmp(cfg->task, "dataset"); k++) {
        const char *ds_path = k ? cfg->eval_data : cfg->train_data;
        data_dataset *d;
        if (!ds_path[0] || !data_dataset_open(ds_path, &d).ok) continue; /* the data may live elsewhere by now */
        uint32_t dcrc = data_dataset_tokenizer_crc(d);
        int32_t dv = data_dataset_vocab_size(d);
        data_dataset_close(d);
        if (dcrc == crc) {
            if (extra_ids < 0 && dv >= data_spm_piece_count(t)) extra_ids = dv - data_spm_piece_count(t);
            break;
        }
        if (dcrc) {
            fprintf(stderr, "switchc: warning: %s (checksum %08x) is not the tokenizer %s was prepared with (checksum %08x): text may come out wrong\n", path,
                    crc, ds_path, dcrc);
            break;
        }
    }
    data_spm_set_extra_ids(t, extra_ids < 0 ? 100 : extra_ids);
    if (data_spm_vocab_size(t) > cfg->model.vocab_size) {
        sx_status s = sx_errorf("%s: %d ids (%d pieces + %d extra ids) but the model's vocab_size is %d (fewer --extra-ids, or another tokenizer)", path,
                                data_spm_vocab_size(t), data_spm_piece_count(t), data_spm_vocab_size(t) - data_spm_piece_count(t), cfg->model.vocab_size);
        data_spm_free(t);
        return s;
    }
    *out = t;
    return sx_ok();
}

/* Ids -> text: stops at EOS, drops padding and ids past the tokenizer's vocabulary (a model's vocab_size may be padded,
 * 32128 against T5's 32100). Returns a malloc'd string. */
static char *decode_text(const data_spm *t, const int32_t *ids, int64_t n, int32_t eos, int32_t pad) {
    int32_t *keep = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    int64_t k = 0;
    for (int64_t i = 0; i < n && ids[i] != eos; i++)
        if (ids[i] >= 0 && ids[i] != pad && ids[i] < data_spm_vocab_size(t)) keep[k++] = ids[i];
    char small[2];
    size_t need = data_spm_decode(t, keep, k, small, sizeof small);
    char *out = malloc(need + 1);
    data_spm_decode(t, keep, k, out, need + 1);
    free(keep);
    return out;
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
           "  --extra-ids N        T5 sentinels after the pieces (default: what the dataset was prepared with, else 100)\n");
}

/* The first few held-out examples decoded: what the model makes of text, beside the numbers. */
static sx_status print_text_examples(model *m, const run_config *cfg0, const data_spm *t, int count) {
    run_config bounded = *cfg0; /* generation bounded by the data (run_checks_eval_gen_len) */
    bounded.gen_max_len = run_checks_eval_gen_len(cfg0);
    const run_config *cfg = &bounded;
    batch_source *src;
    SX_TRY(batch_source_open(cfg, true, &src));
    int B = (int)(batch_source_count(src) < count ? batch_source_count(src) : count);
    int64_t L = batch_source_max_len(src), S, T;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * L)), *mask = malloc(sizeof(int32_t) * (size_t)(B * L));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)(B * L)), *gen = malloc(sizeof(int32_t) * (size_t)(B * cfg->gen_max_len));
    int *lens = malloc(sizeof(int) * (size_t)(B > 0 ? B : 1));
    sx_status s = batch_source_get(src, 0, B, ids, mask, labels, &S, &T);
    if (s.ok && B > 0) {
        ag_arena act;
        ag_arena_init(&act, "eval-text", 1 << 20);
        ag_ctx ctx;
        ag_ctx_init(&ctx, &act);
        ctx.grad_enabled = false;
        ctx.training = false;
        gen_config g = {cfg->gen_max_len, 1, 1.0};
        generate(m, &ctx, ids, mask, B, S, &g, gen, lens);
        int32_t eos = m->cfg.eos_token_id, pad = m->cfg.pad_token_id;
        for (int b = 0; b < B; b++) {
            int64_t ns = 0, nt = 0;
            while (ns < S && mask[b * S + ns]) ns++;
            while (nt < T && labels[b * T + nt] >= 0) nt++;
            char *in = decode_text(t, ids + b * S, ns, eos, pad), *want = decode_text(t, labels + b * T, nt, eos, pad),
                 *got = decode_text(t, gen + b * cfg->gen_max_len, lens[b], eos, pad);
            printf("  example %d: %s\n    target:    %s\n    generated: %s%s\n", b, in, want, got, strcmp(want, got) ? "" : "   (exact)");
            free(in);
            free(want);
            free(got);
        }
        ag_ctx_free(&ctx);
        ag_arena_free(&act);
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
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            eval_help();
            return 0;
        } else if ((!strcmp(argv[i], "--checkpoint") || !strcmp(argv[i], "--model")) && i + 1 < argc) {
            ckpt = argv[++i];
        } else if (!strcmp(argv[i], "--data") && i + 1 < argc) {
            data = argv[++i];
        } else if (!strcmp(argv[i], "--spm") && i + 1 < argc) {
            spm_path = argv[++i];
        } else if (!strcmp(argv[i], "--extra-ids") && i + 1 < argc) {
            long long v;
            if (!cli_parse_int("eval", "--extra-ids", argv[++i], 0, 100000, &v)) return 2;
            extra_ids = (int)v;
        } else if (!strcmp(argv[i], "--examples") && i + 1 < argc) {
            /* data.eval_examples' bound; a dataset bounds it further by its size */
            long long v;
            if (!cli_parse_int("eval", "--examples", argv[++i], 1, 10000000, &v)) return 2;
            examples = (int)v;
        } else {
            static const char *const VALUE_FLAGS[] = {"--checkpoint", "--model", "--data", "--spm",
                                                      "--extra-ids", "--examples", NULL};
            return cli_bad_arg("eval", argv[i], VALUE_FLAGS);
        }
    }
    if (!ckpt) return usage_error("eval", "%s", "--checkpoint CKPT is required");
    if (!ckpt[0]) return usage_error("eval", "%s", "--checkpoint: the path is empty");
    run_config cfg;
    sx_status s = trainer_config_from_checkpoint(ckpt, &cfg);
    if (!s.ok) return fail(s);
    if (data) {
        snprintf(cfg.task, sizeof cfg.task, "dataset");
        snprintf(cfg.eval_data, sizeof cfg.eval_data, "%s", data);
    }
    if (examples) cfg.eval_examples = examples;
    s = run_checks_validate(&cfg);
    if (s.ok && !strcmp(cfg.task, "dataset") && !cfg.eval_data[0])
        s = sx_errorf("%s: its run config has no data.eval: give the evaluation dataset with --data EVAL.h5", ckpt);
    if (!s.ok) return fail(s);
    data_spm *tok = NULL; /* text examples: datasets only (the built-in tasks print their own) */
    if (!strcmp(cfg.task, "dataset")) {
        s = open_tokenizer(spm_path, ckpt, &cfg, extra_ids, spm_path != NULL, &tok);
        if (!s.ok && spm_path) return fail(s);
        if (!s.ok) fprintf(stderr, "switchc eval: warning: no text examples: %s\n", s.msg);
    }
    model m;
    s = model_init_inference(&m, &cfg.model);
    if (s.ok) s = trainer_load_params(&m, ckpt);
    if (!s.ok) {
        data_spm_free(tok);
        return fail(s);
    }
    if (tok) s = print_text_examples(&m, &cfg, tok, 3);
    eval_result ev;
    if (s.ok) s = trainer_evaluate(&m, &cfg, true, &ev);
    data_spm_free(tok);
    if (!s.ok) {
        model_free(&m);
        return fail(s);
    }
    printf("{\"loss\": %.6f, \"token_accuracy\": %.6f, \"exact_match\": %.6f, \"examples\": %lld}\n", ev.loss, ev.token_acc, ev.exact_match,
           (long long)ev.examples);
    model_free(&m);
    return 0;
}

/* ---- generate ----------------------------------------------------------------------------------------------------- */

static void generate_help(void) {
    printf("usage: switchc generate --model DIR|CKPT (--input TEXT | --ids \"5 7 3 1\") [options]\n"
           "\n"
           "Decodes one input with the KV cache (greedy, or beam search with --beams > 1), stopping at EOS or --max-len.\n"
           "Text in, text out with --input; token ids in and out with --ids.\n"
           "\n"
           "  --model DIR|CKPT     a Hugging Face folder (config.json + model.safetensors or pytorch_model.bin, and\n"
           "                       spiece.model for text), e.g. google/switch-base-8 as downloaded, or a switchc\n"
           "                       checkpoint (.h5); --checkpoint is the same flag\n"
           "  --input TEXT         text, tokenized like HF's T5Tokenizer (EOS appended; <extra_id_N> sentinels are single\n"
           "                       tokens); prints the generated text (sentinels kept, EOS and padding dropped)\n"
           "  --ids \"ID ...\"       token ids (space or comma separated), EOS included if wanted; prints ids\n"
           "  --spm PATH.model     the SentencePiece tokenizer for --input. Without it: DIR/spiece.model for a folder;\n"
           "                       for a checkpoint, the run config's data.tokenizer (set it when training on text,\n"
           "                       e.g. --set data.tokenizer=spiece.model: checkpoints record it)\n"
           "  --extra-ids N        T5 sentinels after the pieces (default: what the training data was prepared with when\n"
           "                       it is reachable, else 100)\n"
           "  --max-len N          generated tokens at most, EOS included (default 32): HF's max_new_tokens, or its\n"
           "                       max_length - 1 (which counts the decoder start token)\n"
           "  --beams K            beam search with K beams (default 1: greedy)\n"
           "  --length-penalty P   beam score = log p / length^P, length = generated tokens (default 1.0, HF's);\n"
           "                       P > 0 favours longer hypotheses, P < 0 shorter ones\n"
           "  --early-stopping E   when beam search stops, as HF's early_stopping (default false):\n"
           "                         false  once K hypotheses are finished and the best running beam, scored at its\n"
           "                                current length, cannot beat the worst of them\n"
           "                         true   as soon as K hypotheses are finished\n"
           "                         never  as false, but with P > 0 a running beam is scored at --max-len\n"
           "                       beams still running at --max-len compete with the finished ones\n"
           "\n"
           "Examples:\n"
           "  switchc generate --model switch-base-8/ --input \"The capital of France is <extra_id_0>.\"\n"
           "  switchc generate --model runs/text/ckpt_step00000300.h5 --spm spiece.model --input \"sum: two plus three\"\n"
           "  switchc generate --checkpoint runs/default/ckpt_step00003000.h5 --ids \"5 7 3 1\" --beams 4\n"
           "  switchc generate --model switch-base-8/ --input \"...\" --beams 4 --early-stopping true\n");
}

static int cmd_generate(int argc, char **argv) {
    const char *ckpt = NULL, *ids_arg = NULL, *text = NULL, *spm_path = NULL;
    int extra_ids = -1;
    gen_config g = {32, 1, 1.0, GEN_EARLY_STOP_FALSE};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            generate_help();
            return 0;
        } else if ((!strcmp(argv[i], "--checkpoint") || !strcmp(argv[i], "--model")) && i + 1 < argc) {
            ckpt = argv[++i];
        } else if (!strcmp(argv[i], "--ids") && i + 1 < argc) {
            ids_arg = argv[++i];
        } else if (!strcmp(argv[i], "--input") && i + 1 < argc) {
            text = argv[++i];
        } else if (!strcmp(argv[i], "--spm") && i + 1 < argc) {
            spm_path = argv[++i];
        } else if (!strcmp(argv[i], "--extra-ids") && i + 1 < argc) {
            long long v;
            if (!cli_parse_int("generate", "--extra-ids", argv[++i], 0, 100000, &v)) return 2;
            extra_ids = (int)v;
        } else if (!strcmp(argv[i], "--max-len") && i + 1 < argc) {
            long long v;
            if (!cli_parse_int("generate", "--max-len", argv[++i], 1, RUN_CHECKS_MAX_GEN_LEN, &v)) return 2;
            g.max_len = (int)v;
        } else if (!strcmp(argv[i], "--beams") && i + 1 < argc) {
            long long v;
            if (!cli_parse_int("generate", "--beams", argv[++i], 1, RUN_CHECKS_MAX_BEAMS, &v)) return 2;
            g.num_beams = (int)v;
        } else if (!strcmp(argv[i], "--length-penalty") && i + 1 < argc) {
            char *end;
            g.length_penalty = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !isfinite(g.length_penalty))
                return usage_error("generate", "--length-penalty '%s' must be a finite number", argv[i]);
        } else if (!strcmp(argv[i], "--early-stopping") && i + 1 < argc) {
            const char *e = argv[++i];
            if (!strcmp(e, "false")) g.early_stopping = GEN_EARLY_STOP_FALSE;
            else if (!strcmp(e, "true")) g.early_stopping = GEN_EARLY_STOP_TRUE;
            else if (!strcmp(e, "never")) g.early_stopping = GEN_EARLY_STOP_NEVER;
            else return usage_error("generate", "--early-stopping '%s' must be true, false or never", e);
        } else {
            static const char *const VALUE_FLAGS[] = {"--checkpoint", "--model", "--ids", "--input", "--spm", "--extra-ids",
                                                      "--max-len", "--beams", "--length-penalty", "--early-stopping", NULL};
            return cli_bad_arg("generate", argv[i], VALUE_FLAGS);
        }
    }
    if (!ckpt) return usage_error("generate", "%s", "--model DIR|CKPT is required");
    if (!ckpt[0]) return usage_error("generate", "%s", "--model: the path is empty");
    if (!ids_arg == !text) return usage_error("generate", "%s", "give the input as --input TEXT or as --ids \"ID ...\" (one of them)");
    run_config cfg;
    sx_status s = trainer_config_from_checkpoint(ckpt, &cfg);
    if (!s.ok) return fail(s);
    /* the tokenizer first: a missing or bad one fails before a large model is read */
    data_spm *tok = NULL;
    int32_t *ids = NULL;
    int64_t n = 0;
    if (text) {
        s = open_tokenizer(spm_path, ckpt, &cfg, extra_ids, true, &tok);
        if (!s.ok) return fail(s);
        int64_t cap = 256;
        ids = malloc(sizeof(int32_t) * (size_t)(cap + 1));
        n = data_spm_encode(tok, text, strlen(text), ids, cap);
        if (n > cap) {
            cap = n;
            ids = realloc(ids, sizeof(int32_t) * (size_t)(cap + 1));
            n = data_spm_encode(tok, text, strlen(text), ids, cap);
        }
        ids[n++] = cfg.model.eos_token_id; /* as HF's T5Tokenizer: every sequence ends with </s> */
    } else {
        ids = malloc(sizeof(int32_t) * (strlen(ids_arg) / 2 + 1));
        char *end;
        for (const char *p = ids_arg; *p;) {
            while (*p == ' ' || *p == ',') p++;
            if (!*p) break;
            long v = strtol(p, &end, 10);
            if (end == p || v < 0 || v >= cfg.model.vocab_size) {
                fprintf(stderr, "switchc generate: --ids: '%s' is not a token id in [0, %d)\n", p, cfg.model.vocab_size);
                free(ids);
                return 2;
            }
            ids[n++] = (int32_t)v;
            p = end;
        }
        if (n == 0) {
            free(ids);
            return usage_error("generate", "%s", "--ids is empty");
        }
    }
    model m;
    s = run_checks_generate(&cfg.model, 1, n, g.max_len, g.num_beams, "generate --max-len/--beams");
    if (s.ok) s = model_init_inference(&m, &cfg.model);
    if (s.ok) s = trainer_load_params(&m, ckpt);
    if (!s.ok) {
        free(ids);
        data_spm_free(tok);
        return fail(s);
    }
    ag_arena act;
    ag_arena_init(&act, "generate", 1 << 20);
    ag_ctx ctx;
    ag_ctx_init(&ctx, &act);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)g.max_len);
    int len;
    generate(&m, &ctx, ids, NULL, 1, n, &g, out, &len);
    if (tok) {
        char *t = decode_text(tok, out, len, m.cfg.eos_token_id, m.cfg.pad_token_id);
        printf("%s\n", t);
        free(t);
    } else {
        for (int i = 0; i < len; i++) printf(i ? " %d" : "%d", out[i]);
        printf("\n");
    }
    free(out);
    free(ids);
    data_spm_free(tok);
    ag_ctx_free(&ctx);
    ag_arena_free(&act);
    model_free(&m);
    return 0;
}

/* ---- dispatch ----------------------------------------------------------------------------------------------------- */

static const cli_command COMMANDS[] = {
    {"train", "train or fine-tune (no arguments: the built-in demo run)", cmd_train},
    {"eval", "evaluate a checkpoint: loss, token accuracy, exact match (text examples with a tokenizer)", cmd_eval},
    {"generate", "text (or ids) in, text (or ids) out: greedy or beam search on the KV cache", cmd_generate},
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
