/* LLM.int8 on the CPU (autograd/ag_int8.h): weight quantization, the per-call activation quantization with outlier
 * columns, the int8 dot products (AVX2 when the CPU has it, portable C otherwise: the same exact int32 sums), the
 * fp32 outlier part, and a small thread pool splitting the output rows. */
#include "autograd/ag_int8.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SX_INT8_X86 1
#endif

#define INV127 7.874015718698502e-3f          /* bitsandbytes' int8_vectorwise_dequant: 1/127 */
/* 1/127^2 as bitsandbytes' default (PyTorch) backend writes it, the one its CPU path runs: 6.200124e-05, 1.8e-5
 * relative above 1/127^2 (its CUDA kernel's MM_DEQUANT_CONST is 6.200012e-05). Followed to the digit: a constant
 * 1.8e-5 off in every layer shifts activations across int8 rounding boundaries, and a whole model's logits miss HF's
 * by 2-15% of the int8 error itself (tests/test_int8.c) */
#define INV127SQ 6.200124e-05f

/* round half to even for |v| < 2^22 in the default rounding mode, without a libm call (nearbyintf is one on x86-64
 * without SSE4.1): adding and subtracting 1.5 * 2^23 leaves the integer part */
static inline float round_even(float v) {
    const float magic = 12582912.0f;
    return (v + magic) - magic; /* kept as written: the build has no -ffast-math (CMakeLists.txt) */
}

float ag_f16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t a = u & 0x7fffffffu, sign = u & 0x80000000u;
    if (a >= 0x7f800000u) return x;                 /* inf, nan */
    if (a >= 0x477ff000u) u = sign | 0x7f800000u;   /* from 65520 (the midpoint above 65504, odd): inf */
    else if (a < 0x38800000u) {                     /* below 2^-14: fp16 subnormals, multiples of 2^-24 */
        float r = round_even(fabsf(x) * 0x1p24f) * 0x1p-24f;
        return sign ? -r : r;
    } else {                                        /* 10 mantissa bits, round half to even */
        a += 0xfffu + ((a >> 13) & 1u);
        u = sign | (a & ~0x1fffu);
    }
    float r;
    memcpy(&r, &u, 4);
    return r;
}

/* ---- quantized weights ------------------------------------------------------------------------------------------ */

static int8_t quant(float v, float inv) {
    float r = round_even(v * inv); /* |v * inv| <= 127 + rounding */
    return (int8_t)(r > 127.f ? 127.f : r < -127.f ? -127.f : r);
}

void ag_int8_quantize(ag_int8_weight *q, const float *w, int64_t n, int64_t O, int64_t ni, double threshold) {
    memset(q, 0, sizeof *q);
    q->n = n;
    q->rows = O;
    q->cols = ni;
    q->ld = (ni + 31) & ~(int64_t)31;
    q->threshold = (float)threshold;
    q->q = aligned_alloc(64, ((size_t)(n * O * q->ld) + 63) & ~(size_t)63);
    q->scale = malloc(sizeof(float) * (size_t)(n * O));
    SX_ASSERT(q->q && q->scale, "int8: out of memory for a [%lld, %lld, %lld] weight", (long long)n, (long long)O,
              (long long)ni);
    float *h = malloc(sizeof(float) * (size_t)ni);
    SX_ASSERT(h, "int8: out of memory");
    for (int64_t r = 0; r < n * O; r++) {
        const float *src = w + r * ni;
        int8_t *dst = q->q + r * q->ld;
        float mx = 0;
        for (int64_t i = 0; i < ni; i++) {
            h[i] = ag_f16_round(src[i]);
            mx = fmaxf(mx, fabsf(h[i]));
        }
        q->scale[r] = mx;
        float inv = (1.0f / mx) * 127.0f; /* as torch's 127.0 / row_stats: reciprocal, then times 127 */
        for (int64_t i = 0; i < ni; i++) dst[i] = mx > 0 ? quant(h[i], inv) : 0;
        memset(dst + ni, 0, (size_t)(q->ld - ni));
    }
    free(h);
}

void ag_int8_free(ag_int8_weight *q) {
    if (!q) return;
    free(q->q);
    free(q->scale);
    memset(q, 0, sizeof *q);
}

