/* Direct dense conv2d for few input channels, any stride (the stem convs of image models:
 * 3 -> 32 3x3 stride 2, 3 -> 64 7x7 stride 2):
 *
 *     y[n, f, i, j] = act(bias[f] + beta * y[n, f, i, j] + sum_{c, a, b} w[f, (c*KH + a)*KW + b]
 *                                   * x[n, g*CG + c, i*SH - PT + a*DH, j*SW - PL + b*DW])
 *
 * (taps in the padding contribute 0; f in group g). With K = CG*KH*KW of 27 or 147 the implicit
 * GEMM spends about as long packing its B panels (K x OH*OW gathered elements) as multiplying,
 * and an im2col matrix is 9-49x the image.
 *
 * Stride phases: the zero-padded image xp is cut into SH*SW phase planes per channel,
 *
 *     P[c][py][px][r][q] = xp[c][r*SH + py][q*SW + px],
 *
 * so that tap (c, a, b) of output (i, j) is P[c][(a*DH) % SH][(b*DW) % SW][i + (a*DH) / SH]
 * [j + (b*DW) / SW]: a stride-1 access. Each phase plane is laid out flat with row width
 * WQ = OW + ((KW-1)*DW) / SW, so output q = i*WQ + j of a band of rows reads, for every tap,
 * ONE contiguous stream starting at that tap's offset (the columns j >= OW of the grid are
 * computed and dropped: (WQ - OW) / OW of the work, 1-3% at 112 columns). A register block
 * holds PH_FB filters x QB vectors of q; per tap it loads QB vectors of x and broadcasts PH_FB
 * weights (packed per call as [group][filter block][tap][PH_FB]). Without beta the bias and the
 * activation are applied in registers, and the block's rows are copied to y.
 *
 * Work split: output row bands of every image and group, sized from the L2 cache (a band's
 * phase planes stay cached while every filter block sweeps them) and so that each thread gets
 * several bands (batch 1: the threads split the rows of the one image). Every output element is
 * reduced in the same order (taps in (c, a, b) order) on any number of threads. Vectors are
 * GCC/Clang vector extensions sized to the build's widest unit (AVX-512: 64 bytes).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "convfast.h"
#include "nnl_lanes.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX512F__)
#define PH_VBYTES 64
#elif defined(__AVX__)
#define PH_VBYTES 32
#else
#define PH_VBYTES 16
#endif
#ifndef PH_FB
#define PH_FB 4 /* filters per register block */
#endif
#ifndef PH_QB_MAX
#define PH_QB_MAX 6 /* output vectors per register block */
#endif
/* bands per thread the row split aims at (load balance against per-band overhead) */
#define PH_BANDS_PER_THREAD 4

static int ph_geom_ok(const nnl_conv_geom *g)
{
    if (g->n < 0 || g->c < 0 || g->h < 0 || g->w < 0 || g->f < 0 || g->oh < 0 || g->ow < 0)
        return 0;
    if (g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1 || g->dh < 1 || g->dw < 1 ||
        g->pt < 0 || g->pl < 0)
        return 0;
    return g->g >= 1 && g->c % g->g == 0 && g->f % g->g == 0;
}

/* The layout of one call: phase-plane row width, halo rows, band rows and count, output
 * vectors per band, elements per phase plane. */
typedef struct {
    nnl_idx wq, rh, cq, bh, nbands, nq, plane, nplanes;
    int nt;
} ph_layout;

static void ph_plan(const nnl_conv_geom *g, int vl, int elsize, int nthreads, ph_layout *p)
{
    const nnl_idx cg = g->c / g->g, fg = g->f / g->g;
    p->wq = g->ow + ((g->kw - 1) * g->dw) / g->sw;
    p->rh = ((g->kh - 1) * g->dh) / g->sh;
    p->cq = ((g->kw - 1) * g->dw) / g->sw;
    p->nplanes = cg * g->sh * g->sw;
    const double macs = (double)g->n * g->f * g->oh * g->ow * cg * g->kh * g->kw;
    p->nt = nnl_team_by_share(nthreads, macs, NNL_DW_MIN_MACS_PER_THREAD);
    /* rows whose phase planes fit a quarter of the L2 (the rest: y rows, weights, other
     * hyperthread), at least one */
    const long l2 = nnl_cache_sizes()->l2;
    const double row_bytes = (double)p->nplanes * p->wq * elsize;
    nnl_idx bh = (nnl_idx)((double)(l2 / 4) / (row_bytes > 0 ? row_bytes : 1)) - p->rh;
    if (bh < 1)
        bh = 1;
    /* enough bands over the batch and groups for every thread to get several */
    const nnl_idx per_image = g->n * g->g;
    if (p->nt > 1 && per_image > 0) {
        nnl_idx want = ((nnl_idx)p->nt * PH_BANDS_PER_THREAD + per_image - 1) / per_image;
        if (want > 1) {
            nnl_idx bw = (g->oh + want - 1) / want;
            if (bw < bh)
                bh = bw;
        }
    }
    if (bh > g->oh)
        bh = g->oh > 0 ? g->oh : 1;
    p->bh = bh;
    p->nbands = g->oh > 0 ? (g->oh + bh - 1) / bh : 0;
    p->nq = (bh * p->wq + vl - 1) / vl;
    p->plane = p->nq * vl + p->rh * p->wq + p->cq;
    (void)fg;
}

nnl_idx nnl_conv_phase_workspace(const nnl_conv_geom *g, int elsize, int nthreads)
{
    if (!ph_geom_ok(g) || (elsize != 4 && elsize != 8))
        return -1;
    const int vl = PH_VBYTES / elsize;
    ph_layout p;
    ph_plan(g, vl, elsize, nthreads, &p);
    const nnl_idx fg = g->f / g->g, cg = g->c / g->g;
    const nnl_idx nfb = (fg + PH_FB - 1) / PH_FB;
    const nnl_idx packed = g->g * nfb * (cg * g->kh * g->kw + 1) * PH_FB;
    const int nt = p.nt < 1 ? 1 : p.nt;
    return (nnl_idx)elsize * (packed + nt * (p.nplanes * p.plane + PH_FB * p.nq * vl)) +
           (nnl_idx)sizeof(nnl_idx) * cg * g->kh * g->kw;
}

#define T float
#define FN(name) name##_s
#include "convfast_phase_tmpl.h"
#undef T
#undef FN

#define T double
#define FN(name) name##_d
#include "convfast_phase_tmpl.h"
#undef T
#undef FN
