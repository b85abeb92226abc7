"""im2col / col2im: exact values vs a loop written from the definition, identical across backends,
adjointness, accumulation, threads, batch chunking, workspace size and memory (tracemalloc)."""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, strategies as st

import nnlite
from nnlite import _convgeom, kernels
from nnlite._convgeom import conv2d_geometry, conv_transpose2d_geometry

from conv_cases import conv2d_case, conv_transpose2d_case, with_fixture

DTYPES = [np.float32, np.float64]


def loop_im2col(x, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """cols[n, (c*kh + a)*kw + b, i*ow + j] = x[n, c, i*sh - pt + a*dh, j*sw - pl + b*dw] or 0."""
    n, c, h, w = x.shape
    cols = np.zeros((n, c * kh * kw, oh * ow), dtype=x.dtype)
    for ci in range(c):
        for a in range(kh):
            for b in range(kw):
                for i in range(oh):
                    for j in range(ow):
                        r, q = i * sh - pt + a * dh, j * sw - pl + b * dw
                        if 0 <= r < h and 0 <= q < w:
                            cols[:, (ci * kh + a) * kw + b, i * ow + j] = x[:, ci, r, q]
    return cols


def _geom(case):
    return conv2d_geometry((case["n"], case["c"], case["h"], case["w"]),
                           (case["f"], case["c"] // case["g"], case["kh"], case["kw"]), None,
                           case["stride"], case["padding"], case["dilation"], case["g"])


def _loop(x, g):
    return loop_im2col(x, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw, g.oh, g.ow)


def test_im2col_hand_example(backend):
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    g = conv2d_geometry(x.shape, (1, 1, 2, 2), padding=0)
    cols = kernels.impl("im2col")(x, g)
    # rows: taps (0,0), (0,1), (1,0), (1,1); columns: the 2x2 output positions
    expected = [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    np.testing.assert_array_equal(cols[0], expected)


@pytest.mark.parametrize("c, h, w, k, s, p, d", [
    (3, 28, 28, (3, 3), (2, 2), (1, 1), (1, 1)),    # rows of 14: one vector, first column pad
    (2, 56, 45, (3, 3), (2, 2), (1, 1), (1, 1)),    # rows of 28 / 23: two vectors, odd width
    (2, 14, 14, (3, 3), (1, 1), (1, 1), (1, 1)),    # stride 1, rows of 14
    (1, 9, 40, (2, 5), (1, 1), (3, 0), (2, 3)),     # stride 1, dilated, rows of 28
    (2, 7, 7, (3, 3), (2, 2), (4, 4), (1, 1)),      # padding beyond the kernel: padded rows
    (1, 33, 70, (3, 3), (3, 2), (0, 2), (1, 2)),    # row stride 3, column stride 2, 36 wide
    (1, 5, 300, (1, 3), (1, 1), (0, 1), (1, 1)),    # 300 wide: past the vector path (element)
])
def test_im2col_float32_rows_match_loop_definition(backend, c, h, w, k, s, p, d):
    # the float32 rows of stride 1 and 2 (whole vectors on AVX-512, csrc/im2col_rows.c):
    # several vectors per row, first/last columns in the padding, fully padded rows
    x = np.random.default_rng(1).standard_normal((2, c, h, w)).astype(np.float32)
    g = conv2d_geometry(x.shape, (1, c) + k, None, s, p, d, 1)
    cols = kernels.impl("im2col")(x, g)
    np.testing.assert_array_equal(cols, _loop(x, g))


@with_fixture
@given(case=conv2d_case(), dtype=st.sampled_from(DTYPES))
def test_im2col_matches_loop_definition(backend, case, dtype):
    g = _geom(case)
    x = np.random.default_rng(0).standard_normal((g.n, g.c, g.h, g.w)).astype(dtype)
    cols = kernels.impl("im2col")(x, g)
    assert cols.shape == g.col_shape(g.n) and cols.dtype == dtype
    np.testing.assert_array_equal(cols, _loop(x, g))


@with_fixture
@given(case=conv_transpose2d_case(), dtype=st.sampled_from(DTYPES))
def test_im2col_transpose_geometry_matches_loop(backend, case, dtype):
    # the adjoint conv of a transposed conv may have output_padding >= stride: the column grid
    # is then smaller than the natural conv output (docs/semantics.md §2.4 crop); the kernel must
    # follow it
    g = conv_transpose2d_geometry((case["n"], case["cin"], case["h"], case["w"]),
                                  (case["cin"], case["cout"] // case["g"], case["kh"], case["kw"]),
                                  None, case["stride"], case["padding"], case["output_padding"],
                                  case["g"], case["dilation"])
    x = np.random.default_rng(1).standard_normal((g.n, g.c, g.h, g.w)).astype(dtype)
    np.testing.assert_array_equal(kernels.impl("im2col")(x, g), _loop(x, g))


@with_fixture
@given(case=conv2d_case(), dtype=st.sampled_from(DTYPES))
def test_im2col_col2im_adjoint(backend, case, dtype):
    g = _geom(case)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((g.n, g.c, g.h, g.w)).astype(dtype)
    c = rng.standard_normal(g.col_shape(g.n)).astype(dtype)
    lhs = np.vdot(kernels.impl("im2col")(x, g).astype(np.float64), c)
    back = kernels.impl("col2im")(c, g)
    assert back.shape == x.shape and back.dtype == dtype
    rhs = np.vdot(x.astype(np.float64), back)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert abs(lhs - rhs) <= tol * (1 + np.abs(c).sum() * np.abs(x).max())


@with_fixture
@given(case=conv2d_case())
def test_col2im_matches_loop_scatter_and_accumulates(backend, case):
    g = _geom(case)
    rng = np.random.default_rng(3)
    c = rng.standard_normal(g.col_shape(g.n))
    start = rng.standard_normal((g.n, g.c, g.h, g.w))
    # scatter from the definition: every column entry adds onto its source pixel
    expect = start.copy()
    for ci in range(g.c):
        for a in range(g.kh):
            for b in range(g.kw):
                for i in range(g.oh):
                    for j in range(g.ow):
                        r, q = i * g.sh - g.pt + a * g.dh, j * g.sw - g.pl + b * g.dw
                        if 0 <= r < g.h and 0 <= q < g.w:
                            expect[:, ci, r, q] += c[:, (ci * g.kh + a) * g.kw + b, i * g.ow + j]
    out = start.copy()
    got = kernels.impl("col2im")(c, g, out=out)
    assert got is out
    np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-12)


@given(case=conv2d_case(max_batch=3))
def test_im2col_backends_identical(case):
    if "cython" not in nnlite.available_backends():
        pytest.skip("extension not built")
    g = _geom(case)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((g.n, g.c, g.h, g.w)).astype(np.float32)
    c = rng.standard_normal(g.col_shape(g.n)).astype(np.float32)
    impls_i, impls_c = kernels.implementations("im2col"), kernels.implementations("col2im")
    np.testing.assert_array_equal(impls_i["cython"](x, g), impls_i["numpy"](x, g))
    np.testing.assert_allclose(impls_c["cython"](c, g), impls_c["numpy"](c, g),
                               rtol=1e-6, atol=1e-6)


def test_im2col_thread_counts_agree():
    if "cython" not in nnlite.available_backends():
        pytest.skip("extension not built")
    from nnlite import _im2col

    g = conv2d_geometry((3, 5, 11, 9), (4, 5, 3, 2), None, (2, 1), (1, 2), (1, 2), 1)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((g.n, g.c, g.h, g.w))
    c = rng.standard_normal(g.col_shape(g.n))
    args = (g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw, g.oh, g.ow)
    outs = []
    for nt in (1, 2, 4):
        cols = np.full(g.col_shape(g.n), np.nan)
        _im2col.im2col(x, cols, *args, num_threads=nt)
        img = np.zeros_like(x)
        _im2col.col2im(c, img, *args, num_threads=nt)
        outs.append((cols, img))
    for cols, img in outs[1:]:
        np.testing.assert_array_equal(cols, outs[0][0])
        np.testing.assert_array_equal(img, outs[0][1])   # each plane is summed by one thread


def test_im2col_cython_wrapper_rejects_bad_buffers():
    if "cython" not in nnlite.available_backends():
        pytest.skip("extension not built")
    from nnlite import _im2col

    x = np.zeros((1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"expected \(1, 18, 4\)"):
        _im2col.im2col(x, np.zeros((1, 18, 5)), 3, 3, 1, 1, 0, 0, 1, 1, 2, 2)
    with pytest.raises(ValueError, match="must be positive"):
        _im2col.im2col(x, np.zeros((1, 18, 4)), 3, 3, 0, 1, 0, 0, 1, 1, 2, 2)
    with pytest.raises(ValueError, match="must be >= 0"):
        _im2col.col2im(np.zeros((1, 18, 4)), x, 3, 3, 1, 1, -1, 0, 1, 1, 2, 2)
    with pytest.raises((TypeError, ValueError)):   # mixed dtypes: no fused specialisation
        _im2col.im2col(x, np.zeros((1, 18, 4), dtype=np.float32), 3, 3, 1, 1, 0, 0, 1, 1, 2, 2)
    with pytest.raises(ValueError):                # non-contiguous input
        _im2col.im2col(np.zeros((1, 2, 4, 8))[..., ::2], np.zeros((1, 18, 4)),
                       3, 3, 1, 1, 0, 0, 1, 1, 2, 2)


def test_im2col_empty_batch(backend):
    g = conv2d_geometry((0, 2, 5, 5), (3, 2, 3, 3), padding=1)
    x = np.zeros((0, 2, 5, 5), dtype=np.float32)
    assert kernels.impl("im2col")(x, g).shape == (0, 18, 25)
    assert kernels.impl("col2im")(np.zeros((0, 18, 25), np.float32), g).shape == (0, 2, 5, 5)


def test_workspace_bytes_reports_the_column_buffer():
    g = conv2d_geometry((4, 3, 10, 12), (8, 3, 3, 5), None, 1, (1, 2), 1, 1)
    per_image = 3 * 3 * 5 * g.oh * g.ow
    assert g.workspace_bytes(np.float32) == 4 * per_image * 4
    assert g.workspace_bytes(np.float64) == 4 * per_image * 8
    assert g.workspace_bytes(np.float32, budget=2 * per_image * 4) == 2 * per_image * 4
    assert g.workspace_bytes(np.float32, budget=1) == per_image * 4       # >= one image
    pointwise = conv2d_geometry((4, 3, 10, 12), (8, 3, 1, 1))
    assert pointwise.is_pointwise and pointwise.workspace_bytes(np.float32) == 0
    assert _convgeom.conv2d_workspace_bytes((4, 3, 10, 12), (8, 3, 3, 5), 1, (1, 2),
                                            dtype=np.float64) == 4 * per_image * 8
    assert _convgeom.conv2d_workspace_bytes((4, 3, 10, 12), (8, 3, 1, 1)) == 0


def test_im2col_writes_into_given_buffer_without_copies(backend):
    g = conv2d_geometry((2, 8, 32, 32), (4, 8, 3, 3), None, 1, 1, 1, 1)
    x = np.random.default_rng(6).standard_normal((2, 8, 32, 32)).astype(np.float32)
    out = np.empty(g.col_shape(2), dtype=np.float32)
    cols_bytes = out.nbytes
    tracemalloc.start()
    try:
        res = kernels.impl("im2col")(x, g, out=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res is out
    # at most one padded image copy (numpy backend), never a second column-sized buffer
    assert peak < x.nbytes * 1.3 + 64 * 1024 < cols_bytes, (peak, cols_bytes)


def test_batch_chunking_matches_single_chunk(backend, monkeypatch):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 4, 7, 6))
    w = rng.standard_normal((6, 2, 3, 2))
    g = conv2d_geometry(x.shape, w.shape, None, (2, 1), (1, 0), (1, 2), 2)
    gy = rng.standard_normal((5, 6, g.oh, g.ow))
    full = [kernels.impl(op)(*args, g) for op, args in (
        ("conv2d_forward", (x, w, None)), ("conv2d_backward_input", (gy, w)),
        ("conv2d_backward_weight", (gy, x)))]
    per_image = g.c * g.kh * g.kw * g.l * 8
    monkeypatch.setattr(_convgeom, "COL_BUDGET_BYTES", 2 * per_image)   # chunks of 2, 2, 1
    assert g.batch_chunk(8) == 2
    chunked = [kernels.impl(op)(*args, g) for op, args in (
        ("conv2d_forward", (x, w, None)), ("conv2d_backward_input", (gy, w)),
        ("conv2d_backward_weight", (gy, x)))]
    for a, b in zip(full, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
