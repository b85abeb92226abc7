"""An inference plan's im2col conv over a batch whose per-image products would be narrow
(ResNet's 3x3/2 conv onto its 7x7 map): the column buffer holds every image, and the products
of all images run in one call on the weights packed once (``ConvKernel.batch_cols``,
``batch_packed``), or, where the GEMM family would run such a product transposed, ONE product
over every (image, pixel) column; strided 1x1 convs of a batch take it too (tested in
test_strided_pointwise.py).

Oracles: the naive-loop reference ``nnlite.kernels.conv_reference`` in float64 (+ bias,
residual, activation in NumPy), the same layer run image by image (the route before batch
columns) and through the one-product route, which reduce in the same K order: the same bits,
for 1 and 2 threads.
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
            one = make()
            one.batch_packed = lambda: False      # one product over every (image, pixel)
            split = run_conv_kernel(one, x, r)
        assert np.array_equal(got, before)
        assert np.array_equal(got, split)
        assert_close(got, want, dtype, k=C * k[0] * k[1], scale=4)
    # the weights are packed once where the batch's products run per image on them
    assert (kern.w_packed is not None) == kern.batch_packed()
    assert kern.batch_packed() == (not K._narrow(F, kern.geom.oh * kern.geom.ow,
                                                 np.dtype(dtype).itemsize))
    assert one.w_packed is None                   # the one product packs them per unit
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
    assert kern(2, 64, 60, k=1).batch_cols                # ... any map, gathered for a batch
    assert not kern(2, 64, 60, k=1).maps
    assert kern(1, 64, 60, k=1).maps                      # one image's rows of 30: in place
    assert not kern(1, 64, 60, k=1).batch_cols
    assert kern(2, 64, 40, k=1).batch_cols                # ... rows of 20
    one, two = kern(1, 64, 14), kern(2, 64, 14)
    assert two.scratch_bytes >= 2 * one.scratch_bytes - 64
