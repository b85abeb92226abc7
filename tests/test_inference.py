"""optimize_for_inference vs the plain model: every built-in model and block, the fusions it
claims, buffer reuse, thread safety, snapshot semantics and the generic fallbacks."""
import threading

import numpy as np
import pytest
from conftest import kernel_threads

import nnlite
import nnlite.nn.functional as F
from nnlite import models, nn
from nnlite.nn import blocks
from nnlite._infer import passes

RTOL = 1e-4  # max |optimized - plain| <= RTOL * max |plain|


@pytest.fixture(autouse=True)
def one_thread():
    """Correctness only: one kernel thread keeps these tests fast on a busy machine."""
    with kernel_threads(1):
        yield


def randomize_bn(model, seed=0):
    """Non-trivial BN statistics and affine parameters, so that BN folding is exercised."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.data[:] = 0.2 * rng.standard_normal(c)
            m.running_var.data[:] = 0.5 + rng.random(c)
            if m.weight is not None:
                m.weight.data[:] = 1 + 0.2 * rng.standard_normal(c)
                m.bias.data[:] = 0.2 * rng.standard_normal(c)
    return model.eval()


def plain(model, *xs):
    with nnlite.no_grad():
        out = model(*[nnlite.tensor(x) for x in xs])
    return out


def assert_same(got, ref, rtol=RTOL):
    got = np.asarray(getattr(got, "data", got))
    ref = np.asarray(getattr(ref, "data", ref))
    assert got.shape == ref.shape and got.dtype == ref.dtype
    scale = max(float(np.abs(ref).max()), 1e-30)
    err = float(np.abs(got.astype(np.float64) - ref).max())
    assert err <= rtol * scale, f"max abs error {err:.3g} vs max |ref| {scale:.3g}"


def check_model(model, shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    ref = plain(model, x)
    fast = nnlite.optimize_for_inference(model)
    got = fast(x)
    assert_same(got, ref)
    return fast, x


MODELS = [
    ("googlenet", 64), ("resnet18", 32), ("resnet34", 32), ("resnet50", 64), ("resnet101", 32),
    ("resnet152", 32), ("resnext50_32x4d", 32), ("mobilenet_v2", 64),
]


@pytest.mark.parametrize("name, size", MODELS)
def test_builtin_models_match_plain(name, size):
    nnlite.manual_seed(0)
    model = randomize_bn(getattr(models, name)())
    fast, x = check_model(model, (2, 3, size, size))
    text = fast.describe(x)
    assert "BatchNormalization" not in text and "Affine" not in text, text  # all folded
    if name.startswith("res"):
        assert "Conv+add+relu" in text, text
    if name == "mobilenet_v2":
        # the blocks with an expand conv run fused (one kernel, residual included) where the
        # extension is built (tests/test_fused_block.py), else as three convs
        from nnlite._infer.kernels import IR_OP, inverted_residual_available
        block = f"{IR_OP}+add" if inverted_residual_available() else "Conv+add"
        assert "Conv+relu6" in text and block in text, text


@pytest.mark.parametrize("make, shape", [
    (lambda: models.SmallInceptionNet(), (2, 1, 28, 28)),
    (lambda: models.small_cnn(), (2, 1, 28, 28)),
    (lambda: models.TutorialInceptionNet(), (2, 1, 28, 28)),
])
def test_small_models_match_plain(make, shape):
    nnlite.manual_seed(0)
    check_model(randomize_bn(make()), shape)


def test_googlenet_branches_write_into_the_concat_buffer():
    nnlite.manual_seed(0)
    fast, x = check_model(randomize_bn(models.googlenet()), (1, 3, 64, 64))
    text = fast.describe(x)
    assert "0 concat input copies" in text and "Concat" not in text.split(";")[0], text


@pytest.mark.parametrize("shape", [(1, 6, 7, 5), (3, 6, 5, 7), (1, 6, 1, 1)])
def test_sibling_pointwise_convs_run_as_one_conv_joined_to_the_concat(shape):
    # an Inception block's 1x1 branch and its two reductions read one value: ONE conv over
    # their stacked filters (folded BNs, ReLU fused), whose output slices are the three values;
    # the 1x1 branch's slice is the concatenation's first channels (one buffer holds both), so
    # no concat step copies anything; at batch 3 the slices are strided views of the buffer
    nnlite.manual_seed(0)
    model = randomize_bn(blocks.Inception(6, 4, 3, 5, 2, 3, 2))
    fast, x = check_model(model, shape)
    (plan, _), = fast._plans.values()
    convs = [s for s in plan.steps if s.node.op == "Conv"]
    assert len(convs) == 4 and "Concat" not in [s.node.op for s in plan.steps]
    merged, = [s for s in convs if s.kernel.shape[4] == 4 + 3 + 2]
    assert merged.kernel.pointwise and merged.node.attrs["activation"] == "relu"
    st, y = plan.storage, merged.node.outputs[0]
    out, = plan.outputs
    assert st.root[y] == st.root[out] and st.nbytes(st.root[y]) == (
        shape[0] * (3 + 2 + 4 + 5 + 3 + 2) * shape[2] * shape[3] * 4)
    for k in range(3):     # the same plan, new inputs
        xk = np.random.default_rng(k).standard_normal(shape).astype(np.float32)
        assert_same(fast(xk), plain(model, xk))


def test_merged_siblings_keep_one_copy_of_their_weights(monkeypatch):
    # the stacked weights are made once; the folded per-conv weights they came from become
    # views of them: the module holds no more constant bytes than without the merge
    nnlite.manual_seed(0)
    model = randomize_bn(models.googlenet())
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    held = {}
    for merge in (False, True):
        monkeypatch.setattr(passes, "MERGE_SIBLINGS", merge)
        fast = nnlite.optimize_for_inference(model)
        y = fast(x)
        fast(x[:, :, :32, :32])             # a second plan: the copies cached by the first
        held[merge] = fast.memory_report()["constants"]
        assert_same(y, plain(model, x))
    assert held[True] == held[False]


def test_merged_siblings_of_unfolded_weights_are_stacked_once_per_module():
    # weights the module holds as they are (no BN to fold): each plan finds the stacked copy
    # the first one made, so a second input shape adds no constant bytes
    nnlite.manual_seed(0)
    model = blocks.Inception(6, 4, 3, 5, 2, 3, 2, conv_block=nn.Conv2d).eval()
    fast = nnlite.optimize_for_inference(model)
    held = []
    for shape in [(1, 6, 7, 5), (2, 6, 9, 8), (1, 6, 4, 4)]:
        x = np.random.default_rng(len(held)).standard_normal(shape).astype(np.float32)
        assert_same(fast(x), plain(model, x))
        held.append(fast.memory_report()["constants"])
    assert held[0] == held[1] == held[2]


def test_split_kernel_copies_the_channel_slices():
    # the kernel behind a split whose outputs cannot be views: each output its run of
    # channels, as np.split cuts them; an output nobody reads (None) is skipped
    from nnlite._infer.kernels import SPLIT_OP, make_kernel
    from nnlite.onnx.graph import Node

    x = np.random.default_rng(0).standard_normal((3, 9, 4, 5)).astype(np.float32)
    node = Node(SPLIT_OP, ("x",), ("a", "b", "c"), {"axis": 1, "sizes": (2, 3, 4)})
    kern = make_kernel(node, [None], [None], 17)
    outs = [np.full((3, k, 4, 5), np.nan, np.float32) for k in (2, 3, 4)]
    kern.bind([x], [outs[0], None, outs[2]], np.empty(64, np.uint8))()
    want = np.split(x, [2, 5], axis=1)
    np.testing.assert_array_equal(outs[0], want[0])
    assert np.isnan(outs[1]).all()
    np.testing.assert_array_equal(outs[2], want[2])


def test_only_like_pointwise_convs_merge():
    # siblings merge only when they would run alike: 1x1, stride 1, no padding, one group, no
    # residual, the same activation; a value the graph returns is never a slice of another
    from nnlite._infer.kernels import SPLIT_OP

    class Siblings(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(4, 3, 1)
            self.b = nn.Conv2d(4, 5, 1)
            self.c = nn.Conv2d(4, 2, 1, bias=False)
            self.d = nn.Conv2d(4, 6, 1)                  # no activation: not with a, b, c
            self.e = nn.Conv2d(4, 3, 1, stride=2)        # strided
            self.f = nn.Conv2d(4, 4, 1, groups=2)        # grouped
            self.g = nn.Conv2d(4, 2, 1, padding=1)       # padded
            self.h = nn.Conv2d(4, 2, 1)                  # returned as it is

        def forward(self, x):
            a, b, c = F.relu(self.a(x)), F.relu(self.b(x)), F.relu(self.c(x))
            d, e, f = self.d(x), F.relu(self.e(x)), F.relu(self.f(x))
            g, h = F.relu(self.g(x)), F.relu(self.h(x))
            s = nnlite.cat([a, b, c, d, f], 1)
            return s, e, g, h

    nnlite.manual_seed(0)
    model = Siblings().eval()
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 6)).astype(np.float32)
    fast = nnlite.optimize_for_inference(model)
    for got, ref in zip(fast(x), plain(model, x)):
        assert_same(got, ref)
    (plan, _), = fast._plans.values()
    widths = sorted(s.kernel.shape[4] for s in plan.steps if s.node.op == "Conv")
    assert widths == [2, 2, 3, 4, 6, 3 + 5 + 2]
    split, = [s for s in plan.steps if s.node.op == SPLIT_OP] or [None]
    assert split is None    # its outputs are views


def test_resnet50_plan_fuses_every_bn_and_residual():
    nnlite.manual_seed(0)
    model = randomize_bn(models.resnet50())
    fast, x = check_model(model, (1, 3, 64, 64))
    plan = fast._plans[next(iter(fast._plans))][0]
    ops = [n.op for n, _, _ in plan.steps]
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    # one step per conv; the stem's runs with the max pool after it (its map never stored)
    from nnlite._infer.kernels import CONV_POOL_OP
    assert ops[0] == CONV_POOL_OP and "MaxPool" not in ops
    assert ops.count("Conv") == convs - 1
    assert sum(bool(n.attrs.get("residual")) for n, _, _ in plan.steps) == 16
    assert "Add" not in ops and "Relu" not in ops
    # liveness packing: the arena holds far less than all activations together
    assert plan.arena_bytes < plan.value_bytes / 4


BLOCKS = [
    (lambda: blocks.BasicConv2d(3, 5, kernel_size=3, padding=1), (2, 3, 7, 6)),
    (lambda: blocks.Inception(6, 4, 3, 5, 2, 3, 2), (2, 6, 7, 5)),
    (lambda: blocks.Inception(6, 4, 3, 5, 2, 3, 0), (1, 6, 5, 5)),          # bare pool branch
    (lambda: blocks.Inception(6, 4, 3, 5, 2, 3, 2, reduce=False), (2, 6, 6, 7)),
    (lambda: blocks.InceptionA(5), (2, 5, 7, 7)),
    (lambda: blocks.StackedConv3x3(4, 6, stride=2), (2, 4, 9, 8)),
    (lambda: blocks.AsymmetricConv2d(4, 6, n=5), (1, 4, 7, 9)),
    (lambda: blocks.GridReduction(4, 6, ch3x3dbl=5), (2, 4, 9, 8)),
    (lambda: blocks.GridReduction(4, 6, pool="avg"), (1, 4, 8, 9)),
    (lambda: blocks.BasicBlock(4, 4), (2, 4, 6, 5)),
    (lambda: blocks.BasicBlock(4, 6, stride=2, downsample=nn.Sequential(
        blocks.conv1x1(4, 6, 2), nn.BatchNorm2d(6))), (2, 4, 7, 6)),
    (lambda: blocks.Bottleneck(8, 2), (2, 8, 5, 5)),
    (lambda: blocks.ResNeXtBlock(32, 16, cardinality=4, base_width=16, downsample=nn.Sequential(
        blocks.conv1x1(32, 64), nn.BatchNorm2d(64))), (1, 32, 5, 4)),
    (lambda: blocks.DepthwiseSeparableConv2d(4, 6, 3, padding=1), (2, 4, 6, 7)),
    (lambda: blocks.DepthwiseSeparableConv2d(3, 5, (3, 2), stride=2, padding=(2, 1),
                                             dilation=2, depth_multiplier=2, mid_norm=True,
                                             mid_activation=True), (2, 3, 9, 8)),
    (lambda: blocks.DepthwiseSeparableConv2d(3, 4, 3, padding=1, padding_mode="reflect"),
     (1, 3, 5, 6)),
    (lambda: blocks.XceptionBlock(4, 6, reps=2, stride=2), (2, 4, 8, 7)),
    (lambda: blocks.XceptionBlock(4, 4, reps=2, start_with_relu=False), (1, 4, 5, 5)),
    (lambda: blocks.Conv2dNormActivation(4, 6, 3, stride=2, groups=2), (2, 4, 7, 7)),
    (lambda: blocks.InvertedResidual(4, 4, 1, 6), (2, 4, 6, 5)),
    (lambda: blocks.InvertedResidual(4, 6, 2, 1), (1, 4, 7, 7)),
]


@pytest.mark.parametrize("make, shape", BLOCKS)
def test_blocks_match_plain(make, shape):
    nnlite.manual_seed(0)
    check_model(randomize_bn(make()), shape)


# ------------------------------------------------------------------ special structures
class _ResidualStillNeeded(nn.Module):
    """The residual operand stays alive after the add: the conv must copy it, not overwrite."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        y = x.relu()
        z = self.bn(self.conv(y)) + y
        return (z.relu() + y) * 0.5


