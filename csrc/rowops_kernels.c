/* float32 row and elementwise kernels of nnlite._rowops (contract in rowops.h).
 *
 * Written with GCC's generic vectors of a fixed 64 bytes (16 floats, 8 doubles): GCC lowers
 * each operation to the target's widest vectors (one AVX-512 register, two AVX2 ones, four
 * SSE2 ones), so the arithmetic and the order of every reduction are the same on every
 * target; only the contraction of a multiply and an add into one FMA differs between builds.
 *
 * Shared helpers, each written once:
 *   exp_nonpos16  float exp(x) for x <= 0: x = k ln2 + r with ln2 split into a 9-bit hi part
 *                 (k * hi exact) and a lo part, Cephes' degree-7 polynomial on |r| <= ln2/2,
 *                 2^k applied as 2^(k+32) * 2^-32 so that a subnormal result is rounded once;
 *                 0 from -104 down (where exp rounds to 0), exactly 1 at 0, NaN stays NaN
 *   exp_nonpos8   the same in double (degree-10 Taylor polynomial, relative error < 3e-13),
 *                 0 below -708
 *   erf_parts8    in double: erf(z) = z P(z^2) for |z| < 1 and erfc(|z|) = t Q(t) exp(-z^2),
 *                 t = 2 / (2 + |z|), for the rest; P and Q are Chebyshev fits (mpmath, 8 and
 *                 13 terms) with relative errors below 4e-11 and 6e-11, so a float result
 *                 computed from them is the correctly rounded one but for rare near-ties
 * erf and gelu run in double from the float inputs (for a float z, z^2 is exact in double,
 * so erfc keeps its relative accuracy far into the tail: gelu(x) = x Phi(x) for x << 0);
 * softmax and layer_norm run in float with double sums.
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

static NNL_ALWAYS_INLINE v16f exp_nonpos16(v16f x)
{
    /* below -104 (also -inf) as at -104, where exp (6.8e-46 < 2^-150) rounds to 0; a NaN
     * fails the compare and stays */
    const v16f lim = splat16(-104.0f);
    x = sel16(lim > x, lim, x);
    const float shift = 0x1.8p23f;     /* x * log2(e) + shift rounds to an integer k */
    const v16f t = x * 0x1.715476p+0f + shift;
    const v16f k = t - shift;
    /* ln2 = 0x1.63p-1 - 0x1.bd0106p-13 (Cephes' C1, C2): k * C1 is exact for |k| < 2^15 */
    const v16f r = (x - k * 0x1.63p-1f) + k * 2.12194440e-4f;
    v16f p = splat16(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    /* the low bits of t hold k + 0x400000; 2^(k+32) is a normal float for -150 <= k <= 95 */
    const v16u e = (((v16u)t - 0x4B400000u) + (127u + 32u)) << 23;
    return p * (v16f)e * 0x1p-32f;
}

static NNL_ALWAYS_INLINE v8d exp_nonpos8(v8d x)
{
    const double shift = 0x1.8p52;
    const v8d t = x * 0x1.71547652b82fep+0 + shift;
    const v8d k = t - shift;
    /* fdlibm's ln2_hi (32 significant bits: k * hi is exact) and ln2_lo */
    const v8d r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
    v8d p = splat8(1.0 / 3628800.0);
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    const v8q e = (((v8q)t - 0x4338000000000000ull) + 1023u) << 52;
    return sel8(x < -708.0, splat8(0.0), p * (v8d)e);
}

/* ------------------------------------------------------------------ erf */

/* erf(sqrt s) / sqrt s on s in [0, 1], highest degree first */
static const double ERF_P[8] = {
    -9.667044571486996e-06, 0.00011265959025606609, -0.0008484080405535107,
    0.005221031807858023, -0.026865430727670243, 0.11283782495236845, -0.3761263846802871,
    1.1283791670615435,
};

