/* Template body of convfast_implicit.c, included once per dtype with T, EPI_T, KERNEL_T,
 * FN(name), CF_GEMM (the dtype's nnl_?gemm), CF_BDIRECT and (float) PACK_A8, PACK_T8, PACK_TR
 * defined. No include guard on purpose. The loop nest is the GEMM's (gemm_nest,
 * gemm_nest_tmpl.h); this file supplies its B packers (cf_pack_cols, cf_pack_wide, and the
 * weight gradient's cf_pack_wgrad) and the tile write-out (cf_scatter). */

#include "gemm_nest_tmpl.h"

/* len zeros at columns pos.. of packed row dk (panel = kcb*nr elements between panels) */
static NNL_NO_MEMCPY_IDIOM void FN(cf_put_zero)(T *dk, nnl_idx panel, int nr, nnl_idx pos,
                                                   nnl_idx len)
{
    while (len > 0) {
        const nnl_idx q = pos / nr;
        const int o = (int)(pos - q * nr);
        const int m = (int)nnl_min(len, nr - o);
        T *d = dk + q * panel + o;
        for (int e = 0; e < m; e++)
            d[e] = 0;
        pos += m, len -= m;
    }
}

/* src[0], src[sw], ... (len of them) -> columns pos.. of packed row dk */
static NNL_NO_MEMCPY_IDIOM void FN(cf_put_copy)(T *dk, nnl_idx panel, int nr, nnl_idx pos,
                                                   const T *src, nnl_idx sw, nnl_idx len)
{
    while (len > 0) {
        const nnl_idx q = pos / nr;
        const int o = (int)(pos - q * nr);
        const int m = (int)nnl_min(len, nr - o);
        T *NNL_RESTRICT d = dk + q * panel + o;
        if (sw == 1) {
            for (int e = 0; e < m; e++)
                d[e] = src[e];
        } else {
            for (int e = 0; e < m; e++)
                d[e] = src[e * sw];
        }
        pos += m, len -= m, src += m * sw;
    }
}

/* cols_g[k0:k0+kcb, j0:j0+ncb] -> ceil(ncb/nr) micro-panels bp[q][k][j] (columns >= ncb zero),
 * read from the group's first channel xg. Row k = (c*KH + a)*KW + b of output pixel
 * l = i*OW + j reads xg[c*xsc + (i*SH - PT + a*DH)*xsr + j*SW - PL + b*DW], 0 in the padding. */
static void FN(cf_pack_cols)(const nnl_conv_geom *g, const T *xg, nnl_idx k0, nnl_idx kcb,
                             nnl_idx j0, nnl_idx ncb, int nr, T *NNL_RESTRICT bp)
{
    const nnl_idx taps = g->kh * g->kw, ow = g->ow, sw = g->sw;
    const nnl_idx panel = kcb * nr;
    const nnl_idx nq = nnl_cdiv(ncb, nr);
    const nnl_idx rem = ncb - (nq - 1) * nr;
    if (rem < nr)
        for (nnl_idx k = 0; k < kcb; k++)
            FN(cf_put_zero)(bp + (nq - 1) * panel + k * nr, panel, nr, rem, nr - rem);
    nnl_idx c = k0 / taps, a = (k0 % taps) / g->kw, b = k0 % g->kw;
    const nnl_idx i0 = j0 / ow, jj0 = j0 % ow;
    for (nnl_idx kk = 0; kk < kcb; kk++) {
        const T *xc = xg + c * g->xsc;
        const nnl_idx off = b * g->dw - g->pl;   /* source column of output column j: j*sw+off */
        const nnl_idx roff = a * g->dh - g->pt;  /* source row of output row i: i*sh + roff */
        nnl_idx lo, hi;
        nnl_col_range(off, g->w, sw, ow, &lo, &hi);
        T *dk = bp + kk * nr;
        nnl_idx pos = 0, i = i0, jj = jj0;
        while (pos < ncb) {
            const nnl_idx seg = nnl_min(ow - jj, ncb - pos);   /* output row i, columns jj.. */
            const nnl_idx r = i * g->sh + roff;
            if ((size_t)r >= (size_t)g->h) {
                FN(cf_put_zero)(dk, panel, nr, pos, seg);     /* a fully padded source row */
            } else {
                /* columns jj + [0, z0) and [z1, seg) are padding; [z0, z1) are in the image */
                const nnl_idx z0 = nnl_clamp(lo - jj, 0, seg);
                const nnl_idx z1 = nnl_max(z0, nnl_clamp(hi - jj, 0, seg));
                FN(cf_put_zero)(dk, panel, nr, pos, z0);
                if (z1 > z0)
                    FN(cf_put_copy)(dk, panel, nr, pos + z0,
                                    xc + r * g->xsr + ((jj + z0) * sw + off), sw, z1 - z0);
                FN(cf_put_zero)(dk, panel, nr, pos + z1, seg - z1);
            }
            pos += seg, jj = 0, i++;
        }
        if (++b == g->kw) {
            b = 0;
            if (++a == g->kh)
                a = 0, c++;
        }
    }
}

/* ---------------------------------------------------------------------------- wide layout */

