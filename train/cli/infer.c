/* switchc generate: one input (--input TEXT, --ids) or a file of them (--input-file, batched in length order, results
 * in input order as JSONL), greedy, beam search or sampling with HF generate's parameters (train/model/generate.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/sx_file.h"
#include "train/cli/cli.h"
#include "train/model/generate.h"
#include "train/run_checks.h"
#include "train/trainer.h"

static int usage(const char *fmt, const char *arg) { return cli_usage("generate", fmt, arg); }

static void generate_help(void) {
    printf(
        "usage: switchc generate --model DIR|CKPT (--input TEXT | --ids \"5 7 3 1\" |\n"
        "                        --input-file F --output OUT.jsonl) [options]\n"
        "\n"
        "Decodes with the KV cache: greedy (the default), beam search (--num-beams K > 1) or sampling (--do-sample),\n"
        "stopping at EOS or --max-new-tokens, as Hugging Face's generate with the same parameters.\n"
        "\n"
        "  --model DIR|CKPT     a Hugging Face folder (config.json + model.safetensors or pytorch_model.bin, and\n"
        "                       spiece.model for text), e.g. google/switch-base-8 as downloaded, or a switchc\n"
        "                       checkpoint (.h5); --checkpoint is the same flag\n"
        "  --input TEXT         one text, tokenized like HF's T5Tokenizer (EOS appended; <extra_id_N> sentinels are\n"
        "                       single tokens); prints the generated text (sentinels kept, EOS and padding dropped)\n"
        "  --ids \"ID ...\"       one input as token ids (space or comma separated), EOS included if wanted;\n"
        "                       prints ids\n"
        "  --input-file F       many inputs: F.jsonl holds one JSON object per line whose \"input\" is a text or a\n"
        "                       list of ids; any other file holds one input per line (text with a tokenizer, else\n"
        "                       ids as for --ids). Decoded in batches of inputs of similar length (less padding);\n"
        "                       the results go to --output in input order, one JSON object per line: {\"index\",\n"
        "                       \"input\", \"output\" (text, with a tokenizer), \"output_ids\", \"score\" (beam\n"
        "                       search: HF's sequences_scores)}. Progress and tokens/s on stderr.\n"
        "  --output OUT.jsonl   where --input-file's results go ('-': stdout)\n"
        "  --batch-size N       inputs decoded together (default 8)\n"
        "  --token-ids          the lines of a plain --input-file are ids even when the model has a tokenizer\n"
        "  --spm PATH.model     the SentencePiece tokenizer. Without it: DIR/spiece.model for a folder; for a\n"
        "                       checkpoint, the run config's data.tokenizer (set it when training on text,\n"
        "                       e.g. --set data.tokenizer=spiece.model: checkpoints record it)\n"
        "  --extra-ids N        T5 sentinels after the pieces (default: what the training data was prepared with when\n"
        "                       it is reachable, else 100)\n"
        "  --max-new-tokens N   generated tokens at most, EOS included (default 32; --max-len is the same): HF's\n"
        "                       max_new_tokens, or its max_length - 1 (which counts the decoder start token)\n"
        "  --num-beams K        beam search with K beams (default 1: greedy; --beams is the same)\n"
        "  --length-penalty P   beam score = log p / length^P, length = generated tokens (default 1.0, HF's);\n"
        "                       P > 0 favours longer hypotheses, P < 0 shorter ones\n"
        "  --early-stopping E   when beam search stops, as HF's early_stopping (default false):\n"
        "                         false  once K hypotheses are finished and the best running beam, scored at its\n"
        "                                current length, cannot beat the worst of them\n"
        "                         true   as soon as K hypotheses are finished\n"
        "                         never  as false, but with P > 0 a running beam is scored at --max-new-tokens\n"
        "                       beams still running at the limit compete with the finished ones\n"
        "  --do-sample          sample each token (num_beams 1) from softmax(logits) after HF's warpers, in HF's\n"
        "                       order: --temperature T (default 1.0), then --top-k K (default 50, HF's; 0 = off),\n"
        "                       then --top-p P (default 1.0 = off: keep the smallest set of top tokens whose\n"
        "                       probability exceeds P)\n"
        "  --seed N             the sampling seed (default 0). The draws of input i depend on (seed, i) only, so an\n"
        "                       input gets the same tokens whatever --batch-size or the other inputs are\n"
        CLI_INT8_HELP
        "\n"
        "Examples:\n"
        "  switchc generate --model switch-base-8/ --input \"The capital of France is <extra_id_0>.\"\n"
        "  switchc generate --model switch-base-8/ --input-file prompts.jsonl --output out.jsonl --num-beams 4\n"
        "  switchc generate --model switch-base-8/ --input-file prompts.txt --output - --do-sample --top-p 0.9\n"
        "  switchc generate --model runs/text/ckpt_step00000300.h5 --spm spiece.model --input \"sum: two plus three\"\n"
        "  switchc generate --checkpoint runs/default/ckpt_step00003000.h5 --ids \"5 7 3 1\" --beams 4\n");
}

static bool parse_double(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* The generated ids of one row as a JSON object line (the fields in --help's order). */
static void write_result(FILE *f, int64_t index, const cli_example *ex, const data_spm *tok, const model_config *c,
                         const int32_t *ids, int len, bool beam, float score) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", (double)index);
    cJSON_AddItemToObject(o, "input", cJSON_Parse(ex->input_json));
    if (tok) {
        char *t = cli_decode_text(tok, ids, len, c->eos_token_id, c->pad_token_id);
        cJSON_AddStringToObject(o, "output", t);
        free(t);
    }
    cJSON *arr = cJSON_CreateArray();
    for (int t = 0; t < len; t++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[t]));
    cJSON_AddItemToObject(o, "output_ids", arr);
    if (beam) cJSON_AddNumberToObject(o, "score", (double)score);
    char *s = cJSON_PrintUnformatted(o);
    fprintf(f, "%s\n", s);
    free(s);
    cJSON_Delete(o);
}

