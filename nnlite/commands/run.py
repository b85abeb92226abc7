"""``nnlite run MODEL --input x.npy``: run an ONNX file or a built-in model on an input array.

Prints every output of the model: its shape and dtype, min/max/mean, and the top-5 values of the
first images (a 2-D logits output as classes with their softmax probability "p="; a 2-D output
whose rows already are probabilities, or any other map, as values and their index), then the
latency (median and min over ``--repeat`` timed runs after one warm-up). ``--output F.npz``
saves all outputs. MODEL is a ``.onnx`` path or a built-in name from ``nnlite.models`` (with
``--weights W.npz`` from ``nnlite.save`` / ``python -m nnlite.convert``). The optimized plan
is used unless ``--plain``; when the plan cannot run a model that the plain module runs, the
error names the node and points to ``--plain``.
"""
import argparse
import os
import sys
import time

import numpy as np

from .._imagefiles import is_image_path

_BUILTIN = ("googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
            "resnext50_32x4d", "mobilenet_v2")


class RunError(Exception):
    pass


def register(subparsers):
    p = subparsers.add_parser(
        "run", help="run an .onnx file or a built-in model on an input (.npy): top-5, latency",
        description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="path to an .onnx file, or a built-in model name "
                   f"({', '.join(_BUILTIN)})")
    p.add_argument("--input", required=True, help=".npy array, (C, H, W) or (N, C, H, W), or "
                   "an image file (.jpg, .png, ...: ImageNet preprocessing, needs Pillow)")
    p.add_argument("--size", type=int, default=224, help="crop size for an image --input: "
                   "shorter side to int(S*256/224), centre crop S (default 224)")
    p.add_argument("--weights", help=".npz weights for a built-in model (nnlite.save format)")
    p.add_argument("--random-init", action="store_true",
                   help="allow a built-in model without --weights (random weights)")
    p.add_argument("--batch", type=int, default=None, help="tile/trim the input to N images")
    p.add_argument("--threads", dest="run_threads", type=int, default=None,
                   help="threads for kernels and BLAS")
    p.add_argument("--repeat", type=int, default=10, help="timed runs (default 10)")
    p.add_argument("--plain", action="store_true", help="run the model as is (no inference plan)")
    p.add_argument("--output", metavar="FILE.npz",
                   help="save every output in an .npz (keys: the output names)")
    p.add_argument("--topk", type=int, default=5, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)


