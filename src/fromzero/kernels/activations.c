/* The activations of fromzero's feed-forward layers, forward and backward, in arithmetic the compiler
   vectorises: for the C decoding step (decode_step.c includes this file) and for training, where
   torch's own GELU kernels are a tenth of a CPU step (benchmarks/RESULTS.md, Zen 3).

   Kinds as in fromzero.nn.feedforward: GELU_TANH ("gelu_new", GPT-2's tanh approximation), GELU_ERF
   ("gelu", exact: u Phi(u), Phi the standard normal CDF) and RELU. */

#include <math.h>
#include <stddef.h>
#include <stdint.h>

enum { GELU_TANH = 0, GELU_ERF = 1, RELU = 2 }; /* fromzero.nn.feedforward's gelu_new, gelu, relu */

/* e^x for x <= 0 (all that softmax and tanh need) to about 2 ulps, in arithmetic the compiler
   vectorises (the C library's expf is one call per float): x = n ln2 + r with |r| <= ln2 / 2, e^r by
   its Taylor polynomial (Cephes' coefficients), then 2^n put straight into the exponent bits. Below
   2^-126 (x < -87.3, the smallest normal float) n stops at -127, whose exponent bits are 0: the result
   is 0. Only max-style clamps, no other branches: they would stop the vectorisation. */
static inline float exp_vec(float x) {
    float t = x * 1.44269504088896341f;
    int32_t n = (int32_t)(t + copysignf(0.5f, t)); /* rounded to nearest (floorf would not vectorise) */
    n = n < -127 ? -127 : n; /* also a huge or infinite x, whose conversion gives INT_MIN */
    float r = x - (float)n * 0.693359375f + (float)n * 2.12194440e-4f;
    r = r < -0.35f ? -0.35f : r; /* keeps the polynomial of an x below -88 finite: it is multiplied by 0 */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t bits; float value; } two_to_n = { .bits = (n + 127) << 23 };
    return p * two_to_n.value;
}

/* Phi(u), the standard normal CDF, to a few float ulps, with phi(u), its density, in *density.

   The C library's erff is one call per float. Here erfc(z) (z = |u| / sqrt 2) is t Q(t) e^(-z^2) with
   t = 1 / (1 + 0.45 z) and Q a polynomial of degree 9 (the form of Abramowitz & Stegun 7.1.26, fitted
   here again: relative least squares, Lawson-reweighted, on 6000 Chebyshev nodes of t in (0, 1],
   against scipy's erfcx). Its relative error is 3e-8 in float64, ~2e-7 in float32: Phi(u) for a very
   negative u keeps its tiny value (no 1 - 0.99999994), unlike 1 + erf(u / sqrt 2). e^(-u^2 / 2) is
   shared with phi, which is what makes GELU's derivative cost no more than GELU. */
static inline float normal_cdf(float u, float *density) {
    float e = exp_vec(-0.5f * u * u), z = fabsf(u) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.45f * z);
    float q = -4.139115617e-2f;
    q = q * t + 1.906880834e-1f;
    q = q * t - 3.005827854e-1f;
    q = q * t + 1.424012055e-1f;
    q = q * t - 2.235803394e-2f;
    q = q * t + 1.199504478e-1f;
    q = q * t + 1.752521278e-1f;
    q = q * t + 2.282716415e-1f;
    q = q * t + 2.538831628e-1f;
    q = q * t + 2.538853208e-1f;
    float tail = 0.5f * t * q * e, sign = copysignf(0.5f, u); /* tail: Phi(-|u|) */
    *density = 0.3989422804014327f * e;
    return (0.5f + sign) * (1.0f - tail) + (0.5f - sign) * tail; /* 1 - tail if u >= 0, else tail: exactly */
}

/* GPT-2's 0.5 (1 + tanh(z)), z = sqrt(2/pi) (u + 0.044715 u^3), as 1 / (1 + e^-2z) or e^2z / (1 + e^2z):
   the form whose exponent is <= 0, so a very negative u keeps its tiny value. Its derivative in u in
   *slope. */
static inline float tanh_gate(float u, float *slope) {
    float z = 0.7978845608028654f * (u + 0.044715f * u * u * u);
    float t = exp_vec(-2.0f * fabsf(z)), sign = copysignf(0.5f, z), inv = 1.0f / (1.0f + t);
    /* d/dz = 2 s (1 - s) = 2 t / (1 + t)^2 whichever the sign of z */
    *slope = 2.0f * t * inv * inv * 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * u * u);
    return ((0.5f + sign) + (0.5f - sign) * t) * inv; /* 1 / (1 + t) if z >= 0, else t / (1 + t) */
}

/* y = activation(x) (in place if y == x) and, unless slope is NULL, slope = activation'(x) = gate(u) + u gate'(u):
   all that a training step's backward needs, computed from the same exp as y. One loop per case, so that
   each vectorises alone. */
static inline void activate_into(int kind, const float *x, float *y, float *slope, int64_t n) {
    float d;
    if (kind == GELU_ERF && slope) {
        #pragma omp simd private(d)
        for (int64_t i = 0; i < n; i++) {
            float gate = normal_cdf(x[i], &d);
            slope[i] = gate + x[i] * d;
            y[i] = x[i] * gate;
        }
    } else if (kind == GELU_ERF) {
        #pragma omp simd private(d)
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * normal_cdf(x[i], &d);
    } else if (kind == GELU_TANH && slope) {
        #pragma omp simd private(d)
        for (int64_t i = 0; i < n; i++) {
            float gate = tanh_gate(x[i], &d);
            slope[i] = gate + x[i] * d;
            y[i] = x[i] * gate;
        }
    } else if (kind == GELU_TANH) {
        #pragma omp simd private(d)
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * tanh_gate(x[i], &d);
    } else {
        for (int64_t i = 0; i < n; i++) {
            if (slope) slope[i] = x[i] > 0.0f ? 1.0f : 0.0f;
            y[i] = x[i] < 0.0f ? 0.0f : x[i]; /* NaN stays NaN, as in torch */
        }
    }
}

/* Blocks of 4096 floats (16 kB, in L1 with their inputs) shared among `threads` threads; few blocks run on
   the calling thread alone, where waking others would cost more than it saves. slope may be NULL. */
enum { BLOCK = 4096, SERIAL_BLOCKS = 4 };

void fromzero_activation_forward(int kind, const float *x, float *y, float *slope, int64_t n, int threads) {
    int64_t blocks = (n + BLOCK - 1) / BLOCK;
    #pragma omp parallel for schedule(static) num_threads(threads) if (blocks > SERIAL_BLOCKS)
    for (int64_t b = 0; b < blocks; b++) {
        int64_t start = b * BLOCK, count = n - start < BLOCK ? n - start : BLOCK;
        activate_into(kind, x + start, y + start, slope ? slope + start : NULL, count);
    }
}
