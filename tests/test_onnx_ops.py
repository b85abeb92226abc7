"""ONNX ops added for issue #14 against ONNX Runtime (an independent implementation), on odd
shapes and attribute combinations beyond onnx's own node tests: Resize's every mode, 1-D
conv/pool, MaxPool indices, LRN with even sizes, ... Plain and optimized paths both run.
Skipped without onnx / onnxruntime.
"""
import itertools
import warnings

import numpy as np
import pytest

import nnlite

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as oh  # noqa: E402
from onnx import numpy_helper as onh  # noqa: E402

import nnlite.onnx as nxo  # noqa: E402

RNG = np.random.default_rng(11)


def _build(nodes, inputs, inits=None, opset=19, outputs=("y",), out_types=None):
    out_types = dict(out_types or {})
    if inputs and inputs[0][1].dtype != np.float32:
        out_types.setdefault("y", oh.np_dtype_to_tensor_dtype(inputs[0][1].dtype))
    vis = [oh.make_tensor_value_info(n, oh.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
           for n, a in inputs]
    outs = [oh.make_tensor_value_info(o, out_types.get(o, TP.FLOAT), None) for o in outputs]
    g = oh.make_graph(nodes, "g", vis, outs, [onh.from_array(np.asarray(v), k)
                                             for k, v in (inits or {}).items()])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)])
    m.ir_version = 9
    return m


def _ort(model, inputs):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, dict(inputs))


def _check(model, inputs, rtol=1e-5, atol=1e-6, optimized=True):
    ref = _ort(model, inputs)
    mod = nxo.load(model.SerializeToString())
    arrays = [a for _, a in inputs]
    runs = [("plain", mod)] + ([("optimized", nnlite.optimize_for_inference(mod))]
                               if optimized else [])
    for tag, m in runs:
        out = m(*arrays)
        outs = out if isinstance(out, tuple) else (out,)
        for o, r in zip(outs, ref):
            o = o.data
            assert o.shape == r.shape and o.dtype == r.dtype, (tag, o.shape, r.shape, o.dtype)
            np.testing.assert_allclose(o, r, rtol=rtol, atol=atol, err_msg=tag)
    return ref


# ------------------------------------------------------------------------------ Resize
_CTM = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
        "tf_half_pixel_for_nn", "half_pixel_symmetric")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _resize_case(x, mode, ctm, by, target, **attrs):
    inits = {}
    ins = ["x", "", ""]
    if by == "scales":
        inits["sc"] = np.asarray(target, np.float32)
        ins[2] = "sc"
    else:
        inits["sz"] = np.asarray(target, np.int64)
        ins = ["x", "", "", "sz"]
    node = oh.make_node("Resize", ins, ["y"], mode=mode,
                        coordinate_transformation_mode=ctm, **attrs)
    return _build([node], [("x", x)], inits)


@pytest.mark.parametrize("ctm,nearest", list(itertools.product(_CTM, _NEAREST)))
def test_resize_nearest_every_mode(ctm, nearest):
    x = RNG.standard_normal((1, 2, 4, 8)).astype(np.float32)
    # binary-exact scales, integral scale x length: float32 and float64 coordinate arithmetic
    # agree on every tie
    for by, target in (("scales", [1, 1, 1.75, 0.625]), ("sizes", [1, 2, 9, 3]),
                       ("scales", [1, 1, 3.0, 2.0])):
        if ctm == "tf_half_pixel_for_nn" and by == "sizes":
            continue
        model = _resize_case(x, "nearest", ctm, by, target, nearest_mode=nearest)
        if ctm == "tf_half_pixel_for_nn":      # removed from Resize in opset 13
            node = model.graph.node[0]
            node.input[1] = "roi"              # required before opset 13
            model.graph.initializer.append(onh.from_array(np.zeros(0, np.float32), "roi"))
            model.opset_import[0].version = 11
        _check(model, [("x", x)])


@pytest.mark.parametrize("mode,ctm", list(itertools.product(("linear", "cubic"), _CTM[:4] +
                                                             ("half_pixel_symmetric",))))
