"""F.conv2d / nn.Conv2d: vs the naive-loop reference on every backend, special paths vs the general
path, float64 gradchecks, padding modes vs numpy.pad, memory, every error path, optional torch."""
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from nnlite import kernels
from nnlite._convgeom import conv2d_geometry
from nnlite.kernels import conv_reference as ref

from conftest import assert_close
from conv_cases import conv2d_case, with_fixture
from gradcheck import check_grad

DTYPES = [np.float32, np.float64]


def _data(case, dtype, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"])).astype(dtype)
    w = rng.standard_normal((case["f"], case["c"] // case["g"], case["kh"], case["kw"]))
    b = rng.standard_normal(case["f"]).astype(dtype) if bias else None
    return x, w.astype(dtype), b


def _args(case):
    return case["stride"], case["padding"], case["dilation"], case["g"]


# ------------------------------------------------------------------ values
def test_conv2d_hand_example_no_kernel_flip(backend):
    # docs/semantics.md §1.3: x = delta at (0, 0), w = arange(9), padding 1
    # -> y[0,0] = w[1,1], y[0,1] = w[1,0]
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 0, 0] = 1
    w = np.arange(9.0).reshape(1, 1, 3, 3)
    y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), padding=1).data
    assert y[0, 0, 0, 0] == 4 and y[0, 0, 0, 1] == 3 and y[0, 0, 1, 0] == 1 and y[0, 0, 1, 1] == 0


@with_fixture
@given(case=conv2d_case(), dtype=st.sampled_from(DTYPES), bias=st.booleans())
def test_conv2d_matches_reference(backend, case, dtype, bias):
    x, w, b = _data(case, dtype, bias=bias)
    xt, wt = nnlite.tensor(x, requires_grad=True), nnlite.tensor(w, requires_grad=True)
    bt = None if b is None else nnlite.tensor(b, requires_grad=True)
    y = F.conv2d(xt, wt, bt, *_args(case))
    expect = ref.conv2d(x.astype(np.float64), w.astype(np.float64),
                        None if b is None else b.astype(np.float64), *_args(case))
    assert y.shape == expect.shape and y.dtype == dtype
    k = w.shape[1] * w.shape[2] * w.shape[3]
    scale = np.abs(x).max() * np.abs(w).max() + 1
    assert_close(y, expect, dtype, k=k, scale=scale)
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    y.backward(gy)
    gx, gw, gb = ref.conv2d_grads(x.astype(np.float64), w.astype(np.float64),
                                  gy.astype(np.float64), *_args(case))
    assert xt.grad.dtype == dtype and wt.grad.dtype == dtype
    assert_close(xt.grad, gx, dtype, k=case["f"] * k, scale=np.abs(gy).max() * np.abs(w).max())
    assert_close(wt.grad, gw, dtype, k=gy[0, 0].size * case["n"],
                 scale=np.abs(gy).max() * np.abs(x).max())
    if b is not None:
        assert_close(bt.grad, gb, dtype, k=gy[0, 0].size * case["n"], scale=np.abs(gy).max())


@given(case=conv2d_case())
def test_conv2d_reference_backend_is_the_loop_reference(case):
    # the study mode (backend 'reference') runs the naive loops end to end, gradients included
    x, w, b = _data(case, np.float64)
    xt, wt, bt = (nnlite.tensor(a, requires_grad=True) for a in (x, w, b))
    with nnlite.using_backend("reference"):
        y = F.conv2d(xt, wt, bt, *_args(case))
    gy = np.random.default_rng(2).standard_normal(y.shape)
    y.backward(gy)   # outside the context: backward uses the backend of the forward
    np.testing.assert_allclose(y.data, ref.conv2d(x, w, b, *_args(case)), rtol=1e-12)
    gx, gw, gb = ref.conv2d_grads(x, w, gy, *_args(case))
    np.testing.assert_allclose(xt.grad, gx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(wt.grad, gw, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bt.grad, gb, rtol=1e-10, atol=1e-12)


def test_conv2d_reference_loops_independent_of_fast_paths():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(ref))
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for a in node.names}
    imported |= {(node.module or "") + ":" + a.name for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) for a in node.names}
    assert imported == {"numpy", ":register"}, imported


