"""ROI kernels: torchvision's roi_pool and roi_align, forward and backward
(docs/semantics.md §7-§8).

Memory contract: x (N, C, H, W), rois (K, 5), outputs (K, C, PH, PW) all C-contiguous and of
one float dtype T; gradient outputs arrive zero-filled. Batch indices, coordinates and sample
grids are validated in Python first (nnlite/ops/roi.py); bins are clamped to the map and every
bilinear tap is clamped to [0, H-1] x [0, W-1], so no read or write leaves the arrays.

Box, bin and sample coordinates are computed in T, in torchvision's evaluation order, so the
floor/ceil/round/int decisions match its float32 and float64 kernels. The module is compiled
without floating-point contraction (no fused multiply-add) for the same reason.

Parallelism: forward over (box, channel) pairs; backward over channels, each thread owning
channel c of every image, so the scatter-adds of overlapping boxes never race.
"""
cdef extern from *:
    """
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC optimize ("fp-contract=off")
    #elif defined(__clang__)
    #pragma STDC FP_CONTRACT OFF
    #endif
    """

from cython.parallel cimport prange
from libc.float cimport FLT_MAX
from libc.math cimport ceil, floor, round
from libc.stdint cimport int64_t

from cython cimport floating

from _common cimport imax, imin, in_range
from _common cimport share_pool


# ----------------------------------------------------------------------------- roi_pool
cdef inline Py_ssize_t _clamp(Py_ssize_t v, Py_ssize_t n) noexcept nogil:
    return imin(imax(v, 0), n)


cdef void _roi_pool_one(const floating* plane, const floating* roi, floating scale,
                        floating* y, int64_t* arg, Py_ssize_t H, Py_ssize_t W,
                        Py_ssize_t PH, Py_ssize_t PW) noexcept nogil:
    # round() is C's round-half-away-from-zero; products in T (docs/semantics.md §7.2)
    cdef Py_ssize_t x1 = <Py_ssize_t>round(roi[1] * scale)
    cdef Py_ssize_t y1 = <Py_ssize_t>round(roi[2] * scale)
    cdef Py_ssize_t x2 = <Py_ssize_t>round(roi[3] * scale)
    cdef Py_ssize_t y2 = <Py_ssize_t>round(roi[4] * scale)
    cdef Py_ssize_t roi_w = imax(x2 - x1 + 1, 1), roi_h = imax(y2 - y1 + 1, 1)
    cdef floating bin_h = <floating>roi_h / <floating>PH
    cdef floating bin_w = <floating>roi_w / <floating>PW
    cdef Py_ssize_t i, j, h, w, hs, he, ws, we, best_at
    cdef floating v, best
    for i in range(PH):
        hs = _clamp(<Py_ssize_t>floor(<floating>i * bin_h) + y1, H)
        he = _clamp(<Py_ssize_t>ceil(<floating>(i + 1) * bin_h) + y1, H)
        for j in range(PW):
            ws = _clamp(<Py_ssize_t>floor(<floating>j * bin_w) + x1, W)
            we = _clamp(<Py_ssize_t>ceil(<floating>(j + 1) * bin_w) + x1, W)
            if he <= hs or we <= ws:
                y[i * PW + j] = 0
                arg[i * PW + j] = -1
                continue
            best = -FLT_MAX  # float32's max even for float64 input, as torchvision
            best_at = -1
            for h in range(hs, he):
                for w in range(ws, we):
                    v = plane[h * W + w]
                    if v > best:  # strict: ties keep the first, NaN is never taken
                        best = v
                        best_at = h * W + w
            y[i * PW + j] = best
            arg[i * PW + j] = best_at


def roi_pool_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] rois,
                     double spatial_scale, floating[:, :, :, ::1] y,
                     int64_t[:, :, :, ::1] arg, int num_threads):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = rois.shape[0], PH = y.shape[2], PW = y.shape[3], kc, k, c, b
    cdef floating scale = <floating>spatial_scale
    if (rois.shape[1] != 5 or y.shape[0] != K or y.shape[1] != C or arg.shape[0] != K
            or arg.shape[1] != C or arg.shape[2] != PH or arg.shape[3] != PW):
        raise ValueError("roi_pool_forward: array shapes do not match")
    for k in range(K):
        if not in_range(<Py_ssize_t>rois[k, 0], N):
            raise ValueError(f"roi_pool_forward: batch index {rois[k, 0]} out of range")
    if K == 0 or C == 0 or PH == 0 or PW == 0:
        return
    for kc in prange(K * C, nogil=True, schedule="static", num_threads=num_threads):
        k = kc // C
        c = kc % C
        b = <Py_ssize_t>rois[k, 0]
        _roi_pool_one(&x[b, c, 0, 0], &rois[k, 0], scale, &y[k, c, 0, 0], &arg[k, c, 0, 0],
                      H, W, PH, PW)


