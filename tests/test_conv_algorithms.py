"""Every conv algorithm ('im2col', 'implicit', 'direct', 'auto') against the naive-loop reference
on the same inputs; the selector (nnlite.conv_algorithm); the kernels of nnlite._convfast on
their own (epilogue, strided operands, every GEMM micro-kernel family, the row fallback of the
depthwise kernel); the extra-memory claim of the implicit GEMM.

Oracles: ``nnlite.kernels.conv_reference`` (loops, shares no code with the fast paths) and, for
planes too large for the loops, a shifted-slice sum written here.
"""
import threading

import numpy as np
import pytest
from hypothesis import given, strategies as st

import nnlite
import nnlite.nn.functional as F
from nnlite import _algorithms, bench
from nnlite._algorithms import ALGORITHMS, direct_kernel, phase_pays, resolve, rows_pay
from nnlite._convgeom import conv2d_geometry
from nnlite.kernels import conv_cython, conv_reference as ref

from conftest import assert_close, kernel_threads, reference_epilogue, run_conv_kernel
from conv_cases import conv2d_case, conv_transpose2d_case, with_fixture

convfast = pytest.importorskip("nnlite._convfast") if nnlite._config.cython_built() else None
needs_ext = pytest.mark.skipif(convfast is None, reason="nnlite built without its extension")

FAST = ("im2col", "implicit", "direct", "auto")


def _conv_data(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"])).astype(dtype)
    w = rng.standard_normal((case["f"], case["c"] // case["g"], case["kh"],
                             case["kw"])).astype(dtype)
    b = rng.standard_normal(case["f"]).astype(dtype)
    return x, w, b


def _kw(case):
    return dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
                groups=case["g"])


