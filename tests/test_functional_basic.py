"""F.relu/relu6/hardtanh/sigmoid/tanh/softmax/log_softmax/linear/dropout: forward vs NumPy
formulas, float64 central-difference gradients, dtype preservation, errors, optional PyTorch
parity."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import nnlite
import nnlite.nn.functional as F
from conftest import assert_close
from gradcheck import check_grad

DTYPES = [np.float32, np.float64]


def _arrays(dtype=np.float64, min_dims=1, max_dims=4, lo=-8.0, hi=8.0):
    return arrays(dtype, array_shapes(min_dims=min_dims, max_dims=max_dims, max_side=5),
                  elements=st.floats(lo, hi, width=32 if dtype == np.float32 else 64))


def _away_from(x, points, gap=1e-3):
    """Move entries within ``gap`` of a kink (finite differences are invalid there)."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + 0.1
    return x


# --------------------------------------------------------------------------- activations
@given(_arrays(np.float32))
def test_relu_matches_numpy(x):
    y = F.relu(nnlite.tensor(x))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.data, np.where(x > 0, x, 0))


@given(_arrays())
def test_relu6_and_hardtanh_match_numpy(x):
    np.testing.assert_array_equal(F.relu6(nnlite.tensor(x)).data, np.minimum(np.maximum(x, 0), 6))
    np.testing.assert_array_equal(F.hardtanh(nnlite.tensor(x), -2.5, 3.0).data,
                                  np.clip(x, -2.5, 3.0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_tanh_match_numpy(dtype):
    x = np.linspace(-30, 30, 61).astype(dtype)
    s = F.sigmoid(nnlite.tensor(x))
    t = F.tanh(nnlite.tensor(x))
    assert s.dtype == dtype and t.dtype == dtype
    ref = 1 / (1 + np.exp(-x.astype(np.float64)))
    assert_close(s, ref.astype(dtype), dtype)
    assert_close(t, np.tanh(x), dtype)


def test_sigmoid_has_no_overflow_on_large_inputs():
    with np.errstate(over="raise", invalid="raise"):
        y = F.sigmoid(nnlite.tensor(np.array([-1000.0, 1000.0])))
    np.testing.assert_array_equal(y.data, [0.0, 1.0])


def test_activation_gradients_match_central_differences():
    rng = np.random.default_rng(1)
    x = _away_from(rng.uniform(-8, 8, (3, 4, 2)), [0.0, 6.0, -1.0, 1.0])
    check_grad(F.relu, [x])
    check_grad(F.relu6, [x])
    check_grad(F.hardtanh, [x])
    check_grad(lambda t: F.hardtanh(t, -3.0, 0.5), [x])
    check_grad(F.sigmoid, [x])
    check_grad(F.tanh, [x])


def test_relu6_and_relu_gradient_is_zero_at_the_kinks():
    # PyTorch: relu'(0) = 0, relu6'(0) = relu6'(6) = 0 (hardtanh), clamp would give 1 there
    x = nnlite.tensor(np.array([-1.0, 0.0, 3.0, 6.0, 7.0]), requires_grad=True)
    F.relu6(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 0, 1, 0, 0])
    x.grad = None
    F.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 0, 1, 1, 1])


def test_hardtanh_rejects_min_above_max():
    with pytest.raises(ValueError, match=r"min_val=2.0, max_val=1.0"):
        F.hardtanh(nnlite.tensor([1.0]), 2.0, 1.0)


def test_sigmoid_rejects_integer_input():
    with pytest.raises(TypeError, match="int64"):
        F.sigmoid(nnlite.Tensor(np.arange(3)))


# --------------------------------------------------------------------------- softmax
def _np_softmax(x, dim):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


