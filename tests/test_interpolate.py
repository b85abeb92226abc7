"""F.interpolate (+ Upsample modules) and pixel_shuffle / pixel_unshuffle.

Oracles: the naive loop kernels (nnlite/kernels/interpolate_reference.py,
pixel_shuffle_reference.py), the adjoint identity <A x, g> = <x, A^T g>, float64 finite
differences and PyTorch (forward and backward over the mode x align_corners x antialias x
size/scale_factor/recompute matrix, float32 and float64).
"""
import itertools
import warnings

import numpy as np
import pytest

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from gradcheck import check_grad
from nnlite.kernels import interpolate_numpy, pixel_shuffle_reference

RNG = np.random.default_rng(1234)

# (mode, align_corners values, antialias values) per input rank
MODES3 = [("nearest", [None], [False]), ("nearest-exact", [None], [False]),
          ("linear", [False, True], [False]), ("area", [None], [False])]
MODES4 = [("nearest", [None], [False]), ("nearest-exact", [None], [False]),
          ("bilinear", [False, True], [False, True]), ("bicubic", [False, True], [False, True]),
          ("area", [None], [False])]
SPECS = [dict(size=1), dict(size=4), dict(size=13), dict(scale_factor=1.7),
         dict(scale_factor=0.37), dict(scale_factor=2.0), dict(scale_factor=1.0),
         dict(scale_factor=3.0), dict(scale_factor=0.5), dict(scale_factor=1.05),
         dict(scale_factor=2.1), dict(scale_factor=1.7, recompute_scale_factor=True),
         dict(scale_factor=0.37, recompute_scale_factor=False)]
SPECS4 = SPECS + [dict(size=(3, 11)), dict(size=(11, 2)), dict(scale_factor=(2.3, 0.4)),
                  dict(scale_factor=(0.6, 1.0)), dict(size=(5, 7))]
SHAPES3 = [(1, 1, 5), (2, 3, 9), (1, 2, 1)]
SHAPES4 = [(1, 1, 5, 7), (2, 3, 1, 4), (1, 2, 9, 3), (1, 5, 1, 1)]


def _valid(shape, spec):
    sf = spec.get("scale_factor")
    if sf is None:
        return True
    sfs = sf if isinstance(sf, tuple) else (sf,) * (len(shape) - 2)
    return all(int(n * f) >= 1 for n, f in zip(shape[2:], sfs))


def _cases(rank):
    modes, specs, shapes = (MODES3, SPECS, SHAPES3) if rank == 3 else (MODES4, SPECS4, SHAPES4)
    for shape, spec, (mode, acs, aas) in itertools.product(shapes, specs, modes):
        if not _valid(shape, spec):
            continue
        for ac, aa in itertools.product(acs, aas):
            kw = dict(spec, mode=mode)
            if ac is not None:
                kw["align_corners"] = ac
            if aa:
                kw["antialias"] = True
            yield shape, kw


def _run(x, kw, g=None):
    xt = nnlite.tensor(x, requires_grad=True)
    y = F.interpolate(xt, **kw)
    if g is None:
        g = RNG.normal(size=y.shape).astype(x.dtype)
    y.backward(g)
    return y.data, xt.grad, g


@pytest.fixture(params=["dense", "taps"])
def numpy_path(request, monkeypatch):
    """Run under both NumPy strategies: the per-axis matrix product and the tap gathers."""
    if request.param == "taps":
        monkeypatch.setattr(interpolate_numpy, "_DENSE_PER_TAP", 0)
    return request.param


# --------------------------------------------------------------------------- vs reference
def _subset(rank, step):
    return [c for i, c in enumerate(_cases(rank)) if i % step == 0]


