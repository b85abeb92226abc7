"""The digits example's convs (examples/train_digits.py, batch 32, 8x8 and 4x4 maps) under each
conv algorithm, and its training step with the small-map kernel on and off (issue #17).

    PYTHONPATH=. OMP_WAIT_POLICY=passive python benchmarks/bench_digits_convs.py [--repeat 41]
        [--steps 200]

Per layer (k x k, stride 1, 'same' padding; the 1x1 heads run the GEMM on the image under every
algorithm): forward, input gradient and weight gradient under 'implicit' (the implicit GEMM,
which 'auto' ran for these layers before the small-map kernel) and 'direct' (the small-map
kernel, csrc/convfast_small.c); 'auto' now runs 'direct' for the forward and the input gradient
and keeps the columns + GEMM for the weight gradient (see
nnlite._algorithms.small_weight_grad_pays). Times interleaved, median of --repeat rounds.

The step: forward + cross-entropy + backward + Adam on one digits model per variant (same
batches), the variants alternating step by step: 'auto' with the small-map rule off
(SMALL_MAX_PIXELS = 0: the choices before it), 'auto', and 'auto' plus the small-map weight
gradient. One thread (as the example). Never asserts.
"""
import argparse
import os
import sys
import time

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

import _timing  # noqa: E402
import nnlite.nn.functional as F  # noqa: E402
from nnlite import _algorithms, kernels, models, optim  # noqa: E402
from nnlite._convgeom import conv2d_geometry  # noqa: E402

# (label, C, F, k, map) of the digits net's k x k convs at width 16 past the stem (its one
# input channel makes 'direct' the depthwise kernel, and 'auto' keeps it 'implicit')
LAYERS = [("inc1 8->16 3x3", 8, 16, 3, 8),
          ("inc1 4->8 5x5", 4, 8, 5, 8), ("inc2 16->32 3x3", 16, 32, 3, 4),
          ("inc2 8->16 5x5", 8, 16, 5, 4)]


def layer_rows(repeat, n=32):
    fw = kernels.impl("conv2d_forward", "cython")
    bi = kernels.impl("conv2d_backward_input", "cython")
    bw = kernels.impl("conv2d_backward_weight", "cython")
    rng = np.random.default_rng(0)
    rows = []
    for label, c, f, k, hw in LAYERS:
        x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        w = rng.standard_normal((f, c, k, k)).astype(np.float32)
        gy = rng.standard_normal((n, f, hw, hw)).astype(np.float32)
        g = conv2d_geometry(x.shape, w.shape, None, 1, k // 2, 1, 1)
        cands = {}
        for algo in ("implicit", "direct"):
            def run(op, algo=algo):
                def call():
                    with nnlite.conv_algorithm(algo):
                        op()
                return call
            cands[("forward", algo)] = run(lambda: fw(x, w, None, g))
            cands[("input grad", algo)] = run(lambda: bi(gy, w, g))
            cands[("weight grad", algo)] = run(lambda: bw(gy, x, g))
        times = _timing.interleave(cands, repeat=repeat, warmup=2)
        for what in ("forward", "input grad", "weight grad"):
            a = _timing.median(times[(what, "implicit")])
            d = _timing.median(times[(what, "direct")])
            rows.append((label, what, f"{a * 1e6:.1f}", f"{d * 1e6:.1f}", f"{a / d:.2f}x"))
    return rows


def step_rows(steps):
    import train_digits

    from nnlite.kernels import conv_cython

    x_tr, y_tr, _, _ = train_digits.load_digits(0)
    pays = conv_cython.small_weight_grad_pays

    def with_wgrad(geom, itemsize, algorithm=None):
        # the small-map weight gradient wherever 'auto' runs the forward 'direct'
        return (_algorithms.resolve(geom) == "direct" and not _algorithms.is_depthwise(geom)
                and geom.n > 0)

    variants = {"auto, small-map off": (0, pays), "auto": (256, pays),
                "auto + small-map weight grad": (256, with_wgrad)}
    nets = {}
    for name in variants:
        nnlite.manual_seed(0)
        m = models.small_cnn(in_channels=1, num_classes=10, width=16)
        m.train()
        nets[name] = (m, optim.Adam(m.parameters(), lr=3e-3))
    rng = np.random.default_rng(0)
    times = {name: [] for name in variants}
    default = _algorithms.SMALL_MAX_PIXELS
    try:
        for it in range(steps + 10):
            idx = rng.permutation(len(x_tr))[:32]
            xb = train_digits.random_shift(x_tr[idx], rng)
            order = list(variants) if it % 2 == 0 else list(variants)[::-1]
            for name in order:
                _algorithms.SMALL_MAX_PIXELS, wgrad = variants[name]
                conv_cython.small_weight_grad_pays = wgrad
                model, opt = nets[name]
                t0 = time.perf_counter()
                loss = F.cross_entropy(model(nnlite.tensor(xb)), nnlite.tensor(y_tr[idx]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss.item()
                if it >= 10:
                    times[name].append(time.perf_counter() - t0)
    finally:
        _algorithms.SMALL_MAX_PIXELS = default
        conv_cython.small_weight_grad_pays = pays
    base = np.array(times["auto, small-map off"])
    return [(name, f"{np.median(t) * 1e3:.2f}", f"{np.percentile(t, 10) * 1e3:.2f}",
             f"{np.median(np.array(t) / base):.3f}") for name, t in times.items()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=41)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args(argv)
    nnlite.set_num_threads(1)
    print(_timing.header([("load", " ".join(f"{v:.2f}" for v in os.getloadavg()))]))
    print("\nper call, batch 32, one thread (us): implicit vs direct (small-map kernel)")
    cols = ["layer", "op", "implicit", "direct", "speed-up"]
    _timing.print_table([dict(zip(cols, r)) for r in layer_rows(args.repeat)], cols)
    print(f"\ntraining step, batch 32, one thread, {args.steps} steps per variant, alternating")
    cols = ["variant", "median ms", "p10 ms", "paired ratio"]
    _timing.print_table([dict(zip(cols, r)) for r in step_rows(args.steps)], cols)
    return 0


if __name__ == "__main__":
    sys.exit(main())
