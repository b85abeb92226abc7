"""Blocked GEMM (BLIS-style packing + register micro-kernels) for float32/float64.

Computes, per batch item b, ``c[b] = act(alpha * a[b] @ b_[b] + beta * c[b] + bias[b])`` with
the hand-written C kernels of ``csrc/gemm_*.c`` (see gemm_kernels.h for the contract).

Memory contract: ``a`` (B, M, K) and ``b_`` (B, K, N) may have any element strides (a
transposed operand is a transposed view, no copy); ``c`` (B, M, N) is preallocated by the
caller, has unit stride along N or along M (a transposed view: written in place) and
overlaps neither input. ``bias`` is (B or 1, M) for
``bias_kind=1`` (per row) or (B or 1, N) for ``bias_kind=2`` (per column). All shapes, dtypes
and strides are validated by ``nnlite.kernels.gemm_ops`` before the call; the GIL is released
while the kernel runs.

Cache and register blocks (MC, KC, NC, MR x NR) are chosen per micro-kernel family in the C
files (gemm_avx512.c, gemm_avx2.c, gemm_generic.c); ``blocking()`` reports them. Threads take
work units (MC-row x NR-panel rectangles) dynamically; packing buffers are malloc'd per call,
one pair per thread, never static (gemm_driver.c).
"""
from cython cimport floating

from cpython.buffer cimport (PyBUF_FORMAT, PyBUF_STRIDES, PyBUF_WRITABLE, PyBuffer_Release,
                            PyObject_GetBuffer)

from _common cimport check_status
from _common cimport share_pool

