"""ONNX Resize / Upsample: every coordinate_transformation_mode, nearest_mode, linear and cubic
(with antialias, exclude_outside, cubic_coeff_a), scales or sizes, axes, keep_aspect_ratio_policy
and tf_crop_and_resize's roi/extrapolation_value.

Resize is separable: each resized axis maps output position ``i`` to a source coordinate
``x(i)`` (``source_coordinates``) and reads a few input taps around it with weights
(``axis_taps``: one tap for nearest, a triangle or Keys cubic kernel otherwise, widened by
1/scale when antialiasing a downscale). ``resize`` applies the axes one after another in
float64 and casts back (values saturate to the integer range for integer inputs).

Where ONNX coincides with PyTorch's ``F.interpolate`` (a 4-D input resized on H and W only, linear
or cubic with half_pixel (scales given) or align_corners coordinates and torch's edge handling, no
antialias; nearest with asymmetric coordinates and floor), the importer calls
``F.interpolate`` instead (``torch_equivalent``), so the two share one implementation.
``resize_reference.py`` is the naive per-element loop version of the same definition.
"""
import math

import numpy as np

__all__ = ["resize", "source_coordinates", "size_ratios", "axis_taps", "output_shape",
           "torch_equivalent",
           "COORDINATE_MODES", "NEAREST_MODES", "MODES", "ASPECT_POLICIES"]

COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                    "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
MODES = ("nearest", "linear", "cubic")
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")


def output_shape(in_shape, scales=None, sizes=None, axes=None, policy="stretch"):
    """(output shape, per-axis scale) of a Resize on ``in_shape``.

    ``scales``/``sizes`` list one entry per axis of ``axes`` (default: every axis). With
    ``sizes`` the scale is size/input, unified over ``axes`` by ``policy`` ('not_larger' takes
    the smallest, 'not_smaller' the largest; the sizes are then round(scale * input)).
    """
    r = len(in_shape)
    axes = list(range(r)) if axes is None else [int(a) % r for a in axes]
    if len(set(axes)) != len(axes):
        raise ValueError(f"Resize: axes {axes} repeat an axis")
    scale = [1.0] * r
    out = list(in_shape)
    if sizes is not None:
        sizes = [int(s) for s in sizes]
        if len(sizes) != len(axes):
            raise ValueError(f"Resize: sizes {sizes} must have {len(axes)} entries")
        if any(s < 0 for s in sizes):
            raise ValueError(f"Resize: sizes {sizes} must not be negative")
        ratio = size_ratios(in_shape, sizes, axes, policy)
        for a, s in zip(axes, sizes):
            scale[a] = ratio[a][0] / ratio[a][1]
            out[a] = s if policy == "stretch" else int(scale[a] * in_shape[a] + 0.5)
    else:
        scales = [float(s) for s in scales]
        if len(scales) != len(axes):
            raise ValueError(f"Resize: scales {scales} must have {len(axes)} entries")
        if any(not s > 0 or not math.isfinite(s) for s in scales):
            raise ValueError(f"Resize: scales {scales} must be positive and finite")
        for a, s in zip(axes, scales):
            scale[a] = s
            # floor(length * scale) as ONNX Runtime computes it, in float32 (the scales'
            # type): float32(3.3) * 10 rounds to 33, where the float64 product 32.9999995
            # floors to 32, one row short of the shape torch.onnx.export declares for
            # F.interpolate(scale_factor=3.3)
            out[a] = int(np.float32(s) * np.float32(in_shape[a]))
    return tuple(out), scale


def size_ratios(in_shape, sizes, axes, policy="stretch"):
    """{axis: (num, den)}, the scale of each axis of a Resize given ``sizes`` as the exact
    fraction num/den, size/input (1/1 for an empty input axis), unified over ``axes`` by
    ``policy`` ('not_larger' the smallest, 'not_smaller' the largest); ``output_shape``'s float
    scale is its rounding. {} with scales."""
    if sizes is None:
        return {}
    r = len(in_shape)
    axes = list(range(r)) if axes is None else [int(a) % r for a in axes]
    ratio = {a: (int(s), int(in_shape[a])) if in_shape[a] else (1, 1)
             for a, s in zip(axes, sizes)}
    if policy != "stretch":
        pick = min if policy == "not_larger" else max
        ratio = dict.fromkeys(axes, pick(ratio.values(), key=lambda f: f[0] / f[1]))
    return ratio


