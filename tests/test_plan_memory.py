"""What an inference plan holds in memory (issue #16): no weight kept twice, one scratch area per
lane, and a private column area for a split conv that no other kernel touches; the
benchmarks' staged peak-RSS helper. The bounds are derived here from the algorithms the plan
chose for each conv, independently of how the kernels store their weights."""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import kernel_threads

import nnlite
import nnlite.nn as nn
from nnlite import models
from nnlite._infer import kernels as K
from nnlite._infer.memory import buffers, nbytes
from nnlite.nn import blocks

pytestmark = pytest.mark.usefixtures("lanes_on")   # the lane tests: lanes forced on

HERE = os.path.dirname(os.path.abspath(__file__))


def _param_bytes(model):
    return sum(p.data.nbytes for p in model.parameters())


def _allowance(kernel):
    """Bytes of prepared weights a conv kernel may hold beyond the model's weights, from the
    algorithm its plan chose: Winograd F(m x m, 3x3) keeps (m+2)^2/9 times its 3x3 weights
    (transformed, packed), an im2col conv of one group its weights packed once (but one
    image's pointwise conv whose GEMM reads them as they are: none), an implicit GEMM its
    weight panels packed once, the small-map direct kernel its register blocks packed once
    (filters rounded up to its block of 4), the two parts
    of a split conv their halves packed once; everything else multiplies the weights as they
    are. Packed panels may round the filters up to a multiple of 32 (and K up by a panel)."""
    if isinstance(kernel, K.ConvPart):
        kernel = kernel.inner
    if isinstance(kernel, K._ColumnsPart):
        conv = kernel.pair.conv
        w = conv.w_flat[kernel.pair.f:] if kernel.side else conv.w_flat[:kernel.pair.f]
        rows, k = w.shape
        return (-(-rows // 32) * 32) * (k + 32) * w.itemsize
    if not isinstance(kernel, K.ConvKernel):
        return 0
    f, k = kernel.w_flat.shape
    padded = (-(-f // 32) * 32) * (k + 32) * kernel.w_flat.itemsize
    if kernel.winograd is not None:
        m = kernel.winograd.m
        return padded * (m + 2) ** 2 // 9
    if kernel.w_packed is not None or kernel.w_native is not None:
        return padded
    return 0


def _folded_bytes(model):
    """Bytes of the weights BatchNorm folding makes (a new conv weight and bias per folded
    BatchNorm): the traced model keeps its own weights too, to trace new input shapes."""
    return sum(m.conv.weight.data.nbytes + m.conv.out_channels * m.conv.weight.data.itemsize
               for m in model.modules() if isinstance(m, blocks.BasicConv2d))


def _check_held(fast, model):
    report = fast.memory_report()
    params = _param_bytes(model) + _folded_bytes(model)
    (plan, _), = fast._plans.values()
    # the weights once, the folded ones once (plus the small constants a trace makes:
    # reshape targets, BatchNorm statistics, ...)
    assert _param_bytes(model) <= report["constants"] <= params * 1.02 + 4096, (report, params)
    allowed = sum(_allowance(s.kernel) for s in plan.steps)
    # biases, average-pool divisors and the Gemm's scaled bias are tiny next to the weights
    assert report["prepared"] <= allowed + 0.02 * params + 16384, (report, allowed, params)
    return plan, report


def test_plan_keeps_no_weight_twice_winograd_im2col_pointwise_and_dense():
    nnlite.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),             # Winograd
        nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),  # im2col, packed
        nn.Conv2d(64, 128, 1), nn.ReLU(),                      # pointwise, packed
        nn.Conv2d(128, 128, 3, padding=1, groups=128),         # depthwise: direct
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 64)).eval()
    x = np.random.default_rng(0).standard_normal((1, 32, 24, 24)).astype(np.float32)
    fast = nnlite.optimize_for_inference(model)
    got = fast(x).data
    with nnlite.no_grad():
        want = model(nnlite.tensor(x)).data
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    plan, report = _check_held(fast, model)
    algos = [s.kernel.algorithm for s in plan.steps if isinstance(s.kernel, K.ConvKernel)]
    if K._conv_cython is not None:
        assert "winograd" in algos and "im2col" in algos, algos
    # a second input shape: its plan shares the weights (its trace adds a reshape target)
    fast(np.zeros((2, 32, 24, 24), np.float32))
    assert fast.memory_report()["constants"] <= report["constants"] + 1024


