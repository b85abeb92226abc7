"""The GEMM's work units on a thread team and its shared B (csrc/gemm_driver.c).

One product on a team is cut into units by ``nnl_plan_units`` (balance against re-packing);
when its rows are cut, B is packed once for the whole team, lazily, by whichever thread needs
a panel group first (``b_shared``; a thread that finds a group still being packed by another
packs its chunk privately). The tests read the plan through ``_gemm.work_units`` so that the
shapes below provably take the shared and the unshared paths, then check the products against
a float64 oracle and bit for bit across thread counts (each element is reduced in an order
fixed by the shape alone), including B transposed and strided (the three packers), partial NR
panels, several K slices, and a subprocess whose faked L3 is too small for any shared B.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import assert_close

from nnlite.kernels import gemm, gemm_ops

BUILT = gemm_ops._gemm is not None
pytestmark = pytest.mark.skipif(not BUILT, reason="nnlite._gemm not built")
ISAS = gemm_ops._gemm.available_isas() if BUILT else []
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (M, N, K): 1x1 convs of CNN inference at batch 1 with odd sizes: N = 14x14 + 1 pixels (a
# 5-column NR tail on 8 x 48 tiles), N = 56x56 with few output channels, M not an MR multiple,
# K spanning several KC slices, a tall one; all above the single-thread cut-off.
SHAPES = [(203, 197, 517), (96, 3136, 64), (1000, 196, 130), (37, 1501, 301), (24, 3136, 144),
          (256, 196, 1024)]
THREADS = (2, 3, 4, 7)   # 7 on a 2-core machine: threads often find a group being packed


def rand(shape, dtype, seed):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(dtype)


def units(isa, dtype, m, n, k, nt, pack_a=True, pack_b=True):
    return gemm_ops._gemm.work_units(gemm_ops._gemm.isa_code(isa), np.dtype(dtype).itemsize,
                                     1, m, n, k, nt, pack_a, pack_b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", ISAS)
def test_plan_is_a_valid_cut_and_both_b_paths_occur(isa, dtype):
    blk = gemm_ops._gemm.blocking(gemm_ops._gemm.isa_code(isa), np.dtype(dtype).itemsize)
    seen = set()
    for m, n, k in SHAPES:
        serial = units(isa, dtype, m, n, k, 1)
        # one thread: MC-row groups over all the columns, never a shared B
        assert serial["mu"] % blk["mr"] == 0 and serial["mu"] <= blk["mc"]
        assert serial["nu"] >= n and not serial["share_b"]
        for nt in THREADS:
            u = units(isa, dtype, m, n, k, nt)
            mu, nu = u["mu"], u["nu"]
            assert mu % blk["mr"] == 0 and 0 < mu <= blk["mc"]
            assert nu % blk["nr"] == 0 and nu > 0
            ru, cu = -(-m // mu), -(-n // nu)
            assert ru * cu >= min(nt, -(-m // blk["mr"]) * -(-n // blk["nr"]))
            # B is shared only when the rows are cut (else no unit would pack it twice)
            assert not u["share_b"] or ru > 1
            # pre-packed B: nothing to share
            assert not units(isa, dtype, m, n, k, nt, pack_b=False)["share_b"]
            seen.add(u["share_b"])
    assert seen == {True, False}


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


def test_no_shared_b_when_the_l3_is_small():
    # a faked 64 KB L3 share: no shared B fits, so row splits re-pack B per unit; same bits
    code = textwrap.dedent("""
        import numpy as np
        from nnlite.kernels import gemm, gemm_ops
        g = gemm_ops._gemm
        isa = g.isa_code(g.best_isa())
        res = {}
        for m, n, k in [(203, 197, 517), (1000, 196, 130)]:
            u = g.work_units(isa, 4, 1, m, n, k, 3)
            assert not u["share_b"], u
            assert -(-m // u["mu"]) > 1, u    # rows cut: B packed by every row group
            rng = np.random.default_rng(0)
            a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
            b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
            outs = [gemm(a, b, num_threads=t) for t in (1, 2, 3)]
            ref = a.astype(np.float64) @ b.astype(np.float64)
            assert np.abs(outs[0] - ref).max() <= 1e-5 * k, np.abs(outs[0] - ref).max()
            for o in outs[1:]:
                assert np.array_equal(o, outs[0])
        print("ok")
    """)
    env = dict(os.environ, NNLITE_CACHE_SIZES="32K,256K,64K", PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
