"""Activations and erf: the scalar-math oracles of nnlite/kernels/activation_reference.py,
float64 finite differences, PyTorch parity (forward and backward, float32 and float64, including
the kinks), modules and bad arguments."""
import math
from functools import partial

import numpy as np
import pytest

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from gradcheck import check_grad
from nnlite.kernels import activation_reference as A


# name -> (nnlite call, scalar oracle from nnlite/kernels/activation_reference.py)
ORACLES = {
    "leaky_relu": (lambda t: F.leaky_relu(t, 0.2), partial(A.leaky_relu, negative_slope=0.2)),
    "elu": (lambda t: F.elu(t, 0.7), partial(A.elu, alpha=0.7)),
    "selu": (F.selu, A.selu),
    "celu": (lambda t: F.celu(t, 1.3), partial(A.celu, alpha=1.3)),
    "gelu": (F.gelu, A.gelu),
    "gelu_tanh": (lambda t: F.gelu(t, approximate="tanh"), partial(A.gelu, approximate="tanh")),
    "mish": (F.mish, A.mish),
    "hardsigmoid": (F.hardsigmoid, A.hardsigmoid),
    "hardswish": (F.hardswish, A.hardswish),
    "softplus": (lambda t: F.softplus(t, 2.0, 10.0), partial(A.softplus, beta=2.0,
                                                             threshold=10.0)),
    "softsign": (F.softsign, A.softsign),
    "silu": (F.silu, A.silu),
    "erf": (F.erf, A.erf),
    "hardshrink": (lambda t: F.hardshrink(t, 0.7), partial(A.hardshrink, lambd=0.7)),
    "softshrink": (lambda t: F.softshrink(t, 0.7), partial(A.softshrink, lambd=0.7)),
    "tanhshrink": (F.tanhshrink, A.tanhshrink),
    "logsigmoid": (F.logsigmoid, A.logsigmoid),
}

# points that avoid every kink by > 1e-3 (for finite differences)
SMOOTH = np.array([-7.3, -3.6, -2.9, -1.1, -0.4, -0.05, 0.03, 0.6, 1.7, 2.95, 3.2, 5.5, 11.0])


