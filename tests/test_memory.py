"""Memory: RSS stays flat over 10,000 training steps; a conv whose explicit column matrix cannot
fit runs on the implicit path, and the explicit path fails cleanly with MemoryError.

RSS is read from /proc/self/statm (Linux; the tests skip elsewhere), after gc and glibc's
malloc_trim, in a fresh interpreter (``_measure``): in a process that already ran other tests,
heap pages they freed (and glibc's arena switches after allocations failed under the
address-space caps of the fuzz tests) can absorb a leak unseen. The leak bound is
``RSS_BOUND_BYTES`` of growth between the end of the warm-up and the last step; a leak of
``RSS_BOUND_BYTES / STEPS`` bytes per step (~400 B) or more fails. ``test_leak_detector_fires``
proves that the measurement can fail: the same loop with 16 KiB retained per step must exceed
the bound.
"""
import ctypes
import ctypes.util
import gc
import os
import subprocess
import sys

import numpy as np
import pytest

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from fuzzing import memory_cap  # noqa: F401 - fixture

STEPS = 10_000          # the compiled backend; the NumPy backend runs NUMPY_STEPS
NUMPY_STEPS = 2_000
WARMUP = 1_000
RSS_BOUND_BYTES = 4 << 20

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                                reason="RSS is read from /proc/self/statm (Linux)")


