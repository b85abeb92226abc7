"""conv1d / conv_transpose1d, the 1-D pools and lp_pool1d/2d, with their modules.

Oracles: a naive 1-D convolution loop written here, the lp-pool loop reference
(nnlite/kernels/lp_pool_reference.py), float64 finite differences and PyTorch (forward and
backward, float32 and float64).
"""
import numpy as np
import pytest

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from gradcheck import check_grad
from nnlite.kernels import lp_pool_reference as LP

RNG = np.random.default_rng(11)


def _naive_conv1d(x, w, b, stride, pad_l, pad_r, dilation, groups):
    """Direct sum y[n, f, o] = b[f] + sum_{c, k} w[f, c, k] x[n, g*Cg + c, o*s - pl + k*d]."""
    n, c, length = x.shape
    f, cg, k = w.shape
    fg = f // groups
    lout = (length + pad_l + pad_r - dilation * (k - 1) - 1) // stride + 1
    y = np.zeros((n, f, lout))
    for b_ in range(n):
        for o in range(f):
            g = o // fg
            for t in range(lout):
                acc = 0.0 if b is None else float(b[o])
                for ci in range(cg):
                    for kk in range(k):
                        pos = t * stride - pad_l + kk * dilation
                        if 0 <= pos < length:
                            acc += w[o, ci, kk] * x[b_, g * cg + ci, pos]
                y[b_, o, t] = acc
    return y


CONV_CASES = [
    # (N, C, L), (F, C/g, K), kwargs
    ((2, 4, 11), (6, 2, 3), dict(stride=2, padding=3, dilation=2, groups=2)),
    ((1, 1, 5), (1, 1, 1), dict()),
    ((1, 3, 7), (3, 1, 4), dict(groups=3, padding=5)),                 # padding > kernel
    ((2, 2, 9), (5, 2, 4), dict(padding="same", dilation=3)),          # even kernel: extra right
    ((1, 2, 6), (4, 2, 3), dict(padding="valid", stride=4)),           # stride not tiling L
    ((3, 2, 8), (2, 2, 2), dict(stride=(3,), padding=(1,), dilation=(2,))),
]


@pytest.mark.parametrize("xs,ws,kw", CONV_CASES)
def test_conv1d_matches_naive_loop(xs, ws, kw):
    x, w, b = RNG.normal(size=xs), RNG.normal(size=ws), RNG.normal(size=ws[0])
    p = kw.get("padding", 0)
    k, d = ws[2], kw.get("dilation", 1)
    d = d[0] if isinstance(d, tuple) else d
    if p == "same":
        total = d * (k - 1)
        pl, pr = total // 2, total - total // 2
    elif p == "valid":
        pl = pr = 0
    else:
        pl = pr = p[0] if isinstance(p, tuple) else p
    s = kw.get("stride", 1)
    s = s[0] if isinstance(s, tuple) else s
    want = _naive_conv1d(x, w, b, s, pl, pr, d, kw.get("groups", 1))
    got = F.conv1d(nnlite.tensor(x), nnlite.tensor(w), nnlite.tensor(b), **kw)
    np.testing.assert_allclose(got.data, want, rtol=1e-12, atol=1e-12)
    unb = F.conv1d(nnlite.tensor(x[0]), nnlite.tensor(w), nnlite.tensor(b), **kw)
    np.testing.assert_allclose(unb.data, want[0], rtol=1e-12, atol=1e-12)


def test_conv_transpose1d_is_the_adjoint_of_conv1d():
    x = RNG.normal(size=(2, 4, 11))
    w = RNG.normal(size=(6, 2, 3))
    y = F.conv1d(nnlite.tensor(x), nnlite.tensor(w), stride=2, padding=1, dilation=2, groups=2)
    g = RNG.normal(size=y.shape)
    # <conv(x), g> == <x, conv_transpose(g)> with the same weight (output_padding fills L)
    lx = F.conv_transpose1d(nnlite.tensor(g), nnlite.tensor(w), stride=2, padding=1,
                            output_padding=0, groups=2, dilation=2)
    pad = x.shape[-1] - lx.shape[-1]
    lx = F.conv_transpose1d(nnlite.tensor(g), nnlite.tensor(w), stride=2, padding=1,
                            output_padding=pad, groups=2, dilation=2)
    np.testing.assert_allclose(np.sum(y.data * g), np.sum(x * lx.data), rtol=1e-12)


