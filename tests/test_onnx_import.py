"""nnlite.onnx.load on models built with the onnx helper API, op by op.

Oracle: onnx's own pure-Python ReferenceEvaluator (shipped with ``onnx``), plus ONNX Runtime
when installed; MaxRoiPool against docs/semantics.md §7.6's worked values. Every model runs both as
the plain OnnxModule (nnlite Tensor ops) and through ``nnlite.optimize_for_inference`` (array
kernels).
"""

import numpy as np
import pytest

import nnlite

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as oh  # noqa: E402
from onnx import numpy_helper as onh  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import nnlite.onnx as nxo  # noqa: E402
from plan_checks import plain_and_optimized  # noqa: E402

RNG = np.random.default_rng(1234)


def rand(*shape, lo=None):
    a = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(a) + lo if lo is not None else a


def _value_info(name, a):
    return oh.make_tensor_value_info(name, oh.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))


def build(nodes, inputs, inits=None, opset=17, outputs=("y",), dynamic_batch=False):
    vis = [_value_info(n, a) for n, a in inputs]
    if dynamic_batch:
        for vi in vis:
            vi.type.tensor_type.shape.dim[0].dim_param = "N"
    outs = [oh.make_tensor_value_info(o, TP.FLOAT, None) for o in outputs]
    graph = oh.make_graph(nodes, "g", vis, outs,
                          [onh.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    return model


def reference(model, inputs):
    feeds = dict(inputs)
    return [np.asarray(r) for r in ReferenceEvaluator(model).run(None, feeds)]


def run_ort(model, inputs):
    """ONNX Runtime's outputs, or None when it is not installed (the other oracles still run)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, dict(inputs))


def check(model, inputs, expected=None, rtol=1e-5, atol=1e-5, ort=False):
    """Plain and optimized nnlite outputs vs the reference (or ``expected``)."""
    if expected is None:
        expected = reference(model, inputs)
    plain, opt, _ = plain_and_optimized(model, inputs)
    for got_p, got_o, ref in zip(plain, opt, expected):
        ref = np.asarray(ref)
        assert got_p.shape == ref.shape
        np.testing.assert_allclose(got_p.data, ref, rtol=rtol, atol=atol)
        np.testing.assert_allclose(got_o.data, ref, rtol=rtol, atol=atol)
    ort_out = run_ort(model, inputs) if ort else None
    for got, ref in zip(plain, ort_out or ()):
        np.testing.assert_allclose(got.data, ref, rtol=rtol, atol=atol)
    return plain


# ------------------------------------------------------------------------------ convolution
CONV_CASES = [
    dict(pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2]),
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER"),
    dict(auto_pad="VALID", strides=[1, 2]),
    dict(pads=[1, 1, 1, 1], group=2),
    dict(pads=[2, 1, 0, 3], strides=[2, 3], group=6, depthwise=True),
    dict(pads=[1, 1, 1, 1], strides=[2, 2], group=6, depthwise=True, kernel=(3, 3)),
    dict(pointwise=True),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv(case, bias):
    case = dict(case)
    c, f = 6, (6 if case.pop("depthwise", False) else 4)
    kernel = case.pop("kernel", (1, 1) if case.pop("pointwise", False) else (3, 2))
    g = case.get("group", 1)
    w = rand(f, c // g, *kernel)
    inits = {"w": w}
    ins = ["x", "w"]
    if bias:
        inits["b"] = rand(f)
        ins.append("b")
    node = oh.make_node("Conv", ins, ["y"], kernel_shape=list(kernel), **case)
    x = rand(2, c, 7, 8)
    check(build([node], [("x", x)], inits), [("x", x)], ort=True)


CONVT_CASES = [
    dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 0]),
    dict(strides=[2, 1], output_shape=[9, 6]),
    dict(strides=[2, 2], pads=[0, 1, 1, 0]),
    dict(strides=[3, 2], group=2, dilations=[2, 1]),
    dict(strides=[2, 2], auto_pad="SAME_UPPER"),
]


def conv_transpose_scatter(x, w, b, s, d, pads, out_hw, g):
    """Naive scatter definition (docs/semantics.md §2.3) cropped by the ONNX begin pads."""
    n, cin, h, wd = x.shape
    cout_g = w.shape[1]
    kh, kw = w.shape[2:]
    full = np.zeros((n, cout_g * g, (h - 1) * s[0] + d[0] * (kh - 1) + 1 + out_hw[0],
                     (wd - 1) * s[1] + d[1] * (kw - 1) + 1 + out_hw[1]), np.float64)
    for ci in range(cin):
        grp = ci // (cin // g)
        for co in range(cout_g):
            for a in range(kh):
                for c in range(kw):
                    for i in range(h):
                        for j in range(wd):
                            full[:, grp * cout_g + co, i * s[0] + a * d[0],
                                 j * s[1] + c * d[1]] += x[:, ci, i, j] * w[ci, co, a, c]
    y = full[:, :, pads[0]:pads[0] + out_hw[0], pads[1]:pads[1] + out_hw[1]]
    return (y + b[None, :, None, None]).astype(np.float32)


@pytest.mark.parametrize("case", CONVT_CASES)
def test_conv_transpose(case):
    g = case.get("group", 1)
    w, b = rand(4, 6 // g, 3, 2), rand(6)
    node = oh.make_node("ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[3, 2], **case)
    x = rand(2, 4, 4, 5)
    model = build([node], [("x", x)], {"w": w, "b": b})
    from nnlite.onnx.geometry import conv_transpose_geometry

    s, d = case.get("strides", [1, 1]), case.get("dilations", [1, 1])
    pads, _, out = conv_transpose_geometry(case, (4, 5), (3, 2), s, d)
    expected = conv_transpose_scatter(x, w, b, s, d, pads, out, g)
    if "group" not in case:  # the onnx reference evaluator handles these (not group+dilation)
        np.testing.assert_allclose(reference(model, [("x", x)])[0], expected, rtol=1e-5,
                                   atol=1e-5)
    check(model, [("x", x)], expected=[expected], ort=True)


@pytest.mark.parametrize("case", [
    dict(kernel_shape=[1, 1], strides=[3, 3], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[2, 1], strides=[4, 3], auto_pad="SAME_LOWER"),
])
def test_conv_transpose_negative_symmetric_pads(case):
    # a stride past the kernel gives SAME (or an output_shape) negative pads, equal on both
    # sides: the output reaches past the full transposed conv, zeros there (ONNX's formula;
    # the reference evaluator's result, which ONNX Runtime's clamping does not follow)
    x, w, b = rand(1, 2, 5, 5), rand(2, 3, *case["kernel_shape"]), rand(3)
    node = oh.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **case)
    from nnlite.onnx.geometry import conv_transpose_geometry

    pads, _, _ = conv_transpose_geometry(case, (5, 5), case["kernel_shape"], case["strides"],
                                         [1, 1])
    assert pads[0] == pads[2] < 0 or pads[1] == pads[3] < 0, pads
    check(build([node], [("x", x)], {"w": w, "b": b}), [("x", x)])


# ------------------------------------------------------------------------------ pooling
POOL_CASES = [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[3, 2], strides=[2, 2], pads=[0, 1, 2, 0])),
    ("MaxPool", dict(kernel_shape=[2, 2], dilations=[2, 2], strides=[1, 2])),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[3, 3], auto_pad="SAME_UPPER", strides=[2, 2])),
    ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                         count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 1], pads=[1, 0, 2, 1],
                         count_include_pad=0)),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1)),
    # dilated windows over padding: the divisor counts the dilated taps (opset 19)
    ("AveragePool", dict(kernel_shape=[1, 3], dilations=[1, 2], pads=[0, 1, 0, 1],
                         count_include_pad=0)),
    ("AveragePool", dict(kernel_shape=[2, 3], dilations=[3, 2], strides=[1, 2],
                         pads=[1, 2, 1, 1], count_include_pad=1)),
]


@pytest.mark.parametrize("op, attrs", POOL_CASES)
def test_pool(op, attrs):
    x = rand(2, 3, 7, 9)
    expected = None
    if attrs.get("ceil_mode") and attrs.get("strides") == [1, 1]:
        # stride 1: ceil_mode changes nothing (the onnx reference evaluator gets this wrong)
        floor = build([oh.make_node(op, ["x"], ["y"], **dict(attrs, ceil_mode=0))], [("x", x)])
        expected = reference(floor, [("x", x)])
    opset = 19 if "dilations" in attrs else 17   # AveragePool's dilations: opset 19
    check(build([oh.make_node(op, ["x"], ["y"], **attrs)], [("x", x)], opset=opset), [("x", x)],
          expected=expected, ort=True)


def test_max_pool_all_negative_window_uses_minus_inf_padding():
    x = -np.abs(rand(1, 2, 4, 4)) - 1
    node = oh.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[1, 1],
                        pads=[1, 1, 1, 1])
    out = check(build([node], [("x", x)]), [("x", x)])
    assert (out[0].data < 0).all()


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool(op):
    x = rand(2, 5, 3, 4)
    check(build([oh.make_node(op, ["x"], ["y"])], [("x", x)]), [("x", x)])


# ------------------------------------------------------------------------------ elementwise
def test_batchnorm_relu_clip_sigmoid_tanh_chain():
    c = 4
    inits = {"s": rand(c, lo=0.5), "b": rand(c), "m": rand(c), "v": rand(c, lo=0.5),
             "lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32),
             "zero": np.array(0.0, np.float32), "six": np.array(6.0, np.float32)}
    nodes = [oh.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"],
                          epsilon=1e-3),
             oh.make_node("Clip", ["bn", "lo", "hi"], ["c1"]),
             oh.make_node("Sigmoid", ["bn"], ["sg"]),
             oh.make_node("Tanh", ["bn"], ["th"]),
             oh.make_node("Relu", ["bn"], ["r"]),
             oh.make_node("Clip", ["bn", "zero", "six"], ["r6"]),
             oh.make_node("Add", ["c1", "sg"], ["a1"]),
             oh.make_node("Mul", ["a1", "th"], ["a2"]),
             oh.make_node("Sub", ["a2", "r"], ["a3"]),
             oh.make_node("Add", ["a3", "r6"], ["y"])]
    x = rand(2, c, 3, 5) * 3
    check(build(nodes, [("x", x)], inits), [("x", x)])


def test_clip_opset_6_attributes():
    x = rand(2, 3)
    node = oh.make_node("Clip", ["x"], ["y"], min=-0.2, max=0.3)
    check(build([node], [("x", x)], opset=7), [("x", x)], expected=[np.clip(x, -0.2, 0.3)])


def test_broadcasting_binary_ops_and_div():
    inits = {"c": rand(3, 1, 1), "d": rand(1, 5, lo=0.5)}
    nodes = [oh.make_node("Add", ["x", "c"], ["a"]), oh.make_node("Div", ["a", "d"], ["b"]),
             oh.make_node("Mul", ["b", "c"], ["m"]), oh.make_node("Sub", ["d", "m"], ["y"])]
    x = rand(2, 3, 4, 5)
    check(build(nodes, [("x", x)], inits), [("x", x)])


# ------------------------------------------------------------------------------ shapes
def test_pytorch_style_view_chain():
    """x.view(x.size(0), -1) as the TorchScript exporter emits it: Shape, Gather, Unsqueeze,
    Concat, Reshape (opset 13: Unsqueeze takes axes as an input)."""
    inits = {"i0": np.array(0, np.int64), "ax": np.array([0], np.int64),
             "m1": np.array([-1], np.int64)}
    nodes = [oh.make_node("Shape", ["x"], ["s"]),
             oh.make_node("Gather", ["s", "i0"], ["n"], axis=0),
             oh.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
             oh.make_node("Concat", ["n1", "m1"], ["shape"], axis=0),
             oh.make_node("Reshape", ["x", "shape"], ["y"])]
    x = rand(3, 2, 4, 4)
    model = build(nodes, [("x", x)], inits, dynamic_batch=True)
    check(model, [("x", x)])
    fast = nnlite.optimize_for_inference(nxo.load(model.SerializeToString()))
    for n in (5, 1, 3):  # each batch size compiles its own plan
        xn = rand(n, 2, 4, 4)
        np.testing.assert_array_equal(fast(xn).data, xn.reshape(n, -1))
    assert len(fast.plans) == 3


def test_unsqueeze_squeeze_opset_11_attributes():
    nodes = [oh.make_node("Unsqueeze", ["x"], ["u"], axes=[0, 3]),
             oh.make_node("Squeeze", ["u"], ["y"], axes=[0])]
    x = rand(2, 3, 4)
    check(build(nodes, [("x", x)], opset=11), [("x", x)])


def test_gather_on_data_and_concat_negative_axis():
    inits = {"idx": np.array([2, 0, -1], np.int64)}
    nodes = [oh.make_node("Gather", ["x", "idx"], ["g"], axis=1),
             oh.make_node("Concat", ["g", "x"], ["y"], axis=-3)]
    x = rand(2, 4, 3, 2)
    check(build(nodes, [("x", x)], inits), [("x", x)])


@pytest.mark.parametrize("axis", [0, 1, 2, 4])
def test_flatten(axis):
    x = rand(2, 3, 4, 5)
    check(build([oh.make_node("Flatten", ["x"], ["y"], axis=axis)], [("x", x)]), [("x", x)])


@pytest.mark.parametrize("target, allowzero", [([0, -1, 5], 0), ([4, 0, -1], 0),
                                               ([2, 3, 20], 1), ([-1], 0)])
def test_reshape(target, allowzero):
    x = rand(2, 3, 4, 5)
    node = oh.make_node("Reshape", ["x", "t"], ["y"], allowzero=allowzero)
    check(build([node], [("x", x)], {"t": np.array(target, np.int64)}), [("x", x)])


def test_transpose_cast_identity_dropout():
    nodes = [oh.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             oh.make_node("Dropout", ["t", "ratio"], ["d"]),
             oh.make_node("Identity", ["d"], ["i"]),
             oh.make_node("Cast", ["i"], ["c64"], to=TP.DOUBLE),
             oh.make_node("Cast", ["c64"], ["y"], to=TP.FLOAT)]
    x = rand(2, 3, 4, 5)
    check(build(nodes, [("x", x)], {"ratio": np.array(0.3, np.float32)}), [("x", x)])


# ------------------------------------------------------------------------------ dense
@pytest.mark.parametrize("attrs, c_shape", [
    (dict(transB=1), (5,)), (dict(transA=1, alpha=0.5, beta=2.0), (4, 5)),
    (dict(transB=1, beta=0.5), (1, 5)), (dict(), None), (dict(transB=1), ())])
def test_gemm(attrs, c_shape):
    a = rand(3, 4) if attrs.get("transA") else rand(4, 3)
    b = rand(5, 3) if attrs.get("transB") else rand(3, 5)
    inits = {"b": b}
    ins = ["a", "b"]
    if c_shape is not None:
        inits["c"] = rand(*c_shape) if c_shape else np.array(1.5, np.float32)
        ins.append("c")
    node = oh.make_node("Gemm", ins, ["y"], **attrs)
    check(build([node], [("a", a)], inits), [("a", a)])


def test_gemm_relu_fused_and_batch_of_8():
    inits = {"w": rand(16, 12), "b": rand(16)}
    nodes = [oh.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1),
             oh.make_node("Relu", ["g"], ["y"])]
    x = rand(8, 12)
    check(build(nodes, [("x", x)], inits), [("x", x)])


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_constant_weights_packed_once_serve_every_batch(trans_b):
    # batches of more than 4 rows take the GEMM's packed path on weights packed once by the
    # first such bind; later plans (other batch sizes, one of few rows) reuse or skip them
    w = rand(53, 37) if trans_b else rand(37, 53)
    b = rand(53)
    nodes = [oh.make_node("Gemm", ["x", "w", "b"], ["y"], transB=trans_b)]
    x = rand(9, 37)
    model = build(nodes, [("x", x)], {"w": w, "b": b}, dynamic_batch=True)
    fast = nnlite.optimize_for_inference(nxo.load(model.SerializeToString()))
    wt = (w.T if trans_b else w).astype(np.float64)
    for n in (9, 16, 3, 9):
        xn = rand(n, 37)
        want = xn.astype(np.float64) @ wt + b
        np.testing.assert_allclose(fast(xn).data, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_few_rows_run_on_nnlites_gemm_not_numpys_blas(trans_b, monkeypatch):
    # a classifier at batch <= 4 (alpha, bias, a fused Relu) runs the GEMM's few-row path on
    # the plan's threads: NumPy's matmul (its BLAS workers) is never called; values against
    # float64, batches 1 to 4 of one dynamic-batch model
    from nnlite.kernels import gemm_ops
    if gemm_ops._gemm is None:
        pytest.skip("nnlite._gemm not built")
    w = rand(53, 37) if trans_b else rand(37, 53)
    b = rand(53)
    nodes = [oh.make_node("Gemm", ["x", "w", "b"], ["g"], transB=trans_b, alpha=0.75),
             oh.make_node("Relu", ["g"], ["y"])]
    model = build(nodes, [("x", rand(1, 37))], {"w": w, "b": b}, dynamic_batch=True)
    fast = nnlite.optimize_for_inference(nxo.load(model.SerializeToString()))
    wt = (w.T if trans_b else w).astype(np.float64)
    xs = [rand(n, 37) for n in (1, 2, 3, 4)]
    for xn in xs:
        fast(xn)                  # planned (the plan's dry run may use NumPy) and bound

    def no_matmul(*args, **kwargs):
        raise AssertionError("np.matmul called")
    monkeypatch.setattr(np, "matmul", no_matmul)
    for xn in xs:
        want = np.maximum(0.75 * (xn.astype(np.float64) @ wt) + b, 0)
        np.testing.assert_allclose(fast(xn).data, want, rtol=1e-5, atol=1e-5)


def test_matmul_batched():
    inits = {"w": rand(4, 6)}
    x = rand(2, 3, 4)
    check(build([oh.make_node("MatMul", ["x", "w"], ["y"])], [("x", x)], inits), [("x", x)])


@pytest.mark.parametrize("opset, axis", [(11, 1), (13, 1), (13, -1), (11, -1), (11, 0)])
def test_softmax_opset_semantics(opset, axis):
    """Before opset 13 Softmax normalises over the flattened block of dims [axis:]; from 13
    along ``axis`` only (onnx's reference evaluator applies the new rule to old opsets too)."""
    x = rand(2, 3, 4)
    node = oh.make_node("Softmax", ["x"], ["y"], axis=axis)
    ax = axis % 3
    z = x.astype(np.float64)
    if opset < 13:
        z2 = z.reshape(int(np.prod(x.shape[:ax])), -1)
        e = np.exp(z2 - z2.max(axis=1, keepdims=True))
        expected = (e / e.sum(axis=1, keepdims=True)).reshape(x.shape)
    else:
        e = np.exp(z - z.max(axis=ax, keepdims=True))
        expected = e / e.sum(axis=ax, keepdims=True)
    check(build([node], [("x", x)], opset=opset), [("x", x)], expected=[expected], ort=True)


# ------------------------------------------------------------------------------ pad/constant
@pytest.mark.parametrize("mode, pads", [("constant", [0, 0, 1, 2, 0, 0, 2, 1]),
                                        ("reflect", [0, 0, 1, 2, 0, 0, 2, 1]),
                                        ("edge", [0, 0, 2, 0, 0, 0, 1, 3]),
                                        ("constant", [0, 0, -1, 1, 0, 0, 1, -2])])
def test_pad(mode, pads):
    x = rand(1, 2, 4, 5)
    inits = {"p": np.array(pads, np.int64), "v": np.array(0.5, np.float32)}
    ins = ["x", "p", "v"] if mode == "constant" else ["x", "p"]
    node = oh.make_node("Pad", ins, ["y"], mode=mode)
    if min(pads) < 0:  # negative pads crop (the onnx reference evaluator cannot do this)
        crop = x[:, :, 1:, :3]                                  # H begin -1, W end -2
        expected = [np.pad(crop, [(0, 0), (0, 0), (0, 1), (1, 0)], constant_values=0.5)]
    else:
        expected = None
    check(build([node], [("x", x)], inits), [("x", x)], expected=expected, ort=True)


def test_constant_nodes_are_folded():
    k = onh.from_array(rand(3, 1, 1), "k")
    nodes = [oh.make_node("Constant", [], ["c"], value=k),
             oh.make_node("Constant", [], ["s"], value_float=2.0),
             oh.make_node("Mul", ["x", "c"], ["m"]), oh.make_node("Add", ["m", "s"], ["y"])]
    x = rand(2, 3, 2, 2)
    mod = nxo.load(build(nodes, [("x", x)]).SerializeToString())
    assert "Constant" not in mod.graph.op_counts()
    check(build(nodes, [("x", x)]), [("x", x)])


# ------------------------------------------------------------------------------ detection
@pytest.mark.parametrize("mode", ["half_pixel", "output_half_pixel"])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_roi_align(mode, sampling_ratio):
    x = rand(2, 3, 8, 9)
    rois = np.array([[0.5, 0.5, 5.6, 4.4], [1, 1, 7, 7], [-2, -2, 3, 3], [2, 2, 2.2, 2.2]],
                    np.float32)
    bidx = np.array([0, 1, 1, 0], np.int64)
    node = oh.make_node("RoiAlign", ["x", "rois", "bi"], ["y"], output_height=2,
                        output_width=3, sampling_ratio=sampling_ratio, spatial_scale=0.5,
                        coordinate_transformation_mode=mode)
    check(build([node], [("x", x), ("rois", rois), ("bi", bidx)]),
          [("x", x), ("rois", rois), ("bi", bidx)], rtol=1e-4, atol=1e-5)


def test_roi_align_spec_vector():
    """docs/semantics.md §8.7: x = arange(36) on 6x6, box (0.5,0.5,3.6,4.4), 2x2, aligned=False."""
    x = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)
    rois, bidx = np.array([[0.5, 0.5, 3.6, 4.4]], np.float32), np.array([0], np.int64)
    node = oh.make_node("RoiAlign", ["x", "rois", "bi"], ["y"], output_height=2,
                        output_width=2, sampling_ratio=0,
                        coordinate_transformation_mode="output_half_pixel")
    check(build([node], [("x", x), ("rois", rois), ("bi", bidx)]),
          [("x", x), ("rois", rois), ("bi", bidx)],
          expected=[np.array([10.125, 11.675, 21.825, 23.375], np.float32).reshape(1, 1, 2, 2)])


def test_max_roi_pool_spec_vectors():
    """docs/semantics.md §7.6 worked values (x = arange(36) on 6x6, output 2x2)."""
    x = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)
    rois = np.array([[0, 0.5, 0.5, 3.6, 4.4], [0, 4, 4, 2, 2], [0, 10, 10, 12, 12],
                     [0, 0, 0, 4, 4]], np.float32)
    expected = np.array([[14, 16, 26, 28], [28, 28, 28, 28], [0, 0, 0, 0], [14, 16, 26, 28]],
                        np.float32).reshape(4, 1, 2, 2)
    node = oh.make_node("MaxRoiPool", ["x", "rois"], ["y"], pooled_shape=[2, 2])
    check(build([node], [("x", x), ("rois", rois)]), [("x", x), ("rois", rois)],
          expected=[expected])


# ------------------------------------------------------------------------------ module API
def test_module_state_dict_inputs_and_autograd():
    w, b = rand(4, 3, 3, 3), rand(4)
    nodes = [oh.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], pads=[1, 1, 1, 1]),
             oh.make_node("Relu", ["c"], ["y"])]
    model = build(nodes, [("x", rand(1, 3, 5, 5))], {"conv.weight": w, "conv.bias": b})
    mod = nxo.load(model.SerializeToString())
    assert mod.input_names == ["x"] and mod.output_names == ["y"]
    assert list(mod.state_dict()) == ["conv.weight", "conv.bias"]
    mod.requires_grad_()
    out = mod(nnlite.tensor(rand(1, 3, 5, 5)))
    out.sum().backward()
    grads = dict(mod.named_parameters())
    assert grads["conv.weight"].grad.shape == w.shape
    assert "Conv" in repr(mod)


