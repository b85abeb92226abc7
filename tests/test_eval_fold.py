"""Eval-mode shortcuts of BasicConv2d and Inception (under no_grad): the BatchNorm folded into the
conv, its shift and the ReLU in the conv's write-out, and an Inception's branches written
straight into the concatenated output. Oracle: the same module under the 'reference' backend
(naive loops: conv, then BatchNorm, then ReLU, each its own op), and under ``exact_ops``."""
import numpy as np
import pytest

import nnlite
import nnlite.nn as nn
from nnlite import autograd
from nnlite.nn.blocks import BasicConv2d, Inception

pytestmark = pytest.mark.skipif(nnlite.backend() != "cython",
                                reason="the fused eval path runs the compiled kernels")


def _randomise_bn(module, rng, dtype):
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.data[...] = rng.standard_normal(c)
            m.running_var.data[...] = rng.uniform(0.2, 2.0, c)
            if m.weight is not None:
                m.weight.data[...] = rng.standard_normal(c)
                m.bias.data[...] = rng.standard_normal(c)
    for p in module.parameters():
        p.data = p.data.astype(dtype)
    for name, b in module.named_buffers():
        if b.data.dtype.kind == "f":
            b.data = b.data.astype(dtype)


def _runs(module, x):
    """(fused, exact_ops, reference backend) outputs of module(x) in eval mode, no grad."""
    module.eval()
    t = nnlite.tensor(x)
    with nnlite.no_grad():
        fused = module(t).data
        with autograd.exact_ops():
            exact = module(t).data
        with nnlite.using_backend("reference"):
            ref = module(t).data
    return fused, exact, ref


def _close(a, b, dtype):
    tol = 2e-5 if dtype == np.float32 else 1e-12
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs,cin,hw", [
    (dict(kernel_size=3, padding=1), 4, (7, 9)),
    (dict(kernel_size=(1, 3), padding=(0, 1)), 3, (5, 6)),
    (dict(kernel_size=3, stride=2, dilation=2, padding=3), 2, (9, 8)),
    (dict(kernel_size=1), 5, (4, 4)),
    (dict(kernel_size=1, stride=2), 5, (5, 5)),
    (dict(kernel_size=3, groups=2, padding=1), 4, (6, 6)),
    (dict(kernel_size=5, padding=2), 1, (3, 3)),
])
@pytest.mark.parametrize("algorithm", ["auto", "direct", "implicit", "im2col"])
def test_basic_conv2d_folded_matches_reference(kwargs, cin, hw, dtype, algorithm):
    rng = np.random.default_rng(cin)
    block = BasicConv2d(cin, 6, **kwargs)
    _randomise_bn(block, rng, dtype)
    x = rng.standard_normal((3, cin) + hw).astype(dtype)
    with nnlite.conv_algorithm(algorithm):
        fused, exact, ref = _runs(block, x)
    _close(fused, ref, dtype)
    _close(exact, ref, dtype)
    assert (fused >= 0).all()


def test_basic_conv2d_fold_not_taken_with_grad_or_training():
    """With grad mode on (eval) or in training, the block runs its ops as Functions: the output
    carries an autograd node and gradients reach the weights."""
    rng = np.random.default_rng(0)
    block = BasicConv2d(2, 3, kernel_size=3, padding=1)
    _randomise_bn(block, rng, np.float32)
    block.eval()
    x = nnlite.tensor(rng.standard_normal((2, 2, 5, 5)).astype(np.float32))
    y = block(x)
    assert y.requires_grad
    y.sum().backward()
    assert block.conv.weight.grad is not None
    with nnlite.no_grad():
        assert not block(x).requires_grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("args,kw", [
    ((6, 2, 3, 4, 2, 3, 2), dict(branch3_kernel_size=5)),
    ((5, 3, 2, 3, 1, 2, 4), {}),
    ((4, 2, 2, 3, 2, 2, 0), {}),          # no pool projection: branch4 is the bare pool
    ((4, 2, 0, 3, 0, 2, 0), dict(reduce=False)),
])
def test_inception_eval_one_buffer_matches_reference(args, kw, dtype):
    rng = np.random.default_rng(len(kw))
    block = Inception(*args, **kw)
    _randomise_bn(block, rng, dtype)
    x = rng.standard_normal((2, args[0], 5, 7)).astype(dtype)
    fused, exact, ref = _runs(block, x)
    assert fused.shape == (2, block.out_channels, 5, 7)
    _close(fused, ref, dtype)
    _close(exact, ref, dtype)


def test_inception_eval_one_buffer_writes_every_channel():
    """The concatenated buffer starts uninitialised: poisoning freshly allocated memory must not
    show in the output (every channel range is written by its branch)."""
    rng = np.random.default_rng(3)
    block = Inception(3, 2, 2, 3, 1, 2, 2, branch3_kernel_size=5)
    _randomise_bn(block, rng, np.float32)
    block.eval()
    x = nnlite.tensor(rng.standard_normal((1, 3, 4, 4)).astype(np.float32))
    for _ in range(3):
        junk = np.full(1 << 16, np.nan, np.float32)   # freed memory full of NaN
        del junk
        with nnlite.no_grad():
            y = block(x).data
        assert np.isfinite(y).all()


def test_tracer_and_summary_see_the_unfused_ops():
    """The inference tracer and nnlite.summary run under exact_ops: one Conv, one
    BatchNormalization per BasicConv2d, and a Concat per Inception."""
    from nnlite._infer.trace import trace

    block = Inception(4, 2, 2, 3, 1, 2, 2)
    graph, _ = trace(block, [np.zeros((1, 4, 5, 5), np.float32)])
    ops = [n.op for n in graph.nodes]
    assert ops.count("Conv") == 6 and ops.count("Concat") == 1
    assert ops.count("BatchNormalization") == 6


def test_the_fused_paths_are_taken():
    """The cases above would pass on the unfused path too: check that eval + no_grad does take
    the shortcuts (no Function applied for the folded convs and the concatenation)."""
    calls = []
    orig = autograd.Function.__dict__["apply"]

    def counting(cls, *a, **k):
        calls.append(cls.__name__)
        return orig.__func__(cls, *a, **k)

    block = Inception(4, 2, 2, 3, 1, 2, 2, branch3_kernel_size=5)
    block.eval()
    x = nnlite.tensor(np.ones((2, 4, 6, 6), np.float32))
    autograd.Function.apply = classmethod(counting)
    try:
        with nnlite.no_grad():
            block(x)
        fused_calls = list(calls)
        calls.clear()
        with nnlite.no_grad(), autograd.exact_ops():
            block(x)
    finally:
        autograd.Function.apply = orig
    assert fused_calls == ["MaxPool2dFn"], fused_calls
    assert calls.count("Conv2dFn") == 6 and calls.count("Cat") == 1
