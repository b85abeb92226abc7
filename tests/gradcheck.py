"""float64 central-difference gradient checks (independent of every backward we wrote)."""
import numpy as np

import nnlite


def numerical_grad(f, x, eps=1e-6):
    """d(sum(f(x) * g))/dx by central differences, for an ndarray x modified in place."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        grad[i] = (fp - fm) / (2 * eps)
        it.iternext()
    return grad


def check_grad(fn, inputs, rtol=1e-5, atol=1e-7, seed=0):
    """Compare autograd gradients of ``sum(fn(*tensors) * G)`` with central differences.

    ``inputs``: float64 ndarrays (differentiated) or anything else (passed through unchanged).
    G is a fixed random weighting so that every output element matters.
    """
    rng = np.random.default_rng(seed)
    arrays = [np.array(a, dtype=np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
              else a for a in inputs]
    diff = [i for i, a in enumerate(arrays) if isinstance(a, np.ndarray) and a.dtype.kind == "f"]

    def run(track):
        args = [nnlite.tensor(a, requires_grad=track and i in diff) if i in diff else a
                for i, a in enumerate(arrays)]
        return fn(*args), args

    out, _ = run(False)
    g = rng.standard_normal(np.shape(out.data))
    out, args = run(True)
    out.backward(g)
    for i in diff:
        def f():
            return float(np.sum(fn(*[nnlite.tensor(a) if j in diff else a
                                     for j, a in enumerate(arrays)]).data * g))
        num = numerical_grad(f, arrays[i])
        got = args[i].grad
        assert got is not None, f"input {i} received no gradient"
        np.testing.assert_allclose(got, num, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i} (shape {arrays[i].shape})")
