"""nnlite's GEMM on 1 vs 2 threads: the 1x1 convs of CNN inference at batch 1 (0.5M-100M
multiply-adds), called as the inference plan calls them.

    python benchmarks/bench_gemm_threads.py [--calls 300] [--isa auto|avx2|avx512] [--big]

Each product is a pointwise conv of MobileNetV2, GoogLeNet or ResNet-50 (224x224 input):
W (M out channels x K in channels) @ X (K x N pixels), bias per row, ReLU, the weights packed
once; exactly the call of ``nnlite._infer.kernels.gemm_into`` (products with fewer than 64
columns and at least 64 rows run transposed, the weights then packed as B), with
``num_threads`` 1 or 2. The calls alternate (1 thread, 2 threads, 2 threads, 1 thread, ...),
``--calls`` of each, each timed on its own; the table gives the median and best per thread count
and "2t/1t" = median(2 threads) / median(1 thread) (below 1: the second thread pays).
The GEMM itself decides whether num_threads=2 wakes a second thread: products under
NNL_MIN_PARALLEL_MACS multiply-adds (csrc/core/nnl_tuning.h) run on one. "team" is what it
decides for the product (2 when the 2-thread call is cut into other work units than the
1-thread one). To measure 2 threads below the cut-off, rebuild with it at 0
(``CFLAGS=-DNNL_MIN_PARALLEL_MACS=0 python setup.py build_ext --inplace``); the figures quoted
in nnl_tuning.h were taken that way. "same bits": both thread counts gave identical outputs.
The idle-thread policy is nnlite's default (a short spin, GOMP_SPINCOUNT=1000, set on import
unless a policy is already set); export OMP_WAIT_POLICY=passive to make every 2-thread call pay
the wake-up of a sleeping worker, as in a plan whose neighbouring layers run on one thread. Never asserts; figures vary with the load of the
machine (the header prints the load average: on a 2-core machine that another job keeps
busy, a second thread cannot pay at any size).
"""
import argparse
import os
import sys

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _timing  # noqa: E402
from nnlite._infer import kernels as _ik  # noqa: E402
from nnlite.kernels import gemm, gemm_ops  # noqa: E402

# label, M (out channels), K (in channels), N (output pixels): 0.5M-13M multiply-adds
SHAPES = [
    ("mbv2 1x1 32->16 @112", 16, 32, 12544), ("mbv2 1x1 96->24 @56", 24, 96, 3136),
    ("mbv2 1x1 144->24 @56", 24, 144, 3136), ("mbv2 1x1 24->144 @56", 144, 24, 3136),
    ("mbv2 1x1 144->32 @28", 32, 144, 784), ("mbv2 1x1 32->192 @28", 192, 32, 784),
    ("mbv2 1x1 192->32 @28", 32, 192, 784), ("mbv2 1x1 192->64 @14", 64, 192, 196),
    ("mbv2 1x1 64->384 @14", 384, 64, 196), ("mbv2 1x1 384->64 @14", 64, 384, 196),
    ("mbv2 1x1 384->96 @14", 96, 384, 196), ("mbv2 1x1 96->576 @14", 576, 96, 196),
    ("mbv2 1x1 576->160 @7", 160, 576, 49), ("mbv2 1x1 160->960 @7", 960, 160, 49),
    ("mbv2 1x1 960->160 @7", 160, 960, 49),
    ("goog 1x1 192->16 @28", 16, 192, 784), ("goog 1x1 192->32 @28", 32, 192, 784),
    ("goog 1x1 192->64 @28", 64, 192, 784), ("goog 1x1 480->16 @14", 16, 480, 196),
    ("goog 1x1 480->64 @14", 64, 480, 196), ("goog 1x1 832->128 @7", 128, 832, 49),
    ("rn50 1x1 64->64 @56", 64, 64, 3136),
]
# --big: 14M-100M multiply-adds, where the cut-off already lets two threads work
BIG = [
    ("mbv2 1x1 16->96 @112", 96, 16, 12544), ("goog 1x1 192->96 @28", 96, 192, 784),
    ("goog 1x1 480->192 @14", 192, 480, 196), ("mbv2 1x1 320->1280 @7", 1280, 320, 49),
    ("rn50 1x1 64->256 @56", 256, 64, 3136), ("rn50 1x1 256->128 @56", 128, 256, 3136),
    ("rn50 1x1 1024->256 @14", 256, 1024, 196),
]


def _product(m, k, n, dtype, rng):
    """call(threads) computing relu(W @ X + bias) into its own output, as gemm_into does."""
    w = rng.standard_normal((m, k)).astype(dtype)
    x = rng.standard_normal((k, n)).astype(dtype)
    bias = rng.standard_normal(m).astype(dtype)
    packed = _ik.pack_weights(w, n)
    outs = {t: np.empty((m, n), dtype) for t in (1, 2)}
    narrow = _ik._narrow(m, n)

    def call(t):
        if narrow:
            gemm(x, packed, outs[t].T, trans_a=True, bias=bias, bias_axis=1,
                 activation="relu", num_threads=t)
        else:
            gemm(packed, x, outs[t], bias=bias, bias_axis=0, activation="relu", num_threads=t)
    return call, outs, narrow


def _team(m, k, n, narrow, dtype):
    units = gemm_ops._gemm.work_units
    isa, es = gemm_ops._isa(), np.dtype(dtype).itemsize
    rows, cols = (n, m) if narrow else (m, n)
    args = (isa, es, 1, rows, cols, k)
    pk = dict(pack_a=narrow, pack_b=not narrow)
    return 2 if units(*args, 2, **pk) != units(*args, 1, **pk) else 1


def run(shapes, calls, dtype):
    rng = np.random.default_rng(0)
    rows = []
    for label, m, k, n in shapes:
        call, outs, narrow = _product(m, k, n, dtype, rng)
        rows.append({
            "layer": label, "M": m, "K": k, "N": n, "MACs": f"{m * k * n / 1e6:.1f}M",
            "team": _team(m, k, n, narrow, dtype), **_timing.one_vs_two_threads(call, outs, calls),
        })
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=300, help="timed calls per thread count")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--isa", default="auto", help="micro-kernel family (auto, avx2, avx512)")
    p.add_argument("--big", action="store_true", help="the 14M-100M products instead")
    args = p.parse_args(argv)
    if gemm_ops._gemm is None:
        p.error("nnlite._gemm is not built")
    with gemm_ops.using_microkernel(args.isa):
        info = gemm_ops.info()
        print(_timing.header([
            ("gemm", f"micro-kernel {info['microkernel']}"),
            ("idle threads", f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} "
                             f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', 'unset')}"),
            ("load average", " ".join(f"{x:.2f}" for x in os.getloadavg())),
        ]))
        rows = run(BIG if args.big else SHAPES, args.calls, np.dtype(args.dtype))
    _timing.print_table(rows, ["layer", "M", "K", "N", "MACs", "team", "1t med", "1t best",
                               "2t med", "2t best", "2t/1t", "same bits"])


if __name__ == "__main__":
    main()
