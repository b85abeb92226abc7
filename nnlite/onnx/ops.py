"""ONNX ops on nnlite Tensors: the plain (differentiable) executor of ``OnnxModule``.

``OPS[op](node, args, opset) -> list of outputs``; ``args`` holds Tensors (None for absent
optional inputs). Float data flows through nnlite's functional ops (autograd works); shape
arithmetic (Shape/Gather/Unsqueeze/Concat on int64) is plain NumPy wrapped in Tensors.
"""
import numpy as np

from .. import functional as F
from ..tensor import Tensor, cat
from . import geometry as G
from .._registry import Registry

__all__ = ["OPS", "register_op", "run_node"]

OPS = Registry("ONNX op")
register_op = OPS.register   # @register_op("Name", ...): the handler of those ops


def _arr(t):
    return t.data if isinstance(t, Tensor) else np.asarray(t)


def _ints(t, what="an index input"):
    a = np.asarray(_arr(t))
    if a.dtype.kind not in "iu":
        raise TypeError(f"{what} must be int64, got {a.dtype}")
    return [int(v) for v in a.reshape(-1)]


def _axis(axis, rank, what):
    axis = int(axis)
    if not -rank <= axis < rank:
        raise ValueError(f"{what}: axis {axis} is out of range for rank {rank}")
    return axis % rank


def _spatial(x, node):
    if x.ndim != 4:
        raise ValueError(f"{node.label()}: expects a 3-D (N, C, L) or 4-D (N, C, H, W) input, "
                         f"got shape {tuple(x.shape)}")
    return x.shape[2:]


_LIFT = {"kernel_shape": 1, "strides": 1, "dilations": 1, "output_padding": 0}


def _lift_attrs(attrs):
    """A 1-D conv/pool's attributes as the 2-D op on a height-1 input."""
    out = dict(attrs)
    for key, fill in _LIFT.items():
        if key in attrs:
            out[key] = [fill] + [int(v) for v in attrs[key]]
    if "pads" in attrs:
        b, e = (int(v) for v in attrs["pads"])
        out["pads"] = [0, b, 0, e]
    if "output_shape" in attrs:
        out["output_shape"] = [1] + [int(v) for v in attrs["output_shape"]][-1:]
    return out


def _one_d(fn):
    """Run a 2-D conv/pool op on 1-D (N, C, L) data as (N, C, 1, L) (and squeeze back)."""
    def run(node, args, opset):
        x = args[0]
        if x is None or x.ndim != 3:
            if x is not None and x.ndim == 5:
                raise ValueError(f"{node.label()}: 3-D (N, C, D, H, W) convolution/pooling is "
                                 "not supported (1-D and 2-D only)")
            return fn(node, args, opset)
        lifted = type(node)(node.op, node.inputs, node.outputs, _lift_attrs(node.attrs),
                            node.name)
        new = list(args)
        new[0] = _unsq(x)
        if node.op in ("Conv", "ConvTranspose") and len(args) > 1 and args[1].ndim == 3:
            new[1] = _unsq(args[1])
        if node.op == "MaxUnpool":
            new[1] = _unsq(args[1])
        outs = fn(lifted, new, opset)
        return [o if o is None or o.ndim != 4 else _sq(o) for o in outs]
    return run


def _unsq(t):
    shape = (t.shape[0], t.shape[1], 1) + tuple(t.shape[2:])
    return t.reshape(*shape) if t.dtype.kind == "f" else Tensor(_arr(t).reshape(shape))


def _sq(t):
    shape = tuple(t.shape[:2]) + tuple(t.shape[3:])
    return t.reshape(*shape) if t.dtype.kind == "f" else Tensor(_arr(t).reshape(shape))


def _torch_pool_ok(k, pads):
    t, l, b, r = pads
    return t == b and l == r and t <= k[0] // 2 and l <= k[1] // 2


