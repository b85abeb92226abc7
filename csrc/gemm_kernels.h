/* nnlite GEMM: public C interface (cdef extern'ed by csrc/gemm.pyx).
 *
 * Computes, for every batch index b < batch (row-major, strides in ELEMENTS, any sign):
 *
 *     C_b[M, N] = act( alpha * A_b[M, K] @ B_b[K, N] + beta * C_b + bias_b )
 *
 *   A_b(i, k) = A[b*bsa + i*rsa + k*csa]      (a transposed operand is just swapped strides)
 *   B_b(k, j) = B[b*bsb + k*rsb + j*csb]
 *   C_b(i, j) = C[b*bsc + i*rsc + j]          (C rows must have unit column stride)
 *   bias_b    = bias[b*bsbias + i]  (NNL_BIAS_ROW, per row)  or  bias[b*bsbias + j]  (NNL_BIAS_COL)
 *   act       = identity | max(0, x) | min(max(0, x), 6)   (NaN propagates)
 *
 * beta == 0 means C is never read (it may hold garbage or NaN), as in the BLAS.
 * Any M, N, K, batch >= 0 is valid (K == 0 gives act(beta * C + bias)). The caller guarantees
 * that every addressed element lies inside its buffer and that C overlaps neither A, B nor bias.
 * The functions never touch Python. Each call mallocs its packing buffers (an A block and a B
 * chunk per thread, never static) and frees them before returning.
 * Results do not depend on the thread count: every C element is reduced in the same order.
 *
 * Return value: NNL_OK, or NNL_ENOMEM when a packing buffer could not be allocated (C is then
 * left partially written), or NNL_EINVAL for a negative size, an unknown isa/act/bias kind.
 */
#ifndef NNLITE_GEMM_KERNELS_H
#define NNLITE_GEMM_KERNELS_H

#include "nnl_core.h"

#define NNL_BIAS_NONE 0
#define NNL_BIAS_ROW 1
#define NNL_BIAS_COL 2

int nnl_sgemm(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, float alpha,
              const float *A, nnl_idx bsa, nnl_idx rsa, nnl_idx csa,
              const float *B, nnl_idx bsb, nnl_idx rsb, nnl_idx csb,
              float beta, float *C, nnl_idx bsc, nnl_idx rsc,
              const float *bias, nnl_idx bsbias, int bias_kind, int act,
              int nthreads, int isa);

int nnl_dgemm(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, double alpha,
              const double *A, nnl_idx bsa, nnl_idx rsa, nnl_idx csa,
              const double *B, nnl_idx bsb, nnl_idx rsb, nnl_idx csb,
              double beta, double *C, nnl_idx bsc, nnl_idx rsc,
              const double *bias, nnl_idx bsbias, int bias_kind, int act,
              int nthreads, int isa);

/* nnl_sgemm/nnl_dgemm with operands packed once by nnl_sgemm_pack/nnl_dgemm_pack (apk for
 * op(A), bpk for op(B); NULL = pack per call, as nnl_sgemm does). A pre-packed operand is
 * shared by every batch item and must have been packed for the same isa; A and B must still
 * point at the unpacked operands (products of <= 4 rows read those). */
int nnl_sgemm_pk(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, float alpha,
                 const float *A, nnl_idx bsa, nnl_idx rsa, nnl_idx csa,
                 const float *B, nnl_idx bsb, nnl_idx rsb, nnl_idx csb,
                 float beta, float *C, nnl_idx bsc, nnl_idx rsc,
                 const float *bias, nnl_idx bsbias, int bias_kind, int act,
                 int nthreads, int isa, const float *apk, const float *bpk);
int nnl_dgemm_pk(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, double alpha,
                 const double *A, nnl_idx bsa, nnl_idx rsa, nnl_idx csa,
                 const double *B, nnl_idx bsb, nnl_idx rsb, nnl_idx csb,
                 double beta, double *C, nnl_idx bsc, nnl_idx rsc,
                 const double *bias, nnl_idx bsbias, int bias_kind, int act,
                 int nthreads, int isa, const double *apk, const double *bpk);
