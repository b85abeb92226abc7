"""Import-time rewrites of an ONNX node list into the ops nnlite runs in one pass.

``fuse_hard_swish``: ``Mul(x, HardSigmoid(x, alpha=1/6, beta=0.5))`` (how exporters spell
hard-swish before opset 14, e.g. MobileNetV3 and OCR backbones) becomes one ``HardSwish(x)``
node when the HardSigmoid result feeds nothing else. The value is the same function
(x * clip(x/6 + 1/2, 0, 1)); PyTorch's hardswish computes it in one pass.
"""
import numpy as np

from .graph import Node

__all__ = ["fuse_hard_swish"]


def _is_hard_sigmoid_of_swish(node):
    a = node.attrs
    return (node.op == "HardSigmoid"
            and np.float32(a.get("alpha", 0.2)) == np.float32(1 / 6)
            and np.float32(a.get("beta", 0.5)) == np.float32(0.5))


def fuse_hard_swish(nodes, graph_outputs):
    """``nodes`` with each hard-swish pair replaced by one HardSwish node (order kept)."""
    producer = {o: n for n in nodes for o in n.outputs if o}
    readers = {}
    for n in nodes:
        for v in n.inputs:
            if v:
                readers[v] = readers.get(v, 0) + 1
    drop, out = set(), []
    for n in nodes:
        if n.op == "Mul" and len(n.inputs) == 2 and not n.attrs:
            for gate, other in ((n.inputs[1], n.inputs[0]), (n.inputs[0], n.inputs[1])):
                hs = producer.get(gate)
                if (hs is not None and _is_hard_sigmoid_of_swish(hs) and hs.inputs[0] == other
                        and readers.get(gate) == 1 and gate not in graph_outputs):
                    drop.add(id(hs))
                    n = Node("HardSwish", (other,), n.outputs, {}, n.name)
                    break
        out.append(n)
    return [n for n in out if id(n) not in drop]
