"""conv_algorithm('winograd'): the Winograd F(m x m, 3x3) fast path (nnlite/kernels/
conv_winograd.py, csrc/convfast_winograd.c) and its naive reference
(nnlite/kernels/winograd_reference.py).

Oracles: the direct naive-loop conv (nnlite/kernels/conv_reference.py), the Winograd reference
(loops, matrices derived in exact fractions; shares no code with the fast path), exact
rational arithmetic for the 1-D identity, float64 central differences (tests/gradcheck.py) and
PyTorch where installed.
"""
from fractions import Fraction

import numpy as np
import pytest

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from nnlite import _algorithms
from nnlite._algorithms import resolve, winograd_cost, winograd_pays
from nnlite._convgeom import conv2d_geometry
from nnlite.kernels import conv_reference as ref
from nnlite.kernels import winograd_reference as wref

from conftest import kernel_threads
from gradcheck import check_grad

convfast = pytest.importorskip("nnlite._convfast") if nnlite._config.cython_built() else None
needs_ext = pytest.mark.skipif(convfast is None, reason="nnlite built without its extension")
if convfast is not None:
    from nnlite.kernels import conv_winograd as cw


def _data(n, c, h, w, f, g, dtype, seed=0):
    """Realistic magnitudes: unit-variance activations, He-scaled filters."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = (rng.standard_normal((f, c // g, 3, 3)) * np.sqrt(2.0 / (9 * c // g))).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    return x, wt, b


def _rel(got, expect):
    got, expect = np.asarray(getattr(got, "data", got), np.float64), np.asarray(expect)
    scale = max(float(np.abs(expect).max()), 1e-300)
    return float(np.abs(got - expect).max()) / scale


TOL = {np.float32: 1e-4, np.float64: 1e-12}


# ------------------------------------------------------------------------- the reference
@pytest.mark.parametrize("m", [2, 4])
def test_1d_identity_holds_exactly(m):
    """y = A^T [(G g) * (B^T d)] is the correlation, in exact fractions, for random ints."""
    at, g, bt = wref.winograd_matrices(m)
    rng = np.random.default_rng(m)
    for _ in range(20):
        d = [Fraction(int(v)) for v in rng.integers(-9, 10, m + 2)]
        k = [Fraction(int(v)) for v in rng.integers(-9, 10, 3)]
        gk = [sum(g[i][j] * k[j] for j in range(3)) for i in range(m + 2)]
        bd = [sum(bt[i][j] * d[j] for j in range(m + 2)) for i in range(m + 2)]
        y = [sum(at[i][t] * gk[t] * bd[t] for t in range(m + 2)) for i in range(m)]
        assert y == [sum(d[i + j] * k[j] for j in range(3)) for i in range(m)]


def test_derived_matrices_are_lavins_up_to_paired_signs():
    at, g, bt = wref.winograd_matrices(4)
    assert [int(v) for v in bt[0]] == [4, 0, -5, 0, 1, 0]
    assert [int(v) for v in bt[5]] == [0, 4, 0, -5, 0, 1]
    assert [[str(v) for v in row] for row in g[3:5]] == [["1/24", "1/12", "1/6"],
                                                          ["1/24", "-1/12", "1/6"]]
    assert [int(v) for v in at[3]] == [0, 1, -1, 8, -8, 1]
    with pytest.raises(ValueError, match="distinct finite points"):
        wref.winograd_matrices(2, points=(0, 1, 1))


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape, pad, g", [
    ((1, 1, 1, 1, 1), 1, 1),          # a 1x1 map (padding 1)
    ((2, 3, 5, 7, 2), 0, 1),          # H, W not multiples of the tile, no padding
    ((1, 4, 6, 5, 4), 2, 2),          # padding 2, groups
    ((1, 3, 4, 9, 3), 1, 3),          # depthwise
])
def test_reference_matches_direct_reference(m, shape, pad, g):
    n, c, h, w, f = shape
    x, wt, b = _data(n, c, h, w, f, g, np.float64)
    got = wref.conv2d(x, wt, b, padding=pad, groups=g, m=m)
    assert _rel(got, ref.conv2d(x, wt, b, 1, pad, 1, g)) < 1e-13


# ------------------------------------------------------------------------- the fast path
CASES = [  # (n, c, h, w, f, groups, padding)
    (1, 1, 1, 1, 1, 1, 1),            # 1x1 map, one channel
    (1, 3, 5, 7, 4, 1, 0),            # no padding, sizes the tile does not divide
    (2, 5, 9, 6, 6, 1, 1),
    (3, 4, 11, 10, 8, 2, 2),          # batch 3, groups 2, padding 2
    (1, 6, 7, 7, 6, 6, 1),            # groups == channels
    (1, 37, 13, 17, 19, 1, (1, 2)),   # uneven channel counts, padding (1, 2)
    (2, 64, 23, 19, 48, 1, 1),        # several GEMM panels
    (2, 3, 5, 6, 4, 1, 4),            # padding 4 > kernel: tiles wholly in the padding
]


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_winograd_matches_direct_reference(case, dtype):
    n, c, h, w, f, g, pad = case
    x, wt, b = _data(n, c, h, w, f, g, dtype, seed=c)
    expect = ref.conv2d(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64),
                        1, pad, 1, g)
    with nnlite.using_backend("cython"), nnlite.conv_algorithm("winograd"):
        y = F.conv2d(nnlite.tensor(x), nnlite.tensor(wt), nnlite.tensor(b), padding=pad,
                     groups=g)
    assert y.dtype == dtype and y.shape == expect.shape
    assert _rel(y, expect) < TOL[dtype]


@needs_ext
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_matches_winograd_reference_both_tiles(m, dtype):
    x, wt, b = _data(2, 6, 9, 11, 5, 1, dtype, seed=m)
    geom = conv2d_geometry(x.shape, wt.shape, b.shape, 1, 1, 1, 1)
    y = cw.forward(x, wt, b, geom, m=m)
    expect = wref.conv2d(x, wt, b, padding=1, m=m)
    assert _rel(y, expect) < TOL[dtype] / 10


@needs_ext
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("act, beta", [(0, 0.0), (1, 0.0), (2, 0.0), (1, 1.0), (2, 1.0), (1, 0.5)])
def test_fused_epilogue_on_strided_operands(m, act, beta):
    """bias, beta * y (the residual) and ReLU/ReLU6 in the output transform; x a channel
    slice with padded rows, y a channel slice of a larger buffer."""
    rng = np.random.default_rng(7)
    big = rng.standard_normal((2, 10, 9, 16)) * 3
    x = big[:, 2:8, :, 3:14]                           # (2, 6, 9, 11), row stride 16
    wt = rng.standard_normal((5, 6, 3, 3))
    b = rng.standard_normal(5)
    out = rng.standard_normal((2, 8, 9 * 11))
    y3 = out[:, 1:6]                                   # (2, 5, 99) with channel stride 99
    y0, before = y3.copy(), out.copy()
    u = cw.transform_weights(wt, m)
    convfast.conv2d_winograd(x, u, None, b, y3, 1, m, 1, 1, 9, 11, act=act, beta=beta,
                             num_threads=2)
    v = ref.conv2d(x, wt, b, 1, 1, 1, 1).reshape(2, 5, 99) + beta * y0
    if act:
        v = np.maximum(v, 0)
    if act == 2:
        v = np.minimum(v, 6)
    assert _rel(y3, v) < 1e-12
    # the channels outside the slice are untouched
    assert np.array_equal(out[:, 0], before[:, 0]) and np.array_equal(out[:, 6:], before[:, 6:])


@needs_ext
def test_prepacked_weights_give_the_same_bits():
    x, wt, b = _data(2, 24, 15, 13, 20, 2, np.float32, seed=3)
    geom = conv2d_geometry(x.shape, wt.shape, b.shape, 1, 1, 1, 2)
    prepared = cw.WinogradWeights(wt, geom, np.float32)
    assert prepared.u is None             # 10 filters per group: only the packed copy is kept
    y = np.empty((2, 20, 15 * 13), np.float32)
    prepared.run(x, y, b)
    assert np.array_equal(y.reshape(2, 20, 15, 13), cw.forward(x, wt, b, geom))
    # 3 filters per group: products of <= 4 rows read the unpacked weights, which stay
    x, wt, b = _data(1, 8, 9, 10, 6, 2, np.float64, seed=4)
    geom = conv2d_geometry(x.shape, wt.shape, b.shape, 1, 1, 1, 2)
    prepared = cw.WinogradWeights(wt, geom, np.float64)
    assert prepared.u is not None
    y = np.empty((1, 6, 90))
    prepared.run(x, y, b)
    assert np.array_equal(y.reshape(1, 6, 9, 10), cw.forward(x, wt, b, geom))


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weights_transformed_straight_into_packed_layout(dtype):
    """winograd_weights_packed writes the bits of transform_weights then winograd_pack for every
    GEMM family (their MR and KC set the layout), both tiles, groups, filters per group not a
    multiple of MR, channels over KC (several K slices) and 1 or 2 threads; F.conv2d's
    Winograd (packed weights, no u) gives the bits of the kernel run on the unpacked u."""
    from nnlite.kernels import gemm_ops
    rng = np.random.default_rng(11)
    for isa in range(len(gemm_ops._gemm.isa_names())):
        if gemm_ops._gemm.isa_names()[isa] not in gemm_ops._gemm.available_isas():
            continue
        for m, (f, cg, g) in [(4, (20, 300, 1)), (2, (13, 7, 1)), (4, (18, 5, 3))]:
            wt = rng.standard_normal((f, cg, 3, 3)).astype(dtype)
            size = convfast.winograd_packed_size(m, f, g, cg, np.dtype(dtype).itemsize, isa)
            expect = np.full(size, np.nan, dtype)
            convfast.winograd_pack(cw.transform_weights(wt, m), g, m, expect, isa=isa)
            for threads in (1, 2):
                got = np.full(size, np.nan, dtype)
                convfast.winograd_weights_packed(wt, g, m, got, isa=isa, num_threads=threads)
                assert np.array_equal(got, expect), (isa, m, f, cg, g, threads)
    x, wt, b = _data(2, 12, 9, 7, 10, 1, dtype, seed=12)
    geom = conv2d_geometry(x.shape, wt.shape, b.shape, 1, 1, 1, 1)
    y = np.empty((2, 10, 63), dtype)
    convfast.conv2d_winograd(x, cw.transform_weights(wt, 4), None, b, y, 1, 4, 1, 1, 9, 7,
                             num_threads=2)
    assert np.array_equal(cw.forward(x, wt, b, geom), y.reshape(2, 10, 9, 7))
    assert _rel(y.reshape(2, 10, 9, 7), ref.conv2d(x, wt, b, 1, 1, 1, 1)) < TOL[dtype]
    with pytest.raises(ValueError, match="out has 3 elements"):
        convfast.winograd_weights_packed(wt, 1, 4, np.empty(3, dtype))
    with pytest.raises(ValueError, match="groups=3 must divide F=10"):
        convfast.winograd_weights_packed(wt, 3, 4, np.empty(3, dtype))
    with pytest.raises(ValueError, match="m=3 must be 2 or 4"):
        convfast.winograd_weights_packed(wt, 1, 3, np.empty(3, dtype))


@needs_ext
def test_non_contiguous_input_and_empty_batch():
    x, wt, b = _data(2, 6, 12, 10, 4, 1, np.float64, seed=5)
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # column-major
    flipped = x[:, ::-1, ::-1].copy()[:, ::-1, ::-1]                         # negative strides
    with nnlite.using_backend("cython"), nnlite.conv_algorithm("winograd"):
        for xi in (xt, flipped, x[:, :, :, ::1]):
            y = F.conv2d(nnlite.tensor(xi), nnlite.tensor(wt), nnlite.tensor(b), padding=1)
            assert _rel(y, ref.conv2d(x, wt, b, 1, 1, 1, 1)) < 1e-12
        y0 = F.conv2d(nnlite.tensor(x[:0]), nnlite.tensor(wt), None, padding=1)
    assert y0.shape == (0, 4, 12, 10)


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [2, 4])
def test_bit_identical_for_every_thread_count(dtype, m):
    x, wt, b = _data(2, 64, 40, 34, 64, 1, dtype, seed=9)     # > 8M GEMM multiply-adds: threaded
    geom = conv2d_geometry(x.shape, wt.shape, b.shape, 1, 1, 1, 1)
    outs = []
    for nt in (1, 2, 3):
        with kernel_threads(nt):
            outs.append(cw.forward(x, wt, b, geom, m=m))
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


@needs_ext
@pytest.mark.parametrize("shape", [
    (1, 64, 56, 56, 64),     # 196 tiles: whole chunks per thread at 2 and 3 threads
    (1, 256, 28, 28, 256),   # 49 tiles of wide V and M: 32 + 17, each phase split at 3 threads
    (1, 96, 26, 30, 40),     # 56 tiles, C != F: 32 + 24 at 2 threads, one split chunk at 3
    (3, 32, 9, 13, 24),      # 36 tiles over three images, too little work for a team: 1 thread
])
def test_every_chunking_gives_the_same_bits(shape):
    """The tiles are cut into chunks by the thread count (whole chunks per thread, or each
    chunk's phases split across the threads): every cut gives the bits of one thread, and the
    values of the im2col conv."""
    n, c, h, w, f = shape
    x, wt, b = _data(n, c, h, w, f, 1, np.float32, seed=c)
    geom = conv2d_geometry(x.shape, wt.shape, b.shape, 1, 1, 1, 1)
    with nnlite.using_backend("cython"), nnlite.conv_algorithm("im2col"):
        expect = F.conv2d(nnlite.tensor(x), nnlite.tensor(wt), nnlite.tensor(b), padding=1).data
    outs = []
    for nt in (1, 2, 3):
        with kernel_threads(nt):
            outs.append(cw.forward(x, wt, b, geom, m=4))
    assert _rel(outs[0], expect) < TOL[np.float32]
    for nt, o in zip((2, 3), outs[1:]):
        assert np.array_equal(outs[0], o), nt


@needs_ext
@pytest.mark.parametrize("pad", [0, 1, 2])
def test_gradients_match_finite_differences(pad):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 5, 6))
    wt = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)

    def fn(xt, wtt, bt):
        with nnlite.using_backend("cython"), nnlite.conv_algorithm("winograd"):
            return F.conv2d(xt, wtt, bt, padding=pad)
    check_grad(fn, [x, wt, b])


@needs_ext
@pytest.mark.parametrize("k, s, p", [(3, 1, 1), (4, 2, 1), (3, 2, 0)])
def test_conv_transpose2d_under_winograd(k, s, p):
    """conv_transpose2d's forward is conv2d's input gradient: Winograd where it is a 3x3
    stride-1 conv, the other algorithms for any other kernel or stride (no ValueError)."""
    rng = np.random.default_rng(17)
    x, wt = rng.standard_normal((2, 5, 6, 7)), rng.standard_normal((5, 4, k, k))
    with nnlite.using_backend("cython"), nnlite.conv_algorithm("winograd"):
        y = F.conv_transpose2d(nnlite.tensor(x), nnlite.tensor(wt), None, s, p)
    assert _rel(y, ref.conv_transpose2d(x, wt, None, s, p, 0, 1, 1)) < 1e-12


@needs_ext
def test_matches_torch_when_installed():
    torch = pytest.importorskip("torch")
    x, wt, b = _data(2, 32, 28, 28, 48, 1, np.float32, seed=13)
    with nnlite.conv_algorithm("winograd"):
        y = F.conv2d(nnlite.tensor(x), nnlite.tensor(wt), nnlite.tensor(b), padding=1)
    t = torch.nn.functional.conv2d(torch.tensor(x, dtype=torch.float64),
                                   torch.tensor(wt, dtype=torch.float64),
                                   torch.tensor(b, dtype=torch.float64), padding=1)
    assert _rel(y, t.numpy()) < 1e-4


# ---------------------------------------------------------------------------- bad input
@needs_ext
@pytest.mark.parametrize("kw, match", [
    (dict(weight=(4, 3, 5, 5)), r"kernel size \(5, 5\)"),
    (dict(weight=(4, 3, 3, 1)), r"kernel size \(3, 1\)"),
    (dict(stride=2), r"stride \(2, 2\)"),
    (dict(dilation=(1, 2)), r"dilation \(1, 2\)"),
])
def test_convs_winograd_cannot_compute_raise(kw, match):
    x = nnlite.tensor(np.ones((1, 3, 9, 9), np.float32))
    w = nnlite.tensor(np.ones(kw.pop("weight", (4, 3, 3, 3)), np.float32))
    with nnlite.using_backend("cython"), nnlite.conv_algorithm("winograd"):
        with pytest.raises(ValueError, match=match):
            F.conv2d(x, w, None, padding=1, **kw)


@needs_ext
def test_kernel_argument_errors():
    x = np.ones((1, 4, 6, 6), np.float32)
    u = cw.transform_weights(np.ones((2, 4, 3, 3), np.float32), 4)
    y = np.empty((1, 2, 36), np.float32)
    with pytest.raises(ValueError, match="m=3 must be 2 or 4"):
        convfast.conv2d_winograd(x, u, None, None, y, 1, 3, 1, 1, 6, 6)
    with pytest.raises(ValueError, match="F\\(2x2, 3x3\\) has 16"):
        convfast.conv2d_winograd(x, u, None, None, y, 1, 2, 1, 1, 6, 6)
    with pytest.raises(ValueError, match="expected C/groups"):
        convfast.conv2d_winograd(x, u, None, None, y, 2, 4, 1, 1, 6, 6)
    with pytest.raises(ValueError, match="y has shape"):
        convfast.conv2d_winograd(x, u, None, None, y[:, :, :30], 1, 4, 1, 1, 6, 6)
    with pytest.raises(ValueError, match="u may be None only with upk"):
        convfast.conv2d_winograd(x, None, None, None, y, 1, 4, 1, 1, 6, 6)
    with pytest.raises(ValueError, match="u may be None only with upk"):   # 2 filters: needs u
        convfast.conv2d_winograd(x, None, np.zeros(8, np.float32), None, y, 1, 4, 1, 1, 6, 6)
    with pytest.raises(ValueError, match="upk does not match"):
        convfast.conv2d_winograd(x, u, np.zeros(7, np.float32), None, y, 1, 4, 1, 1, 6, 6)
    with pytest.raises(ValueError, match="tile size must be 2 or 4"):
        cw.transform_weights(np.ones((2, 4, 3, 3)), 6)
    with pytest.raises(ValueError, match=r"\(F, C/groups, 3, 3\)"):
        cw.transform_weights(np.ones((2, 4, 5, 5)), 4)


# ------------------------------------------------------------------------ 'auto' and plans
def test_auto_rule_follows_the_cost_model():
    resnet = conv2d_geometry((1, 64, 56, 56), (64, 64, 3, 3), None, 1, 1, 1, 1)
    assert winograd_pays(resnet) and resolve(resnet, "auto") == "winograd"
    direct, wino = winograd_cost(resnet)
    kt, kw = _algorithms._TRANSFORM_COST, _algorithms._WEIGHT_TRANSFORM_COST
    tiles = 14 * 14                                              # 4x4 output tiles of 56x56
    assert direct == 9 * 56 * 56 * 64 * 64
    assert wino == 36 * tiles * (64 * 64 + kt * (64 + 64)) + 36 * 64 * 64 * kw
    assert winograd_cost(resnet, weights_prepared=True) == (direct, wino - 36 * 64 * 64 * kw)
    few = conv2d_geometry((1, 8, 56, 56), (8, 8, 3, 3), None, 1, 1, 1, 1)
    dw = conv2d_geometry((1, 64, 56, 56), (64, 1, 3, 3), None, 1, 1, 1, 64)
    strided = conv2d_geometry((1, 64, 56, 56), (64, 64, 3, 3), None, 2, 1, 1, 1)
    assert resolve(few, "auto") != "winograd" and resolve(dw, "auto") == "direct"
    assert resolve(strided, "auto") == "implicit"
    # a 7x7 map at batch 1: the per-call weight transform does not pay, a plan's does
    deep = conv2d_geometry((1, 512, 7, 7), (512, 512, 3, 3), None, 1, 1, 1, 1)
    assert not winograd_pays(deep) and winograd_pays(deep, weights_prepared=True)


# the vector lanes of each GEMM family (csrc/gemm_avx512.c, gemm_avx2.c; the generic one
# computes whole NR panels)
_LANES = {("avx512", 4): 16, ("avx512", 8): 8, ("avx2", 4): 8, ("avx2", 8): 4,
          ("generic", 4): 16, ("generic", 8): 8}


@needs_ext
def test_gemm_cost_cols_round_a_ragged_panel_up_to_whole_vectors():
    from nnlite import _gemm

    for name in _gemm.available_isas():
        code = _gemm.isa_code(name)
        for elsize in (4, 8):
            nr, lanes = _gemm.blocking(code, elsize)["nr"], _LANES[(name, elsize)]
            for n in (0, 1, lanes - 1, lanes, lanes + 1, nr - 1, nr, nr + 1, 3 * nr + lanes + 1):
                want = n // nr * nr + -(-(n % nr) // lanes) * lanes
                assert _gemm.cost_cols(code, elsize, n) == want, (name, elsize, n)
    with pytest.raises(ValueError, match="n=-1"):
        _gemm.cost_cols(code, 4, -1)
    with pytest.raises(ValueError, match="elsize=3"):
        _gemm.cost_cols(code, 3, 5)


def _wino_terms(geom, m, threads):
    from nnlite.kernels import gemm_ops

    return convfast.winograd_cost(geom.n, geom.c, geom.h, geom.w, geom.f, geom.g, m, geom.pt,
                                  geom.pl, geom.oh, geom.ow, 4, threads, gemm_ops._isa())


@needs_ext
@pytest.mark.parametrize("n, c, hw, m", [(1, 8, 14, 2), (1, 256, 14, 2), (3, 512, 7, 2),
                                         (1, 128, 28, 4), (1, 64, 56, 4), (2, 96, 13, 2),
                                         (1, 1024, 9, 4)])
def test_winograd_cost_counts_each_chunks_columns_and_weight_reads(n, c, hw, m):
    # one thread: chunks of at most tmax tiles, the most whose transformed input and products
    # (alpha^2 (C + F) floats a tile) fit the L2, whole NR panels of them (at least one); the
    # tiles over the chunks rounded up to 16 (a cache line of floats), the last the rest
    from nnlite import _gemm
    from nnlite.kernels import gemm_ops

    isa = gemm_ops._isa()
    isa = _gemm.isa_code(_gemm.best_isa()) if isa < 0 else isa
    nr = _gemm.blocking(isa, 4)["nr"]
    geom = conv2d_geometry((n, c, hw, hw), (c, c, 3, 3), None, 1, 1, 1, 1)
    tiles, a2 = n * (-(-hw // m)) ** 2, (m + 2) ** 2
    cdiv = lambda a, b: -(-a // b)   # noqa: E731
    tmax = max(nr, _gemm.cache_sizes()["l2"] // (a2 * 2 * c * 4) // nr * nr)
    tb = min(tiles, cdiv(cdiv(tiles, cdiv(tiles, tmax)), 16) * 16)
    chunks = cdiv(tiles, tb)
    sizes = [tb] * (chunks - 1) + [tiles - (chunks - 1) * tb]
    want = sum(_gemm.cost_cols(isa, 4, t) for t in sizes)
    assert _wino_terms(geom, m, 1) == (want, chunks)
    with pytest.raises(ValueError, match="m=3"):
        _wino_terms(geom, 3, 1)


@needs_ext
def test_plan_tile_weighs_computed_columns_and_weight_reads():
    # (m + 2)^2 x (cols + threads x _WINOGRAD_WEIGHT_READ x reads) for m = 2 and 4 with the
    # terms of the call's C plan; the smaller wins
    from nnlite._algorithms import winograd_tile

    lam = _algorithms._WINOGRAD_WEIGHT_READ
    for n, c, hw, threads in [(1, 32, 7, 1), (2, 32, 7, 1), (2, 32, 7, 2), (3, 32, 7, 2),
                              (1, 32, 14, 1), (1, 256, 14, 2), (2, 256, 14, 2), (1, 32, 28, 2),
                              (1, 32, 28, 8), (1, 32, 5, 1), (4, 32, 56, 4), (3, 512, 7, 2),
                              (2, 512, 7, 2)]:
        geom = conv2d_geometry((n, c, hw, hw), (c, c, 3, 3), None, 1, 1, 1, 1)
        (c2, r2), (c4, r4) = _wino_terms(geom, 2, threads), _wino_terms(geom, 4, threads)
        want = 2 if 16 * (c2 + threads * lam * r2) < 36 * (c4 + threads * lam * r4) else 4
        assert winograd_tile(geom, threads) == want, (n, c, hw, threads)
    # the choices its docstring's figures stand for, on any GEMM family and L2: 14x14 maps at
    # batch 1 (F(2x2)'s 49 tiles cost a ragged panel or a second chunk) take F(4x4), 7x7 maps
    # at batch 1 F(2x2), at batch 3 (512 channels) F(4x4). (Batch 2, measured a tie, is left
    # to the terms above: F(2x2) with AVX-512's panels, F(4x4) with AVX2's.)
    for c, hw, want in [(256, 14, 4), (96, 14, 4), (512, 7, 2), (192, 7, 2), (128, 28, 4)]:
        geom = conv2d_geometry((1, c, hw, hw), (c, c, 3, 3), None, 1, 1, 1, 1)
        assert (winograd_tile(geom, 1), winograd_tile(geom, 2)) == (want, want), (c, hw)
    geom = conv2d_geometry((3, 512, 7, 7), (512, 512, 3, 3), None, 1, 1, 1, 1)
    assert (winograd_tile(geom, 1), winograd_tile(geom, 2)) == (4, 4)


@needs_ext
def test_capped_tiles_answer_f2_for_their_geometry_only():
    from nnlite._algorithms import winograd_tile, winograd_tile_is_close, winograd_tiles_capped

    a = conv2d_geometry((1, 256, 14, 14), (256, 256, 3, 3), None, 1, 1, 1, 1)
    b = conv2d_geometry((1, 128, 14, 14), (256, 128, 3, 3), None, 1, 1, 1, 1)
    part = conv2d_geometry((1, 256, 14, 14), (96, 256, 3, 3), None, 1, 1, 1, 1)
    assert winograd_tile_is_close(a, 2) and not winograd_tile_is_close(a, 1)
    big = conv2d_geometry((8, 256, 14, 14), (256, 256, 3, 3), None, 1, 1, 1, 1)
    assert not winograd_tile_is_close(big, 2)      # the plain count takes F(4x4) there too
    assert (winograd_tile(a, 2), winograd_tile(b, 2)) == (4, 4)
    with winograd_tiles_capped([a]):
        # the conv and its split parts (other filter counts, same input) run F(2x2)
        assert (winograd_tile(a, 2), winograd_tile(part, 2), winograd_tile(b, 2)) == (2, 2, 4)
    assert winograd_tile(a, 2) == 4


@needs_ext
@pytest.mark.parametrize("extra", [False, True])
def test_plan_keeps_close_f4_weights_within_the_models_weights(extra):
    # a 14x14 3x3 conv at batch 1 on two threads is a close call taken by F(4x4) (36 values a
    # filter against F(2x2)'s 16): with the conv's weights alone (1.3 MB transformed for
    # 0.33 MB) the plan runs it as F(2x2); next to a 6 MB classifier it keeps F(4x4)
    from nnlite._infer import kernels as K

    nnlite.manual_seed(0)
    layers = [nn.Conv2d(96, 96, 3, padding=1), nn.ReLU()]
    if extra:
        layers += [nn.Flatten(), nn.Linear(96 * 14 * 14, 80)]
    model = nn.Sequential(*layers)
    x = np.random.default_rng(1).standard_normal((1, 96, 14, 14)).astype(np.float32)
    with kernel_threads(2):
        fast = nnlite.optimize_for_inference(model)
        got = fast(x)
    (plan, _), = fast._plans.values()
    conv, = [k for _, k, _ in plan.steps if isinstance(k, K.ConvKernel)]
    assert conv.algorithm == "winograd"
    assert conv.wino_m == (4 if extra else 2)
    assert conv.winograd.upk.nbytes == conv.winograd_bytes(conv.wino_m)
    w, b = model[0].weight.data.astype(np.float64), model[0].bias.data.astype(np.float64)
    expect = np.maximum(ref.conv2d(x.astype(np.float64), w, b, 1, 1, 1, 1), 0)
    if extra:
        lin = model[3]
        expect = (expect.reshape(1, -1) @ lin.weight.data.astype(np.float64).T
                  + lin.bias.data.astype(np.float64))
    assert _rel(np.asarray(got), expect) < 1e-4


@needs_ext
def test_inference_plan_transforms_weights_once_and_fuses_the_epilogue():
    from nnlite._infer import kernels as K

    nnlite.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(64, 48, 3, padding=1), nn.ReLU6())
    x = np.random.default_rng(0).standard_normal((2, 64, 24, 20)).astype(np.float32)
    fast = nnlite.optimize_for_inference(model)
    got = fast(x)
    (plan, _), = fast._plans.values()
    convs = [k for _, k, _ in plan.steps if isinstance(k, K.ConvKernel)]
    assert [k.winograd is not None for k in convs] == [True, True]
    w1, b1 = model[0].weight.data.astype(np.float64), model[0].bias.data.astype(np.float64)
    w2, b2 = model[2].weight.data.astype(np.float64), model[2].bias.data.astype(np.float64)
    expect = np.maximum(ref.conv2d(x.astype(np.float64), w1, b1, 1, 1, 1, 1), 0)
    expect = np.clip(ref.conv2d(expect, w2, b2, 1, 1, 1, 1), 0, 6)
    assert _rel(got, expect) < 1e-4


@needs_ext
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("threads", [1, 2])
def test_caller_work_memory_gives_the_same_bits_and_is_used(m, threads):
    """``work``: memory the call may use (an inference plan's arena). With enough bytes from
    any start (the kernel aligns to 64 itself) the result is the same bits as with its own
    block, and the bytes are written (the call used them); with too few it allocates its own
    and leaves them alone; memory over an operand is refused."""
    x, wt, b = _data(2, 24, 13, 11, 40, 1, np.float32, seed=3)
    geom = conv2d_geometry(x.shape, wt.shape, b.shape, 1, 1, 1, 1)
    ww = cw.WinogradWeights(wt, geom, np.float32, m=m)
    own = np.empty((2, 40, 13 * 11), np.float32)
    ww.run(x, own, b, act=1, num_threads=threads)
    need = cw.workspace_bytes(geom, np.float32, m, threads)
    assert need > 0
    for start in (0, 1, 37):
        buf = np.full(start + need + 63, 0xA5, np.uint8)
        y = np.empty_like(own)
        ww.run(x, y, b, act=1, num_threads=threads, work=buf[start:])
        np.testing.assert_array_equal(y, own)
        assert (buf[start:] != 0xA5).any()
    # work memory over an operand would be overwritten while the call reads or writes it
    y = np.empty_like(own)
    for operand in (y, x):
        with pytest.raises(ValueError, match=r"work memory \(\d+ bytes\) overlaps"):
            ww.run(x, y, b, act=1, num_threads=threads, work=operand.reshape(-1).view(np.uint8))
    small = np.full(need // 2, 0xA5, np.uint8)
    y = np.empty_like(own)
    ww.run(x, y, b, act=1, num_threads=threads, work=small)
    np.testing.assert_array_equal(y, own)
    assert (small == 0xA5).all()
    np.testing.assert_allclose(own.reshape(2, 40, 13, 11),
                               np.maximum(ref.conv2d(x, wt, b, 1, 1, 1, 1), 0),
                               rtol=1e-4, atol=1e-4)


def _nonfinite_input(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 1, 9, 9] = np.nan
    x[-1, 0, 3, 20] = np.inf
    x[-1, 2, 17, 4] = -np.inf
    return x


def _assert_same_specials(got, want):
    """NaN, +inf and -inf exactly where ``want`` has them; the finite rest within 1e-4."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    ok = np.isfinite(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-4, atol=1e-4 * np.abs(want[ok]).max())


@needs_ext
def test_nan_and_inf_stay_in_their_neighbourhood():
    # Winograd mixes every pixel of a tile into all of its outputs (and inf - inf into NaN):
    # an input holding a NaN or inf runs by the exact sums, as the naive reference computes
    rng = np.random.default_rng(7)
    x = _nonfinite_input(rng, (2, 8, 24, 24))
    w = (rng.standard_normal((16, 8, 3, 3)) / 8).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    want = ref.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                      padding=1)
    assert np.isnan(want).sum() < want.size // 8        # the specials stay local
    with nnlite.conv_algorithm("winograd"):
        got = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), nnlite.tensor(b), padding=1).data
    _assert_same_specials(got, want)


