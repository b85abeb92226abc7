"""Naive loop oracle of ``F.interpolate`` (the test oracle and a study mode).

One output element at a time: for each output position, list the input positions it reads with
their weights (``_contributions``), separately per axis, and sum weight_h * weight_w * x in
float64. Shares nothing with ``interpolate_numpy.py``: the coordinate rules are written again
here as scalar arithmetic straight from PyTorch's documented CPU behaviour:

- scale: align_corners -> (in-1)/(out-1) (0 for out == 1); else 1/scale_factor when the user's
  scale factor is used, else in/out.
- nearest: index = floor(i * scale) (float32 arithmetic, PyTorch's ``nearest_idx``: i itself when
  out == in, i // 2 when out == 2*in) or, with ``rule='generic'``, floor of the product in the
  input's precision rounded to float32; clamped to in-1. nearest-exact: floor((i + 0.5) * scale).
- linear: source x = scale*(i + 0.5) - 0.5 (or scale*i with align_corners), at least 0; it
  blends floor(x) and the next index (both clamped) by the fractional part; a same-size axis
  is copied.
- cubic: the same unclamped source, weights of Keys' kernel (a = -0.75) on the 4 neighbours
  floor(x)-1 .. floor(x)+2, indices clamped to the border.
- antialias: the triangle or Keys (a = -0.5) filter stretched by max(scale, 1) around
  center = scale*(i + 0.5), taps inside [center - support + 0.5, center + support + 0.5),
  normalised; a same-size axis is copied.

Coordinates of linear/cubic/antialias are evaluated in float64 here (the fast path rounds them
to the input dtype as PyTorch does; the results agree to rounding). Nearest indices are discrete
and use the exact float32 rule.
"""
import math

import numpy as np

from . import register


def _scale(in_len, out_len, align_corners, sf, f32=False):
    if align_corners:
        if out_len <= 1:
            return 0.0
        return (in_len - 1) / (out_len - 1)
    if sf is not None and sf > 0:
        return float(np.float32(1.0 / sf)) if f32 else 1.0 / sf
    if f32:
        return float(np.float32(np.float32(in_len) / np.float32(out_len)))
    return in_len / out_len


def _nearest_index(i, in_len, out_len, sf, exact, rule, f32_input):
    if rule == "index":
        if not exact and out_len == in_len:
            return i
        if not exact and out_len == 2 * in_len:
            return i // 2
        s = np.float32(_scale(in_len, out_len, False, sf, f32=True))
        if exact:
            v = np.float32(float(i + 0.5) * float(s))
        else:
            v = np.float32(np.float32(i) * s)
        return min(int(math.floor(v)), in_len - 1)
    # generic: arithmetic in the input's precision, floorf at the end
    if f32_input:
        s = np.float32(_scale(in_len, out_len, False, sf, f32=True))
        if exact:
            src = max(np.float32(float(s) * (i + 0.5) - 0.5), np.float32(0))
            v = np.float32(float(src) + 0.5)
        else:
            v = np.float32(np.float32(i) * s)
    else:
        s = _scale(in_len, out_len, False, sf)
        if exact:
            v = np.float32(max(s * (i + 0.5) - 0.5, 0.0) + 0.5)
        else:
            v = np.float32(s * i)
    return min(int(math.floor(v)), in_len - 1)


def _keys(d, a):
    d = abs(d)
    if d <= 1:
        return ((a + 2) * d - (a + 3)) * d * d + 1
    if d < 2:
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return 0.0


def _contributions(i, in_len, out_len, mode, align_corners, sf, antialias, rule, f32_input):
    """[(input index, weight), ...] read by output position ``i`` along one axis."""
    if mode in ("nearest", "nearest-exact"):
        return [(_nearest_index(i, in_len, out_len, sf, mode == "nearest-exact", rule,
                                f32_input), 1.0)]
    if (mode == "linear" or antialias) and in_len == out_len:
        return [(i, 1.0)]
    scale = _scale(in_len, out_len, align_corners, sf)
    if antialias:
        width = 4 if mode == "cubic" else 2
        stretch = max(scale, 1.0)
        support = width / 2 * stretch
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_len)
        pairs = []
        for t in range(lo, hi):
            d = (t - center + 0.5) / stretch
            if mode == "cubic":
                wt = _keys(d, -0.5)
            else:
                wt = max(0.0, 1.0 - abs(d))
            pairs.append((t, wt))
        total = sum(wt for _, wt in pairs)
        if total != 0:
            pairs = [(t, wt / total) for t, wt in pairs]
        return pairs
    src = scale * i if align_corners else scale * (i + 0.5) - 0.5
    if mode == "linear":
        src = max(src, 0.0)
    base = min(math.floor(src), in_len - 1)
    frac = min(max(src - base, 0.0), 1.0)
    if mode == "linear":
        return [(base, 1.0 - frac), (min(base + 1, in_len - 1), frac)]
    weights = (_keys(1 + frac, -0.75), _keys(frac, -0.75), _keys(1 - frac, -0.75),
               _keys(2 - frac, -0.75))
    return [(min(max(base - 1 + k, 0), in_len - 1), weights[k]) for k in range(4)]


def _tables(in_size, out_size, mode, align_corners, scales, antialias, rule, f32):
    return [[_contributions(i, n_in, n_out, mode, align_corners, s, antialias, rule, f32)
             for i in range(n_out)]
            for n_in, n_out, s in zip(in_size, out_size, scales)]


@register("interpolate_forward", "reference")
def interpolate_forward(x, out_size, mode, align_corners, scales, antialias, nearest_rule):
    in_size = x.shape[1:]
    f32 = x.dtype == np.float32
    tabs = _tables(in_size, out_size, mode, align_corners, scales, antialias, nearest_rule, f32)
    xd = x.astype(np.float64)
    y = np.zeros((x.shape[0],) + tuple(out_size))
    for p in range(x.shape[0]):
        if len(out_size) == 1:
            for o in range(out_size[0]):
                y[p, o] = sum(wt * xd[p, t] for t, wt in tabs[0][o])
            continue
        for oh in range(out_size[0]):
            for ow in range(out_size[1]):
                acc = 0.0
                for th, wh in tabs[0][oh]:
                    for tw, ww in tabs[1][ow]:
                        acc += wh * ww * xd[p, th, tw]
                y[p, oh, ow] = acc
    return y.astype(x.dtype)


@register("interpolate_backward", "reference")
def interpolate_backward(gy, in_size, mode, align_corners, scales, antialias, nearest_rule):
    out_size = gy.shape[1:]
    f32 = gy.dtype == np.float32
    tabs = _tables(in_size, out_size, mode, align_corners, scales, antialias, nearest_rule, f32)
    gd = gy.astype(np.float64)
    gx = np.zeros((gy.shape[0],) + tuple(in_size))
    for p in range(gy.shape[0]):
        if len(out_size) == 1:
            for o in range(out_size[0]):
                for t, wt in tabs[0][o]:
                    gx[p, t] += wt * gd[p, o]
            continue
        for oh in range(out_size[0]):
            for ow in range(out_size[1]):
                for th, wh in tabs[0][oh]:
                    for tw, ww in tabs[1][ow]:
                        gx[p, th, tw] += wh * ww * gd[p, oh, ow]
    return gx.astype(gy.dtype)
