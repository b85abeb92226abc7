"""avg_pool2d: vs the naive-loop reference over ceil overhangs, count_include_pad and
divisor_override; docs/semantics.md §4.3 golden values; gradients; module; errors."""
import numpy as np
import pytest
from conftest import assert_close
from gradcheck import check_grad
from hypothesis import given
from hypothesis import strategies as st
from pool_cases import inputs, make_input, pool_cases, with_fixture

import nnlite
import nnlite.functional as F
import nnlite.nn as nn
from nnlite import kernels

REF_FWD = kernels.impl("avg_pool2d_forward", "reference")
REF_BWD = kernels.impl("avg_pool2d_backward", "reference")

divisors = st.sampled_from([None, None, 1, 3, -2])


@with_fixture
@given(case=pool_cases(dilation=False), inp=inputs, cip=st.booleans(), div=divisors)
def test_avg_pool2d_matches_reference(backend, case, inp, cip, div):
    kind, dtype, seed = inp
    x = make_input(case["shape"], kind, dtype, seed)
    N, C, H, W = x.shape
    args = (case["kernel"], case["stride"], case["padding"], case["ceil_mode"], cip, div)
    xt = nnlite.tensor(x, requires_grad=True)
    y = F.avg_pool2d(xt, *args)
    y_ref = REF_FWD(x.reshape(N * C, H, W), *args)
    k = case["kernel"][0] * case["kernel"][1]
    assert y.dtype == x.dtype
    assert_close(y, y_ref.reshape(y.shape), dtype, k=k, scale=3)
    gy = make_input(y.shape, "float", dtype, seed + 1)
    y.backward(gy)
    g_ref = REF_BWD(gy.reshape((N * C,) + gy.shape[2:]), (H, W), *args)
    assert_close(xt.grad, g_ref.reshape(x.shape), dtype, k=k, scale=3)


@pytest.mark.parametrize("x, kwargs, expected", [
    (np.ones((5, 5)), dict(kernel_size=2, stride=2, ceil_mode=True), np.ones((3, 3))),
    (np.ones((5, 5)), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
     np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9),
    (np.ones((5, 5)), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                           count_include_pad=False), np.ones((3, 3))),
    (np.arange(1, 7.0)[None], dict(kernel_size=(1, 4), stride=(1, 3), ceil_mode=True),
     [[2.5, 5.0]]),
    (np.arange(1, 8.0)[None], dict(kernel_size=(1, 4), stride=(1, 3), padding=(0, 2),
                                   ceil_mode=True), [[0.75, 3.5, 4.5]]),
    (np.ones((4, 4)), dict(kernel_size=2, divisor_override=2), np.full((2, 2), 2.0)),
])
def test_avg_pool2d_spec_worked_values(backend, x, kwargs, expected):
    for dtype in (np.float32, np.float64):
        y = F.avg_pool2d(nnlite.tensor(np.asarray(x, dtype)[None, None]), **kwargs)
        np.testing.assert_allclose(y.data[0, 0], expected, rtol=1e-6)


def test_avg_pool2d_backward_skips_padding_and_overhang(backend):
    # ceil overhang past the right padding: that part is neither counted nor differentiated
    xt = nnlite.tensor(np.arange(1, 8.0).reshape(1, 1, 1, 7), requires_grad=True)
    y = F.avg_pool2d(xt, (1, 4), (1, 3), (0, 2), ceil_mode=True)
    y.backward(np.ones(y.shape))
    # windows [-2,2), [1,5), [4,8) all divide by 4
    np.testing.assert_allclose(xt.grad.ravel(), [.25, .5, .25, .25, .5, .25, .25])


@given(case=pool_cases(dilation=False), cip=st.booleans(), div=divisors,
       seed=st.integers(0, 2 ** 31 - 1))
def test_avg_pool2d_gradcheck(case, cip, div, seed):
    x = make_input((1, 2) + case["shape"][2:], "float", np.float64, seed)
    check_grad(lambda t: F.avg_pool2d(t, case["kernel"], case["stride"], case["padding"],
                                      case["ceil_mode"], cip, div), [x])


def test_avg_pool2d_unbatched_and_nan(backend):
    x = make_input((2, 6, 5), "float", np.float64, 1)
    y3 = F.avg_pool2d(nnlite.tensor(x), 3, 2, 1)
    y4 = F.avg_pool2d(nnlite.tensor(x[None]), 3, 2, 1)
    assert y3.shape == (2, 3, 3)
    np.testing.assert_array_equal(y3.data, y4.data[0])
    x[0, 0, 0] = np.nan
    y = F.avg_pool2d(nnlite.tensor(x), 2).data
    assert np.isnan(y[0, 0, 0]) and np.isfinite(y[0, 1:]).all() and np.isfinite(y[1]).all()


def test_avgpool2d_module_attributes_and_repr():
    m = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    assert (m.kernel_size, m.stride, m.padding, m.ceil_mode) == (3, 1, 1, False)
    assert m.count_include_pad is False and m.divisor_override is None
    assert repr(m) == "AvgPool2d(kernel_size=3, stride=1, padding=1)"
    assert nn.AvgPool2d(2).stride == 2
    x = make_input((1, 2, 5, 5), "float", np.float32, 0)
    np.testing.assert_array_equal(m(nnlite.tensor(x)).data,
                                  F.avg_pool2d(nnlite.tensor(x), 3, 1, 1,
                                               count_include_pad=False).data)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(kernel_size=3, padding=2), ValueError, r"padH = 2, padW = 2, kH = 3, kW = 3"),
    (dict(kernel_size=2, divisor_override=0), ValueError, r"divisor must be not zero"),
    (dict(kernel_size=2, divisor_override=1.5), TypeError, r"divisor_override.*1.5"),
    (dict(kernel_size=2, stride=0), ValueError, r"stride should not be zero"),
    (dict(kernel_size=(0, 1), stride=1), ValueError, r"kH: 0 kW: 1"),
    (dict(kernel_size=5), ValueError, r"Output size is too small"),
])
def test_avg_pool2d_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        F.avg_pool2d(nnlite.tensor(np.zeros((1, 1, 4, 4), np.float32)), **kwargs)
