"""nnlite.kernels.gemm (blocked C kernels) vs numpy.matmul (OpenBLAS) on square and conv GEMMs.

    python benchmarks/bench_gemm.py [--quick] [--repeat 9] [--threads N] [--dtype float32]
                                    [--isa auto|generic|avx2|avx512] [--csv out.csv]
                                    [--only square|conv|pointwise] [--scaling]
                                    [--clock wall|cpu] [--plan]

Both run in this process on the same preallocated operands, interleaved round-robin (STYLE
section 4.8); the table shows median GFLOP/s (FLOPs = 2*M*N*K), the best round, and the ratio
of the medians (nnlite / numpy). nnlite and the BLAS use the same thread count (``--threads``,
default ``nnlite.get_num_threads()``). ``maxdiff`` is max |nnlite - float64 matmul| scaled by
1/K (once per size). The conv rows are the im2col GEMMs of typical layers:
M = out channels, K = in channels * kh * kw, N = output pixels (batch 1); the pointwise rows
are the 1x1 convs of ResNet-50, GoogLeNet and MobileNetV2 at batch 1 (small M, K and N, where
the thread partition and the per-call costs matter most).

``--clock cpu`` (one thread only): time by this process's CPU time instead of wall time, for
single-thread ratios on a machine shared with other jobs (a descheduled stretch then costs
neither side; cache and memory contention still do).

``--plan`` (pointwise shapes): each product called as the inference plan calls it
(``nnlite._infer.kernels.gemm_into``: weights packed once, bias per output channel + ReLU fused;
a narrow product, fewer than 64 pixels, run transposed into ``out.T``) vs NumPy doing the same
(matmul, += bias, ReLU in place). For the narrow ones also "via temp": the same transposed
product into a row-major temporary then copied into out (what the GEMM did before it wrote a
column-major out in place).

``--scaling``: for each shape, nnlite and NumPy each at 1 thread and at ``--threads`` threads
(default 2), all four interleaved in one process; prints both ratios vs NumPy with the same
thread count and each library's speed-up from its extra threads.

Idle threads: nnlite's import sets GOMP_SPINCOUNT=1000 (a spin of 15-20 us on Zen 4) and
OPENBLAS_THREAD_TIMEOUT=4 unless they are already set (nnlite/__init__.py), so that neither
library's idle threads keep spinning on the 2 cores while the other one runs; this script imports nnlite before NumPy so that the
OpenBLAS setting takes effect. The header prints both; export other values to compare.
"""
import contextlib
import os
import sys
import time

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
# the 1x1 convs of CNN inference at batch 1: label, M, K, N
POINTWISE = [
    ("rn50 1x1 64->64 @56x56", 64, 64, 3136),
    ("rn50 1x1 64->256 @56x56", 256, 64, 3136),
    ("rn50 1x1 256->64 @56x56", 64, 256, 3136),
    ("rn50 1x1 256->128 @56x56", 128, 256, 3136),
    ("rn50 1x1 128->512 @28x28", 512, 128, 784),
    ("rn50 1x1 512->128 @28x28", 128, 512, 784),
    ("rn50 1x1 1024->256 @14x14", 256, 1024, 196),
    ("rn50 1x1 256->1024 @14x14", 1024, 256, 196),
    ("goog 1x1 192->64 @28x28", 64, 192, 784),
    ("goog 1x1 480->192 @14x14", 192, 480, 196),
    ("mbv2 1x1 24->144 @56x56", 144, 24, 3136),
    ("mbv2 1x1 144->24 @56x56", 24, 144, 3136),
    ("mbv2 1x1 384->64 @14x14", 64, 384, 196),
    ("rn50 1x1 512->2048 @7x7", 2048, 512, 49),
    ("rn50 1x1 2048->512 @7x7", 512, 2048, 49),
    ("mbv2 1x1 320->1280 @7x7", 1280, 320, 49),
    ("goog 1x1 832->384 @7x7", 384, 832, 49),
]
COLUMNS = ["dtype", "shape", "M", "K", "N", "nnlite ms", "nnlite GF/s", "best", "numpy GF/s",
           "best ", "ratio", "maxdiff"]
