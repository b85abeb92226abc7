"""Which ONNX ops and attributes nnlite imports, and the checks run on every node at load time.

``SUPPORTED`` maps op type -> the attributes nnlite understands. ``check_node`` returns the list
of problems of one node (unknown attribute, unsupported value, wrong arity); the importer gathers
the problems of every node and raises them together. Needs neither ``onnx`` nor any op code.
"""
import numpy as np

__all__ = ["SUPPORTED", "MIN_OPSET", "SHAPE_OPERANDS", "check_node", "onnx_dtype"]

MIN_OPSET = 1   # opsets 1-5 import where their ops match the later definitions

_POOL = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")
_CONV = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
_BCAST = ("broadcast", "axis", "consumed_inputs")
_REDUCE = ("axes", "keepdims", "noop_with_empty_axes")
_NONE = ()

SUPPORTED = {
    "Conv": _CONV,
    "ConvTranspose": _CONV + ("output_padding", "output_shape"),
    "MaxPool": _POOL + ("storage_order",),
    "AveragePool": _POOL + ("count_include_pad",),
    "LpPool": _POOL + ("p",),
    "GlobalAveragePool": _NONE, "GlobalMaxPool": _NONE, "GlobalLpPool": ("p",),
    "MaxUnpool": ("kernel_shape", "pads", "strides"),
    "BatchNormalization": ("epsilon", "momentum", "training_mode", "spatial", "is_test",
                           "consumed_inputs"),
    "InstanceNormalization": ("epsilon",),
    "LayerNormalization": ("axis", "epsilon", "stash_type"),
    "GroupNormalization": ("epsilon", "num_groups", "stash_type"),
    "LRN": ("alpha", "beta", "bias", "size"),
    "LpNormalization": ("axis", "p"),
    "Relu": ("consumed_inputs",), "Sigmoid": ("consumed_inputs",), "Tanh": ("consumed_inputs",),
    "LeakyRelu": ("alpha", "consumed_inputs"), "PRelu": ("consumed_inputs",),
    "Elu": ("alpha", "consumed_inputs"), "Selu": ("alpha", "gamma", "consumed_inputs"),
    "Celu": ("alpha",), "HardSigmoid": ("alpha", "beta", "consumed_inputs"),
    "HardSwish": _NONE, "Softplus": _NONE, "Softsign": _NONE, "Gelu": ("approximate",),
    "Mish": _NONE, "Erf": _NONE, "ThresholdedRelu": ("alpha",),
    "Clip": ("min", "max", "consumed_inputs"),
    "Add": _BCAST, "Sub": _BCAST, "Mul": _BCAST, "Div": _BCAST, "Pow": ("broadcast", "axis"),
    "Mod": ("fmod",),
    "Sqrt": ("consumed_inputs",), "Reciprocal": ("consumed_inputs",),
    "Neg": ("consumed_inputs",), "Abs": ("consumed_inputs",), "Exp": ("consumed_inputs",),
    "Log": ("consumed_inputs",), "Floor": ("consumed_inputs",), "Ceil": ("consumed_inputs",),
    "Round": _NONE, "Sign": _NONE,
    "Min": ("consumed_inputs",), "Max": ("consumed_inputs",), "Sum": ("consumed_inputs",),
    "Mean": ("consumed_inputs",), "Where": _NONE,
    "Equal": ("broadcast", "axis"), "Greater": ("broadcast", "axis"), "GreaterOrEqual": _NONE,
    "Less": ("broadcast", "axis"), "LessOrEqual": _NONE, "Not": _NONE,
    "And": ("broadcast", "axis"), "Or": ("broadcast", "axis"), "Xor": ("broadcast", "axis"),
    "Cast": ("to", "saturate", "round_mode"), "CastLike": ("saturate", "round_mode"),
    "Shape": ("start", "end"), "Size": _NONE,
    "Concat": ("axis",),
    "Flatten": ("axis",),
    "Reshape": ("allowzero", "shape", "consumed_inputs"),
    "Transpose": ("perm",),
    "Squeeze": ("axes",), "Unsqueeze": ("axes",),
    "Split": ("axis", "split", "num_outputs"),
    "Slice": ("starts", "ends", "axes"),
    "Gather": ("axis",), "GatherElements": ("axis",), "GatherND": ("batch_dims",),
    "Expand": _NONE, "Tile": _NONE, "ConstantOfShape": ("value",),
    "Constant": ("value", "value_float", "value_floats", "value_int", "value_ints",
                 "sparse_value"),
    "Range": _NONE, "Identity": _NONE,
    "Dropout": ("ratio", "seed", "is_test"),
    "ArgMax": ("axis", "keepdims", "select_last_index"),
    "ArgMin": ("axis", "keepdims", "select_last_index"),
    "TopK": ("axis", "k", "largest", "sorted"),
    "ReduceMean": _REDUCE, "ReduceSum": _REDUCE, "ReduceMax": _REDUCE, "ReduceMin": _REDUCE,
    "ReduceProd": _REDUCE, "ReduceL2": _REDUCE, "ReduceL1": _REDUCE,
    "ReduceSumSquare": _REDUCE, "ReduceLogSumExp": _REDUCE, "ReduceLogSum": _REDUCE,
    "RoiAlign": ("mode", "output_height", "output_width", "sampling_ratio", "spatial_scale",
                 "coordinate_transformation_mode"),
    "MaxRoiPool": ("pooled_shape", "spatial_scale"),
    "Pad": ("mode", "pads", "value"),
    "Resize": ("antialias", "axes", "coordinate_transformation_mode", "cubic_coeff_a",
               "exclude_outside", "extrapolation_value", "keep_aspect_ratio_policy", "mode",
               "nearest_mode"),
    "Upsample": ("mode", "scales", "height_scale", "width_scale"),
    "DepthToSpace": ("blocksize", "mode"), "SpaceToDepth": ("blocksize", "mode"),
    "Gemm": ("alpha", "beta", "transA", "transB", "broadcast"),
    "MatMul": _NONE,
    "Softmax": ("axis",), "LogSoftmax": ("axis",), "Hardmax": ("axis",),
}

