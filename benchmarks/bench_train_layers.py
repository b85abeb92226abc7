"""Per-layer training convs of bench_train.py's ResNet-18 (CIFAR stem, batch 64): the forward
and the weight gradient of every distinct conv, nnlite (cython backend) vs PyTorch, interleaved.

    python benchmarks/bench_train_layers.py [--repeat 7] [--threads 2] [--batch 64]

Per layer: the algorithm 'auto' picks for the forward (``_algorithms.resolve``), the median
forward and weight-gradient times of both and their ratios (nnlite / torch); the last line sums
the medians (each layer counted once, not per occurrence in the net). Times are medians of
``--repeat`` rounds, the two frameworks alternating within a round.
"""
import argparse
import os
import sys
import time

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nnlite import kernels  # noqa: E402
from nnlite._algorithms import resolve  # noqa: E402
from nnlite._convgeom import conv2d_geometry  # noqa: E402
from nnlite.cli import cpu_name  # noqa: E402

# (C, F, map size, kernel, stride): the distinct convs of ResNet-18 with the CIFAR stem
LAYERS = [
    (3, 64, 32, 3, 1), (64, 64, 32, 3, 1),
    (64, 128, 32, 3, 2), (64, 128, 32, 1, 2), (128, 128, 16, 3, 1),
    (128, 256, 16, 3, 2), (128, 256, 16, 1, 2), (256, 256, 8, 3, 1),
    (256, 512, 8, 3, 2), (256, 512, 8, 1, 2), (512, 512, 4, 3, 1),
]


def _median_ms(ts):
    return float(np.median(ts)) * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    nnlite.set_num_threads(a.threads)
    fwd = kernels.impl("conv2d_forward", "cython")
    wgrad = kernels.impl("conv2d_backward_weight", "cython")
    rng = np.random.default_rng(0)
    print(f"# CPU: {cpu_name()}, threads {a.threads}, batch {a.batch}, float32, "
          f"load {os.getloadavg()[0]:.2f}")
    head = (f"{'C->F':>9} {'map':>5} {'k/s':>4} {'algo':>9} {'fwd ms':>7} {'torch':>7} "
            f"{'ratio':>6} {'dW ms':>7} {'torch':>7} {'ratio':>6}")
    print(head)
    sums = np.zeros(4)
    for c, f, hw, k, s in LAYERS:
        pad = k // 2
        x = rng.standard_normal((a.batch, c, hw, hw)).astype(np.float32)
        w = rng.standard_normal((f, c, k, k)).astype(np.float32)
        geom = conv2d_geometry(x.shape, w.shape, None, s, pad, 1, 1)
        gy = rng.standard_normal((a.batch, f, geom.oh, geom.ow)).astype(np.float32)
        xt, wt, gt = (torch.from_numpy(t) for t in (x, w, gy))
        runs = {
            "fwd": lambda: fwd(x, w, None, geom),
            "tfwd": lambda: torch.nn.functional.conv2d(xt, wt, stride=s, padding=pad),
            "dw": lambda: wgrad(gy, x, geom),
            "tdw": lambda: torch.nn.grad.conv2d_weight(xt, w.shape, gt, stride=s, padding=pad),
        }
        times = {key: [] for key in runs}
        with torch.no_grad():
            for fn in runs.values():
                fn()                                               # warm-up
            for _ in range(a.repeat):
                for key, fn in runs.items():
                    t0 = time.perf_counter()
                    fn()
                    times[key].append(time.perf_counter() - t0)
        m = [_median_ms(times[key]) for key in ("fwd", "tfwd", "dw", "tdw")]
        sums += m
        print(f"{c:>4}->{f:<4} {hw:>5} {k}/{s:<2} {resolve(geom):>9} {m[0]:7.2f} {m[1]:7.2f} "
              f"{m[0] / m[1]:6.2f} {m[2]:7.2f} {m[3]:7.2f} {m[2] / m[3]:6.2f}", flush=True)
    print(f"{'sum':>9} {'':>5} {'':>4} {'':>9} {sums[0]:7.2f} {sums[1]:7.2f} "
          f"{sums[0] / sums[1]:6.2f} {sums[2]:7.2f} {sums[3]:7.2f} {sums[2] / sums[3]:6.2f}")


if __name__ == "__main__":
    main()
