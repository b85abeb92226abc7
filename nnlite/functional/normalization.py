"""Normalisation functionals with PyTorch's semantics.

F.batch_norm: one Function with an analytic backward for both modes (docs/semantics.md §9.2);
training mode runs native kernels under the 'cython' backend (csrc/train.pyx).
F.layer_norm, F.group_norm, F.instance_norm: one Function (``GroupStandardizeFn``) that
standardises equal contiguous groups of the input and applies a broadcast affine; instance_norm
in eval mode (running statistics) is batch_norm's eval path.
F.local_response_norm (``LocalResponseNormFn``) and F.normalize (``VectorNormFn`` composed with
clamp and division, as PyTorch composes it).

# N batch, C channels, "spatial" = every axis after 1 (none for (N, C), L for (N, C, L),
# H, W for (N, C, H, W)); batch_norm statistics are per channel over axis 0 and the spatial
# axes.
"""
import numbers

import numpy as np

from .._config import backend as _active_backend
from .._config import get_num_threads
from ..autograd import Function, unbroadcast
from ..kernels import rowops
from ..tensor import Tensor
from ._checks import float_tensor, norm_dim, same_dtype

try:
    from .. import _train          # native BatchNorm kernels (csrc/train.pyx, train_bn.c)
except ImportError:  # pragma: no cover - depends on the build
    _train = None

