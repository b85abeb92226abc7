"""Fast conv2d forward kernels (-> nnlite._convfast): implicit GEMM (no im2col matrix) and a
direct depthwise kernel.

``conv2d_implicit`` computes, for every image n and group g,

    y[n, g*FG + f, i*OW + j] = act(alpha * sum_{c, a, b} w[g*FG + f, (c*KH + a)*KW + b]
                                   * x[n, g*CG + c, i*SH - PT + a*DH, j*SW - PL + b*DW]
                                   + beta * y[...] + bias[g*FG + f])

(0 for taps in the padding) with nnlite's GEMM micro-kernels, their B panels read from the
image, never from an im2col matrix (csrc/convfast_implicit.c). ``conv2d_depthwise`` computes
the same for groups == C (F = M*C, output channel f reads input channel f // M) with
register-blocked vector loops over a padded copy of each plane (csrc/convfast_direct.c).

Memory contract: x (N, C, H, W) and y (N, F, OH*OW) have non-negative strides and unit stride
along their last axis (channel slices of a larger buffer are fine), w is (F, CG*KH*KW)
C-contiguous, bias (F,) or None; y overlaps none of them and its rows do not overlap.
The wrapper checks every shape and stride, so the nogil C code never addresses outside the
arrays. The GIL is released while the kernel runs.
"""
from cython cimport floating

from _common cimport check_status
from _common cimport share_pool

import numpy as np

cdef extern from "convfast.h" nogil:
    ctypedef Py_ssize_t nnl_idx
    int NNL_OK
    ctypedef struct nnl_conv_geom:
        nnl_idx n, c, h, w
        nnl_idx xsn, xsc, xsr
        nnl_idx f, g
        nnl_idx kh, kw, sh, sw, pt, pl, dh, dw
        nnl_idx oh, ow
        nnl_idx ysn, ysf
    int nnl_conv_implicit_s(const nnl_conv_geom *geom, const float *x, const float *w,
                            const float *bias, float alpha, float beta, float *y, int act,
                            int nthreads, int isa)
    int nnl_conv_implicit_d(const nnl_conv_geom *geom, const double *x, const double *w,
                            const double *bias, double alpha, double beta, double *y, int act,
                            int nthreads, int isa)
    int nnl_conv_implicit_pk_s(const nnl_conv_geom *geom, const float *x, const float *w,
                               const float *wpk, nnl_idx kc, const float *bias, float alpha,
                               float beta, float *y, int act, int nthreads, int isa)
    int nnl_conv_implicit_pk_d(const nnl_conv_geom *geom, const double *x, const double *w,
                               const double *wpk, nnl_idx kc, const double *bias,
                               double alpha, double beta, double *y, int act, int nthreads,
                               int isa)
    nnl_idx nnl_conv_implicit_wpack_size(const nnl_conv_geom *geom, int elsize, int isa)
    int nnl_conv_implicit_wpack_s(const nnl_conv_geom *geom, const float *w, int isa,
                                  float *out, nnl_idx *kc)
    int nnl_conv_implicit_wpack_d(const nnl_conv_geom *geom, const double *w, int isa,
                                  double *out, nnl_idx *kc)
    int nnl_conv_depthwise_s(const nnl_conv_geom *geom, const float *x, const float *w,
                             const float *bias, float beta, float *y, int act, int nthreads)
    int nnl_conv_depthwise_d(const nnl_conv_geom *geom, const double *x, const double *w,
                             const double *bias, double beta, double *y, int act,
                             int nthreads)
    int nnl_conv_wgrad_implicit_s(const nnl_conv_geom *geom, const float *x, const float *gy,
                                  nnl_idx rsg, float *gw, int nthreads, int isa)
    int nnl_conv_wgrad_implicit_d(const nnl_conv_geom *geom, const double *x, const double *gy,
                                  nnl_idx rsg, double *gw, int nthreads, int isa)
    int nnl_conv_small_s(const nnl_conv_geom *geom, const float *x, const float *w,
                         const float *wpk, const float *bias, float beta, float *y, int act,
                         int nthreads)
    int nnl_conv_small_d(const nnl_conv_geom *geom, const double *x, const double *w,
                         const double *wpk, const double *bias, double beta, double *y, int act,
                         int nthreads)
    int nnl_conv_small_wpack_s(const nnl_conv_geom *geom, const float *w, float *wpk)
    int nnl_conv_small_wpack_d(const nnl_conv_geom *geom, const double *w, double *wpk)
    nnl_idx nnl_conv_small_wpack_size(const nnl_conv_geom *geom)
    nnl_idx nnl_conv_small_workspace(const nnl_conv_geom *geom, int elsize, int nthreads)
    int nnl_conv_phase_s(const nnl_conv_geom *geom, const float *x, const float *w,
                         const float *bias, float beta, float *y, int act, int nthreads)
    int nnl_conv_phase_d(const nnl_conv_geom *geom, const double *x, const double *w,
                         const double *bias, double beta, double *y, int act, int nthreads)
    nnl_idx nnl_conv_phase_workspace(const nnl_conv_geom *geom, int elsize, int nthreads)
    ctypedef struct nnl_pool2d_geom:
        nnl_idx kh, kw, sh, sw, pt, pl, dh, dw
        nnl_idx oh, ow
    int nnl_conv_phase_maxpool_s(const nnl_conv_geom *geom, const nnl_pool2d_geom *pool,
                                 const float *x, const float *w, const float *bias, float *y,
                                 int act, int nthreads)
    int nnl_conv_phase_maxpool_d(const nnl_conv_geom *geom, const nnl_pool2d_geom *pool,
                                 const double *x, const double *w, const double *bias,
                                 double *y, int act, int nthreads)
    nnl_idx nnl_conv_phase_maxpool_workspace(const nnl_conv_geom *geom,
                                             const nnl_pool2d_geom *pool, int elsize,
                                             int nthreads)
    int nnl_conv_small_wgrad_s(const nnl_conv_geom *geom, const float *x, const float *gy,
                               float *gw, int nthreads)
    int nnl_conv_small_wgrad_d(const nnl_conv_geom *geom, const double *x, const double *gy,
                               double *gw, int nthreads)
    nnl_idx nnl_conv_implicit_wide_bytes(const nnl_conv_geom *geom, int elsize)
    nnl_idx nnl_conv_implicit_workspace(const nnl_conv_geom *geom, int elsize, int nthreads,
                                        int isa)
    nnl_idx nnl_conv_depthwise_workspace(const nnl_conv_geom *geom, int elsize, int nthreads)
    int nnl_isa_available(int isa)
    enum: NNL_IR_HEAD
    enum: NNL_IR_X_NHWC
    enum: NNL_IR_Y_NHWC
    ctypedef struct nnl_ir_geom:
        nnl_idx n, c, h, w
        nnl_idx e, f, s
        nnl_idx oh, ow
        nnl_idx xsn, ysn, rsn
        int expand
        int project_t
        int split
        int layout
        nnl_conv_geom head
    int nnl_inverted_residual_s(const nnl_ir_geom *geom, const float *x, const float *w1,
                                const float *w1pk, const float *b1, const float *w3,
                                const float *w3pk, const float *b3, const float *r, float *y,
                                const float *prep, int nthreads, int isa)
    nnl_idx nnl_ir_prepared_size(const nnl_ir_geom *geom)
    int nnl_ir_prepare(const nnl_ir_geom *geom, const float *w1, const float *b1,
                       const float *wd, const float *bd, float *prep)
    void nnl_ir_plan(const nnl_ir_geom *geom, int nthreads, int isa, int *nt, nnl_idx *rows,
                     int *split)
    nnl_idx nnl_ir_workspace(const nnl_ir_geom *geom, int nthreads, int isa)


cdef int _fill(nnl_conv_geom *gm, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
               Py_ssize_t f, Py_ssize_t groups, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
               Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
               Py_ssize_t oh, Py_ssize_t ow) except -1:
    if kh < 1 or kw < 1 or sh < 1 or sw < 1 or dh < 1 or dw < 1 or pt < 0 or pl < 0:
        raise ValueError(f"conv2d_implicit: kernel ({kh}, {kw}), stride ({sh}, {sw}) and "
                         f"dilation ({dh}, {dw}) must be >= 1 and padding ({pt}, {pl}) >= 0")
    if groups < 1 or c % groups or f % groups:
        raise ValueError(f"conv2d_implicit: groups={groups} must divide C={c} and F={f}")
    gm.n, gm.c, gm.h, gm.w, gm.f, gm.g = n, c, h, w, f, groups
    gm.kh, gm.kw, gm.sh, gm.sw, gm.pt, gm.pl, gm.dh, gm.dw = kh, kw, sh, sw, pt, pl, dh, dw
    gm.oh, gm.ow = oh, ow
    gm.xsn = gm.xsc = gm.xsr = gm.ysn = gm.ysf = 0
    return 0


