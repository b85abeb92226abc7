"""The fixed layer suite: nnlite's conv algorithms vs PyTorch (when installed), forward, float32.

    python benchmarks/bench_suite.py [--batch 1 16] [--threads 2] [--repeat 9] [--quick]
                                     [--csv out.csv]

Layers: GoogLeNet 3a branches and the naive 3x3/5x5 on 192@28, the ResNet-50 bottleneck at 56
and a plain 3x3 256->256, the 7x7/2 stem, MobileNetV2 depthwise 3x3 (32@112, 144@56) with their
pointwise projections, a dilated 3x3 (d=2), a grouped 3x3 (g=32), a transposed 4x4/2 and the
3x3/2 max pool of the ResNet stem.

Per layer and batch, every candidate runs in this process on the same input, interleaved
round-robin (``_timing.interleave``: median of ``--repeat`` rounds, calls shorter than 20 ms
repeated within a round): nnlite's F.conv2d (F.conv_transpose2d, F.max_pool2d) under each
``nnlite.conv_algorithm`` that is distinct for the layer, and PyTorch's functional op. Columns:

    algorithm the conv algorithm (``nnlite.conv_algorithm``); "(auto)" marks the one the default
              'auto' picks for the layer, which the /torch summary uses. 'direct' is listed
              only for depthwise layers (elsewhere it runs 'implicit')
    ms        median time of the call (Tensor in, Tensor out, no autograd graph)
    GF/s      2*N*F*(C/G)*KH*KW*OH*OW / time (max pool: one op per window tap)
    %peak     GF/s / the GEMM peak measured at the start (nnlite.kernels.gemm, 2048^2 x 2048
              at the same thread count)
    extra MB  work memory the algorithm allocates beyond input, weights and output: the
              im2col column buffer (chunked as nnlite does it), the implicit GEMM's packing
              buffers (exact, from nnlite._convfast), the depthwise kernel's per-thread plane
              buffers; the GEMM's own packing buffers of the im2col path are not counted
    /torch    nnlite time / PyTorch time (nnlite's default algorithm)

The summary lines check the targets: geometric-mean time ratio over the suite, the slowest
conv, depthwise and max-pool vs PyTorch, the large 3x3 convs vs the GEMM peak, and the implicit
GEMM's memory vs the im2col column buffer. Benchmarks never assert.
"""
import math
import os
import platform
import sys

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _timing  # noqa: E402
import nnlite.nn.functional as F  # noqa: E402
from nnlite import _blas  # noqa: E402
from nnlite._convgeom import conv2d_geometry, conv_transpose2d_geometry  # noqa: E402
from nnlite.kernels import gemm, gemm_ops  # noqa: E402

try:
    from nnlite import _convfast
except ImportError:  # pragma: no cover - depends on the build
    _convfast = None

try:
    import torch
except ImportError:  # pragma: no cover - optional
    torch = None

