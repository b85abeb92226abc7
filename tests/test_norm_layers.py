"""layer_norm, group_norm, instance_norm, local_response_norm, normalize and their modules.

Oracles: the loop references (nnlite/kernels/norm_reference.py), float64 finite differences and
PyTorch (forward, backward and running statistics; float32 and float64).
"""
import warnings

import numpy as np
import pytest

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from gradcheck import check_grad
from nnlite.kernels import norm_reference as R

RNG = np.random.default_rng(7)


def _t(a, grad=False):
    return None if a is None else nnlite.tensor(a, requires_grad=grad)


def _tol(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)


# --------------------------------------------------------------------------- vs reference
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_norm_matches_reference(dtype):
    for shape, ns, affine in [((2, 3, 5), (5,), True), ((1, 4, 3), (4, 3), False),
                              ((3, 1), (1,), True), ((2, 2, 3, 1), (2, 3, 1), True),
                              ((7,), 7, False)]:
        x = RNG.normal(size=shape).astype(dtype)
        nsh = (ns,) if isinstance(ns, int) else ns
        w = RNG.normal(size=nsh).astype(dtype) if affine else None
        b = RNG.normal(size=nsh).astype(dtype) if affine else None
        y = F.layer_norm(_t(x), ns, _t(w), _t(b), eps=1e-3)
        np.testing.assert_allclose(y.data, R.layer_norm(x, nsh, w, b, 1e-3), **_tol(dtype))
        assert y.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_group_norm_matches_reference(dtype):
    for shape, g, affine in [((2, 6, 3, 5), 3, True), ((1, 4, 7), 4, False), ((3, 5), 1, True),
                             ((1, 1, 2, 3), 1, True), ((2, 6, 2, 1, 3), 2, False)]:
        x = RNG.normal(size=shape).astype(dtype)
        w = RNG.normal(size=shape[1]).astype(dtype) if affine else None
        b = RNG.normal(size=shape[1]).astype(dtype) if affine else None
        y = F.group_norm(_t(x), g, _t(w), _t(b), eps=1e-4)
        np.testing.assert_allclose(y.data, R.group_norm(x, g, w, b, 1e-4), **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_instance_norm_matches_reference_with_running_stats(dtype):
    for shape, use_stats, track, affine in [((2, 3, 4, 5), True, True, True),
                                            ((1, 2, 7), True, False, False),
                                            ((3, 1, 2, 2), True, True, False),
                                            ((2, 3, 4), False, True, True)]:
        x = RNG.normal(size=shape).astype(dtype)
        c = shape[1]
        rm = RNG.normal(size=c).astype(dtype) if track else None
        rv = RNG.uniform(0.5, 2, size=c).astype(dtype) if track else None
        w = RNG.normal(size=c).astype(dtype) if affine else None
        b = RNG.normal(size=c).astype(dtype) if affine else None
        want, want_m, want_v = R.instance_norm(x, rm, rv, w, b, use_stats, 0.3, 1e-4)
        rmt, rvt = _t(None if rm is None else rm.copy()), _t(None if rv is None else rv.copy())
        y = F.instance_norm(_t(x), rmt, rvt, _t(w), _t(b), use_stats, 0.3, 1e-4)
        np.testing.assert_allclose(y.data, want, **_tol(dtype))
        if track:
            np.testing.assert_allclose(rmt.data, want_m, **_tol(dtype))
            np.testing.assert_allclose(rvt.data, want_v, **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_local_response_norm_matches_reference(dtype):
    for shape, size in [((2, 5, 3), 3), ((1, 4, 2, 3), 2), ((1, 3, 2, 2, 2), 5), ((2, 1, 4), 1),
                        ((1, 6, 3), 8)]:
        x = RNG.normal(size=shape).astype(dtype)
        y = F.local_response_norm(_t(x), size, alpha=0.3, beta=0.8, k=1.5)
        np.testing.assert_allclose(y.data, R.local_response_norm(x, size, 0.3, 0.8, 1.5),
                                   **_tol(dtype))


@pytest.mark.parametrize("p", [2.0, 1, 3, 0.5, 1.5, np.inf, -np.inf, 0])
def test_normalize_matches_reference(p):
    x = RNG.normal(size=(2, 4, 3))
    x[0, :, 1] = 0                                      # a zero vector: divided by eps
    for dim in (0, 1, -1):
        np.testing.assert_allclose(F.normalize(_t(x), p, dim).data, R.normalize(x, p, dim),
                                   rtol=1e-12, atol=1e-300)


# --------------------------------------------------------------------------- gradients
def test_gradients_finite_differences():
    x = RNG.normal(size=(2, 4, 3))
    w, b = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))
    check_grad(lambda a, c, d: F.layer_norm(a, (4, 3), c, d), [x, w, b], rtol=1e-5)
    check_grad(lambda a: F.layer_norm(a, 3), [x], rtol=1e-5)
    wc, bc = RNG.normal(size=4), RNG.normal(size=4)
    check_grad(lambda a, c, d: F.group_norm(a, 2, c, d), [x, wc, bc], rtol=1e-5)
    check_grad(lambda a, c, d: F.instance_norm(a, weight=c, bias=d), [x, wc, bc], rtol=1e-5)
    rm, rv = RNG.normal(size=4), RNG.uniform(0.5, 2, size=4)
    check_grad(lambda a, c, d: F.instance_norm(a, _t(rm), _t(rv), c, d, use_input_stats=False),
               [x, wc, bc], rtol=1e-5)
    check_grad(lambda a: F.local_response_norm(a, 3, alpha=0.5, beta=0.7, k=1.2), [x],
               rtol=1e-5)
    check_grad(lambda a: F.local_response_norm(a, 2, alpha=0.5, beta=0.7, k=1.2), [x],
               rtol=1e-5)
    for p in (2.0, 1.0, 3.0, 1.5, 0.7, np.inf):
        check_grad(lambda a: F.normalize(a, p, 1), [x], rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- torch parity
def _pair_run(fn_ours, fn_torch, arrays, torch):
    ts = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    ns = [None if a is None else nnlite.tensor(a, requires_grad=True) for a in arrays]
    yt, yn = fn_torch(*ts), fn_ours(*ns)
    g = RNG.normal(size=tuple(yt.shape)).astype(arrays[0].dtype)
    yt.backward(torch.tensor(g))
    yn.backward(g)
    grads = [(n.grad, t.grad.numpy()) for n, t in zip(ns, ts) if n is not None]
    return yn.data, yt.detach().numpy(), grads


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity_forward_backward(dtype):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=2e-5)

    def arr(*shape):
        return RNG.normal(size=shape).astype(dtype)

    cases = [
        (lambda x, w, b: F.layer_norm(x, (5,), w, b), lambda x, w, b: tf.layer_norm(x, (5,), w, b),
         [arr(2, 3, 5), arr(5), arr(5)]),
        (lambda x: F.layer_norm(x, (3, 5), eps=0.1), lambda x: tf.layer_norm(x, (3, 5), eps=0.1),
         [arr(2, 3, 5)]),
        (lambda x, w, b: F.group_norm(x, 3, w, b), lambda x, w, b: tf.group_norm(x, 3, w, b),
         [arr(2, 6, 4, 3), arr(6), arr(6)]),
        (lambda x: F.group_norm(x, 1), lambda x: tf.group_norm(x, 1), [arr(1, 3, 5)]),
        (lambda x, w: F.group_norm(x, 4, w), lambda x, w: tf.group_norm(x, 4, w),
         [arr(3, 4, 2), arr(4)]),
        (lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
         lambda x, w, b: tf.instance_norm(x, weight=w, bias=b), [arr(2, 3, 4, 5), arr(3), arr(3)]),
        (lambda x: F.instance_norm(x, eps=0.01), lambda x: tf.instance_norm(x, eps=0.01),
         [arr(1, 1, 7)]),
        (lambda x: F.local_response_norm(x, 3), lambda x: tf.local_response_norm(x, 3),
         [arr(2, 5, 4, 3)]),
        (lambda x: F.local_response_norm(x, 2, 0.5, 0.6, 2.0),
         lambda x: tf.local_response_norm(x, 2, 0.5, 0.6, 2.0), [arr(1, 4, 6)]),
        (lambda x: F.local_response_norm(x, 4, 1e-2, 0.75, 1.0),
         lambda x: tf.local_response_norm(x, 4, 1e-2, 0.75, 1.0), [arr(1, 3, 2, 2, 3)]),
    ]
    for p in (2.0, 1.0, 3.0, 0.5, 1.5, float("inf"), float("-inf")):
        cases.append((lambda x, p=p: F.normalize(x, p, 1), lambda x, p=p: tf.normalize(x, p, 1),
                      [arr(3, 4, 2)]))
    cases.append((lambda x: F.normalize(x, dim=-1), lambda x: tf.normalize(x, dim=-1),
                  [arr(5)]))
    for ours, theirs, arrays in cases:
        y, yt, grads = _pair_run(ours, theirs, arrays, torch)
        np.testing.assert_allclose(y, yt, **tol)
        for gn, gt in grads:
            np.testing.assert_allclose(gn, gt, **tol)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity_instance_norm_running_stats(dtype):
    torch = pytest.importorskip("torch")
    x = RNG.normal(size=(3, 4, 5, 2)).astype(dtype)
    rm, rv = RNG.normal(size=4).astype(dtype), RNG.uniform(0.5, 2, size=4).astype(dtype)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for use_stats, momentum in ((True, 0.1), (True, 0.7), (False, 0.1)):
        rmt, rvt = torch.tensor(rm), torch.tensor(rv)
        rmn, rvn = nnlite.tensor(rm.copy()), nnlite.tensor(rv.copy())
        yt = torch.nn.functional.instance_norm(torch.tensor(x), rmt, rvt,
                                               use_input_stats=use_stats, momentum=momentum)
        yn = F.instance_norm(nnlite.tensor(x), rmn, rvn, use_input_stats=use_stats,
                             momentum=momentum)
        np.testing.assert_allclose(yn.data, yt.numpy(), **tol)
        np.testing.assert_allclose(rmn.data, rmt.numpy(), **tol)
        np.testing.assert_allclose(rvn.data, rvt.numpy(), **tol)


