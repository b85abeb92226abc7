"""nnlite's own GEMM: ``gemm`` / ``gemm_batched`` over NumPy arrays (no autograd).

    out = act(alpha * op(a) @ op(b) + beta * out + bias)

with ``op(x) = x.T`` when ``trans_x``, a per-row (``bias_axis=0``) or per-column
(``bias_axis=1``) bias and ``activation`` None | 'relu' | 'relu6' fused into the write-out (the
convolution epilogue). The work runs in the blocked C kernels of ``csrc/gemm_*.c`` (packing +
AVX-512/AVX2/plain-C register micro-kernels, OpenMP over blocks, GIL released). Without the
compiled extension the same API runs on ``numpy.matmul`` plus the epilogue in NumPy.

Conventions (as in the BLAS): ``beta == 0`` never reads ``out`` (garbage/NaN there is ignored);
``beta != 0`` needs ``out``. A transposed or otherwise strided operand is passed to the kernel
as strides, without a copy; a copy is made only when a stride is not a whole number of elements.
Results are bit-identical for every ``num_threads``; products under 8M multiply-adds run on one
thread (waking a sleeping OpenMP worker costs more).

Study switches: ``using_microkernel('generic' | 'avx2' | 'avx512')`` (thread-local) or the
environment variable ``NNLITE_GEMM_ISA`` select the micro-kernel family; ``info()`` reports the
family and its blocking. The cache blocks (MC, KC, NC) are derived once per process from this
CPU's cache sizes (``blocking()``; Linux sysfs, else cpuid, else defaults); the environment
variable ``NNLITE_CACHE_SIZES="L1d,L2,L3"`` (e.g. ``"48K,2M,4M"``, L3 = one core's share)
replaces the detected sizes.
"""
import contextlib
import numbers
import os

import numpy as np

from .._config import ThreadSetting, cython_built, get_num_threads

try:
    if not cython_built():
        raise ImportError("nnlite built without extensions")
    from .. import _gemm
except ImportError:  # pragma: no cover - depends on the build
    _gemm = None

__all__ = ["gemm", "gemm_batched", "gemm_split", "pack", "PackedOperand", "using_microkernel", "info",
           "blocking"]

_ACTS = {None: 0, "relu": 1, "relu6": 2}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_microkernel = ThreadSetting()
_default_isa = os.environ.get("NNLITE_GEMM_ISA", "auto") or "auto"


# ------------------------------------------------------------------------------ study switches
@contextlib.contextmanager
def using_microkernel(name):
    """Select the micro-kernel family ('auto', 'generic', 'avx2', 'avx512') in this thread."""
    if _gemm is None:
        raise RuntimeError("the GEMM extension nnlite._gemm is not built")
    with _microkernel.use(_gemm.isa_code(name)):
        yield name


_default_code = []


def _isa():
    code = _microkernel.get()
    if code is not None:
        return code
    if not _default_code:                              # NNLITE_GEMM_ISA, checked on first use
        _default_code.append(_gemm.isa_code(_default_isa))
    return _default_code[0]


def info():
    """Dict describing the GEMM in use: extension, OpenMP, micro-kernel family and blocking."""
    if _gemm is None:
        return {"extension": False, "engine": "numpy.matmul"}
    code = _isa()
    name = _gemm.best_isa() if code < 0 else _gemm.isa_names()[code]
    return {"extension": True, "openmp": _gemm.openmp_enabled(), "microkernel": name,
            "available": _gemm.available_isas(),
            "float32": _gemm.blocking(code, 4), "float64": _gemm.blocking(code, 8),
            "caches": _gemm.cache_sizes()}


def blocking(dtype=np.float32, isa=None):
    """Register and cache blocking (dict mr, nr, mc, kc, nc) of the micro-kernel family ``isa``
    (None: the one in use) for ``dtype``, ``tail_n`` (the widest ragged last column panel the
    family's column-tail kernel computes with the rows in the vector lanes, 0: none), plus the
    cache sizes the blocks were derived from (``caches``: l1d, l2, l3 bytes and their
    source)."""
    if _gemm is None:
        raise RuntimeError("the GEMM extension nnlite._gemm is not built")
    dt = np.dtype(dtype)
    if dt not in _FLOATS:
        raise TypeError(f"blocking: dtype must be float32 or float64, got {dt}")
    code = _isa() if isa is None else _gemm.isa_code(isa)
    out = _gemm.blocking(code, dt.itemsize)
    out["caches"] = _gemm.cache_sizes()
    return out


