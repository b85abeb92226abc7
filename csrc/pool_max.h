/* nnlite._pool max pooling: C interface of csrc/pool_max.c (cdef extern'ed by
 * csrc/pool.pyx).
 *
 *     y[i, j] = max over the in-image taps (a, b) of x[i*SH - PT + a*DH, j*SW - PL + b*DW]
 *
 * per (H, W) plane; -inf when no tap is in the image (padding never wins); NaN propagates (any
 * NaN tap gives NaN). The plan (nnl_pool_plan_init, once per call and dtype) holds what does
 * not depend on the plane. Strides are in elements; rows have unit stride. The caller
 * guarantees that x holds H rows of W elements at row stride xrs, that y holds OH rows of OW at
 * row stride yrs, that buf holds plan.need elements set to -inf before the first plane (the
 * kernel only ever writes the image columns of its row buffers, so one buffer serves any
 * number of planes of one plan), and that every coordinate (OH+1)*SH + (KH-1)*DH + PT (and
 * along W) is below 2**60.
 */
#ifndef NNLITE_POOL_MAX_H
#define NNLITE_POOL_MAX_H

#include <stddef.h>
#include <stdint.h>

#define NNL_POOL_ROW_MAX (1 << 22)  /* row buffer limit in elements (else the row-by-row loop) */
#define NNL_POOL_KREG 8             /* register path: kernels up to this wide */
#define NNL_POOL_NROW 4             /* rotating row buffers */

typedef struct {
    ptrdiff_t H, W, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow;
    /* the row buffer holds image column c at c + pl and -inf elsewhere, so that output
     * column j's tap b reads it at j*sw + b*dw */
    int32_t gidx[16];               /* sw >= 3: lane k reads k*sw (a gather) */
    ptrdiff_t rowlen;               /* elements of one row buffer */
    ptrdiff_t need;                 /* buffer elements per thread: NNL_POOL_NROW row buffers */
    /* register path (AVX-512, OW at most 2 vectors, KW <= NNL_POOL_KREG). reg == 1: W at most
     * 2 vectors, which hold the vertical maxima; lane l of output vector o takes tap b from lane
     * ridx[o][b][l] of them when bit l of rmask[o][b] is set. reg == 2 (SW == 2, W at most 4
     * vectors): the maxima are split into their even and odd columns (2 vectors each) and tap b
     * reads the odd ones when rpar[o][b]. Indices in the dtype's lane width. */
    int reg;
    ptrdiff_t vl, nvo;
    int64_t ridx[2][NNL_POOL_KREG][8];  /* 64 bytes each: 16 int32 or 8 int64 indices */
    uint32_t rmask[2][NNL_POOL_KREG];
    int rpar[2][NNL_POOL_KREG];
} nnl_pool_plan;

/* Fills p for elements of itemsize bytes (4 or 8); returns 1 when the planes can run
 * nnl_maxpool_plane_*, 0 when the geometry needs the caller's row-by-row loop (a row buffer
 * above NNL_POOL_ROW_MAX elements: absurd strides, paddings or dilations along W). */
int nnl_pool_plan_init(nnl_pool_plan *p, ptrdiff_t H, ptrdiff_t W, ptrdiff_t kh, ptrdiff_t kw,
                       ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t dh,
                       ptrdiff_t dw, ptrdiff_t oh, ptrdiff_t ow, size_t itemsize);

void nnl_maxpool_plane_s(const nnl_pool_plan *p, const float *x, ptrdiff_t xrs, float *y,
                         ptrdiff_t yrs, float *buf);
void nnl_maxpool_plane_d(const nnl_pool_plan *p, const double *x, ptrdiff_t xrs, double *y,
                         ptrdiff_t yrs, double *buf);

/* The same with indices (see pool_max_tmpl.h): idx holds OH rows of OW int64 at row stride irs
 * (0: one scratch row reused), vb and ib W elements each (per thread); every coordinate
 * i*SH - PT + (KH-1)*DH (and along W) must fit in 63 bits. Works for any plan geometry, also
 * when nnl_pool_plan_init returned 0. */
void nnl_maxpool_plane_idx_s(const nnl_pool_plan *p, const float *x, ptrdiff_t xrs, float *y,
                             ptrdiff_t yrs, int64_t *idx, ptrdiff_t irs, float *vb, int64_t *ib);