size_t ag_int8_bytes(const ag_int8_weight *q) {
    return (size_t)(q->n * q->rows * q->ld) + sizeof(float) * (size_t)(q->n * q->rows);
}

/* ---- dot products --------------------------------------------------------------------------------------------- */

static int32_t dot_c(const int8_t *a, const int8_t *b, int64_t n) {
    int32_t s = 0;
    for (int64_t i = 0; i < n; i++) s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}

/* out[r] = dot(x, w + r * ld) for r < R: one activation row against R weight rows */
static void dots_c(const int8_t *x, const int8_t *w, int64_t ld, int64_t R, int64_t n, int32_t *out) {
    for (int64_t r = 0; r < R; r++) out[r] = dot_c(x, w + r * ld, n);
}

#ifdef SX_INT8_X86
/* |a| * sign(b, a) = a * b per byte pair, summed in pairs to int16 (127 * 127 * 2 < 32767: no saturation), then to
 * int32: 32 products per step. n is a multiple of 32 (rows are zero-padded). Four weight rows share each x load. */
__attribute__((target("avx2"))) static void dots_avx2(const int8_t *x, const int8_t *w, int64_t ld, int64_t R,
                                                       int64_t n, int32_t *out) {
    const __m256i ones = _mm256_set1_epi16(1);
    int64_t r = 0;
    for (; r + 4 <= R; r += 4) {
        const int8_t *w0 = w + r * ld, *w1 = w0 + ld, *w2 = w1 + ld, *w3 = w2 + ld;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < n; i += 32) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(x + i)), ax = _mm256_sign_epi8(xv, xv);
#define SX_STEP(acc, wr)                                                                                               \
    acc = _mm256_add_epi32(                                                                                            \
        acc, _mm256_madd_epi16(                                                                                        \
                 _mm256_maddubs_epi16(ax, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)((wr) + i)), xv)), ones))
            SX_STEP(a0, w0);
            SX_STEP(a1, w1);
            SX_STEP(a2, w2);
            SX_STEP(a3, w3);
#undef SX_STEP
        }
        /* horizontal sums of the four accumulators */
        __m256i s01 = _mm256_hadd_epi32(a0, a1), s23 = _mm256_hadd_epi32(a2, a3), s = _mm256_hadd_epi32(s01, s23);
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        _mm_storeu_si128((__m128i *)(out + r), t);
    }
    for (; r < R; r++) {
        const int8_t *wr = w + r * ld;
        __m256i acc = _mm256_setzero_si256();
        for (int64_t i = 0; i < n; i += 32) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(x + i));
            __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(xv, xv),
                                             _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(wr + i)), xv));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
        }
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        t = _mm_hadd_epi32(t, t);
        t = _mm_hadd_epi32(t, t);
        out[r] = _mm_cvtsi128_si32(t);
    }
}
#endif

typedef void (*dots_fn)(const int8_t *, const int8_t *, int64_t, int64_t, int64_t, int32_t *);

static dots_fn pick_dots(void) {
#ifdef SX_INT8_X86
    if (__builtin_cpu_supports("avx2")) return dots_avx2;
#endif
    return dots_c;
}

/* ---- a small pool: the output rows of one call split over the threads ----------------------------------------- */

typedef struct {
    const ag_int8_weight *q;
    int64_t e, N, n_out;
    const int8_t *xq;         /* [N, ld] */
    const float *xs;          /* [N] */
    const float *x;           /* [N, ni] the unrounded input (outlier columns) */
    const int32_t *out_cols;  /* [n_out] */
    float *y;                 /* [N, O] */
    dots_fn dots;
} int8_job;

