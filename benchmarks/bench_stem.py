"""The first conv of image models at batch 1: the few-channel direct kernel against what ran
before it (the implicit GEMM), the column matrix, and ONNX Runtime / PyTorch on the same conv.

    python benchmarks/bench_stem.py [--repeat 41] [--threads 2] [--batch 1] [--size 224]

Layers (float32, bias and activation fused as an inference plan runs them):
    mobilenet_v2  3 -> 32 3x3 stride 2 pad 1 + ReLU6  (224 -> 112x112)
    resnet50      3 -> 64 7x7 stride 2 pad 3 + ReLU   (224 -> 112x112; GoogLeNet's too)
    vgg-like      3 -> 64 3x3 stride 1 pad 1 + ReLU   (224 -> 224x224)
Candidates, interleaved in one process (``_timing.interleave``), medians and bests:
    phase      nnlite._convfast.conv2d_phase (csrc/convfast_phase.c; 'auto' now)
    implicit   nnlite._convfast.conv2d_implicit (what 'auto' ran before)
    im2col     nnlite.conv_algorithm('im2col') through F.conv2d (+ the activation)
    ort        onnxruntime, one Conv (+ Relu / Clip) node, --threads intra-op threads
    torch      torch.nn.functional.conv2d (+ the activation), --threads threads
The last two only where installed. Never asserts; figures vary with the machine's load.
"""
import os
import sys
import tempfile

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import (base_parser, best, fmt_time, header, interleave, median,  # noqa
                     ort_options, print_table)
from nnlite import _convfast  # noqa: E402
from nnlite.kernels import gemm_ops  # noqa: E402
import nnlite.nn.functional as F  # noqa: E402

LAYERS = [("mobilenet_v2 stem", 3, 32, 3, 2, 1, 2),
          ("resnet50 stem", 3, 64, 7, 2, 3, 1),
          ("3x3 stride 1", 3, 64, 3, 1, 1, 1)]


def _ort_session(ort, w, b, stride, pad, act, threads, tmp):
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[stride] * 2,
                              pads=[pad] * 4)]
    if act == 1:
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    else:
        nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["y"]))
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array(0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6, np.float32), "hi")]
    graph = helper.make_graph(nodes, "stem",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=inits[:2] if act == 1 else inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = os.path.join(tmp, "stem.onnx")
    with open(path, "wb") as fh:
        fh.write(model.SerializeToString())
    opts = ort_options(ort, threads)
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def main():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=224)
    p.set_defaults(repeat=41, threads=2)
    args = p.parse_args()
    nt = args.threads
    nnlite.set_num_threads(nt)
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    try:
        import torch
        torch.set_num_threads(nt)
    except ImportError:
        torch = None
    print(header([("threads", nt), ("batch", args.batch), ("size", args.size)]))
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, c, f, k, s, pad, act in LAYERS:
            n, h = args.batch, args.size
            x = rng.standard_normal((n, c, h, h)).astype(np.float32)
            w = (0.2 * rng.standard_normal((f, c, k, k))).astype(np.float32)
            b = (0.1 * rng.standard_normal(f)).astype(np.float32)
            oh = (h + 2 * pad - k) // s + 1
            y = np.empty((n, f, oh * oh), np.float32)
            w2 = w.reshape(f, -1)
            xt, wt, bt = nnlite.tensor(x), nnlite.tensor(w), nnlite.tensor(b)
            isa = gemm_ops._isa()

            def im2col():
                with nnlite.conv_algorithm("im2col"), nnlite.no_grad():
                    r = F.conv2d(xt, wt, bt, stride=s, padding=pad)
                    return F.relu6(r) if act == 2 else F.relu(r)
            cands = {
                "phase": lambda: _convfast.conv2d_phase(x, w2, b, y, 1, k, k, s, s, pad, pad, 1,
                                                        1, oh, oh, act=act, num_threads=nt),
                "implicit": lambda: _convfast.conv2d_implicit(x, w2, b, y, 1, k, k, s, s, pad,
                                                              pad, 1, 1, oh, oh, act=act,
                                                              num_threads=nt, isa=isa),
                "im2col": im2col,
            }
            if ort is not None:
                sess = _ort_session(ort, w, b, s, pad, act, nt, tmp)
                cands["ort"] = lambda: sess.run(None, {"x": x})
            if torch is not None:
                tx, tw, tb = (torch.from_numpy(v) for v in (x, w, b))

                def tconv():
                    with torch.no_grad():
                        r = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=pad)
                        return torch.clamp(r, 0, 6) if act == 2 else torch.relu(r)
                cands["torch"] = tconv
            times = interleave(cands, repeat=args.repeat, warmup=3)
            macs = n * f * oh * oh * c * k * k
            for cand, ts in times.items():
                rows.append({"layer": name, "conv": f"{c}->{f} {k}x{k}/{s} {oh}x{oh}",
                             "candidate": cand, "median": fmt_time(median(ts)),
                             "best": fmt_time(best(ts)),
                             "GMAC/s": f"{macs / median(ts) / 1e9:.1f}",
                             "x phase": f"{median(ts) / median(times['phase']):.2f}"})
    print_table(rows, ["layer", "conv", "candidate", "median", "best", "GMAC/s", "x phase"])


if __name__ == "__main__":
    main()