/* Phase rows [u0, u0 + rows) of one channel plane -> the stride phases the taps use (pstride
 * apart, in the order of p->rph x p->cph; zero padding):
 * ph[(ri*ncph + ci)*pstride + (u - u0)*WQ + v] = x[u*SH + rph[ri] - PT, v*SW + cph[ci] - PL]
 * (0 outside the image). */
static NNL_NO_MEMCPY_IDIOM void FN(cf_wide_rows)(const nnl_conv_geom *g, const cf_plan *p,
                                                    const T *xp, nnl_idx u0, nnl_idx rows,
                                                    T *NNL_RESTRICT dst)
{
    const nnl_idx wq = p->wq, sh = g->sh, sw = g->sw;
    for (int ri = 0; ri < p->nrph; ri++)
        for (int ci = 0; ci < p->ncph; ci++) {
            const nnl_idx ra = p->rph[ri], off = p->cph[ci] - g->pl;
            T *ph = dst + (ri * p->ncph + ci) * p->pstride;
            nnl_idx lo, hi;   /* columns v whose source v*sw + off lies in [0, W) */
            nnl_col_range(off, g->w, sw, wq, &lo, &hi);
            for (nnl_idx u = 0; u < rows; u++) {
                const nnl_idx r = (u0 + u) * sh + ra - g->pt;
                if ((size_t)r >= (size_t)g->h)
                    memset(ph + u * wq, 0, sizeof(T) * (size_t)wq);
                else
                    FN(nnl_strided_row)(ph + u * wq, xp + r * g->xsr + off, wq, sw, lo, hi);
            }
        }
}

/* koff[k] for every row k = (c*KH + a)*KW + b of cols_g: where B row k starts in the wide
 * source of the group (wide column t of row k is src[koff[k] + t], src = the image for
 * CF_SELF, the band copy shifted back by its first row for CF_WIDE). */
static void FN(cf_tap_offsets)(const nnl_conv_geom *g, const cf_plan *p, nnl_idx *koff)
{
    const int self = p->mode == CF_SELF;
    const nnl_idx cstride = self ? g->xsc : p->nrph * p->ncph * p->pstride;
    nnl_idx k = 0;
    for (nnl_idx c = 0; c < p->cg; c++)
        for (nnl_idx a = 0; a < g->kh; a++)
            for (nnl_idx b = 0; b < g->kw; b++, k++) {
                const nnl_idx ea = a * g->dh, eb = b * g->dw;
                if (self) {
                    koff[k] = c * cstride + ea * g->xsr + eb;
                    continue;
                }
                int ri = 0, ci = 0;   /* the slots of this tap's phases */
                while (p->rph[ri] != ea % g->sh)
                    ri++;
                while (p->cph[ci] != eb % g->sw)
                    ci++;
                koff[k] = c * cstride + (ri * p->ncph + ci) * p->pstride + (ea / g->sh) * p->wq +
                          eb / g->sw;
            }
}

/* B rows k0..k0+kcb, wide columns j0..j0+ncb -> micro-panels bp[q][k][j], wide column t of
 * row k being src[koff[k] + t - tbase]: one contiguous copy per row and panel (columns at or
 * past the wide length are zero; nothing past it is read). */
static NNL_NO_MEMCPY_IDIOM void FN(cf_pack_wide)(const T *src, nnl_idx tbase,
                                                    const nnl_idx *koff,
                                                    nnl_idx k0, nnl_idx kcb, nnl_idx j0,
                                                    nnl_idx ncb, nnl_idx ncols, int nr,
                                                    T *NNL_RESTRICT bp)
{
    for (nnl_idx q = 0; q * nr < ncb; q++) {
        const nnl_idx t0 = j0 + q * nr;
        const int n = (int)nnl_min(nr, ncols - t0);
        T *dst = bp + q * kcb * nr;
        if (n == nr && nr == 48) {
            for (nnl_idx kk = 0; kk < kcb; kk++) {
                const T *s = src + (koff[k0 + kk] + t0 - tbase);
                for (int j = 0; j < 48; j++)
                    dst[kk * 48 + j] = s[j];
            }
        } else {
            for (nnl_idx kk = 0; kk < kcb; kk++) {
                const T *s = src + (koff[k0 + kk] + t0 - tbase);
                for (int j = 0; j < n; j++)
                    dst[kk * nr + j] = s[j];
                for (int j = n; j < nr; j++)
                    dst[kk * nr + j] = 0;
            }
        }
    }
}

/* Add a tile (m rows, wide columns t0..t0+n of row stride nr) into y rows yr (row stride ysf),
 * dropping the wide columns j >= OW: first K slice y = alpha*tile + beta*y, later ones
 * y += alpha*tile; the last one also adds the bias and applies act. Every element is rounded
 * as the micro-kernel's own epilogue would round it (nnl_epi_one_*), so the scatter and the
 * direct write-out give the same bits. */
