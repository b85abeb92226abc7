"""The inference planner's stages on their own: liveness (arena slots), branch lanes and the
registries, each checked against an oracle written here from the graph alone."""
import numpy as np
import pytest
from conftest import kernel_threads
from hypothesis import given
from hypothesis import strategies as st

import nnlite
from nnlite import models
from nnlite._infer import kernels as K
from nnlite._infer.dryrun import Meta
from nnlite._infer.storage import assign_offsets, plan_views
from nnlite._registry import Registry
from nnlite.nn import blocks
from nnlite.onnx.graph import Node
from nnlite.onnx.ops import OPS

pytestmark = pytest.mark.usefixtures("lanes_on")   # the lane tests: lanes forced on


@st.composite
def _dags(draw, equal_sizes):
    """A random DAG of Relu/Add nodes over one or two graph inputs: (nodes, inputs, outputs,
    metas). Every value has its own buffer (no views, no concatenations)."""
    n_in = draw(st.integers(1, 2))
    inputs = [f"in{k}" for k in range(n_in)]
    values = list(inputs)
    nodes = []
    for i in range(draw(st.integers(1, 14))):
        if len(values) > 1 and draw(st.booleans()):
            a, b = draw(st.lists(st.sampled_from(values), min_size=2, max_size=2))
            nodes.append(Node("Add", (a, b), (f"v{i}",), {}, f"add{i}"))
        else:
            nodes.append(Node("Relu", (draw(st.sampled_from(values)),), (f"v{i}",), {},
                              f"relu{i}"))
        values.append(f"v{i}")
    made = values[n_in:]
    outputs = sorted(set(draw(st.lists(st.sampled_from(made), min_size=1, max_size=3))))
    metas = {v: Meta((1, 4 if equal_sizes else draw(st.integers(1, 9)), 3), np.dtype("f4"))
             for v in values}
    return nodes, inputs, outputs, metas


def _live_intervals(nodes, inputs, outputs):
    """value -> [first step writing it, last step reading it]; the caller's inputs are written
    before step 0 (-1), the outputs are read after the last step, as is a value nothing reads
    (the plan keeps it: its graphs have none after dead-code removal, but for unused extra
    outputs). An input nothing reads is free at once."""
    end = len(nodes)
    first = {v: -1 for v in inputs}
    last = {}
    for i, n in enumerate(nodes):
        for o in n.outputs:
            first.setdefault(o, i)
        for v in n.inputs:
            last[v] = i
    for v in outputs:
        last[v] = end
    return {v: (first[v], last.get(v, -1 if v in inputs else end)) for v in first}


def _slots_of_random_dag(dag):
    nodes, inputs, outputs, metas = dag
    layout = plan_views(nodes, inputs, outputs, {}, metas)
    arena = assign_offsets(nodes, layout.storage, inputs, outputs)
    return layout.storage, arena


def _check_no_overlap(dag, storage, arena):
    nodes, inputs, outputs, metas = dag
    live = _live_intervals(nodes, inputs, outputs)
    assert all(storage.root[v] == v for v in live)  # this graph has no views
    placed = []
    for v, (lo, hi) in live.items():
        at, nbytes = arena.offset_of[v], int(np.prod(metas[v].shape)) * 4
        assert at % 64 == 0 and at + nbytes <= arena.size, (v, at, nbytes, arena.size)
        for w, (lo2, hi2), at2, n2 in placed:
            # bytes are reused only after the last reader of their previous value: a step that
            # reads one value and writes another must not find them in the same bytes either
            if at < at2 + n2 and at2 < at + nbytes:
                assert hi < lo2 or hi2 < lo, f"{v} {lo, hi} and {w} {lo2, hi2} share bytes"
        placed.append((v, (lo, hi), at, nbytes))
    return live


@given(_dags(equal_sizes=False))
def test_liveness_never_shares_bytes_between_live_values(dag):
    storage, arena = _slots_of_random_dag(dag)
    _check_no_overlap(dag, storage, arena)


@given(_dags(equal_sizes=True))
def test_liveness_needs_no_more_than_the_values_live_at_once(dag):
    # equal sizes (48 B, 64 with alignment): placing by start step is optimal, so the arena
    # holds exactly as many values as are live at one step (reuse happens whenever it can)
    storage, arena = _slots_of_random_dag(dag)
    live = _check_no_overlap(dag, storage, arena)
    steps = range(-1, len(dag[0]) + 1)
    most = max(sum(lo <= t <= hi for lo, hi in live.values()) for t in steps)
    assert arena.size == 64 * most


