/* nnlite._rowops: float32 row and elementwise kernels of a transformer layer (C interface of
 * csrc/rowops_kernels.c, cdef extern'ed by csrc/rowops.pyx).
 *
 *   erf          y = erf(x)                                       elementwise, n values
 *   gelu         y = x * Phi(x)          (tanh_form 0)            elementwise, n values
 *                y = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)   (tanh_form 1)
 *   softmax      y = exp(x - max) / sum(exp(x - max))   over each of `rows` rows of n values
 *   log_softmax  y = (x - max) - log(sum(exp(x - max)))
 *   layer_norm   y = (x - mean) * rstd * w + b,  rstd = 1 / sqrt(var + eps)  (biased var)
 *
 * Row k of x starts at x + k * xrs and of y at y + k * yrs (elements); a row's n values are
 * contiguous. y may be x (same rows, same stride); other overlaps are not allowed.
 * Elementwise arrays are contiguous, y == x allowed.
 *
 * Each entry point splits its work into units of whole rows (elementwise: runs of
 * NNL_ROWOPS_CHUNK values) over up to nt threads of the kernels' pool (nnl_parallel_for); a
 * value or row is computed by one thread in one fixed order, so results do not depend on nt.
 */
#ifndef NNLITE_ROWOPS_H
#define NNLITE_ROWOPS_H

#include <stddef.h>

/* values per unit of the elementwise kernels (a multiple of 16) */
#define NNL_ROWOPS_CHUNK 8192

void nnl_erf_s(const float *x, float *y, ptrdiff_t n, int nt);
void nnl_gelu_s(const float *x, float *y, ptrdiff_t n, int tanh_form, int nt);
void nnl_softmax_rows_s(const float *x, ptrdiff_t xrs, float *y, ptrdiff_t yrs, ptrdiff_t rows,
                        ptrdiff_t n, int log_form, int nt);
/* w, b: n values each or NULL; mean, rstd: rows values each or NULL (the row statistics, as
 * float32, for a backward pass) */
void nnl_layer_norm_rows_s(const float *x, ptrdiff_t xrs, float *y, ptrdiff_t yrs,
                           ptrdiff_t rows, ptrdiff_t n, const float *w, const float *b,
                           float eps, float *mean, float *rstd, int nt);
/* exp(x) of the softmax kernels for x <= 0 (a check hook for the tests) */
void nnl_exp_nonpos_s(const float *x, float *y, ptrdiff_t n);

#endif
