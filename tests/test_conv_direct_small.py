"""The direct small-map conv kernel (csrc/convfast_small.c, ``nnlite._convfast.conv2d_small``,
'direct' for stride-1 convs that are not depthwise) and its weight gradient
(``conv2d_small_weight_grad``) against the naive-loop reference, and the gradients of a conv
that runs them (the input gradient of a stride-1 conv is the forward kernel on the flipped
weight) against float64 central differences.

Oracles: ``nnlite.kernels.conv_reference`` (loops sharing no code with the kernel) and
tests/gradcheck.py.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import nnlite
import nnlite.nn.functional as F
from nnlite._algorithms import SMALL_MAX_PIXELS, resolve, small_pays, small_weight_grad_pays
from nnlite._convgeom import conv2d_geometry
from nnlite.kernels import conv_cython, conv_reference as ref

from conftest import assert_close, kernel_threads, reference_epilogue
from gradcheck import check_grad

convfast = pytest.importorskip("nnlite._convfast") if nnlite._config.cython_built() else None
needs_ext = pytest.mark.skipif(convfast is None, reason="nnlite built without its extension")


@st.composite
def small_case(draw):
    """A stride-1 conv: non-square kernels, dilation, padding up to beyond the kernel, groups
    (one channel per group included), batch 1-3, maps 1-12 wide."""
    g = draw(st.sampled_from([1, 1, 2, 3]))
    cg, fg = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    lo_h, lo_w = max(1, (kh - 1) * dh + 1 - 2 * ph), max(1, (kw - 1) * dw + 1 - 2 * pw)
    h, w = draw(st.integers(lo_h, max(lo_h, 12))), draw(st.integers(lo_w, max(lo_w, 12)))
    return dict(n=draw(st.integers(1, 3)), g=g, c=g * cg, f=g * fg, h=h, w=w, k=(kh, kw),
                d=(dh, dw), p=(ph, pw))


@needs_ext
@given(case=small_case(), dtype=st.sampled_from([np.float32, np.float64]),
       act=st.sampled_from([0, 1, 2]), beta=st.sampled_from([0.0, 1.0]),
       bias=st.booleans())
def test_small_kernel_matches_reference(case, dtype, act, beta, bias):
    rng = np.random.default_rng(3)
    n, c, f, g = case["n"], case["c"], case["f"], case["g"]
    # x a channel slice of a larger image, y one of a larger output (strided operands)
    big_x = rng.standard_normal((n, c + 3, case["h"], case["w"])).astype(dtype)
    x = big_x[:, 1:1 + c]
    w = rng.standard_normal((f, c // g) + case["k"]).astype(dtype)
    b = rng.standard_normal(f).astype(dtype) if bias else None
    geom = conv2d_geometry(x.shape, w.shape, None, 1, case["p"], case["d"], g)
    big_y = rng.standard_normal((n, f + 2, geom.l)).astype(dtype)
    before = big_y.copy()
    y = big_y[:, 1:1 + f]
    conv = ref.conv2d(np.ascontiguousarray(x), w, b, 1, case["p"], case["d"], g)
    expect = reference_epilogue(conv.reshape(n, f, -1).astype(np.float64) + beta * y, act)
    y_in = y.copy()
    convfast.conv2d_small(x, w.reshape(f, -1), b, y, g, *case["k"], *case["p"], *case["d"],
                          geom.oh, geom.ow, act=act, beta=beta, num_threads=2)
    assert_close(y, expect, dtype, k=geom.k, scale=4)
    np.testing.assert_array_equal(big_y[:, :1], before[:, :1])        # neighbours untouched
    np.testing.assert_array_equal(big_y[:, 1 + f:], before[:, 1 + f:])
    # the weights packed once (an inference plan's): the same values, bit for bit
    packed = convfast.conv2d_small_pack(w.reshape(f, -1), c, g, *case["k"])
    assert packed.dtype == dtype and packed.size % 4 == 0
    y2 = y_in.copy()
    convfast.conv2d_small(x, w.reshape(f, -1), b, y2, g, *case["k"], *case["p"], *case["d"],
                          geom.oh, geom.ow, act=act, beta=beta, num_threads=2, packed=packed)
    np.testing.assert_array_equal(y2, y)


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, c, f, g, hw, k, p, d", [
    (1, 32, 30, 1, 14, (3, 3), (1, 1), (1, 1)),   # one image: its filters split over threads
    (1, 48, 30, 3, 16, (3, 2), (2, 0), (2, 1)),   # groups: a run of blocks crosses a group
    (2, 16, 21, 1, 13, (3, 3), (1, 1), (1, 1)),   # two images on three threads
    (1, 64, 4, 1, 16, (3, 3), (1, 1), (1, 1)),    # one filter block: nothing to split
])
def test_small_kernel_splits_filters_of_few_images(n, c, f, g, hw, k, p, d, dtype):
    # fewer images than threads: each image's (group, filter block) pairs are cut into runs,
    # one per thread; every output is reduced as on one thread (bit for bit) and matches the
    # reference; bias, beta and the activation apply per filter
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, c, hw, hw)).astype(dtype)
    w = rng.standard_normal((f, c // g) + k).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    geom = conv2d_geometry(x.shape, w.shape, None, 1, p, d, g)
    assert n * f * geom.l * geom.k >= 2 * (1 << 18)     # above the 2-thread cut-off
    y0 = rng.standard_normal((n, f, geom.l)).astype(dtype)
    conv = ref.conv2d(x, w, b, 1, p, d, g)
    expect = reference_epilogue(conv.reshape(n, f, -1).astype(np.float64) + y0, 2)
    outs = []
    for nt in (1, 2, 3, 4):
        y = y0.copy()
        convfast.conv2d_small(x, w.reshape(f, -1), b, y, g, *k, *p, *d, geom.oh, geom.ow,
                              act=2, beta=1.0, num_threads=nt)
        outs.append(y)
    assert_close(outs[0], expect, dtype, k=geom.k, scale=4)
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])


@needs_ext
@given(case=small_case(), dtype=st.sampled_from([np.float32, np.float64]))
def test_small_weight_grad_matches_reference(case, dtype):
    rng = np.random.default_rng(7)
    n, c, f, g = case["n"], case["c"], case["f"], case["g"]
    big_x = rng.standard_normal((n, c + 2, case["h"], case["w"])).astype(dtype)
    x = big_x[:, 2:]                                        # a channel slice (strided)
    w = rng.standard_normal((f, c // g) + case["k"]).astype(dtype)
    geom = conv2d_geometry(x.shape, w.shape, None, 1, case["p"], case["d"], g)
    gy = rng.standard_normal((n, f, geom.oh, geom.ow)).astype(dtype)
    _, expect, _ = ref.conv2d_grads(np.ascontiguousarray(x), w, gy, 1, case["p"], case["d"], g)
    gw = np.full((f, geom.k), np.nan, dtype)
    convfast.conv2d_small_weight_grad(x, gy, gw, g, *case["k"], *case["p"], *case["d"],
                                      num_threads=2)
    assert_close(gw.reshape(w.shape), expect, dtype, k=n * geom.l, scale=4)


@needs_ext
def test_small_weight_grad_rule_and_dispatch(monkeypatch):
    # 'direct' asked for takes it for any stride-1 dense conv ('auto' does not yet: see
    # nnlite._algorithms.small_weight_grad_pays)
    def geom(n, c, f, hw, k, stride=1, groups=1):
        return conv2d_geometry((n, c, hw, hw), (f, c // groups, k, k), None, stride, k // 2, 1,
                               groups)
    assert not small_weight_grad_pays(geom(32, 8, 16, 8, 3), 4, "auto")
    assert small_weight_grad_pays(geom(32, 8, 16, 8, 3), 4, "direct")
    assert small_weight_grad_pays(geom(32, 16, 32, 4, 3), 4, "direct")
    assert not small_weight_grad_pays(geom(32, 8, 16, 8, 3, stride=2), 4, "direct")
    assert not small_weight_grad_pays(geom(32, 8, 8, 8, 3, groups=8), 4, "direct")
    assert not small_weight_grad_pays(geom(32, 8, 16, 8, 3), 4, "implicit")
    assert not small_weight_grad_pays(geom(4096, 64, 64, 16, 3), 4, "direct")   # > 16 MB
    calls = []
    real = convfast.conv2d_small_weight_grad
    monkeypatch.setattr(conv_cython._convfast, "conv2d_small_weight_grad",
                        lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 8, 8, 8)).astype(np.float32)
    gy = rng.standard_normal((4, 16, 8, 8)).astype(np.float32)
    g8 = conv2d_geometry(x.shape, (16, 8, 3, 3), None, 1, 1, 1, 1)
    with nnlite.conv_algorithm("auto"):
        conv_cython.conv2d_backward_weight(gy, x, g8)
    assert calls == []
    with nnlite.conv_algorithm("direct"):
        gw = conv_cython.conv2d_backward_weight(gy, x, g8)
    assert calls == [1]
    _, expect, _ = ref.conv2d_grads(x, np.zeros((16, 8, 3, 3), np.float32), gy, 1, 1)
    assert_close(gw, expect, np.float32, k=4 * 64, scale=4)


@needs_ext
def test_weight_grad_with_inf_input_keeps_exact_nan_pattern():
    # an inf pixel that a dropped flat-grid column reaches (0 * inf = NaN in the kernel's sum)
    # must not turn a finite weight gradient into NaN: conv2d_backward_weight recomputes
    x = np.array([[[[1.5, np.inf]], [[-0.5, -1.0]]]], np.float32)       # (1, 2, 1, 2)
    gy = np.array([[[[0.75]]]], np.float32)                               # 'valid' 1x2 -> 1x1
    geom = conv2d_geometry(x.shape, (1, 2, 1, 2), None, 1, 0, 1, 1)
    raw = np.empty((1, 4), np.float32)
    convfast.conv2d_small_weight_grad(x, gy, raw, 1, 1, 2, 0, 0, 1, 1)
    assert np.isnan(raw[0, 0])                                            # the kernel's NaN
    with nnlite.conv_algorithm("direct"):
        gw = conv_cython.conv2d_backward_weight(gy, x, geom)
    np.testing.assert_array_equal(gw.reshape(-1), [1.125, np.inf, -0.375, -0.75])


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [
    (32, 8, 16, 8, (3, 3), 1),     # the digits net's inception1 3x3 branch
    (32, 16, 32, 4, (3, 3), 1),    # inception2 3x3 (4x4 map)
    (32, 8, 16, 4, (5, 5), 2),     # inception2 5x5 (padding as wide as the map)
    (5, 6, 9, 11, (2, 4), (0, 3)),  # odd: even/non-square kernel, asymmetric padding use
    (2, 4, 8, 16, (3, 3), 1),      # 256 output pixels (the 'auto' limit)
])
def test_auto_runs_direct_on_small_maps(shape, dtype):
    n, c, f, hw, k, p = shape
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, c, hw, hw)).astype(dtype)
    w = rng.standard_normal((f, c) + k).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    geom = conv2d_geometry(x.shape, w.shape, b.shape, 1, p, 1, 1)
    assert conv_cython.native_algorithm(geom)[0] == "direct"
    with nnlite.using_backend("cython"), nnlite.conv_algorithm("auto"):
        y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), nnlite.tensor(b), padding=p)
    assert_close(y, ref.conv2d(x, w, b, 1, p), dtype, k=geom.k, scale=4)


@needs_ext
def test_threads_give_identical_results():
    # each image is reduced in the same order whichever thread owns it
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 6, 8, 8)).astype(np.float32)
    w = rng.standard_normal((12, 6, 3, 3)).astype(np.float32)
    geom = conv2d_geometry(x.shape, w.shape, None, 1, 1, 1, 1)
    outs = []
    for nt in (1, 2):
        with kernel_threads(nt):
            outs.append(conv_cython.conv2d_forward(x, w, None, geom, algorithm="direct"))
    np.testing.assert_array_equal(outs[0], outs[1])


@needs_ext
@pytest.mark.parametrize("algo", ["auto", "direct"])
def test_gradients_match_finite_differences(algo):
    # stride 1: the forward AND the input gradient (a conv of gy with the flipped weight, here
    # padding 4 - 1 = 3 rows and 2 - 2 = 0 columns) run the small-map kernel
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 4, 5))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(4)
    geom = conv2d_geometry(x.shape, w.shape, b.shape, 1, (1, 2), (2, 1), 1)
    assert resolve(geom, algo) == "direct"

    def fn(xt, wt, bt):
        with nnlite.using_backend("cython"), nnlite.conv_algorithm(algo):
            return F.conv2d(xt, wt, bt, padding=(1, 2), dilation=(2, 1))

    check_grad(fn, [x, w, b], rtol=1e-6, atol=1e-8)


@needs_ext
def test_auto_rule():
    def geom(n, c, f, hw, k, stride=1, groups=1):
        return conv2d_geometry((n, c, hw, hw), (f, c // groups, k, k), None, stride, k // 2, 1,
                               groups)
    assert small_pays(geom(32, 8, 16, 8, 3)) and small_pays(geom(32, 8, 16, 4, 5))
    assert small_pays(geom(2, 4, 8, 16, 3))                  # 256 pixels
    assert not small_pays(geom(2, 4, 8, 17, 3))              # 289 > SMALL_MAX_PIXELS
    assert SMALL_MAX_PIXELS == 256
    assert not small_pays(geom(32, 8, 16, 8, 1))             # 1x1: the GEMM on the image
    assert not small_pays(geom(32, 8, 16, 8, 3, stride=2))   # strided
    assert not small_pays(geom(32, 8, 8, 8, 3, groups=8))    # depthwise: its own kernel
    assert small_pays(geom(32, 8, 16, 8, 3, groups=2))       # grouped
    # a stride that never applies (a single output row/column) counts as stride 1
    one_row = conv2d_geometry((4, 3, 3, 6), (5, 3, 3, 3), None, (5, 1), (0, 1), 1, 1)
    assert one_row.oh == 1 and small_pays(one_row)
    # an inference plan's single image: maps up to 28x28 below SMALL_SPLIT_FLOPS_PREPARED,
    # ahead of Winograd (a plan's batch still takes Winograd first; F.conv2d's rule, whose
    # weights are not prepared, is unchanged)
    assert not small_pays(geom(1, 16, 32, 28, 3)) and small_pays(geom(1, 16, 32, 28, 3), True)
    assert not small_pays(geom(1, 16, 32, 29, 3), True)      # 841 > 784 pixels
    assert not small_pays(geom(2, 16, 32, 28, 3), True)      # a batch: 256 pixels per image
    assert not small_pays(geom(1, 96, 96, 28, 3), True)      # 130 MFLOP: the GEMMs' threads
    wide = geom(1, 48, 128, 7, 3)
    assert resolve(wide, "auto") == "im2col"
    assert resolve(wide, "auto", weights_prepared=True) == "direct"
    assert resolve(geom(4, 48, 128, 7, 3), "auto", weights_prepared=True) == "winograd"
    assert resolve(geom(1, 256, 256, 14, 3), "auto", weights_prepared=True) == "winograd"


@needs_ext
def test_bad_arguments_raise_value_error():
    x = np.zeros((2, 3, 5, 5), np.float32)
    y = np.zeros((2, 4, 25), np.float32)
    with pytest.raises(ValueError, match="columns"):
        convfast.conv2d_small(x, np.zeros((4, 26), np.float32), None, y, 1, 3, 3, 1, 1, 1, 1,
                              5, 5)
    with pytest.raises(ValueError, match="act"):
        convfast.conv2d_small(x, np.zeros((4, 27), np.float32), None, y, 1, 3, 3, 1, 1, 1, 1,
                              5, 5, act=3)
    with pytest.raises(ValueError, match="y has shape"):
        convfast.conv2d_small(x, np.zeros((4, 27), np.float32), None, y[:, :, :24], 1, 3, 3,
                              1, 1, 1, 1, 5, 5)
    with pytest.raises(ValueError, match="groups"):
        convfast.conv2d_small(x, np.zeros((4, 9), np.float32), None, y, 2, 3, 3, 1, 1, 1, 1,
                              5, 5)
    with pytest.raises(ValueError, match="padding"):
        convfast.conv2d_small(x, np.zeros((4, 27), np.float32), None, y, 1, 3, 3, -1, 1, 1, 1,
                              5, 5)
    # an empty batch computes nothing
    convfast.conv2d_small(np.zeros((0, 3, 5, 5), np.float32), np.zeros((4, 27), np.float32),
                          None, np.zeros((0, 4, 25), np.float32), 1, 3, 3, 1, 1, 1, 1, 5, 5)
    # weights packed for another shape, or of another dtype
    w = np.zeros((4, 27), np.float32)
    with pytest.raises(ValueError, match="packed has 36 elements"):
        convfast.conv2d_small(x, w, None, y, 1, 3, 3, 1, 1, 1, 1, 5, 5,
                              packed=np.zeros(36, np.float32))
    with pytest.raises((ValueError, TypeError)):
        convfast.conv2d_small(x, w, None, y, 1, 3, 3, 1, 1, 1, 1, 5, 5,
                              packed=convfast.conv2d_small_pack(w.astype(np.float64), 3, 1, 3, 3))
    with pytest.raises(ValueError, match="columns"):
        convfast.conv2d_small_pack(w, 4, 1, 3, 3)
    with pytest.raises(ValueError, match="groups=2"):
        convfast.conv2d_small_pack(np.zeros((3, 27), np.float32), 6, 2, 3, 3)


@needs_ext
@pytest.mark.parametrize("f", [64, 30])     # 30: a last block of 2 filters
def test_inference_plan_packs_small_conv_weights_once(f):
    # a plan's small-map conv multiplies weights packed once, with the same arithmetic as a
    # call that packs them (F.conv2d under 'direct'): the same bits
    nnlite.manual_seed(0)
    conv = nnlite.nn.Conv2d(24, f, 3, padding=1)
    model = nnlite.nn.Sequential(conv, nnlite.nn.ReLU()).eval()
    x = np.random.default_rng(5).standard_normal((1, 24, 14, 14)).astype(np.float32)
    fast = nnlite.optimize_for_inference(model)
    got = fast(x).data
    (plan, _), = fast._plans.values()
    kernel, = [s.kernel for s in plan.steps if hasattr(s.kernel, "w_native")]
    assert kernel.algorithm == "direct" and isinstance(kernel.w_native, np.ndarray)
    with nnlite.no_grad(), nnlite.conv_algorithm("direct"):
        want = F.relu(F.conv2d(nnlite.tensor(x), conv.weight, conv.bias, padding=1)).data
    np.testing.assert_array_equal(got, want)


@needs_ext
def test_workspace_bytes():
    # packed weights G * ceil(FG/4) * CG*KH*KW * 4 elements, plus a share per thread
    one = convfast.small_workspace_bytes(32, 8, 8, 8, 16, 1, 3, 3, 1, 1, 1, 1, 8, 8, 4, 1)
    two = convfast.small_workspace_bytes(32, 8, 8, 8, 16, 1, 3, 3, 1, 1, 1, 1, 8, 8, 4, 2)
    assert 2 * one - two == 4 * (4 * 8 * 9 * 4)
    assert two - one >= 4 * 8 * 10 * 10              # at least the 8 padded 10x10 planes
    with pytest.raises(ValueError):
        convfast.small_workspace_bytes(1, 8, 8, 8, 16, 1, 3, 3, 1, 1, 1, 1, 8, 8, 3, 1)
