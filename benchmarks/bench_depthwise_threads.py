"""The direct depthwise kernel on 1 vs 2 threads: MobileNetV2's 3x3 depthwise layers.

    python benchmarks/bench_depthwise_threads.py [--batch 1 8] [--calls 400] [--dtype float32]
        [--sweep]

Each layer is MobileNetV2's (224x224 input): 3x3, padding 1, stride 1 or 2, bias, ReLU6, fused
as the inference plan runs it (``nnlite._convfast.conv2d_depthwise``). The calls alternate
(1 thread, 2 threads, 1 thread, ...), ``--calls`` of each, each timed on its own; the table
gives the median and the best per thread count and "2t/1t" = median(2 threads) / median(1
thread) (below 1: the second thread pays). The kernel itself decides whether a call with
num_threads=2 really wakes a second thread (its cut-off NNL_DW_MIN_MACS_PER_THREAD in
csrc/core/nnl_tuning.h); "team" is what it decides for the layer, "MACs/t" the layer's
multiply-adds per thread of a 2-thread team. To measure 2 threads below the cut-off, set
NNL_DW_MIN_MACS_PER_THREAD to 0 in nnl_tuning.h and rebuild (the kernel then always uses the
team it is given); the figures quoted there were taken that way. "same bits": whether both
thread counts gave identical outputs.
Never asserts; figures vary with the load of the machine.
"""
import argparse
import os
import sys

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _timing  # noqa: E402
from nnlite import _convfast  # noqa: E402

# MobileNetV2's depthwise layers at 224x224: channels, input size, stride
LAYERS = [(32, 112, 1), (96, 112, 2), (144, 56, 1), (144, 56, 2), (192, 28, 1), (192, 28, 2),
          (384, 14, 1), (576, 14, 1), (576, 14, 2), (960, 7, 1)]
# --sweep: fewer channels on MobileNetV2's small maps, to locate the crossover
SWEEP = [(c, h, s) for h, s in ((7, 1), (14, 2), (14, 1)) for c in (48, 96, 192, 384)]
_RELU6 = 2


def _layer(n, c, h, s, dtype, rng):
    oh = (h + 2 - 3) // s + 1
    x = rng.standard_normal((n, c, h, h)).astype(dtype)
    w = rng.standard_normal((c, 9)).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    ys = {t: np.empty((n, c, oh * oh), dtype) for t in (1, 2)}

    def call(t):
        _convfast.conv2d_depthwise(x, w, b, ys[t], 3, 3, s, s, 1, 1, 1, 1, oh, oh,
                                   act=_RELU6, num_threads=t)
    return call, ys, oh


def _team(n, c, h, s, oh, dtype):
    """1 or 2: whether the kernel wakes a second thread (its workspace has one buffer per
    thread of the team; the layers here all take the buffered paths)."""
    es = np.dtype(dtype).itemsize
    args = (n, c, h, h, c, c, 3, 3, s, s, 1, 1, 1, 1, oh, oh, es)
    one = _convfast.depthwise_workspace_bytes(*args, num_threads=1)
    two = _convfast.depthwise_workspace_bytes(*args, num_threads=2)
    return 2 if two > one else 1


def run(batches, calls, dtype, layers=LAYERS):
    rng = np.random.default_rng(0)
    rows = []
    for n in batches:
        for c, h, s in layers:
            call, ys, oh = _layer(n, c, h, s, dtype, rng)
            macs = n * c * oh * oh * 9
            rows.append({
                "N": n, "C": c, "in": f"{h}x{h}", "s": s, "out": f"{oh}x{oh}",
                "MACs/t": f"{macs / 2 / 1e6:.2f}M",
                "team": _team(n, c, h, s, oh, dtype), **_timing.one_vs_two_threads(call, ys, calls),
            })
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[1])
    p.add_argument("--calls", type=int, default=400, help="timed calls per thread count")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--sweep", action="store_true",
                   help="48..384 channels at 7x7 and 14x14 instead of MobileNetV2's layers")
    args = p.parse_args(argv)
    print(_timing.header())
    rows = run(args.batch, args.calls, np.dtype(args.dtype), SWEEP if args.sweep else LAYERS)
    _timing.print_table(rows, ["N", "C", "in", "s", "out", "MACs/t", "team", "1t med",
                               "1t best", "2t med", "2t best", "2t/1t", "same bits"])


if __name__ == "__main__":
    main()
