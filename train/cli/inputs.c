/* The input files of generate and embed: JSONL objects with an "input" (text or ids) or one input per line, read
 * into token ids; batches of neighbours in length order; the progress line. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "autograd/sx_file.h"
#include "train/cli/cli.h"

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* text -> ids + EOS into ex (T5Tokenizer appends </s> to every sequence) */
static void encode_text(const data_spm *tok, const char *text, int32_t eos, cli_example *ex) {
    size_t len = strlen(text);
    int64_t cap = 64 + (int64_t)len;
    ex->ids = malloc(sizeof(int32_t) * (size_t)(cap + 1));
    int64_t n = data_spm_encode(tok, text, len, ex->ids, cap);
    if (n > cap) {
        ex->ids = realloc(ex->ids, sizeof(int32_t) * (size_t)(n + 1));
        n = data_spm_encode(tok, text, len, ex->ids, n);
    }
    ex->ids[n++] = eos;
    ex->n = n;
}

/* "file:line" or just the flag's name (line 0) */
static const char *where(const char *origin, int64_t line, char *buf, size_t cap) {
    if (line > 0) snprintf(buf, cap, "%s:%lld", origin, (long long)line);
    else snprintf(buf, cap, "%s", origin);
    return buf;
}

static sx_status parse_id_line(const char *path, int64_t line, const char *s, int32_t vocab, cli_example *ex) {
    char w[1100];
    ex->ids = malloc(sizeof(int32_t) * (strlen(s) / 2 + 2));
    ex->n = 0;
    cJSON *arr = cJSON_CreateArray();
    for (const char *p = s; *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        if (!*p) break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= vocab) {
            cJSON_Delete(arr);
            return sx_errorf("%s: '%.20s' is not a token id in [0, %d)%s", where(path, line, w, sizeof w), p, vocab,
                             line > 0 ? " (a file of text needs a tokenizer: --spm)" : "");
        }
        ex->ids[ex->n++] = (int32_t)v;
        cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)v));
        p = end;
    }
    ex->input_json = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    if (ex->n == 0) return line > 0 ? sx_errorf("%s: no token ids", where(path, line, w, sizeof w))
                                    : sx_errorf("%s is empty", path);
    return sx_ok();
}

static sx_status parse_json_line(const char *path, int64_t line, const char *s, const data_spm *tok, int32_t eos,
                                 int32_t vocab, cli_example *ex) {
    cJSON *j = cJSON_Parse(s);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sx_errorf("%s:%lld: not a JSON object", path, (long long)line);
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "input");
    sx_status st = sx_ok();
    if (!in) {
        st = sx_errorf("%s:%lld: no \"input\" key", path, (long long)line);
    } else if (cJSON_IsString(in)) {
        if (!tok)
            st = sx_errorf("%s:%lld: \"input\" is text but no tokenizer is known for this model (give --spm, or the "
                           "ids as a list)", path, (long long)line);
        else
            encode_text(tok, in->valuestring, eos, ex);
    } else if (cJSON_IsArray(in) && cJSON_GetArraySize(in) > 0) {
        ex->n = cJSON_GetArraySize(in);
        ex->ids = malloc(sizeof(int32_t) * (size_t)ex->n);
        int64_t k = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, in) {
            if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int32_t)v->valuedouble || v->valuedouble < 0 ||
                v->valuedouble >= vocab) {
                st = sx_errorf("%s:%lld: \"input\"[%lld] is not a token id in [0, %d)", path, (long long)line,
                               (long long)k, vocab);
                break;
            }
            ex->ids[k++] = (int32_t)v->valuedouble;
        }
    } else {
        st = sx_errorf("%s:%lld: \"input\" must be a string or a non-empty list of token ids", path, (long long)line);
    }
    if (st.ok) ex->input_json = cJSON_PrintUnformatted(in);
    cJSON_Delete(j);
    return st;
}

sx_status cli_example_parse(const char *origin, int64_t line, const char *s, const data_spm *tok, bool ids,
                            int32_t eos, int32_t vocab, cli_example *ex) {
    memset(ex, 0, sizeof *ex);
    if (ids) return parse_id_line(origin, line, s, vocab, ex);
    cJSON *j = cJSON_CreateString(s);
    ex->input_json = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    encode_text(tok, s, eos, ex);
    return sx_ok();
}

sx_status cli_read_examples(const char *path, const data_spm *tok, bool ids_only, int32_t eos, int32_t vocab,
                            cli_example **out, int64_t *n_out) {
    *out = NULL;
    *n_out = 0;
    FILE *f;
    SX_TRY(sx_file_fopen_read(path, "input file", &f, NULL)); /* a directory or a FIFO is refused, not read */
    bool jsonl = ends_with(path, ".jsonl") || ends_with(path, ".json");
    bool text = !jsonl && tok && !ids_only;
    int64_t n = 0, cap = 64, line_no = 0;
    cli_example *ex = calloc((size_t)cap, sizeof *ex);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    sx_status st = sx_ok();
    while (st.ok && (len = getline(&line, &lcap, f)) >= 0) {
        line_no++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (jsonl && strspn(line, " \t") == (size_t)len) continue; /* blank lines between JSON objects */
        if (n == cap) {
            ex = realloc(ex, sizeof *ex * (size_t)(cap *= 2));
            memset(ex + n, 0, sizeof *ex * (size_t)(cap - n));
        }
        if (jsonl) {
            st = parse_json_line(path, line_no, line, tok, eos, vocab, &ex[n]);
        } else {
            st = cli_example_parse(path, line_no, line, tok, !text, eos, vocab, &ex[n]);
        }
        n++;
    }
    if (st.ok && ferror(f)) st = sx_errorf("%s: read error: %s", path, strerror(errno));
    free(line);
    fclose(f);
    if (st.ok && n == 0) st = sx_errorf("%s: no inputs in the file", path);
    if (!st.ok) {
        cli_examples_free(ex, n);
        return st;
    }
    *out = ex;
    *n_out = n;
    return sx_ok();
}