@pytest.mark.torch
def test_torch_parity_modules_train_and_eval():
    torch = pytest.importorskip("torch")
    x = RNG.normal(size=(2, 4, 6, 5)).astype(np.float32)
    x1 = RNG.normal(size=(2, 4, 6)).astype(np.float32)
    pairs = [
        (nn.LayerNorm((6, 5)), torch.nn.LayerNorm((6, 5)), x),
        (nn.LayerNorm(5, elementwise_affine=False), torch.nn.LayerNorm(5, elementwise_affine=False),
         x),
        (nn.LayerNorm(5, bias=False), torch.nn.LayerNorm(5, bias=False), x),
        (nn.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4), x),
        (nn.GroupNorm(4, 4, affine=False), torch.nn.GroupNorm(4, 4, affine=False), x),
        (nn.InstanceNorm2d(4), torch.nn.InstanceNorm2d(4), x),
        (nn.InstanceNorm2d(4, affine=True, track_running_stats=True),
         torch.nn.InstanceNorm2d(4, affine=True, track_running_stats=True), x),
        (nn.InstanceNorm2d(4, momentum=None, track_running_stats=True),
         torch.nn.InstanceNorm2d(4, momentum=None, track_running_stats=True), x),
        (nn.InstanceNorm1d(4, track_running_stats=True),
         torch.nn.InstanceNorm1d(4, track_running_stats=True), x1),
        (nn.InstanceNorm1d(4, affine=True), torch.nn.InstanceNorm1d(4, affine=True), x1[0]),
        (nn.InstanceNorm2d(4, affine=True, track_running_stats=True),
         torch.nn.InstanceNorm2d(4, affine=True, track_running_stats=True), x[0]),
        (nn.LocalResponseNorm(3, 1e-2, 0.7, 1.5), torch.nn.LocalResponseNorm(3, 1e-2, 0.7, 1.5),
         x),
    ]
    for ours, theirs, inp in pairs:
        assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        for p, q in zip(ours.parameters(), theirs.parameters()):
            rnd = RNG.normal(size=p.shape).astype(np.float32)
            p.data[...] = rnd
            with torch.no_grad():
                q.copy_(torch.tensor(rnd))
        for mode in ("train", "train", "eval"):
            getattr(ours, mode)()
            getattr(theirs, mode)()
            xn = nnlite.tensor(inp, requires_grad=True)
            xt = torch.tensor(inp, requires_grad=True)
            yn, yt = ours(xn), theirs(xt)
            np.testing.assert_allclose(yn.data, yt.detach().numpy(), rtol=1e-4, atol=2e-5,
                                       err_msg=repr(ours))
            g = RNG.normal(size=yn.shape).astype(np.float32)
            yn.backward(g)
            yt.backward(torch.tensor(g))
            np.testing.assert_allclose(xn.grad, xt.grad.numpy(), rtol=1e-4, atol=5e-5)
            for k, v in theirs.state_dict().items():
                np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=1e-5,
                                           atol=1e-6, err_msg=f"{ours!r} {k}")


