/* moe_route_cpu (moe/route.c) on hand-made cases, every expected array written out by hand: ties take the first
 * index, capacity drops the later tokens of a group and restarts in the next group, first choices of a whole group
 * come before any second choice, dropless keeps everything, E = 1, N = 0, and the f64 variant decides alike.
 * Entropy tolerance: 1e-6 absolute against values computed from the decimal probabilities, whose float roundings
 * (relative 6e-8) move p log p by less than that. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "moe/route.h"

enum { MAXN = 16, MAXE = 8 };

typedef struct {
    int32_t choice[MAXN * 2], slot[MAXN * 2], perm[MAXN * 2], gidx[MAXN * 2], loss_index[MAXN];
    uint8_t keep[MAXN * 2];
    int64_t off[MAXE + 1], tpe[MAXE];
    moe_route_result r;
} routed;

static void route(routed *o, const float *probs, int64_t N, int E, int K, int64_t G, int64_t C) {
    memset(o, 0x5a, sizeof *o); /* garbage in every output: the function must write what it returns */
    o->r = (moe_route_result){o->choice, o->keep, o->slot, o->off, o->tpe, o->perm, o->gidx, o->loss_index, 0, 0, 0};
    moe_route_cpu(probs, N, E, K, G, C, &o->r);
}

