/* nnlite fast convolution: C interface of nnlite._convfast (cdef extern'ed by csrc/convfast.pyx).
 *
 * Implicit-GEMM conv2d: per image n and group g, the conv is the GEMM
 *
 *     y[n, g*FG:(g+1)*FG, :] (FG x L) = W_g (FG x K) @ cols_g (K x L)     K = CG*KH*KW, L = OH*OW
 *
 * but the column matrix cols_g is never built: the B panels the micro-kernel reads (KC x NR
 * strips) are packed straight from the image with the im2col index arithmetic (padding -> 0):
 *
 *     cols_g[(c*KH + a)*KW + b, i*OW + j] = x[n, g*CG + c, i*SH - PT + a*DH, j*SW - PL + b*DW]
 *
 * The register micro-kernels, their packed layouts and the epilogue (alpha/beta, per-row bias,
 * ReLU/ReLU6) are the GEMM's own (csrc/gemm_internal.h, gemm_{generic,avx2,avx512}.c): both
 * extensions link the one static library nnlite_core (setup.py) that holds them.
 *
 * Strides are in ELEMENTS: x(n, c, r, q) = x[n*xsn + c*xsc + r*xsr + q] and
 * y(n, f, l) = y[n*ysn + f*ysf + l] (l = i*OW + j, unit stride). The caller guarantees that
 * every addressed element lies inside its buffer, that y overlaps neither x, w nor bias, and
 * that kh, kw, sh, sw, dh, dw >= 1, pt, pl >= 0 (checked again here: NNL_EINVAL).
 */
#ifndef NNLITE_CONVFAST_H
#define NNLITE_CONVFAST_H

#include "gemm_internal.h"

typedef struct {
    nnl_idx n, c, h, w;          /* image batch, channels, height, width */
    nnl_idx xsn, xsc, xsr;       /* image strides (unit stride along w) */
    nnl_idx f, g;                /* output channels, groups */
    nnl_idx kh, kw, sh, sw, pt, pl, dh, dw;
    nnl_idx oh, ow;              /* output grid */
    nnl_idx ysn, ysf;            /* output strides (unit stride along l) */
} nnl_conv_geom;

/* y = act(alpha * conv(x, w) + beta * y + bias[f]); w is (F, CG*KH*KW) C-contiguous, bias (F,)
 * or NULL. beta == 0 never reads y. Returns NNL_OK, NNL_ENOMEM or NNL_EINVAL. The result does
 * not depend on nthreads (every element is reduced in the same order). */
int nnl_conv_implicit_s(const nnl_conv_geom *geom, const float *x, const float *w,
                        const float *bias, float alpha, float beta, float *y, int act,
                        int nthreads, int isa);
int nnl_conv_implicit_d(const nnl_conv_geom *geom, const double *x, const double *w,
                        const double *bias, double alpha, double beta, double *y, int act,
                        int nthreads, int isa);

/* The weights of nnl_conv_implicit_* packed once (an inference plan's constant weights): per
 * group, per K slice of the call's plan (fixed by the geometry and the family alone), the
 * MR-row panels the call would pack (the GEMM's A layout, nnl_sgemm_pack side 0), into out
 * (nnl_conv_implicit_wpack_size elements); *kc receives the K slice depth they were packed
 * for. Returns NNL_OK or NNL_EINVAL. */
nnl_idx nnl_conv_implicit_wpack_size(const nnl_conv_geom *geom, int elsize, int isa);
int nnl_conv_implicit_wpack_s(const nnl_conv_geom *geom, const float *w, int isa, float *out,
                              nnl_idx *kc);
int nnl_conv_implicit_wpack_d(const nnl_conv_geom *geom, const double *w, int isa, double *out,
                              nnl_idx *kc);
/* nnl_conv_implicit_* with wpk, the weights packed by nnl_conv_implicit_wpack_* for this
 * geometry and the same isa (kc its K slice depth), or NULL: packed per call, as is wpk when
 * kc differs from the call's slicing. Pre-packed, the units cut the output by columns first
 * (each row group re-packs B, while A costs nothing). The same values, so the same bits. */
int nnl_conv_implicit_pk_s(const nnl_conv_geom *geom, const float *x, const float *w,
                           const float *wpk, nnl_idx kc, const float *bias, float alpha,
                           float beta, float *y, int act, int nthreads, int isa);
int nnl_conv_implicit_pk_d(const nnl_conv_geom *geom, const double *x, const double *w,
                           const double *wpk, nnl_idx kc, const double *bias, double alpha,
                           double beta, double *y, int act, int nthreads, int isa);

