/* Subcommand table of the switchc CLI: the core commands live in main.c, the ones owned by other folders (prepare
 * from data/, convert and export-hf from train/hf_*) are listed in commands.c; generate and embed (infer.c, embed.c)
 * share the tokenizer helpers of text.c and the input files of inputs.c. */
#ifndef SX_TRAIN_CLI_H
#define SX_TRAIN_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "data/spm.h"
#include "train/model/model.h"
#include "train/run_config.h"

typedef struct {
    const char *name;
    const char *help;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} cli_command;

int cli_extra_count(void);
const cli_command *cli_extra(int i);

/* An argument no branch took: "flag --x needs a value" when it is one of value_flags (NULL-terminated) given last,
 * else "unknown argument". Returns the exit code, 2. */
int cli_bad_arg(const char *cmd, const char *arg, const char *const *value_flags);
/* One flag of a subcommand's table (ended by a NULL flag): a string (--x VALUE into a const char *), one of a few
 * words (likewise), a whole number in [lo, hi] (into an int) or a switch without a value (a bool set true). */
typedef enum { CLI_STR, CLI_CHOICE, CLI_INT, CLI_SET } cli_flag_kind;
typedef struct {
    const char *flag, *alias; /* alias: another spelling, or NULL */
    cli_flag_kind kind;
    void *dst;
    long long lo, hi;           /* CLI_INT */
    const char *const *choices; /* CLI_CHOICE: NULL-terminated */
} cli_flag;
/* argv[i] is one of flags: returns the arguments it takes (1 or 2); 0 when it is none of them; -1 after printing a
 * usage error (a bad value, or a value flag given last). The other argument readers (cli_int8_arg, cli_infer_arg)
 * keep the same convention. */
int cli_flag_arg(const cli_flag *flags, const char *cmd, int argc, char **argv, int i);
typedef int (*cli_arg_fn)(void *user, const char *cmd, int argc, char **argv, int i);
/* A subcommand's argument loop: each of argv[1..] is -h/--help (help() printed: returns 0), or taken by more (user's
 * reader, tried first; may be NULL), or by flags; anything else is cli_bad_arg's error (returns 2). Returns -1 when
 * every argument was taken, else the exit code. */
int cli_parse_args(const char *cmd, int argc, char **argv, void (*help)(void), cli_arg_fn more, void *user,
                   const cli_flag *flags);
/* A whole number in [lo, hi]; false after printing the error line. */
bool cli_parse_int(const char *cmd, const char *flag, const char *v, long long lo, long long hi, long long *out);
/* "switchc CMD: <fmt with arg> (see switchc CMD --help)" on stderr; returns the exit code, 2. */
int cli_usage(const char *cmd, const char *fmt, const char *arg);

int cmd_generate(int argc, char **argv);
/* "switchc: error: MESSAGE" on stderr; returns the exit status 1. */
int cli_fail(sx_status s);
/* 8-bit weights for an inference command (--int8, --int8-threshold T: train/model/model_int8.h). */
typedef struct {
    bool int8;
    double threshold; /* bitsandbytes' llm_int8_threshold: 6.0 */
} cli_int8_opts;
#define CLI_INT8_DEFAULT ((cli_int8_opts){false, 6.0})
#define CLI_INT8_HELP                                                                                                \
    "  --int8               8-bit weights as transformers' load_in_8bit (bitsandbytes LLM.int8): every Linear but\n" \
    "                       lm_head row-wise int8 (experts per expert), input features with a value >= the\n"       \
    "                       threshold in fp32 (the outlier decomposition); weights take ~0.28x of fp32's memory\n"  \
    "  --int8-threshold T   the outlier threshold (default 6.0, llm_int8_threshold; 0: no decomposition)\n"
/* argv[i] is --int8 or --int8-threshold: returns the arguments it takes (1 or 2); 0 when it is neither; -1 after
 * printing a usage error for a bad value. opts: a cli_int8_opts (a cli_arg_fn, for cli_parse_args). */
int cli_int8_arg(void *opts, const char *cmd, int argc, char **argv, int i);
/* The model of an inference command from a checkpoint or an HF folder (cfg from trainer_config_from_checkpoint),
 * int8 when asked (o may be NULL: f32); the weight memory goes to stderr for int8. */
sx_status cli_load_model(const char *path, const run_config *cfg, const cli_int8_opts *o, model *m);
int cmd_embed(int argc, char **argv);

/* The tokenizer for text in and out of a model: --spm, else a Hugging Face folder's spiece.model, else the run
 * config's data.tokenizer (recorded in every checkpoint). extra_ids < 0: the sentinel count the training data was
 * prepared with (its vocabulary minus the pieces, when the dataset is reachable and has this tokenizer's checksum),
 * else T5's 100. *out stays NULL when none is known and none is required. */
