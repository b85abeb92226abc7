"""roi_pool: vs the loop transcription of torchvision's kernel (values and argmax exact, both
dtypes), docs/semantics.md §7.6 golden values, dtype-specific bin arithmetic, gradients, box
formats, modules and errors."""
import numpy as np
import pytest
from conftest import assert_close
from gradcheck import check_grad
from hypothesis import given
from hypothesis import strategies as st
from pool_cases import make_input, roi_cases, with_fixture

import nnlite
from nnlite import kernels, ops

FLT_MAX = np.finfo(np.float32).max


@with_fixture
@given(case=roi_cases(), kind=st.sampled_from(["int", "float"]), seed=st.integers(0, 2 ** 31))
def test_roi_pool_matches_reference(backend, case, kind, seed):
    x = make_input(case["shape"], kind, case["dtype"], seed)
    rois, out, scale = case["rois"], case["out"], case["scale"]
    y, arg = kernels.impl("roi_pool_forward")(x, rois, out, scale)
    y_ref, arg_ref = kernels.impl("roi_pool_forward", "reference")(x, rois, out, scale)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    xt = nnlite.tensor(x, requires_grad=True)
    yt = ops.roi_pool(xt, rois, out, scale)
    np.testing.assert_array_equal(yt.data, y_ref)
    gy = make_input(y.shape, "float", case["dtype"], seed + 1)
    yt.backward(gy)
    g_ref = kernels.impl("roi_pool_backward", "reference")(gy, rois, arg_ref, x.shape)
    assert_close(xt.grad, g_ref, case["dtype"], k=len(rois) * out[0] * out[1], scale=3)
    # gradient lands only on argmax positions
    hit = np.zeros(x.shape, bool)
    for k, r in enumerate(rois):
        for c in range(x.shape[1]):
            a = arg_ref[k, c][arg_ref[k, c] >= 0]
            hit[int(r[0]), c].flat[a] = True
    assert not xt.grad[~hit].any()


X36 = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)


