"""F.pad with PyTorch's modes (constant, reflect, replicate, circular) and its backward.

Index map of a padded coordinate i (input length L) for the non-constant modes (docs/semantics.md
§1.6): reflect -i / 2(L-1)-i, replicate clamp, circular wrap. The forward is one gather over the
padded axes; the backward is its adjoint: each output cell's gradient is ADDED to the source it was
copied from (np.add.at along one axis at a time; the modes are separable per axis).
"""
import numbers

import numpy as np

from ..autograd import Function
from ..tensor import as_tensor

__all__ = ["pad"]

_MODES = ("constant", "reflect", "replicate", "circular")


def _sizes(shape):
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _check_pad(pad, ndim):
    if not isinstance(pad, (tuple, list)):
        raise TypeError(f"pad(): argument 'pad' must be a tuple of ints, got "
                        f"{type(pad).__name__}")
    for i, p in enumerate(pad):
        if isinstance(p, bool) or not isinstance(p, numbers.Integral):
            raise TypeError(f"pad(): argument 'pad' must be a tuple of ints, but found element "
                            f"of type {type(p).__name__} at pos {i}")
    if len(pad) % 2:
        raise ValueError(f"Padding length must be divisible by 2, got pad={tuple(pad)}")
    if len(pad) // 2 > ndim:
        raise ValueError(f"Padding length should be less than or equal to two times the input "
                         f"dimension but got padding length {len(pad)} and input of dimension "
                         f"{ndim}")
    # pairs, last dim first -> [(axis, before, after), ...]
    return [(ndim - 1 - i, int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(pad) // 2)]


def _source_index(mode, length, before, after, axis, shape):
    """Source index (into the input axis) of every output position along one axis."""
    out_len = length + before + after
    if mode == "circular":
        # torch crops negative pads first, then wraps positive pads around the kept extent
        lo, hi = max(-before, 0), length - max(-after, 0)
        kept = hi - lo
        if out_len < 0:
            raise ValueError(f"Negative padding value is resulting in an empty dimension "
                             f"(padding ({before}, {after}) at dimension {axis} of input "
                             f"{_sizes(shape)})")
        if max(before, 0) > length or max(after, 0) > length:
            # torch's own check (before an empty result): a pad longer than the input
            raise ValueError(f"Padding value causes wrapping around more than once: padding "
                             f"({before}, {after}) at dimension {axis} of input {_sizes(shape)}")
        if out_len == 0:
            return np.zeros(0, dtype=np.intp)
        if max(before, 0) > kept or max(after, 0) > kept:
            # torch checks pad <= size only and then reads unwritten memory when a pad exceeds
            # the part of the input kept after cropping; nnlite refuses that case
            raise ValueError(f"Padding value causes wrapping around more than once: padding "
                             f"({before}, {after}) at dimension {axis} of input {_sizes(shape)} "
                             f"keeps {kept} elements after cropping")
        pos = np.arange(out_len) - max(before, 0)
        return lo + np.mod(pos, kept)
    if length == 0:
        raise ValueError(f"{mode} padding needs non-empty padded dimensions, but got input of "
                         f"size {_sizes(shape)}")
    if mode == "reflect" and (before >= length or after >= length):
        raise ValueError(f"Padding size should be less than the corresponding input dimension, "
                         f"but got: padding ({before}, {after}) at dimension {axis} of input "
                         f"{_sizes(shape)}")
    if out_len < 1:
        raise ValueError(f"input (size {length} at dimension {axis}) is too small. Calculated "
                         f"output size: {out_len} for padding ({before}, {after})")
    i = np.arange(out_len) - before
    if mode == "reflect":
        return np.where(i < 0, -i, np.where(i >= length, 2 * (length - 1) - i, i))
    return np.clip(i, 0, length - 1)  # replicate


class PadFn(Function):
    """y = pad(x); gx = adjoint (scatter-add for reflect/replicate/circular, crop for constant)."""

    def forward(self, x, axes=(), mode="constant", value=0.0):
        self.shape, self.axes, self.mode = x.shape, axes, mode
        if mode == "constant":
            return self._constant(x, value)
        self.srcs = [(axis, _source_index(mode, x.shape[axis], before, after, axis, x.shape))
                     for axis, before, after in sorted(axes)]
        # one gather over the (trailing, adjacent) padded axes: x[..., src_h[:, None], src_w]
        index = [slice(None)] * x.ndim
        for (axis, _), grid in zip(self.srcs, np.ix_(*[src for _, src in self.srcs])):
            index[axis] = grid
        return x[tuple(index)]

    def _constant(self, x, value):
        out_shape = list(x.shape)
        dst, src = [slice(None)] * x.ndim, [slice(None)] * x.ndim
        for axis, before, after in self.axes:
            length = x.shape[axis]
            lo, hi = max(-before, 0), length - max(-after, 0)
            if hi < lo or length + before + after < 0:
                raise ValueError(f"negative padding ({before}, {after}) removes more than the "
                                 f"{length} elements of dimension {axis} of input "
                                 f"{_sizes(x.shape)}")
            out_shape[axis] = length + before + after
            src[axis] = slice(lo, hi)
            dst[axis] = slice(max(before, 0), max(before, 0) + hi - lo)
        self.dst, self.src = tuple(dst), tuple(src)
        out = np.full(out_shape, value, dtype=x.dtype)
        out[self.dst] = x[self.src]
        return out

    def backward(self, gy):
        gx = np.zeros(self.shape, dtype=gy.dtype)
        if self.mode == "constant":
            gx[self.src] = gy[self.dst]
            return gx
        g = gy
        for axis, src in reversed(self.srcs):
            # adjoint of the gather along ``axis``: add every output slice onto its source slice
            shape = list(g.shape)
            shape[axis] = self.shape[axis]
            acc = np.zeros(shape, dtype=gy.dtype)
            np.add.at(np.moveaxis(acc, axis, 0), src, np.moveaxis(g, axis, 0))
            g = acc
        return g


def pad(input, pad, mode="constant", value=None):
    """Pad the last ``len(pad) // 2`` dimensions of ``input`` (PyTorch's ``F.pad``).

    ``pad`` lists (before, after) pairs LAST dimension first: ``(left, right, top, bottom, ...)``.
    Negative entries crop. ``mode``: 'constant' (fill ``value``, default 0; any number of
    dimensions), 'reflect' (mirror without repeating the edge; each pad < size), 'replicate'
    (repeat the edge), 'circular' (wrap around once; negative pads crop first). The non-constant
    modes pad 1, 2 or 3 trailing dims of a (1 or 2)-more-dimensional input, as PyTorch.

    Shape:
        input (*, L_k, ..., L_1) -> output (*, L_k + p_k_before + p_k_after, ...).

    Examples:
        >>> F.pad(x, (1, 2, 0, 0), mode="reflect")   # W gets 1 on the left, 2 on the right
    """
    x = as_tensor(input)
    axes = _check_pad(pad, x.ndim)
    if mode not in _MODES:
        raise ValueError(f"Unrecognised padding mode {mode!r}; expected one of {_MODES}")
    if mode == "constant":
        return PadFn.apply(x, axes=tuple(axes), mode=mode,
                           value=0.0 if value is None else value)
    if value is not None:
        raise ValueError(f'Padding mode "{mode}" doesn\'t take in value argument')
    m = len(axes)
    if m not in (1, 2, 3) or x.ndim not in (m + 1, m + 2):
        raise ValueError(
            f"Padding size {len(pad)} is not supported for {x.ndim}D input tensor. Supported "
            "combinations for non-constant padding: 2D or 3D input: padding size = 2 (pads last "
            "dimension); 3D or 4D input: padding size = 4 (pads last 2 dimensions); 4D or 5D "
            "input: padding size = 6 (pads last 3 dimensions)")
    return PadFn.apply(x, axes=tuple(axes), mode=mode)


def pad_trailing(input, pad, mode):
    """``pad`` in a non-constant mode ('reflect', 'replicate', 'circular') over any number of
    trailing dimensions of an input of any rank: F.pad without PyTorch's rule of which ranks
    the non-constant modes take (ONNX's Pad pads any axes, e.g. a 1-D tensor or every axis of
    a 2-D one). Same values as F.pad where both apply."""
    x = as_tensor(input)
    axes = _check_pad(pad, x.ndim)
    if mode not in _MODES or mode == "constant":
        raise ValueError(f"pad_trailing takes the non-constant modes, got {mode!r}")
    return PadFn.apply(x, axes=tuple(axes), mode=mode)
