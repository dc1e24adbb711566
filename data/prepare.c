/* switchc prepare: JSONL or TSV of examples -> an HDF5 token dataset, reporting truncated examples and every bad
 * line with its file and line number (skipped and counted, or the first one stops the run). This version takes
 * token ids (JSON arrays, or space-separated ids in TSV columns); text fields need the SentencePiece tokenizer, the
 * open part of the data issue, and are refused with a message saying so. */
#include "data/prepare.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "data/dataset.h"

typedef struct {
    const char *input, *output, *format, *in_field, *tgt_field;
    int64_t max_in, max_tgt;
    int32_t vocab, eos;
    bool skip_bad, append_eos, text_only;
} prep_opts;

static void usage(FILE *f) {
    fprintf(f, "usage: switchc prepare --input FILE --output FILE.h5 --vocab-size V [options]\n\n"
               "Turns examples into an HDF5 token dataset for `switchc train` (data.task dataset).\n"
               "  --format jsonl|tsv|text   default: from the file extension (.jsonl/.json, .tsv, anything else: text)\n"
               "  --input-field NAME        JSONL field of the input (default \"input\"); --target-field (default \"target\")\n"
               "  --vocab-size V            token ids must lie in [0, V)\n"
               "  --max-input-len N, --max-target-len N   truncate (default 512 and 128), counting truncated examples\n"
               "  --eos ID                  id appended to every input and target (default 1, T5's </s>); --no-eos\n"
               "  --on-error skip|stop      a bad line (invalid JSON, a missing field, a bad id) is skipped and counted, or\n"
               "                            stops the run (default stop)\n"
               "  --text-only               inputs only (raw text for span corruption): JSONL field or TSV column 1\n"
               "Inputs and targets are token ids: a JSON array of integers, or space-separated integers in a TSV column.\n"
               "Text (strings) needs the SentencePiece tokenizer (--tokenizer), not part of this build yet.\n");
}

static int parse_ids(const char *s, int32_t *out, int64_t cap, int64_t *n, int32_t vocab) {
    int64_t k = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= vocab) return -1;
        if (k < cap) out[k] = (int32_t)v;
        k++;
        p = end;
    }
    *n = k;
    return 0;
}

static int json_ids(const cJSON *a, int32_t *out, int64_t cap, int64_t *n, int32_t vocab) {
    if (!cJSON_IsArray(a)) return -2;
    int64_t k = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a) {
        if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble || v->valuedouble < 0 || v->valuedouble >= vocab) return -1;
        if (k < cap) out[k] = (int32_t)v->valuedouble;
        k++;
    }
    *n = k;
    return 0;
}

static bool utf8_ok(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int len = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
        if (!len) return false;
        for (int k = 1; k < len; k++)
            if ((p[k] & 0xc0) != 0x80) return false;
        p += len;
    }
    return true;
}

