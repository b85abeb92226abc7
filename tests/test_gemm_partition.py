"""The GEMM's work units on a thread team (csrc/gemm_driver.c: nnl_partition, nnl_plan_units).

One product on a team is cut into units by an estimate of their finishing time (balance of the
units against each unit's re-packing of its A rows and B columns). The tests read the plan
through ``_gemm.work_units``: it is a valid cut (MR/NR multiples, at most MC rows, enough
units), the small-N layers no longer get units of very unequal work, and the shapes below
provably take both row and column splits; then the products are checked against a float64
oracle and bit for bit across thread counts (each element is reduced in an order fixed by the
shape alone), with B row-major, transposed and strided (the three packers), partial NR panels
and several K slices.
"""
import numpy as np
import pytest

from conftest import assert_close

from nnlite.kernels import gemm, gemm_ops

BUILT = gemm_ops._gemm is not None
pytestmark = pytest.mark.skipif(not BUILT, reason="nnlite._gemm not built")
ISAS = gemm_ops._gemm.available_isas() if BUILT else []

# (M, N, K): 1x1 convs of CNN inference at batch 1 with odd sizes: N = 14x14 + 1 pixels (a
# 5-column NR tail on 8 x 48 tiles), N = 56x56 with few output channels, M not an MR multiple,
# K spanning several KC slices, a tall one; all above the single-thread cut-off.
SHAPES = [(203, 197, 517), (96, 3136, 64), (1000, 196, 130), (37, 1501, 301), (24, 3136, 144),
          (256, 196, 1024)]
THREADS = (2, 3, 4, 7)


def rand(shape, dtype, seed):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(dtype)


def units(isa, dtype, m, n, k, nt, pack_a=True, pack_b=True):
    return gemm_ops._gemm.work_units(gemm_ops._gemm.isa_code(isa), np.dtype(dtype).itemsize,
                                     1, m, n, k, nt, pack_a, pack_b)


