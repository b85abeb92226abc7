"""Cython conv kernels: im2col/col2im from ``nnlite._im2col`` (typed memoryviews, nogil, OpenMP
over the N*C image planes) and the three conv routines of ``_conv_gemm`` on top of them.

Registered only when the extension imports; otherwise the 'cython' backend falls back to NumPy.
"""
import numpy as np

from .._config import get_num_threads
from . import _conv_gemm, conv_numpy, register

try:
    from .. import _im2col
except ImportError:  # pragma: no cover - depends on the build
    _im2col = None


# Below this many column entries a call runs on one thread: starting an OpenMP team costs more
# than the copy, and on a loaded machine idle-spinning team threads slow everyone down.
_PARALLEL_MIN = 1 << 15


def _threads(size):
    return get_num_threads() if size >= _PARALLEL_MIN else 1


# Index arithmetic in the kernel is Py_ssize_t: geometries whose tap coordinates could leave
# +-2**40 (absurd strides/paddings that still give a small output) run the NumPy kernels, which
# slice with exact Python integers.
_INDEX_LIMIT = 1 << 40


def _args(geom):
    """Kernel integers; a stride (dilation) that never multiplies a nonzero index becomes 1."""
    sh = geom.sh if geom.oh > 1 else 1
    sw = geom.sw if geom.ow > 1 else 1
    dh = geom.dh if geom.kh > 1 else 1
    dw = geom.dw if geom.kw > 1 else 1
    args = (geom.kh, geom.kw, sh, sw, geom.pt, geom.pl, dh, dw, geom.oh, geom.ow)
    extent = max((geom.oh - 1) * sh + (geom.kh - 1) * dh + geom.pt + geom.h,
                 (geom.ow - 1) * sw + (geom.kw - 1) * dw + geom.pl + geom.w)
    return args if extent < _INDEX_LIMIT else None


def im2col(x, geom, out=None):
    """cols (N, C*KH*KW, OH*OW) of x (N, C, H, W); written into ``out`` when given."""
    args = _args(geom)
    if args is None:
        return conv_numpy.im2col(x, geom, out)
    x = np.ascontiguousarray(x)
    cols = np.empty(geom.col_shape(x.shape[0]), dtype=x.dtype) if out is None else out
    _im2col.im2col(x, cols, *args, num_threads=_threads(cols.size))
    return cols


def col2im(cols, geom, out=None):
    """x (N, C, H, W) += scatter-add of cols (N, C*KH*KW, OH*OW) (zeros when ``out`` is None)."""
    args = _args(geom)
    if args is None:
        return conv_numpy.col2im(cols, geom, out)
    cols = np.ascontiguousarray(cols)
    if out is None:
        out = np.zeros((cols.shape[0], geom.c, geom.h, geom.w), dtype=cols.dtype)
    _im2col.col2im(cols, out, *args, num_threads=_threads(cols.size))
    return out


def conv2d_forward(x, w, b, geom, general=False):
    return _conv_gemm.forward(x, w, b, geom, im2col, general)


def conv2d_backward_input(gy, w, geom, general=False):
    return _conv_gemm.backward_input(gy, w, geom, col2im, general)


def conv2d_backward_weight(gy, x, geom, general=False):
    return _conv_gemm.backward_weight(gy, x, geom, im2col, general)


if _im2col is not None:
    for _name, _fn in (("im2col", im2col), ("col2im", col2im),
                       ("conv2d_forward", conv2d_forward),
                       ("conv2d_backward_input", conv2d_backward_input),
                       ("conv2d_backward_weight", conv2d_backward_weight)):
        register(_name, "cython")(_fn)
