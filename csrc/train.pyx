"""Training kernels (-> nnlite._train): native BatchNorm forward and backward, ReLU, the
depthwise conv weight gradient.

Per channel, the forward reads x twice for its statistics (the mean, then Σ(x - mean)², the
stable two-pass form) and once more to write y; the backward reads gy and x once for its two
sums and once more to write gx.

x, y, gy, gx are C-contiguous (N, C, S) views (S = product of the spatial sizes). OpenMP runs
over the channels; each channel's reductions run in one thread in a fixed order (train_bn.c), so
the results are bit-identical for every thread count. Statistics accumulate in double.

    bn_train_forward   mean, m2 = per-channel mean and Σ(x - mean)²; y = (x - mean) * invstd *
                       w + b with invstd = 1 / sqrt(m2 / (N*S) + eps) (biased variance)
    bn_backward        sgy = Σ gy, sgxm = Σ gy * (x - mean); and, when gx is given,
                       training: gx = w*invstd * (gy - sgy/cnt - (x - mean) * invstd² * sgxm/cnt)
                       eval:     gx = w*invstd * gy
"""
from cython cimport floating
from cython.parallel cimport prange
from _common cimport share_pool
from libc.math cimport sqrt


cdef extern from "train.h" nogil:
    ctypedef Py_ssize_t nnl_tidx
    void nnl_bn_stats_s(const float* x, nnl_tidx n, nnl_tidx s, nnl_tidx sn, double* mean,
                        double* m2)
    void nnl_bn_stats_d(const double* x, nnl_tidx n, nnl_tidx s, nnl_tidx sn, double* mean,
                        double* m2)
    void nnl_bn_affine_s(const float* x, float* y, nnl_tidx n, nnl_tidx s, nnl_tidx sn,
                         float scale, float shift, int relu)
    void nnl_bn_affine_d(const double* x, double* y, nnl_tidx n, nnl_tidx s, nnl_tidx sn,
                         double scale, double shift, int relu)
    void nnl_bn_bwd_sums_s(const float* gy, const float* x, nnl_tidx n, nnl_tidx s,
                           nnl_tidx sn, double mean, double* sgy, double* sgxm)
    void nnl_bn_bwd_sums_d(const double* gy, const double* x, nnl_tidx n, nnl_tidx s,
                           nnl_tidx sn, double mean, double* sgy, double* sgxm)
    void nnl_bn_bwd_gx_s(const float* gy, const float* x, float* gx, nnl_tidx n, nnl_tidx s,
                         nnl_tidx sn, float a, float b, float d)
    void nnl_bn_bwd_gx_d(const double* gy, const double* x, double* gx, nnl_tidx n,
                         nnl_tidx s, nnl_tidx sn, double a, double b, double d)
    void nnl_bn_relu_mask_s(const float* gy, const float* ym, float* out, nnl_tidx n,
                            nnl_tidx s, nnl_tidx sn)
    void nnl_bn_relu_mask_d(const double* gy, const double* ym, double* out, nnl_tidx n,
                            nnl_tidx s, nnl_tidx sn)
    void nnl_relu_fwd_s(const float* x, float* y, nnl_tidx n)
    void nnl_relu_fwd_d(const double* x, double* y, nnl_tidx n)
    void nnl_relu_bwd_s(const float* gy, const float* y, float* gx, nnl_tidx n)
    void nnl_relu_bwd_d(const double* gy, const double* y, double* gx, nnl_tidx n)
    int nnl_dw_wgrad_s(const float* gy, const float* x, float* gw, nnl_tidx n, nnl_tidx gsn,
                        nnl_tidx xsn, nnl_tidx H, nnl_tidx W, nnl_tidx kh, nnl_tidx kw,
                        nnl_tidx sh, nnl_tidx sw, nnl_tidx pt, nnl_tidx pl, nnl_tidx dh,
                        nnl_tidx dw, nnl_tidx oh, nnl_tidx ow)
    int nnl_dw_wgrad_d(const double* gy, const double* x, double* gw, nnl_tidx n,
                        nnl_tidx gsn, nnl_tidx xsn, nnl_tidx H, nnl_tidx W, nnl_tidx kh,
                        nnl_tidx kw, nnl_tidx sh, nnl_tidx sw, nnl_tidx pt, nnl_tidx pl,
                        nnl_tidx dh, nnl_tidx dw, nnl_tidx oh, nnl_tidx ow)


