"""Autograd core: fan-out accumulation, deep chains, no_grad, needs_input_grad, errors."""
import gc
import weakref

import numpy as np
import pytest

import nnlite
from nnlite.autograd import Function


def test_fanout_accumulates_gradients():
    x = nnlite.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = x * x + x * 3 + x  # x used four times
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 4)


def test_diamond_graph_shared_intermediate():
    x = nnlite.tensor(np.array([0.5, -1.0]), requires_grad=True)
    h = x.tanh()
    y = h * h + h.exp()
    y.sum().backward()
    t = np.tanh(x.data)
    np.testing.assert_allclose(x.grad, (2 * t + np.exp(t)) * (1 - t * t))


def test_grad_accumulates_across_backward_calls():
    x = nnlite.tensor(np.ones(3), requires_grad=True)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 5.0))


def test_deep_chain_of_10000_ops_is_iterative():
    x = nnlite.tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(10000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 10000], rtol=1e-9)


class _Recorder(Function):
    calls = []

    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        _Recorder.calls.append(self.needs_input_grad)
        return (gy if self.needs_input_grad[0] else None,
                gy if self.needs_input_grad[1] else None)


def test_backward_asks_only_for_needed_gradients():
    _Recorder.calls.clear()
    a = nnlite.tensor(np.ones(2), requires_grad=True)
    b = nnlite.tensor(np.ones(2))
    _Recorder.apply(a, b).sum().backward()
    assert _Recorder.calls == [(True, False)]
    assert b.grad is None


def test_no_grad_builds_no_graph_and_keeps_no_saved_arrays():
    x = nnlite.tensor(np.ones((100, 100)), requires_grad=True)
    with nnlite.no_grad():
        y = (x * x).exp()
    assert not y.requires_grad and y._ctx is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()
    assert nnlite.is_grad_enabled()


def test_graph_is_freed_with_its_output():
    x = nnlite.tensor(np.ones(10), requires_grad=True)
    y = x * 2
    ref = weakref.ref(y._ctx)
    del y
    gc.collect()
    assert ref() is None


def test_backward_on_non_scalar_needs_grad_of_matching_shape():
    x = nnlite.tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="scalar outputs"):
        y.backward()
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        y.backward(np.ones(3))
    y.backward(nnlite.tensor(np.full((2, 3), 0.5)))
    np.testing.assert_allclose(x.grad, np.ones((2, 3)))


def test_gradient_has_the_tensor_dtype():
    x = nnlite.tensor(np.ones(3, np.float32), requires_grad=True)
    (x * nnlite.tensor(np.ones(3, np.float64))).sum().backward()
    assert x.grad.dtype == np.float32


def test_retain_grad_on_intermediate():
    x = nnlite.tensor(np.array([2.0]), requires_grad=True)
    h = (x * 3).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, [12.0])
    np.testing.assert_allclose(x.grad, [36.0])


def test_integer_tensors_are_not_differentiable_but_usable_as_indices():
    idx = nnlite.tensor(np.array([2, 0]))
    x = nnlite.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    x[idx].sum().backward()
    np.testing.assert_allclose(x.grad, [1.0, 0.0, 1.0])


def test_backward_releases_the_graph_unless_retained():
    """PyTorch's retain_graph: by default each Function drops its saved arrays and input links
    right after its backward (activations freed during the backward), and a second backward
    through the graph raises; with retain_graph=True gradients accumulate over both."""
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((3, 4))
    w0 = rng.standard_normal((4, 2))
    x = nnlite.tensor(x0, requires_grad=True)
    w = nnlite.tensor(w0, requires_grad=True)
    h = (x @ w).relu()
    loss = (h * h).sum()
    loss.backward(retain_graph=True)
    g1 = x.grad.copy()
    assert loss._ctx.parents and h._ctx.saved_tensors
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * g1, rtol=1e-12)
    hp = np.maximum(x0 @ w0, 0)
    np.testing.assert_allclose(g1, (2 * hp * (hp > 0)) @ w0.T, rtol=1e-12)
    assert loss._ctx.parents == () and loss._ctx.saved_tensors == ()
    assert h._ctx.parents == () and h._ctx.saved_tensors == ()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        h.backward(np.ones((3, 2)))                     # a released inner node too


@pytest.mark.parametrize("refcount_exact", [True, False])
def test_gradients_never_alias_what_another_holder_sees(monkeypatch, refcount_exact):
    # both with the reference-count shortcut (CPython <= 3.13) and with it off (3.14,
    # free-threaded, other interpreters: every gradient copied)
    monkeypatch.setattr(nnlite.autograd, "_REFCOUNT_EXACT", refcount_exact)
    # the backward adopts a fresh gradient as a leaf's .grad and sums fan-in gradients in
    # place only when no other reference exists: shared gradient arrays (Add returns gy to
    # both inputs), the user's grad argument, retained graphs and views must stay separate
    a = nnlite.tensor(np.arange(4.0), requires_grad=True)
    b = nnlite.tensor(np.ones(4), requires_grad=True)
    (a + b).backward(np.full(4, 2.0))
    a.grad += 10
    np.testing.assert_array_equal(b.grad, np.full(4, 2.0))

    user = np.full(4, 3.0)
    leaf = nnlite.tensor(np.ones(4), requires_grad=True)
    leaf.backward(user)
    leaf.grad += 1
    np.testing.assert_array_equal(user, np.full(4, 3.0))

    # fan-in through views and a reused input; a retained graph run twice accumulates
    x = nnlite.tensor(np.arange(6.0), requires_grad=True)
    y = x.reshape(2, 3) * 2.0 + x.reshape(2, 3) + (x * x).reshape(2, 3)
    gy = np.arange(6.0).reshape(2, 3)
    y.backward(gy, retain_graph=True)
    want = gy.reshape(-1) * (3.0 + 2 * np.arange(6.0))
    np.testing.assert_allclose(x.grad, want)
    first = x.grad
    y.backward(gy)
    np.testing.assert_allclose(x.grad, 2 * want)
    assert x.grad is first                       # accumulated in place into .grad
    np.testing.assert_array_equal(gy, np.arange(6.0).reshape(2, 3))
