"""Conv geometry: the ONLY place that computes output sizes and validates conv arguments for the
fast paths (docs/semantics.md §1.2, §1.5, §1.7, §2.2, §2.6).

A ``ConvGeometry`` describes one conv2d in "image -> columns" direction:

    image  (N, C, H, W)   --im2col-->   columns (N, C*KH*KW, OH*OW)
    weight (F, C/G, KH, KW);  conv output (N, F, OH, OW)

conv_transpose2d is the adjoint of a conv2d whose *image* is the transposed conv's output, so its
geometry is the same object with the roles read backwards: image = convT output (Cout channels,
Hout x Wout), F = convT in-channels, (OH, OW) = convT input size. The convT weight
(Cin, Cout/G, KH, KW) is exactly the conv weight (F, C/G, KH, KW) of that conv2d.

Legend: N batch, C image channels, F column-side channels, G groups, H/W image, OH/OW column
grid, KH/KW kernel, SH/SW stride, DH/DW dilation, PT/PB/PL/PR padding top/bottom/left/right.
"""
import numbers
from dataclasses import dataclass

import numpy as np

from ._shape import pair

# Column workspace budget per call: the batch is processed in chunks of whole images so that the
# column buffer stays below this many bytes (at least one image per chunk).
COL_BUDGET_BYTES = 64 * 2 ** 20


