"""Strided pointwise convs in the inference plan (ResNet's 1x1/2 downsample): one product per
image reading every s-th pixel in place (``ConvKernel.maps``, ``_gemm.gemm_maps`` over
``nnl_sgemm_split_pk``: one image with rows long enough), or, for a batch, every image's pixels
gathered by im2col into one buffer and the products of all images in one call
(``ConvKernel.batch_cols``). One image's im2col convs (strided 1x1 with short rows, and k x k
convs on small maps) run the native im2col and one native GEMM call (``IM2COL_DIRECT``).

Oracles: the naive-loop reference ``nnlite.kernels.conv_reference`` in float64 (+ bias,
residual, activation in NumPy), a float64 einsum for the raw GEMM entry, and the plan's
im2col + GEMM path, which reduces in the same K order, for bit equality.
"""
import numpy as np
import pytest
from conftest import (ACT_CODES, assert_close, kernel_threads, reference_epilogue,
                      run_conv_kernel)

from nnlite.kernels import conv_reference as ref
from nnlite._infer import kernels as K

needs_gemm = pytest.mark.skipif(K._gemm_ext is None, reason="needs the compiled GEMM")

def _route(kern, route):
    """The same layer forced onto one route: 'im2col' (im2col + GEMM, the route before strided
    reads), 'maps' (one in-place product per image) or 'batch' (a batch's pixels gathered,
    one product over every (image, pixel) column)."""
    N, C, H, W, F, oh, ow = kern.shape
    kern.maps = route == "maps"
    kern.batch_cols = route == "batch"
    kern.scratch_bytes = max(kern.scratch_bytes, K._align(N * C * oh * ow * kern.dtype.itemsize))
    return kern


def _case(rng, N, C, F, H, W, stride, dtype, residual, bias):
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = (rng.standard_normal((F, C, 1, 1)) / np.sqrt(C)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if bias else None
    oh, ow = (H - 1) // stride[0] + 1, (W - 1) // stride[1] + 1
    r = rng.standard_normal((N, F, oh, ow)).astype(dtype) if residual else None
    return x, w, b, r


def _expect(x, w, b, r, stride, act):
    want = ref.conv2d(x.astype(np.float64), w.astype(np.float64),
                      None if b is None else b.astype(np.float64), stride, 0)
    if r is not None:
        want = want + r
    return reference_epilogue(want, ACT_CODES[act])


@needs_gemm
@pytest.mark.parametrize("N,C,F,H,W,stride,act,residual,bias", [
    (1, 40, 72, 14, 14, (2, 2), "relu", False, True),      # 7x7 -> 49 columns: im2col path
    (1, 24, 16, 30, 49, (2, 2), None, True, True),         # odd width, 15x25 output
    (3, 24, 80, 31, 51, (2, 2), "relu6", True, False),     # batch 3, 16x26 output
    (3, 1, 70, 17, 48, (2, 2), "relu", False, True),       # one channel
    (2, 33, 9, 25, 50, (3, 2), None, False, True),         # stride 3 x 2, not tiling the map
    (1, 16, 128, 64, 50, (1, 2), "relu", False, True),     # stride only along W
    (1, 24, 16, 29, 23, (2, 2), None, True, True),         # rows of 12: im2col path
    (3, 40, 72, 13, 9, (2, 2), "relu", True, True),        # narrow (7x5), batch: one product
    (1, 520, 96, 20, 56, (2, 2), None, False, True),       # K > KC: two K slices
    (2, 8, 16, 2, 49, (2, 2), "relu", True, True),         # one output row (a plain B)
    (2, 8, 3, 1, 49, (2, 2), None, False, True),           # ... of 3 filters (unpacked rows)
])
def test_strided_pointwise_matches_reference(N, C, F, H, W, stride, act, residual, bias):
    rng = np.random.default_rng(N * 100 + C + F)
    x, w, b, r = _case(rng, N, C, F, H, W, stride, np.float32, residual, bias)
    attrs = {"kernel_shape": [1, 1], "strides": list(stride), "pads": [0, 0, 0, 0],
             "activation": act}

    def make():
        return K.ConvKernel(x.shape, w, b, attrs, residual, np.dtype(np.float32))
    kern = make()
    oh, ow = kern.geom.oh, kern.geom.ow
    narrow = K._few_columns(F, oh * ow)
    assert kern.maps == (N == 1 and not narrow and ow >= K._MAPS_MIN_OW)
    assert kern.batch_cols == (N > 1)
    expect = _expect(x, w, b, r, stride, act)
    routes = ["im2col", "maps"] + (["batch"] if N > 1 else [])
    for nt in (1, 2):
        with kernel_threads(nt):
            got = run_conv_kernel(kern, x, r)
            forced = [run_conv_kernel(_route(make(), route), x, r) for route in routes]
        # every route reduces in the K order of im2col + GEMM: the same bits, for any thread
        # count
        for y in forced:
            assert np.array_equal(got, y)
        assert_close(got, expect, np.float32, k=C, scale=4)


def _runs_natively(monkeypatch, make, x, r, want, k):
    """One image's im2col conv from ``make()``: run on 1 and 2 threads, ``_conv_gemm.forward``
    (im2col + GEMM through Python) never called; the same bits with ``IM2COL_DIRECT`` off,
    when forward() runs; close to ``want`` (float64 oracle, a K-term reduction)."""
    calls = []
    forward = K._conv_gemm.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)
    monkeypatch.setattr(K._conv_gemm, "forward", counted)
    for nt in (1, 2):
        with kernel_threads(nt):
            got = run_conv_kernel(make(), x, r)
            assert calls == []
            monkeypatch.setattr(K, "IM2COL_DIRECT", False)
            old = run_conv_kernel(make(), x, r)
            monkeypatch.setattr(K, "IM2COL_DIRECT", True)
        assert calls and np.array_equal(got, old)
        calls.clear()
        assert_close(got, want, np.float32, k=k, scale=4)


