"""The three conv routines as im2col/col2im + ONE batched GEMM, shared by the 'cython' and 'numpy'
backends (they differ in the im2col/col2im and the GEMM ``mm`` they pass in: NumPy's
``np.matmul`` below, or nnlite's own blocked GEMM from ``conv_cython``).

    forward          y  = W_g @ im2col(x)                 (+ bias)
    backward_input   gx = col2im(W_gᵀ @ gy)               (= conv_transpose2d forward)
    backward_weight  gW = Σ_n gy_g[n] @ im2col(x)[n]ᵀ     (convT's gW with x and gy swapped)

Legend: N batch, C image channels, F column-side channels, G groups, CG = C/G, FG = F/G,
K = CG*KH*KW, L = OH*OW. Columns per image are (C*KH*KW, L) = (G, K, L), so groups (including
depthwise, G == C) are a batch axis of a single np.matmul call, never a Python loop over groups.

Special path (explicit, tested against the general path with ``general=True``): a pointwise
geometry (1x1, stride 1, no padding) multiplies the image directly and skips im2col.

GEMM hook ``mm`` (``numpy_mm`` below, or nnlite's GEMM): bias is added by it (fused into the
write-out by nnlite's GEMM), and the weight gradient is one reducing call per chunk of images.

Memory: the column workspace is allocated once per call for a chunk of images
(``ConvGeometry.batch_chunk``; at most ``_convgeom.COL_BUDGET_BYTES``) and reused for every chunk;
im2col writes into it and the GEMM reads it in place (matmul ``out=`` views, no hidden copies).
"""
import numpy as np

from .._config import available_memory_bytes as _available_bytes


def matmul(a, b, out=None):
    """The one NumPy GEMM call of the conv path (the 'numpy' backend's ``mm`` goes through it)."""
    return np.matmul(a, b, out=out)


def numpy_mm(a, b, out, bias=None, accumulate=False, reduce=False):
    """The GEMM hook ``mm`` of the routines below, on ``matmul``:

        out (+)= a @ b  (+ bias[..., None])          reduce=False
        out (+)= Σ_i a[i] @ b[i]                       reduce=True (sum over the first axis)

    Leading axes broadcast as in np.matmul; ``accumulate`` adds to ``out`` instead of
    overwriting it. The 'cython' backend passes the same contract on nnlite's GEMM.
    """
    if reduce:
        prod = matmul(a, b)
        if accumulate:
            out += prod.sum(axis=0)
        else:
            np.sum(prod, axis=0, out=out)
    elif accumulate:
        out += matmul(a, b)
    else:
        matmul(a, b, out=out)
    if bias is not None:
        out += bias[..., None]
    return out


def _chunks(geom, itemsize):
    nb = geom.batch_chunk(itemsize)
    for n0 in range(0, geom.n, nb):
        yield n0, min(n0 + nb, geom.n)


def _workspace(geom, dtype):
    nb = geom.batch_chunk(np.dtype(dtype).itemsize)
    shape = geom.col_shape(nb)                                    # (NB, C*KH*KW, L)
    nbytes = np.dtype(dtype).itemsize
    for s in shape:                                  # exact Python ints (no overflow)
        nbytes *= int(s)
    avail = _available_bytes()
    if avail is not None and nbytes > avail:
        # refuse before allocating: an allocation that succeeds lazily would be OOM-killed later
        raise MemoryError(
            f"conv2d: the column matrix for one chunk of {nb} image(s) needs {nbytes:,} bytes "
            f"{shape} but only {avail:,} bytes are available; use "
            "nnlite.conv_algorithm('implicit') (no column matrix) or a smaller input")
    return np.empty(shape, dtype=dtype)


