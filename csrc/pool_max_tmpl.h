/* Template body of pool_max.c, included once per dtype with T and FN(name) defined (and,
 * in AVX-512 builds, the vector macros V, VL, MASK, V_*). No include guard on purpose.
 *
 * kind: the row buffer path's column access, 1 (sw == 1), 2 (sw == 2, dw == 1: the taps pair
 * up on one load pair), 3 (sw == 2, dw > 1), 0 (sw >= 3, a gather). exact: the NaN-exact
 * select instead of the plain max. NK: the kernel width when fixed at compile time (0: p->kw).
 * NA: the number of row taps when fixed at compile time (0: na). TWO: a row of x needs the
 * second vector (register path). */

#if defined(__AVX512F__)

/* lanes [0, n) of a vector, 0 <= n <= VL */
NNL_INLINE MASK FN(lanes)(nnl_idx n)
{
    return (MASK)((1u << n) - 1u);
}

/* max(m, v): plain (v > m ? v : m, one vmaxps; a NaN v is dropped) or exact (a NaN v is
 * taken, a NaN m is kept) */
NNL_INLINE V FN(vmax)(V m, V v, const int exact)
{
    if (!exact)
        return V_MAX(v, m);
    const MASK t = (MASK)(V_CMP(v, m, _CMP_GT_OQ) | V_CMP(v, v, _CMP_UNORD_Q));
    return V_BLEND(t, m, v);
}

/* the same on the lanes k only (the others keep m) */
NNL_INLINE V FN(kmax)(V m, MASK k, V v, const int exact)
{
    if (!exact)
        return V_MASK_MAX(m, k, v, m);
    const MASK t = (MASK)(V_MASK_CMP(k, v, m, _CMP_GT_OQ) | V_MASK_CMP(k, v, v, _CMP_UNORD_Q));
    return V_BLEND(t, m, v);
}

/* whether x[0 .. n) holds a NaN (one compare per 2 vectors; masked tail) */
static int FN(has_nan)(const T *x, nnl_idx n)
{
    MASK k = 0;
    nnl_idx j = 0;
    for (; j + 2 * VL <= n; j += 2 * VL)
        k |= V_CMP(V_LOAD(x + j), V_LOAD(x + j + VL), _CMP_UNORD_Q);
    if (j < n) {
        const V a = V_ZLOAD(FN(lanes)(nnl_min(VL, n - j)), x + j);
        const V b = V_ZLOAD(FN(lanes)(nnl_max(0, n - j - VL)), x + j + VL);
        k |= V_CMP(a, b, _CMP_UNORD_Q);
    }
    return k != 0;
}

static void FN(fill_ninf)(T *d, nnl_idx n)
{
    const V ninf = V_SET1(-INFINITY);
    nnl_idx j = 0;
    for (; j + VL <= n; j += VL)
        V_STORE(d + j, ninf);
    if (j < n)
        V_MSTORE(d + j, FN(lanes)(n - j), ninf);
}

/* v[c] = max over a < na of r[a*step + c], c < W (na >= 1); the tail is masked: nothing is
 * read past a row's end, nothing written past v[W - 1]. NEW (with NA == 3, plain max): the
 * last NEW taps' rows are read for the first time and tested for NaN on the way (one
 * unordered compare covers two of them); returns whether one holds a NaN. */
NNL_INLINE int FN(vcol_k)(T *v, const T *r, nnl_idx step, nnl_idx na, nnl_idx W,
                          const int exact, const int NA, const int NEW)
{
    const nnl_idx n = NA ? NA : na;
    MASK bad = 0;
    nnl_idx c = 0;
    for (; c + VL <= W; c += VL) {
        if (NEW) {
            const V t0 = V_LOAD(r + c), t1 = V_LOAD(r + step + c), t2 = V_LOAD(r + 2 * step + c);
            bad |= NEW == 1 ? V_CMP(t2, t2, _CMP_UNORD_Q) : V_CMP(t1, t2, _CMP_UNORD_Q);
            if (NEW == 3)
                bad |= V_CMP(t0, t0, _CMP_UNORD_Q);
            V_STORE(v + c, FN(vmax)(FN(vmax)(t0, t1, 0), t2, 0));
            continue;
        }
        V m = V_LOAD(r + c);
        for (nnl_idx a = 1; a < n; a++)
            m = FN(vmax)(m, V_LOAD(r + a * step + c), exact);
        V_STORE(v + c, m);
    }
    if (c < W) {
        const MASK k = FN(lanes)(W - c);
        V m = V_ZLOAD(k, r + c);
        for (nnl_idx a = 1; a < n; a++) {
            const V t = V_ZLOAD(k, r + a * step + c);
            if (NEW && a >= 3 - NEW)
                bad |= V_CMP(t, t, _CMP_UNORD_Q);
            m = FN(vmax)(m, t, exact);
        }
        if (NEW == 3)
            bad |= V_CMP(V_ZLOAD(k, r + c), V_ZLOAD(k, r + c), _CMP_UNORD_Q);
        V_MSTORE(v + c, k, m);
    }
    return bad != 0;
}

/* d[j] = max over b < kw of buf[j*sw + b*dw], j < ow: every read lies in the row buffer
 * (-inf around the image columns), so only the last store is masked */
NNL_INLINE void FN(hrow_k)(const nnl_pool_plan *p, const T *buf, T *d, const int kind,
                           const int exact, const int NK)
{
    const nnl_idx ow = p->ow, dw = p->dw, sw = p->sw, kw = NK ? NK : p->kw;
    const V_IDX gi = V_GIDX(p->gidx);
    (void)gi;
    for (nnl_idx j0 = 0; j0 < ow; j0 += VL) {
        V m;
        if (kind == 1) {
            const T *s = buf + j0;
            m = V_LOAD(s);
            for (nnl_idx b = 1; b < kw; b++)
                m = FN(vmax)(m, V_LOAD(s + b * dw), exact);
        } else if (kind == 2) {
            /* taps b and b + 1 are the even and odd elements of one load pair */
            const T *s = buf + 2 * j0;
            m = V_SET1(-INFINITY);
            for (nnl_idx b = 0; b < kw; b += 2) {
                const V lo = V_LOAD(s + b), hi = V_LOAD(s + b + VL);
                const V e = V_EVEN(lo, hi);
                m = b == 0 ? e : FN(vmax)(m, e, exact);
                if (b + 1 < kw)
                    m = FN(vmax)(m, V_ODD(lo, hi), exact);
            }
        } else if (kind == 3) {
            const T *s = buf + 2 * j0;
            m = V_EVEN(V_LOAD(s), V_LOAD(s + VL));
            for (nnl_idx b = 1; b < kw; b++)
                m = FN(vmax)(m, V_EVEN(V_LOAD(s + b * dw), V_LOAD(s + b * dw + VL)), exact);
        } else {
            const T *s = buf + j0 * sw;
            m = V_GATHER(gi, s);
            for (nnl_idx b = 1; b < kw; b++)
                m = FN(vmax)(m, V_GATHER(gi, s + b * dw), exact);
        }
        if (j0 + VL <= ow)
            V_STORE(d + j0, m);
        else
            V_MSTORE(d + j0, FN(lanes)(ow - j0), m);
    }
}

