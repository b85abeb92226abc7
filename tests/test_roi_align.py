"""roi_align: vs the loop transcription of torchvision's C++ kernel over boxes partly outside,
zero-width and inverted boxes, spatial scales, sampling_ratio -1/0/1/2 and aligned on/off,
both dtypes; docs/semantics.md §8.6-8.7 golden values; adjoint/partition properties; gradchecks;
errors."""
import numpy as np
import pytest
from conftest import assert_close
from gradcheck import check_grad
from hypothesis import given
from hypothesis import strategies as st
from pool_cases import make_input, roi_cases, with_fixture

import nnlite
from nnlite import kernels, ops

ratios = st.sampled_from([-1, 0, 1, 2])


@with_fixture
@given(case=roi_cases(), sr=ratios, aligned=st.booleans(), seed=st.integers(0, 2 ** 31))
def test_roi_align_matches_reference(backend, case, sr, aligned, seed):
    dtype = case["dtype"]
    x = make_input(case["shape"], "float", dtype, seed)
    rois, out, scale = case["rois"], case["out"], case["scale"]
    xt = nnlite.tensor(x, requires_grad=True)
    y = ops.roi_align(xt, rois, out, scale, sr, aligned)
    y_ref = kernels.impl("roi_align_forward", "reference")(x, rois, out, scale, sr, aligned)
    assert y.dtype == dtype and y.shape == (len(rois), x.shape[1]) + out
    assert_close(y, y_ref, dtype, scale=3)
    gy = make_input(y.shape, "float", dtype, seed + 1)
    y.backward(gy)
    g_ref = kernels.impl("roi_align_backward", "reference")(gy, rois, x.shape, scale, sr,
                                                            aligned)
    assert_close(xt.grad, g_ref, dtype, k=max(1, len(rois)) * 16, scale=3)


X36 = np.arange(36, dtype=np.float64).reshape(1, 1, 6, 6)


