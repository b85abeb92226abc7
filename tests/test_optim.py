"""SGD / Adam / AdamW vs hand-written NumPy update loops (several steps, param groups, dtypes),
zero_grad, closures, state_dict round trip, argument errors, LR schedulers; optional parity with
torch.optim."""
import math

import numpy as np
import pytest

import nnlite
import nnlite.optim as optim
from nnlite.nn import Parameter
from nnlite.optim.lr_scheduler import CosineAnnealingLR, StepLR


# -------------------------------------------------------------- NumPy reference updates
def _ref_sgd(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
             maximize=False):
    p = p.astype(np.float64).copy()
    buf = None
    for g in grads:
        g = -g if maximize else g.astype(np.float64)
        g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def _ref_adam(p, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
              decoupled=False, maximize=False):
    b1, b2 = betas
    p = p.astype(np.float64).copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    vmax = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = -g if maximize else g.astype(np.float64)
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        mhat = m / (1 - b1 ** t)
        vhat = (vmax if amsgrad else v) / (1 - b2 ** t)
        p = p - lr * mhat / (np.sqrt(vhat) + eps)
    return p


def _run(make_opt, p0, grads):
    p = Parameter(p0.copy())
    opt = make_opt([p])
    for g in grads:
        opt.zero_grad()
        p.grad = g.astype(p.dtype)
        opt.step()
    return p


_SGD_CASES = [dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9,
              dampening=0.5, weight_decay=0.1), dict(lr=0.05, momentum=0.8, nesterov=True),
              dict(lr=0.05, momentum=0.5, maximize=True, weight_decay=0.01)]
