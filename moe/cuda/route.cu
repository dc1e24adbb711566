/* The Switch routing decision on the device (moe/moe_cuda.h), the twin of moe_route_cpu (moe/route.c): the same
 * choices, capacity and permutation from the same f32 probabilities, bit for bit, without atomics deciding an order.
 *
 * The tokens are cut into chunks of at most L consecutive tokens that never cross a capacity group; one thread walks
 * one chunk in token order. With per-chunk counts, prefix sums turn the CPU's sequential counters into positions:
 *   rank of (t, k) among its group's rows for expert e = (first choices of e in the group, if k = 1)
 *                  + (choice-k rows of e in earlier chunks of the group) + (those earlier in t's chunk);
 *   kept iff rank < capacity (HF's cumsum: 1-based position <= capacity);
 *   row of a kept (t, k) = off[e] + (kept rows of e in earlier chunks) + (those earlier in t's chunk).
 * Kernels, in stream order:
 *   choose       one thread per token: top-k with the CPU's `>` scans, the entropy (fp64) into per-block sums
 *   count        one thread per chunk: cnt[k][e][m] = tokens of chunk m whose choice k is e
 *   group_scan   one block per (k, e, group): exclusive prefix of cnt over the group's chunks; totals of k = 0
 *   keep         one thread per chunk: the rank test above; kc[e][m] = kept rows of e in chunk m; dropped count
 *   expert_scan  one block per expert: exclusive prefix of kc over all chunks, tokens_per_expert = the total
 *   finish       one block: off = exclusive prefix of tokens_per_expert; n_dropped and entropy sums
 *   place        one thread per chunk: perm, gidx, slot, loss_index
 * Every count is an integer and every float sum has a fixed order, so two runs give the same bytes. */
#include <cub/block/block_scan.cuh>

#include "moe/cuda/moe_cuda_common.cuh"
#include "moe/moe_cuda.h"

