"""Differentiable elementwise, reduction and shape ops behind ``Tensor``'s methods.

Each op is a ``Function`` on NumPy arrays. Broadcasting binary ops check shapes up front and
raise ``ValueError`` naming both shapes; their backward sums the gradient back to each input's
shape (``unbroadcast``).
"""
import numpy as np

from .autograd import Function, unbroadcast


def _broadcast_shape(op, a, b):
    try:
        return np.broadcast_shapes(np.shape(a), np.shape(b))
    except ValueError:
        raise ValueError(
            f"{op}: shapes {tuple(np.shape(a))} and {tuple(np.shape(b))} cannot be broadcast together"
        ) from None


class _Binary(Function):
    name = "binary"

    def forward(self, a, b):
        _broadcast_shape(self.name, a, b)
        self.shapes = (a.shape, b.shape)
        return self.compute(a, b)


class Add(_Binary):
    name = "add"

    def compute(self, a, b):
        return a + b

    def backward(self, gy):
        sa, sb = self.shapes
        return (unbroadcast(gy, sa) if self.needs_input_grad[0] else None,
                unbroadcast(gy, sb) if self.needs_input_grad[1] else None)


class Sub(_Binary):
    name = "sub"

    def compute(self, a, b):
        return a - b

    def backward(self, gy):
        sa, sb = self.shapes
        return (unbroadcast(gy, sa) if self.needs_input_grad[0] else None,
                unbroadcast(-gy, sb) if self.needs_input_grad[1] else None)


class Mul(_Binary):
    name = "mul"

    def compute(self, a, b):
        self.save_for_backward(a if self.needs_input_grad[1] else None,
                               b if self.needs_input_grad[0] else None)
        return a * b

    def backward(self, gy):
        a, b = self.saved_tensors
        sa, sb = self.shapes
        return (unbroadcast(gy * b, sa) if self.needs_input_grad[0] else None,
                unbroadcast(gy * a, sb) if self.needs_input_grad[1] else None)


class Div(_Binary):
    name = "div"

    def compute(self, a, b):
        self.save_for_backward(a, b)
        return a / b

    def backward(self, gy):
        a, b = self.saved_tensors
        sa, sb = self.shapes
        ga = unbroadcast(gy / b, sa) if self.needs_input_grad[0] else None
        gb = unbroadcast(-gy * a / (b * b), sb) if self.needs_input_grad[1] else None
        return ga, gb


class Pow(_Binary):
    name = "pow"

    def compute(self, a, b):
        y = a ** b
        self.save_for_backward(a, b, y)
        return y

    def backward(self, gy):
        a, b, y = self.saved_tensors
        sa, sb = self.shapes
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = unbroadcast(gy * b * a ** (b - 1), sa)
        if self.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                loga = np.where(a > 0, np.log(np.where(a > 0, a, 1)), 0)
            gb = unbroadcast(gy * y * loga, sb)
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, gy):
        return -gy