def _check3(name, tuple got, tuple want):
    if got != want:
        raise ValueError(f"{name} has shape {got}; expected {want}")


def _check_channels(Py_ssize_t C, tuple named):
    """Every (name, vector) in ``named`` has one entry per channel."""
    for name, arr in named:
        if arr.shape[0] != C:
            raise ValueError(f"{name} has {arr.shape[0]} entries; expected {C} (channels)")


def bn_train_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                     const floating[::1] weight, const floating[::1] bias, double eps,
                     double[::1] mean, double[::1] m2, double[::1] invstd, int num_threads=1,
                     bint relu=False, floating[::1] running_mean=None,
                     floating[::1] running_var=None, double momentum=0.0):
    """Batch statistics and the normalised, scaled and shifted output of x (N, C, S); with
    ``relu``, a ReLU fused into the write (y <= 0 -> 0, NaN passes). ``running_mean`` /
    ``running_var`` (each optional, one entry per channel): updated in place,
    r = (1 - momentum) * r + momentum * stat in double, rounded once to r's dtype, with the
    batch mean and the UNBIASED variance m2 / (N*S - 1) (m2 / (N*S) for a single value)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2], c
    cdef Py_ssize_t sn = C * S
    cdef double cnt = <double>N * <double>S, inv, scale
    cdef double keep = 1.0 - momentum, ucnt
    cdef int nt = max(1, num_threads)
    cdef bint has_rm = running_mean is not None, has_rv = running_var is not None
    if y.shape[0] != N or y.shape[1] != C or y.shape[2] != S:
        _check3("y", (y.shape[0], y.shape[1], y.shape[2]), (N, C, S))
    if (weight.shape[0] != C or bias.shape[0] != C or mean.shape[0] != C or m2.shape[0] != C
            or invstd.shape[0] != C or (has_rm and running_mean.shape[0] != C)
            or (has_rv and running_var.shape[0] != C)):
        _check_channels(C, (("weight", weight), ("bias", bias), ("mean", mean), ("m2", m2),
                            ("invstd", invstd))
                        + ((("running_mean", running_mean),) if has_rm else ())
                        + ((("running_var", running_var),) if has_rv else ()))
    if N == 0 or C == 0 or S == 0:
        raise ValueError(f"bn_train_forward: empty input of shape {(N, C, S)}")
    ucnt = cnt - 1.0 if cnt > 1.0 else cnt
    for c in prange(C, nogil=True, schedule="static", num_threads=nt):
        if floating is float:
            nnl_bn_stats_s(&x[0, c, 0], N, S, sn, &mean[c], &m2[c])
        else:
            nnl_bn_stats_d(&x[0, c, 0], N, S, sn, &mean[c], &m2[c])
        inv = 1.0 / sqrt(m2[c] / cnt + eps)
        invstd[c] = inv
        scale = inv * weight[c]
        if floating is float:
            nnl_bn_affine_s(&x[0, c, 0], &y[0, c, 0], N, S, sn, <float>scale,
                            <float>(bias[c] - mean[c] * scale), relu)
        else:
            nnl_bn_affine_d(&x[0, c, 0], &y[0, c, 0], N, S, sn, scale,
                            bias[c] - mean[c] * scale, relu)
    if has_rm or has_rv:               # a few values: after the team, in this thread
        with nogil:
            for c in range(C):
                if has_rm:
                    running_mean[c] = <floating>(keep * running_mean[c] + momentum * mean[c])
                if has_rv:
                    running_var[c] = <floating>(keep * running_var[c]
                                                + momentum * (m2[c] / ucnt))


def bn_backward(const floating[:, :, ::1] gy, const floating[:, :, ::1] x,
                floating[:, :, ::1] gx, const double[::1] mean, const double[::1] invstd,
                const floating[::1] weight, bint training, double[::1] sgy, double[::1] sgxm,
                int num_threads=1, const floating[:, :, ::1] relu_out=None):
    """Per-channel sums Σgy and Σgy*(x - mean); gx (None: skipped) from them in one write.
    ``relu_out``: the output of a ReLU fused after the BatchNorm (gy reads as 0 where it is
    <= 0; gx is then required: each channel's masked gy is written into it first and read
    there while in cache), else None."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2], c
    cdef Py_ssize_t sn = C * S
    cdef double cnt = <double>N * <double>S, k1, k2, k3, inv
    cdef int nt = max(1, num_threads)
    cdef bint want_gx = gx is not None
    cdef const floating* ym = NULL
    cdef const floating* g
    # the checks in C first; the Python-level ones (which name the offender) only on a mismatch
    if gy.shape[0] != N or gy.shape[1] != C or gy.shape[2] != S:
        _check3("gy", (gy.shape[0], gy.shape[1], gy.shape[2]), (N, C, S))
    if want_gx and (gx.shape[0] != N or gx.shape[1] != C or gx.shape[2] != S):
        _check3("gx", (gx.shape[0], gx.shape[1], gx.shape[2]), (N, C, S))
    if (weight.shape[0] != C or mean.shape[0] != C or invstd.shape[0] != C or sgy.shape[0] != C
            or sgxm.shape[0] != C):
        _check_channels(C, (("weight", weight), ("mean", mean), ("invstd", invstd),
                            ("sgy", sgy), ("sgxm", sgxm)))
    if N == 0 or C == 0 or S == 0:
        raise ValueError(f"bn_backward: empty input of shape {(N, C, S)}")
    if relu_out is not None:
        if not want_gx:
            raise ValueError("bn_backward: relu_out needs gx (the masked gradient's buffer)")
        if relu_out.shape[0] != N or relu_out.shape[1] != C or relu_out.shape[2] != S:
            _check3("relu_out", (relu_out.shape[0], relu_out.shape[1], relu_out.shape[2]),
                    (N, C, S))
        ym = &relu_out[0, 0, 0]
    for c in prange(C, nogil=True, schedule="static", num_threads=nt):
        g = &gy[0, c, 0]
        if ym != NULL:
            if floating is float:
                nnl_bn_relu_mask_s(g, ym + c * S, &gx[0, c, 0], N, S, sn)
            else:
                nnl_bn_relu_mask_d(g, ym + c * S, &gx[0, c, 0], N, S, sn)
            g = &gx[0, c, 0]
        if floating is float:
            nnl_bn_bwd_sums_s(g, &x[0, c, 0], N, S, sn, mean[c], &sgy[c], &sgxm[c])
        else:
            nnl_bn_bwd_sums_d(g, &x[0, c, 0], N, S, sn, mean[c], &sgy[c], &sgxm[c])
        if want_gx:
            inv = invstd[c]
            k1 = weight[c] * inv
            if training:
                k2 = -k1 * inv * inv * sgxm[c] / cnt
                k3 = -k1 * sgy[c] / cnt - k2 * mean[c]
            else:
                k2 = 0.0
                k3 = 0.0
            if floating is float:
                nnl_bn_bwd_gx_s(g, &x[0, c, 0], &gx[0, c, 0], N, S, sn, <float>k1, <float>k2,
                                <float>k3)
            else:
                nnl_bn_bwd_gx_d(g, &x[0, c, 0], &gx[0, c, 0], N, S, sn, k1, k2, k3)