@pytest.mark.parametrize("name", sorted(ORACLES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_scalar_oracle(name, dtype):
    fn, oracle = ORACLES[name]
    x = np.concatenate([SMOOTH, [-3.0, 0.0, 3.0, -30.0, 30.0]]).astype(dtype)
    y = fn(nnlite.tensor(x))
    assert y.dtype == dtype and y.shape == x.shape
    want = np.array([oracle(float(v)) for v in x])
    if name == "tanhshrink":
        # x - tanh(x) cancels for small x (as PyTorch's formula): absolute error ~eps * |x|
        np.testing.assert_allclose(y.data, want, rtol=1e-6,
                                   atol=4 * np.finfo(dtype).eps * np.abs(x).max())
        return
    if dtype == np.float64:
        np.testing.assert_allclose(y.data, want, rtol=1e-13, atol=1e-300)
        return
    # float32: the tails (|y| < 1e-3, e.g. gelu(-7.3) ~ 6e-17) are ill-conditioned (the
    # exponent's own float32 rounding is amplified ~|x|**2 times): a looser relative bound there
    tail = np.abs(want) < 1e-3
    np.testing.assert_allclose(y.data[~tail], want[~tail], rtol=2e-6)
    np.testing.assert_allclose(y.data[tail], want[tail], rtol=3e-5, atol=1e-37)


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_gradient_finite_differences(name):
    fn, _ = ORACLES[name]
    x = SMOOTH.reshape(1, -1).repeat(2, axis=0) * np.array([[1.0], [0.5]])
    check_grad(fn, [x], rtol=1e-6, atol=1e-8)


def test_prelu_gradients_finite_differences_and_reference():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(2, 3, 4))
    x[np.abs(x) < 1e-2] = 0.5
    for w in (np.array([0.1, -0.3, 0.7]), np.array([0.25])):
        np.testing.assert_allclose(F.prelu(nnlite.tensor(x), nnlite.tensor(w)).data,
                                   A.prelu(x, w), rtol=1e-15)
    np.testing.assert_allclose(F.gelu(nnlite.tensor(x)).data, A.apply("gelu", x), rtol=1e-13)
    check_grad(F.prelu, [x, np.array([0.1, -0.3, 0.7])], rtol=1e-6)
    check_grad(F.prelu, [x, np.array([0.25])], rtol=1e-6)
    check_grad(F.prelu, [x[0, 0], np.array(0.25)], rtol=1e-6)


def test_erf_accuracy_against_math_erf_and_symmetry():
    x = np.concatenate([np.linspace(-7, 7, 4001), np.geomspace(1e-310, 1e-3, 50),
                        [0.0, 1.0, 2.0, 6.0, np.inf, -np.inf]])
    got = F.erf(nnlite.tensor(x)).data
    want = np.array([math.erf(v) for v in x])
    # math.erf is within 1 ulp; allow 3 ulp between the two
    assert np.all(np.abs(got - want) <= 3 * np.spacing(np.abs(want) + 1e-320))
    np.testing.assert_array_equal(F.erf(nnlite.tensor(-x)).data, -got)
    assert np.isnan(F.erf(nnlite.tensor(np.array([np.nan]))).data[0])
    assert F.erf(nnlite.tensor(np.array([-0.0]))).data[0] == 0.0


def test_erf_erfc_against_mpmath():
    mp = pytest.importorskip("mpmath")
    from nnlite.functional._special import erf_array, erfc_array

    mp.mp.dps = 30
    x = np.linspace(-6, 6, 2401) + 1e-3
    ref = np.array([float(mp.erf(mp.mpf(float(v)))) for v in x])
    assert np.max(np.abs(erf_array(x) - ref) / np.spacing(np.abs(ref))) <= 2
    xc = np.linspace(-5, 27, 2401) + 1e-3
    refc = np.array([float(mp.erfc(mp.mpf(float(v)))) for v in xc])
    ok = refc > 1e-300
    ulp = np.abs(erfc_array(xc)[ok] - refc[ok]) / np.spacing(refc[ok])
    assert ulp.max() <= 6


def test_gelu_has_no_cancellation_in_the_left_tail():
    # x * Phi(x) for x = -20 is about -5.5e-88 (1 + erf(-x/sqrt 2) would give 0)
    y = F.gelu(nnlite.tensor(np.array([-20.0, -10.0]))).data
    want = [-20 * 0.5 * math.erfc(20 / math.sqrt(2)), -10 * 0.5 * math.erfc(10 / math.sqrt(2))]
    np.testing.assert_allclose(y, want, rtol=1e-13)


# --------------------------------------------------------------------------- torch parity
TORCH_OPS = {
    "leaky_relu": ("leaky_relu", {"negative_slope": 0.2}),
    "leaky_relu_default": ("leaky_relu", {}),
    "elu": ("elu", {"alpha": 0.7}),
    "selu": ("selu", {}),
    "celu": ("celu", {"alpha": 1.3}),
    "celu_neg": ("celu", {"alpha": -0.8}),
    "gelu": ("gelu", {}),
    "gelu_tanh": ("gelu", {"approximate": "tanh"}),
    "mish": ("mish", {}),
    "hardsigmoid": ("hardsigmoid", {}),
    "hardswish": ("hardswish", {}),
    "softplus": ("softplus", {"beta": 2.0, "threshold": 10.0}),
    "softplus_default": ("softplus", {}),
    "softplus_negbeta": ("softplus", {"beta": -1.5, "threshold": 3.0}),
    "softsign": ("softsign", {}),
    "silu": ("silu", {}),
    "hardshrink": ("hardshrink", {}),
    "hardshrink_lambd": ("hardshrink", {"lambd": 3.0}),
    "softshrink": ("softshrink", {"lambd": 2.0}),
    "tanhshrink": ("tanhshrink", {}),
    "logsigmoid": ("logsigmoid", {}),
}


@pytest.mark.torch
@pytest.mark.parametrize("key", sorted(TORCH_OPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity_forward_backward(key, dtype):
    torch = pytest.importorskip("torch")
    name, kw = TORCH_OPS[key]
    # the kinks (-3, 0, 3, the softplus thresholds), both tails and random values
    x = np.concatenate([[-3.0, 0.0, 3.0, 5.0, -2.0, 10.0, -40.0, 40.0, -0.0],
                        np.random.default_rng(1).normal(scale=3, size=64)]).astype(dtype)
    g = np.random.default_rng(2).normal(size=x.shape).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch.nn.functional, name)(xt, **kw)
    yt.backward(torch.tensor(g))
    xn = nnlite.tensor(x, requires_grad=True)
    yn = getattr(F, name)(xn, **kw)
    yn.backward(g)
    rtol, atol = (1e-12, 1e-300) if dtype == np.float64 else (2e-6, 1e-37)
    # where PyTorch is the less accurate side (checked against the scalar oracles above):
    # gelu computes 1 + erf / 1 + tanh and cancels in the left tail (absolute error ~eps);
    # float64 celu and hardsigmoid gradients use float32-rounded coefficients (celu: 1/alpha,
    # whose error grows with |x / alpha|);
    # float32 softsign differentiates x / (|x| + 1) by the quotient rule (cancellation)
    if name == "gelu":
        atol = 1e-14 if dtype == np.float64 else 1e-6
    if name == "tanhshrink":      # both compute x - tanh(x): a 1-ulp tanh difference, amplified
        atol = 4 * np.finfo(dtype).eps * np.abs(x).max()
    gtol = {("celu", np.float64): 3e-6, ("hardsigmoid", np.float64): 1e-7,
            ("softsign", np.float32): 1e-5}.get((name, dtype), rtol)
    np.testing.assert_allclose(yn.data, yt.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(xn.grad, xt.grad.numpy(), rtol=gtol, atol=atol)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity_erf_and_prelu(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = np.concatenate([[0.0, -1.0, 1.0, 4.0], rng.normal(scale=2, size=40)]).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    torch.erf(xt).sum().backward()
    xn = nnlite.tensor(x, requires_grad=True)
    F.erf(xn).sum().backward()
    rtol = 1e-14 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(F.erf(nnlite.tensor(x)).data, torch.erf(torch.tensor(x)).numpy(),
                               rtol=rtol, atol=1e-30)
    # float32: torch rounds x**2 to float32 inside exp(-x**2) (relative error ~x**2 * eps)
    np.testing.assert_allclose(xn.grad, xt.grad.numpy(), rtol=rtol if dtype == np.float64
                               else 2e-5)
    for shape, wshape in (((2, 3, 4, 5), (3,)), ((2, 3, 4), (1,)), ((5,), (1,)), ((3, 4), (4,)),
                          ((), ())):
        x = rng.normal(size=shape).astype(dtype)
        w = rng.normal(size=wshape).astype(dtype)
        g = rng.normal(size=shape).astype(dtype)
        xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        torch.nn.functional.prelu(xt, wt).backward(torch.tensor(g))
        xn, wn = nnlite.tensor(x, requires_grad=True), nnlite.tensor(w, requires_grad=True)
        F.prelu(xn, wn).backward(g)
        np.testing.assert_allclose(xn.grad, xt.grad.numpy(), rtol=rtol)
        np.testing.assert_allclose(wn.grad, wt.grad.numpy(), rtol=rtol * 10, atol=1e-6)


@pytest.mark.torch
def test_modules_match_torch_modules():
    torch = pytest.importorskip("torch")
    pairs = [(nn.LeakyReLU(0.3), torch.nn.LeakyReLU(0.3)), (nn.ELU(0.5), torch.nn.ELU(0.5)),
             (nn.SELU(), torch.nn.SELU()), (nn.CELU(2.0), torch.nn.CELU(2.0)),
             (nn.GELU(), torch.nn.GELU()), (nn.GELU("tanh"), torch.nn.GELU("tanh")),
             (nn.Mish(), torch.nn.Mish()), (nn.Hardsigmoid(), torch.nn.Hardsigmoid()),
             (nn.Hardswish(), torch.nn.Hardswish()), (nn.Softplus(3, 5), torch.nn.Softplus(3, 5)),
             (nn.Softsign(), torch.nn.Softsign()), (nn.SiLU(), torch.nn.SiLU()),
             (nn.PReLU(), torch.nn.PReLU()), (nn.PReLU(3, 0.1), torch.nn.PReLU(3, 0.1)),
             (nn.LeakyReLU(inplace=True), torch.nn.LeakyReLU(inplace=True)),
             (nn.Hardshrink(), torch.nn.Hardshrink()),
             (nn.Softshrink(0.3), torch.nn.Softshrink(0.3)),
             (nn.Tanhshrink(), torch.nn.Tanhshrink()), (nn.LogSigmoid(), torch.nn.LogSigmoid()),
             (nn.Hardswish(inplace=True), torch.nn.Hardswish(inplace=True))]
    x = np.random.default_rng(4).normal(scale=3, size=(2, 3, 5)).astype(np.float32)
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)
        np.testing.assert_allclose(ours(nnlite.tensor(x)).data,
                                   theirs(torch.tensor(x)).detach().numpy(), rtol=2e-6, atol=1e-6)
    p = nn.PReLU(3, 0.1)
    assert list(p.state_dict()) == list(torch.nn.PReLU(3, 0.1).state_dict()) == ["weight"]
    assert p.weight.shape == (3,) and p.weight.dtype == np.float32
    assert nn.PReLU(dtype=np.float64).weight.dtype == np.float64


def test_prelu_module_trains_its_weight():
    p = nn.PReLU(2, 0.5)
    x = nnlite.tensor(np.array([[[-1.0, 2.0], [-3.0, -4.0]]], dtype=np.float32))
    p(x).sum().backward()
    np.testing.assert_allclose(p.weight.grad, [-1.0, -7.0])


def test_integer_input_is_promoted_by_none_and_rejected():
    with pytest.raises(TypeError, match="leaky_relu: input must be a floating tensor"):
        F.leaky_relu(nnlite.tensor(np.arange(3)))
    with pytest.raises(TypeError, match="erf: input must be a floating"):
        F.erf(nnlite.tensor(np.arange(3)))


def test_bad_arguments_name_the_values():
    x = nnlite.tensor(np.ones(3))
    with pytest.raises(ValueError, match="approximate argument must be either 'none' or 'tanh', "
                                         "got 'exact'"):
        F.gelu(x, approximate="exact")
    with pytest.raises(ValueError, match="approximate.*'fast'"):
        nn.GELU("fast")
    with pytest.raises(ValueError, match="celu: alpha cannot be 0"):
        F.celu(x, alpha=0.0)
    with pytest.raises(ValueError, match="softshrink: lambda must be greater or equal to 0, but "
                                         "found to be -0.5"):
        F.softshrink(x, -0.5)
    with pytest.raises(ValueError, match="softplus: beta must be non-zero"):
        F.softplus(x, beta=0)
    with pytest.raises(TypeError, match="leaky_relu: negative_slope must be a number, got 'a'"):
        F.leaky_relu(x, "a")
    with pytest.raises(TypeError, match="elu: alpha must be a number, got None"):
        F.elu(x, None)
    with pytest.raises(ValueError, match="Found parameter numbers = 2 and channel size = 3"):
        F.prelu(nnlite.tensor(np.ones((4, 3))), nnlite.tensor(np.ones(2)))
    with pytest.raises(ValueError, match="scalar or 1D tensor.*ndim = 2"):
        F.prelu(nnlite.tensor(np.ones((4, 3))), nnlite.tensor(np.ones((3, 1))))
    with pytest.raises(TypeError, match="prelu: input has dtype float64 but weight has dtype "
                                        "float32"):
        F.prelu(nnlite.tensor(np.ones((4, 3))), nnlite.tensor(np.ones(3, dtype=np.float32)))


def test_empty_and_float32_shapes_are_kept():
    for name in ORACLES:
        fn, _ = ORACLES[name]
        e = fn(nnlite.tensor(np.zeros((0, 3), dtype=np.float32)))
        assert e.shape == (0, 3) and e.dtype == np.float32
