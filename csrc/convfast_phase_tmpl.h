/* Template body of convfast_phase.c, included once per dtype with T and FN(name) defined.
 * No include guard on purpose. */

typedef T FN(ph_vec) __attribute__((vector_size(PH_VBYTES)));
typedef T FN(ph_uvec) __attribute__((vector_size(PH_VBYTES), aligned(sizeof(T))));

/* acc[f][k] = sum over taps t < ntap of wb[t*PH_FB + f] * x[offs[t] + k*VL] for f < PH_FB,
 * k < QB (a compile-time constant after inlining: the accumulators stay in registers); with
 * epi, act(acc + bb[f]) (bb NULL: no bias); stored to yb[f*ystride + k*VL] */
static inline __attribute__((always_inline)) void
FN(ph_block)(const T *restrict xb, const nnl_idx *restrict offs, nnl_idx ntap,
             const T *restrict wb, const T *restrict bb, int epi, int act, T *restrict yb,
             nnl_idx ystride, const int QB)
{
    enum { VL = PH_VBYTES / sizeof(T) };
    FN(ph_vec) acc[PH_FB][PH_QB_MAX];
    for (int f = 0; f < PH_FB; f++)
        for (int k = 0; k < QB; k++)
            acc[f][k] = (FN(ph_vec)){0};
    /* one x vector at a time times PH_FB broadcast weights (vector * scalar: one broadcast
     * each, folded into the FMA where the ISA can) */
    for (nnl_idx t = 0; t < ntap; t++, wb += PH_FB) {
        const T *s = xb + offs[t];
        for (int k = 0; k < QB; k++) {
            FN(ph_vec) xv = *(const FN(ph_uvec) *)(s + k * VL);
            /* one load per vector: without this the compiler folds the load into each of
             * the PH_FB FMAs, PH_FB unaligned (mostly line-crossing) loads instead of one */
            __asm__("" : "+x"(xv));
            for (int f = 0; f < PH_FB; f++)
                acc[f][k] += xv * wb[f];
        }
    }
    if (epi) {
        for (int f = 0; f < PH_FB; f++) {
            for (int k = 0; k < QB; k++) {
                FN(ph_vec) v = bb ? acc[f][k] + bb[f] : acc[f][k];
                acc[f][k] = NNL_ACT_VEC(v, act);
            }
        }
    }
    for (int f = 0; f < PH_FB; f++)
        for (int k = 0; k < QB; k++)
            *(FN(ph_uvec) *)(yb + f * ystride + k * VL) = acc[f][k];
}

/* the nq output vectors from xb (tap t at xb + offs[t]) to yb, filter f's at f*ystride, in
 * the fewest register blocks, their sizes differing by at most one: a 112-pixel row's 7 float
 * vectors as 4 + 3, not 6 + 1, whose one-vector block has only PH_FB chains of fused
 * multiply-adds for two FMA units of 4-cycle latency and a broadcast per FMA. The same
 * arithmetic per output either way. Measured 2026-12-07, Intel Xeon (family 6 model 207),
 * ResNet-50's 3 -> 64 7x7/2 stem at 224x224 as a plan step, the two splits alternated in one
 * process (40 rounds): one thread 1.865 -> 1.734 ms, two 1.164 -> 1.080 ms. */
static void FN(ph_blocks)(const T *xb, const nnl_idx *offs, nnl_idx ntap, const T *wb,
                          const T *bb, int epi, int act, T *yb, nnl_idx nq, nnl_idx ystride)
{
    enum { VL = PH_VBYTES / sizeof(T) };
    const nnl_idx nb = (nq + PH_QB_MAX - 1) / PH_QB_MAX;
    for (nnl_idx b = 0, q = 0, r; b < nb; b++, q += r) {
        r = nq / nb + (b < nq % nb);   /* block b's vectors */
        const T *x0 = xb + q * VL;
        T *y0 = yb + q * VL;
#define PH_CALL(QB) FN(ph_block)(x0, offs, ntap, wb, bb, epi, act, y0, ystride, QB)
        switch (r) {
        case 1: PH_CALL(1); break;
        case 2: PH_CALL(2); break;
        case 3: PH_CALL(3); break;
#if PH_QB_MAX > 4
        case 4: PH_CALL(4); break;
        case 5: PH_CALL(5); break;
#endif
        default: PH_CALL(PH_QB_MAX); break;
        }
#undef PH_CALL
    }
}

