"""Training kernels of issue #17 against independent oracles.

- BatchNorm training forward/backward (nnlite._train, csrc/train_bn.c): a naive per-channel
  float64 loop reference (math.fsum statistics, the textbook backward formula), float64 central
  differences, PyTorch (skipped without it), bit-identity for 1, 2 and 3 threads.
- The conv weight gradient (one GEMM per group over the whole batch, its transposed column
  operand packed from the image, ``_convfast.conv2d_weight_grad``): against the naive
  reference conv routines (float64 and float32), float64 central differences of
  <gy, conv(x, w)>, PyTorch (skipped without it), bit-identity for 1, 2 and 3 threads, and
  the batch-rows im2col layout (``_im2col.im2col_rows``) of the forward and input gradient.
"""
import math

import numpy as np
import pytest
from conftest import kernel_threads
from gradcheck import check_grad

import nnlite
import nnlite.nn.functional as F
from nnlite import kernels
from nnlite._convgeom import conv2d_geometry
from nnlite.functional import normalization

pytestmark = pytest.mark.skipif(normalization._train is None,
                                reason="native extension nnlite._train not built")

# (N, C, *spatial): odd sizes, batch 1 with spatial extent, one channel, 1-D and 0-D spatial
BN_SHAPES = [(5, 3, 7, 6), (1, 4, 3, 5), (6, 1, 9, 2), (7, 5), (3, 6, 11), (2, 3, 1, 1)]


def _bn_reference(x, w, b, eps, gy):
    """Per-channel loops in float64: y, batch mean, unbiased var, gx, gw, gb."""
    x = x.astype(np.float64)
    gy = gy.astype(np.float64)
    c = x.shape[1]
    y = np.empty_like(x)
    gx = np.empty_like(x)
    mean, var_u, gw, gb = (np.empty(c) for _ in range(4))
    for ch in range(c):
        xc = x[:, ch].ravel()
        gc = gy[:, ch].ravel()
        m = len(xc)
        mu = math.fsum(xc) / m
        var = math.fsum((v - mu) ** 2 for v in xc) / m
        inv = 1.0 / math.sqrt(var + eps)
        xhat = [(v - mu) * inv for v in xc]
        wc = 1.0 if w is None else float(w[ch])
        bc = 0.0 if b is None else float(b[ch])
        y[:, ch] = (np.array(xhat) * wc + bc).reshape(y[:, ch].shape)
        mean[ch] = mu
        var_u[ch] = var * m / (m - 1)
        gb[ch] = math.fsum(gc)
        gw[ch] = math.fsum(g * h for g, h in zip(gc, xhat))
        # dL/dx_i = w*inv/m * (m*g_i - Σg - xhat_i * Σ g*xhat)
        gxc = [wc * inv / m * (m * g - gb[ch] - h * gw[ch]) for g, h in zip(gc, xhat)]
        gx[:, ch] = np.array(gxc).reshape(gx[:, ch].shape)
    return y, mean, var_u, gx, gw, gb


def _bn_native(x, w, b, eps, gy, rm=None, rv=None):
    xt = nnlite.tensor(x, requires_grad=True)
    wt = None if w is None else nnlite.tensor(w, requires_grad=True)
    bt = None if b is None else nnlite.tensor(b, requires_grad=True)
    y = F.batch_norm(xt, rm, rv, wt, bt, training=True, momentum=1.0, eps=eps)
    y.backward(gy)
    return y.data, xt.grad, None if wt is None else wt.grad, None if bt is None else bt.grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_bn_native_matches_naive_reference(shape, dtype, affine):
    rng = np.random.default_rng(sum(shape))
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)      # offset mean: tests centring
    gy = rng.standard_normal(shape).astype(dtype)
    c = shape[1]
    w = None if affine == "none" else (1 + 0.5 * rng.standard_normal(c)).astype(dtype)
    b = (0.3 * rng.standard_normal(c)).astype(dtype) if affine == "both" else None
    rm, rv = nnlite.tensor(np.zeros(c, dtype)), nnlite.tensor(np.ones(c, dtype))
    y, gx, gw, gb = _bn_native(x, w, b, 1e-3, gy, rm, rv)
    ry, rmean, rvar, rgx, rgw, rgb = _bn_reference(x, w, b, 1e-3, gy)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)
    assert y.dtype == gx.dtype == dtype
    np.testing.assert_allclose(y, ry, **tol)
    np.testing.assert_allclose(rm.data, rmean, **tol)            # momentum 1: the batch stats
    np.testing.assert_allclose(rv.data, rvar, **tol)
    np.testing.assert_allclose(gx, rgx, **tol)
    if w is not None:
        np.testing.assert_allclose(gw, rgw, **tol)
    if b is not None:
        np.testing.assert_allclose(gb, rgb, **tol)


def test_bn_native_non_contiguous_input():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((4, 6, 5, 8))
    x = base[:, ::2, :, ::2]                                     # strided view
    gy = rng.standard_normal(x.shape)
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    y, gx, gw, gb = _bn_native(x, w, b, 1e-5, gy)
    ry, _, _, rgx, rgw, rgb = _bn_reference(np.ascontiguousarray(x), w, b, 1e-5, gy)
    for got, want in ((y, ry), (gx, rgx), (gw, rgw), (gb, rgb)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(3, 2, 4, 3), (4, 3), (2, 2, 5)], ids=str)
