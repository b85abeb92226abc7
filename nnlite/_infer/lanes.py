"""Stages 4 and 7 of the plan: branch groups and their two lanes.

The independent chains feeding a concatenation (Inception's four branches) form a branch group
that runs on two lanes side by side, each lane's kernels on one thread: small 14x14 / 7x7
layers gain almost nothing from a second OpenMP thread, two branches at once nearly 2x.

- ``find_groups`` (on nodes, before the kernels exist) finds the groups and deals the chains
  to the two lanes by multiply-adds, longest first (``BranchGroup``); liveness then keeps every
  value of a group alive for the whole group, as the lanes overlap in time.
- ``place_groups`` (on steps, once every node has its kernel) turns each group into step
  indices and balances it (``LaneGroup``): when one lane is much heavier, its largest conv is
  split by output channels and the second part runs on the other lane, after a ``Sync``.

``bind.Plan.bind`` runs a ``LaneGroup`` as one call: the calling thread runs lane ``caller``
while the plan's lane thread runs lane ``worker``.
"""
import os
from typing import NamedTuple

import numpy as np

from .kernels import ConvKernel, SharedColumns, split_conv

__all__ = ["BranchGroup", "Lanes", "Sync", "LaneGroup", "cost", "find_groups", "place_groups"]

# ops a lane may run (array kernels without Python-level state)
_LANE_OPS = ("Conv", "MaxPool", "AveragePool", "Relu", "Clip", "Add", "Mul", "nnlite.Affine",
             "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
_MIN_LANE_SHARE = 0.15  # a group whose lighter lane has less of the work is not worth a sync
_SPLIT_ALIGN = 16       # channels of a split conv's second part: a multiple of this (GEMM rows)
_SHARED_COLUMNS_MAX_BATCH = 1  # larger batches split an im2col conv into implicit parts

# Lanes pay where OpenMP workers sleep between parallel regions (OMP_WAIT_POLICY=passive):
# two one-thread lanes then spare each small kernel a team wake-up. Under nnlite's default
# short spin (GOMP_SPINCOUNT, nnlite/__init__.py) the team stays awake between a plan's steps,
# every kernel gets both threads, and the lanes only add GIL hand-offs between their steps:
# GoogLeNet at batch 1, 2 threads, idle AMD EPYC Zen 4 VM, medians of 30 runs of plans built
# in alternating processes, with lanes 18.6 / 18.8 / 19.1 / 19.8 / 21.3 ms, without
# 16.5 / 16.5 / 16.7 / 17.5 / 17.6 ms; batch 8 (10 runs) 119 / 112 ms with, 122 / 99 without.
# None: decided from OMP_WAIT_POLICY / GOMP_SPINCOUNT in the environment (libgomp reads them
# once, when nnlite's extensions load it: change them before importing nnlite); True / False:
# forced (tests, studies).
ENABLED = None


def lanes_pay():
    """Whether ``find_groups`` forms branch groups: ``ENABLED``, or when that is None, whether
    OpenMP workers sleep at once between regions (OMP_WAIT_POLICY=passive or
    GOMP_SPINCOUNT=0)."""
    if ENABLED is not None:
        return bool(ENABLED)
    return (os.environ.get("OMP_WAIT_POLICY", "").strip().lower() == "passive"
            or os.environ.get("GOMP_SPINCOUNT", "").strip() == "0")


class Lanes(NamedTuple):
    """What each lane runs, in order: node ids (``BranchGroup``) or step indices
    (``LaneGroup``). ``caller`` runs on the calling thread, ``worker`` on the lane thread."""
    caller: list
    worker: list


class BranchGroup(NamedTuple):
    """The chains feeding one concatenation: ``nodes`` is ``all_nodes[first:last + 1]``, the
    contiguous run right before the Concat (node indices)."""
    nodes: list
    first: int
    last: int
    lanes: Lanes      # node ids


class Sync(NamedTuple):
    """Lane ``worker`` waits before step ``before`` until lane ``caller`` has run step
    ``after`` (for a ``SharedColumns`` part: its gather)."""
    after: int
    before: int


class LaneGroup(NamedTuple):
    """A branch group of the plan: steps ``first..last`` (and the appended second parts of
    split convs) dealt to two lanes."""
    first: int
    last: int
    lanes: Lanes      # step indices
    syncs: list       # [Sync]


def cost(n, metas):
    """Rough work of a node for balancing lanes: multiply-adds of a conv, else its outputs."""
    out = n.outputs[0] if n.outputs else ""
    size = int(np.prod(metas[out].shape, dtype=np.int64)) if out in metas else 0
    if n.op == "Conv" and len(n.inputs) > 1 and n.inputs[1] in metas:
        w = metas[n.inputs[1]].shape
        return size * int(np.prod(w[1:], dtype=np.int64))
    return size


def find_groups(nodes, views, consumers, outputs, metas):
    """Branch groups: for a concatenation, the chain behind each of its inputs (walking back
    through producers whose values only that chain and the concatenation read), when those
    chains are exactly the nodes right before the concatenation; dealt to two lanes by
    ``cost`` (longest chain first); none unless ``lanes_pay()``. ``views``: ids of the nodes
    that became views; ``consumers``: value -> reading nodes."""
    if not lanes_pay():
        return []
    producer = {o: n for n in nodes for o in n.outputs if o}
    pos = {id(n): i for i, n in enumerate(nodes)}
    groups, taken = [], -1
    for ci, c in enumerate(nodes):
        if c.op != "Concat" or id(c) in views:
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
        if len(chains) < 2:
            continue
        lo = min(pos[k] for k in members)
        if {id(n) for n in nodes[lo:ci]} != members:
            continue  # not one contiguous run right before the concatenation
        load, lanes = [0, 0], ([], [])
        for chain in sorted(chains, key=lambda ch: -sum(cost(n, metas) for n in ch)):
            k = 0 if load[0] <= load[1] else 1
            load[k] += sum(cost(n, metas) for n in chain)
            lanes[k].extend(chain)
        # no value crosses lanes: a node joins a chain only when every reader of its outputs
        # is already in that chain (or is the Concat), so chains never read each other
        order = [sorted(lane, key=lambda n: pos[id(n)]) for lane in lanes]
        groups.append(BranchGroup(nodes[lo:ci], lo, ci - 1,
                                  Lanes(*([id(n) for n in lane] for lane in order))))
        taken = ci
    return groups


def place_groups(groups, step_of, steps, metas, consts, st):
    """The ``LaneGroup``s of the plan: each ``BranchGroup`` whose lanes are whole contiguous
    steps (view nodes have none) with both lanes non-empty, balanced by ``_balance`` (which
    may append steps to ``steps``); groups too lopsided to gain are left out."""
    placed = []
    for g in groups:
        lanes = [[step_of[k] for k in lane if k in step_of] for lane in g.lanes]
        member_steps = sorted(step_of[id(n)] for n in g.nodes if id(n) in step_of)
        if (all(lanes) and member_steps == list(range(member_steps[0], member_steps[-1] + 1))
                and sorted(lanes[0] + lanes[1]) == member_steps):
            lg = _balance(member_steps[0], member_steps[-1], lanes, steps, metas, consts, st)
            if lg is not None:
                placed.append(lg)
    return placed


def _balance(first, last, lanes, steps, metas, consts, st):
    """The ``LaneGroup`` of steps ``first..last`` with lane ``caller`` the heavier; when it is
    heavier by more than 10 % of the group, its largest one-group conv is split by output
    channels and the second part appended (as a new step) to lane ``worker``. An implicit-GEMM
    or pointwise conv splits into two independent convs (the worker syncs on the caller's
    steps that write the input); an im2col conv into ``SharedColumns`` parts: the caller
    gathers the columns once and sets the sync between its gather and its GEMM, the worker
    multiplies its filters on the same columns (gathering twice instead made GoogLeNet b1
    slower: 13.9 vs 13.2 ms). Measured GoogLeNet b1, interleaved: 11.2 ms with these splits,
    12.6 ms without. Above _SHARED_COLUMNS_MAX_BATCH images the shared columns of every image
    are a large buffer (GoogLeNet b8: 27.6 MB for inception3b's 3x3 conv) beside the parts'
    packed weights: such a conv splits into two implicit-GEMM ConvParts instead, which need
    neither (GoogLeNet b8, 2 threads, busy machine, 21 interleaved rounds: 775 ms vs 884 ms
    with shared columns, ONNX Runtime 816 ms). A Winograd conv of a batch splits into two
    Winograd parts instead (each transforms the input on its own; together they hold the
    whole conv's transformed weights): GoogLeNet b8, whose split convs are all Winograd
    convs, 566-575 ms vs 663-704 ms with implicit parts (ONNX Runtime 700-747 ms; two runs of
    9-11 interleaved rounds, load 4-5, AMD EPYC Zen 4, 2 threads; a third: 360 vs 454 ms,
    ORT 468 ms). At batch 1 a Winograd conv still splits over shared columns: Winograd parts
    were no faster there (57.1 vs 55.3 ms, 42.1 vs 40.1 ms). Mutates ``steps`` (part
    kernels); None when the group stays too lopsided.
    """
    def step_cost(i):
        return cost(steps[i].node, metas)
    lanes = [list(lanes[0]), list(lanes[1])]
    load = [sum(step_cost(i) for i in lane) for lane in lanes]
    if load[1] > load[0]:
        lanes, load = lanes[::-1], load[::-1]
    gap, syncs, total = load[0] - load[1], [], sum(load)
    group = lanes[0] + lanes[1]

    def read_in_group(i):
        """Whether another step of the group reads conv i's output (directly or through a
        view): its second part, on the other lane, would not be written yet."""
        return any(st.overlap(v, o) for o in steps[i].node.outputs if o
                   for j in group if j != i for v in steps[j].node.inputs if v)
    cands = [i for i in lanes[0] if isinstance(steps[i].kernel, ConvKernel)
             and steps[i].kernel.g == 1 and not steps[i].kernel.depthwise
             and not steps[i].kernel.residual and not read_in_group(i)]
    split = None
    if gap > 0.1 * total and cands:
        pick = max(cands, key=step_cost)
        node, conv = steps[pick].node, steps[pick].kernel
        F = conv.shape[4]
        moved = int(F * min(gap / 2, step_cost(pick) / 2) / max(step_cost(pick), 1))
        moved = moved // _SPLIT_ALIGN * _SPLIT_ALIGN
        a = b = None
        shared = False  # SharedColumns parts (else two independent ConvParts)
        batch = conv.shape[0] > _SHARED_COLUMNS_MAX_BATCH and conv.cols is not None
        if moved >= _SPLIT_ALIGN and (conv.implicit or conv.pointwise or conv.maps or batch):
            in_metas = [metas[v] if v else None for v in node.inputs]
            cs = [consts.get(v) if v else None for v in node.inputs]
            # a Winograd conv of a batch splits into Winograd parts
            algo = ("winograd" if conv.algorithm == "winograd"
                    else "implicit" if batch and not conv.implicit else "auto")
            a = split_conv(node, in_metas, cs, 0, F - moved, algo)
            b = split_conv(node, in_metas, cs, F - moved, F, algo)
        elif moved >= _SPLIT_ALIGN and conv.cols is not None:
            a, b = SharedColumns(conv, F - moved).parts   # one gather, two GEMMs
            shared = True
        if a is not None and b is not None:
            split = (pick, a, b, shared)
            shift = step_cost(pick) * moved / F
            load = [load[0] - shift, load[1] + shift]
    if min(load) < _MIN_LANE_SHARE * total:
        return None  # too lopsided to be worth a lane handover
    if split is not None:
        pick, a, b, shared = split
        node = steps[pick].node
        steps[pick] = steps[pick]._replace(kernel=a)
        steps.append(steps[pick]._replace(kernel=b))
        lanes[1].append(len(steps) - 1)
        if not shared:
            made = [i for i in lanes[0] if i != pick and any(
                st.overlap(v, o) for o in steps[i].node.outputs if o
                for v in node.inputs if v and v not in consts)]
            if made:
                syncs.append(Sync(max(made, key=lanes[0].index), len(steps) - 1))
        else:  # shared columns: part b waits for part a's gather (set between its stages)
            syncs.append(Sync(pick, len(steps) - 1))
    return LaneGroup(first, last, Lanes(lanes[0], lanes[1]), syncs)