@needs_gemm
@pytest.mark.parametrize("C,F,H,W,stride,act,residual", [
    (40, 72, 14, 14, (2, 2), "relu", False),     # 7x7: a narrow product
    (24, 16, 29, 23, (2, 2), None, True),        # rows of 12, residual
    (64, 40, 27, 9, (3, 2), "relu6", True),      # stride 3 x 2 not tiling the map
    (8, 130, 3, 40, (2, 3), "relu", False),      # two output rows of 14
])
def test_one_image_strided_pointwise_gathers_then_runs_one_product(monkeypatch, C, F, H, W,
                                                                  stride, act, residual):
    # one image whose output rows are too short to read in place: its pixels gathered into
    # the column buffer, then the pointwise path's one GEMM call; forward() (im2col + GEMM in
    # Python) is not called, and gives the same bits when the switch is off
    rng = np.random.default_rng(C + F + H)
    x, w, b, r = _case(rng, 1, C, F, H, W, stride, np.float32, residual, True)
    attrs = {"kernel_shape": [1, 1], "strides": list(stride), "pads": [0, 0, 0, 0],
             "activation": act}

    def make():
        kern = K.ConvKernel(x.shape, w, b, attrs, residual, np.dtype(np.float32))
        assert not kern.maps
        return kern
    _runs_natively(monkeypatch, make, x, r, _expect(x, w, b, r, stride, act), C)


