"""Issue #19: the inference plan tells a conv's bias from a residual by role, not by position.

An Add of a constant after a Conv (squeeze-and-excitation blocks: a conv without bias on a 1x1
map, then ``+ b`` with b of shape (1, C, 1, 1)) folds into the conv bias when the constant adds
one value per channel, and stays a residual (or a plain Add) otherwise. Oracles: the plain
OnnxModule (nnlite Tensor ops, no planner) and onnx's own ReferenceEvaluator; for the exported
squeeze-and-excitation model, PyTorch itself. The plan's steps are checked too, so a pass that
silently stops folding fails here.
"""
import io

import numpy as np
import pytest

import nnlite

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as oh  # noqa: E402
from onnx import numpy_helper as onh  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import nnlite.onnx as nxo  # noqa: E402
from nnlite._infer import kernels as K  # noqa: E402
from plan_checks import make_model, run_all  # noqa: E402

RNG = np.random.default_rng(19)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def step_ops(plan):
    return [n.op + "+add" * bool(n.attrs.get("residual"))
            + ("+" + n.attrs["activation"] if n.attrs.get("activation") else "")
            for n, _, _ in plan.steps]


def conv_graph(F, C, kernel, group, bias):
    """Conv nodes/initializers writing 'c' with an output map of the input's size."""
    kh, kw = kernel
    inits = {"w": rand(F, C // group, kh, kw)}
    ins = ["x", "w"]
    if bias:
        inits["b"] = rand(F)
        ins.append("b")
    pads = [kh // 2, kw // 2, kh - 1 - kh // 2, kw - 1 - kw // 2]
    return [oh.make_node("Conv", ins, ["c"], pads=pads, group=group, name="the_conv")], inits


def constant_nodes(form, F, hw):
    """(nodes, initializers) defining the value 'k' in one of the forms a model may use."""
    if form == "init (1,C,1,1)":
        return [], {"k": rand(1, F, 1, 1)}
    if form == "init (C,1,1)":
        return [], {"k": rand(F, 1, 1)}
    if form == "(C,) reshaped":
        return ([oh.make_node("Reshape", ["k0", "shape"], ["k"])],
                {"k0": rand(F), "shape": np.array([1, F, 1, 1], np.int64)})
    if form == "(C,) unsqueezed":
        return ([oh.make_node("Unsqueeze", ["k0", "axes"], ["k"])],
                {"k0": rand(F), "axes": np.array([1, 2], np.int64)})
    if form == "Constant node":
        return [oh.make_node("Constant", [], ["k"], value=onh.from_array(rand(1, F, 1, 1)))], {}
    if form == "scalar":
        return [], {"k": rand(1)}
    if form == "full (1,C,H,W)":
        return [], {"k": rand(1, F, *hw)}
    raise AssertionError(form)


PER_CHANNEL = ["init (1,C,1,1)", "init (C,1,1)", "(C,) reshaped", "(C,) unsqueezed",
               "Constant node", "scalar"]


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("hw, kernel", [((1, 1), (1, 1)), ((1, 1), (3, 2)), ((8, 8), (1, 1)),
                                        ((8, 8), (3, 2)), ((5, 3), (2, 3))])
@pytest.mark.parametrize("form", PER_CHANNEL)
def test_per_channel_constant_folds_into_the_bias(form, hw, kernel, bias, batch):
    C, F = 3, 6
    conv, inits = conv_graph(F, C, kernel, 1, bias)
    knodes, kinits = constant_nodes(form, F, hw)
    nodes = knodes + conv + [oh.make_node("Add", ["c", "k"], ["y"])]
    plan, _ = run_all(make_model(nodes, [("x", (batch, C) + hw)], {**inits, **kinits}),
                      [("x", rand(batch, C, *hw))])
    assert step_ops(plan) == ["Conv"]           # the Add is gone: folded, not a residual
    node, kernel_, _ = plan.steps[0]
    assert isinstance(kernel_, K.ConvKernel) and not kernel_.residual
    assert K.conv_inputs(node).bias is not None and kernel_.bias.shape == (F,)


@pytest.mark.parametrize("hw", [(8, 8), (5, 3), (1, 1)])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("kernel, group", [((3, 2), 1), ((1, 1), 1), ((3, 3), 6)],
                         ids=["3x2", "1x1", "depthwise"])
def test_full_shape_constant_stays_a_residual(hw, bias, kernel, group):
    """A constant of the output's own shape (batch 1) is the conv's residual operand; at batch 2
    it broadcasts over the batch and stays an Add. At 1x1 it is also per channel: folded."""
    C = F = 6
    conv, inits = conv_graph(F, C, kernel, group, bias)
    _, kinits = constant_nodes("full (1,C,H,W)", F, hw)
    nodes = conv + [oh.make_node("Add", ["k", "c"], ["a"]), oh.make_node("Relu", ["a"], ["y"])]
    for batch in (1, 2):
        plan, _ = run_all(make_model(nodes, [("x", (batch, C) + hw)], {**inits, **kinits}),
                          [("x", rand(batch, C, *hw))])
        if hw == (1, 1):
            assert step_ops(plan) == ["Conv+relu"]
        elif batch == 1:
            assert step_ops(plan) == ["Conv+add+relu"]
            node = plan.steps[0][0]
            assert K.conv_inputs(node).residual == "k"
            assert (K.conv_inputs(node).bias is not None) == bias
        else:
            assert step_ops(plan) == ["Conv", "Add+relu"]


def test_constant_residual_on_the_implicit_gemm_and_depthwise_kernels():
    """Maps of >= 784 pixels run nnlite._convfast (implicit GEMM / direct depthwise): the
    constant residual is copied into the output there too, the per-channel one is the bias."""
    C = F = 4
    for kernel, group in (((3, 3), 1), ((3, 3), 4)):
        conv, inits = conv_graph(F, C, kernel, group, False)
        inits.update(full=rand(1, F, 30, 29), chan=rand(1, F, 1, 1))
        nodes = conv + [oh.make_node("Add", ["c", "full"], ["a"]),
                        oh.make_node("Add", ["a", "chan"], ["y"])]
        plan, _ = run_all(make_model(nodes, [("x", (1, C, 30, 29))], inits),
                          [("x", rand(1, C, 30, 29))], rtol=1e-4, atol=1e-4)
        assert step_ops(plan) == ["Conv+add"]


@pytest.mark.parametrize("order", ["residual first", "constant first"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_constant_and_residual_adds_chain_on_one_conv(order, bias):
    """conv + r + c (either order) + ReLU: one step, the residual fused and c in the bias."""
    C, F = 3, 5
    conv, inits = conv_graph(F, C, (3, 3), 1, bias)
    inits["k"] = rand(F, 1, 1)
    first, second = (["c", "r"], ["k"]) if order == "residual first" else (["c", "k"], ["r"])
    nodes = conv + [oh.make_node("Add", first, ["a1"]),
                    oh.make_node("Add", second + ["a1"], ["a2"]),
                    oh.make_node("Relu", ["a2"], ["y"])]
    model = make_model(nodes, [("x", (1, C, 6, 7)), ("r", (1, F, 6, 7))], inits)
    plan, _ = run_all(model, [("x", rand(1, C, 6, 7)), ("r", rand(1, F, 6, 7))])
    assert step_ops(plan) == ["Conv+add+relu"]


@pytest.mark.parametrize("batch", [1, 2])
def test_computed_residual_on_a_conv_without_bias(batch):
    """Audit finding: a computed residual (ReLU output) added to a conv WITHOUT bias landed in
    the bias position, and the kernel factory fell back to running Conv(x, w, r) (ValueError:
    'expected bias to be 1-dimensional'); the activation after it was not fused either."""
    C, F = 3, 4
    conv, inits = conv_graph(F, C, (3, 3), 1, False)
    nodes = [oh.make_node("Relu", ["r0"], ["r"])] + conv + [
        oh.make_node("Add", ["c", "r"], ["a"]), oh.make_node("Relu", ["a"], ["y"])]
    model = make_model(nodes, [("x", (batch, C, 5, 5)), ("r0", (batch, F, 5, 5))], inits)
    plan, _ = run_all(model, [("x", rand(batch, C, 5, 5)), ("r0", rand(batch, F, 5, 5))])
    assert step_ops(plan) == ["Relu", "Conv+add+relu"]
    assert K.conv_inputs(plan.steps[1][0]).residual == "r"
    assert K.conv_inputs(plan.steps[1][0]).bias is None


def test_batchnorm_then_constant_add_fold_into_one_bias():
    C, F = 3, 4
    conv, inits = conv_graph(F, C, (3, 3), 1, False)
    inits.update(s=rand(F), b2=rand(F), mu=rand(F), var=np.abs(rand(F)) + 0.5,
                 k=rand(1, F, 1, 1))
    nodes = conv + [oh.make_node("BatchNormalization", ["c", "s", "b2", "mu", "var"], ["h"]),
                    oh.make_node("Add", ["h", "k"], ["y"])]
    plan, _ = run_all(make_model(nodes, [("x", (1, C, 4, 4))], inits), [("x", rand(1, C, 4, 4))],
                      rtol=1e-4, atol=1e-4)
    assert step_ops(plan) == ["Conv"]


def test_folded_constants_never_replace_graph_values_of_the_same_name():
    """Audit finding: BatchNorm folding named its weights '<conv output>:w' / ':b' and wrote
    them over graph constants already so named (here read by a later Mul and Add), giving
    'operands could not be broadcast'. Folded constants now get fresh names."""
    C, F = 3, 4
    conv, inits = conv_graph(F, C, (3, 3), 1, False)
    inits.update({"s": rand(F), "b2": rand(F), "mu": rand(F), "var": np.abs(rand(F)) + 0.5,
                  "c:w": rand(1, F, 5, 5), "c:b": rand(1, F, 5, 5), "h:scale": rand(1, F, 5, 5),
                  "y:b": rand(1, F, 5, 5)})
    nodes = conv + [oh.make_node("BatchNormalization", ["c", "s", "b2", "mu", "var"], ["h"]),
                    oh.make_node("Mul", ["h", "c:w"], ["m"]),
                    oh.make_node("Add", ["m", "c:b"], ["n"]),
                    oh.make_node("BatchNormalization", ["n", "s", "b2", "mu", "var"], ["o"]),
                    oh.make_node("Mul", ["o", "h:scale"], ["y0"]),
                    oh.make_node("Conv", ["y0", "w2"], ["y1"], pads=[1, 1, 1, 1]),
                    oh.make_node("Add", ["y1", "kc"], ["y2"]),
                    oh.make_node("Add", ["y2", "y:b"], ["y"])]
    inits.update(w2=rand(F, F, 3, 3), kc=rand(1, F, 1, 1))
    plan, _ = run_all(make_model(nodes, [("x", (1, C, 5, 5))], inits), [("x", rand(1, C, 5, 5))],
                      rtol=1e-4, atol=1e-4)
    assert "nnlite.Affine" in step_ops(plan)


def test_conv_roles_and_layout_errors():
    from nnlite.onnx.graph import Node

    assert K.conv_inputs(Node("Conv", ("x", "w"), ("y",))) == ("x", "w", None, None)
    assert K.conv_inputs(Node("Conv", ("x", "w", ""), ("y",))) == ("x", "w", None, None)
    fused = K.with_conv_inputs(Node("Conv", ("x", "w"), ("y",)), "z", residual="r")
    assert fused.inputs == ("x", "w", "", "r") and fused.outputs == ("z",)
    assert K.conv_inputs(fused) == ("x", "w", None, "r")
    both = K.with_conv_inputs(fused, "z2", bias="b")
    assert K.conv_inputs(both) == ("x", "w", "b", "r")
    assert K.conv_inputs(both, [0, 1, 2, 3]) == (0, 1, 2, 3)
    with pytest.raises(K.PlanError, match=r"Conv node 'bad'.*\(x, weight, bias or '', resid"):
        K.conv_inputs(Node("Conv", ("x", "w", "r"), ("y",), {"residual": True}, "bad"))
    with pytest.raises(K.PlanError, match=r"\(x, weight\[, bias\]\)"):
        K.conv_inputs(Node("Conv", ("x",), ("y",)))


def test_a_kernel_that_cannot_be_built_names_its_node(monkeypatch):
    C, F = 3, 4
    conv, inits = conv_graph(F, C, (3, 3), 1, True)
    mod = nxo.load(make_model(conv + [oh.make_node("Relu", ["c"], ["y"])],
                              [("x", (1, C, 5, 5))], inits).SerializeToString())

    def broken(self, *args):
        raise ValueError("no kernel today")
    monkeypatch.setattr(K.ConvKernel, "__init__", broken)
    with pytest.raises(K.PlanError, match="Conv node 'the_conv': cannot build its kernel: no k"):
        nnlite.optimize_for_inference(mod)(rand(1, C, 5, 5))


def test_a_kernel_bound_to_wrong_arrays_names_its_node():
    C, F = 3, 4
    conv, inits = conv_graph(F, C, (3, 3), 1, True)
    plan, _ = run_all(make_model(conv + [oh.make_node("Add", ["c", "k"], ["y"])],
                                 [("x", (1, C, 5, 5))], {**inits, "k": rand(1, F, 5, 5)}),
                      [("x", rand(1, C, 5, 5))])
    kernel = plan.steps[0][1]
    x, y = np.zeros((1, C, 5, 5), np.float32), np.zeros((1, F, 5, 5), np.float32)
    with pytest.raises(K.PlanError, match=r"Conv node 'the_conv'.*residual operand \(\(1, 4, 5"):
        kernel.bind([x, None, None, np.zeros((1, F, 5, 4), np.float32)], [y], None)
    with pytest.raises(K.PlanError, match=r"Conv node 'the_conv'.*bound to arrays"):
        kernel.bind([x[:, :2], None, None, y.copy()], [y], None)


# ---------------------------------------------------------------- exported from PyTorch
def _se_model(torch, gate):
    """A small network of squeeze-and-excitation blocks as PP-LCNet-style OCR/orientation
    models build them: convs without bias followed by a constant add, a hard-sigmoid gate."""
    nn, F = torch.nn, torch.nn.functional

    def hard_sigmoid(t):
        if gate == "HardSigmoid":
            return F.hardsigmoid(t)
        return torch.clamp(t / 6 + 0.5, 0, 1)   # the same function as Div/Add/Clip nodes

    class SE(nn.Module):
        def __init__(self, c, r):
            super().__init__()
            self.reduce = nn.Conv2d(c, r, 1, bias=False)
            self.expand = nn.Conv2d(r, c, 1, bias=False)
            self.b1 = nn.Parameter(torch.randn(1, r, 1, 1))
            self.b2 = nn.Parameter(torch.randn(1, c, 1, 1) * 3)

        def forward(self, x):
            g = F.adaptive_avg_pool2d(x, 1)
            g = F.relu(self.reduce(g) + self.b1)
            return x * hard_sigmoid(self.expand(g) + self.b2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.se1 = SE(8, 2)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
            self.se2 = SE(8, 4)
            self.pw = nn.Conv2d(8, 16, 1)
            self.head = nn.Linear(16, 5)

        def forward(self, x):
            x = F.relu(self.bn(self.stem(x)))
            x = self.se1(x)
            x = self.se2(F.relu(self.dw(x)))
            x = F.adaptive_avg_pool2d(F.relu(self.pw(x)), 1).flatten(1)
            return self.head(x)

    torch.manual_seed(19)
    net = Net()
    with torch.no_grad():
        net.bn.running_mean.normal_()
        net.bn.running_var.uniform_(0.5, 2)
    return net.eval()


@pytest.mark.parametrize("gate", ["Clip", "HardSigmoid"])
def test_squeeze_excitation_model_exported_from_pytorch(gate):
    torch = pytest.importorskip("torch")
    if gate == "HardSigmoid" and "HardSigmoid" not in nxo.SUPPORTED:
        pytest.skip("nnlite.onnx does not import HardSigmoid yet")
    net = _se_model(torch, gate)
    x = np.random.default_rng(0).standard_normal((1, 3, 15, 13)).astype(np.float32)
    buf = io.BytesIO()
    torch.onnx.export(net, torch.from_numpy(x), buf, dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}})
    proto = onnx.load_from_string(buf.getvalue())
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Add") >= 4 and (gate != "HardSigmoid" or "HardSigmoid" in ops)
    mod = nxo.load(buf.getvalue())
    fast = nnlite.optimize_for_inference(mod)
    for batch in (1, 2):
        xb = np.concatenate([x, x[:, :, ::-1, ::-1]])[:batch]
        with torch.no_grad():
            want = net(torch.from_numpy(xb)).numpy()
        plain, opt = mod(xb).data, fast(xb).data
        np.testing.assert_allclose(plain, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(opt, plain, rtol=1e-4, atol=1e-5)
    plan = fast._plans[(((1, 3, 15, 13), "<f4"),)][0]
    convs = [n for n, _, _ in plan.steps if n.op == "Conv"]
    # the four SE convs took their constant adds into the bias: no residual, and no Add reads
    # a conv (the Adds left are the gate's t / 6 + 0.5 of the Clip version)
    assert len(convs) == 7 and not any(n.attrs.get("residual") for n in convs)
    made = {n.outputs[0] for n in convs}
    adds = [n for n, _, _ in plan.steps if n.op == "Add"]
    assert not [n for n in adds if made & set(n.inputs)]
    assert len(adds) == (2 if gate == "Clip" else 0)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 8, 8), (2, 1, 1), (2, 8, 8)])
def test_traced_nnlite_module_with_a_constant_add(shape):
    """The same pattern written as an nnlite module (traced, not imported): conv without bias
    + a (1, C, 1, 1) parameter, and a (1, C, H, W) buffer-like constant on a second conv."""
    from nnlite import nn

    n, h, w = shape

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 5, 1, bias=False)
            self.b = nn.Conv2d(5, 5, 3, padding=1, bias=False)
            self.k = nn.Parameter(nnlite.tensor(rand(1, 5, 1, 1)))
            self.full = nn.Parameter(nnlite.tensor(rand(1, 5, h, w)))

        def forward(self, x):
            return nnlite.functional.relu(self.b(self.a(x) + self.k) + self.full)

    nnlite.manual_seed(0)
    model = Block().eval()
    x = rand(n, 3, h, w)
    want = model(nnlite.tensor(x)).data
    fast = nnlite.optimize_for_inference(model)
    np.testing.assert_allclose(fast(x).data, want, rtol=1e-5, atol=1e-5)
    (plan, _), = fast._plans.values()
    ops = step_ops(plan)
    assert ops[0] == "Conv"
    assert ops[1:] == (["Conv+relu"] if h == 1 else ["Conv+add+relu"] if n == 1
                       else ["Conv", "Add+relu"])