@dataclass(frozen=True)
class ConvGeometry:
    n: int
    c: int
    h: int
    w: int
    f: int
    g: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pb: int
    pl: int
    pr: int
    oh: int
    ow: int

    # ---------------------------------------------------------------- derived sizes
    @property
    def cg(self):
        return self.c // self.g

    @property
    def fg(self):
        return self.f // self.g

    @property
    def k(self):
        """Reduction length of one output element: CG*KH*KW."""
        return self.cg * self.kh * self.kw

    @property
    def l(self):  # noqa: E743 - the column count, as in Caffe
        return self.oh * self.ow

    @property
    def stride(self):
        return (self.sh, self.sw)

    @property
    def dilation(self):
        return (self.dh, self.dw)

    @property
    def padding(self):
        """(top, bottom, left, right)."""
        return (self.pt, self.pb, self.pl, self.pr)

    @property
    def is_pointwise(self):
        """1x1, stride 1, no padding and columns == image pixels: the image IS the column matrix."""
        return (self.kh == 1 and self.kw == 1 and self.sh == 1 and self.sw == 1
                and self.pt == self.pb == self.pl == self.pr == 0
                and self.oh == self.h and self.ow == self.w)

    def memo(self, key, compute):
        """``compute()``, computed once per geometry object and ``key``: what a conv derives from
        its geometry alone (the algorithm 'auto' picks, the input gradient's geometry) is looked
        up instead of recomputed on every call. Geometries come from a cache, so a network's
        layers keep theirs; the memo is not a dataclass field (not compared, not hashed)."""
        memo = self.__dict__.get("_memo")
        if memo is None:
            memo = {}
            object.__setattr__(self, "_memo", memo)
        hit = memo.get(key, memo)
        if hit is memo:
            hit = memo[key] = compute()
        return hit

    def col_shape(self, nb):
        """Shape of the column buffer for ``nb`` images: (nb, C*KH*KW, OH*OW)."""
        return (nb, self.c * self.kh * self.kw, self.l)

    def batch_chunk(self, itemsize, budget=None):
        """Images per chunk so that the column buffer stays within ``budget`` bytes (>= 1)."""
        budget = COL_BUDGET_BYTES if budget is None else budget
        per_image = self.c * self.kh * self.kw * self.l * itemsize
        if per_image == 0:
            return max(self.n, 1)
        return max(1, min(self.n, budget // per_image))

    def workspace_bytes(self, dtype, budget=None):
        """Bytes of the column buffer one conv call (forward or one backward routine) allocates.

        0 for pointwise convs (they multiply the image directly).
        """
        if self.is_pointwise or self.n == 0:
            return 0
        itemsize = np.dtype(dtype).itemsize
        nb = self.batch_chunk(itemsize, budget)
        return int(np.prod(self.col_shape(nb))) * itemsize

    def flops(self):
        """Multiply-adds x 2 of the conv2d in image -> column direction: 2*N*F*CG*KH*KW*OH*OW."""
        return 2 * self.n * self.f * self.k * self.l


# ------------------------------------------------------------------ argument checks
def _sizes(shape):
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return int(value)


def _check_common(op, x_shape, w_shape, stride, dilation, groups):
    """ndim checks, then the parsed (sh, sw, dh, dw, g); the range checks are ``_check_ranges``."""
    if len(x_shape) not in (3, 4):
        raise ValueError(f"Expected 3D (unbatched) or 4D (batched) input to {op}, but got input "
                         f"of size: {_sizes(x_shape)}")
    if len(w_shape) != 4:
        kind = ("(in_channels, out_channels/groups, kH, kW)" if op == "conv_transpose2d"
                else "(out_channels, in_channels/groups, kH, kW)")
        raise ValueError(f"{op}: weight must be 4-dimensional {kind}, got weight of size "
                         f"{_sizes(w_shape)}")
    sh, sw = pair(stride, "stride")
    dh, dw = pair(dilation, "dilation")
    return sh, sw, dh, dw, _int(groups, "groups")


def _check_ranges(pads, sh, sw, dh, dw, ops=None):
    """torch's early checks, in its order: padding, output_padding, stride, negative dilation."""
    if min(pads) < 0:
        raise ValueError(f"negative padding is not supported, got padding={tuple(pads)}")
    if ops is not None and min(ops) < 0:
        raise ValueError(f"negative output_padding is not supported, got "
                         f"output_padding={tuple(ops)}")
    if sh <= 0 or sw <= 0:
        raise ValueError(f"non-positive stride is not supported, got stride=({sh}, {sw})")
    if dh < 0 or dw < 0:
        raise ValueError(f"dilation should be greater than zero, but got [{dh}, {dw}]")


def _check_groups(g):
    if g <= 0:
        raise ValueError(f"non-positive groups is not supported, got groups={g}")


def _check_weight_rows(g, rows, w_shape):
    if rows < g:
        raise ValueError(f"Given groups={g}, expected weight to be at least {g} at dimension 0, "
                         f"but got weight of size {_sizes(w_shape)} instead")
    if rows % g:
        raise ValueError(f"Given groups={g}, expected weight to be divisible by {g} at dimension "
                         f"0, but got weight of size [{_sizes(w_shape)}] instead")


def _check_zero_dilation(dh, dw):
    if dh == 0 or dw == 0:
        raise ValueError(f"dilation should be greater than zero, but got [{dh}, {dw}]")


def _check_kernel(op, w_shape):
    if w_shape[2] < 1 or w_shape[3] < 1:
        raise ValueError(f"{op}: kernel size must be positive, got weight of size "
                         f"{_sizes(w_shape)}")


def _check_empty(n, c, h, w, x_shape):
    if (h == 0 or w == 0) and n and c:
        raise ValueError("Only zero batch or zero channel inputs are supported, but got input "
                         f"shape: {_sizes(_batched(x_shape))}")


def same_padding(kernel_size, dilation):
    """'same' split per axis: total d*(k-1), left/top = total // 2, extra pixel right/bottom.

    Returns (top, bottom, left, right).
    """
    kh, kw = kernel_size
    dh, dw = dilation
    th, tw = dh * (kh - 1), dw * (kw - 1)
    return (th // 2, th - th // 2, tw // 2, tw - tw // 2)


def _check_padding_string(padding):
    if isinstance(padding, str) and padding not in ("valid", "same"):
        raise ValueError(f"Invalid padding string: {padding!r}, should be one of "
                         "{'valid', 'same'}")


def conv_padding(padding, kernel_size, stride, dilation):
    """int | (ph, pw) | 'valid' | 'same' -> (top, bottom, left, right), validated
    (docs/semantics.md §1.5)."""
    if isinstance(padding, str):
        _check_padding_string(padding)
        if padding == "valid":
            return (0, 0, 0, 0)
        if tuple(stride) != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions "
                             f"(got stride={tuple(stride)})")
        return same_padding(kernel_size, dilation)
    ph, pw = pair(padding, "padding")
    return (ph, ph, pw, pw)


def _check_dtypes(op, x_dtype, w_dtype, b_dtype):
    for name, dt in (("input", x_dtype), ("weight", w_dtype), ("bias", b_dtype)):
        if dt is not None and np.dtype(dt) not in (np.float32, np.float64):
            raise TypeError(f"{op}: {name} must be float32 or float64, got dtype {np.dtype(dt)}")
    if np.dtype(x_dtype) != np.dtype(w_dtype):
        raise TypeError(f"{op}: input dtype {np.dtype(x_dtype)} and weight dtype "
                        f"{np.dtype(w_dtype)} differ (no implicit promotion)")
    if b_dtype is not None and np.dtype(b_dtype) != np.dtype(x_dtype):
        raise TypeError(f"{op}: input dtype {np.dtype(x_dtype)} and bias dtype "
                        f"{np.dtype(b_dtype)} differ (no implicit promotion)")


def _check_bias(b_shape, w_shape, nout, transposed):
    if b_shape is not None and tuple(b_shape) != (nout,):
        pre = "Given transposed=1, weight" if transposed else "Given weight"
        raise ValueError(f"{pre} of size {_sizes(w_shape)}, expected bias to be 1-dimensional "
                         f"with {nout} elements, but got bias of size {_sizes(b_shape)} instead")


def _batched(x_shape):
    return tuple(x_shape) if len(x_shape) == 4 else (1,) + tuple(x_shape)


# Validated geometries by argument tuple: a network calls the same few convs over and over, and
# the checks below cost ~10 us per call. Only successful validations are stored (errors are
# raised again every time); unhashable arguments simply bypass the cache.
_CACHE_SIZE = 512
_cache = {}


def _key(v):
    # 1, 1.0 and True compare (and hash) equal, but only 1 is valid: keep the type of anything
    # that is not a plain int or str
    t = type(v)
    if t is int or t is str:
        return v
    if t is tuple or t is list:
        return tuple(_key(e) for e in v)
    return (t, v)


def _cached(fn, x_shape, w_shape, b_shape, *params):
    """fn(x_shape, w_shape, b_shape, *params), from the cache when the same arguments were
    validated before (shapes are tuples of ints; ``params`` are the user's stride, padding...)."""
    try:
        key = (fn, x_shape, w_shape, b_shape) + tuple(_key(a) for a in params)
        hit = _cache.get(key)
    except TypeError:
        return fn(x_shape, w_shape, b_shape, *params)
    if hit is None:
        hit = fn(x_shape, w_shape, b_shape, *params)
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache[key] = hit
    return hit


def conv2d_geometry(x_shape, w_shape, b_shape=None, stride=1, padding=0, dilation=1, groups=1,
                    dtypes=None):
    """Validate F.conv2d's arguments (torch's order) and return its ``ConvGeometry``.

    ``dtypes``: optional (x_dtype, w_dtype, b_dtype-or-None), checked first.
    """
    return _cached(_conv2d_geometry, x_shape, w_shape, b_shape, stride, padding, dilation, groups,
                   dtypes)


def conv2d_geometry_pads(x_shape, w_shape, pads, stride=1, dilation=1, groups=1):
    """``conv2d_geometry`` with the four paddings given apart, ``pads`` = (top, bottom, left,
    right) (ONNX's explicit or auto_pad paddings, which may differ per side: the inference
    plan's convs); validated with the same checks."""
    return _cached(_conv2d_geometry, tuple(x_shape), tuple(w_shape), None, stride, None,
                   dilation, groups, None, tuple(int(p) for p in pads))


def _conv2d_geometry(x_shape, w_shape, b_shape, stride, padding, dilation, groups, dtypes,
                     pads=None):
    op = "conv2d"
    if dtypes is not None:
        _check_dtypes(op, *dtypes)
    sh, sw, dh, dw, g = _check_common(op, x_shape, w_shape, stride, dilation, groups)
    if pads is None:
        _check_padding_string(padding)
    _check_groups(g)
    f, cg, kh, kw = (int(s) for s in w_shape)
    if pads is None:
        pads = conv_padding(padding, (kh, kw), (sh, sw), (dh, dw))
    pt, pb, pl, pr = pads
    _check_ranges((pt, pl, pb, pr), sh, sw, dh, dw)
    n, c, h, w = _batched(x_shape)
    _check_weight_rows(g, f, w_shape)
    if c != cg * g:
        raise ValueError(f"Given groups={g}, weight of size {_sizes(w_shape)}, expected "
                         f"input{_sizes(_batched(x_shape))} to have {cg * g} channels, but got "
                         f"{c} channels instead")
    _check_bias(b_shape, w_shape, f, False)
    _check_kernel(op, w_shape)
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    hp, wp = h + pt + pb, w + pl + pr
    if hp < eh or wp < ew:
        raise ValueError(f"Calculated padded input size per channel: ({hp} x {wp}). Kernel size: "
                         f"({eh} x {ew}). Kernel size can't be greater than actual input size")
    _check_zero_dilation(dh, dw)
    _check_empty(n, c, h, w, x_shape)
    oh = (hp - eh) // sh + 1
    ow = (wp - ew) // sw + 1
    return ConvGeometry(n, c, h, w, f, g, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, oh, ow)


def transpose_output_size(size, kernel, stride, pad_begin, pad_end, dilation, output_padding=0):
    """One spatial size of a transposed conv's output: (L-1)*s - p_begin - p_end + d*(k-1) +
    op + 1 (docs/semantics.md §2.2; ONNX's ConvTranspose with per-side pads included)."""
    return ((size - 1) * stride - pad_begin - pad_end + dilation * (kernel - 1)
            + output_padding + 1)


def conv_transpose2d_geometry(x_shape, w_shape, b_shape=None, stride=1, padding=0,
                              output_padding=0, groups=1, dilation=1, dtypes=None):
    """Validate F.conv_transpose2d's arguments and return the geometry of its adjoint conv2d.

    Image side = the transposed conv's OUTPUT (N, Cout, Hout, Wout); column side = its input
    (N, Cin, H, W); Hout = (H-1)*s - 2p + d*(k-1) + op + 1 (docs/semantics.md §2.2).
    """
    return _cached(_conv_transpose2d_geometry, x_shape, w_shape, b_shape, stride, padding,
                   output_padding, groups, dilation, dtypes)


def _conv_transpose2d_geometry(x_shape, w_shape, b_shape, stride, padding, output_padding,
                               groups, dilation, dtypes):
    op = "conv_transpose2d"
    if dtypes is not None:
        _check_dtypes(op, *dtypes)
    sh, sw, dh, dw, g = _check_common(op, x_shape, w_shape, stride, dilation, groups)
    _check_groups(g)
    if isinstance(padding, str):
        raise TypeError(f"conv_transpose2d: padding must be an int or a pair of ints, got "
                        f"{padding!r} (string padding is not defined for transposed conv)")
    ph, pw = pair(padding, "padding")
    oph, opw = pair(output_padding, "output_padding")
    _check_ranges((ph, pw), sh, sw, dh, dw, (oph, opw))
    cin, coutg, kh, kw = (int(s) for s in w_shape)
    n, c_in, h, w = _batched(x_shape)
    _check_weight_rows(g, cin, w_shape)
    if c_in != cin:
        raise ValueError(f"Given transposed=1, weight of size {_sizes(w_shape)}, expected "
                         f"input{_sizes(_batched(x_shape))} to have {cin} channels, but got "
                         f"{c_in} channels instead")
    cout = coutg * g
    _check_bias(b_shape, w_shape, cout, True)
    _check_kernel(op, w_shape)
    _check_zero_dilation(dh, dw)
    _check_empty(n, c_in, h, w, x_shape)
    if not (oph < max(sh, dh) and opw < max(sw, dw)):
        raise ValueError(f"output padding must be smaller than either stride or dilation, but "
                         f"got output_padding_height: {oph} output_padding_width: {opw} "
                         f"stride_height: {sh} stride_width: {sw} dilation_height: {dh} "
                         f"dilation_width: {dw}")
    hout = transpose_output_size(h, kh, sh, ph, ph, dh, oph)
    wout = transpose_output_size(w, kw, sw, pw, pw, dw, opw)
    if hout <= 0 or wout <= 0:
        raise ValueError(f"Given input size per channel: ({h} x {w}). Calculated output size per "
                         f"channel: ({hout} x {wout}). Output size is too small")
    return ConvGeometry(n, cout, hout, wout, cin, g, kh, kw, sh, sw, dh, dw, ph, ph, pw, pw, h, w)


def conv2d_workspace_bytes(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                           dtype=np.float32):
    """Bytes of the column workspace F.conv2d (forward, or each backward routine) allocates for
    these arguments: 0 for a pointwise conv, else C*KH*KW*OH*OW*itemsize per image times the
    images per chunk (capped by ``COL_BUDGET_BYTES``). Validates like F.conv2d.
    """
    geom = conv2d_geometry(input_shape, weight_shape, None, stride, padding, dilation, groups)
    return geom.workspace_bytes(dtype)


def transpose_output_padding(input_hw, output_size, kernel_size, stride, padding, dilation):
    """nn.ConvTranspose2d.forward(output_size=...) -> output_padding (docs/semantics.md §2.5).

    ``output_size`` holds the 2 spatial sizes (already stripped of N/C).
    """
    ops = []
    mins, maxs = [], []
    for i in range(2):
        lo = transpose_output_size(input_hw[i], kernel_size[i], stride[i], padding[i],
                                   padding[i], dilation[i])
        mins.append(lo)
        maxs.append(lo + stride[i] - 1)
    for i in range(2):
        if not mins[i] <= output_size[i] <= maxs[i]:
            raise ValueError(f"requested an output size of {list(output_size)}, but valid sizes "
                             f"range from {mins} to {maxs} (for an input of "
                             f"{list(input_hw)})")
        ops.append(output_size[i] - mins[i])
    return tuple(ops)