cdef extern from "gemm_kernels.h" nogil:
    ctypedef Py_ssize_t nnl_idx
    int NNL_OK
    int NNL_ISA_AUTO, NNL_ISA_GENERIC, NNL_ISA_AVX2, NNL_ISA_AVX512, NNL_ISA_COUNT
    int nnl_sgemm_pkc(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, float alpha,
                      const float *A, nnl_idx bsa, nnl_idx rsa, nnl_idx csa,
                      const float *B, nnl_idx bsb, nnl_idx rsb, nnl_idx csb,
                      float beta, float *C, nnl_idx bsc, nnl_idx rsc, nnl_idx csc,
                      const float *bias, nnl_idx bsbias, int bias_kind, int act,
                      int nthreads, int isa, const float *apk, const float *bpk)
    int nnl_dgemm_pkc(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, double alpha,
                      const double *A, nnl_idx bsa, nnl_idx rsa, nnl_idx csa,
                      const double *B, nnl_idx bsb, nnl_idx rsb, nnl_idx csb,
                      double beta, double *C, nnl_idx bsc, nnl_idx rsc, nnl_idx csc,
                      const double *bias, nnl_idx bsbias, int bias_kind, int act,
                      int nthreads, int isa, const double *apk, const double *bpk)
    int nnl_sgemm_part(nnl_idx M, nnl_idx N, nnl_idx K, float alpha,
                       const float *A, nnl_idx rsa, nnl_idx csa, const float *B, nnl_idx rsb,
                       nnl_idx csb, float beta, float *C, nnl_idx rsc, nnl_idx csc,
                       const float *bias, int bias_kind, int act, int isa, const float *apk,
                       const float *bpk, nnl_idx m0, nnl_idx m1, nnl_idx n0, nnl_idx n1)
    int nnl_dgemm_part(nnl_idx M, nnl_idx N, nnl_idx K, double alpha,
                       const double *A, nnl_idx rsa, nnl_idx csa, const double *B, nnl_idx rsb,
                       nnl_idx csb, double beta, double *C, nnl_idx rsc, nnl_idx csc,
                       const double *bias, int bias_kind, int act, int isa, const double *apk,
                       const double *bpk, nnl_idx m0, nnl_idx m1, nnl_idx n0, nnl_idx n1)
    ctypedef struct nnl_split:
        nnl_idx lk, ask, bsk
        nnl_idx ln, bsn, csn
    int nnl_sgemm_split(nnl_idx M, nnl_idx N, nnl_idx K, float alpha, const float *A,
                        nnl_idx rsa, nnl_idx csa, const float *B, nnl_idx rsb, nnl_idx csb,
                        float beta, float *C, nnl_idx rsc, const float *bias, int bias_kind,
                        int act, const nnl_split *sp, int nthreads, int isa)
    int nnl_dgemm_split(nnl_idx M, nnl_idx N, nnl_idx K, double alpha, const double *A,
                        nnl_idx rsa, nnl_idx csa, const double *B, nnl_idx rsb, nnl_idx csb,
                        double beta, double *C, nnl_idx rsc, const double *bias, int bias_kind,
                        int act, const nnl_split *sp, int nthreads, int isa)
    int nnl_sgemm_split_pk(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, float alpha,
                           const float *A, nnl_idx rsa, nnl_idx csa, const float *B,
                           nnl_idx bsb, nnl_idx rsb, nnl_idx csb, float beta, float *C,
                           nnl_idx bsc, nnl_idx rsc, const float *bias, int bias_kind, int act,
                           const nnl_split *sp, int nthreads, int isa, const float *apk)
    int nnl_dgemm_split_pk(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, double alpha,
                           const double *A, nnl_idx rsa, nnl_idx csa, const double *B,
                           nnl_idx bsb, nnl_idx rsb, nnl_idx csb, double beta, double *C,
                           nnl_idx bsc, nnl_idx rsc, const double *bias, int bias_kind,
                           int act, const nnl_split *sp, int nthreads, int isa,
                           const double *apk)
    int nnl_sgemm_pack(int side, nnl_idx rows, nnl_idx cols, const float *X, nnl_idx rs,
                       nnl_idx cs, int isa, float *out)
    int nnl_dgemm_pack(int side, nnl_idx rows, nnl_idx cols, const double *X, nnl_idx rs,
                       nnl_idx cs, int isa, double *out)
    int nnl_isa_available(int isa)
    int nnl_best_isa()
    const char *nnl_isa_name(int isa)
    int nnl_gemm_blocking(int isa, int elsize, int *mr, int *nr, int *mc, int *kc, int *nc)
    int nnl_gemm_tail_cols(int isa, int elsize)
    nnl_idx nnl_gemm_cost_cols(int isa, int elsize, nnl_idx n)
    int nnl_gemm_units(int isa, int elsize, nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K,
                       int nthreads, int pack_a, int pack_b, nnl_idx *mu, nnl_idx *nu)
    ctypedef struct nnl_cache_info:
        long l1d, l2, l3
        const char *source
    const nnl_cache_info *nnl_cache_sizes()
    void nnl_blocking_rule(long l1d, long l2, long l3, int mr, int nr, int elsize, int *mc,
                           int *kc, int *nc)

cdef extern from *:
    """
    #if NNLITE_OPENMP
    static int nnl_gemm_openmp(void) { return 1; }
    #else
    static int nnl_gemm_openmp(void) { return 0; }
    #endif
    """
    int nnl_gemm_openmp() noexcept nogil


def isa_names():
    """Names of all micro-kernel families, indexed by their isa code."""
    return [nnl_isa_name(i).decode() for i in range(NNL_ISA_COUNT)]


def available_isas():
    """Families this build can run on this CPU, best last (e.g. ['generic', 'avx2', 'avx512'])."""
    return [nnl_isa_name(i).decode() for i in range(NNL_ISA_COUNT)
            if nnl_isa_available(i)]


def best_isa():
    return nnl_isa_name(nnl_best_isa()).decode()


