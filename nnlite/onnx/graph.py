"""The graph representation shared by the ONNX importer and the inference planner.

A ``Graph`` is a list of ``Node`` in topological order over named values. Node ops use ONNX
names and ONNX attribute semantics (``Conv`` with ``pads``/``strides``/``dilations``/``group``,
``Gemm`` with ``transB``, ...); the tracer in ``nnlite.inference`` adds a few nnlite-only ops
(prefixed ``nnlite.``). Constants (ONNX initializers, traced parameters) live in
``Graph.constants`` as ndarrays. This module needs neither ``onnx`` nor any op implementation.
"""
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Node", "ValueInfo", "Graph", "toposort"]


@dataclass
class Node:
    """One op application: ``outputs = op(inputs, **attrs)``; ``""`` marks an absent input."""

    op: str
    inputs: tuple
    outputs: tuple
    attrs: dict = field(default_factory=dict)
    name: str = ""

    def label(self):
        return f"{self.op} node {self.name!r}" if self.name else f"{self.op} node -> {self.outputs}"


@dataclass
class ValueInfo:
    """A graph input: name, shape (ints, or None/str for a free dimension) and dtype."""

    name: str
    shape: tuple = None
    dtype: np.dtype = None

    def check(self, arr):
        """Raise ValueError/TypeError when ``arr`` does not fit this input."""
        if self.dtype is not None and arr.dtype != self.dtype:
            raise TypeError(f"input {self.name!r} expects dtype {self.dtype}, got {arr.dtype} "
                            f"(convert with .astype({str(self.dtype)!r}))")
        if self.shape is None:
            return
        if arr.ndim != len(self.shape):
            raise ValueError(f"input {self.name!r} expects {len(self.shape)} dimensions "
                             f"{_shape_text(self.shape)}, got shape {tuple(arr.shape)}")
        for want, got in zip(self.shape, arr.shape):
            if isinstance(want, (int, np.integer)) and want >= 0 and want != got:
                raise ValueError(f"input {self.name!r} expects shape {_shape_text(self.shape)}, "
                                 f"got {tuple(arr.shape)}")


def _shape_text(shape):
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


@dataclass
class Graph:
    nodes: list
    inputs: list            # [ValueInfo]
    outputs: list           # [name]
    constants: dict         # name -> ndarray
    opset: int = 17
    name: str = "graph"

    def producers(self):
        """Map value name -> the node producing it."""
        return {o: n for n in self.nodes for o in n.outputs if o}

    def consumers(self):
        """Map value name -> list of nodes reading it (graph outputs are not counted)."""
        out = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def op_counts(self):
        counts = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts


def toposort(nodes, known):
    """``nodes`` in dependency order given the already ``known`` value names.

    Raises ValueError listing values that no node produces, or the nodes caught in a cycle.
    """
    known = set(known)
    produced = {o for n in nodes for o in n.outputs if o}
    missing = sorted({i for n in nodes for i in n.inputs if i and i not in known
                      and i not in produced})
    if missing:
        raise ValueError("graph reads values that are neither graph inputs, initializers nor "
                         f"node outputs: {missing}")
    ordered, pending = [], list(nodes)
    while pending:
        rest = []
        for n in pending:
            if all((not i) or i in known for i in n.inputs):
                ordered.append(n)
                known.update(o for o in n.outputs if o)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError("graph has a cycle through: " + ", ".join(n.label() for n in rest))
        pending = rest
    return ordered