/* The register path (p->reg): per output row, the vertical max of the row taps stays in
 * registers (masked loads, nothing read past the row) and each column tap of an output vector
 * is one two-source permute of it under the tap's lane mask: no row buffer, no store/reload.
 * reg == 1: the row in v0 (and v1 when TWO). */
/* What both register kernels start with: the column-tap permute tables and masks of the
 * plan (par: each tap's column parity, stride 2 only; may be NULL) ... */
NNL_INLINE void FN(reg_tables)(const nnl_pool_plan *p, nnl_idx kw,
                               __m512i idx[2][NNL_POOL_KREG], MASK km[2][NNL_POOL_KREG],
                               int par[2][NNL_POOL_KREG])
{
    for (nnl_idx o = 0; o < p->nvo; o++) {
        for (nnl_idx b = 0; b < kw; b++) {
            idx[o][b] = _mm512_loadu_si512((const void *)p->ridx[o][b]);
            km[o][b] = (MASK)p->rmask[o][b];
            if (par != NULL)
                par[o][b] = p->rpar[o][b];
        }
    }
}

/* ... and per output row i: the first in-image source row and the number of row taps (*na),
 * or NULL after writing the row's -inf (a window without in-image rows) */
NNL_INLINE const T *FN(reg_row)(const nnl_pool_plan *p, const T *x, nnl_idx xrs, T *yr,
                                nnl_idx i, const MASK kout[2], nnl_idx *na)
{
    nnl_idx a0, a1;
    if (!pool_row_taps(p->H, p->kh, p->dh, i * p->sh - p->pt, &a0, &a1)) {
        const V ninf = V_SET1(-INFINITY);
        for (nnl_idx o = 0; o < p->nvo; o++)
            V_MSTORE(yr + o * VL, kout[o], ninf);
        return NULL;
    }
    *na = a1 - a0;
    return x + (i * p->sh - p->pt + a0 * p->dh) * xrs;
}

NNL_INLINE int FN(plane_reg_k)(const nnl_pool_plan *p, const T *x, nnl_idx xrs, T *y,
                               nnl_idx yrs, const int exact, const int NK, const int TWO)
{
    const nnl_idx W = p->W, oh = p->oh, ow = p->ow, nvo = p->nvo, kw = NK ? NK : p->kw;
    const nnl_idx step = p->dh * xrs;
    __m512i idx[2][NNL_POOL_KREG];
    MASK km[2][NNL_POOL_KREG];
    FN(reg_tables)(p, kw, idx, km, NULL);
    const MASK kin0 = FN(lanes)(nnl_min(W, VL)), kin1 = FN(lanes)(nnl_max(W - VL, 0));
    const MASK kout[2] = {FN(lanes)(nnl_min(ow, VL)), FN(lanes)(nnl_max(ow - VL, 0))};
    const V ninf = V_SET1(-INFINITY);
    MASK bad = 0;
    for (nnl_idx i = 0; i < oh; i++) {
        T *yr = y + i * yrs;
        nnl_idx na;
        const T *r = FN(reg_row)(p, x, xrs, yr, i, kout, &na);
        if (r == NULL)
            continue;
        V v0 = V_ZLOAD(kin0, r), v1 = TWO ? V_ZLOAD(kin1, r + VL) : v0;
        if (!exact)   /* one unordered compare tests both vectors for NaN */
            bad |= V_CMP(v0, v1, _CMP_UNORD_Q);
        for (nnl_idx a = 1; a < na; a++) {
            const V t0 = V_ZLOAD(kin0, r + a * step);
            const V t1 = TWO ? V_ZLOAD(kin1, r + a * step + VL) : t0;
            if (!exact)
                bad |= V_CMP(t0, t1, _CMP_UNORD_Q);
            v0 = FN(vmax)(v0, t0, exact);
            if (TWO)
                v1 = FN(vmax)(v1, t1, exact);
        }
        for (nnl_idx o = 0; o < nvo; o++) {
            V m = ninf;
            for (nnl_idx b = 0; b < kw; b++)
                m = FN(kmax)(m, km[o][b], V_PERM2(v0, idx[o][b], v1), exact);
            V_MSTORE(yr + o * VL, kout[o], m);
        }
    }
    return bad != 0;
}

/* reg == 2 (stride 2): the row in v0 .. v3, split into its even columns (e0, e1) and odd ones
 * (d0, d1); tap b permutes the pair of its parity */
