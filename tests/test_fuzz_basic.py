"""Fuzz: the remaining public ops and modules -- linear, activations, softmax, dropout,
batch_norm, losses, nn layers and blocks, and ``optimize_for_inference`` on random models.

Valid calls are compared with NumPy formulas written here (or, for the inference engine, with
the plain module in eval mode); invalid shapes, dims, dtypes and arguments must raise
ValueError/TypeError. Non-finite inputs must not raise anything else.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from fuzzing import (FAST, LAYOUTS, Failed, fuzz_settings, hang_guard, make_array,  # noqa: F401
                     memory_cap, on_backend, outcome, rngs)

pytestmark = pytest.mark.fuzz

DTYPES = (np.float32, np.float64)


def _tol(dtype):
    return (1e-5, 1e-5) if dtype == np.float32 else (1e-11, 1e-11)


@st.composite
def tensors(draw, min_dims=1, max_dims=4):
    rng = draw(rngs())
    nd = draw(st.integers(min_dims, max_dims), label="ndim")
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=nd, max_size=nd), label="shape"))
    dtype = draw(st.sampled_from(DTYPES), label="dtype")
    special = draw(st.sampled_from([0.0, 0.0, 0.0, 0.2]), label="nan_inf")
    x = make_array(rng, shape, dtype, draw(st.sampled_from(LAYOUTS), label="layout"), special)
    return x, rng


def _softmax(x, d):
    e = np.exp(x - x.max(axis=d, keepdims=True))
    return e / e.sum(axis=d, keepdims=True)


ELEMENTWISE = {
    "relu": (F.relu, lambda x: np.maximum(x, 0)),
    "relu6": (F.relu6, lambda x: np.clip(x, 0, 6)),
    "hardtanh": (F.hardtanh, lambda x: np.clip(x, -1, 1)),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (F.tanh, np.tanh),
}


@fuzz_settings(100)
@given(case=tensors(), name=st.sampled_from(sorted(ELEMENTWISE)))
def test_fuzz_elementwise(case, name):
    x, _ = case
    fn, oracle = ELEMENTWISE[name]
    y = outcome(fn, x)
    assert not isinstance(y, Failed), y
    with np.errstate(all="ignore"):
        want = oracle(x.astype(np.float64)).astype(x.dtype)
    np.testing.assert_allclose(y.data, want, *_tol(x.dtype))
    assert y.dtype == x.dtype


@fuzz_settings(100)
@given(case=tensors(), dim=st.one_of(st.integers(-5, 4), st.sampled_from([None, 1.0, "0"])),
       log=st.booleans())
def test_fuzz_softmax(case, dim, log):
    x, _ = case
    fn = F.log_softmax if log else F.softmax
    y = outcome(fn, x, dim=dim)
    if isinstance(y, Failed) or not np.isfinite(x).all() or dim is None or x.size == 0:
        return
    with np.errstate(all="ignore"):
        want = _softmax(x.astype(np.float64), dim)
        want = np.log(want) if log else want
    np.testing.assert_allclose(y.data, want.astype(x.dtype), *_tol(x.dtype))


@st.composite
def linear_cases(draw):
    rng = draw(rngs())
    dtype = draw(st.sampled_from(DTYPES), label="dtype")
    lead = tuple(draw(st.lists(st.integers(0, 3), max_size=2), label="lead"))
    fin, fout = draw(st.integers(0, 5), label="in"), draw(st.integers(0, 5), label="out")
    x = make_array(rng, lead + (fin,), dtype, draw(st.sampled_from(LAYOUTS)))
    w = make_array(rng, (fout, fin), dtype, draw(st.sampled_from(LAYOUTS)))
    b = rng.uniform(-1, 1, fout).astype(dtype) if draw(st.booleans()) else None
    valid = True
    bad = draw(st.integers(0, 6), label="bad")
    if bad == 0:
        w = w.T.copy() if fin != fout else w[:, :0]
        valid = fin == fout == 0
    elif bad == 1:
        b = np.zeros(fout + 1, dtype)
        valid = False
    elif bad == 2:
        w = w.astype(np.float32 if dtype == np.float64 else np.float64)
        valid = False
    elif bad == 3:
        x = x.astype(np.int64)
        valid = False
    return x, w, b, valid


@fuzz_settings(100)
@given(case=linear_cases())
def test_fuzz_linear(case):
    x, w, b, valid = case
    for backend in FAST:
        y = outcome(on_backend, backend, F.linear, x, w, b)
        if valid:
            assert not isinstance(y, Failed), y
            want = x.astype(np.float64) @ w.astype(np.float64).T + (0 if b is None else b)
            np.testing.assert_allclose(y.data, want.astype(x.dtype), 1e-5, 1e-5)


@fuzz_settings(100)
@given(case=tensors(2, 4), training=st.booleans(), affine=st.booleans(),
       eps=st.sampled_from([1e-5, 0.0, 1e-3]), momentum=st.sampled_from([0.1, None, 1.0]))
def test_fuzz_batch_norm(case, training, affine, eps, momentum):
    x, rng = case
    c = x.shape[1]
    rm = rng.uniform(-1, 1, c).astype(x.dtype)
    rv = rng.uniform(0.5, 2, c).astype(x.dtype)
    w = rng.uniform(0.5, 2, c).astype(x.dtype) if affine else None
    b = rng.uniform(-1, 1, c).astype(x.dtype) if affine else None
    y = outcome(F.batch_norm, x, rm.copy(), rv.copy(), w, b, training,
                0.1 if momentum is None else momentum, eps)
    if isinstance(y, Failed) or not np.isfinite(x).all():
        return
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, c) + (1,) * (x.ndim - 2)
    xd = x.astype(np.float64)
    if training:
        if xd.size == 0 or xd.size // max(c, 1) <= 1:
            return
        mu, var = xd.mean(axis=axes), xd.var(axis=axes)
    else:
        mu, var = rm.astype(np.float64), rv.astype(np.float64)
    with np.errstate(all="ignore"):
        want = (xd - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
        if affine:
            want = want * w.reshape(shape) + b.reshape(shape)
    if not np.isfinite(want).all():
        return
    np.testing.assert_allclose(y.data, want.astype(x.dtype), 1e-4, 1e-4)


@st.composite
def loss_cases(draw):
    rng = draw(rngs())
    dtype = draw(st.sampled_from(DTYPES), label="dtype")
    n, c = draw(st.integers(0, 4), label="N"), draw(st.integers(1, 4), label="C")
    x = make_array(rng, (n, c), dtype, draw(st.sampled_from(LAYOUTS)))
    t = rng.integers(0, c, n)
    bad = draw(st.integers(0, 5), label="bad")
    if bad == 0 and n:
        t[0] = draw(st.sampled_from([c, -5, 2 ** 40]))
    elif bad == 1:
        t = t.astype(np.float32)
    elif bad == 2:
        t = t[:-1] if n else np.zeros(1, int)
    reduction = draw(st.sampled_from(["mean", "sum", "none", "bogus"]), label="reduction")
    return x, t, reduction, bad > 2 and reduction != "bogus"


@fuzz_settings(100)
@given(case=loss_cases(), which=st.sampled_from(["ce", "nll", "mse"]))
def test_fuzz_losses(case, which):
    x, t, reduction, valid = case
    if which == "ce":
        res = outcome(F.cross_entropy, x, t, reduction=reduction)
    elif which == "nll":
        res = outcome(F.nll_loss, x, t, reduction=reduction)
    else:
        res = outcome(F.mse_loss, x, np.zeros_like(x) if valid else t, reduction=reduction)
    if not valid or isinstance(res, Failed) or len(t) == 0:
        if valid and len(t):
            raise AssertionError(res)
        return
    xd = x.astype(np.float64)
    if which == "mse":
        per = xd ** 2
    else:
        logp = np.log(_softmax(xd, 1)) if which == "ce" else xd
        per = -logp[np.arange(len(t)), t]
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    np.testing.assert_allclose(res.data, np.asarray(want, x.dtype), 1e-5, 1e-5)


@fuzz_settings(60)
@given(case=tensors(1, 4), p=st.sampled_from([0.0, 0.5, 1.0, -0.1, 1.5, "0.5"]),
       training=st.booleans())
def test_fuzz_dropout(case, p, training):
    x, _ = case
    nnlite.manual_seed(0)
    y = outcome(F.dropout, x, p, training)
    if isinstance(y, Failed):
        assert not (isinstance(p, float) and 0 <= p <= 1), y
        return
    if not training or p == 0.0:
        np.testing.assert_array_equal(y.data, x)
    elif p == 1.0:
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(y.data, x * 0)  # as PyTorch: NaN/inf * 0 = NaN


# ------------------------------------------------------------------- modules and blocks
BLOCKS = [
    lambda c: nn.BasicConv2d(c, 4, kernel_size=3, padding=1),
    lambda c: nn.Inception(c, 2, 2, 3, 1, 2, 2),
    lambda c: nn.BasicBlock(c, c),
    lambda c: nn.Bottleneck(c, 2, stride=2, downsample=nn.Sequential(
        nn.Conv2d(c, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))),
    lambda c: nn.DepthwiseSeparableConv2d(c, 5, 3, padding=1),
    lambda c: nn.InvertedResidual(c, c, 1, 2),
    lambda c: nn.XceptionBlock(c, 4, reps=2, stride=2),
    lambda c: nn.StackedConv3x3(c, 4),
]


@fuzz_settings(40)
@given(block=st.sampled_from(range(len(BLOCKS))), c=st.integers(1, 4),
       hw=st.tuples(st.integers(1, 9), st.integers(1, 9)), n=st.integers(0, 2),
       backend=st.sampled_from(FAST))
def test_fuzz_blocks(block, c, hw, n, backend, memory_cap):  # noqa: F811
    """Blocks on odd sizes: a result of the right dtype (and a backward), or ValueError."""
    nnlite.manual_seed(0)
    mod = outcome(BLOCKS[block], c)
    if isinstance(mod, Failed):
        return
    x = nnlite.tensor(np.random.default_rng(0).standard_normal((n, c) + hw).astype(np.float32),
                      requires_grad=True)

    def run():
        y = mod(x)
        if y.data.size:
            y.sum().backward()
        return y

    y = outcome(on_backend, backend, run)
    if not isinstance(y, Failed):
        assert y.dtype == np.float32 and y.shape[0] == n


def _random_model(draw):
    layers, c, h = [], 3, 9
    for i in range(draw(st.integers(1, 5), label="depth")):
        kind = draw(st.sampled_from(["conv", "dw", "bn", "relu", "relu6", "max", "avg",
                                     "convT"]), label=f"layer{i}")
        if kind == "conv":
            f = draw(st.integers(1, 6))
            k = draw(st.sampled_from([1, 3]))
            layers.append(nn.Conv2d(c, f, k, padding=k // 2, stride=draw(st.sampled_from([1, 2])),
                                    bias=draw(st.booleans())))
            c = f
        elif kind == "dw":
            layers.append(nn.Conv2d(c, c, 3, padding=1, groups=c))
        elif kind == "bn":
            bn = nn.BatchNorm2d(c)
            bn.running_mean.data[...] = np.linspace(-1, 1, c)
            bn.running_var.data[...] = np.linspace(0.5, 2, c)
            layers.append(bn)
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "relu6":
            layers.append(nn.ReLU6())
        elif kind == "max":
            layers.append(nn.MaxPool2d(3, stride=1, padding=1))
        elif kind == "avg":
            layers.append(nn.AvgPool2d(3, stride=1, padding=1))
        else:
            layers.append(nn.ConvTranspose2d(c, 2, 2, stride=2))
            c = 2
    layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * c, 3)]
    return nn.Sequential(*layers)


@fuzz_settings(40)
@given(data=st.data(), n=st.integers(1, 3), dtype=st.sampled_from(DTYPES))
def test_fuzz_optimize_for_inference(data, n, dtype):
    """The fused, buffer-reusing inference plan equals the plain module in eval mode."""
    nnlite.manual_seed(data.draw(st.integers(0, 1000), label="seed"))
    model = _random_model(data.draw)
    if dtype == np.float64:
        for p in model.parameters():
            p.data = p.data.astype(np.float64)
        for m in model.modules():
            for k, b in list(getattr(m, "_buffers", {}).items()):
                if b is not None and b.data.dtype.kind == "f":
                    b.data = b.data.astype(np.float64)
    model.eval()
    x = np.random.default_rng(n).standard_normal((n, 3, 9, 9)).astype(dtype)
    with nnlite.no_grad():
        want = model(x).data
    fast = nnlite.optimize_for_inference(model)
    got = fast(x).data
    got2 = fast(x).data  # a second call reuses the buffers of the compiled plan
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got, got2)
