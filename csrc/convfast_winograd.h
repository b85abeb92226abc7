/* Winograd F(m x m, 3 x 3) conv2d (stride 1, dilation 1), m = 2 or 4: C interface of
 * csrc/convfast_winograd.c (cdef extern'ed by csrc/convfast.pyx).
 *
 * With alpha = m + 2, every m x m block ("tile") of output pixels of image n and output
 * channel f is
 *
 *     Y = A^T [ sum_c U[., ., f, c] (.) (B^T d_c B) ] A          (.) = elementwise
 *
 * where d_c is the alpha x alpha input patch of channel c under the tile (rows ti*m - PT ..,
 * columns tj*m - PL .., zeros outside the image) and U = G g G^T the transformed 3x3 filter.
 * The sum over c is, for each of the alpha^2 positions xi, one GEMM over all tiles:
 *
 *     M[xi] (F x tiles) = U[xi] (F x C) @ V[xi] (C x tiles)     (per group: FG x CG @ CG x tiles)
 *
 * run by nnlite's GEMM (nnl_sgemm_pk / nnl_dgemm_pk, with U[xi] packed once). The matrices
 * B^T, A^T and G (nnl_wino_weights_*) are those of Lavin & Gray (2016) for the points
 * 0, +-1, (+-2,) infinity; nnlite/kernels/winograd_reference.py derives them.
 *
 * Layouts: u (alpha^2, F, CG) C-contiguous (xi = i*alpha + j); upk: nnl_wino_pack_* of u for
 * the same isa, or NULL (then packed inside the call). u may be NULL when upk is given and
 * F/G > NNL_WINO_SKINNY_ROWS: the GEMM reads the unpacked A only for products of at most that
 * many rows (gemm_kernels.h), so a plan can free u after packing; x, y and bias as in convfast.h
 * (geom->kh = kw = 3, sh = sw = dh = dw = 1). y = act(conv + beta * y + bias); beta == 0
 * never reads y. Returns NNL_OK, NNL_ENOMEM or NNL_EINVAL. The result does not depend on
 * nthreads: each tile's transforms are fixed arithmetic and each GEMM element is reduced in
 * the order its K slicing fixes (gemm_kernels.h).
 */
#ifndef NNLITE_CONVFAST_WINOGRAD_H
#define NNLITE_CONVFAST_WINOGRAD_H

#include "convfast.h"

/* Products with at most this many rows read the unpacked A even when it is pre-packed: the
 * GEMM's own constant (gemm_internal.h). */
#define NNL_WINO_SKINNY_ROWS NNL_SKINNY_M

/* u[(i*alpha + j)*nf + q] = (G w_q G^T)[i][j] for the nf 3x3 filters w (nf x 9 row-major),
 * computed in double; NNL_OK or NNL_EINVAL. */
int nnl_wino_weights_s(int m, nnl_idx nf, const float *w, float *u, int nthreads);
int nnl_wino_weights_d(int m, nnl_idx nf, const double *w, double *u, int nthreads);

/* Elements nnl_wino_pack_* writes for m, F, groups, CG (elsize 4 or 8), or -1. */
nnl_idx nnl_wino_packed_elems(int m, nnl_idx f, nnl_idx g, nnl_idx cg, int elsize, int isa);
int nnl_wino_pack_s(int m, nnl_idx f, nnl_idx g, nnl_idx cg, const float *u, int isa,
                    float *out);
int nnl_wino_pack_d(int m, nnl_idx f, nnl_idx g, nnl_idx cg, const double *u, int isa,
                    double *out);
/* nnl_wino_weights_* then nnl_wino_pack_* in one pass (same bits, no intermediate u) of the
 * weights w (F, CG, 3, 3) C-contiguous, into out (nnl_wino_packed_elems elements). */
int nnl_wino_weights_packed_s(int m, nnl_idx f, nnl_idx g, nnl_idx cg, const float *w, int isa,
                              float *out, int nthreads);
int nnl_wino_weights_packed_d(int m, nnl_idx f, nnl_idx g, nnl_idx cg, const double *w,
                              int isa, double *out, int nthreads);

/* work (may be NULL): the caller's memory of work_bytes, used when it holds the call's work
 * memory (nnl_conv_winograd_workspace) from its first 64-byte boundary on; else the call
 * allocates its own. It must overlap none of the arrays. */
int nnl_conv_winograd_s(const nnl_conv_geom *geom, int m, const float *x, const float *u,
                        const float *upk, const float *bias, float beta, float *y, int act,
                        int nthreads, int isa, void *work, nnl_idx work_bytes);
int nnl_conv_winograd_d(const nnl_conv_geom *geom, int m, const double *x, const double *u,
                        const double *upk, const double *bias, double beta, double *y, int act,
                        int nthreads, int isa, void *work, nnl_idx work_bytes);

/* Bytes of work memory one nnl_conv_winograd_* call allocates (upk == NULL adds the packed
 * weights), or -1 for invalid arguments. */
nnl_idx nnl_conv_winograd_workspace(const nnl_conv_geom *geom, int m, int elsize, int nthreads,
                                    int isa, int packed);

/* The cost terms of a call's tile choice (nnlite/_algorithms.py, winograd_tile): *cols = the
 * GEMM columns the micro-kernel computes over all tile chunks (each chunk's tiles, its ragged
 * last panel rounded up to whole vectors: nnl_gemm_cost_cols), *u_reads = the passes over the
 * transformed weights (one per chunk, whether one thread runs it or the team shares it).
 * NNL_EINVAL for invalid arguments. */
int nnl_conv_winograd_cost(const nnl_conv_geom *geom, int m, int elsize, int nthreads, int isa,
                           nnl_idx *cols, nnl_idx *u_reads);

#endif
