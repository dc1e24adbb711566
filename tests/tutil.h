/* Helpers shared by the Criterion suites (tests/tutil.c, linked into every suite as sx_tutil): scratch folders and
 * files under the build tree, tiny model configs, HF fixture models, Switch-layer test tensors. Failures are
 * Criterion assertions naming the path. */
#ifndef SX_TEST_TUTIL_H
#define SX_TEST_TUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/ag.h"
#include "train/model/model.h"
#include "train/trainer.h"

/* ---- files ----------------------------------------------------------------------------------------------------- */

/* The whole file, NUL-terminated (so text can be read as a string); *n (if n) its length. Caller frees. */
char *tu_slurp(const char *path, size_t *n);
/* Writes n bytes to path (created or truncated). */
void tu_spill(const char *path, const void *bytes, size_t n);
/* <build>/<suite>_tmp/<name> into out: created when missing, its files removed. */
void tu_fresh_dir(const char *suite, const char *name, char *out, size_t cap);
/* <build>/<suite>_<tag>_<pid> into out, removed with everything in it: a run directory the code under test creates. */
void tu_gone_dir(const char *suite, const char *tag, char *out, size_t cap);
/* Runs cmd through the shell with stderr merged into stdout, captured into out (cap bytes, NUL-terminated);
 * returns the exit status (-1 when it did not exit). */
int tu_run_capture(const char *cmd, char *out, size_t cap);

/* ---- models ---------------------------------------------------------------------------------------------------- */

/* The widths of a tiny model: vocab, d_model, d_kv, d_ff, heads, experts. */
typedef struct {
    int V, D, K, F, H, E;
} tu_dims;
/* model_config_defaults with these widths, 2 encoder and 2 decoder blocks whose second is a Switch layer (HF's sparse
 * step 2), no router jitter and no dropout. */
model_config tu_tiny_config(tu_dims d);
/* Every non-default branch of the model at once, over c: a gated gelu_tanh FFN, untied embeddings, a router bias,
 * top-2 routing, per-layer router losses, every encoder block sparse (step 1) and HF's step-1 loss zeroing off. */
void tu_model_variants(model_config *c);
/* model_config_from_json of a JSON text (which must parse) over model_config_defaults, errors named "test.json". */
sx_status tu_model_config_json(const char *json, model_config *c);
/* An HF folder (config.json + weights) as the CLI reads it; inference: model_init_inference (no gradients). */
void tu_load_hf(model *m, const char *dir, bool inference);
/* trainer_run of c (quiet) into out_dir, its per-step losses into loss (NULL: none); asserts that it succeeds. */
trainer_result tu_train(run_config *c, const char *out_dir, double *loss);
/* The same run into out_dir stopped after stop_after steps, then resumed ("auto") to c->steps: the losses of both
 * parts into loss, the steps done by the first part checked. */
trainer_result tu_train_resumed(run_config *c, const char *out_dir, int64_t stop_after, double *loss);
/* data/position (epoch, example, fixed size) of a checkpoint. */
void tu_ckpt_position(const char *path, int64_t pos[3]);

/* ---- one Switch layer ------------------------------------------------------------------------------------------- */

/* A Switch layer's test tensors: x [N, D], wr [E, D], wi [E, F, D], wo [E, D, F], zeroed, in the arena a; ctx over
 * its own activation arena act (act_bytes to start). */
typedef struct {
    ag_arena a, act;
    ag_ctx ctx;
    ag_tensor *x, *wr, *wi, *wo;
} tu_layer;
void tu_layer_init(tu_layer *l, int64_t N, int64_t D, int64_t F, int64_t E, size_t act_bytes);
/* x, wr, wi, wo (k = 0..3) from N(0, 1): element i of tensor k is ag_rng_normal(ag_rng_make(seed, k, 0), i). */
void tu_layer_fill_normal(tu_layer *l, uint64_t seed);
void tu_layer_free(tu_layer *l);

#endif
