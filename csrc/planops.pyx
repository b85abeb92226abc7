"""Inference-plan kernels (-> nnlite._planops): direct depthwise conv2d with a fused epilogue,
and max pooling without indices. Used by ``nnlite.optimize_for_inference``.

depthwise_conv2d (one filter per channel, groups == C == F):

    y[n, c, i, j] = act(bias[c] + (y[n, c, i, j] if accumulate) +
                        sum_{a, b} w[c, a*KW + b] * x[n, c, i*SH - PT + a*DH, j*SW - PL + b*DW])

with out-of-image taps skipped (zero padding); act 0 = none, 1 = ReLU, 2 = ReLU6. It uses a
"wide" layout per plane: the zero-padded plane is split into its SH*SW stride phases, so that
every kernel tap becomes ONE long contiguous loop over a wide output of row length WQ
(vectorised by the compiler), instead of OH short row loops; the valid OW columns of each wide
row are then copied out through the epilogue. Planes too large for the per-thread buffer fall
back to the direct row-by-row loops.

max_pool2d: y[n, c, i, j] = max over the in-image taps of the (dilated) window, -inf when the
window holds none (padding never wins); NaN propagates (a NaN tap makes the output NaN); of
tied -0/+0 taps the first in vertical-then-horizontal order is kept. The planes run
csrc/planops_pool.c (separable: per output row the max over its row taps, then over the
column taps, on AVX-512 in registers with permutes or through a -inf-padded row buffer; the
plain vmaxps max, with a NaN test of the input rows that switches a plane holding a NaN to the
exact NaN-propagating select). Geometries whose row buffer would be absurdly long (strides,
paddings or dilations along W beyond ~4M elements) run the direct row-by-row loop
(_max_plane); coordinates beyond 2**60 are rejected (ValueError).

Memory contract: x and y are 4-D with unit stride along W (other strides are free, so channel
slices of a larger buffer are fine; checked); w is (C, KH*KW) C-contiguous; the wrappers check
every shape, so the nogil loops never index outside x or y: each source row is range-checked
and each source column range [j0, j1) is clipped to the image before the inner loop (the C max
pool kernel masks its row tails). OpenMP over the N*C planes (each plane of y is written by
exactly one iteration, so results do not depend on the thread count; each thread owns one row
of the buffer).
"""
from cython cimport floating
from cython.parallel cimport prange, threadid

import numpy as np

from _common cimport col_range, in_range, imin, imax


cdef extern from "planops_pool.h" nogil:
    ctypedef struct nnl_pool_plan:
        Py_ssize_t need
    int nnl_pool_plan_init(nnl_pool_plan* p, Py_ssize_t H, Py_ssize_t W, Py_ssize_t kh,
                           Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                           Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh,
                           Py_ssize_t ow, size_t itemsize)
    void nnl_maxpool_plane_s(const nnl_pool_plan* p, const float* x, Py_ssize_t xrs, float* y,
                             Py_ssize_t yrs, float* buf)
    void nnl_maxpool_plane_d(const nnl_pool_plan* p, const double* x, Py_ssize_t xrs, double* y,
                             Py_ssize_t yrs, double* buf)


cdef enum:
    _MAXK = 16            # kernel widths up to this use a per-plane table of column ranges
    _WIDE_MAX = 4194304   # per-thread buffers up to this many elements use the wide layout


