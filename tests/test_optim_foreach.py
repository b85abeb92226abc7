"""The optimisers' foreach update (a param group's small parameters packed into flat chunks,
nnlite/optim.py) against the per-parameter loop (``foreach=False``, bitwise), the float64
reference loops of test_optim.py, and torch.optim on groups of many parameters; chunk
boundaries, parameters without a gradient on some steps, loaded state and subclasses."""
import copy

import numpy as np
import pytest

import nnlite.optim as optim
from nnlite.nn import Parameter

from test_optim import _ADAM_CASES, _SGD_CASES, _ref_adam, _ref_sgd

# a scalar-like, a row, matrices, a 4-D conv weight: odd sizes that straddle small chunks
_SHAPES = [(1,), (5,), (3, 4), (7, 2, 3, 3), (2, 9), (11,)]


def _params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(dtype) for s in _SHAPES]


def _grads(steps, seed=1, skip=()):
    """grads[t][i] (None where (t, i) is in ``skip``: that parameter has no gradient then)."""
    rng = np.random.default_rng(seed)
    return [[None if (t, i) in skip else rng.normal(size=s) for i, s in enumerate(_SHAPES)]
            for t in range(steps)]


def _train(make, p0, grads, dtype, check=None):
    ps = [Parameter(a.copy()) for a in p0]
    opt = make(ps)
    for step in grads:
        opt.zero_grad()
        for p, g in zip(ps, step):
            p.grad = None if g is None else g.astype(dtype)
        opt.step()
        if check is not None:
            check(opt, ps)
    return ps, opt


def _both(cls, kw, dtype, grads, chunk, monkeypatch):
    """Parameters after the foreach and the loop run (chunks of at most ``chunk`` elements)."""
    monkeypatch.setattr(optim, "_FOREACH_CHUNK", chunk)
    p0 = _params(dtype)
    fast, ofast = _train(lambda ps: cls(ps, **kw), p0, grads, dtype)
    loop, _ = _train(lambda ps: cls(ps, foreach=False, **kw), p0, grads, dtype)
    return p0, fast, loop, ofast


_CASES = ([(optim.SGD, kw) for kw in _SGD_CASES] + [(optim.Adam, kw) for kw in _ADAM_CASES]
          + [(optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
             (optim.Adam, dict(lr=0.01, weight_decay=0.05, decoupled_weight_decay=True,
                               amsgrad=True))])


@pytest.mark.parametrize("chunk", [1 << 18, 16, 1])
@pytest.mark.parametrize("cls,kw", _CASES)
def test_foreach_matches_the_loop_bitwise_and_the_reference(cls, kw, chunk, monkeypatch):
    dtype = np.float32
    grads = _grads(5)
    p0, fast, loop, opt = _both(cls, kw, dtype, grads, chunk, monkeypatch)
    for a, b in zip(fast, loop):
        np.testing.assert_array_equal(a.data, b.data)
    assert opt._chunks                  # the foreach update ran
    if chunk == 16:   # several chunks, some of one parameter
        kinds = {c.single for c in opt._group_chunks(opt.param_groups[0])}
        assert kinds == {True, False}
    ref = _ref_sgd if cls is optim.SGD else _ref_adam
    kw = dict(kw)
    if cls is optim.AdamW or kw.pop("decoupled_weight_decay", False):
        kw["decoupled"] = True
    for i, a in enumerate(p0):
        want = ref(a, [g[i].astype(dtype) for g in grads], **kw)
        np.testing.assert_allclose(fast[i].data, want, rtol=3e-5, atol=3e-6)


@pytest.mark.parametrize("cls,kw", [(optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.1)),
                                    (optim.Adam, dict(lr=0.01, amsgrad=True))])
