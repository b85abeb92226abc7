"""Vectorised NumPy kernels of ``F.interpolate`` (nearest, nearest-exact, linear, cubic, with or
without antialiasing) over planes: x (P, L) or (P, H, W) -> (P, OL) or (P, OH, OW).

Every mode is separable: along one axis each output position o reads K taps ``idx[o, k]`` with
weights ``w[o, k]``. This module computes those (out, K) tables with PyTorch's coordinate rules
(CPU kernels of PyTorch 2.x, including the dtype each step is rounded to), then

    forward  = along W, then along H: y[..., o] = sum_k w[o, k] x[..., idx[o, k]]
    backward = the adjoint, H first then W: each column of gy is added to its taps' sources.

Short axes (in <= 64 K, not nearest) use the equivalent dense (out, in) matrix and one BLAS
product per axis. Long axes use one gather per tap; backward gathers too, from the transposed
table (for each input position the outputs that read it, padded with weight-0 taps), so no
scatter-add.

Coordinate rules (in = input length, out = output length, sf = the user's scale factor when it
is used for the coordinates, i = output index):

    scale       align_corners: (in-1)/(out-1) (0 when out == 1); else 1/sf if sf, else in/out
    src(i)      align_corners: scale*i; else scale*(i+0.5)-0.5 (clamped at 0 except for cubic)
    nearest     'index' rule (torch's nearest_idx, float32): i if out == in, i >> 1 if
                out == 2*in, else floor(float32(i) * scale32); 'generic' rule (torch's
                compute_indices_weights, in the input dtype): floor(float32(scale * i))
    nearest-exact  floor((i + 0.5) * scale) (float32-rounded product), or in the generic rule
                floor(float32(max(src(i), 0) + 0.5))
    linear      i0 = min(floor(src), in-1), i1 = i0 + (i0 < in-1), l1 = clip(src - i0, 0, 1),
                l0 = 1 - l1; identity when out == in
    cubic       i0 as linear (src unclamped), t = clip(src - i0, 0, 1), Keys' kernel with
                A = -0.75 at distances 1+t, t, 1-t, 2-t, taps i0-1..i0+2 clamped to [0, in-1]
    antialias   center = scale*(i+0.5), support = K/2 * max(scale, 1) (K = 2 linear, 4 cubic),
                taps [int(center - support + 0.5), int(center + support + 0.5)) within [0, in),
                w = filter((tap - center + 0.5) / max(scale, 1)) normalised to sum 1;
                triangle filter, or Keys' kernel with a = -0.5 (as PIL); an axis whose size
                does not change is copied
"""
import numpy as np

from . import register

# ------------------------------------------------------------------------------ coordinates


def _scale(in_len, out_len, align_corners, sf, dt):
    """PyTorch's area_pixel_compute_scale, rounded to ``dt`` (float32 or float64)."""
    if align_corners:
        return dt.type(in_len - 1) / dt.type(out_len - 1) if out_len > 1 else dt.type(0)
    if sf is not None and sf > 0:
        return dt.type(1.0 / sf)
    return dt.type(in_len) / dt.type(out_len)


def _source(scale, out_len, align_corners, dt, clamp):
    """src(i) for i in [0, out_len), rounded to ``dt`` as PyTorch's opmath."""
    i = np.arange(out_len)
    if align_corners:
        return i.astype(dt) * scale
    src = (np.float64(scale) * (i + 0.5) - 0.5).astype(dt)
    return np.maximum(src, dt.type(0)) if clamp else src


def _floorf(v):
    """C's floorf on a value of any float type: round to float32 first, then floor."""
    return np.floor(np.asarray(v).astype(np.float32)).astype(np.int64)


def nearest_taps(in_len, out_len, sf, exact, dt, rule):
    i = np.arange(out_len, dtype=np.int64)
    if rule == "index":
        if not exact and out_len == in_len:
            idx = i
        elif not exact and out_len == 2 * in_len:
            idx = i >> 1
        else:
            s = np.float32(1.0 / sf) if (sf is not None and sf > 0) else (
                np.float32(in_len) / np.float32(out_len))
            if exact:
                v = (i + 0.5) * np.float64(s)          # double product, floorf rounds it
            else:
                v = i.astype(np.float32) * s          # float32 product
            idx = _floorf(v)
    else:
        scale = _scale(in_len, out_len, False, sf, dt)
        if exact:
            src = _source(scale, out_len, False, dt, clamp=True)
            idx = _floorf(src.astype(np.float64) + 0.5)
        else:
            idx = _floorf(i.astype(dt) * scale)
    return np.minimum(idx, in_len - 1).reshape(-1, 1), None


