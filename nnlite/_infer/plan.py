"""Compile a ``Graph`` for fixed input shapes into a ``Plan``: kernels + a memory plan.

1. dry run: the Tensor executor (no_grad) runs the graph once on the real inputs, giving every
   value's shape/dtype, folding every value that depends only on constants and ``Shape``, and
   the reference outputs the finished plan is checked against;
2. ``passes.simplify``: BN folding, residual/activation fusion, aliases, dead code;
3. storage: Reshape-like nodes become views of their input; a Concat along channels whose
   inputs are written by nodes read by nothing else hands each producer its channel slice of
   the output buffer (no copy); a residual conv accumulates in place into the operand it adds
   when that operand dies there;
4. liveness: every root buffer lives from its first write to its last read and is packed into
   reusable arena slots (best fit), so layers reuse activation memory;
5. branches: the independent chains feeding a concatenation (Inception's four branches) form a
   group run on two lanes side by side, each lane's kernels on one thread (small 14x14 / 7x7
   layers gain almost nothing from a second OpenMP thread, two branches at once nearly 2x);
   chains are balanced by multiply-adds (longest first; the heaviest conv of a lopsided
   group is split by output channels across the lanes) and every value of a group stays
   live for the whole group;
6. ``Plan.bind`` (once per thread) allocates the slots and a scratch area (one more per second
   lane) and binds each kernel to fixed views: a call is then a copy-in, a list of
   zero-argument calls, and a copy-out.
"""
import threading
import weakref

import numpy as np

from .._config import get_num_threads, thread_budget
from ..autograd import no_grad
from ..onnx.ops import OPS, run_node
from ..tensor import Tensor
from .kernels import ConvKernel, FallbackKernel, SharedColumns, make_kernel, split_conv
from .passes import simplify
from .trace import GENERIC

__all__ = ["compile_plan", "Plan", "PlanMismatch"]

_VIEW_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


class PlanMismatch(RuntimeError):
    """The optimized plan disagrees with the plain execution (a planner bug)."""


def _generic(node, args, opset):
    out = node.attrs["fn"].apply(*args, **node.attrs["params"])
    return list(out) if isinstance(out, tuple) else [out]


OPS.setdefault(GENERIC, _generic)


# ops whose outputs depend only on their input's shape (folded at compile time, as every value
# computed from constants and shapes is: Shape -> Gather -> Concat -> Reshape chains vanish)
_SHAPE_ONLY = ("Shape", "Size")
_SHAPE_ONLY_OUTPUTS = {("Dropout", 1)}   # the inference-mode mask (all true)


def dry_run(graph, arrays, constants):
    """(metas, static values, reference outputs): one plain run of ``graph`` on ``arrays``."""
    metas = {n: (tuple(a.shape), a.dtype) for n, a in constants.items()}
    static = dict(constants)
    env = {vi.name: Tensor(a) for vi, a in zip(graph.inputs, arrays)}
    for vi, a in zip(graph.inputs, arrays):
        metas[vi.name] = (tuple(a.shape), a.dtype)
    last = {}
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            last[v] = i
    for v in graph.outputs:
        last[v] = len(graph.nodes)
    with no_grad():
        for i, node in enumerate(graph.nodes):
            args = [None if not v else (env[v] if v in env else Tensor(static[v]))
                    for v in node.inputs]
            try:
                outs = run_node(node, args, graph.opset)
            except (ValueError, TypeError, RuntimeError) as exc:
                raise type(exc)(f"{node.label()}: {exc}") from exc
            is_static = node.op in _SHAPE_ONLY or all(not v or v in static for v in node.inputs)
            for k, (name, val) in enumerate(zip(node.outputs, outs)):
                if not name:
                    continue
                metas[name] = (tuple(val.shape), val.dtype)
                if (is_static or (node.op, k) in _SHAPE_ONLY_OUTPUTS) and node.op != GENERIC:
                    static[name] = np.asarray(val.data)
                elif last.get(name, -1) > i:
                    env[name] = val
            for v in node.inputs:
                if v in env and last.get(v, -1) <= i:
                    del env[v]
    ref = [np.array(env[v].data if v in env else static[v]) for v in graph.outputs]
    return metas, static, ref