def test_bn_native_central_differences(shape):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape)
    w, b = 1 + 0.3 * rng.standard_normal(shape[1]), rng.standard_normal(shape[1])

    def fn(xt, wt, bt):
        return F.batch_norm(xt, None, None, wt, bt, training=True, eps=1e-3)
    check_grad(fn, [x, w, b], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bn_native_bit_identical_for_every_thread_count(dtype):
    # large enough to pass the serial cut-off (normalization._PARALLEL_MIN)
    shape = (6, 12, 23, 29)
    assert np.prod(shape) >= normalization._PARALLEL_MIN
    rng = np.random.default_rng(5)
    x = (1 + rng.standard_normal(shape)).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    w, b = rng.standard_normal(12).astype(dtype), rng.standard_normal(12).astype(dtype)
    results = []
    for n in (1, 2, 3):
        with kernel_threads(n):
            results.append(_bn_native(x, w, b, 1e-5, gy))
    for other in results[1:]:
        for a, c in zip(results[0], other):
            assert np.array_equal(a, c)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(8, 5, 6, 7), (9, 4), (1, 3, 2, 5)], ids=str)
def test_bn_native_matches_torch(shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x = (2 + rng.standard_normal(shape)).astype(np.float32)
    gy = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(shape[1]).astype(np.float32)
    b = rng.standard_normal(shape[1]).astype(np.float32)
    rm, rv = nnlite.tensor(np.zeros(shape[1], np.float32)), nnlite.tensor(np.ones(shape[1],
                                                                                  np.float32))
    y, gx, gw, gb = _bn_native(x, w, b, 1e-5, gy, rm, rv)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    trm, trv = torch.zeros(shape[1]), torch.ones(shape[1])
    ty = torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training=True, momentum=1.0)
    ty.backward(torch.from_numpy(gy))
    for got, want in ((y, ty), (gx, tx.grad), (gw, tw.grad), (gb, tb.grad), (rm.data, trm),
                      (rv.data, trv)):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-4, atol=1e-4)


def test_bn_native_raises_on_bad_buffers():
    from nnlite import _train

    x = np.zeros((2, 3, 4), np.float32)
    c3 = np.zeros(3)
    with pytest.raises(ValueError, match="y has shape"):
        _train.bn_train_forward(x, np.zeros((2, 3, 5), np.float32), np.ones(3, np.float32),
                                np.zeros(3, np.float32), 1e-5, c3, c3.copy(), c3.copy())
    with pytest.raises(ValueError, match="weight has 2 entries"):
        _train.bn_train_forward(x, np.zeros_like(x), np.ones(2, np.float32),
                                np.zeros(3, np.float32), 1e-5, c3, c3.copy(), c3.copy())
    with pytest.raises(ValueError, match="empty input"):
        e = np.zeros((0, 3, 4), np.float32)
        _train.bn_backward(e, e, None, c3, c3, np.ones(3, np.float32), True, c3.copy(),
                           c3.copy())


# ------------------------------------------------------------------ batched weight gradient
# (x shape, w shape, stride, padding, dilation, groups)
WGRAD = [
    ((5, 6, 9, 7), (4, 3, 3, 2), (2, 1), (1, 2), (1, 2), 2),
    ((3, 8, 10, 10), (8, 1, 3, 3), 1, 1, 1, 8),                   # depthwise
    ((4, 6, 5, 5), (9, 6, 1, 1), 1, 0, 1, 1),                     # pointwise
    ((1, 1, 4, 4), (2, 1, 5, 5), 1, 3, 1, 1),                     # padding > kernel, batch 1
    ((7, 3, 8, 6), (5, 3, 2, 3), (3, 2), 0, 1, 1),                # stride does not tile
    ((2, 3, 9, 11), (6, 1, 2, 3), (2, 1), (3, 1), (1, 2), 3),     # depthwise x2, pad > kernel
    ((1, 1, 5, 3), (1, 1, 3, 3), (1, 3), (0, 2), 1, 1),           # one channel, batch 1
]


@pytest.mark.parametrize("case", WGRAD, ids=str)
def test_im2col_rows_is_the_per_image_layout_transposed(case):
    im2col_mod = pytest.importorskip("nnlite._im2col")
    from nnlite.kernels import conv_cython

    xs, ws, s, p, d, g = case
    x = np.random.default_rng(1).standard_normal(xs)
    geom = conv2d_geometry(xs, ws, None, s, p, d, g)
    per_image = np.zeros(geom.col_shape(geom.n))                   # naive loops, (N, K, L)
    for n, c, a, bb, i, j in np.ndindex(geom.n, geom.c, geom.kh, geom.kw, geom.oh, geom.ow):
        r = i * geom.sh - geom.pt + a * geom.dh
        q = j * geom.sw - geom.pl + bb * geom.dw
        if 0 <= r < geom.h and 0 <= q < geom.w:
            per_image[n, (c * geom.kh + a) * geom.kw + bb, i * geom.ow + j] = x[n, c, r, q]
    rows = np.empty((per_image.shape[1], xs[0], per_image.shape[2]))
    im2col_mod.im2col_rows(x, rows, *conv_cython._args(geom), num_threads=2)
    assert np.array_equal(rows, per_image.transpose(1, 0, 2))


# dense convs the weight-gradient GEMM takes (beside WGRAD's): a stride-2 3x3 whose stride
# does not tile the image, dilation with padding, a 1 x K kernel, a stride-2 1x1 (ResNet
# downsampling shortcut), and N*OH*OW deeper than one K slice of the GEMM
WGRAD_GEMM = WGRAD + [
    ((3, 5, 11, 9), (7, 5, 3, 3), 2, 1, 1, 1),
    ((2, 4, 12, 10), (3, 4, 3, 2), 1, (3, 2), (2, 3), 1),
    ((4, 3, 6, 13), (5, 3, 1, 4), (1, 2), (0, 2), 1, 1),
    ((3, 6, 9, 9), (10, 6, 1, 1), 2, 0, 1, 1),
    ((6, 3, 21, 19), (4, 3, 3, 3), 1, 1, 1, 1),
]


