"""LayerNorm, GroupNorm, InstanceNorm1d/2d and LocalResponseNorm with PyTorch's arguments,
parameters, buffers, state_dict keys and reprs.

InstanceNorm shares BatchNorm's parameter/buffer layout (weight, bias when affine;
running_mean, running_var, num_batches_tracked when track_running_stats) but, as PyTorch, it
defaults to affine=False, track_running_stats=False, never increments num_batches_tracked and
treats momentum=None as 0.
"""
import numbers
import warnings

import numpy as np

from .. import functional as F
from ..functional._checks import float_tensor
from . import init
from .batchnorm import _BatchNorm
from .module import Module, Parameter

__all__ = ["LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "LocalResponseNorm"]


def _dtype(device, dtype, cls):
    from .layers import _factory_dtype

    return _factory_dtype(device, dtype, cls)


class _AffineNorm(Module):
    """A normalisation with an optional affine: ``weight`` (ones) and ``bias`` (zeros, unless
    ``bias=False``) of ``shape`` when ``affine``, else both registered as None."""

    def _init_affine(self, affine, bias, shape, device, dtype):
        dt = _dtype(device, dtype, type(self).__name__)
        self.weight = Parameter(np.empty(shape, dtype=dt)) if affine else None
        self.bias = Parameter(np.empty(shape, dtype=dt)) if affine and bias else None
        for name in ("weight", "bias"):
            if getattr(self, name) is None:
                self.register_parameter(name, None)
        self.reset_parameters()

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)


class LayerNorm(_AffineNorm):
    """Normalise over the trailing ``normalized_shape`` dims, with an elementwise affine
    (weight ones, bias zeros, both of shape normalized_shape) when ``elementwise_affine``.

    Shape: (*, *normalized_shape) -> same.

    Examples:
        >>> nn.LayerNorm(768)(tokens)          # tokens (N, L, 768)
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(v) for v in normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self._init_affine(elementwise_affine, bias, self.normalized_shape, device, dtype)

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class GroupNorm(_AffineNorm):
    """Group normalisation (``F.group_norm``) with a per-channel affine (weight ones, bias
    zeros, shape (num_channels,)) when ``affine``.

    Shape: (N, C, *) -> same.
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None,
                 dtype=None, *, bias=True):
        super().__init__()
        if num_groups == 0 or num_channels % num_groups != 0:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.num_groups, self.num_channels = num_groups, num_channels
        self.eps, self.affine = eps, affine
        self._init_affine(affine, bias, (num_channels,), device, dtype)

    def forward(self, input):
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class _InstanceNorm(_BatchNorm):
    _no_batch_dim = None

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False,
                 track_running_stats=False, device=None, dtype=None, *, bias=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype, bias=bias)

    def _apply(self, input):
        return F.instance_norm(input, self.running_mean, self.running_var, self.weight,
                               self.bias, self.training or not self.track_running_stats,
                               self.momentum if self.momentum is not None else 0.0, self.eps)

    def forward(self, input):
        input = float_tensor(input, type(self).__name__)
        self._check_input_dim(input)
        feature_dim = input.ndim - self._no_batch_dim
        if input.shape[feature_dim] != self.num_features:
            if self.affine:
                raise ValueError(f"expected input's size at dim={feature_dim} to match "
                                 f"num_features ({self.num_features}), but got: "
                                 f"{input.shape[feature_dim]}.")
            warnings.warn(f"input's size at dim={feature_dim} does not match num_features. You "
                          "can silence this warning by not passing in num_features, which is "
                          "not used because affine=False", stacklevel=2)
        if input.ndim == self._no_batch_dim:
            return self._apply(input.unsqueeze(0)).squeeze(0)
        return self._apply(input)


class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation of (N, C, L) or unbatched (C, L) input (``F.instance_norm``).

    Shape: (N, C, L) or (C, L) -> same.
    """

    _no_batch_dim = 2

    def _check_input_dim(self, input):
        if input.ndim not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {input.ndim}D input)")


class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation of (N, C, H, W) or unbatched (C, H, W) input.

    Shape: (N, C, H, W) or (C, H, W) -> same.
    """

    _no_batch_dim = 3

    def _check_input_dim(self, input):
        if input.ndim not in (3, 4):
            raise ValueError(f"expected 3D or 4D input (got {input.ndim}D input)")


class LocalResponseNorm(Module):
    """``F.local_response_norm`` as a module. Shape: (N, C, *) -> same."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, input):
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
