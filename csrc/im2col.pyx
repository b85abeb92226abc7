"""im2col / col2im for 2-D convolution (-> nnlite._im2col).

Layout (Caffe's, which matches PyTorch's weight.reshape(F, -1) row order, docs/semantics.md §1.4):

    cols[n, (c*KH + a)*KW + b, i*OW + j] = x[n, c, i*SH - PT + a*DH, j*SW - PL + b*DW]

with 0 where the source pixel lies in the padding. col2im is the adjoint: it ACCUMULATES (+=)
every column entry back onto its source pixel (taps overlap whenever the dilated kernel is wider
than the stride), and never writes padding positions.

Memory contract: all arrays C-contiguous, outputs preallocated by the caller (col2im adds into
its output, so pass zeros for a plain col2im). The def wrappers check every shape; the nogil loops
then never read or write out of bounds: each source row is range-checked and each source column
range [j0, j1) is clipped to the image before the inner loop. float32 and float64 via the
``floating`` fused type; runs of the N*C image planes on the kernels' thread pool
(csrc/core/nnl_pool.c; each plane's rows of ``cols`` and each plane of ``x`` belong to exactly one
run, so col2im has no write races).
"""
from cython cimport floating

from _common cimport col_range, in_range, imin, imax
from _common cimport nnl_parallel_for, nnl_unit_fn, share_pool

cdef extern from "im2col_rows.h" nogil:
    int nnl_im2col_tap_s(const float* x, Py_ssize_t H, Py_ssize_t W, float* dst, Py_ssize_t oh,
                         Py_ssize_t ow, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t roff,
                         Py_ssize_t off, Py_ssize_t j0, Py_ssize_t j1)


cdef void _im2col_plane(const floating* x, floating* cols, Py_ssize_t H, Py_ssize_t W,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                        Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t tap_stride) noexcept nogil:
    # x: one (H, W) plane; cols: this plane's KH*KW rows of OH*OW columns, consecutive rows
    # ``tap_stride`` entries apart (OH*OW in the (N, C*KH*KW, L) layout)
    cdef Py_ssize_t a, b, i, j, row, off, j0, j1
    cdef const floating* src
    cdef floating* dst
    for a in range(kh):
        for b in range(kw):
            off = b * dw - pl
            col_range(off, W, sw, ow, &j0, &j1)
            if floating is float:
                # stride 1 or 2 on AVX-512: whole rows as masked vectors (csrc/im2col_rows.c)
                if nnl_im2col_tap_s(x, H, W, cols + (a * kw + b) * tap_stride, oh, ow, sh,
                                    sw, a * dh - pt, off, j0, j1):
                    continue
            for i in range(oh):
                row = i * sh - pt + a * dh
                dst = cols + (a * kw + b) * tap_stride + i * ow
                if not in_range(row, H):
                    # a fully padded source row: a row of zeros, no per-element test
                    for j in range(ow):
                        dst[j] = 0
                    continue
                src = x + row * W  # src[j * sw + off] is in [0, W) for j in [j0, j1)
                for j in range(j0):
                    dst[j] = 0
                if sw == 1:
                    for j in range(j0, j1):
                        dst[j] = src[j + off]
                elif sw == 2 and j1 - j0 >= 12:
                    # a constant stride the C compiler vectorises (even-lane permutes; with the
                    # stride a variable it copies element by element): 20-30% less time for
                    # 3x3/2 and 7x7/2 gathers on 28-112 wide outputs, Zen 4; rows of 7 (a 14x14
                    # map) copy faster element by element
                    for j in range(j0, j1):
                        dst[j] = src[2 * j + off]
                else:
                    for j in range(j0, j1):
                        dst[j] = src[j * sw + off]
                for j in range(j1, ow):
                    dst[j] = 0


cdef void _col2im_plane(const floating* cols, floating* x, Py_ssize_t H, Py_ssize_t W,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                        Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t tap_stride) noexcept nogil:
    # adjoint of _im2col_plane: x[row, j*sw + off] += cols[tap, i, j] (padding entries dropped);
    # consecutive taps' rows ``tap_stride`` entries apart (OH*OW in the (N, C*KH*KW, L) layout)
    cdef Py_ssize_t a, b, i, j, row, off, j0, j1
    cdef const floating* src
    cdef floating* dst
    for a in range(kh):
        for b in range(kw):
            off = b * dw - pl
            col_range(off, W, sw, ow, &j0, &j1)
            for i in range(oh):
                row = i * sh - pt + a * dh
                if not in_range(row, H):
                    continue
                src = cols + (a * kw + b) * tap_stride + i * ow
                dst = x + row * W  # dst[j * sw + off] is in [0, W) for j in [j0, j1)
                if sw == 1:
                    for j in range(j0, j1):
                        dst[j + off] += src[j]
                else:
                    for j in range(j0, j1):
                        dst[j * sw + off] += src[j]


