"""Optional parity with PyTorch's pools (skipped without torch): values, indices, gradients,
output sizes and module reprs."""
import numpy as np
import pytest
from conftest import assert_close
from hypothesis import given
from hypothesis import strategies as st
from pool_cases import DTYPES, make_input, pool_cases, with_fixture

import nnlite
import nnlite.functional as F
import nnlite.nn as nn

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _pair(x, fn, tfn, gy_seed):
    xt = nnlite.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    y, ty = fn(xt), tfn(tx)
    y0, ty0 = (y[0], ty[0]) if isinstance(y, tuple) else (y, ty)
    gy = make_input(y0.shape, "float", x.dtype, gy_seed)
    y0.backward(gy)
    ty0.backward(torch.tensor(gy))
    return y, ty, xt.grad, tx.grad.numpy()


@with_fixture
@given(case=pool_cases(), kind=st.sampled_from(["int", "float"]), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2 ** 31))
def test_max_pool2d_matches_torch(backend, case, kind, dtype, seed):
    x = make_input(case["shape"], kind, dtype, seed)
    args = (case["kernel"], case["stride"], case["padding"], case["dilation"], case["ceil_mode"],
            True)
    if (F.max_pool2d(nnlite.tensor(x), *args)[1].data == -1).any():
        return  # a wholly-padded window: torch's index is garbage there (docs/semantics.md §3.6)
    (y, idx), (ty, ti), g, tg = _pair(x, lambda t: F.max_pool2d(t, *args),
                                      lambda t: torch.nn.functional.max_pool2d(t, *args), seed)
    np.testing.assert_array_equal(y.data, ty.detach().numpy())
    np.testing.assert_array_equal(idx.data, ti.numpy())
    assert_close(g, tg, dtype, k=case["kernel"][0] * case["kernel"][1], scale=3)


@with_fixture
@given(case=pool_cases(dilation=False), dtype=st.sampled_from(DTYPES), cip=st.booleans(),
       div=st.sampled_from([None, 2, -3]), seed=st.integers(0, 2 ** 31))
def test_avg_pool2d_matches_torch(backend, case, dtype, cip, div, seed):
    x = make_input(case["shape"], "float", dtype, seed)
    args = (case["kernel"], case["stride"], case["padding"], case["ceil_mode"], cip, div)
    y, ty, g, tg = _pair(x, lambda t: F.avg_pool2d(t, *args),
                         lambda t: torch.nn.functional.avg_pool2d(t, *args), seed)
    k = case["kernel"][0] * case["kernel"][1]
    assert_close(y, ty.detach().numpy(), dtype, k=k, scale=3)
    assert_close(g, tg, dtype, k=k, scale=3)


@with_fixture
@given(H=st.integers(1, 9), W=st.integers(1, 9), OH=st.integers(1, 11), OW=st.integers(1, 11),
       kind=st.sampled_from(["int", "float"]), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2 ** 31))
def test_adaptive_pools_match_torch(backend, H, W, OH, OW, kind, dtype, seed):
    x = make_input((2, 3, H, W), kind, dtype, seed)
    (y, idx), (ty, ti), g, tg = _pair(
        x, lambda t: F.adaptive_max_pool2d(t, (OH, OW), True),
        lambda t: torch.nn.functional.adaptive_max_pool2d(t, (OH, OW), True), seed)
    np.testing.assert_array_equal(y.data, ty.detach().numpy())
    np.testing.assert_array_equal(idx.data, ti.numpy())
    assert_close(g, tg, dtype, k=OH * OW, scale=3)
    y, ty, g, tg = _pair(x, lambda t: F.adaptive_avg_pool2d(t, (OH, OW)),
                         lambda t: torch.nn.functional.adaptive_avg_pool2d(t, (OH, OW)), seed)
    assert_close(y, ty.detach().numpy(), dtype, k=H * W, scale=3)
    assert_close(g, tg, dtype, k=OH * OW, scale=3)


def test_max_unpool2d_matches_torch(backend):
    x = make_input((2, 3, 7, 9), "float", np.float32, 0)
    y, idx = F.max_pool2d(nnlite.tensor(x), 3, 2, 1, return_indices=True)
    ty, ti = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1, return_indices=True)
    u = F.max_unpool2d(y, idx, 3, 2, 1, output_size=(7, 9))
    tu = torch.nn.functional.max_unpool2d(ty, ti, 3, 2, 1, output_size=(7, 9))
    np.testing.assert_array_equal(u.data, tu.numpy())


@pytest.mark.parametrize("make", [
    lambda m: m.MaxPool2d(3, 2, 1), lambda m: m.MaxPool2d((2, 3), None, 0, 2, True, True),
    lambda m: m.AvgPool2d(3, 1, 1, count_include_pad=False), lambda m: m.AvgPool2d((2, 1)),
    lambda m: m.AdaptiveAvgPool2d((None, 7)), lambda m: m.AdaptiveMaxPool2d(1, True),
    lambda m: m.MaxUnpool2d(2), lambda m: m.MaxUnpool2d((2, 3), 1, (1, 0)),
])
def test_module_reprs_and_attributes_match_torch(make):
    ours, theirs = make(nn), make(torch.nn)
    assert repr(ours) == repr(theirs)
    for name in ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices",
                 "count_include_pad", "divisor_override", "output_size"):
        if hasattr(theirs, name):
            assert getattr(ours, name) == getattr(theirs, name), name