def test_instance_norm_module_feature_checks():
    with pytest.raises(ValueError, match=r"expected input's size at dim=1 to match num_features "
                                         r"\(3\), but got: 4"):
        nn.InstanceNorm2d(3, affine=True)(nnlite.tensor(np.zeros((1, 4, 2, 2))))
    with pytest.warns(UserWarning, match="input's size at dim=0 does not match num_features"):
        nn.InstanceNorm2d(3)(nnlite.tensor(RNG.normal(size=(4, 2, 2)).astype(np.float32)))
    with pytest.raises(ValueError, match=r"expected 3D or 4D input \(got 2D input\)"):
        nn.InstanceNorm2d(3)(nnlite.tensor(np.zeros((3, 4))))
    with pytest.raises(ValueError, match=r"expected 2D or 3D input \(got 4D input\)"):
        nn.InstanceNorm1d(3)(nnlite.tensor(np.zeros((1, 3, 4, 4))))
    m = nn.InstanceNorm1d(2, track_running_stats=True)
    m(nnlite.tensor(RNG.normal(size=(2, 2, 5)).astype(np.float32)))
    assert int(m.num_batches_tracked.item()) == 0      # as PyTorch: never incremented
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.eval()(nnlite.tensor(np.ones((2, 2, 1), np.float32)))   # eval: 1 element is fine


