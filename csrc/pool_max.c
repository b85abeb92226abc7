/* Max pooling of one plane for nnlite._pool (see pool_max.h for the contract), with or
 * without the indices of the maxima (the indices path is at the end of pool_max_tmpl.h).
 *
 * Separable, vertical first: for each output row i, the max over its in-image row taps
 * (x rows i*SH - PT + a*DH, contiguous loads, no shuffles) gives one row v; the output row is
 * then y[i, j] = max over the column taps b of v[j*SW - PL + b*DW] (-inf outside the image).
 *
 * Two ways to run the second step (AVX-512 builds; others run the row buffer path with plain
 * loops the compiler vectorises):
 *   - register path (rows of y at most 2 vectors; rows of x at most 2 vectors, or 4 at
 *     stride 2): v stays in registers and each column tap of an output vector is one
 *     two-source permute (vpermt2ps/pd) with precomputed indices and lane mask. At stride 2
 *     the 4 vectors are first split into even and odd columns. No buffer, no border loop.
 *   - row buffer path: v is stored into a row buffer that holds -inf around the image columns
 *     (filled once by the caller), so the column taps are unmasked loads: stride 1 a load per
 *     tap, stride 2 a load pair and one permute per tap pair (taps b, b + 1 are the even and
 *     odd elements of the same pair when DW == 1), larger strides a gather. 4 row buffers
 *     rotate and the vertical pass runs 2 rows ahead, as reloading a row buffer right after
 *     its (masked, unaligned) stores stalls on store forwarding.
 *
 * NaN: the hot loops use the plain max (v > m ? v : m, one vmaxps), which drops a NaN tap, so
 * the values read are tested for NaN in the vertical pass (one unordered compare of two
 * loaded vectors tests both): on the register path every row it loads, after which a plane
 * that read a NaN runs again with the exact select ((v > m) | (v != v) ? v : m: a NaN tap is
 * taken, a NaN max kept); on the row buffer path each row by the first output row that reads
 * it, a NaN switching the plane to the exact select from that output row on. Results are the
 * same for every input whatever the thread count (each plane is computed by one thread, in a
 * fixed order). Equal taps give that value; only which of -0/+0 (or which NaN payload) comes
 * out can differ from a row-major scan: the first in the vertical-then-horizontal order is
 * kept.
 *
 * Memory: every load of x is inside the plane's rows (masked tails), every store into y inside
 * its rows; the row buffer reads stay inside plan.rowlen.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "nnl_core.h"
#include "pool_max.h"

#if defined(__AVX512F__)
#include "nnl_lanes.h"
#elif defined(__AVX2__)
#include <immintrin.h>
#endif

#define NNL_INLINE static inline __attribute__((always_inline))


/* [a0, a1): the row taps a of the output row whose first tap row is r0 (= i*sh - pt) that
 * read rows r0 + a*dh inside [0, H); returns a0 < a1 */
NNL_INLINE int pool_row_taps(nnl_idx H, nnl_idx kh, nnl_idx dh, nnl_idx r0, nnl_idx *a0,
                             nnl_idx *a1)
{
    *a0 = 0;
    *a1 = kh;
    if (r0 < 0 || r0 + (kh - 1) * dh >= H) {
        *a0 = r0 >= 0 ? 0 : nnl_ceil_pos(-r0, dh);
        *a1 = H - r0 > 0 ? nnl_min(kh, nnl_ceil_pos(H - r0, dh)) : 0;
    }
    return *a0 < *a1;
}

