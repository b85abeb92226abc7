/* Vector fill of one tap's rows of im2col columns (csrc/im2col_rows.c; im2col.pyx calls it). */
#ifndef NNLITE_IM2COL_ROWS_H
#define NNLITE_IM2COL_ROWS_H

#include "nnl_core.h"

/* The OH x OW block of column rows of tap (a, b) of one float32 plane x (H x W, row stride
 * W): dst[i*OW + j] = x[(i*sh + roff)*W + j*sw + off] for source rows in [0, H) and output
 * columns j in [j0, j1) (the columns whose source column lies in [0, W), nnl_col_range), 0
 * elsewhere. Returns 1 when done, 0 when this build or stride has no vector path (sw not 1
 * or 2, or no AVX-512): the caller then copies element by element. Reads only source
 * elements of the plane (masked loads). */
int nnl_im2col_tap_s(const float *x, nnl_idx H, nnl_idx W, float *dst, nnl_idx oh, nnl_idx ow,
                     nnl_idx sh, nnl_idx sw, nnl_idx roff, nnl_idx off, nnl_idx j0, nnl_idx j1);

#endif
