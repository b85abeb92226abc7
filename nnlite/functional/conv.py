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
import contextlib

import numpy as np

from .. import kernels
from .._algorithms import conv_algorithm, get_conv_algorithm
from .._config import backend as _active_backend
from .._convgeom import conv2d_geometry, conv_transpose2d_geometry
from ..autograd import Function
from ..tensor import as_tensor
from ._checks import single

__all__ = ["conv2d", "conv_transpose2d", "conv1d", "conv_transpose1d"]

# Legend: N batch, C image channels, F column-side channels, H/W image, OH/OW column grid.


def _dtype(t):
    return None if t is None else t.dtype


def _shape(t):
    return None if t is None else t.shape


def _algorithm_of(fn):
    """A context with the conv algorithm ``fn``'s forward ran under (a no-op when it is the
    current one, as in a training step)."""
    if fn.algorithm == get_conv_algorithm():
        return contextlib.nullcontext()
    return conv_algorithm(fn.algorithm)


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
        with _algorithm_of(self):                 # the forward's choice, wherever backward runs
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
        with _algorithm_of(self):                 # the forward's choice, wherever backward runs
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


def _conv2d_affine_relu(x, weight, scale, shift, stride, padding, dilation, groups, out=None):
    """relu(conv2d(x, weight * scale[f]) + shift[f]) on arrays, no autograd: an eval-mode
    conv -> BatchNorm -> ReLU with the BatchNorm folded into the conv (scale, shift per output
    channel) and the shift and ReLU in the conv's own write-out: one native call, no BatchNorm
    or ReLU pass over the output. ``out`` (N, F, OH*OW, channel planes contiguous, e.g. a
    channel slice of a concatenation's buffer) receives the result. Returns the (N, F, OH, OW)
    array, or None off the 'cython' backend (the caller then runs the three ops itself). Where
    the chosen algorithm's kernel takes no epilogue ('im2col' on a k x k conv, 'winograd'), the
    shift and the ReLU follow the conv as one in-place pass each."""
    if _active_backend() != "cython" or x.ndim != 4:
        return None
    try:
        from ..kernels.conv_cython import fast_forward, native_algorithm
    except ImportError:  # pragma: no cover - depends on the build
        return None
    dtype = x.dtype
    geom = conv2d_geometry(x.shape, weight.shape, None, stride, padding, dilation, groups,
                           dtypes=(dtype, weight.dtype, None))
    if dtype not in (np.float32, np.float64):
        return None
    algo, args = native_algorithm(geom)
    w = (weight * scale.reshape(-1, 1, 1, 1)).astype(dtype, copy=False)
    shift = shift.astype(dtype, copy=False)
    if algo == "im2col" and geom.is_pointwise and geom.g == 1:
        # a 1x1 conv is one GEMM per image on the image itself: W (F, C) @ x[n] (C, H*W),
        # the shift and the ReLU in the GEMM's write-out (the whole-batch GEMM,
        # conv_cython._pointwise_forward, measured slower on the digits evaluation's 256
        # images of 8x8: 12-12.5 against 9-10 ms per pass, one Zen 4 core)
        from ..kernels.gemm_ops import gemm_batched

        y = np.empty((geom.n, geom.f, geom.l), dtype=dtype) if out is None else out
        gemm_batched(w.reshape(1, geom.f, geom.c), np.ascontiguousarray(x).reshape(
            geom.n, geom.c, geom.l), y, bias=shift, activation="relu")
        return y.reshape(geom.n, geom.f, geom.oh, geom.ow)
    if args is None or algo == "winograd":
        # a kernel without an epilogue: the conv, then the shift and the ReLU in place
        y = kernels.impl("conv2d_forward", "cython")(x, w, None, geom)
        y = y.reshape(geom.n, geom.f, geom.l)
        if out is not None:
            out[...] = y
            y = out
        y += shift.reshape(-1, 1)
        np.maximum(y, 0, out=y)                          # NaN propagates, as relu's NumPy path
        return y.reshape(geom.n, geom.f, geom.oh, geom.ow)
    return fast_forward(algo, x, w, shift, geom, args, out=out, act=1)


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