def test_load_from_path_and_errors_on_inputs(tmp_path):
    x = rand(1, 3, 4, 4)
    model = build([oh.make_node("Relu", ["x"], ["y"])], [("x", x)])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    mod = nxo.load(path)
    np.testing.assert_array_equal(mod(x).data, np.maximum(x, 0))
    with pytest.raises(TypeError, match=r"takes 1 input\(s\) \['x'\], got 2"):
        mod(x, x)
    with pytest.raises(ValueError, match=r"expects shape \(1, 3, 4, 4\), got \(1, 3, 4, 5\)"):
        mod(rand(1, 3, 4, 5))
    with pytest.raises(TypeError, match="expects dtype float32, got float64"):
        mod(x.astype(np.float64))
    fast = nnlite.optimize_for_inference(mod)
    with pytest.raises(ValueError, match="expects 4 dimensions"):
        fast(rand(3, 4, 4))


# ------------------------------------------------------------------------------ errors
def test_unsupported_ops_and_attributes_listed_together():
    nodes = [oh.make_node("LSTM", ["x", "w", "r"], ["l"], hidden_size=2),
             oh.make_node("Acos", ["x"], ["e1"]), oh.make_node("Acos", ["e1"], ["e2"]),
             oh.make_node("Conv", ["x", "w4"], ["c"], kernel_shape=[1, 1], weird=3),
             oh.make_node("MaxPool", ["x"], ["m"], kernel_shape=[2, 2], storage_order=2),
             oh.make_node("Resize", ["x", "", "sc"], ["y"], mode="area")]
    inits = {"w": rand(1, 8, 4), "r": rand(1, 8, 2), "w4": rand(2, 4, 1, 1),
             "sc": np.ones(4, np.float32)}
    model = build(nodes, [("x", rand(1, 4, 3, 3))], inits)
    with pytest.raises(nxo.OnnxImportError) as info:
        nxo.load(model.SerializeToString())
    text = str(info.value)
    for part in ("5 problems", "'LSTM' is not supported", "'Acos' is not supported (2 nodes",
                 "attribute weird=3", "storage_order=2", "mode='area' is not one of"):
        assert part in text, (part, text)


