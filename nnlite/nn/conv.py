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


class Conv2d(_ConvBase):
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

    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        in_channels = _channels(in_channels, "in_channels")
        out_channels = _channels(out_channels, "out_channels")
        _check_groups(in_channels, out_channels, groups)
        kernel_size = pair(kernel_size, "kernel_size")
        stride = pair(stride, "stride")
        dilation = pair(dilation, "dilation")
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"Invalid padding string {padding!r}, should be one of "
                                 "{'valid', 'same'}")
            if padding == "same" and stride != (1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions")
        else:
            padding = pair(padding, "padding")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {{'zeros', 'reflect', 'replicate', "
                             f"'circular'}}, but got padding_mode={padding_mode!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.groups, self.padding_mode = dilation, int(groups), padding_mode
        self.output_padding = (0, 0)
        # F.pad order (W-left, W-right, H-top, H-bottom) for the non-zeros padding modes
        if padding == "same":
            pt, pb, pl, pr = same_padding(kernel_size, dilation)
        elif padding == "valid":
            pt = pb = pl = pr = 0
        else:
            pt = pb = padding[0]
            pl = pr = padding[1]
        self._reversed_padding_repeated_twice = (pl, pr, pt, pb)
        self._init_params((out_channels, in_channels // self.groups) + kernel_size, bias, dtype)

    def forward(self, input):
        if self.padding_mode != "zeros":
            x = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class ConvTranspose2d(_ConvBase):
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

    transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None):
        super().__init__()
        in_channels = _channels(in_channels, "in_channels")
        out_channels = _channels(out_channels, "out_channels")
        _check_groups(in_channels, out_channels, groups)
        if padding_mode != "zeros":
            raise ValueError('Only "zeros" padding mode is supported for ConvTranspose2d')
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose2d: string padding {padding!r} is not supported; "
                             "give an int or a pair of ints")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        self.output_padding = pair(output_padding, "output_padding")
        self.groups, self.padding_mode = int(groups), padding_mode
        self._init_params((in_channels, out_channels // self.groups) + self.kernel_size, bias,
                          dtype)

    def _output_padding(self, input, output_size):
        ndim = len(input.shape)
        if ndim not in (3, 4):
            raise ValueError(f"Expected 3D (unbatched) or 4D (batched) input to "
                             f"conv_transpose2d, but got input of size: {list(input.shape)}")
        output_size = list(output_size)
        prefix = ndim - 2
        if len(output_size) == prefix + 2:
            output_size = output_size[prefix:]
        if len(output_size) != 2:
            raise ValueError(f"ConvTranspose2D: for {ndim}D input, output_size must have 2 or "
                             f"{prefix + 2} elements (got {len(output_size)})")
        return transpose_output_padding(tuple(input.shape[-2:]), [int(s) for s in output_size],
                                        self.kernel_size, self.stride, self.padding,
                                        self.dilation)

    def forward(self, input, output_size=None):
        op = self.output_padding
        if output_size is not None:
            op = self._output_padding(input, output_size)
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, op,
                                  self.groups, self.dilation)


def _singles(op, **values):
    return {k: (single(v, k, op),) for k, v in values.items()}


class Conv1d(_ConvBase):
    """1-D convolution layer, PyTorch's ``nn.Conv1d`` (``F.conv1d``; non-'zeros'
    ``padding_mode`` pads with ``F.pad`` first).

    Shape:
        input (N, C_in, L) or (C_in, L) -> output (N, C_out, L_out),
        L_out = (L + 2P - D*(K-1) - 1) // S + 1 (for 'same': L_out = L).
        weight (C_out, C_in/groups, K), bias (C_out,).

    Examples:
        >>> nn.Conv1d(16, 33, 3, stride=2)(x)     # x (N, 16, L)
    """

    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        in_channels = _channels(in_channels, "in_channels")
        out_channels = _channels(out_channels, "out_channels")
        _check_groups(in_channels, out_channels, groups)
        t = _singles("Conv1d", kernel_size=kernel_size, stride=stride, dilation=dilation)
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"Invalid padding string {padding!r}, should be one of "
                                 "{'valid', 'same'}")
            if padding == "same" and t["stride"] != (1,):
                raise ValueError("padding='same' is not supported for strided convolutions")
        else:
            padding = (single(padding, "padding", "Conv1d"),)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {{'zeros', 'reflect', 'replicate', "
                             f"'circular'}}, but got padding_mode={padding_mode!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = t["kernel_size"], t["stride"], padding
        self.dilation, self.groups, self.padding_mode = t["dilation"], int(groups), padding_mode
        self.output_padding = (0,)
        if padding == "same":
            _, _, left, right = same_padding((1, t["kernel_size"][0]), (1, t["dilation"][0]))
        elif padding == "valid":
            left = right = 0
        else:
            left = right = padding[0]
        self._reversed_padding_repeated_twice = (left, right)
        self._init_params((out_channels, in_channels // self.groups) + self.kernel_size, bias,
                          dtype)

    def forward(self, input):
        if self.padding_mode != "zeros":
            x = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv1d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv1d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class ConvTranspose1d(_ConvBase):
    """Transposed 1-D convolution layer, PyTorch's ``nn.ConvTranspose1d``.

    ``forward(input, output_size=None)``: ``output_size`` ((L,), or with the N/C prefix) picks
    the output_padding that yields that length (ValueError when out of range).

    Shape:
        input (N, C_in, L) or (C_in, L) -> output (N, C_out, L_out),
        L_out = (L-1)*S - 2*P + D*(K-1) + OP + 1. weight (C_in, C_out/groups, K).
    """

    transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None):
        super().__init__()
        in_channels = _channels(in_channels, "in_channels")
        out_channels = _channels(out_channels, "out_channels")
        _check_groups(in_channels, out_channels, groups)
        if padding_mode != "zeros":
            raise ValueError('Only "zeros" padding mode is supported for ConvTranspose1d')
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose1d: string padding {padding!r} is not supported; "
                             "give an int")
        t = _singles("ConvTranspose1d", kernel_size=kernel_size, stride=stride, padding=padding,
                     dilation=dilation, output_padding=output_padding)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = t["kernel_size"], t["stride"], t["padding"]
        self.dilation, self.output_padding = t["dilation"], t["output_padding"]
        self.groups, self.padding_mode = int(groups), padding_mode
        self._init_params((in_channels, out_channels // self.groups) + self.kernel_size, bias,
                          dtype)

    def _output_padding(self, input, output_size):
        ndim = len(input.shape)
        if ndim not in (2, 3):
            raise ValueError(f"Expected 2D (unbatched) or 3D (batched) input to "
                             f"conv_transpose1d, but got input of size: {list(input.shape)}")
        output_size = list(output_size)
        if len(output_size) == ndim:
            output_size = output_size[-1:]
        if len(output_size) != 1:
            raise ValueError(f"ConvTranspose1D: for {ndim}D input, output_size must have 1 or "
                             f"{ndim} elements (got {len(output_size)})")
        try:
            op = transpose_output_padding(
                (1, int(input.shape[-1])), (1, int(output_size[0])), (1,) + self.kernel_size,
                (1,) + self.stride, (0,) + self.padding, (1,) + self.dilation)
        except ValueError as e:
            raise ValueError(f"ConvTranspose1d (sizes shown as (1, L)): {e}") from None
        return op[1:]

    def forward(self, input, output_size=None):
        op = self.output_padding
        if output_size is not None:
            op = self._output_padding(input, output_size)
        return F.conv_transpose1d(input, self.weight, self.bias, self.stride, self.padding, op,
                                  self.groups, self.dilation)