def _pad_for_windows(x, pads, k, s, d, out, value):
    """Pad so that exactly ``out`` windows fit (begin pads as given, end pads as needed)."""
    t, l = pads[0], pads[1]
    H, W = x.shape[2:]
    need_h = max((out[0] - 1) * s[0] + d[0] * (k[0] - 1) + 1 - H - t, 0)
    need_w = max((out[1] - 1) * s[1] + d[1] * (k[1] - 1) + 1 - W - l, 0)
    if t == l == need_h == need_w == 0:
        return x
    return F.pad(x, (l, need_w, t, need_h), mode="constant", value=value)


def _window_sum(x, k, s, d, pads, out):
    """Sum of each (dilated) pooling window over the zero-padded input: a depthwise conv with
    a kernel of ones. Shape (N, C, H, W) -> (N, C, *out)."""
    n, c = x.shape[:2]
    xp = _pad_for_windows(x, pads, k, s, d, out, 0.0)
    planes = xp.reshape(n * c, 1, *xp.shape[2:])
    ones = Tensor(np.ones((1, 1) + tuple(k), dtype=x.dtype))
    y = F.conv2d(planes, ones, None, s, 0, d, 1)[:, :, :out[0], :out[1]]
    return y.reshape(n, c, out[0], out[1])


# ------------------------------------------------------------------------------ convolution
def _conv_operands(node, args):
    """(x, w, b, hw) of a Conv / ConvTranspose node: its input, 4-D weight, bias or None, and
    the input's spatial size."""
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    hw = _spatial(x, node)
    if w.ndim != 4:
        raise ValueError(f"{node.label()}: weight of shape {tuple(w.shape)} does not match the "
                         f"{x.ndim}-D input {tuple(x.shape)}")
    return x, w, b, hw


@register_op("Conv")
@_one_d
def conv(node, args, opset):
    x, w, b, hw = _conv_operands(node, args)
    k, s, d = G.window(node.attrs, w.shape[2:])
    if tuple(k) != tuple(w.shape[2:]):
        raise ValueError(f"{node.label()}: kernel_shape {list(k)} does not match the weight "
                         f"shape {tuple(w.shape)}")
    t, l, bo, r = G.conv_pads(node.attrs, hw, k, s, d)
    g = int(node.attrs.get("group", 1))
    if t == bo and l == r:
        return [F.conv2d(x, w, b, s, (t, l), d, g)]
    x = F.pad(x, (l, r, t, bo))
    return [F.conv2d(x, w, b, s, 0, d, g)]


@register_op("ConvTranspose")
@_one_d
def conv_transpose(node, args, opset):
    x, w, b, hw = _conv_operands(node, args)
    k, s, d = G.window(node.attrs, w.shape[2:])
    pads, op, out = G.conv_transpose_geometry(node.attrs, hw, k, s, d)
    g = int(node.attrs.get("group", 1))
    t, l, bo, r = pads
    sym = (t == bo >= 0 and l == r >= 0
           and all(op[i] < max(s[i], d[i]) for i in (0, 1)))
    if sym:
        return [F.conv_transpose2d(x, w, b, s, (t, l), op, g, d)]
    # general case: full transposed conv, then crop the begin pads / extend with zero rows
    from .ops_ext import check_alloc

    check_alloc((x.shape[0], w.shape[1] * g) + tuple(out), x.dtype, "ConvTranspose")
    y = F.conv_transpose2d(x, w, None, s, 0, 0, g, d)
    if t < 0 or l < 0:  # negative begin pads: zero rows/columns before the full output
        y = F.pad(y, (max(-l, 0), 0, max(-t, 0), 0))
        t, l = max(t, 0), max(l, 0)
    fh, fw = y.shape[2:]
    eh, ew = max(t + out[0] - fh, 0), max(l + out[1] - fw, 0)
    if eh or ew:
        y = F.pad(y, (0, ew, 0, eh))
    y = y[:, :, t:t + out[0], l:l + out[1]]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return [y]


