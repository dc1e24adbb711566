/* Greedy and beam-search decoding on the KV cache. Beam search keeps num_beams hypotheses per input, extends each
 * by every token, keeps the best 2*num_beams candidates, retires those ending in EOS with a length-normalised score,
 * and stops an input once num_beams hypotheses are finished and no running beam can beat the worst of them. */
#include "train/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void greedy(model *m, ag_ctx *ctx, model_decoder_cache *dc, int64_t B, const gen_config *g, int32_t *out, int *lens) {
    const model_config *c = &m->cfg;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B);
    bool *done = calloc((size_t)B, 1);
    for (int64_t b = 0; b < B; b++) {
        tok[b] = c->decoder_start_token_id;
        lens[b] = 0;
        for (int t = 0; t < g->max_len; t++) out[b * g->max_len + t] = c->pad_token_id;
    }
    for (int t = 0; t < g->max_len; t++) {
        ag_tensor *logits = model_decode_step(m, ctx, dc, tok);
        const float *lg = logits->data;
        int64_t V = c->vocab_size, n_done = 0;
        for (int64_t b = 0; b < B; b++) {
            int32_t best = 0;
            for (int64_t v = 1; v < V; v++)
                if (lg[b * V + v] > lg[b * V + best]) best = (int32_t)v;
            if (done[b]) best = c->pad_token_id;
            tok[b] = best;
            if (!done[b]) {
                out[b * g->max_len + t] = best;
                lens[b] = t + 1;
                if (best == c->eos_token_id) done[b] = true;
            }
            n_done += done[b];
        }
        ag_ctx_reset(ctx);
        if (n_done == B) break;
    }
    free(tok);
    free(done);
}

typedef struct {
    double score;
    int32_t *ids;
    int len;
} hyp;