static void FN(cf_scatter)(const nnl_conv_geom *g, const cf_plan *p, const T *tile, int m,
                           int n, nnl_idx t0, T *yr, nnl_idx ysf, T alpha, T beta, int first,
                           int last, const T *bias, int act)
{
    /* the tile's columns as runs [e, e + len) -> y columns [ycol, ycol + len) */
    nnl_idx seg_e[130], seg_y[130], seg_len[130];
    int ns = 0;
    for (nnl_idx e = 0, t = t0; e < n && ns < 130;) {
        const nnl_idx i = t / p->wq, j = t - i * p->wq;
        const nnl_idx run = nnl_min(n - e, p->wq - j);
        if (j < g->ow) {
            seg_e[ns] = e, seg_y[ns] = i * g->ow + j, seg_len[ns] = nnl_min(run, g->ow - j);
            ns++;
        }
        e += run, t += run;
    }
    const int plain = alpha == (T)1;
    const int epi = last && (bias || act != NNL_ACT_NONE);
    for (int r = 0; r < m; r++) {
        const T *s = tile + r * p->nr;
        T *d = yr + r * ysf;
        const T *br = bias ? bias + r : NULL;
        for (int q = 0; q < ns; q++) {
            const T *NNL_RESTRICT ss = s + seg_e[q];
            T *NNL_RESTRICT dd = d + seg_y[q];
            const nnl_idx len = seg_len[q];
            /* the last K slice of a plain product adds, biases and activates in one pass (the
             * same operations on the same values as the two passes below) */
            if (!first && plain && epi) {
                for (nnl_idx c = 0; c < len; c++)
                    dd[c] = NNL_BIAS_ACT(dd[c] + ss[c], br, act);
                continue;
            }
            if (first && beta == 0 && plain && epi) {
                for (nnl_idx c = 0; c < len; c++)
                    dd[c] = NNL_BIAS_ACT(ss[c], br, act);
                continue;
            }
            if (!first && plain) {
                for (nnl_idx c = 0; c < len; c++)
                    dd[c] += ss[c];
            } else if (first && beta == 0 && plain) {
                for (nnl_idx c = 0; c < len; c++)
                    dd[c] = ss[c];
            } else if (first && beta == 0) {
                for (nnl_idx c = 0; c < len; c++)
                    dd[c] = alpha * ss[c];
            } else {   /* the micro-kernels' rounding: fma(tile, alpha, beta * y) */
                const T bt = first ? beta : (T)1;
                for (nnl_idx c = 0; c < len; c++)
                    dd[c] = NNL_EPI_ONE(ss[c], alpha, bt, dd + c, NULL, NNL_ACT_NONE);
            }
            if (epi)
                for (nnl_idx c = 0; c < len; c++)
                    dd[c] = NNL_BIAS_ACT(dd[c], br, act);
        }
    }
}

/* ------------------------------------------------------------------------------ the units */

/* One (image n, group gi) item as the GEMM's loop nest sees it (gemm_internal.h): B is
 * packed from the image (cf_b_src), and in the wide layouts every tile goes through
 * cf_scatter (cf_tile). */
typedef struct {
    const nnl_conv_geom *g;
    const cf_plan *p;
    const KERNEL_T *kd;
    const T *xg;                 /* the group's first channel (CF_SEGMENTS) */
    const T *src;                /* wide source, column t of row k at src[koff[k] + t - tbase] */
    nnl_idx tbase;
    const nnl_idx *koff;
    int bdirect;                 /* full wide panels read by nnl_cf_bdirect_8x48_s, unpacked */
    T *y;                        /* the group's first output channel (row stride ysf) */
    const T *bias;               /* the group's bias, or NULL */
    T *tile;                     /* the thread's MR x NR tile (scatter) */
    T alpha, beta;
    int act;
} FN(cf_item);

/* The B micro-panels of K rows [pc, pc + kcb) x GEMM columns [jc, jc + ncb), into bp. */
static const T *FN(cf_b_src)(const void *ctx, int nr, nnl_idx pc, nnl_idx kcb, nnl_idx jc,
                             nnl_idx ncb, T *bp)
{
    const FN(cf_item) *it = (const FN(cf_item) *)ctx;
    const cf_plan *p = it->p;
    const nnl_idx nq = nnl_cdiv(ncb, nr);
    if (p->mode == CF_SEGMENTS)
        FN(cf_pack_cols)(it->g, it->xg, pc, kcb, jc, ncb, nr, bp);
    else if (!it->bdirect)
        FN(cf_pack_wide)(it->src, it->tbase, it->koff, pc, kcb, jc, ncb, p->ncols, nr, bp);
    else if (ncb % nr && !p->bdirect_all)   /* B-direct: only a partial last panel is packed */
        FN(cf_pack_wide)(it->src, it->tbase, it->koff, pc, kcb, jc + (nq - 1) * nr,
                         ncb - (nq - 1) * nr, p->ncols, nr, bp + (nq - 1) * kcb * nr);
    return bp;
}

/* Output channels [ir, ir + m) x wide columns [jr, jr + n): the product into the tile (packed
 * panels, or B read in place by the B-direct kernel), then cf_scatter into y. */
static void FN(cf_tile)(const void *ctx, nnl_idx kcb, const T *ap, const T *bp, nnl_idx ir,
                        nnl_idx jr, int m, int n, nnl_idx pc, int first, int last)
{
    const FN(cf_item) *it = (const FN(cf_item) *)ctx;
    const nnl_idx ysf = it->g->ysf;
    const EPI_T plain = {1, 0, 0, NNL_ACT_NONE, NULL, NULL, it->p->nr};
#if CF_BDIRECT
    if (it->bdirect && (n == it->p->nr || it->p->bdirect_all))
        nnl_cf_bdirect_8x48_s(kcb, ap, it->src + (jr - it->tbase), it->koff + pc, it->tile);
    else
#else
    (void)pc;
#endif
        it->kd->ukr(kcb, ap, bp, it->tile, it->p->nr, m, n, &plain);
    FN(cf_scatter)(it->g, it->p, it->tile, m, n, jr, it->y + ir * ysf, ysf, it->alpha, it->beta,
                   first, last, it->bias ? it->bias + ir : NULL, it->act);
}

