"""The direct few-channel conv kernel (csrc/convfast_phase.c, ``nnlite._convfast.conv2d_phase``:
stride-phase planes, any stride; 'auto' for dense convs of <= 4 input channels per group on
large maps, 'direct' for strided dense convs) against the naive-loop reference, PyTorch on the
full-size stems of MobileNetV2 and ResNet-50 where installed, and float64 central differences
for the gradients of a conv that runs it.

Oracles: ``nnlite.kernels.conv_reference`` (loops sharing no code with the kernel), torch, and
tests/gradcheck.py.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import nnlite
import nnlite.nn.functional as F
from nnlite._algorithms import direct_kernel, resolve
from nnlite._convgeom import conv2d_geometry
from nnlite.kernels import conv_cython, conv_reference as ref

from conftest import assert_close, kernel_threads, reference_epilogue
from gradcheck import check_grad

convfast = pytest.importorskip("nnlite._convfast") if nnlite._config.cython_built() else None
needs_ext = pytest.mark.skipif(convfast is None, reason="nnlite built without its extension")


@st.composite
def phase_case(draw):
    """A dense conv of 1-4 channels per group: groups 1-3, non-square kernels 1-7, strides 1-3
    (stride != dilation), padding up to beyond the kernel, batch 1-3, maps up to 37 wide (not a
    multiple of any vector length)."""
    g = draw(st.sampled_from([1, 1, 1, 2, 3]))
    cg, fg = draw(st.integers(1, 4)), draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, kh + 2)), draw(st.integers(0, kw + 2))
    lo_h, lo_w = max(1, (kh - 1) * dh + 1 - 2 * ph), max(1, (kw - 1) * dw + 1 - 2 * pw)
    h, w = draw(st.integers(lo_h, max(lo_h, 23))), draw(st.integers(lo_w, max(lo_w, 37)))
    return dict(n=draw(st.integers(1, 3)), g=g, c=g * cg, f=g * fg, h=h, w=w, k=(kh, kw),
                s=(sh, sw), d=(dh, dw), p=(ph, pw))


@needs_ext
@given(case=phase_case(), dtype=st.sampled_from([np.float32, np.float64]),
       act=st.sampled_from([0, 1, 2]), beta=st.sampled_from([0.0, 1.0]),
       bias=st.booleans(), threads=st.sampled_from([1, 2]))
def test_phase_kernel_matches_reference(case, dtype, act, beta, bias, threads):
    rng = np.random.default_rng(7)
    n, c, f, g = case["n"], case["c"], case["f"], case["g"]
    # x a channel slice of a larger image, y one of a larger output (strided operands)
    big_x = rng.standard_normal((n, c + 3, case["h"], case["w"])).astype(dtype)
    x = big_x[:, 1:1 + c]
    w = rng.standard_normal((f, c // g) + case["k"]).astype(dtype)
    b = rng.standard_normal(f).astype(dtype) if bias else None
    geom = conv2d_geometry(x.shape, w.shape, None, case["s"], case["p"], case["d"], g)
    big_y = rng.standard_normal((n, f + 2, geom.l)).astype(dtype)
    before = big_y.copy()
    y = big_y[:, 1:1 + f]
    conv = ref.conv2d(np.ascontiguousarray(x), w, b, case["s"], case["p"], case["d"], g)
    expect = reference_epilogue(conv.reshape(n, f, -1).astype(np.float64) + beta * y, act)
    convfast.conv2d_phase(x, w.reshape(f, -1), b, y, g, *case["k"], *case["s"], *case["p"],
                          *case["d"], geom.oh, geom.ow, act=act, beta=beta,
                          num_threads=threads)
    assert_close(y, expect, dtype, k=geom.k, scale=4)
    np.testing.assert_array_equal(big_y[:, :1], before[:, :1])        # neighbours untouched
    np.testing.assert_array_equal(big_y[:, 1 + f:], before[:, 1 + f:])


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, c, f, h, w", [(1, 32, 16, 17, 19), (3, 5, 7, 9, 16), (2, 3, 4, 1, 1),
                                           (1, 2, 9, 40, 33)])
@pytest.mark.parametrize("act, beta, sliced", [(2, 0.0, False), (0, 1.0, False),
                                               (1, 0.0, True)])
def test_pointwise_in_place(n, c, f, h, w, dtype, act, beta, sliced):
    # a 1x1 stride-1 unpadded conv reads x in place and writes whole filter blocks straight to
    # y (the last partial vector from a copy); a channel slice of x still has packed rows
    rng = np.random.default_rng(13)
    big = rng.standard_normal((n, c + 2, h, w)).astype(dtype)
    x = big[:, 1:1 + c] if sliced else np.ascontiguousarray(big[:, :c])
    wt = rng.standard_normal((f, c, 1, 1)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    y = rng.standard_normal((n, f, h * w)).astype(dtype)
    expect = reference_epilogue(ref.conv2d(np.ascontiguousarray(x), wt, b).reshape(n, f, -1)
                       .astype(np.float64) + beta * y, act)
    convfast.conv2d_phase(x, wt.reshape(f, c), b, y, 1, 1, 1, 1, 1, 0, 0, 1, 1, h, w,
                          act=act, beta=beta, num_threads=2)
    assert_close(y, expect, dtype, k=c, scale=4)


@needs_ext
def test_direct_pointwise_runs_the_phase_kernel():
    # 'direct' on a 1x1 conv: the few-channel kernel (in place), not the small-map kernel;
    # through F.conv2d's general path against the reference
    rng = np.random.default_rng(14)
    x = rng.standard_normal((1, 32, 40, 41)).astype(np.float32)
    w = rng.standard_normal((16, 32, 1, 1)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    geom = conv2d_geometry(x.shape, w.shape, b.shape, 1, 0, 1, 1)
    assert direct_kernel(geom) == "phase"
    small_map = conv2d_geometry((2, 32, 9, 9), (16, 32, 3, 3), b.shape, 1, 1, 1, 1)
    assert direct_kernel(small_map) == "small"                 # k x k: the small-map kernel
    y = conv_cython.conv2d_forward(x, w, b, geom, general=True, algorithm="direct")
    assert_close(y, ref.conv2d(x, w, b), np.float32, k=32, scale=4)


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [
    (1, 3, 61, 57, 32, (3, 3), 2, 1),     # MobileNetV2's stem on a smaller image
    (3, 3, 29, 31, 24, (7, 7), 2, 3),     # ResNet-50 / GoogLeNet's stem kernel, batch 3
    (1, 1, 70, 66, 8, (5, 3), 3, 4),      # one channel, padding wider than the kernel
    (2, 4, 30, 47, 5, (2, 6), (1, 2), 2),  # even/non-square kernel, mixed strides
    (1, 2, 35, 35, 7, (3, 3), 1, 1),      # stride 1 on a map too large for the small kernel
])
def test_auto_runs_the_phase_kernel(shape, dtype):
    n, c, h, wd, f, k, s, p = shape
    rng = np.random.default_rng(8)
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((f, c) + k).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    geom = conv2d_geometry(x.shape, w.shape, b.shape, s, p, 1, 1)
    assert conv_cython.native_algorithm(geom)[0] == "direct" and direct_kernel(geom) == "phase"
    with nnlite.using_backend("cython"), nnlite.conv_algorithm("auto"):
        y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), nnlite.tensor(b), stride=s, padding=p)
    assert_close(y, ref.conv2d(x, w, b, s, p), dtype, k=geom.k, scale=4)


@needs_ext
@pytest.mark.parametrize("stem", [(32, 3, 2, 1), (64, 7, 2, 3)])
def test_full_size_stems_match_torch(stem):
    torch = pytest.importorskip("torch")
    f, k, s, p = stem
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    w = rng.standard_normal((f, 3, k, k)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    with nnlite.using_backend("cython"), nnlite.conv_algorithm("auto"):
        y = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), nnlite.tensor(b), stride=s, padding=p)
    expect = torch.nn.functional.conv2d(torch.from_numpy(x).double(),
                                        torch.from_numpy(w).double(),
                                        torch.from_numpy(b).double(), stride=s, padding=p)
    assert_close(y, expect.numpy(), np.float32, k=3 * k * k, scale=4)


@needs_ext
def test_threads_and_bands_give_identical_results():
    # the band split depends on the thread count; every output is reduced in the same order
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 77, 64)).astype(np.float32)
    w = rng.standard_normal((12, 3, 5, 5)).astype(np.float32)
    geom = conv2d_geometry(x.shape, w.shape, None, 2, 2, 1, 1)
    outs = []
    for nt in (1, 2):
        with kernel_threads(nt):
            outs.append(conv_cython.conv2d_forward(x, w, None, geom, algorithm="direct"))
    np.testing.assert_array_equal(outs[0], outs[1])


@needs_ext
def test_gradients_match_finite_differences():
    # a strided few-channel conv runs the phase kernel forward ('auto' does too on maps of 392+
    # output pixels, too many for finite differences); its gradients run the GEMM path
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 2, 23, 21))
    w = rng.standard_normal((3, 2, 3, 2))
    b = rng.standard_normal(3)
    geom = conv2d_geometry(x.shape, w.shape, b.shape, (2, 3), (1, 2), (2, 1), 1)
    assert resolve(geom, "direct") == "direct" and direct_kernel(geom) == "phase"

    def fn(xt, wt, bt):
        with nnlite.using_backend("cython"), nnlite.conv_algorithm("direct"):
            return F.conv2d(xt, wt, bt, stride=(2, 3), padding=(1, 2), dilation=(2, 1))

    check_grad(fn, [x, w, b], rtol=1e-6, atol=1e-8)


@needs_ext
def test_inference_plan_runs_the_phase_kernel():
    from nnlite._infer.kernels import ConvKernel
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 3, 50, 43)).astype(np.float32)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    kern = ConvKernel(x.shape, w, b, {"strides": [2, 2], "pads": [1, 1, 1, 1],
                                      "activation": "relu6"}, False, np.dtype(np.float32))
    assert kern.algorithm == "direct" and direct_kernel(kern.geom) == "phase"
    y = np.full((1, 16) + (kern.geom.oh, kern.geom.ow), np.nan, np.float32)
    kern.bind([x], [y], None)()
    expect = np.clip(ref.conv2d(x, w, b, 2, 1), 0, 6)
    assert_close(y, expect, np.float32, k=27, scale=4)


@needs_ext
def test_bad_arguments_raise_value_error():
    x = np.zeros((2, 3, 9, 9), np.float32)
    y = np.zeros((2, 4, 25), np.float32)
    w = np.zeros((4, 27), np.float32)
    with pytest.raises(ValueError, match="columns"):
        convfast.conv2d_phase(x, np.zeros((4, 26), np.float32), None, y, 1, 3, 3, 2, 2, 1, 1,
                              1, 1, 5, 5)
    with pytest.raises(ValueError, match="act"):
        convfast.conv2d_phase(x, w, None, y, 1, 3, 3, 2, 2, 1, 1, 1, 1, 5, 5, act=3)
    with pytest.raises(ValueError, match="y has shape"):
        convfast.conv2d_phase(x, w, None, y[:, :, :24], 1, 3, 3, 2, 2, 1, 1, 1, 1, 5, 5)
    with pytest.raises(ValueError, match="groups"):
        convfast.conv2d_phase(x, np.zeros((4, 9), np.float32), None, y, 2, 3, 3, 2, 2, 1, 1,
                              1, 1, 5, 5)
    with pytest.raises(ValueError, match="stride"):
        convfast.conv2d_phase(x, w, None, y, 1, 3, 3, 0, 2, 1, 1, 1, 1, 5, 5)
    with pytest.raises(ValueError, match="bias"):
        convfast.conv2d_phase(x, w, np.zeros(3, np.float32), y, 1, 3, 3, 2, 2, 1, 1, 1, 1,
                              5, 5)
    # an empty batch computes nothing
    convfast.conv2d_phase(np.zeros((0, 3, 9, 9), np.float32), w, None,
                          np.zeros((0, 4, 25), np.float32), 1, 3, 3, 2, 2, 1, 1, 1, 1, 5, 5)


@needs_ext
def test_workspace_bytes():
    # packed weights and biases G * ceil(FG/4) * (CG*KH*KW + 1) * 4 elements and the tap
    # offsets, plus per thread a band of CG*SH*SW phase planes and a block of output rows
    args = (1, 3, 224, 224, 32, 1, 3, 3, 2, 2, 1, 1, 1, 1, 112, 112, 4)
    one = convfast.phase_workspace_bytes(*args, num_threads=1)
    two = convfast.phase_workspace_bytes(*args, num_threads=2)
    weights = 4 * 8 * 28 * 4
    assert one >= weights + 4 * 3 * 4 * 2 * 113        # at least two rows of 12 phase planes
    # two threads: a band each (narrower bands, so that each thread gets several)
    assert two >= weights + 2 * 4 * 3 * 4 * 2 * 113
    with pytest.raises(ValueError):
        convfast.phase_workspace_bytes(*args[:-1], 3, num_threads=1)


@needs_ext
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, c, f, h, w, k, s, p", [
    (1, 3, 8, 64, 64, (3, 3), (2, 2), (1, 1)),     # 32 output columns: whole vectors
    (2, 3, 6, 33, 96, (3, 5), (2, 3), (1, 2)),     # 6 filters: the last block is partial
    (1, 1, 4, 9, 127, (7, 7), (2, 4), (3, 3)),     # 32 columns on a 127-wide image
    (3, 2, 12, 20, 48, (1, 1), (1, 3), (0, 0)),    # 16 columns, 1x1 stride 3
    # rows of 7 and 13 float vectors (AVX-512): register blocks of 4 + 3 and 5 + 4 + 4
    (1, 3, 8, 9, 224, (7, 7), (2, 2), (3, 3)),     # ResNet-50's stem on 9 rows: 112 columns
    (1, 2, 4, 5, 208, (3, 3), (1, 1), (1, 1)),     # 208 columns
])
@pytest.mark.parametrize("act", [0, 2])
def test_rows_of_whole_vectors_write_y_directly(n, c, f, h, w, k, s, p, dtype, act):
    """Outputs whose rows are whole vectors (OW a multiple of the vector length: 16 floats on
    AVX-512, 8 on AVX2, ...) are computed row by row straight into y when a filter block is
    whole and there is no beta; partial blocks keep the copy: both against the reference, on
    y a channel slice of a larger output, 1 and 2 threads."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((f, c) + k).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    geom = conv2d_geometry(x.shape, wt.shape, None, s, p, (1, 1), 1)
    conv = ref.conv2d(x, wt, b, s, p, (1, 1), 1)
    expect = reference_epilogue(conv.reshape(n, f, -1).astype(np.float64), act)
    outs = []
    for threads in (1, 2):
        big_y = np.full((n, f + 2, geom.l), 7.0, dtype)
        y = big_y[:, 1:1 + f]
        convfast.conv2d_phase(x, wt.reshape(f, -1), b, y, 1, *k, *s, *p, 1, 1, geom.oh,
                              geom.ow, act=act, beta=0.0, num_threads=threads)
        assert_close(y, expect, dtype, k=geom.k, scale=4)
        assert (big_y[:, 0] == 7.0).all() and (big_y[:, f + 1] == 7.0).all()
        outs.append(y.copy())
    np.testing.assert_array_equal(outs[0], outs[1])