namespace {

constexpr int CHOOSE_THREADS = 256, CHOOSE_MAX_BLOCKS = 1024; /* the entropy partials: at most 1024 of them */
constexpr int CHUNK_THREADS = 128;                            /* one chunk per thread */
constexpr int SCAN_THREADS = 128;                             /* block scans (cub::BlockScan needs it fixed) */
constexpr int FINISH_THREADS = 256;

/* Where the chunks lie; computed alike by the scratch query and the launch. */
struct Plan {
    int64_t N, G, ngroups, L, cpg, M; /* tokens, group size, groups, chunk length, chunks per group, chunks */
    int E, K;
    int nbh;                          /* blocks of the choose kernel = entropy partials */
};

Plan make_plan(int64_t N, int E, int K, int64_t group_tokens) {
    Plan p;
    p.N = N;
    p.E = E;
    p.K = K;
    p.G = group_tokens > 0 ? group_tokens : (N > 0 ? N : 1);
    p.ngroups = N / p.G;
    /* Enough chunks to fill the GPU, few enough that the [E][M] tables stay near 2^22 entries. */
    int64_t target = ((int64_t)1 << 22) / E;
    if (target > 8192) target = 8192;
    if (target < 64) target = 64;
    int64_t L = (N + target - 1) / target;
    if (L < 32) L = 32;
    if (L > p.G) L = p.G; /* a chunk never crosses a group */
    p.L = L;
    p.cpg = (p.G + L - 1) / L;
    p.M = p.ngroups * p.cpg;
    int64_t nb = (N + CHOOSE_THREADS - 1) / CHOOSE_THREADS;
    p.nbh = (int)(nb < 1 ? 1 : (nb > CHOOSE_MAX_BLOCKS ? CHOOSE_MAX_BLOCKS : nb));
    return p;
}

/* The scratch, carved at 256-byte boundaries. */
struct Scratch {
    int32_t *cnt;  /* [K][E][M] choice counts, then in-group exclusive prefixes, then walk cursors */
    int32_t *gtot; /* [ngroups][E] first choices of e in group g (K = 2 only) */
    int32_t *kc;   /* [E][M] kept rows per chunk, then global exclusive prefixes, then walk cursors */
    int32_t *dc;   /* [M] tokens of chunk m whose first choice was dropped */
    double *hpart; /* [nbh] entropy per block of the choose kernel */
};

size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

size_t carve(const Plan &p, char *base, Scratch *s) {
    size_t o = 0;
    const size_t sizes[5] = {sizeof(int32_t) * (size_t)(p.K * p.E * p.M), sizeof(int32_t) * (size_t)(p.ngroups * p.E),
                             sizeof(int32_t) * (size_t)(p.E * p.M), sizeof(int32_t) * (size_t)p.M, sizeof(double) * (size_t)p.nbh};
    void *ptrs[5];
    for (int i = 0; i < 5; i++) {
        ptrs[i] = base ? base + o : NULL;
        o += align256(sizes[i]);
    }
    if (s) {
        s->cnt = (int32_t *)ptrs[0];
        s->gtot = (int32_t *)ptrs[1];
        s->kc = (int32_t *)ptrs[2];
        s->dc = (int32_t *)ptrs[3];
        s->hpart = (double *)ptrs[4];
    }
    return o;
}

/* Chunk m: group g, tokens [t0, t1) (never empty: (cpg - 1) * L < G). */
__host__ __device__ inline void chunk_range(const Plan &p, int64_t m, int64_t *g, int64_t *t0, int64_t *t1) {
    *g = m / p.cpg;
    const int64_t j = m - *g * p.cpg, gend = (*g + 1) * p.G;
    *t0 = *g * p.G + j * p.L;
    *t1 = *t0 + p.L < gend ? *t0 + p.L : gend;
}

#define FOR_CHUNKS(m, p) for (int64_t m = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; m < (p).M; m += (int64_t)gridDim.x * blockDim.x)

/* Top-k and entropy of token t. The scans repeat the CPU's: strict `>` in index order, so the first maximal index
 * wins and a NaN never displaces or becomes the best. Comparing floats decides exactly as comparing their double
 * widenings. Host and device, so that a host harness can walk the same bodies. */
__host__ __device__ inline double choose_token(const Plan &p, int64_t t, const float *__restrict__ probs, int32_t *__restrict__ choice) {
    const float *pt = probs + t * p.E;
    int32_t best = 0;
    float pb = pt[0];
    double h = 0;
    for (int e = 0; e < p.E; e++) {
        const float v = pt[e];
        if (e > 0 && v > pb) {
            best = e;
            pb = v;
        }
        const double pd = (double)v;
        if (pd > 0) h -= pd * log(pd);
    }
    choice[t * p.K] = best;
    if (p.K == 2) {
        int32_t second = best == 0 ? 1 : 0;
        float ps = pt[second];
        for (int e = 0; e < p.E; e++) {
            const float v = pt[e];
            if (e != best && v > ps) {
                second = e;
                ps = v;
            }
        }
        choice[t * p.K + 1] = second;
    }
    return h;
}

__global__ void __launch_bounds__(CHOOSE_THREADS) route_choose_k(const float *__restrict__ probs, Plan p, int32_t *__restrict__ choice,
                                                                 double *__restrict__ hpart) {
    double h = 0;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < p.N; t += (int64_t)gridDim.x * blockDim.x)
        h += choose_token(p, t, probs, choice);
    h = sx_block_reduce(h, SxSum(), 0.0); /* every thread reaches this: the loop above has no early exit */
    if (threadIdx.x == 0) hpart[blockIdx.x] = h;
}

/* The per-chunk walks: chunk m's rows of cnt and kc belong to the one thread that walks m. */
__host__ __device__ inline void count_chunk(const Plan &p, int64_t m, const int32_t *__restrict__ choice, int32_t *__restrict__ cnt) {
    int64_t g, t0, t1;
    chunk_range(p, m, &g, &t0, &t1);
    for (int64_t t = t0; t < t1; t++)
        for (int k = 0; k < p.K; k++) cnt[((int64_t)k * p.E + choice[t * p.K + k]) * p.M + m] += 1;
}

__global__ void route_count_k(Plan p, const int32_t *__restrict__ choice, int32_t *__restrict__ cnt) {
    FOR_CHUNKS(m, p) count_chunk(p, m, choice, cnt);
}

/* In place: v[0..n) <- its exclusive prefix sums; returns the total to every thread. The whole block calls it. */
template <class V> __device__ V block_exclusive_scan(V *v, int64_t n) {
    typedef cub::BlockScan<V, SCAN_THREADS> Scan;
    __shared__ typename Scan::TempStorage tmp;
    V carry = 0;
    for (int64_t base = 0; base < n; base += SCAN_THREADS) {
        const int64_t i = base + threadIdx.x;
        V x = i < n ? v[i] : (V)0, ex, agg;
        Scan(tmp).ExclusiveSum(x, ex, agg);
        if (i < n) v[i] = carry + ex;
        carry += agg;
        __syncthreads(); /* tmp is reused by the next tile */
    }
    return carry;
}