def _native_wgrad():
    from nnlite.kernels import conv_cython

    if conv_cython._convfast is None:
        pytest.skip("nnlite._convfast not built")
    return conv_cython


@pytest.mark.parametrize("case", WGRAD_GEMM, ids=str)
def test_weight_gradient_matches_reference(case):
    conv_cython = _native_wgrad()
    xs, ws, s, p, d, g = case
    rng = np.random.default_rng(2)
    geom = conv2d_geometry(xs, ws, None, s, p, d, g)
    x = rng.standard_normal(xs)
    gy = rng.standard_normal((geom.n, geom.f, geom.oh, geom.ow))
    want = kernels.impl("conv2d_backward_weight", "reference")(gy, x, geom)
    for dtype, tol in ((np.float64, 1e-11), (np.float32, 3e-5)):
        got = conv_cython.conv2d_backward_weight(gy.astype(dtype), x.astype(dtype), geom)
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("case", WGRAD_GEMM[::3], ids=str)
def test_weight_gradient_central_differences(case):
    """d<gy, conv(x, w)>/dw by float64 central differences of the naive forward."""
    conv_cython = _native_wgrad()
    from gradcheck import numerical_grad

    xs, ws, s, p, d, g = case
    rng = np.random.default_rng(7)
    geom = conv2d_geometry(xs, ws, None, s, p, d, g)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    gy = rng.standard_normal((geom.n, geom.f, geom.oh, geom.ow))
    fwd = kernels.impl("conv2d_forward", "reference")
    num = numerical_grad(lambda: float(np.vdot(gy, fwd(x, w, None, geom))), w)
    got = conv_cython.conv2d_backward_weight(gy, x, geom)
    np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-6)