/* erfc(a) exp(a^2) / t, a = 2 / t - 2, on t in [0, 2/3] (a >= 1), highest degree first */
static const double ERFC_Q[13] = {
    -0.007273640279542508, 0.11172634161233753, -0.36560756642893144, 0.49048386560887336,
    -0.26073750816445873, 0.04119523264488968, -0.07963138853925558, -0.0007855425149110735,
    0.08338385832848645, 0.17633071389003827, 0.24683228687205921, 0.2820947996154733,
    0.2820947917583987,
};

/* *es = erf(z) for |z| < 1 and *ec = erfc(|z|) for |z| >= 1 (both computed for every lane);
 * returns the lanes with |z| < 1 (not NaN). erfc(|z|) is 0 from |z| ~ 26.6 on (exp(-z^2)
 * below -708), also for |z| = inf (t = 0). */
static NNL_ALWAYS_INLINE v8l erf_parts8(v8d z, v8d *es, v8d *ec)
{
    const v8d s = z * z;
    const v8d a = (v8d)((v8l)z & 0x7fffffffffffffffll);
    v8d p = splat8(ERF_P[0]);
    for (int i = 1; i < 8; i++)
        p = p * s + ERF_P[i];
    *es = z * p;
    const v8d t = 2.0 / (2.0 + a);
    v8d q = splat8(ERFC_Q[0]);
    for (int i = 1; i < 13; i++)
        q = q * t + ERFC_Q[i];
    *ec = t * q * exp_nonpos8(-s);
    return a < 1.0;
}

static NNL_ALWAYS_INLINE v8d copysign8(v8d mag, v8d sgn)
{
    const v8l sign = (v8l)splat8(-0.0);
    return (v8d)(((v8l)mag & ~sign) | ((v8l)sgn & sign));
}

/* ------------------------------------------------------------------ elementwise */

static NNL_ALWAYS_INLINE v8d erf8(v8d x)
{
    v8d es, ec;
    const v8l small = erf_parts8(x, &es, &ec);
    return sel8(small, es, copysign8(1.0 - ec, x));
}

/* x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2 */
static NNL_ALWAYS_INLINE v8d gelu8(v8d x)
{
    v8d es, ec;
    const v8d z = x * -0.70710678118654752440;
    const v8l small = erf_parts8(z, &es, &ec);
    const v8d erfc = sel8(small, 1.0 - es, sel8(z < 0.0, 2.0 - ec, ec));
    return (x * 0.5) * erfc;
}

/* x sigmoid(v), v = 2 sqrt(2/pi) (x + 0.044715 x^3): sigmoid from e = exp(-|v|) on both
 * sides (1 / (1 + e) or e / (1 + e)), so neither tail cancels or overflows */
static NNL_ALWAYS_INLINE v8d gelu_tanh8(v8d x)
{
    const v8d v = (2.0 * 0.79788456080286535588) * (x + 0.044715 * (x * x * x));
    const v8d av = (v8d)((v8l)v & 0x7fffffffffffffffll);
    const v8d e = exp_nonpos8(-av);
    const v8d r = 1.0 / (1.0 + e);
    return x * sel8(v >= 0.0, r, e * r);
}

#define EW_ERF 0
#define EW_GELU 1
#define EW_GELU_TANH 2

/* n values of one unit, 16 at a time (the last partial block through a padded buffer) */
#define EW_LOOP(FN)                                                                         \
    for (ptrdiff_t i = 0; i < n; i += 16) {                                                 \
        const ptrdiff_t m = n - i < 16 ? n - i : 16;                                        \
        v8d lo, hi;                                                                         \
        widen16(m == 16 ? ld16(x + i) : ld16_part(x + i, m, 0.0f), &lo, &hi);               \
        const v16f v = narrow16(FN(lo), FN(hi));                                            \
        if (m == 16)                                                                        \
            st16(y + i, v);                                                                 \
        else                                                                                \
            st16_part(y + i, m, v);                                                         \
    }

static void ew_values(const float *x, float *y, ptrdiff_t n, int op)
{
    switch (op) {
    case EW_ERF:
        EW_LOOP(erf8)
        break;
    case EW_GELU:
        EW_LOOP(gelu8)
        break;
    default:
        EW_LOOP(gelu_tanh8)
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
