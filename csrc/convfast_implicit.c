/* Implicit-GEMM conv2d driver (see convfast.h for the contract).
 *
 * Work units, as in the GEMM driver: (image n, group g, at most MC output channels, a range of
 * NR-wide GEMM columns). A thread computes a unit alone, with its own buffers, by the GEMM's
 * own loop nest (gemm_nest, gemm_nest_tmpl.h) fed by the B packers and the tile write-out of
 * convfast_implicit_tmpl.h:
 *
 *   [copy the unit's band of image rows, zero-padded and stride-phase split]   (CF_WIDE)
 *   for pc in K by KC (up to NNL_CF_KC_WIDE * KC, see cf_plan_call):
 *     pack W_g[rows, pc:+KC] -> Ap                       MR-tall micro-panels, L2-resident
 *     for jc in the unit's columns by CHUNK*NR:
 *       pack cols_g[pc:+KC, jc:+CHUNK*NR] -> Bp          from the image, never an im2col matrix
 *       for each NR panel q of the chunk:                KC x NR micro-panel, L1/L2
 *         for ir in rows by MR:  micro-kernel y[ir:+MR, q] (+)= Ap[ir] @ Bp[q]
 *
 * Where the B panels come from (cf_make_plan picks one per call):
 *   CF_WIDE     the "wide" layout of nnlite._planops: per channel, the zero-padded image split
 *               into its SH*SW stride phases (HQ x WQ each, WQ = OW + (KW-1)*DW/SW). GEMM column
 *               t = i*WQ + j is output pixel (i, j) for j < OW (the WQ - OW others are computed
 *               and dropped), and B row k = (c, a, b) is ONE contiguous run of the phase of tap
 *               (a, b), so a panel row is a single 48-float copy. A unit copies only the band
 *               of phase rows its columns read; the micro-kernel writes an MR x NR tile that
 *               cf_scatter adds into y without the dropped columns. Chosen when the padded
 *               image is at most a quarter of the column matrix (3x3 stride 1: 1/9).
 *   CF_SELF     stride 1, no padding, whole rows: the image itself is the wide layout (no copy;
 *               for a pointwise conv the GEMM runs on the image directly, writing y in place).
 *   CF_SEGMENTS otherwise (e.g. a strided conv whose kernel is not wider than the stride): the
 *               panels are packed from the image with the im2col index arithmetic, zeros for
 *               the padding (cf_pack_cols).
 *
 * Extra memory: per thread one A block, one B chunk, a tile and the band copy: a few hundred KB
 * (at most a quarter of the column matrix) instead of the C*KH*KW*OH*OW column matrix per
 * image. The K slices and the MR x NR tile grid (anchored at column 0 of each (n, g) product)
 * are fixed by the shape alone, so every element is reduced in the same order for any thread
 * count. Units are handed out dynamically: no barrier inside a call, so a core taken by another
 * process for a while only means the other thread takes more units. Nothing is static; the
 * one work buffer is malloc'd per call and freed before returning.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "convfast.h"
#include "nnl_lanes.h"

#if NNL_X86_DISPATCH
#include <immintrin.h>   /* the weight gradient's staging (cf_wg_t8) */
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef NNL_CF_CHUNK_BYTES
#define NNL_CF_CHUNK_BYTES ((size_t)96 << 10)  /* B chunk packed at once: beside the A block */
#endif
#ifndef NNL_CF_SELF_SCATTER_FG
#define NNL_CF_SELF_SCATTER_FG 96  /* CF_SELF with at most this many rows: B-direct + scatter */
#endif
#ifndef NNL_CF_KC_WIDE
#define NNL_CF_KC_WIDE 2   /* K slices up to this many times the GEMM's KC (see cf_plan_call) */
#endif
#ifndef NNL_CF_UNITS_PER_THREAD
#define NNL_CF_UNITS_PER_THREAD 4              /* dynamic scheduling granularity */
#endif
#ifndef NNL_CF_MIN_UNIT_PANELS
#define NNL_CF_MIN_UNIT_PANELS 2               /* narrowest unit, in NR panels */
#endif
/* Share of the L2 a unit's band copy may take (the few-channel kernel's bands take the same).
 * Before, one thread took all columns as one unit: ResNet-50's 128->128 3x3/2 at 56x56 copied
 * the 1.7 MB padded image and read its panels from L3. Intel Emerald Rapids (2 MB L2), one
 * thread, plan step, in-process alternated medians: 4.06 -> 3.91 ms and 4.30 -> 3.95 ms;
 * 64->64 3x3/2 at 56x56 1.15 -> 1.10 ms and 1.10 -> 1.06 ms; 2 threads unchanged (their units
 * were already that narrow). Only where the items (images x groups) are no more than the
 * threads: see cf_make_plan. */