int data_prepare_main(int argc, char **argv) {
    prep_opts o = {NULL, NULL, NULL, "input", "target", 512, 128, 0, 1, false, true, false};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--input") && has) o.input = argv[++i];
        else if (!strcmp(a, "--output") && has) o.output = argv[++i];
        else if (!strcmp(a, "--format") && has) o.format = argv[++i];
        else if (!strcmp(a, "--input-field") && has) o.in_field = argv[++i];
        else if (!strcmp(a, "--target-field") && has) o.tgt_field = argv[++i];
        else if (!strcmp(a, "--vocab-size") && has) o.vocab = atoi(argv[++i]);
        else if (!strcmp(a, "--max-input-len") && has) o.max_in = atoll(argv[++i]);
        else if (!strcmp(a, "--max-target-len") && has) o.max_tgt = atoll(argv[++i]);
        else if (!strcmp(a, "--eos") && has) o.eos = atoi(argv[++i]);
        else if (!strcmp(a, "--no-eos")) o.append_eos = false;
        else if (!strcmp(a, "--text-only")) o.text_only = true;
        else if (!strcmp(a, "--on-error") && has) {
            const char *v = argv[++i];
            if (!strcmp(v, "skip")) o.skip_bad = true;
            else if (!strcmp(v, "stop")) o.skip_bad = false;
            else {
                fprintf(stderr, "switchc prepare: --on-error '%s': expected skip or stop\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--tokenizer")) {
            fprintf(stderr, "switchc prepare: --tokenizer: the SentencePiece tokenizer is not part of this build yet; give token ids\n");
            return 2;
        } else {
            fprintf(stderr, "switchc prepare: unknown or incomplete argument '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!o.input || !o.output || o.vocab <= 0) {
        fprintf(stderr, "switchc prepare: --input, --output and a positive --vocab-size are required (see --help)\n");
        return 2;
    }
    if (o.max_in < 1 || o.max_tgt < 1 || (o.append_eos && (o.eos < 0 || o.eos >= o.vocab))) {
        fprintf(stderr, "switchc prepare: lengths must be positive and --eos inside the vocabulary\n");
        return 2;
    }
    const char *fmt = o.format;
    if (!fmt) {
        size_t l = strlen(o.input);
        fmt = (l > 6 && !strcmp(o.input + l - 6, ".jsonl")) || (l > 5 && !strcmp(o.input + l - 5, ".json")) ? "jsonl"
              : (l > 4 && !strcmp(o.input + l - 4, ".tsv"))                                              ? "tsv"
                                                                                                         : "text";
    }
    bool jsonl = !strcmp(fmt, "jsonl"), tsv = !strcmp(fmt, "tsv");
    if (!jsonl && !tsv && strcmp(fmt, "text")) {
        fprintf(stderr, "switchc prepare: --format '%s': expected jsonl, tsv or text\n", fmt);
        return 2;
    }
    if (!strcmp(fmt, "text")) o.text_only = true;
    FILE *in = fopen(o.input, "r");
    if (!in) {
        fprintf(stderr, "switchc prepare: %s: cannot open: %s\n", o.input, strerror(errno));
        return 1;
    }
    data_writer *w;
    sx_status s = data_writer_open(o.output, o.vocab, 0, !o.text_only, &w);
    if (!s.ok) {
        fclose(in);
        fprintf(stderr, "switchc prepare: %s\n", s.msg);
        return 1;
    }
    int64_t cap = (o.max_in > o.max_tgt ? o.max_in : o.max_tgt) + 1;
    int32_t *a = malloc(sizeof(int32_t) * (size_t)cap), *b = malloc(sizeof(int32_t) * (size_t)cap);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int64_t lineno = 0, good = 0, bad = 0, truncated = 0, tokens = 0;
    int rc = 0;
    while ((len = getline(&line, &lcap, in)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        char why[256] = "";
        int64_t na = 0, nb = 0;
        if (!utf8_ok(line)) {
            snprintf(why, sizeof why, "invalid UTF-8");
        } else if (jsonl) {
            cJSON *j = cJSON_Parse(line);
            if (!j || !cJSON_IsObject(j)) snprintf(why, sizeof why, "invalid JSON (or not an object)");
            else {
                const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, o.in_field), *y = o.text_only ? NULL : cJSON_GetObjectItemCaseSensitive(j, o.tgt_field);
                if (!x) snprintf(why, sizeof why, "missing field \"%s\"", o.in_field);
                else if (!o.text_only && !y) snprintf(why, sizeof why, "missing field \"%s\"", o.tgt_field);
                else if (cJSON_IsString(x) || (y && cJSON_IsString(y)))
                    snprintf(why, sizeof why, "text fields need the SentencePiece tokenizer (not in this build): give token ids");
                else if (json_ids(x, a, o.max_in, &na, o.vocab) || (y && json_ids(y, b, o.max_tgt, &nb, o.vocab)))
                    snprintf(why, sizeof why, "ids must be a JSON array of integers in [0, %d)", o.vocab);
            }
            cJSON_Delete(j);
        } else {
            char *tab = strchr(line, '\t');
            if (!o.text_only && !tab) snprintf(why, sizeof why, "expected two tab-separated columns");
            else {
                if (tab) *tab = 0;
                if (parse_ids(line, a, o.max_in, &na, o.vocab) || (!o.text_only && parse_ids(tab + 1, b, o.max_tgt, &nb, o.vocab)))
                    snprintf(why, sizeof why, "columns must be space-separated integer ids in [0, %d)", o.vocab);
            }
        }
        if (why[0]) {
            fprintf(stderr, "switchc prepare: %s:%lld: %s\n", o.input, (long long)lineno, why);
            bad++;
            if (!o.skip_bad) {
                rc = 1;
                break;
            }
            continue;
        }
        bool cut = na > o.max_in || nb > o.max_tgt;
        truncated += cut;
        if (na > o.max_in) na = o.max_in;
        if (nb > o.max_tgt) nb = o.max_tgt;
        if (o.append_eos) {
            a[na++] = o.eos;
            if (!o.text_only) b[nb++] = o.eos;
        }
        s = data_writer_append(w, a, na, b, nb);
        if (!s.ok) {
            fprintf(stderr, "switchc prepare: %s\n", s.msg);
            rc = 1;
            break;
        }
        good++;
        tokens += na + nb;
    }
    free(line);
    free(a);
    free(b);
    fclose(in);
    if (rc) {
        data_writer_abort(w);
        fprintf(stderr, "switchc prepare: stopped at the first bad line (--on-error skip skips and counts them); nothing written\n");
        return rc;
    }
    s = data_writer_close(w);
    if (!s.ok) {
        fprintf(stderr, "switchc prepare: %s\n", s.msg);
        return 1;
    }
    printf("switchc prepare: %s -> %s: %lld examples, %lld tokens, %lld truncated, %lld bad lines skipped\n", o.input, o.output, (long long)good,
           (long long)tokens, (long long)truncated, (long long)bad);
    return 0;
}
