/* AVX-512 lane masks and short strided row gathers, shared by the kernels that move the short
 * rows of small maps as whole vectors under a lane mask (im2col_rows.c, convfast_direct.c's
 * row copies, pool_max.c's 3x3 'same' planes): masked-off lanes are neither read nor written,
 * so a row that ends at its buffer's end (or starts before its row, a negative padding
 * offset) is safe. Without AVX-512 only the phase-row copies below are defined (their element
 * loops). */
#ifndef NNLITE_LANES_H
#define NNLITE_LANES_H

#include "nnl_core.h"

#if defined(__AVX512F__)
#include <immintrin.h>

/* lanes l of a 16-lane vector with lo <= l < hi (clipped to [0, 16)) */
static inline __mmask16 nnl_lanes16(nnl_idx lo, nnl_idx hi)
{
    const unsigned l = (unsigned)nnl_clamp(lo, 0, 16), h = (unsigned)nnl_clamp(hi, 0, 16);
    return (__mmask16)(((1u << h) - 1u) & ~((1u << l) - 1u));   /* 0 when h <= l */
}

/* lanes l of an 8-lane vector with lo <= l < hi (clipped to [0, 8)) */
static inline __mmask8 nnl_lanes8(nnl_idx lo, nnl_idx hi)
{
    const unsigned l = (unsigned)nnl_clamp(lo, 0, 8), h = (unsigned)nnl_clamp(hi, 0, 8);
    return (__mmask8)(((1u << h) - 1u) & ~((1u << l) - 1u));     /* 0 when h <= l */
}

/* s[2l] for 16 lanes l from two masked loads (masks `a`, `b` over s[0..15] and s[16..31]) and
 * an even-lane permute */
static inline __m512 nnl_gather16_even_s(const float *s, __mmask16 a, __mmask16 b)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    return _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(a, s), even,
                                  _mm512_maskz_loadu_ps(b, s + 16));
}

/* s[l * sw] in the lanes lo <= l < hi, 0 in the others (sw 1 or 2): one masked load, or two
 * over s[2lo .. 2hi - 2] and an even-lane permute; nothing outside that span is read */
static inline __m512 nnl_gather16_s(const float *s, nnl_idx sw, nnl_idx lo, nnl_idx hi)
{
    if (sw == 1)
        return _mm512_maskz_loadu_ps(nnl_lanes16(lo, hi), s);
    return nnl_gather16_even_s(s, nnl_lanes16(2 * lo, 2 * hi - 1),
                               nnl_lanes16(2 * lo - 16, 2 * hi - 17));
}

/* the same for 8 doubles */
static inline __m512d nnl_gather8_d(const double *s, nnl_idx sw, nnl_idx lo, nnl_idx hi)
{
    if (sw == 1)
        return _mm512_maskz_loadu_pd(nnl_lanes8(lo, hi), s);
    const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    return _mm512_permutex2var_pd(_mm512_maskz_loadu_pd(nnl_lanes8(2 * lo, 2 * hi - 1), s),
                                  even,
                                  _mm512_maskz_loadu_pd(nnl_lanes8(2 * lo - 8, 2 * hi - 9),
                                                        s + 8));
}

#endif

/* One row of a stride-phase plane: d[q] = s[q*sw] for q in [lo, hi) (the columns whose source
 * lies in the image: nnl_col_range, made once per plane by the caller), 0 for the others in
 * [0, n) (the padding). AVX-512 and sw 1 or 2: whole vectors by nnl_gather16_s /
 * nnl_gather8_d, the last one stored under a lane mask, so nothing outside d[0..n) is written
 * and only s[lo*sw .. (hi-1)*sw] is read (s may point before its row); else element by
 * element. The implicit GEMM's band copies (convfast_implicit_tmpl.h) and the few-channel
 * kernel's phase planes (convfast_phase_tmpl.h) build their rows with these. */
#if defined(__AVX512F__)
/* their vector loop, L-lane vectors V (sw 1 or 2) */
#define NNL_STRIDED_ROW_VECTORS(V, L, GATHER, STORE, MSTORE, LANES)                          \
    if (sw <= 2) {                                                                           \
        for (nnl_idx q = 0; q < n; q += L) {                                                 \
            const V v = GATHER(s + q * sw, sw, lo - q, hi - q);                              \
            if (n - q >= L)                                                                  \
                STORE(d + q, v);                                                             \
            else                                                                             \
                MSTORE(d + q, LANES(0, n - q), v);                                           \
        }                                                                                    \
        return;                                                                              \
    }
#else
#define NNL_STRIDED_ROW_VECTORS(V, L, GATHER, STORE, MSTORE, LANES)
#endif

#define NNL_STRIDED_ROW(SFX, T, V, L, GATHER, STORE, MSTORE, LANES)                          \
    static inline void nnl_strided_row_##SFX(T *d, const T *s, nnl_idx n, nnl_idx sw,        \
                                             nnl_idx lo, nnl_idx hi)                         \
    {                                                                                        \
        NNL_STRIDED_ROW_VECTORS(V, L, GATHER, STORE, MSTORE, LANES)                          \
        for (nnl_idx q = 0; q < lo; q++)                                                     \
            d[q] = 0;                                                                        \
        for (nnl_idx q = lo; q < hi; q++)                                                    \
            d[q] = s[q * sw];                                                                \
        for (nnl_idx q = hi; q < n; q++)                                                     \
            d[q] = 0;                                                                        \
    }

NNL_STRIDED_ROW(s, float, __m512, 16, nnl_gather16_s, _mm512_storeu_ps, _mm512_mask_storeu_ps,
                nnl_lanes16)
NNL_STRIDED_ROW(d, double, __m512d, 8, nnl_gather8_d, _mm512_storeu_pd, _mm512_mask_storeu_pd,
                nnl_lanes8)

#endif
