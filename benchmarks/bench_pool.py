"""Pooling and ROI kernels: nnlite's cython and numpy backends vs a plain NumPy baseline.

    python benchmarks/bench_pool.py [--quick] [--repeat 7] [--threads N] [--csv out.csv]
    python benchmarks/bench_pool.py --indices [--dtype float64] [--repeat 15] [--threads 1]

Cases: the ResNet stem max-pool (3x3 / 2, pad 1) on 64x112x112 maps, GoogLeNet's Inception
pool branch (3x3 / 1, pad 1, ceil_mode) on 192x28x28, the same window as an average pool
(count_include_pad=False), and RoIAlign (7x7, sampling_ratio 2, scale 1/16) and RoIPool with
100 boxes on a 256-channel 50x50 map. Forward and backward (gradient w.r.t. the input) are
timed at the kernel level (no autograd), all candidates of a row interleaved in one process
(round-robin, median and best of --repeat rounds).

The baseline is the textbook NumPy way: max/avg pools from a padded
``sliding_window_view`` (argmax over the flattened window; backward ``np.add.at``), RoIAlign
vectorised over every box and sample with fancy-index gathers of the four bilinear corners
(torchvision's pure-Python ``_roi_align`` layout, with the C++ kernel's out-of-range rule) and
``np.add.at`` for backward, RoIPool as a per-box, per-bin loop of ``max``/``argmax``. "diff" is
the max |cython - baseline| of the forward output.

--indices: the cython max pool forward with indices (what a training step runs) vs without
(inference), and the backward (the gradient w.r.t. the input from those indices: gx allocated
and scattered into), interleaved, on the pools of examples/train_digits.py at batch 32 (an
Inception branch's 3x3/1 pool on 16-channel 8x8 and 40-channel 4x4 maps, a 2x2/2 pool on
40-channel 8x8) and on larger planes; "ratio" is the median with indices over the median
without.
"""
import os
import sys

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _timing  # noqa: E402
from nnlite import kernels  # noqa: E402

# name, N, C, H, W, k, s, p, ceil_mode
POOLS = [
    ("max 3x3/2 p1 (resnet stem)", 8, 64, 112, 112, 3, 2, 1, False),
    ("max 3x3/1 p1 (inception)", 8, 192, 28, 28, 3, 1, 1, True),
    ("avg 3x3/1 p1 no-pad-count", 8, 192, 28, 28, 3, 1, 1, False),
]
QUICK_POOLS = [
    ("max 3x3/2 p1 (resnet stem)", 1, 64, 112, 112, 3, 2, 1, False),
    ("max 3x3/1 p1 (inception)", 1, 192, 28, 28, 3, 1, 1, True),
]
# name, N, C, H, W, boxes, out, scale, sampling_ratio
ROIS = [("roi_align 7x7 sr2", 2, 256, 50, 50, 100, 7, 1 / 16, 2),
        ("roi_pool 7x7", 2, 256, 50, 50, 100, 7, 1 / 16, 0)]
# --indices: name, planes, H, W, k, s, p, ceil_mode
INDEX_POOLS = [
    ("digits inception 3x3/1 p1", 512, 8, 8, 3, 1, 1, True),
    ("digits 2x2/2", 1280, 8, 8, 2, 2, 0, False),
    ("digits inception 3x3/1 p1", 1280, 4, 4, 3, 1, 1, True),
    ("resnet stem 3x3/2 p1", 64, 112, 112, 3, 2, 1, False),
    ("2x2/2", 2048, 32, 32, 2, 2, 0, False),
    ("inception 3x3/1 p1", 256, 56, 56, 3, 1, 1, True),
]
QUICK_ROIS = [("roi_align 7x7 sr2", 1, 256, 50, 50, 100, 7, 1 / 16, 2)]


# ------------------------------------------------------------------ plain NumPy baseline
def baseline_max_pool(x, k, s, p):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]  # (N, C, OH, OW, k, k)
    flat = win.reshape(win.shape[:4] + (k * k,))
    arg = flat.argmax(axis=-1)
    return np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0], arg


def baseline_max_pool_backward(gy, arg, shape, k, s, p):
    n, c, h, w = shape
    _, _, oh, ow = gy.shape
    gxp = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=gy.dtype)
    rows = (np.arange(oh) * s)[None, None, :, None] + arg // k
    cols = (np.arange(ow) * s)[None, None, None, :] + arg % k
    ni = np.arange(n)[:, None, None, None]
    ci = np.arange(c)[None, :, None, None]
    np.add.at(gxp, (ni, ci, rows, cols), gy)
    return gxp[:, :, p:p + h, p:p + w]


