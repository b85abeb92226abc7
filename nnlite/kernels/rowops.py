"""Row and elementwise kernels of a transformer layer on arrays: erf, gelu, softmax and
log_softmax over the last axis, layer norm over the last axis.

float32 inputs run the native kernels of ``nnlite._rowops`` (csrc/rowops_kernels.c) on
``get_num_threads()`` threads of the kernels' pool when the extension is built and the
'cython' backend is active; float64 inputs, the other backends and builds without the
extension (NNLITE_NO_EXT) run the NumPy formulas below, which the eager ops used before.
Rows the kernels cannot walk in place (strided, reversed, broadcast or overlapping) are
copied into a contiguous array first: the result does not depend on the layout.

Measured accuracy of the float32 kernels (tests/test_rowops.py checks it against float64
oracles, every 7th float32): erf within 0.89 ulp of math.erf (tested: 1), gelu within 3.03
ulp of x * erfc(-x / sqrt 2) / 2 also for x << 0 (no cancellation: erfc from exp(-x^2 / 2)
with x^2 split exactly), gelu tanh within 2.98 ulp (tested: 3.5 both); subnormal results
within 1.7 subnormal spacings (tested: 2). They run in float32 lanes; erfc(a) exp(a^2) and
the tanh form's cubic run in double. softmax within 3.1 ulp (tested: 4) of
exp(d) / sum exp(d) for d = x - max rounded to float32 as NumPy's formula rounds it;
log_softmax within 1 ulp of d - log(sum) plus 5e-7 (the sum's relative error becomes an
absolute one of the log); layer norm within 4 ulp of the row's |xhat * w| + |b| scale.

Each function checks its arguments (TypeError for a dtype, ValueError for a shape) and
returns a new array, or writes ``out`` (same shape, float32 / the input's dtype, writable; it
may be the input itself, but may not partly overlap it).
"""
import math

import numpy as np

from .._config import backend, get_num_threads
from .._ops import _sigmoid
from ..functional._special import erf_array, erfc_array

try:
    from .. import _rowops
except ImportError:  # pragma: no cover - depends on the build
    _rowops = None

