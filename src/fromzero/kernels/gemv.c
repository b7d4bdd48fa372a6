/* fromzero's matrix-vector kernel: y = x W^T (* scale) + bias for a few rows of x.

   Decoding one token multiplies one vector by every weight matrix, so its speed is how fast the
   weights stream from memory. This kernel reads each weight row once, in memory order (one
   sequential stream per thread, which the CPU's prefetchers follow best), and multiplies it with
   every row of x while it is in the L1 cache. The weights may be fp32, bf16 or int8 (with one fp32
   scale per output row); x, the sums and y are fp32, so bf16 and int8 weights save memory without
   rounding the activations (on CPUs with bf16 dot products, bf16 weights meet x split into two bf16
   halves: 16 of its 24 bits).

   Each output is summed by one thread, in an order that does not depend on the thread count:
   results are bit-identical on 1 or N threads. The vector code is chosen when compiling for this
   CPU (-march=native): AVX-512, AVX2 + FMA, or plain C that the compiler vectorises itself. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { WEIGHT_F32 = 0, WEIGHT_BF16 = 1, WEIGHT_I8 = 2 };

static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16; /* bf16 is the top half of an fp32 */
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#if defined(__AVX512F__)
#include <immintrin.h>
#define KERNEL_ISA "avx512"

static inline __m512 load_f32(const float *w) { return _mm512_loadu_ps(w); }
static inline __m512 load_bf16(const uint16_t *w) {
    __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)w));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
static inline __m512 load_i8(const int8_t *w) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)w)));
}

/* Two accumulators of 16 lanes: enough in flight to keep the loads streaming. */
#define DOT(NAME, WTYPE, LOAD, CONVERT)                                                         \
    static float NAME(const WTYPE *w, const float *x, int64_t n) {                              \
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();                              \
        int64_t k = 0;                                                                          \
        for (; k + 32 <= n; k += 32) {                                                          \
            a0 = _mm512_fmadd_ps(LOAD(w + k), _mm512_loadu_ps(x + k), a0);                      \
            a1 = _mm512_fmadd_ps(LOAD(w + k + 16), _mm512_loadu_ps(x + k + 16), a1);            \
        }                                                                                       \
        for (; k + 16 <= n; k += 16) a0 = _mm512_fmadd_ps(LOAD(w + k), _mm512_loadu_ps(x + k), a0); \
        float sum = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));                                \
        for (; k < n; k++) sum += CONVERT(w[k]) * x[k];                                         \
        return sum;                                                                             \
    }

#if defined(__AVX512BF16__)
#define SPLIT_BF16 1
/* bf16 weights times x split in two bf16 halves, x = hi + lo (16 bits of x's 24: products as exact as
   the bf16 weights allow). The CPU's bf16 dot product (vdpbf16ps) then does 32 multiply-adds per
   instruction on the weights as they are stored, with no conversion to fp32 in the loop. */
static float dot_bf16_split(const uint16_t *w, const uint16_t *hi, const uint16_t *lo, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
        __m512bh wv = (__m512bh)_mm512_loadu_si512(w + k);
        a0 = _mm512_dpbf16_ps(a0, wv, (__m512bh)_mm512_loadu_si512(hi + k));
        a1 = _mm512_dpbf16_ps(a1, wv, (__m512bh)_mm512_loadu_si512(lo + k));
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; k < n; k++) sum += bf16_to_f32(w[k]) * (bf16_to_f32(hi[k]) + bf16_to_f32(lo[k]));
    return sum;
}
#endif

#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define KERNEL_ISA "avx2"

