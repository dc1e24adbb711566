/* switchc prepare: JSONL or TSV of examples, or raw text one document per line, -> an HDF5 token dataset. Text goes
 * through a SentencePiece model (data/spm.h) the way HF's T5Tokenizer does it (pieces, EOS appended, T5 sentinels
 * after the vocabulary); without a model the fields are token ids. Truncated examples are counted, and every bad line
 * is reported with its file and line number (skipped and counted, or the first one stops the run). */
#include "data/prepare.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "autograd/sx_file.h"
#include "data/dataset.h"

/* longest --max-input-len / --max-target-len (data.max_input_len's bound too) */
#define PREP_MAX_LEN 1000000

typedef struct {
    const char *input, *output, *format, *in_field, *tgt_field, *spm_path, *model_dir;
    int64_t max_in, max_tgt;
    int32_t vocab, eos, extra_ids;
    bool skip_bad, append_eos, text_only, eos_given;
    data_spm *spm;   /* NULL: fields are token ids */
    int64_t unk;     /* kept tokens that are the tokenizer's <unk> */
    int64_t eos_present; /* id fields that already ended with EOS: not given a second one */
} prep_opts;

static void usage(FILE *f) {
    fprintf(f, "usage: switchc prepare --input FILE --output FILE.h5 (--spm PATH.model | --model DIR | --vocab-size V) [options]\n\n"
               "Turns examples into an HDF5 token dataset for `switchc train` (data.task dataset) and `switchc eval`.\n\n"
               "Input (--format, default from the extension: .jsonl/.json -> jsonl, .tsv -> tsv, anything else -> text):\n"
               "  jsonl   one JSON object per line, e.g. {\"input\": \"sum: two plus two\", \"target\": \"four\"}\n"
               "  tsv     two tab-separated columns: input, target\n"
               "  text    one document per line, inputs only: a raw-text dataset the trainer span-corrupts (T5's\n"
               "          pre-training objective, sentinels <extra_id_N> counted down from the end of the vocabulary)\n"
               "  --input-field NAME   JSONL field of the input (default \"input\"); --target-field NAME (default \"target\")\n"
               "  --text-only          inputs only from jsonl (the input field) or tsv (column 1): raw text for span corruption\n\n"
               "Tokenizer (text fields):\n"
               "  --spm PATH.model     a SentencePiece model: strings are tokenized like HF's T5Tokenizer; the dataset\n"
               "                       records its vocabulary size and checksum (CRC32 of the .model)\n"
               "  --model DIR          the same with DIR/spiece.model (a Hugging Face folder, e.g. google/switch-base-8)\n"
               "  --extra-ids N        T5 sentinels <extra_id_0..N-1> after the pieces (default 100, T5's convention):\n"
               "                       the dataset's vocabulary is pieces + N; the model's vocab_size must be at least that\n"
               "  With a tokenizer, a JSON array in a field is still taken as token ids (already tokenized).\n"
               "  Without one, fields are token ids: a JSON array of integers, or space-separated integers in TSV/text,\n"
               "  and --vocab-size V (ids in [0, V)) is required.\n\n"
               "Lengths and EOS:\n"
               "  --max-input-len N, --max-target-len N   keep at most N tokens, EOS included, like HF's truncation=True\n"
               "                       (default 512 and 128); the number of truncated examples is reported\n"
               "  --eos ID             id appended to every input and target (default: the tokenizer's EOS, else 1, T5's </s>)\n"
               "  --no-eos             append nothing\n\n"
               "Bad lines (invalid JSON, a missing field, invalid UTF-8, an id outside the vocabulary) are reported as\n"
               "FILE:LINE: reason.\n"
               "  --on-error skip|stop skip and count them, or stop at the first one and write nothing (default stop)\n\n"
               "Examples:\n"
               "  switchc prepare --input train.jsonl --output train.h5 --spm spiece.model\n"
               "  switchc prepare --input pairs.tsv --output train.h5 --model switch-base-8/ --max-input-len 256\n"
               "  switchc prepare --input corpus.txt --output pretrain.h5 --spm spiece.model --format text\n"
               "  switchc prepare --input ids.jsonl --output train.h5 --vocab-size 32128\n");
}