def roi_pool_backward(const floating[:, :, :, ::1] gy, const floating[:, ::1] rois,
                      const int64_t[:, :, :, ::1] arg, floating[:, :, :, ::1] gx,
                      int num_threads):
    cdef Py_ssize_t N = gx.shape[0], C = gx.shape[1], HW = gx.shape[2] * gx.shape[3]
    cdef Py_ssize_t K = gy.shape[0], L = gy.shape[2] * gy.shape[3], W = gx.shape[3]
    cdef Py_ssize_t c, k, b, l, a
    if gy.shape[1] != C or arg.shape[0] != K or arg.shape[1] != C or rois.shape[0] != K:
        raise ValueError("roi_pool_backward: array shapes do not match")
    for k in range(K):
        if not in_range(<Py_ssize_t>rois[k, 0], N):
            raise ValueError(f"roi_pool_backward: batch index {rois[k, 0]} out of range")
    if K == 0 or C == 0 or L == 0:
        return
    for c in prange(C, nogil=True, schedule="static", num_threads=num_threads):
        for k in range(K):
            b = <Py_ssize_t>rois[k, 0]
            for l in range(L):
                a = (&arg[k, c, 0, 0])[l]
                if in_range(a, HW):  # -1: empty bin or nothing selectable
                    gx[b, c, a // W, a % W] += (&gy[k, c, 0, 0])[l]


# ---------------------------------------------------------------------------- roi_align
cdef struct Box:
    Py_ssize_t b, gh, gw
    double count


cdef inline void _align_box(const floating* roi, floating scale, bint aligned,
                            Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t sampling_ratio,
                            floating* start, floating* bin_size, Box* box) noexcept nogil:
    # start = (y, x), bin_size = (h, w) in T (docs/semantics.md §8.2)
    cdef floating off = <floating>0.5 if aligned else <floating>0
    cdef floating sx = roi[1] * scale - off
    cdef floating sy = roi[2] * scale - off
    cdef floating roi_w = roi[3] * scale - off - sx
    cdef floating roi_h = roi[4] * scale - off - sy
    if not aligned:
        if roi_w < 1:
            roi_w = 1
        if roi_h < 1:
            roi_h = 1
    start[0] = sy
    start[1] = sx
    bin_size[0] = roi_h / <floating>PH
    bin_size[1] = roi_w / <floating>PW
    box.b = <Py_ssize_t>roi[0]
    if sampling_ratio > 0:
        box.gh = sampling_ratio
        box.gw = sampling_ratio
    else:
        box.gh = <Py_ssize_t>ceil(roi_h / <floating>PH)
        box.gw = <Py_ssize_t>ceil(roi_w / <floating>PW)
    box.count = <double>imax(box.gh * box.gw, 1)


cdef inline bint _tap(floating c, Py_ssize_t n, Py_ssize_t* lo, Py_ssize_t* hi,
                      floating* w_lo, floating* w_hi) noexcept nogil:
    # one axis of the bilinear rule (docs/semantics.md §8.4); False when the sample is outside
    # [-1, n]
    if not (c >= -1 and c <= n):  # NaN is outside too
        return False
    if c <= 0:
        c = 0
    lo[0] = <Py_ssize_t>c
    if lo[0] >= n - 1:
        lo[0] = n - 1
        hi[0] = n - 1
        c = <floating>lo[0]
    else:
        hi[0] = lo[0] + 1
    w_hi[0] = c - lo[0]
    w_lo[0] = 1. - w_hi[0]
    return True


cdef inline floating _sample(floating start, Py_ssize_t p, floating bin_size, Py_ssize_t i,
                             Py_ssize_t grid) noexcept nogil:
    # torchvision: start + p * bin + (T)(i + .5f) * bin / (T)grid, left to right in T
    return start + <floating>p * bin_size + <floating>(i + 0.5) * bin_size / <floating>grid


cdef void _axis_table(floating start, floating bin_size, Py_ssize_t pooled, Py_ssize_t grid,
                      Py_ssize_t n, Py_ssize_t* taps, floating* weights) noexcept nogil:
    # the pooled*grid samples of one axis of one box: (lo, hi) taps and their weights, in
    # torchvision's arithmetic; lo = -1 marks a sample outside [-1, n]
    cdef Py_ssize_t p, g, s, lo, hi
    cdef floating w_lo, w_hi
    for p in range(pooled):
        for g in range(grid):
            s = 2 * (p * grid + g)
            if _tap(_sample(start, p, bin_size, g, grid), n, &lo, &hi, &w_lo, &w_hi):
                taps[s] = lo
                taps[s + 1] = hi
                weights[s] = w_lo
                weights[s + 1] = w_hi
            else:
                taps[s] = -1
                taps[s + 1] = -1
                weights[s] = 0
                weights[s + 1] = 0


cdef inline Py_ssize_t _table_len(Box* box, Py_ssize_t PH, Py_ssize_t PW) noexcept nogil:
    return PH * imax(box.gh, 0) + PW * imax(box.gw, 0)


cdef void _fill_tables(const floating* roi, floating scale, bint aligned,
                       Py_ssize_t sampling_ratio, Py_ssize_t H, Py_ssize_t W, Py_ssize_t PH,
                       Py_ssize_t PW, Py_ssize_t* taps, floating* weights) noexcept nogil:
    # one box: its PH*gh row samples, then its PW*gw column samples
    cdef floating start[2]
    cdef floating size[2]
    cdef Box box
    _align_box(roi, scale, aligned, PH, PW, sampling_ratio, start, size, &box)
    if box.gh > 0 and box.gw > 0:
        _axis_table(start[0], size[0], PH, box.gh, H, taps, weights)
        _axis_table(start[1], size[1], PW, box.gw, W, taps + 2 * PH * box.gh,
                    weights + 2 * PH * box.gh)


cdef void _align_apply(const floating* roi, floating scale, bint aligned,
                       Py_ssize_t sampling_ratio, const floating* plane, floating* y,
                       floating* gx, const floating* gy, bint backward, const Py_ssize_t* ty,
                       const floating* wy, Py_ssize_t W, Py_ssize_t PH,
                       Py_ssize_t PW) noexcept nogil:
    # one (box, channel) plane: forward y = mean of the bilinear samples of each bin, or
    # backward gx[taps] += gy * weight / count (docs/semantics.md §8.3-8.5). ty/wy: the box's
    # tables. (Called inside prange: every per-box quantity lives on this function's stack.)
    cdef floating start[2]
    cdef floating size[2]
    cdef Box box
    _align_box(roi, scale, aligned, PH, PW, sampling_ratio, start, size, &box)
    cdef Py_ssize_t gh = box.gh, gw = box.gw
    cdef const Py_ssize_t* tx = ty + 2 * PH * imax(gh, 0)
    cdef const floating* wx = wy + 2 * PH * imax(gh, 0)
    cdef Py_ssize_t i, j, iy, ix, r, s, yl, yh, xl, xh
    cdef floating ly, hy, lx, hx, acc, g, w1, w2, w3, w4
    cdef floating count = <floating>imax(gh * gw, 1)
    if gh <= 0 or gw <= 0:  # no samples: output 0, no gradient
        if not backward:
            for i in range(PH * PW):
                y[i] = 0
        return
    for i in range(PH):
        for j in range(PW):
            acc = 0
            g = gy[i * PW + j] if backward else 0
            for iy in range(gh):
                r = 2 * (i * gh + iy)
                yl = ty[r]
                if yl < 0:
                    continue
                yh = ty[r + 1]
                hy = wy[r]
                ly = wy[r + 1]
                for ix in range(gw):
                    s = 2 * (j * gw + ix)
                    xl = tx[s]
                    if xl < 0:
                        continue
                    xh = tx[s + 1]
                    hx = wx[s]
                    lx = wx[s + 1]
                    w1 = hy * hx
                    w2 = hy * lx
                    w3 = ly * hx
                    w4 = ly * lx
                    if backward:
                        gx[yl * W + xl] += g * w1 / count
                        gx[yl * W + xh] += g * w2 / count
                        gx[yh * W + xl] += g * w3 / count
                        gx[yh * W + xh] += g * w4 / count
                    else:
                        acc = acc + (w1 * plane[yl * W + xl] + w2 * plane[yl * W + xh]
                                     + w3 * plane[yh * W + xl] + w4 * plane[yh * W + xh])
            if not backward:
                y[i * PW + j] = acc / count


def roi_align_grids(const floating[:, ::1] rois, double spatial_scale, Py_ssize_t PH,
                    Py_ssize_t PW, Py_ssize_t sampling_ratio, bint aligned,
                    Py_ssize_t[:, ::1] grids):
    """grids[k] = (gh, gw): box k's sampling grid per bin, in the kernels' own arithmetic."""
    cdef floating scale = <floating>spatial_scale
    cdef floating start[2]
    cdef floating size[2]
    cdef Box box
    cdef Py_ssize_t k
    if rois.shape[1] != 5 or grids.shape[0] != rois.shape[0] or grids.shape[1] != 2:
        raise ValueError("roi_align_grids: array shapes do not match")
    for k in range(rois.shape[0]):
        _align_box(&rois[k, 0], scale, aligned, PH, PW, sampling_ratio, start, size, &box)
        grids[k, 0] = box.gh
        grids[k, 1] = box.gw


cdef _check_tables(const floating[:, ::1] rois, floating scale, bint aligned,
                   Py_ssize_t sampling_ratio, Py_ssize_t N, Py_ssize_t PH, Py_ssize_t PW,
                   const Py_ssize_t[::1] offsets, Py_ssize_t n_taps, Py_ssize_t n_weights,
                   str name):
    # the tables were sized in Python from roi_align_grids: verify before writing into them
    cdef floating start[2]
    cdef floating size[2]
    cdef Box box
    cdef Py_ssize_t k, K = rois.shape[0]
    if rois.shape[1] != 5 or offsets.shape[0] != K + 1 or offsets[0] != 0:
        raise ValueError(f"{name}: rois/offsets shapes do not match")
    for k in range(K):
        _align_box(&rois[k, 0], scale, aligned, PH, PW, sampling_ratio, start, size, &box)
        if not in_range(box.b, N):
            raise ValueError(f"{name}: batch index {rois[k, 0]} out of range")
        if offsets[k + 1] - offsets[k] != _table_len(&box, PH, PW):
            raise ValueError(f"{name}: sample tables do not match box {k}")
    if 2 * offsets[K] > n_taps or 2 * offsets[K] > n_weights:
        raise ValueError(f"{name}: sample tables are too small")


def roi_align_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] rois,
                      double spatial_scale, Py_ssize_t sampling_ratio, bint aligned,
                      const Py_ssize_t[::1] offsets, Py_ssize_t[::1] taps,
                      floating[::1] weights, floating[:, :, :, ::1] y, int num_threads):
    """offsets (K+1,): box k's samples are [offsets[k], offsets[k+1]) in the (2*S,) tables."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = rois.shape[0], PH = y.shape[2], PW = y.shape[3], kc, k, c, b, o
    cdef floating scale = <floating>spatial_scale
    if y.shape[0] != K or y.shape[1] != C:
        raise ValueError("roi_align_forward: array shapes do not match")
    if K == 0 or C == 0 or PH == 0 or PW == 0:
        return
    _check_tables(rois, scale, aligned, sampling_ratio, N, PH, PW, offsets, taps.shape[0],
                  weights.shape[0], "roi_align_forward")
    for k in prange(K, nogil=True, schedule="static", num_threads=num_threads):
        o = 2 * offsets[k]
        _fill_tables(&rois[k, 0], scale, aligned, sampling_ratio, H, W, PH, PW, &taps[o],
                     &weights[o])
    for kc in prange(K * C, nogil=True, schedule="static", num_threads=num_threads):
        k = kc // C
        c = kc % C
        b = <Py_ssize_t>rois[k, 0]
        o = 2 * offsets[k]
        _align_apply(&rois[k, 0], scale, aligned, sampling_ratio, &x[b, c, 0, 0],
                     &y[k, c, 0, 0], NULL, NULL, False, &taps[o], &weights[o], W, PH, PW)


def roi_align_backward(const floating[:, :, :, ::1] gy, const floating[:, ::1] rois,
                       double spatial_scale, Py_ssize_t sampling_ratio, bint aligned,
                       const Py_ssize_t[::1] offsets, Py_ssize_t[::1] taps,
                       floating[::1] weights, floating[:, :, :, ::1] gx, int num_threads):
    cdef Py_ssize_t N = gx.shape[0], C = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef Py_ssize_t K = gy.shape[0], PH = gy.shape[2], PW = gy.shape[3], k, c, b, o
    cdef floating scale = <floating>spatial_scale
    if gy.shape[1] != C:
        raise ValueError("roi_align_backward: array shapes do not match")
    if K == 0 or C == 0 or PH == 0 or PW == 0:
        return
    _check_tables(rois, scale, aligned, sampling_ratio, N, PH, PW, offsets, taps.shape[0],
                  weights.shape[0], "roi_align_backward")
    for k in prange(K, nogil=True, schedule="static", num_threads=num_threads):
        o = 2 * offsets[k]
        _fill_tables(&rois[k, 0], scale, aligned, sampling_ratio, H, W, PH, PW, &taps[o],
                     &weights[o])
    for c in prange(C, nogil=True, schedule="static", num_threads=num_threads):
        for k in range(K):
            b = <Py_ssize_t>rois[k, 0]
            o = 2 * offsets[k]
            _align_apply(&rois[k, 0], scale, aligned, sampling_ratio, NULL, NULL,
                         &gx[b, c, 0, 0], &gy[k, c, 0, 0], True, &taps[o], &weights[o], W,
                         PH, PW)


share_pool()
