/* Winograd F(m x m, 3 x 3) conv2d driver (see convfast_winograd.h for the contract).
 *
 * The tiles of all images (t = (n*TH + ti)*TW + tj, TH = ceil(OH/m), TW = ceil(OW/m)) are
 * processed in chunks of TB tiles; for each chunk, three phases separated by barriers inside
 * ONE OpenMP parallel region (units handed out dynamically within each phase):
 *
 *   1. input transform   unit = (channel c, LG lane groups of L tiles):
 *                        V[xi][c][t] = (B^T d B)[xi] of the tile's patch of channel c
 *   2. GEMMs             unit = (xi, group g, block of GEMM columns):
 *                        M[xi][g's rows][cols] = U[xi][g] @ V[xi][g's channels][cols]
 *                        (single-thread calls of nnlite's GEMM on U[xi][g] packed once)
 *   3. output transform  unit = (output channel f, LG lane groups):
 *                        y tile = act(A^T M[.][f][t] A + beta * y + bias[f]), the parts of
 *                        the tile inside OH x OW only (edges the tile does not divide)
 *
 * Transforms run L tiles at a time (16 floats / 8 doubles: one AVX-512 vector) with the
 * tile index innermost, so the compiler vectorises the fixed +-1, 2, 4, 5, 8 formulas. With
 * AVX2 (float32) the patches are gathered by masked row loads and register transposes, and
 * the outputs written back by shuffles and masked stores (wino_gather16_s, wino_scatter16_s);
 * otherwise element by element (with a bounds-free fast path for tiles inside the image).
 * V and M are (alpha^2, rows, TB) with each xi's plane an odd number of cache lines long
 * (wino_plane).
 * Chunks: the fewest that keep a chunk's V and M (alpha^2 (C + F) TB elements) in one core's
 * L2 (nnl_cache_sizes; at least one NR panel of tiles), or, when every thread can have whole
 * chunks of at least NNL_WINO_FUSED_MIN_TILES tiles, the next multiple of the team; TB is the
 * tiles over the chunks rounded up to whole cache lines of tiles (the last chunk takes the
 * rest). In the second case each thread runs the three phases on whole chunks with its own V
 * and M ("fused": no barrier, V and M stay in its L2); else each chunk's phases are split
 * across the threads. 2 threads, Intel Xeon (Emerald Rapids), interleaved medians, same bits,
 * against L2-sized chunks of whole NR panels split phase by phase unless every thread had two:
 * ResNet-50's 64-channel 3x3 at 56x56 (196 tiles: 64 + 64 + 64 + 4 fused, was 96 + 96 + 4
 * split) 1.385 -> 1.036 ms, 128 channels at 28x28 (49 tiles: 32 + 17 fused, was 48 + 1 split)
 * 1.132 -> 1.037, 192 at 28x28 2.231 -> 1.972; 256 at 14x14 and 512 at 7x7 (too few tiles:
 * split as before), batch 8 and one thread unchanged; whole models at batch 1: ResNet-50
 * 0.979, GoogLeNet 0.976. Chunkings chosen by a cost model instead (196 tiles as 98 + 98,
 * 49 as 25 + 24) measured the same, 0.99-1.01.
 * Nothing is static; the work memory is the caller's (an inference plan's arena) or one block
 * malloc'd per call and freed before returning.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "convfast_winograd.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef NNL_WINO_LANE_GROUPS
#define NNL_WINO_LANE_GROUPS 4      /* lane groups of L tiles per transform unit */
#endif
#ifndef NNL_WINO_FUSED_MIN_TILES
#define NNL_WINO_FUSED_MIN_TILES 24 /* tiles per chunk at least for the fused mode (16 and 24
                                     * measured alike; 32 leaves 28x28's 25-tile chunks
                                     * phase-split, 4-8% slower there at 96-192 channels) */
#endif
#ifndef NNL_WINO_UNITS_PER_THREAD
#define NNL_WINO_UNITS_PER_THREAD 4 /* GEMM units per thread at least (dynamic scheduling) */
#endif