#ifndef NNL_CF_BAND_L2_SHARE
#define NNL_CF_BAND_L2_SHARE 0.25
#endif
/* Single-thread cut-off NNL_CF_MIN_PARALLEL_MACS: csrc/core/nnl_tuning.h. */

static int cf_geom_ok(const nnl_conv_geom *g)
{
    if (g->n < 0 || g->c < 0 || g->h < 0 || g->w < 0 || g->f < 0 || g->g < 1 || g->oh < 0 ||
        g->ow < 0)
        return 0;
    if (g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1 || g->dh < 1 || g->dw < 1 ||
        g->pt < 0 || g->pl < 0)
        return 0;
    return g->c % g->g == 0 && g->f % g->g == 0;
}

/* Where the B panels come from (see the file comment). */
#define CF_SEGMENTS 0   /* packed from the image with the im2col index arithmetic */
#define CF_SELF 1       /* the image is its own wide layout (stride 1, no padding, whole rows) */
#define CF_WIDE 2       /* from a zero-padded, stride-phase-split copy of a band of rows */

#define CF_MAXK 64       /* CF_WIDE for kernels up to this size per axis */

/* The distinct (a*d) % s for a < k (k <= CF_MAXK), ascending, into out; their count. */
static int cf_phases(nnl_idx k, nnl_idx d, nnl_idx s, nnl_idx *out)
{
    int n = 0;
    for (nnl_idx a = 0; a < k && a < CF_MAXK; a++) {
        const nnl_idx r = (a * d) % s;
        int i = n;
        while (i > 0 && out[i - 1] > r)   /* insertion sort, skipping duplicates */
            i--;
        if (i > 0 && out[i - 1] == r)
            continue;
        for (int j = n; j > i; j--)
            out[j] = out[j - 1];
        out[i] = r;
        n++;
    }
    return n;
}

/* The wide layout's phase rows and row length (CF_WIDE, CF_SELF): HQ = OH + (KH-1)*DH / SH,
 * WQ = OW + (KW-1)*DW / SW. */
static void cf_wide_dims(const nnl_conv_geom *g, nnl_idx *hq, nnl_idx *wq)
{
    *hq = g->oh + ((g->kh - 1) * g->dh) / g->sh;
    *wq = g->ow + ((g->kw - 1) * g->dw) / g->sw;
}

/* The blocking of one call, shared by the driver and the workspace query. */
typedef struct {
    int mr, nr;
    nnl_idx fg, cg, k, l;        /* GEMM sizes per (n, g): M = FG, K = CG*KH*KW; L = OH*OW */
    int mode;                    /* CF_SEGMENTS, CF_SELF or CF_WIDE */
    nnl_idx hq, wq;              /* wide layout: phase rows, row length */
    nnl_idx band, pstride;       /* CF_WIDE: phase rows per band copy, elements per band phase */
    int nrph, ncph;              /* CF_WIDE: stride phases the taps use (rows, columns) ... */
    nnl_idx rph[CF_MAXK], cph[CF_MAXK];   /* ... (a*DH) % SH and (b*DW) % SW, ascending */
    nnl_idx ncols;               /* GEMM N: L, or the wide length (OH-1)*WQ + OW */
    int scatter;                 /* wide columns j >= OW are dropped on the way to y */
    int bdirect_all;             /* every panel read in place by the B-direct kernel */
    nnl_idx kcb_max;             /* K slices of at most kcb_max (all but the last full) */
    nnl_idx ru, mu;              /* row groups per (n, g), rows per group (an MR multiple) */
    nnl_idx cu, nu;              /* column units per (n, g), columns per unit (an NR multiple) */
    nnl_idx units, chunk;        /* all units; NR panels packed at once */
    int nt;
    size_t a_elems, b_elems;     /* per thread: A block, B chunk */
    size_t t_elems, w_elems;     /* per thread: MR x NR tile, band copy */
    size_t koff_elems;           /* K tap offsets (nnl_idx) */
} cf_plan;

