/* Template body of convfast_implicit.c, included once per dtype with T, EPI_T, KERNEL_T and
 * FN(name) defined. No include guard on purpose. */

static const KERNEL_T *FN(cf_select)(int isa)
{
    if (isa == NNL_ISA_AUTO)
        isa = nnl_cf_best_isa();
    if (!nnl_cf_isa_available(isa))
        return NULL;
    switch (isa) {
    case NNL_ISA_GENERIC:
        return FN(nnl_generic_kernel)();
#if NNL_X86_DISPATCH
    case NNL_ISA_AVX2:
        return FN(nnl_avx2_kernel)();
    case NNL_ISA_AVX512:
        return FN(nnl_avx512_kernel)();
#endif
    default:
        return NULL;
    }
}

/* Rows [0, m) x columns [0, kcb) of w (row stride K) -> MR-tall micro-panels ap[p][k][i]
 * (k-major; rows >= m zero), as the GEMM's pack_a. */
static void FN(cf_pack_a)(nnl_idx m, nnl_idx kcb, const T *w, nnl_idx K, int mr,
                          T *NNL_RESTRICT ap)
{
    for (nnl_idx ip = 0; ip < m; ip += mr) {
        const int mm = (int)cf_min(mr, m - ip);
        const T *src = w + ip * K;
        for (nnl_idx k = 0; k < kcb; k++) {
            for (int i = 0; i < mm; i++)
                ap[k * mr + i] = src[i * K + k];
            for (int i = mm; i < mr; i++)
                ap[k * mr + i] = 0;
        }
        ap += kcb * mr;
    }
}

/* len zeros at columns pos.. of packed row dk (panel = kcb*nr elements between panels) */
static NNL_CF_NO_MEMCPY_IDIOM void FN(cf_put_zero)(T *dk, nnl_idx panel, int nr, nnl_idx pos,
                                                   nnl_idx len)
{
    while (len > 0) {
        const nnl_idx q = pos / nr;
        const int o = (int)(pos - q * nr);
        const int m = (int)cf_min(len, nr - o);
        T *d = dk + q * panel + o;
        for (int e = 0; e < m; e++)
            d[e] = 0;
        pos += m, len -= m;
    }
}

