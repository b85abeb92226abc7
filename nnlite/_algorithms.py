"""Conv algorithm selection (a study switch, like ``nnlite.using_backend``).

    'im2col'    explicit column matrix (C*KH*KW x OH*OW per image, chunked) + one GEMM
    'implicit'  implicit GEMM: the GEMM's B panels are packed straight from the image, so a
                k x k conv needs a few panels of extra memory instead of the column matrix
    'direct'    direct loops without a GEMM: the depthwise kernel (groups == in_channels);
                a conv that is not depthwise has no direct kernel and runs 'implicit'
    'auto'      per layer: depthwise -> 'direct'; 1x1 -> 'im2col' (stride 1, no padding: the
                GEMM runs on the image itself, no columns at all; otherwise its columns are a
                strided copy no larger than the image, made once, while the implicit GEMM would
                gather them again for every block of output channels); every other conv ->
                'implicit', except small single images (batch < 4 and fewer than 392 output
                pixels over the batch, e.g. one 14x14 map): there the implicit GEMM's panel
                split loses to the column matrix (measured on 2 threads, batch 1: 14x14 maps
                1.1-3x slower, 28x28 maps 0.5-0.85x the im2col time; batch 2 at 14x14 and
                batch 4 at 7x7 already 0.4-0.75x), so they run 'im2col'; and large convs
                (>= 32 MFLOP) on batches of small maps (at most 64 output pixels per image,
                2+ images): 'im2col' lays the
                columns of a chunk of images side by side and runs ONE GEMM per chunk
                (N = images*OH*OW, where the implicit GEMM's N per image is OH*OW), e.g.
                ResNet-18's 4x4 layers at batch 64 (2 threads, Zen 4): forward and input
                gradient about half the implicit time (below 32 MFLOP, e.g. 16-channel 8x8
                digits at batch 32 on one thread, the extra regrouping steps cost more than
                the wider GEMM gains: 10% slower training)

Only the 'cython' backend has 'implicit' and 'direct'; under the 'numpy' backend every choice
runs im2col + GEMM (NumPy has nothing better to offer), and the 'reference' backend always runs
its naive loops. Backward runs under the choice made at forward time: the input gradient of a
stride-1 conv is a conv2d forward (of gy with the flipped weight) and follows it, like the
input gradient of conv_transpose2d; other input gradients (GEMM + col2im), the weight
gradient (explicit columns + nnlite's GEMM) and conv_transpose2d's forward do not depend on it.

Resolution: innermost ``nnlite.conv_algorithm(...)`` context in this thread, then the
``NNLITE_CONV_ALGORITHM`` environment variable (read once at import), then 'auto'.
"""
import contextlib
import os

from ._config import ThreadSetting

ALGORITHMS = ("auto", "im2col", "implicit", "direct")
# 'auto' runs a dense k x k conv as im2col + GEMM below both of these (see the module docstring)
_IMPLICIT_MIN_BATCH, _IMPLICIT_MIN_PIXELS = 4, 392
# 'auto' runs a dense conv of 2+ images with at most this many output pixels per image as
# im2col with the images side by side (nnlite/kernels/conv_cython.py:_rows_forward)
ROWS_MAX_PIXELS, ROWS_MIN_FLOPS = 64, 1 << 25


def rows_pay(geom):
    """True for a batch (2+ images) of maps of at most ROWS_MAX_PIXELS output pixels and a conv
    of at least ROWS_MIN_FLOPS: there im2col with the images side by side beats the implicit
    GEMM and the per-image im2col (see the module docstring)."""
    return geom.n > 1 and geom.oh * geom.ow <= ROWS_MAX_PIXELS and geom.flops() >= ROWS_MIN_FLOPS

_chosen = ThreadSetting()


def _fast_built():
    """True when the extension with the implicit and direct kernels (nnlite._convfast) imports."""
    from ._config import cython_built

    if not cython_built():
        return False
    try:
        from . import _convfast  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the build
        return False
    return True


def _check(name):
    if not isinstance(name, str) or name not in ALGORITHMS:
        raise ValueError(f"unknown conv algorithm {name!r}; expected one of {ALGORITHMS}")
    if name in ("implicit", "direct") and not _fast_built():
        raise RuntimeError(f"conv algorithm {name!r} needs nnlite's compiled extension "
                           "(nnlite._convfast), which this installation does not have")
    return name


_default = os.environ.get("NNLITE_CONV_ALGORITHM", "auto") or "auto"
if _default not in ALGORITHMS:
    raise ValueError(f"NNLITE_CONV_ALGORITHM={_default!r} is not one of {ALGORITHMS}")


def available_conv_algorithms():
    """Algorithm names this installation accepts ('auto' first)."""
    return list(ALGORITHMS) if _fast_built() else ["auto", "im2col"]


def get_conv_algorithm():
    """The conv algorithm a conv2d called now would be asked to use (before per-layer 'auto')."""
    chosen = _chosen.get()
    if chosen is not None:
        return chosen
    return _default if _default in ("auto", "im2col") or _fast_built() else "auto"


@contextlib.contextmanager
def conv_algorithm(name):
    """Context manager selecting the conv algorithm for conv2d calls made in this thread.

    ``name``: 'auto' (per layer), 'im2col', 'implicit' or 'direct' (see ``nnlite._algorithms``).
    Raises ValueError for an unknown name and RuntimeError for 'implicit'/'direct' without the
    compiled extension.

    >>> with nnlite.conv_algorithm("im2col"):
    ...     y = F.conv2d(x, w, padding=1)      # explicit column matrix + GEMM, for study
    """
    with _chosen.use(_check(name)) as chosen:
        yield chosen


def is_depthwise(geom):
    """groups == in_channels (each filter sees one channel; F may be a multiple of C)."""
    return geom.g == geom.c and geom.g > 0 and geom.cg == 1


def resolve(geom, name=None):
    """The algorithm a conv2d with geometry ``geom`` runs under the cython backend."""
    name = get_conv_algorithm() if name is None else name
    if name == "auto":
        if is_depthwise(geom):
            return "direct"
        if geom.kh == geom.kw == 1 or (geom.n < _IMPLICIT_MIN_BATCH
                                        and geom.n * geom.oh * geom.ow < _IMPLICIT_MIN_PIXELS) \
                or rows_pay(geom):
            return "im2col"
        return "implicit"
    if name == "direct" and not is_depthwise(geom):
        return "implicit"
    return name