typedef struct {
    int m, alpha, a2;
    nnl_idx th, tw, tiles;          /* tile grid per image, tiles of all images */
    nnl_idx tb;                     /* tiles per chunk (= leading dimension of V and M) */
    nnl_idx cg, fg, per;            /* group sizes; packed elements of one U[xi][g] */
    nnl_idx vxs, mxs;               /* elements from one xi's plane of V (C x tb) / M (F x
                                     * tb) to the next: an odd number of cache lines */
    nnl_idx ncol;                   /* GEMM columns per phase-2 unit (a multiple of NR) */
    nnl_idx chunks;                 /* ceil(tiles / tb) */
    int fused;                      /* 1: each thread runs whole chunks (private V, M) */
    int nt;
} wino_plan;

static int wino_geom_ok(const nnl_conv_geom *g, int m)
{
    return (m == 2 || m == 4) && g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 &&
           g->dh == 1 && g->dw == 1 && g->n >= 0 && g->c >= 0 && g->f >= 0 && g->g >= 1 &&
           g->c % g->g == 0 && g->f % g->g == 0 && g->pt >= 0 && g->pl >= 0 && g->oh >= 0 &&
           g->ow >= 0 && g->h >= 0 && g->w >= 0;
}

/* Tiles per chunk when `tiles` are cut into `chunks`: the share rounded up to whole cache
 * lines of tiles (`line` elements), so that V and M rows start on lines. */
static nnl_idx wino_chunk_tiles(nnl_idx tiles, nnl_idx chunks, nnl_idx line)
{
    return nnl_cdiv(nnl_cdiv(tiles, chunks), line) * line;
}

/* Elements of one xi's plane of V or M (`elems` of them) rounded up to an odd number of
 * cache lines. A transform unit writes (phase 1) or reads (phase 3) one line in each of the
 * alpha^2 planes; planes a multiple of 4 KB apart (64 channels x 48 tiles of float32: 12 KB)
 * put all 36 of those lines in one set of the L1 cache, which holds 8 to 12 of them, so every
 * access went to the L2. An odd line count spreads the planes over distinct sets. */
static nnl_idx wino_plane(nnl_idx elems, nnl_idx line)
{
    return (nnl_cdiv(elems, line) | 1) * line;
}

static void wino_make_plan(const nnl_conv_geom *g, int m, int elsize, int mr, int nr, int nc,
                           int nthreads, wino_plan *p)
{
    const nnl_cache_info *ci = nnl_cache_sizes();
    p->m = m, p->alpha = m + 2, p->a2 = (m + 2) * (m + 2);
    p->th = nnl_cdiv(g->oh, m), p->tw = nnl_cdiv(g->ow, m);
    p->tiles = g->n * p->th * p->tw;
    p->cg = g->c / g->g, p->fg = g->f / g->g;
    p->per = nnl_cdiv(p->fg, mr) * mr * p->cg;
    int nt = nnl_team_size(nthreads, (double)p->a2 * p->tiles * g->f * p->cg,
                           NNL_MIN_PARALLEL_MACS);
    p->nt = nt;
    /* chunks of at most tmax tiles, whose V and M fit in one core's L2 (at least one NR
     * panel of tiles); TB = the tiles over the chunks, rounded up to whole cache lines (V and
     * M rows start on lines; the last chunk takes the rest) */
    const nnl_idx line = 64 / elsize;
    const double budget = (double)ci->l2;
    const double per_tile = (double)p->a2 * (double)(g->c + g->f) * elsize;
    nnl_idx tmax = per_tile > 0 ? (nnl_idx)(budget / per_tile) : p->tiles;
    tmax = nnl_max(nr, tmax / nr * nr);
    nnl_idx chunks = p->tiles > 0 ? nnl_cdiv(p->tiles, tmax) : 0;
    /* fused: each thread runs whole chunks on its own V and M (no barrier, the data stays in
     * its L2), at least one chunk per thread and a multiple of the team; each thread then reads
     * all of U for every chunk, so a chunk must have NNL_WINO_FUSED_MIN_TILES tiles. Otherwise
     * the three phases of each chunk are split across the threads. */
    p->fused = 1;
    if (nt > 1) {
        const nnl_idx cf = nnl_cdiv(nnl_max(chunks, (nnl_idx)nt), (nnl_idx)nt) * nt;
        const nnl_idx tbf = wino_chunk_tiles(p->tiles, cf, line);
        p->fused = nnl_cdiv(p->tiles, tbf) >= nt &&
                   nnl_cdiv(p->tiles, cf) >= NNL_WINO_FUSED_MIN_TILES;
        if (p->fused)
            chunks = cf;
    }
    nnl_idx tb = chunks > 0 ? wino_chunk_tiles(p->tiles, chunks, line) : 1;
    if (tb > p->tiles)   /* one chunk: no more rows than tiles */
        tb = nnl_max(1, p->tiles);
    p->tb = tb;
    p->vxs = wino_plane(g->c * tb, line);
    p->mxs = wino_plane(g->f * tb, line);
    p->chunks = p->tiles > 0 ? nnl_cdiv(p->tiles, tb) : 0;
    /* GEMM columns per unit: an NC block, narrower (whole NR panels) until every thread has
     * NNL_WINO_UNITS_PER_THREAD units */
    nnl_idx ncol = nnl_max(nr, (nnl_idx)nc / nr * nr);
    const nnl_idx items = (nnl_idx)p->a2 * g->g;
    const nnl_idx want = (nnl_idx)NNL_WINO_UNITS_PER_THREAD * nt;
    if (items * nnl_cdiv(tb, ncol) < want)
        ncol = nnl_max(nr, nnl_cdiv(nnl_cdiv(tb, nnl_cdiv(want, items)), nr) * nr);
    p->ncol = ncol;
}