int FN(nnl_conv_implicit_wpack)(const nnl_conv_geom *geom, const T *w, int isa, T *out,
                                nnl_idx *kc)
{
    *kc = 0;
    if (!cf_geom_ok(geom))
        return NNL_EINVAL;
    const KERNEL_T *kd = FN(nnl_select)(isa);
    if (kd == NULL || kd->nr > 64)
        return NNL_EINVAL;
    if (geom->n == 0 || geom->f == 0 || geom->oh == 0 || geom->ow == 0 || geom->c == 0)
        return NNL_OK;
    cf_plan p;   /* the call's K slices (the geometry's, whatever the thread count) */
    const int bdirect = CF_BDIRECT && nnl_cf_bdirect_ok(isa, kd->mr, kd->nr);
    cf_plan_call(geom, kd->mr, kd->nr, kd->mc, kd->kc, sizeof(T), 1, bdirect, 1, &p);
    const nnl_idx FG = p.fg, K = p.k, rows = nnl_cdiv(FG, kd->mr) * kd->mr;
    for (nnl_idx gi = 0; gi < geom->g; gi++)
        for (nnl_idx pc = 0; pc < K; pc += p.kcb_max)
            FN(pack_a)(FG, nnl_min(p.kcb_max, K - pc), w + gi * FG * K, K, 1, kd->mr,
                       nnl_pack_a_fast(kd->mr), out + gi * rows * K + rows * pc, pc, 0, 0);
    *kc = p.kcb_max;
    return NNL_OK;
}

/* One call's work units on the pool: (item, row group, column group), on the running
 * thread's packing, tile and band buffers. */
typedef struct {
    const nnl_conv_geom *geom;
    const cf_plan *p;
    const KERNEL_T *kd;
    const T *x, *w, *wpk, *bias;
    T *y;
    T alpha, beta;
    int act, bdirect;
    const nnl_idx *koff;
    const FN(nnl_nest) *s0;
    T *per_thread;
    size_t thread_elems;
    nnl_idx wpk_rows;
} FN(cf_job);

static void FN(cf_job_unit)(void *ctx, nnl_idx u, int tid, int first)
{
    const FN(cf_job) *j = (const FN(cf_job) *)ctx;
    const nnl_conv_geom *geom = j->geom;
    const cf_plan p = *j->p;
    const KERNEL_T *kd = j->kd;
    const T *x = j->x, *w = j->w, *wpk = j->wpk, *bias = j->bias;
    T *y = j->y;
    const T alpha = j->alpha, beta = j->beta;
    const int act = j->act, bdirect = j->bdirect;
    const nnl_idx *koff = j->koff, wpk_rows = j->wpk_rows;
    const FN(nnl_nest) s0 = *j->s0;
    const nnl_idx G = geom->g, cu = p.cu, ru = p.ru, FG = p.fg;
    T *ap = j->per_thread + (size_t)tid * j->thread_elems;
    T *bp = ap + p.a_elems;
    T *tile = bp + p.b_elems;
    T *band = tile + p.t_elems;
    (void)first;
    const nnl_idx c = u % cu, r = (u / cu) % ru, item = u / (cu * ru);
    const nnl_idx n = item / G, gi = item % G;
    const nnl_idx c0 = c * p.nu, c1 = nnl_min(p.ncols, (c + 1) * p.nu);
    const T *xg = x + n * geom->xsn + gi * p.cg * geom->xsc;
    const T *src = xg;
    nnl_idx tbase = 0;
    if (p.mode == CF_WIDE) {
        /* this unit's band: phase rows i0 .. (last output row) + the kernel's reach */
        const nnl_idx i0 = c0 / p.wq;
        const nnl_idx rows = nnl_min(p.hq, (c1 - 1) / p.wq + 1 +
                                    ((geom->kh - 1) * geom->dh) / geom->sh) - i0;
        for (nnl_idx ch = 0; ch < p.cg; ch++)
            FN(cf_wide_rows)(geom, &p, xg + ch * geom->xsc, i0, rows,
                             band + ch * p.nrph * p.ncph * p.pstride);
        src = band, tbase = i0 * p.wq;   /* column t of row k: band[koff[k] + t - tbase] */
    }
    FN(cf_item) it = {geom, &p, kd, xg, src, tbase, koff, bdirect && p.scatter,
                      y + n * geom->ysn + gi * FG * geom->ysf,
                      bias ? bias + gi * FG : NULL, tile, alpha, beta, act};
    FN(nnl_nest) sb = s0;
    sb.a = w + gi * FG * p.k, sb.c = it.y, sb.bias = it.bias;
    if (wpk != NULL)   /* the group's panels, packed once (nnl_conv_implicit_wpack) */
        sb.apk = wpk + gi * wpk_rows * p.k, sb.apk_rows = wpk_rows;
    const nnl_idx r0 = r * p.mu, r1 = nnl_min(FG, (r + 1) * p.mu);
    sb.b_ctx = &it, sb.t_ctx = &it;
    if (p.scatter)
        FN(gemm_nest)(&sb, FN(cf_b_src), FN(cf_tile), kd, r0, r1, c0, c1, ap, bp);
    else
        FN(gemm_nest)(&sb, FN(cf_b_src), NULL, kd, r0, r1, c0, c1, ap, bp);
}

