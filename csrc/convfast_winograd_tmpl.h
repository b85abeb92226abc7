/* Template body of convfast_winograd.c, included once per dtype with T, L (lanes), FN(name),
 * GEMM_PK, GEMM_PACK, CONV_NAME and PACK_NAME defined. No include guard on purpose. */

/* Packed A operand of every U[xi][g] (FG x CG), one after the other: (xi*G + g)*per. */
int PACK_NAME(int m, nnl_idx f, nnl_idx g, nnl_idx cg, const T *u, int isa, T *out)
{
    const nnl_idx total = nnl_wino_packed_elems(m, f, g, cg, (int)sizeof(T), isa);
    if (total < 0)
        return NNL_EINVAL;
    if (total == 0)
        return NNL_OK;
    const nnl_idx a2 = (nnl_idx)(m + 2) * (m + 2), fg = f / g, per = total / (a2 * g);
    for (nnl_idx xi = 0; xi < a2; xi++)
        for (nnl_idx gi = 0; gi < g; gi++) {
            const int rc = GEMM_PACK(0, fg, cg, u + (xi * f + gi * fg) * cg, cg, 1, isa,
                                     out + (xi * g + gi) * per);
            if (rc != NNL_OK)
                return rc;
        }
    return NNL_OK;
}

/* (n, ti, tj) of tile t */
static NNL_ALWAYS_INLINE void FN(wino_tile)(const wino_plan *p, nnl_idx t, nnl_idx *n,
                                            nnl_idx *ti, nnl_idx *tj)
{
    const nnl_idx per_image = p->th * p->tw, r = t % per_image;
    *n = t / per_image, *ti = r / p->tw, *tj = r % p->tw;
}

static NNL_ALWAYS_INLINE void FN(wino_next)(const wino_plan *p, nnl_idx *n, nnl_idx *ti,
                                            nnl_idx *tj)
{
    if (++*tj == p->tw) {
        *tj = 0;
        if (++*ti == p->th)
            *ti = 0, ++*n;
    }
}

/* (n, ti, tj) moved on by k tiles along its tile row, k <= tw - tj (a run's tiles: one step
 * instead of k calls of wino_next, 2-4% of a 64-channel conv at 56x56 on Zen 4) */
static NNL_ALWAYS_INLINE void FN(wino_advance)(const wino_plan *p, nnl_idx k, nnl_idx *n,
                                               nnl_idx *ti, nnl_idx *tj)
{
    *tj += k;
    if (*tj == p->tw) {
        *tj = 0;
        if (++*ti == p->th)
            *ti = 0, ++*n;
    }
}

