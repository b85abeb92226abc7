"""Whole-network inference: nnlite plain and optimized vs ONNX Runtime and PyTorch, same weights.

    python benchmarks/bench_inference.py [--models googlenet,resnet50,mobilenet_v2]
        [--batches 1,8] [--size 224] [--threads 2] [--repeat 7] [--quick] [--csv out.csv]
        [--without-winograd] [--without-fused-blocks] [--pause-ms 30]

For each model: nnlite's torchvision-compatible model with seeded random weights and non-trivial
BatchNorm statistics; the same state_dict loaded into the torchvision architecture rebuilt in
plain torch (``tests/test_models.py``), exported with torch.onnx (TorchScript exporter, dynamic
batch) for ONNX Runtime (default graph optimizations). Candidates, all on the same input:

    nnlite-plain   model(x) under no_grad (autograd-free eager nnlite ops)
    nnlite-opt     nnlite.optimize_for_inference(model)
    nnlite-onnx    nnlite.optimize_for_inference(nnlite.onnx.load(exported file))
    onnxruntime    InferenceSession, intra_op_num_threads = --threads, default graph
                   optimizations, its workers spinning during a run and stopping when it
                   returns (``_timing.ort_options``: left spinning, they slow every other
                   candidate in the process 2x)
    torch          eval + no_grad, torch.set_num_threads(--threads)
    nnlite-opt-nowino  (--without-winograd) nnlite-opt whose plans never pick Winograd: the
                   "before" of conv_algorithm('winograd'), interleaved with the "after"
    nnlite-opt-nofuse  (--without-fused-blocks) nnlite-opt whose plans keep MobileNetV2's
                   inverted residuals as three convs (``passes.FUSE_BLOCKS`` off): the
                   "before" of the fused block, interleaved with the "after"

Each row is timed round-robin with the other candidates (interleaved, warm-up first), median and
best of --repeat rounds; "first ms" is the first call on that input shape (for nnlite-opt and
nnlite-onnx: trace, plan compilation with its plain dry run, and the check run; for the others
a warm-up); "err" is max |out - torch| / max |torch| (vs nnlite-plain without torch). Ratios
are median latency over ONNX Runtime's and over PyTorch's. With --pause-ms the harness sleeps
that long before every timed call (not counted), so each run starts from idle cores, as a
server's does between requests.

Memory (unless --no-memory), for nnlite-onnx and onnxruntime only, each in a fresh process
that imports its libraries (nnlite and onnx, or onnxruntime: import costs are excluded for both)
and allocates the input, then takes the baseline RSS: "first MB" is the peak RSS growth over
that baseline while it loads the exported ONNX file, builds the plan (nnlite.onnx.load +
optimize_for_inference) or the InferenceSession and runs the first batch (for nnlite the plan
is compiled there: its dry run and check run included); "steady MB" the peak growth over the
same baseline during two more batches (what a serving process keeps). Both include weights,
prepared (transformed/packed) weights, activation arenas and work buffers, and allocator
slack; measured by VmHWM reset through /proc/self/clear_refs (``_timing.
peak_rss_growth_stages_mb``; a footnote names any other source). "/ort MB" is nnlite's peak
over the whole run (the larger of the two) over ONNX Runtime's. Never asserts.

On a busy machine (other processes on the cores) OpenMP's spin-waiting makes every OpenMP
runtime (nnlite's kernels and PyTorch alike) slower; ONNX Runtime has its own thread pool.
nnlite's import sets a short spin (GOMP_SPINCOUNT=1000) unless a policy is set; run with
``OMP_WAIT_POLICY=passive`` on a busy machine. The header prints the policy in use.
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _timing  # noqa: E402
import nnlite.onnx  # noqa: E402
from nnlite import models  # noqa: E402


def _torch():
    try:
        import torch
    except ImportError:
        return None, None
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    try:
        from test_models import _torchvision_architectures
    except Exception as exc:  # noqa: BLE001 - the rebuilds need pytest/hypothesis too
        print(f"# torch architectures unavailable ({exc}); torch/onnxruntime rows skipped")
        return None, None
    return torch, _torchvision_architectures(torch)


def _ort():
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


def build_nnlite(name, seed=0):
    nnlite.manual_seed(seed)
    model = getattr(models, name)()
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nnlite.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.data[:] = 0.1 * rng.standard_normal(c)
            m.running_var.data[:] = 0.5 + rng.random(c)
            m.weight.data[:] = 1 + 0.1 * rng.standard_normal(c)
            m.bias.data[:] = 0.1 * rng.standard_normal(c)
    return model.eval()


def export_onnx(torch, tmodel, size, path):
    x = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tmodel, x, path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "n"}, "output": {0: "n"}})


def candidates(name, model, args, torch, archs, ort, tmpdir):
    """dict name -> callable(x) -> ndarray, plus the reference candidate's name."""
    out = {}

    def plain(x):
        with nnlite.no_grad():
            return model(nnlite.tensor(x)).data
    out["nnlite-plain"] = plain
    fast = nnlite.optimize_for_inference(model)
    out["nnlite-opt"] = lambda x: fast(x).data
    if getattr(args, "without_winograd", False):
        slow = nnlite.optimize_for_inference(model)

        def no_winograd(x):
            # plans are built on the first call per input shape: 'auto' never pays for it here
            from nnlite import _algorithms
            gain = _algorithms._WINOGRAD_MIN_GAIN
            _algorithms._WINOGRAD_MIN_GAIN = float("inf")
            try:
                return slow(x).data
            finally:
                _algorithms._WINOGRAD_MIN_GAIN = gain
        out["nnlite-opt-nowino"] = no_winograd
    if getattr(args, "without_fused_blocks", False):
        unfused = nnlite.optimize_for_inference(model)

        def no_fused_blocks(x):
            # plans are compiled on the first call per input shape, with the pass switched off
            from nnlite._infer import passes
            passes.FUSE_BLOCKS = False
            try:
                return unfused(x).data
            finally:
                passes.FUSE_BLOCKS = True
        out["nnlite-opt-nofuse"] = no_fused_blocks
    ref = "nnlite-plain"
    if torch is not None:
        tmodel = archs[name]().eval()
        tmodel.load_state_dict({k: torch.from_numpy(v.copy())
                                for k, v in model.state_dict().items()})
        path = os.path.join(tmpdir, f"{name}.onnx")
        export_onnx(torch, tmodel, args.size, path)
        fast_onnx = nnlite.optimize_for_inference(nnlite.onnx.load(path))
        out["nnlite-onnx"] = lambda x: fast_onnx(x).data
        if ort is not None:
            opts = _timing.ort_options(ort, args.threads)
            sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            out["onnxruntime"] = lambda x: sess.run(None, {"input": x})[0]

        def run_torch(x):
            with torch.no_grad():
                return tmodel(torch.from_numpy(x)).numpy()
        out["torch"] = run_torch
        ref = "torch"
    return out, ref