def test_liveness_of_a_chain_alternates_two_buffers():
    nodes = [Node("Relu", (f"v{i - 1}" if i else "x",), (f"v{i}",), {}, f"r{i}")
             for i in range(6)]
    metas = {v: Meta((2, 3), np.dtype("f8")) for v in ["x"] + [f"v{i}" for i in range(6)]}
    layout = plan_views(nodes, ["x"], ["v5"], {}, metas)
    arena = assign_offsets(nodes, layout.storage, ["x"], ["v5"])
    # x (copied in on every call) is free after its reader; x, v0..v5 ping-pong in 2 x 64 B
    assert arena.size == 128
    assert [arena.offset_of[v] for v in ["x"] + [f"v{i}" for i in range(6)]] == [
        0, 64, 0, 64, 0, 64, 0]


@pytest.mark.parametrize("make, shape", [
    (lambda: models.googlenet(), (1, 3, 64, 64)),
    (lambda: blocks.Inception(8, 4, 8, 64, 2, 4, 4), (1, 8, 30, 29)),    # a split conv
    (lambda: blocks.Inception(8, 4, 8, 64, 2, 4, 4), (1, 8, 12, 11)),    # shared columns
    (lambda: blocks.Inception(8, 4, 8, 64, 2, 4, 4), (2, 8, 12, 11)),    # implicit parts
])
def test_lanes_never_share_a_buffer_while_both_run(make, shape):
    nnlite.manual_seed(0)
    model = make().eval()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with kernel_threads(2):
        fast = nnlite.optimize_for_inference(model)
        fast(x)
    (plan, _), = fast._plans.values()
    assert plan.groups
    st_, offset_of = plan.storage, plan.arena.offset_of

    def span(r):
        return offset_of[r], offset_of[r] + st_.nbytes(r)
    for g in plan.groups:
        lane_of = {i: k for k, lane in enumerate(g.lanes) for i in lane}
        assert sorted(lane_of) == list(range(g.first, g.last + 1)) + sorted(
            i for i in lane_of if i > g.last)
        # every buffer a step of the group touches, with the lanes that touch it
        touched = {}
        for i, k in lane_of.items():
            node = plan.steps[i].node
            for v in [*node.inputs, *node.outputs]:
                if v and v not in plan.consts:
                    touched.setdefault(st_.root[v], set()).add(k)
        roots = sorted(touched)
        for a in roots:
            for b in roots:
                if a < b:   # both live while either lane runs: never the same bytes
                    (a0, a1), (b0, b1) = span(a), span(b)
                    assert a1 <= b0 or b1 <= a0, (a, b)
        # a step never reads bytes the other lane writes, except after a Sync (the second
        # part of a split conv reads the input that a caller-lane step wrote); values of one
        # buffer may be disjoint slices of it (merged sibling convs' outputs joined to the
        # concatenation): compared as the views they are of their roots
        bufs = {r: np.empty(shape, dtype) for r, (shape, dtype) in st_.meta.items()}

        def view(v):
            return st_.view(v, bufs[st_.root[v]])
        writes = [(k, view(o)) for i, k in lane_of.items()
                  for o in plan.steps[i].node.outputs if o]
        synced = {s.before for s in g.syncs}
        for j, k in lane_of.items():
            for v in plan.steps[j].node.inputs:
                if v and v not in plan.consts and any(
                        w != k and np.shares_memory(view(v), out) for w, out in writes):
                    assert j in synced, (j, v)


def test_registry_refuses_a_second_handler_and_skips_unbuilt_ones():
    table = Registry("test op")

    @table.register("A", "B")
    def first(x):
        return x

    assert table["A"] is first and table["B"] is first
    with pytest.raises(ValueError, match="test op 'B' is registered twice"):
        table.register("B")(lambda x: x)

    @table.register("C", when=False)
    def unbuilt(x):
        return x
    assert "C" not in table and unbuilt(3) == 3


def test_every_plan_kernel_op_runs_in_the_executor():
    # a plan step without its own kernel falls back to the executor's handler of that op, and
    # the dry run needs every op there: the plan must never know an op the executor does not
    # (the ops the passes make, after the dry run, have builders that never decline)
    assert set(K.KERNELS) - {"nnlite.Affine", K.IR_OP, K.SPLIT_OP, K.CONV_POOL_OP,
                             K.MATMUL_OP, K.ATTENTION_OP} <= set(OPS)
