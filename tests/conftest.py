"""Shared test configuration: hypothesis profiles, the backend fixture, tolerances.

Profiles: ``dev`` (default, fast) and ``ci`` (more examples; chosen automatically when the
environment has CI=true, or explicitly with HYPOTHESIS_PROFILE=ci).
"""
import contextlib
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import nnlite

settings.register_profile(
    "dev", max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "ci", max_examples=80, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_default_profile = "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default_profile))

FAST_BACKENDS = [b for b in ("cython", "numpy")]


@pytest.fixture(params=FAST_BACKENDS)
def backend(request):
    """Run the test under each fast backend; the cython case skips when the extension is not built."""
    if request.param not in nnlite.available_backends():
        pytest.skip("nnlite was built without its Cython extension (NNLITE_NO_EXT=1)")
    with nnlite.using_backend(request.param):
        yield request.param


def tolerance(dtype, k=1, scale=1.0):
    """(rtol, atol) for comparing a fast result with the float64 reference.

    k is the reduction length (e.g. Cg*kH*kW for conv) and scale the magnitude of the products.
    """
    if np.dtype(dtype) == np.float64:
        return 1e-10, 1e-10 * k * scale
    eps = np.finfo(np.float32).eps
    return 1e-5, 10 * eps * k * scale


def assert_close(actual, expected, dtype=None, k=1, scale=1.0):
    actual = np.asarray(getattr(actual, "data", actual))
    expected = np.asarray(getattr(expected, "data", expected))
    rtol, atol = tolerance(dtype or actual.dtype, k, scale)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


@contextlib.contextmanager
def kernel_threads(n):
    """nnlite.set_num_threads(n) for a block, restoring the previous count after it."""
    prev = nnlite.get_num_threads()
    nnlite.set_num_threads(n)
    try:
        yield
    finally:
        nnlite.set_num_threads(prev)


@pytest.fixture
def lanes_on(monkeypatch):
    """Branch lanes on whatever the OpenMP idle policy (by default they run only where idle
    OpenMP workers sleep at once: nnlite._infer.lanes.lanes_pay)."""
    from nnlite._infer import lanes
    monkeypatch.setattr(lanes, "ENABLED", True)


def reference_epilogue(v, act):
    """The kernels' write-out activation in NumPy: act 0 none, 1 ReLU, 2 ReLU6 (NaN kept)."""
    if act >= 1:
        v = np.where(v < 0, 0, v)
    if act == 2:
        v = np.where(v > 6, 6, v)
    return v


def run_conv_kernel(kern, x, r=None, y=None):
    """Bind an inference plan's ConvKernel to x (and residual r) and run it once, into a new
    NaN-filled output (or into the view y); returns the output."""
    N, C, H, W, F, oh, ow = kern.shape
    if y is None:
        y = np.full((N, F, oh, ow), np.nan, kern.dtype)
    ins = [x, None, None, r] if r is not None else [x]
    kern.bind(ins, [y], np.empty(max(kern.scratch_bytes, 64), np.uint8))()
    return y


ACT_CODES = {None: 0, "relu": 1, "relu6": 2}   # the plan's activation names -> kernel codes


def plan_conv_layer(N, C, F, H, W, k, stride, pads, dil, act, residual, bias, dtype, seed):
    """An inference plan's im2col ConvKernel on random operands: (make, x, r, want), ``make()``
    building the kernel, r the residual (or None), ``want`` the float64 naive-loop reference
    (``nnlite.kernels.conv_reference``) + residual + activation. k, stride, dil are pairs,
    pads (top, left, bottom, right)."""
    from nnlite._infer import kernels as K
    from nnlite.kernels import conv_reference as ref
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = (rng.standard_normal((F, C) + tuple(k)) / np.sqrt(C * k[0] * k[1])).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if bias else None
    attrs = {"kernel_shape": list(k), "strides": list(stride), "pads": list(pads),
             "dilations": list(dil), "activation": act}

    def make():
        return K.ConvKernel(x.shape, w, b, attrs, residual, np.dtype(dtype), algorithm="im2col")
    kern = make()
    oh, ow = kern.geom.oh, kern.geom.ow
    r = rng.standard_normal((N, F, oh, ow)).astype(dtype) if residual else None
    want = ref.conv2d(x.astype(np.float64), w.astype(np.float64),
                      None if b is None else b.astype(np.float64), tuple(stride),
                      (pads[0], pads[2], pads[1], pads[3]), tuple(dil))
    if r is not None:
        want = want + r
    return make, x, r, reference_epilogue(want, ACT_CODES[act])
