# Compile-time-only helpers shared by the kernels: every function is `cdef inline`, so no
# extension ever cimports another extension's symbols at run time. The integer helpers are the
# C core's own (csrc/core/nnl_core.h, static inline there), so the Cython and C kernels share
# one definition of each.

cdef extern from "nnl_core.h" nogil:
    int NNL_OK, NNL_ENOMEM
    Py_ssize_t nnl_min(Py_ssize_t a, Py_ssize_t b)
    Py_ssize_t nnl_max(Py_ssize_t a, Py_ssize_t b)
    void nnl_col_range(Py_ssize_t off, Py_ssize_t w, Py_ssize_t sw, Py_ssize_t ow,
                       Py_ssize_t *lo, Py_ssize_t *hi)

cdef inline bint in_range(Py_ssize_t a, Py_ssize_t n) noexcept nogil:
    # One unsigned compare tests 0 <= a < n: a negative a wraps to a huge size_t (Caffe's trick).
    return <size_t>a < <size_t>n

cdef inline Py_ssize_t imin(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return nnl_min(a, b)

cdef inline Py_ssize_t imax(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return nnl_max(a, b)

cdef inline void col_range(Py_ssize_t off, Py_ssize_t W, Py_ssize_t sw, Py_ssize_t ow,
                           Py_ssize_t* j0, Py_ssize_t* j1) noexcept nogil:
    # [j0, j1) = the output columns j < ow whose source column j*sw + off lies in [0, W): the
    # overflow-safe rule of nnl_col_range, shared with the C kernels
    nnl_col_range(off, W, sw, ow, j0, j1)


cdef inline int check_status(int rc, str what, str detail="") except -1:
    # an nnl_* return code as a Python error: MemoryError for NNL_ENOMEM (its work buffers),
    # ValueError for any other code but NNL_OK
    if rc == NNL_ENOMEM:
        raise MemoryError(f"{what}: could not allocate its work buffers")
    if rc != NNL_OK:
        raise ValueError(f"{what}: invalid arguments{detail}")
    return 0


from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_New

cdef extern from "nnl_core.h" nogil:
    void *nnl_pool_state()
    void nnl_pool_adopt(void *state)
    # the kernels' parallel loop (csrc/core/nnl_pool.c)
    ctypedef void (*nnl_unit_fn)(void *ctx, Py_ssize_t unit, int tid, int first) noexcept nogil
    void nnl_parallel_for(int nt, Py_ssize_t units, nnl_unit_fn fn, void *ctx)

cdef inline int share_pool() except -1:
    # One thread pool per process (csrc/core/nnl_pool.c): every extension links its own copy
    # of the C core, so the first extension imported publishes its pool state in
    # nnlite._config and the others adopt it. Called once at each extension's import.
    from nnlite import _config
    cap = getattr(_config, "_POOL_CAPSULE", None)
    if cap is None:
        state = nnl_pool_state()
        if state != NULL:
            _config._POOL_CAPSULE = PyCapsule_New(state, b"nnlite.pool", NULL)
    else:
        nnl_pool_adopt(PyCapsule_GetPointer(cap, b"nnlite.pool"))
    return 0