# ---------------------------------------------------------- special paths
@with_fixture
@given(n=st.integers(1, 3), g=st.sampled_from([1, 2, 4]), fg=st.integers(1, 3),
       h=st.integers(1, 6), w=st.integers(1, 6))
def test_conv2d_pointwise_path_matches_general_path(backend, n, g, fg, h, w):
    rng = np.random.default_rng(3)
    c, f = 4, g * fg
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((f, c // g, 1, 1))
    geom = conv2d_geometry(x.shape, wt.shape, None, 1, 0, (2, 3), g)
    assert geom.is_pointwise and geom.workspace_bytes(np.float64) == 0
    gy = rng.standard_normal((n, f, h, w))
    for op, args in (("conv2d_forward", (x, wt, None)), ("conv2d_backward_input", (gy, wt)),
                     ("conv2d_backward_weight", (gy, x))):
        fn = kernels.impl(op)
        np.testing.assert_allclose(fn(*args, geom), fn(*args, geom, general=True),
                                   rtol=1e-12, atol=1e-12)
    # and it is the einsum over channels
    y = kernels.impl("conv2d_forward")(x, wt, None, geom)
    expect = np.einsum("gfc,ngchw->ngfhw", wt.reshape(g, fg, c // g),
                       x.reshape(n, g, c // g, h, w)).reshape(n, f, h, w)
    np.testing.assert_allclose(y, expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride,padding", [(2, 0), (1, 1), ((1, 2), 0)])
def test_conv2d_1x1_with_stride_or_padding_is_not_pointwise(backend, stride, padding):
    # darknet's defect: keying the shortcut on kernel size alone
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 1, 1))
    geom = conv2d_geometry(x.shape, w.shape, None, stride, padding)
    assert not geom.is_pointwise
    y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), None, stride, padding).data
    np.testing.assert_allclose(y, ref.conv2d(x, w, None, stride, padding), rtol=1e-12)


@with_fixture
@given(case=conv2d_case(), dtype=st.sampled_from(DTYPES))
def test_conv2d_groups_equal_concat_of_per_group_convs(backend, case, dtype):
    x, w, b = _data(case, dtype)
    g, cg, fg = case["g"], case["c"] // case["g"], case["f"] // case["g"]
    s, p, d, _ = _args(case)
    y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), nnlite.tensor(b), s, p, d, g).data
    parts = [F.conv2d(nnlite.tensor(np.ascontiguousarray(x[:, i * cg:(i + 1) * cg])),
                      nnlite.tensor(np.ascontiguousarray(w[i * fg:(i + 1) * fg])),
                      nnlite.tensor(b[i * fg:(i + 1) * fg]), s, p, d, 1).data for i in range(g)]
    assert_close(y, np.concatenate(parts, axis=1), dtype, k=cg * case["kh"] * case["kw"],
                 scale=np.abs(x).max() * np.abs(w).max() + 1)


def test_conv2d_depthwise_matches_reference(backend):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 9, 8)).astype(np.float32)
    w = rng.standard_normal((12, 1, 3, 2)).astype(np.float32)     # channel multiplier 2
    y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), None, (2, 1), (1, 3), (2, 1), 6)
    expect = ref.conv2d(x.astype(np.float64), w.astype(np.float64), None, (2, 1), (1, 3),
                        (2, 1), 6)
    assert_close(y, expect, np.float32, k=6, scale=20)