def baseline_avg_pool(x, k, s, p):
    # count_include_pad=False: divide window sums by window sums of an all-ones map
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ones = np.pad(np.ones(x.shape[2:], x.dtype), p)
    sums = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s].sum(axis=(-2, -1))
    cnt = sliding_window_view(ones, (k, k))[::s, ::s].sum(axis=(-2, -1))
    return sums / cnt, cnt


def baseline_avg_pool_backward(gy, cnt, shape, k, s, p):
    n, c, h, w = shape
    g = gy / cnt
    gxp = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=gy.dtype)
    oh, ow = gy.shape[2:]
    for i in range(k):
        for j in range(k):
            gxp[:, :, i:i + (oh - 1) * s + 1:s, j:j + (ow - 1) * s + 1:s] += g
    return gxp[:, :, p:p + h, p:p + w]


def _align_samples(start, size, pooled, grid, length):
    """(K, pooled, grid) low/high taps, weights and validity along one axis."""
    bins = size / pooled
    c = (start[:, None, None] + np.arange(pooled)[None, :, None] * bins[:, None, None]
         + (np.arange(grid)[None, None, :] + 0.5) * bins[:, None, None] / grid)
    valid = (c >= -1) & (c <= length)
    c = np.clip(c, 0, None)
    lo = c.astype(np.int64)
    last = lo >= length - 1
    lo = np.where(last, length - 1, lo)
    hi = np.where(last, length - 1, lo + 1)
    c = np.where(last, lo, c)
    frac = c - lo
    return lo, hi, 1 - frac, frac, valid


def _align_setup(rois, out, scale, sr, h, w):
    s = rois[:, 1:] * scale
    rw = np.maximum(s[:, 2] - s[:, 0], 1)
    rh = np.maximum(s[:, 3] - s[:, 1], 1)
    ys = _align_samples(s[:, 1], rh, out, sr, h)  # (K, PH, gh)
    xs = _align_samples(s[:, 0], rw, out, sr, w)  # (K, PW, gw)
    b = rois[:, 0].astype(np.int64)[:, None, None, None, None]
    # (K, PH, gh, 1, 1) x (K, 1, 1, PW, gw) index grids
    yi = [a[:, :, :, None, None] for a in ys]
    xi = [a[:, None, None, :, :] for a in xs]
    return b, yi, xi


def baseline_roi_align(x, rois, out, scale, sr):
    b, (yl, yh, hy, ly, vy), (xl, xh, hx, lx, vx) = _align_setup(rois, out, scale, sr,
                                                                 *x.shape[2:])
    xc = np.moveaxis(x, 1, -1)  # (N, H, W, C): gathers give (K, PH, gh, PW, gw, C)
    val = ((hy * hx)[..., None] * xc[b, yl, xl] + (hy * lx)[..., None] * xc[b, yl, xh]
           + (ly * hx)[..., None] * xc[b, yh, xl] + (ly * lx)[..., None] * xc[b, yh, xh])
    val = np.where((vy & vx)[..., None], val, 0)
    return np.moveaxis(val.mean(axis=(2, 4)), -1, 1)  # (K, C, PH, PW)


def baseline_roi_align_backward(gy, rois, shape, out, scale, sr):
    b, (yl, yh, hy, ly, vy), (xl, xh, hx, lx, vx) = _align_setup(rois, out, scale, sr,
                                                                 *shape[2:])
    g = np.moveaxis(gy, 1, -1)[:, :, None, :, None, :] / (sr * sr)  # (K, PH, 1, PW, 1, C)
    m = (vy & vx)[..., None]
    gxc = np.zeros((shape[0], shape[2], shape[3], shape[1]), dtype=gy.dtype)
    for wy, wx, yy, xx in ((hy, hx, yl, xl), (hy, lx, yl, xh), (ly, hx, yh, xl),
                           (ly, lx, yh, xh)):
        contrib = np.where(m, (wy * wx)[..., None] * g, 0)
        np.add.at(gxc, (b, yy, xx), np.broadcast_to(contrib, yy.shape[:1] + contrib.shape[1:]))
    return np.moveaxis(gxc, -1, 1)


