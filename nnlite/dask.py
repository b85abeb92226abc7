"""Batch inference on Dask's distributed scheduler: ``predict`` (lazy dask arrays) and
``predict_to_file`` (image files to a CSV/Parquet/NPY file, resumable, fault tolerant).

Needs ``dask[distributed]`` (``pip install nnlite[dask]``) and, for image files, Pillow
(``nnlite[images]``). The nnlite core does not import this module.

The model (an ``.onnx`` path, an nnlite ``Module``, or a built-in model name with ``weights``)
becomes one ``ModelPayload``: its bytes and a content hash. The payload is a single node of the
task graph that every inference task depends on, so Dask sends it to each worker once (and can
recompute it if the worker holding it dies); it is never copied into each task. In each worker
process the payload is compiled with ``nnlite.optimize_for_inference`` once, cached by its hash
(``compile_counts()`` reports how often that happened in the calling process).

Threads: inside a Dask worker nnlite uses as many threads as the worker has
(``nnlite.set_num_threads(worker.nthreads)``; Dask sets OMP/BLAS threads to 1 in workers) and
one model call runs at a time per process, so a worker never runs more compute threads than it
was given; image decoding and resizing of the worker's other tasks overlap with it.
"""
import collections
import copy
import csv
import hashlib
import io
import json
import os
import pickle
import shutil
import sys
import threading
import time
import uuid
import warnings
import zipfile

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError:  # pragma: no cover - depends on the installation
    raise ImportError("nnlite.dask needs Dask: pip install nnlite[dask]") from None

import nnlite

__all__ = ["predict", "predict_to_file", "ModelPayload", "as_payload", "compile_counts",
           "plan_batches", "errors_path", "shards_dir",
           "topk_scores", "shard_paths", "PredictError"]

_BUILTIN = ("googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
            "resnext50_32x4d", "mobilenet_v2")


class PredictError(ValueError):
    """A bad argument or job state in ``predict``/``predict_to_file`` (the message says what)."""


# ----------------------------------------------------------------------------- the model
class ModelPayload:
    """What travels to the workers: ``kind`` ("onnx", "builtin" or "module"), the model's
    bytes, a built-in ``name``, the input dtype, and ``key``, a SHA-256 of all of it."""

    def __init__(self, kind, data, name=None, dtype="float32", description=""):
        self.kind, self.data, self.name = kind, bytes(data), name
        self.dtype = np.dtype(dtype).str
        self.description = description
        h = hashlib.sha256()
        for part in (kind, name or "", self.dtype):
            h.update(part.encode() + b"\0")
        h.update(self.data)
        self.key = h.hexdigest()

    def __dask_tokenize__(self):
        return ("nnlite.dask.ModelPayload", self.key)

    def build(self):
        """The nnlite module (not yet optimized)."""
        if self.kind == "onnx":
            from . import onnx as nx_onnx

            return nx_onnx.load(self.data)
        if self.kind == "builtin":
            model = getattr(nnlite.models, self.name)()
            model.load_state_dict(nnlite.load(io.BytesIO(self.data)))
            return model.eval()
        return pickle.loads(self.data).eval()

    def __repr__(self):
        return (f"ModelPayload({self.kind}, {self.description or self.name}, "
                f"{len(self.data) / 2 ** 20:.1f} MiB, key={self.key[:12]})")


