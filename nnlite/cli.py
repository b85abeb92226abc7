"""The ``nnlite`` command line: ``nnlite info``, ``nnlite demo`` (more subcommands register here)."""
import argparse
import os
import platform
import sys

import numpy as np

import nnlite

_SIMD = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
         "neon", "asimd", "sve")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features():
    """SIMD features this CPU reports (from /proc/cpuinfo, else NumPy's CPU dispatch table)."""
    flags = set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    if not flags:
        try:
            from numpy._core._multiarray_umath import __cpu_features__ as feats
        except ImportError:  # pragma: no cover - older NumPy
            feats = {}
        flags = {k.lower() for k, v in feats.items() if v}
    return [f for f in _SIMD if f in flags]


def info_lines():
    """The facts ``nnlite info`` prints, as (label, value) pairs."""
    from . import _blas

    built = nnlite._config.cython_built()
    if built:
        from . import _info

        omp = "on" if _info.openmp_enabled() else "off (kernels run serially)"
    else:
        omp = "n/a (extension not built)"
    lines = [
        ("nnlite", nnlite.__version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("numpy", np.__version__),
        ("backend", nnlite.backend()),
        ("available backends", ", ".join(nnlite.available_backends())),
        ("extension", "built" if built else f"not built ({nnlite._config._cython_error})"),
        ("OpenMP", omp),
        ("threads", str(nnlite.get_num_threads())),
        ("BLAS", _blas.info()),
        ("BLAS idle", nnlite._BLAS_IDLE),
        ("CPU", f"{cpu_name()}, {os.cpu_count()} logical cores"),
        ("SIMD", ", ".join(cpu_features()) or "none detected"),
    ]
    if built:
        from .kernels import gemm_ops

        b = gemm_ops.blocking()
        c = b["caches"]
        lines.append(("GEMM", f"{b['mr']}x{b['nr']} register tile, MC {b['mc']} KC {b['kc']} "
                              f"NC {b['nc']} (float32), from caches L1d {c['l1d'] >> 10}K "
                              f"L2 {c['l2'] >> 10}K L3/core {c['l3'] >> 10}K ({c['source']})"))
    try:
        from . import onnx as _onnx  # optional, grows with the ONNX importer

        lines.append(("ONNX import", _onnx.support_summary()))
        lines.append(("ONNX ops", ", ".join(_onnx.supported_ops())))
    except Exception:  # noqa: BLE001 - the importer is optional
        pass
    return lines


def _wrapped(label, value, width, columns):
    """``label`` padded to ``width``, then ``value`` wrapped at ``columns`` (continuation lines
    indented under the value; words such as op names are never split)."""
    import textwrap

    lead = f"{label:<{width}}  "
    return textwrap.fill(value, width=max(columns, len(lead) + 20), initial_indent=lead,
                         subsequent_indent=" " * len(lead), break_long_words=False,
                         break_on_hyphens=False)


def cmd_info(args):
    import shutil

    rows = info_lines()
    width = max(len(k) for k, _ in rows)
    columns = min(shutil.get_terminal_size((100, 24)).columns, 100)
    for k, v in rows:
        print(_wrapped(k, v, width, columns))
    return 0


def cmd_demo(args):
    from .demo import run

    return run(quick=args.quick)


def build_parser():
    p = argparse.ArgumentParser(prog="nnlite", description="nnlite: a from-scratch CPU "
                                "convolution engine on NumPy with Cython/C kernels")
    p.add_argument("--version", action="version", version=f"nnlite {nnlite.__version__}")
    p.add_argument("--threads", type=int, default=None, help="threads for kernels and BLAS")
    p.add_argument("--backend", choices=["auto", "cython", "numpy", "reference"], default=None)
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("info", help="version, backend, OpenMP, threads, BLAS, CPU SIMD features, "
                       "the ONNX ops nnlite imports")
    s.set_defaults(func=cmd_info)
    s = sub.add_parser("demo", help="what nnlite does: 1x1 vs 3x3 cost, a model summary, timing")
    s.add_argument("--quick", action="store_true", help="smaller sizes")
    s.set_defaults(func=cmd_demo)
    for register in _command_registrars():
        register(sub)
    return p


def _command_registrars():
    """``register`` of every module in nnlite/commands/ (run, bench, summary, ...)."""
    import importlib
    import pkgutil

    from . import commands

    out = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            out.append(importlib.import_module(f"{commands.__name__}.{info.name}").register)
    return out


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:
        nnlite.set_num_threads(args.threads)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    if args.backend and args.backend != "auto":
        with nnlite.using_backend(args.backend):
            return args.func(args)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