@pytest.mark.parametrize("antialias", [0, 1])
def test_resize_linear_cubic_every_coordinate_mode(mode, ctm, antialias):
    x = RNG.standard_normal((2, 1, 6, 8)).astype(np.float32)
    # scale x length integral: ONNX Runtime uses the rounded output length in align_corners
    # where the ONNX reference (and nnlite) use scale x length (test below)
    for by, target in (("scales", [1, 1, 1.5, 0.375]), ("sizes", [2, 1, 4, 13]),
                       ("scales", [1, 1, 0.5, 2.0])):
        for extra in ({}, {"exclude_outside": 1, "cubic_coeff_a": -0.5}):
            if extra and mode != "cubic":
                continue
            model = _resize_case(x, mode, ctm, by, target, antialias=antialias, **extra)
            _check(model, [("x", x)], rtol=1e-4, atol=1e-5)


def test_resize_align_corners_uses_the_unrounded_length_as_the_onnx_reference():
    from onnx.reference import ReferenceEvaluator

    x = RNG.standard_normal((1, 1, 6, 9)).astype(np.float32)
    for mode in ("nearest", "linear", "cubic"):
        model = _resize_case(x, mode, "align_corners", "scales", [1, 1, 1.5, 0.45])
        ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
        got = nxo.load(model.SerializeToString())(x).data
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_resize_tf_crop_and_resize_roi_and_extrapolation():
    x = RNG.standard_normal((1, 1, 7, 6)).astype(np.float32)
    roi = np.array([0, 0, -0.2, 0.3, 1, 1, 0.9, 1.4], np.float32)
    for mode in ("nearest", "linear", "cubic"):
        node = oh.make_node("Resize", ["x", "roi", "", "sz"], ["y"], mode=mode,
                            coordinate_transformation_mode="tf_crop_and_resize",
                            extrapolation_value=-3.5)
        model = _build([node], [("x", x)], {"roi": roi, "sz": np.array([1, 1, 5, 8], np.int64)})
        _check(model, [("x", x)], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
def test_resize_axes_and_keep_aspect_ratio(policy):
    x = RNG.standard_normal((1, 2, 6, 10)).astype(np.float32)
    node = oh.make_node("Resize", ["x", "", "", "sz"], ["y"], mode="linear", axes=[3, 2],
                        keep_aspect_ratio_policy=policy)
    model = _build([node], [("x", x)], {"sz": np.array([7, 9], np.int64)})
    _check(model, [("x", x)], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset,mode", [(10, "nearest"), (10, "linear"), (11, "nearest")])
def test_resize_old_versions(opset, mode):
    x = RNG.standard_normal((1, 3, 4, 5)).astype(np.float32)
    if opset == 10:
        node = oh.make_node("Resize", ["x", "sc"], ["y"], mode=mode)
        model = _build([node], [("x", x)], {"sc": np.array([1, 1, 2.5, 1.5], np.float32)}, 10)
    else:
        node = oh.make_node("Resize", ["x", "roi", "sc"], ["y"], mode=mode)
        model = _build([node], [("x", x)], {"sc": np.array([1, 1, 0.5, 2.0], np.float32),
                                            "roi": np.zeros(0, np.float32)}, 11)
    _check(model, [("x", x)])


def test_upsample_opset9():
    x = RNG.standard_normal((1, 2, 3, 4)).astype(np.float32)
    for mode in ("nearest", "linear"):
        node = oh.make_node("Upsample", ["x", "sc"], ["y"], mode=mode)
        model = _build([node], [("x", x)], {"sc": np.array([1, 1, 2, 3], np.float32)}, 9)
        _check(model, [("x", x)])


# ------------------------------------------------------------------------------ 1-D windows
@pytest.mark.parametrize("k,s,d,pads,group,c", [
    (3, 2, 1, (1, 2), 1, 4), (5, 1, 2, (4, 0), 2, 4), (1, 3, 1, (0, 0), 4, 4),
    (4, 3, 2, (3, 3), 1, 1)])
def test_conv_and_conv_transpose_1d(k, s, d, pads, group, c):
    x = RNG.standard_normal((2, c, 11)).astype(np.float32)
    w = RNG.standard_normal((8, c // group, k)).astype(np.float32)
    b = RNG.standard_normal(8).astype(np.float32)
    node = oh.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[k], strides=[s],
                        dilations=[d], pads=list(pads), group=group)
    _check(_build([node], [("x", x)], {"w": w, "b": b}), [("x", x)], rtol=1e-4, atol=1e-4)
    wt = RNG.standard_normal((c, 8 // group, k)).astype(np.float32)
    node = oh.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[k], strides=[s],
                        dilations=[d], pads=list(pads), group=group,
                        output_padding=[min(s, d) - 1])
    _check(_build([node], [("x", x)], {"w": wt}), [("x", x)], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "LpPool"])
@pytest.mark.parametrize("ceil", [0, 1])
def test_pools_1d(op, ceil):
    x = RNG.standard_normal((1, 3, 10)).astype(np.float32)
    attrs = dict(kernel_shape=[3], strides=[2], pads=[1, 2], ceil_mode=ceil)
    if op == "MaxPool":
        attrs["dilations"] = [2]
    if op == "AveragePool":
        attrs["count_include_pad"] = 1
    node = oh.make_node(op, ["x"], ["y"], **attrs)
    _check(_build([node], [("x", x)]), [("x", x)], rtol=1e-5)


@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int8])
def test_maxpool_indices_and_integer_data(order, dtype):
    x = RNG.integers(-60, 120, (2, 3, 7, 6)).astype(dtype)
    attrs = dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], storage_order=order)
    outs = ("y", "i") if dtype == np.float32 else ("y",)
    node = oh.make_node("MaxPool", ["x"], list(outs), **attrs)
    model = _build([node], [("x", x)], outputs=outs, opset=12, out_types={"i": TP.INT64})
    _check(model, [("x", x)], atol=0)