NNL_INLINE int FN(plane_reg2_k)(const nnl_pool_plan *p, const T *x, nnl_idx xrs, T *y,
                                nnl_idx yrs, const int exact, const int NK)
{
    const nnl_idx W = p->W, oh = p->oh, ow = p->ow, nvo = p->nvo, kw = NK ? NK : p->kw;
    const nnl_idx step = p->dh * xrs;
    __m512i idx[2][NNL_POOL_KREG];
    MASK km[2][NNL_POOL_KREG];
    int par[2][NNL_POOL_KREG];
    FN(reg_tables)(p, kw, idx, km, par);
    MASK kin[4];
    for (nnl_idx q = 0; q < 4; q++)
        kin[q] = FN(lanes)(nnl_min(VL, nnl_max(W - q * VL, 0)));
    const MASK kout[2] = {FN(lanes)(nnl_min(ow, VL)), FN(lanes)(nnl_max(ow - VL, 0))};
    const V ninf = V_SET1(-INFINITY);
    MASK bad = 0;
    for (nnl_idx i = 0; i < oh; i++) {
        T *yr = y + i * yrs;
        nnl_idx na;
        const T *r = FN(reg_row)(p, x, xrs, yr, i, kout, &na);
        if (r == NULL)
            continue;
        V v0 = V_ZLOAD(kin[0], r), v1 = V_ZLOAD(kin[1], r + VL);
        V v2 = V_ZLOAD(kin[2], r + 2 * VL), v3 = V_ZLOAD(kin[3], r + 3 * VL);
        if (!exact)
            bad |= V_CMP(v0, v1, _CMP_UNORD_Q) | V_CMP(v2, v3, _CMP_UNORD_Q);
        for (nnl_idx a = 1; a < na; a++) {
            const T *ra = r + a * step;
            const V t0 = V_ZLOAD(kin[0], ra), t1 = V_ZLOAD(kin[1], ra + VL);
            const V t2 = V_ZLOAD(kin[2], ra + 2 * VL), t3 = V_ZLOAD(kin[3], ra + 3 * VL);
            if (!exact)
                bad |= V_CMP(t0, t1, _CMP_UNORD_Q) | V_CMP(t2, t3, _CMP_UNORD_Q);
            v0 = FN(vmax)(v0, t0, exact);
            v1 = FN(vmax)(v1, t1, exact);
            v2 = FN(vmax)(v2, t2, exact);
            v3 = FN(vmax)(v3, t3, exact);
        }
        const V e0 = V_EVEN(v0, v1), e1 = V_EVEN(v2, v3);
        const V d0 = V_ODD(v0, v1), d1 = V_ODD(v2, v3);
        for (nnl_idx o = 0; o < nvo; o++) {
            V m = ninf;
            for (nnl_idx b = 0; b < kw; b++) {
                const V src = par[o][b] ? V_PERM2(d0, idx[o][b], d1)
                                        : V_PERM2(e0, idx[o][b], e1);
                m = FN(kmax)(m, km[o][b], src, exact);
            }
            V_MSTORE(yr + o * VL, kout[o], m);
        }
    }
    return bad != 0;
}

/* The plane by the register path; without exact, whether a value it read was a NaN (the plain
 * max then may have dropped it: the caller runs the plane again with exact) */
static int FN(plane_reg)(const nnl_pool_plan *p, const T *x, nnl_idx xrs, T *y, nnl_idx yrs,
                         int exact)
{
    if (p->reg == 2) {
        if (exact)
            return FN(plane_reg2_k)(p, x, xrs, y, yrs, 1, 0);
        if (p->kw == 3)
            return FN(plane_reg2_k)(p, x, xrs, y, yrs, 0, 3);
        return FN(plane_reg2_k)(p, x, xrs, y, yrs, 0, 0);
    }
    const int two = p->W > VL;
    if (exact)
        return two ? FN(plane_reg_k)(p, x, xrs, y, yrs, 1, 0, 1)
                   : FN(plane_reg_k)(p, x, xrs, y, yrs, 1, 0, 0);
    if (p->kw == 3)
        return two ? FN(plane_reg_k)(p, x, xrs, y, yrs, 0, 3, 1)
                   : FN(plane_reg_k)(p, x, xrs, y, yrs, 0, 3, 0);
    if (p->kw == 2)
        return two ? FN(plane_reg_k)(p, x, xrs, y, yrs, 0, 2, 1)
                   : FN(plane_reg_k)(p, x, xrs, y, yrs, 0, 2, 0);
    return two ? FN(plane_reg_k)(p, x, xrs, y, yrs, 0, 0, 1)
               : FN(plane_reg_k)(p, x, xrs, y, yrs, 0, 0, 0);
}

#else /* portable C: plain loops, vectorised by the compiler */

NNL_INLINE T FN(smax)(T m, T v, const int exact)
{
    return (exact ? ((v > m) | (v != v)) : (v > m)) ? v : m;
}

static int FN(has_nan)(const T *x, nnl_idx n)
{
    int f = 0;
    for (nnl_idx j = 0; j < n; j++)
        f |= x[j] != x[j];
    return f;
}

static void FN(fill_ninf)(T *d, nnl_idx n)
{
    for (nnl_idx j = 0; j < n; j++)
        d[j] = (T)-INFINITY;
}

/* The NaN test of the NEW last rows is made in the same loop that folds them in (one pass over
 * each row, not a test pass and a max pass). */
NNL_INLINE int FN(vcol_k)(T *restrict v, const T *r, nnl_idx step, nnl_idx na, nnl_idx W,
                          const int exact, const int NA, const int NEW)
{
    const nnl_idx n = NA ? NA : na;
    int nan = 0;
    if (n - NEW <= 0) {
        for (nnl_idx c = 0; c < W; c++) {
            const T x = r[c];
            nan |= x != x;
            v[c] = x;
        }
    } else {
        for (nnl_idx c = 0; c < W; c++)
            v[c] = r[c];
    }
    for (nnl_idx a = 1; a < n; a++) {
        const T *ra = r + a * step;
        if (a >= n - NEW) {
            for (nnl_idx c = 0; c < W; c++) {
                const T x = ra[c];
                nan |= x != x;
                v[c] = FN(smax)(v[c], x, exact);
            }
        } else {
            for (nnl_idx c = 0; c < W; c++)
                v[c] = FN(smax)(v[c], ra[c], exact);
        }
    }
    return nan;
}

NNL_INLINE void FN(hrow_k)(const nnl_pool_plan *p, const T *buf, T *restrict d, const int kind,
                           const int exact, const int NK)
{
    const nnl_idx ow = p->ow, dw = p->dw, kw = NK ? NK : p->kw;
#if defined(__AVX2__)
    if (sizeof(T) == sizeof(float) && kind == 2) {   /* the compiler's strided loops: slow */
        pool_hrow2_avx2((const float *)buf, (float *)d, ow, kw, exact);
        return;
    }
#endif
    const nnl_idx sw = kind == 1 ? 1 : (kind == 2 || kind == 3) ? 2 : p->sw;
    for (nnl_idx j = 0; j < ow; j++)
        d[j] = buf[j * sw];
    for (nnl_idx b = 1; b < kw; b++) {
        const T *s = buf + b * dw;
        for (nnl_idx j = 0; j < ow; j++)
            d[j] = FN(smax)(d[j], s[j * sw], exact);
    }
}