# ------------------------------------------------------------ the pool's loop over planes


cdef struct _Planes:
    # one call's image planes p = n*C + c in runs of consecutive planes on the kernels' thread
    # pool (csrc/core/nnl_pool.c); plane p's columns start at p*ld0 (per-image layout) or at
    # (c*KH*KW*N + n)*L (the rows layout); its rows are `ld` apart
    int f32, adjoint, rows_layout
    char* x
    char* cols
    Py_ssize_t H, W, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow
    Py_ssize_t N, C, P, ld0, ld, units


cdef void _planes_run(void* ctx, Py_ssize_t u, int tid, int first) noexcept nogil:
    cdef _Planes* j = <_Planes*>ctx
    cdef Py_ssize_t p, n, c, coff, xoff
    cdef Py_ssize_t p0 = j.P * u // j.units, p1 = j.P * (u + 1) // j.units
    for p in range(p0, p1):
        xoff = p * j.H * j.W
        if j.rows_layout:
            n = p // j.C
            c = p - n * j.C
            coff = (c * j.kh * j.kw * j.N + n) * (j.oh * j.ow)
        else:
            coff = p * j.ld0
        if j.f32:
            if j.adjoint:
                _col2im_plane[float](<float*>j.cols + coff, <float*>j.x + xoff, j.H, j.W, j.kh,
                                     j.kw, j.sh, j.sw, j.pt, j.pl, j.dh, j.dw, j.oh, j.ow, j.ld)
            else:
                _im2col_plane[float](<float*>j.x + xoff, <float*>j.cols + coff, j.H, j.W, j.kh,
                                     j.kw, j.sh, j.sw, j.pt, j.pl, j.dh, j.dw, j.oh, j.ow, j.ld)
        else:
            if j.adjoint:
                _col2im_plane[double](<double*>j.cols + coff, <double*>j.x + xoff, j.H, j.W,
                                      j.kh, j.kw, j.sh, j.sw, j.pt, j.pl, j.dh, j.dw, j.oh, j.ow,
                                      j.ld)
            else:
                _im2col_plane[double](<double*>j.x + xoff, <double*>j.cols + coff, j.H, j.W,
                                      j.kh, j.kw, j.sh, j.sw, j.pt, j.pl, j.dh, j.dw, j.oh, j.ow,
                                      j.ld)


cdef int _planes(int f32, int adjoint, int rows_layout, char* x, char* cols, Py_ssize_t N,
                 Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t kh, Py_ssize_t kw,
                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                 Py_ssize_t dw, Py_ssize_t oh, Py_ssize_t ow, int nt) except -1:
    # every plane of the call, in about four runs per thread (a thread that loses its core
    # holds up a quarter of its share at most)
    cdef _Planes j
    j.f32, j.adjoint, j.rows_layout, j.x, j.cols = f32, adjoint, rows_layout, x, cols
    j.H, j.W, j.kh, j.kw, j.sh, j.sw, j.pt, j.pl = H, W, kh, kw, sh, sw, pt, pl
    j.dh, j.dw, j.oh, j.ow, j.N, j.C, j.P = dh, dw, oh, ow, N, C, N * C
    j.ld0 = kh * kw * oh * ow
    j.ld = N * oh * ow if rows_layout else oh * ow
    j.units = imax(1, imin(j.P, 4 * nt))
    with nogil:
        nnl_parallel_for(nt, j.units, _planes_run, &j)
    return 0


def _check(Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, tuple cshape,
           Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
           Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oh, Py_ssize_t ow):
    if kh < 1 or kw < 1 or sh < 1 or sw < 1 or dh < 1 or dw < 1:
        raise ValueError(f"kernel ({kh}, {kw}), stride ({sh}, {sw}) and dilation ({dh}, {dw}) "
                         "must be positive")
    if pt < 0 or pl < 0 or oh < 0 or ow < 0:
        raise ValueError(f"padding ({pt}, {pl}) and output size ({oh}, {ow}) must be >= 0")
    expect = (N, C * kh * kw, oh * ow)
    if cshape != expect:
        raise ValueError(f"column buffer of shape {cshape} does not match image "
                         f"{(N, C, H, W)} with kernel ({kh}, {kw}) and output ({oh}, {ow}): "
                         f"expected {expect}")


