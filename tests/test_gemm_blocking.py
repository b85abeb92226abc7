"""The GEMM's cache blocking, derived at run time from the CPU's cache sizes.

``_gemm.blocking_rule`` is a pure function of (L1d, L2, L3 share, MR, NR, element size); the
tests check it against the rules written out here (BLIS's: the KC x NR B micro-panel plus the
MR x KC A micro-panel in half the L1d, at least 256 deep; the MC x KC A block in half the L2;
the KC x NC B block in half the L3 share), that the blocking in use is the rule applied to the
detected caches, and, in a subprocess with faked cache sizes (``NNLITE_CACHE_SIZES``), that
very different blockings still give correct GEMMs and convolutions, bit-identical for 1, 2 and
3 threads.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nnlite.kernels import gemm_ops

BUILT = gemm_ops._gemm is not None
pytestmark = pytest.mark.skipif(not BUILT, reason="nnlite._gemm not built")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

K, M = 1 << 10, 1 << 20
# (l1d, l2, l3) of real and made-up machines; (mr, nr) of the compiled families
CACHES = [(32 * K, 1 * M, 16 * M), (48 * K, 2 * M, 4 * M), (32 * K, 256 * K, 2 * M),
          (64 * K, 512 * K, 1 * M), (4 * K, 16 * K, 64 * K), (192 * K, 8 * M, 64 * M)]
TILES = [(8, 48), (8, 24), (6, 16), (6, 8), (4, 16), (4, 8)]


def _largest(limit, step, lo, hi):
    """Largest multiple of step <= limit, clamped to [lo, hi] (hi rounded down to a step)."""
    v = max(lo, limit // step * step)
    return min(v, hi // step * step)


@pytest.mark.parametrize("elsize", [4, 8])
@pytest.mark.parametrize("caches", CACHES)
def test_blocking_rule_follows_cache_sizes(caches, elsize):
    l1, l2, l3 = caches
    for mr, nr in TILES:
        b = gemm_ops._gemm.blocking_rule(l1, l2, l3, mr, nr, elsize)
        kc, mc, nc = b["kc"], b["mc"], b["nc"]
        assert kc % 8 == 0 and mc % mr == 0 and nc % nr == 0
        assert 256 <= kc <= 1024
        fits = (mr + nr) * elsize
        if kc == 1024:   # the cap
            assert kc * fits <= l1 // 2
        elif kc > 256:   # the L1 rule decided: the micro-panels fit, 8 more rows would not
            assert kc * fits <= l1 // 2 < (kc + 8) * fits
        else:
            assert (kc + 8) * fits > l1 // 2
        assert mc == _largest(l2 // 2 // (kc * elsize), mr, mr, 4096)
        assert nc == _largest(l3 // 2 // (kc * elsize), nr, nr, 8192)


def test_blocking_rule_hand_computed():
    # 48 KB L1d, 2 MB L2, 4 MB L3 share, AVX2 float32 (6 x 16): 24576 // 88 = 279 -> KC 272;
    # 1 MB // (272 * 4) = 963 -> MC 960; 2 MB // 1088 = 1927 -> NC 1920
    assert gemm_ops._gemm.blocking_rule(48 * K, 2 * M, 4 * M, 6, 16, 4) == {
        "mc": 960, "kc": 272, "nc": 1920}
    # 32 KB L1d: 16384 // 224 = 73 < 256 -> KC 256; 512 KB // 1024 -> MC 512; 8 MB // 1024
    assert gemm_ops._gemm.blocking_rule(32 * K, 1 * M, 16 * M, 8, 48, 4) == {
        "mc": 512, "kc": 256, "nc": 8160}
    with pytest.raises(ValueError, match="cache sizes"):
        gemm_ops._gemm.blocking_rule(0, 1 * M, 1 * M, 8, 48, 4)


def test_blocking_in_use_is_the_rule_on_the_detected_caches():
    for isa in gemm_ops._gemm.available_isas():
        for dtype in (np.float32, np.float64):
            blk = gemm_ops.blocking(dtype, isa=isa)
            c = blk["caches"]
            assert c["source"] in ("env", "sysfs", "cpuid", "default")
            assert c["l1d"] > 0 and c["l2"] > 0 and c["l3"] > 0
            rule = gemm_ops._gemm.blocking_rule(c["l1d"], c["l2"], c["l3"], blk["mr"], blk["nr"],
                                                np.dtype(dtype).itemsize)
            assert {k: blk[k] for k in ("mc", "kc", "nc")} == rule
    assert gemm_ops.info()["caches"] == gemm_ops.blocking()["caches"]
    with pytest.raises(TypeError, match="float32 or float64"):
        gemm_ops.blocking(np.int32)


_CHILD = textwrap.dedent("""
    import json
    import numpy as np
    import nnlite
    import nnlite.functional as F
    from nnlite.kernels import gemm, gemm_ops
    from nnlite.kernels import conv_reference

    rng = np.random.default_rng(0)
    report = {"caches": gemm_ops.blocking()["caches"], "blocking": {}, "gemm_err": 0.0,
              "conv_err": 0.0, "same_across_threads": True}
    for isa in gemm_ops._gemm.available_isas():
        with gemm_ops.using_microkernel(isa):
            report["blocking"][isa] = gemm_ops.blocking()
            for dt in (np.float32, np.float64):
                m, n, k = 131, 517, 600
                a = rng.uniform(-1, 1, (m, k)).astype(dt)
                b = rng.uniform(-1, 1, (k, n)).astype(dt)
                outs = [gemm(a, b, num_threads=t) for t in (1, 2, 3)]
                ref = a.astype(np.float64) @ b.astype(np.float64)
                err = float(np.abs(outs[0] - ref).max() / (k * np.finfo(dt).eps))
                report["gemm_err"] = max(report["gemm_err"], err)
                report["same_across_threads"] &= all(np.array_equal(o, outs[0]) for o in outs)
    x = rng.uniform(-1, 1, (2, 20, 13, 11)).astype(np.float32)
    w = rng.uniform(-1, 1, (24, 10, 3, 2)).astype(np.float32)
    ref = conv_reference.conv2d(x.astype(np.float64), w.astype(np.float64), None,
                                (2, 1), (2, 1), (1, 2), 2)
    for t in (1, 2):
        nnlite.set_num_threads(t)
        with nnlite.conv_algorithm("implicit"):
            y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), stride=(2, 1), padding=(2, 1),
                         dilation=(1, 2), groups=2).data
        report["conv_err"] = max(report["conv_err"],
                                 float(np.abs(y - ref).max() / (60 * np.finfo(np.float32).eps)))
    print(json.dumps(report))
