/* Fused inverted residual (MobileNetV2's block) in one native call and one OpenMP region:
 *
 *     e = relu6(W1 @ x + b1)                       expand 1x1, (E, H*W) per image
 *     d = relu6(depthwise3x3(e, Wd, stride s, pad 1) + bd)          (E, OH*OW)
 *     y = W3 @ d + b3 [+ r]                        project 1x1, (F, OH*OW)
 *
 * The work units are bands of output rows [i0, i1) of one image; each thread starts on a
 * contiguous run of them and, its run done, takes bands from the back of the run with most
 * left (so a thread that loses its core for a while on a shared machine is covered, as the
 * GEMM's dynamic units are). A band needs the input rows lo .. hi - 1 its taps read (one row
 * of halo each side at stride 1, rows 2*i0 - 1 .. 2*(i1 - 1) + 1 at stride 2); the thread
 * keeps the rows its previous band of the same image expanded already and expands only the
 * new ones into its buffer, runs the depthwise conv on the band into a second buffer and
 * projects that into y: the expanded tensor never leaves the thread's cache, the team is woken
 * once per block, and only rows at the seams between threads are expanded twice. Bands are
 * sized so that a thread's two buffers take at most half of the L2 (nnl_cache_sizes), cut
 * finer when the images alone would leave a thread idle, and as equal as whole rows allow.
 *
 * Inside a band both tensors are channels-last (pixel p at buf + p * ep, ep = E rounded up to
 * whole vectors): the expand is the GEMM x^T (pixels, C) @ W1^T (C, E) with W1^T packed once
 * as the B operand (nnl_sgemm_pk), the depthwise conv is one vector multiply-add per tap over
 * channels with the nine tap vectors in registers (ir_depthwise: a 7- or 14-wide plane would
 * fill half a vector or less), and the project W3 @ d reads d transposed (the GEMM packs it
 * with its 8 x 8 transposes; or, for bands of few pixels (project_t), y^T = d^T @ W3^T with d
 * as the row-major A operand and y written column-major). The GEMM reduces every element in
 * the same order whatever its operands' layout and however C is cut, and the depthwise conv
 * sums bias, then the taps in row-major order (a tap outside the image adding w * 0, as the
 * planar kernel's zero-padded buffer does), so the result is the same bits as the three
 * unfused calls, for any thread count and band cut.
 *
 * The residual r (F, OH*OW per image, or NULL) is copied into y's band rows and accumulated
 * with beta = 1, as the unfused plan does. y overlaps none of x, r, the weights or biases.
 *
 * A block without expand (expansion ratio 1, MobileNetV2's first: depthwise 3x3 -> project
 * 1x1, g->expand == 0) runs the same bands: the input rows are transposed into the band buffer
 * (nnl_transpose_s, the GEMM nest's transpose: 8 x 8 register transposes) instead of
 * expanded, so the depthwise output again stays in the thread's cache on its way to the
 * project.
 */
#include <stdlib.h>
#include <string.h>

#include "convfast.h"
#include "gemm_kernels.h"
#include "nnl_tuning.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static int ir_geom_ok(const nnl_ir_geom *g)
{
    if (g->n < 0 || g->c < 1 || g->h < 1 || g->w < 1 || g->e < 1 || g->f < 1)
        return 0;
    if ((g->s != 1 && g->s != 2) || (!g->expand && g->e != g->c))
        return 0;
    if (g->oh != (g->h - 1) / g->s + 1 || g->ow != (g->w - 1) / g->s + 1)
        return 0;
    return g->xsn >= g->c * g->h * g->w && g->ysn >= g->f * g->oh * g->ow &&
           g->rsn >= g->f * g->oh * g->ow;
}

/* The expanded and depthwise tensors of a band are kept channels-last: pixel p of a row at
 * buf + p * ep, its ep >= E channels contiguous (E rounded up to whole vectors; the pad channels
 * hold zeros), so that the depthwise conv is one vector multiply-add per tap over channels,
 * whatever the map's width (a 7- or 14-wide plane fills half a vector or less). */
