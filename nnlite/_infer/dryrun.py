"""Stage 1 of the plan: one plain run of the graph on the real inputs.

The Tensor executor (``nnlite.onnx.ops.run_node`` under no_grad) runs every node once. This
gives every value's shape and dtype (a ``Meta``), the values that depend only on constants and
shapes (``Shape -> Gather -> Concat -> Reshape`` chains: folded into constants, so the later
stages see concrete reshape targets), and the reference outputs the finished plan is checked
against. Values are dropped right after their last reader, so the run needs no more memory
than the plain module.
"""
from typing import NamedTuple

import numpy as np

from ..autograd import no_grad
from ..onnx.ops import register_op, run_node_named
from ..tensor import Tensor
from .trace import GENERIC

__all__ = ["Meta", "DryRun", "dry_run", "shape_inputs"]


class Meta(NamedTuple):
    """The shape and dtype of one value of the graph."""
    shape: tuple
    dtype: np.dtype


class DryRun(NamedTuple):
    metas: dict       # value name -> Meta, for every value (and constant)
    static: dict      # value name -> array, for every value computed from constants/shapes only
    reference: list   # the graph's outputs (arrays), what the plan must reproduce


@register_op(GENERIC)
def _generic(node, args, opset):
    """A traced nnlite Function that has no ONNX form: run it again on the arguments."""
    out = node.attrs["fn"].apply(*args, **node.attrs["params"])
    return list(out) if isinstance(out, tuple) else [out]


# ops whose outputs depend only on their input's shape (folded at compile time, as every value
# computed from constants and shapes is)
_SHAPE_ONLY = ("Shape", "Size")
_SHAPE_ONLY_OUTPUTS = {("Dropout", 1)}   # the inference-mode mask (all true)


def shape_inputs(graph):
    """Indices of the graph inputs whose values decide the shape of some value: those that
    reach an op's shape operand (``nnlite.onnx.spec.SHAPE_OPERANDS``: a Reshape target, Slice
    bounds, a TopK k, ...) through any chain of nodes but Shape/Size, which read only shapes.
    A plan is compiled for their values as well as for every input's shape and dtype."""
    from ..onnx.spec import SHAPE_OPERANDS

    deps = {vi.name: {i} for i, vi in enumerate(graph.inputs)}
    keyed = set()
    for node in graph.nodes:
        ins = [deps.get(v, set()) if v else set() for v in node.inputs]
        for pos in SHAPE_OPERANDS.get(node.op, ()):
            if pos < len(ins):
                keyed |= ins[pos]
        out = set() if node.op in _SHAPE_ONLY else set().union(*ins)
        for k, name in enumerate(node.outputs):
            if name:
                deps[name] = set() if (node.op, k) in _SHAPE_ONLY_OUTPUTS else out
    return sorted(keyed)


def meta_of(a):
    """The ``Meta`` of an array."""
    return Meta(tuple(np.shape(a)), np.asarray(a).dtype)


def dry_run(graph, arrays, constants):
    """``DryRun(metas, static, reference)``: one plain run of ``graph`` on ``arrays``."""
    metas = {n: meta_of(a) for n, a in constants.items()}
    static = dict(constants)
    env = {vi.name: Tensor(a) for vi, a in zip(graph.inputs, arrays)}
    for vi, a in zip(graph.inputs, arrays):
        metas[vi.name] = meta_of(a)
    last = {}   # value -> its last reader (as storage.last_use; storage imports this module)
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            last[v] = i
    for v in graph.outputs:
        last[v] = len(graph.nodes)
    with no_grad():
        for i, node in enumerate(graph.nodes):
            args = [None if not v else (env[v] if v in env else Tensor(static[v]))
                    for v in node.inputs]
            outs = run_node_named(node, args, graph.opset)
            is_static = node.op in _SHAPE_ONLY or all(not v or v in static for v in node.inputs)
            for k, (name, val) in enumerate(zip(node.outputs, outs)):
                if not name:
                    continue
                metas[name] = Meta(tuple(val.shape), val.dtype)
                if (is_static or (node.op, k) in _SHAPE_ONLY_OUTPUTS) and node.op != GENERIC:
                    static[name] = np.asarray(val.data)
                elif last.get(name, -1) > i:
                    env[name] = val
            for v in node.inputs:
                if v in env and last.get(v, -1) <= i:
                    del env[v]
    ref = [np.array(env[v].data if v in env else static[v]) for v in graph.outputs]
    return DryRun(metas, static, ref)