__all__ = ["batch_norm", "layer_norm", "group_norm", "instance_norm", "local_response_norm",
           "normalize"]


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

    ``relu``: a ReLU fused after the normalisation, y = relu(bn(x)) (nnlite.nn.Sequential's
    BatchNorm -> ReLU pairs): the native path writes it in the same pass and its backward
    masks gy by the saved output inside the BatchNorm backward kernels (one pass and one
    full-size temporary fewer each way); elsewhere np.maximum, and the mask before backward.
    """

    def forward(self, x, *wb, has_weight, has_bias, training, eps, running_mean=None,
                running_var=None, relu=False, momentum=0.0, stats=True):
        # training: running_mean / running_var (arrays or None) are updated in place with
        # ``momentum`` (update_running_stats' rule; the native kernel does it in its own call);
        # ``stats`` false returns y alone instead of (y, mean, unbiased var)
        w = wb[0] if has_weight else None
        b = wb[-1] if has_bias else None
        self.has_weight, self.has_bias, self.training = has_weight, has_bias, training
        self.relu = relu
        axes, shape = _axes_and_shape(x)
        self.axes, self.shape = axes, shape
        n = x.size // x.shape[1] if x.shape[1] else 0
        self.n = n
        self.native = training and _native(x)
        relu_done = False
        if self.native:
            # two passes for the statistics (mean, then squared deviations; double
            # accumulation), one for y; saves x (the input, already alive) instead of a
            # normalised copy
            nb, c = x.shape[0], x.shape[1]
            x3 = _as3(x, nb, c)
            y = np.empty(x.shape, dtype=x.dtype)
            w1 = np.ascontiguousarray(w) if w is not None else np.ones(c, x.dtype)
            b1 = np.ascontiguousarray(b) if b is not None else np.zeros(c, x.dtype)
            mean64, m2, inv64 = np.empty(c), np.empty(c), np.empty(c)
            rm = _kernel_buffer(running_mean, x.dtype)
            rv = _kernel_buffer(running_var, x.dtype)
            _train.bn_train_forward(x3, y.reshape(nb, c, -1), w1, b1, float(eps), mean64, m2,
                                    inv64, num_threads=self._threads(x.size), relu=relu,
                                    running_mean=rm, running_var=rv, momentum=momentum)
            if self.requires_grad:
                self.save_for_backward(x3, (mean64, inv64), w1)
                self.relu_out = y.reshape(nb, c, -1) if relu else None
            # running buffers the kernel could not take (strided or read-only): NumPy's update
            rest_m = running_mean if rm is None else None
            rest_v = running_var if rv is None else None
            if not stats and rest_m is None and rest_v is None:
                return y
            var_unbiased = m2 / (n - 1) if n > 1 else m2 / n
            mean, var_unbiased = mean64.astype(x.dtype), var_unbiased.astype(x.dtype)
            _update_running(rest_m, rest_v, mean, var_unbiased, momentum)
            return (y, mean, var_unbiased) if stats else y
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
            # eval: one fused affine per channel, y = x * scale + shift (natively: one pass,
            # the ReLU fused into it)
            invstd = 1.0 / np.sqrt(running_var + np.asarray(eps, x.dtype))
            scale = invstd if w is None else invstd * w
            shift = -running_mean * scale
            if b is not None:
                shift = shift + b
            if _native(x) and x.dtype == scale.dtype == shift.dtype:
                nb, c = x.shape[0], x.shape[1]
                y = np.empty(x.shape, dtype=x.dtype)
                _train.bn_affine(_as3(x, nb, c), y.reshape(nb, c, -1), scale, shift,
                                 num_threads=self._threads(x.size), relu=relu)
                relu_done = relu
            else:
                y = x * scale.reshape(shape) + shift.reshape(shape)
            xhat = None
            if self.requires_grad and has_weight and self.needs_input_grad[1]:
                xhat = (x - running_mean.reshape(shape)) * invstd.reshape(shape)
        if relu and not relu_done:
            y = np.maximum(y, 0)                     # NaN propagates, as relu's NumPy path
            if self.requires_grad:
                self.relu_out = y
        if self.requires_grad:
            self.save_for_backward(xhat, invstd, w)
        if training:
            if n:
                _update_running(running_mean, running_var, mean, var_unbiased, momentum)
            return (y, mean, var_unbiased) if stats else y
        return y

    @staticmethod
    def _threads(size):
        return get_num_threads() if size >= _PARALLEL_MIN else 1

    def _backward_native(self, gy):
        x3, (mean64, inv64), w1 = self.saved_tensors
        need = self.needs_input_grad
        nb, c = x3.shape[0], x3.shape[1]
        # a fused ReLU's masked gy is written into gx first (needed even without need[0])
        gx = np.empty(gy.shape, dtype=gy.dtype) if need[0] or self.relu_out is not None \
            else None
        sgy, sgxm = np.empty(c), np.empty(c)
        _train.bn_backward(_as3(gy, nb, c), x3, None if gx is None else gx.reshape(nb, c, -1),
                           mean64, inv64, w1, True, sgy, sgxm,
                           num_threads=self._threads(x3.size), relu_out=self.relu_out)
        return _input_and_affine_grads(
            self, gx if need[0] else None,
            (sgxm * inv64).astype(gy.dtype) if self.has_weight and need[1] else None,
            sgy.astype(gy.dtype) if self.has_bias and need[-1] else None)

    def backward(self, gy):
        if self.native:
            return self._backward_native(gy)
        if self.relu:
            # relu's backward on its output: the gradient passes where it is not <= 0
            gy = np.where(self.relu_out <= 0, gy.dtype.type(0), gy)
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
        return _input_and_affine_grads(self, gx, gw, gb)


def _input_and_affine_grads(fn, gx, gw, gb):
    """The gradients a norm Function returns: its inputs are x, then weight if ``has_weight``,
    then bias if ``has_bias``."""
    return (gx,) + ((gw,) if fn.has_weight else ()) + ((gb,) if fn.has_bias else ())


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
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def _batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
                momentum=0.1, eps=1e-5, relu=False, return_stats=False):
    """``batch_norm`` with an optional ReLU fused after it (``relu=True``: relu(batch_norm(...)),
    one autograd node; used by nnlite.nn.Sequential for BatchNorm -> ReLU pairs).
    ``return_stats`` (training): also return the batch mean and unbiased variance (Tensors),
    for a caller that updates running statistics per channel range itself."""
    x = float_tensor(input, "batch_norm")
    shape = x.data.shape
    if len(shape) < 2:
        raise ValueError(f"batch_norm: expected an input of shape (N, C, ...) with at least "
                         f"2 dims, got shape {shape}")
    c = shape[1]
    rm = _bn_vector(running_mean, "running_mean", c, x)
    rv = _bn_vector(running_var, "running_var", c, x)
    w = _bn_vector(weight, "weight", c, x)
    b = _bn_vector(bias, "bias", c, x)
    for name, t in (("running_mean", rm), ("running_var", rv)):
        if t is not None and t.requires_grad:
            raise ValueError(f"batch_norm is not differentiable with respect to {name}; "
                             "it cannot have requires_grad=True")
    wb = tuple([t for t in (w, b) if t is not None])
    flags = dict(has_weight=w is not None, has_bias=b is not None, eps=float(eps), relu=relu)
    if not training:
        if rm is None or rv is None:
            missing = "running_mean" if rm is None else "running_var"
            raise ValueError(f"batch_norm: {missing} must be defined in evaluation mode")
        return BatchNormFn.apply(x, *wb, training=False, running_mean=rm.data,
                                 running_var=rv.data, **flags)
    _verify_batch_size(shape)
    return BatchNormFn.apply(x, *wb, training=True, stats=return_stats,
                             running_mean=None if rm is None else rm.data,
                             running_var=None if rv is None else rv.data,
                             momentum=float(momentum), **flags)


def _bn_vector(t, name, c, x):
    """``t`` (None, or a per-channel vector for batch_norm) as a Tensor, after the checks:
    floating, shape (c,), the dtype of ``x``."""
    if t is None:
        return None
    t = float_tensor(t, "batch_norm", name)
    if t.data.shape != (c,):
        raise ValueError(f"batch_norm: {name} should contain {c} elements not {t.data.size} "
                         f"(shape {t.shape}; input shape {x.shape})")
    if t.data.dtype != x.data.dtype:
        raise TypeError(f"batch_norm: input has dtype {x.dtype} but {name} has dtype "
                        f"{t.dtype}; all floating inputs must share one dtype")
    return t


def _kernel_buffer(a, dtype):
    """``a`` when the native BatchNorm kernel may update it in place (a C-contiguous,
    writeable array of ``dtype``), else None."""
    if a is None or a.dtype != dtype:
        return None
    f = a.flags
    return a if f.c_contiguous and f.writeable else None


def update_running_stats(running_mean, running_var, mean, var_unbiased, momentum):
    """r = momentum * batch_stat + (1 - momentum) * r in place, in r's dtype, for the Tensors
    ``running_mean`` / ``running_var`` (either may be None) from the batch's mean and UNBIASED
    variance (arrays of the same length)."""
    _update_running(None if running_mean is None else running_mean.data,
                    None if running_var is None else running_var.data, mean, var_unbiased,
                    momentum)


def _update_running(rm, rv, mean, var_unbiased, momentum):
    """``update_running_stats`` on the arrays ``rm`` / ``rv`` (either may be None)."""
    m = float(momentum)
    for d, stat in ((rm, mean), (rv, var_unbiased)):
        if d is not None:
            # r*(1-m) + m*stat, each product rounded in r's dtype (a Python float takes the
            # array's dtype), in place: three ufunc calls instead of six and a copy
            if d.dtype == stat.dtype and d.flags.writeable:
                d *= 1 - m
                d += m * stat
            else:
                dtype = d.dtype
                d[...] = np.asarray(m, dtype) * stat + np.asarray(1 - m, dtype) * d


# ------------------------------------------------------------------------------ group stats
class GroupStandardizeFn(Function):
    """y = (x - mean_g) / sqrt(var_g + eps) * w + b.

    x (any shape, C-contiguous order) is split into ``rows`` equal consecutive groups of
    K = x.size / rows elements; mean_g and the biased var_g are per group (two passes). w and b
    are reshaped to ``affine_shape`` and broadcast against x. Auxiliary outputs: mean and var
    per group (length ``rows``), for running statistics.

    backward: gb = sum of gy over the broadcast axes, gw = the same of gy * xhat, and with
    g = gy * w per group: gx = invstd * (g - mean(g) - xhat * mean(g * xhat)).
    """

    def forward(self, x, *wb, rows, affine_shape, has_weight, has_bias, eps, rowwise=False):
        w = wb[0] if has_weight else None
        b = wb[-1] if has_bias else None
        self.has_weight, self.has_bias = has_weight, has_bias
        self.affine_shape, self.rows = affine_shape, rows
        self.w_shape = None if w is None else w.shape
        self.b_shape = None if b is None else b.shape
        k = x.size // rows if rows else 0
        self.k = k
        xr = x.reshape(rows, k)
        if rowwise and k and rowops.native(x):
            return self._rows_native(xr, w, b, eps, x.shape)
        if k == 0:
            mean = np.full(rows, np.nan, dtype=x.dtype)
            var = mean
            invstd = mean
            xhat = np.zeros_like(x)
        else:
            mean = xr.mean(axis=1)
            xc = xr - mean[:, None]
            var = np.mean(xc * xc, axis=1)
            invstd = 1.0 / np.sqrt(var + np.asarray(eps, x.dtype))
            xhat = (xc * invstd[:, None]).reshape(x.shape)
        y = xhat * w.reshape(affine_shape) if w is not None else xhat.copy()
        if b is not None:
            y += b.reshape(affine_shape)
        if self.requires_grad:
            self.save_for_backward(xhat, invstd, w)
        return y, mean, var

    def _rows_native(self, xr, w, b, eps, shape):
        """The forward of a float32 layer norm (w and b, if any, one value per element of a
        group: ``rowwise``) by the native row kernel: xhat and its statistics when a gradient
        needs them (y = xhat * w + b as above), else y with w and b applied in the kernel.
        The variance output is derived from rstd (layer_norm drops it)."""
        wf = None if w is None else w.reshape(-1)
        bf = None if b is None else b.reshape(-1)
        if self.requires_grad:
            xhat, mean, invstd = rowops.layer_norm_lastaxis(xr, eps=eps, stats=True)
            xhat = xhat.reshape(shape)
            y = xhat * w.reshape(self.affine_shape) if w is not None else xhat.copy()
            if b is not None:
                y += b.reshape(self.affine_shape)
            self.save_for_backward(xhat, invstd, w)
        else:
            y, mean, invstd = rowops.layer_norm_lastaxis(xr, wf, bf, eps, stats=True)
            y = y.reshape(shape)
        one = np.float32(1.0)
        var = one / (invstd * invstd) - np.float32(eps)
        return y, mean, var

    def backward(self, gy):
        xhat, invstd, w = self.saved_tensors
        need = self.needs_input_grad
        gx = gw = gb = None
        if self.has_bias and need[-1]:
            gb = unbroadcast(gy, self.affine_shape).reshape(self.b_shape)
        if self.has_weight and need[1]:
            gw = unbroadcast(gy * xhat, self.affine_shape).reshape(self.w_shape)
        if need[0]:
            if self.k == 0:
                gx = np.zeros_like(gy)
            else:
                g = gy * w.reshape(self.affine_shape) if w is not None else gy
                g = g.reshape(self.rows, self.k)
                xh = xhat.reshape(self.rows, self.k)
                gx = (g - g.mean(axis=1, keepdims=True)
                      - xh * np.mean(g * xh, axis=1, keepdims=True)) * invstd[:, None]
                gx = gx.reshape(gy.shape)
        return _input_and_affine_grads(self, gx, gw, gb)


def _affine_args(op, x, weight, bias, shape, what):
    """weight/bias as float Tensors of exactly ``shape`` (or None), same dtype as x."""
    named = {}
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            named[name] = None
            continue
        t = float_tensor(t, op, name)
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{op}: Expected {name} to be {what} {list(shape)}, but got {name} "
                             f"of shape {list(t.shape)} (input shape {list(x.shape)})")
        named[name] = t
    same_dtype(op, input=x, **named)
    return named["weight"], named["bias"]


def _standardize(x, rows, affine_shape, w, b, eps, rowwise=False):
    wb = tuple(t for t in (w, b) if t is not None)
    return GroupStandardizeFn.apply(x, *wb, rows=rows, affine_shape=tuple(affine_shape),
                                    has_weight=w is not None, has_bias=b is not None,
                                    eps=float(eps), rowwise=rowwise)


def _int_arg(value, op, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}")
    return int(value)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing ``len(normalized_shape)`` dims (mean, biased variance), then
    y = xhat * weight + bias elementwise (weight/bias of shape normalized_shape).

    Shape: input (*, *normalized_shape) -> same.

    Examples:
        >>> F.layer_norm(x, x.shape[-1:])
    """
    x = float_tensor(input, "layer_norm")
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        normalized_shape = (normalized_shape,)
    if not isinstance(normalized_shape, (tuple, list)):
        raise TypeError(f"layer_norm: normalized_shape must be an int or a sequence of ints, got "
                        f"{normalized_shape!r}")
    shape = tuple(_int_arg(v, "layer_norm", "normalized_shape entries")
                  for v in normalized_shape)
    if not shape:
        raise ValueError("layer_norm: Expected normalized_shape to be at least 1-dimensional, "
                         "i.e., containing at least one element, but got normalized_shape = []")
    w, b = _affine_args("layer_norm", x, weight, bias, shape, "of same shape as normalized_shape")
    k = len(shape)
    if x.ndim < k or tuple(x.shape[-k:]) != shape:
        raise ValueError(f"layer_norm: Given normalized_shape={list(shape)}, expected input with "
                         f"shape [*, {', '.join(str(v) for v in shape)}], but got input of size "
                         f"{list(x.shape)}")
    rows = int(np.prod(x.shape[:-k], dtype=np.int64))
    y, _, _ = _standardize(x, rows, shape, w, b, eps, rowwise=True)
    return y


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Split the C channels into ``num_groups`` groups; normalise each group of each sample over
    its channels and spatial positions; then a per-channel affine (weight, bias of shape (C,)).

    Shape: input (N, C, *) -> same.

    Examples:
        >>> F.group_norm(x, 4, gamma, beta)
    """
    x = float_tensor(input, "group_norm")
    g = _int_arg(num_groups, "group_norm", "num_groups")
    if x.ndim < 2:
        raise ValueError(f"group_norm: Expected at least 2 dimensions for input tensor but "
                         f"received {x.ndim} (shape {tuple(x.shape)})")
    n, c = x.shape[:2]
    if g <= 0:
        raise ValueError(f"group_norm: num_groups must be positive, got num_groups={g}")
    if c % g:
        raise ValueError(f"group_norm: Expected number of channels in input to be divisible by "
                         f"num_groups, but got input of shape {list(x.shape)} and "
                         f"num_groups={g}")
    _verify_batch_size([n * c // g, g] + list(x.shape[2:]))
    w, b = _affine_args("group_norm", x, weight, bias, (c,),
                        "a vector of size equal to the number of channels in input, shape")
    affine = (1, c) + (1,) * (x.ndim - 2)
    y, _, _ = _standardize(x, n * g, affine, w, b, eps)
    return y


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Normalise each channel of each sample over its spatial positions, then a per-channel
    affine (weight, bias of shape (C,)).

    use_input_stats=True: statistics of each instance; when given, running_mean/running_var
    (shape (C,)) are updated in place with r = (1 - momentum) * r + momentum * s, s being the
    batch mean of the instance means / of the UNBIASED instance variances (as PyTorch); an
    empty batch leaves them unchanged (PyTorch would average zero instances into NaN).
    use_input_stats=False: normalise with the running statistics (batch_norm's eval mode).

    Shape: input (N, C, *) with at least 2 spatial elements when use_input_stats -> same.
    """
    x = float_tensor(input, "instance_norm")
    if x.ndim < 2:
        raise ValueError(f"instance_norm: expected an input of shape (N, C, ...), got shape "
                         f"{tuple(x.shape)}")
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm: Expected running_mean and running_var to be defined "
                             "when use_input_stats is false")
        return batch_norm(x, running_mean, running_var, weight, bias, training=False, eps=eps)
    spatial = int(np.prod(x.shape[2:], dtype=np.int64))
    if spatial == 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size "
                         f"{list(x.shape)}")
    n, c = x.shape[:2]
    stats = {}
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is not None:
            t = float_tensor(t, "instance_norm", name)
            if tuple(t.shape) != (c,):
                raise ValueError(f"instance_norm: {name} should contain {c} elements not "
                                 f"{t.data.size} (shape {tuple(t.shape)}; input shape "
                                 f"{tuple(x.shape)})")
            if t.requires_grad:
                raise ValueError(f"instance_norm is not differentiable with respect to {name}; "
                                 "it cannot have requires_grad=True")
        stats[name] = t
    w, b = _affine_args("instance_norm", x, weight, bias, (c,),
                        "a vector of size equal to the number of channels in input, shape")
    same_dtype("instance_norm", input=x, **stats)
    affine = (1, c) + (1,) * (x.ndim - 2)
    y, mean, var = _standardize(x, n * c, affine, w, b, eps)
    rm, rv = stats["running_mean"], stats["running_var"]
    # an empty batch or an empty map has no statistics: the running stats stay as they are
    # (PyTorch keeps them for an empty map too; for an empty batch it would write NaN)
    if n > 0 and spatial > 0 and (rm is not None or rv is not None):
        m = np.asarray(momentum, x.dtype)
        keep = np.asarray(1 - momentum, x.dtype)
        if rm is not None:
            rm.data[...] = keep * rm.data + m * mean.data.reshape(n, c).mean(axis=0)
        if rv is not None:
            unbiased = var.data * np.asarray(spatial / (spatial - 1), x.dtype)
            rv.data[...] = keep * rv.data + m * unbiased.reshape(n, c).mean(axis=0)
    return y