/* rows [o0, o1) of the job's output */
static void job_rows(const int8_job *j, int64_t o0, int64_t o1) {
    const ag_int8_weight *q = j->q;
    int64_t O = q->rows, ld = q->ld;
    const int8_t *W = q->q + j->e * O * ld;
    const float *sc = q->scale + j->e * O;
    enum { RB = 64 };
    int32_t acc[RB];
    for (int64_t ob = o0; ob < o1; ob += RB) {
        int64_t R = o1 - ob < RB ? o1 - ob : RB;
        for (int64_t n = 0; n < j->N; n++) {
            j->dots(j->xq + n * ld, W + ob * ld, ld, R, ld, acc);
            float *yr = j->y + n * O + ob;
            for (int64_t r = 0; r < R; r++) {
                yr[r] = (float)acc[r] * (j->xs[n] * sc[ob + r]) * INV127SQ;
                if (q->bias) yr[r] += q->bias[ob + r];
            }
            /* the outlier columns in fp32 with the dequantized weight columns */
            for (int64_t r = 0; r < R && j->n_out; r++) {
                const int8_t *wr = W + (ob + r) * ld;
                float s = 0, ws = sc[ob + r];
                for (int64_t k = 0; k < j->n_out; k++) {
                    int32_t c = j->out_cols[k];
                    s += j->x[n * q->cols + c] * ((float)wr[c] * ws * INV127);
                }
                yr[r] += s;
            }
        }
    }
}

static struct {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    int n_threads, started;   /* workers: n_threads - 1 */
    uint64_t generation;
    int pending;
    const int8_job *job;
    int64_t chunk;
    uint64_t born[64]; /* the generation current when worker i started: it waits for the next one */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL, 0, {0}};

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    pthread_mutex_lock(&pool.mu);
    uint64_t seen = pool.born[id];
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.go, &pool.mu);
        seen = pool.generation;
        if (id >= pool.n_threads) continue; /* parked by a smaller ag_int8_set_threads */
        const int8_job *j = pool.job;
        int64_t o0 = id * pool.chunk, o1 = o0 + pool.chunk < j->q->rows ? o0 + pool.chunk : j->q->rows;
        pthread_mutex_unlock(&pool.mu);
        if (o0 < o1) job_rows(j, o0, o1);
        pthread_mutex_lock(&pool.mu);
        if (--pool.pending == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

void ag_int8_set_threads(int n) {
    pthread_mutex_lock(&pool.mu);
    if (n < 1) n = 1;
    if (n > 64) n = 64;
    for (int id = pool.started + 1; id < n; id++) { /* workers 1..n-1; the caller is thread 0 */
        pthread_t t;
        pool.born[id] = pool.generation;
        SX_ASSERT(pthread_create(&t, NULL, worker, (void *)(intptr_t)id) == 0, "int8: cannot start a thread");
        pthread_detach(t);
        pool.started = id;
    }
    pool.n_threads = n;
    pthread_mutex_unlock(&pool.mu);
}

static void run_job(const int8_job *j) {
    if (!pool.n_threads) ag_int8_set_threads(openblas_get_num_threads());
    int T = pool.n_threads;
    int64_t O = j->q->rows;
    /* small calls stay on one thread: waking the others costs more than ~256k multiply-adds */
    if (T == 1 || j->N * O * j->q->cols < (1 << 18) || O < 8 * T) {
        job_rows(j, 0, O);
        return;
    }
    int64_t chunk = ((O + T - 1) / T + 3) & ~(int64_t)3;
    pthread_mutex_lock(&pool.mu);
    pool.job = j;
    pool.chunk = chunk;
    pool.pending = T - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.mu);
    job_rows(j, 0, chunk < O ? chunk : O);
    pthread_mutex_lock(&pool.mu);
    while (pool.pending) pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
}

/* ---- one call ------------------------------------------------------------------------------------------------- */

