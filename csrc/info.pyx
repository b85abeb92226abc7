"""Build facts of the compiled extension (OpenMP on/off and its thread count) and process-level
services: the thread pool's hold count, huge-page buffers."""
from _common cimport nnl_parallel_for, nnl_unit_fn, share_pool


cdef extern from *:
    """
    #if NNLITE_OPENMP
    #include <omp.h>
    static int nnl_omp_max_threads(void) { return omp_get_max_threads(); }
    static int nnl_omp_enabled(void) { return 1; }
    #else
    static int nnl_omp_max_threads(void) { return 1; }
    static int nnl_omp_enabled(void) { return 0; }
    #endif
    """
    int nnl_omp_max_threads() noexcept nogil
    int nnl_omp_enabled() noexcept nogil


def openmp_enabled():
    """True when the extension was compiled with OpenMP."""
    return bool(nnl_omp_enabled())


def openmp_max_threads():
    return nnl_omp_max_threads()


share_pool()


cdef extern from "nnl_core.h" nogil:
    int nnl_pool_hold(int delta)
    int nnl_pool_workers()
    int nnl_pool_worker_tid(int i)


def pool_hold(int delta):
    """Add delta to the thread pool's hold count (csrc/core/nnl_pool.c) and return the new
    count: while it is positive (an inference plan's run) the pool's workers spin between
    jobs instead of sleeping."""
    return nnl_pool_hold(delta)


def pool_workers():
    """Worker threads the pool has started (0 before its first parallel loop)."""
    return nnl_pool_workers()


def pool_worker_tids():
    """The kernel thread ids of the pool's workers (Linux; 0 for a worker not started yet)."""
    return [nnl_pool_worker_tid(i) for i in range(1, nnl_pool_workers() + 1)]


# ------------------------------------------------------------ huge-page buffers

cdef extern from "nnl_core.h" nogil:
    void *nnl_huge_alloc(size_t nbytes)
    void nnl_huge_free(void *p, size_t nbytes)


cdef class HugeBuffer:
    """``nbytes`` of writable memory from ``nnl_huge_alloc`` (csrc/core/nnl_alloc.c): 2 MB
    aligned and advised for transparent huge pages, unmapped when the last array over it
    goes. Read it through ``np.frombuffer(buf, np.uint8)`` (the buffer protocol, exactly
    ``nbytes`` long)."""
    cdef char *p
    cdef Py_ssize_t n
    cdef Py_ssize_t shape[1]

    def __cinit__(self, Py_ssize_t nbytes):
        if nbytes < 0:
            raise ValueError(f"HugeBuffer: nbytes must be >= 0, got {nbytes}")
        self.p = <char *>nnl_huge_alloc(<size_t>nbytes)
        if self.p == NULL:
            raise MemoryError(f"HugeBuffer: no 2 MB aligned mapping of {nbytes} bytes "
                              f"(smaller than 2 MB, out of memory or not Linux)")
        self.n = nbytes
        self.shape[0] = nbytes

    def __dealloc__(self):
        if self.p != NULL:
            nnl_huge_free(self.p, <size_t>self.n)
            self.p = NULL

    def __getbuffer__(self, Py_buffer *view, int flags):
        view.buf = self.p
        view.obj = self
        view.len = self.n
        view.readonly = 0
        view.itemsize = 1
        view.format = "B"
        view.ndim = 1
        view.shape = self.shape
        view.strides = NULL
        view.suboffsets = NULL
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer *view):
        pass


# ------------------------------------------------------------ a copy on the pool's threads

from libc.string cimport memcpy

# bytes per unit of copy_bytes (each thread takes several, dynamically)
cdef size_t _COPY_UNIT = 64 << 10


cdef struct _Copy:
    char* dst
    const char* src
    size_t n


cdef void _copy_unit(void* ctx, Py_ssize_t u, int tid, int first) noexcept nogil:
    cdef _Copy* c = <_Copy*>ctx
    cdef size_t a = <size_t>u * _COPY_UNIT
    cdef size_t b = a + _COPY_UNIT
    if b > c.n:
        b = c.n
    memcpy(c.dst + a, c.src + a, b - a)


