"""Cython conv kernels: im2col/col2im from ``nnlite._im2col`` (typed memoryviews, nogil, OpenMP
over the N*C image planes), the implicit-GEMM and direct depthwise forward kernels of
``nnlite._convfast``, and the three conv routines of ``_conv_gemm`` on nnlite's own GEMM.

conv2d forward runs the algorithm ``nnlite._algorithms.resolve`` picks for the layer:
'implicit' (no column matrix), 'direct' (depthwise; any other conv: the small-map kernel
(stride 1) or the few-channel kernel over stride-phase planes), 'winograd' (3x3 stride 1, by
``conv_winograd``) or 'im2col' (chunked columns + GEMM; a pointwise conv multiplies the image
directly). The input gradient of a stride-1 conv is the
forward conv of gy with the flipped weight (same algorithm choice, no col2im); otherwise it
is nnlite's GEMM then col2im (whole image planes per thread: no write races). The weight
gradient is one GEMM per chunk of images over explicit columns laid out channel-row-major
(inner size = images x OH*OW), not one GEMM per image.
A 1x1 stride-1 conv with one group runs each routine as ONE GEMM over the whole batch whose
columns (or reduction axis) run over (image, pixel), read from and written to NCHW in place
(``gemm_ops.gemm_split``; the forward and input gradient on maps of at most 256 pixels).

Registered only when the extension imports; otherwise the 'cython' backend falls back to NumPy.
"""
import numpy as np

from .._algorithms import (direct_kernel, get_conv_algorithm, is_depthwise, resolve,
                           rows_pay, small_weight_grad_pays)
from .._config import get_num_threads
from .._constants import IM2COL_PARALLEL_MIN
from .._convgeom import ConvGeometry
from . import _conv_gemm, conv_numpy, conv_winograd, gemm_ops, register, specialized

try:
    from .. import _im2col
except ImportError:  # pragma: no cover - depends on the build
    _im2col = None

try:
    from .. import _convfast
except ImportError:  # pragma: no cover - depends on the build
    _convfast = None

try:
    from .. import _train
except ImportError:  # pragma: no cover - depends on the build
    _train = None


# Below this many column entries a call runs on one thread (nnlite/_constants.py).
_PARALLEL_MIN = IM2COL_PARALLEL_MIN


def _threads(size):
    return get_num_threads() if size >= _PARALLEL_MIN else 1


# Index arithmetic in the kernel is Py_ssize_t: geometries whose tap coordinates could leave
# +-2**40 (absurd strides/paddings that still give a small output) run the NumPy kernels, which
# slice with exact Python integers.
_INDEX_LIMIT = 1 << 40


def _args(geom):
    """Kernel integers; a stride (dilation) that never multiplies a nonzero index becomes 1."""
    sh = geom.sh if geom.oh > 1 else 1
    sw = geom.sw if geom.ow > 1 else 1
    dh = geom.dh if geom.kh > 1 else 1
    dw = geom.dw if geom.kw > 1 else 1
    args = (geom.kh, geom.kw, sh, sw, geom.pt, geom.pl, dh, dw, geom.oh, geom.ow)
    extent = max((geom.oh - 1) * sh + (geom.kh - 1) * dh + geom.pt + geom.h,
                 (geom.ow - 1) * sw + (geom.kw - 1) * dw + geom.pl + geom.w)
    return args if extent < _INDEX_LIMIT else None


# The implicit and direct kernels lay out padded planes; a padded side beyond this (absurd
# strides or paddings, e.g. 2**31, that still give a tiny output) runs im2col instead, whose
# kernels handle any extent (found by tests/test_conv2d.py::test_conv2d_huge_stride_no_overflow:
# the direct kernel crashed at stride = padding = 2**31).
_FAST_EXTENT_LIMIT = 1 << 24


def _fast_extent_ok(geom):
    return max(geom.h + geom.pt + geom.pb, geom.w + geom.pl + geom.pr,
               (geom.oh - 1) * geom.sh + 1, (geom.ow - 1) * geom.sw + 1) < _FAST_EXTENT_LIMIT


