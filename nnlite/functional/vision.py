"""Resampling ops with PyTorch's semantics: ``interpolate`` (and the deprecated ``upsample``,
``upsample_nearest``, ``upsample_bilinear``), ``pixel_shuffle`` and ``pixel_unshuffle``.

interpolate runs the kernel pair ``interpolate_forward`` / ``interpolate_backward`` of the active
backend ('numpy' separable gathers, or the naive 'reference' loops; the 'cython' backend uses
the NumPy one) on planes (N*C, *spatial); the coordinate rules are documented in
``nnlite/kernels/interpolate_numpy.py``. The backward is the exact adjoint of the forward.
"""
import math
import numbers

import numpy as np

from .. import kernels
from ..autograd import Function
from ..tensor import as_tensor

__all__ = ["interpolate", "upsample", "upsample_nearest", "upsample_bilinear", "pixel_shuffle",
           "pixel_unshuffle"]

_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "area")
# the spatial rank each mode accepts (input rank = spatial rank + 2)
_MODE_DIMS = {"nearest": (1, 2), "nearest-exact": (1, 2), "area": (1, 2), "linear": (1,),
              "bilinear": (2,), "bicubic": (2,)}
# output sizes beyond this would overflow the index arithmetic
_LIMIT = 2 ** 62


class InterpolateFn(Function):
    """y = resample(x) over the trailing 1 or 2 axes; gx = the transposed resampling of gy."""

    def forward(self, x, out_size, mode, align_corners, scales, antialias, nearest_rule):
        nd = len(out_size)
        lead = x.shape[:-nd]
        self.in_shape = x.shape
        self.args = (mode, align_corners, scales, antialias, nearest_rule)
        planes = np.ascontiguousarray(x).reshape((int(np.prod(lead)),) + x.shape[-nd:])
        y = kernels.impl("interpolate_forward")(planes, tuple(out_size), *self.args)
        return y.reshape(lead + tuple(out_size))

    def backward(self, gy):
        nd = len(self.args[2])
        in_size = self.in_shape[-nd:]
        lead = gy.shape[:-nd]
        planes = np.ascontiguousarray(gy).reshape((int(np.prod(lead)),) + gy.shape[-nd:])
        gx = kernels.impl("interpolate_backward")(planes, tuple(in_size), *self.args)
        return gx.reshape(self.in_shape)


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _sizes_text(names, values):
    return ", ".join(f"{n}: {v}" for n, v in zip(names, values))