nnl_idx nnl_wino_packed_elems(int m, nnl_idx f, nnl_idx g, nnl_idx cg, int elsize, int isa)
{
    int mr, nr, mc, kc, nc;
    if ((m != 2 && m != 4) || f < 0 || g < 1 || cg < 0 || f % g)
        return -1;
    if (nnl_gemm_blocking(isa, elsize, &mr, &nr, &mc, &kc, &nc) != NNL_OK)
        return -1;
    return (nnl_idx)(m + 2) * (m + 2) * g * (nnl_cdiv(f / g, mr) * mr * cg);
}

/* The plan of a call (geometry, tile m, elsize-byte elements, GEMM family isa); NNL_EINVAL for
 * a geometry F(m x m, 3 x 3) cannot take or a family/elsize without a micro-kernel. */
static int wino_plan_of(const nnl_conv_geom *geom, int m, int elsize, int nthreads, int isa,
                        wino_plan *p)
{
    int mr, nr, mc, kc, nc;
    if (!wino_geom_ok(geom, m) || (elsize != 4 && elsize != 8) ||
        nnl_gemm_blocking(isa, elsize, &mr, &nr, &mc, &kc, &nc) != NNL_OK)
        return NNL_EINVAL;
    wino_make_plan(geom, m, elsize, mr, nr, nc, nthreads, p);
    return NNL_OK;
}

nnl_idx nnl_conv_winograd_workspace(const nnl_conv_geom *geom, int m, int elsize, int nthreads,
                                    int isa, int packed)
{
    wino_plan p;
    if (wino_plan_of(geom, m, elsize, nthreads, isa, &p) != NNL_OK)
        return -1;
    if (p.tiles == 0 || geom->f == 0)
        return 0;
    nnl_idx elems = (nnl_idx)p.a2 * (p.vxs + p.mxs) * (p.fused ? p.nt : 1);
    if (!packed)
        elems += (nnl_idx)p.a2 * geom->g * p.per;
    return elems * elsize;
}

int nnl_conv_winograd_cost(const nnl_conv_geom *geom, int m, int elsize, int nthreads, int isa,
                           nnl_idx *cols, nnl_idx *u_reads)
{
    wino_plan p;
    if (wino_plan_of(geom, m, elsize, nthreads, isa, &p) != NNL_OK)
        return NNL_EINVAL;
    *cols = *u_reads = 0;
    if (p.tiles == 0 || geom->f == 0)
        return NNL_OK;
    /* every chunk but the last has tb tiles */
    *cols = (p.chunks - 1) * nnl_gemm_cost_cols(isa, elsize, p.tb) +
            nnl_gemm_cost_cols(isa, elsize, p.tiles - (p.chunks - 1) * p.tb);
    *u_reads = p.chunks;
    return NNL_OK;
}

