"""conv2d and conv_transpose2d (PyTorch semantics, docs/semantics.md §1-§2) over three shared
array routines.

    Conv2dFn           forward  = conv2d_forward(x, w, b)
                       gx       = conv2d_backward_input(gy, w)      (col2im of Wᵀ gy)
                       gw       = conv2d_backward_weight(gy, x)     (gy @ im2col(x)ᵀ)
    ConvTranspose2dFn  forward  = conv2d_backward_input(x, w) + b
                       gx       = conv2d_forward(gy, w)  cropped to x (docs/semantics.md §2.4)
                       gw       = conv2d_backward_weight(x, gy)     (roles swapped)

Both read one ``ConvGeometry`` (nnlite/_convgeom.py) in image -> column direction: for conv2d
the image is the input; for conv_transpose2d it is the output. The routines come from the kernel
table for the backend active at forward time ('cython', 'numpy' or the naive 'reference'); under
'cython', conv2d_forward runs the algorithm of ``nnlite.conv_algorithm`` ('auto': implicit GEMM,
or the direct kernel for depthwise convs; see nnlite/_algorithms.py).
"""
import numpy as np

from .. import kernels
from .._algorithms import conv_algorithm, get_conv_algorithm
from .._config import backend as _active_backend
from .._convgeom import conv2d_geometry, conv_transpose2d_geometry
from ..autograd import Function
from ..tensor import as_tensor

__all__ = ["conv2d", "conv_transpose2d"]

# Legend: N batch, C image channels, F column-side channels, H/W image, OH/OW column grid.


def _dtype(t):
    return None if t is None else t.dtype


def _shape(t):
    return None if t is None else t.shape


class Conv2dFn(Function):
    """y = conv2d(x, w) + b for x (N, C, H, W) or (C, H, W); ``geom`` from conv2d_geometry."""

    def forward(self, x, w, b=None, geom=None):
        self.geom, self.unbatched, self.has_bias = geom, x.ndim == 3, b is not None
        self.backend, self.algorithm = _active_backend(), get_conv_algorithm()
        x4 = x.reshape(geom.n, geom.c, geom.h, geom.w)
        y = kernels.impl("conv2d_forward", self.backend)(x4, w, b, geom)
        assert y.shape == (geom.n, geom.f, geom.oh, geom.ow), (y.shape, geom)
        if self.requires_grad:
            need_x, need_w = self.needs_input_grad[:2]
            self.save_for_backward(x4 if need_w else None, w if need_x else None)
        return y[0] if self.unbatched else y

    def backward(self, gy):
        geom = self.geom
        x4, w = self.saved_tensors
        gy = gy.reshape(geom.n, geom.f, geom.oh, geom.ow)
        gx = gw = gb = None
        with conv_algorithm(self.algorithm):      # the forward's choice, wherever backward runs
            if self.needs_input_grad[0]:
                gx = kernels.impl("conv2d_backward_input", self.backend)(gy, w, geom)
                gx = gx[0] if self.unbatched else gx
            if self.needs_input_grad[1]:
                gw = kernels.impl("conv2d_backward_weight", self.backend)(gy, x4, geom)
        if self.has_bias and self.needs_input_grad[2]:
            gb = gy.sum(axis=(0, 2, 3))
        return (gx, gw, gb) if self.has_bias else (gx, gw)