def _resolve(x, size, scale_factor, mode, align_corners, recompute_scale_factor, antialias):
    """PyTorch's argument checks and size rules -> (out_size, coordinate scales, align_corners)."""
    if not isinstance(mode, str) or mode not in _MODES:
        extra = (" (nnlite does not implement 'trilinear' or 'lanczos')"
                 if mode in ("trilinear", "lanczos") else "")
        raise ValueError(f"interpolate: mode must be one of {', '.join(_MODES)}, got {mode!r}"
                         f"{extra}")
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError("align_corners option can only be set with the interpolating modes: "
                             f"linear | bilinear | bicubic | trilinear (got mode={mode!r}, "
                             f"align_corners={align_corners!r})")
    else:
        if align_corners is None:
            align_corners = False
        if not isinstance(align_corners, (bool, np.bool_)):
            raise TypeError(f"interpolate: align_corners must be a bool or None, got "
                            f"{align_corners!r}")
        align_corners = bool(align_corners)
    if not isinstance(antialias, (bool, np.bool_)):
        raise TypeError(f"interpolate: antialias must be a bool, got {antialias!r}")
    if x.dtype.kind != "f":
        raise TypeError(f"interpolate: expected a float32 or float64 input, got dtype {x.dtype}")
    dim = x.ndim - 2
    if dim not in _MODE_DIMS[mode]:
        want = " or ".join(f"{d + 2}-D" for d in _MODE_DIMS[mode])
        raise ValueError(f"interpolate: mode {mode!r} needs a {want} input (N, C, ...), got "
                         f"input of shape {tuple(x.shape)} ({x.ndim}-D)")
    spatial = tuple(int(s) for s in x.shape[2:])
    if size is not None and scale_factor is not None:
        raise ValueError(f"only one of size or scale_factor should be defined (got "
                         f"size={size!r}, scale_factor={scale_factor!r})")
    if size is None and scale_factor is None:
        raise ValueError("either size or scale_factor should be defined")
    scale_factors = None
    if size is not None:
        if isinstance(size, (list, tuple)):
            if len(size) != dim:
                raise ValueError(f"Input and output must have the same number of spatial "
                                 f"dimensions, but got input with spatial dimensions of "
                                 f"{list(spatial)} and output size of {size!r}")
            sizes = list(size)
        else:
            sizes = [size] * dim
        if not all(_is_int(v) for v in sizes):
            raise TypeError(f"expected size to be an int or a tuple of {dim} ints, but got "
                            f"size={size!r} (types {[type(v).__name__ for v in sizes]})")
        out = [int(v) for v in sizes]
    else:
        if isinstance(scale_factor, (list, tuple)):
            if len(scale_factor) != dim:
                raise ValueError(f"Input and scale_factor must have the same number of spatial "
                                 f"dimensions, but got input with spatial dimensions of "
                                 f"{list(spatial)} and scale_factor of shape {scale_factor!r}")
            factors = list(scale_factor)
        else:
            factors = [scale_factor] * dim
        if not all(_is_real(v) for v in factors):
            raise TypeError(f"interpolate: scale_factor must be a float or a tuple of {dim} "
                            f"floats, got {scale_factor!r}")
        factors = [float(v) for v in factors]
        if not all(math.isfinite(v) for v in factors):
            raise ValueError(f"interpolate: scale_factor must be finite, got {scale_factor!r}")
        scale_factors = factors
    if recompute_scale_factor and size is not None:
        raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")
    if mode == "area" and size is None:
        recompute_scale_factor = True
    if scale_factors is not None:
        products = [n * f for n, f in zip(spatial, scale_factors)]
        if max(abs(p) for p in products) >= _LIMIT:
            raise ValueError(f"interpolate: scale_factor {scale_factor!r} gives an output size "
                             f"out of range for input size {list(spatial)}")
        if recompute_scale_factor:
            out = [int(p) for p in products]          # PyTorch truncates here...
            scale_factors = None
        else:
            out = [math.floor(p) for p in products]  # ...and floors in C++
    if antialias and not (mode in ("bilinear", "bicubic") and x.ndim == 4):
        raise ValueError(f"Anti-alias option is restricted to bilinear and bicubic modes and "
                         f"requires a 4-D tensor as input (got mode={mode!r}, input of "
                         f"{x.ndim} dims)")
    if max(abs(v) for v in out) >= _LIMIT:
        raise ValueError(f"interpolate: output size {out} is out of range")
    if mode != "area":
        names = ("W",) if dim == 1 else ("H", "W")
        if min(spatial) <= 0 or min(out) <= 0:
            raise ValueError(f"Input and output sizes should be greater than 0, but got input "
                             f"({_sizes_text(names, spatial)}) output "
                             f"({_sizes_text(names, out)})")
        if x.shape[1] == 0:
            raise ValueError(f"interpolate: non-empty {x.ndim}D data tensor expected but got a "
                             f"tensor with sizes {list(x.shape)}")
    scales = tuple(scale_factors) if scale_factors is not None else (None,) * dim
    return tuple(out), scales, align_corners