def im2col(const floating[:, :, :, ::1] x, floating[:, :, ::1] cols,
           Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
           Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
           Py_ssize_t oh, Py_ssize_t ow, int num_threads=1):
    """Fill ``cols`` (N, C*KH*KW, OH*OW) from ``x`` (N, C, H, W); padding entries become 0."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t p, P = N * C, rows = kh * kw * oh * ow, plane = H * W
    cdef int nt = max(1, num_threads)
    _check(N, C, H, W, (cols.shape[0], cols.shape[1], cols.shape[2]),
           kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    if P == 0 or rows == 0:
        return
    if plane == 0:  # an empty image: every column entry is padding
        for p in range(N):
            cols[p, :, :] = 0
        return
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef floating* cp = &cols[0, 0, 0]
    _planes(floating is float, 0, 0, <char*>xp, <char*>cp, N, C, H, W, kh, kw, sh, sw, pt, pl, dh,
            dw, oh, ow, nt)


def im2col_rows(const floating[:, :, :, ::1] x, floating[:, :, ::1] cols,
                Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                Py_ssize_t oh, Py_ssize_t ow, int num_threads=1):
    """Fill ``cols`` (C*KH*KW, N, OH*OW) from ``x`` (N, C, H, W): the columns of all N images
    side by side in each row (cols[r, n] = im2col(x)[n, r]), so that a weight gradient over the
    whole batch is ONE GEMM with inner size N*OH*OW. Padding entries become 0."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t P = N * C, L = oh * ow, plane = H * W
    cdef int nt = max(1, num_threads)
    _check(N, C, H, W, (cols.shape[1], cols.shape[0], cols.shape[2]),
           kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    if P == 0 or L == 0:
        return
    if plane == 0:  # an empty image: every column entry is padding
        cols[:, :, :] = 0
        return
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef floating* cp = &cols[0, 0, 0]
    _planes(floating is float, 0, 1, <char*>xp, <char*>cp, N, C, H, W, kh, kw, sh, sw, pt, pl, dh,
            dw, oh, ow, nt)


def col2im(const floating[:, :, ::1] cols, floating[:, :, :, ::1] x,
           Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
           Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
           Py_ssize_t oh, Py_ssize_t ow, int num_threads=1):
    """x (N, C, H, W) += scatter of ``cols`` (N, C*KH*KW, OH*OW); padding entries dropped."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t P = N * C, rows = kh * kw * oh * ow, plane = H * W
    cdef int nt = max(1, num_threads)
    _check(N, C, H, W, (cols.shape[0], cols.shape[1], cols.shape[2]),
           kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    if P == 0 or rows == 0 or plane == 0:
        return
    cdef const floating* cp = &cols[0, 0, 0]
    cdef floating* xp = &x[0, 0, 0, 0]
    _planes(floating is float, 1, 0, <char*>xp, <char*>cp, N, C, H, W, kh, kw, sh, sw, pt, pl, dh,
            dw, oh, ow, nt)


def col2im_rows(const floating[:, :, ::1] cols, floating[:, :, :, ::1] x,
                Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                Py_ssize_t oh, Py_ssize_t ow, int num_threads=1):
    """x (N, C, H, W) += scatter of ``cols`` (C*KH*KW, N, OH*OW), the layout of
    ``im2col_rows`` (cols[r, n] is row r of image n's columns): the adjoint of im2col_rows, so
    that an input gradient over a chunk of images is ONE GEMM with N = images*OH*OW. Padding
    entries are dropped."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t P = N * C, L = oh * ow, plane = H * W
    cdef int nt = max(1, num_threads)
    _check(N, C, H, W, (cols.shape[1], cols.shape[0], cols.shape[2]),
           kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    if P == 0 or L == 0 or plane == 0:
        return
    cdef const floating* cp = &cols[0, 0, 0]
    cdef floating* xp = &x[0, 0, 0, 0]
    _planes(floating is float, 1, 1, <char*>xp, <char*>cp, N, C, H, W, kh, kw, sh, sw, pt, pl, dh,
            dw, oh, ow, nt)


share_pool()
