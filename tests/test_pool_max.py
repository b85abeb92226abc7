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
