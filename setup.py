"""Build nnlite's Cython/C extensions from csrc/.

Every ``csrc/<name>.pyx`` becomes the extension ``nnlite._<name>``; C files named
``csrc/<name>_*.c`` are compiled into that same extension.

Environment switches:
  NNLITE_NO_EXT=1        install the pure-NumPy package (no compiler needed)
  NNLITE_PORTABLE=1      do not add -march=native (for wheels that move between machines)
  NNLITE_NO_OPENMP=1     build without OpenMP (kernels stay correct, run serially)
  NNLITE_CYTHON_DEBUG=1  bounds/wraparound checks on, -O0 -g
  NNLITE_SANITIZE=1      compile and link with -fsanitize=address,undefined (see README)
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from setuptools import setup


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


def _compiler_accepts(flags):
    """True when the C compiler compiles and links a tiny OpenMP program with ``flags``."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()[0]
    if shutil.which(cc) is None:
        return False
    src = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.c")
        with open(path, "w") as fh:
            fh.write(src)
        try:
            r = subprocess.run([cc, path, "-o", os.path.join(d, "t")] + flags,
                               capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return False
        return r.returncode == 0


def extensions():
    if _flag("NNLITE_NO_EXT"):
        print("nnlite: NNLITE_NO_EXT set, building the pure-NumPy package", file=sys.stderr)
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

    debug = _flag("NNLITE_CYTHON_DEBUG")
    sanitize = _flag("NNLITE_SANITIZE")
    cflags = ["-O0", "-g"] if debug or sanitize else ["-O3"]
    cflags += ["-fno-strict-aliasing", "-Wno-unused-function", "-Wno-unreachable-code"]
    lflags = []
    if not _flag("NNLITE_PORTABLE"):
        cflags.append("-march=native")
    if sanitize:
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
               "-fno-sanitize-recover=undefined"]
        cflags += san
        lflags += san
    openmp = not _flag("NNLITE_NO_OPENMP") and _compiler_accepts(["-fopenmp"])
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    if openmp:
        cflags.append("-fopenmp")
        lflags.append("-fopenmp")
    macros.append(("NNLITE_OPENMP", "1" if openmp else "0"))
    exts = []
    for pyx in sorted(glob.glob(os.path.join("csrc", "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        extra_c = sorted(glob.glob(os.path.join("csrc", f"{name}_*.c")))
        exts.append(Extension(f"nnlite._{name}", [pyx] + extra_c, include_dirs=["csrc"],
                              extra_compile_args=cflags, extra_link_args=lflags,
                              define_macros=macros))
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "cdivision": True,
        "embedsignature": True,
    }
    return cythonize(exts, compiler_directives=directives,
                     compile_time_env={"NNLITE_OPENMP": openmp},
                     include_path=["csrc"], quiet=True)


setup(ext_modules=extensions())