@pytest.mark.parametrize("rank", [3, 4])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_matches_reference_loops(rank, dtype, numpy_path):
    tol = dict(rtol=1e-11, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=5e-6)
    for shape, kw in _subset(rank, 3 if rank == 4 else 1):
        if kw["mode"] == "area":
            continue
        x = RNG.normal(size=shape).astype(dtype)
        y, gx, g = _run(x, kw)
        with nnlite.using_backend("reference"):
            yr, gxr, _ = _run(x, kw, g)
        assert y.dtype == dtype and gx.dtype == dtype
        np.testing.assert_allclose(y, yr, err_msg=f"{shape} {kw}", **tol)
        np.testing.assert_allclose(gx, gxr, err_msg=f"{shape} {kw}", **tol)


@pytest.mark.parametrize("rank", [3, 4])
def test_backward_is_the_adjoint_of_forward(rank, numpy_path):
    for shape, kw in _cases(rank):
        u = RNG.normal(size=shape)
        y, gx, g = _run(u, kw)
        lhs, rhs = np.sum(y * g), np.sum(u * gx)
        assert abs(lhs - rhs) <= 1e-10 * (1 + abs(lhs)), (shape, kw, lhs, rhs)


@pytest.mark.parametrize("kw", [dict(scale_factor=1.7, mode="nearest"),
                                dict(size=(4, 9), mode="bilinear", align_corners=True),
                                dict(scale_factor=0.6, mode="bicubic"),
                                dict(size=(2, 3), mode="bicubic", antialias=True),
                                dict(scale_factor=(0.4, 1.6), mode="bilinear", antialias=True),
                                dict(size=(3, 2), mode="area")])
def test_gradients_finite_differences(kw):
    x = RNG.normal(size=(1, 2, 5, 4))
    check_grad(lambda t: F.interpolate(t, **kw), [x], rtol=1e-6, atol=1e-8)


def test_long_axes_use_taps_and_agree_with_reference():
    # an axis longer than 64 * taps takes the gather/reduceat path without monkeypatching
    x = RNG.normal(size=(2, 1, 300))
    for kw in (dict(size=451, mode="linear"), dict(scale_factor=0.37, mode="nearest-exact"),
               dict(size=129, mode="linear", align_corners=True)):
        y, gx, g = _run(x, kw)
        with nnlite.using_backend("reference"):
            yr, gxr, _ = _run(x, kw, g)
        np.testing.assert_allclose(y, yr, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gx, gxr, rtol=1e-12, atol=1e-12)


def test_known_values():
    x = nnlite.tensor(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    np.testing.assert_allclose(F.interpolate(x, scale_factor=2, mode="bilinear").data[0, 0, 0],
                               [1.0, 1.25, 1.75, 2.0])
    np.testing.assert_allclose(
        F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True).data[0, 0, 0],
        [1.0, 4 / 3, 5 / 3, 2.0])
    np.testing.assert_array_equal(F.interpolate(x, size=(2, 4)).data[0, 0, 1], [3, 3, 4, 4])
    # bicubic on a linear ramp reproduces the ramp away from the clamped border (Keys' kernel
    # is exact for lines); next to the border the clamped taps bend it: 0.40625 = 0.5 - 3/32
    ramp = nnlite.tensor(np.arange(8.0).reshape(1, 1, 1, 8).repeat(4, axis=2))
    y = F.interpolate(ramp, size=(4, 15), mode="bicubic", align_corners=True).data[0, 0, 0]
    np.testing.assert_allclose(y[2:-2], np.arange(2, 13) * 0.5, atol=1e-12)
    np.testing.assert_allclose(y[[0, 1, -2, -1]], [0.0, 0.40625, 6.59375, 7.0], atol=1e-12)


def test_empty_batch_and_dtypes():
    y = F.interpolate(nnlite.tensor(np.zeros((0, 3, 5, 7), np.float32)), scale_factor=2,
                      mode="bicubic")
    assert y.shape == (0, 3, 10, 14) and y.dtype == np.float32
    y = F.interpolate(nnlite.tensor(np.zeros((0, 3, 5, 7))), size=(2, 3), mode="bilinear",
                      antialias=True)
    assert y.shape == (0, 3, 2, 3) and y.dtype == np.float64


