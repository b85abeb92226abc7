"""ONNX ModelProto -> ``Graph`` (the ``onnx`` package is used here only to parse).

Constant nodes are folded into ``Graph.constants``; every node is checked against
``spec.SUPPORTED`` and all problems are raised together in one ``OnnxImportError``.
"""
import os

import numpy as np

from .graph import Graph, Node, ValueInfo, toposort
from .rewrite import fuse_hard_swish
from .spec import MIN_OPSET, check_node, onnx_dtype

__all__ = ["OnnxImportError", "read_model", "parse_model"]


class OnnxImportError(ValueError):
    """The file is not a usable ONNX model, or uses ops/attributes nnlite does not support."""


def read_model(onnx, path):
    """The ModelProto stored in ``path`` (a file path, bytes, or a ModelProto)."""
    if isinstance(path, onnx.ModelProto):
        return path
    if isinstance(path, (bytes, bytearray)):
        data, source = bytes(path), "<bytes>"
    else:
        source = os.fspath(path)
        if not os.path.exists(source):
            raise FileNotFoundError(f"nnlite.onnx.load: no such file: {source!r}")
        with open(source, "rb") as fh:
            data = fh.read()
    try:
        model = onnx.ModelProto()
        model.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise OnnxImportError(f"{source!r} is not an ONNX model (protobuf parse failed: "
                              f"{exc})") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise OnnxImportError(f"{source!r} is not an ONNX model (no graph inside; a "
                              "truncated or unrelated file?)")
    if not isinstance(path, (bytes, bytearray)) and _has_external_data(model):
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(model, os.path.dirname(os.path.abspath(source)))
        except Exception as exc:  # noqa: BLE001
            raise OnnxImportError(f"{source!r}: cannot read its external weight data: "
                                  f"{exc}") from None
    return model


def _has_external_data(model):
    return any(t.data_location == 1 for t in model.graph.initializer)


def _opset(model, source, newest=None):
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise OnnxImportError(f"{source}: the model declares no default-domain opset")
    opset = max(versions)
    if newest is not None and opset > newest:
        raise OnnxImportError(f"{source}: opset {opset} is newer than the newest the installed "
                              f"onnx package knows ({newest}); upgrade onnx")
    if opset < MIN_OPSET:
        raise OnnxImportError(f"{source}: opset {opset} is older than the oldest supported "
                              f"({MIN_OPSET}); re-export with a newer opset")
    return opset


def _attr_value(onnx, attr):
    from onnx import numpy_helper

    v = onnx.helper.get_attribute_value(attr)
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, onnx.SparseTensorProto):
        return _dense(numpy_helper, v)
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, list):
        if v and isinstance(v[0], bytes):
            return [s.decode("utf-8", errors="replace") for s in v]
        if v and isinstance(v[0], onnx.TensorProto):
            return [numpy_helper.to_array(t) for t in v]
        return list(v)
    return v


def _dense(numpy_helper, sp):
    """A SparseTensorProto as a dense ndarray (indices linear (NNZ,) or per-axis (NNZ, rank))."""
    import math

    values = numpy_helper.to_array(sp.values).reshape(-1)
    idx = numpy_helper.to_array(sp.indices).astype(np.int64)
    dims = [int(d) for d in sp.dims]
    if any(d < 0 for d in dims) or math.prod(dims) > 2 ** 31:
        raise ValueError(f"sparse constant of shape {dims} is negative or too large")
    dense = np.zeros(math.prod(dims), dtype=values.dtype)
    if idx.ndim == 2:
        idx = np.ravel_multi_index(tuple(idx.T), dims) if idx.size else idx.reshape(-1)
    idx = idx.reshape(-1)
    if idx.shape[0] != values.shape[0] or (idx.size and (idx.min() < 0
                                                         or idx.max() >= dense.size)):
        raise ValueError(f"sparse constant: {idx.shape[0]} indices for {values.shape[0]} "
                         f"values, or an index outside the shape {dims}")
    dense[idx] = values
    return dense.reshape(dims)


