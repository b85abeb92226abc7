"""Kernel dispatch: one table ``{op: {backend: callable}}`` over arrays (no autograd here).

Each kernel family registers its implementations from its own modules
(``<family>_numpy.py``, ``<family>_cython.py``, ``<family>_reference.py``); a Cython entry exists
only when its extension imports. ``impl(op)`` returns the callable for the active backend
(``nnlite.backend()``); an op without a Cython entry runs its NumPy implementation under the
'cython' backend (its hot loop is already a single NumPy/BLAS call there).
"""
import numpy as np

from .._config import backend as _active_backend
from .._registry import Registry

_IMPLS = Registry("array kernel")   # (op, backend) -> callable


def register(op, backend, when=True):
    """Decorator: register ``fn`` as ``op``'s implementation for ``backend`` (not when ``when``
    is false: a native kernel whose extension is not built)."""
    return _IMPLS.register((op, backend), when=when)


def impl(op, backend=None):
    """The implementation of ``op`` for ``backend`` (default: the active one)."""
    b = backend or _active_backend()
    fn = _IMPLS.get((op, b))
    if fn is None and b == "cython":
        fn = _IMPLS.get((op, "numpy"))
    if fn is None:
        have = implementations(op)
        if not have:
            raise KeyError(f"no kernel registered for op {op!r}")
        raise KeyError(f"op {op!r} has no {b!r} implementation (has {sorted(have)})")
    return fn


_FUSED_NAMES = {"float32": "float", "float64": "double"}


def specialized(fn, dtype):
    """``fn``, a native function fused over float/double (a Cython ``floating`` def), resolved
    once for ``dtype``: calls then skip Cython's per-call dispatch on the arguments' types
    (about 3 us a call on Intel Emerald Rapids; the steps of an inference plan, bound once,
    call their kernels this way) and take arrays of that dtype only. Any other callable, or a
    dtype it has no version for, comes back as it is."""
    sigs = getattr(fn, "__signatures__", None)
    name = _FUSED_NAMES.get(np.dtype(dtype).name)
    return fn[name] if sigs and name in sigs else fn


def implementations(op):
    """All registered implementations of ``op`` as a dict backend -> callable (for tests)."""
    return {b: fn for (o, b), fn in _IMPLS.items() if o == op}


def _load_families():
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{info.name}")


_load_families()
from .gemm_ops import gemm, gemm_batched  # noqa: E402