# --------------------------------------------------------------------------- PyTorch parity
def _torch_known_divergence(shape, kw, out_shape):
    """Cases where PyTorch 2.13's CPU results contradict themselves (documented in vision.py):

    - antialias with an output width of 1 while H changes: its vertical pass gives every output
      row the first row's filter (the rows come out equal);
    - bicubic / antialias when an axis keeps its size under a scale factor != 1: its forward
      copies (antialias) or uses 1/scale_factor, its backward copies (bicubic) or uses the
      filter (antialias), so the backward is not the forward's transpose.
    Returns 'forward', 'backward' or None.
    """
    if kw.get("antialias") and out_shape[-1] == 1 and out_shape[-2] != shape[-2]:
        return "forward"
    if kw["mode"] in ("bicubic", "bilinear") and kw.get("scale_factor") is not None:
        sf = kw["scale_factor"]
        sf = sf if isinstance(sf, tuple) else (sf,) * 2
        same = [o == i and s != 1 for o, i, s in zip(out_shape[2:], shape[2:], sf)]
        if any(same) and (kw["mode"] == "bicubic" or kw.get("antialias")):
            if not kw.get("recompute_scale_factor"):
                return "backward"
    return None


def _torch_nearest_backward_differs(shape, kw, out_shape):
    """PyTorch's nearest backward always uses nearest_idx (float32, special cases out == in and
    out == 2 * in); its forward uses generic indexing for 3-D input and large 4-D outputs."""
    if not kw["mode"].startswith("nearest"):
        return False
    sf = kw.get("scale_factor")
    if sf is None or kw.get("recompute_scale_factor"):
        return False
    x = nnlite.tensor(np.zeros(shape))
    from nnlite.functional.vision import _nearest_rule

    if _nearest_rule(x, out_shape[2:]) == "index":
        return False
    sfs = sf if isinstance(sf, tuple) else (sf,) * (len(shape) - 2)
    for i, o, s in zip(shape[2:], out_shape[2:], sfs):
        gen = interpolate_numpy.nearest_taps(i, o, s, kw["mode"] == "nearest-exact",
                                             np.dtype(np.float64), "generic")[0]
        idx = interpolate_numpy.nearest_taps(i, o, s, kw["mode"] == "nearest-exact",
                                             np.dtype(np.float64), "index")[0]
        if not np.array_equal(gen, idx):
            return True
    return False


