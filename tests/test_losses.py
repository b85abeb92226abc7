"""cross_entropy / nll_loss / mse_loss (functional and modules) vs per-element NumPy loops,
float64 gradchecks, reductions, class weights, ignore_index, label smoothing, probability
targets, error messages, optional PyTorch parity."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from gradcheck import check_grad


# ------------------------------------------------------------------- independent oracle
def _ref_log_softmax_row(row):
    m = max(row)
    return [v - m - math.log(sum(math.exp(u - m) for u in row)) for v in row]


def _ref_cross_entropy(x, t, weight=None, ignore_index=-100, reduction="mean", ls=0.0):
    """Loop over every (sample, position) in plain Python floats, PyTorch's definition."""
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x, t = x[None], np.reshape(t, (1,))
    c = x.shape[1]
    xl = np.moveaxis(x, 1, -1).reshape(-1, c)
    tl = np.reshape(t, -1)
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    losses, smooth, wsum, count = [], [], 0.0, 0
    for row, k in zip(xl, tl):
        if k == ignore_index:
            losses.append(0.0)
            smooth.append(0.0)
            continue
        lp = _ref_log_softmax_row(list(row))
        losses.append(-w[k] * lp[k])
        smooth.append(-sum(w[j] * lp[j] for j in range(c)))
        wsum += w[k]
        count += 1
    losses, smooth = np.array(losses), np.array(smooth)
    if reduction == "none":
        out = (1 - ls) * losses + ls / c * smooth
        return out.reshape(np.shape(t))
    if reduction == "sum":
        return (1 - ls) * losses.sum() + ls / c * smooth.sum()
    return (1 - ls) * losses.sum() / wsum + ls / c * smooth.sum() / wsum


_case = st.tuples(
    st.integers(1, 4),                                     # N
    st.integers(1, 5),                                     # C
    st.lists(st.integers(1, 3), min_size=0, max_size=2),   # spatial dims
)


@given(_case, st.sampled_from(["mean", "sum", "none"]), st.booleans(), st.booleans(),
       st.sampled_from([0.0, 0.25]), st.integers(0, 10_000))
def test_cross_entropy_matches_loop_reference(case, reduction, use_weight, use_ignore, ls,
                                              seed):
    n, c, sp = case
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, size=(n, c, *sp))
    t = rng.integers(0, c, size=(n, *sp))
    if use_ignore:
        t.flat[0] = -100
        if t.size > 1:
            t.flat[-1] = 1 if c > 1 else 0
    w = rng.uniform(0.2, 2, c) if use_weight else None
    y = F.cross_entropy(nnlite.tensor(x), t, weight=w, reduction=reduction, label_smoothing=ls)
    ref = _ref_cross_entropy(x, t, w, -100, reduction, ls)
    assert y.shape == np.shape(ref)
    np.testing.assert_allclose(y.data, ref, rtol=1e-10, atol=1e-12, equal_nan=True)


@given(_case, st.sampled_from(["mean", "sum", "none"]), st.booleans(), st.integers(0, 10_000))
def test_nll_loss_matches_loop_reference(case, reduction, use_weight, seed):
    n, c, sp = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c, *sp))
    t = rng.integers(0, c, size=(n, *sp))
    t.flat[0] = 2 % c                                      # ignore_index inside [0, C)
    w = rng.uniform(0.2, 2, c) if use_weight else np.ones(c)
    y = F.nll_loss(nnlite.tensor(x), nnlite.Tensor(t), weight=w if use_weight else None,
                   ignore_index=2 % c, reduction=reduction)
    xl = np.moveaxis(x, 1, -1).reshape(-1, c)
    per = np.array([0.0 if k == 2 % c else -w[k] * row[k] for row, k in zip(xl, t.reshape(-1))])
    used = np.array([0.0 if k == 2 % c else w[k] for k in t.reshape(-1)])
    ref = {"none": per.reshape(t.shape), "sum": per.sum(),
           "mean": per.sum() / used.sum() if used.sum() else np.nan}[reduction]
    np.testing.assert_allclose(y.data, ref, rtol=1e-12, atol=1e-14, equal_nan=True)


def test_cross_entropy_hand_example():
    # uniform logits: every class has probability 1/C -> loss log(C)
    x = nnlite.tensor(np.zeros((2, 4)))
    assert math.isclose(F.cross_entropy(x, np.array([0, 3])).item(), math.log(4))
    # ls = 1 gives the pure smoothing term; for uniform logits also log(C)
    assert math.isclose(F.cross_entropy(x, np.array([0, 3]), label_smoothing=1.0).item(),
                        math.log(4))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_cross_entropy_gradients_match_central_differences(reduction, ls):
    rng = np.random.default_rng(21)
    x = rng.normal(size=(3, 4, 2))
    t = np.array([[0, 3], [-100, 1], [2, 2]])
    w = rng.uniform(0.5, 2, 4)
    check_grad(lambda a: F.cross_entropy(a, t, reduction=reduction, label_smoothing=ls), [x])
    check_grad(lambda a: F.cross_entropy(a, t, weight=w, reduction=reduction,
                                         label_smoothing=ls), [x])


