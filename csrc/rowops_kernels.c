/* float32 row and elementwise kernels of nnlite._rowops (contract in rowops.h).
 *
 * Written with GCC's generic vectors of a fixed 64 bytes (16 floats, 8 doubles): GCC lowers
 * each operation to the target's widest vectors (one AVX-512 register, two AVX2 ones, four
 * SSE2 ones), so the arithmetic and the order of every reduction are the same on every
 * target; only the contraction of a multiply and an add into one FMA differs between builds.
 *
 * Shared helpers, each written once:
 *   exp_nonpos_2p32  exp(x + lo) * 2^32 for x <= 0 in float (lo: the low part of a split
 *                    argument), Cephes' reduction and degree-7 polynomial; exp_nonpos16 is
 *                    it times 2^-32 (the softmax exp, unchanged bits)
 *   square_split16   x^2 as h + l with h exact (x's top 12 significand bits squared)
 *   erf_q16          erf(z) / z - 1 on |z| < 0.875 (float polynomial)
 *   erfcx16          erfc(a) exp(a^2) on a in [0.5, 10.5], in double (a polynomial in
 *                    t = 2 / (2 + a))
 *   erfc_2p32        erfc(a) * 2^32 = erfcx16 * exp_nonpos_2p32(-h, -l): relative accuracy
 *                    to the underflow (the exponent's argument is split exactly)
 * erf and gelu run in float lanes but for erfcx16 and gelu_tanh's v (double); measured
 * against float64 oracles over every 7th float: erf 0.89 ulp, gelu 3.03 ulp (x << 0
 * included), gelu tanh 2.98 ulp. softmax and layer_norm run in float with double sums.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "nnl_core.h"
#include "rowops.h"

/* the 64-byte vector types only pass between static inline functions here: no ABI concern */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));
typedef int64_t v8l __attribute__((vector_size(64)));
typedef uint64_t v8q __attribute__((vector_size(64)));

/* the smallest share of values worth a second thread (about 15-60 us of work here) */
#define ROWOPS_MIN_SHARE 16384.0

/* ------------------------------------------------------------------ vector helpers */

