/* Memory, capacity and data checks of a run before it allocates or trains (see run_checks.h). Sizes are computed in
 * double, so a config whose products overflow 64 bits is measured, not wrapped. */
#include "train/run_checks.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "data/batches.h"

double run_checks_phys_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return 1e18; /* unknown: nothing is refused for memory */
    return (double)pages * (double)page;
}

static double gb(double bytes) { return bytes / (1024.0 * 1024.0 * 1024.0); }

/* Parameter counts of a config by part, in double (SPEC 1.2's layout: model.c's table builder in closed form). */
typedef struct {
    double embed, attn, dense_ffn, experts, other;
} param_parts;

static param_parts count_params(const model_config *c, int ep_size) {
    param_parts p = {0};
    double V = c->vocab_size, D = c->d_model, HK = (double)c->num_heads * c->d_kv, F = c->d_ff;
    double E = (double)c->num_experts / (ep_size > 0 ? ep_size : 1), mats = c->gated ? 3 : 2;
    p.embed = V * D * (c->tie_word_embeddings ? 1 : 2);
    for (int s = 0; s < 2; s++) {
        int L = s ? c->num_decoder_layers : c->num_layers, step = s ? c->decoder_sparse_step : c->encoder_sparse_step;
        int sparse = model_config_sparse_count(step, L);
        p.attn += (double)L * (s ? 8 : 4) * D * HK;
        p.dense_ffn += (double)(L - sparse) * mats * D * F;
        p.experts += (double)sparse * E * mats * D * F;
        p.other += (double)sparse * (double)c->num_experts * (D + 1) + (double)L * 3 * D + D +
                   (double)c->relative_attention_num_buckets * c->num_heads;
    }
    return p;
}

sx_status run_checks_model_memory(const model_config *c, int ep_size, bool training) {
    param_parts p = count_params(c, ep_size);
    double n = p.embed + p.attn + p.dense_ffn + p.experts + p.other, copies = training ? 4 : 1;
    double bytes = n * 4 * copies, phys = run_checks_phys_bytes();
    if (bytes <= phys) return sx_ok();
    /* name the keys of the largest part */
    char why[256];
    if (p.embed >= p.experts && p.embed >= p.attn && p.embed >= p.dense_ffn)
        snprintf(why, sizeof why, "the embedding alone is vocab_size %d x d_model %d = %.3g parameters", c->vocab_size,
                 c->d_model, p.embed);
    else if (p.experts >= p.attn && p.experts >= p.dense_ffn)
        snprintf(why, sizeof why,
                 "the experts alone are num_experts %d x d_ff %d x d_model %d per sparse layer = %.3g parameters",
                 c->num_experts, c->d_ff, c->d_model, p.experts);
    else if (p.attn >= p.dense_ffn)
        snprintf(why, sizeof why,
                 "attention alone is num_layers %d + num_decoder_layers %d of d_model %d x num_heads %d x d_kv %d "
                 "= %.3g parameters",
                 c->num_layers, c->num_decoder_layers, c->d_model, c->num_heads, c->d_kv, p.attn);
    else
        snprintf(why, sizeof why, "the dense FFNs alone are d_ff %d x d_model %d per layer = %.3g parameters", c->d_ff,
                 c->d_model, p.dense_ffn);
    return sx_errorf("model: %.4g parameters need %.1f GB (%s) but this machine has %.1f GB of memory: %s "
                     "(check model.vocab_size, d_model, d_ff, num_experts, num_layers)",
                     n, gb(bytes),
                     training ? "4 copies for training: weights, gradients, 2 optimizer moments" : "float32 weights",
                     gb(phys), why);
}

int run_checks_target_bound(const run_config *r) {
    return strcmp(r->task, "dataset") ? r->task_max_len + 1 : r->max_target_len;
}

int run_checks_eval_gen_len(const run_config *r) {
    int64_t b = (int64_t)run_checks_target_bound(r) + 1;
    return r->gen_max_len < b ? r->gen_max_len : (int)b;
}

/* Factor mode: capacity = max(round(cf x G / E), min_expert_capacity) for a group of G tokens (moe/capacity.c). With
 * min_expert_capacity 0, a factor that rounds to 0 slots even for the largest group of the run drops every token: the
 * same mistake as expert_capacity 0, which HF mode refuses. */
static sx_status capacity_rule(const model_config *c, double cf, const char *cf_key, int64_t rows, const char *rows_key,
                               int64_t len) {
    bool any_sparse = c->encoder_sparse_step > 0 || c->decoder_sparse_step > 0;
    if (!any_sparse || c->capacity_mode != MOE_CAPACITY_FACTOR || cf <= 0 || c->min_expert_capacity >= 1 ||
        c->num_experts < 1)
        return sx_ok();
    int64_t G = c->capacity_group_size > 0 ? c->capacity_group_size : rows * len;
    double slots = cf * (double)G / c->num_experts;
    if (moe_capacity_from_factor(cf, G, c->num_experts, 0) >= 1) return sx_ok();
    char group[160];
    if (c->capacity_group_size > 0)
        snprintf(group, sizeof group, "capacity_group_size %d tokens", c->capacity_group_size);
    else
        snprintf(group, sizeof group, "at most %lld tokens per group (%s %lld x %lld tokens)", (long long)(rows * len),
                 rows_key, (long long)rows, (long long)len);
    return sx_errorf("model.switchc.%s %g x %s / num_experts %d = %.3g rounds to 0 slots per expert and "
                     "min_expert_capacity is 0: every token would be dropped "
                     "(raise the factor or min_expert_capacity; %s 0 is dropless)",
                     cf_key, cf, group, c->num_experts, slots, cf_key);
}