def test_nll_and_mse_gradients_match_central_differences():
    rng = np.random.default_rng(22)
    x = rng.normal(size=(4, 3))
    t = np.array([2, 0, -100, 1])
    for red in ("mean", "sum", "none"):
        check_grad(lambda a: F.nll_loss(a, t, reduction=red), [x])
        check_grad(lambda a, b: F.mse_loss(a, b, reduction=red), [x, rng.normal(size=(4, 3))])
    check_grad(lambda a, b, w: F.mse_loss(a, b, weight=w),
               [x, rng.normal(size=(4, 3)), rng.uniform(0.5, 1, (4, 3))])


def test_cross_entropy_probability_targets():
    rng = np.random.default_rng(23)
    x = rng.normal(size=(3, 4, 2))
    p = rng.dirichlet(np.ones(4), size=(3, 2)).transpose(0, 2, 1)   # (3, 4, 2), sums to 1
    w = rng.uniform(0.5, 2, 4)
    lp = x - x.max(1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
    for ls in (0.0, 0.3):
        q = p * (1 - ls) + ls / 4
        per = -(lp * q * w[None, :, None]).sum(1)
        y = F.cross_entropy(nnlite.tensor(x), nnlite.tensor(p), weight=w, label_smoothing=ls,
                            reduction="none")
        np.testing.assert_allclose(y.data, per, rtol=1e-12)
        y = F.cross_entropy(nnlite.tensor(x), nnlite.tensor(p), weight=w, label_smoothing=ls)
        np.testing.assert_allclose(y.item(), per.sum() / 6, rtol=1e-12)
    # differentiable in both the logits and the target distribution
    check_grad(lambda a, b: F.cross_entropy(a, b), [x, p])


def test_unbatched_input_and_dtype_preservation():
    x = np.array([1.0, 2.0, 0.5], dtype=np.float32)
    y = F.cross_entropy(nnlite.tensor(x), np.array(1))
    assert y.dtype == np.float32 and y.shape == ()
    np.testing.assert_allclose(y.item(), _ref_cross_entropy(x, 1), rtol=1e-6)
    z = F.nll_loss(nnlite.tensor(x), np.array(2), reduction="none")
    assert z.shape == () and z.item() == -0.5
    x32 = nnlite.tensor(np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32),
                        requires_grad=True)
    loss = F.cross_entropy(x32, np.array([0, 1, 2, 1, 0]))
    loss.backward()
    assert loss.dtype == np.float32 and x32.grad.dtype == np.float32
    assert F.mse_loss(x32, nnlite.tensor(np.zeros((5, 3), np.float32))).dtype == np.float32


def test_all_ignored_and_empty_batch_give_nan_mean_and_zero_sum():
    x = nnlite.tensor(np.zeros((3, 5)))
    t = np.full(3, -100)
    assert np.isnan(F.cross_entropy(x, t).item())
    assert F.cross_entropy(x, t, reduction="sum").item() == 0.0
    e = nnlite.tensor(np.zeros((0, 5)))
    assert np.isnan(F.cross_entropy(e, np.zeros(0, np.int64)).item())
    assert F.cross_entropy(e, np.zeros(0, np.int64), reduction="sum").item() == 0.0