def _exact_coordinates(mode, n_out, n_in, num, den):
    """``source_coordinates`` for scale = num/den exactly (integers): each coordinate is one
    integer quotient, rounded once, so one that is exactly an integer or a half comes out
    exactly (42 / (126 / 57) is 18.999999999999996 in float64, 42 * 57 / 126 is 19, and a
    nearest 'floor' must read input 19, as the formula and ONNX Runtime and PyTorch do)."""
    y = np.arange(n_out, dtype=np.int64)
    if mode == "align_corners":   # y * (n_in - 1) / (length - 1), length = num * n_in / den
        d = num * n_in - den
        return np.zeros(n_out) if d == 0 else y * ((n_in - 1) * den) / d
    if mode == "asymmetric":
        return y * den / num
    if mode == "pytorch_half_pixel" and num * n_in == den:
        return np.full(n_out, -0.5)
    if mode in ("half_pixel", "pytorch_half_pixel"):   # (y + 0.5) / scale - 0.5
        return ((2 * y + 1) * den - num) / (2 * num)
    if mode == "half_pixel_symmetric":   # n_in/2 * (1 - n_out/length) + (y + 0.5)/scale - 0.5
        return ((n_in - 1) * num + (2 * y + 1 - n_out) * den) / (2 * num)
    if mode == "tf_half_pixel_for_nn":
        return (2 * y + 1) * den / (2 * num)
    return None


