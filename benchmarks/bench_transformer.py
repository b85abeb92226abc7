"""A transformer encoder layer from ONNX: nnlite (plain executor and optimized plan) vs ONNX
Runtime and PyTorch, same weights, one process.

    python benchmarks/bench_transformer.py [--repeat 15] [--threads 2] [--lengths 128,800]
        [--width 256] [--heads 8] [--steps] [--csv out.csv]

The layer is the pre-norm block most vision and language transformers repeat: LayerNorm,
one q/k/v projection split into heads, softmax(q k^T / sqrt(d)) v, heads merged, output
projection and residual, LayerNorm, a 4x-wide MLP with GELU (erf form) and residual. It is
written in PyTorch and exported by ``torch.onnx.export`` (opset 17, the TorchScript exporter):
the graph has PyTorch's spelling of every op (Reshape/Transpose/Split/Squeeze for the heads,
Div/Erf/Add/Mul/Mul for GELU), which is what a user brings. Needs torch, onnx and
onnxruntime (prints why it stops otherwise).

Every candidate runs batch 1 with --threads threads, interleaved (``_timing.interleave``),
median and best of --repeat rounds; "err" is max |out - torch| / max |torch|. With --steps,
the optimized plan's steps are timed one by one (medians over the rounds), each with the shape
of its output buffer. Never asserts; figures depend on the machine's load (the header names
the CPU).
"""
import io
import os
import sys
import time

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _timing  # noqa: E402
from nnlite._config import pool_hold  # noqa: E402


def encoder_layer(torch, width, heads):
    """The pre-norm encoder layer (module doc), seeded weights, eval mode."""
    nn = torch.nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

        def forward(self, x):
            b, n, _ = x.shape
            qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, heads, width // heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-1, -2) * (width // heads) ** -0.5, dim=-1)
            x = x + self.proj((a @ v).transpose(1, 2).reshape(b, n, width))
            return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))

    torch.manual_seed(0)
    return Encoder().eval()


def export(torch, model, x):
    import warnings

    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), f, opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["y"])
    return f.getvalue()


def step_times(fast, x, rounds):
    """(kernel name and shape, median seconds) of every step of ``fast``'s plan for ``x``."""
    fast(x)
    key = next(iter(fast._plans))
    plan = fast._plans[key][0]
    _, ins, _, calls = fast._frame(plan, key)
    times = [[] for _ in calls]
    pool_hold(1)
    try:
        for _ in range(rounds):
            np.copyto(ins[0], x)
            for j, call in enumerate(calls):
                t0 = time.perf_counter()
                call()
                times[j].append(time.perf_counter() - t0)
    finally:
        pool_hold(-1)
    out, st = [], plan.storage
    for step, ts in zip(plan.steps, times):
        meta = st.meta.get(st.root.get(step.node.outputs[0]))
        shape = "" if meta is None else "x".join(str(d) for d in meta.shape)
        out.append((f"{step.node.op} {shape}".strip(), float(np.median(ts))))
    return out


def main():
    p = _timing.base_parser(__doc__.splitlines()[0])
    p.add_argument("--lengths", default="128,800", help="sequence lengths, comma-separated")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--steps", action="store_true", help="time the plan's steps one by one")
    args = p.parse_args()
    _timing.apply_threads(args)
    threads = nnlite.get_num_threads()
    try:
        import onnxruntime as ort
        import torch
    except ImportError as exc:
        print(f"bench_transformer: needs torch, onnx and onnxruntime ({exc})")
        return
    import nnlite.onnx as nxo

    torch.set_num_threads(threads)
    print(_timing.header([("torch", torch.__version__), ("onnxruntime", ort.__version__)]))
    lengths = [int(v) for v in args.lengths.split(",")]
    if args.quick:
        lengths, args.repeat = lengths[:1], min(args.repeat, 5)
    model = encoder_layer(torch, args.width, args.heads)
    rows = []
    for n in lengths:
        x = np.random.default_rng(n).standard_normal((1, n, args.width)).astype(np.float32)
        data = export(torch, model, torch.from_numpy(x))
        plain = nxo.load(data)
        fast = nnlite.optimize_for_inference(nxo.load(data))
        sess = ort.InferenceSession(data, _timing.ort_options(ort, threads),
                                    providers=["CPUExecutionProvider"])
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        cands = {"nnlite-plain": lambda: plain(x), "nnlite-opt": lambda: fast(x),
                 "onnxruntime": lambda: sess.run(None, {"x": x}),
                 "torch": lambda: model(torch.from_numpy(x))}
        outs = {"nnlite-plain": plain(x).data, "nnlite-opt": fast(x).data,
                "onnxruntime": sess.run(None, {"x": x})[0], "torch": want}
        with torch.no_grad():
            times = _timing.interleave(cands, repeat=args.repeat, warmup=2)
        scale = float(np.abs(want).max())
        t_ort = _timing.median(times["onnxruntime"])
        for name, ts in times.items():
            med = _timing.median(ts)
            rows.append({"length": n, "candidate": name, "median ms": f"{med * 1e3:.2f}",
                         "min ms": f"{_timing.best(ts) * 1e3:.2f}",
                         "err": f"{np.abs(outs[name] - want).max() / scale:.1e}",
                         "/onnxruntime": f"{med / t_ort:.2f}"})
        if args.steps:
            print(f"# steps of the optimized plan, length {n} (medians of {args.repeat} rounds)")
            for label, t in step_times(fast, x, args.repeat):
                print(f"#   {label:<40} {t * 1e6:9.0f} us")
    cols = ["length", "candidate", "median ms", "min ms", "err", "/onnxruntime"]
    _timing.print_table(rows, cols)
    if args.csv:
        _timing.write_csv(args.csv, rows, cols)


if __name__ == "__main__":
    main()
