"""Pooling ops: max / avg / adaptive pools, max-unpool and spatial pyramid pooling
(docs/semantics.md §3-§6).

Every op accepts (N, C, H, W) or unbatched (C, H, W) input and returns the same rank. Kernels
see planes: (N*C, H, W) -> (N*C, OH, OW). Arguments are validated here (``nnlite._poolgeom``),
before any kernel runs; bad values raise ValueError, bad types TypeError.

Documented divergence from PyTorch: a dilated max-pool window that holds no in-bounds tap (e.g.
H=1, k=2, d=3, p=1, ceil_mode) gives -inf with index -1 and no gradient; PyTorch returns an
out-of-range index there and its backward writes out of bounds (docs/semantics.md §3.6).
``max_unpool2d`` skips index -1.
"""
import math
import numbers

import numpy as np

from .. import _poolgeom as geo
from .. import kernels
from ..autograd import Function
from ..tensor import Tensor, as_tensor, cat
from ._checks import single

__all__ = [
    "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "max_unpool2d",
    "spatial_pyramid_pool2d", "adaptive_avg_pool1d", "adaptive_max_pool1d", "max_pool1d",
    "avg_pool1d", "lp_pool1d", "lp_pool2d",
]


def _planes(a):
    """(..., H, W) -> (P, H, W) C-contiguous view or copy."""
    return np.ascontiguousarray(a).reshape((math.prod(a.shape[:-2]),) + a.shape[-2:])


class MaxPool2dFn(Function):
    """y, idx = max over each window; backward scatter-adds gy at idx (docs/semantics.md
    §3.4-3.5). Returns (y, idx) with ``indices``, else y alone; the indices are computed only
    when they are returned or a gradient needs them."""

    def forward(self, x, geom, indices=True):
        lead = x.shape[:-2]
        need = bool(indices) or self.requires_grad
        y, idx = kernels.impl("max_pool2d_forward")(
            _planes(x), geom.kernel, geom.stride, geom.padding, geom.dilation, geom.ceil_mode,
            indices=need)
        if self.requires_grad:
            self.save_for_backward(idx)
            self.in_shape = x.shape
        if not indices:
            return y.reshape(lead + geom.out)
        return y.reshape(lead + geom.out), idx.reshape(lead + geom.out)

    def backward(self, gy):
        (idx,) = self.saved_tensors
        gx = kernels.impl("max_pool2d_backward")(_planes(gy), idx, self.in_shape[-2:])
        return gx.reshape(self.in_shape)


class AvgPool2dFn(Function):
    """Window sums divided by the docs/semantics.md §4.3 divisor; backward spreads gy/divisor."""

    def forward(self, x, geom, count_include_pad, divisor_override):
        self.args = (geom.kernel, geom.stride, geom.padding, geom.ceil_mode, count_include_pad,
                     divisor_override)
        self.in_shape = x.shape
        y = kernels.impl("avg_pool2d_forward")(_planes(x), *self.args)
        return y.reshape(x.shape[:-2] + geom.out)

    def backward(self, gy):
        gx = kernels.impl("avg_pool2d_backward")(_planes(gy), self.in_shape[-2:], *self.args)
        return gx.reshape(self.in_shape)


class AdaptiveAvgPool2dFn(Function):
    """Mean over adaptive bins (docs/semantics.md §5.2-5.3)."""

    def forward(self, x, out_hw):
        self.in_shape = x.shape
        y = kernels.impl("adaptive_avg_pool2d_forward")(_planes(x), out_hw)
        return y.reshape(x.shape[:-2] + tuple(out_hw))

    def backward(self, gy):
        gx = kernels.impl("adaptive_avg_pool2d_backward")(_planes(gy), self.in_shape[-2:])
        return gx.reshape(self.in_shape)


class AdaptiveMaxPool2dFn(Function):
    """Max over adaptive bins with max_pool2d's tie/NaN rule (docs/semantics.md §5.4)."""

    def forward(self, x, out_hw):
        lead = x.shape[:-2]
        y, idx = kernels.impl("adaptive_max_pool2d_forward")(_planes(x), out_hw)
        if self.requires_grad:
            self.save_for_backward(idx)
            self.in_shape = x.shape
        return y.reshape(lead + tuple(out_hw)), idx.reshape(lead + tuple(out_hw))

    def backward(self, gy):
        (idx,) = self.saved_tensors
        gx = kernels.impl("adaptive_max_pool2d_backward")(_planes(gy), idx,
                                                          self.in_shape[-2:])
        return gx.reshape(self.in_shape)