#endif

/* Output rows [i0, OH) on the row buffer path. The vertical pass of a row runs 2 rows ahead of
 * its horizontal pass (NNL_POOL_NROW = 4 rotating row buffers, -inf outside the image
 * columns), so that the horizontal loads never wait on the vertical pass's (masked, unaligned)
 * stores to the same row buffer. Plain max (exact == 0): every image row is tested for NaN
 * by the first output row that reads it (rows 0 .. last row read so far, a superset of the
 * rows read; for 3 contiguous row taps inside the vertical pass, else just before it); at the
 * first NaN the rows before are finished and the output row index is returned, for the caller
 * to go on from there with exact == 1. Returns OH when done. */
NNL_INLINE nnl_idx FN(plane_k)(const nnl_pool_plan *p, const T *x, nnl_idx xrs, T *y,
                               nnl_idx yrs, T *buf, nnl_idx i0, const int kind, const int exact,
                               const int NK)
{
    const nnl_idx H = p->H, W = p->W, kh = p->kh, sh = p->sh, pt = p->pt, dh = p->dh;
    const nnl_idx oh = p->oh, ow = p->ow, pl = p->pl, rl = p->rowlen;
    int have[NNL_POOL_NROW] = {0};
    nnl_idx checked = -1;                             /* rows 0 .. checked hold no NaN */
    for (nnl_idx i = i0; i < oh + 2; i++) {
        if (i < oh) {
            const nnl_idx r0 = i * sh - pt;
            nnl_idx a0, a1;
            have[i % NNL_POOL_NROW] = pool_row_taps(H, kh, dh, r0, &a0, &a1);
            if (a0 < a1) {
                const nnl_idx first = r0 + a0 * dh, last = r0 + (a1 - 1) * dh, na = a1 - a0;
                /* the rows not tested yet: with 3 contiguous row taps (dh == 1) the new ones
                 * are the last 1 .. 3 taps, tested by the vertical pass; else here */
                const nnl_idx fresh = last > checked ? last - nnl_max(checked, first - 1) : 0;
                const int inpass = !exact && na == 3 && dh == 1 && checked >= first - 1;
                int nan = 0;
                if (!exact && last > checked && !inpass) {
                    if (xrs == W)                     /* adjacent rows: one loop */
                        nan = FN(has_nan)(x + (checked + 1) * W, (last - checked) * W);
                    else
                        for (nnl_idx r = checked + 1; r <= last; r++)
                            nan |= FN(has_nan)(x + r * xrs, W);
                }
                checked = nnl_max(checked, last);
                /* long rows (>= 8 cache lines): the rows the next output row reads first,
                 * into the cache meanwhile (measured on 112-wide float64 rows: the stream has
                 * too few loads in flight without; on shorter rows it costs more than it
                 * brings) */
                if (W * (nnl_idx)sizeof(T) >= 512)
                    for (nnl_idx q = last + 1; q <= nnl_min(last + sh, H - 1); q++)
                        for (nnl_idx c = 0; c < W; c += 64 / (nnl_idx)sizeof(T))
                            __builtin_prefetch(x + q * xrs + c);
                /* 1. vertical: the row buffer gets the max over the in-image row taps */
                T *v = buf + (i % NNL_POOL_NROW) * rl + pl;
                const T *r = x + first * xrs;
                if (exact)
                    FN(vcol_k)(v, r, dh * xrs, na, W, 1, 0, 0);
                else if (inpass && fresh == 1)
                    nan |= FN(vcol_k)(v, r, xrs, na, W, 0, 3, 1);
                else if (inpass && fresh == 2)
                    nan |= FN(vcol_k)(v, r, xrs, na, W, 0, 3, 2);
                else if (inpass && fresh == 3)
                    nan |= FN(vcol_k)(v, r, xrs, na, W, 0, 3, 3);
                else if (na == 3)
                    FN(vcol_k)(v, r, dh * xrs, na, W, 0, 3, 0);
                else if (na == 2)
                    FN(vcol_k)(v, r, dh * xrs, na, W, 0, 2, 0);
                else
                    FN(vcol_k)(v, r, dh * xrs, na, W, 0, 0, 0);
                if (nan) {
                    /* finish the rows before with the plain max, let the caller go on */
                    for (nnl_idx k = nnl_max(i - 2, i0); k < i; k++) {
                        if (have[k % NNL_POOL_NROW])
                            FN(hrow_k)(p, buf + (k % NNL_POOL_NROW) * rl, y + k * yrs, kind, 0,
                                       NK);
                        else
                            FN(fill_ninf)(y + k * yrs, ow);
                    }
                    return i;
                }
            }
        }
        /* 2. horizontal: output row k from its row buffer */
        const nnl_idx k = i - 2;
        if (k >= i0) {
            if (have[k % NNL_POOL_NROW])
                FN(hrow_k)(p, buf + (k % NNL_POOL_NROW) * rl, y + k * yrs, kind, exact, NK);
            else
                FN(fill_ninf)(y + k * yrs, ow);
        }
    }
    return oh;
}

static nnl_idx FN(plane_buf)(const nnl_pool_plan *p, const T *x, nnl_idx xrs, T *y, nnl_idx yrs,
                             T *buf, nnl_idx i0, int exact)
{
    const int kind = p->sw == 1 ? 1 : p->sw == 2 ? (p->dw == 1 ? 2 : 3) : 0;
    const nnl_idx kw = p->kw;
    if (exact) {
        if (kind == 1)
            return FN(plane_k)(p, x, xrs, y, yrs, buf, i0, 1, 1, 0);
        if (kind == 2)
            return FN(plane_k)(p, x, xrs, y, yrs, buf, i0, 2, 1, 0);
        if (kind == 3)
            return FN(plane_k)(p, x, xrs, y, yrs, buf, i0, 3, 1, 0);
        return FN(plane_k)(p, x, xrs, y, yrs, buf, i0, 0, 1, 0);
    }
    if (kind == 1 && kw == 3)
        return FN(plane_k)(p, x, xrs, y, yrs, buf, i0, 1, 0, 3);
    if (kind == 1 && kw == 2)
        return FN(plane_k)(p, x, xrs, y, yrs, buf, i0, 1, 0, 2);
    if (kind == 1)
        return FN(plane_k)(p, x, xrs, y, yrs, buf, i0, 1, 0, 0);
    if (kind == 2 && kw == 3)
        return FN(plane_k)(p, x, xrs, y, yrs, buf, i0, 2, 0, 3);
    if (kind == 2 && kw == 2)
        return FN(plane_k)(p, x, xrs, y, yrs, buf, i0, 2, 0, 2);
    if (kind == 2)
        return FN(plane_k)(p, x, xrs, y, yrs, buf, i0, 2, 0, 0);
    if (kind == 3)
        return FN(plane_k)(p, x, xrs, y, yrs, buf, i0, 3, 0, 0);
    return FN(plane_k)(p, x, xrs, y, yrs, buf, i0, 0, 0, 0);
}

