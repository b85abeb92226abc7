"""Stages 3 and 5 of the plan: where every value lives (storage) and when (liveness).

Storage. Every value is a view of one *root* buffer: either its own, or, through a chain of
view steps, someone else's:

- a Reshape-like node (``_VIEW_OPS``) whose input is a reshape-only view becomes a view of its
  input (``Reshape`` step) and is no longer a step of the plan;
- the outputs of a ``passes.SPLIT_OP`` node (merged sibling convs) become channel slices of
  its input (``Slice`` steps), when that is a root buffer of its own;
- a Concat along channels hands each input written by a node that nothing else reads its
  channel slice of the output (``Slice`` step): the producer writes there, the Concat copies
  only the other inputs (its ``copy_mask``);
- a conv that absorbed a residual Add accumulates in place into the operand's buffer when the
  operand dies at the conv, whether that buffer is the operand's own or, along a chain of
  residual blocks, an earlier operand's.

Liveness. A root lives from the step that first writes it to the last step that reads it (a
node of a branch group from the group's first to its last step: its lanes overlap in time).
Roots are placed at byte offsets of one arena, largest first, each at the lowest offset free
of every root live at the same time, so layers share activation memory and the arena stays
close to the most bytes live at any one step (one slot per root size, reused and grown, left
GoogLeNet's batch-8 arena at twice that: 70 MB for 35 MB live).
"""
from typing import NamedTuple

import numpy as np

from .passes import SPLIT_OP, _fresh, consumers

__all__ = ["Reshape", "Slice", "Storage", "Layout", "Arena", "plan_views",
           "accumulate_in_place", "last_use", "assign_offsets", "channels_last_blocks"]

_VIEW_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


class Reshape(NamedTuple):
    """View step: the base reshaped to ``shape`` (must stay a view)."""
    shape: tuple


class Slice(NamedTuple):
    """View step: ``base[..., start:stop]`` along ``axis``."""
    axis: int
    start: int
    stop: int


class Storage:
    """Value -> (root buffer, chain of view steps); roots carry their ``Meta``."""

    def __init__(self):
        self.root = {}     # value -> root name
        self.chain = {}    # value -> [Reshape | Slice], applied to the root in order
        self.meta = {}     # root -> Meta (shape, dtype)

    def own(self, v, meta):
        self.root[v], self.chain[v], self.meta[v] = v, [], meta

    def alias(self, v, base, step):
        self.root[v] = self.root[base]
        self.chain[v] = self.chain[base] + [step]
        self.meta.pop(v, None)

    def rebase(self, old, new, step):
        """Every value living in root ``old`` now lives in ``step`` of root ``new``."""
        for v, root in self.root.items():
            if root == old:
                self.root[v], self.chain[v] = new, [step] + self.chain[v]
        self.meta.pop(old, None)

    def span(self, v):
        """(root, start, stop): the channels (axis 1) of its root that ``v`` covers; stop None
        when it covers the whole root or a Reshape step makes that unknown."""
        lo, hi = 0, None
        for step in self.chain.get(v, ()):
            if not isinstance(step, Slice) or step.axis != 1:
                return self.root[v], 0, None
            lo, hi = lo + step.start, lo + step.stop
        return self.root.get(v, v), lo, hi

    def overlap(self, a, b):
        """Whether values ``a`` and ``b`` may share bytes (one root, channels that meet)."""
        (ra, a0, a1), (rb, b0, b1) = self.span(a), self.span(b)
        return ra == rb and (a1 is None or b1 is None or (a0 < b1 and b0 < a1))

    def owner(self, v):
        """True when ``v`` is a root buffer itself (no view of another)."""
        return self.root.get(v) == v and not self.chain[v]

    def nbytes(self, root):
        shape, dtype = self.meta[root]
        return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize

    def view(self, v, root_array):
        """``v``'s array: its view steps applied to ``root_array`` (its root's buffer)."""
        a = root_array
        for step in self.chain[v]:
            if isinstance(step, Reshape):
                b = a.reshape(step.shape)
                assert not b.size or np.shares_memory(a, b), "alias reshape must be a view"
                a = b
            else:
                a = a[(slice(None),) * step.axis + (slice(step.start, step.stop),)]
        return a


class Layout(NamedTuple):
    """The result of ``plan_views``."""
    storage: Storage
    views: set          # id() of the nodes that became views (no step in the plan)
    copy_masks: dict    # id(Concat node) -> [copy input k?] (False: its producer wrote it)
    readers: dict       # value -> the nodes reading it (view nodes included)