# ------------------------------------------------------------------------------ others
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_lrn_odd_and_even_sizes(size):
    """Odd sizes vs ONNX Runtime; even sizes (which ONNX Runtime refuses, and where the ONNX
    reference loops over the batch instead of the channels) vs a loop over the spec's formula:
    window [c - floor((n-1)/2), c + ceil((n-1)/2)], y = x / (bias + alpha/n * sum x^2)^beta."""
    x = RNG.standard_normal((2, 6, 3, 2)).astype(np.float32)
    node = oh.make_node("LRN", ["x"], ["y"], size=size, alpha=0.3, beta=0.6, bias=1.5)
    model = _build([node], [("x", x)])
    if size % 2:
        _check(model, [("x", x)], rtol=1e-5)
        return
    xd = x.astype(np.float64)
    ref = np.empty_like(xd)
    for c in range(x.shape[1]):
        lo, hi = max(0, c - (size - 1) // 2), min(x.shape[1] - 1, c + size // 2)
        sq = (xd[:, lo:hi + 1] ** 2).sum(axis=1)
        ref[:, c] = xd[:, c] / (1.5 + 0.3 / size * sq) ** 0.6
    mod = nxo.load(model.SerializeToString())
    for m in (mod, nnlite.optimize_for_inference(mod)):
        np.testing.assert_allclose(m(x).data, ref, rtol=1e-5, atol=1e-6)


def test_hard_swish_pair_is_one_node_and_exact():
    x = (RNG.standard_normal((2, 3, 4)) * 5).astype(np.float32)
    nodes = [oh.make_node("HardSigmoid", ["x"], ["g"], alpha=1 / 6, beta=0.5),
             oh.make_node("Mul", ["g", "x"], ["y"])]
    model = _build(nodes, [("x", x)], opset=13)
    assert nxo.load(model.SerializeToString()).graph.op_counts() == {"HardSwish": 1}
    _check(model, [("x", x)], rtol=1e-6)
    # Paddle's alpha=0.2 gate is not hard-swish: kept as two nodes
    nodes[0] = oh.make_node("HardSigmoid", ["x"], ["g"], alpha=0.2, beta=0.5)
    model = _build(nodes, [("x", x)], opset=13)
    assert nxo.load(model.SerializeToString()).graph.op_counts() == {"HardSigmoid": 1, "Mul": 1}
    _check(model, [("x", x)], rtol=1e-6)


def test_sparse_constant():
    values = onh.from_array(np.array([1.5, -2.0, 4.0], np.float32), "v")
    indices = onh.from_array(np.array([1, 5, 6], np.int64), "i")
    sparse = oh.make_sparse_tensor(values, indices, [2, 4])
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    nodes = [oh.make_node("Constant", [], ["c"], sparse_value=sparse),
             oh.make_node("Add", ["x", "c"], ["y"])]
    _check(_build(nodes, [("x", x)], opset=13), [("x", x)])


def test_clip_forms_and_integer_clip():
    x = RNG.standard_normal((3, 4)).astype(np.float32) * 4
    _check(_build([oh.make_node("Clip", ["x"], ["y"], min=-1.0, max=2.5)], [("x", x)],
                  opset=6), [("x", x)])
    _check(_build([oh.make_node("Clip", ["x"], ["y"])], [("x", x)], opset=13), [("x", x)])
    _check(_build([oh.make_node("Clip", ["x", "", "hi"], ["y"])], [("x", x)],
                  {"hi": np.array(0.5, np.float32)}, 13), [("x", x)])
    xi = RNG.integers(-50, 50, (3, 4)).astype(np.int32)
    _check(_build([oh.make_node("Clip", ["x", "lo", "hi"], ["y"])], [("x", xi)],
                  {"lo": np.array(-5, np.int32), "hi": np.array(7, np.int32)}, 13), [("x", xi)])


def test_slice_negative_steps_and_gather_elements_negative_indices():
    x = RNG.standard_normal((5, 6, 7)).astype(np.float32)
    inits = {"st": np.array([-1, 5, 2 ** 40], np.int64), "en": np.array([-2 ** 40, 0, 1], np.int64),
             "ax": np.array([0, 2, 1], np.int64), "sp": np.array([-2, -3, -1], np.int64)}
    node = oh.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])
    _check(_build([node], [("x", x)], inits, 13), [("x", x)])
    idx = RNG.integers(-6, 6, (5, 3, 7)).astype(np.int64)
    node = oh.make_node("GatherElements", ["x", "i"], ["y"], axis=1)
    _check(_build([node], [("x", x)], {"i": idx}, 13), [("x", x)])