int nnl_pool_plan_init(nnl_pool_plan *p, nnl_idx H, nnl_idx W, nnl_idx kh, nnl_idx kw,
                       nnl_idx sh, nnl_idx sw, nnl_idx pt, nnl_idx pl, nnl_idx dh, nnl_idx dw,
                       nnl_idx oh, nnl_idx ow, size_t itemsize)
{
    memset(p, 0, sizeof *p);
    p->H = H; p->W = W; p->kh = kh; p->kw = kw; p->sh = sh; p->sw = sw;
    p->pt = pt; p->pl = pl; p->dh = dh; p->dw = dw; p->oh = oh; p->ow = ow;
    if (oh < 1 || ow < 1)
        return 0;
    /* row buffer: image columns at [pl, pl + W), -inf around; the last vector block of
     * outputs (16 lanes, whatever the dtype) reads below (ceil(ow/16)*16)*sw + (kw-1)*dw + 32 */
    const double blk = (double)nnl_ceil_pos(ow, 16) * 16.0;
    const double need = fmax((double)pl + (double)W,
                             blk * (double)sw + (double)(kw - 1) * (double)dw + 32.0);
    if (need > (double)NNL_POOL_ROW_MAX)
        return 0;
    p->rowlen = (nnl_idx)need;
    p->need = NNL_POOL_NROW * p->rowlen;
    for (int k = 0; k < 16; k++)
        p->gidx[k] = (int32_t)(k * sw);   /* < 16*sw <= rowlen: fits */
#if defined(__AVX512F__)
    const nnl_idx vl = 64 / (nnl_idx)itemsize;
    p->vl = vl;
    p->nvo = nnl_ceil_pos(ow, vl);
    p->reg = 0;
    if (p->nvo <= 2 && kw <= NNL_POOL_KREG)
        p->reg = W <= 2 * vl ? 1 : sw == 2 && W <= 4 * vl ? 2 : 0;
    for (nnl_idx o = 0; p->reg && o < p->nvo; o++) {
        for (nnl_idx b = 0; b < kw; b++) {
            int32_t *i32 = (int32_t *)p->ridx[o][b];
            int64_t *i64 = p->ridx[o][b];
            p->rpar[o][b] = (int)((b * dw - pl) & 1);    /* the parity of every column of tap b */
            for (nnl_idx l = 0; l < vl; l++) {
                const nnl_idx j = o * vl + l, c = j * sw + b * dw - pl;
                const int ok = j < ow && c >= 0 && c < W;
                const nnl_idx at = ok ? (p->reg == 1 ? c : c >> 1) : 0;  /* < 2*vl */
                if (vl == 16)
                    i32[l] = (int32_t)at;
                else
                    i64[l] = at;
                if (ok)
                    p->rmask[o][b] |= 1u << l;
            }
        }
    }
#else
    (void)itemsize;
#endif
    return 1;
}

/* the grid plan (pool_max.h) */
void nnl_pool_grid_init(nnl_pool_grid *g, nnl_idx H, nnl_idx W, nnl_idx kh, nnl_idx kw,
                        nnl_idx sh, nnl_idx sw, nnl_idx pt, nnl_idx pl, nnl_idx dh, nnl_idx dw,
                        nnl_idx oh, nnl_idx ow, int32_t *tab)
{
    const nnl_idx Hp = (oh - 1) * sh + (kh - 1) * dh + 1, Wp = (ow - 1) * sw + (kw - 1) * dw + 1;
    const nnl_idx Hq = nnl_ceil_pos(Hp, sh), Wq = nnl_ceil_pos(Wp, sw), S = Hq * Wq;
    const nnl_idx Q = oh * Wq;
    const nnl_idx Qr = nnl_ceil_pos(Q + 16, 32) * 32;   /* the last vector reads below Q + 16 */
    memset(g, 0, sizeof *g);
    g->oh = oh; g->ow = ow; g->pt = pt; g->pl = pl; g->sh = sh; g->sw = sw;
    g->Hq = Hq; g->Wq = Wq; g->Q = Q;
    g->hn = nnl_max(0, nnl_min(H, Hp - pt));
    g->wn = nnl_max(0, nnl_min(W, Wp - pl));
    g->ntap = kh * kw;
    g->ntab = 2 * g->ntap + 2 * Qr + Qr / 32 + 1;
    nnl_idx offmax = 0;
    for (nnl_idx a = 0; a < kh; a++)
        for (nnl_idx b = 0; b < kw; b++) {
            const nnl_idx o = ((b * dw % sw) * sh + a * dh % sh) * S + (a * dh / sh) * Wq
                              + b * dw / sw;
            offmax = nnl_max(offmax, o);
            if (tab != NULL) {
                tab[a * kw + b] = (int32_t)o;
                tab[g->ntap + a * kw + b] = (int32_t)(a * dh * W + b * dw);
            }
        }
    g->xpn = nnl_max(sh * sw * S, nnl_ceil_pos(Q, 16) * 16 + offmax);
    if (tab == NULL)
        return;
    int32_t *init = tab + 2 * g->ntap, *base = init + Qr;
    uint8_t *omask = (uint8_t *)(base + Qr);
    memset(omask, 0, (size_t)Qr / 8 + 4);
    for (nnl_idx q = 0; q < Qr; q++) {
        const nnl_idx r = (q / Wq) * sh - pt, c = (q % Wq) * sw - pl;  /* the window origin */
        const nnl_idx a0 = r >= 0 ? 0 : nnl_ceil_pos(-r, dh);
        const nnl_idx b0 = c >= 0 ? 0 : nnl_ceil_pos(-c, dw);
        const int in = q < Q && a0 < kh && r + a0 * dh < H && b0 < kw && c + b0 * dw < W;
        base[q] = q < Q ? (int32_t)(r * W + c) : 0;
        init[q] = in ? (int32_t)((r + a0 * dh) * W + c + b0 * dw) : -1;
        if (q < Q && q % Wq < ow)
            omask[q >> 3] |= (uint8_t)(1u << (q & 7));
    }
    g->off = tab; g->toff = tab + g->ntap; g->init = init; g->base = base; g->omask = omask;
}

