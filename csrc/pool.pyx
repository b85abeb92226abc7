"""Pooling kernels: max / avg / adaptive pools forward and backward, max-unpool.

max_pool2d_forward is the one max pool of nnlite: F.max_pool2d / nn.MaxPool2d (with indices
when a gradient or return_indices needs them, without otherwise) and the inference plan's
MaxPool run it; its planes are csrc/pool_max.c (see there and in max_pool2d_forward below).

Memory contract of the other kernels: every array is C-contiguous and planes-first, x (P, H, W)
with P = N*C;
outputs are preallocated by the caller (nnlite/kernels/pool_cython.py), and the scatter
outputs (gradients, unpool) arrive zero-filled (scatter_by_index can clear its own instead).
Geometry is validated in Python before these run. Every loop below is bounded by the plane
(taps are clipped to [0, H) x [0, W), indices are tested with an unsigned compare), so no
kernel reads or writes outside its plane.

Parallelism: over planes (the max pool's forward and the global average pool in runs of
planes on the kernels' thread pool, csrc/core/nnl_pool.c; the rest OpenMP pranges); a plane is
owned by one thread in forward and backward, so the backward scatter-adds have no races.
"""
from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY, isnan
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memset

from cython cimport floating

import numpy as np

from _common cimport col_range, imax, imin, in_range
from _common cimport nnl_parallel_for, nnl_unit_fn, share_pool


cdef inline Py_ssize_t _first_in(Py_ssize_t start, Py_ssize_t d) noexcept nogil:
    # first tap start + t*d that is >= 0 (t >= 0)
    if start < 0:
        start += (-start + d - 1) // d * d
    return start


# ----------------------------------------------------------------------------- max pool
cdef inline void _tap_cols(Py_ssize_t b, Py_ssize_t sw, Py_ssize_t pw, Py_ssize_t dw,
                           Py_ssize_t W, Py_ssize_t OW, Py_ssize_t* off, Py_ssize_t* jlo,
                           Py_ssize_t* jhi) noexcept nogil:
    # tap column b of output column j sits at w = j*sw + off; [jlo, jhi) are the j with
    # 0 <= w < W (the other taps of that column are padding); the overflow-safe col_range
    off[0] = b * dw - pw
    col_range(off[0], W, sw, OW, jlo, jhi)


