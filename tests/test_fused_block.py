"""The fused inverted residual (MobileNetV2's block in one native call, issue #16):
``_convfast.inverted_residual`` against a float64 NumPy-loop reference that shares no code with
it, the same bits as the unfused plan (three conv kernels) on 1 and 2 threads, the plan pass
(fuses the built-in and the ONNX-imported block; leaves chains alone that it cannot take or
whose intermediates are read elsewhere), and the memory contract (weights once)."""
import numpy as np
import pytest
from conftest import kernel_threads

import nnlite
import nnlite.nn as nn
from nnlite._infer import kernels as K
from nnlite._infer import passes
from nnlite.kernels import gemm_ops

pytestmark = pytest.mark.skipif(not K.inverted_residual_available(),
                                reason="the fused block needs the compiled extensions")

IR = K.IR_OP


def _reference(x, w1, b1, wd, bd, w3, b3, stride, residual=None):
    """The block in float64 with plain loops over taps (zero padding 1); w1 None: no expand,
    the depthwise conv reads x."""
    x, wd, w3 = (np.asarray(a, np.float64) for a in (x, wd, w3))
    N, C, H, W = x.shape
    E, F = wd.shape[0], w3.shape[0]
    oh, ow = (H - 1) // stride + 1, (W - 1) // stride + 1
    if w1 is None:
        e = x
    else:
        e = np.einsum("ec,nchw->nehw", np.asarray(w1, np.float64), x) + b1[None, :, None, None]
        e = np.minimum(np.maximum(e, 0), 6)
    d = np.zeros((N, E, oh, ow)) + bd[None, :, None, None]
    for i in range(oh):
        for j in range(ow):
            for a in range(3):
                for b in range(3):
                    r, q = i * stride - 1 + a, j * stride - 1 + b
                    if 0 <= r < H and 0 <= q < W:
                        d[:, :, i, j] += wd[None, :, a * 3 + b] * e[:, :, r, q]
    d = np.minimum(np.maximum(d, 0), 6)
    y = np.einsum("fe,nehw->nfhw", w3, d) + b3[None, :, None, None]
    if residual is not None:
        y = y + residual
    return y


def _weights(rng, C, E, F):
    ws = (rng.standard_normal((E, C)) / np.sqrt(C), rng.standard_normal(E),
          rng.standard_normal((E, 9)) / 3, rng.standard_normal(E),
          rng.standard_normal((F, E)) / np.sqrt(E), rng.standard_normal(F))
    return tuple(w.astype(np.float32) for w in ws)


def _run(x, ws, stride, residual, threads, packed=True, project_t=False, split="auto"):
    """The native block; w1 None in ``ws``: the block without expand; project_t: the project
    runs pixel-major on W3^T packed as the B operand; split: how the threads share it."""
    from nnlite.kernels.gemm_ops import pack
    w1, b1, wd, bd, w3, b3 = ws
    N, _, H, W = x.shape
    oh, ow = (H - 1) // stride + 1, (W - 1) // stride + 1
    y = np.full((N, w3.shape[0], oh * ow), np.nan, np.float32)
    p3 = pack(w3, "b", trans=True) if project_t else pack(w3, "a")
    p1 = None if w1 is None or not packed else pack(w1, "b", trans=True).data
    r = None if residual is None else residual.reshape(y.shape)
    K._conv_cython._convfast.inverted_residual(
        x, w1, p1, b1, wd, bd, w3, p3.data if packed else None, b3, y, stride, r, threads,
        p3.isa, project_t, split)
    return y.reshape(N, -1, oh, ow)


def _same_or_close(a, b, F, ow):
    """a and b, the block with the project in either orientation: the same bits when both
    products have more than 4 rows (F > 4, bands of at least one row of ow > 4 pixels)."""
    if F > 4 and ow > 4:
        assert np.array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(a).max())


# (N, C, H, W, E, F, stride, residual): odd maps the stride does not tile, E not a multiple
# of 16, one channel, batch 1 and 3; the 57x55 maps take several bands per image (halo rows
# kept between a thread's bands, expanded twice at the threads' seam)
CASES = [
    (1, 8, 7, 7, 40, 8, 1, True),
    (3, 8, 9, 13, 20, 12, 2, False),
    (1, 1, 13, 9, 6, 1, 1, True),
    (3, 16, 13, 13, 36, 16, 1, False),
    (1, 12, 9, 9, 72, 24, 2, False),
    (1, 24, 57, 55, 136, 24, 1, True),
    (3, 16, 57, 55, 120, 24, 2, False),
    # maps one and two pixels wide/high: no interior column, or no interior row
    (1, 4, 5, 1, 24, 4, 1, True),
    (2, 3, 2, 6, 20, 5, 2, False),
    (1, 5, 1, 2, 17, 3, 1, False),
]


@pytest.mark.parametrize("N,C,H,W,E,F,stride,residual", CASES)
def test_native_block_matches_loops_and_is_thread_independent(N, C, H, W, E, F, stride,
                                                              residual):
    rng = np.random.default_rng(N * 1000 + H * 10 + stride)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    ws = _weights(rng, C, E, F)
    oh, ow = (H - 1) // stride + 1, (W - 1) // stride + 1
    r = rng.standard_normal((N, F, oh, ow)).astype(np.float32) if residual else None
    want = _reference(x, *ws, stride, r)
    one = _run(x, ws, stride, r, 1)
    two = _run(x, ws, stride, r, 2)
    np.testing.assert_allclose(one, want, rtol=1e-5, atol=2e-5 * np.abs(want).max())
    assert np.array_equal(one, two)
    # unpacked weights (packed per call by the GEMM): the same bits
    assert np.array_equal(one, _run(x, ws, stride, r, 2, packed=False))
    # the project pixel-major (y^T = d^T @ W3^T, column-major write-out): the same bits, when
    # neither orientation has at most 4 rows (a band of <= 4 pixels, F <= 4: the GEMM's
    # unpacked skinny path, which sums in another order); else within rounding
    for threads in (1, 2):
        _same_or_close(one, _run(x, ws, stride, r, threads, project_t=True), F, ow)
    _same_or_close(one, _run(x, ws, stride, r, 2, packed=False, project_t=True), F, ow)
    _every_split_same(one, x, ws, stride, r, F, ow)


def _run_channels_last(x, ws, stride, residual, threads, x_cl, y_cl, project_t,
                       split="auto"):
    """The native block with x given channels-last (N, H, W, C) and/or y and the residual
    (N, OH*OW, F); the result back in (N, F, OH, OW)."""
    from nnlite.kernels.gemm_ops import pack
    w1, b1, wd, bd, w3, b3 = ws
    N, _, H, W = x.shape
    F = w3.shape[0]
    oh, ow = (H - 1) // stride + 1, (W - 1) // stride + 1
    xin = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x_cl else x
    y = np.full((N, oh * ow, F) if y_cl else (N, F, oh * ow), np.nan, np.float32)
    r = None
    if residual is not None:
        r = residual.reshape(N, F, oh * ow)
        r = np.ascontiguousarray(r.transpose(0, 2, 1)) if y_cl else r
    p3 = pack(w3, "b", trans=True) if project_t else pack(w3, "a")
    K._conv_cython._convfast.inverted_residual(
        xin, w1, pack(w1, "b", trans=True).data, b1, wd, bd, w3, p3.data, b3, y, stride, r,
        threads, p3.isa, project_t, split, None, x_cl, y_cl)
    if y_cl:
        y = y.transpose(0, 2, 1)
    return np.ascontiguousarray(y).reshape(N, F, oh, ow)


