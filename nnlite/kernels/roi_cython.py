"""Cython roi_pool / roi_align (``nnlite._roi``): wrappers enforcing the memory contract.

x (N, C, H, W) and rois (K, 5) are made C-contiguous in x's dtype; outputs are allocated here
(gradients zero-filled). Registered only when the extension imports.
"""
import numpy as np

from .._config import get_num_threads
from .._constants import POOL_SERIAL_WORK
from . import register

try:
    from .. import _roi
except ImportError:  # pragma: no cover - depends on the build
    _roi = None


def _c(a, dtype=None):
    return np.ascontiguousarray(a, dtype=dtype)


# below this many inner-loop steps a call runs on one thread (nnlite/_constants.py)
_SERIAL_WORK = POOL_SERIAL_WORK


def _threads(items, work):
    """One thread for small calls (waking OpenMP threads costs more than it saves)."""
    if work < _SERIAL_WORK:
        return 1
    return max(1, min(get_num_threads(), items))


@register("roi_pool_forward", "cython", when=_roi is not None)
def roi_pool_forward(x, rois, out_hw, spatial_scale):
    x = _c(x)
    K, C = rois.shape[0], x.shape[1]
    y = np.empty((K, C) + tuple(out_hw), dtype=x.dtype)
    arg = np.empty(y.shape, dtype=np.int64)
    # work: the bins' areas are unknown here; the output size is a fair proxy
    _roi.roi_pool_forward(x, _c(rois, x.dtype), float(spatial_scale), y, arg,
                          _threads(K * C, y.size * 16))
    return y, arg


@register("roi_pool_backward", "cython", when=_roi is not None)
def roi_pool_backward(gy, rois, argmax, in_shape):
    gy = _c(gy)
    gx = np.zeros(in_shape, dtype=gy.dtype)
    _roi.roi_pool_backward(gy, _c(rois, gy.dtype), _c(argmax, np.int64), gx,
                          _threads(gx.shape[1], gy.size))
    return gx


def _align_tables(rois, dtype, out_hw, spatial_scale, sampling_ratio, aligned):
    """Per-box sample tables for the kernel: offsets (K+1,), taps and weights (2*S,)."""
    grids = np.empty((rois.shape[0], 2), dtype=np.intp)
    _roi.roi_align_grids(rois, float(spatial_scale), out_hw[0], out_hw[1], int(sampling_ratio),
                         bool(aligned), grids)
    g = np.maximum(grids, 0)
    sizes = out_hw[0] * g[:, 0] + out_hw[1] * g[:, 1]  # samples per box (rows + columns)
    offsets = np.zeros(rois.shape[0] + 1, dtype=np.intp)
    np.cumsum(sizes, out=offsets[1:])
    n = 2 * int(offsets[-1])
    return offsets, np.empty(n, dtype=np.intp), np.empty(n, dtype=dtype)


@register("roi_align_forward", "cython", when=_roi is not None)
def roi_align_forward(x, rois, out_hw, spatial_scale, sampling_ratio, aligned):
    x = _c(x)
    rois = _c(rois, x.dtype)
    y = np.empty((rois.shape[0], x.shape[1]) + tuple(out_hw), dtype=x.dtype)
    tables = _align_tables(rois, x.dtype, out_hw, spatial_scale, sampling_ratio, aligned)
    _roi.roi_align_forward(x, rois, float(spatial_scale), int(sampling_ratio), bool(aligned),
                           *tables, y, _threads(y.shape[0] * y.shape[1], y.size * 16))
    return y


@register("roi_align_backward", "cython", when=_roi is not None)
def roi_align_backward(gy, rois, in_shape, spatial_scale, sampling_ratio, aligned):
    gy = _c(gy)
    rois = _c(rois, gy.dtype)
    gx = np.zeros(in_shape, dtype=gy.dtype)
    tables = _align_tables(rois, gy.dtype, gy.shape[2:], spatial_scale, sampling_ratio, aligned)
    _roi.roi_align_backward(gy, rois, float(spatial_scale), int(sampling_ratio), bool(aligned),
                            *tables, gx, _threads(gx.shape[1], gy.size * 16))
    return gx