def as_payload(model, weights=None):
    """``model`` (an ``.onnx`` path, an nnlite Module, a built-in name with ``weights`` .npz,
    or a ModelPayload) -> ``(ModelPayload, module)``; the module is built here (the client) to
    check the model before any task runs."""
    if isinstance(model, ModelPayload):
        return model, model.build()
    if isinstance(model, nnlite.nn.Module):
        if weights is not None:
            raise PredictError("weights= applies to built-in model names; a Module carries "
                               "its own")
        model = copy.deepcopy(model).eval()      # the caller's module stays as it is
        try:
            data = pickle.dumps(model, protocol=4)
        except Exception as exc:  # noqa: BLE001 - any pickling failure
            raise PredictError(f"the model {type(model).__name__} cannot be pickled to send it "
                               f"to the workers ({exc})") from None
        payload = ModelPayload("module", data, name=type(model).__name__,
                               description=f"{type(model).__name__} (nnlite Module)")
        return payload, model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be an .onnx path, an nnlite Module or a built-in model "
                        f"name, got {type(model).__name__}")
    name = os.fspath(model)
    if name.lower().endswith(".onnx") or os.path.exists(name):
        if weights is not None:
            raise PredictError("weights= applies to built-in model names; an .onnx file carries "
                               "its own")
        if not os.path.isfile(name):
            raise FileNotFoundError(f"no such ONNX file: {name!r}")
        with open(name, "rb") as fh:
            data = fh.read()

        def make():
            from . import onnx as nx_onnx

            module = nx_onnx.load(name)
            if len(module.graph.inputs) != 1 or len(module.graph.outputs) != 1:
                raise PredictError(f"{name!r} has {len(module.graph.inputs)} inputs and "
                                   f"{len(module.graph.outputs)} outputs; predict needs one of "
                                   "each")
            dtype = module.graph.inputs[0].dtype or np.dtype(np.float32)
            return ModelPayload("onnx", data, name=os.path.basename(name), dtype=dtype,
                                description=f"{name} (ONNX)"), module
        return _client_model(("onnx", data), make)
    if name not in _BUILTIN:
        raise PredictError(f"unknown model {name!r}: give an .onnx path, an nnlite Module, or "
                           f"one of {', '.join(_BUILTIN)} with weights")
    if weights is None:
        raise PredictError(f"built-in model {name!r} needs weights (an .npz from nnlite.save or "
                           "`python -m nnlite.convert`)")
    with open(os.fspath(weights), "rb") as fh:
        data = fh.read()

    def make():
        module = getattr(nnlite.models, name)()
        module.load_state_dict(nnlite.load(io.BytesIO(data)))
        return ModelPayload("builtin", data, name=name,
                            description=f"{name} (weights {os.fspath(weights)})"), module.eval()
    return _client_model(("builtin", name, data), make)


_client_models = collections.OrderedDict()     # (kind, name, bytes hash) -> (payload, module)
_probes = {}                                   # (payload key, shape, dtype) -> output info


def _client_model(ident, make):
    """(payload, module) of a model file, built once per content in this (client) process."""
    h = hashlib.sha256(ident[-1]).hexdigest()
    ident = ident[:-1] + (h,)
    hit = _client_models.get(ident)
    if hit is None:
        hit = _client_models[ident] = make()
        while len(_client_models) > 2:
            _client_models.popitem(last=False)
    else:
        _client_models.move_to_end(ident)
    return hit


# ------------------------------------------------------------------ worker-side state
_MAX_CACHED = 4
_cache = collections.OrderedDict()        # payload key -> InferenceModule (LRU)
_compiles = collections.Counter()         # payload key -> optimize_for_inference calls
_cache_lock = threading.Lock()
_run_lock = threading.Lock()              # one model call at a time per process


def compile_counts():
    """{payload key: times this process compiled it}; ``client.run(compile_counts)`` asks
    every worker."""
    return dict(_compiles)


def plan_batches():
    """{payload key: sorted batch sizes this process has compiled a plan for}."""
    with _cache_lock:
        return {k: sorted(sig[0][0][0] for sig in fast.plans) for k, fast in _cache.items()}


def _worker_threads():
    """The Dask worker's thread count when called inside a worker, else None."""
    try:
        from distributed import get_worker
    except ImportError:  # pragma: no cover - dask without distributed
        return None
    try:
        worker = get_worker()
    except ValueError:
        return None
    n = getattr(worker, "nthreads", None)
    if n is None:
        n = worker.state.nthreads
    return int(n)


def _compiled(payload):
    with _cache_lock:
        fast = _cache.get(payload.key)
        if fast is not None:
            _cache.move_to_end(payload.key)
            return fast
        fast = nnlite.optimize_for_inference(payload.build())
        _compiles[payload.key] += 1
        _cache[payload.key] = fast
        while len(_cache) > _MAX_CACHED:
            _cache.popitem(last=False)
        return fast


