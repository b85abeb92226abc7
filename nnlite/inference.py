"""``nnlite.optimize_for_inference(model)``: a frozen, fused, buffer-reusing inference module.

The returned ``InferenceModule`` computes the same outputs as ``model`` in eval mode (within
1e-4 relative) and:

- folds each BatchNorm into the preceding conv (float64 arithmetic, then cast);
- fuses bias, a residual add and ReLU/ReLU6 into the conv's GEMM write-out;
- makes Inception-style branches write straight into their channel slice of the concatenated
  buffer (no concat copy);
- reuses activation memory between layers (one liveness-packed arena);
- keeps no autograd state: the hot path is NumPy arrays and nnlite kernels only.

It accepts nnlite models (traced once per input signature through their Function calls) and
modules returned by ``nnlite.onnx.load`` (their graph is used directly). Tracing records what
``forward`` computes with nnlite ops; values it derives from ``.data``/NumPy directly become
constants of the trace, and Python control flow is frozen at the traced branch. A plan is compiled per
input shape/dtype signature on first use (one plain run, whose result the plan must match) and
weights are frozen then: later changes to ``model`` are not seen (optimize again). At most
``max_plans`` signatures stay compiled (least recently used dropped first, with the buffers any
thread bound for them), so a model fed many input sizes (OCR widths) does not grow without
bound. Concurrent calls are safe: plans are immutable and every thread binds its own buffer
arena.

Shape:
    the model's inputs (Tensors or ndarrays) -> the model's outputs as Tensors (no grad).
"""
import copy
import threading
from collections import OrderedDict

import numpy as np

from ._config import get_num_threads, pool_hold
from ._infer import plan as _plan
from ._infer.passes import Folded
from ._infer.trace import trace
from .nn.module import Module
from .tensor import Tensor

__all__ = ["optimize_for_inference", "InferenceModule"]


def optimize_for_inference(model, max_plans=8):
    """Return an ``InferenceModule`` computing ``model``'s eval-mode outputs (see module doc).

    Args:
        model: an nnlite ``Module`` (e.g. ``nnlite.models.resnet50()``) or a module returned by
            ``nnlite.onnx.load``. The model is snapshotted: later weight changes are not seen.
        max_plans: how many input signatures (shapes/dtypes) keep a compiled plan; the least
            recently used one is dropped beyond that (an int >= 1).

    Examples:
        >>> fast = nnlite.optimize_for_inference(model)
        >>> logits = fast(x)          # x: (N, 3, 224, 224) float32 ndarray or Tensor
    """
    if isinstance(max_plans, bool) or not isinstance(max_plans, int) or max_plans < 1:
        raise ValueError(f"optimize_for_inference: max_plans must be an int >= 1, got "
                         f"{max_plans!r}")
    if isinstance(model, InferenceModule):
        return model
    if not isinstance(model, Module):
        raise TypeError(f"optimize_for_inference expects an nnlite Module, got "
                        f"{type(model).__name__}")
    return InferenceModule(model, max_plans)


def _snapshot(a):
    """``a`` itself when nothing can change it (a read-only array over an immutable ``bytes``
    object: what ``nnlite.onnx.load`` reads initializers into), else a copy: the weights are
    snapshotted either way, without holding them twice."""
    b = a
    while isinstance(b.base, np.ndarray):
        b = b.base
    if not a.flags.writeable and isinstance(b.base, bytes):
        return a
    return np.array(a)


try:
    from ._info import copy_bytes as _copy_bytes
except ImportError:             # pure-Python install: NumPy's copy
    _copy_bytes = None

# an input of at least this many bytes is copied into the plan's arena on all of nnlite's
# threads (``_copy_in``)
_PARALLEL_COPY_MIN = 256 << 10


def _copy_in(dst, src):
    """dst[...] = src, an input into its arena buffer: large C-contiguous inputs of the
    buffer's dtype and shape by ``nnlite._info.copy_bytes`` on nnlite's threads (the pool is
    held and awake by then), the rest by NumPy."""
    if (_copy_bytes is not None and src.nbytes >= _PARALLEL_COPY_MIN
            and src.dtype == dst.dtype and src.shape == dst.shape
            and src.flags.c_contiguous and dst.flags.c_contiguous
            and not np.may_share_memory(dst, src)):
        _copy_bytes(dst, src, get_num_threads())
    else:
        np.copyto(dst, src)