class _BranchAlsoUsedElsewhere(nn.Module):
    """A concat input read by another node too: that input is copied, the others not."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 1)
        self.b = nn.Conv2d(2, 4, 3, padding=1)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        cat = nnlite.cat([a, b, x], 1)
        return cat.mean((2, 3), keepdim=True) + b.sum()


class _GenericOps(nn.Module):
    """Functions without a dedicated kernel run through the generic fallback."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.up = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x):
        y = F.pad(x, (1, 2, 0, 1), mode="reflect")
        y = self.conv(y).exp().clamp(max=3.0)
        y = self.bn(self.up(y))                    # standalone BN -> per-channel affine
        y = y[:, :1] * F.sigmoid(y[:, 1:]) - y.tanh().abs()
        p, idx = F.max_pool2d(y, 2, return_indices=True)
        return F.max_unpool2d(p, idx, 2, output_size=y.shape[-2:]), F.softmax(y.flatten(1), 1)


@pytest.mark.parametrize("make, shape", [
    (_ResidualStillNeeded, (2, 3, 5, 4)),
    (_BranchAlsoUsedElsewhere, (2, 2, 4, 5)),
])
def test_special_structures(make, shape):
    nnlite.manual_seed(0)
    check_model(randomize_bn(make()), shape)


@pytest.mark.parametrize("kind, kernel, stride, padding, shape", [
    ("max", (3, 2), 2, (1, 0), (1, 2, 4, 1)),      # W: a 2-wide window over a 1-wide map
    ("avg", (1, 2), 2, 0, (1, 1, 4, 1)),
    ("max", (2, 4), (1, 3), (1, 1), (2, 3, 3, 1)),  # W: 4 taps over 1 + 2 pads
    ("avg", (4, 3), 3, (1, 1), (1, 2, 1, 2)),       # H: 4 taps over 1 + 2 pads
])
def test_ceil_mode_pools_whose_window_hangs_over_the_padded_input(kind, kernel, stride,
                                                                  padding, shape):
    # PyTorch's ceil mode keeps a window that starts inside and ends past the padded input;
    # the plan took the ONNX geometry's floor-mode rule (the whole window inside) and refused
    from nnlite.kernels import pool_reference as ref

    layer = (nn.MaxPool2d(kernel, stride, padding, ceil_mode=True) if kind == "max" else
             nn.AvgPool2d(kernel, stride, padding, ceil_mode=True))
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    pair = (lambda v: v if isinstance(v, tuple) else (v, v))
    k, s, p = kernel, pair(stride), pair(padding)
    flat = x.reshape(-1, *shape[2:])
    want = (ref.max_pool2d_forward(flat, k, s, p, (1, 1), True)[0] if kind == "max" else
            ref.avg_pool2d_forward(flat, k, s, p, True, True, None))
    want = want.reshape(shape[:2] + want.shape[1:])
    got = nnlite.optimize_for_inference(nn.Sequential(layer).eval()).run_arrays(x)[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


class _RowsFromInput(nn.Module):
    def forward(self, x, rows):
        return x.reshape(int(rows.data[0]), -1) * 2   # the trace holds this value


def test_traced_models_compile_a_plan_per_value_of_integer_inputs():
    # a traced model's Python code may read an integer input's value into a shape: its plans
    # are keyed on those values too (one plan per shape alone reused the first call's rows)
    m = _RowsFromInput()
    fast = nnlite.optimize_for_inference(m)
    x = np.arange(12, dtype=np.float32)
    for r in (3, 4, 2, 3):
        rows = np.array([r], np.int64)
        assert_same(fast(x, rows), plain(m, x, rows))
    assert len(fast.plans) == 3


def test_generic_fallback_and_tuple_outputs():
    nnlite.manual_seed(0)
    model = randomize_bn(_GenericOps())
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 5)).astype(np.float32)
    ref = plain(model, x)
    got = nnlite.optimize_for_inference(model)(x)
    assert isinstance(got, tuple) and len(got) == 2
    for g, r in zip(got, ref):
        assert_same(g, r)