PLAN_COLUMNS = ["dtype", "shape", "M", "K", "N", "nnlite ms", "nnlite GF/s", "best", "numpy GF/s",
                "ratio", "via temp ms", "temp/direct"]
SCALING_COLUMNS = ["dtype", "shape", "M", "K", "N", "nnlite 1T ms", "ratio 1T", "ratio xT",
                   "nnlite xT/1T", "numpy xT/1T"]


def cases(quick, only=None):
    squares = SQUARES[:3] if quick else SQUARES
    groups = {
        "square": [(f"square {s}", s, s, s) for s in squares],
        "conv": CONV,
        "pointwise": POINTWISE[::3] if quick else POINTWISE,
    }
    return [c for name, rows in groups.items() if only in (None, name) for c in rows]


def operands(m, k, n, dtype):
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (m, k)).astype(dtype)
    b = rng.uniform(-1, 1, (k, n)).astype(dtype)
    return a, b


def bench_one(label, m, k, n, dtype, nthreads, repeat, clock=None):
    a, b = operands(m, k, n, dtype)
    out_nn = np.empty((m, n), dtype)
    out_np = np.empty((m, n), dtype)
    times = _timing.interleave({
        "nnlite": lambda: gemm(a, b, out_nn, num_threads=nthreads),
        "numpy": lambda: np.matmul(a, b, out=out_np),
    }, repeat=repeat, warmup=2, min_time=0.05, clock=clock)
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


def bench_plan(label, m, k, n, dtype, nthreads, repeat, clock=None):
    """relu(W @ X + bias) as the inference plan computes it vs NumPy (and, for a narrow
    product, vs the same transposed product through a row-major temporary)."""
    from nnlite._infer import kernels as _ik
    a, b = operands(m, k, n, dtype)
    bias = np.random.default_rng(1).uniform(-1, 1, m).astype(dtype)
    packed = _ik.pack_weights(a, n)
    narrow = _ik._narrow(m, n)
    out_nn = np.empty((m, n), dtype)
    out_np = np.empty((m, n), dtype)
    tmp = np.empty((n, m), dtype)

    def plan():
        # exactly gemm_into's call (with this benchmark's thread count)
        if narrow:
            gemm(b, packed, out_nn.T, trans_a=True, bias=bias, bias_axis=1,
                 activation="relu", num_threads=nthreads)
        else:
            gemm(packed, b, out_nn, bias=bias, activation="relu", num_threads=nthreads)

    def via_temp():
        gemm(b, packed, tmp, trans_a=True, bias=bias, bias_axis=1, activation="relu",
             num_threads=nthreads)
        out_nn[...] = tmp.T

    def numpy_plan():
        np.matmul(a, b, out=out_np)
        np.add(out_np, bias[:, None], out=out_np)
        np.maximum(out_np, 0, out=out_np)

    cands = {"nnlite": plan, "numpy": numpy_plan}
    if narrow:
        cands["temp"] = via_temp
    times = _timing.interleave(cands, repeat=repeat, warmup=2, min_time=0.05, clock=clock)
    plan()
    numpy_plan()
    ref = np.maximum(a.astype(np.float64) @ b.astype(np.float64) + bias[:, None], 0)
    assert np.abs(out_nn - ref).max() / k < 1e-5, label
    flops = 2.0 * m * n * k
    med = {name: _timing.median(ts) for name, ts in times.items()}
    return {
        "dtype": np.dtype(dtype).name, "shape": label, "M": m, "K": k, "N": n,
        "nnlite ms": f"{med['nnlite'] * 1e3:.3f}",
        "nnlite GF/s": f"{_timing.gflops(flops, med['nnlite']):.1f}",
        "best": f"{_timing.gflops(flops, _timing.best(times['nnlite'])):.1f}",
        "numpy GF/s": f"{_timing.gflops(flops, med['numpy']):.1f}",
        "ratio": f"{med['numpy'] / med['nnlite']:.2f}",
        "via temp ms": f"{med['temp'] * 1e3:.3f}" if narrow else "-",
        "temp/direct": f"{med['temp'] / med['nnlite']:.2f}" if narrow else "-",
    }