static void cf_make_plan(const nnl_conv_geom *g, int mr, int nr, int mc, int kc, size_t elsize,
                         int nthreads, int bdirect, int wide, int apacked, cf_plan *p)
{
    p->mr = mr, p->nr = nr;
    p->fg = g->f / g->g;
    p->cg = g->c / g->g;
    p->k = p->cg * g->kh * g->kw;
    p->l = g->oh * g->ow;
    p->kcb_max = nnl_k_slice(p->k, kc);
    /* row groups: at most MC rows each, balanced */
    nnl_idx ru = nnl_cdiv(p->fg, mc);
    p->mu = nnl_cdiv(nnl_cdiv(p->fg, ru), mr) * mr;
    p->ru = nnl_cdiv(p->fg, p->mu);
    int nt = nnl_team_size(nthreads, (double)g->n * g->f * p->k * p->l,
                           NNL_CF_MIN_PARALLEL_MACS);
    const nnl_idx items = g->n * g->g;

    /* B source (see the file comment); ``wide`` asks for CF_WIDE where CF_SELF does not apply */
    cf_wide_dims(g, &p->hq, &p->wq);
    p->nrph = p->ncph = 1;
    p->rph[0] = p->cph[0] = 0;
    if (g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pl == 0 && p->wq == g->w &&
        p->hq <= g->h && g->xsr == g->w)
        p->mode = CF_SELF;
    else if (wide && g->kh <= CF_MAXK && g->kw <= CF_MAXK)
        p->mode = CF_WIDE;
    else
        p->mode = CF_SEGMENTS;
    if (p->mode == CF_WIDE) {
        p->nrph = cf_phases(g->kh, g->dh, g->sh, p->rph);
        p->ncph = cf_phases(g->kw, g->dw, g->sw, p->cph);
    }
    p->ncols = p->mode == CF_SEGMENTS ? p->l : (g->oh - 1) * p->wq + g->ow;
    /* In the wide layouts the tile goes through cf_scatter when wide columns are dropped, and
     * also for a short A (few output channels) when the B-direct kernel exists: packing B
     * then costs more than the scatter, as every packed panel serves few rows. */
    p->scatter = p->mode != CF_SEGMENTS &&
                 (p->wq != g->ow || (bdirect && p->fg <= NNL_CF_SELF_SCATTER_FG));

    const nnl_idx panels = nnl_cdiv(p->ncols, nr);
    nnl_idx cu = 1;
    if (nt > 1) {
        /* About NNL_CF_UNITS_PER_THREAD units per thread, cut by output channels (each unit
         * packs its own rows of A: a strided gather, rows x K) and by columns (each unit packs
         * its own columns of B: contiguous copies, K x columns). Of the cuts that give enough
         * units, take the one that repacks least (A elements counted 4 times dearer; nothing
         * when the weights come pre-packed, ``apacked``); row groups keep at least 2*MR rows,
         * column units at least NNL_CF_MIN_UNIT_PANELS panels. The cut never changes the
         * arithmetic: row groups start at multiples of MR. */
        const nnl_idx target = (nnl_idx)NNL_CF_UNITS_PER_THREAD * nt;
        const nnl_idx most_c = nnl_max(1, panels / NNL_CF_MIN_UNIT_PANELS);
        const nnl_idx most_r = nnl_max(p->ru, p->fg / (2 * mr));
        nnl_idx best_r = p->ru, best_c = 1, best_units = 0;
        double best_cost = 0;
        for (nnl_idx r = p->ru; r <= most_r; r++) {
            const nnl_idx c = nnl_min(most_c, nnl_max(1, nnl_cdiv(target, items * r)));
            const nnl_idx units = nnl_min(target, items * r * c);
            const double cost = (apacked ? 0.0 : 4.0 * (double)c * p->fg) +
                                (double)r * p->ncols;
            if (units > best_units || (units == best_units && cost < best_cost)) {
                best_r = r, best_c = c, best_units = units, best_cost = cost;
            }
        }
        p->mu = nnl_cdiv(nnl_cdiv(p->fg, best_r), mr) * mr;
        p->ru = nnl_cdiv(p->fg, p->mu);
        cu = best_c;
    }
    if (p->mode == CF_WIDE && items <= nt) {
        /* one (image, group) item or fewer per thread: at most the columns whose band copy
         * (their phase rows of every channel, plus the kernel's reach and a partial row at
         * either end) fits NNL_CF_BAND_L2_SHARE of the L2, beside the A block and the tiles
         * (at least NNL_CF_MIN_UNIT_PANELS panels); else one thread copies the whole image and
         * reads its B panels from L3. More items than threads keep one unit an item: every
         * extra unit streams the weights again (a batch of 8: 128->128 3x3/2 at 56x56 0.91x
         * the time with the cut, 256->256 3x3/2 at 28x28 1.09x) */
        const double row_bytes = (double)p->cg * p->nrph * p->ncph * p->wq * (double)elsize;
        const double fit = NNL_CF_BAND_L2_SHARE * (double)nnl_cache_sizes()->l2 / row_bytes;
        const nnl_idx reach = ((g->kh - 1) * g->dh) / g->sh + 2;
        const nnl_idx rows = nnl_max(1, (nnl_idx)fit - reach);
        const nnl_idx most = nnl_max(NNL_CF_MIN_UNIT_PANELS, rows * p->wq / nr);
        cu = nnl_max(cu, nnl_cdiv(panels, most));
    }
    p->nu = nnl_cdiv(panels, cu) * nr;
    p->cu = nnl_cdiv(p->ncols, p->nu);
    p->units = items * p->ru * p->cu;
    p->nt = (nnl_idx)nt > p->units ? (int)p->units : nt;
    if (p->nt < 1)
        p->nt = 1;
    nnl_idx chunk = (nnl_idx)(NNL_CF_CHUNK_BYTES / (elsize * (size_t)p->kcb_max * (size_t)nr));
    p->chunk = chunk < 1 ? 1 : nnl_min(chunk, p->nu / nr);
    /* a unit's columns span at most this many output rows, plus the kernel's reach */
    p->band = nnl_min(p->hq, nnl_min(p->nu, p->ncols) / p->wq + 2 +
                     ((g->kh - 1) * g->dh) / g->sh);
    p->pstride = p->band * p->wq;
    p->a_elems = apacked ? 0 : nnl_round64((size_t)p->mu * (size_t)p->kcb_max, elsize);
    /* CF_WIDE with the B-direct kernel reads every panel, the last partial one too, in place
     * from the band (no B buffer); its reads past the wide length land in slack at the band's
     * end and only fill tile columns that cf_scatter drops */
    p->bdirect_all = bdirect && p->scatter && p->mode == CF_WIDE;
    p->b_elems = p->bdirect_all ? 0
                 : nnl_round64((size_t)p->kcb_max * (size_t)(p->chunk * nr), elsize);
    p->t_elems = p->scatter ? nnl_round64((size_t)mr * (size_t)nr, elsize) : 0;
    /* + WQ: reads for the dropped columns of a band's last row may run past its end */
    p->w_elems = p->mode == CF_WIDE
                 ? nnl_round64((size_t)p->cg * p->nrph * p->ncph * p->pstride + p->wq +
                              (p->bdirect_all ? nr : 0), elsize)
                 : 0;
    p->koff_elems = p->mode == CF_SEGMENTS ? 0 : (size_t)p->k;
}