class MaxUnpool2dFn(Function):
    """y[idx] = x (zeros elsewhere); backward gathers gy at idx."""

    def forward(self, x, indices, out_hw):
        self.indices = _planes(indices)
        self.in_shape = x.shape
        y = kernels.impl("max_unpool2d_forward")(_planes(x), self.indices, out_hw)
        return y.reshape(x.shape[:-2] + tuple(out_hw))

    def backward(self, gy):
        gx = kernels.impl("max_unpool2d_backward")(_planes(gy), self.indices)
        return gx.reshape(self.in_shape)


def _input(input, name):
    x = as_tensor(input)
    geo.check_float_input(x.data, name)
    return x


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling; ties go to the first maximum in row-major window order, NaN propagates.

    Args: kernel_size, stride (default kernel_size), padding (<= kernel // 2; padding acts as
    -inf), dilation: int or (h, w). ceil_mode keeps a last partial window when it starts inside
    the input or the left padding. return_indices also returns int64 flat indices h*W + w.

    Shape:
        input (N, C, H, W) or (C, H, W) -> (N, C, OH, OW) or (C, OH, OW), with
        OH = (H + 2p - d(k-1) - 1 + (s-1 if ceil_mode)) // s + 1, minus 1 in ceil mode when
        (OH-1)*s >= H + p (same for W).

    Examples:
        >>> F.max_pool2d(x, 3, stride=2, padding=1)
    """
    x = _input(input, "max_pool2d")
    geom = geo.pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode,
                             "max_pool2d")
    return MaxPool2dFn.apply(x, geom=geom, indices=bool(return_indices))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-D average pooling (docs/semantics.md §4.3).

    The divisor is divisor_override if given, else the window size clipped to the padded input
    (count_include_pad=True; a ceil-mode overhang past the right padding is not counted), else
    the number of in-bounds cells.

    Shape:
        input (N, C, H, W) or (C, H, W) -> (N, C, OH, OW) or (C, OH, OW); OH as max_pool2d
        with dilation 1.

    Examples:
        >>> F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    """
    x = _input(input, "avg_pool2d")
    geom = geo.pool_geometry(x.shape, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    cip = geo._check_bool(count_include_pad, "count_include_pad")
    div = geo.check_divisor(divisor_override)
    return AvgPool2dFn.apply(x, geom=geom, count_include_pad=cip, divisor_override=div)


def _adaptive_input(input, output_size, name):
    x = as_tensor(input)
    if x.data.dtype.type not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected a float32 or float64 input, got dtype {x.dtype}")
    if x.ndim not in (3, 4):
        raise ValueError(f"{name}: Expected 3D or 4D tensor, but got shape {tuple(x.shape)}")
    lead = 1 if x.ndim == 4 else 0
    for d in range(lead, x.ndim):
        if x.shape[d] == 0:
            raise ValueError(f"{name}: Expected input to have non-zero size for non-batch "
                             f"dimensions, but input has sizes {list(x.shape)} with dimension "
                             f"{d} being empty")
    return x, geo.adaptive_output_size(output_size, x.shape[-2:], name)


def adaptive_avg_pool2d(input, output_size):
    """Average over adaptive bins: bin i spans [floor(i*I/O), ceil((i+1)*I/O)) per axis.

    Bins overlap when I % O != 0 and repeat when O > I. output_size: int or (oh, ow), an entry
    None keeps that input size, 0 gives an empty result.

    Shape:
        input (N, C, H, W) or (C, H, W) -> (N, C, oh, ow) or (C, oh, ow).

    Examples:
        >>> F.adaptive_avg_pool2d(x, 1)     # global average pool
    """
    x, out_hw = _adaptive_input(input, output_size, "adaptive_avg_pool2d")
    return AdaptiveAvgPool2dFn.apply(x, out_hw=out_hw)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max over adaptive bins (bins as adaptive_avg_pool2d), first-max / last-NaN rule.

    Shape:
        input (N, C, H, W) or (C, H, W) -> (N, C, oh, ow) or (C, oh, ow); indices int64.

    Examples:
        >>> y, idx = F.adaptive_max_pool2d(x, (2, 3), return_indices=True)
    """
    x, out_hw = _adaptive_input(input, output_size, "adaptive_max_pool2d")
    y, idx = AdaptiveMaxPool2dFn.apply(x, out_hw=out_hw)
    return (y, idx) if return_indices else y


def _unpool_size(in_hw, kernel, stride, padding, output_size, ndim):
    default = [(i - 1) * s + k - 2 * p for i, k, s, p in zip(in_hw, kernel, stride, padding)]
    if output_size is None:
        return tuple(default)
    sizes = list(output_size.shape if isinstance(output_size, Tensor) else output_size)
    if len(sizes) in (ndim, 4) and len(sizes) != 2:
        sizes = sizes[-2:]
    if len(sizes) != 2 or not all(isinstance(v, numbers.Integral) for v in sizes):
        raise ValueError(f"max_unpool2d: output_size should be a sequence of 2 ints (or of "
                         f"the input's rank), got {output_size!r}")
    for d in range(2):
        lo, hi = default[d] - stride[d], default[d] + stride[d]
        if not lo < sizes[d] < hi:
            raise ValueError(f"max_unpool2d: invalid output_size {tuple(output_size)} (dim {d} "
                             f"must be between {lo} and {hi}, exclusive)")
    return tuple(int(v) for v in sizes)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max_pool2d: places each value at its flat index, zeros elsewhere.

    Index -1 (a max-pool window with no in-bounds tap) is skipped; any other index outside
    [0, OH*OW) raises ValueError. A repeated index keeps the last value.

    Shape:
        input, indices (N, C, H, W) or (C, H, W) -> (N, C, OH, OW) or (C, OH, OW) with
        OH = (H - 1)*s - 2p + k unless output_size is given (within +-stride of it).

    Examples:
        >>> y, idx = F.max_pool2d(x, 2, return_indices=True); F.max_unpool2d(y, idx, 2)
    """
    x = _input(input, "max_unpool2d")
    idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"max_unpool2d: indices must be an integer tensor, got dtype {idx.dtype}")
    if idx.shape != x.shape:
        raise ValueError(f"max_unpool2d: Expected shape of indices to be same as that of the "
                         f"input tensor ({tuple(x.shape)}) but got indices tensor with shape "
                         f"{tuple(idx.shape)}")
    kernel = geo.pair(kernel_size, "kernel_size")
    strd = geo._stride_pair(stride, kernel)
    pad = geo.pair(padding, "padding")
    if min(kernel) <= 0 or min(strd) <= 0 or min(pad) < 0:
        raise ValueError(f"max_unpool2d: kernel_size {kernel} and stride {strd} must be "
                         f"positive and padding {pad} non-negative")
    out_hw = _unpool_size(x.shape[-2:], kernel, strd, pad, output_size, x.ndim)
    if out_hw[0] <= 0 or out_hw[1] <= 0:
        raise ValueError(f"max_unpool2d: output size {out_hw} must be positive (input "
                         f"{tuple(x.shape)}, kernel {kernel}, stride {strd}, padding {pad})")
    n_out = out_hw[0] * out_hw[1]
    bad = (idx < -1) | (idx >= n_out)
    if bad.any():
        raise ValueError(f"max_unpool2d: Found an invalid max index: {int(idx[bad].flat[0])} "
                         f"(output volumes are of size {out_hw[0]}x{out_hw[1]})")
    return MaxUnpool2dFn.apply(x, indices=idx.astype(np.int64, copy=False), out_hw=out_hw)


