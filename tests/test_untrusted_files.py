"""Untrusted files: .npz weights load without pickle; corrupted .npz and ONNX files are rejected
with clear errors (ValueError / OnnxImportError), never another exception, a crash, a hang or a
giant allocation.

Hostile inputs: a pickle payload with a side effect, .npy headers claiming terabytes, random
truncations and bit flips of a real weights file and of a real ONNX model (hypothesis, marker
``fuzz``), and hand-made ONNX graphs with invalid attributes, shapes and references.
"""
import io
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnlite
import nnlite.nn as nn
from fuzzing import fuzz_settings, hang_guard, memory_cap  # noqa: F401 - fixtures


# ----------------------------------------------------------------------------------- .npz
class _Payload:
    """Unpickling this object writes a marker file (a stand-in for arbitrary code)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _state_bytes():
    nnlite.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 2))
    buf = io.BytesIO()
    nnlite.save(model.state_dict(), buf)
    return buf.getvalue(), model


def test_pickle_payload_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.npz"
    arr = np.empty(1, dtype=object)
    arr[0] = _Payload(marker)
    np.savez(evil, weight=np.zeros(3, np.float32), bias=arr)  # np.savez pickles object arrays
    with pytest.raises(ValueError, match="pickle"):
        nnlite.load(evil)
    assert not marker.exists()
    # a raw pickle (e.g. a torch.save file renamed .npz) is not a zip: refused as well
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ValueError, match="not an .npz"):
        nnlite.load(raw)
    assert not marker.exists()


def _npz(member_bytes, name="w.npy"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, member_bytes)
    return buf.getvalue()


def _npy(shape, data=b"\0" * 16, descr="<f4"):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (descr, tuple(shape))
    header += " " * (118 - len(header)) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + data


@pytest.mark.parametrize("shape", [(2 ** 28,), (2 ** 40,), (2 ** 62,), (2 ** 31,) * 3, (-1,),
                                   (0,), (5,)])
def test_npy_header_claiming_more_data_than_present(shape, memory_cap):  # noqa: F811
    """numpy allocates the header's size before reading: nnlite checks it against the member
    first, so a 200-byte file claiming 4 TiB is a ValueError, not a MemoryError or a 4 TiB
    allocation."""
    with pytest.raises(ValueError, match="header declares"):
        nnlite.load(io.BytesIO(_npz(_npy(shape))))


def test_npy_header_matching_its_data_loads():
    out = nnlite.load(io.BytesIO(_npz(_npy((2, 2)))))
    np.testing.assert_array_equal(out["w"], np.zeros((2, 2), np.float32))


@pytest.mark.parametrize("descr", ["|O", "<U4", "|V8", "<c8", "[('a', '<f4'), ('b', '|O')]"])
def test_npy_foreign_dtypes_rejected(descr):
    with pytest.raises(ValueError):
        nnlite.load(io.BytesIO(_npz(_npy((2,), descr=descr))))


def _load_outcome(data):
    try:
        return nnlite.load(io.BytesIO(data))
    except ValueError as exc:
        assert str(exc).startswith("nnlite.load"), str(exc)
        return exc


@pytest.mark.fuzz
@fuzz_settings(150)
@given(cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)),
                                           max_size=4))
def test_fuzz_corrupted_npz(cut, flips, memory_cap):  # noqa: F811
    """Truncated / bit-flipped weights: ValueError, or arrays that load_state_dict accepts or
    rejects with ValueError/KeyError-free errors."""
    data, model = _state_bytes()
    data = bytearray(data[:max(0, int(len(data) * cut)) if cut < 1 else len(data)])
    for pos, bit in flips:
        if data:
            data[int(pos * (len(data) - 1))] ^= 1 << bit
    res = _load_outcome(bytes(data))
    if isinstance(res, ValueError):
        return
    for v in res.values():
        assert isinstance(v, np.ndarray) and v.dtype.kind in "biuf"
    try:
        model.load_state_dict(res)
    except (ValueError, TypeError, RuntimeError) as exc:
        assert str(exc)


# ---------------------------------------------------------------------------------- ONNX
onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as oh  # noqa: E402
from onnx import numpy_helper as onh  # noqa: E402

import nnlite.onnx as nxo  # noqa: E402

RNG = np.random.default_rng(5)
X = RNG.standard_normal((1, 2, 8, 8)).astype(np.float32)


def _model(conv_attrs=None, pool_attrs=None, w_shape=(4, 2, 3, 3), nodes_extra=(),
           inits_extra=None, gemm_shape=(3, 64)):
    conv_attrs = {"pads": [1, 1, 1, 1]} if conv_attrs is None else conv_attrs
    pool_attrs = {"kernel_shape": [2, 2], "strides": [2, 2]} if pool_attrs is None else pool_attrs
    inits = {"w": RNG.standard_normal(w_shape).astype(np.float32),
             "b": RNG.standard_normal(w_shape[0]).astype(np.float32),
             "fc": RNG.standard_normal(gemm_shape).astype(np.float32),
             "shape": np.array([1, -1], np.int64)}
    inits.update(inits_extra or {})
    nodes = [oh.make_node("Conv", ["x", "w", "b"], ["c"], **conv_attrs),
             oh.make_node("Relu", ["c"], ["r"]),
             oh.make_node("MaxPool", ["r"], ["p"], **pool_attrs),
             oh.make_node("Reshape", ["p", "shape"], ["f"]),
             oh.make_node("Gemm", ["f", "fc"], ["y"], transB=1), *nodes_extra]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", TP.FLOAT, [1, 2, 8, 8])],
                          [oh.make_tensor_value_info("y", TP.FLOAT, None)],
                          [onh.from_array(v, k) for k, v in inits.items()])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 10)
    return model


def _import_and_run(data):
    """OnnxImportError at load, or a module whose run gives a result or ValueError/TypeError."""
    try:
        mod = nxo.load(data)
    except nxo.OnnxImportError as exc:
        assert str(exc)
        return exc
    try:
        return mod(X)
    except (ValueError, TypeError) as exc:
        return exc


def test_valid_model_runs():
    y = _import_and_run(_model().SerializeToString())
    assert isinstance(y, nnlite.Tensor) and y.shape == (1, 3)


@pytest.mark.fuzz
@fuzz_settings(150)
@given(cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)),
                                           max_size=6))
def test_fuzz_corrupted_onnx(cut, flips, memory_cap):  # noqa: F811
    data = bytearray(_model().SerializeToString())
    data = data[:int(len(data) * cut)] if cut < 1 else data
    for pos, bit in flips:
        if data:
            data[int(pos * (len(data) - 1))] ^= 1 << bit
    _import_and_run(bytes(data))


BAD_ONNX = {
    "zero stride": dict(conv_attrs={"strides": [0, 1]}),
    "negative pads": dict(conv_attrs={"pads": [-1, 0, 0, 0]}),
    "pads wrong length": dict(conv_attrs={"pads": [1, 1]}),
    "zero dilation": dict(conv_attrs={"dilations": [0, 1]}),
    "group does not divide": dict(conv_attrs={"group": 3}),
    "group zero": dict(conv_attrs={"group": 0}),
    "kernel_shape vs weight": dict(conv_attrs={"kernel_shape": [5, 5]}),
    "bogus auto_pad": dict(conv_attrs={"auto_pad": "FULL"}),
    "weight not 4-D": dict(w_shape=(4, 2, 3)),
    "weight channels": dict(w_shape=(4, 3, 3, 3)),
    "huge stride": dict(conv_attrs={"strides": [2 ** 62, 2 ** 62]}),
    "pool without kernel": dict(pool_attrs={}),
    "pool zero kernel": dict(pool_attrs={"kernel_shape": [0, 2]}),
    "pool pads > kernel": dict(pool_attrs={"kernel_shape": [2, 2], "pads": [5, 5, 5, 5]}),
    "gemm shape": dict(gemm_shape=(3, 7)),
    "missing input": dict(nodes_extra=(oh.make_node("Add", ["y", "nowhere"], ["z"]),)),
    "cycle": dict(nodes_extra=(oh.make_node("Relu", ["loop2"], ["loop1"]),
                               oh.make_node("Relu", ["loop1"], ["loop2"]))),
    "bad reshape": dict(inits_extra={"shape": np.array([-1, -1], np.int64)}),
    "reshape to float": dict(inits_extra={"shape": np.array([1.0, -1.0], np.float32)}),
}


@pytest.mark.parametrize("case", sorted(BAD_ONNX))
def test_onnx_invalid_attributes_shapes_and_references(case, memory_cap):  # noqa: F811
    res = _import_and_run(_model(**BAD_ONNX[case]).SerializeToString())
    assert isinstance(res, (ValueError, TypeError)), f"{case}: accepted, gave {res!r}"


def test_onnx_initializer_data_shorter_than_its_dims():
    model = _model()
    w = model.graph.initializer[0]
    w.raw_data = w.raw_data[:-8]  # dims still say 4x2x3x3
    res = _import_and_run(model.SerializeToString())
    assert isinstance(res, ValueError), res


def test_onnx_initializer_claiming_huge_dims(memory_cap):  # noqa: F811
    model = _model()
    w = model.graph.initializer[0]
    del w.dims[:]
    w.dims.extend([2 ** 20, 2 ** 20, 2 ** 10, 1])
    res = _import_and_run(model.SerializeToString())
    assert isinstance(res, ValueError), res