@register("im2col", "cython", when=_im2col is not None)
def im2col(x, geom, out=None):
    """cols (N, C*KH*KW, OH*OW) of x (N, C, H, W); written into ``out`` when given."""
    args = _args(geom)
    if args is None:
        return conv_numpy.im2col(x, geom, out)
    x = np.ascontiguousarray(x)
    cols = np.empty(geom.col_shape(x.shape[0]), dtype=x.dtype) if out is None else out
    _im2col.im2col(x, cols, *args, num_threads=_threads(cols.size))
    return cols


@register("col2im", "cython", when=_im2col is not None)
def col2im(cols, geom, out=None):
    """x (N, C, H, W) += scatter-add of cols (N, C*KH*KW, OH*OW) (zeros when ``out`` is None)."""
    args = _args(geom)
    if args is None:
        return conv_numpy.col2im(cols, geom, out)
    cols = np.ascontiguousarray(cols)
    if out is None:
        out = np.zeros((cols.shape[0], geom.c, geom.h, geom.w), dtype=cols.dtype)
    _im2col.col2im(cols, out, *args, num_threads=_threads(cols.size))
    return out


# ------------------------------------------------------------------------------- GEMM hook
def _mm(a, b, out, bias=None, accumulate=False, reduce=False):
    """``_conv_gemm.numpy_mm``'s contract on nnlite's GEMM (bias and accumulation fused):

        out (+)= a @ b (+ bias[..., None])    or, with ``reduce``, out (+)= Σ_i a[i] @ b[i]

    Shape: a (..., M, K), b (..., K, N), out (..., M, N) with leading axes broadcast as in
    np.matmul (at most one beyond the GEMM's batch axis); bias (..., M) or None.
    """
    if reduce:
        for i in range(a.shape[0]):
            _mm(a[i], b[i], out, None, accumulate or i > 0)
        return out
    if out.ndim == 4 and out.shape[1] == 1:
        # one group: the image axis becomes the GEMM's batch axis (one call, no Python loop)
        def one(t):
            return t[:, 0] if t is not None and t.ndim == 4 else t
        return _mm(one(a), one(b), out[:, 0], bias, accumulate)
    if out.ndim == 4:
        for i in range(out.shape[0]):
            _mm(a[i] if a.ndim == 4 else a, b[i] if b.ndim == 4 else b, out[i],
                None if bias is None else (bias[i] if bias.ndim == 3 else bias), accumulate)
        return out
    a3 = a if a.ndim == 3 else a[None]
    b3 = b if b.ndim == 3 else b[None]
    if bias is not None and bias.ndim == 2 and bias.shape[0] == 1:
        bias = bias[0]
    gemm_ops.gemm_batched(a3, b3, out, beta=1.0 if accumulate else 0.0, bias=bias,
                          bias_axis=0)
    return out


# ------------------------------------------------------------------------ forward algorithms
def _strides_fit(x):
    """True when the _convfast kernels take x as it is: unit stride along W and non-negative
    whole-element strides (channel slices of a larger buffer pass as they are)."""
    st = x.strides
    return x.ndim == 4 and st[3] == x.itemsize and all(v >= 0 and v % x.itemsize == 0
                                                       for v in st)


def _strided_ok(x):
    """x as the _convfast kernels take it: itself (``_strides_fit``), else a C-contiguous
    copy."""
    return x if _strides_fit(x) else np.ascontiguousarray(x)


def implicit_pack(w, geom, args):
    """The weights of an 'implicit' conv packed once for the micro-kernel family in use:
    (isa code, data, kc) for ``fast_forward``'s ``packed`` (an inference plan's constant
    weights; each call would pack the same panels)."""
    kh, kw, sh, sw, pt, pl, dh, dw, oh, ow = args
    w2 = np.ascontiguousarray(w).reshape(geom.f, geom.k)
    code = gemm_ops._isa()
    code = gemm_ops._gemm.isa_code(gemm_ops._gemm.best_isa()) if code < 0 else code
    sizes = (geom.n, geom.c, geom.h, geom.w)
    size = _convfast.implicit_pack_size(*sizes, geom.f, geom.g, kh, kw, sh, sw, pt, pl, dh, dw,
                                        oh, ow, w2.itemsize, code)
    data = np.empty(size, w2.dtype)
    kc = _convfast.conv2d_implicit_pack(w2, data, *sizes, geom.g, kh, kw, sh, sw, pt, pl, dh,
                                        dw, oh, ow, code)
    return code, data, kc