sx_status data_tokenizer_open(const char *model_or_dir, int extra_ids, data_spm **out) {
    char path[1100];
    struct stat st;
    snprintf(path, sizeof path, "%s", model_or_dir);
    if (stat(model_or_dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(path, sizeof path, "%s/spiece.model", model_or_dir);
        if (stat(path, &st) != 0)
            return sx_errorf("%s: no spiece.model in this folder (give the SentencePiece model with --spm PATH.model)", model_or_dir);
    } else if (stat(model_or_dir, &st) != 0) {
        return sx_errorf("%s: cannot open: %s", model_or_dir, strerror(errno));
    }
    SX_TRY(data_spm_load(path, out));
    data_spm_set_extra_ids(*out, extra_ids);
    return sx_ok();
}

/* Space-separated ids: each a whole decimal integer in [0, vocab) ("5x" or "1e3" is refused, not read as 5 or 1). */
static int parse_ids(const char *s, int32_t *out, int64_t cap, int64_t *n, int32_t vocab, int32_t *last) {
    int64_t k = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v >= vocab || (*end && *end != ' ')) return -1;
        if (k < cap) out[k] = (int32_t)v;
        *last = (int32_t)v;
        k++;
        p = end;
    }
    *n = k;
    return 0;
}

static int json_ids(const cJSON *a, int32_t *out, int64_t cap, int64_t *n, int32_t vocab, int32_t *last) {
    if (!cJSON_IsArray(a)) return -2;
    int64_t k = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < vocab) ||
            v->valuedouble != (double)(int64_t)v->valuedouble)
            return -1;
        if (k < cap) out[k] = (int32_t)v->valuedouble;
        *last = (int32_t)v->valuedouble;
        k++;
    }
    *n = k;
    return 0;
}

/* Ids given by the user that already end with EOS: as HF's T5Tokenizer (_add_eos_if_not_present), no second EOS is
 * added; the EOS is dropped here so truncation and the append below treat it as every other example's. Counted. */
static void ids_given(prep_opts *o, int64_t *n, int32_t last) {
    if (o->append_eos && *n > 0 && last == o->eos) {
        (*n)--;
        o->eos_present++;
    }
}

/* Offset of the first "\u0000" escape inside a JSON string of the line, or -1: cJSON would end the C string there and
 * the rest of the text would be silently dropped. */
static int64_t nul_escape_at(const char *t) {
    bool in_str = false;
    for (size_t i = 0; t[i]; i++) {
        if (!in_str) {
            in_str = t[i] == '"';
            continue;
        }
        if (t[i] == '"') {
            in_str = false;
        } else if (t[i] == '\\' && t[i + 1]) {
            if (t[i + 1] == 'u' && !strncmp(t + i + 2, "0000", 4)) return (int64_t)i;
            i++;
        }
    }
    return -1;
}

static bool blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\v' && *s != '\f') return false;
    return true;
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

/* Text -> at most cap ids; *n gets the full length (so truncation is seen and counted). */
static void encode_text(prep_opts *o, const char *text, int32_t *out, int64_t cap, int64_t *n) {
    *n = data_spm_encode(o->spm, text, strlen(text), out, cap);
    int32_t unk = data_spm_unk_id(o->spm);
    for (int64_t k = 0; k < *n && k < cap; k++) o->unk += out[k] == unk;
}

/* One JSONL field: a string is text (a tokenizer is needed), an array holds ids. Fills why on a bad value. */
static void json_field(prep_opts *o, const cJSON *x, const char *name, int32_t *out, int64_t cap, int64_t *n, char *why, size_t wl) {
    if (cJSON_IsString(x)) {
        if (!o->spm) snprintf(why, wl, "field \"%s\" is text: give the tokenizer (--spm PATH.model or --model DIR), or token ids", name);
        else if (!utf8_ok(x->valuestring)) snprintf(why, wl, "field \"%s\" is not valid UTF-8", name);
        else encode_text(o, x->valuestring, out, cap, n);
    } else {
        int32_t last = -1;
        if (json_ids(x, out, cap, n, o->vocab, &last))
            snprintf(why, wl, "field \"%s\" must be %sa JSON array of integer ids in [0, %d)", name,
                     o->spm ? "a string or " : "", o->vocab);
        else
            ids_given(o, n, last);
    }
}

static const char *guess_format(const char *input) {
    size_t l = strlen(input);
    if ((l > 6 && !strcmp(input + l - 6, ".jsonl")) || (l > 5 && !strcmp(input + l - 5, ".json"))) return "jsonl";
    if (l > 4 && !strcmp(input + l - 4, ".tsv")) return "tsv";
    return "text";
}

