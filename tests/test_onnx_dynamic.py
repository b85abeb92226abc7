"""Symbolic input dimensions: OCR-style graphs (opset 11/12, symbolic batch/height/width, shape
sub-graphs feeding Resize sizes and Reshape targets) run on any concrete shape, plain and through
``optimize_for_inference`` (one plan per input shape, shape sub-graphs folded at compile time),
against ONNX Runtime (skipped without it). Also: hostile shape ops fail before allocating.
"""
import numpy as np
import pytest

import nnlite

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as oh  # noqa: E402
from onnx import numpy_helper as onh  # noqa: E402

import nnlite.onnx as nxo  # noqa: E402
from fuzzing import memory_cap  # noqa: E402,F401

RNG = np.random.default_rng(7)


def _w(*shape, scale=None):
    fan = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return (RNG.standard_normal(shape) * (scale or np.sqrt(2.0 / fan))).astype(np.float32)


def _model(nodes, inits, in_dims, opset, out="y"):
    x = oh.make_tensor_value_info("x", TP.FLOAT, in_dims)
    y = oh.make_tensor_value_info(out, TP.FLOAT, None)
    g = oh.make_graph(nodes, "ocr", [x], [y], [onh.from_array(np.asarray(v), k)
                                              for k, v in inits.items()])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)])
    m.ir_version = 7
    return m