_ADAM_CASES = [dict(lr=0.01), dict(lr=0.02, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1),
               dict(lr=0.01, amsgrad=True), dict(lr=0.01, betas=(0.3, 0.5), maximize=True)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", _SGD_CASES)
def test_sgd_matches_reference_loop(kw, dtype):
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(3, 4)).astype(dtype)
    grads = [rng.normal(size=(3, 4)) for _ in range(6)]
    p = _run(lambda ps: optim.SGD(ps, **kw), p0, grads)
    assert p.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(p.data, _ref_sgd(p0, [g.astype(dtype) for g in grads], **kw),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", _ADAM_CASES)
@pytest.mark.parametrize("cls", ["Adam", "AdamW"])
def test_adam_and_adamw_match_reference_loop(cls, kw, dtype):
    rng = np.random.default_rng(1)
    p0 = rng.normal(size=(5,)).astype(dtype)
    grads = [rng.normal(size=5) for _ in range(7)]
    kw = dict(kw)
    if cls == "AdamW":
        kw.setdefault("weight_decay", 1e-2)
    p = _run(lambda ps: getattr(optim, cls)(ps, **kw), p0, grads)
    ref = _ref_adam(p0, [g.astype(dtype) for g in grads], decoupled=cls == "AdamW", **kw)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(p.data, ref, rtol=tol, atol=tol)


def test_first_adam_step_moves_each_weight_by_lr():
    # bias correction: step 1 gives m_hat = g, v_hat = g^2 -> |delta| = lr * |g| / (|g| + eps)
    p = Parameter(np.zeros(3))
    opt = optim.Adam([p], lr=0.1, eps=0.0)
    p.grad = np.array([3.0, -0.5, 1e-3])
    opt.step()
    np.testing.assert_allclose(p.data, [-0.1, 0.1, -0.1])


def test_sgd_first_momentum_step_uses_the_raw_gradient():
    p = Parameter(np.zeros(2))
    opt = optim.SGD([p], lr=1.0, momentum=0.9, dampening=0.5)
    p.grad = np.array([1.0, 2.0])
    opt.step()                                       # buf = g (no dampening on step 1)
    np.testing.assert_allclose(p.data, [-1.0, -2.0])
    opt.step()                                       # buf = 0.9 * g + 0.5 * g
    np.testing.assert_allclose(p.data, [-1.0 - 1.4, -2.0 - 2.8])


def test_param_groups_use_their_own_options_and_skip_missing_grads():
    a, b, c = Parameter(np.ones(2)), Parameter(np.ones(2)), Parameter(np.ones(2))
    opt = optim.SGD([{"params": [a]}, {"params": [b, c], "lr": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["momentum"] == 0
    a.grad = np.ones(2)
    b.grad = np.ones(2)
    opt.step()
    np.testing.assert_allclose(a.data, 0.9)
    np.testing.assert_allclose(b.data, 0.5)
    np.testing.assert_allclose(c.data, 1.0)           # no grad: untouched


def test_zero_grad_and_closure():
    p = Parameter(np.array([2.0]))
    opt = optim.SGD([p], lr=0.25)
    p.grad = np.array([5.0])
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad, [0.0])
    opt.zero_grad()
    assert p.grad is None

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 4.0
    np.testing.assert_allclose(p.data, [1.0])         # 2 - 0.25 * 4


def test_training_a_model_with_named_parameters():
    lin = nnlite.nn.Linear(3, 1).double()
    opt = optim.Adam(lin.named_parameters(), lr=0.05)
    assert opt.param_groups[0]["param_names"] == ["weight", "bias"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3
    for _ in range(300):
        opt.zero_grad()
        loss = nnlite.nn.functional.mse_loss(lin(nnlite.tensor(x)).reshape(32), nnlite.tensor(y))
        loss.backward()
        opt.step()
    assert loss.item() < 1e-4


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(3)
    p0 = rng.normal(size=4)
    grads = [rng.normal(size=4) for _ in range(6)]
    p1 = Parameter(p0.copy())
    o1 = optim.Adam([p1], lr=0.01, amsgrad=True)
    for g in grads[:3]:
        p1.grad = g.copy()
        o1.step()
    sd = o1.state_dict()
    assert sd["param_groups"][0]["params"] == [0]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    p2 = Parameter(p1.data.copy())
    o2 = optim.Adam([p2], lr=0.5)
    o2.load_state_dict(sd)
    assert o2.param_groups[0]["lr"] == 0.01 and o2.param_groups[0]["amsgrad"]
    sd["state"][0]["exp_avg"][...] = 0               # loaded state is a copy
    for g in grads[3:]:
        p1.grad, p2.grad = g.copy(), g.copy()
        o1.step()
        o2.step()
    np.testing.assert_array_equal(p1.data, p2.data)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optim.Adam([{"params": [p2]}, {"params": [Parameter(np.ones(1))]}]).load_state_dict(
            o1.state_dict())


def test_optimizer_argument_errors():
    p = Parameter(np.ones(2))
    with pytest.raises(ValueError, match="Invalid learning rate: -0.1"):
        optim.SGD([p], lr=-0.1)
    with pytest.raises(ValueError, match="Invalid momentum value: -1"):
        optim.SGD([p], lr=0.1, momentum=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero "
                                         "dampening"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1: 1.0"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Invalid epsilon value: -1"):
        optim.AdamW([p], eps=-1)
    with pytest.raises(ValueError, match="Invalid weight_decay value: -0.5"):
        optim.Adam([p], weight_decay=-0.5)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Tensors or dicts"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(TypeError, match=r"can only optimize Tensors.*index 1\) is ndarray"):
        optim.SGD([p, np.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)


def test_optimizer_repr_lists_groups():
    text = repr(optim.SGD([Parameter(np.ones(1))], lr=0.1, momentum=0.9))
    assert text.startswith("SGD (\nParameter Group 0\n    dampening: 0\n")
    assert "    lr: 0.1\n" in text and "    momentum: 0.9\n" in text


# ------------------------------------------------------------------------- schedulers
def test_step_lr_and_cosine_annealing_closed_forms():
    opt = optim.SGD([Parameter(np.ones(1))], lr=0.8)
    sched = StepLR(opt, step_size=3, gamma=0.5)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(8):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    np.testing.assert_allclose(lrs, [0.8 * 0.5 ** (e // 3) for e in range(9)])

    opt = optim.SGD([Parameter(np.ones(1))], lr=1.0)
    sched = CosineAnnealingLR(opt, T_max=5, eta_min=0.1)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(5):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    ref = [0.1 + 0.9 * (1 + math.cos(math.pi * e / 5)) / 2 for e in range(6)]
    np.testing.assert_allclose(lrs, ref, rtol=1e-12)
    assert sched.state_dict()["last_epoch"] == 5 and "optimizer" not in sched.state_dict()


def test_scheduler_errors():
    opt = optim.SGD([Parameter(np.ones(1))], lr=0.1)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        StepLR(object(), 2)
    with pytest.raises(KeyError, match="initial_lr"):
        StepLR(opt, 2, last_epoch=3)
    with pytest.raises(ValueError, match="T_max must be a positive int"):
        CosineAnnealingLR(opt, T_max=0)


# ------------------------------------------------------------------------ torch parity
@pytest.mark.torch
@pytest.mark.parametrize("name, kw", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True,
                                                   weight_decay=0.01)),
                                      ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
                                      ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
                                      ("AdamW", dict(lr=0.01, betas=(0.3, 0.9)))])
def test_optimizers_match_torch(name, kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    p0, q0 = rng.normal(size=(3, 4)), rng.normal(size=5)
    pn, qn = Parameter(p0.copy()), Parameter(q0.copy())
    pt, qt = torch.nn.Parameter(torch.tensor(p0)), torch.nn.Parameter(torch.tensor(q0))
    on = getattr(optim, name)([{"params": [pn]}, {"params": [qn], "lr": 0.05}], **kw)
    ot = getattr(torch.optim, name)([{"params": [pt]}, {"params": [qt], "lr": 0.05}], **kw)
    for _ in range(5):
        gp, gq = rng.normal(size=p0.shape), rng.normal(size=q0.shape)
        pn.grad, qn.grad = gp.copy(), gq.copy()
        pt.grad, qt.grad = torch.tensor(gp), torch.tensor(gq)
        on.step()
        ot.step()
    np.testing.assert_allclose(pn.data, pt.detach().numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(qn.data, qt.detach().numpy(), rtol=1e-13, atol=1e-15)


@pytest.mark.torch
def test_schedulers_match_torch():
    torch = pytest.importorskip("torch")
    for cls, kw in [("StepLR", dict(step_size=3, gamma=0.5)),
                    ("CosineAnnealingLR", dict(T_max=4, eta_min=0.01))]:
        on = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
        ot = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sn = getattr(optim.lr_scheduler, cls)(on, **kw)
        st = getattr(torch.optim.lr_scheduler, cls)(ot, **kw)
        for _ in range(12):
            on.step()
            ot.step()
            sn.step()
            st.step()
            assert sn.get_last_lr() == pytest.approx(st.get_last_lr(), rel=1e-14)


@pytest.mark.torch
def test_adam_continues_from_a_torch_optimizer_state_dict():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    pt = torch.nn.Parameter(torch.tensor(rng.normal(size=3)))
    ot = torch.optim.Adam([pt], lr=0.1, amsgrad=True)
    for _ in range(3):
        pt.grad = torch.tensor(rng.normal(size=3))
        ot.step()
    pn = Parameter(pt.detach().numpy().copy())
    on = optim.Adam([pn], lr=0.5)
    on.load_state_dict(ot.state_dict())               # torch tensors, float 'step'
    assert on.param_groups[0]["lr"] == 0.1 and on.state[pn]["step"] == 3
    for _ in range(3):
        g = rng.normal(size=3)
        pt.grad, pn.grad = torch.tensor(g), g.copy()
        ot.step()
        on.step()
    np.testing.assert_allclose(pn.data, pt.detach().numpy(), rtol=1e-13, atol=1e-15)
