"""Find the BLAS that NumPy loaded and control its thread count (no threadpoolctl needed).

Only OpenBLAS (the library NumPy's wheels ship, possibly with a ``scipy_`` symbol prefix and a
``64_`` suffix) and MKL are recognised; anything else is reported as unknown and left alone.
"""
import ctypes
import os

_lib = None
_kind = None
_path = None
_searched = False

_OPENBLAS_SET = ("openblas_set_num_threads", "openblas_set_num_threads64_",
                 "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads")
_OPENBLAS_GET = ("openblas_get_num_threads", "openblas_get_num_threads64_",
                 "scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads")
_OPENBLAS_CFG = ("openblas_get_config", "openblas_get_config64_",
                 "scipy_openblas_get_config64_", "scipy_openblas_get_config")


def _loaded_libraries():
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "/" in line and ".so" in line}
    except OSError:  # pragma: no cover - non-Linux
        return []
    return sorted(paths)


def _symbol(lib, names):
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


def _find():
    global _lib, _kind, _path, _searched
    if _searched:
        return
    _searched = True
    import numpy  # noqa: F401  (make sure NumPy's BLAS is loaded)

    for path in _loaded_libraries():
        base = os.path.basename(path).lower()
        if "openblas" in base:
            kind = "openblas"
        elif "mkl_rt" in base:
            kind = "mkl"
        else:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:  # pragma: no cover
            continue
        names = _OPENBLAS_SET if kind == "openblas" else ("MKL_Set_Num_Threads",)
        if _symbol(lib, names) is not None:
            _lib, _kind, _path = lib, kind, path
            return


def info():
    """A one-line description of the BLAS NumPy uses (name, config, threads)."""
    _find()
    if _lib is None:
        return "unknown BLAS (thread count not controllable by nnlite)"
    if _kind == "openblas":
        cfg = _symbol(_lib, _OPENBLAS_CFG)
        text = "OpenBLAS"
        if cfg is not None:
            cfg.restype = ctypes.c_char_p
            text = cfg().decode(errors="replace")
        return f"{text} ({os.path.basename(_path)}), threads={get_threads()}"
    return f"MKL ({os.path.basename(_path)}), threads={get_threads()}"


def get_threads():
    _find()
    if _lib is None:
        return None
    fn = _symbol(_lib, _OPENBLAS_GET if _kind == "openblas" else ("MKL_Get_Max_Threads",))
    return int(fn()) if fn is not None else None


def set_threads(n):
    """Set the BLAS thread count; returns False when the BLAS is not controllable."""
    _find()
    if _lib is None:
        return False
    fn = _symbol(_lib, _OPENBLAS_SET if _kind == "openblas" else ("MKL_Set_Num_Threads",))
    fn(ctypes.c_int(int(n)))
    return True
