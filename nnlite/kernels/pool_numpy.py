"""Vectorised NumPy pooling kernels (the fallback backend).

P planes (= N*C), H/W input, OH/OW output, KH/KW kernel. Arrays are planes: x (P, H, W).
Max/avg pools loop over the taps that can reach the input, each a strided (P, OH, OW) view of a
padded copy (padded only as far as those taps reach, so huge kernels/padding cost nothing); the
adaptive pools loop over the output bins of one axis at a time (a bin of a 2-D adaptive pool is
a product of a row interval and a column interval, so max/sum separate by axis). Backward
scatters accumulate (bincount, or += on strided views that never alias within one tap).
"""
import numpy as np

from .. import _poolgeom as geo
from . import register


def _rows(a):
    """(P, ...) -> (P, rest) without -1 (an empty batch has no size to infer from)."""
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:])))


def _tap_range(o, L, k, s, p, d):
    """Taps t in [lo, hi] that land inside [0, L) for at least one of the o windows.

    The other taps only ever see padding (never selected by max, zero for avg), so the
    kernels skip them: a huge kernel with huge padding costs no more than the input.
    """
    lo = max(0, -((p - (o - 1) * s) // -d))  # ceil((p - (o-1)*s) / d)
    hi = min(k - 1, (L - 1 + p) // d)
    return lo, hi


def _frame(L, o, s, p, d, lo, hi):
    """[top, bottom) in input coordinates covering taps lo..hi of every window and the input."""
    return min(0, lo * d - p), max(L, (o - 1) * s - p + hi * d + 1)


def _framed(x, rows, cols, fill):
    """(P, bottom-top, right-left) array of ``fill`` with x placed at input coordinates."""
    (top, bottom), (left, right) = rows, cols
    P, H, W = x.shape
    out = np.full((P, bottom - top, right - left), fill, dtype=x.dtype)
    out[:, -top:-top + H, -left:-left + W] = x
    return out


def _tap_view(xp, r0, c0, out_hw, stride):
    """(P, OH, OW) view of framed xp: the tap at frame offset (r0, c0) of every window."""
    (oh, ow), (sh, sw) = out_hw, stride
    return xp[:, r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + (ow - 1) * sw + 1:sw]


def _first_tap(o, s, p, d, k, L):
    """Per window: the first in-bounds tap and whether the window has one (docs/semantics.md
    §3.4)."""
    start = np.arange(o, dtype=np.int64) * s - p
    end = np.minimum(start + (k - 1) * d + 1, L)
    neg = start < 0
    start[neg] += (-start[neg] + d - 1) // d * d
    return start, start < end


@register("max_pool2d_forward", "numpy")
def max_pool2d_forward(x, kernel, stride, padding, dilation, ceil_mode, indices=True):
    P, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh = geo.pool_output_size(H, kh, sh, ph, dh, ceil_mode)
    ow = geo.pool_output_size(W, kw, sw, pw, dw, ceil_mode)
    a_lo, a_hi = _tap_range(oh, H, kh, sh, ph, dh)
    b_lo, b_hi = _tap_range(ow, W, kw, sw, pw, dw)
    nb = max(b_hi - b_lo + 1, 1)
    h0, hok = _first_tap(oh, sh, ph, dh, kh, H)
    w0, wok = _first_tap(ow, sw, pw, dw, kw, W)
    # track the winning tap as a small number (a - a_lo)*nb + (b - b_lo), turned into flat
    # indices at the end; it starts at the first in-bounds tap, -1 for a window wholly in
    # padding (docs/semantics.md §3.6)
    first = ((h0 - (np.arange(oh) * sh - ph)) // dh - a_lo)[:, None] * nb + \
        ((w0 - (np.arange(ow) * sw - pw)) // dw - b_lo)[None, :]  # (OH, OW)
    first = np.where(hok[:, None] & wok[None, :], first, -1)
    na = max(a_hi - a_lo + 1, 1)
    small = np.int16 if na * nb < 2 ** 15 else np.int64  # less memory traffic per tap
    tap = np.broadcast_to(first.astype(small), (P, oh, ow)).copy()
    y = np.full((P, oh, ow), -np.inf, dtype=x.dtype)
    if a_lo <= a_hi and b_lo <= b_hi:
        rows = _frame(H, oh, sh, ph, dh, a_lo, a_hi)
        cols = _frame(W, ow, sw, pw, dw, b_lo, b_hi)
        xp = _framed(x, rows, cols, -np.inf)  # padding as -inf: never selected
        has_nan = bool(np.isnan(x).any())
        take = np.empty((P, oh, ow), dtype=bool)
        for a in range(a_lo, a_hi + 1):
            for b in range(b_lo, b_hi + 1):
                v = _tap_view(xp, a * dh - ph - rows[0], b * dw - pw - cols[0], (oh, ow),
                              (sh, sw))
                # row-major scan: take v if v > best or isnan(v) (first max, last NaN)
                np.greater(v, y, out=take)
                if has_nan:
                    take |= np.isnan(v)
                    np.copyto(y, v, where=take)
                else:
                    np.maximum(y, v, out=y)
                np.copyto(tap, (a - a_lo) * nb + (b - b_lo), where=take)
    # tap number -> flat index h*W + w of the tap of window (i, j)
    tap = tap.astype(np.int64)
    r = (np.arange(oh) * sh - ph)[None, :, None] + (tap // nb + a_lo) * dh
    c = (np.arange(ow) * sw - pw)[None, None, :] + (tap % nb + b_lo) * dw
    idx = np.where(tap >= 0, r * W + c, -1)
    return y, idx


def _scatter_by_index(gy, idx, in_hw):
    """gx (P, H, W) with gx[p].flat[idx[p, l]] += gy[p, l]; index -1 contributes nothing."""
    P = gy.shape[0]
    hw = in_hw[0] * in_hw[1]
    flat = _rows(idx)
    offs = np.arange(P, dtype=np.int64)[:, None] * hw + flat  # (P, L) offsets into gx
    g = _rows(gy)
    valid = flat >= 0
    if not valid.all():
        offs, g = offs[valid], g[valid]
    gx = np.bincount(offs.ravel(), weights=g.ravel(), minlength=P * hw)
    return gx.astype(gy.dtype, copy=False).reshape(P, in_hw[0], in_hw[1])


@register("max_pool2d_backward", "numpy")
def max_pool2d_backward(gy, idx, in_hw):
    return _scatter_by_index(gy, idx, in_hw)


def _avg_divisor(out_hw, in_hw, kernel, stride, padding, count_include_pad, divisor, dtype):
    """(OH, OW) divisors (docs/semantics.md §4.3); 0 marks a window with no in-bounds cell."""
    per_axis = []
    for o, L, k, s, p in zip(out_hw, in_hw, kernel, stride, padding):
        start = np.arange(o, dtype=np.int64) * s - p
        end = np.minimum(start + k, L + p)  # clipped to the padded extent
        pool = (end - start).astype(np.float64)  # float: a huge kernel's area overflows int64
        inside = np.minimum(end, L) - np.maximum(start, 0)
        per_axis.append((pool, np.maximum(inside, 0)))
    (pool_h, in_h), (pool_w, in_w) = per_axis
    empty = (in_h[:, None] == 0) | (in_w[None, :] == 0)
    if divisor is not None:
        div = np.full(out_hw, divisor, dtype=np.float64)
    elif count_include_pad:
        div = pool_h[:, None] * pool_w[None, :]
    else:
        div = (in_h[:, None] * in_w[None, :]).astype(np.float64)
    return np.where(empty, 0, div).astype(dtype)


def _avg_setup(in_hw, kernel, stride, padding, ceil_mode):
    """Output size, the useful tap ranges and the frame of rows/columns they touch."""
    (H, W), (kh, kw), (sh, sw), (ph, pw) = in_hw, kernel, stride, padding
    oh = geo.pool_output_size(H, kh, sh, ph, 1, ceil_mode)
    ow = geo.pool_output_size(W, kw, sw, pw, 1, ceil_mode)
    taps = (_tap_range(oh, H, kh, sh, ph, 1), _tap_range(ow, W, kw, sw, pw, 1))
    frame = (_frame(H, oh, sh, ph, 1, *taps[0]), _frame(W, ow, sw, pw, 1, *taps[1]))
    return (oh, ow), taps, frame


def _avg_taps(taps, frame, padding):
    """Frame offsets (r0, c0) of the useful taps, in row-major window order."""
    ((a_lo, a_hi), (b_lo, b_hi)), ((top, _), (left, _)) = taps, frame
    for a in range(a_lo, a_hi + 1):
        for b in range(b_lo, b_hi + 1):
            yield a - padding[0] - top, b - padding[1] - left


@register("avg_pool2d_forward", "numpy")
def avg_pool2d_forward(x, kernel, stride, padding, ceil_mode, count_include_pad,
                       divisor_override):
    P, H, W = x.shape
    out_hw, taps, frame = _avg_setup((H, W), kernel, stride, padding, ceil_mode)
    xp = _framed(x, frame[0], frame[1], 0)
    acc = np.zeros((P,) + out_hw, dtype=x.dtype)
    # taps in row-major order; the padding zeros leave the in-bounds sum exact
    for r0, c0 in _avg_taps(taps, frame, padding):
        acc += _tap_view(xp, r0, c0, out_hw, stride)
    div = _avg_divisor(out_hw, (H, W), kernel, stride, padding, count_include_pad,
                       divisor_override, x.dtype)
    safe = np.where(div == 0, 1, div)
    return np.where(div == 0, 0, acc / safe).astype(x.dtype, copy=False)


@register("avg_pool2d_backward", "numpy")
def avg_pool2d_backward(gy, in_hw, kernel, stride, padding, ceil_mode, count_include_pad,
                        divisor_override):
    P = gy.shape[0]
    H, W = in_hw
    out_hw, taps, frame = _avg_setup(in_hw, kernel, stride, padding, ceil_mode)
    div = _avg_divisor(out_hw, in_hw, kernel, stride, padding, count_include_pad,
                       divisor_override, gy.dtype)
    g = np.where(div == 0, 0, gy / np.where(div == 0, 1, div)).astype(gy.dtype, copy=False)
    (top, bottom), (left, right) = frame
    gxp = np.zeros((P, bottom - top, right - left), dtype=gy.dtype)
    for r0, c0 in _avg_taps(taps, frame, padding):
        # one tap's windows never share a cell, so += on the strided view is exact
        _tap_view(gxp, r0, c0, out_hw, stride)[...] += g
    return np.ascontiguousarray(gxp[:, -top:-top + H, -left:-left + W])


@register("adaptive_avg_pool2d_forward", "numpy")
def adaptive_avg_pool2d_forward(x, out_hw):
    P, H, W = x.shape
    OH, OW = out_hw
    hs, he = geo.adaptive_bins(H, OH)
    ws, we = geo.adaptive_bins(W, OW)
    rows = np.empty((P, OH, W), dtype=x.dtype)  # sums over each row bin
    for i in range(OH):
        rows[:, i, :] = x[:, hs[i]:he[i], :].sum(axis=1)
    y = np.empty((P, OH, OW), dtype=x.dtype)
    for j in range(OW):
        y[:, :, j] = rows[:, :, ws[j]:we[j]].sum(axis=2)
    area = ((he - hs)[:, None] * (we - ws)[None, :]).astype(x.dtype)  # (OH, OW)
    y /= area
    return y


@register("adaptive_avg_pool2d_backward", "numpy")
def adaptive_avg_pool2d_backward(gy, in_hw):
    P, OH, OW = gy.shape
    H, W = in_hw
    hs, he = geo.adaptive_bins(H, OH)
    ws, we = geo.adaptive_bins(W, OW)
    area = ((he - hs)[:, None] * (we - ws)[None, :]).astype(gy.dtype)
    g = gy / area  # (P, OH, OW)
    cols = np.zeros((P, OH, W), dtype=gy.dtype)  # spread over the column bins
    for j in range(OW):
        cols[:, :, ws[j]:we[j]] += g[:, :, j:j + 1]
    gx = np.zeros((P, H, W), dtype=gy.dtype)
    for i in range(OH):
        gx[:, hs[i]:he[i], :] += cols[:, i:i + 1, :]
    return gx


def _max_along(seg, axis):
    """Max with PyTorch's scan rule along ``axis``: (values, positions).

    Position: the first maximum, or the LAST NaN when the segment holds a NaN (the scan takes
    v when v > best or isnan(v)).
    """
    pos = np.argmax(seg, axis=axis)  # first max; with a NaN, the first NaN
    isn = np.isnan(seg)
    has_nan = isn.any(axis=axis)
    if has_nan.any():
        n = seg.shape[axis]
        last_nan = n - 1 - np.argmax(np.flip(isn, axis=axis), axis=axis)
        pos = np.where(has_nan, last_nan, pos)
    val = np.take_along_axis(seg, np.expand_dims(pos, axis), axis=axis).squeeze(axis)
    return val, pos


@register("adaptive_max_pool2d_forward", "numpy")
def adaptive_max_pool2d_forward(x, out_hw):
    P, H, W = x.shape
    OH, OW = out_hw
    hs, he = geo.adaptive_bins(H, OH)
    ws, we = geo.adaptive_bins(W, OW)
    # pass 1, per column bin: row maxima and their columns. Row-major first max = first row
    # holding the bin max, first column within it (last NaN likewise), so the passes compose.
    v1 = np.empty((P, H, OW), dtype=x.dtype)
    c1 = np.empty((P, H, OW), dtype=np.int64)
    for j in range(OW):
        v1[:, :, j], pos = _max_along(x[:, :, ws[j]:we[j]], axis=2)
        c1[:, :, j] = pos + ws[j]
    y = np.empty((P, OH, OW), dtype=x.dtype)
    idx = np.empty((P, OH, OW), dtype=np.int64)
    for i in range(OH):
        y[:, i, :], pos = _max_along(v1[:, hs[i]:he[i], :], axis=1)  # (P, OW)
        h = pos + hs[i]
        w = np.take_along_axis(c1, h[:, None, :], axis=1)[:, 0, :]
        idx[:, i, :] = h * W + w
    return y, idx


@register("adaptive_max_pool2d_backward", "numpy")
def adaptive_max_pool2d_backward(gy, idx, in_hw):
    return _scatter_by_index(gy, idx, in_hw)


@register("max_unpool2d_forward", "numpy")
def max_unpool2d_forward(x, idx, out_hw):
    P = x.shape[0]
    y = np.zeros((P, out_hw[0] * out_hw[1]), dtype=x.dtype)
    flat = _rows(idx)
    valid = flat >= 0
    plane = np.broadcast_to(np.arange(P)[:, None], flat.shape)
    y[plane[valid], flat[valid]] = _rows(x)[valid]
    return y.reshape((P,) + tuple(out_hw))


@register("max_unpool2d_backward", "numpy")
def max_unpool2d_backward(gy, idx):
    P = gy.shape[0]
    flat = _rows(idx)
    valid = flat >= 0
    g = np.take_along_axis(_rows(gy), np.where(valid, flat, 0), axis=1)
    return np.where(valid, g, 0).astype(gy.dtype, copy=False).reshape(idx.shape)