void cli_examples_free(cli_example *ex, int64_t n) {
    if (!ex) return;
    for (int64_t i = 0; i < n; i++) {
        free(ex[i].input_json);
        free(ex[i].ids);
    }
    free(ex);
}

static const cli_example *sort_base;
static int by_length(const void *a, const void *b) {
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    int64_t li = sort_base[i].n, lj = sort_base[j].n;
    return li != lj ? (li > lj) - (li < lj) : (i > j) - (i < j);
}

int64_t *cli_order_by_length(const cli_example *ex, int64_t n) {
    int64_t *order = malloc(sizeof(int64_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) order[i] = i;
    sort_base = ex;
    qsort(order, (size_t)n, sizeof(int64_t), by_length);
    sort_base = NULL;
    return order;
}

void cli_batch(const cli_example *ex, const int64_t *order, int64_t first, int64_t B, int32_t pad, int32_t **ids,
               int32_t **mask, int64_t *S_out) {
    int64_t S = 1;
    for (int64_t b = 0; b < B; b++) S = ex[order[first + b]].n > S ? ex[order[first + b]].n : S;
    *ids = malloc(sizeof(int32_t) * (size_t)(B * S));
    *mask = malloc(sizeof(int32_t) * (size_t)(B * S));
    for (int64_t b = 0; b < B; b++) {
        const cli_example *e = &ex[order[first + b]];
        for (int64_t s = 0; s < S; s++) {
            (*ids)[b * S + s] = s < e->n ? e->ids[s] : pad;
            (*mask)[b * S + s] = s < e->n;
        }
    }
    *S_out = S;
}

void cli_progress(const char *what, int64_t done, int64_t total, int64_t tokens, double seconds, bool last) {
    bool tty = isatty(fileno(stderr));
    if (!tty && !last && done != total) {
        /* a log file: about ten lines per run */
        int64_t step = total / 10 > 0 ? total / 10 : 1;
        static int64_t next;
        if (done < next) return;
        next = done + step;
    }
    fprintf(stderr, "%sswitchc %s: %lld/%lld inputs, %lld tokens, %.1f s, %.1f tokens/s%s", tty ? "\r" : "", what,
            (long long)done, (long long)total, (long long)tokens, seconds, seconds > 0 ? (double)tokens / seconds : 0.0,
            tty && !last ? "" : "\n");
    fflush(stderr);
}

double cli_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_infer_arg(void *opts, const char *cmd, int argc, char **argv, int i) {
    cli_infer_opts *o = opts;
    int used = cli_int8_arg(&o->q8, cmd, argc, argv, i);
    if (used) return used;
    const cli_flag FLAGS[] = {
        {"--token-ids", NULL, CLI_SET, &o->ids_only, 0, 0, NULL},
        {"--model", "--checkpoint", CLI_STR, &o->model, 0, 0, NULL},
        {"--input-file", NULL, CLI_STR, &o->in_file, 0, 0, NULL},
        {"--output", NULL, CLI_STR, &o->out_path, 0, 0, NULL},
        {"--spm", NULL, CLI_STR, &o->spm, 0, 0, NULL},
        {"--batch-size", NULL, CLI_INT, &o->batch, 1, 1 << 20, NULL},
        {"--extra-ids", NULL, CLI_INT, &o->extra_ids, 0, 100000, NULL},
        {NULL, NULL, CLI_SET, NULL, 0, 0, NULL},
    };
    return cli_flag_arg(FLAGS, cmd, argc, argv, i);
}

sx_status cli_check_output(const cli_infer_opts *o) {
    sx_status s = sx_file_check_output(o->out_path, "--output", false);
    if (s.ok && sx_file_same(o->in_file, o->out_path))
        s = sx_errorf("--output %s is the --input-file: it would be overwritten", o->out_path);
    return s;
}

sx_status cli_input_tokenizer(const cli_infer_opts *o, const run_config *cfg, bool need, data_spm **tok) {
    *tok = NULL;
    if (need || (o->in_file && !o->ids_only && (o->spm || cli_tokenizer_known(NULL, o->model, cfg))))
        return cli_open_tokenizer(o->spm, o->model, cfg, o->extra_ids, true, tok);
    return sx_ok();
}

sx_status cli_run_batches(const char *what, const cli_example *ex, int64_t n, int batch, int32_t pad, cli_batch_fn fn,
                          void *user, int64_t *tokens, double *seconds) {
    int64_t *order = cli_order_by_length(ex, n);
    double t0 = cli_now_s();
    *tokens = 0;
    sx_status s = sx_ok();
    for (int64_t first = 0; s.ok && first < n; first += batch) {
        int64_t B = n - first < batch ? n - first : batch, S;
        int32_t *ids, *mask;
        cli_batch(ex, order, first, B, pad, &ids, &mask, &S);
        s = fn(user, ids, mask, B, S, order + first, tokens);
        free(ids);
        free(mask);
        if (first + B < n) cli_progress(what, first + B, n, *tokens, cli_now_s() - t0, false);
    }
    *seconds = cli_now_s() - t0;
    free(order);
    return s;
}
