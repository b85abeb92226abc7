/* nnlite GEMM driver: BLIS-style blocking and packing around a register micro-kernel
 * (gemm_generic.c / gemm_avx2.c / gemm_avx512.c), OpenMP over work units, float32 and float64.
 *
 * C[M, N] (row-major, every batch item) is cut into work units: at most MC rows (an MR
 * multiple) by a range of NR column panels. A thread computes a whole unit alone, with its own
 * packing buffers (see gemm_nest in gemm_nest_tmpl.h; the implicit conv runs the same nest
 * with its own B packer):
 *
 *   for pc in K by KC:
 *     pack A[rows, pc:+KC] -> Ap                       MR-tall micro-panels, L2-resident
 *     for jc in the unit's columns by NC:
 *       pack B[pc:+KC, jc:+NC] -> Bp                   NR-wide micro-panels, L2-resident
 *       for jr in the block by NR:                     a KC x NR micro-panel, L1/L2
 *         for ir in rows by MR:  micro-kernel C[ir:+MR, jr:+NR] (+)= Ap_ir @ Bp_jr
 *
 * Units are handed out dynamically (several per thread) and nothing is shared between threads,
 * so there is no barrier inside a call: when another process takes a core for a few ms, the
 * other thread simply takes more units instead of waiting at a barrier. B is packed once per
 * row group and A once per unit; how a product is cut weighs that re-packing against the
 * balance of the units (nnl_partition / nnl_plan_units). K slices and the MR x NR tile grid
 * are fixed by the shape alone, so every element is reduced in the same order whatever the
 * thread count or unit split. Partial tiles are zero-padded inside the packed panels only; the
 * micro-kernel writes just the valid m x n corner. Packing buffers are malloc'd per call
 * (never static) and freed before returning.
 * Products of at most NNL_SKINNY_M rows (matrix-vector shapes) skip packing altogether; products
 * of a few rows and a shallow K (a pointwise conv at batch 1) read a row-major B in place instead
 * of packing it, when the family's panel rows span at least two cache lines (b_in_place in
 * gemm_driver_tmpl.h, limits in nnl_tuning.h): the same values reach the micro-kernel, so the
 * same bits.
 * A column-major C (nnl_sgemm_pkc with rsc == 1, e.g. out.T of a narrow product run
 * transposed) goes through the same nest; each micro-tile is written into a tile buffer and
 * transposed out (ukr_cm in gemm_nest_tmpl.h), the same values, so the same bits.
 * Two-level operands (nnl_sgemm_split / nnl_dgemm_split, nnl_split in gemm_kernels.h): K and/or
 * N run over (outer, inner) index pairs; the same nest packs A and B run by run (pack_a,
 * pack_b_split) and writes a C tile that straddles two outer items through a tile buffer
 * (ukr_split), with the blocking of the plain product of the same logical sizes.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gemm_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Work units (see GEMM_NAME in gemm_driver_tmpl.h). */
#ifndef NNL_UNITS_PER_THREAD
#define NNL_UNITS_PER_THREAD 3               /* dynamic scheduling granularity */
#endif
#ifndef NNL_PREPACKED_UNITS_PER_THREAD
#define NNL_PREPACKED_UNITS_PER_THREAD 2     /* one item, A pre-packed (nnl_plan_units) */
#endif
#ifndef NNL_MIN_UNIT_PANELS
#define NNL_MIN_UNIT_PANELS 4                /* narrowest unit, in NR panels */
#endif
#ifndef NNL_MIN_UNIT_ROWS
#define NNL_MIN_UNIT_ROWS 64                 /* shortest unit (rows) when splitting for balance */
#endif

/* Single-thread cut-off NNL_MIN_PARALLEL_MACS: csrc/core/nnl_tuning.h. */

/* Products of at most NNL_SKINNY_M rows (gemm_internal.h) skip packing (skinny_cols in
 * gemm_driver_tmpl.h); JB columns per block (the accumulator tile of a block, NNL_SKINNY_M x
 * JB, stays in L1). */
#define NNL_SKINNY_JB 128
#ifndef NNL_SKINNY_ELEM_MACS
#define NNL_SKINNY_ELEM_MACS 16.0
#endif