def _levels(levels):
    if isinstance(levels, numbers.Integral) and not isinstance(levels, bool):
        levels = (levels,)
    try:
        levels = tuple(levels)
    except TypeError:
        raise TypeError(f"spatial_pyramid_pool2d: levels must be a sequence of ints, "
                        f"got {levels!r}") from None
    if not levels:
        raise ValueError("spatial_pyramid_pool2d: levels must not be empty")
    for n in levels:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"spatial_pyramid_pool2d: levels must be ints, got {levels!r}")
        if n <= 0:
            raise ValueError(f"spatial_pyramid_pool2d: every level must be >= 1, got {levels!r}")
    return tuple(int(n) for n in levels)


def spatial_pyramid_pool2d(input, levels=(4, 2, 1), mode="max"):
    """Spatial pyramid pooling (He et al. 2014) with adaptive bins (docs/semantics.md §6.3).

    Level n pools the map into n x n adaptive bins (``adaptive_{max,avg}_pool2d``); each level
    is flattened channel-major (C, n, n) and the levels are concatenated in the given order. The
    paper's window ceil(a/n) / stride floor(a/n) formula gives the wrong bin count for many map
    sizes (e.g. a=10, n=6 -> 9 bins; docs/semantics.md §6.2); adaptive bins give exactly n x n for
    every size (inputs smaller than n repeat cells).

    Args: levels (sequence of positive ints), mode 'max' or 'avg'.

    Shape:
        input (N, C, H, W) -> (N, C * sum(n**2 for n in levels)); (C, H, W) -> (C * sum(n**2),).

    Examples:
        >>> F.spatial_pyramid_pool2d(torch_like_x, levels=(4, 2, 1)).shape   # (N, 21*C)
    """
    levels = _levels(levels)
    if mode not in ("max", "avg"):
        raise ValueError(f"spatial_pyramid_pool2d: mode must be 'max' or 'avg', got {mode!r}")
    pool = adaptive_max_pool2d if mode == "max" else adaptive_avg_pool2d
    x = as_tensor(input)
    if x.ndim not in (3, 4):
        raise ValueError(f"spatial_pyramid_pool2d: expected a 3-D or 4-D input, "
                         f"got shape {tuple(x.shape)}")
    start = x.ndim - 3  # flatten (C, n, n)
    parts = [pool(x, (n, n)).flatten(start_dim=start) for n in levels]
    return parts[0] if len(parts) == 1 else cat(parts, dim=start)


