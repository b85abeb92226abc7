/* Template body of convfast_small.c, included once per dtype with T and FN(name) defined.
 * No include guard on purpose. */

typedef T FN(sm_vec) __attribute__((vector_size(SM_VBYTES)));
typedef T FN(sm_uvec) __attribute__((vector_size(SM_VBYTES), aligned(sizeof(T))));

/* d[j] = s[j], j < n: the rows copied into the flat planes are short (4 to 16 elements on the
 * maps this kernel is for), and a memcpy call per row cost more than the copy (the digits
 * net's 4x4 layers: ~6,000 calls per weight gradient) */
static inline NNL_NO_MEMCPY_IDIOM void FN(sm_row)(T *restrict d, const T *restrict s, nnl_idx n)
{
    for (nnl_idx j = 0; j < n; j++)
        d[j] = s[j];
}

/* acc[f][k] = sum over channels c < cg and taps t < ntap of wb[f] * x[c*plane + offs[t] + k*VL]
 * for f < SM_FB, k < QB, stored to yb[f*ystride + k*VL] (QB a compile-time constant after
 * inlining: the accumulators stay in registers); with epi, stored as act(acc + bb[f]) (bb NULL:
 * act(acc)), the scalar epilogue's values for beta = 0 */
static inline __attribute__((always_inline)) void
FN(sm_block)(const T *restrict xb, nnl_idx plane, const nnl_idx *restrict offs, nnl_idx ntap,
             nnl_idx cg, const T *restrict wb, T *restrict yb, nnl_idx ystride, int epi,
             const T *bb, int act, const int QB)
{
    enum { VL = SM_VBYTES / sizeof(T) };
    FN(sm_vec) acc[SM_FB][SM_QB_MAX];
    for (int f = 0; f < SM_FB; f++)
        for (int k = 0; k < QB; k++)
            acc[f][k] = (FN(sm_vec)){0};
    for (nnl_idx c = 0; c < cg; c++) {
        const T *xc = xb + c * plane;
        for (nnl_idx t = 0; t < ntap; t++, wb += SM_FB) {
            const T *s = xc + offs[t];
            FN(sm_vec) xv[SM_QB_MAX];
            for (int k = 0; k < QB; k++)
                xv[k] = *(const FN(sm_uvec) *)(s + k * VL);
            for (int f = 0; f < SM_FB; f++) {
                /* w - 0 is w exactly (a zero's sign too), so the compiler folds it into one
                 * broadcast load; 0 + w (not w for w = -0) compiled to a scalar add and a
                 * register broadcast per weight */
                const FN(sm_vec) wv = wb[f] - (FN(sm_vec)){0};
                for (int k = 0; k < QB; k++)
                    acc[f][k] += wv * xv[k];
            }
        }
    }
    if (epi)
        for (int f = 0; f < SM_FB; f++)
            for (int k = 0; k < QB; k++)
                acc[f][k] = NNL_ACT_VEC(bb ? acc[f][k] + bb[f] : acc[f][k], act);
    for (int f = 0; f < SM_FB; f++)
        for (int k = 0; k < QB; k++)
            *(FN(sm_uvec) *)(yb + f * ystride + k * VL) = acc[f][k];
}

static void FN(sm_blocks)(const T *xb, nnl_idx plane, const nnl_idx *offs, nnl_idx ntap,
                          nnl_idx cg, const T *wb, T *yb, nnl_idx nq, int epi, const T *bb,
                          int act)
{
    enum { VL = SM_VBYTES / sizeof(T) };
    const nnl_idx ystride = nq * VL;
    for (nnl_idx q = 0; q < nq; q += SM_QB_MAX) {
        const nnl_idx r = nq - q < SM_QB_MAX ? nq - q : SM_QB_MAX;
        const T *x0 = xb + q * VL;
        T *y0 = yb + q * VL;
        switch (r) {
#define SM_BLOCK(QB) FN(sm_block)(x0, plane, offs, ntap, cg, wb, y0, ystride, epi, bb, act, QB)
        case 1: SM_BLOCK(1); break;
        case 2: SM_BLOCK(2); break;
#if SM_QB_MAX > 3
        case 3: SM_BLOCK(3); break;
        case 4: SM_BLOCK(4); break;
        case 5: SM_BLOCK(5); break;
#endif
        default: SM_BLOCK(SM_QB_MAX); break;
#undef SM_BLOCK
        }
    }
}

