"""Stages 6 and 8 of the plan: one kernel per step, and binding the steps to memory.

``make_steps`` gives every node that is not a view its ``Step``: the node, its array kernel
(``kernels.make_kernel``) and which of its outputs anything reads. ``Plan`` holds the steps,
the storage and arena of ``storage.py`` and the lane groups of ``lanes.py``; it is immutable
and shared by all threads. ``Plan.bind`` (once per thread) allocates that thread's arena
and scratch area (one more for the second lane, and one private area for the column matrix a
split conv's two parts share across the lanes: ``private_scratch``) and binds each kernel to fixed
views of them: a call of the plan is then a copy-in, a list of zero-argument calls and a
copy-out. A lane group is one of those calls: it runs its two lanes side by side, lane
``caller`` on the calling thread and lane ``worker`` on the plan's lane thread
(``_LaneWorker``), one OpenMP thread each.
"""
import threading
import weakref
from typing import NamedTuple

import numpy as np

from .._config import get_num_threads, pool_hold, thread_budget
from .kernels import FallbackKernel, make_kernel

try:
    from .. import _info
except ImportError:            # pure-Python install: plain pages
    _info = None

# a buffer this large or larger gets huge pages (csrc/core/nnl_alloc.c); below it no whole
# 2 MB page would fit
_HUGE_MIN = 2 << 20


def page_buffer(nbytes):
    """uint8 array of ``nbytes`` for a binding's arena or scratch area: from 2 MB up a mapping
    of its own on a 2 MB boundary, advised for transparent huge pages (``_info.HugeBuffer``),
    else (or where that is unavailable) ``np.empty``. The steps of a plan sweep its arena a
    step at a time; in 4 KB pages each sweep misses the TLB on most pages again. Intel Emerald
    Rapids (KVM guest, THP on madvise), 2 threads, the same model built twice in one process,
    runs interleaved in alternating order, medians of 60-100 rounds, huge-page arena / plain:
    ResNet-50 batch 1 1.009, 0.986, 0.981, 0.976, 0.959, 0.987 (six runs), GoogLeNet 0.999,
    MobileNetV2 1.003 (its arena holds one whole huge page), ResNet-50 and GoogLeNet at batch 8
    1.005 and 1.004: a small gain on the model with the largest arena, level elsewhere."""
    nbytes = max(int(nbytes), 64)
    if nbytes >= _HUGE_MIN and _info is not None:
        try:
            return np.frombuffer(_info.HugeBuffer(nbytes), np.uint8)
        except MemoryError:        # no such mapping here: the plain allocation decides
            pass
    return np.empty(nbytes, np.uint8)


__all__ = ["Step", "make_steps", "Plan", "private_scratch", "shared_scratch"]


class Step(NamedTuple):
    node: object      # the graph node (a Concat carries its ``copy_mask``)
    kernel: object    # its kernels.Kernel
    used: list        # per output: does anything read it (unread outputs are not written)


def _kernel(n, metas, consts, used, opset):
    """The step kernel of node ``n``: the array kernels where they apply; the Tensor executor
    (``FallbackKernel``) for what they do not cover (integer pools, MaxPool's Indices output)."""
    in_metas = [metas[v] if v else None for v in n.inputs]
    if n.op in ("MaxPool", "AveragePool") and (
            np.dtype(in_metas[0].dtype).kind != "f"
            or any(o in used for o in n.outputs[1:] if o)):
        return FallbackKernel(n, opset)
    return make_kernel(n, in_metas, [consts.get(v) if v else None for v in n.inputs], opset)


def make_steps(nodes, layout, outputs, metas, consts, opset):
    """(steps, step_of): the ``Step`` of every node that is not a view (a Concat whose inputs
    were all written in place has none either), and id(node) -> its step index."""
    used = set(outputs) | {v for n in nodes for v in n.inputs}
    steps, step_of = [], {}
    for n in nodes:
        if id(n) in layout.views:
            continue
        step_of[id(n)] = len(steps)
        mask = layout.copy_masks.get(id(n)) if n.op == "Concat" else None
        if mask is not None:
            if not any(mask):
                continue  # every producer wrote its own slice
            n = type(n)(n.op, n.inputs, n.outputs, dict(n.attrs, copy_mask=mask), n.name)
        kernel = _kernel(n, metas, consts, used, opset)
        steps.append(Step(n, kernel, [bool(o) and o in used for o in n.outputs]))
    return steps, step_of


def private_scratch(steps):
    """Bytes of the one area shared by the kernels that need scratch of their own
    (``private_scratch``: split convs' column matrices, read across lanes); 0 when none do."""
    return max([0] + [s.kernel.scratch_bytes for s in steps
                      if getattr(s.kernel, "private_scratch", False)])


def shared_scratch(steps):
    """Bytes of the scratch area every other kernel of a lane shares (the largest need)."""
    return max([0] + [s.kernel.scratch_bytes for s in steps
                      if not getattr(s.kernel, "private_scratch", False)])