# ------------------------------------------------------------------------------ pooling
@register_op("MaxPool")
@_one_d
def max_pool(node, args, opset):
    x = args[0]
    hw = _spatial(x, node)
    k, s, d, pads, out = G.pool_geometry(node.attrs, hw)
    ceil = bool(int(node.attrs.get("ceil_mode", 0)))
    want = len(node.outputs) > 1 and bool(node.outputs[1])
    exact = x.dtype.kind != "f"
    if exact:  # integer data pools exactly in float64 (int8/uint8/int32 values are exact)
        if x.dtype.itemsize > 4:
            raise TypeError(f"{node.label()}: MaxPool on {x.dtype} is not supported")
        x = Tensor(_arr(x).astype(np.float64))
    if _torch_pool_ok(k, pads):
        res = F.max_pool2d(x, k, s, (pads[0], pads[1]), d, ceil, return_indices=want)
        top = left = 0
        width = hw[1]
    else:
        xp = _pad_for_windows(x, pads, k, s, d, out, float("-inf"))
        res = F.max_pool2d(xp, k, s, 0, d, False, return_indices=want)
        top, left, width = pads[0], pads[1], xp.shape[3]
    y, idx = res if want else (res, None)
    if tuple(y.shape[2:]) != tuple(out):
        y = y[:, :, :out[0], :out[1]]
    if exact:
        y = Tensor(_arr(y).astype(args[0].dtype))
    if not want:
        return [y]
    idx = np.asarray(_arr(idx))[:, :, :out[0], :out[1]]
    h, w = idx // width - top, idx % width - left
    n, c = x.shape[:2]
    plane = np.arange(n * c, dtype=np.int64).reshape(n, c, 1, 1) * (hw[0] * hw[1])
    order = int(node.attrs.get("storage_order", 0))
    flat = h * hw[1] + w if order == 0 else w * hw[0] + h
    return [y, Tensor((plane + flat).astype(np.int64))]


@register_op("AveragePool")
@_one_d
def avg_pool(node, args, opset):
    x = args[0]
    hw = _spatial(x, node)
    k, s, d, pads, out = G.pool_geometry(node.attrs, hw)
    ceil = bool(int(node.attrs.get("ceil_mode", 0)))
    cip = bool(int(node.attrs.get("count_include_pad", 0)))
    if _torch_pool_ok(k, pads) and d == (1, 1):
        return [F.avg_pool2d(x, k, s, (pads[0], pads[1]), ceil, cip)]
    if d == (1, 1):
        xp = _pad_for_windows(x, pads, k, s, d, out, 0.0)
        total = F.avg_pool2d(xp, k, s, 0, False, True, 1)[:, :, :out[0], :out[1]]
    else:
        total = _window_sum(x, k, s, d, pads, out)
    div = avg_divisor(hw, k, s, pads, out, cip, d).astype(x.dtype)
    return [total / Tensor(div)]


def avg_divisor(hw, k, s, pads, out, count_include_pad, d=(1, 1)):
    """(OH, OW) divisors: the taps of each (dilated) window inside the padded extent
    (count_include_pad) or inside the input (docs/semantics.md §4.3)."""
    axes = []
    for i in (0, 1):
        taps = np.arange(out[i])[:, None] * s[i] - pads[i] + np.arange(k[i])[None, :] * d[i]
        hi = hw[i] + pads[i + 2]
        lo = -pads[i]
        if not count_include_pad:
            lo, hi = 0, hw[i]
        axes.append(np.maximum(((taps >= lo) & (taps < hi)).sum(axis=1), 1))
    return np.outer(axes[0], axes[1]).astype(np.float64)


@register_op("LpPool")
@_one_d
def lp_pool(node, args, opset):
    x = args[0]
    hw = _spatial(x, node)
    k, s, d, pads, out = G.pool_geometry(node.attrs, hw)
    p = float(node.attrs.get("p", 2))
    if p <= 0:
        raise ValueError(f"{node.label()}: p={p} must be positive")
    ceil = bool(int(node.attrs.get("ceil_mode", 0)))
    if pads == (0, 0, 0, 0) and d == (1, 1) and not ceil:
        return [F.lp_pool2d(x.abs(), p, k, s)]
    return [_window_sum(x.abs() ** p, k, s, d, pads, out) ** (1.0 / p)]