__all__ = ["erf", "gelu", "gelu_formula", "layer_norm_lastaxis", "log_softmax_lastaxis",
           "native", "softmax_lastaxis"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_SQRT1_2 = 1.0 / math.sqrt(2.0)
_GELU_TANH_BETA = math.sqrt(2.0 / math.pi)
_GELU_TANH_KAPPA = 0.044715


def native(x):
    """True when ``x`` (an array) takes the native kernels: float32, the extension built and
    the 'cython' backend active."""
    return _rowops is not None and x.dtype == np.float32 and backend() == "cython"


def _array(x, op):
    x = np.asarray(x)
    if x.dtype not in _FLOATS:
        raise TypeError(f"{op}: expected a float32 or float64 array, got dtype {x.dtype}")
    return x


def _out(op, x, out):
    """``out`` checked against ``x`` (None: a new array like x)."""
    if out is None:
        return np.empty(x.shape, x.dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{op}: out must be a NumPy array, got {type(out).__name__}")
    if out.dtype != x.dtype:
        raise TypeError(f"{op}: out has dtype {out.dtype}, expected {x.dtype}")
    if out.shape != x.shape:
        raise ValueError(f"{op}: out has shape {out.shape}, expected {x.shape}")
    if not out.flags.writeable:
        raise ValueError(f"{op}: out is read-only")
    same = (out.__array_interface__["data"][0] == x.__array_interface__["data"][0]
            and out.strides == x.strides)
    if not same and np.shares_memory(out, x):
        raise ValueError(f"{op}: out overlaps the input without being the input")
    return out


def _elementwise(op, x, out, kernel, formula):
    x = _array(x, op)
    y = _out(op, x, out)
    if x.size == 0:
        return y
    if native(x):
        xc = np.ascontiguousarray(x)
        yc = y if y.flags.c_contiguous else np.empty(x.shape, np.float32)
        kernel(xc.reshape(-1), yc.reshape(-1), get_num_threads())
        if yc is not y:
            y[...] = yc
        return y
    y[...] = formula(x)
    return y


def erf(x, out=None):
    """erf(x) elementwise (ONNX Erf, ``torch.erf``)."""
    return _elementwise("erf", x, out, _rowops.erf if _rowops else None,
                        lambda a: erf_array(a).astype(a.dtype, copy=False))


def gelu_formula(x, approximate):
    """The NumPy gelu: 'none' x * Phi(x) in float64 with Phi(x) = erfc(-x / sqrt 2) / 2 (no
    cancellation for x << 0); 'tanh' x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3), in
    x's dtype. Returns (y, Phi or the sigmoid): the backward pass needs the second."""
    if approximate == "tanh":
        dt = x.dtype
        inner = dt.type(_GELU_TANH_BETA) * (x + dt.type(_GELU_TANH_KAPPA) * x * x * x)
        s = _sigmoid(inner + inner)
        return x * s, s
    x64 = x.astype(np.float64)
    cdf = 0.5 * erfc_array(-x64 * _SQRT1_2)
    return (x64 * cdf).astype(x.dtype, copy=False), cdf


def gelu(x, approximate="none", out=None):
    """gelu(x) elementwise: x * Phi(x) (approximate='none') or PyTorch's tanh form."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    tanh_form = approximate == "tanh"
    kernel = None
    if _rowops is not None:
        def kernel(a, b, nt):
            _rowops.gelu(a, b, tanh_form, nt)
    return _elementwise("gelu", x, out, kernel, lambda a: gelu_formula(a, approximate)[0])


def _rows_view(x):
    """x as a (rows, n) view with unit stride along n and rows that follow each other forward
    without overlapping (None when no such view exists: ``_kernel_rows`` then copies)."""
    n = x.shape[-1]
    if x.flags.c_contiguous:
        return x.reshape(math.prod(x.shape[:-1]), n)
    if (x.ndim == 2 and (x.strides[1] == x.itemsize or n <= 1)
            and (x.shape[0] <= 1 or (x.strides[0] % x.itemsize == 0
                                     and x.strides[0] >= n * x.itemsize))):
        return x
    return None


def _kernel_rows(x, y):
    """(xr, yr, back): the (rows, n) arrays the row kernels read and write for x and y. A
    layout with no such view (reversed, broadcast, overlapping or strided rows) is copied
    into a contiguous array (x), or written to one that ``back`` (else None) then copies into
    y, so that every layout gets the kernel's bits."""
    n = x.shape[-1]
    xr = _rows_view(x)
    if xr is None:
        xr = np.ascontiguousarray(x).reshape(-1, n)
    yr = _rows_view(y)
    if yr is not None:
        return xr, yr, None
    yr = np.empty(xr.shape, y.dtype)
    return xr, yr, lambda: np.copyto(y, yr.reshape(y.shape))


def _lastaxis(op, x, out):
    x = _array(x, op)
    if x.ndim == 0:
        raise ValueError(f"{op}: expected an array with at least one axis, got a scalar")
    return x, _out(op, x, out)


def _softmax(op, x, out, log_form):
    x, y = _lastaxis(op, x, out)
    if x.size == 0:
        return y
    if native(x):
        xr, yr, back = _kernel_rows(x, y)
        _rowops.softmax_rows(xr, yr, log_form, get_num_threads())
        if back is not None:
            back()
        return y
    shifted = x - x.max(axis=-1, keepdims=True)
    if log_form:
        y[...] = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    else:
        e = np.exp(shifted)
        y[...] = e / e.sum(axis=-1, keepdims=True)
    return y


def softmax_lastaxis(x, out=None):
    """softmax over the last axis: exp(x - max) / sum(exp(x - max))."""
    return _softmax("softmax_lastaxis", x, out, False)


def log_softmax_lastaxis(x, out=None):
    """log_softmax over the last axis: (x - max) - log(sum(exp(x - max)))."""
    return _softmax("log_softmax_lastaxis", x, out, True)


def _affine_vector(op, name, v, x):
    if v is None:
        return None
    v = np.asarray(v)
    if v.dtype != x.dtype:
        raise TypeError(f"{op}: {name} has dtype {v.dtype}, expected {x.dtype} (the input's)")
    if v.shape != x.shape[-1:]:
        raise ValueError(f"{op}: {name} has shape {v.shape}, expected {x.shape[-1:]}")
    return np.ascontiguousarray(v)


def layer_norm_lastaxis(x, w=None, b=None, eps=1e-5, out=None, stats=False):
    """y = (x - mean) / sqrt(var + eps) * w + b over the last axis (biased variance; w and b
    vectors of the last axis' length, or None). With ``stats`` returns (y, mean, rstd), the
    per-row statistics (shape x.shape[:-1], x's dtype) a backward pass needs."""
    op = "layer_norm_lastaxis"
    x, y = _lastaxis(op, x, out)
    w, b = _affine_vector(op, "w", w, x), _affine_vector(op, "b", b, x)
    eps = float(eps)
    if not eps >= 0.0:
        raise ValueError(f"{op}: eps must be >= 0, got {eps}")
    lead = x.shape[:-1]
    mean = np.empty(lead, x.dtype)
    rstd = np.empty(lead, x.dtype)
    if native(x) and x.size:
        xr, yr, back = _kernel_rows(x, y)
        _rowops.layer_norm_rows(xr, yr, w, b, eps, mean.reshape(-1), rstd.reshape(-1),
                                get_num_threads())
        if back is not None:
            back()
    elif not x.shape[-1]:
        mean.fill(np.nan)      # the statistics of no values: 0 / 0
        rstd.fill(np.nan)
    elif x.size:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[...] = x.mean(axis=-1)
            xc = x - mean[..., None]
            rstd[...] = 1.0 / np.sqrt(np.mean(xc * xc, axis=-1) + x.dtype.type(eps))
        xc *= rstd[..., None]
        if w is not None:
            xc *= w
        if b is not None:
            xc += b
        y[...] = xc
    return (y, mean, rstd) if stats else y
