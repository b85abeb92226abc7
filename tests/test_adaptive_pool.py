"""adaptive_avg_pool2d / adaptive_max_pool2d: vs the reference over overlapping and repeated
bins (sizes not divisible, output larger than input), equality with plain pools when the
sizes divide, None/0 output entries, NaN, gradients, modules, errors (docs/semantics.md §5)."""
import numpy as np
import pytest
from conftest import assert_close
from gradcheck import check_grad
from hypothesis import given
from hypothesis import strategies as st
from pool_cases import DTYPES, inputs, make_input, with_fixture

import nnlite
import nnlite.functional as F
import nnlite.nn as nn
from nnlite import kernels

sides = st.integers(1, 9)
outs = st.integers(1, 11)  # often larger than the input: repeated bins


def _planes(x):
    return x.reshape((-1,) + x.shape[-2:])


@with_fixture
@given(H=sides, W=sides, OH=outs, OW=outs, C=st.integers(1, 4), inp=inputs)
def test_adaptive_max_pool2d_matches_reference(backend, H, W, OH, OW, C, inp):
    kind, dtype, seed = inp
    x = make_input((2, C, H, W), kind, dtype, seed)
    xt = nnlite.tensor(x, requires_grad=True)
    y, idx = F.adaptive_max_pool2d(xt, (OH, OW), return_indices=True)
    y_ref, idx_ref = kernels.impl("adaptive_max_pool2d_forward", "reference")(_planes(x),
                                                                              (OH, OW))
    np.testing.assert_array_equal(y.data, y_ref.reshape(y.shape))
    np.testing.assert_array_equal(idx.data, idx_ref.reshape(y.shape))
    gy = make_input(y.shape, "float", dtype, seed + 1)
    y.backward(gy)
    g_ref = kernels.impl("adaptive_max_pool2d_backward", "reference")(
        _planes(gy), idx_ref, (H, W))
    assert_close(xt.grad, g_ref.reshape(x.shape), dtype, k=OH * OW)


@with_fixture
@given(H=sides, W=sides, OH=outs, OW=outs, C=st.integers(1, 4), inp=inputs)
def test_adaptive_avg_pool2d_matches_reference(backend, H, W, OH, OW, C, inp):
    kind, dtype, seed = inp
    x = make_input((2, C, H, W), kind, dtype, seed)
    xt = nnlite.tensor(x, requires_grad=True)
    y = F.adaptive_avg_pool2d(xt, (OH, OW))
    y_ref = kernels.impl("adaptive_avg_pool2d_forward", "reference")(_planes(x), (OH, OW))
    assert_close(y, y_ref.reshape(y.shape), dtype, k=H * W, scale=3)
    gy = make_input(y.shape, "float", dtype, seed + 1)
    y.backward(gy)
    g_ref = kernels.impl("adaptive_avg_pool2d_backward", "reference")(_planes(gy), (H, W))
    assert_close(xt.grad, g_ref.reshape(x.shape), dtype, k=OH * OW, scale=3)


@with_fixture
@given(oh=st.integers(1, 4), ow=st.integers(1, 4), kh=st.integers(1, 3), kw=st.integers(1, 3),
       inp=inputs)
def test_adaptive_pools_equal_plain_pools_when_sizes_divide(backend, oh, ow, kh, kw, inp):
    kind, dtype, seed = inp
    x = make_input((1, 3, oh * kh, ow * kw), kind, dtype, seed)
    xt = nnlite.tensor(x)
    a, ai = F.adaptive_max_pool2d(xt, (oh, ow), return_indices=True)
    m, mi = F.max_pool2d(xt, (kh, kw), return_indices=True)
    np.testing.assert_array_equal(a.data, m.data)
    np.testing.assert_array_equal(ai.data, mi.data)
    assert_close(F.adaptive_avg_pool2d(xt, (oh, ow)), F.avg_pool2d(xt, (kh, kw)).data, dtype,
                 k=kh * kw, scale=3)


