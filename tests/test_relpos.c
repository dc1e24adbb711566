/* Relative position buckets against Hugging Face's own (transformers 4.57.6, torch on the CPU): every entry of the
 * table scripts/make_bucket_table.py wrote (num_buckets 4..128, max_distance spread up to 1024 with the exact
 * boundaries, |relative position| <= 4096, both directions; ~100M buckets) must be identical. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "tests/h5fixture.h"
#include "train/model/relpos.h"

#define FIXTURE SX_SOURCE_DIR "/tests/fixtures/buckets/hf_buckets.h5"

/* f[n] for n in 0..nmax, one direction's buckets, from a record's thresholds (the layout: make_bucket_table.py) */
static void rebuild(const int32_t *th, int nbe, int nmax, int *f) {
    int me = nbe / 2, k = me;
    for (int n = 0; n <= nmax; n++) {
        while (k + 1 < nbe && n >= th[k - me]) k++;
        f[n] = n < me ? n : k;
    }
}

Test(relpos, every_bucket_of_hf_table, .timeout = 600) {
    hid_t f = h5f_open(FIXTURE, "scripts/make_bucket_table.py");
    hid_t a = H5Aopen(f, "max_relative_position", H5P_DEFAULT);
    int nmax = 0;
    cr_assert(a >= 0 && H5Aread(a, H5T_NATIVE_INT, &nmax) >= 0 && nmax > 0);
    H5Aclose(a);
    int nd;
    hsize_t dims[8];
    int32_t *rec = h5f_ints(f, "records", &nd, dims);
    cr_assert(nd == 2 && dims[1] == 4, "records must be [R, 4]");
    int64_t R = (int64_t)dims[0];
    int32_t *th = h5f_ints(f, "thresholds", NULL, NULL);
    H5Fclose(f);

    int *fn = malloc(sizeof(int) * (size_t)(nmax + 1));
    int64_t entries = 0, wrong = 0, pairs_wrong = 0;
    for (int64_t i = 0; i < R; i++) {
        int nb = rec[4 * i], md = rec[4 * i + 1], bidir = rec[4 * i + 2];
        const int32_t *t = th + rec[4 * i + 3];
        int nbe = bidir ? nb / 2 : nb;
        rebuild(t, nbe, nmax, fn);
        int64_t bad = 0;
        for (int64_t r = -nmax; r <= nmax; r++) {
            int64_t n = bidir ? (r < 0 ? -r : r) : (r > 0 ? 0 : -r);
            int want = bidir && r > 0 ? fn[n] + nbe : fn[n], got = model_relative_bucket(r, bidir, nb, md);
            if (got != want && bad++ < 3 && wrong < 20)
                printf("  num_buckets %d max_distance %d %s relative position %lld: HF %d, switchc %d\n", nb, md,
                       bidir ? "bidirectional" : "unidirectional", (long long)r, want, got);
        }
        entries += 2 * nmax + 1;
        wrong += bad;
        pairs_wrong += bad > 0;
    }
    printf("relpos: %lld records, %lld buckets compared with HF's, %lld differ (in %lld records)\n", (long long)R,
           (long long)entries, (long long)wrong, (long long)pairs_wrong);
    cr_expect(R > 10000 && entries > 50000000, "the table looks truncated: %lld records", (long long)R);
    cr_expect_eq(wrong, 0, "%lld of %lld buckets differ from HF's", (long long)wrong, (long long)entries);
    free(fn);
    free(rec);
    free(th);
}

/* The example of the exact boundary: log(30/18) / log(50/18) is 1/2 in real arithmetic; torch rounds up. */
Test(relpos, exact_boundary_follows_torch) {
    cr_expect_eq(model_relative_bucket(-30, false, 36, 50), 27);
    cr_expect_eq(model_relative_bucket(-29, false, 36, 50), 26);
}