def test_weight_gradient_native_strided_input_threads_and_nan():
    """The kernel on a channel slice of a larger image (no copy), bit-identical on 1, 2 and 3
    threads over several K slices and column units (row units for a 3-channel stem); padding
    taps multiply as zeros (0 * inf = NaN), as im2col + GEMM do."""
    conv_cython = _native_wgrad()
    fast = conv_cython._convfast
    rng = np.random.default_rng(8)
    big = rng.standard_normal((9, 40, 15, 14)).astype(np.float32)
    x = big[:, 3:35]                                               # channel slice, strided
    geom = conv2d_geometry(x.shape, (48, 16, 3, 3), None, 2, 1, 1, 2)
    gy = rng.standard_normal((geom.n, geom.f, geom.oh, geom.ow)).astype(np.float32)
    a = conv_cython._rows_first(gy, geom.n, geom.f, geom.l)
    runs = []
    for nt in (1, 2, 3):
        gw = np.full((geom.f, geom.k), np.nan, np.float32)
        fast.conv2d_weight_grad(x, a, gw, geom.g, geom.kh, geom.kw, geom.sh, geom.sw, geom.pt,
                                geom.pl, geom.dh, geom.dw, geom.oh, geom.ow, num_threads=nt)
        runs.append(gw)
    want = kernels.impl("conv2d_backward_weight", "reference")(
        gy.astype(np.float64), x.astype(np.float64), geom).reshape(geom.f, geom.k)
    np.testing.assert_allclose(runs[0], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert all(np.array_equal(r, runs[0]) for r in runs[1:])
    # a 3-channel stem: K = 27 is one column panel, so the rows are split among the threads
    xs = rng.standard_normal((8, 3, 48, 48)).astype(np.float32)
    geoms = conv2d_geometry(xs.shape, (40, 3, 3, 3), None, 1, 1, 1, 1)
    gys = rng.standard_normal((geoms.n, geoms.f, geoms.oh, geoms.ow)).astype(np.float32)
    stem = []
    for nt in (1, 2, 3):
        with kernel_threads(nt):
            stem.append(conv_cython.conv2d_backward_weight(gys, xs, geoms))
    wants = kernels.impl("conv2d_backward_weight", "reference")(
        gys.astype(np.float64), xs.astype(np.float64), geoms)
    np.testing.assert_allclose(stem[0], wants, rtol=1e-4, atol=1e-4 * np.abs(wants).max())
    assert all(np.array_equal(r, stem[0]) for r in stem[1:])
    x1 = np.ones((2, 2, 1, 1), np.float32)
    g1 = np.array([1.0, 2.0, np.inf, 3.0], np.float32).reshape(2, 2, 1, 1)
    geom1 = conv2d_geometry(x1.shape, (2, 2, 3, 3), None, 1, 1, 1, 1)
    got1 = conv_cython.conv2d_backward_weight(g1, x1, geom1)
    want1 = kernels.impl("conv2d_backward_weight", "numpy")(g1, x1, geom1)
    np.testing.assert_array_equal(np.isnan(got1), np.isnan(want1))
    assert np.isnan(got1).any() and np.isposinf(got1[0, :, 1, 1]).all()


def _columns(x, geom):
    """im2col by a plain loop over taps and output rows: cols[n*L + i*OW + j, (c*KH + a)*KW + b]
    = x[n, c, i*SH - PT + a*DH, j*SW - PL + b*DW], 0 outside the image."""
    n, c, h, w = x.shape
    cols = np.zeros((n, geom.oh, geom.ow, c, geom.kh, geom.kw), x.dtype)
    for a in range(geom.kh):
        for b in range(geom.kw):
            for i in range(geom.oh):
                r = i * geom.sh - geom.pt + a * geom.dh
                if not 0 <= r < h:
                    continue
                for j in range(geom.ow):
                    col = j * geom.sw - geom.pl + b * geom.dw
                    if 0 <= col < w:
                        cols[:, i, j, :, a, b] = x[:, :, r, col]
    return cols


# (x shape, w shape, stride, padding, dilation, groups, channel slice of a wider image or None):
# every filter group has more than NNL_SKINNY_M (4) rows, so the plain GEMM packs as the conv
# does. 'same' stride-1 layers on contiguous rows (the vector packer cf_wg_t8: OW below 8, not
# a multiple of 8, above its 64-column limit; K = taps not a multiple of 8 or of NR; padding
# bigger than the kernel; a channel slice, so masked loads at the plane edges meet the
# neighbouring channels), then the element-wise packer's geometries (stride 2 and 3,
# dilation 2 with stride 1 but 'valid', non-contiguous rows).
WGRAD_PACKERS = [
    ((32, 8, 8, 8), (16, 8, 3, 3), 1, 1, 1, 1, None),
    ((3, 5, 4, 4), (6, 5, 5, 5), 1, 2, 1, 1, None),
    ((1, 1, 11, 13), (6, 1, 3, 5), 1, (1, 2), 1, 1, None),
    ((2, 3, 5, 7), (5, 3, 3, 3), 1, 3, 3, 1, None),
    ((4, 6, 9, 3), (10, 3, 3, 1), 1, (1, 0), 1, 2, None),
    ((3, 4, 7, 2), (8, 4, 3, 3), 1, 1, 1, 1, None),
    ((2, 9, 6, 6), (6, 9, 3, 3), 1, 1, 1, 1, (1, 10)),
    ((2, 7, 3, 70), (5, 7, 3, 3), 1, 1, 1, 1, None),
    ((3, 4, 13, 11), (6, 4, 3, 2), 2, 1, 1, 1, None),
    ((2, 6, 12, 14), (15, 2, 3, 3), 3, 2, 1, 3, None),
    ((2, 3, 10, 9), (5, 3, 3, 3), 1, 0, 2, 1, None),
]


@pytest.mark.parametrize("case", WGRAD_PACKERS, ids=str)
def test_weight_gradient_packer_bits(case):
    """The weight gradient's B panels are packed from the image (by the vector packer on
    'same' stride-1 layers, element by element otherwise); the GEMM over them must give the
    bits of nnlite's plain GEMM over im2col columns built by a plain loop (_columns): same
    micro-kernel, K slices and summation order, so any wrong packed value shows. Every micro-
    kernel family, float32 and float64, 1 and 2 threads; NaN and inf pixels at the image's
    left and right edges, which padding lanes of neighbouring rows must not let through.
    Plus the naive float64 reference within rounding."""
    conv_cython = _native_wgrad()
    from nnlite import _gemm

    xs, ws, s, p, d, g, sl = case
    rng = np.random.default_rng(11)
    geom = conv2d_geometry(xs, ws, None, s, p, d, g)
    if sl is None:
        x64 = rng.standard_normal(xs)
    else:   # channels sl[0]..: a view of a wider image, its channel planes further apart
        wide = rng.standard_normal((xs[0], sl[1]) + xs[2:])
        x64 = wide[:, sl[0]:sl[0] + xs[1]]
    gy = rng.standard_normal((geom.n, geom.f, geom.oh, geom.ow))
    want64 = kernels.impl("conv2d_backward_weight", "reference")(gy, x64, geom)
    for dtype in (np.float32, np.float64):
        xd = x64.astype(dtype) if sl is None else wide.astype(dtype)[:, sl[0]:sl[0] + xs[1]]
        a = np.ascontiguousarray(gy.transpose(1, 0, 2, 3).reshape(geom.f, -1), dtype=dtype)
        cols = _columns(np.asarray(xd), geom).reshape(geom.n * geom.l, geom.g, geom.k)
        tol = 1e-11 if dtype == np.float64 else 3e-5
        for isa in _gemm.available_isas():
            code = _gemm.isa_code(isa)
            want = np.empty((geom.f, geom.k), dtype)
            for gi in range(geom.g):
                out = np.zeros((1, geom.fg, geom.k), dtype)
                _gemm.gemm_strided(a[None, gi * geom.fg:(gi + 1) * geom.fg],
                                   np.ascontiguousarray(cols[:, gi])[None], out, 1.0, 0.0, None,
                                   0, 0, 1, code)
                want[gi * geom.fg:(gi + 1) * geom.fg] = out[0]
            for nt in (1, 2):
                got = np.full((geom.f, geom.k), np.nan, dtype)
                conv_cython._convfast.conv2d_weight_grad(
                    xd, a, got, geom.g, geom.kh, geom.kw, geom.sh, geom.sw, geom.pt, geom.pl,
                    geom.dh, geom.dw, geom.oh, geom.ow, num_threads=nt, isa=code)
                assert np.array_equal(got, want), (isa, dtype, nt)
            np.testing.assert_allclose(got.reshape(want64.shape), want64, rtol=tol,
                                       atol=tol * np.abs(want64).max())
    # inf in an image's first column (then NaN in its last): the taps that never read that
    # column (the last tap column when its offset off = (KW-1)*DW - PL >= 1; the first, off =
    # -PL, when its last source column (OW-1)*SW - PL < W-1) stay finite, though in the vector
    # packer their padding lanes read it, from the next (previous) row
    for col, bad, finite in ((0, np.inf, (geom.kw - 1) * geom.dw - geom.pl >= 1),
                             (-1, np.nan, (geom.ow - 1) * geom.sw - geom.pl < xs[3] - 1)):
        xe = np.array(x64, np.float32)
        xe[..., col] = bad
        a = np.ascontiguousarray(gy.transpose(1, 0, 2, 3).reshape(geom.f, -1), dtype=np.float32)
        cols = _columns(xe, geom).reshape(geom.n * geom.l, geom.g, geom.k)
        want = np.empty((geom.f, geom.k), np.float32)
        for gi in range(geom.g):
            out = np.zeros((1, geom.fg, geom.k), np.float32)
            _gemm.gemm_strided(a[None, gi * geom.fg:(gi + 1) * geom.fg],
                               np.ascontiguousarray(cols[:, gi])[None], out, 1.0, 0.0, None, 0,
                               0, 1, _gemm.isa_code(_gemm.best_isa()))
            want[gi * geom.fg:(gi + 1) * geom.fg] = out[0]
        got = np.empty((geom.f, geom.k), np.float32)
        conv_cython._convfast.conv2d_weight_grad(
            xe, a, got, geom.g, geom.kh, geom.kw, geom.sh, geom.sw, geom.pt, geom.pl, geom.dh,
            geom.dw, geom.oh, geom.ow)
        assert np.isfinite(want).any() or not finite
        np.testing.assert_array_equal(got, want)   # NaN where want has NaN, else the bits


def test_weight_gradient_native_bad_arguments():
    conv_cython = _native_wgrad()
    fast = conv_cython._convfast
    x = np.zeros((2, 4, 6, 6), np.float32)
    a = np.zeros((6, 2 * 36), np.float32)
    geo = (2, 3, 3, 1, 1, 1, 1, 1, 1, 6, 6)
    with pytest.raises(ValueError, match="gw has 17 columns"):
        fast.conv2d_weight_grad(x, a, np.zeros((6, 17), np.float32), *geo)
    with pytest.raises(ValueError, match="gy has shape"):
        fast.conv2d_weight_grad(x, a[:, 1:].copy(), np.zeros((6, 18), np.float32), *geo)
    with pytest.raises(ValueError, match="groups=3 must divide"):
        fast.conv2d_weight_grad(x, a, np.zeros((6, 18), np.float32), 3, *geo[1:])
    with pytest.raises(ValueError, match="unit stride along W"):
        fast.conv2d_weight_grad(np.zeros((2, 4, 6, 12), np.float32)[..., ::2], a,
                                np.zeros((6, 18), np.float32), *geo)


@pytest.mark.torch
@pytest.mark.parametrize("case", WGRAD_GEMM[::2], ids=str)
def test_weight_gradient_matches_torch(case):
    torch = pytest.importorskip("torch")
    conv_cython = _native_wgrad()
    xs, ws, s, p, d, g = case
    rng = np.random.default_rng(9)
    geom = conv2d_geometry(xs, ws, None, s, p, d, g)
    x = rng.standard_normal(xs).astype(np.float32)
    gy = rng.standard_normal((geom.n, geom.f, geom.oh, geom.ow)).astype(np.float32)
    want = torch.nn.grad.conv2d_weight(torch.from_numpy(x), ws, torch.from_numpy(gy),
                                       stride=s, padding=p, dilation=d, groups=g).numpy()
    got = conv_cython.conv2d_backward_weight(gy, x, geom)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("case", WGRAD, ids=str)
def test_col2im_rows_is_the_adjoint_of_im2col_rows(case):
    """<im2col_rows(x), c> == <x, col2im_rows(c)>, and col2im_rows against a naive scatter."""
    im2col_mod = pytest.importorskip("nnlite._im2col")
    from nnlite.kernels import conv_cython

    xs, ws, s, p, d, g = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs)
    geom = conv2d_geometry(xs, ws, None, s, p, d, g)
    rows = rng.standard_normal((geom.c * geom.kh * geom.kw, geom.n, geom.l))
    want = np.zeros(xs)                                            # naive scatter-add
    for n, c, a, bb, i, j in np.ndindex(geom.n, geom.c, geom.kh, geom.kw, geom.oh, geom.ow):
        r = i * geom.sh - geom.pt + a * geom.dh
        q = j * geom.sw - geom.pl + bb * geom.dw
        if 0 <= r < geom.h and 0 <= q < geom.w:
            want[n, c, r, q] += rows[(c * geom.kh + a) * geom.kw + bb, n, i * geom.ow + j]
    got = np.full(xs, 0.5)                                         # col2im_rows accumulates
    im2col_mod.col2im_rows(rows, got, *conv_cython._args(geom), num_threads=2)
    np.testing.assert_allclose(got - 0.5, want, rtol=1e-12, atol=1e-12)
    cols = np.empty_like(rows)
    im2col_mod.im2col_rows(x, cols, *conv_cython._args(geom), num_threads=2)
    assert math.isclose(np.vdot(cols, rows), np.vdot(x, want), rel_tol=1e-12)


