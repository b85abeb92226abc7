"""Reverse-mode autograd core: the ``Function`` base class and grad-mode switches.

An op is a ``Function`` subclass with ``forward(*arrays, **params) -> ndarray`` and
``backward(gy) -> gradient | tuple of gradients`` working on NumPy arrays (no double backward,
deliberately). ``Fn.apply(*inputs, **params)`` runs forward on the raw arrays and, when grad mode
is on and some input requires grad, attaches the Function to the result as its ``_ctx``.
"""
import contextlib
import sys
import threading

import numpy as np

_state = threading.local()


def is_grad_enabled():
    return getattr(_state, "enabled", True)


def set_grad_enabled(mode):
    _state.enabled = bool(mode)


@contextlib.contextmanager
def no_grad():
    """Context in which ops build no graph and keep no saved arrays."""
    prev = is_grad_enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = prev


@contextlib.contextmanager
def enable_grad():
    prev = is_grad_enabled()
    _state.enabled = True
    try:
        yield
    finally:
        _state.enabled = prev


def _fusing_allowed():
    """False while every op must run as its own Function (``exact_ops``): modules then skip
    their fused eval-mode shortcuts, which call kernels without a Function per op."""
    return not getattr(_state, "exact", False)


@contextlib.contextmanager
def exact_ops():
    """Context in which modules run every op as its own ``Function.apply`` (the inference
    tracer records one node per op, and folds BatchNorms itself)."""
    prev = getattr(_state, "exact", False)
    _state.exact = True
    try:
        yield
    finally:
        _state.exact = prev


class Function:
    """Base class of differentiable ops.

    Subclasses implement ``forward`` and ``backward``. ``forward`` may return a tuple whose first
    entry is the differentiable output and the rest are auxiliary outputs (indices, ...) returned
    as plain tensors. ``backward`` returns one entry per input (``None`` where
    ``needs_input_grad[i]`` is false; it must do no work for those).
    """

    __slots__ = ("needs_input_grad", "saved_tensors", "parents", "__dict__")

    def __init__(self):
        self.needs_input_grad = ()
        self.saved_tensors = ()
        self.parents = ()

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays

    @property
    def requires_grad(self):
        """True when backward will be called: forward may skip saving anything otherwise."""
        return any(self.needs_input_grad)

    def forward(self, *arrays, **params):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, gy):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        Tensor = _Tensor or _tensor_class()
        tensors = tuple([t if isinstance(t, Tensor) else Tensor(t) for t in inputs])
        ctx = cls()
        if getattr(_state, "enabled", True):
            needs = tuple([t.requires_grad for t in tensors])
        else:
            needs = (False,) * len(tensors)
        ctx.needs_input_grad = needs
        out = ctx.forward(*[t.data for t in tensors], **params)
        aux = ()
        if isinstance(out, tuple):
            out, aux = out[0], out[1:]
        track = any(needs)
        result = Tensor._wrap(out, track)
        if track:
            result._ctx = ctx
            ctx.parents = tensors
        else:
            ctx.saved_tensors = ()
        if aux:
            return (result,) + tuple([Tensor._wrap(a, False) for a in aux])
        return result


_Tensor = None


