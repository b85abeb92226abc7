/* Vector fill of one tap's rows of im2col columns (see im2col_rows.h).
 *
 * The element loop of im2col.pyx costs a few cycles per row of set-up and clipping on top of
 * its copies, and the short rows of small maps (7 to 28 outputs: ResNet-50's 3x3/2 convs at
 * 56x56 to 14x14 input) have few elements to spread that over. Here a tap's column-range masks
 * are made once, then each output row is 16-lane vectors: stride 1 one masked load, stride 2
 * two masked loads and one even-lane permute, each stored whole with the padding lanes zero.
 * Masked-out lanes are never read, so nothing outside the plane is touched. The values are the
 * source elements themselves: the same columns as the element loop. */
#include "im2col_rows.h"

#if defined(__AVX512F__)
#include <immintrin.h>

/* bits [lo, hi) of a 16-bit lane mask (0 <= lo, hi <= 16) */
static inline __mmask16 rows_bits(nnl_idx lo, nnl_idx hi)
{
    if (hi <= lo)
        return 0;
    const unsigned span = (hi - lo >= 16) ? 0xFFFFu : ((1u << (hi - lo)) - 1u);
    return (__mmask16)(span << lo);
}

/* lanes p of the input vector starting at position 16*v (v = 0, 1) of a stride-2 gather whose
 * output lanes [lo, hi) are wanted: the even positions 2*l - 16*v with l in [lo, hi) */
static inline __mmask16 rows_even(nnl_idx lo, nnl_idx hi, int v)
{
    unsigned m = 0;
    for (nnl_idx l = lo; l < hi; l++) {
        const nnl_idx p = 2 * l - 16 * v;
        if (p >= 0 && p < 16)
            m |= 1u << p;
    }
    return (__mmask16)m;
}

enum { ROWS_MAXV = 16 };   /* output vectors per row handled here: OW up to 256 */

int nnl_im2col_tap_s(const float *x, nnl_idx H, nnl_idx W, float *dst, nnl_idx oh, nnl_idx ow,
                     nnl_idx sh, nnl_idx sw, nnl_idx roff, nnl_idx off, nnl_idx j0, nnl_idx j1)
{
    const nnl_idx nv = (ow + 15) / 16;
    if ((sw != 1 && sw != 2) || nv > ROWS_MAXV || ow < 1)
        return 0;
    __mmask16 keep[ROWS_MAXV], ma[ROWS_MAXV], mb[ROWS_MAXV];
    for (nnl_idx v = 0; v < nv; v++) {
        const nnl_idx q = 16 * v, n = ow - q < 16 ? ow - q : 16;
        const nnl_idx lo = nnl_clamp(j0 - q, 0, n), hi = nnl_clamp(j1 - q, 0, n);
        keep[v] = rows_bits(0, n);                   /* the lanes stored */
        if (sw == 1) {
            ma[v] = rows_bits(lo, hi);
            mb[v] = 0;
        } else {
            ma[v] = rows_even(lo, hi, 0);
            mb[v] = rows_even(lo, hi, 1);
        }
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const __m512 zero = _mm512_setzero_ps();
    /* A row whose whole vectors end inside this tap's block stores them whole: the lanes past
     * OW land on the next rows of the tap, written after it (masked stores cost more on some
     * CPUs, e.g. Zen 4); the last rows store only their lanes (past the block: the next tap,
     * or another thread's plane). */
    __mmask16 all[ROWS_MAXV];
    for (nnl_idx v = 0; v < nv; v++)
        all[v] = (__mmask16)0xFFFF;
    for (nnl_idx i = 0; i < oh; i++) {
        float *d = dst + i * ow;
        const __mmask16 *st = i * ow + 16 * nv <= oh * ow ? all : keep;
        const nnl_idx r = i * sh + roff;
        if ((size_t)r >= (size_t)H) {                /* a fully padded source row */
            for (nnl_idx v = 0; v < nv; v++)
                _mm512_mask_storeu_ps(d + 16 * v, st[v], zero);
            continue;
        }
        /* output j reads s[j*sw]; s may point before the row (a negative off): only the
         * masked lanes, all inside the row, are read */
        const float *s = x + r * W + off;
        for (nnl_idx v = 0; v < nv; v++) {
            __m512 val;
            if (sw == 1) {
                val = _mm512_maskz_loadu_ps(ma[v], s + 16 * v);
            } else {
                const __m512 a = _mm512_maskz_loadu_ps(ma[v], s + 32 * v);
                const __m512 b = _mm512_maskz_loadu_ps(mb[v], s + 32 * v + 16);
                val = _mm512_permutex2var_ps(a, even, b);
            }
            if (st[v] == 0xFFFF)
                _mm512_storeu_ps(d + 16 * v, val);
            else
                _mm512_mask_storeu_ps(d + 16 * v, st[v], val);
        }
    }
    return 1;
}

#else

int nnl_im2col_tap_s(const float *x, nnl_idx H, nnl_idx W, float *dst, nnl_idx oh, nnl_idx ow,
                     nnl_idx sh, nnl_idx sw, nnl_idx roff, nnl_idx off, nnl_idx j0, nnl_idx j1)
{
    (void)x, (void)H, (void)W, (void)dst, (void)oh, (void)ow, (void)sh, (void)sw, (void)roff;
    (void)off, (void)j0, (void)j1;
    return 0;
}

#endif
