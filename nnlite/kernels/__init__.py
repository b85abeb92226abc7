"""Kernel dispatch: one table ``{op: {backend: callable}}`` over arrays (no autograd here).

Each kernel family registers its implementations from its own modules
(``<family>_numpy.py``, ``<family>_cython.py``, ``<family>_reference.py``); a Cython entry exists
only when its extension imports. ``impl(op)`` returns the callable for the active backend
(``nnlite.backend()``); an op without a Cython entry runs its NumPy implementation under the
'cython' backend (its hot loop is already a single NumPy/BLAS call there).
"""
from .._config import backend as _active_backend

_IMPLS = {}


def register(op, backend):
    """Decorator: register ``fn`` as ``op``'s implementation for ``backend``."""
    def deco(fn):
        _IMPLS.setdefault(op, {})[backend] = fn
        return fn
    return deco


def impl(op, backend=None):
    """The implementation of ``op`` for ``backend`` (default: the active one)."""
    b = backend or _active_backend()
    table = _IMPLS.get(op)
    if table is None:
        raise KeyError(f"no kernel registered for op {op!r}")
    fn = table.get(b)
    if fn is None and b == "cython":
        fn = table.get("numpy")
    if fn is None:
        raise KeyError(f"op {op!r} has no {b!r} implementation (has {sorted(table)})")
    return fn


def implementations(op):
    """All registered implementations of ``op`` as a dict backend -> callable (for tests)."""
    return dict(_IMPLS.get(op, {}))


def _load_families():
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{info.name}")


_load_families()
from .gemm_ops import gemm, gemm_batched  # noqa: E402