def _nearest_rule(x, out):
    """Which of PyTorch's two nearest-neighbour CPU kernels computes the forward.

    1-D inputs use the generic indexing (arithmetic in the input dtype); 2-D inputs use
    ``nearest_idx`` (float32 arithmetic, special cases out == in and out == 2*in) when
    OH + OW <= 128, the generic one otherwise. (PyTorch also takes ``nearest_idx`` for a
    channels-last input with C > 3, which for an NCHW array means H == W == 1, where every rule
    gives index 0.) The two differ only in rare rounding cases and when a scale factor is given
    with out == in or out == 2*in.
    """
    if x.ndim == 4 and out[0] + out[1] <= 128:
        return "index"
    return "generic"


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the spatial axes of (N, C, L) or (N, C, H, W) input (PyTorch's F.interpolate).

    Args:
        size: output spatial size (int or tuple). Exactly one of size / scale_factor.
        scale_factor: float or tuple; the output size is floor(in * scale_factor). Unless
            ``recompute_scale_factor`` is True, the coordinates use 1 / scale_factor (not
            in / out), as PyTorch.
        mode: 'nearest' (3-D/4-D), 'nearest-exact' (3-D/4-D), 'linear' (3-D),
            'bilinear' (4-D), 'bicubic' (4-D; Keys' kernel, A = -0.75, border clamped),
            'area' (3-D/4-D; adaptive average pooling).
        align_corners: linear modes only; True maps the corner pixel centres onto each other
            (scale (in-1)/(out-1)), False (default) maps the pixel areas.
        recompute_scale_factor: True computes the output size from scale_factor and then uses
            in/out for the coordinates.
        antialias: bilinear/bicubic on 4-D input: when downsampling, widen the filter by the
            scale (triangle, or Keys' kernel with a = -0.5 as PIL) and normalise the weights;
            axes whose size does not change are copied.

    Nearest modes on 4-D input reproduce PyTorch's CPU kernel choice (``_nearest_rule``).
    The backward is always the exact transpose of the forward. Where PyTorch 2.13's CPU
    kernels contradict themselves, nnlite keeps the forward and its transpose:
    - antialias with an output width of 1 while the height changes: PyTorch's vertical pass
      gives every output row the first row's filter (all rows come out equal); nnlite filters
      each row (what PyTorch itself gives for the transposed image);
    - nearest with a scale factor on 3-D input or large 4-D outputs (OH + OW > 128): PyTorch's
      backward indexes with ``nearest_idx`` while its forward used the generic rule (they differ
      when out == in or out == 2*in under a scale factor != 1, 2);
    - bicubic / antialias when an axis keeps its size under a scale factor != 1: PyTorch's
      backward copies (bicubic) or filters (antialias) where its forward did the opposite.

    Shape:
        (N, C, L) -> (N, C, L_out); (N, C, H, W) -> (N, C, H_out, W_out).

    Examples:
        >>> F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        >>> F.interpolate(x, size=(112, 112), mode="bicubic", antialias=True)
    """
    x = as_tensor(input)
    out, scales, ac = _resolve(x, size, scale_factor, mode, align_corners,
                               recompute_scale_factor, antialias)
    if mode == "area":
        from .pooling import adaptive_avg_pool1d, adaptive_avg_pool2d

        pool = adaptive_avg_pool1d if x.ndim == 3 else adaptive_avg_pool2d
        return pool(x, out if x.ndim == 4 else out[0])
    kmode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    rule = _nearest_rule(x, out) if mode in ("nearest", "nearest-exact") else "generic"
    return InterpolateFn.apply(x, out_size=out, mode=kmode, align_corners=ac, scales=scales,
                               antialias=bool(antialias), nearest_rule=rule)


def _deprecated(name):
    import warnings

    warnings.warn(f"`nn.functional.{name}` is deprecated. Use `nn.functional.interpolate` "
                  "instead.", stacklevel=3)


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Deprecated alias of ``interpolate`` (warns, as PyTorch)."""
    _deprecated("upsample")
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    """Deprecated: ``interpolate(input, size, scale_factor, mode='nearest')`` (warns)."""
    _deprecated("upsample_nearest")
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    """Deprecated: ``interpolate(..., mode='bilinear', align_corners=True)`` (warns)."""
    _deprecated("upsample_bilinear")
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


# ------------------------------------------------------------------------------ pixel shuffle
class PixelShuffleFn(Function):
    """A fixed permutation of elements (reshape, transpose, reshape); backward inverts it.

    shuffle:   (*, C*r*r, H, W) -> (*, C, r, r, H, W) -> (*, C, H, r, W, r) -> (*, C, H*r, W*r)
    unshuffle: (*, C, H*r, W*r) -> (*, C, H, r, W, r) -> (*, C, r, r, H, W) -> (*, C*r*r, H, W)
    """

    def forward(self, x, r, unshuffle):
        self.in_shape, self.r, self.unshuffle = x.shape, r, unshuffle
        return self._permute(x, r, unshuffle)

    @staticmethod
    def _permute(x, r, unshuffle):
        lead, (c, h, w) = x.shape[:-3], x.shape[-3:]
        k = len(lead)
        if unshuffle:
            v = x.reshape(lead + (c, h // r, r, w // r, r))
            v = v.transpose(tuple(range(k)) + (k, k + 2, k + 4, k + 1, k + 3))
            return np.ascontiguousarray(v).reshape(lead + (c * r * r, h // r, w // r))
        v = x.reshape(lead + (c // (r * r), r, r, h, w))
        v = v.transpose(tuple(range(k)) + (k, k + 3, k + 1, k + 4, k + 2))
        return np.ascontiguousarray(v).reshape(lead + (c // (r * r), h * r, w * r))

    def backward(self, gy):
        return self._permute(gy, self.r, not self.unshuffle)


def _factor(value, op, name):
    if not _is_int(value):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{op} expects a positive {name}, but got {value}")
    return int(value)


def pixel_shuffle(input, upscale_factor):
    """Rearrange (*, C*r**2, H, W) into (*, C, H*r, W*r) (sub-pixel convolution output):
    out[..., c, h*r + i, w*r + j] = in[..., c*r*r + i*r + j, h, w].

    Shape: (*, C*r**2, H, W) -> (*, C, H*r, W*r), any number of leading dims.
    """
    x = as_tensor(input)
    r = _factor(upscale_factor, "pixel_shuffle", "upscale_factor")
    if x.ndim < 3:
        raise ValueError(f"pixel_shuffle expects input to have at least 3 dimensions, but got "
                         f"input with {x.ndim} dimension(s) (shape {tuple(x.shape)})")
    c = x.shape[-3]
    if c % (r * r):
        raise ValueError(f"pixel_shuffle expects its input's 'channel' dimension to be divisible "
                         f"by the square of upscale_factor, but input.size(-3)={c} is not "
                         f"divisible by {r * r}")
    return PixelShuffleFn.apply(x, r=r, unshuffle=False)


def pixel_unshuffle(input, downscale_factor):
    """The inverse of pixel_shuffle: (*, C, H*r, W*r) -> (*, C*r**2, H, W).

    Shape: (*, C, H*r, W*r) -> (*, C*r**2, H, W), any number of leading dims.
    """
    x = as_tensor(input)
    r = _factor(downscale_factor, "pixel_unshuffle", "downscale_factor")
    if x.ndim < 3:
        raise ValueError(f"pixel_unshuffle expects input to have at least 3 dimensions, but got "
                         f"input with {x.ndim} dimension(s) (shape {tuple(x.shape)})")
    h, w = x.shape[-2:]
    if h % r:
        raise ValueError(f"pixel_unshuffle expects height to be divisible by downscale_factor, "
                         f"but input.size(-2)={h} is not divisible by {r}")
    if w % r:
        raise ValueError(f"pixel_unshuffle expects width to be divisible by downscale_factor, "
                         f"but input.size(-1)={w} is not divisible by {r}")
    return PixelShuffleFn.apply(x, r=r, unshuffle=True)

