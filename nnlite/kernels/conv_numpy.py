"""Pure-NumPy conv kernels: im2col/col2im as KH*KW strided-slice copies (no Python loop over
pixels), and the three conv routines of ``_conv_gemm`` on top of them.

Legend: N batch (of the chunk), C channels, H/W image, HP/WP padded image, OH/OW column grid,
KH/KW kernel. Tap (a, b) reads the strided view
xp[:, :, a*DH : a*DH + SH*(OH-1)+1 : SH, b*DW : b*DW + SW*(OW-1)+1 : SW]   (docs/semantics.md §1.4).
"""
import numpy as np

from . import _conv_gemm, register


def _padded_extent(geom):
    # rows/cols of the zero-padded image that the taps can touch (covers every window even when
    # the geometry's column grid is smaller or larger than the padded image implies)
    hp = max(geom.h + geom.pt + geom.pb, (geom.oh - 1) * geom.sh + (geom.kh - 1) * geom.dh + 1)
    wp = max(geom.w + geom.pl + geom.pr, (geom.ow - 1) * geom.sw + (geom.kw - 1) * geom.dw + 1)
    return hp, wp


def _tap(arr, geom, a, b):
    """Strided view of the padded image read by kernel tap (a, b): (N, C, OH, OW)."""
    r0, q0 = a * geom.dh, b * geom.dw
    return arr[:, :, r0:r0 + geom.sh * (geom.oh - 1) + 1:geom.sh,
               q0:q0 + geom.sw * (geom.ow - 1) + 1:geom.sw]


def _needs_pad(geom, hp, wp):
    return geom.pt or geom.pl or hp != geom.h or wp != geom.w


@register("im2col", "numpy")
def im2col(x, geom, out=None):
    """cols (N, C*KH*KW, OH*OW) of x (N, C, H, W); written into ``out`` when given."""
    nb, c = x.shape[:2]
    hp, wp = _padded_extent(geom)
    if _needs_pad(geom, hp, wp):
        xp = np.zeros((nb, c, hp, wp), dtype=x.dtype)             # image-sized, not column-sized
        xp[:, :, geom.pt:geom.pt + geom.h, geom.pl:geom.pl + geom.w] = x
    else:
        xp = x
    cols = np.empty(geom.col_shape(nb), dtype=x.dtype) if out is None else out
    c6 = cols.reshape(nb, c, geom.kh, geom.kw, geom.oh, geom.ow)  # view of the same buffer
    for a in range(geom.kh):
        for b in range(geom.kw):
            c6[:, :, a, b] = _tap(xp, geom, a, b)
    return cols


@register("col2im", "numpy")
def col2im(cols, geom, out=None):
    """x (N, C, H, W) += scatter-add of cols (N, C*KH*KW, OH*OW) (zeros when ``out`` is None)."""
    nb = cols.shape[0]
    c = geom.c
    if out is None:
        out = np.zeros((nb, c, geom.h, geom.w), dtype=cols.dtype)
    hp, wp = _padded_extent(geom)
    pad = _needs_pad(geom, hp, wp)
    xp = np.zeros((nb, c, hp, wp), dtype=cols.dtype) if pad else out
    c6 = cols.reshape(nb, c, geom.kh, geom.kw, geom.oh, geom.ow)
    for a in range(geom.kh):
        for b in range(geom.kw):
            # taps overlap when the dilated kernel is wider than the stride: ACCUMULATE
            _tap(xp, geom, a, b)[...] += c6[:, :, a, b]
    if pad:
        out += xp[:, :, geom.pt:geom.pt + geom.h, geom.pl:geom.pl + geom.w]
    return out


@register("conv2d_forward", "numpy")
def conv2d_forward(x, w, b, geom, general=False):
    return _conv_gemm.forward(x, w, b, geom, im2col, general)


@register("conv2d_backward_input", "numpy")
def conv2d_backward_input(gy, w, geom, general=False):
    return _conv_gemm.backward_input(gy, w, geom, col2im, general)


@register("conv2d_backward_weight", "numpy")
def conv2d_backward_weight(gy, x, geom, general=False):
    return _conv_gemm.backward_weight(gy, x, geom, im2col, general)