@given(_arrays(lo=-50, hi=50), st.data())
def test_softmax_and_log_softmax_match_numpy(x, data):
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim")
    ref = _np_softmax(x, dim)
    y = F.softmax(nnlite.tensor(x), dim)
    np.testing.assert_allclose(y.data, ref, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(y.data.sum(axis=dim), 1.0, rtol=1e-12)
    ly = F.log_softmax(nnlite.tensor(x), dim)
    xs = x - x.max(axis=dim, keepdims=True)
    np.testing.assert_allclose(ly.data, xs - np.log(np.exp(xs).sum(axis=dim, keepdims=True)),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_is_stable_for_huge_logits(dtype):
    x = np.array([[1000.0, 0.0, -1000.0], [-5e4, -5e4, -5e4]], dtype=dtype)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        ly = F.log_softmax(nnlite.tensor(x), 1)
        y = F.softmax(nnlite.tensor(x), 1)
    assert ly.dtype == dtype and y.dtype == dtype
    np.testing.assert_allclose(ly.data[0], [0.0, -1000.0, -2000.0], rtol=1e-6)
    np.testing.assert_allclose(ly.data[1], [-math.log(3)] * 3, rtol=1e-6)
    np.testing.assert_allclose(y.data[0], [1.0, 0.0, 0.0])


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_gradients_match_central_differences(fn, dim):
    x = np.random.default_rng(2).normal(0, 3, (3, 4, 2))
    check_grad(lambda t: fn(t, dim), [x])


def test_softmax_edge_shapes():
    assert F.softmax(nnlite.tensor(np.float64(3.0)), 0).item() == 1.0
    e = F.softmax(nnlite.tensor(np.zeros((3, 0))), 1)
    assert e.shape == (3, 0)
    y = F.log_softmax(nnlite.tensor(np.zeros((0, 4))), 1)
    assert y.shape == (0, 4)


def test_softmax_implicit_dim_warns_and_uses_legacy_rule():
    x = np.random.default_rng(0).normal(size=(2, 3))
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        y = F.softmax(nnlite.tensor(x))
    np.testing.assert_allclose(y.data, _np_softmax(x, 1))
    x3 = np.random.default_rng(0).normal(size=(2, 3, 4))
    with pytest.warns(UserWarning, match="log_softmax"):
        y3 = F.log_softmax(nnlite.tensor(x3))
    np.testing.assert_allclose(y3.data, np.log(_np_softmax(x3, 0)), atol=1e-12)


def test_softmax_dtype_argument_casts_differentiably():
    x = nnlite.tensor(np.array([[1.0, 2.0, 3.0]], dtype=np.float32), requires_grad=True)
    y = F.softmax(x, 1, dtype=np.float64)
    assert y.dtype == np.float64
    (y * nnlite.tensor(np.array([[1.0, 0.0, 0.0]]))).sum().backward()
    assert x.grad.dtype == np.float32
    p = _np_softmax(np.array([[1.0, 2.0, 3.0]]), 1)[0]
    np.testing.assert_allclose(x.grad[0], p[0] * (np.eye(3)[0] - p), rtol=1e-6)


def test_softmax_rejects_bad_dim():
    with pytest.raises(ValueError, match=r"dim 2 is out of range .*\[-2, 1\]"):
        F.softmax(nnlite.tensor(np.zeros((2, 3))), 2)
    with pytest.raises(TypeError, match="dim must be an int"):
        F.log_softmax(nnlite.tensor(np.zeros((2, 3))), 1.0)


# --------------------------------------------------------------------------- linear
@given(st.data())
def test_linear_matches_numpy(data):
    lead = data.draw(st.lists(st.integers(0, 3), min_size=0, max_size=2), label="lead")
    fin = data.draw(st.integers(1, 5), label="in")
    fout = data.draw(st.integers(1, 5), label="out")
    use_bias = data.draw(st.booleans(), label="bias")
    rng = np.random.default_rng(data.draw(st.integers(0, 1000), label="seed"))
    x = rng.normal(size=tuple(lead) + (fin,))
    w = rng.normal(size=(fout, fin))
    b = rng.normal(size=fout) if use_bias else None
    y = F.linear(nnlite.tensor(x), nnlite.tensor(w), None if b is None else nnlite.tensor(b))
    ref = np.einsum("...i,oi->...o", x, w) + (0 if b is None else b)
    assert y.shape == tuple(lead) + (fout,)
    np.testing.assert_allclose(y.data, ref, rtol=1e-12, atol=1e-12)


def test_linear_gradients_match_central_differences():
    rng = np.random.default_rng(3)
    x, w, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(5, 4)), rng.normal(size=5)
    check_grad(F.linear, [x, w, b])
    check_grad(F.linear, [x, w])
    check_grad(F.linear, [rng.normal(size=4), w, b])              # 1-d input
    check_grad(F.linear, [x, rng.normal(size=4)])                  # 1-d weight
    check_grad(F.linear, [rng.normal(size=(2, 4)), w, rng.normal(size=(2, 5))])  # 2-d bias


def test_linear_preserves_dtype_and_rejects_mixed_dtypes():
    x = nnlite.tensor(np.ones((2, 3), np.float32))
    w = nnlite.tensor(np.ones((4, 3), np.float32))
    assert F.linear(x, w).dtype == np.float32
    with pytest.raises(TypeError, match="float32.*float64"):
        F.linear(x, nnlite.tensor(np.ones((4, 3))))


def test_linear_rejects_mismatched_shapes_with_numbers():
    x = nnlite.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(2x3 and 5x4\)"):
        F.linear(x, nnlite.tensor(np.ones((4, 5))))
    with pytest.raises(ValueError, match=r"bias of shape \(5,\).*\(2, 4\)"):
        F.linear(x, nnlite.tensor(np.ones((4, 3))), nnlite.tensor(np.ones(5)))
    with pytest.raises(ValueError, match="0-d"):
        F.linear(nnlite.tensor(np.float64(1)), nnlite.tensor(np.ones((4, 1))))


def test_linear_empty_batch():
    x = nnlite.tensor(np.zeros((0, 3)), requires_grad=True)
    w = nnlite.tensor(np.ones((4, 3)), requires_grad=True)
    y = F.linear(x, w)
    assert y.shape == (0, 4)
    y.backward(np.zeros((0, 4)))
    np.testing.assert_array_equal(w.grad, np.zeros((4, 3)))


# --------------------------------------------------------------------------- dropout
def test_dropout_is_inverted_and_reproducible():
    x = np.ones((200, 50))
    nnlite.manual_seed(5)
    y1 = F.dropout(nnlite.tensor(x), 0.3)
    nnlite.manual_seed(5)
    y2 = F.dropout(nnlite.tensor(x), 0.3)
    np.testing.assert_array_equal(y1.data, y2.data)
    vals = np.unique(y1.data)
    np.testing.assert_allclose(vals, [0.0, 1 / 0.7])
    frac = (y1.data == 0).mean()
    assert abs(frac - 0.3) < 0.02                     # 10000 Bernoulli draws: sd 0.0046
    # the mask is the one drawn from nnlite's generator: u >= p keeps
    nnlite.manual_seed(5)
    keep = nnlite._random.get_rng().random(x.shape) >= 0.3
    np.testing.assert_array_equal(y1.data != 0, keep)


def test_dropout_backward_uses_the_same_mask():
    nnlite.manual_seed(0)
    x = nnlite.tensor(np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32),
                      requires_grad=True)
    y = F.dropout(x, 0.5)
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, (y.data != 0) * np.float32(2.0))