int FN(nnl_conv_implicit)(const nnl_conv_geom *geom, const T *x, const T *w, const T *bias,
                          T alpha, T beta, T *y, int act, int nthreads, int isa)
{
    return FN(nnl_conv_implicit_pk)(geom, x, w, NULL, 0, bias, alpha, beta, y, act, nthreads,
                                    isa);
}

int FN(nnl_conv_implicit_pk)(const nnl_conv_geom *geom, const T *x, const T *w, const T *wpk,
                             nnl_idx wpk_kc, const T *bias, T alpha, T beta, T *y, int act,
                             int nthreads, int isa)
{
    if (!cf_geom_ok(geom) || act < NNL_ACT_NONE || act > NNL_ACT_RELU6)
        return NNL_EINVAL;
    const KERNEL_T *kd = FN(nnl_select)(isa);
    if (kd == NULL || kd->nr > 64)
        return NNL_EINVAL;
    if (geom->n == 0 || geom->f == 0 || geom->oh == 0 || geom->ow == 0)
        return NNL_OK;
    if (geom->c == 0)   /* K == 0: y = act(beta * y + bias), the GEMM's own K == 0 case */
        return CF_GEMM(geom->n, geom->f, geom->oh * geom->ow, 0, alpha, NULL, 0, 0, 0, NULL, 0, 0,
                       0, beta, y, geom->ysn, geom->ysf, bias, 0,
                       bias ? NNL_BIAS_ROW : NNL_BIAS_NONE, act, 1, isa);
    cf_plan p;
    const int bdirect = CF_BDIRECT && nnl_cf_bdirect_ok(isa, kd->mr, kd->nr);
    cf_plan_call(geom, kd->mr, kd->nr, kd->mc, kd->kc, sizeof(T), nthreads, bdirect,
                 wpk != NULL, &p);
    if (wpk != NULL && wpk_kc != p.kcb_max) {   /* packed for other slices: pack per call */
        wpk = NULL;
        cf_plan_call(geom, kd->mr, kd->nr, kd->mc, kd->kc, sizeof(T), nthreads, bdirect, 0, &p);
    }
    const nnl_idx wpk_rows = nnl_cdiv(p.fg, kd->mr) * kd->mr;
    char *work = (char *)nnl_alloc64(cf_work_bytes(&p, sizeof(T)));
    if (work == NULL)
        return NNL_ENOMEM;
    nnl_idx *koff = (nnl_idx *)work;
    T *per_thread = (T *)(work + (p.koff_elems * sizeof(nnl_idx) + 63) / 64 * 64);
    const size_t thread_elems = p.a_elems + p.b_elems + p.t_elems + p.w_elems;
    if (p.mode != CF_SEGMENTS)
        FN(cf_tap_offsets)(geom, &p, koff);
    const nnl_idx units = p.units;
    FN(nnl_nest) s0;   /* per (n, g): y_g (FG x L) = W_g (FG x K) @ cols_g (K x L) */
    s0.K = p.k, s0.kcb_max = p.kcb_max, s0.chunk = p.chunk, s0.mcb = 0;   /* units <= MC rows */
    s0.alpha = alpha, s0.beta = beta, s0.act = act;
    s0.rsa = p.k, s0.csa = 1, s0.apk = NULL, s0.apk_rows = 0;
    s0.a_pack8 = nnl_pack_a_fast(kd->mr);
    s0.a_inplace = 0, s0.a_rows = 0;
    s0.a_lk = s0.a_sk = s0.c_ln = s0.c_sn = s0.c_cs = 0;   /* plain A and C */
    s0.b_ld = 0, s0.pf_b = 0, s0.pf_c = 0;
    s0.rsc = geom->ysf, s0.bias_kind = bias ? NNL_BIAS_ROW : NNL_BIAS_NONE;

    FN(cf_job) job = {geom, &p, kd, x, w, wpk, bias, y, alpha, beta, act, bdirect, koff, &s0,
                      per_thread, thread_elems, wpk_rows};
    nnl_parallel_for(p.nt, units, FN(cf_job_unit), &job);
    nnl_free64(work);
    return NNL_OK;
}

/* ------------------------------------------------------------------- the weight gradient */

/* Rows of B (pixels) cf_wg_t8 packs per step: its staging block (8 columns of that many rows,
 * 4 KB of float) stays in L1. */
#ifndef CF_WG_PIX
#define CF_WG_PIX 128
#endif
#define CF_WG_LD (CF_WG_PIX + 8)   /* a staging row: 8 spare for the last 8-wide store */
#define CF_WG_FLAT_OW 64           /* cf_wg_t8 for output rows up to this wide */