@pytest.mark.torch
@pytest.mark.parametrize("rank", [3, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity_full_matrix(rank, dtype):
    torch = pytest.importorskip("torch")
    tol = 1e-12 if dtype == np.float64 else 3e-6
    checked = 0
    for shape, kw in _cases(rank):
        x = RNG.normal(size=shape).astype(dtype)
        xt = torch.tensor(x, requires_grad=True)
        yt = torch.nn.functional.interpolate(xt, **kw)
        y, gx, g = _run(x, kw)
        assert y.shape == tuple(yt.shape), (shape, kw)
        if yt.numel() == 0:
            continue
        yt.backward(torch.tensor(g))
        known = _torch_known_divergence(shape, kw, tuple(yt.shape))
        if known != "forward":
            np.testing.assert_allclose(y, yt.detach().numpy(), rtol=tol, atol=tol,
                                       err_msg=f"forward {shape} {kw}")
        if known is None and not _torch_nearest_backward_differs(shape, kw, tuple(yt.shape)):
            scale = max(1.0, float(np.abs(gx).max()))
            np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=tol, atol=4 * tol * scale,
                                       err_msg=f"backward {shape} {kw}")
            checked += 1
    assert checked > 100


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity_large_nearest_outputs_use_the_generic_rule(dtype):
    torch = pytest.importorskip("torch")
    for shape in [(1, 2, 40, 50), (1, 1, 33, 70)]:
        for spec in [dict(scale_factor=2.1), dict(scale_factor=1.05), dict(size=(97, 101)),
                     dict(scale_factor=(2.0, 2.01)), dict(scale_factor=0.73),
                     dict(scale_factor=(1.0, 1.9)), dict(size=(60, 70))]:
            for mode in ("nearest", "nearest-exact"):
                kw = dict(spec, mode=mode)
                x = RNG.normal(size=shape).astype(dtype)
                want = torch.nn.functional.interpolate(torch.tensor(x), **kw).numpy()
                got = F.interpolate(nnlite.tensor(x), **kw).data
                np.testing.assert_array_equal(got, want, err_msg=f"{shape} {kw}")


@pytest.mark.torch
def test_torch_divergences_are_torch_inconsistencies():
    """Where nnlite differs from PyTorch, PyTorch contradicts itself and nnlite does not."""
    torch = pytest.importorskip("torch")
    # 1. antialias, output width 1: PyTorch's rows are all equal; nnlite equals its own
    # transposed computation (which PyTorch gets right too)
    x = RNG.normal(size=(1, 1, 9, 4))
    kw = dict(size=(3, 1), mode="bilinear", antialias=True)
    ours = F.interpolate(nnlite.tensor(x), **kw).data
    theirs = torch.nn.functional.interpolate(torch.tensor(x), **kw).numpy()
    assert np.allclose(theirs[0, 0, :, 0], theirs[0, 0, 0, 0])
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2))
    transposed = torch.nn.functional.interpolate(torch.tensor(xt), size=(1, 3), mode="bilinear",
                                                 antialias=True).numpy()
    np.testing.assert_allclose(ours, transposed.transpose(0, 1, 3, 2), rtol=1e-12)
    # 2. nearest with a scale factor on 1-D input: PyTorch's backward is not the transpose of
    # its forward; nnlite's forward equals PyTorch's and its backward is that transpose
    x = RNG.normal(size=(1, 1, 5))
    kw = dict(scale_factor=2.1, mode="nearest")
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.interpolate(xt, **kw)
    g = RNG.normal(size=tuple(yt.shape))
    yt.backward(torch.tensor(g))
    y, gx, _ = _run(x, kw, g)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    assert not np.allclose(xt.grad.numpy(), gx)
    assert abs(np.sum(y * g) - np.sum(x * gx)) < 1e-12
    assert abs(np.sum(y * g) - np.sum(x * xt.grad.numpy())) > 1e-3


@pytest.mark.torch
def test_torch_parity_modules_and_deprecated_functions():
    torch = pytest.importorskip("torch")
    x = RNG.normal(size=(2, 3, 5, 6)).astype(np.float32)
    pairs = [(nn.Upsample(scale_factor=2), torch.nn.Upsample(scale_factor=2)),
             (nn.Upsample(size=(3, 4), mode="bicubic", align_corners=True),
              torch.nn.Upsample(size=(3, 4), mode="bicubic", align_corners=True)),
             (nn.Upsample(scale_factor=(1.5, 0.5), mode="bilinear", recompute_scale_factor=True),
              torch.nn.Upsample(scale_factor=(1.5, 0.5), mode="bilinear",
                                recompute_scale_factor=True)),
             (nn.UpsamplingNearest2d(size=7), torch.nn.UpsamplingNearest2d(size=7)),
             (nn.UpsamplingBilinear2d(scale_factor=1.7), torch.nn.UpsamplingBilinear2d(
                 scale_factor=1.7)),
             (nn.PixelShuffle(1), torch.nn.PixelShuffle(1))]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)
        np.testing.assert_allclose(ours(nnlite.tensor(x)).data, theirs(torch.tensor(x)).numpy(),
                                   rtol=3e-6, atol=3e-6)
    for name in ("upsample", "upsample_nearest", "upsample_bilinear"):
        with pytest.warns(UserWarning, match=f"nn.functional.{name}` is deprecated"):
            ours = getattr(F, name)(nnlite.tensor(x), scale_factor=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = getattr(torch.nn.functional, name)(torch.tensor(x), scale_factor=2)
        np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=3e-6, atol=3e-6)