/* the small-plane plan (pool_max.h) */
int nnl_pool_small_init(nnl_pool_small *s, nnl_idx H, nnl_idx W, nnl_idx kh, nnl_idx kw,
                        nnl_idx sh, nnl_idx sw, nnl_idx pt, nnl_idx pl, nnl_idx dh, nnl_idx dw,
                        nnl_idx oh, nnl_idx ow, size_t itemsize)
{
#if defined(__AVX512F__)
    if (oh < 1 || ow < 1 || H < 1 || W < 1 || sh > 2 || sw > 2 || (ow - 1) * sw >= W ||
        kh * kw > NNL_POOL_SMALL_T || oh > NNL_POOL_SMALL_Q || W > NNL_POOL_SMALL_Q ||
        H > (nnl_idx)(INT32_MAX - 2 * NNL_POOL_SMALL_Q) / W)
        return 0;
    const nnl_idx Q = ((oh - 1) * sh + 1) * W, vl = 64 / (nnl_idx)itemsize;
    if (Q > NNL_POOL_SMALL_Q)
        return 0;
    memset(s, 0, sizeof *s);
    s->H = H; s->W = W; s->kh = kh; s->kw = kw; s->oh = oh; s->ow = ow;
    s->Q = Q;
    s->nv = nnl_ceil_pos(Q, vl);
    s->ntap = kh * kw;
    /* a tap is in the image when its row is (row tap a of virtual row u) and its column is
     * (column tap b of virtual column v): the tables per row and per column, then per tap */
    const nnl_idx U = Q / W, lv = vl == 16 ? 4 : 3;
    uint8_t rok[NNL_POOL_SMALL_T][NNL_POOL_SMALL_Q], cok[NNL_POOL_SMALL_T][NNL_POOL_SMALL_Q];
    nnl_idx fa[NNL_POOL_SMALL_Q], fb[NNL_POOL_SMALL_Q];    /* the first in-image tap, or -1 */
    for (nnl_idx u = 0; u < U; u++) {
        fa[u] = -1;
        for (nnl_idx a = 0; a < kh; a++) {
            const nnl_idx r = u - pt + a * dh;
            rok[a][u] = r >= 0 && r < H;
            if (rok[a][u] && fa[u] < 0)
                fa[u] = a;
        }
    }
    for (nnl_idx v = 0; v < W; v++) {
        fb[v] = -1;
        for (nnl_idx b = 0; b < kw; b++) {
            const nnl_idx c = v - pl + b * dw;
            cok[b][v] = c >= 0 && c < W;
            if (cok[b][v] && fb[v] < 0)
                fb[v] = b;
        }
    }
    for (nnl_idx a = 0; a < kh; a++)
        for (nnl_idx b = 0; b < kw; b++) {
            const nnl_idx t = a * kw + b;
            int any = 0;
            for (nnl_idx u = 0, q = 0; u < U; u++)
                for (nnl_idx v = 0; v < W; v++, q++)
                    if (rok[a][u] & cok[b][v]) {
                        s->km[(q >> lv) * s->ntap + t] |= (uint16_t)(1u << (q & (vl - 1)));
                        any = 1;
                    }
            /* the same for every position: (a*dh - pt)*W + b*dw - pl, in (-Q, H*W + W) when
             * the tap is in the image somewhere (else never read) */
            s->off[t] = any ? (int32_t)((a * dh - pt) * W + b * dw - pl) : 0;
        }
    for (nnl_idx q = 0; q < s->nv * vl; q++)
        s->qpos[q] = (int32_t)q;                   /* init: 0 past Q (memset) */
    for (nnl_idx u = 0, q = 0; u < U; u++)
        for (nnl_idx v = 0; v < W; v++, q++) {
            s->init[q] = fa[u] >= 0 && fb[v] >= 0
                             ? (int32_t)((u - pt + fa[u] * dh) * W + v - pl + fb[v] * dw) : -1;
            if (u % sh == 0 && v % sw == 0 && v / sw < ow)
                s->keep[q >> lv] |= (uint16_t)(1u << (q & (vl - 1)));
        }
    for (nnl_idx vec = 1; vec < s->nv; vec++)
        s->opos[vec] = s->opos[vec - 1] + __builtin_popcount(s->keep[vec - 1]);
    return 1;
#else
    (void)s; (void)H; (void)W; (void)kh; (void)kw; (void)sh; (void)sw; (void)pt; (void)pl;
    (void)dh; (void)dw; (void)oh; (void)ow; (void)itemsize;
    return 0;
#endif
}