@register_op("GlobalAveragePool")
def global_avg_pool(node, args, opset):
    x = args[0]
    if x.ndim < 3:
        raise ValueError(f"{node.label()}: expects (N, C, ...) input, got {tuple(x.shape)}")
    return [x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)]


@register_op("GlobalMaxPool")
def global_max_pool(node, args, opset):
    x = args[0]
    if x.ndim < 3:
        raise ValueError(f"{node.label()}: expects (N, C, ...) input, got {tuple(x.shape)}")
    n, c = x.shape[:2]
    y = x.reshape(n, c, -1).max(axis=2, keepdim=True)
    return [y.reshape((n, c) + (1,) * (x.ndim - 2))]


@register_op("GlobalLpPool")
def global_lp_pool(node, args, opset):
    x = args[0]
    if x.ndim < 3:
        raise ValueError(f"{node.label()}: expects (N, C, ...) input, got {tuple(x.shape)}")
    p = float(node.attrs.get("p", 2))
    return [(x.abs() ** p).sum(dim=tuple(range(2, x.ndim)), keepdim=True) ** (1.0 / p)]


@register_op("MaxUnpool")
@_one_d
def max_unpool(node, args, opset):
    x, ind = args[0], np.asarray(_arr(args[1]))
    hw = _spatial(x, node)
    at = node.attrs
    k = [int(v) for v in at["kernel_shape"]]
    s = [int(v) for v in at.get("strides", (1, 1))]
    pads = [int(v) for v in at.get("pads", (0, 0, 0, 0))]
    if len(args) > 2 and args[2] is not None:
        out = [int(v) for v in _arr(args[2]).reshape(-1)][-2:]
        if len(out) == 1:
            out = [1] + out
    else:
        out = None
    # indices address the inferred output; a larger output_shape adds zeros at the end
    from .ops_ext import check_alloc

    inferred = [(hw[i] - 1) * s[i] + k[i] - pads[i] - pads[i + 2] for i in (0, 1)]
    check_alloc(tuple(x.shape[:2]) + tuple(out or inferred), x.dtype, "MaxUnpool")
    n, c = x.shape[:2]
    plane = np.arange(n * c, dtype=np.int64).reshape(n, c, 1, 1) * (inferred[0] * inferred[1])
    y = F.max_unpool2d(x, ind - plane, k, s, 0, tuple(inferred))
    if out is not None and list(out) != inferred:
        if out[0] < inferred[0] or out[1] < inferred[1]:
            raise ValueError(f"{node.label()}: output_shape {out} is smaller than the "
                             f"unpooled size {inferred}")
        y = F.pad(y, (0, out[1] - inferred[1], 0, out[0] - inferred[0]))
    return [y]


# ------------------------------------------------------------------------------ elementwise
@register_op("BatchNormalization")
def batch_norm(node, args, opset):
    x, scale, bias, mean, var = args
    at = node.attrs
    eps = float(at.get("epsilon", 1e-5))
    training = (int(at.get("training_mode", 0)) == 1 if opset >= 14 else
                (opset < 7 and int(at.get("is_test", 0)) == 0) or
                (opset < 14 and len([o for o in node.outputs if o]) > 1))
    if training:
        return _batch_norm_training(x, scale, bias, mean, var, eps,
                                    float(at.get("momentum", 0.9)), len(node.outputs), opset)
    if scale.ndim > 1 or int(at.get("spatial", 1)) == 0 and x.ndim > 2:
        # spatial=0 (opset < 9): one statistic per (channel, position)
        shape = (1,) + tuple(x.shape[1:])
        sc, b, m, v = (t.reshape(*shape) for t in (scale, bias, mean, var))
        return [(x - m) / (v + eps).sqrt() * sc + b]
    return [F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)]