def _load_input(path, batch, size=224):
    if not os.path.exists(path):
        raise RunError(f"--input: no such file: {path!r}")
    if is_image_path(path):
        try:
            from ..vision import load_batch
        except ImportError as exc:
            raise RunError(f"--input {path!r}: {exc}") from None
        x = load_batch(path, size)            # UnreadableImageError (ValueError) names the file
    else:
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise RunError(f"--input {path!r} is not a readable .npy array "
                           f"({exc or type(exc).__name__})") from None
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "fiu":
        raise RunError(f"--input {path!r} must hold one numeric array")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise RunError(f"--input must be (C, H, W) or (N, C, H, W), got shape {x.shape}")
    if batch is not None:
        if batch < 1:
            raise RunError(f"--batch must be >= 1, got {batch}")
        reps = -(-batch // x.shape[0])
        x = np.concatenate([x] * reps, axis=0)[:batch]
    return x


def _load_model(args):
    """(module, description, input dtype)."""
    import nnlite

    name = args.model
    if name.lower().endswith(".onnx") or os.path.exists(name):
        if not os.path.exists(name):
            raise RunError(f"no such ONNX file: {name!r}")
        if args.weights:
            raise RunError("--weights applies to built-in models; an .onnx file carries its own")
        import nnlite.onnx

        model = nnlite.onnx.load(name)
        if len(model.graph.inputs) != 1:
            raise RunError(f"{name!r} takes {len(model.graph.inputs)} inputs; nnlite run feeds "
                           "exactly one")
        dtype = model.graph.inputs[0].dtype or np.dtype(np.float32)
        return model, f"{name} (ONNX, opset {model.graph.opset})", dtype
    import nnlite.models as models

    if name not in _BUILTIN or not hasattr(models, name):
        raise RunError(f"unknown model {name!r}: give an .onnx path or one of "
                       f"{', '.join(_BUILTIN)}")
    model = getattr(models, name)()
    if args.weights:
        model.load_state_dict(nnlite.load(args.weights))
        desc = f"{name} (nnlite, weights {args.weights})"
    elif args.random_init:
        desc = f"{name} (nnlite, random weights)"
    else:
        raise RunError(f"built-in model {name!r} needs --weights W.npz (convert a torchvision "
                       "checkpoint with `python -m nnlite.convert`), or --random-init")
    return model.eval(), desc, np.dtype(np.float32)


_SHOWN = 4  # images whose top values are printed


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _is_probabilities(y):
    """True for a 2-D float output whose rows are already distributions (in [0, 1], sum 1)."""
    if y.ndim != 2 or y.dtype.kind != "f" or not y.size or not np.isfinite(y).all():
        return False
    sums = y.sum(axis=1, dtype=np.float64)
    return bool(y.min() >= 0 and y.max() <= 1 and np.allclose(sums, 1.0, rtol=0, atol=1e-3))


def _top(row, k):
    """Indices of the k largest entries of the 1-D ``row`` (NaN last, ties by index)."""
    r = row.astype(np.float64)
    r[np.isnan(r)] = -np.inf
    k = min(k, r.size)
    idx = np.argpartition(-r, k - 1)[:k] if k < r.size else np.arange(r.size)
    return idx[np.lexsort((idx, -r[idx]))]


def _stats(y):
    """'min .., max .., mean ..' over the finite values (and how many are not finite)."""
    if not y.size:
        return "empty"
    v = y.astype(np.float64) if y.dtype.kind in "fc" else y
    finite = np.isfinite(v) if y.dtype.kind == "f" else None
    if finite is not None and not finite.all():
        bad = int(y.size - np.count_nonzero(finite))
        v = v[finite]
        if not v.size:
            return f"no finite values ({bad} NaN/inf)"
        tail = f"; {bad} NaN/inf"
    else:
        tail = ""
    return (f"min {v.min():.4g}, max {v.max():.4g}, mean {v.mean(dtype=np.float64):.4g}"
            f"{tail}")


def _index(j, shape):
    return "(" + ", ".join(str(int(i)) for i in np.unravel_index(j, shape)) + ")"


def _report_output(y, k, out=None):
    """The value lines of one output: stats, then the top-k of its first images."""
    out = sys.stdout if out is None else out
    print(f"values      {_stats(y)}", file=out)
    if not y.size or k < 1:
        return
    if y.ndim == 0:
        return
    if y.ndim == 1:
        idx = _top(y, k)
        print(f"top-{len(idx)}       " + ", ".join(f"{y[j]:.4g} at {j}" for j in idx), file=out)
        return
    flat = y.reshape(y.shape[0], -1)
    logits = y.ndim == 2 and y.dtype.kind == "f" and not _is_probabilities(y)
    if y.ndim == 2 and not logits:
        print("            (rows are probabilities: no softmax applied)"
              if y.dtype.kind == "f" else "            (not scores: no softmax applied)",
              file=out)
    for i, row in enumerate(flat[:_SHOWN]):
        idx = _top(row, k)
        if logits:
            probs = _softmax(row.astype(np.float64))
            items = ", ".join(f"{j} ({row[j]:.4g}, p={probs[j]:.3f})" for j in idx)
        elif y.ndim == 2:
            items = ", ".join(f"{j} ({row[j]:.4g})" for j in idx)
        else:
            items = ", ".join(f"{row[j]:.4g} at {_index(j, y.shape[1:])}" for j in idx)
        print(f"top-{len(idx)} [{i}]   {items}", file=out)
    if flat.shape[0] > _SHOWN:
        print(f"         ({flat.shape[0] - _SHOWN} more images not shown)", file=out)


def _output_names(model, n):
    """Names of the model's ``n`` outputs: the graph's for ONNX, else output / output<i>."""
    names = [str(v) for v in (getattr(model, "output_names", None) or [])]
    if len(names) != n:
        names = ["output"] if n == 1 else [f"output{i}" for i in range(n)]
    return names


def _npz_keys(names):
    """The output names as .npz keys (nnlite.save): '/' and '\\' become '_', unique."""
    keys, seen = [], set()
    for i, name in enumerate(names):
        key = name.replace("/", "_").replace("\\", "_") or f"output{i}"
        while key in seen:
            key += "_"
        seen.add(key)
        keys.append(key)
    return keys


def _check_output_path(path):
    if path is None:
        return
    if not path.lower().endswith(".npz"):
        raise RunError(f"--output must name an .npz file, got {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise RunError(f"--output {path!r}: no such directory {folder!r}")


def _plan_failed(exc, run_plain):
    """Raise the RunError for an optimized run that failed with ``exc``: the model's own error
    when the plain module fails too, else a plan error pointing to ``--plain``."""
    try:
        run_plain()
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError):
        raise exc from None  # the model itself fails on this input: report that error
    raise RunError(f"the inference plan failed ({type(exc).__name__}): {exc}\n"
                   "  the unoptimized module runs this input: `nnlite run --plain ...` "
                   "(please report the plan failure)") from exc


def cmd_run(args):
    import nnlite

    try:
        if args.run_threads is not None:
            if args.run_threads < 1:
                raise RunError(f"--threads must be >= 1, got {args.run_threads}")
            nnlite.set_num_threads(args.run_threads)
        if args.repeat < 1:
            raise RunError(f"--repeat must be >= 1, got {args.repeat}")
        _check_output_path(args.output)
        model, desc, dtype = _load_model(args)
        x = _load_input(args.input, args.batch, args.size).astype(dtype, copy=False)
        runner = model if args.plain else nnlite.optimize_for_inference(model)

        def once(fn=runner):
            with nnlite.no_grad():
                return fn(x)
        t0 = time.perf_counter()
        try:
            out = once()                              # warm-up (compiles the plan)
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as exc:
            if args.plain:
                raise
            _plan_failed(exc, lambda: once(model))
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = once()
            times.append(time.perf_counter() - t0)
    except (RunError, ValueError, TypeError, KeyError, ImportError, FileNotFoundError,
            RuntimeError) as exc:
        print(f"nnlite run: error: {exc}", file=sys.stderr)
        return 2
    ys = [np.asarray(y.data if hasattr(y, "data") else y)
          for y in (out if isinstance(out, (tuple, list)) else (out,))]
    names = _output_names(model, len(ys))
    med, best = float(np.median(times)), float(np.min(times))
    print(f"model       {desc}, {'plain' if args.plain else 'optimized'}")
    print(f"input       {args.input} {x.shape} {x.dtype}")
    for i, (name, y) in enumerate(zip(names, ys)):
        label = "output" if len(ys) == 1 else f"output[{i}]"
        print(f"{label:<11} {tuple(y.shape)} {y.dtype}  {name!r}")
        _report_output(y, args.topk)
    if args.output:
        try:
            keys = _npz_keys(names)
            nnlite.save(dict(zip(keys, ys)), args.output)
        except OSError as exc:
            print(f"nnlite run: error: --output {args.output!r}: {exc}", file=sys.stderr)
            return 2
        print(f"saved       {args.output} ({', '.join(keys)})")
    print(f"latency     median {med * 1e3:.2f} ms, min {best * 1e3:.2f} ms over {args.repeat} "
          f"runs ({nnlite.get_num_threads()} threads; first call {first * 1e3:.0f} ms); "
          f"{x.shape[0] / med:.1f} images/s")
    return 0