# name, kind, C, H(=W), F, k, stride, pad, dilation, groups; kind: conv | convT | maxpool
SUITE = [
    ("3a 1x1 192->64", "conv", 192, 28, 64, 1, 1, 0, 1, 1),
    ("3a 1x1 192->96", "conv", 192, 28, 96, 1, 1, 0, 1, 1),
    ("3a 3x3 96->128", "conv", 96, 28, 128, 3, 1, 1, 1, 1),
    ("3a 1x1 192->16", "conv", 192, 28, 16, 1, 1, 0, 1, 1),
    ("3a 5x5 16->32", "conv", 16, 28, 32, 5, 1, 2, 1, 1),
    ("3a pool proj 192->32", "conv", 192, 28, 32, 1, 1, 0, 1, 1),
    ("naive 3x3 192->128", "conv", 192, 28, 128, 3, 1, 1, 1, 1),
    ("naive 5x5 192->32", "conv", 192, 28, 32, 5, 1, 2, 1, 1),
    ("r50 1x1 256->64 @56", "conv", 256, 56, 64, 1, 1, 0, 1, 1),
    ("r50 3x3 64->64 @56", "conv", 64, 56, 64, 3, 1, 1, 1, 1),
    ("r50 1x1 64->256 @56", "conv", 64, 56, 256, 1, 1, 0, 1, 1),
    ("plain 3x3 256->256 @56", "conv", 256, 56, 256, 3, 1, 1, 1, 1),
    ("stem 7x7/2 3->64 @224", "conv", 3, 224, 64, 7, 2, 3, 1, 1),
    ("dw 3x3 32 @112", "conv", 32, 112, 32, 3, 1, 1, 1, 32),
    ("pw 1x1 32->16 @112", "conv", 32, 112, 16, 1, 1, 0, 1, 1),
    ("dw 3x3 144 @56", "conv", 144, 56, 144, 3, 1, 1, 1, 144),
    ("pw 1x1 144->24 @56", "conv", 144, 56, 24, 1, 1, 0, 1, 1),
    ("dilated 3x3 d2 256 @28", "conv", 256, 28, 256, 3, 1, 2, 2, 1),
    ("grouped 3x3 g32 256 @56", "conv", 256, 56, 256, 3, 1, 1, 1, 32),
    ("convT 4x4/2 256->128 @14", "convT", 256, 14, 128, 4, 2, 1, 1, 1),
    ("maxpool 3x3/2 64 @112", "maxpool", 64, 112, 64, 3, 2, 1, 1, 1),
]
LARGE_3X3 = ("3a 3x3 96->128", "naive 3x3 192->128", "r50 3x3 64->64 @56",
             "plain 3x3 256->256 @56", "dilated 3x3 d2 256 @28")
COLUMNS = ["batch", "layer", "algorithm", "ms", "best ms", "GF/s", "%peak", "extra MB",
           "torch ms", "/torch"]


def gemm_peak(nthreads, repeat, quick):
    """Median GFLOP/s of nnlite's GEMM on a large square product (the '%peak' reference)."""
    s = 1024 if quick else 2048
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (s, s)).astype(np.float32)
    b = rng.uniform(-1, 1, (s, s)).astype(np.float32)
    c = np.empty((s, s), np.float32)
    t = _timing.interleave({"gemm": lambda: gemm(a, b, c, num_threads=nthreads)},
                           repeat=repeat, warmup=1)
    return _timing.gflops(2.0 * s ** 3, _timing.median(t["gemm"]))


def _algorithms(kind, geom):
    """The distinct algorithms of a layer: each name the selector accepts, except those that
    resolve to another one for this layer ('direct' on a conv that is not depthwise)."""
    if kind != "conv":
        return ["auto"]
    out = []
    for a in nnlite.available_conv_algorithms():
        try:
            if a != "auto" and nnlite._algorithms.resolve(geom, a) == a:
                out.append(a)
        except ValueError:      # 'winograd' on a conv it cannot compute
            pass
    return out


def _extra_bytes(kind, algo, geom, nthreads):
    """Work memory of one nnlite call (see the module docstring), in bytes."""
    if kind == "maxpool":
        return 0
    if kind == "convT" or algo == "im2col" or _convfast is None:
        return geom.workspace_bytes(np.float32)
    resolved = nnlite._algorithms.resolve(geom, algo)
    args = (geom.n, geom.c, geom.h, geom.w, geom.f, geom.g, geom.kh, geom.kw, geom.sh, geom.sw,
            geom.pt, geom.pl, geom.dh, geom.dw, geom.oh, geom.ow, 4)
    if resolved == "direct":
        return _convfast.depthwise_workspace_bytes(*args, num_threads=nthreads)
    if resolved == "implicit":
        return _convfast.implicit_workspace_bytes(*args, num_threads=nthreads,
                                                  isa=gemm_ops._isa())
    return geom.workspace_bytes(np.float32)


