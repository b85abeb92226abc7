"""The GEMM's column-tail kernel (csrc/gemm_simd_tmpl.h, nnl_tail_s in gemm_internal.h): a
ragged last column panel of at most ``tail_n`` columns, computed with the rows in the vector
lanes over whole vectors of packed row panels (AVX-512: two 8-row panels a float32 vector, an
odd last one left to the register tile), or one row panel a vector in its low lanes (AVX2
float32: 6 rows of 8 lanes).

Two oracles: float64 NumPy (independent), and the same columns computed as part of a wider
product where they sit inside full panels (the register tile's path): the kernel claims the
same operations on the same values, so those must agree bit for bit. Sizes: every tail width
1..tail_n and one past it, rows that fill whole vectors, a partial last row panel, an odd
number of row panels (the leftover goes to the register tile), several blocks of vectors, K
over several slices; every epilogue (alpha, beta, row/column bias, ReLU/ReLU6); 1 and 2
threads; A pre-packed (where the kernel runs) with B plain or pre-packed.
"""
import numpy as np
import pytest

from conftest import assert_close
from test_gemm import oracle

from nnlite.kernels import gemm
from nnlite.kernels import gemm_ops

BUILT = gemm_ops._gemm is not None
ISAS = gemm_ops._gemm.available_isas() if BUILT else []
pytestmark = pytest.mark.skipif(not BUILT, reason="nnlite._gemm not built")


def rand(shape, dtype, seed):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(dtype)


@pytest.mark.parametrize("isa", ISAS)
def test_tail_width_is_reported(isa):
    for dtype in (np.float32, np.float64):
        blk = gemm_ops.blocking(dtype, isa=isa)
        lanes = {"avx512": 64, "avx2": 32}.get(isa, 0) // np.dtype(dtype).itemsize
        if isa == "avx512" or (isa == "avx2" and dtype == np.float32):
            # AVX-512's 8-row panels: two (float32) or one (float64) a vector; AVX2 float32's
            # 6-row panel in the low lanes of one 8-lane vector
            assert blk["mr"] <= lanes
            assert blk["tail_n"] == lanes // 2
        else:                    # generic C; AVX2 float64 (6-row panels, 4 lanes) has none
            assert blk["tail_n"] == 0
        assert 0 <= blk["tail_n"] < blk["nr"]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ragged_tails_match_full_panels_and_float64(isa, dtype):
    with gemm_ops.using_microkernel(isa):
        blk = gemm_ops.blocking(dtype)
        nr, mr, tail = blk["nr"], blk["mr"], blk["tail_n"]
        kc = blk["kc"]
        # tail widths 1..tail_n and one past it (the register tile's), after 0, 1 and 4 panels
        widths = sorted({1, 2, 3, max(tail, 1), tail + 1} | set(range(1, tail + 2)))
        cases = []
        for i, w in enumerate(widths):
            n = [0, 1, 4][i % 3] * nr + w
            # whole vectors; a partial last panel; an odd panel count; many blocks of vectors
            m = [8 * mr, 5 * mr - 3, 3 * mr, 26 * mr + 1, 2 * mr + 5][i % 5]
            k = [7, kc + 9, 2 * kc + 1][i % 3]
            cases.append((m, k, n))
        for i, (m, k, n) in enumerate(cases):
            a, bw = rand((m, k), dtype, i), rand((k, n + nr), dtype, 100 + i)
            b = np.ascontiguousarray(bw[:, :n])
            apk = gemm_ops.pack(a, "a")
            for j, (alpha, beta, axis, act, threads, packed_b) in enumerate([
                    (1.0, 0.0, None, None, 1, False), (0.75, 0.5, 0, "relu", 2, False),
                    (1.0, 1.0, 1, "relu6", 1, True), (-0.5, 0.25, 0, None, 2, True),
                    (1.0, 0.0, 0, "relu", 1, False)]):
                c0 = rand((m, n + nr), dtype, 200 + 10 * i + j)
                bias_w = None if axis is None else rand((m,) if axis == 0 else (n + nr,),
                                                        dtype, 300 + 10 * i + j)
                bias = None if bias_w is None else (bias_w if axis == 0 else bias_w[:n].copy())
                wide = c0.copy()
                gemm(apk, bw, wide, alpha=alpha, beta=beta, bias=bias_w, bias_axis=axis or 0,
                     activation=act, num_threads=threads)
                got = np.ascontiguousarray(c0[:, :n])
                gemm(apk, gemm_ops.pack(b, "b") if packed_b else b, got, alpha=alpha,
                     beta=beta, bias=bias, bias_axis=axis or 0, activation=act,
                     num_threads=threads)
                np.testing.assert_array_equal(got, wide[:, :n], err_msg=f"m={m} k={k} n={n}")
                assert_close(got, oracle(a, b, alpha, beta, c0[:, :n], bias, axis or 0, act),
                             dtype, k=k, scale=1.0)


@pytest.mark.parametrize("isa", ISAS)
def test_tail_leaves_other_columns_and_rows_alone(isa):
    # C a view into a larger array: the tail's transposing write-out touches its own m x n only
    with gemm_ops.using_microkernel(isa):
        blk = gemm_ops.blocking(np.float32)
        m, k, n = 3 * blk["mr"] + 2, 40, blk["nr"] + 3
        a, b = rand((m, k), np.float32, 1), rand((k, n), np.float32, 2)
        big = rand((m + 4, n + 7), np.float32, 3)
        before = big.copy()
        view = big[2:2 + m, 3:3 + n]
        gemm(gemm_ops.pack(a, "a"), b, view, beta=1.0, activation="relu")
        want = np.maximum(before[2:2 + m, 3:3 + n].astype(np.float64)
                          + a.astype(np.float64) @ b, 0)
        assert_close(view, want, np.float32, k=k, scale=1.0)
        outside = np.ones(big.shape, bool)
        outside[2:2 + m, 3:3 + n] = False
        np.testing.assert_array_equal(big[outside], before[outside])