static NNL_ALWAYS_INLINE v16f ld16(const float *p)
{
    v16f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static NNL_ALWAYS_INLINE void st16(float *p, v16f v)
{
    memcpy(p, &v, sizeof v);
}

/* (a sum with a zero vector would turn -0.0 into +0.0) */
static NNL_ALWAYS_INLINE v16f splat16(float s)
{
    return (v16f){s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s};
}

static NNL_ALWAYS_INLINE v8d splat8(double s)
{
    return (v8d){s, s, s, s, s, s, s, s};
}

static NNL_ALWAYS_INLINE v16f sel16(v16i m, v16f a, v16f b)
{
    return (v16f)(((v16i)a & m) | ((v16i)b & ~m));
}

static NNL_ALWAYS_INLINE v8d sel8(v8l m, v8d a, v8d b)
{
    return (v8d)(((v8l)a & m) | ((v8l)b & ~m));
}

/* halves of a vector and their concatenation: register shuffles where the compiler has
 * __builtin_shufflevector (GCC 12, clang), else copies through memory (which keep a loop's
 * accumulator in memory) */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define ROWOPS_SHUFFLE 1
#endif
#endif

static NNL_ALWAYS_INLINE void halves16(v16f v, v8f *a, v8f *b)
{
#ifdef ROWOPS_SHUFFLE
    *a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
    *b = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
#else
    memcpy(a, &v, sizeof *a);
    memcpy(b, (const char *)&v + sizeof *a, sizeof *b);
#endif
}

/* the 16 floats as two vectors of 8 doubles */
static NNL_ALWAYS_INLINE void widen16(v16f v, v8d *lo, v8d *hi)
{
    v8f a, b;
    halves16(v, &a, &b);
    *lo = __builtin_convertvector(a, v8d);
    *hi = __builtin_convertvector(b, v8d);
}

static NNL_ALWAYS_INLINE v16f narrow16(v8d lo, v8d hi)
{
    v8f a = __builtin_convertvector(lo, v8f), b = __builtin_convertvector(hi, v8f);
#ifdef ROWOPS_SHUFFLE
    return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#else
    v16f v;
    memcpy(&v, &a, sizeof a);
    memcpy((char *)&v + sizeof a, &b, sizeof b);
    return v;
#endif
}

/* lanes summed by halves (the same order on every target) */
static NNL_ALWAYS_INLINE double hsum8(v8d v)
{
    double s[8];
    memcpy(s, &v, sizeof s);
    for (int w = 4; w > 0; w /= 2)
        for (int l = 0; l < w; l++)
            s[l] += s[l + w];
    return s[0];
}

static NNL_ALWAYS_INLINE float hmax16(v16f v)
{
    v8f a, b;
    halves16(v, &a, &b);
    a = (v8f)(((v8i)b & (b > a)) | ((v8i)a & ~(b > a)));
    float s[8];
    memcpy(s, &a, sizeof s);
    for (int w = 4; w > 0; w /= 2)
        for (int l = 0; l < w; l++)
            s[l] = s[l + w] > s[l] ? s[l + w] : s[l];
    return s[0];
}

/* n < 16 values of p in the first lanes of a vector, `pad` in the others */
static NNL_ALWAYS_INLINE v16f ld16_part(const float *p, ptrdiff_t n, float pad)
{
    float b[16];
    for (int l = 0; l < 16; l++)
        b[l] = pad;
    memcpy(b, p, (size_t)n * sizeof(float));
    return ld16(b);
}

static NNL_ALWAYS_INLINE void st16_part(float *p, ptrdiff_t n, v16f v)
{
    float b[16];
    st16(b, v);
    memcpy(p, b, (size_t)n * sizeof(float));
}

/* ------------------------------------------------------------------ exp */

/* exp(x + lo) * 2^32 for x <= 0 and |lo| <= 0.05 (lo: the low part of an argument that a
 * float cannot hold; 0 for a plain float x): k = round((x + lo) / ln2), r = x - k ln2 + lo
 * with ln2 split into a 9-bit hi part (k * hi exact: x - k hi is exact) and a lo part,
 * Cephes' degree-7 polynomial on |r| <= ln2/2 + |lo|, 2^(k+32) a normal float for
 * -158 <= k <= 0. Below -109 (also -inf) x counts as -109, where exp(x) * 2^32 is 2.1e-38
 * (exp(x) times up to 11, as in gelu, rounds to 0 from -106.4 down); a NaN fails the
 * compare and stays. */
static NNL_ALWAYS_INLINE v16f exp_nonpos_2p32(v16f x, v16f lo)
{
    const v16f lim = splat16(-109.0f);
    x = sel16(lim > x, lim, x);
    const float shift = 0x1.8p23f;     /* (x + lo) * log2(e) + shift rounds to an integer k */
    const v16f t = (x + lo) * 0x1.715476p+0f + shift;
    const v16f k = t - shift;
    /* ln2 = 0x1.63p-1 - 0x1.bd0106p-13 (Cephes' C1, C2): k * C1 is exact for |k| < 2^15 */
    const v16f r = ((x - k * 0x1.63p-1f) + k * 2.12194440e-4f) + lo;
    v16f p = splat16(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    /* the low bits of t hold k + 0x400000 */
    const v16u e = (((v16u)t - 0x4B400000u) + (127u + 32u)) << 23;
    return p * (v16f)e;
}

/* exp(x) for x <= 0, the result times 2^-32 in one rounding (a subnormal result is rounded
 * once): 0 from -104 down (where exp rounds to 0), exactly 1 at 0, NaN stays NaN */
static NNL_ALWAYS_INLINE v16f exp_nonpos16(v16f x)
{
    return exp_nonpos_2p32(x, splat16(0.0f)) * 0x1p-32f;
}

/* ------------------------------------------------------------------ erf */

static NNL_ALWAYS_INLINE v16f abs16(v16f v)
{
    return (v16f)((v16u)v & 0x7fffffffu);
}

/* erf(z) / z - 1 = Q(z^2) on z^2 in [0, 0.875^2] (erf(z) = z + z Q: the rounding of the
 * leading 2 / sqrt(pi) stays out), highest degree first. A minimax fit (float64 Lawson
 * iteration against mpmath, coefficients rounded to float32 from the top down, the lower
 * ones refitted): |erf(z) - z (1 + Q)| <= 2^-25.9 erf(z) in exact arithmetic. */
static const float ERF_Q[6] = {
    -0x1.453aaap-11f, 0x1.49c9fep-8f, -0x1.b6f38ap-6f, 0x1.ce211ep-4f, -0x1.81270cp-2f,
    0x1.06eba8p-3f,
};

static NNL_ALWAYS_INLINE v16f erf_q16(v16f s)
{
    v16f q = splat16(ERF_Q[0]);
    for (int i = 1; i < 6; i++)
        q = q * s + ERF_Q[i];
    return q;
}

/* erfc(a) exp(a^2) = G(t), t = 2 / (2 + a), on a in [0.5, 10.5] (t in [0.16, 0.8]), highest
 * degree first: a minimax fit (float64 Lawson iteration against mpmath), relative error
 * <= 2^-29.1. Evaluated in double: in float the two roundings of t (amplified up to twice
 * by G's slope) and Horner's cancellation cost up to 5.8 x 2^-24 (a float rational in a:
 * 8 x 2^-24). */
static const double ERFCX_G[10] = {
    -0.07368309871403829, 0.34816933760520535, -0.6053903911030454, 0.4006795617149962,
    -0.10452416617437842, 0.2339741639582993, 0.2351950370083022, 0.28358361329500237,
    0.2819855212003334, 3.4982388223414596e-06,
};

/* erfc(a) exp(a^2) for a = v * scale (the product in double) */
static NNL_ALWAYS_INLINE v16f erfcx16(v16f v, double scale)
{
    v8d a0, a1;
    widen16(v, &a0, &a1);
    const v8d t0 = 2.0 / (2.0 + a0 * scale), t1 = 2.0 / (2.0 + a1 * scale);
    v8d g0 = splat8(ERFCX_G[0]), g1 = g0;
    for (int i = 1; i < 10; i++) {
        g0 = g0 * t0 + ERFCX_G[i];
        g1 = g1 * t1 + ERFCX_G[i];
    }
    return narrow16(g0, g1);
}

/* x^2 = h + l: h = xh^2 exact for xh = x with its 12 low significand bits cleared (12
 * significant bits), l = (x + xh) (x - xh) rounded (relative error 2^-24 of l <= 2^-11 x^2):
 * h + l carries x^2 to about 2^-35 relative, exp(-(h + l)) to about 2^-28 relative for
 * x^2 <= 104. x finite (the caller clamps it). */
static NNL_ALWAYS_INLINE void square_split16(v16f x, v16f *h, v16f *l)
{
    const v16f xh = (v16f)((v16u)x & 0xfffff000u);
    *h = xh * xh;
    *l = (x + xh) * (x - xh);
}

/* erfc(a) * 2^32 for a = v * scale >= 0.5 (v <= 16: the caller clamps it) from h + l = a^2;
 * 0 where h > 104 (there erfc(a) * 16 < 2^-150: every result built from it rounds to 0) */
static NNL_ALWAYS_INLINE v16f erfc_2p32(v16f v, double scale, v16f h, v16f l)
{
    const v16f e = erfcx16(v, scale) * exp_nonpos_2p32(-h, -l);
    return sel16(h > 104.0f, splat16(0.0f), e);
}

/* ------------------------------------------------------------------ elementwise */

/* erf(x): x + x Q(x^2) for |x| < 0.875, else +-(1 - erfc|x|) (erfc|x| <= 0.22, so the
 * subtraction loses at most a quarter of erfc's relative error); erfc|x| < 2^-25 from
 * |x| = 3.92 on, where erf rounds to +-1 */
static NNL_ALWAYS_INLINE v16f erf16(v16f x)
{
    const v16f a = abs16(x);
    const v16f small = x + x * erf_q16(x * x);
    const v16f ac = sel16(a > 16.0f, splat16(16.0f), a);     /* exp(-256) * 2^32 = 0 */
    v16f h, l;
    square_split16(ac, &h, &l);
    const v16f ec = erfc_2p32(ac, 1.0, h, l) * 0x1p-32f;
    const v16u sign = (v16u)x & 0x80000000u;
    const v16f big = (v16f)((v16u)(1.0f - ec) | sign);
    return sel16(a < 0.875f, small, big);
}

/* x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2, z = x / sqrt 2: for |z| < 0.5
 * x (1/2 + (x c)(1 + Q(z^2))), c = 1 / (2 sqrt 2) (0.5 erf(z)); else from e = erfc|z|:
 * x (1 - e / 2) for x > 0 and (x / 2) e for x < 0, where e is kept scaled by 2^32 until
 * the last product (one rounding of a subnormal result) and |z|^2 = x^2 / 2 is split
 * exactly, so e keeps its relative accuracy to the underflow. t = C / (C + |x|),
 * C = float(2 sqrt 2), is 2 / (2 + |z|) up to the constant's rounding (2^-26). */
static NNL_ALWAYS_INLINE v16f gelu16(v16f x)
{
    const v16f a = abs16(x);
    const v16f xc = x * 0x1.6a09e6p-2f;
    const v16f small = x * (0.5f + (xc + xc * erf_q16((x * x) * 0.5f)));
    const v16f ac = sel16(a > 16.0f, splat16(16.0f), a);     /* exp(-128) * 2^32 = 0 */
    v16f h, l;
    square_split16(ac, &h, &l);
    const v16f e = erfc_2p32(ac, 0.70710678118654752440, h * 0.5f, l * 0.5f);
    const v16f pos = x * (1.0f - e * 0x1p-33f);
    const v16f neg = ((x * 0.5f) * e) * 0x1p-32f;
    return sel16(a < 0x1.6a09e6p-1f, small, sel16(x > 0.0f, pos, neg));
}

/* x sigmoid(v), v = 2 sqrt(2/pi) (x + 0.044715 x^3): v in double (for v << 0 the result's
 * relative error is v's absolute one) as vh + vl (two floats), clamped to [-120, 120];
 * sigmoid from e = exp(-|v|) on both sides, x / (1 + e) or x e / (1 + e), e scaled by 2^32
 * until the last product and 0 for v < -109 (so that x = -inf gives -inf * 0 = NaN, as the
 * NumPy formula does) */
static NNL_ALWAYS_INLINE v16f gelu_tanh16(v16f x)
{
    v8d x0, x1;
    widen16(x, &x0, &x1);
    const double c1 = 2.0 * 0.79788456080286535588, c3 = c1 * 0.044715;
    v8d v0 = x0 * (c1 + c3 * (x0 * x0)), v1 = x1 * (c1 + c3 * (x1 * x1));
    v0 = sel8(v0 > 120.0, splat8(120.0), sel8(v0 < -120.0, splat8(-120.0), v0));
    v1 = sel8(v1 > 120.0, splat8(120.0), sel8(v1 < -120.0, splat8(-120.0), v1));
    const v16f vh = narrow16(v0, v1);
    v8d h0, h1;
    widen16(vh, &h0, &h1);
    const v16f vl = narrow16(v0 - h0, v1 - h1);
    /* -|v| = -|vh| - vl sign(vh) */
    const v16u flip = ((v16u)vh & 0x80000000u) ^ 0x80000000u;
    const v16f e = exp_nonpos_2p32((v16f)((v16u)vh | 0x80000000u), (v16f)((v16u)vl ^ flip));
    const v16f d = 1.0f + e * 0x1p-32f;
    const v16f en = sel16(vh < -109.0f, splat16(0.0f), e);
    return sel16(vh >= 0.0f, x / d, ((x * en) / d) * 0x1p-32f);
}

#define EW_ERF 0
#define EW_GELU 1
#define EW_GELU_TANH 2

/* n values of one unit, 16 at a time (the last partial block through a padded buffer) */
#define EW_LOOP(FN)                                                                         \
    for (ptrdiff_t i = 0; i < n; i += 16) {                                                 \
        const ptrdiff_t m = n - i < 16 ? n - i : 16;                                        \
        if (m == 16)                                                                        \
            st16(y + i, FN(ld16(x + i)));                                                   \
        else                                                                                \
            st16_part(y + i, m, FN(ld16_part(x + i, m, 0.0f)));                             \
    }

static void ew_values(const float *x, float *y, ptrdiff_t n, int op)
{
    switch (op) {
    case EW_ERF:
        EW_LOOP(erf16)
        break;
    case EW_GELU:
        EW_LOOP(gelu16)
        break;
    default:
        EW_LOOP(gelu_tanh16)
        break;
    }
}

typedef struct {
    const float *x;
    float *y;
    ptrdiff_t n;
    int op;
} ew_ctx;

static void ew_unit(void *ctx, nnl_idx u, int tid, int first)
{
    const ew_ctx *c = (const ew_ctx *)ctx;
    const ptrdiff_t a = u * NNL_ROWOPS_CHUNK;
    const ptrdiff_t b = nnl_min(c->n, a + NNL_ROWOPS_CHUNK);
    (void)tid, (void)first;
    ew_values(c->x + a, c->y + a, b - a, c->op);
}

static void ew_run(const float *x, float *y, ptrdiff_t n, int op, int nt)
{
    if (n <= 0)
        return;
    ew_ctx c = {x, y, n, op};
    const nnl_idx units = nnl_cdiv(n, NNL_ROWOPS_CHUNK);
    nt = nnl_team_by_share(nt, (double)n, ROWOPS_MIN_SHARE);
    nnl_parallel_for((int)nnl_min(nt, units), units, ew_unit, &c);
}

void nnl_erf_s(const float *x, float *y, ptrdiff_t n, int nt)
{
    ew_run(x, y, n, EW_ERF, nt);
}

void nnl_gelu_s(const float *x, float *y, ptrdiff_t n, int tanh_form, int nt)
{
    ew_run(x, y, n, tanh_form ? EW_GELU_TANH : EW_GELU, nt);
}

void nnl_exp_nonpos_s(const float *x, float *y, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i += 16) {
        const ptrdiff_t m = n - i < 16 ? n - i : 16;
        st16_part(y + i, m, exp_nonpos16(ld16_part(x + i, m, 0.0f)));
    }
}

/* ------------------------------------------------------------------ softmax */

/* values summed in one float vector before its lanes are added to the row's double sums */
#define SOFTMAX_RUN 128

/* One row (y may be x). max; e = exp(x - max), summed in float lanes over runs of
 * SOFTMAX_RUN values (8 terms a lane) and the runs in double lanes; then y = e * (1 / sum),
 * or y = ((x - max) - lh) - ll with log(sum) = lh + ll split into floats. The last partial
 * block is read padded with -inf (its pad lanes add exp(-inf) = 0). NaN never wins the max
 * compare, so a NaN reaches the sum and every output; +inf gives inf - inf = NaN, a row of
 * -inf gives -inf - -inf = NaN. */
static void softmax_row(const float *x, float *y, ptrdiff_t n, int log_form)
{
    const ptrdiff_t full = n & ~(ptrdiff_t)15, rem = n - full;
    const v16f tail = ld16_part(x + full, rem, -INFINITY);
    v16f m = tail;
    for (ptrdiff_t i = 0; i < full; i += 16) {
        const v16f v = ld16(x + i);
        m = sel16(v > m, v, m);
    }
    const v16f mx = splat16(hmax16(m));
    const v16f et = exp_nonpos16(tail - mx);
    v8d s0, s1, lo, hi;
    widen16(et, &s0, &s1);
    for (ptrdiff_t r = 0; r < full; r += SOFTMAX_RUN) {
        const ptrdiff_t end = nnl_min(full, r + SOFTMAX_RUN);
        v16f acc = splat16(0.0f);
        for (ptrdiff_t i = r; i < end; i += 16) {
            const v16f e = exp_nonpos16(ld16(x + i) - mx);
            if (!log_form)
                st16(y + i, e);
            acc += e;
        }
        widen16(acc, &lo, &hi);
        s0 += lo;
        s1 += hi;
    }
    const double sum = hsum8(s0 + s1);
    if (!log_form) {
        const float inv = (float)(1.0 / sum);
        for (ptrdiff_t i = 0; i < full; i += 16)
            st16(y + i, ld16(y + i) * inv);
        if (rem)
            st16_part(y + full, rem, et * inv);
        return;
    }
    const double lse = log(sum);
    const float lh = (float)lse, ll = (float)(lse - (double)lh);
    for (ptrdiff_t i = 0; i < full; i += 16)
        st16(y + i, ((ld16(x + i) - mx) - lh) - ll);
    if (rem)
        st16_part(y + full, rem, ((tail - mx) - lh) - ll);
}

/* ------------------------------------------------------------------ layer norm */

/* One row (y may be x): mean = sum / n and var = sum((x - mean)^2) / n in double (two
 * passes, so an offset like 1e4 + noise keeps its variance), then
 * y = ((x - mh) - ml) * rstd [* w] [+ b] in float with the mean split into float parts
 * mh + ml (x - mh is exact near the mean: the mean's float rounding shifts no output). */
static void layer_norm_row(const float *x, float *y, ptrdiff_t n, const float *w,
                           const float *b, float eps, float *mean_out, float *rstd_out)
{
    const ptrdiff_t full = n & ~(ptrdiff_t)15;
    v8d s0, s1, lo, hi;
    widen16(ld16_part(x + full, n - full, 0.0f), &s0, &s1);
    for (ptrdiff_t i = 0; i < full; i += 16) {
        widen16(ld16(x + i), &lo, &hi);
        s0 += lo;
        s1 += hi;
    }
    const double mean = hsum8(s0 + s1) / (double)n;
    s0 = s1 = splat8(0.0);
    for (ptrdiff_t i = 0; i < full; i += 16) {
        widen16(ld16(x + i), &lo, &hi);
        lo -= mean;
        hi -= mean;
        s0 += lo * lo;
        s1 += hi * hi;
    }
    double q = hsum8(s0 + s1);
    for (ptrdiff_t i = full; i < n; i++)
        q += ((double)x[i] - mean) * ((double)x[i] - mean);
    const double rstd = 1.0 / sqrt(q / (double)n + (double)eps);
    const float mh = (float)mean, ml = (float)(mean - (double)mh), rs = (float)rstd;
    if (mean_out)
        *mean_out = (float)mean;
    if (rstd_out)
        *rstd_out = rs;
    for (ptrdiff_t i = 0; i < full; i += 16) {
        v16f v = ((ld16(x + i) - mh) - ml) * rs;
        if (w)
            v *= ld16(w + i);
        if (b)
            v += ld16(b + i);
        st16(y + i, v);
    }
    for (ptrdiff_t i = full; i < n; i++) {
        float v = ((x[i] - mh) - ml) * rs;
        if (w)
            v *= w[i];
        if (b)
            v += b[i];
        y[i] = v;
    }
}

/* ------------------------------------------------------------------ row units */

typedef struct {
    const float *x;
    float *y;
    ptrdiff_t xrs, yrs, rows, n, per;
    int log_form;
    const float *w, *b;
    float eps;
    float *mean, *rstd;
} rows_ctx;

static void softmax_unit(void *ctx, nnl_idx u, int tid, int first)
{
    const rows_ctx *c = (const rows_ctx *)ctx;
    (void)tid, (void)first;
    for (ptrdiff_t r = u * c->per; r < nnl_min(c->rows, (u + 1) * c->per); r++)
        softmax_row(c->x + r * c->xrs, c->y + r * c->yrs, c->n, c->log_form);
}

static void layer_norm_unit(void *ctx, nnl_idx u, int tid, int first)
{
    const rows_ctx *c = (const rows_ctx *)ctx;
    (void)tid, (void)first;
    for (ptrdiff_t r = u * c->per; r < nnl_min(c->rows, (u + 1) * c->per); r++)
        layer_norm_row(c->x + r * c->xrs, c->y + r * c->yrs, c->n, c->w, c->b, c->eps,
                       c->mean ? c->mean + r : NULL, c->rstd ? c->rstd + r : NULL);
}

/* rows in units of about NNL_ROWOPS_CHUNK values (at least one row each) on up to nt threads */
static void rows_run(rows_ctx *c, nnl_unit_fn fn, int nt)
{
    if (c->rows <= 0)
        return;
    c->per = nnl_max(1, NNL_ROWOPS_CHUNK / nnl_max(c->n, 1));
    const nnl_idx units = nnl_cdiv(c->rows, c->per);
    nt = nnl_team_by_share(nt, (double)c->rows * (double)c->n, ROWOPS_MIN_SHARE);
    nnl_parallel_for((int)nnl_min(nt, units), units, fn, c);
}

void nnl_softmax_rows_s(const float *x, ptrdiff_t xrs, float *y, ptrdiff_t yrs, ptrdiff_t rows,
                        ptrdiff_t n, int log_form, int nt)
{
    if (n <= 0)
        return;
    rows_ctx c = {x, y, xrs, yrs, rows, n, 1, log_form, NULL, NULL, 0.0f, NULL, NULL};
    rows_run(&c, softmax_unit, nt);
}

void nnl_layer_norm_rows_s(const float *x, ptrdiff_t xrs, float *y, ptrdiff_t yrs,
                           ptrdiff_t rows, ptrdiff_t n, const float *w, const float *b,
                           float eps, float *mean, float *rstd, int nt)
{
    rows_ctx c = {x, y, xrs, yrs, rows, n, 1, 0, w, b, eps, mean, rstd};
    rows_run(&c, layer_norm_unit, nt);
}
