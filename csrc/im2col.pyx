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
``floating`` fused type; OpenMP over the N*C image planes (each plane's rows of ``cols`` and each
plane of ``x`` belong to exactly one iteration, so col2im has no write races).
"""
from cython cimport floating
from cython.parallel cimport prange

from _common cimport col_range, in_range, imin, imax

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
    for p in prange(P, nogil=True, schedule="static", num_threads=nt):
        _im2col_plane(xp + p * plane, cp + p * rows, H, W, kh, kw, sh, sw, pt, pl, dh, dw,
                      oh, ow, oh * ow)


def im2col_rows(const floating[:, :, :, ::1] x, floating[:, :, ::1] cols,
                Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                Py_ssize_t oh, Py_ssize_t ow, int num_threads=1):
    """Fill ``cols`` (C*KH*KW, N, OH*OW) from ``x`` (N, C, H, W): the columns of all N images
    side by side in each row (cols[r, n] = im2col(x)[n, r]), so that a weight gradient over the
    whole batch is ONE GEMM with inner size N*OH*OW. Padding entries become 0."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t p, n, c, P = N * C, L = oh * ow, plane = H * W
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
    for p in prange(P, nogil=True, schedule="static", num_threads=nt):
        n = p // C
        c = p - n * C
        # plane (n, c): rows c*KH*KW .. of image n, each row N*L entries apart
        _im2col_plane(xp + p * plane, cp + (c * kh * kw * N + n) * L, H, W, kh, kw, sh, sw,
                      pt, pl, dh, dw, oh, ow, N * L)


def col2im(const floating[:, :, ::1] cols, floating[:, :, :, ::1] x,
           Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
           Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
           Py_ssize_t oh, Py_ssize_t ow, int num_threads=1):
    """x (N, C, H, W) += scatter of ``cols`` (N, C*KH*KW, OH*OW); padding entries dropped."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t p, P = N * C, rows = kh * kw * oh * ow, plane = H * W
    cdef int nt = max(1, num_threads)
    _check(N, C, H, W, (cols.shape[0], cols.shape[1], cols.shape[2]),
           kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    if P == 0 or rows == 0 or plane == 0:
        return
    cdef const floating* cp = &cols[0, 0, 0]
    cdef floating* xp = &x[0, 0, 0, 0]
    for p in prange(P, nogil=True, schedule="static", num_threads=nt):
        _col2im_plane(cp + p * rows, xp + p * plane, H, W, kh, kw, sh, sw, pt, pl, dh, dw,
                      oh, ow, oh * ow)


def col2im_rows(const floating[:, :, ::1] cols, floating[:, :, :, ::1] x,
                Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                Py_ssize_t oh, Py_ssize_t ow, int num_threads=1):
    """x (N, C, H, W) += scatter of ``cols`` (C*KH*KW, N, OH*OW), the layout of
    ``im2col_rows`` (cols[r, n] is row r of image n's columns): the adjoint of im2col_rows, so
    that an input gradient over a chunk of images is ONE GEMM with N = images*OH*OW. Padding
    entries are dropped."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t p, n, c, P = N * C, L = oh * ow, plane = H * W
    cdef int nt = max(1, num_threads)
    _check(N, C, H, W, (cols.shape[1], cols.shape[0], cols.shape[2]),
           kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)
    if P == 0 or L == 0 or plane == 0:
        return
    cdef const floating* cp = &cols[0, 0, 0]
    cdef floating* xp = &x[0, 0, 0, 0]
    for p in prange(P, nogil=True, schedule="static", num_threads=nt):
        n = p // C
        c = p - n * C
        _col2im_plane(cp + (c * kh * kw * N + n) * L, xp + p * plane, H, W, kh, kw, sh, sw,
                      pt, pl, dh, dw, oh, ow, N * L)
