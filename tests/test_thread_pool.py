"""The kernels' thread pool (csrc/core/nnl_pool.c): every unit of a loop runs exactly once,
on a thread numbered below the loop's thread count, with one first-unit flag per thread; a
loop inside a unit and loops from several Python threads at once run alone on their thread;
a forked child starts a pool of its own; a plan run holds the workers and lets them go.

The oracle is a unit that records who ran it (``nnlite._info.pool_check``), so these checks
do not go through any kernel; the kernels' own tests compare their results across thread
counts against the naive references."""
import multiprocessing
import os
import sys
import threading

import numpy as np
import pytest

from nnlite import _config

pytestmark = pytest.mark.skipif(not _config.cython_built(), reason="needs the extensions")

if _config.cython_built():
    from nnlite import _info


def _check_loop(nt, units, nested=False, spin=0):
    runs, tids, firsts, inner = _info.pool_check(nt, units, nested, spin)
    assert runs == [1] * units, f"units run other than once: {runs}"
    assert all(0 <= t < nt for t in tids), tids
    used = set(tids)
    assert all(f <= 1 for f in firsts), firsts
    assert sum(firsts) == len(used) and all(firsts[t] == 1 for t in used), (firsts, used)
    if nested:
        assert inner == [1] * (3 * units), inner
    return used


@pytest.mark.parametrize("nt", [1, 2, 3, 5])
@pytest.mark.parametrize("units", [0, 1, 2, 7, 64, 1000])
def test_every_unit_runs_once(nt, units):
    used = _check_loop(nt, units, spin=200)
    if units and nt == 1:
        assert used == {0}


def test_many_loops_back_to_back():
    # late workers meet newer loops: a unit must never run twice or for the wrong loop
    rng = np.random.default_rng(0)
    for i in range(3000):
        _check_loop(int(rng.integers(1, 4)), int(rng.integers(0, 40)), spin=int(rng.integers(0, 50)))


@pytest.mark.skipif(not _config.cython_built() or not _info.openmp_enabled(),
                    reason="a build without threads (NNLITE_NO_OPENMP) runs every loop alone")
def test_workers_take_units():
    # with enough work per unit, a second thread joins (the pool started a worker)
    seen = set()
    for _ in range(50):
        seen |= _check_loop(2, 64, spin=20000)
        if seen == {0, 1}:
            break
    assert _info.pool_workers() >= 1
    assert seen == {0, 1}, seen


def test_nested_loop_runs_on_the_unit_thread():
    _check_loop(2, 16, nested=True, spin=1000)


def test_loops_from_several_python_threads():
    errors = []

    def run():
        try:
            for _ in range(300):
                _check_loop(2, 33, spin=100)
        except Exception as exc:   # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a pool loop hung"
    assert not errors, errors[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="nt must be >= 1"):
        _info.pool_check(0, 4)
    with pytest.raises(ValueError, match="units >= 0"):
        _info.pool_check(2, -1)
    with pytest.raises(TypeError):
        _info.pool_hold("1")


def test_hold_and_release():
    _check_loop(2, 8, spin=1000)
    _info.pool_hold(1)
    try:
        for _ in range(100):
            _check_loop(2, 8, spin=100)
    finally:
        _info.pool_hold(-1)
    _check_loop(2, 8, spin=100)


def _child(q):
    from nnlite import _info as info

    try:
        runs, tids, firsts, _ = info.pool_check(2, 200, False, 2000)
        q.put((runs == [1] * 200, sorted(set(tids))))
    except Exception as exc:   # reported to the parent
        q.put((False, repr(exc)))


@pytest.mark.skipif(sys.platform == "win32" or "fork" not in
                    multiprocessing.get_all_start_methods(), reason="needs fork()")
def test_forked_child_has_its_own_pool():
    _check_loop(2, 64, spin=20000)          # the parent's pool has a worker now
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    p.join(timeout=60)
    if p.is_alive():
        p.kill()
        pytest.fail("a pool loop hung in a forked child")
    ok, tids = q.get(timeout=5)
    assert ok, tids
    assert p.exitcode == 0


def test_plan_run_releases_the_hold(monkeypatch):
    import nnlite
    from nnlite import inference, nn

    assert _info.pool_hold(0) == 0
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    opt = nnlite.optimize_for_inference(m)
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    opt.run_arrays(x)
    assert _info.pool_hold(0) == 0
    held = []

    def copy_then_fail(dst, src):
        held.append(_info.pool_hold(0))
        raise RuntimeError("input copy failed")

    monkeypatch.setattr(inference.np, "copyto", copy_then_fail)
    with pytest.raises(RuntimeError, match="input copy failed"):
        opt.run_arrays(x)
    assert held == [1]                       # held during the run
    assert _info.pool_hold(0) == 0           # and let go when it raised


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _config.cython_built()
                    or not _info.openmp_enabled() or len(os.sched_getaffinity(0)) < 2,
                    reason="steering workers is Linux's sched_setaffinity, on 2+ CPUs")
@pytest.mark.skipif(os.environ.get("OMP_WAIT_POLICY", "")[:1] in ("p", "P"),
                    reason="OMP_WAIT_POLICY=passive: the pool never holds or steers its workers")
