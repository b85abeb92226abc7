"""Naive loop oracle of ``F.lp_pool1d`` / ``F.lp_pool2d`` (the test oracle).

For each window (no padding; ceil mode keeps a last window that starts inside the input) it sums
x**p over the in-bounds cells in float64, rescales a partial window by kernel_area / cells (the
average PyTorch takes, multiplied back by the full area), keeps the sum's sign only where it is
non-zero, and raises to 1/p. p = +inf / -inf: max / min of |x| over the window. Window counts
are enumerated here, independently of nnlite/_poolgeom.py.
"""
import math

import numpy as np


def _windows(length, k, s, ceil_mode):
    """Start positions of the windows along one axis (padding 0)."""
    starts = []
    o = 0
    while True:
        start = o * s
        if ceil_mode:
            ok = start < length and (o == 0 or (o - 1) * s + k < length)
        else:
            ok = start + k <= length
        if not ok:
            return starts
        starts.append(start)
        o += 1


def _ieee_pow(base, e):
    """base ** e as C's pow: NaN for a negative base with a non-integer exponent, inf for 0
    raised to a negative power (Python raises or goes complex there)."""
    if math.isnan(base):
        return math.nan
    if base == 0 and e < 0:
        return math.inf
    if base < 0 and e != int(e):
        return math.nan
    return math.pow(base, e)


def _pool(values, p, area):
    if p == math.inf:
        return max(abs(v) for v in values)
    if p == -math.inf:
        return min(abs(v) for v in values)
    total = math.fsum(_ieee_pow(v, p) for v in values) * area / len(values)
    return _ieee_pow(total, 1.0 / p)


def lp_pool2d(x, p, kernel, stride, ceil_mode):
    """x (P, H, W) float -> (P, OH, OW)."""
    (kh, kw), (sh, sw) = kernel, stride
    P, H, W = x.shape
    rows = _windows(H, kh, sh, ceil_mode)
    cols = _windows(W, kw, sw, ceil_mode)
    xd = x.astype(np.float64)
    y = np.empty((P, len(rows), len(cols)))
    for q in range(P):
        for i, r0 in enumerate(rows):
            for j, c0 in enumerate(cols):
                vals = [float(xd[q, r, c]) for r in range(r0, min(r0 + kh, H))
                        for c in range(c0, min(c0 + kw, W))]
                y[q, i, j] = _pool(vals, p, kh * kw)
    return y.astype(x.dtype)


def lp_pool1d(x, p, k, s, ceil_mode):
    """x (P, L) float -> (P, L_out)."""
    return lp_pool2d(x[:, None, :], p, (1, k), (1, s), ceil_mode)[:, 0, :]