/* Column (k, e, g) = c: cnt[k][e][g*cpg .. (g+1)*cpg) in place. */
__global__ void __launch_bounds__(SCAN_THREADS) route_group_scan_k(Plan p, int32_t *__restrict__ cnt, int32_t *__restrict__ gtot) {
    const int64_t cols = (int64_t)p.K * p.E * p.ngroups;
    for (int64_t c = blockIdx.x; c < cols; c += gridDim.x) { /* block-uniform: every thread takes the same trips */
        const int64_t ke = c / p.ngroups, g = c - ke * p.ngroups;
        const int32_t total = block_exclusive_scan(cnt + ke * p.M + g * p.cpg, p.cpg);
        if (threadIdx.x == 0 && p.K == 2 && ke < p.E) gtot[g * p.E + ke] = total; /* ke < E: k = 0, e = ke */
    }
}

__host__ __device__ inline void keep_chunk(const Plan &p, int64_t m, int64_t capacity, const int32_t *__restrict__ choice,
                                           int32_t *__restrict__ cnt, const int32_t *__restrict__ gtot, uint8_t *__restrict__ keep,
                                           int32_t *__restrict__ kc, int32_t *__restrict__ dc) {
    int64_t g, t0, t1;
    chunk_range(p, m, &g, &t0, &t1);
    int32_t dropped = 0;
    for (int64_t t = t0; t < t1; t++)
        for (int k = 0; k < p.K; k++) {
            const int32_t e = choice[t * p.K + k];
            bool kept = true;
            if (capacity >= 0) {
                int32_t *cur = cnt + ((int64_t)k * p.E + e) * p.M + m; /* this chunk's cursor for (k, e) */
                int64_t rank = *cur;
                *cur = (int32_t)(rank + 1);
                if (k == 1) rank += gtot[g * p.E + e];
                kept = rank < capacity;
            }
            keep[t * p.K + k] = kept;
            if (kept)
                kc[(int64_t)e * p.M + m] += 1;
            else if (k == 0)
                dropped++;
        }
    dc[m] = dropped;
}

__global__ void route_keep_k(Plan p, int64_t capacity, const int32_t *__restrict__ choice, int32_t *__restrict__ cnt,
                             const int32_t *__restrict__ gtot, uint8_t *__restrict__ keep, int32_t *__restrict__ kc,
                             int32_t *__restrict__ dc) {
    FOR_CHUNKS(m, p) keep_chunk(p, m, capacity, choice, cnt, gtot, keep, kc, dc);
}

__global__ void __launch_bounds__(SCAN_THREADS) route_expert_scan_k(Plan p, int32_t *__restrict__ kc, int64_t *__restrict__ tpe) {
    for (int64_t e = blockIdx.x; e < p.E; e += gridDim.x) {
        const int32_t total = block_exclusive_scan(kc + e * p.M, p.M);
        if (threadIdx.x == 0) tpe[e] = total;
    }
}

/* One block. */
__global__ void __launch_bounds__(FINISH_THREADS) route_finish_k(Plan p, const int64_t *__restrict__ tpe, int64_t *__restrict__ off,
                                                                  const int32_t *__restrict__ dc, const double *__restrict__ hpart,
                                                                  int64_t *__restrict__ n_dropped, double *__restrict__ entropy) {
    typedef cub::BlockScan<long long, FINISH_THREADS> Scan;
    __shared__ typename Scan::TempStorage tmp;
    long long carry = 0;
    for (int base = 0; base < p.E; base += FINISH_THREADS) {
        const int i = base + threadIdx.x;
        long long x = i < p.E ? (long long)tpe[i] : 0, ex, agg;
        Scan(tmp).ExclusiveSum(x, ex, agg);
        if (i < p.E) off[i] = carry + ex;
        carry += agg;
        __syncthreads();
    }
    if (threadIdx.x == 0) off[p.E] = carry;
    long long d = 0;
    for (int64_t i = threadIdx.x; i < p.M; i += FINISH_THREADS) d += dc[i];
    d = sx_block_reduce(d, SxSum(), 0LL);
    double h = 0;
    for (int i = threadIdx.x; i < p.nbh; i += FINISH_THREADS) h += hpart[i];
    h = sx_block_reduce(h, SxSum(), 0.0);
    if (threadIdx.x == 0) {
        *n_dropped = d;
        *entropy = h;
    }
}