class _Storage:
    """Value -> (root buffer, view chain); roots carry shape, dtype and live range."""

    def __init__(self):
        self.root = {}     # value -> root name
        self.chain = {}    # value -> [("reshape", shape) | ("slice", axis, start, stop)]
        self.meta = {}     # root -> (shape, dtype)

    def own(self, v, meta):
        self.root[v], self.chain[v], self.meta[v] = v, [], meta

    def alias(self, v, base, step):
        self.root[v] = self.root[base]
        self.chain[v] = self.chain[base] + [step]
        self.meta.pop(v, None)

    def owner(self, v):
        return self.root.get(v) == v and not self.chain[v]


class Plan:
    """Kernels, memory plan and I/O of one input signature (immutable; bind per thread)."""

    def __init__(self, inputs, outputs, steps, storage, slots, slot_of, scratch, consts,
                 groups=()):
        self.inputs, self.outputs, self.steps = inputs, outputs, steps
        self.storage, self.slots, self.slot_of = storage, slots, slot_of
        self.scratch, self.consts = scratch, consts
        # [(first step, last step, (lane 0 steps, lane 1 steps), [(set after, wait before)])]
        self.groups = list(groups)

    def bind(self):
        """Fresh arena for the calling thread: (input arrays, output arrays, run list)."""
        arena = [np.empty(n, np.uint8) for n in self.slots]
        scratch = np.empty(max(self.scratch, 64), np.uint8)
        st = self.storage
        roots = {}
        for r, (shape, dtype) in st.meta.items():
            nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            roots[r] = arena[self.slot_of[r]][:nbytes].view(dtype).reshape(shape)
        cache = {}

        def arr(v):
            if v in self.consts:
                return self.consts[v]
            a = cache.get(v)
            if a is None:
                a = roots[st.root[v]]
                for step in st.chain[v]:
                    if step[0] == "reshape":
                        b = a.reshape(step[1])
                        assert not b.size or np.shares_memory(a, b), \
                            "alias reshape must be a view"
                        a = b
                    else:
                        _, axis, start, stop = step
                        a = a[(slice(None),) * axis + (slice(start, stop),)]
                cache[v] = a
            return a
        second = {i for g in self.groups for i in g[2][1]}
        lane_scratch = None
        if second:
            need = max(self.steps[i][1].scratch_bytes for i in second)
            lane_scratch = np.empty(max(need, 64), np.uint8)
        bound = []
        for i, (node, kernel, used) in enumerate(self.steps):
            ins = [arr(v) if v else None for v in node.inputs]
            outs = [arr(o) if u else None for o, u in zip(node.outputs, used)]
            bound.append(kernel.bind(ins, outs, lane_scratch if i in second else scratch))
        calls, worker = [], None
        start = {g[0]: g for g in self.groups}
        in_group = {i for g in self.groups for lane in g[2] for i in lane}
        for i in range(len(bound)):
            g = start.get(i)
            if g is not None:
                worker = worker or _LaneWorker()
                events = [threading.Event() for _ in g[3]]
                after = {a: e for (a, _), e in zip(g[3], events)}
                before = {b: e for (_, b), e in zip(g[3], events)}
                lane0, lane1 = [], []
                for j in g[2][0]:
                    stages = getattr(bound[j], "stages", None)
                    if j in after and stages is not None:   # set between a call's stages
                        lane0.extend([stages[0], after[j].set, stages[1]])
                        continue
                    lane0.append(bound[j])
                    if j in after:
                        lane0.append(after[j].set)
                for j in g[2][1]:
                    if j in before:
                        lane1.append(before[j].wait)
                    lane1.append(bound[j])
                calls.append(_group_call(lane0, lane1, worker, events))
            elif i not in in_group:
                calls.append(bound[i])
        return [arr(v) for v in self.inputs], [arr(v) for v in self.outputs], calls


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
        worker.submit(lane1)
        try:
            with thread_budget(1):
                for call in lane0:
                    call()
        finally:
            for e in events:
                e.set()
            worker.wait()
    return run


