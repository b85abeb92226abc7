"""Trace an nnlite Module into a ``Graph`` by recording every ``Function.apply`` of one forward.

While ``trace`` runs, ``Function.apply`` is wrapped: in the tracing thread each call is recorded
as one node (other threads pass straight through, unrecorded). Functions nnlite knows are turned
into ONNX-style nodes (Conv from Conv2dFn's geometry, BatchNormalization from BatchNormFn in
eval mode, Gemm from LinearFn, MaxPool/AveragePool, Relu/Clip, Add/Mul, Concat, Reshape, ...);
any other Function becomes an ``nnlite.Function`` node that re-runs it on arrays. Tensors a node
reads that no recorded node produced (parameters, buffers, constants made in forward) become
graph constants. The graph is specialised to the traced input shapes (reshape targets are
concrete), so the planner traces again for new shapes.
"""
import threading

import numpy as np

from .. import _ops
from .._registry import Registry
from ..autograd import Function, exact_ops, no_grad
from ..functional import basic, conv, normalization, pooling
from ..onnx.graph import Graph, Node, ValueInfo
from ..tensor import Tensor, as_tensor

__all__ = ["trace", "GENERIC"]

GENERIC = "nnlite.Function"

_state = threading.local()
_patch_lock = threading.Lock()
_patch_users = 0
_orig_apply = Function.__dict__["apply"]


def _traced_apply(cls, *inputs, **params):
    tracer = getattr(_state, "tracer", None)
    if tracer is None or tracer.depth:
        return _orig_apply.__func__(cls, *inputs, **params)
    tensors = tuple(as_tensor(t) for t in inputs)
    tracer.depth += 1
    try:
        out = _orig_apply.__func__(cls, *tensors, **params)
    finally:
        tracer.depth -= 1
    tracer.record(cls, tensors, params, out)
    return out


class _Patched:
    """Install the recording ``apply`` while at least one thread traces."""

    def __enter__(self):
        global _patch_users
        with _patch_lock:
            if _patch_users == 0:
                Function.apply = classmethod(_traced_apply)
            _patch_users += 1

    def __exit__(self, *exc):
        global _patch_users
        with _patch_lock:
            _patch_users -= 1
            if _patch_users == 0:
                Function.apply = _orig_apply


class Tracer:
    def __init__(self):
        self.names = {}      # id(Tensor) -> value name
        self.keep = []       # every Tensor seen (keeps ids unique during the trace)
        self.nodes = []
        self.constants = {}
        self.depth = 0
        self.count = 0

    def _new_name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def define(self, t, hint):
        name = self._new_name(hint)
        self.names[id(t)] = name
        self.keep.append(t)
        return name

    def ref(self, t):
        name = self.names.get(id(t))
        if name is None:
            name = self._new_name("const")
            self.constants[name] = t.data
            self.names[id(t)] = name
            self.keep.append(t)
        return name

    def const(self, arr, hint="c"):
        name = self._new_name(hint)
        self.constants[name] = np.asarray(arr)
        return name

    def emit(self, op, inputs, out, attrs=None, extra_outputs=()):
        outs = (self.define(out, op.lower()),) + tuple(self.define(t, "aux") for t in
                                                        extra_outputs)
        self.nodes.append(Node(op, tuple(inputs), outs, attrs or {}, f"{op}_{self.count}"))

    def record(self, cls, tensors, params, out):
        outs = out if isinstance(out, tuple) else (out,)
        ins = [self.ref(t) for t in tensors]
        convert = CONVERTERS.get(cls)
        spec = convert(self, tensors, ins, params, outs[0]) if convert is not None else None
        generic = {"fn": cls, "params": dict(params), "n_out": len(outs)}
        if spec is None:
            self.emit(GENERIC, ins, outs[0], generic, outs[1:])
            return
        op, inputs, attrs = spec
        if len(outs) > 1:
            # auxiliary outputs (pool indices, ...): a generic node computes them only if some
            # later node reads them (the planner drops unused nodes)
            self.emit(GENERIC, ins, Tensor(np.empty(0)), generic, outs[1:])
        self.emit(op, inputs, outs[0], attrs)