/* Phase 1 for nl <= L tiles from t of channel c: V[xi][c][t - t0 + l] = (B^T d B)[xi]. */
static NNL_ALWAYS_INLINE void FN(wino_in)(const wino_plan *p, const nnl_conv_geom *g,
                                          const int m, const T *xc, nnl_idx t, int nl, T *vdst,
                                          nnl_idx vstride)
{
    enum { A = 6 };
    const int a = m + 2;
    T d[A * A * L], t1[A * A * L];
    const nnl_idx h = g->h, w = g->w, xsr = g->xsr, xsn = g->xsn, pt = g->pt, pl = g->pl;
    nnl_idx n, ti, tj;
    FN(wino_tile)(p, t, &n, &ti, &tj);
#ifdef WINO_GATHER16
    /* each lane's first patch row at its first column inside the image (the address computed
     * as an integer: the row may lie above the image, never read), the masks of its rows and
     * columns inside the image and its columns left of it; lanes past nl read nothing */
    const T *srcs[L];
    unsigned char cms[L], rbs[L], shs[L];
    const unsigned amask = (1u << a) - 1u;
    for (int l = 0; l < L; l++) {
        if (l >= nl) {
            srcs[l] = xc, cms[l] = rbs[l] = shs[l] = 0;
            continue;
        }
        const nnl_idx r0 = ti * m - pt, c0 = tj * m - pl;
        if (r0 >= 0 && r0 + a <= h && c0 >= 0 && c0 + a <= w) {
            srcs[l] = xc + n * xsn + r0 * xsr + c0;
            cms[l] = rbs[l] = (unsigned char)amask, shs[l] = 0;
        } else {
            const nnl_idx jlo = nnl_max(0, -c0), jhi = nnl_min(a, w - c0);
            const nnl_idx ilo = nnl_max(0, -r0), ihi = nnl_min(a, h - r0);
            srcs[l] = (const T *)(uintptr_t)((uintptr_t)(xc + n * xsn) +
                                             (uintptr_t)(r0 * xsr + c0 + jlo) * sizeof(T));
            cms[l] = jhi > jlo ? (unsigned char)((1u << (jhi - jlo)) - 1u) : 0;
            rbs[l] = ihi > ilo && jhi > jlo
                         ? (unsigned char)(amask >> (a - ihi) & ~((1u << ilo) - 1u)) : 0;
            shs[l] = (unsigned char)jlo;
        }
        FN(wino_next)(p, &n, &ti, &tj);
    }
    WINO_GATHER16(srcs, xsr, cms, rbs, shs, a, d);
#else
    for (int l = 0; l < nl; l++) {
        const nnl_idx r0 = ti * m - pt, c0 = tj * m - pl;
        const T *src = xc + n * xsn;
        if (r0 >= 0 && r0 + a <= h && c0 >= 0 && c0 + a <= w) {
            const T *s = src + r0 * xsr + c0;
            for (int i = 0; i < a; i++)
                for (int j = 0; j < a; j++)
                    d[(i * a + j) * L + l] = s[i * xsr + j];
        } else {
            for (int i = 0; i < a; i++) {
                const nnl_idx r = r0 + i;
                const int rok = r >= 0 && r < h;
                for (int j = 0; j < a; j++) {
                    const nnl_idx c = c0 + j;
                    d[(i * a + j) * L + l] = (rok && c >= 0 && c < w) ? src[r * xsr + c] : (T)0;
                }
            }
        }
        FN(wino_next)(p, &n, &ti, &tj);
    }
    for (int l = nl; l < L; l++)
        for (int k = 0; k < a * a; k++)
            d[k * L + l] = 0;
#endif
    if (m == 4) {
        for (int i = 0; i < 6; i++) {
            const T *r = d + i * 6 * L;
            T *o = t1 + i * 6 * L;
            for (int l = 0; l < L; l++)
                WINO_BT4(r[0 * L + l], r[1 * L + l], r[2 * L + l], r[3 * L + l], r[4 * L + l],
                         r[5 * L + l], o, L, l);
        }
        for (int j = 0; j < 6; j++) {
            const T *c = t1 + j * L;
            T *o = d + j * L;          /* d is free again: V tile in place */
            for (int l = 0; l < L; l++)
                WINO_BT4(c[0 * 6 * L + l], c[1 * 6 * L + l], c[2 * 6 * L + l],
                         c[3 * 6 * L + l], c[4 * 6 * L + l], c[5 * 6 * L + l], o, 6 * L, l);
        }
    } else {
        for (int i = 0; i < 4; i++) {
            const T *r = d + i * 4 * L;
            T *o = t1 + i * 4 * L;
            for (int l = 0; l < L; l++)
                WINO_BT2(r[0 * L + l], r[1 * L + l], r[2 * L + l], r[3 * L + l], o, L, l);
        }
        for (int j = 0; j < 4; j++) {
            const T *c = t1 + j * L;
            T *o = d + j * L;
            for (int l = 0; l < L; l++)
                WINO_BT2(c[0 * 4 * L + l], c[1 * 4 * L + l], c[2 * 4 * L + l],
                         c[3 * 4 * L + l], o, 4 * L, l);
        }
    }
    for (int k = 0; k < a * a; k++) {
        T *dst = vdst + k * vstride;
        const T *s = d + k * L;
        if (nl == L)
            for (int l = 0; l < L; l++)
                dst[l] = s[l];
        else
            for (int l = 0; l < nl; l++)
                dst[l] = s[l];
    }
}