def test_conv2d_no_python_loop_over_groups(backend, monkeypatch):
    # grouped and depthwise convs: the group axis is a batch axis of the GEMM, never a Python
    # loop of per-group GEMM calls
    from nnlite.kernels import _conv_gemm, gemm_ops

    calls, batches = [], []
    real = _conv_gemm.matmul
    monkeypatch.setattr(_conv_gemm, "matmul", lambda a, b, out=None: calls.append(1) or
                        real(a, b, out=out))
    real_batched = gemm_ops.gemm_batched
    monkeypatch.setattr(gemm_ops, "gemm_batched", lambda a, b, *args, **kw: batches.append(
                        a.shape[0] if a.ndim == 3 else b.shape[0]) or
                        real_batched(a, b, *args, **kw))
    rng = np.random.default_rng(6)
    x = nnlite.tensor(rng.standard_normal((3, 8, 6, 6)), requires_grad=True)
    w = nnlite.tensor(rng.standard_normal((8, 1, 3, 3)), requires_grad=True)
    # pinned to im2col + GEMM: under 'auto' the cython backend runs depthwise on a direct kernel
    with nnlite.conv_algorithm("im2col"):
        F.conv2d(x, w, None, 1, 1, 1, 8).sum().backward()
    if backend == "numpy":
        assert len(calls) == 3               # forward, input-gradient, weight-gradient
    else:
        # nnlite's GEMM: every call batches all 8 groups (per image at most, never per group)
        assert batches and set(batches) == {8}, batches
        assert len(batches) <= 3 * 3         # 3 routines x 3 images


