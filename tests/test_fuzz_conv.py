"""Fuzz: F.conv2d, F.conv_transpose2d, F.pad and nn.Conv2d / nn.ConvTranspose2d.

Random valid calls (geometry built to be valid, then arbitrary layouts, dtypes, NaN/inf, empty
batches, unbatched inputs) must match the naive-loop reference on every backend, forward and
backward; random invalid calls (one argument replaced by a bad value, mismatched shapes or
dtypes) must raise ValueError/TypeError on every backend alike.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from fuzzing import (ALL, CONV_VARIANTS, Failed, LAYOUTS, agree, bad_int, fuzz_settings, hang_guard,  # noqa: F401
                     make_array, memory_cap, on_backend, outcome, rngs, tol)

pytestmark = pytest.mark.fuzz

DTYPES = (np.float32, np.float64)


def _side(draw, name, p=None):
    """(k, s, d, p, in) for one axis, valid by construction (STYLE §4.7); ``p`` forced if given."""
    k = draw(st.integers(1, 3), label=f"k{name}")
    s = draw(st.integers(1, 3), label=f"s{name}")
    d = draw(st.integers(1, 3), label=f"d{name}")
    o = draw(st.integers(1, 3), label=f"o{name}")
    if p is None:
        p = draw(st.integers(0, 3), label=f"p{name}")
    extra = draw(st.integers(0, s - 1), label=f"extra{name}")
    size = (o - 1) * s + d * (k - 1) + 1 - 2 * p + extra
    if size < 1:  # more output rows until the input is non-empty
        size += -(-(1 - size) // s) * s
    return k, s, d, p, size


def _tpad(size, s, d, k, op, p):
    """The largest padding <= p that keeps the transposed conv's output length >= 1."""
    return min(p, ((size - 1) * s + d * (k - 1) + op) // 2)


def _mutate(draw, args):
    """Replace one argument with a bad value; returns a label for the failure message."""
    key = draw(st.sampled_from(sorted(args)), label="mutated")
    if key in ("x", "w", "b"):
        arr = args[key]
        if arr is None:
            args[key] = np.zeros(draw(st.integers(0, 3), label="bias_len"), np.float64)
            return f"{key}:wrong-bias"
        how = draw(st.sampled_from(["int", "ndim+", "ndim-", "float16", "list", "none",
                                    "channels"]), label="how")
        if how == "int":
            args[key] = arr.astype(np.int64)
        elif how == "float16":
            args[key] = arr.astype(np.float16)
        elif how == "ndim+":
            args[key] = arr[None]
        elif how == "ndim-":
            args[key] = arr[0] if arr.ndim and len(arr) else arr[..., 0]
        elif how == "list":
            args[key] = "not an array"
        elif how == "none" and key != "x":
            args[key] = None
        elif how == "channels" and arr.ndim >= 2:
            args[key] = np.concatenate([arr, arr[:, :1]], axis=1)
        return f"{key}:{how}"
    args[key] = bad_int(draw, key)
    return f"{key}={args[key]!r}"


@st.composite
def conv_cases(draw, transposed=False):
    rng = draw(rngs())
    dtype = draw(st.sampled_from(DTYPES), label="dtype")
    g = draw(st.integers(1, 3), label="groups")
    cg = draw(st.integers(1, 2), label="cg")
    fg = draw(st.integers(1, 2), label="fg")
    n = draw(st.sampled_from([0, 1, 1, 2]), label="n")
    padding = "pair" if transposed else draw(
        st.sampled_from(["pair", "pair", "int", "same", "valid"]), label="pmode")
    p_int = draw(st.integers(0, 3), label="p") if padding == "int" else None
    force = {"int": p_int, "valid": 0, "same": 0}.get(padding)
    kh, sh, dh, ph, h = _side(draw, "h", force)
    kw, sw, dw, pw, w = _side(draw, "w", force)
    lx = draw(st.sampled_from(LAYOUTS), label="x_layout")
    lw = draw(st.sampled_from(LAYOUTS), label="w_layout")
    special = draw(st.sampled_from([0.0, 0.0, 0.1]), label="nan_inf_in_x")
    unbatched = n == 1 and draw(st.booleans(), label="unbatched")
    if transposed:
        # convT input (N, Cin=g*cg, H, W), weight (Cin, fg, KH, KW), output channels g*fg
        x = make_array(rng, (n, g * cg, h, w), dtype, lx, special)
        wt = make_array(rng, (g * cg, fg, kh, kw), dtype, lw)
        op_h = draw(st.integers(0, max(sh, dh) - 1), label="oph")
        op_w = draw(st.integers(0, max(sw, dw) - 1), label="opw")
        args = dict(x=x, w=wt, b=rng.uniform(-1, 1, g * fg).astype(dtype), stride=(sh, sw),
                    padding=(_tpad(h, sh, dh, kh, op_h, ph), _tpad(w, sw, dw, kw, op_w, pw)),
                    output_padding=(op_h, op_w),
                    groups=g, dilation=(dh, dw))
    else:
        x = make_array(rng, (n, g * cg, h, w), dtype, lx, special)
        wt = make_array(rng, (g * fg, cg, kh, kw), dtype, lw)
        pad = {"pair": (ph, pw), "int": ph, "same": "same", "valid": "valid"}[padding]
        stride = (1, 1) if padding == "same" else (sh, sw)
        args = dict(x=x, w=wt, b=rng.uniform(-1, 1, g * fg).astype(dtype), stride=stride,
                    padding=pad, dilation=(dh, dw), groups=g)
    if draw(st.booleans(), label="no_bias"):
        args["b"] = None
    if unbatched:
        args["x"] = args["x"][0]
    label = "valid"
    if draw(st.integers(0, 9), label="mutate?") < 3:
        label = _mutate(draw, args)
    return args, label, rng


def _run(fn, args, rng_seed, transposed):
    """Forward + backward through autograd; returns (y, gx, gw, gb)."""
    a = dict(args)
    x = nnlite.tensor(a.pop("x"), requires_grad=True) if isinstance(args["x"], np.ndarray) \
        and args["x"].dtype.kind == "f" else a.pop("x")
    w = nnlite.tensor(a.pop("w"), requires_grad=True) if isinstance(args["w"], np.ndarray) \
        and args["w"].dtype.kind == "f" else a.pop("w")
    b = a.pop("b")
    if isinstance(b, np.ndarray) and b.dtype.kind == "f":
        b = nnlite.tensor(b, requires_grad=True)
    y = fn(x, w, b, **a)
    gy = np.random.default_rng(rng_seed).uniform(-1, 1, y.shape).astype(y.dtype)
    y.backward(gy)
    grads = [t.grad if isinstance(t, nnlite.Tensor) else None for t in (x, w, b)]
    return (y.data,) + tuple(None if g is None else np.asarray(getattr(g, "data", g))
                             for g in grads)


def _check(fn, args, label, rng, transposed):
    seed = int(rng.integers(2 ** 31))
    results = {b: outcome(on_backend, b, _run, fn, args, seed, transposed,
                          memory_ok=label != "valid") for b in CONV_VARIANTS}
    w = args["w"]
    k = w.shape[1] * w.shape[2] * w.shape[3] if isinstance(w, np.ndarray) and w.ndim == 4 else 1
    dtype = args["x"].dtype if isinstance(args["x"], np.ndarray) else np.float64
    rtol, atol = tol(dtype if dtype in DTYPES else np.float32, k * 9, 4.0)
    agree(results, rtol, atol, f"{fn.__name__} [{label}]", valid=label == "valid")


@fuzz_settings(300)
@given(case=conv_cases())
def test_fuzz_conv2d(case, memory_cap):
    args, label, rng = case
    _check(F.conv2d, args, label, rng, False)


@fuzz_settings(300)
@given(case=conv_cases(transposed=True))
def test_fuzz_conv_transpose2d(case, memory_cap):
    args, label, rng = case
    _check(F.conv_transpose2d, args, label, rng, True)


HUGE = [2 ** 31, 2 ** 32 + 1, 2 ** 62, 2 ** 63 - 1, 2 ** 63, 2 ** 64, 2 ** 70]


@pytest.mark.parametrize("backend_name", CONV_VARIANTS)
@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("arg", ["stride", "dilation", "padding"])
def test_conv2d_huge_arguments(backend_name, value, arg, memory_cap):
    """Sizes far beyond any machine: a correct 1x1 result (huge stride) or a clean error."""
    x = np.ones((1, 1, 5, 5), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    res = outcome(on_backend, backend_name, F.conv2d, x, w, **{arg: value}, memory_ok=True)
    if arg == "stride" and not isinstance(res, Failed):
        np.testing.assert_array_equal(res.data, np.full((1, 1, 1, 1), 9, np.float32))


@pytest.mark.parametrize("backend_name", ALL)
@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("arg", ["stride", "dilation", "padding", "output_padding"])
def test_conv_transpose2d_huge_arguments(backend_name, value, arg, memory_cap):
    x = np.ones((1, 1, 2, 2), np.float32)
    w = np.ones((1, 1, 2, 2), np.float32)
    kwargs = {arg: value}
    outcome(on_backend, backend_name, F.conv_transpose2d, x, w, **kwargs, memory_ok=True)


# ------------------------------------------------------------------------------- F.pad
@st.composite
def pad_cases(draw):
    rng = draw(rngs())
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular", "bogus"]),
                label="mode")
    ndim = draw(st.integers(1, 5), label="ndim")
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim), label="shape"))
    npairs = draw(st.integers(0, min(3, ndim) + 1), label="pairs")
    pad = draw(st.lists(st.integers(-5, 5), min_size=2 * npairs, max_size=2 * npairs),
               label="pad")
    if draw(st.integers(0, 9), label="odd?") == 0:
        pad = pad + [1]
    dtype = draw(st.sampled_from(DTYPES), label="dtype")
    x = make_array(rng, shape, dtype, draw(st.sampled_from(LAYOUTS), label="layout"), 0.1)
    value = None
    if mode == "constant" and draw(st.booleans(), label="has_value"):
        value = draw(st.sampled_from([0.5, -2.0, float("nan"), float("inf")]), label="value")
    return x, tuple(pad), mode, value, rng