def _cases(layer, n, rng):
    """(geom, flops, nnlite call(algo), torch call or None, input bytes) of one layer."""
    name, kind, c, hw, f, k, s, p, d, g = layer
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    xt = nnlite.tensor(x)
    if kind == "maxpool":
        geom = conv2d_geometry(x.shape, (c, 1, k, k), None, s, p, d, c)
        flops = n * c * geom.oh * geom.ow * k * k

        def ours(algo):
            return lambda: F.max_pool2d(xt, k, s, p, d)
        theirs = None if torch is None else (
            lambda t=torch.from_numpy(x): torch.nn.functional.max_pool2d(t, k, s, p, d))
        return geom, flops, ours, theirs
    if kind == "convT":
        w = (rng.standard_normal((c, f // g, k, k)) / math.sqrt(c * k * k)).astype(np.float32)
        b = rng.standard_normal(f).astype(np.float32)
        geom = conv_transpose2d_geometry(x.shape, w.shape, b.shape, s, p, 0, g, d)
        flops = geom.flops()
        wt, bt = nnlite.tensor(w), nnlite.tensor(b)

        def ours(algo):
            return lambda: F.conv_transpose2d(xt, wt, bt, s, p, 0, g, d)
        theirs = None if torch is None else (
            lambda t=torch.from_numpy(x), tw=torch.from_numpy(w), tb=torch.from_numpy(b):
            torch.nn.functional.conv_transpose2d(t, tw, tb, s, p, 0, g, d))
        return geom, flops, ours, theirs
    w = (rng.standard_normal((f, c // g, k, k)) / math.sqrt(c // g * k * k)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    geom = conv2d_geometry(x.shape, w.shape, b.shape, s, p, d, g)
    wt, bt = nnlite.tensor(w), nnlite.tensor(b)

    def ours(algo):
        def call():
            with nnlite.conv_algorithm(algo):
                return F.conv2d(xt, wt, bt, s, p, d, g)
        return call
    theirs = None if torch is None else (
        lambda t=torch.from_numpy(x), tw=torch.from_numpy(w), tb=torch.from_numpy(b):
        torch.nn.functional.conv2d(t, tw, tb, s, p, d, g))
    return geom, geom.flops(), ours, theirs


def bench_layer(layer, n, nthreads, repeat, peak, rng):
    name, kind = layer[0], layer[1]
    geom, flops, ours, theirs = _cases(layer, n, rng)
    algos = _algorithms(kind, geom)
    default = algos[0] if kind != "conv" else nnlite._algorithms.resolve(geom, "auto")
    cands = {a: ours(a) for a in algos}
    if theirs is not None:
        cands["torch"] = theirs
    with nnlite.no_grad():
        if torch is not None:
            with torch.no_grad():
                times = _timing.interleave(cands, repeat=repeat, warmup=2, min_time=0.02)
        else:
            times = _timing.interleave(cands, repeat=repeat, warmup=2, min_time=0.02)
    t_torch = _timing.median(times["torch"]) if "torch" in times else None
    rows = []
    for algo in algos:
        t = _timing.median(times[algo])
        gf = _timing.gflops(flops, t)
        extra = _extra_bytes(kind, algo, geom, nthreads)
        label = "-" if kind != "conv" else (algo + " (auto)" if algo == default else algo)
        rows.append({
            "batch": n, "layer": name, "algorithm": label, "kind": kind, "algo": algo,
            "default": algo == default, "t": t, "t_torch": t_torch,
            "ms": f"{t * 1e3:.3f}", "best ms": f"{_timing.best(times[algo]) * 1e3:.3f}",
            "GF/s": f"{gf:.1f}", "%peak": f"{100 * gf / peak:.0f}" if kind != "maxpool" else "",
            "extra MB": f"{extra / 2 ** 20:.2f}", "extra": extra, "gf": gf,
            "im2col": geom.workspace_bytes(np.float32) if kind == "conv" else 0,
            "torch ms": "" if t_torch is None else f"{t_torch * 1e3:.3f}",
            "/torch": "" if t_torch is None else f"{t / t_torch:.2f}",
        })
    return rows


def summary(rows, peak):
    """Target lines (see the module docstring) per batch, from the default-algorithm rows."""
    out = []
    for n in sorted({r["batch"] for r in rows}):
        auto = [r for r in rows if r["batch"] == n and r["default"]]
        ratios = [r["t"] / r["t_torch"] for r in auto if r["t_torch"]]
        line = f"batch {n}:"
        if ratios:
            geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
            convs = [r for r in auto if r["kind"] != "maxpool" and r["t_torch"]]
            worst = max(convs, key=lambda r: r["t"] / r["t_torch"])
            dw_pool = [f"{r['layer']} {r['t'] / r['t_torch']:.2f}" for r in auto
                       if r["t_torch"] and (r["layer"].startswith("dw") or r["kind"] == "maxpool")]
            line += (f" geomean nnlite/torch {geo:.2f} over {len(ratios)} layers; slowest conv "
                     f"{worst['layer']} {worst['t'] / worst['t_torch']:.2f}x; depthwise/max-pool "
                     f"{', '.join(dw_pool)};")
        big = [f"{r['layer']} {100 * r['gf'] / peak:.0f}%" for r in auto if r["layer"] in LARGE_3X3]
        mem = [r["extra"] / r["im2col"] for r in rows if r["batch"] == n and r["algo"] ==
               "implicit" and r["im2col"] and r["layer"].split()[1][0] != "1"]
        line += f" large 3x3 vs GEMM peak: {', '.join(big)};"
        if mem:
            line += f" implicit extra memory / im2col buffer (k x k): max {max(mem):.3f}"
        out.append(line)
    return out


def main():
    p = _timing.base_parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--only", default=None, help="run layers whose name contains this text")
    args = p.parse_args()
    if args.threads is None:
        args.threads = 2
    _timing.apply_threads(args)
    nthreads = nnlite.get_num_threads()
    if torch is not None:
        torch.set_num_threads(nthreads)
    repeat = min(args.repeat, 5) if args.quick else args.repeat
    layers = [la for la in SUITE if args.only is None or args.only in la[0]]
    peak = gemm_peak(nthreads, repeat, args.quick)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    extra = [
        ("machine", f"{platform.machine()} {platform.processor() or ''}".strip()),
        ("threads", f"nnlite {nthreads}, BLAS {_blas.get_threads()}, torch "
                    f"{torch.get_num_threads() if torch is not None else '-'}"),
        ("BLAS info", _blas.info()),
        ("GEMM", f"{gemm_ops.info().get('microkernel', 'numpy')}; peak {peak:.1f} GFLOP/s "
                 f"(nnlite.kernels.gemm, float32, {nthreads} threads)"),
        ("PyTorch", torch.__version__ if torch is not None else "not installed"),
        ("OpenMP", f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} "
                   f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', 'unset')} (one libgomp "
                   "for nnlite and PyTorch: the policy applies to both)"),
        ("load avg", " ".join(f"{v:.2f}" for v in load) if load else "n/a"),
        ("protocol", f"interleaved, {repeat} rounds, median; forward, float32, no autograd"),
    ]
    print(_timing.header(extra))
    rng = np.random.default_rng(0)
    rows = []
    for n in args.batch:
        for layer in layers:
            rows += bench_layer(layer, n, nthreads, repeat, peak, rng)
            last = [r for r in rows if r["default"]][-1]
            print(f"  ... batch {n} {layer[0]}: {last['ms']} ms (torch {last['torch ms']})",
                  file=sys.stderr, flush=True)
    print()
    _timing.print_table(rows, COLUMNS)
    print()
    for line in summary(rows, peak):
        print("# " + line)
    if args.csv:
        _timing.write_csv(args.csv, rows, COLUMNS)


if __name__ == "__main__":
    main()
