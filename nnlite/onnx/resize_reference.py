"""Naive loop reference of ONNX Resize (for learners and tests; shares no code with resize.py).

For every output element, for every axis: map the output index to a source coordinate, pick
the contributing input indices and their weights, then sum weight products over all index
combinations. Plain Python scalars throughout; use on small tensors only.
"""
import itertools
import math
from fractions import Fraction

import numpy as np

__all__ = ["resize_reference"]


def _source(mode, i, n_in, n_out, scale, lo, hi):
    """Source coordinate of output index ``i`` (ONNX's coordinate_transformation_mode); exact
    when ``scale`` is a ``fractions.Fraction`` (a Resize given sizes: size / input length)."""
    half = 0.5
    if isinstance(scale, Fraction) and mode != "tf_crop_and_resize":
        i, half = Fraction(i), Fraction(1, 2)
    length = scale * n_in
    if mode == "half_pixel":
        return (i + half) / scale - half
    if mode == "half_pixel_symmetric":
        return half * n_in * (1 - n_out / length) + (i + half) / scale - half
    if mode == "pytorch_half_pixel":
        return -half if length == 1 else (i + half) / scale - half
    if mode == "align_corners":
        return 0.0 if length == 1 else i * (n_in - 1) / (length - 1)
    if mode == "asymmetric":
        return i / scale
    if mode == "tf_half_pixel_for_nn":
        return (i + half) / scale
    if mode == "tf_crop_and_resize":
        if length == 1:
            return (hi - lo) * (n_in - 1) / 2 + lo * (n_in - 1)
        return i * (hi - lo) * (n_in - 1) / (length - 1) + lo * (n_in - 1)
    raise ValueError(mode)


def _cubic(t, a):
    t = abs(t)
    if t <= 1:
        return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
    if t < 2:
        return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
    return 0.0


def _taps(x, n_in, scale, mode, nearest_mode, a, antialias, exclude_outside):
    """[(input index, weight)] for source coordinate x along one axis."""
    if mode == "nearest":
        f = math.floor(x)
        if x == f:
            k = f
        elif nearest_mode == "round_prefer_floor":
            k = f if x - f <= 0.5 else f + 1
        elif nearest_mode == "round_prefer_ceil":
            k = f if x - f < 0.5 else f + 1
        elif nearest_mode == "floor":
            k = f
        else:
            k = f + 1
        return [(min(max(k, 0), n_in - 1), 1.0)]
    reach = 1 if mode == "linear" else 2          # the kernel is zero beyond this distance
    s = min(scale, 1.0) if antialias else 1.0     # antialias widens the kernel by 1/scale
    f = math.floor(x)
    pairs = []
    for j in range(f - int(math.ceil(reach / s)) - 1, f + int(math.ceil(reach / s)) + 2):
        t = (j - x) * s
        w = max(0.0, 1.0 - abs(t)) if mode == "linear" else _cubic(t, a)
        if w != 0.0:
            pairs.append((j, w))
    if antialias:
        total = sum(w for _, w in pairs)
        pairs = [(j, w / total) for j, w in pairs]
    if exclude_outside:
        pairs = [(j, w) for j, w in pairs if 0 <= j <= n_in - 1]
        total = sum(w for _, w in pairs)
        pairs = [(j, w / (total if total != 0 else 1.0)) for j, w in pairs]
    return [(min(max(j, 0), n_in - 1), w) for j, w in pairs]


def resize_reference(x, out_shape, scales, mode="nearest", ctm="half_pixel",
                     nearest_mode="round_prefer_floor", cubic_coeff_a=-0.75,
                     exclude_outside=False, extrapolation_value=0.0, antialias=False,
                     roi=None):
    """Resize ``x`` to ``out_shape`` with per-axis ``scales`` (float64 result).

    ``roi``: per-axis (start, end) pairs for tf_crop_and_resize. Axes whose scale is 1 and
    size unchanged (and roi (0, 1)) are copied, as ONNX leaves them untouched."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros(out_shape)
    roi = roi or [(0.0, 1.0)] * x.ndim
    keep = [math.isclose(scales[a], 1.0) and out_shape[a] == x.shape[a]
            and math.isclose(roi[a][0], 0.0) and math.isclose(roi[a][1], 1.0)
            for a in range(x.ndim)]
    for index in itertools.product(*[range(n) for n in out_shape]):
        per_axis, outside = [], False
        for a, i in enumerate(index):
            if keep[a]:
                per_axis.append([(i, 1.0)])
                continue
            xs = _source(ctm, i, x.shape[a], out_shape[a], scales[a], *roi[a])
            if ctm == "tf_crop_and_resize" and not 0 <= xs <= x.shape[a] - 1:
                outside = True
                break
            per_axis.append(_taps(xs, x.shape[a], scales[a], mode, nearest_mode,
                                  cubic_coeff_a, antialias, exclude_outside))
        if outside:
            out[index] = extrapolation_value
            continue
        total = 0.0
        for combo in itertools.product(*per_axis):
            w = 1.0
            for _, wk in combo:
                w *= wk
            total += w * x[tuple(j for j, _ in combo)]
        out[index] = total
    return out
