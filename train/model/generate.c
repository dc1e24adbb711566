/* Greedy, beam-search and sampled decoding on the KV cache, step for step as HF's generate (transformers 4.57.6):
 * greedy takes the first maximal logit; beam search follows _beam_search (top 2*num_beams candidates, finished
 * hypotheses scored sum log p / len^length_penalty, HF's early-stopping rule, the running beams finalised at the length
 * limit); sampling follows _sample with HF's temperature, top-k and top-p warpers (generation/logits_process.py). */
#include "train/model/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- sampling ---------------------------------------------------------------------------------------------------- */

#define GEN_RNG_PURPOSE 0x53414d50ull /* "SAMP": the sampling stream, apart from dropout's and jitter's */

double gen_uniform(uint64_t seed, uint64_t row, uint64_t step) {
    uint32_t w[4];
    ag_philox(ag_rng_make(seed, row, GEN_RNG_PURPOSE), step, w);
    return (double)(((uint64_t)(w[0] >> 5) << 26) | (w[1] >> 6)) * 0x1.0p-53;
}

int32_t gen_sample_token(const double *probs, int64_t V, double u) {
    double total = 0;
    for (int64_t v = 0; v < V; v++) total += probs[v];
    double target = u * total, cum = 0;
    int32_t last = 0;
    for (int64_t v = 0; v < V; v++) {
        if (probs[v] <= 0) continue;
        cum += probs[v];
        last = (int32_t)v;
        if (cum > target) return last;
    }
    return last; /* u * total rounded up to the sum: the last token with mass */
}

