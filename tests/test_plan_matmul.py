"""The inference plan's MatMul: operands read through views, scale / bias / output transpose
fused (``passes._fuse_matmuls``), and the GELU spellings fused into one node
(``passes._fuse_gelus``).

Oracles: NumPy itself for the view arithmetic (``view_layout`` must predict exactly which step
sequences NumPy can replay without a copy, and the strides it gets); onnx's ReferenceEvaluator
and the plain OnnxModule (NumPy matmul on copied operands, no planner) for whole graphs;
PyTorch for an exported transformer encoder layer. The plan's steps are checked as well, so a
pass that silently stops fusing (or fuses what it must not) fails here.
"""
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnlite
from nnlite._infer import kernels as K
from nnlite._infer import passes

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as oh  # noqa: E402
from onnx import numpy_helper as onh  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import nnlite.onnx as nxo  # noqa: E402
import plan_checks  # noqa: E402
from plan_checks import make_model  # noqa: E402

RNG = np.random.default_rng(37)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------ view arithmetic vs NumPy
def _numpy_replay(a, steps):
    """The steps by NumPy alone; (result, whether every step stayed a view)."""
    view = True
    for step in steps:
        if step[0] == "T":
            a = a.transpose(step[1])
        elif step[0] == "S":
            a = a[(slice(None),) * step[1] + (slice(step[2], step[3]),)]
        else:
            b = a.reshape(step[1])
            view = view and (b.size == 0 or np.shares_memory(a, b))
            a = b
    return a, view


@st.composite
def view_chains(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    steps, cur = [], shape
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from("TSR"))
        if kind == "T":
            perm = tuple(draw(st.permutations(range(len(cur)))))
            steps.append(("T", perm))
            cur = tuple(cur[p] for p in perm)
        elif kind == "S":
            axis = draw(st.integers(0, len(cur) - 1))
            start = draw(st.integers(0, cur[axis]))
            stop = draw(st.integers(start, cur[axis]))
            steps.append(("S", axis, start, stop))
            cur = cur[:axis] + (stop - start,) + cur[axis + 1:]
        else:
            # a random factorisation of the size, with 1s sprinkled in
            size = int(np.prod(cur))
            new = []
            while size > 1:
                f = draw(st.sampled_from([d for d in range(2, size + 1) if size % d == 0]))
                new.append(f)
                size //= f
            for _ in range(draw(st.integers(0, 2))):
                new.insert(draw(st.integers(0, len(new))), 1)
            if not new or int(np.prod(cur)) == 0:
                new = list(cur)
            steps.append(("R", tuple(new)))
            cur = tuple(new)
    return shape, tuple(steps)


@settings(max_examples=300, deadline=None)
@given(view_chains())
def test_view_layout_predicts_numpy(chain):
    shape, steps = chain
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    got, is_view = _numpy_replay(a, steps)
    layout = K.view_layout(shape, steps)
    if got.size == 0:
        return
    assert (layout is not None) == is_view, (shape, steps)
    if layout is None:
        return
    assert layout[0] == got.shape
    for d, s_pred, s_np in zip(got.shape, layout[1], got.strides):
        if d > 1:
            assert s_pred * a.itemsize == s_np, (shape, steps, layout, got.strides)
    v = K.operand_view(a, steps)
    assert np.shares_memory(v, a) and np.array_equal(v, got)


def test_view_layout_refuses_a_copying_reshape():
    # (2, 3, 4) transposed to (3, 2, 4), strides (4, 12, 1): merging two axes needs a copy,
    # splitting one does not
    assert K.view_layout((2, 3, 4), (("T", (1, 0, 2)), ("R", (6, 4)))) is None
    assert K.view_layout((2, 3, 4), (("T", (1, 0, 2)), ("R", (3, 8)))) is None
    assert K.view_layout((2, 3, 4), (("T", (1, 0, 2)), ("R", (3, 2, 2, 2)))) == \
        ((3, 2, 2, 2), (4, 12, 2, 1))
    with pytest.raises(RuntimeError, match="cannot be viewed"):
        K.operand_view(np.zeros((2, 3, 4)), (("T", (1, 0, 2)), ("R", (6, 4))))


