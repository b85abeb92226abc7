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
 *
 * With a max pool fused (nnl_conv_phase_maxpool: the stem conv and the 3x3/2 pool after it)
 * the bands are cut in pooled rows; a band computes the conv rows its windows read (one row
 * shared with the next band's first window is computed by both), a filter block at a time,
 * into a per-thread buffer (4 filters x the band's rows: in L1/L2) and pools them from there
 * with the max pool's plane kernel: the conv's map is neither written nor read back. AMD EPYC
 * Zen 4, 2 threads, plans alternated in one process: ResNet-50's stem and pool steps 2.01 ->
 * 1.22 ms in sequence at batch 1, the whole plan 0.987-0.989 of the time (batch 8 0.995),
 * GoogLeNet 0.993 (batch 8 0.986).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "convfast.h"
#include "nnl_lanes.h"
#include "pool_max.h"

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
/* the same with a max pool fused: each band also computes the conv rows its first window
 * shares with the previous band's last (3x3/2 pooling: one row per band). Zen 4, ResNet-50's
 * stem and pool at batch 1 on two threads, interleaved medians: 1, 2, 3, 4 and 8 bands per
 * thread 1.50, 1.26, 1.32, 1.30 and 1.37 ms (batch 8: within 1%) */
#ifndef PH_POOL_BANDS_PER_THREAD
#define PH_POOL_BANDS_PER_THREAD 2
#endif

static int ph_geom_ok(const nnl_conv_geom *g)
{
    if (g->n < 0 || g->c < 0 || g->h < 0 || g->w < 0 || g->f < 0 || g->oh < 0 || g->ow < 0)
        return 0;
    if (g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1 || g->dh < 1 || g->dw < 1 ||
        g->pt < 0 || g->pl < 0)
        return 0;
    return g->g >= 1 && g->c % g->g == 0 && g->f % g->g == 0;
}

/* a max pool the conv's output can feed (nnl_conv_phase_maxpool): sizes, strides and
 * dilations positive, paddings non-negative, its output size at least 0, and a row buffer of
 * the pool's plan (nnl_pool_plan_init) within its limit */
static int ph_pool_ok(const nnl_conv_geom *g, const nnl_pool2d_geom *q)
{
    if (q->kh < 1 || q->kw < 1 || q->sh < 1 || q->sw < 1 || q->dh < 1 || q->dw < 1 ||
        q->pt < 0 || q->pl < 0 || q->oh < 0 || q->ow < 0)
        return 0;
    nnl_pool_plan pp;
    return q->oh == 0 || q->ow == 0 || g->oh == 0 || g->ow == 0 ||
           nnl_pool_plan_init(&pp, g->oh, g->ow, q->kh, q->kw, q->sh, q->sw, q->pt, q->pl, q->dh,
                              q->dw, q->oh, q->ow, 4);
}

/* The layout of one call: phase-plane row width, halo rows, band rows and count, output
 * vectors per band, elements per phase plane; with a pool, the pooled rows per band (bh is
 * then the conv rows a band computes at most). Each thread's buffers, in elements, each piece
 * 64-byte aligned (ph_thread_bufs): xsize of phase planes (in place: the copied last vector
 * of every channel) in xs64, the output vectors in ys64, with a pool a filter block's conv
 * rows in cs64 and the pool's row buffers (pool_need of them used) in ps64. */
typedef struct {
    nnl_idx wq, rh, cq, bh, nbands, nq, plane, nplanes, prows, xsize, pool_need;
    size_t xs64, ys64, cs64, ps64;
    int nt, in_place;
} ph_layout;

static void ph_plan(const nnl_conv_geom *g, const nnl_pool2d_geom *q, int vl, int elsize,
                    int nthreads, ph_layout *p)
{
    const nnl_idx cg = g->c / g->g;
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
    /* the rows the bands cut (a pool's output rows, each reading q->sh more conv rows) */
    const nnl_idx rows = q ? q->oh : g->oh;
    nnl_idx br = q ? nnl_max(1, (bh - 1 - (q->kh - 1) * q->dh) / q->sh + 1) : bh;
    /* enough bands over the batch and groups for every thread to get several */
    const nnl_idx per_image = g->n * g->g;
    if (p->nt > 1 && per_image > 0) {
        const nnl_idx per = q ? PH_POOL_BANDS_PER_THREAD : PH_BANDS_PER_THREAD;
        nnl_idx want = ((nnl_idx)p->nt * per + per_image - 1) / per_image;
        if (want > 1) {
            nnl_idx bw = (rows + want - 1) / want;
            if (bw < br)
                br = bw;
        }
    }
    if (br > rows)
        br = rows > 0 ? rows : 1;
    p->prows = br;
    p->nbands = rows > 0 ? (rows + br - 1) / br : 0;
    if (q)   /* the conv rows of br pooled rows */
        br = nnl_max(1, nnl_min(g->oh, (br - 1) * q->sh + (q->kh - 1) * q->dh + 1));
    p->bh = br;
    p->nq = (br * p->wq + vl - 1) / vl;
    p->plane = p->nq * vl + p->rh * p->wq + p->cq;
    /* in place: a pointwise stride-1 conv without padding whose image rows are packed reads
     * x itself as its one phase plane per channel (no copy), and its flat grid is y's layout */
    p->in_place = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 &&
                  g->pl == 0 && g->ow == g->w && g->oh <= g->h && (g->h == 1 || g->xsr == g->w);
    p->xsize = p->in_place ? cg * vl : p->nplanes * p->plane;
    p->xs64 = nnl_round64((size_t)p->xsize, (size_t)elsize);
    p->ys64 = nnl_round64((size_t)(PH_FB * p->nq * vl), (size_t)elsize);
    p->cs64 = p->ps64 = 0;
    p->pool_need = 0;
    if (q != NULL && g->ow > 0 && q->ow > 0) {
        /* the pool's row buffers depend on the columns only: one size serves every band */
        nnl_pool_plan pp;
        nnl_pool_plan_init(&pp, br, g->ow, q->kh, q->kw, q->sh, q->sw, q->pt, q->pl, q->dh,
                           q->dw, nnl_max(1, nnl_min(p->prows, q->oh)), q->ow, (size_t)elsize);
        p->pool_need = pp.need;
        p->cs64 = nnl_round64((size_t)(PH_FB * br * g->ow), (size_t)elsize);
        p->ps64 = nnl_round64((size_t)pp.need, (size_t)elsize);
    }
}

/* elements of one thread's buffers */
static size_t ph_thread_elems(const ph_layout *p)
{
    return p->xs64 + p->ys64 + p->cs64 + p->ps64;
}

static nnl_idx ph_workspace(const nnl_conv_geom *g, const nnl_pool2d_geom *q, int elsize,
                            int nthreads)
{
    if (!ph_geom_ok(g) || (elsize != 4 && elsize != 8) || (q != NULL && !ph_pool_ok(g, q)))
        return -1;
    const int vl = PH_VBYTES / elsize;
    ph_layout p;
    ph_plan(g, q, vl, elsize, nthreads, &p);
    const nnl_idx fg = g->f / g->g, cg = g->c / g->g;
    const nnl_idx nfb = (fg + PH_FB - 1) / PH_FB;
    const nnl_idx packed = g->g * nfb * (cg * g->kh * g->kw + 1) * PH_FB;
    const int nt = p.nt < 1 ? 1 : p.nt;
    return (nnl_idx)elsize * (packed + nt * (nnl_idx)ph_thread_elems(&p)) +
           (nnl_idx)sizeof(nnl_idx) * 2 * cg * g->kh * g->kw;
}

nnl_idx nnl_conv_phase_workspace(const nnl_conv_geom *g, int elsize, int nthreads)
{
    return ph_workspace(g, NULL, elsize, nthreads);
}

nnl_idx nnl_conv_phase_maxpool_workspace(const nnl_conv_geom *g, const nnl_pool2d_geom *q,
                                         int elsize, int nthreads)
{
    return q == NULL ? -1 : ph_workspace(g, q, elsize, nthreads);
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
