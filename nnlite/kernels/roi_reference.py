"""Naive loop oracles for roi_pool / roi_align, transcribed from docs/semantics.md §7-§8.

One output element at a time. Box and sample coordinates are computed in the input dtype T
(numpy scalars of T), because torchvision's floor/ceil/round/int decisions depend on T's
rounding (docs/semantics.md §7.3, §11); values are accumulated in float64 and cast back. Imports
nothing from the fast paths or from ``nnlite._poolgeom``.

x (N, C, H, W); rois (K, 5) rows (batch index, x1, y1, x2, y2), already validated.
"""
import math

import numpy as np

from . import register

_FLT_MAX = float(np.finfo(np.float32).max)


def _round_half_away(v):
    """C's round(): halves go away from zero (not numpy's round-half-to-even)."""
    a = abs(float(v))
    r = math.floor(a)
    if a - r >= 0.5:
        r += 1
    return -r if v < 0 else r


def _pool_bins(T, start, roi_len, pooled, length):
    """[(lo, hi)] per bin, torchvision's float arithmetic in T then clamped to [0, length]."""
    size = T(roi_len) / T(pooled)
    bins = []
    for p in range(pooled):
        lo = int(math.floor(T(p) * size)) + start
        hi = int(math.ceil(T(p + 1) * size)) + start
        bins.append((min(max(lo, 0), length), min(max(hi, 0), length)))
    return bins


def _pool_box(T, roi, scale, out_hw, H, W):
    x1, y1, x2, y2 = (_round_half_away(T(v) * scale) for v in roi[1:5])
    roi_w = max(x2 - x1 + 1, 1)  # inclusive end; a reversed box becomes one pixel
    roi_h = max(y2 - y1 + 1, 1)
    return (int(roi[0]), _pool_bins(T, y1, roi_h, out_hw[0], H),
            _pool_bins(T, x1, roi_w, out_hw[1], W))


@register("roi_pool_forward", "reference")
def roi_pool_forward(x, rois, out_hw, spatial_scale):
    N, C, H, W = x.shape
    K = rois.shape[0]
    T = x.dtype.type
    scale = T(spatial_scale)
    y = np.zeros((K, C) + tuple(out_hw))
    arg = np.full((K, C) + tuple(out_hw), -1, dtype=np.int64)
    for k in range(K):
        b, rows, cols = _pool_box(T, rois[k], scale, out_hw, H, W)
        for c in range(C):
            plane = x[b, c]
            for i, (h0, h1) in enumerate(rows):
                for j, (w0, w1) in enumerate(cols):
                    if h1 <= h0 or w1 <= w0:
                        continue  # empty bin: 0, argmax -1
                    best, where = -_FLT_MAX, -1
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            v = float(plane[h, w])
                            if v > best:  # strict: first max wins, NaN never taken
                                best, where = v, h * W + w
                    y[k, c, i, j] = best
                    arg[k, c, i, j] = where
    return y.astype(x.dtype), arg


@register("roi_pool_backward", "reference")
def roi_pool_backward(gy, rois, argmax, in_shape):
    N, C, H, W = in_shape
    gx = np.zeros(in_shape)
    K, _, PH, PW = gy.shape
    for k in range(K):
        b = int(rois[k, 0])
        for c in range(C):
            for i in range(PH):
                for j in range(PW):
                    a = int(argmax[k, c, i, j])
                    if a != -1:
                        gx[b, c, a // W, a % W] += float(gy[k, c, i, j])
    return gx.astype(gy.dtype)


def _align_box(T, roi, scale, out_hw, sampling_ratio, aligned):
    off = T(0.5) if aligned else T(0)
    sx, sy, ex, ey = (T(v) * scale - off for v in roi[1:5])
    roi_w, roi_h = ex - sx, ey - sy
    if not aligned:
        roi_w, roi_h = max(roi_w, T(1)), max(roi_h, T(1))
    bin_h, bin_w = roi_h / T(out_hw[0]), roi_w / T(out_hw[1])
    gh = sampling_ratio if sampling_ratio > 0 else int(math.ceil(roi_h / T(out_hw[0])))
    gw = sampling_ratio if sampling_ratio > 0 else int(math.ceil(roi_w / T(out_hw[1])))
    return int(roi[0]), sy, sx, bin_h, bin_w, gh, gw, max(gh * gw, 1)


def _samples(T, b_start, bin_size, p, grid):
    """Sample coordinates of bin p along one axis, in T and in torchvision's order."""
    return [b_start + T(p) * bin_size + (T(i + 0.5) * bin_size) / T(grid) for i in range(grid)]


def _bilinear_taps(y, x, H, W):
    """[(h, w, weight)] of one sample (docs/semantics.md §8.4), or [] when it lies outside."""
    y, x = float(y), float(x)
    if not (-1.0 <= y <= H and -1.0 <= x <= W):
        return []
    y, x = max(y, 0.0), max(x, 0.0)
    yl, xl = int(y), int(x)
    if yl >= H - 1:
        yl = yh = H - 1
        y = float(yl)
    else:
        yh = yl + 1
    if xl >= W - 1:
        xl = xh = W - 1
        x = float(xl)
    else:
        xh = xl + 1
    ly, lx = y - yl, x - xl
    hy, hx = 1.0 - ly, 1.0 - lx
    return [(yl, xl, hy * hx), (yl, xh, hy * lx), (yh, xl, ly * hx), (yh, xh, ly * lx)]


def _align_taps(T, roi, scale, out_hw, sampling_ratio, aligned, H, W):
    """b, count, and per bin (i, j) the list of (h, w, weight) taps of all its samples."""
    b, sy, sx, bin_h, bin_w, gh, gw, count = _align_box(T, roi, scale, out_hw, sampling_ratio,
                                                        aligned)
    bins = {}
    for i in range(out_hw[0]):
        for j in range(out_hw[1]):
            taps = []
            for yy in _samples(T, sy, bin_h, i, gh):
                for xx in _samples(T, sx, bin_w, j, gw):
                    taps.extend(_bilinear_taps(yy, xx, H, W))
            bins[i, j] = taps
    return b, count, bins


@register("roi_align_forward", "reference")
def roi_align_forward(x, rois, out_hw, spatial_scale, sampling_ratio, aligned):
    N, C, H, W = x.shape
    K = rois.shape[0]
    T = x.dtype.type
    y = np.zeros((K, C) + tuple(out_hw))
    for k in range(K):
        b, count, bins = _align_taps(T, rois[k], T(spatial_scale), out_hw, sampling_ratio,
                                     aligned, H, W)
        for c in range(C):
            for (i, j), taps in bins.items():
                y[k, c, i, j] = sum(wt * float(x[b, c, h, w]) for h, w, wt in taps) / count
    return y.astype(x.dtype)


@register("roi_align_backward", "reference")
def roi_align_backward(gy, rois, in_shape, spatial_scale, sampling_ratio, aligned):
    N, C, H, W = in_shape
    T = gy.dtype.type
    gx = np.zeros(in_shape)
    for k in range(rois.shape[0]):
        b, count, bins = _align_taps(T, rois[k], T(spatial_scale), gy.shape[2:], sampling_ratio,
                                     aligned, H, W)
        for c in range(C):
            for (i, j), taps in bins.items():
                g = float(gy[k, c, i, j]) / count
                for h, w, wt in taps:
                    gx[b, c, h, w] += g * wt
    return gx.astype(gy.dtype)