void FN(nnl_maxpool_plane)(const nnl_pool_plan *p, const T *x, nnl_idx xrs, T *y, nnl_idx yrs,
                           T *buf)
{
#if defined(__AVX512F__)
    if (p->reg) {
        /* the plain max, every value read tested for NaN on the way (no pass of its own: that
         * took as long as the pooling, 192 planes 56x56 3x3/2, Intel Emerald Rapids); a plane
         * that read one (rare) runs again with the exact select everywhere */
        if (FN(plane_reg)(p, x, xrs, y, yrs, 0))
            FN(plane_reg)(p, x, xrs, y, yrs, 1);
        return;
    }
#endif
    const nnl_idx i = FN(plane_buf)(p, x, xrs, y, yrs, buf, 0, 0);
    if (i < p->oh)
        FN(plane_buf)(p, x, xrs, y, yrs, buf, i, 1);
}


/* ------------------------------------------------------------------ with indices
 * y[i, j] and idx[i, j] = the flat index h*W + w of the tap that a row-major scan of the window
 * keeps (the first maximum; every NaN replaces, so the last NaN), -1 for a window without an
 * in-image tap. Separable like the value path: per output row, the vertical pass keeps per image
 * column c the value and flat index of its row taps' winner (first max, last NaN: a strict > or
 * a NaN replaces), then the horizontal pass combines the column winners of each window in the
 * order of a row-major scan, which is the order of the flat indices: a larger value, an equal
 * value at a smaller index, or a NaN at a larger index (or over a non-NaN) replaces. vb and ib
 * hold W elements. Column taps outside the image are skipped (nnl_col_range), so the plan's row
 * buffer limit does not apply here. */
void FN(nnl_maxpool_plane_idx)(const nnl_pool_plan *p, const T *x, nnl_idx xrs, T *y,
                               nnl_idx yrs, int64_t *idx, nnl_idx irs, T *restrict vb,
                               int64_t *restrict ib)
{
    const nnl_idx H = p->H, W = p->W, kh = p->kh, kw = p->kw, sh = p->sh, sw = p->sw;
    const nnl_idx pt = p->pt, pl = p->pl, dh = p->dh, dw = p->dw, oh = p->oh, ow = p->ow;
    /* the column taps that reach the image for some output column: [b0, b1) */
    const nnl_idx span = (ow - 1) * sw;
    const nnl_idx b0 = nnl_ceil_pos(pl - span, dw);
    const nnl_idx b1 = nnl_min(kw, (W - 1 + pl) / dw + 1);
    for (nnl_idx i = 0; i < oh; i++) {
        T *restrict yr = y + i * yrs;
        int64_t *restrict ir = idx + i * irs;
        const nnl_idx r0 = i * sh - pt;
        nnl_idx a0, a1;
        if (!pool_row_taps(H, kh, dh, r0, &a0, &a1)) {
            for (nnl_idx j = 0; j < ow; j++) {
                yr[j] = (T)-INFINITY;
                ir[j] = -1;
            }
            continue;
        }
        const nnl_idx first = r0 + a0 * dh;
        const T *r = x + first * xrs;
        const int64_t base = (int64_t)first * W;
        for (nnl_idx c = 0; c < W; c++) {
            vb[c] = r[c];
            ib[c] = base + c;
        }
        for (nnl_idx a = 1; a < a1 - a0; a++) {
            const T *ra = r + a * dh * xrs;
            const int64_t rb = base + (int64_t)(a * dh) * W;
            for (nnl_idx c = 0; c < W; c++) {
                const T v = ra[c], m = vb[c];
                const int t = (v > m) | (v != v);
                vb[c] = t ? v : m;
                ib[c] = t ? rb + c : ib[c];
            }
        }
        for (nnl_idx j = 0; j < ow; j++) {
            yr[j] = (T)-INFINITY;
            ir[j] = INT64_MAX;          /* no tap yet: any tap replaces it */
        }
        for (nnl_idx b = b0; b < b1; b++) {
            const nnl_idx off = b * dw - pl;
            nnl_idx j0, j1;
            nnl_col_range(off, W, sw, ow, &j0, &j1);
            for (nnl_idx j = j0; j < j1; j++) {
                const nnl_idx c = j * sw + off;
                const T v = vb[c], m = yr[j];
                const int64_t iv = ib[c], im = ir[j];
                const int t = (v > m) | ((v == m) & (iv < im)) |
                              ((v != v) & ((m == m) | (iv > im)));
                yr[j] = t ? v : m;
                ir[j] = t ? iv : im;
            }
        }
        for (nnl_idx j = 0; j < ow; j++)
            ir[j] = ir[j] == INT64_MAX ? -1 : ir[j];
    }
}


/* ------------------------------------------------------------------ grid path, indices
 * The same result as nnl_maxpool_plane_idx (first maximum of a row-major scan, a NaN always
 * taken so the last NaN wins, -inf and index -1 for a window without an in-image tap) on the
 * grid plan of pool_max.h (nnl_pool_grid_init): the plane is copied into xp, the padded plane
 * with -inf around the image (filled once by the caller; only image pixels are rewritten per
 * plane) split into its stride phases, so that tap t of every output is xp + off[t] from the
 * output's grid position q. The positions are computed a vector at a time: one unmasked load
 * per tap, whose flat index is base[q] + toff[t]; the taps run in row-major window order on a
 * value and an index vector held in registers (4 position vectors at a time, as each tap's
 * compare and select wait on the previous tap's); a tap replaces the running maximum when it
 * is greater or NaN (exact: only planes holding a NaN, found while copying, test for it). The
 * index starts at init[q], the window's first in-image tap (-1 when none), the value at -inf:
 * a window of -inf pixels keeps its first tap, and padding (-inf in xp) never replaces. The
 * positions past a row's last output (j >= OW: (KW - 1)*DW / SW per row) are computed and
 * dropped: omask's bits select the outputs, packed in row-major order (compress) into yo and
 * io, the plane's OH*OW outputs (the caller copies them out when y or idx have other row
 * strides). */
