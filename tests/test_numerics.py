"""Numerics: NaN/inf propagate as PyTorch does in conv, pools and ROI ops; float64 works
everywhere (values, dtypes, gradients).

Oracles: a dense zero-padded conv written here (every tap multiplies the padded zeros, as
PyTorch's dense CPU conv does: 0 * inf = NaN), the docs/semantics.md §3-§8 scan rules on hand-made
inputs, and PyTorch itself when installed (marker ``torch``).

Documented divergence (consistent with docs/semantics.md, not with PyTorch): a non-finite WEIGHT
next to zero padding gives NaN in every nnlite conv algorithm (0 * inf, docs/semantics.md §1.3);
PyTorch gives NaN on its dense path but a finite value on its depthwise path, which skips padded
taps. The naive 'reference' backend also skips padded taps, so it is compared where both results are
finite.
"""
import numpy as np
import pytest

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from nnlite import ops
from fuzzing import assert_same

# 'winograd' (3x3 stride-1 only) has its own tests: tests/test_conv_winograd.py
VARIANTS = [("numpy", "im2col")] + [("cython", a) for a in nnlite.available_conv_algorithms()
                                    if a != "winograd"
                                    if "cython" in nnlite.available_backends()]


def _run(backend, algorithm, fn, *args, **kwargs):
    with nnlite.using_backend(backend), nnlite.conv_algorithm(algorithm):
        return fn(*args, **kwargs)


def _specials(rng, shape, dtype, frac=0.08):
    x = rng.uniform(-2, 2, shape).astype(dtype)
    mask = rng.random(shape) < frac
    x[mask] = rng.choice(np.array([np.nan, np.inf, -np.inf], dtype), size=mask.sum())
    return x