/* got[0..n) equals the listed values of type T, each printed as an integer */
#define EXPECT_VALUES(T, got, n, ...)                                                                                 \
    do {                                                                                                              \
        const T want_[] = {__VA_ARGS__};                                                                              \
        cr_assert_eq((int64_t)(sizeof want_ / sizeof want_[0]), (int64_t)(n), "%s: %d values expected", #got, (int)(n)); \
        for (int i_ = 0; i_ < (int)(n); i_++)                                                                         \
            cr_expect_eq((got)[i_], want_[i_], "%s[%d] = %lld, expected %lld", #got, i_, (long long)(got)[i_],        \
                         (long long)want_[i_]);                                                                       \
    } while (0)
#define EXPECT_I32(got, n, ...) EXPECT_VALUES(int32_t, got, n, __VA_ARGS__)
#define EXPECT_I64(got, n, ...) EXPECT_VALUES(int64_t, got, n, __VA_ARGS__)
#define EXPECT_U8(got, n, ...) EXPECT_VALUES(uint8_t, got, n, __VA_ARGS__)

static double plogp(double p) { return p > 0 ? -p * log(p) : 0; }

/* Ties: torch.argmax / topk give the first maximal index; a zero probability adds nothing to the entropy. */
static const float TIES[3 * 4] = {0.25f, 0.25f, 0.25f, 0.25f, /* all equal: 0, then 1 */
                                  0.1f,  0.4f,  0.4f,  0.1f,  /* 1 and 2 tie: 1, then 2 */
                                  0.0f,  0.3f,  0.3f,  0.4f}; /* 3, then the 1/2 tie: 1 */

Test(moe_route, ties_take_the_first_index_top1) {
    routed o;
    route(&o, TIES, 3, 4, 1, 0, -1);
    EXPECT_I32(o.choice, 3, 0, 1, 3);
    EXPECT_U8(o.keep, 3, 1, 1, 1);
    EXPECT_I64(o.off, 5, 0, 1, 2, 2, 3);
    EXPECT_I64(o.tpe, 4, 1, 1, 0, 1);
    EXPECT_I32(o.perm, 3, 0, 1, 2);
    EXPECT_I32(o.gidx, 3, 0 * 4 + 0, 1 * 4 + 1, 2 * 4 + 3);
    EXPECT_I32(o.slot, 3, 0, 1, 2);
    EXPECT_I32(o.loss_index, 3, 0, 1, 3);
    cr_expect_eq(o.r.n_kept, 3);
    cr_expect_eq(o.r.n_dropped, 0);
    double h = 4 * plogp(0.25) + 2 * plogp(0.1) + 2 * plogp(0.4) + 2 * plogp(0.3) + plogp(0.4);
    cr_expect(fabs(o.r.entropy_sum - h) <= 1e-6, "entropy %.9f, expected %.9f", o.r.entropy_sum, h);
}

Test(moe_route, ties_take_the_first_index_top2) {
    routed o;
    route(&o, TIES, 3, 4, 2, 0, -1);
    EXPECT_I32(o.choice, 6, 0, 1, 1, 2, 3, 1);
    EXPECT_U8(o.keep, 6, 1, 1, 1, 1, 1, 1);
    /* expert 0: (t0); 1: (t0, k1), (t1, k0), (t2, k1); 2: (t1, k1); 3: (t2, k0) */
    EXPECT_I64(o.off, 5, 0, 1, 4, 5, 6);
    EXPECT_I64(o.tpe, 4, 1, 3, 1, 1);
    EXPECT_I32(o.perm, 6, 0, 0, 1, 2, 1, 2);
    EXPECT_I32(o.gidx, 6, 0, 1, 5, 9, 6, 11);
    EXPECT_I32(o.slot, 6, 0, 1, 2, 4, 5, 3);
    EXPECT_I32(o.loss_index, 3, 0, 1, 3);
    cr_expect_eq(o.r.n_kept, 6);
}

/* Capacity 1 per group of 3 (HF's cumsum: a token is kept iff its 1-based position among its group's tokens for
 * that expert is <= capacity). The second group starts afresh. */
Test(moe_route, capacity_drops_the_later_tokens_of_a_group) {
    static const float p[6 * 2] = {0.9f, 0.1f, 0.8f, 0.2f, 0.3f, 0.7f, /* group 0: experts 0, 0, 1 */
                                   0.4f, 0.6f, 0.1f, 0.9f, 0.6f, 0.4f}; /* group 1: experts 1, 1, 0 */
    routed o;
    route(&o, p, 6, 2, 1, 3, 1);
    EXPECT_I32(o.choice, 6, 0, 0, 1, 1, 1, 0);
    EXPECT_U8(o.keep, 6, 1, 0, 1, 1, 0, 1);
    EXPECT_I64(o.off, 3, 0, 2, 4);
    EXPECT_I64(o.tpe, 2, 2, 2);
    EXPECT_I32(o.perm, 4, 0, 5, 2, 3);
    EXPECT_I32(o.gidx, 4, 0, 10, 5, 7);
    EXPECT_I32(o.slot, 6, 0, -1, 2, 3, -1, 1);
    EXPECT_I32(o.loss_index, 6, 0, 0, 1, 1, 0, 0); /* dropped tokens count as expert 0 (SPEC 4.2) */
    cr_expect_eq(o.r.n_kept, 4);
    cr_expect_eq(o.r.n_dropped, 2);

    /* the same tokens as one group: expert 0 keeps t0 only, expert 1 keeps t2 only */
    route(&o, p, 6, 2, 1, 0, 1);
    EXPECT_U8(o.keep, 6, 1, 0, 1, 0, 0, 0);
    EXPECT_I32(o.perm, 2, 0, 2);
    cr_expect_eq(o.r.n_dropped, 4);

    /* capacity 0 keeps nothing */
    route(&o, p, 6, 2, 1, 3, 0);
    EXPECT_U8(o.keep, 6, 0, 0, 0, 0, 0, 0);
    EXPECT_I64(o.off, 3, 0, 0, 0);
    EXPECT_I32(o.slot, 6, -1, -1, -1, -1, -1, -1);
    cr_expect_eq(o.r.n_kept, 0);
    cr_expect_eq(o.r.n_dropped, 6);
}

/* Top-2 priority: every first choice of the group claims its slot before any second choice, so t0's second choice
 * (expert 1) loses to t1's first choice although t0 comes first. */
Test(moe_route, top2_first_choices_before_second_choices) {
    static const float p[3 * 3] = {0.5f, 0.3f, 0.2f,  /* 0, then 1 */
                                   0.2f, 0.5f, 0.3f,  /* 1, then 2 */
                                   0.3f, 0.2f, 0.5f}; /* 2, then 0 */
    routed o;
    route(&o, p, 3, 3, 2, 3, 1);
    EXPECT_I32(o.choice, 6, 0, 1, 1, 2, 2, 0);
    EXPECT_U8(o.keep, 6, 1, 0, 1, 0, 1, 0);
    EXPECT_I64(o.off, 4, 0, 1, 2, 3);
    EXPECT_I32(o.perm, 3, 0, 1, 2);
    EXPECT_I32(o.gidx, 3, 0, 4, 8);
    EXPECT_I32(o.slot, 6, 0, -1, 1, -1, 2, -1);
    EXPECT_I32(o.loss_index, 3, 0, 1, 2);
    cr_expect_eq(o.r.n_kept, 3);
    cr_expect_eq(o.r.n_dropped, 0);

    /* capacity 2 keeps all: rows of each expert in token order, first and second choices interleaved */
    route(&o, p, 3, 3, 2, 3, 2);
    EXPECT_U8(o.keep, 6, 1, 1, 1, 1, 1, 1);
    EXPECT_I64(o.off, 4, 0, 2, 4, 6);
    EXPECT_I64(o.tpe, 3, 2, 2, 2);
    EXPECT_I32(o.perm, 6, 0, 2, 0, 1, 1, 2);
    EXPECT_I32(o.gidx, 6, 0, 6, 1, 4, 5, 8);
    EXPECT_I32(o.slot, 6, 0, 2, 3, 4, 5, 1);
}

Test(moe_route, top2_partial_capacity) {
    static const float p[4 * 2] = {0.6f, 0.4f, 0.7f, 0.3f, 0.9f, 0.1f, 0.2f, 0.8f};
    routed o;
    route(&o, p, 4, 2, 2, 4, 2);
    EXPECT_I32(o.choice, 8, 0, 1, 0, 1, 0, 1, 1, 0);
    /* firsts: expert 0 keeps t0, t1 (t2 dropped), expert 1 keeps t3; seconds: t0 -> 1 fits, the rest are full */
    EXPECT_U8(o.keep, 8, 1, 1, 1, 0, 0, 0, 1, 0);
    EXPECT_I64(o.off, 3, 0, 2, 4);
    EXPECT_I32(o.perm, 4, 0, 1, 0, 3);
    EXPECT_I32(o.gidx, 4, 0, 2, 1, 7);
    EXPECT_I32(o.slot, 8, 0, 2, 1, -1, -1, -1, 3, -1);
    EXPECT_I32(o.loss_index, 4, 0, 0, 0, 1);
    cr_expect_eq(o.r.n_kept, 4);
    cr_expect_eq(o.r.n_dropped, 1);
}

Test(moe_route, dropless_keeps_every_token_of_one_expert) {
    float p[5 * 3];
    for (int t = 0; t < 5; t++) p[3 * t] = 0.1f, p[3 * t + 1] = 0.2f, p[3 * t + 2] = 0.7f;
    routed o;
    route(&o, p, 5, 3, 1, 5, -1);
    EXPECT_U8(o.keep, 5, 1, 1, 1, 1, 1);
    EXPECT_I64(o.off, 4, 0, 0, 0, 5);
    EXPECT_I64(o.tpe, 3, 0, 0, 5);
    EXPECT_I32(o.perm, 5, 0, 1, 2, 3, 4);
    EXPECT_I32(o.gidx, 5, 2, 5, 8, 11, 14);
    EXPECT_I32(o.loss_index, 5, 2, 2, 2, 2, 2);
    cr_expect_eq(o.r.n_dropped, 0);
}

Test(moe_route, one_expert) {
    static const float p[3] = {1, 1, 1};
    routed o;
    route(&o, p, 3, 1, 1, 3, 2);
    EXPECT_I32(o.choice, 3, 0, 0, 0);
    EXPECT_U8(o.keep, 3, 1, 1, 0);
    EXPECT_I64(o.off, 2, 0, 2);
    EXPECT_I32(o.perm, 2, 0, 1);
    EXPECT_I32(o.gidx, 2, 0, 1);
    EXPECT_I32(o.slot, 3, 0, 1, -1);
    EXPECT_I32(o.loss_index, 3, 0, 0, 0);
    cr_expect_eq(o.r.n_dropped, 1);
    cr_expect_eq(o.r.entropy_sum, 0.0, "log 1 = 0 exactly");
}

Test(moe_route, no_tokens) {
    routed o;
    route(&o, NULL, 0, 4, 2, 0, 3);
    EXPECT_I64(o.off, 5, 0, 0, 0, 0, 0);
    EXPECT_I64(o.tpe, 4, 0, 0, 0, 0);
    cr_expect_eq(o.r.n_kept, 0);
    cr_expect_eq(o.r.n_dropped, 0);
    cr_expect_eq(o.r.entropy_sum, 0.0);
}

/* The f64 gradient-check model routes through moe_route_cpu_f64: the same decisions and the same entropy bits for
 * probabilities that are floats widened. */
Test(moe_route, f64_decides_as_f32) {
    static const float p[4 * 2] = {0.6f, 0.4f, 0.7f, 0.3f, 0.9f, 0.1f, 0.2f, 0.8f};
    double pd[8];
    for (int i = 0; i < 8; i++) pd[i] = p[i];
    routed a, b;
    route(&a, p, 4, 2, 2, 2, 1);
    memset(&b, 0x5a, sizeof b);
    b.r = (moe_route_result){b.choice, b.keep, b.slot, b.off, b.tpe, b.perm, b.gidx, b.loss_index, 0, 0, 0};
    moe_route_cpu_f64(pd, 4, 2, 2, 2, 1, &b.r);
    cr_expect(memcmp(a.choice, b.choice, sizeof(int32_t) * 8) == 0);
    cr_expect(memcmp(a.keep, b.keep, 8) == 0);
    cr_expect(memcmp(a.slot, b.slot, sizeof(int32_t) * 8) == 0);
    cr_expect(memcmp(a.off, b.off, sizeof(int64_t) * 3) == 0);
    cr_expect(memcmp(a.perm, b.perm, sizeof(int32_t) * (size_t)a.r.n_kept) == 0);
    cr_expect(memcmp(a.gidx, b.gidx, sizeof(int32_t) * (size_t)a.r.n_kept) == 0);
    cr_expect_eq(a.r.entropy_sum, b.r.entropy_sum);
    /* groups of 2 and capacity 1: firsts 0,0 | 0,1 keep t0 | t2, t3; seconds 1 (t0) fits, 1 (t1) not | 1 (t2) not, 0 (t3) not */
    EXPECT_U8(a.keep, 8, 1, 1, 0, 0, 1, 0, 1, 0);
}
