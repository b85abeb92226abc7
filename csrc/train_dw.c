/* Depthwise conv weight gradient of nnlite._train (see train.h for the contract). */
#include <stdlib.h>

#include "train.h"

#define LANES 8

/* gw[a*kw + b] = Σ_n Σ_i Σ_j gy[n, i, j] * xpad[n, i*sh + a*dh, j*sw + b*dw] for ONE output
 * channel, xpad = x with its zero padding: gy points at the channel's (OH, OW) plane of image 0
 * (planes gsn apart), x at its input channel's (H, W) plane of image 0 (planes xsn apart).
 * Padding taps are multiplied like the rest (0 * inf = NaN), exactly as im2col + GEMM do, so
 * that the backends agree on every NaN. One pass over gy (rows in image then row order); each
 * source row (a zero row in the padding) is first copied with its zero padding into a row
 * buffer, so that every tap is a full-length dot product over the OW columns. Per tap,
 * products accumulate in double into 8 partial sums (column j into lane j % 8 while full
 * blocks of 8 remain, the rest into a tail sum), combined in a fixed tree at the end: the
 * result does not depend on the thread count. Returns -1 when the buffers cannot be
 * allocated. */
#define DEFINE_DW(T, SUF)                                                                     \
int nnl_dw_wgrad_##SUF(const T* gy, const T* x, T* gw, nnl_tidx n, nnl_tidx gsn,            \
                       nnl_tidx xsn, nnl_tidx H, nnl_tidx W, nnl_tidx kh, nnl_tidx kw,        \
                       nnl_tidx sh, nnl_tidx sw, nnl_tidx pt, nnl_tidx pl, nnl_tidx dh,       \
                       nnl_tidx dw, nnl_tidx oh, nnl_tidx ow) {                               \
    nnl_tidx a, b, m, i, j, k, q, col, row, taps = kh * kw;                                   \
    nnl_tidx wp = (ow - 1) * sw + (kw - 1) * dw + 1, ow8 = ow - ow % LANES;                   \
    double* acc = (double*)calloc((size_t)taps * (LANES + 1), sizeof(double));                \
    T* buf = (T*)malloc((size_t)wp * sizeof(T));                                              \
    if (acc == NULL || buf == NULL) {                                                         \
        free(acc);                                                                            \
        free(buf);                                                                            \
        return -1;                                                                            \
    }                                                                                         \
    for (m = 0; m < n; m++)                                                                   \
        for (i = 0; i < oh; i++) {                                                            \
            const T* g = gy + m * gsn + i * ow;                                               \
            for (a = 0; a < kh; a++) {                                                        \
                row = i * sh - pt + a * dh;                                                   \
                if (row < 0 || row >= H) {                                                    \
                    for (q = 0; q < wp; q++) buf[q] = (T)0;                                   \
                } else {                                                                      \
                    const T* xrow = x + m * xsn + row * W;                                    \
                    for (q = 0; q < wp; q++) {                                                \
                        col = q - pl;                                                         \
                        buf[q] = (col >= 0 && col < W) ? xrow[col] : (T)0;                    \
                    }                                                                         \
                }                                                                             \
                for (b = 0; b < kw; b++) {                                                    \
                    double* ac = acc + (a * kw + b) * (LANES + 1);                            \
                    const T* s = buf + b * dw;                                                \
                    double l[LANES];                                                          \
                    for (k = 0; k < LANES; k++) l[k] = ac[k];                                 \
                    if (sw == 1) {                                                            \
                        for (j = 0; j < ow8; j += LANES)                                      \
                            for (k = 0; k < LANES; k++)                                       \
                                l[k] += (double)g[j + k] * (double)s[j + k];                  \
                    } else {                                                                  \
                        for (j = 0; j < ow8; j += LANES)                                      \
                            for (k = 0; k < LANES; k++)                                       \
                                l[k] += (double)g[j + k] * (double)s[(j + k) * sw];           \
                    }                                                                         \
                    for (k = 0; k < LANES; k++) ac[k] = l[k];                                 \
                    for (j = ow8; j < ow; j++) ac[LANES] += (double)g[j] * (double)s[j * sw]; \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    for (k = 0; k < taps; k++) {                                                              \
        const double* ac = acc + k * (LANES + 1);                                             \
        gw[k] = (T)((((ac[0] + ac[4]) + (ac[2] + ac[6])) + ((ac[1] + ac[5]) + (ac[3] + ac[7])))\
                    + ac[LANES]);                                                             \
    }                                                                                         \
    free(acc);                                                                                \
    free(buf);                                                                                \
    return 0;                                                                                 \
}

DEFINE_DW(float, s)
DEFINE_DW(double, d)