def test_conv_gradients_finite_differences():
    x, w, b = RNG.normal(size=(2, 2, 7)), RNG.normal(size=(4, 1, 3)), RNG.normal(size=4)
    check_grad(lambda a, c, d: F.conv1d(a, c, d, stride=2, padding=2, dilation=2, groups=2),
               [x, w, b])
    wt = RNG.normal(size=(2, 3, 3))
    check_grad(lambda a, c, d: F.conv_transpose1d(a, c, d, stride=2, padding=1,
                                                  output_padding=1),
               [x, wt, RNG.normal(size=3)])


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_torch_parity(dtype):
    torch = pytest.importorskip("torch")
    tol = dict(rtol=1e-11, atol=1e-11) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    cases = [(F.conv1d, torch.nn.functional.conv1d, xs, ws, kw) for xs, ws, kw in CONV_CASES]
    cases += [
        (F.conv_transpose1d, torch.nn.functional.conv_transpose1d, (2, 4, 6), (4, 3, 3),
         dict(stride=3, padding=1, output_padding=2, groups=2, dilation=2)),
        (F.conv_transpose1d, torch.nn.functional.conv_transpose1d, (1, 3, 5), (3, 1, 4),
         dict(groups=3)),
        (F.conv_transpose1d, torch.nn.functional.conv_transpose1d, (2, 2, 4), (2, 5, 2),
         dict(stride=2, padding=(1,), dilation=(3,), output_padding=(2,))),
    ]
    for ours, theirs, xs, ws, kw in cases:
        x, w = RNG.normal(size=xs).astype(dtype), RNG.normal(size=ws).astype(dtype)
        nb = ws[0] if ours is F.conv1d else ws[1] * kw.get("groups", 1)
        b = RNG.normal(size=nb).astype(dtype)
        ts = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
        ns = [nnlite.tensor(a, requires_grad=True) for a in (x, w, b)]
        yt, yn = theirs(*ts, **kw), ours(*ns, **kw)
        g = RNG.normal(size=tuple(yt.shape)).astype(dtype)
        yt.backward(torch.tensor(g))
        yn.backward(g)
        np.testing.assert_allclose(yn.data, yt.detach().numpy(), **tol)
        for n_, t_ in zip(ns, ts):
            np.testing.assert_allclose(n_.grad, t_.grad.numpy(), **tol)


@pytest.mark.torch
def test_conv_modules_torch_parity():
    torch = pytest.importorskip("torch")
    x = RNG.normal(size=(2, 4, 9)).astype(np.float32)
    pairs = [(dict(in_channels=4, out_channels=6, kernel_size=3), "Conv1d"),
             (dict(in_channels=4, out_channels=4, kernel_size=4, padding="same", dilation=2,
                   groups=4, padding_mode="reflect"), "Conv1d"),
             (dict(in_channels=4, out_channels=2, kernel_size=3, padding=2,
                   padding_mode="circular", bias=False), "Conv1d"),
             (dict(in_channels=4, out_channels=2, kernel_size=(2,), stride=2, padding=1,
                   padding_mode="replicate"), "Conv1d"),
             (dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1,
                   output_padding=1, groups=2, dilation=1), "ConvTranspose1d")]
    for kw, name in pairs:
        ours, theirs = getattr(nn, name)(**kw), getattr(torch.nn, name)(**kw)
        assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        assert ours.weight.shape == tuple(theirs.weight.shape)
        bound = 1 / np.sqrt(np.prod(ours.weight.shape[1:]))
        assert np.abs(ours.weight.data).max() <= bound
        ours.load_state_dict(theirs.state_dict())
        np.testing.assert_allclose(ours(nnlite.tensor(x)).data,
                                   theirs(torch.tensor(x)).detach().numpy(), rtol=1e-4,
                                   atol=1e-5)
    up, tup = nn.ConvTranspose1d(4, 2, 3, stride=2), torch.nn.ConvTranspose1d(4, 2, 3, stride=2)
    up.load_state_dict(tup.state_dict())
    for size in ([20], (2, 2, 19)):
        np.testing.assert_allclose(up(nnlite.tensor(x), output_size=size).data,
                                   tup(torch.tensor(x), output_size=size).detach().numpy(),
                                   rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="requested an output size of"):
        up(nnlite.tensor(x), output_size=[22])