def _pad_oracle(x, pad, mode, value):
    """np.pad with PyTorch's pair order; negative pads crop (independent of nnlite)."""
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    crop = tuple(slice(max(-a, 0), x.shape[d] - max(-b, 0)) for d, (a, b) in enumerate(widths))
    pos = [(max(a, 0), max(b, 0)) for a, b in widths]
    if mode == "circular":
        # torch crops first, then wraps around the kept extent
        return np.pad(x[crop], pos, mode="wrap")
    y = np.pad(x, pos, mode={"constant": "constant", "reflect": "reflect",
                             "replicate": "edge"}[mode],
               **({"constant_values": 0.0 if value is None else value}
                  if mode == "constant" else {}))
    crop = tuple(slice(max(-a, 0), y.shape[d] - max(-b, 0)) for d, (a, b) in enumerate(widths))
    return y[crop]


@fuzz_settings(300)
@given(case=pad_cases())
def test_fuzz_pad(case):
    x, pad, mode, value, rng = case

    def run():
        t = nnlite.tensor(x, requires_grad=True)
        y = F.pad(t, pad, mode=mode, value=value)
        gy = rng.uniform(-1, 1, y.shape).astype(y.dtype)
        y.backward(gy) if y.data.size else None
        return y.data, gy, t.grad

    res = outcome(run)
    if isinstance(res, Failed):
        return
    y, gy, gx = res
    ax = [(x.ndim - 1 - i, pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]
    if any(x.shape[d] + a + b < 0 or max(-a, 0) + max(-b, 0) > x.shape[d] for d, a, b in ax):
        # crops longer than the axis: the result (if any) is empty along it
        assert all(y.shape[d] == max(0, x.shape[d] + a + b) for d, a, b in ax), y.shape
        return
    try:
        want = _pad_oracle(x, pad, mode, value)
    except ValueError:
        # np.pad cannot extend an empty axis; nnlite may return an empty result there
        assert y.size == 0, (x.shape, pad, mode, y.shape)
        return
    np.testing.assert_array_equal(y, want)
    if gx is not None:
        # adjoint: <pad(x), gy> == <x, pad^T(gy)> for the linear modes
        if mode != "constant" or value in (None, 0.0):
            xf = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float64)
            lhs = np.vdot(_pad_oracle(xf, pad, mode, None), gy.astype(np.float64))
            rhs = np.vdot(xf, np.asarray(getattr(gx, "data", gx), np.float64))
            np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------ modules