# ------------------------------------------------------------------------------ LRN
def _channel_window_sum(a, lo, hi):
    """s[:, c] = sum of a[:, c + o] for o in [lo, hi], zero outside [0, C) (axis 1)."""
    c = a.shape[1]
    s = np.zeros_like(a)
    for o in range(lo, hi + 1):
        if o >= 0:
            if o < c:
                s[:, :c - o] += a[:, o:]
        elif -o < c:
            s[:, -o:] += a[:, :c + o]
    return s


class LocalResponseNormFn(Function):
    """y = x * d**-beta, d = k + alpha/size * sum_{c' in W(c)} x_c'**2 with the channel window
    W(c) = [c - size//2, c + (size-1)//2] (zero outside).

    gx_c = gy_c d_c**-beta - 2 alpha beta / size * x_c * sum_{c'': c in W(c'')}
           gy_c'' x_c'' d_c''**(-beta - 1).
    """

    def forward(self, x, size, alpha, beta, k):
        dt = x.dtype
        s = _channel_window_sum(x * x, -(size // 2), (size - 1) // 2)
        d = np.asarray(k, dt) + np.asarray(alpha / size, dt) * s
        scale = d ** np.asarray(-beta, dt)
        if self.requires_grad:
            self.save_for_backward(x, d, scale)
        self.args = (size, alpha, beta)
        return x * scale

    def backward(self, gy):
        x, d, scale = self.saved_tensors
        size, alpha, beta = self.args
        dt = gy.dtype
        t = gy * x * scale / d
        back = _channel_window_sum(t, -((size - 1) // 2), size // 2)
        return gy * scale - np.asarray(2 * alpha * beta / size, dt) * x * back


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation across channels (AlexNet):
    y_c = x_c / (k + alpha/size * sum_{c' = c - size//2}^{c + (size-1)//2} x_c'**2)**beta.

    Shape: (N, C, *) with at least one axis after C -> same.

    Examples:
        >>> F.local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=2.0)
    """
    x = float_tensor(input, "local_response_norm")
    if x.ndim < 3:
        raise ValueError(f"local_response_norm: Expected 3D or higher dimensionality input (got "
                         f"{x.ndim} dimensions, shape {tuple(x.shape)})")
    n = _int_arg(size, "local_response_norm", "size")
    if n <= 0:
        raise ValueError(f"local_response_norm: size must be positive, got size={n}")
    for name, v in (("alpha", alpha), ("beta", beta), ("k", k)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"local_response_norm: {name} must be a number, got {v!r}")
    if x.data.size == 0:
        return x
    shape = x.shape
    x3 = x if x.ndim == 3 else x.reshape(shape[0], shape[1], -1)
    y = LocalResponseNormFn.apply(x3, size=n, alpha=float(alpha), beta=float(beta), k=float(k))
    return y if x.ndim == 3 else y.reshape(shape)


# ------------------------------------------------------------------------------ normalize
class VectorNormFn(Function):
    """||x||_p along ``dim`` (keepdim); PyTorch's vector-norm gradient cases for p = 0, 1, 2,
    +-inf, p < 1, 1 < p < 2 and p > 2 (0 where the norm is 0, except p < 1)."""

    def forward(self, x, p, dim):
        a = np.abs(x)
        if p == 0:
            n = np.sum(x != 0, axis=dim, keepdims=True).astype(x.dtype)
        elif p == np.inf:
            n = a.max(axis=dim, keepdims=True)
        elif p == -np.inf:
            n = a.min(axis=dim, keepdims=True)
        elif p == 1:
            n = a.sum(axis=dim, keepdims=True)
        elif p == 2:
            n = np.sqrt(np.sum(x * x, axis=dim, keepdims=True))
        else:
            n = np.sum(a ** np.asarray(p, x.dtype), axis=dim, keepdims=True) ** np.asarray(
                1.0 / p, x.dtype)
        self.p, self.dim = p, dim
        if self.requires_grad:
            self.save_for_backward(x, n)
        return n

    def backward(self, gy):
        x, n = self.saved_tensors
        p, dim = self.p, self.dim
        dt = x.dtype
        with np.errstate(divide="ignore", invalid="ignore"):
            if p == 0:
                return np.zeros_like(x)
            if p == 1:
                return np.sign(x) * gy
            if p == 2:
                return gy * np.where(n == 0, 0, x / np.where(n == 0, 1, n)).astype(dt)
            if np.isinf(p):
                mask = np.abs(x) == n
                return np.sign(x) * (gy / mask.sum(axis=dim, keepdims=True)) * mask
            a = np.abs(x)
            if p < 1:
                scaled = np.sign(x) * np.where(x == 0, 0, a ** np.asarray(p - 1, dt))
                return (scaled * gy * n ** np.asarray(1 - p, dt)).astype(dt)
            scaled = (np.sign(x) * a ** np.asarray(p - 1, dt) if p < 2
                      else x * a ** np.asarray(p - 2, dt))
            scale = np.where(n == 0, 0, gy / n ** np.asarray(p - 1, dt))
            return (scaled * scale).astype(dt)


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    """x / max(||x||_p, eps) along ``dim`` (PyTorch's F.normalize; ONNX LpNormalization).

    ``p``: any real number or +-inf (0 counts non-zeros). ``out``: an optional Tensor of the
    result's shape and dtype that receives the values (not differentiable through ``out``).

    Shape: any -> same (``dim`` must name an axis; a 0-d input counts as 1-d).
    """
    x = float_tensor(input, "normalize")
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
        raise TypeError(f"normalize: p must be a number (or +-inf), got {p!r}")
    d = norm_dim(dim, x.ndim, "normalize")
    if x.ndim == 0:
        x = x.reshape(1)
        y = normalize(x, p, 0, eps).reshape(())
    else:
        denom = VectorNormFn.apply(x, p=float(p), dim=d).clamp(min=eps)
        y = x / denom
    if out is None:
        return y
    if not isinstance(out, Tensor) or out.shape != y.shape or out.dtype != y.dtype:
        raise ValueError(f"normalize: out must be a Tensor of shape {tuple(y.shape)} and dtype "
                         f"{y.dtype}, got {out!r}")
    out.data[...] = y.data
    return out
