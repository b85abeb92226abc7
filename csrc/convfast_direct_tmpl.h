/* Template body of convfast_direct.c, included once per dtype with T and FN(name) defined.
 * No include guard on purpose. */

typedef T FN(dw_vec) __attribute__((vector_size(NNL_DW_VBYTES)));
#define DW_VEC FN(dw_vec)
#define DW_VL ((nnl_idx)(NNL_DW_VBYTES / sizeof(T)))

static inline DW_VEC FN(dw_load)(const T *p)
{
    DW_VEC v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void FN(dw_store)(T *p, DW_VEC v)
{
    memcpy(p, &v, sizeof v);
}

/* ReLU / ReLU6 on a register vector (NNL_ACT_VEC of nnl_core.h: compare masks + bitwise
 * select). Applying the activation to stored rows instead left data-dependent branches in the
 * compiled loop: ReLU6 on mixed-sign outputs made a 56x56 depthwise conv 6x slower. */
static inline DW_VEC FN(dw_act_vec)(DW_VEC v, int act)
{
    return NNL_ACT_VEC(v, act);
}

/* s in every lane: s - 0 is s exactly (a zero's sign too), which the compiler folds into one
 * broadcast (load); 0 + s is not s for s = -0 and costs a scalar add before the broadcast */
static inline DW_VEC FN(dw_set1)(T s)
{
    return s - (DW_VEC){0};
}


/* act over n contiguous elements: whole vectors through dw_act_vec, then the tail */
static inline void FN(dw_act_row)(T *p, nnl_idx n, int act)
{
    if (act == NNL_ACT_NONE)
        return;
    nnl_idx e = 0;
    for (; e + DW_VL <= n; e += DW_VL)
        FN(dw_store)(p + e, FN(dw_act_vec)(FN(dw_load)(p + e), act));
    for (; e < n; e++)
        p[e] = NNL_ACT(p[e], act);
}

/* One output column j of row i, every tap checked (the border columns). */
static T FN(dw_one)(const nnl_conv_geom *g, const T *xp, const T *wf, nnl_idx i, nnl_idx j,
                    nnl_idx a0, nnl_idx a1, T acc)
{
    for (nnl_idx a = a0; a < a1; a++) {
        const T *xr = xp + (i * g->sh - g->pt + a * g->dh) * g->xsr;
        for (nnl_idx b = 0; b < g->kw; b++) {
            const nnl_idx q = j * g->sw - g->pl + b * g->dw;
            if ((size_t)q < (size_t)g->w)
                acc += wf[a * g->kw + b] * xr[q];
        }
    }
    return acc;
}

/* One plane: xp (H, W) with row stride xsr, yp (OH, OW) contiguous rows, wf (KH*KW). */
static void FN(dw_plane)(const nnl_conv_geom *g, const T *xp, const T *wf, T bias, T beta,
                         T *yp, int act, nnl_idx j0, nnl_idx j1)
{
    const nnl_idx kw = g->kw, ow = g->ow, sw = g->sw, xsr = g->xsr;
    for (nnl_idx i = 0; i < g->oh; i++) {
        T *yr = yp + i * ow;
        /* tap rows a in [a0, a1) read image rows i*sh - pt + a*dh inside [0, H) */
        const nnl_idx r0 = i * g->sh - g->pt;
        const nnl_idx a0 = nnl_min(g->kh, nnl_ceil_pos(-r0, g->dh));
        const nnl_idx a1 = nnl_max(a0, g->h - r0 > 0 ? nnl_min(g->kh, (g->h - r0 - 1) / g->dh + 1)
                                                    : 0);
        for (nnl_idx j = 0; j < j0; j++) {
            const T v = FN(dw_one)(g, xp, wf, i, j, a0, a1, bias);
            yr[j] = NNL_ACT(beta == 0 ? v : v + beta * yr[j], act);
        }
        nnl_idx j = j0;
        if (sw == 1) {
            /* interior columns: j - pl + b*dw lies in [0, W) for every tap b */
            const DW_VEC vb = FN(dw_set1)(bias), vbeta = FN(dw_set1)(beta);
            for (; j + NNL_DW_BLOCK * DW_VL <= j1; j += NNL_DW_BLOCK * DW_VL) {
                DW_VEC acc[NNL_DW_BLOCK];
#pragma GCC unroll 8
                for (int u = 0; u < NNL_DW_BLOCK; u++)
                    acc[u] = vb;
                for (nnl_idx a = a0; a < a1; a++) {
                    const T *xr = xp + (r0 + a * g->dh) * xsr + j - g->pl;
                    const T *wa = wf + a * kw;
                    for (nnl_idx b = 0; b < kw; b++) {
                        const DW_VEC wv = FN(dw_set1)(wa[b]);
                        const T *s = xr + b * g->dw;
#pragma GCC unroll 8
                        for (int u = 0; u < NNL_DW_BLOCK; u++)
                            acc[u] += wv * FN(dw_load)(s + u * DW_VL);
                    }
                }
#pragma GCC unroll 8
                for (int u = 0; u < NNL_DW_BLOCK; u++) {
                    DW_VEC v = acc[u];
                    if (beta != 0)
                        v += vbeta * FN(dw_load)(yr + j + u * DW_VL);
                    FN(dw_store)(yr + j + u * DW_VL, FN(dw_act_vec)(v, act));
                }
            }
            for (; j + DW_VL <= j1; j += DW_VL) {
                DW_VEC acc = vb;
                for (nnl_idx a = a0; a < a1; a++) {
                    const T *xr = xp + (r0 + a * g->dh) * xsr + j - g->pl;
                    for (nnl_idx b = 0; b < kw; b++)
                        acc += FN(dw_set1)(wf[a * kw + b]) * FN(dw_load)(xr + b * g->dw);
                }
                if (beta != 0)
                    acc += vbeta * FN(dw_load)(yr + j);
                FN(dw_store)(yr + j, FN(dw_act_vec)(acc, act));
            }
        }
        /* the rest of the interior (strided, or shorter than a vector): taps unchecked */
        for (; j < j1; j++) {
            T acc = bias;
            for (nnl_idx a = a0; a < a1; a++) {
                const T *xr = xp + (r0 + a * g->dh) * xsr + j * sw - g->pl;
                for (nnl_idx b = 0; b < kw; b++)
                    acc += wf[a * kw + b] * xr[b * g->dw];
            }
            yr[j] = NNL_ACT(beta == 0 ? acc : acc + beta * yr[j], act);
        }
        for (j = nnl_max(j0, j1); j < ow; j++) {
            const T v = FN(dw_one)(g, xp, wf, i, j, a0, a1, bias);
            yr[j] = NNL_ACT(beta == 0 ? v : v + beta * yr[j], act);
        }
    }
}

/* The stride-phase "wide" layout: the zero-padded plane is split into
 * its SH*SW stride phases, phase (ra, rb) holding ph[u, v] = x[u*SH + ra - PT, v*SW + rb - PL]
 * (0 outside the image), HQ x WQ each. Tap (a, b), with a*DH = qa*SH + ra and
 * b*DW = qb*SW + rb, reads phase (ra, rb) at (i + qa, j + qb): over the wide output
 * yw[t], t = i*WQ + j < (OH - 1)*WQ + OW, every tap is one contiguous stream
 * ph_ab[t + qa*WQ + qb], so the whole plane is one register-blocked vector loop. */
typedef struct {
    nnl_idx hq, wq, phase, len, slack, need;   /* sizes in elements */
    nnl_idx nslots;                            /* output vectors of a plane (0: OW < VL) */
} FN(dw_wide);

static void FN(dw_wide_sizes)(const nnl_conv_geom *g, FN(dw_wide) *s)
{
    s->hq = g->oh + ((g->kh - 1) * g->dh) / g->sh;
    s->wq = g->ow + ((g->kw - 1) * g->dw) / g->sw;
    s->len = (g->oh - 1) * s->wq + g->ow;
    s->slack = NNL_DW_BLOCK * DW_VL;             /* reads/writes past len stay in the buffer */
    /* absurd strides or dilations (huge phases or many of them) would overflow the sizes:
     * no buffer then, the row kernel */
    if ((double)g->sh * g->sw * ((double)s->hq * s->wq + s->slack) > (double)NNL_DW_WIDE_MAX) {
        s->phase = 0;
        s->need = NNL_DW_WIDE_MAX + 1;
        s->nslots = 0;
        return;
    }
    s->phase = s->hq * s->wq + s->slack;
    s->need = g->sh * g->sw * s->phase;
    if (g->ow < DW_VL)   /* narrow planes: a wide output (len + slack) after the phases */
        s->need += s->len + s->slack;
    s->nslots = g->ow >= DW_VL ? g->oh * ((g->ow + DW_VL - 1) / DW_VL) : 0;
}

/* offs[k] = where tap k = a*KW + b reads in the phase buffers (phases ``pstride`` apart),
 * relative to the output position t = i*WQ + j */
static void FN(dw_wide_offsets)(const nnl_conv_geom *g, const FN(dw_wide) *s, nnl_idx pstride,
                                nnl_idx *offs)
{
    for (nnl_idx a = 0; a < g->kh; a++)
        for (nnl_idx b = 0; b < g->kw; b++) {
            const nnl_idx ea = a * g->dh, eb = b * g->dw;
            offs[a * g->kw + b] = ((ea % g->sh) * g->sw + eb % g->sw) * pstride
                                  + (ea / g->sh) * s->wq + eb / g->sw;
        }
}

/* slots[2q], slots[2q+1] = wide and y offsets of output vector q: row i, vector u of
 * ceil(OW/VL) starting at min(u*VL, OW - VL) (OW >= VL). */
static void FN(dw_wide_slots)(const nnl_conv_geom *g, const FN(dw_wide) *s, int32_t *slots)
{
    const nnl_idx npos = (g->ow + DW_VL - 1) / DW_VL;
    nnl_idx q = 0;
    for (nnl_idx i = 0; i < g->oh; i++)
        for (nnl_idx u = 0; u < npos; u++, q++) {
            const nnl_idx j = u * DW_VL < g->ow - DW_VL ? u * DW_VL : g->ow - DW_VL;
            slots[2 * q] = (int32_t)(i * s->wq + j);
            slots[2 * q + 1] = (int32_t)(i * g->ow + j);
        }
}

static NNL_ALWAYS_INLINE void FN(dw_wide_rows)(const nnl_conv_geom *g, const FN(dw_wide) *s,
                                               const nnl_idx *offs, const int32_t *slots,
                                               const T *wf, T bias,
                                               T beta, T *yp, int act, T *buf,
                                               const nnl_idx taps)
{
    DW_VEC wv[32];
    const T *src[32];
    const nnl_idx nk = taps < 32 ? taps : 32;   /* taps beyond 32 are read from wf/offs */
    for (nnl_idx k = 0; k < nk; k++) {
        wv[k] = FN(dw_set1)(wf[k]);
        src[k] = buf + offs[k];
    }
    const DW_VEC vb = FN(dw_set1)(bias), vbeta = FN(dw_set1)(beta);
    const nnl_idx ow = g->ow, wq = s->wq;
    if (ow < DW_VL) {
        /* rows narrower than a vector: the whole plane as one wide stream, t < (OH-1)*WQ + OW
         * in blocks of independent accumulators, into the wide output after the phases (its
         * slack takes the overrun), then the valid OW columns of each row out */
        T *yw = buf + g->sh * g->sw * s->phase;
        for (nnl_idx t = 0; t < s->len; t += NNL_DW_BLOCK * DW_VL) {
            DW_VEC acc[NNL_DW_BLOCK];
#pragma GCC unroll 8
            for (int u = 0; u < NNL_DW_BLOCK; u++)
                acc[u] = vb;
            for (nnl_idx k = 0; k < taps; k++) {
                const T *sk = (k < nk ? src[k] : buf + offs[k]) + t;
                const DW_VEC w = k < nk ? wv[k] : FN(dw_set1)(wf[k]);
#pragma GCC unroll 8
                for (int u = 0; u < NNL_DW_BLOCK; u++)
                    acc[u] += w * FN(dw_load)(sk + u * DW_VL);
            }
#pragma GCC unroll 8
            for (int u = 0; u < NNL_DW_BLOCK; u++)
                FN(dw_store)(yw + t + u * DW_VL, acc[u]);
        }
        for (nnl_idx i = 0; i < g->oh; i++) {
            T *yr = yp + i * ow;
            const T *wr = yw + i * wq;
            /* copy, then one branch-free activation pass (per-element act/beta tests here
             * made ReLU6 on mixed-sign outputs 6x slower than the whole convolution) */
            if (beta == 0) {
                FN(dw_row_copy)(yr, wr, ow, 1, act);
                continue;
            }
            for (nnl_idx j = 0; j < ow; j++)
                yr[j] = wr[j] + beta * yr[j];
            FN(dw_act_row)(yr, ow, act);
        }
        return;
    }
    if (slots != NULL) {
        /* beta == 0 and OW >= VL: the plane's output vectors, listed in ``slots`` as (wide
         * offset, y offset) pairs (each row's vectors start at u*VL, its last one at OW - VL,
         * overlapping a neighbour: same values), in groups of NNL_DW_BLOCK independent
         * accumulators across row ends (the last group repeats its last vector). */
        const nnl_idx nslots = s->nslots;
        for (nnl_idx q0 = 0; q0 < nslots; q0 += NNL_DW_BLOCK) {
            nnl_idx tt[NNL_DW_BLOCK], yy[NNL_DW_BLOCK];
            DW_VEC acc[NNL_DW_BLOCK];
#pragma GCC unroll 8
            for (int u = 0; u < NNL_DW_BLOCK; u++) {
                const nnl_idx q = q0 + u < nslots ? q0 + u : nslots - 1;
                tt[u] = slots[2 * q];
                yy[u] = slots[2 * q + 1];
                acc[u] = vb;
            }
            for (nnl_idx k = 0; k < taps; k++) {
                const T *sk = k < nk ? src[k] : buf + offs[k];
                const DW_VEC w = k < nk ? wv[k] : FN(dw_set1)(wf[k]);
#pragma GCC unroll 8
                for (int u = 0; u < NNL_DW_BLOCK; u++)
                    acc[u] += w * FN(dw_load)(sk + tt[u]);
            }
#pragma GCC unroll 8
            for (int u = 0; u < NNL_DW_BLOCK; u++)
                FN(dw_store)(yp + yy[u], FN(dw_act_vec)(acc[u], act));
        }
        return;
    }
    for (nnl_idx i = 0; i < g->oh; i++) {
        T *yr = yp + i * ow;
        const nnl_idx t0 = i * wq;
        nnl_idx j = 0;
        for (; j + NNL_DW_BLOCK * DW_VL <= ow; j += NNL_DW_BLOCK * DW_VL) {
            DW_VEC acc[NNL_DW_BLOCK];
#pragma GCC unroll 8
            for (int u = 0; u < NNL_DW_BLOCK; u++)
                acc[u] = vb;
            for (nnl_idx k = 0; k < taps; k++) {
                const T *sk = (k < nk ? src[k] : buf + offs[k]) + t0 + j;
                const DW_VEC w = k < nk ? wv[k] : FN(dw_set1)(wf[k]);
#pragma GCC unroll 8
                for (int u = 0; u < NNL_DW_BLOCK; u++)
                    acc[u] += w * FN(dw_load)(sk + u * DW_VL);
            }
#pragma GCC unroll 8
            for (int u = 0; u < NNL_DW_BLOCK; u++) {
                if (beta != 0)
                    acc[u] += vbeta * FN(dw_load)(yr + j + u * DW_VL);
                FN(dw_store)(yr + j + u * DW_VL, FN(dw_act_vec)(acc[u], act));
            }
        }
        for (;;) {
            nnl_idx jv = j;
            if (j + DW_VL > ow) {
                if (j >= ow || beta != 0 || ow < DW_VL)
                    break;
                jv = ow - DW_VL;   /* overlaps columns already written: same values */
            }
            DW_VEC acc = vb;
            for (nnl_idx k = 0; k < taps; k++) {
                const T *sk = (k < nk ? src[k] : buf + offs[k]) + t0 + jv;
                acc += (k < nk ? wv[k] : FN(dw_set1)(wf[k])) * FN(dw_load)(sk);
            }
            if (beta != 0)
                acc += vbeta * FN(dw_load)(yr + jv);
            FN(dw_store)(yr + jv, FN(dw_act_vec)(acc, act));
            j = jv + DW_VL;
        }
        for (; j < ow; j++) {
            T acc = bias;
            for (nnl_idx k = 0; k < taps; k++)
                acc += wf[k] * buf[offs[k] + t0 + j];
            yr[j] = NNL_ACT(beta == 0 ? acc : acc + beta * yr[j], act);
        }
    }
}

static NNL_NO_MEMCPY_IDIOM void FN(dw_plane_wide)(const nnl_conv_geom *g,
                                                     const FN(dw_wide) *s, const nnl_idx *offs,
                                                     const int32_t *slots,
                              const T *xp, const T *wf, T bias, T beta, T *yp, int act, T *buf)
{
    /* sizes in locals: with -fno-strict-aliasing a bound read through s or g is re-read after
     * every store into the buffer, which kept the zero fills scalar */
    const nnl_idx wq = s->wq, hq = s->hq, slack = s->slack, phase = s->phase, sh = g->sh,
                  sw = g->sw, h = g->h, xsr = g->xsr, pt = g->pt;
    for (nnl_idx ra = 0; ra < sh; ra++)
        for (nnl_idx rb = 0; rb < sw; rb++) {
            T *ph = buf + (ra * sw + rb) * phase;
            /* columns v in [v0, v1) read image columns v*sw + rb - pl inside [0, W) */
            const nnl_idx off = rb - g->pl;
            const nnl_idx v0 = nnl_min(wq, nnl_ceil_pos(-off, sw));
            const nnl_idx v1 = nnl_max(v0, g->w - off > 0 ? nnl_min(wq, (g->w - off - 1) / sw + 1)
                                                         : 0);
            for (nnl_idx u = 0; u < hq; u++) {
                T *row = ph + u * wq;
                const nnl_idx r = u * sh + ra - pt;
                if ((size_t)r >= (size_t)h) {
                    for (nnl_idx v = 0; v < wq; v++)
                        row[v] = 0;
                    continue;
                }
                const T *xr = xp + r * xsr;
                for (nnl_idx v = 0; v < v0; v++)
                    row[v] = 0;
                FN(dw_row_copy)(row + v0, xr + v0 * sw + off, v1 - v0, sw, NNL_ACT_NONE);
                for (nnl_idx v = v1; v < wq; v++)
                    row[v] = 0;
            }
            for (nnl_idx v = 0; v < slack; v++)
                ph[hq * wq + v] = 0;
        }
    if (g->kh * g->kw == 9)
        FN(dw_wide_rows)(g, s, offs, beta == 0 ? slots : NULL, wf, bias, beta, yp, act, buf, 9);
    else
        FN(dw_wide_rows)(g, s, offs, beta == 0 ? slots : NULL, wf, bias, beta, yp, act, buf,
                         g->kh * g->kw);
}

/* ------------------------------------------------------- small planes: channels in lanes */

/* Planes narrower than a vector waste most of each vector and pay a per-plane cost that
 * exceeds their arithmetic, so they are done VL output channels at a time with the channels
 * in the vector lanes: each plane's wide layout (as dw_plane_wide) is interleaved into
 * xcl[pos*VL + lane], every tap is then one full-vector multiply-add per output pixel, and the
 * result ycl[p*VL + lane] is de-interleaved into the VL output planes. Lanes past F read and
 * weigh zeros and are never stored. */
typedef struct {
    nnl_idx pos;                 /* positions of the interleaved wide layout: SH*SW*HQ*WQ */
    nnl_idx need;                /* elements per thread: xcl, ycl, weights */
} FN(dw_cl);

static void FN(dw_cl_sizes)(const nnl_conv_geom *g, const FN(dw_wide) *s, FN(dw_cl) *c)
{
    if (s->need > NNL_DW_WIDE_MAX ||
        (double)DW_VL * ((double)g->oh * g->ow + (double)g->kh * g->kw) > NNL_DW_WIDE_MAX) {
        c->pos = 0;
        c->need = NNL_DW_WIDE_MAX + 1;   /* (sizes that could overflow) */
        return;
    }
    c->pos = g->sh * g->sw * s->hq * s->wq;
    c->need = DW_VL * (c->pos + g->oh * g->ow + g->kh * g->kw);
}

static NNL_NO_MEMCPY_IDIOM NNL_ALWAYS_INLINE void FN(dw_cl_block)(
    const nnl_conv_geom *g, const FN(dw_wide) *s, const FN(dw_cl) *cs, const nnl_idx *offs,
    const T *xn, const T *w, const T *bias, T beta, T *yn, int act, nnl_idx f0, T *buf,
    const nnl_idx taps)
{
    const nnl_idx mult = g->f / g->c, lanes = nnl_min(DW_VL, g->f - f0), wq = s->wq;
    const nnl_idx plane = s->hq * s->wq, L = g->oh * g->ow;
    T *xcl = buf, *ycl = buf + DW_VL * cs->pos, *wcl = ycl + DW_VL * L;
    /* weights and bias, lane l = output channel f0 + l (zeros past F) */
    for (nnl_idx k = 0; k < taps; k++)
        for (nnl_idx l = 0; l < DW_VL; l++)
            wcl[k * DW_VL + l] = l < lanes ? w[(f0 + l) * taps + k] : (T)0;
    T bl[DW_VL];
    for (nnl_idx l = 0; l < DW_VL; l++)
        bl[l] = (l < lanes && bias) ? bias[f0 + l] : (T)0;
    /* the zero-padded stride phases of each lane's input plane, interleaved */
    for (nnl_idx l = 0; l < DW_VL; l++) {
        const T *xp = l < lanes ? xn + ((f0 + l) / mult) * g->xsc : NULL;
        for (nnl_idx ra = 0; ra < g->sh; ra++)
            for (nnl_idx rb = 0; rb < g->sw; rb++) {
                T *ph = xcl + (ra * g->sw + rb) * plane * DW_VL + l;
                const nnl_idx off = rb - g->pl;
                const nnl_idx v0 = nnl_min(wq, nnl_ceil_pos(-off, g->sw));
                const nnl_idx v1 = nnl_max(v0, g->w - off > 0
                                                  ? nnl_min(wq, (g->w - off - 1) / g->sw + 1) : 0);
                for (nnl_idx u = 0; u < s->hq; u++) {
                    T *row = ph + u * wq * DW_VL;
                    const nnl_idx r = u * g->sh + ra - g->pt;
                    if (xp == NULL || (size_t)r >= (size_t)g->h) {
                        for (nnl_idx v = 0; v < wq; v++)
                            row[v * DW_VL] = 0;
                        continue;
                    }
                    const T *xr = xp + r * g->xsr + off;
                    for (nnl_idx v = 0; v < v0; v++)
                        row[v * DW_VL] = 0;
                    for (nnl_idx v = v0; v < v1; v++)
                        row[v * DW_VL] = xr[v * g->sw];
                    for (nnl_idx v = v1; v < wq; v++)
                        row[v * DW_VL] = 0;
                }
            }
    }
    /* one vector per output pixel, four pixels of a row in flight */
    DW_VEC wv[32];
    const nnl_idx nk = taps < 32 ? taps : 32;
    for (nnl_idx k = 0; k < nk; k++)
        wv[k] = FN(dw_load)(wcl + k * DW_VL);
    const DW_VEC vb = FN(dw_load)(bl);
    for (nnl_idx i = 0; i < g->oh; i++) {
        nnl_idx j = 0;
        for (; j + 4 <= g->ow; j += 4) {
            DW_VEC acc[4] = {vb, vb, vb, vb};
            for (nnl_idx k = 0; k < taps; k++) {
                const T *src = xcl + (offs[k] + i * wq + j) * DW_VL;
                const DW_VEC wk = k < nk ? wv[k] : FN(dw_load)(wcl + k * DW_VL);
#pragma GCC unroll 4
                for (int u = 0; u < 4; u++)
                    acc[u] += wk * FN(dw_load)(src + u * DW_VL);
            }
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++)
                FN(dw_store)(ycl + (i * g->ow + j + u) * DW_VL, acc[u]);
        }
        for (; j < g->ow; j++) {
            DW_VEC acc = vb;
            for (nnl_idx k = 0; k < taps; k++)
                acc += (k < nk ? wv[k] : FN(dw_load)(wcl + k * DW_VL)) *
                       FN(dw_load)(xcl + (offs[k] + i * wq + j) * DW_VL);
            FN(dw_store)(ycl + (i * g->ow + j) * DW_VL, acc);
        }
    }
    /* de-interleave into the output planes, with the epilogue */
    for (nnl_idx l = 0; l < lanes; l++) {
        T *yp = yn + (f0 + l) * g->ysf;
        if (beta == 0)
            for (nnl_idx q = 0; q < L; q++)
                yp[q] = ycl[q * DW_VL + l];
        else
            for (nnl_idx q = 0; q < L; q++)
                yp[q] = ycl[q * DW_VL + l] + beta * yp[q];
        FN(dw_act_row)(yp, L, act);
    }
}

