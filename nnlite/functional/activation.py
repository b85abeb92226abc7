"""Pointwise activations with PyTorch's names, defaults, formulas and gradients (including the
gradient PyTorch takes at the kinks), plus ``erf``.

Each op is one ``Function`` whose forward computes in the input's dtype (float32 or float64) and
whose backward is the analytic derivative. ``inplace`` arguments are accepted for API
compatibility and ignored: nnlite never overwrites an input.

Gradients at the kinks (as PyTorch): leaky_relu/prelu x == 0 -> negative slope; elu/selu/celu
x == 0 -> the exponential branch (alpha * scale); hardsigmoid 0 at x == +-3; hardswish 0 at
x == -3 and 1 at x == 3 (the outer branches); hardshrink/softshrink 0 at |x| == lambd.
"""
import math

import numpy as np

from .._ops import _sigmoid
from ..autograd import Function, unbroadcast
from ..kernels import rowops
from ._checks import float_tensor, same_dtype

__all__ = ["leaky_relu", "elu", "selu", "celu", "gelu", "mish", "hardsigmoid", "hardswish",
           "softplus", "softsign", "silu", "prelu", "erf", "hardshrink", "softshrink",
           "tanhshrink", "logsigmoid"]

# SELU constants (Klambauer et al. 2017), as PyTorch spells them
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_TANH_BETA = math.sqrt(2.0 / math.pi)
_GELU_TANH_KAPPA = 0.044715


def _number(value, op, name):
    """A real Python/NumPy number (not bool) as float, else TypeError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a number, got {value!r}")
    return float(value)


def _c(value, dtype):
    """A Python scalar as a 0-d array of ``dtype`` (keeps float32 math in float32)."""
    return np.asarray(value, dtype=dtype)


# ------------------------------------------------------------------------------ leaky_relu
class LeakyReluFn(Function):
    """y = x if x > 0 else slope * x; dy/dx = 1 if x > 0 else slope."""

    def forward(self, x, slope):
        pos = x > 0
        if self.requires_grad:
            self.save_for_backward(pos)
        self.slope = slope
        return np.where(pos, x, x * _c(slope, x.dtype))

    def backward(self, gy):
        (pos,) = self.saved_tensors
        return np.where(pos, gy, gy * _c(self.slope, gy.dtype))


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """max(0, x) + negative_slope * min(0, x), elementwise.

    Shape: any; output has the input's shape and dtype.
    """
    slope = _number(negative_slope, "leaky_relu", "negative_slope")
    return LeakyReluFn.apply(float_tensor(input, "leaky_relu"), slope=slope)


# ------------------------------------------------------------------------------ elu family
class EluFn(Function):
    """y = scale * x for x > 0, else alpha * scale * (exp(x * input_scale) - 1).

    dy/dx = scale for x > 0, else alpha * scale * input_scale * exp(x * input_scale)."""

    def forward(self, x, alpha, scale, input_scale):
        dt = x.dtype
        self.coef = (alpha * scale, scale, input_scale)
        pos = x > 0
        neg = np.expm1(x * _c(input_scale, dt)) * _c(alpha * scale, dt)
        y = np.where(pos, x * _c(scale, dt), neg)
        if self.requires_grad:
            self.save_for_backward(x)
        return y

    def backward(self, gy):
        (x,) = self.saved_tensors
        negcoef, poscoef, inscale = self.coef
        dt = x.dtype
        gneg = gy * _c(negcoef * inscale, dt) * np.exp(np.minimum(x, 0) * _c(inscale, dt))
        return np.where(x > 0, gy * _c(poscoef, dt), gneg)


def elu(input, alpha=1.0, inplace=False):
    """x for x > 0, alpha * (exp(x) - 1) otherwise.

    Shape: any; output has the input's shape and dtype.
    """
    a = _number(alpha, "elu", "alpha")
    return EluFn.apply(float_tensor(input, "elu"), alpha=a, scale=1.0, input_scale=1.0)


def selu(input, inplace=False):
    """scale * elu(x, alpha) with alpha = 1.6732632423543772, scale = 1.0507009873554805.

    Shape: any; output has the input's shape and dtype.
    """
    return EluFn.apply(float_tensor(input, "selu"), alpha=_SELU_ALPHA, scale=_SELU_SCALE,
                       input_scale=1.0)


def celu(input, alpha=1.0, inplace=False):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)); alpha must be non-zero.

    Shape: any; output has the input's shape and dtype.
    """
    a = _number(alpha, "celu", "alpha")
    if a == 0:
        raise ValueError("celu: alpha cannot be 0 (it divides x), got alpha=0")
    return EluFn.apply(float_tensor(input, "celu"), alpha=a, scale=1.0, input_scale=1.0 / a)