#if defined(__AVX512F__)

/* the output bits of positions q .. q + VL - 1 */
NNL_INLINE MASK FN(gmask)(const uint8_t *omask, nnl_idx q)
{
    uint32_t w;
    memcpy(&w, omask + (q >> 3), sizeof w);
    return (MASK)(w >> (q & 7));
}

/* U position vectors from q on */
NNL_INLINE void FN(grid_blk)(const nnl_pool_grid *g, const T *xp, nnl_idx q, T *yo,
                             int64_t *io, nnl_idx *n, const int exact, const int NT,
                             const int U)
{
    const nnl_idx nt = NT ? NT : g->ntap;
    V m[4];
    V_I id[4], b[4];
    for (int u = 0; u < U; u++) {
        m[u] = V_SET1(-INFINITY);
        id[u] = V_ILOAD(g->init + q + u * VL);
        b[u] = V_ILOAD(g->base + q + u * VL);
    }
    for (nnl_idx t = 0; t < nt; t++) {
        const T *s = xp + q + g->off[t];
        const int32_t to = g->toff[t];
        for (int u = 0; u < U; u++) {
            const V v = V_LOAD(s + u * VL);
            MASK k = V_CMP(v, m[u], _CMP_GT_OQ);
            if (exact)
                k = (MASK)(k | V_CMP(v, v, _CMP_UNORD_Q));
            m[u] = V_BLEND(k, m[u], v);
            id[u] = V_IMADD(id[u], k, b[u], to);
        }
    }
    for (int u = 0; u < U; u++) {
        const MASK ko = FN(gmask)(g->omask, q + u * VL);
        const nnl_idx c = __builtin_popcount((unsigned)ko);
        V_MSTORE(yo + *n, FN(lanes)(c), V_COMPRESS(ko, m[u]));
        V_ISTORE(io + *n, c, V_ICOMPRESS(ko, id[u]));
        *n += c;
    }
}

/* copies the plane's image pixels into xp (stride 2 across: split into even and odd columns,
 * a permute pair per 2 vectors); returns whether one is NaN */
static int FN(grid_copy)(const nnl_pool_grid *g, const T *x, nnl_idx xrs, T *xp)
{
    const nnl_idx sh = g->sh, sw = g->sw, pl = g->pl, wn = g->wn, Wq = g->Wq;
    const nnl_idx S = g->Hq * Wq;
    MASK bad = 0;
    int nan = 0;
    for (nnl_idx h = 0; h < g->hn; h++) {
        const T *r = x + h * xrs;
        const nnl_idx rp = h + g->pt;
        T *d = xp + (rp % sh) * S + (rp / sh) * Wq;   /* column phase 0 */
        if (sw == 1) {
            for (nnl_idx c = 0; c < wn; c += VL) {
                const MASK k = FN(lanes)(nnl_min(VL, wn - c));
                const V v = V_ZLOAD(k, r + c);
                bad |= V_CMP(v, v, _CMP_UNORD_Q);
                V_MSTORE(d + pl + c, k, v);
            }
        } else if (sw == 2) {
            /* x[w] goes to padded column w + pl: x's even columns to phase pl & 1 */
            T *de = d + (pl & 1) * sh * S + pl / 2;
            T *dd = d + ((pl + 1) & 1) * sh * S + (pl + 1) / 2;
            for (nnl_idx c = 0; c < wn; c += 2 * VL) {
                const nnl_idx k = nnl_min(2 * VL, wn - c);
                const V lo = V_ZLOAD(FN(lanes)(nnl_min(VL, k)), r + c);
                const V hi = k > VL ? V_ZLOAD(FN(lanes)(k - VL), r + c + VL) : V_SET1(0);
                bad |= V_CMP(lo, hi, _CMP_UNORD_Q);
                V_MSTORE(de + c / 2, FN(lanes)((k + 1) / 2), V_EVEN(lo, hi));
                V_MSTORE(dd + c / 2, FN(lanes)(k / 2), V_ODD(lo, hi));
            }
        } else {
            for (nnl_idx w = 0; w < wn; w++) {
                const nnl_idx c = w + pl;
                nan |= r[w] != r[w];
                d[(c % sw) * sh * S + c / sw] = r[w];
            }
        }
    }
    return bad != 0 || nan;
}

NNL_INLINE void FN(grid_k)(const nnl_pool_grid *g, const T *xp, T *yo, int64_t *io,
                           const int exact, const int NT)
{
    nnl_idx q = 0, n = 0;
    for (; q + 4 * VL <= g->Q; q += 4 * VL)
        FN(grid_blk)(g, xp, q, yo, io, &n, exact, NT, 4);
    for (; q < g->Q; q += VL)
        FN(grid_blk)(g, xp, q, yo, io, &n, exact, NT, 1);
}

#else

static int FN(grid_copy)(const nnl_pool_grid *g, const T *x, nnl_idx xrs, T *xp)
{
    const nnl_idx sh = g->sh, sw = g->sw, pl = g->pl, Wq = g->Wq, S = g->Hq * Wq;
    int bad = 0;
    for (nnl_idx h = 0; h < g->hn; h++) {
        const T *r = x + h * xrs;
        const nnl_idx rp = h + g->pt;
        T *d = xp + (rp % sh) * S + (rp / sh) * Wq;
        for (nnl_idx w = 0; w < g->wn; w++) {
            const nnl_idx c = w + pl;
            bad |= r[w] != r[w];
            d[(c % sw) * sh * S + c / sw] = r[w];
        }
    }
    return bad;
}

