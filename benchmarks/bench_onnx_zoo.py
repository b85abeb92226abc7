"""The nine model-zoo architectures onnx ships: nnlite (optimize_for_inference) vs ONNX Runtime.

    python benchmarks/bench_onnx_zoo.py [--models resnet50,vgg19,...] [--batch 1]
        [--threads 2] [--repeat 7] [--plain] [--csv out.csv]

Models: onnx/backend/test/data/light/*.onnx (AlexNet, DenseNet-121, Inception v1/v2, ResNet-50,
ShuffleNet, SqueezeNet, VGG-19, ZFNet-512; opset 9, 3x224x224) with seeded random weights in
place of the stored constant ones (``tests/onnx_backend_zoo.py``; the constant weights give
every model the same uniform output). Candidates, on the same input:

    nnlite-opt     nnlite.optimize_for_inference(nnlite.onnx.load(model))
    nnlite-plain   nnlite.onnx.load(model)(x) (with --plain)
    onnxruntime    InferenceSession (default graph optimizations), intra_op_num_threads = --threads

Timed round-robin per model (interleaved, warm-up first); median and best of --repeat rounds.
"err" is max |out - onnxruntime| / max |onnxruntime|. "/ort" is the median latency over ONNX
Runtime's. Never asserts. The header prints the CPU, the thread settings and the load average
(the machine may be shared: compare within one run).
"""
import os
import sys

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import _timing  # noqa: E402
import nnlite.onnx  # noqa: E402
from onnx_backend_zoo import ZOO, input_for, randomized  # noqa: E402


def main(argv=None):
    p = _timing.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(ZOO))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--plain", action="store_true", help="also time the plain OnnxModule")
    p.set_defaults(threads=2)
    args = p.parse_args(argv)
    if args.quick:
        args.repeat = 3
    _timing.apply_threads(args)
    import onnxruntime as ort

    extra = [("onnxruntime", ort.__version__),
             ("threads", f"{args.threads} (nnlite, BLAS, onnxruntime intra-op)"),
             ("batch", str(args.batch)),
             ("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "(unset: spin, then sleep)")),
             ("load average", " ".join(f"{v:.2f}" for v in os.getloadavg()))]
    print(_timing.header(extra))
    rows = []
    for name in args.models.split(","):
        model = randomized(name)
        in_name, x = input_for(model, batch=args.batch)
        so = _timing.ort_options(ort, args.threads)
        so.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        plain = nnlite.onnx.load(model.SerializeToString())
        fast = nnlite.optimize_for_inference(plain)
        cands = {"nnlite-opt": lambda: fast.run_arrays(x)[0],
                 "onnxruntime": lambda: sess.run(None, {in_name: x})[0]}
        if args.plain:
            cands["nnlite-plain"] = lambda: plain(x).data
        outs = {k: fn() for k, fn in cands.items()}          # warm-up, plan compile
        ref = outs["onnxruntime"]
        scale = float(np.abs(ref).max())
        times = _timing.interleave(cands, repeat=args.repeat, warmup=1)
        med = {k: _timing.median(v) for k, v in times.items()}
        for k, ts in times.items():
            rows.append({"model": name, "batch": args.batch, "candidate": k,
                         "median ms": f"{med[k] * 1e3:.1f}",
                         "min ms": f"{_timing.best(ts) * 1e3:.1f}",
                         "/ort": f"{med[k] / med['onnxruntime']:.2f}",
                         "err": f"{np.abs(outs[k] - ref).max() / scale:.1e}"})
            print(f"# {name} b{args.batch} {k}: {rows[-1]['median ms']} ms", flush=True)
    cols = ["model", "batch", "candidate", "median ms", "min ms", "/ort", "err"]
    print()
    _timing.print_table(rows, cols)
    if args.csv:
        _timing.write_csv(args.csv, rows, cols)


if __name__ == "__main__":
    main()
