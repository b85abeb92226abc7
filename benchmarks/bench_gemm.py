"""nnlite.kernels.gemm (blocked C kernels) vs numpy.matmul (OpenBLAS) on square and conv GEMMs.

    python benchmarks/bench_gemm.py [--quick] [--repeat 9] [--threads N] [--dtype float32]
                                    [--isa auto|generic|avx2|avx512] [--csv out.csv]

Both run in this process on the same preallocated operands, interleaved round-robin (STYLE
section 4.8); the table shows median GFLOP/s (FLOPs = 2*M*N*K), the best round, and the ratio
of the medians (nnlite / numpy). nnlite and the BLAS use the same thread count (``--threads``,
default ``nnlite.get_num_threads()``). ``maxdiff`` is max |nnlite - float64 matmul| scaled by
1/K (once per size). The conv rows are the im2col GEMMs of typical layers:
M = out channels, K = in channels * kh * kw, N = output pixels (batch 1).

Idle threads: nnlite's import sets OMP_WAIT_POLICY=PASSIVE and OPENBLAS_THREAD_TIMEOUT=4 unless
they are already set (nnlite/__init__.py), so that neither library's idle threads keep spinning
on the 2 cores while the other one runs; this script imports nnlite before NumPy so that the
OpenBLAS setting takes effect. The header prints both; export other values to compare.
"""
import contextlib
import os
import sys

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _timing  # noqa: E402
from nnlite import _blas  # noqa: E402
from nnlite.kernels import gemm, gemm_ops  # noqa: E402

SQUARES = [256, 512, 1024, 1536, 2048]
# label, M, K, N
CONV = [
    ("conv3x3 96->128 @28x28", 128, 96 * 9, 784),
    ("conv1x1 192->64 @112x112", 64, 192, 784 * 16),
    ("conv3x3 64->64 @56x56", 64, 576, 3136),
    ("conv1x1 64->256 @56x56", 256, 64, 3136),
    ("conv3x3 256->256 @56x56", 256, 2304, 3136),
]
COLUMNS = ["dtype", "shape", "M", "K", "N", "nnlite ms", "nnlite GF/s", "best", "numpy GF/s",
           "best ", "ratio", "maxdiff"]


def cases(quick):
    squares = SQUARES[:3] if quick else SQUARES
    return [(f"square {s}", s, s, s) for s in squares] + CONV


def bench_one(label, m, k, n, dtype, nthreads, repeat):
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (m, k)).astype(dtype)
    b = rng.uniform(-1, 1, (k, n)).astype(dtype)
    out_nn = np.empty((m, n), dtype)
    out_np = np.empty((m, n), dtype)
    times = _timing.interleave({
        "nnlite": lambda: gemm(a, b, out_nn, num_threads=nthreads),
        "numpy": lambda: np.matmul(a, b, out=out_np),
    }, repeat=repeat, warmup=2, min_time=0.05)
    flops = 2.0 * m * n * k
    diff = np.abs(out_nn - a.astype(np.float64) @ b.astype(np.float64)).max() / k
    med_nn, med_np = _timing.median(times["nnlite"]), _timing.median(times["numpy"])
    return {
        "dtype": np.dtype(dtype).name, "shape": label, "M": m, "K": k, "N": n,
        "nnlite ms": f"{med_nn * 1e3:.3f}",
        "nnlite GF/s": f"{_timing.gflops(flops, med_nn):.1f}",
        "best": f"{_timing.gflops(flops, _timing.best(times['nnlite'])):.1f}",
        "numpy GF/s": f"{_timing.gflops(flops, med_np):.1f}",
        "best ": f"{_timing.gflops(flops, _timing.best(times['numpy'])):.1f}",
        "ratio": f"{med_np / med_nn:.2f}",
        "maxdiff": f"{diff:.1e}",
    }


def main():
    p = _timing.base_parser(__doc__.splitlines()[0])
    p.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    p.add_argument("--isa", default="auto",
                   help="micro-kernel family (auto, generic, avx2, avx512)")
    args = p.parse_args()
    _timing.apply_threads(args)
    nthreads = nnlite.get_num_threads()
    repeat = min(args.repeat, 5) if args.quick else args.repeat
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    built = gemm_ops._gemm is not None
    with gemm_ops.using_microkernel(args.isa) if built else contextlib.nullcontext():
        info = gemm_ops.info()
        if built:
            extra = [
                ("gemm", f"micro-kernel {info['microkernel']} (available {info['available']}),"
                         f" OpenMP {'on' if info['openmp'] else 'off'}"),
                ("blocking f32", str(info["float32"])),
                ("blocking f64", str(info["float64"])),
            ]
        else:
            extra = [("gemm", "extension not built: nnlite.kernels.gemm runs numpy.matmul")]
        extra += [
            ("threads used", f"nnlite {nthreads}, BLAS {_blas.get_threads()} "
                             f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"),
            ("idle threads", f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
                             "OPENBLAS_THREAD_TIMEOUT="
                             f"{os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset')}"),
            ("load average", " ".join(f"{x:.2f}" for x in os.getloadavg())),
            ("protocol", f"interleaved, {repeat} rounds, median (best), ratio = numpy/nnlite "
                         "time"),
        ]
        print(_timing.header(extra))
        rows = []
        for dt in dtypes:
            for label, m, k, n in cases(args.quick):
                rows.append(bench_one(label, m, k, n, np.dtype(dt), nthreads, repeat))
                print(f"  ... {dt} {label}: {rows[-1]['nnlite GF/s']} vs "
                      f"{rows[-1]['numpy GF/s']} GF/s", file=sys.stderr, flush=True)
    print()
    _timing.print_table(rows, COLUMNS)
    if args.csv:
        _timing.write_csv(args.csv, rows, COLUMNS)


if __name__ == "__main__":
    main()