/* src[0], src[sw], ... (len of them) -> columns pos.. of packed row dk */
static NNL_CF_NO_MEMCPY_IDIOM void FN(cf_put_copy)(T *dk, nnl_idx panel, int nr, nnl_idx pos,
                                                   const T *src, nnl_idx sw, nnl_idx len)
{
    while (len > 0) {
        const nnl_idx q = pos / nr;
        const int o = (int)(pos - q * nr);
        const int m = (int)cf_min(len, nr - o);
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
    const nnl_idx nq = cf_cdiv(ncb, nr);
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
        cf_col_range(off, g->w, sw, ow, &lo, &hi);
        T *dk = bp + kk * nr;
        nnl_idx pos = 0, i = i0, jj = jj0;
        while (pos < ncb) {
            const nnl_idx seg = cf_min(ow - jj, ncb - pos);   /* output row i, columns jj.. */
            const nnl_idx r = i * g->sh + roff;
            if ((size_t)r >= (size_t)g->h) {
                FN(cf_put_zero)(dk, panel, nr, pos, seg);     /* a fully padded source row */
            } else {
                /* columns jj + [0, z0) and [z1, seg) are padding; [z0, z1) are in the image */
                const nnl_idx z0 = cf_clamp(lo - jj, 0, seg);
                const nnl_idx z1 = cf_max(z0, cf_clamp(hi - jj, 0, seg));
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

/* K == 0: y = act(beta * y + bias) */
static void FN(cf_scale_only)(const nnl_conv_geom *g, const T *bias, T beta, T *y, int act)
{
    const nnl_idx L = g->oh * g->ow;
    for (nnl_idx n = 0; n < g->n; n++)
        for (nnl_idx f = 0; f < g->f; f++) {
            T *yr = y + n * g->ysn + f * g->ysf;
            for (nnl_idx l = 0; l < L; l++) {
                T v = beta == 0 ? (T)0 : beta * yr[l];
                if (bias)
                    v += bias[f];
                if (act != NNL_ACT_NONE) {
                    v = ((T)0 > v) ? (T)0 : v;
                    if (act == NNL_ACT_RELU6)
                        v = (v > (T)6) ? (T)6 : v;
                }
                yr[l] = v;
            }
        }
}

/* One unit: image n, group gi, output channels [r0, r1) of the group (r0 a multiple of MR),
 * output columns [c0, c1) (c0 a multiple of NR). */
static void FN(cf_run_unit)(const nnl_conv_geom *g, const cf_plan *p, const KERNEL_T *kd,
                            const T *x, const T *w, const T *bias, T alpha, T beta, T *y,
                            int act, nnl_idx n, nnl_idx gi, nnl_idx r0, nnl_idx r1, nnl_idx c0,
                            nnl_idx c1, T *ap, T *bp)
{
    const int mr = p->mr, nr = p->nr;
    const nnl_idx K = p->k, FG = p->fg, cg = g->c / g->g;
    const T *xg = x + n * g->xsn + gi * cg * g->xsc;
    const T *wg = w + (gi * FG + r0) * K;
    T *yg = y + n * g->ysn + (gi * FG + r0) * g->ysf;
    const T *bg = bias ? bias + gi * FG + r0 : NULL;
    const nnl_idx rows = r1 - r0;
    EPI_T e;
    e.alpha = alpha;
    e.bias_col = NULL;
    for (nnl_idx pc = 0; pc < K; pc += p->kcb_max) {
        const nnl_idx kcb = cf_min(p->kcb_max, K - pc);
        const int first = pc == 0, last = pc + kcb == K;
        e.load_c = !first || beta != 0;
        e.beta = first ? beta : (T)1;
        e.act = last ? act : NNL_ACT_NONE;
        FN(cf_pack_a)(rows, kcb, wg + pc, K, mr, ap);
        for (nnl_idx jc = c0; jc < c1; jc += p->chunk * nr) {
            const nnl_idx ncb = cf_min(p->chunk * nr, c1 - jc);
            const nnl_idx nq = cf_cdiv(ncb, nr);
            FN(cf_pack_cols)(g, xg, pc, kcb, jc, ncb, nr, bp);
            for (nnl_idx q = 0; q < nq; q++) {
                const nnl_idx jr = jc + q * nr;
                const int nn = (int)cf_min(nr, c1 - jr);
                for (nnl_idx ir = 0; ir < rows; ir += mr) {
                    const int m = (int)cf_min(mr, rows - ir);
                    e.bias_row = (last && bg) ? bg + ir : NULL;
                    kd->ukr(kcb, ap + ir * kcb, bp + q * kcb * nr, yg + ir * g->ysf + jr,
                            g->ysf, m, nn, &e);
                }
            }
        }
    }
}

int FN(nnl_conv_implicit)(const nnl_conv_geom *geom, const T *x, const T *w, const T *bias,
                          T alpha, T beta, T *y, int act, int nthreads, int isa)
{
    if (!cf_geom_ok(geom) || act < NNL_ACT_NONE || act > NNL_ACT_RELU6)
        return NNL_EINVAL;
    const KERNEL_T *kd = FN(cf_select)(isa);
    if (kd == NULL)
        return NNL_EINVAL;
    if (geom->n == 0 || geom->f == 0 || geom->oh == 0 || geom->ow == 0)
        return NNL_OK;
    if (geom->c == 0) {
        FN(cf_scale_only)(geom, bias, beta, y, act);
        return NNL_OK;
    }
    cf_plan p;
    cf_make_plan(geom, kd->mr, kd->nr, kd->mc, kd->kc, sizeof(T), nthreads, &p);
    /* per thread: an A block (mu x kcb_max) then a B chunk (kcb_max x chunk*NR) */
    T *ws = (T *)cf_alloc64(sizeof(T) * (p.a_elems + p.b_elems) * (size_t)p.nt);
    if (ws == NULL)
        return NNL_ENOMEM;
    const nnl_idx cu = p.cu, ru = p.ru, units = p.units;

#ifdef _OPENMP
#pragma omp parallel num_threads(p.nt) if (p.nt > 1)
#endif
    {
#ifdef _OPENMP
        const int tid = omp_get_thread_num();
#else
        const int tid = 0;
#endif
        T *ap = ws + (size_t)tid * (p.a_elems + p.b_elems);
        T *bp = ap + p.a_elems;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (nnl_idx u = 0; u < units; u++) {
            const nnl_idx c = u % cu, r = (u / cu) % ru, item = u / (cu * ru);
            FN(cf_run_unit)(geom, &p, kd, x, w, bias, alpha, beta, y, act, item / geom->g,
                            item % geom->g, r * p.mu, cf_min(p.fg, (r + 1) * p.mu), c * p.nu,
                            cf_min(p.l, (c + 1) * p.nu), ap, bp);
        }
    }
    cf_free64(ws);
    return NNL_OK;
}
