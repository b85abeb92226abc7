/* nnlite GEMM internals shared by the driver (gemm_driver.c) and the micro-kernel files
 * (gemm_generic.c, gemm_avx2.c, gemm_avx512.c). Not part of the Python-facing interface.
 *
 * Packed layouts (row-major convention everywhere):
 *   A micro-panel: MR rows x kc, stored k-major:  ap[k*MR + i]   (rows >= m are zero)
 *   B micro-panel: kc x NR columns, row-major:    bp[k*NR + j]   (columns >= n are zero)
 * A micro-kernel call computes the m x n tile (m <= MR, n <= NR) at c (row stride ldc):
 *   acc = sum_k ap[k*MR + i] * bp[k*NR + j]       (k ascending, one fused multiply-add each)
 *   load_c ? c = fma(acc, alpha, beta * c) : c = acc * alpha
 *   c += bias_row[i] (if given); c += bias_col[j] (if given); c = act(c)
 * Every element goes through exactly this sequence whatever the tile size, so results do not
 * depend on how the matrix was cut into tiles (or threads).
 */
#ifndef NNLITE_GEMM_INTERNAL_H
#define NNLITE_GEMM_INTERNAL_H

#include "gemm_kernels.h"

typedef struct {
    float alpha, beta;
    int load_c;               /* 0: C is not read (first K block with beta == 0) */
    int act;                  /* NNL_ACT_* (last K block only, else NONE) */
    const float *bias_row;    /* bias of the tile's first row, or NULL */
    const float *bias_col;    /* bias of the tile's first column, or NULL */
} nnl_epi_s;

typedef struct {
    double alpha, beta;
    int load_c;
    int act;
    const double *bias_row;
    const double *bias_col;
} nnl_epi_d;

typedef void (*nnl_ukr_s)(nnl_idx kc, const float *ap, const float *bp, float *c, nnl_idx ldc,
                          int m, int n, const nnl_epi_s *e);
typedef void (*nnl_ukr_d)(nnl_idx kc, const double *ap, const double *bp, double *c, nnl_idx ldc,
                          int m, int n, const nnl_epi_d *e);

/* One micro-kernel family for one dtype: register tile MR x NR and the cache blocks.
 *   MR x NR: the C tile held in registers by the micro-kernel.
 *   KC: depth of the packed panels; a KC x NR micro-panel of B is reused (from L1/L2) by every
 *       MR row panel, a MR x KC micro-panel of A streams from L2.
 *   MC: rows of A packed at once (the rows of one work unit); the MC x KC block stays in L2.
 *   NC: columns of B packed at once (a unit's B chunk); the KC x NC block stays in the L3.
 * MC is a multiple of MR and NC a multiple of NR. MR, NR and the micro-kernel are compiled in;
 * MC, KC and NC come from this CPU's cache sizes at run time (nnl_select fills them in once
 * per process with nnl_blocking_rule, csrc/core/nnl_cache.c) unless fixed with -D. */
typedef struct {
    int mr, nr, mc, kc, nc;
    nnl_ukr_s ukr;
} nnl_kernel_s;

typedef struct {
    int mr, nr, mc, kc, nc;
    nnl_ukr_d ukr;
} nnl_kernel_d;

const nnl_kernel_s *nnl_generic_kernel_s(void);
const nnl_kernel_d *nnl_generic_kernel_d(void);
#if NNL_X86_DISPATCH
const nnl_kernel_s *nnl_avx2_kernel_s(void);
const nnl_kernel_d *nnl_avx2_kernel_d(void);
const nnl_kernel_s *nnl_avx512_kernel_s(void);
const nnl_kernel_d *nnl_avx512_kernel_d(void);
#endif

/* The family for isa (NNL_ISA_AUTO: the best this CPU runs), or NULL when it is not available
 * (gemm_driver.c); the GEMM and the implicit conv both take their kernels from here. */
const nnl_kernel_s *nnl_select_s(int isa);
const nnl_kernel_d *nnl_select_d(int isa);

#endif
