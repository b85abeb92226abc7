"""Pooling and ROI geometry: argument normalisation, output sizes, adaptive bins, every check.

This is the only place (besides the independent reference loops) that computes pooled output
sizes. Checks follow PyTorch's order (docs/semantics.md §3.3, §4.2, §5.5, §11) but raise ValueError
(bad values) or TypeError (bad types) with the offending numbers in the message.

Per axis: L input length, k kernel, s stride, p padding, d dilation, keff = d·(k−1)+1.
"""
import math
import numbers
from collections import namedtuple

import numpy as np

from ._shape import pair

PoolGeom = namedtuple("PoolGeom", "kernel stride padding dilation ceil_mode out")
PoolGeom.__doc__ = "Validated pool geometry: (h, w) pairs and the output size (oh, ow)."

_FLOAT_DTYPES = (np.float32, np.float64)
# geometry values beyond this would overflow the kernels' 64-bit index arithmetic
LIMIT = 2 ** 62


def pool_output_size(L, k, s, p, d, ceil_mode, p_end=None):
    """Output length of a max/avg pool along one axis (docs/semantics.md §3.2, ceil-mode drop
    rule included); ``p_end`` is the end padding when it differs from the start padding ``p``
    (ONNX pads)."""
    p_end = p if p_end is None else p_end
    out = (L + p + p_end - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= L + p:
        # the last window would start in the right padding: PyTorch drops it
        out -= 1
    return out


def adaptive_bins(in_len, out_len):
    """(starts, ends) int64 arrays of the adaptive bins, end exclusive (docs/semantics.md §5.2)."""
    i = np.arange(out_len, dtype=np.int64)
    starts = (i * in_len) // out_len
    ends = ((i + 1) * in_len + out_len - 1) // out_len
    return starts, ends


def check_float_input(x, name, ndims=(3, 4)):
    """Input array checks shared by the pools: float dtype, 3-D/4-D, non-empty C, H, W."""
    if x.dtype.type not in _FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 input, got dtype {x.dtype}")
    if x.ndim not in ndims:
        want = " or ".join(f"{n}D" for n in ndims)
        raise ValueError(f"{name}: non-empty {want} (batch mode) tensor expected for input, "
                         f"but got shape {tuple(x.shape)} ({x.ndim}-D)")
    lead = 1 if x.ndim == 4 else 0
    if any(n == 0 for n in x.shape[lead:]):
        raise ValueError(f"{name}: expected input with optional 0 dim batch size and non-zero "
                         f"C, H, W, but got shape {list(x.shape)}")


def _stride_pair(stride, kernel):
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return kernel
    return pair(stride, "stride")


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)) and not (
            isinstance(value, numbers.Integral) and value in (0, 1)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def pool_geometry(shape, kernel_size, stride, padding, dilation, ceil_mode, name):
    """Validate max/avg pool arguments against an input ``shape`` (..., H, W) -> PoolGeom."""
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = _stride_pair(stride, (kh, kw))
    ph, pw = pair(padding, "padding")
    dh, dw = pair(dilation, "dilation")
    ceil_mode = _check_bool(ceil_mode, "ceil_mode")
    for arg, (vh, vw) in (("kernel_size", (kh, kw)), ("stride", (sh, sw)),
                          ("padding", (ph, pw)), ("dilation", (dh, dw))):
        if max(abs(vh), abs(vw)) > LIMIT:
            raise ValueError(f"{name}: {arg}=({vh}, {vw}) is out of range (|value| <= 2**62)")
    if sh == 0 or sw == 0:
        raise ValueError(f"{name}: stride should not be zero, got stride=({sh}, {sw})")
    if kh <= 0 or kw <= 0:
        raise ValueError(f"{name}: kernel size should be greater than zero, but got "
                         f"kH: {kh} kW: {kw}")
    if sh < 0 or sw < 0:
        raise ValueError(f"{name}: stride should be greater than zero, but got dH: {sh} dW: {sw}")
    if dh <= 0 or dw <= 0:
        raise ValueError(f"{name}: dilation should be greater than zero, but got "
                         f"dilationH: {dh} dilationW: {dw}")
    if ph < 0 or pw < 0:
        raise ValueError(f"{name}: pad must be non-negative, but got pad: ({ph}, {pw})")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{name}: pad should be smaller than or equal to half of kernel size, "
                         f"but got padH = {ph}, padW = {pw}, kH = {kh}, kW = {kw}")
    H, W = shape[-2:]
    oh = pool_output_size(H, kh, sh, ph, dh, ceil_mode)
    ow = pool_output_size(W, kw, sw, pw, dw, ceil_mode)
    if oh < 1 or ow < 1:
        c = shape[-3]
        raise ValueError(f"{name}: Given input size: ({c}x{H}x{W}). Calculated output size: "
                         f"({c}x{oh}x{ow}). Output size is too small (kernel=({kh}, {kw}), "
                         f"stride=({sh}, {sw}), padding=({ph}, {pw}), dilation=({dh}, {dw}), "
                         f"ceil_mode={ceil_mode})")
    return PoolGeom((kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil_mode, (oh, ow))


def check_divisor(divisor_override, name="avg_pool2d"):
    """None, or a non-zero int (negative values simply divide, as PyTorch)."""
    if divisor_override is None:
        return None
    if isinstance(divisor_override, bool) or not isinstance(divisor_override, numbers.Integral):
        raise TypeError(f"{name}: divisor_override must be an int or None, "
                        f"got {divisor_override!r}")
    if divisor_override == 0:
        raise ValueError(f"{name}: divisor must be not zero, got divisor_override=0")
    if abs(divisor_override) > LIMIT:
        raise ValueError(f"{name}: divisor_override={divisor_override} is out of range "
                         f"(|divisor| <= 2**62)")
    return int(divisor_override)


def adaptive_output_size(output_size, in_hw, name):
    """int, or (oh, ow) with None = keep that input size -> (oh, ow); entries >= 0
    (docs/semantics.md §5.1)."""
    if isinstance(output_size, bool):
        raise TypeError(f"{name}: output_size must be an int or a pair, got {output_size!r}")
    if isinstance(output_size, numbers.Integral):
        sizes = (int(output_size), int(output_size))
    elif isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"{name}: output_size must be 2, got {output_size!r} "
                             f"(length {len(output_size)})")
        sizes = []
        for v, keep in zip(output_size, in_hw):
            if v is None:
                sizes.append(int(keep))
            elif isinstance(v, numbers.Integral) and not isinstance(v, bool):
                sizes.append(int(v))
            else:
                raise TypeError(f"{name}: output_size entries must be ints or None, "
                                f"got {output_size!r}")
        sizes = tuple(sizes)
    else:
        raise TypeError(f"{name}: output_size must be an int or a pair, got {output_size!r}")
    if sizes[0] < 0 or sizes[1] < 0:
        raise ValueError(f"{name}: elements of output_size must be greater than or equal to 0 "
                         f"but received {{{sizes[0]}, {sizes[1]}}}")
    if max(sizes) > LIMIT:
        raise ValueError(f"{name}: output_size {sizes} is out of range (entries <= 2**62)")
    return sizes


def roi_output_size(output_size, name):
    """ROI ops: int or (ph, pw) pair of positive ints."""
    if isinstance(output_size, bool) or not (
            isinstance(output_size, numbers.Integral)
            or (isinstance(output_size, (tuple, list)) and len(output_size) == 2)):
        raise TypeError(f"{name}: output_size must be an int or a pair of ints, "
                        f"got {output_size!r}")
    oh, ow = pair(output_size, "output_size")
    if oh <= 0 or ow <= 0:
        raise ValueError(f"{name}: output_size must be positive, got ({oh}, {ow})")
    return oh, ow


def check_scale(spatial_scale, name):
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, numbers.Real):
        raise TypeError(f"{name}: spatial_scale must be a float, got {spatial_scale!r}")
    if not math.isfinite(spatial_scale):
        raise ValueError(f"{name}: spatial_scale must be finite, got {spatial_scale!r}")
    return float(spatial_scale)