def detection_model():
    """DB-style text detector: hard-swish stem, depthwise block, ReLU6 (Clip inputs), an FPN
    merge whose nearest Resize takes its ``sizes`` from Shape -> Slice -> Concat, a ReduceMean /
    Pow / Sqrt side branch, ConvTranspose + bilinear Resize head, Sigmoid."""
    n = oh.make_node
    inits = {
        "w1": _w(8, 3, 3, 3), "b1": _w(8, scale=0.1),
        "bn_s": RNG.uniform(0.5, 1.5, 8).astype(np.float32), "bn_b": _w(8, scale=0.1),
        "bn_m": _w(8, scale=0.1), "bn_v": RNG.uniform(0.5, 1.5, 8).astype(np.float32),
        "w2": _w(8, 1, 3, 3), "w3": _w(16, 8, 1, 1), "w_lat": _w(16, 8, 1, 1),
        "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32),
        "two": np.array(2.0, np.float32), "wt": _w(16, 4, 2, 2), "bt": _w(4, scale=0.1),
        "s_beg": np.array([2], np.int64), "s_end": np.array([4], np.int64),
        "nc_beg": np.array([0], np.int64), "nc_end": np.array([2], np.int64),
        "scales": np.array([1, 1, 2, 2], np.float32), "empty": np.zeros(0, np.float32),
    }
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2],
          pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"]),
        n("HardSigmoid", ["bn"], ["hs"], alpha=1 / 6, beta=0.5),
        n("Mul", ["bn", "hs"], ["f1"]),                                   # hard-swish
        n("Conv", ["f1", "w2"], ["c2"], kernel_shape=[3, 3], strides=[2, 2],
          pads=[1, 1, 1, 1], group=8),
        n("Relu", ["c2"], ["r2"]),
        n("Conv", ["r2", "w3"], ["c3"], kernel_shape=[1, 1]),
        n("Clip", ["c3", "lo", "hi"], ["f3"]),                            # ReLU6
        n("Shape", ["f1"], ["sh1"]), n("Shape", ["f3"], ["sh3"]),
        n("Slice", ["sh1", "s_beg", "s_end"], ["hw1"]),
        n("Slice", ["sh3", "nc_beg", "nc_end"], ["nc3"]),
        n("Concat", ["nc3", "hw1"], ["sizes"], axis=0),
        n("Resize", ["f3", "empty", "empty", "sizes"], ["up"], mode="nearest",
          coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        n("Conv", ["f1", "w_lat"], ["lat"], kernel_shape=[1, 1]),
        n("Add", ["lat", "up"], ["merged"]),
        n("ReduceMean", ["merged"], ["mean"], axes=[1], keepdims=1),
        n("Pow", ["mean", "two"], ["sq"]), n("Sqrt", ["sq"], ["absmean"]),
        n("Add", ["merged", "absmean"], ["m2"]),
        n("ConvTranspose", ["m2", "wt", "bt"], ["ct"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Resize", ["ct", "empty", "scales"], ["big"], mode="linear",
          coordinate_transformation_mode="half_pixel"),
        n("Sigmoid", ["big"], ["y"]),
    ]
    return _model(nodes, inits, ["N", 3, "H", "W"], 11)


def recognition_model():
    """CRNN-style recogniser head: convs with height stride, a Reshape whose target comes from
    Shape -> Gather -> Unsqueeze -> Concat, Transpose, MatMul, Softmax over classes."""
    n = oh.make_node
    inits = {
        "w1": _w(8, 3, 3, 3), "w2": _w(8, 8, 3, 3), "fc": _w(32, 11, scale=0.3),
        "i0": np.array(0, np.int64), "i3": np.array(3, np.int64),
        "m1": np.array([-1], np.int64), "perm_dummy": np.array([0], np.int64),
    }
    nodes = [
        n("Conv", ["x", "w1"], ["c1"], kernel_shape=[3, 3], strides=[2, 1], pads=[1, 1, 1, 1]),
        n("LeakyRelu", ["c1"], ["a1"], alpha=0.1),
        n("MaxPool", ["a1"], ["p1"], kernel_shape=[2, 1], strides=[2, 1]),
        n("Conv", ["p1", "w2"], ["c2"], kernel_shape=[3, 3], strides=[2, 1], pads=[1, 1, 1, 1]),
        n("HardSigmoid", ["c2"], ["g2"], alpha=0.2, beta=0.5),      # Paddle's hard-swish
        n("Mul", ["c2", "g2"], ["a2"]),
        n("Shape", ["a2"], ["sh"]),
        n("Gather", ["sh", "i0"], ["nb"], axis=0), n("Gather", ["sh", "i3"], ["wd"], axis=0),
        n("Unsqueeze", ["nb"], ["nb1"], axes=[0]), n("Unsqueeze", ["wd"], ["wd1"], axes=[0]),
        n("Concat", ["nb1", "m1", "wd1"], ["target"], axis=0),
        n("Reshape", ["a2", "target"], ["seq"]),                # (N, C*H, W)
        n("Transpose", ["seq"], ["tseq"], perm=[0, 2, 1]),      # (N, W, C*H)
        n("MatMul", ["tseq", "fc"], ["logits"]),
        n("Softmax", ["logits"], ["y"], axis=2),
    ]
    return _model(nodes, inits, ["N", 3, 32, "W"], 12)


def _ort(model, x):
    ort = pytest.importorskip("onnxruntime")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _close(got, ref, rtol=1e-4):
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert np.abs(got - ref).max() <= rtol * np.abs(ref).max() + 1e-6


@pytest.mark.parametrize("build,shapes", [
    (detection_model, [(1, 3, 32, 48), (2, 3, 40, 24), (1, 3, 17, 23)]),
    (recognition_model, [(1, 3, 32, 40), (3, 3, 32, 17), (1, 3, 32, 1)]),
])
def test_symbolic_shapes_plain_and_optimized_match_onnxruntime(build, shapes):
    model = build()
    mod = nxo.load(model.SerializeToString())
    assert any(d is None for d in mod.graph.inputs[0].shape)
    fast = nnlite.optimize_for_inference(mod)
    for shape in shapes:
        x = RNG.standard_normal(shape).astype(np.float32)
        ref = _ort(model, x)
        _close(mod(x).data, ref)
        _close(fast(x).data, ref)
    assert len(fast.plans) == len(shapes)          # one compiled plan per input shape
    x = RNG.standard_normal(shapes[0]).astype(np.float32)
    _close(fast(x).data, _ort(model, x))           # the cached plan again
    assert len(fast.plans) == len(shapes)
    for key in fast.plans:
        ops = {node.op for node, _, _ in fast._plans[key][0].steps}
        # the shape sub-graph was evaluated at compile time: none of it runs per call
        assert not ops & {"Shape", "Gather", "Slice", "Unsqueeze", "Concat"}, ops


def test_symbolic_shape_mismatch_is_a_clear_error():
    mod = nxo.load(recognition_model().SerializeToString())
    with pytest.raises(ValueError, match="expects shape"):
        mod(np.zeros((1, 3, 31, 8), np.float32))   # the height is fixed at 32
    with pytest.raises(ValueError, match="4 dimensions"):
        mod(np.zeros((3, 32, 8), np.float32))


# ------------------------------------------------------------------------------ hostile sizes
def _shape_model(nodes, inits, x_shape=(2, 3)):
    return _model(nodes, inits, list(x_shape), 17)


HOSTILE = {
    "ConstantOfShape": ([oh.make_node("ConstantOfShape", ["s"], ["c"]),
                         oh.make_node("Add", ["x", "c"], ["y"])],
                        {"s": np.array([2 ** 31, 2 ** 31], np.int64)}),
    "Expand": ([oh.make_node("Expand", ["x", "s"], ["y"])],
               {"s": np.array([2 ** 20, 2 ** 20, 2, 3], np.int64)}),
    "Tile": ([oh.make_node("Tile", ["x", "r"], ["y"])],
             {"r": np.array([2 ** 30, 2 ** 30], np.int64)}),
    "Range": ([oh.make_node("Range", ["a", "b", "d"], ["r"]),
               oh.make_node("ReduceSum", ["r"], ["s"], keepdims=0),
               oh.make_node("Add", ["x", "s"], ["y"])],
              {"a": np.array(0.0, np.float32), "b": np.array(1e15, np.float32),
               "d": np.array(1.0, np.float32)}),
    "Resize": ([oh.make_node("Resize", ["x", "", "sc"], ["y"])],
               {"sc": np.array([1e6, 1e6], np.float32)}),
    "Pad": ([oh.make_node("Pad", ["x", "p"], ["y"])],
            {"p": np.array([2 ** 31, 0, 2 ** 31, 0], np.int64)}),
    "negative Expand": ([oh.make_node("Expand", ["x", "s"], ["y"])],
                        {"s": np.array([-2, 3], np.int64)}),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_shape_ops_fail_before_allocating(case, memory_cap):  # noqa: F811
    nodes, inits = HOSTILE[case]
    model = _shape_model(nodes, inits)
    mod = nxo.load(model.SerializeToString())
    x = np.ones((2, 3), np.float32)
    op = case.split()[-1]
    with pytest.raises(ValueError, match=op):
        mod(x)
    with pytest.raises(ValueError, match=op):
        nnlite.optimize_for_inference(mod)(x)


BROADCAST_BOMBS = {
    "Add": [oh.make_node("Range", ["z", "n", "one"], ["r"]),
            oh.make_node("Unsqueeze", ["r", "ax1"], ["col"]),
            oh.make_node("Unsqueeze", ["r", "ax0"], ["row"]),
            oh.make_node("Add", ["col", "row"], ["big"]),
            oh.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
            oh.make_node("Add", ["x", "s"], ["y"])],
    "ConvTranspose": [oh.make_node("ConvTranspose", ["x4", "w"], ["y"], kernel_shape=[1, 1],
                                   output_shape=[2 ** 21, 2 ** 21])],
}


@pytest.mark.parametrize("case", sorted(BROADCAST_BOMBS))
def test_broadcast_and_output_shape_bombs(case, memory_cap):  # noqa: F811
    """Moderate inputs whose broadcast (2^20 x 2^20) or requested output shape would need
    terabytes: a ValueError naming the op, before any allocation."""
    inits = {"z": np.array(0.0, np.float32), "n": np.array(2.0 ** 20, np.float32),
             "one": np.array(1.0, np.float32), "ax0": np.array([0], np.int64),
             "ax1": np.array([1], np.int64), "w": np.ones((1, 1, 1, 1), np.float32)}
    nodes = BROADCAST_BOMBS[case]
    if case == "ConvTranspose":
        x = oh.make_tensor_value_info("x4", TP.FLOAT, [1, 1, 2, 2])
        g = oh.make_graph(nodes, "g", [x], [oh.make_tensor_value_info("y", TP.FLOAT, None)],
                          [onh.from_array(inits["w"], "w")])
        model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
        arr = np.ones((1, 1, 2, 2), np.float32)
    else:
        model = _shape_model(nodes, inits)
        arr = np.ones((2, 3), np.float32)
    mod = nxo.load(model.SerializeToString())
    with pytest.raises(ValueError, match=case):
        mod(arr)


_BAD = {
    "Resize negative sizes": ([oh.make_node("Resize", ["x", "", "", "s"], ["y"])],
                              {"s": np.array([2, -3], np.int64)}),
    "Resize zero scale": ([oh.make_node("Resize", ["x", "", "s"], ["y"])],
                          {"s": np.array([1, 0], np.float32)}),
    "Resize both": ([oh.make_node("Resize", ["x", "", "s", "z"], ["y"])],
                    {"s": np.array([1, 2], np.float32), "z": np.array([2, 6], np.int64)}),
    "Resize wrong count": ([oh.make_node("Resize", ["x", "", "s"], ["y"])],
                           {"s": np.array([1, 2, 3], np.float32)}),
    "Split sizes": ([oh.make_node("Split", ["x", "s"], ["y", "z"], axis=1)],
                    {"s": np.array([2, 2], np.int64)}),
    "Split uneven": ([oh.make_node("Split", ["x"], ["y", "z"], axis=1)], {}),
    "Slice zero step": ([oh.make_node("Slice", ["x", "a", "b", "c", "d"], ["y"])],
                        {"a": np.array([0], np.int64), "b": np.array([2], np.int64),
                         "c": np.array([1], np.int64), "d": np.array([0], np.int64)}),
    "Slice axis": ([oh.make_node("Slice", ["x", "a", "b", "c"], ["y"])],
                   {"a": np.array([0], np.int64), "b": np.array([2], np.int64),
                    "c": np.array([5], np.int64)}),
    "TopK k": ([oh.make_node("TopK", ["x", "k"], ["y", "i"])], {"k": np.array([9], np.int64)}),
    "Gather range": ([oh.make_node("Gather", ["x", "i"], ["y"], axis=1)],
                     {"i": np.array([3], np.int64)}),
    "GatherElements range": ([oh.make_node("GatherElements", ["x", "i"], ["y"], axis=1)],
                             {"i": np.array([[0, 7, 1]] * 2, np.int64)}),
    "GatherElements shape": ([oh.make_node("GatherElements", ["x", "i"], ["y"], axis=1)],
                             {"i": np.zeros((3, 3, 3), np.int64)}),
    "Tile negative": ([oh.make_node("Tile", ["x", "r"], ["y"])],
                      {"r": np.array([-1, 2], np.int64)}),
    "Tile rank": ([oh.make_node("Tile", ["x", "r"], ["y"])], {"r": np.array([2], np.int64)}),
    "Range zero delta": ([oh.make_node("Range", ["a", "a", "a"], ["r"]),
                          oh.make_node("Add", ["x", "r"], ["y"])],
                         {"a": np.array(0.0, np.float32)}),
    "Expand incompatible": ([oh.make_node("Expand", ["x", "s"], ["y"])],
                            {"s": np.array([4, 3], np.int64)}),
    "Reshape float target": ([oh.make_node("Reshape", ["x", "s"], ["y"])],
                             {"s": np.array([6.0], np.float32)}),
    "Squeeze non-1": ([oh.make_node("Squeeze", ["x", "a"], ["y"])],
                      {"a": np.array([0], np.int64)}),
    "Unsqueeze axis": ([oh.make_node("Unsqueeze", ["x", "a"], ["y"])],
                       {"a": np.array([7], np.int64)}),
    "Transpose perm": ([oh.make_node("Transpose", ["x"], ["y"], perm=[0, 0])], {}),
    "Concat rank": ([oh.make_node("Concat", ["x", "c"], ["y"], axis=0)],
                    {"c": np.zeros((2, 3, 1), np.float32)}),
    "Pad length": ([oh.make_node("Pad", ["x", "p"], ["y"])], {"p": np.array([1, 1], np.int64)}),
    "Pad reflect too far": ([oh.make_node("Pad", ["x", "p"], ["y"], mode="reflect")],
                            {"p": np.array([0, 9, 0, 9], np.int64)}),
    "DepthToSpace": ([oh.make_node("DepthToSpace", ["x"], ["y"], blocksize=2)], {}),
    "LRN rank": ([oh.make_node("LRN", ["x"], ["y"], size=3)], {}),
    "MatMul shapes": ([oh.make_node("MatMul", ["x", "m"], ["y"])],
                      {"m": np.zeros((2, 5), np.float32)}),
    "Where shapes": ([oh.make_node("Where", ["c", "x", "x"], ["y"])],
                     {"c": np.ones((4,), bool)}),
    "Cast float16": ([oh.make_node("Cast", ["x"], ["y"], to=10)], {}),
    "ConstantOfShape float": ([oh.make_node("ConstantOfShape", ["s"], ["y"])],
                              {"s": np.array([2.0], np.float32)}),
    "GroupNorm groups": ([oh.make_node("GroupNormalization", ["x", "g", "g"], ["y"],
                                       num_groups=2)], {"g": np.ones(2, np.float32)}),
    "MaxPool 3-D kernel": ([oh.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2, 2])], {}),
    "Conv 3-D weight": ([oh.make_node("Conv", ["x", "w"], ["y"])],
                        {"w": np.ones((1, 1, 1, 1, 1), np.float32)}),
    "Conv 1-D on 2-D input": ([oh.make_node("Conv", ["x", "w"], ["y"])],
                              {"w": np.ones((1, 2, 1), np.float32)}),
    "ArgMax axis": ([oh.make_node("ArgMax", ["x"], ["y"], axis=4)], {}),
    "Softmax axis": ([oh.make_node("Softmax", ["x"], ["y"], axis=-3)], {}),
}