#if defined(PACK_T8) && NNL_X86_DISPATCH
/* Whether cf_wg_t8 packs this geometry: unit strides and the image's row stride = OW ('same'
 * padding of contiguous rows), so each output row's source row follows the last one's
 * straight on and a tap's column over the in-image rows of an image is ONE contiguous run of
 * the image whose padding columns repeat with period OW. */
static int FN(cf_wg_flat)(const nnl_conv_geom *g)
{
    return g->sw == 1 && g->sh == 1 && g->xsr == g->ow && g->ow <= CF_WG_FLAT_OW;
}

/* cf_wg_col of a cf_wg_flat geometry into a contiguous staging row d (8 spare at its end):
 * eight values at a time, the lanes of padding columns 0. A lane mask comes from mtab
 * (mtab[t] = -1 where column t % OW is in the image, length OW + 8); the eight are one plain
 * load ANDed with it when all eight lie inside the tap's channel plane (padding lanes then
 * read neighbouring pixels of the same plane), else a masked load, which reads nothing
 * outside the mask (slow on some CPUs: only at a plane's first and last pixels). Each store
 * is eight wide, up to 7 past the run (the next run overwrites them). The rows above and
 * below the image are zero runs. cb: the channel's offset (xoff = cb + off). */
static inline __attribute__((target("avx"), always_inline)) void
FN(cf_wg_col_flat)(const nnl_conv_geom *g, const T *xi, nnl_idx cb, nnl_idx xoff, nnl_idx roff,
                   const int *mtab, nnl_idx i, nnl_idx jj, nnl_idx len, T *NNL_RESTRICT d)
{
    const nnl_idx ow = g->ow, oh = g->oh, step = 8 % ow;
    const nnl_idx plane = (g->h - 1) * g->xsr + g->w;   /* elements of a channel plane */
    const nnl_idx ia = nnl_clamp(-roff, 0, oh), ib = nnl_clamp(g->h - roff, ia, oh);
    const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    for (nnl_idx pos = 0; pos < len;) {
        nnl_idx run, rows;   /* rows: the output rows the run ends, unless it ends at len */
        if (i < ia || i >= ib) {   /* a padding row */
            run = nnl_min(ow - jj, len - pos), rows = 1;
            for (nnl_idx u = 0; u < run; u++)
                d[pos + u] = 0;
        } else {
            run = nnl_min((ib - i) * ow - jj, len - pos), rows = ib - i;
            const nnl_idx at = xoff - cb + (i + roff) * g->xsr + jj;   /* in the plane */
            const T *s = xi + cb + at;
            T *dd = d + pos;
            nnl_idx col = jj;
            for (nnl_idx u = 0; u < run; u += 8) {
                __m256 in = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(mtab + col)));
                if (u + 8 > run)   /* the last lanes: nothing read at or past run */
                    in = _mm256_and_ps(in, _mm256_cmp_ps(lane, _mm256_set1_ps((float)(run - u)),
                                                         _CMP_LT_OQ));
                __m256 v;
                if (at + u >= 0 && at + u + 8 <= plane)
                    v = _mm256_and_ps(_mm256_loadu_ps(s + u), in);
                else
                    v = _mm256_maskload_ps(s + u, _mm256_castps_si256(in));
                _mm256_storeu_ps(dd + u, v);
                col += step;
                if (col >= ow)
                    col -= ow;
            }
        }
        pos += run, jj = 0, i += rows;   /* (when pos < len, the run ended its rows) */
        if (i == oh)
            i = 0, xi += g->xsn;
    }
}

/* Rows k0..k0+kcb of a panel of n columns (taps) of a cf_wg_flat geometry, 8 columns at a
 * time: CF_WG_PIX rows of the group's columns into the staging block (a row per column, the
 * group's unused columns zero), then 8 x 8 transposes into the panel dst (row stride nr). */
static NNL_NO_MEMCPY_IDIOM __attribute__((target("avx"))) void FN(cf_wg_t8)(
    const nnl_conv_geom *g, const T *xg, nnl_idx k0, nnl_idx kcb, const nnl_idx *cb,
    const nnl_idx *xoff, const nnl_idx *roff, const nnl_idx *lo, const nnl_idx *hi, int n, T *dst,
    int nr)
{
    T stage[8 * CF_WG_LD];
    int mtab[8][CF_WG_FLAT_OW + 8];
    const nnl_idx ow = g->ow, l = g->oh * ow;
    for (int e0 = 0; e0 < n; e0 += 8) {
        const int m = nnl_min(8, n - e0);
        for (int e = 0; e < m; e++) {
            for (nnl_idx t = 0; t < ow; t++)
                mtab[e][t] = t >= lo[e0 + e] && t < hi[e0 + e] ? -1 : 0;
            for (nnl_idx t = ow; t < ow + 8; t++)
                mtab[e][t] = mtab[e][t - ow];
        }
        for (nnl_idx pos = 0; pos < kcb; pos += CF_WG_PIX) {
            const nnl_idx len = nnl_min(CF_WG_PIX, kcb - pos);
            const nnl_idx k = k0 + pos, i = (k % l) / ow, jj = k % ow;
            const T *xi = xg + (k / l) * g->xsn;
            for (int e = 0; e < 8; e++) {
                T *row = stage + e * CF_WG_LD;
                if (e < m)
                    FN(cf_wg_col_flat)(g, xi, cb[e0 + e], xoff[e0 + e], roff[e0 + e], mtab[e], i,
                                       jj, len, row);
                else
                    for (nnl_idx u = 0; u < len; u++)
                        row[u] = 0;
            }
            PACK_T8(len, stage, CF_WG_LD, dst + pos * nr + e0, nr);
        }
    }
}
#define CF_WG_T8 1
#else
#define CF_WG_T8 0
#endif