cdef void _dw_plane(const floating* x, Py_ssize_t xrs, floating* y, Py_ssize_t yrs,
                    const floating* w, floating bias, Py_ssize_t H, Py_ssize_t W,
                    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                    Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                    Py_ssize_t oh, Py_ssize_t ow, int act, bint accumulate) noexcept nogil:
    # x: one (H, W) plane with row stride xrs; y: one (OH, OW) plane with row stride yrs
    cdef Py_ssize_t i, j, a, b, r, off, j0, j1
    cdef floating wv, v
    cdef floating* yrow
    cdef const floating* xrow
    cdef Py_ssize_t lo[_MAXK]
    cdef Py_ssize_t hi[_MAXK]
    for b in range(imin(kw, _MAXK)):  # column ranges per tap column, hoisted out of the rows
        col_range(b * dw - pl, W, sw, ow, &lo[b], &hi[b])
    for i in range(oh):
        yrow = y + i * yrs
        if accumulate:
            for j in range(ow):
                yrow[j] = yrow[j] + bias
        else:
            for j in range(ow):
                yrow[j] = bias
        for a in range(kh):
            r = i * sh - pt + a * dh
            if not in_range(r, H):
                continue
            xrow = x + r * xrs
            for b in range(kw):
                wv = w[a * kw + b]
                off = b * dw - pl
                if b < _MAXK:
                    j0, j1 = lo[b], hi[b]
                else:
                    col_range(off, W, sw, ow, &j0, &j1)
                if sw == 1:
                    for j in range(j0, j1):
                        yrow[j] = yrow[j] + wv * xrow[j + off]
                else:
                    for j in range(j0, j1):
                        yrow[j] = yrow[j] + wv * xrow[j * sw + off]
        if act == 1:
            for j in range(ow):
                v = yrow[j]
                if v < 0:  # NaN compares false and is kept, as torch.relu
                    yrow[j] = 0
        elif act == 2:
            for j in range(ow):
                v = yrow[j]
                if v < 0:
                    yrow[j] = 0
                elif v > 6:
                    yrow[j] = 6