_MANY = 10 ** 6
# (min inputs, max inputs, max outputs); ops not listed take exactly one input and one output
_ARITY = {
    "Conv": (2, 3, 1), "ConvTranspose": (2, 3, 1), "MaxPool": (1, 1, 2), "MaxUnpool": (2, 3, 1),
    "BatchNormalization": (5, 5, 5), "LayerNormalization": (2, 3, 3),
    "InstanceNormalization": (3, 3, 1), "GroupNormalization": (3, 3, 1), "PRelu": (2, 2, 1),
    "Clip": (1, 3, 1), "Add": (2, 2, 1), "Sub": (2, 2, 1), "Mul": (2, 2, 1), "Div": (2, 2, 1),
    "Pow": (2, 2, 1), "Mod": (2, 2, 1), "GatherND": (2, 2, 1),
    "Min": (1, _MANY, 1), "Max": (1, _MANY, 1), "Sum": (1, _MANY, 1),
    "Mean": (1, _MANY, 1), "Where": (3, 3, 1), "Equal": (2, 2, 1), "Greater": (2, 2, 1),
    "GreaterOrEqual": (2, 2, 1), "Less": (2, 2, 1), "LessOrEqual": (2, 2, 1), "And": (2, 2, 1),
    "Or": (2, 2, 1), "Xor": (2, 2, 1), "CastLike": (2, 2, 1),
    "Concat": (1, _MANY, 1), "Reshape": (1, 2, 1), "Squeeze": (1, 2, 1), "Unsqueeze": (1, 2, 1),
    "Split": (1, 2, _MANY), "Slice": (1, 5, 1), "Gather": (2, 2, 1), "GatherElements": (2, 2, 1),
    "Expand": (2, 2, 1), "Tile": (2, 2, 1), "Constant": (0, 0, 1), "Range": (3, 3, 1),
    "Dropout": (1, 3, 2), "TopK": (1, 2, 2),
    "ReduceMean": (1, 2, 1), "ReduceSum": (1, 2, 1), "ReduceMax": (1, 2, 1),
    "ReduceMin": (1, 2, 1), "ReduceProd": (1, 2, 1), "ReduceL2": (1, 2, 1),
    "ReduceL1": (1, 2, 1), "ReduceSumSquare": (1, 2, 1), "ReduceLogSumExp": (1, 2, 1),
    "ReduceLogSum": (1, 2, 1),
    "RoiAlign": (3, 3, 1), "MaxRoiPool": (2, 2, 1), "Pad": (1, 4, 1), "Resize": (1, 4, 1),
    "Upsample": (1, 2, 1), "Gemm": (2, 3, 1), "MatMul": (2, 2, 1),
}