# ------------------------------------------------------------------------------ erf / gelu
class ErfFn(Function):
    """y = erf(x); dy/dx = 2/sqrt(pi) * exp(-x**2). float32: the native kernel
    (nnlite/kernels/rowops.py, within 0.51 ulp); float64: ``_special.py``."""

    def forward(self, x):
        if self.requires_grad:
            self.save_for_backward(x)
        return rowops.erf(x)

    def backward(self, gy):
        (x,) = self.saved_tensors
        x64 = x.astype(np.float64)
        return (gy * (2.0 / math.sqrt(math.pi)) * np.exp(-x64 * x64)).astype(gy.dtype)


def erf(input):
    """The error function erf(x) = 2/sqrt(pi) * integral_0^x exp(-t**2) dt, elementwise
    (``torch.erf``; ONNX ``Erf``). Accurate to a few ulp in float64 (``_special.py``); float32
    inputs run the native kernel (double inside, rounded once; the NumPy float64 path without
    the extension).

    Shape: any; output has the input's shape and dtype.
    """
    return ErfFn.apply(float_tensor(input, "erf"))


class GeluFn(Function):
    """'none': y = x * Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2 (no cancellation for x << 0);
    dy/dx = Phi(x) + x * exp(-x**2 / 2) / sqrt(2 pi).
    'tanh': y = x/2 * (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) * (x + 0.044715 x**3).
    forward: nnlite/kernels/rowops.py (float32 natively); backward recomputes Phi or the
    sigmoid from x with the NumPy formula (rowops.gelu_formula) instead of keeping it.
    """

    def forward(self, x, approximate):
        self.approximate = approximate
        if self.requires_grad:
            self.save_for_backward(x)
        return rowops.gelu(x, approximate)

    def backward(self, gy):
        (x,) = self.saved_tensors
        _, s = rowops.gelu_formula(x, self.approximate)
        if self.approximate == "tanh":
            # d/dx [x s] = s + x * u' * (1 - tanh(u)**2) / 2 = s + 2 x s (1 - s) u'
            dt = x.dtype
            du = _c(_GELU_TANH_BETA, dt) * (_c(1.0, dt) + _c(3.0 * _GELU_TANH_KAPPA, dt) * x * x)
            return gy * (s + _c(2.0, dt) * x * s * (_c(1.0, dt) - s) * du)
        x64 = x.astype(np.float64)
        d = s + x64 * np.exp(-0.5 * x64 * x64) * _INV_SQRT_2PI
        return (gy * d).astype(gy.dtype, copy=False)


def gelu(input, approximate="none"):
    """Gaussian error linear unit: x * Phi(x) with Phi the standard normal CDF
    (``approximate='none'``), or PyTorch's tanh approximation
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3))) (``approximate='tanh'``).

    Shape: any; output has the input's shape and dtype.
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate argument must be either 'none' or 'tanh', "
                         f"got {approximate!r}")
    return GeluFn.apply(float_tensor(input, "gelu"), approximate=approximate)


# ------------------------------------------------------------------------------ smooth ones
class SoftplusFn(Function):
    """y = log(1 + exp(beta x)) / beta, or x where beta * x > threshold;
    dy/dx = sigmoid(beta x) (1 where beta * x > threshold)."""

    def forward(self, x, beta, threshold):
        dt = x.dtype
        bx = x * _c(beta, dt)
        lin = bx > _c(threshold, dt)
        if self.requires_grad:
            self.save_for_backward(bx, lin)
        return np.where(lin, x, np.logaddexp(_c(0.0, dt), bx) / _c(beta, dt))

    def backward(self, gy):
        bx, lin = self.saved_tensors
        return np.where(lin, gy, gy * _sigmoid(bx))


def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + exp(beta * x)) / beta, reverting to x where beta * x > threshold (as PyTorch).

    Shape: any; output has the input's shape and dtype.
    """
    b = _number(beta, "softplus", "beta")
    t = _number(threshold, "softplus", "threshold")
    if b == 0:
        raise ValueError("softplus: beta must be non-zero (it divides the result), got beta=0")
    return SoftplusFn.apply(float_tensor(input, "softplus"), beta=b, threshold=t)