sx_status cli_open_tokenizer(const char *spm_flag, const char *model_path, const run_config *cfg, int extra_ids,
                             bool required, data_spm **out);
/* Whether cli_open_tokenizer has a file to open (a folder without spiece.model has none). */
bool cli_tokenizer_known(const char *spm_flag, const char *model_path, const run_config *cfg);
/* Ids -> text: stops at EOS, drops padding and ids past the tokenizer's vocabulary (a model's vocab_size may be
 * padded, 32128 against T5's 32100). Returns a malloc'd string. */
char *cli_decode_text(const data_spm *t, const int32_t *ids, int64_t n, int32_t eos, int32_t pad);

/* ---- input files of generate and embed (inputs.c) ---------------------------------------------------------------- */

typedef struct {
    char *input_json; /* the input as the output repeats it: a JSON string (text) or array (ids) */
    int32_t *ids;     /* the encoder input: text tokenized + EOS, or the ids as given */
    int64_t n;
} cli_example;

/* Reads path: a .jsonl/.json file holds one JSON object per line whose "input" is a text (tokenized with tok, EOS
 * appended as T5Tokenizer does) or a list of token ids; any other file holds one input per line, text when tok is
 * given and ids_only is false, else ids separated by spaces or commas. Ids must lie in [0, vocab). Errors name the
 * file and line. */
sx_status cli_read_examples(const char *path, const data_spm *tok, bool ids_only, int32_t eos, int32_t vocab,
                            cli_example **out, int64_t *n);
void cli_examples_free(cli_example *ex, int64_t n);
/* One input s (a line of origin, or origin's value when line is 0): ids, or text tokenized with tok. */
sx_status cli_example_parse(const char *origin, int64_t line, const char *s, const data_spm *tok, bool ids,
                            int32_t eos, int32_t vocab, cli_example *ex);
/* Indices 0..n-1 sorted by input length (stable), so that a batch of neighbours needs little padding. */
int64_t *cli_order_by_length(const cli_example *ex, int64_t n);
/* Rows order[first .. first+B) as a right-padded batch: ids and mask [B, S] (malloc'd), S the longest. */
void cli_batch(const cli_example *ex, const int64_t *order, int64_t first, int64_t B, int32_t pad, int32_t **ids,
               int32_t **mask, int64_t *S);
/* A progress line on stderr ('\r'-updated on a terminal): what, done of total, tokens and tokens/s. */
void cli_progress(const char *what, int64_t done, int64_t total, int64_t tokens, double seconds, bool last);
/* Monotonic seconds, for progress lines. */
double cli_now_s(void);

/* ---- the options and the batch loop of generate and embed (inputs.c) ------------------------------------------- */

typedef struct {
    const char *model, *in_file, *out_path, *spm; /* --model/--checkpoint, --input-file, --output, --spm */
    int extra_ids;                                /* --extra-ids; -1: as cli_open_tokenizer decides */
    int batch;                                    /* --batch-size */
    bool ids_only;                                /* --token-ids */
    cli_int8_opts q8;                             /* --int8, --int8-threshold */
} cli_infer_opts;
#define CLI_INFER_DEFAULT(batch) ((cli_infer_opts){NULL, NULL, NULL, NULL, -1, (batch), false, CLI_INT8_DEFAULT})
/* argv[i] is one of cli_infer_opts' flags: returns the arguments it takes (1 or 2); 0 when it is none of them; -1
 * after printing a usage error (a bad value, or a value flag given last). opts: a cli_infer_opts (a cli_arg_fn). */
int cli_infer_arg(void *opts, const char *cmd, int argc, char **argv, int i);
/* --output before a large model is read: creatable, and not the --input-file. */
sx_status cli_check_output(const cli_infer_opts *o);
/* The tokenizer of the inputs: required when need is set, else opened for an --input-file of text when one is known
 * (--spm, the model's) and --token-ids is not given; *tok stays NULL otherwise. */
sx_status cli_input_tokenizer(const cli_infer_opts *o, const run_config *cfg, bool need, data_spm **tok);
/* One batch of cli_run_batches: B rows of S tokens, right-padded; rows[b] the input index of row b. Adds the tokens
 * it counts for the progress line to *tokens. */
typedef sx_status (*cli_batch_fn)(void *user, const int32_t *ids, const int32_t *mask, int64_t B, int64_t S,
                                  const int64_t *rows, int64_t *tokens);
/* fn over the n inputs in batches of up to batch neighbours in length order (cli_order_by_length, cli_batch), a
 * progress line (named what) after every batch but the last; stops at the first error. *tokens and *seconds: the
 * totals, for the caller's last progress line. */
sx_status cli_run_batches(const char *what, const cli_example *ex, int64_t n, int batch, int32_t pad, cli_batch_fn fn,
                          void *user, int64_t *tokens, double *seconds);

#endif