/* Phase 3 for nl <= L tiles from t of output channel f: y tile = act(A^T M A + beta*y + b). */
static NNL_ALWAYS_INLINE void FN(wino_out)(const wino_plan *p, const nnl_conv_geom *g,
                                           const int m, const T *msrc, nnl_idx mstride,
                                           nnl_idx t, int nl, T *yf, T bias, T beta, int act)
{
    enum { A = 6 };
    const int a = m + 2;
    T s[A * A * L], t1[A * 4 * L];
    for (int k = 0; k < a * a; k++) {
        const T *src = msrc + k * mstride;
        T *dst = s + k * L;
        /* the next lane group's line of this element: a unit reads a*a (36 or 16) streams,
         * more than the hardware prefetcher follows at once (Intel Xeon, a 2 MB L2 and a mesh
         * L3: the first load of each line took a fifth of this function's samples) */
        __builtin_prefetch(src + L, 0, 3);
        if (nl == L)
            for (int l = 0; l < L; l++)
                dst[l] = src[l];
        else {
            for (int l = 0; l < nl; l++)
                dst[l] = src[l];
            for (int l = nl; l < L; l++)
                dst[l] = 0;
        }
    }
    if (m == 4) {
        for (int i = 0; i < 6; i++) {
            const T *r = s + i * 6 * L;
            T *o = t1 + i * 4 * L;
            for (int l = 0; l < L; l++)
                WINO_AT4(r[0 * L + l], r[1 * L + l], r[2 * L + l], r[3 * L + l], r[4 * L + l],
                         r[5 * L + l], o, L, l);
        }
        for (int j = 0; j < 4; j++) {
            const T *c = t1 + j * L;
            T *o = s + j * L;          /* Y[i][j] at s[(i*4 + j)*L] */
            for (int l = 0; l < L; l++)
                WINO_AT4(c[0 * 4 * L + l], c[1 * 4 * L + l], c[2 * 4 * L + l],
                         c[3 * 4 * L + l], c[4 * 4 * L + l], c[5 * 4 * L + l], o, 4 * L, l);
        }
    } else {
        for (int i = 0; i < 4; i++) {
            const T *r = s + i * 4 * L;
            T *o = t1 + i * 2 * L;
            for (int l = 0; l < L; l++)
                WINO_AT2(r[0 * L + l], r[1 * L + l], r[2 * L + l], r[3 * L + l], o, L, l);
        }
        for (int j = 0; j < 2; j++) {
            const T *c = t1 + j * L;
            T *o = s + j * L;          /* Y[i][j] at s[(i*2 + j)*L] */
            for (int l = 0; l < L; l++)
                WINO_AT2(c[0 * 2 * L + l], c[1 * 2 * L + l], c[2 * 2 * L + l],
                         c[3 * 2 * L + l], o, 2 * L, l);
        }
    }
    /* without beta, bias and activation on whole vectors before the scatter below (the
     * same operations per element, so the same bits) */
    if (beta == 0)
        for (int e = 0; e < m * m * L; e++)
            s[e] = NNL_ACT(s[e] + bias, act);
    /* the geometry in locals: y's stores may alias anything under -fno-strict-aliasing, so
     * fields read through g would be reloaded after every store */
    const nnl_idx oh = g->oh, ow = g->ow, ysn = g->ysn;
    nnl_idx n, ti, tj;
    FN(wino_tile)(p, t, &n, &ti, &tj);
#ifdef WINO_SCATTER16
    if (beta == 0) {
        /* runs of lanes along one tile row each, the last tile of a row cut at ow */
        wino_run runs[L];
        int nr = 0;
        for (int l = 0; l < nl; nr++) {
            const int run = (int)nnl_min(nl - l, p->tw - tj);
            const nnl_idx oi0 = ti * m, oj_last = (tj + run - 1) * m;
            /* base + l*m is the tile's first output: base itself may lie before the image */
            runs[nr].base = (T *)(uintptr_t)((uintptr_t)(yf + n * ysn + oi0 * ow + tj * m) -
                                             (uintptr_t)l * m * sizeof(T));
            runs[nr].mi = (int)nnl_min(m, oh - oi0);
            runs[nr].lo = l * m;
            runs[nr].hi = (l + run - 1) * m + (int)nnl_min(m, ow - oj_last);
            l += run;
            FN(wino_advance)(p, run, &n, &ti, &tj);
        }
        WINO_SCATTER16(s, m, runs, nr, ow);
        return;
    }
#endif
    const nnl_idx tw_whole = ow / m;   /* tiles of a tile row inside the image */
    for (int l = 0; l < nl; l++) {
        const nnl_idx oi0 = ti * m, oj0 = tj * m;
        T *yt = yf + n * ysn + oi0 * ow + oj0;
        if (beta == 0 && oi0 + m <= oh && tj < tw_whole) {
            /* a run of whole tiles along one tile row: each of its m output rows is run * m
             * contiguous values, the tiles' rows side by side */
            const int run = (int)nnl_min(nl - l, tw_whole - tj);
            for (int i = 0; i < m; i++) {
                T *row = yt + i * ow;
                const T *src = s + i * m * L + l;
                for (int r = 0; r < run; r++)
                    for (int j = 0; j < m; j++)
                        row[r * m + j] = src[j * L + r];
            }
            FN(wino_advance)(p, run, &n, &ti, &tj);
            l += run - 1;
            continue;
        }
        const int mi = (int)nnl_min(m, oh - oi0), mj = (int)nnl_min(m, ow - oj0);
        for (int i = 0; i < mi; i++) {
            T *row = yt + i * ow;
            const T *src = s + i * m * L + l;
            if (beta != 0)
                for (int j = 0; j < mj; j++)
                    row[j] = NNL_ACT(src[j * L] + beta * row[j] + bias, act);
            else
                for (int j = 0; j < mj; j++)
                    row[j] = src[j * L];
        }
        FN(wino_next)(p, &n, &ti, &tj);
    }
}