# ------------------------------------------------------------------------- packed operands
class PackedOperand:
    """A GEMM operand packed once into the micro-kernel's panel layout, for reuse across calls
    (the constant weights of an inference plan): ``gemm``/``gemm_batched`` accept it in place of
    ``a`` (side 'a') or ``b`` (side 'b') and skip that operand's per-call packing.

    ``matrix`` is op(x) itself (kept: products of <= 4 rows, another micro-kernel family and the
    NumPy fallback read it); ``data`` the packed panels of family ``isa`` (None without the
    extension). Shared by every item of a batched call.
    """
    __slots__ = ("matrix", "side", "data", "isa")

    def __init__(self, matrix, side, data, isa):
        self.matrix, self.side, self.data, self.isa = matrix, side, data, isa

    @property
    def shape(self):
        return self.matrix.shape

    @property
    def dtype(self):
        return self.matrix.dtype


def pack(x, side, trans=False):
    """Pack ``op(x)`` (``x.T`` when ``trans``) once as operand ``side`` ('a' or 'b') for the
    micro-kernel family active in this thread; see ``PackedOperand``.

    Shape: op(x) (M, K) for side 'a', (K, N) for side 'b'.
    """
    fn = "pack"
    if side not in ("a", "b"):
        raise ValueError(f"{fn}: side must be 'a' or 'b', got {side!r}")
    x = _as_operand(x, "x", 2, fn)
    m = x.T if trans else x
    if _gemm is None:
        return PackedOperand(m, side, None, None)
    code = _isa()
    code = _gemm.isa_code(_gemm.best_isa()) if code < 0 else code
    code_side = 0 if side == "a" else 1
    data = np.empty(_gemm.packed_size(code_side, m.shape[0], m.shape[1], code, m.itemsize),
                    m.dtype)
    whole = all(st % m.itemsize == 0 and st >= 0 for st in m.strides)
    src = m if whole else np.ascontiguousarray(m)
    _gemm.pack(src, code_side, code, data)
    return PackedOperand(m, side, data, code)


def _unpack(x, side, trans, fn):
    """(array for validation, packed data or None) of a gemm argument."""
    if not isinstance(x, PackedOperand):
        return x, None
    if x.side != side:
        raise ValueError(f"{fn}: operand packed as side {x.side!r} passed as {side!r}")
    if trans:
        raise ValueError(f"{fn}: a packed operand is already op(x); trans_{side} must be False")
    return x.matrix, x


# ---------------------------------------------------------------------------------- validation
def _as_operand(x, name, ndim, fn):
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be {ndim}-D, got shape {x.shape}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"{fn}: {name} has dtype {x.dtype}; expected float32 or float64")
    return x


def _kernel_ready(x):
    """x itself when every stride is a whole number of elements, else a C-contiguous copy."""
    size = x.itemsize
    s0, s1, s2 = x.strides
    if s0 % size == 0 and s1 % size == 0 and s2 % size == 0:
        return x
    return np.ascontiguousarray(x)


def _scalar(value, name, fn):
    if type(value) is float:
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a real number, got {value!r}")
    return float(value)


def _threads(num_threads, fn):
    if num_threads is None:
        return get_num_threads()
    if type(num_threads) is int and num_threads >= 1:
        return num_threads
    if isinstance(num_threads, (bool, np.bool_)) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"{fn}: num_threads must be an int or None, got {num_threads!r}")
    if num_threads < 1:
        raise ValueError(f"{fn}: num_threads must be >= 1, got {num_threads}")
    return int(num_threads)