@pytest.mark.parametrize("budget", [None, 1], ids=["one chunk", "one image per chunk"])
@pytest.mark.parametrize("case", WGRAD, ids=str)
def test_batch_rows_forward_and_input_gradient_match_reference(case, budget, monkeypatch):
    """The batch-rows im2col path (images side by side, one GEMM per chunk) of the forward and
    the input gradient against the naive reference, float64 and float32."""
    pytest.importorskip("nnlite._im2col")
    from nnlite import _convgeom
    from nnlite.kernels import conv_cython

    if budget is not None:
        monkeypatch.setattr(_convgeom, "COL_BUDGET_BYTES", budget)
    xs, ws, s, p, d, g = case
    rng = np.random.default_rng(4)
    geom = conv2d_geometry(xs, ws, (ws[0],), s, p, d, g)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        x = rng.standard_normal(xs).astype(dtype)
        w = rng.standard_normal(ws).astype(dtype)
        b = rng.standard_normal(ws[0]).astype(dtype)
        gy = rng.standard_normal((geom.n, geom.f, geom.oh, geom.ow)).astype(dtype)
        y = conv_cython._rows_forward(x, w, b, geom)
        gx = conv_cython._rows_backward_input(gy, w, geom)
        want_y = kernels.impl("conv2d_forward", "reference")(x.astype(np.float64),
                                                             w.astype(np.float64),
                                                             b.astype(np.float64), geom)
        want_gx = kernels.impl("conv2d_backward_input", "reference")(
            gy.astype(np.float64), w.astype(np.float64), geom)
        assert y.dtype == gx.dtype == dtype
        np.testing.assert_allclose(y, want_y, rtol=tol, atol=tol * np.abs(want_y).max())
        np.testing.assert_allclose(gx, want_gx, rtol=tol, atol=tol * np.abs(want_gx).max())