/* nnl_sgemm_pk/nnl_dgemm_pk with C addressed C_b(i, j) = C[b*bsc + i*rsc + j*csc], where
 * csc == 1 (row-major C, as above) or rsc == 1 and csc >= 1 (column-major C: the transposed
 * result of a product, written in place; each micro-tile goes through a tile buffer and
 * register transposes, the same bits as a row-major C). Otherwise NNL_EINVAL. */
int nnl_sgemm_pkc(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, float alpha,
                  const float *A, nnl_idx bsa, nnl_idx rsa, nnl_idx csa,
                  const float *B, nnl_idx bsb, nnl_idx rsb, nnl_idx csb,
                  float beta, float *C, nnl_idx bsc, nnl_idx rsc, nnl_idx csc,
                  const float *bias, nnl_idx bsbias, int bias_kind, int act,
                  int nthreads, int isa, const float *apk, const float *bpk);
int nnl_dgemm_pkc(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, double alpha,
                  const double *A, nnl_idx bsa, nnl_idx rsa, nnl_idx csa,
                  const double *B, nnl_idx bsb, nnl_idx rsb, nnl_idx csb,
                  double beta, double *C, nnl_idx bsc, nnl_idx rsc, nnl_idx csc,
                  const double *bias, nnl_idx bsbias, int bias_kind, int act,
                  int nthreads, int isa, const double *apk, const double *bpk);
/* The block C[m0:m1, n0:n1] of the product nnl_sgemm_pkc / nnl_dgemm_pkc computes at batch 1,
 * on the calling thread alone: for a kernel that cuts one product among its own team (e.g. the
 * fused block's expand by channel panels). m0 must be a multiple of the family's MR and n0 of
 * its NR (nnl_gemm_blocking): the block's tiles and K slices are then the whole call's, and so
 * are its bits. Products of <= 4 rows (no tiles) take only m0 = 0, m1 = M. Else NNL_EINVAL. */
int nnl_sgemm_part(nnl_idx M, nnl_idx N, nnl_idx K, float alpha,
                   const float *A, nnl_idx rsa, nnl_idx csa, const float *B, nnl_idx rsb,
                   nnl_idx csb, float beta, float *C, nnl_idx rsc, nnl_idx csc,
                   const float *bias, int bias_kind, int act, int isa, const float *apk,
                   const float *bpk, nnl_idx m0, nnl_idx m1, nnl_idx n0, nnl_idx n1);
int nnl_dgemm_part(nnl_idx M, nnl_idx N, nnl_idx K, double alpha,
                   const double *A, nnl_idx rsa, nnl_idx csa, const double *B, nnl_idx rsb,
                   nnl_idx csb, double beta, double *C, nnl_idx rsc, nnl_idx csc,
                   const double *bias, int bias_kind, int act, int isa, const double *apk,
                   const double *bpk, nnl_idx m0, nnl_idx m1, nnl_idx n0, nnl_idx n1);
/* Two-level axes: the K axis and/or the N axis of one product run over (outer, inner) index
 * pairs, e.g. (image, pixel) of an NCHW batch, so that a pointwise conv over a whole batch is
 * ONE product read and written in place (no regrouping copies):
 *   lk > 0:  A(i, k) = A[i*rsa + (k / lk)*ask + (k % lk)*csa]
 *            B(k, j) = B[(k / lk)*bsk + (k % lk)*rsb + <column part>]
 *   ln > 0:  B(k, j) = B[<row part> + (j / ln)*bsn + (j % ln)*csb]
 *            C(i, j) = C[i*rsc + (j / ln)*csn + j % ln]
 * (lk = 0 / ln = 0: that axis is plain, as in nnl_sgemm). The product is the one of
 * nnl_sgemm_pk at batch 1 with these addresses: same blocking, same K slices, the same
 * reduction order for every element whatever the thread count. */
typedef struct {
    nnl_idx lk, ask, bsk;
    nnl_idx ln, bsn, csn;
} nnl_split;

int nnl_sgemm_split(nnl_idx M, nnl_idx N, nnl_idx K, float alpha, const float *A, nnl_idx rsa,
                    nnl_idx csa, const float *B, nnl_idx rsb, nnl_idx csb, float beta, float *C,
                    nnl_idx rsc, const float *bias, int bias_kind, int act, const nnl_split *sp,
                    int nthreads, int isa);