@pytest.mark.parametrize("axis,shape", [(1, (1, 2)), (1, (2, 1)), (0, (1, 3)), (0, (5, 1)),
                                        (-1, (2, 2))])
def test_gather_elements_indices_smaller_than_the_data(axis, shape):
    # the output takes the indices' shape; along the other axes they read the data's leading
    # elements (not the indices broadcast to the data's extent)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    idx = RNG.integers(-x.shape[axis], x.shape[axis], shape).astype(np.int64)
    node = oh.make_node("GatherElements", ["x", "i"], ["y"], axis=axis)
    _check(_build([node], [("x", x)], {"i": idx}, 13), [("x", x)])


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
@pytest.mark.parametrize("shape,pads", [((4,), [1, 2]), ((3, 4), [1, 1, 2, 1]),
                                        ((1, 2, 3, 4), [0, 1, 0, 0, 0, 1, 0, 0]),
                                        ((2, 3, 4, 5), [1, 2, 0, 1, 1, 0, 3, 2]),
                                        ((3, 3), [0, -1, 2, 1])])
def test_pad_non_constant_modes_on_any_axes(mode, shape, pads):
    # ONNX pads any axes in every mode (PyTorch's F.pad takes 1-3 trailing axes of a 1-2 more
    # dimensional input in the non-constant modes); negative pads crop first
    x = RNG.standard_normal(shape).astype(np.float32)
    node = oh.make_node("Pad", ["x", "p"], ["y"], mode=mode)
    _check(_build([node], [("x", x)], {"p": np.array(pads, np.int64)}, 19), [("x", x)])


@pytest.mark.parametrize("shape", [(2, 3, 1), (1, 3, 1, 1), (2, 3, 4)])
def test_instance_normalization_one_spatial_element(shape):
    # one element per instance: mean = the element, variance 0, so the output is the bias
    # (F.instance_norm refuses such an input, as PyTorch does; ONNX defines it)
    x = RNG.standard_normal(shape).astype(np.float32)
    x.flat[0] = np.nan
    inits = {"s": RNG.standard_normal(3).astype(np.float32),
             "b": RNG.standard_normal(3).astype(np.float32)}
    node = oh.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3)
    _check(_build([node], [("x", x)], inits, 17), [("x", x)])


def test_topk_ties_and_split_uneven():
    x = np.array([[3, 1, 3, 2, 3, 0, 1]], np.float32)
    for largest in (0, 1):
        node = oh.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=largest)
        _check(_build([node], [("x", x)], {"k": np.array([4], np.int64)}, 13,
                      outputs=("v", "i"), out_types={"i": TP.INT64}), [("x", x)])
    node = oh.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3)
    _check(_build([node], [("x", x)], opset=18, outputs=("a", "b", "c")), [("x", x)])


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
                                "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare",
                                "ReduceLogSumExp"])