@pytest.mark.parametrize("case", sorted(_BAD))
def test_bad_attributes_and_inputs_raise_clear_errors(case):
    """Every malformed node gives an OnnxImportError at load or a ValueError/TypeError naming
    the node at run time (plain and optimized) -- never another exception type or a crash."""
    nodes, inits = _BAD[case]
    model = _shape_model(nodes, inits)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    try:
        mod = nxo.load(model.SerializeToString())
    except nxo.OnnxImportError as exc:
        assert str(exc)
        return
    for runner in (mod, nnlite.optimize_for_inference(mod)):
        with pytest.raises((ValueError, TypeError)):
            runner(x)


@pytest.mark.parametrize("threads", [1, 2])
def test_split_conv_read_later_in_its_own_branch(threads):
    """Regression: the planner balances an Inception-style branch group by splitting its
    heaviest conv across the two lanes; when a later step of the same branch reads that conv's
    output, splitting it let that step read channels the other lane had not written yet (with
    one thread: never in this call -- stale values of the previous call). Such convs are not
    split now. Fresh inputs each call, compared with the plain module."""
    n = oh.make_node
    inits = {"wa": _w(64, 16, 1, 1), "wb": _w(96, 64, 3, 3), "wc": _w(16, 96, 1, 1),
             "wd": _w(8, 16, 1, 1)}
    nodes = [n("Conv", ["x", "wa"], ["a"], kernel_shape=[1, 1]), n("Relu", ["a"], ["ar"]),
             n("Conv", ["ar", "wb"], ["b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             n("Relu", ["b"], ["br"]),
             n("Conv", ["br", "wc"], ["c"], kernel_shape=[1, 1]), n("Relu", ["c"], ["cr"]),
             n("Conv", ["x", "wd"], ["d"], kernel_shape=[1, 1]), n("Relu", ["d"], ["dr"]),
             n("Concat", ["cr", "dr"], ["y"], axis=1)]
    mod = nxo.load(_model(nodes, inits, [1, 16, 14, 14], 13).SerializeToString())
    with nnlite.num_threads(threads) if hasattr(nnlite, "num_threads") else _threads(threads):
        fast = nnlite.optimize_for_inference(mod)
        for seed in range(3):
            x = np.random.default_rng(seed).standard_normal((1, 16, 14, 14)).astype(np.float32)
            ref = mod(x).data
            got = fast(x).data
            assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


class _threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = nnlite.get_num_threads()
        nnlite.set_num_threads(self.n)

    def __exit__(self, *exc):
        nnlite.set_num_threads(self.old)


# ------------------------------------------------------------------- shape values as inputs
def _graph(nodes, inputs, out_type=TP.FLOAT, opset=13):
    vis = [oh.make_tensor_value_info(n, oh.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
           for n, a in inputs]
    g = oh.make_graph(nodes, "g", vis, [oh.make_tensor_value_info("y", out_type, None)])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)])
    m.ir_version = 7
    return m