#if defined(__AVX512F__)

/* the first n (<= 16) int32 lanes of v as int64 at d */
static inline void nnl_store_i32_as_i64(int64_t *d, nnl_idx n, __m512i v)
{
    const __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v));
    _mm512_mask_storeu_epi64(d, (__mmask8)((1u << nnl_min(n, 8)) - 1u), lo);
    if (n > 8)
        _mm512_mask_storeu_epi64(d + 8, (__mmask8)((1u << (n - 8)) - 1u),
                                 _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1)));
}

#define T float
#define FN(name) name##_s
#define V __m512
#define VL 16
#define MASK __mmask16
#define V_LOAD _mm512_loadu_ps
#define V_ZLOAD _mm512_maskz_loadu_ps
#define V_STORE _mm512_storeu_ps
#define V_MSTORE _mm512_mask_storeu_ps
#define V_SET1 _mm512_set1_ps
#define V_MAX _mm512_max_ps
#define V_CMP _mm512_cmp_ps_mask
#define V_BLEND _mm512_mask_blend_ps
#define V_EVEN(lo, hi) _mm512_permutex2var_ps( \
    lo, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), hi)
#define V_ODD(lo, hi) _mm512_permutex2var_ps( \
    lo, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), hi)
#define V_IDX __m512i
#define V_GIDX(g) _mm512_loadu_si512((const void *)(g))
#define V_GATHER(gi, s) _mm512_i32gather_ps(gi, s, 4)
#define V_PERM2 _mm512_permutex2var_ps
#define V_MASK_MAX _mm512_mask_max_ps
#define V_MASK_CMP _mm512_mask_cmp_ps_mask
#define V_I __m512i
#define V_ILOAD(p) _mm512_loadu_si512((const void *)(p))
#define V_IMADD(id, k, b, t) _mm512_mask_add_epi32(id, k, b, _mm512_set1_epi32(t))
#define V_COMPRESS _mm512_maskz_compress_ps
#define V_ICOMPRESS _mm512_maskz_compress_epi32
#define V_ISTORE nnl_store_i32_as_i64
#include "pool_max_tmpl.h"
#undef V_I
#undef V_ILOAD
#undef V_IMADD
#undef V_COMPRESS
#undef V_ICOMPRESS
#undef V_ISTORE
#undef T
#undef FN
#undef V
#undef VL
#undef MASK
#undef V_LOAD
#undef V_ZLOAD
#undef V_STORE
#undef V_MSTORE
#undef V_SET1
#undef V_MAX
#undef V_CMP
#undef V_BLEND
#undef V_EVEN
#undef V_ODD
#undef V_IDX
#undef V_GIDX
#undef V_GATHER
#undef V_PERM2
#undef V_MASK_MAX
#undef V_MASK_CMP

