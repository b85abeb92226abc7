"""ONNX import: ``nnlite.onnx.load(path)`` -> an nnlite Module running the graph with nnlite ops.

Needs the optional ``onnx`` package (``pip install nnlite[onnx]``), used only to parse the file;
it is imported inside ``load``, so ``import nnlite.onnx`` works without it. Supported ops and
attributes: ``SUPPORTED`` (``spec.py``), default domain, opsets up to the newest the installed
onnx knows, each op with its per-opset form (attributes that became inputs, Resize's versions,
Softmax's 2-D coercion before opset 13, ...); 1-D and 2-D convolutions and pools (3-D is
refused by name); float32/float64 data, integers and bool for index/shape ops. A model using
anything else is rejected with one error listing every unsupported op/attribute. Inputs may
have symbolic dimensions. ``nnlite.optimize_for_inference`` accepts the result (one plan per
input shape). ``nnlite.onnx.backend`` is an ``onnx.backend`` for onnx's conformance tests.
"""
import os

from .graph import Graph, Node, ValueInfo  # noqa: F401
from .parser import OnnxImportError
from .spec import SUPPORTED

__all__ = ["load", "support_summary", "supported_ops", "OnnxImportError", "SUPPORTED"]

_INSTALL = "pip install nnlite[onnx]"


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("nnlite.onnx.load needs the 'onnx' package to parse .onnx files: "
                          f"{_INSTALL}") from None
    return onnx


def load(path):
    """Import the ONNX model at ``path`` (or bytes / a ModelProto) as an ``OnnxModule``.

    Raises ``FileNotFoundError`` for a missing file, ``OnnxImportError`` (a ValueError) for a
    file that is not ONNX or that uses unsupported ops/attributes (all listed at once), and
    ``ImportError`` naming ``pip install nnlite[onnx]`` when ``onnx`` is not installed.

    Shape: the module takes the graph inputs in graph-input order.
    """
    onnx = _import_onnx()
    from .module import OnnxModule
    from .parser import parse_model, read_model

    model = read_model(onnx, path)
    try:
        source = os.fspath(path)
    except TypeError:  # bytes-like or ModelProto
        source = "<model>"
    if isinstance(source, bytes):
        source = "<model>"
    graph = parse_model(onnx, model, repr(source) if source != "<model>" else source)
    return OnnxModule(graph, source)


def supported_ops():
    """Sorted names of the ONNX ops nnlite imports."""
    return sorted(SUPPORTED)


def support_summary():
    """One line for ``nnlite info``: whether ``onnx`` is installed and how many ops import."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("onnx") is None:
        return f"not installed ({_INSTALL})"
    try:
        version = importlib.metadata.version("onnx")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown version"
    return f"available (onnx {version}), {len(SUPPORTED)} ops"
