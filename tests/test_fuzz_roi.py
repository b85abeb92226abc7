"""Fuzz: torchvision's roi_pool / roi_align and the RoIPool / RoIAlign modules.

Random boxes (inside, straddling and far outside the map, reversed, degenerate, both box
formats), scales, output sizes, sampling ratios and NaN/inf feature maps must match the
torchvision-transcription reference on every backend (forward values and input gradients);
invalid boxes (non-finite coordinates, batch index out of range, wrong shapes or dtypes, absurd
coordinates or sampling grids) must raise ValueError/TypeError.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnlite
from nnlite import ops
from fuzzing import (ALL, LAYOUTS, agree, fuzz_settings, hang_guard, make_array,  # noqa: F401
                     memory_cap, on_backend, outcome, rngs, tol)

pytestmark = pytest.mark.fuzz

DTYPES = (np.float32, np.float64)
_coord = st.one_of(st.integers(-12, 40).map(lambda v: v / 4),
                   st.floats(-8, 16, allow_nan=False, allow_infinity=False))


@st.composite
def roi_cases(draw):
    rng = draw(rngs())
    dtype = draw(st.sampled_from(DTYPES), label="dtype")
    n = draw(st.integers(1, 2), label="N")
    c = draw(st.integers(1, 3), label="C")
    H, W = draw(st.integers(1, 7), label="H"), draw(st.integers(1, 7), label="W")
    x = make_array(rng, (n, c, H, W), dtype, draw(st.sampled_from(LAYOUTS), label="layout"),
                   draw(st.sampled_from([0.0, 0.0, 0.1]), label="nan_inf"),
                   integer=draw(st.booleans(), label="ties"))
    k = draw(st.integers(0, 4), label="K")
    rows = [[draw(st.integers(0, n - 1), label="b")] + [draw(_coord) for _ in range(4)]
            for _ in range(k)]
    rois = np.array(rows, dtype=dtype).reshape(k, 5)
    fmt = draw(st.sampled_from(["tensor", "ndarray", "list"]), label="format")
    valid = True
    bad = draw(st.integers(0, 9), label="bad?")
    if bad == 0 and k:
        i, j = draw(st.integers(0, k - 1)), draw(st.integers(0, 4))
        rois[i, j] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30, n, -1, n + 0.5]))
        valid = False
    elif bad == 1:
        rois = rois.astype(np.float32 if dtype == np.float64 else np.float64)
        valid = False
    elif bad == 2:
        rois = rois[:, 1:] if fmt != "list" else rois[:, :3]
        valid = False
    if fmt == "list":
        boxes = [rois[rois[:, 0] == i, 1:] if rois.shape[1] == 5 else rois for i in range(n)]
    elif fmt == "tensor":
        boxes = nnlite.tensor(rois)
    else:
        boxes = rois
    output_size = draw(st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4),
                                                               st.integers(1, 4))),
                       label="output_size")
    if draw(st.integers(0, 14), label="bad size?") == 0:
        output_size = draw(st.sampled_from([0, -1, (2, 0), (1, 2, 3), 2.5, "2", None, True,
                                            2 ** 62, (2 ** 40, 2 ** 40)]))
        valid = False
    scale = draw(st.sampled_from([1.0, 0.5, 0.25, 2.0, 1 / 3, 0.0625]), label="scale")
    if draw(st.integers(0, 14), label="bad scale?") == 0:
        scale = draw(st.sampled_from([np.nan, np.inf, "1", None, -1.0, 0.0, 1e300]))
        valid = valid and isinstance(scale, float) and abs(scale) < 1e10 and scale == scale
    return x, boxes, output_size, scale, valid, rng


def _run(fn, x, boxes, seed, **kwargs):
    t = nnlite.tensor(x, requires_grad=True)
    y = fn(t, boxes, **kwargs)
    gy = np.random.default_rng(seed).uniform(-1, 1, y.shape).astype(y.dtype)
    if y.data.size:
        y.backward(gy)
    return y.data, None if t.grad is None else np.asarray(getattr(t.grad, "data", t.grad))


def _check(fn, case, **kwargs):
    x, boxes, output_size, scale, valid, rng = case
    seed = int(rng.integers(2 ** 31))
    results = {b: outcome(on_backend, b, _run, fn, x, boxes, seed, output_size=output_size,
                          spatial_scale=scale, memory_ok=not valid, **kwargs) for b in ALL}
    rtol, atol = tol(x.dtype, 64, 4.0)
    agree(results, rtol, atol, f"{fn.__name__}({output_size}, {scale}, {kwargs})",
          exact_nonfinite=ALL, valid=valid)


@fuzz_settings(300)
@given(case=roi_cases())
def test_fuzz_roi_pool(case, memory_cap):
    _check(ops.roi_pool, case)


@fuzz_settings(300)
@given(case=roi_cases(), sampling_ratio=st.sampled_from([-1, 0, 1, 2, 3]),
       aligned=st.booleans())
def test_fuzz_roi_align(case, sampling_ratio, aligned, memory_cap):
    _check(ops.roi_align, case, sampling_ratio=sampling_ratio, aligned=aligned)


@pytest.mark.parametrize("backend_name", ALL)
@pytest.mark.parametrize("sampling_ratio", [2 ** 12, 2 ** 31, 2 ** 62, 2 ** 63, -(2 ** 63)])
def test_roi_align_huge_sampling_ratio(backend_name, sampling_ratio, memory_cap):
    x = np.ones((1, 1, 4, 4), np.float32)
    rois = np.array([[0, 0, 0, 3, 3]], np.float32)
    res = outcome(on_backend, backend_name, ops.roi_align, x, rois, 2,
                  sampling_ratio=sampling_ratio, memory_ok=True)
    if not hasattr(res, "exc"):
        np.testing.assert_allclose(res.data, 1.0)


@pytest.mark.parametrize("backend_name", ALL)
@pytest.mark.parametrize("coord", [2.0 ** 23, 2.0 ** 24 + 2, 2.0 ** 40, 3e38])
def test_roi_ops_huge_boxes(backend_name, coord, memory_cap):
    """Boxes far off the map: zeros / -FLT_MAX (docs/semantics.md §7-§8), or ValueError;
    never a hang."""
    x = np.ones((1, 1, 4, 4), np.float32)
    rois = np.array([[0, 0, 0, coord, coord]], np.float32)
    for fn in (ops.roi_pool, ops.roi_align):
        kwargs = {"sampling_ratio": 2} if fn is ops.roi_align else {}
        outcome(on_backend, backend_name, fn, x, rois, 2, memory_ok=True, **kwargs)


@fuzz_settings(80)
@given(case=roi_cases(), kind=st.sampled_from(["pool", "align"]))
def test_fuzz_roi_modules(case, kind, memory_cap):
    x, boxes, output_size, scale, valid, rng = case
    mod = ops.RoIPool(output_size, scale) if kind == "pool" else \
        ops.RoIAlign(output_size, scale, 2)
    results = {b: outcome(on_backend, b, lambda: mod(x, boxes).data, memory_ok=not valid)
               for b in ALL}
    agree(results, *tol(x.dtype, 64, 4.0), f"{type(mod).__name__}", exact_nonfinite=ALL,
          valid=valid)