def small_pack(w, geom):
    """The weights of a conv that 'direct' runs by the small-map kernel (``direct_kernel``
    'small') packed once into its register blocks' layout, for ``fast_forward``'s ``packed``
    (an inference plan's constant weights; each call would pack them again)."""
    w2 = np.ascontiguousarray(w).reshape(geom.f, geom.k)
    return _convfast.conv2d_small_pack(w2, geom.c, geom.g, geom.kh, geom.kw)


def fast_forward(algo, x, w, b, geom, args, out=None, act=0, beta=0.0, packed=None):
    """y (N, F, OH, OW) = act(conv2d(x, w) + b + beta*y) by nnlite._convfast: the direct
    depthwise kernel ('direct', groups == C), the direct small-map or few-channel kernel
    ('direct', any other conv: ``_algorithms.direct_kernel``) or the implicit GEMM
    ('implicit', no column matrix),
    with ``args`` the kernel integers ``native_algorithm`` returns with ``algo``. ``out``
    (N, F, OH*OW) with contiguous planes receives y (a new array when None); ``act`` 0 none,
    1 ReLU, 2 ReLU6; ``packed``: ``implicit_pack``'s weights ('implicit'; used when the family
    in use is the one they were packed for) or ``small_pack``'s ('direct' by the small-map
    kernel). conv2d_forward's fast path
    (``bind_fast_forward`` then one call)."""
    kh, kw, sh, sw, pt, pl, dh, dw, oh, ow = args
    y = np.empty((geom.n, geom.f, oh * ow), dtype=x.dtype) if out is None else out
    bind_fast_forward(algo, x, w, b, geom, args, y, act, beta, packed)()
    return y.reshape(geom.n, geom.f, oh, ow)


def bind_fast_forward(algo, x, w, b, geom, args, out, act=0, beta=0.0, packed=None):
    """``fast_forward`` on these arrays as a callable of no arguments: the kernel, the weight
    matrix and the bias are resolved here, once (the inference plan binds each conv step so);
    the thread count and the GEMM family (which decides whether ``packed`` serves) are read at
    each call."""
    kh, kw, sh, sw, pt, pl, dh, dw, oh, ow = args
    y = out
    w2 = np.ascontiguousarray(w).reshape(geom.f, geom.k)           # (F, CG*KH*KW)
    bias = None if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    kind = geom.memo("direct_kernel", lambda: direct_kernel(geom)) if algo == "direct" else None
    if kind == "small":
        # a dense stride-1 conv: the small-map kernel (nnlite._algorithms, 'direct')
        small = specialized(_convfast.conv2d_small, x.dtype)

        def kernel(x):
            small(x, w2, bias, y, geom.g, kh, kw, pt, pl, dh, dw, oh, ow, act=act, beta=beta,
                  num_threads=get_num_threads(), packed=packed)
    elif kind == "phase":
        # any other dense conv: the few-channel kernel over stride-phase planes
        phase = specialized(_convfast.conv2d_phase, x.dtype)

        def kernel(x):
            phase(x, w2, bias, y, geom.g, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, act=act,
                  beta=beta, num_threads=get_num_threads())
    elif kind == "depthwise":
        depthwise = specialized(_convfast.conv2d_depthwise, x.dtype)

        def kernel(x):
            depthwise(x, w2, bias, y, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, act=act,
                      beta=beta, num_threads=get_num_threads())
    else:
        best = gemm_ops._gemm.isa_code(gemm_ops._gemm.best_isa())
        implicit = specialized(_convfast.conv2d_implicit, x.dtype)

        def kernel(x):
            isa, pk = gemm_ops._isa(), None
            if packed is not None and (best if isa < 0 else isa) == packed[0]:
                isa, pk = packed[0], packed[1:]
            implicit(x, w2, bias, y, geom.g, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, act=act,
                     beta=beta, num_threads=get_num_threads(), isa=isa, packed=pk)
    if _strides_fit(x):
        return lambda: kernel(x)
    # a view the kernels cannot read: the contiguous copy is made at each call (the data behind
    # the view may change between calls)
    return lambda: kernel(np.ascontiguousarray(x))