/* ------------------------------------------------------------------- 1-D transforms
 * in[k*is + l] -> out[k*os + l] for lanes l < L. Input side B^T (alpha x alpha), output side
 * A^T (m x alpha); written out so that no multiplication by 0 or 1 is done. */
#define WINO_BT2(d0, d1, d2, d3, o, os, l)                                                     \
    do {                                                                                       \
        (o)[0 * (os) + (l)] = (d0) - (d2);                                                     \
        (o)[1 * (os) + (l)] = (d1) + (d2);                                                     \
        (o)[2 * (os) + (l)] = (d2) - (d1);                                                     \
        (o)[3 * (os) + (l)] = (d1) - (d3);                                                     \
    } while (0)

#define WINO_BT4(d0, d1, d2, d3, d4, d5, o, os, l)                                             \
    do {                                                                                       \
        (o)[0 * (os) + (l)] = 4 * (d0) - 5 * (d2) + (d4);                                      \
        (o)[1 * (os) + (l)] = (d3) + (d4) - 4 * ((d1) + (d2));                                 \
        (o)[2 * (os) + (l)] = 4 * ((d1) - (d2)) + (d4) - (d3);                                 \
        (o)[3 * (os) + (l)] = 2 * ((d3) - (d1)) + (d4) - (d2);                                 \
        (o)[4 * (os) + (l)] = 2 * ((d1) - (d3)) + (d4) - (d2);                                 \
        (o)[5 * (os) + (l)] = 4 * (d1) - 5 * (d3) + (d5);                                      \
    } while (0)

#define WINO_AT2(s0, s1, s2, s3, o, os, l)                                                     \
    do {                                                                                       \
        (o)[0 * (os) + (l)] = (s0) + (s1) + (s2);                                              \
        (o)[1 * (os) + (l)] = (s1) - (s2) - (s3);                                              \
    } while (0)

#define WINO_AT4(s0, s1, s2, s3, s4, s5, o, os, l)                                             \
    do {                                                                                       \
        const __typeof__(s0) p12 = (s1) + (s2), m12 = (s1) - (s2);                             \
        const __typeof__(s0) p34 = (s3) + (s4), m34 = (s3) - (s4);                             \
        (o)[0 * (os) + (l)] = (s0) + p12 + p34;                                                \
        (o)[1 * (os) + (l)] = m12 + 2 * m34;                                                   \
        (o)[2 * (os) + (l)] = p12 + 4 * p34;                                                   \
        (o)[3 * (os) + (l)] = m12 + 8 * m34 + (s5);                                            \
    } while (0)

/* G (alpha x 3) of F(2x2, 3x3) and F(4x4, 3x3) (Lavin & Gray; the points 0, +-1, (+-2,) inf) */
static const double wino_g2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double wino_g4[6][3] = {{1.0 / 4, 0, 0},
                                     {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                     {0, 0, 1}};
#define WINO_QB 64                  /* filters per weight-transform block */

/* ------------------------------------------------------------------- input tiles
 * The input transform works lane-major: d[k*L + l] is element k of tile l. Gathering 16 tiles'
 * a x a elements into that layout one element at a time (a load and a store per element) took
 * about half of the input transform's time, and the input transform a third of a 64 -> 64 3x3
 * conv at 56x56 (Zen 4, perf). With AVX2 each row of a tile is instead one masked load (its
 * a elements) and the 16 tiles' rows are turned into a vectors of 16 lanes by two 8 x 8
 * register transposes: the same values, moved in vectors. AMD EPYC Zen 4, that conv alone
 * 1.22 -> 1.01 ms on one thread, 0.70 -> 0.64 ms on two; whole plans, the two gathers
 * alternated in one process: ResNet-50 0.991 / 0.997 at batch 1 and 0.986 at batch 8,
 * GoogLeNet 0.991 / 0.990 and 0.985; outputs bit for bit the same. Tiles reaching into the
 * padding were copied element by element until 2026-12-08 (wino_gather16_s now loads them
 * too: 0.88-0.92 of that conv's time, with the output side's shuffles and wino_plane). */
#if defined(__AVX2__)
#include <immintrin.h>

/* r[l][j] -> o[j][l] for an 8 x 8 block of floats */
static inline void wino_t8x8(const __m256 *r, __m256 *o)
{
    __m256 t[8], u[8];
    for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 2; k++) {
        u[4 * k + 0] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * k + 1] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * k + 2] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * k + 3] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int j = 0; j < 4; j++) {
        o[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
        o[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
}

/* The elements of p whose bit is set in m (m < 256), zeros elsewhere; a masked-off element is
 * never read. AVX2: vmaskmovps with the bits spread into lane masks. */
static inline __attribute__((always_inline)) __m256 wino_load8(const float *p, unsigned m)
{
#if defined(__AVX512F__)
    return _mm256_maskz_loadu_ps((__mmask8)m, p);
#else
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i sel = _mm256_and_si256(_mm256_set1_epi32((int)m), bit);
    return _mm256_maskload_ps(p, _mm256_cmpeq_epi32(sel, bit));
#endif
}

/* v's elements moved up by s lanes (1 <= s < 8), the s lowest lanes zero */
static inline __attribute__((always_inline)) __m256 wino_shift8(__m256 v, int s)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i idx = _mm256_sub_epi32(lane, _mm256_set1_epi32(s));
#if defined(__AVX512F__)
    return _mm256_maskz_permutexvar_ps((__mmask8)(0xFFu << s), idx, v);
#else
    const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(lane,
                                                               _mm256_set1_epi32(s - 1)));
    return _mm256_and_ps(_mm256_permutevar8x32_ps(v, idx), keep);
#endif
}