def copy_bytes(dst, src, int num_threads):
    """dst[:] = src for two C-contiguous buffers of the same byte length that do not overlap
    (the caller checks that), split into 64 KB units over num_threads of the pool's threads
    (an inference plan copies each input into its arena this way: one thread copies at
    about 10 GB/s here, less than two cores together read and write)."""
    cdef const unsigned char[::1] s = memoryview(src).cast("B")
    cdef unsigned char[::1] d = memoryview(dst).cast("B")
    cdef _Copy c
    if d.shape[0] != s.shape[0]:
        raise ValueError(f"copy_bytes: {s.shape[0]} source bytes for {d.shape[0]} destination "
                         "bytes")
    if s.shape[0] == 0:
        return
    c.dst, c.src, c.n = <char*>&d[0], <const char*>&s[0], <size_t>s.shape[0]
    cdef Py_ssize_t units = <Py_ssize_t>((c.n + _COPY_UNIT - 1) // _COPY_UNIT)
    cdef int nt = max(1, min(num_threads, units))
    with nogil:
        nnl_parallel_for(nt, units, _copy_unit, &c)


# ------------------------------------------------------------ a NaN/inf scan on the pool's threads

cdef extern from *:
    """
    #include <stdint.h>
    /* 1 when one of the n IEEE words holds a NaN or an infinity (every exponent bit set),
     * else 0; one integer test per word, which the compiler vectorises (a float test would
     * not: reordering a float reduction changes it) */
    static int nnl_nonfinite32(const uint32_t *w, size_t n)
    {
        uint32_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad |= (uint32_t)((w[i] & 0x7f800000u) == 0x7f800000u);
        return bad != 0;
    }
    static int nnl_nonfinite64(const uint64_t *w, size_t n)
    {
        uint64_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad |= (uint64_t)((w[i] & 0x7ff0000000000000ull) == 0x7ff0000000000000ull);
        return bad != 0;
    }
    static void nnl_flag_set(int *flag) { __atomic_store_n(flag, 1, __ATOMIC_RELAXED); }
    static int nnl_flag_get(int *flag) { return __atomic_load_n(flag, __ATOMIC_RELAXED); }
    """
    int nnl_nonfinite32(const unsigned int* w, size_t n) noexcept nogil
    int nnl_nonfinite64(const unsigned long long* w, size_t n) noexcept nogil
    void nnl_flag_set(int* flag) noexcept nogil
    int nnl_flag_get(int* flag) noexcept nogil


cdef struct _Scan:
    const char* src
    size_t n
    int wide       # 8-byte words (float64), else 4-byte (float32)
    int found


cdef void _scan_unit(void* ctx, Py_ssize_t u, int tid, int first) noexcept nogil:
    cdef _Scan* c = <_Scan*>ctx
    cdef size_t a = <size_t>u * _COPY_UNIT
    cdef size_t b = a + _COPY_UNIT
    cdef int bad
    if nnl_flag_get(&c.found):    # another unit found one: nothing left to learn
        return
    if b > c.n:
        b = c.n
    if c.wide:
        bad = nnl_nonfinite64(<const unsigned long long*>(c.src + a), (b - a) // 8)
    else:
        bad = nnl_nonfinite32(<const unsigned int*>(c.src + a), (b - a) // 4)
    if bad:
        nnl_flag_set(&c.found)


def any_nonfinite(src, int itemsize, int num_threads):
    """True when the C-contiguous buffer ``src`` of float32 (itemsize 4) or float64 (8) values
    holds a NaN or an infinity: its bits read in 64 KB units over num_threads of the pool's
    threads (a Winograd conv checks its input this way before the transforms would spread a
    NaN or inf over whole output tiles: conv_winograd.finite)."""
    cdef const unsigned char[::1] s
    cdef _Scan c
    if itemsize != 4 and itemsize != 8:
        raise ValueError(f"any_nonfinite: itemsize must be 4 or 8, got {itemsize}")
    view = memoryview(src)
    if view.nbytes == 0:
        return False
    s = view.cast("B")
    if s.shape[0] % itemsize:
        raise ValueError(f"any_nonfinite: {s.shape[0]} bytes are not whole {itemsize}-byte "
                         "values")
    c.src, c.n, c.wide, c.found = <const char*>&s[0], <size_t>s.shape[0], itemsize == 8, 0
    cdef Py_ssize_t units = <Py_ssize_t>((c.n + _COPY_UNIT - 1) // _COPY_UNIT)
    cdef int nt = max(1, min(num_threads, units))
    with nogil:
        nnl_parallel_for(nt, units, _scan_unit, &c)
    return c.found != 0


# ------------------------------------------------------------ a check of the pool's protocol

from libc.stdlib cimport calloc, free


cdef struct _Check:
    int* runs        # times each unit ran
    int* tids        # the thread that ran it
    int* firsts      # per thread: units run with first = 1
    int* inner       # nested loop: times each (unit, inner unit) ran
    int nt, nested, spin


cdef void _inner_unit(void* ctx, Py_ssize_t u, int tid, int first) noexcept nogil:
    cdef int* row = <int*>ctx
    row[u] += 1


cdef void _check_unit(void* ctx, Py_ssize_t u, int tid, int first) noexcept nogil:
    cdef _Check* c = <_Check*>ctx
    cdef volatile int k
    c.runs[u] += 1
    c.tids[u] = tid
    if tid < 0 or tid >= c.nt:
        return
    if first:
        c.firsts[tid] += 1
    if c.nested:
        nnl_parallel_for(2, 3, _inner_unit, c.inner + 3 * u)
    k = 0
    while k < c.spin:
        k += 1


def pool_check(int nt, Py_ssize_t units, bint nested=False, int spin=0):
    """Run one loop of ``units`` units on ``nt`` threads of the pool with a unit that records
    who ran it (a check of the pool's protocol for the tests, independent of any kernel):
    returns (runs per unit, thread of each unit, first-flag count per thread, nested runs
    per (unit, inner unit) or None). ``spin`` busy-waits that many steps in each unit."""
    if nt < 1 or units < 0:
        raise ValueError(f"pool_check: nt must be >= 1 and units >= 0, got {nt} and {units}")
    cdef _Check c
    c.nt, c.nested, c.spin = nt, nested, spin
    c.runs = <int*>calloc(units + 1, sizeof(int))
    c.tids = <int*>calloc(units + 1, sizeof(int))
    c.firsts = <int*>calloc(nt, sizeof(int))
    c.inner = <int*>calloc(3 * units + 1, sizeof(int))
    try:
        if not (c.runs and c.tids and c.firsts and c.inner):
            raise MemoryError("pool_check")
        with nogil:
            nnl_parallel_for(nt, units, _check_unit, &c)
        return ([c.runs[i] for i in range(units)], [c.tids[i] for i in range(units)],
                [c.firsts[i] for i in range(nt)],
                [c.inner[i] for i in range(3 * units)] if nested else None)
    finally:
        free(c.runs)
        free(c.tids)
        free(c.firsts)
        free(c.inner)