def bench_scaling(label, m, k, n, dtype, nthreads, repeat):
    """nnlite and NumPy at 1 and at nthreads threads, the four interleaved."""
    a, b = operands(m, k, n, dtype)
    out = np.empty((m, n), dtype)

    def numpy_at(t):
        def run():
            _blas.set_threads(t)
            np.matmul(a, b, out=out)
        return run

    times = _timing.interleave({
        "nn1": lambda: gemm(a, b, out, num_threads=1),
        "nnx": lambda: gemm(a, b, out, num_threads=nthreads),
        "np1": numpy_at(1),
        "npx": numpy_at(nthreads),
    }, repeat=repeat, warmup=2, min_time=0.05)
    _blas.set_threads(nthreads)
    med = {name: _timing.median(ts) for name, ts in times.items()}
    return {
        "dtype": np.dtype(dtype).name, "shape": label, "M": m, "K": k, "N": n,
        "nnlite 1T ms": f"{med['nn1'] * 1e3:.3f}",
        "ratio 1T": f"{med['np1'] / med['nn1']:.2f}",
        "ratio xT": f"{med['npx'] / med['nnx']:.2f}",
        "nnlite xT/1T": f"{med['nn1'] / med['nnx']:.2f}",
        "numpy xT/1T": f"{med['np1'] / med['npx']:.2f}",
    }


def main():
    p = _timing.base_parser(__doc__.splitlines()[0])
    p.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    p.add_argument("--isa", default="auto",
                   help="micro-kernel family (auto, generic, avx2, avx512)")
    p.add_argument("--only", choices=["square", "conv", "pointwise"], default=None,
                   help="run one group of shapes")
    p.add_argument("--scaling", action="store_true",
                   help="1 thread vs --threads (default 2) for both libraries")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time, or this process's CPU time (one thread only)")
    p.add_argument("--plan", action="store_true",
                   help="pointwise shapes called as the inference plan calls them")
    args = p.parse_args()
    if args.plan:
        args.only = "pointwise"
    if args.scaling and args.threads is None:
        args.threads = 2
    if args.clock == "cpu" and (args.scaling or args.threads != 1):
        p.error(f"--clock cpu needs --threads 1 and no --scaling (CPU time adds up the threads;"
                f" got --threads {args.threads}{' --scaling' if args.scaling else ''})")
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
            ("idle threads", f"{_timing.omp_idle()}, OPENBLAS_THREAD_TIMEOUT="
                             f"{os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset')}"),
            ("load average", " ".join(f"{x:.2f}" for x in os.getloadavg())),
            ("protocol", f"interleaved, {repeat} rounds, median (best), ratio = numpy/nnlite "
                         "time" + (f"; xT = {nthreads} threads, xT/1T = speed-up"
                                   if args.scaling else "")
                         + ("; CPU time of the process" if args.clock == "cpu" else "")),
        ]
        print(_timing.header(extra))
        rows = []
        for dt in dtypes:
            for label, m, k, n in cases(args.quick, args.only):
                if args.plan:
                    rows.append(bench_plan(label, m, k, n, np.dtype(dt), nthreads, repeat,
                                           time.process_time if args.clock == "cpu" else None))
                elif args.scaling:
                    rows.append(bench_scaling(label, m, k, n, np.dtype(dt), nthreads, repeat))
                else:
                    rows.append(bench_one(label, m, k, n, np.dtype(dt), nthreads, repeat,
                                          time.process_time if args.clock == "cpu" else None))
                print(f"  ... {dt} {label}", file=sys.stderr, flush=True)
    print()
    columns = PLAN_COLUMNS if args.plan else SCALING_COLUMNS if args.scaling else COLUMNS
    _timing.print_table(rows, columns)
    if args.csv:
        _timing.write_csv(args.csv, rows, columns)


if __name__ == "__main__":
    main()