def test_a_held_run_keeps_workers_off_the_callers_cpu():
    # while held, the workers may run on every CPU of the caller's mask but the caller's own
    # (a woken thread would otherwise queue on the caller's CPU); after, the whole mask again
    _check_loop(2, 64, spin=20000)
    tids = [t for t in _info.pool_worker_tids() if t > 0]
    assert tids, "no worker thread id"
    mask = os.sched_getaffinity(0)
    assert _info.pool_hold(0) == 0
    _info.pool_hold(1)
    try:
        held = [os.sched_getaffinity(t) for t in tids]
    finally:
        _info.pool_hold(-1)
    after = [os.sched_getaffinity(t) for t in tids]
    for aff in held:
        assert len(aff) == len(mask) - 1 and aff < mask, (aff, mask)
    assert all(aff == mask for aff in after), (after, mask)


@pytest.mark.parametrize("nbytes", [0, 1, 4095, 65536, 65537, 3 * 65536 + 12, 602112])
@pytest.mark.parametrize("nt", [1, 2, 3])
def test_copy_bytes_copies_every_byte_once(nbytes, nt):
    """``_info.copy_bytes`` (an inference plan's input copy): 64 KB units over the pool's
    threads; the bytes around the destination stay untouched. Oracle: NumPy's slice copy."""
    rng = np.random.default_rng(nbytes + nt)
    src = rng.integers(0, 256, nbytes, dtype=np.uint8)
    guard = np.full(nbytes + 128, 0xA5, np.uint8)
    dst = guard[64:64 + nbytes]
    _info.copy_bytes(dst, src, nt)
    np.testing.assert_array_equal(dst, src)
    assert (guard[:64] == 0xA5).all() and (guard[64 + nbytes:] == 0xA5).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 16384, 16385, 3 * 16384 + 5, 150528])
@pytest.mark.parametrize("nt", [1, 2, 3])
def test_any_nonfinite_finds_one_nan_or_inf_anywhere(dtype, n, nt):
    """``_info.any_nonfinite`` (a Winograd conv's input check) reads every value, whatever unit
    and thread it falls to: one special at the first, a unit's last/first, or the last position
    is found, and none in a finite array (with the largest finite values, subnormals, -0).
    Oracle: ``np.isfinite``."""
    rng = np.random.default_rng(n + nt)
    x = rng.standard_normal(n).astype(dtype)
    fin = np.finfo(dtype)
    x[rng.integers(0, n, min(n, 3))] = [fin.max, -fin.max, fin.smallest_subnormal][:min(n, 3)]
    if n > 1:
        x[1] = -0.0
    assert np.isfinite(x).all()
    assert _info.any_nonfinite(x, x.itemsize, nt) is False
    per_unit = 65536 // x.itemsize
    spots = {0, n - 1, per_unit - 1, per_unit, n // 2} & set(range(n))
    for i in sorted(spots):
        for special in (np.nan, np.inf, -np.inf, -np.nan):
            y = x.copy()
            y[i] = special
            assert _info.any_nonfinite(y, y.itemsize, nt) is True, (i, special)
    # a signalling-NaN bit pattern and a NaN with a payload are found too
    bits = np.uint32 if dtype == np.float32 else np.uint64
    for pattern in ((0x7F800001, 0xFFC12345) if dtype == np.float32
                    else (0x7FF0000000000001, 0xFFF8000000ABCDEF)):
        y = x.copy()
        y.view(bits)[n - 1] = pattern
        assert not np.isfinite(y[n - 1])
        assert _info.any_nonfinite(y, y.itemsize, nt) is True


def test_any_nonfinite_rejects_other_itemsizes_and_ragged_lengths():
    assert _info.any_nonfinite(np.empty(0, np.float32), 4, 2) is False
    assert _info.any_nonfinite(np.empty((0, 3, 5, 5), np.float32), 4, 2) is False
    with pytest.raises(ValueError, match="itemsize must be 4 or 8, got 2"):
        _info.any_nonfinite(np.zeros(4, np.float16), 2, 2)
    with pytest.raises(ValueError, match="6 bytes are not whole 4-byte values"):
        _info.any_nonfinite(np.zeros(6, np.uint8), 4, 2)
    with pytest.raises((ValueError, TypeError, BufferError)):
        _info.any_nonfinite(np.zeros((4, 4), np.float32)[:, ::2], 4, 2)   # not contiguous


def test_copy_bytes_takes_any_contiguous_buffers_and_rejects_other_lengths():
    x = np.arange(3 * 50 * 70, dtype=np.float32).reshape(3, 50, 70)
    y = np.empty((3, 50, 70), np.float32)
    _info.copy_bytes(y, x, 2)
    np.testing.assert_array_equal(y, x)
    with pytest.raises(ValueError, match="42000 source bytes for 41996 destination bytes"):
        _info.copy_bytes(np.empty(10499, np.float32), x, 2)
    with pytest.raises((ValueError, TypeError, BufferError)):
        _info.copy_bytes(x[:, ::2], y, 2)          # not contiguous
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises((ValueError, TypeError, BufferError)):
        _info.copy_bytes(ro, x, 2)