def test_batch_rows_path_runs_and_is_thread_independent():
    """'auto' sends a large strided conv onto a batch of 4x4 maps to the batch-rows path
    (forward and input gradient; a stride-1 conv of this width runs the small-map kernel);
    its results are bit-identical on 1, 2 and 3 threads."""
    pytest.importorskip("nnlite._im2col")
    from nnlite import _algorithms
    from nnlite.kernels import conv_cython

    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 128, 8, 8)).astype(np.float32)
    w = rng.standard_normal((128, 128, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((8, 128, 4, 4)).astype(np.float32)
    geom = conv2d_geometry(x.shape, w.shape, None, 2, 1, 1, 1)              # 37.7 MFLOP
    assert _algorithms.resolve(geom) == "im2col" and conv_cython._rows_pay(geom)
    assert _algorithms.resolve(conv2d_geometry((8, 128, 4, 4), w.shape, None, 1, 1)) == "direct"
    results = []
    for n in (1, 2, 3):
        with kernel_threads(n):
            xt = nnlite.tensor(x, requires_grad=True)
            wt = nnlite.tensor(w, requires_grad=True)
            y = F.conv2d(xt, wt, stride=2, padding=1)
            y.backward(gy)
            results.append((y.data, xt.grad, wt.grad))
    want = kernels.impl("conv2d_forward", "reference")(x.astype(np.float64),
                                                       w.astype(np.float64), None, geom)
    np.testing.assert_allclose(results[0][0], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            assert np.array_equal(a, b)


def test_depthwise_weight_gradient_native_float32_and_threads():
    """The native depthwise weight gradient (float32, double accumulation) against the float64
    reference, and bit-identical on 1, 2 and 3 threads."""
    from nnlite.kernels import conv_cython

    if conv_cython._train is None:
        pytest.skip("nnlite._train not built")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 12, 13, 10)).astype(np.float32)
    geom = conv2d_geometry(x.shape, (24, 1, 3, 3), None, (1, 2), 1, (2, 1), 12)
    gy = rng.standard_normal((geom.n, geom.f, geom.oh, geom.ow)).astype(np.float32)
    want = kernels.impl("conv2d_backward_weight", "reference")(gy.astype(np.float64),
                                                               x.astype(np.float64), geom)
    got = []
    for n in (1, 2, 3):
        with kernel_threads(n):
            got.append(conv_cython.conv2d_backward_weight(gy, x, geom))
    assert got[0].dtype == np.float32
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-5)
    assert all(np.array_equal(g, got[0]) for g in got[1:])
    # padding taps are multiplied as zeros, as im2col + GEMM (the 'numpy' backend) do: an
    # inf gradient gives NaN there (0 * inf), +inf through the tap on x
    x1 = np.ones((2, 1, 1, 1), np.float32)
    g1 = np.array([1.0, np.inf], np.float32).reshape(2, 1, 1, 1)
    geom1 = conv2d_geometry(x1.shape, (1, 1, 3, 3), None, 1, 1, 1, 1)
    gw1 = conv_cython.conv2d_backward_weight(g1, x1, geom1).reshape(9)
    want1 = kernels.impl("conv2d_backward_weight", "numpy")(g1, x1, geom1).reshape(9)
    assert np.isposinf(gw1[4]) and np.isnan(np.delete(gw1, 4)).all()
    np.testing.assert_array_equal(np.isnan(gw1), np.isnan(want1))


def test_depthwise_weight_gradient_bad_arguments():
    from nnlite.kernels import conv_cython

    if conv_cython._train is None:
        pytest.skip("nnlite._train not built")
    t = conv_cython._train
    x = np.zeros((2, 3, 5, 5), np.float32)
    gy = np.zeros((2, 6, 5, 5), np.float32)
    with pytest.raises(ValueError, match="gw has shape"):
        t.depthwise_weight_grad(gy, x, np.zeros((6, 8), np.float32), 3, 3, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="not a multiple"):
        t.depthwise_weight_grad(np.zeros((2, 4, 5, 5), np.float32), x,
                                np.zeros((4, 9), np.float32), 3, 3, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="images"):
        t.depthwise_weight_grad(gy[:1], x, np.zeros((6, 9), np.float32), 3, 3, 1, 1, 1, 1, 1, 1)
    # a map larger than the geometry covers reads nothing outside x (taps beyond it skipped)
    gw = np.full((6, 9), 7.0, np.float32)
    t.depthwise_weight_grad(np.ones((2, 6, 40, 40), np.float32), np.ones_like(x), gw,
                            3, 3, 1, 1, 1, 1, 1, 1)
    assert np.all(np.isfinite(gw)) and gw.max() <= 2 * 25