# ------------------------------------------------------------------------------ converters
# Function class -> converter(tracer, input tensors, input names, params, output) returning
# (op, input names, attrs) of the node, or None where the call has no such node (it is then
# recorded as an nnlite.Function node)
CONVERTERS = Registry("traced Function")


@CONVERTERS.register(conv.Conv2dFn)
def _conv(tr, ts, ins, p, out):
    g = p.get("geom")
    if g is None or ts[0].ndim != 4:
        return None
    return "Conv", ins, {"kernel_shape": [g.kh, g.kw], "strides": [g.sh, g.sw],
                         "dilations": [g.dh, g.dw], "pads": [g.pt, g.pl, g.pb, g.pr],
                         "group": g.g}


@CONVERTERS.register(conv.ConvTranspose2dFn)
def _conv_t(tr, ts, ins, p, out):
    g = p.get("geom")
    if g is None or ts[0].ndim != 4:
        return None
    full = [(g.oh - 1) * g.sh + g.dh * (g.kh - 1) + 1 - g.pt - g.pb,
            (g.ow - 1) * g.sw + g.dw * (g.kw - 1) + 1 - g.pl - g.pr]
    return "ConvTranspose", ins, {
        "kernel_shape": [g.kh, g.kw], "strides": [g.sh, g.sw], "dilations": [g.dh, g.dw],
        "pads": [g.pt, g.pl, g.pb, g.pr], "group": g.g,
        "output_padding": [g.h - full[0], g.w - full[1]]}


@CONVERTERS.register(normalization.BatchNormFn)
def _batch_norm(tr, ts, ins, p, out):
    if p.get("training", True) or ts[0].ndim < 2:
        return None
    c = ts[0].shape[1]
    dt = ts[0].dtype
    w = ins[1] if p["has_weight"] else tr.const(np.ones(c, dt), "bn_one")
    b = ins[-1] if p["has_bias"] else tr.const(np.zeros(c, dt), "bn_zero")
    return "BatchNormalization", [ins[0], w, b, tr.const(p["running_mean"], "bn_mean"),
                                  tr.const(p["running_var"], "bn_var")], {"epsilon": p["eps"]}


@CONVERTERS.register(basic.LinearFn)
def _linear(tr, ts, ins, p, out):
    if ts[0].ndim != 2 or ts[1].ndim != 2:
        return None
    return "Gemm", ins, {"transB": 1}


def _pool(op):
    def convert(tr, ts, ins, p, out):
        g = p.get("geom")
        if g is None or ts[0].ndim != 4:
            return None
        if op == "AveragePool" and p.get("divisor_override") is not None:
            return None
        (ph, pw) = g.padding
        attrs = {"kernel_shape": list(g.kernel), "strides": list(g.stride),
                 "pads": [ph, pw, ph, pw], "ceil_mode": int(bool(g.ceil_mode))}
        if op == "MaxPool":
            attrs["dilations"] = list(g.dilation)
        else:
            attrs["count_include_pad"] = int(bool(p.get("count_include_pad", True)))
        return op, ins, attrs
    return convert


def _global(op):
    def convert(tr, ts, ins, p, out):
        if ts[0].ndim != 4 or tuple(p.get("out_hw", ())) != (1, 1):
            return None
        return op, ins, {}
    return convert


@CONVERTERS.register(_ops.Mean)
def _mean(tr, ts, ins, p, out):
    axis = p.get("axis")
    if ts[0].ndim != 4 or axis is None or sorted(int(a) % 4 for a in np.atleast_1d(axis)) \
            != [2, 3]:
        return None
    if p.get("keepdim", False):
        return "GlobalAveragePool", ins, {}
    # x.mean((2, 3)) (MobileNetV2's head): the pool, then its (N, C, 1, 1) result viewed as
    # (N, C), instead of a generic node re-running np.mean over short rows
    pooled = Tensor(np.empty(ts[0].shape[:2] + (1, 1), ts[0].dtype))
    tr.emit("GlobalAveragePool", ins, pooled)
    return "Reshape", [tr.ref(pooled), tr.const(np.asarray(out.shape, np.int64), "shape")], \
        {"allowzero": 1}


