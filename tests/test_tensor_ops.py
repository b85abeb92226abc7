"""Every differentiable Tensor op: forward vs NumPy, gradient vs float64 central differences."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnlite
from gradcheck import check_grad

finite = st.floats(-3, 3, allow_nan=False, width=64)


def arrays(shape):
    return hnp.arrays(np.float64, shape, elements=finite)


@st.composite
def broadcast_pair(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    a_shape, b_shape = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, base_shape=shape,
                                                             max_side=4)).input_shapes
    return draw(arrays(a_shape)), draw(arrays(b_shape))


BINARY = [
    ("add", lambda a, b: a + b, np.add),
    ("sub", lambda a, b: a - b, np.subtract),
    ("mul", lambda a, b: a * b, np.multiply),
]


@pytest.mark.parametrize("name,op,ref", BINARY, ids=[b[0] for b in BINARY])
@given(pair=broadcast_pair())
def test_binary_op_matches_numpy_and_gradcheck(name, op, ref, pair):
    a, b = pair
    out = op(nnlite.tensor(a), nnlite.tensor(b))
    np.testing.assert_allclose(out.data, ref(a, b))
    check_grad(op, [a, b])


@given(pair=broadcast_pair())
def test_div_matches_numpy_and_gradcheck(pair):
    a, b = pair
    b = np.where(np.abs(b) < 0.5, 1.5, b)
    np.testing.assert_allclose((nnlite.tensor(a) / nnlite.tensor(b)).data, a / b)
    check_grad(lambda x, y: x / y, [a, b])


@given(a=arrays((3, 4)), p=st.sampled_from([2.0, 3.0, 0.5]))
def test_pow_matches_numpy_and_gradcheck(a, p):
    a = np.abs(a) + 0.5
    e = np.full((1, 4), p)
    np.testing.assert_allclose((nnlite.tensor(a) ** p).data, a ** p)
    check_grad(lambda x, y: x ** y, [a, e])


def test_scalars_on_either_side_keep_float32():
    x = nnlite.tensor(np.ones((2, 2), np.float32), requires_grad=True)
    for y in (x + 1, 1 + x, x - 2.5, 2.5 - x, x * 3, 3 * x, x / 2, 2 / x, x ** 2, 2 ** x, -x):
        assert y.dtype == np.float32
    np.testing.assert_allclose((2 - x).data, np.ones((2, 2)))
    np.testing.assert_allclose((2 / (x + 1)).data, np.ones((2, 2)))
    y = (3 - x) * 2 + x / 4
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full((2, 2), -2 + 0.25))


def test_broadcast_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        nnlite.tensor(np.ones((2, 3))) + nnlite.tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        nnlite.tensor(np.ones((2, 3))) @ nnlite.tensor(np.ones((4, 5)))


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((2, 3, 4), (4, 2)), ((4,), (4, 3)),
                                   ((3, 4), (4,)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4,))])
def test_matmul_batched_and_vectors(sa, sb):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    np.testing.assert_allclose((nnlite.tensor(a) @ nnlite.tensor(b)).data, a @ b)
    check_grad(lambda x, y: x @ y, [a, b])


@given(a=arrays((2, 3, 4)), dim=st.sampled_from([None, 0, 1, 2, -1, (0, 2)]),
       keep=st.booleans())
def test_sum_mean_match_numpy_and_gradcheck(a, dim, keep):
    for name in ("sum", "mean"):
        out = getattr(nnlite.tensor(a), name)(dim, keepdim=keep)
        np.testing.assert_allclose(out.data, getattr(a, name)(axis=dim, keepdims=keep))
        check_grad(lambda x: getattr(x, name)(dim, keepdim=keep), [a])


def test_sum_accepts_numpy_axis_keyword():
    a = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_allclose(nnlite.tensor(a).sum(axis=(0, 2)).data, a.sum(axis=(0, 2)))
    np.testing.assert_allclose(nnlite.tensor(a).mean(axis=1).data, a.mean(axis=1))


@given(a=hnp.arrays(np.float64, (3, 4), elements=st.integers(-3, 3).map(float)))
def test_max_forward_and_tie_gradients(a):
    x = nnlite.tensor(a, requires_grad=True)
    x.max().backward()
    mask = a == a.max()
    np.testing.assert_allclose(x.grad, mask / mask.sum())
    vals, idx = nnlite.tensor(a).max(1)
    np.testing.assert_array_equal(vals.data, a.max(1))
    np.testing.assert_array_equal(idx.data, a.argmax(1))
    x = nnlite.tensor(a, requires_grad=True)
    x.max(1)[0].sum().backward()
    expect = np.zeros_like(a)
    expect[np.arange(3), a.argmax(1)] = 1
    np.testing.assert_array_equal(x.grad, expect)
    np.testing.assert_allclose(nnlite.tensor(a).max(axis=0, keepdim=True).data,
                               a.max(0, keepdims=True))


def test_max_gradcheck_without_ties():
    a = np.random.default_rng(1).permutation(12).reshape(3, 4).astype(float)
    check_grad(lambda x: x.max(axis=1), [a])
    check_grad(lambda x: x.max(0)[0], [a])


def test_shape_ops_and_gradcheck():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((2, 3, 4))
    t = nnlite.tensor(a)
    np.testing.assert_array_equal(t.reshape(6, 4).data, a.reshape(6, 4))
    np.testing.assert_array_equal(t.reshape((4, -1)).data, a.reshape(4, -1))
    np.testing.assert_array_equal(t.transpose(0, 2).data, a.transpose(2, 1, 0))
    np.testing.assert_array_equal(t.permute(1, 2, 0).data, a.transpose(1, 2, 0))
    np.testing.assert_array_equal(t.flatten(1).data, a.reshape(2, 12))
    np.testing.assert_array_equal(t.flatten().data, a.reshape(24))
    np.testing.assert_array_equal(t.unsqueeze(1).squeeze(1).data, a)
    for fn in (lambda x: x.reshape(4, 6), lambda x: x.transpose(0, 2), lambda x: x.permute(2, 0, 1),
               lambda x: x.flatten(1), lambda x: x.T):
        check_grad(fn, [a])
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(5, 5\)"):
        t.reshape(5, 5)


@pytest.mark.parametrize("index", [
    (slice(None), 1), (0, slice(1, None)), (Ellipsis, slice(None, None, -1)),
    (np.array([0, 2, 0]),), (slice(None), np.array([1, 1, 3])),
])
def test_getitem_slices_and_integer_arrays_accumulate(index):
    a = np.random.default_rng(3).standard_normal((3, 4))
    np.testing.assert_array_equal(nnlite.tensor(a)[index].data, a[index])
    check_grad(lambda x: x[index], [a])


ELEMENTWISE = [
    ("exp", lambda x: x.exp(), np.exp, None),
    ("log", lambda x: x.log(), np.log, "positive"),
    ("tanh", lambda x: x.tanh(), np.tanh, None),
    ("sigmoid", lambda x: x.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), None),
    ("relu", lambda x: x.relu(), lambda a: np.maximum(a, 0), "away"),
    ("clamp", lambda x: x.clamp(-1, 0.5), lambda a: np.clip(a, -1, 0.5), "away"),
    ("sqrt", lambda x: x.sqrt(), np.sqrt, "positive"),
    ("abs", lambda x: x.abs(), np.abs, "away"),
]


@pytest.mark.parametrize("name,fn,ref,domain", ELEMENTWISE, ids=[e[0] for e in ELEMENTWISE])
@given(a=arrays((3, 3)))
def test_elementwise_matches_numpy_and_gradcheck(name, fn, ref, domain, a):
    if domain == "positive":
        a = np.abs(a) + 0.1
    elif domain == "away":  # keep away from the kinks at 0, -1, 0.5
        a = np.where(np.min(np.abs(a[..., None] - np.array([0, -1, 0.5])), -1) < 1e-3, 0.25, a)
    np.testing.assert_allclose(fn(nnlite.tensor(a)).data, ref(a), rtol=1e-12)
    check_grad(fn, [a])


def test_sigmoid_is_stable_at_the_tails():
    x = nnlite.tensor(np.array([-1000.0, 0.0, 1000.0], np.float32))
    np.testing.assert_array_equal(x.sigmoid().data, np.array([0.0, 0.5, 1.0], np.float32))


@given(a=arrays((2, 3)), b=arrays((4, 3)), c=arrays((2, 3)))
def test_cat_and_stack_match_numpy_and_gradcheck(a, b, c):
    np.testing.assert_array_equal(nnlite.cat([a, b], 0).data, np.concatenate([a, b]))
    np.testing.assert_array_equal(nnlite.stack([a, c], 1).data, np.stack([a, c], 1))
    check_grad(lambda x, y: nnlite.cat([x, y], 0), [a, b])
    check_grad(lambda x, y: nnlite.stack([x, y], 2), [a, c])
    with pytest.raises(ValueError, match="differ outside dim"):
        nnlite.cat([a, b], 1)


def test_tensor_factory_dtypes():
    assert nnlite.tensor(1.5).dtype == np.float32
    assert nnlite.tensor([1, 2, 3]).dtype == np.float32
    assert nnlite.tensor(np.zeros(2, np.float64)).dtype == np.float64
    assert nnlite.tensor(np.zeros(2, np.float32)).dtype == np.float32
    assert nnlite.tensor(np.array([1, 2])).dtype.kind == "i"
    with pytest.raises(TypeError, match="only floating"):
        nnlite.tensor(np.array([1, 2]), requires_grad=True)
    with pytest.raises(TypeError, match="float16"):
        nnlite.tensor(np.zeros(2, np.float16))
    a = np.ones(3, np.float32)
    t = nnlite.tensor(a)
    a[0] = 5
    assert t.data[0] == 1  # tensor() copies
    x = nnlite.tensor(np.ones((2, 2)), requires_grad=True)
    assert x.detach().requires_grad is False and x.numpy() is x.data
    assert nnlite.tensor(3.0).item() == 3.0


def test_dim_arguments_are_validated_not_wrapped():
    t = nnlite.tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="2 dims"):
        t.permute(0, 3)
    with pytest.raises(ValueError, match="dim 3 is out of range"):
        t.unsqueeze(3)
    with pytest.raises(ValueError, match="dim 2 is out of range"):
        t.squeeze(2)
    assert t.unsqueeze(-1).shape == (2, 3, 1) and t.unsqueeze(2).shape == (2, 3, 1)
    assert t.permute(-1, 0).shape == (3, 2)


def test_transcendental_ops_promote_integer_tensors():
    t = nnlite.tensor(np.array([0, 1, 2]))
    np.testing.assert_allclose(t.sigmoid().data, 1 / (1 + np.exp(-np.array([0.0, 1, 2]))),
                               rtol=1e-6)
    assert t.exp().dtype == np.float32