def bn_affine(const floating[:, :, ::1] x, floating[:, :, ::1] y, const floating[::1] scale,
              const floating[::1] shift, int num_threads=1, bint relu=False):
    """y = x * scale[c] + shift[c] per channel of x (N, C, S) in one pass (an eval-mode
    BatchNorm: the running statistics and the affine folded into scale and shift); with
    ``relu``, a ReLU fused into the write."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2], c
    cdef int nt = max(1, num_threads)
    _check3("y", (y.shape[0], y.shape[1], y.shape[2]), (N, C, S))
    _check_channels(C, (("scale", scale), ("shift", shift)))
    if N == 0 or C == 0 or S == 0:
        return
    for c in prange(C, nogil=True, schedule="static", num_threads=nt):
        if floating is float:
            nnl_bn_affine_s(&x[0, c, 0], &y[0, c, 0], N, S, C * S, scale[c], shift[c], relu)
        else:
            nnl_bn_affine_d(&x[0, c, 0], &y[0, c, 0], N, S, C * S, scale[c], shift[c], relu)


# ---------------------------------------------------------------------------------- ReLU
# Elementwise, in blocks of _RELU_BLOCK per OpenMP iteration (every element is computed alone:
# results cannot depend on the thread count).
cdef enum:
    _RELU_BLOCK = 16384


def relu_forward(const floating[::1] x, floating[::1] y, int num_threads=1):
    """y = max(x, 0) with NaN propagated (as torch.relu) and -0.0 -> +0.0 (as np.maximum)."""
    cdef Py_ssize_t n = x.shape[0], nb, blk, i0, i1
    cdef int nt = max(1, num_threads)
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} elements; expected {n}")
    nb = (n + _RELU_BLOCK - 1) // _RELU_BLOCK
    for blk in prange(nb, nogil=True, schedule="static", num_threads=nt):
        i0 = blk * _RELU_BLOCK
        i1 = min(i0 + _RELU_BLOCK, n)
        if floating is float:
            nnl_relu_fwd_s(&x[i0], &y[i0], i1 - i0)
        else:
            nnl_relu_fwd_d(&x[i0], &y[i0], i1 - i0)


def relu_backward(const floating[::1] gy, const floating[::1] y, floating[::1] gx,
                  int num_threads=1):
    """gx = gy where y > 0, else 0 (y = relu's output: y > 0 exactly where its input was)."""
    cdef Py_ssize_t n = gy.shape[0], nb, blk, i0, i1
    cdef int nt = max(1, num_threads)
    if y.shape[0] != n or gx.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} and gx {gx.shape[0]} elements; expected {n}")
    nb = (n + _RELU_BLOCK - 1) // _RELU_BLOCK
    for blk in prange(nb, nogil=True, schedule="static", num_threads=nt):
        i0 = blk * _RELU_BLOCK
        i1 = min(i0 + _RELU_BLOCK, n)
        if floating is float:
            nnl_relu_bwd_s(&gy[i0], &y[i0], &gx[i0], i1 - i0)
        else:
            nnl_relu_bwd_d(&gy[i0], &y[i0], &gx[i0], i1 - i0)