def plan_views(nodes, inputs, outputs, consts, metas):
    """Reshape views and channel-concatenation slices (see the module doc)."""
    st = Storage()
    for v in inputs:
        st.own(v, metas[v])
    views = set()
    for n in nodes:
        for o in n.outputs:
            if o:
                st.own(o, metas[o])
        x = n.inputs[0] if n.inputs else ""
        if (n.op in _VIEW_OPS and x and x not in consts and x in st.root
                and all(isinstance(s, Reshape) for s in st.chain[x])
                and metas[x].dtype == metas[n.outputs[0]].dtype):
            st.alias(n.outputs[0], x, Reshape(metas[n.outputs[0]].shape))
            views.add(id(n))
        elif n.op == SPLIT_OP and st.owner(x) and not any(o in outputs for o in n.outputs):
            start = 0
            for o, size in zip(n.outputs, n.attrs["sizes"]):
                st.alias(o, x, Slice(1, start, start + size))
                start += size
            views.add(id(n))
    readers = consumers(nodes)  # view nodes count too: a value viewed elsewhere keeps its root
    producer = {o: n for n in nodes for o in n.outputs if o}
    masks = {}
    for n in reversed(nodes):
        if n.op != "Concat" or id(n) in views or n.outputs[0] in consts:
            continue
        out = metas[n.outputs[0]]
        ndim = len(out.shape)
        axis = int(n.attrs["axis"]) % ndim
        joined = axis == 1 and _join_split(n, st, consts, metas, producer, readers)
        mask, start = [], 0
        for k, v in enumerate(n.inputs):
            size = metas[v].shape[axis]
            p = producer.get(v)
            ok = (k == 0 and joined) or (
                  axis == 1 and ndim >= 2 and p is not None and id(p) not in views
                  and p.op != "Concat" and st.owner(v) and v not in outputs
                  and len(readers.get(v, ())) == 1 and n.inputs.count(v) == 1
                  and metas[v].dtype == out.dtype)
            if ok and not (k == 0 and joined):
                st.alias(v, n.outputs[0], Slice(axis, start, start + size))
            mask.append(not ok)
            start += size
        masks[id(n)] = mask
    return Layout(st, views, masks, readers)


def _join_split(concat, st, consts, metas, producer, readers):
    """When the concatenation's first input is the last slice of a ``SPLIT_OP`` view (merged
    sibling convs: passes puts a conv whose output opens a concatenation last), ONE root holds
    the split's input followed by the concatenation's output, overlapping by that slice: the
    merged conv writes the concatenation's first input in place. True when joined."""
    c, v = concat.outputs[0], concat.inputs[0]
    p = producer.get(v)
    if (p is None or p.op != SPLIT_OP or p.outputs[-1] != v or st.root.get(v) != p.inputs[0]
            or not st.owner(p.inputs[0]) or not st.owner(c) or len(readers.get(v, ())) != 1
            or concat.inputs.count(v) != 1 or metas[v].dtype != metas[c].dtype):
        return False
    x, (shape, dtype) = p.inputs[0], metas[c]
    head = metas[x].shape[1] - metas[v].shape[1]          # channels of x before the slice
    name = _fresh(consts, metas, f"{c}:joined")
    metas[name] = type(metas[c])((shape[0], head + shape[1]) + tuple(shape[2:]), dtype)
    st.own(name, metas[name])
    st.rebase(x, name, Slice(1, 0, metas[x].shape[1]))
    st.rebase(c, name, Slice(1, head, head + shape[1]))
    return True


def last_use(nodes, outputs):
    """value -> index of the last node reading it (``len(nodes)`` for the graph's outputs)."""
    last = {}
    for i, n in enumerate(nodes):
        for v in n.inputs:
            if v:
                last[v] = i
    for v in outputs:
        last[v] = len(nodes)
    return last


def accumulate_in_place(nodes, st, inputs, outputs, consts, metas, grouped):
    """Residual convs write into their operand's buffer when the operand dies at the conv (not
    inside a branch group, ``grouped``: the other lane may still read the operand). The operand
    may itself live in an earlier residual's buffer (a chain of residual blocks, each block's
    output the next one's operand: every block accumulates in place, not every other one)."""
    last = last_use(nodes, outputs)
    for i, n in enumerate(nodes):
        if n.op != "Conv" or not n.attrs.get("residual") or id(n) in grouped:
            continue
        r, o, x = n.inputs[-1], n.outputs[0], n.inputs[0]
        base = st.root.get(r)     # the buffer r lives in: its own, or an earlier operand's
        if (r in consts or r in inputs or base is None or base in inputs or st.chain[r]
                or not st.owner(o) or st.root.get(x) == base or metas[r] != metas[o]):
            continue
        sharing = [v for v, root in st.root.items() if root == base]
        if max(last.get(v, -1) for v in sharing) <= i:
            for v, root in list(st.root.items()):
                if root == o:  # o and its reshape views now live in r's buffer
                    st.root[v] = base
            st.meta.pop(o, None)


class Arena(NamedTuple):
    """The memory plan: one byte buffer of ``size`` bytes per binding; every root lives at
    ``offset_of[root]`` in it (64-byte aligned); ``work_of[id(node)]`` is the offset of the
    work memory of that node's kernel (``Kernel.work_bytes``), live while its step runs."""
    size: int
    offset_of: dict   # root -> byte offset
    work_of: dict     # id(node) -> byte offset of its kernel's work memory