class SoftsignFn(Function):
    """y = x / (1 + |x|); dy/dx = 1 / (1 + |x|)**2."""

    def forward(self, x):
        d = np.abs(x) + _c(1.0, x.dtype)
        if self.requires_grad:
            self.save_for_backward(d)
        return x / d

    def backward(self, gy):
        (d,) = self.saved_tensors
        return gy / (d * d)


def softsign(input):
    """x / (1 + |x|). Shape: any; output has the input's shape and dtype."""
    return SoftsignFn.apply(float_tensor(input, "softsign"))


class SiluFn(Function):
    """y = x * sigmoid(x); dy/dx = s * (1 + x * (1 - s)), s = sigmoid(x)."""

    def forward(self, x):
        s = _sigmoid(x)
        if self.requires_grad:
            self.save_for_backward(x, s)
        return x * s

    def backward(self, gy):
        x, s = self.saved_tensors
        one = _c(1.0, x.dtype)
        return gy * s * (one + x * (one - s))


def silu(input, inplace=False):
    """x * sigmoid(x) (also called swish). Shape: any; output has the input's shape and dtype."""
    return SiluFn.apply(float_tensor(input, "silu"))


class MishFn(Function):
    """y = x * tanh(softplus(x)); dy/dx = t + x * sigmoid(x) * (1 - t**2), t = tanh(softplus(x))."""

    def forward(self, x):
        t = np.tanh(np.logaddexp(_c(0.0, x.dtype), x))
        if self.requires_grad:
            self.save_for_backward(x, t)
        return x * t

    def backward(self, gy):
        x, t = self.saved_tensors
        return gy * (t + x * _sigmoid(x) * (_c(1.0, x.dtype) - t * t))


def mish(input, inplace=False):
    """x * tanh(log(1 + exp(x))). Shape: any; output has the input's shape and dtype."""
    return MishFn.apply(float_tensor(input, "mish"))


# ------------------------------------------------------------------------------ hard ones
class HardsigmoidFn(Function):
    """y = clip(x + 3, 0, 6) / 6; dy/dx = 1/6 strictly inside (-3, 3), else 0."""

    def forward(self, x):
        dt = x.dtype
        if self.requires_grad:
            self.save_for_backward((x > -3) & (x < 3))
        return np.clip(x + _c(3.0, dt), _c(0.0, dt), _c(6.0, dt)) / _c(6.0, dt)

    def backward(self, gy):
        (inside,) = self.saved_tensors
        return np.where(inside, gy / _c(6.0, gy.dtype), _c(0.0, gy.dtype))


def hardsigmoid(input, inplace=False):
    """0 for x <= -3, 1 for x >= 3, x / 6 + 1/2 between.

    Shape: any; output has the input's shape and dtype.
    """
    return HardsigmoidFn.apply(float_tensor(input, "hardsigmoid"))


class HardswishFn(Function):
    """y = x * clip(x + 3, 0, 6) / 6; dy/dx = 0 for x <= -3, x/3 + 1/2 for -3 < x < 3, else 1."""

    def forward(self, x):
        dt = x.dtype
        if self.requires_grad:
            self.save_for_backward(x)
        return x * np.clip(x + _c(3.0, dt), _c(0.0, dt), _c(6.0, dt)) / _c(6.0, dt)

    def backward(self, gy):
        (x,) = self.saved_tensors
        dt = x.dtype
        mid = gy * (x / _c(3.0, dt) + _c(0.5, dt))
        return np.where(x <= -3, _c(0.0, dt), np.where(x < 3, mid, gy))


def hardswish(input, inplace=False):
    """x * hardsigmoid(x): 0 for x <= -3, x for x >= 3, x * (x + 3) / 6 between.

    Shape: any; output has the input's shape and dtype.
    """
    return HardswishFn.apply(float_tensor(input, "hardswish"))


# ------------------------------------------------------------------------------ prelu
class PreluFn(Function):
    """y = x if x > 0 else w * x, w broadcast along the channel axis (axis 1, or the only one).

    dy/dx = 1 if x > 0 else w; dy/dw = 0 if x > 0 else x (summed to w's shape)."""

    def forward(self, x, w, w_shape):
        self.w_orig_shape = w.shape
        wb = w.reshape(w_shape)
        pos = x > 0
        if self.requires_grad:
            self.save_for_backward(x, wb, pos)
        self.w_shape = w_shape
        return np.where(pos, x, wb * x)

    def backward(self, gy):
        x, wb, pos = self.saved_tensors
        gx = gw = None
        if self.needs_input_grad[0]:
            gx = np.where(pos, gy, wb * gy)
        if self.needs_input_grad[1]:
            gw = unbroadcast(np.where(pos, _c(0.0, gy.dtype), x * gy), self.w_shape)
            gw = gw.reshape(self.w_orig_shape)
        return gx, gw