#define T double
#define FN(name) name##_d
#define V __m512d
#define VL 8
#define MASK __mmask8
#define V_LOAD _mm512_loadu_pd
#define V_ZLOAD _mm512_maskz_loadu_pd
#define V_STORE _mm512_storeu_pd
#define V_MSTORE _mm512_mask_storeu_pd
#define V_SET1 _mm512_set1_pd
#define V_MAX _mm512_max_pd
#define V_CMP _mm512_cmp_pd_mask
#define V_BLEND _mm512_mask_blend_pd
#define V_EVEN(lo, hi) _mm512_permutex2var_pd(lo, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), hi)
#define V_ODD(lo, hi) _mm512_permutex2var_pd(lo, _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15), hi)
#define V_IDX __m256i
#define V_GIDX(g) _mm256_loadu_si256((const __m256i *)(g))
#define V_GATHER(gi, s) _mm512_i32gather_pd(gi, s, 8)
#define V_PERM2 _mm512_permutex2var_pd
#define V_MASK_MAX _mm512_mask_max_pd
#define V_MASK_CMP _mm512_mask_cmp_pd_mask
#define V_I __m512i
#define V_ILOAD(p) _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(p)))
#define V_IMADD(id, k, b, t) _mm512_mask_add_epi64(id, k, b, _mm512_set1_epi64(t))
#define V_COMPRESS _mm512_maskz_compress_pd
#define V_ICOMPRESS _mm512_maskz_compress_epi64
#define V_ISTORE(d, n, v) _mm512_mask_storeu_epi64(d, (__mmask8)((1u << (n)) - 1u), v)
#include "pool_max_tmpl.h"

#else /* portable C */

#if defined(__AVX2__)
/* The row buffer path's stride-2 columns (kind 2: sw == 2, dw == 1) on AVX2, where the
 * compiler's loops over buf[2j + b] gather the even elements one by one: eight outputs at a
 * time, tap b the even elements of the 16 floats at buf + 2j + b (two loads, vshufps and
 * vpermpd), folded in tap order with the plain or the exact max of the loops they replace. The
 * reads stay below 2 * ceil(ow / 8) * 8 + kw + 14 <= plan.rowlen; a last partial block goes
 * through a small buffer, so nothing is written past d[ow - 1]. */
NNL_INLINE __m256 pool_evens8(const float *p)
{
    const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    return _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
}

static void pool_hrow2_avx2(const float *buf, float *d, nnl_idx ow, nnl_idx kw, int exact)
{
    for (nnl_idx j = 0; j < ow; j += 8) {
        const float *s = buf + 2 * j;
        __m256 m = pool_evens8(s);
        for (nnl_idx b = 1; b < kw; b++) {
            const __m256 v = pool_evens8(s + b);
            /* v > m ? v : m (exact: or v is NaN), as FN(smax) */
            if (exact)
                m = _mm256_blendv_ps(m, v, _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ),
                                                        _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
            else
                m = _mm256_max_ps(v, m);
        }
        if (j + 8 <= ow) {
            _mm256_storeu_ps(d + j, m);
        } else {
            float t[8];
            _mm256_storeu_ps(t, m);
            for (nnl_idx k = 0; k < ow - j; k++)
                d[j + k] = t[k];
        }
    }
}
#endif

