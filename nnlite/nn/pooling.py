"""Pooling modules with PyTorch's constructor arguments, attributes and ``extra_repr``.

Attributes keep the values as given (an int stays an int), as PyTorch's modules do; stride None
becomes kernel_size. Arguments are validated when the module is called (also as PyTorch).
"""
from .. import functional as F
from .._shape import pair
from ..functional._checks import single
from ..functional.pooling import _levels
from .module import Module

__all__ = [
    "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "MaxUnpool2d",
    "SpatialPyramidPooling", "MaxPool1d", "AvgPool1d", "AdaptiveAvgPool1d", "AdaptiveMaxPool1d",
    "LPPool1d", "LPPool2d",
]


class MaxPool2d(Module):
    """``F.max_pool2d`` as a module. NOTE the argument order: return_indices before ceil_mode.

    Shape:
        (N, C, H, W) or (C, H, W) -> (N, C, OH, OW) or (C, OH, OW), see ``F.max_pool2d``.

    Examples:
        >>> pool = nn.MaxPool2d(3, stride=2, padding=1); y = pool(x)
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if (stride is not None) else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input):
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """``F.avg_pool2d`` as a module.

    Shape:
        (N, C, H, W) or (C, H, W) -> (N, C, OH, OW) or (C, OH, OW), see ``F.avg_pool2d``.

    Examples:
        >>> nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)(x)
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if (stride is not None) else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input):
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """``F.adaptive_avg_pool2d`` as a module (``AdaptiveAvgPool2d(1)`` = global average pool).

    Shape:
        (N, C, H, W) or (C, H, W) -> (N, C, oh, ow) or (C, oh, ow).

    Examples:
        >>> nn.AdaptiveAvgPool2d((7, 7))(x)
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        return F.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    """``F.adaptive_max_pool2d`` as a module.

    Shape:
        (N, C, H, W) or (C, H, W) -> (N, C, oh, ow) or (C, oh, ow).

    Examples:
        >>> nn.AdaptiveMaxPool2d(1)(x)
    """

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, input):
        return F.adaptive_max_pool2d(input, self.output_size, self.return_indices)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class MaxUnpool2d(Module):
    """``F.max_unpool2d`` as a module; ``forward(input, indices, output_size=None)``.

    Shape:
        (N, C, H, W) -> (N, C, (H-1)*s - 2p + k, (W-1)*s - 2p + k) unless output_size is given.

    Examples:
        >>> unpool = nn.MaxUnpool2d(2); unpool(*nn.MaxPool2d(2, return_indices=True)(x))
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride if (stride is not None) else kernel_size, "stride")
        self.padding = pair(padding, "padding")

    def forward(self, input, indices, output_size=None):
        return F.max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding,
                              output_size)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class SpatialPyramidPooling(Module):
    """Spatial pyramid pooling: a fixed-length vector from a map of any size
    (docs/semantics.md §6.3).

    Args: levels (bins per side of each pyramid level, in output order), mode 'max' or 'avg'.
    ``num_features(C)`` gives the output length C * sum(n**2).

    Shape:
        (N, C, H, W) -> (N, C * sum(n**2 for n in levels)); (C, H, W) -> (C * sum(n**2),).

    Examples:
        >>> spp = nn.SpatialPyramidPooling((4, 2, 1)); head = nn.Linear(spp.num_features(256), 10)
    """

    def __init__(self, levels=(4, 2, 1), mode="max"):
        super().__init__()
        self.levels = _levels(levels)
        if mode not in ("max", "avg"):
            raise ValueError(f"SpatialPyramidPooling: mode must be 'max' or 'avg', got {mode!r}")
        self.mode = mode

    def num_features(self, channels):
        return channels * sum(n * n for n in self.levels)

    def forward(self, input):
        return F.spatial_pyramid_pool2d(input, self.levels, self.mode)

    def extra_repr(self):
        return f"levels={self.levels}, mode={self.mode!r}"


class MaxPool1d(MaxPool2d):
    """``F.max_pool1d`` as a module (attributes as given, stride None -> kernel_size).

    Shape: (N, C, L) or (C, L) -> (N, C, L_out), see ``F.max_pool1d``.
    """

    def forward(self, input):
        return F.max_pool1d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool1d(Module):
    """``F.avg_pool1d`` as a module; kernel_size, stride, padding stored as 1-tuples (PyTorch).

    Shape: (N, C, L) or (C, L) -> (N, C, L_out).
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__()
        self.kernel_size = (single(kernel_size, "kernel_size", "AvgPool1d"),)
        self.stride = (single(stride if stride is not None else kernel_size, "stride",
                              "AvgPool1d"),)
        self.padding = (single(padding, "padding", "AvgPool1d"),)
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, input):
        return F.avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool1d(AdaptiveAvgPool2d):
    """``F.adaptive_avg_pool1d`` as a module. Shape: (N, C, L) or (C, L) -> (N, C, O)."""

    def forward(self, input):
        return F.adaptive_avg_pool1d(input, self.output_size)


class AdaptiveMaxPool1d(AdaptiveMaxPool2d):
    """``F.adaptive_max_pool1d`` as a module. Shape: (N, C, L) or (C, L) -> (N, C, O)."""

    def forward(self, input):
        return F.adaptive_max_pool1d(input, self.output_size, self.return_indices)


class _LPPool(Module):
    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode=False):
        super().__init__()
        self.norm_type = norm_type
        self.kernel_size = kernel_size
        self.stride = stride
        self.ceil_mode = ceil_mode

    def extra_repr(self):
        return (f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, ceil_mode={self.ceil_mode}")


class LPPool1d(_LPPool):
    """``F.lp_pool1d`` as a module. Shape: (N, C, L) or (C, L) -> (N, C, L_out)."""

    def forward(self, input):
        return F.lp_pool1d(input, float(self.norm_type), self.kernel_size, self.stride,
                           self.ceil_mode)


class LPPool2d(_LPPool):
    """``F.lp_pool2d`` as a module. Shape: (N, C, H, W) or (C, H, W) -> (N, C, OH, OW)."""

    def forward(self, input):
        return F.lp_pool2d(input, float(self.norm_type), self.kernel_size, self.stride,
                           self.ceil_mode)