def _batch_norm_training(x, scale, bias, mean, var, eps, momentum, n_out, opset):
    """Training-mode BatchNormalization: normalise with the batch statistics; the extra
    outputs are the updated running mean/var (and, before opset 14, the batch mean/var)."""
    a = _arr(x)
    axes = (0,) + tuple(range(2, a.ndim))
    shape = (1, -1) + (1,) * (a.ndim - 2)
    bm, bv = a.mean(axis=axes), a.var(axis=axes)
    y = (a - bm.reshape(shape)) / np.sqrt(bv.reshape(shape) + eps) * \
        _arr(scale).reshape(shape) + _arr(bias).reshape(shape)
    rm = _arr(mean) * momentum + bm * (1 - momentum)
    rv = _arr(var) * momentum + bv * (1 - momentum)
    outs = [Tensor(y.astype(a.dtype)), Tensor(rm.astype(a.dtype)), Tensor(rv.astype(a.dtype)),
            Tensor(bm.astype(a.dtype)), Tensor(bv.astype(a.dtype))]
    return outs[:n_out]


@register_op("Relu")
def relu(node, args, opset):
    return [F.relu(args[0])]


@register_op("Sigmoid")
def sigmoid(node, args, opset):
    return [F.sigmoid(args[0])]


@register_op("Tanh")
def tanh(node, args, opset):
    return [F.tanh(args[0])]


# ------------------------------------------------------------------------------ shapes
@register_op("Concat")
def concat(node, args, opset):
    ts = [a for a in args if a is not None]
    axis = _axis(node.attrs.get("axis", 1 if opset < 4 else None), ts[0].ndim, node.label())
    if all(t.dtype.kind != "f" for t in ts):
        return [Tensor(np.concatenate([_arr(t) for t in ts], axis=axis))]
    return [cat(ts, dim=axis)]


@register_op("Flatten")
def flatten(node, args, opset):
    x = args[0]
    axis = int(node.attrs.get("axis", 1))
    axis = axis % x.ndim if axis < 0 else axis
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    return [x.reshape(lead, int(np.prod(x.shape[axis:], dtype=np.int64)))]


def reshape_target(shape_in, target, allowzero):
    """ONNX Reshape: 0 copies the input dim (unless allowzero), -1 is inferred."""
    target = [int(v) for v in target]
    out = [shape_in[i] if (v == 0 and not allowzero and i < len(shape_in)) else v
           for i, v in enumerate(target)]
    if out.count(-1) > 1:
        raise ValueError(f"Reshape: more than one -1 in target shape {target}")
    if -1 in out:
        known = int(np.prod([v for v in out if v != -1], dtype=np.int64))
        total = int(np.prod(shape_in, dtype=np.int64))
        if known == 0 or total % known:
            raise ValueError(f"Reshape: cannot reshape {tuple(shape_in)} into {target}")
        out[out.index(-1)] = total // known
    if int(np.prod(out, dtype=np.int64)) != int(np.prod(shape_in, dtype=np.int64)):
        raise ValueError(f"Reshape: cannot reshape {tuple(shape_in)} into {target}")
    return tuple(out)


@register_op("Reshape")
def reshape(node, args, opset):
    x = args[0]
    target = (node.attrs["shape"] if "shape" in node.attrs
              else _ints(args[1], "Reshape: the shape input"))
    shape = reshape_target(x.shape, target, int(node.attrs.get("allowzero", 0)))
    return [x.reshape(*shape)]


@register_op("Transpose")
def transpose(node, args, opset):
    x = args[0]
    perm = node.attrs.get("perm", list(reversed(range(x.ndim))))
    return [x.permute(*[int(p) for p in perm])]


@register_op("Shape")
def shape(node, args, opset):
    dims = np.asarray(args[0].shape, dtype=np.int64)
    start = int(node.attrs.get("start", 0))
    end = node.attrs.get("end")
    return [Tensor(dims[start:None if end is None else int(end)])]