# ------------------------------------------------------------------ whole graphs
def run_all(model, feeds, rtol=1e-5, atol=1e-5):
    return plan_checks.run_all(model, feeds, rtol, atol)[0]


def ops(plan):
    return [n.op for n, _, _ in plan.steps]


def matmul_attrs(plan):
    return [n.attrs for n, _, _ in plan.steps if n.op == K.MATMUL_OP]


def attention_model(L, E, H, out_transpose=True, scale_first=True, bias_first=True):
    """q, k, v split out of one projection (Reshape, Transpose, Split, Squeeze), k transposed,
    scores scaled, softmax, heads merged back (Transpose, Reshape), output projection: the
    graph torch.onnx writes for self-attention."""
    d = E // H
    inits = {"wqkv": rand(E, 3 * E) * 0.2, "bqkv": rand(3 * E), "wo": rand(E, E) * 0.2,
             "bo": rand(E), "shape5": np.array([1, L, 3, H, d], np.int64),
             "split": np.array([1, 1, 1], np.int64), "ax0": np.array([0], np.int64),
             "scale": np.array(d ** -0.5, np.float32), "shape3": np.array([1, L, E], np.int64)}
    add = ["bqkv", "p"] if bias_first else ["p", "bqkv"]
    nodes = [oh.make_node("MatMul", ["x", "wqkv"], ["p"]),
             oh.make_node("Add", add, ["pb"]),
             oh.make_node("Reshape", ["pb", "shape5"], ["r5"]),
             oh.make_node("Transpose", ["r5"], ["t5"], perm=[2, 0, 3, 1, 4]),
             oh.make_node("Split", ["t5", "split"], ["s0", "s1", "s2"], axis=0),
             oh.make_node("Squeeze", ["s0", "ax0"], ["q"]),
             oh.make_node("Squeeze", ["s1", "ax0"], ["k"]),
             oh.make_node("Squeeze", ["s2", "ax0"], ["v"]),
             oh.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2])]
    if scale_first:
        nodes += [oh.make_node("MatMul", ["q", "kt"], ["s"]),
                  oh.make_node("Mul", ["s", "scale"], ["ss"])]
    else:   # the scale on q: nothing to fuse after the product
        nodes += [oh.make_node("Mul", ["q", "scale"], ["qs"]),
                  oh.make_node("MatMul", ["qs", "kt"], ["ss"])]
    nodes += [oh.make_node("Softmax", ["ss"], ["a"], axis=-1),
              oh.make_node("MatMul", ["a", "v"], ["o4"])]
    if out_transpose:
        nodes += [oh.make_node("Transpose", ["o4"], ["o4t"], perm=[0, 2, 1, 3]),
                  oh.make_node("Reshape", ["o4t", "shape3"], ["o3"])]
    else:
        nodes += [oh.make_node("Reshape", ["o4", "shape3"], ["o3"])]
    nodes += [oh.make_node("MatMul", ["o3", "wo"], ["z"]),
              oh.make_node("Add", ["z", "bo"], ["y"])]
    return make_model(nodes, [("x", (1, L, E))], inits)