def test_adaptive_bins_overlap_and_repeat(backend):
    # I=5, O=3: bins [0,2), [1,4), [3,5) overlap; I=2, O=3: bins [0,1), [0,2), [1,2)
    x = np.arange(5.0).reshape(1, 1, 1, 5)
    np.testing.assert_allclose(F.adaptive_avg_pool2d(nnlite.tensor(x), (1, 3)).data.ravel(),
                               [0.5, 2.0, 3.5])
    y, idx = F.adaptive_max_pool2d(nnlite.tensor(x[..., :2]), (1, 3), return_indices=True)
    np.testing.assert_array_equal(y.data.ravel(), [0, 1, 1])
    np.testing.assert_array_equal(idx.data.ravel(), [0, 1, 1])
    xt = nnlite.tensor(x[..., :2].copy(), requires_grad=True)
    F.adaptive_avg_pool2d(xt, (1, 3)).sum().backward()
    np.testing.assert_allclose(xt.grad.ravel(), [1.5, 1.5])


def test_adaptive_max_pool2d_ties_and_nan(backend):
    x = np.array([[3, 1, 3], [3, 2, 0]], dtype=np.float32)[None, None]
    y, idx = F.adaptive_max_pool2d(nnlite.tensor(x), 1, return_indices=True)
    assert y.data.item() == 3 and idx.data.item() == 0
    x = np.array([[np.nan, 1, 3], [3, np.nan, 0]], dtype=np.float32)[None, None]
    y, idx = F.adaptive_max_pool2d(nnlite.tensor(x), 1, return_indices=True)
    assert np.isnan(y.data.item()) and idx.data.item() == 4  # the last NaN in row-major order
    assert np.isnan(F.adaptive_avg_pool2d(nnlite.tensor(x), 1).data.item())
    y = F.adaptive_avg_pool2d(nnlite.tensor(x), (1, 3)).data.ravel()
    assert np.isnan(y[:2]).all() and y[2] == 1.5