/* 16 positions at a time in local arrays, which the compiler vectorises */
NNL_INLINE void FN(grid_k)(const nnl_pool_grid *g, const T *xp, T *yo, int64_t *io,
                           const int exact, const int NT)
{
    const nnl_idx nt = NT ? NT : g->ntap;
    nnl_idx n = 0;
    for (nnl_idx q = 0; q < g->Q; q += 16) {
        T m[16];
        int32_t id[16];
        const int32_t *restrict b = g->base + q;
        for (int l = 0; l < 16; l++) {
            m[l] = (T)-INFINITY;
            id[l] = g->init[q + l];
        }
        for (nnl_idx t = 0; t < nt; t++) {
            const T *restrict src = xp + q + g->off[t];
            const int32_t to = g->toff[t];
            for (int l = 0; l < 16; l++) {
                const T v = src[l];
                const int k = (v > m[l]) | (exact & (v != v));
                m[l] = k ? v : m[l];
                id[l] = k ? b[l] + to : id[l];
            }
        }
        for (int l = 0; l < 16; l++) {
            if ((g->omask[(q + l) >> 3] >> ((q + l) & 7)) & 1) {
                yo[n] = m[l];
                io[n] = id[l];
                n++;
            }
        }
    }
}

#endif

#if defined(__AVX512F__)

/* ------------------------------------------------------------------ small planes
 * The small path (pool_max.h, nnl_pool_small): the work items are the (plane, vector) pairs
 * of a block of planes, U = 4 at a time (each tap's compare and select wait on the previous
 * tap's: 4 independent chains keep the vector units busy, also when a plane is one vector).
 * With indices the taps run in row-major window order, a tap replacing the running maximum
 * when greater (or NaN, exact): the first maximum, the last NaN, as nnl_maxpool_plane_idx;
 * the index starts at the first in-image tap (init), so a window of -inf keeps it, and -1
 * stays when no tap is in the image. Without indices the taps run in column-major order with
 * the plain max, which keeps the first of equal taps in that order: the order of the
 * separable vertical-then-horizontal kernels above, so -0/+0 and NaN payloads come out the
 * same. exact (a plane of the block holds a NaN): the NaN-propagating select. The kept
 * positions (keep) are packed in row-major order into the plane's outputs at opos. */
NNL_INLINE void FN(small_grp)(const nnl_pool_small *s, const T *const *xb, T *const *yb,
                              int64_t *const *ib, const nnl_idx *vi, const int *order,
                              const int exact, const int NT, const int U, const int IDX)
{
    const nnl_idx nt = NT ? NT : s->ntap, ntap = NT ? NT : s->ntap;
    V m[4];
    V_I id[4], qv[4];
    const T *src[4];
    const uint16_t *kr[4];
    for (int u = 0; u < U; u++) {
        m[u] = V_SET1(-INFINITY);
        src[u] = xb[u] + vi[u] * VL;
        kr[u] = s->km + vi[u] * ntap;
        if (IDX) {
            id[u] = V_ILOAD(s->init + vi[u] * VL);
            qv[u] = V_ILOAD(s->qpos + vi[u] * VL);
        }
    }
#pragma GCC unroll 9
    for (nnl_idx tt = 0; tt < nt; tt++) {
        const nnl_idx t = IDX ? tt : order[tt];
        const int32_t o = s->off[t];
        for (int u = 0; u < U; u++) {
            const MASK k = (MASK)kr[u][t];
            const V v = V_ZLOAD(k, src[u] + o);
            if (IDX) {
                MASK c = V_MASK_CMP(k, v, m[u], _CMP_GT_OQ);
                if (exact)
                    c = (MASK)(c | V_MASK_CMP(k, v, v, _CMP_UNORD_Q));
                m[u] = V_BLEND(c, m[u], v);
                id[u] = V_IMADD(id[u], c, qv[u], o);
            } else {
                m[u] = FN(kmax)(m[u], k, v, exact);
            }
        }
    }
    for (int u = 0; u < U; u++) {
        const MASK ko = (MASK)s->keep[vi[u]];
        const nnl_idx c = __builtin_popcount((unsigned)ko), at = s->opos[vi[u]];
        V_MSTORE(yb[u] + at, FN(lanes)(c), V_COMPRESS(ko, m[u]));
        if (IDX)
            V_ISTORE(ib[u] + at, c, V_ICOMPRESS(ko, id[u]));
    }
}

/* the n items of a block: item k is vector k % nv of the block's plane k / nv */
NNL_INLINE void FN(small_items)(const nnl_pool_small *s, const T *const *xs, T *const *ys,
                                int64_t *const *is, nnl_idx n, const int *order,
                                const int exact, const int NT, const int IDX)
{
    const nnl_idx nv = s->nv;
    nnl_idx k = 0;
    for (; k + 4 <= n; k += 4) {
        const T *xb[4];
        T *yb[4];
        int64_t *ib[4];
        nnl_idx vi[4];
        for (int u = 0; u < 4; u++) {
            const nnl_idx pl = (k + u) / nv;
            xb[u] = xs[pl]; yb[u] = ys[pl]; ib[u] = IDX ? is[pl] : NULL;
            vi[u] = (k + u) % nv;
        }
        FN(small_grp)(s, xb, yb, ib, vi, order, exact, NT, 4, IDX);
    }
    for (; k < n; k++) {
        const nnl_idx pl = k / nv, vi = k % nv;
        int64_t *ib = IDX ? is[pl] : NULL;
        FN(small_grp)(s, &xs[pl], &ys[pl], &ib, &vi, order, exact, NT, 1, IDX);
    }
}

/* small_items with its compile-time arguments: the NaN-exact order, or the plain max with the
 * tap count as a constant for the 3x3 and 2x2 windows; ``want`` (indices) a constant at both
 * call sites, so each of the eight variants is specialised once */
NNL_INLINE void FN(small_dispatch)(const nnl_pool_small *s, const T *const *xb, T *const *yb,
                                   int64_t *const *ib, nnl_idx n, const int *order, int exact,
                                   const int want)
{
    if (exact)
        FN(small_items)(s, xb, yb, ib, n, order, 1, 0, want);
    else if (s->ntap == 9)
        FN(small_items)(s, xb, yb, ib, n, order, 0, 9, want);
    else if (s->ntap == 4)
        FN(small_items)(s, xb, yb, ib, n, order, 0, 4, want);
    else
        FN(small_items)(s, xb, yb, ib, n, order, 0, 0, want);
}