@pytest.mark.parametrize("box, out, scale, sr, aligned, expected", [
    ((0, 0.5, 0.5, 3.6, 4.4), 2, 1, -1, False, [10.125, 11.675, 21.825, 23.375]),
    ((0, 0.5, 0.5, 3.6, 4.4), 2, 1, -1, True, [6.625, 8.175, 18.325, 19.875]),
    ((0, 0.5, 0.5, 3.6, 4.4), 2, 1, 2, True, [6.625, 8.175, 18.325, 19.875]),
    ((0, 1, 1, 4, 4), 2, 0.5, 2, False, [6.125, 6.875, 10.625, 11.375]),
    ((0, -2, -2, 1, 1), 2, 1, 2, False, [0.0, 0.15625, 0.9375, 2.1875]),
    ((0, 4.5, 4.5, 6.5, 6.5), 1, 1, 2, True, [33.25]),
    ((0, 2, 2, 2.2, 2.2), 1, 1, -1, False, [17.5]),
    ((0, 2, 2, 2.2, 2.2), 1, 1, -1, True, [11.2]),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_roi_align_spec_golden_values(backend, box, out, scale, sr, aligned, expected, dtype):
    y = ops.roi_align(nnlite.tensor(X36.astype(dtype)), np.array([box], dtype), out, scale, sr,
                      aligned)
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(y.data.ravel(), expected, rtol=rtol, atol=rtol)


def test_roi_align_drops_samples_beyond_minus_one_like_the_cpp_kernel(backend):
    # docs/semantics.md §8.6: torchvision's Python fallback clamps these and would give
    # [0, .1875, .75, ...]
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y = ops.roi_align(nnlite.tensor(x), np.array([[0, -4, -4, 1, 1.0]]), 2, 1.0, 2)
    np.testing.assert_allclose(y.data.ravel(), [0, 0, 0, 0.9375])


def test_roi_align_aligned_reversed_box_has_no_samples(backend):
    # aligned=True keeps the negative size; the adaptive grid ceil(<0) gives no samples -> 0
    y = ops.roi_align(nnlite.tensor(X36), np.array([[0, 4, 4, 1, 1.0]]), 2, 1.0, -1, True)
    np.testing.assert_array_equal(y.data, 0)
    # with a fixed grid the samples exist and walk backwards from the start corner
    y = ops.roi_align(nnlite.tensor(X36), np.array([[0, 4, 4, 1, 1.0]]), 1, 1.0, 1, True)
    np.testing.assert_allclose(y.data.item(), 6 * 2.0 + 2.0)


@with_fixture
@given(case=roi_cases(), sr=ratios, aligned=st.booleans())
def test_roi_align_backward_is_the_adjoint(backend, case, sr, aligned):
    # <roi_align(x), g> == <x, roi_align^T(g)>: roi_align is linear in x
    dtype = np.float64
    x = make_input(case["shape"], "float", dtype, 1)
    rois = case["rois"].astype(dtype)
    xt = nnlite.tensor(x, requires_grad=True)
    y = ops.roi_align(xt, rois, case["out"], case["scale"], sr, aligned)
    g = make_input(y.shape, "float", dtype, 2)
    y.backward(g)
    np.testing.assert_allclose(np.vdot(y.data, g), np.vdot(x, xt.grad), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sr", [-1, 1, 2, 3])
def test_roi_align_gradient_of_each_bin_sums_to_one_inside_the_map(backend, sr):
    # every sample in range: the bilinear weights of a bin sum to count / count = 1
    rng = np.random.default_rng(sr + 5)
    x = nnlite.tensor(np.zeros((1, 2, 9, 11)), requires_grad=True)
    lo = rng.uniform(0, 4, (6, 2))
    hi = lo + rng.uniform(0.5, 4, (6, 2))
    rois = np.concatenate([np.zeros((6, 1)), lo, hi], axis=1)
    for k in range(6):
        x.grad = None
        y = ops.roi_align(x, rois[k:k + 1], (3, 2), 1.0, sr)
        y.backward(np.ones(y.shape))
        np.testing.assert_allclose(x.grad.sum(axis=(2, 3)), 6.0, rtol=1e-12)


@given(case=roi_cases(), sr=ratios, aligned=st.booleans())
def test_roi_align_gradcheck(case, sr, aligned):
    x = make_input(case["shape"], "float", np.float64, 3)
    rois = case["rois"].astype(np.float64)
    check_grad(lambda t: ops.roi_align(t, rois, case["out"], case["scale"], sr, aligned), [x])


def test_roi_align_box_formats_and_empty(backend):
    x = make_input((2, 3, 8, 8), "float", np.float32, 0)
    b0 = np.array([[0.5, 0, 3, 3.5]], np.float32)
    b1 = np.array([[2, 2, 5, 5], [1, 1, 7, 7]], np.float32)
    rois = np.array([[0, 0.5, 0, 3, 3.5], [1, 2, 2, 5, 5], [1, 1, 1, 7, 7]], np.float32)
    y1 = ops.roi_align(nnlite.tensor(x), [nnlite.tensor(b0), b1], 3, 0.5, 2)
    y2 = ops.roi_align(nnlite.tensor(x), nnlite.tensor(rois), 3, 0.5, 2)
    np.testing.assert_array_equal(y1.data, y2.data)
    assert ops.roi_align(nnlite.tensor(x), [np.zeros((0, 4), np.float32)], 2).shape == \
        (0, 3, 2, 2)


def test_roi_align_parallel_backward_matches_numpy(monkeypatch):
    if "cython" not in nnlite.available_backends():
        pytest.skip("Cython extension not built")
    monkeypatch.setattr(kernels.roi_cython, "_SERIAL_WORK", 0)  # force the threaded path
    rng = np.random.default_rng(0)
    x = make_input((2, 64, 20, 20), "float", np.float64, 1)
    lo = rng.uniform(-2, 14, (50, 2))
    rois = np.concatenate([rng.integers(0, 2, (50, 1)), lo, lo + rng.uniform(1, 8, (50, 2))],
                          axis=1)
    grads = []
    for b in ("cython", "numpy"):
        with nnlite.using_backend(b):
            xt = nnlite.tensor(x, requires_grad=True)
            y = ops.roi_align(xt, rois, 7, 1.0, 2)
            y.backward(np.ones(y.shape))
            grads.append(xt.grad)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12, atol=1e-12)


def test_roialign_module():
    m = ops.RoIAlign(7, 0.25, 2)
    assert (m.output_size, m.spatial_scale, m.sampling_ratio, m.aligned) == (7, 0.25, 2, False)
    assert repr(m) == "RoIAlign(output_size=7, spatial_scale=0.25, sampling_ratio=2, " \
                      "aligned=False)"
    x = nnlite.tensor(X36)
    rois = np.array([[0, 0, 0, 20, 20.0]])
    np.testing.assert_array_equal(m(x, rois).data, ops.roi_align(x, rois, 7, 0.25, 2).data)


def test_roi_align_rejects_bad_input():
    rois = np.array([[0, 0, 0, 1, 1.0]])
    x = nnlite.tensor(X36)
    with pytest.raises(TypeError, match="sampling_ratio"):
        ops.roi_align(x, rois, 2, 1.0, 1.5)
    with pytest.raises(TypeError, match="aligned"):
        ops.roi_align(x, rois, 2, 1.0, 2, aligned="yes")
    with pytest.raises(ValueError, match=r"batch index 3.0"):
        ops.roi_align(x, np.array([[3, 0, 0, 1, 1.0]]), 2)
    with pytest.raises(ValueError, match=r"non-finite"):
        ops.roi_align(x, np.array([[0, 0, -np.inf, 1, 1.0]]), 2)
    with pytest.raises(ValueError, match=r"\(0, 2\)"):
        ops.roi_align(x, rois, (0, 2))
    with pytest.raises(ValueError, match=r"adaptive sampling grid.*sampling_ratio > 0"):
        ops.roi_align(x, np.array([[0, 0, 0, 1e6, 1e6]]), 7)
    with pytest.raises(ValueError, match=r"samples per box"):
        ops.roi_align(x, rois, 7, 1.0, 1000)