def _check_bias(bias, bias_axis, batch, M, N, dtype, fn, batched):
    """bias -> (1 or batch, M or N) array of ``dtype`` (or None)."""
    if bias_axis not in (0, 1) or isinstance(bias_axis, bool):
        raise ValueError(f"{fn}: bias_axis must be 0 (per row of out) or 1 (per column), "
                         f"got {bias_axis!r}")
    if bias is None:
        return None
    bias = np.asarray(bias)
    if bias.dtype.kind not in "fiu":
        raise TypeError(f"{fn}: bias has dtype {bias.dtype}; expected a real numeric dtype")
    length = M if bias_axis == 0 else N
    what = "M (rows of out)" if bias_axis == 0 else "N (columns of out)"
    if bias.ndim == 1 and bias.shape[0] == length:
        bias = bias[None, :]
    elif batched and bias.ndim == 2 and bias.shape == (batch, length):
        pass
    else:
        allowed = f"({length},)" + (f" or ({batch}, {length})" if batched else "")
        raise ValueError(f"{fn}: bias has shape {bias.shape}; with bias_axis={bias_axis} it must "
                         f"be {allowed}, the length {what}")
    return np.ascontiguousarray(bias, dtype=dtype)


def _check_out(out, shape, dtype, fn):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{fn}: out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{fn}: out has shape {out.shape}; expected {shape}")
    if out.dtype != dtype:
        raise TypeError(f"{fn}: out has dtype {out.dtype}; expected {dtype} (the dtype of a, b)")
    if not out.flags.writeable:
        raise ValueError(f"{fn}: out is read-only")


# ---------------------------------------------------------------------------------- public API
def gemm(a, b, out=None, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False, bias=None,
         bias_axis=0, activation=None, num_threads=None):
    """``out = act(alpha * op(a) @ op(b) + beta * out + bias)`` for 2-D float32/float64 arrays.

    Args:
        a, b: float arrays of the same dtype; ``op(a) = a.T`` if ``trans_a`` (same for b).
        out: optional preallocated result (any strides); read only when ``beta != 0``.
        alpha, beta: real scalars.
        bias: optional 1-D array, length M for ``bias_axis=0`` (added to every row i of out:
            ``bias[i]``) or length N for ``bias_axis=1`` (``bias[j]`` to every column j).
        activation: None, 'relu' or 'relu6', applied last (NaN propagates).
        num_threads: OpenMP threads (default ``nnlite.get_num_threads()``).

    Returns:
        ``out`` (a new C-contiguous array when not given).

    Shape:
        op(a) (M, K), op(b) (K, N) -> out (M, N).
    """
    fn = "gemm"
    a, pa = _unpack(a, "a", trans_a, fn)
    b, pb = _unpack(b, "b", trans_b, fn)
    a = _as_operand(a, "a", 2, fn)
    b = _as_operand(b, "b", 2, fn)
    return _gemm_impl(a[None], b[None], out, alpha, beta, trans_a, trans_b, bias, bias_axis,
                      activation, num_threads, fn, batched=False, packed=(pa, pb))


def gemm_batched(a, b, out=None, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False,
                 bias=None, bias_axis=0, activation=None, num_threads=None):
    """Batched ``gemm``: ``out[i] = act(alpha * op(a[i]) @ op(b[i]) + beta * out[i] + bias[i])``.

    A batch of 1 in ``a`` or ``b`` is broadcast (no copy). ``bias`` is 1-D (shared by all
    items) or 2-D (one row per item). Threads split the batch (when it divides evenly or is
    large) or the blocks of each item. Used by grouped convolution (one item per group).

    Shape:
        op(a[i]) (M, K), op(b[i]) (K, N) with a (B or 1, ...), b (B or 1, ...) -> out (B, M, N);
        bias (M,) | (B, M) for bias_axis=0, (N,) | (B, N) for bias_axis=1.
    """
    fn = "gemm_batched"
    a, pa = _unpack(a, "a", trans_a, fn)
    b, pb = _unpack(b, "b", trans_b, fn)
    a = _as_operand(a if pa is None else a[None], "a", 3, fn)
    b = _as_operand(b if pb is None else b[None], "b", 3, fn)
    return _gemm_impl(a, b, out, alpha, beta, trans_a, trans_b, bias, bias_axis, activation,
                      num_threads, fn, batched=True, packed=(pa, pb))


