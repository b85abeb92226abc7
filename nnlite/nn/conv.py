"""nn.Conv2d, nn.ConvTranspose2d, nn.Conv1d and nn.ConvTranspose1d with PyTorch's arguments,
attributes, init and state_dict.

Attributes (as torch's ``_ConvNd``): in_channels, out_channels, kernel_size, stride, padding
(tuple, or the string 'same'/'valid'), dilation, output_padding, groups, padding_mode, weight,
bias (None when ``bias=False``). Init: weight and bias ~ U(+-1/sqrt(fan_in)) with
fan_in = weight.size(1) * prod(kernel) (docs/semantics.md §9.1; Cout/groups for the transposed
conv). The 1-D layers keep 1-tuples (kernel_size=(3,), ...) as PyTorch.
"""
import numpy as np

from .. import functional as F
from .._convgeom import same_padding, transpose_output_padding
from .._shape import pair
from ..functional._checks import single
from . import init
from .module import Module, Parameter

__all__ = ["Conv2d", "ConvTranspose2d", "Conv1d", "ConvTranspose1d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _check_groups(in_channels, out_channels, groups):
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups <= 0:
        raise ValueError(f"groups must be a positive integer, got groups={groups!r}")
    if in_channels % groups != 0:
        raise ValueError(f"in_channels must be divisible by groups (in_channels={in_channels}, "
                         f"groups={groups})")
    if out_channels % groups != 0:
        raise ValueError(f"out_channels must be divisible by groups "
                         f"(out_channels={out_channels}, groups={groups})")


def _channels(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


class _ConvBase(Module):
    """What the 1-D and 2-D, plain and transposed conv layers share; ``dims`` is the number of
    spatial axes (2: pairs of ints, (H, W); 1: 1-tuples, (L,), as PyTorch stores them)."""

    dims = 2

    def _tuple(self, value, name):
        if self.dims == 2:
            return pair(value, name)
        return (single(value, name, type(self).__name__),)

    def _common(self, in_channels, out_channels, groups, padding_mode, allowed_modes):
        """Check and store channels, groups and padding_mode."""
        in_channels = _channels(in_channels, "in_channels")
        out_channels = _channels(out_channels, "out_channels")
        _check_groups(in_channels, out_channels, groups)
        if padding_mode not in allowed_modes:
            if allowed_modes == ("zeros",):
                raise ValueError(f'Only "zeros" padding mode is supported for '
                                 f'{type(self).__name__}')
            raise ValueError(f"padding_mode must be one of {{'zeros', 'reflect', 'replicate', "
                             f"'circular'}}, but got padding_mode={padding_mode!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.groups, self.padding_mode = int(groups), padding_mode

    def _init_params(self, weight_shape, bias, dtype):
        dtype = np.dtype(np.float32 if dtype is None else dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"{type(self).__name__}: dtype must be float32 or float64, got "
                            f"{dtype}")
        self.weight = Parameter(np.empty(weight_shape, dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty(self.out_channels, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """PyTorch's default init: kaiming_uniform_(a=sqrt(5)) weight, U(+-1/sqrt(fan_in)) bias."""
        w = self.weight
        init.default_init_(w, self.bias, fan_in=int(np.prod(w.shape[1:])))

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * len(self.padding):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * len(self.dilation):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * len(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvBase):
    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        self._common(in_channels, out_channels, groups, padding_mode, _PADDING_MODES)
        d = self.dims
        self.kernel_size = self._tuple(kernel_size, "kernel_size")
        self.stride = self._tuple(stride, "stride")
        self.dilation = self._tuple(dilation, "dilation")
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"Invalid padding string {padding!r}, should be one of "
                                 "{'valid', 'same'}")
            if padding == "same" and self.stride != (1,) * d:
                raise ValueError("padding='same' is not supported for strided convolutions")
        else:
            padding = self._tuple(padding, "padding")
        self.padding = padding
        self.output_padding = (0,) * d
        # F.pad order, last axis first ((W-left, W-right, H-top, H-bottom) in 2-D), for the
        # non-zeros padding modes
        if padding == "same":
            one = (1,) * (2 - d)
            pt, pb, pl, pr = same_padding(one + self.kernel_size, one + self.dilation)
            per_axis = [(pt, pb), (pl, pr)][2 - d:]
        elif padding == "valid":
            per_axis = [(0, 0)] * d
        else:
            per_axis = [(p, p) for p in padding]
        self._reversed_padding_repeated_twice = tuple(v for lr in reversed(per_axis) for v in lr)
        self._init_params((self.out_channels, self.in_channels // self.groups) + self.kernel_size,
                          bias, dtype)

    def forward(self, input):
        conv = F.conv2d if self.dims == 2 else F.conv1d
        if self.padding_mode != "zeros":
            x = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return conv(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                    self.groups)


class _ConvTranspose(_ConvBase):
    transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None):
        super().__init__()
        self._common(in_channels, out_channels, groups, padding_mode, ("zeros",))
        if isinstance(padding, str):
            raise ValueError(f"{type(self).__name__}: string padding {padding!r} is not "
                             "supported; give an int" + (" or a pair of ints" if self.dims == 2
                                                        else ""))
        self.kernel_size = self._tuple(kernel_size, "kernel_size")
        self.stride = self._tuple(stride, "stride")
        self.padding = self._tuple(padding, "padding")
        self.dilation = self._tuple(dilation, "dilation")
        self.output_padding = self._tuple(output_padding, "output_padding")
        self._init_params((self.in_channels, self.out_channels // self.groups) + self.kernel_size,
                          bias, dtype)

    def _output_padding(self, input, output_size):
        d, ndim = self.dims, len(input.shape)
        if ndim not in (d + 1, d + 2):
            raise ValueError(f"Expected {d + 1}D (unbatched) or {d + 2}D (batched) input to "
                             f"conv_transpose{d}d, but got input of size: {list(input.shape)}")
        output_size = list(output_size)
        if len(output_size) == ndim:
            output_size = output_size[ndim - d:]
        if len(output_size) != d:
            raise ValueError(f"ConvTranspose{d}D: for {ndim}D input, output_size must have {d} "
                             f"or {ndim} elements (got {len(output_size)})")
        one, zero = (1,) * (2 - d), (0,) * (2 - d)     # a 1-D layer as 2-D with height 1
        try:
            op = transpose_output_padding(
                one + tuple(int(v) for v in input.shape[-d:]),
                list(one) + [int(v) for v in output_size], one + self.kernel_size,
                one + self.stride, zero + self.padding, one + self.dilation)
        except ValueError as e:
            if d == 2:
                raise
            raise ValueError(f"{type(self).__name__} (sizes shown as (1, L)): {e}") from None
        return tuple(op[2 - d:])

    def forward(self, input, output_size=None):
        op = self.output_padding
        if output_size is not None:
            op = self._output_padding(input, output_size)
        convt = F.conv_transpose2d if self.dims == 2 else F.conv_transpose1d
        return convt(input, self.weight, self.bias, self.stride, self.padding, op, self.groups,
                     self.dilation)


class Conv2d(_Conv):
    """2-D convolution layer, PyTorch's ``nn.Conv2d``.

    ``padding_mode`` 'reflect' | 'replicate' | 'circular' pads with ``F.pad`` (differentiable)
    and then convolves with padding 0; 'zeros' passes the padding to the conv.

    Shape:
        input (N, C_in, H, W) or (C_in, H, W) -> output (N, C_out, OH, OW),
        OH = (H + 2*PH - DH*(KH-1) - 1) // SH + 1 (for 'same': OH = H).
        weight (C_out, C_in/groups, KH, KW), bias (C_out,).

    Examples:
        >>> conv = nn.Conv2d(3, 16, 3, padding=1)
        >>> y = conv(x)            # (N, 3, H, W) -> (N, 16, H, W)
    """


class ConvTranspose2d(_ConvTranspose):
    """Transposed 2-D convolution layer, PyTorch's ``nn.ConvTranspose2d``.

    ``forward(input, output_size=None)``: ``output_size`` ((H, W), or with the N/C prefix)
    picks the output_padding that yields that size (ValueError when out of range).

    Shape:
        input (N, C_in, H, W) or (C_in, H, W) -> output (N, C_out, Hout, Wout),
        Hout = (H-1)*SH - 2*PH + DH*(KH-1) + OPH + 1.
        weight (C_in, C_out/groups, KH, KW), bias (C_out,).

    Examples:
        >>> up = nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1)
        >>> y = up(x, output_size=(2 * x.shape[2], 2 * x.shape[3]))
    """


class Conv1d(_Conv):
    """1-D convolution layer, PyTorch's ``nn.Conv1d`` (``F.conv1d``; non-'zeros'
    ``padding_mode`` pads with ``F.pad`` first).

    Shape:
        input (N, C_in, L) or (C_in, L) -> output (N, C_out, L_out),
        L_out = (L + 2P - D*(K-1) - 1) // S + 1 (for 'same': L_out = L).
        weight (C_out, C_in/groups, K), bias (C_out,).

    Examples:
        >>> nn.Conv1d(16, 33, 3, stride=2)(x)     # x (N, 16, L)
    """

    dims = 1


class ConvTranspose1d(_ConvTranspose):
    """Transposed 1-D convolution layer, PyTorch's ``nn.ConvTranspose1d``.

    ``forward(input, output_size=None)``: ``output_size`` ((L,), or with the N/C prefix) picks
    the output_padding that yields that length (ValueError when out of range).

    Shape:
        input (N, C_in, L) or (C_in, L) -> output (N, C_out, L_out),
        L_out = (L-1)*S - 2*P + D*(K-1) + OP + 1. weight (C_in, C_out/groups, K).
    """

    dims = 1
