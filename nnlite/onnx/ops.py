"""ONNX ops on nnlite Tensors: the plain (differentiable) executor of ``OnnxModule``.

``OPS[op](node, args, opset) -> list of outputs``; ``args`` holds Tensors (None for absent
optional inputs). Float data flows through nnlite's functional ops (autograd works); shape
arithmetic (Shape/Gather/Unsqueeze/Concat on int64) is plain NumPy wrapped in Tensors.
"""
import numpy as np

from .. import functional as F
from ..tensor import Tensor, cat
from . import geometry as G
from .spec import cast_dtype

__all__ = ["OPS", "run_node"]

OPS = {}


def _op(name):
    def deco(fn):
        OPS[name] = fn
        return fn
    return deco


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
        raise ValueError(f"{node.label()}: expects a 4-D (N, C, H, W) input, got shape "
                         f"{tuple(x.shape)}")
    return x.shape[2:]


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


# ------------------------------------------------------------------------------ convolution
@_op("Conv")
def conv(node, args, opset):
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    hw = _spatial(x, node)
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


@_op("ConvTranspose")
def conv_transpose(node, args, opset):
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    hw = _spatial(x, node)
    k, s, d = G.window(node.attrs, w.shape[2:])
    pads, op, out = G.conv_transpose_geometry(node.attrs, hw, k, s, d)
    g = int(node.attrs.get("group", 1))
    t, l, bo, r = pads
    sym = t == bo and l == r and all(op[i] < max(s[i], d[i]) for i in (0, 1))
    if sym:
        return [F.conv_transpose2d(x, w, b, s, (t, l), op, g, d)]
    # general case: full transposed conv, then crop the begin pads / extend with zero rows
    y = F.conv_transpose2d(x, w, None, s, 0, 0, g, d)
    fh, fw = y.shape[2:]
    eh, ew = max(t + out[0] - fh, 0), max(l + out[1] - fw, 0)
    if eh or ew:
        y = F.pad(y, (0, ew, 0, eh))
    y = y[:, :, t:t + out[0], l:l + out[1]]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return [y]


# ------------------------------------------------------------------------------ pooling
@_op("MaxPool")
def max_pool(node, args, opset):
    x = args[0]
    k, s, d, pads, out = G.pool_geometry(node.attrs, _spatial(x, node))
    ceil = bool(int(node.attrs.get("ceil_mode", 0)))
    if _torch_pool_ok(k, pads):
        y = F.max_pool2d(x, k, s, (pads[0], pads[1]), d, ceil)
    else:
        xp = _pad_for_windows(x, pads, k, s, d, out, float("-inf"))
        y = F.max_pool2d(xp, k, s, 0, d, False)
    return [y[:, :, :out[0], :out[1]] if tuple(y.shape[2:]) != out else y]


@_op("AveragePool")
def avg_pool(node, args, opset):
    x = args[0]
    hw = _spatial(x, node)
    k, s, d, pads, out = G.pool_geometry(node.attrs, hw)
    ceil = bool(int(node.attrs.get("ceil_mode", 0)))
    cip = bool(int(node.attrs.get("count_include_pad", 0)))
    if _torch_pool_ok(k, pads):
        return [F.avg_pool2d(x, k, s, (pads[0], pads[1]), ceil, cip)]
    xp = _pad_for_windows(x, pads, k, s, d, out, 0.0)
    total = F.avg_pool2d(xp, k, s, 0, False, True, 1)[:, :, :out[0], :out[1]]
    div = avg_divisor(hw, k, s, pads, out, cip).astype(x.dtype)
    return [total / Tensor(div)]


def avg_divisor(hw, k, s, pads, out, count_include_pad):
    """(OH, OW) divisors: windows clipped to the padded extent (count_include_pad) or to the
    input (docs/semantics.md §4.3)."""
    axes = []
    for i in (0, 1):
        start = np.arange(out[i]) * s[i] - pads[i]
        end = np.minimum(start + k[i], hw[i] + pads[i + 2])
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, hw[i])
        axes.append(np.maximum(end - start, 1))
    return np.outer(axes[0], axes[1]).astype(np.float64)


@_op("GlobalAveragePool")
def global_avg_pool(node, args, opset):
    x = args[0]
    if x.ndim < 3:
        raise ValueError(f"{node.label()}: expects (N, C, ...) input, got {tuple(x.shape)}")
    return [x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)]


@_op("GlobalMaxPool")
def global_max_pool(node, args, opset):
    x = args[0]
    if x.ndim < 3:
        raise ValueError(f"{node.label()}: expects (N, C, ...) input, got {tuple(x.shape)}")
    n, c = x.shape[:2]
    y = x.reshape(n, c, -1).max(axis=2, keepdim=True)
    return [y.reshape((n, c) + (1,) * (x.ndim - 2))]


# ------------------------------------------------------------------------------ elementwise
@_op("BatchNormalization")
def batch_norm(node, args, opset):
    x, scale, bias, mean, var = args
    eps = float(node.attrs.get("epsilon", 1e-5))
    return [F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)]


@_op("Relu")
def relu(node, args, opset):
    return [F.relu(args[0])]


@_op("Clip")
def clip(node, args, opset):
    x = args[0]
    if opset < 11:
        lo, hi = node.attrs.get("min"), node.attrs.get("max")
    else:
        lo = _arr(args[1]).item() if len(args) > 1 and args[1] is not None else None
        hi = _arr(args[2]).item() if len(args) > 2 and args[2] is not None else None
    if lo is not None and hi is not None and lo == 0 and hi == 6:
        return [F.relu6(x)]
    if lo is not None and hi is None and lo == 0:
        return [F.relu(x)]
    return [x.clamp(lo, hi)]


@_op("Sigmoid")
def sigmoid(node, args, opset):
    return [F.sigmoid(args[0])]


