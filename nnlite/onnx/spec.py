"""Which ONNX ops and attributes nnlite imports, and the checks run on every node at load time.

``SUPPORTED`` maps op type -> the attributes nnlite understands. ``check_node`` returns the list
of problems of one node (unknown attribute, unsupported value, wrong arity); the importer gathers
the problems of every node and raises them together. Needs neither ``onnx`` nor any op code.
"""
import numpy as np

__all__ = ["SUPPORTED", "MIN_OPSET", "check_node"]

MIN_OPSET = 7

_POOL = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")
_CONV = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")

SUPPORTED = {
    "Conv": _CONV,
    "ConvTranspose": _CONV + ("output_padding", "output_shape"),
    "MaxPool": _POOL + ("storage_order",),
    "AveragePool": _POOL + ("count_include_pad",),
    "GlobalAveragePool": (),
    "GlobalMaxPool": (),
    "BatchNormalization": ("epsilon", "momentum", "training_mode", "spatial", "is_test",
                           "consumed_inputs"),
    "Relu": (),
    "Clip": ("min", "max"),
    "Sigmoid": (),
    "Tanh": (),
    "Add": ("broadcast",),
    "Sub": ("broadcast",),
    "Mul": ("broadcast",),
    "Div": ("broadcast",),
    "Concat": ("axis",),
    "Flatten": ("axis",),
    "Reshape": ("allowzero", "shape"),
    "Transpose": ("perm",),
    "Gemm": ("alpha", "beta", "transA", "transB", "broadcast"),
    "MatMul": (),
    "Softmax": ("axis",),
    "Dropout": ("ratio", "seed", "is_test"),
    "Identity": (),
    "Pad": ("mode", "pads", "value"),
    "Constant": ("value", "value_float", "value_floats", "value_int", "value_ints"),
    "Shape": ("start", "end"),
    "Gather": ("axis",),
    "Unsqueeze": ("axes",),
    "Squeeze": ("axes",),
    "Cast": ("to", "saturate"),
    "RoiAlign": ("mode", "output_height", "output_width", "sampling_ratio", "spatial_scale",
                 "coordinate_transformation_mode"),
    "MaxRoiPool": ("pooled_shape", "spatial_scale"),
}

# (min inputs, max inputs, max outputs)
_ARITY = {
    "Conv": (2, 3, 1), "ConvTranspose": (2, 3, 1), "MaxPool": (1, 1, 2), "AveragePool": (1, 1, 1),
    "GlobalAveragePool": (1, 1, 1), "GlobalMaxPool": (1, 1, 1), "BatchNormalization": (5, 5, 5),
    "Relu": (1, 1, 1), "Clip": (1, 3, 1), "Sigmoid": (1, 1, 1), "Tanh": (1, 1, 1),
    "Add": (2, 2, 1), "Sub": (2, 2, 1), "Mul": (2, 2, 1), "Div": (2, 2, 1),
    "Concat": (1, 10 ** 6, 1), "Flatten": (1, 1, 1), "Reshape": (1, 2, 1), "Transpose": (1, 1, 1),
    "Gemm": (2, 3, 1), "MatMul": (2, 2, 1), "Softmax": (1, 1, 1), "Dropout": (1, 3, 2),
    "Identity": (1, 1, 1), "Pad": (1, 4, 1), "Constant": (0, 0, 1), "Shape": (1, 1, 1),
    "Gather": (2, 2, 1), "Unsqueeze": (1, 2, 1), "Squeeze": (1, 2, 1), "Cast": (1, 1, 1),
    "RoiAlign": (3, 3, 1), "MaxRoiPool": (2, 2, 1),
}

_CAST_TO = {1: "float32", 11: "float64", 6: "int32", 7: "int64", 9: "bool"}


def _ints(v, n, name, lo):
    v = list(v)
    if len(v) != n:
        return f"{name}={v} must have {n} entries (2-D ops only)"
    if any(int(x) < lo for x in v):
        return f"{name}={v} must be >= {lo}"
    return None