# --------------------------------------------------------------------------- pixel shuffle
@pytest.mark.parametrize("shape,r", [((1, 4, 3, 5), 2), ((2, 3, 9, 2, 1), 3), ((4, 1, 1), 2),
                                     ((1, 1, 2, 2), 1), ((0, 8, 2, 2), 2)])
def test_pixel_shuffle_matches_reference_and_round_trips(shape, r):
    x = RNG.normal(size=shape)
    xt = nnlite.tensor(x, requires_grad=True)
    y = F.pixel_shuffle(xt, r)
    np.testing.assert_array_equal(y.data, pixel_shuffle_reference.pixel_shuffle(x, r))
    np.testing.assert_array_equal(F.pixel_unshuffle(y, r).data, x)
    np.testing.assert_array_equal(pixel_shuffle_reference.pixel_unshuffle(y.data, r), x)
    g = RNG.normal(size=y.shape)
    y.backward(g)
    np.testing.assert_array_equal(xt.grad, pixel_shuffle_reference.pixel_unshuffle(g, r))


def test_pixel_unshuffle_gradient_and_integer_input():
    x = RNG.normal(size=(2, 2, 6, 4))
    check_grad(lambda t: F.pixel_unshuffle(t, 2), [x])
    xi = nnlite.tensor(np.arange(16).reshape(1, 4, 2, 2))
    assert F.pixel_shuffle(xi, 2).dtype == xi.dtype


@pytest.mark.torch
def test_pixel_shuffle_torch_parity():
    torch = pytest.importorskip("torch")
    for shape, r in [((2, 18, 3, 4), 3), ((3, 4, 2, 5), 2), ((2, 2, 8, 4, 6), 2)]:
        x = RNG.normal(size=shape)
        np.testing.assert_array_equal(F.pixel_shuffle(nnlite.tensor(x), r).data,
                                      torch.nn.functional.pixel_shuffle(torch.tensor(x), r))
    for shape, r in [((2, 2, 9, 6), 3), ((3, 1, 2, 4), 2), ((2, 2, 3, 4, 6), 2)]:
        x = RNG.normal(size=shape)
        np.testing.assert_array_equal(F.pixel_unshuffle(nnlite.tensor(x), r).data,
                                      torch.nn.functional.pixel_unshuffle(torch.tensor(x), r))
    assert repr(nn.PixelUnshuffle(3)) == repr(torch.nn.PixelUnshuffle(3))