/* Bytes of the one work block: tap offsets, then per thread A block, B chunk, tile and band
 * copy (64-byte aligned pieces). */
static size_t cf_work_bytes(const cf_plan *p, size_t elsize)
{
    const size_t head = (p->koff_elems * sizeof(nnl_idx) + 63) / 64 * 64;
    return head + elsize * (p->a_elems + p->b_elems + p->t_elems + p->w_elems) * (size_t)p->nt;
}

/* The plan of a call: the B source and the K slicing, chosen by the work memory of a 2-thread
 * call against the call's column matrix (N*C*KH*KW*OH*OW elements):
 *   - K slices NNL_CF_KC_WIDE times deeper than the GEMM's KC when the call fits in a quarter
 *     of it: they halve the passes over y (each reloads the output tiles, and in the wide
 *     layout goes through the tile scatter), 5-10% faster on 3x3 convs;
 *   - else the GEMM's KC, CF_WIDE (a band copy per unit) while the call fits in a quarter,
 *     or in half of it for a strided conv (the stride phases of 3x3/2 make the padded copy
 *     4/9 of its columns; the im2col-arithmetic packer costs 30% more time there);
 *   - else CF_SEGMENTS.
 * A pointwise conv (CF_SELF, no copy) always takes the deep slices, and so does a CF_WIDE
 * call whose panels the B-direct kernel reads in place when the deep A block stays within
 * the GEMM's MC x KC. The choice depends on the
 * geometry only, never on the thread count, so the K slicing (the summation order) is the
 * same for every nthreads. */
