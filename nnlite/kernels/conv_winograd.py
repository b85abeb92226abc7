"""Winograd F(m x m, 3 x 3) conv2d forward (stride 1, dilation 1) on nnlite's native kernels:
the fast path of ``nnlite.conv_algorithm('winograd')``.

The weights are transformed once per call (``F.conv2d``) or once per layer
(``WinogradWeights``, used by the inference plan), in C (double arithmetic, rounded to the
conv's dtype): ``u[i*alpha + j, f, c] = (G w[f, c] G^T)[i, j]`` with alpha = m + 2. The input
transform, the alpha^2 GEMMs on nnlite's GEMM (every u[xi] packed once) and the output
transform with the fused bias / residual (beta) / ReLU / ReLU6 epilogue run in C
(``nnlite._convfast.conv2d_winograd``, csrc/convfast_winograd.c) with the GIL released.

The readable version of the same algorithm, sharing no code with this one, is
``nnlite/kernels/winograd_reference.py``; docs/semantics.md §1.10 states the accuracy.
"""
import numpy as np

from .._config import get_num_threads
from . import gemm_ops, specialized

try:
    from .. import _convfast
except ImportError:  # pragma: no cover - depends on the build
    _convfast = None
try:
    from .._info import any_nonfinite as _any_nonfinite
except ImportError:  # pragma: no cover - depends on the build
    _any_nonfinite = None

# Output tile: F(4x4, 3x3) (36 products per 16 outputs: 4x fewer multiplies than direct) for
# both dtypes. Its float32 error on ResNet-50 / GoogLeNet 3x3 layers is a few 1e-6 of the
# largest output (benchmarks/bench_conv.py --winograd), within the 1e-4 the project
# accepts; F(2x2, 3x3) (2.25x fewer) is about 10x more accurate and stays selectable (tile=2).
DEFAULT_TILE = 4


def available():
    return _convfast is not None


def finite(x):
    """False when ``x`` holds a NaN or an infinity. Winograd's transforms mix every pixel of an
    input tile into every output of the tile (and inf - inf into NaN), so one NaN or inf pixel
    would make whole output tiles NaN where the conv's sums (docs/semantics.md §1.3, PyTorch)
    give NaN or inf only in its 3x3 neighbourhood: callers run such an input by the columns +
    GEMM. A contiguous float32/float64 ``x`` is scanned by its bits on nnlite's threads
    (``nnlite._info.any_nonfinite``: 64 channels of 56x56 in a few us); otherwise its sum
    decides (a finite ``x`` whose sum overflows then also answers False: the exact path)."""
    if (_any_nonfinite is not None and x.dtype in (np.float32, np.float64)
            and x.flags.c_contiguous):
        return not _any_nonfinite(x, x.itemsize, get_num_threads())
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.sum(x)))


def unsupported_reason(geom):
    """None when Winograd F(m, 3) computes this conv, else why not (for the ValueError)."""
    if (geom.kh, geom.kw) != (3, 3):
        return f"kernel size ({geom.kh}, {geom.kw})"
    if (geom.sh, geom.sw) != (1, 1):
        return f"stride ({geom.sh}, {geom.sw})"
    if (geom.dh, geom.dw) != (1, 1):
        return f"dilation ({geom.dh}, {geom.dw})"
    return None


def check(geom):
    """ValueError naming the values when the Winograd algorithm cannot run ``geom``."""
    why = unsupported_reason(geom)
    if why is not None:
        raise ValueError(f"conv algorithm 'winograd' computes 3x3 convs with stride 1 and "
                         f"dilation 1 only; this conv has {why} (use 'auto', which picks "
                         f"another algorithm for it)")


def transform_weights(w, m=DEFAULT_TILE, dtype=None):
    """u (alpha^2, F, CG) = G w G^T of every 3x3 filter of w (F, CG, 3, 3) (G of Lavin & Gray
    for the points 0, 1, -1 (, 2, -2), infinity: csrc/convfast_winograd_tmpl.h), computed in
    double and returned C-contiguous in ``dtype`` (default: w's)."""
    if m not in (2, 4):
        raise ValueError(f"Winograd tile size must be 2 or 4, got {m!r}")
    w = np.asarray(w)
    dtype = w.dtype if dtype is None else np.dtype(dtype)
    if w.ndim != 4 or w.shape[2:] != (3, 3):
        raise ValueError(f"Winograd weights must be (F, C/groups, 3, 3), got {w.shape}")
    a = m + 2
    w9 = np.ascontiguousarray(w, dtype=dtype).reshape(-1, 9)
    u = np.empty((a * a, w9.shape[0]), dtype=dtype)
    _convfast.winograd_weights(w9, m, u, num_threads=get_num_threads())
    return u.reshape(a * a, w.shape[0], w.shape[1])


