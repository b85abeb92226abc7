"""CI step: the fuzz suite against an AddressSanitizer + UndefinedBehaviorSanitizer build.

Runs ``tools/sanitize.sh -m fuzz`` (a fresh out-of-tree sanitized build in a temporary
directory, then every fuzz test with libasan preloaded; about 40 s on the 2-core CI machine) and
requires a clean pass with no sanitizer report. It runs when ``CI`` is set (as in CI) or
``NNLITE_SANITIZE_TEST=1``; elsewhere, and where it cannot work (no Linux, no compiled
extension, no gcc/libasan, or already inside a sanitized run), it skips with the reason. The full
sanitizer run (kernel, fuzz, concurrency, numerics, inference and ONNX tests) is
``tools/sanitize.sh`` (README, "Reliability checks").
"""
import os
import shutil
import subprocess
import sys

import pytest

import nnlite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "sanitize.sh")


def _why_not():
    if os.environ.get("NNLITE_SANITIZED"):
        return "already inside a sanitized run"
    flag = os.environ.get("CI", "").lower() in ("1", "true", "yes") or \
        os.environ.get("NNLITE_SANITIZE_TEST", "") not in ("", "0")
    if not flag:
        return "runs in CI (CI=true) or with NNLITE_SANITIZE_TEST=1; locally: tools/sanitize.sh"
    if not sys.platform.startswith("linux"):
        return "the sanitizer script targets Linux"
    if "cython" not in nnlite.available_backends():
        return "nnlite was built without its extension (nothing to sanitize)"
    if not os.path.exists(SCRIPT) or shutil.which("bash") is None:
        return "tools/sanitize.sh or bash is missing"
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        return f"no C compiler {cc!r}"
    lib = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True)
    if lib.returncode != 0 or not os.path.isabs(lib.stdout.strip()):
        return f"{cc} has no AddressSanitizer runtime (libasan.so)"
    return None


@pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))
def test_fuzz_suite_is_sanitizer_clean(tmp_path):
    build = tmp_path / "nnlite-asan"
    env = dict(os.environ, NNLITE_SAN_DIR=str(build))
    try:
        res = subprocess.run(["bash", SCRIPT, "-m", "fuzz", "-x"], env=env,
                             capture_output=True, text=True, timeout=1200)
    finally:
        shutil.rmtree(build, ignore_errors=True)  # ~100 MB of sanitized build products
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    assert "no AddressSanitizer/UndefinedBehaviorSanitizer reports" in res.stdout, out[-6000:]
