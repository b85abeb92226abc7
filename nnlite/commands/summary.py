"""``nnlite summary MODEL``: the ``nnlite.summary`` cost report of a built-in model or ONNX file."""
import os
import re
import sys

#: built-in model name -> (factory name in nnlite.models, default input shape N, C, H, W)
MODELS = {
    "googlenet": ("googlenet", (1, 3, 224, 224)),
    "resnet18": ("resnet18", (1, 3, 224, 224)),
    "resnet34": ("resnet34", (1, 3, 224, 224)),
    "resnet50": ("resnet50", (1, 3, 224, 224)),
    "resnet101": ("resnet101", (1, 3, 224, 224)),
    "resnet152": ("resnet152", (1, 3, 224, 224)),
    "resnext50_32x4d": ("resnext50_32x4d", (1, 3, 224, 224)),
    "mobilenet_v2": ("mobilenet_v2", (1, 3, 224, 224)),
    "small_cnn": ("small_cnn", (1, 1, 28, 28)),
    "tutorial_inception_net": ("tutorial_inception_net", (1, 1, 28, 28)),
}


def register(subparsers):
    p = subparsers.add_parser(
        "summary", help="per-layer cost report (params, MACs, FLOPs, bytes) of a model",
        description="Prints nnlite.summary for a built-in model (" + ", ".join(MODELS)
                    + ") or an ONNX file (via nnlite.onnx.load, needs the 'onnx' package).")
    p.add_argument("model", metavar="MODEL", help="built-in model name or path to a .onnx file")
    p.add_argument("--input-shape", default=None, metavar="N,C,H,W",
                   help="input shape including the batch (default: the model's usual size)")
    p.add_argument("--count-all", action="store_true",
                   help="FLOPs also count bias, BN, pooling, activations and elementwise ops")
    p.add_argument("--measure", action="store_true", help="also time each layer (one pass)")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("--csv", default=None, metavar="PATH", help="also write the rows as CSV")
    p.set_defaults(func=cmd_summary)


def _fail(msg):
    print(f"nnlite summary: error: {msg}", file=sys.stderr)
    return 2


def parse_shape(text):
    """'1,3,224,224' (or 1x3x224x224) -> (1, 3, 224, 224); ValueError naming the text."""
    compact = text.replace(" ", "")
    if not re.fullmatch(r"\d+([,x]\d+)*", compact):
        raise ValueError(f"--input-shape must be comma-separated non-negative ints such as "
                         f"1,3,224,224; got {text!r}")
    return tuple(int(s) for s in re.split(r"[,x]", compact))


def _onnx_model(path):
    """(module, default input shape or None) for an ONNX file."""
    try:
        from .. import onnx as nnonnx
    except ImportError as exc:
        raise RuntimeError(f"ONNX import is not available in this nnlite ({exc})") from None
    load = getattr(nnonnx, "load", None)
    if load is None:
        raise RuntimeError("ONNX import is not available in this nnlite (no nnlite.onnx.load)")
    module = load(path)   # ImportError names `pip install nnlite[onnx]` when onnx is missing
    shape = None
    inputs = getattr(module.graph, "inputs", [])
    if len(inputs) == 1 and inputs[0].shape is not None and all(
            isinstance(d, int) and d > 0 for d in inputs[0].shape):
        shape = tuple(inputs[0].shape)
    elif len(inputs) != 1:
        raise RuntimeError(f"nnlite summary takes single-input models; {path} has "
                           f"{len(inputs)} inputs")
    return module, shape


def _builtin_model(name):
    from .. import models

    factory, shape = MODELS[name]
    return getattr(models, factory)(), shape


def cmd_summary(args):
    from ..summary import summary

    name = args.model
    is_file = name.lower().endswith(".onnx") or os.path.isfile(name)
    try:
        shape = parse_shape(args.input_shape) if args.input_shape else None
        if is_file:
            if not os.path.isfile(name):
                return _fail(f"no such file: {name}")
            model, default = _onnx_model(name)
        elif name in MODELS:
            model, default = _builtin_model(name)
        else:
            return _fail(f"unknown model {name!r}; choose one of {', '.join(MODELS)} "
                         f"or give a path to a .onnx file")
    except (ImportError, RuntimeError, ValueError, TypeError) as exc:
        return _fail(str(exc))
    shape = shape or default
    if shape is None:
        return _fail(f"{name}: the graph input has free dimensions; pass --input-shape N,C,H,W")
    try:
        report = summary(model, shape, count_all=args.count_all, measure=args.measure)
    except (ValueError, TypeError) as exc:
        return _fail(f"{name} with input shape {shape}: {exc}")
    print(report.to_markdown() if args.markdown else report, end="" if args.markdown else "\n")
    if args.csv:
        report.to_csv(args.csv)
        print(f"CSV: {args.csv}")
    return 0