sx_status run_checks_validate(const run_config *r) {
    const model_config *c = &r->model;
    bool builtin = strcmp(r->task, "dataset") != 0;
    int64_t mb = r->micro_batch_size ? r->micro_batch_size : r->batch_size;
    int64_t S = builtin ? r->task_max_len + 1 : r->max_input_len, T = run_checks_target_bound(r), L = S > T ? S : T;
    SX_TRY(capacity_rule(c, c->train_capacity_factor, "train_capacity_factor", mb,
                         r->micro_batch_size ? "train.micro_batch_size" : "train.batch_size", L));
    SX_TRY(capacity_rule(c, c->eval_capacity_factor, "eval_capacity_factor", r->eval_batch_size, "eval.batch_size", L));
    /* the largest activations: the logits of a batch (with their gradient in training), and the KV cache of
     * evaluation's generation; beside the parameters */
    double phys = run_checks_phys_bytes(), V = c->vocab_size;
    double HK = (double)c->num_heads * c->d_kv, Ld = c->num_decoder_layers;
    double train_b = (double)mb * (double)T * V * 4 * 3;
    if (train_b > phys)
        return sx_errorf("%s %lld x target length %lld x model.vocab_size %d: the logits of one training batch "
                         "need %.1f GB but this machine has %.1f GB (use train.micro_batch_size, or a shorter %s)",
                         r->micro_batch_size ? "train.micro_batch_size" : "train.batch_size", (long long)mb,
                         (long long)T, c->vocab_size, gb(train_b), gb(phys),
                         builtin ? "data.task_max_len" : "data.max_target_len");
    double G = run_checks_eval_gen_len(r);
    double eval_b = (double)r->eval_batch_size * ((double)T * V * 4 + 2 * Ld * HK * (G + S) * 4);
    if (eval_b > phys)
        return sx_errorf("eval.batch_size %d: the logits and KV cache of one evaluation batch (target length %lld, "
                         "model.vocab_size %d, eval.max_gen_len %d) need %.1f GB but this machine has %.1f GB "
                         "(lower eval.batch_size)",
                         r->eval_batch_size, (long long)T, c->vocab_size, r->gen_max_len, gb(eval_b), gb(phys));
    /* the generated ids of an evaluation batch are indexed with int */
    if ((double)r->eval_batch_size * G > INT_MAX)
        return sx_errorf("eval.batch_size %d x %g generated tokens exceeds %d ids in one batch (lower eval.batch_size)",
                         r->eval_batch_size, G, INT_MAX);
    return sx_ok();
}

sx_status run_checks_generate(const model_config *c, int64_t B, int64_t S, int64_t max_len, int64_t beams,
                              const char *flags) {
    if (max_len < 1 || max_len > RUN_CHECKS_MAX_GEN_LEN)
        return sx_errorf("%s: a maximum length of %lld tokens is outside [1, %d]", flags, (long long)max_len,
                         RUN_CHECKS_MAX_GEN_LEN);
    int64_t beam_max = c->vocab_size < RUN_CHECKS_MAX_BEAMS ? c->vocab_size : RUN_CHECKS_MAX_BEAMS;
    if (beams < 1 || beams > beam_max)
        return sx_errorf("%s: %lld beams is outside [1, %lld] (at most %d, and no more than the model's vocab_size %d)",
                         flags, (long long)beams, (long long)beam_max, RUN_CHECKS_MAX_BEAMS, c->vocab_size);
    param_parts p = count_params(c, 1);
    double params = (p.embed + p.attn + p.dense_ffn + p.experts + p.other) * 4;
    double R = (double)B * (double)beams, HK = (double)c->num_heads * c->d_kv;
    double cache = 4 * 2 * (double)c->num_decoder_layers * HK * R * ((double)max_len + (double)S) +
                   R * (double)c->vocab_size * 4 * 2 + R * (double)max_len * 4 * 4;
    double phys = run_checks_phys_bytes();
    if (params + cache > phys)
        return sx_errorf("%s: %lld beams x %lld tokens need a %.1f GB KV cache beside %.1f GB of weights, "
                         "more than this machine's %.1f GB (fewer beams or a shorter maximum length)",
                         flags, (long long)beams, (long long)max_len, gb(cache), gb(params), gb(phys));
    return sx_ok();
}

sx_status run_checks_preflight(const run_config *r, bool need_eval) {
    if (!strcmp(r->task, "dataset") && need_eval && !r->eval_data[0])
        return sx_errorf("data.eval: task 'dataset' needs an evaluation dataset: the run evaluates on it at the end "
                         "(and every train.eval_every steps); give data.eval (it may be the training set)");
    for (int k = 0; k < (need_eval ? 2 : 1); k++) { /* the training data first: its errors read first, as at step 1 */
        batch_source *src;
        SX_TRY(run_config_batches_open(r, k == 1, &src));
        batch_source_close(src);
    }
    return sx_ok();
}