def isa_code(name):
    """isa code of a family name ('auto' -> -1); ValueError for an unknown or unusable name."""
    if name is None or name == "auto":
        return NNL_ISA_AUTO
    names = isa_names()
    if name not in names:
        raise ValueError(f"unknown GEMM micro-kernel {name!r}; expected 'auto' or one of {names}")
    code = names.index(name)
    if not nnl_isa_available(code):
        raise ValueError(f"GEMM micro-kernel {name!r} is not usable on this CPU/build; "
                         f"available: {available_isas()}")
    return code


def blocking(isa, elsize):
    """Dict mr, nr, mc, kc, nc of family ``isa`` (code) for elements of ``elsize`` bytes, and
    tail_n: the widest ragged last column panel its column-tail kernel computes with the rows
    in the vector lanes (0: none; gemm_internal.h)."""
    cdef int mr = 0, nr = 0, mc = 0, kc = 0, nc = 0
    if nnl_gemm_blocking(isa, elsize, &mr, &nr, &mc, &kc, &nc) != NNL_OK:
        raise ValueError(f"no GEMM micro-kernel for isa={isa}, elsize={elsize}")
    return {"mr": mr, "nr": nr, "mc": mc, "kc": kc, "nc": nc,
            "tail_n": nnl_gemm_tail_cols(isa, elsize)}


def cost_cols(int isa, int elsize, Py_ssize_t n):
    """Columns family ``isa``'s micro-kernel computes for a product of n columns: whole NR
    panels and a ragged last panel rounded up to whole vectors (``nnl_gemm_cost_cols``)."""
    cdef nnl_idx r = nnl_gemm_cost_cols(isa, elsize, n)
    if r < 0:
        raise ValueError(f"cost_cols: no GEMM micro-kernel for isa={isa}, elsize={elsize}, "
                         f"or n={n} < 0")
    return r


def work_units(int isa, int elsize, Py_ssize_t batch, Py_ssize_t M, Py_ssize_t N,
               Py_ssize_t K, int nthreads, bint pack_a=True, bint pack_b=True):
    """Dict mu, nu: the work units (mu rows x nu columns of C) a GEMM call of these sizes on
    nthreads threads uses; mu = nu = 0 for products of <= 4 rows (unpacked path). For study
    and tests."""
    cdef nnl_idx mu = 0, nu = 0
    if nnl_gemm_units(isa, elsize, batch, M, N, K, nthreads, pack_a, pack_b, &mu, &nu) != NNL_OK:
        raise ValueError(f"work_units: sizes batch={batch}, M={M}, N={N}, K={K} must be >= 1, "
                         f"isa={isa} available and elsize={elsize} 4 or 8")
    return {"mu": mu, "nu": nu}


def cache_sizes():
    """Dict l1d, l2, l3 (bytes; l3 = this core's share) and source ('env', 'sysfs', 'cpuid',
    'default') of the cache sizes the GEMM blocking was derived from (read once per process)."""
    cdef const nnl_cache_info *ci = nnl_cache_sizes()
    return {"l1d": ci.l1d, "l2": ci.l2, "l3": ci.l3, "source": ci.source.decode()}


def blocking_rule(long l1d, long l2, long l3, int mr, int nr, int elsize):
    """Dict mc, kc, nc the run-time rule derives for a mr x nr micro-kernel on elsize-byte
    elements from cache sizes l1d, l2, l3 (bytes): a pure function, for study and tests."""
    cdef int mc = 0, kc = 0, nc = 0
    if l1d <= 0 or l2 <= 0 or l3 <= 0 or mr < 1 or nr < 1 or elsize not in (4, 8):
        raise ValueError(f"blocking_rule: cache sizes ({l1d}, {l2}, {l3}) must be > 0, "
                         f"mr={mr} and nr={nr} >= 1 and elsize={elsize} 4 or 8")
    nnl_blocking_rule(l1d, l2, l3, mr, nr, elsize, &mc, &kc, &nc)
    return {"mc": mc, "kc": kc, "nc": nc}


