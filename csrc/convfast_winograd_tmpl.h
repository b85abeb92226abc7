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

/* Phase 1 for nl <= L tiles from t of channel c: V[xi][c][t - t0 + l] = (B^T d B)[xi]. */
static NNL_ALWAYS_INLINE void FN(wino_in)(const wino_plan *p, const nnl_conv_geom *g,
                                          const int m, const T *xc, nnl_idx t, int nl, T *vdst,
                                          nnl_idx vstride)
{
    enum { A = 6 };
    const int a = m + 2;
    T d[A * A * L], t1[A * A * L];
    nnl_idx n, ti, tj;
    FN(wino_tile)(p, t, &n, &ti, &tj);
    for (int l = 0; l < nl; l++) {
        const nnl_idx r0 = ti * m - g->pt, c0 = tj * m - g->pl;
        const T *src = xc + n * g->xsn;
        if (r0 >= 0 && r0 + a <= g->h && c0 >= 0 && c0 + a <= g->w) {
            const T *s = src + r0 * g->xsr + c0;
            for (int i = 0; i < a; i++)
                for (int j = 0; j < a; j++)
                    d[(i * a + j) * L + l] = s[i * g->xsr + j];
        } else {
            for (int i = 0; i < a; i++) {
                const nnl_idx r = r0 + i;
                const int rok = r >= 0 && r < g->h;
                for (int j = 0; j < a; j++) {
                    const nnl_idx c = c0 + j;
                    d[(i * a + j) * L + l] = (rok && c >= 0 && c < g->w)
                                                 ? src[r * g->xsr + c] : (T)0;
                }
            }
        }
        FN(wino_next)(p, &n, &ti, &tj);
    }
    for (int l = nl; l < L; l++)
        for (int k = 0; k < a * a; k++)
            d[k * L + l] = 0;
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
    nnl_idx n, ti, tj;
    FN(wino_tile)(p, t, &n, &ti, &tj);
    for (int l = 0; l < nl; l++) {
        const nnl_idx oi0 = ti * m, oj0 = tj * m;
        const int mi = (int)nnl_min(m, g->oh - oi0), mj = (int)nnl_min(m, g->ow - oj0);
        T *yt = yf + n * g->ysn + oi0 * g->ow + oj0;
        for (int i = 0; i < mi; i++)
            for (int j = 0; j < mj; j++) {
                T v = s[(i * m + j) * L + l];
                if (beta != 0)
                    v += beta * yt[i * g->ow + j];
                v += bias;
                yt[i * g->ow + j] = NNL_ACT(v, act);
            }
        FN(wino_next)(p, &n, &ti, &tj);
    }
}

