"""The three conv routines as im2col/col2im + ONE batched GEMM, shared by the 'cython' and 'numpy'
backends (they differ only in the im2col/col2im they pass in).

    forward          y  = W_g @ im2col(x)                 (+ bias)
    backward_input   gx = col2im(W_gᵀ @ gy)               (= conv_transpose2d forward)
    backward_weight  gW = Σ_n gy_g[n] @ im2col(x)[n]ᵀ     (convT's gW with x and gy swapped)

Legend: N batch, C image channels, F column-side channels, G groups, CG = C/G, FG = F/G,
K = CG*KH*KW, L = OH*OW. Columns per image are (C*KH*KW, L) = (G, K, L), so groups (including
depthwise, G == C) are a batch axis of a single np.matmul call, never a Python loop over groups.

Special path (explicit, tested against the general path with ``general=True``): a pointwise
geometry (1x1, stride 1, no padding) multiplies the image directly and skips im2col.

Memory: the column workspace is allocated once per call for a chunk of images
(``ConvGeometry.batch_chunk``; at most ``_convgeom.COL_BUDGET_BYTES``) and reused for every chunk;
im2col writes into it and the GEMM reads it in place (matmul ``out=`` views, no hidden copies).
"""
import numpy as np


def matmul(a, b, out=None):
    """The one GEMM call of the conv path (nnlite's own blocked GEMM may replace np.matmul here)."""
    return np.matmul(a, b, out=out)


def _chunks(geom, itemsize):
    nb = geom.batch_chunk(itemsize)
    for n0 in range(0, geom.n, nb):
        yield n0, min(n0 + nb, geom.n)


def _workspace(geom, dtype):
    nb = geom.batch_chunk(np.dtype(dtype).itemsize)
    return np.empty(geom.col_shape(nb), dtype=dtype)  # (NB, C*KH*KW, L)


def forward(x, w, b, geom, im2col, general=False):
    """y (N, F, OH, OW) = conv2d(x (N, C, H, W), w (F, CG, KH, KW)) + b (F,)."""
    x = np.ascontiguousarray(x)
    n, g, fg, k, l = geom.n, geom.g, geom.fg, geom.k, geom.l
    y = np.empty((n, geom.f, l), dtype=x.dtype)
    wg = np.ascontiguousarray(w).reshape(g, fg, k)                # (G, FG, K)
    if geom.is_pointwise and not general:
        xg = x.reshape(n, g, geom.cg, l)                          # K == CG, L == H*W
        # (G, FG, K) @ (N, G, K, L) -> (N, G, FG, L)
        matmul(wg, xg, out=y.reshape(n, g, fg, l))
    elif n:
        ws = _workspace(geom, x.dtype)
        for n0, n1 in _chunks(geom, x.dtype.itemsize):
            m = n1 - n0
            cols = im2col(x[n0:n1], geom, out=ws[:m])           # (M, C*KH*KW, L)
            # (G, FG, K) @ (M, G, K, L) -> (M, G, FG, L)
            matmul(wg, cols.reshape(m, g, k, l), out=y[n0:n1].reshape(m, g, fg, l))
    if b is not None:
        y += b.reshape(geom.f, 1)
    return y.reshape(n, geom.f, geom.oh, geom.ow)


def backward_input(gy, w, geom, col2im, general=False):
    """gx (N, C, H, W) = col2im(W_gᵀ @ gy), gy (N, F, OH, OW); also conv_transpose2d's forward."""
    gy = np.ascontiguousarray(gy)
    n, g, fg, k, l = geom.n, geom.g, geom.fg, geom.k, geom.l
    gyg = gy.reshape(n, g, fg, l)                                 # (N, G, FG, L)
    wt = np.ascontiguousarray(w).reshape(g, fg, k).transpose(0, 2, 1)   # (G, K, FG) view
    shape = (n, geom.c, geom.h, geom.w)
    if geom.is_pointwise and not general:
        gx = np.empty(shape, dtype=gy.dtype)
        # (G, CG, FG) @ (N, G, FG, L) -> (N, G, CG, L), L == H*W
        matmul(wt, gyg, out=gx.reshape(n, g, geom.cg, l))
        return gx
    gx = np.zeros(shape, dtype=gy.dtype)                          # col2im accumulates
    if n:
        ws = _workspace(geom, gy.dtype)
        for n0, n1 in _chunks(geom, gy.dtype.itemsize):
            m = n1 - n0
            gcols = ws[:m]                                        # (M, C*KH*KW, L)
            # (G, K, FG) @ (M, G, FG, L) -> (M, G, K, L)
            matmul(wt, gyg[n0:n1], out=gcols.reshape(m, g, k, l))
            col2im(gcols, geom, out=gx[n0:n1])
    return gx


def backward_weight(gy, x, geom, im2col, general=False):
    """gW (F, CG, KH, KW) = Σ_n gy_g[n] @ im2col(x)[n]ᵀ; gy (N, F, OH, OW), x (N, C, H, W)."""
    gy = np.ascontiguousarray(gy)
    x = np.ascontiguousarray(x)
    n, g, fg, k, l = geom.n, geom.g, geom.fg, geom.k, geom.l
    gyg = gy.reshape(n, g, fg, l)                                 # (N, G, FG, L)
    gw = np.zeros((g, fg, k), dtype=gy.dtype)
    if geom.is_pointwise and not general:
        xt = x.reshape(n, g, geom.cg, l).transpose(0, 1, 3, 2)    # (N, G, L, CG) view
        # (N, G, FG, L) @ (N, G, L, CG) -> (N, G, FG, CG), summed over N
        if n:
            np.sum(matmul(gyg, xt), axis=0, out=gw)
    elif n:
        ws = _workspace(geom, x.dtype)
        for n0, n1 in _chunks(geom, x.dtype.itemsize):
            m = n1 - n0
            cols = im2col(x[n0:n1], geom, out=ws[:m])           # (M, C*KH*KW, L)
            colt = cols.reshape(m, g, k, l).transpose(0, 1, 3, 2)   # (M, G, L, K) view
            # (M, G, FG, L) @ (M, G, L, K) -> (M, G, FG, K), summed over M
            gw += matmul(gyg[n0:n1], colt).sum(axis=0)
    return gw.reshape(geom.f, geom.cg, geom.kh, geom.kw)