def _infer(payload, x, batch_size):
    """Run the compiled model on ``x`` (n, C, H, W) in batches of exactly ``batch_size``, the
    last one zero-padded: every task of a job calls the model with one input shape, so each
    worker compiles one plan (a plan is compiled per input shape)."""
    fast = _compiled(payload)
    x = np.asarray(x, dtype=np.dtype(payload.dtype))
    n = x.shape[0]
    b = batch_size
    outs = []
    nthreads = _worker_threads()
    with _run_lock:
        if nthreads is not None and nnlite.get_num_threads() != nthreads:
            nnlite.set_num_threads(nthreads)
        for start in range(0, n, b):
            chunk = x[start:start + b]
            m = chunk.shape[0]
            if m < b:
                chunk = np.concatenate([chunk, np.zeros((b - m,) + chunk.shape[1:], chunk.dtype)])
            got = fast.run_arrays(chunk)
            if len(got) != 1:
                raise PredictError(f"the model returned {len(got)} outputs; predict needs one")
            outs.append(got[0][:m])
    if not outs:
        return np.zeros((0,), np.float32)
    return np.concatenate(outs)


def topk_scores(outputs, k, softmax=True):
    """(classes int64 (n, k), scores float32 (n, k)) of each row of ``outputs`` (n, ...),
    highest first, ties to the lower class index. ``softmax``: scores are softmax
    probabilities of the row (computed in float64), else the raw outputs."""
    flat = np.asarray(outputs).reshape(len(outputs), -1)
    if k < 1 or k > flat.shape[1]:
        raise PredictError(f"topk must be between 1 and the {flat.shape[1]} outputs per "
                           f"image, got {k}")
    if softmax:
        z = flat.astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        scores = z / z.sum(axis=1, keepdims=True)
    else:
        scores = flat
    idx = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    return idx.astype(np.int64), np.take_along_axis(scores, idx, axis=1).astype(np.float32)


def _load_transformed(path, transform, shape):
    from . import vision

    x = transform(vision.load_image(path))
    x = np.asarray(x.data if hasattr(x, "data") else x)
    if x.shape != shape:
        raise PredictError(f"the transform made {x.shape} from {path!r}, other images give "
                           f"{shape}: end the transform with a CenterCrop")
    return x


# ----------------------------------------------------------------------- tasks
def _block_task(block, payload, batch_size, out_shape, out_dtype):
    if block.shape[0] == 0:
        return np.zeros((0,) + tuple(out_shape), out_dtype)
    return _infer(payload, block, batch_size)


def _paths_task(paths, payload, transform, shape, batch_size):
    x = np.stack([_load_transformed(p, transform, shape) for p in paths]) if len(paths) else \
        np.zeros((0,) + shape, np.float32)
    return _infer(payload, x, batch_size)


def _shard_task(payload, index, paths, transform, shape, batch_size, topk, softmax):
    """One shard of ``predict_to_file``: images that fail to load are reported, not fatal."""
    from .vision import UnreadableImageError

    x = np.zeros((len(paths),) + shape, np.dtype(payload.dtype))
    ok = np.zeros(len(paths), bool)
    reasons = [""] * len(paths)
    for i, p in enumerate(paths):
        try:
            x[i] = _load_transformed(p, transform, shape)
            ok[i] = True
        except FileNotFoundError:
            reasons[i] = "no such file"
        except UnreadableImageError as exc:
            reasons[i] = exc.reason
        except (OSError, ValueError) as exc:
            reasons[i] = f"{type(exc).__name__}: {exc}"
    good = np.flatnonzero(ok)
    # unreadable images keep their slot (zeros) so every shard has the same batch shape
    y = _infer(payload, x, batch_size) if good.size else None
    out = {"index": index, "ok": ok, "reasons": np.array(reasons, dtype=str)}
    if topk:
        if y is None:
            out["classes"] = np.zeros((len(paths), topk), np.int64)
            out["scores"] = np.zeros((len(paths), topk), np.float32)
        else:
            out["classes"], out["scores"] = topk_scores(y, topk, softmax)
    else:
        out["outputs"] = y
    return out


