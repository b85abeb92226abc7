"""``OnnxModule``: an nnlite Module that runs an imported ONNX graph with nnlite ops."""
import numpy as np

from ..nn.module import Module, Parameter
from ..tensor import Tensor
from .ops import run_node_named

__all__ = ["OnnxModule"]


def _last_uses(graph):
    last = {}
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            if v:
                last[v] = i
    for v in graph.outputs:
        last[v] = len(graph.nodes)
    return last


class OnnxModule(Module):
    """Runs ``graph`` node by node on nnlite Tensors (autograd works through float ops).

    Floating initializers are Parameters (``requires_grad=False``; call
    ``requires_grad_()`` to fine-tune) and the others buffers, all under their ONNX names, so
    ``state_dict()``/``load_state_dict()`` see the original weight names. ``forward`` takes
    the graph inputs (Tensors or ndarrays) in graph-input order and returns one Tensor, or a
    tuple when the graph has several outputs.
    """

    #: called as ``node_observer(node, args, outputs)`` after each node when set (``nnlite.summary``
    #: counts the graph per node through it)
    node_observer = None

    def __init__(self, graph, source="<onnx>"):
        super().__init__()
        object.__setattr__(self, "graph", graph)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "_last_use", _last_uses(graph))
        for name, arr in graph.constants.items():
            if arr.dtype == np.float16:
                arr = arr.astype(np.float32)
            if arr.dtype.kind == "f":
                self._parameters[name] = Parameter(arr, requires_grad=False)
            else:
                self._buffers[name] = Tensor(arr)

    @property
    def input_names(self):
        return [vi.name for vi in self.graph.inputs]

    @property
    def output_names(self):
        return list(self.graph.outputs)

    def _constant(self, name):
        t = self._parameters.get(name)
        return t if t is not None else self._buffers[name]

    def _bind_inputs(self, inputs):
        g = self.graph
        if len(inputs) != len(g.inputs):
            raise TypeError(f"this ONNX model takes {len(g.inputs)} input(s) "
                            f"{self.input_names}, got {len(inputs)}")
        env = {}
        for vi, x in zip(g.inputs, inputs):
            t = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
            vi.check(t.data)
            env[vi.name] = t
        return env

    def forward(self, *inputs):
        g = self.graph
        env = self._bind_inputs(inputs)
        last = self._last_use
        for i, node in enumerate(g.nodes):
            args = [None if not v else (env[v] if v in env else self._constant(v))
                    for v in node.inputs]
            outs = run_node_named(node, args, g.opset)
            if self.node_observer is not None:
                self.node_observer(node, args, outs)
            for name, val in zip(node.outputs, outs):
                if name:
                    env[name] = val
            for v in node.inputs:
                if v in env and last.get(v, -1) <= i:
                    del env[v]
        outs = tuple(env[v] if v in env else self._constant(v) for v in g.outputs)
        return outs[0] if len(outs) == 1 else outs

    def extra_repr(self):
        ops = ", ".join(f"{k}×{v}" for k, v in sorted(self.graph.op_counts().items()))
        return (f"{self.source!r}, opset {self.graph.opset}, inputs {self.input_names}, "
                f"outputs {self.output_names}, {len(self.graph.nodes)} nodes: {ops}")