static inline __m256 load_f32(const float *w) { return _mm256_loadu_ps(w); }
static inline __m256 load_bf16(const uint16_t *w) {
    __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
static inline __m256 load_i8(const int8_t *w) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)w)));
}
static inline float sum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define DOT(NAME, WTYPE, LOAD, CONVERT)                                                         \
    static float NAME(const WTYPE *w, const float *x, int64_t n) {                              \
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                              \
        __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();                              \
        int64_t k = 0;                                                                          \
        for (; k + 32 <= n; k += 32) {                                                          \
            a0 = _mm256_fmadd_ps(LOAD(w + k), _mm256_loadu_ps(x + k), a0);                      \
            a1 = _mm256_fmadd_ps(LOAD(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);              \
            a2 = _mm256_fmadd_ps(LOAD(w + k + 16), _mm256_loadu_ps(x + k + 16), a2);            \
            a3 = _mm256_fmadd_ps(LOAD(w + k + 24), _mm256_loadu_ps(x + k + 24), a3);            \
        }                                                                                       \
        for (; k + 8 <= n; k += 8) a0 = _mm256_fmadd_ps(LOAD(w + k), _mm256_loadu_ps(x + k), a0); \
        float sum = sum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));          \
        for (; k < n; k++) sum += CONVERT(w[k]) * x[k];                                         \
        return sum;                                                                             \
    }

#else
#define KERNEL_ISA "portable"

/* Plain C: with -O3 and OpenMP's simd the compiler vectorises it for the CPU (NEON on ARM). */
#define DOT(NAME, WTYPE, LOAD, CONVERT)                                                         \
    static float NAME(const WTYPE *w, const float *x, int64_t n) {                              \
        float sum = 0.0f;                                                                       \
        _Pragma("omp simd reduction(+:sum)")                                                    \
        for (int64_t k = 0; k < n; k++) sum += CONVERT(w[k]) * x[k];                            \
        return sum;                                                                             \
    }
#endif

#define AS_FLOAT(v) ((float)(v))
DOT(dot_f32, float, load_f32, AS_FLOAT)
DOT(dot_bf16, uint16_t, load_bf16, bf16_to_f32)
DOT(dot_i8, int8_t, load_i8, AS_FLOAT)

#ifdef SPLIT_BF16
const char *fromzero_gemv_isa(void) { return KERNEL_ISA "+bf16"; }
#else
const char *fromzero_gemv_isa(void) { return KERNEL_ISA; }
#endif

static uint16_t f32_to_bf16(float f) { /* round to nearest even */
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return (uint16_t)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

/* W: (out, in) row-major of `kind`; scale: (out) or NULL; x: (rows, in); bias: (out) or NULL;
   y: (rows, out). Returns 0; 1 for an unknown kind, 2 if memory ran out. */
int fromzero_gemv(int kind, const void *W, const float *scale, const float *x, const float *bias,
                  float *y, int64_t out, int64_t in, int64_t rows, int threads) {
    if (kind != WEIGHT_F32 && kind != WEIGHT_BF16 && kind != WEIGHT_I8) return 1;
    int64_t n = rows * in;
    uint16_t *split = NULL; /* x as bf16 hi halves, then lo halves, for the bf16 dot product instruction */
#ifdef SPLIT_BF16
    if (kind == WEIGHT_BF16) {
        if (!(split = malloc((size_t)(2 * n) * sizeof *split))) return 2;
        for (int64_t i = 0; i < n; i++) {
            split[i] = f32_to_bf16(x[i]);
            split[n + i] = f32_to_bf16(x[i] - bf16_to_f32(split[i]));
        }
    }
#endif
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = 0; r < out; r++) {
        for (int64_t b = 0; b < rows; b++) {
            const float *xb = x + b * in;
            float sum;
            if (kind == WEIGHT_F32) sum = dot_f32((const float *)W + r * in, xb, in);
#ifdef SPLIT_BF16
            else if (split) sum = dot_bf16_split((const uint16_t *)W + r * in, split + b * in, split + n + b * in, in);
#endif
            else if (kind == WEIGHT_BF16) sum = dot_bf16((const uint16_t *)W + r * in, xb, in);
            else sum = dot_i8((const int8_t *)W + r * in, xb, in);
            if (scale) sum *= scale[r];
            if (bias) sum += bias[r];
            y[b * out + r] = sum;
        }
    }
    free(split);
    return 0;
}