@pytest.mark.parametrize("batch", [1, 2])
def test_pointwise_convs_keep_packed_weights_where_they_are_read(batch):
    """A pointwise conv of one image keeps its weights packed once (the product of a 7x7 map
    too, whichever way round its GEMM family runs it), as does a batch on a 14x14 map. A batch on a 7x7 map runs
    one product over all its columns, on the weights as they are: a copy packed for one
    image's product would never be read."""
    nnlite.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(24, 96, 1), nn.ReLU(), nn.Conv2d(96, 40, 1),
                          nn.MaxPool2d(2), nn.Conv2d(40, 80, 1)).eval()
    x = np.random.default_rng(3).standard_normal((batch, 24, 14, 14)).astype(np.float32)
    fast = nnlite.optimize_for_inference(model)
    got = fast(x).data
    with nnlite.no_grad():
        want = model(nnlite.tensor(x)).data
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    (plan, _), = fast._plans.values()
    convs = [s.kernel for s in plan.steps if isinstance(s.kernel, K.ConvKernel)]
    assert len(convs) == 3
    if K._gemm_ext is None:
        return
    assert [c.w_packed is None for c in convs] == [False, False, batch > 1]
    packed = fast.memory_report()["prepared"]
    assert packed >= sum(c.w_flat.nbytes for c in convs[:2])


@pytest.mark.parametrize("shape", [(1, 8, 30, 29), (1, 8, 12, 11), (2, 8, 12, 11)])
def test_split_conv_keeps_no_weights_of_the_whole_conv(shape):
    # an Inception block at 2 threads: the plan splits its heaviest conv across the lanes
    # (ConvParts, or SharedColumns parts sharing one column matrix): the parts' weights are
    # all it holds, not also the whole conv's Winograd or packed weights
    nnlite.manual_seed(0)
    model = blocks.Inception(8, 4, 8, 64, 2, 4, 4).eval()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with kernel_threads(2):
        fast = nnlite.optimize_for_inference(model)
        fast(x)
    plan, _ = _check_held(fast, model)
    assert plan.groups
    split = [s.kernel for s in plan.steps if isinstance(s.kernel, (K.ConvPart, K._ColumnsPart))]
    assert split, "the test needs a split conv"
    for k in split:
        if isinstance(k, K._ColumnsPart):
            assert k.pair.conv.winograd is None and k.pair.conv.w_packed is None


def _bound_scratch(plan, monkeypatch, record=None):
    """Bind ``plan`` recording the scratch array every kernel got: [(step index, kernel,
    scratch)] in step order; ``record`` (a dict) also gets id(kernel) -> (ins, outs, work)."""
    seen = {}
    orig = K.Kernel.bind

    def spy(self, ins, outs, scratch, work=None):
        seen.setdefault(id(self), scratch)   # a ConvPart binds its inner kernel on its area
        if record is not None:
            record.setdefault(id(self), (ins, outs, work))
        return orig(self, ins, outs, scratch, work)
    monkeypatch.setattr(K.Kernel, "bind", spy)
    plan.bind()
    monkeypatch.setattr(K.Kernel, "bind", orig)
    return [(i, s.kernel, seen[id(s.kernel)]) for i, s in enumerate(plan.steps)]