# ------------------------------------------------------------------ padding
@with_fixture
@given(k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       hw=st.tuples(st.integers(1, 7), st.integers(1, 7)))
def test_conv2d_same_padding_splits_extra_pixel_right_bottom(backend, k, d, hw):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, *hw))
    w = rng.standard_normal((3, 2, *k))
    th, tw = d[0] * (k[0] - 1), d[1] * (k[1] - 1)
    y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), padding="same", dilation=d).data
    assert y.shape[2:] == hw
    xp = np.pad(x, ((0, 0), (0, 0), (th // 2, th - th // 2), (tw // 2, tw - tw // 2)))
    np.testing.assert_allclose(y, ref.conv2d(xp, w, None, 1, 0, d), rtol=1e-10, atol=1e-12)
    if hw[0] > th and hw[1] > tw:
        valid = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), padding="valid", dilation=d).data
        np.testing.assert_allclose(valid, ref.conv2d(x, w, None, 1, 0, d), rtol=1e-10)


MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("padding", [1, (2, 1), "same"])
def test_conv2d_padding_modes_match_numpy_pad(backend, mode, padding):
    nnlite.manual_seed(0)
    m = nn.Conv2d(2, 3, (3, 4), padding=padding, padding_mode=mode, dilation=(1, 1),
                  dtype=np.float64)
    x = np.random.default_rng(8).standard_normal((2, 2, 5, 6))
    if padding == "same":
        pads = ((1, 1), (1, 2))        # total k-1 = (2, 3): extra pixel right
    else:
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        pads = ((ph, ph), (pw, pw))
    xp = np.pad(x, ((0, 0), (0, 0)) + pads, mode=MODES[mode])
    y = m(nnlite.tensor(x)).data
    np.testing.assert_allclose(y, ref.conv2d(xp, m.weight.data, m.bias.data), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("mode", sorted(MODES) + ["zeros"])
def test_conv2d_module_padding_mode_gradcheck(mode):
    nnlite.manual_seed(1)
    m = nn.Conv2d(2, 2, (2, 3), padding=(1, 2), padding_mode=mode, stride=(2, 1),
                  dtype=np.float64)
    w, b = m.weight.data.copy(), m.bias.data.copy()
    x = np.random.default_rng(9).standard_normal((1, 2, 4, 3))

    def fn(xt, wt, bt):
        m.weight.data, m.bias.data = wt.data, bt.data
        if mode == "zeros":
            return F.conv2d(xt, wt, bt, m.stride, m.padding)
        return F.conv2d(F.pad(xt, m._reversed_padding_repeated_twice, mode=mode), wt, bt,
                        m.stride)

    check_grad(fn, [x, w, b])
    # and the module's own forward builds the same graph
    m.weight.data, m.bias.data = w, b
    xt = nnlite.tensor(x, requires_grad=True)
    m(xt).sum().backward()
    xt2 = nnlite.tensor(x, requires_grad=True)
    fn(xt2, nnlite.tensor(w), nnlite.tensor(b)).sum().backward()
    np.testing.assert_allclose(xt.grad, xt2.grad, rtol=1e-12)


# ------------------------------------------------------------------ gradients
@pytest.mark.parametrize("geo", [
    dict(stride=1, padding=0, dilation=1, groups=1, k=(3, 3)),
    dict(stride=(2, 1), padding=(1, 3), dilation=(1, 2), groups=1, k=(2, 3)),
    dict(stride=(1, 3), padding=(2, 0), dilation=(2, 1), groups=2, k=(3, 1)),
    dict(stride=2, padding=1, dilation=1, groups=4, k=(3, 3)),      # depthwise
    dict(stride=1, padding=0, dilation=1, groups=2, k=(1, 1)),      # pointwise path
])
def test_conv2d_gradcheck(backend, geo):
    rng = np.random.default_rng(10)
    g = geo["groups"]
    x = rng.standard_normal((2, 4, 5, 6))
    w = rng.standard_normal((4, 4 // g) + geo["k"])
    b = rng.standard_normal(4)
    check_grad(lambda xt, wt, bt: F.conv2d(xt, wt, bt, geo["stride"], geo["padding"],
                                           geo["dilation"], g), [x, w, b])


def test_conv2d_unbatched_round_trip(backend):
    rng = np.random.default_rng(11)
    x, w, b = rng.standard_normal((3, 5, 4)), rng.standard_normal((2, 3, 2, 2)), np.ones(2)
    y3 = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), nnlite.tensor(b), 1, 1)
    y4 = F.conv2d(nnlite.tensor(x[None]), nnlite.tensor(w), nnlite.tensor(b), 1, 1)
    assert y3.shape == (2, 6, 5)
    np.testing.assert_allclose(y3.data, y4.data[0], rtol=1e-12)
    check_grad(lambda xt, wt: F.conv2d(xt, wt, None, 2, (0, 1)), [x, w])


def test_conv2d_empty_batch(backend):
    x = nnlite.tensor(np.zeros((0, 3, 5, 5), np.float32), requires_grad=True)
    w = nnlite.tensor(np.ones((4, 3, 3, 3), np.float32), requires_grad=True)
    b = nnlite.tensor(np.ones(4, np.float32), requires_grad=True)
    y = F.conv2d(x, w, b, 2, 1)
    assert y.shape == (0, 4, 3, 3)
    y.sum().backward()
    assert x.grad.shape == (0, 3, 5, 5) and not w.grad.any() and not b.grad.any()
    # with an empty batch a zero spatial size is allowed too (as torch)
    x0 = nnlite.tensor(np.zeros((0, 1, 0, 3), np.float32), requires_grad=True)
    y0 = F.conv2d(x0, nnlite.tensor(np.ones((2, 1, 1, 1), np.float32)), padding=1)
    assert y0.shape == (0, 2, 2, 5)
    y0.sum().backward()
    assert x0.grad.shape == (0, 1, 0, 3)


def test_conv2d_zero_input_channels(backend):
    # an empty reduction: y = bias. (torch returns (N, 0, OH, OW) here, dropping the output
    # channels; nnlite keeps the F channels the weight asks for.)
    y = F.conv2d(nnlite.tensor(np.zeros((1, 0, 4, 4))), nnlite.tensor(np.zeros((2, 0, 3, 3))),
                 nnlite.tensor(np.array([1.0, 2.0])))
    assert y.shape == (1, 2, 2, 2)
    np.testing.assert_array_equal(y.data[0, :, 0, 0], [1.0, 2.0])


@pytest.mark.parametrize("big", [2 ** 31, 2 ** 63 - 1, 2 ** 63, 2 ** 70])
def test_conv2d_huge_stride_no_overflow(backend, big):
    # one output pixel: the stride never multiplies a nonzero index (no int64 overflow in C)
    x, w = np.ones((1, 1, 5, 5), np.float32), np.ones((1, 1, 3, 3), np.float32)
    y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), stride=big)
    np.testing.assert_array_equal(y.data, np.full((1, 1, 1, 1), 9, np.float32))
    yt = F.conv_transpose2d(nnlite.tensor(x[:, :, :1, :1]), nnlite.tensor(w), stride=big)
    np.testing.assert_array_equal(yt.data, np.ones((1, 1, 3, 3), np.float32))
    # absurd padding with a matching stride: a correct small result or a clean error
    try:
        y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), stride=big, padding=big)
    except (ValueError, MemoryError):
        return
    np.testing.assert_array_equal(y.data, ref.conv2d(x.astype(np.float64), w.astype(np.float64),
                                                      None, big, big))


