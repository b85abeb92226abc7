"""More ONNX ops for the Tensor executor (registered into ``ops.OPS``): activations, the
elementwise/logical ops, shape and index ops, reductions, normalisations, resampling and
the dense extras.

Float data goes through nnlite's differentiable ops and ``nnlite.functional`` where an op has a
PyTorch-style counterpart (LeakyRelu -> F.leaky_relu, LRN -> F.local_response_norm, ...; one
implementation per op). Index, comparison, integer and shape ops are NumPy on the arrays (no
gradient flows through them, as in PyTorch). Ops that can build large arrays from small inputs
(ConstantOfShape, Expand, Tile, Range, Resize, Pad, ...) check the size first
(``check_alloc``) and raise a ValueError naming the op before allocating.
"""
import math

import numpy as np

from .. import functional as F
from .._config import available_memory_bytes
from ..tensor import Tensor
from . import resize as R
from .ops import _arr, _axis, _ints, register_op
from .spec import onnx_dtype

__all__ = ["check_alloc", "check_broadcast"]


def _t(a):
    return a if isinstance(a, Tensor) else Tensor(np.asarray(a))


def _is_float(t):
    return t is not None and np.dtype(t.dtype).kind == "f"




_SMALL = 1 << 28   # below 256 MiB no need to ask the system


