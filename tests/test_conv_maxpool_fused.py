"""The few-channel conv with its max pool fused (``nnlite._convfast.conv2d_phase_maxpool``,
csrc/convfast_phase.c) and the plan's use of it (``passes._fuse_conv_pools`` ->
``kernels.ConvMaxPoolKernel``: an image model's 7x7/2 stem and the 3x3/2 max pool after it).

Oracles: the naive-loop conv (``nnlite.kernels.conv_reference``) followed by the naive-loop max
pool (``nnlite.kernels.pool_reference``), both sharing no code with the kernel; the claim that
the fused call gives the bits of the two unfused kernels; the eager model for the plans.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import nnlite
from nnlite import nn
from nnlite._infer import passes
from nnlite._infer.kernels import CONV_POOL_OP
from nnlite._convgeom import conv2d_geometry
from nnlite.kernels import conv_reference as ref
from nnlite.kernels import pool_reference as pref

from conftest import assert_close, kernel_threads, reference_epilogue

convfast = pytest.importorskip("nnlite._convfast") if nnlite._config.cython_built() else None
needs_ext = pytest.mark.skipif(convfast is None, reason="nnlite built without its extension")


def _pool_out(L, k, s, p, d, ceil):
    # PyTorch's rule: ceil mode drops a last window that would start in the end padding
    span = L + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= L + p:
        out -= 1
    return out


@st.composite
def conv_pool_case(draw):
    """A dense conv of 1-4 channels per group (groups 1-3, filters per group 1-9: the last
    block of 4 partial; kernels 1-7 non-square, strides and dilations 1-3 / 1-2, padding up to
    beyond the kernel) then a max pool over its output (windows 1-4, strides 1-3 not tiling,
    dilation 1-2, padding up to the window: some windows may lie wholly in the padding, floor
    or ceil mode), batch 1-3."""
    g = draw(st.sampled_from([1, 1, 2, 3]))
    cg, fg = draw(st.integers(1, 4)), draw(st.integers(1, 9))
    k = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, k[0] + 1)), draw(st.integers(0, k[1] + 1)))
    pk = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    ps = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pd = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pp = (draw(st.integers(0, pk[0])), draw(st.integers(0, pk[1])))
    ceil = draw(st.booleans())
    hw = []
    for i in (0, 1):
        conv_min = max(1, (k[i] - 1) * d[i] + 1 - 2 * p[i])
        L = draw(st.integers(conv_min, conv_min + 30))
        o = (L + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1
        if o + 2 * pp[i] < pd[i] * (pk[i] - 1) + 1:          # the pool must fit: grow L
            L += s[i] * (pd[i] * (pk[i] - 1) + 1 - o - 2 * pp[i])
        hw.append(L)
    return dict(n=draw(st.integers(1, 3)), g=g, c=g * cg, f=g * fg, hw=tuple(hw), k=k, s=s,
                d=d, p=p, pk=pk, ps=ps, pd=pd, pp=pp, ceil=ceil)


def _run_fused(x, w, b, case, geom, act, threads, y=None):
    n, f = x.shape[0], w.shape[0]
    po = tuple(_pool_out(o, case["pk"][i], case["ps"][i], case["pp"][i], case["pd"][i],
                         case["ceil"]) for i, o in enumerate((geom.oh, geom.ow)))
    if y is None:
        y = np.full((n, f, po[0] * po[1]), np.nan, x.dtype)
    pool = case["pk"] + case["ps"] + case["pp"] + case["pd"] + po
    convfast.conv2d_phase_maxpool(x, w.reshape(f, -1), b, y, case["g"], *case["k"],
                                  *case["s"], *case["p"], *case["d"], geom.oh, geom.ow, pool,
                                  act=act, num_threads=threads)
    return y, po


@needs_ext
@given(case=conv_pool_case(), dtype=st.sampled_from([np.float32, np.float64]),
       act=st.sampled_from([0, 1, 2]), bias=st.booleans(), threads=st.sampled_from([1, 2, 3]))
def test_fused_conv_pool_matches_reference_loops(case, dtype, act, bias, threads):
    rng = np.random.default_rng(5)
    n, c, f, g = case["n"], case["c"], case["f"], case["g"]
    big = rng.standard_normal((n, c + 2, case["hw"][0], case["hw"][1])).astype(dtype)
    x = big[:, 1:1 + c]                      # a channel slice: strided images
    w = rng.standard_normal((f, c // g) + case["k"]).astype(dtype)
    b = rng.standard_normal(f).astype(dtype) if bias else None
    geom = conv2d_geometry(x.shape, w.shape, None, case["s"], case["p"], case["d"], g)
    y, po = _run_fused(x, w, b, case, geom, act, threads)
    conv = ref.conv2d(np.ascontiguousarray(x), w, b, case["s"], case["p"], case["d"], g)
    conv = reference_epilogue(conv.astype(np.float64), act).reshape(n * f, geom.oh, geom.ow)
    expect, _ = pref.max_pool2d_forward(conv, case["pk"], case["ps"], case["pp"], case["pd"],
                                        case["ceil"])
    assert expect.shape == (n * f,) + po
    expect = expect.reshape(n, f, -1)
    inside = np.isfinite(expect)             # windows wholly in the padding: -inf
    np.testing.assert_array_equal(y[~inside], expect[~inside])
    assert_close(y[inside], expect[inside], dtype, k=geom.k, scale=4)


@needs_ext
@given(case=conv_pool_case(), threads=st.sampled_from([1, 2, 3]))
def test_fused_call_gives_the_bits_of_the_unfused_kernels(case, threads):
    # the few-channel kernel's sums, then the max pool's values: bit for bit
    from nnlite.kernels import pool_cython
    rng = np.random.default_rng(9)
    n, c, f, g = case["n"], case["c"], case["f"], case["g"]
    x = rng.standard_normal((n, c) + case["hw"]).astype(np.float32)
    w = rng.standard_normal((f, c // g) + case["k"]).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    geom = conv2d_geometry(x.shape, w.shape, None, case["s"], case["p"], case["d"], g)
    y, _ = _run_fused(x, w, b, case, geom, 1, threads)
    mid = np.empty((n, f, geom.oh * geom.ow), np.float32)
    convfast.conv2d_phase(x, w.reshape(f, -1), b, mid, g, *case["k"], *case["s"], *case["p"],
                          *case["d"], geom.oh, geom.ow, act=1, num_threads=1)
    pooled, _ = pool_cython.max_pool2d_forward(mid.reshape(n * f, geom.oh, geom.ow),
                                               case["pk"], case["ps"], case["pp"], case["pd"],
                                               case["ceil"], indices=False)
    np.testing.assert_array_equal(y, pooled.reshape(n, f, -1))


@needs_ext
@pytest.mark.parametrize("threads", [1, 2])
def test_resnet_stem_at_full_size(threads):
    # 3 -> 64 7x7/2 pad 3 on 224x224, ReLU, max pool 3x3/2 pad 1: 56x56; batch 2 with bands of
    # pooled rows whose windows share a conv row with the next band's
    rng = np.random.default_rng(3)
    case = dict(g=1, k=(7, 7), s=(2, 2), p=(3, 3), d=(1, 1), pk=(3, 3), ps=(2, 2), pp=(1, 1),
                pd=(1, 1), ceil=False)
    x = rng.standard_normal((2, 3, 224, 224)).astype(np.float32)
    w = (0.1 * rng.standard_normal((64, 3, 7, 7))).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    geom = conv2d_geometry(x.shape, w.shape, None, 2, 3, 1, 1)
    with kernel_threads(threads):
        y, po = _run_fused(x, w, b, case, geom, 1, threads)
    assert po == (56, 56)
    # the references on a few (image, filter) pairs (the loops are slow)
    for i, ch in ((0, 0), (1, 37), (0, 63)):
        conv = ref.conv2d(x[i:i + 1], w[ch:ch + 1], b[ch:ch + 1], 2, 3).astype(np.float64)
        expect, _ = pref.max_pool2d_forward(np.maximum(conv[0], 0), (3, 3), (2, 2), (1, 1),
                                            (1, 1), False)
        assert_close(y[i, ch].reshape(56, 56), expect[0], np.float32, k=147, scale=4)


@needs_ext
def test_bad_arguments_raise_value_error():
    x = np.zeros((2, 3, 9, 9), np.float32)
    w = np.zeros((4, 27), np.float32)
    y = np.zeros((2, 4, 4), np.float32)
    pool = (3, 3, 2, 2, 1, 1, 1, 1, 2, 2)   # over the 5x5 conv output of 3x3/2 pad 1
    convfast.conv2d_phase_maxpool(x, w, None, y, 1, 3, 3, 2, 2, 1, 1, 1, 1, 5, 5, pool)
    with pytest.raises(ValueError, match="pool must be"):
        convfast.conv2d_phase_maxpool(x, w, None, y, 1, 3, 3, 2, 2, 1, 1, 1, 1, 5, 5, pool[:9])
    for bad in (3, (3, 3, 2, 2, 1, 1, 1, 1, 2, 2.5), (3, 3, 2, 2, 1, 1, 1, 1, 2, "2")):
        with pytest.raises(ValueError, match="pool must be 10 integers"):
            convfast.conv2d_phase_maxpool(x, w, None, y, 1, 3, 3, 2, 2, 1, 1, 1, 1, 5, 5, bad)
    with pytest.raises(ValueError, match=r"pool window \(3, 3\), stride \(0, 2\)"):
        convfast.conv2d_phase_maxpool(x, w, None, y, 1, 3, 3, 2, 2, 1, 1, 1, 1, 5, 5,
                                      (3, 3, 0, 2, 1, 1, 1, 1, 2, 2))
    with pytest.raises(ValueError, match="padding"):
        convfast.conv2d_phase_maxpool(x, w, None, y, 1, 3, 3, 2, 2, 1, 1, 1, 1, 5, 5,
                                      (3, 3, 2, 2, -1, 1, 1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"y has shape \(2, 4, 4\); expected \(2, 4, 9\)"):
        convfast.conv2d_phase_maxpool(x, w, None, y, 1, 3, 3, 2, 2, 1, 1, 1, 1, 5, 5,
                                      (3, 3, 2, 2, 1, 1, 1, 1, 3, 3))
    with pytest.raises(ValueError, match="columns"):
        convfast.conv2d_phase_maxpool(x, np.zeros((4, 26), np.float32), None, y, 1, 3, 3, 2,
                                      2, 1, 1, 1, 1, 5, 5, pool)
    with pytest.raises(ValueError, match=r"a \(0, 5\) conv output cannot feed a pool"):
        convfast.conv2d_phase_maxpool(x, w, None, y, 1, 3, 3, 2, 2, 1, 1, 1, 1, 0, 5, pool)
    # an empty batch computes nothing
    convfast.conv2d_phase_maxpool(np.zeros((0, 3, 9, 9), np.float32), w, None,
                                  np.zeros((0, 4, 4), np.float32), 1, 3, 3, 2, 2, 1, 1, 1, 1,
                                  5, 5, pool)


@needs_ext
def test_workspace_bytes():
    # the unfused call's work memory, plus per thread a filter block's conv rows and the
    # pool's row buffers
    conv = (1, 3, 224, 224, 64, 1, 7, 7, 2, 2, 3, 3, 1, 1, 112, 112)
    pool = (3, 3, 2, 2, 1, 1, 1, 1, 56, 56)
    one = convfast.phase_maxpool_workspace_bytes(*conv, pool, 4, num_threads=1)
    two = convfast.phase_maxpool_workspace_bytes(*conv, pool, 4, num_threads=2)
    assert one >= 4 * 64 * 148 + 4 * 4 * 3 * 112     # the packed weights, a block of conv rows
    assert two > one
    with pytest.raises(ValueError):
        convfast.phase_maxpool_workspace_bytes(*conv, pool[:-1], 4)


class Stem(nn.Module):
    """conv -> BN -> ReLU -> max pool, and optionally another reader of the conv's output."""

    def __init__(self, c, f, k, s, p, pool, tap=False):
        super().__init__()
        self.conv = nn.Conv2d(c, f, k, stride=s, padding=p, bias=False)
        self.bn = nn.BatchNorm2d(f)
        self.pool = pool
        self.tap = tap

    def forward(self, x):
        y = nnlite.nn.functional.relu(self.bn(self.conv(x)))
        out = self.pool(y)
        return (out, y) if self.tap else out


