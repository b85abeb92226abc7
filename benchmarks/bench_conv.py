"""conv2d forward/backward: nnlite's cython and numpy backends vs a plain NumPy im2col baseline.

    python benchmarks/bench_conv.py [--quick] [--repeat 7] [--threads N] [--csv out.csv]
    python benchmarks/bench_conv.py --winograd [--batch 1 8] [--quick] ...

``--winograd``: the 3x3 stride-1 layers of ResNet-50 and GoogLeNet, forward only, float32:
'implicit' and 'im2col' (F.conv2d's kernels), 'winograd' as F.conv2d runs it (weights
transformed and packed per call) and 'wino plan' as an inference plan runs it (weights
prepared once). "GF/s eff" = direct-conv FLOPs (2*N*F*C*9*OH*OW) / time; "best/wino" = the
faster of implicit and im2col over 'wino plan'; "err F2" / "err F4" = max |y - y64| / max |y64|
of F(2x2, 3x3) and F(4x4, 3x3) in float32 against a float64 conv.

The baseline is the textbook NumPy conv (CS231n's ``im2col_indices``): np.pad, a fancy-index
gather into a (C*KH*KW, N*OH*OW) column matrix, one GEMM, a transpose back to NCHW, and
``np.add.at`` for col2im; grouped convs loop over groups in Python. It runs in the same process,
interleaved with the nnlite backends (round-robin, median of ``--repeat`` rounds).

FLOPs: forward 2*N*F*(C/G)*KH*KW*OH*OW; backward (input + weight gradients) twice that.
"im2col" is the time of the column fill alone for one forward (0 for the pointwise path).
Times are medians over the rounds ("best" = minimum); GF/s and "x" (speed-up over the baseline)
use the medians. "ws MiB" is the column buffer: nnlite's chunked workspace
(``ConvGeometry.workspace_bytes``) vs the baseline's whole-batch column matrix.
"""
import os
import sys

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _timing  # noqa: E402
from nnlite import kernels  # noqa: E402
from nnlite._convgeom import conv2d_geometry  # noqa: E402

# name, N, C, H, W, F, KH, KW, stride, padding, groups
LAYERS = [
    ("resnet 3x3", 8, 64, 56, 56, 64, 3, 3, 1, 1, 1),
    ("1x1 reduce", 8, 256, 28, 28, 64, 1, 1, 1, 0, 1),
    ("3x3 stride 2", 8, 128, 28, 28, 128, 3, 3, 2, 1, 1),
    ("5x5 inception", 8, 32, 28, 28, 64, 5, 5, 1, 2, 1),
    ("depthwise 3x3", 8, 128, 28, 28, 128, 3, 3, 1, 1, 128),
    ("stem 7x7/2", 4, 3, 224, 224, 64, 7, 7, 2, 3, 1),
]
QUICK = [
    ("resnet 3x3", 4, 32, 28, 28, 32, 3, 3, 1, 1, 1),
    ("1x1 reduce", 4, 64, 14, 14, 32, 1, 1, 1, 0, 1),
    ("depthwise 3x3", 4, 32, 14, 14, 32, 3, 3, 1, 1, 32),
]


# ------------------------------------------------------------- plain NumPy baseline
def _indices(c, h, w, kh, kw, s, p):
    oh, ow = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    i0 = np.tile(np.repeat(np.arange(kh), kw), c)
    i1 = s * np.repeat(np.arange(oh), ow)
    j0 = np.tile(np.arange(kw), kh * c)
    j1 = s * np.tile(np.arange(ow), oh)
    i = i0.reshape(-1, 1) + i1.reshape(1, -1)
    j = j0.reshape(-1, 1) + j1.reshape(1, -1)
    k = np.repeat(np.arange(c), kh * kw).reshape(-1, 1)
    return k, i, j, oh, ow


def baseline_im2col(x, kh, kw, s, p):
    n, c, h, w = x.shape
    k, i, j, oh, ow = _indices(c, h, w, kh, kw, s, p)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    cols = xp[:, k, i, j]                                     # (N, C*KH*KW, OH*OW)
    return cols.transpose(1, 2, 0).reshape(c * kh * kw, -1), oh, ow   # (K, OH*OW*N)


def baseline_col2im(cols, shape, kh, kw, s, p):
    n, c, h, w = shape
    k, i, j, _, _ = _indices(c, h, w, kh, kw, s, p)
    xp = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=cols.dtype)
    cols = cols.reshape(c * kh * kw, -1, n).transpose(2, 0, 1)
    np.add.at(xp, (slice(None), k, i, j), cols)
    return xp[:, :, p:p + h, p:p + w] if p else xp


def baseline_forward(x, w, b, s, p, g):
    n, c = x.shape[:2]
    f, cg, kh, kw = w.shape
    fg, outs = f // g, []
    for gi in range(g):
        cols, oh, ow = baseline_im2col(x[:, gi * cg:(gi + 1) * cg], kh, kw, s, p)
        y = w[gi * fg:(gi + 1) * fg].reshape(fg, -1) @ cols + b[gi * fg:(gi + 1) * fg, None]
        outs.append(y.reshape(fg, oh, ow, n).transpose(3, 0, 1, 2))
    return np.concatenate(outs, axis=1)


