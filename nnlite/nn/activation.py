"""Activation modules with PyTorch's constructor arguments, attributes, reprs and state_dict
(``PReLU.weight``). Each wraps the ``nnlite.functional`` op of the same name.

``inplace`` is accepted (and shown in the repr, as PyTorch) but never overwrites the input.
"""
import numpy as np

from .. import functional as F
from .module import Module, Parameter

__all__ = ["LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "Mish", "Hardsigmoid",
           "Hardswish", "Softplus", "Softsign", "SiLU", "Hardshrink", "Softshrink", "Tanhshrink",
           "LogSigmoid"]


def _inplace_repr(inplace):
    return "inplace=True" if inplace else ""


class _InplaceOnly(Module):
    """An activation whose only argument is ``inplace``."""

    _fn = None

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return type(self)._fn(input)

    def extra_repr(self):
        return _inplace_repr(self.inplace)


class LeakyReLU(Module):
    """max(0, x) + negative_slope * min(0, x). Shape: any -> same."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class PReLU(Module):
    """max(0, x) + weight * min(0, x) with a learnable ``weight`` of ``num_parameters`` slopes
    (1 shared, or one per channel = input.size(1)), initialised to ``init``.

    Shape: (N, C, *) or any shape when num_parameters == 1 -> same.
    """

    def __init__(self, num_parameters=1, init=0.25, device=None, dtype=None):
        from .layers import _check_size, _factory_dtype

        super().__init__()
        self.num_parameters = _check_size(num_parameters, "num_parameters", "PReLU")
        dt = _factory_dtype(device, dtype, "PReLU")
        self.init = init
        self.weight = Parameter(np.full(self.num_parameters, init, dtype=dt))

    def reset_parameters(self):
        self.weight.data[...] = self.init

    def forward(self, input):
        return F.prelu(input, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class ELU(Module):
    """x for x > 0, alpha * (exp(x) - 1) otherwise. Shape: any -> same."""

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, input):
        return F.elu(input, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class CELU(ELU):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)). Shape: any -> same."""

    def forward(self, input):
        return F.celu(input, self.alpha)


class SELU(_InplaceOnly):
    """1.0507 * elu(x, 1.6733) (self-normalising). Shape: any -> same."""

    _fn = staticmethod(F.selu)


class GELU(Module):
    """x * Phi(x) (``approximate='none'``) or its tanh approximation. Shape: any -> same."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate argument must be either 'none' or 'tanh', "
                             f"got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Mish(_InplaceOnly):
    """x * tanh(softplus(x)). Shape: any -> same."""

    _fn = staticmethod(F.mish)


class Hardsigmoid(_InplaceOnly):
    """clip(x / 6 + 1/2, 0, 1). Shape: any -> same. (Its repr omits ``inplace``, as PyTorch.)"""

    _fn = staticmethod(F.hardsigmoid)

    def extra_repr(self):
        return ""


class Hardswish(Hardsigmoid):
    """x * hardsigmoid(x). Shape: any -> same. (Its repr omits ``inplace``, as PyTorch.)"""

    _fn = staticmethod(F.hardswish)


class SiLU(_InplaceOnly):
    """x * sigmoid(x). Shape: any -> same."""

    _fn = staticmethod(F.silu)


class Softplus(Module):
    """log(1 + exp(beta x)) / beta, x where beta x > threshold. Shape: any -> same."""

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, input):
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Softsign(Module):
    """x / (1 + |x|). Shape: any -> same."""

    def forward(self, input):
        return F.softsign(input)


class Hardshrink(Module):
    """x where |x| > lambd, else 0. Shape: any -> same."""

    def __init__(self, lambd=0.5):
        super().__init__()
        self.lambd = lambd

    def forward(self, input):
        return F.hardshrink(input, self.lambd)

    def extra_repr(self):
        return f"{self.lambd}"


class Softshrink(Hardshrink):
    """x -+ lambd outside [-lambd, lambd], 0 inside. Shape: any -> same."""

    def forward(self, input):
        return F.softshrink(input, self.lambd)


class Tanhshrink(Module):
    """x - tanh(x). Shape: any -> same."""

    def forward(self, input):
        return F.tanhshrink(input)


class LogSigmoid(Module):
    """log(sigmoid(x)). Shape: any -> same."""

    def forward(self, input):
        return F.logsigmoid(input)