def gemm_split(a, b, out, *, beta=0.0, bias=None, bias_axis=0, activation=None,
               num_threads=None):
    """ONE product ``C = act(A @ B + beta * C + bias)`` whose inner axis K and column axis N
    each run over an (outer, inner) index pair, read and written in place (no regrouping
    copies): a pointwise conv over a whole NCHW batch, or its weight gradient, as one GEMM.

    Shape:
        a (M, nk, lk): A[i, k] = a[i, k // lk, k % lk], K = nk*lk;
        b (nk, lk, nn, ln): B[k, j] = b[k // lk, k % lk, j // ln, j % ln], N = nn*ln;
        out (M, nn, ln): C[i, j] = out[i, j // ln, j % ln], unit stride along its last axis
        (when ln > 1), overlapping neither a, b nor bias; bias (M,) (bias_axis=0) or (N,).
    E.g. y = conv1x1(x, w) for x (n, C, L): a = w[:, None, :], b = x.transpose(1, 0, 2)[None],
    out = y.transpose(1, 0, 2) with y (n, F, L). Any element strides; float32 or float64.
    Without the compiled extension: numpy.matmul on regrouped copies.

    Each element is reduced in the same order for every thread count (the plain GEMM's blocking
    on the logical M x N x K product).
    """
    fn = "gemm_split"
    a = _as_operand(a, "a", 3, fn)
    b = _as_operand(b, "b", 4, fn)
    if not isinstance(out, np.ndarray) or out.ndim != 3:
        raise TypeError(f"{fn}: out must be a 3-D numpy.ndarray (M, nn, ln)")
    if not (a.dtype == b.dtype == out.dtype):
        raise TypeError(f"{fn}: dtypes of a ({a.dtype}), b ({b.dtype}) and out ({out.dtype}) "
                        "must match")
    M, nk, lk = a.shape
    nn, ln = out.shape[1:]
    if out.shape[0] != M or b.shape != (nk, lk, nn, ln):
        raise ValueError(f"{fn}: shapes a={a.shape}, b={b.shape}, out={out.shape} do not chain; "
                         f"b must be {(nk, lk, nn, ln)}")
    if not out.flags.writeable:
        raise ValueError(f"{fn}: out is read-only")
    beta = _scalar(beta, "beta", fn)
    if activation not in _ACTS:
        raise ValueError(f"{fn}: activation must be None, 'relu' or 'relu6', got {activation!r}")
    nthreads = _threads(num_threads, fn)
    bias2 = _check_bias(bias, bias_axis, 1, M, nn * ln, a.dtype, fn, False)
    if out.size == 0:
        return out
    if _gemm is None:
        A = a.reshape(M, nk * lk)
        B = b.reshape(nk * lk, nn * ln)
        c = np.ascontiguousarray(out).reshape(1, M, nn * ln)
        _gemm_numpy(A[None], B[None], c, 1.0, beta, bias2, bias_axis, activation)
        out[...] = c.reshape(out.shape)
        return out
    for x in (a, b, out):
        if any(st % x.itemsize for st in x.strides):
            raise ValueError(f"{fn}: strides {x.strides} are not whole elements")
    if ln > 1 and out.strides[2] != out.itemsize:
        raise ValueError(f"{fn}: out must have unit stride along its last axis")
    if np.may_share_memory(out, a) or np.may_share_memory(out, b) or (
            bias2 is not None and np.may_share_memory(out, bias2)):
        raise ValueError(f"{fn}: out overlaps an input")
    _gemm.gemm_split(a, b, out, 1.0, beta, None if bias2 is None else bias2[0],
                     0 if bias2 is None else 1 + bias_axis, _ACTS[activation], nthreads, _isa())
    return out


def _split_raw(a, b, out, bias=None, beta=0.0):
    """``gemm_split`` without its checks, for callers that built the operands themselves
    (conv_cython's pointwise path: fresh outputs, whole-element strides, matching dtypes);
    ``bias`` per row (M,) contiguous, or None."""
    _gemm.gemm_split(a, b, out, 1.0, beta, bias, 0 if bias is None else 1, 0,
                     get_num_threads(), _isa())
    return out