@st.composite
def module_cases(draw):
    rng = draw(rngs())
    transposed = draw(st.booleans(), label="transposed")
    g = draw(st.integers(1, 3), label="groups")
    cin = g * draw(st.integers(1, 2), label="cin/g")
    cout = g * draw(st.integers(1, 2), label="cout/g")
    kwargs = dict(kernel_size=draw(st.sampled_from([1, 2, 3, (1, 3), (3, 2)]), label="k"),
                  stride=draw(st.sampled_from([1, 2, (1, 2)]), label="s"),
                  dilation=draw(st.sampled_from([1, 2, (2, 1)]), label="d"),
                  groups=g, bias=draw(st.booleans(), label="bias"),
                  dtype=draw(st.sampled_from(DTYPES), label="dtype"))
    if transposed:
        kwargs["padding"] = draw(st.sampled_from([0, 1]), label="p")
    else:
        kwargs["padding"] = draw(st.sampled_from([0, 1, (1, 0), "same", "valid"]), label="p")
        kwargs["padding_mode"] = draw(st.sampled_from(["zeros", "reflect", "replicate",
                                                       "circular"]), label="mode")
        if kwargs["padding"] == "same":
            kwargs["stride"] = 1
    if draw(st.integers(0, 4), label="bad?") == 0:
        key = draw(st.sampled_from(["in", "out", "groups", "kernel_size", "stride", "padding",
                                    "dilation", "padding_mode", "dtype"]), label="bad_key")
        bad = draw(st.sampled_from([-1, 0, 2.5, "same", "full", None, (1, 2, 3), True,
                                    np.int32, "circular"]), label="bad_value")
        if key == "in":
            cin = bad
        elif key == "out":
            cout = bad
        else:
            kwargs[key] = bad
    hw = (draw(st.integers(1, 7), label="h"), draw(st.integers(1, 7), label="w"))
    n = draw(st.sampled_from([0, 1, 2]), label="n")
    size = None
    if transposed and draw(st.booleans(), label="output_size?"):
        # around the natural size: some legal (within +stride), some not; 2 or 4 entries
        size = [draw(st.integers(0, 2 * v + 4), label="size") for v in hw]
        if draw(st.booleans(), label="with N, C"):
            size = [n, cout] + size
        if draw(st.integers(0, 9), label="bad size?") == 0:
            size = draw(st.sampled_from([[1], [1, 2, 3], "77", [2 ** 62, 2 ** 62], [-3, 4]]))
    return transposed, cin, cout, kwargs, hw, n, size, rng