# ---------------------------------------------------------------------------------- ReLU
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 5, 17, 19), (5000,), (2, 3, 1, 700)], ids=str)
def test_relu_native_matches_naive_loop(shape, dtype):
    from nnlite import _ops

    assert np.prod(shape) >= _ops.ReLU._NATIVE_MIN                 # the native path runs
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    flat[:4] = [np.nan, -0.0, 0.0, -np.inf]
    gy = rng.standard_normal(shape).astype(dtype)
    xt = nnlite.tensor(x, requires_grad=True)
    y = F.relu(xt)
    y.backward(gy)
    want_y = np.array([v if (v > 0 or v != v) else 0.0 for v in flat], dtype).reshape(shape)
    # torch's rule: the gradient passes where the output is not <= 0 (a NaN input included)
    want_g = np.array([0.0 if v <= 0 else g for v, g in zip(flat, gy.reshape(-1))],
                      dtype).reshape(shape)
    np.testing.assert_array_equal(y.data, want_y)
    assert not np.signbit(y.data.reshape(-1)[1])                   # -0.0 -> +0.0 (np.maximum)
    np.testing.assert_array_equal(xt.grad, want_g)
    assert y.dtype == xt.grad.dtype == dtype


def test_relu_native_non_contiguous_and_threads():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 40, 30, 30))[:, ::2]               # strided, > 2**17 elements
    gy = rng.standard_normal(x.shape)
    results = []
    for n in (1, 2, 3):
        with kernel_threads(n):
            xt = nnlite.tensor(x, requires_grad=True)
            y = F.relu(xt)
            y.backward(gy)
            results.append((y.data, xt.grad))
    np.testing.assert_array_equal(results[0][0], np.maximum(x, 0))
    np.testing.assert_array_equal(results[0][1], np.where(x > 0, gy, 0))
    for y, g in results[1:]:
        assert np.array_equal(y, results[0][0]) and np.array_equal(g, results[0][1])


@pytest.mark.parametrize("size", [5, 1 << 13])              # the NumPy and the native path
def test_relu_gradient_is_a_select_as_torch(size):
    """Upstream inf/NaN gradients do not leak into zeroed entries; NaN inputs pass it on."""
    x = np.full(size, -1.0, np.float32)
    x[:5] = [np.nan, -1.0, 0.0, 2.0, -0.0]
    gy = np.full(size, np.inf, np.float32)
    gy[:5] = [5.0, np.inf, np.nan, 1.0, np.inf]
    xt = nnlite.tensor(x, requires_grad=True)
    F.relu(xt).backward(gy)
    want = np.zeros(size, np.float32)
    want[[0, 3]] = [5.0, 1.0]
    np.testing.assert_array_equal(xt.grad, want)
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x, requires_grad=True)
    torch.relu(tx).backward(torch.tensor(gy))
    np.testing.assert_array_equal(xt.grad, tx.grad.numpy())


def test_relu_native_raises_on_size_mismatch():
    from nnlite import _train

    with pytest.raises(ValueError, match="expected 4"):
        _train.relu_forward(np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError, match="expected 4"):
        _train.relu_backward(np.zeros(4), np.zeros(4), np.zeros(5))


# ------------------------------------------------------------------ BatchNorm -> ReLU fused
def _bn_relu_run(fused, x, gy, backend, training, dtype):
    """Sequential(BatchNorm2d, ReLU) (fused when ``fused``, else the two nodes one after the
    other); returns y, gx, gw, gb, running mean, running var."""
    nnlite.manual_seed(3)
    bn, relu = nnlite.nn.BatchNorm2d(x.shape[1]), nnlite.nn.ReLU()
    bn.weight.data[...] = np.linspace(-1.5, 2.0, x.shape[1])       # negative scales too
    bn.bias.data[...] = np.linspace(0.3, -0.2, x.shape[1])
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        t.data = t.data.astype(dtype)
    bn.train(training)
    xt = nnlite.tensor(x.astype(dtype), requires_grad=True)
    with nnlite.using_backend(backend):
        y = nnlite.nn.Sequential(bn, relu)(xt) if fused else relu(bn(xt))
        y.backward(gy.astype(dtype))
    return (y.data, xt.grad, bn.weight.grad, bn.bias.grad, bn.running_mean.data.copy(),
            bn.running_var.data.copy()), y


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 5, 13, 11), (1, 3, 4, 1)], ids=str)
def test_sequential_fuses_batchnorm_relu_bit_identically(shape, dtype, backend, training):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape)
    x.reshape(-1)[:3] = [np.nan, 0.0, -0.0] if shape[0] > 1 else x.reshape(-1)[:3]
    gy = rng.standard_normal(shape)
    got, y = _bn_relu_run(True, x, gy, backend, training, dtype)
    want, y_ref = _bn_relu_run(False, x, gy, backend, training, dtype)
    # fused in training mode only (eval: the inference tracer sees BatchNorm and Relu)
    assert type(y._ctx).__name__ == ("BatchNormFn" if training else "ReLU")
    assert type(y_ref._ctx).__name__ == "ReLU"
    for a, b in zip(got, want):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_array_equal(a, b)
    assert not np.signbit(got[0]).any()                             # relu: -0.0 -> +0.0


def test_fused_batchnorm_relu_finite_differences():
    from nnlite.functional.normalization import _batch_norm

    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3, 5, 3))
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    for backend in ("cython", "numpy"):
        with nnlite.using_backend(backend):
            check_grad(lambda x, w, b: _batch_norm(x, None, None, w, b, True, relu=True),
                       [x, w, b], rtol=1e-5, atol=1e-7)