/* The transposed image operand of the weight gradient: rows k0..k0+kcb of B = cols_g^T (row
 * k = image n, output pixel (i, j) at k = n*L + i*OW + j; column t = tap (c, a, b) at
 * t = (c*KH + a)*KW + b) x columns j0..j0+ncb -> micro-panels bp[q][k][e] (columns past ncb
 * zero). B[k, t] = xg[n*xsn + c*xsc + (i*SH - PT + a*DH)*xsr + j*SW - PL + b*DW], 0 in the
 * padding. Per panel the taps' offsets are decoded once; then, for a cf_wg_flat geometry
 * with PACK_T8 (float, AVX, NR a multiple of 8), cf_wg_t8 (vector copies into a staging
 * block, then 8 x 8 transposes); otherwise each output-row segment of the panel is filled
 * tap by tap, element by element, NR apart. Both write the same values (exact copies and
 * zeros), so the GEMM sees the same panel either way. */
static NNL_NO_MEMCPY_IDIOM void FN(cf_pack_wgrad)(const nnl_conv_geom *g, const T *xg,
                                                     nnl_idx k0, nnl_idx kcb, nnl_idx j0,
                                                     nnl_idx ncb, int nr, T *NNL_RESTRICT bp)
{
    const nnl_idx taps = g->kh * g->kw, ow = g->ow, l = g->oh * g->ow, sw = g->sw;
    nnl_idx cb[64], xoff[64], roff[64], lo[64], hi[64];
#if CF_WG_T8
    const int t8 = nr % 8 == 0 && FN(cf_wg_flat)(g) && nnl_pack_a8_ok();
#endif
    for (nnl_idx q = 0; q * nr < ncb; q++) {
        T *dst = bp + q * kcb * nr;
        const int n = (int)nnl_min(nr, ncb - q * nr);
        for (int e = 0; e < n; e++) {
            const nnl_idx t = j0 + q * nr + e;
            const nnl_idx c = t / taps, a = (t % taps) / g->kw, b = t % g->kw;
            const nnl_idx off = b * g->dw - g->pl;   /* source column of output column j */
            nnl_col_range(off, g->w, g->sw, ow, lo + e, hi + e);
            cb[e] = c * g->xsc;                       /* the channel's plane */
            xoff[e] = cb[e] + off;
            roff[e] = a * g->dh - g->pt;             /* source row of output row i */
        }
#if CF_WG_T8
        if (t8) {
            FN(cf_wg_t8)(g, xg, k0, kcb, cb, xoff, roff, lo, hi, n, dst, nr);
            if ((n + 7) / 8 * 8 < nr)   /* whole groups of 8 written, zeros included */
                for (nnl_idx u = 0; u < kcb; u++)
                    for (int e = (n + 7) / 8 * 8; e < nr; e++)
                        dst[u * nr + e] = 0;
            continue;
        }
#endif
        /* each output-row segment (at most OW rows of the panel, an L1-sized slab) tap by tap */
        nnl_idx img = k0 / l, i = (k0 % l) / ow, jj = k0 % ow;
        for (nnl_idx pos = 0; pos < kcb;) {
            const nnl_idx seg = nnl_min(ow - jj, kcb - pos);   /* output row i, columns jj.. */
            T *dk = dst + pos * nr;
            const T *xi = xg + img * g->xsn;
            for (int e = 0; e < n; e++) {
                T *NNL_RESTRICT d = dk + e;
                const nnl_idx r = i * g->sh + roff[e];
                nnl_idx z0 = seg, z1 = seg;                   /* [z0, z1): in the image */
                if ((size_t)r < (size_t)g->h) {
                    z0 = nnl_clamp(lo[e] - jj, 0, seg);
                    z1 = nnl_max(z0, nnl_clamp(hi[e] - jj, 0, seg));
                }
                const T *s = z1 > z0 ? xi + xoff[e] + r * g->xsr + jj * sw : xi;
                for (nnl_idx u = 0; u < z0; u++)
                    d[u * nr] = 0;
                for (nnl_idx u = z0; u < z1; u++)
                    d[u * nr] = s[u * sw];
                for (nnl_idx u = z1; u < seg; u++)
                    d[u * nr] = 0;
            }
            for (nnl_idx u = 0; u < seg; u++)
                for (int e = n; e < nr; e++)
                    dk[u * nr + e] = 0;
            pos += seg, jj += seg;
            if (jj == ow) {
                jj = 0;
                if (++i == g->oh)
                    i = 0, img++;
            }
        }
    }
}
#undef CF_WG_T8

typedef struct {
    const nnl_conv_geom *g;
    const T *xg;                 /* the group's first channel of image 0 */
} FN(cf_wg_item);