/* One call's bands on the pool, each thread on its own plane and output buffers. */
typedef struct {
    const nnl_conv_geom *g;
    const T *x;
    T *y;
    const T *bias;
    T beta;
    int act;
    const T *wpk, *bpk;
    const nnl_idx *offs, *offs_tail;
    int epi;
    const ph_layout *p;
    T *bufs;                       /* every thread's buffers (ph_thread_bufs) */
    const nnl_pool2d_geom *pool;   /* pooled calls: the max pool */
} FN(ph_job);

/* The band of output rows [i0, i0 + rows) of image n, group gi (rows at most the layout's
 * bh) into the thread's buffer xb: its phase planes, or in place the columns of its last
 * partial vector. */
static void FN(ph_band_load)(const FN(ph_job) *j, nnl_idx n, nnl_idx gi, nnl_idx i0,
                             nnl_idx rows, T *xb)
{
    enum { VL = PH_VBYTES / sizeof(T) };
    const nnl_conv_geom *g = j->g;
    const ph_layout *p = j->p;
    const nnl_idx CG = g->c / g->g, SH = g->sh, SW = g->sw, wq = p->wq, plane = p->plane;
    if (p->in_place) {
        const nnl_idx len = rows * wq, nfull = len / VL, rem = len % VL;
        const T *xin = j->x + n * g->xsn + gi * CG * g->xsc + i0 * g->w;
        if (rem)
            for (nnl_idx c = 0; c < CG; c++)
                for (nnl_idx e = 0; e < VL; e++)
                    xb[c * VL + e] = e < rem ? xin[c * g->xsc + nfull * VL + e] : (T)0;
        return;
    }
    const nnl_idx prow = rows + p->rh; /* phase-plane rows this band reads */
    for (nnl_idx c = 0; c < CG; c++) {
        const T *xc = j->x + n * g->xsn + (gi * CG + c) * g->xsc;
        for (nnl_idx py = 0; py < SH; py++)
            for (nnl_idx px = 0; px < SW; px++) {
                T *P = xb + ((c * SH + py) * SW + px) * plane;
                nnl_idx lo, hi;   /* columns q whose source q*SW + px - PL is in the row */
                nnl_col_range(px - g->pl, g->w, SW, wq, &lo, &hi);
                for (nnl_idx r = 0; r < prow; r++) {
                    const nnl_idx h = (i0 + r) * SH + py - g->pt;
                    T *d = P + r * wq;
                    if (h < 0 || h >= g->h)
                        memset(d, 0, sizeof(T) * (size_t)wq);
                    else
                        FN(nnl_strided_row)(d, xc + h * g->xsr + px - g->pl, wq, SW, lo, hi);
                }
            }
    }
}

/* Filter block fb of that band (loaded in xb; yb the thread's output buffer) into yrow:
 * filter f's output row i at yrow + f*ysf + i*OW. */