@register_op("Gather")
def gather(node, args, opset):
    x, idx = args
    axis = _axis(node.attrs.get("axis", 0), x.ndim, node.label())
    ind = np.asarray(_ints(idx, "Gather: indices"), np.int64).reshape(np.shape(_arr(idx)))
    n = x.shape[axis]
    if ind.size and (ind.min() < -n or ind.max() >= n):
        raise ValueError(f"{node.label()}: indices {ind.tolist()} out of range for axis "
                         f"{axis} of size {n}")
    ind = np.where(ind < 0, ind + n, ind)
    if x.dtype.kind != "f":
        return [Tensor(np.take(_arr(x), ind, axis=axis))]
    return [x[(slice(None),) * axis + (ind if ind.ndim else int(ind),)]]


def _axes_arg(node, args, opset, since):
    if opset < since or "axes" in node.attrs:
        return node.attrs.get("axes")
    return (_ints(args[1], f"{node.op}: axes") if len(args) > 1 and args[1] is not None
            else None)


@register_op("Unsqueeze")
def unsqueeze(node, args, opset):
    x = args[0]
    axes = _axes_arg(node, args, opset, 13)
    rank = x.ndim + len(axes)
    axes = sorted(_axis(a, rank, node.label()) for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return [x.reshape(*shape) if x.dtype.kind == "f" else Tensor(_arr(x).reshape(shape))]


@register_op("Squeeze")
def squeeze(node, args, opset):
    x = args[0]
    axes = _axes_arg(node, args, opset, 13)
    if axes is None:
        axes = [i for i, n in enumerate(x.shape) if n == 1]
    axes = {_axis(a, x.ndim, node.label()) for a in axes}
    bad = [a for a in axes if x.shape[a] != 1]
    if bad:
        raise ValueError(f"{node.label()}: cannot squeeze axes {bad} of shape {tuple(x.shape)}")
    shape = [n for i, n in enumerate(x.shape) if i not in axes]
    return [x.reshape(*shape) if x.dtype.kind == "f" else Tensor(_arr(x).reshape(shape))]


# ------------------------------------------------------------------------------ dense
@register_op("Gemm")
def gemm(node, args, opset):
    a, b = args[0], args[1]
    c = args[2] if len(args) > 2 else None
    at = node.attrs
    if int(at.get("transA", 0)):
        a = a.permute(1, 0)
    alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
    if int(at.get("transB", 0)) and c is not None and alpha == 1.0 and beta == 1.0 \
            and c.ndim == 1:
        return [F.linear(a, b, c)]
    if int(at.get("transB", 0)):
        b = b.permute(1, 0)
    y = a @ b
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return [y]


@register_op("MatMul")
def matmul(node, args, opset):
    return [args[0] @ args[1]]


@register_op("Softmax")
def softmax(node, args, opset):
    x = args[0]
    axis = _axis(node.attrs.get("axis", -1 if opset >= 13 else 1), x.ndim, node.label())
    if opset >= 13 or axis == x.ndim - 1:
        return [F.softmax(x, dim=axis)]
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    y = F.softmax(x.reshape(lead, -1), dim=1)
    return [y.reshape(*x.shape)]


@register_op("Identity")
def identity(node, args, opset):
    return [args[0]]


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate",
              "wrap": "circular"}