static const T *FN(cf_wg_b_src)(const void *ctx, int nr, nnl_idx pc, nnl_idx kcb, nnl_idx jc,
                                nnl_idx ncb, T *bp)
{
    const FN(cf_wg_item) *it = (const FN(cf_wg_item) *)ctx;
    FN(cf_pack_wgrad)(it->g, it->xg, pc, kcb, jc, ncb, nr, bp);
    return bp;
}

int FN(nnl_conv_wgrad_implicit)(const nnl_conv_geom *geom, const T *x, const T *gy,
                                nnl_idx rsg, T *gw, int nthreads, int isa)
{
    if (!cf_geom_ok(geom))
        return NNL_EINVAL;
    const KERNEL_T *kd = FN(nnl_select)(isa);
    if (kd == NULL || kd->nr > 64)
        return NNL_EINVAL;
    const nnl_idx G = geom->g, FG = geom->f / G, CG = geom->c / G;
    const nnl_idx K = CG * geom->kh * geom->kw, NL = geom->n * geom->oh * geom->ow;
    if (FG == 0 || K == 0)
        return NNL_OK;
    if (rsg < NL)
        return NNL_EINVAL;
    if (NL == 0) {
        for (nnl_idx i = 0; i < geom->f * K; i++)
            gw[i] = 0;
        return NNL_OK;
    }
    const int mr = kd->mr, nr = kd->nr;
    /* K slices and the tile grid from the shape alone: the same sums for any thread count */
    const nnl_idx kcb_max = nnl_k_slice(NL, kd->kc);
    int nt = nnl_team_size(nthreads, (double)geom->f * K * NL, NNL_CF_MIN_PARALLEL_MACS);
    nnl_idx ru = nnl_cdiv(FG, kd->mc);
    nnl_idx mu = nnl_cdiv(nnl_cdiv(FG, ru), mr) * mr;
    ru = nnl_cdiv(FG, mu);
    const nnl_idx Q = nnl_cdiv(K, nr);
    const nnl_idx cu0 = nnl_clamp(nnl_cdiv((nnl_idx)nt * NNL_CF_UNITS_PER_THREAD, G * ru), 1, Q);
    const nnl_idx nu = nnl_cdiv(Q, cu0) * nr, cu = nnl_cdiv(K, nu);
    if (G * ru * cu < (nnl_idx)nt) {
        /* too few units for the team (few columns, e.g. a 3-channel stem: K = 27): split the
         * rows finer, down to MR; each row unit packs its own B, so no finer than needed */
        const nnl_idx want = nnl_min(nnl_cdiv(FG, mr), nnl_cdiv((nnl_idx)nt, G * cu));
        mu = nnl_cdiv(nnl_cdiv(FG, want), mr) * mr;
        ru = nnl_cdiv(FG, mu);
    }
    const nnl_idx chunk = nnl_max(1, nnl_min(kd->nc / nr, nu / nr));
    const nnl_idx units = G * ru * cu;
    if ((nnl_idx)nt > units)
        nt = (int)units;
    const size_t ap_elems = nnl_round64((size_t)mu * (size_t)kcb_max, sizeof(T));
    const size_t bp_elems = nnl_round64((size_t)kcb_max * (size_t)(chunk * nr), sizeof(T));
    T *ws = (T *)nnl_alloc64(sizeof(T) * (ap_elems + bp_elems) * (size_t)nt);
    if (ws == NULL)
        return NNL_ENOMEM;
    FN(nnl_nest) s0;   /* per group: gw_g (FG x K) = gy_g (FG x N*L) @ cols_g^T (N*L x K) */
    s0.K = NL, s0.kcb_max = kcb_max, s0.chunk = chunk, s0.mcb = 0;   /* units <= MC rows */
    s0.alpha = 1, s0.beta = 0, s0.act = NNL_ACT_NONE;
    s0.rsa = rsg, s0.csa = 1, s0.apk = NULL, s0.apk_rows = 0;
    s0.a_pack8 = nnl_pack_a_fast(mr);
    s0.a_inplace = 0, s0.a_rows = 0;
    s0.a_lk = s0.a_sk = s0.c_ln = s0.c_sn = s0.c_cs = 0;   /* plain A and C */
    s0.b_ld = 0, s0.pf_b = 0, s0.pf_c = 0;   /* the image packer packs every panel */
    s0.rsc = K, s0.bias = NULL, s0.bias_kind = NNL_BIAS_NONE, s0.t_ctx = NULL;

#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        const int tid = nnl_thread_id();
        T *ap = ws + (size_t)tid * (ap_elems + bp_elems);
        T *bp = ap + ap_elems;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (nnl_idx u = 0; u < units; u++) {
            const nnl_idx c = u % cu, r = (u / cu) % ru, gi = u / (cu * ru);
            FN(cf_wg_item) it = {geom, x + gi * CG * geom->xsc};
            FN(nnl_nest) sb = s0;
            sb.a = gy + gi * FG * rsg, sb.c = gw + gi * FG * K, sb.b_ctx = &it;
            const nnl_idx r0 = r * mu, r1 = nnl_min(FG, (r + 1) * mu);
            const nnl_idx c0 = c * nu, c1 = nnl_min(K, (c + 1) * nu);
            FN(gemm_nest)(&sb, FN(cf_wg_b_src), NULL, kd, r0, r1, c0, c1, ap, bp);
        }
    }
    nnl_free64(ws);
    return NNL_OK;
}