int nnl_dgemm_split(nnl_idx M, nnl_idx N, nnl_idx K, double alpha, const double *A,
                    nnl_idx rsa, nnl_idx csa, const double *B, nnl_idx rsb, nnl_idx csb,
                    double beta, double *C, nnl_idx rsc, const double *bias, int bias_kind,
                    int act, const nnl_split *sp, int nthreads, int isa);

/* nnl_sgemm_split / nnl_dgemm_split over batch items: item b reads B + b*bsb and writes
 * C + b*bsc (A and bias are shared), e.g. the images of a stride-2 pointwise conv, whose B reads
 * every second pixel of every second row in place (csb = 2, bsn = 2*W, ln = OW). apk: op(A)
 * pre-packed by nnl_sgemm_pack / nnl_dgemm_pack (side 0, the same isa), or NULL to pack it per
 * call; only for a plain K axis (sp->lk == 0 or >= K), else NNL_EINVAL. Each item is the
 * product nnl_sgemm_split computes, with the same bits. */
int nnl_sgemm_split_pk(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, float alpha,
                       const float *A, nnl_idx rsa, nnl_idx csa, const float *B, nnl_idx bsb,
                       nnl_idx rsb, nnl_idx csb, float beta, float *C, nnl_idx bsc, nnl_idx rsc,
                       const float *bias, int bias_kind, int act, const nnl_split *sp,
                       int nthreads, int isa, const float *apk);
int nnl_dgemm_split_pk(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, double alpha,
                       const double *A, nnl_idx rsa, nnl_idx csa, const double *B, nnl_idx bsb,
                       nnl_idx rsb, nnl_idx csb, double beta, double *C, nnl_idx bsc,
                       nnl_idx rsc, const double *bias, int bias_kind, int act,
                       const nnl_split *sp, int nthreads, int isa, const double *apk);

/* Pack op(X) (rows x cols, strides rs/cs) whole: side 0 = the A operand (M x K), 1 = the B
 * operand (K x N); out holds ceil(M/MR)*MR*K or ceil(N/NR)*NR*K elements of the family isa. */
int nnl_sgemm_pack(int side, nnl_idx rows, nnl_idx cols, const float *X, nnl_idx rs, nnl_idx cs,
                   int isa, float *out);
int nnl_dgemm_pack(int side, nnl_idx rows, nnl_idx cols, const double *X, nnl_idx rs,
                   nnl_idx cs, int isa, double *out);

/* ISA checks: nnl_isa_available, nnl_best_isa, nnl_isa_name (nnl_core.h). */
/* Register and cache blocking of a family for float (elsize 4) or double (elsize 8);
 * returns NNL_EINVAL when the family is not available. */
int nnl_gemm_blocking(int isa, int elsize, int *mr, int *nr, int *mc, int *kc, int *nc);
/* The widest ragged last column panel that family isa's column-tail kernel computes with the
 * rows in the lanes (gemm_internal.h, nnl_tail_s), 0 without one, or -1 (no such family). */
int nnl_gemm_tail_cols(int isa, int elsize);
/* The columns family isa's micro-kernel computes for a product of n columns: its whole NR
 * panels, and a ragged last panel rounded up to whole vectors (the family's lanes); -1 for no
 * such family or n < 0. (The column-tail kernel, where a call can use it, takes a ragged panel
 * of at most tail_n columns for less.) */
nnl_idx nnl_gemm_cost_cols(int isa, int elsize, nnl_idx n);
/* The work units a call with these sizes and nthreads would use (for tests and study): mu rows
 * by nu columns per unit; mu = nu = 0 for products of <= 4 rows (no packing). pack_a / pack_b
 * = 0: that operand comes pre-packed. NNL_EINVAL for sizes < 1 or an unavailable family. */
int nnl_gemm_units(int isa, int elsize, nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K,
                   int nthreads, int pack_a, int pack_b, nnl_idx *mu, nnl_idx *nu);

#endif