/* d[(i*a + j)*16 + l] = element j of row i of lane l's patch, i, j < a (4 or 6), l < 16: rows
 * whose bit is clear in rb[l] are zero; the others are read from src[l] + i*rs, the first
 * bits of cm[l] being the patch's columns inside the image, moved up by sh[l] lanes (the
 * columns left of the image, zero). Every load starts at an element it reads (no masked-off
 * lanes before the first, no all-zero mask: an earlier form that had both ran 3x slower on
 * AMD Zen 5 and was never explained), so a tile reaching into the padding loads its rows
 * like the others instead of through a zero-padded copy. */
static inline __attribute__((always_inline)) void wino_gather16_s(const float *const *src,
                                                                  nnl_idx rs,
                                                                  const unsigned char *cm,
                                                                  const unsigned char *rb,
                                                                  const unsigned char *sh,
                                                                  int a, float *d)
{
    for (int i = 0; i < a; i++) {
        __m256 r[16], lo[8], hi[8];
        for (int l = 0; l < 16; l++) {
            if ((rb[l] >> i) & 1u) {
                r[l] = wino_load8(src[l] + i * rs, cm[l]);
                if (sh[l])
                    r[l] = wino_shift8(r[l], sh[l]);
            } else {
                r[l] = _mm256_setzero_ps();
            }
        }
        wino_t8x8(r, lo);
        wino_t8x8(r + 8, hi);
        for (int j = 0; j < a; j++) {
            _mm256_storeu_ps(d + (i * a + j) * 16, lo[j]);
            _mm256_storeu_ps(d + (i * a + j) * 16 + 8, hi[j]);
        }
    }
}
#define WINO_GATHER16 wino_gather16_s

/* The tiles' outputs back into y, 16 tiles at a time: s[(i*m + j)*16 + l] is output (i, j) of
 * lane l's tile; a run of lanes [lo/m, hi/m) holds consecutive tiles of one tile row, whose
 * output row i is element e in [lo, hi) of the lanes' interleaved rows (tile e/m, column e%m;
 * hi cuts the last tile at the image's right edge), stored at base + i*ow + e for i < mi. The
 * m values of each tile's row are interleaved with shuffles (128-bit 4 x 4 transposes for
 * m = 4, 64-bit pairs for m = 2) into vectors of WINO_VW elements, each stored whole when the
 * run covers it, else by a masked store (AVX-512) or element by element (AVX2, whose masked
 * store is slow on AMD): about 2 shuffles and 1 store per 8 outputs, where one element at a
 * time took a load and a store each (a third of the output transform's time, Zen 4). */
typedef struct {
    float *base;
    int mi, lo, hi;
} wino_run;

/* 4 x 4 transposes inside each 128-bit lane of W-bit vectors (W = 256 or 512): lane q of
 * t_r = (y0[4q + r], y1[4q + r], y2[4q + r], y3[4q + r]) */
