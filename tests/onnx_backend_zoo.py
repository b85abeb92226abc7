"""The nine model-zoo architectures onnx ships in ``onnx/backend/test/data/light`` with
independent random weights, for parity tests against ONNX Runtime and the benchmark.

The stored "light" models build every weight with ``ConstantOfShape`` (all 0.02), so their
stored outputs are a uniform softmax that cannot tell a right implementation from a wrong one.
``randomized(name)`` replaces each such weight by a seeded random initializer scaled by its
role (He-scaled conv/Gemm weights, positive BatchNorm variances, ...), keeping the graph up to
the logits (a final Softmax is dropped: on random weights it can saturate to one-hot).
"""
import os

import numpy as np

ZOO = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
       "squeezenet", "vgg19", "zfnet512")
HEAVY = ("vgg19", "zfnet512", "bvlc_alexnet")   # the largest multiply-add counts


def light_path(name):
    import onnx

    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                        f"light_{name}.onnx")


def _role_values(rng, shape, role):
    if role == "var":
        return rng.uniform(0.5, 1.5, shape)
    if role == "scale":
        return rng.uniform(0.5, 1.5, shape)
    if role == "weight":
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        return rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
    return rng.standard_normal(shape) * 0.1        # biases, means


def randomized(name, seed=0):
    """The light model ``name`` (ModelProto) with seeded random weights."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(light_path(name))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    role = {}
    for n in g.node:
        if n.op_type == "BatchNormalization":
            for v, r in zip(n.input[1:], ("scale", "bias", "mean", "var")):
                role[v] = r
        elif n.op_type in ("Conv", "Gemm", "ConvTranspose", "MatMul"):
            role[n.input[1]] = "weight"
    rng = np.random.default_rng(seed)
    keep, added = [], []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in inits:
            shape = tuple(int(v) for v in inits[n.input[0]])
            vals = _role_values(rng, shape, role.get(n.output[0], "bias")).astype(np.float32)
            added.append(numpy_helper.from_array(vals, n.output[0]))
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    used = {v for n in keep for v in n.input}
    kept_inits = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept_inits + added)
    # compare logits, not the final softmax: random weights make some networks' logits so
    # large that the softmax is one-hot and would hide any error in them
    last = keep[-1]
    if last.op_type == "Softmax" and list(last.output) == [o.name for o in g.output]:
        keep.pop()
        del g.node[:]
        g.node.extend(keep)
        out = g.output[0]
        out.name = last.input[0]
        out.type.tensor_type.ClearField("shape")
        used = {v for n in keep for v in n.input}
    dropped = set(inits) - used
    real = [i for i in g.input if i.name not in dropped and i.name not in
            {a.name for a in added}]
    del g.input[:]
    g.input.extend(real)
    return model


def input_for(model, seed=1, batch=None):
    inits = {i.name for i in model.graph.initializer}
    vi = [i for i in model.graph.input if i.name not in inits][0]
    shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    if batch is not None:
        shape[0] = batch
    return vi.name, np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
