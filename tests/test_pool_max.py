"""max_pool2d: vs the naive-loop reference (values and indices exact), tie/NaN/padding rules,
the wholly-padded dilated window, gradients, modules and errors (docs/semantics.md §3)."""
import numpy as np
import pytest
from conftest import assert_close
from gradcheck import check_grad
from hypothesis import assume, given
from hypothesis import strategies as st
from pool_cases import inputs, make_input, pool_cases, with_fixture

import nnlite
import nnlite.functional as F
import nnlite.nn as nn
from nnlite import kernels

REF_FWD = kernels.impl("max_pool2d_forward", "reference")
REF_BWD = kernels.impl("max_pool2d_backward", "reference")


def _ref(x, c):
    N, C, H, W = x.shape
    y, idx = REF_FWD(x.reshape(N * C, H, W), c["kernel"], c["stride"], c["padding"],
                     c["dilation"], c["ceil_mode"])
    return y.reshape((N, C) + y.shape[1:]), idx.reshape((N, C) + y.shape[1:])


@with_fixture
@given(case=pool_cases(), inp=inputs)
def test_max_pool2d_matches_reference(backend, case, inp):
    kind, dtype, seed = inp
    x = make_input(case["shape"], kind, dtype, seed)
    xt = nnlite.tensor(x, requires_grad=True)
    y, idx = F.max_pool2d(xt, case["kernel"], case["stride"], case["padding"], case["dilation"],
                          case["ceil_mode"], return_indices=True)
    y_ref, idx_ref = _ref(x, case)
    assert y.dtype == x.dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(y.data, y_ref)
    np.testing.assert_array_equal(idx.data, idx_ref)
    gy = make_input(y.shape, "float", dtype, seed + 1)
    y.backward(gy)
    N, C, H, W = x.shape
    g_ref = REF_BWD(gy.reshape((N * C,) + gy.shape[2:]), idx_ref.reshape((N * C,) + gy.shape[2:]),
                    (H, W)).reshape(x.shape)
    assert_close(xt.grad, g_ref, dtype, k=4)


def test_max_pool2d_ties_pick_first_in_row_major_order(backend):
    x = nnlite.tensor(np.array([[[[1, 3], [3, 2]]]], dtype=np.float32))
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert y.data.item() == 3 and idx.data.item() == 1
    x = nnlite.tensor(np.full((1, 1, 3, 3), 5.0))
    y, idx = F.max_pool2d(x, 2, stride=1, return_indices=True)
    np.testing.assert_array_equal(idx.data.ravel(), [0, 1, 3, 4])


def test_max_pool2d_nan_propagates_with_last_nan_index(backend):
    x = np.array([1, np.nan, 5, np.nan, 2], dtype=np.float32).reshape(1, 1, 1, 5)
    y, idx = F.max_pool2d(nnlite.tensor(x), (1, 5), return_indices=True)
    assert np.isnan(y.data.item()) and idx.data.item() == 3


def test_max_pool2d_padding_acts_as_minus_infinity(backend):
    x = -np.arange(1, 10, dtype=np.float64).reshape(1, 1, 3, 3)  # all negative
    y = F.max_pool2d(nnlite.tensor(x), 3, stride=1, padding=1)
    assert y.data.max() < 0  # a zero padding would have won
    np.testing.assert_array_equal(y.data, _ref(x, dict(kernel=(3, 3), stride=(1, 1),
                                                       padding=(1, 1), dilation=(1, 1),
                                                       ceil_mode=False))[0])


def test_max_pool2d_all_minus_inf_window_keeps_first_tap_index(backend):
    x = np.full((1, 1, 2, 2), -np.inf)
    y, idx = F.max_pool2d(nnlite.tensor(x), 2, padding=1, return_indices=True)
    np.testing.assert_array_equal(y.data, -np.inf)
    np.testing.assert_array_equal(idx.data.ravel(), [0, 1, 2, 3])


def test_max_pool2d_window_wholly_in_padding_gives_minus_inf_and_no_gradient(backend):
    # H=1, k=2, d=3, p=1, ceil: the window's taps are at -1 and 2, both outside
    # (docs/semantics.md §3.6)
    x = nnlite.tensor(np.arange(7, dtype=np.float64).reshape(1, 1, 1, 7), requires_grad=True)
    y, idx = F.max_pool2d(x, (2, 1), stride=(2, 1), padding=(1, 0), dilation=(3, 1),
                          ceil_mode=True, return_indices=True)
    assert y.shape == (1, 1, 1, 7)
    np.testing.assert_array_equal(y.data, -np.inf)
    np.testing.assert_array_equal(idx.data, -1)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, 0)


def test_max_pool2d_ceil_mode_last_window_rule():
    # docs/semantics.md §3.2 worked sizes
    x = nnlite.tensor(np.zeros((1, 1, 5, 5), np.float32))
    assert F.max_pool2d(x, 2, 2, 1, ceil_mode=True).shape[-1] == 3
    x = nnlite.tensor(np.zeros((1, 1, 6, 6), np.float32))
    assert F.max_pool2d(x, 3, 2, ceil_mode=True).shape[-1] == 3
    assert F.max_pool2d(x, 3, 2, ceil_mode=False).shape[-1] == 2
    x = nnlite.tensor(np.zeros((1, 1, 1, 1), np.float32))
    assert F.max_pool2d(x, 2, 2, 1, ceil_mode=True).shape[-1] == 1


def test_max_pool2d_overlapping_windows_accumulate_gradient(backend):
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 9
    xt = nnlite.tensor(x, requires_grad=True)
    F.max_pool2d(xt, 2, stride=1).sum().backward()
    assert xt.grad[0, 0, 1, 1] == 4.0 and xt.grad.sum() == 4.0