def _checked_plan(make, shape, seed):
    """The 2-thread plan of ``make()`` on a random input of ``shape``, after checking that its
    outputs repeat bit for bit (lanes run side by side) and match the plain run."""
    nnlite.manual_seed(0)
    model = make().eval()
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    with kernel_threads(2):
        fast = nnlite.optimize_for_inference(model)
        first = fast(x).data
        for _ in range(3):
            np.testing.assert_array_equal(fast(x).data, first)
    with nnlite.no_grad():
        want = model(nnlite.tensor(x)).data
    np.testing.assert_allclose(first, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    (plan, _), = fast._plans.values()
    return plan


@pytest.mark.parametrize("make, shape", [
    (lambda: models.googlenet(), (2, 3, 64, 64)),
    (lambda: blocks.Inception(8, 4, 8, 64, 2, 4, 4), (1, 8, 12, 11)),    # shared columns
    (lambda: blocks.Inception(8, 4, 8, 64, 2, 4, 4), (2, 8, 12, 11)),    # implicit parts
    (lambda: blocks.Inception(8, 4, 8, 64, 2, 4, 4), (1, 8, 30, 29)),    # a split conv
])
def test_workspace_is_never_used_by_two_live_kernels(make, shape, monkeypatch):
    plan = _checked_plan(make, shape, 1)
    assert plan.groups
    bound = _bound_scratch(plan, monkeypatch)
    scratch_of = {i: a for i, _, a in bound}
    private = [a for _, k, a in bound if getattr(k, "private_scratch", False)]
    for g in plan.groups:
        caller = [scratch_of[i] for i in g.lanes.caller]
        worker = [scratch_of[i] for i in g.lanes.worker]
        for a in caller:
            for b in worker:       # the two lanes' kernels run at the same time
                assert not np.shares_memory(a, b), (g, a.nbytes, b.nbytes)
    # the split convs' column area: only their first parts get it, and it overlaps no
    # lane's scratch (the other part reads it while the caller's lane runs on)
    others = [a for _, k, a in bound if not getattr(k, "private_scratch", False)]
    for p in private:
        assert all(not np.shares_memory(p, o) for o in others)
    # every kernel fits the area it got
    for _, k, a in bound:
        assert k.scratch_bytes <= a.nbytes


@pytest.mark.parametrize("make, shape", [
    (lambda: models.googlenet(), (1, 3, 160, 160)),  # Winograd steps, one in a lane group
    (lambda: nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(64, 96, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(96, 16, 3, padding=2, dilation=2)), (2, 64, 23, 17)),
])
def test_work_memory_lives_in_the_arena_apart_from_the_values_in_use(make, shape, monkeypatch):
    """A kernel's work memory (``Kernel.work_bytes``: Winograd's tile chunk) is a block of the
    arena that no array of its own step, nor of any step of its branch group (the lanes run at
    the same time), overlaps; it is as large as the kernel asked; the outputs stay exact."""
    plan = _checked_plan(make, shape, 2)
    record = {}
    with kernel_threads(2):
        _bound_scratch(plan, monkeypatch, record)
    with_work = [i for i, s in enumerate(plan.steps) if s.kernel.work_bytes]
    assert with_work, "no step asked for work memory: the test checks nothing"
    if plan.groups:
        grouped = {i for g in plan.groups for i in list(g.lanes.caller) + list(g.lanes.worker)}
        assert grouped & set(with_work), "no work memory inside a lane group"
    concurrent = {i: {i} for i in range(len(plan.steps))}
    for g in plan.groups:
        members = set(g.lanes.caller) | set(g.lanes.worker)
        for i in members:
            concurrent[i] = members
    for i in with_work:
        kernel = plan.steps[i].kernel
        work = record[id(kernel)][2]
        assert work is not None and work.nbytes == kernel.work_bytes
        for j in concurrent[i]:
            ins, outs, other = record[id(plan.steps[j].kernel)]
            for a in list(ins) + list(outs) + ([other] if j != i else []):
                if a is not None:
                    assert not np.shares_memory(work, a), (i, j)


def test_memory_report_counts_a_buffer_once():
    base = np.zeros(1000, np.float32)
    views = [base[:10], base.reshape(10, 100), base[::2]]
    raw = bytes(4000)
    ro = np.frombuffer(raw, np.float32)
    found = buffers({"a": views, "b": (ro, ro[5:])}, [lambda: views[0]])
    assert nbytes(found) == base.nbytes + len(raw)
    other = np.ones(7)
    assert nbytes(buffers(views, other)) == base.nbytes + other.nbytes


def _mapped(addr):
    """Whether ``addr`` lies in a mapping of this process (/proc/self/maps)."""
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
            if lo <= addr < hi:
                return True
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="huge-page buffers: Linux")
def test_huge_buffer_is_aligned_exact_writable_and_unmapped_when_freed():
    _info = pytest.importorskip("nnlite._info")
    two_mb = 2 << 20
    for n in (two_mb, two_mb + 1, 5 * two_mb + 4095):
        a = np.frombuffer(_info.HugeBuffer(n), np.uint8)
        b = np.frombuffer(_info.HugeBuffer(n), np.uint8)
        assert a.nbytes == n and a.flags.writeable
        assert a.ctypes.data % two_mb == 0 and b.ctypes.data % two_mb == 0
        a[:] = 7
        b[:] = 9                          # two buffers, no shared bytes
        assert a[0] == a[-1] == 7 and b[-1] == 9
        # the memory report counts exactly n bytes for it (not its mapping's rounding)
        assert nbytes(buffers(a[10:20], a)) == n
        addr = a.ctypes.data
        assert _mapped(addr) and _mapped(addr + n - 1)
        del a
        assert not _mapped(addr) and not _mapped(addr + n - 1)
        del b
    with pytest.raises(MemoryError, match="100 bytes"):
        _info.HugeBuffer(100)             # below one huge page: the caller uses np.empty
    with pytest.raises(ValueError, match="-1"):
        _info.HugeBuffer(-1)