def _malloc_trim():
    """glibc's malloc_trim(0), or None where it does not exist."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def rss_bytes():
    """Resident bytes after collecting garbage and handing free heap pages back to the OS.

    Without the trim, pages freed by earlier tests stay resident and a leak can grow inside
    them unseen; after it, RSS tracks live memory, whatever ran before in this process.
    """
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _model():
    """Small conv + pool + linear model touching every kernel family of a training step."""
    nnlite.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.MaxPool2d(2),                                          # 8x8 -> 4x4
        nn.Conv2d(6, 6, 3, padding=1, groups=3), nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, groups=6),                  # depthwise
        nn.ConvTranspose2d(6, 4, 2, stride=2),                    # 4x4 -> 8x8
        nn.AvgPool2d(2), nn.AdaptiveMaxPool2d(2),                 # -> 2x2
        nn.Flatten(), nn.Linear(16, 5))


def _train(steps, leak=None, warmup=WARMUP):
    """``steps`` forward + backward + SGD steps; RSS (bytes) after the warm-up and at the end."""
    model = _model()
    opt = nnlite.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    rng = np.random.default_rng(0)
    x = nnlite.tensor(rng.standard_normal((4, 3, 8, 8)).astype(np.float32))
    target = rng.integers(0, 5, size=4)
    rois = np.array([[0, 0, 0, 3, 3], [1, 1, 1, 6, 5]], np.float32)
    start = None
    for i in range(steps):
        if i == warmup:
            start = rss_bytes()
        opt.zero_grad()
        feat = model[0](x)                                        # (4, 6, 8, 8)
        loss = F.cross_entropy(model(x), target)
        loss = loss + nnlite.ops.roi_align(feat, rois, 2, 1.0, 2).sum() * 1e-3
        loss.backward()
        opt.step()
        if leak is not None:
            leak.append(np.ones(4096, np.float32))  # 16 KiB retained per step
    return start, rss_bytes()


def _measure(backend_name, steps, leak=False, warmup=WARMUP):
    """(RSS after warm-up, RSS at the end) of ``_train`` run in a fresh interpreter."""
    code = ("import sys, nnlite; sys.path.insert(0, sys.argv[1]); import test_memory as m\n"
            "with nnlite.using_backend(sys.argv[2]):\n"
            "    s, e = m._train(int(sys.argv[3]), [] if sys.argv[4] == '1' else None,"
            " int(sys.argv[5]))\n"
            "print(s, e)\n")
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", code, here, backend_name, str(steps),
                          "1" if leak else "0", str(warmup)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    start, end = (int(v) for v in out.stdout.split()[-2:])
    return start, end


@pytest.mark.parametrize("backend_name", ["cython", "numpy"])
def test_rss_flat_over_training_steps(backend_name):
    if backend_name not in nnlite.available_backends():
        pytest.skip("nnlite was built without its Cython extension")
    steps = STEPS if backend_name == "cython" else NUMPY_STEPS
    start, end = _measure(backend_name, steps)
    growth = end - start
    print(f"{backend_name}: RSS {start / 2**20:.1f} MiB after {WARMUP} steps, "
          f"{end / 2**20:.1f} MiB after {steps} (growth {growth / 2**10:.0f} KiB)")
    assert growth < RSS_BOUND_BYTES, (
        f"RSS grew by {growth / 2**20:.2f} MiB over {steps - WARMUP} steps "
        f"(bound {RSS_BOUND_BYTES / 2**20:.0f} MiB): a leak")


def test_leak_detector_fires():
    """The same measurement with 16 KiB retained per step must exceed the bound."""
    steps = 200 + (RSS_BOUND_BYTES // 16384) * 2   # twice the leak the bound tolerates
    start, end = _measure(nnlite.backend(), steps, leak=True, warmup=200)
    assert end - start > RSS_BOUND_BYTES, (start, end)


# --------------------------------------------------------- a column matrix that cannot fit
# x (1, 16, 256, 256) float32 = 4 MiB, w (1, 16, 31, 31), padding 15: the explicit column
# matrix is 16*31*31 x 256*256 floats = 3.75 GiB, more than the 3 GiB the memory_cap fixture
# leaves; the implicit GEMM needs a few packed panels.
C, HW, K = 16, 256, 31


def _ones_conv_expected():
    """conv of ones with ones, 'same' zero padding: C * (in-bounds rows) * (in-bounds cols)."""
    p = K // 2
    i = np.arange(HW)
    counts = np.minimum(i + p, HW - 1) - np.maximum(i - p, 0) + 1
    return (C * counts[:, None] * counts[None, :]).astype(np.float32)


def _big_conv_inputs():
    return np.ones((1, C, HW, HW), np.float32), np.ones((1, C, K, K), np.float32)


def test_conv_too_big_for_im2col_runs_implicit(memory_cap):  # noqa: F811
    if "implicit" not in nnlite.available_conv_algorithms():
        pytest.skip("no implicit-GEMM conv in this installation")
    x, w = _big_conv_inputs()
    cols = C * K * K * HW * HW * 4
    assert cols > 3 << 30
    with nnlite.using_backend("cython"), nnlite.conv_algorithm("auto"):
        y = F.conv2d(x, w, padding=K // 2)
    np.testing.assert_array_equal(y.data[0, 0], _ones_conv_expected())


@pytest.mark.parametrize("backend_name", ["cython", "numpy"])
def test_conv_too_big_for_im2col_fails_cleanly(backend_name, memory_cap):  # noqa: F811
    """The explicit path raises MemoryError before touching memory, and nnlite still works."""
    if backend_name not in nnlite.available_backends():
        pytest.skip("nnlite was built without its Cython extension")
    x, w = _big_conv_inputs()
    with nnlite.using_backend(backend_name), nnlite.conv_algorithm("im2col"):
        with pytest.raises(MemoryError):
            F.conv2d(x, w, padding=K // 2)
        xs = nnlite.tensor(x[:, :, :8, :8], requires_grad=True)
        ws = nnlite.tensor(w[:, :, :3, :3], requires_grad=True)
        y = F.conv2d(xs, ws, padding=1)
        np.testing.assert_array_equal(y.data[0, 0, 1:-1, 1:-1], np.full((6, 6), 9.0 * C))


def test_conv_backward_too_big_for_columns_fails_cleanly(memory_cap):  # noqa: F811
    """The backward routines use explicit columns: MemoryError, not a crash or an OOM kill."""
    x, w = _big_conv_inputs()
    xt = nnlite.tensor(x, requires_grad=True)
    wt = nnlite.tensor(w, requires_grad=True)
    try:
        y = F.conv2d(xt, wt, padding=K // 2)
    except MemoryError:
        return  # no implicit forward in this installation: failing cleanly here is fine
    try:
        y.sum().backward()
    except MemoryError:
        return
    # a backward that fits (e.g. an implicit weight gradient) must be right: d(sum y)/dx
    np.testing.assert_array_equal(np.asarray(getattr(xt.grad, "data", xt.grad))[0, 0],
                                  _ones_conv_expected() / C)


def test_column_workspace_larger_than_available_memory_raises_before_allocating(monkeypatch):
    # F8: an explicit column matrix bigger than MemAvailable must fail cleanly (MemoryError naming
    # the bytes), not be allocated lazily and OOM-kill the process later
    import nnlite.nn.functional as F
    from nnlite.kernels import _conv_gemm

    monkeypatch.setattr(_conv_gemm, "_available_bytes", lambda: 1000)
    x = nnlite.tensor(np.ones((1, 2, 8, 8)), requires_grad=True)
    w = nnlite.tensor(np.ones((3, 2, 3, 3)), requires_grad=True)
    with nnlite.using_backend("numpy"), pytest.raises(MemoryError, match=r"needs 1,296 bytes"):
        F.conv2d(x, w, None, 2)