def cost(m, n, k, mu, nu, nr, nt):
    """Finishing time of the units (multiply-adds, partial panels rounded up to 8 columns)
    scheduled greedily in order on nt threads; packing left out."""
    busy = [0] * nt
    for r0 in range(0, m, mu):
        for c0 in range(0, n, nu):
            cols = min(n, c0 + nu) - c0
            eff = cols // nr * nr + -(-(cols % nr) // 8) * 8
            i = busy.index(min(busy))
            busy[i] += (min(m, r0 + mu) - r0) * k * eff
    return max(busy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", ISAS)
def test_plan_is_a_valid_cut_with_both_directions(isa, dtype):
    blk = gemm_ops._gemm.blocking(gemm_ops._gemm.isa_code(isa), np.dtype(dtype).itemsize)
    mr, nr = blk["mr"], blk["nr"]
    seen = set()
    for m, n, k in SHAPES:
        serial = units(isa, dtype, m, n, k, 1)
        # one thread: one unit (its rows packed one MC block at a time by the nest)
        assert serial["mu"] % mr == 0 and serial["mu"] >= m and serial["nu"] >= n
        for nt in THREADS:
            for pack_a, pack_b in [(True, True), (False, True), (True, False)]:
                u = units(isa, dtype, m, n, k, nt, pack_a, pack_b)
                mu, nu = u["mu"], u["nu"]
                # row groups taller than MC (swept one MC block at a time) only where the
                # call packs both operands, or cuts a pre-packed A's rows one group a thread
                tall = (pack_a and pack_b) or (not pack_a and m >= n)
                assert mu % mr == 0 and 0 < mu <= (m + mr if tall else blk["mc"])
                assert nu % nr == 0 and nu > 0
                ru, cu = -(-m // mu), -(-n // nu)
                # at least two units a thread for the dynamic schedule, one when the call
                # packs A itself (each unit of a row group packs its rows of A again) or when
                # a pre-packed A is the larger operand (M >= N: each thread its own rows)
                least = (1 if pack_a or (pack_b and m >= n) else 2) * nt
                assert min(least, -(-m // mr) * -(-n // nr)) <= ru * cu <= 8 * nt
                seen.add((ru > 1, cu > 1))
    assert (True, False) in seen and (False, True) in seen


@pytest.mark.parametrize("isa", ISAS)
def test_plan_balances_few_column_panels(isa):
    # a 1x1 conv at 14x14 (N = 196): the units' work on 2 threads must end within 10% of a
    # perfect split (the fixed rule gave 3-panel and 1 1/3-panel units: 1.13x on 8 x 48 tiles)
    blk = gemm_ops._gemm.blocking(gemm_ops._gemm.isa_code(isa), 4)
    for m, n, k in [(256, 196, 1024), (1024, 196, 256), (192, 196, 480)]:
        u = units(isa, np.float32, m, n, k, 2)
        nr = blk["nr"]
        eff = n // nr * nr + -(-(n % nr) // 8) * 8
        assert cost(m, n, k, u["mu"], u["nu"], nr, 2) <= 1.10 * m * k * eff / 2, (m, n, k, u)


@pytest.mark.parametrize("isa", ISAS)
def test_large_product_packing_both_operands_is_one_unit_per_thread(isa):
    # 2048^3 on two threads was six units of MC rows, each packing all of B (5% of the time);
    # now each thread takes one unit taller than MC (or all rows and half the columns), whose
    # blocks of A sweep each B chunk it packs once
    blk = gemm_ops._gemm.blocking(gemm_ops._gemm.isa_code(isa), 4)
    for m, n, k in [(2048, 2048, 2048), (1536, 1536, 1536), (3 * blk["mc"] + 5, 700, 300)]:
        for nt in (1, 2):
            u = units(isa, np.float32, m, n, k, nt)
            assert -(-m // u["mu"]) * -(-n // u["nu"]) == nt, (m, n, k, nt, u)
            assert u["mu"] > blk["mc"] or u["nu"] >= n, (m, n, k, nt, u)


@pytest.mark.parametrize("isa", ISAS)
def test_a_packed_per_call_is_packed_once_per_row_group(isa):
    # a pointwise conv's weights as they are (A packed by the call): 1 MB of weights at 14x14
    # were cut into six units of two column panels, each row group's A packed three times
    for m, n, k in [(256, 196, 1024), (1024, 196, 256)]:
        u = units(isa, np.float32, m, n, k, 2, True, True)
        assert u["nu"] >= n, (m, n, k, u)


@pytest.mark.parametrize("isa", ISAS)
def test_pre_packed_a_larger_than_b_is_cut_by_rows(isa):
    # the convs of a 14x14 map with their weights pre-packed (M >= N): one unit a thread, rows
    # cut, so that each thread streams only its share of the weights (two units a thread cut
    # 2 x 2 and every thread read all of them); B packed by the call either way
    for m, n, k in [(256, 196, 1024), (1024, 196, 256), (256, 196, 2304), (512, 196, 1024)]:
        for nt in (2, 4):
            u = units(isa, np.float32, m, n, k, nt, False, True)
            assert u["nu"] >= n and -(-m // u["mu"]) == nt, (m, n, k, nt, u)
    # more columns than rows (B the larger operand): two units a thread, as before
    for m, n, k in [(512, 784, 128), (256, 3136, 64), (128, 784, 512)]:
        u = units(isa, np.float32, m, n, k, 2, False, True)
        assert -(-m // u["mu"]) * -(-n // u["nu"]) >= 4, (m, n, k, u)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", ISAS)
def test_row_cut_of_pre_packed_a_matches_oracle_and_threads(isa, dtype):
    # the row cut's products (A pre-packed, M >= N, an odd row count and a column tail)
    # against float64 and bit for bit across thread counts
    with gemm_ops.using_microkernel(isa):
        for i, (m, n, k) in enumerate([(203, 197, 517), (1000, 196, 130)]):
            a, b = rand((m, k), dtype, 40 + i), rand((k, n), dtype, 50 + i)
            bias = rand((m,), dtype, 60 + i)
            packed = gemm_ops.pack(a, "a")
            ref = np.maximum(a.astype(np.float64) @ b.astype(np.float64)
                             + bias.astype(np.float64)[:, None], 0)
            outs = {}
            for nt in (1,) + THREADS:
                out = np.empty((m, n), dtype)
                gemm(packed, b, out, bias=bias, activation="relu", num_threads=nt)
                outs[nt] = out
            assert_close(outs[1], ref, dtype, k=k, scale=1.0)
            for nt in THREADS:
                np.testing.assert_array_equal(outs[nt], outs[1], err_msg=f"{(m, n, k)} nt={nt}")


def test_work_units_rejects_bad_sizes():
    code = gemm_ops._gemm.isa_code(ISAS[0])
    with pytest.raises(ValueError, match="M=0"):
        gemm_ops._gemm.work_units(code, 4, 1, 0, 5, 5, 2)
    with pytest.raises(ValueError, match="elsize=3"):
        gemm_ops._gemm.work_units(code, 3, 1, 5, 5, 5, 2)
    # few rows: the unpacked path, no units
    assert gemm_ops._gemm.work_units(code, 4, 1, 4, 5000, 500, 2)["mu"] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", ["rows", "transposed", "strided"])
def test_partitions_match_oracle_and_each_other(isa, dtype, layout):
    with gemm_ops.using_microkernel(isa):
        for i, (m, n, k) in enumerate(SHAPES):
            a = rand((m, k), dtype, i)
            if layout == "rows":
                b, trans_b = rand((k, n), dtype, 10 + i), False
            elif layout == "transposed":   # op(B) columns contiguous
                b, trans_b = rand((n, k), dtype, 10 + i), True
            else:                          # neither stride 1
                b, trans_b = rand((k, 2 * n), dtype, 10 + i)[:, ::2], False
            bias = rand((n,), dtype, 20 + i)
            c = rand((m, n), dtype, 30 + i)
            bm = b.T if trans_b else b
            ref = (0.5 * (a.astype(np.float64) @ bm.astype(np.float64))
                   + 0.25 * c.astype(np.float64) + bias.astype(np.float64)[None, :])
            ref = np.minimum(np.maximum(ref, 0), 6)
            outs = {}
            for nt in (1,) + THREADS:
                out = c.copy()
                gemm(a, b, out, alpha=0.5, beta=0.25, trans_b=trans_b, bias=bias, bias_axis=1,
                     activation="relu6", num_threads=nt)
                outs[nt] = out
            assert_close(outs[1], ref, dtype, k=k, scale=1.0)
            for nt in THREADS:
                np.testing.assert_array_equal(outs[nt], outs[1], err_msg=f"{(m, n, k)} nt={nt}")


@pytest.mark.parametrize("isa", ISAS)
def test_pre_packed_b_with_a_packed_per_call_cuts_only_columns(isa):
    # a narrow product run transposed: A = the 49 pixels of a 7x7 map (packed by the call), B =
    # the weights (pre-packed, streamed from memory): every unit covers all the rows, so each
    # weight panel is read by one unit and serves every pixel
    nr = gemm_ops._gemm.blocking(gemm_ops._gemm.isa_code(isa), 4)["nr"]
    for m, n, k in [(49, 512, 4608), (49, 2048, 1024), (49, 512, 2048)]:
        for nt in (2, 3, 4):
            u = units(isa, np.float32, m, n, k, nt, True, False)
            assert u["mu"] >= m and -(-n // u["nu"]) >= nt, (m, n, k, nt, u)
    # too few column panels for every thread: rows are cut after all
    m, n, k = 1000, nr, 4096
    u = units(isa, np.float32, m, n, k, 2, True, False)
    assert -(-m // u["mu"]) * -(-n // u["nu"]) >= 2, u
