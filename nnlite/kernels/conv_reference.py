"""Naive-loop reference for conv2d and conv_transpose2d, forward and backward: the test oracle and a
study mode (``nnlite.using_backend("reference")``).

Shares NO code with the fast paths: imports only NumPy, computes its own output sizes from the raw
arguments, and follows the per-element definitions of docs/semantics.md §1.3 (gather form) and §2.3
(scatter form) literally, one output pixel and one kernel tap at a time (only the channel
contraction of one group is a small vectorised dot product). Computes in float64 and casts back.

Two layers:
- plain functions with PyTorch's arguments (``conv2d``, ``conv2d_grads``, ``conv_transpose2d``,
  ``conv_transpose2d_grads``); padding is an int, (ph, pw) or explicit (top, bottom, left, right);
- the registered 'reference' kernels ``conv2d_forward``/``conv2d_backward_input``/
  ``conv2d_backward_weight`` with the fast kernels' signatures; they read only the raw stride/
  padding/dilation/groups (and, for the input gradient, the requested image size) from ``geom``.
"""
import numpy as np

from . import register


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _pad4(padding):
    """int | (ph, pw) | (top, bottom, left, right) -> (top, bottom, left, right)."""
    if np.isscalar(padding):
        p = int(padding)
        return (p, p, p, p)
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return padding


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Gather form (docs/semantics.md §1.3):
    y[n,o,i,j] = b[o] + Σ_{c',a,b} w[o,c',a,b]·xp[n, grp(o)·Cg+c', i·sH+a·dH, j·sW+b·dW]."""
    dtype = x.dtype
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    pt, pb, pl, pr = _pad4(padding)
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    fg = f // groups
    y = np.zeros((n, f, oh, ow))
    for o in range(f):
        grp = o // fg
        for i in range(oh):
            for j in range(ow):
                for a in range(kh):
                    r = i * sh + a * dh - pt
                    if not 0 <= r < h:
                        continue
                    for bb in range(kw):
                        q = j * sw + bb * dw - pl
                        if not 0 <= q < wd:
                            continue
                        # Σ over the group's input channels c' for every n
                        y[:, o, i, j] += x[:, grp * cg:(grp + 1) * cg, r, q] @ w[o, :, a, bb]
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y.astype(dtype)


def conv2d_grads(x, w, gy, stride=1, padding=0, dilation=1, groups=1):
    """(gx, gw, gb) of conv2d by looping over the same index relation as ``conv2d``."""
    gx, gw = _conv2d_adjoints(gy, w, x, x.shape[2:], w.shape, stride, padding, dilation, groups)
    return gx, gw, gy.astype(np.float64).sum(axis=(0, 2, 3)).astype(gy.dtype)


def _conv2d_adjoints(gy, w, x, input_size, w_shape, stride, padding, dilation, groups):
    """gx (needs w; image size ``input_size``) and gw (needs x; shape ``w_shape``), else None."""
    dtype = gy.dtype
    gy = gy.astype(np.float64)
    n, f, oh, ow = gy.shape
    _, cg, kh, kw = w_shape
    h, wd = input_size
    wd64 = None if w is None else w.astype(np.float64)
    xd = None if x is None else x.astype(np.float64)
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    pt, _, pl, _ = _pad4(padding)
    fg = f // groups
    gx = None if w is None else np.zeros((n, cg * groups, h, wd))
    gw = None if x is None else np.zeros(w_shape)
    for o in range(f):
        cs = slice((o // fg) * cg, (o // fg + 1) * cg)
        for i in range(oh):
            for j in range(ow):
                g = gy[:, o, i, j]                                   # (N,)
                for a in range(kh):
                    r = i * sh + a * dh - pt
                    if not 0 <= r < h:
                        continue
                    for bb in range(kw):
                        q = j * sw + bb * dw - pl
                        if not 0 <= q < wd:
                            continue
                        if gx is not None:
                            gx[:, cs, r, q] += np.outer(g, wd64[o, :, a, bb])
                        if gw is not None:
                            gw[o, :, a, bb] += g @ xd[:, cs, r, q]
    return (None if gx is None else gx.astype(dtype)), (None if gw is None else gw.astype(dtype))


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Scatter form (docs/semantics.md §2.3):
    full[n, grp·Cout_g+co', h·s+a·d, ...] += x[n,ci,h,w]·W[ci,co',a,b], then crop ``padding``
    from both ends and add bias. W is (Cin, Cout/groups, kH, kW)."""
    dtype = x.dtype
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, cin, h, wd = x.shape
    _, coutg, kh, kw = w.shape
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    ph, pw = _pair(padding)
    oph, opw = _pair(output_padding)
    cing = cin // groups
    fh = (h - 1) * sh + dh * (kh - 1) + 1 + oph
    fw = (wd - 1) * sw + dw * (kw - 1) + 1 + opw
    full = np.zeros((n, coutg * groups, fh, fw))
    for ci in range(cin):
        cos = slice((ci // cing) * coutg, (ci // cing + 1) * coutg)
        for i in range(h):
            for j in range(wd):
                v = x[:, ci, i, j]                                   # (N,)
                for a in range(kh):
                    for bb in range(kw):
                        full[:, cos, i * sh + a * dh, j * sw + bb * dw] += np.outer(
                            v, w[ci, :, a, bb])
    y = full[:, :, ph:fh - ph, pw:fw - pw]
    if b is not None:
        y = y + b.astype(np.float64)[None, :, None, None]
    return np.ascontiguousarray(y).astype(dtype)


def conv_transpose2d_grads(x, w, gy, stride=1, padding=0, output_padding=0, groups=1,
                           dilation=1):
    """(gx, gw, gb) of conv_transpose2d by looping over the scatter relation backwards."""
    dtype = gy.dtype
    x, w, gy = x.astype(np.float64), w.astype(np.float64), gy.astype(np.float64)
    n, cin, h, wd = x.shape
    _, coutg, kh, kw = w.shape
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    ph, pw = _pair(padding)
    hout, wout = gy.shape[2:]
    cing = cin // groups
    gx = np.zeros(x.shape)
    gw = np.zeros(w.shape)
    for ci in range(cin):
        cos = slice((ci // cing) * coutg, (ci // cing + 1) * coutg)
        for i in range(h):
            for j in range(wd):
                for a in range(kh):
                    r = i * sh + a * dh - ph
                    if not 0 <= r < hout:
                        continue
                    for bb in range(kw):
                        q = j * sw + bb * dw - pw
                        if not 0 <= q < wout:
                            continue
                        g = gy[:, cos, r, q]                         # (N, Cout_g)
                        gx[:, ci, i, j] += g @ w[ci, :, a, bb]
                        gw[ci, :, a, bb] += x[:, ci, i, j] @ g
    gb = gy.sum(axis=(0, 2, 3))
    return gx.astype(dtype), gw.astype(dtype), gb.astype(dtype)


# ------------------------------------------------------- registered 'reference' kernels
@register("conv2d_forward", "reference")
def conv2d_forward(x, w, b, geom):
    return conv2d(x, w, b, geom.stride, geom.padding, geom.dilation, geom.g)


@register("conv2d_backward_input", "reference")
def conv2d_backward_input(gy, w, geom):
    gx, _ = _conv2d_adjoints(gy, w, None, (geom.h, geom.w), w.shape, geom.stride, geom.padding,
                             geom.dilation, geom.g)
    return gx


@register("conv2d_backward_weight", "reference")
def conv2d_backward_weight(gy, x, geom):
    w_shape = (gy.shape[1], x.shape[1] // geom.g, geom.kh, geom.kw)
    _, gw = _conv2d_adjoints(gy, None, x, x.shape[2:], w_shape, geom.stride, geom.padding,
                             geom.dilation, geom.g)
    return gw
