"""Cython pooling kernels (``nnlite._pool``): thin wrappers that enforce the memory contract.

Each wrapper makes its inputs C-contiguous, computes the output size with ``nnlite._poolgeom``,
allocates the outputs (zero-filled where the kernel scatters, except for the max pools'
backward, whose kernel clears each plane itself) and calls the OpenMP kernel.
Registered only when the extension imports.
"""
import math

import numpy as np

from .. import _poolgeom as geo
from .._config import get_num_threads
from .._constants import POOL_SERIAL_WORK
from . import register

try:
    from .. import _pool
except ImportError:  # pragma: no cover - depends on the build
    _pool = None


def _rows(a):
    """(P, ...) -> (P, rest) without -1 (an empty batch has no size to infer from)."""
    return a.reshape(a.shape[0], math.prod(a.shape[1:]))


def _c(a, dtype=None):
    return np.ascontiguousarray(a, dtype=dtype)


# below this many inner-loop steps a call runs on one thread (nnlite/_constants.py)
_SERIAL_WORK = POOL_SERIAL_WORK


def _threads(planes, work):
    """Threads for a kernel parallel over ``planes`` doing about ``work`` inner steps."""
    if work < _SERIAL_WORK:
        return 1
    return max(1, min(get_num_threads(), planes))


@register("max_pool2d_forward", "cython", when=_pool is not None)
def max_pool2d_forward(x, kernel, stride, padding, dilation, ceil_mode, indices=True):
    """(y, idx) of the planes x (P, H, W); idx is None when ``indices`` is false (a call that
    needs no gradient and no indices: the kernel then skips them, which is faster)."""
    x = _c(x)
    P, H, W = x.shape
    oh = geo.pool_output_size(H, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    ow = geo.pool_output_size(W, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    y = np.empty((1, P, oh, ow), dtype=x.dtype)
    idx = np.empty((1, P, oh, ow), dtype=np.int64) if indices else None
    _pool.max_pool2d_forward(x[None], y, idx, *kernel, *stride, *padding, *dilation,
                             _threads(P, y.size * kernel[0] * kernel[1]))
    return y[0], None if idx is None else idx[0]


def _scatter_by_index(gy, idx, in_hw):
    P = gy.shape[0]
    gy2 = _rows(_c(gy))  # (P, OH*OW)
    idx2 = _rows(_c(idx, np.int64))
    # the kernel clears each plane of gx in cache just before scattering into it (no
    # separate np.zeros pass over gx)
    gx = np.empty((P, in_hw[0] * in_hw[1]), dtype=gy.dtype)
    _pool.scatter_by_index(gy2, idx2, gx, _threads(P, gy2.size), True)
    return gx.reshape(P, in_hw[0], in_hw[1])


@register("max_pool2d_backward", "cython", when=_pool is not None)
def max_pool2d_backward(gy, idx, in_hw):
    return _scatter_by_index(gy, idx, in_hw)


def _avg_args(kernel, stride, padding, count_include_pad, divisor_override, out):
    return (*kernel, *stride, *padding, bool(count_include_pad),
            0 if divisor_override is None else int(divisor_override),
            _threads(out.shape[0], out.size * kernel[0] * kernel[1]))


@register("avg_pool2d_forward", "cython", when=_pool is not None)
def avg_pool2d_forward(x, kernel, stride, padding, ceil_mode, count_include_pad,
                       divisor_override):
    x = _c(x)
    P, H, W = x.shape
    oh = geo.pool_output_size(H, kernel[0], stride[0], padding[0], 1, ceil_mode)
    ow = geo.pool_output_size(W, kernel[1], stride[1], padding[1], 1, ceil_mode)
    y = np.empty((P, oh, ow), dtype=x.dtype)
    _pool.avg_pool2d_forward(x, y, *_avg_args(kernel, stride, padding, count_include_pad,
                                              divisor_override, y))
    return y


@register("avg_pool2d_backward", "cython", when=_pool is not None)
def avg_pool2d_backward(gy, in_hw, kernel, stride, padding, ceil_mode, count_include_pad,
                        divisor_override):
    gy = _c(gy)
    gx = np.zeros((gy.shape[0],) + tuple(in_hw), dtype=gy.dtype)
    args = _avg_args(kernel, stride, padding, count_include_pad, divisor_override, gy)
    scratch = np.empty((args[-1], gy.shape[2]), dtype=gy.dtype)  # a row per thread
    _pool.avg_pool2d_backward(gy, gx, scratch, *args)
    return gx


@register("adaptive_avg_pool2d_forward", "cython", when=_pool is not None)
def adaptive_avg_pool2d_forward(x, out_hw):
    x = _c(x)
    y = np.empty((x.shape[0],) + tuple(out_hw), dtype=x.dtype)
    _pool.adaptive_avg_pool2d_forward(x, y, _threads(x.shape[0], x.size + y.size))
    return y


@register("adaptive_avg_pool2d_backward", "cython", when=_pool is not None)
def adaptive_avg_pool2d_backward(gy, in_hw):
    gy = _c(gy)
    oh, ow = gy.shape[1], gy.shape[2]
    tiles = oh and ow and in_hw[0] % oh == 0 and in_hw[1] % ow == 0   # the kernel writes every gx
    gx = (np.empty if tiles else np.zeros)((gy.shape[0],) + tuple(in_hw), dtype=gy.dtype)
    _pool.adaptive_avg_pool2d_backward(gy, gx, _threads(gx.shape[0], gx.size + gy.size))
    return gx


@register("adaptive_max_pool2d_forward", "cython", when=_pool is not None)
def adaptive_max_pool2d_forward(x, out_hw):
    x = _c(x)
    y = np.empty((x.shape[0],) + tuple(out_hw), dtype=x.dtype)
    idx = np.empty(y.shape, dtype=np.int64)
    _pool.adaptive_max_pool2d_forward(x, y, idx, _threads(x.shape[0], x.size + y.size))
    return y, idx


@register("adaptive_max_pool2d_backward", "cython", when=_pool is not None)
def adaptive_max_pool2d_backward(gy, idx, in_hw):
    return _scatter_by_index(gy, idx, in_hw)


@register("max_unpool2d_forward", "cython", when=_pool is not None)
def max_unpool2d_forward(x, idx, out_hw):
    P = x.shape[0]
    y = np.zeros((P, out_hw[0] * out_hw[1]), dtype=x.dtype)
    _pool.max_unpool2d_forward(_rows(_c(x)), _rows(_c(idx, np.int64)), y,
                               _threads(P, x.size))
    return y.reshape((P,) + tuple(out_hw))


@register("max_unpool2d_backward", "cython", when=_pool is not None)
def max_unpool2d_backward(gy, idx):
    P = gy.shape[0]
    gx = np.empty((P, idx.shape[1] * idx.shape[2]), dtype=gy.dtype)
    _pool.max_unpool2d_backward(_rows(_c(gy)), _rows(_c(idx, np.int64)), gx,
                                _threads(P, gx.size))
    return gx.reshape(idx.shape)
