"""Naive loop oracles for the pooling kernels (the test oracle and a study mode).

Written straight from docs/semantics.md §3-§5, one output element at a time, in float64, cast back
at the end. Imports nothing from the fast paths or from ``nnlite._poolgeom``: output sizes and
adaptive bins are computed here again, in a different form (the ceil-mode count as a
window-enumeration test, the adaptive bins as float floor/ceil).

Arrays are planes: x (P, H, W) with P = N*C. Indices are flat h*W + w inside a plane, -1 for a
window with no in-bounds tap (docs/semantics.md §3.6, nnlite's documented divergence).
"""
import math

import numpy as np

from . import register


def _rows(a):
    """(P, ...) -> (P, rest) without -1 (an empty batch has no size to infer from)."""
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:])))


def _n_windows(L, k, s, p, d, ceil_mode):
    """Count pooling windows by testing each candidate window in turn."""
    keff = d * (k - 1) + 1
    span = L + 2 * p  # padded extent
    n = 0
    while True:
        start = n * s  # in padded coordinates
        if not ceil_mode:
            ok = start + keff <= span
        else:
            # ceil: window n exists while window n-1 did not already reach the padded end,
            # and it does not start in the right padding (docs/semantics.md §3.2)
            ok = (n - 1) * s + keff < span and start - p < L
        if not ok:
            return n
        n += 1


def _taps(o, s, p, d, k):
    return [o * s - p + t * d for t in range(k)]