# ------------------------------------------------------------------- batch-rows layout
# The im2col path multiplies one image's columns at a time (GEMM N = OH*OW). On small maps that
# N is too narrow for the GEMM's register tile and panel reuse (a 4x4 map: N = 16), so below
# this many output pixels per image the columns of a chunk of images are laid side by side
# (``_im2col.im2col_rows``: rows C*KH*KW, N = images*OH*OW) and each routine is ONE GEMM per
# chunk; the output (or gy) is regrouped channel-major around it (nnlite/_algorithms.py:
# 'auto' sends such convs here).
def _rows_pay(geom):
    return rows_pay(geom) and _args(geom) is not None


def _rows_operand(x, geom, n0, n1, ws):
    """The (C*KH*KW, M*L) columns of images n0:n1 in ``ws`` (a pointwise conv: the image
    itself, regrouped channel-major)."""
    m = n1 - n0
    if geom.is_pointwise:
        return _rows_first(x[n0:n1], m, geom.c, geom.l)
    cols = ws[:geom.c * geom.kh * geom.kw * m * geom.l].reshape(-1, m, geom.l)
    _im2col.im2col_rows(x[n0:n1], cols, *_args(geom), num_threads=_threads(cols.size))
    return cols.reshape(-1, m * geom.l)


def _rows_workspace(geom, dtype):
    nb = geom.batch_chunk(np.dtype(dtype).itemsize)
    size = 0 if geom.is_pointwise else geom.c * geom.kh * geom.kw * nb * geom.l
    return nb, np.empty(size, dtype=dtype), np.empty(geom.f * nb * geom.l, dtype=dtype)


def _rows_forward(x, w, b, geom):
    """y (N, F, OH, OW) = conv2d(x, w) + b as one GEMM W_g (FG, K) @ cols (K, M*L) per group
    and chunk of M images, then the (F, M, L) product regrouped image-major."""
    n, g, fg, k, l = geom.n, geom.g, geom.fg, geom.k, geom.l
    x = np.ascontiguousarray(x)
    y = np.empty((n, geom.f, l), dtype=x.dtype)
    wg = np.ascontiguousarray(w, dtype=x.dtype).reshape(g, fg, k)
    bias = None if b is None else np.ascontiguousarray(b, dtype=x.dtype).reshape(g, fg)
    nb, ws, out = _rows_workspace(geom, x.dtype)
    for n0 in range(0, n, nb):
        n1 = min(n0 + nb, n)
        m = n1 - n0
        cols = _rows_operand(x, geom, n0, n1, ws).reshape(g, k, m * l)
        prod = out[:geom.f * m * l].reshape(g, fg, m * l)
        gemm_ops.gemm_batched(wg, cols, prod, bias=bias, bias_axis=0)
        y[n0:n1] = prod.reshape(geom.f, m, l).transpose(1, 0, 2)
    return y.reshape(n, geom.f, geom.oh, geom.ow)


