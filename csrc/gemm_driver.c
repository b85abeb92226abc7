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
 * Units are handed out dynamically (several per thread) and there is no barrier inside a call:
 * when another process takes a core for a few ms, the other thread simply takes more units
 * instead of waiting at a barrier. A is packed once per unit. B is packed once per row group,
 * except that one product on a team whose rows are cut may share one packed B (packed lazily
 * by whichever thread needs a panel group first; see nnl_plan_units and b_shared). K slices and the MR x NR tile grid are fixed by the shape alone, so every
 * element is reduced in the same order whatever the thread count or unit split. Partial tiles
 * are zero-padded inside the packed panels only; the micro-kernel writes just the valid m x n
 * corner. Packing buffers are malloc'd per call (never static) and freed before returning.
 * Products of at most NNL_SKINNY_M rows (matrix-vector shapes) skip packing altogether.
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
#ifndef NNL_MIN_UNIT_PANELS
#define NNL_MIN_UNIT_PANELS 4                /* narrowest unit, in NR panels */
#endif
#ifndef NNL_MIN_UNIT_ROWS
#define NNL_MIN_UNIT_ROWS 64                 /* shortest unit (rows) when splitting for balance */
#endif

#ifndef NNL_PACK_TASK_ELEMS
#define NNL_PACK_TASK_ELEMS 16384            /* elements per panel group of a shared B */
#endif
#ifndef NNL_SHARE_SPINS
#define NNL_SHARE_SPINS 2000                 /* pauses (~40 us) before packing a group privately */
#endif

/* Single-thread cut-off NNL_MIN_PARALLEL_MACS: csrc/core/nnl_tuning.h. */

/* Products of at most NNL_SKINNY_M rows (gemm_internal.h) skip packing (skinny_cols in
 * gemm_driver_tmpl.h); LANES partial sums per dot product, JB columns per block (the
 * accumulator tile of a block, NNL_SKINNY_M x JB, stays in L1). */
#define NNL_SKINNY_LANES 16
#define NNL_SKINNY_JB 128

/* ------------------------------------------------------------- work units of one item
 *
 * The partition of one product's C among nt > 1 threads (batch 1): rows cut into ru groups of
 * mu rows (an MR multiple, at most MC) and columns into cu groups of nu columns (an NR
 * multiple), units handed out dynamically in row-major order. The candidates have
 * NNL_UNITS_PER_THREAD to 4x that many units per thread; each is scored by an estimate of
 * its finishing time, in multiply-add equivalents, with its units scheduled greedily in order
 * on nt threads:
 *   a unit     rows * K * (columns, each partial NR panel's rounded up to NNL_COST_LANES)
 *              + NNL_PACK_COST per element it packs: its rows of A (unless pre-packed), its
 *                columns of B (unless B is pre-packed or shared)
 *              + NNL_READ_COST per element of a shared B it reads (its columns, from the L2
 *                or L3: a thin row group re-reads B for few rows)
 *              + NNL_UNIT_COST;
 *   shared B   when the rows are cut (ru > 1), every row group would pack the same B panels
 *              again; instead B is packed once into a buffer all threads read (while it fits
 *              this core's share of the L3), by whichever thread needs a panel first
 *              (b_shared in gemm_driver_tmpl.h): NNL_PACK_COST per element / nt.
 * So small products with few NR panels (N = 196 = four panels of 48 and one of 4) get units
 * that balance (row groups over all the columns) instead of a column split whose units differ
 * by a factor of 2, and the row split no longer re-packs B once per row group. */
#ifndef NNL_COST_LANES
#define NNL_COST_LANES 8
#endif
#ifndef NNL_PACK_COST
#define NNL_PACK_COST 8.0                    /* multiply-adds per packed element (a copy) */
#endif
#ifndef NNL_READ_COST
#define NNL_READ_COST 2.0                    /* per element read from a shared B (L2/L3) */
#endif
#ifndef NNL_UNIT_COST
#define NNL_UNIT_COST 4096.0                 /* per unit: scheduling, nest set-up */
#endif

typedef struct {
    nnl_idx mu, nu;                          /* rows / columns of a unit */
    int share_b;                             /* B packed once for the whole team */
} nnl_unit_plan;

/* Columns c0..c1 with the tail of a partial NR panel rounded up to NNL_COST_LANES. */
static double nnl_cost_cols(nnl_idx c0, nnl_idx c1, int nr)
{
    const nnl_idx full = (c1 - c0) / nr, rest = (c1 - c0) - full * nr;
    return (double)(full * nr + nnl_cdiv(rest, NNL_COST_LANES) * NNL_COST_LANES);
}