static void cf_plan_call(const nnl_conv_geom *g, int mr, int nr, int mc, int kc, size_t elsize,
                         int nthreads, int bdirect, int apacked, cf_plan *p)
{
    const double cols = (double)g->n * g->c * g->kh * g->kw * g->oh * g->ow * elsize;
    const double wide_budget = (g->sh > 1 || g->sw > 1) ? cols / 2 : cols / 4;
    const int deep = kc * NNL_CF_KC_WIDE;
    int wide = 1, kc_call = kc;
    /* (the choice never depends on apacked either: pre-packed weights serve the same slices) */
    cf_make_plan(g, mr, nr, mc, deep, elsize, 2, bdirect, 1, 0, p);
    if ((p->mode == CF_SELF && g->kh == 1 && g->kw == 1) ||
        (double)cf_work_bytes(p, elsize) <= cols / 4) {
        kc_call = deep;
    } else {
        const nnl_idx deep_a = p->mu * p->kcb_max;   /* the deep plan's A block */
        cf_make_plan(g, mr, nr, mc, kc, elsize, 2, bdirect, 1, 0, p);
        if ((double)cf_work_bytes(p, elsize) > wide_budget) {
            wide = 0;
            cf_make_plan(g, mr, nr, mc, deep, elsize, 2, bdirect, 0, 0, p);
            if ((double)cf_work_bytes(p, elsize) <= cols / 4)
                kc_call = deep;
        } else if (p->bdirect_all && deep_a <= (nnl_idx)mc * kc) {
            /* CF_WIDE read in place by the B-direct kernel: no B chunk, so the deep slices
             * cost only a larger A block (still within the GEMM's MC x KC) and save passes of
             * the tile scatter over y (128->128 3x3/2 @56: 5 -> 3 slices, 3-4% less time on
             * 1 and 2 threads, Zen 4) */
            kc_call = deep;
        }
    }
    cf_make_plan(g, mr, nr, mc, kc_call, elsize, nthreads, bdirect, wide, apacked, p);
}

/* float32 */
#define T float
#define EPI_T nnl_epi_s
#define KERNEL_T nnl_kernel_s
#define FN(name) name##_s
#define CF_GEMM nnl_sgemm
#define CF_BDIRECT 1
#define PACK_A8 nnl_pack_a8_s
#define PACK_T8 nnl_pack_t8_s
#define PACK_TR nnl_pack_tr_s
#include "convfast_implicit_tmpl.h"
#undef PACK_T8
#undef PACK_TR
#undef PACK_A8
#undef CF_GEMM
#undef CF_BDIRECT
#undef T
#undef EPI_T
#undef KERNEL_T
#undef FN

/* float64 */
#define T double
#define EPI_T nnl_epi_d
#define KERNEL_T nnl_kernel_d
#define FN(name) name##_d
#define CF_GEMM nnl_dgemm
#define CF_BDIRECT 0
#include "convfast_implicit_tmpl.h"
#undef CF_GEMM
#undef CF_BDIRECT
#undef T
#undef EPI_T
#undef KERNEL_T
#undef FN

nnl_idx nnl_conv_implicit_workspace(const nnl_conv_geom *geom, int elsize, int nthreads, int isa)
{
    int mr, nr, mc, kc, nc;
    if (!cf_geom_ok(geom) || nnl_gemm_blocking(isa, elsize, &mr, &nr, &mc, &kc, &nc) != NNL_OK)
        return -1;
    if (geom->n == 0 || geom->f == 0 || geom->oh == 0 || geom->ow == 0 || geom->c == 0)
        return 0;
    cf_plan p;
    cf_plan_call(geom, mr, nr, mc, kc, (size_t)elsize, nthreads,
                 elsize == 4 && nnl_cf_bdirect_ok(isa, mr, nr), 0, &p);
    return (nnl_idx)(cf_work_bytes(&p, (size_t)elsize) + 64);
}

nnl_idx nnl_conv_implicit_wide_bytes(const nnl_conv_geom *geom, int elsize)
{
    if (!cf_geom_ok(geom) || elsize < 1)
        return -1;
    if (geom->kh > CF_MAXK || geom->kw > CF_MAXK)
        return 0;
    nnl_idx hq, wq, rph[CF_MAXK], cph[CF_MAXK];
    cf_wide_dims(geom, &hq, &wq);
    return geom->c / geom->g * cf_phases(geom->kh, geom->dh, geom->sh, rph) *
           cf_phases(geom->kw, geom->dw, geom->sw, cph) * hq * wq * elsize;
}

nnl_idx nnl_conv_implicit_wpack_size(const nnl_conv_geom *geom, int elsize, int isa)
{
    int mr, nr, mc, kc, nc;
    if (!cf_geom_ok(geom) || nnl_gemm_blocking(isa, elsize, &mr, &nr, &mc, &kc, &nc) != NNL_OK)
        return -1;
    const nnl_idx fg = geom->f / geom->g, k = geom->c / geom->g * geom->kh * geom->kw;
    return geom->g * nnl_cdiv(fg, mr) * mr * k;
}