/* channels-in-lanes for planes narrower than a vector whose buffer fits; with masked row
 * copies (NNL_DW_MASKED) only for planes at most half a vector wide. One thread, 3x3, AMD
 * EPYC Zen 4, best of 400 calls, channels-in-lanes vs wide planes: 384 x 14x14 stride 1
 * 114 vs 80 us, 192 x 28x28 stride 2 (OW 14) 145 vs 92 us, 960 x 7x7 100 vs 109 us,
 * 576 x 14x14 stride 2 (OW 7) 122 vs 147 us. */
static int FN(dw_use_cl)(const nnl_conv_geom *g, const FN(dw_cl) *c)
{
    const nnl_idx widest = NNL_DW_MASKED ? DW_VL / 2 : DW_VL - 1;
    return g->ow <= widest && c->need <= NNL_DW_WIDE_MAX;
}

/* the call's shared table: tap offsets, then the output vector slots (64-byte aligned) */
static size_t FN(dw_head_bytes)(const nnl_conv_geom *g, const FN(dw_wide) *s)
{
    return ((size_t)g->kh * g->kw * sizeof(nnl_idx) + 63) / 64 * 64 +
           ((size_t)s->nslots * 2 * sizeof(int32_t) + 63) / 64 * 64;
}

/* One call's work for the pool: channel blocks (channels-in-lanes) or planes. */
typedef struct {
    const nnl_conv_geom *g;
    const FN(dw_wide) *ws;
    const FN(dw_cl) *cs;
    const nnl_idx *offs;
    const int32_t *slots;
    const T *x, *w, *bias;
    T beta;
    T *y;
    int act;
    T *bufs;
    nnl_idx need, taps, mult, j0, j1;
} FN(dw_job);