void ag_int8_matmul(const ag_int8_weight *q, int64_t e, const float *x, int64_t N, float *y) {
    SX_ASSERT(e >= 0 && e < q->n, "int8: matrix %lld of %lld", (long long)e, (long long)q->n);
    if (N <= 0) return;
    int64_t ni = q->cols, ld = q->ld;
    float thr = q->threshold;
    int8_t *xq = aligned_alloc(64, ((size_t)(N * ld) + 63) & ~(size_t)63);
    float *xs = malloc(sizeof(float) * (size_t)N);
    uint8_t *is_out = calloc((size_t)ni, 1);
    int32_t *out_cols = malloc(sizeof(int32_t) * (size_t)ni);
    float *h = malloc(sizeof(float) * (size_t)(N * ni)); /* x rounded to fp16 */
    SX_ASSERT(xq && xs && is_out && out_cols && h, "int8: out of memory for %lld rows", (long long)N);
    for (int64_t k = 0; k < N * ni; k++) h[k] = ag_f16_round(x[k]);
    int64_t n_out = 0;
    if (thr > 0) {
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < ni; i++) is_out[i] |= fabsf(h[n * ni + i]) >= thr;
        for (int64_t i = 0; i < ni; i++)
            if (is_out[i]) out_cols[n_out++] = (int32_t)i;
    }
    for (int64_t n = 0; n < N; n++) {
        const float *hr = h + n * ni;
        int8_t *dst = xq + n * ld;
        float mx = 0;
        for (int64_t i = 0; i < ni; i++) {
            float a = fabsf(hr[i]);
            mx = thr > 0 && a >= thr ? mx : fmaxf(mx, a);
        }
        xs[n] = mx;
        float inv = (1.0f / mx) * 127.0f; /* torch's scalar / tensor is reciprocal() * scalar: ties fall as there */
        for (int64_t i = 0; i < ni; i++) dst[i] = mx > 0 && !is_out[i] ? quant(hr[i], inv) : 0;
        memset(dst + ni, 0, (size_t)(ld - ni));
    }
    free(h);
    static dots_fn dots;
    if (!dots) dots = pick_dots();
    int8_job j = {q, e, N, n_out, xq, xs, x, out_cols, y, dots};
    run_job(&j);
    free(xq);
    free(xs);
    free(is_out);
    free(out_cols);
}

/* ---- tensors ---------------------------------------------------------------------------------------------------- */

ag_tensor *ag_int8_linear(ag_ctx *ctx, ag_tensor *x, const ag_int8_weight *q) {
    SX_ASSERT(ctx->device == AG_DEV_CPU && x->device == AG_DEV_CPU && x->dtype == AG_F32,
              "int8 linear: f32 tensors of a CPU context only");
    SX_ASSERT(x->shape[x->ndim - 1] == q->cols, "int8 linear: input features %lld, weight [%lld, %lld]",
              (long long)x->shape[x->ndim - 1], (long long)q->rows, (long long)q->cols);
    SX_ASSERT(!(ctx->grad_enabled && x->requires_grad), "int8 linear: no gradient (inference only)");
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = q->rows;
    ag_tensor *y = ag_tensor_new(ctx->act, AG_F32, x->ndim, shape);
    ag_int8_matmul(q, 0, x->data, x->numel / q->cols, y->data);
    return y;
}

ag_tensor *ag_int8_grouped_linear(ag_ctx *ctx, ag_tensor *x, const ag_int8_weight *q, const ag_tensor *offsets) {
    SX_ASSERT(ctx->device == AG_DEV_CPU && x->device == AG_DEV_CPU && x->dtype == AG_F32 && x->ndim == 2,
              "int8 grouped linear: f32 [N, ni] tensors of a CPU context only");
    SX_ASSERT(x->shape[1] == q->cols && offsets->dtype == AG_I64 && offsets->device == AG_DEV_CPU &&
                  offsets->numel == q->n + 1,
              "int8 grouped linear: x [%lld, %lld], weight [%lld, %lld, %lld], %lld offsets",
              (long long)x->shape[0], (long long)x->shape[1], (long long)q->n, (long long)q->rows,
              (long long)q->cols, (long long)offsets->numel);
    SX_ASSERT(!(ctx->grad_enabled && x->requires_grad), "int8 grouped linear: no gradient (inference only)");
    int64_t N = x->shape[0], O = q->rows, ni = q->cols;
    ag_tensor *y = ag_zeros(ctx->act, AG_F32, N, O);
    const int64_t *off = offsets->data;
    for (int64_t e = 0; e < q->n; e++) {
        SX_ASSERT(off[e] <= off[e + 1] && off[e + 1] <= N, "int8 grouped linear: offsets not increasing in [0, N]");
        ag_int8_matmul(q, e, (const float *)x->data + off[e] * ni, off[e + 1] - off[e], (float *)y->data + off[e] * O);
    }
    return y;
}