void FN(nnl_maxpool_planes_small)(const nnl_pool_small *s, const T *x, const nnl_idx *xs,
                                  T *y, const nnl_idx *ys_, int64_t *idx, const nnl_idx *is_,
                                  nnl_idx C, nnl_idx p0, nnl_idx p1)
{
    const nnl_idx nv = s->nv, HW = s->H * s->W;
    const nnl_idx nb = nv >= 4 ? 1 : (4 + nv - 1) / nv;      /* planes per block (<= 4) */
    int order[NNL_POOL_SMALL_T];                             /* column-major tap order */
    for (nnl_idx b = 0, tt = 0; b < s->kw; b++)
        for (nnl_idx a = 0; a < s->kh; a++)
            order[tt++] = (int)(a * s->kw + b);
    for (nnl_idx pb = p0; pb < p1; pb += nb) {
        const nnl_idx pe = nnl_min(pb + nb, p1);
        const T *xb[4];
        T *yb[4];
        int64_t *ib[4];
        int exact = 0;
        for (nnl_idx p = pb; p < pe; p++) {
            const nnl_idx n = p / C, c = p % C;
            xb[p - pb] = x + n * xs[0] + c * xs[1];
            yb[p - pb] = y + n * ys_[0] + c * ys_[1];
            ib[p - pb] = idx != NULL ? idx + n * is_[0] + c * is_[1] : NULL;
            exact |= FN(has_nan)(xb[p - pb], HW);
        }
        const nnl_idx n = (pe - pb) * nv;
        if (idx == NULL)
            FN(small_dispatch)(s, xb, yb, ib, n, order, exact, 0);
        else
            FN(small_dispatch)(s, xb, yb, ib, n, order, exact, 1);
    }
}

#endif

static void FN(grid_plane)(const nnl_pool_grid *g, const T *xp, int exact, T *y, nnl_idx yrs,
                          int64_t *idx, nnl_idx irs, T *ys, int64_t *is)
{
    const nnl_idx oh = g->oh, ow = g->ow;
    const int packed = (oh == 1 || (yrs == ow && irs == ow));
    T *yo = packed ? y : ys;
    int64_t *io = packed ? idx : is;
    if (exact)
        FN(grid_k)(g, xp, yo, io, 1, 0);
    else if (g->ntap == 9)
        FN(grid_k)(g, xp, yo, io, 0, 9);
    else if (g->ntap == 4)
        FN(grid_k)(g, xp, yo, io, 0, 4);
    else
        FN(grid_k)(g, xp, yo, io, 0, 0);
    if (!packed) {
        for (nnl_idx i = 0; i < oh; i++) {
            memcpy(y + i * yrs, ys + i * ow, (size_t)ow * sizeof(T));
            memcpy(idx + i * irs, is + i * ow, (size_t)ow * sizeof(int64_t));
        }
    }
}

/* Planes p0 .. p1 - 1 of x (plane p = (n, c) = (p / C, p % C), at x + n*xs[0] + c*xs[1],
 * rows xs[2] apart; y and idx likewise with ys_, is_). The planes rotate through the nb
 * (2 .. 4) parts of xp, and plane p + nb - 1 is copied before plane p is computed: a load of
 * xp cannot be forwarded from the copy's (masked) stores, so right after the copy it would
 * wait for them to retire, that is for everything before (small planes need the distance of
 * several planes). */
void FN(nnl_maxpool_planes_grid)(const nnl_pool_grid *g, const T *x, const nnl_idx *xs,
                                 T *y, const nnl_idx *ys_, int64_t *idx, const nnl_idx *is_,
                                 nnl_idx C, nnl_idx p0, nnl_idx p1, T *xp, int nb, T *ys,
                                 int64_t *is)
{
    int exact[4];
    nb = nb < 2 ? 2 : nb > 4 ? 4 : nb;
    for (nnl_idx p = p0; p < p1 + nb - 1; p++) {      /* copies plane p, computes pc */
        if (p < p1)
            exact[p % nb] = FN(grid_copy)(g, x + (p / C) * xs[0] + (p % C) * xs[1], xs[2],
                                          xp + (p % nb) * g->xpn);
        const nnl_idx pc = p - (nb - 1);
        if (pc >= p0)
            FN(grid_plane)(g, xp + (pc % nb) * g->xpn, exact[pc % nb],
                           y + (pc / C) * ys_[0] + (pc % C) * ys_[1], ys_[2],
                           idx + (pc / C) * is_[0] + (pc % C) * is_[1], is_[2], ys, is);
    }
}


/* ------------------------------------------------------------------ backward scatter
 * gx[idx[l]] += gy[l] in the order of l, per plane (pool_max.h): a plain loop on raw
 * pointers, the plane cleared (zero) in cache just before. Measured on one Zen 4 core, it beat
 * summing runs of equal indices (consecutive 3x3/1 outputs often share their maximum) in a
 * register, with a branch or with a dummy store, on every shape of benchmarks/bench_pool.py
 * --indices but one (3x3/1 on 4x4 planes, by 15%), and those were 1.5-3x slower than the
 * plain loop on 28x28 and 112x112 planes. */
void FN(nnl_pool_scatter)(const T *gy, const int64_t *idx, T *gx, nnl_idx L, nnl_idx HW,
                          nnl_idx p0, nnl_idx p1, int zero)
{
    for (nnl_idx p = p0; p < p1; p++) {
        const T *g = gy + p * L;
        const int64_t *ip = idx + p * L;
        T *d = gx + p * HW;
        if (zero) {
#if defined(__AVX512F__)
            /* a few stores for a small plane, no call */
            const V z = V_SET1(0);
            nnl_idx c = 0;
            for (; c + VL <= HW; c += VL)
                V_STORE(d + c, z);
            if (c < HW)
                V_MSTORE(d + c, FN(lanes)(HW - c), z);
#else
            memset(d, 0, (size_t)HW * sizeof(T));
#endif
        }
        for (nnl_idx l = 0; l < L; l++) {
            const int64_t a = ip[l];
            if ((uint64_t)a < (uint64_t)HW)     /* not -1 (a window without in-image taps) */
                d[a] += g[l];
        }
    }
}