cdef inline void _useful_taps(Py_ssize_t k, Py_ssize_t s, Py_ssize_t p, Py_ssize_t d,
                              Py_ssize_t L, Py_ssize_t O, Py_ssize_t* lo,
                              Py_ssize_t* hi) noexcept nogil:
    # taps t in [lo, hi) that land inside [0, L) for at least one of the O windows; the
    # others only see padding, so a huge kernel with huge padding costs nothing extra
    cdef Py_ssize_t n = p - (O - 1) * s
    lo[0] = imax(0, (n + d - 1) // d if n > 0 else -((-n) // d))
    hi[0] = imin(k, (L - 1 + p) // d + 1)


cdef extern from "pool_avg.h" nogil:
    void nnl_plane_means_s(const float* x, Py_ssize_t planes, Py_ssize_t n, float* y)
    void nnl_plane_means_d(const double* x, Py_ssize_t planes, Py_ssize_t n, double* y)


cdef extern from "pool_max.h" nogil:
    ctypedef struct nnl_pool_plan:
        Py_ssize_t need
    int nnl_pool_plan_init(nnl_pool_plan* p, Py_ssize_t H, Py_ssize_t W, Py_ssize_t kh,
                           Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                           Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh,
                           Py_ssize_t ow, size_t itemsize)
    void nnl_maxpool_plane_s(const nnl_pool_plan* p, const float* x, Py_ssize_t xrs, float* y,
                             Py_ssize_t yrs, float* buf)
    void nnl_maxpool_plane_d(const nnl_pool_plan* p, const double* x, Py_ssize_t xrs, double* y,
                             Py_ssize_t yrs, double* buf)
    void nnl_maxpool_plane_idx_s(const nnl_pool_plan* p, const float* x, Py_ssize_t xrs,
                                 float* y, Py_ssize_t yrs, int64_t* idx, Py_ssize_t irs,
                                 float* vb, int64_t* ib)
    void nnl_maxpool_plane_idx_d(const nnl_pool_plan* p, const double* x, Py_ssize_t xrs,
                                 double* y, Py_ssize_t yrs, int64_t* idx, Py_ssize_t irs,
                                 double* vb, int64_t* ib)
    ctypedef struct nnl_pool_grid:
        Py_ssize_t ntab, xpn
    void nnl_pool_grid_init(nnl_pool_grid* g, Py_ssize_t H, Py_ssize_t W, Py_ssize_t kh,
                            Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                            Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh,
                            Py_ssize_t ow, int32_t* tab)
    void nnl_maxpool_planes_grid_s(const nnl_pool_grid* g, const float* x,
                                   const Py_ssize_t* xs, float* y, const Py_ssize_t* ys_,
                                   int64_t* idx, const Py_ssize_t* is_, Py_ssize_t C,
                                   Py_ssize_t p0, Py_ssize_t p1, float* xp, int nb, float* ys,
                                   int64_t* iscr)
    void nnl_maxpool_planes_grid_d(const nnl_pool_grid* g, const double* x,
                                   const Py_ssize_t* xs, double* y, const Py_ssize_t* ys_,
                                   int64_t* idx, const Py_ssize_t* is_, Py_ssize_t C,
                                   Py_ssize_t p0, Py_ssize_t p1, double* xp, int nb,
                                   double* ys,
                                   int64_t* iscr)
    int nnl_pool_same3_ok(Py_ssize_t H, Py_ssize_t W, Py_ssize_t kh, Py_ssize_t kw,
                          Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                          Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh, Py_ssize_t ow)
    void nnl_maxpool_planes_same3_s(const float* x, const Py_ssize_t* xs, float* y,
                                    const Py_ssize_t* ys, Py_ssize_t C, Py_ssize_t H,
                                    Py_ssize_t W, Py_ssize_t p0, Py_ssize_t p1) nogil
    ctypedef struct nnl_pool_small:
        Py_ssize_t nv
    int nnl_pool_small_init(nnl_pool_small* s, Py_ssize_t H, Py_ssize_t W, Py_ssize_t kh,
                            Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                            Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh,
                            Py_ssize_t ow, size_t itemsize)
    void nnl_maxpool_planes_small_s(const nnl_pool_small* s, const float* x,
                                    const Py_ssize_t* xs, float* y, const Py_ssize_t* ys_,
                                    int64_t* idx, const Py_ssize_t* is_, Py_ssize_t C,
                                    Py_ssize_t p0, Py_ssize_t p1)
    void nnl_maxpool_planes_small_d(const nnl_pool_small* s, const double* x,
                                    const Py_ssize_t* xs, double* y, const Py_ssize_t* ys_,
                                    int64_t* idx, const Py_ssize_t* is_, Py_ssize_t C,
                                    Py_ssize_t p0, Py_ssize_t p1)
    void nnl_pool_scatter_s(const float* gy, const int64_t* idx, float* gx, Py_ssize_t L,
                            Py_ssize_t HW, Py_ssize_t p0, Py_ssize_t p1, int zero)
    void nnl_pool_scatter_d(const double* gy, const int64_t* idx, double* gx, Py_ssize_t L,
                            Py_ssize_t HW, Py_ssize_t p0, Py_ssize_t p1, int zero)



# ------------------------------------------------------------ the pool's loops over planes

DEF _SAME3 = 0
DEF _SMALL = 1
DEF _PLANE = 2
DEF _MEANS = 3

cdef struct _PlaneJob:
    # one call's planes [0, P) in `units` runs of consecutive planes, on the kernels' thread
    # pool (csrc/core/nnl_pool.c): a run is the same arithmetic whoever takes it
    int kind, f32
    char* x
    char* y
    Py_ssize_t xs[3]          # element strides of x, y and idx along N and C
    Py_ssize_t ys[3]
    Py_ssize_t is_[3]
    int64_t* idx
    const nnl_pool_small* small
    const nnl_pool_plan* plan
    char* bufs                # _PLANE: a row of plan.need elements per thread
    Py_ssize_t need, C, H, W, P, xrs, yrs, units, n


cdef void _plane_run(void* ctx, Py_ssize_t u, int tid, int first) noexcept nogil:
    cdef _PlaneJob* j = <_PlaneJob*>ctx
    cdef Py_ssize_t p0 = j.P * u // j.units, p1 = j.P * (u + 1) // j.units, p, n, c
    if j.kind == _SAME3:
        nnl_maxpool_planes_same3_s(<float*>j.x, j.xs, <float*>j.y, j.ys, j.C, j.H, j.W, p0, p1)
    elif j.kind == _SMALL:
        if j.f32:
            nnl_maxpool_planes_small_s(j.small, <float*>j.x, j.xs, <float*>j.y, j.ys, j.idx,
                                       j.is_, j.C, p0, p1)
        else:
            nnl_maxpool_planes_small_d(j.small, <double*>j.x, j.xs, <double*>j.y, j.ys, j.idx,
                                       j.is_, j.C, p0, p1)
    elif j.kind == _PLANE:
        for p in range(p0, p1):
            n = p // j.C
            c = p % j.C
            if j.f32:
                nnl_maxpool_plane_s(j.plan, <float*>j.x + n * j.xs[0] + c * j.xs[1], j.xrs,
                                    <float*>j.y + n * j.ys[0] + c * j.ys[1], j.yrs,
                                    <float*>j.bufs + tid * j.need)
            else:
                nnl_maxpool_plane_d(j.plan, <double*>j.x + n * j.xs[0] + c * j.xs[1], j.xrs,
                                    <double*>j.y + n * j.ys[0] + c * j.ys[1], j.yrs,
                                    <double*>j.bufs + tid * j.need)
    else:   # _MEANS: contiguous planes of n elements
        if j.f32:
            nnl_plane_means_s(<float*>j.x + p0 * j.n, p1 - p0, j.n, <float*>j.y + p0)
        else:
            nnl_plane_means_d(<double*>j.x + p0 * j.n, p1 - p0, j.n, <double*>j.y + p0)


cdef inline void _run_planes(_PlaneJob* j, int nt, Py_ssize_t per_unit) noexcept nogil:
    # runs of at least per_unit planes, about four per thread: a thread that loses its core
    # holds up a quarter of its share at most
    j.units = imax(1, imin(4 * nt, j.P // imax(1, per_unit)))
    nnl_parallel_for(nt, j.units, _plane_run, j)


cdef void _max_plane(const floating* x, Py_ssize_t xrs, floating* y, Py_ssize_t yrs,
                     int64_t* idx, Py_ssize_t irs,
                     Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    # The row-by-row loop for geometries whose coordinates leave the C kernel's range (every
    # step overflow-safe). Loop order: output row, tap row h, tap column b, output column j;
    # every output still sees its taps in row-major window order.
    cdef Py_ssize_t i, j, b, h, h0, h1, w0, w1, off, jlo, jhi, b_lo, b_hi
    cdef floating v
    cdef floating* yrow
    cdef int64_t* arow
    cdef const floating* xrow
    cdef bint take
    _useful_taps(kw, sw, pw, dw, W, OW, &b_lo, &b_hi)
    for i in range(OH):
        yrow = y + i * yrs
        arow = idx + i * irs
        h0 = i * sh - ph
        h1 = imin(h0 + (kh - 1) * dh + 1, H)
        h0 = _first_in(h0, dh)
        for j in range(OW):
            w0 = j * sw - pw
            w1 = imin(w0 + (kw - 1) * dw + 1, W)
            w0 = _first_in(w0, dw)
            yrow[j] = -INFINITY
            # the first in-bounds tap; -1 for a window wholly in padding (docs/semantics.md §3.6)
            arow[j] = h0 * W + w0 if (h0 < h1 and w0 < w1) else -1
        h = h0
        while h < h1:
            xrow = x + h * xrs
            for b in range(b_lo, b_hi):
                _tap_cols(b, sw, pw, dw, W, OW, &off, &jlo, &jhi)
                for j in range(jlo, jhi):
                    v = xrow[j * sw + off]
                    take = (v > yrow[j]) | (v != v)  # first max; NaN always taken
                    yrow[j] = v if take else yrow[j]
                    arow[j] = h * W + j * sw + off if take else arow[j]
            h = h + dh


# the small-plane plan of the last geometry (a training loop repeats its pools): filled and
# read with the GIL held, and copied into the call's own plan before the planes run
cdef nnl_pool_small _small_last
cdef Py_ssize_t _small_key[14]
cdef int _small_have = -1     # -1: nothing cached; else nnl_pool_small_init's result


cdef int _small_plan(nnl_pool_small* s, Py_ssize_t H, Py_ssize_t W, Py_ssize_t kh,
                     Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                     Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh, Py_ssize_t ow,
                     Py_ssize_t es):
    global _small_have
    cdef Py_ssize_t key[14]
    cdef int i, same = _small_have >= 0
    key[0] = H; key[1] = W; key[2] = kh; key[3] = kw; key[4] = sh; key[5] = sw; key[6] = pt
    key[7] = pl; key[8] = dh; key[9] = dw; key[10] = oh; key[11] = ow; key[12] = es
    key[13] = 0
    for i in range(14):
        if key[i] != _small_key[i]:
            same = 0
    if not same:
        _small_have = nnl_pool_small_init(&_small_last, H, W, kh, kw, sh, sw, pt, pl, dh, dw,
                                          oh, ow, es)
        for i in range(14):
            _small_key[i] = key[i]
    if _small_have:
        s[0] = _small_last
    return _small_have


def _fits(o, s, k, d, pad):
    # Python ints: every coordinate of the C kernels (and their phase arithmetic) below 2**60
    return (o + 1) * s + (k - 1) * d + pad < 2 ** 60


def max_pool2d_forward(const floating[:, :, :, :] x, floating[:, :, :, :] y,
                       int64_t[:, :, :, :] idx, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                       Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                       int num_threads=1):
    """y = max over each window of x; idx (None to skip) the flat index h*W + w of the winner.

    x (N, C, H, W), y and idx (N, C, OH, OW), each with unit stride along W (other strides are
    free: channel slices of larger buffers are fine). The window of y[n, c, i, j] is
    x[n, c, i*sh - ph + a*dh, j*sw - pw + b*dw], a < kh, b < kw; taps outside x are skipped,
    -inf (index -1) when none is inside. Without idx the planes run the vectorised kernel of
    csrc/pool_max.c; with idx its indices path (separable, first maximum of a row-major scan,
    NaN propagates with the last NaN's index); coordinates beyond 2**60 run the row-by-row loop
    above. Raises ValueError on bad arguments."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t oh = y.shape[2], ow = y.shape[3]
    cdef Py_ssize_t p, n, c, P = N * C
    cdef Py_ssize_t es = sizeof(floating)
    cdef Py_ssize_t xrs = x.strides[2] // es, yrs = y.strides[2] // es, irs = 0
    cdef int nt = max(1, num_threads)
    cdef bint want = idx is not None
    if kh < 1 or kw < 1 or sh < 1 or sw < 1 or dh < 1 or dw < 1 or ph < 0 or pw < 0:
        raise ValueError("max_pool2d_forward: kernel, stride and dilation must be >= 1 and "
                         "padding >= 0")
    if y.shape[0] != N or y.shape[1] != C:
        ys = (y.shape[0], y.shape[1], oh, ow)
        raise ValueError(f"max_pool2d_forward: x {(N, C, H, W)} and y {ys} must have the same "
                         f"N and C")
    if want and (idx.shape[0] != N or idx.shape[1] != C or idx.shape[2] != oh or
                 idx.shape[3] != ow):
        ish = (idx.shape[0], idx.shape[1], idx.shape[2], idx.shape[3])
        raise ValueError(f"max_pool2d_forward: idx {ish} must have y's shape {(N, C, oh, ow)}")
    if not ((W < 2 or x.strides[3] == es) and (ow < 2 or y.strides[3] == es) and
            (not want or ow < 2 or idx.strides[3] == sizeof(int64_t))):
        raise ValueError("max_pool2d_forward: x, y and idx need unit stride along W")
    if P == 0 or oh == 0 or ow == 0:
        return
    if want:
        irs = idx.strides[2] // sizeof(int64_t)
    dt = np.float32 if floating is float else np.float64
    cdef bint fits = _fits(oh, sh, kh, dh, ph) and _fits(ow, sw, kw, dw, pw)
    cdef nnl_pool_plan plan
    cdef int fast = 0
    cdef floating[:, ::1] bufs
    cdef int64_t[:, ::1] ibufs
    cdef int64_t[:, ::1] scratch
    cdef int64_t* ip
    cdef int tid
    nt = <int> min(nt, P)
    # small planes (csrc/pool_max.h, nnl_pool_small): packed rows of x, y and idx. Without
    # indices only when a plane's virtual grid is one vector: measured on one Zen 4 core
    # (float32, one thread, interleaved medians), 3x3/1 pad 1 on 1280 planes 4x4 ran 38 ->
    # 22 us, but on more vectors per plane the register path above was as fast (8x8: 3x3/1
    # 27.6 vs 27.3 us, 2x2/2 36 vs 37) or faster (14x14 2x2/2 25 vs 36, 16x16 3x3/1 26 vs
    # 42, 12x12 5x5/1 55 vs 113). With indices on every plane it takes (8x8 3x3/1: 52 -> 33
    # us, 2x2/2: 85 -> 50, 4x4 3x3/1: 73 -> 27, 16x16 3x3/1: 74 -> 59, 12x12 5x5/1 about even)
    # up to 16 vectors per plane (float64 2x2/2 on 14x14 planes, 23 vectors: 115 vs 120 us)
    cdef nnl_pool_small small
    cdef Py_ssize_t t
    # the planes' layout, for whichever of the pool's loops below runs them
    cdef _PlaneJob job
    memset(&job, 0, sizeof(job))
    job.f32 = floating is float
    job.x, job.y = <char*>&x[0, 0, 0, 0], <char*>&y[0, 0, 0, 0]
    job.P, job.C, job.H, job.W = P, C, H, W
    job.xrs, job.yrs = xrs, yrs
    for t in range(2):
        job.xs[t] = x.strides[t] // es
        job.ys[t] = y.strides[t] // es
    # 3x3/1 'same' pools of packed float planes (csrc/pool_max.c, AVX-512: flat vectors, lane
    # shifts for the columns): one Zen 4 core, float32, interleaved medians, the register
    # path -> this: 832 planes 7x7 38.7 -> 13.2 us, 528 14x14 46.6 -> 25.9, 192 28x28 51.7 ->
    # 32.6, 64 56x56 72.6 -> 51.5
    if (floating is float and not want and (H < 2 or xrs == W) and (oh < 2 or yrs == ow)
            and nnl_pool_same3_ok(H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)):
        job.kind = _SAME3
        with nogil:
            _run_planes(&job, nt, 1)
        return
    if (fits and (H < 2 or xrs == W) and (oh < 2 or (yrs == ow and (not want or irs == ow)))
            and _small_plan(&small, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, es)
            and (small.nv == 1 or (want and small.nv <= 16))):
        if want:
            job.idx = &idx[0, 0, 0, 0]
            for t in range(2):
                job.is_[t] = idx.strides[t] // sizeof(int64_t)
        job.kind, job.small = _SMALL, &small
        with nogil:
            _run_planes(&job, nt, 1)
        return
    if fits:
        fast = nnl_pool_plan_init(&plan, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, es)
    if fast and not want:
        bufs = np.full((nt, plan.need), -np.inf, dtype=dt)
        job.kind, job.plan, job.bufs, job.need = _PLANE, &plan, <char*>&bufs[0, 0], plan.need
        with nogil:
            _run_planes(&job, nt, 1)
        return
    if want and fits and _grid_pays(H, W, oh, ow, kh, kw, sh, sw, dh, dw):
        _max_planes_grid(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw, nt)
        return
    if not want:
        scratch = np.empty((nt, ow), dtype=np.int64)   # one row of indices per thread
    if fits:
        bufs = np.empty((nt, W), dtype=dt)
        ibufs = np.empty((nt, W), dtype=np.int64)
        for p in prange(P, nogil=True, schedule="static", num_threads=nt):
            tid = threadid()
            n = p // C
            c = p % C
            ip = &idx[n, c, 0, 0] if want else &scratch[tid, 0]
            if floating is float:
                nnl_maxpool_plane_idx_s(&plan, &x[n, c, 0, 0], xrs, &y[n, c, 0, 0], yrs, ip,
                                        irs, &bufs[tid, 0], &ibufs[tid, 0])
            else:
                nnl_maxpool_plane_idx_d(&plan, &x[n, c, 0, 0], xrs, &y[n, c, 0, 0], yrs, ip,
                                        irs, &bufs[tid, 0], &ibufs[tid, 0])
        return
    for p in prange(P, nogil=True, schedule="static", num_threads=nt):
        tid = threadid()
        n = p // C
        c = p % C
        ip = &idx[n, c, 0, 0] if want else &scratch[tid, 0]
        _max_plane(&x[n, c, 0, 0], xrs, &y[n, c, 0, 0], yrs, ip, irs, H, W, oh, ow,
                   kh, kw, sh, sw, ph, pw, dh, dw)


# The grid path of the indices (csrc/pool_max_tmpl.h, nnl_maxpool_planes_grid) runs every pool
# whose padded plane has at most _GRID_MAX elements, with stride 1 or 2 along W (larger
# strides copy the plane element by element) and at most _GRID_TAPS taps (its work grows with
# KH*KW, the separable path's with KH + KW); the separable path the others. Measured on one
# Zen 4 core (float32, benchmarks/bench_pool.py --indices, medians on a loaded machine), with
# indices before (separable path, and the old per-tap-stream grid on small planes) -> after:
# 3x3/1 pad 1 on 512 planes 8x8: 129-139 -> 58-61 us; 2x2/2 on 1280 planes 8x8: 144 -> 89;
# 3x3/1 pad 1 on 1280 planes 4x4: 163-166 -> 75; 3x3/2 pad 1 on 64 planes 112x112: 890-1020
# -> 270-297; 2x2/2 on 2048 planes 32x32: 1.8-1.9 ms -> 0.70; 3x3/1 pad 1 on 256 planes 56x56:
# 2.3-2.8 ms -> 0.68-0.79. An intermediate version measured 3x3/3 (stride 3) and 7x7/2 faster
# on the separable path, hence the stride and tap limits.
_GRID_MAX = 1 << 20
_GRID_TAPS = 128


def _grid_pays(Py_ssize_t H, Py_ssize_t W, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh,
               Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw):
    if sw > 2 or kh * kw > _GRID_TAPS or H * W >= 2 ** 31:
        return False
    Hp = (oh - 1) * sh + (kh - 1) * dh + 1
    Wp = (ow - 1) * sw + (kw - 1) * dw + 1
    return (Hp + sh - 1) * (Wp + sw - 1) <= _GRID_MAX


def _max_planes_grid(const floating[:, :, :, :] x, floating[:, :, :, :] y,
                     int64_t[:, :, :, :] idx, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                     Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                     int nt):
    """max_pool2d_forward with indices on the grid path (arguments checked by the caller):
    each thread runs one contiguous run of planes."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t oh = y.shape[2], ow = y.shape[3], P = N * C, t, p0, p1
    cdef Py_ssize_t es = sizeof(floating)
    cdef Py_ssize_t xs[3]
    cdef Py_ssize_t ys_[3]
    cdef Py_ssize_t is_[3]
    cdef nnl_pool_grid g
    for t in range(3):
        xs[t] = x.strides[t] // es
        ys_[t] = y.strides[t] // es
        is_[t] = idx.strides[t] // sizeof(int64_t)
    nnl_pool_grid_init(&g, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, NULL)
    cdef int32_t[::1] tab = np.empty(g.ntab, dtype=np.int32)
    nnl_pool_grid_init(&g, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, &tab[0])
    dt = np.float32 if floating is float else np.float64
    # the padded planes of a thread: 4 small ones (copied 3 planes ahead) or 2
    cdef int nb = 4 if g.xpn * es <= 8192 else 2
    cdef floating[:, ::1] xp = np.full((nt, nb * g.xpn), -np.inf, dtype=dt)
    # the outputs of a plane when y's or idx's rows are not packed (channel slices)
    cdef bint packed = oh == 1 or (ys_[2] == ow and is_[2] == ow)
    cdef floating[:, ::1] ys = np.empty((nt, 1 if packed else oh * ow), dtype=dt)
    cdef int64_t[:, ::1] iscr = np.empty((nt, 1 if packed else oh * ow), dtype=np.int64)
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        p0 = P * t // nt
        p1 = P * (t + 1) // nt
        if floating is float:
            nnl_maxpool_planes_grid_s(&g, &x[0, 0, 0, 0], xs, &y[0, 0, 0, 0], ys_,
                                      &idx[0, 0, 0, 0], is_, C, p0, p1, &xp[t, 0], nb,
                                      &ys[t, 0], &iscr[t, 0])
        else:
            nnl_maxpool_planes_grid_d(&g, &x[0, 0, 0, 0], xs, &y[0, 0, 0, 0], ys_,
                                      &idx[0, 0, 0, 0], is_, C, p0, p1, &xp[t, 0], nb,
                                      &ys[t, 0], &iscr[t, 0])


def scatter_by_index(const floating[:, ::1] gy, const int64_t[:, ::1] idx,
                     floating[:, ::1] gx, int num_threads, bint zero=False):
    """gx[p, idx[p, l]] += gy[p, l] for every valid index, in the order of l (max pools'
    backward; csrc/pool_max_tmpl.h, nnl_pool_scatter). zero: gx's planes are set to 0 first
    (gx may then arrive uninitialised: each plane is cleared in cache just before its
    scatter, which saves a separate pass over gx). Each thread runs one contiguous run of
    planes, so the result does not depend on the thread count."""
    cdef Py_ssize_t P = gy.shape[0], L = gy.shape[1], HW = gx.shape[1], t, p0, p1
    if idx.shape[0] != P or idx.shape[1] != L or gx.shape[0] != P:
        raise ValueError(f"scatter_by_index: gy ({P}, {L}), idx ({idx.shape[0]}, "
                         f"{idx.shape[1]}) and gx ({gx.shape[0]}, {HW}) do not match")
    if P == 0 or HW == 0:
        return
    if L == 0:
        if zero:
            np.asarray(gx)[...] = 0
        return
    cdef int nt = <int> max(1, min(num_threads, P))
    for t in prange(nt, nogil=True, schedule="static", num_threads=nt):
        p0 = P * t // nt
        p1 = P * (t + 1) // nt
        if floating is float:
            nnl_pool_scatter_s(&gy[0, 0], &idx[0, 0], &gx[0, 0], L, HW, p0, p1, zero)
        else:
            nnl_pool_scatter_d(&gy[0, 0], &idx[0, 0], &gx[0, 0], L, HW, p0, p1, zero)


# ----------------------------------------------------------------------------- avg pool
cdef inline double _avg_div(Py_ssize_t i, Py_ssize_t j, Py_ssize_t H, Py_ssize_t W,
                                Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                                Py_ssize_t ph, Py_ssize_t pw, bint count_include_pad,
                                Py_ssize_t divisor) noexcept nogil:
    # docs/semantics.md §4.3: the window clipped to the padded extent (a ceil overhang beyond the
    # right padding is not counted), or to the input; 0 when no cell is inside the input
    cdef Py_ssize_t hs = i * sh - ph, ws = j * sw - pw
    cdef Py_ssize_t he = imin(hs + kh, H + ph), we = imin(ws + kw, W + pw)
    cdef Py_ssize_t inside = (imin(he, H) - imax(hs, 0)) * (imin(we, W) - imax(ws, 0))
    if imin(he, H) <= imax(hs, 0) or imin(we, W) <= imax(ws, 0):
        return 0
    if divisor != 0:
        return divisor
    if count_include_pad:
        return <double>(he - hs) * <double>(we - ws)  # double: a huge kernel overflows int64
    return inside


cdef void _avg_plane(const floating* x, floating* y, floating* gx, const floating* gy,
                     bint backward, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                     Py_ssize_t ph, Py_ssize_t pw, bint count_include_pad,
                     Py_ssize_t divisor, floating* g) noexcept nogil:
    # forward: y = window sum / divisor; backward: gx[window] += gy / divisor (docs/semantics.md
    # §4.3-4.4). Loop order as _max_plane: output row, tap row, tap column, output column, so each
    # sum runs in row-major window order. g is an OW scratch row (the backward's gy / divisor).
    cdef Py_ssize_t i, j, b, h, h0, h1, off, jlo, jhi, b_lo, b_hi
    cdef double div
    cdef floating* yrow
    cdef floating* grow
    cdef const floating* xrow
    _useful_taps(kw, sw, pw, 1, W, OW, &b_lo, &b_hi)
    for i in range(OH):
        h0 = imax(i * sh - ph, 0)
        h1 = imin(i * sh - ph + kh, H)
        if backward:
            for j in range(OW):
                div = _avg_div(i, j, H, W, kh, kw, sh, sw, ph, pw, count_include_pad, divisor)
                g[j] = gy[i * OW + j] / <floating>div if div != 0 else 0
            for h in range(h0, h1):
                grow = gx + h * W
                for b in range(b_lo, b_hi):
                    _tap_cols(b, sw, pw, 1, W, OW, &off, &jlo, &jhi)
                    if sw == 1:  # contiguous: lets the compiler vectorise
                        for j in range(jlo, jhi):
                            grow[j + off] += g[j]
                    else:
                        for j in range(jlo, jhi):
                            grow[j * sw + off] += g[j]
        else:
            yrow = y + i * OW
            for j in range(OW):
                yrow[j] = 0
            for h in range(h0, h1):
                xrow = x + h * W
                for b in range(b_lo, b_hi):
                    _tap_cols(b, sw, pw, 1, W, OW, &off, &jlo, &jhi)
                    if sw == 1:
                        for j in range(jlo, jhi):
                            yrow[j] = yrow[j] + xrow[j + off]
                    else:
                        for j in range(jlo, jhi):
                            yrow[j] = yrow[j] + xrow[j * sw + off]
            for j in range(OW):
                div = _avg_div(i, j, H, W, kh, kw, sh, sw, ph, pw, count_include_pad, divisor)
                yrow[j] = yrow[j] / <floating>div if div != 0 else 0


def avg_pool2d_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y, Py_ssize_t kh,
                       Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw,
                       bint count_include_pad, Py_ssize_t divisor, int num_threads):
    """divisor 0 means no override."""
    cdef Py_ssize_t P = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t OH = y.shape[1], OW = y.shape[2], p
    if y.shape[0] != P:
        raise ValueError("avg_pool2d_forward: output shape does not match the input")
    if P == 0 or OH == 0 or OW == 0:
        return
    for p in prange(P, nogil=True, schedule="static", num_threads=num_threads):
        _avg_plane(&x[p, 0, 0], &y[p, 0, 0], NULL, NULL, False, H, W, OH, OW,
                   kh, kw, sh, sw, ph, pw, count_include_pad, divisor, NULL)


def avg_pool2d_backward(const floating[:, :, ::1] gy, floating[:, :, ::1] gx,
                        floating[:, ::1] scratch, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                        Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, bint count_include_pad,
                        Py_ssize_t divisor, int num_threads):
    """scratch: (num_threads, OW), one row of gy / divisor per thread."""
    cdef Py_ssize_t P = gx.shape[0], H = gx.shape[1], W = gx.shape[2]
    cdef Py_ssize_t OH = gy.shape[1], OW = gy.shape[2], p
    if gy.shape[0] != P or scratch.shape[0] < num_threads or scratch.shape[1] != OW:
        raise ValueError("avg_pool2d_backward: gradient or scratch shapes do not match")
    if P == 0 or OH == 0 or OW == 0:
        return
    for p in prange(P, nogil=True, schedule="static", num_threads=num_threads):
        _avg_plane(NULL, NULL, &gx[p, 0, 0], &gy[p, 0, 0], True, H, W, OH, OW,
                   kh, kw, sh, sw, ph, pw, count_include_pad, divisor,
                   &scratch[threadid(), 0])


# ------------------------------------------------------------------------ adaptive pools
cdef inline Py_ssize_t _bin_start(Py_ssize_t i, Py_ssize_t I, Py_ssize_t O) noexcept nogil:
    return (i * I) // O


cdef inline Py_ssize_t _bin_end(Py_ssize_t i, Py_ssize_t I, Py_ssize_t O) noexcept nogil:
    return ((i + 1) * I + O - 1) // O


# Adaptive average pools run blocks of _AAP_BLOCK planes: each bin's bounds are computed once
# per block (integer divisions cost more than a small bin's adds: the digits net's global pool,
# 2560 planes of 4x4, spent most of its time in them), and the planes' sums interleave, so that
# their independent add chains overlap. Each output is still the sum of its bin in row-major
# order, then one division: the same values as a plane-by-plane loop. The global pool (one bin
# per plane) instead sums each plane in vector lanes (csrc/pool_avg.c), blocks of _GAP_BLOCK
# planes per work item: 1280 x 7x7 at batch 8, AMD EPYC Zen 4, 55 -> 31 us on one thread.
cdef enum:
    _AAP_BLOCK = 8
    _GAP_BLOCK = 64


cdef inline void _aap_block(const floating* x, floating* y, const floating* gy, floating* gx,
                     bint backward, Py_ssize_t nq, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH,
                     Py_ssize_t OW, bint assign) noexcept nogil:
    # nq <= _AAP_BLOCK planes (plane strides H*W and OH*OW); forward: y = bin sums / bin
    # size; backward: gx[bin] += gy / bin size (gx zeroed by the caller), or with ``assign``
    # (bins that tile the plane: each gx element in exactly one bin) gx[bin] = gy / bin size
    cdef floating acc[_AAP_BLOCK]
    cdef Py_ssize_t i, j, h, w, q, h0, h1, w0, w1, off, o, HW = H * W, OHW = OH * OW
    cdef floating cnt
    for i in range(OH):
        h0 = _bin_start(i, H, OH)
        h1 = _bin_end(i, H, OH)
        for j in range(OW):
            w0 = _bin_start(j, W, OW)
            w1 = _bin_end(j, W, OW)
            cnt = <floating>((h1 - h0) * (w1 - w0))
            o = i * OW + j
            if backward:
                for q in range(nq):
                    acc[q] = gy[q * OHW + o] / cnt
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        off = h * W + w
                        if assign:
                            for q in range(nq):
                                gx[q * HW + off] = acc[q]
                        else:
                            for q in range(nq):
                                gx[q * HW + off] += acc[q]
            else:
                for q in range(nq):
                    acc[q] = 0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        off = h * W + w
                        for q in range(nq):
                            acc[q] = acc[q] + x[q * HW + off]
                for q in range(nq):
                    y[q * OHW + o] = acc[q] / cnt


def adaptive_avg_pool2d_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                                int num_threads):
    cdef Py_ssize_t P = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t OH = y.shape[1], OW = y.shape[2], b, p0
    cdef _PlaneJob job
    if y.shape[0] != P:
        raise ValueError("adaptive_avg_pool2d_forward: output shape does not match the input")
    if P == 0 or OH == 0 or OW == 0:
        return
    if OH == 1 and OW == 1 and H * W > 0:
        # the global pool: each plane's mean in vector lanes (csrc/pool_avg.c), runs of at
        # least _GAP_BLOCK planes
        memset(&job, 0, sizeof(job))
        job.kind, job.f32, job.P, job.n = _MEANS, floating is float, P, H * W
        job.x, job.y = <char*>&x[0, 0, 0], <char*>&y[0, 0, 0]
        with nogil:
            _run_planes(&job, max(1, num_threads), _GAP_BLOCK)
        return
    for b in prange((P + _AAP_BLOCK - 1) // _AAP_BLOCK, nogil=True, schedule="static",
                    num_threads=num_threads):
        p0 = b * _AAP_BLOCK
        if P - p0 >= _AAP_BLOCK:   # a constant block size: the compiler unrolls over planes
            _aap_block(&x[p0, 0, 0], &y[p0, 0, 0], NULL, NULL, False, _AAP_BLOCK,
                       H, W, OH, OW, False)
        else:
            _aap_block(&x[p0, 0, 0], &y[p0, 0, 0], NULL, NULL, False, P - p0,
                       H, W, OH, OW, False)


def adaptive_avg_pool2d_backward(const floating[:, :, ::1] gy, floating[:, :, ::1] gx,
                                 int num_threads):
    """gx += the adaptive average pool's gradient; when the bins tile the plane (H % OH == 0
    and W % OW == 0) gx is written, not added to (it may then hold anything before)."""
    cdef Py_ssize_t P = gx.shape[0], H = gx.shape[1], W = gx.shape[2]
    cdef Py_ssize_t OH = gy.shape[1], OW = gy.shape[2], b, p0
    cdef bint tiles = OH > 0 and OW > 0 and H % OH == 0 and W % OW == 0
    if gy.shape[0] != P:
        raise ValueError("adaptive_avg_pool2d_backward: gradient shapes do not match")
    if P == 0 or OH == 0 or OW == 0:
        return
    for b in prange((P + _AAP_BLOCK - 1) // _AAP_BLOCK, nogil=True, schedule="static",
                    num_threads=num_threads):
        p0 = b * _AAP_BLOCK
        if P - p0 >= _AAP_BLOCK:   # a constant block size: the compiler unrolls over planes
            _aap_block(NULL, NULL, &gy[p0, 0, 0], &gx[p0, 0, 0], True, _AAP_BLOCK,
                       H, W, OH, OW, tiles)
        else:
            _aap_block(NULL, NULL, &gy[p0, 0, 0], &gx[p0, 0, 0], True, P - p0,
                       H, W, OH, OW, tiles)


def adaptive_max_pool2d_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                                int64_t[:, :, ::1] idx, int num_threads):
    cdef Py_ssize_t P = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t OH = y.shape[1], OW = y.shape[2], p, i, j, h, w, h0, h1, w0, w1, arg
    cdef floating v, best
    if y.shape[0] != P or idx.shape[0] != P or idx.shape[1] != OH or idx.shape[2] != OW:
        raise ValueError("adaptive_max_pool2d_forward: output shapes do not match the input")
    if P == 0 or OH == 0 or OW == 0:
        return
    for p in prange(P, nogil=True, schedule="static", num_threads=num_threads):
        for i in range(OH):
            h0 = _bin_start(i, H, OH)
            h1 = _bin_end(i, H, OH)
            for j in range(OW):
                w0 = _bin_start(j, W, OW)
                w1 = _bin_end(j, W, OW)
                best = -INFINITY
                arg = h0 * W + w0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        v = x[p, h, w]
                        if v > best or isnan(v):
                            best = v
                            arg = h * W + w
                y[p, i, j] = best
                idx[p, i, j] = arg


# ----------------------------------------------------------------------------- unpool
def max_unpool2d_forward(const floating[:, ::1] x, const int64_t[:, ::1] idx,
                         floating[:, ::1] y, int num_threads):
    """y[p, idx[p, l]] = x[p, l] in order (a repeated index keeps the last value)."""
    cdef Py_ssize_t P = x.shape[0], L = x.shape[1], HW = y.shape[1], p, l, a
    if idx.shape[0] != P or idx.shape[1] != L or y.shape[0] != P:
        raise ValueError("max_unpool2d_forward: shapes do not match")
    for p in prange(P, nogil=True, schedule="static", num_threads=num_threads):
        for l in range(L):
            a = idx[p, l]
            if in_range(a, HW):
                y[p, a] = x[p, l]


def max_unpool2d_backward(const floating[:, ::1] gy, const int64_t[:, ::1] idx,
                          floating[:, ::1] gx, int num_threads):
    """gx[p, l] = gy[p, idx[p, l]] (0 where the index is -1)."""
    cdef Py_ssize_t P = gx.shape[0], L = gx.shape[1], HW = gy.shape[1], p, l, a
    if idx.shape[0] != P or idx.shape[1] != L or gy.shape[0] != P:
        raise ValueError("max_unpool2d_backward: shapes do not match")
    for p in prange(P, nogil=True, schedule="static", num_threads=num_threads):
        for l in range(L):
            a = idx[p, l]
            gx[p, l] = gy[p, a] if in_range(a, HW) else 0


share_pool()