void nnl_maxpool_plane_idx_d(const nnl_pool_plan *p, const double *x, ptrdiff_t xrs, double *y,
                             ptrdiff_t yrs, int64_t *idx, ptrdiff_t irs, double *vb,
                             int64_t *ib);

/* Max pooling with indices on the grid path (pool_max_tmpl.h): the plan of one call.
 * nnl_pool_grid_init with tab NULL sets the sizes ntab and xpn; with tab (ntab int32) it also
 * fills the tables there. xp is the padded plane (Hp, Wp), -inf outside the image, split into
 * SH*SW phase planes of (Hq, Wq) = (ceil(Hp / SH), ceil(Wp / SW)): padded pixel (r, c) sits in
 * phase plane (c % SW)*SH + r % SH at row r / SH, column c / SW. Tap (a, b) of output (i, j) is
 * then at a fixed offset off[t] from the grid position q = i*Wq + j, for every output: the
 * grid is the OH rows of Wq positions (an output where j < OW). The caller keeps H*W below
 * 2**31 and the padded plane small. nnl_maxpool_planes_grid_* run planes p0 .. p1 - 1 of a
 * (N, C, H, W) x (xs: its strides in elements along N, C and H; ys_, is_ those of y and idx).
 * Per thread: xp holds nb*xpn elements set to -inf before the first plane; ys and is hold
 * OH*OW elements (the plane's outputs when y or idx rows are not packed). */
typedef struct {
    ptrdiff_t oh, ow, pt, pl, sh, sw, Hq, Wq, hn, wn;
    ptrdiff_t Q;                    /* grid positions: OH*Wq */
    ptrdiff_t ntap, ntab, xpn;
    const int32_t *off, *toff;      /* per tap: offset in xp, offset of the flat index */
    const int32_t *init, *base;     /* per position: first in-image tap's index, origin's */
    const uint8_t *omask;           /* bit q: position q is an output (4 bytes of slack) */
} nnl_pool_grid;

void nnl_pool_grid_init(nnl_pool_grid *g, ptrdiff_t H, ptrdiff_t W, ptrdiff_t kh, ptrdiff_t kw,
                        ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t dh,
                        ptrdiff_t dw, ptrdiff_t oh, ptrdiff_t ow, int32_t *tab);
void nnl_maxpool_planes_grid_s(const nnl_pool_grid *g, const float *x, const ptrdiff_t *xs,
                               float *y, const ptrdiff_t *ys_, int64_t *idx,
                               const ptrdiff_t *is_, ptrdiff_t C, ptrdiff_t p0, ptrdiff_t p1,
                               float *xp, int nb, float *ys, int64_t *is);
void nnl_maxpool_planes_grid_d(const nnl_pool_grid *g, const double *x, const ptrdiff_t *xs,
                               double *y, const ptrdiff_t *ys_, int64_t *idx,
                               const ptrdiff_t *is_, ptrdiff_t C, ptrdiff_t p0, ptrdiff_t p1,
                               double *xp, int nb, double *ys, int64_t *is);

/* Small planes (pool_max_tmpl.h, AVX-512 builds): the windows are computed on the virtual
 * grid of every stride-1 window origin, flat position q = u*W + v of the plane (origin row
 * u - PT, column v - PL), for q < Q = ((OH - 1)*SH + 1)*W; output (i, j) is position
 * (i*SH, j*SW), the others are computed and dropped (keep). Tap t = a*KW + b of position q
 * reads the plane's element q + off[t], a flat index into the plane (rows packed: x's row
 * stride is W), on the lanes of km[vector*ntap + t] (the taps inside the image), so every
 * tap is one masked load at a constant offset: no copy, no border code. init: the flat index
 * of each position's first in-image tap (-1 when none); qpos[q] = q; opos[vector]: the
 * outputs of the plane before the vector's. nnl_pool_small_init returns 0 (fill nothing
 * else) for the geometries this path does not take: W or H stride above 2, an output column
 * origin past the image ((OW - 1)*SW >= W), more than NNL_POOL_SMALL_T taps or
 * NNL_POOL_SMALL_Q positions, or a build without AVX-512. */