def test_adaptive_output_size_none_zero_and_unbatched(backend):
    x = nnlite.tensor(make_input((2, 7, 9), "float", np.float32, 0))
    assert F.adaptive_avg_pool2d(x, (None, 3)).shape == (2, 7, 3)
    assert F.adaptive_max_pool2d(x, (4, None)).shape == (2, 4, 9)
    assert F.adaptive_avg_pool2d(x, 0).shape == (2, 0, 0)
    y, idx = F.adaptive_max_pool2d(x, (0, 3), return_indices=True)
    assert y.shape == (2, 0, 3) and idx.shape == (2, 0, 3)
    e = F.adaptive_avg_pool2d(nnlite.tensor(np.zeros((0, 2, 4, 4), np.float32)), 2)
    assert e.shape == (0, 2, 2, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_pools_global_pool_matches_mean_and_max(backend, dtype):
    x = make_input((2, 5, 7, 6), "float", dtype, 3)
    assert_close(F.adaptive_avg_pool2d(nnlite.tensor(x), 1).data[..., 0, 0],
                 x.mean(axis=(2, 3)), dtype, k=42)
    np.testing.assert_array_equal(F.adaptive_max_pool2d(nnlite.tensor(x), 1).data[..., 0, 0],
                                  x.max(axis=(2, 3)))


@given(H=sides, W=sides, OH=outs, OW=outs, seed=st.integers(0, 2 ** 31 - 1))
def test_adaptive_pools_gradcheck(H, W, OH, OW, seed):
    x = make_input((1, 2, H, W), "distinct", np.float64, seed)
    check_grad(lambda t: F.adaptive_avg_pool2d(t, (OH, OW)), [x])
    check_grad(lambda t: F.adaptive_max_pool2d(t, (OH, OW)), [x])


def test_adaptive_modules_attributes_and_repr():
    m = nn.AdaptiveAvgPool2d((None, 7))
    assert m.output_size == (None, 7) and repr(m) == "AdaptiveAvgPool2d(output_size=(None, 7))"
    m = nn.AdaptiveMaxPool2d(3, return_indices=True)
    assert m.output_size == 3 and m.return_indices is True
    assert repr(m) == "AdaptiveMaxPool2d(output_size=3)"
    y, idx = m(nnlite.tensor(np.zeros((1, 1, 5, 5), np.float32)))
    assert y.shape == idx.shape == (1, 1, 3, 3)


@pytest.mark.parametrize("fn", [F.adaptive_avg_pool2d, F.adaptive_max_pool2d])
def test_adaptive_pools_reject_bad_arguments(fn):
    x = nnlite.tensor(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"\{-1, 3\}"):
        fn(x, (-1, 3))
    with pytest.raises(ValueError, match="output_size must be 2"):
        fn(x, (1, 2, 3))
    with pytest.raises(TypeError, match="output_size"):
        fn(x, 2.0)
    with pytest.raises(TypeError, match="output_size"):
        fn(x, (2, "a"))
    with pytest.raises(ValueError, match=r"\[1, 2, 0, 4\] with dimension 2 being empty"):
        fn(nnlite.tensor(np.zeros((1, 2, 0, 4), np.float32)), 2)
    with pytest.raises(ValueError, match=r"3D or 4D.*\(4, 4\)"):
        fn(nnlite.tensor(np.zeros((4, 4), np.float32)), 2)


def test_adaptive_pools_backward_through_empty_output(backend):
    for fn in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
        x = nnlite.tensor(make_input((2, 3, 4, 5), "float", np.float32, 0), requires_grad=True)
        y = fn(x, (0, 3))
        y.backward(np.zeros(y.shape, np.float32))
        np.testing.assert_array_equal(x.grad, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("planes", [1, 7, 8, 9, 16, 27])
@pytest.mark.parametrize("hw,out", [((4, 4), (1, 1)), ((6, 4), (3, 2)), ((5, 7), (3, 4)),
                                    ((3, 3), (5, 4))])
def test_adaptive_avg_pool2d_blocks_of_planes(planes, hw, out, dtype):
    """The native kernel runs blocks of 8 planes (full blocks and a tail) and writes the
    gradient without zeroing first when the bins tile the plane (4x4 -> 1x1, 6x4 -> 3x2):
    forward and backward against the naive reference, on plane counts around the block."""
    rng = np.random.default_rng(planes)
    x = rng.standard_normal((planes,) + hw).astype(dtype)
    gy = rng.standard_normal((planes,) + out).astype(dtype)
    fwd = kernels.impl("adaptive_avg_pool2d_forward", "cython")
    bwd = kernels.impl("adaptive_avg_pool2d_backward", "cython")
    ref_f = kernels.impl("adaptive_avg_pool2d_forward", "reference")
    ref_b = kernels.impl("adaptive_avg_pool2d_backward", "reference")
    assert_close(fwd(x, out), ref_f(x, out), dtype, k=hw[0] * hw[1])
    assert_close(bwd(gy, hw), ref_b(gy, hw), dtype, k=out[0] * out[1], scale=3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_avg_pool_kernel_sums_planes_in_lanes(dtype):
    """The global case of the native kernel (csrc/pool_avg.c: each plane summed in vector lanes,
    blocks of 64 planes per work item): against float64 sums taken element by element, for
    plane sizes around the 8/16-lane vectors and their doubles and plane counts around the
    block; the same bits on 1 and 2 threads and for a plane computed alone (its value does not
    depend on where it lies)."""
    from nnlite.kernels.pool_cython import _pool
    if _pool is None:
        pytest.skip("nnlite._pool not built")
    rng = np.random.default_rng(3)
    tol = {np.float32: 2e-6, np.float64: 1e-14}[dtype]
    for n in (1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 48, 49, 64, 100):
        for planes in (1, 63, 64, 65, 130):
            x = (rng.standard_normal((planes, n, 1)) * 10 + 3).astype(dtype)
            got = np.full((planes, 1, 1), np.nan, dtype)
            _pool.adaptive_avg_pool2d_forward(x, got, 1)
            want = np.array([sum(float(v) for v in x[p].ravel()) / n for p in range(planes)])
            scale = np.abs(x).reshape(planes, -1).max(axis=1)
            assert np.all(np.abs(got.ravel() - want) <= tol * scale), (n, planes)
            two = np.full_like(got, np.nan)
            _pool.adaptive_avg_pool2d_forward(x, two, 2)
            np.testing.assert_array_equal(two, got)
            last = np.full((1, 1, 1), np.nan, dtype)
            _pool.adaptive_avg_pool2d_forward(np.ascontiguousarray(x[-1:]), last, 1)
            np.testing.assert_array_equal(last, got[-1:])
    # through F (a 2-D map), and NaN/inf propagate
    x = rng.standard_normal((2, 3, 5, 7)).astype(dtype)
    x[1, 2, 4, 6] = np.nan
    x[0, 1, 0, 0] = np.inf
    y = F.adaptive_avg_pool2d(nnlite.tensor(x), 1).data
    assert np.isnan(y[1, 2, 0, 0]) and np.isposinf(y[0, 1, 0, 0])
    ok = np.ones((2, 3), bool)
    ok[1, 2] = ok[0, 1] = False
    assert_close(y[..., 0, 0][ok], x.mean(axis=(2, 3))[ok], dtype, k=35)