@pytest.mark.parametrize("L,E,H", [(7, 16, 2), (33, 24, 3), (1, 8, 1), (65, 64, 4)])
@pytest.mark.parametrize("variant", ["torch", "scale on q", "bias second", "no out transpose"])
def test_attention_runs_without_copies(L, E, H, variant, monkeypatch):
    monkeypatch.setattr(passes, "FUSE_ATTENTION", False)    # the products' views alone
    model = attention_model(L, E, H, out_transpose=variant != "no out transpose",
                            scale_first=variant != "scale on q",
                            bias_first=variant != "bias second")
    plan = run_all(model, [("x", rand(1, L, E))], rtol=2e-5, atol=2e-5)
    steps = ops(plan)
    attrs = matmul_attrs(plan)
    assert steps.count(K.MATMUL_OP) == 4 and "Add" not in steps, steps
    assert attrs[1]["view_b"]                                  # k^T read in place
    if variant == "scale on q":
        # q feeds a Mul: the split stays for it (its other outputs unwritten), the rest fuses
        assert steps.count("Transpose") == 1 and steps.count("Split") == 1, steps
        assert "view_a" not in attrs[1] and "alpha" not in attrs[1]
    else:
        # nothing left but the products and the softmax
        assert steps == [K.MATMUL_OP, K.MATMUL_OP, "Softmax", K.MATMUL_OP, K.MATMUL_OP], steps
        assert attrs[1]["view_a"]                              # q read in place
        assert attrs[1]["alpha"] == pytest.approx((E // H) ** -0.5)
    assert attrs[2]["view_b"]                                  # v read in place
    if variant != "no out transpose":
        assert attrs[2]["out_perm"] == (0, 2, 1, 3)


def test_attention_threads_give_the_same_bits():
    model = attention_model(40, 32, 4)
    x = rand(1, 40, 32)
    mod = nnlite.optimize_for_inference(nxo.load(model.SerializeToString()))
    outs, saved = [], nnlite.get_num_threads()
    try:
        for t in (1, 2, 3):
            nnlite.set_num_threads(t)
            outs.append(mod(x).data.copy())
    finally:
        nnlite.set_num_threads(saved)
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_values_read_elsewhere_are_not_absorbed():
    # k^T is also a graph output and the scores feed two consumers: both stay steps
    inits = {"scale": np.array(0.5, np.float32), "bias": rand(6)}
    nodes = [oh.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             oh.make_node("MatMul", ["q", "kt"], ["s"]),
             oh.make_node("Mul", ["s", "scale"], ["ss"]),
             oh.make_node("Add", ["ss", "bias"], ["y"]),
             oh.make_node("Relu", ["ss"], ["y2"])]
    model = make_model(nodes, [("q", (2, 5, 3)), ("k", (2, 6, 3))], inits,
                       outputs=("y", "y2", "kt"))
    plan = run_all(model, [("q", rand(2, 5, 3)), ("k", rand(2, 6, 3))])
    steps = ops(plan)
    assert "Transpose" in steps and "Add" in steps, steps
    attrs = matmul_attrs(plan)
    assert attrs == [{"alpha": 0.5}], attrs     # the Mul, read by nothing else, still joins


@pytest.mark.parametrize("ia,ib", [(0, 1), (2, -1), (-3, 1)])
def test_gathered_operands_are_views(ia, ib):
    # nn.MultiheadAttention's export picks q, k, v out of one tensor by Gather(scalar index)
    inits = {"ia": np.array(ia, np.int64), "ib": np.array(ib, np.int64),
             "i2": np.array([0], np.int64)}
    nodes = [oh.make_node("Gather", ["x", "ia"], ["a"], axis=0),
             oh.make_node("Gather", ["x", "ib"], ["b0"], axis=0),
             oh.make_node("Transpose", ["b0"], ["b"], perm=[0, 2, 1]),
             oh.make_node("MatMul", ["a", "b"], ["y"]),
             # a gather by an index array is no view: it stays
             oh.make_node("Gather", ["x", "i2"], ["c"], axis=0),
             oh.make_node("Transpose", ["c"], ["ct"], perm=[0, 1, 3, 2]),
             oh.make_node("MatMul", ["ct", "c"], ["y2"])]
    plan = run_all(make_model(nodes, [("x", (3, 4, 5, 6))], inits, outputs=("y", "y2")),
                   [("x", rand(3, 4, 5, 6))])
    a0 = ia % 3
    b0 = ib % 3
    attrs = matmul_attrs(plan)
    assert attrs[0] == {"view_a": (("S", 0, a0, a0 + 1), ("R", (4, 5, 6))),
                        "view_b": (("S", 0, b0, b0 + 1), ("R", (4, 5, 6)), ("T", (0, 2, 1)))}
    assert ops(plan).count("Gather") == 1 and attrs[1] == {"view_a": (("T", (0, 1, 3, 2)),)}


@pytest.mark.parametrize("a_shape,b_shape", [
    ((3, 4, 5, 6), (6, 7)),          # rows of every item in one product, constant b packed
    ((2, 1, 5, 6), (3, 6, 7)),       # a broadcast over b's items
    ((2, 3, 5, 6), (1, 3, 6, 7)),
    ((4, 6), (6, 9)),
    ((3, 2, 6), (6, 1)),             # one column
    ((1, 2, 6), (6, 5)),             # two rows: the GEMM's unpacked few-row path
    ((2, 5, 0), (0, 4)),             # empty sums: the bias alone
])
def test_linear_layers_with_bias(a_shape, b_shape):
    const_b = len(b_shape) == 2
    inits = {"bias": rand(b_shape[-1])}
    inputs = [("a", a_shape)]
    feeds = [("a", rand(*a_shape))]
    if const_b:
        inits["b"] = rand(*b_shape)
    else:
        inputs.append(("b", b_shape))
        feeds.append(("b", rand(*b_shape)))
    nodes = [oh.make_node("MatMul", ["a", "b"], ["p"]), oh.make_node("Add", ["p", "bias"], ["y"])]
    plan = run_all(make_model(nodes, inputs, inits), feeds)
    assert ops(plan) == [K.MATMUL_OP], ops(plan)


@pytest.mark.parametrize("act", ["Relu", "Clip"])
@pytest.mark.parametrize("b_shape", [(6, 7), (2, 6, 7)])
def test_linear_layer_with_activation(act, b_shape):
    # the ReLU (ReLU6) fused into the bias Add before this pass goes with it into the GEMM
    inits = {"bias": rand(7), "lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}
    inputs, feeds = [("a", (2, 5, 6))], [("a", 4 * rand(2, 5, 6))]
    if len(b_shape) == 2:
        inits["b"] = rand(*b_shape)
    else:
        inputs.append(("b", b_shape))
        feeds.append(("b", rand(*b_shape)))
    nodes = [oh.make_node("MatMul", ["a", "b"], ["p"]), oh.make_node("Add", ["p", "bias"], ["q"]),
             oh.make_node(act, ["q", "lo", "hi"] if act == "Clip" else ["q"], ["y"])]
    plan = run_all(make_model(nodes, inputs, inits), feeds)
    assert ops(plan) == [K.MATMUL_OP], ops(plan)
    assert matmul_attrs(plan)[0]["activation"] == ("relu6" if act == "Clip" else "relu")


def test_bias_that_is_not_a_column_vector_stays_an_add():
    # a bias along the rows (shape (M, 1)) is not the GEMM's per-column vector
    inits = {"b": rand(6, 7), "bias": rand(5, 1)}
    nodes = [oh.make_node("MatMul", ["a", "b"], ["p"]), oh.make_node("Add", ["p", "bias"], ["y"])]
    plan = run_all(make_model(nodes, [("a", (2, 5, 6))], inits), [("a", rand(2, 5, 6))])
    assert "Add" in ops(plan), ops(plan)


def test_output_transpose_of_three_axes():
    # (2, 3, 5, 4) written as its (3, 5, 2, 4) transpose: a perm that is not its own inverse
    nodes = [oh.make_node("MatMul", ["a", "b"], ["p"]),
             oh.make_node("Transpose", ["p"], ["y"], perm=[1, 2, 0, 3])]
    plan = run_all(make_model(nodes, [("a", (2, 3, 5, 6)), ("b", (2, 3, 6, 4))], {}),
                   [("a", rand(2, 3, 5, 6)), ("b", rand(2, 3, 6, 4))])
    assert ops(plan) == [K.MATMUL_OP] and matmul_attrs(plan)[0]["out_perm"] == (1, 2, 0, 3)


def test_output_transpose_that_moves_the_last_axis_stays():
    nodes = [oh.make_node("MatMul", ["a", "b"], ["p"]),
             oh.make_node("Transpose", ["p"], ["y"], perm=[0, 2, 1])]
    plan = run_all(make_model(nodes, [("a", (2, 5, 6)), ("b", (2, 6, 3))], {}),
                   [("a", rand(2, 5, 6)), ("b", rand(2, 6, 3))])
    assert "Transpose" in ops(plan)


def test_matmul_of_float64_and_1d_operands():
    # float64 through the GEMM's double kernels; a rank-1 operand stays NumPy's matmul
    x = RNG.standard_normal((3, 4, 5))
    w = RNG.standard_normal((5,))
    vis = [oh.make_tensor_value_info("a", TP.DOUBLE, [3, 4, 5])]
    g = oh.make_graph([oh.make_node("Transpose", ["a"], ["at"], perm=[0, 2, 1]),
                       oh.make_node("MatMul", ["at", "a"], ["y"]),
                       oh.make_node("MatMul", ["a", "w"], ["y2"])], "g", vis,
                      [oh.make_tensor_value_info(o, TP.DOUBLE, None) for o in ("y", "y2")],
                      [onh.from_array(w, "w")])
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 10)
    fast = nnlite.optimize_for_inference(nxo.load(model.SerializeToString()))
    y, y2 = fast(x)
    np.testing.assert_allclose(y.data, np.swapaxes(x, 1, 2) @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y2.data, x @ w, rtol=1e-12, atol=1e-12)
    (plan, _), = fast._plans.values()
    assert matmul_attrs(plan) == [{"view_a": (("T", (0, 2, 1)),)}]


def test_fusion_switch_gives_the_unfused_plan(monkeypatch):
    model = attention_model(9, 16, 2)
    monkeypatch.setattr(passes, "FUSE_MATMULS", False)
    plan = run_all(model, [("x", rand(1, 9, 16))])
    assert K.MATMUL_OP not in ops(plan) and "Transpose" in ops(plan)


# ------------------------------------------------------------------ GELU
def gelu_nodes(spelling, half=0.5, root=2 ** 0.5):
    inits = {"one": np.array(1.0, np.float32), "half": np.array(half, np.float32)}
    if spelling.startswith("mul"):
        inits["c"] = np.array(1 / root, np.float32)
        nodes = [oh.make_node("Mul", ["x", "c"], ["d"])]
    elif spelling.startswith("cmul"):   # the constant first
        inits["c"] = np.array(1 / root, np.float32)
        nodes = [oh.make_node("Mul", ["c", "x"], ["d"])]
    else:
        inits["c"] = np.array(root, np.float32)
        nodes = [oh.make_node("Div", ["x", "c"], ["d"])]
    nodes += [oh.make_node("Erf", ["d"], ["e"]), oh.make_node("Add", ["e", "one"], ["a"])]
    order = spelling.split()[-1]
    if order == "(xa)h":
        nodes += [oh.make_node("Mul", ["x", "a"], ["m"]), oh.make_node("Mul", ["m", "half"], ["y"])]
    elif order == "x(ah)":
        nodes += [oh.make_node("Mul", ["a", "half"], ["m"]), oh.make_node("Mul", ["x", "m"], ["y"])]
    else:   # (xh)a
        nodes += [oh.make_node("Mul", ["x", "half"], ["m"]), oh.make_node("Mul", ["m", "a"], ["y"])]
    return nodes, inits


@pytest.mark.parametrize("spelling", ["div (xa)h", "div x(ah)", "div (xh)a", "mul (xa)h",
                                      "mul (xh)a", "cmul x(ah)"])
def test_gelu_spellings_fuse(spelling):
    nodes, inits = gelu_nodes(spelling)
    x = np.concatenate([np.linspace(-12, 12, 601, dtype=np.float32), rand(399)])
    x = np.concatenate([x, [0.0, -0.0, np.inf, -np.inf, np.nan]]).astype(np.float32)
    model = make_model(nodes, [("x", (x.size,))], inits)
    plan = run_all(model, [("x", x)], rtol=1e-6, atol=1e-7)
    assert ops(plan) == ["Gelu"], ops(plan)


@pytest.mark.parametrize("half,root", [(0.25, 2 ** 0.5), (0.5, 1.5)])
def test_gelu_lookalikes_stay_apart(half, root):
    nodes, inits = gelu_nodes("div (xa)h", half, root)
    x = rand(50)
    plan = run_all(make_model(nodes, [("x", (50,))], inits), [("x", x)])
    assert "Gelu" not in ops(plan), ops(plan)


def test_gelu_whose_inner_value_is_read_elsewhere_stays_apart():
    nodes, inits = gelu_nodes("div (xa)h")
    nodes.append(oh.make_node("Relu", ["e"], ["y2"]))
    plan = run_all(make_model(nodes, [("x", (20,))], inits, outputs=("y", "y2")),
                   [("x", rand(20))])
    assert "Gelu" not in ops(plan), ops(plan)


# ------------------------------------------------------------------ PyTorch's export
def test_exported_encoder_layer_matches_torch():
    torch = pytest.importorskip("torch")
    E, H, L = 32, 4, 19
    torch.manual_seed(0)

    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv, self.o = torch.nn.Linear(E, 3 * E), torch.nn.Linear(E, E)
            self.n1, self.n2 = torch.nn.LayerNorm(E), torch.nn.LayerNorm(E)
            self.f1, self.f2 = torch.nn.Linear(E, 4 * E), torch.nn.Linear(4 * E, E)

        def forward(self, x):
            B, n, _ = x.shape
            q, k, v = self.qkv(self.n1(x)).reshape(B, n, 3, H, E // H).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-1, -2) * (E // H) ** -0.5, -1)
            x = x + self.o((a @ v).transpose(1, 2).reshape(B, n, E))
            return x + self.f2(torch.nn.functional.gelu(self.f1(self.n2(x))))

    m = Enc().eval()
    x = torch.randn(1, L, E)
    f = io.BytesIO()
    torch.onnx.export(m, (x,), f, opset_version=17, dynamo=False)
    fast = nnlite.optimize_for_inference(nxo.load(f.getvalue()))
    got = fast(x.numpy()).data
    want = m(x).detach().numpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    (plan, _), = fast._plans.values()
    steps = ops(plan)
    assert "Gelu" in steps and "Transpose" not in steps and "Erf" not in steps, steps


# ------------------------------------------------------------------ fused attention
def _plan_outputs(model, feeds, fuse, monkeypatch, threads=None):
    monkeypatch.setattr(passes, "FUSE_ATTENTION", fuse)
    fast = nnlite.optimize_for_inference(nxo.load(model.SerializeToString()))
    saved = nnlite.get_num_threads()
    try:
        if threads:
            nnlite.set_num_threads(threads)
        out = fast(*feeds).data.copy()
    finally:
        nnlite.set_num_threads(saved)
    (plan, _), = fast._plans.values()
    return out, ops(plan)


@pytest.mark.parametrize("L,E,H", [(7, 16, 2), (66, 32, 1), (70, 32, 1), (129, 64, 4),
                                   (3, 8, 1), (5, 8, 1), (200, 16, 1)])
def test_fused_attention_gives_the_unfused_bits(L, E, H, monkeypatch):
    # query rows in blocks (a remainder of 1-4 rows joining the block before it, so that no
    # block takes the GEMM's few-row path): the same bits as the three steps
    model = attention_model(L, E, H)
    x = rand(1, L, E)
    ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
    fused, steps = _plan_outputs(model, [x], True, monkeypatch)
    plain, steps0 = _plan_outputs(model, [x], False, monkeypatch)
    assert steps == [K.MATMUL_OP, K.ATTENTION_OP, K.MATMUL_OP], steps
    assert K.ATTENTION_OP not in steps0 and "Softmax" in steps0
    np.testing.assert_allclose(fused, ref, rtol=2e-5, atol=2e-5)
    assert np.array_equal(fused, plain)
    for t in (1, 3):
        assert np.array_equal(_plan_outputs(model, [x], True, monkeypatch, t)[0], fused)


def test_fused_attention_block_edges():
    # the native call with explicit block sizes against NumPy in float64 and against the
    # unfused GEMM / softmax / GEMM bits; operands strided, v and q shared by the items; k^T
    # and v packed once per item, or (no room, one value short) by each block
    from nnlite import _attention
    from nnlite.kernels import rowops
    gemm = K._gemm_ext.gemm_strided
    fam = K._family()
    B, D, Dv, L = 3, 5, 7, 19
    for M, rb in [(13, 8), (12, 8), (9, 8), (4, 8), (1, 1), (30, 5), (16, 16)]:
        qs = rand(1, D, M).transpose(0, 2, 1)                     # column-major rows
        kt = rand(B, L, D).transpose(0, 2, 1)
        v = rand(1, L, Dv)
        q3 = np.broadcast_to(qs, (B, M, D))
        v3 = np.broadcast_to(v, (B, L, Dv))
        y = np.full((B, M, Dv), np.nan, np.float32)
        per = _attention.scores_per_thread(M, L, rb)
        packed = B * _attention.packed_per_item(D, L, Dv, fam)
        for nt, packs in ((1, None), (2, packed), (3, packed), (2, packed - 1)):
            scores = np.full(nt * per, np.nan, np.float32)
            y[...] = np.nan
            pk = None if packs is None else np.full(packs, np.nan, np.float32)
            _attention.attention(q3, kt, v3, y, 0.3, rb, scores, fam, nt, pk)
            s = np.empty((B, M, L), np.float32)
            gemm(qs, kt, s, 0.3, 0.0, None, 0, 0, 1, fam)
            rowops.softmax_lastaxis(s, out=s)
            want = np.empty_like(y)
            gemm(s, v, want, 1.0, 0.0, None, 0, 0, 1, fam)
            assert np.array_equal(y, want), (M, rb, nt)
            s64 = 0.3 * np.matmul(q3.astype(np.float64), kt.astype(np.float64))
            p = np.exp(s64 - s64.max(-1, keepdims=True))
            ref = np.matmul(p / p.sum(-1, keepdims=True), v3.astype(np.float64))
            np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_fused_attention_checks_its_arguments():
    from nnlite import _attention
    q, kt, v = rand(2, 3, 4), rand(2, 4, 5), rand(2, 5, 6)
    y = np.empty((2, 3, 6), np.float32)
    small = np.empty(_attention.scores_per_thread(3, 5, 8) - 1, np.float32)
    fam = K._family()
    with pytest.raises(ValueError, match="scores holds"):
        _attention.attention(q, kt, v, y, 1.0, 8, small, fam, 1)
    ok = np.empty(_attention.scores_per_thread(3, 5, 8), np.float32)
    with pytest.raises(ValueError, match="do not chain"):
        _attention.attention(q, kt, rand(2, 4, 6), y, 1.0, 8, ok, fam, 1)
    with pytest.raises(ValueError, match="unit stride"):
        _attention.attention(q, kt, v, np.empty((2, 6, 3), np.float32).transpose(0, 2, 1),
                             1.0, 8, ok, fam, 1)
    with pytest.raises(ValueError, match="no keys"):
        _attention.attention(q, rand(2, 4, 0), rand(2, 0, 6), y, 1.0, 8, ok, fam, 1)
    with pytest.raises(ValueError, match="rb=0"):
        _attention.scores_per_thread(3, 5, 0)


def test_masked_or_shared_scores_stay_three_steps(monkeypatch):
    # a mask added to the scores, or probabilities read by a second consumer: no fusion
    inits = {"mask": np.triu(np.full((6, 6), -1e9, np.float32), 1)}
    nodes = [oh.make_node("MatMul", ["q", "k"], ["s"]), oh.make_node("Add", ["s", "mask"], ["sm"]),
             oh.make_node("Softmax", ["sm"], ["a"], axis=-1),
             oh.make_node("MatMul", ["a", "v"], ["y"])]
    feeds = [("q", rand(2, 6, 4)), ("k", rand(2, 4, 6)), ("v", rand(2, 6, 3))]
    shapes = [(n, a.shape) for n, a in feeds]
    plan = run_all(make_model(nodes, shapes, inits), feeds)
    assert K.ATTENTION_OP not in ops(plan) and "Softmax" in ops(plan)
    nodes = [oh.make_node("MatMul", ["q", "k"], ["s"]),
             oh.make_node("Softmax", ["s"], ["a"], axis=-1),
             oh.make_node("MatMul", ["a", "v"], ["y"])]
    plan = run_all(make_model(nodes, shapes, {}, outputs=("y", "a")), feeds)
    assert K.ATTENTION_OP not in ops(plan) and "Softmax" in ops(plan)
    plan = run_all(make_model(nodes, shapes, {}), feeds)
    assert ops(plan) == [K.ATTENTION_OP]


def test_fused_attention_broadcasts_its_operands():
    # k shared by the first axis, v by the second: the items' operands by stride 0
    nodes = [oh.make_node("MatMul", ["q", "k"], ["s"]),
             oh.make_node("Softmax", ["s"], ["a"], axis=-1),
             oh.make_node("MatMul", ["a", "v"], ["y"])]
    feeds = [("q", rand(2, 3, 9, 4)), ("k", rand(1, 3, 4, 11)), ("v", rand(2, 1, 11, 5))]
    plan = run_all(make_model(nodes, [(n, a.shape) for n, a in feeds], {}), feeds)
    assert ops(plan) == [K.ATTENTION_OP]