def _value_info(onnx, vi):
    t = vi.type.tensor_type
    dtype = None
    if t.elem_type:
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))
        except Exception:  # noqa: BLE001 - exotic element types are reported at run time
            dtype = None
    shape = None
    if t.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
    return ValueInfo(vi.name, shape, dtype)


def _constant_value(node):
    (key, v), = node.attrs.items()
    if key == "value":
        return np.asarray(v)
    if key == "sparse_value":
        return v  # densified by _attr_value
    if key == "value_float":
        return np.asarray(v, dtype=np.float32)
    if key == "value_floats":
        return np.asarray(v, dtype=np.float32)
    return np.asarray(v, dtype=np.int64)  # value_int, value_ints


def parse_model(onnx, model, source="<model>"):
    """Build the ``Graph`` of ``model``; raises ``OnnxImportError`` listing every problem."""
    from onnx import numpy_helper

    try:
        newest = int(onnx.defs.onnx_opset_version())
    except Exception:  # noqa: BLE001 - an onnx without defs: no upper bound
        newest = None
    opset = _opset(model, source, newest)
    g = model.graph
    problems = []
    constants = {}
    for init in g.initializer:
        try:
            constants[init.name] = numpy_helper.to_array(init)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"initializer {init.name!r} cannot be read: {exc}")
    if len(g.sparse_initializer):
        problems.append("sparse initializers are not supported")
    inputs = []
    for vi in g.input:
        if vi.name in constants:
            continue
        inputs.append(_value_info(onnx, vi))
        elem = vi.type.tensor_type.elem_type
        try:
            if elem:
                onnx_dtype(elem)   # a type nnlite computes, or a problem
        except ValueError as exc:
            problems.append(f"graph input {vi.name!r}: {exc}")
    nodes = []
    for i, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{i}"
        if n.domain not in ("", "ai.onnx"):
            problems.append(f"op {n.domain}::{n.op_type} (node {name!r}) is not supported "
                            "(custom domain)")
            continue
        try:
            attrs = {a.name: _attr_value(onnx, a) for a in n.attribute}
        except Exception as exc:  # noqa: BLE001 - corrupt attribute tensors
            problems.append(f"node {name!r}: an attribute cannot be read: {exc}")
            continue
        if n.op_type == "Concat" and "axis" not in attrs and opset < 4:
            attrs["axis"] = 1  # Concat-1's default
        node = Node(n.op_type, tuple(n.input), tuple(n.output), attrs, name)
        if n.op_type == "Constant" and not check_node(node, opset, constants):
            constants[n.output[0]] = _constant_value(node)
            continue
        nodes.append(node)
    outputs = [o.name for o in g.output]
    consumers = {}
    for n in nodes:
        for v in n.inputs:
            consumers.setdefault(v, []).append(n)
    grouped = {}
    for n in nodes:
        for p in check_node(n, opset, constants, consumers, set(outputs)):
            grouped.setdefault((n.op, p), []).append(n.name)
    for (op, p), names in grouped.items():
        shown = ", ".join(repr(x) for x in names[:4]) + (", ..." if len(names) > 4 else "")
        problems.append(f"{op}: {p} ({len(names)} node{'s' if len(names) > 1 else ''}: "
                        f"{shown})" if not p.startswith("op ") else
                        f"{p} ({len(names)} node{'s' if len(names) > 1 else ''}: {shown})")
    if not problems:
        nodes = fuse_hard_swish(nodes, set(outputs))
        known = set(constants) | {vi.name for vi in inputs}
        try:
            nodes = toposort(nodes, known)
        except ValueError as exc:
            problems.append(str(exc))
        produced = known | {o for n in nodes for o in n.outputs}
        missing = [o for o in outputs if o not in produced]
        if missing:
            problems.append(f"graph outputs {missing} are produced by no node")
    if problems:
        raise OnnxImportError(f"cannot import {source}: {len(problems)} problem"
                              f"{'s' if len(problems) > 1 else ''}:\n  - "
                              + "\n  - ".join(problems))
    return Graph(nodes, inputs, outputs, constants, opset, g.name or "graph")