# ----------------------------------------------------------------------------------- memory
MEMORY_CANDIDATES = ("nnlite-onnx", "onnxruntime")


def _memory_child(spec, threads):
    """In a fresh process: the peak RSS growth (MB) of loading ``path`` with ``candidate``,
    building it and running one batch, then of two more batches (same baseline: libraries
    imported and the input allocated before it); prints "first steady source"."""
    candidate, batch, size, path = spec.split(":", 3)
    x = np.random.default_rng(0).standard_normal((int(batch), 3, int(size), int(size)))
    x = x.astype(np.float32)
    nnlite.set_num_threads(threads)
    state = {}
    if candidate == "onnxruntime":
        import onnxruntime as ort

        def build():
            opts = _timing.ort_options(ort, threads)
            sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            state["run"] = lambda: sess.run(None, {"input": x})
            state["run"]()
    else:
        import onnx  # noqa: F401  (the parser nnlite.onnx.load imports; like onnxruntime's)

        def build():
            fast = nnlite.optimize_for_inference(nnlite.onnx.load(path))
            state["run"] = lambda: fast(x)
            state["run"]()

    def steady():
        for _ in range(2):
            state["run"]()
    (first, later), source = _timing.peak_rss_growth_stages_mb([build, steady])
    print(f"{first:.1f} {later:.1f} {source}")


def peak_memory(candidate, batch, size, path, threads):
    """(first, steady) peak RSS growth in MB of ``candidate`` in a subprocess (see
    ``_memory_child``), or None when it failed."""
    try:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child",
                              f"{candidate}:{batch}:{size}:{path}", "--threads", str(threads)],
                             capture_output=True, text=True, timeout=900, check=True)
        first, steady, source = out.stdout.strip().splitlines()[-1].split()
        if source != "VmHWM":
            print(f"# peak memory of {candidate}: {source} (lifetime peak of the process)")
        return float(first), float(steady)
    except (subprocess.SubprocessError, IndexError, ValueError) as exc:
        print(f"# peak memory of {candidate} failed: {type(exc).__name__}", flush=True)
        return None