def _plan_storage(nodes, inputs, outputs, consts, metas):
    st = _Storage()
    for v in inputs:
        st.own(v, metas[v])
    skip = set()
    for n in nodes:
        for o in n.outputs:
            if o:
                st.own(o, metas[o])
        x = n.inputs[0] if n.inputs else ""
        if (n.op in _VIEW_OPS and x and x not in consts and x in st.root
                and all(s[0] == "reshape" for s in st.chain[x])
                and metas[x][1] == metas[n.outputs[0]][1]):
            st.alias(n.outputs[0], x, ("reshape", metas[n.outputs[0]][0]))
            skip.add(id(n))
    consumers = {}  # alias (skipped) nodes count too: a value viewed elsewhere keeps its root
    for n in nodes:
        for v in n.inputs:
            if v:
                consumers.setdefault(v, []).append(n)
    producer = {o: n for n in nodes for o in n.outputs if o}
    # channel concatenation: producers write straight into their slice of the output
    masks = {}
    for n in reversed(nodes):
        if n.op != "Concat" or id(n) in skip or n.outputs[0] in consts:
            continue
        ndim = len(metas[n.outputs[0]][0])
        axis = int(n.attrs["axis"]) % ndim
        mask, start = [], 0
        for v in n.inputs:
            size = metas[v][0][axis]
            p = producer.get(v)
            ok = (axis == 1 and ndim >= 2 and p is not None and id(p) not in skip
                  and p.op != "Concat" and st.owner(v) and v not in outputs
                  and len(consumers.get(v, ())) == 1 and n.inputs.count(v) == 1
                  and metas[v][1] == metas[n.outputs[0]][1])
            if ok:
                st.alias(v, n.outputs[0], ("slice", axis, start, start + size))
            mask.append(not ok)
            start += size
        masks[id(n)] = mask
    groups = _find_groups(nodes, skip, consumers, producer, outputs, metas)
    grouped = {id(n) for g in groups for n in g["nodes"]}
    # residual convs accumulate in place when the operand dies at the conv (not inside a group:
    # the other lane may still read the operand)
    last = _last_use(nodes, outputs, skip)
    for i, n in enumerate(nodes):
        if n.op != "Conv" or not n.attrs.get("residual") or id(n) in grouped:
            continue
        r, o, x = n.inputs[-1], n.outputs[0], n.inputs[0]
        if (r in consts or r in inputs or not st.owner(r) or not st.owner(o)
                or st.root.get(x) == r or metas[r] != metas[o]):
            continue
        group = [v for v, root in st.root.items() if root == r]
        if max(last.get(v, -1) for v in group) <= i:
            for v, root in list(st.root.items()):
                if root == o:  # o and its reshape views now live in r's buffer
                    st.root[v] = r
            st.meta.pop(o, None)
    return st, skip, masks, groups