#define T float
#define FN(name) name##_s
#include "pool_max_tmpl.h"
#undef T
#undef FN

#define T double
#define FN(name) name##_d
#include "pool_max_tmpl.h"

#endif

/* ---- 3x3 stride-1 'same' max pool of packed float planes (pool_max.h, AVX-512 and AVX2
 * builds): GoogLeNet's Inception pool branch, on maps of 7x7 to 28x28 where a row is one or
 * two vectors and the row paths above spend most of their time per row. Here a plane is one
 * flat run of H*W floats, cut into vectors whatever the rows: the vertical maxima of a vector
 * are three masked loads at -W, 0, +W (lanes whose row above or below is outside the plane
 * skip that load), then its left and right neighbours are lane shifts (valignd; AVX2:
 * vperm2f128 and vpalignr) of the vertical maxima of it and of the vectors before and after,
 * taken on the lanes whose column has that neighbour. A plane with a NaN (tested on the
 * centre loads, which read every element once) is done again by the exact loop below, so NaN
 * propagates. */
#if defined(__AVX512F__) || defined(__AVX2__)
int nnl_pool_same3_ok(nnl_idx H, nnl_idx W, nnl_idx kh, nnl_idx kw, nnl_idx sh, nnl_idx sw,
                      nnl_idx pt, nnl_idx pl, nnl_idx dh, nnl_idx dw, nnl_idx oh, nnl_idx ow)
{
    return kh == 3 && kw == 3 && sh == 1 && sw == 1 && dh == 1 && dw == 1 && pt == 1 &&
           pl == 1 && oh == H && ow == W && H >= 1 && W >= 1 && H <= NNL_POOL_SAME3_Q / W;
}

/* NaN-propagating 3x3 'same' max of one plane, element by element, the taps in column-major
 * order (of equal ones the first is kept, as on the vector path) */
static void same3_exact(const float *x, float *y, nnl_idx H, nnl_idx W)
{
    for (nnl_idx i = 0; i < H; i++)
        for (nnl_idx j = 0; j < W; j++) {
            float m = -INFINITY;
            for (nnl_idx c = nnl_max(j - 1, 0); c <= nnl_min(j + 1, W - 1); c++)
                for (nnl_idx r = nnl_max(i - 1, 0); r <= nnl_min(i + 1, H - 1); r++) {
                    const float v = x[r * W + c];
                    if (v != v || m != m)
                        m = m != m ? m : v;
                    else if (v > m)
                        m = v;
                }
            y[i * W + j] = m;
        }
}

#endif

/* Each ISA below defines, for one vector of S3_VL floats (type S3_V) and its lane masks:
 * same3_vertical (the vertical maxima of the vector at q0: its lanes `in`, the plane's, `up` /
 * `down`, those with a row above / below; its centre's NaN lanes added to *nan, of type
 * S3_NAN), same3_left / same3_right (lane k - 1 of cur or lane S3_VL - 1 of prev; lane k + 1
 * of cur or lane 0 of next), same3_hmax (cur with its left and right neighbours folded in on
 * the lanes l / r that have them), same3_store and same3_nan; then runs SAME3_PLANES, the plane
 * loop written once. Of equal taps the first in column-major order is kept, as on the other
 * paths: the max instructions (vmaxps, both widths) return their second operand unless the
 * first is greater (-0 and +0 compare equal). */
#define SAME3_PLANES                                                                          \
    for (nnl_idx p = p0; p < p1; p++) {                                                       \
        const float *xp = x + (p / C) * xs[0] + (p % C) * xs[1];                              \
        float *yp = y + (p / C) * ys[0] + (p % C) * ys[1];                                    \
        S3_NAN nan = {0};                                                                     \
        S3_V prev = {0}, zero = {0};                                                          \
        S3_V cur = same3_vertical(xp, 0, W, m[0][0], m[1][0], m[2][0], &nan);                 \
        for (nnl_idx i = 0; i < nv; i++) {                                                    \
            const nnl_idx j = i + 1;                                                          \
            const S3_V next = j < nv ? same3_vertical(xp, S3_VL * j, W, m[0][j], m[1][j],      \
                                                      m[2][j], &nan)                          \
                                     : zero;                                                  \
            const S3_V out = same3_hmax(cur, same3_left(prev, cur), same3_right(cur, next),   \
                                        m[3][i], m[4][i]);                                    \
            same3_store(yp + S3_VL * i, out, m[0][i], j < nv);                                \
            prev = cur, cur = next;                                                           \
        }                                                                                     \
        if (same3_nan(nan))                                                                   \
            same3_exact(xp, yp, H, W);                                                        \
    }

