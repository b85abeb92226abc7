"""Concurrency: 8 Python threads calling the same module give results identical to serial calls;
the compiled kernels release the GIL; no kernel shares mutable scratch between calls.

Identity is bitwise (np.array_equal): every kernel's result is independent of how calls
interleave, and the GEMM reduces K blocks in a fixed order whatever the thread count.
The backend and conv-algorithm switches are per thread, so each worker enters them itself.
"""
import threading
import time

import numpy as np
import pytest

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from nnlite import ops

THREADS = 8
ROUNDS = 4


def _variants():
    out = [("numpy", None)]
    if "cython" in nnlite.available_backends():
        out += [("cython", a) for a in nnlite.available_conv_algorithms()
                if a not in ("auto", "winograd")]        # winograd: 3x3 stride 1 only
        out.append(("cython", "auto"))
    return out


VARIANTS = _variants()


def _ctx(backend, algorithm):
    class _Both:
        def __enter__(self):
            self.b = nnlite.using_backend(backend)
            self.b.__enter__()
            self.a = nnlite.conv_algorithm(algorithm) if algorithm else None
            if self.a:
                self.a.__enter__()

        def __exit__(self, *exc):
            if self.a:
                self.a.__exit__(*exc)
            self.b.__exit__(*exc)
    return _Both()


def _model(dtype):
    nnlite.manual_seed(1)
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, dtype=dtype), nn.BatchNorm2d(8, dtype=dtype), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, dtype=dtype),     # depthwise
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2, dtype=dtype),
        nn.MaxPool2d(3, stride=1, padding=1), nn.AvgPool2d(2, ceil_mode=True),
        nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1, dtype=dtype),
        nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(72, 10, dtype=dtype))
    m.eval()
    return m


def _inputs(dtype, n=THREADS):
    rng = np.random.default_rng(7)
    return [rng.standard_normal((2, 3, 24, 20)).astype(dtype) for _ in range(n)]


def _run_threads(fn, args):
    """fn(i, args[i]) in THREADS threads started together; results in order, errors re-raised."""
    barrier = threading.Barrier(len(args))
    results = [None] * len(args)
    errors = []

    def work(i):
        try:
            barrier.wait()
            results[i] = fn(i, args[i])
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend, algorithm", VARIANTS)
def test_same_module_from_8_threads_equals_serial(backend, algorithm, dtype):
    model = _model(dtype)
    xs = _inputs(dtype)
    with _ctx(backend, algorithm), nnlite.no_grad():
        serial = [model(x).data.copy() for x in xs]

    def infer(i, x):
        out = []
        with _ctx(backend, algorithm), nnlite.no_grad():
            for _ in range(ROUNDS):
                out.append(model(x).data.copy())
        return out

    for i, outs in enumerate(_run_threads(infer, xs)):
        for r, y in enumerate(outs):
            assert np.array_equal(y, serial[i]), f"thread {i}, round {r}: differs from serial"


def _array(g):
    return np.array(g.data if isinstance(g, nnlite.Tensor) else g)


@pytest.mark.parametrize("backend, algorithm", VARIANTS)
def test_training_steps_from_8_threads_equal_serial(backend, algorithm):
    """Forward + backward in 8 threads (one model copy each, shared kernels and GEMM
    workspace cache) gives the serial gradients bit for bit."""
    dtype = np.float32
    xs = _inputs(dtype)
    rois = np.array([[0, 1, 1, 9, 7], [1, 0, 2, 15, 11]], dtype)

    def step(i, x, model):
        model.train()
        xt = nnlite.tensor(x, requires_grad=True)
        feat = model[0](xt)
        loss = model(xt).sum() + ops.roi_align(feat, rois, 2, 0.5, 2).sum() \
            + ops.roi_pool(feat, rois, 2, 0.5).sum() \
            + F.adaptive_max_pool2d(feat, 2).sum()
        loss.backward()
        return [_array(xt.grad)] + [_array(p.grad) for p in model.parameters()]

    models = [_model(dtype) for _ in range(THREADS)]
    with _ctx(backend, algorithm):
        serial = [step(i, x, _model(dtype)) for i, x in enumerate(xs)]

    def work(i, x):
        with _ctx(backend, algorithm):
            return step(i, x, models[i])

    for i, grads in enumerate(_run_threads(work, xs)):
        for j, (g, s) in enumerate(zip(grads, serial[i])):
            assert np.array_equal(g, s), f"thread {i}: gradient {j} differs from serial"


