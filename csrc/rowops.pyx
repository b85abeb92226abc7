"""float32 row and elementwise kernels of a transformer layer: erf, gelu, softmax / log_softmax
over rows, layer norm over rows (csrc/rowops_kernels.c; contract in csrc/rowops.h).

Each call releases the GIL and runs on up to num_threads threads of the kernels' shared pool;
a value or row is computed by one thread in a fixed order, so the result does not depend on
the thread count. The checked Python wrappers are nnlite/kernels/rowops.py; these functions
only check what would make the C read or write out of bounds (shapes, strides, lengths).
"""
from libc.math cimport NAN

from _common cimport share_pool

share_pool()


cdef extern from "rowops.h" nogil:
    void nnl_erf_s(const float* x, float* y, Py_ssize_t n, int nt)
    void nnl_gelu_s(const float* x, float* y, Py_ssize_t n, int tanh_form, int nt)
    void nnl_softmax_rows_s(const float* x, Py_ssize_t xrs, float* y, Py_ssize_t yrs,
                            Py_ssize_t rows, Py_ssize_t n, int log_form, int nt)
    void nnl_layer_norm_rows_s(const float* x, Py_ssize_t xrs, float* y, Py_ssize_t yrs,
                               Py_ssize_t rows, Py_ssize_t n, const float* w, const float* b,
                               float eps, float* mean, float* rstd, int nt)
    void nnl_exp_nonpos_s(const float* x, float* y, Py_ssize_t n)


cdef inline int _same_len(str what, Py_ssize_t a, Py_ssize_t b) except -1:
    if a != b:
        raise ValueError(f"{what}: {a} input values for {b} output values")
    return 0


def erf(const float[::1] x, float[::1] y, int num_threads=1):
    """y = erf(x) elementwise (y may be x)."""
    _same_len("erf", x.shape[0], y.shape[0])
    if x.shape[0]:
        with nogil:
            nnl_erf_s(&x[0], &y[0], x.shape[0], num_threads)


def gelu(const float[::1] x, float[::1] y, bint tanh_form, int num_threads=1):
    """y = x * Phi(x), or with tanh_form x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3))."""
    _same_len("gelu", x.shape[0], y.shape[0])
    if x.shape[0]:
        with nogil:
            nnl_gelu_s(&x[0], &y[0], x.shape[0], tanh_form, num_threads)


def exp_nonpos(const float[::1] x, float[::1] y):
    """y = exp(x) for x <= 0 with the softmax kernels' exp (a check hook for the tests)."""
    _same_len("exp_nonpos", x.shape[0], y.shape[0])
    if x.shape[0]:
        nnl_exp_nonpos_s(&x[0], &y[0], x.shape[0])


cdef inline Py_ssize_t _row_stride(str what, Py_ssize_t rows, Py_ssize_t n, Py_ssize_t s0,
                                   Py_ssize_t s1) except -1:
    # the row stride in elements of a (rows, n) float32 view with unit element stride
    if n > 1 and s1 != sizeof(float):
        raise ValueError(f"{what}: the last axis must have unit stride, got {s1} bytes")
    if rows > 1 and (s0 % <Py_ssize_t>sizeof(float) or s0 < n * <Py_ssize_t>sizeof(float)):
        raise ValueError(f"{what}: row stride {s0} bytes does not hold rows of {n} floats")
    return s0 // <Py_ssize_t>sizeof(float)


def softmax_rows(const float[:, :] x, float[:, :] y, bint log_form, int num_threads=1):
    """softmax (log_form: log_softmax) of each row of x (rows, n) into y (same shape; y may be
    x)."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1], xrs, yrs
    if y.shape[0] != rows or y.shape[1] != n:
        raise ValueError(f"softmax_rows: output shape ({y.shape[0]}, {y.shape[1]}) for input "
                         f"({rows}, {n})")
    if rows == 0 or n == 0:
        return
    xrs = _row_stride("softmax_rows", rows, n, x.strides[0], x.strides[1])
    yrs = _row_stride("softmax_rows", rows, n, y.strides[0], y.strides[1])
    with nogil:
        nnl_softmax_rows_s(&x[0, 0], xrs, &y[0, 0], yrs, rows, n, log_form, num_threads)


cdef inline const float* _vec_ptr(str name, const float[::1] v,
                                  Py_ssize_t want) except? NULL:
    # the data of an optional vector of `want` values (NULL for None or no values)
    if v is None:
        return NULL
    if v.shape[0] != want:
        raise ValueError(f"layer_norm_rows: {name} has {v.shape[0]} values, expected {want}")
    return &v[0] if want else NULL


def layer_norm_rows(const float[:, :] x, float[:, :] y, const float[::1] w, const float[::1] b,
                    float eps, float[::1] mean, float[::1] rstd, int num_threads=1):
    """Layer norm of each row of x (rows, n) into y (same shape; y may be x) with the optional
    (None) n-vectors w and b; mean and rstd (rows values each, or None) receive the row
    statistics."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1], xrs, yrs, i
    cdef const float* wp = NULL
    cdef const float* bp = NULL
    cdef float* mp = NULL
    cdef float* rp = NULL
    if y.shape[0] != rows or y.shape[1] != n:
        raise ValueError(f"layer_norm_rows: output shape ({y.shape[0]}, {y.shape[1]}) for "
                         f"input ({rows}, {n})")
    wp = _vec_ptr("w", w, n)
    bp = _vec_ptr("b", b, n)
    mp = <float*>_vec_ptr("mean", mean, rows)
    rp = <float*>_vec_ptr("rstd", rstd, rows)
    if rows == 0:
        return
    if n == 0:      # the statistics of no values: 0 / 0
        for i in range(rows):
            if mp != NULL:
                mp[i] = NAN
            if rp != NULL:
                rp[i] = NAN
        return
    xrs = _row_stride("layer_norm_rows", rows, n, x.strides[0], x.strides[1])
    yrs = _row_stride("layer_norm_rows", rows, n, y.strides[0], y.strides[1])
    with nogil:
        nnl_layer_norm_rows_s(&x[0, 0], xrs, &y[0, 0], yrs, rows, n, wp, bp, eps, mp, rp,
                              num_threads)