# ------------------------------------------------------------------------- probe
def _output_info(module, shape, dtype, key=None):
    """Output shape per image and dtype, from one plain call on a zero image (remembered per
    payload ``key``)."""
    probe = (key, tuple(shape), np.dtype(dtype).str)
    if key is not None and probe in _probes:
        return _probes[probe]
    with nnlite.no_grad():
        y = module(np.zeros((1,) + tuple(shape), dtype))
    if isinstance(y, (tuple, list)):
        raise PredictError(f"the model returned {len(y)} outputs; predict needs one")
    y = np.asarray(y.data if hasattr(y, "data") else y)
    if key is not None:
        _probes[probe] = (y.shape[1:], y.dtype)
    return y.shape[1:], y.dtype


def _default_transform(transform, size):
    from . import vision

    if transform is None:
        return vision.imagenet_transform(size)
    if not callable(transform):
        raise TypeError(f"transform must be callable, got {type(transform).__name__}")
    return transform


def _transform_shape(transform):
    """Output shape of ``transform`` on a 320x240 RGB image (the image shape every file must
    give)."""
    from PIL import Image

    x = transform(Image.new("RGB", (320, 240)))
    return tuple(np.asarray(x.data if hasattr(x, "data") else x).shape)


def _check_batch(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PredictError(f"batch_size must be a positive int, got {batch_size!r}")


# ----------------------------------------------------------------------- predict
def predict(model, images, batch_size=32, topk=None, softmax=True, weights=None, transform=None,
            size=224):
    """Lazy predictions of ``model`` on ``images``.

    Args:
        model: an ``.onnx`` path, an nnlite ``Module``, or a built-in name (``"resnet50"``, ...)
            with ``weights`` (.npz).
        images: a ``dask.array`` (N, C, H, W) chunked along N (one task per chunk; chunks along
            C, H, W are merged), or a list of image file paths (one task per ``batch_size``
            images, each read with ``nnlite.vision.load_image`` and ``transform``).
        batch_size: images per model call (at most the largest chunk; every call is padded
            to it, so the model is compiled for one input shape).
        topk: None for the raw outputs, else k: returns ``(classes, scores)``.
        softmax: with ``topk``, scores are softmax probabilities (else raw outputs).
        transform: for paths: PIL image -> (C, H, W); default
            ``nnlite.vision.imagenet_transform(size)``.

    Returns:
        a lazy ``dask.array`` (N, *output_shape), or with ``topk`` two: classes (N, k) int64
        and scores (N, k) float32. Compute them with any Dask scheduler; on a distributed
        cluster each worker compiles the model once. An unreadable image file fails its task
        with an error naming the file (``predict_to_file`` reports them and carries on).
    """
    _check_batch(batch_size)
    payload, module = as_payload(model, weights)
    dtype = np.dtype(payload.dtype)
    if isinstance(images, da.Array):
        if images.ndim != 4:
            raise PredictError(f"images must be (N, C, H, W), got shape {images.shape}")
        if any(len(c) != 1 for c in images.chunks[1:]):
            images = images.rechunk({1: -1, 2: -1, 3: -1})
        shape = images.shape[1:]
        out_shape, out_dtype = _output_info(module, shape, dtype, payload.key)
        batch_size = max(1, min(batch_size, max(images.chunks[0], default=1)))
        model_node = dask.delayed(payload, pure=True)
        nd = len(out_shape)
        kw = {}
        if nd < 3:
            kw["drop_axis"] = list(range(1 + nd, 4))
        elif nd > 3:
            kw["new_axis"] = list(range(4, nd + 1))
        out = images.map_blocks(_block_task, model_node, batch_size, tuple(out_shape),
                                np.dtype(out_dtype).str, dtype=out_dtype,
                                chunks=(images.chunks[0],) + tuple((d,) for d in out_shape),
                                name=f"nnlite-predict-{payload.key[:12]}", **kw)
    elif isinstance(images, (list, tuple)):
        paths = [os.path.abspath(os.fspath(p)) for p in images]
        batch_size = max(1, min(batch_size, len(paths)))
        transform = _default_transform(transform, size)
        shape = _transform_shape(transform)
        out_shape, out_dtype = _output_info(module, shape, dtype, payload.key)
        model_node = dask.delayed(payload, pure=True)
        blocks = []
        for s in range(0, len(paths), batch_size):
            part = paths[s:s + batch_size]
            task = dask.delayed(_paths_task, pure=True)(part, model_node, transform, shape,
                                                        batch_size)
            blocks.append(da.from_delayed(task, (len(part),) + tuple(out_shape), out_dtype))
        if not blocks:
            out = da.zeros((0,) + tuple(out_shape), dtype=out_dtype)
        else:
            out = da.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]
    else:
        raise TypeError(f"images must be a dask.array (N, C, H, W) or a list of image paths, "
                        f"got {type(images).__name__}")
    if topk is None:
        return out
    if isinstance(topk, bool) or not isinstance(topk, int):
        raise PredictError(f"topk must be an int or None, got {topk!r}")
    per_image = int(np.prod(out_shape))
    if not 1 <= topk <= per_image:
        raise PredictError(f"topk must be between 1 and the {per_image} outputs per image, "
                           f"got {topk}")
    chunks = (out.chunks[0], (topk,))
    flat = out.reshape(out.shape[0], per_image) if len(out_shape) != 1 else out
    classes = flat.map_blocks(lambda z: topk_scores(z, topk, softmax)[0], dtype=np.int64,
                              chunks=chunks)
    scores = flat.map_blocks(lambda z: topk_scores(z, topk, softmax)[1], dtype=np.float32,
                             chunks=chunks)
    return classes, scores