/* The file mode: batches of neighbours in length order, results put back in input order. */
typedef struct {
    model *m;
    ag_ctx *ctx;
    const gen_config *g;
    int32_t *out, *bout; /* [n, L] in input order; [batch, L] of one batch */
    int *lens, *blens;
    float *scores, *bscores;
} generate_batch;

static sx_status generate_rows(void *user, const int32_t *ids, const int32_t *mask, int64_t B, int64_t S,
                               const int64_t *rows, int64_t *tokens) {
    generate_batch *e = user;
    int L = e->g->max_len;
    generate_ex(e->m, e->ctx, ids, mask, B, S, e->g, rows, e->bout, e->blens, e->bscores);
    for (int64_t b = 0; b < B; b++) {
        int64_t i = rows[b];
        memcpy(e->out + i * L, e->bout + b * L, sizeof(int32_t) * (size_t)L);
        e->lens[i] = e->blens[b];
        e->scores[i] = e->bscores[b];
        *tokens += e->blens[b];
    }
    return sx_ok();
}

static sx_status generate_file(model *m, const cli_example *ex, int64_t n, const gen_config *g, int batch,
                               const data_spm *tok, const char *out_path) {
    FILE *f = strcmp(out_path, "-") ? fopen(out_path, "w") : stdout;
    if (!f) return sx_errorf("%s: cannot create: %s", out_path, strerror(errno));
    int L = g->max_len;
    ag_arena act;
    ag_ctx ctx;
    ag_ctx_init_eval(&ctx, &act, "generate", 1 << 20);
    generate_batch e = {m, &ctx, g, malloc(sizeof(int32_t) * (size_t)(n * L)), malloc(sizeof(int32_t) * (size_t)(batch * L)),
                        malloc(sizeof(int) * (size_t)n), malloc(sizeof(int) * (size_t)batch),
                        malloc(sizeof(float) * (size_t)n), malloc(sizeof(float) * (size_t)batch)};
    int64_t tokens;
    double seconds;
    cli_run_batches("generate", ex, n, batch, m->cfg.pad_token_id, generate_rows, &e, &tokens, &seconds);
    cli_progress("generate", n, n, tokens, seconds, true);
    for (int64_t i = 0; i < n; i++)
        write_result(f, i, &ex[i], tok, &m->cfg, e.out + i * L, e.lens[i], g->num_beams > 1, e.scores[i]);
    sx_status st = sx_ok();
    if (f != stdout && fclose(f) != 0) st = sx_errorf("%s: cannot write: %s", out_path, strerror(errno));
    else if (f == stdout) fflush(stdout);
    ag_ctx_free_eval(&ctx);
    free(e.out);
    free(e.bout);
    free(e.lens);
    free(e.blens);
    free(e.scores);
    free(e.bscores);
    return st;
}