#define WINO_T4_LANES(W, y0, y1, y2, y3, t0, t1, t2, t3)                                       \
    do {                                                                                       \
        const __m##W a_ = _mm##W##_unpacklo_ps(y0, y1), b_ = _mm##W##_unpackhi_ps(y0, y1);    \
        const __m##W c_ = _mm##W##_unpacklo_ps(y2, y3), d_ = _mm##W##_unpackhi_ps(y2, y3);    \
        (t0) = _mm##W##_castpd_ps(_mm##W##_unpacklo_pd(_mm##W##_castps_pd(a_),                 \
                                                       _mm##W##_castps_pd(c_)));               \
        (t1) = _mm##W##_castpd_ps(_mm##W##_unpackhi_pd(_mm##W##_castps_pd(a_),                 \
                                                       _mm##W##_castps_pd(c_)));               \
        (t2) = _mm##W##_castpd_ps(_mm##W##_unpacklo_pd(_mm##W##_castps_pd(b_),                 \
                                                       _mm##W##_castps_pd(d_)));               \
        (t3) = _mm##W##_castpd_ps(_mm##W##_unpackhi_pd(_mm##W##_castps_pd(b_),                 \
                                                       _mm##W##_castps_pd(d_)));               \
    } while (0)

#if defined(__AVX512F__)
#define WINO_VW 16
typedef __m512 wino_vec;
/* o[k] (k < m): elements 16k .. 16k + 15 of one output row of the 16 tiles */
static inline __attribute__((always_inline)) void wino_interleave(const float *si, int m,
                                                                  wino_vec *o)
{
    if (m == 4) {
        const __m512 y0 = _mm512_loadu_ps(si), y1 = _mm512_loadu_ps(si + 16);
        const __m512 y2 = _mm512_loadu_ps(si + 32), y3 = _mm512_loadu_ps(si + 48);
        __m512 t0, t1, t2, t3;   /* 128-bit lane q of t_r: the row of tile 4q + r */
        WINO_T4_LANES(512, y0, y1, y2, y3, t0, t1, t2, t3);
        const __m512 u0 = _mm512_shuffle_f32x4(t0, t1, 0x44);
        const __m512 u1 = _mm512_shuffle_f32x4(t0, t1, 0xEE);
        const __m512 u2 = _mm512_shuffle_f32x4(t2, t3, 0x44);
        const __m512 u3 = _mm512_shuffle_f32x4(t2, t3, 0xEE);
        o[0] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        o[1] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        o[2] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        o[3] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    } else {
        const __m512 y0 = _mm512_loadu_ps(si), y1 = _mm512_loadu_ps(si + 16);
        /* 128-bit lane q of a: tiles 4q, 4q + 1; of b: tiles 4q + 2, 4q + 3 */
        const __m512 a = _mm512_unpacklo_ps(y0, y1), b = _mm512_unpackhi_ps(y0, y1);
        const __m512 lo = _mm512_shuffle_f32x4(a, b, 0x44);
        const __m512 hi = _mm512_shuffle_f32x4(a, b, 0xEE);
        o[0] = _mm512_shuffle_f32x4(lo, lo, 0xD8);
        o[1] = _mm512_shuffle_f32x4(hi, hi, 0xD8);
    }
}

/* elements [e0, e1) of v to p: moved down to lane 0 and stored from p + e0, so that only
 * trailing lanes are masked off (as in the GEMM's edge tiles; see wino_gather16_s) */