# the inputs (by position) whose values, not only shapes, decide an op's output shape: a plan
# compiled for one input shape holds for other values of these only if they are constants
# (``nnlite._infer.dryrun.shape_inputs``)
SHAPE_OPERANDS = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,),
    "Slice": (1, 2, 3, 4), "Pad": (1, 3), "Split": (1,), "Squeeze": (1,), "Unsqueeze": (1,),
    "TopK": (1,), "Range": (0, 1, 2), "Upsample": (1,), "MaxUnpool": (2,),
    "Resize": (1, 2, 3),   # opset 10: (X, scales); 11+: (X, roi, scales, sizes)
    **{op: (1,) for op in SUPPORTED if op.startswith("Reduce")},
}

# ONNX TensorProto element types nnlite computes with
_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
           7: "int64", 9: "bool", 11: "float64", 12: "uint32", 13: "uint64"}
_DTYPE_NAMES = {10: "float16", 16: "bfloat16", 8: "string", 14: "complex64", 15: "complex128"}
_DTYPE_BY_NAME = {"FLOAT": 1, "UINT8": 2, "INT8": 3, "UINT16": 4, "INT16": 5, "INT32": 6,
                  "INT64": 7, "STRING": 8, "BOOL": 9, "FLOAT16": 10, "DOUBLE": 11, "UINT32": 12,
                  "UINT64": 13}


def onnx_dtype(to):
    """NumPy dtype of ONNX element type ``to`` (ValueError for types nnlite does not compute)."""
    if isinstance(to, str):   # Cast-1 names the type ("FLOAT", "INT64", ...)
        to = _DTYPE_BY_NAME.get(to.upper(), -1)
    to = int(to)
    if to not in _DTYPES:
        name = _DTYPE_NAMES.get(to, f"element type {to} (float8/4-bit/other)")
        raise ValueError(f"{name} tensors are not supported (nnlite computes in float32/"
                         "float64, integers and bool)")
    return np.dtype(_DTYPES[to])


def _ints(v, n, name, lo):
    v = list(v)
    if len(v) not in n:
        want = " or ".join(str(k) for k in n)
        return f"{name}={v} must have {want} entries (1-D and 2-D ops only)"
    if any(int(x) < lo for x in v):
        return f"{name}={v} must be >= {lo}"
    return None


_SPATIAL_OPS = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "MaxUnpool")