@pytest.mark.parametrize("N,C,H,W,E,F,stride,residual", CASES)
def test_channels_last_tensors_give_the_same_bits(N, C, H, W, E, F, stride, residual):
    # a plan's chain of blocks passes its tensors channels-last: x as the expand's row-major
    # A, y as the pixel-major project's row-major C; every element is the same sum in the same
    # order, so the same bits as the NCHW call of the same project orientation (both splits,
    # 1-2 threads, with the residual read and written channels-last too)
    rng = np.random.default_rng(N * 1000 + H * 10 + stride + 7)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    ws = _weights(rng, C, E, F)
    oh, ow = (H - 1) // stride + 1, (W - 1) // stride + 1
    r = rng.standard_normal((N, F, oh, ow)).astype(np.float32) if residual else None
    want = {pt: _run(x, ws, stride, r, 1, project_t=pt) for pt in (False, True)}
    np.testing.assert_allclose(want[False], _reference(x, *ws, stride, r), rtol=1e-5,
                               atol=2e-5 * np.abs(want[False]).max())
    for split in ("bands", "channels"):
        for threads in (1, 2):
            for x_cl, y_cl, pt in ((True, False, False), (True, False, True),
                                   (False, True, True), (True, True, True)):
                got = _run_channels_last(x, ws, stride, r, threads, x_cl, y_cl, pt, split)
                assert np.array_equal(got, want[pt]), (split, threads, x_cl, y_cl)


def test_channels_last_arguments_are_checked():
    cf = K._conv_cython._convfast
    rng = np.random.default_rng(5)
    w1, b1, wd, bd, w3, b3 = _weights(rng, 8, 16, 8)
    x = rng.standard_normal((1, 6, 6, 8)).astype(np.float32)     # (N, H, W, C)
    with pytest.raises(ValueError, match="channels-last y needs the pixel-major project"):
        cf.inverted_residual(x, w1, None, b1, wd, bd, w3, None, b3,
                             np.zeros((1, 36, 8), np.float32), 1, y_channels_last=True)
    with pytest.raises(ValueError, match="channels-last x needs the 1x1 expand"):
        cf.inverted_residual(x, None, None, None, wd[:8], bd[:8], w3[:, :8].copy(), None, b3,
                             np.zeros((1, 8, 36), np.float32), 1, x_channels_last=True)
    with pytest.raises(ValueError, match=r"y has shape \(1, 8, 36\), expected \(1, 36, 8\)"):
        cf.inverted_residual(x, w1, None, b1, wd, bd, w3, None, b3,
                             np.zeros((1, 8, 36), np.float32), 1, x_channels_last=True,
                             project_t=True, y_channels_last=True)


def _every_split_same(one, x, ws, stride, r, F, ow):
    """Both ways of sharing the block among 1-3 threads (bands of output rows; one image at a
    time cut by channels, the project by tiles, on teams whose cuts split an output-channel
    panel between threads), both project orientations: the same bits as ``one`` (the plain
    orientation's bands on one thread), the pixel-major one as ``_same_or_close`` says."""
    for split in ("bands", "channels"):
        for threads in (1, 2, 3):
            assert np.array_equal(one, _run(x, ws, stride, r, threads, split=split))
            _same_or_close(one, _run(x, ws, stride, r, threads, project_t=True, split=split),
                           F, ow)


# (N, C, H, W, F, stride, residual) of blocks without expand (E == C): C a multiple of 8 (the
# 8 x 8 register transposes of the input rows) and not (the scalar tail), several bands per
# image (57x55), maps one pixel wide, batch 1 and 3
CASES_NO_EXPAND = [
    (1, 32, 23, 19, 16, 1, False),
    (3, 13, 9, 11, 5, 2, False),
    (1, 24, 57, 55, 24, 1, True),
    (2, 17, 57, 55, 8, 2, False),
    (1, 1, 7, 1, 1, 1, True),
    (3, 8, 2, 5, 12, 2, False),
]


@pytest.mark.parametrize("N,C,H,W,F,stride,residual", CASES_NO_EXPAND)
def test_native_block_without_expand_matches_loops(N, C, H, W, F, stride, residual):
    rng = np.random.default_rng(N * 1000 + H * 10 + C)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    _, _, wd, bd, w3, b3 = _weights(rng, C, C, F)
    ws = (None, None, wd, bd, w3, b3)
    oh, ow = (H - 1) // stride + 1, (W - 1) // stride + 1
    r = rng.standard_normal((N, F, oh, ow)).astype(np.float32) if residual else None
    want = _reference(x, *ws, stride, r)
    one = _run(x, ws, stride, r, 1)
    np.testing.assert_allclose(one, want, rtol=1e-5, atol=2e-5 * np.abs(want).max())
    assert np.array_equal(one, _run(x, ws, stride, r, 2))
    assert np.array_equal(one, _run(x, ws, stride, r, 2, packed=False))
    _same_or_close(one, _run(x, ws, stride, r, 2, project_t=True), F, ow)
    _every_split_same(one, x, ws, stride, r, F, ow)
    if H >= 57:   # (whether the map takes several bands depends on the vector width)
        nt, rows, work, _ = K._conv_cython._convfast.inverted_residual_plan(
            N, C, H, W, C, F, stride, 2, expand=False, split="bands")
        assert 1 <= rows <= oh and work > 0


def _head_reference(x, wh, bh, stride, pads, dilation):
    """relu6(conv(x, wh) + bh) in float64 by the 'reference' backend's conv2d (plain loops over
    taps, no code shared with the native kernels) on x zero-padded by pads = (top, bottom,
    left, right)."""
    (pt, pb, pl, pr) = pads
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    with nnlite.no_grad(), nnlite.using_backend("reference"):
        out = nnlite.functional.conv2d(nnlite.tensor(xp), nnlite.tensor(wh.astype(np.float64)),
                                       nnlite.tensor(bh.astype(np.float64)), stride=stride,
                                       dilation=dilation).numpy()
    return np.minimum(np.maximum(out, 0), 6)


# (N, C, XH, XW, E, F, kernel, stride, pads (t, b, l, r), dilation, block stride, residual):
# MobileNetV2's stem (3x3/2 on RGB) onto maps the stride does not tile, a non-square kernel
# with stride != dilation, padding bigger than the kernel (whole rows and columns of taps in
# the padding), one channel, E not a whole number of vectors, several bands per image
CASES_HEAD = [
    (1, 3, 45, 37, 32, 16, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, False),
    (3, 3, 30, 31, 20, 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, True),
    (1, 2, 17, 23, 36, 8, (3, 5), (1, 2), (2, 2, 1, 1), (1, 2), 2, False),
    (2, 1, 9, 10, 8, 4, (3, 3), (3, 2), (4, 4, 0, 2), (2, 1), 1, True),
    (1, 4, 40, 33, 48, 24, (5, 5), (2, 2), (2, 1, 2, 3), (1, 1), 2, False),
    (1, 3, 115, 113, 16, 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, False),
]