def openmp_enabled():
    return bool(nnl_gemm_openmp())


def packed_size(int side, Py_ssize_t rows, Py_ssize_t cols, int isa, int elsize):
    """Elements ``pack`` writes for op(X) of rows x cols (side 0: A, M x K; 1: B, K x N)."""
    blk = blocking(isa, elsize)
    if side == 0:
        return -(-rows // blk["mr"]) * blk["mr"] * cols
    return -(-cols // blk["nr"]) * blk["nr"] * rows


def pack(const floating[:, :] x, int side, int isa, floating[::1] out):
    """Pack op(X) = x (rows x cols, any element strides) whole into ``out`` in the panel
    layout of family ``isa`` (a code, not -1): side 0 as the A operand, 1 as the B operand."""
    cdef Py_ssize_t es = sizeof(floating)
    cdef Py_ssize_t rows = x.shape[0], cols = x.shape[1]
    cdef int rc
    if isa < 0 or not nnl_isa_available(isa) or side not in (0, 1):
        raise ValueError(f"gemm pack: side {side} / isa {isa} is not usable")
    if out.shape[0] != packed_size(side, rows, cols, isa, es):
        raise ValueError(f"gemm pack: out has {out.shape[0]} elements; expected "
                         f"{packed_size(side, rows, cols, isa, es)}")
    if rows == 0 or cols == 0:
        return
    if x.strides[0] % es or x.strides[1] % es or x.strides[0] < 0 or x.strides[1] < 0:
        raise ValueError("gemm pack: strides must be non-negative whole elements")
    with nogil:
        if floating is float:
            rc = nnl_sgemm_pack(side, rows, cols, &x[0, 0], x.strides[0] // es,
                                x.strides[1] // es, isa, &out[0])
        else:
            rc = nnl_dgemm_pack(side, rows, cols, &x[0, 0], x.strides[0] // es,
                                x.strides[1] // es, isa, &out[0])
    check_status(rc, "gemm pack")


def gemm_strided(const floating[:, :, :] a, const floating[:, :, :] b, floating[:, :, :] c,
                 double alpha, double beta, const floating[:, :] bias, int bias_kind, int act,
                 int num_threads, int isa, const floating[::1] apk=None,
                 const floating[::1] bpk=None, part=None):
    """c = act(alpha * a @ b + beta * c + bias) for every batch item (shapes validated by caller);
    with ``part`` = (m0, m1, n0, n1) and one item, only the block c[0, m0:m1, n0:n1] of that
    product, on the calling thread (``nnl_sgemm_part``: m0 a multiple of the family's MR, n0 of
    its NR).

    Shape:
        a (B or 1, M, K), b (B or 1, K, N), c (B, M, N) with c.strides[2] == itemsize or
        c.strides[1] == itemsize (an operand with one item serves all B);
        bias (1 or B, M) when bias_kind == 1, (1 or B, N) when bias_kind == 2, else None;
        apk / bpk: ``pack`` of a[0] (side 0) / b[0] (side 1) for family ``isa`` (a code, not
        -1), used for every batch item, or None.
    """
    cdef Py_ssize_t nb = c.shape[0], M = c.shape[1], N = c.shape[2], K = a.shape[2]
    cdef Py_ssize_t es = sizeof(floating)
    cdef const floating *pbias = NULL
    cdef const floating *pa = NULL
    cdef const floating *pb = NULL
    cdef Py_ssize_t bsbias = 0
    cdef int rc
    if apk is not None or bpk is not None:
        if isa < 0 or not nnl_isa_available(isa):
            raise ValueError(f"gemm_strided: packed operands need a usable isa code, got {isa}")
        if apk is not None and apk.shape[0] != packed_size(0, M, K, isa, es):
            raise ValueError("gemm_strided: packed A does not match M, K and the isa")
        if bpk is not None and bpk.shape[0] != packed_size(1, K, N, isa, es):
            raise ValueError("gemm_strided: packed B does not match K, N and the isa")
        if apk is not None and apk.shape[0] > 0:
            pa = &apk[0]
        if bpk is not None and bpk.shape[0] > 0:
            pb = &bpk[0]
    # a or b with one batch item serves every item (batch stride 0)
    cdef Py_ssize_t bsa = a.strides[0] // es if a.shape[0] == nb else 0
    cdef Py_ssize_t bsb = b.strides[0] // es if b.shape[0] == nb else 0
    if (a.shape[0] not in (1, nb) or b.shape[0] not in (1, nb) or a.shape[1] != M
            or b.shape[1] != K or b.shape[2] != N):
        raise ValueError(f"gemm_strided: shapes a={tuple(a.shape)[:3]}, b={tuple(b.shape)[:3]}, "
                         f"c={tuple(c.shape)[:3]} do not chain")
    cdef Py_ssize_t rsc = c.strides[1] // es, csc = c.strides[2] // es
    if nb > 0 and M > 0 and N > 0 and c.strides[2] != es and c.strides[1] != es:
        raise ValueError("gemm_strided: c must have unit stride along one of its last two axes")
    if nb == 0 or M == 0 or N == 0:
        return
    if c.strides[2] == es or N == 1:
        csc = 1                 # row-major (a one-column c's column stride is never used)
        if c.strides[2] != es:
            rsc = 1
    else:
        rsc = 1                 # column-major: c.strides[1] == itemsize
    if bias_kind != 0:
        if bias is None or bias.shape[0] not in (1, nb) or (
                bias.shape[1] != (M if bias_kind == 1 else N)) or bias.strides[1] != es:
            raise ValueError("gemm_strided: bias shape/stride does not match bias_kind")
        pbias = &bias[0, 0]
        bsbias = bias.strides[0] // es if bias.shape[0] == nb else 0
    if K == 0:
        # no element of a or b is addressed; pass any valid pointer
        pa = pb = NULL
    cdef nnl_idx m0 = 0, m1 = 0, n0 = 0, n1 = 0
    if part is not None:
        m0, m1, n0, n1 = part
        if nb != 1:
            raise ValueError(f"gemm_strided: a part is of one product, got {nb} batch items")
        with nogil:
            if floating is float:
                rc = nnl_sgemm_part(M, N, K, <float>alpha,
                                    &a[0, 0, 0] if K > 0 else <const floating *>&c[0, 0, 0],
                                    a.strides[1] // es, a.strides[2] // es,
                                    &b[0, 0, 0] if K > 0 else <const floating *>&c[0, 0, 0],
                                    b.strides[1] // es, b.strides[2] // es, <float>beta,
                                    &c[0, 0, 0], rsc, csc, pbias, bias_kind, act, isa, pa, pb,
                                    m0, m1, n0, n1)
            else:
                rc = nnl_dgemm_part(M, N, K, alpha,
                                    &a[0, 0, 0] if K > 0 else <const floating *>&c[0, 0, 0],
                                    a.strides[1] // es, a.strides[2] // es,
                                    &b[0, 0, 0] if K > 0 else <const floating *>&c[0, 0, 0],
                                    b.strides[1] // es, b.strides[2] // es, beta,
                                    &c[0, 0, 0], rsc, csc, pbias, bias_kind, act, isa, pa, pb,
                                    m0, m1, n0, n1)
        check_status(rc, "gemm", f" (part rows {m0}:{m1}, columns {n0}:{n1} of a ({M}, {N}) "
                                 f"product; isa={isa})")
        return
    with nogil:
        if floating is float:
            rc = nnl_sgemm_pkc(nb, M, N, K, <float>alpha,
                               &a[0, 0, 0] if K > 0 else <const floating *>&c[0, 0, 0], bsa,
                               a.strides[1] // es, a.strides[2] // es,
                               &b[0, 0, 0] if K > 0 else <const floating *>&c[0, 0, 0], bsb,
                               b.strides[1] // es, b.strides[2] // es,
                               <float>beta, &c[0, 0, 0], c.strides[0] // es, rsc, csc,
                               pbias, bsbias, bias_kind, act, num_threads, isa, pa, pb)
        else:
            rc = nnl_dgemm_pkc(nb, M, N, K, alpha,
                               &a[0, 0, 0] if K > 0 else <const floating *>&c[0, 0, 0], bsa,
                               a.strides[1] // es, a.strides[2] // es,
                               &b[0, 0, 0] if K > 0 else <const floating *>&c[0, 0, 0], bsb,
                               b.strides[1] // es, b.strides[2] // es,
                               beta, &c[0, 0, 0], c.strides[0] // es, rsc, csc,
                               pbias, bsbias, bias_kind, act, num_threads, isa, pa, pb)
    check_status(rc, "gemm", f" (isa={isa}, act={act}, bias_kind={bias_kind})")


cdef int _acquire(object obj, Py_buffer *view, int ndim, bint writable, str name) except -1:
    """view of obj (any strides, ndim dimensions); released by the caller on success."""
    PyObject_GetBuffer(obj, view, PyBUF_STRIDES | PyBUF_FORMAT |
                       (PyBUF_WRITABLE if writable else 0))
    if view.ndim != ndim:
        PyBuffer_Release(view)
        raise ValueError(f"gemm_split: {name} must be {ndim}-D, got {view.ndim}-D")
    return 0


def gemm_split(a, b, c, double alpha, double beta, bias, int bias_kind, int act,
               int num_threads, int isa):
    """c = act(alpha * A @ B + beta * c + bias) as ONE product whose K axis and N axis each run
    over an (outer, inner) index pair (nnl_split in gemm_kernels.h), read and written in place:

        A (M, K)  = a (M, nk, lk)       with k = (k // lk, k % lk),  K = nk * lk
        B (K, N)  = b (nk, lk, nn, ln)  with j = (j // ln, j % ln),  N = nn * ln
        C (M, N)  = c (M, nn, ln)       (c.strides[2] == itemsize; c overlaps no input)

    e.g. a pointwise conv over a whole NCHW batch x (n, C, L): B = x viewed as (1, C, n, L).
    bias (M,) contiguous when bias_kind == 1, (N,) when bias_kind == 2, else None. Any element
    strides; float32 or float64 buffers of one type (read through the buffer protocol: this
    runs once per conv routine, where typed memoryviews cost a microsecond each).
    """
    cdef Py_buffer va, vb, vc, vbias
    cdef bint have_bias = False
    cdef nnl_split sp
    cdef Py_ssize_t es, M, nn, ln, nk, lk, N, K, i
    cdef const char *fmt
    cdef int rc = NNL_OK
    cdef const void *pbias = NULL
    _acquire(a, &va, 3, False, "a")
    try:
        _acquire(b, &vb, 4, False, "b")
        try:
            _acquire(c, &vc, 3, True, "c")
            try:
                if bias_kind != 0 and bias is not None:
                    _acquire(bias, &vbias, 1, False, "bias")
                    have_bias = True
                try:
                    es = vc.itemsize
                    fmt = vc.format
                    if not ((fmt[0] == b'f' and es == 4) or (fmt[0] == b'd' and es == 8)) or \
                            fmt[1] != 0:
                        raise ValueError(f"gemm_split: c must be float32 or float64, "
                                         f"got format {fmt.decode()!r}")
                    if (va.itemsize != es or vb.itemsize != es or va.format[0] != fmt[0]
                            or vb.format[0] != fmt[0] or va.format[1] != 0
                            or vb.format[1] != 0 or (have_bias and (
                                vbias.itemsize != es or vbias.format[0] != fmt[0]
                                or vbias.format[1] != 0))):
                        raise ValueError("gemm_split: a, b, c (and bias) must share one dtype")
                    M, nn, ln = vc.shape[0], vc.shape[1], vc.shape[2]
                    nk, lk = va.shape[1], va.shape[2]
                    N, K = nn * ln, nk * lk
                    if (va.shape[0] != M or vb.shape[0] != nk or vb.shape[1] != lk
                            or vb.shape[2] != nn or vb.shape[3] != ln):
                        raise ValueError(
                            f"gemm_split: shapes a=({va.shape[0]}, {nk}, {lk}), b=({vb.shape[0]},"
                            f" {vb.shape[1]}, {vb.shape[2]}, {vb.shape[3]}), c=({M}, {nn}, {ln})"
                            " do not chain")
                    for i in range(3):
                        if va.strides[i] % es or vc.strides[i] % es:
                            raise ValueError("gemm_split: strides must be whole elements")
                    for i in range(4):
                        if vb.strides[i] % es:
                            raise ValueError("gemm_split: strides must be whole elements")
                    if M == 0 or N == 0:
                        return
                    if vc.strides[2] != es and ln > 1:
                        raise ValueError("gemm_split: c must have unit stride along its last axis")
                    if bias_kind != 0:
                        if not have_bias or vbias.shape[0] != (M if bias_kind == 1 else N) or \
                                (vbias.shape[0] > 1 and vbias.strides[0] != es):
                            raise ValueError("gemm_split: bias shape does not match bias_kind")
                        pbias = vbias.buf
                    sp.lk = lk if nk > 1 and K > 0 else 0
                    sp.ask = va.strides[1] // es
                    sp.bsk = vb.strides[0] // es
                    sp.ln = ln if nn > 1 else 0
                    sp.bsn = vb.strides[2] // es
                    sp.csn = vc.strides[1] // es
                    with nogil:
                        # K == 0: no element of a or b is addressed (their pointers are unused)
                        if es == 4:
                            rc = nnl_sgemm_split(M, N, K, <float>alpha, <const float *>va.buf,
                                                 va.strides[0] // es, va.strides[2] // es,
                                                 <const float *>vb.buf, vb.strides[1] // es,
                                                 vb.strides[3] // es, <float>beta,
                                                 <float *>vc.buf, vc.strides[0] // es,
                                                 <const float *>pbias, bias_kind, act, &sp,
                                                 num_threads, isa)
                        else:
                            rc = nnl_dgemm_split(M, N, K, alpha, <const double *>va.buf,
                                                 va.strides[0] // es, va.strides[2] // es,
                                                 <const double *>vb.buf, vb.strides[1] // es,
                                                 vb.strides[3] // es, beta,
                                                 <double *>vc.buf, vc.strides[0] // es,
                                                 <const double *>pbias, bias_kind, act, &sp,
                                                 num_threads, isa)
                finally:
                    if have_bias:
                        PyBuffer_Release(&vbias)
            finally:
                PyBuffer_Release(&vc)
        finally:
            PyBuffer_Release(&vb)
    finally:
        PyBuffer_Release(&va)
    check_status(rc, "gemm_split", f" (isa={isa}, act={act}, bias_kind={bias_kind})")


def gemm_maps(const floating[:, :] a, const floating[:, :, :, :] b, floating[:, :, :, :] c,
              double alpha, double beta, const floating[::1] bias, int act, int num_threads,
              int isa, const floating[::1] apk=None):
    """c[n] = act(alpha * a @ B_n + beta * c[n] + bias) for every image n, where the columns of
    B_n and of c[n] run over the (row, column) pairs of a map, read and written in place
    (``nnl_sgemm_split_pk``: one product per image, all in one call):

        a (M, K)          any element strides
        b (nb, K, R, Q)   B_n(k, r*Q + q) = b[n, k, r, q], any element strides (e.g. every
                          second pixel of every second row of an NCHW batch: a stride-2
                          pointwise conv reading its input in place)
        c (nb, M, R, Q)   unit stride along Q, overlapping no input (validated by the caller)
        bias (M,) or None (per row); apk: ``pack`` of a (side 0) for family ``isa`` (a code,
        not -1), or None.
    """
    cdef Py_ssize_t nb = c.shape[0], M = c.shape[1], R = c.shape[2], Q = c.shape[3]
    cdef Py_ssize_t K = a.shape[1], es = sizeof(floating)
    cdef const floating *pbias = NULL
    cdef const floating *pa = NULL
    cdef nnl_split sp
    cdef int rc
    if (a.shape[0] != M or b.shape[0] != nb or b.shape[1] != K or b.shape[2] != R
            or b.shape[3] != Q):
        raise ValueError(f"gemm_maps: shapes a={tuple(a.shape)[:2]}, b={tuple(b.shape)[:4]}, "
                         f"c={tuple(c.shape)[:4]} do not chain")
    if bias is not None and bias.shape[0] != M:
        raise ValueError(f"gemm_maps: bias has {bias.shape[0]} values for {M} rows")
    if apk is not None:
        if isa < 0 or not nnl_isa_available(isa):
            raise ValueError(f"gemm_maps: a packed A needs a usable isa code, got {isa}")
        if apk.shape[0] != packed_size(0, M, K, isa, es):
            raise ValueError(f"gemm_maps: packed A has {apk.shape[0]} elements; M={M}, K={K} "
                             f"on isa {isa} pack into {packed_size(0, M, K, isa, es)}")
    if nb == 0 or M == 0 or R == 0 or Q == 0:
        return
    if Q > 1 and c.strides[3] != es:
        raise ValueError("gemm_maps: c must have unit stride along its last axis")
    for st in (a.strides[0], a.strides[1], b.strides[0], b.strides[1], b.strides[2],
               b.strides[3], c.strides[0], c.strides[1], c.strides[2]):
        if st % es:
            raise ValueError(f"gemm_maps: stride {st} bytes is not a whole number of "
                             f"{es}-byte elements")
    if bias is not None:
        pbias = &bias[0]
    if apk is not None and K > 0:
        pa = &apk[0]
    sp.lk = sp.ask = sp.bsk = 0
    sp.ln = Q if R > 1 else 0
    sp.bsn = b.strides[2] // es
    sp.csn = c.strides[2] // es
    with nogil:
        # K == 0: no element of a or b is addressed (c stands in for their pointers)
        if floating is float:
            rc = nnl_sgemm_split_pk(nb, M, R * Q, K, <float>alpha,
                                    &a[0, 0] if K > 0 else &c[0, 0, 0, 0],
                                    a.strides[0] // es, a.strides[1] // es,
                                    &b[0, 0, 0, 0] if K > 0 else &c[0, 0, 0, 0],
                                    b.strides[0] // es, b.strides[1] // es, b.strides[3] // es,
                                    <float>beta, &c[0, 0, 0, 0], c.strides[0] // es,
                                    c.strides[1] // es, pbias, 1 if pbias != NULL else 0, act,
                                    &sp, num_threads, isa, pa)
        else:
            rc = nnl_dgemm_split_pk(nb, M, R * Q, K, alpha,
                                    &a[0, 0] if K > 0 else &c[0, 0, 0, 0],
                                    a.strides[0] // es, a.strides[1] // es,
                                    &b[0, 0, 0, 0] if K > 0 else &c[0, 0, 0, 0],
                                    b.strides[0] // es, b.strides[1] // es, b.strides[3] // es,
                                    beta, &c[0, 0, 0, 0], c.strides[0] // es,
                                    c.strides[1] // es, pbias, 1 if pbias != NULL else 0, act,
                                    &sp, num_threads, isa, pa)
    check_status(rc, "gemm_maps", f" (isa={isa}, act={act})")


share_pool()
