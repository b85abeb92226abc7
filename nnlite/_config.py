"""Backend selection and thread control.

Resolution order for the backend of an op call:
``nnlite.using_backend(...)`` context (innermost wins) -> ``NNLITE_BACKEND`` env var
(read once at import) -> ``'auto'`` (cython when the extension is built, else numpy).
``'reference'`` (the naive loops) is selectable explicitly and never chosen automatically.
"""
import contextlib
import os
import threading
import time

BACKENDS = ("cython", "numpy", "reference")



class ThreadSetting:
    """A setting each thread overrides for a block: ``with setting.use(value):`` pushes it on
    this thread's stack (innermost wins); ``setting.get()`` is the innermost value or None."""

    def __init__(self):
        self._local = threading.local()
        # False until some thread first overrides the setting: until then every thread's
        # stack is empty and ``get`` answers without a thread-local lookup (it is called per
        # op, by every kernel wrapper)
        self._pushed = False

    @contextlib.contextmanager
    def use(self, value):
        self._pushed = True
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        stack.append(value)
        try:
            yield value
        finally:
            stack.pop()

    def get(self):
        if not self._pushed:
            return None
        stack = getattr(self._local, "stack", None)
        return stack[-1] if stack else None


_backend = ThreadSetting()
_cython_error = None
_cython_ok = None


def cython_built():
    """True when the compiled extension modules import."""
    global _cython_ok, _cython_error
    if _cython_ok is None:
        if os.environ.get("NNLITE_NO_EXT", "") not in ("", "0"):
            _cython_ok, _cython_error = False, "NNLITE_NO_EXT is set"
        else:
            try:
                from . import _info  # noqa: F401  (smallest extension; built with the others)

                _cython_ok = True
            except ImportError as exc:  # pragma: no cover - depends on the build
                _cython_ok, _cython_error = False, str(exc)
    return _cython_ok


def available_backends():
    """Backends usable in this installation, fastest first."""
    return (["cython"] if cython_built() else []) + ["numpy", "reference"]


def _check_name(name):
    if not isinstance(name, str) or name not in BACKENDS + ("auto",):
        raise ValueError(
            f"unknown backend {name!r}; expected one of {BACKENDS + ('auto',)}"
        )
    if name == "cython" and not cython_built():
        raise RuntimeError(
            "nnlite was built without its Cython extension "
            f"({_cython_error}); reinstall without NNLITE_NO_EXT=1, or use backend 'numpy'"
        )
    return name


def _resolve(name):
    if name == "auto":
        return "cython" if cython_built() else "numpy"
    return name


_default = os.environ.get("NNLITE_BACKEND", "auto") or "auto"
if _default not in BACKENDS + ("auto",):
    raise ValueError(f"NNLITE_BACKEND={_default!r} is not one of {BACKENDS + ('auto',)}")


def backend():
    """The backend that an op called now would use: 'cython', 'numpy' or 'reference'."""
    chosen = _backend.get()
    if chosen is not None:
        return chosen
    global _default
    if _default == "cython" and not cython_built():
        _check_name("cython")
    return _resolve(_default)


@contextlib.contextmanager
def using_backend(name):
    """Context manager selecting the backend for op calls made in this thread.

    >>> with nnlite.using_backend("reference"):
    ...     y = F.conv2d(x, w)        # naive loops, for study
    """
    with _backend.use(_resolve(_check_name(name))) as chosen:
        yield chosen


# --------------------------------------------------------------------- threads
# available_memory_bytes re-reads /proc/meminfo at most this often (seconds): a conv calls it
# for every column workspace, and reading the file costs ~30 us, a third of a small conv's time
# in a training step on 8x8 maps (examples/train_digits.py)
_MEMINFO_MAX_AGE = 0.25
_meminfo = [None, -1.0]     # [bytes or None, time.monotonic() of the read]
_meminfo_lock = threading.Lock()


def _read_meminfo():
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory_bytes():
    """MemAvailable from /proc/meminfo (None where the platform does not say): what the checks
    before large allocations (conv column workspaces, ONNX shape ops) compare against. The
    value is at most ``_MEMINFO_MAX_AGE`` seconds old."""
    now = time.monotonic()
    with _meminfo_lock:
        value, when = _meminfo
        if when >= 0 and now - when < _MEMINFO_MAX_AGE:
            return value
    value = _read_meminfo()
    with _meminfo_lock:
        _meminfo[0], _meminfo[1] = value, now
    return value


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


_num_threads = None


_budget = ThreadSetting()


_pool_hold = None


def pool_hold(delta):
    """Add ``delta`` to the hold count of the kernels' thread pool (``csrc/core/nnl_pool.c``):
    an inference plan's run holds it (+1 on entry, -1 on exit), and while it is held the pool's
    workers spin between the run's kernels instead of sleeping (waking a sleeping core costs
    tens of microseconds per kernel, milliseconds on a busy virtual machine). A no-op without
    the compiled extensions."""
    global _pool_hold
    if _pool_hold is None:
        if cython_built():
            from . import _info

            _pool_hold = _info.pool_hold
        else:
            _pool_hold = _no_pool
    _pool_hold(delta)


def _no_pool(delta):
    return None


def thread_budget(n):
    """Within this block (this thread only) nnlite's kernels use at most ``n`` threads: the
    inference plan runs independent branches side by side, each on one core."""
    return _budget.use(n)


def get_num_threads():
    """Threads used by nnlite's kernels and by the BLAS that nnlite calls."""
    cap = _budget.get()
    if cap is not None:
        return min(cap, _num_threads if _num_threads is not None else _get_global())
    return _get_global()


def _get_global():
    global _num_threads
    if _num_threads is None:
        env = os.environ.get("NNLITE_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
        try:
            n = int(env) if env else _cpu_count()
        except ValueError:
            n = _cpu_count()
        _num_threads = max(1, n)
    return _num_threads


def set_num_threads(n):
    """Set the thread count for nnlite's kernels (its thread pool and its OpenMP regions) and
    for the BLAS (OpenBLAS/MKL)."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads expects an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads expects n >= 1, got {n}")
    _num_threads = n
    from . import _blas

    _blas.set_threads(n)