def test_backend_switch_is_per_thread():
    """using_backend in one thread does not leak into another (no shared mutable switch)."""
    seen = {}
    inside = threading.Event()
    done = threading.Event()

    def other():
        inside.wait(10)
        seen["other"] = nnlite.backend()
        done.set()

    t = threading.Thread(target=other)
    t.start()
    default = nnlite.backend()
    with nnlite.using_backend("reference"):
        inside.set()
        done.wait(10)
        seen["main"] = nnlite.backend()
    t.join()
    assert seen == {"main": "reference", "other": default}


# ------------------------------------------------------------------------ GIL release
def _gil_calls():
    """(name, call) pairs of compiled kernels, each sized to run for a few hundred ms."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 32, 192, 192)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    big = rng.standard_normal((1, 64, 256, 256)).astype(np.float32)
    rois = np.concatenate([np.zeros((512, 1)), rng.uniform(0, 200, (512, 4))], 1)
    rois = np.sort(rois.reshape(512, 5, 1), axis=0).reshape(512, 5).astype(np.float32)
    rois[:, 0] = 0
    rois[:, 3:] = rois[:, 1:3] + 40
    calls = [
        ("conv2d im2col", lambda: _algo("im2col", F.conv2d, x, w, padding=1)),
        ("max_pool2d", lambda: F.max_pool2d(x, 3, stride=1, padding=1)),
        ("avg_pool2d", lambda: F.avg_pool2d(x, 5, stride=1, padding=2)),
        ("adaptive_max_pool2d", lambda: F.adaptive_max_pool2d(x, 37)),
        ("roi_align", lambda: ops.roi_align(big, rois, 7, 1.0, 4)),
        ("gemm", lambda: nnlite.kernels.gemm(x.reshape(-1, 192)[:2048], x.reshape(192, -1)[:, :2048])),
    ]
    if "implicit" in nnlite.available_conv_algorithms():
        calls.append(("conv2d implicit", lambda: _algo("implicit", F.conv2d, x, w, padding=1)))
    return calls


def _algo(name, fn, *args, **kwargs):
    with nnlite.conv_algorithm(name):
        return fn(*args, **kwargs)


@pytest.mark.skipif("cython" not in nnlite.available_backends(),
                    reason="nnlite was built without its Cython extension")
@pytest.mark.parametrize("name, call", _gil_calls() if "cython" in
                         nnlite.available_backends() else [],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_kernels_release_the_gil(name, call):
    """While a kernel runs in a worker, a pure-Python loop in this thread keeps running.

    Holding the GIL for the whole call would leave the middle half of the call without a
    single tick; with the GIL released the loop ticks every few microseconds.
    """
    saved = nnlite.get_num_threads()
    nnlite.set_num_threads(1)  # leave the second core to the ticking thread
    try:
        with nnlite.using_backend("cython"):
            call()  # warm-up (first-call imports, workspace)
        dur, inside = _gil_probe(call)
    finally:
        nnlite.set_num_threads(saved)
    if dur < 0.02:
        pytest.skip(f"{name} ran only {dur * 1e3:.1f} ms; too short to observe")
    assert inside > 0, f"{name}: no Python tick during {dur * 1e3:.0f} ms: the GIL was held"


def _gil_probe(call):
    """Run ``call`` in a worker while this thread ticks; (duration, ticks in its middle half)."""
    span = {}
    started = threading.Event()

    def worker():
        with nnlite.using_backend("cython" if "cython" in nnlite.available_backends()
                                  else "numpy"):
            started.set()
            span["t0"] = time.perf_counter()
            call()
            span["t1"] = time.perf_counter()

    ticks = []
    t = threading.Thread(target=worker)
    t.start()
    started.wait()
    while t.is_alive():
        ticks.append(time.perf_counter())
    t.join()
    dur = span["t1"] - span["t0"]
    lo, hi = span["t0"] + 0.25 * dur, span["t0"] + 0.75 * dur
    return dur, sum(lo <= s <= hi for s in ticks)


def test_gil_probe_detects_a_gil_holding_call():
    """Control: sorted() of a long list holds the GIL, and the probe must see no tick."""
    data = list(np.random.default_rng(0).random(2_000_000))
    dur, inside = _gil_probe(lambda: sorted(data))
    assert dur > 0.02 and inside == 0, (dur, inside)