def test_float64_model():
    nnlite.manual_seed(0)
    model = randomize_bn(models.small_cnn()).double()
    x = np.random.default_rng(2).standard_normal((2, 1, 28, 28))
    ref = plain(model, x)
    got = nnlite.optimize_for_inference(model)(x)
    assert got.dtype == np.float64
    assert_same(got, ref, rtol=1e-10)


# ------------------------------------------------------------------ semantics
def test_no_autograd_state_and_tensor_or_array_inputs():
    nnlite.manual_seed(0)
    model = randomize_bn(models.small_cnn())
    fast = nnlite.optimize_for_inference(model)
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    xt = nnlite.tensor(x, requires_grad=True)
    y1, y2 = fast(x), fast(xt)
    assert not y1.requires_grad and y1._ctx is None and y2._ctx is None
    np.testing.assert_array_equal(y1.data, y2.data)
    assert list(fast.state_dict()) == [] and list(fast.parameters()) == []


def test_results_are_fresh_arrays_not_views_into_the_arena():
    nnlite.manual_seed(0)
    fast = nnlite.optimize_for_inference(randomize_bn(models.small_cnn()))
    rng = np.random.default_rng(0)
    x1, x2 = (rng.standard_normal((1, 1, 28, 28)).astype(np.float32) for _ in range(2))
    y1 = fast(x1).data.copy()
    keep = fast(x1)
    fast(x2)
    np.testing.assert_array_equal(keep.data, y1)


