"""Where an optimized plan's time goes, step by step, next to ONNX Runtime's per-node profile.

    python benchmarks/profile_plan.py [--model mobilenet_v2] [--batch 1] [--size 224]
        [--threads 2] [--repeat 15] [--steps] [--no-ort]

The model is ``bench_inference.build_nnlite``'s (seeded weights, non-trivial BatchNorm
statistics). Its ``nnlite.optimize_for_inference`` plan is compiled on the first call; then
--repeat rounds each run the bound step calls twice: once back to back (the wall time of the
run list) and once with a clock read around every call (the step times). What happens between
the calls (the plan's own loop, lane hand-offs) is the median over rounds of that second
pass's wall time minus the sum of its own step times; Python inside a step (argument checks,
views) is part of that step. (The wall median minus the sum of the step medians is no such
measure: a sum of medians falls below the median of the sums when the steps' times are skewed
by occasional slow calls, 0.3 ms of MobileNetV2's 4.3 ms at batch 1 on a shared Zen 4 VM
where the per-round gap was 14 us.)

With torch and onnxruntime installed (``--no-ort`` skips them), the same weights are exported
(``bench_inference.export_onnx``) and run by an InferenceSession with profiling on, --threads
intra-op threads, one run before each of nnlite's rounds (interleaved: the host's speed drifts
between minutes, so two profiles taken one after the other compare different machines); each
profiled node's median kernel time is matched to the nnlite step of the
same kind and shape (``kind C->F OHxOW``, channels rounded up to 16 as ORT's
blocked convs pad them; in order among equal keys). Steps are grouped by kind:
'dw' depthwise conv, 'pw' 1x1 stride-1 conv, 'conv' any other conv, else the op name.
Never asserts; figures vary with the load of the machine (report medians from a quiet one).
"""
import argparse
import functools
import glob
import json
import os
import sys
import tempfile
import time

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _timing  # noqa: E402
from bench_inference import _ort, _torch, build_nnlite, export_onnx  # noqa: E402
from nnlite._config import pool_hold  # noqa: E402
from nnlite._infer import passes  # noqa: E402
from nnlite._infer import kernels  # noqa: E402
from nnlite._infer.kernels import CONV_POOL_OP, IR_OP  # noqa: E402


def _match_keys(key):
    """The ORT node keys one nnlite step stands for: a fused inverted residual 'ir C->E->F
    OHxOW' its expand, depthwise and project convs (stride 2 when OH < the expand's map is
    unknown here: both input maps are tried by the caller; 'ir C->F' without expand: its
    depthwise and project convs; 'irh': its head conv, depthwise and project convs), a conv
    with its max pool fused ('convpool C->F OHxOW') the conv and the MaxPool, any other step
    its own key."""
    parts = key.split()
    if parts[0] == "convpool":   # 'convpool C->F OHxOW': a conv and the max pool after it
        return [(_kind("conv", *parts[1].split("->"), *parts[2].split("x")),), ("MaxPool",)]
    if parts[0] == "irh":   # 'irh C->E->F OHxOW BHxBW': a head conv onto the block's BHxBW map
        c, e, f = parts[1].split("->")
        oh, ow = parts[2].split("x")
        return [(_kind("conv", c, e, *parts[3].split("x")),), (_kind("dw", e, e, oh, ow),),
                (_kind("pw", e, f, oh, ow),)]
    if parts[0] != "ir":
        return [key]
    chans = parts[1].split("->")
    oh, ow = parts[2].split("x")
    c, e, f = chans if len(chans) == 3 else (chans[0],) + tuple(chans)
    tail = [(_kind("dw", e, e, oh, ow),), (_kind("pw", e, f, oh, ow),)]
    if len(chans) == 2:
        return tail
    return [(_kind("pw", c, e, oh, ow), _kind("pw", c, e, 2 * int(oh), 2 * int(ow)))] + tail


def _kind(kind, c, f, oh, ow):
    return f"{kind} {c}->{f} {oh}x{ow}"