/* ------------------------------------------------------------- work units of one item
 *
 * The partition of one product's C among nt > 1 threads (batch 1): rows cut into ru groups of
 * mu rows (an MR multiple, at most MC) and columns into cu groups of nu columns (an NR
 * multiple), units handed out dynamically in row-major order. The candidates have
 * NNL_PREPACKED_UNITS_PER_THREAD to 4x that many units per thread (one to four when the call
 * packs A itself, see nnl_plan_units); each is scored by an estimate of
 * its finishing time, in multiply-add equivalents, with its units scheduled greedily in order
 * on nt threads, a unit costing
 *     rows * K * (its columns, a partial NR panel's rounded up to NNL_COST_LANES)
 *   + NNL_PACK_COST per element it packs (its rows of A and its columns of B, unless that
 *     operand comes pre-packed)
 *   + NNL_UNIT_COST.
 * The fixed rule this replaces (kept for batches, gemm_driver_tmpl.h) cut small products into
 * units of unequal work: N = 196 (four 48-column panels and one of 4) with M = 256 became six
 * units of 3 and of 1 1/3 panels, whose dynamic schedule on 2 threads ends at 1.13x the
 * balanced time (the measured per-unit CPU times of such layers, scheduled as 2 threads take
 * them, allowed at most 1.6-1.7x from the second thread). */
#ifndef NNL_COST_LANES
#define NNL_COST_LANES 8
#endif
#ifndef NNL_PACK_COST
#define NNL_PACK_COST 8.0                    /* multiply-adds per packed element (a copy) */
#endif
#ifndef NNL_UNIT_COST
#define NNL_UNIT_COST 4096.0                 /* per unit: scheduling, nest set-up */
#endif

/* Columns c0..c1 with the tail of a partial NR panel rounded up to NNL_COST_LANES. */
static double nnl_cost_cols(nnl_idx c0, nnl_idx c1, int nr)
{
    const nnl_idx full = (c1 - c0) / nr, rest = (c1 - c0) - full * nr;
    return (double)(full * nr + nnl_cdiv(rest, NNL_COST_LANES) * NNL_COST_LANES);
}

static double nnl_plan_score(nnl_idx M, nnl_idx N, nnl_idx K, int mr, int nr, int nt,
                             nnl_idx mu, nnl_idx nu, int pack_a, int pack_b)
{
    enum { MAXT = 64 };
    double busy[MAXT];
    const int team = nt < MAXT ? nt : MAXT;
    const nnl_idx ru = nnl_groups(M, mu, mr), cu = nnl_groups(N, nu, nr);
    for (int t = 0; t < team; t++)
        busy[t] = 0;
    for (nnl_idx r = 0; r < ru; r++) {
        const double rows = (double)(nnl_group_end(r, ru, mu, M) - r * mu);
        for (nnl_idx c = 0; c < cu; c++) {
            const nnl_idx c0 = c * nu, c1 = nnl_group_end(c, cu, nu, N);
            double w = rows * (double)K * nnl_cost_cols(c0, c1, nr) + NNL_UNIT_COST;
            if (pack_a)
                w += NNL_PACK_COST * rows * (double)K;
            if (pack_b)
                w += NNL_PACK_COST * (double)(c1 - c0) * (double)K;
            int first = 0;
            for (int t = 1; t < team; t++)
                if (busy[t] < busy[first])
                    first = t;
            busy[first] += w;
        }
    }
    double end = 0;
    for (int t = 0; t < team; t++)
        end = busy[t] > end ? busy[t] : end;
    return end;
}

/* The best-scoring partition (*mu rows by *nu columns per unit) of an M x N x K product for
 * nt > 1 threads; pack_a / pack_b: the call packs A / B itself (not pre-packed). */