def test_binding_arena_is_page_buffer_memory():
    """A binding's arena of 2 MB or more starts on a 2 MB boundary (huge pages); a smaller one
    is ordinary memory; the values read and write their own bytes either way (the plan's
    results match the model's)."""
    from nnlite._infer import bind
    two_mb = 2 << 20
    for n in (64, two_mb - 64, two_mb, 3 * two_mb + 64):
        a = bind.page_buffer(n)
        assert a.dtype == np.uint8 and a.nbytes == n
        if n >= two_mb and bind._info is not None and sys.platform.startswith("linux"):
            assert a.ctypes.data % two_mb == 0
    net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 1))
    x = np.random.default_rng(0).standard_normal((2, 3, 96, 96)).astype(np.float32)
    want = net(nnlite.Tensor(x)).data
    opt = nnlite.optimize_for_inference(net)
    np.testing.assert_allclose(opt(x).data, want, rtol=1e-4, atol=1e-4)
    plan = next(iter(opt._plans.values()))[0]
    assert plan.arena_bytes >= two_mb
    _, ins, _, _ = opt._frame(plan, ((x.shape, x.dtype.str),))
    arena = ins[0].base
    while isinstance(arena, np.ndarray) and isinstance(arena.base, np.ndarray):
        arena = arena.base
    if bind._info is not None and sys.platform.startswith("linux"):
        assert arena.ctypes.data % two_mb == 0


_STAGES = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import _timing
keep = []

def big_then_free():        # 64 MB touched, then freed: only this stage's peak sees it
    np.ones(16 << 20, np.float32).sum()

def small_kept():           # 16 MB touched and kept
    keep.append(np.ones(4 << 20, np.float32))
(first, second), source = _timing.peak_rss_growth_stages_mb([big_then_free, small_kept])
print(first, second, source)
"""


def test_staged_peak_rss_measures_each_stage_over_one_baseline():
    # a fresh interpreter: heap pages freed by other tests would absorb the allocations
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("VmHWM reset needs /proc/self/clear_refs (Linux)")
    out = subprocess.run([sys.executable, "-c", _STAGES, os.path.join(HERE, "..", "benchmarks")],
                         capture_output=True, text=True, timeout=120, check=True)
    first, second, source = out.stdout.split()
    if source != "VmHWM":
        pytest.skip("clear_refs is not writable here")
    assert float(first) >= 60, out.stdout
    assert 14 <= float(second) < 48, out.stdout   # not the first stage's 64 MB again