def main(argv=None):
    p = _timing.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--models", default="googlenet,resnet50,mobilenet_v2")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--pause-ms", type=float, default=0.0,
                   help="sleep this long before every timed call (a server between requests)")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--without-winograd", action="store_true",
                   help="also time nnlite-opt with Winograd disabled (before/after)")
    p.add_argument("--without-fused-blocks", action="store_true",
                   help="also time nnlite-opt without fused inverted residuals (before/after)")
    p.set_defaults(threads=2)
    args = p.parse_args(argv)
    if args.memory_child:
        return _memory_child(args.memory_child, args.threads or 2)
    if args.quick:
        args.size, args.repeat, args.batches = 112, 3, "1"
    _timing.apply_threads(args)
    torch, archs = _torch()
    ort = _ort() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
    extra = [("input", f"3x{args.size}x{args.size} float32"),
             ("torch", torch.__version__ if torch else "not installed"),
             ("onnxruntime", ort.__version__ if ort else "not installed"),
             ("threads", f"{args.threads} (nnlite, BLAS, torch, onnxruntime)"),
             ("OpenMP idle threads", _timing.omp_idle()),
             ("pause before each call", f"{args.pause_ms:g} ms"),
             ("load average", " ".join(f"{v:.2f}" for v in os.getloadavg()))]
    print(_timing.header(extra))
    rows = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmpdir:
        for name in args.models.split(","):
            model = build_nnlite(name)
            cands, ref_name = candidates(name, model, args, torch, archs, ort, tmpdir)
            for batch in (int(b) for b in args.batches.split(",")):
                x = rng.standard_normal((batch, 3, args.size, args.size)).astype(np.float32)
                outs, first = {}, {}
                for k, fn in cands.items():   # the first call: compiles the nnlite plans
                    t0 = time.perf_counter()
                    outs[k] = fn(x)
                    first[k] = time.perf_counter() - t0
                ref = outs[ref_name]
                scale = float(np.abs(ref).max())
                times = _timing.interleave({k: (lambda fn=fn: fn(x)) for k, fn in cands.items()},
                                           repeat=args.repeat, warmup=1,
                                           pause=args.pause_ms / 1e3)
                med = {k: _timing.median(v) for k, v in times.items()}
                path = os.path.join(tmpdir, f"{name}.onnx")
                mem = {}
                if not args.no_memory and os.path.exists(path):
                    mem = {k: peak_memory(k, batch, args.size, path, args.threads)
                           for k in MEMORY_CANDIDATES if k in cands}
                for k, ts in times.items():
                    row = {"model": name, "batch": batch, "candidate": k,
                           "median ms": f"{med[k] * 1e3:.1f}",
                           "min ms": f"{_timing.best(ts) * 1e3:.1f}",
                           "img/s": f"{batch / med[k]:.1f}",
                           "first ms": f"{first[k] * 1e3:.0f}",
                           "err": f"{np.abs(outs[k] - ref).max() / scale:.1e}"}
                    for base in ("onnxruntime", "torch"):
                        if base in med:
                            row[f"/{base}"] = f"{med[k] / med[base]:.2f}"
                    if mem.get(k) is not None:
                        row["first MB"] = f"{mem[k][0]:.0f}"
                        row["steady MB"] = f"{mem[k][1]:.0f}"
                        if mem.get("onnxruntime"):
                            row["/ort MB"] = f"{max(mem[k]) / max(mem['onnxruntime']):.2f}"
                    rows.append(row)
                    print(f"# {name} b{batch} {k}: {row['median ms']} ms", flush=True)
    cols = ["model", "batch", "candidate", "median ms", "min ms", "img/s", "first ms", "err",
            "/onnxruntime", "/torch", "first MB", "steady MB", "/ort MB"]
    print()
    _timing.print_table(rows, cols)
    # the targets: per batch, the geometric mean over the models of nnlite / ORT
    for cand in ("nnlite-opt", "nnlite-onnx"):
        for batch in sorted({r["batch"] for r in rows}):
            ratios = [float(r["/onnxruntime"]) for r in rows
                      if r["candidate"] == cand and r["batch"] == batch and "/onnxruntime" in r]
            if ratios:
                geo = math.exp(sum(math.log(v) for v in ratios) / len(ratios))
                print(f"# {cand} / onnxruntime, batch {batch}: geo-mean {geo:.2f} over "
                      f"{len(ratios)} models, worst {max(ratios):.2f}")
    if args.csv:
        _timing.write_csv(args.csv, rows, cols)


if __name__ == "__main__":
    main()