def baseline_backward(gy, x, w, s, p, g):
    n, c = x.shape[:2]
    f, cg, kh, kw = w.shape
    fg = f // g
    gx, gw = [], []
    for gi in range(g):
        xs = x[:, gi * cg:(gi + 1) * cg]
        cols, _, _ = baseline_im2col(xs, kh, kw, s, p)
        gyr = gy[:, gi * fg:(gi + 1) * fg].transpose(1, 2, 3, 0).reshape(fg, -1)
        ws = w[gi * fg:(gi + 1) * fg]
        gw.append((gyr @ cols.T).reshape(ws.shape))
        gx.append(baseline_col2im(ws.reshape(fg, -1).T @ gyr, xs.shape, kh, kw, s, p))
    return np.concatenate(gx, axis=1), np.concatenate(gw, axis=0), gy.sum(axis=(0, 2, 3))


# ------------------------------------------------------------------------ runner
def _nnlite(backend, x, w, b, gy, geom):
    fwd = kernels.impl("conv2d_forward", backend)
    bx = kernels.impl("conv2d_backward_input", backend)
    bw = kernels.impl("conv2d_backward_weight", backend)

    def forward():
        return fwd(x, w, b, geom)

    def backward():
        return bx(gy, w, geom), bw(gy, x, geom), gy.sum(axis=(0, 2, 3))

    return forward, backward