def _shifted_depthwise(x, w, b, stride, pad, dilation):
    """Independent oracle for large planes: depthwise conv as a sum of KH*KW strided slices of
    the zero-padded image (float64). w (F, 1, KH, KW) with F = M*C."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    m = f // c
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xm = np.repeat(xp, m, axis=1)                                  # channel f reads f // M
    y = np.zeros((n, f, oh, ow)) + b.astype(np.float64)[None, :, None, None]
    for a in range(kh):
        for q in range(kw):
            tap = xm[:, :, a * dh:a * dh + sh * (oh - 1) + 1:sh,
                     q * dw:q * dw + sw * (ow - 1) + 1:sw]
            y += w[:, 0, a, q].astype(np.float64)[None, :, None, None] * tap
    return y


# ----------------------------------------------------------------------------- F.conv2d
@needs_ext
@with_fixture
@given(case=conv2d_case(), dtype=st.sampled_from([np.float32, np.float64]),
       algo=st.sampled_from(FAST))
def test_every_algorithm_matches_reference(case, dtype, algo):
    x, w, b = _conv_data(case, dtype)
    expect = ref.conv2d(x, w, b, **_kw(case))
    with nnlite.using_backend("cython"), nnlite.conv_algorithm(algo):
        y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), nnlite.tensor(b), **_kw(case))
    k = case["c"] // case["g"] * case["kh"] * case["kw"]
    assert_close(y, expect, dtype, k=k, scale=4)


@needs_ext
@with_fixture
@given(case=conv2d_case(), dtype=st.sampled_from([np.float32, np.float64]),
       algo=st.sampled_from(("im2col", "implicit", "direct")))
def test_every_algorithm_kernel_matches_reference(case, dtype, algo):
    # the kernel entry with the algorithm forced (no per-layer resolution): 'direct' on a
    # depthwise conv or a stride-1 conv (the small-map kernel; a strided dense conv runs
    # 'implicit'), 'implicit' on every conv, 'im2col' without the pointwise shortcut
    x, w, b = _conv_data(case, dtype, seed=1)
    geom = conv2d_geometry(x.shape, w.shape, b.shape, case["stride"], case["padding"],
                           case["dilation"], case["g"])
    y = conv_cython.conv2d_forward(x, w, b, geom, general=True, algorithm=algo)
    k = geom.k
    assert_close(y, ref.conv2d(x, w, b, **_kw(case)), dtype, k=k, scale=4)


@needs_ext
@with_fixture
@given(case=conv2d_case(), algo=st.sampled_from(FAST))
def test_backward_matches_reference_under_every_algorithm(case, algo):
    x, w, b = _conv_data(case, np.float64, seed=2)
    gy = np.random.default_rng(3).standard_normal(ref.conv2d(x, w, b, **_kw(case)).shape)
    gx, gw, gb = ref.conv2d_grads(x, w, gy, **_kw(case))
    with nnlite.using_backend("cython"), nnlite.conv_algorithm(algo):
        xt, wt, bt = (nnlite.tensor(a, requires_grad=True) for a in (x, w, b))
        (F.conv2d(xt, wt, bt, **_kw(case)) * nnlite.tensor(gy)).sum().backward()
    for got, expect in ((xt.grad, gx), (wt.grad, gw), (bt.grad, gb)):
        assert_close(got, expect, np.float64, k=64, scale=4)


@needs_ext
@with_fixture
@given(case=conv_transpose2d_case(), algo=st.sampled_from(FAST))
def test_conv_transpose2d_and_its_input_gradient_under_every_algorithm(case, algo):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((case["n"], case["cin"], case["h"], case["w"]))
    w = rng.standard_normal((case["cin"], case["cout"] // case["g"], case["kh"], case["kw"]))
    kw = dict(stride=case["stride"], padding=case["padding"],
              output_padding=case["output_padding"], groups=case["g"],
              dilation=case["dilation"])
    y_ref = ref.conv_transpose2d(x, w, None, **kw)
    gy = rng.standard_normal(y_ref.shape)
    gx_ref, gw_ref, _ = ref.conv_transpose2d_grads(x, w, gy, **kw)
    with nnlite.using_backend("cython"), nnlite.conv_algorithm(algo):
        xt, wt = nnlite.tensor(x, requires_grad=True), nnlite.tensor(w, requires_grad=True)
        y = F.conv_transpose2d(xt, wt, None, **kw)
        (y * nnlite.tensor(gy)).sum().backward()
    assert_close(y, y_ref, np.float64, k=64)
    assert_close(xt.grad, gx_ref, np.float64, k=64)
    assert_close(wt.grad, gw_ref, np.float64, k=64)


@needs_ext
@pytest.mark.parametrize("algo", FAST)
def test_zero_input_channels_and_empty_batch(algo):
    w = np.ones((3, 0, 2, 2), np.float32)
    b = np.arange(3, dtype=np.float32)
    with nnlite.conv_algorithm(algo):
        y = F.conv2d(nnlite.tensor(np.ones((2, 0, 4, 4), np.float32)), nnlite.tensor(w),
                     nnlite.tensor(b)).data
        assert y.shape == (2, 3, 3, 3)
        np.testing.assert_array_equal(y, np.broadcast_to(b[None, :, None, None], y.shape))
        y0 = F.conv2d(nnlite.tensor(np.ones((0, 4, 5, 5))), nnlite.tensor(np.ones((2, 4, 3, 3))))
        assert y0.shape == (0, 2, 3, 3)


# ----------------------------------------------------------------------------- direct kernel
@needs_ext
@pytest.mark.parametrize("shape, mult, k, stride, pad, dil", [
    ((2, 3, 40, 37), 1, (3, 3), (1, 1), (1, 1), (1, 1)),      # vector blocks + border columns
    ((1, 2, 33, 70), 2, (3, 5), (1, 2), (2, 0), (2, 1)),      # channel multiplier, strided
    ((1, 4, 19, 23), 1, (5, 5), (2, 2), (4, 6), (1, 1)),      # padding wider than the kernel
    ((1, 1, 1100, 1000), 1, (3, 3), (1, 1), (1, 1), (1, 1)),  # too large: the row kernel
    ((1, 2, 300, 260), 1, (3, 3), (1, 1), (1, 1), (1, 1)),
    ((1, 2, 1030, 1030), 1, (3, 2), (2, 1), (1, 0), (1, 3)),  # row kernel, strided
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_depthwise_large_planes(shape, mult, k, stride, pad, dil, dtype):
    rng = np.random.default_rng(5)
    c = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((c * mult, 1) + k).astype(dtype)
    b = rng.standard_normal(c * mult).astype(dtype)
    with nnlite.using_backend("cython"), nnlite.conv_algorithm("direct"):
        y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), nnlite.tensor(b), stride, pad, dil,
                     groups=c).data
    assert_close(y, _shifted_depthwise(x, w, b, stride, pad, dil), dtype, k=k[0] * k[1],
                 scale=4)


# (x shape, w shape, stride, padding, dilation, groups): planes large enough for whole 48-wide
# GEMM panels, so every B source of the implicit GEMM runs, with its B-direct kernel (float32,
# AVX-512) and the packed path (float64, and the last partial panel)
IMPLICIT_PATHS = {
    "wide, padded 3x3": ((1, 5, 26, 29), (9, 5, 3, 3), 1, 1, 1, 1),
    "wide, K in 2-3 slices": ((1, 90, 12, 20), (6, 90, 3, 3), 1, 1, 1, 1),
    "wide, dilated": ((1, 4, 21, 25), (5, 4, 3, 2), 1, (2, 1), (2, 3), 1),
    "wide, 7x7 stride 2 phases": ((1, 3, 40, 37), (8, 3, 7, 7), 2, 3, 1, 1),
    "wide, grouped": ((2, 8, 24, 26), (12, 2, 3, 3), 1, 1, 1, 4),
    "self, valid 3x3": ((1, 3, 22, 30), (6, 3, 3, 3), 1, 0, 1, 1),
    "self, pointwise few rows": ((2, 7, 20, 19), (10, 7, 1, 1), 1, 0, 1, 1),
    "self, pointwise many rows": ((1, 7, 14, 15), (100, 7, 1, 1), 1, 0, 1, 1),
    "segments, 3x3 stride 2": ((1, 6, 33, 35), (7, 6, 3, 3), 2, 1, 1, 1),
    # phase rows of 64 channels too many for a quarter of the L2: one thread's columns are
    # cut into several units, each copying its band
    "wide, 3x3 stride 2, bands under the L2": ((1, 64, 120, 101), (16, 64, 3, 3), 2, 1, 1, 1),
    # a column stride of 3: the phase rows are copied element by element
    "wide, stride 2 x 3": ((1, 5, 40, 47), (6, 5, 5, 4), (2, 3), 2, 1, 1),
}


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", sorted(IMPLICIT_PATHS))
def test_implicit_paths_match_reference(path, dtype):
    xs, ws, s, p, d, g = IMPLICIT_PATHS[path]
    rng = np.random.default_rng(9)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    with nnlite.using_backend("cython"), nnlite.conv_algorithm("implicit"):
        y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), nnlite.tensor(b), s, p, d, g)
    assert_close(y, ref.conv2d(x, w, b, s, p, d, g), dtype, k=ws[1] * ws[2] * ws[3], scale=4)


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", sorted(IMPLICIT_PATHS) + ["3x3 stride 2, batch 3",
                                                          "odd 3x3 stride 2, one channel"])
def test_implicit_prepacked_weights_same_bits(path, dtype):
    # weights packed once (conv_cython.implicit_pack, an inference plan's) give the bits of the
    # per-call packing on one and two threads, and the reference's values; families other
    # than the one they were packed for pack per call
    from nnlite.kernels import gemm_ops
    extra = {"3x3 stride 2, batch 3": ((3, 16, 29, 28), (24, 16, 3, 3), 2, 1, 1, 1),
             "odd 3x3 stride 2, one channel": ((1, 1, 17, 13), (9, 1, 3, 3), 2, 1, 1, 1)}
    xs, ws, s, p, d, g = IMPLICIT_PATHS.get(path) or extra[path]
    rng = np.random.default_rng(21)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    geom = conv2d_geometry(x.shape, w.shape, b.shape, s, p, d, g)
    algo, args = conv_cython.native_algorithm(geom, "implicit")
    assert algo == "implicit"
    packed = conv_cython.implicit_pack(w, geom, args)
    assert packed[2] > 0 and packed[1].size >= w.size
    expect = ref.conv2d(x, w, b, s, p, d, g)
    for nt in (1, 2):
        with kernel_threads(nt):
            ys = [conv_cython.fast_forward("implicit", x, w, b, geom, args, packed=pk)
                  for pk in (packed, None)]
        np.testing.assert_array_equal(ys[0], ys[1])
        assert_close(ys[0], expect, dtype, k=ws[1] * ws[2] * ws[3], scale=4)
    for isa in gemm_ops._gemm.available_isas():   # packed for another family: not used
        with gemm_ops.using_microkernel(isa):
            y = conv_cython.fast_forward("implicit", x, w, b, geom, args, packed=packed)
        assert_close(y, expect, dtype, k=ws[1] * ws[2] * ws[3], scale=4)


@needs_ext
def test_implicit_prepacked_weights_checked():
    x = np.zeros((1, 4, 9, 9), np.float32)
    w = np.zeros((6, 36), np.float32)
    y = np.zeros((1, 6, 25), np.float32)
    args = (3, 3, 2, 2, 1, 1, 1, 1, 5, 5)
    isa = conv_cython.gemm_ops._gemm.isa_code(conv_cython.gemm_ops._gemm.best_isa())
    size = convfast.implicit_pack_size(1, 4, 9, 9, 6, 1, *args, 4, isa)
    data = np.empty(size, np.float32)
    kc = convfast.conv2d_implicit_pack(w, data, 1, 4, 9, 9, 1, *args, isa)
    with pytest.raises(ValueError, match="packed weights"):
        convfast.conv2d_implicit(x, w, None, y, 1, *args, isa=isa, packed=(data[:-1], kc))
    with pytest.raises(ValueError, match="packed weights"):
        convfast.conv2d_implicit(x, w, None, y, 1, *args, isa=-1, packed=(data, kc))
    with pytest.raises(ValueError, match="out has"):
        convfast.conv2d_implicit_pack(w, data[:-1], 1, 4, 9, 9, 1, *args, isa)
    with pytest.raises(ValueError, match="columns"):
        convfast.conv2d_implicit_pack(np.zeros((6, 35), np.float32), data, 1, 4, 9, 9, 1,
                                      *args, isa)
    # weights packed for other K slices are not used: the call packs its own
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x.shape).astype(np.float32)
    w = rng.standard_normal(w.shape).astype(np.float32)
    kc = convfast.conv2d_implicit_pack(w, data, 1, 4, 9, 9, 1, *args, isa)
    convfast.conv2d_implicit(x, w, None, y, 1, *args, isa=isa, packed=(np.zeros_like(data),
                                                                       kc + 1))
    assert_close(y.reshape(1, 6, 5, 5), ref.conv2d(x, w.reshape(6, 4, 3, 3), None, 2, 1),
                 np.float32, k=36, scale=4)


@needs_ext
@pytest.mark.parametrize("beta", [0.0, 1.0])
@pytest.mark.parametrize("hw", [(30, 31), (9, 7)])
@pytest.mark.parametrize("act", [0, 1, 2])
@pytest.mark.parametrize("kernel", ["implicit", "depthwise", "small"])
def test_fused_epilogue_on_strided_operands(kernel, act, hw, beta):
    # y = act(conv + beta*y + bias) written into a channel slice of a larger buffer, reading a
    # channel slice of a larger image: the inference-plan use (concat slices, residual adds);
    # rows wider and narrower than a vector
    rng = np.random.default_rng(6)
    big_x = rng.standard_normal((2, 9) + hw).astype(np.float32) * 4
    x = big_x[:, 2:8]                                          # (2, 6, H, W), strided
    c, f, g = 6, (12 if kernel == "depthwise" else 10), (6 if kernel == "depthwise" else 2)
    w = rng.standard_normal((f, c // g, 3, 3)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    geom = conv2d_geometry(x.shape, w.shape, b.shape, 1, 1, 1, g)
    big_y = rng.standard_normal((2, f + 5, geom.l)).astype(np.float32)
    before = big_y.copy()
    y = big_y[:, 3:3 + f]
    conv = ref.conv2d(np.ascontiguousarray(x), w, b, 1, 1, 1, g).reshape(2, f, -1)
    expect = reference_epilogue(conv.astype(np.float64) + beta * y, act)
    args = (3, 3, 1, 1, 1, 1, 1, 1, geom.oh, geom.ow)          # kh kw sh sw pt pl dh dw oh ow
    if kernel == "depthwise":
        convfast.conv2d_depthwise(x, w.reshape(f, 9), b, y, *args, act=act,
                                  beta=beta, num_threads=2)
    elif kernel == "small":
        convfast.conv2d_small(x, w.reshape(f, -1), b, y, g, 3, 3, 1, 1, 1, 1, geom.oh,
                              geom.ow, act=act, beta=beta, num_threads=2)
    else:
        convfast.conv2d_implicit(x, w.reshape(f, -1), b, y, g, *args, act=act, beta=beta,
                                 num_threads=2)
    assert_close(y, expect, np.float32, k=27, scale=8)
    np.testing.assert_array_equal(big_y[:, :3], before[:, :3])   # neighbours untouched
    np.testing.assert_array_equal(big_y[:, 3 + f:], before[:, 3 + f:])


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_depthwise_with_epilogue_matches_reference(dtype):
    """conv2d_forward's direct depthwise kernel as the inference plan calls it (the epilogue
    as arguments: bias, residual via beta = 1, ReLU/ReLU6; output a channel slice of a larger
    buffer) on random geometries (stride, dilation, padding, odd sizes, batch 1, one channel)
    vs the naive-loop reference."""
    rng = np.random.default_rng(5)
    done = 0
    while done < 60:
        n, c = rng.integers(1, 3), rng.integers(1, 5)
        (kh, kw), (sh, sw), (dh, dw) = (rng.integers(1, 5, 2), rng.integers(1, 4, 2),
                                        rng.integers(1, 3, 2))
        (ph, pw), (h, w) = rng.integers(0, 4, 2), rng.integers(1, 10, 2)
        if h + 2 * ph < dh * (kh - 1) + 1 or w + 2 * pw < dw * (kw - 1) + 1:
            continue
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        wt = rng.standard_normal((c, 1, kh, kw)).astype(dtype)
        b = rng.standard_normal(c).astype(dtype)
        refy = ref.conv2d(x, wt, b, (sh, sw), (ph, pw), (dh, dw), c)
        geom = conv2d_geometry(x.shape, wt.shape, b.shape, (sh, sw), (ph, pw), (dh, dw), c)
        act = int(rng.integers(0, 3))
        big = np.full((n, c + 2) + refy.shape[2:], 7.0, dtype)
        y = big[:, 1:c + 1]                                   # a channel slice: strided out
        r = rng.standard_normal(refy.shape).astype(dtype)
        accumulate = bool(rng.integers(0, 2))
        if accumulate:
            y[...] = r
        got = conv_cython.conv2d_forward(x, wt, b, geom, algorithm="direct",
                                         out=y.reshape(n, c, -1), act=act,
                                         beta=1.0 if accumulate else 0.0)
        assert np.shares_memory(got, big)
        want = refy + r if accumulate else refy
        want = {0: want, 1: np.maximum(want, 0), 2: np.clip(want, 0, 6)}[act]
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
        assert (big[:, 0] == 7).all() and (big[:, -1] == 7).all()
        done += 1


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2])
def test_direct_depthwise_short_rows(dtype, stride):
    """The short rows of small maps (MobileNet's 14x14 and 7x7, and every width around one and
    two vectors of either dtype): the stride-phase copies and the narrow planes' write-out run
    masked row copies (AVX-512 builds), stride 2 from even lanes of two masked loads. Channels
    not a multiple of a vector, batch 2, a contiguous image (its last row ends at the buffer's
    end), bias + ReLU6, with and without the residual (beta = 1), vs the shifted-slice sum;
    1 and 2 threads give identical bits."""
    rng = np.random.default_rng(11)
    for hw in [(14, 14), (7, 7), (28, 28), (5, 9), (13, 15), (8, 16), (17, 17), (6, 33),
               (9, 31), (3, 2)]:
        c = 19
        x = rng.standard_normal((2, c) + hw).astype(dtype) * 3
        w = rng.standard_normal((c, 1, 3, 3)).astype(dtype)
        b = rng.standard_normal(c).astype(dtype)
        want = _shifted_depthwise(x, w, b, (stride, stride), (1, 1), (1, 1))
        oh, ow = want.shape[2:]
        r = rng.standard_normal(want.shape).astype(dtype)
        for beta in (0.0, 1.0):
            outs = []
            for nt in (1, 2):
                y = r.reshape(2, c, oh * ow).copy()
                convfast.conv2d_depthwise(x, w.reshape(c, 9), b, y, 3, 3, stride, stride, 1,
                                          1, 1, 1, oh, ow, act=2, beta=beta, num_threads=nt)
                outs.append(y.reshape(want.shape))
            np.testing.assert_array_equal(outs[0], outs[1])
            assert_close(outs[0], np.clip(want + beta * r, 0, 6), dtype, k=9, scale=4)


# small-map depthwise layers with enough work for the kernel's 2-thread team
# (NNL_DW_MIN_MACS_PER_THREAD): (N, C, H, W, stride, beta)
_DW_SMALL_PARALLEL = [
    (8, 1009, 7, 7, 1, 0.0),       # MobileNetV2's 7x7, an odd (prime) channel count
    (12, 1999, 5, 9, 2, 1.0),       # 5x9 stride 2 (output 3x5), residual accumulated
    (13, 577, 14, 14, 2, 0.0),      # 14x14 stride 2 (output 7x7)
    (420, 19, 5, 9, 1, 0.0),       # 19 channels
    (7500, 1, 7, 7, 1, 1.0),       # one channel, the planes over the batch
]


@needs_ext
@pytest.mark.parametrize("n, c, h, w, stride, beta", _DW_SMALL_PARALLEL)
def test_direct_depthwise_small_maps_split_over_threads(n, c, h, w, stride, beta):
    """Depthwise layers on small maps large enough for the kernel's second thread (checked
    through its per-thread workspace): the channel planes (blocks of channels-in-lanes) are
    split between the threads whole, so 1 and 2 threads give identical bits, and both match
    the naive-loop reference (bias + ReLU6, and the residual via beta = 1)."""
    rng = np.random.default_rng(n * 7919 + c)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32) * 3
    wt = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    want = ref.conv2d(x, wt, b, stride, 1, 1, c).astype(np.float64)
    oh, ow = want.shape[2:]
    team = [convfast.depthwise_workspace_bytes(n, c, h, w, c, c, 3, 3, stride, stride, 1, 1,
                                               1, 1, oh, ow, 4, num_threads=t) for t in (1, 2)]
    assert team[1] > team[0] > 0, "the layer should run on a 2-thread team"
    r = rng.standard_normal(want.shape).astype(np.float32)
    outs = []
    for nt in (1, 2):
        y = r.reshape(n, c, oh * ow).copy()
        convfast.conv2d_depthwise(x, wt.reshape(c, 9), b, y, 3, 3, stride, stride, 1, 1, 1, 1,
                                  oh, ow, act=2, beta=beta, num_threads=nt)
        outs.append(y.reshape(want.shape))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert_close(outs[1], np.clip(want + beta * r, 0, 6), np.float32, k=9, scale=4)


@needs_ext
def test_epilogue_needs_a_fast_algorithm():
    """An epilogue (out, act, beta) is for the direct and implicit kernels: under im2col it is
    refused, not ignored."""
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    geom = conv2d_geometry(x.shape, w.shape, None, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="epilogue"):
        conv_cython.conv2d_forward(x, w, None, geom, algorithm="im2col", act=1)
    y = np.zeros((1, 3, 25), np.float32)
    conv_cython.conv2d_forward(x, w, None, geom, algorithm="implicit", out=y, act=1)
    np.testing.assert_allclose(y.reshape(1, 3, 5, 5), ref.conv2d(x, w, None, 1, 1, 1, 1))


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hw, stride", [((40, 37), 1), ((7, 7), 1), ((30, 29), 2), ((5, 3), 1)])
@pytest.mark.parametrize("act", [1, 2])
def test_depthwise_activation_keeps_nan_and_signs(dtype, hw, stride, act):
    # the vector ReLU/ReLU6 (compare masks + bitwise select) vs the float64 reference on
    # mixed-sign outputs with NaN and +-inf inputs, over every kernel path (wide rows, narrow
    # planes in vector lanes, strided)
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((1, 5) + hw) * 5).astype(dtype)
    x[0, 1, 2, 1] = np.nan
    x[0, 2, 0, 0] = np.inf
    x[0, 3, -1, -1] = -np.inf
    w = rng.standard_normal((5, 1, 3, 3)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    geom = conv2d_geometry(x.shape, w.shape, b.shape, stride, 1, 1, 5)
    with np.errstate(invalid="ignore"):
        conv = ref.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                          stride, 1, 1, 5).reshape(1, 5, -1)
        expect = reference_epilogue(conv, act)
    y = np.empty((1, 5, geom.l), dtype)
    convfast.conv2d_depthwise(x, w.reshape(5, 9), b, y, 3, 3, stride, stride, 1, 1, 1, 1,
                              geom.oh, geom.ow, act=act, num_threads=2)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expect))
    finite = ~np.isnan(expect)
    assert np.isnan(expect).any() and (expect[finite] == 0).any()
    assert_close(y[finite], expect[finite], dtype, k=9, scale=40)


@needs_ext
def test_implicit_same_result_for_every_microkernel_family():
    from nnlite.kernels import gemm_ops

    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 10, 17, 15)).astype(np.float32)
    w = rng.standard_normal((20, 5, 3, 2)).astype(np.float32)
    expect = ref.conv2d(x, w, None, (2, 1), (1, 2), (1, 2), 2)
    for isa in gemm_ops._gemm.available_isas():
        with gemm_ops.using_microkernel(isa), nnlite.conv_algorithm("implicit"):
            y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), None, (2, 1), (1, 2), (1, 2), 2)
        assert_close(y, expect, np.float32, k=30, scale=4)


@needs_ext
@pytest.mark.parametrize("s, p, d", [(2 ** 31, 2 ** 31, 1), (2 ** 33, 2 ** 33, 1),
                                     (1, 2 ** 31, 2 ** 31), (3, 2 ** 30, 2 ** 30)])
def test_kernels_survive_absurd_strides_paddings_dilations(s, p, d):
    # called directly (nnlite.functional routes such layers to im2col): no size overflow, no
    # out-of-bounds access, the loop reference's values
    x = (np.arange(25, dtype=np.float32) + 1).reshape(1, 1, 5, 5)
    w = (np.arange(9, dtype=np.float32) + 1).reshape(1, 1, 3, 3)
    geom = conv2d_geometry(x.shape, w.shape, None, s, p, d, 1)
    expect = ref.conv2d(x.astype(np.float64), w.astype(np.float64), None, s, p, d)
    sh, sw = (s if geom.oh > 1 else 1), (s if geom.ow > 1 else 1)
    args = (3, 3, sh, sw, p, p, d, d, geom.oh, geom.ow)
    for kernel in ("depthwise", "implicit"):
        y = np.full((1, 1, geom.l), np.nan, np.float32)
        if kernel == "depthwise":
            convfast.conv2d_depthwise(x, w.reshape(1, 9), None, y, *args)
        else:
            convfast.conv2d_implicit(x, w.reshape(1, 9), None, y, 1, *args)
        np.testing.assert_array_equal(y.reshape(expect.shape), expect.astype(np.float32))


@needs_ext
def test_kernel_argument_errors():
    x = np.zeros((1, 4, 6, 6), np.float32)
    y = np.zeros((1, 4, 16), np.float32)
    with pytest.raises(ValueError, match="groups=3"):
        convfast.conv2d_implicit(x, np.zeros((4, 12), np.float32), None, y, 3, 3, 1, 1, 1, 1,
                                 1, 1, 1, 4, 4)
    with pytest.raises(ValueError, match="columns"):
        convfast.conv2d_implicit(x, np.zeros((4, 35), np.float32), None, y, 1, 3, 3, 1, 1, 0,
                                 0, 1, 1, 4, 4)
    with pytest.raises(ValueError, match="y has shape"):
        convfast.conv2d_depthwise(x, np.zeros((4, 9), np.float32), None, y, 3, 3, 1, 1, 0, 0,
                                  1, 1, 3, 3)
    with pytest.raises(ValueError, match="multiple of C"):
        convfast.conv2d_depthwise(x, np.zeros((6, 9), np.float32), None,
                                  np.zeros((1, 6, 16), np.float32), 3, 3, 1, 1, 1, 1, 1, 1, 4, 4)
    with pytest.raises(ValueError, match="stride"):
        convfast.conv2d_implicit(x, np.zeros((4, 36), np.float32), None, y, 1, 3, 3, 0, 1, 1,
                                 1, 1, 1, 4, 4)
    with pytest.raises(ValueError, match="act"):
        convfast.conv2d_depthwise(x, np.zeros((4, 9), np.float32), None, y, 3, 3, 1, 1, 1, 1,
                                  1, 1, 4, 4, act=3)
    with pytest.raises(ValueError, match="columns"):
        convfast.conv2d_depthwise(x, np.zeros((4, 4), np.float32), None, y, 3, 3, 1, 1, 1, 1,
                                  1, 1, 4, 4)
    with pytest.raises(ValueError, match="stride"):
        convfast.conv2d_depthwise(x, np.zeros((4, 9), np.float32), None, y, 3, 3, 0, 1, 1, 1,
                                  1, 1, 4, 4)


@needs_ext
def test_backward_follows_the_forward_algorithm(monkeypatch):
    # the input gradient of a stride-1 conv is a flipped-weight conv, except under 'im2col'
    # (col2im); backward runs outside the forward's context and must still follow its choice
    def flipped_called(*a, **k):
        raise LookupError("flipped-weight conv")

    monkeypatch.setattr(conv_cython, "_flipped", flipped_called)
    rng = np.random.default_rng(10)
    x = nnlite.tensor(rng.standard_normal((1, 3, 8, 8)), requires_grad=True)
    w = nnlite.tensor(rng.standard_normal((4, 3, 3, 3)))
    with nnlite.using_backend("cython"):
        with nnlite.conv_algorithm("im2col"):
            y = F.conv2d(x, w, padding=1)
        y.sum().backward()                                   # col2im: no flipped conv
        with nnlite.conv_algorithm("implicit"):
            y = F.conv2d(x, w, padding=1)
        with pytest.raises(LookupError):
            y.sum().backward()


@needs_ext
@pytest.mark.parametrize("pad, dil, op", [((1, 2), (1, 1), 0), ((4, 0), (1, 2), 0),
                                          ((0, 1), (2, 2), 1)])
def test_input_gradient_paths_agree(pad, dil, op):
    # stride 1: padding inside and beyond the dilated kernel (flipped conv, col2im fallback);
    # conv_transpose2d with output_padding (its image is larger than the conv covers)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 4, 9, 7))
    w = rng.standard_normal((6, 2, 3, 2))
    gy_shape = ref.conv2d(x, w, None, 1, pad, dil, 2).shape
    gy = rng.standard_normal(gy_shape)
    gx, gw, _ = ref.conv2d_grads(x, w, gy, 1, pad, dil, 2)
    for algo in FAST:
        with nnlite.using_backend("cython"), nnlite.conv_algorithm(algo):
            xt, wt = nnlite.tensor(x, requires_grad=True), nnlite.tensor(w, requires_grad=True)
            (F.conv2d(xt, wt, None, 1, pad, dil, 2) * nnlite.tensor(gy)).sum().backward()
        assert_close(xt.grad, gx, np.float64, k=12)
        assert_close(wt.grad, gw, np.float64, k=64)
    wt_shape = (4, 3, 3, 3)
    wT = rng.standard_normal(wt_shape)
    y_ref = ref.conv_transpose2d(x, wT, None, 1, 1, op, 1, 2)
    with nnlite.conv_algorithm("auto"):
        y = F.conv_transpose2d(nnlite.tensor(x), nnlite.tensor(wT), None, 1, 1, op, 1, 2)
    assert_close(y, y_ref, np.float64, k=36)


# ----------------------------------------------------------------------------- selector
def test_selector_names_nesting_and_errors():
    assert nnlite.get_conv_algorithm() in ALGORITHMS
    with pytest.raises(ValueError, match="unknown conv algorithm 'fft'"):
        with nnlite.conv_algorithm("fft"):
            pass
    with pytest.raises(ValueError):
        with nnlite.conv_algorithm(None):
            pass
    avail = nnlite.available_conv_algorithms()
    assert avail[0] == "auto" and "im2col" in avail
    with nnlite.conv_algorithm("im2col"):
        assert nnlite.get_conv_algorithm() == "im2col"
        with nnlite.conv_algorithm(avail[-1]):
            assert nnlite.get_conv_algorithm() == avail[-1]
        assert nnlite.get_conv_algorithm() == "im2col"


def test_selector_is_thread_local():
    seen = []
    with nnlite.conv_algorithm("im2col"):
        t = threading.Thread(target=lambda: seen.append(nnlite.get_conv_algorithm()))
        t.start()
        t.join()
    assert seen == ["auto"] or seen == [nnlite._algorithms._default]


def test_auto_resolves_per_layer():
    dw = conv2d_geometry((1, 8, 9, 9), (16, 1, 3, 3), None, 1, 1, 1, 8)
    dense = conv2d_geometry((1, 8, 9, 9), (16, 8, 3, 3), None, 1, 1, 1, 1)
    strided_1x1 = conv2d_geometry((1, 8, 9, 9), (16, 8, 1, 1), None, 2, 0, 1, 1)
    pointwise = conv2d_geometry((1, 8, 9, 9), (16, 8, 1, 1), None, 1, 0, 1, 1)
    assert resolve(dw, "auto") == "direct" and resolve(dense, "auto") == "direct"  # 81 px
    # one image of a wider conv (>= SMALL_SPLIT_FLOPS): the column matrix, whose GEMM splits
    # over threads (the small-map kernel splits images)
    wide1 = conv2d_geometry((1, 64, 9, 9), (64, 64, 3, 3), None, 1, 1, 1, 1)
    assert resolve(wide1, "auto") == "im2col"
    assert resolve(dense, "auto", weights_prepared=True) == "direct"  # inference plans too
    # one image in a plan: the small-map kernel up to SMALL_SPLIT_FLOPS_PREPARED
    mid = conv2d_geometry((1, 32, 14, 14), (64, 32, 3, 3), None, 1, 1, 1, 1)   # 7.2 MFLOP
    wide = conv2d_geometry((1, 32, 14, 14), (192, 32, 3, 3), None, 1, 1, 1, 1)  # 21.7 MFLOP
    assert _algorithms.SMALL_SPLIT_FLOPS < mid.flops() < _algorithms.SMALL_SPLIT_FLOPS_PREPARED
    assert wide.flops() > _algorithms.SMALL_SPLIT_FLOPS_PREPARED
    assert resolve(mid, "auto") == "im2col"
    assert resolve(mid, "auto", weights_prepared=True) == "direct"
    assert resolve(wide, "auto", weights_prepared=True) == "im2col"
    big = conv2d_geometry((1, 8, 28, 14), (16, 8, 3, 3), None, 1, 1, 1, 1)     # 392 px
    batch4 = conv2d_geometry((4, 8, 9, 9), (16, 8, 3, 3), None, 1, 1, 1, 1)     # 81 px each
    assert resolve(big, "auto") == "implicit" and resolve(batch4, "auto") == "direct"
    # large convs (>= 32 MFLOP) on batches of maps of <= 64 output pixels: im2col with the
    # images side by side, where Winograd (checked first) does not pay
    for shape, k in (((64, 256, 8, 8), 5), ((2, 512, 4, 4), 3)):
        g = conv2d_geometry(shape, (shape[1], shape[1], k, k), None, 1, k // 2, 1, 1)
        assert g.flops() >= 2 ** 25 and resolve(g, "auto") == "im2col", shape
    g = conv2d_geometry((64, 256, 8, 8), (256, 256, 3, 3), None, 1, 1, 1, 1)
    assert rows_pay(g) and resolve(g, "auto") == "winograd"
    small = conv2d_geometry((32, 16, 8, 8), (16, 16, 3, 3), None, 1, 1, 1, 1)  # 9.4 MFLOP
    assert resolve(small, "auto") == "direct"          # the small-map kernel (<= 256 px)
    wide = conv2d_geometry((64, 256, 9, 8), (256, 256, 5, 5), None, 1, 2, 1, 1)  # 72 px
    assert resolve(wide, "auto") == "direct"   # one Zen 4 core: 231 ms vs implicit 315 ms
    wide28 = conv2d_geometry((64, 256, 28, 28), (256, 256, 5, 5), None, 1, 2, 1, 1)
    assert resolve(wide28, "auto") == "implicit"
    assert resolve(conv2d_geometry((4, 8, 5, 5), (16, 8, 3, 3), None, 1, 1, 1, 1),
                   "auto") == "direct"                                          # batch 4
    assert resolve(conv2d_geometry((3, 8, 5, 5), (16, 8, 3, 3), None, 1, 1, 1, 1),
                   "auto") == "direct"
    # small single strided images keep the column matrix, larger batches the implicit GEMM
    assert resolve(conv2d_geometry((3, 8, 9, 9), (16, 8, 3, 3), None, 2, 1, 1, 1),
                   "auto") == "im2col"
    assert resolve(conv2d_geometry((4, 8, 9, 9), (16, 8, 3, 3), None, 2, 1, 1, 1),
                   "auto") == "implicit"
    assert resolve(dense, "implicit") == "implicit"
    assert resolve(strided_1x1, "auto") == "im2col" and resolve(pointwise, "auto") == "im2col"
    assert resolve(dense, "direct") == "direct" and resolve(dw, "im2col") == "im2col"
    # 'direct' on a strided dense conv: the few-channel kernel over stride-phase planes
    strided = conv2d_geometry((1, 8, 9, 9), (16, 8, 3, 3), None, 2, 1, 1, 1)
    assert resolve(strided, "direct") == "direct" and direct_kernel(strided) == "phase"
    assert direct_kernel(dense) == "small" and direct_kernel(batch4) == "small"
    # 'auto': an image model's first conv (few input channels, large map) runs that kernel
    # where it ran the implicit GEMM; small single images keep the column matrix
    for c, k, s, p in ((3, 3, 2, 1), (3, 7, 2, 3), (1, 5, 1, 2), (4, 3, 1, 1)):
        g = conv2d_geometry((1, c, 224, 224), (32, c, k, k), None, s, p, 1, 1)
        assert phase_pays(g) and resolve(g, "auto") == "direct", (c, k, s)
        assert resolve(g, "auto", weights_prepared=True) == "direct"
        assert direct_kernel(g) == "phase"
    wider = conv2d_geometry((1, 5, 224, 224), (32, 5, 3, 3), None, 2, 1, 1, 1)
    assert not phase_pays(wider) and resolve(wider, "auto") == "implicit"
    stem_1x1 = conv2d_geometry((1, 3, 224, 224), (32, 3, 1, 1), None, 2, 0, 1, 1)
    assert not phase_pays(stem_1x1) and resolve(stem_1x1, "auto") == "im2col"
    assert not phase_pays(conv2d_geometry((1, 5, 224, 224), (32, 5, 3, 3), None, 2, 1, 1, 1))
    assert phase_pays(conv2d_geometry((1, 6, 224, 224), (6, 2, 3, 3), None, 1, 1, 1, 3))
    assert resolve(conv2d_geometry((1, 3, 9, 9), (16, 3, 3, 3), None, 2, 1, 1, 1),
                   "auto") == "im2col"


@needs_ext
def test_plan_runs_large_strided_batches_as_column_matrices(monkeypatch):
    """``strided_batch_pays``: in an inference plan, a strided k x k conv of more images than
    threads, with at least STRIDED_IM2COL_MIN_F filters and one image's stride-phase copy
    above STRIDED_IM2COL_L2_SHARE of the L2, runs 'im2col'; without any one of these it stays
    'implicit'. The L2 is patched (the rule reads it through ``_algorithms._l2_bytes``) so the
    shapes stay small; the plan's kernel then matches the naive loops."""
    from nnlite._infer import kernels as K
    monkeypatch.setattr(_algorithms, "_l2_bytes", lambda: 128 << 10)   # share: 32 KB

    def geom(n=4, c=16, f=128, hw=28, k=3, s=2, g=1, d=1):
        return conv2d_geometry((n, c, hw, hw), (f, c // g, k, k), None, s, k // 2, d, g)

    big = geom()            # 14x14 output: 16 channels x 4 phases x 15 x 15 floats
    assert _algorithms.phase_image_bytes(big) == 16 * 4 * 15 * 15 * 4 > 32 << 10
    assert _algorithms.phase_image_bytes(geom(k=5, s=3)) == 16 * 9 * 11 * 11 * 4
    assert _algorithms.phase_image_bytes(geom(d=2)) == 16 * 1 * 15 * 15 * 4   # taps 0, 2, 4
    assert _algorithms.phase_image_bytes(geom(g=2), 8) == 8 * 4 * 15 * 15 * 8  # one group
    wide = conv2d_geometry((1, 2, 70, 70), (4, 2, 65, 65), None, 1, 0, 1, 1)  # past the layout
    assert _algorithms.phase_image_bytes(wide) == 0
    with pytest.raises(ValueError, match="groups=2 must divide C=3 and F=4"):
        convfast.implicit_wide_bytes(1, 3, 9, 9, 4, 2, 3, 3, 2, 2, 1, 1, 1, 1, 5, 5, 4)
    with pytest.raises(ValueError, match=r"c=4, h=9, w=9, f=4, groups=2.* element size 0"):
        convfast.implicit_wide_bytes(1, 4, 9, 9, 4, 2, 3, 3, 2, 2, 1, 1, 1, 1, 5, 5, 0)
    with kernel_threads(2):
        assert resolve(big, "auto", weights_prepared=True) == "im2col"
        assert resolve(big, "auto") == "implicit"                 # F.conv2d: not a plan
        for other in (geom(n=2), geom(f=64), geom(c=8), geom(g=2)):
            assert not _algorithms.strided_batch_pays(other), other
            assert resolve(other, "auto", weights_prepared=True) == "implicit", other
        assert not _algorithms.strided_batch_pays(geom(s=1))
        assert not _algorithms.strided_batch_pays(geom(k=1))
        assert _algorithms.strided_batch_pays(geom(n=2), threads=1)

        rng = np.random.default_rng(3)
        x = rng.standard_normal((4, 16, 28, 28)).astype(np.float32)
        w = (rng.standard_normal((128, 16, 3, 3)) / 12).astype(np.float32)
        b = rng.standard_normal(128).astype(np.float32)
        attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                 "activation": "relu"}
        kern = K.ConvKernel(x.shape, w, b, attrs, False, np.dtype(np.float32))
        assert kern.algorithm == "im2col"
        want = reference_epilogue(ref.conv2d(x.astype(np.float64), w.astype(np.float64),
                                             b.astype(np.float64), 2, 1), 1)
        assert_close(run_conv_kernel(kern, x), want, np.float32, k=72)
    monkeypatch.setattr(_algorithms, "_l2_bytes", lambda: None)       # no GEMM extension
    assert not _algorithms.strided_batch_pays(big, threads=2)


@needs_ext
def test_bench_discovers_the_algorithms():
    assert bench.conv_algorithms() == ["im2col", "implicit", "direct", "winograd"]


def test_numpy_backend_runs_im2col_under_every_algorithm(monkeypatch):
    if convfast is not None:
        def boom(*a, **k):
            raise AssertionError("the numpy backend must not call nnlite._convfast")
        monkeypatch.setattr(convfast, "conv2d_implicit", boom)
        monkeypatch.setattr(convfast, "conv2d_depthwise", boom)
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((2, 4, 7, 7)), rng.standard_normal((4, 1, 3, 3))
    for algo in nnlite.available_conv_algorithms():
        with nnlite.using_backend("numpy"), nnlite.conv_algorithm(algo):
            y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), None, 1, 1, 1, 4)
        assert_close(y, ref.conv2d(x, w, None, 1, 1, 1, 4), np.float64, k=9)