@pytest.mark.parametrize("box, scale, out, values, argmax", [
    ((0, 0.5, 0.5, 3.6, 4.4), 1, 2, [14, 16, 26, 28], [14, 16, 26, 28]),
    ((0, 1, 1, 4, 4), 0.5, 2, [7, 8, 13, 14], [7, 8, 13, 14]),
    ((0, 4, 4, 2, 2), 1, 2, [28] * 4, [28] * 4),
    ((0, 2.5, 2.5, 2.5, 2.5), 1, 1, [21], [21]),
    ((0, 10, 10, 12, 12), 1, 2, [0] * 4, [-1] * 4),
    ((0, 0, 0, 4, 4), 1, 2, [14, 16, 26, 28], [14, 16, 26, 28]),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_roi_pool_spec_golden_values(backend, box, scale, out, values, argmax, dtype):
    rois = np.array([box], dtype=dtype)
    y, arg = kernels.impl("roi_pool_forward")(X36.astype(dtype), rois, (out, out), scale)
    assert y.ravel().tolist() == values and arg.ravel().tolist() == argmax
    yt = ops.roi_pool(nnlite.tensor(X36.astype(dtype)), rois, out, scale)
    assert yt.data.ravel().tolist() == values


def test_roi_pool_bin_edges_follow_the_input_dtype(backend):
    # roi 7 rows, 13 bins: 13 * float32(7/13) = 7.0000005 -> the last bin ends at row 8 in
    # float32 but at row 7 in float64 (docs/semantics.md §7.3)
    x = np.arange(10.0).reshape(1, 1, 10, 1)
    for dtype, last in ((np.float32, 7.0), (np.float64, 6.0)):
        y = ops.roi_pool(nnlite.tensor(x.astype(dtype)), np.array([[0, 0, 0, 0, 6]], dtype),
                         (13, 1))
        assert y.data[0, 0, -1, 0] == last


def test_roi_pool_rounds_half_away_from_zero(backend):
    # 0.5 -> 1 and 2.5 -> 3 (numpy's round would give 0 and 2)
    y = ops.roi_pool(nnlite.tensor(X36), np.array([[0, 0.5, 2.5, 0.5, 2.5]], np.float32), 1)
    assert y.data.item() == X36[0, 0, 3, 1]


def test_roi_pool_skips_nan_and_minus_inf(backend):
    x = np.array([[np.nan, 2.0], [-np.inf, 2.0]], dtype=np.float32)[None, None]
    y, arg = kernels.impl("roi_pool_forward")(x, np.array([[0, 0, 0, 1, 1]], np.float32),
                                              (1, 1), 1.0)
    assert y.item() == 2.0 and arg.item() == 1  # first of the tied 2.0, NaN skipped
    x = np.array([[np.nan, -np.inf]], dtype=np.float64)[None, None]
    y, arg = kernels.impl("roi_pool_forward")(x, np.array([[0, 0, 0, 1, 0]], np.float64),
                                              (1, 1), 1.0)
    assert y.item() == -FLT_MAX and arg.item() == -1


@given(case=roi_cases(), seed=st.integers(0, 2 ** 31))
def test_roi_pool_gradcheck(case, seed):
    x = make_input(case["shape"], "distinct", np.float64, seed)
    rois = case["rois"].astype(np.float64)
    check_grad(lambda t: ops.roi_pool(t, rois, case["out"], case["scale"]), [x])


def test_roi_pool_box_list_format_and_batch_index(backend):
    x = make_input((2, 3, 8, 8), "float", np.float32, 0)
    b0 = np.array([[0, 0, 3, 3], [1, 2, 7, 6]], np.float32)
    b1 = np.array([[2, 2, 5, 5]], np.float32)
    rois = np.array([[0, 0, 0, 3, 3], [0, 1, 2, 7, 6], [1, 2, 2, 5, 5]], np.float32)
    y_list = ops.roi_pool(nnlite.tensor(x), [b0, nnlite.tensor(b1)], 2)
    y_rois = ops.roi_pool(nnlite.tensor(x), nnlite.tensor(rois), 2)
    np.testing.assert_array_equal(y_list.data, y_rois.data)
    on_image0 = rois[2:].copy()
    on_image0[:, 0] = 0  # the same box on a batch holding only image 1
    np.testing.assert_array_equal(y_rois.data[2],
                                  ops.roi_pool(nnlite.tensor(x[1:]), on_image0, 2).data[0])
    assert ops.roi_pool(nnlite.tensor(x), [], 2).shape == (0, 3, 2, 2)
    assert ops.roi_pool(nnlite.tensor(x), np.zeros((0, 5), np.float32), (2, 3)).shape == \
        (0, 3, 2, 3)


def test_roi_pool_parallel_backward_matches_numpy(monkeypatch):
    if "cython" not in nnlite.available_backends():
        pytest.skip("Cython extension not built")
    monkeypatch.setattr(kernels.roi_cython, "_SERIAL_WORK", 0)  # force the threaded path
    rng = np.random.default_rng(0)
    x = make_input((2, 64, 16, 16), "int", np.float32, 1)  # ties on purpose
    xy = rng.uniform(0, 16, (60, 4))
    rois = np.concatenate([rng.integers(0, 2, (60, 1)), np.sort(xy[:, ::2], 1)[:, :1],
                           np.sort(xy[:, 1::2], 1)[:, :1], np.sort(xy[:, ::2], 1)[:, 1:],
                           np.sort(xy[:, 1::2], 1)[:, 1:]], axis=1).astype(np.float32)
    grads = []
    for b in ("cython", "numpy"):
        with nnlite.using_backend(b):
            xt = nnlite.tensor(x, requires_grad=True)
            y = ops.roi_pool(xt, rois, 7)
            y.backward(np.ones(y.shape, np.float32))
            grads.append(xt.grad)
    np.testing.assert_array_equal(grads[0], grads[1])  # integer counts: exact in any order


def test_roipool_module():
    m = ops.RoIPool((7, 7), 1 / 16)
    assert m.output_size == (7, 7) and m.spatial_scale == 0.0625
    assert repr(m) == "RoIPool(output_size=(7, 7), spatial_scale=0.0625)"
    x = nnlite.tensor(X36)
    rois = np.array([[0, 0, 0, 95, 95]], np.float32)
    np.testing.assert_array_equal(m(x, rois).data, ops.roi_pool(x, rois, 7, 1 / 16).data)


@pytest.mark.parametrize("boxes, kwargs, exc, match", [
    (np.array([[2, 0, 0, 1, 1]], np.float32), {}, ValueError, r"batch index 2.0.*batch of 1"),
    (np.array([[-1, 0, 0, 1, 1]], np.float32), {}, ValueError, r"batch index -1.0"),
    (np.array([[0, 0, np.nan, 1, 1]], np.float32), {}, ValueError, r"box 0.*non-finite"),
    (np.array([[0, 0, 0, np.inf, 1]], np.float32), {}, ValueError, r"non-finite"),
    (np.array([[0, 0, 0, 1]], np.float32), {}, ValueError, r"Tensor\[K, 5\].*\(1, 4\)"),
    ([np.array([[0, 0, 0, 1, 1]], np.float32)], {}, ValueError, r"List\[Tensor\[L, 4\]\].*0"),
    (np.array([[0, 0, 0, 1, 1]], np.float64), {}, TypeError, r"float32.*float64"),
    ("boxes", {}, TypeError, r"boxes must be"),
    (np.array([[0, 0, 0, 1, 1]], np.float32), dict(output_size=0), ValueError, r"\(0, 0\)"),
    (np.array([[0, 0, 0, 1, 1]], np.float32), dict(output_size=(2, -1)), ValueError,
     r"\(2, -1\)"),
    (np.array([[0, 0, 0, 1, 1]], np.float32), dict(output_size=2.0), TypeError, "output_size"),
    (np.array([[0, 0, 0, 1, 1]], np.float32), dict(output_size=(1, 2, 3)), TypeError,
     "output_size"),
    (np.array([[0, 0, 0, 1, 1]], np.float32), dict(spatial_scale=np.nan), ValueError,
     "spatial_scale"),
    (np.array([[0, 0, 0, 1e30, 1]], np.float32), {}, ValueError, r"exceeds"),
])
def test_roi_pool_rejects_bad_input(boxes, kwargs, exc, match):
    kwargs.setdefault("output_size", 2)
    with pytest.raises(exc, match=match):
        ops.roi_pool(nnlite.tensor(X36), boxes, **kwargs)


def test_roi_pool_rejects_bad_feature_maps():
    rois = np.array([[0, 0, 0, 1, 1]], np.float32)
    with pytest.raises(ValueError, match=r"4-D.*\(6, 6\)"):
        ops.roi_pool(nnlite.tensor(X36[0, 0]), rois, 2)
    with pytest.raises(TypeError, match="int64"):
        ops.roi_pool(np.zeros((1, 1, 4, 4), np.int64), rois, 2)