@register("max_pool2d_forward", "reference")
def max_pool2d_forward(x, kernel, stride, padding, dilation, ceil_mode, indices=True):
    P, H, W = x.shape
    oh = _n_windows(H, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    ow = _n_windows(W, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    xd = x.astype(np.float64)
    y = np.empty((P, oh, ow))
    idx = np.empty((P, oh, ow), dtype=np.int64)
    for p in range(P):
        for i in range(oh):
            rows = [h for h in _taps(i, stride[0], padding[0], dilation[0], kernel[0])
                    if 0 <= h < H]
            for j in range(ow):
                cols = [w for w in _taps(j, stride[1], padding[1], dilation[1], kernel[1])
                        if 0 <= w < W]
                best, arg = -math.inf, -1
                for h in rows:
                    for w in cols:
                        v = xd[p, h, w]
                        # first in-bounds tap always taken; later ones if larger or NaN
                        if arg == -1 or v > best or math.isnan(v):
                            best, arg = v, h * W + w
                y[p, i, j] = best
                idx[p, i, j] = arg
    return y.astype(x.dtype), idx


def _scatter_by_index(gy, idx, in_hw):
    P = gy.shape[0]
    H, W = in_hw
    gx = np.zeros((P, H, W))
    for p in range(P):
        for i in range(gy.shape[1]):
            for j in range(gy.shape[2]):
                a = int(idx[p, i, j])
                if a >= 0:
                    gx[p, a // W, a % W] += float(gy[p, i, j])
    return gx.astype(gy.dtype)


@register("max_pool2d_backward", "reference")
def max_pool2d_backward(gy, idx, in_hw):
    return _scatter_by_index(gy, idx, in_hw)


def _avg_windows(x_shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor):
    """Yield (i, j, cells, divisor): the in-bounds cells of each window and its divisor."""
    _, H, W = x_shape
    oh = _n_windows(H, kernel[0], stride[0], padding[0], 1, ceil_mode)
    ow = _n_windows(W, kernel[1], stride[1], padding[1], 1, ceil_mode)
    for i in range(oh):
        rows = _taps(i, stride[0], padding[0], 1, kernel[0])
        rows_pad = [h for h in rows if -padding[0] <= h < H + padding[0]]
        rows_in = [h for h in rows if 0 <= h < H]
        for j in range(ow):
            cols = _taps(j, stride[1], padding[1], 1, kernel[1])
            cols_pad = [w for w in cols if -padding[1] <= w < W + padding[1]]
            cols_in = [w for w in cols if 0 <= w < W]
            if divisor is not None:
                div = divisor
            elif count_include_pad:
                # padding cells count, cells beyond the right padding (ceil overhang) do not
                div = len(rows_pad) * len(cols_pad)
            else:
                div = len(rows_in) * len(cols_in)
            yield i, j, [(h, w) for h in rows_in for w in cols_in], div


@register("avg_pool2d_forward", "reference")
def avg_pool2d_forward(x, kernel, stride, padding, ceil_mode, count_include_pad,
                       divisor_override):
    P, H, W = x.shape
    oh = _n_windows(H, kernel[0], stride[0], padding[0], 1, ceil_mode)
    ow = _n_windows(W, kernel[1], stride[1], padding[1], 1, ceil_mode)
    xd = x.astype(np.float64)
    y = np.zeros((P, oh, ow))
    for i, j, cells, div in _avg_windows(x.shape, kernel, stride, padding, ceil_mode,
                                         count_include_pad, divisor_override):
        for p in range(P):
            if cells:
                y[p, i, j] = sum(xd[p, h, w] for h, w in cells) / div
    return y.astype(x.dtype)


@register("avg_pool2d_backward", "reference")
def avg_pool2d_backward(gy, in_hw, kernel, stride, padding, ceil_mode, count_include_pad,
                        divisor_override):
    P = gy.shape[0]
    H, W = in_hw
    gx = np.zeros((P, H, W))
    for i, j, cells, div in _avg_windows((P, H, W), kernel, stride, padding, ceil_mode,
                                         count_include_pad, divisor_override):
        for p in range(P):
            for h, w in cells:
                gx[p, h, w] += float(gy[p, i, j]) / div
    return gx.astype(gy.dtype)


def _bin(i, in_len, out_len):
    return math.floor(i * in_len / out_len), math.ceil((i + 1) * in_len / out_len)


@register("adaptive_avg_pool2d_forward", "reference")
def adaptive_avg_pool2d_forward(x, out_hw):
    P, H, W = x.shape
    OH, OW = out_hw
    xd = x.astype(np.float64)
    y = np.zeros((P, OH, OW))
    for p in range(P):
        for i in range(OH):
            h0, h1 = _bin(i, H, OH)
            for j in range(OW):
                w0, w1 = _bin(j, W, OW)
                total = 0.0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        total += xd[p, h, w]
                y[p, i, j] = total / ((h1 - h0) * (w1 - w0))
    return y.astype(x.dtype)


@register("adaptive_avg_pool2d_backward", "reference")
def adaptive_avg_pool2d_backward(gy, in_hw):
    P, OH, OW = gy.shape
    H, W = in_hw
    gx = np.zeros((P, H, W))
    for p in range(P):
        for i in range(OH):
            h0, h1 = _bin(i, H, OH)
            for j in range(OW):
                w0, w1 = _bin(j, W, OW)
                g = float(gy[p, i, j]) / ((h1 - h0) * (w1 - w0))
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        gx[p, h, w] += g
    return gx.astype(gy.dtype)


@register("adaptive_max_pool2d_forward", "reference")
def adaptive_max_pool2d_forward(x, out_hw):
    P, H, W = x.shape
    OH, OW = out_hw
    xd = x.astype(np.float64)
    y = np.empty((P, OH, OW))
    idx = np.empty((P, OH, OW), dtype=np.int64)
    for p in range(P):
        for i in range(OH):
            h0, h1 = _bin(i, H, OH)
            for j in range(OW):
                w0, w1 = _bin(j, W, OW)
                best, arg = -math.inf, -1
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        v = xd[p, h, w]
                        if arg == -1 or v > best or math.isnan(v):
                            best, arg = v, h * W + w
                y[p, i, j] = best
                idx[p, i, j] = arg
    return y.astype(x.dtype), idx


@register("adaptive_max_pool2d_backward", "reference")
def adaptive_max_pool2d_backward(gy, idx, in_hw):
    return _scatter_by_index(gy, idx, in_hw)


@register("max_unpool2d_forward", "reference")
def max_unpool2d_forward(x, idx, out_hw):
    P = x.shape[0]
    OH, OW = out_hw
    y = np.zeros((P, OH * OW), dtype=x.dtype)
    for p in range(P):
        for v, a in zip(x[p].ravel().tolist(), idx[p].ravel().tolist()):
            if a >= 0:  # -1: a window that had no in-bounds tap
                y[p, a] = v  # sequential: a repeated index keeps the last value
    return y.reshape(P, OH, OW)


@register("max_unpool2d_backward", "reference")
def max_unpool2d_backward(gy, idx):
    P = gy.shape[0]
    flat = _rows(gy)
    gx = np.zeros(idx.shape, dtype=gy.dtype)
    for p in range(P):
        for i in range(idx.shape[1]):
            for j in range(idx.shape[2]):
                a = int(idx[p, i, j])
                if a >= 0:
                    gx[p, i, j] = flat[p, a]
    return gx
