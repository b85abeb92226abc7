"""The conv weight gradient (``_convfast.conv2d_weight_grad``: one GEMM per group whose B
operand is packed from the image) per layer, optionally against another build of nnlite's
``_convfast`` loaded into the same process, the two alternating call by call.

    PYTHONPATH=. OMP_WAIT_POLICY=passive python benchmarks/bench_wgrad_packer.py
        [--base /path/to/other/checkout] [--threads 1] [--repeat 301] [--large]

Layers: the digits example's convs (batch 32, 'same', stride 1: the image packer's vector
path), a float64 one, a stride-2 and a 'valid' one (the element-wise packer); --large adds
ResNet-sized layers (fewer rounds). With --base (a checkout whose nnlite/_convfast*.so is
built, e.g. the commit before a packer change) every row also gives that build's time, the
median of the per-round ratios (this / base) and whether both gave the same bits. Medians and
minima of --repeat rounds (wall time). Never asserts.
"""
import argparse
import glob
import importlib.util
import os
import sys
import time

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _timing  # noqa: E402
from nnlite import _convfast  # noqa: E402
from nnlite._convgeom import conv2d_geometry  # noqa: E402

# (label, N, C, F, k, map, stride, padding, dtype)
SMALL = [("8->16 3x3 8x8", 32, 8, 16, 3, 8, 1, 1, np.float32),
         ("4->8 5x5 8x8", 32, 4, 8, 5, 8, 1, 2, np.float32),
         ("8->16 5x5 4x4", 32, 8, 16, 5, 4, 1, 2, np.float32),
         ("16->32 3x3 4x4", 32, 16, 32, 3, 4, 1, 1, np.float32),
         ("1->16 3x3 8x8", 32, 1, 16, 3, 8, 1, 1, np.float32),
         ("8->16 3x3 8x8 f64", 32, 8, 16, 3, 8, 1, 1, np.float64),
         ("32->32 3x3 s2 16x16", 32, 32, 32, 3, 16, 2, 1, np.float32),
         ("16->16 3x3 valid 12x12", 32, 16, 16, 3, 12, 1, 0, np.float32)]
LARGE = [("64->64 3x3 32x32", 32, 64, 64, 3, 32, 1, 1, np.float32),
         ("256->256 3x3 14x14 b8", 8, 256, 256, 3, 14, 1, 1, np.float32),
         ("64->128 3x3 s2 32x32 b16", 16, 64, 128, 3, 32, 2, 1, np.float32),
         ("64->64 3x3 32x32 b8 f64", 8, 64, 64, 3, 32, 1, 1, np.float64)]


def load_base(path):
    """The _convfast extension of another checkout, as a separate module object."""
    so = glob.glob(os.path.join(path, "nnlite", "_convfast*.so"))
    if not so:
        raise SystemExit(f"--base {path}: no nnlite/_convfast*.so there (build it first)")
    spec = importlib.util.spec_from_file_location("nnlite._convfast", so[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rows(layers, repeat, threads, base):
    rng = np.random.default_rng(0)
    mods = [_convfast] + ([base] if base is not None else [])
    out = []
    for label, n, c, f, k, hw, s, p, dt in layers:
        g = conv2d_geometry((n, c, hw, hw), (f, c, k, k), None, s, p, 1, 1)
        x = rng.standard_normal((n, c, hw, hw)).astype(dt)
        a = rng.standard_normal((f, n * g.oh * g.ow)).astype(dt)
        gws = [np.empty((f, g.k), dt) for _ in mods]
        calls = [lambda m=m, gw=gw: m.conv2d_weight_grad(x, a, gw, 1, k, k, s, s, p, p, 1, 1,
                                                         g.oh, g.ow, num_threads=threads)
                 for m, gw in zip(mods, gws)]
        for fn in calls:
            fn()
            fn()
        ts = [[] for _ in calls]
        for r in range(repeat):   # alternate, flipping the order every round
            for j in (range(len(calls)) if r % 2 == 0 else reversed(range(len(calls)))):
                t0 = time.perf_counter()
                calls[j]()
                ts[j].append(time.perf_counter() - t0)
        ts = np.array(ts) * 1e6
        row = {"layer": label, "us": f"{np.median(ts[0]):.1f}", "min us": f"{ts[0].min():.1f}"}
        if base is not None:
            row.update({"base us": f"{np.median(ts[1]):.1f}", "base min": f"{ts[1].min():.1f}",
                        "ratio": f"{np.median(ts[0] / ts[1]):.2f}",
                        "same bits": str(gws[0].tobytes() == gws[1].tobytes())})
        out.append(row)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", help="another checkout whose _convfast to compare with")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=301)
    ap.add_argument("--large", action="store_true", help="also the ResNet-sized layers")
    args = ap.parse_args(argv)
    base = load_base(args.base) if args.base else None
    nnlite.set_num_threads(args.threads)
    print(_timing.header([("load", " ".join(f"{v:.2f}" for v in os.getloadavg()))]))
    cols = ["layer", "us", "min us"] + (["base us", "base min", "ratio", "same bits"]
                                        if base is not None else [])
    print(f"\nweight gradient per call, threads {args.threads}, {args.repeat} rounds")
    _timing.print_table(rows(SMALL, args.repeat, args.threads, base), cols)
    if args.large:
        print(f"\nlarge layers, {max(5, args.repeat // 30)} rounds")
        _timing.print_table(rows(LARGE, max(5, args.repeat // 30), args.threads, base), cols)
    return 0


if __name__ == "__main__":
    sys.exit(main())