def source_coordinates(mode, n_out, n_in, scale, roi=(np.float64(0.0), np.float64(1.0)),
                       ratio=None):
    """Source coordinate of each output position (float64 array) for ``mode``; ``ratio``
    (num, den): the scale is exactly num/den (given by sizes), so computed exactly."""
    if ratio is not None and ratio[0] > 0 and ratio[1] > 0:
        x = _exact_coordinates(mode, n_out, n_in, int(ratio[0]), int(ratio[1]))
        if x is not None:
            return x
    y = np.arange(n_out, dtype=np.float64)
    length = scale * n_in            # the un-rounded output length
    if mode == "align_corners":
        return np.zeros(n_out) if length == 1 else y * (n_in - 1) / (length - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "pytorch_half_pixel":
        return np.full(n_out, -0.5) if length == 1 else (y + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / length)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale
    if mode == "tf_crop_and_resize":
        # the roi products in the roi's own precision (float32 roi: 0.3 * 5 is 1.5 exactly, as
        # ONNX Runtime and the ONNX reference compute it)
        lo, hi = roi[0], roi[1]
        span = (hi - lo) * type(lo)(n_in - 1)
        if length == 1:
            x = np.full(n_out, float(span) / 2)
        else:
            x = y * float(span) / (length - 1)
        return x + float(lo * type(lo)(n_in - 1))
    raise ValueError(f"Resize: coordinate_transformation_mode={mode!r} is not one of "
                     f"{', '.join(COORDINATE_MODES)}")


def _nearest_index(x, nearest_mode):
    if nearest_mode == "round_prefer_floor":
        return np.ceil(x - 0.5)
    if nearest_mode == "round_prefer_ceil":
        return np.floor(x + 0.5)
    if nearest_mode == "floor":
        return np.floor(x)
    if nearest_mode == "ceil":
        return np.ceil(x)
    raise ValueError(f"Resize: nearest_mode={nearest_mode!r} is not one of "
                     f"{', '.join(NEAREST_MODES)}")


def _kernel(mode, t, a):
    t = np.abs(t)
    if mode == "linear":
        return np.clip(1.0 - t, 0.0, 1.0)
    t2, t3 = t * t, t * t * t
    near = (a + 2) * t3 - (a + 3) * t2 + 1
    far = a * t3 - 5 * a * t2 + 8 * a * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def axis_taps(x, n_in, scale, mode, nearest_mode="round_prefer_floor", cubic_a=-0.75,
              antialias=False, exclude_outside=False):
    """(indices, weights), each (n_out, taps): the input positions (clamped to the edge) and
    weights producing each output position from source coordinates ``x``."""
    if mode == "nearest":
        idx = _nearest_index(x, nearest_mode)
        return np.clip(idx, 0, n_in - 1).astype(np.int64)[:, None], np.ones((len(x), 1))
    support = 1 if mode == "linear" else 2
    s = min(scale, 1.0) if antialias else 1.0
    start = int(math.floor(-support / s)) + 1        # first tap relative to floor(x)
    taps = np.arange(start, 2 - start)                # start .. 1 - start
    base = np.floor(x)
    j = base[:, None] + taps[None, :]
    w = _kernel(mode, (j - x[:, None]) * s, cubic_a)
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    if exclude_outside:
        w = np.where((j < 0) | (j > n_in - 1), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    return np.clip(j, 0, n_in - 1).astype(np.int64), w


def _resize_axis(data, axis, n_out, idx, w, extrapolate, value):
    """Apply one axis: out[..., i, ...] = sum_t w[i, t] * data[..., idx[i, t], ...]."""
    moved = np.moveaxis(data, axis, -1)
    if w.shape[1] == 1 and np.all(w == 1.0):
        out = moved[..., idx[:, 0]]
    else:
        out = np.zeros(moved.shape[:-1] + (n_out,), dtype=np.float64)
        for t in range(idx.shape[1]):
            out += moved[..., idx[:, t]] * w[:, t]
    if extrapolate is not None and extrapolate.any():
        out = np.array(out, dtype=np.float64)
        out[..., extrapolate] = value
    return np.moveaxis(out, -1, axis)


def resize(x, scales=None, sizes=None, axes=None, roi=None, mode="nearest",
           coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_floor",
           cubic_coeff_a=-0.75, exclude_outside=False, extrapolation_value=0.0,
           antialias=False, keep_aspect_ratio_policy="stretch"):
    """ONNX Resize of the ndarray ``x`` (see the module docstring); returns x's dtype."""
    if mode not in MODES:
        raise ValueError(f"Resize: mode={mode!r} is not one of {', '.join(MODES)}")
    if keep_aspect_ratio_policy not in ASPECT_POLICIES:
        raise ValueError(f"Resize: keep_aspect_ratio_policy={keep_aspect_ratio_policy!r} is not "
                         f"one of {', '.join(ASPECT_POLICIES)}")
    if coordinate_transformation_mode not in COORDINATE_MODES:
        raise ValueError(f"Resize: coordinate_transformation_mode="
                         f"{coordinate_transformation_mode!r} is not one of "
                         f"{', '.join(COORDINATE_MODES)}")
    r = x.ndim
    axes_n = list(range(r)) if axes is None else [int(a) % r for a in axes]
    shape, scale = output_shape(x.shape, scales, sizes, axes_n, keep_aspect_ratio_policy)
    ratio = size_ratios(x.shape, sizes, axes_n, keep_aspect_ratio_policy)
    from .ops_ext import check_alloc

    check_alloc(shape, np.float64, "Resize")
    rdt = np.asarray(roi).dtype if roi is not None and np.asarray(roi).dtype.kind == "f" \
        else np.dtype(np.float64)
    full_roi = [rdt.type(0)] * r + [rdt.type(1)] * r
    if roi is not None and len(roi):
        roi = list(np.asarray(roi).reshape(-1))
        if len(roi) != 2 * len(axes_n):
            raise ValueError(f"Resize: roi has {len(roi)} entries, expected {2 * len(axes_n)}")
        for i, a in enumerate(axes_n):
            full_roi[a], full_roi[r + a] = roi[i], roi[len(axes_n) + i]
    crop = coordinate_transformation_mode == "tf_crop_and_resize"
    out = x.astype(np.float64)
    for a in axes_n:
        n_in, n_out, s = x.shape[a], shape[a], scale[a]
        a_roi = (full_roi[a], full_roi[r + a])
        if (math.isclose(s, 1.0) and n_out == n_in and (not crop or (
                math.isclose(float(a_roi[0]), 0.0) and math.isclose(float(a_roi[1]), 1.0)))):
            continue
        if n_out == 0 or n_in == 0:
            shp = list(out.shape)
            shp[a] = n_out
            out = np.zeros(shp)
            continue
        xs = source_coordinates(coordinate_transformation_mode, n_out, n_in, s, a_roi,
                                ratio.get(a))
        idx, w = axis_taps(xs, n_in, s, mode, nearest_mode, cubic_coeff_a, antialias,
                           exclude_outside)
        extrapolate = ((xs < 0) | (xs > n_in - 1)) if crop else None
        out = _resize_axis(out, a, n_out, idx, w, extrapolate, float(extrapolation_value))
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(x.dtype)


def torch_equivalent(rank, axes, scales, sizes, roi, mode, ctm, nearest_mode, cubic_a,
                     exclude_outside, antialias, in_shape):
    """Keyword arguments for ``F.interpolate`` computing exactly this Resize, or None."""
    if rank != 4 or antialias or exclude_outside:
        return None
    if axes is not None and sorted(int(a) % 4 for a in axes) != [2, 3]:
        return None
    if axes is None:
        vals = scales if scales is not None else sizes
        if vals is None or len(vals) != 4:
            return None
        lead = [float(v) for v in vals[:2]]
        if scales is not None and lead != [1.0, 1.0]:
            return None
        if sizes is not None and [int(v) for v in lead] != list(in_shape[:2]):
            return None
        vals = vals[2:]
    else:
        vals = (scales if scales is not None else sizes)
        if [int(a) % 4 for a in axes] != [2, 3]:
            return None
    if mode == "nearest":
        return None  # torch's float32 nearest index arithmetic may differ from ONNX's
    if mode == "cubic" and float(cubic_a) != -0.75:
        return None
    tmode = "bilinear" if mode == "linear" else "bicubic"
    if ctm == "align_corners" and sizes is not None:
        return dict(size=tuple(int(v) for v in vals), mode=tmode, align_corners=True)
    if ctm == "half_pixel" and scales is not None:
        sf = tuple(float(v) for v in vals)
        if any(int(s * n) < 1 for s, n in zip(sf, in_shape[2:])):
            return None
        if any(int(s * n) != int(np.float32(s) * np.float32(n))
               for s, n in zip(sf, in_shape[2:])):
            return None   # F.interpolate's float64 length would be one short: output_shape
        return dict(scale_factor=sf, mode=tmode, align_corners=False)
    return None