def _run_head(x, wh, bh, ws, head, stride, r, threads, project_t=False, split="auto"):
    """The native block with a head conv (w1 = the head's weights, unpacked)."""
    from nnlite.kernels.gemm_ops import pack
    _, _, wd, bd, w3, b3 = ws
    N, E = x.shape[0], wh.shape[0]
    kh, kw, sh, sw, pt, pb, pl, pr, dh, dw = head
    H = (x.shape[2] + pt + pb - dh * (kh - 1) - 1) // sh + 1
    W = (x.shape[3] + pl + pr - dw * (kw - 1) - 1) // sw + 1
    oh, ow = (H - 1) // stride + 1, (W - 1) // stride + 1
    y = np.full((N, w3.shape[0], oh * ow), np.nan, np.float32)
    p3 = pack(w3, "b", trans=True) if project_t else pack(w3, "a")
    K._conv_cython._convfast.inverted_residual(
        x, wh.reshape(E, -1), None, bh, wd, bd, w3, p3.data, b3, y, stride,
        None if r is None else r.reshape(y.shape), threads, p3.isa, project_t, split, head)
    return y.reshape(N, -1, oh, ow)


@pytest.mark.parametrize("N,C,XH,XW,E,F,k,s,pads,d,stride,residual", CASES_HEAD)
def test_native_block_with_head_conv_matches_loops_and_the_unfused_bits(
        N, C, XH, XW, E, F, k, s, pads, d, stride, residual):
    from nnlite._algorithms import conv_algorithm
    rng = np.random.default_rng(N * 1000 + XH * 10 + C)
    x = rng.standard_normal((N, C, XH, XW)).astype(np.float32)
    wh = (rng.standard_normal((E, C) + k) / np.sqrt(C * k[0] * k[1])).astype(np.float32)
    bh = rng.standard_normal(E).astype(np.float32)
    ws = (None, None) + _weights(rng, E, E, F)[2:]
    head = (k[0], k[1], s[0], s[1], pads[0], pads[1], pads[2], pads[3], d[0], d[1])
    e = _head_reference(x, wh, bh, s, pads, d)
    oh, ow = (e.shape[2] - 1) // stride + 1, (e.shape[3] - 1) // stride + 1
    r = rng.standard_normal((N, F, oh, ow)).astype(np.float32) if residual else None
    want = _reference(e, *ws, stride, r)
    one = _run_head(x, wh, bh, ws, head, stride, r, 1)
    np.testing.assert_allclose(one, want, rtol=1e-5, atol=2e-5 * np.abs(want).max())
    # the same bits as the head conv alone (F.conv2d's few-channel kernel, then ReLU6) and the
    # block without expand on its output
    with nnlite.no_grad(), conv_algorithm("direct"):
        h = nnlite.functional.conv2d(nnlite.tensor(x), nnlite.tensor(wh), nnlite.tensor(bh),
                                     stride=s, padding=(pads[0], pads[2]) if (
                                         pads[0] == pads[1] and pads[2] == pads[3]) else 0,
                                     dilation=d).numpy()
    if pads[0] == pads[1] and pads[2] == pads[3]:
        h = np.minimum(np.maximum(h, np.float32(0)), np.float32(6))
        assert np.array_equal(one, _run(h, ws, stride, r, 1))
    for threads in (2, 3):
        assert np.array_equal(one, _run_head(x, wh, bh, ws, head, stride, r, threads))
    for split in ("bands", "channels"):
        for threads in (1, 2):
            assert np.array_equal(one, _run_head(x, wh, bh, ws, head, stride, r, threads,
                                                 split=split))
            _same_or_close(one, _run_head(x, wh, bh, ws, head, stride, r, threads,
                                          project_t=True, split=split), F, ow)
    nt, rows, work, _ = K._conv_cython._convfast.inverted_residual_plan(
        N, C, XH, XW, E, F, stride, 2, head=head)
    assert 1 <= nt <= 2 and 1 <= rows <= oh and work > 0