@pytest.mark.parametrize("threads", [1, 2])
def test_large_inputs_are_copied_in_on_the_pool_and_others_by_numpy(threads, monkeypatch):
    """A C-contiguous input of the plan's dtype of at least _PARALLEL_COPY_MIN bytes goes into
    the arena by ``_info.copy_bytes`` (on the pool's threads); a strided one or a smaller one
    by NumPy; each run's result matches the plain module on that input."""
    from nnlite import inference
    if inference._copy_bytes is None:
        pytest.skip("nnlite built without its extensions")
    calls = []

    def recording(dst, src, nt):
        calls.append((src.nbytes, nt))
        inference._copy_bytes_orig(dst, src, nt)
    monkeypatch.setattr(inference, "_copy_bytes_orig", inference._copy_bytes, raising=False)
    monkeypatch.setattr(inference, "_copy_bytes", recording)
    nnlite.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).eval()
    fast = nnlite.optimize_for_inference(model)
    rng = np.random.default_rng(0)
    big = rng.standard_normal((1, 3, 200, 160)).astype(np.float32)       # 384000 bytes
    assert big.nbytes >= inference._PARALLEL_COPY_MIN
    strided = rng.standard_normal((1, 3, 200, 320)).astype(np.float32)[..., ::2]
    with kernel_threads(threads):
        fast(big)                     # compiles the plan (its runs count no further)
        calls.clear()
        for x in (big, strided, big[:, ::-1].copy()):
            assert_same(fast(x), plain(model, x))
    assert calls == [(big.nbytes, threads)] * 2
    small = rng.standard_normal((1, 3, 20, 16)).astype(np.float32)
    assert_same(fast(small), plain(model, small))
    assert len(calls) == 2


def test_weights_are_snapshotted_and_training_mode_restored():
    nnlite.manual_seed(0)
    model = randomize_bn(models.small_cnn()).train()
    fast = nnlite.optimize_for_inference(model)
    assert model.training  # the user's model is untouched
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    before = fast(x).data.copy()
    for p in model.parameters():
        p.data *= 2
    np.testing.assert_array_equal(fast(x).data, before)
    model.eval()
    assert not np.allclose(plain(model, x).data, before)


def test_batch_sizes_get_their_own_plans():
    nnlite.manual_seed(0)
    model = randomize_bn(models.small_cnn())
    fast = nnlite.optimize_for_inference(model)
    rng = np.random.default_rng(3)
    for n in (1, 3, 1, 2):
        x = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
        assert_same(fast(x), plain(model, x))
    assert len(fast.plans) == 3


