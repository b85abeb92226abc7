"""``nnlite run MODEL --input x.npy``: run an ONNX file or a built-in model on an input array.

Prints the output shape, the top-5 classes (index, score, softmax probability) of the first
images, and the latency (median and min over ``--repeat`` timed runs after one warm-up). MODEL is
a ``.onnx`` path or a built-in name from ``nnlite.models`` (with ``--weights W.npz`` from
``nnlite.save`` / ``python -m nnlite.convert``). The optimized plan is used unless ``--plain``.
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


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _report_topk(y, k, out=None):
    out = sys.stdout if out is None else out
    flat = y.reshape(y.shape[0], -1) if y.ndim > 1 else y[None]
    k = min(k, flat.shape[1])
    for i, row in enumerate(flat[:4]):
        idx = np.argsort(-row, kind="stable")[:k]
        probs = _softmax(row.astype(np.float64))
        items = ", ".join(f"{j} ({row[j]:.4g}, p={probs[j]:.3f})" for j in idx)
        print(f"top-{k} [{i}]   {items}", file=out)
    if flat.shape[0] > 4:
        print(f"         ({flat.shape[0] - 4} more images not shown)", file=out)


def cmd_run(args):
    import nnlite

    try:
        if args.run_threads is not None:
            if args.run_threads < 1:
                raise RunError(f"--threads must be >= 1, got {args.run_threads}")
            nnlite.set_num_threads(args.run_threads)
        if args.repeat < 1:
            raise RunError(f"--repeat must be >= 1, got {args.repeat}")
        model, desc, dtype = _load_model(args)
        x = _load_input(args.input, args.batch, args.size).astype(dtype, copy=False)
        runner = model if args.plain else nnlite.optimize_for_inference(model)

        def once():
            with nnlite.no_grad():
                return runner(x)
        t0 = time.perf_counter()
        out = once()                                  # warm-up (compiles the plan)
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = once()
            times.append(time.perf_counter() - t0)
    except (RunError, ValueError, TypeError, KeyError, ImportError, FileNotFoundError) as exc:
        print(f"nnlite run: error: {exc}", file=sys.stderr)
        return 2
    y = out[0] if isinstance(out, tuple) else out
    y = np.asarray(y.data if hasattr(y, "data") else y)
    med, best = float(np.median(times)), float(np.min(times))
    print(f"model       {desc}, {'plain' if args.plain else 'optimized'}")
    print(f"input       {args.input} {x.shape} {x.dtype}")
    print(f"output      {tuple(y.shape)} {y.dtype}")
    _report_topk(y, args.topk)
    print(f"latency     median {med * 1e3:.2f} ms, min {best * 1e3:.2f} ms over {args.repeat} "
          f"runs ({nnlite.get_num_threads()} threads; first call {first * 1e3:.0f} ms); "
          f"{x.shape[0] / med:.1f} images/s")
    return 0