# ------------------------------------------------------------------------------ 1-D pools
# Each 1-D pool is its 2-D counterpart on (..., 1, L): a unit height axis is inserted before the
# pool and removed after it (both differentiable reshapes); geometry and checks stay in
# nnlite/_poolgeom.py, called with the 1-D op's name.


def _input_1d(input, name):
    x = as_tensor(input)
    if x.ndim not in (2, 3):
        raise ValueError(f"{name}: Expected 2D or 3D input (C, L) or (N, C, L), but got shape "
                         f"{tuple(x.shape)} ({x.ndim}-D)")
    return x


def _adaptive_1d(input, output_size, name):
    x = _input_1d(input, name)
    o = single(output_size, "output_size", name)
    return x.unsqueeze(-2), o


def adaptive_avg_pool1d(input, output_size):
    """Average over adaptive bins [floor(i*L/O), ceil((i+1)*L/O)) (see adaptive_avg_pool2d).

    Shape: (N, C, L) or (C, L) -> (N, C, O) or (C, O).

    Examples:
        >>> F.adaptive_avg_pool1d(x, 1)    # global average over L
    """
    x4, o = _adaptive_1d(input, output_size, "adaptive_avg_pool1d")
    return adaptive_avg_pool2d(x4, (1, o)).squeeze(-2)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    """Max over adaptive bins; indices (int64) index L.

    Shape: (N, C, L) or (C, L) -> (N, C, O) or (C, O).
    """
    x4, o = _adaptive_1d(input, output_size, "adaptive_max_pool1d")
    y, idx = adaptive_max_pool2d(x4, (1, o), return_indices=True)
    y = y.squeeze(-2)
    return (y, Tensor(idx.data.reshape(y.shape))) if return_indices else y


def _pool_1d(op, fn, x, *args, **kwargs):
    """fn (a 2-D pool) on the height-1 view of x; error messages renamed for ``op``."""
    try:
        out = fn(x.unsqueeze(-2), *args, **kwargs)
    except ValueError as e:
        raise ValueError(f"{op} (computed as a 2-D pool over (N, C, 1, L)): {e}") from None
    if isinstance(out, tuple):
        y, idx = out
        y = y.squeeze(-2)
        return y, Tensor(idx.data.reshape(y.shape))
    return out.squeeze(-2)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """1-D max pooling (``max_pool2d`` rules: padding <= kernel // 2 acts as -inf, first maximum
    wins ties, NaN propagates; indices (int64) index L).

    Shape:
        (N, C, L) or (C, L) -> (N, C, L_out), L_out = (L + 2p - d(k-1) - 1 (+ s-1 if ceil_mode))
        // s + 1 (minus 1 when ceil mode's last window starts in the right padding).

    Examples:
        >>> F.max_pool1d(x, 3, stride=2, padding=1)
    """
    x = _input_1d(input, "max_pool1d")
    k = single(kernel_size, "kernel_size", "max_pool1d")
    s = k if stride is None or (isinstance(stride, (tuple, list)) and not stride) else single(
        stride, "stride", "max_pool1d")
    p = single(padding, "padding", "max_pool1d")
    d = single(dilation, "dilation", "max_pool1d")
    return _pool_1d("max_pool1d", max_pool2d, x, (1, k), (1, s), (0, p), (1, d), ceil_mode,
                    return_indices=bool(return_indices))


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """1-D average pooling (``avg_pool2d``'s divisor rules).

    Shape: (N, C, L) or (C, L) -> (N, C, L_out), L_out as max_pool1d with dilation 1.

    Examples:
        >>> F.avg_pool1d(x, 4, stride=2, count_include_pad=False)
    """
    x = _input_1d(input, "avg_pool1d")
    k = single(kernel_size, "kernel_size", "avg_pool1d")
    s = k if stride is None or (isinstance(stride, (tuple, list)) and not stride) else single(
        stride, "stride", "avg_pool1d")
    p = single(padding, "padding", "avg_pool1d")
    return _pool_1d("avg_pool1d", avg_pool2d, x, (1, k), (1, s), (0, p), ceil_mode,
                    count_include_pad)