def _plan_ops(fast):
    (plan, _), = fast._plans.values()
    return [s.node.op for s in plan.steps]


def _randomized(model, seed=0):
    rng = np.random.default_rng(seed)
    bn = model.bn
    bn.running_mean.data[:] = 0.2 * rng.standard_normal(bn.num_features)
    bn.running_var.data[:] = 0.5 + rng.random(bn.num_features)
    return model.eval()


@needs_ext
@pytest.mark.parametrize("shape, pool", [
    ((1, 3, 64, 64), nn.MaxPool2d(3, stride=2, padding=1)),            # ResNet's
    ((2, 3, 61, 57), nn.MaxPool2d(3, stride=2, ceil_mode=True)),       # GoogLeNet's
    ((1, 3, 48, 37), nn.MaxPool2d((2, 3), stride=(3, 1), padding=(1, 0))),
])
def test_plan_fuses_the_stem_and_its_pool(shape, pool):
    nnlite.manual_seed(0)
    model = _randomized(Stem(shape[1], 10, 7, 2, 3, pool))
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    with nnlite.no_grad():
        eager = model(nnlite.tensor(x)).data
    fast = nnlite.optimize_for_inference(model)
    got = fast(x)
    assert _plan_ops(fast) == [CONV_POOL_OP]
    assert_close(got, eager, np.float32, k=7 * 7 * shape[1], scale=4)
    # the same plan unfused: two steps, the same bits
    prev = passes.FUSE_POOLS
    passes.FUSE_POOLS = False
    try:
        unfused = nnlite.optimize_for_inference(model)
        np.testing.assert_array_equal(unfused(x), got)
        assert _plan_ops(unfused) == ["Conv", "MaxPool"]
    finally:
        passes.FUSE_POOLS = prev


