"""Argument checks shared by the activation, normalisation, loss and 1-D conv/pool functionals."""
import numbers
import warnings

import numpy as np

from ..tensor import Tensor, as_tensor


def float_tensor(x, op, name="input"):
    """``x`` as a Tensor with a floating dtype, else TypeError naming ``op`` and the dtype."""
    t = as_tensor(x)
    if t.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating tensor (float32 or float64), "
                        f"got dtype {t.dtype}")
    return t


def same_dtype(op, **named):
    """TypeError unless every given (non-None) tensor has the dtype of the first one."""
    items = [(k, v) for k, v in named.items() if v is not None]
    if not items:
        return
    ref_name, ref = items[0]
    for k, v in items[1:]:
        if v.dtype != ref.dtype:
            raise TypeError(f"{op}: {ref_name} has dtype {ref.dtype} but {k} has dtype "
                            f"{v.dtype}; all floating inputs must share one dtype")


def norm_dim(dim, ndim, op):
    """Normalise a single dim in [-n, n-1] (n = max(ndim, 1), as PyTorch for 0-d tensors)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise ValueError(f"{op}: dim {dim} is out of range for a tensor of {ndim} dims "
                         f"(expected to be in range of [{-n}, {n - 1}])")
    return int(dim) % n


def reduction_string(size_average, reduce, reduction, stacklevel=3):
    """PyTorch's reduction rule, including the deprecated ``size_average``/``reduce`` flags."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "mean" if (size_average and reduce) else ("sum" if reduce else "none")
        warnings.warn("size_average and reduce args will be deprecated, please use "
                      f"reduction='{reduction}' instead.", stacklevel=stacklevel)
        return reduction
    if reduction == "elementwise_mean":
        warnings.warn("reduction='elementwise_mean' is deprecated. "
                      "Please use reduction='mean' instead.", stacklevel=stacklevel)
        return "mean"
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction "
                         "(expected 'none', 'mean' or 'sum')")
    return reduction


def index_array(target, op):
    """Integer class indices as an ndarray (from a Tensor, ndarray, list or int)."""
    arr = target.data if isinstance(target, Tensor) else np.asarray(target)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{op}: expected target to hold integer class indices, got dtype "
                        f"{arr.dtype} with shape {arr.shape}")
    return arr


def single(value, name, op):
    """int or 1-sequence of ints -> int (PyTorch's ``_single`` for 1-D ops), else TypeError."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{op}: {name} must be an int or a tuple of one int, got {value!r}")
        value = value[0]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int or a tuple of one int, got {value!r}")
    return int(value)