def linear_taps(in_len, out_len, sf, align_corners, dt):
    i = np.arange(out_len, dtype=np.int64)
    if out_len == in_len:
        idx = np.stack([i, i], axis=1)
        w = np.zeros((out_len, 2), dtype=dt)
        w[:, 0] = 1
        return idx, w
    scale = _scale(in_len, out_len, align_corners, sf, dt)
    src = _source(scale, out_len, align_corners, dt, clamp=True)
    i0 = np.minimum(_floorf(src), in_len - 1)
    l1 = np.clip(src - i0.astype(dt), dt.type(0), dt.type(1))
    i1 = i0 + (i0 < in_len - 1)
    return np.stack([i0, i1], axis=1), np.stack([dt.type(1) - l1, l1], axis=1)


def _keys_near(x, a):
    """Keys' cubic kernel for |x| <= 1: ((a + 2)|x| - (a + 3)) x**2 + 1."""
    return ((a + 2) * x - (a + 3)) * x * x + 1


def _keys_far(x, a):
    """Keys' cubic kernel for 1 < |x| < 2: ((a|x| - 5a)|x| + 8a)|x| - 4a."""
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a


def cubic_taps(in_len, out_len, sf, align_corners, dt):
    scale = _scale(in_len, out_len, align_corners, sf, dt)
    src = _source(scale, out_len, align_corners, dt, clamp=False)
    i0 = np.minimum(_floorf(src), in_len - 1)
    t = np.clip(src - i0.astype(dt), dt.type(0), dt.type(1))
    a = dt.type(-0.75)
    one = dt.type(1)
    w = np.stack([_keys_far(t + one, a), _keys_near(t, a), _keys_near(one - t, a),
                  _keys_far(one - t + one, a)], axis=1).astype(dt, copy=False)
    idx = np.clip(i0[:, None] + np.arange(-1, 3), 0, in_len - 1)
    return idx, w


def _triangle(x):
    x = np.abs(x)
    return np.where(x < 1, 1 - x, 0).astype(x.dtype, copy=False)


def _keys_pil(x):
    x = np.abs(x)
    a = x.dtype.type(-0.5)
    return np.where(x < 1, _keys_near(x, a),
                    np.where(x < 2, _keys_far(x, a), 0)).astype(x.dtype, copy=False)


def antialias_taps(in_len, out_len, sf, align_corners, dt, cubic):
    width = 4 if cubic else 2
    filt = _keys_pil if cubic else _triangle
    scale = _scale(in_len, out_len, align_corners, sf, dt)
    big = scale >= 1
    support = dt.type(width * 0.5 * np.float64(scale)) if big else dt.type(width * 0.5)
    ntaps = int(np.ceil(support)) * 2 + 1
    i = np.arange(out_len)
    center = (np.float64(scale) * (i + 0.5)).astype(dt)
    invscale = dt.type(1.0 / np.float64(scale)) if big else dt.type(1)
    # C casts truncate toward zero
    xmin = np.maximum(np.trunc((center - support).astype(np.float64) + 0.5).astype(np.int64), 0)
    xend = np.minimum(np.trunc((center + support).astype(np.float64) + 0.5).astype(np.int64),
                      in_len)
    xsize = np.clip(xend - xmin, 0, ntaps)
    j = np.arange(ntaps)
    taps = xmin[:, None] + j
    arg = (((taps.astype(dt) - center[:, None]).astype(np.float64) + 0.5)
           * np.float64(invscale)).astype(dt)
    w = np.where(j < xsize[:, None], filt(arg), dt.type(0)).astype(dt, copy=False)
    total = w.sum(axis=1, keepdims=True)
    w = np.where(total != 0, w / np.where(total != 0, total, dt.type(1)), w).astype(dt, copy=False)
    return np.minimum(taps, in_len - 1), w


def axis_taps(in_len, out_len, mode, align_corners, sf, antialias, rule, dt):
    """(idx, w) tables of one axis, or None when the axis is copied unchanged."""
    if mode in ("nearest", "nearest-exact"):
        idx, w = nearest_taps(in_len, out_len, sf, mode == "nearest-exact", dt, rule)
        if out_len == in_len and np.array_equal(idx[:, 0], np.arange(in_len)):
            return None
        return idx, w
    if antialias:
        if in_len == out_len:
            return None
        return antialias_taps(in_len, out_len, sf, align_corners, dt, mode == "cubic")
    if mode == "linear":
        if in_len == out_len:
            return None
        return linear_taps(in_len, out_len, sf, align_corners, dt)
    return cubic_taps(in_len, out_len, sf, align_corners, dt)


def _plan(in_size, out_size, mode, align_corners, scales, antialias, rule, dt):
    return [axis_taps(i, o, mode, align_corners, s, antialias, rule, dt)
            for i, o, s in zip(in_size, out_size, scales)]