# --------------------------------------------------------------------------- pools
@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool1d_torch_parity(dtype):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = RNG.normal(size=(2, 3, 10)).astype(dtype)
    x[0, 0, 3:6] = 1.5                                     # ties: first maximum wins
    cases = [("max_pool1d", (3,), {}), ("max_pool1d", (4, 3, 2, 2, True), {}),
             ("max_pool1d", ((3,), (2,), (1,), (3,)), dict(ceil_mode=True)),
             ("avg_pool1d", (3,), {}), ("avg_pool1d", (4, 3, 2, True, False), {}),
             ("avg_pool1d", (3, 2, 1), dict(ceil_mode=True)),
             ("adaptive_avg_pool1d", (4,), {}), ("adaptive_avg_pool1d", (13,), {}),
             ("adaptive_max_pool1d", (3,), {}), ("lp_pool1d", (2, 3), {}),
             ("lp_pool1d", (1.5, 4, 3, True), {}), ("lp_pool1d", (float("inf"), 3, 2), {}),
             ("lp_pool1d", (-float("inf"), 3, 2, True), {})]
    for name, args, kw in cases:
        xa = np.abs(x) + 0.1 if name == "lp_pool1d" else x
        for inp in (xa, xa[0]):
            xt = torch.tensor(inp, requires_grad=True)
            xn = nnlite.tensor(inp, requires_grad=True)
            yt = getattr(tf, name)(xt, *args, **kw)
            yn = getattr(F, name)(xn, *args, **kw)
            g = RNG.normal(size=tuple(yt.shape)).astype(dtype)
            yt.backward(torch.tensor(g))
            yn.backward(g)
            tol = 1e-12 if dtype == np.float64 else 2e-6
            np.testing.assert_allclose(yn.data, yt.detach().numpy(), rtol=tol, atol=tol,
                                       err_msg=f"{name} {args}")
            np.testing.assert_allclose(xn.grad, xt.grad.numpy(), rtol=tol, atol=tol,
                                       err_msg=f"{name} {args}")
    yn, idx = F.max_pool1d(nnlite.tensor(x), 3, 2, 1, return_indices=True)
    _, it = tf.max_pool1d(torch.tensor(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(idx.data, it.numpy())
    yn, idx = F.adaptive_max_pool1d(nnlite.tensor(x), 4, return_indices=True)
    _, it = tf.adaptive_max_pool1d(torch.tensor(x), 4, return_indices=True)
    np.testing.assert_array_equal(idx.data, it.numpy())
    assert idx.dtype == np.int64


# x**p of negative x with fractional p, and 0**(1/p - 1), are NaN/inf by design (as in PyTorch)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_lp_pool_matches_reference():
    x = RNG.normal(size=(2, 3, 9, 7))
    planes = x.reshape(6, 9, 7)
    for p, k, s, ceil in [(2, (3, 3), (3, 3), False), (3, (2, 3), (2, 2), True),
                          (1.5, (2, 2), (1, 2), True), (np.inf, (2, 2), (1, 1), False),
                          (-np.inf, (3, 3), (2, 2), True), (1, (3, 2), (2, 3), True),
                          (-2, (2, 2), (2, 2), False), (4, (1, 7), (1, 1), False)]:
        xa = np.abs(x) + 0.05 if p in (1.5, -2) else x
        got = F.lp_pool2d(nnlite.tensor(xa), p, k, s, ceil).data
        want = LP.lp_pool2d(xa.reshape(planes.shape), p, k, s, ceil).reshape(got.shape)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"{p} {k} {s}")
    x1 = RNG.normal(size=(2, 3, 10))
    for p, k, s, ceil in [(2, 3, 2, True), (3, 4, 3, False), (1, 2, 1, False)]:
        got = F.lp_pool1d(nnlite.tensor(x1), p, k, s, ceil).data
        want = LP.lp_pool1d(x1.reshape(6, 10), p, k, s, ceil).reshape(got.shape)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_pool_gradients_finite_differences():
    x = RNG.uniform(0.2, 2.0, size=(1, 2, 7, 6))
    check_grad(lambda a: F.lp_pool2d(a, 2, (2, 3), 2, True), [x], rtol=1e-5)
    check_grad(lambda a: F.lp_pool2d(a, 1.5, 3), [x], rtol=1e-5)
    x1 = RNG.normal(size=(2, 2, 9))
    check_grad(lambda a: F.avg_pool1d(a, 3, 2, 1, True, False), [x1])
    check_grad(lambda a: F.max_pool1d(a, 3, 2, 1, 2), [x1])
    check_grad(lambda a: F.lp_pool1d(a, 3, 2), [np.abs(x1) + 0.1], rtol=1e-5)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lp_pool2d_torch_parity_including_zero_and_negative_windows(dtype):
    torch = pytest.importorskip("torch")
    x = RNG.normal(size=(2, 2, 7, 8)).astype(dtype)
    x[0, 0, :3, :3] = 0                              # an all-zero window: NaN gradient (torch)
    for args in [(2, 3), (2, (2, 3), 2, True), (3, 2), (1, (3, 2), (2, 3), True),
                 (float("inf"), 2, 1), (-float("inf"), (3, 2), 2, True), (4.0, 2)]:
        xt, xn = torch.tensor(x, requires_grad=True), nnlite.tensor(x, requires_grad=True)
        yt, yn = torch.nn.functional.lp_pool2d(xt, *args), F.lp_pool2d(xn, *args)
        g = RNG.normal(size=tuple(yt.shape)).astype(dtype)
        yt.backward(torch.tensor(g))
        yn.backward(g)
        tol = 1e-12 if dtype == np.float64 else 3e-6
        np.testing.assert_allclose(yn.data, yt.detach().numpy(), rtol=tol, atol=tol,
                                   equal_nan=True, err_msg=str(args))
        np.testing.assert_allclose(xn.grad, xt.grad.numpy(), rtol=tol, atol=tol,
                                   equal_nan=True, err_msg=str(args))


@pytest.mark.torch
def test_pool_modules_torch_parity():
    torch = pytest.importorskip("torch")
    x = np.abs(RNG.normal(size=(2, 3, 9, 8))).astype(np.float32)
    x1 = x[:, :, 0]
    pairs = [(nn.MaxPool1d(3), torch.nn.MaxPool1d(3), x1),
             (nn.MaxPool1d((3,), 2, 1, ceil_mode=True), torch.nn.MaxPool1d((3,), 2, 1,
                                                                            ceil_mode=True), x1),
             (nn.AvgPool1d(3, 2, 1, True, False), torch.nn.AvgPool1d(3, 2, 1, True, False), x1),
             (nn.AdaptiveAvgPool1d(5), torch.nn.AdaptiveAvgPool1d(5), x1),
             (nn.AdaptiveMaxPool1d((3,)), torch.nn.AdaptiveMaxPool1d((3,)), x1),
             (nn.LPPool1d(2, 3), torch.nn.LPPool1d(2, 3), x1),
             (nn.LPPool1d(1.5, 3, 2, True), torch.nn.LPPool1d(1.5, 3, 2, True), x1),
             (nn.LPPool2d(2, 3), torch.nn.LPPool2d(2, 3), x),
             (nn.LPPool2d(3, (2, 3), 1, True), torch.nn.LPPool2d(3, (2, 3), 1, True), x)]
    for ours, theirs, inp in pairs:
        assert repr(ours) == repr(theirs)
        np.testing.assert_allclose(ours(nnlite.tensor(inp)).data,
                                   theirs(torch.tensor(inp)).numpy(), rtol=3e-6, atol=3e-6)
    y, idx = nn.MaxPool1d(2, return_indices=True)(nnlite.tensor(x1))
    _, it = torch.nn.MaxPool1d(2, return_indices=True)(torch.tensor(x1))
    np.testing.assert_array_equal(idx.data, it.numpy())


# --------------------------------------------------------------------------- bad arguments
X3 = nnlite.tensor(np.zeros((2, 4, 9)))
W3 = nnlite.tensor(np.zeros((6, 4, 3)))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: F.conv1d(nnlite.tensor(np.zeros((1, 2, 4, 9))), W3), ValueError,
     r"Expected 2D \(unbatched\) or 3D \(batched\) input to conv1d, but got input of size: "
     r"\[1, 2, 4, 9\]"),
    (lambda: F.conv1d(X3, nnlite.tensor(np.zeros((6, 4, 1, 3)))), ValueError,
     r"conv1d: weight must be 3-dimensional \(out_channels, in_channels/groups, kW\)"),
    (lambda: F.conv1d(X3, W3, stride=(1, 2)), ValueError,
     r"conv1d: stride must be an int or a tuple of one int, got \(1, 2\)"),
    (lambda: F.conv1d(X3, W3, padding=1.5), TypeError, "padding must be an int"),
    (lambda: F.conv1d(X3, nnlite.tensor(np.zeros((6, 3, 3)))), ValueError,
     r"conv1d \(computed as a 2-D op over \(N, C, 1, L\)\): Given groups=1, .*expected "
     r"input\[2, 4, 1, 9\] to have 3 channels, but got 4 channels instead"),
    (lambda: F.conv1d(X3, W3, stride=2, padding="same"), ValueError,
     "padding='same' is not supported for strided convolutions"),
    (lambda: F.conv1d(X3, W3, padding="full"), ValueError, "Invalid padding string: 'full'"),
    (lambda: F.conv1d(X3, nnlite.tensor(np.zeros((6, 4, 12)))), ValueError,
     r"Kernel size: \(1 x 12\). Kernel size can't be greater than actual input size"),
    (lambda: F.conv_transpose1d(X3, nnlite.tensor(np.zeros((4, 2, 3))), padding="same"),
     TypeError, "string padding is not defined for transposed conv"),
    (lambda: F.conv_transpose1d(X3, nnlite.tensor(np.zeros((4, 2, 3))), stride=2,
                                output_padding=2), ValueError,
     "output padding must be smaller than either stride or dilation"),
    (lambda: F.max_pool1d(X3, (2, 2)), ValueError, "kernel_size must be an int or a tuple of "
                                                   r"one int, got \(2, 2\)"),
    (lambda: F.max_pool1d(X3, 3, padding=2), ValueError,
     "pad should be smaller than or equal to half of kernel size"),
    (lambda: F.max_pool1d(X3, 10), ValueError, "Output size is too small"),
    (lambda: F.max_pool1d(nnlite.tensor(np.zeros(9)), 3), ValueError,
     r"max_pool1d: Expected 2D or 3D input \(C, L\) or \(N, C, L\), but got shape \(9,\)"),
    (lambda: F.avg_pool1d(X3, 0, 1), ValueError, "kernel size should be greater than zero"),
    (lambda: F.adaptive_avg_pool1d(X3, (2, 2)), ValueError,
     r"output_size must be an int or a tuple of one int, got \(2, 2\)"),
    (lambda: F.adaptive_max_pool1d(X3, -1), ValueError,
     "elements of output_size must be greater than or equal to 0"),
    (lambda: F.lp_pool2d(nnlite.tensor(np.zeros((1, 1, 4, 4))), 0, 2), ValueError,
     "lp_pool2d: norm_type must be non-zero"),
    (lambda: F.lp_pool1d(X3, "2", 2), TypeError, "lp_pool1d: norm_type must be a number"),
    (lambda: nn.Conv1d(4, 6, 3, stride=2, padding="same"), ValueError,
     "padding='same' is not supported for strided convolutions"),
    (lambda: nn.Conv1d(4, 6, (3, 3)), ValueError, "kernel_size must be an int or a tuple of one"),
    (lambda: nn.ConvTranspose1d(4, 6, 3, padding_mode="reflect"), ValueError,
     'Only "zeros" padding mode is supported for ConvTranspose1d'),
    (lambda: nn.Conv1d(4, 6, 3, groups=4), ValueError, "out_channels must be divisible by "
                                                       "groups"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_empty_batch_shapes_and_gradients():
    x = nnlite.tensor(np.zeros((0, 4, 9)), requires_grad=True)
    cases = [(F.conv1d, (nnlite.tensor(np.zeros((6, 4, 3))),), (0, 6, 7)),
             (F.conv_transpose1d, (nnlite.tensor(np.zeros((4, 3, 3))),), (0, 3, 11)),
             (F.max_pool1d, (3,), (0, 4, 3)), (F.avg_pool1d, (3, 2), (0, 4, 4)),
             (F.lp_pool1d, (2, 3), (0, 4, 3)), (F.adaptive_max_pool1d, (4,), (0, 4, 4))]
    for fn, args, shape in cases:
        y = fn(x, *args)
        assert y.shape == shape, fn.__name__
        y.sum().backward()
        assert x.grad.shape == (0, 4, 9)
        x.grad = None