# ------------------------------------------------------------------ memory
def test_conv2d_no_hidden_column_copies(backend):
    # forward: output + ONE column workspace (+ an image-sized padded copy on numpy);
    # backward: gx + gw + one workspace at a time. A second column buffer would show up here.
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 16, 24, 24)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    geom = conv2d_geometry(x.shape, w.shape, None, 1, 1)
    ws = geom.workspace_bytes(np.float32)
    assert ws == 4 * 16 * 9 * 24 * 24 * 4
    y_bytes = 4 * 16 * 24 * 24 * 4
    gy = rng.standard_normal((4, 16, 24, 24)).astype(np.float32)
    xt, wt = nnlite.tensor(x, requires_grad=True), nnlite.tensor(w, requires_grad=True)
    slack = 256 * 1024
    tracemalloc.start()
    try:
        y = F.conv2d(xt, wt, None, 1, 1)
        _, peak_fwd = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        y.backward(gy)
        _, peak_bwd = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_fwd <= y_bytes + ws + 1.2 * x.nbytes + slack, (peak_fwd, ws)
    assert peak_bwd <= y_bytes + ws + 2.2 * x.nbytes + w.nbytes * 5 + slack, (peak_bwd, ws)


# ------------------------------------------------------------------ errors
ERRORS = [
    (dict(x=(1, 4, 5, 5), w=(6, 2, 3, 3)), ValueError,
     r"Given groups=1, weight of size \[6, 2, 3, 3\], expected input\[1, 4, 5, 5\] to have 2 "
     r"channels, but got 4 channels instead"),
    (dict(x=(1, 4, 5, 5), w=(5, 2, 3, 3), groups=2), ValueError,
     r"Given groups=2, expected weight to be divisible by 2 at dimension 0, but got weight of "
     r"size \[\[5, 2, 3, 3\]\] instead"),
    (dict(x=(1, 1, 2, 2), w=(1, 1, 3, 3)), ValueError,
     r"Calculated padded input size per channel: \(2 x 2\). Kernel size: \(3 x 3\)"),
    (dict(x=(1, 1, 4, 4), w=(1, 1, 3, 3), dilation=2), ValueError,
     r"padded input size per channel: \(4 x 4\). Kernel size: \(5 x 5\)"),
    (dict(x=(1, 1, 4, 4), w=(1, 1, 3, 3), stride=0), ValueError, "non-positive stride"),
    (dict(x=(1, 1, 4, 4), w=(1, 1, 3, 3), stride=(1, -1)), ValueError, "non-positive stride"),
    (dict(x=(1, 1, 4, 4), w=(1, 1, 3, 3), dilation=0), ValueError,
     r"dilation should be greater than zero, but got \[0, 0\]"),
    (dict(x=(1, 1, 4, 4), w=(1, 1, 3, 3), padding=-1), ValueError,
     "negative padding is not supported"),
    (dict(x=(1, 1, 4, 4), w=(1, 1, 3, 3), padding="full"), ValueError,
     "Invalid padding string: 'full'"),
    (dict(x=(1, 1, 4, 4), w=(1, 1, 3, 3), padding="same", stride=2), ValueError,
     "padding='same' is not supported for strided convolutions"),
    (dict(x=(1, 1, 4, 4), w=(1, 1, 3, 3), groups=0), ValueError,
     "non-positive groups is not supported"),
    (dict(x=(1, 4, 5, 5), w=(6, 4, 3, 3), b=(5,)), ValueError,
     r"Given weight of size \[6, 4, 3, 3\], expected bias to be 1-dimensional with 6 elements, "
     r"but got bias of size \[5\] instead"),
    (dict(x=(5, 5), w=(1, 1, 3, 3)), ValueError,
     r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv2d, but got input of size: "
     r"\[5, 5\]"),
    (dict(x=(1, 1, 1, 5, 5), w=(1, 1, 3, 3)), ValueError, "Expected 3D"),
    (dict(x=(1, 1, 5, 5), w=(1, 1, 3)), ValueError, "weight must be 4-dimensional"),
    (dict(x=(1, 1, 0, 5), w=(1, 1, 1, 1), padding=1), ValueError,
     "Only zero batch or zero channel inputs are supported"),
    (dict(x=(1, 1, 5, 5), w=(1, 1, 3, 3), xdt=np.float64), TypeError,
     "input dtype float64 and weight dtype float32 differ"),
    (dict(x=(1, 1, 5, 5), w=(1, 1, 3, 3), b=(1,), bdt=np.float64), TypeError,
     "input dtype float32 and bias dtype float64 differ"),
    (dict(x=(1, 1, 5, 5), w=(1, 1, 3, 3), xdt=np.int64, wdt=np.int64), TypeError,
     "input must be float32 or float64, got dtype int64"),
    (dict(x=(1, 1, 5, 5), w=(1, 1, 3, 3), stride=1.5), TypeError, "stride must be an int"),
    (dict(x=(1, 1, 5, 5), w=(1, 1, 3, 3), groups=1.0), TypeError, "groups must be an int"),
    # several faults at once: the first error is the one torch raises first
    (dict(x=(1, 4, 5, 5), w=(6, 2, 3, 3), stride=0, padding=-1), ValueError, "negative padding"),
    (dict(x=(1, 4, 5, 5), w=(6, 4, 3, 3), stride=0, dilation=0, groups=0), ValueError,
     "non-positive groups"),
    (dict(x=(1, 4, 5, 5), w=(6, 4, 3, 3), padding="foo", groups=0), ValueError,
     "Invalid padding string"),
    (dict(x=(1, 4, 5, 5), w=(6, 4, 3, 3), padding="same", stride=2, groups=0), ValueError,
     "non-positive groups"),
    (dict(x=(1, 3, 5, 5), w=(6, 4, 3, 3), dilation=0), ValueError, "expected input"),
    (dict(x=(1, 4, 2, 2), w=(6, 3, 3, 3), groups=2, b=(4,)), ValueError, "to have 6 channels"),
]