def test_loss_errors_name_the_numbers():
    x = nnlite.tensor(np.zeros((3, 5)))
    with pytest.raises(IndexError, match=r"Target 5 is out of bounds.*\[0, 4\]"):
        F.cross_entropy(x, np.array([0, 5, 1]))
    with pytest.raises(ValueError, match="Target -1 is out of bounds"):
        F.nll_loss(x, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=r"input batch_size \(3\) to match target batch_size "
                                         r"\(2\)"):
        F.cross_entropy(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"expected target size \[3, 2\], got \[3, 3\]"):
        F.nll_loss(nnlite.tensor(np.zeros((3, 5, 2))), np.zeros((3, 3), np.int64))
    with pytest.raises(ValueError, match=r"all 5 classes.*shape: \[4\]"):
        F.cross_entropy(x, np.array([0, 1, 2]), weight=np.ones(4))
    with pytest.raises(TypeError, match=r"float64 with shape \(3,\)"):
        F.nll_loss(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match=r"input's shape \(3, 5\)"):
        F.cross_entropy(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        F.cross_entropy(x, np.array([0, 1, 2]), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0. Got: 1.5"):
        F.cross_entropy(x, np.array([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="ignore_index is not supported"):
        F.cross_entropy(x, np.full((3, 5), 0.2), ignore_index=1)
    with pytest.raises(ValueError, match=r"input shape \(3, 2\) and target shape \(4,\)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            F.mse_loss(nnlite.tensor(np.zeros((3, 2))), nnlite.tensor(np.zeros(4)))
    with pytest.raises(ValueError, match="Weights and input must have the same size"):
        F.mse_loss(x, x, weight=np.ones(5))


def test_mse_loss_matches_numpy_and_warns_on_broadcast():
    rng = np.random.default_rng(24)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    d2 = (a - b) ** 2
    np.testing.assert_allclose(F.mse_loss(nnlite.tensor(a), nnlite.tensor(b)).item(), d2.mean())
    np.testing.assert_allclose(F.mse_loss(nnlite.tensor(a), nnlite.tensor(b), reduction="sum")
                               .item(), d2.sum())
    np.testing.assert_allclose(F.mse_loss(nnlite.tensor(a), nnlite.tensor(b),
                                          reduction="none").data, d2)
    with pytest.warns(UserWarning, match=r"target size \(3,\) that is different"):
        y = F.mse_loss(nnlite.tensor(a), nnlite.tensor(b[0]))
    np.testing.assert_allclose(y.item(), ((a - b[0]) ** 2).mean())


def test_legacy_size_average_reduce_flags():
    x, t = nnlite.tensor(np.random.default_rng(0).normal(size=(4, 3))), np.array([0, 1, 2, 0])
    with pytest.warns(UserWarning, match="reduction='sum'"):
        s = F.cross_entropy(x, t, size_average=False)
    np.testing.assert_allclose(s.item(), F.cross_entropy(x, t, reduction="sum").item())
    with pytest.warns(UserWarning, match="reduction='none'"):
        assert nn.NLLLoss(reduce=False).reduction == "none"


def test_loss_modules_match_functionals_and_register_weight():
    rng = np.random.default_rng(25)
    x, t, w = rng.normal(size=(4, 3)), np.array([0, 2, 1, -1]), np.array([1.0, 2.0, 0.5])
    crit = nn.CrossEntropyLoss(weight=nnlite.tensor(w), ignore_index=-1, label_smoothing=0.1)
    assert (crit.ignore_index, crit.label_smoothing, crit.reduction) == (-1, 0.1, "mean")
    np.testing.assert_allclose(crit(nnlite.tensor(x), t).item(),
                               _ref_cross_entropy(x, t, w, -1, "mean", 0.1), rtol=1e-12)
    assert list(crit.state_dict()) == ["weight"]
    assert list(nn.CrossEntropyLoss().state_dict()) == []
    assert repr(crit) == "CrossEntropyLoss()"
    nll = nn.NLLLoss(reduction="sum")
    np.testing.assert_allclose(nll(nnlite.tensor(x), np.array([0, 2, 1, 1])).item(),
                               -(x[0, 0] + x[1, 2] + x[2, 1] + x[3, 1]))
    mse = nn.MSELoss(reduction="none")
    assert mse(nnlite.tensor(x), nnlite.tensor(x)).shape == (4, 3)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match_torch(reduction):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    rng = np.random.default_rng(26)
    x = rng.normal(0, 2, size=(5, 4, 3))
    t = rng.integers(0, 4, size=(5, 3))
    t[0, 0] = -100
    w = rng.uniform(0.5, 2, 4)
    g = None
    for ls in (0.0, 0.3):
        for ww in (None, w):
            xn, xt = nnlite.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
            yn = F.cross_entropy(xn, t, weight=ww, reduction=reduction, label_smoothing=ls)
            yt = tf.cross_entropy(xt, torch.tensor(t), weight=None if ww is None else
                                  torch.tensor(ww), reduction=reduction, label_smoothing=ls)
            g = rng.normal(size=yt.shape)
            yn.backward(g)
            yt.backward(torch.tensor(g))
            np.testing.assert_allclose(yn.data, yt.detach().numpy(), rtol=1e-12)
            np.testing.assert_allclose(xn.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-15)
    p = rng.dirichlet(np.ones(4), size=5)
    xn, xt = nnlite.tensor(x[:, :, 0], requires_grad=True), torch.tensor(x[:, :, 0],
                                                                         requires_grad=True)
    yn = F.cross_entropy(xn, nnlite.tensor(p), weight=w, reduction=reduction, label_smoothing=0.1)
    yt = tf.cross_entropy(xt, torch.tensor(p), weight=torch.tensor(w), reduction=reduction,
                          label_smoothing=0.1)
    np.testing.assert_allclose(yn.data, yt.detach().numpy(), rtol=1e-12)
    yb = rng.normal(size=(5, 4, 3))
    np.testing.assert_allclose(F.mse_loss(nnlite.tensor(x), nnlite.tensor(yb),
                                          reduction=reduction).data,
                               tf.mse_loss(torch.tensor(x), torch.tensor(yb),
                                           reduction=reduction).numpy(), rtol=1e-12)