def test_head_conv_arguments_are_checked():
    cf = K._conv_cython._convfast
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 9, 9)).astype(np.float32)
    wh, bh = rng.standard_normal((8, 27)).astype(np.float32), np.zeros(8, np.float32)
    _, _, wd, bd, w3, b3 = _weights(rng, 8, 8, 4)
    y = np.empty((1, 4, 25), np.float32)
    head = (3, 3, 2, 2, 1, 1, 1, 1, 1, 1)
    cf.inverted_residual(x, wh, None, bh, wd, bd, w3, None, b3, y, 1, head=head)
    assert np.isfinite(y).all()
    with pytest.raises(ValueError, match="do not chain"):
        cf.inverted_residual(x, wh[:, :26].copy(), None, bh, wd, bd, w3, None, b3, y, 1,
                             head=head)
    with pytest.raises(ValueError, match="not packed"):
        cf.inverted_residual(x, wh, gemm_ops.pack(wh, "b", trans=True).data, bh, wd, bd, w3,
                             None, b3, y, 1, head=head)
    with pytest.raises(ValueError, match=r"head must be \(kh, kw"):
        cf.inverted_residual(x, wh, None, bh, wd, bd, w3, None, b3, y, 1, head=(3, 3, 2))
    with pytest.raises(ValueError, match="padding >= 0"):
        cf.inverted_residual(x, wh, None, bh, wd, bd, w3, None, b3, y, 1,
                             head=(3, 3, 2, 2, -1, 1, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="leaves no output of a 9x9 image"):
        cf.inverted_residual(x, np.zeros((8, 3 * 11 * 11), np.float32), None, bh, wd, bd, w3,
                             None, b3, y, 1, head=(11, 11, 1, 1, 0, 0, 0, 0, 1, 1))
    with pytest.raises(ValueError, match="y has shape"):   # the map is the head's, 5x5
        cf.inverted_residual(x, wh, None, bh, wd, bd, w3, None, b3,
                             np.empty((1, 4, 81), np.float32), 1, head=head)
    with pytest.raises(ValueError, match="head must be None"):
        cf.inverted_residual(x, None, None, None, wd, bd, w3, None, b3, y, 1, head=head)
    with pytest.raises(ValueError, match="head conv needs its weights as w1"):
        cf.inverted_residual_plan(1, 3, 9, 9, 8, 4, 1, expand=False, head=head)
    # the plan of the same call: the block's map is the head's 5x5 output
    nt, rows, work, _ = cf.inverted_residual_plan(1, 3, 9, 9, 8, 4, 1, head=head)
    assert nt == 1 and rows == 5 and work > 0


def test_big_maps_take_several_bands():
    """The 57x55 cases above exercise band seams: the band is shorter than the map."""
    cf = K._conv_cython._convfast
    for n, c, h, w, e, f, s, _ in CASES[5:7]:
        threads, rows, work, split = cf.inverted_residual_plan(n, c, h, w, e, f, s, 2)
        assert split == "bands"
        assert 1 <= rows < (h - 1) // s + 1 and work > 0 and threads in (1, 2)


@pytest.mark.parametrize("n,c,h,w,e,f,s", [
    (1, 64, 14, 14, 384, 64, 1), (1, 160, 7, 7, 960, 160, 1), (1, 24, 56, 56, 144, 24, 1),
    (1, 32, 28, 28, 192, 64, 2), (3, 16, 57, 55, 120, 24, 2), (2, 8, 13, 9, 40, 8, 1)])
def test_bands_share_the_rows_evenly(n, c, h, w, e, f, s):
    """Bands are as equal as whole rows allow, and few bands are a multiple of the team: a
    14-row map on two threads is cut 7 + 7 (it was 11 + 3: one thread did 80% of the block)."""
    cf = K._conv_cython._convfast
    oh = (h - 1) // s + 1
    nt, rows, work, _ = cf.inverted_residual_plan(n, c, h, w, e, f, s, num_threads=2,
                                                  split="bands")
    bands = -(-oh // rows)
    assert rows == -(-oh // bands)
    if nt == 2 and n * bands < 8:
        assert (n * bands) % 2 == 0 or bands == oh
    assert work > 0
    if (n, h, s) == (1, 14, 1):
        assert (nt, rows) == (2, 7)


def test_one_small_image_is_cut_by_channels():
    """One image of few output rows cuts poorly into bands (a 7-row map on two threads: 4 + 3
    rows, the halo row expanded twice): the plan's cost model cuts it by channels instead, the
    whole map one band; batches and big maps keep the bands. The work memory is then one set
    of whole-image buffers shared by the team."""
    cf = K._conv_cython._convfast
    # MobileNetV2's 160->960->160 block at 7x7 with the project pixel-major, as the plan runs it
    nt, rows, work, split = cf.inverted_residual_plan(1, 160, 7, 7, 960, 160, 1, 2,
                                                      project_t=True)
    assert (nt, rows, split) == (2, 7, "channels")
    ep = 960
    assert work >= 4 * (49 * ep + 49 * ep)
    assert cf.inverted_residual_plan(8, 160, 7, 7, 960, 160, 1, 2, project_t=True)[3] == "bands"
    assert cf.inverted_residual_plan(1, 24, 56, 56, 144, 24, 1, 2)[3] == "bands"
    assert cf.inverted_residual_plan(1, 160, 7, 7, 960, 160, 1, 1, project_t=True)[3] == "bands"
    forced = cf.inverted_residual_plan(1, 24, 56, 56, 144, 24, 1, 2, split="channels")
    assert forced[1:4:2] == (56, "channels")
    with pytest.raises(ValueError, match="split must be one of .*got 'rows'"):
        cf.inverted_residual_plan(1, 8, 9, 9, 16, 8, 1, split="rows")


def test_native_block_rejects_bad_arguments():
    cf = K._conv_cython._convfast
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 9, 9)).astype(np.float32)
    w1, b1, wd, bd, w3, b3 = _weights(rng, 8, 16, 8)
    y = np.empty((1, 8, 81), np.float32)
    with pytest.raises(ValueError, match="stride=3"):
        cf.inverted_residual(x, w1, None, b1, wd, bd, w3, None, b3, y, 3)
    with pytest.raises(ValueError, match="do not chain"):
        cf.inverted_residual(x, w1[:, :4].copy(), None, b1, wd, bd, w3, None, b3, y, 1)
    with pytest.raises(ValueError, match="y has shape"):
        cf.inverted_residual(x, w1, None, b1, wd, bd, w3, None, b3, y[:, :, :80], 1)
    with pytest.raises(ValueError, match="b1 has 15"):
        cf.inverted_residual(x, w1, None, b1[:15], wd, bd, w3, None, b3, y, 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        cf.inverted_residual(x[:, :, :, ::-1], w1, None, b1, wd, bd, w3, None, b3, y, 1)
    pk = gemm_ops.pack(w1, "b", trans=True)
    with pytest.raises(ValueError, match=r"w1pk has \d+ elements; a \(8, 16\) operand packed as "
                                         r"side B"):
        cf.inverted_residual(x, w1, pk.data[:-1], b1, wd, bd, w3, None, b3, y, 1, isa=pk.isa)
    # W1 packed as the A operand (the layout before the expand ran pixel-major) is refused
    as_a = gemm_ops.pack(w1, "a").data   # its size depends on the family's MR
    with pytest.raises(ValueError, match=rf"w1pk has {as_a.size} elements"):
        cf.inverted_residual(x, w1, as_a, b1, wd, bd, w3, None, b3, y, 1, isa=pk.isa)
    pk3 = gemm_ops.pack(w3, "a")
    with pytest.raises(ValueError, match=r"w3pk has .* a \(8, 16\) operand packed as side A"):
        cf.inverted_residual(x, w1, pk.data, b1, wd, bd, w3, pk3.data[16:], b3, y, 1,
                             isa=pk.isa)
    cf.inverted_residual(x, w1, pk.data, b1, wd, bd, w3, pk3.data, b3, y, 1, isa=pk.isa)
    # the pixel-major project takes W3^T packed as the B operand, not W3 as the A operand
    with pytest.raises(ValueError, match=r"w3pk has .* a \(16, 8\) operand packed as side B"):
        cf.inverted_residual(x, w1, pk.data, b1, wd, bd, w3, pk3.data, b3, y, 1, isa=pk.isa,
                             project_t=True)
    cf.inverted_residual(x, w1, pk.data, b1, wd, bd, w3, gemm_ops.pack(w3, "b", trans=True).data,
                         b3, y, 1, isa=pk.isa, project_t=True)
    # without expand: E must equal C, and w1pk / b1 go with w1
    with pytest.raises(ValueError, match="without expand needs E == C, got C=8, E=16"):
        cf.inverted_residual(x, None, None, None, wd, bd, w3, None, b3, y, 1)
    wd8, bd8, w38 = wd[:8].copy(), bd[:8].copy(), w3[:, :8].copy()
    with pytest.raises(ValueError, match="w1pk, b1 and head must be None"):
        cf.inverted_residual(x, None, None, b1[:8].copy(), wd8, bd8, w38, None, b3, y, 1)
    with pytest.raises(ValueError, match="E == C"):
        cf.inverted_residual_plan(1, 8, 9, 9, 16, 8, 1, expand=False)
    cf.inverted_residual(x, None, None, None, wd8, bd8, w38, None, b3, y, 1)


# ------------------------------------------------------------------------------ the plan
def _block_model(inp, oup, stride, ratio, seed):
    nnlite.manual_seed(seed)
    m = nn.InvertedResidual(inp, oup, stride, ratio)
    rng = np.random.default_rng(seed)
    for mod in m.modules():   # non-trivial BatchNorm statistics
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.data[...] = rng.standard_normal(mod.num_features) * 0.1
            mod.running_var.data[...] = rng.uniform(0.5, 2.0, mod.num_features)
    return m.eval()


def _out(fast, x):
    """The plan's (first) output for x."""
    got = fast.run_arrays(x)
    return got[0] if isinstance(got, (list, tuple)) else got


def _plan(fast, x):
    fast.run_arrays(x)
    return fast._plans[((x.shape, x.dtype.str),)][0]


def _ops(plan):
    return [s.node.op for s in plan.steps]


def _fused_and_unfused(model, x, monkeypatch):
    fused = nnlite.optimize_for_inference(model)
    a = _out(fused, x)
    monkeypatch.setattr(passes, "FUSE_BLOCKS", False)
    unfused = nnlite.optimize_for_inference(model)
    b = _out(unfused, x)
    monkeypatch.setattr(passes, "FUSE_BLOCKS", True)
    return fused, unfused, a, b


@pytest.mark.parametrize("inp,oup,stride,ratio,hw,batch", [
    (8, 8, 1, 6, (13, 9), 1),     # residual
    (8, 12, 2, 6, (9, 13), 3),
    (6, 6, 1, 5, (7, 7), 3),      # E = 30
    (16, 24, 2, 3, (13, 13), 1),
    (12, 12, 1, 1, (11, 9), 2),   # no expand (ratio 1), residual
    (32, 16, 1, 1, (15, 15), 1),  # MobileNetV2's first block, smaller map
    (9, 5, 2, 1, (9, 12), 3),     # no expand, stride 2
])
def test_plan_fuses_the_block_with_the_unfused_bits(inp, oup, stride, ratio, hw, batch,
                                                    monkeypatch):
    model = _block_model(inp, oup, stride, ratio, seed=inp + oup + stride)
    x = np.random.default_rng(1).standard_normal((batch, inp) + hw).astype(np.float32)
    fused, unfused, a, b = _fused_and_unfused(model, x, monkeypatch)
    assert _ops(_plan(fused, x)) == [IR]
    assert IR not in _ops(_plan(unfused, x))
    with nnlite.no_grad():
        want = model(nnlite.tensor(x)).data
    np.testing.assert_allclose(a, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert np.array_equal(a, b)
    for threads in (1, 2):
        with kernel_threads(threads):
            assert np.array_equal(_out(fused, x), a)
            assert np.array_equal(_out(unfused, x), a)


@pytest.mark.parametrize("hw,batch,want_t", [((7, 7), 2, True),
                                             ((5, 6), 1, {"avx512": True, "avx2": False}),
                                             ((16, 16), 1, False)])
def test_plan_projects_pixel_major_on_bands_of_few_pixels(hw, batch, want_t, monkeypatch):
    """Bands whose pixel count fills the GEMM's vector panels badly run the project
    pixel-major (W3^T packed as the B operand, ``kernels._pixel_major_pays``): 49 pixels
    into 64 channels, 25-30 on AVX-512 (on AVX2 they save 9%, short of its 10% margin), not
    two 8-row bands of 16 (128 pixels, whole panels on AVX-512 and AVX2); the same bits as
    the unfused plan either way."""
    if isinstance(want_t, dict):
        family = K._gemm_ext.isa_names()[K._family()]
        if family not in want_t:
            pytest.skip(f"no expectation for the {family} family")
        want_t = want_t[family]
    model = _block_model(64, 64, 1, 2, seed=9)
    x = np.random.default_rng(4).standard_normal((batch, 64) + hw).astype(np.float32)
    fused, unfused, a, b = _fused_and_unfused(model, x, monkeypatch)
    (step,) = _plan(fused, x).steps
    assert step.kernel.project_t is want_t
    assert step.kernel.packed[1].side == ("b" if want_t else "a")
    assert np.array_equal(a, b)
    with nnlite.no_grad():
        want = model(nnlite.tensor(x)).data
    np.testing.assert_allclose(a, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("f,pixels,family,want", [
    (64, 98, "avx512", True), (160, 49, "avx512", True), (24, 392, "avx512", False),
    (32, 280, "avx512", False), (64, 128, "avx512", False), (64, 98, "avx2", False),
    (160, 49, "avx2", True), (320, 49, "avx2", True), (24, 224, "avx2", False),
    (16, 224, "avx2", False), (32, 56, "avx2", False), (36, 49, "avx512", False)])
def test_pixel_major_project_rule(f, pixels, family, want):
    """The orientation rule counts padded elements: f times the pixels in whole vectors of
    panels, against the pixels times f in whole vectors; pixel-major must save 5% with
    AVX-512's 8-row tiles, 10% with AVX2's 6-row ones (64 x 98: 6272 vs 6656 elements, 5.8%;
    160 x 49: 7840 vs 8960, 12.5%; 16 x 224: none). Rows are not rounded up to whole tiles:
    36 channels x 49 pixels on AVX-512 is 2304 elements plain, not 40 x 64 = 2560."""
    from nnlite.kernels import gemm_ops
    if family not in K._gemm_ext.available_isas():
        pytest.skip(f"{family} is not usable here")
    with gemm_ops.using_microkernel(family):
        assert K._pixel_major_pays(f, pixels) is want


def test_mobilenet_v2_fuses_every_block(monkeypatch):
    from nnlite import models
    nnlite.manual_seed(0)
    model = models.mobilenet_v2(num_classes=10).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    fused, _, a, b = _fused_and_unfused(model, x, monkeypatch)
    # 17 blocks; the first (expand ratio 1) has no expand conv: the stem conv is its head
    steps = _plan(fused, x).steps
    irs = [s for s in steps if s.node.op == IR]
    assert len(irs) == 17 and steps[0] is irs[0]
    assert irs[0].kernel.head and not irs[1].kernel.head
    assert irs[0].node.inputs[1] != "" and irs[1].node.inputs[1] != ""
    assert irs[1].kernel.parts[0].pointwise
    assert np.array_equal(a, b)
    # without head fusion the stem runs alone and the first block has no expand
    monkeypatch.setattr(passes, "FUSE_HEADS", False)
    plain = nnlite.optimize_for_inference(model)
    steps = _plan(plain, x).steps
    irs = [s for s in steps if s.node.op == IR]
    assert len(irs) == 17 and steps[0].node.op == "Conv"
    assert irs[0].node.inputs[1] == "" and irs[0].kernel.parts[0] is None
    assert np.array_equal(_out(plain, x), a)


class _HeadNet(nn.Module):
    """conv(C -> E) [+ BatchNorm] + activation -> a block without expand (E -> F); ``side``:
    the conv's activated output is also a second output (read elsewhere)."""

    def __init__(self, c, e, f, k, stride, act="relu6", side=False, seed=0):
        super().__init__()
        nnlite.manual_seed(seed)
        self.conv = nn.Conv2d(c, e, k, stride, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(e)
        self.act = nn.ReLU6() if act == "relu6" else nn.ReLU()
        self.block = nn.InvertedResidual(e, f, 1, 1)
        self.side = side
        rng = np.random.default_rng(seed)
        for mod in self.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.data[...] = rng.standard_normal(mod.num_features) * 0.1
                mod.running_var.data[...] = rng.uniform(0.5, 2.0, mod.num_features)
        self.eval()

    def forward(self, x):
        h = self.act(self.bn(self.conv(x)))
        y = self.block(h)
        return (y, h) if self.side else y


# the maps are large enough for 'auto' to run the head conv alone by the few-channel kernel
# (on a map of few pixels it runs im2col: the fused head, whose bits are the few-channel
# kernel's, is then not taken)
@pytest.mark.parametrize("c,k,stride,act,side,shape,fuses", [
    (3, 3, 2, "relu6", False, (1, 45, 41), True),    # MobileNetV2's stem
    (1, 5, 1, "relu6", False, (2, 25, 22), True),    # one channel, 5x5, stride 1, batch 2
    (4, 3, 2, "relu6", False, (1, 45, 41), True),    # RGBA
    (3, 3, 2, "relu6", False, (2, 19, 22), False),   # few pixels: im2col
    (5, 3, 2, "relu6", False, (1, 45, 41), False),   # too many channels for the kernel
    (3, 1, 1, "relu6", False, (1, 45, 41), False),   # 1x1: an expand conv (ratio 1 block)
    (3, 3, 2, "relu", False, (1, 45, 41), False),    # ReLU, not ReLU6
    (3, 3, 2, "relu6", True, (1, 45, 41), False),    # the conv's output is read elsewhere
])
def test_plan_fuses_a_head_conv_only_where_it_can(c, k, stride, act, side, shape, fuses,
                                                  monkeypatch):
    model = _HeadNet(c, 16, 8, k, stride, act, side, seed=c + k)
    x = np.random.default_rng(2).standard_normal(
        (shape[0], c) + shape[1:]).astype(np.float32)
    fast = nnlite.optimize_for_inference(model)
    got = fast.run_arrays(x)
    got = got if isinstance(got, (list, tuple)) else (got,)
    steps = _plan(fast, x).steps
    heads = [s for s in steps if s.node.op == IR and s.kernel.head]
    assert len(heads) == int(fuses)
    if fuses:
        assert [s.node.op for s in steps] == [IR]
    with nnlite.no_grad():
        want = model(nnlite.tensor(x))
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.data, rtol=1e-4, atol=1e-4 * np.abs(w.data).max())
    # the same bits as the plan without head fusion, on 1 and 2 threads
    monkeypatch.setattr(passes, "FUSE_HEADS", False)
    plain = nnlite.optimize_for_inference(model)
    for threads in (1, 2):
        with kernel_threads(threads):
            a, b = _out(fast, x), _out(plain, x)
            assert np.array_equal(a, b) and np.array_equal(a, got[0])


def _onnx_block(opset, residual, stride, expand=True):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto as TP
    from onnx import helper as oh
    from onnx import numpy_helper as onh
    rng = np.random.default_rng(3)
    C, E, F = 8, 28 if expand else 8, 8
    w1, b1, wd, bd, w3, b3 = _weights(rng, C, E, F)
    inits = [onh.from_array(w1.reshape(E, C, 1, 1), "w1"), onh.from_array(b1, "b1"),
             onh.from_array(wd.reshape(E, 1, 3, 3), "wd"), onh.from_array(bd, "bd"),
             onh.from_array(w3.reshape(F, E, 1, 1), "w3"), onh.from_array(b3, "b3"),
             onh.from_array(np.array(0, np.float32), "lo"),
             onh.from_array(np.array(6, np.float32), "hi")]
    nodes = [oh.make_node("Conv", ["x", "w1", "b1"], ["e0"], kernel_shape=[1, 1]),
             oh.make_node("Clip", ["e0", "lo", "hi"], ["e"]),
             oh.make_node("Conv", ["e", "wd", "bd"], ["d0"], kernel_shape=[3, 3], group=E,
                          pads=[1, 1, 1, 1], strides=[stride, stride]),
             oh.make_node("Clip", ["d0", "lo", "hi"], ["d"]),
             oh.make_node("Conv", ["d", "w3", "b3"], ["p"], kernel_shape=[1, 1])]
    if not expand:
        nodes = nodes[2:]
        nodes[0].input[0] = "x"
        w1 = b1 = None
    if residual:
        nodes.append(oh.make_node("Add", ["p", "x"], ["y"]))
    else:
        nodes[-1].output[0] = "y"
    graph = oh.make_graph(nodes, "block",
                          [oh.make_tensor_value_info("x", TP.FLOAT, ["N", C, 11, 11])],
                          [oh.make_tensor_value_info("y", TP.FLOAT, None)], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    return onnx, model, (w1, b1, wd, bd, w3, b3)


@pytest.mark.parametrize("residual,stride,expand", [(True, 1, True), (False, 2, True),
                                                    (True, 1, False), (False, 2, False)])
def test_onnx_imported_block_is_fused(residual, stride, expand, monkeypatch, tmp_path):
    import nnlite.onnx as nxo
    onnx, model, ws = _onnx_block(13, residual, stride, expand)
    path = tmp_path / "block.onnx"
    onnx.save(model, str(path))
    x = np.random.default_rng(2).standard_normal((3, 8, 11, 11)).astype(np.float32)
    fused, unfused, a, b = _fused_and_unfused(nxo.load(str(path)), x, monkeypatch)
    assert _ops(_plan(fused, x)) == [IR]
    want = _reference(x, *ws, stride, x if residual else None)
    np.testing.assert_allclose(a, want, rtol=1e-5, atol=2e-5 * np.abs(want).max())
    assert np.array_equal(a, b)


def test_onnx_imported_stem_is_the_first_blocks_head(monkeypatch, tmp_path):
    """Conv 3x3/2 (RGB) -> Clip(0, 6) -> the first block (no expand), as exported from
    MobileNetV2: one fused node with the conv as its head, the unfused plan's bits."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto as TP
    from onnx import helper as oh
    from onnx import numpy_helper as onh

    import nnlite.onnx as nxo
    rng = np.random.default_rng(4)
    E, F = 16, 8
    wh = (rng.standard_normal((E, 3, 3, 3)) / 5).astype(np.float32)
    bh = rng.standard_normal(E).astype(np.float32)
    ws = (None, None) + _weights(rng, E, E, F)[2:]
    _, _, wd, bd, w3, b3 = ws
    inits = [onh.from_array(wh, "wh"), onh.from_array(bh, "bh"),
             onh.from_array(wd.reshape(E, 1, 3, 3), "wd"), onh.from_array(bd, "bd"),
             onh.from_array(w3.reshape(F, E, 1, 1), "w3"), onh.from_array(b3, "b3"),
             onh.from_array(np.array(0, np.float32), "lo"),
             onh.from_array(np.array(6, np.float32), "hi")]
    nodes = [oh.make_node("Conv", ["x", "wh", "bh"], ["h0"], kernel_shape=[3, 3],
                          pads=[1, 1, 1, 1], strides=[2, 2]),
             oh.make_node("Clip", ["h0", "lo", "hi"], ["h"]),
             oh.make_node("Conv", ["h", "wd", "bd"], ["d0"], kernel_shape=[3, 3], group=E,
                          pads=[1, 1, 1, 1]),
             oh.make_node("Clip", ["d0", "lo", "hi"], ["d"]),
             oh.make_node("Conv", ["d", "w3", "b3"], ["y"], kernel_shape=[1, 1])]
    graph = oh.make_graph(nodes, "stem",
                          [oh.make_tensor_value_info("x", TP.FLOAT, ["N", 3, 45, 41])],
                          [oh.make_tensor_value_info("y", TP.FLOAT, None)], inits)
    path = tmp_path / "stem.onnx"
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)]), str(path))
    x = rng.standard_normal((1, 3, 45, 41)).astype(np.float32)
    fused = nnlite.optimize_for_inference(nxo.load(str(path)))
    a = _out(fused, x)
    steps = _plan(fused, x).steps
    assert _ops(_plan(fused, x)) == [IR] and steps[0].kernel.head
    want = _reference(_head_reference(x, wh, bh, (2, 2), (1, 1, 1, 1), (1, 1)), *ws, 1)
    np.testing.assert_allclose(a, want, rtol=1e-5, atol=2e-5 * np.abs(want).max())
    monkeypatch.setattr(passes, "FUSE_HEADS", False)
    plain = nnlite.optimize_for_inference(nxo.load(str(path)))
    assert _ops(_plan(plain, x)) == ["Conv", IR]
    assert np.array_equal(_out(plain, x), a)


class _SideOutput(nn.Module):
    """The block with one intermediate also read by something else."""

    def __init__(self, which):
        super().__init__()
        self.which = which
        self.expand = nn.Sequential(nn.Conv2d(8, 24, 1), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(24, 24, 3, padding=1, groups=24), nn.ReLU6())
        self.project = nn.Conv2d(24, 8, 1)

    def forward(self, x):
        e = self.expand(x)
        d = self.dw(e)
        y = self.project(d)
        side = e if self.which == "expand" else d
        return y + side.mean(dim=1, keepdim=True)


class _Variant(nn.Module):
    """A chain the fused kernel does not take."""

    def __init__(self, kind):
        super().__init__()
        dw = dict(padding=1, groups=24)
        act = nn.ReLU6
        if kind == "dilation":
            dw = dict(padding=2, dilation=2, groups=24)
        elif kind == "kernel5":
            dw = dict(kernel_size=5, padding=2, groups=24)
        elif kind == "relu":
            act = nn.ReLU
        elif kind == "groups":
            dw = dict(padding=1, groups=12)
        k = dw.pop("kernel_size", 3)
        self.expand = nn.Sequential(nn.Conv2d(8, 24, 1), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(24, 24, k, **dw), act())
        self.project = nn.Conv2d(24, 8, 1)

    def forward(self, x):
        return self.project(self.dw(self.expand(x)))


@pytest.mark.parametrize("model", [_SideOutput("dw"), _Variant("dilation"),
                                   _Variant("kernel5"), _Variant("relu"), _Variant("groups")],
                         ids=["dw-read-twice", "dilation", "kernel5", "relu", "groups"])
def test_pass_does_not_fuse_what_it_cannot_take(model):
    model = model.eval()
    x = np.random.default_rng(0).standard_normal((1, 8, 9, 9)).astype(np.float32)
    fast = nnlite.optimize_for_inference(model)
    got = _out(fast, x)
    assert IR not in _ops(_plan(fast, x))
    with nnlite.no_grad():
        want = model(nnlite.tensor(x)).data
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_expand_read_elsewhere_fuses_the_rest():
    """The expand's output is read by something else too: it stays a conv of its own, and the
    depthwise and project convs behind it become a block without expand."""
    model = _SideOutput("expand").eval()
    x = np.random.default_rng(0).standard_normal((2, 8, 9, 11)).astype(np.float32)
    fast = nnlite.optimize_for_inference(model)
    got = _out(fast, x)
    steps = _plan(fast, x).steps
    (ir,) = [s for s in steps if s.node.op == IR]
    assert list(ir.node.inputs[1:3]) == ["", ""]
    assert "Conv" in _ops(_plan(fast, x))
    with nnlite.no_grad():
        want = model(nnlite.tensor(x)).data
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_float64_block_runs_unfused():
    model = _block_model(8, 8, 1, 4, seed=5)
    x = np.random.default_rng(0).standard_normal((1, 8, 9, 9))
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    for b in model.buffers():
        b.data = b.data.astype(np.float64)
    fast = nnlite.optimize_for_inference(model)
    got = _out(fast, x)
    assert IR not in _ops(_plan(fast, x))
    with nnlite.no_grad():
        want = model(nnlite.tensor(x)).data
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_fused_block_keeps_its_weights_once():
    model = _block_model(32, 32, 1, 6, seed=7)
    x = np.random.default_rng(0).standard_normal((1, 32, 14, 14)).astype(np.float32)
    fast = nnlite.optimize_for_inference(model)
    fast.run_arrays(x)
    (plan, _), = fast._plans.values()
    (step,) = plan.steps
    k = step.kernel
    assert isinstance(k, K.InvertedResidualKernel)
    report = fast.memory_report()
    E = 32 * 6
    # packed panels: the expand (E x 32) and project (32 x E) weights once each, rows rounded
    # up to a panel (at most 32 more) -- nothing else
    packed = ((-(-E // 32) * 32) * 32 + 64 * E) * 4
    assert report["prepared"] <= packed + 16384, report
    assert k.weight_bytes == sum(p.w_flat.nbytes for p in k.parts)


@pytest.mark.parametrize("expand", [True, False])
def test_kernel_runs_unfused_on_arrays_the_fused_call_cannot_take(expand):
    """A binding whose input images are not contiguous runs the parts one after the other
    (``_bind_unfused``), matching the reference; with the expand, whose output is contiguous
    again, the same bits as the fused call on a contiguous copy (without it, the depthwise
    conv reads the strided view through another of its paths)."""
    rng = np.random.default_rng(11)
    C, F = 8, 6
    E = 20 if expand else C
    w1, b1, wd, bd, w3, b3 = _weights(rng, C, E, F)
    a1 = {"kernel_shape": [1, 1], "activation": "relu6"}
    a2 = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "group": E, "activation": "relu6"}
    a3 = {"kernel_shape": [1, 1]}
    parts = ((w1.reshape(E, C, 1, 1), b1, a1) if expand else None,
             (wd.reshape(E, 1, 3, 3), bd, a2), (w3.reshape(F, E, 1, 1), b3, a3))
    kern = K.InvertedResidualKernel((2, C, 9, 7), parts, True, np.dtype(np.float32))
    big = rng.standard_normal((2, C, 9, 14)).astype(np.float32)
    x = big[:, :, :, ::2]                      # not C-contiguous
    r = rng.standard_normal((2, F, 9, 7)).astype(np.float32)
    scratch = np.empty(max(kern.scratch_bytes, 64), np.uint8)
    y1, y2 = np.empty((2, F, 9, 7), np.float32), np.empty((2, F, 9, 7), np.float32)
    kern.bind([x, None, None, None, None, None, None, r], [y1], scratch)()
    kern.bind([np.ascontiguousarray(x), None, None, None, None, None, None, r], [y2], scratch)()
    want = _reference(x, *(w1, b1) if expand else (None, None), wd, bd, w3, b3, 1, r)
    for y in (y1, y2):
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=2e-5 * np.abs(want).max())
    assert np.array_equal(y1, y2) or not expand


def test_kernel_with_head_runs_unfused_on_arrays_the_fused_call_cannot_take():
    """A head conv's binding on an image that is not contiguous runs the conv, then the block
    without expand (``_bind_unfused``: the conv's map in an array of that binding, shaped by
    the conv, not by the image). That conv runs by im2col + the GEMM (the direct kernels take
    unit-stride rows only), whose micro-kernels fuse each multiply-add: its bits are the fused
    call's where the compiler also fuses the head's (native optimised builds), not on an SSE2
    build or at -O0, so the two results are compared to rounding."""
    rng = np.random.default_rng(12)
    E, F = 16, 6
    wh = (rng.standard_normal((E, 3, 3, 3)) / 5).astype(np.float32)
    bh = rng.standard_normal(E).astype(np.float32)
    _, _, wd, bd, w3, b3 = _weights(rng, E, E, F)
    a1 = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2],
          "activation": "relu6"}
    a2 = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "group": E, "activation": "relu6"}
    a3 = {"kernel_shape": [1, 1]}
    parts = ((wh, bh, a1), (wd.reshape(E, 1, 3, 3), bd, a2), (w3.reshape(F, E, 1, 1), b3, a3))
    kern = K.InvertedResidualKernel((1, 3, 45, 41), parts, False, np.dtype(np.float32))
    if not kern.head:
        pytest.skip("'auto' runs this conv by another kernel on this build: no head")
    big = rng.standard_normal((1, 3, 45, 82)).astype(np.float32)
    x = big[:, :, :, ::2]                      # not C-contiguous
    scratch = np.empty(max(kern.scratch_bytes, 64), np.uint8)
    y1, y2 = np.empty((1, F, 23, 21), np.float32), np.empty((1, F, 23, 21), np.float32)
    kern.bind([x], [y1], scratch)()
    kern.bind([np.ascontiguousarray(x)], [y2], scratch)()
    want = _reference(_head_reference(x, wh, bh, (2, 2), (1, 1, 1, 1), (1, 1)),
                      None, None, wd, bd, w3, b3, 1)
    np.testing.assert_allclose(y1, want, rtol=1e-5, atol=2e-5 * np.abs(want).max())
    np.testing.assert_allclose(y1, y2, rtol=1e-6, atol=1e-6 * np.abs(y2).max())


def test_bound_block_reads_its_arrays_at_each_call_and_keeps_them_alive():
    """``bind_inverted_residual`` checks the arrays once; each call of the bound block computes
    from the arrays' current contents (the plan rewrites its input in place), and the binding
    holds the arrays (the caller may drop its own references)."""
    import gc
    from nnlite.kernels.gemm_ops import pack
    cf = K._conv_cython._convfast
    rng = np.random.default_rng(17)
    N, C, H, W, E, F = 2, 8, 9, 7, 24, 8
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    ws = _weights(rng, C, E, F)
    w1, b1, wd, bd, w3, b3 = ws
    y = np.empty((N, F, H * W), np.float32)
    p1, p3 = pack(w1, "b", trans=True), pack(w3, "a")
    call = cf.bind_inverted_residual(x, w1, p1.data, b1, wd, bd, w3, p3.data, b3, y, 1, None,
                                     p1.isa)
    for _ in range(2):
        call(2)
        want = _reference(x, *ws, 1)
        np.testing.assert_allclose(y.reshape(want.shape), want, rtol=1e-5,
                                   atol=2e-5 * np.abs(want).max())
        x *= -0.5                      # new contents, same buffer
    want = _reference(x, *ws, 1)
    del w1, b1, wd, bd, w3, b3, p1, p3, ws
    gc.collect()
    y[...] = np.nan
    call(1)                            # the weights live on in the binding
    np.testing.assert_allclose(y.reshape(want.shape), want, rtol=1e-5,
                               atol=2e-5 * np.abs(want).max())
    with pytest.raises(ValueError, match="y has shape"):
        cf.bind_inverted_residual(x, *(np.zeros((E, C), np.float32), None, None,
                                       np.zeros((E, 9), np.float32), None,
                                       np.zeros((F, E), np.float32), None, None),
                                  y[:, :, :5], 1)


@pytest.mark.parametrize("split", ["bands", "channels"])
def test_plan_with_either_split_has_the_unfused_bits(split, monkeypatch):
    """A plan bound with the split forced (``kernels.IR_SPLIT``, read at binding): MobileNetV2's
    last-stage block shape (scaled down) at batch 1 on 2 threads gives the unfused plan's
    bits."""
    model = _block_model(32, 32, 1, 6, seed=21)
    x = np.random.default_rng(5).standard_normal((1, 32, 7, 7)).astype(np.float32)
    monkeypatch.setattr(K, "IR_SPLIT", split)
    with kernel_threads(2):
        fused, unfused, a, b = _fused_and_unfused(model, x, monkeypatch)
        assert _ops(_plan(fused, x)) == [IR]
        assert np.array_equal(a, b)


class _Chain(nn.Module):
    """Four inverted residuals one after another (the first with a residual, the plan's input,
    or a channel change; then stride 2, a residual, a channel change), then a 1x1 conv;
    ``side``: the second block's output is a second output too."""

    def __init__(self, side=False, first_residual=False):
        super().__init__()
        first = (8, 8, 1, 6) if first_residual else (8, 12, 1, 6)
        self.blocks = nn.Sequential(*[_block_model(i, o, s, r, seed=i + o + s) for i, o, s, r in
                                      (first, (first[1], 16, 2, 4), (16, 16, 1, 3),
                                       (16, 24, 1, 6))])
        self.tail = nn.Conv2d(24, 12, 1)
        self.side = side

    def forward(self, x):
        x = self.blocks[0](x)
        mid = self.blocks[1](x)
        x = self.blocks[3](self.blocks[2](mid))
        y = self.tail(x)
        return (y, mid) if self.side else y


def _layouts(fast, x):
    steps = _plan(fast, x).steps
    return [(s.kernel.x_channels_last, s.kernel.y_channels_last) for s in steps
            if s.node.op == IR]


_F, _T = False, True


@pytest.mark.parametrize("side,first_residual,want", [
    (False, False, [(_F, _T), (_T, _T), (_T, _T), (_T, _F)]),
    # the second block's output read elsewhere: NCHW, and so the third block's residual and
    # output (the residual is added in the output's layout)
    (True, False, [(_F, _T), (_T, _F), (_F, _F), (_F, _F)]),
    # the first block's residual is the plan's input: its output NCHW too
    (False, True, [(_F, _F), (_F, _T), (_T, _T), (_T, _F)]),
])
@pytest.mark.parametrize("shape", [(1, 8, 15, 13), (3, 8, 9, 10)])
def test_block_chains_pass_their_tensors_channels_last(side, first_residual, want, shape,
                                                      monkeypatch):
    # the tensors between blocks are channels-last (only blocks write and read them); the
    # plan's input and outputs, and a block output read elsewhere, stay NCHW. Oracles: the
    # plain module (unfused, NCHW convs), and the same plan with every tensor NCHW
    model = _Chain(side, first_residual).eval()
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    fast = nnlite.optimize_for_inference(model)
    assert _layouts(fast, x) == want
    got = fast.run_arrays(x)
    from nnlite._infer import plan as plan_mod
    monkeypatch.setattr(plan_mod, "channels_last_blocks", lambda *a, **k: set())
    nchw = nnlite.optimize_for_inference(model)
    assert _layouts(nchw, x) == [(False, False)] * 4
    ref_nchw = nchw.run_arrays(x)
    with nnlite.no_grad():
        ref = model(nnlite.tensor(x))
    ref = [r.data for r in ref] if side else [ref.data]
    assert len(got) == len(ref)
    for g, r, n in zip(got, ref, ref_nchw):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4 * np.abs(r).max())
        np.testing.assert_allclose(g, n, rtol=1e-6, atol=1e-6 * np.abs(n).max())
    for threads in (1, 2):
        with kernel_threads(threads):
            for g, again in zip(got, fast.run_arrays(x)):
                assert np.array_equal(g, again)


@pytest.mark.parametrize("project_t", [False, True])
@pytest.mark.parametrize("split", ["bands", "channels"])
def test_blocks_without_expand_or_project_bias(project_t, split):
    # a 1x1 conv without bias (no BatchNorm after it) as the expand or the project: b1 / b3
    # None, the GEMM told there is no bias (it refused a bias kind with no vector: EINVAL);
    # the same values as zero biases
    from nnlite.kernels.gemm_ops import pack
    cf = K._conv_cython._convfast
    rng = np.random.default_rng(11)
    w1, b1, wd, bd, w3, b3 = _weights(rng, 8, 24, 12)
    x = rng.standard_normal((2, 8, 7, 9)).astype(np.float32)
    p1 = pack(w1, "b", trans=True).data
    p3 = pack(w3, "b", trans=True) if project_t else pack(w3, "a")
    zeros = {"b1": np.zeros(24, np.float32), "b3": np.zeros(12, np.float32)}
    for none in ("b1", "b3"):
        ys = []
        for biases in ({"b1": b1, "b3": b3, none: None}, {"b1": b1, "b3": b3, none: zeros[none]}):
            y = np.full((2, 12, 63), np.nan, np.float32)
            cf.inverted_residual(x, w1, p1, biases["b1"], wd, bd, w3, p3.data, biases["b3"], y,
                                 1, None, 2, p3.isa, project_t, split)
            ys.append(y)
        assert np.array_equal(ys[0], ys[1]), none


class _BiasFreeExpand(nn.Module):
    """A 1x1 conv without bias and ReLU6 (no BatchNorm) feeding a block of expand ratio 1: the
    plan fuses it as the block's expand, with no expand bias."""

    def __init__(self):
        super().__init__()
        self.pw = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.ReLU6())
        self.block = _block_model(16, 8, 1, 1, seed=4)

    def forward(self, x):
        return self.block(self.pw(x))


def test_plan_fuses_a_bias_free_expand():
    nnlite.manual_seed(0)
    model = _BiasFreeExpand().eval()
    x = np.random.default_rng(0).standard_normal((1, 8, 9, 9)).astype(np.float32)
    fast = nnlite.optimize_for_inference(model)
    assert _ops(_plan(fast, x)) == [IR]
    with nnlite.no_grad():
        want = model(nnlite.tensor(x)).data
    np.testing.assert_allclose(_out(fast, x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