def _rows_backward_input(gy, w, geom):
    """gx = col2im(W_gᵀ @ gy) with gy regrouped channel-major: one GEMM (K, FG) @ (FG, M*L)
    per group and chunk, scattered by ``_im2col.col2im_rows`` (a pointwise conv: the product
    is the gradient, regrouped image-major)."""
    n, g, fg, k, l = geom.n, geom.g, geom.fg, geom.k, geom.l
    gy = np.ascontiguousarray(gy)
    wg = np.ascontiguousarray(w, dtype=gy.dtype).reshape(g, fg, k)
    rows = geom.c * geom.kh * geom.kw
    nb = geom.batch_chunk(gy.dtype.itemsize)
    gcols = np.empty(rows * nb * l, dtype=gy.dtype)
    if geom.is_pointwise:
        gx = np.empty((n, geom.c, l), dtype=gy.dtype)
    else:
        gx = np.zeros((n, geom.c, geom.h, geom.w), dtype=gy.dtype)   # col2im accumulates
    for n0 in range(0, n, nb):
        n1 = min(n0 + nb, n)
        m = n1 - n0
        a = _rows_first(gy[n0:n1], m, geom.f, l).reshape(g, fg, m * l)
        prod = gcols[:rows * m * l].reshape(g, k, m * l)
        gemm_ops.gemm_batched(wg, a, prod, trans_a=True)
        if geom.is_pointwise:
            gx[n0:n1] = prod.reshape(geom.c, m, l).transpose(1, 0, 2)
        else:
            _im2col.col2im_rows(prod.reshape(rows, m, l), gx[n0:n1], *_args(geom),
                                num_threads=_threads(prod.size))
    return gx.reshape(n, geom.c, geom.h, geom.w)


# ------------------------------------------------------------------- pointwise, whole batch
# A 1x1, stride-1, unpadded conv with one group is ONE GEMM over the whole batch: its columns
# (or, for the weight gradient, its reduction axis) run over (image, pixel), read from and
# written to NCHW in place by the GEMM's two-level operands (gemm_ops.gemm_split): no
# per-image products (each with its own call set-up and packing of the weight; on a 4x4 map
# N = 16 fills a third of the 48-column register tile), no regrouping copies.

# The conv algorithms under which a pointwise conv runs the GEMM on the image ('auto' picks
# 'im2col' for every 1x1 conv, nnlite._algorithms.resolve); 'implicit' and 'direct' keep their
# own kernels.
_POINTWISE_ALGOS = ("auto", "im2col")

# Forward and input gradient: maps of at most this many pixels (or one image) take the batch
# GEMM. On larger maps the per-image products are already wide and the batch GEMM's B chunk
# (NC columns across images) outgrows the L2 the per-image one fits in: ResNet-50's 56x56
# 1x1 layers at batch 8, one thread, AMD EPYC Zen 4, in-process interleaved medians: forward
# 10.1 -> 11.1 ms (64->256) and 10.3 -> 11.1 ms (256->64), 28x28 about even, 14x14
# 9.0 -> 8.6 ms (1024->256). The weight gradient takes it at any size (no regrouping copies).
_POINTWISE_MAX_PIXELS = 256


def _pointwise_sizes(geom, columns):
    """(N, F, C, L) when the batch-GEMM path applies to the geometry: pointwise, one group, a
    nonempty batch and, for the forward and input gradient (``columns``), one image or a map of
    at most _POINTWISE_MAX_PIXELS; else None."""
    ok = (gemm_ops._gemm is not None and geom.is_pointwise and geom.g == 1 and geom.n > 0
          and geom.l > 0 and geom.f > 0
          and (not columns or geom.n == 1 or geom.l <= _POINTWISE_MAX_PIXELS))
    return (geom.n, geom.f, geom.c, geom.l) if ok else None


def _pointwise_batch(geom, a, b, columns=True):
    """``_pointwise_sizes`` (memoized per geometry) when, besides, a and b are float32/float64
    arrays of one dtype with whole-element strides; else None."""
    sizes = geom.memo(("pointwise_batch", columns), lambda: _pointwise_sizes(geom, columns))
    if sizes is None:
        return None
    dt = a.dtype
    if dt != b.dtype or dt not in gemm_ops._FLOATS:
        return None
    size = dt.itemsize
    for st in a.strides + b.strides:
        if st % size:
            return None
    return sizes


def _pointwise_forward(x, w, b, sizes):
    """y (N, F, H, W) = W (F, C) @ x over all (image, pixel) columns (+ b), one GEMM."""
    n, f, c, l = sizes
    y = np.empty((n, f, l), dtype=x.dtype)
    bias = None if b is None else np.ascontiguousarray(b, dtype=x.dtype).reshape(f)
    gemm_ops._split_raw(w.reshape(f, 1, c), x.reshape(n, c, l).transpose(1, 0, 2)[None],
                        y.transpose(1, 0, 2), bias)
    return y.reshape(x.shape[0], f, x.shape[2], x.shape[3])


