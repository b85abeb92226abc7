"""Vectorised NumPy roi_pool / roi_align (the fallback backend), docs/semantics.md §7-§8.

K boxes, C channels, H/W map, PH/PW pooled output, SY/SX sample rows/columns of one box
(PH*gh, PW*gw). Box geometry is computed for all boxes at once in the input dtype T (the
floor/ceil/round decisions depend on T's rounding); the pooling itself loops over boxes and
works on separable axes: a roi_pool bin is a row interval x a column interval, and a roi_align
sample's bilinear weights are a row weight times a column weight.
"""
import numpy as np

from . import register

_FLT_MAX = np.finfo(np.float32).max


def _round_half_away(v):
    """C's round() on an array: halves go away from zero (np.round rounds half to even)."""
    a = np.abs(v)
    r = np.floor(a)
    r += (a - r) >= 0.5  # a - floor(a) is exact in binary floating point
    return np.copysign(r, v)


def _pool_bins(T, start, roi_len, pooled, length):
    """(K, pooled) clamped [lo, hi) of every box's bins along one axis."""
    size = roi_len.astype(T) / T(pooled)  # (K,)
    p = np.arange(pooled).astype(T)
    lo = np.floor(p[None, :] * size[:, None]).astype(np.int64) + start[:, None]
    hi = np.ceil((p + T(1))[None, :] * size[:, None]).astype(np.int64) + start[:, None]
    return np.clip(lo, 0, length), np.clip(hi, 0, length)


def _masked_max(seg, axis):
    """(max, first position) along ``axis`` of a segment whose excluded cells are -inf."""
    pos = np.argmax(seg, axis=axis)
    return np.take_along_axis(seg, np.expand_dims(pos, axis), axis=axis).squeeze(axis), pos


@register("roi_pool_forward", "numpy")
def roi_pool_forward(x, rois, out_hw, spatial_scale):
    N, C, H, W = x.shape
    K = rois.shape[0]
    PH, PW = out_hw
    T = x.dtype.type
    r = rois.astype(T, copy=False)
    b = r[:, 0].astype(np.int64)  # truncation, as the C kernel's (int) cast
    q = _round_half_away(r[:, 1:5] * T(spatial_scale)).astype(np.int64)  # (K, 4) x1 y1 x2 y2
    roi_w = np.maximum(q[:, 2] - q[:, 0] + 1, 1)
    roi_h = np.maximum(q[:, 3] - q[:, 1] + 1, 1)
    hs, he = _pool_bins(T, q[:, 1], roi_h, PH, H)  # (K, PH)
    ws, we = _pool_bins(T, q[:, 0], roi_w, PW, W)  # (K, PW)
    y = np.zeros((K, C, PH, PW), dtype=x.dtype)
    arg = np.full((K, C, PH, PW), -1, dtype=np.int64)
    for k in range(K):
        r0, r1 = hs[k].min(), he[k].max()
        c0, c1 = ws[k].min(), we[k].max()
        if r1 <= r0 or c1 <= c0:
            continue
        region = x[b[k], :, r0:r1, c0:c1]  # (C, RH, RW)
        # NaN and values <= -FLT_MAX are never selected (strict v > best from -FLT_MAX)
        region = np.where(np.isnan(region) | (region <= -_FLT_MAX), -np.inf, region)
        # pass 1 per column bin: row maxima, first column; pass 2 per row bin: first row
        v1 = np.full((C, r1 - r0, PW), -np.inf, dtype=x.dtype)
        col = np.zeros((C, r1 - r0, PW), dtype=np.int64)
        for j in range(PW):
            if we[k, j] > ws[k, j]:
                v1[:, :, j], pos = _masked_max(region[:, :, ws[k, j] - c0:we[k, j] - c0], 2)
                col[:, :, j] = pos + ws[k, j]
        for i in range(PH):
            if he[k, i] <= hs[k, i]:
                continue
            best, pos = _masked_max(v1[:, hs[k, i] - r0:he[k, i] - r0, :], 1)  # (C, PW)
            h = pos + hs[k, i]
            w = np.take_along_axis(col, (h - r0)[:, None, :], axis=1)[:, 0, :]
            found = best > -np.inf
            nonempty = (we[k] > ws[k])[None, :]
            y[k, :, i, :] = np.where(nonempty, np.where(found, best, -_FLT_MAX), 0)
            arg[k, :, i, :] = np.where(nonempty & found, h * W + w, -1)
    return y, arg


@register("roi_pool_backward", "numpy")
def roi_pool_backward(gy, rois, argmax, in_shape):
    N, C, H, W = in_shape
    K, _, PH, PW = gy.shape
    b = rois[:, 0].astype(np.int64)
    plane = b[:, None] * C + np.arange(C)[None, :]  # (K, C) plane of each output
    arg = argmax.reshape(K, C, PH * PW)
    offs = plane[:, :, None] * (H * W) + arg  # (K, C, PH*PW) offsets into gx
    valid = arg != -1
    gx = np.bincount(offs[valid], weights=gy.reshape(K, C, PH * PW)[valid],
                     minlength=N * C * H * W)
    return gx.astype(gy.dtype, copy=False).reshape(in_shape)