class ConvTranspose2dFn(Function):
    """y = conv_transpose2d(x, w) + b; ``geom`` from conv_transpose2d_geometry (image = y)."""

    def forward(self, x, w, b=None, geom=None):
        self.geom, self.unbatched, self.has_bias = geom, x.ndim == 3, b is not None
        self.backend, self.algorithm = _active_backend(), get_conv_algorithm()
        x4 = x.reshape(geom.n, geom.f, geom.oh, geom.ow)             # convT input = columns side
        y = kernels.impl("conv2d_backward_input", self.backend)(x4, w, geom)  # (N, C, H, W)
        assert y.shape == (geom.n, geom.c, geom.h, geom.w), (y.shape, geom)
        if b is not None:
            y += b.reshape(geom.c, 1, 1)
        if self.requires_grad:
            need_x, need_w = self.needs_input_grad[:2]
            self.save_for_backward(x4 if need_w else None, w if need_x else None)
        return y[0] if self.unbatched else y

    def backward(self, gy):
        geom = self.geom
        x4, w = self.saved_tensors
        gy = gy.reshape(geom.n, geom.c, geom.h, geom.w)
        gx = gw = gb = None
        with conv_algorithm(self.algorithm):      # the forward's choice, wherever backward runs
            if self.needs_input_grad[0]:
                gx = kernels.impl("conv2d_forward", self.backend)(gy, w, None, geom)
                # the conv may see op // s extra rows/cols when output_padding >= stride: crop
                gx = np.ascontiguousarray(gx[:, :, :geom.oh, :geom.ow])
                gx = gx[0] if self.unbatched else gx
            if self.needs_input_grad[1]:
                gw = kernels.impl("conv2d_backward_weight", self.backend)(x4, gy, geom)
        if self.has_bias and self.needs_input_grad[2]:
            gb = gy.sum(axis=(0, 2, 3))
        return (gx, gw, gb) if self.has_bias else (gx, gw)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation (no kernel flip), PyTorch's ``F.conv2d``.

    Args:
        input: (N, C, H, W) or unbatched (C, H, W), float32 or float64.
        weight: (F, C/groups, KH, KW), same dtype.
        bias: (F,) or None.
        stride, dilation: int or (h, w), positive.
        padding: int, (ph, pw) (zeros, symmetric), 'valid' (= 0) or 'same' (stride 1 only;
            total d*(k-1) per axis, the extra pixel of an odd total goes right/bottom).
        groups: input and output channels split into ``groups`` independent convolutions.

    Shape:
        output (N, F, OH, OW) (or (F, OH, OW)), OH = (H + pt + pb - DH*(KH-1) - 1) // SH + 1,
        likewise OW.

    Examples:
        >>> y = F.conv2d(x, w, b, stride=2, padding=1)
    """
    x, w = as_tensor(input), as_tensor(weight)
    b = None if bias is None else as_tensor(bias)
    geom = conv2d_geometry(x.shape, w.shape, _shape(b), stride, padding, dilation, groups,
                           dtypes=(x.dtype, w.dtype, _dtype(b)))
    if b is None:
        return Conv2dFn.apply(x, w, geom=geom)
    return Conv2dFn.apply(x, w, b, geom=geom)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 2-D convolution (the adjoint of conv2d), PyTorch's ``F.conv_transpose2d``.

    Note the argument order (groups BEFORE dilation) and the weight layout.

    Args:
        input: (N, Cin, H, W) or unbatched (Cin, H, W).
        weight: (Cin, Cout/groups, KH, KW)  -- in-channels first.
        bias: (Cout,) or None.
        padding: int or (ph, pw): crops that many rows/cols from both ends of the full output.
        output_padding: int or (oph, opw), < max(stride, dilation) per axis: extra rows/cols
            appended at the bottom/right.

    Shape:
        output (N, Cout, Hout, Wout), Hout = (H-1)*SH - 2*PH + DH*(KH-1) + OPH + 1, likewise Wout.

    Examples:
        >>> y = F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    """
    x, w = as_tensor(input), as_tensor(weight)
    b = None if bias is None else as_tensor(bias)
    geom = conv_transpose2d_geometry(x.shape, w.shape, _shape(b), stride, padding, output_padding,
                                     groups, dilation, dtypes=(x.dtype, w.dtype, _dtype(b)))
    if b is None:
        return ConvTranspose2dFn.apply(x, w, geom=geom)
    return ConvTranspose2dFn.apply(x, w, b, geom=geom)
