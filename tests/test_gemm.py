"""nnlite.kernels.gemm / gemm_batched against numpy.matmul in float64 (the oracle).

Covers every micro-kernel family this CPU runs (generic C, AVX2, AVX-512), ragged sizes
(0, 1, primes, sizes straddling MR/NR/MC/KC/NC), both dtypes, alpha/beta, transposes, strided
and aliased operands, the bias/ReLU epilogue, bit-identical results for 1/2/3 threads and for
concurrent calls from Python threads, the NumPy fallback, and the error messages.
"""
import threading

import numpy as np
import pytest
from hypothesis import given, strategies as st

from conftest import assert_close

import nnlite
from nnlite.kernels import gemm, gemm_batched
from nnlite.kernels import gemm_ops

BUILT = gemm_ops._gemm is not None
ISAS = gemm_ops._gemm.available_isas() if BUILT else []
needs_ext = pytest.mark.skipif(not BUILT, reason="nnlite._gemm not built")
DTYPES = [np.float32, np.float64]


def rand(shape, dtype, seed):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(dtype)


def oracle(a, b, alpha=1.0, beta=0.0, c=None, bias=None, bias_axis=0, activation=None):
    """float64 result of act(alpha * a @ b + beta * c + bias) for 2-D a, b."""
    r = alpha * np.matmul(a.astype(np.float64), b.astype(np.float64))
    if beta != 0.0:
        r = r + beta * c.astype(np.float64)
    if bias is not None:
        bias = bias.astype(np.float64)
        r = r + (bias[:, None] if bias_axis == 0 else bias[None, :])
    if activation is not None:
        r = np.maximum(r, 0)
        if activation == "relu6":
            r = np.minimum(r, 6)
    return r


def check(actual, expected, dtype, k):
    assert actual.dtype == dtype
    assert_close(actual, expected, dtype, k=max(k, 1), scale=1.0)


@pytest.fixture(params=ISAS or ["numpy"])
def isa(request):
    """Run under each micro-kernel family (or the NumPy fallback when the extension is absent)."""
    if request.param == "numpy":
        yield "numpy"
        return
    with gemm_ops.using_microkernel(request.param):
        yield request.param


# ------------------------------------------------------------------------------ hand example
def test_hand_computed_2x2():
    a = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    b = np.array([[5.0, 6.0], [7.0, 8.0]], dtype=np.float32)
    np.testing.assert_array_equal(gemm(a, b), [[19.0, 22.0], [43.0, 50.0]])
    out = np.ones((2, 2), np.float32)
    gemm(a, b, out, alpha=2.0, beta=-1.0, bias=np.array([100.0, -200.0]), bias_axis=0,
         activation="relu")
    np.testing.assert_array_equal(out, [[137.0, 143.0], [0.0, 0.0]])


def test_kernels_gemm_is_the_function():
    assert nnlite.kernels.gemm is gemm_ops.gemm
    assert nnlite.kernels.gemm_batched is gemm_ops.gemm_batched