def prelu(input, weight):
    """max(0, x) + weight * min(0, x) with a learnable slope per channel.

    ``weight`` holds 1 element (shared) or input.size(1) elements (one per channel; a 1-d input
    has a single channel). 0-d or 1-d weight.

    Shape: input (N, C, *), (C,) or any shape when weight has 1 element; output as input.
    """
    x = float_tensor(input, "prelu")
    w = float_tensor(weight, "prelu", "weight")
    same_dtype("prelu", input=x, weight=w)
    if w.ndim > 1:
        raise ValueError(f"prelu: Expected `weight` to be a scalar or 1D tensor, but got: "
                         f"ndim = {w.ndim} (shape {tuple(w.shape)})")
    if w.data.size != 1:
        if x.ndim == 0:
            raise ValueError(f"prelu: a 0-d input needs a weight with 1 element, got weight "
                             f"of shape {tuple(w.shape)}")
        channels = x.shape[1] if x.ndim > 1 else 1
        if channels != w.data.size:
            raise ValueError(f"prelu: Mismatch of parameter numbers and input channel size. "
                             f"Found parameter numbers = {w.data.size} and channel size = "
                             f"{channels} (input shape {tuple(x.shape)})")
    w_shape = [1] * x.ndim
    if x.ndim > 1:
        w_shape[1] = w.data.size
    return PreluFn.apply(x, w, w_shape=tuple(w_shape))


# ------------------------------------------------------------------------------ shrinkage
class ShrinkFn(Function):
    """hard: y = x where |x| > lambd else 0; soft: y = x - lambd*sign(x) where |x| > lambd
    else 0. dy/dx = 1 where |x| > lambd, 0 on [-lambd, lambd] (boundaries included)."""

    def forward(self, x, lambd, soft):
        dt = x.dtype
        lam = _c(lambd, dt)
        outside = (x < -lam) | (x > lam)
        if self.requires_grad:
            self.save_for_backward(outside)
        if soft:
            y = np.where(x > lam, x - lam, np.where(x < -lam, x + lam, _c(0.0, dt)))
        else:
            y = np.where(outside, x, _c(0.0, dt))
        return np.where(np.isnan(x), x, y)

    def backward(self, gy):
        (outside,) = self.saved_tensors
        return np.where(outside, gy, np.zeros((), gy.dtype))


def hardshrink(input, lambd=0.5):
    """x where |x| > lambd, else 0 (ONNX Shrink with bias 0).

    Shape: any; output has the input's shape and dtype.
    """
    lam = _number(lambd, "hardshrink", "lambd")
    return ShrinkFn.apply(float_tensor(input, "hardshrink"), lambd=lam, soft=False)


def softshrink(input, lambd=0.5):
    """x - lambd for x > lambd, x + lambd for x < -lambd, else 0; lambd >= 0 (ONNX Shrink with
    bias = lambd).

    Shape: any; output has the input's shape and dtype.
    """
    lam = _number(lambd, "softshrink", "lambd")
    if lam < 0:
        raise ValueError(f"softshrink: lambda must be greater or equal to 0, but found to be "
                         f"{lambd}")
    return ShrinkFn.apply(float_tensor(input, "softshrink"), lambd=lam, soft=True)


class TanhshrinkFn(Function):
    """y = x - tanh(x); dy/dx = tanh(x)**2."""

    def forward(self, x):
        t = np.tanh(x)
        if self.requires_grad:
            self.save_for_backward(t)
        return x - t

    def backward(self, gy):
        (t,) = self.saved_tensors
        return gy * t * t


def tanhshrink(input):
    """x - tanh(x). Shape: any; output has the input's shape and dtype."""
    return TanhshrinkFn.apply(float_tensor(input, "tanhshrink"))


class LogsigmoidFn(Function):
    """y = log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)) (no overflow); dy/dx = sigmoid(-x)."""

    def forward(self, x):
        if self.requires_grad:
            self.save_for_backward(x)
        return np.minimum(x, _c(0.0, x.dtype)) - np.log1p(np.exp(-np.abs(x)))

    def backward(self, gy):
        (x,) = self.saved_tensors
        return gy * _sigmoid(-x)


def logsigmoid(input):
    """log(1 / (1 + exp(-x))), evaluated without overflow on both tails.

    Shape: any; output has the input's shape and dtype.
    """
    return LogsigmoidFn.apply(float_tensor(input, "logsigmoid"))