/* A whole decimal integer in [lo, hi]: "12x", "", an overflow or a value out of range is refused with the flag. */
static bool parse_int_flag(const char *flag, const char *v, long long lo, long long hi, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "switchc prepare: %s '%s': expected an integer in [%lld, %lld]\n", flag, v, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

static bool parse_len(const char *flag, const char *v, int64_t *out) {
    return parse_int_flag(flag, v, 1, PREP_MAX_LEN, out);
}

static int run(prep_opts *o);

/* the flags that take a value: given last, they say so instead of reading as unknown */
static bool takes_value(const char *a) {
    static const char *const F[] = {"--input", "--output", "--format", "--input-field", "--target-field",
                                    "--vocab-size", "--spm", "--model", "--extra-ids", "--max-input-len",
                                    "--max-target-len", "--eos", "--on-error"};
    for (size_t i = 0; i < sizeof F / sizeof F[0]; i++)
        if (!strcmp(a, F[i])) return true;
    return false;
}

int data_prepare_main(int argc, char **argv) {
    prep_opts o = {.in_field = "input", .tgt_field = "target", .max_in = 512, .max_tgt = 128, .eos = 1, .extra_ids = 100, .append_eos = true};
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
        else if (!strcmp(a, "--vocab-size") && has) {
            int64_t v;
            if (!parse_int_flag(a, argv[++i], 1, INT32_MAX, &v)) return 2;
            o.vocab = (int32_t)v;
        } else if (!strcmp(a, "--spm") && has) o.spm_path = argv[++i];
        else if (!strcmp(a, "--model") && has) o.model_dir = argv[++i];
        else if (!strcmp(a, "--extra-ids") && has) {
            int64_t v;
            if (!parse_int_flag(a, argv[++i], 0, 100000, &v)) return 2;
            o.extra_ids = (int32_t)v;
        } else if (!strcmp(a, "--max-input-len") && has) {
            if (!parse_len(a, argv[++i], &o.max_in)) return 2;
        } else if (!strcmp(a, "--max-target-len") && has) {
            if (!parse_len(a, argv[++i], &o.max_tgt)) return 2;
        } else if (!strcmp(a, "--eos") && has) {
            int64_t v;
            if (!parse_int_flag(a, argv[++i], 0, INT32_MAX, &v)) return 2;
            o.eos = (int32_t)v;
            o.eos_given = true;
        } else if (!strcmp(a, "--no-eos")) o.append_eos = false;
        else if (!strcmp(a, "--text-only")) o.text_only = true;
        else if (!strcmp(a, "--on-error") && has) {
            const char *v = argv[++i];
            if (!strcmp(v, "skip")) o.skip_bad = true;
            else if (!strcmp(v, "stop")) o.skip_bad = false;
            else {
                fprintf(stderr, "switchc prepare: --on-error '%s': expected skip or stop\n", v);
                return 2;
            }
        } else if (takes_value(a)) {
            fprintf(stderr, "switchc prepare: flag %s needs a value (see --help)\n", a);
            return 2;
        } else {
            fprintf(stderr, "switchc prepare: unknown argument '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!o.input || !o.output) {
        fprintf(stderr, "switchc prepare: --input and --output are required (see --help)\n");
        return 2;
    }
    /* the paths before any work: the input a readable file, the output a writable name that is neither the input nor
     * the tokenizer (compared by inode: a link or another spelling of the same file too) */
    sx_status ps = sx_file_check_regular(o.input, "input");
    if (ps.ok) ps = sx_file_check_output(o.output, "--output", false);
    if (!ps.ok) {
        fprintf(stderr, "switchc prepare: %s\n", ps.msg);
        return 2;
    }
    const char *tok_path = o.spm_path ? o.spm_path : NULL;
    if (sx_file_same(o.input, o.output) || (tok_path && sx_file_same(tok_path, o.output))) {
        fprintf(stderr,
                "switchc prepare: --output %s is the same file as --%s %s: it would be overwritten; "
                "write the dataset elsewhere\n",
                o.output, sx_file_same(o.input, o.output) ? "input" : "spm",
                sx_file_same(o.input, o.output) ? o.input : tok_path);
        return 2;
    }
    if (o.spm_path && o.model_dir) {
        fprintf(stderr, "switchc prepare: give one tokenizer: --spm PATH.model or --model DIR, not both\n");
        return 2;
    }
    if (o.spm_path || o.model_dir) {
        sx_status s = data_tokenizer_open(o.spm_path ? o.spm_path : o.model_dir, o.extra_ids, &o.spm);
        if (!s.ok) {
            fprintf(stderr, "switchc prepare: %s\n", s.msg);
            return 1;
        }
        int32_t v = data_spm_vocab_size(o.spm);
        /* the dataset's vocabulary is the tokenizer's: span corruption counts its sentinels down from its end */
        if (o.vocab > 0 && o.vocab != v) {
            fprintf(stderr, "switchc prepare: --vocab-size %d disagrees with the tokenizer's %d (%d pieces + %d extra ids); leave it out\n", o.vocab, v,
                    data_spm_piece_count(o.spm), o.extra_ids);
            data_spm_free(o.spm);
            return 2;
        }
        o.vocab = v;
        if (!o.eos_given) o.eos = data_spm_eos_id(o.spm);
        if (o.append_eos && o.eos < 0) {
            fprintf(stderr, "switchc prepare: %s has no EOS piece: give --eos ID or --no-eos\n", o.spm_path ? o.spm_path : o.model_dir);
            data_spm_free(o.spm);
            return 2;
        }
    } else if (o.vocab <= 0) {
        fprintf(stderr, "switchc prepare: give a tokenizer (--spm PATH.model or --model DIR) for text, or a positive --vocab-size for token ids (see --help)\n");
        return 2;
    }
    int rc = run(&o);
    data_spm_free(o.spm);
    return rc;
}

/* One non-blank input line into input ids a (at most keep_in kept) and target ids b: *na, *nb their counts before
 * truncation; why gets the reason when the line is bad (left empty when it is good). */
static void parse_line(prep_opts *o, char *ln, bool jsonl, bool text, int32_t *a, int32_t *b, int64_t keep_in, int64_t keep_tgt,
                       int64_t *na, int64_t *nb, char *why, size_t why_cap) {
    int64_t esc;
    *na = *nb = 0;
    if (!utf8_ok(ln)) {
        snprintf(why, why_cap, "invalid UTF-8");
    } else if (jsonl && (esc = nul_escape_at(ln)) >= 0) {
        snprintf(why, why_cap, "a string holds \\u0000 (NUL) at column %lld: text after it would be lost",
                 (long long)esc + 1);
    } else if (jsonl) {
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithOpts(ln, &end, 1);
        if (!j || !cJSON_IsObject(j))
            snprintf(why, why_cap, "invalid JSON (or not an object, or text after it)");
        else {
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, o->in_field), *y = o->text_only ? NULL : cJSON_GetObjectItemCaseSensitive(j, o->tgt_field);
            if (!x) snprintf(why, why_cap, "missing field \"%s\"", o->in_field);
            else if (!o->text_only && !y) snprintf(why, why_cap, "missing field \"%s\"", o->tgt_field);
            else {
                json_field(o, x, o->in_field, a, keep_in, na, why, why_cap);
                if (!why[0] && y) json_field(o, y, o->tgt_field, b, keep_tgt, nb, why, why_cap);
            }
        }
        cJSON_Delete(j);
    } else if (text && o->spm) {
        encode_text(o, ln, a, keep_in, na); /* the whole line is the document */
    } else {
        char *tab = strchr(ln, '\t');
        if (!o->text_only && !tab) snprintf(why, why_cap, "expected two tab-separated columns");
        else if (!o->text_only && strchr(tab + 1, '\t')) snprintf(why, why_cap, "more than two tab-separated columns");
        else {
            if (tab) *tab = 0;
            int32_t la = -1, lb = -1;
            if (o->spm) {
                encode_text(o, ln, a, keep_in, na);
                if (!o->text_only) encode_text(o, tab + 1, b, keep_tgt, nb);
            } else if (parse_ids(ln, a, keep_in, na, o->vocab, &la) ||
                       (!o->text_only && parse_ids(tab + 1, b, keep_tgt, nb, o->vocab, &lb))) {
                snprintf(why, why_cap, "columns must be space-separated integer ids in [0, %d) (text needs --spm or --model)", o->vocab);
            } else {
                ids_given(o, na, la);
                if (!o->text_only) ids_given(o, nb, lb);
            }
        }
    }
}

/* What prepare wrote, on stdout (and the EOS note on stderr). */
static void print_summary(const prep_opts *o, int64_t good, int64_t tokens, int64_t truncated, int64_t bad) {
    if (o->eos_present)
        fprintf(stderr,
                "switchc prepare: warning: %s: %lld id fields already ended with EOS %d: "
                "no second EOS added (as HF's T5Tokenizer)\n",
                o->input, (long long)o->eos_present, o->eos);
    printf("switchc prepare: %s -> %s: %lld examples%s, %lld tokens, %lld truncated (--max-input-len %lld, --max-target-len %lld), "
           "%lld bad lines skipped\n",
           o->input, o->output, (long long)good, o->text_only ? " (inputs only: span corruption)" : "", (long long)tokens, (long long)truncated,
           (long long)o->max_in, (long long)o->max_tgt, (long long)bad);
    if (o->spm)
        printf("switchc prepare: tokenizer %s: vocabulary %d (%d pieces + %d extra ids), EOS %d, checksum %08x; %lld tokens are <unk>\n",
               o->spm_path ? o->spm_path : o->model_dir, o->vocab, data_spm_piece_count(o->spm), o->extra_ids, o->append_eos ? o->eos : -1,
               data_spm_checksum(o->spm), (long long)o->unk);
}

static int run(prep_opts *o) {
    if (o->append_eos && (o->eos < 0 || o->eos >= o->vocab)) {
        fprintf(stderr, "switchc prepare: --eos %d is outside the vocabulary [0, %d)\n", o->eos, o->vocab);
        return 2;
    }
    const char *fmt = o->format ? o->format : guess_format(o->input);
    bool jsonl = !strcmp(fmt, "jsonl"), tsv = !strcmp(fmt, "tsv"), text = !strcmp(fmt, "text");
    if (!jsonl && !tsv && !text) {
        fprintf(stderr, "switchc prepare: --format '%s': expected jsonl, tsv or text\n", fmt);
        return 2;
    }
    if (text) o->text_only = true;
    FILE *in;
    sx_status s = sx_file_fopen_read(o->input, "input", &in, NULL);
    if (!s.ok) {
        fprintf(stderr, "switchc prepare: %s\n", s.msg);
        return 1;
    }
    data_writer *w;
    s = data_writer_open(o->output, o->vocab, o->spm ? data_spm_checksum(o->spm) : 0, !o->text_only, &w);
    if (!s.ok) {
        fclose(in);
        fprintf(stderr, "switchc prepare: %s\n", s.msg);
        return 1;
    }
    /* HF's truncation: at most max tokens with the EOS, so the content keeps max - 1 */
    int64_t keep_in = o->max_in - o->append_eos, keep_tgt = o->max_tgt - o->append_eos;
    int64_t cap = (o->max_in > o->max_tgt ? o->max_in : o->max_tgt) + 1;
    int32_t *a = malloc(sizeof(int32_t) * (size_t)cap), *b = malloc(sizeof(int32_t) * (size_t)cap);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int64_t lineno = 0, good = 0, bad = 0, truncated = 0, tokens = 0, blank_lines = 0;
    int rc = 0;
    while ((len = getline(&line, &lcap, in)) >= 0) {
        lineno++;
        char *ln = line;
        /* a UTF-8 BOM, dropped as Python's utf-8-sig does (it would read as <unk>) */
        if (lineno == 1 && len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) {
            ln += 3;
            len -= 3;
        }
        while (len > 0 && (ln[len - 1] == '\n' || ln[len - 1] == '\r')) ln[--len] = 0;
        char why[256] = "";
        if ((size_t)len != strlen(ln)) {
            snprintf(why, sizeof why, "a NUL byte at column %zu (a binary file?)", strlen(ln) + 1);
        } else if (len == 0 || blank(ln)) {
            blank_lines++;
            continue;
        }
        int64_t na = 0, nb = 0;
        if (!why[0]) parse_line(o, ln, jsonl, text, a, b, keep_in, keep_tgt, &na, &nb, why, sizeof why);
        if (why[0]) {
            fprintf(stderr, "switchc prepare: %s:%lld: %s\n", o->input, (long long)lineno, why);
            bad++;
            if (!o->skip_bad) {
                rc = 1;
                break;
            }
            continue;
        }
        bool cut = na > keep_in || nb > keep_tgt;
        truncated += cut;
        if (na > keep_in) na = keep_in;
        if (nb > keep_tgt) nb = keep_tgt;
        if (o->append_eos) {
            a[na++] = o->eos;
            if (!o->text_only) b[nb++] = o->eos;
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
    bool read_error = ferror(in);
    free(line);
    free(a);
    free(b);
    fclose(in);
    if (read_error && !rc) {
        fprintf(stderr, "switchc prepare: %s: read error after line %lld\n", o->input, (long long)lineno);
        rc = 1;
    }
    if (rc) {
        data_writer_abort(w);
        if (bad) fprintf(stderr, "switchc prepare: stopped at the first bad line (--on-error skip skips and counts them); nothing written\n");
        return rc;
    }
    if (good == 0) {
        data_writer_abort(w);
        if (bad)
            fprintf(stderr, "switchc prepare: %s: no examples: all %lld non-blank lines were bad (nothing written)\n",
                    o->input, (long long)bad);
        else
            fprintf(stderr, "switchc prepare: %s: no examples: the input is empty%s (nothing written)\n", o->input,
                    blank_lines ? " or blank" : "");
        return 1;
    }
    s = data_writer_close(w);
    if (!s.ok) {
        fprintf(stderr, "switchc prepare: %s\n", s.msg);
        return 1;
    }
    print_summary(o, good, tokens, truncated, bad);
    return 0;
}
