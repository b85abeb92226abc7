"""Conv results do not depend on the thread count: forward under every conv algorithm, both
gradients and conv_transpose2d give bit-identical arrays for 1, 2 and 3 threads.

The kernels promise this (every output element is reduced in the same order whoever computes
it: the K slices and register tiles are fixed by the shape; col2im gives each image plane to
one thread). The layers are large enough to pass every serial cut-off (implicit GEMM 2**24
multiply-adds, depthwise 1.5*2**20 per thread, GEMM 2**20, im2col/col2im), and cover the implicit GEMM's three
B sources: the padded band copy (3x3, pad 1), the image itself (pointwise; unpadded 3x3) and the
im2col-arithmetic packer (3x3 stride 2).
"""
import numpy as np
import pytest

import nnlite
import nnlite.nn.functional as F

THREADS = (1, 2, 3)

# name: (x shape, w shape, stride, padding, dilation, groups)
LAYERS = {
    "3x3 pad 1": ((2, 32, 24, 24), (64, 32, 3, 3), 1, 1, 1, 1),
    "3x3 valid": ((2, 32, 34, 30), (48, 32, 3, 3), 1, 0, 1, 1),
    "3x3 stride 2": ((2, 48, 41, 39), (64, 48, 3, 3), 2, 1, 1, 1),
    "pointwise": ((2, 96, 40, 40), (80, 96, 1, 1), 1, 0, 1, 1),
    "5x3 dilated grouped": ((4, 32, 22, 25), (64, 8, 5, 3), 1, (4, 2), (2, 1), 4),
    "depthwise x2": ((4, 32, 48, 40), (64, 1, 3, 3), 1, 1, 1, 32),
    "depthwise small planes": ((16, 256, 12, 11), (256, 1, 3, 3), 1, 1, 1, 256),
}


@pytest.fixture
def restore_threads():
    n = nnlite.get_num_threads()
    yield
    nnlite.set_num_threads(n)


def _run(layer, algo, nthreads, dtype):
    xs, ws, s, p, d, g = LAYERS[layer]
    rng = np.random.default_rng(0)
    x = nnlite.tensor(rng.standard_normal(xs).astype(dtype), requires_grad=True)
    w = nnlite.tensor(rng.standard_normal(ws).astype(dtype), requires_grad=True)
    b = nnlite.tensor(rng.standard_normal(ws[0]).astype(dtype), requires_grad=True)
    nnlite.set_num_threads(nthreads)
    with nnlite.conv_algorithm(algo):
        y = F.conv2d(x, w, b, s, p, d, g)
        gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        (y * nnlite.tensor(gy)).sum().backward()
    return y.data, x.grad, w.grad, b.grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_conv2d_bit_identical_for_every_thread_count(restore_threads, layer, dtype):
    xs, ws, s, p, d, g = LAYERS[layer]
    for algo in nnlite.available_conv_algorithms():
        if algo == "winograd" and (ws[2:] != (3, 3) or s != 1 or d != 1):
            continue                    # 3x3 stride-1 only (ValueError otherwise)
        first = _run(layer, algo, THREADS[0], dtype)
        for nt in THREADS[1:]:
            for a, b in zip(first, _run(layer, algo, nt, dtype)):
                assert np.array_equal(a, b), (layer, algo, nt)


def test_conv_transpose2d_bit_identical_for_every_thread_count(restore_threads):
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((2, 64, 14, 14)).astype(np.float32)
    w0 = rng.standard_normal((64, 32, 4, 4)).astype(np.float32)
    outs = []
    for nt in THREADS:
        nnlite.set_num_threads(nt)
        x = nnlite.tensor(x0, requires_grad=True)
        w = nnlite.tensor(w0, requires_grad=True)
        y = F.conv_transpose2d(x, w, None, 2, 1)
        y.sum().backward()
        outs.append((y.data, x.grad, w.grad))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert np.array_equal(a, b)