class MatMul(Function):
    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: both arguments need at least 1 dimension, got shapes "
                             f"{a.shape} and {b.shape}")
        ka = a.shape[-1]
        kb = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if ka != kb:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned "
                             f"({ka} != {kb})")
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} "
                             "cannot be broadcast") from None
        self.save_for_backward(a, b)
        return np.asarray(np.matmul(a, b))

    def backward(self, gy):
        a, b = self.saved_tensors
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        # gradient in the 2-D-operand form: (..., M, N), re-inserting the dims a 1-D operand dropped
        g2 = gy.reshape(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
                        + (a2.shape[-2], b2.shape[-1]))
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = np.matmul(g2, np.swapaxes(b2, -1, -2))  # (..., M, N) @ (..., N, K) -> (..., M, K)
            ga = unbroadcast(ga, a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            gb = np.matmul(np.swapaxes(a2, -1, -2), g2)  # (..., K, M) @ (..., M, N) -> (..., K, N)
            gb = unbroadcast(gb, b2.shape).reshape(b.shape)
        return ga, gb


def _norm_axis(axis, ndim, op):
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for ax in axes:
        if not isinstance(ax, (int, np.integer)) or isinstance(ax, bool):
            raise TypeError(f"{op}: dim must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= ax < max(ndim, 1):
            raise ValueError(f"{op}: dim {ax} is out of range for a tensor of {ndim} dims")
        out.append(int(ax) % max(ndim, 1))
    return tuple(sorted(set(out)))


def _expand_reduced(g, shape, axes, keepdim):
    if axes is None:
        return np.broadcast_to(np.reshape(g, (1,) * len(shape)), shape)
    if not keepdim:
        g = np.expand_dims(g, axes)
    return np.broadcast_to(g, shape)


class Sum(Function):
    def forward(self, a, axis=None, keepdim=False):
        self.shape, self.axis, self.keepdim = a.shape, axis, keepdim
        return np.asarray(a.sum(axis=axis, keepdims=keepdim))

    def backward(self, gy):
        return np.ascontiguousarray(_expand_reduced(gy, self.shape, self.axis, self.keepdim))


class Mean(Function):
    def forward(self, a, axis=None, keepdim=False):
        self.shape, self.axis, self.keepdim = a.shape, axis, keepdim
        axes = range(a.ndim) if axis is None else axis
        self.count = int(np.prod([a.shape[i] for i in axes])) if a.ndim else 1
        return np.asarray(a.mean(axis=axis, keepdims=keepdim))

    def backward(self, gy):
        g = _expand_reduced(gy, self.shape, self.axis, self.keepdim)
        return g / np.asarray(self.count, dtype=gy.dtype)


class Max(Function):
    """max over axes; the gradient is split evenly among tied maxima (as torch.amax)."""

    def forward(self, a, axis=None, keepdim=False):
        if a.size == 0:
            raise ValueError(f"max: cannot reduce an empty tensor of shape {a.shape}")
        y = np.max(a, axis=axis, keepdims=True)
        self.axis, self.keepdim = axis, keepdim
        if self.requires_grad:
            self.save_for_backward(a, y)
        return np.asarray(y if keepdim else np.squeeze(y, axis=axis) if axis is not None
                          else y.reshape(()))

    def backward(self, gy):
        a, y = self.saved_tensors
        mask = (a == y)
        count = mask.sum(axis=self.axis, keepdims=True)
        g = gy if self.keepdim else (np.expand_dims(gy, self.axis) if self.axis is not None
                                     else np.reshape(gy, (1,) * a.ndim))
        return (mask * (g / count)).astype(a.dtype)


class MaxDim(Function):
    """torch.max(x, dim): values and (auxiliary) int64 indices of the first maximum."""

    def forward(self, a, dim, keepdim=False):
        idx = np.argmax(a, axis=dim)
        idx = np.expand_dims(idx, dim)
        vals = np.take_along_axis(a, idx, axis=dim)
        self.shape, self.dim, self.keepdim, self.idx = a.shape, dim, keepdim, idx
        if not keepdim:
            vals, idx = np.squeeze(vals, dim), np.squeeze(idx, dim)
        return np.ascontiguousarray(vals), idx.astype(np.int64)

    def backward(self, gy):
        g = np.zeros(self.shape, dtype=gy.dtype)
        gy = gy if self.keepdim else np.expand_dims(gy, self.dim)
        np.put_along_axis(g, self.idx, gy, axis=self.dim)
        return g


class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} "
                             f"(size {a.size}) into shape {tuple(shape)}") from None

    def backward(self, gy):
        return gy.reshape(self.shape)


class Permute(Function):
    def forward(self, a, axes):
        if sorted(axes) != list(range(a.ndim)):
            raise ValueError(f"permute: {tuple(axes)} is not a permutation of the "
                             f"{a.ndim} dims of a tensor of shape {a.shape}")
        self.axes = axes
        return np.transpose(a, axes)

    def backward(self, gy):
        return np.transpose(gy, np.argsort(self.axes))


class GetItem(Function):
    def forward(self, a, index):
        self.shape, self.index = a.shape, index
        return np.asarray(a[index])

    def backward(self, gy):
        g = np.zeros(self.shape, dtype=gy.dtype)
        if _basic_index(self.index):
            g[self.index] = gy          # a view: every element at most once, no add.at needed
        else:
            np.add.at(g, self.index, gy)
        return g