def _norm_type(norm_type, op):
    if isinstance(norm_type, (bool, np.bool_)) or not isinstance(norm_type, numbers.Real):
        raise TypeError(f"{op}: norm_type must be a number, got {norm_type!r}")
    if norm_type == 0:
        raise ValueError(f"{op}: norm_type must be non-zero (the result is raised to "
                         f"1/norm_type), got {norm_type!r}")
    return float(norm_type)


class SignedMagnitudeFn(Function):
    """PyTorch's sign(x) * relu(|x|) (= x, NaN kept) with the gradient its autograd gives:
    sign has none, relu's is a select, so gx = gy where x != 0 and exactly 0 where x == 0
    (even when gy is inf or NaN there, as after ** (1/p) of a zero window)."""

    def forward(self, x):
        if self.requires_grad:
            self.save_for_backward(x)
        return np.sign(x) * np.maximum(np.abs(x), 0)

    def backward(self, gy):
        (x,) = self.saved_tensors
        s = np.sign(x)
        with np.errstate(invalid="ignore"):
            return np.where(x != 0, gy * s * s, np.zeros((), gy.dtype))


def _lp_finish(out, area, p):
    """PyTorch's (sign(out) * relu(|out|)) * area, then ** (1/p)."""
    return (SignedMagnitudeFn.apply(out) * area) ** (1.0 / p)


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling, PyTorch's formula: (avg_pool2d(x**p) * kh * kw) ** (1/p), i.e.
    the p-norm of each window (a ceil-mode partial window is averaged over its in-bounds cells
    and scaled back by the full kernel area, as PyTorch). No padding. p = +inf: max of |x|;
    p = -inf: min of |x|. Negative x with fractional p gives NaN, as x**p does.

    Shape: (N, C, H, W) or (C, H, W) -> (N, C, OH, OW), OH as avg_pool2d with padding 0.

    Examples:
        >>> F.lp_pool2d(x, 2, 3, stride=2)
    """
    p = _norm_type(norm_type, "lp_pool2d")
    x = as_tensor(input)
    kh, kw = geo.pair(kernel_size, "kernel_size")
    if p == np.inf:
        return max_pool2d(x.abs(), kernel_size, stride, 0, 1, ceil_mode)
    if p == -np.inf:
        return -max_pool2d(-x.abs(), kernel_size, stride, 0, 1, ceil_mode)
    out = avg_pool2d(x ** p, kernel_size, stride, 0, ceil_mode)
    return _lp_finish(out, kh * kw, p)


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """1-D power-average pooling: (avg_pool1d(x**p) * k) ** (1/p) (see lp_pool2d).

    Shape: (N, C, L) or (C, L) -> (N, C, L_out).

    Examples:
        >>> F.lp_pool1d(x, 2, 3)
    """
    p = _norm_type(norm_type, "lp_pool1d")
    x = as_tensor(input)
    k = single(kernel_size, "kernel_size", "lp_pool1d")
    if p == np.inf:
        return max_pool1d(x.abs(), k, stride, 0, 1, ceil_mode)
    if p == -np.inf:
        return -max_pool1d(-x.abs(), k, stride, 0, 1, ceil_mode)
    out = avg_pool1d(x ** p, k, stride, 0, ceil_mode)
    return _lp_finish(out, k, p)
