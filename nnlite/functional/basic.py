"""Activations, softmax, linear and dropout with PyTorch's semantics; re-exports batch_norm and
the losses (``normalization.py``, ``loss.py``) so that ``F`` sees them all.

relu, sigmoid and tanh are the Functions of ``nnlite._ops`` (shared with the Tensor methods);
hardtanh/relu6 have their own Function because PyTorch passes no gradient at their boundaries
(unlike ``clamp``, whose gradient is 1 at ``x == min`` and ``x == max``).
"""
import warnings

import numpy as np

from .. import _ops
from .._random import get_rng
from ..autograd import Function, unbroadcast
from ..kernels import rowops
from ._checks import float_tensor, norm_dim, same_dtype
from ..tensor import as_tensor
from .loss import cross_entropy, mse_loss, nll_loss
from .normalization import batch_norm

__all__ = ["relu", "relu6", "hardtanh", "sigmoid", "tanh", "softmax", "log_softmax", "linear",
           "dropout", "batch_norm", "cross_entropy", "nll_loss", "mse_loss"]


# ------------------------------------------------------------------------------ activations
def relu(input, inplace=False):
    """max(x, 0), elementwise; the gradient is 0 at x == 0 (as PyTorch). ``inplace`` is
    accepted for API compatibility and ignored (nnlite never overwrites its inputs).

    Shape: any; output has the input's shape and dtype.
    """
    return _ops.ReLU.apply(as_tensor(input))


class HardtanhFn(Function):
    """clip(x, lo, hi); gradient 1 strictly inside (lo, hi), 0 at and beyond the boundaries."""

    def forward(self, a, min_val, max_val):
        if self.requires_grad:
            self.save_for_backward((a > min_val) & (a < max_val))
        return np.clip(a, np.asarray(min_val, a.dtype), np.asarray(max_val, a.dtype))

    def backward(self, gy):
        return gy * self.saved_tensors[0]


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """clip(x, min_val, max_val), gradient 0 at the boundaries (as PyTorch).

    Shape: any; output has the input's shape and dtype.
    """
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val cannot be greater than max_val "
                         f"(got min_val={min_val}, max_val={max_val})")
    return HardtanhFn.apply(as_tensor(input), min_val=min_val, max_val=max_val)


def relu6(input, inplace=False):
    """min(max(x, 0), 6) = hardtanh(x, 0, 6): gradient 0 at x == 0 and x == 6 (as PyTorch).

    Shape: any; output has the input's shape and dtype.
    """
    return hardtanh(input, 0.0, 6.0)


def sigmoid(input):
    """1 / (1 + exp(-x)), evaluated without overflow on both tails.

    Shape: any; output has the input's shape and dtype.
    """
    return _ops.Sigmoid.apply(float_tensor(input, "sigmoid"))


def tanh(input):
    """tanh(x). Shape: any; output has the input's shape and dtype."""
    return _ops.Tanh.apply(float_tensor(input, "tanh"))


# ------------------------------------------------------------------------------ softmax
def _softmax_dim(name, dim, ndim, stacklevel):
    if dim is None:
        warnings.warn(f"Implicit dimension choice for {name} has been deprecated. "
                      "Change the call to include dim=X as an argument.", stacklevel=stacklevel)
        return 0 if ndim in (0, 1, 3) else 1
    return norm_dim(dim, ndim, name)


class SoftmaxFn(Function):
    """exp(x - max) / sum(exp(x - max)) along ``dim``; gx = y * (gy - sum(gy * y)). Along
    the last axis: nnlite/kernels/rowops.py (float32 natively)."""

    def forward(self, a, dim, dtype=None):
        if dtype is not None:
            a = a.astype(dtype, copy=False)
        if a.ndim == 0:
            a = a.reshape(1)
            dim = 0
            self.scalar = True
        else:
            self.scalar = False
        self.dim = dim
        if a.size == 0:
            y = a.copy()
        elif dim == a.ndim - 1:
            y = rowops.softmax_lastaxis(a)
        else:
            e = np.exp(a - a.max(axis=dim, keepdims=True))
            y = e / e.sum(axis=dim, keepdims=True)
        if self.requires_grad:
            self.save_for_backward(y)
        return y.reshape(()) if self.scalar else y

    def backward(self, gy):
        (y,) = self.saved_tensors
        gy = gy.reshape(y.shape)
        gx = y * (gy - (gy * y).sum(axis=self.dim, keepdims=True))
        return gx.reshape(()) if self.scalar else gx


class LogSoftmaxFn(Function):
    """x - max - log(sum(exp(x - max))) along ``dim``; gx = gy - exp(y) * sum(gy). Along the
    last axis: nnlite/kernels/rowops.py (float32 natively)."""

    def forward(self, a, dim, dtype=None):
        if dtype is not None:
            a = a.astype(dtype, copy=False)
        self.scalar = a.ndim == 0
        if self.scalar:
            a = a.reshape(1)
            dim = 0
        self.dim = dim
        if a.size == 0:
            y = a.copy()
        elif dim == a.ndim - 1:
            y = rowops.log_softmax_lastaxis(a)
        else:
            shifted = a - a.max(axis=dim, keepdims=True)
            y = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
        if self.requires_grad:
            self.save_for_backward(y)
        return y.reshape(()) if self.scalar else y

    def backward(self, gy):
        (y,) = self.saved_tensors
        gy = gy.reshape(y.shape)
        gx = gy - np.exp(y) * gy.sum(axis=self.dim, keepdims=True)
        return gx.reshape(()) if self.scalar else gx