@fuzz_settings(160)
@given(case=module_cases())
def test_fuzz_conv_modules(case, memory_cap):
    transposed, cin, cout, kwargs, hw, n, draw_size, rng = case
    cls = nn.ConvTranspose2d if transposed else nn.Conv2d
    mod = outcome(cls, cin, cout, **kwargs, memory_ok=True)
    if isinstance(mod, Failed):
        return
    dtype = mod.weight.dtype
    x = make_array(rng, (n, cin) + hw, dtype, "c")

    out_size = None
    if transposed and draw_size is not None:
        out_size = draw_size

    def run():
        t = nnlite.tensor(x, requires_grad=True)
        y = mod(t) if out_size is None else mod(t, output_size=out_size)
        y.backward(np.ones(y.shape, y.dtype))
        return y.data, t.grad

    results = {b: outcome(on_backend, b, run) for b in CONV_VARIANTS}
    k = int(np.prod(mod.weight.shape[1:]))
    rtol, atol = tol(dtype, 9 * k, 4.0)
    agree(results, rtol, atol, f"{cls.__name__}{(cin, cout, kwargs)} on {x.shape}")


# ----------------------------------------------------- medium sizes: full micro-kernel tiles
@st.composite
def medium_conv_cases(draw):
    """Sizes that fill the compiled kernels' register tiles and thread splits (up to 48
    channels, 40-pixel sides); the NumPy backend (strided copies + BLAS) is the oracle."""
    rng = draw(rngs())
    g = draw(st.sampled_from([1, 1, 2, 4, "dw"]), label="groups")
    c = draw(st.sampled_from([1, 3, 8, 16, 17, 32, 48]), label="C")
    if g == "dw":
        g, f = c, c * draw(st.sampled_from([1, 2]), label="multiplier")
    else:
        c = max(g, c - c % g)
        f = g * draw(st.integers(1, 12), label="F/g")
    k = (draw(st.sampled_from([1, 3, 5, 7]), label="kh"), draw(st.sampled_from([1, 3, 5]),
                                                                label="kw"))
    s = (draw(st.integers(1, 3), label="sh"), draw(st.integers(1, 3), label="sw"))
    d = (draw(st.integers(1, 2), label="dh"), draw(st.integers(1, 2), label="dw"))
    p = (draw(st.integers(0, k[0]), label="ph"), draw(st.integers(0, k[1]), label="pw"))
    hw = tuple(max(d[i] * (k[i] - 1) + 1 - 2 * p[i], draw(st.integers(1, 40), label="side"))
               for i in range(2))
    n = draw(st.integers(1, 3), label="N")
    dtype = draw(st.sampled_from(DTYPES), label="dtype")
    x = make_array(rng, (n, c) + hw, dtype, draw(st.sampled_from(LAYOUTS), label="layout"))
    w = make_array(rng, (f, c // g, *k), dtype)
    b = rng.uniform(-1, 1, f).astype(dtype) if draw(st.booleans(), label="bias") else None
    threads = draw(st.sampled_from([1, 2]), label="threads")
    return x, w, b, dict(stride=s, padding=p, dilation=d, groups=g), threads


@fuzz_settings(25)
@given(case=medium_conv_cases())
def test_fuzz_conv2d_medium_sizes(case, memory_cap):  # noqa: F811
    x, w, b, kwargs, threads = case
    saved = nnlite.get_num_threads()
    nnlite.set_num_threads(threads)
    try:
        seed = 1
        results = {v: outcome(on_backend, v, _run, F.conv2d, dict(x=x, w=w, b=b, **kwargs),
                              seed, False) for v in CONV_VARIANTS if v != "reference"}
    finally:
        nnlite.set_num_threads(saved)
    k = w.shape[1] * w.shape[2] * w.shape[3]
    rtol, atol = tol(x.dtype, 4 * k, 4.0)
    agree(results, rtol, atol, f"conv2d {x.shape} {w.shape} {kwargs}", valid=True)