int CONV_NAME(const nnl_conv_geom *geom, int m, const T *x, const T *u, const T *upk,
              const T *bias, T beta, T *y, int act, int nthreads, int isa)
{
    int mr, nr, mc, kc, nc;
    if (!wino_geom_ok(geom, m) || act < NNL_ACT_NONE || act > NNL_ACT_RELU6)
        return NNL_EINVAL;
    if (nnl_gemm_blocking(isa, (int)sizeof(T), &mr, &nr, &mc, &kc, &nc) != NNL_OK)
        return NNL_EINVAL;
    wino_plan p;
    wino_make_plan(geom, m, (int)sizeof(T), mr, nr, nc, nthreads, &p);
    if (p.tiles == 0 || geom->f == 0)
        return NNL_OK;
    const nnl_idx C = geom->c, F = geom->f, G = geom->g, a2 = p.a2, tb = p.tb;
    const nnl_idx vsize = a2 * C * tb, msize = a2 * F * tb;
    const nnl_idx psize = upk == NULL ? a2 * G * p.per : 0;
    T *ws = (T *)nnl_alloc64(sizeof(T) * (size_t)(vsize + msize + psize));
    if (ws == NULL)
        return NNL_ENOMEM;
    T *V = ws, *M = ws + vsize;
    const T *pk = upk;
    if (upk == NULL)
        pk = ws + vsize + msize;
    int err = NNL_OK;
    const int nt = p.nt;

#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        if (upk == NULL) {
            /* pack every U[xi][g] once for this call */
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
            for (nnl_idx q = 0; q < a2 * G; q++) {
                const nnl_idx xi = q / G, gi = q % G;
                const int rc = GEMM_PACK(0, p.fg, p.cg, u + (xi * F + gi * p.fg) * p.cg, p.cg,
                                         1, isa, (T *)pk + q * p.per);
                if (rc != NNL_OK) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
                    err = rc;
                }
            }
        }
        for (nnl_idx t0 = 0; t0 < p.tiles; t0 += tb) {
            const nnl_idx tbc = nnl_min(tb, p.tiles - t0);
            const nnl_idx groups = nnl_cdiv(tbc, L);
            const nnl_idx gper = nnl_cdiv(groups, NNL_WINO_LANE_GROUPS);
            /* 1. input transform */
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
            for (nnl_idx uu = 0; uu < C * gper; uu++) {
                const nnl_idx c = uu / gper, q0 = (uu % gper) * NNL_WINO_LANE_GROUPS;
                const nnl_idx q1 = nnl_min(groups, q0 + NNL_WINO_LANE_GROUPS);
                const T *xc = x + c * geom->xsc;
                for (nnl_idx q = q0; q < q1; q++) {
                    const nnl_idx j = q * L;
                    const int nl = (int)nnl_min(L, tbc - j);
                    if (m == 4)
                        FN(wino_in)(&p, geom, 4, xc, t0 + j, nl, V + c * tb + j, C * tb);
                    else
                        FN(wino_in)(&p, geom, 2, xc, t0 + j, nl, V + c * tb + j, C * tb);
                }
            }
            /* 2. the alpha^2 x G GEMMs, in column blocks */
            const nnl_idx ncb = nnl_cdiv(tbc, p.ncol);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
            for (nnl_idx uu = 0; uu < a2 * G * ncb; uu++) {
                const nnl_idx xi = uu / (G * ncb), gi = (uu / ncb) % G, cb = uu % ncb;
                const nnl_idx j0 = cb * p.ncol, nj = nnl_min(p.ncol, tbc - j0);
                const nnl_idx row = xi * F + gi * p.fg;
                const int rc = GEMM_PK(1, p.fg, nj, p.cg, (T)1, u + row * p.cg, 0, p.cg, 1,
                                       V + (xi * C + gi * p.cg) * tb + j0, 0, tb, 1, (T)0,
                                       M + row * tb + j0, 0, tb, NULL, 0, NNL_BIAS_NONE,
                                       NNL_ACT_NONE, 1, isa, pk + (xi * G + gi) * p.per, NULL);
                if (rc != NNL_OK) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
                    err = rc;
                }
            }
            /* 3. output transform + epilogue */
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
            for (nnl_idx uu = 0; uu < F * gper; uu++) {
                const nnl_idx f = uu / gper, q0 = (uu % gper) * NNL_WINO_LANE_GROUPS;
                const nnl_idx q1 = nnl_min(groups, q0 + NNL_WINO_LANE_GROUPS);
                const T b = bias != NULL ? bias[f] : (T)0;
                T *yf = y + f * geom->ysf;
                for (nnl_idx q = q0; q < q1; q++) {
                    const nnl_idx j = q * L;
                    const int nl = (int)nnl_min(L, tbc - j);
                    if (m == 4)
                        FN(wino_out)(&p, geom, 4, M + f * tb + j, F * tb, t0 + j, nl, yf, b,
                                     beta, act);
                    else
                        FN(wino_out)(&p, geom, 2, M + f * tb + j, F * tb, t0 + j, nl, yf, b,
                                     beta, act);
                }
            }
        }
    }
    nnl_free64(ws);
    return err;
}