cdef void _dw_plane_wide(const floating* x, Py_ssize_t xrs, floating* y, Py_ssize_t yrs,
                         const floating* w, floating bias, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                         Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                         Py_ssize_t oh, Py_ssize_t ow, int act, bint accumulate,
                         floating* buf) noexcept nogil:
    # The zero-padded plane is split into SH*SW stride phases, phase (ra, rb) holding
    #   ph[u, v] = x[u*SH + ra - PT, v*SW + rb - PL]   (0 outside the image), (HQ, WQ) each.
    # Tap (a, b) with a*DH = qa*SH + ra, b*DW = qb*SW + rb reads phase (ra, rb) at
    # (i + qa, j + qb): on a "wide" output of row length WQ every tap is ONE contiguous
    # multiply-add  yw[t] += w[a, b] * ph[t + qa*WQ + qb],  t < (OH - 1)*WQ + OW.
    cdef Py_ssize_t hq = oh + ((kh - 1) * dh) // sh, wq = ow + ((kw - 1) * dw) // sw
    cdef Py_ssize_t plane = hq * wq, L = (oh - 1) * wq + ow
    cdef Py_ssize_t ra, rb, u, v, r, v0, v1, a, b, i, j, t
    cdef floating wv, val
    cdef floating* row
    cdef floating* yw = buf + sh * sw * plane
    cdef const floating* xs
    for ra in range(sh):
        for rb in range(sw):
            col_range(rb - pl, W, sw, wq, &v0, &v1)
            for u in range(hq):
                row = buf + (ra * sw + rb) * plane + u * wq
                r = u * sh + ra - pt
                if not in_range(r, H):
                    for v in range(wq):
                        row[v] = 0
                    continue
                xs = x + r * xrs + rb - pl
                for v in range(v0):
                    row[v] = 0
                if sw == 1:
                    for v in range(v0, v1):
                        row[v] = xs[v]
                else:
                    for v in range(v0, v1):
                        row[v] = xs[v * sw]
                for v in range(v1, wq):
                    row[v] = 0
    for t in range(L):
        yw[t] = bias
    for a in range(kh):
        for b in range(kw):
            wv = w[a * kw + b]
            xs = (buf + (((a * dh) % sh) * sw + (b * dw) % sw) * plane
                  + ((a * dh) // sh) * wq + (b * dw) // sw)
            for t in range(L):
                yw[t] = yw[t] + wv * xs[t]
    for i in range(oh):
        row = y + i * yrs
        xs = yw + i * wq
        for j in range(ow):
            val = xs[j]
            if accumulate:
                val = val + row[j]
            if act == 1 and val < 0:
                val = 0
            elif act == 2:
                if val < 0:
                    val = 0
                elif val > 6:
                    val = 6
            row[j] = val


cdef void _max_plane(const floating* x, Py_ssize_t xrs, floating* y, Py_ssize_t yrs,
                     Py_ssize_t H, Py_ssize_t W, Py_ssize_t kh, Py_ssize_t kw,
                     Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                     Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    cdef Py_ssize_t i, j, a, b, r, off, j0, j1
    cdef floating v, best
    cdef floating* yrow
    cdef const floating* xrow
    cdef floating ninf = -1.0 / 0.0
    cdef Py_ssize_t lo[_MAXK]
    cdef Py_ssize_t hi[_MAXK]
    for b in range(imin(kw, _MAXK)):
        col_range(b * dw - pl, W, sw, ow, &lo[b], &hi[b])
    for i in range(oh):
        yrow = y + i * yrs
        for j in range(ow):
            yrow[j] = ninf
        for a in range(kh):
            r = i * sh - pt + a * dh
            if not in_range(r, H):
                continue
            xrow = x + r * xrs
            for b in range(kw):
                off = b * dw - pl
                if b < _MAXK:
                    j0, j1 = lo[b], hi[b]
                else:
                    col_range(off, W, sw, ow, &j0, &j1)
                for j in range(j0, j1):
                    v = xrow[j * sw + off]
                    best = yrow[j]
                    yrow[j] = v if (v > best or v != v) else best  # NaN taken (PyTorch)


def _fits(o, s, k, d, pad):
    # Python ints: no overflow while checking
    return (o + 1) * s + (k - 1) * d + pad < 2 ** 60


def _check(xs, ys, unit, what):
    if xs[0] != ys[0] or xs[1] != ys[1]:
        raise ValueError(f"{what}: x {xs} and y {ys} must have the same N and C")
    if not unit:
        raise ValueError(f"{what}: x and y need unit stride along W")


def depthwise_conv2d(const floating[:, :, :, :] x, const floating[:, ::1] w,
                     const floating[::1] bias, floating[:, :, :, :] y,
                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                     int act=0, bint accumulate=False, int num_threads=1):
    """y = act(depthwise(x, w) + bias [+ y]); w (C, KH*KW), bias (C,) (zeros for none)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t oh = y.shape[2], ow = y.shape[3]
    cdef Py_ssize_t p, n, c, P = N * C
    cdef Py_ssize_t xrs = x.strides[2] // sizeof(floating)
    cdef Py_ssize_t yrs = y.strides[2] // sizeof(floating)
    cdef int nt = max(1, num_threads)
    if kh < 1 or kw < 1 or sh < 1 or sw < 1 or dh < 1 or dw < 1 or pt < 0 or pl < 0:
        raise ValueError("depthwise_conv2d: kernel, stride and dilation must be >= 1 and "
                         "padding >= 0")
    _check((N, C, H, W), (y.shape[0], y.shape[1], oh, ow),
           (W < 2 or x.strides[3] == sizeof(floating)) and (ow < 2 or y.strides[3] ==
                                                           sizeof(floating)), "depthwise_conv2d")
    if w.shape[0] != C or w.shape[1] != kh * kw or bias.shape[0] != C:
        raise ValueError(f"depthwise_conv2d: w must be ({C}, {kh * kw}) and bias ({C},), got "
                         f"({w.shape[0]}, {w.shape[1]}) and ({bias.shape[0]},)")
    if act not in (0, 1, 2):
        raise ValueError(f"depthwise_conv2d: act must be 0, 1 or 2, got {act}")
    if P == 0 or oh == 0 or ow == 0:
        return
    cdef Py_ssize_t hq = oh + ((kh - 1) * dh) // sh, wq = ow + ((kw - 1) * dw) // sw
    cdef Py_ssize_t need = (sh * sw * hq + oh) * wq
    cdef floating[:, ::1] bufs
    cdef floating* buf
    cdef int tid
    if need <= _WIDE_MAX:
        nt = <int> min(nt, P)
        bufs = np.empty((nt, need), dtype=np.float32 if floating is float else np.float64)
        for p in prange(P, nogil=True, schedule="static", num_threads=nt):
            tid = threadid()
            buf = &bufs[tid, 0]
            n = p // C
            c = p % C
            _dw_plane_wide(&x[n, c, 0, 0], xrs, &y[n, c, 0, 0], yrs, &w[c, 0], bias[c],
                           H, W, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, act, accumulate, buf)
        return
    for p in prange(P, nogil=True, schedule="static", num_threads=nt):
        n = p // C
        c = p % C
        _dw_plane(&x[n, c, 0, 0], xrs, &y[n, c, 0, 0], yrs, &w[c, 0], bias[c], H, W, kh, kw,
                  sh, sw, pt, pl, dh, dw, oh, ow, act, accumulate)


def max_pool2d(const floating[:, :, :, :] x, floating[:, :, :, :] y,
               Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
               Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, int num_threads=1):
    """y = max over each window of x (padding never selected; NaN propagates).

    x (N, C, H, W) and y (N, C, OH, OW) with unit stride along W; the window of y[n, c, i, j]
    is x[n, c, i*sh - pt + a*dh, j*sw - pl + b*dw], a < kh, b < kw (taps outside x skipped,
    -inf when none is inside). Raises ValueError on bad arguments."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t oh = y.shape[2], ow = y.shape[3]
    cdef Py_ssize_t p, n, c, P = N * C
    cdef Py_ssize_t xrs = x.strides[2] // sizeof(floating)
    cdef Py_ssize_t yrs = y.strides[2] // sizeof(floating)
    cdef int nt = max(1, num_threads)
    if kh < 1 or kw < 1 or sh < 1 or sw < 1 or dh < 1 or dw < 1 or pt < 0 or pl < 0:
        raise ValueError("max_pool2d: kernel, stride and dilation must be >= 1 and padding >= 0")
    _check((N, C, H, W), (y.shape[0], y.shape[1], oh, ow),
           (W < 2 or x.strides[3] == sizeof(floating)) and (ow < 2 or y.strides[3] ==
                                                           sizeof(floating)), "max_pool2d")
    if P == 0 or oh == 0 or ow == 0:
        return
    # every source coordinate (and the kernel's phase arithmetic) must fit in 64 bits
    if not (_fits(oh, sh, kh, dh, pt) and _fits(ow, sw, kw, dw, pl)):
        raise ValueError("max_pool2d: stride, padding or dilation too large for this output")
    cdef nnl_pool_plan plan
    cdef floating[:, ::1] bufs
    cdef floating* buf
    cdef int tid
    if nnl_pool_plan_init(&plan, H, W, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, sizeof(floating)):
        nt = <int> min(nt, P)
        bufs = np.full((nt, plan.need), -np.inf,
                       dtype=np.float32 if floating is float else np.float64)
        for p in prange(P, nogil=True, schedule="static", num_threads=nt):
            tid = threadid()
            buf = &bufs[tid, 0]
            n = p // C
            c = p % C
            if floating is float:
                nnl_maxpool_plane_s(&plan, &x[n, c, 0, 0], xrs, &y[n, c, 0, 0], yrs, buf)
            else:
                nnl_maxpool_plane_d(&plan, &x[n, c, 0, 0], xrs, &y[n, c, 0, 0], yrs, buf)
        return
    for p in prange(P, nogil=True, schedule="static", num_threads=nt):
        n = p // C
        c = p % C
        _max_plane(&x[n, c, 0, 0], xrs, &y[n, c, 0, 0], yrs, H, W, kh, kw, sh, sw, pt, pl, dh, dw,
                   oh, ow)
