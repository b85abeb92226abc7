"""Shared machinery of the fuzz suite (tests/test_fuzz_*.py, marker ``fuzz``).

Invariant checked for every public op: a call returns the reference result, or raises
ValueError/TypeError (MemoryError only where a test declares the sizes impossible to fit) --
never another exception, a crash or a hang. ``outcome`` classifies one call; ``agree`` compares
the outcomes of several backends; ``hang_guard`` turns a hang into a traceback and a failure.

Budget: ``fuzz_settings(n)`` runs n examples in the ``dev`` profile and 2n in ``ci`` (the whole
suite stays under 1 min / 2 min on the 2-core CI machine); NNLITE_FUZZ_SCALE multiplies both.
"""
import faulthandler
import os
import resource
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import nnlite
from nnlite.tensor import Tensor

ALLOWED = (ValueError, TypeError)
HANG_SECONDS = 120
FAST = [b for b in ("cython", "numpy") if b in nnlite.available_backends()]
ALL = FAST + ["reference"]


def budget(dev_examples):
    """Examples for this profile: ``dev_examples`` (dev), twice that in ci; times
    NNLITE_FUZZ_SCALE (default 1) for a longer bug hunt, e.g. NNLITE_FUZZ_SCALE=20."""
    n = dev_examples if settings.default.max_examples <= 25 else 2 * dev_examples
    return max(1, int(n * float(os.environ.get("NNLITE_FUZZ_SCALE", "1"))))