static void FN(ph_band_block)(const FN(ph_job) *j, nnl_idx n, nnl_idx gi, nnl_idx i0,
                              nnl_idx rows, nnl_idx fb, const T *xb, T *yb, T *yrow,
                              nnl_idx ysf)
{
    enum { VL = PH_VBYTES / sizeof(T) };
    const nnl_conv_geom *g = j->g;
    const T *bias = j->bias;
    const T beta = j->beta;
    const int act = j->act, in_place = j->p->in_place, epi = j->epi;
    const nnl_idx *offs = j->offs, *offs_tail = j->offs_tail;
    const nnl_idx G = g->g, OW = g->ow, wq = j->p->wq;
    const nnl_idx CG = g->c / G, FG = g->f / G, ntap = CG * g->kh * g->kw;
    const nnl_idx nfb = (FG + PH_FB - 1) / PH_FB;
    const T *xin = j->x + n * g->xsn + gi * CG * g->xsc + i0 * g->w;
    /* the band's outputs on the flat grid; in place: the full vectors read x and (whole
     * filter blocks, no beta) write y directly, the last partial vector runs from copies of
     * its columns */
    const nnl_idx len = rows * wq;
    const nnl_idx nfull = in_place ? len / VL : 0, rem = in_place ? len % VL : 0;
    const nnl_idx bq = (len + VL - 1) / VL;
    const T *bb = bias ? j->bpk + (gi * nfb + fb) * PH_FB : NULL;
    const T *wb = j->wpk + (gi * nfb + fb) * ntap * PH_FB;
    const nnl_idx fcount = FG - fb * PH_FB < PH_FB ? FG - fb * PH_FB : PH_FB;
    nnl_idx done = 0; /* outputs of the band already in y */
    if (in_place) {
        if (epi && fcount == PH_FB) {
            FN(ph_blocks)(xin, offs, ntap, wb, bb, epi, act, yrow, nfull, ysf);
            done = nfull * VL;
        } else {
            FN(ph_blocks)(xin, offs, ntap, wb, bb, epi, act, yb, nfull, bq * VL);
        }
        if (rem)
            FN(ph_blocks)(xb, offs_tail, ntap, wb, bb, epi, act, yb + nfull * VL, 1, bq * VL);
    } else if (epi && fcount == PH_FB && OW % VL == 0) {
        /* output rows of whole vectors: each row's vectors straight into y (the grid's extra
         * columns are neither computed nor copied) */
        for (nnl_idx i = 0; i < rows; i++)
            FN(ph_blocks)(xb + i * wq, offs, ntap, wb, bb, epi, act, yrow + i * OW, OW / VL,
                          ysf);
        return;
    } else {
        FN(ph_blocks)(xb, offs, ntap, wb, bb, epi, act, yb, bq, bq * VL);
    }
    for (nnl_idx f = 0; f < fcount; f++) {
        const T *src = yb + f * bq * VL;
        T *dst = yrow + f * ysf;
        const T *bp = bias ? bias + gi * FG + fb * PH_FB + f : NULL;
        if (in_place) { /* the flat grid is y's layout (wq == OW) */
            if (epi)
                memcpy(dst + done, src + done, sizeof(T) * (size_t)(len - done));
            else
                for (nnl_idx q = done; q < len; q++)
                    dst[q] = NNL_EPI_ONE(src[q], (T)1, beta, dst + q, bp, act);
        } else if (epi) {
            for (nnl_idx i = 0; i < rows; i++)
                memcpy(dst + i * OW, src + i * wq, sizeof(T) * (size_t)OW);
        } else {
            for (nnl_idx i = 0; i < rows; i++)
                for (nnl_idx q = 0; q < OW; q++) {
                    T *o = dst + i * OW + q;
                    *o = NNL_EPI_ONE(src[i * wq + q], (T)1, beta, o, bp, act);
                }
        }
    }
}

/* the thread's buffers: phase planes, output vectors, [pooled calls: the conv rows of a
 * filter block, the pool's row buffers]; zeroed (the pool's -inf) at its first unit: the tail
 * past the rows a band fills is read by the last vectors only for dropped outputs, and must
 * hold finite values */
static T *FN(ph_thread_bufs)(const FN(ph_job) *j, int tid, int first)
{
    const ph_layout *p = j->p;
    T *xb = j->bufs + (size_t)tid * ph_thread_elems(p);
    if (first) {
        memset(xb, 0, sizeof(T) * (size_t)p->xsize);
        T *pbuf = xb + p->xs64 + p->ys64 + p->cs64;
        for (nnl_idx i = 0; i < p->pool_need; i++)
            pbuf[i] = -(T)INFINITY;
    }
    return xb;
}

static void FN(ph_job_unit)(void *ctx, nnl_idx it, int tid, int first)
{
    const FN(ph_job) *j = (const FN(ph_job) *)ctx;
    const nnl_conv_geom *g = j->g;
    const ph_layout *p = j->p;
    const nnl_idx G = g->g, OH = g->oh, OW = g->ow, FG = g->f / G;
    const nnl_idx nfb = (FG + PH_FB - 1) / PH_FB;
    T *xb = FN(ph_thread_bufs)(j, tid, first), *yb = xb + p->xs64;
    const nnl_idx band = it % p->nbands, gi = (it / p->nbands) % G, n = it / (p->nbands * G);
    const nnl_idx i0 = band * p->bh, rows = OH - i0 < p->bh ? OH - i0 : p->bh;
    FN(ph_band_load)(j, n, gi, i0, rows, xb);
    for (nnl_idx fb = 0; fb < nfb; fb++)
        FN(ph_band_block)(j, n, gi, i0, rows, fb, xb, yb,
                          j->y + n * g->ysn + (gi * FG + fb * PH_FB) * g->ysf + i0 * OW,
                          g->ysf);
}