def _basic_index(index):
    """True for NumPy basic indexing (ints, slices, Ellipsis, None): the result is a view, so no
    element of the source is selected twice."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, slice)
               or (isinstance(p, (int, np.integer)) and not isinstance(p, bool))
               for p in parts)


class Exp(Function):
    def forward(self, a):
        y = np.exp(a)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        return gy * self.saved_tensors[0]


class Log(Function):
    def forward(self, a):
        self.save_for_backward(a)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(a)

    def backward(self, gy):
        return gy / self.saved_tensors[0]


class Sqrt(Function):
    def forward(self, a):
        y = np.sqrt(a)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        return gy / (2 * self.saved_tensors[0])


class Abs(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return np.abs(a)

    def backward(self, gy):
        return gy * np.sign(self.saved_tensors[0])


class Tanh(Function):
    def forward(self, a):
        y = np.tanh(a)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        y = self.saved_tensors[0]
        return gy * (1 - y * y)


def _sigmoid(a):
    # numerically stable on both tails: never exp of a large positive number
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)


class Sigmoid(Function):
    def forward(self, a):
        y = _sigmoid(a)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        y = self.saved_tensors[0]
        return gy * y * (1 - y)


class Clamp(Function):
    """clamp(min, max). Gradient passes where min <= x <= max (torch.clamp's convention at the
    boundaries; F.relu6 is hardtanh instead, whose gradient is 0 at exactly 0 and 6)."""

    def forward(self, a, min=None, max=None):
        if self.requires_grad:
            mask = np.ones(a.shape, dtype=bool)
            if min is not None:
                mask &= a >= min
            if max is not None:
                mask &= a <= max
            self.save_for_backward(mask)
        y = a
        if min is not None:
            y = np.maximum(y, np.asarray(min, dtype=a.dtype))
        if max is not None:
            y = np.minimum(y, np.asarray(max, dtype=a.dtype))
        return np.array(y, copy=y is a)

    def backward(self, gy):
        return gy * self.saved_tensors[0]


def _train_kernels():
    """nnlite._train when built (native one-pass ReLU), else None."""
    try:
        from . import _train
    except ImportError:  # pragma: no cover - depends on the build
        return None
    return _train


class ReLU(Function):
    # float32/64 under the 'cython' backend: one native pass each way, and backward reads the
    # saved OUTPUT (y > 0 exactly where a > 0) instead of a separate boolean mask
    _NATIVE_MIN = 1 << 12

    def forward(self, a):
        from ._config import backend, get_num_threads

        k = _train_kernels()
        self.native = (k is not None and a.dtype in (np.float32, np.float64)
                       and a.size >= self._NATIVE_MIN and backend() == "cython")
        if self.native:
            a = np.ascontiguousarray(a)
            y = np.empty(a.shape, dtype=a.dtype)
            k.relu_forward(a.reshape(-1), y.reshape(-1),
                           num_threads=get_num_threads() if a.size >= 1 << 17 else 1)
            if self.requires_grad:
                self.save_for_backward(y)
            return y
        y = np.maximum(a, 0)
        # NaN propagates through np.maximum, as torch.relu; the gradient passes wherever the
        # output is not <= 0 (NaN included), as torch's threshold_backward on the result
        if self.requires_grad:
            self.save_for_backward(~(a <= 0))
        return y

    def backward(self, gy):
        if self.native:
            from ._config import get_num_threads

            y = self.saved_tensors[0]
            gy = np.ascontiguousarray(gy, dtype=y.dtype)
            gx = np.empty(y.shape, dtype=y.dtype)
            _train_kernels().relu_backward(gy.reshape(-1), y.reshape(-1), gx.reshape(-1),
                                           num_threads=get_num_threads() if y.size >= 1 << 17
                                           else 1)
            return gx
        # a select, not a product: an inf/NaN upstream gradient stays out of the zeroed entries
        return np.where(self.saved_tensors[0], gy, gy.dtype.type(0))


class Cat(Function):
    def forward(self, *arrays, dim=0):
        self.sizes = [a.shape[dim] for a in arrays]
        self.dim = dim
        return np.concatenate(arrays, axis=dim)

    def backward(self, gy):
        grads, lead, start = [], (slice(None),) * self.dim, 0
        for size, need in zip(self.sizes, self.needs_input_grad):
            grads.append(np.ascontiguousarray(gy[lead + (slice(start, start + size),)])
                         if need else None)
            start += size
        return tuple(grads)


class Stack(Function):
    def forward(self, *arrays, dim=0):
        self.dim = dim
        return np.stack(arrays, axis=dim)

    def backward(self, gy):
        return tuple(np.ascontiguousarray(np.take(gy, i, axis=self.dim)) if need else None
                     for i, need in enumerate(self.needs_input_grad))
