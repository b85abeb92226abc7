"""F.conv_transpose2d / nn.ConvTranspose2d: vs the scatter-form loop reference on every backend,
adjoint identity with conv2d, output_padding >= stride crop, gradchecks, output_size, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from nnlite.kernels import conv_reference as ref

from conftest import assert_close
from conv_cases import conv2d_case, conv_transpose2d_case, with_fixture
from gradcheck import check_grad

DTYPES = [np.float32, np.float64]


def _data(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((case["n"], case["cin"], case["h"], case["w"])).astype(dtype)
    w = rng.standard_normal((case["cin"], case["cout"] // case["g"], case["kh"], case["kw"]))
    b = rng.standard_normal(case["cout"]).astype(dtype)
    return x, w.astype(dtype), b


def _args(case):
    return case["stride"], case["padding"], case["output_padding"], case["g"], case["dilation"]


def _out_size(case):
    return tuple((case[a] - 1) * s - 2 * p + d * (k - 1) + op + 1
                 for a, k, s, p, op, d in zip(("h", "w"), (case["kh"], case["kw"]),
                                              case["stride"], case["padding"],
                                              case["output_padding"], case["dilation"]))


def test_conv_transpose2d_hand_example(backend):
    # docs/semantics.md §2.3: x = 1s (2x2), W = 1s (2x2), s = 2, op = 1, bias 0.5
    # -> last row/col = 0.5
    x = nnlite.tensor(np.ones((1, 1, 2, 2)))
    w = nnlite.tensor(np.ones((1, 1, 2, 2)))
    y = F.conv_transpose2d(x, w, nnlite.tensor(np.array([0.5])), stride=2, output_padding=1)
    expect = np.full((5, 5), 0.5)
    expect[:4, :4] = 1.5
    np.testing.assert_array_equal(y.data[0, 0], expect)


@with_fixture
@given(case=conv_transpose2d_case(), dtype=st.sampled_from(DTYPES), bias=st.booleans())
def test_conv_transpose2d_matches_reference(backend, case, dtype, bias):
    x, w, b = _data(case, dtype)
    b = b if bias else None
    xt, wt = nnlite.tensor(x, requires_grad=True), nnlite.tensor(w, requires_grad=True)
    bt = None if b is None else nnlite.tensor(b, requires_grad=True)
    y = F.conv_transpose2d(xt, wt, bt, *_args(case))
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    expect = ref.conv_transpose2d(x64, w64, None if b is None else b.astype(np.float64),
                                  *_args(case))
    assert y.shape == expect.shape == (case["n"], case["cout"]) + _out_size(case)
    assert y.dtype == dtype
    k = case["cin"] // case["g"] * case["kh"] * case["kw"]
    assert_close(y, expect, dtype, k=k, scale=np.abs(x).max() * np.abs(w).max() + 1)
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    y.backward(gy)
    gx, gw, gb = ref.conv_transpose2d_grads(x64, w64, gy.astype(np.float64), *_args(case))
    kk = case["cout"] * case["kh"] * case["kw"]
    assert_close(xt.grad, gx, dtype, k=kk, scale=np.abs(gy).max() * np.abs(w).max())
    assert_close(wt.grad, gw, dtype, k=x[:, 0].size, scale=np.abs(gy).max() * np.abs(x).max())
    if b is not None:
        assert_close(bt.grad, gb, dtype, k=gy[:, 0].size, scale=np.abs(gy).max())


@given(case=conv_transpose2d_case())
def test_conv_transpose2d_reference_backend_is_the_loop_reference(case):
    x, w, b = _data(case, np.float64)
    xt, wt, bt = (nnlite.tensor(a, requires_grad=True) for a in (x, w, b))
    with nnlite.using_backend("reference"):
        y = F.conv_transpose2d(xt, wt, bt, *_args(case))
    gy = np.random.default_rng(2).standard_normal(y.shape)
    y.backward(gy)
    np.testing.assert_allclose(y.data, ref.conv_transpose2d(x, w, b, *_args(case)), rtol=1e-10,
                               atol=1e-12)
    gx, gw, gb = ref.conv_transpose2d_grads(x, w, gy, *_args(case))
    for got, want in ((xt.grad, gx), (wt.grad, gw), (bt.grad, gb)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@with_fixture
@given(case=conv2d_case())
def test_conv2d_conv_transpose2d_adjoint(backend, case):
    # <conv2d(x), y> = <x, conv_transpose2d(y)> with op = (L + 2p - keff) mod s
    # (docs/semantics.md §2.4)
    rng = np.random.default_rng(3)
    s, p, d, g = case["stride"], case["padding"], case["dilation"], case["g"]
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"]))
    w = rng.standard_normal((case["f"], case["c"] // g, case["kh"], case["kw"]))
    cx = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), None, s, p, d, g).data
    y = rng.standard_normal(cx.shape)
    op = tuple((L + 2 * pp - dd * (k - 1) - 1) % ss for L, pp, dd, k, ss in
               zip((case["h"], case["w"]), p, d, (case["kh"], case["kw"]), s))
    ty = F.conv_transpose2d(nnlite.tensor(y), nnlite.tensor(w), None, s, p, op, g, d).data
    assert ty.shape == x.shape
    lhs, rhs = np.vdot(cx, y), np.vdot(x, ty)
    assert abs(lhs - rhs) <= 1e-9 * (1 + abs(lhs))
    # hence conv2d's input gradient IS conv_transpose2d of the output gradient
    xt = nnlite.tensor(x, requires_grad=True)
    F.conv2d(xt, nnlite.tensor(w), None, s, p, d, g).backward(y)
    np.testing.assert_allclose(xt.grad, ty, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("stride,dilation,op", [(1, 2, 1), ((1, 2), (3, 3), (2, 2)),
                                                 (2, 3, (2, 1))])
def test_conv_transpose2d_output_padding_beyond_stride_crops(backend, stride, dilation, op):
    # op >= stride is legal when op < dilation; the adjoint conv then sees op // s extra rows,
    # which backward must crop (docs/semantics.md §2.4)
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((2, 2, 3, 4)), rng.standard_normal((2, 3, 2, 3)), np.zeros(3)
    args = (stride, 1, op, 1, dilation)
    y = F.conv_transpose2d(nnlite.tensor(x), nnlite.tensor(w), None, *args)
    np.testing.assert_allclose(y.data, ref.conv_transpose2d(x, w, None, *args), rtol=1e-10,
                               atol=1e-12)
    check_grad(lambda xt, wt, bt: F.conv_transpose2d(xt, wt, bt, *args), [x, w, b])


@pytest.mark.parametrize("geo", [
    dict(stride=1, padding=0, op=0, groups=1, dilation=1, k=(3, 3)),
    dict(stride=(2, 1), padding=(1, 2), op=(1, 0), groups=1, dilation=(1, 2), k=(2, 3)),
    dict(stride=(3, 2), padding=(0, 1), op=(2, 1), groups=2, dilation=(2, 1), k=(3, 1)),
    dict(stride=2, padding=1, op=1, groups=4, dilation=1, k=(3, 3)),
    dict(stride=1, padding=0, op=0, groups=2, dilation=1, k=(1, 1)),
])
def test_conv_transpose2d_gradcheck(backend, geo):
    rng = np.random.default_rng(5)
    g = geo["groups"]
    x = rng.standard_normal((2, 4, 3, 4))
    w = rng.standard_normal((4, 4 // g) + geo["k"])
    b = rng.standard_normal(4)
    check_grad(lambda xt, wt, bt: F.conv_transpose2d(xt, wt, bt, geo["stride"], geo["padding"],
                                                     geo["op"], g, geo["dilation"]), [x, w, b])


def test_conv_transpose2d_unbatched_and_empty(backend):
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 2, 2, 2))
    y3 = F.conv_transpose2d(nnlite.tensor(x), nnlite.tensor(w), stride=2)
    y4 = F.conv_transpose2d(nnlite.tensor(x[None]), nnlite.tensor(w), stride=2)
    assert y3.shape == (2, 4, 8)
    np.testing.assert_allclose(y3.data, y4.data[0], rtol=1e-12)
    check_grad(lambda xt, wt: F.conv_transpose2d(xt, wt, None, 2, 1, 1), [x, w])
    xe = nnlite.tensor(np.zeros((0, 3, 2, 4)), requires_grad=True)
    we = nnlite.tensor(w, requires_grad=True)
    ye = F.conv_transpose2d(xe, we, stride=2)
    assert ye.shape == (0, 2, 4, 8)
    ye.sum().backward()
    assert xe.grad.shape == (0, 3, 2, 4) and not we.grad.any()


# ------------------------------------------------------------------ errors
ERRORS = [
    (dict(x=(1, 4, 3, 3), w=(3, 2, 3, 3)), ValueError,
     r"Given transposed=1, weight of size \[3, 2, 3, 3\], expected input\[1, 4, 3, 3\] to have "
     r"3 channels, but got 4 channels instead"),
    (dict(x=(1, 6, 3, 3), w=(6, 2, 3, 3), groups=4), ValueError,
     r"Given groups=4, expected weight to be divisible by 4 at dimension 0, but got weight of "
     r"size \[\[6, 2, 3, 3\]\] instead"),
    (dict(x=(1, 2, 3, 3), w=(2, 2, 3, 3), stride=2, output_padding=2), ValueError,
     "output padding must be smaller than either stride or dilation, but got "
     "output_padding_height: 2 output_padding_width: 2 stride_height: 2 stride_width: 2 "
     "dilation_height: 1 dilation_width: 1"),
    (dict(x=(1, 2, 3, 3), w=(2, 2, 3, 3), output_padding=-1), ValueError,
     "negative output_padding is not supported"),
    (dict(x=(1, 2, 3, 3), w=(2, 2, 3, 3), padding=-1), ValueError,
     "negative padding is not supported"),
    (dict(x=(1, 2, 3, 3), w=(2, 2, 3, 3), stride=0), ValueError,
     "non-positive stride is not supported"),
    (dict(x=(1, 2, 3, 3), w=(2, 2, 3, 3), dilation=(1, 0)), ValueError,
     r"dilation should be greater than zero, but got \[1, 0\]"),
    (dict(x=(1, 2, 1, 1), w=(2, 2, 3, 3), padding=2), ValueError,
     r"Given input size per channel: \(1 x 1\). Calculated output size per channel: "
     r"\(-1 x -1\). Output size is too small"),
    (dict(x=(1, 4, 3, 3), w=(4, 2, 3, 3), b=(3,)), ValueError,
     r"Given transposed=1, weight of size \[4, 2, 3, 3\], expected bias to be 1-dimensional "
     r"with 2 elements, but got bias of size \[3\] instead"),
    (dict(x=(4, 3), w=(4, 2, 3, 3)), ValueError,
     r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv_transpose2d, but got input of "
     r"size: \[4, 3\]"),
    (dict(x=(1, 2, 3, 3), w=(2, 2, 3, 3), padding="same"), TypeError,
     "string padding is not defined"),
    (dict(x=(1, 2, 3, 3), w=(2, 2, 3, 3), xdt=np.float64), TypeError,
     "input dtype float64 and weight dtype float32 differ"),
    (dict(x=(1, 2, 3, 3), w=(2, 2, 3, 3), b=(2,), bdt=np.float64), TypeError,
     "bias dtype float64 differ"),
    (dict(x=(1, 2, 3, 3), w=(2, 2, 3, 3), xdt=np.int32, wdt=np.int32), TypeError,
     "must be float32 or float64"),
    (dict(x=(1, 2, 3, 3), w=(2, 2, 3, 3), groups=0), ValueError,
     "non-positive groups is not supported"),
    # several faults at once: the first error is the one torch raises first
    (dict(x=(1, 2, 3, 3), w=(2, 2, 3, 3), stride=0, output_padding=-1), ValueError,
     "negative output_padding"),
    (dict(x=(1, 3, 3, 3), w=(2, 2, 3, 3), stride=1, output_padding=2), ValueError,
     "expected input"),
]


@pytest.mark.parametrize("spec,exc,msg", ERRORS)
def test_conv_transpose2d_rejects_bad_arguments(backend, spec, exc, msg):
    x = np.zeros(spec["x"], dtype=spec.get("xdt", np.float32))
    w = np.zeros(spec["w"], dtype=spec.get("wdt", np.float32))
    b = np.zeros(spec["b"], dtype=spec.get("bdt", np.float32)) if "b" in spec else None
    kw = {k: spec[k] for k in ("stride", "padding", "output_padding", "groups", "dilation")
          if k in spec}
    with pytest.raises(exc, match=msg):
        F.conv_transpose2d(nnlite.tensor(x), nnlite.tensor(w),
                           None if b is None else nnlite.tensor(b), **kw)


# ------------------------------------------------------------------ module
def test_conv_transpose2d_module_attributes_init_and_state_dict():
    nnlite.manual_seed(7)
    m = nn.ConvTranspose2d(6, 4, (2, 3), stride=2, padding=1, output_padding=(1, 0), groups=2,
                           dilation=(1, 2))
    assert m.weight.shape == (6, 2, 2, 3) and m.bias.shape == (4,)
    assert (m.in_channels, m.out_channels, m.groups, m.padding_mode) == (6, 4, 2, "zeros")
    assert m.kernel_size == (2, 3) and m.stride == (2, 2) and m.padding == (1, 1)
    assert m.output_padding == (1, 0) and m.dilation == (1, 2)
    bound = 1 / np.sqrt(2 * 2 * 3)           # fan_in = weight.size(1) * kH * kW = Cout/g * ...
    assert np.abs(m.weight.data).max() <= bound and np.abs(m.bias.data).max() <= bound
    assert np.abs(m.bias.data).max() > 0.3 * bound
    assert list(m.state_dict()) == ["weight", "bias"]
    assert repr(m) == ("ConvTranspose2d(6, 4, kernel_size=(2, 3), stride=(2, 2), padding=(1, 1), "
                       "dilation=(1, 2), output_padding=(1, 0), groups=2)")
    nb = nn.ConvTranspose2d(2, 2, 1, bias=False)
    assert nb.bias is None and list(nb.state_dict()) == ["weight"]


def test_conv_transpose2d_module_output_size(backend):
    nnlite.manual_seed(8)
    m = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, dtype=np.float64)
    x = nnlite.tensor(np.random.default_rng(9).standard_normal((1, 2, 3, 3)))
    assert m(x).shape == (1, 3, 5, 5)
    for size in ((5, 5), (6, 5), (1, 3, 6, 6), [5, 6]):
        y = m(x, output_size=size)
        assert y.shape[2:] == tuple(size[-2:])
        op = (size[-2] - 5, size[-1] - 5)
        np.testing.assert_allclose(
            y.data, ref.conv_transpose2d(x.data, m.weight.data, m.bias.data, 2, 1, op),
            rtol=1e-10, atol=1e-12)
    assert m(nnlite.tensor(x.data[0]), output_size=(3, 6, 6)).shape == (3, 6, 6)
    with pytest.raises(ValueError, match=r"requested an output size of \[7, 7\], but valid sizes "
                                         r"range from \[5, 5\] to \[6, 6\]"):
        m(x, output_size=(7, 7))
    with pytest.raises(ValueError, match=r"ConvTranspose2D: for 4D input, output_size must have "
                                         r"2 or 4 elements \(got 3\)"):
        m(x, output_size=(3, 6, 6))
    with pytest.raises(ValueError, match="requested an output size"):
        m(x, output_size=(4, 5))


def test_conv_transpose2d_module_output_size_still_checks_op_rule():
    # max = min + s - 1 uses the stride only; with d > s the returned op is still < max(s, d)
    m = nn.ConvTranspose2d(1, 1, 2, stride=1, dilation=3)
    x = nnlite.tensor(np.ones((1, 1, 2, 2), np.float32))
    assert m(x, output_size=(5, 5)).shape == (1, 1, 5, 5)
    with pytest.raises(ValueError, match="valid sizes range from"):
        m(x, output_size=(6, 5))


@pytest.mark.parametrize("kw,msg", [
    (dict(padding_mode="reflect"), 'Only "zeros" padding mode is supported for ConvTranspose2d'),
    (dict(groups=0), "groups must be a positive integer"),
    (dict(in_channels=3, groups=2), "in_channels must be divisible by groups"),
    (dict(out_channels=3, groups=2), "out_channels must be divisible by groups"),
    (dict(padding="same"), "string padding 'same' is not supported"),
])
def test_conv_transpose2d_module_rejects_bad_configuration(kw, msg):
    args = dict(in_channels=4, out_channels=4, kernel_size=3)
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        nn.ConvTranspose2d(**args)


# ------------------------------------------------------------------ torch parity
@pytest.mark.torch
@with_fixture
@given(case=conv_transpose2d_case())
def test_conv_transpose2d_torch_parity(backend, case):
    torch = pytest.importorskip("torch")
    x, w, b = _data(case, np.float64)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv_transpose2d(xt, wt, bt, *_args(case))
    gy = np.random.default_rng(10).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(gy))
    xn, wn, bn = (nnlite.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv_transpose2d(xn, wn, bn, *_args(case))
    y.backward(gy)
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    for mine, theirs in ((xn, xt), (wn, wt), (bn, bt)):
        np.testing.assert_allclose(mine.grad, theirs.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.torch
def test_conv_transpose2d_module_matches_torch_with_output_size():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), padding=(1, 0), groups=2,
                                  dilation=(1, 2)).double()
    m = nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), padding=(1, 0), groups=2,
                           dilation=(1, 2), dtype=np.float64)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(11).standard_normal((2, 4, 3, 4))
    for size in (None, (6, 12), (6, 14)):
        np.testing.assert_allclose(m(nnlite.tensor(x), output_size=size).data,
                                   tm(torch.tensor(x), output_size=size).detach().numpy(),
                                   rtol=1e-10, atol=1e-12)