# ops a lane may run (array kernels without Python-level state)
_LANE_OPS = ("Conv", "MaxPool", "AveragePool", "Relu", "Clip", "Add", "Mul", "nnlite.Affine",
             "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
_MIN_LANE_SHARE = 0.15  # a group whose lighter lane has less of the work is not worth a sync


def _cost(n, metas):
    """Rough work of a node for balancing lanes: multiply-adds of a conv, else its outputs."""
    out = n.outputs[0] if n.outputs else ""
    size = int(np.prod(metas[out][0], dtype=np.int64)) if out in metas else 0
    if n.op == "Conv" and len(n.inputs) > 1 and n.inputs[1] in metas:
        w = metas[n.inputs[1]][0]
        return size * int(np.prod(w[1:], dtype=np.int64))
    return size


def _find_groups(nodes, skip, consumers, producer, outputs, metas):
    """Branch groups: for a concatenation, the chain behind each of its inputs (walking back
    through producers whose values only that chain and the concatenation read), when those
    chains are exactly the nodes right before the concatenation; balanced over two lanes by
    ``_cost`` (longest chain first). Returns [{nodes, lo, hi, lanes: (ids, ids)}]."""
    pos = {id(n): i for i, n in enumerate(nodes)}
    groups, taken = [], -1
    for ci, c in enumerate(nodes):
        if c.op != "Concat" or id(c) in skip:
            continue
        chains, members = [], {id(c)}
        for v in dict.fromkeys(c.inputs):
            chain, todo = [], [producer.get(v)]
            while todo:
                p = todo.pop()
                if (p is None or id(p) in members or pos[id(p)] <= taken
                        or p.op not in _LANE_OPS or any(o in outputs for o in p.outputs if o)):
                    continue
                mine = {id(q) for q in chain} | {id(p), id(c)}
                if not all(id(u) in mine for o in p.outputs if o for u in consumers.get(o, ())):
                    continue
                chain.append(p)
                todo.extend(producer.get(u) for u in p.inputs if u)
            members.update(id(p) for p in chain)
            if chain:
                chains.append(chain)
        members.discard(id(c))
        if len(chains) < 2 or not members:
            continue
        lo = min(pos[k] for k in members)
        if {id(n) for n in nodes[lo:ci]} != members:
            continue  # not one contiguous run right before the concatenation
        load, lanes = [0, 0], ([], [])
        for chain in sorted(chains, key=lambda ch: -sum(_cost(n, metas) for n in ch)):
            k = 0 if load[0] <= load[1] else 1
            load[k] += sum(_cost(n, metas) for n in chain)
            lanes[k].extend(chain)
        made = [{o for n in lane for o in n.outputs if o} for lane in lanes]
        if any(v in made[1 - k] for k in (0, 1) for n in lanes[k] for v in n.inputs):
            continue  # a value crosses lanes (cannot happen for disjoint chains; be sure)
        order = [sorted(lane, key=lambda n: pos[id(n)]) for lane in lanes]
        groups.append({"nodes": nodes[lo:ci], "lo": lo, "hi": ci - 1,
                       "lanes": tuple([id(n) for n in lane] for lane in order)})
        taken = ci
    return groups


_SPLIT_ALIGN = 16  # channels of a split conv's second part: a multiple of this (GEMM rows)


def _balance(first, last, lanes, steps, metas, consts, st):
    """The group (first, last, (lane 0, lane 1), syncs) with lane 0 the heavier; when it is
    heavier by more than 10 % of the group, its largest one-group conv is split by output
    channels and the second part appended (as a new step) to lane 1. An implicit-GEMM or
    pointwise conv splits into two independent convs (lane 1 syncs on the lane-0 steps that
    write the input); an im2col conv into ``SharedColumns`` parts: lane 0 gathers the columns
    once and sets the sync between its gather and its GEMM, lane 1 multiplies its filters on
    the same columns (gathering twice instead made GoogLeNet b1 slower: 13.9 vs 13.2 ms).
    Measured GoogLeNet b1, interleaved: 11.2 ms with these splits, 12.6 ms without.
    Mutates ``steps`` (part kernels); None when the group stays too lopsided.
    """
    def cost(i):
        return _cost(steps[i][0], metas)
    lanes = [list(lanes[0]), list(lanes[1])]
    load = [sum(cost(i) for i in lane) for lane in lanes]
    if load[1] > load[0]:
        lanes, load = lanes[::-1], load[::-1]
    gap, syncs, total = load[0] - load[1], [], sum(load)
    group = lanes[0] + lanes[1]

    def read_in_group(i):
        """Whether another step of the group reads conv i's output (directly or through a
        view): its second part, on the other lane, would not be written yet."""
        roots = {st.root.get(o, o) for o in steps[i][0].outputs if o}
        return any(st.root.get(v, v) in roots for j in group if j != i
                   for v in steps[j][0].inputs if v)
    cands = [i for i in lanes[0] if isinstance(steps[i][1], ConvKernel)
             and steps[i][1].g == 1 and not steps[i][1].depthwise and not steps[i][1].residual
             and not read_in_group(i)]
    parts = None
    if gap > 0.1 * total and cands:
        pick = max(cands, key=cost)
        node, conv, used = steps[pick]
        F = conv.shape[4]
        moved = int(F * min(gap / 2, cost(pick) / 2) / max(cost(pick), 1))
        moved = moved // _SPLIT_ALIGN * _SPLIT_ALIGN
        a = b = None
        if moved >= _SPLIT_ALIGN and (conv.implicit or conv.pointwise):
            in_metas = [metas[v] if v else None for v in node.inputs]
            cs = [consts.get(v) if v else None for v in node.inputs]
            a = split_conv(node, in_metas, cs, 0, F - moved)
            b = split_conv(node, in_metas, cs, F - moved, F)
        elif moved >= _SPLIT_ALIGN and conv.cols is not None:
            a, b = SharedColumns(conv, F - moved).parts   # one gather, two GEMMs
        if a is not None and b is not None:
            parts = (pick, node, used, a, b)
            shift = cost(pick) * moved / F
            load = [load[0] - shift, load[1] + shift]
    if min(load) < _MIN_LANE_SHARE * total:
        return None  # too lopsided to be worth a lane handover
    if parts is not None:
        pick, node, used, a, b = parts
        steps[pick] = (node, a, used)
        steps.append((node, b, used))
        lanes[1].append(len(steps) - 1)
        if isinstance(a, ConvKernel) or not hasattr(a, "pair"):
            need = {st.root.get(v) for v in node.inputs if v} - {None}
            made = [i for i in lanes[0] if i != pick and any(
                st.root.get(o) in need for o in steps[i][0].outputs if o)]
            if made:
                syncs.append((max(made, key=lanes[0].index), len(steps) - 1))
        else:  # shared columns: part b waits for part a's gather (set between its stages)
            syncs.append((pick, len(steps) - 1))
    return first, last, (lanes[0], lanes[1]), syncs


def _last_use(nodes, outputs, skip):
    last = {}
    for i, n in enumerate(nodes):
        for v in n.inputs:
            if v:
                last[v] = i
    for v in outputs:
        last[v] = len(nodes)
    return last


def _assign_slots(nodes, st, inputs, outputs, skip, groups=()):
    """Pack roots into arena slots by live range (best fit; a slot may grow). A node of a
    branch group writes at the group's first step and reads until its last (lanes overlap)."""
    span = {id(n): (g["lo"], g["hi"]) for g in groups for n in g["nodes"]}
    first, last = {}, {}
    for v in inputs:
        first[st.root[v]] = -1
    for i, n in enumerate(nodes):
        lo, hi = span.get(id(n), (i, i))
        for o in n.outputs:
            if o in st.root:
                r = st.root[o]
                first[r] = min(first.get(r, lo), lo)
        for v in n.inputs:
            if v in st.root:
                r = st.root[v]
                last[r] = max(last.get(r, hi), hi)
    for v in list(outputs) + list(inputs):
        if v in st.root:
            last[st.root[v]] = len(nodes)
    roots = list(st.meta)
    size = {r: int(np.prod(st.meta[r][0], dtype=np.int64)) * np.dtype(st.meta[r][1]).itemsize
            for r in roots}
    by_first = {}
    for r in roots:
        by_first.setdefault(first.get(r, last.get(r, -1)), []).append(r)
    by_last = {}
    for r in roots:
        by_last.setdefault(last.get(r, len(nodes)), []).append(r)
    slots, free, slot_of = [], [], {}
    for step in range(-1, len(nodes) + 1):
        for r in by_first.get(step, ()):
            need = max(size[r], 1)
            fits = [s for s in free if slots[s] >= need]
            if fits:
                s = min(fits, key=lambda k: slots[k])
            elif free:
                s = max(free, key=lambda k: slots[k])
                slots[s] = need
            else:
                slots.append(need)
                s = len(slots) - 1
            if s in free:
                free.remove(s)
            slot_of[r] = s
        for r in by_last.get(step, ()):
            if r in slot_of:
                free.append(slot_of[r])
    return slots, slot_of


def _kernel(n, metas, consts, used, opset):
    """The step kernel of node ``n``: the array kernels where they apply; the Tensor executor
    (``FallbackKernel``) for what they do not cover (integer pools, MaxPool's Indices output)."""
    in_metas = [metas[v] if v else None for v in n.inputs]
    if n.op in ("MaxPool", "AveragePool") and (
            np.dtype(in_metas[0][1]).kind != "f"
            or any(o in used for o in n.outputs[1:] if o)):
        return FallbackKernel(n, opset)
    return make_kernel(n, in_metas, [consts.get(v) if v else None for v in n.inputs], opset)


def _per_channel(c, rank, channels):
    """``c`` as a (channels,) vector when it broadcasts one value per axis-1 channel of a
    rank-``rank`` tensor (or one value overall), else None."""
    c = np.asarray(c)
    if c.dtype.kind != "f" or c.ndim > rank or rank < 2:
        return None
    shape = (1,) * (rank - c.ndim) + c.shape
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(c.reshape(-1).astype(np.float64), (channels,))


def _canonical(nodes, outputs, consts, metas):
    """Plan-time rewrites that need shapes: a two-input ``Sum`` is an ``Add`` (so residual
    fusion sees it); ``BatchNormalization -> Mul(c) -> Add(d)`` with per-channel constants
    (Caffe2-style exports spell a scale layer so) is one BatchNormalization with scale s*c and
    bias b*c + d (float64, then cast)."""
    nodes = [type(n)("Add", n.inputs, n.outputs, {}, n.name)
             if n.op == "Sum" and len(n.inputs) == 2 and all(n.inputs) else n for n in nodes]
    readers = {}
    for n in nodes:
        for v in n.inputs:
            if v:
                readers.setdefault(v, []).append(n)
    drop, out = set(), []
    for n in nodes:
        if id(n) in drop:
            continue
        if (n.op == "BatchNormalization" and len(n.inputs) == 5
                and all(v in consts for v in n.inputs[1:])
                and not any(o in readers or o in outputs for o in n.outputs[1:] if o)
                and not n.attrs.get("training_mode") and np.ndim(consts[n.inputs[1]]) == 1):
            rank = len(metas[n.inputs[0]][0])
            chans = np.shape(consts[n.inputs[1]])[0]
            scale = np.asarray(consts[n.inputs[1]], np.float64)
            bias = np.asarray(consts[n.inputs[2]], np.float64)
            last, changed = n.outputs[0], False
            for op in ("Mul", "Add"):
                users = readers.get(last, ())
                if len(users) != 1 or users[0].op != op or last in outputs or \
                        len(users[0].inputs) != 2:
                    break
                u = users[0]
                other = u.inputs[1] if u.inputs[0] == last else u.inputs[0]
                c = _per_channel(consts[other], rank, chans) if other in consts else None
                if c is None or metas[u.outputs[0]] != metas[last]:
                    break
                if op == "Mul":
                    scale, bias = scale * c, bias * c
                else:
                    bias = bias + c
                drop.add(id(u))
                last, changed = u.outputs[0], True
            if changed:
                dt = np.asarray(consts[n.inputs[1]]).dtype
                names = []
                for tag, arr in (("scale", scale), ("bias", bias)):
                    name, k = f"{last}:{tag}", 1
                    while name in consts or name in metas:
                        k += 1
                        name = f"{last}:{tag}{k}"
                    consts[name] = arr.astype(dt)
                    metas[name] = ((chans,), dt)
                    names.append(name)
                n = type(n)(n.op, (n.inputs[0], names[0], names[1]) + tuple(n.inputs[3:]),
                            (last,), n.attrs, n.name)
        out.append(n)
    return out


def compile_plan(graph, arrays, constants, folded, check=True):
    """The Plan of ``graph`` for the shapes/dtypes of ``arrays`` (checked against a plain run)."""
    metas, static, ref = dry_run(graph, arrays, constants)
    consts = dict(static)
    nodes = _canonical(list(graph.nodes), set(graph.outputs), consts, metas)
    nodes, outputs = simplify(nodes, list(graph.outputs), consts, metas,
                              graph.opset, folded)
    for k, v in consts.items():
        metas.setdefault(k, (tuple(np.shape(v)), np.asarray(v).dtype))
    inputs = [vi.name for vi in graph.inputs]
    st, skip, masks, groups = _plan_storage(nodes, inputs, outputs, consts, metas)
    slots, slot_of = _assign_slots(nodes, st, inputs, outputs, skip, groups)
    used = set(outputs) | {v for n in nodes for v in n.inputs}
    steps, scratch, step_of = [], 0, {}
    for n in nodes:
        if id(n) in skip:
            continue
        step_of[id(n)] = len(steps)
        if n.op == "Concat" and id(n) in masks:
            if not any(masks[id(n)]):
                continue  # every producer wrote its own slice
            n = type(n)(n.op, n.inputs, n.outputs, dict(n.attrs, copy_mask=masks[id(n)]),
                        n.name)
        kernel = _kernel(n, metas, consts, used, graph.opset)
        scratch = max(scratch, kernel.scratch_bytes)
        steps.append((n, kernel, [bool(o) and o in used for o in n.outputs]))
    plan_groups = []
    for g in groups:
        lanes = tuple([step_of[k] for k in lane if k in step_of] for lane in g["lanes"])
        member_steps = sorted(step_of[id(n)] for n in g["nodes"] if id(n) in step_of)
        # lanes of whole contiguous steps (alias nodes have none); both lanes non-empty
        if (all(lanes) and member_steps == list(range(member_steps[0], member_steps[-1] + 1))
                and sorted(lanes[0] + lanes[1]) == member_steps):
            g = _balance(member_steps[0], member_steps[-1], lanes, steps, metas, consts, st)
            if g is not None:
                plan_groups.append(g)
    scratch = max([scratch] + [k.scratch_bytes for _, k, _ in steps])
    plan = Plan(inputs, outputs, steps, st, slots, slot_of, scratch, consts, plan_groups)
    plan.value_bytes = sum(int(np.prod(metas[v][0], dtype=np.int64))
                           * np.dtype(metas[v][1]).itemsize for v in st.root)
    plan.reference = ref
    return plan


def check_outputs(got, ref, rtol=1e-4):
    """Raise PlanMismatch when an output differs from the plain run by more than ``rtol``
    relative to that output's largest magnitude."""
    for i, (a, b) in enumerate(zip(got, ref)):
        if a.shape != b.shape:
            raise PlanMismatch(f"output {i}: shape {a.shape} vs plain {b.shape}")
        if a.dtype.kind != "f":
            if not np.array_equal(a, b):
                raise PlanMismatch(f"output {i} differs from the plain run")
            continue
        finite = np.isfinite(b)
        if not np.array_equal(finite, np.isfinite(a)) and not np.array_equal(
                np.isnan(a), np.isnan(b)):
            raise PlanMismatch(f"output {i}: non-finite values differ from the plain run")
        if finite.any():
            scale = float(np.abs(b[finite]).max())
            err = float(np.abs(a[finite] - b[finite]).max())
            if err > rtol * max(scale, 1e-30) + 1e-6:
                raise PlanMismatch(f"output {i}: max |optimized - plain| = {err:.3g} exceeds "
                                   f"{rtol:g} x max|plain| = {rtol * scale:.3g}")