/* One call's work on the pool: the weight blocks, then the units (an image, or a run of an
 * image's (group, filter block) pairs), each thread on its own image and output buffers. */
typedef struct {
    const nnl_conv_geom *g;
    const T *x, *w, *bias;
    T beta;
    T *y;
    int act;
    const T *wpk;   /* the packed weights the units read */
    T *wpk_call;    /* the buffer this call packs them into (NULL: packed once by the caller) */
    const nnl_idx *offs;
    T *bufs;
    size_t xs64, ys64;
    nnl_idx wp, nq, plane, hn, wn, split, blocks;
} FN(sm_job);

/* (group, filter) block blk of the weights as [c][tap][SM_FB] at d, filters past FG zero: the
 * layout of the packed weights [group][filter block][c][tap][SM_FB] */
static void FN(sm_pack_block)(const nnl_conv_geom *g, const T *w, nnl_idx blk, T *d)
{
    const nnl_idx G = g->g, CG = g->c / G, FG = g->f / G, ntap = g->kh * g->kw;
    const nnl_idx nfb = (FG + SM_FB - 1) / SM_FB, gi = blk / nfb, fb = blk % nfb;
    d += blk * CG * ntap * SM_FB;
    for (nnl_idx k = 0; k < CG * ntap; k++)
        for (nnl_idx f = 0; f < SM_FB; f++) {
            const nnl_idx ff = fb * SM_FB + f;
            d[k * SM_FB + f] = ff < FG ? w[(gi * FG + ff) * CG * ntap + k] : (T)0;
        }
}

static void FN(sm_pack_unit)(void *ctx, nnl_idx blk, int tid, int first)
{
    const FN(sm_job) *j = (const FN(sm_job) *)ctx;
    (void)tid, (void)first;
    FN(sm_pack_block)(j->g, j->w, blk, j->wpk_call);
}

int FN(nnl_conv_small_wpack)(const nnl_conv_geom *g, const T *w, T *wpk)
{
    if (!sm_geom_ok(g))
        return NNL_EINVAL;
    const nnl_idx blocks = g->g * ((g->f / g->g + SM_FB - 1) / SM_FB);
    for (nnl_idx blk = 0; blk < blocks; blk++)
        FN(sm_pack_block)(g, w, blk, wpk);
    return NNL_OK;
}

static void FN(sm_job_unit)(void *ctx, nnl_idx u, int tid, int first)
{
    enum { VL = SM_VBYTES / sizeof(T) };
    const FN(sm_job) *j = (const FN(sm_job) *)ctx;
    const nnl_conv_geom *g = j->g;
    const T *x = j->x, *bias = j->bias, *wpk = j->wpk;
    const T beta = j->beta;
    T *y = j->y;
    const int act = j->act;
    const nnl_idx *offs = j->offs;
    const nnl_idx G = g->g, OH = g->oh, OW = g->ow, CG = g->c / G, FG = g->f / G;
    const nnl_idx ntap = g->kh * g->kw, nfb = (FG + SM_FB - 1) / SM_FB, wblk = CG * ntap * SM_FB;
    const nnl_idx wp = j->wp, nq = j->nq, plane = j->plane, hn = j->hn, wn = j->wn;
    const nnl_idx split = j->split, blocks = j->blocks;
    T *xb = j->bufs + (size_t)tid * (j->xs64 + j->ys64), *yb = xb + j->xs64;
    if (first)   /* the padding stays zero: units copy only the image's rows */
        memset(xb, 0, sizeof(T) * (size_t)(CG * plane));
    const nnl_idx n = u / split, part = u % split;
    const nnl_idx b0 = part * blocks / split, b1 = (part + 1) * blocks / split;
    nnl_idx copied = -1;   /* the group whose channels xb holds */
    for (nnl_idx blk = b0; blk < b1; blk++) {
        const nnl_idx gi = blk / nfb, fb = blk % nfb;
        if (gi != copied) {
            for (nnl_idx c = 0; c < CG; c++) {
                const T *src = x + n * g->xsn + (gi * CG + c) * g->xsc;
                T *dst = xb + c * plane + g->pt * wp + g->pl;
                for (nnl_idx h = 0; wn > 0 && h < hn; h++)
                    FN(sm_row)(dst + h * wp, src + h * g->xsr, wn);
            }
            copied = gi;
        }
        const nnl_idx fcount = FG - fb * SM_FB < SM_FB ? FG - fb * SM_FB : SM_FB;
        /* beta = 0: bias and activation on the registers (the block's filters past FG get a
         * zero bias, their values are dropped), the rows then copied out; else the scalar
         * epilogue reads y */
        const int epi = beta == 0;
        T bpad[SM_FB];
        for (nnl_idx f = 0; f < SM_FB; f++)
            bpad[f] = bias && f < fcount ? bias[gi * FG + fb * SM_FB + f] : (T)0;
        FN(sm_blocks)(xb, plane, offs, ntap, CG, wpk + blk * wblk, yb, nq, epi,
                      bias ? bpad : NULL, act);
        for (nnl_idx f = 0; f < fcount; f++) {
            const nnl_idx fo = gi * FG + fb * SM_FB + f;
            const T *bp = bias ? bias + fo : NULL;
            const T *src = yb + f * nq * VL;
            T *dst = y + n * g->ysn + fo * g->ysf;
            if (epi) {
                for (nnl_idx i = 0; i < OH; i++)
                    FN(sm_row)(dst + i * OW, src + i * wp, OW);
                continue;
            }
            for (nnl_idx i = 0; i < OH; i++)
                for (nnl_idx j = 0; j < OW; j++) {
                    T *o = dst + i * OW + j;
                    *o = NNL_EPI_ONE(src[i * wp + j], (T)1, beta, o, bp, act);
                }
        }
    }
}

