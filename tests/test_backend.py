"""Backend selection, thread control, import hygiene and `nnlite info`."""
import os
import subprocess
import sys

import pytest

import nnlite
from nnlite import _blas


def _run(code, **env):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e,
                          timeout=120)


def test_import_prints_nothing():
    r = _run("import nnlite")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""


def test_default_backend_is_cython_when_built():
    expect = "cython" if "cython" in nnlite.available_backends() else "numpy"
    assert nnlite.backend() == expect
    assert "reference" in nnlite.available_backends()


def test_using_backend_nests_and_restores():
    before = nnlite.backend()
    with nnlite.using_backend("reference"):
        assert nnlite.backend() == "reference"
        with nnlite.using_backend("numpy"):
            assert nnlite.backend() == "numpy"
        assert nnlite.backend() == "reference"
    assert nnlite.backend() == before


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        with nnlite.using_backend("fast"):
            pass


def test_env_var_sets_default_backend():
    r = _run("import nnlite; print(nnlite.backend())", NNLITE_BACKEND="numpy")
    assert r.stdout.strip() == "numpy"
    r = _run("import nnlite", NNLITE_BACKEND="bogus")
    assert r.returncode != 0 and "NNLITE_BACKEND" in r.stderr


def test_asking_for_cython_without_extension_raises_clearly():
    code = ("import nnlite\ntry:\n    nnlite.using_backend('cython').__enter__()\n"
            "except RuntimeError as e:\n    print('ERR', e)\n")
    r = _run(code, NNLITE_NO_EXT="1")
    assert "ERR nnlite was built without its Cython extension" in r.stdout
    r = _run("import nnlite; print(nnlite.backend(), nnlite.available_backends())",
             NNLITE_NO_EXT="1")
    assert r.stdout.strip() == "numpy ['numpy', 'reference']"


def test_set_num_threads_validates_and_reaches_blas():
    old = nnlite.get_num_threads()
    try:
        nnlite.set_num_threads(1)
        assert nnlite.get_num_threads() == 1
        if _blas.get_threads() is not None:
            assert _blas.get_threads() == 1
    finally:
        nnlite.set_num_threads(old)
    with pytest.raises(ValueError, match="n >= 1, got 0"):
        nnlite.set_num_threads(0)
    with pytest.raises(TypeError):
        nnlite.set_num_threads(1.5)


def test_cli_info_reports_backend_threads_blas_and_simd():
    r = subprocess.run([sys.executable, "-m", "nnlite", "info"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    for label in ("backend", "OpenMP", "threads", "BLAS", "SIMD", "nnlite"):
        assert label in r.stdout
    assert nnlite.backend() in r.stdout
    if nnlite._config.cython_built():
        from nnlite.kernels import gemm_ops

        b = gemm_ops.blocking()
        assert f"MC {b['mc']} KC {b['kc']} NC {b['nc']}" in " ".join(r.stdout.split())