# --------------------------------------------------------------------------- bad arguments
X = nnlite.tensor(np.zeros((2, 6, 3, 4)))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: F.layer_norm(X, (3, 5)), ValueError,
     r"Given normalized_shape=\[3, 5\], expected input with shape \[\*, 3, 5\], but got input of "
     r"size \[2, 6, 3, 4\]"),
    (lambda: F.layer_norm(X, ()), ValueError, "at least 1-dimensional"),
    (lambda: F.layer_norm(X, 4, weight=nnlite.tensor(np.ones(3))), ValueError,
     r"Expected weight to be of same shape as normalized_shape \[4\], but got weight of shape "
     r"\[3\]"),
    (lambda: F.layer_norm(X, 4.0), TypeError, "normalized_shape must be an int or a sequence"),
    (lambda: F.layer_norm(X, 4, bias=nnlite.tensor(np.ones(4, np.float32))), TypeError,
     "input has dtype float64 but bias has dtype float32"),
    (lambda: F.group_norm(X, 4), ValueError,
     r"Expected number of channels in input to be divisible by num_groups, but got input of "
     r"shape \[2, 6, 3, 4\] and num_groups=4"),
    (lambda: F.group_norm(X, 0), ValueError, "num_groups must be positive, got num_groups=0"),
    (lambda: F.group_norm(X, 3, weight=nnlite.tensor(np.ones(3))), ValueError,
     r"Expected weight to be a vector of size equal to the number of channels in input, shape "
     r"\[6\], but got weight of shape \[3\]"),
    (lambda: F.group_norm(nnlite.tensor(np.zeros(4)), 2), ValueError,
     "Expected at least 2 dimensions for input tensor but received 1"),
    (lambda: F.group_norm(nnlite.tensor(np.zeros((1, 2))), 2), ValueError,
     "Expected more than 1 value per channel when training"),
    (lambda: F.instance_norm(nnlite.tensor(np.zeros((2, 3, 1)))), ValueError,
     r"Expected more than 1 spatial element when training, got input size \[2, 3, 1\]"),
    (lambda: F.instance_norm(X, use_input_stats=False), ValueError,
     "Expected running_mean and running_var to be defined when use_input_stats is false"),
    (lambda: F.instance_norm(X, nnlite.tensor(np.zeros(4))), ValueError,
     r"running_mean should contain 6 elements not 4"),
    (lambda: F.local_response_norm(nnlite.tensor(np.zeros((2, 3))), 2), ValueError,
     r"Expected 3D or higher dimensionality input \(got 2 dimensions"),
    (lambda: F.local_response_norm(X, 0), ValueError, "size must be positive, got size=0"),
    (lambda: F.local_response_norm(X, 2.5), TypeError, "size must be an int, got 2.5"),
    (lambda: F.normalize(X, dim=4), ValueError, "dim 4 is out of range for a tensor of 4 dims"),
    (lambda: F.normalize(X, p="fro"), TypeError, "p must be a number"),
    (lambda: F.normalize(X, out=nnlite.tensor(np.zeros(3))), ValueError,
     r"out must be a Tensor of shape \(2, 6, 3, 4\)"),
    (lambda: nn.GroupNorm(4, 6), ValueError, r"num_channels \(6\) must be divisible by "
                                             r"num_groups \(4\)"),
    (lambda: F.layer_norm(nnlite.tensor(np.zeros(3, np.int64)), 3), TypeError,
     "layer_norm: input must be a floating tensor"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_normalize_out_and_empty_inputs():
    x = RNG.normal(size=(3, 4))
    out = nnlite.tensor(np.zeros((3, 4)))
    assert F.normalize(_t(x), out=out) is out
    np.testing.assert_allclose(out.data, R.normalize(x))
    e = nnlite.tensor(np.zeros((0, 3, 2)))
    assert F.local_response_norm(e, 2).shape == (0, 3, 2)
    assert F.layer_norm(e, 2).shape == (0, 3, 2)
    assert F.group_norm(e, 3).shape == (0, 3, 2)


def test_instance_norm_empty_map_keeps_running_stats():
    rm, rv = nnlite.tensor(np.zeros(3)), nnlite.tensor(np.ones(3))
    y = F.instance_norm(nnlite.tensor(np.ones((2, 3, 0))), rm, rv)
    assert y.shape == (2, 3, 0)
    np.testing.assert_array_equal(rm.data, np.zeros(3))
    np.testing.assert_array_equal(rv.data, np.ones(3))
    torch = pytest.importorskip("torch")
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    torch.nn.functional.instance_norm(torch.ones(2, 3, 0, dtype=torch.float64), trm, trv)
    np.testing.assert_array_equal(rm.data, trm.numpy())
    np.testing.assert_array_equal(rv.data, trv.numpy())