static void FN(dw_job_block)(void *ctx, nnl_idx q, int tid, int first)
{
    const FN(dw_job) *j = (const FN(dw_job) *)ctx;
    const nnl_conv_geom *g = j->g;
    T *buf = j->bufs + (size_t)tid * (size_t)j->need;
    const nnl_idx nb = (g->f + DW_VL - 1) / DW_VL, n = q / nb, f0 = (q % nb) * DW_VL;
    (void)first;
    if (j->taps == 9)
        FN(dw_cl_block)(g, j->ws, j->cs, j->offs, j->x + n * g->xsn, j->w, j->bias, j->beta,
                        j->y + n * g->ysn, j->act, f0, buf, 9);
    else
        FN(dw_cl_block)(g, j->ws, j->cs, j->offs, j->x + n * g->xsn, j->w, j->bias, j->beta,
                        j->y + n * g->ysn, j->act, f0, buf, j->taps);
}

static void FN(dw_job_plane)(void *ctx, nnl_idx p, int tid, int first)
{
    const FN(dw_job) *j = (const FN(dw_job) *)ctx;
    const nnl_conv_geom *g = j->g;
    const nnl_idx n = p / g->f, f = p % g->f;
    const T *xp = j->x + n * g->xsn + (f / j->mult) * g->xsc;
    T *yp = j->y + n * g->ysn + f * g->ysf;
    const T b = j->bias ? j->bias[f] : (T)0;
    (void)first;
    if (j->bufs)
        FN(dw_plane_wide)(g, j->ws, j->offs, j->slots, xp, j->w + f * j->taps, b, j->beta, yp,
                          j->act, j->bufs + (size_t)tid * (size_t)j->need);
    else
        FN(dw_plane)(g, xp, j->w + f * j->taps, b, j->beta, yp, j->act, j->j0, j->j1);
}