/* Weight transforms: r[i*alpha + j][q] = (G w_q G^T)[i][j] in double for nq <= WINO_QB
 * consecutive 3x3 filters w_q = w[9q .. 9q + 9) (row-major); gm is G (alpha x 3). The one
 * arithmetic both weight routines below run, so they give the same bits. */
static NNL_ALWAYS_INLINE void FN(wino_wblock)(const double (*gm)[3], int a, const T *w, int nq,
                                              double (*r)[WINO_QB])
{
    double wt[9][WINO_QB], t[6][3][WINO_QB];
    for (int q = 0; q < nq; q++)           /* taps tap-major: the loops below run along q */
        for (int k = 0; k < 9; k++)
            wt[k][q] = w[q * 9 + k];
    for (int i = 0; i < a; i++)
        for (int l = 0; l < 3; l++)
            for (int q = 0; q < nq; q++)
                t[i][l][q] = gm[i][0] * wt[l][q] + gm[i][1] * wt[3 + l][q] +
                             gm[i][2] * wt[6 + l][q];
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++)
            for (int q = 0; q < nq; q++)
                r[i * a + j][q] = t[i][0][q] * gm[j][0] + t[i][1][q] * gm[j][1] +
                                  t[i][2][q] * gm[j][2];
}

/* wino_wblock for tile m (2 or 4), with alpha and G constants in each inlined copy (the
 * compiler unrolls the fixed-size loops; the same arithmetic, so the same bits). */
static NNL_ALWAYS_INLINE void FN(wino_wblock_m)(int m, const T *w, int nq, double (*r)[WINO_QB])
{
    if (m == 4)
        FN(wino_wblock)(wino_g4, 6, w, nq, r);
    else
        FN(wino_wblock)(wino_g2, 4, w, nq, r);
}