static double nnl_plan_score(nnl_idx M, nnl_idx N, nnl_idx K, int nr, int nt, nnl_idx mu,
                             nnl_idx nu, int pack_a, int pack_b, int share_b)
{
    enum { MAXT = 64 };
    double busy[MAXT];
    const int team = nt < MAXT ? nt : MAXT;
    const nnl_idx ru = nnl_cdiv(M, mu), cu = nnl_cdiv(N, nu);
    const double shared = share_b ? NNL_PACK_COST / team * (double)nnl_cdiv(N, nr) * nr * K : 0;
    for (int t = 0; t < team; t++)
        busy[t] = shared;
    for (nnl_idx r = 0; r < ru; r++) {
        const double rows = (double)(nnl_min(M, (r + 1) * mu) - r * mu);
        for (nnl_idx c = 0; c < cu; c++) {
            const nnl_idx c0 = c * nu, c1 = nnl_min(N, (c + 1) * nu);
            double w = rows * (double)K * nnl_cost_cols(c0, c1, nr) + NNL_UNIT_COST;
            if (pack_a)
                w += NNL_PACK_COST * rows * (double)K;
            if (pack_b)
                w += (share_b ? NNL_READ_COST : NNL_PACK_COST) * (double)(c1 - c0) * (double)K;
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

/* The best-scoring partition of an M x N x K product for nt > 1 threads; pack_a / pack_b:
 * the call packs A / B itself (not pre-packed); elsize: bytes per element (for the cap). */
static nnl_unit_plan nnl_plan_units(nnl_idx M, nnl_idx N, nnl_idx K, int mr, int nr, int mc,
                                    int nt, int pack_a, int pack_b, size_t elsize)
{
    const nnl_idx P = nnl_cdiv(M, mr), Q = nnl_cdiv(N, nr);
    const double bytes_b = (double)elsize * (double)(Q * nr) * (double)K;
    const int can_share = pack_b && bytes_b <= (double)nnl_cache_sizes()->l3;
    const nnl_idx want = (nnl_idx)NNL_UNITS_PER_THREAD * nt;
    const nnl_idx ru_min = nnl_cdiv(P, nnl_max(1, mc / mr));
    const nnl_idx most = nnl_max(4 * want, ru_min);
    nnl_unit_plan best = {nnl_cdiv(P, ru_min) * mr, Q * nr, 0};
    double best_score = -1;
    for (nnl_idx ru0 = ru_min; ru0 <= nnl_min(most, P); ru0++) {
        const nnl_idx pu = nnl_cdiv(P, ru0);
        if (nnl_cdiv(P, pu) != ru0)
            continue;                        /* the same rows per unit as a smaller ru0 */
        for (nnl_idx cu0 = 1; cu0 <= Q && ru0 * cu0 <= most; cu0++) {
            const nnl_idx qu = nnl_cdiv(Q, cu0);
            if (nnl_cdiv(Q, qu) != cu0 || ru0 * cu0 < nnl_min(want, P * Q))
                continue;
            const int sb = can_share && ru0 > 1;
            const double score =
                nnl_plan_score(M, N, K, nr, nt, pu * mr, qu * nr, pack_a, pack_b, sb);
            if (best_score < 0 || score < best_score) {
                best_score = score;
                best.mu = pu * mr, best.nu = qu * nr, best.share_b = sb;
            }
        }
    }
    return best;
}

/* The work units of a call (GEMM_NAME's loop): mu rows by nu columns, and whether B is
 * shared (b_shared). Serial: MC-row groups over all the columns. One item on a team:
 * nnl_plan_units. A batch on a team (the items already spread the work): aim at
 * NNL_UNITS_PER_THREAD units per thread, at least NNL_MIN_UNIT_PANELS panels wide (each unit
 * re-packs its A rows) and NNL_MIN_UNIT_ROWS rows tall (each row group re-packs B); if that
 * still leaves a thread idle, use narrower units, then shorter ones. */
static void nnl_partition(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, int mr, int nr, int mc,
                          int nt, int pack_a, int pack_b, size_t elsize, nnl_idx *mu,
                          nnl_idx *nu, int *share_b)
{
    const nnl_idx P = nnl_cdiv(M, mr), Q = nnl_cdiv(N, nr);
    *share_b = 0;
    if (nt > 1 && batch == 1) {
        const nnl_unit_plan up = nnl_plan_units(M, N, K, mr, nr, mc, nt, pack_a, pack_b, elsize);
        *mu = up.mu, *nu = up.nu, *share_b = up.share_b;
        return;
    }
    nnl_idx ru = nnl_cdiv(M, mc), cu = 1;
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

/* Spin-wait hint while another thread packs a shared B panel group. */
static inline void nnl_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* float32 */
#define T float
#define EPI_T nnl_epi_s
#define KERNEL_T nnl_kernel_s
#define FN(name) name##_s
#define GEMM_NAME nnl_sgemm
#define GEMM_PK nnl_sgemm_pk
#define PACK_NAME nnl_sgemm_pack
#define PACK_A8 nnl_pack_a8_s
#include "gemm_driver_tmpl.h"
#undef PACK_A8
#undef T
#undef EPI_T
#undef KERNEL_T
#undef FN
#undef GEMM_NAME
#undef GEMM_PK
#undef PACK_NAME

/* float64 */
#define T double
#define EPI_T nnl_epi_d
#define KERNEL_T nnl_kernel_d
#define FN(name) name##_d
#define GEMM_NAME nnl_dgemm
#define GEMM_PK nnl_dgemm_pk
#define PACK_NAME nnl_dgemm_pack
#include "gemm_driver_tmpl.h"
#undef T
#undef EPI_T
#undef KERNEL_T
#undef FN
#undef GEMM_NAME
#undef GEMM_PK
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

int nnl_gemm_units(int isa, int elsize, nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K,
                   int nthreads, int pack_a, int pack_b, nnl_idx *mu, nnl_idx *nu, int *share_b)
{
    int mr, nr, mc, kc, nc;
    if (batch < 1 || M < 1 || N < 1 || K < 1 || nnl_gemm_blocking(isa, elsize, &mr, &nr, &mc, &kc,
                                                                  &nc) != NNL_OK)
        return NNL_EINVAL;
    *mu = *nu = 0, *share_b = 0;
    if (M <= NNL_SKINNY_M)
        return NNL_OK;                       /* the unpacked few-row path: no units */
    const int nt = nnl_team_size(nthreads, (double)batch * M * N * K, NNL_MIN_PARALLEL_MACS);
    nnl_partition(batch, M, N, K, mr, nr, mc, nt, pack_a, pack_b, (size_t)elsize, mu, nu,
                  share_b);
    return NNL_OK;
}
