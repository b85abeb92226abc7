"""Naive scalar oracles of the pointwise activations (the test oracle and a study mode).

One element at a time with Python's ``math`` module, straight from each textbook formula (no
NumPy vector code, nothing shared with nnlite/functional/activation.py). Formulas that cancel or
overflow when written naively are written in an equivalent stable form, noted at each one.

    >>> apply("gelu", [0.5, -1.0])       # float64 array
"""
import math

import numpy as np

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def logistic(z):
    """1 / (1 + exp(-z)) without overflowing exp."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def softplus(x, beta=1.0, threshold=20.0):
    if beta * x > threshold:
        return x
    z = beta * x                       # log(1 + e^z) = max(z, 0) + log1p(e^-|z|)
    return (max(z, 0.0) + math.log1p(math.exp(-abs(z)))) / beta


def leaky_relu(x, negative_slope=0.01):
    return x if x > 0 else negative_slope * x


def elu(x, alpha=1.0):
    return x if x > 0 else alpha * math.expm1(x)


def selu(x):
    return SELU_SCALE * (x if x > 0 else SELU_ALPHA * math.expm1(x))


def celu(x, alpha=1.0):
    return max(0.0, x) + min(0.0, alpha * math.expm1(x / alpha))


def gelu(x, approximate="none"):
    if approximate == "tanh":
        # 0.5 x (1 + tanh(u)) = x * logistic(2u)
        u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)
        return x * logistic(2.0 * u)
    return 0.5 * x * math.erfc(-x / math.sqrt(2.0))   # x * Phi(x)


def mish(x):
    return x * math.tanh(softplus(x))


def hardsigmoid(x):
    return min(max(x / 6.0 + 0.5, 0.0), 1.0)


def hardswish(x):
    return x * min(max(x + 3.0, 0.0), 6.0) / 6.0


def softsign(x):
    return x / (1.0 + abs(x))


def silu(x):
    return x * logistic(x)


def erf(x):
    return math.erf(x)


def hardshrink(x, lambd=0.5):
    return x if abs(x) > lambd else 0.0


def softshrink(x, lambd=0.5):
    if x > lambd:
        return x - lambd
    if x < -lambd:
        return x + lambd
    return 0.0


def tanhshrink(x):
    return x - math.tanh(x)


def logsigmoid(x):
    # log(logistic(x)) = -log1p(e^-x) for x >= 0, x - log1p(e^x) otherwise
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def prelu(x, weight):
    """x (N, C, ...) or any shape with a 1-element weight; weight per channel (axis 1)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64).ravel()
    y = np.empty(x.shape)
    for idx in np.ndindex(*x.shape):
        slope = w[0] if w.size == 1 else w[idx[1]]
        y[idx] = x[idx] if x[idx] > 0 else slope * x[idx]
    return y


def apply(name, x, **kwargs):
    """The scalar function ``name`` applied to every element of x (float64 result)."""
    fn = globals()[name]
    x = np.asarray(x, dtype=np.float64)
    y = np.empty(x.shape)
    for idx in np.ndindex(*x.shape):
        y[idx] = fn(float(x[idx]), **kwargs)
    return y