/* One input (--input or --ids): the text when tok is given, else the ids, on stdout. */
static void generate_one(model *m, const cli_example *ex, const gen_config *g, const data_spm *tok) {
    ag_arena act;
    ag_ctx ctx;
    ag_ctx_init_eval(&ctx, &act, "generate", 1 << 20);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)g->max_len);
    int len;
    float score;
    int64_t row = 0;
    generate_ex(m, &ctx, ex->ids, NULL, 1, ex->n, g, &row, out, &len, &score);
    if (tok) {
        char *t = cli_decode_text(tok, out, len, m->cfg.eos_token_id, m->cfg.pad_token_id);
        printf("%s\n", t);
        free(t);
    } else {
        for (int i = 0; i < len; i++) printf(i ? " %d" : "%d", out[i]);
        printf("\n");
    }
    free(out);
    ag_ctx_free_eval(&ctx);
}

/* generate's flags that are neither cli_infer_opts' nor plain table entries: real numbers and the 64-bit seed. */
typedef struct {
    cli_infer_opts *o;
    gen_config *g;
} gen_args;

static int gen_arg(void *user, const char *cmd, int argc, char **argv, int i) {
    gen_args *u = user;
    int used = cli_infer_arg(u->o, cmd, argc, argv, i);
    if (used) return used;
    static const char *const OWN[] = {"--length-penalty", "--temperature", "--top-p", "--seed", NULL};
    static const char *const MUST[] = {"--length-penalty '%s' must be a finite number",
                                       "--temperature '%s' must be a positive number",
                                       "--top-p '%s' must be a number in (0, 1]",
                                       "--seed '%s' must be a non-negative integer"};
    int k = 0;
    while (OWN[k] && strcmp(argv[i], OWN[k])) k++;
    if (!OWN[k]) return 0;
    if (i + 1 >= argc) {
        cli_bad_arg(cmd, argv[i], OWN);
        return -1;
    }
    const char *v = argv[i + 1];
    gen_config *g = u->g;
    bool ok;
    if (k == 0) {
        ok = parse_double(v, &g->length_penalty);
    } else if (k == 1) {
        ok = parse_double(v, &g->temperature) && g->temperature > 0;
    } else if (k == 2) {
        ok = parse_double(v, &g->top_p) && g->top_p > 0 && g->top_p <= 1;
    } else {
        char *end;
        errno = 0;
        unsigned long long sv = strtoull(v, &end, 10);
        ok = !(end == v || *end || errno || v[0] == '-');
        if (ok) g->seed = (uint64_t)sv;
    }
    if (!ok) {
        usage(MUST[k], v);
        return -1;
    }
    return 2;
}