@pytest.mark.parametrize("opset", [11, 18])
def test_reductions_attr_and_input_axes(op, opset):
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    input_axes = opset >= 18 or (op == "ReduceSum" and opset >= 13)
    for axes, keep in (([0, -1], 1), ([1], 0)):
        if input_axes:
            node = oh.make_node(op, ["x", "ax"], ["y"], keepdims=keep)
            model = _build([node], [("x", x)], {"ax": np.array(axes, np.int64)}, opset)
        else:
            node = oh.make_node(op, ["x"], ["y"], axes=axes, keepdims=keep)
            model = _build([node], [("x", x)], opset=opset)
        _check(model, [("x", x)], rtol=1e-5)


@pytest.mark.parametrize("c_shape,folds", [((4, 1, 1), True), ((1, 4, 1, 1), True),
                                           ((1,), True), ((4,), False), ((1, 1, 4), False)])
def test_batchnorm_scale_layer_folds_only_when_per_channel(c_shape, folds):
    """Caffe2-style BatchNormalization -> Mul(c) -> Add(d) -> Relu after a Conv: with c, d one
    value per channel the plan is a single fused conv; c broadcasting along another axis (shape
    (4,) meets W = 4) must not fold. Values vs ONNX Runtime either way."""
    x = RNG.standard_normal((2, 3, 5, 4)).astype(np.float32)
    inits = {"w": RNG.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "s": RNG.uniform(0.5, 1.5, 4).astype(np.float32),
             "b": RNG.standard_normal(4).astype(np.float32),
             "m": RNG.standard_normal(4).astype(np.float32),
             "v": RNG.uniform(0.5, 1.5, 4).astype(np.float32),
             "c": RNG.uniform(0.5, 2.0, c_shape).astype(np.float32),
             "d": RNG.standard_normal((1, 4, 1, 1)).astype(np.float32)}
    nodes = [oh.make_node("Conv", ["x", "w"], ["h"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             oh.make_node("BatchNormalization", ["h", "s", "b", "m", "v"], ["bn"]),
             oh.make_node("Mul", ["bn", "c"], ["sc"]), oh.make_node("Add", ["d", "sc"], ["sh"]),
             oh.make_node("Relu", ["sh"], ["y"])]
    model = _build(nodes, [("x", x)], inits, opset=13)
    _check(model, [("x", x)], rtol=1e-4, atol=1e-5)
    fast = nnlite.optimize_for_inference(nxo.load(model.SerializeToString()))
    text = fast.describe(x)
    assert text.startswith("1 steps (Conv+relu") == folds, text


def test_imported_graph_of_new_float_ops_is_differentiable():
    """OnnxModule runs float data through nnlite's differentiable ops: the gradient of a graph
    chaining many of the new ops matches float64 central differences."""
    from gradcheck import check_grad

    x = RNG.standard_normal((1, 4, 4, 6))
    inits = {"sl_st": np.array([0, 5], np.int64), "sl_en": np.array([4, 0], np.int64),
             "sl_ax": np.array([1, 3], np.int64), "sl_sp": np.array([1, -1], np.int64),
             "sc": np.array([1, 1, 1.5, 1.5], np.float32), "e": np.array(2.0),
             "s4": np.linspace(0.5, 1.5, 4), "b4": np.linspace(-0.2, 0.3, 4),
             "slope": np.array([0.1, 0.2, 0.3, 0.4]).reshape(4, 1, 1),
             "ax3": np.array([3], np.int64)}
    n = oh.make_node
    nodes = [n("LeakyRelu", ["x"], ["a"], alpha=0.2), n("Slice", ["a", "sl_st", "sl_en",
                                                                  "sl_ax", "sl_sp"], ["b"]),
             n("Resize", ["b", "", "sc"], ["c"], mode="linear"),
             n("InstanceNormalization", ["c", "s4", "b4"], ["d"]),
             n("HardSigmoid", ["d"], ["g"], alpha=1 / 6, beta=0.5), n("Mul", ["d", "g"], ["h"]),
             n("Sigmoid", ["h"], ["i"]), n("PRelu", ["i", "slope"], ["j"]),
             n("Split", ["j"], ["k1", "k2"], axis=1, num_outputs=2),
             n("Pow", ["k1", "e"], ["k3"]), n("Elu", ["k2"], ["k4"]),
             n("Concat", ["k3", "k4"], ["k"], axis=1), n("ReduceMean", ["k", "ax3"], ["m"]),
             n("Softplus", ["m"], ["y"])]
    vis = [oh.make_tensor_value_info("x", TP.DOUBLE, list(x.shape))]
    g = oh.make_graph(nodes, "g", vis, [oh.make_tensor_value_info("y", TP.DOUBLE, None)],
                      [onh.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 18)])
    model.ir_version = 9
    from onnx.reference import ReferenceEvaluator  # ONNX Runtime has no float64 Resize

    ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
    mod = nxo.load(model.SerializeToString())
    np.testing.assert_allclose(mod(x).data, ref, rtol=1e-7, atol=1e-9)
    check_grad(lambda t: mod(t), [x], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("slope_shape", [(1,), (3, 1, 1), (1, 3, 1, 1), (5,), (4, 5),
                                         (2, 3, 4, 5)])
def test_prelu_slope_broadcasting(slope_shape):
    """ONNX broadcasts PRelu's slope from the right: (5,) is along W, (3, 1, 1) per channel."""
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    slope = RNG.uniform(0.05, 0.5, slope_shape).astype(np.float32)
    node = oh.make_node("PRelu", ["x", "s"], ["y"])
    _check(_build([node], [("x", x)], {"s": slope}, opset=16), [("x", x)], rtol=1e-6)
    if slope_shape == (5,):   # (3,) would align with W = 5: not broadcastable (ORT agrees)
        bad = _build([node], [("x", x)], {"s": slope[:3]}, opset=16)
        with pytest.raises(ValueError):
            nxo.load(bad.SerializeToString())(x)


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("ctm", ["half_pixel", "output_half_pixel"])
@pytest.mark.parametrize("ratio", [0, 2])
def test_roi_align_modes(mode, ctm, ratio):
    """Boxes partly outside the image, two batch entries, non-unit spatial scale."""
    x = RNG.standard_normal((2, 3, 10, 9)).astype(np.float32)
    rois = np.array([[0.5, 1.2, 6.3, 8.1], [2, 0, 8.9, 4.4], [-1, -2, 3, 3]], np.float32)
    node = oh.make_node("RoiAlign", ["x", "r", "b"], ["y"], mode=mode, output_height=3,
                        output_width=4, sampling_ratio=ratio, spatial_scale=0.8,
                        coordinate_transformation_mode=ctm)
    model = _build([node], [("x", x)], {"r": rois, "b": np.array([0, 1, 1], np.int64)}, 16)
    _check(model, [("x", x)], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_global_lp_pool(p):
    x = RNG.standard_normal((2, 3, 5, 4)).astype(np.float32)
    _check(_build([oh.make_node("GlobalLpPool", ["x"], ["y"], p=p)], [("x", x)], opset=16),
           [("x", x)], rtol=1e-5)


def test_errors_name_the_node_once_and_softmax_of_inf_warns_nothing():
    x = np.ones((1, 2, 3, 3), np.float32)
    node = oh.make_node("Conv", ["x", "w"], ["y"], name="c1")
    model = _build([node], [("x", x)], {"w": np.ones((1, 3, 1, 1), np.float32)}, 13)
    with pytest.raises(ValueError) as info:
        nxo.load(model.SerializeToString())(x)
    assert str(info.value).count("'c1'") == 1, str(info.value)
    with pytest.raises(ValueError) as info:
        nnlite.optimize_for_inference(nxo.load(model.SerializeToString()))(x)
    assert str(info.value).count("'c1'") == 1, str(info.value)
    # inf - inf inside the softmax: NaN as ONNX Runtime gives, and no RuntimeWarning
    x = np.array([[np.inf, 1, 2], [1, 2, 3]], np.float32)
    model = _build([oh.make_node("Softmax", ["x"], ["y"], axis=1)], [("x", x)], opset=13)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = _check(model, [("x", x)])
    assert np.isnan(ref[0][0]).all() and np.isfinite(ref[0][1]).all()
