"""The GEMM's two-level operands (``gemm_ops.gemm_split``, nnl_split in csrc/gemm_kernels.h) and
the pointwise conv routines built on them (conv_cython's whole-batch 1x1 path).

Oracles: numpy matmul in float64 on the regrouped operands, the plain ``gemm`` on regrouped
copies (the same blocking on the same logical product, so the same bits), and the naive-loop
conv reference (nnlite.kernels.conv_reference, no shared code). Shapes straddle every family's
MR/NR (4/8/6 rows, 8/16/24/48 columns) and KC (256): inner lengths 1, primes and multiples of
the vector width, one outer item, M = 1..20, plus strided (transposed, channel-slice) layouts.
"""
import numpy as np
import pytest

from conftest import assert_close, kernel_threads
from test_gemm import isa  # noqa: F401  (the fixture: each micro-kernel family, or NumPy)

import nnlite
from nnlite.kernels import conv_cython, conv_reference as ref, gemm, gemm_ops
from nnlite._convgeom import conv2d_geometry

BUILT = gemm_ops._gemm is not None
ISAS = gemm_ops._gemm.available_isas() if BUILT else []
needs_ext = pytest.mark.skipif(not BUILT, reason="nnlite._gemm not built")

# (M, nk, lk, nn, ln)
SHAPES = [(1, 1, 1, 1, 1), (5, 3, 1, 4, 1), (4, 1, 7, 3, 17), (8, 2, 16, 2, 16),
          (9, 3, 49, 2, 64), (20, 32, 16, 3, 13), (7, 2, 300, 5, 10), (13, 1, 33, 1, 97),
          (6, 4, 5, 7, 48), (17, 2, 64, 32, 16)]


def _operands(shape, dtype, layout, seed):
    """a (M, nk, lk), b (nk, lk, nn, ln), out (M, nn, ln) in the memory layout ``layout`` and the
    float64 matrices A (M, K), B (K, N), C0 (M, N) they hold."""
    m, nk, lk, nn, ln = shape
    rng = np.random.default_rng(seed)
    A = rng.uniform(-1, 1, (m, nk * lk))
    B = rng.uniform(-1, 1, (nk * lk, nn * ln))
    C0 = rng.uniform(-1, 1, (m, nn * ln))
    a = A.reshape(m, nk, lk).astype(dtype)
    b = B.reshape(nk, lk, nn, ln).astype(dtype)
    out = C0.reshape(m, nn, ln).astype(dtype)
    if layout == "nchw":
        # the conv's layouts: a gy-like (nk, M, lk) batch, b an image batch (nn, K, ln) with a
        # padding channel either side (a channel slice), out an image batch (nn, M, ln)
        a = np.ascontiguousarray(a.transpose(1, 0, 2)).transpose(1, 0, 2)
        big = np.zeros((nk, nn, lk + 2, ln), dtype)
        big[:, :, 1:-1] = b.transpose(0, 2, 1, 3)
        b = big[:, :, 1:-1].transpose(0, 2, 1, 3)
        out = np.ascontiguousarray(out.transpose(1, 0, 2)).transpose(1, 0, 2)
    elif layout == "transposed":
        # the weight gradient's: b's inner k axis contiguous (x viewed as (n, L, 1, C))
        b = np.ascontiguousarray(b.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        a = np.ascontiguousarray(a.transpose(0, 2, 1)).transpose(0, 2, 1)
    return a, b, out, A, B, C0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "nchw", "transposed"])
def test_gemm_split_matches_float64_matmul(isa, dtype, layout):
    for i, shape in enumerate(SHAPES):
        a, b, out, A, B, C0 = _operands(shape, dtype, layout, seed=i)
        beta = (0.0, 1.0, -0.5)[i % 3]
        bias_axis = i % 2
        bias = np.random.default_rng(100 + i).uniform(-1, 1, A.shape[0] if bias_axis == 0
                                                      else B.shape[1]).astype(dtype)
        act = (None, "relu", "relu6")[i % 3]
        got = gemm_ops.gemm_split(a, b, out, beta=beta, bias=bias, bias_axis=bias_axis,
                                  activation=act)
        assert got is out
        expect = A @ B + beta * C0 + (bias[:, None] if bias_axis == 0 else bias[None, :])
        if act:
            expect = np.clip(expect, 0, 6 if act == "relu6" else None)
        assert_close(out.reshape(A.shape[0], -1), expect, dtype, k=A.shape[1], scale=2)


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_split_same_bits_as_plain_gemm_and_any_thread_count(dtype):
    # a product above the one-thread cut-off (8M multiply-adds): K over several KC slices
    # whose edges fall inside an outer item, tiles straddling the items of N
    shape = (96, 4, 300, 3, 50)
    a, b, out, A, B, _ = _operands(shape, dtype, "nchw", seed=7)
    plain = gemm(np.ascontiguousarray(a).reshape(96, -1),
                 np.ascontiguousarray(b).reshape(1200, 150), num_threads=1)
    for threads in (1, 2, 3):
        res = np.full_like(out, np.nan)
        gemm_ops.gemm_split(a, b, res, num_threads=threads)
        np.testing.assert_array_equal(res.reshape(96, 150), plain)