_X = np.arange(24, dtype=np.float32).reshape(6, 4)
_I = (lambda *v: np.array(v, np.int64))
# graphs whose output shape (or which elements land where) follows the values of an integer
# input, each with the values of several calls of one plan shape
SHAPE_VALUE_CASES = {
    "Reshape": ([oh.make_node("Reshape", ["x", "s"], ["y"])], [("x", _X), ("s", _I(4, 6))],
                [_I(4, 6), _I(6, 4), _I(24, 1), _I(2, -1)]),
    "Slice": ([oh.make_node("Slice", ["x", "a", "b"], ["y"])],
              [("x", _X), ("a", _I(0)), ("b", _I(3))], [(_I(0), _I(3)), (_I(2), _I(3)),
                                                        (_I(1), _I(4)), (_I(-2), _I(6))]),
    "TopK": ([oh.make_node("TopK", ["x", "k"], ["y", "i"], axis=0)], [("x", _X), ("k", _I(2))],
             [_I(2), _I(5), _I(1)]),
    # opset 10's Resize takes its scales second (11+: after the roi)
    "Resize-10 scales": ([oh.make_node("Resize", ["x", "sc"], ["y"], mode="nearest")],
                         [("x", _X[None, None]), ("sc", np.ones(4, np.float32))],
                         [np.array(v, np.float32) for v in
                          ((1, 1, 1, 1), (1, 1, 2, 0.5), (1, 1, 0.5, 2))], 10),
    "Expand via Add": ([oh.make_node("Add", ["s", "one"], ["t"]),
                        oh.make_node("Expand", ["x", "t"], ["y"])],
                       [("x", _X[:1]), ("s", _I(1, 3)), ("one", _I(0, 1))],
                       [(_I(1, 3), _I(0, 1)), (_I(2, 3), _I(0, 1)), (_I(4, 1), _I(0, 3))]),
}


