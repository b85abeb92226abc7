"""F.interpolate kernels: nnlite's two NumPy strategies vs PyTorch (when installed).

    python benchmarks/bench_interpolate.py [--quick] [--repeat 7] [--threads N] [--csv out.csv]

Cases: 2x nearest / bilinear / bicubic upsampling of a 64-channel 56x56 map (a decoder or FPN
stage), antialiased bilinear and bicubic downsampling of 3-channel images (a resize in a data
pipeline), and a long 1-D linear resample (audio-like, 4096 -> 3001 samples). Forward and
backward (gradient w.r.t. the input) are timed at the kernel level on planes (N*C, ...), all
candidates of a row interleaved (round-robin, median and best of --repeat rounds).

Candidates: "nnlite" (the default choice per axis), "dense" (one (out, in) matrix product
per axis, the default for weighted filters on axes with in <= 64 * taps while the matrix has
<= 2**20 entries; nearest and larger axes fall back to taps even here), "taps" (one gather per
filter tap; backward gathers from the transposed tap table) and PyTorch's CPU kernel
(torch.nn.functional.interpolate / its autograd backward) with as many threads as nnlite.
"diff" is the max |nnlite - torch| (else |nnlite - taps|) of the forward output.
"""
import os
import sys

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _timing  # noqa: E402
from nnlite.functional.vision import _nearest_rule, _resolve  # noqa: E402
from nnlite.kernels import interpolate_numpy as K  # noqa: E402

# name, input shape, interpolate kwargs
CASES = [
    ("nearest 2x", (8, 64, 56, 56), dict(scale_factor=2, mode="nearest")),
    ("bilinear 2x", (8, 64, 56, 56), dict(scale_factor=2, mode="bilinear")),
    ("bicubic 2x", (8, 64, 56, 56), dict(scale_factor=2, mode="bicubic", align_corners=True)),
    ("bilinear aa 448->224", (8, 3, 448, 448), dict(size=(224, 224), mode="bilinear",
                                                    antialias=True)),
    ("bicubic aa 448->112", (8, 3, 448, 448), dict(size=(112, 112), mode="bicubic",
                                                   antialias=True)),
    ("linear 1-D 4096->3001", (4, 16, 4096), dict(size=3001, mode="linear")),
]
QUICK = [
    ("bilinear 2x", (1, 64, 56, 56), dict(scale_factor=2, mode="bilinear")),
    ("bicubic aa 448->112", (1, 3, 448, 448), dict(size=(112, 112), mode="bicubic",
                                                   antialias=True)),
    ("linear 1-D 4096->3001", (1, 16, 4096), dict(size=3001, mode="linear")),
]


def _kernel_args(x, kw):
    t = nnlite.tensor(x)
    out, scales, ac = _resolve(t, kw.get("size"), kw.get("scale_factor"), kw["mode"],
                               kw.get("align_corners"), None, kw.get("antialias", False))
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(kw["mode"], kw["mode"])
    rule = _nearest_rule(t, out) if mode.startswith("nearest") else "generic"
    return out, (mode, ac, scales, kw.get("antialias", False), rule)


def _with_threshold(value, fn):
    def run():
        old = K._DENSE_PER_TAP
        K._DENSE_PER_TAP = value
        try:
            return fn()
        finally:
            K._DENSE_PER_TAP = old
    return run


def bench(case, repeat, torch):
    name, shape, kw = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    out, args = _kernel_args(x, kw)
    planes = x.reshape((-1,) + shape[2:])
    in_size = shape[2:]
    gy = rng.standard_normal((planes.shape[0],) + tuple(out)).astype(np.float32)
    default = K._DENSE_PER_TAP
    fwd, bwd = {}, {}
    for label, threshold in (("nnlite", default), ("dense", 10 ** 9), ("taps", 0)):
        fwd[label] = _with_threshold(threshold,
                                     lambda: K.interpolate_forward(planes, out, *args))
        bwd[label] = _with_threshold(threshold,
                                     lambda: K.interpolate_backward(gy, in_size, *args))
    y_dense = fwd["nnlite"]()
    y_other = fwd["taps"]()
    if torch is not None:
        xt = torch.tensor(x, requires_grad=True)
        gt = torch.tensor(gy.reshape((shape[0], shape[1]) + tuple(out)))
        fwd["torch"] = lambda: torch.nn.functional.interpolate(xt.detach(), **kw)

        def torch_backward():
            xt.grad = None
            torch.nn.functional.interpolate(xt, **kw).backward(gt)
        bwd["torch"] = torch_backward
        y_other = fwd["torch"]().numpy().reshape(y_dense.shape)
    diff = float(np.abs(y_dense - y_other).max())
    rows = []
    for phase, cands in (("forward", fwd), ("backward", bwd)):
        times = _timing.interleave(cands, repeat=repeat, warmup=1, min_time=0.05)
        ref = _timing.median(times["torch"]) if "torch" in times else None
        for cand, ts in times.items():
            med = _timing.median(ts)
            rows.append({"case": f"{name} {'x'.join(map(str, shape))}", "pass": phase,
                         "impl": cand, "median": _timing.fmt_time(med),
                         "best": _timing.fmt_time(min(ts)),
                         "vs torch": f"{ref / med:.2f}x" if ref else "",
                         "diff": f"{diff:.1e}" if phase == "forward" else ""})
    return rows


def main(argv=None):
    p = _timing.base_parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    _timing.apply_threads(args)
    try:
        import torch

        torch.set_num_threads(nnlite.get_num_threads())
    except ImportError:
        torch = None
    extra = [("torch", torch.__version__ if torch else "not installed")]
    print(_timing.header(extra))
    repeat = 3 if args.quick else args.repeat
    rows = []
    for case in QUICK if args.quick else CASES:
        rows += bench(case, repeat, torch)
    columns = ["case", "pass", "impl", "median", "best", "vs torch", "diff"]
    _timing.print_table(rows, columns)
    if args.csv:
        _timing.write_csv(args.csv, rows, columns)


if __name__ == "__main__":
    main()