def _softmax_common(fn, name, input, dim, stacklevel, dtype):
    x = float_tensor(input, name)
    d = _softmax_dim(name, dim, x.ndim, stacklevel + 1)
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}: dtype must be float32 or float64, got {dtype}")
    return fn.apply(x, dim=d, dtype=dtype)


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """softmax along ``dim``: exp(x_i) / sum_j exp(x_j), computed as exp(x - max) (stable).

    ``dim=None`` picks PyTorch's legacy dim (0 for 0-, 1- and 3-d inputs, else 1) with a warning.
    ``dtype`` casts the input first (differentiably).

    Shape: any; output has the input's shape.
    """
    return _softmax_common(SoftmaxFn, "softmax", input, dim, _stacklevel, dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """log(softmax(x)) along ``dim``, as x - max - log(sum(exp(x - max))) (no overflow, no
    log(0) for very negative logits).

    Shape: any; output has the input's shape.
    """
    return _softmax_common(LogSoftmaxFn, "log_softmax", input, dim, _stacklevel, dtype)


# ------------------------------------------------------------------------------ linear
class LinearFn(Function):
    """y = x @ W.T + b over the last axis of x.

    # M = prod(leading dims of x), I in-features, O out-features
    """

    def forward(self, x, w, b=None):
        self.x_shape = x.shape
        self.m = int(np.prod(x.shape[:-1], dtype=np.int64))
        x2 = x.reshape(self.m, x.shape[-1])             # (..., I) -> (M, I)
        if w.ndim == 2:
            y = x2 @ w.T                                 # (M, I) @ (I, O) -> (M, O)
        else:
            y = x2 @ w                                   # (M, I) @ (I,) -> (M,)
        y = y.reshape(x.shape[:-1] + w.shape[:-1])       # -> (..., O) or (...)
        if b is not None:
            y = y + b
            self.b_shape = b.shape
        if self.requires_grad:
            self.save_for_backward(x2 if self.needs_input_grad[1] else None,
                                   w if self.needs_input_grad[0] else None)
        self.w_shape = w.shape
        return y

    def backward(self, gy):
        x2, w = self.saved_tensors
        need = self.needs_input_grad
        gx = gw = gb = None
        g2 = gy.reshape((self.m,) + self.w_shape[:-1])   # (..., O) -> (M, O) | (...) -> (M,)
        if need[0]:
            if len(self.w_shape) == 2:
                gx = g2 @ w                              # (M, O) @ (O, I) -> (M, I)
            else:
                gx = np.multiply.outer(g2, w)            # (M,) x (I,) -> (M, I)
            gx = gx.reshape(self.x_shape)
        if need[1]:
            gw = g2.T @ x2                               # (O, M) @ (M, I) -> (O, I); 1-d: (I,)
        if len(need) == 3 and need[2]:
            gb = unbroadcast(gy, self.b_shape)
        return (gx, gw) if len(need) == 2 else (gx, gw, gb)


def linear(input, weight, bias=None):
    """y = input @ weight.T + bias.

    Shape: input (*, in_features); weight (out_features, in_features) or (in_features,);
    bias broadcastable to the output; output (*, out_features) (or (*) for a 1-d weight).
    """
    x = float_tensor(input, "linear")
    w = float_tensor(weight, "linear", "weight")
    b = None if bias is None else float_tensor(bias, "linear", "bias")
    same_dtype("linear", input=x, weight=w, bias=b)
    if x.ndim == 0:
        raise ValueError("linear: input must have at least 1 dimension, got a 0-d tensor")
    if w.ndim not in (1, 2):
        raise ValueError(f"linear: weight must be 1-d or 2-d, got shape {w.shape}")
    if x.shape[-1] != w.shape[-1]:
        rows = int(np.prod(x.shape[:-1], dtype=np.int64))
        wt = (w.shape[1], w.shape[0]) if w.ndim == 2 else (w.shape[0], 1)
        raise ValueError(f"linear: mat1 and mat2 shapes cannot be multiplied ({rows}x{x.shape[-1]} "
                         f"and {wt[0]}x{wt[1]}): input {x.shape} has {x.shape[-1]} features, "
                         f"weight {w.shape} expects {w.shape[-1]}")
    if b is not None:
        out_shape = x.shape[:-1] + w.shape[:-1]
        try:
            ok = np.broadcast_shapes(out_shape, b.shape) == out_shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"linear: bias of shape {b.shape} does not broadcast to the "
                             f"output shape {out_shape}")
        return LinearFn.apply(x, w, b)
    return LinearFn.apply(x, w)


# ------------------------------------------------------------------------------ dropout
class DropoutFn(Function):
    """y = x * mask / (1 - p), mask ~ Bernoulli(1 - p) from nnlite's generator."""

    def forward(self, a, p):
        keep = get_rng().random(a.shape) >= p
        if p >= 1:
            mask = np.zeros(a.shape, dtype=a.dtype)
        else:
            mask = keep.astype(a.dtype) * np.asarray(1.0 / (1.0 - p), dtype=a.dtype)
        if self.requires_grad:
            self.save_for_backward(mask)
        return a * mask

    def backward(self, gy):
        return gy * self.saved_tensors[0]


def dropout(input, p=0.5, training=True, inplace=False):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the
    rest by 1/(1-p); identity when ``training`` is False or p == 0. The mask is drawn from
    ``nnlite._random.get_rng()`` (reproducible with ``nnlite.manual_seed``). ``inplace`` is
    accepted and ignored.

    Shape: any; output has the input's shape and dtype.
    """
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)):
        raise TypeError(f"dropout: p must be a number, got {p!r}")
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    x = float_tensor(input, "dropout")
    if not training or p == 0:
        return x
    return DropoutFn.apply(x, p=float(p))