static inline __attribute__((always_inline)) void wino_store_part(float *p, wino_vec v, int e0,
                                                                  int e1)
{
    const __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                           11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(e0));
    _mm512_mask_storeu_ps(p + e0, (__mmask16)((1u << (e1 - e0)) - 1u),
                          _mm512_permutexvar_ps(idx, v));
}
#else
#define WINO_VW 8
typedef __m256 wino_vec;
/* o[k] (k < 2m): elements 8k .. 8k + 7 of one output row of the 16 tiles */
static inline __attribute__((always_inline)) void wino_interleave(const float *si, int m,
                                                                  wino_vec *o)
{
    for (int h = 0; h < 2; h++) {   /* tiles 8h .. 8h + 7 */
        const float *sh = si + 8 * h;
        if (m == 4) {
            const __m256 y0 = _mm256_loadu_ps(sh), y1 = _mm256_loadu_ps(sh + 16);
            const __m256 y2 = _mm256_loadu_ps(sh + 32), y3 = _mm256_loadu_ps(sh + 48);
            __m256 t0, t1, t2, t3;
            WINO_T4_LANES(256, y0, y1, y2, y3, t0, t1, t2, t3);
            o[4 * h + 0] = _mm256_permute2f128_ps(t0, t1, 0x20);
            o[4 * h + 1] = _mm256_permute2f128_ps(t2, t3, 0x20);
            o[4 * h + 2] = _mm256_permute2f128_ps(t0, t1, 0x31);
            o[4 * h + 3] = _mm256_permute2f128_ps(t2, t3, 0x31);
        } else {
            const __m256 y0 = _mm256_loadu_ps(sh), y1 = _mm256_loadu_ps(sh + 16);
            const __m256 a = _mm256_unpacklo_ps(y0, y1), b = _mm256_unpackhi_ps(y0, y1);
            o[2 * h + 0] = _mm256_permute2f128_ps(a, b, 0x20);
            o[2 * h + 1] = _mm256_permute2f128_ps(a, b, 0x31);
        }
    }
}

static inline __attribute__((always_inline)) void wino_store_part(float *p, wino_vec v, int e0,
                                                                  int e1)
{
    float t[8];
    _mm256_storeu_ps(t, v);
    for (int e = e0; e < e1; e++)
        p[e] = t[e];
}
#endif

static inline __attribute__((always_inline)) void wino_scatter16_s(const float *s, int m,
                                                                   const wino_run *runs,
                                                                   int nruns, nnl_idx ow)
{
    const int nv = 16 * m / WINO_VW;   /* vectors per output row of 16 tiles */
    for (int i = 0; i < m; i++) {
        wino_vec o[8];
        wino_interleave(s + i * m * 16, m, o);
        for (int r = 0; r < nruns; r++) {
            if (i >= runs[r].mi)
                continue;
            float *row = runs[r].base + i * ow;   /* row + e: only for e in [lo, hi) */
            const int lo = runs[r].lo, hi = runs[r].hi;
            for (int k = lo / WINO_VW; k < nv && k * WINO_VW < hi; k++) {
                const int e0 = nnl_max(lo - k * WINO_VW, 0);
                const int e1 = nnl_min(hi - k * WINO_VW, WINO_VW);
                if (e0 == 0 && e1 == WINO_VW)
                    memcpy(row + k * WINO_VW, &o[k], sizeof(wino_vec));
                else
                    wino_store_part(row + k * WINO_VW, o[k], e0, e1);
            }
        }
    }
}
#define WINO_SCATTER16 wino_scatter16_s
#endif

/* float32 */
#define T float
#define L 16
#define FN(name) name##_s
#define GEMM_PK nnl_sgemm_pk
#define GEMM_PACK nnl_sgemm_pack
#define CONV_NAME nnl_conv_winograd_s
#define PACK_NAME nnl_wino_pack_s
#define WEIGHTS_NAME nnl_wino_weights_s
#define WPACK_NAME nnl_wino_weights_packed_s
#include "convfast_winograd_tmpl.h"
#undef T
#undef L
#undef FN
#undef GEMM_PK
#undef GEMM_PACK
#undef CONV_NAME
#undef PACK_NAME
#undef WEIGHTS_NAME
#undef WPACK_NAME
#undef WINO_GATHER16
#undef WINO_SCATTER16

/* float64 */
#define T double
#define L 8
#define FN(name) name##_d
#define GEMM_PK nnl_dgemm_pk
#define GEMM_PACK nnl_dgemm_pack
#define CONV_NAME nnl_conv_winograd_d
#define PACK_NAME nnl_wino_pack_d
#define WEIGHTS_NAME nnl_wino_weights_d
#define WPACK_NAME nnl_wino_weights_packed_d
#include "convfast_winograd_tmpl.h"
#undef T
#undef L
#undef FN
#undef GEMM_PK
#undef GEMM_PACK
#undef CONV_NAME
#undef PACK_NAME
#undef WEIGHTS_NAME
#undef WPACK_NAME