/* Weight gradient gw (F, CG*KH*KW), C-contiguous and overwritten, = sum over the batch of
 * gy_g[n] @ cols_g[n]^T, computed as ONE GEMM per group with depth N*OH*OW by the GEMM's loop
 * nest, its B panels (the transposed column matrix) packed straight from the image (no im2col
 * buffer). gy holds the rows of the output gradient regrouped image-major: gy[f*rsg + n*L + l]
 * (L = OH*OW, rsg >= N*L). The y strides of geom are not used. Every element is reduced in the
 * same order for any nthreads. Returns NNL_OK, NNL_ENOMEM or NNL_EINVAL. */
int nnl_conv_wgrad_implicit_s(const nnl_conv_geom *geom, const float *x, const float *gy,
                              nnl_idx rsg, float *gw, int nthreads, int isa);
int nnl_conv_wgrad_implicit_d(const nnl_conv_geom *geom, const double *x, const double *gy,
                              nnl_idx rsg, double *gw, int nthreads, int isa);

/* Direct depthwise conv2d (groups == C, F = M*C; output channel f reads input channel f / M):
 * y = act(conv(x, w) + beta * y + bias[f]) with w (F, KH*KW) C-contiguous, bias (F,) or NULL and
 * y planes contiguous (ysf >= OH*OW). Work memory: one padded plane per thread (none for
 * planes too large, which run a row-by-row kernel). Returns NNL_OK or NNL_EINVAL. */
int nnl_conv_depthwise_s(const nnl_conv_geom *geom, const float *x, const float *w,
                         const float *bias, float beta, float *y, int act, int nthreads);
int nnl_conv_depthwise_d(const nnl_conv_geom *geom, const double *x, const double *w,
                         const double *bias, double beta, double *y, int act, int nthreads);

/* Direct dense conv2d for small maps (csrc/convfast_small.c): stride 1, any groups, kernel,
 * padding and dilation; y = act(conv(x, w) + beta * y + bias[f]) with w (F, CG*KH*KW)
 * C-contiguous, bias (F,) or NULL, y planes contiguous; wpk: w packed once by
 * nnl_conv_small_wpack (nnl_conv_small_wpack_size elements; an inference plan's constant
 * weights), or NULL (packed per call). Work memory: the packed weights (wpk NULL) and one
 * padded flat plane per thread. Returns NNL_OK, NNL_ENOMEM or NNL_EINVAL (stride not 1). */
int nnl_conv_small_s(const nnl_conv_geom *geom, const float *x, const float *w,
                     const float *wpk, const float *bias, float beta, float *y, int act,
                     int nthreads);
int nnl_conv_small_d(const nnl_conv_geom *geom, const double *x, const double *w,
                     const double *wpk, const double *bias, double beta, double *y, int act,
                     int nthreads);
int nnl_conv_small_wpack_s(const nnl_conv_geom *geom, const float *w, float *wpk);
int nnl_conv_small_wpack_d(const nnl_conv_geom *geom, const double *w, double *wpk);
nnl_idx nnl_conv_small_wpack_size(const nnl_conv_geom *geom);
nnl_idx nnl_conv_small_workspace(const nnl_conv_geom *geom, int elsize, int nthreads);
/* Its weight gradient: gw (F, CG*KH*KW) C-contiguous = sum over images and output pixels of
 * gy (N, F, OH, OW, C-contiguous) x the padded image taps (x strides in geom; y's unused).
 * Work memory: gy on the flat grid and the padded planes of every image. */
int nnl_conv_small_wgrad_s(const nnl_conv_geom *geom, const float *x, const float *gy,
                           float *gw, int nthreads);
int nnl_conv_small_wgrad_d(const nnl_conv_geom *geom, const double *x, const double *gy,
                           double *gw, int nthreads);

/* Direct dense conv2d for few input channels, any stride (csrc/convfast_phase.c): any groups,
 * kernel, padding and dilation; y = act(conv(x, w) + beta * y + bias[f]) with w (F, CG*KH*KW)
 * C-contiguous, bias (F,) or NULL, y planes contiguous. Each image is cut into stride-phase
 * planes per band of output rows, so every tap is a stride-1 stream. Work memory: the packed
 * weights and one band of phase planes per thread. Returns NNL_OK, NNL_ENOMEM or NNL_EINVAL. */
int nnl_conv_phase_s(const nnl_conv_geom *geom, const float *x, const float *w,
                     const float *bias, float beta, float *y, int act, int nthreads);
int nnl_conv_phase_d(const nnl_conv_geom *geom, const double *x, const double *w,
                     const double *bias, double beta, double *y, int act, int nthreads);