@needs_gemm
@pytest.mark.parametrize("C,F,H,W,kernel,stride,pads,dil,residual", [
    (32, 48, 28, 28, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),   # ResNet's 3x3/2, 14x14
    (24, 70, 13, 11, (5, 3), (3, 2), (2, 0, 1, 1), (1, 1), False),  # odd kernel and padding
    (16, 9, 15, 15, (3, 3), (2, 1), (4, 4, 4, 4), (2, 3), True),    # dilation, pads > kernel
])
def test_one_image_kxk_im2col_conv_runs_one_native_product(monkeypatch, C, F, H, W, kernel,
                                                          stride, pads, dil, residual):
    # a k x k conv of one image that runs im2col + GEMM: the native im2col into the column
    # buffer, then one GEMM call; forward() is not called and gives the same bits
    rng = np.random.default_rng(C + F)
    x = rng.standard_normal((1, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((F, C) + kernel) / np.sqrt(C * kernel[0] * kernel[1]))
    w = w.astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    attrs = {"kernel_shape": list(kernel), "strides": list(stride), "pads": list(pads),
             "dilations": list(dil), "activation": "relu"}

    def make():
        kern = K.ConvKernel(x.shape, w, b, attrs, residual, np.dtype(np.float32),
                            algorithm="im2col")
        assert kern.algorithm == "im2col"
        return kern
    oh, ow = make().geom.oh, make().geom.ow
    r = rng.standard_normal((1, F, oh, ow)).astype(np.float32) if residual else None
    # the naive loops take (top, left) padding pairs per axis: pads are (top, left, bottom,
    # right) here, asymmetric in the second case, so pad x by hand
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    want = ref.conv2d(xp, w.astype(np.float64), b.astype(np.float64), stride, 0, dil)
    if r is not None:
        want = want + r
    _runs_natively(monkeypatch, make, x, r, np.maximum(want, 0), C * kernel[0] * kernel[1])


@needs_gemm
def test_strided_pointwise_maps_follow_the_microkernel_family():
    # the in-place product runs where the family's panels are wide (AVX-512); elsewhere the
    # bound kernel takes im2col + GEMM, with the same bits
    from nnlite.kernels import gemm_ops
    rng = np.random.default_rng(4)
    x, w, b, r = _case(rng, 1, 20, 40, 11, 60, (2, 2), np.float32, False, True)
    attrs = {"kernel_shape": [1, 1], "strides": [2, 2], "pads": [0, 0, 0, 0],
             "activation": "relu"}
    kern = K.ConvKernel(x.shape, w, b, attrs, False, np.dtype(np.float32))
    assert kern.maps                              # one image (a batch gathers its pixels)
    want = _expect(x, w, b, None, (2, 2), "relu")
    outs = []
    for isa in gemm_ops._gemm.available_isas():
        code = gemm_ops._gemm.isa_code(isa)
        with gemm_ops.using_microkernel(isa):
            outs.append(run_conv_kernel(kern, x, None))
        nr = gemm_ops._gemm.blocking(code, 4)["nr"]
        assert K._maps_pay(code, 4) == (nr * 4 >= 128)
        assert_close(outs[-1], want, np.float32, k=20, scale=4)


@needs_gemm
@pytest.mark.parametrize("N,H,W", [(1, 21, 19), (3, 13, 13)])
def test_strided_pointwise_float64(N, H, W):
    rng = np.random.default_rng(5)
    x, w, b, r = _case(rng, N, 12, 70, H, W, (2, 2), np.float64, True, True)
    attrs = {"kernel_shape": [1, 1], "strides": [2, 2], "pads": [0, 0, 0, 0],
             "activation": "relu"}
    kern = K.ConvKernel(x.shape, w, b, attrs, True, np.dtype(np.float64))
    got = run_conv_kernel(kern, x, r)
    assert_close(got, _expect(x, w, b, r, (2, 2), "relu"), np.float64, k=12, scale=4)


@needs_gemm
@pytest.mark.parametrize("N", [1, 2])
def test_strided_pointwise_reads_and_writes_views(N):
    # x a channel slice of a larger buffer and y a channel slice of a concat buffer: read and
    # written in place (one image: by the in-place product; a batch: its pixels gathered); a
    # y without unit stride along W takes the im2col path
    rng = np.random.default_rng(9)
    big = rng.standard_normal((N, 50, 30, 50)).astype(np.float32)
    x = big[:, 5:37]
    w = (rng.standard_normal((80, 32, 1, 1)) / 6).astype(np.float32)
    b = rng.standard_normal(80).astype(np.float32)
    attrs = {"kernel_shape": [1, 1], "strides": [2, 2], "pads": [0, 0, 0, 0],
             "activation": "relu"}
    kern = K.ConvKernel(x.shape, w, b, attrs, False, np.dtype(np.float32))
    assert kern.maps == (N == 1) and kern.batch_cols == (N > 1)
    want = _expect(x, w, b, None, (2, 2), "relu")
    concat = np.full((N, 100, 15, 25), np.nan, np.float32)
    run_conv_kernel(kern, x, None, concat[:, 10:90])
    assert_close(concat[:, 10:90], want, np.float32, k=32, scale=4)
    assert np.isnan(concat[:, :10]).all() and np.isnan(concat[:, 90:]).all()
    wide = np.full((N, 80, 15, 50), np.nan, np.float32)
    run_conv_kernel(kern, x, None, wide[:, :, :, ::2])
    assert_close(wide[:, :, :, ::2], want, np.float32, k=32, scale=4)
    assert np.isnan(wide[:, :, :, 1::2]).all()


@needs_gemm
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("packed", [False, True])
def test_gemm_maps_matches_einsum(dtype, packed):
    from nnlite.kernels.gemm_ops import pack
    g = K._gemm_ext
    rng = np.random.default_rng(3)
    a = rng.standard_normal((37, 300)).astype(dtype)
    x = rng.standard_normal((3, 300, 21, 19)).astype(dtype)
    b = x[:, :, ::2, ::3]                                  # (3, 300, 11, 7): strided reads
    bias = rng.standard_normal(37).astype(dtype)
    c0 = rng.standard_normal((3, 37, 11, 7)).astype(dtype)
    pk = pack(a, "a") if packed else None
    isa = pk.isa if packed else g.isa_code(g.best_isa())
    for beta, act in ((0.0, 0), (1.0, 1), (0.5, 2)):
        c = c0.copy()
        g.gemm_maps(a, b, c, 1.0, beta, bias, act, 2, isa, pk.data if packed else None)
        want = reference_epilogue(np.einsum("mk,nkrq->nmrq", a.astype(np.float64), b)
                                  + beta * c0 + bias[:, None, None], act)
        assert_close(c, want, dtype, k=300, scale=4)


@needs_gemm
def test_gemm_maps_rejects_bad_operands():
    g = K._gemm_ext
    isa = g.isa_code(g.best_isa())
    a = np.zeros((8, 5), np.float32)
    b = np.zeros((2, 5, 3, 4), np.float32)
    c = np.zeros((2, 8, 3, 4), np.float32)
    with pytest.raises(ValueError, match="do not chain"):
        g.gemm_maps(a, b[:, :4], c, 1.0, 0.0, None, 0, 1, isa)
    with pytest.raises(ValueError, match="bias"):
        g.gemm_maps(a, b, c, 1.0, 0.0, np.zeros(7, np.float32), 0, 1, isa)
    with pytest.raises(ValueError, match=r"packed A has 3 elements; M=8, K=5"):
        g.gemm_maps(a, b, c, 1.0, 0.0, None, 0, 1, isa, np.zeros(3, np.float32))
    # a column stride of 6 bytes (the view spans 7*20 + 4*6 + 4 = 168 of the buffer's 200)
    odd = np.lib.stride_tricks.as_strided(np.zeros(50, np.float32), (8, 5), (20, 6))
    with pytest.raises(ValueError, match="stride 6 bytes is not a whole number of 4-byte"):
        g.gemm_maps(odd, b, c, 1.0, 0.0, None, 0, 1, isa)
    with pytest.raises(ValueError, match="unit stride"):
        g.gemm_maps(a, b[:, :, :, :2], np.zeros((2, 8, 3, 4), np.float32)[:, :, :, ::2], 1.0,
                    0.0, None, 0, 1, isa)
    with pytest.raises(ValueError, match="act"):
        g.gemm_maps(a, b, c, 1.0, 0.0, None, 5, 1, isa)
    # empty operands compute nothing
    g.gemm_maps(a, b[:0], c[:0], 1.0, 0.0, None, 0, 1, isa)
