/* Direct dense conv2d for small maps (stride 1, any groups, kernel, padding and dilation):
 *
 *     y[n, f, i, j] = act(bias[f] + beta * y[n, f, i, j] + sum_{c, a, b} w[f, (c*KH + a)*KW + b]
 *                                      * x[n, g*CG + c, i - PT + a*DH, j - PL + b*DW])
 *
 * (taps in the padding contribute 0; f in group g). Made for the 4x4 to 16x16 maps of small
 * CNNs (the digits example's Inception modules: 8x8 and 4x4), where the implicit GEMM's N per
 * image is OH*OW = 16..64, narrower than its register tile.
 *
 * Per image and group, the channels are copied into a zero-padded "flat" plane of width
 * WP = OW + (KW-1)*DW: output (i, j) then reads x_pad[(i + a*DH)*WP + j + b*DW], so for every
 * tap (c, a, b) the outputs q = i*WP + j of a whole plane are ONE contiguous stream starting at
 * offset (a*DH)*WP + b*DW. The columns j >= OW of that grid are computed and dropped. A
 * register block holds SM_FB filters x QB vectors of q; per tap it loads QB vectors of x and
 * broadcasts SM_FB weights (packed as [group][filter block][c][a][b][SM_FB], per call or once by
 * the caller: nnl_conv_small_wpack), so the
 * accumulators never leave registers until the block is done. The block goes to a row buffer
 * and the valid columns through the epilogue into y.
 *
 * Each thread owns its images (OpenMP over N; with fewer images than threads, runs of each
 * image's filter blocks, see nnl_conv_small) and one padded plane buffer, zeroed once: only
 * the image rows are rewritten per image, the padding stays zero. Every output is reduced in
 * the same order on any number of threads. Vectors are GCC/Clang vector extensions sized to the
 * build's widest unit (AVX-512: 64 bytes), so the kernel is portable C.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "convfast.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX512F__)
#define SM_VBYTES 64
#elif defined(__AVX__)
#define SM_VBYTES 32
#else
#define SM_VBYTES 16
#endif
#ifndef SM_FB
#define SM_FB 4 /* filters per register block */
#endif
#ifndef SM_QB_MAX
#define SM_QB_MAX 6 /* output vectors per register block (3 or 6) */
#endif

#ifndef SM_WTB_MAX
#define SM_WTB_MAX 5 /* taps per weight-gradient register block (5: 20 accumulators) */
#endif

static int sm_geom_ok(const nnl_conv_geom *g)
{
    if (g->n < 0 || g->c < 0 || g->h < 0 || g->w < 0 || g->f < 0 || g->oh < 0 || g->ow < 0)
        return 0;
    if (g->kh < 1 || g->kw < 1 || g->dh < 1 || g->dw < 1 || g->pt < 0 || g->pl < 0)
        return 0;
    if (g->g < 1 || g->c % g->g || g->f % g->g)
        return 0;
    /* stride 1 (a stride that never multiplies a nonzero index is passed as 1) */
    return g->sh == 1 && g->sw == 1;
}

/* the flat plane: width, output vectors, elements per channel (all taps of the last output
 * vector inside) */
static void sm_plane(const nnl_conv_geom *g, int vl, nnl_idx *wp, nnl_idx *nq, nnl_idx *plane)
{
    *wp = g->ow + (g->kw - 1) * g->dw;
    *nq = (g->oh * *wp + vl - 1) / vl;
    *plane = *nq * vl + (g->kh - 1) * g->dh * *wp + (g->kw - 1) * g->dw;
}

nnl_idx nnl_conv_small_wpack_size(const nnl_conv_geom *g)
{
    if (!sm_geom_ok(g))
        return -1;
    const nnl_idx cg = g->c / g->g, nfb = (g->f / g->g + SM_FB - 1) / SM_FB;
    return g->g * nfb * cg * g->kh * g->kw * SM_FB;
}

nnl_idx nnl_conv_small_workspace(const nnl_conv_geom *g, int elsize, int nthreads)
{
    if (!sm_geom_ok(g) || (elsize != 4 && elsize != 8))
        return -1;
    const int vl = SM_VBYTES / elsize;
    nnl_idx wp, nq, plane;
    sm_plane(g, vl, &wp, &nq, &plane);
    const nnl_idx cg = g->c / g->g;
    const int nt = nthreads < 1 ? 1 : nthreads;
    const nnl_idx packed = nnl_conv_small_wpack_size(g);   /* when the call packs them */
    return (nnl_idx)elsize * (packed + nt * (cg * plane + SM_FB * nq * vl));
}

#define T float
#define FN(name) name##_s
#include "convfast_small_tmpl.h"
#undef T
#undef FN

#define T double
#define FN(name) name##_d
#include "convfast_small_tmpl.h"
#undef T
#undef FN