__host__ __device__ inline void place_chunk(const Plan &p, int64_t m, const int32_t *__restrict__ choice, const uint8_t *__restrict__ keep,
                                            const int64_t *__restrict__ off, int32_t *__restrict__ kc, int32_t *__restrict__ perm,
                                            int32_t *__restrict__ gidx, int32_t *__restrict__ slot, int32_t *__restrict__ loss_index) {
    int64_t g, t0, t1;
    chunk_range(p, m, &g, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        for (int k = 0; k < p.K; k++) {
            const int64_t i = t * p.K + k;
            if (!keep[i]) {
                slot[i] = -1;
                continue;
            }
            /* a token's choices are distinct experts, so (t, 0) and (t, 1) never share a cursor */
            const int32_t e = choice[i];
            int32_t *cur = kc + (int64_t)e * p.M + m;
            const int64_t r = off[e] + *cur;
            *cur += 1;
            perm[r] = (int32_t)t;
            gidx[r] = (int32_t)(t * p.E + e);
            slot[i] = (int32_t)r;
        }
        loss_index[t] = keep[t * p.K] ? choice[t * p.K] : 0; /* HF: argmax of an all-zero mask row is 0 */
    }
}

__global__ void route_place_k(Plan p, const int32_t *__restrict__ choice, const uint8_t *__restrict__ keep, const int64_t *__restrict__ off,
                              int32_t *__restrict__ kc, int32_t *__restrict__ perm, int32_t *__restrict__ gidx, int32_t *__restrict__ slot,
                              int32_t *__restrict__ loss_index) {
    FOR_CHUNKS(m, p) place_chunk(p, m, choice, keep, off, kc, perm, gidx, slot, loss_index);
}

void check_args(int64_t N, int E, int K, int64_t group_tokens) {
    SX_ASSERT(E >= 1 && K >= 1 && K <= 2 && K <= E, "moe route: top-%d routing with %d experts", K, E);
    SX_ASSERT(N >= 0 && N * (int64_t)E <= INT32_MAX && N * (int64_t)K <= INT32_MAX,
              "moe route: %lld tokens x %d experts do not fit the int32 row indices", (long long)N, E);
    const int64_t G = group_tokens > 0 ? group_tokens : (N > 0 ? N : 1);
    SX_ASSERT(N % G == 0, "moe: %lld tokens are not a whole number of groups of %lld", (long long)N, (long long)G);
}

} // namespace

extern "C" size_t moe_cuda_route_scratch_bytes(int64_t N, int E, int K, int64_t group_tokens) {
    check_args(N, E, K, group_tokens);
    return carve(make_plan(N, E, K, group_tokens), NULL, NULL);
}

extern "C" bool moe_cuda_route(const float *probs, int64_t N, int E, int K, int64_t group_tokens, int64_t capacity, const moe_route_dev *out,
                               void *scratch, size_t scratch_bytes) {
    check_args(N, E, K, group_tokens);
    const Plan p = make_plan(N, E, K, group_tokens);
    const cudaStream_t st = sx_stream();
    SX_CUDA_CHECK(cudaMemsetAsync(out->tokens_per_expert, 0, sizeof(int64_t) * (size_t)E, st));
    if (N == 0) { /* nothing routed: zero offsets and statistics, no launches */
        SX_CUDA_CHECK(cudaMemsetAsync(out->off, 0, sizeof(int64_t) * (size_t)(E + 1), st));
        SX_CUDA_CHECK(cudaMemsetAsync(out->n_dropped, 0, sizeof(int64_t), st));
        SX_CUDA_CHECK(cudaMemsetAsync(out->entropy_sum, 0, sizeof(double), st));
        return true;
    }
    const size_t need = carve(p, NULL, NULL);
    SX_ASSERT(scratch && scratch_bytes >= need && (uintptr_t)scratch % 8 == 0,
              "moe_cuda_route: %zu bytes of scratch at %p for %zu needed, 8-byte aligned (moe_cuda_route_scratch_bytes)", scratch_bytes,
              scratch, need);
    Scratch s;
    carve(p, (char *)scratch, &s);
    SX_CUDA_CHECK(cudaMemsetAsync(s.cnt, 0, sizeof(int32_t) * (size_t)(p.K * p.E * p.M), st));
    SX_CUDA_CHECK(cudaMemsetAsync(s.kc, 0, sizeof(int32_t) * (size_t)(p.E * p.M), st));

    route_choose_k<<<p.nbh, CHOOSE_THREADS, 0, st>>>(probs, p, out->choice, s.hpart);
    SX_LAUNCHED("route_choose_k");
    const unsigned chunk_blocks = moe_blocks(p.M, CHUNK_THREADS, MOE_MAX_BLOCKS);
    if (capacity >= 0) {
        route_count_k<<<chunk_blocks, CHUNK_THREADS, 0, st>>>(p, out->choice, s.cnt);
        SX_LAUNCHED("route_count_k");
        const int64_t cols = (int64_t)p.K * p.E * p.ngroups;
        route_group_scan_k<<<(unsigned)(cols < MOE_MAX_BLOCKS ? cols : MOE_MAX_BLOCKS), SCAN_THREADS, 0, st>>>(p, s.cnt, s.gtot);
        SX_LAUNCHED("route_group_scan_k");
    }
    route_keep_k<<<chunk_blocks, CHUNK_THREADS, 0, st>>>(p, capacity, out->choice, s.cnt, s.gtot, out->keep, s.kc, s.dc);
    SX_LAUNCHED("route_keep_k");
    route_expert_scan_k<<<(unsigned)(E < MOE_MAX_BLOCKS ? E : MOE_MAX_BLOCKS), SCAN_THREADS, 0, st>>>(p, s.kc, out->tokens_per_expert);
    SX_LAUNCHED("route_expert_scan_k");
    route_finish_k<<<1, FINISH_THREADS, 0, st>>>(p, out->tokens_per_expert, out->off, s.dc, s.hpart, out->n_dropped, out->entropy_sum);
    SX_LAUNCHED("route_finish_k");
    route_place_k<<<chunk_blocks, CHUNK_THREADS, 0, st>>>(p, out->choice, out->keep, out->off, s.kc, out->perm, out->gidx, out->slot,
                                                          out->loss_index);
    SX_LAUNCHED("route_place_k");
    return true;
}

