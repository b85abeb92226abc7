"""Compile a ``Graph`` for fixed input shapes into a ``Plan``: kernels plus a memory plan.

``compile_plan`` runs these stages in order; each module's docstring explains its stage.

1. ``dryrun.dry_run``: one plain run of the graph (the Tensor executor, no_grad) on the real
   inputs gives every value's shape and dtype, folds everything computed from constants and
   shapes, and records the reference outputs the finished plan is checked against.
2. ``passes.canonicalize`` and ``passes.simplify``: graph rewrites (BatchNorm folding,
   residual and activation fusion, aliases, dead code).
3. ``storage.plan_views``: each value becomes a view of a root buffer where it can: Reshape-like
   nodes view their input, the producers of a channel concatenation write their slice of it,
   merged sibling convs' outputs are slices of their buffer (joined to a concatenation's).
4. ``lanes.find_groups``: the independent chains feeding a concatenation (Inception's
   branches) form branch groups, dealt to two lanes.
5. ``storage.accumulate_in_place``: residual convs accumulate into an operand that dies there.
6. ``bind.make_steps``: every remaining node gets its array kernel (``kernels.make_kernel``;
   made again with some Winograd convs as F(2x2) when their transformed weights outgrow the
   model's: ``kernels.winograd_memory_cap``);
   ``storage.channels_last_blocks``: the tensors a chain of fused inverted residuals passes
   channels-last (their kernels told so);
   then ``storage.assign_offsets``: every root buffer lives from its first write to its last
   read and is placed at an offset of one arena that roots dead by then reuse (liveness), and
   so is the work memory a kernel asks for (``Kernel.work_bytes``), live during its step.
7. ``lanes.place_groups``: the branch groups in step indices, balanced (a heavy conv split
   by output channels across the lanes).
8. ``Plan.bind`` (``bind.py``, once per thread, when the plan is first called there): the
   arena, the scratch areas and every kernel bound to fixed views; a call is then a copy-in,
   a list of zero-argument calls and a copy-out.

Why this order: the rewrites need every shape (1); views must be known before the groups
(a view node is no step of a lane) and the groups before liveness (a group's values stay live
for the whole group, as its lanes overlap in time); in-place accumulation is refused inside a
group (the other lane may still read the operand); the arena is laid out once the kernels
tell what work memory they need; lanes are balanced last, once the kernels tell which conv can
be split (a split part writes a channel slice of the same output, so the memory plan stays
valid; the parts run on two lanes at once, so they take no work memory from the arena).

``check_outputs`` compares the plan's first outputs with the dry run's (``PlanMismatch``).
"""
import contextlib

import numpy as np

from .._algorithms import winograd_tiles_capped
from .bind import Plan, make_steps, shared_scratch
from .bind import _group_call, _LaneWorker  # noqa: F401 (the lane runtime, imported by tests)
from .dryrun import dry_run, meta_of, shape_inputs
from .kernels import winograd_memory_cap
from .lanes import find_groups, place_groups
from .passes import canonicalize, simplify
from .storage import accumulate_in_place, assign_offsets, channels_last_blocks, plan_views

__all__ = ["compile_plan", "check_outputs", "dry_run", "shape_inputs", "Plan", "PlanMismatch"]


class PlanMismatch(RuntimeError):
    """The optimized plan disagrees with the plain execution (a planner bug)."""


def compile_plan(graph, arrays, constants, folded):
    """The Plan of ``graph`` for the shapes/dtypes of ``arrays`` (stages in the module doc);
    ``folded`` caches prepared constants across plans of one model."""
    metas, static, reference = dry_run(graph, arrays, constants)                  # 1
    consts = dict(static)
    nodes = canonicalize(list(graph.nodes), set(graph.outputs), consts, metas)    # 2
    nodes, outputs = simplify(nodes, list(graph.outputs), consts, metas, graph.opset, folded)
    for k, v in consts.items():
        metas.setdefault(k, meta_of(v))
    inputs = [vi.name for vi in graph.inputs]
    layout = plan_views(nodes, inputs, outputs, consts, metas)                    # 3
    st = layout.storage
    groups = find_groups(nodes, layout.views, layout.readers, outputs, metas)     # 4
    grouped = {id(n) for g in groups for n in g.nodes}
    accumulate_in_place(nodes, st, inputs, outputs, consts, metas, grouped)       # 5
    steps, step_of = make_steps(nodes, layout, outputs, metas, consts, graph.opset)  # 6
    with contextlib.ExitStack() as stack:
        capped = winograd_memory_cap(steps, constants)
        if capped:   # the kernels again, those convs (and their split parts) as F(2x2)
            stack.enter_context(winograd_tiles_capped(capped))
            steps, step_of = make_steps(nodes, layout, outputs, metas, consts, graph.opset)
        channels_last_blocks(steps, st, inputs, outputs, grouped)                # 6b
        work = {id(s.node): s.kernel.work_bytes for s in steps if s.kernel.work_bytes}
        arena = assign_offsets(nodes, st, inputs, outputs, groups, work)
        lane_groups = place_groups(groups, step_of, steps, metas, consts, st)      # 7
    # one scratch area per lane, shared by its kernels: the largest need (the columns of a split
    # conv's parts live apart, in the private area of ``bind.private_scratch``)
    scratch = shared_scratch(steps)
    plan = Plan(inputs, outputs, steps, st, arena, scratch, consts, lane_groups)
    plan.value_bytes = sum(int(np.prod(metas[v].shape, dtype=np.int64))
                           * np.dtype(metas[v].dtype).itemsize for v in st.root)
    plan.reference = reference
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