def _align_geometry(T, rois, spatial_scale, out_hw, sampling_ratio, aligned):
    """Per box (K,): b, start (y, x), bin size (h, w), grid (gh, gw), count — all in T."""
    r = rois.astype(T, copy=False)
    off = T(0.5) if aligned else T(0)
    s = r[:, 1:5] * T(spatial_scale) - off  # (K, 4) sx sy ex ey
    roi_w, roi_h = s[:, 2] - s[:, 0], s[:, 3] - s[:, 1]
    if not aligned:
        roi_w, roi_h = np.maximum(roi_w, T(1)), np.maximum(roi_h, T(1))
    PH, PW = out_hw
    if sampling_ratio > 0:
        gh = gw = np.full(len(r), sampling_ratio, dtype=np.int64)
    else:
        gh = np.ceil(roi_h / T(PH)).astype(np.int64)
        gw = np.ceil(roi_w / T(PW)).astype(np.int64)
    count = np.maximum(gh * gw, 1)
    return (r[:, 0].astype(np.int64), s[:, 1], s[:, 0], roi_h / T(PH), roi_w / T(PW),
            gh, gw, count)


def _axis_samples(T, start, bin_size, pooled, grid, length):
    """One axis of one box: low/high taps, their weights and validity, (pooled*grid,) each."""
    p = np.repeat(np.arange(pooled).astype(T), grid)
    g = np.tile(np.arange(grid).astype(T) + T(0.5), pooled)
    c = start + p * bin_size + (g * bin_size) / T(grid)  # torchvision's order, in T
    valid = (c >= -1) & (c <= length)  # NaN is outside too
    c = np.maximum(np.where(valid, c, 0), 0)
    lo = c.astype(np.int64)
    last = lo >= length - 1
    lo = np.where(last, length - 1, lo)
    hi = np.where(last, length - 1, lo + 1)
    c = np.where(last, lo.astype(T), c)
    frac = (c - lo.astype(T)).astype(T)
    return lo, hi, (T(1) - frac).astype(T), frac, valid


@register("roi_align_forward", "numpy")
def roi_align_forward(x, rois, out_hw, spatial_scale, sampling_ratio, aligned):
    N, C, H, W = x.shape
    K = rois.shape[0]
    PH, PW = out_hw
    T = x.dtype.type
    b, sy, sx, bh, bw, gh, gw, count = _align_geometry(T, rois, spatial_scale, out_hw,
                                                       sampling_ratio, aligned)
    y = np.zeros((K, C, PH, PW), dtype=x.dtype)
    for k in range(K):
        if gh[k] <= 0 or gw[k] <= 0:
            continue  # no samples (aligned, reversed box, adaptive grid): output 0
        yl, yh, wy0, wy1, vy = _axis_samples(T, sy[k], bh[k], PH, gh[k], H)
        xl, xh, wx0, wx1, vx = _axis_samples(T, sx[k], bw[k], PW, gw[k], W)
        plane = x[b[k]]  # (C, H, W)
        rows = wy0[:, None] * plane[:, yl, :] + wy1[:, None] * plane[:, yh, :]  # (C, SY, W)
        rows[:, ~vy, :] = 0
        s = rows[:, :, xl] * wx0 + rows[:, :, xh] * wx1  # (C, SY, SX)
        s[:, :, ~vx] = 0
        # (C, PH, gh, PW, gw) -> sum over the grid -> (C, PH, PW)
        y[k] = s.reshape(C, PH, gh[k], PW, gw[k]).sum(axis=(2, 4)) / T(count[k])
    return y


def _interp_matrix(lo, hi, w0, w1, valid, length, dtype):
    """(S, length) dense interpolation matrix of one axis; invalid samples are zero rows."""
    m = np.zeros((len(lo), length), dtype=dtype)
    rows = np.arange(len(lo))
    np.add.at(m, (rows, lo), np.where(valid, w0, 0))
    np.add.at(m, (rows, hi), np.where(valid, w1, 0))
    return m


@register("roi_align_backward", "numpy")
def roi_align_backward(gy, rois, in_shape, spatial_scale, sampling_ratio, aligned):
    N, C, H, W = in_shape
    K, _, PH, PW = gy.shape
    T = gy.dtype.type
    b, sy, sx, bh, bw, gh, gw, count = _align_geometry(T, rois, spatial_scale, (PH, PW),
                                                       sampling_ratio, aligned)
    gx = np.zeros(in_shape, dtype=gy.dtype)
    for k in range(K):
        if gh[k] <= 0 or gw[k] <= 0:
            continue
        my = _interp_matrix(*_axis_samples(T, sy[k], bh[k], PH, gh[k], H), H, gy.dtype)
        mx = _interp_matrix(*_axis_samples(T, sx[k], bw[k], PW, gw[k], W), W, gy.dtype)
        g = gy[k] / T(count[k])  # (C, PH, PW)
        g = np.repeat(np.repeat(g, gh[k], axis=1), gw[k], axis=2)  # (C, SY, SX)
        # adjoint of the forward: (H, SY) @ (C, SY, SX) @ (SX, W) -> (C, H, W)
        gx[b[k]] += my.T @ (g @ mx)
    return gx
