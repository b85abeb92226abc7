"""The float32 row and elementwise kernels (nnlite._rowops) of a transformer encoder layer on
a (1, 800, 256) input with 8 heads, against NumPy's formulas and, when installed, torch and
ONNX Runtime single-node models.

    python benchmarks/bench_rowops.py [--repeat 15] [--threads 2]

Ops and shapes: softmax and log_softmax over (8*800, 800) attention scores, erf and gelu
(exact and tanh) over the (800, 1024) feed-forward activations, layer norm over (800, 256)
with weight and bias. "numpy" is the formula the eager ops ran before the kernels
(nnlite/kernels/rowops.py's fallback: erf and exact gelu in float64). Every candidate of a
row is timed in the same interleaved rounds (benchmarks/_timing.py); the table gives the
median and the best round in ms. torch runs on torch.set_num_threads(threads), ONNX Runtime
on ``ort_options`` (threads intra-op, spinning stopped after each run).
"""
import os
import sys

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402

from nnlite.functional._special import erf_array  # noqa: E402
from nnlite.kernels import rowops  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover - optional
    torch = None
try:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
except ImportError:  # pragma: no cover - optional
    ort = None


def _numpy_softmax(x, log_form):
    shifted = x - x.max(axis=-1, keepdims=True)
    if log_form:
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _numpy_layer_norm(x, w, b, eps=1e-5):
    # GroupStandardizeFn's float32 formula
    mean = x.mean(axis=-1)
    xc = x - mean[:, None]
    invstd = 1.0 / np.sqrt(np.mean(xc * xc, axis=-1) + np.float32(eps))
    return xc * invstd[:, None] * w + b


def _ort_session(node, shape, threads, opset, inits=()):
    """An ONNX Runtime session of the one node ``node`` on a float32 input of ``shape``."""
    graph = helper.make_graph(
        [node], "rowop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        initializer=[helper.make_tensor(n, TensorProto.FLOAT, a.shape, a.ravel())
                     for n, a in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return ort.InferenceSession(model.SerializeToString(), _timing.ort_options(ort, threads),
                                providers=["CPUExecutionProvider"])


def cases(rng):
    """(name, input, {engine: callable}) for every op."""
    scores = (rng.standard_normal((8 * 800, 800)) * 3).astype(np.float32)
    act = rng.standard_normal((800, 1024)).astype(np.float32)
    hid = (rng.standard_normal((800, 256)) * 2 + 0.5).astype(np.float32)
    w = rng.standard_normal(256).astype(np.float32)
    b = rng.standard_normal(256).astype(np.float32)
    sy, ay, hy = np.empty_like(scores), np.empty_like(act), np.empty_like(hid)
    out = [
        ("softmax", scores, {"nnlite": lambda: rowops.softmax_lastaxis(scores, out=sy),
                             "numpy": lambda: _numpy_softmax(scores, False)}),
        ("log_softmax", scores, {"nnlite": lambda: rowops.log_softmax_lastaxis(scores, out=sy),
                                 "numpy": lambda: _numpy_softmax(scores, True)}),
        ("erf", act, {"nnlite": lambda: rowops.erf(act, out=ay),
                      "numpy": lambda: erf_array(act).astype(np.float32)}),
        ("gelu", act, {"nnlite": lambda: rowops.gelu(act, out=ay),
                       "numpy": lambda: rowops.gelu_formula(act, "none")[0]}),
        ("gelu_tanh", act, {"nnlite": lambda: rowops.gelu(act, "tanh", out=ay),
                            "numpy": lambda: rowops.gelu_formula(act, "tanh")[0]}),
        ("layer_norm", hid, {"nnlite": lambda: rowops.layer_norm_lastaxis(hid, w, b, out=hy),
                             "numpy": lambda: _numpy_layer_norm(hid, w, b)}),
    ]
    if torch is not None:
        ts, ta, th = torch.from_numpy(scores), torch.from_numpy(act), torch.from_numpy(hid)
        tw, tb = torch.from_numpy(w), torch.from_numpy(b)
        F = torch.nn.functional
        extra = {"softmax": lambda: torch.softmax(ts, -1),
                 "log_softmax": lambda: torch.log_softmax(ts, -1),
                 "erf": lambda: torch.erf(ta), "gelu": lambda: F.gelu(ta),
                 "gelu_tanh": lambda: F.gelu(ta, approximate="tanh"),
                 "layer_norm": lambda: F.layer_norm(th, (256,), tw, tb)}
        for name, _, c in out:
            c["torch"] = extra[name]
    return out, (w, b)


def add_ort(out, wb, threads):
    w, b = wb
    nodes = {
        "softmax": (helper.make_node("Softmax", ["x"], ["y"], axis=-1), 13, ()),
        "log_softmax": (helper.make_node("LogSoftmax", ["x"], ["y"], axis=-1), 13, ()),
        "erf": (helper.make_node("Erf", ["x"], ["y"]), 13, ()),
        "gelu": (helper.make_node("Gelu", ["x"], ["y"]), 20, ()),
        "gelu_tanh": (helper.make_node("Gelu", ["x"], ["y"], approximate="tanh"), 20, ()),
        "layer_norm": (helper.make_node("LayerNormalization", ["x", "w", "b"], ["y"], axis=-1,
                                        epsilon=1e-5), 17, (("w", w), ("b", b))),
    }
    for name, x, c in out:
        node, opset, inits = nodes[name]
        try:
            sess = _ort_session(node, list(x.shape), threads, opset, inits)
        except Exception as exc:  # noqa: BLE001 - an op this ORT build lacks: say so, go on
            print(f"# ONNX Runtime {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        c["ort"] = (lambda s, x: lambda: s.run(None, {"x": x}))(sess, x)


def main():
    p = _timing.base_parser(__doc__.splitlines()[0])
    p.set_defaults(repeat=15)
    args = p.parse_args()
    _timing.apply_threads(args)
    threads = nnlite.get_num_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    out, wb = cases(rng)
    if ort is not None:
        add_ort(out, wb, threads)
    repeat = 5 if args.quick else args.repeat
    extra = [("threads", str(threads)), ("repeat", f"{repeat} interleaved rounds"),
             ("torch", torch.__version__ if torch is not None else "not installed"),
             ("onnxruntime", ort.__version__ if ort is not None else "not installed")]
    print(_timing.header(extra))
    engines = ["nnlite", "numpy", "torch", "ort"]
    rows = []
    for name, x, cands in out:
        times = _timing.interleave(cands, repeat=repeat, warmup=2, min_time=0.02)
        row = {"op": name, "shape": "x".join(map(str, x.shape))}
        for e in engines:
            t = times.get(e)
            row[e] = (f"{_timing.median(t) * 1e3:.3f} ({_timing.best(t) * 1e3:.3f})"
                      if t else "-")
        rows.append(row)
    print("# ms per call: median (best) of the rounds")
    _timing.print_table(rows, ["op", "shape"] + engines)
    if args.csv:
        _timing.write_csv(args.csv, rows, ["op", "shape"] + engines)


if __name__ == "__main__":
    main()