@pytest.mark.parametrize("elem", [TP.FLOAT16, TP.BFLOAT16, TP.STRING])
def test_graph_inputs_of_types_nnlite_does_not_compute_are_refused_at_import(elem):
    # refused when loaded (as the README says), not at the first call
    graph = oh.make_graph([oh.make_node("Identity", ["x"], ["y"])], "g",
                          [oh.make_tensor_value_info("x", elem, [2]),
                           oh.make_tensor_value_info("ok", TP.INT64, [2])],
                          [oh.make_tensor_value_info("y", elem, None)])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(nxo.OnnxImportError, match="graph input 'x': .* not supported") as info:
        nxo.load(model.SerializeToString())
    assert "'ok'" not in str(info.value)


def test_custom_domain_and_old_opset_rejected():
    node = oh.make_node("MyOp", ["x"], ["y"], domain="com.example")
    graph = oh.make_graph([node], "g", [_value_info("x", rand(1))],
                          [oh.make_tensor_value_info("y", TP.FLOAT, None)])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17),
                                                oh.make_opsetid("com.example", 1)])
    with pytest.raises(nxo.OnnxImportError, match="com.example::MyOp"):
        nxo.load(model.SerializeToString())
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("com.example", 1)])
    with pytest.raises(nxo.OnnxImportError, match="declares no default-domain opset"):
        nxo.load(model.SerializeToString())
    future = build([oh.make_node("Relu", ["x"], ["y"])], [("x", rand(1))],
                   opset=onnx.defs.onnx_opset_version() + 1)
    with pytest.raises(nxo.OnnxImportError, match="newer than the newest"):
        nxo.load(future.SerializeToString())
    x = rand(5)
    old = build([oh.make_node("Relu", ["x"], ["y"])], [("x", x)], opset=6)  # imports now
    assert np.array_equal(nxo.load(old.SerializeToString())(x).data, np.maximum(x, 0))