def test_missing_gradients_fall_back_then_foreach_resumes(cls, kw, monkeypatch):
    # step 1: parameter 2 has no gradient (the loop runs; its Adam step count lags, so Adam
    # keeps looping); both must equal the loop throughout
    dtype = np.float64
    grads = _grads(6, skip={(1, 2), (3, 0)})
    _, fast, loop, _ = _both(cls, kw, dtype, grads, 16, monkeypatch)
    for a, b in zip(fast, loop):
        np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_round_trip_and_state_views(monkeypatch):
    monkeypatch.setattr(optim, "_FOREACH_CHUNK", 40)
    dtype = np.float32
    grads = _grads(6)
    p0 = _params(dtype)
    full, _ = _train(lambda ps: optim.Adam(ps, lr=0.02), p0, grads, dtype)

    def check(opt, ps):
        # the state dict holds the parameters' own (shaped) state, updated in place
        st = opt.state[ps[3]]
        assert st["exp_avg"].shape == ps[3].shape and st["step"] >= 1
    half, opt = _train(lambda ps: optim.Adam(ps, lr=0.02), p0, grads[:3], dtype, check)
    saved = copy.deepcopy(opt.state_dict())
    ps = [Parameter(p.data.copy()) for p in half]
    opt2 = optim.Adam(ps, lr=0.02)
    opt2.load_state_dict(saved)
    for step in grads[3:]:
        for p, g in zip(ps, step):
            p.grad = g.astype(dtype)
        opt2.step()
    for a, b in zip(ps, full):
        np.testing.assert_array_equal(a.data, b.data)
    # editing the state in place reaches the next update (the dict holds views)
    before = ps[1].data.copy()
    for st in opt2.state.values():
        st["exp_avg"][...] = 0
        st["exp_avg_sq"][...] = 1
    for p in ps:
        p.grad = np.zeros_like(p.data)
    opt2.step()
    np.testing.assert_allclose(ps[1].data, before, atol=0)


def test_a_subclass_overriding_the_update_is_used():
    calls = []

    class Logged(optim.SGD):
        def _update(self, p, grad, group, state):
            calls.append(p.shape)
            super()._update(p, grad, group, state)

    ps = [Parameter(a) for a in _params(np.float64)]
    opt = Logged(ps, lr=0.1)
    for p in ps:
        p.grad = np.ones_like(p.data)
    opt.step()
    assert calls == [p.shape for p in ps]


@pytest.mark.torch
@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.05, momentum=0.9, weight_decay=5e-4,
                                                  nesterov=True)),
                                     ("Adam", dict(lr=0.01, weight_decay=0.01)),
                                     ("AdamW", dict(lr=0.01, amsgrad=True))])
def test_foreach_groups_match_torch(name, kw, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(optim, "_FOREACH_CHUNK", 50)
    p0 = _params(np.float32)
    grads = _grads(8)
    ours = [Parameter(a.copy()) for a in p0]
    theirs = [torch.nn.Parameter(torch.tensor(a)) for a in p0]
    on = getattr(optim, name)([{"params": ours[:4]}, {"params": ours[4:], "lr": 0.02}], **kw)
    ot = getattr(torch.optim, name)([{"params": theirs[:4]}, {"params": theirs[4:], "lr": 0.02}],
                                    foreach=False, **kw)
    for step in grads:
        for p, q, g in zip(ours, theirs, step):
            p.grad = g.astype(np.float32)
            q.grad = torch.tensor(g.astype(np.float32))
        on.step()
        ot.step()
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_a_cast_model_keeps_the_loop_semantics(monkeypatch):
    # parameters cast to float64 after steps in float32: the state arrays no longer fit the
    # group's dtype, so the update runs the loop (as it did before foreach), like foreach=False
    monkeypatch.setattr(optim, "_FOREACH_CHUNK", 40)
    grads = _grads(4)
    out = []
    for foreach in (None, False):
        ps = [Parameter(a.copy()) for a in _params(np.float32)]
        opt = optim.Adam(ps, lr=0.01, foreach=foreach)
        for t, step in enumerate(grads):
            if t == 2:
                for p in ps:
                    p.data = p.data.astype(np.float64)
            for p, g in zip(ps, step):
                p.grad = g.astype(p.dtype)
            opt.step()
        out.append([p.data for p in ps])
    for a, b in zip(*out):
        assert a.dtype == b.dtype == np.float64
        np.testing.assert_array_equal(a, b)