class Plan:
    """Kernels, memory plan and I/O of one input signature (immutable; bind per thread).

    ``steps``: [Step]; ``storage``: storage.Storage; ``arena``: storage.Arena (its size is
    also ``Plan.arena_bytes``); ``scratch``: bytes of the largest kernel scratch; ``consts``:
    constant arrays by name; ``groups``: [lanes.LaneGroup].
    """

    def __init__(self, inputs, outputs, steps, storage, arena, scratch, consts, groups=()):
        self.inputs, self.outputs, self.steps = inputs, outputs, steps
        self.storage, self.arena = storage, arena
        self.scratch, self.consts = scratch, consts
        self.groups = list(groups)

    @property
    def arena_bytes(self):
        """Size in bytes of the activation arena of one binding."""
        return self.arena.size

    def bind(self):
        """Fresh arena for the calling thread: (input arrays, output arrays, run list)."""
        # prepared weights first (once per plan), largest first: the temporaries of a weight
        # transform (Winograd's unpacked transformed weights, 4x the 3x3 weights) then meet
        # neither the arena nor most of the other prepared weights (ResNet-50 b8 from ONNX:
        # peak RSS of load + first call 399 -> 347 MB, steady 374 -> 347 MB)
        for kernel in sorted((s.kernel for s in self.steps), key=lambda k: -k.weight_bytes):
            kernel.prepare()
        arena = page_buffer(self.arena.size)
        scratch = page_buffer(self.scratch)
        st = self.storage
        roots = {}
        for r, (shape, dtype) in st.meta.items():
            at = self.arena.offset_of[r]
            roots[r] = arena[at:at + st.nbytes(r)].view(dtype).reshape(shape)
        cache = {}

        def arr(v):
            if v in self.consts:
                return self.consts[v]
            a = cache.get(v)
            if a is None:
                a = cache[v] = st.view(v, roots[st.root[v]])
            return a
        second = {i for g in self.groups for i in g.lanes.worker}
        lane_scratch = private = None
        if second:
            need = max(self.steps[i].kernel.scratch_bytes for i in second)
            lane_scratch = page_buffer(need)
        need = private_scratch(self.steps)
        if need:
            private = page_buffer(need)
        bound = []
        for i, step in enumerate(self.steps):
            ins = [arr(v) if v else None for v in step.node.inputs]
            outs = [arr(o) if u else None for o, u in zip(step.node.outputs, step.used)]
            area = (private if getattr(step.kernel, "private_scratch", False)
                    else lane_scratch if i in second else scratch)
            at, need = self.arena.work_of.get(id(step.node)), step.kernel.work_bytes
            work = arena[at:at + need] if at is not None and need else None
            bound.append(step.kernel.bind(ins, outs, area, work))
        calls, worker = [], None
        start = {g.first: g for g in self.groups}
        in_group = {i for g in self.groups for lane in g.lanes for i in lane}
        for i in range(len(bound)):
            g = start.get(i)
            if g is not None:
                worker = worker or _LaneWorker()
                calls.append(_bind_group(g, bound, worker))
            elif i not in in_group:
                calls.append(bound[i])
        return [arr(v) for v in self.inputs], [arr(v) for v in self.outputs], calls


def _bind_group(g, bound, worker):
    """The call running lane group ``g`` (its steps' bound calls in ``bound``)."""
    events = [threading.Event() for _ in g.syncs]
    after = {s.after: e for s, e in zip(g.syncs, events)}
    before = {s.before: e for s, e in zip(g.syncs, events)}
    caller, lane = [], []
    for j in g.lanes.caller:
        stages = getattr(bound[j], "stages", None)
        if j in after and stages is not None:   # set between a call's stages
            gather, rest = stages
            caller.extend([gather, after[j].set, rest])
            continue
        caller.append(bound[j])
        if j in after:
            caller.append(after[j].set)
    for j in g.lanes.worker:
        if j in before:
            lane.append(before[j].wait)
        lane.append(bound[j])
    return _group_call(caller, lane, worker, events)


class _LaneState:
    """What the lane thread shares with its owner (the thread holds no reference to the owner,
    so a dropped binding lets the thread end)."""

    def __init__(self):
        self.go, self.done = threading.Event(), threading.Event()
        self.job, self.error, self.closed = None, None, False


def _lane_loop(state):
    while True:
        state.go.wait()
        state.go.clear()
        if state.closed:
            return
        try:
            with thread_budget(1):
                for call in state.job:
                    call()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            state.error = exc
        finally:
            state.job = None
            state.done.set()


class _LaneWorker:
    """The second lane of a bound plan: one daemon thread, started on first use."""

    def __init__(self):
        self.state = _LaneState()
        self.thread = None
        weakref.finalize(self, _close_lane, self.state)

    def submit(self, calls):
        st = self.state
        if self.thread is None:
            self.thread = threading.Thread(target=_lane_loop, args=(st,), daemon=True,
                                           name="nnlite-plan-lane")
            self.thread.start()
        st.job, st.error = calls, None
        st.done.clear()
        st.go.set()

    def wait(self):
        st = self.state
        st.done.wait()
        if st.error is not None:
            err, st.error = st.error, None
            raise err


def _close_lane(state):
    state.closed = True
    state.go.set()


def _group_call(lane0, lane1, worker, events=()):
    """Run two lists of calls side by side (one thread each), or lane 0 then lane 1 when nnlite
    may use a single thread. ``events``: lane 0 sets each (after the producer of a split conv's
    input), lane 1 waits for it; all are set when lane 0 stops early, so lane 1 never hangs."""
    def run():
        for e in events:
            e.clear()
        if get_num_threads() < 2:
            for call in lane0:
                call()
            for call in lane1:
                call()
            return
        # one thread per lane: the pool has no work, and its spinning workers would take the
        # lane thread's core
        pool_hold(-1)
        worker.submit(lane1)
        try:
            with thread_budget(1):
                for call in lane0:
                    call()
        finally:
            for e in events:
                e.set()
            try:
                worker.wait()   # re-raises the lane's error
            finally:
                pool_hold(1)
    return run