def test_dropout_identity_cases_and_p_one():
    x = nnlite.tensor(np.arange(6.0).reshape(2, 3))
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    z = F.dropout(x, 1.0)
    np.testing.assert_array_equal(z.data, np.zeros((2, 3)))


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_rejects_bad_probability(p):
    with pytest.raises(ValueError, match=f"between 0 and 1, but got {p}"):
        F.dropout(nnlite.tensor([1.0]), p)


# --------------------------------------------------------------------------- torch parity
@pytest.mark.torch
def test_activations_softmax_linear_match_torch():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    rng = np.random.default_rng(7)
    x = rng.normal(0, 4, (3, 5, 2))
    x[0, 0, 0], x[0, 1, 0], x[0, 2, 0] = 0.0, 6.0, -1.0           # kinks
    g = rng.normal(size=x.shape)
    cases = [(F.relu, tf.relu), (F.relu6, tf.relu6), (F.hardtanh, tf.hardtanh),
             (F.sigmoid, torch.sigmoid), (F.tanh, torch.tanh),
             (lambda t: F.softmax(t, 1), lambda t: tf.softmax(t, 1)),
             (lambda t: F.log_softmax(t, -1), lambda t: tf.log_softmax(t, -1))]
    for ours, theirs in cases:
        xn = nnlite.tensor(x, requires_grad=True)
        xt = torch.tensor(x, requires_grad=True)
        yn, yt = ours(xn), theirs(xt)
        yn.backward(g)
        yt.backward(torch.tensor(g))
        np.testing.assert_allclose(yn.data, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(xn.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    w, b = rng.normal(size=(4, 2)), rng.normal(size=4)
    yn = F.linear(nnlite.tensor(x), nnlite.tensor(w), nnlite.tensor(b))
    yt = tf.linear(torch.tensor(x), torch.tensor(w), torch.tensor(b))
    np.testing.assert_allclose(yn.data, yt.numpy(), rtol=1e-12)