/* y (N, F, OH*OW) with strides (ysn, ysf) and contiguous planes; w (F, KH*KW); bias (F,) or
 * NULL. Returns NNL_OK or NNL_EINVAL. */
int FN(nnl_conv_depthwise)(const nnl_conv_geom *g, const T *x, const T *w, const T *bias,
                           T beta, T *y, int act, int nthreads)
{
    if (!dw_geom_ok(g) || act < NNL_ACT_NONE || act > NNL_ACT_RELU6)
        return NNL_EINVAL;
    if (g->n == 0 || g->f == 0 || g->oh == 0 || g->ow == 0)
        return NNL_OK;
    const nnl_idx mult = g->f / g->c, planes = g->n * g->f, taps = g->kh * g->kw;
    /* interior columns [j0, j1): every tap column j*sw - pl + b*dw inside [0, W) */
    const nnl_idx j0 = nnl_min(g->ow, nnl_ceil_pos(g->pl, g->sw));
    const nnl_idx last = g->w - 1 + g->pl - (g->kw - 1) * g->dw;   /* j*sw <= last */
    const nnl_idx j1 = nnl_max(j0, last >= 0 ? nnl_min(g->ow, last / g->sw + 1) : 0);
    int nt = dw_threads(g, nthreads);
    if ((nnl_idx)nt > planes)
        nt = (int)planes;
    FN(dw_wide) ws;
    FN(dw_wide_sizes)(g, &ws);
    FN(dw_cl) cs;
    FN(dw_cl_sizes)(g, &ws, &cs);
    const int cl = FN(dw_use_cl)(g, &cs);
    const nnl_idx blocks = g->n * ((g->f + DW_VL - 1) / DW_VL), need = cl ? cs.need : ws.need;
    if (cl && (nnl_idx)nt > blocks)
        nt = (int)blocks;
    /* one block: the tap offsets (and slots), then a buffer per thread (row kernel without) */
    T *bufs = NULL;
    nnl_idx *offs = NULL;
    int32_t *slots = NULL;
    const size_t head = FN(dw_head_bytes)(g, &ws);
    if (need <= NNL_DW_WIDE_MAX) {
        offs = (nnl_idx *)malloc(head + sizeof(T) * (size_t)need * (size_t)nt);
        if (offs != NULL) {
            bufs = (T *)((char *)offs + head);
            FN(dw_wide_offsets)(g, &ws, cl ? ws.hq * ws.wq : ws.phase, offs);
            if (ws.nslots && !cl) {
                slots = (int32_t *)((char *)offs + ((size_t)taps * sizeof(nnl_idx) + 63) / 64
                                    * 64);
                FN(dw_wide_slots)(g, &ws, slots);
            }
        }
    }
    FN(dw_job) job = {g, &ws, &cs, offs, slots, x, w, bias, beta, y, act, bufs, need, taps,
                      mult, j0, j1};
    if (cl && bufs)
        nnl_parallel_for(nt, blocks, FN(dw_job_block), &job);
    else
        nnl_parallel_for(nt, planes, FN(dw_job_plane), &job);
    free(offs);
    return NNL_OK;
}

/* Bytes of work memory FN(nnl_conv_depthwise) allocates (0 when it runs the row kernel). */
static nnl_idx FN(dw_workspace)(const nnl_conv_geom *g, int nthreads)
{
    if (!dw_geom_ok(g) || g->n == 0 || g->f == 0 || g->oh == 0 || g->ow == 0)
        return 0;
    FN(dw_wide) ws;
    FN(dw_wide_sizes)(g, &ws);
    FN(dw_cl) cs;
    FN(dw_cl_sizes)(g, &ws, &cs);
    const int cl = FN(dw_use_cl)(g, &cs);
    const nnl_idx need = cl ? cs.need : ws.need;
    if (need > NNL_DW_WIDE_MAX)
        return 0;
    const nnl_idx units = cl ? g->n * ((g->f + DW_VL - 1) / DW_VL) : g->n * g->f;
    nnl_idx nt = dw_threads(g, nthreads);
    nt = nt > units ? units : nt;
    return (nnl_idx)FN(dw_head_bytes)(g, &ws) + (nnl_idx)sizeof(T) * need * nt;
}

#undef DW_VEC
#undef DW_VL
