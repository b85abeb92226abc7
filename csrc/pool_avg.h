/* nnlite._pool global average pool: C interface of csrc/pool_avg.c (cdef extern'ed by
 * csrc/pool.pyx).
 *
 *     y[p] = (x[p*n] + ... + x[p*n + n - 1]) / n        for p < planes, n >= 1
 *
 * over planes of n contiguous elements, one after the other. Each plane is summed in vector
 * lanes (the build target's widest vectors) and reduced once (pool_avg.c): the same value for a
 * plane wherever it lies and whatever the thread count, but not the bits of a left-to-right
 * sum. */
#ifndef NNLITE_POOL_AVG_H
#define NNLITE_POOL_AVG_H

#include <stddef.h>

void nnl_plane_means_s(const float *x, ptrdiff_t planes, ptrdiff_t n, float *y);
void nnl_plane_means_d(const double *x, ptrdiff_t planes, ptrdiff_t n, double *y);

#endif