def _pointwise_backward_input(gy, w, sizes):
    """gx (N, C, H, W) = Wᵀ (C, F) @ gy over all (image, pixel) columns, one GEMM."""
    n, f, c, l = sizes
    gx = np.empty((n, c, l), dtype=gy.dtype)
    gemm_ops._split_raw(w.reshape(f, c).T[:, None, :],
                        gy.reshape(n, f, l).transpose(1, 0, 2)[None], gx.transpose(1, 0, 2))
    return gx.reshape(n, c, gy.shape[2], gy.shape[3])


def _pointwise_backward_weight(gy, x, sizes):
    """gW (F, C) = Σ over (image, pixel) of gy[:, f, :] x[:, c, :], one GEMM whose reduction
    axis runs over the whole batch (k ascending over images, then pixels: the order of the
    regrouped (C, N*L) operands this replaces, so the same bits)."""
    n, f, c, l = sizes
    gw = np.empty((f, 1, c), dtype=gy.dtype)
    gemm_ops._split_raw(gy.reshape(n, f, l).transpose(1, 0, 2),
                        x.reshape(n, c, l).transpose(0, 2, 1)[:, :, None, :], gw)
    return gw.reshape(f, c, 1, 1)


def native_algorithm(geom, algorithm=None, weights_prepared=False):
    """(algo, args): the algorithm ``conv2d_forward`` runs for ``geom``, 'direct', 'implicit',
    'winograd' or 'im2col' (``algorithm`` as there; the fast kernels need nnlite._convfast and
    sane extents; ``weights_prepared``: the caller transforms the weights once, as an inference
    plan does, which 'auto' counts for Winograd), and for the first two the kernel integers
    ``fast_forward`` takes (None for 'im2col')."""
    if _convfast is None:
        return "im2col", None
    name = get_conv_algorithm() if algorithm is None else algorithm
    # (an inference plan's choice weighs the threads: ``_algorithms.strided_batch_pays``)
    threads = get_num_threads() if weights_prepared else 0
    return geom.memo(("native", name, weights_prepared, threads),
                     lambda: _native_algorithm(geom, name, weights_prepared))


def _native_algorithm(geom, name, weights_prepared):
    algo = resolve(geom, name, weights_prepared=weights_prepared)
    args = _args(geom) if algo != "im2col" and _fast_extent_ok(geom) else None
    return (algo, args) if args is not None else ("im2col", None)


@register("conv2d_forward", "cython", when=_im2col is not None)
def conv2d_forward(x, w, b, geom, general=False, algorithm=None, out=None, act=0, beta=0.0):
    """conv2d forward by ``algorithm`` (default: the active ``nnlite.conv_algorithm``, resolved
    per layer); 'im2col' with ``general`` skips the pointwise shortcut (for tests).

    The inference plan passes an epilogue: ``out`` (N, F, OH*OW) to write (with ``beta`` = 1
    it holds a residual to add), ``act`` (0 none, 1 ReLU, 2 ReLU6); only the 'direct' and
    'implicit' algorithms take one (see ``native_algorithm``), else ValueError. (The plan runs
    Winograd on weights it transformed once: ``conv_winograd.WinogradWeights``.)"""
    if not general and out is None and not act and not beta:
        sizes = _pointwise_batch(geom, x, w)
        if sizes is not None and (get_conv_algorithm() if algorithm is None
                                  else algorithm) in _POINTWISE_ALGOS:
            return _pointwise_forward(x, w, b, sizes)
    algo, args = native_algorithm(geom, algorithm)
    if args is not None and algo != "winograd":
        return fast_forward(algo, x, w, b, geom, args, out, act, beta)
    if out is not None or act or beta:
        raise ValueError(f"conv2d_forward: an epilogue (out, act, beta) needs the 'direct' or "
                         f"'implicit' algorithm; this conv runs {algo!r}")
    if algo == "winograd" and conv_winograd.finite(x):  # a NaN/inf: the exact sums below
        return conv_winograd.forward(x, w, b, geom)
    if not general and _rows_pay(geom):
        return _rows_forward(x, w, b, geom)
    return _conv_gemm.forward(x, w, b, geom, im2col, general, mm=_mm)


