"""max_unpool2d: inverse placement of max_pool2d's values, output_size rules, gradients
(a gather), the -1 index of a wholly-padded window, and errors."""
import numpy as np
import pytest
from gradcheck import check_grad
from hypothesis import given
from hypothesis import strategies as st
from pool_cases import make_input, pool_cases, with_fixture

import nnlite
import nnlite.functional as F
import nnlite.nn as nn
from nnlite import kernels


@with_fixture
@given(case=pool_cases(dilation=False), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2 ** 31 - 1))
def test_max_unpool2d_matches_reference(backend, case, dtype, seed):
    x = make_input(case["shape"], "int", dtype, seed)
    N, C, H, W = x.shape
    y, idx = F.max_pool2d(nnlite.tensor(x), case["kernel"], case["stride"], case["padding"],
                          ceil_mode=case["ceil_mode"], return_indices=True)
    yt = nnlite.tensor(y.data, requires_grad=True)
    u = F.max_unpool2d(yt, idx, case["kernel"], case["stride"], case["padding"],
                       output_size=(H, W))
    planes = y.shape[0] * y.shape[1]
    ref = kernels.impl("max_unpool2d_forward", "reference")(
        y.data.reshape(planes, *y.shape[2:]), idx.data.reshape(planes, *y.shape[2:]), (H, W))
    np.testing.assert_array_equal(u.data, ref.reshape(u.shape))
    # every non-zero of the unpooled map is the input value at that position
    nz = u.data != 0
    np.testing.assert_array_equal(u.data[nz], x[nz])
    gu = make_input(u.shape, "float", dtype, seed + 1)
    u.backward(gu)
    g_ref = kernels.impl("max_unpool2d_backward", "reference")(
        gu.reshape(planes, H, W), idx.data.reshape(planes, *y.shape[2:]))
    np.testing.assert_array_equal(yt.grad, g_ref.reshape(y.shape))


def test_max_unpool2d_default_size_and_module(backend):
    x = make_input((2, 3, 6, 8), "distinct", np.float32, 0)
    y, idx = nn.MaxPool2d(2, return_indices=True)(nnlite.tensor(x))
    m = nn.MaxUnpool2d(2)
    assert (m.kernel_size, m.stride, m.padding) == ((2, 2), (2, 2), (0, 0))
    assert repr(m) == "MaxUnpool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"
    u = m(y, idx)
    assert u.shape == x.shape
    assert (u.data != 0).sum() == y.data.size
    assert m(y, idx, output_size=(2, 3, 7, 9)).shape == (2, 3, 7, 9)
    u3 = F.max_unpool2d(y[0], idx[0], 2)
    np.testing.assert_array_equal(u3.data, u.data[0])


@given(seed=st.integers(0, 2 ** 31 - 1))
def test_max_unpool2d_gradcheck(seed):
    x = make_input((1, 2, 4, 6), "distinct", np.float64, seed)
    _, idx = F.max_pool2d(nnlite.tensor(x), 2, return_indices=True)
    v = make_input((1, 2, 2, 3), "float", np.float64, seed)
    check_grad(lambda t: F.max_unpool2d(t, idx, 2), [v])


def test_max_unpool2d_skips_minus_one_index(backend):
    y = nnlite.tensor(np.array([[[[5.0, 7.0]]]]), requires_grad=True)
    idx = np.array([[[[-1, 2]]]])
    u = F.max_unpool2d(y, idx, (1, 2), output_size=(1, 4))
    np.testing.assert_array_equal(u.data.ravel(), [0, 0, 7, 0])
    u.backward(np.ones(u.shape))
    np.testing.assert_array_equal(y.grad.ravel(), [0, 1])


def test_max_unpool2d_rejects_bad_input():
    y = nnlite.tensor(np.zeros((1, 1, 2, 2), np.float32))
    idx = np.zeros((1, 1, 2, 2), np.int64)
    with pytest.raises(ValueError, match=r"invalid max index: 16 .*4x4"):
        F.max_unpool2d(y, idx + 16, 2)
    with pytest.raises(TypeError, match="integer"):
        F.max_unpool2d(y, idx.astype(np.float32), 2)
    with pytest.raises(ValueError, match=r"shape of indices.*\(1, 1, 2, 2\).*\(1, 1, 4\)"):
        F.max_unpool2d(y, np.zeros((1, 1, 4), np.int64), 2)
    with pytest.raises(ValueError, match=r"dim 0 must be between 2 and 6"):
        F.max_unpool2d(y, idx, 2, output_size=(6, 4))


def test_max_unpool2d_empty_batch(backend):
    x = nnlite.tensor(np.zeros((0, 2, 4, 4), np.float32), requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    yt = nnlite.tensor(y.data, requires_grad=True)
    u = F.max_unpool2d(yt, idx, 2)
    assert u.shape == (0, 2, 4, 4)
    u.backward(np.zeros(u.shape, np.float32))
    assert yt.grad.shape == (0, 2, 2, 2)
    y.backward(np.zeros(y.shape, np.float32))
    assert x.grad.shape == (0, 2, 4, 4)
