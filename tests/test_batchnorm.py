"""BatchNorm1d/2d and F.batch_norm vs the docs/semantics.md §9.2 formulas (NumPy), float64
gradchecks, running-stat updates (momentum, momentum=None, unbiased variance), state_dict, errors
and optional PyTorch parity."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from conftest import assert_close
from gradcheck import check_grad


def _ref_train(x, w, b, eps):
    """docs/semantics.md §9.2 in float64: stats over every axis but 1, biased var for
    normalisation."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    x = x.astype(np.float64)
    n = x.size // x.shape[1]
    mu = x.mean(axis=axes)
    var_b = ((x - mu.reshape(shape)) ** 2).sum(axis=axes) / n
    y = (x - mu.reshape(shape)) / np.sqrt(var_b.reshape(shape) + eps)
    y = y * w.reshape(shape) + b.reshape(shape)
    return y, mu, var_b * n / (n - 1)


def _ref_eval(x, rm, rv, w, b, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return ((x - rm.reshape(shape)) / np.sqrt(rv.reshape(shape) + eps) * w.reshape(shape)
            + b.reshape(shape))


_shapes = st.one_of(
    st.tuples(st.integers(2, 5), st.integers(1, 4)),
    st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(2, 5)),
    st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(2, 5)),
)


@given(_shapes, st.sampled_from([np.float32, np.float64]), st.integers(0, 10_000))
def test_batch_norm_train_matches_formula_and_updates_running_stats(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (rng.normal(size=shape) * rng.uniform(0.5, 3) + rng.normal()).astype(dtype)
    w, b = rng.normal(size=c).astype(dtype), rng.normal(size=c).astype(dtype)
    rm0, rv0 = rng.normal(size=c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    rm, rv = nnlite.tensor(rm0), nnlite.tensor(rv0)
    y = F.batch_norm(nnlite.tensor(x), rm, rv, nnlite.tensor(w), nnlite.tensor(b),
                     training=True, momentum=0.3, eps=1e-3)
    ref, mu, var_u = _ref_train(x, w, b, 1e-3)
    assert y.dtype == dtype and rm.dtype == dtype
    n = x.size // c
    assert_close(y, ref, dtype, k=n, scale=10)
    assert_close(rm, 0.7 * rm0 + 0.3 * mu, dtype, k=n, scale=10)
    assert_close(rv, 0.7 * rv0 + 0.3 * var_u, dtype, k=n, scale=100)


@given(_shapes, st.integers(0, 10_000))
def test_batch_norm_eval_matches_formula_and_leaves_stats(shape, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.normal(size=shape)
    w, b = rng.normal(size=c), rng.normal(size=c)
    rm0, rv0 = rng.normal(size=c), rng.uniform(0.1, 2, c)
    rm, rv = nnlite.tensor(rm0), nnlite.tensor(rv0)
    y = F.batch_norm(nnlite.tensor(x), rm, rv, nnlite.tensor(w), nnlite.tensor(b), eps=1e-4)
    np.testing.assert_allclose(y.data, _ref_eval(x, rm0, rv0, w, b, 1e-4), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_array_equal(rm.data, rm0)
    np.testing.assert_array_equal(rv.data, rv0)


def test_batch_norm_hand_example():
    # channel 0 = [1, 3]: mean 2, biased var 1 -> y = [-1, 1]; unbiased var 2
    # channel 1 = [10, 14]: mean 12, biased var 4 -> y = [-1, 1]; unbiased var 8
    x = np.array([[1.0, 10.0], [3.0, 14.0]])
    rm, rv = nnlite.tensor(np.zeros(2)), nnlite.tensor(np.ones(2))
    y = F.batch_norm(nnlite.tensor(x), rm, rv, training=True, momentum=0.5, eps=0.0)
    np.testing.assert_allclose(y.data, [[-1.0, -1.0], [1.0, 1.0]])
    np.testing.assert_allclose(rm.data, [1.0, 6.0])
    np.testing.assert_allclose(rv.data, [0.5 * 1 + 0.5 * 2, 0.5 * 1 + 0.5 * 8])


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (2, 3, 3, 2)])
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_batch_norm_train_gradients_match_central_differences(shape, affine):
    rng = np.random.default_rng(11)
    x = rng.normal(size=shape) * 2 + 1
    c = shape[1]
    params = {"both": ["w", "b"], "weight": ["w"], "none": []}[affine]

    def fn(t, *wb):
        kw = dict(zip(params, wb))
        return F.batch_norm(t, None, None, kw.get("w"), kw.get("b"), training=True, eps=1e-3)

    args = [x] + [rng.normal(size=c) for _ in params]
    check_grad(fn, args, rtol=1e-5, atol=1e-6)


def test_batch_norm_bias_only_and_eval_gradients():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(3, 2, 4))
    rm, rv = rng.normal(size=2), rng.uniform(0.5, 2, 2)
    check_grad(lambda t, b: F.batch_norm(t, None, None, None, b, training=True), [x,
               rng.normal(size=2)])
    check_grad(lambda t, w, b: F.batch_norm(t, nnlite.tensor(rm), nnlite.tensor(rv), w, b),
               [x, rng.normal(size=2), rng.normal(size=2)])


def test_batch_norm2d_momentum_none_is_cumulative_average():
    rng = np.random.default_rng(3)
    bn = nn.BatchNorm2d(3, momentum=None).double()
    batches = [rng.normal(i, 1 + i, size=(2, 3, 3, 2)) for i in range(4)]
    for i, xb in enumerate(batches):
        bn(nnlite.tensor(xb))
        assert bn.num_batches_tracked.data == i + 1
    means = [xb.mean(axis=(0, 2, 3)) for xb in batches]
    vars_u = [xb.var(axis=(0, 2, 3), ddof=1) for xb in batches]
    # m = 1/k at step k: running_mean is the plain average of the batch means; the initial
    # running_var (1) gets weight 0 from the first step on
    np.testing.assert_allclose(bn.running_mean.data, np.mean(means, axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.data, np.mean(vars_u, axis=0), rtol=1e-12)


def test_batch_norm2d_train_then_eval_uses_running_stats():
    rng = np.random.default_rng(4)
    bn = nn.BatchNorm2d(2, eps=1e-5, momentum=0.1)
    nnlite.nn.init.normal_(bn.weight)
    nnlite.nn.init.normal_(bn.bias)
    rm, rv = np.zeros(2), np.ones(2)
    for _ in range(3):
        x = rng.normal(2, 3, size=(4, 2, 3, 3)).astype(np.float32)
        y = bn(nnlite.tensor(x))
        ref, mu, var_u = _ref_train(x, bn.weight.data, bn.bias.data, 1e-5)
        assert_close(y, ref, np.float32, k=36, scale=10)
        rm, rv = 0.9 * rm + 0.1 * mu, 0.9 * rv + 0.1 * var_u
    assert bn.num_batches_tracked.data.dtype == np.int64
    assert bn.num_batches_tracked.data.shape == () and int(bn.num_batches_tracked.data) == 3
    assert_close(bn.running_mean, rm, np.float32, k=36, scale=10)
    assert_close(bn.running_var, rv, np.float32, k=36, scale=100)
    bn.eval()
    x = rng.normal(size=(1, 2, 1, 1)).astype(np.float32)   # batch of one value is fine in eval
    y = bn(nnlite.tensor(x))
    assert_close(y, _ref_eval(x, rm, rv, bn.weight.data, bn.bias.data, 1e-5), np.float32,
                 k=36, scale=10)
    assert int(bn.num_batches_tracked.data) == 3


def test_batch_norm_without_running_stats_uses_batch_stats_in_eval():
    bn = nn.BatchNorm1d(3, track_running_stats=False)
    assert bn.running_mean is None and bn.num_batches_tracked is None
    x = np.random.default_rng(5).normal(size=(4, 3)).astype(np.float32)
    bn.eval()
    y = bn(nnlite.tensor(x))
    assert_close(y, _ref_train(x, np.ones(3), np.zeros(3), 1e-5)[0], np.float32, k=4)
    assert list(bn.state_dict()) == ["weight", "bias"]


def test_batch_norm_module_gradients_flow_to_parameters():
    bn = nn.BatchNorm1d(3).double()
    x = nnlite.tensor(np.random.default_rng(6).normal(size=(5, 3, 2)), requires_grad=True)
    bn(x).sum().backward()
    # sum of a normalised batch does not depend on x or weight (up to rounding), only on bias
    np.testing.assert_allclose(x.grad, 0, atol=1e-12)
    np.testing.assert_allclose(bn.weight.grad, 0, atol=1e-12)
    np.testing.assert_allclose(bn.bias.grad, [10, 10, 10])


def test_batch_norm_single_value_per_channel_raises_in_training():
    bn = nn.BatchNorm2d(3)
    with pytest.raises(ValueError) as info:
        bn(nnlite.tensor(np.ones((1, 3, 1, 1), np.float32)))
    assert str(info.value) == ("Expected more than 1 value per channel when training, got "
                               "input size torch.Size([1, 3, 1, 1])")
    with pytest.raises(ValueError, match=r"torch.Size\(\[1, 3\]\)"):
        nn.BatchNorm1d(3)(nnlite.tensor(np.ones((1, 3), np.float32)))


def test_batch_norm_empty_batch_keeps_running_stats():
    bn = nn.BatchNorm2d(2)
    y = bn(nnlite.tensor(np.zeros((0, 2, 3, 3), np.float32)))
    assert y.shape == (0, 2, 3, 3)
    np.testing.assert_array_equal(bn.running_mean.data, [0, 0])
    np.testing.assert_array_equal(bn.running_var.data, [1, 1])


def test_batch_norm_errors_name_the_numbers():
    x = nnlite.tensor(np.ones((2, 3, 2, 2)))
    with pytest.raises(ValueError, match="running_mean should contain 3 elements not 4"):
        F.batch_norm(x, nnlite.tensor(np.zeros(4)), nnlite.tensor(np.ones(3)), training=True)
    with pytest.raises(ValueError, match="weight should contain 3 elements not 2"):
        F.batch_norm(x, None, None, nnlite.tensor(np.ones(2)), training=True)
    with pytest.raises(ValueError, match="running_mean must be defined in evaluation mode"):
        F.batch_norm(x, None, None)
    with pytest.raises(ValueError, match=r"at least 2 dims, got shape \(3,\)"):
        F.batch_norm(nnlite.tensor(np.ones(3)), None, None, training=True)
    with pytest.raises(TypeError, match="float64.*float32"):
        F.batch_norm(x, None, None, nnlite.tensor(np.ones(3, np.float32)), training=True)
    with pytest.raises(ValueError, match="expected 4D input \\(got 3D input\\)"):
        nn.BatchNorm2d(3)(nnlite.tensor(np.ones((2, 3, 4), np.float32)))
    with pytest.raises(ValueError, match="expected 2D or 3D input \\(got 4D input\\)"):
        nn.BatchNorm1d(3)(nnlite.tensor(np.ones((2, 3, 4, 1), np.float32)))
    with pytest.raises(ValueError, match="not differentiable with respect to running_mean"):
        F.batch_norm(x, nnlite.tensor(np.zeros(3), requires_grad=True),
                     nnlite.tensor(np.ones(3)))


def test_batch_norm_module_attributes_repr_and_state_dict():
    bn = nn.BatchNorm2d(4)
    assert (bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats) == \
        (4, 1e-5, 0.1, True, True)
    assert repr(bn) == ("BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, bias=True, "
                        "track_running_stats=True)")
    sd = bn.state_dict()
    assert list(sd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert [sd[k].shape for k in sd] == [(4,)] * 4 + [()]
    assert [sd[k].dtype for k in sd] == [np.float32] * 4 + [np.int64]
    np.testing.assert_array_equal(sd["weight"], 1)
    np.testing.assert_array_equal(sd["bias"], 0)
    np.testing.assert_array_equal(sd["running_var"], 1)
    assert list(nn.BatchNorm2d(4, affine=False).state_dict()) == [
        "running_mean", "running_var", "num_batches_tracked"]
    nb = nn.BatchNorm2d(4, bias=False)
    assert list(nb.state_dict()) == ["weight", "running_mean", "running_var",
                                     "num_batches_tracked"]
    assert "bias=False" in repr(nb)
    assert nn.BatchNorm1d(2, dtype=np.float64).weight.dtype == np.float64


def test_batch_norm_loads_legacy_state_dict_without_num_batches_tracked():
    src = nn.BatchNorm2d(3)
    src(nnlite.tensor(np.random.default_rng(0).normal(size=(2, 3, 2, 2)).astype(np.float32)))
    sd = dict(src.state_dict())
    del sd["num_batches_tracked"]
    dst = nn.BatchNorm2d(3)
    dst.load_state_dict(sd)                        # strict load succeeds
    np.testing.assert_array_equal(dst.running_mean.data, src.running_mean.data)
    assert int(dst.num_batches_tracked.data) == 0
    assert dst.num_batches_tracked.data.dtype == np.int64


def test_batch_norm_reset_running_stats():
    bn = nn.BatchNorm1d(2)
    bn(nnlite.tensor(np.arange(6, dtype=np.float32).reshape(3, 2)))
    bn.reset_running_stats()
    np.testing.assert_array_equal(bn.running_mean.data, 0)
    np.testing.assert_array_equal(bn.running_var.data, 1)
    assert int(bn.num_batches_tracked.data) == 0


@pytest.mark.torch
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("shape", [(4, 3, 5, 2), (3, 3), (2, 3, 4)])
def test_batch_norm_matches_torch(momentum, shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    cls = "BatchNorm2d" if len(shape) == 4 else "BatchNorm1d"
    tb = getattr(torch.nn, cls)(3, momentum=momentum).double()
    nb = getattr(nn, cls)(3, momentum=momentum).double()
    w, b = rng.normal(size=3), rng.normal(size=3)
    with torch.no_grad():
        tb.weight.copy_(torch.tensor(w))
        tb.bias.copy_(torch.tensor(b))
    nb.load_state_dict({k: v.numpy() for k, v in tb.state_dict().items()})
    for step in range(3):
        x = rng.normal(step, 1 + step, size=shape)
        g = rng.normal(size=shape)
        xt, xn = torch.tensor(x, requires_grad=True), nnlite.tensor(x, requires_grad=True)
        yt, yn = tb(xt), nb(xn)
        yt.backward(torch.tensor(g))
        yn.backward(g)
        np.testing.assert_allclose(yn.data, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(xn.grad, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(nb.weight.grad, tb.weight.grad.numpy(), rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(nb.bias.grad, tb.bias.grad.numpy(), rtol=1e-12)
    for k, v in tb.state_dict().items():
        np.testing.assert_allclose(nb.state_dict()[k], v.numpy(), rtol=1e-13, err_msg=k)
    tb.eval()
    nb.eval()
    x = rng.normal(size=shape)
    np.testing.assert_allclose(nb(nnlite.tensor(x)).data, tb(torch.tensor(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 4, 7), (1, 3, 5, 4), (4, 2, 1, 9)])
@pytest.mark.parametrize("relu", [False, True])
def test_eval_batchnorm_native_affine_matches_float64_formula(shape, dtype, relu):
    """Eval mode on the compiled backend runs one native pass (_train.bn_affine, the ReLU fused
    into it when asked): against the formula in float64, with NaN and -inf passing through."""
    pytest.importorskip("nnlite._train")
    from nnlite.functional.normalization import _batch_norm

    rng = np.random.default_rng(sum(shape))
    c = shape[1]
    x = rng.standard_normal(shape).astype(dtype) * 3
    x.reshape(-1)[0] = np.nan
    x.reshape(-1)[-1] = -np.inf
    rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    ax = (1, c) + (1,) * (len(shape) - 2)
    want = ((x.astype(np.float64) - rm.reshape(ax)) / np.sqrt(rv.reshape(ax) + 1e-5)
            * w.reshape(ax) + b.reshape(ax))
    if relu:
        want = np.where(want <= 0, 0.0, want)                    # NaN passes, as ReLU
    with nnlite.using_backend("cython"):
        got = _batch_norm(nnlite.tensor(x), nnlite.tensor(rm), nnlite.tensor(rv),
                          nnlite.tensor(w), nnlite.tensor(b), False, 0.1, 1e-5,
                          relu=relu).data
    assert got.dtype == dtype and got.shape == shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_running_stats_in_strided_buffers(dtype):
    """The native kernel updates C-contiguous running buffers itself; strided ones (a view of
    every other element of a larger array) take the NumPy update. Both follow the formula, and
    the elements between the strided entries stay untouched."""
    rng = np.random.default_rng(7)
    c = 5
    x = rng.normal(2.0, 3.0, size=(4, c, 3, 3)).astype(dtype)
    store_m = np.full(2 * c, -7.0, dtype)
    store_v = np.full(2 * c, -7.0, dtype)
    store_m[::2], store_v[::2] = rng.normal(size=c), rng.uniform(0.5, 2, c)
    rm0, rv0 = store_m[::2].copy(), store_v[::2].copy()
    rm, rv = nnlite.tensor(store_m[::2]), nnlite.tensor(store_v[::2])
    rm.data, rv.data = store_m[::2], store_v[::2]       # keep the strided views themselves
    cm, cv = nnlite.tensor(rm0.copy()), nnlite.tensor(rv0.copy())
    for r_m, r_v in ((rm, rv), (cm, cv)):
        F.batch_norm(nnlite.tensor(x), r_m, r_v, training=True, momentum=0.25)
    mu = x.astype(np.float64).mean(axis=(0, 2, 3))
    var_u = x.astype(np.float64).var(axis=(0, 2, 3), ddof=1)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    for r_m, r_v in ((rm, rv), (cm, cv)):
        np.testing.assert_allclose(r_m.data, 0.75 * rm0 + 0.25 * mu, rtol=tol, atol=tol)
        np.testing.assert_allclose(r_v.data, 0.75 * rv0 + 0.25 * var_u, rtol=tol, atol=tol)
    assert (store_m[1::2] == -7).all() and (store_v[1::2] == -7).all()
    assert store_m[::2] is not None and np.shares_memory(rm.data, store_m)