def fuzz_settings(dev_examples):
    return settings(max_examples=budget(dev_examples), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def hang_guard():
    """Dump every thread's stack and exit if one test runs longer than HANG_SECONDS."""
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()


def _vm_bytes():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return None


@pytest.fixture
def memory_cap():
    """Cap this process's address space at its current size + 3 GiB for one test.

    A "huge sizes" test that wrongly tries to allocate gets MemoryError instead of driving the
    shared machine into the OOM killer. Linux only; a no-op elsewhere.
    """
    vm = _vm_bytes() if sys.platform.startswith("linux") else None
    if vm is None:
        yield
        return
    old = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm + (3 << 30)
    if old[1] != resource.RLIM_INFINITY:
        cap = min(cap, old[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


class Failed:
    """The outcome of a call that raised an allowed exception."""

    def __init__(self, exc):
        self.exc = exc
        self.type = type(exc)

    def __repr__(self):
        return f"Failed({self.type.__name__}: {self.exc})"


def outcome(fn, *args, memory_ok=False, **kwargs):
    """fn's result, or ``Failed`` for ValueError/TypeError (and MemoryError if ``memory_ok``).

    Any other exception fails the test with a message naming it.
    """
    allowed = ALLOWED + ((MemoryError,) if memory_ok else ())
    try:
        return fn(*args, **kwargs)
    except allowed as exc:
        return Failed(exc)
    except Exception as exc:  # noqa: BLE001 - the point of the fuzz suite
        raise AssertionError(f"{getattr(fn, '__name__', fn)} raised {type(exc).__name__} "
                             f"(only ValueError/TypeError are allowed): {exc}") from exc


def _conv_variants():
    """Backends plus the Cython conv algorithms, as 'cython:implicit' etc."""
    out = list(FAST)
    if "cython" in FAST:
        out += [f"cython:{a}" for a in nnlite.available_conv_algorithms()
                if a not in ("auto", "im2col", "winograd")]   # winograd: 3x3 stride 1 only
    return out + ["reference"]


CONV_VARIANTS = _conv_variants()


def on_backend(name, fn, *args, **kwargs):
    """Run fn under backend ``name`` ('cython', 'numpy', 'reference', or 'cython:<algorithm>')."""
    backend, _, algorithm = name.partition(":")
    with nnlite.using_backend(backend), nnlite.conv_algorithm(algorithm or "auto"):
        return fn(*args, **kwargs)


def _arrays(res):
    if isinstance(res, Tensor):
        return [res.data]
    if isinstance(res, np.ndarray):
        return [res]
    if isinstance(res, (tuple, list)):
        return [a for r in res for a in _arrays(r)]
    if res is None:
        return [None]
    return [np.asarray(res)]


def assert_same(actual, expected, rtol, atol, what="", nonfinite=True):
    """Arrays (or nested tuples of them) equal within tolerance; NaN/inf positions identical.

    ``nonfinite=False`` compares only the positions where both are finite (for an oracle that
    skips structural zeros, where PyTorch computes 0 * inf = NaN).
    """
    got, want = _arrays(actual), _arrays(expected)
    assert len(got) == len(want), (what, len(got), len(want))
    for i, (a, b) in enumerate(zip(got, want)):
        if a is None or b is None:
            assert a is None and b is None, (what, i, a, b)
            continue
        assert a.shape == b.shape, f"{what}[{i}]: shape {a.shape} != {b.shape}"
        assert a.dtype == b.dtype, f"{what}[{i}]: dtype {a.dtype} != {b.dtype}"
        if a.dtype.kind in "iub":
            np.testing.assert_array_equal(a, b, err_msg=f"{what}[{i}]")
            continue
        if not nonfinite:
            fin = np.isfinite(a) & np.isfinite(b)
            np.testing.assert_allclose(a[fin], b[fin], rtol=rtol, atol=atol,
                                       err_msg=f"{what}[{i}]")
            continue
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{what}[{i}] NaN")
        np.testing.assert_array_equal(np.isposinf(a), np.isposinf(b), err_msg=f"{what}[{i}] +inf")
        np.testing.assert_array_equal(np.isneginf(a), np.isneginf(b), err_msg=f"{what}[{i}] -inf")
        fin = np.isfinite(a) & np.isfinite(b)
        np.testing.assert_allclose(a[fin], b[fin], rtol=rtol, atol=atol, err_msg=f"{what}[{i}]")


EXACT = ("cython", "numpy", "cython:implicit", "cython:direct")


def agree(results, rtol, atol, what="", exact_nonfinite=EXACT, valid=False):
    """The fuzz invariant over several backends' outcomes (dict name -> result or Failed).

    Each backend either raised an allowed exception (``Failed``; not allowed when ``valid``,
    i.e. the call is valid by construction) or returned a result; all results agree. NaN/inf
    positions must match exactly between the backends in ``exact_nonfinite``; the others (the
    naive reference) are compared where both results are finite. Returns the first result, or
    the first Failed when every backend failed.
    """
    ok = {name: r for name, r in results.items() if not isinstance(r, Failed)}
    failed = {name: r for name, r in results.items() if isinstance(r, Failed)}
    if valid and failed:
        raise AssertionError(f"{what}: valid-by-construction call failed: {failed}")
    names = list(ok)
    for name in names[1:]:
        exact = name in exact_nonfinite and names[0] in exact_nonfinite
        assert_same(ok[name], ok[names[0]], rtol, atol, f"{what} {name} vs {names[0]}", exact)
    return ok[names[0]] if names else next(iter(failed.values()))


def tol(dtype, k=1, scale=1.0):
    """(rtol, atol) for a reduction of length k over values of magnitude ``scale``."""
    if np.dtype(dtype) == np.float64:
        return 1e-9, 1e-9 * k * scale
    return 1e-4, 1e-5 * k * scale


# ------------------------------------------------------------------------ array strategies
LAYOUTS = ("c", "c", "transposed", "negative", "strided", "fortran")


def make_array(rng, shape, dtype, layout="c", special=0.0, low=-2.0, high=2.0, integer=False):
    """An array of ``shape`` with the given memory layout and a fraction ``special`` of NaN/inf.

    layouts: c, fortran, transposed (a transposed copy viewed back), negative (negative strides
    on the last two axes), strided (every other element of a larger buffer).
    """
    shape = tuple(int(s) for s in shape)
    if integer:
        base = rng.integers(-3, 4, size=shape).astype(dtype)
    else:
        base = rng.uniform(low, high, size=shape).astype(dtype)
    if special and base.size:
        mask = rng.random(shape) < special
        picks = rng.choice(np.array([np.nan, np.inf, -np.inf], dtype=dtype), size=shape)
        base[mask] = picks[mask]
    if layout == "fortran":
        return np.asfortranarray(base)
    if layout == "transposed" and base.ndim >= 2:
        return np.ascontiguousarray(np.swapaxes(base, -1, -2)).swapaxes(-1, -2)
    if layout == "negative" and base.ndim >= 2:
        return np.ascontiguousarray(base[..., ::-1, ::-1])[..., ::-1, ::-1]
    if layout == "strided" and base.ndim >= 1:
        big = np.zeros(shape[:-1] + (2 * shape[-1],), dtype=dtype)
        big[..., ::2] = base
        return big[..., ::2]
    return base


@st.composite
def rngs(draw):
    return np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1), label="seed"))


# includes values beyond int64 (2**63, 2**70): they must be ValueErrors too, not OverflowError
BAD_INTS = [-1, 2 ** 62, 2 ** 40, 0, 1.5, "2", None, (1, 2, 3), (1,), True,
            (1.0, 1), np.float32(2), [2, -1], (2 ** 62, 1), -(2 ** 62), 2 ** 63, 2 ** 70,
            -(2 ** 70), (2 ** 64, 1)]


def bad_int(draw, label):
    """An invalid value for an int-or-pair argument: wrong type, or a size that cannot work."""
    return draw(st.sampled_from(BAD_INTS), label=label)