@pytest.mark.parametrize("case", list(SHAPE_VALUE_CASES))
def test_plans_follow_the_values_of_shape_inputs(case):
    # one input shape, several values of an input that decides the output's shape: each call
    # against ONNX Runtime (a plan keyed on shapes alone reused the first call's shapes)
    ort = pytest.importorskip("onnxruntime")
    nodes, inputs, calls, *opset = SHAPE_VALUE_CASES[case]
    model = _graph(nodes, inputs, opset=opset[0] if opset else 13)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    mod = nxo.load(model.SerializeToString())
    fast = nnlite.optimize_for_inference(mod)
    names = [n for n, _ in inputs]
    assert fast._value_inputs == list(range(1, len(inputs)))
    for values in calls:
        values = values if isinstance(values, tuple) else (values,)
        arrays = [inputs[0][1], *values]
        ref = sess.run(None, dict(zip(names, arrays)))[0]
        for m in (mod, fast, fast):   # the second fast call: the cached plan
            got = m(*arrays)
            got = (got[0] if isinstance(got, tuple) else got).data
            assert got.shape == ref.shape
            np.testing.assert_array_equal(got, ref)


def test_shape_inputs_are_those_reaching_a_shape_operand():
    from nnlite._infer.dryrun import shape_inputs

    nodes = [oh.make_node("Shape", ["x"], ["sx"]),            # x's shape only: not keyed
             oh.make_node("Reshape", ["x", "sx"], ["r"]),
             oh.make_node("Gather", ["r", "idx"], ["g"], axis=0),   # indices: data only
             oh.make_node("Add", ["k", "k"], ["k2"]),
             oh.make_node("TopK", ["g", "k2"], ["y", "i"], axis=0)]
    inputs = [("x", _X), ("idx", _I(0, 1)), ("k", _I(1))]
    graph = nxo.load(_graph(nodes, inputs).SerializeToString()).graph
    assert shape_inputs(graph) == [2]


def test_a_fallback_whose_shape_changes_is_an_error_not_a_broadcast(monkeypatch):
    # the plan's last guard: a node run by the Tensor executor whose result no longer has the
    # compiled shape raises (np.copyto broadcast a 1-row slice into the 3-row buffer)
    from nnlite._infer import plan as plan_mod
    from nnlite._infer.kernels import PlanError

    monkeypatch.setattr(plan_mod, "shape_inputs", lambda graph: [])
    nodes, inputs, _ = SHAPE_VALUE_CASES["Slice"]
    fast = nnlite.optimize_for_inference(nxo.load(_graph(nodes, inputs).SerializeToString()))
    assert fast._value_inputs == []
    fast(_X, _I(0), _I(3))
    with pytest.raises(PlanError, match=r"shape \(1, 4\) in this run, \(3, 4\)"):
        fast(_X, _I(2), _I(3))
