"""F.batch_norm: one Function with an analytic backward for both modes (docs/semantics.md §9.2).

# N batch, C channels, "spatial" = every axis after 1 (none for (N, C), L for (N, C, L),
# H, W for (N, C, H, W)); statistics are per channel over axis 0 and the spatial axes.
"""
import numpy as np

from .._config import backend as _active_backend
from .._config import get_num_threads
from ..autograd import Function
from ._checks import float_tensor, same_dtype

try:
    from .. import _train          # native one-pass kernels (csrc/train.pyx, train_bn.c)
except ImportError:  # pragma: no cover - depends on the build
    _train = None

__all__ = ["batch_norm"]


# Below this many elements a BatchNorm kernel runs on one thread (an OpenMP team wake-up costs
# about as much as a pass over 2**15 floats).
_PARALLEL_MIN = 1 << 15


def _native(x):
    """True when the training path can run the native kernels (float32/64, nonempty)."""
    return (_train is not None and x.dtype in (np.float32, np.float64) and x.size > 0
            and _active_backend() == "cython")


def _as3(a, n, c):
    """(N, C, *spatial) -> a C-contiguous (N, C, S) view (a copy only when not contiguous)."""
    return np.ascontiguousarray(a).reshape(n, c, -1)


def _axes_and_shape(x):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)     # per-channel (C,) -> broadcastable
    return axes, shape


class BatchNormFn(Function):
    """Train: y = (x - mean_b) / sqrt(var_b + eps) * w + b with the batch's biased variance;
    auxiliary outputs are the batch mean and the UNBIASED variance (for the running stats).
    Eval: the same with the given running mean/var (not differentiable w.r.t. them, as PyTorch).

    Inputs: x, then weight if ``has_weight``, then bias if ``has_bias``.
    """

    def forward(self, x, *wb, has_weight, has_bias, training, eps, running_mean=None,
                running_var=None):
        w = wb[0] if has_weight else None
        b = wb[-1] if has_bias else None
        self.has_weight, self.has_bias, self.training = has_weight, has_bias, training
        axes, shape = _axes_and_shape(x)
        self.axes, self.shape = axes, shape
        n = x.size // x.shape[1] if x.shape[1] else 0
        self.n = n
        self.native = training and _native(x)
        if self.native:
            # one pass for the statistics (double accumulation), one for y; saves x (the
            # input, already alive) instead of a normalised copy
            nb, c = x.shape[0], x.shape[1]
            x3 = _as3(x, nb, c)
            y = np.empty(x.shape, dtype=x.dtype)
            w1 = np.ascontiguousarray(w) if w is not None else np.ones(c, x.dtype)
            b1 = np.ascontiguousarray(b) if b is not None else np.zeros(c, x.dtype)
            mean64, m2, inv64 = np.empty(c), np.empty(c), np.empty(c)
            _train.bn_train_forward(x3, y.reshape(nb, c, -1), w1, b1, float(eps), mean64, m2,
                                    inv64, num_threads=self._threads(x.size))
            if self.requires_grad:
                self.save_for_backward(x3, (mean64, inv64), w1)
            var_unbiased = m2 / (n - 1) if n > 1 else m2 / n
            return y, mean64.astype(x.dtype), var_unbiased.astype(x.dtype)
        if training:
            if n == 0:
                mean = np.full(x.shape[1], np.nan, dtype=x.dtype)
                var = var_unbiased = mean
                xhat = x.copy()
            else:
                mean = x.mean(axis=axes)
                xhat = x - mean.reshape(shape)
                var_sum = np.sum(xhat * xhat, axis=axes)  # two-pass, as PyTorch's CPU kernel
                var = var_sum / n                         # biased: normalises the batch
                var_unbiased = var_sum / (n - 1) if n > 1 else var
            invstd = 1.0 / np.sqrt(var + np.asarray(eps, x.dtype))
            xhat *= invstd.reshape(shape)
            y = xhat * w.reshape(shape) if w is not None else xhat.copy()
            if b is not None:
                y += b.reshape(shape)
        else:
            # eval: one fused affine per channel, y = x * scale + shift
            invstd = 1.0 / np.sqrt(running_var + np.asarray(eps, x.dtype))
            scale = invstd if w is None else invstd * w
            shift = -running_mean * scale
            if b is not None:
                shift = shift + b
            y = x * scale.reshape(shape) + shift.reshape(shape)
            xhat = None
            if self.requires_grad and has_weight and self.needs_input_grad[1]:
                xhat = (x - running_mean.reshape(shape)) * invstd.reshape(shape)
        if self.requires_grad:
            self.save_for_backward(xhat, invstd, w)
        if training:
            return y, mean, var_unbiased
        return y

    @staticmethod
    def _threads(size):
        return get_num_threads() if size >= _PARALLEL_MIN else 1

    def _backward_native(self, gy):
        x3, (mean64, inv64), w1 = self.saved_tensors
        need = self.needs_input_grad
        nb, c = x3.shape[0], x3.shape[1]
        gx = np.empty(gy.shape, dtype=gy.dtype) if need[0] else None
        sgy, sgxm = np.empty(c), np.empty(c)
        _train.bn_backward(_as3(gy, nb, c), x3, None if gx is None else gx.reshape(nb, c, -1),
                           mean64, inv64, w1, True, sgy, sgxm,
                           num_threads=self._threads(x3.size))
        out = (gx,)
        if self.has_weight:
            out += ((sgxm * inv64).astype(gy.dtype) if need[1] else None,)
        if self.has_bias:
            out += (sgy.astype(gy.dtype) if need[-1] else None,)
        return out

    def backward(self, gy):
        if self.native:
            return self._backward_native(gy)
        xhat, invstd, w = self.saved_tensors
        axes, shape, need = self.axes, self.shape, self.needs_input_grad
        gx = gw = gb = None
        if self.has_bias and need[-1]:
            gb = gy.sum(axis=axes)
        if self.has_weight and need[1]:
            gw = (gy * xhat).sum(axis=axes)
        if need[0]:
            g = gy * w.reshape(shape) if w is not None else gy
            if self.training:
                # d/dx of (x - mean) * invstd, mean and var depending on x:
                # gx = invstd * (g - mean(g) - xhat * mean(g * xhat))
                if self.n == 0:
                    gx = np.zeros_like(gy)
                else:
                    gmean = g.mean(axis=axes).reshape(shape)
                    gdot = (g * xhat).mean(axis=axes).reshape(shape)
                    gx = (g - gmean - xhat * gdot) * invstd.reshape(shape)
            else:
                gx = g * invstd.reshape(shape)
        out = (gx,)
        if self.has_weight:
            out += (gw,)
        if self.has_bias:
            out += (gb,)
        return out