@register_op("Pad")
def pad(node, args, opset):
    x = args[0]
    if opset < 11:
        pads, value = node.attrs["pads"], float(node.attrs.get("value", 0.0))
    else:
        pads = _ints(args[1], "Pad: pads")
        cv = args[2] if len(args) > 2 and args[2] is not None else None
        value = _arr(cv).reshape(-1)[0].item() if cv is not None and _arr(cv).size else 0
    if len(args) > 3 and args[3] is not None:
        axes = [_axis(a, x.ndim, node.label()) for a in _ints(args[3], "Pad: axes")]
        if len(pads) != 2 * len(axes):
            raise ValueError(f"Pad: pads has {len(pads)} entries for {len(axes)} axes")
        full = [0] * (2 * x.ndim)
        for i, a in enumerate(axes):
            full[a], full[a + x.ndim] = pads[i], pads[i + len(axes)]
        pads = full
    mode = _PAD_MODES[node.attrs.get("mode", "constant")]
    tp = G.onnx_pads_to_torch(pads, x.ndim)
    if any(p < 0 for p in tp):  # negative pads crop
        index = [slice(None)] * x.ndim
        for j in range(len(tp) // 2):
            dim = x.ndim - 1 - j
            lo, hi = tp[2 * j], tp[2 * j + 1]
            index[dim] = slice(-lo if lo < 0 else 0, x.shape[dim] + hi if hi < 0 else None)
        x = x[tuple(index)] if x.dtype.kind == "f" else Tensor(_arr(x)[tuple(index)])
        tp = tuple(max(p, 0) for p in tp)
    if not any(tp):
        return [x]
    from .ops_ext import check_alloc

    new_shape = list(x.shape)
    for j in range(len(tp) // 2):
        new_shape[x.ndim - 1 - j] += tp[2 * j] + tp[2 * j + 1]
    check_alloc(new_shape, x.dtype, "Pad")
    if x.dtype.kind != "f":
        width = [(0, 0)] * x.ndim
        for j in range(len(tp) // 2):
            width[x.ndim - 1 - j] = (tp[2 * j], tp[2 * j + 1])
        np_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
                   "circular": "wrap"}[mode]
        kw = {"constant_values": value} if np_mode == "constant" else {}
        return [Tensor(np.pad(_arr(x), width, mode=np_mode, **kw))]
    if mode == "constant":
        return [F.pad(x, tp, mode="constant", value=float(value))]
    return [F.padding.pad_trailing(x, tp, mode)]


# ------------------------------------------------------------------------------ detection
@register_op("RoiAlign")
def roi_align(node, args, opset):
    from .. import ops as tvops

    x, rois, bidx = args
    at = node.attrs
    half = opset >= 16 and at.get("coordinate_transformation_mode",
                                  "half_pixel") == "half_pixel"
    sr = int(at.get("sampling_ratio", 0))
    out = (int(at.get("output_height", 1)), int(at.get("output_width", 1)))
    scale = float(at.get("spatial_scale", 1.0))
    if at.get("mode", "avg") == "max":
        return [Tensor(roi_align_max(_arr(x), _arr(rois), np.asarray(_arr(bidx)).reshape(-1),
                                     out, scale, sr, half))]
    boxes = _roi_boxes(rois, bidx, x)
    return [tvops.roi_align(x, boxes, out, scale, sr if sr > 0 else -1, half)]


def roi_align_max(x, rois, bidx, out, scale, sampling_ratio, half_pixel):
    """ONNX RoiAlign mode='max': per bin, the largest of the bilinear corner terms
    w_i * x_i over all sample points (ONNX's definition, not the max of interpolated values).
    Shape: x (N, C, H, W), rois (R, 4) as (x1, y1, x2, y2), bidx (R,) -> (R, C, *out)."""
    n, c, h, w = x.shape
    if rois.ndim != 2 or rois.shape[1] != 4 or bidx.shape[0] != rois.shape[0]:
        raise ValueError(f"RoiAlign: rois must be (num_rois, 4) with one batch index each, got "
                         f"rois {tuple(rois.shape)} and batch_indices {tuple(bidx.shape)}")
    if bidx.size and (bidx.min() < 0 or bidx.max() >= n):
        raise ValueError(f"RoiAlign: batch_indices {bidx.tolist()} out of range for batch {n}")
    ph, pw = out
    res = np.zeros((rois.shape[0], c, ph, pw), dtype=x.dtype)
    off = 0.5 if half_pixel else 0.0
    for r in range(rois.shape[0]):
        x1, y1, x2, y2 = (float(v) * scale - off for v in rois[r])
        rw, rh = x2 - x1, y2 - y1
        if not half_pixel:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = sampling_ratio if sampling_ratio > 0 else int(np.ceil(rh / ph))
        gw = sampling_ratio if sampling_ratio > 0 else int(np.ceil(rw / pw))
        if gh <= 0 or gw <= 0:
            continue
        ys = y1 + np.arange(ph)[:, None] * bh + (np.arange(gh)[None, :] + 0.5) * bh / gh
        xs = x1 + np.arange(pw)[:, None] * bw + (np.arange(gw)[None, :] + 0.5) * bw / gw
        (ylo, yhi, wy0, wy1, vy), (xlo, xhi, wx0, wx1, vx) = _corners(ys, h), _corners(xs, w)
        img = x[int(bidx[r])]                                       # (C, H, W)
        terms = []
        for yi, wy in ((ylo, wy0), (yhi, wy1)):
            for xi, wx in ((xlo, wx0), (xhi, wx1)):
                v = img[:, yi[:, :, None, None], xi[None, None, :, :]]   # (C, ph, gh, pw, gw)
                wgt = (wy[:, :, None, None] * wx[None, None, :, :] *
                       (vy[:, :, None, None] & vx[None, None, :, :]))
                terms.append(v * wgt)
        best = np.maximum(np.maximum(terms[0], terms[1]), np.maximum(terms[2], terms[3]))
        res[r] = best.max(axis=(2, 4))
    return res


def _corners(coord, size):
    """Bilinear corner indices/weights of sample coordinates along one axis (ONNX's rules:
    samples beyond [-1, size] contribute 0; others clamp at 0 and at the last pixel)."""
    valid = (coord >= -1.0) & (coord <= size)
    c = np.maximum(coord, 0.0)
    lo = np.floor(c).astype(np.int64)
    edge = lo >= size - 1
    lo = np.where(edge, size - 1, lo)
    hi = np.where(edge, size - 1, lo + 1)
    c = np.where(edge, lo, c)
    frac = c - lo
    return lo, hi, 1.0 - frac, frac, valid


def _roi_boxes(rois, bidx, x):
    r = _arr(rois)
    b = np.asarray(_arr(bidx)).reshape(-1, 1).astype(r.dtype)
    if r.ndim != 2 or r.shape[1] != 4 or b.shape[0] != r.shape[0]:
        raise ValueError(f"RoiAlign: rois must be (num_rois, 4) with one batch index each, got "
                         f"rois {tuple(r.shape)} and batch_indices {tuple(b.shape)}")
    if r.dtype.kind != "f":
        raise TypeError(f"RoiAlign: rois must be floating, got {r.dtype}")
    if isinstance(rois, Tensor) and rois.requires_grad:
        return cat([Tensor(b), rois], dim=1)
    return Tensor(np.concatenate([b, r], axis=1).astype(x.dtype))


@register_op("MaxRoiPool")
def max_roi_pool(node, args, opset):
    from .. import ops as tvops

    x, rois = args
    ph, pw = (int(v) for v in node.attrs["pooled_shape"])
    return [tvops.roi_pool(x, rois, (ph, pw), float(node.attrs.get("spatial_scale", 1.0)))]


from . import ops_ext  # noqa: E402,F401  (registers the remaining ops into OPS)


def run_node(node, args, opset):
    """Outputs of ``node`` (list, one per non-empty output name). Floating-point exceptions
    give IEEE results silently (sqrt(-1) is NaN, 1/0 is inf), as ONNX defines them."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        return OPS[node.op](node, args, opset)


def run_node_named(node, args, opset):
    """``run_node`` whose ValueError / TypeError / RuntimeError names the node (once: many ops
    name it in their own messages already)."""
    try:
        return run_node(node, args, opset)
    except (ValueError, TypeError, RuntimeError) as exc:
        label, msg = node.label(), str(exc)
        raise type(exc)(msg if msg.startswith(label) else f"{label}: {msg}") from exc