nnl_idx nnl_conv_phase_workspace(const nnl_conv_geom *geom, int elsize, int nthreads);

/* The same conv with a max pool over its output fused (an image model's stem: conv 7x7/2 ->
 * max pool 3x3/2): y (N, F, q->oh * q->ow, images ysn and planes ysf apart as geom gives them)
 * = maxpool(act(conv(x, w) + bias)), the pool's windows reading the conv's (OH, OW) output
 * (padding -inf, never winning; NaN propagates), which never goes to memory: each band of
 * pooled rows computes the conv rows its windows read, a filter block at a time, into a
 * per-thread buffer and pools them from there. The values of nnl_conv_phase_* then the max
 * pool's plane kernel (nnl_maxpool_plane_*), bit for bit. Returns NNL_OK, NNL_ENOMEM or
 * NNL_EINVAL (also a pool nnl_pool_plan_init cannot plan). */
typedef struct {
    nnl_idx kh, kw, sh, sw, pt, pl, dh, dw;   /* window, stride, top/left padding, dilation */
    nnl_idx oh, ow;                           /* pooled output size */
} nnl_pool2d_geom;
int nnl_conv_phase_maxpool_s(const nnl_conv_geom *geom, const nnl_pool2d_geom *pool,
                             const float *x, const float *w, const float *bias, float *y,
                             int act, int nthreads);
int nnl_conv_phase_maxpool_d(const nnl_conv_geom *geom, const nnl_pool2d_geom *pool,
                             const double *x, const double *w, const double *bias, double *y,
                             int act, int nthreads);
nnl_idx nnl_conv_phase_maxpool_workspace(const nnl_conv_geom *geom, const nnl_pool2d_geom *pool,
                                         int elsize, int nthreads);

/* Bytes of work memory nnl_conv_depthwise_* allocates (per-thread plane buffers). */
nnl_idx nnl_conv_depthwise_workspace(const nnl_conv_geom *geom, int elsize, int nthreads);

/* Bytes of one (image, group)'s copy in the implicit GEMM's wide layout (CF_WIDE in
 * convfast_implicit.c): its CG channels, each split into the stride phases its taps read,
 * HQ x WQ each; 0 for kernels wider than that layout takes, -1 for invalid arguments. A strided
 * call with more (image, group) items than threads copies this much per item. */
nnl_idx nnl_conv_implicit_wide_bytes(const nnl_conv_geom *geom, int elsize);

/* Bytes of work memory nnl_conv_implicit_* would allocate (packed weights + per-thread B
 * chunks), or -1 for invalid arguments. */
nnl_idx nnl_conv_implicit_workspace(const nnl_conv_geom *geom, int elsize, int nthreads, int isa);

/* The implicit conv's B-direct micro-kernel (convfast_bdirect.c): tile (8 x 48, row stride 48)
 * = ap (packed 8-row panel, kc deep) @ B, B row k = base[koff[k] .. koff[k] + 48). */
void nnl_cf_bdirect_8x48_s(nnl_idx kc, const float *ap, const float *base, const nnl_idx *koff,
                           float *tile);
/* 1 when that kernel matches the float32 GEMM family ``isa`` (AVX-512, 8 x 48) on this CPU. */
int nnl_cf_bdirect_ok(int isa, int mr, int nr);

/* Fused inverted residual (convfast_fused.c), float32: per image n,
 *     y[n] = W3 @ relu6(dw3x3_s(relu6(W1 @ x[n] + b1), Wd) + bd) + b3 (+ r[n])
 * with the depthwise conv 3x3, stride s (1 or 2), padding 1; with expand = 0 (a block of
 * expansion ratio 1: w1, w1pk and b1 NULL, E == C) the depthwise conv reads x itself:
 *     y[n] = W3 @ relu6(dw3x3_s(x[n], Wd) + bd) + b3 (+ r[n]); with expand = NNL_IR_HEAD (an
 * image model's first conv and its first block, which has no expand) the block's input is
 * computed from the image by a dense conv, w1 (E, C*KH*KW) and b1 its weights and bias, w1pk
 * NULL:  y[n] = W3 @ relu6(dw3x3_s(relu6(conv_head(x[n], W1) + b1), Wd) + bd) + b3 (+ r[n]),
 * its taps summed in (c, kh, kw) order from zero, then the bias added, as the few-channel kernel
 * (nnl_conv_phase_s) does, a tap in the padding adding w * 0. x (N, C, H, W): images xsn apart,
 * each C-contiguous; y and r (N, F, OH*OW): images ysn / rsn apart, each C-contiguous; W1 (E, C),
 * Wd (E, 9), W3 (F, E) C-contiguous; w1pk W1^T (C, E) packed by nnl_sgemm_pack as side 1 (the
 * B operand), w3pk W3 as side 0 (W3^T as side 1 with project_t), both for family isa, or
 * NULL; b1 (E,), bd (E,), b3 (F,) or NULL; r NULL or not overlapping y except
 * r == y. Wd and bd (and a head conv's W1 and b1) reach the call as ``prep`` (nnl_ir_prepare,
 * below). The result is the same bits as the three (two) unfused calls (nnl_sgemm_pk or
 * nnl_conv_phase_s, nnl_conv_depthwise_s, nnl_sgemm_pk) and does not depend on nthreads.
 * Returns NNL_OK, NNL_ENOMEM or NNL_EINVAL (sizes < 1, s not 1 or 2, OH/OW not those of the
 * geometry, prep NULL). */