def _round_away(v):
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def baseline_roi_pool(x, rois, out, scale):
    n, c, h, w = x.shape
    k = len(rois)
    y = np.zeros((k, c, out, out), dtype=x.dtype)
    arg = np.full((k, c, out, out), -1, dtype=np.int64)
    q = _round_away(rois[:, 1:] * scale).astype(np.int64)
    for r in range(k):
        x1, y1, x2, y2 = q[r]
        rh, rw = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        plane = x[int(rois[r, 0])]
        for i in range(out):
            h0 = min(max(int(np.floor(i * rh / out)) + y1, 0), h)
            h1 = min(max(int(np.ceil((i + 1) * rh / out)) + y1, 0), h)
            for j in range(out):
                w0 = min(max(int(np.floor(j * rw / out)) + x1, 0), w)
                w1 = min(max(int(np.ceil((j + 1) * rw / out)) + x1, 0), w)
                if h1 <= h0 or w1 <= w0:
                    continue
                win = plane[:, h0:h1, w0:w1].reshape(c, -1)
                a = win.argmax(axis=1)
                y[r, :, i, j] = win[np.arange(c), a]
                arg[r, :, i, j] = (h0 + a // (w1 - w0)) * w + w0 + a % (w1 - w0)
    return y, arg


def baseline_roi_pool_backward(gy, rois, arg, shape):
    gx = np.zeros(shape, dtype=gy.dtype)
    k, c = gy.shape[:2]
    b = rois[:, 0].astype(np.int64)[:, None, None, None]
    ci = np.arange(c)[None, :, None, None]
    ok = arg >= 0
    np.add.at(gx.reshape(shape[0], c, -1),
              (np.broadcast_to(b, arg.shape)[ok], np.broadcast_to(ci, arg.shape)[ok], arg[ok]),
              gy[ok])
    return gx


# ------------------------------------------------------------------------------ runner
def _rows_for(name, fwd, bwd, repeat, diff, extra=""):
    rows = []
    for phase, cands in (("forward", fwd), ("backward", bwd)):
        times = _timing.interleave(cands, repeat=repeat, warmup=1, min_time=0.05)
        base = _timing.median(times["numpy baseline"])
        for cand, ts in times.items():
            med = _timing.median(ts)
            rows.append({"case": name, "pass": phase, "impl": cand,
                         "median": _timing.fmt_time(med), "best": _timing.fmt_time(min(ts)),
                         "vs baseline": f"{base / med:.2f}x",
                         "diff": f"{diff:.1e}" if phase == "forward" else "", "note": extra})
    return rows


def bench_pool(case, repeat, backends):
    name, n, c, h, w, k, s, p, ceil_mode = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    planes = x.reshape(n * c, h, w)
    is_max = name.startswith("max")
    if is_max:
        y_ref, arg = baseline_max_pool(x, k, s, p)
        gy = rng.standard_normal(y_ref.shape).astype(np.float32)
        geo = ((k, k), (s, s), (p, p), (1, 1), ceil_mode)
        fwd = {"numpy baseline": lambda: baseline_max_pool(x, k, s, p)}
        bwd = {"numpy baseline": lambda: baseline_max_pool_backward(gy, arg, x.shape, k, s, p)}
        idx = kernels.impl("max_pool2d_forward", "numpy")(planes, *geo)[1]
        gyp = gy.reshape(n * c, *gy.shape[2:])
        for b in backends:
            fwd[f"nnlite {b}"] = (lambda b=b: kernels.impl("max_pool2d_forward", b)(planes, *geo))
            bwd[f"nnlite {b}"] = (lambda b=b: kernels.impl("max_pool2d_backward", b)(
                gyp, idx, (h, w)))
        got = kernels.impl("max_pool2d_forward", backends[0])(planes, *geo)[0]
    else:
        y_ref, cnt = baseline_avg_pool(x, k, s, p)
        gy = rng.standard_normal(y_ref.shape).astype(np.float32)
        geo = ((k, k), (s, s), (p, p), ceil_mode, False, None)
        fwd = {"numpy baseline": lambda: baseline_avg_pool(x, k, s, p)}
        bwd = {"numpy baseline": lambda: baseline_avg_pool_backward(gy, cnt, x.shape, k, s, p)}
        gyp = gy.reshape(n * c, *gy.shape[2:])
        for b in backends:
            fwd[f"nnlite {b}"] = (lambda b=b: kernels.impl("avg_pool2d_forward", b)(planes, *geo))
            bwd[f"nnlite {b}"] = (lambda b=b: kernels.impl("avg_pool2d_backward", b)(
                gyp, (h, w), *geo))
        got = kernels.impl("avg_pool2d_forward", backends[0])(planes, *geo)
    diff = float(np.abs(got.reshape(y_ref.shape) - y_ref).max())
    return _rows_for(f"{name} {n}x{c}x{h}x{w}", fwd, bwd, repeat, diff)


def _boxes(rng, n, k, size):
    lo = rng.uniform(0, size * 0.7, (k, 2))
    wh = rng.uniform(size * 0.05, size * 0.3, (k, 2))
    hi = np.minimum(lo + wh, size - 1)
    return np.concatenate([rng.integers(0, n, (k, 1)), lo, hi], axis=1).astype(np.float32)


def bench_roi(case, repeat, backends):
    name, n, c, h, w, k, out, scale, sr = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    rois = _boxes(rng, n, k, h / scale)  # image coordinates; the map is the image * scale
    gy = rng.standard_normal((k, c, out, out)).astype(np.float32)
    if name.startswith("roi_align"):
        args = ((out, out), scale, sr, False)
        y_ref = baseline_roi_align(x, rois, out, scale, sr)
        fwd = {"numpy baseline": lambda: baseline_roi_align(x, rois, out, scale, sr)}
        bwd = {"numpy baseline": lambda: baseline_roi_align_backward(gy, rois, x.shape, out,
                                                                     scale, sr)}
        for b in backends:
            fwd[f"nnlite {b}"] = (lambda b=b: kernels.impl("roi_align_forward", b)(x, rois,
                                                                                 *args))
            bwd[f"nnlite {b}"] = (lambda b=b: kernels.impl("roi_align_backward", b)(
                gy, rois, x.shape, *args[1:]))
        got = kernels.impl("roi_align_forward", backends[0])(x, rois, *args)
    else:
        y_ref, arg = baseline_roi_pool(x, rois, out, scale)
        fwd = {"numpy baseline": lambda: baseline_roi_pool(x, rois, out, scale)}
        bwd = {"numpy baseline": lambda: baseline_roi_pool_backward(gy, rois, arg, x.shape)}
        arg_nn = kernels.impl("roi_pool_forward", "numpy")(x, rois, (out, out), scale)[1]
        for b in backends:
            fwd[f"nnlite {b}"] = (lambda b=b: kernels.impl("roi_pool_forward", b)(
                x, rois, (out, out), scale))
            bwd[f"nnlite {b}"] = (lambda b=b: kernels.impl("roi_pool_backward", b)(
                gy, rois, arg_nn, x.shape))
        got = kernels.impl("roi_pool_forward", backends[0])(x, rois, (out, out), scale)[0]
    diff = float(np.abs(got - y_ref).max())
    return _rows_for(f"{name} {k} boxes on {n}x{c}x{h}x{w}", fwd, bwd, repeat, diff)


def bench_indices(repeat, dtype):
    """Rows of the --indices table: forward with vs without indices, interleaved."""
    fwd = kernels.impl("max_pool2d_forward", "cython")
    bwd = kernels.impl("max_pool2d_backward", "cython")
    rows = []
    for name, planes, h, w, k, s, p, ceil_mode in INDEX_POOLS:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((planes, h, w)).astype(dtype)
        geo = ((k, k), (s, s), (p, p), (1, 1), ceil_mode)
        y, idx = fwd(x, *geo, indices=True)
        gy = rng.standard_normal(y.shape).astype(dtype)
        times = _timing.interleave({"with": lambda: fwd(x, *geo, indices=True),
                                    "without": lambda: fwd(x, *geo, indices=False),
                                    "backward": lambda: bwd(gy, idx, (h, w))},
                                   repeat=repeat, warmup=3, min_time=0.02)
        med = {kind: _timing.median(ts) for kind, ts in times.items()}
        rows.append({"case": f"{name} {planes}x{h}x{w}",
                     "with indices": _timing.fmt_time(med["with"]),
                     "without": _timing.fmt_time(med["without"]),
                     "ratio": f"{med['with'] / med['without']:.2f}x",
                     "best with": _timing.fmt_time(min(times["with"])),
                     "best without": _timing.fmt_time(min(times["without"])),
                     "backward": _timing.fmt_time(med["backward"]),
                     "best backward": _timing.fmt_time(min(times["backward"]))})
    return rows


def main(argv=None):
    p = _timing.base_parser(__doc__.splitlines()[0])
    p.add_argument("--indices", action="store_true",
                   help="max pool forward with vs without indices (see the docstring)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="--indices: the dtype")
    args = p.parse_args(argv)
    _timing.apply_threads(args)
    if args.indices:
        repeat = 5 if args.quick else args.repeat
        print(_timing.header([("dtype", args.dtype),
                              ("repeat", f"{repeat} interleaved rounds")]))
        rows = bench_indices(repeat, np.dtype(args.dtype))
        cols = ["case", "with indices", "without", "ratio", "best with", "best without",
                "backward", "best backward"]
        _timing.print_table(rows, cols)
        if args.csv:
            _timing.write_csv(args.csv, rows, cols)
        return
    repeat = 3 if args.quick else args.repeat
    backends = [b for b in ("cython", "numpy") if b in nnlite.available_backends()]
    print(_timing.header([("dtype", "float32"), ("repeat", f"{repeat} interleaved rounds")]))
    rows = []
    for case in (QUICK_POOLS if args.quick else POOLS):
        rows += bench_pool(case, repeat, backends)
    for case in (QUICK_ROIS if args.quick else ROIS):
        rows += bench_roi(case, repeat, backends)
    cols = ["case", "pass", "impl", "median", "best", "vs baseline", "diff"]
    _timing.print_table(rows, cols)
    if args.csv:
        _timing.write_csv(args.csv, rows, cols)


if __name__ == "__main__":
    main()
