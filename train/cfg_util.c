/* Strict JSON config helpers: typed member reads with ranges, near-miss suggestions, file parsing with positions. */
#include "train/cfg_util.h"

#include "autograd/sx_file.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int m = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < m) m = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + c < m) m = d[i - 1][j - 1] + c;
            d[i][j] = m;
        }
    return d[la][lb];
}

const char *cfg_closest(const char *word, const char *const *candidates, int n) {
    const char *best = NULL;
    int best_d = 99;
    for (int i = 0; i < n; i++) {
        int d = edit_distance(word, candidates[i]);
        /* a prefix or substring relation ("lr" in "learning_rate" is not, but "warmup" in "warmup_steps" is) */
        if (strstr(candidates[i], word) && strlen(word) >= 3) d = d < 2 ? d : 2;
        if (d < best_d) {
            best_d = d;
            best = candidates[i];
        }
    }
    int len = (int)strlen(word);
    int limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
    return best_d <= limit ? best : NULL;
}

sx_status cfg_get_int(const cJSON *item, const char *where, int64_t lo, int64_t hi, int64_t *out) {
    if (cJSON_IsString(item))
        return sx_errorf("%s.%s: expected an integer, got \"%.80s\"", where, item->string, item->valuestring);
    if (!cJSON_IsNumber(item)) return sx_errorf("%s.%s: expected an integer", where, item->string);
    double v = item->valuedouble;
    if (v != floor(v) || fabs(v) > 9007199254740992.0) return sx_errorf("%s.%s: expected an integer, got %g", where, item->string, v);
    if (v < (double)lo || v > (double)hi)
        return sx_errorf("%s.%s: %lld is outside [%lld, %lld]", where, item->string, (long long)v, (long long)lo, (long long)hi);
    *out = (int64_t)v;
    return sx_ok();
}

sx_status cfg_get_double(const cJSON *item, const char *where, double lo, double hi, double *out) {
    if (cJSON_IsString(item))
        return sx_errorf("%s.%s: expected a number, got \"%.80s\"", where, item->string, item->valuestring);
    if (!cJSON_IsNumber(item)) return sx_errorf("%s.%s: expected a number", where, item->string);
    double v = item->valuedouble;
    if (!isfinite(v) || v < lo || v > hi) return sx_errorf("%s.%s: %g is outside [%g, %g]", where, item->string, v, lo, hi);
    *out = v;
    return sx_ok();
}

sx_status cfg_get_bool(const cJSON *item, const char *where, bool *out) {
    if (cJSON_IsString(item))
        return sx_errorf("%s.%s: expected true or false, got \"%.80s\"", where, item->string, item->valuestring);
    if (!cJSON_IsBool(item)) return sx_errorf("%s.%s: expected true or false", where, item->string);
    *out = cJSON_IsTrue(item);
    return sx_ok();
}

sx_status cfg_get_string(const cJSON *item, const char *where, char *out, size_t cap) {
    if (!cJSON_IsString(item)) return sx_errorf("%s.%s: expected a string", where, item->string);
    if (strlen(item->valuestring) >= cap) return sx_errorf("%s.%s: string longer than %zu characters", where, item->string, cap - 1);
    strcpy(out, item->valuestring);
    return sx_ok();
}

sx_status cfg_read_file(const char *path, char **out, size_t *len) {
    return sx_file_read_all(path, "JSON file", CFG_MAX_FILE_BYTES, out, len);
}

/* 1-based line and column of byte offset 'at' in text */
static void line_col(const char *text, size_t at, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else
            (*col)++;
    }
}

/* Offset of the first "\u0000" escape inside a JSON string, or -1: cJSON decodes it into a C string that then ends
 * there, silently dropping the rest of the value. */
static int64_t nul_escape_at(const char *t, size_t n) {
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        if (!in_str) {
            in_str = t[i] == '"';
            continue;
        }
        if (t[i] == '"') {
            in_str = false;
        } else if (t[i] == '\\' && i + 1 < n) {
            if (t[i + 1] == 'u' && i + 5 < n && !strncmp(t + i + 2, "0000", 4)) return (int64_t)i;
            i++; /* the escaped character, so "\\u0000" is a backslash and text */
        }
    }
    return -1;
}

sx_status cfg_parse_text(const char *text, size_t len, const char *label, cJSON **out) {
    *out = NULL;
    size_t skip = 0;
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) skip = 3; /* a UTF-8 BOM, as Python's utf-8-sig reads it */
    const char *nul = memchr(text, 0, len);
    int line, col;
    if (nul) {
        line_col(text, (size_t)(nul - text), &line, &col);
        return sx_errorf("%s:%d:%d: a NUL byte in the JSON text (a binary or truncated file?)", label, line, col);
    }
    int64_t esc = nul_escape_at(text + skip, len - skip);
    if (esc >= 0) {
        line_col(text, (size_t)esc + skip, &line, &col);
        return sx_errorf("%s:%d:%d: a string holds \\u0000 (NUL), which would cut it short", label, line, col);
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text + skip, len - skip, &end, 0);
    if (!j) {
        const char *at = end ? end : cJSON_GetErrorPtr();
        size_t off = at && at >= text && at <= text + len ? (size_t)(at - text) : 0;
        line_col(text, off, &line, &col);
        return sx_errorf("%s:%d:%d: invalid JSON", label, line, col);
    }
    /* one value and nothing after it but whitespace: a second object or junk is an error, not ignored */
    size_t off = end ? (size_t)(end - text) : len;
    while (off < len && (text[off] == ' ' || text[off] == '\t' || text[off] == '\n' || text[off] == '\r')) off++;
    if (off < len) {
        cJSON_Delete(j);
        line_col(text, off, &line, &col);
        return sx_errorf("%s:%d:%d: unexpected text after the JSON value (one value per file)", label, line, col);
    }
    *out = j;
    return sx_ok();
}

sx_status cfg_parse_file(const char *path, cJSON **out) {
    char *text;
    size_t len;
    SX_TRY(cfg_read_file(path, &text, &len));
    sx_status s = cfg_parse_text(text, len, path, out);
    free(text);
    return s;
}

bool cfg_looks_like_hf_model_config(const cJSON *obj) {
    static const char *const HF[] = {"architectures", "model_type", "_name_or_path", "transformers_version",
                                     "d_model", "vocab_size", "num_layers", "num_experts", "d_ff", "num_heads"};
    if (!cJSON_IsObject(obj)) return false;
    for (size_t i = 0; i < sizeof HF / sizeof HF[0]; i++)
        if (cJSON_GetObjectItemCaseSensitive(obj, HF[i])) return true;
    return false;
}

sx_status cfg_parse_set_value(const char *assignment, const char *val, cJSON **out) {
    *out = NULL;
    /* a value that starts like JSON structure must be JSON; otherwise a bare word is a string ("2abc" too, which the
     * typed read then refuses: trailing junk is never cut off a number) */
    bool structured = val[0] == '"' || val[0] == '{' || val[0] == '[';
    char label[160];
    snprintf(label, sizeof label, "--set '%.120s'", assignment);
    cJSON *v;
    sx_status s = cfg_parse_text(val, strlen(val), label, &v);
    if (!s.ok && structured) return s;
    if (!s.ok) v = cJSON_CreateString(val);
    *out = v;
    return sx_ok();
}

int cfg_split_list(const char *list, char *buf, size_t cap, char **items, int max) {
    snprintf(buf, cap, "%s", list);
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        char *end = tok + strlen(tok);
        while (end > tok && end[-1] == ' ') *--end = 0;
        if (*tok) items[n++] = tok;
    }
    return n;
}