extern "C" bool moe_cuda_route_host(const float *probs, int64_t N, int E, int K, int64_t group_tokens, int64_t capacity,
                                    moe_route_result *r) {
    if (!moe_have_device()) return false;
    check_args(N, E, K, group_tokens);
    const size_t NK = (size_t)(N * K);
    moe_route_dev d;
    const float *dprobs = (const float *)moe_dev_upload(probs, sizeof(float) * (size_t)(N * E));
    d.choice = (int32_t *)moe_dev_alloc(sizeof(int32_t) * NK);
    d.keep = (uint8_t *)moe_dev_alloc(NK);
    d.slot = (int32_t *)moe_dev_alloc(sizeof(int32_t) * NK);
    d.off = (int64_t *)moe_dev_alloc(sizeof(int64_t) * (size_t)(E + 1));
    d.tokens_per_expert = (int64_t *)moe_dev_alloc(sizeof(int64_t) * (size_t)E);
    d.perm = (int32_t *)moe_dev_alloc(sizeof(int32_t) * NK);
    d.gidx = (int32_t *)moe_dev_alloc(sizeof(int32_t) * NK);
    d.loss_index = (int32_t *)moe_dev_alloc(sizeof(int32_t) * (size_t)N);
    d.n_dropped = (int64_t *)moe_dev_alloc(sizeof(int64_t));
    d.entropy_sum = (double *)moe_dev_alloc(sizeof(double));
    const size_t sb = moe_cuda_route_scratch_bytes(N, E, K, group_tokens);
    void *scratch = moe_dev_alloc(sb);
    moe_cuda_route(dprobs, N, E, K, group_tokens, capacity, &d, scratch, sb);

    moe_dev_download(r->off, d.off, sizeof(int64_t) * (size_t)(E + 1)); /* waits for the kernels (same stream) */
    r->n_kept = r->off[E];
    moe_dev_download(r->choice, d.choice, sizeof(int32_t) * NK);
    moe_dev_download(r->keep, d.keep, NK);
    moe_dev_download(r->slot, d.slot, sizeof(int32_t) * NK);
    moe_dev_download(r->tokens_per_expert, d.tokens_per_expert, sizeof(int64_t) * (size_t)E);
    moe_dev_download(r->perm, d.perm, sizeof(int32_t) * (size_t)r->n_kept);
    moe_dev_download(r->gidx, d.gidx, sizeof(int32_t) * (size_t)r->n_kept);
    moe_dev_download(r->loss_index, d.loss_index, sizeof(int32_t) * (size_t)N);
    moe_dev_download(&r->n_dropped, d.n_dropped, sizeof(int64_t));
    moe_dev_download(&r->entropy_sum, d.entropy_sum, sizeof(double));

    void *bufs[] = {(void *)dprobs, d.choice, d.keep, d.slot, d.off, d.tokens_per_expert, d.perm, d.gidx, d.loss_index, d.n_dropped,
                    d.entropy_sum, scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) SX_CUDA_CHECK(cudaFree(bufs[i]));
    return true;
}