def forward(x, w, b, geom, im2col, general=False, mm=numpy_mm, out=None, workspace=None,
            accumulate=False):
    """y (N, F, OH, OW) = conv2d(x (N, C, H, W), w (F, CG, KH, KW)) + b (F,).

    The inference plan calls it too, with its own buffers and epilogue: ``out`` (N, F, OH*OW)
    receives y (with ``accumulate`` y is added to what it holds: a residual), ``workspace``
    (M, C*KH*KW, OH*OW) is the column buffer reused for chunks of M images, and ``mm`` (its GEMM
    with packed weights and a fused activation) gets ``accumulate`` through.
    """
    x = np.asarray(x)     # any strides: a plan's channel slice of a larger buffer is no copy
    n, g, fg, k, l = geom.n, geom.g, geom.fg, geom.k, geom.l
    y = np.empty((n, geom.f, l), dtype=x.dtype) if out is None else out
    wg = np.ascontiguousarray(w).reshape(g, fg, k)                # (G, FG, K)
    bg = None if b is None else np.asarray(b).reshape(g, fg)      # (G, FG)
    if geom.is_pointwise and not general:
        xg = x.reshape(n, g, geom.cg, l)                          # K == CG, L == H*W
        # (G, FG, K) @ (N, G, K, L) -> (N, G, FG, L)
        mm(wg, xg, out=y.reshape(n, g, fg, l), bias=bg, accumulate=accumulate)
    elif n:
        ws = _workspace(geom, x.dtype) if workspace is None else workspace
        nb = ws.shape[0]
        for n0 in range(0, n, nb):
            n1 = min(n0 + nb, n)
            m = n1 - n0
            cols = im2col(x[n0:n1], geom, out=ws[:m])           # (M, C*KH*KW, L)
            # (G, FG, K) @ (M, G, K, L) -> (M, G, FG, L)
            mm(wg, cols.reshape(m, g, k, l), out=y[n0:n1].reshape(m, g, fg, l), bias=bg,
               accumulate=accumulate)
    return y.reshape(n, geom.f, geom.oh, geom.ow)


def backward_input(gy, w, geom, col2im, general=False, mm=numpy_mm):
    """gx (N, C, H, W) = col2im(W_gᵀ @ gy), gy (N, F, OH, OW); also conv_transpose2d's forward."""
    gy = np.ascontiguousarray(gy)
    n, g, fg, k, l = geom.n, geom.g, geom.fg, geom.k, geom.l
    gyg = gy.reshape(n, g, fg, l)                                 # (N, G, FG, L)
    wt = np.ascontiguousarray(w).reshape(g, fg, k).transpose(0, 2, 1)   # (G, K, FG) view
    shape = (n, geom.c, geom.h, geom.w)
    if geom.is_pointwise and not general:
        gx = np.empty(shape, dtype=gy.dtype)
        # (G, CG, FG) @ (N, G, FG, L) -> (N, G, CG, L), L == H*W
        mm(wt, gyg, out=gx.reshape(n, g, geom.cg, l))
        return gx
    gx = np.zeros(shape, dtype=gy.dtype)                          # col2im accumulates
    if n:
        ws = _workspace(geom, gy.dtype)
        for n0, n1 in _chunks(geom, gy.dtype.itemsize):
            m = n1 - n0
            gcols = ws[:m]                                        # (M, C*KH*KW, L)
            # (G, K, FG) @ (M, G, FG, L) -> (M, G, K, L)
            mm(wt, gyg[n0:n1], out=gcols.reshape(m, g, k, l))
            col2im(gcols, geom, out=gx[n0:n1])
    return gx


def backward_weight(gy, x, geom, im2col, general=False, mm=numpy_mm):
    """gW (F, CG, KH, KW) = Σ_n gy_g[n] @ im2col(x)[n]ᵀ; gy (N, F, OH, OW), x (N, C, H, W)."""
    gy = np.ascontiguousarray(gy)
    x = np.ascontiguousarray(x)
    n, g, fg, k, l = geom.n, geom.g, geom.fg, geom.k, geom.l
    gyg = gy.reshape(n, g, fg, l)                                 # (N, G, FG, L)
    gw = np.zeros((g, fg, k), dtype=gy.dtype)
    if geom.is_pointwise and not general:
        xt = x.reshape(n, g, geom.cg, l).transpose(0, 1, 3, 2)    # (N, G, L, CG) view
        if n:
            # (N, G, FG, L) @ (N, G, L, CG) -> (G, FG, CG), summed over N
            mm(gyg, xt, out=gw, reduce=True)
    elif n:
        ws = _workspace(geom, x.dtype)
        for n0, n1 in _chunks(geom, x.dtype.itemsize):
            m = n1 - n0
            cols = im2col(x[n0:n1], geom, out=ws[:m])           # (M, C*KH*KW, L)
            colt = cols.reshape(m, g, k, l).transpose(0, 1, 3, 2)   # (M, G, L, K) view
            # (M, G, FG, L) @ (M, G, L, K) -> (G, FG, K), summed over M
            mm(gyg[n0:n1], colt, out=gw, accumulate=n0 > 0, reduce=True)
    return gw.reshape(geom.f, geom.cg, geom.kh, geom.kw)