# ----------------------------------------------------------------- files, shards
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".npy": "npy"}


def _out_format(out):
    ext = os.path.splitext(out)[1].lower()
    if ext not in _FORMATS:
        raise PredictError(f"--out {out!r}: the output must end in .csv, .parquet or .npy")
    fmt = _FORMATS[ext]
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError(f"writing {out!r} needs pyarrow (pip install pyarrow); or write "
                              ".csv or .npy") from None
    return fmt


def errors_path(out):
    """Where ``predict_to_file(out=...)`` lists unreadable images: ``preds.csv`` ->
    ``preds.errors.csv``."""
    return os.path.splitext(out)[0] + ".errors.csv"


def shards_dir(out):
    """The directory holding finished shards of ``out`` until the final file is written."""
    return out + ".shards"


def shard_paths(paths, shard_size):
    """[(shard index, paths)] cutting ``paths`` into shards of ``shard_size``."""
    return [(i, paths[s:s + shard_size]) for i, s in enumerate(range(0, len(paths), shard_size))]


def _atomic_write(path, write):
    """Call ``write(fh)`` on a temporary file next to ``path``, then rename it to ``path``."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       f".{os.path.basename(path)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _shard_file(directory, index):
    return os.path.join(directory, f"shard-{index:08d}.npz")


def _write_shard(directory, result):
    arrays = {k: v for k, v in result.items() if k != "index" and v is not None}
    arrays["index"] = np.int64(result["index"])
    _atomic_write(_shard_file(directory, result["index"]), lambda fh: np.savez(fh, **arrays))


def _read_shard(directory, index, n, fmt_key):
    path = _shard_file(directory, index)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise PredictError(f"shard file {path!r} is unreadable ({exc}); delete it and rerun to "
                           "recompute that shard") from None
    if int(data["index"]) != index or len(data["ok"]) != n or fmt_key not in data and \
            data["ok"].any():
        raise PredictError(f"shard file {path!r} does not belong to this job; rerun with "
                           "restart=True (--restart)")
    return data


class _Progress:
    """A text progress bar on stderr: images done, images/s, time left."""

    def __init__(self, total, skipped, stream=None, enabled=True):
        self.total, self.done, self.skipped = total, skipped, skipped
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.t0 = time.perf_counter()
        self.last = 0.0

    def update(self, n, final=False):
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if not final and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        elapsed = max(now - self.t0, 1e-9)
        rate = (self.done - self.skipped) / elapsed
        left = self.total - self.done
        eta = f"{left / rate:.0f}s" if rate > 0 and left else "0s"
        width = 30
        fill = int(width * self.done / max(self.total, 1))
        line = (f"[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} images "
                f"{rate:.1f} images/s, {eta} left")
        if self.skipped:
            line += f" ({self.skipped} done earlier)"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def predict_to_file(model, paths, out, client=None, batch_size=32, topk=5, softmax=True,
                    weights=None, transform=None, size=224, restart=False, progress=True,
                    keep_shards=False, timeout=None, on_shard=None):
    """Predict ``paths`` (image files) on the Dask ``client`` (default: the current one) and
    write ``out``.

    ``out`` ends in ``.csv`` or ``.parquet`` (columns ``path, class_1, score_1, ...,
    class_k, score_k``: the top-``topk`` classes and their softmax probabilities, or raw
    outputs with ``softmax=False``, one row per readable image in ``paths`` order) or ``.npy``
    (the model's full outputs (N, ...) in ``paths`` order, in the model's float dtype, NaN
    rows for unreadable images). Unreadable images (missing, corrupt, truncated, not images) are listed with the
    reason in ``errors_path(out)`` (``path, reason``) and the run goes on.

    Each task handles one shard of ``batch_size`` images and the client saves each finished
    shard atomically under ``shards_dir(out)``; a rerun with the same ``out`` (same model,
    images and settings) computes only the missing shards, and a killed worker's shards are
    recomputed by Dask. The final files are assembled from the shards by shard index (each
    image exactly once) and written atomically; the shards are then deleted unless
    ``keep_shards``. ``restart=True`` discards shards of a different, earlier job.

    ``on_shard(index, finished, total)`` is called after each shard is saved. Returns a dict:
    images, errors, shards computed now, shards found done, seconds.
    """
    from distributed import as_completed, default_client

    if client is None:
        try:
            client = default_client()
        except ValueError:
            raise PredictError("predict_to_file needs a Dask client: pass client=, or create "
                               "one first (distributed.Client(...))") from None
    _check_batch(batch_size)
    out = os.fspath(out)
    fmt = _out_format(out)
    if not paths:
        raise PredictError("no images given")
    batch_size = min(batch_size, len(paths))
    shown = [os.fspath(p) for p in paths]
    absolute = [os.path.abspath(p) for p in shown]
    payload, module = as_payload(model, weights)
    transform = _default_transform(transform, size)
    shape = _transform_shape(transform)
    out_shape, out_dtype = _output_info(module, shape, np.dtype(payload.dtype), payload.key)
    out_dtype = out_dtype if np.dtype(out_dtype).kind == "f" else np.dtype(np.float32)
    per_image = int(np.prod(out_shape))
    if fmt == "npy":
        topk = 0
    elif isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= per_image:
        raise PredictError(f"topk must be between 1 and the {per_image} outputs per image, "
                           f"got {topk!r}")
    job = {"model": payload.key, "images": hashlib.sha256("\0".join(absolute).encode())
           .hexdigest(), "n": len(paths), "batch": batch_size, "topk": topk,
           "softmax": bool(softmax), "transform": repr(transform), "shape": list(shape)}
    directory = shards_dir(out)
    manifest = os.path.join(directory, "job.json")
    if os.path.isdir(directory):
        try:
            with open(manifest) as fh:
                previous = json.load(fh)
        except (OSError, ValueError):
            previous = None
        if previous != job:
            if not restart:
                raise PredictError(f"{directory!r} holds shards of a different job (other "
                                   "model, images or settings); rerun with --restart to "
                                   "discard them, or choose another --out")
            shutil.rmtree(directory)
    if not os.path.isdir(directory):
        os.makedirs(directory)
        _atomic_write(manifest, lambda fh: fh.write(json.dumps(job, indent=1).encode()))

    shards = shard_paths(list(range(len(paths))), batch_size)
    key = "classes" if topk else "outputs"
    done = set()
    for i, rows in shards:                   # a damaged shard file is recomputed
        if os.path.exists(_shard_file(directory, i)):
            try:
                _read_shard(directory, i, len(rows), key)
                done.add(i)
            except (PredictError, KeyError):
                os.unlink(_shard_file(directory, i))
    todo = [(i, rows) for i, rows in shards if i not in done]
    bar = _Progress(len(paths), sum(len(rows) for i, rows in shards if i in done),
                    enabled=progress)
    t0 = time.perf_counter()
    if todo:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ll]arge.*")
            # keys unique to this run: a key cancelled by an interrupted run may still be
            # being released on the scheduler when a rerun starts
            run = uuid.uuid4().hex[:12]
            model_future = client.submit(_identity, payload, pure=False,
                                         key=f"nnlite-model-{payload.key[:16]}-{run}")
            futures = [client.submit(_shard_task, model_future, i,
                                     [absolute[r] for r in rows], transform, shape, batch_size,
                                     topk, softmax, key=f"nnlite-shard-{run}-{i}", pure=False)
                       for i, rows in todo]
        finished = len(done)
        try:
            for fut in as_completed(futures, timeout=timeout):
                result = fut.result()
                _write_shard(directory, result)
                fut.release()
                finished += 1
                bar.update(len(result["ok"]))
                if on_shard is not None:
                    on_shard(result["index"], finished, len(shards))
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        finally:
            model_future.cancel()
    bar.update(0, final=True)
    # assemble the final file from the shards, by shard index
    ok = np.zeros(len(paths), bool)
    reasons = [""] * len(paths)
    if topk:
        classes = np.zeros((len(paths), topk), np.int64)
        scores = np.zeros((len(paths), topk), np.float32)
    else:
        outputs = np.full((len(paths),) + tuple(out_shape), np.nan, out_dtype)
    for i, rows in shards:
        data = _read_shard(directory, i, len(rows), key)
        sl = slice(rows[0], rows[-1] + 1)
        ok[sl] = data["ok"]
        reasons[sl] = [str(r) for r in data["reasons"]]
        if topk:
            classes[sl], scores[sl] = data["classes"], data["scores"]
        elif data["ok"].any():
            outputs[sl] = np.where(data["ok"].reshape((-1,) + (1,) * len(out_shape)),
                                   data["outputs"], np.nan)
    if fmt == "csv":
        _atomic_write(out, lambda fh: _write_csv(fh, shown, ok, classes, scores))
    elif fmt == "parquet":
        _write_parquet(out, shown, ok, classes, scores)
    else:
        _atomic_write(out, lambda fh: np.save(fh, outputs))
    bad = np.flatnonzero(~ok)
    _atomic_write(errors_path(out), lambda fh: _write_errors(fh, [(shown[i], reasons[i])
                                                                  for i in bad]))
    if not keep_shards:
        shutil.rmtree(directory, ignore_errors=True)
    return {"images": len(paths), "errors": int(bad.size), "shards_computed": len(todo),
            "workers": len(client.scheduler_info().get("workers", {})),
            "shards_done_before": len(done), "seconds": time.perf_counter() - t0}


def _identity(x):
    return x


def _topk_header(k):
    cols = ["path"]
    for j in range(1, k + 1):
        cols += [f"class_{j}", f"score_{j}"]
    return cols


def _write_csv(fh, shown, ok, classes, scores):
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
    w = csv.writer(text)
    w.writerow(_topk_header(classes.shape[1]))
    for i in np.flatnonzero(ok):
        row = [shown[i]]
        for c, s in zip(classes[i], scores[i]):
            row += [int(c), repr(float(s))]
        w.writerow(row)
    text.flush()
    text.detach()


def _write_errors(fh, items):
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
    w = csv.writer(text)
    w.writerow(["path", "reason"])
    w.writerows(items)
    text.flush()
    text.detach()


def _write_parquet(out, shown, ok, classes, scores):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = np.flatnonzero(ok)
    cols = {"path": pa.array([shown[i] for i in rows], pa.string())}
    for j in range(classes.shape[1]):
        cols[f"class_{j + 1}"] = pa.array(classes[rows, j])
        cols[f"score_{j + 1}"] = pa.array(scores[rows, j])
    table = pa.table(cols)
    _atomic_write(out, lambda fh: pq.write_table(table, fh))