@given(case=pool_cases(), seed=st.integers(0, 2 ** 31 - 1))
def test_max_pool2d_gradcheck(case, seed):
    x = make_input((1, 1) + case["shape"][2:], "distinct", np.float64, seed)

    def fn(t):
        return F.max_pool2d(t, case["kernel"], case["stride"], case["padding"],
                            case["dilation"], case["ceil_mode"])

    assume(np.isfinite(fn(nnlite.tensor(x)).data).all())  # no wholly-padded window
    check_grad(fn, [x])


def test_max_pool2d_unbatched_and_empty_batch(backend):
    x = make_input((3, 7, 6), "float", np.float32, 0)
    y3, i3 = F.max_pool2d(nnlite.tensor(x), 3, 2, 1, return_indices=True)
    y4, i4 = F.max_pool2d(nnlite.tensor(x[None]), 3, 2, 1, return_indices=True)
    assert y3.shape == (3, 4, 3) and i3.shape == (3, 4, 3)
    np.testing.assert_array_equal(y3.data, y4.data[0])
    np.testing.assert_array_equal(i3.data, i4.data[0])
    e = F.max_pool2d(nnlite.tensor(np.zeros((0, 2, 5, 5), np.float32), requires_grad=True), 2)
    assert e.shape == (0, 2, 2, 2)


@pytest.mark.parametrize("op", [
    lambda t: F.max_pool2d(t, 3, stride=1, padding=1),
    lambda t: F.max_pool2d(t, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), ceil_mode=True),
    lambda t: F.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=False),
    lambda t: F.adaptive_max_pool2d(t, (5, 7)),
    lambda t: F.adaptive_avg_pool2d(t, (5, 7)),
], ids=["max", "max-dilated-ceil", "avg", "adaptive-max", "adaptive-avg"])
def test_pools_threaded_match_numpy(monkeypatch, op):
    # many planes, overlapping windows, ties: the threaded kernels (forward, and backward
    # scatter-adds) must equal the NumPy ones
    if "cython" not in nnlite.available_backends():
        pytest.skip("Cython extension not built")
    monkeypatch.setattr(kernels.pool_cython, "_SERIAL_WORK", 0)  # force the threaded path
    x = make_input((4, 32, 23, 29), "int", np.float32, 3)
    outs, grads = [], []
    for b in ("cython", "numpy"):
        with nnlite.using_backend(b):
            xt = nnlite.tensor(x, requires_grad=True)
            y = op(xt)
            y.backward(np.ones(y.shape, np.float32))
            outs.append(y.data)
            grads.append(xt.grad)
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6, atol=1e-6)


def test_maxpool2d_module_attributes_and_repr():
    m = nn.MaxPool2d(3, 2, 1)
    assert (m.kernel_size, m.stride, m.padding, m.dilation) == (3, 2, 1, 1)
    assert m.ceil_mode is False and m.return_indices is False
    assert repr(m) == "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)"
    assert nn.MaxPool2d((2, 3)).stride == (2, 3)
    m = nn.MaxPool2d(2, None, 0, 1, True, True)  # return_indices before ceil_mode
    assert m.return_indices is True and m.ceil_mode is True
    y, idx = m(nnlite.tensor(np.zeros((1, 1, 5, 5), np.float32)))
    assert y.shape == (1, 1, 3, 3) and idx.shape == (1, 1, 3, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kernel_size=2, padding=2), r"padH = 2, padW = 2, kH = 2, kW = 2"),
    (dict(kernel_size=2, padding=-1), r"non-negative.*-1"),
    (dict(kernel_size=0), r"stride should not be zero"),
    (dict(kernel_size=0, stride=1), r"kernel size should be greater than zero.*kH: 0 kW: 0"),
    (dict(kernel_size=2, stride=-1), r"dH: -1 dW: -1"),
    (dict(kernel_size=2, dilation=0), r"dilationH: 0 dilationW: 0"),
    (dict(kernel_size=(2, 3), padding=(1, 2)), r"padH = 1, padW = 2, kH = 2, kW = 3"),
    (dict(kernel_size=2, dilation=3, padding=2), r"padH = 2"),  # dilation does not relax it
    (dict(kernel_size=5), r"\(1x4x4\).*\(1x0x0\).*too small"),
])
def test_max_pool2d_rejects_bad_arguments(kwargs, match):
    x = nnlite.tensor(np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match=match):
        F.max_pool2d(x, **kwargs)


def test_max_pool2d_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"3D or 4D.*\(4, 4\)"):
        F.max_pool2d(nnlite.tensor(np.zeros((4, 4), np.float32)), 2)
    with pytest.raises(ValueError, match=r"\[1, 0, 4, 4\]"):
        F.max_pool2d(nnlite.tensor(np.zeros((1, 0, 4, 4), np.float32)), 2)
    with pytest.raises(TypeError, match="int32"):
        F.max_pool2d(np.zeros((1, 1, 4, 4), np.int32), 2)
    with pytest.raises(TypeError, match="kernel_size"):
        F.max_pool2d(nnlite.tensor(np.zeros((1, 1, 4, 4), np.float32)), 2.5)
    with pytest.raises(TypeError, match="stride"):
        F.max_pool2d(nnlite.tensor(np.zeros((1, 1, 4, 4), np.float32)), 2, stride=(1, 2, 3))


@pytest.mark.parametrize("fn, want", [(F.max_pool2d, 24.0), (F.avg_pool2d, None)])
def test_pools_with_huge_kernel_and_padding_are_fast_and_exact(backend, fn, want):
    # only the taps that reach the input are visited: a 2**32+1 kernel costs nothing
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    y = fn(nnlite.tensor(x), kernel_size=2 ** 32 + 1, padding=2 ** 31)
    assert y.shape == (1, 1, 1, 1)
    if want is not None:
        assert y.data.item() == want
    else:  # count_include_pad: the whole (2**32+1)**2 window divides
        np.testing.assert_allclose(y.data.item(), 300 / float(2 ** 32 + 1) ** 2, rtol=1e-12)
    y = fn(nnlite.tensor(x), kernel_size=3, stride=2 ** 62)
    assert y.data.item() == (12.0 if fn is F.max_pool2d else 6.0)


