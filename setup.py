"""Build nnlite's Cython/C extensions from csrc/.

Every ``csrc/<name>.pyx`` becomes the extension ``nnlite._<name>``. The C sources, the shared
helpers in ``csrc/core/*.c`` and the kernels named ``csrc/<name>_*.c``, are compiled ONCE into
the static library ``nnlite_core`` (build_clib, run first by build_ext) that every extension
links: one copy of the GEMM, allocation, ISA and cache detection, whichever extension calls it.

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
from setuptools.command.build_clib import build_clib
from setuptools.command.build_ext import build_ext

CORE_LIB = "nnlite_core"


class BuildExt(build_ext):
    """build_ext that builds the static core library first (plain build_ext does not)."""

    def run(self):
        if self.distribution.has_c_libraries():
            self.run_command("build_clib")
        super().run()


class BuildClib(build_clib):
    """build_clib that writes the core archive afresh: ``ar -cr`` only adds and replaces
    members, so an object of a source that was renamed or deleted would stay in an old
    archive and clash with its successor at link time."""

    def run(self):
        self.finalize_options()
        for name, _ in self.libraries or ():
            path = os.path.join(self.build_clib, f"lib{name}.a")
            if os.path.exists(path):
                os.remove(path)
        super().run()


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


_OMP_PROGRAM = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"


def _compiler_accepts(flags, src=_OMP_PROGRAM, quiet=False):
    """True when the C compiler compiles and links ``src`` (a tiny OpenMP program) with
    ``flags`` (and, with ``quiet``, says nothing: a compiler that only warns about a flag it
    ignores does not accept it)."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()[0]
    if shutil.which(cc) is None:
        return False
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.c")
        with open(path, "w") as fh:
            fh.write(src)
        try:
            r = subprocess.run([cc, path, "-o", os.path.join(d, "t")] + flags,
                               capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return False
        return r.returncode == 0 and not (quiet and r.stderr.strip())


def _core_sources():
    """csrc/core/*.c plus the csrc/<name>_*.c kernels of every csrc/<name>.pyx (not the .c files
    Cython writes next to the .pyx)."""
    srcs = sorted(glob.glob(os.path.join("csrc", "core", "*.c")))
    for pyx in sorted(glob.glob(os.path.join("csrc", "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        srcs += sorted(glob.glob(os.path.join("csrc", f"{name}_*.c")))
    return srcs


def _headers():
    return sorted(glob.glob(os.path.join("csrc", "*.h")) +
                  glob.glob(os.path.join("csrc", "core", "*.h")))


def build_config():
    """(extensions, libraries) for setup(); both empty with NNLITE_NO_EXT."""
    if _flag("NNLITE_NO_EXT"):
        print("nnlite: NNLITE_NO_EXT set, building the pure-NumPy package", file=sys.stderr)
        return [], []
    from Cython.Build import cythonize
    from setuptools import Extension

    debug = _flag("NNLITE_CYTHON_DEBUG")
    sanitize = _flag("NNLITE_SANITIZE")
    cflags = ["-O0", "-g"] if debug or sanitize else ["-O3"]
    cflags += ["-fno-strict-aliasing", "-Wno-unused-function", "-Wno-unreachable-code"]
    lflags = []
    if not _flag("NNLITE_PORTABLE"):
        cflags.append("-march=native")
    # The vector kernels written with GCC vector arithmetic (acc += w * x) promise the bits of
    # the GEMM's explicit-FMA micro-kernels, so every such multiply-add must become one FMA.
    # GCC's tuning for AMD Zen (-march=native on Zen 2-4, -mtune=znver*) leaves some FMA
    # chains as a multiply and an add (its avoid-fma-chains heuristic): an AVX2 build for Zen 3
    # (-march=znver3, run on a Zen 4 with AVX-512 hidden from CPUID) gave the fused
    # MobileNetV2 stem other bits than the conv it replaces.
    fma_param = ["--param", "avoid-fma-max-bits=0"]
    if _compiler_accepts(fma_param, "int main(void){return 0;}\n", quiet=True):
        cflags += fma_param
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
        if os.name != "nt":
            # the thread pool of csrc/core/nnl_pool.c (POSIX threads)
            cflags.append("-pthread")
            lflags.append("-pthread")
    macros.append(("NNLITE_OPENMP", "1" if openmp else "0"))
    includes = ["csrc", os.path.join("csrc", "core")]
    core_srcs, headers = _core_sources(), _headers()
    # hidden visibility: each extension gets its own copy of what it uses from the archive,
    # and none of it is exported from the extension's shared object
    libraries = [(CORE_LIB, {"sources": core_srcs, "include_dirs": includes, "macros": macros,
                             "cflags": cflags + ["-fvisibility=hidden"],
                             "obj_deps": {"": headers}})]
    exts = []
    for pyx in sorted(glob.glob(os.path.join("csrc", "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        exts.append(Extension(f"nnlite._{name}", [pyx], include_dirs=includes,
                              extra_compile_args=cflags, extra_link_args=lflags,
                              define_macros=macros, libraries=[CORE_LIB],
                              depends=core_srcs + headers))
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "cdivision": True,
        "embedsignature": True,
    }
    exts = cythonize(exts, compiler_directives=directives,
                     compile_time_env={"NNLITE_OPENMP": openmp},
                     include_path=["csrc"], quiet=True)
    return exts, libraries


_EXTS, _LIBS = build_config()
setup(ext_modules=_EXTS, libraries=_LIBS, cmdclass={"build_ext": BuildExt, "build_clib": BuildClib})