@needs_ext
def test_gemm_split_k_zero_and_beta():
    out = np.ones((3, 2, 5), np.float32)
    gemm_ops.gemm_split(np.ones((3, 0, 4), np.float32), np.ones((0, 4, 2, 5), np.float32), out,
                        beta=2.0, bias=np.arange(3, dtype=np.float32))
    np.testing.assert_array_equal(
        out, np.broadcast_to(2.0 + np.arange(3, dtype=np.float32)[:, None, None], out.shape))


@needs_ext
def test_gemm_split_rejects_bad_arguments():
    a = np.ones((3, 2, 4), np.float32)
    b = np.ones((2, 4, 2, 5), np.float32)
    out = np.ones((3, 2, 5), np.float32)
    with pytest.raises(ValueError, match=r"do not chain; b must be \(2, 4, 2, 5\)"):
        gemm_ops.gemm_split(a, b[:, :3], out)
    with pytest.raises(TypeError, match="dtypes of a"):
        gemm_ops.gemm_split(a, b.astype(np.float64), out)
    with pytest.raises(ValueError, match="overlaps"):
        gemm_ops.gemm_split(a, b, b[0, :3])
    with pytest.raises(ValueError, match="unit stride"):
        gemm_ops.gemm_split(a, b, np.ones((3, 2, 10), np.float32)[:, :, ::2])
    with pytest.raises(ValueError, match="bias"):
        gemm_ops.gemm_split(a, b, out, bias=np.ones(4, np.float32))


# ------------------------------------------------------------------- the pointwise conv path
CONVS = [(1, 1, 1, 1, 1), (2, 3, 9, 3, 5), (5, 16, 20, 8, 8), (3, 40, 16, 4, 4),
         (4, 1, 7, 7, 7), (2, 9, 1, 2, 3), (2, 5, 6, 17, 17)]   # (N, C, F, H, W); 17x17: > 256


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONVS)
def test_pointwise_conv_routines_match_reference(case, dtype):
    n, c, f, h, w_ = case
    rng = np.random.default_rng(sum(case))
    # x a channel slice of a larger batch (not contiguous), as a plan's concatenation passes it
    xb = rng.standard_normal((n, c + 3, h, w_)).astype(dtype)
    x = xb[:, 1:c + 1]
    w = rng.standard_normal((f, c, 1, 1)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    gy = rng.standard_normal((n, f, h, w_)).astype(dtype)
    geom = conv2d_geometry(x.shape, w.shape, b.shape, 1, 0, 1, 1)
    assert conv_cython._pointwise_batch(geom, gy, x, False) is not None
    big_map = n > 1 and h * w_ > conv_cython._POINTWISE_MAX_PIXELS
    assert (conv_cython._pointwise_batch(geom, x, w) is None) == big_map
    with nnlite.using_backend("cython"):
        y = conv_cython.conv2d_forward(x, w, b, geom)
        gx = conv_cython.conv2d_backward_input(gy, w, geom)
        gw = conv_cython.conv2d_backward_weight(gy, x, geom)
    assert y.shape == (n, f, h, w_) and gx.shape == x.shape and gw.shape == w.shape
    assert_close(y, ref.conv2d_forward(x, w, b, geom), dtype, k=c, scale=4)
    assert_close(gx, ref.conv2d_backward_input(gy, w, geom), dtype, k=f, scale=4)
    assert_close(gw, ref.conv2d_backward_weight(gy, x, geom), dtype, k=n * h * w_, scale=4)


@needs_ext
def test_pointwise_weight_grad_same_bits_as_regrouped_gemm_and_threads():
    # the reduction over (image, pixel) in the order of the (C, N*L) regrouped operands it
    # replaces, for any thread count
    rng = np.random.default_rng(3)
    n, c, f, s = 32, 40, 48, 8                     # 40 * 48 * 2048 = 3.9M multiply-adds
    x = rng.standard_normal((n, c, s, s)).astype(np.float32)
    gy = rng.standard_normal((n, f, s, s)).astype(np.float32)
    geom = conv2d_geometry(x.shape, (f, c, 1, 1), None, 1, 0, 1, 1)
    regrouped = gemm(conv_cython._rows_first(gy, n, f, s * s),
                     conv_cython._rows_first(x, n, c, s * s), trans_b=True)
    for threads in (1, 2):
        with kernel_threads(threads), nnlite.conv_algorithm("auto"):
            gw = conv_cython.conv2d_backward_weight(gy, x, geom)
        np.testing.assert_array_equal(gw.reshape(f, c), regrouped)


@needs_ext
def test_pointwise_path_not_taken_for_other_convs():
    x = np.ones((2, 4, 5, 5), np.float32)
    for wshape, stride, pad, groups in (((6, 2, 1, 1), 1, 0, 2), ((6, 4, 1, 1), 2, 0, 1),
                                        ((6, 4, 1, 1), 1, 1, 1), ((6, 4, 3, 3), 1, 1, 1)):
        geom = conv2d_geometry(x.shape, wshape, None, stride, pad, 1, groups)
        assert conv_cython._pointwise_batch(geom, x, np.ones(wshape, np.float32)) is None
    geom = conv2d_geometry(x.shape, (6, 4, 1, 1), None, 1, 0, 1, 1)
    assert conv_cython._pointwise_batch(geom, x, np.ones((6, 4, 1, 1), np.float64)) is None
