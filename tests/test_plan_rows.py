"""The inference plan's row kernels: Softmax over the last axis, LayerNormalization (its Mean
and InvStdDev outputs too), Erf and Gelu, on ``nnlite.kernels.rowops``.

Oracle: onnx's ReferenceEvaluator (its own NumPy implementation of each op) and the plain
OnnxModule; the kernel each step got is checked, so a builder that silently declines fails.
"""
import numpy as np
import pytest

import nnlite
from nnlite._infer import kernels as K

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as oh  # noqa: E402
from onnx import numpy_helper as onh  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import nnlite.onnx as nxo  # noqa: E402

RNG = np.random.default_rng(38)


def run(nodes, x, inits=None, outputs=("y",), opset=17, rtol=3e-6, atol=1e-6):
    vis = [oh.make_tensor_value_info("x", TP.FLOAT, list(x.shape))]
    outs = [oh.make_tensor_value_info(o, TP.FLOAT, None) for o in outputs]
    graph = oh.make_graph(nodes, "g", vis, outs,
                          [onh.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    mod = nxo.load(model.SerializeToString())
    fast = nnlite.optimize_for_inference(mod)
    got = fast(x)
    got = got if isinstance(got, tuple) else (got,)
    plain = mod(x)
    plain = plain if isinstance(plain, tuple) else (plain,)
    want = ReferenceEvaluator(model).run(None, {"x": x})
    for g, p, w in zip(got, plain, want):
        np.testing.assert_allclose(g.data, w, rtol=rtol, atol=atol)
        np.testing.assert_allclose(p.data, w, rtol=rtol, atol=atol)
    (plan, _), = fast._plans.values()
    return [type(k).__name__ for _, k, _ in plan.steps]


@pytest.mark.parametrize("shape", [(2, 3, 17), (1, 8, 40, 40), (5, 1), (4, 1000)])
def test_softmax_last_axis(shape):
    x = (RNG.standard_normal(shape) * 8).astype(np.float32)
    x.reshape(-1)[::7] = -np.inf
    kinds = run([oh.make_node("Softmax", ["x"], ["y"], axis=-1)], x)
    assert kinds == ["SoftmaxKernel"]


def test_softmax_rows_with_specials():
    x = RNG.standard_normal((6, 9)).astype(np.float32)
    x[0] = -np.inf          # all -inf: NaN (as the formula gives)
    x[1, 3] = np.nan        # NaN anywhere: NaN row
    x[2, 4] = np.inf        # +inf: NaN row (inf - inf)
    x[3, :8] = -np.inf      # one finite value: exactly 1 there
    x[4] *= 1e30            # huge values: no overflow
    kinds = run([oh.make_node("Softmax", ["x"], ["y"], axis=-1)], x)
    assert kinds == ["SoftmaxKernel"]


@pytest.mark.parametrize("shape,axis", [((2, 7, 32), -1), ((3, 4, 5, 6), 2), ((1, 9, 1), -1),
                                        ((8, 256), 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm(shape, axis, bias):
    x = (RNG.standard_normal(shape) * 3 + 100).astype(np.float32)   # an offset to survive
    norm = shape[axis:]
    inits = {"w": RNG.standard_normal(norm).astype(np.float32)}
    ins = ["x", "w"]
    if bias:
        inits["b"] = RNG.standard_normal(norm).astype(np.float32)
        ins.append("b")
    kinds = run([oh.make_node("LayerNormalization", ins, ["y"], axis=axis, epsilon=1e-3)], x,
                inits, rtol=2e-5, atol=2e-5)
    assert kinds == ["RowKernel"]


def test_layer_norm_statistics_outputs():
    x = RNG.standard_normal((3, 5, 8)).astype(np.float32) * 2 - 1
    inits = {"w": RNG.standard_normal(8).astype(np.float32)}
    kinds = run([oh.make_node("LayerNormalization", ["x", "w"], ["y", "m", "r"], axis=-1)], x,
                inits, outputs=("y", "m", "r"), rtol=2e-5, atol=2e-5)
    assert kinds == ["RowKernel"]


def test_layer_norm_with_broadcast_scale_takes_the_executor():
    x = RNG.standard_normal((3, 5, 8)).astype(np.float32)
    inits = {"w": RNG.standard_normal((1, 8)).astype(np.float32)}
    kinds = run([oh.make_node("LayerNormalization", ["x", "w"], ["y"], axis=-1)], x, inits,
                rtol=2e-5, atol=2e-5)
    assert kinds == ["FallbackKernel"]


def test_erf_and_gelu_forms():
    x = np.concatenate([np.linspace(-9, 9, 1001), RNG.standard_normal(999) * 3,
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30]]).astype(np.float32)
    want = "RowKernel"
    assert run([oh.make_node("Erf", ["x"], ["y"])], x) == [want]
    for form in ("none", "tanh"):
        kinds = run([oh.make_node("Gelu", ["x"], ["y"], approximate=form)], x, opset=20)
        assert kinds == [want]
