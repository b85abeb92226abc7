/* Fused inverted residual (MobileNetV2's block) in one native call and one thread-pool loop:
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
 * projects that into y: the expanded tensor never leaves the thread's cache, the pool runs one
 * loop per block (a range of bands per unit), and only rows at the seams between threads are
 * expanded twice. Bands are
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
 * An inference plan's chain of blocks passes its tensors channels-last (g->layout): x as
 * (H, W, C) per image is x^T itself, the expand's row-major A; y and r as (OH*OW, F) are the
 * pixel-major project's C, written as it comes. Nothing is transposed between the blocks
 * (NCHW in and out took 3-5% of MobileNetV2's time in transposes: the project's column-major
 * tiles, or d packed transposed); every element is the same sum in the same order, so the
 * same bits, transposed.
 *
 * One image of few output rows cuts badly into bands (a 7-row map on two threads: 4 + 3 rows,
 * the seam row expanded twice, one thread doing 9 of 14 row-steps). There the team cuts it by
 * channels instead (nnl_ir_plan's cost model picks, ir_run_channels): each thread expands its
 * share of the expanded channels for the whole image (whole NR columns of the pixel-major
 * product, nnl_sgemm_part) and runs their depthwise conv; the team meets; each thread projects
 * its share of the output tiles from the whole depthwise tensor. Each part lies on its
 * product's tile grid: the same bits again.
 *
 * A block without expand (expansion ratio 1, MobileNetV2's first: depthwise 3x3 -> project
 * 1x1, g->expand == 0) runs the same bands: the input rows are transposed into the band buffer
 * (nnl_transpose_s, the GEMM nest's transpose: 8 x 8 register transposes) instead of
 * expanded, so the depthwise output again stays in the thread's cache on its way to the
 * project.
 */
#include <stdlib.h>
#include <string.h>
#if defined(__SSE__)
#include <immintrin.h>
#endif

#include "convfast.h"
#include "gemm_kernels.h"
#include "nnl_tuning.h"

/* the head conv's geometry: one group of C -> E channels onto the block's input map, x's
 * images C-contiguous or padded apart */
static int ir_head_ok(const nnl_ir_geom *g)
{
    const nnl_conv_geom *h = &g->head;
    if (h->n != g->n || h->c != g->c || h->f != g->e || h->g != 1 || h->oh != g->h ||
        h->ow != g->w || h->h < 1 || h->w < 1)
        return 0;
    if (h->kh < 1 || h->kw < 1 || h->sh < 1 || h->sw < 1 || h->dh < 1 || h->dw < 1 ||
        h->pt < 0 || h->pl < 0)
        return 0;
    return h->xsr >= h->w && h->xsc >= h->h * h->xsr && g->xsn >= g->c * h->xsc;
}

static int ir_geom_ok(const nnl_ir_geom *g)
{
    if (g->n < 0 || g->c < 1 || g->h < 1 || g->w < 1 || g->e < 1 || g->f < 1)
        return 0;
    if (g->s != 1 && g->s != 2)
        return 0;
    if (g->expand == NNL_IR_HEAD ? !ir_head_ok(g)
                                 : (g->expand != NNL_IR_EXPAND &&
                                    (g->expand != NNL_IR_NO_EXPAND || g->e != g->c)))
        return 0;
    if (g->split != NNL_IR_AUTO && g->split != NNL_IR_BANDS && g->split != NNL_IR_CHANNELS)
        return 0;
    if ((g->layout & ~(NNL_IR_X_NHWC | NNL_IR_Y_NHWC)) != 0 ||
        ((g->layout & NNL_IR_X_NHWC) && g->expand != NNL_IR_EXPAND) ||
        ((g->layout & NNL_IR_Y_NHWC) && !g->project_t))
        return 0;
    if (g->oh != (g->h - 1) / g->s + 1 || g->ow != (g->w - 1) / g->s + 1)
        return 0;
    return (g->expand == NNL_IR_HEAD || g->xsn >= g->c * g->h * g->w) &&
           g->ysn >= g->f * g->oh * g->ow && g->rsn >= g->f * g->oh * g->ow;
}