int FN(nnl_conv_small)(const nnl_conv_geom *g, const T *x, const T *w, const T *wpk_once,
                       const T *bias, T beta, T *y, int act, int nthreads)
{
    enum { VL = SM_VBYTES / sizeof(T) };
    if (!sm_geom_ok(g))
        return NNL_EINVAL;
    const nnl_idx N = g->n, G = g->g, OH = g->oh, OW = g->ow, KH = g->kh, KW = g->kw;
    if (N == 0 || g->f == 0 || OH == 0 || OW == 0)
        return NNL_OK;
    const nnl_idx CG = g->c / G, FG = g->f / G, ntap = KH * KW;
    const nnl_idx nfb = (FG + SM_FB - 1) / SM_FB;
    nnl_idx wp, nq, plane;
    sm_plane(g, VL, &wp, &nq, &plane);
    /* the image rows and columns inside the grid (a padding bigger than the kernel leaves
     * rows or columns of x that no output reads) */
    const nnl_idx hp = OH + (KH - 1) * g->dh;
    const nnl_idx hn = g->h < hp - g->pt ? g->h : hp - g->pt;
    const nnl_idx wn = g->w < wp - g->pl ? g->w : wp - g->pl;
    const nnl_idx wblk = CG * ntap * SM_FB;
    const nnl_idx blocks = G * nfb;   /* (group, filter block) pairs of an image */
    /* the packed weights: made once by the caller (nnl_conv_small_wpack), else here */
    T *wpk = wpk_once != NULL ? NULL
             : (T *)nnl_alloc64(sizeof(T) * (size_t)(blocks * wblk > 0 ? blocks * wblk : 1));
    nnl_idx *offs = (nnl_idx *)malloc(sizeof(nnl_idx) * (size_t)ntap);
    if ((wpk == NULL && wpk_once == NULL) || offs == NULL) {
        nnl_free64(wpk);
        free(offs);
        return NNL_ENOMEM;
    }
    for (nnl_idx a = 0; a < KH; a++)
        for (nnl_idx b = 0; b < KW; b++)
            offs[a * KW + b] = a * g->dh * wp + b * g->dw;
    const int nt = nnl_team_by_share(nthreads, (double)N * g->f * OH * OW * CG * ntap,
                                     NNL_SMALL_MIN_MACS_PER_THREAD);
    /* Work units: whole images while there are at least as many images as threads; else each
     * image's (group, filter block) pairs cut into `split` runs (one image at batch 1: the
     * filters split over the team, each thread copying the image's planes for itself). The
     * arithmetic of every output is the same either way. */
    const nnl_idx split = (nnl_idx)nt <= N ? 1 : nnl_min(blocks, nnl_cdiv(nt, N));
    const nnl_idx units = N * split;
    const int team = (nnl_idx)nt > units ? (int)units : nt;
    /* every thread's image and output buffers, in one block */
    size_t xs64, ys64;
    T *bufs = (T *)nnl_alloc_pairs((size_t)(CG * plane), (size_t)(SM_FB * nq * VL), sizeof(T),
                                   team, &xs64, &ys64);
    if (bufs == NULL) {
        nnl_free64(wpk);
        free(offs);
        return NNL_ENOMEM;
    }
    FN(sm_job) j = {g, x, w, bias, beta, y, act, wpk_once != NULL ? wpk_once : wpk, wpk, offs,
                    bufs, xs64, ys64, wp, nq, plane, hn, wn, split, blocks};
    if (wpk_once == NULL)
        nnl_parallel_for(team, blocks, FN(sm_pack_unit), &j);
    nnl_parallel_for(team, units, FN(sm_job_unit), &j);
    nnl_free64(bufs);
    nnl_free64(wpk);
    free(offs);
    return NNL_OK;
}