class _ResidualConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(64, 64, 3, padding=1)

    def forward(self, x):
        y = nn.functional.relu(self.conv(x))
        return nn.functional.relu(self.conv(y) + y)     # the residual fused into the conv


@needs_ext
@pytest.mark.parametrize("threads", [1, 2])
def test_plan_runs_a_nan_or_inf_input_by_the_exact_sums(threads):
    # default settings: 'auto' runs these convs by Winograd in the plan; a first call holding
    # a NaN raised PlanMismatch, a later one returned whole tiles of NaN
    torch = pytest.importorskip("torch")
    nnlite.manual_seed(3)
    model = _ResidualConv().eval()
    t = torch.nn.Conv2d(64, 64, 3, padding=1)
    t.weight.data = torch.tensor(np.asarray(model.conv.weight.data))
    t.bias.data = torch.tensor(np.asarray(model.conv.bias.data))

    def torch_model(a):
        with torch.no_grad():
            y = torch.relu(t(torch.tensor(a)))
            return torch.relu(t(y) + y).numpy()
    rng = np.random.default_rng(8)
    x = _nonfinite_input(rng, (2, 64, 28, 28))
    clean = rng.standard_normal(x.shape).astype(np.float32)
    with kernel_threads(threads):
        fast = nnlite.optimize_for_inference(model)
        _assert_same_specials(fast.run_arrays(x)[0], torch_model(x))      # first call
        plan = fast._plans[list(fast._plans)[0]][0]
        assert [s.kernel.algorithm for s in plan.steps] == ["winograd"] * 2
        np.testing.assert_allclose(fast.run_arrays(clean)[0], torch_model(clean), rtol=1e-4,
                                   atol=1e-4 * np.abs(torch_model(clean)).max())
        _assert_same_specials(fast.run_arrays(x)[0], torch_model(x))      # a later call