@needs_ext
def test_plan_keeps_the_conv_when_its_output_is_read_elsewhere():
    # the conv's map is a model output too: it must go to memory, so no fusion
    nnlite.manual_seed(0)
    model = _randomized(Stem(3, 8, 7, 2, 3, nn.MaxPool2d(3, 2, 1), tap=True))
    x = np.random.default_rng(2).standard_normal((1, 3, 40, 40)).astype(np.float32)
    fast = nnlite.optimize_for_inference(model)
    out, mid = fast(x)
    assert CONV_POOL_OP not in _plan_ops(fast)
    with nnlite.no_grad():
        e_out, e_mid = model(nnlite.tensor(x))
    assert_close(out, e_out.data, np.float32, k=147, scale=4)
    assert_close(mid, e_mid.data, np.float32, k=147, scale=4)


@needs_ext
def test_plan_keeps_convs_other_kernels_run():
    # 32 input channels: the implicit GEMM or Winograd runs the conv, not the few-channel kernel
    nnlite.manual_seed(0)
    model = _randomized(Stem(32, 8, 3, 1, 1, nn.MaxPool2d(2, 2)))
    x = np.random.default_rng(3).standard_normal((1, 32, 20, 20)).astype(np.float32)
    fast = nnlite.optimize_for_inference(model)
    got = fast(x)
    assert _plan_ops(fast) == ["Conv", "MaxPool"]
    with nnlite.no_grad():
        assert_close(got, model(nnlite.tensor(x)).data, np.float32, k=288, scale=4)