/* u[(i*alpha + j)*nf + q] = (G w_q G^T)[i][j] of the nf 3x3 filters w_q = w[9q .. 9q + 9)
 * (row-major), computed in double. */
int WEIGHTS_NAME(int m, nnl_idx nf, const T *w, T *u, int nthreads)
{
    if ((m != 2 && m != 4) || nf < 0)
        return NNL_EINVAL;
    const int a = m + 2;
    const int nt = nnl_team_size(nthreads, (double)nf * a * a, NNL_MIN_PARALLEL_MACS / 16);
    (void)nt;   /* read only by the OpenMP pragma below */
    /* blocks of WINO_QB filters: the alpha^2 results of a block go out as alpha^2 contiguous
     * runs (one output stream at a time, not alpha^2 interleaved ones) */
    const nnl_idx nblk = nnl_cdiv(nf, WINO_QB);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
#endif
    for (nnl_idx bq = 0; bq < nblk; bq++) {
        const nnl_idx q0 = bq * WINO_QB;
        const int nq = (int)nnl_min(WINO_QB, nf - q0);
        double r[36][WINO_QB];
        FN(wino_wblock_m)(m, w + q0 * 9, nq, r);
        for (int k = 0; k < a * a; k++) {
            T *dst = u + k * nf + q0;
            for (int q = 0; q < nq; q++)
                dst[q] = (T)r[k][q];
        }
    }
    return NNL_OK;
}

/* The weights w (F, CG, 3, 3) transformed straight into PACK_NAME's layout (the same bits as
 * WEIGHTS_NAME then PACK_NAME, without the alpha^2 F CG intermediate u): for every xi and
 * group, each K slice pc of the GEMM (kcb_max from CG and KC) holds the MR-row panels of the
 * group's filters, panel p at pc*PM + p*kcb*MR, element (filter p*MR + i, channel pc + k) at
 * k*MR + i, rows past FG zero (PM = ceil(FG/MR)*MR). Work unit = (group, row panel, K slice):
 * its alpha^2 runs of kcb*MR elements are written while they sit in cache. */
int WPACK_NAME(int m, nnl_idx f, nnl_idx g, nnl_idx cg, const T *w, int isa, T *out,
               int nthreads)
{
    int mr, nr, mc, kc, nc;
    const nnl_idx total = nnl_wino_packed_elems(m, f, g, cg, (int)sizeof(T), isa);
    if (total < 0 || nnl_gemm_blocking(isa, (int)sizeof(T), &mr, &nr, &mc, &kc, &nc) != NNL_OK)
        return NNL_EINVAL;
    if (total == 0)
        return NNL_OK;
    const int a = m + 2;
    const nnl_idx fg = f / g, np = nnl_cdiv(fg, mr), pm = np * mr, per = pm * cg;
    const nnl_idx kcb_max = nnl_k_slice(cg, kc), ns = nnl_cdiv(cg, kcb_max);
    const nnl_idx units = g * np * ns;
    if (fg % mr)
        memset(out, 0, (size_t)total * sizeof(T));        /* the last panel's padding rows */
    const int nt = nnl_team_size(nthreads, (double)f * cg * a * a,
                                 NNL_MIN_PARALLEL_MACS / 16);
    (void)nt;   /* read only by the OpenMP pragma below */
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
#endif
    for (nnl_idx unit = 0; unit < units; unit++) {
        const nnl_idx gi = unit / (np * ns), p = (unit / ns) % np, pc = (unit % ns) * kcb_max;
        const nnl_idx kcb = nnl_min(kcb_max, cg - pc);
        const int rows = (int)nnl_min(mr, fg - p * mr);
        double r[36][WINO_QB];
        for (int i = 0; i < rows; i++) {
            const nnl_idx fi = gi * fg + p * mr + i;
            for (nnl_idx c0 = pc; c0 < pc + kcb; c0 += WINO_QB) {
                const int nq = (int)nnl_min(WINO_QB, pc + kcb - c0);
                FN(wino_wblock_m)(m, w + (fi * cg + c0) * 9, nq, r);
                for (int k = 0; k < a * a; k++) {
                    T *dst = out + (k * g + gi) * per + pm * pc + p * kcb * mr +
                             (c0 - pc) * mr + i;
                    for (int q = 0; q < nq; q++)
                        dst[(nnl_idx)q * mr] = (T)r[k][q];
                }
            }
        }
    }
    return NNL_OK;
}