static void beam(model *m, ag_ctx *ctx, const int32_t *ids, const int32_t *mask, int64_t B, int64_t S, const gen_config *g, int32_t *out, int *lens) {
    const model_config *c = &m->cfg;
    int nb = g->num_beams, L = g->max_len;
    int64_t R = B * nb, V = c->vocab_size;
    /* every input repeated num_beams times */
    int32_t *rid = malloc(sizeof(int32_t) * (size_t)(R * S)), *rmask = malloc(sizeof(int32_t) * (size_t)(R * S));
    for (int64_t r = 0; r < R; r++) {
        memcpy(rid + r * S, ids + (r / nb) * S, sizeof(int32_t) * (size_t)S);
        for (int64_t s = 0; s < S; s++) rmask[r * S + s] = mask ? mask[(r / nb) * S + s] : 1;
    }
    model_decoder_cache *dc = model_decode_begin(m, ctx, rid, rmask, R, S, L);
    ag_ctx_reset(ctx);
    double *score = malloc(sizeof(double) * (size_t)R);
    int32_t *seq = calloc((size_t)(R * L), sizeof(int32_t)), *nseq = calloc((size_t)(R * L), sizeof(int32_t));
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)R), *src = malloc(sizeof(int32_t) * (size_t)R);
    hyp *fin = calloc((size_t)(B * nb), sizeof(hyp));
    int *n_fin = calloc((size_t)B, sizeof(int));
    bool *closed = calloc((size_t)B, 1);
    int K2 = 2 * nb;
    double *cs = malloc(sizeof(double) * (size_t)K2);
    int64_t *cidx = malloc(sizeof(int64_t) * (size_t)K2);
    for (int64_t r = 0; r < R; r++) {
        score[r] = (r % nb) ? -INFINITY : 0.0; /* only the first beam is live at the start */
        tok[r] = c->decoder_start_token_id;
    }
    for (int t = 0; t < L; t++) {
        ag_tensor *logits = model_decode_step(m, ctx, dc, tok);
        const float *lg = logits->data;
        for (int64_t b = 0; b < B; b++) {
            /* top 2*nb of score + log_softmax over all beams of input b */
            for (int k = 0; k < K2; k++) {
                cs[k] = -INFINITY;
                cidx[k] = -1;
            }
            for (int j = 0; j < nb; j++) {
                int64_t r = b * nb + j;
                if (closed[b] || score[r] == -INFINITY) continue;
                const float *row = lg + r * V;
                double mx = row[0], s = 0;
                for (int64_t v = 1; v < V; v++) mx = fmax(mx, row[v]);
                for (int64_t v = 0; v < V; v++) s += exp(row[v] - mx);
                double lse = mx + log(s);
                for (int64_t v = 0; v < V; v++) {
                    double cand = score[r] + row[v] - lse;
                    if (cand <= cs[K2 - 1]) continue;
                    int k = K2 - 1;
                    while (k > 0 && cs[k - 1] < cand) {
                        cs[k] = cs[k - 1];
                        cidx[k] = cidx[k - 1];
                        k--;
                    }
                    cs[k] = cand;
                    cidx[k] = (int64_t)j * V + v;
                }
            }
            int filled = 0;
            for (int k = 0; k < K2 && filled < nb && !closed[b]; k++) {
                if (cidx[k] < 0) break;
                int j = (int)(cidx[k] / V);
                int32_t v = (int32_t)(cidx[k] % V);
                int64_t r = b * nb + j;
                if (v == c->eos_token_id) {
                    /* a finished hypothesis: keep the best nb by length-normalised score */
                    double ns = cs[k] / pow((double)(t + 1), g->length_penalty);
                    hyp *H = fin + b * nb;
                    int slot = n_fin[b] < nb ? n_fin[b]++ : -1;
                    if (slot < 0) {
                        int worst = 0;
                        for (int q = 1; q < nb; q++)
                            if (H[q].score < H[worst].score) worst = q;
                        if (H[worst].score < ns) slot = worst;
                    }
                    if (slot >= 0) {
                        free(H[slot].ids);
                        H[slot].score = ns;
                        H[slot].len = t + 1;
                        H[slot].ids = malloc(sizeof(int32_t) * (size_t)(t + 1));
                        memcpy(H[slot].ids, seq + r * L, sizeof(int32_t) * (size_t)t);
                        H[slot].ids[t] = v;
                    }
                    continue;
                }
                int64_t dst = b * nb + filled++;
                src[dst] = (int32_t)r;
                memcpy(nseq + dst * L, seq + r * L, sizeof(int32_t) * (size_t)t);
                nseq[dst * L + t] = v;
                tok[dst] = v;
                score[dst] = cs[k];
            }
            for (; filled < nb; filled++) {
                int64_t dst = b * nb + filled;
                src[dst] = (int32_t)(b * nb);
                score[dst] = -INFINITY;
                tok[dst] = c->pad_token_id;
            }
            /* done when nb hypotheses are finished and the best running beam cannot beat the worst of them
             * (scores only fall as a beam grows, so its best possible normalised score is its current one) */
            if (n_fin[b] == nb && !closed[b]) {
                double worst = INFINITY;
                for (int q = 0; q < nb; q++) worst = fmin(worst, fin[b * nb + q].score);
                double best_run = score[b * nb] / pow((double)(t + 1), g->length_penalty);
                if (score[b * nb] == -INFINITY || best_run <= worst) closed[b] = true;
            }
        }
        int32_t *sw = seq;
        seq = nseq;
        nseq = sw;
        ag_ctx_reset(ctx);
        bool all = true;
        for (int64_t b = 0; b < B; b++) all &= closed[b];
        if (all || t == L - 1) break;
        model_decode_reorder(m, dc, src);
    }
    for (int64_t b = 0; b < B; b++) {
        for (int t = 0; t < L; t++) out[b * L + t] = c->pad_token_id;
        hyp *best = NULL;
        for (int q = 0; q < n_fin[b]; q++)
            if (!best || fin[b * nb + q].score > best->score) best = &fin[b * nb + q];
        if (best) {
            memcpy(out + b * L, best->ids, sizeof(int32_t) * (size_t)best->len);
            lens[b] = best->len;
        } else { /* nothing reached EOS: the best running beam */
            memcpy(out + b * L, seq + b * nb * L, sizeof(int32_t) * (size_t)L);
            lens[b] = L;
        }
        for (int q = 0; q < n_fin[b]; q++) free(fin[b * nb + q].ids);
    }
    model_decode_end(dc);
    free(rid);
    free(rmask);
    free(score);
    free(seq);
    free(nseq);
    free(tok);
    free(src);
    free(fin);
    free(n_fin);
    free(closed);
    free(cs);
    free(cidx);
}

void generate(model *m, ag_ctx *ctx, const int32_t *input_ids, const int32_t *attention_mask, int64_t B, int64_t S, const gen_config *g,
              int32_t *out, int *lens) {
    SX_ASSERT(g->max_len >= 1 && g->num_beams >= 1, "generate: max_len %d, num_beams %d", g->max_len, g->num_beams);
    if (g->num_beams > 1) {
        beam(m, ctx, input_ids, attention_mask, B, S, g, out, lens);
        return;
    }
    model_decoder_cache *dc = model_decode_begin(m, ctx, input_ids, attention_mask, B, S, g->max_len);
    ag_ctx_reset(ctx);
    greedy(m, ctx, dc, B, g, out, lens);
    model_decode_end(dc);
}