@CONVERTERS.register(basic.HardtanhFn)
def _hardtanh(tr, ts, ins, p, out):
    dt = ts[0].dtype
    return "Clip", [ins[0], tr.const(np.asarray(p["min_val"], dt), "lo"),
                    tr.const(np.asarray(p["max_val"], dt), "hi")], {}


@CONVERTERS.register(_ops.Clamp)
def _clamp(tr, ts, ins, p, out):
    dt = ts[0].dtype
    lo, hi = p.get("min"), p.get("max")
    if ts[0].dtype.kind != "f":
        return None
    return "Clip", [ins[0], tr.const(np.asarray(lo, dt), "lo") if lo is not None else "",
                    tr.const(np.asarray(hi, dt), "hi") if hi is not None else ""], {}


@CONVERTERS.register(basic.SoftmaxFn)
def _softmax(tr, ts, ins, p, out):
    if p.get("dtype") is not None or ts[0].ndim == 0:
        return None
    return "Softmax", ins, {"axis": int(p["dim"])}


@CONVERTERS.register(_ops.Reshape)
def _reshape(tr, ts, ins, p, out):
    return "Reshape", [ins[0], tr.const(np.asarray(out.shape, np.int64), "shape")], \
        {"allowzero": 1}


def _simple(op, attrs_of=None):
    def convert(tr, ts, ins, p, out):
        return op, ins, (attrs_of(p) if attrs_of else {})
    return convert


def _float_binary(op):
    def convert(tr, ts, ins, p, out):
        if any(t.dtype.kind != "f" for t in ts):
            return None
        return op, ins, {}
    return convert


CONVERTERS.register(_ops.Add)(_float_binary("Add"))
CONVERTERS.register(_ops.Sub)(_float_binary("Sub"))
CONVERTERS.register(_ops.Mul)(_float_binary("Mul"))
CONVERTERS.register(_ops.Div)(_float_binary("Div"))
CONVERTERS.register(_ops.ReLU)(_simple("Relu"))
CONVERTERS.register(_ops.Sigmoid)(_simple("Sigmoid"))
CONVERTERS.register(_ops.Tanh)(_simple("Tanh"))
CONVERTERS.register(_ops.MatMul)(_simple("MatMul"))
CONVERTERS.register(_ops.Permute)(_simple("Transpose",
                                          lambda p: {"perm": [int(a) for a in p["axes"]]}))
CONVERTERS.register(_ops.Cat)(_simple("Concat", lambda p: {"axis": int(p.get("dim", 0))}))
CONVERTERS.register(pooling.MaxPool2dFn)(_pool("MaxPool"))
CONVERTERS.register(pooling.AvgPool2dFn)(_pool("AveragePool"))
CONVERTERS.register(pooling.AdaptiveAvgPool2dFn)(_global("GlobalAveragePool"))
CONVERTERS.register(pooling.AdaptiveMaxPool2dFn)(_global("GlobalMaxPool"))


def _flatten_outputs(out):
    if isinstance(out, Tensor):
        return [out], True
    if isinstance(out, (tuple, list)) and out and all(isinstance(t, Tensor) for t in out):
        return list(out), False
    raise TypeError(f"optimize_for_inference: the model returned {type(out).__name__}; only a "
                    "Tensor or a tuple/list of Tensors can be traced")


def trace(model, arrays):
    """Run ``model(*arrays)`` once (eval mode, no grad) and return (Graph, single_output)."""
    tracer = Tracer()
    inputs = [Tensor(a) for a in arrays]
    names = [tracer.define(t, "input") for t in inputs]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    _state.tracer = tracer
    try:
        with _Patched(), no_grad(), exact_ops():
            out = model(*inputs)
    finally:
        _state.tracer = None
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    outs, single = _flatten_outputs(out)
    out_names = [tracer.ref(t) for t in outs]
    infos = [ValueInfo(n, tuple(a.shape), a.dtype) for n, a in zip(names, arrays)]
    return Graph(tracer.nodes, infos, out_names, tracer.constants, 17, type(model).__name__), \
        single