/* Phase 1 units [u0, u1) of the chunk at t0 (tbc tiles, leading dimension ld): unit =
 * (channel c, NNL_WINO_LANE_GROUPS lane groups). */
static void FN(wino_in_units)(const wino_plan *p, const nnl_conv_geom *geom, const T *x, T *V,
                              nnl_idx ld, nnl_idx t0, nnl_idx tbc, nnl_idx u0, nnl_idx u1)
{
    const nnl_idx groups = nnl_cdiv(tbc, L), gper = nnl_cdiv(groups, NNL_WINO_LANE_GROUPS);
    for (nnl_idx uu = u0; uu < u1; uu++) {
        const nnl_idx c = uu / gper, q0 = (uu % gper) * NNL_WINO_LANE_GROUPS;
        const nnl_idx q1 = nnl_min(groups, q0 + NNL_WINO_LANE_GROUPS);
        const T *xc = x + c * geom->xsc;
        for (nnl_idx q = q0; q < q1; q++) {
            const nnl_idx j = q * L;
            const int nl = (int)nnl_min(L, tbc - j);
            if (p->m == 4)
                FN(wino_in)(p, geom, 4, xc, t0 + j, nl, V + c * ld + j, p->vxs);
            else
                FN(wino_in)(p, geom, 2, xc, t0 + j, nl, V + c * ld + j, p->vxs);
        }
    }
}

/* Phase 2 units [u0, u1): unit = (xi, group, block of ncol columns); returns NNL_OK or the
 * GEMM's error. */
static int FN(wino_gemm_units)(const wino_plan *p, const nnl_conv_geom *geom, const T *u,
                               const T *pk, const T *V, T *M, nnl_idx ld, nnl_idx tbc,
                               nnl_idx ncol, int isa, nnl_idx u0, nnl_idx u1)
{
    const nnl_idx F = geom->f, G = geom->g, ncb = nnl_cdiv(tbc, ncol);
    int err = NNL_OK;
    for (nnl_idx uu = u0; uu < u1; uu++) {
        const nnl_idx xi = uu / (G * ncb), gi = (uu / ncb) % G, cb = uu % ncb;
        const nnl_idx j0 = cb * ncol, nj = nnl_min(ncol, tbc - j0);
        const nnl_idx row = xi * F + gi * p->fg;
        const T *pkq = pk + (xi * G + gi) * p->per;
        /* A: the unpacked u[xi][g] (read by the GEMM only for products of <= 4 rows); without
         * u (plans drop it for fg > NNL_WINO_SKINNY_ROWS) the packed block, which holds at
         * least fg*cg elements, so A stays a valid address range either way */
        const T *a = u != NULL ? u + row * p->cg : pkq;
        const int rc = GEMM_PK(1, p->fg, nj, p->cg, (T)1, a, 0, p->cg, 1,
                               V + xi * p->vxs + gi * p->cg * ld + j0, 0, ld, 1, (T)0,
                               M + xi * p->mxs + gi * p->fg * ld + j0, 0, ld, NULL, 0,
                               NNL_BIAS_NONE, NNL_ACT_NONE, 1, isa, pkq, NULL);
        if (rc != NNL_OK)
            err = rc;
    }
    return err;
}