# ----------------------------------------------------------------------------- memory
@needs_ext
@pytest.mark.parametrize("n", [1, 16])
@pytest.mark.parametrize("c, hw, f, k, s, p, d, g", [
    (96, 28, 128, 3, 1, 1, 1, 1), (16, 28, 32, 5, 1, 2, 1, 1), (192, 28, 128, 3, 1, 1, 1, 1),
    (192, 28, 32, 5, 1, 2, 1, 1), (64, 56, 64, 3, 1, 1, 1, 1), (256, 56, 256, 3, 1, 1, 1, 1),
    (3, 224, 64, 7, 2, 3, 1, 1), (256, 28, 256, 3, 1, 2, 2, 1), (256, 56, 256, 3, 1, 1, 1, 32),
])
def test_implicit_extra_memory_is_a_fraction_of_the_column_matrix(n, c, hw, f, k, s, p, d, g):
    geom = conv2d_geometry((n, c, hw, hw), (f, c // g, k, k), None, s, p, d, g)
    cols = n * c * k * k * geom.l * 4                             # explicit im2col, whole batch
    extra = convfast.implicit_workspace_bytes(n, c, hw, hw, f, g, k, k, s, s, p, p, d, d,
                                              geom.oh, geom.ow, 4, num_threads=2)
    assert 0 < extra <= cols / 4, (extra, cols)


@needs_ext
@pytest.mark.parametrize("c, f, k, s", [(128, 128, 3, 2), (64, 64, 3, 1), (32, 48, 5, 2)])
def test_implicit_band_copies_do_not_grow_with_the_image(c, f, k, s):
    """One thread's units copy bands of phase rows sized from the L2 (a quarter of it, at
    least two panels of columns), not the whole image: the work memory of a 4x taller image
    is the same (it held the whole padded image before: ResNet-50's 128->128 3x3/2 at 56x56 on
    one thread copied 1.7 MB and read its B panels from L3)."""
    def work(h):
        geom = conv2d_geometry((1, c, h, 56), (f, c, k, k), None, s, k // 2, 1, 1)
        return convfast.implicit_workspace_bytes(1, c, h, 56, f, 1, k, k, s, s, k // 2,
                                                 k // 2, 1, 1, geom.oh, geom.ow, 4,
                                                 num_threads=1)
    short, tall = work(112), work(448)
    assert 0 < tall <= 1.1 * short, (short, tall)


@pytest.mark.parametrize("k,pad", [(1, 0), (3, 1), (2, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_routine_takes_a_channel_slice_and_the_planreference_epilogue(k, pad, dtype):
    """_conv_gemm.forward (F.conv2d's im2col routine, also the inference plan's) on a channel
    slice of a larger batch (not contiguous), writing into ``out`` with a residual accumulated,
    against the naive reference; the numpy and the native GEMM hooks alike."""
    from nnlite.kernels import _conv_gemm, conv_numpy
    rng = np.random.default_rng(k)
    big = rng.standard_normal((3, 9, 5, 7)).astype(dtype)
    x = big[:, 2:7]                                               # (3, 5, 5, 7), strided
    w = rng.standard_normal((4, 5, k, k)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    r = rng.standard_normal((3, 4, 5 + 2 * pad - k + 1, 7 + 2 * pad - k + 1)).astype(dtype)
    geom = conv2d_geometry(x.shape, w.shape, b.shape, 1, pad, 1, 1)
    want = ref.conv2d(np.ascontiguousarray(x).astype(np.float64), w.astype(np.float64),
                      b.astype(np.float64), 1, pad, 1, 1) + r
    hooks = [(_conv_gemm.numpy_mm, conv_numpy.im2col)]
    if conv_cython._im2col is not None:
        hooks.append((conv_cython._mm, conv_cython.im2col))
    for mm, im2col in hooks:
        out = r.reshape(3, 4, -1).copy()
        _conv_gemm.forward(x, w, b, geom, im2col, mm=mm, out=out,
                           workspace=np.empty(geom.col_shape(1), dtype), accumulate=True)
        assert_close(out.reshape(want.shape), want, dtype)