@pytest.mark.parametrize("spec,exc,msg", ERRORS)
def test_conv2d_rejects_bad_arguments(backend, spec, exc, msg):
    x = np.zeros(spec["x"], dtype=spec.get("xdt", np.float32))
    w = np.zeros(spec["w"], dtype=spec.get("wdt", np.float32))
    b = np.zeros(spec["b"], dtype=spec.get("bdt", np.float32)) if "b" in spec else None
    kw = {k: spec[k] for k in ("stride", "padding", "dilation", "groups") if k in spec}
    with pytest.raises(exc, match=msg):
        F.conv2d(nnlite.tensor(x), nnlite.tensor(w), None if b is None else nnlite.tensor(b),
                 **kw)


MODULE_ERRORS = [
    (dict(groups=0), "groups must be a positive integer"),
    (dict(in_channels=3, groups=2), "in_channels must be divisible by groups"),
    (dict(out_channels=5, groups=2), "out_channels must be divisible by groups"),
    (dict(padding="full"), r"Invalid padding string 'full', should be one of \{'valid', 'same'\}"),
    (dict(padding="same", stride=2), "padding='same' is not supported for strided convolutions"),
    (dict(padding_mode="constant"),
     r"padding_mode must be one of \{'zeros', 'reflect', 'replicate', 'circular'\}, but got "
     r"padding_mode='constant'"),
]


