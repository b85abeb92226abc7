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
#include "nnl_lanes.h"

enum { ROWS_MAXV = 16 };   /* output vectors per row handled here: OW up to 256 */

int nnl_im2col_tap_s(const float *x, nnl_idx H, nnl_idx W, float *dst, nnl_idx oh, nnl_idx ow,
                     nnl_idx sh, nnl_idx sw, nnl_idx roff, nnl_idx off, nnl_idx j0, nnl_idx j1)
{
    const nnl_idx nv = (ow + 15) / 16;
    if ((sw != 1 && sw != 2) || nv > ROWS_MAXV || ow < 1)
        return 0;
    /* per output vector, made once per tap: the lanes of the row, and the load masks of its
     * lanes in [j0, j1) (stride 2: the spans of the two loads, as nnl_gather16_s reads) */
    __mmask16 keep[ROWS_MAXV], ma[ROWS_MAXV], mb[ROWS_MAXV];
    for (nnl_idx v = 0; v < nv; v++) {
        const nnl_idx lo = j0 - 16 * v, hi = j1 - 16 * v;
        keep[v] = nnl_lanes16(0, ow - 16 * v);
        ma[v] = sw == 1 ? nnl_lanes16(lo, hi) : nnl_lanes16(2 * lo, 2 * hi - 1);
        mb[v] = sw == 1 ? 0 : nnl_lanes16(2 * lo - 16, 2 * hi - 17);
    }
    const __m512 zero = _mm512_setzero_ps();
    for (nnl_idx i = 0; i < oh; i++) {
        float *d = dst + i * ow;
        /* a row whose whole vectors end inside this tap's block stores them whole: the lanes
         * past OW land on the next rows of the tap, written after it (masked stores cost more
         * on some CPUs, e.g. Zen 4); the last rows store only their lanes (past the block:
         * the next tap, or another thread's plane) */
        const int whole = i * ow + 16 * nv <= oh * ow;
        const nnl_idx r = i * sh + roff;
        /* output j reads s[j*sw]; s may point before the row (a negative off): only the
         * lanes in [j0, j1), all inside the row, are read; a fully padded row reads none */
        const int padded = (size_t)r >= (size_t)H;
        const float *s = padded ? x : x + r * W + off;
        for (nnl_idx v = 0; v < nv; v++) {
            const __m512 val = padded ? zero
                               : sw == 1 ? _mm512_maskz_loadu_ps(ma[v], s + 16 * v)
                                         : nnl_gather16_even_s(s + 32 * v, ma[v], mb[v]);
            if (whole)
                _mm512_storeu_ps(d + 16 * v, val);
            else
                _mm512_mask_storeu_ps(d + 16 * v, keep[v], val);
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