def _match_key(key):
    """``key`` with channel counts rounded up to 16: ONNX Runtime's blocked (NCHWc) convs
    report channels padded to their block (24 -> 32)."""
    parts = key.split()
    if len(parts) != 3 or "->" not in parts[1]:
        return key
    c, f = (-(-int(v) // 16) * 16 for v in parts[1].split("->"))
    return _kind(parts[0], c, f, *parts[2].split("x"))


def step_keys(plan):
    """Per step: (group, key) with key 'kind C->F OHxOW' for convs, 'ir C->E->F OHxOW' for a
    fused inverted residual ('ir C->F OHxOW' without expand, 'irh C->E->F OHxOW BHxBW' with a
    head conv onto its BHxBW input map), 'convpool C->F OHxOW' for a conv and its max pool
    (OHxOW the conv's map), the op name otherwise."""
    out = []
    for step in plan.steps:
        k = step.kernel
        if step.node.op == IR_OP:
            _, c, h, w, e, f, oh, ow = k.shape
            if getattr(k, "head", False):
                bh, bw = k.parts[1].shape[2:4]
                out.append(("ir", f"irh {c}->{e}->{f} {oh}x{ow} {bh}x{bw}"))
                continue
            chans = f"{c}->{f}" if k.parts[0] is None else f"{c}->{e}->{f}"
            out.append(("ir", f"ir {chans} {oh}x{ow}"))
        elif step.node.op == CONV_POOL_OP:
            _, c, _, _, f, oh, ow = k.conv.shape
            out.append(("convpool", f"convpool {c}->{f} {oh}x{ow}"))
        elif step.node.op == "Conv" and hasattr(k, "shape") and hasattr(k, "depthwise"):
            _, c, _, _, f, oh, ow = k.shape
            kind = "dw" if k.depthwise else ("pw" if k.pointwise else "conv")
            out.append((kind, _kind(kind, c, f, oh, ow)))
        else:
            out.append((step.node.op, step.node.op))
    return out


def time_plan(opt, x, repeat, between=None):
    """(step medians s, wall median s, median gap between the calls s, plan) of the plan
    compiled for x; ``between()`` (a peer's run) is called once per round, so the two are timed
    interleaved on a noisy machine."""
    opt.run_arrays(x)                                        # compile + check run
    key = ((x.shape, x.dtype.str),)
    plan = opt._plans[key][0]                                # private: the compiled Plan
    _, ins, _, calls = opt._frame(plan, key)                 # private: this thread's binding
    if len(calls) != len(plan.steps):
        raise SystemExit("this plan has lane groups (several steps per call): per-step times "
                         "are not separable here")
    steps = np.zeros((repeat, len(calls)))
    walls, gaps = np.zeros(repeat), np.zeros(repeat)
    clock = time.perf_counter
    pool_hold(1)   # as a plan run does: the pool's workers stay awake between the steps
    try:
        for r in range(repeat):
            if between is not None:   # ONNX Runtime's run, with nnlite's workers asleep:
                pool_hold(-1)         # held, they would spin on both cores beside it
                try:
                    between()
                finally:
                    pool_hold(1)
            # the arena may reuse the input's buffer for later activations: x again before
            # each pass, so that every pass computes on the image itself
            np.copyto(ins[0], x)
            t0 = clock()
            for call in calls:
                call()
            walls[r] = clock() - t0
            np.copyto(ins[0], x)
            start = clock()
            for i, call in enumerate(calls):
                t0 = clock()
                call()
                steps[r, i] = clock() - t0
            gaps[r] = clock() - start - steps[r].sum()
    finally:
        pool_hold(-1)
    return np.median(steps, axis=0), float(np.median(walls)), float(np.median(gaps)), plan


def ort_session(onnx_path, threads, tmpdir):
    """An ONNX Runtime session with profiling on, and a function running it on x."""
    ort = _ort()
    opts = _timing.ort_options(ort, threads)
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tmpdir, "ort_profile")
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess, lambda x: sess.run(None, {name: x})


def ort_profile(sess, tmpdir):
    """Per profiled ONNX Runtime node, in execution order: (key, median kernel seconds)."""
    sess.end_profiling()
    path = sorted(glob.glob(os.path.join(tmpdir, "ort_profile*.json")))[-1]
    with open(path) as fh:
        events = json.load(fh)
    durs, order = {}, []
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        if e["name"] not in durs:
            order.append(e)
            durs[e["name"]] = []
        durs[e["name"]].append(e["dur"] * 1e-6)
    out = []
    for e in order:
        args = e["args"]
        key = args["op_name"]
        shapes = [list(s.values())[0] for s in args.get("input_type_shape", [])]
        outs = [list(s.values())[0] for s in args.get("output_type_shape", [])]
        if key == "Conv" and len(shapes) >= 2 and len(shapes[1]) == 4 and outs:
            (f, cg, kh, kw), c = shapes[1], shapes[0][1]
            oh, ow = outs[0][2:4]
            kind = ("dw" if cg == 1 and c == f and c > 1 and (kh, kw) != (1, 1)
                    else "pw" if (kh, kw) == (1, 1) and outs[0][2] == shapes[0][2] else "conv")
            key = _kind(kind, c, f, oh, ow)
        # drop the first runs (warm-up) from the median
        out.append((key, float(np.median(durs[e["name"]][2:] or durs[e["name"]]))))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="mobilenet_v2")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--steps", action="store_true", help="print every step, not only totals")
    p.add_argument("--no-ort", action="store_true")
    p.add_argument("--no-fuse", action="store_true",
                   help="no fused inverted residuals (passes.FUSE_BLOCKS off): the 'before'")
    p.add_argument("--ir-split", default="auto", choices=("auto", "bands", "channels"),
                   help="how the fused blocks' threads share the work (kernels.IR_SPLIT): the "
                        "kernel's choice, or forced")
    a = p.parse_args(argv)
    passes.FUSE_BLOCKS = not a.no_fuse
    kernels.IR_SPLIT = a.ir_split
    nnlite.set_num_threads(a.threads)
    model = build_nnlite(a.model)
    x = np.random.default_rng(0).standard_normal((a.batch, 3, a.size, a.size)).astype(
        np.float32)
    opt = nnlite.optimize_for_inference(model)
    ort_times = None
    with tempfile.TemporaryDirectory() as tmp:
        sess = between = None
        if not a.no_ort:
            torch, archs = _torch()
            if torch is None or _ort() is None:
                print("# torch or onnxruntime unavailable: nnlite only")
            else:
                tmodel = archs[a.model]().eval()
                tmodel.load_state_dict({k: torch.from_numpy(v.copy())
                                        for k, v in model.state_dict().items()})
                path = os.path.join(tmp, f"{a.model}.onnx")
                export_onnx(torch, tmodel, a.size, path)
                sess, run = ort_session(path, a.threads, tmp)
                for _ in range(2):   # warm-up runs (ort_profile drops them from the medians)
                    run(x)
                between = functools.partial(run, x)
        med, wall, gap, plan = time_plan(opt, x, a.repeat, between)
        if sess is not None:
            ort_times = ort_profile(sess, tmp)
    keys = step_keys(plan)
    print(f"# {a.model} batch {a.batch} {a.size}x{a.size}, {a.threads} threads, "
          f"fused-block split {a.ir_split}, "
          f"{_timing.omp_idle()}, "
          f"{len(plan.steps)} steps, medians of {a.repeat} rounds"
          + (", ONNX Runtime's runs interleaved" if ort_times else ""))
    print(f"nnlite wall {wall * 1e3:.2f} ms, sum of step medians {med.sum() * 1e3:.2f} ms, "
          f"between calls {gap * 1e3:.3f} ms (median per round)")
    if ort_times:
        print(f"onnxruntime sum of node medians {sum(t for _, t in ort_times) * 1e3:.2f} ms "
              f"(profiling on)")

    # match ORT nodes to nnlite steps by key, in order among equal keys
    pool = {}
    for key, t in ort_times or []:
        pool.setdefault(_match_key(key), []).append(t)
    matched = []
    for _, key in keys:
        subs = _match_keys(key)
        if len(subs) == 1:
            q = pool.get(_match_key(key))
            matched.append(q.pop(0) if q else None)
            continue
        total = 0.0   # a fused step: the sum of its ORT nodes (all found)
        for alternatives in subs:
            q = next((pool[k] for k in map(_match_key, alternatives) if pool.get(k)), None)
            if q is None:
                total = None
                break
            total += q.pop(0)
        matched.append(total)
    groups = {}
    for (group, key), t, o in zip(keys, med, matched):
        g = groups.setdefault(group, [0.0, 0.0, 0])
        g[0] += t
        if o is not None:
            g[1] += o
            g[2] += 1
    if a.steps:
        print(f"{'step':>4} {'kind':<26} {'nnlite ms':>9} {'ort ms':>8} {'ratio':>6}")
        for i, ((_, key), t, o) in enumerate(zip(keys, med, matched)):
            extra = "" if o is None else f" {o * 1e3:8.3f} {t / o:6.2f}"
            print(f"{i:4d} {key:<26} {t * 1e3:9.3f}{extra}")
    print(f"{'group':<18} {'nnlite ms':>9} {'ort ms':>8}  (ort: matched nodes only)")
    for group, (t, o, n) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
        extra = f" {o * 1e3:8.2f}  ({n} nodes)" if n else ""
        print(f"{group:<18} {t * 1e3:9.2f}{extra}")
    left = [k for k, q in pool.items() for _ in q]
    if left:
        print(f"# ORT nodes without an nnlite step of that key: {', '.join(sorted(set(left)))}")


if __name__ == "__main__":
    main()