def test_sequential_does_not_fuse_overridden_modules():
    class LoudReLU(nnlite.nn.ReLU):
        def forward(self, input):
            return F.relu(input) * 2.0

    class ShiftedBN(nnlite.nn.BatchNorm2d):
        def forward(self, input):
            return super().forward(input) + 1.0

    x = nnlite.tensor(np.random.default_rng(9).standard_normal((3, 2, 4, 4)).astype(np.float32))
    bn = nnlite.nn.BatchNorm2d(2)
    y = nnlite.nn.Sequential(bn, LoudReLU())(x)
    np.testing.assert_allclose(y.data, 2 * np.maximum(bn(x).data, 0))
    sbn = ShiftedBN(2)
    y = nnlite.nn.Sequential(sbn, nnlite.nn.ReLU())(x)
    np.testing.assert_allclose(y.data, np.maximum(nnlite.nn.BatchNorm2d(2)(x).data + 1.0, 0),
                               rtol=1e-6)


def test_fused_batchnorm_relu_without_input_gradient():
    """An input that does not require grad (a BatchNorm on the raw batch): the parameters'
    gradients still see the ReLU mask; bn_backward refuses relu_out without a gx buffer."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((5, 4, 6, 7)).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    grads = []
    for fused in (True, False):
        nnlite.manual_seed(0)
        bn, relu = nnlite.nn.BatchNorm2d(4), nnlite.nn.ReLU()
        y = nnlite.nn.Sequential(bn, relu)(nnlite.tensor(x)) if fused else \
            relu(bn(nnlite.tensor(x)))
        y.backward(gy)
        grads.append((bn.weight.grad, bn.bias.grad))
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)
    t = normalization._train
    c = np.zeros(4)
    x3 = x.reshape(5, 4, -1)
    with pytest.raises(ValueError, match="relu_out needs gx"):
        t.bn_backward(x3, x3, None, c, c + 1, np.ones(4, np.float32), True, c.copy(),
                      c.copy(), relu_out=x3)


class _UnfusedReLU(nnlite.nn.ReLU):
    """nn.ReLU's forward in a subclass: no BatchNorm fuses it (``_plain_relu`` is looked up on
    the exact type), so a block holding it runs BatchNorm and ReLU as two nodes."""


def _relu_nodes(y):
    """Number of ReLU autograd nodes in the graph behind ``y``."""
    seen, stack, count = set(), [y], 0
    while stack:
        ctx = stack.pop()._ctx
        if ctx is None or id(ctx) in seen:
            continue
        seen.add(id(ctx))
        count += type(ctx).__name__ == "ReLU"
        stack.extend(ctx.parents)
    return count


def _block_run(make, x, gy, training, unfused):
    nnlite.manual_seed(5)
    m = make().to(x.dtype)
    rng = np.random.default_rng(6)
    for name, mod in list(m.named_modules()):
        if isinstance(mod, nnlite.nn.BatchNorm2d):          # negative scales: the mask matters
            mod.weight.data[...] = rng.uniform(-1.5, 2.0, mod.weight.shape)
            mod.bias.data[...] = rng.uniform(-0.5, 0.5, mod.bias.shape)
        if unfused and type(getattr(mod, "relu", None)) is nnlite.nn.ReLU:
            mod.relu = _UnfusedReLU()
    m.train(training)
    xt = nnlite.tensor(x, requires_grad=True)
    y = m(xt)
    nodes = _relu_nodes(y)
    y.backward(gy)
    stats = [b.data.copy() for b in m.buffers()]
    return [y.data, xt.grad] + [p.grad for p in m.parameters()] + stats, nodes


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [
    # (name, factory, input shape, ReLU nodes unfused, ReLU nodes fused in training)
    ("BasicBlock-s2", lambda: nnlite.nn.BasicBlock(3, 5, stride=2), (3, 3, 9, 7), 2, 1),
    ("BasicBlock-id", lambda: nnlite.nn.BasicBlock(4, 4), (1, 4, 5, 6), 2, 1),
    ("Bottleneck-s2", lambda: nnlite.nn.Bottleneck(4, 2, stride=2), (2, 4, 7, 5), 3, 1),
    ("ResNeXtBlock", lambda: nnlite.nn.ResNeXtBlock(8, 8, cardinality=4, base_width=8),
     (2, 8, 5, 5), 3, 1),
    # stem + 8 BasicBlocks: 1 + 8 * 2 ReLUs unfused, 8 fused
    ("resnet18", lambda: nnlite.models.resnet18(num_classes=3), (2, 3, 33, 35), 17, 8),
], ids=lambda c: c[0] if isinstance(c, tuple) else None)
def test_blocks_fuse_batchnorm_relu_bit_identically(case, dtype, training):
    """BasicBlock, Bottleneck (and ResNeXt) and the ResNet stem run their BatchNorm -> ReLU as
    one node in training mode (eval: two, for the inference tracer); outputs, input and
    parameter gradients and running statistics equal the two-node run bit for bit."""
    _, make, shape, n_unfused, n_fused = case
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(dtype)
    with nnlite.no_grad():
        out_shape = make().to(dtype)(nnlite.tensor(x)).shape
    gy = rng.standard_normal(out_shape).astype(dtype)
    got, nodes = _block_run(make, x, gy, training, unfused=False)
    ref, ref_nodes = _block_run(make, x, gy, training, unfused=True)
    assert ref_nodes == n_unfused
    assert nodes == (n_fused if training else n_unfused)
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        assert a is not None and b is not None
        np.testing.assert_array_equal(a, b)