def dense_conv(x, w, stride, padding, dilation, groups):
    """y = Σ_taps w · xp over the ZERO-PADDED input (float64), every padded zero multiplied."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    fg = f // groups
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, f, oh, ow))
    with np.errstate(invalid="ignore", over="ignore"):
        for g in range(groups):
            for a in range(kh):
                for b in range(kw):
                    tap = xp[:, g * cg:(g + 1) * cg, a * dh:a * dh + sh * (oh - 1) + 1:sh,
                             b * dw:b * dw + sw * (ow - 1) + 1:sw]
                    y[:, g * fg:(g + 1) * fg] += np.einsum("nchw,fc->nfhw", tap,
                                                           w[g * fg:(g + 1) * fg, :, a, b])
    return y


CONV_GEOMS = [
    dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1, c=3, f=4, k=(3, 3)),
    dict(stride=(2, 1), padding=(2, 1), dilation=(2, 1), groups=1, c=2, f=3, k=(3, 2)),
    dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=4, c=4, f=4, k=(3, 3)),  # dw
    dict(stride=(2, 2), padding=(0, 0), dilation=(1, 1), groups=2, c=4, f=2, k=(1, 1)),
    dict(stride=(1, 2), padding=(3, 0), dilation=(1, 3), groups=2, c=2, f=4, k=(2, 3)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geom", CONV_GEOMS, ids=lambda g: f"g{g['groups']}k{g['k']}")
@pytest.mark.parametrize("backend, algorithm", VARIANTS)
@pytest.mark.parametrize("where", ["input", "weight"])
def test_conv2d_nan_inf_like_dense_zero_padded_conv(backend, algorithm, geom, dtype, where):
    rng = np.random.default_rng(3)
    c, f, (kh, kw), g = geom["c"], geom["f"], geom["k"], geom["groups"]
    x = rng.uniform(-2, 2, (2, c, 9, 8)).astype(dtype)
    w = rng.uniform(-1, 1, (f, c // g, kh, kw)).astype(dtype)
    if where == "input":
        x = _specials(rng, x.shape, dtype)
    else:
        w = _specials(rng, w.shape, dtype, 0.2)
    args = {k: geom[k] for k in ("stride", "padding", "dilation", "groups")}
    with np.errstate(invalid="ignore"):
        y = _run(backend, algorithm, F.conv2d, x, w, **args)
    want = dense_conv(x, w, **args).astype(dtype)
    assert y.dtype == dtype
    assert_same(y.data, want, 1e-4 if dtype == np.float32 else 1e-10, 1e-4, "conv2d")


@pytest.mark.parametrize("backend, algorithm", VARIANTS)
def test_conv2d_nan_outside_every_window_does_not_propagate(backend, algorithm):
    """A NaN in a row that no window reaches (stride does not tile) leaves y and gW finite
    and its own input gradient 0 (docs/semantics.md §1.8)."""
    x = np.ones((1, 1, 7, 7))
    x[0, 0, 6, :] = np.nan  # rows 0..5 are read; row 6 never
    w = np.ones((1, 1, 2, 2))
    with nnlite.using_backend(backend), nnlite.conv_algorithm(algorithm):
        xt, wt = nnlite.tensor(x, requires_grad=True), nnlite.tensor(w, requires_grad=True)
        y = F.conv2d(xt, wt, stride=2)
        y.sum().backward()
    assert np.isfinite(y.data).all() and np.isfinite(_a(wt.grad)).all()
    assert np.array_equal(_a(xt.grad)[0, 0, 6], np.zeros(7))


def _a(g):
    return np.asarray(g.data if isinstance(g, nnlite.Tensor) else g)


# ------------------------------------------------------------------------------ pools
@pytest.mark.parametrize("backend", ["cython", "numpy", "reference"])
def test_max_pool_nan_and_inf_rules(backend):
    """docs/semantics.md §3.4: NaN wins (index of the LAST NaN), ties go to the first, -inf windows
    keep the first tap, +inf is an ordinary maximum; gradients go to those indices."""
    if backend not in nnlite.available_backends():
        pytest.skip("not built")
    nan, inf = np.nan, np.inf
    x = np.array([[[[1, nan, 5, nan, 2],
                    [3, 3, 1, 0, 3],
                    [-inf, -inf, inf, 2, -inf],
                    [-inf, -inf, 7, inf, -inf]]]], dtype=np.float64)
    with nnlite.using_backend(backend):
        xt = nnlite.tensor(x, requires_grad=True)
        y, idx = F.max_pool2d(xt, (1, 5), return_indices=True)
        y2, idx2 = F.max_pool2d(x, (2, 2), stride=2, return_indices=True)
        gy = np.ones(y.shape)
        y.backward(gy)
    np.testing.assert_array_equal(idx.data[0, 0, :, 0], [3, 5, 12, 18])
    assert np.isnan(y.data[0, 0, 0, 0])
    np.testing.assert_array_equal(y.data[0, 0, 1:, 0], [3, inf, inf])
    np.testing.assert_array_equal(idx2.data[0, 0], [[1, 3], [10, 12]])
    g = _a(xt.grad)[0, 0]
    assert g[0, 3] == 1 and g[0, 1] == 0 and g[1, 0] == 1 and g[2, 2] == 1 and g[3, 3] == 1


@pytest.mark.parametrize("backend", ["cython", "numpy", "reference"])
def test_max_pool_all_neg_inf_and_empty_window(backend):
    if backend not in nnlite.available_backends():
        pytest.skip("not built")
    x = np.full((1, 1, 3, 3), -np.inf, np.float32)
    with nnlite.using_backend(backend):
        y, idx = F.max_pool2d(x, 2, stride=1, return_indices=True)
        # docs/semantics.md §3.6: H=1, k=2, d=3, p=1, ceil -> a window with no in-bounds tap
        y2, idx2 = F.max_pool2d(np.ones((1, 1, 1, 7), np.float32), 2, stride=2, padding=1,
                                dilation=3, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(y.data, np.full((1, 1, 2, 2), -np.inf))
    np.testing.assert_array_equal(idx.data[0, 0], [[0, 1], [3, 4]])
    assert (np.isneginf(y2.data) == (idx2.data == -1)).all()


@pytest.mark.parametrize("backend", ["cython", "numpy", "reference"])
def test_avg_and_adaptive_pools_propagate_nan_inf(backend):
    if backend not in nnlite.available_backends():
        pytest.skip("not built")
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 3, 3] = np.inf
    x[0, 0, 3, 2] = -np.inf
    with nnlite.using_backend(backend):
        a = F.avg_pool2d(x, 2).data[0, 0]
        aa = F.adaptive_avg_pool2d(x, 3).data[0, 0]
        am = F.adaptive_max_pool2d(x, 2).data[0, 0]
    assert np.isnan(a[0, 0]) and np.isnan(a[1, 1]) and a[0, 1] == 0 and a[1, 0] == 0
    assert np.isnan(aa[0, 0]) and np.isnan(aa[2, 2]) and np.isneginf(aa[2, 1])
    assert np.isnan(am[0, 0]) and am[1, 1] == np.inf


# ------------------------------------------------------------------------------- ROI ops
@pytest.mark.parametrize("backend", ["cython", "numpy", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_roi_pool_never_selects_nan(backend, dtype):
    """docs/semantics.md §7.4: strict v > best from -FLT_MAX: NaN skipped; an all-NaN/-inf bin gives
    -FLT_MAX with argmax -1 and no gradient; +inf is selected."""
    if backend not in nnlite.available_backends():
        pytest.skip("not built")
    x = np.full((1, 1, 4, 4), np.nan, dtype)
    x[0, 0, 2:, 2:] = [[1, np.inf], [-np.inf, 2]]
    rois = np.array([[0, 0, 0, 3, 3]], dtype)
    with nnlite.using_backend(backend):
        xt = nnlite.tensor(x, requires_grad=True)
        y = ops.roi_pool(xt, rois, 2)
        y.sum().backward()
    flt_max = np.float32(np.finfo(np.float32).max)
    np.testing.assert_array_equal(y.data[0, 0], np.array([[-flt_max, -flt_max],
                                                          [-flt_max, np.inf]], dtype))
    g = _a(xt.grad)[0, 0]
    assert g[2, 3] == 1 and g.sum() == 1


@pytest.mark.parametrize("backend", ["cython", "numpy", "reference"])
def test_roi_align_nan_with_zero_bilinear_weight_propagates(backend):
    """torchvision multiplies all four taps: a NaN neighbour with weight 0 still gives NaN."""
    if backend not in nnlite.available_backends():
        pytest.skip("not built")
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    x[0, 0, 2, 2] = np.nan
    # one sample at exactly (1.0, 1.0): taps (1,1) weight 1 and (1,2),(2,1),(2,2) weight 0
    rois = np.array([[0, 0.5, 0.5, 1.5, 1.5]])
    far = np.array([[0, 0.0, 0.0, 0.5, 0.5]])  # samples (0.5, 0.5): no NaN tap
    with nnlite.using_backend(backend):
        y = ops.roi_align(x, rois, 1, 1.0, 1).data
        y_far = ops.roi_align(x, far, 1, 1.0, 1).data
    assert np.isnan(y[0, 0, 0, 0])
    np.testing.assert_allclose(y_far[0, 0, 0, 0], (0 + 1 + 4 + 5) / 4)


# --------------------------------------------------------------------------- float64
def _float64_cases():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((6, 2, 3, 2))
    wt = rng.standard_normal((4, 3, 2, 3))
    rois = np.array([[0, 0.5, 0.5, 4.2, 5.1], [1, 1, 0, 5, 3]])
    b = rng.standard_normal(6)
    wdw = rng.standard_normal((4, 1, 3, 3))
    wl = rng.standard_normal((5, 168))
    return [
        ("conv2d", lambda t: F.conv2d(t, w, b, 1, 1, 1, 2)),
        ("conv2d_dw", lambda t: F.conv2d(t, wdw, None, 1, 1, 1, 4)),
        ("conv_transpose2d", lambda t: F.conv_transpose2d(t, wt, None, 2, 1, 1, 1, 1)),
        ("pad_reflect", lambda t: F.pad(t, (1, 2, 2, 1), mode="reflect")),
        ("pad_circular", lambda t: F.pad(t, (1, 1, 2, 0), mode="circular")),
        ("max_pool2d", lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True)),
        ("avg_pool2d", lambda t: F.avg_pool2d(t, 3, 2, 1, count_include_pad=False)),
        ("adaptive_avg", lambda t: F.adaptive_avg_pool2d(t, (3, 4))),
        ("adaptive_max", lambda t: F.adaptive_max_pool2d(t, (4, 3))),
        ("spp", lambda t: F.spatial_pyramid_pool2d(t, (3, 2, 1))),
        ("roi_pool", lambda t: ops.roi_pool(t, rois, 2, 1.0)),
        ("roi_align", lambda t: ops.roi_align(t, rois, (2, 3), 1.0, 2, True)),
        ("linear", lambda t: F.linear(t.reshape(2, -1), wl)),
        ("batch_norm", lambda t: F.batch_norm(t, np.zeros(4), np.ones(4), training=True)),
        ("softmax", lambda t: F.log_softmax(F.softmax(t, dim=1), dim=3)),
        ("activations", lambda t: F.relu6(F.hardtanh(F.tanh(F.sigmoid(F.relu(t)))))),
        ("cross_entropy", lambda t: F.cross_entropy(t.reshape(2, 4, -1), np.zeros((2, 42),
                                                                                int))),
        ("mse_loss", lambda t: F.mse_loss(t, np.zeros(t.shape))),
    ], x


CASES, X64 = _float64_cases()


@pytest.mark.parametrize("name, fn", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_float64_everywhere(name, fn, backend):
    """float64 in -> float64 out and float64 gradients, equal to the float64 reference."""
    if backend not in nnlite.available_backends():
        pytest.skip("not built")
    results = {}
    for b in (backend, "reference"):
        with nnlite.using_backend(b):
            t = nnlite.tensor(X64.copy(), requires_grad=True)
            y = fn(t)
            y.backward(np.cos(np.arange(y.data.size)).reshape(y.shape))
            assert y.dtype == np.float64, (name, b, y.dtype)
            assert _a(t.grad).dtype == np.float64, (name, b, _a(t.grad).dtype)
            results[b] = (y.data, _a(t.grad))
    assert_same(results[backend], results["reference"], 1e-10, 1e-10, name)


def test_float64_modules_keep_dtype():
    x = nnlite.tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)),
                      requires_grad=True)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, dtype=np.float64),
                      nn.BatchNorm2d(4, dtype=np.float64), nn.ReLU(), nn.MaxPool2d(2),
                      nn.ConvTranspose2d(4, 2, 2, stride=2, dtype=np.float64),
                      nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8, 3, dtype=np.float64))
    y = m(x)
    y.sum().backward()
    assert y.dtype == np.float64 and _a(x.grad).dtype == np.float64
    assert all(_a(p.grad).dtype == np.float64 for p in m.parameters())


# -------------------------------------------------------------------- PyTorch parity
@pytest.mark.torch
@pytest.mark.parametrize("geom", CONV_GEOMS, ids=lambda g: f"g{g['groups']}k{g['k']}")
@pytest.mark.parametrize("backend, algorithm", VARIANTS)
def test_conv2d_nan_inf_input_torch_parity(backend, algorithm, geom):
    """Non-finite INPUTS: values, input and weight gradients match PyTorch's NaN/inf pattern."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    c, f, (kh, kw), g = geom["c"], geom["f"], geom["k"], geom["groups"]
    x = _specials(rng, (2, c, 9, 8), np.float64, 0.05)
    w = rng.uniform(-1, 1, (f, c // g, kh, kw))
    args = {k: geom[k] for k in ("stride", "padding", "dilation", "groups")}
    gy_shape = dense_conv(x, w, **args).shape
    gy = rng.uniform(-1, 1, gy_shape)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, **args)
    ty.backward(torch.tensor(gy))
    with nnlite.using_backend(backend), nnlite.conv_algorithm(algorithm), \
            np.errstate(invalid="ignore"):
        nx, nw = nnlite.tensor(x, requires_grad=True), nnlite.tensor(w, requires_grad=True)
        ny = F.conv2d(nx, nw, **args)
        ny.backward(gy)
    assert_same((ny.data, _a(nx.grad), _a(nw.grad)),
                (ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()), 1e-9, 1e-9, "conv")


@pytest.mark.torch
@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("op", ["max", "avg", "amax", "aavg"])
def test_pools_nan_inf_torch_parity(backend, op):
    torch = pytest.importorskip("torch")
    if backend not in nnlite.available_backends():
        pytest.skip("not built")
    rng = np.random.default_rng(12)
    x = _specials(rng, (2, 3, 9, 7), np.float64, 0.1)
    tf = torch.nn.functional
    calls = {
        "max": (lambda m, t: m.max_pool2d(t, 3, 2, 1, ceil_mode=True)),
        "avg": (lambda m, t: m.avg_pool2d(t, 3, 2, 1, ceil_mode=True)),
        "amax": (lambda m, t: m.adaptive_max_pool2d(t, (4, 3))),
        "aavg": (lambda m, t: m.adaptive_avg_pool2d(t, (4, 3))),
    }
    gy = rng.uniform(-1, 1, calls[op](tf, torch.tensor(x)).shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = calls[op](tf, tx)
    ty.backward(torch.tensor(gy))
    with nnlite.using_backend(backend), np.errstate(invalid="ignore"):
        nx = nnlite.tensor(x, requires_grad=True)
        ny = calls[op](F, nx)
        ny.backward(gy)
    assert_same((ny.data, _a(nx.grad)), (ty.detach().numpy(), tx.grad.numpy()), 1e-10, 1e-10,
                op)