def _tensor_class():
    """nnlite.tensor.Tensor (imported on first use: tensor.py imports this module)."""
    global _Tensor
    if _Tensor is None:
        from .tensor import Tensor
        _Tensor = Tensor
    return _Tensor


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape`` (the adjoint of NumPy broadcasting)."""
    if grad.shape == tuple(shape):
        return grad
    ndiff = grad.ndim - len(shape)
    if ndiff > 0:
        grad = grad.sum(axis=tuple(range(ndiff)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _release(ctx):
    """Drop what a Function kept for its backward (saved arrays, its inputs, attributes set by
    forward): after it ran without retain_graph, its activations can be freed while the rest of
    the backward runs (PyTorch frees its saved buffers the same way)."""
    ctx.saved_tensors = ()
    ctx.parents = ()
    ctx.__dict__.clear()
    ctx.__dict__["_released"] = True


def _private(a, refs):
    """True when ndarray ``a`` may be written in place or kept without a copy: it owns its
    C-contiguous, writeable data and no other reference to it exists (``refs``: the references
    the caller holds plus this function's parameter and getrefcount's argument). A view, a
    broadcast or an array that a Function saved, returned twice or that the user holds fails
    the test and is copied, as before; the check is CPython's reference count, which only errs
    on the side of copying where the counts are exact (see ``_REFCOUNT_EXACT``)."""
    if not _REFCOUNT_EXACT:
        return False
    f = a.flags
    return f.owndata and f.c_contiguous and f.writeable and sys.getrefcount(a) <= refs


# The counts above are those of CPython up to 3.13 with the GIL. CPython 3.14 loads locals as
# borrowed references (getrefcount may then report fewer holders than exist) and the
# free-threaded build counts differently, so there (and on other interpreters) nothing is
# adopted or summed in place: the gradients are copied as before, never shared by mistake.
_REFCOUNT_EXACT = (sys.implementation.name == "cpython" and sys.version_info[:2] <= (3, 13)
                   and getattr(sys, "_is_gil_enabled", lambda: True)())


def backward(root, grad, retain_graph=False):
    """Propagate ``grad`` from ``root`` through the graph (iterative topological order).

    Without ``retain_graph`` every Function is released right after its backward ran (its
    saved arrays and links to its inputs dropped), so the forward's activations are freed as
    the backward goes instead of staying alive to its end; a second backward through the same
    graph then raises RuntimeError, as in PyTorch.
    """
    order = []
    visited = set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        ctx = node._ctx
        if ctx is not None:
            if ctx.__dict__.get("_released"):
                raise RuntimeError(
                    f"backward through the graph a second time ({type(ctx).__name__}'s saved "
                    "arrays were already freed); pass retain_graph=True to the first "
                    "backward() to keep them")
            for p in ctx.parents:
                if p.requires_grad and id(p) not in visited:
                    stack.append((p, False))
    grads = {id(root): grad}
    for i in range(len(order) - 1, -1, -1):
        node = order[i]
        order[i] = None                   # this list no longer keeps the node's data alive
        g = grads.pop(id(node), None)
        if g is None:
            continue
        ctx = node._ctx
        if ctx is None:
            # leaf: accumulate into .grad (adopting g when nothing else can see it)
            if node.grad is None:
                node.grad = g if _private(g, 3) and g.dtype == node.data.dtype \
                    else np.array(g, dtype=node.data.dtype, copy=True)
            else:
                node.grad += g
            continue
        if node._retain_grad:
            node.grad = g.copy() if node.grad is None else node.grad + g
        gins = ctx.backward(g)
        if not isinstance(gins, tuple):
            gins = (gins,)
        if len(gins) != len(ctx.parents):  # pragma: no cover - programming error
            raise RuntimeError(
                f"{type(ctx).__name__}.backward returned {len(gins)} gradients "
                f"for {len(ctx.parents)} inputs"
            )
        parents, needs = ctx.parents, ctx.needs_input_grad
        if not retain_graph:
            _release(ctx)
        for p, gp, need in zip(parents, gins, needs):
            if not need or gp is None:
                continue
            if type(gp) is not np.ndarray:
                gp = np.asarray(gp)
            pdata = p.data
            if gp.shape != pdata.shape:  # pragma: no cover - programming error
                raise RuntimeError(
                    f"{type(ctx).__name__}.backward gave a gradient of shape {gp.shape} "
                    f"for an input of shape {pdata.shape}"
                )
            if gp.dtype != pdata.dtype:
                gp = gp.astype(pdata.dtype)
            key = id(p)
            prev = grads.get(key)
            if prev is None:
                grads[key] = gp
            elif _private(prev, 4):
                prev += gp                # the sum in place: no other holder of prev
            else:
                grads[key] = prev + gp