def live_ranges(nodes, st, inputs, outputs, groups=()):
    """(first, last): root -> index of the step that first writes / last reads it (-1 for the
    inputs, which the caller writes before step 0; ``len(nodes)`` for the outputs, which the
    caller reads after the last step). A node of a branch group writes at the group's first
    step and reads until its last (lanes overlap). An input's buffer is free after its last
    reader: the plan copies the inputs in on every call."""
    span = {id(n): (g.first, g.last) for g in groups for n in g.nodes}
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
    for v in inputs:
        last.setdefault(st.root[v], -1)    # an input nothing reads: free once copied in
    for v in outputs:
        if v in st.root:
            last[st.root[v]] = len(nodes)
    return first, last


def _align(n):
    return (int(n) + 63) // 64 * 64


def assign_offsets(nodes, st, inputs, outputs, groups=(), work=None):
    """Place the roots in one arena by live range: largest first (ties: earliest first), each
    at the lowest offset where it overlaps no root live at the same time (``live_ranges``;
    a root nothing reads lives to the end). Two roots share bytes only when one's
    last reader runs before the other's first writer. ``work`` (id(node) -> bytes) adds the
    work memory of those nodes' kernels as blocks live during their node's step only (during
    its branch group when it has one): they reuse the bytes of values dead by then."""
    first, last = live_ranges(nodes, st, inputs, outputs, groups)
    end = len(nodes)
    span = {r: (first.get(r, -1), last.get(r, end)) for r in st.meta}
    blocks = {r: (_align(max(st.nbytes(r), 1)), span[r]) for r in st.meta}
    if work:
        group_span = {id(n): (g.first, g.last) for g in groups for n in g.nodes}
        for i, n in enumerate(nodes):
            if work.get(id(n)):
                blocks[("work", id(n))] = (_align(work[id(n)]), group_span.get(id(n), (i, i)))
    order = sorted(blocks, key=lambda r: (-blocks[r][0], blocks[r][1][0]))
    placed, offset_of, work_of, size = [], {}, {}, 0
    for r in order:
        need, (lo, hi) = blocks[r]
        busy = sorted((o, e) for o, e, a, b in placed if not (hi < a or b < lo))
        at = 0
        for o, e in busy:
            if at + need <= o:
                break
            at = max(at, e)
        placed.append((at, at + need, lo, hi))
        if isinstance(r, tuple) and r[0] == "work":
            work_of[r[1]] = at
        else:
            offset_of[r] = at
        size = max(size, at + need)
    return Arena(size, offset_of, work_of)


def channels_last_blocks(steps, st, inputs, outputs, grouped=()):
    """Stage 6b: the roots a chain of fused inverted residuals (MobileNetV2's blocks) passes
    channels-last, and each block's ``x_channels_last`` / ``y_channels_last`` set from them.

    A block computes channels-last inside (kernels.InvertedResidualKernel); reading an NCHW
    input and writing an NCHW output costs transposes at both ends. A root qualifies when only
    blocks write it (their output) and only blocks read it, as the expanding input (a 1x1
    expand, not a head conv) or as the residual, with no view of it (a slice, a reshape) and
    not a plan input or output, outside branch groups; a block's residual and output take the
    same layout (the residual is copied into, or accumulated in, the output's buffer), so a
    root whose partner does not qualify is dropped until none changes. The roots keep their
    logical (N, C, H, W) shape and size: only the kernels reading and writing them know."""
    from .kernels import IR_INPUTS, InvertedResidualKernel
    res_pos = IR_INPUTS.index("residual")

    def block(s):
        return isinstance(s.kernel, InvertedResidualKernel) and id(s.node) not in grouped

    cand = {st.root[s.node.outputs[0]] for s in steps if block(s) and s.used[0]}
    cand -= {st.root.get(v, v) for v in list(inputs) + list(outputs)}
    cand -= {r for v, r in st.root.items() if st.chain.get(v)}
    for s in steps:
        for pos, v in enumerate(s.node.inputs):
            r = st.root.get(v) if v else None
            if r in cand and not (block(s) and (
                    (pos == 0 and s.kernel.expand and not s.kernel.head)
                    or (pos == res_pos and s.kernel.residual))):
                cand.discard(r)
        for k, v in enumerate(s.node.outputs):
            r = st.root.get(v) if v else None
            if r in cand and not (block(s) and k == 0):
                cand.discard(r)
    changed = True
    while changed:
        changed = False
        for s in steps:
            if block(s) and s.kernel.residual:
                r, y = st.root[s.node.inputs[res_pos]], st.root[s.node.outputs[0]]
                if (r in cand) != (y in cand):
                    cand.discard(r if r in cand else y)
                    changed = True
    for s in steps:
        if block(s):
            s.kernel.x_channels_last = st.root.get(s.node.inputs[0]) in cand
            s.kernel.y_channels_last = st.root.get(s.node.outputs[0]) in cand
    return cand
