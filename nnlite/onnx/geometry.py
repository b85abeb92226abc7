"""ONNX window geometry (pads from ``auto_pad``, pooled sizes, ConvTranspose output shapes).

Pure integer arithmetic shared by the Tensor executor (``nnlite.onnx.ops``) and the inference
plan (``nnlite.inference``). Pads are returned in ONNX order (top, left, bottom, right). Pooled
sizes come from ``nnlite._poolgeom.pool_output_size`` and conv sizes from
``nnlite._convgeom`` (the one place each is computed); this module only reads the ONNX
attributes (``auto_pad`` splits, per-side pads).
"""
from .._convgeom import transpose_output_size
from .._poolgeom import pool_output_size

__all__ = ["window", "conv_pads", "pool_geometry", "conv_transpose_geometry",
           "onnx_pads_to_torch"]


def window(attrs, kernel=None):
    """(kernel, strides, dilations) as (h, w) pairs; ``kernel`` from the weight if not in attrs."""
    k = tuple(int(v) for v in attrs.get("kernel_shape", kernel))
    s = tuple(int(v) for v in attrs.get("strides", (1, 1)))
    d = tuple(int(v) for v in attrs.get("dilations", (1, 1)))
    return k, s, d


def _same(length, k, s, d, upper):
    out = -(-length // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - length, 0)
    head = total // 2 if upper else total - total // 2
    return head, total - head


def conv_pads(attrs, hw, k, s, d):
    """Explicit (top, left, bottom, right) pads for input spatial size ``hw``."""
    mode = attrs.get("auto_pad", "NOTSET")
    if mode == "VALID":
        return (0, 0, 0, 0)
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        (t, b), (l, r) = (_same(hw[i], k[i], s[i], d[i], mode == "SAME_UPPER") for i in (0, 1))
        return (t, l, b, r)
    return tuple(int(p) for p in attrs.get("pads", (0, 0, 0, 0)))


def pool_geometry(attrs, hw):
    """(kernel, strides, dilations, pads, out_hw) of a MaxPool/AveragePool on ``hw``.

    Output length per axis: floor mode ``(L + pb + pe - keff) // s + 1``; ceil mode rounds up
    and then drops a last window that would start in the end padding (PyTorch's rule, which
    ONNX Runtime follows).
    """
    k, s, d = window(attrs)
    pads = conv_pads(attrs, hw, k, s, d)
    ceil = bool(int(attrs.get("ceil_mode", 0)))
    out = tuple(pool_output_size(hw[i], k[i], s[i], pads[i], d[i], ceil, p_end=pads[i + 2])
                for i in (0, 1))
    # ceil mode takes a window that hangs over the end (PyTorch's rule: out >= 1 whenever the
    # first window starts inside); floor mode needs a whole window inside the padded input
    if min(out) < 1 or (not ceil and any(hw[i] + pads[i] + pads[i + 2] < d[i] * (k[i] - 1) + 1
                                         for i in (0, 1))):
        raise ValueError(f"pooling window {k} (dilation {d}) does not fit the padded input "
                         f"{hw} with pads {pads}")
    return k, s, d, pads, out


def conv_transpose_geometry(attrs, hw, k, s, d):
    """(pads, output_padding, out_hw) of an ONNX ConvTranspose on spatial size ``hw``.

    ``out = s·(L−1) + op + keff − pad_begin − pad_end``; with ``output_shape`` or SAME
    auto_pad the total padding is derived from the requested size (ONNX's split rule).
    """
    op = tuple(int(v) for v in attrs.get("output_padding", (0, 0)))
    full = [transpose_output_size(hw[i], k[i], s[i], 0, 0, d[i], op[i]) for i in (0, 1)]
    mode = attrs.get("auto_pad", "NOTSET")
    want = None
    if "output_shape" in attrs:
        want = [int(v) for v in attrs["output_shape"]]
    elif mode in ("SAME_UPPER", "SAME_LOWER"):
        want = [hw[i] * s[i] for i in (0, 1)]
    if want is not None:
        pads = [0, 0, 0, 0]
        for i in (0, 1):
            total = full[i] - want[i]   # negative: the output extends past the full one
            if mode == "SAME_UPPER":
                pads[i], pads[i + 2] = total // 2, total - total // 2
            else:
                pads[i], pads[i + 2] = total - total // 2, total // 2
        pads = tuple(pads)
    elif mode == "VALID":
        pads = (0, 0, 0, 0)
    else:
        pads = tuple(int(p) for p in attrs.get("pads", (0, 0, 0, 0)))
    out = tuple(transpose_output_size(hw[i], k[i], s[i], pads[i], pads[i + 2], d[i], op[i])
                for i in (0, 1))
    if min(out) < 1:
        raise ValueError(f"ConvTranspose output size {out} is not positive (input {hw}, "
                         f"pads {pads})")
    return pads, op, out


def onnx_pads_to_torch(pads, rank):
    """ONNX Pad ``pads`` [b0, b1, ..., e0, e1, ...] -> F.pad order (last dim first)."""
    pads = [int(p) for p in pads]
    if len(pads) != 2 * rank:
        raise ValueError(f"Pad: pads has {len(pads)} entries, expected {2 * rank} for a "
                         f"rank-{rank} input")
    out = []
    for dim in reversed(range(rank)):
        out += [pads[dim], pads[dim + rank]]
    while len(out) > 2 and out[-1] == 0 and out[-2] == 0:
        out = out[:-2]
    return tuple(out)