@_op("Tanh")
def tanh(node, args, opset):
    return [F.tanh(args[0])]


def _binary(fn):
    def run(node, args, opset):
        a, b = args
        if a.dtype.kind != "f" and b.dtype.kind != "f":
            return [Tensor(fn(_arr(a), _arr(b)).astype(a.dtype))]
        return [fn(a, b)]
    return run


OPS["Add"] = _binary(lambda a, b: a + b)
OPS["Sub"] = _binary(lambda a, b: a - b)
OPS["Mul"] = _binary(lambda a, b: a * b)


def _div(a, b):
    if isinstance(a, np.ndarray) and a.dtype.kind in "iu":
        return np.trunc(a / b)  # ONNX integer Div truncates toward zero
    return a / b


OPS["Div"] = _binary(_div)


# ------------------------------------------------------------------------------ shapes
@_op("Concat")
def concat(node, args, opset):
    ts = [a for a in args if a is not None]
    axis = _axis(node.attrs["axis"], ts[0].ndim, node.label())
    if all(t.dtype.kind != "f" for t in ts):
        return [Tensor(np.concatenate([_arr(t) for t in ts], axis=axis))]
    return [cat(ts, dim=axis)]


@_op("Flatten")
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


@_op("Reshape")
def reshape(node, args, opset):
    x = args[0]
    target = (node.attrs["shape"] if "shape" in node.attrs
              else _ints(args[1], "Reshape: the shape input"))
    shape = reshape_target(x.shape, target, int(node.attrs.get("allowzero", 0)))
    return [x.reshape(*shape)]


@_op("Transpose")
def transpose(node, args, opset):
    x = args[0]
    perm = node.attrs.get("perm", list(reversed(range(x.ndim))))
    return [x.permute(*[int(p) for p in perm])]


@_op("Shape")
def shape(node, args, opset):
    dims = np.asarray(args[0].shape, dtype=np.int64)
    start = int(node.attrs.get("start", 0))
    end = node.attrs.get("end")
    return [Tensor(dims[start:None if end is None else int(end)])]


@_op("Gather")
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


@_op("Unsqueeze")
def unsqueeze(node, args, opset):
    x = args[0]
    axes = _axes_arg(node, args, opset, 13)
    rank = x.ndim + len(axes)
    axes = sorted(_axis(a, rank, node.label()) for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return [x.reshape(*shape) if x.dtype.kind == "f" else Tensor(_arr(x).reshape(shape))]


@_op("Squeeze")
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


@_op("Cast")
def cast(node, args, opset):
    x = args[0]
    dt = cast_dtype(node.attrs.get("to", 1))
    return [x if x.dtype == dt else Tensor(_arr(x).astype(dt))]


# ------------------------------------------------------------------------------ dense
@_op("Gemm")
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


@_op("MatMul")
def matmul(node, args, opset):
    return [args[0] @ args[1]]


@_op("Softmax")
def softmax(node, args, opset):
    x = args[0]
    axis = _axis(node.attrs.get("axis", -1 if opset >= 13 else 1), x.ndim, node.label())
    if opset >= 13 or axis == x.ndim - 1:
        return [F.softmax(x, dim=axis)]
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    y = F.softmax(x.reshape(lead, -1), dim=1)
    return [y.reshape(*x.shape)]


@_op("Dropout")
def dropout(node, args, opset):
    return [args[0]]


@_op("Identity")
def identity(node, args, opset):
    return [args[0]]


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate",
              "wrap": "circular"}


@_op("Pad")
def pad(node, args, opset):
    x = args[0]
    if opset < 11:
        pads, value = node.attrs["pads"], float(node.attrs.get("value", 0.0))
    else:
        pads = _ints(args[1], "Pad: pads")
        value = float(_arr(args[2]).item()) if len(args) > 2 and args[2] is not None else 0.0
    mode = _PAD_MODES[node.attrs.get("mode", "constant")]
    tp = G.onnx_pads_to_torch(pads, x.ndim)
    if any(p < 0 for p in tp):  # negative pads crop
        index = [slice(None)] * x.ndim
        for j in range(len(tp) // 2):
            dim = x.ndim - 1 - j
            lo, hi = tp[2 * j], tp[2 * j + 1]
            index[dim] = slice(-lo if lo < 0 else 0, x.shape[dim] + hi if hi < 0 else None)
        x = x[tuple(index)]
        tp = tuple(max(p, 0) for p in tp)
    if not any(tp):
        return [x]
    if mode == "constant":
        return [F.pad(x, tp, mode="constant", value=value)]
    return [F.pad(x, tp, mode=mode)]


# ------------------------------------------------------------------------------ detection
@_op("RoiAlign")
def roi_align(node, args, opset):
    from .. import ops as tvops

    x, rois, bidx = args
    at = node.attrs
    boxes = _roi_boxes(rois, bidx, x)
    aligned = opset >= 16 and at.get("coordinate_transformation_mode",
                                     "half_pixel") == "half_pixel"
    sr = int(at.get("sampling_ratio", 0))
    out = (int(at.get("output_height", 1)), int(at.get("output_width", 1)))
    return [tvops.roi_align(x, boxes, out, float(at.get("spatial_scale", 1.0)),
                            sr if sr > 0 else -1, aligned)]


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


@_op("MaxRoiPool")
def max_roi_pool(node, args, opset):
    from .. import ops as tvops

    x, rois = args
    ph, pw = (int(v) for v in node.attrs["pooled_shape"])
    return [tvops.roi_pool(x, rois, (ph, pw), float(node.attrs.get("spatial_scale", 1.0)))]


def run_node(node, args, opset):
    """Outputs of ``node`` (list, one per non-empty output name)."""
    return OPS[node.op](node, args, opset)