int cmd_generate(int argc, char **argv) {
    const char *ids_arg = NULL, *text = NULL, *early = "false";
    gen_config g = {32, 1, 1.0, GEN_EARLY_STOP_FALSE, false, 1.0, 50, 1.0, 0};
    cli_infer_opts o = CLI_INFER_DEFAULT(8);
    const cli_flag FLAGS[] = {
        {"--do-sample", NULL, CLI_SET, &g.do_sample, 0, 0, NULL},
        {"--ids", NULL, CLI_STR, &ids_arg, 0, 0, NULL},
        {"--input", NULL, CLI_STR, &text, 0, 0, NULL},
        {"--max-len", "--max-new-tokens", CLI_INT, &g.max_len, 1, RUN_CHECKS_MAX_GEN_LEN, NULL},
        {"--beams", "--num-beams", CLI_INT, &g.num_beams, 1, RUN_CHECKS_MAX_BEAMS, NULL},
        {"--early-stopping", NULL, CLI_CHOICE, &early, 0, 0, (const char *const[]){"true", "false", "never", NULL}},
        {"--top-k", NULL, CLI_INT, &g.top_k, 0, 1 << 30, NULL},
        {NULL, NULL, CLI_SET, NULL, 0, 0, NULL},
    };
    int rc = cli_parse_args("generate", argc, argv, generate_help, gen_arg, &(gen_args){&o, &g}, FLAGS);
    if (rc >= 0) return rc;
    g.early_stopping = !strcmp(early, "true") ? GEN_EARLY_STOP_TRUE
                       : !strcmp(early, "never") ? GEN_EARLY_STOP_NEVER
                                                 : GEN_EARLY_STOP_FALSE;
    if (!o.model) return usage("%s", "--model DIR|CKPT is required");
    if (!o.model[0]) return usage("%s", "--model: the path is empty");
    if ((ids_arg != NULL) + (text != NULL) + (o.in_file != NULL) != 1)
        return usage("%s", "give the input as --input TEXT or as --ids \"ID ...\", or many as --input-file F "
                           "(one of them)");
    if (o.in_file && !o.out_path) return usage("%s", "--input-file needs --output OUT.jsonl ('-' for stdout)");
    if (!o.in_file && o.out_path) return usage("%s", "--output goes with --input-file");
    if (g.do_sample && g.num_beams > 1)
        return usage("%s", "--do-sample with --num-beams > 1 (HF's beam sampling) is not supported: use one of them");
    if (o.out_path && strcmp(o.out_path, "-")) { /* the output path before a large model is read */
        sx_status os = cli_check_output(&o);
        if (!os.ok) return cli_fail(os);
    }
    run_config cfg;
    sx_status s = trainer_config_from_checkpoint(o.model, &cfg);
    if (!s.ok) return cli_fail(s);
    /* the tokenizer and the inputs first: a missing or bad one fails before a large model is read */
    data_spm *tok;
    s = cli_input_tokenizer(&o, &cfg, text != NULL, &tok);
    if (!s.ok) return cli_fail(s);
    cli_example *ex = NULL;
    int64_t n = 0;
    if (o.in_file) {
        s = cli_read_examples(o.in_file, tok, o.ids_only, cfg.model.eos_token_id, cfg.model.vocab_size, &ex, &n);
    } else {
        n = 1;
        ex = calloc(1, sizeof *ex);
        s = cli_example_parse(text ? "--input" : "--ids", 0, text ? text : ids_arg, tok, !text, cfg.model.eos_token_id,
                              cfg.model.vocab_size, ex);
    }
    int64_t S_max = 1;
    for (int64_t i = 0; s.ok && i < n; i++) S_max = ex[i].n > S_max ? ex[i].n : S_max;
    if (s.ok)
        s = run_checks_generate(&cfg.model, n < o.batch ? n : o.batch, S_max, g.max_len, g.num_beams,
                                "generate --max-new-tokens/--num-beams/--batch-size");
    model m;
    if (s.ok) s = cli_load_model(o.model, &cfg, &o.q8, &m);
    if (!s.ok) {
        cli_examples_free(ex, n);
        data_spm_free(tok);
        return cli_fail(s);
    }
    if (o.in_file) s = generate_file(&m, ex, n, &g, o.batch, tok, o.out_path);
    else generate_one(&m, &ex[0], &g, text ? tok : NULL);
    cli_examples_free(ex, n);
    data_spm_free(tok);
    model_free(&m);
    return s.ok ? 0 : cli_fail(s);
}
