"""1x1 convs (stride 1, no padding, one group) through the 'cython' backend's three routines:
the digits example's four 1x1 layers (batch 32, 8x8 and 4x4 maps, one thread, as
examples/train_digits.py runs them) and ResNet-50's 1x1 layers on 56x56 and 7x7 maps at batch
1 and 8, A/B against another checkout of nnlite (``--baseline``, e.g. /work/main built with
its extensions), in alternating child processes.

    PYTHONPATH=. OMP_WAIT_POLICY=passive python benchmarks/bench_pointwise_batch.py \
        [--baseline /work/main] [--rounds 7] [--threads 1] [--no-resnet]

Each child times every (layer, routine) as the median of many back-to-back calls; the parent
alternates the baseline child and this checkout's child ``--rounds`` times and prints, per
(layer, routine), the median over rounds of each (microseconds) and their ratio (baseline /
this: > 1 means this checkout is faster). Without ``--baseline`` only this checkout is timed.
The routines are ``nnlite.kernels.impl("conv2d_forward" | "conv2d_backward_input" |
"conv2d_backward_weight", "cython")`` under the default conv algorithm. Never asserts.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (label, C, F, map side, batch, threads None = --threads)
DIGITS = [("digits 16->20 8x8", 16, 20, 8, 32), ("digits 16->8 8x8", 16, 8, 8, 32),
          ("digits 40->40 4x4", 40, 40, 4, 32), ("digits 40->16 4x4", 40, 16, 4, 32)]
RESNET = [(f"r50 {c}->{f} {s}x{s} b{n}", c, f, s, n)
          for n in (1, 8) for c, f, s in ((64, 256, 56), (256, 64, 56), (512, 2048, 7),
                                          (2048, 512, 7))]
OPS = ("fwd", "dX", "dW")


def _child(args):
    import nnlite  # noqa: I001  (before NumPy: OpenMP / OpenBLAS idle policy)
    import numpy as np
    from nnlite import kernels
    from nnlite._convgeom import conv2d_geometry

    nnlite.set_num_threads(args.threads)
    fw = kernels.impl("conv2d_forward", "cython")
    bi = kernels.impl("conv2d_backward_input", "cython")
    bw = kernels.impl("conv2d_backward_weight", "cython")
    rng = np.random.default_rng(0)
    layers = DIGITS + ([] if args.no_resnet else RESNET)
    out = {}
    for label, c, f, s, n in layers:
        x = rng.standard_normal((n, c, s, s)).astype(np.float32)
        w = rng.standard_normal((f, c, 1, 1)).astype(np.float32)
        b = rng.standard_normal(f).astype(np.float32)
        gy = rng.standard_normal((n, f, s, s)).astype(np.float32)
        g = conv2d_geometry(x.shape, w.shape, None, 1, 0, 1, 1,
                            dtypes=(x.dtype, w.dtype, None))
        calls = {"fwd": lambda: fw(x, w, b, g), "dX": lambda: bi(gy, w, g),
                 "dW": lambda: bw(gy, x, g)}
        for op in OPS:
            fn = calls[op]
            fn()
            t0 = time.perf_counter()
            fn()
            once = time.perf_counter() - t0
            reps = max(5, min(300, int(0.05 / max(once, 1e-7))))
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            out[f"{label}|{op}"] = statistics.median(ts) * 1e6
    print(json.dumps(out))


def _run(path, args):
    env = dict(os.environ, PYTHONPATH=path, OMP_WAIT_POLICY="passive")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--threads", str(args.threads)]
    if args.no_resnet:
        cmd.append("--no-resnet")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=path)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default=None, help="another nnlite checkout to compare with")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-resnet", action="store_true", help="only the digits layers")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args)
        return
    sys.path.insert(0, HERE)
    sys.path.insert(0, ROOT)
    import nnlite  # noqa: I001
    import _timing
    nnlite.set_num_threads(args.threads)       # as in the children (the header reports it)
    print(_timing.header([("baseline", args.baseline or "-"), ("rounds", args.rounds)]))
    runs = {"this": [], "base": []}
    for _ in range(args.rounds):
        if args.baseline:
            runs["base"].append(_run(args.baseline, args))
        runs["this"].append(_run(ROOT, args))
    keys = list(runs["this"][0])
    med = {side: {k: statistics.median(r[k] for r in rs) for k in keys}
           for side, rs in runs.items() if rs}
    print(f"{'layer':<26} {'op':<4} {'baseline us':>12} {'this us':>10} {'base/this':>10}")
    totals = {"this": 0.0, "base": 0.0}
    for k in keys:
        label, op = k.split("|")
        t = med["this"][k]
        if "base" in med:
            bt = med["base"][k]
            print(f"{label:<26} {op:<4} {bt:12.1f} {t:10.1f} {bt / t:10.2f}")
        else:
            print(f"{label:<26} {op:<4} {'-':>12} {t:10.1f} {'-':>10}")
        if label.startswith("digits"):
            totals["this"] += t
            totals["base"] += med["base"][k] if "base" in med else 0.0
    if "base" in med:
        print(f"{'digits 1x1 total':<31} {totals['base']:12.1f} {totals['this']:10.1f} "
              f"{totals['base'] / totals['this']:10.2f}")
    else:
        print(f"{'digits 1x1 total':<31} {'-':>12} {totals['this']:10.1f}")


if __name__ == "__main__":
    main()
