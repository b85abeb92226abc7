"""Basic layers with PyTorch's names, arguments, attributes and reprs: Linear, activations,
Flatten, Dropout, Softmax/LogSoftmax; re-exports BatchNorm1d/2d (``batchnorm.py``) and the loss
modules (``loss.py``) so that ``nnlite.nn`` sees them all.

``inplace`` arguments are accepted (and shown in the repr, as PyTorch) but nnlite never
overwrites a module's input.
"""
import numpy as np

from .. import functional as F
from ..tensor import as_tensor
from . import init
from .batchnorm import BatchNorm1d, BatchNorm2d
from .loss import CrossEntropyLoss, MSELoss, NLLLoss
from .module import Module, Parameter

__all__ = ["Linear", "ReLU", "ReLU6", "Hardtanh", "Sigmoid", "Tanh", "Flatten", "Dropout",
           "Softmax", "LogSoftmax", "BatchNorm1d", "BatchNorm2d", "CrossEntropyLoss", "NLLLoss",
           "MSELoss"]


def _factory_dtype(device, dtype, cls):
    """The parameter dtype from PyTorch's ``device``/``dtype`` factory arguments (CPU only)."""
    if device not in (None, "cpu"):
        raise ValueError(f"{cls}: nnlite runs on the CPU only, got device={device!r}")
    dt = np.dtype(np.float32 if dtype is None else dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{cls}: dtype must be float32 or float64, got {dt}")
    return dt


def _check_size(value, name, cls):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{cls}: {name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{cls}: {name} must be non-negative, got {value}")
    return int(value)


class Linear(Module):
    """y = x @ weight.T + bias.

    weight (out_features, in_features) and bias (out_features,) ~ U(-1/sqrt(in_features),
    +1/sqrt(in_features)) (PyTorch's default init, docs/semantics.md §9.1).

    Shape: input (*, in_features) -> output (*, out_features).
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features = _check_size(in_features, "in_features", "Linear")
        self.out_features = _check_size(out_features, "out_features", "Linear")
        dt = _factory_dtype(device, dtype, "Linear")
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=dt))
        if bias:
            self.bias = Parameter(np.empty(self.out_features, dtype=dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.default_init_(self.weight, self.bias, fan_in=self.in_features)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class ReLU(Module):
    """max(x, 0). Shape: any -> same."""

    _plain_relu = True      # nn.Sequential fuses it into a preceding BatchNorm (module.py)

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return F.relu(input)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Hardtanh(Module):
    """clip(x, min_val, max_val), gradient 0 at the boundaries. Shape: any -> same."""

    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__()
        if min_val > max_val:
            raise ValueError(f"Hardtanh: min_val cannot be greater than max_val "
                             f"(got min_val={min_val}, max_val={max_val})")
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def forward(self, input):
        return F.hardtanh(input, self.min_val, self.max_val)

    def extra_repr(self):
        inplace = ", inplace=True" if self.inplace else ""
        return f"min_val={self.min_val}, max_val={self.max_val}{inplace}"


class ReLU6(Hardtanh):
    """min(max(x, 0), 6). Shape: any -> same."""

    def __init__(self, inplace=False):
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Sigmoid(Module):
    """1 / (1 + exp(-x)). Shape: any -> same."""

    def forward(self, input):
        return F.sigmoid(input)


class Tanh(Module):
    """tanh(x). Shape: any -> same."""

    def forward(self, input):
        return F.tanh(input)


class Flatten(Module):
    """Flattens dims start_dim..end_dim into one. Shape: (N, *dims) -> (N, prod(dims)) by
    default."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        return as_tensor(input).flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """Inverted dropout in training mode (``F.dropout``), identity in eval mode.
    Shape: any -> same."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise TypeError(f"Dropout: p must be a number, got {p!r}")
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Softmax(Module):
    """softmax along ``dim``. Shape: any -> same."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.softmax(input, self.dim, _stacklevel=5)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log_softmax along ``dim``. Shape: any -> same."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.log_softmax(input, self.dim, _stacklevel=5)

    def extra_repr(self):
        return f"dim={self.dim}"