def _geometry(node, op, constants):
    """Window attributes of a 1-D or 2-D conv/pool (3-D and beyond get a clear problem)."""
    a = node.attrs
    out = []
    rank = None
    w = constants.get(node.inputs[1]) if op.startswith("Conv") and len(node.inputs) > 1 else None
    if w is not None:
        rank = w.ndim - 2
    elif "kernel_shape" in a:
        rank = len(a["kernel_shape"])
    if rank is not None and rank not in (1, 2):
        kernel = list(a["kernel_shape"]) if "kernel_shape" in a else list(w.shape[2:])
        return [f"{rank}-D windows are not supported (nnlite runs 1-D and 2-D "
                f"convolutions/pools; kernel {kernel})"]
    n = (rank,) if rank else (1, 2)
    if "kernel_shape" in a:
        out.append(_ints(a["kernel_shape"], n, "kernel_shape", 1))
    elif not op.startswith("Conv"):
        out.append("kernel_shape is required")
    for key in ("strides", "dilations"):
        if key in a:
            out.append(_ints(a[key], n, key, 1))
    if "pads" in a:
        out.append(_ints(a["pads"], tuple(2 * k for k in n), "pads", 0))
    pad = a.get("auto_pad", "NOTSET")
    if pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        out.append(f"auto_pad={pad!r} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    if int(a.get("ceil_mode", 0)) not in (0, 1):
        out.append(f"ceil_mode={a['ceil_mode']} must be 0 or 1")
    if int(a.get("group", 1)) < 1:
        out.append(f"group={a['group']} must be positive")
    if op == "ConvTranspose" and "output_padding" in a:
        out.append(_ints(a["output_padding"], n, "output_padding", 0))
    if op == "ConvTranspose" and "output_shape" in a and len(a["output_shape"]) not in n:
        out.append(f"output_shape={list(a['output_shape'])} must have {n[0]} entries")
    if op == "MaxPool" and int(a.get("storage_order", 0)) not in (0, 1):
        out.append(f"storage_order={a['storage_order']} must be 0 or 1")
    return out


def _used(name, consumers, graph_outputs):
    return bool(name) and (name in consumers or name in graph_outputs)


_CHOICES = {
    ("Pad", "mode"): ("constant", "reflect", "edge", "wrap"),
    ("RoiAlign", "mode"): ("avg", "max"),
    ("RoiAlign", "coordinate_transformation_mode"): ("half_pixel", "output_half_pixel"),
    ("Resize", "mode"): ("nearest", "linear", "cubic"),
    ("Resize", "coordinate_transformation_mode"): (
        "half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
        "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"),
    ("Resize", "nearest_mode"): ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"),
    ("Resize", "keep_aspect_ratio_policy"): ("stretch", "not_larger", "not_smaller"),
    ("Upsample", "mode"): ("nearest", "linear", "bilinear"),
    ("DepthToSpace", "mode"): ("DCR", "CRD"),
    ("SpaceToDepth", "mode"): ("DCR", "CRD"),
    ("Gelu", "approximate"): ("none", "tanh"),
}


def check_node(node, opset, constants, consumers=(), graph_outputs=()):
    """Problems (strings) that keep nnlite from running ``node``; empty when supported."""
    op, a = node.op, node.attrs
    if op not in SUPPORTED:
        return [f"op {op!r} is not supported"]
    problems = [f"attribute {k}={_short(v)} is not supported" for k, v in a.items()
                if k not in SUPPORTED[op]]
    for (o, key), allowed in _CHOICES.items():
        if o == op and key in a and a[key] not in allowed:
            problems.append(f"{key}={a[key]!r} is not one of {', '.join(allowed)}")
    lo, hi, hout = _ARITY.get(op, (1, 1, 1))
    nin = len(node.inputs)
    if not lo <= nin <= hi:
        problems.append(f"takes {lo}..{hi} inputs, got {nin}")
    if len(node.outputs) > hout:
        problems.append(f"has {len(node.outputs)} outputs, at most {hout} supported")
    if op in _SPATIAL_OPS:
        problems += _geometry(node, op, constants)
    elif op == "BatchNormalization":
        if "is_test" in a and int(a["is_test"]) != 1 and any(
                _used(o, consumers, graph_outputs) for o in node.outputs[1:]):
            problems.append("is_test=0 (training) with its statistics outputs is not supported")
    elif op == "Dropout":
        if "is_test" in a and int(a["is_test"]) != 1:
            ratio = float(a.get("ratio", 0.5))
            if ratio != 0.0:
                problems.append("is_test=0 (training, random masks) is not supported")
    elif op == "Constant":
        if len(a) != 1:
            problems.append(f"needs exactly one value attribute, got {sorted(a)}")
    elif op == "MaxRoiPool":
        if "pooled_shape" not in a:
            problems.append("pooled_shape is required")
        else:
            problems.append(_ints(a["pooled_shape"], (2,), "pooled_shape", 1))
    elif op == "Cast":
        try:
            onnx_dtype(a.get("to", 1))
        except ValueError as exc:
            problems.append(f"to={a.get('to')}: {exc}")
    elif op in ("DepthToSpace", "SpaceToDepth"):
        if "blocksize" not in a or int(a["blocksize"]) < 1:
            problems.append("blocksize must be a positive integer")
    elif op == "LRN":
        if "size" not in a or int(a["size"]) < 1:
            problems.append("size must be a positive integer")
    elif op == "Concat" and "axis" not in a:
        problems.append("axis is required")
    elif op == "GroupNormalization" and "num_groups" not in a:
        problems.append("num_groups is required")
    return [p for p in problems if p]


def cast_dtype(to):
    return onnx_dtype(to)


def _short(v):
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
