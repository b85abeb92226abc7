"""Which way round an inference plan runs a product of few columns (one image's 7x7 map into
64+ channels: ``kernels._few_columns``): transposed (out.T = x.T @ W.T, the weights packed as
the B operand) only on a GEMM family without a column-tail kernel (the generic C one, and any
family for float64 products without one), plain (W @ x, the weights packed as A) on one with it
(AVX-512, AVX2 float32: ``blocking()['tail_n'] > 0``).
The weights are packed once for the family in use when the plan prepares them, and every call
follows the side they were packed on; a call under another family must still be right.

Oracles: the naive-loop reference ``nnlite.kernels.conv_reference`` in float64 (+ bias,
residual, activation in NumPy); and the two orientations against each other: both reduce
every output over the same K slices in the same order, so they give the same bits.
"""
import numpy as np
import pytest
from conftest import assert_close, kernel_threads, plan_conv_layer, run_conv_kernel

from nnlite._infer import kernels as K
from nnlite.kernels.gemm_ops import using_microkernel

needs_gemm = pytest.mark.skipif(K._gemm_ext is None, reason="needs the compiled GEMM")

def _families():
    """The micro-kernel families this build and CPU run (best first)."""
    if K._gemm_ext is None:
        return []
    return [name for name in ("avx512", "avx2", "generic")
            if name in K._gemm_ext.available_isas()]


def _has_tail(name, itemsize):
    return K._gemm_ext.blocking(K._gemm_ext.isa_code(name), itemsize)["tail_n"] > 0


def _layer(C, F, H, W, k, stride, pad, act, residual, dtype, seed):
    """One image's layer (conftest.plan_conv_layer) and its GEMM depth."""
    make, x, r, want = plan_conv_layer(1, C, F, H, W, (k, k), (stride, stride), (pad,) * 4,
                                       (1, 1), act, residual, True, dtype, seed)
    return make, x, r, want, C * k * k


CASES = [
    # C, F, H, W, k, stride, pad, act, residual, dtype
    (96, 192, 7, 7, 1, 1, 0, "relu", True, np.float32),     # pointwise on a 7x7 map
    (40, 72, 14, 14, 1, 2, 0, None, False, np.float32),     # strided 1x1 onto 7x7
    (24, 80, 13, 13, 3, 2, 1, "relu6", False, np.float32),  # ResNet's 3x3/2 onto 7x7
    (300, 64, 7, 8, 3, 1, 1, "relu", True, np.float32),     # 7x8, K = 2700: several slices
    (33, 65, 5, 9, 1, 1, 0, None, True, np.float64),        # 45 columns, 65 rows, float64
]


@needs_gemm
@pytest.mark.parametrize("C,F,H,W,k,stride,pad,act,residual,dtype", CASES)
def test_orientation_follows_the_family(C, F, H, W, k, stride, pad, act, residual, dtype):
    families = _families()
    got = {}
    for name in families:
        with using_microkernel(name):
            make, x, r, want, depth = _layer(C, F, H, W, k, stride, pad, act, residual, dtype,
                                             C * F + H)
            kern = make()
            oh, ow = kern.geom.oh, kern.geom.ow
            assert K._few_columns(F, oh * ow)
            itemsize = np.dtype(dtype).itemsize
            transposed = not _has_tail(name, itemsize)
            assert K._narrow(F, oh * ow, itemsize) == transposed
            for nt in (1, 2):
                with kernel_threads(nt):
                    y = run_conv_kernel(kern, x, r)
                assert_close(y, want, dtype, k=depth, scale=4)
                if nt == 1:
                    got[name] = y
                else:
                    assert np.array_equal(y, got[name])
            # one image's product: the weights packed once, on the side of the orientation
            assert kern.w_packed.side == ("b" if transposed else "a")


@needs_gemm
@pytest.mark.parametrize("C,F,H,W,k,stride,pad,act,residual,dtype", CASES[:3])
def test_both_orientations_give_the_same_bits(C, F, H, W, k, stride, pad, act, residual,
                                              dtype, monkeypatch):
    """One family, the product run plain and (forced) transposed: the same K order, so the
    same bits; and both close to the reference."""
    make, x, r, want, depth = _layer(C, F, H, W, k, stride, pad, act, residual, dtype, 7)
    plain = make()
    y_plain = run_conv_kernel(plain, x, r)
    chosen = K._narrow
    monkeypatch.setattr(K, "_narrow",
                        lambda m, n, s=4: K._few_columns(m, n) and not chosen(m, n, s))
    flipped = make()
    y_flipped = run_conv_kernel(flipped, x, r)
    assert {plain.w_packed.side, flipped.w_packed.side} == {"a", "b"}
    assert_close(y_plain, want, dtype, k=depth, scale=4)
    assert np.array_equal(y_plain, y_flipped)


@needs_gemm
def test_weights_packed_under_one_family_run_under_another():
    """Packed while one family is in use, run under each other family: the call follows the
    side the weights were packed on, or packs per call where they serve another family."""
    families = _families()
    if len(families) < 2:
        pytest.skip("one GEMM family on this CPU")
    for packed_under in families:
        with using_microkernel(packed_under):
            make, x, r, want, depth = _layer(96, 192, 7, 7, 1, 1, 0, "relu", True, np.float32,
                                             11)
            kern = make()
            kern.prepare()
        for run_under in families:
            with using_microkernel(run_under):
                y = run_conv_kernel(kern, x, r)
            assert_close(y, want, np.float32, k=depth, scale=4)