# ------------------------------------------------------------------------------ application
def _bcast(v, axis, ndim):
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def _gather(x, axis, idx, w):
    """y[..., o, ...] = sum_k w[o, k] * x[..., idx[o, k], ...] along ``axis`` (w None: 1)."""
    out = None
    for k in range(idx.shape[1]):
        term = np.take(x, idx[:, k], axis=axis)
        if w is not None:
            term *= _bcast(w[:, k], axis, x.ndim)
        if out is None:
            out = term
        else:
            out += term
    return out


def _transpose_taps(idx, w, in_len, dtype):
    """The tap table of the adjoint: for each input position i, the outputs o that read it and
    their weights, as an (in, KT) table padded with weight-0 taps (KT = the largest count)."""
    out_len, k = idx.shape
    src = idx.ravel()
    dst = np.repeat(np.arange(out_len), k)
    wts = np.ones(src.size, dtype=dtype) if w is None else w.ravel().astype(dtype, copy=False)
    order = np.argsort(src, kind="stable")
    src, dst, wts = src[order], dst[order], wts[order]
    counts = np.bincount(src, minlength=in_len)
    kt = max(int(counts.max()), 1) if src.size else 1
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(src.size) - starts[src]                # position within its input's list
    idx_t = np.zeros((in_len, kt), dtype=np.int64)
    w_t = np.zeros((in_len, kt), dtype=dtype)
    idx_t[src, slot] = dst
    w_t[src, slot] = wts
    return idx_t, w_t


# Dense path: for short axes one matrix product beats K gathers (BLAS does ~in_len
# multiply-adds per output in the time NumPy does one fancy-indexed pass). Used for weighted
# taps while in_len <= _DENSE_PER_TAP * K and the (out, in) matrix stays small; nearest (one
# unweighted tap) always gathers.
_DENSE_PER_TAP = 64
_DENSE_MAX_ENTRIES = 2 ** 20


def _dense(idx, w, in_len, dtype):
    """The (out, in) matrix of a tap table (repeated clamped taps add up)."""
    a = np.zeros((idx.shape[0], in_len), dtype=dtype)
    rows = np.broadcast_to(np.arange(idx.shape[0])[:, None], idx.shape)
    np.add.at(a, (rows, idx), 1 if w is None else w)
    return a


def _use_dense(idx, w, in_len):
    """Dense for weighted short axes; nearest (one unweighted tap) is a plain gather."""
    return (w is not None and in_len <= _DENSE_PER_TAP * idx.shape[1]
            and idx.shape[0] * in_len <= _DENSE_MAX_ENTRIES)


def _resample(x, axis, idx, w, in_len, adjoint):
    """Apply one axis' tap table (``adjoint``: its transpose) along ``axis`` (last or
    second to last) of x."""
    if _use_dense(idx, w, in_len):
        a = _dense(idx, w, in_len, x.dtype)                # (out, in)
        m = a if adjoint else a.T                          # (old, new): contracts the axis
        # one 2-D GEMM (np.matmul on stacked operands loops over small products instead)
        y = np.tensordot(x, m, axes=([axis], [0]))         # the new axis comes last
        return y if axis == x.ndim - 1 else np.moveaxis(y, -1, axis)
    if adjoint:
        return _gather(x, axis, *_transpose_taps(idx, w, in_len, x.dtype))
    return _gather(x, axis, idx, w)


@register("interpolate_forward", "numpy")
def interpolate_forward(x, out_size, mode, align_corners, scales, antialias, nearest_rule):
    """x (P, *in_size) -> (P, *out_size); separable passes, last axis first."""
    in_size = x.shape[1:]
    plan = _plan(in_size, out_size, mode, align_corners, scales, antialias, nearest_rule,
                 x.dtype)
    y = x
    for axis in reversed(range(len(plan))):
        if plan[axis] is not None:
            y = _resample(y, axis + 1, *plan[axis], in_size[axis], adjoint=False)
    return np.array(y, copy=y is x) if y is x else np.ascontiguousarray(y)


@register("interpolate_backward", "numpy")
def interpolate_backward(gy, in_size, mode, align_corners, scales, antialias, nearest_rule):
    """gy (P, *out_size) -> gx (P, *in_size): the forward's passes transposed, first axis first."""
    plan = _plan(tuple(in_size), gy.shape[1:], mode, align_corners, scales, antialias,
                 nearest_rule, gy.dtype)
    g = gy
    for axis in range(len(plan)):
        if plan[axis] is not None:
            g = _resample(g, axis + 1, *plan[axis], in_size[axis], adjoint=True)
    return np.array(g, copy=g is gy) if g is gy else np.ascontiguousarray(g)