# --------------------------------------------------------------------------- bad arguments
X4 = nnlite.tensor(np.zeros((2, 3, 5, 7)))
X3 = nnlite.tensor(np.zeros((2, 3, 5)))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: F.interpolate(X4, size=3, scale_factor=2), ValueError,
     r"only one of size or scale_factor should be defined \(got size=3, scale_factor=2\)"),
    (lambda: F.interpolate(X4), ValueError, "either size or scale_factor should be defined"),
    (lambda: F.interpolate(X4, size=3, align_corners=True), ValueError,
     r"align_corners option can only be set with the interpolating modes.*mode='nearest'"),
    (lambda: F.interpolate(X4, size=3, mode="area", align_corners=False), ValueError,
     "align_corners option"),
    (lambda: F.interpolate(X4, size=3, mode="linear"), ValueError,
     r"mode 'linear' needs a 3-D input \(N, C, ...\), got input of shape \(2, 3, 5, 7\)"),
    (lambda: F.interpolate(X3, size=3, mode="bilinear"), ValueError,
     r"mode 'bilinear' needs a 4-D input"),
    (lambda: F.interpolate(X3, size=3, mode="bicubic"), ValueError, "needs a 4-D input"),
    (lambda: F.interpolate(nnlite.tensor(np.zeros((2, 3))), size=3), ValueError,
     r"needs a 3-D or 4-D input.*\(2, 3\)"),
    (lambda: F.interpolate(X4, size=3, mode="trilinear"), ValueError,
     "does not implement 'trilinear'"),
    (lambda: F.interpolate(X4, size=3, mode="cubic"), ValueError,
     "mode must be one of nearest, nearest-exact, linear, bilinear, bicubic, area, got 'cubic'"),
    (lambda: F.interpolate(X4, size=3, antialias=True), ValueError,
     r"Anti-alias option is restricted to bilinear and bicubic.*mode='nearest'"),
    (lambda: F.interpolate(X4, size=(3, 3, 3)), ValueError,
     r"spatial dimensions of \[5, 7\] and output size of \(3, 3, 3\)"),
    (lambda: F.interpolate(X4, scale_factor=(2, 2, 2)), ValueError,
     r"\[5, 7\] and scale_factor of shape \(2, 2, 2\)"),
    (lambda: F.interpolate(X4, size=(3, 3.5)), TypeError,
     r"expected size to be an int or a tuple of 2 ints, but got size=\(3, 3.5\)"),
    (lambda: F.interpolate(X4, scale_factor="2"), TypeError,
     "scale_factor must be a float or a tuple of 2 floats, got '2'"),
    (lambda: F.interpolate(X4, scale_factor=float("nan")), ValueError,
     "scale_factor must be finite, got nan"),
    (lambda: F.interpolate(X4, scale_factor=1e300), ValueError, "out of range"),
    (lambda: F.interpolate(X4, size=3, recompute_scale_factor=True), ValueError,
     "recompute_scale_factor is not meaningful with an explicit size"),
    (lambda: F.interpolate(X4, scale_factor=0.1), ValueError,
     r"Input and output sizes should be greater than 0, but got input \(H: 5, W: 7\) output "
     r"\(H: 0, W: 0\)"),
    (lambda: F.interpolate(X4, size=(-1, 3)), ValueError, r"output \(H: -1, W: 3\)"),
    (lambda: F.interpolate(X3, scale_factor=-2.0), ValueError, r"output \(W: -10\)"),
    (lambda: F.interpolate(nnlite.tensor(np.zeros((2, 0, 5, 7))), size=3), ValueError,
     r"non-empty 4D data tensor expected but got a tensor with sizes \[2, 0, 5, 7\]"),
    (lambda: F.interpolate(nnlite.tensor(np.zeros((1, 1, 5), np.int64)), size=3), TypeError,
     "expected a float32 or float64 input, got dtype int64"),
    (lambda: F.interpolate(X4, size=3, mode="bilinear", align_corners=1), TypeError,
     "align_corners must be a bool or None, got 1"),
    (lambda: F.pixel_shuffle(X3[0], 2), ValueError,
     r"pixel_shuffle expects input to have at least 3 dimensions, but got input with 2"),
    (lambda: F.pixel_shuffle(X4, 2), ValueError,
     r"input.size\(-3\)=3 is not divisible by 4"),
    (lambda: F.pixel_shuffle(X4, 0), ValueError, "expects a positive upscale_factor, but got 0"),
    (lambda: F.pixel_shuffle(X4, 1.0), TypeError, "upscale_factor must be an int, got 1.0"),
    (lambda: F.pixel_unshuffle(X4, 2), ValueError, r"input.size\(-2\)=5 is not divisible by 2"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_pixel_unshuffle_width_message():
    with pytest.raises(ValueError, match=r"width to be divisible by downscale_factor, but "
                                         r"input.size\(-1\)=7 is not divisible by 2"):
        F.pixel_unshuffle(nnlite.tensor(np.zeros((1, 4, 6, 7))), 2)