#if defined(__AVX512F__)
#define S3_V __m512
#define S3_NAN __mmask16
#define S3_VL 16

NNL_INLINE __m512 same3_vertical(const float *x, nnl_idx q0, nnl_idx W, __mmask16 in,
                                 __mmask16 up, __mmask16 down, __mmask16 *nan)
{
    const __m512 c = _mm512_maskz_loadu_ps(in, x + q0);
    *nan |= _mm512_cmp_ps_mask(c, c, _CMP_UNORD_Q);
    const __m512 v = _mm512_mask_max_ps(c, up, c, _mm512_maskz_loadu_ps(up, x + q0 - W));
    return _mm512_mask_max_ps(v, down, _mm512_maskz_loadu_ps(down, x + q0 + W), v);
}

NNL_INLINE __m512 same3_left(__m512 prev, __m512 cur)
{
    return _mm512_castsi512_ps(
        _mm512_alignr_epi32(_mm512_castps_si512(cur), _mm512_castps_si512(prev), 15));
}

NNL_INLINE __m512 same3_right(__m512 cur, __m512 next)
{
    return _mm512_castsi512_ps(
        _mm512_alignr_epi32(_mm512_castps_si512(next), _mm512_castps_si512(cur), 1));
}

NNL_INLINE __m512 same3_hmax(__m512 cur, __m512 lv, __m512 rv, __mmask16 l, __mmask16 r)
{
    const __m512 out = _mm512_mask_max_ps(cur, l, cur, lv);
    return _mm512_mask_max_ps(out, r, rv, out);
}

NNL_INLINE void same3_store(float *y, __m512 v, __mmask16 in, int whole)
{
    (void)whole;
    _mm512_mask_storeu_ps(y, in, v);
}

NNL_INLINE int same3_nan(__mmask16 nan)
{
    return nan != 0;
}

void nnl_maxpool_planes_same3_s(const float *x, const nnl_idx *xs, float *y, const nnl_idx *ys,
                                nnl_idx C, nnl_idx H, nnl_idx W, nnl_idx p0, nnl_idx p1)
{
    const nnl_idx Q = H * W, nv = nnl_ceil_pos(Q, 16);
    /* per vector: its lanes in the plane, those with a row above, below, a column left, right */
    __mmask16 m[5][NNL_POOL_SAME3_Q / 16];
    for (nnl_idx i = 0; i < nv; i++) {
        const nnl_idx q0 = 16 * i;
        unsigned l = 0, r = 0;
        for (nnl_idx k = 0; k < 16 && q0 + k < Q; k++) {
            const nnl_idx col = (q0 + k) % W;
            l |= (unsigned)(col > 0) << k;
            r |= (unsigned)(col < W - 1) << k;
        }
        m[0][i] = nnl_lanes16(0, Q - q0), m[1][i] = nnl_lanes16(W - q0, Q - q0);
        m[2][i] = nnl_lanes16(0, Q - W - q0), m[3][i] = (__mmask16)l, m[4][i] = (__mmask16)r;
    }
    SAME3_PLANES
}
#elif defined(__AVX2__)
/* AVX2: lane masks are vectors (all bits set in a lane that takes part), the masked loads read
 * nothing outside the plane, a masked max is a blend of the max into its first operand, a lane
 * shift across two vectors is a 128-bit lane permute then a byte align. Every vector but a
 * plane's last is whole, so only that one is stored under its mask. */
#define S3_V __m256
#define S3_NAN __m256
#define S3_VL 8