def _geometry(node, conv):
    a = node.attrs
    out = []
    if "kernel_shape" in a:
        out.append(_ints(a["kernel_shape"], 2, "kernel_shape", 1))
    elif not conv:
        out.append("kernel_shape is required")
    if "strides" in a:
        out.append(_ints(a["strides"], 2, "strides", 1))
    if "dilations" in a:
        out.append(_ints(a["dilations"], 2, "dilations", 1))
    if "pads" in a:
        out.append(_ints(a["pads"], 4, "pads", 0))
    pad = a.get("auto_pad", "NOTSET")
    if pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        out.append(f"auto_pad={pad!r} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    if int(a.get("ceil_mode", 0)) not in (0, 1):
        out.append(f"ceil_mode={a['ceil_mode']} must be 0 or 1")
    return [p for p in out if p]


def _used(name, consumers, graph_outputs):
    return bool(name) and (name in consumers or name in graph_outputs)


def check_node(node, opset, constants, consumers=(), graph_outputs=()):
    """Problems (strings) that keep nnlite from running ``node``; empty when supported."""
    op, a = node.op, node.attrs
    if op not in SUPPORTED:
        return [f"op {op!r} is not supported"]
    problems = [f"attribute {k}={_short(v)} is not supported" for k, v in a.items()
                if k not in SUPPORTED[op]]
    lo, hi, hout = _ARITY[op]
    nin = len(node.inputs)
    if not lo <= nin <= hi:
        problems.append(f"takes {lo}..{hi} inputs, got {nin}")
    if len(node.outputs) > hout:
        problems.append(f"has {len(node.outputs)} outputs, at most {hout} supported")
    if op in ("Conv", "ConvTranspose", "MaxPool", "AveragePool"):
        problems += _geometry(node, op.startswith("Conv"))
        w = constants.get(node.inputs[1]) if op.startswith("Conv") and nin > 1 else None
        if w is not None and w.ndim != 4:
            problems.append(f"weight of shape {w.shape}: only 2-D convolution (4-D weight) is "
                            "supported")
        if int(a.get("group", 1)) < 1:
            problems.append(f"group={a['group']} must be positive")
        if op == "ConvTranspose" and "output_padding" in a:
            problems.append(_ints(a["output_padding"], 2, "output_padding", 0))
        if op == "ConvTranspose" and "output_shape" in a and len(a["output_shape"]) != 2:
            problems.append(f"output_shape={list(a['output_shape'])} must have 2 entries")
        if op == "MaxPool" and int(a.get("storage_order", 0)) != 0:
            problems.append("storage_order=1 (column-major indices) is not supported")
        if op == "MaxPool" and len(node.outputs) > 1 and _used(node.outputs[1], consumers,
                                                                graph_outputs):
            problems.append("the Indices output is not supported")
        if op == "AveragePool" and any(int(d) != 1 for d in a.get("dilations", (1, 1))):
            problems.append(f"dilations={list(a['dilations'])} is not supported for AveragePool")
    elif op == "BatchNormalization":
        if int(a.get("training_mode", 0)) != 0:
            problems.append("training_mode=1 is not supported (inference only)")
        if int(a.get("spatial", 1)) != 1:
            problems.append("spatial=0 is not supported")
        if "is_test" in a and int(a["is_test"]) != 1:
            problems.append("is_test=0 (training) is not supported")
        if any(_used(o, consumers, graph_outputs) for o in node.outputs[1:]):
            problems.append("the training-mode outputs (running mean/var) are not supported")
    elif op == "Dropout":
        if len(node.outputs) > 1 and _used(node.outputs[1], consumers, graph_outputs):
            problems.append("the mask output is not supported")
        if nin > 2 and node.inputs[2]:
            mode = constants.get(node.inputs[2])
            if mode is None or bool(np.asarray(mode).item()):
                problems.append("training_mode must be a constant false")
        if "is_test" in a and int(a["is_test"]) != 1:
            problems.append("is_test=0 (training) is not supported")
    elif op == "Pad":
        mode = a.get("mode", "constant")
        if mode not in ("constant", "reflect", "edge", "wrap"):
            problems.append(f"mode={mode!r} is not supported")
        if nin > 3 and node.inputs[3]:
            problems.append("the axes input is not supported")
    elif op == "Constant":
        if len(a) != 1:
            problems.append(f"needs exactly one value attribute, got {sorted(a)}")
    elif op == "RoiAlign":
        if a.get("mode", "avg") != "avg":
            problems.append(f"mode={a['mode']!r} is not supported (only 'avg')")
        ctm = a.get("coordinate_transformation_mode", "half_pixel")
        if ctm not in ("half_pixel", "output_half_pixel"):
            problems.append(f"coordinate_transformation_mode={ctm!r} is not supported")
    elif op == "MaxRoiPool":
        if "pooled_shape" not in a:
            problems.append("pooled_shape is required")
        else:
            problems.append(_ints(a["pooled_shape"], 2, "pooled_shape", 1))
    elif op == "Cast":
        if int(a.get("to", 1)) not in _CAST_TO:
            problems.append(f"to={a.get('to')} (only float, double, int32, int64, bool)")
    return [p for p in problems if p]


def cast_dtype(to):
    return np.dtype(_CAST_TO[int(to)])


def _short(v):
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