# ---------------------------------------------------------------- depthwise weight gradient
def depthwise_weight_grad(const floating[:, :, :, ::1] gy, const floating[:, :, :, ::1] x,
                          floating[:, ::1] gw, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                          Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                          Py_ssize_t dw, int num_threads=1):
    """gw (F, KH*KW) of a depthwise conv2d (groups == C, F = C * multiplier; output channel f
    reads input channel f // multiplier) from gy (N, F, OH, OW) and x (N, C, H, W). OpenMP
    over the output channels; each channel's sums run in one thread in a fixed order
    (train_dw.c), so the result is bit-identical for every thread count."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = gy.shape[1], oh = gy.shape[2], ow = gy.shape[3], f, mult
    cdef int failed = 0
    cdef int nt = max(1, num_threads)
    if gy.shape[0] != N:
        raise ValueError(f"gy has {gy.shape[0]} images; x has {N}")
    if C == 0 or F % C:
        raise ValueError(f"gy's {F} channels are not a multiple of x's {C} channels")
    _check3("gw", (gw.shape[0], gw.shape[1]), (F, kh * kw))
    if min(kh, kw, sh, sw, dh, dw) < 1 or pt < 0 or pl < 0:
        raise ValueError(f"bad geometry: kernel ({kh}, {kw}), stride ({sh}, {sw}), "
                         f"dilation ({dh}, {dw}), padding ({pt}, {pl})")
    # (any OH, OW is memory-safe: taps outside x's plane read zeros, never x)
    mult = F // C
    if F == 0:
        return
    if N == 0 or oh == 0 or ow == 0 or H == 0 or W == 0:
        gw[:, :] = 0
        return
    for f in prange(F, nogil=True, schedule="static", num_threads=nt):
        if floating is float:
            failed += nnl_dw_wgrad_s(&gy[0, f, 0, 0], &x[0, f // mult, 0, 0], &gw[f, 0], N,
                                     F * oh * ow, C * H * W, H, W, kh, kw, sh, sw, pt, pl, dh,
                                     dw, oh, ow)
        else:
            failed += nnl_dw_wgrad_d(&gy[0, f, 0, 0], &x[0, f // mult, 0, 0], &gw[f, 0], N,
                                     F * oh * ow, C * H * W, H, W, kh, kw, sh, sw, pt, pl, dh,
                                     dw, oh, ow)
    if failed:
        raise MemoryError(f"depthwise_weight_grad: no memory for a {kh}x{kw} accumulator")


share_pool()