/* ------------------------------------------------------------------ weight gradient */

/* acc[f][t] = sum over images n and output vectors k of gy[n][f][k] * x[n][offs[t] + k*VL]
 * (gy rows on the flat grid, zero past OW; x the padded planes), for f < SM_FB, t < TB (a
 * compile-time constant after inlining), summed lane by lane into gw[f*gws + t]. The zeros
 * of the dropped columns meet real pixels: an inf there gives 0 * inf = NaN, which the caller
 * (nnlite/kernels/conv_cython.py) detects and recomputes exactly. */
static inline __attribute__((always_inline)) void
FN(sm_wblock)(const T *const *gyr, const T *xp, nnl_idx n_img, const nnl_idx *gstep,
              nnl_idx x_img, const nnl_idx *restrict offs, nnl_idx nq, T *gw, nnl_idx gws,
              const int TB)
{
    enum { VL = SM_VBYTES / sizeof(T) };
    FN(sm_vec) acc[SM_FB][SM_WTB_MAX];
    for (int f = 0; f < SM_FB; f++)
        for (int t = 0; t < TB; t++)
            acc[f][t] = (FN(sm_vec)){0};
    for (nnl_idx n = 0; n < n_img; n++) {
        const T *xn = xp + n * x_img;
        for (nnl_idx k = 0; k < nq; k++) {
            FN(sm_vec) gv[SM_FB];
            for (int f = 0; f < SM_FB; f++)
                gv[f] = *(const FN(sm_uvec) *)(gyr[f] + n * gstep[f] + k * VL);
            for (int t = 0; t < TB; t++) {
                const FN(sm_vec) xv = *(const FN(sm_uvec) *)(xn + offs[t] + k * VL);
                for (int f = 0; f < SM_FB; f++)
                    acc[f][t] += gv[f] * xv;
            }
        }
    }
    for (int f = 0; f < SM_FB; f++)
        for (int t = 0; t < TB; t++) {
            T sum = 0;
            for (int l = 0; l < VL; l++)
                sum += acc[f][t][l];
            gw[f * gws + t] = sum;
        }
}

