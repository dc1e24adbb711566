/* HF's relative position buckets with torch's CPU log (train/model/relpos.h). */
#include "train/model/relpos.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/model/relpos_logf_table.h"

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static bool in_table(const uint32_t *t, size_t n, uint32_t key) {
    return n && key >= t[0] && key <= t[n - 1] && bsearch(&key, t, n, sizeof *t, cmp_u32);
}

float model_logf_torch(float x) {
    float y = (float)log((double)x);
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    size_t n_up = sizeof RELPOS_LOGF_UP / sizeof *RELPOS_LOGF_UP, n_down = sizeof RELPOS_LOGF_DOWN / sizeof *RELPOS_LOGF_DOWN;
    if (in_table(RELPOS_LOGF_UP, n_up, bits)) return nextafterf(y, INFINITY);
    if (in_table(RELPOS_LOGF_DOWN, n_down, bits)) return nextafterf(y, -INFINITY);
    return y;
}

int model_relative_bucket(int64_t rel, bool bidirectional, int num_buckets, int max_distance) {
    int bucket = 0, nb = num_buckets;
    int64_t n;
    if (bidirectional) {
        nb /= 2;
        if (rel > 0) bucket += nb;
        n = rel < 0 ? -rel : rel;
    } else {
        n = rel < 0 ? -rel : 0;
    }
    int max_exact = nb / 2;
    if (n < max_exact) return bucket + (int)n;
    /* one float32 rounding per torch op, in HF's order: n / me, log, / (float)log(max_distance / me), * (nb - me),
     * truncation toward zero */
    float x = (float)n / (float)max_exact;
    float q = model_logf_torch(x) / (float)log((double)max_distance / max_exact);
    float v = q * (float)(nb - max_exact);
    int64_t large = max_exact + (int64_t)v;
    if (large > nb - 1) large = nb - 1;
    return bucket + (int)large;
}