# ---------------------------------------------------------------------------- ragged sizes
RAGGED = [(0, 5, 7), (5, 0, 7), (5, 7, 0), (1, 1, 1), (1, 300, 1), (300, 1, 1), (1, 1, 300),
          (2, 3, 5), (7, 11, 13), (17, 47, 31), (31, 97, 67), (64, 64, 64), (97, 5, 211),
          (101, 257, 103), (256, 300, 53), (293, 97, 277)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_ragged_sizes_match_numpy(isa, dtype):
    for i, (m, n, k) in enumerate(RAGGED):
        a, b = rand((m, k), dtype, i), rand((k, n), dtype, 100 + i)
        check(gemm(a, b, num_threads=2), oracle(a, b), dtype, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_transposes_alpha_beta(isa, dtype, trans_a, trans_b):
    for i, (m, n, k) in enumerate([(1, 1, 1), (13, 29, 37), (67, 101, 130)]):
        a, b = rand((m, k), dtype, i), rand((k, n), dtype, 10 + i)
        c = rand((m, n), dtype, 20 + i)
        out = c.copy()
        r = gemm(a.T.copy() if trans_a else a, b.T.copy() if trans_b else b, out, alpha=-0.75,
                 beta=1.5, trans_a=trans_a, trans_b=trans_b, num_threads=2)
        assert r is out
        check(out, oracle(a, b, -0.75, 1.5, c), dtype, k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_transposed_b_packs_the_same_panels(isa, dtype):
    """A transposed B (float32: packed eight columns at a time through AVX 8 x 8 transposes)
    gives the bits of the same product with B contiguous: packing is an exact copy. Sizes with
    several full NR panels, a ragged last panel, K not a multiple of 8 and above KC."""
    for i, (m, n, k) in enumerate([(9, 96, 7), (33, 150, 301), (64, 200, 1000)]):
        a, b = rand((m, k), dtype, 30 + i), rand((k, n), dtype, 40 + i)
        bt = np.ascontiguousarray(b.T)
        ref = gemm(a, b, num_threads=2)
        for threads in (1, 2):
            got = gemm(a, bt, trans_b=True, num_threads=threads)
            np.testing.assert_array_equal(got, ref)
        check(ref, oracle(a, b), dtype, k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_major_a_packs_the_same_panels(isa, dtype):
    """A row-major A (float32, MR 6 or 8: packed through AVX 8 x 8 transposes, the 6-row
    panels with two zero rows and stores of 4 + 2 floats) gives the bits of the same product
    with A transposed in memory (packed element by element): packing is an exact copy. Row
    counts with a ragged last MR panel and several MC blocks, K not a multiple of 8 and above
    KC, so that panel ends and K-slice ends fall inside a transpose block."""
    for i, (m, n, k) in enumerate([(6, 20, 13), (50, 40, 301), (97, 33, 1000), (1100, 17, 9)]):
        a, b = rand((m, k), dtype, 50 + i), rand((k, n), dtype, 60 + i)
        at = np.ascontiguousarray(a.T)
        want = gemm(at, b, trans_a=True, num_threads=1)
        check(want, oracle(a, b), dtype, k)
        if isa == "numpy":
            continue                      # the BLAS may sum a transposed A in another order
        for threads in (1, 2):
            np.testing.assert_array_equal(gemm(a, b, num_threads=threads), want)
        np.testing.assert_array_equal(gemm(gemm_ops.pack(a, "a"), b), want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_read_in_place_gives_the_packed_bits(isa, dtype):
    """The SIMD micro-kernels read op(A) in place where nnl_tuning.h admits it: a column-major
    op(A) (a transposed array: a pixel-major product's channel-major image; AVX-512's tile
    always, AVX2's for K <= 32) and a row-major op(A) (rows further apart than K: a fused
    block's depthwise band; op(B) of at most 24 NR panels), their full MR-row panels in place
    and a ragged last one packed. The bits must be those of the same call on A pre-packed
    (always the packed path), with alpha, beta, a bias and ReLU6, for 1 and 2 threads,
    contiguous and strided. K straddles 32/33 and KC (several K slices read in place); M
    straddles MR and MC; N straddles the panel limit."""
    if isa == "numpy":
        pytest.skip("no packed operands without the extension")
    cases = [(49, 16, 96), (7, 32, 100), (50, 33, 48), (97, 160, 480), (1100, 24, 17),
             (9, 1000, 30), (300, 3, 200), (98, 576, 96), (8, 40, 400), (13, 64, 1200)]
    for i, (m, k, n) in enumerate(cases):
        image = rand((k, m + 11), dtype, 110 + i)
        rows = rand((m, k + 7), dtype, 150 + i)
        b, bias, c = rand((k, n), dtype, 120 + i), rand((n,), dtype, 130 + i), \
            rand((m, n), dtype, 140 + i)
        # (op(A) given as gemm takes it, trans_a)
        layouts = [(np.ascontiguousarray(image[:, :m]), True), (image[:, 5:5 + m], True),
                   (np.ascontiguousarray(rows[:, :k]), False), (rows[:, 2:2 + k], False)]
        for given, trans_a in layouts:
            a = given.T if trans_a else given
            want = c.copy()
            gemm(gemm_ops.pack(np.ascontiguousarray(a), "a"), b, want, alpha=0.5, beta=0.25,
                 bias=bias, bias_axis=1, activation="relu6")
            check(want, oracle(a, b, 0.5, 0.25, c, bias, 1, "relu6"), dtype, k)
            for threads in (1, 2):
                out = c.copy()
                gemm(given, b, out, alpha=0.5, beta=0.25, trans_a=trans_a, bias=bias,
                     bias_axis=1, activation="relu6", num_threads=threads)
                np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_b_read_in_place_gives_the_packed_bits(isa, dtype):
    """Few rows and a shallow K (a pointwise conv at batch 1): a row-major B is read in place
    by the micro-kernels where the family's panel rows are wide enough (AVX-512), only a ragged
    last panel packed; the bits must be those of the same call on B pre-packed (always the
    packed path), for 1 and 2 threads, a B with a row stride wider than N, and a batch.
    Shapes straddle the limits of nnl_tuning.h (M 64/65 for any K, M 128/129 from K 64 up,
    K 63/64 and 1024/1025; several K slices read in place) and NR (N = 1, 47, 48, 97, 1000);
    N = 1030 and 1100 put B's rows more than a page apart with sweeps of 432 and 2048 k steps,
    so the next panel's rows are prefetched (NNL_PAGE_BYTES, NNL_GEMM_PF_B_MIN_STEPS), also
    across a partial last K slice (300 = 256 + 44)."""
    if isa == "numpy":
        pytest.skip("no packed operands without the extension")
    cases = [(16, 32, 1000), (1, 3, 97), (7, 1, 47), (64, 128, 48), (65, 16, 97),
             (24, 129, 200), (5, 17, 1), (40, 600, 100), (64, 1024, 48), (24, 1025, 50),
             (128, 64, 97), (129, 64, 97), (100, 63, 50), (24, 144, 1030), (64, 300, 1100)]
    for i, (m, k, n) in enumerate(cases):
        a, wide = rand((m, k), dtype, 70 + i), rand((k, n + 5), dtype, 80 + i)
        bias, c = rand((m,), dtype, 90 + i), rand((m, n), dtype, 100 + i)
        for b in (np.ascontiguousarray(wide[:, :n]), wide[:, 3:3 + n]):
            want = c.copy()
            gemm(a, gemm_ops.pack(b, "b"), want, alpha=0.5, beta=0.25, bias=bias,
                 activation="relu")
            check(want, oracle(a, b, 0.5, 0.25, c, bias, 0, "relu"), dtype, k)
            for threads in (1, 2):
                out = c.copy()
                gemm(a, b, out, alpha=0.5, beta=0.25, bias=bias, activation="relu",
                     num_threads=threads)
                np.testing.assert_array_equal(out, want)
    a, b = rand((16, 32), dtype, 1), rand((3, 32, 500), dtype, 2)
    got = gemm_batched(gemm_ops.pack(a, "a"), b)
    for j in range(3):
        np.testing.assert_array_equal(got[j], gemm(a, gemm_ops.pack(b[j], "b")))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias_axis", [0, 1])
@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
def test_epilogue_bias_activation(isa, dtype, bias_axis, activation):
    for i, (m, n, k) in enumerate([(1, 1, 1), (9, 33, 17), (70, 50, 400)]):
        a, b = rand((m, k), dtype, i) * 3, rand((k, n), dtype, 10 + i) * 3
        bias = rand((m if bias_axis == 0 else n,), dtype, 30 + i) * 4
        c = rand((m, n), dtype, 40 + i)
        for beta in (0.0, 0.5):
            out = c.copy()
            gemm(a, b, out, beta=beta, bias=bias, bias_axis=bias_axis, activation=activation)
            check(out, oracle(a, b, 1.0, beta, c, bias, bias_axis, activation), dtype, k * 9)


def test_beta_zero_never_reads_out_and_relu_keeps_nan(isa):
    a = rand((20, 30), np.float32, 0)
    b = rand((30, 40), np.float32, 1)
    out = np.full((20, 40), np.nan, np.float32)
    gemm(a, b, out)                                    # beta == 0: the NaNs are not read
    check(out, oracle(a, b), np.float32, 30)
    a[3, 5] = np.nan                                   # row 3 of the product becomes NaN
    gemm(a, b, out, activation="relu6")
    assert np.isnan(out[3]).all() and not np.isnan(np.delete(out, 3, axis=0)).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "relu6"])
def test_activation_keeps_nan_and_negative_zero_and_clamps(isa, dtype, activation):
    """The epilogue's ReLU / ReLU6 lane by lane as the scalar rule: v < 0 -> +0, NaN stays
    NaN, -0 stays -0, v > 6 -> 6 (ReLU6); on full and partial vectors, bias or none."""
    m, k, n = 7, 3, 37
    a = rand((m, k), dtype, 0) * 8
    b = rand((k, n), dtype, 1) * 2
    a[1] = 0.0            # row 1: 0 * b = +0, times alpha -1: -0
    a[2, 1] = np.nan      # row 2: NaN
    for bias in (None, np.zeros(n, dtype)):
        out = np.empty((m, n), dtype)
        gemm(a, b, out, alpha=-1.0, bias=bias, bias_axis=1, activation=activation)
        v = -np.matmul(a.astype(np.float64), b.astype(np.float64))
        want = np.where(v < 0, 0.0, v)
        if activation == "relu6":
            want = np.where(want > 6, 6.0, want)
        assert np.isnan(out[2]).all() and not np.isnan(np.delete(out, 2, axis=0)).any()
        keep = np.delete(np.arange(m), 2)
        check(out[keep], want[keep], dtype, k * 9)
        # -0 kept without a bias (the bias +0 makes it +0: -0 + +0 = +0); +0 for v < 0
        zero_sign = np.signbit(out[1])
        assert zero_sign.all() if bias is None else not zero_sign.any()
        assert not np.signbit(out[0][want[0] == 0]).any()
        assert activation == "relu" or out[keep].max() == 6.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_k_zero_is_beta_out_plus_bias(isa, dtype):
    a, b = np.zeros((4, 0), dtype), np.zeros((0, 6), dtype)
    c = rand((4, 6), dtype, 0)
    bias = rand((6,), dtype, 1)
    out = c.copy()
    gemm(a, b, out, beta=2.0, bias=bias, bias_axis=1, activation="relu")
    np.testing.assert_allclose(out, np.maximum(2.0 * c + bias, 0), rtol=1e-6)
    np.testing.assert_array_equal(gemm(a, b), np.zeros((4, 6), dtype))


@pytest.mark.parametrize("bias_axis", [0, 1])
def test_write_out_rounds_as_one_fused_multiply_add_on_every_path(isa, bias_axis):
    # Every path writes act(fma(acc, alpha, beta * out) + bias), rounded as the SIMD
    # micro-kernels do: the packed kernels (8, 13 rows), the unpacked few-row path (1, 3 rows)
    # and K == 0 (a zero accumulator). With K = 1 and a = 1 the accumulator is b exactly, so a
    # float64 oracle rounds the same way (the product acc * alpha is exact in float64).
    if isa == "numpy":
        pytest.skip("NumPy fallback: no fused write-out")
    f32, f64 = np.float32, np.float64
    alpha, beta = f32(1 / 3), f32(-1.7)
    for m in (1, 3, 8, 13):
        n = 37
        for k in (0, 1):
            a = np.ones((m, k), f32)
            b = rand((k, n), f32, m) * 5
            c = rand((m, n), f32, 50 + m) * 5
            bias = rand((m if bias_axis == 0 else n,), f32, 70 + m)
            bb = bias[:, None] if bias_axis == 0 else bias[None, :]
            acc = np.broadcast_to(b[0] if k else f32(0), (m, n)).astype(f32)
            al = alpha if k else f32(1)        # K == 0: beta * out + bias, alpha unused
            fused = (acc.astype(f64) * f64(al) + (beta * c).astype(f64)).astype(f32)
            for activation in (None, "relu6"):
                want = fused + bb
                if activation:
                    want = np.minimum(np.maximum(want, f32(0)), f32(6))
                out = c.copy()
                gemm(a, b, out, alpha=float(alpha), beta=float(beta), bias=bias,
                     bias_axis=bias_axis, activation=activation)
                np.testing.assert_array_equal(out, want, err_msg=f"m={m} k={k} {activation}")


# --------------------------------------------------------------- blocks, threads, determinism
def _multi_block_shape(dtype):
    """A shape that spans several MC, KC and NC blocks plus ragged MR/NR edges."""
    if not BUILT:
        return 130, 333, 150
    blk = gemm_ops.info()[np.dtype(dtype).name]
    return blk["mc"] + blk["mr"] + 3, blk["nc"] + blk["nr"] + 5, 2 * blk["kc"] + 7


@pytest.mark.parametrize("dtype", DTYPES)
def test_results_independent_of_thread_count(isa, dtype):
    # multi-block; column-split units; row-split units (one NR panel); serial (tiny)
    # (49, 256, 832): 24-row units whose last group takes the 1-row partial panel (nnl_groups)
    shapes = [_multi_block_shape(dtype), (64, 1000, 200), (37, 77, 500), (250, 7, 5000),
              (256, 200, 300), (5, 3, 2), (49, 256, 832), (256, 49, 300)]
    for i, (m, n, k) in enumerate(shapes):
        a, b = rand((m, k), dtype, i), rand((k, n), dtype, 50 + i)
        bias = rand((m,), dtype, 60 + i)
        c = rand((m, n), dtype, 70 + i)
        outs = []
        for nt in (1, 2, 3):
            out = c.copy()
            gemm(a, b, out, alpha=0.5, beta=0.25, bias=bias, activation="relu", num_threads=nt)
            outs.append(out)
        check(outs[0], oracle(a, b, 0.5, 0.25, c, bias, 0, "relu"), dtype, k)
        for o in outs[1:]:
            np.testing.assert_array_equal(o, outs[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_few_rows_unpacked_path(isa, dtype, trans_a, trans_b):
    # M <= 4 runs without packing (a classifier at batch 1): both layouts of op(B), K not a
    # multiple of the 16 partial sums, N spanning several 128-column blocks, full epilogue,
    # column-bias and row-bias, threads split columns without changing any element
    for i, (m, n, k) in enumerate([(1, 1000, 1024), (2, 129, 17), (3, 300, 5), (4, 257, 1),
                                   (1, 1, 300), (4, 5000, 40)]):
        a = rand((k, m) if trans_a else (m, k), dtype, i)
        b = rand((n, k) if trans_b else (k, n), dtype, 20 + i)
        A, B = (a.T if trans_a else a), (b.T if trans_b else b)
        c = rand((m, n), dtype, 40 + i)
        for bias_axis, bias in ((1, rand((n,), dtype, 60 + i)), (0, rand((m,), dtype, 80 + i))):
            outs = []
            for nt in (1, 2, 3):
                out = c.copy()
                gemm(a, b, out, alpha=0.5, beta=-1.5, trans_a=trans_a, trans_b=trans_b,
                     bias=bias, bias_axis=bias_axis, activation="relu6", num_threads=nt)
                outs.append(out)
            check(outs[0], oracle(A, B, 0.5, -1.5, c, bias, bias_axis, "relu6"), dtype, k)
            for o in outs[1:]:
                np.testing.assert_array_equal(o, outs[0])
    # batched few-row products, one call
    a, b = rand((3, 2, 70), dtype, 1), rand((3, 70, 300), dtype, 2)
    check(gemm_batched(a, b), np.stack([oracle(a[j], b[j]) for j in range(3)]), dtype, 70)


@pytest.mark.parametrize("dtype", DTYPES)
def test_few_rows_dot_blocks_tails_and_same_bits_in_any_block(isa, dtype):
    # x @ W.T with W's rows contiguous (a classifier) runs the family's dot micro-kernel on
    # blocks of m rows x nb columns (nb from the registers: 1 to 8): every row count, every
    # column remainder of those blocks, K below / at / past the 16 partial sums and with a
    # tail in each of their vectors. An element is one sum in one order wherever it falls:
    # the same bits computed alone (one row, one column) as inside any block.
    for k in (1, 7, 15, 16, 17, 40, 48):
        a = rand((4, k), dtype, k)
        w = rand((19, k), dtype, 100 + k)
        whole = {}
        for m in (1, 2, 3, 4):
            for n in range(1, 20):
                got = gemm(a[:m], w[:n], trans_b=True)
                check(got, oracle(a[:m], w[:n].T), dtype, k)
                for i in range(m):
                    for j in range(n):
                        whole.setdefault((i, j), got[i, j])
                        assert got[i, j].tobytes() == whole[(i, j)].tobytes(), (k, m, n, i, j)


@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_operands_match_per_call_packing(isa, dtype):
    # an operand packed once (constant weights) gives bit-identical results to per-call packing
    # (same panels, same K slices) for any side, thread count and ragged/multi-block shape;
    # a packed B from a transposed source; shared by every item of a batched call
    mb = _multi_block_shape(dtype)
    for i, (m, n, k) in enumerate([(5, 7, 3), (49, 384, 1000), (130, 97, 500), mb]):
        a, b = rand((m, k), dtype, i), rand((k, n), dtype, 10 + i)
        bias, c = rand((m,), dtype, 20 + i), rand((m, n), dtype, 30 + i)
        want = []
        for nt in (1, 2):
            out = c.copy()
            gemm(a, b, out, alpha=0.5, beta=0.25, bias=bias, activation="relu", num_threads=nt)
            want.append(out)
        check(want[0], oracle(a, b, 0.5, 0.25, c, bias, 0, "relu"), dtype, k)
        bt = np.ascontiguousarray(b.T)
        for pa, pb in ((gemm_ops.pack(a, "a"), b), (a, gemm_ops.pack(b, "b")),
                       (gemm_ops.pack(a, "a"), gemm_ops.pack(bt, "b", trans=True))):
            for nt, w in zip((1, 2), want):
                out = c.copy()
                gemm(pa, pb, out, alpha=0.5, beta=0.25, bias=bias, activation="relu",
                     num_threads=nt)
                if isinstance(pb, gemm_ops.PackedOperand) and pb.matrix.strides != b.strides:
                    check(out, w, dtype, k)       # few rows read the (transposed) source
                else:
                    np.testing.assert_array_equal(out, w)
    a, b = rand((64, 70), dtype, 1), rand((3, 70, 90), dtype, 2)
    got = gemm_batched(gemm_ops.pack(a, "a"), b)
    np.testing.assert_array_equal(got, gemm_batched(a[None], b))


@needs_ext
def test_packed_operand_errors_and_other_family():
    a, b = rand((20, 30), np.float32, 0), rand((30, 40), np.float32, 1)
    pa = gemm_ops.pack(a, "a")
    with pytest.raises(ValueError, match="side 'a' passed as 'b'"):
        gemm(b.T.copy(), pa)
    with pytest.raises(ValueError, match="trans_a must be False"):
        gemm(pa, b, trans_a=True)
    with pytest.raises(ValueError, match="side must be"):
        gemm_ops.pack(a, "c")
    with pytest.raises(ValueError, match="inner sizes"):
        gemm(pa, rand((31, 4), np.float32, 2))
    # packed for one micro-kernel family, called under another: packs per call instead
    for name in ISAS:
        with gemm_ops.using_microkernel(name):
            check(gemm(pa, b), oracle(a, b), np.float32, 30)


def test_concurrent_calls_from_python_threads():
    dtype = np.float32
    jobs = [(rand((m, k), dtype, i), rand((k, n), dtype, 9 + i))
            for i, (m, n, k) in enumerate([(300, 290, 280), (64, 900, 300), (129, 257, 513),
                                           (7, 11, 13)])]
    expected = [gemm(a, b, num_threads=2) for a, b in jobs]
    results = [[None] * 3 for _ in jobs]
    errors = []

    def work(i):
        try:
            for r in range(3):
                a, b = jobs[i]
                results[i][r] = gemm(a, b, num_threads=2)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, exp in enumerate(expected):
        check(exp, oracle(*jobs[i]), dtype, jobs[i][0].shape[1])
        for r in results[i]:
            np.testing.assert_array_equal(r, exp)


# ------------------------------------------------------------------------- strides, aliasing
def test_strided_and_negative_stride_operands(isa):
    base_a = rand((90, 160), np.float64, 1)
    base_b = rand((170, 140), np.float64, 2)
    a = base_a[::2, ::-3]                              # (45, 54), negative column stride
    b = base_b[5:5 + 54 * 3:3, 1::2]                   # (54, 70)
    check(gemm(a, b), oracle(a, b), np.float64, 54)
    f = np.asfortranarray(rand((33, 44), np.float32, 3))
    g = np.asfortranarray(rand((44, 55), np.float32, 4))
    check(gemm(f, g), oracle(f, g), np.float32, 44)
    z = np.broadcast_to(np.float32(0.5), (44, 55))     # zero strides
    check(gemm(f, z), oracle(f, np.asarray(z)), np.float32, 44)
    odd = np.frombuffer(np.zeros(33 * 44 * 4 + 1, np.uint8)[1:].tobytes(), np.float32)
    odd = odd.reshape(33, 44)                          # may be unaligned; still correct
    check(gemm(odd, g), oracle(odd, g), np.float32, 44)


def test_out_as_slice_and_aliasing(isa):
    a = rand((30, 40), np.float32, 1)
    b = rand((40, 50), np.float32, 2)
    big = rand((40, 120), np.float32, 3)
    before = big.copy()
    view = big[5:35, 10:60]                            # row stride 120: written in place
    gemm(a, b, view, beta=1.0)
    check(big[5:35, 10:60], oracle(a, b, 1.0, 1.0, before[5:35, 10:60]), np.float32, 40)
    big[5:35, 10:60] = before[5:35, 10:60]
    np.testing.assert_array_equal(big, before)         # nothing outside the view moved
    colstep = big[:30, ::2][:, :50]                    # non-unit column stride
    ref = oracle(a, b, 1.0, 2.0, colstep.copy())
    gemm(a, b, colstep, beta=2.0)
    check(colstep, ref, np.float32, 40)
    sq = rand((40, 40), np.float64, 4)
    expect = oracle(sq, sq, 1.0, 1.0, sq)
    gemm(sq, sq, sq, beta=1.0)                         # out aliases both inputs
    check(sq, expect, np.float64, 40)


@pytest.mark.parametrize("dtype", DTYPES)
def test_column_major_out_written_in_place(isa, dtype):
    # out a transposed view (unit stride along M, e.g. a narrow product run transposed into
    # out.T): the kernel writes it in place through its transposed tile write-out; the same
    # bits as a row-major out, for 1-3 threads, every epilogue, ragged tiles (m < MR, n < NR,
    # a column stride larger than M), the few-row path (M <= 4), K = 0 and a pre-packed B
    mb_m, _, mb_k = _multi_block_shape(dtype)         # several MC row groups and K slices
    shapes = [(49, 300, 97), (8, 48, 48), (13, 7, 101), (3, 129, 17), (1, 40, 9), (6, 0, 5),
              (57, 11, 1), (mb_m, mb_k, 101)]            # (m, k, n)
    for i, (m, k, n) in enumerate(shapes):
        a, b = rand((m, k), dtype, i), rand((k, n), dtype, 10 + i)
        c = rand((m, n), dtype, 20 + i)
        epilogues = [(-0.75, "relu6")] if i == len(shapes) - 1 else [(0.0, "relu"),
                                                                      (-0.75, "relu6"),
                                                                      (1.0, None)]
        for bias_axis, bias in ((1, rand((n,), dtype, 30 + i)), (0, rand((m,), dtype, 40 + i))):
            for beta, act in epilogues:
                want = c.copy()
                gemm(a, b, want, alpha=1.5, beta=beta, bias=bias, bias_axis=bias_axis,
                     activation=act)
                check(want, oracle(a, b, 1.5, beta, c, bias, bias_axis, act), dtype, k)
                for nt in (1, 2, 3):
                    big = rand((n, m + 3), dtype, 50 + i)      # column stride m + 3 > M
                    before = big.copy()
                    big[:, 1:m + 1] = c.T
                    view = big[:, 1:m + 1].T                   # (m, n), strides (1, m + 3)
                    gemm(a, b, view, alpha=1.5, beta=beta, bias=bias, bias_axis=bias_axis,
                         activation=act, num_threads=nt)
                    np.testing.assert_array_equal(view, want)
                    np.testing.assert_array_equal(big[:, 0], before[:, 0])   # untouched
                    np.testing.assert_array_equal(big[:, m + 1:], before[:, m + 1:])
    # the inference plan's narrow product: out.T = x.T @ (weights packed as B), bias per column
    w, x = rand((200, 70), dtype, 1), rand((70, 49), dtype, 2)
    bias = rand((200,), dtype, 3)
    out = np.empty((200, 49), dtype)
    gemm(x, gemm_ops.pack(np.ascontiguousarray(w), "b", trans=True), out.T, trans_a=True,
         bias=bias, bias_axis=1, activation="relu")
    check(out, oracle(w, x, bias=bias, bias_axis=0, activation="relu"), dtype, 70)
    if BUILT and isa != "numpy":
        # the kernel itself takes the column-major c (no copy through a row-major temporary)
        cm = np.zeros((1, 49, 200), dtype).transpose(0, 2, 1)
        gemm_ops._gemm.gemm_strided(w[None], x[None], cm, 1.0, 0.0, None, 0, 0, 1,
                                    gemm_ops._isa())
        check(cm[0], oracle(w, x), dtype, 70)
        with pytest.raises(ValueError, match="unit stride along one of its last two axes"):
            gemm_ops._gemm.gemm_strided(w[None], x[None, :, ::2][:, :, :20],
                                        np.zeros((1, 200, 40), dtype)[:, :, ::2], 1.0, 0.0,
                                        None, 0, 0, 1, gemm_ops._isa())


@given(data=st.data())
def test_property_random_layouts(data):
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    m = data.draw(st.integers(0, 40), label="M")
    n = data.draw(st.integers(0, 70), label="N")
    k = data.draw(st.integers(0, 50), label="K")
    ta = data.draw(st.booleans(), label="trans_a")
    tb = data.draw(st.booleans(), label="trans_b")
    alpha = data.draw(st.sampled_from([1.0, -2.0, 0.5]), label="alpha")
    beta = data.draw(st.sampled_from([0.0, 1.0, -0.5]), label="beta")
    axis = data.draw(st.sampled_from([None, 0, 1]), label="bias_axis")
    act = data.draw(st.sampled_from([None, "relu", "relu6"]), label="activation")
    nt = data.draw(st.integers(1, 3), label="num_threads")
    isa_name = data.draw(st.sampled_from(ISAS or [None]), label="isa")
    a, b = rand((m, k), dtype, 1), rand((k, n), dtype, 2)
    c = rand((m, n), dtype, 3)
    bias = None if axis is None else rand((m if axis == 0 else n,), dtype, 4)
    out = c.copy()
    args = (a.T.copy().T if not ta else a.T.copy(), b if not tb else b.T.copy())
    kw = dict(alpha=alpha, beta=beta, trans_a=ta, trans_b=tb, bias=bias,
              bias_axis=axis or 0, activation=act, num_threads=nt)
    if isa_name is None:
        gemm(*args, out, **kw)
    else:
        with gemm_ops.using_microkernel(isa_name):
            gemm(*args, out, **kw)
    check(out, oracle(a, b, alpha, beta, c, bias, axis or 0, act), dtype, k)


# -------------------------------------------------------------------------------- batched
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 3, 4])
def test_batched_matches_loop(isa, dtype, batch):
    m, n, k = 19, 45, 37
    a, b = rand((batch, m, k), dtype, 1), rand((batch, k, n), dtype, 2)
    bias = rand((batch, m), dtype, 3)
    c = rand((batch, m, n), dtype, 4)
    out = c.copy()
    gemm_batched(a, b, out, alpha=2.0, beta=-1.0, bias=bias, activation="relu", num_threads=2)
    for i in range(batch):
        check(out[i], oracle(a[i], b[i], 2.0, -1.0, c[i], bias[i], 0, "relu"), dtype, k)
    one = gemm_batched(a, b, num_threads=1)
    two = gemm_batched(a, b, num_threads=2)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_items_taller_than_mc(isa, dtype):
    # each item more rows than an MC block: one thread runs one unit per item, its rows packed
    # one MC block at a time against each B chunk (gemm_nest); threads spread the items
    mc = gemm_ops.blocking(dtype)["mc"]
    m, n, k = 2 * mc + 7, 53, 70
    a, b = rand((3, m, k), dtype, 5), rand((3, k, n), dtype, 6)
    bias, c = rand((3, m), dtype, 7), rand((3, m, n), dtype, 8)
    outs = {}
    for nt in (1, 2, 3):
        out = c.copy()
        gemm_batched(a, b, out, alpha=0.5, beta=2.0, bias=bias, activation="relu",
                     num_threads=nt)
        outs[nt] = out
    for i in range(3):
        check(outs[1][i], oracle(a[i], b[i], 0.5, 2.0, c[i], bias[i], 0, "relu"), dtype, k)
    np.testing.assert_array_equal(outs[2], outs[1])
    np.testing.assert_array_equal(outs[3], outs[1])


def test_batched_broadcast_and_shared_bias(isa):
    a = rand((1, 8, 12), np.float32, 1)                # shared by every item
    b = rand((5, 12, 30), np.float32, 2)
    bias = rand((30,), np.float32, 3)
    out = gemm_batched(a, b, bias=bias, bias_axis=1, trans_a=False)
    for i in range(5):
        check(out[i], oracle(a[0], b[i], bias=bias, bias_axis=1), np.float32, 12)
    bt = gemm_batched(b, a, trans_a=True, trans_b=True)     # (5, 30, 8)
    for i in range(5):
        check(bt[i], oracle(b[i].T, a[0].T), np.float32, 12)


# ------------------------------------------------------------------------- fallback & info
def test_numpy_fallback_matches_kernel(monkeypatch):
    a, b = rand((23, 31), np.float64, 1), rand((31, 17), np.float64, 2)
    bias = rand((17,), np.float64, 3)
    c = rand((23, 17), np.float64, 4)
    fast = gemm(a, b, c.copy(), alpha=0.5, beta=2.0, bias=bias, bias_axis=1, activation="relu6")
    monkeypatch.setattr(gemm_ops, "_gemm", None)
    slow = gemm(a, b, c.copy(), alpha=0.5, beta=2.0, bias=bias, bias_axis=1,
                activation="relu6")
    check(slow, oracle(a, b, 0.5, 2.0, c, bias, 1, "relu6"), np.float64, 31)
    check(fast, slow, np.float64, 31)
    batched = gemm_batched(a[None], b[None], bias=bias[None], bias_axis=1)
    check(batched[0], oracle(a, b, bias=bias, bias_axis=1), np.float64, 31)
    assert gemm_ops.info()["extension"] is False


@needs_ext
def test_info_and_microkernel_switch():
    info = gemm_ops.info()
    assert info["microkernel"] in ISAS and "generic" in info["available"]
    for dt in ("float32", "float64"):
        blk = info[dt]
        assert blk["mc"] % blk["mr"] == 0 and blk["nc"] % blk["nr"] == 0
    with gemm_ops.using_microkernel("generic"):
        assert gemm_ops.info()["microkernel"] == "generic"
    with pytest.raises(ValueError, match="unknown GEMM micro-kernel 'sse9'"):
        with gemm_ops.using_microkernel("sse9"):
            pass


# ------------------------------------------------------------------------------ bad input
def test_error_messages():
    a = np.zeros((3, 4), np.float32)
    b = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"a must be 2-D, got shape \(3, 4, 1\)"):
        gemm(a[..., None], b)
    with pytest.raises(TypeError, match="a has dtype int64"):
        gemm(np.zeros((3, 4), np.int64), b)
    with pytest.raises(TypeError, match="a has dtype float32 and b has dtype float64"):
        gemm(a, b.astype(np.float64))
    with pytest.raises(ValueError, match=r"op\(a\)=a has shape \(3, 4\) and op\(b\)=b.T has "
                                         r"shape \(5, 4\); inner sizes 4 and 5 differ"):
        gemm(a, b, trans_b=True)
    with pytest.raises(ValueError, match=r"bias has shape \(4,\); with bias_axis=0 it must be "
                                         r"\(3,\)"):
        gemm(a, b, bias=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="bias_axis must be 0"):
        gemm(a, b, bias=np.zeros(5, np.float32), bias_axis=2)
    with pytest.raises(TypeError, match="bias has dtype complex128"):
        gemm(a, b, bias=np.zeros(3, complex))
    with pytest.raises(ValueError, match="activation must be None, 'relu' or 'relu6', got 'gelu'"):
        gemm(a, b, activation="gelu")
    with pytest.raises(ValueError, match="beta=1.0 needs out="):
        gemm(a, b, beta=1.0)
    with pytest.raises(ValueError, match=r"out has shape \(5, 3\); expected \(3, 5\)"):
        gemm(a, b, np.zeros((5, 3), np.float32))
    with pytest.raises(TypeError, match="out has dtype float64; expected float32"):
        gemm(a, b, np.zeros((3, 5), np.float64))
    with pytest.raises(TypeError, match="out must be a numpy.ndarray, got list"):
        gemm(a, b, [[0.0] * 5] * 3)
    ro = np.zeros((3, 5), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        gemm(a, b, ro)
    with pytest.raises(ValueError, match="num_threads must be >= 1, got 0"):
        gemm(a, b, num_threads=0)
    with pytest.raises(TypeError, match="num_threads must be an int or None, got True"):
        gemm(a, b, num_threads=True)
    with pytest.raises(TypeError, match="alpha must be a real number, got 'x'"):
        gemm(a, b, alpha="x")
    with pytest.raises(ValueError, match=r"gemm_batched: a must be 3-D, got shape \(3, 4\)"):
        gemm_batched(a, b)
    with pytest.raises(ValueError, match=r"batch sizes of a \(2\) and b \(3\) differ"):
        gemm_batched(np.zeros((2, 3, 4)), np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match=r"bias has shape \(2, 3\); with bias_axis=0 it must be "
                                         r"\(3,\) or \(4, 3\)"):
        gemm_batched(np.zeros((4, 3, 4)), np.zeros((4, 4, 5)), bias=np.zeros((2, 3)))


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_parts_on_the_tile_grid_are_the_whole_products_bits(dtype, isa):
    """``nnl_sgemm_part`` (gemm_strided's part=): blocks of C on the MR x NR tile grid, computed
    one by one on the calling thread (as the fused block's team cuts its products), put
    together give the whole call's bits, row-major and column-major C, with pre-packed
    operands, bias and ReLU6; nothing outside a block is written; a block off the grid, or a
    row block of a product of <= 4 rows (no tiles), is refused."""
    g = gemm_ops._gemm
    code = g.isa_code(isa)
    bl = g.blocking(code, np.dtype(dtype).itemsize)
    mr, nr = bl["mr"], bl["nr"]
    M, N, K = 3 * mr + 5, 2 * nr + 7, bl["kc"] + 9           # two K slices, ragged tiles
    a, b = rand((M, K), dtype, 1), rand((K, N), dtype, 2)
    bias = rand((1, M), dtype, 3)
    es = np.dtype(dtype).itemsize
    apk = np.empty(g.packed_size(0, M, K, code, es), dtype)
    bpk = np.empty(g.packed_size(1, K, N, code, es), dtype)
    g.pack(a, 0, code, apk)
    g.pack(b, 1, code, bpk)
    for colmajor in (False, True):
        def fresh():
            c = np.full((1, N, M), 7.0, dtype).transpose(0, 2, 1) if colmajor else \
                np.full((1, M, N), 7.0, dtype)
            c[...] = rand((1, M, N), dtype, 4)
            return c
        whole = fresh()
        g.gemm_strided(a[None], b[None], whole, 1.0, 1.0, bias, 1, 2, 1, code, apk, bpk)
        assert_close(whole[0], np.clip(oracle(a, b, beta=1.0, c=fresh()[0], bias=bias[0]),
                                       0, 6), dtype, K)
        pieced = fresh()
        cuts_m, cuts_n = (0, mr, 3 * mr, M), (0, nr, N)
        for m0, m1 in zip(cuts_m, cuts_m[1:]):
            for n0, n1 in zip(cuts_n, cuts_n[1:]):
                one = fresh()
                g.gemm_strided(a[None], b[None], one, 1.0, 1.0, bias, 1, 2, 1, code, apk, bpk,
                               part=(m0, m1, n0, n1))
                outside = np.ones((M, N), bool)
                outside[m0:m1, n0:n1] = False
                np.testing.assert_array_equal(one[0][outside], fresh()[0][outside])
                pieced[0, m0:m1, n0:n1] = one[0, m0:m1, n0:n1]
        np.testing.assert_array_equal(pieced, whole)
    c = fresh()
    with pytest.raises(ValueError, match=r"part rows 1:5, columns 0:7 of a \(%d, %d\)" % (M, N)):
        g.gemm_strided(a[None], b[None], c, 1.0, 0.0, None, 0, 0, 1, code, part=(1, 5, 0, 7))
    if nr > 1:
        with pytest.raises(ValueError, match="part rows 0:5, columns 1:7"):
            g.gemm_strided(a[None], b[None], c, 1.0, 0.0, None, 0, 0, 1, code,
                           part=(0, 5, 1, 7))
    with pytest.raises(ValueError, match="part rows 0:5, columns 0:%d" % (N + 1)):
        g.gemm_strided(a[None], b[None], c, 1.0, 0.0, None, 0, 0, 1, code,
                       part=(0, 5, 0, N + 1))
    with pytest.raises(ValueError, match="a part is of one product, got 2 batch items"):
        g.gemm_strided(a[None], b[None], np.zeros((2, M, N), dtype), 1.0, 0.0, None, 0, 0, 1,
                       code, part=(0, M, 0, N))
    # a product of 3 rows has no tiles: only every row at once, any columns
    a3 = a[:3]
    c3, whole3 = np.zeros((1, 3, N), dtype), np.zeros((1, 3, N), dtype)
    g.gemm_strided(a3[None], b[None], whole3, 1.0, 0.0, None, 0, 0, 1, code)
    g.gemm_strided(a3[None], b[None], c3, 1.0, 0.0, None, 0, 0, 1, code, part=(0, 3, 0, 5))
    g.gemm_strided(a3[None], b[None], c3, 1.0, 0.0, None, 0, 0, 1, code, part=(0, 3, 5, N))
    np.testing.assert_array_equal(c3, whole3)
    with pytest.raises(ValueError, match="part rows 0:2"):
        g.gemm_strided(a3[None], b[None], c3, 1.0, 0.0, None, 0, 0, 1, code, part=(0, 2, 0, N))
