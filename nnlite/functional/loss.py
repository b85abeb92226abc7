"""Losses with PyTorch's semantics: nll_loss, cross_entropy (class indices or probabilities,
class weights, ignore_index, label smoothing) and mse_loss.

# N batch, C classes, d1.. extra ("spatial") target dims; the class axis of the input is 1
# (or 0 for an unbatched (C,) input with a 0-d target).
"""
import warnings

import numpy as np

from ..autograd import Function
from ..tensor import Tensor, as_tensor
from ._checks import float_tensor, index_array, reduction_string, same_dtype

__all__ = ["nll_loss", "cross_entropy", "mse_loss"]


class TargetOutOfBoundsError(IndexError, ValueError):
    """A class index outside [0, C) that is not ``ignore_index`` (IndexError as in PyTorch,
    and a ValueError as every nnlite bad-argument error)."""


class NLLLossFn(Function):
    """loss_i = -weight[t_i] * x[i, t_i] (0 where t_i == ignore_index); 'mean' divides the sum by
    the sum of the weights of the non-ignored targets (NaN when that is 0, as PyTorch).

    forward receives the input with its class axis moved last: (M..., C).
    """

    def forward(self, xl, target, weight, ignore_index, reduction):
        keep = target != ignore_index
        t = np.where(keep, target, 0).astype(np.intp)
        rows = np.arange(t.size)
        picked = xl.reshape(t.size, xl.shape[-1])[rows, t.reshape(-1)].reshape(t.shape)  # (M...)
        if weight is not None:
            wt = (weight[t] * keep).astype(xl.dtype, copy=False)
        else:
            wt = keep.astype(xl.dtype)
        self.rows = rows
        losses = -picked * wt
        self.t, self.wt, self.reduction, self.shape = t, wt, reduction, xl.shape
        if reduction == "none":
            return losses
        total = losses.sum(dtype=xl.dtype)
        if reduction == "sum":
            return np.asarray(total)
        self.total_weight = wt.sum(dtype=xl.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(total / self.total_weight)

    def backward(self, gy):
        g = -self.wt * gy                               # (M...,) broadcasting a scalar gy
        if self.reduction == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                g = g / self.total_weight
        gx = np.zeros(self.shape, dtype=gy.dtype)
        gx.reshape(self.rows.size, self.shape[-1])[self.rows, self.t.reshape(-1)] = \
            np.broadcast_to(np.asarray(g, gy.dtype), self.t.shape).reshape(-1)
        return gx


def _check_target(x, t, op):
    """PyTorch's shape rules between an input (N, C, d1..) / (C,) and its index target."""
    if x.ndim == 0:
        raise ValueError(f"{op}: expected an input with 1 or more dimensions (got 0)")
    if x.ndim == 1:
        if t.shape not in ((), (1,)):
            raise ValueError(f"{op}: for an unbatched input of shape {x.shape} the target must "
                             f"be 0-d (or have shape (1,)), got shape {t.shape}")
        return
    if t.ndim == 0 or t.shape[0] != x.shape[0]:
        tb = 0 if t.ndim == 0 else t.shape[0]
        raise ValueError(f"Expected input batch_size ({x.shape[0]}) to match target batch_size "
                         f"({tb}). ({op}: input shape {x.shape}, target shape {t.shape})")
    if t.shape[1:] != x.shape[2:]:
        raise ValueError(f"{op}: expected target size {[x.shape[0], *x.shape[2:]]}, got "
                         f"{list(t.shape)} (input shape {x.shape})")


def _class_weight(weight, c, x, op):
    if weight is None:
        return None
    w = float_tensor(weight, op, "weight")
    if w.shape != (c,):
        raise ValueError(f"{op}: weight tensor should be defined either for all {c} classes or "
                         f"no classes but got weight tensor of shape: {list(w.shape)}")
    same_dtype(op, input=x, weight=w)
    return w


def _nll(x, t, w, ignore_index, reduction, op):
    """Validated nll_loss on Tensor x, index array t, weight Tensor or None."""
    c = x.shape[0] if x.ndim == 1 else x.shape[1]
    bad = None
    if t.size and (t.min() < 0 or t.max() >= c):         # (two reductions when all are valid)
        bad = (t != ignore_index) & ((t < 0) | (t >= c))
    if bad is not None and bad.any():
        v = int(t[bad].flat[0])
        raise TargetOutOfBoundsError(f"Target {v} is out of bounds. ({op}: class indices must "
                                     f"be in [0, {c - 1}] or equal ignore_index={ignore_index})")
    if x.ndim == 1:
        xl, tt = x.reshape(1, c), t.reshape(1)
    elif x.ndim == 2:
        xl, tt = x, t                                    # (N, C): the class axis is last already
    else:
        axes = (0,) + tuple(range(2, x.ndim)) + (1,)
        xl, tt = x.permute(axes), t                      # (N, C, d..) -> (N, d.., C)
    out = NLLLossFn.apply(xl, target=tt, weight=None if w is None else w.data,
                          ignore_index=ignore_index, reduction=reduction)
    if reduction == "none" and x.ndim == 1:
        out = out.reshape(t.shape)
    return out


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """Negative log-likelihood of log-probabilities ``input`` at integer class ``target``.

    loss_i = -weight[t_i] * input[i, t_i] (0 for t_i == ignore_index); 'mean' = sum / sum of
    the used weights, 'sum', or 'none' (per element).

    Shape: input (N, C) / (N, C, d1, ...) / (C,); target (N,) / (N, d1, ...) / () with values
    in [0, C) or ignore_index; weight (C,); output () or, for 'none', the target's shape.
    """
    reduction = reduction_string(size_average, reduce, reduction)
    x = float_tensor(input, "nll_loss")
    t = index_array(target, "nll_loss")
    _check_target(x, t, "nll_loss")
    c = x.shape[0] if x.ndim == 1 else x.shape[1]
    w = _class_weight(weight, c, x, "nll_loss")
    return _nll(x, t, w, int(ignore_index), reduction, "nll_loss")


class _KeepFn(Function):
    """np.where(keep, x, 0) with a constant boolean mask (masked_fill of ignored positions)."""

    def forward(self, a, keep):
        self.keep = keep
        return np.where(keep, a, np.zeros((), a.dtype))

    def backward(self, gy):
        return np.where(self.keep, gy, np.zeros((), gy.dtype))


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0):
    """log_softmax over the class axis followed by nll_loss, with optional label smoothing.

    ``target`` holds integer class indices (see nll_loss) or, when it is floating with the
    input's shape, class probabilities (loss_i = -sum_c weight_c p_ic log_softmax(x)_ic; 'mean'
    divides by N * d1 * ...). label_smoothing = s mixes in the uniform distribution: indices ->
    (1 - s) * nll + s / C * sum_c(-weight_c log p_c) (normalised like nll for 'mean');
    probabilities -> p * (1 - s) + s / C.

    Shape: input (N, C) / (N, C, d1, ...) / (C,); target as nll_loss, or the input's shape for
    probabilities; output () or, for 'none', the per-element losses.
    """
    from .basic import log_softmax

    reduction = reduction_string(size_average, reduce, reduction)
    ls = float(label_smoothing)
    if not 0.0 <= ls <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    x = float_tensor(input, "cross_entropy")
    if x.ndim == 0:
        raise ValueError("cross_entropy: expected an input with 1 or more dimensions (got 0)")
    cdim = 0 if x.ndim == 1 else 1
    c = x.shape[cdim]
    w = _class_weight(weight, c, x, "cross_entropy")
    wshape = (c,) + (1,) * (x.ndim - cdim - 1)           # weight broadcast along the class axis
    tdata = target.data if isinstance(target, Tensor) else np.asarray(target)
    if tdata.dtype.kind == "f":
        if tdata.shape != x.shape:
            raise TypeError(f"cross_entropy: a floating target holds class probabilities and "
                            f"must have the input's shape {x.shape}, got {tdata.shape}; class "
                            f"indices must be integers")
        if ignore_index != -100:
            raise ValueError("cross_entropy: ignore_index is not supported for floating point "
                             "target")
        return _cross_entropy_probs(x, as_tensor(target), w, wshape, cdim, reduction, ls,
                                    log_softmax)
    t = index_array(target, "cross_entropy")
    _check_target(x, t, "cross_entropy")
    logp = log_softmax(x, cdim)
    nll = _nll(logp, t, w, int(ignore_index), reduction, "cross_entropy")
    if ls == 0.0:
        return nll
    # label smoothing term, PyTorch's cross_entropy_label_smoothing
    weighted = logp * w.reshape(wshape) if w is not None else logp
    keep = t != ignore_index
    smooth = _KeepFn.apply(-weighted.sum(cdim), keep=keep.reshape(weighted.shape[:cdim]
                                                                    + weighted.shape[cdim + 1:]))
    if reduction == "mean":
        if w is not None:
            denom = w.data[t[keep]].sum(dtype=x.dtype)
        else:
            denom = np.asarray(keep.sum(), dtype=x.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            ret = smooth.sum() / Tensor(np.asarray(denom, x.dtype))
    elif reduction == "sum":
        ret = smooth.sum()
    else:
        ret = smooth
    return nll * (1 - ls) + ret * (ls / c)


def _cross_entropy_probs(x, p, w, wshape, cdim, reduction, ls, log_softmax):
    same_dtype("cross_entropy", input=x, target=p)
    c = x.shape[cdim]
    if ls > 0:
        p = p * (1 - ls) + ls / c
    prod = log_softmax(x, cdim) * p
    if w is not None:
        prod = prod * w.reshape(wshape)
    loss = -prod.sum(cdim)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if x.data.size == 0:
        return loss.sum() * np.nan
    return loss.sum() / (x.data.size // c)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """(input - target)^2 reduced by 'mean', 'sum' or 'none'; differentiable in both.

    With ``weight`` (input's shape): weight * (input - target)^2, 'mean' = sum / sum(weight).
    A target whose shape differs from the input's broadcasts, with PyTorch's warning.

    Shape: input (*), target broadcastable to it; output () or, for 'none', the broadcast shape.
    """
    x = float_tensor(input, "mse_loss")
    y = float_tensor(target, "mse_loss", "target")
    same_dtype("mse_loss", input=x, target=y)
    if y.shape != x.shape:
        warnings.warn(f"Using a target size {y.shape} that is different to the input size "
                      f"{x.shape}. This will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", stacklevel=2)
    reduction = reduction_string(size_average, reduce, reduction)
    try:
        np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise ValueError(f"mse_loss: input shape {x.shape} and target shape {y.shape} cannot "
                         "be broadcast together") from None
    d = x - y
    sq = d * d
    if weight is not None:
        wt = float_tensor(weight, "mse_loss", "weight")
        if wt.shape != x.shape:
            raise ValueError(f"Weights and input must have the same size. (mse_loss: weight "
                             f"shape {wt.shape}, input shape {x.shape})")
        same_dtype("mse_loss", input=x, weight=wt)
        sq = sq * wt
        if reduction == "mean":
            return sq.sum() / wt.sum()
    if reduction == "none":
        return sq
    if reduction == "sum":
        return sq.sum()
    return sq.mean()