def _gemm_impl(a, b, out, alpha, beta, trans_a, trans_b, bias, bias_axis, activation,
               num_threads, fn, batched, packed=(None, None)):
    if a.dtype != b.dtype:
        raise TypeError(f"{fn}: a has dtype {a.dtype} and b has dtype {b.dtype}; they must match")
    dtype = a.dtype
    alpha = _scalar(alpha, "alpha", fn)
    beta = _scalar(beta, "beta", fn)
    if activation not in _ACTS:
        raise ValueError(f"{fn}: activation must be None, 'relu' or 'relu6', got {activation!r}")
    nthreads = _threads(num_threads, fn)
    opa = a.swapaxes(1, 2) if trans_a else a          # (Ba, M, K)
    opb = b.swapaxes(1, 2) if trans_b else b          # (Bb, K, N)
    (ba, M, K), (bb, K2, N) = opa.shape, opb.shape
    if K != K2:
        sa = "a.T" if trans_a else "a"
        sb = "b.T" if trans_b else "b"
        raise ValueError(f"{fn}: op(a)={sa} has shape {opa.shape[-2:]} and op(b)={sb} has shape "
                         f"{opb.shape[-2:]}; inner sizes {K} and {K2} differ")
    if ba != bb and 1 not in (ba, bb):
        raise ValueError(f"{fn}: batch sizes of a ({ba}) and b ({bb}) differ")
    batch = max(ba, bb) if min(ba, bb) > 0 else 0
    shape = (batch, M, N) if batched else (M, N)
    bias2 = _check_bias(bias, bias_axis, batch, M, N, dtype, fn, batched)
    if out is None:
        if beta != 0.0:
            raise ValueError(f"{fn}: beta={beta} needs out= (the matrix it scales)")
        out = np.empty(shape, dtype=dtype)
    else:
        _check_out(out, shape, dtype, fn)
    out3 = out if batched else out[None]               # (B, M, N)
    if out3.size == 0:
        return out

    if _gemm is None:
        opa = np.broadcast_to(opa, (batch, M, K)) if ba != batch else opa
        opb = np.broadcast_to(opb, (batch, K, N)) if bb != batch else opb
        _gemm_numpy(opa, opb, out3, alpha, beta, bias2, bias_axis, activation)
        return out
    # (an operand with one item serves every item: the kernel reads it with batch stride 0)

    # The kernel writes rows or columns with unit stride (a transposed view of a C-contiguous
    # array, e.g. the result of a narrow product run transposed, is written in place) and must
    # not write over its own inputs.
    target = out3
    size = out3.itemsize
    unit = out3.strides[2] == size or (out3.strides[1] == size and out3.strides[2] >= size)
    if (not unit or out3.strides[1] % size or out3.strides[2] % size or out3.strides[0] % size
            or (out3.shape[0] > 1 and out3.strides[0] == 0)
            or np.may_share_memory(out3, opa) or np.may_share_memory(out3, opb)
            or (bias2 is not None and np.may_share_memory(out3, bias2))):
        target = np.empty(out3.shape, dtype=dtype)
        if beta != 0.0:
            target[...] = out3
    isa = _isa()
    apk = bpk = None
    if packed[0] is not None or packed[1] is not None:
        # packed data serve only the family they were packed for (else: pack per call)
        code = _gemm.isa_code(_gemm.best_isa()) if isa < 0 else isa
        apk = packed[0].data if packed[0] is not None and packed[0].isa == code else None
        bpk = packed[1].data if packed[1] is not None and packed[1].isa == code else None
        if apk is not None or bpk is not None:
            isa = code
    _gemm.gemm_strided(_kernel_ready(opa), _kernel_ready(opb), target, alpha, beta, bias2,
                       0 if bias2 is None else 1 + bias_axis, _ACTS[activation], nthreads, isa,
                       apk, bpk)
    if target is not out3:
        out3[...] = target
    return out


def _gemm_numpy(a, b, out, alpha, beta, bias, bias_axis, activation):
    """The same contract on numpy.matmul (the fallback without the extension, and a test oracle).

    Shape: a (B, M, K), b (B, K, N), out (B, M, N), bias (1 or B, M or N) or None.
    """
    acc = np.matmul(a, b)                              # (B, M, N)
    if alpha != 1.0:
        acc *= alpha
    if beta != 0.0:
        acc += beta * out
    if bias is not None:
        acc += bias[:, :, None] if bias_axis == 0 else bias[:, None, :]
    if activation is not None:
        np.maximum(acc, 0, out=acc)                    # NaN propagates
        if activation == "relu6":
            np.minimum(acc, 6, out=acc)
    out[...] = acc