static void nnl_plan_units(nnl_idx M, nnl_idx N, nnl_idx K, int mr, int nr, int mc, int nt,
                           int pack_a, int pack_b, nnl_idx *mu, nnl_idx *nu)
{
    const nnl_idx P = nnl_cdiv(M, mr), Q = nnl_cdiv(N, nr);
    /* A packed per call (a pointwise conv's weights as they are, read from DRAM once per
     * inference) is packed again by every unit of its rows: three units per thread made
     * M = 256 x N = 196 x K = 1024 (1 MB of weights) six units of 128 rows x 2 panels, each
     * row group's A packed three times. Then only one unit per thread is asked for and the
     * score weighs balance against the copies. Whole plans at batch 1, 2 threads, AMD EPYC
     * Zen 4, models interleaved (cold weights), 41 rounds twice, same bits: GoogLeNet
     * 13.93 / 13.55 -> 13.57 / 13.30 ms, ResNet-50 38.89 / 38.34 -> 38.47 / 37.65 ms,
     * MobileNetV2 4.54 / 4.38 -> 4.49 / 4.37 ms.
     * A pre-packed (the weights of an inference plan's im2col conv) asks for two units per
     * thread: with three, the score could only pick among cuts whose tails are unequal, e.g.
     * M = 256 x N = 196 (four 48-column panels and 4 columns) as 128 rows x 2 panels, 2 x 2
     * units of which the second column group also computes the tail. Two threads, AMD EPYC
     * Zen 4, interleaved medians, three -> two per thread (one): 256 x 196 x 2304 (ResNet-50's
     * 3x3/2 conv at 28x28) 1306 -> 1187 (1176) us, 256 x 196 x 1024 658 -> 592 (610),
     * 512 x 196 x 1024 1223 -> 1101 (1091), 128 x 784 x 512 588 -> 517 (500), 1024 x 196 x
     * 256 542 -> 533 (520), 512 x 784 x 128 604 -> 610 (632); 64 x 3136 x 256 and the narrow
     * 7x7 products unchanged.
     * But with at least as many rows as columns (the convs of a 14x14 map: 256 x 196 x 1024,
     * 1024 x 196 x 256, 256 x 196 x 2304) the pre-packed A is the larger operand, streamed
     * from L3/DRAM once per inference, and two units a thread (2 x 2) made each thread read
     * all of it (a row group per unit); one unit a thread cuts the rows, each thread reads its
     * half, and B, which every thread packs whole either way, is the smaller. Intel Emerald
     * Rapids, 2 threads, batch 1, the same plan with and without it, alternated in one
     * process: ResNet-50 0.984 / 0.992 / 0.987 (its fifteen 14x14 products 0.92-0.97 each,
     * the 28x28 and 56x56 ones unchanged), GoogLeNet 1.008 / 0.989, MobileNetV2 0.995 /
     * 0.999. A product with more columns keeps two a thread: there B is the larger operand,
     * and the row cut measured 5-14% slower (512 x 784 x 128, ResNet-50's strided 256 -> 512
     * 1x1 at 28x28). The score alone would not always cut rows (it counts each unit's packing
     * of its B columns, which here every thread ends up doing for all of them), so the row
     * cut is taken as it is (nt row groups, each swept one block of at most MC rows at a
     * time by gemm_nest) when its groups hold equal numbers of row panels, to one. */
    /* Elsewhere row groups of at most MC rows, except where the call packs both operands:
     * there a taller unit packs its rows one MC block after another against each B chunk it
     * packs once (gemm_nest), where MC-row units each packed the whole B again (2048^3 on two
     * threads: six units, B packed six times; its packing was 5% of the time) */
    const nnl_idx ru_min = pack_a && pack_b ? 1 : nnl_cdiv(P, nnl_max(1, mc / mr));
    if (!pack_a && pack_b && M >= N) {
        const nnl_idx ru = nt, pu = nnl_cdiv(P, ru);
        if (nnl_cdiv(P, pu) == ru) {
            *mu = pu * mr, *nu = Q * nr;
            return;
        }
    }
    const nnl_idx want =
        (nnl_idx)(pack_a ? 1 : NNL_PREPACKED_UNITS_PER_THREAD) * nt;
    const nnl_idx most = nnl_max(4 * want, ru_min);
    /* B pre-packed and A packed by the call: the constant operand is B, e.g. the weights of
     * a narrow product run transposed (a 7x7 map's conv: pixels x channels = pixels x K @
     * K x channels), streamed from DRAM once per inference. Then cut only its columns when
     * they give every thread a unit: a row cut made each column group's weights be read by
     * two units (the second from L3) and each B panel serve half the rows. The score still
     * weighs the column cut's imbalance (512 channels = 6 + 4 2/3 panels of 48). Intel
     * Emerald Rapids, 2 threads, in-process interleaved medians of 80-100 runs, rows and
     * columns -> columns only: ResNet-50 batch 1 0.985 / 0.984 / 0.980 (its 7x7 convs, 2048 ->
     * 512 and 512 -> 512 3x3/2), GoogLeNet 0.999, MobileNetV2 0.996, ResNet-50 batch 8 1.002
     * (its narrow products are one product over the batch, not transposed). */
    const nnl_idx ru_top = pack_a && !pack_b && Q >= want ? ru_min : nnl_min(most, P);
    double best = -1;
    *mu = nnl_cdiv(P, ru_min) * mr, *nu = Q * nr;
    for (nnl_idx ru0 = ru_min; ru0 <= ru_top; ru0++) {
        const nnl_idx pu = nnl_cdiv(P, ru0);
        if (nnl_cdiv(P, pu) != ru0)
            continue;                        /* the same rows per unit as a smaller ru0 */
        for (nnl_idx cu0 = 1; cu0 <= Q && ru0 * cu0 <= most; cu0++) {
            const nnl_idx qu = nnl_cdiv(Q, cu0);
            if (nnl_cdiv(Q, qu) != cu0 || ru0 * cu0 < nnl_min(want, P * Q))
                continue;
            const double score =
                nnl_plan_score(M, N, K, mr, nr, nt, pu * mr, qu * nr, pack_a, pack_b);
            if (best < 0 || score < best) {
                best = score;
                *mu = pu * mr, *nu = qu * nr;
            }
        }
    }
}

