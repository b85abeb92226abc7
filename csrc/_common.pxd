# Compile-time-only helpers shared by the kernels: every function is `cdef inline`, so no
# extension ever cimports another extension's symbols at run time.

cdef inline bint in_range(Py_ssize_t a, Py_ssize_t n) noexcept nogil:
    # One unsigned compare tests 0 <= a < n: a negative a wraps to a huge size_t (Caffe's trick).
    return <size_t>a < <size_t>n

cdef inline Py_ssize_t imin(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b

cdef inline Py_ssize_t imax(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a > b else b