def check_alloc(shape, dtype, what):
    """Raise ValueError (before allocating) when an array of ``shape`` would not fit in the
    memory this machine has available (or has a negative/absurd dimension)."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise ValueError(f"{what}: output shape {tuple(dims)} has a negative dimension")
    nbytes = math.prod(dims) * np.dtype(dtype).itemsize
    if nbytes <= _SMALL:
        return
    avail = available_memory_bytes()
    limit = avail if avail is not None else 2 ** 40
    if nbytes > limit:
        raise ValueError(f"{what}: output of shape {tuple(dims)} ({np.dtype(dtype)}) needs "
                         f"{nbytes:,} bytes, more than the {limit:,} bytes of memory available")


def check_broadcast(what, dtype, *arrays):
    """check_alloc for the broadcast result of ``arrays`` (only when broadcasting grows it)."""
    shapes = [tuple(a.shape) for a in arrays if a is not None]
    try:
        out = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{what}: shapes {shapes} do not broadcast") from None
    if math.prod(out) > max(math.prod(s) for s in shapes):
        check_alloc(out, dtype, what)


def _legacy_broadcast(node, a, b, opset):
    """Opset < 7 ``broadcast=1, axis=k``: B's dims align with A's starting at ``axis``."""
    at = node.attrs
    if opset >= 7 or not int(at.get("broadcast", 0)) or "axis" not in at:
        return b
    axis = int(at["axis"]) % max(a.ndim, 1)
    shape = (1,) * axis + tuple(b.shape) + (1,) * (a.ndim - axis - b.ndim)
    return b.reshape(*shape) if isinstance(b, Tensor) else np.reshape(b, shape)


# ------------------------------------------------------------------------------ activations
def _unary(fn_float):
    def run(node, args, opset):
        return [fn_float(args[0], node.attrs)]
    return run


register_op("LeakyRelu")(_unary(lambda x, a: F.leaky_relu(x, float(a.get("alpha", 0.01)))))
register_op("Elu")(_unary(lambda x, a: F.elu(x, float(a.get("alpha", 1.0)))))
register_op("Celu")(_unary(lambda x, a: F.celu(x, float(a.get("alpha", 1.0)))))
register_op("HardSwish")(_unary(lambda x, a: F.hardswish(x)))
register_op("Softsign")(_unary(lambda x, a: F.softsign(x)))
register_op("Softplus")(_unary(lambda x, a: F.softplus(x)))
register_op("Mish")(_unary(lambda x, a: F.mish(x)))
register_op("Erf")(_unary(lambda x, a: F.erf(x) if _is_float(x) else
                           Tensor(np.rint(F.erf(Tensor(_arr(x).astype(np.float64))).data)
                                  .astype(x.dtype))))
register_op("Gelu")(_unary(lambda x, a: F.gelu(x, approximate=a.get("approximate", "none"))))

_SELU_ALPHA, _SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


@register_op("Selu")
def selu(node, args, opset):
    x, at = args[0], node.attrs
    alpha, gamma = float(at.get("alpha", _SELU_ALPHA)), float(at.get("gamma", _SELU_GAMMA))
    if np.float32(alpha) == np.float32(_SELU_ALPHA) and np.float32(gamma) == \
            np.float32(_SELU_GAMMA):
        return [F.selu(x)]
    return [F.elu(x, alpha) * gamma]


@register_op("HardSigmoid")
def hard_sigmoid(node, args, opset):
    x, at = args[0], node.attrs
    alpha, beta = float(at.get("alpha", 0.2)), float(at.get("beta", 0.5))
    if np.float32(alpha) == np.float32(1 / 6) and beta == 0.5:
        return [F.hardsigmoid(x)]
    return [(x * alpha + beta).clamp(0.0, 1.0)]


@register_op("ThresholdedRelu")
def thresholded_relu(node, args, opset):
    x = args[0]
    mask = (_arr(x) > float(node.attrs.get("alpha", 1.0))).astype(x.dtype)
    return [x * Tensor(mask)]


@register_op("PRelu")
def prelu(node, args, opset):
    x, slope = args
    s = _arr(slope)
    if opset < 7 and x.ndim >= 2 and s.size in (1, x.shape[1]):
        return [F.prelu(x, slope.reshape(-1))]     # PRelu-6: one slope per channel
    if x.ndim >= 2 and s.ndim <= x.ndim:
        shape = (1,) * (x.ndim - s.ndim) + s.shape   # ONNX broadcasts slope from the right
        if all(d == 1 for i, d in enumerate(shape) if i != 1) and shape[1] in (1, x.shape[1]):
            return [F.prelu(x, slope.reshape(-1))]  # one slope per channel (or one overall)
    r = F.relu(x)
    return [r + slope * (x - r)]  # where(x > 0, x, slope * x) with slope broadcast


# ------------------------------------------------------------------------------ elementwise
def _binary_np(fn, out_dtype=None):
    def run(node, args, opset):
        a, b = _arr(args[0]), _arr(_legacy_broadcast(node, args[0], args[1], opset))
        check_broadcast(node.op, np.bool_, a, b)
        with np.errstate(all="ignore"):
            y = fn(a, b)
        return [Tensor(np.asarray(y, dtype=out_dtype or a.dtype))]
    return run


register_op("Equal")(_binary_np(np.equal, np.bool_))
register_op("Greater")(_binary_np(np.greater, np.bool_))
register_op("GreaterOrEqual")(_binary_np(np.greater_equal, np.bool_))
register_op("Less")(_binary_np(np.less, np.bool_))
register_op("LessOrEqual")(_binary_np(np.less_equal, np.bool_))
register_op("And")(_binary_np(np.logical_and, np.bool_))
register_op("Or")(_binary_np(np.logical_or, np.bool_))
register_op("Xor")(_binary_np(np.logical_xor, np.bool_))


@register_op("Not")
def logical_not(node, args, opset):
    return [Tensor(np.logical_not(_arr(args[0])))]


def _int_div(a, b):
    if np.any(b == 0):
        raise ValueError("integer Div by zero")
    q = a // b
    return q + ((q < 0) & (q * b != a))  # truncate toward zero as ONNX (and C) do


def _arith(name, fn_t, fn_int):
    def run(node, args, opset):
        a, b = args[0], _legacy_broadcast(node, args[0], args[1], opset)
        b = _t(b)
        check_broadcast(name, a.dtype, a, b)
        if _is_float(a) and _is_float(b):
            return [fn_t(a, b)]
        x, y = _arr(a), _arr(b)
        if x.dtype != y.dtype:
            raise TypeError(f"{name}: operand dtypes differ ({x.dtype} and {y.dtype})")
        with np.errstate(all="ignore"):
            return [Tensor(np.asarray(fn_int(x, y)).astype(x.dtype))]
    return run


register_op("Add")(_arith("Add", lambda a, b: a + b, np.add))
register_op("Sub")(_arith("Sub", lambda a, b: a - b, np.subtract))
register_op("Mul")(_arith("Mul", lambda a, b: a * b, np.multiply))
register_op("Div")(_arith("Div", lambda a, b: a / b,
                          lambda a, b: _int_div(a, b) if a.dtype.kind in "iu" else a / b))


@register_op("Pow")
def power(node, args, opset):
    x, y = args[0], _t(_legacy_broadcast(node, args[0], args[1], opset))
    check_broadcast("Pow", x.dtype, x, y)
    if _is_float(x):
        if not _is_float(y):
            y = Tensor(_arr(y).astype(x.dtype))
        elif y.dtype != x.dtype:
            y = Tensor(_arr(y).astype(x.dtype))
        return [x ** y]
    xa, ya = _arr(x), _arr(y)
    with np.errstate(all="ignore"):
        if ya.dtype.kind == "f":
            out = np.power(xa.astype(np.float64), ya)
        else:
            out = np.power(xa.astype(np.int64), ya.astype(np.int64))
    return [Tensor(np.asarray(out).astype(xa.dtype))]


@register_op("Mod")
def modulo(node, args, opset):
    """fmod=0: A - floor(A / B) * B, the divisor's sign (Python's %; for floats defined since
    opset 28); fmod=1: A - trunc(A / B) * B, the dividend's (C fmod). An integer remainder by
    0 is 0 (ONNX leaves it undefined)."""
    a, b = _arr(args[0]), _arr(args[1])
    fmod = int(node.attrs.get("fmod", 0))
    check_broadcast("Mod", a.dtype, a, b)
    if a.dtype != b.dtype:
        raise TypeError(f"Mod: operand dtypes differ ({a.dtype} and {b.dtype})")
    if fmod not in (0, 1):
        raise ValueError(f"Mod: fmod must be 0 or 1, got {fmod}")
    with np.errstate(all="ignore"):
        y = np.fmod(a, b) if fmod else np.mod(a, b)
    return [Tensor(np.asarray(y, dtype=a.dtype))]


def _float_or_np(method, np_fn):
    def run(node, args, opset):
        x = args[0]
        if _is_float(x):
            return [getattr(x, method)()]
        with np.errstate(all="ignore"):
            return [Tensor(np.asarray(np_fn(_arr(x))).astype(x.dtype))]
    return run


register_op("Sqrt")(_float_or_np("sqrt", np.sqrt))
register_op("Exp")(_float_or_np("exp", np.exp))
register_op("Log")(_float_or_np("log", np.log))
register_op("Abs")(_float_or_np("abs", np.abs))


@register_op("Neg")
def neg(node, args, opset):
    x = args[0]
    return [-x if _is_float(x) else Tensor(np.negative(_arr(x)))]


@register_op("Reciprocal")
def reciprocal(node, args, opset):
    x = args[0]
    return [1.0 / x if _is_float(x) else Tensor((1 / _arr(x)).astype(x.dtype))]


def _np_unary(fn):
    def run(node, args, opset):
        x = _arr(args[0])
        return [Tensor(np.asarray(fn(x)).astype(x.dtype))]
    return run


register_op("Floor")(_np_unary(np.floor))
register_op("Ceil")(_np_unary(np.ceil))
register_op("Round")(_np_unary(np.round))   # half to even, as ONNX
register_op("Sign")(_np_unary(np.sign))


def _variadic(fn_t, fn_np, mean=False):
    def run(node, args, opset):
        ts = [a for a in args if a is not None]
        check_broadcast(node.op, ts[0].dtype, *ts)
        if all(_is_float(t) for t in ts) and fn_t is not None:
            y = ts[0]
            for t in ts[1:]:
                y = fn_t(y, t)
            if len(ts) == 1:
                y = y * 1.0
            return [y / float(len(ts)) if mean else y]
        arrs = [_arr(t) for t in ts]
        y = arrs[0]
        for a in arrs[1:]:
            y = fn_np(y, a)
        y = np.broadcast_to(y, np.broadcast_shapes(*[a.shape for a in arrs]))
        if mean:
            y = y / len(arrs)
        return [Tensor(np.array(y, dtype=arrs[0].dtype))]
    return run


register_op("Sum")(_variadic(lambda a, b: a + b, np.add))
register_op("Mean")(_variadic(lambda a, b: a + b, np.add, mean=True))
register_op("Max")(_variadic(None, np.maximum))
register_op("Min")(_variadic(None, np.minimum))


@register_op("Where")
def where(node, args, opset):
    c, x, y = (_arr(a) for a in args)
    check_broadcast("Where", x.dtype, c, x, y)
    return [Tensor(np.where(c.astype(bool), x, y).astype(x.dtype))]


@register_op("Clip")
def clip(node, args, opset):
    x = args[0]
    if opset < 11:
        lo, hi = node.attrs.get("min"), node.attrs.get("max")
    else:
        lo = _arr(args[1]).item() if len(args) > 1 and args[1] is not None else None
        hi = _arr(args[2]).item() if len(args) > 2 and args[2] is not None else None
    if not _is_float(x):
        a = _arr(x)
        info = np.iinfo(a.dtype) if a.dtype.kind in "iu" else None
        lo = info.min if lo is None else lo
        hi = info.max if hi is None else hi
        return [Tensor(np.minimum(np.maximum(a, lo), hi).astype(a.dtype))]
    if lo is None and hi is None:
        return [x]
    if lo == 0 and hi == 6:
        return [F.relu6(x)]
    if lo == 0 and hi is None:
        return [F.relu(x)]
    if lo is not None and hi is not None and lo > hi:
        return [x * 0.0 + float(hi)]  # min(max(x, lo), hi) is hi everywhere
    return [x.clamp(lo, hi)]


@register_op("Cast")
def cast(node, args, opset):
    x = args[0]
    dt = onnx_dtype(node.attrs.get("to", 1))
    return [_cast_to(x, dt)]


def _cast_to(x, dt):
    if x.dtype == dt:
        return x
    a = _arr(x)
    if a.dtype.kind == "f" and dt.kind in "iu":
        with np.errstate(invalid="ignore"):
            return Tensor(np.trunc(a).astype(dt))
    return Tensor(a.astype(dt))


@register_op("CastLike")
def cast_like(node, args, opset):
    return [_cast_to(args[0], np.dtype(args[1].dtype))]


# ------------------------------------------------------------------------------ shape / index
@register_op("Size")
def size(node, args, opset):
    return [Tensor(np.asarray(_arr(args[0]).size, dtype=np.int64))]


def _split_sizes(node, args, opset, n, length):
    at = node.attrs
    if opset >= 13 and len(args) > 1 and args[1] is not None:
        sizes = _ints(args[1], "Split: split")
    elif opset < 13 and "split" in at:
        sizes = [int(v) for v in at["split"]]
    elif opset < 13 and len(args) > 1 and args[1] is not None:
        sizes = _ints(args[1], "Split: split")
    elif "num_outputs" in at:
        k = int(at["num_outputs"])
        chunk = -(-length // k)
        sizes = [chunk] * (length // chunk) + ([length % chunk] if length % chunk else [])
    else:
        if length % n:
            raise ValueError(f"Split: axis of length {length} cannot be split into {n} "
                             "equal parts")
        sizes = [length // n] * n
    if sum(sizes) != length or any(s < 0 for s in sizes):
        raise ValueError(f"Split: sizes {sizes} do not add up to the axis length {length}")
    if len(sizes) != n:
        raise ValueError(f"Split: {len(sizes)} parts for {n} outputs")
    return sizes


@register_op("Split")
def split(node, args, opset):
    x = args[0]
    axis = _axis(node.attrs.get("axis", 0), x.ndim, node.label())
    sizes = _split_sizes(node, args, opset, len(node.outputs), x.shape[axis])
    outs, start = [], 0
    for s in sizes:
        index = (slice(None),) * axis + (slice(start, start + s),)
        outs.append(x[index] if _is_float(x) else Tensor(_arr(x)[index]))
        start += s
    return outs


def _slice_index(shape, starts, ends, axes, steps):
    index = [slice(None)] * len(shape)
    seen = set()
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        ax = _axis(ax, len(shape), "Slice")
        if ax in seen:
            raise ValueError(f"Slice: axis {ax} given twice")
        seen.add(ax)
        if sp == 0:
            raise ValueError("Slice: steps must not be 0")
        dim = shape[ax]
        st = st + dim if st < 0 else st
        en = en + dim if en < 0 else en
        if sp > 0:
            st, en = min(max(st, 0), dim), min(max(en, 0), dim)
        else:
            st, en = min(max(st, 0), dim - 1), min(max(en, -1), dim - 1)
        index[ax] = slice(st, None if en < 0 else en, sp)
    return tuple(index)


@register_op("Slice")
def slice_op(node, args, opset):
    x, at = args[0], node.attrs
    if opset < 10:
        starts, ends = [int(v) for v in at["starts"]], [int(v) for v in at["ends"]]
        axes = [int(v) for v in at.get("axes", range(len(starts)))]
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(args[1], "Slice: starts"), _ints(args[2], "Slice: ends")
        axes = (_ints(args[3], "Slice: axes") if len(args) > 3 and args[3] is not None
                else list(range(len(starts))))
        steps = (_ints(args[4], "Slice: steps") if len(args) > 4 and args[4] is not None
                 else [1] * len(starts))
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ValueError(f"Slice: starts {starts}, ends {ends}, axes {axes}, steps {steps} "
                         "differ in length")
    index = _slice_index(x.shape, starts, ends, axes, steps)
    return [x[index] if _is_float(x) else Tensor(_arr(x)[index])]


@register_op("GatherElements")
def gather_elements(node, args, opset):
    x, idx = _arr(args[0]), np.asarray(_arr(args[1]))
    axis = _axis(node.attrs.get("axis", 0), x.ndim, node.label())
    n = x.shape[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise ValueError(f"{node.label()}: indices out of range for axis {axis} of size {n}")
    if idx.ndim != x.ndim or any(i > d for k, (i, d) in enumerate(zip(idx.shape, x.shape))
                                 if k != axis):
        raise ValueError(f"{node.label()}: indices of shape {idx.shape} for data of shape "
                         f"{x.shape}: the ranks must match and every axis but {axis} must be "
                         "at most the data's")
    idx = np.where(idx < 0, idx + n, idx)
    # the output has the indices' shape: along the other axes they index the data's leading
    # elements (np.take_along_axis would broadcast the indices to the data's shape instead)
    x = x[tuple(slice(None) if k == axis else slice(0, i) for k, i in enumerate(idx.shape))]
    return [Tensor(np.take_along_axis(x, idx.astype(np.int64), axis=axis))]


@register_op("GatherND")
def gather_nd(node, args, opset):
    """out[b..., i...] = data[b..., *indices[b..., i..., :]]: the last axis of ``indices``
    (length k) indexes data's k axes after the ``batch_dims`` leading ones that both share
    (the form torch.onnx's dynamo exporter gives advanced indexing, x[:, :, rows, cols])."""
    x, idx = _arr(args[0]), np.asarray(_arr(args[1]))
    b = int(node.attrs.get("batch_dims", 0))
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{node.label()}: indices must be integers, got {idx.dtype}")
    if idx.ndim < 1 or not 0 <= b < min(x.ndim, idx.ndim):
        raise ValueError(f"{node.label()}: batch_dims={b} for data of rank {x.ndim} and "
                         f"indices of rank {idx.ndim}")
    k = idx.shape[-1]
    if x.shape[:b] != idx.shape[:b] or not 1 <= k <= x.ndim - b:
        raise ValueError(f"{node.label()}: indices of shape {idx.shape} do not fit data of shape "
                         f"{x.shape} with batch_dims={b}")
    dims = np.asarray(x.shape[b:b + k], np.int64)
    idx = idx.astype(np.int64)
    if idx.size and ((idx < -dims).any() or (idx >= dims).any()):
        raise ValueError(f"{node.label()}: indices out of range for the axes of sizes "
                         f"{tuple(int(d) for d in dims)}")
    idx = np.where(idx < 0, idx + dims, idx)
    lead = int(np.prod(x.shape[:b], dtype=np.int64))
    flat = idx.reshape(lead, -1, k)
    data = x.reshape((lead,) + x.shape[b:])
    picked = data[(np.arange(lead)[:, None],) + tuple(flat[..., j] for j in range(k))]
    return [Tensor(np.ascontiguousarray(
        picked.reshape(x.shape[:b] + idx.shape[b:-1] + x.shape[b + k:])))]


@register_op("Expand")
def expand(node, args, opset):
    x = args[0]
    shape = _ints(args[1], "Expand: shape")
    out = np.broadcast_shapes(tuple(x.shape), tuple(max(s, 0) if s else 0 for s in shape)) \
        if all(s >= 0 for s in shape) else None
    if out is None:
        raise ValueError(f"Expand: shape {shape} has a negative dimension")
    check_alloc(out, x.dtype, "Expand")
    if _is_float(x) and tuple(out) != tuple(x.shape):
        return [x + Tensor(np.zeros(out, x.dtype))]
    return [Tensor(np.array(np.broadcast_to(_arr(x), out)))]


@register_op("Tile")
def tile(node, args, opset):
    x = args[0]
    reps = _ints(args[1], "Tile: repeats")
    if len(reps) != x.ndim or any(r < 0 for r in reps):
        raise ValueError(f"Tile: repeats {reps} must be {x.ndim} non-negative integers")
    check_alloc([s * r for s, r in zip(x.shape, reps)], x.dtype, "Tile")
    return [Tensor(np.tile(_arr(x), reps))]


@register_op("ConstantOfShape")
def constant_of_shape(node, args, opset):
    shape = _ints(args[0], "ConstantOfShape: input")
    value = node.attrs.get("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    check_alloc(shape, value.dtype, "ConstantOfShape")
    return [Tensor(np.full(shape, value[0], dtype=value.dtype))]


@register_op("Range")
def range_op(node, args, opset):
    start, limit, delta = (_arr(a).reshape(()) for a in args)
    if delta == 0:
        raise ValueError("Range: delta must not be 0")
    n = max(int(math.ceil((float(limit) - float(start)) / float(delta))), 0)
    check_alloc([n], start.dtype, "Range")
    return [Tensor((start + np.arange(n, dtype=np.float64 if start.dtype.kind == "f"
                                      else np.int64).astype(start.dtype) * delta)
                   .astype(start.dtype))]


@register_op("Dropout")
def dropout(node, args, opset):
    x = args[0]
    training = bool(_arr(args[2]).item()) if len(args) > 2 and args[2] is not None else False
    ratio = float(_arr(args[1]).item()) if len(args) > 1 and args[1] is not None else \
        float(node.attrs.get("ratio", 0.5))
    if training and ratio != 0.0:
        raise ValueError("Dropout in training mode with ratio > 0 is random; nnlite imports "
                         "models for inference")
    outs = [x]
    if len(node.outputs) > 1:
        mask_dt = np.bool_ if opset >= 10 else x.dtype
        outs.append(Tensor(np.ones(x.shape, dtype=mask_dt)))
    return outs


def _arg(fn):
    def run(node, args, opset):
        x = _arr(args[0])
        at = node.attrs
        axis = _axis(at.get("axis", 0), x.ndim, node.label())
        keep = bool(int(at.get("keepdims", 1)))
        if int(at.get("select_last_index", 0)):
            y = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
        else:
            y = fn(x, axis=axis)
        y = np.asarray(y, dtype=np.int64)
        return [Tensor(np.expand_dims(y, axis) if keep else y)]
    return run


register_op("ArgMax")(_arg(np.argmax))
register_op("ArgMin")(_arg(np.argmin))


@register_op("TopK")
def topk(node, args, opset):
    x, at = _arr(args[0]), node.attrs
    k = int(_arr(args[1]).reshape(-1)[0]) if opset >= 10 else int(at["k"])
    axis = _axis(at.get("axis", -1), x.ndim, node.label())
    n = x.shape[axis]
    if not 0 <= k <= n:
        raise ValueError(f"TopK: k={k} is outside [0, {n}]")
    if int(at.get("largest", 1)):
        rev = np.flip(x, axis)
        order = np.flip(np.argsort(rev, axis=axis, kind="stable"), axis)
        order = n - 1 - order   # descending, ties by lower index
    else:
        order = np.argsort(x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    return [Tensor(np.take_along_axis(x, idx, axis=axis)), Tensor(idx.astype(np.int64))]


# ------------------------------------------------------------------------------ reductions
_AXES_INPUT_SINCE = {"ReduceSum": 13}


def _reduce_axes(node, args, opset, rank):
    at = node.attrs
    since = _AXES_INPUT_SINCE.get(node.op, 18)
    if opset < since or "axes" in at:
        axes = at.get("axes")
    else:
        axes = (_ints(args[1], f"{node.op}: axes") if len(args) > 1 and args[1] is not None
                else None)
    if axes is not None and len(axes) == 0:
        axes = None
    if axes is None:
        if int(at.get("noop_with_empty_axes", 0)):
            return None
        return tuple(range(rank))
    axes = tuple(sorted({_axis(a, rank, node.op) for a in axes}))
    return axes


def _reducer(np_fn, t_fn=None):
    def run(node, args, opset):
        x = args[0]
        keep = bool(int(node.attrs.get("keepdims", 1)))
        axes = _reduce_axes(node, args, opset, x.ndim)
        if axes is None:
            return [_noop_reduce(node.op, x)]
        if t_fn is not None and _is_float(x) and all(x.shape[a] for a in axes):
            return [t_fn(x, axes, keep)]
        a = _arr(x)
        with np.errstate(all="ignore"):
            y = np_fn(a, axes, keep)
        return [Tensor(np.asarray(y).astype(a.dtype))]
    return run


def _noop_reduce(op, x):
    """noop_with_empty_axes with no axes: the input, through the op's elementwise part."""
    a = _arr(x)
    if op == "ReduceSumSquare":
        return Tensor(a * a)
    if op in ("ReduceL1",):
        return Tensor(np.abs(a))
    if op == "ReduceL2":
        return Tensor(np.abs(a))
    if op == "ReduceLogSum":
        return Tensor(np.log(a))
    return x


def _np_max(a, axes, keep):
    if a.size and all(a.shape[i] for i in axes):
        return np.max(a, axis=axes, keepdims=keep)
    fill = -np.inf if a.dtype.kind == "f" else (False if a.dtype.kind == "b" else
                                                np.iinfo(a.dtype).min)
    return np.max(a, axis=axes, keepdims=keep, initial=fill)


def _np_min(a, axes, keep):
    if a.size and all(a.shape[i] for i in axes):
        return np.min(a, axis=axes, keepdims=keep)
    fill = np.inf if a.dtype.kind == "f" else (True if a.dtype.kind == "b" else
                                               np.iinfo(a.dtype).max)
    return np.min(a, axis=axes, keepdims=keep, initial=fill)


def _np_lse(a, axes, keep):
    a = a.astype(np.float64)
    m = _np_max(a, axes, True)
    m = np.where(np.isfinite(m), m, 0.0)
    y = np.log(np.sum(np.exp(a - m), axis=axes, keepdims=True)) + m
    return y if keep else np.squeeze(y, axis=axes)


register_op("ReduceSum")(_reducer(lambda a, ax, k: np.sum(a, axis=ax, keepdims=k),
                                  lambda x, ax, k: x.sum(dim=ax, keepdim=k)))
register_op("ReduceMean")(_reducer(lambda a, ax, k: np.mean(a, axis=ax, keepdims=k),
                                   lambda x, ax, k: x.mean(dim=ax, keepdim=k)))
register_op("ReduceMax")(_reducer(_np_max))
register_op("ReduceMin")(_reducer(_np_min))
register_op("ReduceProd")(_reducer(lambda a, ax, k: np.prod(a, axis=ax, keepdims=k)))
register_op("ReduceL1")(_reducer(lambda a, ax, k: np.sum(np.abs(a), axis=ax, keepdims=k)))
register_op("ReduceL2")(_reducer(lambda a, ax, k: np.sqrt(np.sum(a.astype(np.float64) ** 2,
                                                                  axis=ax, keepdims=k)),
                                 lambda x, ax, k: (x * x).sum(dim=ax, keepdim=k).sqrt()))
register_op("ReduceSumSquare")(_reducer(lambda a, ax, k: np.sum(a * a, axis=ax, keepdims=k),
                                        lambda x, ax, k: (x * x).sum(dim=ax, keepdim=k)))
register_op("ReduceLogSumExp")(_reducer(_np_lse))
register_op("ReduceLogSum")(_reducer(lambda a, ax, k: np.log(np.sum(a, axis=ax, keepdims=k))))


# ------------------------------------------------------------------------------ normalisation
@register_op("InstanceNormalization")
def instance_norm(node, args, opset):
    x, scale, bias = args
    eps = float(node.attrs.get("epsilon", 1e-5))
    if int(np.prod(x.shape[2:], dtype=np.int64)) == 1:
        # one element per instance (F.instance_norm refuses it, as PyTorch): the mean is the
        # element and the variance 0, so y = B (x - x keeps a NaN or an infinity as NaN)
        xa = _arr(x)
        shape = (1, -1) + (1,) * (xa.ndim - 2)
        inv = _arr(scale) / np.sqrt(np.asarray(eps, xa.dtype))
        y = (xa - xa) * inv.reshape(shape) + _arr(bias).reshape(shape)
        return [Tensor(y.astype(xa.dtype, copy=False))]
    return [F.instance_norm(x, weight=scale, bias=bias, eps=eps)]


@register_op("LayerNormalization")
def layer_norm(node, args, opset):
    x, scale = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    at = node.attrs
    axis = _axis(at.get("axis", -1), x.ndim, node.label())
    eps = float(at.get("epsilon", 1e-5))
    norm_shape = tuple(x.shape[axis:])
    full = tuple(scale.shape) == norm_shape and (bias is None or tuple(bias.shape) == norm_shape)
    if full:
        y = F.layer_norm(x, norm_shape, scale, bias, eps)
    else:
        y = F.layer_norm(x, norm_shape, None, None, eps) * scale
        if bias is not None:
            y = y + bias
    outs = [y]
    if len(node.outputs) > 1:
        a = _arr(x).astype(np.float64 if x.dtype == np.float64 else np.float32)
        axes = tuple(range(axis, x.ndim))
        mean = a.mean(axis=axes, keepdims=True)
        var = ((a - mean) ** 2).mean(axis=axes, keepdims=True)
        outs += [Tensor(mean.astype(np.float32 if x.dtype == np.float32 else x.dtype)),
                 Tensor((1 / np.sqrt(var + eps)).astype(mean.dtype))]
    return outs


@register_op("GroupNormalization")
def group_norm(node, args, opset):
    x, scale, bias = args
    g = int(node.attrs["num_groups"])
    c = x.shape[1]
    if g < 1 or c % g:
        raise ValueError(f"GroupNormalization: num_groups={g} does not divide {c} channels")
    if scale.shape[0] == g and g != c and opset < 21:   # opset 18: one scale per group
        scale = Tensor(np.repeat(_arr(scale), c // g))
        bias = Tensor(np.repeat(_arr(bias), c // g))
    return [F.group_norm(x, g, scale, bias, float(node.attrs.get("epsilon", 1e-5)))]


@register_op("LRN")
def lrn(node, args, opset):
    x, at = args[0], node.attrs
    size = int(at["size"])
    kw = dict(alpha=float(at.get("alpha", 1e-4)), beta=float(at.get("beta", 0.75)),
              k=float(at.get("bias", 1.0)))
    if size % 2:
        return [F.local_response_norm(x, size, **kw)]
    # even sizes: ONNX's window is torch's mirrored, so run torch's on the reversed channels
    rev = (slice(None), slice(None, None, -1))
    return [F.local_response_norm(x[rev], size, **kw)[rev]]


@register_op("LpNormalization")
def lp_normalization(node, args, opset):
    x = args[0]
    p = int(node.attrs.get("p", 2))
    if p not in (1, 2):
        raise ValueError(f"LpNormalization: p={p} must be 1 or 2")
    axis = _axis(node.attrs.get("axis", -1), x.ndim, node.label())
    return [F.normalize(x, p=float(p), dim=axis, eps=float(np.finfo(x.dtype).tiny))]


# ------------------------------------------------------------------------------ dense
def _coerce_2d(x, axis):
    """Rows of the (rows, -1) matrix an opset < 13 Softmax-family op works on."""
    return int(np.prod(x.shape[:axis], dtype=np.int64))


@register_op("LogSoftmax")
def log_softmax(node, args, opset):
    x = args[0]
    axis = _axis(node.attrs.get("axis", -1 if opset >= 13 else 1), x.ndim, node.label())
    if opset >= 13 or axis == x.ndim - 1:
        return [F.log_softmax(x, dim=axis)]
    y = F.log_softmax(x.reshape(_coerce_2d(x, axis), -1), dim=1)
    return [y.reshape(*x.shape)]


@register_op("Hardmax")
def hardmax(node, args, opset):
    a = _arr(args[0])
    axis = _axis(node.attrs.get("axis", -1 if opset >= 13 else 1), a.ndim, node.label())
    shape = a.shape
    if opset < 13:
        a = a.reshape(_coerce_2d(a, axis), -1)
        axis = 1
    idx = np.expand_dims(np.argmax(a, axis=axis), axis)
    y = np.zeros_like(a)
    if a.size:
        np.put_along_axis(y, idx, 1, axis=axis)
    return [Tensor(y.reshape(shape))]


# ------------------------------------------------------------------------------ resampling
@register_op("DepthToSpace")
def depth_to_space(node, args, opset):
    x = args[0]
    b = int(node.attrs["blocksize"])
    n, c, h, w = x.shape
    if b < 1 or c % (b * b):
        raise ValueError(f"DepthToSpace: blocksize {b} does not divide {c} channels")
    if node.attrs.get("mode", "DCR") == "CRD":
        return [F.pixel_shuffle(x, b)]
    if not _is_float(x):
        a = _arr(x).reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
        return [Tensor(a.reshape(n, c // (b * b), h * b, w * b))]
    y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    return [y.reshape(n, c // (b * b), h * b, w * b)]


@register_op("SpaceToDepth")
def space_to_depth(node, args, opset):
    x = args[0]
    b = int(node.attrs["blocksize"])
    n, c, h, w = x.shape
    if b < 1 or h % b or w % b:
        raise ValueError(f"SpaceToDepth: blocksize {b} does not divide the {h}x{w} input")
    if node.attrs.get("mode", "DCR") == "CRD":
        return [F.pixel_unshuffle(x, b)] if _is_float(x) else \
            [Tensor(_arr(x).reshape(n, c, h // b, b, w // b, b).transpose(0, 1, 3, 5, 2, 4)
                    .reshape(n, c * b * b, h // b, w // b))]
    if not _is_float(x):
        a = _arr(x).reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
        return [Tensor(a.reshape(n, c * b * b, h // b, w // b))]
    y = x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
    return [y.reshape(n, c * b * b, h // b, w // b)]


def _opt(args, i):
    if len(args) > i and args[i] is not None:
        a = _arr(args[i])
        return a if a.size else None
    return None


@register_op("Resize")
def resize_op(node, args, opset):
    x, at = args[0], node.attrs
    if opset < 11:
        scales, sizes, roi = _arr(args[1]).astype(np.float64), None, None
        ctm, nearest = "asymmetric", "floor"
    else:
        roi, scales, sizes = _opt(args, 1), _opt(args, 2), _opt(args, 3)
        ctm = at.get("coordinate_transformation_mode", "half_pixel")
        nearest = at.get("nearest_mode", "round_prefer_floor")
    if (scales is None) == (sizes is None):
        raise ValueError("Resize: exactly one of scales and sizes must be given")
    mode = at.get("mode", "nearest")
    axes = at.get("axes")
    kw = dict(mode=mode, coordinate_transformation_mode=ctm, nearest_mode=nearest,
              cubic_coeff_a=float(at.get("cubic_coeff_a", -0.75)),
              exclude_outside=bool(int(at.get("exclude_outside", 0))),
              extrapolation_value=float(at.get("extrapolation_value", 0.0)),
              antialias=bool(int(at.get("antialias", 0))),
              keep_aspect_ratio_policy=at.get("keep_aspect_ratio_policy", "stretch"))
    r = x.ndim
    out_shape, _ = R.output_shape(x.shape, scales, sizes,
                                  None if axes is None else [int(a) % r for a in axes],
                                  kw["keep_aspect_ratio_policy"])
    check_alloc(out_shape, x.dtype, "Resize")
    if _is_float(x) and kw["keep_aspect_ratio_policy"] == "stretch":
        tk = R.torch_equivalent(x.ndim, axes, scales, sizes, roi, mode, ctm, nearest,
                                kw["cubic_coeff_a"], kw["exclude_outside"], kw["antialias"],
                                x.shape)
        if tk is not None:
            return [F.interpolate(x, **tk)]
    return [Tensor(R.resize(_arr(x), scales=scales, sizes=sizes, axes=axes, roi=roi, **kw))]


@register_op("Upsample")
def upsample(node, args, opset):
    x, at = args[0], node.attrs
    scales = (np.asarray(at["scales"], np.float64) if opset < 9 else
              _arr(args[1]).astype(np.float64))
    if opset < 7:
        scales = np.asarray([1.0, 1.0, float(at.get("height_scale", 1.0)),
                             float(at.get("width_scale", 1.0))])
    mode = at.get("mode", "nearest")
    mode = "linear" if mode in ("bilinear", "linear") else mode
    return [Tensor(R.resize(_arr(x), scales=scales, mode=mode,
                            coordinate_transformation_mode="asymmetric", nearest_mode="floor"))]