def _check_strides(x, y, Py_ssize_t es, Py_ssize_t L, str fn):
    # x (N, C, H, W) and y (N, F, L): non-negative whole-element strides, unit stride along the
    # last axis, and no two rows of y (one per (n, f)) overlapping
    xs, ys = tuple(x.strides[:4]), tuple(y.strides[:3])
    if any(s < 0 or s % es for s in xs + ys):
        raise ValueError(f"{fn}: strides {xs} / {ys} must be non-negative multiples of {es}")
    if (x.shape[3] > 1 and xs[3] != es) or (L > 1 and ys[2] != es):
        raise ValueError(f"{fn}: x and y need unit stride along their last axis")
    N, F = y.shape[0], y.shape[1]
    if (F > 1 and ys[1] < L * es) or (N > 1 and ys[0] < ((F - 1) * ys[1] + L * es)):
        raise ValueError(f"{fn}: the rows of y overlap (strides {ys}, row length {L})")


def _check_reach(Py_ssize_t size, Py_ssize_t first, Py_ssize_t last, str what):
    # every source coordinate a tap may form lies in [first, last]: in the image, or padding
    if first < -(1 << 40) or last > (1 << 40) + size:
        raise ValueError(f"conv2d kernels: {what} tap coordinates [{first}, {last}] are out of "
                         "the supported index range")


def _check_call(str fn, x, y, Py_ssize_t w_cols, Py_ssize_t want_cols, str cols_name, bias,
                Py_ssize_t F, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw,
                Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                Py_ssize_t dw, int act, Py_ssize_t es, Py_ssize_t yl=-1):
    """The argument checks both kernels share (before any nogil code); True when the output
    is empty and there is nothing to compute. ``yl``: y's elements per plane when they are not
    the conv's OH*OW (a fused pool's output)."""
    N, C, H, W = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    cdef Py_ssize_t L = oh * ow if yl < 0 else yl
    if w_cols != want_cols:
        raise ValueError(f"{fn}: w has {w_cols} columns; expected {cols_name} = {want_cols}")
    if (y.shape[0], y.shape[1], y.shape[2]) != (N, F, L):
        raise ValueError(f"{fn}: y has shape {(y.shape[0], y.shape[1], y.shape[2])}; expected "
                         f"{(N, F, L)}")
    if act not in (0, 1, 2):
        raise ValueError(f"{fn}: act must be 0, 1 or 2, got {act}")
    if bias is not None and len(bias) != F:
        raise ValueError(f"{fn}: bias has {len(bias)} entries; expected {F}")
    if N == 0 or F == 0 or L == 0:
        return True
    if oh == 0 or ow == 0:
        raise ValueError(f"{fn}: a ({oh}, {ow}) conv output cannot feed a pool of "
                         f"{L} outputs")
    if C > 0 and (H == 0 or W == 0):
        raise ValueError(f"{fn}: empty image plane ({H}, {W})")
    _check_strides(x, y, es, L, fn)
    _check_reach(H, -pt, (oh - 1) * sh + (kh - 1) * dh - pt, "row")
    _check_reach(W, -pl, (ow - 1) * sw + (kw - 1) * dw - pl, "column")
    return False


