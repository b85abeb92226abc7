"""ResNet-50's strided convs as inference-plan kernels (``nnlite._infer.kernels.ConvKernel``,
float32, bias + ReLU fused), each variant timed in-process, interleaved (``_timing.interleave``),
with ONNX Runtime on the same layer beside (``--ort``, when installed).

    PYTHONPATH=. python benchmarks/bench_strided_conv.py [--batch 1 8] [--threads 1 2]
        [--repeat 15] [--layers 1x1 3x3] [--ort]

Variants per layer:
  1x1/2  'plan'   the plan's own route (``ConvKernel.maps``: one image's product reading
                  every second pixel in place; a batch: ``ConvKernel.batch_cols``, its pixels
                  gathered, the products of all images in one call; else im2col + GEMM)
         'im2col' the same ConvKernel forced onto im2col + GEMM (the route before strided reads)
         'maps'   forced onto the in-place product
  3x3/2  'plan'   what 'auto' picks for the plan; 'implicit', 'im2col': forced
Prints the median (microseconds) and GFLOP/s per variant. Never asserts; figures vary with the
load of the machine (compare variants of one run: they are interleaved).
"""
import argparse
import os
import sys

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _timing  # noqa: E402
from nnlite._infer.kernels import ConvKernel  # noqa: E402

# (label, C, F, map side, kernel, stride, pad)
LAYERS = {
    "1x1": [("ds 256->512 @56", 256, 512, 56, 1, 2, 0),
            ("ds 512->1024 @28", 512, 1024, 28, 1, 2, 0),
            ("ds 1024->2048 @14", 1024, 2048, 14, 1, 2, 0)],
    "3x3": [("3x3/2 128 @56", 128, 128, 56, 3, 2, 1),
            ("3x3/2 256 @28", 256, 256, 28, 3, 2, 1),
            ("3x3/2 512 @14", 512, 512, 14, 3, 2, 1)],
}


def _kernel_call(x, w, b, attrs, algorithm="auto", im2col=False, maps=False):
    kern = ConvKernel(x.shape, w, b, attrs, False, np.dtype(np.float32), algorithm=algorithm)
    if im2col or maps:
        kern.maps, kern.batch_cols = maps, False
    N, C, H, W, F, oh, ow = kern.shape
    y = np.empty((N, F, oh, ow), np.float32)
    run = kern.bind([x], [y], np.empty(max(kern.scratch_bytes, 64), np.uint8))
    return run, kern


def _ort_call(x, w, b, k, s, p, threads):
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    N, C, H, W = x.shape
    F = w.shape[0]
    oh = (H + 2 * p - k) // s + 1
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k],
                              strides=[s, s], pads=[p] * 4),
             helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [N, F, oh, oh])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(model.SerializeToString(), _timing.ort_options(ort, threads),
                                providers=["CPUExecutionProvider"])
    onnx.checker.check_model(model)
    return lambda: sess.run(None, {"x": x})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--layers", nargs="+", default=["1x1", "3x3"], choices=sorted(LAYERS))
    ap.add_argument("--ort", action="store_true", help="time ONNX Runtime on each layer too")
    args = ap.parse_args()
    print(_timing.header())
    rng = np.random.default_rng(0)
    rows = []
    for group in args.layers:
        for label, C, F, H, k, s, p in LAYERS[group]:
            w = (rng.standard_normal((F, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
            b = rng.standard_normal(F).astype(np.float32)
            attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": [p] * 4,
                     "activation": "relu"}
            for n in args.batch:
                x = rng.standard_normal((n, C, H, H)).astype(np.float32)
                oh = (H + 2 * p - k) // s + 1
                flops = 2.0 * n * F * C * k * k * oh * oh
                for nt in args.threads:
                    nnlite.set_num_threads(nt)
                    cands, algos = {}, {}
                    run, kern = _kernel_call(x, w, b, attrs)
                    cands["plan"] = run
                    algos["plan"] = ("maps" if kern.maps else "batch"
                                     if kern.batch_cols else kern.algorithm)
                    if k == 1:
                        cands["im2col"] = _kernel_call(x, w, b, attrs, im2col=True)[0]
                        if not kern.maps:
                            cands["maps"] = _kernel_call(x, w, b, attrs, maps=True)[0]
                    else:
                        for algo in ("implicit", "im2col"):
                            cands[algo] = _kernel_call(x, w, b, attrs, algorithm=algo)[0]
                    if args.ort:
                        call = _ort_call(x, w, b, k, s, p, nt)
                        if call is not None:
                            cands["ort"] = call
                    times = _timing.interleave(cands, repeat=args.repeat, warmup=2)
                    cells = []
                    for name, ts in times.items():
                        med = _timing.median(ts)
                        tag = f"{name}({algos[name]})" if name in algos else name
                        cells.append(f"{tag} {med * 1e6:7.0f} us {flops / med / 1e9:5.0f} GF/s")
                    rows.append([label, f"b{n}", f"{nt}t", "  ".join(cells)])
                    print("  ".join(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