int FN(nnl_conv_small_wgrad)(const nnl_conv_geom *g, const T *x, const T *gy, T *gw,
                             int nthreads)
{
    enum { VL = SM_VBYTES / sizeof(T) };
    if (!sm_geom_ok(g))
        return NNL_EINVAL;
    const nnl_idx N = g->n, G = g->g, OH = g->oh, OW = g->ow, KH = g->kh, KW = g->kw;
    const nnl_idx CG = G ? g->c / G : 0, FG = G ? g->f / G : 0, ntap = KH * KW;
    if (g->f == 0 || CG == 0)
        return NNL_OK;
    if (N == 0 || OH == 0 || OW == 0) {
        memset(gw, 0, sizeof(T) * (size_t)(g->f * CG * ntap));
        return NNL_OK;
    }
    const nnl_idx nfb = (FG + SM_FB - 1) / SM_FB;
    const nnl_idx ntb = (ntap + SM_WTB_MAX - 1) / SM_WTB_MAX;
    nnl_idx wp, nq, plane;
    sm_plane(g, VL, &wp, &nq, &plane);
    const nnl_idx hp = OH + (KH - 1) * g->dh;
    const nnl_idx hn = g->h < hp - g->pt ? g->h : hp - g->pt;
    const nnl_idx wn = g->w < wp - g->pl ? g->w : wp - g->pl;
    const nnl_idx gy_img = g->f * nq * VL, x_img = g->c * plane;
    /* gy on the flat grid (zero at the dropped columns and past the last output), the
     * padded planes of every image, a zero row for the filters past FG of a block */
    T *gyf = (T *)nnl_alloc64(sizeof(T) * (size_t)(N * gy_img + nq * VL));
    T *xpk = (T *)nnl_alloc64(sizeof(T) * (size_t)(N * x_img));
    nnl_idx *offs = (nnl_idx *)malloc(sizeof(nnl_idx) * (size_t)ntap);
    if (gyf == NULL || xpk == NULL || offs == NULL) {
        nnl_free64(gyf);
        nnl_free64(xpk);
        free(offs);
        return NNL_ENOMEM;
    }
    T *zero = gyf + N * gy_img;
    memset(zero, 0, sizeof(T) * (size_t)(nq * VL));
    for (nnl_idx a = 0; a < KH; a++)
        for (nnl_idx b = 0; b < KW; b++)
            offs[a * KW + b] = a * g->dh * wp + b * g->dw;
    const int nt = nnl_team_by_share(nthreads, (double)N * g->f * OH * OW * CG * ntap,
                                     NNL_DW_MIN_MACS_PER_THREAD);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(static)
        for (nnl_idx n = 0; n < N; n++) {
            T *gn = gyf + n * gy_img;
            memset(gn, 0, sizeof(T) * (size_t)gy_img);
            for (nnl_idx f = 0; f < g->f; f++)
                for (nnl_idx i = 0; i < OH; i++)
                    FN(sm_row)(gn + f * nq * VL + i * wp, gy + (n * g->f + f) * OH * OW + i * OW,
                               OW);
            T *xn = xpk + n * x_img;
            memset(xn, 0, sizeof(T) * (size_t)x_img);
            for (nnl_idx c = 0; c < g->c; c++) {
                const T *src = x + n * g->xsn + c * g->xsc;
                T *dst = xn + c * plane + g->pt * wp + g->pl;
                for (nnl_idx h = 0; wn > 0 && h < hn; h++)
                    FN(sm_row)(dst + h * wp, src + h * g->xsr, wn);
            }
        }
        /* one task per (group, filter block, channel, tap block): each writes its own part of
         * gw, summed in the same order on any number of threads */
        const nnl_idx tasks = G * nfb * CG * ntb;
#pragma omp for schedule(static)
        for (nnl_idx task = 0; task < tasks; task++) {
            nnl_idx r = task;
            const nnl_idx tb = r % ntb;
            r /= ntb;
            const nnl_idx c = r % CG;
            r /= CG;
            const nnl_idx fb = r % nfb;
            const nnl_idx gi = r / nfb;
            const T *gyr[SM_FB];
            nnl_idx gstep[SM_FB]; /* the zero row of the filters past FG is not per image */
            for (nnl_idx f = 0; f < SM_FB; f++) {
                const nnl_idx ff = fb * SM_FB + f;
                gyr[f] = ff < FG ? gyf + (gi * FG + ff) * nq * VL : zero;
                gstep[f] = ff < FG ? gy_img : 0;
            }
            const nnl_idx t0 = tb * SM_WTB_MAX;
            const nnl_idx tcount = ntap - t0 < SM_WTB_MAX ? ntap - t0 : SM_WTB_MAX;
            const nnl_idx fcount = FG - fb * SM_FB < SM_FB ? FG - fb * SM_FB : SM_FB;
            T out[SM_FB * SM_WTB_MAX];
            const T *xc = xpk + (gi * CG + c) * plane;
#define SM_WCALL(TB) FN(sm_wblock)(gyr, xc, N, gstep, x_img, offs + t0, nq, out, SM_WTB_MAX, TB)
            switch (tcount) {
            case 1: SM_WCALL(1); break;
            case 2: SM_WCALL(2); break;
            case 3: SM_WCALL(3); break;
            case 4: SM_WCALL(4); break;
            default: SM_WCALL(SM_WTB_MAX); break;
            }
#undef SM_WCALL
            for (nnl_idx f = 0; f < fcount; f++)
                for (nnl_idx t = 0; t < tcount; t++)
                    gw[(gi * FG + fb * SM_FB + f) * CG * ntap + c * ntap + t0 + t] =
                        out[f * SM_WTB_MAX + t];
        }
    }
    nnl_free64(gyf);
    nnl_free64(xpk);
    free(offs);
    return NNL_OK;
}