def _verify_batch_size(shape):
    size_prods = shape[0]
    for s in shape[2:]:
        size_prods *= s
    if size_prods == 1:
        raise ValueError("Expected more than 1 value per channel when training, got input size "
                         f"torch.Size({list(shape)})")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation over (N, *spatial) per channel (axis 1).

    training=True: normalise with the batch mean and biased variance; when given, update the
    running stats in place: r = momentum * batch_stat + (1 - momentum) * r, using the
    UNBIASED batch variance for ``running_var``. An empty batch leaves them unchanged.
    training=False: normalise with ``running_mean``/``running_var`` (both required).
    Differentiable w.r.t. input, weight and bias; the running stats must not require grad.

    Shape: input (N, C) or (N, C, *); running_mean, running_var, weight, bias (C,);
    output as input.
    """
    x = float_tensor(input, "batch_norm")
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected an input of shape (N, C, ...) with at least "
                         f"2 dims, got shape {x.shape}")
    c = x.shape[1]
    named = {}
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is None:
            named[name] = None
            continue
        t = float_tensor(t, "batch_norm", name)
        if t.ndim != 1 or t.shape[0] != c:
            raise ValueError(f"batch_norm: {name} should contain {c} elements not {t.data.size} "
                             f"(shape {t.shape}; input shape {x.shape})")
        named[name] = t
    rm, rv = named["running_mean"], named["running_var"]
    w, b = named["weight"], named["bias"]
    same_dtype("batch_norm", input=x, **{k: v for k, v in named.items()})
    for name, t in (("running_mean", rm), ("running_var", rv)):
        if t is not None and t.requires_grad:
            raise ValueError(f"batch_norm is not differentiable with respect to {name}; "
                             "it cannot have requires_grad=True")
    wb = tuple(t for t in (w, b) if t is not None)
    flags = dict(has_weight=w is not None, has_bias=b is not None, eps=float(eps))
    if not training:
        if rm is None or rv is None:
            missing = "running_mean" if rm is None else "running_var"
            raise ValueError(f"batch_norm: {missing} must be defined in evaluation mode")
        return BatchNormFn.apply(x, *wb, training=False, running_mean=rm.data,
                                 running_var=rv.data, **flags)
    _verify_batch_size(x.shape)
    y, mean, var_unbiased = BatchNormFn.apply(x, *wb, training=True, **flags)
    if x.data.size:
        m = float(momentum)
        dtype = x.dtype
        if rm is not None:
            rm.data[...] = np.asarray(m, dtype) * mean.data + np.asarray(1 - m, dtype) * rm.data
        if rv is not None:
            rv.data[...] = (np.asarray(m, dtype) * var_unbiased.data
                            + np.asarray(1 - m, dtype) * rv.data)
    return y
