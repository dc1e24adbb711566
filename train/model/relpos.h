/* T5's relative position buckets (SPEC.md 3.5) exactly as Hugging Face computes them with torch on the CPU. HF's
 * `_relative_position_bucket` is float32 tensor arithmetic:
 *     me + ((log(n.float() / me) / math.log(max_distance / me)) * (num_buckets - me)).to(long)
 * The division, the Python-double scalar cast to float32, the multiplication and the truncation are IEEE operations
 * that C reproduces as written; the log is not a libm logf. torch.log on a float32 CPU tensor runs at::vml::vlog, and
 * the x86-64 wheels (built with MKL) make that MKL's vmsLn (VML_HA), which is not correctly rounded: in [1, 2) about
 * 8% of its results differ from the nearest float (up to 0.97 ulp), so on exact boundaries it decides the bucket.
 * One of them: num_buckets 36, max_distance 50, unidirectional distance 30, where log(30/18)/log(50/18) is 1/2 in
 * real arithmetic: glibc's logf (and SLEEF's, which torch builds without MKL use) gives bucket 26, torch 27.
 * Kept self-contained (libm only), so scripts/make_bucket_table.py compiles this file alone to check it. */
#ifndef SX_TRAIN_RELPOS_H
#define SX_TRAIN_RELPOS_H

#include <stdbool.h>
#include <stdint.h>

/* The bucket of relative position (key - query) in [0, num_buckets). Identical to HF's for every num_buckets up to
 * 129, any max_distance above num_buckets / 2, and |relative_position| <= 4096 (tests/test_relpos.c checks a table
 * of HF's buckets); beyond, the log is the correctly rounded one, which can differ from torch's on rare boundaries. */
int model_relative_bucket(int64_t relative_position, bool bidirectional, int num_buckets, int max_distance);

/* torch.log of a float32 on the CPU (MKL vmsLn, VML_HA, as the x86-64 wheels run it on this project's machines) for
 * x = float(n) / me with 1 <= me <= 64 and me <= n <= 4096: (float)log((double)x), moved by one ulp where torch's
 * differs (the table train/model/relpos_logf_table.h, written by scripts/make_bucket_table.py from torch itself).
 * Elsewhere: (float)log((double)x). */
float model_logf_torch(float x);

#endif