@needs_ext
def test_nan_in_the_image_propagates_through_the_pool():
    # a NaN pixel makes NaN conv outputs; every window that reads one is NaN (the max pool's
    # rule), the others are finite: as the two unfused kernels give
    from nnlite.kernels import pool_cython
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 3, 40, 38)).astype(np.float32)
    x[0, 1, 17, 20] = np.nan
    w = rng.standard_normal((8, 3, 7, 7)).astype(np.float32)
    case = dict(g=1, k=(7, 7), s=(2, 2), p=(3, 3), d=(1, 1), pk=(3, 3), ps=(2, 2), pp=(1, 1),
                pd=(1, 1), ceil=False)
    geom = conv2d_geometry(x.shape, w.shape, None, 2, 3, 1, 1)
    y, po = _run_fused(x, w, None, case, geom, 0, 2)
    mid = np.empty((1, 8, geom.oh * geom.ow), np.float32)
    convfast.conv2d_phase(x, w.reshape(8, -1), None, mid, 1, 7, 7, 2, 2, 3, 3, 1, 1, geom.oh,
                          geom.ow)
    pooled, _ = pool_cython.max_pool2d_forward(mid.reshape(8, geom.oh, geom.ow), (3, 3), (2, 2),
                                               (1, 1), (1, 1), False, indices=False)
    nan = np.isnan(y)
    assert nan.any() and not nan.all()
    np.testing.assert_array_equal(y.reshape(pooled.shape), pooled)


@needs_ext
def test_kernel_runs_the_unfused_steps_on_arrays_the_native_call_cannot_take():
    # an image whose rows are not unit-stride (every other column of a wider array): the
    # kernel binds the conv and the max pool as two steps; the values match the fused call on
    # a contiguous copy (as close as the conv kernels' sums: another algorithm may run it)
    from nnlite._infer.kernels import ConvMaxPoolKernel
    rng = np.random.default_rng(6)
    wide = rng.standard_normal((1, 3, 64, 128)).astype(np.float32)
    x = wide[:, :, :, ::2]
    w = rng.standard_normal((16, 3, 7, 7)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    attrs = {"strides": [2, 2], "pads": [3, 3, 3, 3], "activation": "relu",
             "pool": {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}}
    kern = ConvMaxPoolKernel(x.shape, w, b, attrs, np.dtype(np.float32))
    assert kern.fused and kern.shape == (1, 16, 16, 16)
    scratch = np.empty(kern.scratch_bytes + 64, np.uint8)
    y = np.full(kern.shape, np.nan, np.float32)
    kern.bind([x], [y], scratch)()
    y2 = np.full(kern.shape, np.nan, np.float32)
    kern.bind([np.ascontiguousarray(x)], [y2], scratch)()
    assert_close(y, y2, np.float32, k=147, scale=4)
    with pytest.raises(ValueError, match="bound to arrays of shape"):
        kern.bind([x], [y[:, :8]], scratch)