/* The work units of a call (GEMM_NAME's loop): mu rows by nu columns. Serial: one unit per
 * item (its rows packed one MC block at a time). One item on a team: nnl_plan_units. A batch
 * on a team (the items already spread the work): aim at NNL_UNITS_PER_THREAD units per
 * thread, at least NNL_MIN_UNIT_PANELS panels wide (each unit re-packs its A rows) and
 * NNL_MIN_UNIT_ROWS rows tall (each row group re-packs B); if that still leaves a thread
 * idle, use narrower units, then shorter ones. */
static void nnl_partition(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, int mr, int nr, int mc,
                          int nt, int pack_a, int pack_b, nnl_idx *mu, nnl_idx *nu)
{
    const nnl_idx P = nnl_cdiv(M, mr), Q = nnl_cdiv(N, nr);
    if (nt > 1 && batch == 1) {
        nnl_plan_units(M, N, K, mr, nr, mc, nt, pack_a, pack_b, mu, nu);
        return;
    }
    /* serial: one unit (gemm_nest takes its rows one MC block at a time, B packed once) */
    nnl_idx ru = nt > 1 ? nnl_cdiv(M, mc) : 1, cu = 1;
    if (nt > 1) {
        const nnl_idx want = nnl_cdiv((nnl_idx)NNL_UNITS_PER_THREAD * nt, batch);
        const nnl_idx need = nnl_cdiv((nnl_idx)nt, batch);
        if (ru * cu < want)
            cu = nnl_min(nnl_cdiv(want, ru), nnl_cdiv(Q, NNL_MIN_UNIT_PANELS));
        if (ru * cu < want)
            ru = nnl_max(ru, nnl_min(nnl_cdiv(want, cu), M / NNL_MIN_UNIT_ROWS));
        if (ru * cu < need)
            cu = nnl_min(nnl_cdiv(need, ru), Q);
        if (ru * cu < need)
            ru = nnl_min(nnl_cdiv(need, cu), P);
    }
    *mu = nnl_cdiv(nnl_cdiv(M, ru), mr) * mr;
    *nu = nnl_cdiv(nnl_cdiv(N, cu), nr) * nr;
}

/* float32 */
#define T float
#define EPI_T nnl_epi_s
#define KERNEL_T nnl_kernel_s
#define FN(name) name##_s
#define GEMM_NAME nnl_sgemm
#define GEMM_PK nnl_sgemm_pk
#define GEMM_PKC nnl_sgemm_pkc
#define GEMM_SPLIT nnl_sgemm_split
#define GEMM_SPLIT_PK nnl_sgemm_split_pk
#define GEMM_PART nnl_sgemm_part
#define PACK_NAME nnl_sgemm_pack
#define PACK_A8 nnl_pack_a8_s
#define PACK_T8 nnl_pack_t8_s
#define PACK_TR nnl_pack_tr_s
#include "gemm_driver_tmpl.h"
#undef PACK_T8
#undef PACK_TR
#undef PACK_A8
#undef T
#undef EPI_T
#undef KERNEL_T
#undef FN
#undef GEMM_NAME
#undef GEMM_PK
#undef GEMM_PKC
#undef GEMM_SPLIT
#undef GEMM_SPLIT_PK
#undef GEMM_PART
#undef PACK_NAME