def run(layers, repeat, dtype=np.float32):
    backends = [b for b in ("cython", "numpy") if b in nnlite.available_backends()]
    rows = []
    rng = np.random.default_rng(0)
    for name, n, c, h, w_, f, kh, kw, s, p, g in layers:
        x = rng.standard_normal((n, c, h, w_)).astype(dtype)
        w = (rng.standard_normal((f, c // g, kh, kw)) / np.sqrt(c // g * kh * kw)).astype(dtype)
        b = rng.standard_normal(f).astype(dtype)
        geom = conv2d_geometry(x.shape, w.shape, b.shape, s, p, 1, g)
        gy = rng.standard_normal((n, f, geom.oh, geom.ow)).astype(dtype)
        cands = {"baseline": (lambda: baseline_forward(x, w, b, s, p, g),
                              lambda: baseline_backward(gy, x, w, s, p, g))}
        for be in backends:
            cands[be] = _nnlite(be, x, w, b, gy, geom)
        fwd_t = _timing.interleave({k: v[0] for k, v in cands.items()}, repeat=repeat,
                                   min_time=0.05)
        bwd_t = _timing.interleave({k: v[1] for k, v in cands.items()}, repeat=repeat,
                                   min_time=0.05)
        im2col_t = {}
        for be in backends:
            if geom.is_pointwise:
                im2col_t[be] = 0.0
                continue
            fn = kernels.impl("im2col", be)
            nb = geom.batch_chunk(x.itemsize)
            buf = np.empty(geom.col_shape(nb), dtype)
            chunks = -(-n // nb)
            t = _timing.interleave({be: lambda: fn(x[:nb], geom, out=buf)}, repeat=repeat,
                                   min_time=0.02)
            im2col_t[be] = _timing.median(t[be]) * chunks
        y_base = cands["baseline"][0]()
        gx_base, gw_base, _ = cands["baseline"][1]()
        flops = geom.flops()
        base_f, base_b = _timing.median(fwd_t["baseline"]), _timing.median(bwd_t["baseline"])
        for be in ["baseline"] + backends:
            tf, tb = _timing.median(fwd_t[be]), _timing.median(bwd_t[be])
            if be == "baseline":
                diff = "-"
            else:
                y = cands[be][0]()
                gx, gw, _ = cands[be][1]()
                err = max(np.abs(y - y_base).max(), np.abs(gx - gx_base).max(),
                          np.abs(gw - gw_base).max())
                diff = f"{err:.1e}"
            rows.append({
                "layer": name, "shape": f"{n}x{c}x{h}x{w_}->{f} k{kh}x{kw} s{s} g{g}",
                "impl": be,
                "fwd": _timing.fmt_time(tf), "fwd GF/s": f"{_timing.gflops(flops, tf):.1f}",
                "fwd x": f"{base_f / tf:.2f}",
                "bwd": _timing.fmt_time(tb), "bwd GF/s": f"{_timing.gflops(2 * flops, tb):.1f}",
                "bwd x": f"{base_b / tb:.2f}",
                "fwd best": _timing.fmt_time(_timing.best(fwd_t[be])),
                "bwd best": _timing.fmt_time(_timing.best(bwd_t[be])),
                "im2col": _timing.fmt_time(im2col_t[be]) if be in im2col_t else "-",
                "ws MiB": (f"{geom.workspace_bytes(dtype) / 2**20:.1f}" if be != "baseline"
                           else f"{n * geom.col_shape(1)[1] * geom.l * x.itemsize / 2**20:.1f}"),
                "max|diff|": diff,
            })
    return rows


COLUMNS = ["layer", "shape", "impl", "fwd", "fwd best", "fwd GF/s", "fwd x", "bwd", "bwd best",
           "bwd GF/s", "bwd x", "im2col", "ws MiB", "max|diff|"]


# name, C, H (= W), F of the 3x3 stride-1 padding-1 convs (torchvision's ResNet-50, GoogLeNet)
WINOGRAD_LAYERS = [
    ("resnet50 conv2_x", 64, 56, 64), ("resnet50 conv3_x", 128, 28, 128),
    ("resnet50 conv4_x", 256, 14, 256), ("resnet50 conv5_x", 512, 7, 512),
    ("googlenet conv3", 64, 56, 192), ("googlenet 3a 3x3", 96, 28, 128),
    ("googlenet 3a 3x3b", 16, 28, 32), ("googlenet 3b 3x3", 128, 28, 192),
    ("googlenet 4a 3x3", 96, 14, 208), ("googlenet 4c 3x3", 128, 14, 256),
    ("googlenet 4e 3x3", 160, 14, 320), ("googlenet 5a 3x3", 160, 7, 320),
    ("googlenet 5b 3x3", 192, 7, 384),
]


def run_winograd(batches, repeat, quick=False):
    from nnlite.kernels import conv_cython, conv_winograd

    rows = []
    rng = np.random.default_rng(0)
    layers = WINOGRAD_LAYERS[:4] if quick else WINOGRAD_LAYERS
    for n in batches:
        for name, c, h, f in layers:
            x = rng.standard_normal((n, c, h, h)).astype(np.float32)
            w = (rng.standard_normal((f, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32)
            geom = conv2d_geometry(x.shape, w.shape, None, 1, 1, 1, 1)
            prepared = conv_winograd.WinogradWeights(w, geom, np.float32)
            y3 = np.empty((n, f, h * h), np.float32)
            cands = {a: (lambda a=a: conv_cython.conv2d_forward(x, w, None, geom, algorithm=a))
                     for a in ("implicit", "im2col", "winograd")}
            cands["wino plan"] = lambda: prepared.run(x, y3)
            t = _timing.interleave(cands, repeat=repeat, min_time=0.05)
            med = {k: _timing.median(v) for k, v in t.items()}
            y64 = conv_cython.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None,
                                             geom, algorithm="implicit")
            scale = float(np.abs(y64).max())
            err = {m: float(np.abs(conv_winograd.forward(x, w, None, geom, m=m) - y64).max())
                   / scale for m in (2, 4)}
            best = min(med["implicit"], med["im2col"])
            row = {"layer": name, "shape": f"{n}x{c}x{h}x{h}->{f}"}
            for k in cands:
                row[k] = _timing.fmt_time(med[k])
            row["GF/s eff"] = f"{_timing.gflops(geom.flops(), med['wino plan']):.0f}"
            row["GF/s best"] = f"{_timing.gflops(geom.flops(), best):.0f}"
            row["best/wino"] = f"{best / med['wino plan']:.2f}"
            row["best/wino call"] = f"{best / med['winograd']:.2f}"
            row["auto"] = nnlite._algorithms.resolve(geom, "auto")
            row["plan auto"] = nnlite._algorithms.resolve(geom, "auto", weights_prepared=True)
            row["err F2"], row["err F4"] = f"{err[2]:.1e}", f"{err[4]:.1e}"
            rows.append(row)
    return rows


WINOGRAD_COLUMNS = ["layer", "shape", "implicit", "im2col", "winograd", "wino plan",
                    "GF/s best", "GF/s eff", "best/wino", "best/wino call", "auto", "plan auto",
                    "err F2", "err F4"]


def main(argv=None):
    parser = _timing.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--winograd", action="store_true",
                        help="Winograd vs implicit vs im2col on ResNet-50/GoogLeNet 3x3 layers")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8],
                        help="batch sizes of --winograd (default 1 8)")
    args = parser.parse_args(argv)
    _timing.apply_threads(args)
    if args.winograd:
        repeat = 3 if args.quick else args.repeat
        print(_timing.header([("dtype", "float32"),
                              ("repeat", f"{repeat} interleaved rounds, median")]))
        rows = run_winograd(args.batch, repeat, args.quick)
        _timing.print_table(rows, WINOGRAD_COLUMNS)
        if args.csv:
            _timing.write_csv(args.csv, rows, WINOGRAD_COLUMNS)
        return
    layers = QUICK if args.quick else LAYERS
    repeat = 3 if args.quick else args.repeat
    env = ", ".join(f"{k}={os.environ.get(k, '(unset)')}"
                    for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"))
    print(_timing.header([("dtype", "float32"), ("env", env),
                          ("repeat", f"{repeat} interleaved rounds, median")]))
    print("# 'x' columns: speed-up over the plain NumPy im2col baseline (same process); "
          "max|diff| vs baseline over y, gx, gW")
    rows = run(layers, repeat)
    _timing.print_table(rows, COLUMNS)
    if args.csv:
        _timing.write_csv(args.csv, rows, COLUMNS)


if __name__ == "__main__":
    main()
