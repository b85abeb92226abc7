/* nnlite training kernels: C interface of nnlite._train (cdef extern'ed by csrc/train.pyx).
 *
 * BatchNorm over x viewed as (N, C, S) (S = product of the spatial sizes, 1 for (N, C) input),
 * C-contiguous. Every routine handles ONE channel c; the caller runs channels in parallel. A
 * channel's reductions run in a fixed order (8 interleaved double partial sums over each
 * contiguous S-run, runs in image order, partials combined in a fixed tree), so results do not
 * depend on the thread count.
 *
 *   stats:     mean = Σx / cnt;  m2 = Σ(x - mean)²      (two passes, double accumulation)
 *   affine:    y = x * scale + shift                    (scale, shift per channel; with relu:
 *                                                        y <= 0 -> 0, NaN passes)
 *   bwd_sums:  sgy = Σ gy;  sgxm = Σ gy * (x - mean)    (double accumulation)
 *   bwd_gx:    gx = a * gy + b * x + d                  (a, b, d per channel)
 *   relu_mask: out = ym <= 0 ? 0 : gy                   (a ReLU fused after the BatchNorm: its
 *                                                        backward on its output ym; out may
 *                                                        be the channel's gx, then read by
 *                                                        bwd_sums and bwd_gx in place)
 */
#ifndef NNLITE_TRAIN_H
#define NNLITE_TRAIN_H

#include <stddef.h>

typedef ptrdiff_t nnl_tidx;

void nnl_bn_stats_s(const float* x, nnl_tidx n, nnl_tidx s, nnl_tidx sn, double* mean,
                    double* m2);
void nnl_bn_stats_d(const double* x, nnl_tidx n, nnl_tidx s, nnl_tidx sn, double* mean,
                    double* m2);
void nnl_bn_affine_s(const float* x, float* y, nnl_tidx n, nnl_tidx s, nnl_tidx sn,
                     float scale, float shift, int relu);
void nnl_bn_affine_d(const double* x, double* y, nnl_tidx n, nnl_tidx s, nnl_tidx sn,
                     double scale, double shift, int relu);
void nnl_bn_bwd_sums_s(const float* gy, const float* x, nnl_tidx n, nnl_tidx s, nnl_tidx sn,
                       double mean, double* sgy, double* sgxm);
void nnl_bn_bwd_sums_d(const double* gy, const double* x, nnl_tidx n, nnl_tidx s,
                       nnl_tidx sn, double mean, double* sgy, double* sgxm);
void nnl_bn_bwd_gx_s(const float* gy, const float* x, float* gx, nnl_tidx n, nnl_tidx s,
                     nnl_tidx sn, float a, float b, float d);
void nnl_bn_bwd_gx_d(const double* gy, const double* x, double* gx, nnl_tidx n, nnl_tidx s,
                     nnl_tidx sn, double a, double b, double d);
void nnl_bn_relu_mask_s(const float* gy, const float* ym, float* out, nnl_tidx n, nnl_tidx s,
                        nnl_tidx sn);
void nnl_bn_relu_mask_d(const double* gy, const double* ym, double* out, nnl_tidx n,
                        nnl_tidx s, nnl_tidx sn);

/* ReLU on n contiguous elements: y = x <= 0 ? 0 : x (NaN passes, -0.0 -> +0.0);
 * gx = y > 0 ? gy : 0. */
void nnl_relu_fwd_s(const float* x, float* y, nnl_tidx n);
void nnl_relu_fwd_d(const double* x, double* y, nnl_tidx n);
void nnl_relu_bwd_s(const float* gy, const float* y, float* gx, nnl_tidx n);
void nnl_relu_bwd_d(const double* gy, const double* y, double* gx, nnl_tidx n);

/* Depthwise conv weight gradient for ONE output channel (groups == in_channels): gw (KH*KW)
 * = Σ over images and output pixels of gy * the tap's input pixel (double accumulation in a
 * fixed order; padding taps contribute nothing). gy: the channel's (OH, OW) plane of image 0,
 * planes gsn apart; x: its input channel's (H, W) plane of image 0, planes xsn apart.
 * Padding taps are multiplied as zeros (as im2col + GEMM).
 * Returns 0, or -1 when its accumulator and row buffer cannot be allocated. */
int nnl_dw_wgrad_s(const float* gy, const float* x, float* gw, nnl_tidx n, nnl_tidx gsn,
                    nnl_tidx xsn, nnl_tidx H, nnl_tidx W, nnl_tidx kh, nnl_tidx kw,
                    nnl_tidx sh, nnl_tidx sw, nnl_tidx pt, nnl_tidx pl, nnl_tidx dh,
                    nnl_tidx dw, nnl_tidx oh, nnl_tidx ow);
int nnl_dw_wgrad_d(const double* gy, const double* x, double* gw, nnl_tidx n, nnl_tidx gsn,
                    nnl_tidx xsn, nnl_tidx H, nnl_tidx W, nnl_tidx kh, nnl_tidx kw,
                    nnl_tidx sh, nnl_tidx sw, nnl_tidx pt, nnl_tidx pl, nnl_tidx dh,
                    nnl_tidx dw, nnl_tidx oh, nnl_tidx ow);

#endif
