/* Strict JSON config helpers: typed member reads with ranges, near-miss suggestions, file parsing with positions. */
#include "train/cfg_util.h"

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
    if (!cJSON_IsNumber(item)) return sx_errorf("%s.%s: expected an integer", where, item->string);
    double v = item->valuedouble;
    if (v != floor(v) || fabs(v) > 9007199254740992.0) return sx_errorf("%s.%s: expected an integer, got %g", where, item->string, v);
    if (v < (double)lo || v > (double)hi)
        return sx_errorf("%s.%s: %lld is outside [%lld, %lld]", where, item->string, (long long)v, (long long)lo, (long long)hi);
    *out = (int64_t)v;
    return sx_ok();
}

sx_status cfg_get_double(const cJSON *item, const char *where, double lo, double hi, double *out) {
    if (!cJSON_IsNumber(item)) return sx_errorf("%s.%s: expected a number", where, item->string);
    double v = item->valuedouble;
    if (!isfinite(v) || v < lo || v > hi) return sx_errorf("%s.%s: %g is outside [%g, %g]", where, item->string, v, lo, hi);
    *out = v;
    return sx_ok();
}

sx_status cfg_get_bool(const cJSON *item, const char *where, bool *out) {
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
    FILE *f = fopen(path, "rb");
    if (!f) return sx_errorf("%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return sx_errorf("%s: cannot seek (not a regular file?)", path);
    }
    long n = ftell(f);
    rewind(f);
    if (n < 0) {
        fclose(f);
        return sx_errorf("%s: cannot tell its size", path);
    }
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return sx_errorf("%s: out of memory reading %ld bytes", path, n);
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        free(buf);
        return sx_errorf("%s: short read (%zu of %ld bytes)", path, got, n);
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = (size_t)n;
    return sx_ok();
}

sx_status cfg_parse_file(const char *path, cJSON **out) {
    char *text;
    size_t len;
    SX_TRY(cfg_read_file(path, &text, &len));
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j) {
        const char *at = end ? end : cJSON_GetErrorPtr();
        int line = 1, col = 1;
        for (const char *p = text; at && p < at && *p; p++) {
            if (*p == '\n') {
                line++;
                col = 1;
            } else
                col++;
        }
        free(text);
        return sx_errorf("%s:%d:%d: invalid JSON", path, line, col);
    }
    free(text);
    *out = j;
    return sx_ok();
}