#if defined(__AVX512F__)
#define IR_VBYTES 64
#elif defined(__AVX__)
#define IR_VBYTES 32
#else
#define IR_VBYTES 16
#endif
#define IR_VL ((nnl_idx)(IR_VBYTES / sizeof(float)))
typedef float ir_vec __attribute__((vector_size(IR_VBYTES)));

static inline ir_vec ir_load(const float *p)
{
    ir_vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void ir_store(float *p, ir_vec v)
{
    memcpy(p, &v, sizeof v);
}

/* channels per pixel in the band buffers */
static nnl_idx ir_ep(const nnl_ir_geom *g)
{
    return nnl_cdiv(g->e, IR_VL) * IR_VL;
}

/* output rows per band: the largest count whose two buffers take at most half of the L2 */
static nnl_idx ir_band_rows(const nnl_ir_geom *g)
{
    const double l2 = (double)nnl_cache_sizes()->l2, ep = (double)ir_ep(g);
    const double per_row = ep * (double)(g->s * g->w + g->ow) * sizeof(float);
    const double fixed = ep * 2.0 * g->w * sizeof(float);
    const double r = (0.5 * l2 - fixed) / per_row;
    if (!(r >= 1.0))
        return 1;
    return r >= (double)g->oh ? g->oh : (nnl_idx)r;
}

void nnl_ir_plan(const nnl_ir_geom *g, int nthreads, int *nt_out, nnl_idx *rows_out)
{
    /* without expand, the transpose counted as one multiply-add per element */
    const double macs = (double)g->n * ((double)g->h * g->w * g->c * (g->expand ? g->e : 1) +
                                        (double)g->oh * g->ow * g->e * (9.0 + g->f));
    int nt = nnl_team_size(nthreads, macs, NNL_MIN_PARALLEL_MACS);
    nnl_idx rows = ir_band_rows(g);
    nnl_idx bands = nnl_cdiv(g->oh, rows);
    if (nt > 1 && g->n * bands < 4 * (nnl_idx)nt) {
        /* few units: the fewest bands per image that make the unit count a multiple of the
         * team (a thread that loses its core is still covered by stealing) */
        while (bands < g->oh && (g->n * bands) % nt != 0)
            bands++;
    }
    /* rows as equal as whole rows allow (a 14-row map in two bands: 7 + 7, not 11 + 3) */
    rows = nnl_cdiv(g->oh, bands);
    bands = nnl_cdiv(g->oh, rows);
    if ((nnl_idx)nt > g->n * bands)
        nt = (int)(g->n * bands);
    *nt_out = nt < 1 ? 1 : nt;
    *rows_out = rows;
}

/* elements of one thread's buffers for bands of ``rows`` output rows */
static void ir_buffer_sizes(const nnl_ir_geom *g, nnl_idx rows, nnl_idx *ein, nnl_idx *dout)
{
    const nnl_idx in_rows = nnl_min(g->h, (rows - 1) * g->s + 3), ep = ir_ep(g);
    *ein = (nnl_idx)nnl_round64((size_t)(in_rows * g->w * ep), sizeof(float));
    *dout = (nnl_idx)nnl_round64((size_t)(rows * g->ow * ep), sizeof(float));
}

/* the shared part of the work memory: the depthwise taps transposed to (9, ep) and its bias
 * (ep,), zeros in the pad channels */
static nnl_idx ir_shared_size(const nnl_ir_geom *g)
{
    return (nnl_idx)nnl_round64((size_t)(10 * ir_ep(g)), sizeof(float));
}

nnl_idx nnl_ir_workspace(const nnl_ir_geom *g, int nthreads)
{
    if (!ir_geom_ok(g) || g->n == 0)
        return 0;
    int nt;
    nnl_idx rows, ein, dout;
    nnl_ir_plan(g, nthreads, &nt, &rows);
    ir_buffer_sizes(g, rows, &ein, &dout);
    return (nnl_idx)sizeof(float) * ((ein + dout) * nt + ir_shared_size(g));
}

/* the rows of image ``n`` a thread's expand buffer holds: [lo, hi), row lo first */
typedef struct {
    nnl_idx n, lo, hi;
} ir_rows;

/* expand input rows [r0, r1) of image n into ebuf from its row ``at`` (without expand: copy
 * them there channels-last): the product
 * x^T (pixels, C) @ W1^T (C, E), so that each pixel's E channels come out contiguous; W1^T is
 * the B operand, packed once (w1pk). Each element is the same sum, in the same order, as in
 * W1 @ x: the same bits as the unfused 1x1 conv. */
static int ir_expand(const nnl_ir_geom *g, const float *x, const float *w1, const float *w1pk,
                     const float *b1, int isa, nnl_idx n, nnl_idx r0, nnl_idx r1, float *ebuf,
                     nnl_idx ep, nnl_idx at)
{
    if (r1 <= r0)
        return NNL_OK;
    const nnl_idx W = g->w;
    if (!g->expand) {   /* no expand: the input rows channels-last, ebuf[p*ep + c] = x[c, p] */
        nnl_transpose_s((int)g->c, (int)((r1 - r0) * W), x + n * g->xsn + r0 * W, g->h * W,
                        ebuf + at * W * ep, ep);
        return NNL_OK;
    }
    return nnl_sgemm_pk(1, (r1 - r0) * W, g->e, g->c, 1.0f, x + n * g->xsn + r0 * W, 0, 1,
                        g->h * W, w1, 0, 1, g->c, 0.0f, ebuf + at * W * ep, 0, ep, b1, 0,
                        NNL_BIAS_COL, NNL_ACT_RELU6, 1, isa, NULL, w1pk);
}

/* Depthwise 3x3 (stride s, padding 1) + bias + ReLU6 of output rows [i0, i1) over the band's
 * expanded rows [lo, hi) (channels-last, ep apart), into d (channels-last, pixel
 * (i - i0) * OW + j). Per channel vector, the nine tap vectors stay in registers; each output
 * sums bias, then the taps in row-major order, a tap outside the image adding w * 0 (as the
 * planar kernel's zero-padded buffer does): the same bits as the unfused depthwise conv. */
static void ir_depthwise(const nnl_ir_geom *g, const float *ebuf, nnl_idx lo, nnl_idx hi,
                         nnl_idx i0, nnl_idx i1, nnl_idx ep, const float *wt, const float *bt,
                         float *dbuf)
{
    const nnl_idx s = g->s, W = g->w, OW = g->ow;
    const ir_vec zero = {0};
    /* columns j whose three taps j*s - 1 .. j*s + 1 all lie inside [0, W) */
    const nnl_idx jlo = nnl_min(OW, 1), jhi = W >= 2 ? nnl_max(jlo, nnl_min(OW, (W - 2) / s + 1))
                                                     : jlo;
    for (nnl_idx c = 0; c < ep; c += IR_VL) {
        ir_vec w[9];
        for (int k = 0; k < 9; k++)
            w[k] = ir_load(wt + k * ep + c);
        const ir_vec b = ir_load(bt + c);
        for (nnl_idx i = i0; i < i1; i++) {
            const float *row[3];
            int full = 1;
            for (int a = 0; a < 3; a++) {
                const nnl_idx r = i * s - 1 + a;
                row[a] = (r >= lo && r < hi) ? ebuf + (r - lo) * W * ep + c : NULL;
                full &= row[a] != NULL;
            }
            float *dr = dbuf + (i - i0) * OW * ep + c;
            nnl_idx j = 0;
            if (full) {
                for (j = jlo; j + 4 <= jhi; j += 4) {
                    ir_vec acc[4] = {b, b, b, b};
#pragma GCC unroll 3
                    for (int a = 0; a < 3; a++) {
                        const float *p = row[a] + (j * s - 1) * ep;
#pragma GCC unroll 3
                        for (int t = 0; t < 3; t++)
#pragma GCC unroll 4
                            for (int u = 0; u < 4; u++)
                                acc[u] += w[a * 3 + t] * ir_load(p + (u * s + t) * ep);
                    }
#pragma GCC unroll 4
                    for (int u = 0; u < 4; u++)
                        ir_store(dr + (j + u) * ep, NNL_ACT_VEC(acc[u], NNL_ACT_RELU6));
                }
                for (; j < jhi; j++) {
                    ir_vec acc = b;
#pragma GCC unroll 3
                    for (int a = 0; a < 3; a++) {
                        const float *p = row[a] + (j * s - 1) * ep;
#pragma GCC unroll 3
                        for (int t = 0; t < 3; t++)
                            acc += w[a * 3 + t] * ir_load(p + t * ep);
                    }
                    ir_store(dr + j * ep, NNL_ACT_VEC(acc, NNL_ACT_RELU6));
                }
                j = 0;
            }
            /* the border columns (every column when a tap row lies outside the image) */
            for (; j < OW; j++) {
                if (full && j == jlo)
                    j = jhi;
                if (j >= OW)
                    break;
                ir_vec acc = b;
                for (int a = 0; a < 3; a++)
                    for (int t = 0; t < 3; t++) {
                        const nnl_idx q = j * s - 1 + t;
                        const ir_vec v = (row[a] != NULL && q >= 0 && q < W)
                                             ? ir_load(row[a] + q * ep) : zero;
                        acc += w[a * 3 + t] * v;
                    }
                ir_store(dr + j * ep, NNL_ACT_VEC(acc, NNL_ACT_RELU6));
            }
        }
    }
}

/* one band: output rows [i0, i1) of image n. The rows of the thread's previous band (``have``)
 * that this band reads too are moved to their new place instead of being expanded again (the
 * previous band may lie above or below: a thread steals bands backwards). */
static int ir_band(const nnl_ir_geom *g, const float *x, const float *w1, const float *w1pk,
                   const float *b1, const float *wt, const float *bt, const float *w3,
                   const float *w3pk, const float *b3, const float *r, float *y, int isa,
                   nnl_idx n, nnl_idx i0, nnl_idx i1, float *ebuf, float *dbuf, ir_rows *have)
{
    const nnl_idx s = g->s, W = g->w, OW = g->ow, E = g->e, ep = ir_ep(g);
    const nnl_idx lo = nnl_max(0, i0 * s - 1), hi = nnl_min(g->h, (i1 - 1) * s + 2);
    const nnl_idx out_rows = i1 - i0;
    nnl_idx ov_lo = lo, ov_hi = lo;   /* rows kept: none */
    if (have->n == n) {
        ov_lo = nnl_max(lo, have->lo), ov_hi = nnl_min(hi, have->hi);
        if (ov_hi <= ov_lo)
            ov_lo = ov_hi = lo;
        else if (ov_lo - lo != ov_lo - have->lo)
            memmove(ebuf + (ov_lo - lo) * W * ep, ebuf + (ov_lo - have->lo) * W * ep,
                    sizeof(float) * (size_t)((ov_hi - ov_lo) * W * ep));
    }
    have->n = n, have->lo = lo, have->hi = hi;
    int rc = ir_expand(g, x, w1, w1pk, b1, isa, n, lo, ov_lo, ebuf, ep, 0);
    if (rc == NNL_OK)
        rc = ir_expand(g, x, w1, w1pk, b1, isa, n, ov_hi, hi, ebuf, ep, ov_hi - lo);
    if (rc != NNL_OK) {
        have->n = -1;
        return rc;
    }
    ir_depthwise(g, ebuf, lo, hi, i0, i1, ep, wt, bt, dbuf);
    const nnl_idx L = g->oh * OW;
    float *yb = y + n * g->ysn + i0 * OW;
    if (r != NULL) {
        const float *rb = r + n * g->rsn + i0 * OW;
        if (rb != yb)
            for (nnl_idx f = 0; f < g->f; f++)
                memcpy(yb + f * L, rb + f * L, sizeof(float) * (size_t)(out_rows * OW));
    }
    const float beta = r != NULL ? 1.0f : 0.0f;
    if (g->project_t)
        /* project pixel-major: y^T (pixels, F) = d (pixels, E) @ W3^T, C column-major (a
         * band of few pixels: F, not the pixel count, is cut into vector panels) */
        return nnl_sgemm_pkc(1, out_rows * OW, g->f, E, 1.0f, dbuf, 0, ep, 1, w3, 0, 1, E, beta,
                             yb, 0, 1, L, b3, 0, NNL_BIAS_COL, NNL_ACT_NONE, 1, isa, NULL, w3pk);
    /* project: W3 @ d with d read transposed (pixel-major), the GEMM packing it with its
     * 8 x 8 transposes */
    return nnl_sgemm_pk(1, g->f, out_rows * OW, E, 1.0f, w3, 0, E, 1, dbuf, 0, 1, ep, beta, yb,
                        0, L, b3, 0, NNL_BIAS_ROW, NNL_ACT_NONE, 1, isa, w3pk, NULL);
}

/* The next unit for thread ``tid``: the front of its own contiguous range, else (its range
 * done) the back of the range with most left, so a thread that loses its core for a while on
 * a shared machine is covered by the others. -1 when no unit is left. */
static nnl_idx ir_claim(nnl_idx *front, nnl_idx *back, int nt, int tid)
{
    nnl_idx u = -1;
#ifdef _OPENMP
#pragma omp critical(nnl_ir_claim)
#endif
    {
        if (front[tid] < back[tid]) {
            u = front[tid]++;
        } else {
            int v = -1;
            for (int t = 0; t < nt; t++)
                if (back[t] - front[t] > 0 && (v < 0 || back[t] - front[t] > back[v] - front[v]))
                    v = t;
            if (v >= 0)
                u = --back[v];
        }
    }
    return u;
}

int nnl_inverted_residual_s(const nnl_ir_geom *g, const float *x, const float *w1,
                            const float *w1pk, const float *b1, const float *wd,
                            const float *bd, const float *w3, const float *w3pk,
                            const float *b3, const float *r, float *y, int nthreads, int isa)
{
    if (!ir_geom_ok(g))
        return NNL_EINVAL;
    if (g->n == 0)
        return NNL_OK;
    int nt;
    nnl_idx rows, ein, dout;
    nnl_ir_plan(g, nthreads, &nt, &rows);
    ir_buffer_sizes(g, rows, &ein, &dout);
    const nnl_idx bands = nnl_cdiv(g->oh, rows), units = g->n * bands, ep = ir_ep(g);
    const nnl_idx shared = ir_shared_size(g);
    /* the transposed taps and bias, the band buffers of every thread, then the claim
     * counters (front[nt], back[nt]) */
    float *mem = (float *)nnl_alloc64(sizeof(float) * (size_t)(shared + (ein + dout) * nt) +
                                      2 * sizeof(nnl_idx) * (size_t)nt);
    if (mem == NULL)
        return NNL_ENOMEM;
    float *wt = mem, *bt = mem + 9 * ep, *bufs = mem + shared;
    for (nnl_idx e = 0; e < ep; e++) {
        for (int k = 0; k < 9; k++)
            wt[k * ep + e] = e < g->e ? wd[e * 9 + k] : 0.0f;
        bt[e] = e < g->e && bd != NULL ? bd[e] : 0.0f;
    }
    nnl_idx *claims = (nnl_idx *)(bufs + (size_t)(ein + dout) * (size_t)nt);
    for (int t = 0; t < nt; t++) {
        claims[t] = units * t / nt;
        claims[nt + t] = units * (t + 1) / nt;
    }
    int status = NNL_OK;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        /* a thread takes a contiguous run of bands (whole images first), so consecutive bands
         * of an image share their halo rows instead of expanding them twice */
        const int tid = nnl_thread_id();
        float *ebuf = bufs + (size_t)tid * (size_t)(ein + dout);
        float *dbuf = ebuf + ein;
        if (ep > g->e)   /* the pad channels, never written by the expand */
            for (nnl_idx p = 0; p < ein / ep; p++)
                memset(ebuf + p * ep + g->e, 0, sizeof(float) * (size_t)(ep - g->e));
        ir_rows have = {-1, 0, 0};
        for (;;) {
            const nnl_idx u = ir_claim(claims, claims + nt, nt, tid);
            if (u < 0)
                break;
            const nnl_idx n = u / bands, i0 = (u % bands) * rows;
            const int rc = ir_band(g, x, w1, w1pk, b1, wt, bt, w3, w3pk, b3, r, y, isa, n, i0,
                                   nnl_min(g->oh, i0 + rows), ebuf, dbuf, &have);
            if (rc != NNL_OK) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
                status = rc;
            }
        }
    }
    nnl_free64(mem);
    return status;
}