static int cmp_float_asc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* the k-th largest of x[0..n) (1 <= k <= n), by quickselect on a copy in w */
static float kth_largest(const float *x, int64_t n, int64_t k, float *w) {
    memcpy(w, x, sizeof(float) * (size_t)n);
    int64_t lo = 0, hi = n - 1, want = k - 1; /* position want in descending order */
    while (lo < hi) {
        float pivot = w[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (w[i] > pivot) i++;
            while (w[j] < pivot) j--;
            if (i <= j) {
                float t = w[i];
                w[i++] = w[j];
                w[j--] = t;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
    return w[want];
}

int64_t gen_sample_probs(const float *logits, int64_t V, const gen_config *g, float *work, double *probs) {
    float *s = work, *w = work + V;
    const float ninf = -INFINITY;
    for (int64_t v = 0; v < V; v++) s[v] = g->temperature != 1.0 ? logits[v] / (float)g->temperature : logits[v];
    if (g->top_k > 0) { /* TopKLogitsWarper: remove scores < the k-th largest (ties with it stay) */
        int64_t k = g->top_k < V ? g->top_k : V;
        float kth = kth_largest(s, V, k, w);
        for (int64_t v = 0; v < V; v++)
            if (s[v] < kth) s[v] = ninf;
    }
    if (g->top_p < 1.0) { /* TopPLogitsWarper: ascending sort, softmax, cumsum <= 1 - top_p removed, the top kept */
        memcpy(w, s, sizeof(float) * (size_t)V);
        qsort(w, (size_t)V, sizeof(float), cmp_float_asc);
        float mx = w[V - 1], sum = 0;
        for (int64_t v = 0; v < V; v++) sum += expf(w[v] - mx);
        float cut = (float)(1.0 - g->top_p);
        double cum = 0; /* torch's CPU cumsum accumulates float in double */
        /* sorted entries 0..r-1 are removed where r is the first whose cumulative probability exceeds cut; as the
         * cumulative sum only grows, the removed set is a prefix of the ascending order: s < w[r] (ties with w[r]
         * keep whichever torch's sort puts after it; here all of them stay) */
        int64_t r = 0;
        for (; r < V - 1; r++) {
            cum += expf(w[r] - mx) / sum;
            if (!((float)cum <= cut)) break;
        }
        float thr = w[r];
        for (int64_t v = 0; v < V; v++)
            if (s[v] < thr) s[v] = ninf;
    }
    double mx = -INFINITY, sum = 0;
    for (int64_t v = 0; v < V; v++) mx = fmax(mx, (double)s[v]);
    int64_t kept = 0;
    for (int64_t v = 0; v < V; v++) {
        probs[v] = s[v] == ninf ? 0.0 : exp((double)s[v] - mx);
        sum += probs[v];
        kept += probs[v] > 0;
    }
    for (int64_t v = 0; v < V; v++) probs[v] /= sum;
    return kept;
}

/* ---- greedy and sampling ----------------------------------------------------------------------------------------- */

static void greedy(model *m, ag_ctx *ctx, model_decoder_cache *dc, int64_t B, const gen_config *g,
                   const int64_t *row_ids, int32_t *out, int *lens) {
    const model_config *c = &m->cfg;
    int64_t V = c->vocab_size;
    float *work = g->do_sample ? malloc(sizeof(float) * (size_t)(2 * V)) : NULL;
    double *probs = g->do_sample ? malloc(sizeof(double) * (size_t)V) : NULL;
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
        int64_t n_done = 0;
        for (int64_t b = 0; b < B; b++) {
            int32_t best = 0;
            if (done[b]) {
                best = c->pad_token_id;
            } else if (g->do_sample) {
                gen_sample_probs(lg + b * V, V, g, work, probs);
                uint64_t row = (uint64_t)(row_ids ? row_ids[b] : b);
                best = gen_sample_token(probs, V, gen_uniform(g->seed, row, (uint64_t)t));
            } else {
                for (int64_t v = 1; v < V; v++)
                    if (lg[b * V + v] > lg[b * V + best]) best = (int32_t)v;
            }
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
    free(work);
    free(probs);
}

/* HF keeps its beam scores in float32 and pushes candidates out of a selection by adding -1e9 (an exact float32) */
#define BEAM_NEG 1.0e9f

typedef struct {
    float score;  /* running score + log p(tok), float32 as HF */
    int32_t beam; /* 0..nb-1 within the input */
    int32_t tok;
} beam_cand;

/* Stable descending order of key[0..n) into idx (insertion sort: n <= 3 * num_beams). Equal keys keep their order,
 * earlier (lower torch index) first: torch.topk's order on exact ties is unspecified (on the CPU it is not the index
 * order), so on an exact float32 tie between two different hypotheses the choice may differ from HF's. */
static void order_desc(const float *key, int n, int *idx) {
    for (int i = 0; i < n; i++) {
        int k = i;
        while (k > 0 && key[idx[k - 1]] < key[i]) {
            idx[k] = idx[k - 1];
            k--;
        }
        idx[k] = i;
    }
}

/* HF's _beam_search (transformers 4.57.6), per input b, at step t (t+1 tokens generated once it is done):
 *  1. candidates: the top 2*nb of running score + log_softmax over all nb beams x V tokens (torch.topk);
 *  2. a candidate "hits" when its token is EOS or t is the last step;
 *  3. next running beams: the top nb candidates after adding -1e9 to those that hit;
 *  4. finished hypotheses: of the first nb candidates (the rest are only spares for 3), those that hit, scored
 *     score / (t+1)^length_penalty, merged with the kept ones, best nb kept. At the last step every one of the first
 *     nb candidates hits: the beams still running at the length limit are finalised like EOS-ended ones;
 *  5. the input closes (its finished set is frozen) when all nb are finished and either early_stopping is TRUE, or
 *     the best running beam / len^length_penalty <= the worst finished, len = t+1 (max_len under NEVER with
 *     length_penalty > 0). Generation stops when every input is closed or at max_len.
 * The answer is the best finished hypothesis. len counts generated tokens only: HF divides by cur_len + 1 -
 * decoder_prompt_len, and the decoder start token is the prompt. Beams 1..nb-1 start at -1e9 as in HF, so the first
 * step extends beam 0 only. HF's empty finished slots hold -1e9 and every real score beats them, so only real
 * hypotheses are kept here; on an exact tie the kept one goes first. Exact with vocab_size > num_beams: below that,
 * the first step must pick among -1e9 ties, which torch orders its own way. */
/* The search's buffers, for B inputs x nb beams of up to L tokens. */
typedef struct {
    const model_config *c;
    const gen_config *g;
    int nb, L, K2;
    int64_t B, V;
    float *run;                /* [B, nb] running scores */
    int32_t *seq, *nseq;       /* [B, nb, L] running prefixes, and the next step's */
    int32_t *tok, *src;        /* [B, nb] the tokens fed next; the row each new beam continues */
    float *fscore;             /* [B, nb] finished, best first */
    int32_t *fseq;             /* [B, nb, L] */
    int *flen, *n_fin;         /* [B, nb], [B] */
    bool *closed;              /* [B] */
    beam_cand *cand;           /* [2 nb] */
    float *key, *tscore;       /* [3 nb], [nb] */
    int *idx, *from, *tlen;    /* [3 nb], [3 nb], [nb] */
    int32_t *tseq;             /* [nb, L] */
} beam_state;

static void beam_alloc(beam_state *st, const model_config *c, const gen_config *g, int64_t B) {
    int nb = g->num_beams, L = g->max_len;
    int64_t R = B * nb;
    *st = (beam_state){c, g, nb, L, 2 * nb, B, c->vocab_size};
    st->run = malloc(sizeof(float) * (size_t)R);
    st->seq = calloc((size_t)(R * L), sizeof(int32_t));
    st->nseq = calloc((size_t)(R * L), sizeof(int32_t));
    st->tok = malloc(sizeof(int32_t) * (size_t)R);
    st->src = malloc(sizeof(int32_t) * (size_t)R);
    st->fscore = malloc(sizeof(float) * (size_t)R);
    st->fseq = calloc((size_t)(R * L), sizeof(int32_t));
    st->flen = calloc((size_t)R, sizeof(int));
    st->n_fin = calloc((size_t)B, sizeof(int));
    st->closed = calloc((size_t)B, 1);
    st->cand = malloc(sizeof(beam_cand) * (size_t)st->K2);
    st->key = malloc(sizeof(float) * (size_t)(3 * nb));
    st->idx = malloc(sizeof(int) * (size_t)(3 * nb));
    st->from = malloc(sizeof(int) * (size_t)(3 * nb));
    st->tscore = malloc(sizeof(float) * (size_t)nb);
    st->tseq = malloc(sizeof(int32_t) * (size_t)(nb * L));
    st->tlen = malloc(sizeof(int) * (size_t)nb);
    for (int64_t r = 0; r < R; r++) {
        st->run[r] = (r % nb) ? -BEAM_NEG : 0.0f; /* HF: only the first beam is live at the start */
        st->tok[r] = c->decoder_start_token_id;
    }
}

static void beam_free(beam_state *st) {
    void *p[] = {st->run, st->seq, st->nseq, st->tok, st->src, st->fscore, st->fseq, st->flen, st->n_fin, st->closed, st->cand,
                 st->key, st->idx, st->from, st->tscore, st->tseq, st->tlen};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
}

/* 1. The top 2*nb candidates of input b, in flat (beam, token) order on ties. */
static void beam_candidates(beam_state *st, const float *lg, int64_t b) {
    int n_c = 0, nb = st->nb, K2 = st->K2;
    beam_cand *cand = st->cand;
    for (int j = 0; j < nb; j++) {
        int64_t r = b * nb + j;
        const float *row = lg + r * st->V;
        double mx = row[0], s = 0;
        for (int64_t v = 1; v < st->V; v++) mx = fmax(mx, row[v]);
        for (int64_t v = 0; v < st->V; v++) s += exp(row[v] - mx);
        double lse = mx + log(s);
        for (int64_t v = 0; v < st->V; v++) {
            float sc = st->run[r] + (float)(row[v] - lse);
            if (n_c == K2 && !(sc > cand[K2 - 1].score)) continue;
            int k = n_c < K2 ? n_c++ : K2 - 1;
            while (k > 0 && cand[k - 1].score < sc) {
                cand[k] = cand[k - 1];
                k--;
            }
            cand[k] = (beam_cand){sc, j, (int32_t)v};
        }
    }
    SX_ASSERT(n_c == K2, "beam search: %d candidates for %d beams", n_c, nb);
}

/* 3. The next running beams of input b at step t. */
static void beam_advance(beam_state *st, int64_t b, int t, bool last) {
    const int nb = st->nb, L = st->L;
    for (int k = 0; k < st->K2; k++) {
        bool hit = last || st->cand[k].tok == st->c->eos_token_id;
        st->key[k] = st->cand[k].score + (hit ? -BEAM_NEG : 0.0f);
    }
    order_desc(st->key, st->K2, st->idx);
    for (int i = 0; i < nb; i++) {
        const beam_cand *cd = &st->cand[st->idx[i]];
        int64_t dst = b * nb + i, r = b * nb + cd->beam;
        st->src[dst] = (int32_t)r;
        memcpy(st->nseq + dst * L, st->seq + r * L, sizeof(int32_t) * (size_t)t);
        st->nseq[dst * L + t] = cd->tok;
        st->tok[dst] = cd->tok;
        st->run[dst] = st->key[st->idx[i]];
    }
}

/* 4. Input b's kept finished hypotheses (first, best first) and the new ones of step t, best nb kept. */
static void beam_finish(beam_state *st, int64_t b, int t, bool last, float denom) {
    const int nb = st->nb, L = st->L;
    float *fs = st->fscore + b * nb, *key = st->key;
    int n = 0;
    for (int q = 0; q < st->n_fin[b]; q++) {
        key[n] = fs[q];
        st->from[n++] = q;
    }
    for (int k = 0; k < nb; k++)
        if (last || st->cand[k].tok == st->c->eos_token_id) {
            key[n] = st->cand[k].score / denom;
            st->from[n++] = nb + k;
        }
    order_desc(key, n, st->idx);
    int keep = n < nb ? n : nb;
    for (int i = 0; i < keep; i++) {
        int f = st->from[st->idx[i]];
        st->tscore[i] = key[st->idx[i]];
        if (f < nb) {
            memcpy(st->tseq + i * L, st->fseq + (b * nb + f) * L, sizeof(int32_t) * (size_t)L);
            st->tlen[i] = st->flen[b * nb + f];
        } else {
            const beam_cand *cd = &st->cand[f - nb];
            memcpy(st->tseq + i * L, st->seq + (b * nb + cd->beam) * L, sizeof(int32_t) * (size_t)t);
            st->tseq[i * L + t] = cd->tok;
            st->tlen[i] = t + 1;
        }
    }
    memcpy(fs, st->tscore, sizeof(float) * (size_t)keep);
    memcpy(st->fseq + b * nb * L, st->tseq, sizeof(int32_t) * (size_t)(keep * L));
    memcpy(st->flen + b * nb, st->tlen, sizeof(int) * (size_t)keep);
    st->n_fin[b] = keep;
}

/* 5. Close input b after step t? (HF's _check_early_stop_heuristic: a slot not yet finished counts as -1e9) */
static void beam_close(beam_state *st, int64_t b, int t) {
    const gen_config *g = st->g;
    const int nb = st->nb;
    const float *fs = st->fscore + b * nb;
    int hyp_len = (g->early_stopping == GEN_EARLY_STOP_NEVER && g->length_penalty > 0) ? st->L : t + 1;
    float best_run = st->run[b * nb] / (float)pow((double)hyp_len, g->length_penalty);
    float worst = -BEAM_NEG;
    if (st->n_fin[b] == nb) {
        worst = fs[0];
        for (int q = 1; q < nb; q++) worst = fminf(worst, fs[q]);
    }
    bool improvable = best_run > worst;
    if (!improvable || (g->early_stopping == GEN_EARLY_STOP_TRUE && st->n_fin[b] == nb)) st->closed[b] = true;
}

static void beam(model *m, ag_ctx *ctx, const int32_t *ids, const int32_t *mask, int64_t B, int64_t S,
                 const gen_config *g, int32_t *out, int *lens, float *scores) {
    const model_config *c = &m->cfg;
    int nb = g->num_beams, L = g->max_len;
    int64_t R = B * nb;
    SX_ASSERT(c->vocab_size >= 2, "beam search: vocab_size %lld", (long long)c->vocab_size);
    /* every input repeated num_beams times (routing capacity is per sequence, so copies route as the original) */
    int32_t *rid = malloc(sizeof(int32_t) * (size_t)(R * S)), *rmask = malloc(sizeof(int32_t) * (size_t)(R * S));
    for (int64_t r = 0; r < R; r++) {
        memcpy(rid + r * S, ids + (r / nb) * S, sizeof(int32_t) * (size_t)S);
        for (int64_t s = 0; s < S; s++) rmask[r * S + s] = mask ? mask[(r / nb) * S + s] : 1;
    }
    model_decoder_cache *dc = model_decode_begin(m, ctx, rid, rmask, R, S, L);
    ag_ctx_reset(ctx);
    beam_state st;
    beam_alloc(&st, c, g, B);
    for (int t = 0; t < L; t++) {
        ag_tensor *logits = model_decode_step(m, ctx, dc, st.tok); /* [R, V] */
        bool last = t == L - 1;
        float denom = (float)pow((double)(t + 1), g->length_penalty);
        for (int64_t b = 0; b < B; b++) {
            if (st.closed[b]) { /* frozen: its rows are stepped along but never read again */
                for (int j = 0; j < nb; j++) {
                    st.src[b * nb + j] = (int32_t)(b * nb + j);
                    st.tok[b * nb + j] = c->pad_token_id;
                }
                continue;
            }
            beam_candidates(&st, logits->data, b);
            beam_advance(&st, b, t, last);
            beam_finish(&st, b, t, last, denom);
            beam_close(&st, b, t);
        }
        int32_t *sw = st.seq;
        st.seq = st.nseq;
        st.nseq = sw;
        ag_ctx_reset(ctx);
        bool all = true;
        for (int64_t b = 0; b < B; b++) all &= st.closed[b];
        if (all || last) break;
        model_decode_reorder(m, dc, st.src);
    }
    for (int64_t b = 0; b < B; b++) {
        SX_ASSERT(st.n_fin[b] >= 1, "beam search: input %lld ended without a hypothesis", (long long)b);
        for (int t = 0; t < L; t++) out[b * L + t] = c->pad_token_id;
        memcpy(out + b * L, st.fseq + b * nb * L, sizeof(int32_t) * (size_t)st.flen[b * nb]);
        lens[b] = st.flen[b * nb];
        if (scores) scores[b] = st.fscore[b * nb];
    }
    model_decode_end(dc);
    free(rid);
    free(rmask);
    beam_free(&st);
}

void generate_ex(model *m, ag_ctx *ctx, const int32_t *input_ids, const int32_t *attention_mask, int64_t B, int64_t S,
                 const gen_config *g, const int64_t *row_ids, int32_t *out, int *lens, float *scores) {
    SX_ASSERT(g->max_len >= 1 && g->num_beams >= 1, "generate: max_len %d, num_beams %d", g->max_len, g->num_beams);
    SX_ASSERT(isfinite(g->length_penalty), "generate: length_penalty %g is not finite", g->length_penalty);
    SX_ASSERT(g->early_stopping >= GEN_EARLY_STOP_FALSE && g->early_stopping <= GEN_EARLY_STOP_NEVER,
              "generate: early_stopping %d", (int)g->early_stopping);
    SX_ASSERT(!g->do_sample || (g->num_beams == 1 && g->temperature > 0 && isfinite(g->temperature) && g->top_k >= 0 &&
                                g->top_p > 0 && g->top_p <= 1),
              "generate: sampling needs num_beams 1 (%d), temperature > 0 (%g), top_k >= 0 (%d), top_p in (0, 1] (%g)",
              g->num_beams, g->temperature, g->top_k, g->top_p);
    if (g->num_beams > 1) {
        beam(m, ctx, input_ids, attention_mask, B, S, g, out, lens, scores);
        return;
    }
    model_decoder_cache *dc = model_decode_begin(m, ctx, input_ids, attention_mask, B, S, g->max_len);
    ag_ctx_reset(ctx);
    greedy(m, ctx, dc, B, g, row_ids, out, lens);
    model_decode_end(dc);
    if (scores)
        for (int64_t b = 0; b < B; b++) scores[b] = 0;
}

void generate(model *m, ag_ctx *ctx, const int32_t *input_ids, const int32_t *attention_mask, int64_t B, int64_t S,
              const gen_config *g, int32_t *out, int *lens) {
    generate_ex(m, ctx, input_ids, attention_mask, B, S, g, NULL, out, lens, NULL);
}