@pytest.mark.parametrize("kw,msg", MODULE_ERRORS)
def test_conv2d_module_rejects_bad_configuration(kw, msg):
    args = dict(in_channels=4, out_channels=4, kernel_size=3)
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        nn.Conv2d(**args)


# ------------------------------------------------------------------ module
def test_conv2d_module_attributes_init_and_state_dict():
    nnlite.manual_seed(0)
    m = nn.Conv2d(4, 6, (3, 5), stride=2, padding=(1, 2), dilation=(2, 1), groups=2)
    assert (m.in_channels, m.out_channels, m.groups) == (4, 6, 2)
    assert m.kernel_size == (3, 5) and m.stride == (2, 2) and m.padding == (1, 2)
    assert m.dilation == (2, 1) and m.padding_mode == "zeros" and m.output_padding == (0, 0)
    assert m.weight.shape == (6, 2, 3, 5) and m.bias.shape == (6,)
    assert m.weight.dtype == np.float32 and m.bias.dtype == np.float32
    bound = 1 / np.sqrt(2 * 3 * 5)                      # fan_in = (C/g) * kH * kW
    assert np.abs(m.weight.data).max() <= bound and np.abs(m.bias.data).max() <= bound
    assert np.abs(m.weight.data).max() > 0.8 * bound    # drawn from the whole range
    assert list(m.state_dict()) == ["weight", "bias"]
    assert repr(m) == ("Conv2d(4, 6, kernel_size=(3, 5), stride=(2, 2), padding=(1, 2), "
                       "dilation=(2, 1), groups=2)")
    nb = nn.Conv2d(1, 2, 3, bias=False, padding="same", padding_mode="reflect")
    assert nb.bias is None and list(nb.state_dict()) == ["weight"] and nb.padding == "same"
    assert repr(nb) == ("Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), padding=same, "
                        "bias=False, padding_mode=reflect)")
    assert nn.Conv2d(1, 1, 1, dtype=np.float64).weight.dtype == np.float64


def test_conv2d_module_forward_equals_functional(backend):
    nnlite.manual_seed(3)
    m = nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=1, groups=2)
    x = nnlite.tensor(np.random.default_rng(13).standard_normal((2, 4, 6, 7)).astype(np.float32))
    y = m(x)
    np.testing.assert_array_equal(
        y.data, F.conv2d(x, m.weight, m.bias, (1, 2), 1, 1, 2).data)
    y.sum().backward()
    assert m.weight.grad.shape == m.weight.shape and m.bias.grad.shape == (6,)


# ------------------------------------------------------------------ torch parity
@pytest.mark.torch
@with_fixture
@given(case=conv2d_case(), same=st.booleans())
def test_conv2d_torch_parity(backend, case, same):
    torch = pytest.importorskip("torch")
    x, w, b = _data(case, np.float64)
    s, p, d, g = _args(case)
    if same:
        s, p = (1, 1), "same"
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    with warnings.catch_warnings():   # torch warns that 'same' may copy the input
        warnings.simplefilter("ignore")
        yt = torch.nn.functional.conv2d(xt, wt, bt, s, p, d, g)
    gy = np.random.default_rng(14).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(gy))
    xn, wn, bn = (nnlite.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv2d(xn, wn, bn, s, p, d, g)
    y.backward(gy)
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    for mine, theirs in ((xn, xt), (wn, wt), (bn, bt)):
        np.testing.assert_allclose(mine.grad, theirs.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.torch
def test_conv2d_module_loads_torch_weights():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 1), groups=2,
                         padding_mode="circular").double()
    m = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 1), groups=2,
                  padding_mode="circular", dtype=np.float64)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(15).standard_normal((2, 4, 7, 5))
    np.testing.assert_allclose(m(nnlite.tensor(x)).data, tm(torch.tensor(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)