class InferenceModule(Module):
    """The optimized module (see ``optimize_for_inference``). ``plans`` lists the compiled
    input signatures; ``describe(*inputs)`` summarises the plan for those inputs."""

    def __init__(self, model, max_plans=8):
        super().__init__()
        from .onnx.module import OnnxModule

        graph = None
        if isinstance(model, OnnxModule):
            g = model.graph
            consts = {k: _snapshot(model._constant(k).data) for k in g.constants}
            graph = type(g)(g.nodes, g.inputs, g.outputs, consts, g.opset, g.name)
            frozen = None
        else:
            frozen = copy.deepcopy(model).eval()
        object.__setattr__(self, "_graph", graph)
        # inputs whose values (not only shapes) a plan is compiled for: an ONNX graph's that
        # reach a shape operand; a traced model's integer and bool inputs (its Python code may
        # read their values into shapes, which the trace then holds as constants)
        object.__setattr__(self, "_value_inputs",
                           None if graph is None else _plan.shape_inputs(graph))
        object.__setattr__(self, "_frozen", frozen)
        object.__setattr__(self, "_name", type(model).__name__)
        object.__setattr__(self, "_plans", OrderedDict())     # key -> entry, LRU order
        object.__setattr__(self, "_max_plans", int(max_plans))
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_local", threading.local())
        object.__setattr__(self, "_folded", Folded())
        self.train(False)

    def train(self, mode=True):
        object.__setattr__(self, "training", False)  # inference only
        return self

    @property
    def plans(self):
        return list(self._plans)

    # ------------------------------------------------------------------ compile
    def _arrays(self, inputs):
        arrays = []
        for i, x in enumerate(inputs):
            a = x.data if isinstance(x, Tensor) else np.asarray(x)
            if a.dtype.kind == "f" and a.dtype not in (np.float32, np.float64):
                raise TypeError(f"input {i} has dtype {a.dtype}; nnlite computes in float32 "
                                "or float64")
            arrays.append(a)
        if self._graph is not None:
            g = self._graph
            if len(arrays) != len(g.inputs):
                raise TypeError(f"this model takes {len(g.inputs)} input(s) "
                                f"{[vi.name for vi in g.inputs]}, got {len(arrays)}")
            for vi, a in zip(g.inputs, arrays):
                vi.check(a)
        return arrays

    def _key(self, arrays):
        """The plan cache key: every input's shape and dtype, and the bytes of the inputs whose
        values decide shapes (``_value_inputs``)."""
        key = tuple((a.shape, a.dtype.str) for a in arrays)
        which = self._value_inputs
        if which is None:
            which = [i for i, a in enumerate(arrays) if a.dtype.kind in "biu"]
        if which:
            key += tuple(np.ascontiguousarray(arrays[i]).tobytes() for i in which)
        return key

    def _entry(self, key, arrays):
        """The compiled entry for ``key`` (compiled now if missing), marked most recently used."""
        with self._lock:
            entry = self._plans.get(key)
            if entry is not None:
                self._plans.move_to_end(key)
                return entry
        return self._compile(key, arrays)

    def _compile(self, key, arrays):
        with self._lock:
            entry = self._plans.get(key)
            if entry is not None:
                return entry
            if self._graph is not None:
                graph, single = self._graph, len(self._graph.outputs) == 1
            else:
                graph, single = trace(self._frozen, arrays)
            plan = _plan.compile_plan(graph, arrays, graph.constants, self._folded)
            entry = (plan, single)
            got = self._run(entry, key, arrays)
            _plan.check_outputs(got, plan.reference, rtol=1e-3)
            plan.reference = None
            self._plans[key] = entry
            while len(self._plans) > self._max_plans:
                self._plans.popitem(last=False)
            self._prune_frames()
            return entry

    # -------------------------------------------------------------------- run
    def _prune_frames(self):
        """Release this thread's buffers bound for plans no longer in the cache (other threads
        release theirs when they next bind a plan)."""
        frames = getattr(self._local, "frames", None) or {}
        for old in [k for k in frames if k not in self._plans]:
            del frames[old]

    def _frame(self, plan, key):
        frames = getattr(self._local, "frames", None)
        if frames is None:
            frames = self._local.frames = {}
        frame = frames.get(key)
        if frame is None or frame[0] is not plan:
            self._prune_frames()
            frame = frames[key] = (plan,) + plan.bind()
        return frame

    def _run(self, entry, key, arrays):
        plan = entry[0]
        _, ins, outs, calls = self._frame(plan, key)
        pool_hold(1)   # the pool's workers stay awake between this run's kernels
        try:
            for dst, src in zip(ins, arrays):
                _copy_in(dst, src)
            for call in calls:
                call()
        finally:
            pool_hold(-1)
        return [np.array(o) for o in outs]

    def forward(self, *inputs):
        arrays = self._arrays(inputs)
        key = self._key(arrays)
        entry = self._entry(key, arrays)
        outs = self._run(entry, key, arrays)
        if entry[1]:
            return Tensor(outs[0])
        return tuple(Tensor(o) for o in outs)

    def run_arrays(self, *arrays):
        """Like ``forward`` but with ndarrays in and a list of ndarrays out."""
        arrays = self._arrays(arrays)
        key = self._key(arrays)
        return self._run(self._entry(key, arrays), key, arrays)

    def describe(self, *inputs):
        """Text summary of the plan for these inputs: steps by op, fusions, arena size."""
        arrays = self._arrays(inputs)
        key = self._key(arrays)
        plan = self._entry(key, arrays)[0]
        counts = {}
        for node, kernel, _ in plan.steps:
            tag = node.op
            if node.attrs.get("residual"):
                tag += "+add"
            if node.attrs.get("activation"):
                tag += "+" + node.attrs["activation"]
            counts[tag] = counts.get(tag, 0) + 1
        copies = sum(sum(n.attrs["copy_mask"]) for n, _, _ in plan.steps if n.op == "Concat")
        mb = plan.arena_bytes / 2 ** 20
        ops = ", ".join(f"{k}×{v}" for k, v in sorted(counts.items()))
        return (f"{len(plan.steps)} steps ({ops}); "
                f"{copies} concat input copies; arena {mb:.1f} MiB; "
                f"scratch {plan.scratch / 2 ** 20:.1f} MiB")

    def memory_report(self):
        """Bytes this module holds, by category (``nnlite/_infer/memory.py``): ``constants``
        (the weights as imported or traced, kept to compile plans for new input shapes, and
        folded ones), ``prepared`` (what the plans' kernels made of them: transformed and
        packed weights), ``arena`` and ``scratch`` (the buffers this thread bound). Each
        buffer counts once."""
        from ._infer.memory import plan_memory

        frames = getattr(self._local, "frames", None) or {}
        plans = [entry[0] for entry in self._plans.values()]
        bound = [f[1:] for k, f in frames.items() if k in self._plans]
        weights = self._graph.constants if self._graph is not None else self._frozen
        return plan_memory(plans, [weights, self._folded.cache], bound)

    def extra_repr(self):
        return f"{self._name}, {len(self._plans)} compiled input signature(s)"
