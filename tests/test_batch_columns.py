"""An inference plan's im2col conv over a batch whose per-image products would be narrow
(ResNet's 3x3/2 conv onto its 7x7 map): the column buffer holds every image and ONE product
runs over every (image, pixel) column (``ConvKernel.batch_cols``; strided 1x1 convs take it
too, tested in test_strided_pointwise.py).

Oracles: the naive-loop reference ``nnlite.kernels.conv_reference`` in float64 (+ bias,
residual, activation in NumPy), and the same layer run image by image (the route before),
which reduces in the same K order: the same bits, for 1 and 2 threads.
"""
import numpy as np
import pytest
from conftest import assert_close, kernel_threads, plan_conv_layer, run_conv_kernel

from nnlite._infer import kernels as K

needs_gemm = pytest.mark.skipif(K._gemm_ext is None, reason="needs the compiled GEMM")

@needs_gemm
@pytest.mark.parametrize("N,C,F,H,W,k,stride,pads,dil,act,residual,bias,dtype", [
    (3, 24, 80, 13, 13, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), "relu", True, True,
     np.float32),                                       # ResNet's 3x3/2 shape, small
    (2, 7, 70, 9, 14, (3, 1), (2, 2), (1, 0, 1, 0), (1, 1), None, False, True,
     np.float32),                                       # non-square kernel, 5x7 output
    (4, 5, 64, 15, 11, (2, 3), (3, 2), (0, 1, 2, 0), (2, 1), "relu6", True, False,
     np.float32),                                       # stride != dilation, uneven pads
    (2, 1, 66, 6, 6, (5, 5), (2, 2), (6, 6, 6, 6), (1, 1), "relu", False, True,
     np.float32),                                       # one channel, padding > kernel
    (2, 300, 64, 8, 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), None, True, True,
     np.float32),                                       # K = 2700: several K slices
    (3, 16, 72, 9, 9, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), "relu", True, True,
     np.float64),
])
def test_batch_columns_match_per_image_and_reference(N, C, F, H, W, k, stride, pads, dil, act,
                                                     residual, bias, dtype):
    make, x, r, want = plan_conv_layer(N, C, F, H, W, k, stride, pads, dil, act, residual,
                                       bias, dtype, N * 1000 + C + F)
    kern = make()
    assert kern.algorithm == "im2col" and K._few_columns(F, kern.geom.oh * kern.geom.ow)
    assert kern.batch_cols
    for nt in (1, 2):
        with kernel_threads(nt):
            got = run_conv_kernel(kern, x, r)
            per_image = make()
            per_image.batch_cols = False          # the route before: one product per image
            before = run_conv_kernel(per_image, x, r)
        assert np.array_equal(got, before)
        assert_close(got, want, dtype, k=C * k[0] * k[1], scale=4)
    assert kern.w_packed is None                  # no copy packed for one image's product
    assert per_image.w_packed is not None


@needs_gemm
def test_batch_columns_only_where_per_image_products_are_narrow():
    def kern(N, F, H, g=1, k=3, stride=2):
        w = np.zeros((F, 8 // g, k, k), np.float32)
        pad = k // 2
        attrs = {"kernel_shape": [k, k], "strides": [stride, stride], "pads": [pad] * 4,
                 "group": g}
        return K.ConvKernel((N, 8, H, H), w, None, attrs, False, np.dtype(np.float32))
    assert kern(2, 64, 14).batch_cols                     # 7x7 output, 64 filters
    assert not kern(1, 64, 14).batch_cols                 # one image
    assert not kern(2, 64, 32).batch_cols                 # 16x16 output: not narrow
    assert not kern(2, 32, 14).batch_cols                 # few filters: not transposed
    assert not kern(2, 64, 14, g=2).batch_cols            # groups
    assert kern(2, 64, 14, k=1).batch_cols                # strided 1x1 onto 7x7
    assert not kern(2, 64, 60, k=1).batch_cols            # ... rows of 30: read in place
    assert kern(2, 64, 60, k=1).maps
    assert kern(2, 64, 40, k=1).batch_cols                # ... rows of 20: too short for that
    one, two = kern(1, 64, 14), kern(2, 64, 14)
    assert two.scratch_bytes >= 2 * one.scratch_bytes - 64