#define NNL_POOL_SMALL_Q 256
#define NNL_POOL_SMALL_T 32
#define NNL_POOL_SMALL_NV (NNL_POOL_SMALL_Q / 8)
typedef struct {
    ptrdiff_t H, W, kh, kw, oh, ow, Q, nv, ntap;
    int32_t off[NNL_POOL_SMALL_T];
    uint16_t km[NNL_POOL_SMALL_NV * NNL_POOL_SMALL_T];
    uint16_t keep[NNL_POOL_SMALL_NV];
    int32_t opos[NNL_POOL_SMALL_NV];
    int32_t init[NNL_POOL_SMALL_Q];
    int32_t qpos[NNL_POOL_SMALL_Q];
} nnl_pool_small;

int nnl_pool_small_init(nnl_pool_small *s, ptrdiff_t H, ptrdiff_t W, ptrdiff_t kh,
                        ptrdiff_t kw, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t pt, ptrdiff_t pl,
                        ptrdiff_t dh, ptrdiff_t dw, ptrdiff_t oh, ptrdiff_t ow, size_t itemsize);
/* 3x3, stride 1, padding 1 on every side ('same') max pool of packed float planes (rows W
 * apart in x and y; xs, ys: the strides along N and C), planes p0 .. p1 - 1 of C per image,
 * at most NNL_POOL_SAME3_Q elements a plane (pool_max.c; AVX-512 and AVX2 builds, else
 * nnl_pool_same3_ok returns 0). The values of nnl_maxpool_plane_s. */
#define NNL_POOL_SAME3_Q 4096
#if defined(__AVX512F__) || defined(__AVX2__)
int nnl_pool_same3_ok(ptrdiff_t H, ptrdiff_t W, ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t sh,
                      ptrdiff_t sw, ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t dh, ptrdiff_t dw,
                      ptrdiff_t oh, ptrdiff_t ow);
void nnl_maxpool_planes_same3_s(const float *x, const ptrdiff_t *xs, float *y,
                                const ptrdiff_t *ys, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                ptrdiff_t p0, ptrdiff_t p1);
#else
#define nnl_pool_same3_ok(H, W, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow) 0
#define nnl_maxpool_planes_same3_s(x, xs, y, ys, C, H, W, p0, p1) ((void)0)
#endif
/* Planes p0 .. p1 - 1 (plane p = (p / C, p % C); xs, ys_, is_: the strides along N and C in
 * elements) of packed planes: x (H, W), y and idx (OH, OW) with rows packed. idx NULL: the
 * values alone (the result of nnl_maxpool_plane_*, bit for bit); else the values and indices
 * of nnl_maxpool_plane_idx_*. */
#if defined(__AVX512F__)
void nnl_maxpool_planes_small_s(const nnl_pool_small *s, const float *x, const ptrdiff_t *xs,
                                float *y, const ptrdiff_t *ys_, int64_t *idx,
                                const ptrdiff_t *is_, ptrdiff_t C, ptrdiff_t p0, ptrdiff_t p1);
void nnl_maxpool_planes_small_d(const nnl_pool_small *s, const double *x, const ptrdiff_t *xs,
                                double *y, const ptrdiff_t *ys_, int64_t *idx,
                                const ptrdiff_t *is_, ptrdiff_t C, ptrdiff_t p0, ptrdiff_t p1);
#else
/* no small path without AVX-512 (nnl_pool_small_init returns 0, so these never run): the
 * names exist for the callers' (unreached) calls */
#define nnl_maxpool_planes_small_s(s, x, xs, y, ys_, idx, is_, C, p0, p1) ((void)0)
#define nnl_maxpool_planes_small_d(s, x, xs, y, ys_, idx, is_, C, p0, p1) ((void)0)
#endif

/* The max pools' backward: gx[p, idx[p, l]] += gy[p, l] in the order of l, for planes
 * p0 .. p1 - 1 of gy and idx (P, L) and gx (P, HW), all packed; an index outside [0, HW)
 * adds nothing. zero: gx's plane is set to 0 first (in cache, just before its scatter). */
void nnl_pool_scatter_s(const float *gy, const int64_t *idx, float *gx, ptrdiff_t L,
                        ptrdiff_t HW, ptrdiff_t p0, ptrdiff_t p1, int zero);
void nnl_pool_scatter_d(const double *gy, const int64_t *idx, double *gx, ptrdiff_t L,
                        ptrdiff_t HW, ptrdiff_t p0, ptrdiff_t p1, int zero);

#endif
