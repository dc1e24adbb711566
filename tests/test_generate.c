/* Generation: KV-cached greedy decoding must give the same tokens as recomputing the whole prefix with the full
 * forward at every step; generation is deterministic; beam search (length_penalty 0) finds a finished sequence at
 * least as likely as greedy's. Parity with HF's beam search and greedy: test_beam_parity.c. */
#include <criterion/criterion.h>
#include <string.h>

#include "train/model/generate.h"
#include "tests/tutil.h"

static void tiny(model *m, uint64_t seed, bool gated) {
    model_config c = tu_tiny_config((tu_dims){.V = 11, .D = 16, .K = 4, .F = 24, .H = 4, .E = 3});
    c.num_decoder_layers = 3;
    c.expert_capacity = 64; /* no drops: full-prefix and incremental decoding then route identically (SPEC 3.11) */
    c.gated = gated;
    c.tie_word_embeddings = !gated;
    cr_assert(model_init(m, &c).ok);
    model_init_weights(m, seed);
}

static const int32_t IDS[3 * 6] = {5, 7, 3, 9, 1, 0, 4, 4, 10, 1, 0, 0, 2, 3, 4, 5, 6, 1};
static const int32_t MASK[3 * 6] = {1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1};

/* Greedy by recomputing: the full forward over the prefix [start, y_0 .. y_{t-1}] for every t. */
static void greedy_recompute(model *m, int64_t B, int L, int32_t *out) {
    ag_arena act;
    ag_ctx ctx;
    ag_ctx_init_eval(&ctx, &act, "act", 1 << 20);
    int32_t dec[3 * 16];
    for (int64_t b = 0; b < B; b++) dec[b * L] = m->cfg.decoder_start_token_id;
    for (int t = 0; t < L; t++) {
        int32_t prefix[3 * 16];
        for (int64_t b = 0; b < B; b++) memcpy(prefix + b * (t + 1), dec + b * L, sizeof(int32_t) * (size_t)(t + 1));
        model_batch bt = {B, 6, t + 1, IDS, MASK, NULL, prefix};
        model_output o;
        model_forward(m, &ctx, &bt, (model_rng){0, 0, false}, &o);
        int64_t V = m->cfg.vocab_size;
        for (int64_t b = 0; b < B; b++) {
            const float *row = (const float *)o.logits->data + (b * (t + 1) + t) * V;
            int32_t best = 0;
            for (int64_t v = 1; v < V; v++)
                if (row[v] > row[best]) best = (int32_t)v;
            out[b * L + t] = best;
            if (t + 1 < L) dec[b * L + t + 1] = best;
        }
        ag_ctx_reset(&ctx);
    }
    ag_ctx_free_eval(&ctx);
}

static void check_cache_matches(bool gated) {
    model m;
    tiny(&m, gated ? 21 : 11, gated);
    const int L = 12;
    int32_t ref[3 * 12], out[3 * 12];
    int lens[3];
    greedy_recompute(&m, 3, L, ref);
    ag_arena act;
    ag_ctx ctx;
    ag_ctx_init_eval(&ctx, &act, "act", 1 << 20);
    gen_config g = {L, 1, 1.0};
    generate(&m, &ctx, IDS, MASK, 3, 6, &g, out, lens);
    for (int b = 0; b < 3; b++)
        for (int t = 0; t < lens[b]; t++)
            cr_expect_eq(out[b * L + t], ref[b * L + t], "row %d position %d: cached %d vs recomputed %d", b, t, out[b * L + t], ref[b * L + t]);
    /* one beam is greedy */
    int32_t out1[3 * 12];
    int lens1[3];
    gen_config g1 = {L, 1, 1.0};
    generate(&m, &ctx, IDS, MASK, 3, 6, &g1, out1, lens1);
    cr_expect(!memcmp(out, out1, sizeof out), "generation is not deterministic");
    ag_ctx_free_eval(&ctx);
    model_free(&m);
}

Test(generate, kv_cache_equals_recompute) { check_cache_matches(false); }
Test(generate, kv_cache_equals_recompute_gated_untied) { check_cache_matches(true); }

Test(generate, beam_search_scores_at_least_greedy) {
    model m;
    tiny(&m, 5, false);
    ag_arena act;
    ag_ctx ctx;
    ag_ctx_init_eval(&ctx, &act, "act", 1 << 20);
    const int L = 10;
    int32_t gout[3 * 10], bout[3 * 10];
    int glens[3], blens[3];
    gen_config g = {L, 1, 0.0}, bg = {L, 4, 0.0};
    generate(&m, &ctx, IDS, MASK, 3, 6, &g, gout, glens);
    generate(&m, &ctx, IDS, MASK, 3, 6, &bg, bout, blens);
    /* with length_penalty 0 the beam score is the sequence log-probability: score both with the full forward */
    for (int b = 0; b < 3; b++) {
        double lp[2];
        const int32_t *seqs[2] = {gout + b * L, bout + b * L};
        int ls[2] = {glens[b], blens[b]};
        for (int k = 0; k < 2; k++) {
            int32_t labels[10];
            for (int t = 0; t < L; t++) labels[t] = t < ls[k] ? seqs[k][t] : -100;
            model_batch bt = {1, 6, L, IDS + b * 6, MASK + b * 6, labels, NULL};
            model_output o;
            ctx.grad_enabled = false;
            model_forward(&m, &ctx, &bt, (model_rng){0, 0, false}, &o);
            lp[k] = -((float *)o.ce->data)[0] * ls[k]; /* CE is the mean over the ls[k] tokens */
            ag_ctx_reset(&ctx);
        }
        printf("row %d: greedy log p %.5f (len %d, eos %s), beam-4 log p %.5f (len %d)\n", b, lp[0], glens[b],
               gout[b * L + glens[b] - 1] == 1 ? "yes" : "no", lp[1], blens[b]);
        bool greedy_finished = gout[b * L + glens[b] - 1] == m.cfg.eos_token_id;
        /* 1e-4: the two scores come from different float reductions of the same probabilities */
        if (greedy_finished) cr_expect(lp[1] >= lp[0] - 1e-4, "row %d: beam search found a worse finished sequence than greedy", b);
    }
    ag_ctx_free_eval(&ctx);
    model_free(&m);
}