/* A band of pooled output rows [p0, p1): the conv rows its windows read, [r0, r1) (a row the
 * next band reads too is computed by both), one filter block at a time into the thread's
 * conv buffer, then max-pooled from there into y by the max pool's own plane kernel on the
 * band's rows (nnl_maxpool_plane_*, its geometry shifted to the band: the same values). */
static void FN(ph_pool_unit)(void *ctx, nnl_idx it, int tid, int first)
{
    const FN(ph_job) *j = (const FN(ph_job) *)ctx;
    const nnl_conv_geom *g = j->g;
    const nnl_pool2d_geom *q = j->pool;
    const ph_layout *p = j->p;
    const nnl_idx G = g->g, OH = g->oh, OW = g->ow, FG = g->f / G;
    const nnl_idx nfb = (FG + PH_FB - 1) / PH_FB;
    T *xb = FN(ph_thread_bufs)(j, tid, first), *yb = xb + p->xs64, *cb = yb + p->ys64;
    T *pbuf = cb + p->cs64;
    const nnl_idx band = it % p->nbands, gi = (it / p->nbands) % G, n = it / (p->nbands * G);
    const nnl_idx p0 = band * p->prows, p1 = nnl_min(q->oh, p0 + p->prows);
    const nnl_idx r0 = nnl_max(0, p0 * q->sh - q->pt);
    const nnl_idx r1 = nnl_min(OH, (p1 - 1) * q->sh - q->pt + (q->kh - 1) * q->dh + 1);
    T *ybase = j->y + n * g->ysn + gi * FG * g->ysf + p0 * q->ow;
    if (r1 <= r0) {   /* windows wholly in the padding: -inf, as the max pool gives */
        for (nnl_idx f = 0; f < FG; f++)
            for (nnl_idx e = 0; e < (p1 - p0) * q->ow; e++)
                ybase[f * g->ysf + e] = -(T)INFINITY;
        return;
    }
    nnl_pool_plan pp;
    nnl_pool_plan_init(&pp, r1 - r0, OW, q->kh, q->kw, q->sh, q->sw, q->pt + r0 - p0 * q->sh,
                       q->pl, q->dh, q->dw, p1 - p0, q->ow, sizeof(T));
    const nnl_idx cbs = p->bh * OW;   /* the conv buffer's plane stride */
    FN(ph_band_load)(j, n, gi, r0, r1 - r0, xb);
    for (nnl_idx fb = 0; fb < nfb; fb++) {
        FN(ph_band_block)(j, n, gi, r0, r1 - r0, fb, xb, yb, cb, cbs);
        const nnl_idx fcount = FG - fb * PH_FB < PH_FB ? FG - fb * PH_FB : PH_FB;
        for (nnl_idx f = 0; f < fcount; f++)
            FN(nnl_maxpool_plane)(&pp, cb + f * cbs, OW, ybase + (fb * PH_FB + f) * g->ysf,
                                  q->ow, pbuf);
    }
}

/* nnl_conv_phase (q NULL) and nnl_conv_phase_maxpool (q the pool over the conv's output, y
 * the pooled output) */