def _flipped(w, geom):
    """conv2d's weight as the weight of its input-gradient conv: (C, FG, KH, KW), each group's
    in/out channels swapped and every kernel rotated by 180 degrees."""
    g, fg, cg, kh, kw = geom.g, geom.fg, geom.cg, geom.kh, geom.kw
    wg = np.asarray(w).reshape(g, fg, cg, kh, kw)[:, :, :, ::-1, ::-1]   # (G, FG, CG, KH, KW)
    return np.ascontiguousarray(wg.transpose(0, 2, 1, 3, 4)).reshape(geom.c, fg, kh, kw)


def _input_grad_geometry(geom):
    """For a stride-1 conv, the geometry of gx = conv2d(gy, _flipped(w)) ('full' correlation:
    padding D*(K-1) - P per side), or None when that does not hold (stride > 1, padding wider
    than the dilated kernel, or an image larger than the conv covers)."""
    if (geom.oh > 1 and geom.sh != 1) or (geom.ow > 1 and geom.sw != 1):
        return None
    eh, ew = geom.dh * (geom.kh - 1), geom.dw * (geom.kw - 1)
    pads = (eh - geom.pt, eh - geom.pb, ew - geom.pl, ew - geom.pr)
    if min(pads) < 0 or geom.oh + pads[0] + pads[1] - eh != geom.h or \
            geom.ow + pads[2] + pads[3] - ew != geom.w:
        return None
    return ConvGeometry(n=geom.n, c=geom.f, h=geom.oh, w=geom.ow, f=geom.c, g=geom.g,
                        kh=geom.kh, kw=geom.kw, sh=1, sw=1, dh=geom.dh, dw=geom.dw,
                        pt=pads[0], pb=pads[1], pl=pads[2], pr=pads[3], oh=geom.h, ow=geom.w)


@register("conv2d_backward_input", "cython", when=_im2col is not None)
def conv2d_backward_input(gy, w, geom, general=False):
    """gx = col2im(Wᵀ gy); for a stride-1 conv outside 'im2col', the same gradient as a conv2d
    of gy with the flipped weight (implicit GEMM or the direct depthwise kernel: no column
    buffer, no col2im)."""
    sizes = None if general else _pointwise_batch(geom, gy, w)
    if sizes is not None and get_conv_algorithm() in _POINTWISE_ALGOS:
        return _pointwise_backward_input(gy, w, sizes)
    if _convfast is not None and not general:
        algo = get_conv_algorithm()
        if algo == "winograd" and conv_winograd.unsupported_reason(geom) is not None:
            algo = "implicit"       # conv_transpose2d under 'winograd': any kernel, any stride
        if geom.memo(("resolve", algo), lambda: resolve(geom, algo)) != "im2col":
            ggeom = geom.memo("input_grad", lambda: _input_grad_geometry(geom))
            if ggeom is not None:
                return conv2d_forward(gy, _flipped(w, geom), None, ggeom, algorithm=algo)
    if not general and _rows_pay(geom):
        return _rows_backward_input(gy, w, geom)
    return _conv_gemm.backward_input(gy, w, geom, col2im, general, mm=_mm)


def _rows_first(a, n, c, l):
    """(N, C, ...) -> a new C-contiguous (C, N*L): every channel's values of all images in one
    row (the layout that makes a batch reduction one GEMM's inner dimension)."""
    out = np.empty((c, n, l), dtype=a.dtype)
    out[...] = a.reshape(n, c, l).transpose(1, 0, 2)
    return out.reshape(c, n * l)