def prepare_weights(w, geom, m=DEFAULT_TILE, dtype=None, isa=None):
    """(u, upk): the weights of ``conv2d_winograd`` for the conv ``geom``: upk packed for the
    GEMM family ``isa`` (default: the one in use). The GEMM reads the unpacked u only for
    products of at most 4 rows, so with more than 4 filters per group u is None and upk is
    transformed straight into the packed layout (``winograd_weights_packed``: the same bits as
    transforming then packing, without the (alpha^2, F, CG) intermediate, which on
    ResNet-18's 512-channel 3x3 convs is 38 MB per call)."""
    dtype = np.asarray(w).dtype if dtype is None else np.dtype(dtype)
    isa = gemm_ops._isa() if isa is None else isa
    size = _convfast.winograd_packed_size(m, geom.f, geom.g, geom.cg, dtype.itemsize, isa)
    upk = np.empty(size, dtype=dtype)
    if geom.fg > 4:
        w4 = np.ascontiguousarray(w, dtype=dtype)
        _convfast.winograd_weights_packed(w4, geom.g, m, upk, isa=isa,
                                          num_threads=get_num_threads())
        return None, upk
    u = transform_weights(w, m, dtype)
    _convfast.winograd_pack(u, geom.g, m, upk, isa=isa)
    return u, upk


class WinogradWeights:
    """A conv's weights transformed and packed once for ``conv2d_winograd`` (inference plans).

    ``run(x, y3, bias, act, beta)`` computes y3 (N, F, OH*OW) = act(conv(x) + beta*y3 + bias).
    Only the packed weights are made when a group has more than 4 filters (``prepare_weights``):
    (m + 2)^2 / 9 times the 3x3 weights' memory (4x for F(4x4, 3x3)) instead of twice that.
    """

    def __init__(self, w, geom, dtype, m=DEFAULT_TILE):
        self.m, self.groups = m, geom.g
        self.pt, self.pl, self.oh, self.ow = geom.pt, geom.pl, geom.oh, geom.ow
        self.isa = gemm_ops._isa()
        self.u, self.upk = prepare_weights(w, geom, m, dtype, self.isa)
        self._kernel = specialized(_convfast.conv2d_winograd, self.upk.dtype)

    def run(self, x, y3, bias=None, act=0, beta=0.0, num_threads=None, work=None):
        """``work``: a uint8 buffer the call may use as its work memory (``workspace_bytes``
        + 63 bytes always suffice), e.g. a plan's arena; None: the call allocates its own.
        x, y3 and bias have the weights' dtype."""
        self._kernel(x, self.u, self.upk, bias, y3, self.groups, self.m, self.pt, self.pl,
                     self.oh, self.ow, act=act, beta=beta,
                     num_threads=get_num_threads() if num_threads is None else num_threads,
                     isa=self.isa, work=work)


def workspace_bytes(geom, dtype, m=DEFAULT_TILE, num_threads=None):
    """Bytes of work memory ``WinogradWeights.run`` needs for ``geom`` on ``num_threads``
    threads (default: nnlite's), from the buffer's first 64-byte boundary on."""
    return _convfast.winograd_workspace_bytes(
        geom.n, geom.c, geom.h, geom.w, geom.f, geom.g, m, geom.pt, geom.pl, geom.oh, geom.ow,
        np.dtype(dtype).itemsize, get_num_threads() if num_threads is None else num_threads,
        gemm_ops._isa(), packed=True)


def forward(x, w, b, geom, m=DEFAULT_TILE):
    """y (N, F, OH, OW) = conv2d(x, w) + b by Winograd F(m x m, 3 x 3) (geometry checked by
    ``check``; weights transformed for this call, straight into the GEMM's packed layout when
    a group has more than 4 filters)."""
    check(geom)
    x = np.asarray(x)
    if any(s < 0 or s % x.itemsize for s in x.strides) or (x.shape[3] > 1 and
                                                           x.strides[3] != x.itemsize):
        x = np.ascontiguousarray(x)           # the kernel takes any non-negative row strides
    y = np.empty((geom.n, geom.f, geom.oh * geom.ow), dtype=x.dtype)
    isa = gemm_ops._isa()
    if geom.fg > 4:
        u, upk = prepare_weights(w, geom, m, x.dtype, isa)     # packed once, no u
    else:
        u, upk = transform_weights(w, m, x.dtype), None        # few rows: the GEMM reads u
    bias = None if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    _convfast.conv2d_winograd(x, u, upk, bias, y, geom.g, m, geom.pt, geom.pl, geom.oh,
                              geom.ow, num_threads=get_num_threads(), isa=isa)
    return y.reshape(geom.n, geom.f, geom.oh, geom.ow)