void nnl_transpose_s(int rows, int cols, const float *src, nnl_idx lds, float *dst, nnl_idx ldd)
{
    transpose_s(rows, cols, src, lds, dst, ldd);
}

/* float64 */
#define T double
#define EPI_T nnl_epi_d
#define KERNEL_T nnl_kernel_d
#define FN(name) name##_d
#define GEMM_NAME nnl_dgemm
#define GEMM_PK nnl_dgemm_pk
#define GEMM_PKC nnl_dgemm_pkc
#define GEMM_SPLIT nnl_dgemm_split
#define GEMM_SPLIT_PK nnl_dgemm_split_pk
#define GEMM_PART nnl_dgemm_part
#define PACK_NAME nnl_dgemm_pack
#include "gemm_driver_tmpl.h"
#undef T
#undef EPI_T
#undef KERNEL_T
#undef FN
#undef GEMM_NAME
#undef GEMM_PK
#undef GEMM_PKC
#undef GEMM_SPLIT
#undef GEMM_SPLIT_PK
#undef GEMM_PART
#undef PACK_NAME

int nnl_gemm_blocking(int isa, int elsize, int *mr, int *nr, int *mc, int *kc, int *nc)
{
    if (isa == NNL_ISA_AUTO)
        isa = nnl_best_isa();
    if (elsize == 4) {
        const nnl_kernel_s *k = nnl_select_s(isa);
        if (k == NULL)
            return NNL_EINVAL;
        *mr = k->mr, *nr = k->nr, *mc = k->mc, *kc = k->kc, *nc = k->nc;
        return NNL_OK;
    }
    if (elsize == 8) {
        const nnl_kernel_d *k = nnl_select_d(isa);
        if (k == NULL)
            return NNL_EINVAL;
        *mr = k->mr, *nr = k->nr, *mc = k->mc, *kc = k->kc, *nc = k->nc;
        return NNL_OK;
    }
    return NNL_EINVAL;
}

int nnl_gemm_tail_cols(int isa, int elsize)
{
    if (isa == NNL_ISA_AUTO)
        isa = nnl_best_isa();
    if (elsize == 4) {
        const nnl_kernel_s *k = nnl_select_s(isa);
        return k == NULL ? -1 : k->tail != NULL ? k->tail_n : 0;
    }
    if (elsize == 8) {
        const nnl_kernel_d *k = nnl_select_d(isa);
        return k == NULL ? -1 : k->tail != NULL ? k->tail_n : 0;
    }
    return -1;
}

nnl_idx nnl_gemm_cost_cols(int isa, int elsize, nnl_idx n)
{
    int nr, lanes;
    if (isa == NNL_ISA_AUTO)
        isa = nnl_best_isa();
    if (elsize == 4) {
        const nnl_kernel_s *k = nnl_select_s(isa);
        if (k == NULL)
            return -1;
        nr = k->nr, lanes = k->lanes;
    } else if (elsize == 8) {
        const nnl_kernel_d *k = nnl_select_d(isa);
        if (k == NULL)
            return -1;
        nr = k->nr, lanes = k->lanes;
    } else
        return -1;
    if (n < 0)
        return -1;
    const nnl_idx full = n / nr * nr;
    return full + nnl_cdiv(n - full, (nnl_idx)lanes) * lanes;
}

int nnl_gemm_units(int isa, int elsize, nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K,
                   int nthreads, int pack_a, int pack_b, nnl_idx *mu, nnl_idx *nu)
{
    int mr, nr, mc, kc, nc;
    if (batch < 1 || M < 1 || N < 1 || K < 1 || nnl_gemm_blocking(isa, elsize, &mr, &nr, &mc, &kc,
                                                                  &nc) != NNL_OK)
        return NNL_EINVAL;
    *mu = *nu = 0;
    if (M <= NNL_SKINNY_M)
        return NNL_OK;                       /* the unpacked few-row path: no units */
    const int nt = nnl_team_size(nthreads, (double)batch * M * N * K, NNL_MIN_PARALLEL_MACS);
    nnl_partition(batch, M, N, K, mr, nr, mc, nt, pack_a, pack_b, mu, nu);
    return NNL_OK;
}