def _small_backward_weight(gy, x, geom, args):
    """gW of a stride-1 conv that runs 'direct' by the small-map kernel (no columns, no GEMM;
    ``_algorithms.small_weight_grad_pays`` decides), or None when it holds a NaN: the kernel
    multiplies the zeros of gy's dropped flat-grid columns with image pixels, so an inf in x
    gives NaN where the exact sum has none; the caller then runs the columns + GEMM (which
    also reproduces a genuine NaN exactly)."""
    kh, kw, _, _, pt, pl, dh, dw = args[:8]
    gw = np.empty((geom.f, geom.k), dtype=x.dtype)
    _convfast.conv2d_small_weight_grad(_strided_ok(x), np.ascontiguousarray(gy, x.dtype), gw,
                                       geom.g, kh, kw, pt, pl, dh, dw,
                                       num_threads=get_num_threads())
    if np.isnan(gw).any():
        return None
    return gw.reshape(geom.f, geom.cg, geom.kh, geom.kw)


@register("conv2d_backward_weight", "cython", when=_im2col is not None)
def conv2d_backward_weight(gy, x, geom, general=False):
    """gW = Σ_n gy_g[n] @ im2col(x)[n]ᵀ as ONE GEMM per group over the whole batch (inner size
    N*OH*OW, the same reduction order for any thread count): gy is regrouped to (F, N*OH*OW) and
    the transposed column operand is packed straight from the image inside the GEMM's block loop
    (``_convfast.conv2d_weight_grad``, no column buffer); a pointwise conv multiplies the
    regrouped image directly; a depthwise conv runs the direct per-channel kernel
    ``_train.depthwise_weight_grad``."""
    sizes = None if general else _pointwise_batch(geom, gy, x, False)
    if sizes is not None and get_conv_algorithm() != "direct":
        return _pointwise_backward_weight(gy, x, sizes)
    args = _args(geom)
    if general or args is None or geom.n == 0:
        return _conv_gemm.backward_weight(gy, x, geom, im2col, general, mm=_mm)
    if _convfast is not None and small_weight_grad_pays(geom, np.dtype(x.dtype).itemsize):
        gw = _small_backward_weight(gy, x, geom, args)
        if gw is not None:
            return gw
    n, g, fg, k, l = geom.n, geom.g, geom.fg, geom.k, geom.l
    gy = np.ascontiguousarray(gy)
    x = np.ascontiguousarray(x)
    if _train is not None and geom.cg == 1 and g == geom.c > 1 and gy.dtype == x.dtype:
        # depthwise: a direct per-channel reduction (the GEMMs would be 1 x KH*KW per group);
        # one input channel (a 1-channel stem, G = C = 1) is a dense conv: one GEMM of
        # F x KH*KW over the batch beats the per-channel kernel (digits stem 1 -> 16, 3x3,
        # 8x8, batch 32, one thread: 367 us direct, ~60 us im2col_rows + GEMM, the batch
        # GEMM path before the image-packed one)
        gw = np.empty((geom.f, geom.kh * geom.kw), dtype=gy.dtype)
        _train.depthwise_weight_grad(gy, x, gw, *args[:8],
                                     num_threads=_threads(gy.size * geom.kh * geom.kw))
        return gw.reshape(geom.f, 1, geom.kh, geom.kw)
    gw = np.empty((g, fg, k), dtype=gy.dtype)
    if geom.is_pointwise:
        a = _rows_first(gy, n, geom.f, l).reshape(g, fg, n * l)
        b = _rows_first(x, n, geom.c, l).reshape(g, k, n * l)
        gemm_ops.gemm_batched(a, b, gw, trans_b=True)
        return gw.reshape(geom.f, geom.cg, geom.kh, geom.kw)
    if (_convfast is None or not _fast_extent_ok(geom) or gy.dtype != x.dtype
            or x.dtype not in (np.float32, np.float64)):
        return _conv_gemm.backward_weight(gy, x, geom, im2col, general, mm=_mm)
    a = _rows_first(gy, n, geom.f, l)                             # (F, N*L)
    gw2 = gw.reshape(geom.f, k)
    kh, kw, sh, sw, pt, pl, dh, dw, oh, ow = args[:10]
    _convfast.conv2d_weight_grad(x, a, gw2, g, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow,
                                 num_threads=_threads(gy.size * k))
    return gw.reshape(geom.f, geom.cg, geom.kh, geom.kw)