# ------------------------------------------------------------------------------ 1-D
# conv1d / conv_transpose1d are the 2-D ops on a height-1 image: (N, C, L) -> (N, C, 1, L),
# weight (F, C/G, K) -> (F, C/G, 1, K), stride/padding/dilation (1, s) / (0, p) / (1, d). The
# reshapes are differentiable views; all geometry checks run in nnlite/_convgeom.py, and their
# messages are prefixed with the 1-D op's name.


def _sizes(shape):
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _check_1d(op, x, w, weight_layout):
    if x.ndim not in (2, 3):
        raise ValueError(f"Expected 2D (unbatched) or 3D (batched) input to {op}, but got input "
                         f"of size: {_sizes(x.shape)}")
    if w.ndim != 3:
        raise ValueError(f"{op}: weight must be 3-dimensional {weight_layout}, got weight of "
                         f"size {_sizes(w.shape)}")


def _as_2d(op, fn, x, *args, **kwargs):
    """fn on the height-1 view of x, squeezed back; 2-D error messages renamed for ``op``."""
    try:
        y = fn(x.unsqueeze(-2), *args, **kwargs)
    except ValueError as e:
        raise ValueError(f"{op} (computed as a 2-D op over (N, C, 1, L)): {e}") from None
    except TypeError as e:
        raise TypeError(f"{op}: {e}") from None
    return y.squeeze(-2)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D cross-correlation, PyTorch's ``F.conv1d``.

    Args:
        input: (N, C, L) or unbatched (C, L). weight: (F, C/groups, K). bias: (F,) or None.
        stride, dilation: int or (s,). padding: int, (p,), 'valid' or 'same' (stride 1; the
            extra element of an odd total goes right).

    Shape:
        output (N, F, L_out) (or (F, L_out)), L_out = (L + 2p - d*(K-1) - 1) // s + 1.

    Examples:
        >>> y = F.conv1d(x, w, b, stride=2, padding=1)
    """
    x, w = as_tensor(input), as_tensor(weight)
    _check_1d("conv1d", x, w, "(out_channels, in_channels/groups, kW)")
    s = single(stride, "stride", "conv1d")
    d = single(dilation, "dilation", "conv1d")
    p = padding if isinstance(padding, str) else (0, single(padding, "padding", "conv1d"))
    return _as_2d("conv1d", conv2d, x, w.unsqueeze(2), bias, (1, s), p, (1, d), groups)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 1-D convolution (the adjoint of conv1d), PyTorch's ``F.conv_transpose1d``.

    Args:
        input: (N, Cin, L) or (Cin, L). weight: (Cin, Cout/groups, K). bias: (Cout,) or None.
        output_padding: < max(stride, dilation); appended at the right.

    Shape:
        output (N, Cout, L_out), L_out = (L-1)*s - 2p + d*(K-1) + output_padding + 1.

    Examples:
        >>> y = F.conv_transpose1d(x, w, stride=2, padding=1, output_padding=1)
    """
    x, w = as_tensor(input), as_tensor(weight)
    _check_1d("conv_transpose1d", x, w, "(in_channels, out_channels/groups, kW)")
    s = single(stride, "stride", "conv_transpose1d")
    d = single(dilation, "dilation", "conv_transpose1d")
    if isinstance(padding, str):
        raise TypeError(f"conv_transpose1d: padding must be an int or a tuple of one int, got "
                        f"{padding!r} (string padding is not defined for transposed conv)")
    p = single(padding, "padding", "conv_transpose1d")
    op = single(output_padding, "output_padding", "conv_transpose1d")
    return _as_2d("conv_transpose1d", conv_transpose2d, x, w.unsqueeze(2), bias, (1, s),
                  (0, p), (0, op), groups, (1, d))