/* taps of the head conv per output channel */
static nnl_idx ir_head_taps(const nnl_ir_geom *g)
{
    return g->expand == NNL_IR_HEAD ? g->c * g->head.kh * g->head.kw : 0;
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

/* ReLU6 (NNL_ACT_VEC's values: v < 0 -> +0, NaN and -0 kept, v > 6 -> 6) as max(0, v) and
 * min(6, v) with v the second operand, which x86 returns when either is NaN or both are zeros:
 * two instructions where the compare masks and selects take four */
static inline ir_vec ir_relu6(ir_vec v)
{
#if IR_VBYTES == 64
    return (ir_vec)_mm512_min_ps(_mm512_set1_ps(6.0f), _mm512_max_ps(_mm512_setzero_ps(),
                                                                       (__m512)v));
#elif IR_VBYTES == 32
    return (ir_vec)_mm256_min_ps(_mm256_set1_ps(6.0f), _mm256_max_ps(_mm256_setzero_ps(),
                                                                       (__m256)v));
#elif defined(__SSE__)
    return (ir_vec)_mm_min_ps(_mm_set1_ps(6.0f), _mm_max_ps(_mm_setzero_ps(), (__m128)v));
#else
    return NNL_ACT_VEC(v, NNL_ACT_RELU6);
#endif
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

/* Multiply-adds of one image's expand per input pixel (without expand, the transpose counted
 * as one per element) and of its depthwise conv and project per output pixel. */
static double ir_in_cost(const nnl_ir_geom *g)
{
    const double k = g->expand == NNL_IR_HEAD ? (double)ir_head_taps(g)
                     : g->expand == NNL_IR_EXPAND ? (double)g->c : 1.0;
    return k * (double)g->e;
}

static double ir_out_cost(const nnl_ir_geom *g)
{
    return (double)g->e * (9.0 + (double)g->f);
}

/* A phase boundary (one pool loop ends, the next starts: every thread meets there), in
 * multiply-adds: about 1 us of one core's (IR_SYNC_COST). And an element
 * of the depthwise tensor that a thread's project reads under the channel split: packed by
 * the GEMM for each of the thread's tiles and, where another thread wrote it, fetched from
 * that core's cache (IR_D_COST; Zen 4, 160->960->160 at 7x7 on two threads: the project phase
 * 86-100 us against 72 us for the expand's same multiply-adds, ~20 a read element). */
#define IR_SYNC_COST 50000.0
#define IR_D_COST 20.0

/* the bands: output rows per band and team size (the team never larger than the bands) */
static void ir_band_plan(const nnl_ir_geom *g, int nt, int *nt_out, nnl_idx *rows_out)
{
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

/* The busiest thread's multiply-adds under the bands: each thread on the run of units it
 * starts with (stealing only evens out what a lost core leaves), the halo rows a band shares
 * with the thread's previous one expanded once. */
static double ir_bands_cost(const nnl_ir_geom *g, int nt, nnl_idx rows)
{
    const nnl_idx bands = nnl_cdiv(g->oh, rows), units = g->n * bands;
    const double in = ir_in_cost(g) * (double)g->w, out = ir_out_cost(g) * (double)g->ow;
    double worst = 0.0;
    for (int t = 0; t < nt; t++) {
        double cost = 0.0;
        nnl_idx prev_n = -1, prev_hi = 0;
        for (nnl_idx u = units * t / nt; u < units * (t + 1) / nt; u++) {
            const nnl_idx n = u / bands, i0 = (u % bands) * rows;
            const nnl_idx i1 = nnl_min(g->oh, i0 + rows);
            nnl_idx lo = nnl_max(0, i0 * g->s - 1);
            const nnl_idx hi = nnl_min(g->h, (i1 - 1) * g->s + 2);
            if (n == prev_n)
                lo = nnl_max(lo, prev_hi);
            cost += (double)nnl_max(0, hi - lo) * in + (double)(i1 - i0) * out;
            prev_n = n, prev_hi = hi;
        }
        worst = cost > worst ? cost : worst;
    }
    return worst;
}

/* ------------------------------------------------------------------ the channel split
 * One image at a time: the expand (and the depthwise conv) cut into nt shares of expanded
 * channels, one pool loop; then the project cut into nt shares of output tiles, a second one;
 * each phase is cut evenly on its own (the slowest share of each phase sets the pace). */

/* One axis of a product cut into units of `size` elements (the last one shorter), a unit
 * costing its elements, or its vectors of `lanes` elements when lanes > 0. */
typedef struct {
    nnl_idx len, size, lanes;
} ir_axis;

static nnl_idx ir_units(const ir_axis *a)
{
    return nnl_cdiv(a->len, a->size);
}

static double ir_weight(const ir_axis *a, nnl_idx j)
{
    const nnl_idx e = nnl_min(a->size, a->len - j * a->size);
    return (double)(a->lanes > 0 ? nnl_cdiv(e, a->lanes) : e);
}

static double ir_axis_weight(const ir_axis *a)
{
    const nnl_idx u = ir_units(a);
    return (double)(u - 1) * ir_weight(a, 0) + ir_weight(a, u - 1);
}

/* The tiles (j, i) of an outer x inner grid in the order j * inner units + i, tile (j, i)
 * costing weight(outer, j) * weight(inner, i): the index where the cost before it reaches
 * `target` (to the nearest tile). */
static nnl_idx ir_tile_at(const ir_axis *o, const ir_axis *in, double target)
{
    const nnl_idx no = ir_units(o), ni = ir_units(in);
    const double row = ir_axis_weight(in);
    double acc = 0.0;
    for (nnl_idx j = 0; j < no; j++) {
        const double wo = ir_weight(o, j);
        if (acc + wo * row <= target) {
            acc += wo * row;
            continue;
        }
        for (nnl_idx i = 0; i < ni; i++) {
            const double c = wo * ir_weight(in, i);
            if (acc + 0.5 * c >= target)
                return j * ni + i;
            acc += c;
        }
        return (j + 1) * ni;
    }
    return no * ni;
}

/* Thread t's tiles of a team of nt: a contiguous run [k0, k1) of equal cost, as at most three
 * rectangles [o0, o1) x [i0, i1) in elements (a partial outer unit, whole ones, a partial
 * one); returns their count. */
typedef struct {
    nnl_idx o0, o1, i0, i1;
} ir_rect;

static int ir_tile_share(const ir_axis *o, const ir_axis *in, int nt, int t, ir_rect rect[3],
                         double *cost)
{
    const nnl_idx ni = ir_units(in);
    const double total = ir_axis_weight(o) * ir_axis_weight(in);
    const nnl_idx k0 = t == 0 ? 0 : ir_tile_at(o, in, total * t / nt);
    const nnl_idx k1 = t == nt - 1 ? ir_units(o) * ni : ir_tile_at(o, in, total * (t + 1) / nt);
    nnl_idx j0 = k0 / ni, i0 = k0 % ni;
    const nnl_idx j1 = k1 / ni, i1 = k1 % ni;
    nnl_idx span[3][4];   /* in units: j0, j1, i0, i1 */
    int n = 0;
    if (k1 > k0) {
        if (j0 == j1) {
            span[n][0] = j0, span[n][1] = j0 + 1, span[n][2] = i0, span[n][3] = i1, n++;
        } else {
            if (i0 > 0)
                span[n][0] = j0, span[n][1] = j0 + 1, span[n][2] = i0, span[n][3] = ni, n++,
                j0++;
            if (j1 > j0)
                span[n][0] = j0, span[n][1] = j1, span[n][2] = 0, span[n][3] = ni, n++;
            if (i1 > 0)
                span[n][0] = j1, span[n][1] = j1 + 1, span[n][2] = 0, span[n][3] = i1, n++;
        }
    }
    *cost = 0.0;
    for (int r = 0; r < n; r++) {
        double wo = 0.0, wi = 0.0;
        for (nnl_idx j = span[r][0]; j < span[r][1]; j++)
            wo += ir_weight(o, j);
        for (nnl_idx i = span[r][2]; i < span[r][3]; i++)
            wi += ir_weight(in, i);
        *cost += wo * wi;
        rect[r].o0 = span[r][0] * o->size, rect[r].o1 = nnl_min(o->len, span[r][1] * o->size);
        rect[r].i0 = span[r][2] * in->size, rect[r].i1 = nnl_min(in->len, span[r][3] * in->size);
    }
    return n;
}

static nnl_idx ir_gcd(nnl_idx a, nnl_idx b)
{
    while (b != 0) {
        const nnl_idx t = a % b;
        a = b, b = t;
    }
    return a;
}

/* The expand's axis: E in whole NR columns of its pixel-major product (whole vectors of the
 * depthwise conv too), each one thread's; and the image as one unit. */
static void ir_expand_axes(const nnl_ir_geom *g, int nr, ir_axis *o, ir_axis *in)
{
    const nnl_idx eu = (nnl_idx)nr / ir_gcd(nr, IR_VL) * IR_VL;
    *o = (ir_axis){g->e, eu, 0};
    *in = (ir_axis){1, 1, 0};
}

/* The project's tiles: pixels outer, output channels inner, so that a share reads the
 * depthwise tensor of its pixels only (with the channels outer every share packed all of it:
 * Zen 4, 160->960->160 at 7x7 on two threads, 3% slower); MR-row by NR-column tiles of
 * y^T = d^T @ W3^T pixel-major (pixels in rows), or of y = W3 @ d (pixels in columns), the
 * columns costing by vectors. */
static void ir_project_axes(const nnl_ir_geom *g, int mr, int nr, ir_axis *o, ir_axis *in)
{
    const nnl_idx px = g->oh * g->ow;
    if (g->project_t)
        *o = (ir_axis){px, mr, 0}, *in = (ir_axis){g->f, nr, IR_VL};
    else
        *o = (ir_axis){px, nr, IR_VL}, *in = (ir_axis){g->f, mr, 0};
}

/* The busiest thread's multiply-adds under the channel split: of the expand and depthwise
 * phase plus of the project phase, with the barriers and the depthwise tensor read across
 * cores. */
static double ir_channels_cost(const nnl_ir_geom *g, int nt, int mr, int nr)
{
    const double hw = (double)g->h * g->w, ohw = (double)g->oh * g->ow;
    const double per_e = hw * ir_in_cost(g) / (double)g->e + 9.0 * ohw;
    ir_axis eo, ei, po, pi;
    ir_rect rect[3];
    ir_expand_axes(g, nr, &eo, &ei);
    ir_project_axes(g, mr, nr, &po, &pi);
    /* a project tile's weight is rows times vectors */
    const double per_tile = (double)g->e * (double)IR_VL;
    double ex = 0.0, pr = 0.0, c;
    for (int t = 0; t < nt; t++) {
        ir_tile_share(&eo, &ei, nt, t, rect, &c);
        ex = c > ex ? c : ex;
        const int k = ir_tile_share(&po, &pi, nt, t, rect, &c);
        double reads = 0.0;   /* of d: every pixel of each tile rectangle, E channels each */
        for (int r = 0; r < k; r++)
            reads += (double)(rect[r].o1 - rect[r].o0) * (double)g->e;
        c = c * per_tile + IR_D_COST * reads;
        pr = c > pr ? c : pr;
    }
    return (double)g->n * (ex * per_e + pr + 2.0 * IR_SYNC_COST);
}

void nnl_ir_plan(const nnl_ir_geom *g, int nthreads, int isa, int *nt_out, nnl_idx *rows_out,
                 int *split_out)
{
    /* without expand, the transpose counted as one multiply-add per element */
    const double macs = (double)g->n * ((double)g->h * g->w * ir_in_cost(g) +
                                        (double)g->oh * g->ow * ir_out_cost(g));
    const int team = nnl_team_size(nthreads, macs, NNL_MIN_PARALLEL_MACS);
    int nt, mr, nr, mc, kc, nc;
    nnl_idx rows;
    ir_band_plan(g, team, &nt, &rows);
    int split = NNL_IR_BANDS;
    if (g->split == NNL_IR_CHANNELS) {
        split = NNL_IR_CHANNELS;
    } else if (g->split == NNL_IR_AUTO && team > 1 && g->n < 4 * (nnl_idx)team) {
        /* no channel split costs less than its mean share, its barriers and its share of
         * the depthwise reads: where the bands beat that, the tiles need not be cut (this
         * runs on every call) */
        const double bands = ir_bands_cost(g, nt, rows);
        const double floor = (macs + IR_D_COST * (double)g->n * g->oh * g->ow * g->e) / team +
                             2.0 * IR_SYNC_COST * (double)g->n;
        if (bands > floor &&
            nnl_gemm_blocking(isa, sizeof(float), &mr, &nr, &mc, &kc, &nc) == NNL_OK &&
            ir_channels_cost(g, team, mr, nr) < bands)
            split = NNL_IR_CHANNELS;
    }
    if (split == NNL_IR_CHANNELS)
        nt = team, rows = g->oh;
    *nt_out = nt, *rows_out = rows, *split_out = split;
}

/* elements of one thread's buffers for bands of ``rows`` output rows */
static void ir_buffer_sizes(const nnl_ir_geom *g, nnl_idx rows, nnl_idx *ein, nnl_idx *dout)
{
    const nnl_idx in_rows = nnl_min(g->h, (rows - 1) * g->s + 3), ep = ir_ep(g);
    *ein = (nnl_idx)nnl_round64((size_t)(in_rows * g->w * ep), sizeof(float));
    *dout = (nnl_idx)nnl_round64((size_t)(rows * g->ow * ep), sizeof(float));
}

/* the shared part of the work memory: the depthwise taps transposed to (9, ep) and its bias
 * (ep,), then the head conv's taps transposed to (K, ep) and its bias (ep,), zeros in the pad
 * channels */
static nnl_idx ir_shared_size(const nnl_ir_geom *g)
{
    const nnl_idx head = g->expand == NNL_IR_HEAD ? ir_head_taps(g) + 1 : 0;
    return (nnl_idx)nnl_round64((size_t)((10 + head) * ir_ep(g)), sizeof(float));
}

/* the buffer sets a call allocates: one per thread for the bands, one shared by the team
 * for the channel split (the whole image's tensors) */
static nnl_idx ir_buffer_sets(int nt, int split)
{
    return split == NNL_IR_CHANNELS ? 1 : nt;
}

nnl_idx nnl_ir_workspace(const nnl_ir_geom *g, int nthreads, int isa)
{
    if (!ir_geom_ok(g) || g->n == 0)
        return 0;
    int nt, split;
    nnl_idx rows, ein, dout;
    nnl_ir_plan(g, nthreads, isa, &nt, &rows, &split);
    ir_buffer_sizes(g, rows, &ein, &dout);
    return (nnl_idx)sizeof(float) * (ein + dout) * ir_buffer_sets(nt, split);
}

/* the rows of image ``n`` a thread's expand buffer holds: [lo, hi), row lo first */
typedef struct {
    nnl_idx n, lo, hi;
} ir_rows;

/* ------------------------------------------------------------------ the head conv
 * An image model's first conv (3 -> 32, 3x3 stride 2 in MobileNetV2) computed row by row into
 * the band buffer, channels-last, instead of into a map the block then reads back: the 112x112
 * map of 32 channels (1.6 MB) never leaves the thread's cache. Each output pixel's channels are
 * whole vectors, so a tap is one weight vector per channel vector times one broadcast input.
 * Every element sums its taps in (c, kh, kw) order from zero, then adds the bias (a tap in the
 * padding adding w * 0), then clamps: the few-channel kernel's order, the same bits. */
#if IR_VBYTES == 64
#define IR_HEAD_P 8     /* pixels per register block: 8 x 2 vector accumulators */
#else
#define IR_HEAD_P 4
#endif

/* P pixels (sw apart in x) x NV channel vectors of one output row whose taps all lie inside
 * the image: xp is the first pixel's tap (0, 0, 0), wc the taps' (K, ep) rows at the first
 * channel, bc the bias there, d the first pixel's output (pixels ep apart). */
static inline __attribute__((always_inline)) void
ir_head_block(const nnl_conv_geom *h, const float *xp, const float *wc, const float *bc, float *d,
              nnl_idx ep, const int P, const int NV)
{
    ir_vec acc[IR_HEAD_P][2];
    for (int p = 0; p < P; p++)
        for (int v = 0; v < NV; v++)
            acc[p][v] = (ir_vec){0};
    const nnl_idx sw = h->sw;
    for (nnl_idx c = 0; c < h->c; c++) {
        for (nnl_idx a = 0; a < h->kh; a++) {
            const float *xr = xp + c * h->xsc + a * h->dh * h->xsr;
            for (nnl_idx b = 0; b < h->kw; b++, wc += ep) {
                ir_vec w[2];
                for (int v = 0; v < NV; v++)
                    w[v] = ir_load(wc + v * IR_VL);
                const float *xs = xr + b * h->dw;
                for (int p = 0; p < P; p++) {
                    const float xv = xs[p * sw];
                    for (int v = 0; v < NV; v++)
                        acc[p][v] += w[v] * xv;
                }
            }
        }
    }
    for (int p = 0; p < P; p++)
        for (int v = 0; v < NV; v++)
            ir_store(d + p * ep + v * IR_VL,
                     ir_relu6(acc[p][v] + ir_load(bc + v * IR_VL)));
}

/* one output pixel (i, j) with taps in the padding: nv channel vectors, one at a time */
static void ir_head_edge(const nnl_conv_geom *h, const float *xn, nnl_idx i, nnl_idx j,
                         const float *wc, const float *bc, float *d, int nv, nnl_idx ep)
{
    for (int v = 0; v < nv; v++) {
        ir_vec acc = {0};
        const float *wt = wc + v * IR_VL;
        for (nnl_idx c = 0; c < h->c; c++)
            for (nnl_idx a = 0; a < h->kh; a++) {
                const nnl_idx r = i * h->sh - h->pt + a * h->dh;
                for (nnl_idx b = 0; b < h->kw; b++, wt += ep) {
                    const nnl_idx q = j * h->sw - h->pl + b * h->dw;
                    const float xv = r >= 0 && r < h->h && q >= 0 && q < h->w
                                         ? xn[c * h->xsc + r * h->xsr + q] : 0.0f;
                    acc += ir_load(wt) * xv;
                }
            }
        ir_store(d + v * IR_VL, ir_relu6(acc + ir_load(bc + v * IR_VL)));
    }
}

/* np pixels of one row, all taps inside (xp the first one's tap (0, 0, 0), d its output), in
 * register blocks of IR_HEAD_P, 4, 2, 1 pixels */
static void ir_head_run(const nnl_conv_geom *h, const float *xp, nnl_idx np, const float *wc,
                        const float *bc, float *d, int nv, nnl_idx ep)
{
    nnl_idx j = 0;
#define IR_HEAD_BLOCK(P)                                                                     \
    for (; np - j >= (P); j += (P)) {                                                        \
        if (nv == 2)                                                                         \
            ir_head_block(h, xp + j * h->sw, wc, bc, d + j * ep, ep, (P), 2);                \
        else                                                                                 \
            ir_head_block(h, xp + j * h->sw, wc, bc, d + j * ep, ep, (P), 1);                \
    }
    IR_HEAD_BLOCK(IR_HEAD_P)
#if IR_HEAD_P > 4
    IR_HEAD_BLOCK(4)
#endif
    IR_HEAD_BLOCK(2)
    IR_HEAD_BLOCK(1)
#undef IR_HEAD_BLOCK
}

/* The head conv's output rows [r0, r1) of image n (the block's input rows), channels
 * [e0, c1) in whole vectors, + bias, ReLU6, channels-last into dst (row r at
 * dst + (r - r0) * W * ep): wh the taps transposed (K, ep), bh the bias (ep,). */
static void ir_head_rows(const nnl_ir_geom *g, const float *x, const float *wh, const float *bh,
                         nnl_idx n, nnl_idx r0, nnl_idx r1, nnl_idx e0, nnl_idx c1, float *dst,
                         nnl_idx ep)
{
    const nnl_conv_geom *h = &g->head;
    const nnl_idx W = g->w;
    const float *xn = x + n * g->xsn;
    /* columns j whose taps j*sw - pl + b*dw all lie inside [0, w) */
    const nnl_idx jlo = nnl_min(W, nnl_cdiv(h->pl, h->sw));
    const nnl_idx last = h->w - 1 + h->pl - (h->kw - 1) * h->dw;
    const nnl_idx jhi = last < 0 ? jlo : nnl_max(jlo, nnl_min(W, last / h->sw + 1));
    for (nnl_idx r = r0; r < r1; r++) {
        const nnl_idx top = r * h->sh - h->pt;
        const int inside = top >= 0 && top + (h->kh - 1) * h->dh < h->h;
        const nnl_idx a0 = inside ? jlo : W, a1 = inside ? jhi : W;
        float *dr = dst + (r - r0) * W * ep;
        for (nnl_idx c = e0; c < c1;) {
            const int nv = c1 - c >= 2 * IR_VL ? 2 : 1;
            const float *wc = wh + c, *bc = bh + c;
            for (nnl_idx j = 0; j < a0; j++)
                ir_head_edge(h, xn, r, j, wc, bc, dr + j * ep + c, nv, ep);
            if (inside)
                ir_head_run(h, xn + top * h->xsr + (a0 * h->sw - h->pl), a1 - a0, wc, bc,
                            dr + a0 * ep + c, nv, ep);
            for (nnl_idx j = a1; j < W; j++)
                ir_head_edge(h, xn, r, j, wc, bc, dr + j * ep + c, nv, ep);
            c += nv * IR_VL;
        }
    }
}

/* the GEMM's bias kind for an optional bias vector (a conv without bias: none) */
static int ir_bias(const float *b, int kind)
{
    return b != NULL ? kind : NNL_BIAS_NONE;
}

/* expand input rows [r0, r1) of image n, its channels [e0, e1), into ebuf from its row ``at``
 * (without expand: copy them there channels-last): the product x^T (pixels, C) @ W1^T (C, E),
 * so that each pixel's E channels come out contiguous; W1^T is the B operand, packed once
 * (w1pk). Each element is the same sum, in the same order, as in W1 @ x: the same bits as the
 * unfused 1x1 conv. e0 is a multiple of the family's NR (a part of the product on its tile
 * grid). */
static int ir_expand(const nnl_ir_geom *g, const float *x, const float *w1, const float *w1pk,
                     const float *b1, int isa, nnl_idx n, nnl_idx r0, nnl_idx r1, nnl_idx e0,
                     nnl_idx e1, float *ebuf, nnl_idx ep, nnl_idx at)
{
    if (r1 <= r0 || e1 <= e0)
        return NNL_OK;
    const nnl_idx W = g->w, HW = g->h * W;
    const float *xr = x + n * g->xsn + r0 * W;
    float *dst = ebuf + at * W * ep;
    if (g->expand == NNL_IR_HEAD) {   /* w1, b1: the head's taps (K, ep) and bias (ep,) */
        ir_head_rows(g, x, w1, b1, n, r0, r1, e0, e1 == g->e ? ep : e1, dst, ep);
        return NNL_OK;
    }
    if (!g->expand) {   /* no expand: the input rows channels-last, ebuf[p*ep + c] = x[c, p] */
        nnl_transpose_s((int)(e1 - e0), (int)((r1 - r0) * W), xr + e0 * HW, HW, dst + e0, ep);
        return NNL_OK;
    }
    if (g->layout & NNL_IR_X_NHWC)   /* x^T is the rows of a channels-last image itself */
        return nnl_sgemm_part((r1 - r0) * W, g->e, g->c, 1.0f, x + n * g->xsn + r0 * W * g->c,
                              g->c, 1, w1, 1, g->c, 0.0f, dst, ep, 1, b1,
                              ir_bias(b1, NNL_BIAS_COL), NNL_ACT_RELU6, isa, NULL, w1pk, 0,
                              (r1 - r0) * W, e0, e1);
    return nnl_sgemm_part((r1 - r0) * W, g->e, g->c, 1.0f, xr, 1, HW, w1, 1, g->c, 0.0f, dst, ep,
                          1, b1, ir_bias(b1, NNL_BIAS_COL), NNL_ACT_RELU6, isa, NULL, w1pk, 0,
                          (r1 - r0) * W, e0, e1);
}

/* Depthwise 3x3 (stride s, padding 1) + bias + ReLU6 of output rows [i0, i1), channels
 * [c0, c1) (whole vectors), over the band's expanded rows [lo, hi) (channels-last, ep apart),
 * into d (channels-last, pixel (i - i0) * OW + j). Per channel vector, the nine tap vectors
 * stay in registers; each output sums bias, then the taps in row-major order, a tap outside
 * the image adding w * 0 (as the planar kernel's zero-padded buffer does): the same bits as
 * the unfused depthwise conv. */
/* Output pixels j .. j + 3 of a row whose three tap rows are row[0..2] (all columns inside):
 * each input vector of a tap row (column j*S - 1 + k, k < 3*S + 3) is loaded once, through one
 * pointer stepped by ep, and multiplied into every pixel u it is tap t = k - u*S of. Pixel u
 * still sums its taps in row-major order (t ascends with k), the order of the border loop. One
 * stepped pointer per row keeps the addresses in registers (with an address per (k, row) the
 * compiler kept 18-27 of them on the stack, reloading one before each multiply-add). */
static inline __attribute__((always_inline)) void ir_dw4(const float *const row[3], nnl_idx j,
                                                         const int S, nnl_idx ep,
                                                         const ir_vec w[9], ir_vec b, float *dr)
{
    ir_vec acc[4] = {b, b, b, b};
#pragma GCC unroll 3
    for (int a = 0; a < 3; a++) {
        const float *q = row[a] + (j * S - 1) * ep;
#pragma GCC unroll 9
        for (int k = 0; k < 3 * S + 3; k++, q += ep) {
            const ir_vec x = ir_load(q);
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) {
                const int t = k - u * S;
                if (t >= 0 && t < 3)
                    acc[u] += w[a * 3 + t] * x;
            }
        }
    }
#pragma GCC unroll 4
    for (int u = 0; u < 4; u++)
        ir_store(dr + (j + u) * ep, ir_relu6(acc[u]));
}

static void ir_depthwise(const nnl_ir_geom *g, const float *ebuf, nnl_idx lo, nnl_idx hi,
                         nnl_idx i0, nnl_idx i1, nnl_idx c0, nnl_idx c1, nnl_idx ep,
                         const float *wt, const float *bt, float *dbuf)
{
    const nnl_idx s = g->s, W = g->w, OW = g->ow;
    const ir_vec zero = {0};
    /* columns j whose three taps j*s - 1 .. j*s + 1 all lie inside [0, W) */
    const nnl_idx jlo = nnl_min(OW, 1), jhi = W >= 2 ? nnl_max(jlo, nnl_min(OW, (W - 2) / s + 1))
                                                     : jlo;
    for (nnl_idx c = c0; c < c1; c += IR_VL) {
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
                if (s == 1)
                    for (j = jlo; j + 4 <= jhi; j += 4)
                        ir_dw4(row, j, 1, ep, w, b, dr);
                else
                    for (j = jlo; j + 4 <= jhi; j += 4)
                        ir_dw4(row, j, 2, ep, w, b, dr);
                for (; j < jhi; j++) {
                    ir_vec acc = b;
#pragma GCC unroll 3
                    for (int a = 0; a < 3; a++) {
                        const float *p = row[a] + (j * s - 1) * ep;
#pragma GCC unroll 3
                        for (int t = 0; t < 3; t++)
                            acc += w[a * 3 + t] * ir_load(p + t * ep);
                    }
                    ir_store(dr + j * ep, ir_relu6(acc));
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
                ir_store(dr + j * ep, ir_relu6(acc));
            }
        }
    }
}

/* The project of output pixels [p0, p0 + np) of image n (d: their depthwise outputs,
 * channels-last, pixel q at dbuf + q * ep) as one product, of which only output channels
 * [f0, f1) and pixels [q0, q1) of the product are computed: y = W3 @ d + b3, onto the residual
 * r when there is one (copied into that part of y first, then accumulated with beta = 1, as the
 * unfused plan does). The part lies on the product's tile grid (f0 a multiple of the family's
 * MR, q0 of its NR; pixel-major: q0 of MR, f0 of NR), so its bits are the whole product's. */
static int ir_project(const nnl_ir_geom *g, const float *dbuf, const float *w3,
                      const float *w3pk, const float *b3, const float *r, float *y, int isa,
                      nnl_idx n, nnl_idx p0, nnl_idx np, nnl_idx f0, nnl_idx f1, nnl_idx q0,
                      nnl_idx q1)
{
    if (f1 <= f0 || q1 <= q0)
        return NNL_OK;
    const nnl_idx L = g->oh * g->ow, E = g->e, ep = ir_ep(g);
    const float beta = r != NULL ? 1.0f : 0.0f;
    if (g->layout & NNL_IR_Y_NHWC) {
        /* channels-last y: the pixel-major product's rows are y's pixels, row-major as is */
        float *yp = y + n * g->ysn + p0 * g->f;
        const float *rp = r != NULL ? r + n * g->rsn + p0 * g->f : NULL;
        if (rp != NULL && rp != yp)
            for (nnl_idx q = q0; q < q1; q++)
                memcpy(yp + q * g->f + f0, rp + q * g->f + f0, sizeof(float) * (size_t)(f1 - f0));
        return nnl_sgemm_part(np, g->f, E, 1.0f, dbuf, ep, 1, w3, 1, E, beta, yp, g->f, 1, b3,
                              ir_bias(b3, NNL_BIAS_COL), NNL_ACT_NONE, isa, NULL, w3pk, q0, q1,
                              f0, f1);
    }
    float *yb = y + n * g->ysn + p0;
    if (r != NULL) {
        const float *rb = r + n * g->rsn + p0;
        if (rb != yb)
            for (nnl_idx f = f0; f < f1; f++)
                memcpy(yb + f * L + q0, rb + f * L + q0, sizeof(float) * (size_t)(q1 - q0));
    }
    if (g->project_t)
        /* project pixel-major: y^T (pixels, F) = d (pixels, E) @ W3^T, C column-major (a
         * band of few pixels: F, not the pixel count, is cut into vector panels) */
        return nnl_sgemm_part(np, g->f, E, 1.0f, dbuf, ep, 1, w3, 1, E, beta, yb, 1, L, b3,
                              ir_bias(b3, NNL_BIAS_COL), NNL_ACT_NONE, isa, NULL, w3pk, q0, q1,
                              f0, f1);
    /* project: W3 @ d with d read transposed (pixel-major), the GEMM packing it with its
     * 8 x 8 transposes */
    return nnl_sgemm_part(g->f, np, E, 1.0f, w3, E, 1, dbuf, 1, ep, beta, yb, L, 1, b3,
                          ir_bias(b3, NNL_BIAS_ROW), NNL_ACT_NONE, isa, w3pk, NULL, f0, f1, q0, q1);
}

/* one band: output rows [i0, i1) of image n. The rows of the thread's previous band (``have``)
 * that this band reads too are moved to their new place instead of being expanded again (the
 * previous band may lie above or below: a thread steals bands backwards). */
static int ir_band(const nnl_ir_geom *g, const float *x, const float *w1, const float *w1pk,
                   const float *b1, const float *wt, const float *bt, const float *w3,
                   const float *w3pk, const float *b3, const float *r, float *y, int isa,
                   nnl_idx n, nnl_idx i0, nnl_idx i1, float *ebuf, float *dbuf, ir_rows *have)
{
    const nnl_idx s = g->s, W = g->w, OW = g->ow, ep = ir_ep(g);
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
    int rc = ir_expand(g, x, w1, w1pk, b1, isa, n, lo, ov_lo, 0, g->e, ebuf, ep, 0);
    if (rc == NNL_OK)
        rc = ir_expand(g, x, w1, w1pk, b1, isa, n, ov_hi, hi, 0, g->e, ebuf, ep, ov_hi - lo);
    if (rc != NNL_OK) {
        have->n = -1;
        return rc;
    }
    ir_depthwise(g, ebuf, lo, hi, i0, i1, 0, ep, ep, wt, bt, dbuf);
    return ir_project(g, dbuf, w3, w3pk, b3, r, y, isa, n, i0 * OW, out_rows * OW, 0, g->f, 0,
                      out_rows * OW);
}

/* The next unit of range ``own``: its front, else (the range done) the back of the range
 * with most left, so a thread that loses its core for a while on a shared machine is covered
 * by the others. -1 when no unit is left. front/back are guarded by the spin lock `lock`. */
static nnl_idx ir_claim(nnl_idx *front, nnl_idx *back, int nr, int own, int *lock)
{
    nnl_idx u = -1;
    nnl_spin_lock(lock);
    if (front[own] < back[own]) {
        u = front[own]++;
    } else {
        int v = -1;
        for (int t = 0; t < nr; t++)
            if (back[t] - front[t] > 0 && (v < 0 || back[t] - front[t] > back[v] - front[v]))
                v = t;
        if (v >= 0)
            u = --back[v];
    }
    nnl_spin_unlock(lock);
    return u;
}

/* The pad channels of a buffer of pixels ep apart: zeros (the expand never writes them). */
static void ir_zero_pad(const nnl_ir_geom *g, float *buf, nnl_idx elems, nnl_idx ep)
{
    if (ep > g->e)
        for (nnl_idx p = 0; p < elems / ep; p++)
            memset(buf + p * ep + g->e, 0, sizeof(float) * (size_t)(ep - g->e));
}

/* The work of one fused-block call, as the units of its pool loops see it. */
typedef struct {
    const nnl_ir_geom *g;
    const float *x, *w1, *w1pk, *b1, *wt, *bt, *w3, *w3pk, *b3, *r;
    float *y;
    int isa, nt;
    /* bands */
    nnl_idx rows, bands, ein, dout, *claims;
    float *bufs;
    ir_rows *have;
    int lock;
    /* channel split: the GEMM's register tile, the shared buffers, the image */
    int mr, nr;
    float *ebuf, *dbuf;
    nnl_idx n;
    int status;
} ir_job;

/* Range `s` of the bands (the pool hands ranges out in order, so a thread starts on a
 * contiguous run and consecutive bands of an image share their halo rows instead of expanding
 * them twice), then the backs of the ranges still running. */
static void ir_band_range(void *ctx, nnl_idx s, int tid, int first)
{
    ir_job *j = (ir_job *)ctx;
    const nnl_ir_geom *g = j->g;
    float *ebuf = j->bufs + (size_t)tid * (size_t)(j->ein + j->dout);
    float *dbuf = ebuf + j->ein;
    if (first) {
        ir_zero_pad(g, ebuf, j->ein, ir_ep(g));
        j->have[tid] = (ir_rows){-1, 0, 0};
    }
    for (;;) {
        const nnl_idx u = ir_claim(j->claims, j->claims + j->nt, j->nt, (int)s, &j->lock);
        if (u < 0)
            break;
        const nnl_idx n = u / j->bands, i0 = (u % j->bands) * j->rows;
        nnl_status_set(&j->status,
                       ir_band(g, j->x, j->w1, j->w1pk, j->b1, j->wt, j->bt, j->w3, j->w3pk,
                               j->b3, j->r, j->y, j->isa, n, i0,
                               nnl_min(g->oh, i0 + j->rows), ebuf, dbuf, &j->have[tid]));
    }
}

static int ir_run_bands(ir_job *j, nnl_idx rows, float *bufs, nnl_idx ein, nnl_idx dout,
                        nnl_idx *claims, ir_rows *have)
{
    const nnl_ir_geom *g = j->g;
    const int nt = j->nt;
    const nnl_idx bands = nnl_cdiv(g->oh, rows), units = g->n * bands;
    for (int t = 0; t < nt; t++) {
        claims[t] = units * t / nt;
        claims[nt + t] = units * (t + 1) / nt;
    }
    j->rows = rows, j->bands = bands, j->ein = ein, j->dout = dout, j->claims = claims;
    j->bufs = bufs, j->have = have, j->lock = 0, j->status = NNL_OK;
    nnl_parallel_for(nt, nt, ir_band_range, j);
    return j->status;
}

/* The channel split, image by image: share t of nt expands its channels of the whole image
 * and runs their depthwise conv into the shared d (both channels-last, ebuf and dbuf hold the
 * whole image); when every share is done, share t projects its output channels from all of
 * d; the next image starts when every projection is done (it overwrites d). Each phase is one
 * pool loop over the nt shares, so a thread that has not come yet holds nothing up: the
 * shares are the same whoever runs them. */
static void ir_share_rects(const ir_job *j, int t, int project, ir_rect *rc, int *count)
{
    ir_axis o, i;
    double cost;
    if (project)
        ir_project_axes(j->g, j->mr, j->nr, &o, &i);
    else
        ir_expand_axes(j->g, j->nr, &o, &i);
    *count = ir_tile_share(&o, &i, j->nt, t, rc, &cost);
}

static void ir_share_expand(void *ctx, nnl_idx t, int tid, int first)
{
    ir_job *j = (ir_job *)ctx;
    const nnl_ir_geom *g = j->g;
    ir_rect ex[3];
    int nex;
    (void)tid, (void)first;
    ir_share_rects(j, (int)t, 0, ex, &nex);
    /* expanded channels [e0, e1); the depthwise conv's in whole vectors, the last share
     * running the pad ones */
    const nnl_idx e0 = nex > 0 ? ex[0].o0 : 0, e1 = nex > 0 ? ex[nex - 1].o1 : 0;
    const nnl_idx ep = ir_ep(g), c1 = e1 == g->e ? ep : e1;
    const int rc = ir_expand(g, j->x, j->w1, j->w1pk, j->b1, j->isa, j->n, 0, g->h, e0, e1,
                             j->ebuf, ep, 0);
    if (rc == NNL_OK && e1 > e0)
        ir_depthwise(g, j->ebuf, 0, g->h, 0, g->oh, e0, c1, ep, j->wt, j->bt, j->dbuf);
    nnl_status_set(&j->status, rc);
}

static void ir_share_project(void *ctx, nnl_idx t, int tid, int first)
{
    ir_job *j = (ir_job *)ctx;
    const nnl_ir_geom *g = j->g;
    ir_rect pr[3];
    int npr, rc = NNL_OK;
    (void)tid, (void)first;
    ir_share_rects(j, (int)t, 1, pr, &npr);
    for (int k = 0; k < npr && rc == NNL_OK; k++)
        rc = ir_project(g, j->dbuf, j->w3, j->w3pk, j->b3, j->r, j->y, j->isa, j->n, 0,
                        g->oh * g->ow, pr[k].i0, pr[k].i1, pr[k].o0, pr[k].o1);
    nnl_status_set(&j->status, rc);
}

static int ir_run_channels(ir_job *j, float *ebuf, nnl_idx ein, float *dbuf)
{
    const nnl_ir_geom *g = j->g;
    int mc, kc, nc;
    if (nnl_gemm_blocking(j->isa, sizeof(float), &j->mr, &j->nr, &mc, &kc, &nc) != NNL_OK)
        return NNL_EINVAL;
    ir_zero_pad(g, ebuf, ein, ir_ep(g));
    j->ebuf = ebuf, j->dbuf = dbuf, j->status = NNL_OK;
    for (nnl_idx n = 0; n < g->n && j->status == NNL_OK; n++) {
        j->n = n;
        nnl_parallel_for(j->nt, j->nt, ir_share_expand, j);
        if (j->status == NNL_OK)
            nnl_parallel_for(j->nt, j->nt, ir_share_project, j);
    }
    return j->status;
}

nnl_idx nnl_ir_prepared_size(const nnl_ir_geom *g)
{
    return ir_geom_ok(g) ? ir_shared_size(g) : 0;
}

int nnl_ir_prepare(const nnl_ir_geom *g, const float *w1, const float *b1, const float *wd,
                   const float *bd, float *prep)
{
    if (!ir_geom_ok(g))
        return NNL_EINVAL;
    const nnl_idx ep = ir_ep(g);
    float *wt = prep, *bt = prep + 9 * ep;
    for (nnl_idx e = 0; e < ep; e++) {
        for (int k = 0; k < 9; k++)
            wt[k * ep + e] = e < g->e ? wd[e * 9 + k] : 0.0f;
        bt[e] = e < g->e && bd != NULL ? bd[e] : 0.0f;
    }
    if (g->expand == NNL_IR_HEAD) {   /* the head's taps and bias, transposed likewise */
        const nnl_idx K = ir_head_taps(g);
        float *wh = prep + 10 * ep, *bh = wh + K * ep;
        for (nnl_idx e = 0; e < ep; e++) {
            for (nnl_idx k = 0; k < K; k++)
                wh[k * ep + e] = e < g->e ? w1[e * K + k] : 0.0f;
            bh[e] = e < g->e && b1 != NULL ? b1[e] : 0.0f;
        }
    }
    return NNL_OK;
}

int nnl_inverted_residual_s(const nnl_ir_geom *g, const float *x, const float *w1,
                            const float *w1pk, const float *b1, const float *w3,
                            const float *w3pk, const float *b3, const float *r, float *y,
                            const float *prep, int nthreads, int isa)
{
    if (!ir_geom_ok(g) || prep == NULL)
        return NNL_EINVAL;
    if (g->n == 0)
        return NNL_OK;
    int nt, split;
    nnl_idx rows, ein, dout;
    nnl_ir_plan(g, nthreads, isa, &nt, &rows, &split);
    ir_buffer_sizes(g, rows, &ein, &dout);
    const nnl_idx ep = ir_ep(g), sets = ir_buffer_sets(nt, split);
    /* the buffer sets, then the band claim counters (front[nt], back[nt]) and what each
     * thread's expand buffer holds (have[nt]) */
    float *bufs = (float *)nnl_alloc64(sizeof(float) * (size_t)((ein + dout) * sets) +
                                       (2 * sizeof(nnl_idx) + sizeof(ir_rows)) * (size_t)nt);
    if (bufs == NULL)
        return NNL_ENOMEM;
    const float *wt = prep, *bt = prep + 9 * ep;
    if (g->expand == NNL_IR_HEAD) {   /* the head's prepared taps and bias */
        w1 = prep + 10 * ep, b1 = w1 + ir_head_taps(g) * ep, w1pk = NULL;
    }
    ir_job j = {g, x, w1, w1pk, b1, wt, bt, w3, w3pk, b3, r, y, isa, nt};
    nnl_idx *claims = (nnl_idx *)(bufs + (size_t)(ein + dout) * (size_t)sets);
    const int status = split == NNL_IR_CHANNELS
                           ? ir_run_channels(&j, bufs, ein, bufs + ein)
                           : ir_run_bands(&j, rows, bufs, ein, dout, claims,
                                          (ir_rows *)(claims + 2 * nt));
    nnl_free64(bufs);
    return status;
}