typedef struct {
    nnl_idx n, c, h, w;          /* batch, input channels, input map */
    nnl_idx e, f, s;             /* expanded channels, output channels, depthwise stride */
    nnl_idx oh, ow;              /* output map: (H - 1) / s + 1, (W - 1) / s + 1 */
    nnl_idx xsn, ysn, rsn;       /* image strides of x, y and r */
    int expand;                  /* NNL_IR_EXPAND: the expand 1x1 runs; NNL_IR_NO_EXPAND: none
                                    (E == C); NNL_IR_HEAD: the block's input map is computed
                                    from x by the dense conv ``head`` */
    int project_t;               /* 1: the project runs pixel-major, y^T = d^T @ W3^T, with
                                    w3pk W3^T packed as side 1 (B); 0: y = W3 @ d, w3pk W3 as
                                    side 0 (A) */
    int split;                   /* how the team shares the work: NNL_IR_AUTO (nnl_ir_plan's
                                    choice), NNL_IR_BANDS or NNL_IR_CHANNELS */
    int layout;                  /* 0 (NCHW), or NNL_IR_X_NHWC: x's images are (H, W, C)
                                    (with expand only), and/or NNL_IR_Y_NHWC: y's and r's are
                                    (OH*OW, F) (with project_t only): a chain of blocks in an
                                    inference plan passes its tensors channels-last, which the
                                    bands compute in, without transposing in and out */
    nnl_conv_geom head;          /* NNL_IR_HEAD only: a dense conv (g 1, F == E, + b1, ReLU6)
                                    from x (head.n == N images of head.c == C channels,
                                    head.h x head.w, strides xsn, head.xsc, head.xsr) to the
                                    block's input map (head.oh == H, head.ow == W) */
} nnl_ir_geom;

enum { NNL_IR_AUTO = -1, NNL_IR_BANDS = 0, NNL_IR_CHANNELS = 1 };
enum { NNL_IR_NO_EXPAND = 0, NNL_IR_EXPAND = 1, NNL_IR_HEAD = 2 };
enum { NNL_IR_X_NHWC = 1, NNL_IR_Y_NHWC = 2 };

int nnl_inverted_residual_s(const nnl_ir_geom *geom, const float *x, const float *w1,
                            const float *w1pk, const float *b1, const float *w3,
                            const float *w3pk, const float *b3, const float *r, float *y,
                            const float *prep, int nthreads, int isa);
/* The block's depthwise taps and bias (and a head conv's taps and bias) in the layout its
 * kernels read, made once for every call on the same weights: ``prep`` of
 * nnl_inverted_residual_s (required; the call reads wd, bd and, with NNL_IR_HEAD, w1 and b1
 * only through it), filled by nnl_ir_prepare (nnl_ir_prepared_size elements; 0 for an
 * invalid geometry) from w1, b1, wd and bd as the call takes them. Returns NNL_OK or
 * NNL_EINVAL. */
nnl_idx nnl_ir_prepared_size(const nnl_ir_geom *geom);
int nnl_ir_prepare(const nnl_ir_geom *geom, const float *w1, const float *b1, const float *wd,
                   const float *bd, float *prep);
/* The team size, output rows per band and split (NNL_IR_BANDS or NNL_IR_CHANNELS) a call with
 * GEMM family isa would use (for tests and study). */
void nnl_ir_plan(const nnl_ir_geom *geom, int nthreads, int isa, int *nt, nnl_idx *rows,
                 int *split);
/* Bytes of work memory a call allocates (bands: two band buffers per thread; channels: the
 * whole image's expanded and depthwise tensors, shared; the prepared taps not included). */
nnl_idx nnl_ir_workspace(const nnl_ir_geom *geom, int nthreads, int isa);

#endif
