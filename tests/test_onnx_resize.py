"""nnlite.onnx.resize (vectorised, separable) against the naive per-element loop reference
(nnlite/onnx/resize_reference.py), over random modes, coordinate modes, nearest modes,
antialias, exclude_outside, cubic coefficients, scales/sizes, axes and rois. Needs neither
onnx nor onnxruntime (those oracles run in test_onnx_ops.py and the onnx node suite)."""
from fractions import Fraction

import numpy as np
import pytest

from nnlite.onnx import resize as R
from nnlite.onnx.resize_reference import resize_reference

CASES = 80


def _config(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(1, 6, 3))
    mode = str(rng.choice(R.MODES))
    ctm = str(rng.choice(R.COORDINATE_MODES))
    kw = dict(mode=mode, coordinate_transformation_mode=ctm,
              nearest_mode=str(rng.choice(R.NEAREST_MODES)),
              cubic_coeff_a=float(rng.choice([-0.75, -0.5])),
              exclude_outside=bool(rng.integers(2)) and mode == "cubic",
              antialias=bool(rng.integers(2)) and mode != "nearest",
              extrapolation_value=float(rng.normal()))
    axes = sorted(int(a) for a in rng.choice(3, size=int(rng.integers(1, 4)), replace=False))
    if rng.integers(2) and ctm != "tf_half_pixel_for_nn":
        sizes = [int(rng.integers(1, 9)) for _ in axes]
        scales = None
    else:
        sizes = None
        scales = [float(rng.choice([0.5, 0.6, 0.75, 1.0, 1.3, 1.5, 2.0, 2.5, 3.0]))
                  for _ in axes]
    roi = None
    if ctm == "tf_crop_and_resize":
        lo = rng.uniform(-0.3, 0.5, len(axes))
        roi = np.concatenate([lo, lo + rng.uniform(0.2, 1.2, len(axes))])
    return shape, axes, scales, sizes, roi, kw, rng


@pytest.mark.parametrize("seed", range(CASES))
def test_resize_matches_naive_reference(seed):
    shape, axes, scales, sizes, roi, kw, rng = _config(seed)
    x = rng.standard_normal(shape)
    out_shape, scale = R.output_shape(shape, scales, sizes, axes)
    if min(out_shape) == 0:
        return
    got = R.resize(x, scales=scales, sizes=sizes, axes=axes, roi=roi, **kw)
    full_roi = [(0.0, 1.0)] * 3
    if roi is not None:
        for i, a in enumerate(axes):
            full_roi[a] = (float(roi[i]), float(roi[len(axes) + i]))
    if sizes is not None:   # the exact scale size/length (R.resize computes with it)
        scale = [Fraction(*r) if r else 1.0 for r in (R.size_ratios(shape, sizes, axes).get(a)
                                                      for a in range(3))]
    ref = resize_reference(x, out_shape, scale, kw["mode"], kw["coordinate_transformation_mode"],
                           kw["nearest_mode"], kw["cubic_coeff_a"], kw["exclude_outside"],
                           kw["extrapolation_value"], kw["antialias"], full_roi)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12, err_msg=str(kw))


@pytest.mark.parametrize("n_in,n_out", [(57, 126), (100, 224), (14, 18), (126, 57)])
@pytest.mark.parametrize("ctm,nearest", [("asymmetric", "floor"), ("align_corners", "floor"),
                                         ("half_pixel", "ceil"), ("asymmetric", "ceil")])
def test_nearest_with_sizes_reads_the_exact_source_row(n_in, n_out, ctm, nearest):
    # sizes 57 -> 126: output row 42 maps to 42 * 57 / 126 = 19 exactly (asymmetric), but
    # float64 42 / (126 / 57) is 18.999999999999996 and 'floor' read row 18 (ONNX Runtime
    # and F.interpolate read 19); align_corners' last row read the row before the last
    x = np.arange(n_in, dtype=np.float32).reshape(1, 1, n_in, 1)
    y = np.arange(n_out)
    if ctm == "asymmetric":
        num, den = y * n_in, n_out
    elif ctm == "align_corners":
        num, den = y * (n_in - 1), n_out - 1
    else:   # (y + 0.5) * n_in / n_out - 0.5
        num, den = (2 * y + 1) * n_in - n_out, 2 * n_out
    want = -(-num // den) if nearest == "ceil" else num // den
    want = np.clip(want, 0, n_in - 1)
    sizes = [1, 1, n_out, 1]
    got = R.resize(x, sizes=sizes, mode="nearest", coordinate_transformation_mode=ctm,
                   nearest_mode=nearest)
    np.testing.assert_array_equal(got.reshape(-1), want)
    ref = resize_reference(x, (1, 1, n_out, 1), [1.0, 1.0, Fraction(n_out, n_in), 1.0],
                           "nearest", ctm, nearest)
    np.testing.assert_array_equal(ref.reshape(-1), want)


def test_integer_data_rounds_and_saturates():
    x = np.array([[0, 255, 255, 0]], np.uint8)
    y = R.resize(x, scales=[1, 1.5], mode="cubic")
    ref = resize_reference(x, (1, 6), [1.0, 1.5], "cubic")
    assert y.dtype == np.uint8
    assert np.array_equal(y, np.clip(np.rint(ref), 0, 255).astype(np.uint8))
    assert ref.max() > 255 and ref.min() < 0          # the cubic overshoot was clipped


@pytest.mark.parametrize("kw,match", [
    (dict(scales=[1, -2]), "positive"), (dict(sizes=[1, -1]), "negative"),
    (dict(scales=[1, 2], mode="area"), "mode"), (dict(scales=[1, 2], nearest_mode="up"),
                                                 "nearest_mode"),
    (dict(scales=[1, 2], coordinate_transformation_mode="x"), "coordinate"),
    (dict(scales=[2]), "entries"), (dict(sizes=[3, 3], keep_aspect_ratio_policy="fit"),
                                    "keep_aspect")])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        R.resize(np.zeros((2, 3), np.float32), **kw)