def test_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        nxo.load(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe not protobuf at all \x00\x01")
    with pytest.raises(nxo.OnnxImportError, match="not an ONNX model"):
        nxo.load(junk)
    model = build([oh.make_node("Conv", ["x", "w"], ["y"])], [("x", rand(1, 2, 4, 4))],
                  {"w": rand(3, 2, 3, 3)})
    data = model.SerializeToString()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(nxo.OnnxImportError):
        nxo.load(cut)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(nxo.OnnxImportError, match="no graph"):
        nxo.load(empty)


def test_dangling_input_reported():
    model = build([oh.make_node("Add", ["x", "nowhere"], ["y"])], [("x", rand(2))])
    with pytest.raises(nxo.OnnxImportError, match="nowhere"):
        nxo.load(model.SerializeToString())


def test_multiple_outputs_and_output_that_is_an_input():
    inits = {"w": rand(3, 3)}
    nodes = [oh.make_node("MatMul", ["x", "w"], ["m"]), oh.make_node("Relu", ["m"], ["r"]),
             oh.make_node("Sigmoid", ["m"], ["s"])]
    x = rand(2, 3)
    model = build(nodes, [("x", x)], inits, outputs=("r", "s", "x"))
    mod = nxo.load(model.SerializeToString())
    fast = nnlite.optimize_for_inference(mod)
    m = x @ inits["w"]
    for out in (mod(x), fast(x)):
        assert isinstance(out, tuple) and len(out) == 3
        np.testing.assert_allclose(out[0].data, np.maximum(m, 0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(out[1].data, 1 / (1 + np.exp(-m)), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(out[2].data, x)


def test_reshape_rejects_a_float_shape_tensor():
    x = rand(2, 3)
    node = oh.make_node("Reshape", ["x", "t"], ["y"])
    mod = nxo.load(build([node], [("x", x)], {"t": np.array([3.0, 2.0], np.float32)})
                   .SerializeToString())
    with pytest.raises(TypeError, match="shape input must be int64, got float32"):
        mod(x)


def test_resize_nearest_sizes_reads_exact_rows():
    # torch.onnx.export of F.interpolate(x, size=..., mode="nearest") with a dynamic size:
    # Resize(asymmetric, floor) with sizes. 100 -> 224: output rows 56, 112, 168 map exactly
    # to input rows 25, 50, 75; float64 row / (224 / 100) fell just below and read the row
    # before (ONNX Runtime and torch read the exact row)
    x = np.arange(100 * 3, dtype=np.float32).reshape(1, 1, 100, 3)
    node = oh.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest",
                        coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    model = build([node], [("x", x)], {"sizes": np.array([1, 1, 224, 3], np.int64)}, opset=13)
    rows = np.arange(224) * 100 // 224
    check(model, [("x", x)], expected=[x[:, :, rows]], rtol=0, atol=0)


@pytest.mark.parametrize("mode,ctm", [("linear", "asymmetric"), ("linear", "half_pixel"),
                                      ("cubic", "half_pixel")])
@pytest.mark.parametrize("scale", [3.3, 2.1, 1.1, 0.3, 0.7, 1.3, 2.2, 0.9])
def test_resize_scales_output_length_is_onnx_runtimes(scale, mode, ctm):
    # the output length floor(n * scale) with float32 scales (torch.onnx.export of
    # F.interpolate(scale_factor=s)): computed in float64, float32(3.3) * 10 = 32.9999995
    # floored to 32 rows where ONNX Runtime (a float32 product) and the shape torch's exporter
    # declares say 33; the next Concat/Add then failed. half_pixel runs on F.interpolate,
    # whose own length is the float64 one. Oracle: ONNX Runtime's output (a coordinate a
    # rounding away from an integer moves these modes' values by ~1e-7 only; lengths kept as
    # they are are left out: ONNX Runtime copies those, whatever the scale)
    pytest.importorskip("onnxruntime")
    for n in (1, 3, 7, 10, 13, 20, 30, 37):
        x = np.arange(n * 4, dtype=np.float32).reshape(1, 1, n, 4)
        node = oh.make_node("Resize", ["x", "", "s"], ["y"], mode=mode,
                            coordinate_transformation_mode=ctm)
        model = build([node], [("x", x)],
                      {"s": np.array([1, 1, scale, scale], np.float32)}, opset=13)
        expected = run_ort(model, [("x", x)])
        if 0 in expected[0].shape[2:] or n == expected[0].shape[2] or 4 == expected[0].shape[3]:
            continue   # a length kept: torch (F.interpolate) copies, ONNX Runtime interpolates
        check(model, [("x", x)], expected=expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("batch_dims", [0, 1])
def test_gather_nd(batch_dims):
    # torch.onnx's dynamo exporter writes advanced indexing (x[:, :, rows, cols], adaptive
    # pools to sizes that do not divide the input, 1-D interpolate) as GatherND
    x = rand(2, 3, 5, 4)
    if batch_dims == 0:
        idx = np.array([[[1, 2, -1], [0, 0, 3]], [[1, -3, 0], [0, 2, 2]]], np.int64)
    else:
        idx = np.array([[[2, 1], [-1, 0], [1, 3]], [[0, 0], [1, 2], [2, -4]]], np.int64)
    node = oh.make_node("GatherND", ["x", "i"], ["y"], batch_dims=batch_dims)
    model = build([node], [("x", x)], {"i": idx}, opset=13)
    check(model, [("x", x)], ort=True)
    model_in = build([node], [("x", x), ("i", idx)], opset=13)
    check(model_in, [("x", x), ("i", idx)], ort=True)
    bad = idx.copy()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match="out of range"):
        nxo.load(model_in.SerializeToString())(x, bad)
