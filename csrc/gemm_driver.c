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
 * other thread simply takes more units instead of spinning at a barrier. B is packed once per
 * row group and A once per unit; with MC >= ~128 rows and units >= 4 panels wide that costs a
 * few percent. K slices and the MR x NR tile grid are fixed by the shape alone, so every
 * element is reduced in the same order whatever the thread count or unit split. Partial tiles
 * are zero-padded inside the packed panels only; the micro-kernel writes just the valid m x n
 * corner. Packing buffers are malloc'd per call (never static) and freed before returning.
 * Products of at most NNL_SKINNY_M rows (matrix-vector shapes) skip packing altogether.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

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

/* Single-thread cut-off NNL_MIN_PARALLEL_MACS: csrc/core/nnl_tuning.h. */

/* Products of at most NNL_SKINNY_M rows (gemm_internal.h) skip packing (skinny_cols in
 * gemm_driver_tmpl.h); LANES partial sums per dot product, JB columns per block (the
 * accumulator tile of a block, NNL_SKINNY_M x JB, stays in L1). */
#define NNL_SKINNY_LANES 16
#define NNL_SKINNY_JB 128

/* float32 */
#define T float
#define EPI_T nnl_epi_s
#define KERNEL_T nnl_kernel_s
#define FN(name) name##_s
#define GEMM_NAME nnl_sgemm
#define GEMM_PK nnl_sgemm_pk
#define PACK_NAME nnl_sgemm_pack
#define PACK_A8 nnl_pack_a8_s
#define PACK_T8 nnl_pack_t8_s
#include "gemm_driver_tmpl.h"
#undef PACK_T8
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
