"""``Tensor``: a NumPy array with an optional gradient and the Function that produced it."""
import numbers

import numpy as np

from . import _ops
from .autograd import backward as _run_backward

_FLOATS = (np.float32, np.float64)


def _to_array(data, dtype=None):
    """Convert user data following PyTorch's defaults (float32 for Python numbers)."""
    if isinstance(data, Tensor):
        arr = data.data
    elif isinstance(data, np.ndarray):
        arr = data
    elif isinstance(data, (np.generic,)):
        arr = np.asarray(data)
    else:
        arr = np.asarray(data)
        if arr.dtype == object:
            raise TypeError(f"cannot make a tensor from {type(data).__name__} "
                            "(ragged or non-numeric data)")
        if arr.dtype.kind in "fiu":  # Python numbers and lists of numbers -> float32
            arr = arr.astype(np.float32)
    if dtype is not None:
        arr = arr.astype(np.dtype(dtype), copy=False)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"unsupported tensor dtype {arr.dtype}")
    if arr.dtype.kind == "f" and arr.dtype not in _FLOATS:
        raise TypeError(f"unsupported floating dtype {arr.dtype}; nnlite computes in "
                        "float32 or float64 (convert with .astype)")
    return arr


class Tensor:
    """An n-dimensional array that can record the ops applied to it.

    Attributes: ``data`` (ndarray), ``grad`` (ndarray or None), ``requires_grad``.
    """

    __array_priority__ = 1000  # make ndarray <op> Tensor defer to Tensor's reflected op

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _to_array(data, dtype)
        self.grad = None
        self._ctx = None
        self._retain_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, arr, requires_grad):
        """A Tensor of a Function's output: a float32/float64 ndarray is taken as it is (the
        checks of ``Tensor(...)`` it would pass skipped); anything else goes through them."""
        if type(arr) is not np.ndarray or arr.dtype not in _FLOATS:
            return cls(arr, requires_grad=requires_grad)
        t = cls.__new__(cls)
        t.data = arr
        t.grad = None
        t._ctx = None
        t._retain_grad = False
        t.requires_grad = bool(requires_grad)
        return t

    # ----------------------------------------------------------------- basics
    def requires_grad_(self, flag=True):
        if flag and self.data.dtype.kind != "f":
            raise TypeError(f"only floating tensors can require grad, got dtype {self.data.dtype}")
        self.requires_grad = bool(flag)
        return self

    def retain_grad(self):
        self._retain_grad = True
        return self

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size_(self):
        return self.data.size

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def dim(self):
        return self.data.ndim

    def numel(self):
        return self.data.size

    def __len__(self):
        return len(self.data)

    def numpy(self):
        return self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def detach(self):
        return Tensor(self.data)

    def astype(self, dtype):
        return Tensor(self.data.astype(dtype))

    def float(self):
        return self if self.dtype == np.float32 else self.astype(np.float32)

    def double(self):
        return self if self.dtype == np.float64 else self.astype(np.float64)

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = ""
        if self.dtype != np.float32:
            extra += f", dtype={self.dtype}"
        if self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    __hash__ = object.__hash__

    # --------------------------------------------------------------- backward
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad`` (ndarray or Tensor) is the gradient of some scalar w.r.t. ``self``; it may be
        omitted only when ``self`` holds a single element. Without ``retain_graph`` (PyTorch's
        default) the graph's saved arrays are freed as the backward runs; a second backward
        through the same graph then raises RuntimeError.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input of the graph has requires_grad=True)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; "
                                   f"this tensor has shape {self.shape}")
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad)
            if grad.shape != self.shape:
                raise ValueError(f"backward: grad of shape {grad.shape} does not match "
                                 f"the tensor's shape {self.shape}")
            grad = grad.astype(self.dtype, copy=False)
        _run_backward(self, grad, retain_graph=bool(retain_graph))

    # ------------------------------------------------------------- arithmetic
    def __add__(self, o):
        return _ops.Add.apply(self, _other(o, self))

    def __radd__(self, o):
        return _ops.Add.apply(_other(o, self), self)

    def __sub__(self, o):
        return _ops.Sub.apply(self, _other(o, self))

    def __rsub__(self, o):
        return _ops.Sub.apply(_other(o, self), self)

    def __mul__(self, o):
        return _ops.Mul.apply(self, _other(o, self))

    def __rmul__(self, o):
        return _ops.Mul.apply(_other(o, self), self)

    def __truediv__(self, o):
        return _ops.Div.apply(self, _other(o, self))

    def __rtruediv__(self, o):
        return _ops.Div.apply(_other(o, self), self)

    def __pow__(self, o):
        return _ops.Pow.apply(self, _other(o, self))

    def __rpow__(self, o):
        return _ops.Pow.apply(_other(o, self), self)

    def __neg__(self):
        return _ops.Neg.apply(self)

    def __matmul__(self, o):
        return _ops.MatMul.apply(self, _other(o, self))

    def __rmatmul__(self, o):
        return _ops.MatMul.apply(_other(o, self), self)

    # comparisons give plain (non-differentiable) boolean tensors
    def _cmp(self, o, fn):
        return Tensor(fn(self.data, o.data if isinstance(o, Tensor) else o))

    def __eq__(self, o):
        return self._cmp(o, np.equal)

    def __ne__(self, o):
        return self._cmp(o, np.not_equal)

    def __lt__(self, o):
        return self._cmp(o, np.less)

    def __le__(self, o):
        return self._cmp(o, np.less_equal)

    def __gt__(self, o):
        return self._cmp(o, np.greater)

    def __ge__(self, o):
        return self._cmp(o, np.greater_equal)

    # ------------------------------------------------------------- reductions
    def sum(self, dim=None, keepdim=False, axis=None):
        ax = _ops._norm_axis(axis if dim is None else dim, self.ndim, "sum")
        return _ops.Sum.apply(self, axis=ax, keepdim=keepdim)

    def mean(self, dim=None, keepdim=False, axis=None):
        ax = _ops._norm_axis(axis if dim is None else dim, self.ndim, "mean")
        return _ops.Mean.apply(self, axis=ax, keepdim=keepdim)

    def max(self, dim=None, keepdim=False, axis=None):
        """``max()`` or ``max(axis=...)`` -> values; ``max(dim)`` -> (values, indices) as PyTorch."""
        if dim is not None:
            if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
                raise TypeError(f"max: dim must be an int, got {dim!r} (use axis= for tuples)")
            (d,) = _ops._norm_axis(dim, self.ndim, "max")
            return _ops.MaxDim.apply(self, dim=d, keepdim=keepdim)
        ax = _ops._norm_axis(axis, self.ndim, "max")
        return _ops.Max.apply(self, axis=ax, keepdim=keepdim)

    def argmax(self, dim=None, keepdim=False):
        if dim is None:
            return Tensor(np.asarray(np.argmax(self.data), dtype=np.int64))
        return Tensor(np.argmax(self.data, axis=dim, keepdims=keepdim).astype(np.int64))

    # ------------------------------------------------------------------ shape
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _ops.Reshape.apply(self, shape=tuple(int(s) for s in shape))

    view = reshape

    def transpose(self, dim0, dim1):
        axes = list(range(self.ndim))
        d0, d1 = (_ops._norm_axis(d, self.ndim, "transpose")[0] for d in (dim0, dim1))
        axes[d0], axes[d1] = axes[d1], axes[d0]
        return _ops.Permute.apply(self, axes=tuple(axes))

    def permute(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        if len(dims) != self.ndim:
            raise ValueError(f"permute: got {len(dims)} dims {tuple(dims)} for a tensor of "
                             f"{self.ndim} dims")
        dims = tuple(_ops._norm_axis(d, self.ndim, "permute")[0] for d in dims)
        return _ops.Permute.apply(self, axes=dims)

    @property
    def T(self):
        return _ops.Permute.apply(self, axes=tuple(reversed(range(self.ndim))))

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        s = _ops._norm_axis(start_dim, self.ndim, "flatten")[0]
        e = _ops._norm_axis(end_dim, self.ndim, "flatten")[0]
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        shape = self.shape[:s] + (int(np.prod(self.shape[s:e + 1])),) + self.shape[e + 1:]
        return self.reshape(shape)

    def unsqueeze(self, dim):
        d = _ops._norm_axis(dim, self.ndim + 1, "unsqueeze")[0]
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        d = _ops._norm_axis(dim, self.ndim, "squeeze")[0]
        if self.shape[d] != 1:
            return self
        return self.reshape(self.shape[:d] + self.shape[d + 1:])

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        return _ops.GetItem.apply(self, index=index)

    # ------------------------------------------------------------ elementwise
    def _floating(self):
        """Integer/bool tensors promote to float32 for transcendental ops (as torch does)."""
        return self if self.dtype.kind == "f" else Tensor(self.data.astype(np.float32))

    def exp(self):
        return _ops.Exp.apply(self._floating())

    def log(self):
        return _ops.Log.apply(self._floating())

    def sqrt(self):
        return _ops.Sqrt.apply(self._floating())

    def abs(self):
        return _ops.Abs.apply(self)

    def tanh(self):
        return _ops.Tanh.apply(self._floating())

    def sigmoid(self):
        return _ops.Sigmoid.apply(self._floating())

    def relu(self):
        return _ops.ReLU.apply(self)

    def clamp(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return _ops.Clamp.apply(self, min=min, max=max)

    clip = clamp


def _other(o, like):
    """The other operand of a binary op: Python scalars take ``like``'s dtype (as PyTorch)."""
    if isinstance(o, Tensor):
        return o
    if isinstance(o, numbers.Number) and not isinstance(o, bool) and like.dtype.kind == "f":
        return Tensor(np.asarray(o, dtype=like.dtype))
    if isinstance(o, np.ndarray):
        return Tensor(o)
    return Tensor(_to_array(o))


def as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def tensor(data, requires_grad=False, dtype=None):
    """Make a Tensor (copying ``data``).

    Float arrays keep their dtype; Python numbers and lists of floats become float32; integer
    arrays stay integer (labels, indices) and cannot require grad.
    """
    arr = _to_array(data, dtype)
    if arr is (data.data if isinstance(data, Tensor) else data):
        arr = arr.copy()
    return Tensor(arr, requires_grad=requires_grad)


def cat(tensors, dim=0):
    """Concatenate along ``dim`` (differentiable)."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    nd = tensors[0].ndim
    d = _ops._norm_axis(dim, nd, "cat")[0]
    for t in tensors:
        if t.ndim != nd or t.shape[:d] + t.shape[d + 1:] != tensors[0].shape[:d] + tensors[0].shape[d + 1:]:
            raise ValueError(f"cat: shapes {[x.shape for x in tensors]} differ outside dim {dim}")
    return _ops.Cat.apply(*tensors, dim=d)


def stack(tensors, dim=0):
    """Stack along a new ``dim`` (differentiable)."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {[t.shape for t in tensors]}")
    d = dim % (tensors[0].ndim + 1)
    return _ops.Stack.apply(*tensors, dim=d)