def conv2d_implicit(const floating[:, :, :, :] x, const floating[:, ::1] w, bias,
                    floating[:, :, :] y, Py_ssize_t groups,
                    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                    Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                    Py_ssize_t oh, Py_ssize_t ow, int act=0, double alpha=1.0, double beta=0.0,
                    int num_threads=1, int isa=-1, packed=None):
    """y (N, F, OH*OW) = act(alpha * conv2d(x, w) + beta * y + bias) without an im2col matrix.

    Shape:
        x (N, C, H, W), w (F, C/groups*KH*KW), bias (F,) or None, y (N, F, OH*OW);
        act 0 = none, 1 = ReLU, 2 = ReLU6 (applied last). ``isa``: GEMM micro-kernel family
        code (-1 = best available). ``packed``: ``conv2d_implicit_pack``'s (data, kc) of w for
        this geometry and the same isa (not -1), or None (w is packed per call).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = w.shape[0], es = sizeof(floating)
    cdef nnl_conv_geom gm
    cdef const floating[::1] bv
    cdef const floating[::1] pv
    cdef const floating *pb = NULL
    cdef const floating *pw = NULL
    cdef nnl_idx kc = 0
    cdef int rc
    _fill(&gm, N, C, H, W, F, groups, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    if _check_call("conv2d_implicit", x, y, w.shape[1], (C // groups) * kh * kw,
                   "C/groups*KH*KW", bias, F, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw, act, es):
        return
    if bias is not None:
        bv = bias
        pb = &bv[0]
    if not nnl_isa_available(isa) and isa != -1:
        raise ValueError(f"conv2d_implicit: micro-kernel family {isa} is not available")
    if packed is not None:
        pv, kc = packed
        if isa < 0 or pv.shape[0] != nnl_conv_implicit_wpack_size(&gm, es, isa):
            raise ValueError(f"conv2d_implicit: packed weights of {pv.shape[0]} elements do "
                             f"not match the geometry and micro-kernel family {isa}")
        if pv.shape[0] > 0:
            pw = &pv[0]
    gm.xsn, gm.xsc, gm.xsr = x.strides[0] // es, x.strides[1] // es, x.strides[2] // es
    gm.ysn, gm.ysf = y.strides[0] // es, y.strides[1] // es
    with nogil:
        if floating is float:
            rc = nnl_conv_implicit_pk_s(&gm, &x[0, 0, 0, 0] if C > 0 else NULL, &w[0, 0]
                                        if w.shape[1] > 0 else NULL, pw, kc, pb, <float>alpha,
                                        <float>beta, &y[0, 0, 0], act, num_threads, isa)
        else:
            rc = nnl_conv_implicit_pk_d(&gm, &x[0, 0, 0, 0] if C > 0 else NULL, &w[0, 0]
                                        if w.shape[1] > 0 else NULL, pw, kc, pb, alpha, beta,
                                        &y[0, 0, 0], act, num_threads, isa)
    check_status(rc, "conv2d_implicit")


def conv2d_implicit_pack(const floating[:, ::1] w, floating[::1] out, Py_ssize_t n,
                         Py_ssize_t c, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t groups,
                         Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                         Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                         Py_ssize_t oh, Py_ssize_t ow, int isa):
    """Pack w (F, C/groups*KH*KW) once into ``out`` (``implicit_pack_size`` elements) for
    ``conv2d_implicit`` calls of this geometry (a C-contiguous (n, c, h, wd) image) on
    micro-kernel family ``isa`` (a code, not -1): the panels each call would pack. Returns kc,
    the depth of the K slices they serve (``packed=(out, kc)`` there)."""
    cdef nnl_conv_geom gm
    cdef Py_ssize_t es = sizeof(floating)
    cdef nnl_idx kc = 0
    cdef int rc
    if out.shape[0] != implicit_pack_size(n, c, h, wd, w.shape[0], groups, kh, kw, sh, sw, pt,
                                          pl, dh, dw, oh, ow, es, isa):
        raise ValueError(f"conv2d_implicit_pack: out has {out.shape[0]} elements; expected "
                         "implicit_pack_size(...)")
    if w.shape[1] != (c // groups) * kh * kw:
        raise ValueError(f"conv2d_implicit_pack: w has {w.shape[1]} columns; expected "
                         f"C/groups*KH*KW = {(c // groups) * kh * kw}")
    _fill(&gm, n, c, h, wd, w.shape[0], groups, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    gm.xsr, gm.xsc, gm.xsn = wd, h * wd, c * h * wd
    if out.shape[0] == 0:
        return 0
    with nogil:
        if floating is float:
            rc = nnl_conv_implicit_wpack_s(&gm, &w[0, 0], isa, &out[0], &kc)
        else:
            rc = nnl_conv_implicit_wpack_d(&gm, &w[0, 0], isa, &out[0], &kc)
    check_status(rc, "conv2d_implicit_pack")
    return kc


def implicit_pack_size(Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t f,
                       Py_ssize_t groups, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                       Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                       Py_ssize_t dw, Py_ssize_t oh, Py_ssize_t ow, int elsize, int isa):
    """Elements ``conv2d_implicit_pack`` writes for this geometry, element size and family
    ``isa`` (a code, not -1)."""
    cdef nnl_conv_geom gm
    if isa < 0 or not nnl_isa_available(isa):
        raise ValueError(f"implicit_pack_size: micro-kernel family {isa} is not available")
    _fill(&gm, n, c, h, wd, f, groups, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    gm.xsr, gm.xsc, gm.xsn = wd, h * wd, c * h * wd
    cdef nnl_idx size = nnl_conv_implicit_wpack_size(&gm, elsize, isa)
    if size < 0:
        raise ValueError("implicit_pack_size: invalid arguments")
    return size


def conv2d_weight_grad(const floating[:, :, :, :] x, const floating[:, ::1] gy,
                       floating[:, ::1] gw, Py_ssize_t groups,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                       Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                       Py_ssize_t oh, Py_ssize_t ow, int num_threads=1, int isa=-1):
    """gw (F, C/groups*KH*KW) = Σ_n gy_g[n] @ im2col(x)[n]ᵀ without an im2col matrix: one GEMM
    per group of depth N*OH*OW whose transposed column operand is packed from the image.

    Shape:
        x (N, C, H, W) any non-negative strides with unit stride along W; gy (F, N*OH*OW), the
        output gradient's rows regrouped image-major (gy[f, n*OH*OW + l] = dy[n, f, l]);
        gw (F, C/groups*KH*KW), overwritten. ``isa``: GEMM micro-kernel family (-1 = best).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = gw.shape[0], es = sizeof(floating)
    cdef nnl_conv_geom gm
    cdef int rc
    _fill(&gm, N, C, H, W, F, groups, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    if gw.shape[1] != (C // groups) * kh * kw:
        raise ValueError(f"conv2d_weight_grad: gw has {gw.shape[1]} columns; expected "
                         f"C/groups*KH*KW = {(C // groups) * kh * kw}")
    if (gy.shape[0], gy.shape[1]) != (F, N * oh * ow):
        raise ValueError(f"conv2d_weight_grad: gy has shape {(gy.shape[0], gy.shape[1])}; "
                         f"expected {(F, N * oh * ow)}")
    if not nnl_isa_available(isa) and isa != -1:
        raise ValueError(f"conv2d_weight_grad: micro-kernel family {isa} is not available")
    if F == 0 or gw.shape[1] == 0:
        return
    if N * oh * ow > 0:
        if H == 0 or W == 0:
            raise ValueError(f"conv2d_weight_grad: empty image plane ({H}, {W})")
        xs = (x.strides[0], x.strides[1], x.strides[2], x.strides[3])
        if any(s < 0 or s % es for s in xs) or (W > 1 and xs[3] != es):
            raise ValueError(f"conv2d_weight_grad: x strides {xs} must be non-negative "
                             f"multiples of {es} with unit stride along W")
        _check_reach(H, -pt, (oh - 1) * sh + (kh - 1) * dh - pt, "row")
        _check_reach(W, -pl, (ow - 1) * sw + (kw - 1) * dw - pl, "column")
        gm.xsn, gm.xsc, gm.xsr = x.strides[0] // es, x.strides[1] // es, x.strides[2] // es
    with nogil:
        if floating is float:
            rc = nnl_conv_wgrad_implicit_s(&gm, &x[0, 0, 0, 0] if N * oh * ow > 0 else NULL,
                                           &gy[0, 0] if N * oh * ow > 0 else NULL,
                                           N * oh * ow, &gw[0, 0], num_threads, isa)
        else:
            rc = nnl_conv_wgrad_implicit_d(&gm, &x[0, 0, 0, 0] if N * oh * ow > 0 else NULL,
                                           &gy[0, 0] if N * oh * ow > 0 else NULL,
                                           N * oh * ow, &gw[0, 0], num_threads, isa)
    check_status(rc, "conv2d_weight_grad")


def implicit_wide_bytes(Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                        Py_ssize_t f, Py_ssize_t groups, Py_ssize_t kh, Py_ssize_t kw,
                        Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                        Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh, Py_ssize_t ow, int elsize):
    """Bytes of one image's (and group's) copy in the implicit GEMM's wide layout: its
    channels split into the stride phases the taps read (0 for kernels wider than that layout
    takes; csrc/convfast.h)."""
    cdef nnl_conv_geom gm
    _fill(&gm, n, c, h, w, f, groups, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    gm.xsr, gm.xsc, gm.xsn = w, h * w, c * h * w    # a C-contiguous image
    cdef nnl_idx r = nnl_conv_implicit_wide_bytes(&gm, elsize)
    if r < 0:
        raise ValueError(f"implicit_wide_bytes: invalid geometry (n={n}, c={c}, h={h}, w={w}, "
                         f"f={f}, groups={groups}, kernel {kh}x{kw}, stride {sh}x{sw}, "
                         f"dilation {dh}x{dw}, output {oh}x{ow}) or element size {elsize}")
    return r


def implicit_workspace_bytes(Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                             Py_ssize_t f, Py_ssize_t groups, Py_ssize_t kh, Py_ssize_t kw,
                             Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                             Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh, Py_ssize_t ow,
                             int elsize, int num_threads=1, int isa=-1):
    """Bytes of work memory one conv2d_implicit call allocates (packed weights + B chunks)."""
    cdef nnl_conv_geom gm
    _fill(&gm, n, c, h, w, f, groups, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    gm.xsr, gm.xsc, gm.xsn = w, h * w, c * h * w    # a C-contiguous image
    cdef nnl_idx r = nnl_conv_implicit_workspace(&gm, elsize, num_threads, isa)
    if r < 0:
        raise ValueError("implicit_workspace_bytes: invalid arguments")
    return r


def conv2d_depthwise(const floating[:, :, :, :] x, const floating[:, ::1] w, bias,
                     floating[:, :, :] y, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                     Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                     Py_ssize_t oh, Py_ssize_t ow, int act=0, double beta=0.0,
                     int num_threads=1):
    """y (N, F, OH*OW) = act(depthwise conv2d(x, w) + beta * y + bias), groups == C.

    Shape:
        x (N, C, H, W), w (F, KH*KW) with F a multiple of C, bias (F,) or None,
        y (N, F, OH*OW) whose planes are contiguous (stride of axis 1 >= OH*OW).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = w.shape[0], es = sizeof(floating)
    cdef nnl_conv_geom gm
    cdef const floating[::1] bv
    cdef const floating *pb = NULL
    cdef int rc
    if C < 1 or F % C:
        raise ValueError(f"conv2d_depthwise: F={F} must be a positive multiple of C={C}")
    _fill(&gm, N, C, H, W, F, C, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    if _check_call("conv2d_depthwise", x, y, w.shape[1], kh * kw, "KH*KW", bias, F, oh, ow,
                   kh, kw, sh, sw, pt, pl, dh, dw, act, es):
        return
    if bias is not None:
        bv = bias
        pb = &bv[0]
    gm.xsn, gm.xsc, gm.xsr = x.strides[0] // es, x.strides[1] // es, x.strides[2] // es
    gm.ysn, gm.ysf = y.strides[0] // es, y.strides[1] // es
    with nogil:
        if floating is float:
            rc = nnl_conv_depthwise_s(&gm, &x[0, 0, 0, 0], &w[0, 0], pb, <float>beta,
                                      &y[0, 0, 0], act, num_threads)
        else:
            rc = nnl_conv_depthwise_d(&gm, &x[0, 0, 0, 0], &w[0, 0], pb, beta, &y[0, 0, 0],
                                      act, num_threads)
    check_status(rc, "conv2d_depthwise")


cdef _dense_direct(str fn, bint phase, const floating[:, :, :, :] x, const floating[:, ::1] w,
                   bias, floating[:, :, :] y, Py_ssize_t groups, Py_ssize_t kh, Py_ssize_t kw,
                   Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                   Py_ssize_t dw, Py_ssize_t oh, Py_ssize_t ow, int act, double beta,
                   int num_threads, packed=None, pool=None):
    """The checks and the call of a dense direct kernel: the stride-phase one (``phase``) or
    the small-map one (stride 1; ``packed``: its weights packed once, ``conv2d_small_pack``);
    the two take the same arguments. ``pool``: the stride-phase one with that max pool fused
    (``conv2d_phase_maxpool``; y the pooled output)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = w.shape[0], es = sizeof(floating), yl = -1
    cdef nnl_conv_geom gm
    cdef nnl_pool2d_geom pg
    cdef const floating[::1] bv
    cdef const floating[::1] wpv
    cdef const floating *pb = NULL
    cdef const floating *px = NULL
    cdef const floating *pw = NULL
    cdef const floating *pk = NULL
    cdef int rc
    _fill(&gm, N, C, H, W, F, groups, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    if pool is not None:
        _pool_fill(&pg, pool, oh, ow, fn)
        yl = pg.oh * pg.ow
    if _check_call(fn, x, y, w.shape[1], (C // groups) * kh * kw, "C/groups*KH*KW", bias, F,
                   oh, ow, kh, kw, sh, sw, pt, pl, dh, dw, act, es, yl):
        return
    if bias is not None:
        bv = bias
        pb = &bv[0]
    if packed is not None:
        wpv = packed
        if phase or wpv.shape[0] != nnl_conv_small_wpack_size(&gm):
            raise ValueError(f"{fn}: packed has {wpv.shape[0]} elements; expected "
                             f"conv2d_small_pack's {nnl_conv_small_wpack_size(&gm)}")
        if wpv.shape[0] > 0:
            pk = &wpv[0]
    if C > 0:
        px = &x[0, 0, 0, 0]
    if w.shape[1] > 0:
        pw = &w[0, 0]
    gm.xsn, gm.xsc, gm.xsr = x.strides[0] // es, x.strides[1] // es, x.strides[2] // es
    gm.ysn, gm.ysf = y.strides[0] // es, y.strides[1] // es
    with nogil:
        if floating is float:
            if yl >= 0:
                rc = nnl_conv_phase_maxpool_s(&gm, &pg, px, pw, pb, &y[0, 0, 0], act,
                                              num_threads)
            elif phase:
                rc = nnl_conv_phase_s(&gm, px, pw, pb, <float>beta, &y[0, 0, 0], act,
                                      num_threads)
            else:
                rc = nnl_conv_small_s(&gm, px, pw, pk, pb, <float>beta, &y[0, 0, 0], act,
                                      num_threads)
        else:
            if yl >= 0:
                rc = nnl_conv_phase_maxpool_d(&gm, &pg, px, pw, pb, &y[0, 0, 0], act,
                                              num_threads)
            elif phase:
                rc = nnl_conv_phase_d(&gm, px, pw, pb, beta, &y[0, 0, 0], act, num_threads)
            else:
                rc = nnl_conv_small_d(&gm, px, pw, pk, pb, beta, &y[0, 0, 0], act,
                                      num_threads)
    check_status(rc, fn)


def conv2d_small(const floating[:, :, :, :] x, const floating[:, ::1] w, bias,
                 floating[:, :, :] y, Py_ssize_t groups, Py_ssize_t kh, Py_ssize_t kw,
                 Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh,
                 Py_ssize_t ow, int act=0, double beta=0.0, int num_threads=1, packed=None):
    """y (N, F, OH*OW) = act(conv2d(x, w) + beta * y + bias) for a stride-1 conv by the direct
    small-map kernel (csrc/convfast_small.c: a zero-padded flat plane per image, register
    blocks of filters x output vectors, no GEMM).

    Shape:
        x (N, C, H, W), w (F, C/groups*KH*KW), bias (F,) or None, y (N, F, OH*OW) whose planes
        are contiguous; act 0 = none, 1 = ReLU, 2 = ReLU6 (applied last). ``packed``: w as
        ``conv2d_small_pack`` packed it (same dtype), or None (packed per call).
    """
    _dense_direct("conv2d_small", False, x, w, bias, y, groups, kh, kw, 1, 1, pt, pl, dh, dw,
                  oh, ow, act, beta, num_threads, packed)


def conv2d_small_pack(const floating[:, ::1] w, Py_ssize_t c, Py_ssize_t groups, Py_ssize_t kh,
                      Py_ssize_t kw):
    """w (F, C/groups*KH*KW) packed once for ``conv2d_small`` (its ``packed``): the register
    blocks' layout [group][filter block][channel][tap][filter], a new 1-D array of w's dtype.
    The layout depends on the channels, groups and kernel size only, not on the map."""
    cdef Py_ssize_t F = w.shape[0]
    cdef nnl_conv_geom gm
    cdef nnl_idx size
    cdef int rc
    if groups < 1 or c < 0 or kh < 1 or kw < 1 or c % groups or F % groups:
        raise ValueError(f"conv2d_small_pack: C={c} and F={F} must be multiples of "
                         f"groups={groups} >= 1, kernel {kh}x{kw} at least 1x1")
    if w.shape[1] != (c // groups) * kh * kw:
        raise ValueError(f"conv2d_small_pack: w has {w.shape[1]} columns; expected "
                         f"C/groups*KH*KW = {(c // groups) * kh * kw}")
    _fill(&gm, 1, c, kh, kw, F, groups, kh, kw, 1, 1, 0, 0, 1, 1, 1, 1)
    size = nnl_conv_small_wpack_size(&gm)
    if size < 0:
        raise ValueError(f"conv2d_small_pack: no packing for C={c}, F={F}, groups={groups}, "
                         f"kernel {kh}x{kw}")
    out = np.empty(size, np.float32 if floating is float else np.float64)
    cdef floating[::1] ov = out
    if size == 0:   # no filters or no channels (w then has no columns)
        return out
    with nogil:
        if floating is float:
            rc = nnl_conv_small_wpack_s(&gm, &w[0, 0], &ov[0])
        else:
            rc = nnl_conv_small_wpack_d(&gm, &w[0, 0], &ov[0])
    check_status(rc, "conv2d_small_pack")
    return out


def conv2d_phase(const floating[:, :, :, :] x, const floating[:, ::1] w, bias,
                 floating[:, :, :] y, Py_ssize_t groups, Py_ssize_t kh, Py_ssize_t kw,
                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                 Py_ssize_t dw, Py_ssize_t oh, Py_ssize_t ow, int act=0, double beta=0.0,
                 int num_threads=1):
    """y (N, F, OH*OW) = act(conv2d(x, w) + beta * y + bias) for a dense conv of any stride by
    the direct few-channel kernel (csrc/convfast_phase.c: bands of output rows, the padded
    image cut into stride-phase planes so that every tap is a contiguous stream, register
    blocks of filters x output vectors, no GEMM).

    Shape:
        x (N, C, H, W), w (F, C/groups*KH*KW), bias (F,) or None, y (N, F, OH*OW) whose planes
        are contiguous; act 0 = none, 1 = ReLU, 2 = ReLU6 (applied last).
    """
    _dense_direct("conv2d_phase", True, x, w, bias, y, groups, kh, kw, sh, sw, pt, pl, dh, dw,
                  oh, ow, act, beta, num_threads)


def conv2d_phase_maxpool(const floating[:, :, :, :] x, const floating[:, ::1] w, bias,
                         floating[:, :, :] y, Py_ssize_t groups, Py_ssize_t kh, Py_ssize_t kw,
                         Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                         Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh, Py_ssize_t ow, pool,
                         int act=0, int num_threads=1):
    """y (N, F, POH*POW) = max_pool2d(act(conv2d(x, w) + bias)) by the few-channel kernel with
    the pool fused (csrc/convfast_phase.c): each band of pooled rows computes the conv rows its
    windows read into a per-thread buffer and pools them from there, so the (N, F, OH, OW)
    conv output never goes to memory. ``pool`` = (PKH, PKW, PSH, PSW, PPT, PPL, PDH, PDW, POH,
    POW): the max pool's window, stride, top/left padding (-inf, never winning; NaN
    propagates), dilation and output size over the conv's (OH, OW) output. The values of
    ``conv2d_phase`` then the max pool, bit for bit.

    Shape:
        x (N, C, H, W), w (F, C/groups*KH*KW), bias (F,) or None, y (N, F, POH*POW) whose
        planes are contiguous; act 0 = none, 1 = ReLU, 2 = ReLU6.
    """
    _dense_direct("conv2d_phase_maxpool", True, x, w, bias, y, groups, kh, kw, sh, sw, pt, pl,
                  dh, dw, oh, ow, act, 0.0, num_threads, None, pool)


cdef int _pool_fill(nnl_pool2d_geom *pg, pool, Py_ssize_t oh, Py_ssize_t ow, str fn) except -1:
    # the fused max pool's geometry over a (oh, ow) conv output, checked
    try:
        vals = tuple(pool)
        pg.kh, pg.kw, pg.sh, pg.sw, pg.pt, pg.pl, pg.dh, pg.dw, pg.oh, pg.ow = vals
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{fn}: pool must be 10 integers (PKH, PKW, PSH, PSW, PPT, PPL, PDH, "
                         f"PDW, POH, POW), got {pool!r}") from None
    if (pg.kh < 1 or pg.kw < 1 or pg.sh < 1 or pg.sw < 1 or pg.dh < 1 or pg.dw < 1
            or pg.pt < 0 or pg.pl < 0 or pg.oh < 0 or pg.ow < 0):
        raise ValueError(f"{fn}: pool window ({pg.kh}, {pg.kw}), stride ({pg.sh}, {pg.sw}) and "
                         f"dilation ({pg.dh}, {pg.dw}) must be >= 1, padding ({pg.pt}, {pg.pl}) "
                         f"and output ({pg.oh}, {pg.ow}) >= 0")
    _check_reach(oh, -pg.pt, (pg.oh - 1) * pg.sh + (pg.kh - 1) * pg.dh - pg.pt, "pool row")
    _check_reach(ow, -pg.pl, (pg.ow - 1) * pg.sw + (pg.kw - 1) * pg.dw - pg.pl, "pool column")
    return 0


def phase_maxpool_workspace_bytes(Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                                  Py_ssize_t f, Py_ssize_t groups, Py_ssize_t kh, Py_ssize_t kw,
                                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                                  Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh, Py_ssize_t ow,
                                  pool, int elsize, int num_threads=1):
    """Bytes of work memory one conv2d_phase_maxpool call allocates (packed weights, per-thread
    phase planes, conv rows of a filter block and the pool's row buffers); raises ValueError
    for a pool the kernel cannot plan."""
    cdef nnl_conv_geom gm
    cdef nnl_pool2d_geom pg
    _fill(&gm, n, c, h, w, f, groups, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    _pool_fill(&pg, pool, oh, ow, "phase_maxpool_workspace_bytes")
    cdef nnl_idx r = nnl_conv_phase_maxpool_workspace(&gm, &pg, elsize, num_threads)
    if r < 0:
        raise ValueError(f"phase_maxpool_workspace_bytes: no plan for the pool {tuple(pool)} "
                         f"over a ({oh}, {ow}) map")
    return r


def conv2d_small_weight_grad(const floating[:, :, :, :] x, const floating[:, :, :, ::1] gy,
                             floating[:, ::1] gw, Py_ssize_t groups, Py_ssize_t kh,
                             Py_ssize_t kw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                             Py_ssize_t dw, int num_threads=1):
    """gw (F, C/groups*KH*KW) = the weight gradient of the stride-1 conv2d(x, w) for the output
    gradient gy, by the small-map kernel (csrc/convfast_small.c: gy and x laid on the
    zero-padded flat planes, register blocks of filters x taps summed over every image).

    Shape: x (N, C, H, W) with unit stride along W, gy (N, F, OH, OW) C-contiguous.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = gy.shape[1], oh = gy.shape[2], ow = gy.shape[3]
    cdef Py_ssize_t es = sizeof(floating)
    cdef nnl_conv_geom gm
    cdef int rc
    _fill(&gm, N, C, H, W, F, groups, kh, kw, 1, 1, pt, pl, dh, dw, oh, ow)
    if gy.shape[0] != N:
        raise ValueError(f"conv2d_small_weight_grad: gy has {gy.shape[0]} images, x {N}")
    if (gw.shape[0], gw.shape[1]) != (F, (C // groups) * kh * kw):
        raise ValueError(f"conv2d_small_weight_grad: gw has shape {(gw.shape[0], gw.shape[1])}"
                         f"; expected {(F, (C // groups) * kh * kw)}")
    if F == 0 or C == 0 or gw.shape[1] == 0:
        return
    if N > 0 and oh > 0 and ow > 0:
        if H == 0 or W == 0:
            raise ValueError(f"conv2d_small_weight_grad: empty image plane ({H}, {W})")
        xs = (x.strides[0], x.strides[1], x.strides[2], x.strides[3])
        if any(s < 0 or s % es for s in xs) or (W > 1 and xs[3] != es):
            raise ValueError("conv2d_small_weight_grad: x needs non-negative whole-element "
                             "strides and unit stride along W")
        _check_reach(H, -pt, (oh - 1) + (kh - 1) * dh - pt, "row")
        _check_reach(W, -pl, (ow - 1) + (kw - 1) * dw - pl, "column")
    gm.xsn, gm.xsc, gm.xsr = x.strides[0] // es, x.strides[1] // es, x.strides[2] // es
    with nogil:
        if floating is float:
            rc = nnl_conv_small_wgrad_s(&gm, &x[0, 0, 0, 0] if N > 0 else NULL,
                                        &gy[0, 0, 0, 0] if N * oh * ow > 0 else NULL,
                                        &gw[0, 0], num_threads)
        else:
            rc = nnl_conv_small_wgrad_d(&gm, &x[0, 0, 0, 0] if N > 0 else NULL,
                                        &gy[0, 0, 0, 0] if N * oh * ow > 0 else NULL,
                                        &gw[0, 0], num_threads)
    check_status(rc, "conv2d_small_weight_grad")


def small_workspace_bytes(Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, Py_ssize_t f,
                          Py_ssize_t groups, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pt,
                          Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh,
                          Py_ssize_t ow, int elsize, int num_threads=1):
    """Bytes of work memory one conv2d_small call allocates (packed weights, per-thread
    planes)."""
    cdef nnl_conv_geom gm
    _fill(&gm, n, c, h, w, f, groups, kh, kw, 1, 1, pt, pl, dh, dw, oh, ow)
    cdef nnl_idx r = nnl_conv_small_workspace(&gm, elsize, num_threads)
    if r < 0:
        raise ValueError("small_workspace_bytes: invalid arguments")
    return r


def phase_workspace_bytes(Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                          Py_ssize_t f, Py_ssize_t groups, Py_ssize_t kh, Py_ssize_t kw,
                          Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                          Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh, Py_ssize_t ow,
                          int elsize, int num_threads=1):
    """Bytes of work memory one conv2d_phase call allocates (packed weights, per-thread band
    of phase planes)."""
    cdef nnl_conv_geom gm
    _fill(&gm, n, c, h, w, f, groups, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    cdef nnl_idx r = nnl_conv_phase_workspace(&gm, elsize, num_threads)
    if r < 0:
        raise ValueError("phase_workspace_bytes: invalid arguments")
    return r


def depthwise_workspace_bytes(Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                              Py_ssize_t f, Py_ssize_t groups, Py_ssize_t kh, Py_ssize_t kw,
                              Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                              Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh, Py_ssize_t ow,
                              int elsize, int num_threads=1):
    """Bytes of work memory one conv2d_depthwise call allocates (per-thread plane buffers)."""
    cdef nnl_conv_geom gm
    _fill(&gm, n, c, h, w, f, groups, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    gm.xsr, gm.xsc, gm.xsn = w, h * w, c * h * w    # a C-contiguous image
    return nnl_conv_depthwise_workspace(&gm, elsize, num_threads)


# ------------------------------------------------------------------------- Winograd F(m, 3)
cdef extern from "gemm_kernels.h" nogil:
    int nnl_gemm_blocking(int isa, int elsize, int *mr, int *nr, int *mc, int *kc, int *nc)


cdef extern from "convfast_winograd.h" nogil:
    nnl_idx nnl_wino_packed_elems(int m, nnl_idx f, nnl_idx g, nnl_idx cg, int elsize, int isa)
    int nnl_wino_weights_s(int m, nnl_idx nf, const float *w, float *u, int nthreads)
    int nnl_wino_weights_d(int m, nnl_idx nf, const double *w, double *u, int nthreads)
    int nnl_wino_pack_s(int m, nnl_idx f, nnl_idx g, nnl_idx cg, const float *u, int isa,
                        float *out)
    int nnl_wino_pack_d(int m, nnl_idx f, nnl_idx g, nnl_idx cg, const double *u, int isa,
                        double *out)
    int nnl_wino_weights_packed_s(int m, nnl_idx f, nnl_idx g, nnl_idx cg, const float *w,
                                  int isa, float *out, int nthreads)
    int nnl_wino_weights_packed_d(int m, nnl_idx f, nnl_idx g, nnl_idx cg, const double *w,
                                  int isa, double *out, int nthreads)
    int nnl_conv_winograd_s(const nnl_conv_geom *geom, int m, const float *x, const float *u,
                            const float *upk, const float *bias, float beta, float *y, int act,
                            int nthreads, int isa, void *work, nnl_idx work_bytes)
    int nnl_conv_winograd_d(const nnl_conv_geom *geom, int m, const double *x, const double *u,
                            const double *upk, const double *bias, double beta, double *y,
                            int act, int nthreads, int isa, void *work, nnl_idx work_bytes)
    nnl_idx nnl_conv_winograd_workspace(const nnl_conv_geom *geom, int m, int elsize,
                                        int nthreads, int isa, int packed)
    int nnl_conv_winograd_cost(const nnl_conv_geom *geom, int m, int elsize, int nthreads,
                               int isa, nnl_idx *cols, nnl_idx *u_reads)
    int nnl_best_isa()


cdef bint _bytes_overlap(const void *p, const Py_ssize_t *shape, const Py_ssize_t *strides,
                         int ndim, Py_ssize_t es, const void *w, Py_ssize_t nw):
    """Whether the elements of an array (base p, any strides) and the bytes [w, w + nw)
    share an address range (a conservative test on the arrays' extents)."""
    cdef Py_ssize_t lo = 0, hi = es, d, k
    for k in range(ndim):
        if shape[k] == 0:
            return False
        d = (shape[k] - 1) * strides[k]
        if d < 0:
            lo += d
        else:
            hi += d
    cdef const char *a = <const char *>p
    cdef const char *b = <const char *>w
    return a + lo < b + nw and b < a + hi


cdef int _wino_isa(int isa, str fn) except -2:
    if isa == -1:
        return nnl_best_isa()
    if not nnl_isa_available(isa):
        raise ValueError(f"{fn}: micro-kernel family {isa} is not available")
    return isa


def _wino_check_u(u, Py_ssize_t m, Py_ssize_t groups, str fn):
    if m not in (2, 4):
        raise ValueError(f"{fn}: tile size m={m} must be 2 or 4 (F(2x2, 3x3) or F(4x4, 3x3))")
    if groups < 1 or u.shape[1] % groups:
        raise ValueError(f"{fn}: groups={groups} must divide F={u.shape[1]}")
    if u.shape[0] != (m + 2) * (m + 2):
        raise ValueError(f"{fn}: u has {u.shape[0]} transformed taps; F({m}x{m}, 3x3) has "
                         f"{(m + 2) * (m + 2)}")


def winograd_weights(const floating[:, ::1] w, int m, floating[:, ::1] u, int num_threads=1):
    """u (alpha^2, NF) = G w_q G^T of the NF 3x3 filters w (NF, 9) (row-major taps), computed
    in double; alpha = m + 2 (m = 2 or 4)."""
    cdef Py_ssize_t nf = w.shape[0]
    cdef int rc
    if m not in (2, 4):
        raise ValueError(f"winograd_weights: tile size m={m} must be 2 or 4")
    if w.shape[1] != 9 or u.shape[0] != (m + 2) * (m + 2) or u.shape[1] != nf:
        raise ValueError(f"winograd_weights: w {tuple(w.shape)[:2]} must be (NF, 9) and u "
                         f"{tuple(u.shape)[:2]} ({(m + 2) * (m + 2)}, NF)")
    if nf == 0:
        return
    with nogil:
        if floating is float:
            rc = nnl_wino_weights_s(m, nf, &w[0, 0], &u[0, 0], num_threads)
        else:
            rc = nnl_wino_weights_d(m, nf, &w[0, 0], &u[0, 0], num_threads)
    check_status(rc, "winograd_weights")


def winograd_packed_size(Py_ssize_t m, Py_ssize_t f, Py_ssize_t groups, Py_ssize_t cg,
                         int elsize, int isa=-1):
    """Elements ``winograd_pack`` writes for F(m x m, 3x3) weights u (alpha^2, F, CG)."""
    isa = _wino_isa(isa, "winograd_packed_size")
    cdef nnl_idx r = nnl_wino_packed_elems(m, f, groups, cg, elsize, isa)
    if r < 0:
        raise ValueError(f"winograd_packed_size: invalid m={m}, F={f}, groups={groups}, "
                         f"CG={cg}, elsize={elsize}")
    return r


def winograd_pack(const floating[:, :, ::1] u, Py_ssize_t groups, int m, floating[::1] out,
                  int isa=-1):
    """Pack every u[xi][g] (FG x CG) once as the GEMM's A operand of family ``isa`` into out
    (``winograd_packed_size`` elements), for ``conv2d_winograd(upk=out)``."""
    cdef Py_ssize_t F = u.shape[1], CG = u.shape[2]
    cdef int rc
    _wino_check_u(u, m, groups, "winograd_pack")
    isa = _wino_isa(isa, "winograd_pack")
    if out.shape[0] != winograd_packed_size(m, F, groups, CG, sizeof(floating), isa):
        raise ValueError(f"winograd_pack: out has {out.shape[0]} elements; expected "
                         f"{winograd_packed_size(m, F, groups, CG, sizeof(floating), isa)}")
    if out.shape[0] == 0:
        return
    with nogil:
        if floating is float:
            rc = nnl_wino_pack_s(m, F, groups, CG, &u[0, 0, 0], isa, &out[0])
        else:
            rc = nnl_wino_pack_d(m, F, groups, CG, &u[0, 0, 0], isa, &out[0])
    check_status(rc, "winograd_pack")


def winograd_weights_packed(const floating[:, :, :, ::1] w, Py_ssize_t groups, int m,
                            floating[::1] out, int isa=-1, int num_threads=1):
    """``winograd_weights`` then ``winograd_pack`` in one pass (the same bits, no (alpha^2, F,
    CG) intermediate): the 3x3 weights w (F, CG, 3, 3) transformed straight into out
    (``winograd_packed_size`` elements), for ``conv2d_winograd(upk=out)``."""
    cdef Py_ssize_t F = w.shape[0], CG = w.shape[1]
    cdef int rc
    if m not in (2, 4):
        raise ValueError(f"winograd_weights_packed: tile size m={m} must be 2 or 4")
    if w.shape[2] != 3 or w.shape[3] != 3:
        raise ValueError(f"winograd_weights_packed: w {tuple(w.shape)[:4]} must be (F, CG, 3, 3)")
    if groups < 1 or F % groups:
        raise ValueError(f"winograd_weights_packed: groups={groups} must divide F={F}")
    isa = _wino_isa(isa, "winograd_weights_packed")
    if out.shape[0] != winograd_packed_size(m, F, groups, CG, sizeof(floating), isa):
        raise ValueError(f"winograd_weights_packed: out has {out.shape[0]} elements; expected "
                         f"{winograd_packed_size(m, F, groups, CG, sizeof(floating), isa)}")
    if out.shape[0] == 0:
        return
    with nogil:
        if floating is float:
            rc = nnl_wino_weights_packed_s(m, F, groups, CG, &w[0, 0, 0, 0], isa, &out[0],
                                           num_threads)
        else:
            rc = nnl_wino_weights_packed_d(m, F, groups, CG, &w[0, 0, 0, 0], isa, &out[0],
                                           num_threads)
    check_status(rc, "winograd_weights_packed")


def conv2d_winograd(const floating[:, :, :, :] x, const floating[:, :, ::1] u, upk, bias,
                    floating[:, :, :] y, Py_ssize_t groups, int m, Py_ssize_t pt,
                    Py_ssize_t pl, Py_ssize_t oh, Py_ssize_t ow, int act=0, double beta=0.0,
                    int num_threads=1, int isa=-1, unsigned char[::1] work=None):
    """y (N, F, OH*OW) = act(conv2d(x, w) + beta * y + bias) for a 3x3 kernel, stride 1,
    dilation 1, by Winograd F(m x m, 3 x 3) (m = 2 or 4) on the transformed weights u.
    ``work``: bytes the call may use as its work memory (it needs ``winograd_workspace_bytes``
    of them from their first 64-byte boundary on; given fewer, it allocates its own); they
    must overlap none of the arrays.

    Shape:
        x (N, C, H, W); u (alpha^2, F, C/groups) with alpha = m + 2 (u[i*alpha + j] =
        (G w G^T)[i, j]); upk: ``winograd_pack(u, groups, m, ., isa)`` or None; bias (F,) or
        None; y (N, F, OH*OW). u may be None when upk is given and F/groups > 4 (the GEMM
        reads unpacked weights only for products of at most 4 rows). Padding PT/PL top/left; rows/columns past the image (bottom
        and right padding) read as zeros. act 0 = none, 1 = ReLU, 2 = ReLU6 (applied last).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = u.shape[1] if u is not None else y.shape[1], es = sizeof(floating)
    cdef Py_ssize_t cg
    cdef nnl_conv_geom gm
    cdef const floating[::1] bv
    cdef const floating[::1] pv
    cdef const floating *pb = NULL
    cdef const floating *pp = NULL
    cdef const floating *pu = NULL
    cdef int rc
    if u is None:
        if m not in (2, 4):
            raise ValueError(f"conv2d_winograd: tile size m={m} must be 2 or 4 (F(2x2, 3x3) "
                             "or F(4x4, 3x3))")
        if upk is None or groups < 1 or F % groups or C % groups or F // groups <= 4:
            raise ValueError("conv2d_winograd: u may be None only with upk and more than 4 "
                             f"output channels per group (F={F}, groups={groups})")
        cg = C // groups
    else:
        _wino_check_u(u, m, groups, "conv2d_winograd")
        if u.shape[2] * groups != C:
            raise ValueError(f"conv2d_winograd: u has {u.shape[2]} input channels per group; "
                             f"expected C/groups = {C}/{groups}")
        cg = u.shape[2]
        if cg > 0:
            pu = &u[0, 0, 0]
    _fill(&gm, N, C, H, W, F, groups, 3, 3, 1, 1, pt, pl, 1, 1, oh, ow)
    if _check_call("conv2d_winograd", x, y, 0, 0, "", bias, F, oh, ow, 3, 3, 1, 1, pt, pl,
                   1, 1, act, es):
        return
    isa = _wino_isa(isa, "conv2d_winograd")
    if bias is not None:
        bv = bias
        pb = &bv[0]
    if upk is not None:
        pv = upk
        if pv.shape[0] != winograd_packed_size(m, F, groups, cg, es, isa):
            raise ValueError("conv2d_winograd: upk does not match u, groups, m and the isa")
        if pv.shape[0] > 0:
            pp = &pv[0]
    gm.xsn, gm.xsc, gm.xsr = x.strides[0] // es, x.strides[1] // es, x.strides[2] // es
    gm.ysn, gm.ysf = y.strides[0] // es, y.strides[1] // es
    cdef void *pw = NULL
    cdef nnl_idx nw = 0
    if work is not None and work.shape[0] > 0:
        pw, nw = &work[0], work.shape[0]
        # the call writes its work memory while it reads x and writes y
        if ((C > 0 and _bytes_overlap(&x[0, 0, 0, 0], x.shape, x.strides, 4, es, pw, nw)) or
                _bytes_overlap(&y[0, 0, 0], y.shape, y.strides, 3, es, pw, nw) or
                (pu != NULL and _bytes_overlap(pu, u.shape, u.strides, 3, es, pw, nw)) or
                (pp != NULL and _bytes_overlap(pp, pv.shape, pv.strides, 1, es, pw, nw)) or
                (pb != NULL and _bytes_overlap(pb, bv.shape, bv.strides, 1, es, pw, nw))):
            raise ValueError(f"conv2d_winograd: the work memory ({nw} bytes) overlaps x "
                             f"{(N, C, H, W)}, y {tuple(y.shape)[:3]}, the weights or the bias")
    with nogil:
        if floating is float:
            rc = nnl_conv_winograd_s(&gm, m, &x[0, 0, 0, 0] if C > 0 else NULL, pu, pp, pb,
                                     <float>beta, &y[0, 0, 0], act, num_threads, isa, pw, nw)
        else:
            rc = nnl_conv_winograd_d(&gm, m, &x[0, 0, 0, 0] if C > 0 else NULL, pu, pp, pb,
                                     beta, &y[0, 0, 0], act, num_threads, isa, pw, nw)
    check_status(rc, "conv2d_winograd")


def winograd_workspace_bytes(Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                             Py_ssize_t f, Py_ssize_t groups, int m, Py_ssize_t pt,
                             Py_ssize_t pl, Py_ssize_t oh, Py_ssize_t ow, int elsize,
                             int num_threads=1, int isa=-1, bint packed=False):
    """Bytes of work memory one conv2d_winograd call allocates (transformed input and GEMM
    output of one tile chunk, plus the packed weights unless ``packed``)."""
    cdef nnl_conv_geom gm
    _fill(&gm, n, c, h, w, f, groups, 3, 3, 1, 1, pt, pl, 1, 1, oh, ow)
    gm.xsr, gm.xsc, gm.xsn = w, h * w, c * h * w
    isa = _wino_isa(isa, "winograd_workspace_bytes")
    cdef nnl_idx r = nnl_conv_winograd_workspace(&gm, m, elsize, num_threads, isa, packed)
    if r < 0:
        raise ValueError("winograd_workspace_bytes: invalid arguments")
    return r


def winograd_cost(Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, Py_ssize_t f,
                  Py_ssize_t groups, int m, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t oh,
                  Py_ssize_t ow, int elsize, int num_threads=1, int isa=-1):
    """(cols, u_reads) of a conv2d_winograd call: the GEMM columns its micro-kernel computes
    over all tile chunks (each chunk's ragged last panel rounded up to whole vectors) and its
    passes over the transformed weights (one per chunk); the terms of the plans' tile choice
    (nnlite/_algorithms.py, ``winograd_tile``)."""
    cdef nnl_conv_geom gm
    cdef nnl_idx cols = 0, reads = 0
    _fill(&gm, n, c, h, w, f, groups, 3, 3, 1, 1, pt, pl, 1, 1, oh, ow)
    gm.xsr, gm.xsc, gm.xsn = w, h * w, c * h * w
    isa = _wino_isa(isa, "winograd_cost")
    if nnl_conv_winograd_cost(&gm, m, elsize, num_threads, isa, &cols, &reads) != NNL_OK:
        raise ValueError(f"winograd_cost: invalid arguments (N={n}, C={c}, {h}x{w}, F={f}, "
                         f"groups={groups}, m={m}, elsize={elsize})")
    return cols, reads


# ------------------------------------------------------------------ fused inverted residual
# how the team shares a fused block (nnl_ir_geom.split): the plan's choice, bands of output
# rows, or channels of one image at a time
IR_SPLITS = {"auto": -1, "bands": 0, "channels": 1}


cdef int _ir_fill(nnl_ir_geom *gm, Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                  Py_ssize_t e, Py_ssize_t f, Py_ssize_t s, bint expand, str fn,
                  str split="auto", head=None) except -1:
    """gm for a block of E expanded and F output channels, stride s, on (n, c, h, w) inputs;
    with ``head`` = (kh, kw, sh, sw, pt, pb, pl, pr, dh, dw), (n, c, h, w) is the image of the
    head conv (expand must be set: w1 holds its weights) and its output the block's input."""
    if split not in IR_SPLITS:
        raise ValueError(f"{fn}: split must be one of {sorted(IR_SPLITS)}, got {split!r}")
    if head is not None:
        if not expand:
            raise ValueError(f"{fn}: a head conv needs its weights as w1 (expand)")
        _ir_head(gm, head, n, c, h, w, e, fn)
        h, w = gm.head.oh, gm.head.ow
    if n < 0 or c < 1 or h < 1 or w < 1 or e < 1 or f < 1 or s not in (1, 2):
        raise ValueError(f"{fn}: needs N >= 0, C, H, W, E, F >= 1 and stride 1 or 2, got "
                         f"N={n}, C={c}, H={h}, W={w}, E={e}, F={f}, stride={s}")
    if not expand and e != c:
        raise ValueError(f"{fn}: a block without expand needs E == C, got C={c}, E={e}")
    gm.n, gm.c, gm.h, gm.w, gm.e, gm.f, gm.s = n, c, h, w, e, f, s
    gm.expand = NNL_IR_HEAD if head is not None else expand
    gm.project_t = 0
    gm.layout = 0
    gm.split = IR_SPLITS[split]
    gm.oh, gm.ow = (h - 1) // s + 1, (w - 1) // s + 1
    gm.xsn = gm.head.xsn if head is not None else c * h * w
    gm.ysn = f * gm.oh * gm.ow
    gm.rsn = gm.ysn
    return 0


cdef int _ir_head(nnl_ir_geom *gm, head, Py_ssize_t n, Py_ssize_t c, Py_ssize_t xh,
                  Py_ssize_t xw, Py_ssize_t e, str fn) except -1:
    """gm.head from ``head`` = (kh, kw, sh, sw, pt, pb, pl, pr, dh, dw): the dense conv from an
    (n, c, xh, xw) image to e channels, its output map (the block's input) in head.oh x ow."""
    try:
        kh, kw, sh, sw, pt, pb, pl, pr, dh, dw = (int(v) for v in head)
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: head must be (kh, kw, sh, sw, pt, pb, pl, pr, dh, dw), got "
                         f"{head!r}") from None
    if min(kh, kw, sh, sw, dh, dw) < 1 or min(pt, pb, pl, pr) < 0:
        raise ValueError(f"{fn}: head needs kernel, stride, dilation >= 1 and padding >= 0, "
                         f"got {head!r}")
    cdef Py_ssize_t h = (xh + pt + pb - dh * (kh - 1) - 1) // sh + 1
    cdef Py_ssize_t w = (xw + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if h < 1 or w < 1:
        raise ValueError(f"{fn}: head {head!r} leaves no output of a {xh}x{xw} image")
    gm.head.n, gm.head.c, gm.head.h, gm.head.w = n, c, xh, xw
    gm.head.xsn, gm.head.xsc, gm.head.xsr = c * xh * xw, xh * xw, xw
    gm.head.f, gm.head.g = e, 1
    gm.head.kh, gm.head.kw, gm.head.sh, gm.head.sw = kh, kw, sh, sw
    gm.head.pt, gm.head.pl, gm.head.dh, gm.head.dw = pt, pl, dh, dw
    gm.head.oh, gm.head.ow = h, w
    gm.head.ysn = gm.head.ysf = 0
    return 0


cdef Py_ssize_t _image_stride(a, str what, str fn) except -1:
    """Elements between the images of ``a`` (N, ...), each image C-contiguous."""
    cdef Py_ssize_t es = a.itemsize, inner = 1, k
    for k in range(a.ndim - 1, 0, -1):
        if a.shape[k] > 1 and a.strides[k] != inner * es:
            raise ValueError(f"{fn}: every image of {what} must be C-contiguous, got shape "
                             f"{tuple(a.shape)} with strides {tuple(a.strides)}")
        inner *= a.shape[k]
    if a.shape[0] > 1 and (a.strides[0] < inner * es or a.strides[0] % es):
        raise ValueError(f"{fn}: the images of {what} overlap or are misaligned (strides "
                         f"{tuple(a.strides)}, shape {tuple(a.shape)})")
    return a.strides[0] // es if a.shape[0] > 1 else inner


cdef const float *_ir_vec(v, Py_ssize_t n, str what, str fn) except? NULL:
    """Address of a C-contiguous float32 (n,) vector (NULL for None)."""
    cdef const float[::1] mv
    if v is None:
        return NULL
    mv = v
    if mv.shape[0] != n:
        raise ValueError(f"{fn}: {what} has {mv.shape[0]} elements, expected {n}")
    return &mv[0]


cdef const float *_ir_packed(pk, Py_ssize_t rows, Py_ssize_t cols, int side, int isa,
                             str what, str fn) except? NULL:
    """Address of a (rows, cols) float32 operand packed by the GEMM for family ``isa``: side 0
    as the A operand (ceil(rows/MR)*MR*cols elements), side 1 as the B operand
    (rows*ceil(cols/NR)*NR); NULL for None."""
    cdef const float[::1] mv
    cdef int mr = 0, nr = 0, mc = 0, kc = 0, nc = 0
    cdef Py_ssize_t want
    if pk is None:
        return NULL
    mv = pk
    if nnl_gemm_blocking(_wino_isa(isa, fn), 4, &mr, &nr, &mc, &kc, &nc) != NNL_OK:
        raise ValueError(f"{fn}: no GEMM micro-kernel family {isa} for float32")
    want = (rows + mr - 1) // mr * mr * cols if side == 0 else (cols + nr - 1) // nr * nr * rows
    if mv.shape[0] != want:
        raise ValueError(f"{fn}: {what} has {mv.shape[0]} elements; a ({rows}, {cols}) operand "
                         f"packed as side {'AB'[side]} for family {isa} has {want}")
    return &mv[0]


cdef class BoundInvertedResidual:
    """An ``inverted_residual`` call on arrays checked once (``bind_inverted_residual``):
    calling it with a thread count runs the block; it keeps the arrays alive."""
    cdef nnl_ir_geom gm
    cdef const float *x
    cdef const float *w1
    cdef const float *w1pk
    cdef const float *b1
    cdef const float *w3
    cdef const float *w3pk
    cdef const float *b3
    cdef const float *r
    cdef float *y
    cdef const float *prep
    cdef int isa
    cdef object keep

    def __call__(self, int num_threads=1):
        cdef int rc
        if self.gm.n == 0:
            return
        with nogil:
            rc = nnl_inverted_residual_s(&self.gm, self.x, self.w1, self.w1pk, self.b1,
                                         self.w3, self.w3pk, self.b3, self.r, self.y,
                                         self.prep, num_threads, self.isa)
        check_status(rc, "inverted_residual")


def bind_inverted_residual(const float[:, :, :, :] x, const float[:, ::1] w1, w1pk, b1,
                           const float[:, ::1] wd, bd, const float[:, ::1] w3, w3pk, b3,
                           float[:, :, :] y, Py_ssize_t stride, residual=None, int isa=-1,
                           bint project_t=False, str split="auto", head=None,
                           bint x_channels_last=False, bint y_channels_last=False):
    """``inverted_residual``'s arguments checked once: a ``BoundInvertedResidual`` to call with
    the thread count (the inference plan binds each fused block so: no argument parsing
    between kernels). The depthwise taps and biases (and a head conv's weights and bias) are
    read here, into the kernel's layout: changing wd, bd, b1 or a head's w1 afterwards does
    not change the bound call."""
    fn = "inverted_residual"
    cdef BoundInvertedResidual call = BoundInvertedResidual.__new__(BoundInvertedResidual)
    cdef nnl_ir_geom gm
    cdef bint expand = w1 is not None
    cdef Py_ssize_t E = w1.shape[0] if expand else wd.shape[0], F = w3.shape[0]
    if not expand and (w1pk is not None or b1 is not None or head is not None):
        raise ValueError(f"{fn}: without w1 (no expand) w1pk, b1 and head must be None too")
    if head is not None and w1pk is not None:
        raise ValueError(f"{fn}: a head conv's weights w1 are not packed (w1pk None)")
    if x_channels_last and (not expand or head is not None):
        raise ValueError(f"{fn}: a channels-last x needs the 1x1 expand (w1, no head)")
    if y_channels_last and not project_t:
        raise ValueError(f"{fn}: a channels-last y needs the pixel-major project (project_t)")
    if x_channels_last:   # (N, H, W, C)
        _ir_fill(&gm, x.shape[0], x.shape[3], x.shape[1], x.shape[2], E, F, stride, expand,
                 fn, split, head)
    else:
        _ir_fill(&gm, x.shape[0], x.shape[1], x.shape[2], x.shape[3], E, F, stride, expand,
                 fn, split, head)
    gm.layout = (NNL_IR_X_NHWC if x_channels_last else 0) | (
        NNL_IR_Y_NHWC if y_channels_last else 0)
    # y's (and the residual's) images: (F, OH*OW), or (OH*OW, F) channels-last
    cdef Py_ssize_t npix = gm.oh * gm.ow
    ydims = (gm.n, npix, F) if y_channels_last else (gm.n, F, npix)
    # w1's columns: the expand's C, or the head conv's C*KH*KW taps
    cdef Py_ssize_t k1 = gm.c * (gm.head.kh * gm.head.kw if head is not None else 1)
    if ((expand and w1.shape[1] != k1) or wd.shape[0] != E or wd.shape[1] != 9
            or w3.shape[1] != E):
        w1s = tuple(w1.shape)[:2] if expand else None
        raise ValueError(f"{fn}: weights w1 {w1s}, wd {tuple(wd.shape)[:2]}, "
                         f"w3 {tuple(w3.shape)[:2]} do not chain C={gm.c} -> E={E} -> F={F} "
                         f"with 3x3 depthwise taps")
    if tuple(y.shape)[:3] != ydims:
        raise ValueError(f"{fn}: y has shape {tuple(y.shape)[:3]}, expected {ydims}")
    call.b1 = _ir_vec(b1, E, "b1", fn)
    cdef const float *bdp = _ir_vec(bd, E, "bd", fn)
    call.b3 = _ir_vec(b3, F, "b3", fn)
    gm.xsn = _image_stride(x, "x", fn)
    gm.ysn = gm.rsn = _image_stride(y, "y", fn)
    cdef const float[:, :, :] rv
    call.r = NULL
    if residual is not None:
        rv = residual
        if tuple(rv.shape)[:3] != tuple(y.shape)[:3]:
            raise ValueError(f"{fn}: residual has shape {tuple(rv.shape)[:3]}, expected "
                             f"{tuple(y.shape)[:3]}")
        gm.rsn = _image_stride(rv, "residual", fn)
        if gm.n:
            call.r = &rv[0, 0, 0]
    call.w1pk = _ir_packed(w1pk, gm.c, E, 1, isa, "w1pk", fn)
    gm.project_t = project_t
    call.w3pk = (_ir_packed(w3pk, E, F, 1, isa, "w3pk", fn) if project_t
                 else _ir_packed(w3pk, F, E, 0, isa, "w3pk", fn))
    call.gm, call.isa = gm, isa
    call.prep = NULL
    prep = None
    cdef float[::1] pv
    if gm.n > 0:
        call.x, call.w3, call.y = &x[0, 0, 0, 0], &w3[0, 0], &y[0, 0, 0]
        call.w1 = &w1[0, 0] if expand else NULL
        # the depthwise (and head) taps and biases in the kernel's layout, once: every call
        # transposed them before its threads could start
        size = nnl_ir_prepared_size(&gm)
        if size > 0:
            prep = _aligned_floats(size)
            pv = prep
            check_status(nnl_ir_prepare(&gm, call.w1, call.b1, &wd[0, 0], bdp, &pv[0]), fn)
            call.prep = &pv[0]
    # the arrays behind the pointers (memoryviews of them hold their buffers)
    call.keep = (x, w1, w1pk, b1, wd, bd, w3, w3pk, b3, y, residual, prep)
    return call


def _aligned_floats(Py_ssize_t n):
    """A float32 array of n elements starting on a 64-byte line."""
    buf = np.empty(n + 16, np.float32)
    off = (-buf.ctypes.data % 64) // 4
    return buf[off:off + n]


def inverted_residual(const float[:, :, :, :] x, const float[:, ::1] w1, w1pk, b1,
                      const float[:, ::1] wd, bd, const float[:, ::1] w3, w3pk, b3,
                      float[:, :, :] y, Py_ssize_t stride, residual=None, int num_threads=1,
                      int isa=-1, bint project_t=False, str split="auto", head=None,
                      bint x_channels_last=False, bint y_channels_last=False):
    """MobileNetV2's block in one call (csrc/convfast_fused.c), float32, per image:
    y = W3 @ relu6(dw3x3(relu6(W1 @ x + b1), Wd, stride, pad 1) + bd) + b3 (+ residual),
    or, with w1 None (a block of expansion ratio 1: w1pk and b1 None too, E == C),
    y = W3 @ relu6(dw3x3(x, Wd, stride, pad 1) + bd) + b3 (+ residual).

    Shape:
        x (N, C, H, W), w1 (E, C), wd (E, 9), w3 (F, E), b1 (E,), bd (E,), b3 (F,) or None,
        y and residual (N, F, OH*OW), OH = (H - 1) // stride + 1 (likewise OW), each image
        C-contiguous (any distance between images: channel slices of a larger buffer);
        w1pk: w1.T packed once as the B operand (``gemm_ops.pack(w1, 'b', trans=True)``),
        w3pk: w3 packed once as the A operand (``gemm_ops.pack(w3, 'a')``), both for the
        family ``isa``, or None. project_t: the project runs pixel-major,
        y^T = d^T @ w3.T (for bands of few pixels), and w3pk is w3.T packed as the B operand
        (``gemm_ops.pack(w3, 'b', trans=True)``); the same bits either way.
        split: how the threads share the work: 'bands' of output rows, 'channels' (one image
        at a time, expanded and output channels cut among the team), or 'auto' (the one the
        cost model of ``inverted_residual_plan`` picks); the same bits every way.
        head: (kh, kw, sh, sw, pt, pb, pl, pr, dh, dw) or None. Given, x is the image
        (N, C, XH, XW) of a dense conv (one group, C -> E channels, that geometry, + b1,
        ReLU6) whose output map (H, W) is the block's input, w1 (E, C*KH*KW) its weights (w1pk
        None): y = W3 @ relu6(dw3x3(relu6(conv(x, W1) + b1), ...) ...), the conv's taps summed
        in (c, kh, kw) order from zero, then its bias (``conv2d(..., algorithm='direct')``'s
        few-channel kernel: the same bits); its output rows are computed per band, in cache.
        x_channels_last: x is given channels-last, (N, H, W, C) (with the 1x1 expand only);
        y_channels_last: y and residual are (N, OH*OW, F) (with project_t only). The bands
        compute channels-last, so a chain of blocks that passes its tensors so (an inference
        plan's) transposes nothing in between; the same bits as the NCHW call's, transposed.
    """
    bind_inverted_residual(x, w1, w1pk, b1, wd, bd, w3, w3pk, b3, y, stride, residual, isa,
                           project_t, split, head, x_channels_last,
                           y_channels_last)(num_threads)


def inverted_residual_plan(Py_ssize_t n, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                           Py_ssize_t e, Py_ssize_t f, Py_ssize_t stride, int num_threads=1,
                           bint expand=True, int isa=-1, bint project_t=False,
                           str split="auto", head=None):
    """(threads, output rows per band, work bytes, split) of an ``inverted_residual`` call (with
    expand=False: one without w1, E == C; with ``head``, as ``inverted_residual``'s, (h, w) is
    the image's size and the rows are the block's); split is 'bands' or 'channels' (then the
    rows are the whole map's)."""
    cdef nnl_ir_geom gm
    cdef int nt = 1, how = 0
    cdef nnl_idx rows = 0
    fn = "inverted_residual_plan"
    _ir_fill(&gm, n, c, h, w, e, f, stride, expand, fn, split, head)
    gm.project_t = project_t
    isa = _wino_isa(isa, fn)
    nnl_ir_plan(&gm, num_threads, isa, &nt, &rows, &how)
    return nt, rows, nnl_ir_workspace(&gm, num_threads, isa), ("bands", "channels")[how]


share_pool()