/* Phase 3 units [u0, u1): unit = (output channel f, NNL_WINO_LANE_GROUPS lane groups). */
static void FN(wino_out_units)(const wino_plan *p, const nnl_conv_geom *geom, const T *M,
                               nnl_idx ld, nnl_idx t0, nnl_idx tbc, const T *bias, T beta,
                               T *y, int act, nnl_idx u0, nnl_idx u1)
{
    const nnl_idx groups = nnl_cdiv(tbc, L), gper = nnl_cdiv(groups, NNL_WINO_LANE_GROUPS);
    for (nnl_idx uu = u0; uu < u1; uu++) {
        const nnl_idx f = uu / gper, q0 = (uu % gper) * NNL_WINO_LANE_GROUPS;
        const nnl_idx q1 = nnl_min(groups, q0 + NNL_WINO_LANE_GROUPS);
        const T b = bias != NULL ? bias[f] : (T)0;
        T *yf = y + f * geom->ysf;
        for (nnl_idx q = q0; q < q1; q++) {
            const nnl_idx j = q * L;
            const int nl = (int)nnl_min(L, tbc - j);
            if (p->m == 4)
                FN(wino_out)(p, geom, 4, M + f * ld + j, p->mxs, t0 + j, nl, yf, b, beta, act);
            else
                FN(wino_out)(p, geom, 2, M + f * ld + j, p->mxs, t0 + j, nl, yf, b, beta, act);
        }
    }
}

/* One call's loops on the pool: the U packing, the fused chunks (each thread on its own V
 * and M), or the three phases of a chunk of tiles on the shared V and M. */
typedef struct {
    const wino_plan *p;
    const nnl_conv_geom *geom;
    const T *x, *u, *pk, *bias;
    T beta;
    T *y;
    int act, isa;
    T *ws;
    size_t vm_elems;
    nnl_idx vsize, t0, tbc;
    int err;
} FN(wino_job);

static void FN(wino_pack_unit)(void *ctx, nnl_idx q, int tid, int first)
{
    FN(wino_job) *j = (FN(wino_job) *)ctx;
    const wino_plan *p = j->p;
    const nnl_idx G = j->geom->g, xi = q / G, gi = q % G;
    (void)tid, (void)first;
    nnl_status_set(&j->err, GEMM_PACK(0, p->fg, p->cg, j->u + (xi * j->geom->f + gi * p->fg) *
                                      p->cg, p->cg, 1, j->isa, (T *)j->pk + q * p->per));
}

static void FN(wino_chunk_unit)(void *ctx, nnl_idx ch, int tid, int first)
{
    FN(wino_job) *j = (FN(wino_job) *)ctx;
    const wino_plan *p = j->p;
    const nnl_conv_geom *geom = j->geom;
    const nnl_idx tb = p->tb, t0 = ch * tb, tbc = nnl_min(tb, p->tiles - t0);
    const nnl_idx gper = nnl_cdiv(nnl_cdiv(tbc, L), NNL_WINO_LANE_GROUPS);
    T *V = j->ws + j->vm_elems * (size_t)tid, *M = V + j->vsize;
    (void)first;
    FN(wino_in_units)(p, geom, j->x, V, tb, t0, tbc, 0, geom->c * gper);
    nnl_status_set(&j->err, FN(wino_gemm_units)(p, geom, j->u, j->pk, V, M, tb, tbc, tbc,
                                                j->isa, 0, p->a2 * geom->g));
    FN(wino_out_units)(p, geom, M, tb, t0, tbc, j->bias, j->beta, j->y, j->act, 0,
                       geom->f * gper);
}

static void FN(wino_in_unit)(void *ctx, nnl_idx uu, int tid, int first)
{
    const FN(wino_job) *j = (const FN(wino_job) *)ctx;
    (void)tid, (void)first;
    FN(wino_in_units)(j->p, j->geom, j->x, j->ws, j->p->tb, j->t0, j->tbc, uu, uu + 1);
}

static void FN(wino_gemm_unit)(void *ctx, nnl_idx uu, int tid, int first)
{
    FN(wino_job) *j = (FN(wino_job) *)ctx;
    const wino_plan *p = j->p;
    (void)tid, (void)first;
    nnl_status_set(&j->err, FN(wino_gemm_units)(p, j->geom, j->u, j->pk, j->ws, j->ws + j->vsize,
                                                p->tb, j->tbc, p->ncol, j->isa, uu, uu + 1));
}