""")


def _run_child(env_sizes):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["NNLITE_CACHE_SIZES"] = env_sizes
    r = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("sizes,expected", [
    ("4K,16K,64K", (4 * K, 16 * K, 64 * K)),        # tiny: many MC/NC blocks, KC floor
    ("192K,8M,64M", (192 * K, 8 * M, 64 * M)),     # huge: one block per operand
])
def test_faked_cache_sizes_change_blocking_not_results(sizes, expected):
    rep = _run_child(sizes)
    c = rep["caches"]
    assert c["source"] == "env" and (c["l1d"], c["l2"], c["l3"]) == expected
    for blk in rep["blocking"].values():           # float32 blocking of each family
        assert {k: blk[k] for k in ("mc", "kc", "nc")} == gemm_ops._gemm.blocking_rule(
            *expected, blk["mr"], blk["nr"], 4)
    assert rep["same_across_threads"]
    assert rep["gemm_err"] < 2.0       # |error| within K * eps of the float64 product
    assert rep["conv_err"] < 2.0


def test_unreadable_cache_env_falls_back_to_detection():
    rep = _run_child("lots,of,cache")
    assert rep["caches"]["source"] in ("sysfs", "cpuid", "default")
    assert rep["same_across_threads"] and rep["gemm_err"] < 2.0