NNL_INLINE __m256 same3_vertical(const float *x, nnl_idx q0, nnl_idx W, __m256i in,
                                 __m256i up, __m256i down, __m256 *nan)
{
    const __m256 c = _mm256_maskload_ps(x + q0, in);
    *nan = _mm256_or_ps(*nan, _mm256_cmp_ps(c, c, _CMP_UNORD_Q));
    const __m256 v = _mm256_blendv_ps(
        c, _mm256_max_ps(c, _mm256_maskload_ps(x + q0 - W, up)), _mm256_castsi256_ps(up));
    return _mm256_blendv_ps(v, _mm256_max_ps(_mm256_maskload_ps(x + q0 + W, down), v),
                            _mm256_castsi256_ps(down));
}

NNL_INLINE __m256 same3_left(__m256 prev, __m256 cur)
{
    const __m256 t = _mm256_permute2f128_ps(prev, cur, 0x21);
    return _mm256_castsi256_ps(
        _mm256_alignr_epi8(_mm256_castps_si256(cur), _mm256_castps_si256(t), 12));
}

NNL_INLINE __m256 same3_right(__m256 cur, __m256 next)
{
    const __m256 t = _mm256_permute2f128_ps(cur, next, 0x21);
    return _mm256_castsi256_ps(
        _mm256_alignr_epi8(_mm256_castps_si256(t), _mm256_castps_si256(cur), 4));
}

NNL_INLINE __m256 same3_hmax(__m256 cur, __m256 lv, __m256 rv, __m256i l, __m256i r)
{
    const __m256 out = _mm256_blendv_ps(cur, _mm256_max_ps(cur, lv), _mm256_castsi256_ps(l));
    return _mm256_blendv_ps(out, _mm256_max_ps(rv, out), _mm256_castsi256_ps(r));
}

NNL_INLINE void same3_store(float *y, __m256 v, __m256i in, int whole)
{
    if (whole)
        _mm256_storeu_ps(y, v);
    else
        _mm256_maskstore_ps(y, in, v);
}

NNL_INLINE int same3_nan(__m256 nan)
{
    return _mm256_movemask_ps(nan) != 0;
}

/* lanes lo <= k < hi of a mask vector */
NNL_INLINE __m256i same3_lanes8(nnl_idx lo, nnl_idx hi)
{
    const __m256i k = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i a = _mm256_set1_epi32((int)nnl_max(-1, nnl_min(lo, 8)));
    const __m256i b = _mm256_set1_epi32((int)nnl_max(-1, nnl_min(hi, 8)));
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(a, k), _mm256_cmpgt_epi32(b, k));
}

void nnl_maxpool_planes_same3_s(const float *x, const nnl_idx *xs, float *y, const nnl_idx *ys,
                                nnl_idx C, nnl_idx H, nnl_idx W, nnl_idx p0, nnl_idx p1)
{
    const nnl_idx Q = H * W, nv = nnl_ceil_pos(Q, 8);
    /* per vector: its lanes in the plane, those with a row above, below, a column left, right
     * (at most 80 KB of stack: NNL_POOL_SAME3_Q elements) */
    __m256i mk[5 * nv], *m[5];
    for (int t = 0; t < 5; t++)
        m[t] = mk + t * nv;
    for (nnl_idx i = 0; i < nv; i++) {
        const nnl_idx q0 = 8 * i;
        int l[8], r[8];
        for (nnl_idx k = 0; k < 8; k++) {
            const nnl_idx col = (q0 + k) % W;
            l[k] = q0 + k < Q && col > 0 ? -1 : 0;
            r[k] = q0 + k < Q && col < W - 1 ? -1 : 0;
        }
        m[0][i] = same3_lanes8(0, Q - q0), m[1][i] = same3_lanes8(W - q0, Q - q0);
        m[2][i] = same3_lanes8(0, Q - W - q0);
        m[3][i] = _mm256_loadu_si256((const __m256i *)l);
        m[4][i] = _mm256_loadu_si256((const __m256i *)r);
    }
    SAME3_PLANES
}
#endif
