# Compile-time-only helpers shared by the kernels: every function is `cdef inline`, so no
# extension ever cimports another extension's symbols at run time.

cdef inline bint in_range(Py_ssize_t a, Py_ssize_t n) noexcept nogil:
    # One unsigned compare tests 0 <= a < n: a negative a wraps to a huge size_t (Caffe's trick).
    return <size_t>a < <size_t>n

cdef inline Py_ssize_t imin(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b

cdef inline Py_ssize_t imax(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a > b else b

cdef inline Py_ssize_t ceil_div_pos(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    # ceil(a / b) for a >= 0, b > 0; written so that it cannot overflow for any b
    return 0 if a == 0 else (a - 1) // b + 1

cdef inline void col_range(Py_ssize_t off, Py_ssize_t W, Py_ssize_t sw, Py_ssize_t ow,
                           Py_ssize_t* j0, Py_ssize_t* j1) noexcept nogil:
    # [j0, j1) = the output columns j whose source column j*sw + off lies in [0, W)
    cdef Py_ssize_t lo = 0 if off >= 0 else ceil_div_pos(-off, sw)
    cdef Py_ssize_t hi = ceil_div_pos(W - off, sw) if W - off > 0 else 0
    lo = imin(lo, ow)
    j0[0] = lo
    j1[0] = imax(lo, imin(hi, ow))