@pytest.mark.parametrize("arg", ["kernel_size", "stride", "padding", "dilation"])
def test_max_pool2d_rejects_values_beyond_int64_arithmetic(arg):
    x = nnlite.tensor(np.zeros((1, 1, 5, 5), np.float32))
    kwargs = dict(kernel_size=3)
    kwargs[arg] = 2 ** 63
    with pytest.raises(ValueError, match=rf"{arg}=\(9223372036854775808, "):
        F.max_pool2d(x, **kwargs)


# ------------------------------------------------- the kernel (nnlite._pool.max_pool2d_forward)
# One kernel serves F.max_pool2d / nn.MaxPool2d (indices when a gradient or return_indices needs
# them) and the inference plan's MaxPool (no indices, 4-D views with any strides but W's, e.g.
# channel slices of a concatenation buffer). Oracles: the naive-loop reference
# (nnlite/kernels/pool_reference.py; values and indices) and, for output sizes beyond the pool
# geometry (windows wholly in the padding), the definition below, one output at a time.
def _pool_kernel():
    if not nnlite._config.cython_built():
        pytest.skip("nnlite built without its Cython extensions")
    from nnlite import _pool
    return _pool


def _naive_max_pool(x, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """The definition in docs/semantics.md, one output at a time (shares nothing with the kernel):
    the max over the in-image taps, NaN if one of them is NaN, -inf if there is none."""
    N, C, H, W = x.shape
    y = np.full((N, C, oh, ow), -np.inf, x.dtype)
    for i in range(oh):
        rows = [i * sh - pt + a * dh for a in range(kh) if 0 <= i * sh - pt + a * dh < H]
        for j in range(ow):
            cols = [j * sw - pl + b * dw for b in range(kw) if 0 <= j * sw - pl + b * dw < W]
            if rows and cols:
                y[:, :, i, j] = x[:, :, rows][:, :, :, cols].max(axis=(2, 3))  # NaN wins
    return y


def _pool_out(size, k, s, p, d, ceil):
    span = size + 2 * p - d * (k - 1) - 1
    return max(1, (-(-span // s) if ceil else span // s) + 1)


def _ref_planes(x, k, s, p, d, out):
    """pool_reference's (y, idx) of x (N, C, H, W) when its geometry (floor or ceil mode) gives
    ``out``, else None."""
    N, C, H, W = x.shape
    for ceil in (False, True):
        y, idx = REF_FWD(np.ascontiguousarray(x).reshape(N * C, H, W), k, s, p, d, ceil)
        if y.shape[1:] == tuple(out):
            return y.reshape(N, C, *out), idx.reshape(N, C, *out)
    return None


def _pool_input(rng, shape, dtype, specials, equal=False):
    """Values with ties (small integers, -0 and +0) and, when specials, +-inf in some planes and
    NaN in about a third of the planes (at random spots, possibly outside every window); with
    equal, every fifth plane is one value throughout."""
    x = rng.integers(-4, 4, shape).astype(dtype)
    x[(x == 0) & (rng.random(shape) < 0.5)] = -0.0
    if specials:
        planes = x.reshape(-1, shape[2] * shape[3])
        for q in range(planes.shape[0]):
            kind = rng.integers(0, 6)
            if kind <= 1:
                planes[q, rng.integers(0, planes.shape[1], 1 + kind)] = np.nan
            elif kind == 2:
                planes[q, rng.integers(0, planes.shape[1], 2)] = [np.inf, -np.inf]
            elif kind == 3:
                planes[q] = -np.inf
    if equal:
        x.reshape(-1, shape[2] * shape[3])[::5] = 2.0
    return x


def _run_pool_case(ops, rng, dtype, shape, k, s, p, d, out, specials=True, slices=False,
                   equal=False):
    """The kernel with and without indices, on 1 and 2 threads, vs the naive definition
    (values) and the reference (values, signs of zeros, indices); bit-identical results.
    Returns the input and the indices."""
    (kh, kw), (sh, sw), (pt, pl), (dh, dw), (oh, ow) = k, s, p, d, out
    n, c, h, w = shape
    x = _pool_input(rng, shape, dtype, specials, equal)
    want = _naive_max_pool(x, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    ref = _ref_planes(x, k, s, p, d, out)
    if slices:   # channel slices of bigger buffers (C stride and, for y, row stride too)
        big = np.full((n, c + 3, h, w + 2), 5.0, dtype)
        big[:, 1:c + 1, :, :w] = x
        x = big[:, 1:c + 1, :, :w]
        bigy = np.full((n, c + 2, oh, ow + 3), 7.0, dtype)
        bigi = np.full((n, c + 2, oh, ow + 3), 7, np.int64)
    ys = []
    for threads in (1, 2):
        for with_idx in (False, True):
            if slices:
                bigy[...] = 7.0
                y = bigy[:, 1:c + 1, :, :ow]
                idx = bigi[:, 1:c + 1, :, :ow] if with_idx else None
            else:
                y = np.full((n, c, oh, ow), 7.0, dtype)
                idx = np.full((n, c, oh, ow), 7, np.int64) if with_idx else None
            ops.max_pool2d_forward(x, y, idx, kh, kw, sh, sw, pt, pl, dh, dw, threads)
            np.testing.assert_array_equal(y, want, err_msg=f"{shape} k{k} s{s} p{p} d{d} o{out}")
            if ref is not None:
                np.testing.assert_array_equal(y, ref[0])
                if with_idx:
                    np.testing.assert_array_equal(idx, ref[1])
                    # the value at the index: the reference's -0 or +0
                    np.testing.assert_array_equal(np.signbit(y), np.signbit(ref[0]))
            if slices:
                assert (bigy[:, [0, c + 1]] == 7).all() and (bigy[..., ow:] == 7).all()
                if with_idx:
                    assert (bigi[:, [0, c + 1]] == 7).all() and (bigi[..., ow:] == 7).all()
            ys.append(np.ascontiguousarray(y).tobytes())
            if with_idx:
                ys.append(np.ascontiguousarray(idx).tobytes())
    assert ys[0] == ys[3] and ys[1] == ys[4] and ys[2] == ys[5]  # whatever the thread count
    return x, np.frombuffer(ys[2], np.int64).reshape(n, c, oh, ow)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_matches_reference_with_ties_and_nan(dtype):
    """Random geometries that F.max_pool2d accepts: values and indices vs the reference."""
    ops = _pool_kernel()
    rng = np.random.default_rng(6)
    done = 0
    while done < 80:
        n, c = rng.integers(1, 3), rng.integers(1, 4)
        (kh, kw), (sh, sw), (dh, dw) = (rng.integers(1, 5, 2), rng.integers(1, 4, 2),
                                        rng.integers(1, 3, 2))
        ph, pw = rng.integers(0, kh // 2 + 1), rng.integers(0, kw // 2 + 1)
        (h, w), ceil = rng.integers(1, 10, 2), bool(rng.integers(0, 2))
        x = rng.integers(-3, 3, (n, c, h, w)).astype(dtype)
        if done % 4 == 0:
            x.flat[rng.integers(0, x.size)] = np.nan
        try:
            ref = F.max_pool2d(nnlite.tensor(x), (kh, kw), (sh, sw), (ph, pw), (dh, dw),
                               ceil).data
        except ValueError:
            continue
        ry, ri = REF_FWD(x.reshape(n * c, h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil)
        y = np.empty(ref.shape, dtype)
        ops.max_pool2d_forward(x, y, None, kh, kw, sh, sw, ph, pw, dh, dw, 2)
        np.testing.assert_array_equal(y, ref)
        np.testing.assert_array_equal(y, ry.reshape(ref.shape))
        idx = np.empty(ref.shape, np.int64)
        ops.max_pool2d_forward(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw, 2)
        np.testing.assert_array_equal(y, ry.reshape(ref.shape))
        np.testing.assert_array_equal(idx, ri.reshape(ref.shape))
        done += 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_matches_naive_loop_on_odd_geometries(dtype):
    """Random geometries: non-square kernels, strides and dilations (stride != dilation),
    padding up to kernel // 2, sizes the stride does not tile, ceil mode and even larger
    outputs (windows wholly in the padding give -inf, index -1), 1x1 planes, rows from 1 to 3
    vectors wide (every kernel path), channel-slice views; NaN, +-inf and all -inf planes."""
    ops = _pool_kernel()
    rng = np.random.default_rng(11)
    for case in range(300):
        (kh, kw), (sh, sw), (dh, dw) = (rng.integers(1, 6, 2), rng.integers(1, 4, 2),
                                        rng.integers(1, 3, 2))
        pt, pl = rng.integers(0, kh // 2 + 1), rng.integers(0, kw // 2 + 1)
        h, w = rng.integers(1, 12), int(rng.choice([1, 2, 5, 9, 15, 16, 17, 23, 33, 40, 70]))
        if case % 10 == 0:
            h, w = 1, 1
        ceil = bool(rng.integers(0, 2))
        oh = _pool_out(h, kh, sh, pt, dh, ceil) + int(rng.integers(0, 2) * (case % 7 == 0))
        ow = _pool_out(w, kw, sw, pl, dw, ceil) + int(rng.integers(0, 2) * (case % 7 == 0))
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 5)), h, w)
        _run_pool_case(ops, rng, dtype, shape, (kh, kw), (sh, sw), (pt, pl), (dh, dw),
                       (oh, ow), slices=case % 3 == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k, s, p, d, hw", [
    ((3, 3), (2, 2), (0, 0), (1, 1), (30, 60)),     # stride 2, rows of 2-4 vectors
    ((3, 3), (2, 2), (1, 1), (1, 1), (13, 75)),     # stride 2 pairs, odd width
    ((2, 2), (2, 2), (0, 0), (1, 1), (8, 130)),     # 2x2/2: one load pair
    ((3, 2), (2, 2), (1, 1), (1, 2), (9, 101)),     # stride 2, dilation 2 (no pairs)
    ((3, 3), (1, 1), (1, 1), (1, 1), (7, 150)),     # stride 1, long rows
    ((1, 5), (1, 1), (0, 2), (1, 1), (3, 97)),      # 1x5 "same"
    ((2, 3), (3, 3), (1, 1), (2, 1), (17, 64)),     # stride 3: gathers
    ((3, 3), (3, 1), (1, 1), (1, 3), (20, 50)),     # stride 3 rows, dilation 3 columns
    ((1, 1), (2, 3), (0, 0), (1, 1), (11, 200)),    # subsampling
    ((2, 11), (1, 2), (1, 5), (1, 1), (5, 90)),     # wider than the register path allows
    ((3, 3), (2, 2), (0, 0), (1, 1), (112, 112)),   # GoogLeNet's first pool
    ((3, 3), (1, 1), (1, 1), (1, 1), (14, 14)),
])
def test_kernel_fixed_geometries(dtype, k, s, p, d, hw):
    """Each column-access pattern of the kernel, on planes from tiny to 112x112, with
    specials, and as slices; outputs one row/column larger than ceil mode too."""
    ops = _pool_kernel()
    rng = np.random.default_rng(12)
    h, w = hw
    for ceil, extra in ((False, 0), (True, 0), (True, 1)):
        out = (_pool_out(h, k[0], s[0], p[0], d[0], ceil) + extra,
               _pool_out(w, k[1], s[1], p[1], d[1], ceil) + extra)
        _run_pool_case(ops, rng, dtype, (1, 3, h, w), k, s, p, d, out)
        _run_pool_case(ops, rng, dtype, (2, 2, h, w), k, s, p, d, out, slices=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_nan_exactness(dtype):
    """A NaN counts only where a window reads it: NaN in rows/columns that no window reads
    (stride > kernel) leaves the output NaN-free, a NaN late in a large plane makes exactly
    the outputs whose windows hold it NaN (the kernel switches to the exact select mid-plane),
    and planes with reversed rows (negative row stride) work; indices as the reference's."""
    ops = _pool_kernel()
    for h, w in ((9, 9), (70, 70), (200, 33)):
        x = np.arange(h * w, dtype=dtype).reshape(1, 1, h, w) % 17
        x = np.repeat(x, 3, axis=1)
        x[0, 0, 1::3, :] = np.nan      # rows that a 1x1 stride-3 pool never reads
        x[0, 1, :, 2::3] = np.nan      # columns likewise
        x[0, 2, h - 2, w // 2] = np.nan
        for k, s in ((1, 3), (2, 3), (3, 2), (3, 1)):
            oh, ow = _pool_out(h, k, s, 0, 1, False), _pool_out(w, k, s, 0, 1, False)
            want = _naive_max_pool(x, k, k, s, s, 0, 0, 1, 1, oh, ow)
            for xv, wv in ((x, want), (x[:, :, ::-1], None)):
                if wv is None:
                    wv = _naive_max_pool(xv, k, k, s, s, 0, 0, 1, 1, oh, ow)
                ry, ri = _ref_planes(xv, (k, k), (s, s), (0, 0), (1, 1), (oh, ow))
                y = np.empty((1, 3, oh, ow), dtype)
                ops.max_pool2d_forward(xv, y, None, k, k, s, s, 0, 0, 1, 1, 1)
                np.testing.assert_array_equal(y, wv)
                idx = np.empty((1, 3, oh, ow), np.int64)
                ops.max_pool2d_forward(xv, y, idx, k, k, s, s, 0, 0, 1, 1, 1)
                np.testing.assert_array_equal(y, ry)
                np.testing.assert_array_equal(idx, ri)
            if k == 1:
                assert not np.isnan(want[0, :2]).any()
            if s <= k:   # the windows cover the plane: the late NaN shows
                assert np.isnan(want[0, 2]).any() and not np.isnan(want[0, 2]).all()


def test_kernel_absurd_geometry():
    """Strides/paddings/dilations making a row buffer absurd run the indices path, absurd ones
    along H the kernel, coordinates past 2**60 the overflow-safe row-by-row loop: the same
    values (and indices) as the definition, with and without indices."""
    ops = _pool_kernel()
    x = (np.arange(30, dtype=np.float32) - 10).reshape(1, 1, 5, 6)
    x[0, 0, 4, 5] = np.nan
    for (sh, sw), (pt, pl), (dh, dw), out in [((2 ** 31, 2 ** 31), (1, 1), (1, 1), (2, 2)),
                                              ((1, 3), (2, 2 ** 33), (1, 2 ** 33), (3, 2)),
                                              ((2, 2), (1, 1), (2 ** 31, 2 ** 31), (3, 3)),
                                              ((2 ** 33, 1), (2 ** 32, 1), (2 ** 31, 1), (2, 4)),
                                              ((2 ** 61, 1), (0, 0), (1, 1), (2, 2)),
                                              ((1, 1), (0, 2 ** 60), (1, 1), (2, 2))]:
        want = _naive_max_pool(x, 3, 3, sh, sw, pt, pl, dh, dw, *out)
        for idx in (None, np.full((1, 1) + out, 9, np.int64)):
            y = np.full((1, 1) + out, 9.0, np.float32)
            ops.max_pool2d_forward(x, y, idx, 3, 3, sh, sw, pt, pl, dh, dw, 2)
            np.testing.assert_array_equal(y, want)
            if idx is not None:   # the index of each finite maximum points at it
                ok = np.isfinite(want)
                assert (idx[~np.isfinite(want) & ~np.isnan(want)] == -1).all()
                np.testing.assert_array_equal(x.ravel()[idx[ok]], want[ok])


def test_kernel_rejects_bad_arguments():
    ops = _pool_kernel()
    x = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="same N and C"):
        ops.max_pool2d_forward(x, np.zeros((1, 3, 2, 2), np.float32), None, 2, 2, 2, 2, 0, 0, 1,
                               1)
    with pytest.raises(ValueError, match="unit stride"):
        ops.max_pool2d_forward(x[..., ::2], np.zeros((1, 2, 1, 1), np.float32), None, 2, 2, 2,
                               2, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="unit stride"):
        ops.max_pool2d_forward(x, np.zeros((1, 2, 2, 2), np.float32),
                               np.zeros((1, 2, 2, 4), np.int64)[..., ::2], 2, 2, 2, 2, 0, 0, 1,
                               1)
    with pytest.raises(ValueError, match="idx"):
        ops.max_pool2d_forward(x, np.zeros((1, 2, 2, 2), np.float32),
                               np.zeros((1, 2, 2, 3), np.int64), 2, 2, 2, 2, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="stride"):
        ops.max_pool2d_forward(x, np.zeros((1, 2, 2, 2), np.float32), None, 2, 2, 0, 2, 0, 0, 1,
                               1)


def test_no_grad_call_skips_the_indices(backend, monkeypatch):
    """F.max_pool2d without a gradient or return_indices asks the kernel for no indices (the
    fast path); the values are those of the call with indices."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 17, 19)).astype(np.float32)
    calls = []
    impl = kernels.impl
    fwd = impl("max_pool2d_forward")

    def spy(*args, **kw):
        calls.append(kw.get("indices", True))
        return fwd(*args, **kw)
    monkeypatch.setattr(kernels, "impl", lambda name, *a: spy if name == "max_pool2d_forward"
                        else impl(name, *a))
    y = F.max_pool2d(nnlite.tensor(x), 3, 2, 1)
    y2, idx = F.max_pool2d(nnlite.tensor(x), 3, 2, 1, return_indices=True)
    y3 = F.max_pool2d(nnlite.tensor(x, requires_grad=True), 3, 2, 1)
    assert calls == [False, True, True]
    np.testing.assert_array_equal(y.data, y2.data)
    np.testing.assert_array_equal(y3.data, y2.data)
    assert y3._ctx is not None and isinstance(y, nnlite.Tensor)


# the indices' grid path (csrc/pool_max_tmpl.h, nnl_maxpool_planes_grid): vs the naive
# reference and the separable path (nnl_maxpool_plane_idx; switched on by _GRID_MAX=0)
_GRID_CASES = [  # shape, kernel, stride, padding, dilation, ceil_mode
    ((2, 3, 8, 8), (3, 3), (1, 1), (1, 1), (1, 1), True),      # Inception's branch pool
    ((4, 5, 8, 8), (2, 2), (2, 2), (0, 0), (1, 1), False),
    ((1, 1, 4, 4), (3, 3), (1, 1), (1, 1), (1, 1), True),      # batch 1, one channel
    ((2, 2, 7, 5), (3, 2), (2, 1), (1, 1), (1, 2), True),      # non-square, stride != dilation
    ((3, 2, 9, 6), (2, 3), (1, 2), (1, 1), (2, 1), False),     # sizes the stride does not tile
    ((2, 1, 1, 3), (2, 2), (1, 1), (1, 1), (2, 2), True),      # a wholly padded window
    ((1, 2, 30, 61), (3, 3), (2, 2), (1, 1), (1, 1), True),    # a segment per output row
    ((2, 2, 33, 47), (2, 2), (2, 2), (0, 0), (1, 1), True),    # odd pixel columns, ceil
    ((1, 3, 20, 37), (5, 5), (1, 1), (2, 2), (1, 1), False),   # 25 taps, 4-vector blocks
    ((2, 1, 9, 40), (1, 7), (3, 2), (0, 3), (1, 2), True),     # 1x7, odd left padding
    ((1, 2, 56, 56), (3, 3), (2, 2), (1, 1), (1, 1), False),   # ResNet's stem pool, smaller
]


@pytest.mark.parametrize("kind", ["int", "float", "nan"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", _GRID_CASES)
def test_max_pool2d_indices_grid_path(case, dtype, kind, monkeypatch):
    from nnlite import _pool
    shape, k, s, p, d, ceil = case
    x = make_input(shape, "int" if kind == "nan" else kind, dtype, 7)
    if kind == "nan":                       # NaNs (the last wins), -inf pixels, ties
        flat = x.reshape(-1)
        flat[::7] = np.nan
        flat[3::11] = -np.inf
    wide = np.zeros(shape[:1] + (shape[1] + 2,) + shape[2:], dtype)
    wide[:, 1:-1] = x
    xs = wide[:, 1:-1]                      # a channel slice: row strides of a larger buffer
    c = dict(kernel=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    y_ref, idx_ref = _ref(x, c)
    oh, ow = y_ref.shape[2:]
    assert _pool._grid_pays(shape[2], shape[3], oh, ow, *k, *s, *d)
    runs = []
    for limit in (_pool._GRID_MAX, 0):
        monkeypatch.setattr(_pool, "_GRID_MAX", limit)
        y = np.full(y_ref.shape, 5, dtype)
        idx = np.full(y_ref.shape, 5, np.int64)
        _pool.max_pool2d_forward(xs, y, idx, *k, *s, *p, *d, 1)
        runs.append((y, idx))
    for y, idx in runs:
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_indices_grid_path_random_geometries(dtype, monkeypatch):
    """Random geometries that take the grid path: planes 1x1 to 17x17, kernels 1 to 4 with
    dilations 1 to 3 (stride != dilation), strides 1 to 3 down and 1 to 2 across, paddings up
    to kernel // 2, ceil mode and one output row/column more (windows wholly in the padding),
    up to 24 planes, channel slices; ties, -0/+0, NaN, +-inf, all -inf and all-equal planes.
    Values and indices bit-equal to the reference, with and without indices, on 1 and 2
    threads (_run_pool_case), and the indices bit-equal to the separable path's."""
    from nnlite import _pool
    rng = np.random.default_rng(23)
    for case in range(200):
        (kh, kw), (dh, dw) = rng.integers(1, 5, 2), rng.integers(1, 4, 2)
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        pt, pl = rng.integers(0, kh // 2 + 1), rng.integers(0, kw // 2 + 1)
        h, w = (1, 1) if case % 15 == 0 else rng.integers(1, 18, 2)
        ceil = bool(rng.integers(0, 2))
        extra = int(case % 7 == 0)
        oh, ow = (_pool_out(h, kh, sh, pt, dh, ceil) + extra,
                  _pool_out(w, kw, sw, pl, dw, ceil) + extra)
        assert _pool._grid_pays(h, w, oh, ow, kh, kw, sh, sw, dh, dw)
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(h), int(w))
        geo = ((kh, kw), (sh, sw), (pt, pl), (dh, dw), (oh, ow))
        x, idx = _run_pool_case(_pool, rng, dtype, shape, *geo, slices=case % 3 == 0,
                                equal=True)
        monkeypatch.setattr(_pool, "_GRID_MAX", 0)
        y_sep = np.empty(idx.shape, dtype)
        idx_sep = np.empty(idx.shape, np.int64)
        _pool.max_pool2d_forward(x, y_sep, idx_sep, kh, kw, sh, sw, pt, pl, dh, dw, 1)
        monkeypatch.undo()
        np.testing.assert_array_equal(idx, idx_sep, err_msg=f"{shape} {geo}")


# The small-plane path (csrc/pool_max_tmpl.h, nnl_pool_small): planes whose windows fit the
# stride-1 grid of origins with at most 256 positions, strides 1-2, up to 32 taps, packed rows.
# With indices it runs up to 16 vectors per plane, without indices one vector (16 float32 or 8
# float64 positions); the rows taken below mirror that rule only to make sure the cases land on
# both sides of it. Oracles: the naive definition and pool_reference (values, signs of zeros,
# indices), and the row paths of the same kernel (the same pool on a channel slice, whose rows
# are not packed, never takes the small path): bit for bit, values and indices.
def _small_positions(h, w, oh, ow, sh, sw, kh, kw):
    if sh > 2 or sw > 2 or (ow - 1) * sw >= w or kh * kw > 32:
        return None
    q = ((oh - 1) * sh + 1) * w
    return q if q <= 256 else None


def _small_vs_rows(ops, x, k, s, p, d, out, threads):
    """y and idx of x (packed) and of the same values as a channel slice, bit for bit."""
    (kh, kw), (sh, sw), (pt, pl), (dh, dw), (oh, ow) = k, s, p, d, out
    n, c, h, w = x.shape
    big = np.full((n, c + 2, h, w + 3), 9.0, x.dtype)
    big[:, 1:c + 1, :, :w] = x
    xs = big[:, 1:c + 1, :, :w]
    for with_idx in (False, True):
        got = []
        for src in (x, xs):
            y = np.full((n, c, oh, ow), 7.0, x.dtype)
            idx = np.full((n, c, oh, ow), 7, np.int64) if with_idx else None
            ops.max_pool2d_forward(src, y, idx, kh, kw, sh, sw, pt, pl, dh, dw, threads)
            got.append((y.tobytes(), None if idx is None else idx.tobytes()))
        assert got[0] == got[1], f"{x.shape} k{k} s{s} p{p} d{d} o{out} idx={with_idx}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_small_planes_match_reference_and_row_paths(dtype):
    """Random small geometries (non-square kernels, strides 1-2 and one beyond, dilation 1-2,
    padding up to the kernel and beyond, ceil mode, outputs one larger than ceil mode, 1..37
    planes: block and thread splits at every remainder, batch 1, one channel) with ties, -0/+0,
    NaN, +-inf and all -inf planes; vs the oracles above on 1 and 2 threads. Counts the cases
    on each side of the path's limits (positions, vectors, output columns past the image)."""
    ops = _pool_kernel()
    rng = np.random.default_rng(71)
    vl = 64 // np.dtype(dtype).itemsize
    sides = {"idx and values": 0, "idx only": 0, "outside": 0}
    for case in range(300):
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        sh, sw = (int(v) for v in rng.integers(1, 3 + (case % 9 == 0), 2))
        dh, dw = (int(v) for v in rng.integers(1, 3, 2))
        pt = int(rng.integers(0, kh + 1 if case % 5 == 0 else kh // 2 + 1))
        pl = int(rng.integers(0, kw + 1 if case % 5 == 0 else kw // 2 + 1))
        h, w = (int(v) for v in rng.integers(1, 5 if case % 3 == 0 else 19, 2))
        ceil = bool(rng.integers(0, 2))
        oh = _pool_out(h, kh, sh, pt, dh, ceil) + int(case % 11 == 0)
        ow = _pool_out(w, kw, sw, pl, dw, ceil) + int(case % 13 == 0)
        n, c = (1, int(rng.integers(1, 38))) if case % 2 else (int(rng.integers(1, 4)), 1)
        q = _small_positions(h, w, oh, ow, sh, sw, kh, kw)
        nv = -(-q // vl) if q else None
        sides["outside" if q is None or nv > 16 else
              "idx and values" if nv == 1 else "idx only"] += 1
        threads = 1 + case % 2
        _run_pool_case(ops, rng, dtype, (n, c, h, w), (kh, kw), (sh, sw), (pt, pl), (dh, dw),
                       (oh, ow))
        x = _pool_input(rng, (n, c, h, w), dtype, specials=True, equal=case % 4 == 0)
        _small_vs_rows(ops, x, (kh, kw), (sh, sw), (pt, pl), (dh, dw), (oh, ow), threads)
    assert min(sides.values()) >= 25, sides


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("planes, hw, k, s, p, ceil", [
    (512, (8, 8), 3, 1, 1, True),      # the digits example's pools at batch 32
    (1280, (8, 8), 2, 2, 0, False),
    (1280, (4, 4), 3, 1, 1, True),
    (37, (16, 16), 3, 1, 1, False),    # 256 positions: the largest plane of the path
    (37, (17, 16), 3, 1, 1, False),    # 272: just past it
    (5, (4, 5), 3, 2, 1, True),        # ceil mode: the last column origin at W - 1
    (5, (4, 4), 3, 2, 1, True),        # ... past the image (the row paths take it)
])
def test_kernel_small_planes_fixed_geometries(dtype, planes, hw, k, s, p, ceil):
    """The digits shapes and the path's limits, as (1, P) and (P, 1) planes."""
    ops = _pool_kernel()
    rng = np.random.default_rng(72)
    out = (_pool_out(hw[0], k, s, p, 1, ceil), _pool_out(hw[1], k, s, p, 1, ceil))
    for shape in ((1, planes) + hw, (planes, 1) + hw):
        _run_pool_case(ops, rng, dtype, shape, (k, k), (s, s), (p, p), (1, 1), out)
        x = _pool_input(rng, shape, dtype, specials=True)
        _small_vs_rows(ops, x, (k, k), (s, s), (p, p), (1, 1), out, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_small_planes_signed_zeros_follow_the_separable_order(dtype):
    """Without indices every path keeps the first of equal taps in column-major order (the
    separable kernels' vertical-then-horizontal order); with indices the value at the first
    maximum in row-major order. A window of 3x3/1 pad 1 on 4x4 planes (the small path without
    indices) holding +0 at (0, 1) and -0 at (1, 0), the rest negative: -0 and +0."""
    ops = _pool_kernel()
    x = np.full((1, 3, 4, 4), -1.0, dtype)
    x[0, :, 0, 1], x[0, :, 1, 0] = 0.0, -0.0
    y = np.empty((1, 3, 4, 4), dtype)
    ops.max_pool2d_forward(x, y, None, 3, 3, 1, 1, 1, 1, 1, 1, 1)
    assert np.signbit(y[0, :, 1, 1]).all() and np.signbit(y[0, :, 0, 0]).all()
    idx = np.empty((1, 3, 4, 4), np.int64)
    ops.max_pool2d_forward(x, y, idx, 3, 3, 1, 1, 1, 1, 1, 1, 1)
    assert not np.signbit(y[0, :, 1, 1]).any() and (idx[0, :, 1, 1] == 1).all()
    assert (idx[0, :, 0, 0] == 1).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scatter_by_index_matches_add_at(dtype):
    """The max pools' backward scatter vs np.add.at (which adds in order, so bit for bit):
    repeated indices (runs and scattered), -1 and out-of-range indices ignored, 1..33 planes on
    1 and 2 threads; zero=True clears a gx full of garbage (NaN), zero=False adds into gx."""
    ops = _pool_kernel()
    rng = np.random.default_rng(73)
    for case in range(40):
        P, L, hw = int(rng.integers(1, 34)), int(rng.integers(0, 40)), int(rng.integers(1, 30))
        gy = rng.standard_normal((P, L)).astype(dtype)
        idx = rng.integers(-1, hw + 1, (P, L)) if case % 3 else rng.integers(0, 3, (P, L))
        if case % 4 == 0:
            idx = np.sort(idx, axis=1)      # runs of equal indices, as in 3x3/1 pools
        want = np.zeros((P, hw), dtype)
        ok = (idx >= 0) & (idx < hw)
        rows = np.broadcast_to(np.arange(P)[:, None], (P, L))
        np.add.at(want, (rows[ok], idx[ok]), gy[ok])
        for threads in (1, 2):
            gx = np.full((P, hw), np.nan, dtype)
            ops.scatter_by_index(gy, idx, gx, threads, True)
            assert gx.tobytes() == want.tobytes()
            base = rng.standard_normal((P, hw)).astype(dtype)
            gx, more = base.copy(), base.copy()
            np.add.at(more, (rows[ok], idx[ok]), gy[ok])
            ops.scatter_by_index(gy, idx, gx, threads)
            assert gx.tobytes() == more.tobytes()
    with pytest.raises(ValueError, match="do not match"):
        ops.scatter_by_index(np.zeros((2, 3), dtype), np.zeros((2, 4), np.int64),
                             np.zeros((2, 5), dtype), 1)


@pytest.mark.parametrize("hw", [(1, 1), (1, 9), (9, 1), (2, 2), (4, 4), (7, 7), (5, 17), (14, 14),
                                (16, 16), (28, 28), (64, 64), (65, 65)])
def test_kernel_same3_flat_planes(hw):
    """3x3/1 pad 1 ('same', GoogLeNet's pool branch) on packed float32 planes: AVX-512 and
    AVX2 builds run them as flat vectors (csrc/pool_max.c, nnl_maxpool_planes_same3_s)
    whatever the rows, up to 4096 elements a plane (65x65 is past it); rows shorter than,
    equal to and longer than a vector, planes ending inside a vector, ties, -0/+0, NaN, +-inf
    and all -inf planes, batch and thread splits; vs the naive definition and the reference,
    and the channel slices of the row paths."""
    ops = _pool_kernel()
    rng = np.random.default_rng(73)
    for shape in ((1, 37) + hw, (3, 5) + hw):
        _run_pool_case(ops, rng, np.float32, shape, (3, 3), (1, 1), (1, 1), (1, 1), hw)
    _run_pool_case(ops, rng, np.float32, (2, 3) + hw, (3, 3), (1, 1), (1, 1), (1, 1), hw,
                   slices=True)


def test_kernel_same3_signed_zeros_follow_the_separable_order():
    """The flat-plane path keeps the first of equal taps in column-major order, as the row
    paths do: +0 above -0 gives +0 below them; -0 left of +0 gives -0 right of them; on a
    plane of several vectors, at vector seams too."""
    ops = _pool_kernel()
    x = np.full((1, 2, 14, 14), -1.0, np.float32)
    x[0, 0, 3, 5], x[0, 0, 4, 5] = 0.0, -0.0           # vertical pair
    x[0, 1, 1, 1], x[0, 1, 1, 2] = -0.0, 0.0           # horizontal pair (q = 15, 16: a seam)
    y = np.empty_like(x)
    ops.max_pool2d_forward(x, y, None, 3, 3, 1, 1, 1, 1, 1, 1, 1)
    assert y[0, 0, 4, 5] == 0 and not np.signbit(y[0, 0, 4, 5])     # taps rows 3, 4, 5
    assert y[0, 1, 1, 2] == 0 and np.signbit(y[0, 1, 1, 2])         # taps columns 1, 2, 3