static void FN(wino_out_unit)(void *ctx, nnl_idx uu, int tid, int first)
{
    const FN(wino_job) *j = (const FN(wino_job) *)ctx;
    (void)tid, (void)first;
    FN(wino_out_units)(j->p, j->geom, j->ws + j->vsize, j->p->tb, j->t0, j->tbc, j->bias,
                       j->beta, j->y, j->act, uu, uu + 1);
}

int CONV_NAME(const nnl_conv_geom *geom, int m, const T *x, const T *u, const T *upk,
              const T *bias, T beta, T *y, int act, int nthreads, int isa, void *work,
              nnl_idx work_bytes)
{
    wino_plan p;
    if (act < NNL_ACT_NONE || act > NNL_ACT_RELU6 ||
        wino_plan_of(geom, m, (int)sizeof(T), nthreads, isa, &p) != NNL_OK)
        return NNL_EINVAL;
    if (u == NULL && (upk == NULL || geom->f / geom->g <= NNL_WINO_SKINNY_ROWS) &&
        geom->c > 0)
        return NNL_EINVAL;
    if (p.tiles == 0 || geom->f == 0)
        return NNL_OK;
    const nnl_idx C = geom->c, F = geom->f, G = geom->g, a2 = p.a2, tb = p.tb;
    const int nt = p.nt, fused = p.fused;
    /* V and M: one pair per thread (fused) or one shared pair */
    const nnl_idx vsize = a2 * p.vxs, msize = a2 * p.mxs, pairs = fused ? nt : 1;
    const nnl_idx psize = upk == NULL ? a2 * G * p.per : 0;
    const size_t vm_elems = nnl_round64((size_t)(vsize + msize), sizeof(T));
    const size_t ws_bytes = sizeof(T) * (vm_elems * (size_t)pairs + (size_t)psize);
    /* the caller's work memory when it holds ws_bytes from its first 64-byte boundary on (an
     * inference plan's arena), else a block of our own for this call */
    T *ws = NULL, *own = NULL;
    if (work != NULL && work_bytes > 0) {
        const size_t skip = (size_t)(-(uintptr_t)work & 63u);
        if ((size_t)work_bytes >= skip && (size_t)work_bytes - skip >= ws_bytes)
            ws = (T *)(void *)((char *)work + skip);
    }
    if (ws == NULL) {
        ws = own = (T *)nnl_alloc64(ws_bytes);
        if (ws == NULL)
            return NNL_ENOMEM;
    }
    const T *pk = upk;
    if (upk == NULL)
        pk = ws + vm_elems * (size_t)pairs;
    FN(wino_job) j = {&p, geom, x, u, pk, bias, beta, y, act, isa, ws, vm_elems, vsize,
                      0, 0, NNL_OK};
    if (upk == NULL)   /* pack every U[xi][g] once for this call */
        nnl_parallel_for(nt, a2 * G, FN(wino_pack_unit), &j);
    if (fused) {
        /* whole chunks per thread, on its own V and M */
        nnl_parallel_for(nt, p.chunks, FN(wino_chunk_unit), &j);
    } else {
        /* few chunks: each phase split across the threads (one pool loop each) */
        for (nnl_idx t0 = 0; t0 < p.tiles; t0 += tb) {
            const nnl_idx tbc = nnl_min(tb, p.tiles - t0);
            const nnl_idx gper = nnl_cdiv(nnl_cdiv(tbc, L), NNL_WINO_LANE_GROUPS);
            const nnl_idx ncb = nnl_cdiv(tbc, p.ncol);
            j.t0 = t0, j.tbc = tbc;
            nnl_parallel_for(nt, C * gper, FN(wino_in_unit), &j);
            nnl_parallel_for(nt, a2 * G * ncb, FN(wino_gemm_unit), &j);
            nnl_parallel_for(nt, F * gper, FN(wino_out_unit), &j);
        }
    }
    const int err = j.err;
    nnl_free64(own);
    return err;
}