def _concurrent_callers(seed, n_inputs, n_threads, reps, check_fast=None):
    """SmallInceptionNet's plan called from n_threads Python threads at once, each output
    compared with the plain model's."""
    nnlite.manual_seed(0)
    model = randomize_bn(models.SmallInceptionNet())
    fast = nnlite.optimize_for_inference(model)
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((2, 1, 28, 28)).astype(np.float32) for _ in range(n_inputs)]
    expected = [plain(model, x).data for x in xs]
    if check_fast is not None:
        fast(xs[0])
        check_fast(fast)
    errors = []

    def worker(k):
        try:
            for rep in range(reps):
                i = (k + rep) % len(xs)
                assert_same(fast(xs[i]), expected[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_concurrent_calls_from_threads():
    _concurrent_callers(4, 6, 4, 4)


# ------------------------------------------------------------------ branch lanes (2 threads)
@pytest.fixture
def two_threads(lanes_on):
    with kernel_threads(2):
        yield


@pytest.mark.parametrize("env,want", [({"OMP_WAIT_POLICY": "PASSIVE"}, True),
                                      ({"GOMP_SPINCOUNT": "0"}, True),
                                      ({"GOMP_SPINCOUNT": "1000"}, False), ({}, False)])
def test_lanes_follow_the_openmp_idle_policy(env, want, monkeypatch):
    from nnlite._infer import lanes
    for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(lanes, "ENABLED", None)
    assert lanes.lanes_pay() == want
    with kernel_threads(2):
        fast = nnlite.optimize_for_inference(models.SmallInceptionNet())
        fast.run_arrays(np.zeros((1, 1, 28, 28), np.float32))
    assert bool(_groups(fast)) == want


def _groups(fast):
    (plan, _), = fast._plans.values()
    return plan.groups


@pytest.mark.parametrize("make, shape", [
    (lambda: models.googlenet(), (1, 3, 96, 96)),
    (lambda: models.SmallInceptionNet(), (3, 1, 28, 28)),
    (lambda: blocks.Inception(8, 4, 3, 6, 2, 3, 0), (2, 8, 9, 7)),   # pool branch unprojected
])
def test_branch_lanes_match_plain_on_two_threads(two_threads, make, shape):
    nnlite.manual_seed(0)
    model = randomize_bn(make())
    fast, x = check_model(model, shape)
    groups = _groups(fast)
    assert groups, "the Inception branches should run as lanes"
    (plan, _), = fast._plans.values()
    for first, last, (a, b), syncs in groups:
        # every step of the range on exactly one lane; second parts of split convs (appended
        # steps) only on lane 1, each after a sync set by lane 0
        assert a and b and sorted(i for i in a + b if i <= last) == list(range(first, last + 1))
        assert all(i in b for i in a + b if i > last)
        assert all(x in a and w in b and w > last for x, w in syncs)
    for _ in range(3):  # repeated calls reuse the bound lanes
        assert_same(fast(x), plain(model, x))
    nnlite.set_num_threads(1)  # the same plan, lanes run one after the other
    assert_same(fast(x), plain(model, x))


def test_heavy_branch_conv_is_split_across_lanes(two_threads, monkeypatch):
    # one 3x3 branch far heavier than the others, on a map large enough for the implicit GEMM:
    # its output channels are split between the lanes (the second part waits for the reduce;
    # with the sibling 1x1 convs merged, the reduce runs before the group and nothing waits)
    monkeypatch.setattr(passes, "MERGE_SIBLINGS", False)
    nnlite.manual_seed(0)
    model = randomize_bn(blocks.Inception(8, 4, 8, 64, 2, 4, 4))
    fast, x = check_model(model, (1, 8, 30, 29))
    (plan, _), = fast._plans.values()
    (first, last, (a, b), syncs), = plan.groups
    parts = [plan.steps[i][1] for i in a + b if type(plan.steps[i][1]).__name__ == "ConvPart"]
    assert len(parts) == 2 and sorted((p.f0, p.f1) for p in parts)[0][0] == 0
    assert sum(p.f1 - p.f0 for p in parts) == 64 and len(syncs) == 1
    for _ in range(5):
        assert_same(fast(x), plain(model, x))


def test_heavy_im2col_conv_of_a_batch_is_split_into_implicit_parts(two_threads, monkeypatch):
    # the block below at batch 2: the columns of both images would be one more buffer beside
    # the parts' packed weights; two implicit-GEMM parts need neither
    from nnlite._infer import kernels as K

    monkeypatch.setattr(passes, "MERGE_SIBLINGS", False)   # the reduce in a lane
    nnlite.manual_seed(0)
    model = randomize_bn(blocks.Inception(8, 4, 8, 64, 2, 4, 4))
    fast, x = check_model(model, (2, 8, 12, 11))
    (plan, _), = fast._plans.values()
    (first, last, (a, b), syncs), = plan.groups
    parts = [plan.steps[i][1] for i in a + b if type(plan.steps[i][1]).__name__ == "ConvPart"]
    assert len(parts) == 2 and sum(p.f1 - p.f0 for p in parts) == 64 and len(syncs) == 1
    if K._conv_cython is not None:
        assert all(p.inner.algorithm == "implicit" for p in parts)
    for k in range(4):
        xk = np.random.default_rng(k).standard_normal(x.shape).astype(np.float32)
        assert_same(fast(xk), plain(model, xk))


def test_heavy_winograd_conv_of_a_batch_is_split_into_winograd_parts(two_threads, monkeypatch):
    # a wide 3x3 branch whose conv runs Winograd in the plan (64 -> 128 channels on 14x13
    # maps, batch 2): its two parts keep Winograd (implicit parts ran GoogLeNet b8 slower);
    # the oracle is the plain run under im2col + GEMM, which shares no kernel with Winograd
    from nnlite._algorithms import resolve
    from nnlite._convgeom import conv2d_geometry
    from nnlite._infer import kernels as K

    if K._conv_cython is None:
        pytest.skip("Winograd needs the compiled extension")
    geom = conv2d_geometry((2, 64, 14, 13), (128, 64, 3, 3), (128,), 1, 1)
    assert resolve(geom, "auto", weights_prepared=True) == "winograd"   # the premise
    monkeypatch.setattr(passes, "MERGE_SIBLINGS", False)   # the reduce in a lane
    nnlite.manual_seed(0)
    model = randomize_bn(blocks.Inception(16, 8, 64, 128, 4, 8, 8))
    x = np.random.default_rng(0).standard_normal((2, 16, 14, 13)).astype(np.float32)
    fast = nnlite.optimize_for_inference(model)
    with nnlite.conv_algorithm("im2col"):
        refs = [plain(model, x)] + [plain(model, 3 * x[::-1] + k) for k in range(3)]
    assert_same(fast(x), refs[0])
    (plan, _), = fast._plans.values()
    (first, last, (a, b), syncs), = plan.groups
    parts = [plan.steps[i][1] for i in a + b if type(plan.steps[i][1]).__name__ == "ConvPart"]
    assert len(parts) == 2 and sum(p.f1 - p.f0 for p in parts) == 128 and len(syncs) == 1
    assert all(p.inner.algorithm == "winograd" for p in parts)
    assert {p.f0 for p in parts} == {0, min(p.f1 for p in parts)}     # the halves abut
    for k in range(3):
        xk = np.ascontiguousarray(3 * x[::-1] + k)
        assert_same(fast(xk), refs[k + 1])


def test_heavy_im2col_conv_is_split_over_shared_columns(two_threads, monkeypatch):
    # the same lopsided block on a small map (im2col + GEMM) at batch 1: one gather of the
    # columns in lane 0, the filters split between the lanes, lane 1 waiting for the gather
    from nnlite._infer.kernels import SharedColumns

    monkeypatch.setattr(passes, "MERGE_SIBLINGS", False)   # the reduce in a lane
    nnlite.manual_seed(0)
    model = randomize_bn(blocks.Inception(8, 4, 8, 64, 2, 4, 4))
    fast, x = check_model(model, (1, 8, 12, 11))
    (plan, _), = fast._plans.values()
    (first, last, (a, b), syncs), = plan.groups
    parts = [plan.steps[i][1] for i in a + b if hasattr(plan.steps[i][1], "pair")]
    assert len(parts) == 2 and parts[0].pair is parts[1].pair
    assert isinstance(parts[0].pair, SharedColumns) and 16 <= parts[0].pair.f < 64
    (after, before), = syncs
    assert plan.steps[after][1] is parts[0] and plan.steps[before][1] is parts[1]
    xs = [np.random.default_rng(k).standard_normal(x.shape).astype(np.float32)
          for k in range(4)]
    for xk in xs:  # lane 1 must read this call's columns, not the previous call's
        assert_same(fast(xk), plain(model, xk))


def test_branch_lanes_from_concurrent_callers(two_threads):
    def has_lanes(fast):
        assert _groups(fast)
    _concurrent_callers(5, 4, 3, 6, has_lanes)


def test_lane_errors_reach_the_caller_and_lanes_recover(two_threads):
    from nnlite._infer.plan import _group_call, _LaneWorker

    seen = []

    def boom():
        raise ZeroDivisionError("lane 1 failed")

    worker = _LaneWorker()
    run = _group_call([lambda: seen.append(("a", nnlite.get_num_threads()))], [boom], worker)
    with pytest.raises(ZeroDivisionError, match="lane 1 failed"):
        run()
    run = _group_call([lambda: seen.append("a2")],
                      [lambda: seen.append(("b", nnlite.get_num_threads()))], worker)
    run()
    assert ("a", 1) in seen and ("b", 1) in seen and "a2" in seen  # each lane on one thread
    assert nnlite.get_num_threads() == 2                             # budget restored


def test_lane_threads_end_with_their_module(two_threads):
    import gc

    def lanes():
        return {t for t in threading.enumerate() if t.name == "nnlite-plan-lane"}
    before = lanes()
    nnlite.manual_seed(0)
    fast = nnlite.optimize_for_inference(models.SmallInceptionNet())
    fast(np.zeros((1, 1, 28, 28), np.float32))
    mine = lanes() - before
    assert len(mine) == 1
    (thread,) = mine
    del fast
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_optimize_onnx_free_errors():
    with pytest.raises(TypeError, match="nnlite Module"):
        nnlite.optimize_for_inference(lambda x: x)

    class ReturnsDict(nn.Module):
        def forward(self, x):
            return {"y": x.relu()}
    fast = nnlite.optimize_for_inference(ReturnsDict())
    with pytest.raises(TypeError, match="Tensor or a tuple/list"):
        fast(np.ones((1, 2), np.float32))
    fast = nnlite.optimize_for_inference(models.small_cnn())
    with pytest.raises(TypeError, match="float16"):
        fast(np.ones((1, 1, 28, 28), np.float16))
    same = nnlite.optimize_for_inference(fast)
    assert same is fast


@pytest.mark.parametrize("make, shape", [
    (lambda: blocks.InvertedResidual(4, 4, 1, 6), (2, 4, 6, 5)),
    (lambda: blocks.DepthwiseSeparableConv2d(3, 5, 3, stride=2, padding=1), (1, 3, 7, 6)),
    (lambda: blocks.Inception(6, 4, 3, 5, 2, 3, 0), (2, 6, 5, 5)),
    (lambda: blocks.BasicBlock(4, 4), (2, 4, 6, 5)),
    (lambda: blocks.ResNeXtBlock(32, 16, cardinality=4, base_width=16, downsample=nn.Sequential(
        blocks.conv1x1(32, 64), nn.BatchNorm2d(64))), (1, 32, 5, 4)),
])
def test_numpy_fallback_kernels(monkeypatch, make, shape):
    """Without the compiled extensions (NNLITE_NO_EXT builds) the plan runs NumPy kernels."""
    from nnlite._infer import kernels as K

    monkeypatch.setattr(K, "_pool", None)
    monkeypatch.setattr(K, "_conv_cython", None)
    monkeypatch.setattr(K, "_gemm", None)
    monkeypatch.setattr(K, "_gemm_batched", None)
    monkeypatch.setattr(nnlite._config, "_default", "numpy")  # every thread: NumPy kernels
    nnlite.manual_seed(0)
    check_model(randomize_bn(make()), shape)


def test_large_maps_run_the_implicit_gemm_and_depthwise_kernel(monkeypatch):
    """k x k convs on >= 784-pixel maps take nnlite._convfast's implicit GEMM (writing concat
    slices and fusing the residual add and ReLU), those of <= 4 input channels its few-channel
    direct kernel (writing concat slices too); depthwise convs its direct kernel (the
    inverted residual unfused here: the fused block is tests/test_fused_block.py's)."""
    from nnlite._infer import kernels as K
    from nnlite._infer import passes

    if K._conv_cython is None:
        pytest.skip("nnlite._convfast not built")
    monkeypatch.setattr(passes, "FUSE_BLOCKS", False)
    nnlite.manual_seed(0)
    model = nn.Sequential(blocks.Inception(4, 4, 3, 5, 2, 3, 2, branch3_kernel_size=5),
                          blocks.BasicBlock(14, 14),
                          blocks.InvertedResidual(14, 14, 1, 2))
    fast, x = check_model(randomize_bn(model), (2, 4, 31, 29))
    (plan, _), = fast._plans.values()
    kernels = [k for _, k, _ in plan.steps if isinstance(k, K.ConvKernel)]
    # the Inception's k x k convs read 2-3 channels: the few-channel direct kernel
    phase = [k for k in kernels if k.algorithm == "direct" and not k.depthwise]
    assert all(k.shape[1] <= 4 for k in phase) and len(phase) == 2, [k.shape for k in phase]
    assert sum(k.implicit for k in kernels) == 2, [k.shape for k in kernels]
    assert sum(k.depthwise for k in kernels) == 1
    assert "Conv+add+relu" in fast.describe(x)


class _ConcatInputAlsoReshaped(nn.Module):
    """A concat input that is also viewed (flatten) elsewhere must keep its own buffer."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 1)
        self.b = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        y = nnlite.cat([a, b], 1)
        return y.flatten(1).sum(1, keepdim=True) * a.flatten(1)


def test_concat_input_with_a_view_elsewhere():
    nnlite.manual_seed(0)
    check_model(_ConcatInputAlsoReshaped().eval(), (2, 2, 3, 4))


class _ResidualThenView(nn.Module):
    """The in-place residual conv's output is then viewed (flatten): the view follows it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        a, b = x.relu(), x.sigmoid()
        z = (self.conv(a) + b).relu()            # b dies here: the conv accumulates into it
        return z.flatten(1) * 2.0


def test_residual_output_viewed_afterwards():
    nnlite.manual_seed(0)
    check_model(_ResidualThenView().eval(), (2, 3, 4, 5))


def test_chain_of_residual_blocks_accumulates_in_place_at_every_block():
    """Each identity block's output is the next block's operand, which dies at the next
    residual conv: every residual conv writes into its operand's buffer (it used to be every
    other one, the operand then living in an earlier operand's buffer), so one buffer carries
    the whole chain and only the first block, whose operand is the plan's input, copies it."""
    nnlite.manual_seed(0)
    model = randomize_bn(nn.Sequential(*[blocks.BasicBlock(4, 4) for _ in range(4)]))
    fast, x = check_model(model, (2, 4, 6, 5))
    plan = fast._plans[next(iter(fast._plans))][0]
    st = plan.storage
    res = [n for n, _, _ in plan.steps if n.attrs.get("residual")]
    assert len(res) == 4
    # the first block's operand is the plan's input (copied in by every call: not reused)
    assert res[0].inputs[-1] in plan.inputs
    for n in res[1:]:
        assert st.root[n.outputs[0]] == st.root[n.inputs[-1]], n.name
    assert len({st.root[n.outputs[0]] for n in res}) == 1


def test_plan_cache_keeps_at_most_max_plans_least_recently_used_dropped():
    import nnlite.nn as nn

    nnlite.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(3, 4)).eval()
    fast = nnlite.optimize_for_inference(model, max_plans=2)
    rng = np.random.default_rng(0)
    xs = {w: rng.standard_normal((1, 2, 5, w)).astype(np.float32) for w in (4, 6, 8)}
    with nnlite.no_grad():
        want = {w: model(nnlite.tensor(x)).data for w, x in xs.items()}

    def run(w):
        np.testing.assert_allclose(fast(xs[w]).data, want[w], rtol=1e-5, atol=1e-6)
        return [k[0][0][3] for k in fast.plans]        # the widths with a compiled plan

    assert run(4) == [4] and run(6) == [4, 6]
    assert run(4) == [6, 4]                             # a hit makes 4 the most recent
    assert run(8) == [4, 8]                             # 6, the least recently used, dropped
    assert run(6) == [8, 6]                             # recompiled on demand, same result
    frames = fast._local.frames                         # this thread's bound buffers
    assert set(frames) <= {k for k in fast._plans}
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="max_plans"):
            nnlite.optimize_for_inference(model, max_plans=bad)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the mean of an empty map: NaN
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 1, 5, 3), (1, 4, 1, 1), (2, 6, 7, 7), (1, 2, 0, 3)])
def test_global_pool_kernel_matches_a_loop(shape, dtype):
    # the plan's GlobalAveragePool (the adaptive pool's kernel on contiguous maps, else the
    # reduction) and GlobalMaxPool against sums and maxima taken element by element
    from nnlite._infer.kernels import GlobalPoolKernel

    rng = np.random.default_rng(0)
    big = rng.standard_normal((shape[0], 2 * shape[1]) + shape[2:]).astype(dtype)
    for x in (np.ascontiguousarray(big[:, :shape[1]]), big[:, ::2]):   # contiguous or strided
        n, c = shape[:2]
        for op in ("GlobalAveragePool", "GlobalMaxPool"):
            if op == "GlobalMaxPool" and x.size == 0:
                continue
            y = np.full((n, c, 1, 1), np.nan, dtype)
            GlobalPoolKernel(op).bind([x], [y], None)()
            want = np.empty((n, c))
            for i in range(n):
                for j in range(c):
                    vals = [float(v) for v in x[i, j].ravel()]
                    want[i, j] = (max(vals) if op == "GlobalMaxPool"
                                  else sum(vals) / len(vals) if vals else np.nan)
            np.testing.assert_allclose(y[:, :, 0, 0], want, rtol=1e-6 if dtype == np.float32
                                       else 1e-12, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_average_pool_runs_natively_not_on_numpys_blas(dtype, monkeypatch):
    # the average of contiguous maps is the adaptive pool's native kernel (on the plan's
    # threads): NumPy's matmul is never called; one channel, many channels, a batch, and
    # maps whose size is and is not a multiple of the kernel's 16 lanes
    from nnlite._infer.kernels import GlobalPoolKernel
    from nnlite.kernels.pool_cython import _pool
    if _pool is None:
        pytest.skip("nnlite._pool not built")

    def no_matmul(*args, **kwargs):
        raise AssertionError("np.matmul called")
    monkeypatch.setattr(np, "matmul", no_matmul)
    rng = np.random.default_rng(1)
    for shape in [(1, 1, 7, 7), (1, 1280, 7, 7), (3, 20, 4, 4), (2, 9, 1, 33)]:
        x = rng.standard_normal(shape).astype(dtype)
        y = np.full(shape[:2] + (1, 1), np.nan, dtype)
        GlobalPoolKernel("GlobalAveragePool").bind([x], [y], None)()
        want = x.astype(np.float64).reshape(shape[0], shape[1], -1).sum(-1) / (shape[2] * shape[3])
        np.testing.assert_allclose(y[:, :, 0, 0], want,
                                   rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-7)


@pytest.mark.parametrize("axes,keepdim", [((2, 3), False), ((-1, -2), False), ((2, 3), True),
                                          ((1, 2), False)])
def test_spatial_mean_becomes_the_global_pool(axes, keepdim):
    # x.mean((2, 3)) (MobileNetV2's head) is the plan's GlobalAveragePool (+ a view to (N, C)
    # without keepdim), not a generic node; other axes stay generic. Values against np.mean
    # in float64.
    class Head(nn.Module):
        def forward(self, x):
            return (x * 2.0).mean(axes, keepdim=keepdim)

    x = np.random.default_rng(3).standard_normal((2, 5, 7, 6)).astype(np.float32)
    fast = nnlite.optimize_for_inference(Head())
    got = fast.run_arrays(x)
    got = got[0] if isinstance(got, (list, tuple)) else got
    np.testing.assert_allclose(got, (2.0 * x.astype(np.float64)).mean(axes, keepdims=keepdim),
                               rtol=1e-5, atol=1e-6)
    ops = [n.op for n, _, _ in fast._plans[next(iter(fast._plans))][0].steps]
    spatial = sorted(a % 4 for a in axes) == [2, 3]
    assert ("GlobalAveragePool" in ops) == spatial
    assert ("nnlite.Function" in ops) == (not spatial)


@pytest.mark.parametrize("hw,residual", [((7, 7), True), ((5, 9), False), ((14, 14), False)])
def test_pointwise_batch_on_small_maps_is_one_product(hw, residual):
    # a 1x1 conv over a batch of small maps runs as ONE GEMM over every (image, pixel) column
    # (kernels.ConvKernel.split_batch): the same bits as one product per image, and the values
    # of a float64 einsum (+ bias, residual, ReLU)
    from nnlite._infer import kernels
    if kernels._gemm_ext is None:
        pytest.skip("needs the compiled GEMM")
    ConvKernel = kernels.ConvKernel
    rng = np.random.default_rng(7)
    N, C, F = 3, 40, 72
    x = rng.standard_normal((N, C) + hw).astype(np.float32)
    w = (rng.standard_normal((F, C, 1, 1)) / np.sqrt(C)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    r = rng.standard_normal((N, F) + hw).astype(np.float32) if residual else None
    attrs = {"kernel_shape": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0],
             "activation": "relu"}
    outs = []
    for split in (True, False):
        kern = ConvKernel(x.shape, w, b, attrs, residual, np.dtype(np.float32))
        assert kern.split_batch == (hw[0] * hw[1] < 64)
        kern.split_batch = kern.split_batch and split
        y = np.full((N, F) + hw, np.nan, np.float32)
        ins = [x, None, None, r] if residual else [x]
        kern.bind(ins, [y], np.empty(max(kern.scratch_bytes, 64), np.uint8))()
        outs.append(y)
    assert np.array_equal(outs[0], outs[1])
    want = np.einsum("fc,nchw->nfhw", w[:, :, 0, 0].astype(np.float64), x) + b[:, None, None]
    if residual:
        want = want + r
    np.testing.assert_allclose(outs[0], np.maximum(want, 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw,F,residual,bias,act", [
    ((7, 7), 72, True, True, "relu"),      # narrow: run transposed (column-major write-out)
    ((5, 9), 8, False, False, None),       # few filters: the plain orientation
    ((14, 13), 72, False, True, "relu6"),
    ((1, 1), 3, True, False, None),        # one pixel, three filters: the skinny product
])
def test_pointwise_conv_at_batch_1_is_one_direct_gemm_call(hw, F, residual, bias, act,
                                                           monkeypatch):
    """One image's 1x1 conv is bound to one call of the native GEMM on views made at bind time
    (``ConvKernel._bind_pointwise``): the same bits as the general path (``_conv_gemm.forward``
    -> ``gemm_into``), which it runs instead when another GEMM family is selected at run time
    than its packed weights serve; the values of a float64 einsum."""
    from nnlite._infer import kernels
    from nnlite.kernels import gemm_ops
    if kernels._gemm_ext is None:
        pytest.skip("needs the compiled GEMM")
    rng = np.random.default_rng(F)
    C = 24
    x = rng.standard_normal((1, C) + hw).astype(np.float32)
    w = (rng.standard_normal((F, C, 1, 1)) / np.sqrt(C)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32) if bias else None
    r = rng.standard_normal((1, F) + hw).astype(np.float32) if residual else None
    attrs = {"kernel_shape": [1, 1], "activation": act}
    kern = kernels.ConvKernel(x.shape, w, b, attrs, residual, np.dtype(np.float32))
    calls, general = [], kernels._conv_gemm.forward
    monkeypatch.setattr(kernels._conv_gemm, "forward",
                        lambda *a, **k: calls.append(1) or general(*a, **k))
    outs = []
    for family in (None, "generic"):
        y = np.full((1, F) + hw, np.nan, np.float32)
        ins = [x, None, None, r] if residual else [x]
        run = kern.bind(ins, [y], np.empty(max(kern.scratch_bytes, 64), np.uint8))
        if family is None:
            run()
            assert calls == []                 # the direct call: no general path
        else:
            with gemm_ops.using_microkernel(family):
                run()
            assert calls == [1]   # weights packed for another family: the general path
        outs.append(y)
    want = np.einsum("fc,nchw->nfhw", w[:, :, 0, 0].astype(np.float64), x)
    if bias:
        want = want + b[:, None, None]
    if residual:
        want = want + r
    if act:
        want = np.clip(want, 0, 6 if act == "relu6" else np.inf)
    np.testing.assert_allclose(outs[0], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outs[1], want, rtol=1e-5, atol=1e-5)
    # the same bits as the general path on the same family
    monkeypatch.setattr(kernels.ConvKernel, "_bind_pointwise", lambda self, *a: a[-1])
    y = np.full((1, F) + hw, np.nan, np.float32)
    kern.bind([x, None, None, r] if residual else [x], [y],
              np.empty(max(kern.scratch_bytes, 64), np.uint8))()
    assert np.array_equal(y, outs[0])