static int FN(ph_call)(const nnl_conv_geom *g, const nnl_pool2d_geom *q, const T *x,
                       const T *w, const T *bias, T beta, T *y, int act, int nthreads)
{
    enum { VL = PH_VBYTES / sizeof(T) };
    if (!ph_geom_ok(g) || (q != NULL && !ph_pool_ok(g, q)))
        return NNL_EINVAL;
    const nnl_idx N = g->n, G = g->g, OH = g->oh, OW = g->ow, KH = g->kh, KW = g->kw;
    const nnl_idx SH = g->sh, SW = g->sw, DH = g->dh, DW = g->dw;
    if (N == 0 || g->f == 0 || OH == 0 || OW == 0 || (q != NULL && (q->oh == 0 || q->ow == 0)))
        return NNL_OK;
    const nnl_idx CG = g->c / G, FG = g->f / G, ntap = CG * KH * KW;
    const nnl_idx nfb = (FG + PH_FB - 1) / PH_FB;
    ph_layout p;
    ph_plan(g, q, VL, (int)sizeof(T), nthreads, &p);
    const nnl_idx wq = p.wq, plane = p.plane, nbands = p.nbands;
    /* packed weights [group][filter block][tap][PH_FB] and biases [group][filter block]
     * [PH_FB], filters past FG zero */
    const nnl_idx wblk = ntap * PH_FB;
    const nnl_idx wsize = G * nfb * (wblk + PH_FB);
    T *wpk = (T *)nnl_alloc64(sizeof(T) * (size_t)(wsize > 0 ? wsize : 1));
    nnl_idx *offs = (nnl_idx *)malloc(sizeof(nnl_idx) * (size_t)(ntap > 0 ? 2 * ntap : 1));
    if (wpk == NULL || offs == NULL) {
        nnl_free64(wpk);
        free(offs);
        return NNL_ENOMEM;
    }
    T *bpk = wpk + G * nfb * wblk;
    const int in_place = p.in_place;
    nnl_idx *offs_tail = offs + ntap; /* in place: the channels of the copied last vector */
    for (nnl_idx c = 0; c < CG; c++)
        for (nnl_idx a = 0; a < KH; a++)
            for (nnl_idx b = 0; b < KW; b++) {
                const nnl_idx ph = (c * SH + (a * DH) % SH) * SW + (b * DW) % SW;
                const nnl_idx t = (c * KH + a) * KW + b;
                offs[t] = in_place ? c * g->xsc
                                   : ph * plane + ((a * DH) / SH) * wq + (b * DW) / SW;
                offs_tail[t] = c * VL;
            }
    for (nnl_idx gi = 0; gi < G; gi++)
        for (nnl_idx fb = 0; fb < nfb; fb++) {
            T *d = wpk + (gi * nfb + fb) * wblk;
            for (nnl_idx k = 0; k < ntap; k++)
                for (nnl_idx f = 0; f < PH_FB; f++) {
                    const nnl_idx ff = fb * PH_FB + f;
                    d[k * PH_FB + f] = ff < FG ? w[(gi * FG + ff) * ntap + k] : (T)0;
                }
            for (nnl_idx f = 0; f < PH_FB; f++) {
                const nnl_idx ff = fb * PH_FB + f;
                bpk[(gi * nfb + fb) * PH_FB + f] = bias && ff < FG ? bias[gi * FG + ff] : (T)0;
            }
        }
    /* beta == 0: bias and activation in registers, rows copied; else the scalar write-out */
    const int epi = beta == 0;
    const nnl_idx items = N * G * nbands;
    const int team = (nnl_idx)p.nt > items ? (int)items : p.nt;
    /* every thread's buffers, allocated here: with no allocation in the units, the calling
     * thread starts on the bands at once while the others wake (the first step of a plan run
     * after an idle spell: the 224x224 stem of MobileNetV2 once waited for the second thread
     * before its first band) */
    T *bufs = (T *)nnl_alloc64(sizeof(T) * ph_thread_elems(&p) * (size_t)team);
    if (bufs == NULL) {
        nnl_free64(wpk);
        free(offs);
        return NNL_ENOMEM;
    }
    FN(ph_job) job = {g, x, y, bias, beta, act, wpk, bpk, offs, offs_tail, epi, &p, bufs, q};
    nnl_parallel_for(team, items, q != NULL ? FN(ph_pool_unit) : FN(ph_job_unit), &job);
    nnl_free64(bufs);
    nnl_free64(wpk);
    free(offs);
    return NNL_OK;
}

int FN(nnl_conv_phase)(const nnl_conv_geom *g, const T *x, const T *w, const T *bias, T beta,
                       T *y, int act, int nthreads)
{
    return FN(ph_call)(g, NULL, x, w, bias, beta, y, act, nthreads);
}

int FN(nnl_conv_phase_maxpool)(const nnl_conv_geom *g, const nnl_pool2d_geom *q, const T *x,
                               const T *w, const T *bias, T *y, int act, int nthreads)
{
    if (q == NULL)
        return NNL_EINVAL;
    return FN(ph_call)(g, q, x, w, bias, (T)0, y, act, nthreads);
}
